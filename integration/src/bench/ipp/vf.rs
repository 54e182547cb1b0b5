//! The VF path in lock-step with the software model: the counted functions are
//! [`driver_tx_burst`] and [`driver_rx_burst`] (the igbvf driver's per-burst work); the
//! model's DMA thread is not counted.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use packet::{Packet, PortQueue};
use vf::device::VfDevice;
use vf::igbvf::{Igbvf, IgbvfConfig, IgbvfQueue};

use super::{IPP_STALL, LOCKSTEP_BURST};
use crate::bench::vf::VF_MAC;
use crate::bench::{BenchError, Deadline, Direction, RX_BURST};
use crate::vf_model::{SoftIgbvf, SoftIgbvfConfig, VfModelStats};

/// Counted: the driver's transmit of one burst (and reclaim of finished descriptors).
#[inline(never)]
pub fn driver_tx_burst(queue: &mut IgbvfQueue, frames: &mut Vec<Packet>) -> usize {
    queue.tx_burst(black_box(frames))
}

/// Counted: the driver's receive of up to 64 frames.
#[inline(never)]
pub fn driver_rx_burst(queue: &mut IgbvfQueue, out: &mut Vec<Packet>) -> usize {
    queue.rx_burst(black_box(out), RX_BURST)
}

/// `count` frames of `len` bytes one way; the packets moved.
pub fn run(dir: Direction, len: usize, count: u64) -> Result<u64, BenchError> {
    let (device, model) = SoftIgbvf::new(SoftIgbvfConfig {
        mac: VF_MAC,
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
    .map_err(BenchError::Vf)?;
    let queue = &mut queues[0];
    let deadline = Deadline::after(IPP_STALL);
    // The driver is called only once the model has finished its part.
    let wait_model = |what: &str, until: &dyn Fn(&VfModelStats) -> bool| {
        while !until(&model.stats()) {
            deadline.check(|| format!("vf {dir}: the model never got to {what}"))?;
            std::thread::yield_now();
        }
        Ok::<(), BenchError>(())
    };
    let mut frame = vec![0x5au8; len];
    let mut done = 0u64;
    let mut out = Vec::with_capacity(RX_BURST);
    match dir {
        Direction::Tx => {
            frame[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
            let pool = queue.pool().clone();
            let mut burst = Vec::with_capacity(LOCKSTEP_BURST as usize);
            while done < count {
                while done + (burst.len() as u64) < count && (burst.len() as u64) < LOCKSTEP_BURST {
                    burst.push(
                        pool.alloc_from(&frame)
                            .ok_or(BenchError::PoolDry("vf tx"))?,
                    );
                }
                done += driver_tx_burst(queue, &mut burst) as u64;
                wait_model("the frames sent", &|s| s.tx_frames >= done)?;
                while model.recv_frame(Duration::ZERO).is_some() {}
            }
            // Reclaim the last burst's descriptors, as the next burst would.
            driver_tx_burst(queue, &mut burst);
        }
        Direction::Rx => {
            frame[0..6].copy_from_slice(&VF_MAC.0);
            let mut injected = 0;
            while done < count {
                let n = (count - injected).min(LOCKSTEP_BURST);
                for _ in 0..n {
                    model.inject(0, &frame);
                }
                injected += n;
                wait_model("the frames written", &|s| s.rx_frames >= injected)?;
                while done < injected {
                    done += driver_rx_burst(queue, &mut out) as u64;
                    out.clear();
                    deadline.check(|| format!("vf rx: {done} of {injected} received"))?;
                }
            }
        }
    }
    Ok(done)
}
