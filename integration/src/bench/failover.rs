//! Failover and failback under traffic both ways: how long the port takes to leave the VF
//! and to return to it, and where every frame of the run went.
//!
//! A [`FailoverBench`] is a [`FailoverRig`] (the simulated host, a one-NIC failover port,
//! the software VF on a simulated PCI bus) under [`Traffic`] both ways. Each
//! [`cycle`](FailoverBench::cycle) offers the VF, waits until the port is on it and traffic
//! moves, takes the VF away as a [`Removal`] says, and waits until the VF is released and
//! traffic moves on synthetic again. The port reports the durations itself
//! ([`FailoverEvent`]):
//! - **failover**: from the trigger until every queue transmits on synthetic;
//! - **complete**: until the VF's rings are drained and it is released;
//! - **failback**: from the decision to switch until every queue transmits on the VF.
//!
//! [`finish`](FailoverBench::finish) stops the traffic and accounts for every frame
//! ([`Accounting`]): a run whose frames do not balance, or that reordered any, is an error.

use std::time::Duration;

use bond::{FailoverEvent, FailoverQueue, FailoverStats, PortState};

use super::BenchError;
use crate::harness::failover::{Accounting, FailoverRig, FailoverRigConfig};
use crate::harness::traffic::{Traffic, TrafficConfig, TrafficCounts};

/// The association serial of the bench's VF.
const SERIAL: u32 = 7;

/// The bound on every wait of a cycle.
pub const WAIT: Duration = Duration::from_secs(30);

/// Frames each direction must move before a cycle goes on (the path is really in use).
const PROGRESS: u64 = 500;

/// How the VF is taken away in a cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Removal {
    /// Planned, Azure's order: the eject request first, the association removed after.
    PlannedAzure,
    /// Planned, OpenVMM's order: the host switches the data path (129), then removes the
    /// association (128 {0}), then ejects.
    PlannedOpenVmm,
    /// The device vanishes; the host notices after the port has left it.
    Surprise,
    /// The VF's link goes down and up again (the port leaves and returns), then a planned
    /// (Azure order) removal.
    LinkFlap,
}

impl Removal {
    /// Every kind, in the order the benches run them.
    pub const ALL: [Removal; 4] = [
        Removal::PlannedAzure,
        Removal::PlannedOpenVmm,
        Removal::Surprise,
        Removal::LinkFlap,
    ];

    /// A few words for a report.
    pub fn describe(self) -> &'static str {
        match self {
            Removal::PlannedAzure => "planned, Azure order (eject first)",
            Removal::PlannedOpenVmm => "planned, OpenVMM order (host 129, then 128 {0})",
            Removal::Surprise => "surprise removal",
            Removal::LinkFlap => "VF link flap",
        }
    }
}

/// The durations the port reported, one per switch.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    /// Trigger → every queue transmits on synthetic.
    pub failover: Vec<Duration>,
    /// Trigger → the VF drained and released.
    pub complete: Vec<Duration>,
    /// Decision to switch → every queue transmits on the VF.
    pub failback: Vec<Duration>,
}

impl Samples {
    fn collect(&mut self, rig: &FailoverRig) {
        while let Some(event) = rig.port.next_event(Duration::ZERO) {
            match event {
                FailoverEvent::SwitchedToSynthetic {
                    failover, complete, ..
                } => {
                    self.failover.push(failover);
                    self.complete.push(complete);
                }
                FailoverEvent::SwitchedToVf { duration } => self.failback.push(duration),
                _ => {}
            }
        }
    }
}

/// A distribution of durations, for a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spread {
    /// How many.
    pub n: usize,
    /// The smallest.
    pub min: Duration,
    /// The median (the upper one of an even count).
    pub p50: Duration,
    /// The 90th percentile (nearest rank).
    pub p90: Duration,
    /// The 99th percentile (nearest rank).
    pub p99: Duration,
    /// The largest.
    pub max: Duration,
}

impl Spread {
    /// The spread of `v` (all zero for none).
    pub fn of(v: &[Duration]) -> Self {
        let mut v = v.to_vec();
        v.sort();
        let Some(&max) = v.last() else {
            return Self::default();
        };
        let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Self {
            n: v.len(),
            min: v[0],
            p50: v[v.len() / 2],
            p90: at(0.9),
            p99: at(0.99),
            max,
        }
    }
}

/// What a finished run says.
#[derive(Clone, Debug)]
pub struct FailoverReport {
    /// Cycles run.
    pub cycles: usize,
    /// The durations, one per switch.
    pub samples: Samples,
    /// The traffic's own counts (sent, received, reordered both ways).
    pub counts: TrafficCounts,
    /// Where every frame that was not delivered went, by reason.
    pub accounting: Accounting,
}

impl FailoverReport {
    /// Frames lost towards the guest, every one counted with a reason.
    pub fn rx_lost(&self) -> u64 {
        let a = &self.accounting;
        a.rx_stranded + a.rx_overload + a.rx_link_down + a.rx_failover
    }

    /// Frames lost from the guest, every one counted with a reason.
    pub fn tx_lost(&self) -> u64 {
        let a = &self.accounting;
        a.tx_stranded + a.tx_overload + a.tx_link_down
    }
}

/// The rig under traffic, between cycles.
#[derive(Debug)]
pub struct FailoverBench {
    rig: FailoverRig,
    traffic: Traffic<FailoverQueue>,
    samples: Samples,
    cycles: usize,
}

impl FailoverBench {
    /// Starts the rig (the VF's device shows up as soon as it is associated) and traffic
    /// both ways over its queues; the port starts synthetic.
    pub fn start() -> Result<Self, BenchError> {
        let mut config = FailoverRigConfig::default();
        config.host.vf_device_delay = Duration::ZERO;
        let mut rig = FailoverRig::start(config).map_err(|source| BenchError::Rig {
            what: "failover rig",
            source,
        })?;
        let traffic = rig.start_traffic(TrafficConfig::default());
        Ok(Self {
            rig,
            traffic,
            samples: Samples::default(),
            cycles: 0,
        })
    }

    /// The rig (for a caller's own scenario).
    pub fn rig(&self) -> &FailoverRig {
        &self.rig
    }

    /// The traffic over it.
    pub fn traffic(&self) -> &Traffic<FailoverQueue> {
        &self.traffic
    }

    /// One cycle: onto the VF, traffic, `removal`, synthetic again, traffic.
    pub fn cycle(&mut self, removal: Removal) -> Result<(), BenchError> {
        self.attach()?;
        self.progress("traffic on the VF")?;
        self.detach(removal)?;
        self.progress("traffic on synthetic after the removal")?;
        self.samples.collect(&self.rig);
        self.cycles += 1;
        Ok(())
    }

    /// Offers the VF and waits until the port is on it.
    pub fn attach(&self) -> Result<(), BenchError> {
        let n = self.rig.port.stats().switches_to_vf;
        self.rig.host.offer_vf(SERIAL);
        self.wait("the port on the VF", |s| {
            s.state == PortState::OnVf && s.switches_to_vf > n
        })
    }

    /// Takes the VF away as `removal` says and waits until the port has released it and is
    /// synthetic.
    pub fn detach(&self, removal: Removal) -> Result<(), BenchError> {
        let released = self.rig.port.stats().vf_released;
        self.remove(removal)?;
        self.wait("the VF released and the port synthetic", |s| {
            s.state == PortState::Synthetic && s.vf_released > released
        })
    }

    /// Takes the VF away as `removal` says (for [`Removal::LinkFlap`], the port goes back
    /// to the VF before the planned removal).
    fn remove(&self, removal: Removal) -> Result<(), BenchError> {
        let (rig, traffic) = (&self.rig, &self.traffic);
        let done = match removal {
            Removal::PlannedAzure => rig.pci.eject_azure(WAIT),
            Removal::PlannedOpenVmm => rig.pci.remove_openvmm(WAIT),
            Removal::Surprise => {
                let mut noticed = Ok(());
                let removed = rig.pci.surprise_remove(
                    || {
                        let n = rig.port.stats().switches_to_synthetic.total();
                        noticed = self
                            .wait("the port off the dead VF", |s| {
                                s.switches_to_synthetic.total() > n
                            })
                            .and_then(|()| {
                                if traffic.wait_progress(200, WAIT) {
                                    Ok(())
                                } else {
                                    Err(stalled("traffic after the surprise removal"))
                                }
                            });
                    },
                    WAIT,
                );
                noticed?;
                removed
            }
            Removal::LinkFlap => {
                let vf = rig
                    .pci
                    .vf()
                    .ok_or_else(|| BenchError::Invalid("link flap: no VF bound".into()))?;
                vf.set_link(false);
                self.wait("the VF's link seen down", |s| s.vf_link_up == Some(false))?;
                vf.set_link(true);
                self.wait("the port back on the VF", |s| s.state == PortState::OnVf)?;
                rig.pci.eject_azure(WAIT)
            }
        };
        if done {
            Ok(())
        } else {
            Err(stalled(&format!("{}: the VF released", removal.describe())))
        }
    }

    /// Stops the traffic and accounts for every frame of the run.
    pub fn finish(self) -> Result<FailoverReport, BenchError> {
        let Self {
            rig,
            traffic,
            mut samples,
            cycles,
        } = self;
        let (counts, _) = traffic.stop(WAIT, |c| rig.account(c).balanced(c));
        let accounting = rig.account(&counts);
        if !accounting.balanced(&counts) {
            return Err(BenchError::Unaccounted(format!(
                "{accounting:?} {counts:?}"
            )));
        }
        if counts.guest_reordered + counts.peer_reordered > 0 {
            return Err(BenchError::Unaccounted(format!(
                "frames reordered: {} to the guest, {} from it",
                counts.guest_reordered, counts.peer_reordered
            )));
        }
        samples.collect(&rig);
        Ok(FailoverReport {
            cycles,
            samples,
            counts,
            accounting,
        })
    }

    /// The median of `n` rates of both directions together over `window` each (a 2-core
    /// machine running the host, the VF and the pollers moves single windows by a lot).
    pub fn steady_rate(&self, window: Duration, n: usize) -> f64 {
        super::median((0..n.max(1)).map(|_| self.traffic.rate(window)).collect())
    }

    fn wait(&self, what: &str, done: impl FnMut(&FailoverStats) -> bool) -> Result<(), BenchError> {
        if self.rig.port.wait_until(WAIT, done) {
            Ok(())
        } else {
            Err(stalled(what))
        }
    }

    fn progress(&self, what: &str) -> Result<(), BenchError> {
        if self.traffic.wait_progress(PROGRESS, WAIT) {
            Ok(())
        } else {
            Err(stalled(what))
        }
    }
}

fn stalled(what: &str) -> BenchError {
    BenchError::Stalled {
        what: what.to_string(),
        within: WAIT,
    }
}
