//! The failover port on the VF in lock-step with the software VF: the counted functions are
//! [`failover_tx_burst`] and [`failover_rx_burst`]. The synthetic path is polled as it always
//! is on the VF (the host keeps delivering there), which is part of what the port costs.
//!
//! With `failback` the port first goes through a whole cycle — on the VF, the VF ejected,
//! synthetic, the VF offered again, back on it — so the cost on the VF after a failback can
//! be compared with the cost before.

use std::hint::black_box;
use std::time::Duration;

use bond::{FailoverQueue, PortState};
use packet::{Packet, PortQueue};

use super::{IPP_STALL, LOCKSTEP_BURST};
use crate::bench::{BenchError, Deadline, Direction, RX_BURST};
use crate::harness::failover::{FailoverRig, FailoverRigConfig};
use crate::harness::traffic::PEER_MAC;

/// The association serial of the workload's VF.
const SERIAL: u32 = 7;

/// Counted: the port's transmit of one burst.
#[inline(never)]
pub fn failover_tx_burst(queue: &mut FailoverQueue, frames: &mut Vec<Packet>) -> usize {
    queue.tx_burst(black_box(frames))
}

/// Counted: the port's receive of up to 64 frames (from both paths).
#[inline(never)]
pub fn failover_rx_burst(queue: &mut FailoverQueue, out: &mut Vec<Packet>) -> usize {
    queue.rx_burst(black_box(out), RX_BURST)
}

/// A one-queue failover port on the VF, ready for a counted workload.
#[derive(Debug)]
pub struct FailoverIpp {
    // Fields drop in this order: the queue before the port it belongs to.
    /// The port's one queue.
    pub queue: FailoverQueue,
    /// The rig (to watch the port while the workload runs).
    pub rig: FailoverRig,
    deadline: Deadline,
}

impl FailoverIpp {
    /// Starts the rig with one queue, offers the VF and polls until the port is on it (after
    /// a whole eject and re-offer first with `failback`).
    pub fn start(failback: bool) -> Result<Self, BenchError> {
        let mut config = FailoverRigConfig::default();
        config.nic.queues = 1;
        config.pci.vf_queues = 1;
        config.host.vf_device_delay = Duration::ZERO;
        let mut rig = FailoverRig::start(config).map_err(|source| BenchError::Rig {
            what: "failover rig",
            source,
        })?;
        rig.host.offer_vf(SERIAL);
        let queue = rig.queues.remove(0);
        let mut this = Self {
            rig,
            queue,
            deadline: Deadline::after(IPP_STALL),
        };
        this.poll_until("the port on the VF", |rig| {
            rig.port.state() == PortState::OnVf
        })?;
        if failback {
            let pci = this.rig.pci.clone();
            let ejector = std::thread::spawn(move || pci.eject_azure(Duration::from_secs(60)));
            let released = this.poll_until("the VF released", |rig| {
                let s = rig.port.stats();
                s.state == PortState::Synthetic && s.vf_released == 1
            });
            let ejected = ejector.join().unwrap_or(false);
            released?;
            if !ejected {
                return Err(BenchError::Invalid(
                    "failback: the VF was not released".into(),
                ));
            }
            this.rig.host.offer_vf(SERIAL);
            this.poll_until("the port back on the VF", |rig| {
                let s = rig.port.stats();
                s.state == PortState::OnVf && s.switches_to_vf == 2
            })?;
        }
        Ok(this)
    }

    /// Polls the queue (uncounted) until `done` holds for the rig.
    fn poll_until(
        &mut self,
        what: &str,
        done: impl Fn(&FailoverRig) -> bool,
    ) -> Result<(), BenchError> {
        let mut out = Vec::with_capacity(RX_BURST);
        while !done(&self.rig) {
            self.queue.rx_burst(&mut out, RX_BURST);
            out.clear();
            self.deadline
                .check(|| format!("failover: the port never got to {what}"))?;
            std::thread::yield_now();
        }
        Ok(())
    }

    /// The counted workload ([`workload`]) on this port.
    pub fn workload(&mut self, dir: Direction, len: usize, count: u64) -> Result<u64, BenchError> {
        workload(&self.rig, &mut self.queue, dir, len, count)
    }
}

/// The counted workload: `count` frames of `len` bytes through `queue` of the port of `rig`,
/// on the VF; the packets moved. An error if the port left the VF meanwhile.
pub fn workload(
    rig: &FailoverRig,
    queue: &mut FailoverQueue,
    dir: Direction,
    len: usize,
    count: u64,
) -> Result<u64, BenchError> {
    crate::bench::check_frame_len(len)?;
    let deadline = &Deadline::after(IPP_STALL);
    let mut out = Vec::with_capacity(RX_BURST);
    // Settle the queue on the VF before counting (it acknowledges the path at a burst).
    for _ in 0..4 {
        queue.rx_burst(&mut out, RX_BURST);
        out.clear();
    }
    let vf = rig
        .pci
        .vf()
        .ok_or_else(|| BenchError::Invalid("failover: no VF bound".into()))?;
    let wait = |what: &str, until: &dyn Fn() -> bool| {
        while !until() {
            deadline.check(|| format!("failover {dir}: the VF never got to {what}"))?;
            std::thread::yield_now();
        }
        Ok::<(), BenchError>(())
    };
    let mac = rig.port.mac();
    let mut frame = vec![0x5au8; len];
    let mut done = 0u64;
    match dir {
        Direction::Tx => {
            frame[0..6].copy_from_slice(&PEER_MAC.0);
            frame[6..12].copy_from_slice(&mac.0);
            let pool = rig.port.pool().clone();
            let mut burst = Vec::with_capacity(LOCKSTEP_BURST as usize);
            while done < count {
                while done + (burst.len() as u64) < count && (burst.len() as u64) < LOCKSTEP_BURST {
                    burst.push(
                        pool.alloc_from(&frame)
                            .ok_or(BenchError::PoolDry("failover tx"))?,
                    );
                }
                done += failover_tx_burst(queue, &mut burst) as u64;
                wait("the frames sent", &|| vf.stats().tx_frames >= done)?;
                while rig.host.external().try_recv().is_some() {}
            }
            failover_tx_burst(queue, &mut burst);
        }
        Direction::Rx => {
            frame[0..6].copy_from_slice(&mac.0);
            frame[6..12].copy_from_slice(&PEER_MAC.0);
            let mut injected = 0;
            while done < count {
                let n = (count - injected).min(LOCKSTEP_BURST);
                for _ in 0..n {
                    if !rig.host.external().inject_on(0, &frame) {
                        return Err(BenchError::Refused("failover rx"));
                    }
                }
                injected += n;
                wait("the frames written", &|| vf.stats().rx_frames >= injected)?;
                while done < injected {
                    done += failover_rx_burst(queue, &mut out) as u64;
                    out.clear();
                    deadline.check(|| format!("failover rx: {done} of {injected} received"))?;
                }
            }
        }
    }
    if rig.port.state() != PortState::OnVf {
        return Err(BenchError::Invalid(
            "failover: the port left the VF during the counted workload".into(),
        ));
    }
    Ok(done)
}
