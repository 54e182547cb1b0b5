//! A fixed synthetic-path workload for counting guest-side instructions per packet with
//! callgrind: `scripts/bench-ipp` runs it under valgrind, collecting only inside
//! `guest_tx_burst` and `guest_rx_burst` (the guest's per-burst work, whatever inlining does
//! inside them), and divides by the packet counts this program prints.
//!
//! Usage: `synthetic_ipp <tx|rx> <frame bytes> <frames>`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use integration::harness::rig::SyntheticRig;
use integration::host::{HostConfig, PortMode};
use netvsc::nic::{NicConfig, SyntheticQueue};
use netvsc::vmbus::shm::ShmConfig;
use packet::{Packet, PortQueue};

#[inline(never)]
fn guest_tx_burst(queue: &mut SyntheticQueue, frames: &mut Vec<Packet>) -> usize {
    queue.tx_burst(black_box(frames))
}

#[inline(never)]
fn guest_rx_burst(queue: &mut SyntheticQueue, out: &mut Vec<Packet>) -> usize {
    queue.rx_burst(black_box(out), 64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: synthetic_ipp <tx|rx> <frame bytes 60..=1514> <frames>";
    let (dir, len, count) = match args.as_slice() {
        [_, d, l, c] => (
            d.clone(),
            l.parse::<usize>().expect(usage),
            c.parse::<u64>().expect(usage),
        ),
        _ => panic!("{usage}"),
    };
    assert!((60..=1514).contains(&len), "{usage}");
    let SyntheticRig {
        host,
        nic,
        mut queues,
    } = SyntheticRig::start(
        HostConfig {
            shm: ShmConfig {
                max_channels: 1,
                ..ShmConfig::default()
            },
            port: PortMode::External,
            ..HostConfig::default()
        },
        NicConfig::default(),
    )
    .expect("host starts and the NIC opens");
    let queue = &mut queues[0];
    let mut frame = vec![0x5au8; len];
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut done = 0u64;
    let mut out = Vec::with_capacity(64);
    // Lock-step: the guest is called only when the host has finished its part, so every
    // collected call does real work and no empty poll is counted (under valgrind the host
    // thread runs far slower than natively).
    let wait_host = |until: &dyn Fn(&integration::host::HostStats) -> bool| {
        while !until(&host.stats()) {
            assert!(Instant::now() < deadline, "the host stalled");
            std::thread::yield_now();
        }
    };
    match dir.as_str() {
        "tx" => {
            frame[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
            let pool = nic.pool().clone();
            let mut burst = Vec::with_capacity(32);
            while done < count {
                while done + (burst.len() as u64) < count && burst.len() < 32 {
                    burst.push(pool.alloc_from(&frame).expect("pool"));
                }
                done += guest_tx_burst(queue, &mut burst) as u64;
                // Every frame in, and every send (a section holds several) completed.
                wait_host(&|h| h.tx_packets >= done && h.tx_completions >= h.tx_sends);
                while host.external().try_recv().is_some() {}
                // Collect the completions of this burst (they free sections and slots).
                guest_rx_burst(queue, &mut out);
            }
        }
        "rx" => {
            frame[0..6].copy_from_slice(&nic.mac().0);
            let mut injected = 0;
            while done < count {
                let n = (count - injected).min(32);
                for _ in 0..n {
                    assert!(host.external().inject_on(0, &frame));
                }
                injected += n;
                wait_host(&|h| h.rx_delivered >= injected);
                while done < injected {
                    done += guest_rx_burst(queue, &mut out) as u64;
                    out.clear();
                    assert!(Instant::now() < deadline, "the guest stalled");
                }
            }
        }
        _ => panic!("{usage}"),
    }
    println!("packets {done}");
}
