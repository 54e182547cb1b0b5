//! The synthetic path in lock-step with the simulated host: the counted functions are
//! [`guest_tx_burst`] and [`guest_rx_burst`] (the guest's per-burst work); the host's thread
//! is not counted.

use std::hint::black_box;

use netvsc::nic::SyntheticQueue;
use packet::{Packet, PortQueue};

use super::{IPP_STALL, LOCKSTEP_BURST};
use crate::bench::{BenchError, Deadline, Direction, RX_BURST};
use crate::harness::rig::SyntheticRig;
use crate::host::HostStats;

/// Counted: the guest's transmit of one burst.
#[inline(never)]
pub fn guest_tx_burst(queue: &mut SyntheticQueue, frames: &mut Vec<Packet>) -> usize {
    queue.tx_burst(black_box(frames))
}

/// Counted: the guest's receive of up to 64 frames (and of send completions).
#[inline(never)]
pub fn guest_rx_burst(queue: &mut SyntheticQueue, out: &mut Vec<Packet>) -> usize {
    queue.rx_burst(black_box(out), RX_BURST)
}

/// `count` frames of `len` bytes one way; the packets moved.
pub fn run(dir: Direction, len: usize, count: u64) -> Result<u64, BenchError> {
    let SyntheticRig {
        host,
        nic,
        mut queues,
    } = crate::bench::synthetic::one_queue_rig()?;
    let queue = &mut queues[0];
    let deadline = Deadline::after(IPP_STALL);
    let mut frame = vec![0x5au8; len];
    let mut done = 0u64;
    let mut out = Vec::with_capacity(RX_BURST);
    // The guest is called only once the host has finished its part.
    let wait_host = |what: &str, until: &dyn Fn(&HostStats) -> bool| {
        while !until(&host.stats()) {
            deadline.check(|| format!("synthetic {dir}: the host never got to {what}"))?;
            std::thread::yield_now();
        }
        Ok::<(), BenchError>(())
    };
    match dir {
        Direction::Tx => {
            frame[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
            let pool = nic.pool().clone();
            let mut burst = Vec::with_capacity(LOCKSTEP_BURST as usize);
            while done < count {
                while done + (burst.len() as u64) < count && (burst.len() as u64) < LOCKSTEP_BURST {
                    burst.push(
                        pool.alloc_from(&frame)
                            .ok_or(BenchError::PoolDry("synthetic tx"))?,
                    );
                }
                done += guest_tx_burst(queue, &mut burst) as u64;
                // Every frame in, and every send (a section holds several) completed.
                wait_host("the frames sent", &|h| {
                    h.tx_packets >= done && h.tx_completions >= h.tx_sends
                })?;
                while host.external().try_recv().is_some() {}
                // Collect the completions of this burst (they free sections and slots).
                guest_rx_burst(queue, &mut out);
                out.clear();
            }
        }
        Direction::Rx => {
            frame[0..6].copy_from_slice(&nic.mac().0);
            let mut injected = 0;
            while done < count {
                let n = (count - injected).min(LOCKSTEP_BURST);
                for _ in 0..n {
                    if !host.external().inject_on(0, &frame) {
                        return Err(BenchError::Refused("synthetic rx"));
                    }
                }
                injected += n;
                wait_host("the frames delivered", &|h| h.rx_delivered >= injected)?;
                while done < injected {
                    done += guest_rx_burst(queue, &mut out) as u64;
                    out.clear();
                    deadline.check(|| format!("synthetic rx: {done} of {injected} received"))?;
                }
            }
        }
    }
    Ok(done)
}
