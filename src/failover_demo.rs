//! The failover part of `hvnet demo`: a FailoverPort over the synthetic NIC and a software
//! SR-IOV VF on the simulated host, under traffic both ways, through the scenarios of
//! `--scenario` (a planned removal, a surprise removal, a link flap, a servicing absence),
//! repeated for `--duration`, with a live line of the rates, the data path and the switches.
//!
//! With `--metrics-addr` a publisher thread samples the port (as `hvnet run` does) while the
//! scenario runs, and the port's events feed the duration histograms as they are read;
//! `--hold SECONDS` keeps each phase that long so a scraper sees each.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bond::{FailoverEvent, FailoverQueue, FailoverStats, PortState, SwitchReason};
use integration::harness::failover::{Accounting, FailoverRig, FailoverRigConfig};
use integration::harness::traffic::{Traffic, TrafficConfig, TrafficCounts};

use crate::live::Console;
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

fn print_switch(events: &Events<'_>, console: &Console) {
    if let Some((reason, failover, complete)) = switched_back(events) {
        console.line(&format!(
            "  left the VF ({}): transmit on synthetic after {:.3} ms, VF drained and released after {:.3} ms",
            reason.as_str(),
            failover.as_secs_f64() * 1e3,
            complete.as_secs_f64() * 1e3
        ));
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

/// A failover scenario of the demo (`--scenario`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// The VF ejected the Azure way (request IRQ, then the association): nothing lost.
    Planned,
    /// The VF vanishes mid-traffic: the port moves at once, the stranded frames counted.
    Surprise,
    /// The VF's link goes down and up: to synthetic and back, the VF kept.
    Flap,
    /// The VF is away a while (host servicing), then offered again.
    Servicing,
    /// Each of the above, in that order.
    All,
}

impl Scenario {
    /// The scenarios this one stands for.
    fn steps(self) -> &'static [Scenario] {
        match self {
            Self::All => &[Self::Planned, Self::Surprise, Self::Flap, Self::Servicing],
            Self::Planned => &[Self::Planned],
            Self::Surprise => &[Self::Surprise],
            Self::Flap => &[Self::Flap],
            Self::Servicing => &[Self::Servicing],
        }
    }
}

/// What the failover part runs.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Queues of the NIC (at most 2 are used).
    pub queues: u16,
    /// How long each phase is held.
    pub hold: Duration,
    /// Whether the metrics recorder is installed (the port is then sampled).
    pub metrics: bool,
    /// The scenarios.
    pub scenario: Scenario,
    /// Repeat them until this much time passed (at least once).
    pub duration: Option<Duration>,
}

/// How often the live line is redrawn.
const LIVE_EVERY: Duration = Duration::from_millis(250);

/// Runs the failover part (see [`Plan`]): each phase held for `hold`, the port sampled for
/// the metrics endpoint when the recorder is installed, a live line while it runs.
pub fn run(plan: &Plan) -> anyhow::Result<()> {
    let mut config = FailoverRigConfig::default();
    config.nic.queues = plan.queues.min(2);
    let console = Console::stdout();
    console.line(&format!(
        "failover: a FailoverPort over the synthetic NIC and a software 82576 VF on the simulated host ({} queues)",
        config.nic.queues
    ));
    let mut rig = FailoverRig::start(config).context("starting the failover rig")?;
    let traffic = rig.start_traffic(TrafficConfig::default());
    let rig = &rig;
    let labels = PortLabels::new(DEVICE);
    let events = Events {
        rig,
        labels: &labels,
        read: RefCell::new(VecDeque::new()),
    };
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        let publisher = if plan.metrics {
            let (labels, port) = (&labels, &rig.port);
            let sample = move || vec![port_sample(labels, port, |_| VF_DRIVER.to_owned())];
            Some(
                telemetry::Publisher::scoped(s, telemetry::PublisherConfig::default(), sample)
                    .context("starting the metrics publisher")?,
            )
        } else {
            None
        };
        let (console, traffic, done) = (&console, &traffic, &done);
        s.spawn(move || live(rig, traffic, console, done));
        let result = scenarios(rig, traffic, &events, plan, console);
        done.store(true, Ordering::Release);
        // A last sample, with the end of the scenario in it.
        drop(publisher);
        result
    });
    console.clear();
    result?;
    finish(rig, traffic)
}

/// The live line until `done`: the rates each way (by path), the data path, the switches.
fn live(rig: &FailoverRig, traffic: &Traffic<FailoverQueue>, console: &Console, done: &AtomicBool) {
    let started = Instant::now();
    let path_counts = |s: &FailoverStats| {
        s.queues.iter().fold((0u64, 0u64), |(syn, vf), q| {
            (
                syn + q.rx_synthetic + q.tx_synthetic,
                vf + q.rx_vf + q.tx_vf,
            )
        })
    };
    let mut last = (
        Instant::now(),
        traffic.counts(),
        path_counts(&rig.port.stats()),
    );
    while !done.load(Ordering::Acquire) {
        // A redraw period, not a synchronisation: the line shows whatever the counters say.
        std::thread::sleep(LIVE_EVERY);
        let (now, counts, stats) = (Instant::now(), traffic.counts(), rig.port.stats());
        let paths = path_counts(&stats);
        let seconds = now.duration_since(last.0).as_secs_f64().max(1e-6);
        let per_second = |a: u64, b: u64| b.saturating_sub(a) as f64 / seconds / 1e3;
        console.status(&format!(
            "[{:>6.1} s] on {:<9} | to guest {:>7.1} k/s  from guest {:>7.1} k/s | synthetic {:>7.1} k/s  VF {:>7.1} k/s | switches to VF {} back {} | lost (counted) {}",
            started.elapsed().as_secs_f64(),
            match stats.state {
                PortState::OnVf => "the VF",
                _ => "synthetic",
            },
            per_second(last.1.guest_received, counts.guest_received),
            per_second(last.1.peer_received, counts.peer_received),
            per_second(last.2.0, paths.0),
            per_second(last.2.1, paths.1),
            stats.switches_to_vf,
            stats.switches_to_synthetic.total(),
            rig.account(&counts).stranded() + rig.account(&counts).link_down(),
        ));
        last = (now, counts, paths);
    }
}

/// The scenarios of `plan`, repeated until its duration passed (at least once).
fn scenarios(
    rig: &FailoverRig,
    traffic: &Traffic<FailoverQueue>,
    events: &Events<'_>,
    plan: &Plan,
    console: &Console,
) -> anyhow::Result<()> {
    ensure!(
        traffic.wait_progress(2_000, WAIT),
        "no traffic on synthetic"
    );
    console.line(&format!(
        "  synthetic only: {:.0} frames/s both ways",
        traffic.rate(Duration::from_millis(200))
    ));
    hold_phase(events, plan.hold);
    let deadline = plan.duration.map(|d| Instant::now() + d);
    loop {
        for &scenario in plan.scenario.steps() {
            one(scenario, rig, traffic, events, plan.hold, console)?;
        }
        if deadline.is_none_or(|d| Instant::now() >= d) {
            return Ok(());
        }
    }
}

/// Offers the VF and waits until the port is on it (its `n`th switch to the VF).
fn onto_the_vf(
    rig: &FailoverRig,
    traffic: &Traffic<FailoverQueue>,
    console: &Console,
    n: u64,
) -> anyhow::Result<()> {
    console.line(
        "host offers the VF (NVSP 128); the port binds it, waits for its link and switches (NVSP 129)",
    );
    rig.host.offer_vf(SERIAL);
    wait(rig, "on the VF", |s| {
        s.state == PortState::OnVf && s.switches_to_vf == n
    })?;
    ensure!(traffic.wait_progress(2_000, WAIT), "no traffic on the VF");
    console.line(&format!(
        "  on the VF: {:.0} frames/s both ways",
        traffic.rate(Duration::from_millis(200))
    ));
    Ok(())
}

/// Takes the VF away the planned way (Azure's order) and waits for its release.
fn eject(
    rig: &FailoverRig,
    events: &Events<'_>,
    console: &Console,
    released: u64,
) -> anyhow::Result<()> {
    console.line(
        "planned removal, Azure order: the VFIO request IRQ first, the association after the release",
    );
    ensure!(rig.pci.eject_azure(WAIT), "the VF was not released");
    wait(rig, "released", |s| {
        s.state == PortState::Synthetic && s.vf_released == released
    })?;
    print_switch(events, console);
    Ok(())
}

/// One scenario, from synthetic without a VF back to synthetic without one.
fn one(
    scenario: Scenario,
    rig: &FailoverRig,
    traffic: &Traffic<FailoverQueue>,
    events: &Events<'_>,
    hold: Duration,
    console: &Console,
) -> anyhow::Result<()> {
    let before = rig.port.stats();
    let (to_vf, released) = (before.switches_to_vf, before.vf_released);
    onto_the_vf(rig, traffic, console, to_vf + 1)?;
    hold_phase(events, hold);
    match scenario {
        Scenario::Planned | Scenario::All => eject(rig, events, console, released + 1)?,
        Scenario::Surprise => {
            console.line(
                "surprise removal: the VF vanishes mid-traffic; the port notices and moves at once",
            );
            let removed = before.switches_to_synthetic.get(SwitchReason::Removed);
            let gone = rig.pci.surprise_remove(
                || {
                    let _ = rig.port.wait_until(WAIT, |s| {
                        s.switches_to_synthetic.get(SwitchReason::Removed) == removed + 1
                    });
                },
                WAIT,
            );
            ensure!(gone, "the dead VF was not released");
            wait(rig, "released", |s| {
                s.state == PortState::Synthetic && s.vf_released == released + 1
            })?;
            print_switch(events, console);
        }
        Scenario::Flap => {
            let vf = rig.pci.vf().context("no VF to flap")?;
            console.line("the VF's link goes down: the port leaves it and keeps it");
            vf.set_link(false);
            let back = before.switches_to_synthetic.total();
            wait(rig, "off the VF on link down", |s| {
                s.state != PortState::OnVf
                    && s.vf_link_up == Some(false)
                    && s.switches_to_synthetic.total() == back + 1
            })?;
            print_switch(events, console);
            hold_phase(events, hold);
            console.line("the link comes back: the port switches to the VF again");
            vf.set_link(true);
            wait(rig, "back on the VF", |s| {
                s.state == PortState::OnVf && s.switches_to_vf == to_vf + 2
            })?;
            ensure!(traffic.wait_progress(2_000, WAIT), "no traffic on the VF");
            hold_phase(events, hold);
            eject(rig, events, console, released + 1)?;
        }
        Scenario::Servicing => {
            console.line("host servicing: the VF is taken away and stays away a while");
            eject(rig, events, console, released + 1)?;
            ensure!(
                traffic.wait_progress(5_000, WAIT),
                "no traffic while the VF was away"
            );
            hold_phase(events, hold);
            console.line("servicing over: the host offers the VF again");
            onto_the_vf(rig, traffic, console, to_vf + 2)?;
            hold_phase(events, hold);
            eject(rig, events, console, released + 2)?;
        }
    }
    ensure!(
        traffic.wait_progress(2_000, WAIT),
        "no traffic after the VF left"
    );
    hold_phase(events, hold);
    Ok(())
}

/// Stops the traffic and reports where every frame went.
fn finish(rig: &FailoverRig, traffic: Traffic<FailoverQueue>) -> anyhow::Result<()> {
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
