//! The failover part of `hvnet demo`: a FailoverPort over the synthetic NIC and a software
//! SR-IOV VF on the simulated host, under traffic both ways, through a planned removal, a
//! re-offer and a surprise removal.
//!
//! With `--metrics-addr` a publisher thread samples the port (as `hvnet run` does) while the
//! scenario runs, and the port's events feed the duration histograms as they are read;
//! `--hold SECONDS` keeps each phase that long so a scraper sees each.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use anyhow::{Context, ensure};
use bond::{FailoverEvent, FailoverQueue, FailoverStats, PortState, SwitchReason};
use integration::harness::failover::{Accounting, FailoverRig, FailoverRigConfig};
use integration::harness::traffic::{Traffic, TrafficConfig, TrafficCounts};

use crate::run::metrics::{PortLabels, port_sample};

/// Bound of every wait of the demo.
const WAIT: Duration = Duration::from_secs(30);
/// The VF's association serial (its PCI slot).
const SERIAL: u32 = 7;
/// The `device` label of the demo's port.
pub const DEVICE: &str = "demo";
/// The driver that runs the simulated VF (hvnet's, against the software 82576 VF).
const VF_DRIVER: &str = "igbvf";

fn wait(
    rig: &FailoverRig,
    what: &str,
    done: impl FnMut(&FailoverStats) -> bool,
) -> anyhow::Result<()> {
    ensure!(
        rig.port.wait_until(WAIT, done),
        "the port never got to: {what} ({:?})",
        rig.port.stats()
    );
    Ok(())
}

/// The port's events, each fed to the metrics as it is read.
struct Events<'a> {
    rig: &'a FailoverRig,
    labels: &'a PortLabels,
    read: RefCell<VecDeque<FailoverEvent>>,
}

impl Events<'_> {
    /// The next event: one read before, else one within `timeout`.
    fn next(&self, timeout: Duration) -> Option<FailoverEvent> {
        if let Some(e) = self.read.borrow_mut().pop_front() {
            return Some(e);
        }
        let e = self.rig.port.next_event(timeout)?;
        self.labels.observe(&e);
        Some(e)
    }

    /// Reads the events there are now (the histograms see them at once).
    fn pull(&self) {
        while let Some(e) = self.rig.port.next_event(Duration::ZERO) {
            self.labels.observe(&e);
            self.read.borrow_mut().push_back(e);
        }
    }
}

fn switched_back(events: &Events<'_>) -> Option<(SwitchReason, Duration, Duration)> {
    std::iter::from_fn(|| events.next(Duration::from_millis(100))).find_map(|e| match e {
        FailoverEvent::SwitchedToSynthetic {
            reason,
            failover,
            complete,
        } => Some((reason, failover, complete)),
        _ => None,
    })
}

fn print_switch(events: &Events<'_>) {
    if let Some((reason, failover, complete)) = switched_back(events) {
        say!(
            "  left the VF ({}): transmit on synthetic after {:.3} ms, VF drained and released after {:.3} ms",
            reason.as_str(),
            failover.as_secs_f64() * 1e3,
            complete.as_secs_f64() * 1e3
        );
    }
}

/// Stays in the phase the scenario is in for `hold` (`--hold`: for a scraper or a person to
/// see it), the events read first so the histograms have them.
fn hold_phase(events: &Events<'_>, hold: Duration) {
    events.pull();
    if !hold.is_zero() {
        std::thread::sleep(hold);
    }
}

/// Runs the failover part: each phase held for `hold`; the port sampled for the metrics
/// endpoint when `metrics` (the recorder is installed).
pub fn run(queues: u16, hold: Duration, metrics: bool) -> anyhow::Result<()> {
    let mut config = FailoverRigConfig::default();
    config.nic.queues = queues.min(2);
    say!(
        "failover: a FailoverPort over the synthetic NIC and a software 82576 VF on the simulated host ({} queues)",
        config.nic.queues
    );
    let mut rig = FailoverRig::start(config).context("starting the failover rig")?;
    let traffic = rig.start_traffic(TrafficConfig::default());
    let rig = &rig;
    let labels = PortLabels::new(DEVICE);
    let events = Events {
        rig,
        labels: &labels,
        read: RefCell::new(VecDeque::new()),
    };
    std::thread::scope(|s| {
        let publisher = if metrics {
            let (labels, port) = (&labels, &rig.port);
            let sample = move || vec![port_sample(labels, port, |_| VF_DRIVER.to_owned())];
            Some(
                telemetry::Publisher::scoped(s, telemetry::PublisherConfig::default(), sample)
                    .context("starting the metrics publisher")?,
            )
        } else {
            None
        };
        let result = scenario(rig, traffic, &events, hold);
        // A last sample, with the end of the scenario in it.
        drop(publisher);
        result
    })
}

/// The scenario: synthetic, the VF, a planned removal, the VF again, a surprise removal.
fn scenario(
    rig: &FailoverRig,
    traffic: Traffic<FailoverQueue>,
    events: &Events<'_>,
    hold: Duration,
) -> anyhow::Result<()> {
    ensure!(
        traffic.wait_progress(2_000, WAIT),
        "no traffic on synthetic"
    );
    say!(
        "  synthetic only: {:.0} frames/s both ways",
        traffic.rate(Duration::from_millis(200))
    );
    hold_phase(events, hold);

    say!(
        "host offers the VF (NVSP 128); the port binds it, waits for its link and switches (NVSP 129)"
    );
    rig.host.offer_vf(SERIAL);
    wait(rig, "on the VF", |s| s.state == PortState::OnVf)?;
    say!(
        "  on the VF: {:.0} frames/s both ways",
        traffic.rate(Duration::from_millis(200))
    );
    hold_phase(events, hold);

    say!(
        "planned removal, Azure order: the VFIO request IRQ first, the association after the release"
    );
    ensure!(rig.pci.eject_azure(WAIT), "the VF was not released");
    wait(rig, "released", |s| {
        s.state == PortState::Synthetic && s.vf_released == 1
    })?;
    print_switch(events);
    hold_phase(events, hold);

    say!("the host offers the VF again; the port re-attaches it");
    rig.host.offer_vf(SERIAL);
    wait(rig, "on the VF again", |s| {
        s.state == PortState::OnVf && s.switches_to_vf == 2
    })?;
    ensure!(traffic.wait_progress(2_000, WAIT), "no traffic on the VF");
    hold_phase(events, hold);

    say!("surprise removal: the VF vanishes mid-traffic; the port notices and moves at once");
    let released = rig.pci.surprise_remove(
        || {
            let _ = rig.port.wait_until(WAIT, |s| {
                s.switches_to_synthetic.get(SwitchReason::Removed) == 1
            });
        },
        WAIT,
    );
    ensure!(released, "the dead VF was not released");
    wait(rig, "released", |s| {
        s.state == PortState::Synthetic && s.vf_released == 2
    })?;
    print_switch(events);
    ensure!(
        traffic.wait_progress(2_000, WAIT),
        "no traffic after the surprise removal"
    );
    hold_phase(events, hold);

    let (counts, _) = traffic.stop(WAIT, |c| rig.account(c).balanced(c));
    let a = rig.account(&counts);
    report(&counts, &rig.port.stats(), &a);
    ensure!(
        a.balanced(&counts),
        "frames unaccounted for: {a:?} {counts:?}"
    );
    ensure!(
        a.failover_lost() == 0,
        "frames lost by the failover itself: {a:?} {counts:?}"
    );
    ensure!(
        counts.guest_reordered + counts.peer_reordered == 0,
        "frames reordered: {counts:?}"
    );
    say!(
        "failover finished: no frame reordered; every frame delivered or counted where it was lost"
    );
    Ok(())
}

fn report(c: &TrafficCounts, s: &FailoverStats, a: &Accounting) {
    let rx_vf: u64 = s.queues.iter().map(|q| q.rx_vf).sum();
    let tx_vf: u64 = s.queues.iter().map(|q| q.tx_vf).sum();
    say!(
        "  to the guest: {} injected, {} received ({} through the VF), {} lost with the dead VF (counted)",
        c.peer_injected,
        c.guest_received,
        rx_vf,
        a.rx_stranded
    );
    say!(
        "  from the guest: {} sent ({} through the VF), {} arrived, {} stranded on the dead VF (counted)",
        c.guest_sent,
        tx_vf,
        c.peer_received,
        a.tx_stranded
    );
    if a.overload() + a.link_down() > 0 {
        say!(
            "  also counted: {} dropped because a poller or the peer did not keep up, {} on a VF link that went down",
            a.overload(),
            a.link_down()
        );
    }
    say!(
        "  switches to the VF {}, back {}, VFs attached {} released {}",
        s.switches_to_vf,
        s.switches_to_synthetic.total(),
        s.vf_attached,
        s.vf_released
    );
}
