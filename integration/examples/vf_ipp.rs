//! A fixed VF-path workload for counting driver instructions per packet with callgrind:
//! `scripts/bench-ipp` runs it under valgrind, collecting only inside `driver_tx_burst` and
//! `driver_rx_burst`, and divides by the packet count this program prints. Driver and model
//! run in lock-step (the driver is called only once the model has done its part), so no
//! empty poll is counted.
//!
//! Usage: `vf_ipp <tx|rx> <frame bytes 60..=1514> <frames>`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::vf_model::{SoftIgbvf, SoftIgbvfConfig, VfModelStats};
use packet::{MacAddr, Packet, PortQueue};
use vf::device::VfDevice;
use vf::igbvf::{Igbvf, IgbvfConfig, IgbvfQueue};

#[inline(never)]
fn driver_tx_burst(queue: &mut IgbvfQueue, frames: &mut Vec<Packet>) -> usize {
    queue.tx_burst(black_box(frames))
}

#[inline(never)]
fn driver_rx_burst(queue: &mut IgbvfQueue, out: &mut Vec<Packet>) -> usize {
    queue.rx_burst(black_box(out), 64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: vf_ipp <tx|rx> <frame bytes 60..=1514> <frames>";
    let [_, dir, len, count] = args.as_slice() else {
        panic!("{usage}")
    };
    let len: usize = len.parse().expect(usage);
    let count: u64 = count.parse().expect(usage);
    assert!((60..=1514).contains(&len), "{usage}");
    let mac = MacAddr([0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c]);
    let (device, model) = SoftIgbvf::new(SoftIgbvfConfig {
        mac,
        queues: 1,
        ..SoftIgbvfConfig::default()
    });
    let device: Arc<dyn VfDevice> = device;
    let (_port, mut queues) = Igbvf::open(
        device,
        IgbvfConfig {
            queues: 1,
            ..IgbvfConfig::default()
        },
    )
    .expect("driver opens");
    let queue = &mut queues[0];
    let deadline = Instant::now() + Duration::from_secs(600);
    let wait_model = |until: &dyn Fn(&VfModelStats) -> bool| {
        while !until(&model.stats()) {
            assert!(Instant::now() < deadline, "the model stalled");
            std::thread::yield_now();
        }
    };
    let mut frame = vec![0x5au8; len];
    let mut done = 0u64;
    let mut out = Vec::with_capacity(64);
    match dir.as_str() {
        "tx" => {
            frame[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
            let pool = queue.pool().clone();
            let mut burst = Vec::with_capacity(32);
            while done < count {
                while done + (burst.len() as u64) < count && burst.len() < 32 {
                    burst.push(pool.alloc_from(&frame).expect("pool"));
                }
                done += driver_tx_burst(queue, &mut burst) as u64;
                wait_model(&|s| s.tx_frames >= done);
                while model.recv_frame(Duration::ZERO).is_some() {}
            }
            // Reclaim the last burst's descriptors, as the next burst would.
            driver_tx_burst(queue, &mut burst);
        }
        "rx" => {
            frame[0..6].copy_from_slice(&mac.0);
            let mut injected = 0;
            while done < count {
                let n = (count - injected).min(32);
                for _ in 0..n {
                    model.inject(0, &frame);
                }
                injected += n;
                wait_model(&|s| s.rx_frames >= injected);
                while done < injected {
                    done += driver_rx_burst(queue, &mut out) as u64;
                    out.clear();
                    assert!(Instant::now() < deadline, "the driver stalled");
                }
            }
        }
        _ => panic!("{usage}"),
    }
    println!("packets {done}");
}
