//! VF-path packets per second: the igbvf driver's queue against the software igbvf model,
//! whose DMA engine runs on its own thread. The model is software: this measures the
//! driver's per-packet cost and the handoff to another thread, not a NIC.
//!
//! - **tx**: bursts through `tx_burst`; the model's DMA engine puts the frames on its wire,
//!   where this thread takes them off between bursts.
//! - **rx**: this thread injects into the model's wire (at most 256 frames ahead of the
//!   driver, within its ring) and polls `rx_burst`.
//!
//! Frames the model drops (and counts: the wire full, no receive descriptor posted) end the
//! run as surely as those that arrive; they are in [`Rate::dropped`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use ::vf::device::VfDevice;
use ::vf::igbvf::{Igbvf, IgbvfConfig, IgbvfQueue};
use packet::{MacAddr, PortQueue};

use super::{BURST, BenchError, Deadline, RX_BURST, Rate, frame};
use crate::vf_model::{SoftIgbvf, SoftIgbvfConfig, VfModelControl, VfModelStats};

/// The VF's MAC in every VF workload.
pub const VF_MAC: MacAddr = MacAddr([0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c]);

/// Frames injected ahead of the driver on receive.
const RX_AHEAD: u64 = 256;

/// The software VF and the driver's one queue over it, kept across runs.
#[derive(Debug)]
pub struct VfBench {
    model: VfModelControl,
    _port: Igbvf,
    queue: IgbvfQueue,
}

fn rx_dropped(s: &VfModelStats) -> u64 {
    s.rx_no_descriptor + s.rx_dropped_disabled
}

impl VfBench {
    /// Creates the model (one queue pair, 64 MiB of DMA memory) and opens the driver on it
    /// with 512-descriptor rings.
    pub fn start() -> Result<Self, BenchError> {
        let (device, model) = SoftIgbvf::new(SoftIgbvfConfig {
            mac: VF_MAC,
            queues: 1,
            dma_size: 64 << 20,
            ..SoftIgbvfConfig::default()
        });
        let device: Arc<dyn VfDevice> = device;
        let (port, mut queues) = Igbvf::open(
            device,
            IgbvfConfig {
                queues: 1,
                ring_size: 512,
                ..IgbvfConfig::default()
            },
        )
        .map_err(BenchError::Vf)?;
        let queue = queues.remove(0);
        Ok(Self {
            model,
            _port: port,
            queue,
        })
    }

    /// The model's counters (drops by reason).
    pub fn model_stats(&self) -> VfModelStats {
        self.model.stats()
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
        let f = frame(len, MacAddr([2, 9, 9, 9, 9, 9]));
        let pool = self.queue.pool().clone();
        let dropped_before = self.model.stats().tx_wire_dropped;
        let deadline = Deadline::start();
        let started = Instant::now();
        let (mut sent, mut wire, mut dropped) = (0u64, 0u64, 0u64);
        let mut burst = Vec::with_capacity(BURST);
        while wire + dropped < count {
            while sent + (burst.len() as u64) < count && burst.len() < BURST {
                match pool.alloc_from(&f) {
                    Some(p) => burst.push(p),
                    None => break,
                }
            }
            sent += self.queue.tx_burst(&mut burst) as u64;
            let before = wire;
            while self.model.recv_frame(Duration::ZERO).is_some() {
                wire += 1;
            }
            if wire == before {
                dropped = self.model.stats().tx_wire_dropped - dropped_before;
                deadline.check(|| format!("vf tx: {wire} of {count} frames on the wire"))?;
            }
        }
        Ok(Rate {
            packets: wire,
            dropped,
            elapsed: started.elapsed(),
        })
    }

    fn rx(&mut self, len: usize, count: u64) -> Result<Rate, BenchError> {
        let f = frame(len, VF_MAC);
        let dropped_before = rx_dropped(&self.model.stats());
        let deadline = Deadline::start();
        let started = Instant::now();
        let (mut injected, mut got, mut dropped) = (0u64, 0u64, 0u64);
        let mut out = Vec::with_capacity(RX_BURST);
        while got + dropped < count {
            while injected < count && injected - got - dropped < RX_AHEAD {
                self.model.inject(0, &f);
                injected += 1;
            }
            let n = self.queue.rx_burst(&mut out, RX_BURST);
            out.clear();
            got += n as u64;
            if n == 0 {
                dropped = rx_dropped(&self.model.stats()) - dropped_before;
                deadline.check(|| format!("vf rx: {got} of {count} frames received"))?;
            }
        }
        Ok(Rate {
            packets: got,
            dropped,
            elapsed: started.elapsed(),
        })
    }
}
