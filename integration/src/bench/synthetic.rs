//! Synthetic-path packets per second: the guest's `SyntheticNic` queue against the simulated
//! host running on its own thread (one channel, the host's in-memory external port as the
//! far end).
//!
//! - **tx**: the guest sends bursts through `tx_burst` (polling `rx_burst` between them for
//!   the send completions), at most 4096 frames ahead of the far end; the host forwards every
//!   frame to its external port, where a drain thread counts it.
//! - **rx**: an injector thread feeds the external port (keeping at most 4096 frames
//!   waiting); the guest polls `rx_burst`.
//!
//! A frame the host drops (and counts: the external port full, no receive slot) ends the
//! run as surely as one that arrives, so a run always ends; the drops are in
//! [`Rate::dropped`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use netvsc::nic::NicConfig;
use netvsc::vmbus::shm::ShmConfig;
use packet::{MacAddr, Packet, PortQueue};

use super::{BURST, BenchError, Deadline, RX_BURST, Rate, frame};
use crate::harness::rig::SyntheticRig;
use crate::host::{HostConfig, PortMode};

/// Frames the guest lets be in flight towards the external port on transmit.
const TX_WINDOW: u64 = 4096;

/// Frames the injector lets wait at the external port for the guest.
const RX_BACKLOG: usize = 4096;

/// A host and a one-queue guest NIC, kept across runs.
#[derive(Debug)]
pub struct SyntheticBench {
    rig: SyntheticRig,
}

/// The simulated host with one channel and an external port, and the guest NIC opened
/// against it: what every synthetic workload runs on.
pub(crate) fn one_queue_rig() -> Result<SyntheticRig, BenchError> {
    SyntheticRig::start(
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
    .map_err(|source| BenchError::Rig {
        what: "simulated host and synthetic NIC",
        source,
    })
}

impl SyntheticBench {
    /// Starts the host (one channel, an external port) and opens the NIC against it.
    pub fn start() -> Result<Self, BenchError> {
        Ok(Self {
            rig: one_queue_rig()?,
        })
    }

    /// `count` frames of `len` bytes one way.
    pub fn run(
        &mut self,
        dir: super::Direction,
        len: usize,
        count: u64,
    ) -> Result<Rate, BenchError> {
        super::check_frame_len(len)?;
        match dir {
            super::Direction::Tx => self.tx(len, count),
            super::Direction::Rx => self.rx(len, count),
        }
    }

    fn tx(&mut self, len: usize, count: u64) -> Result<Rate, BenchError> {
        let rig = &mut self.rig;
        let f = frame(len, MacAddr([2, 9, 9, 9, 9, 9]));
        let pool = rig.nic.pool().clone();
        let dropped_before = rig.host.flow_drops().to_external;
        let received = AtomicU64::new(0);
        let stop = AtomicBool::new(false);
        let deadline = Deadline::start();
        let started = Instant::now();
        let result = std::thread::scope(|s| {
            let (received, stop, host) = (&received, &stop, &rig.host);
            s.spawn(move || {
                // Every frame waiting, under one lock.
                let mut frames = VecDeque::new();
                while !stop.load(Ordering::Relaxed) {
                    host.external().recv_all(&mut frames);
                    if frames.is_empty() {
                        std::thread::yield_now();
                    }
                    received.fetch_add(frames.len() as u64, Ordering::Relaxed);
                    host.external().recycle(&mut frames);
                }
            });
            let queue = &mut rig.queues[0];
            let result = (|| {
                let mut burst: Vec<Packet> = Vec::with_capacity(BURST);
                let mut sink = Vec::with_capacity(RX_BURST);
                let mut sent = 0u64;
                while sent < count {
                    // Keep within the window: the drain thread, not the guest, would be what
                    // the run measured if the external port's FIFO filled up.
                    while sent - received.load(Ordering::Relaxed) >= TX_WINDOW {
                        queue.rx_burst(&mut sink, RX_BURST);
                        sink.clear();
                        let dropped = host.flow_drops().to_external - dropped_before;
                        if sent - received.load(Ordering::Relaxed) < TX_WINDOW + dropped {
                            break;
                        }
                        deadline.check(|| {
                            format!("synthetic tx: the external port took none of {sent} frames")
                        })?;
                        std::thread::yield_now();
                    }
                    while sent + (burst.len() as u64) < count && burst.len() < BURST {
                        match pool.alloc_from(&f) {
                            Some(p) => burst.push(p),
                            None => break,
                        }
                    }
                    let taken = queue.tx_burst(&mut burst);
                    sent += taken as u64;
                    queue.rx_burst(&mut sink, RX_BURST);
                    sink.clear();
                    // The clock is read only when a burst went nowhere: a stall.
                    if taken == 0 {
                        deadline
                            .check(|| format!("synthetic tx: {sent} of {count} frames sent"))?;
                    }
                }
                loop {
                    let dropped = host.flow_drops().to_external - dropped_before;
                    let got = received.load(Ordering::Relaxed);
                    if got + dropped >= count {
                        return Ok((got, dropped));
                    }
                    queue.rx_burst(&mut sink, RX_BURST);
                    sink.clear();
                    deadline.check(|| {
                        format!("synthetic tx: {got} of {count} frames at the external port")
                    })?;
                    std::thread::yield_now();
                }
            })();
            stop.store(true, Ordering::Relaxed);
            result
        });
        let (packets, dropped) = result?;
        Ok(Rate {
            packets,
            dropped,
            elapsed: started.elapsed(),
        })
    }

    fn rx(&mut self, len: usize, count: u64) -> Result<Rate, BenchError> {
        let rig = &mut self.rig;
        let f = frame(len, rig.nic.mac());
        let dropped_before = rig.host.flow_drops().to_guest;
        let give_up = AtomicBool::new(false);
        let deadline = Deadline::start();
        let started = Instant::now();
        let result = std::thread::scope(|s| {
            let (host, f, give_up) = (&rig.host, &f, &give_up);
            s.spawn(move || {
                let mut injected = 0;
                while injected < count && !give_up.load(Ordering::Relaxed) {
                    if host.external().pending_to_guest() < RX_BACKLOG
                        && host.external().inject_on(0, f)
                    {
                        injected += 1;
                    } else {
                        std::thread::yield_now();
                    }
                }
            });
            let queue = &mut rig.queues[0];
            let mut out = Vec::with_capacity(RX_BURST);
            let mut got = 0u64;
            // The host's drop counters are read only when a poll comes back empty, so reading
            // them costs the measured loop nothing while frames flow. An empty poll gives the
            // processor away: the injector and the host share two with this thread.
            let result = loop {
                let n = queue.rx_burst(&mut out, RX_BURST);
                out.clear();
                got += n as u64;
                if n > 0 && got < count {
                    continue;
                }
                let dropped = host.flow_drops().to_guest - dropped_before;
                if got + dropped >= count {
                    break Ok((got, dropped));
                }
                if let Err(e) =
                    deadline.check(|| format!("synthetic rx: {got} of {count} frames received"))
                {
                    break Err(e);
                }
                std::thread::yield_now();
            };
            give_up.store(true, Ordering::Relaxed);
            result
        });
        let (packets, dropped) = result?;
        Ok(Rate {
            packets,
            dropped,
            elapsed: started.elapsed(),
        })
    }
}
