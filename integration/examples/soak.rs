//! The soak: the failover scenarios in a loop, under traffic both ways, on ONE long-lived
//! [`FailoverRig`] (reusing the rig across scenarios is what finds leaks), printing per
//! reporting period the loss accounting by reason, RSS, open file descriptors and threads.
//! `scripts/soak DURATION` runs it in release with both cores kept busy (`scripts/test` runs it
//! for 120 s as tier 2c). See `--help` and docs/testing.md.
//!
//! **The loop.** The port is put on a VF once, then these run round-robin, each starting and
//! ending with the port on the VF: planned removal in Azure's order and in OpenVMM's order,
//! surprise removal (each followed by a re-offer of the VF), the VF's link down and up, a PF
//! reset in place, and the host switching the data path back to synthetic (then advertising
//! the VF again). Every wait is on the port's state or on counters, with a deadline: a hang
//! fails the soak, it never blocks it.
//!
//! **Accounting.** Each scenario runs its own traffic (started, the scenario driven with
//! every port queue moving frames both ways before, during and after it, stopped once every
//! frame is accounted for).
//! The rig's counters are cumulative, so the traffic counts are summed over the runs and the
//! sum is accounted ([`FailoverRig::account`]); a scenario's losses are the difference of the
//! accounting before and after it. That is exact, not sampled.
//!
//! **Leaks.** At each report the traffic is stopped and the port is on the VF: the same point
//! of the loop every time. The first report ends the warm-up and is the baseline; later ones
//! may not have more file descriptors or threads than it, nor more than
//! [`RSS_TOLERANCE_KIB`] more resident memory, nor more than the current VF device alive.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bond::{FailoverQueue, FailoverStats, PortState, SwitchReason};
use integration::harness::failover::{Accounting, FailoverRig, FailoverRigConfig};
use integration::harness::process;
use integration::harness::traffic::{Traffic, TrafficConfig, TrafficCounts};

/// The VF's association serial.
const SERIAL: u32 = 7;
/// Upper bound of every wait (a hang fails the soak, it never blocks it).
const DEADLINE: Duration = Duration::from_secs(30);
/// Frames each direction must move in each phase of a scenario.
const PHASE_FRAMES: u64 = 1_000;
/// How much resident memory may grow over the warm-up baseline.
const RSS_TOLERANCE_KIB: u64 = 8 * 1024;
/// How long a measurement waits for released devices' threads and descriptors to go.
const SETTLE: Duration = Duration::from_secs(2);
/// Violations printed in full (with the rig's counters); later ones are only counted.
const VIOLATIONS_SHOWN: usize = 5;

const HELP: &str = "\
soak: the failover scenarios in a loop, under traffic both ways, on one long-lived failover
rig against the simulated host, checking that every lost frame is attributed to a reason and
that nothing grows.

usage: soak [--seconds N] [--report-every SECONDS] [--scenarios NAME,...]

  --seconds N              how long to loop (default 120)
  --report-every SECONDS   one report line per this many seconds (default 60)
  --scenarios NAME,...     loop only these (default: all six, in the order below), e.g. to
                           narrow down a failure: --scenarios pf-reset,host-switch
  -h, --help               this text

Normally run through scripts/soak DURATION, which builds this in release and keeps both cores
busy with stress-ng meanwhile. Scenarios, round-robin, each starting and ending on the VF:
  azure        planned removal, Azure's order (eject request first), then the VF offered again
  openvmm      planned removal, OpenVMM's order (host 129 {synthetic}, 128 {0}), offered again
  surprise     the device vanishes mid-traffic, then offered again
  flap         the VF's link goes down, then up
  pf-reset     the PF resets the VF in place
  host-switch  the host moves the data path to synthetic, then advertises the VF again

A report line (frames and losses are for the period, resources are now and against the
warm-up baseline):
  [  60.0s] scenarios 300 (azure 50 ...) | delivered to guest N, to peer N |
  lost overload N, stranded N, link-down N, failover N, unattributed N |
  rss 211.9 MiB (+0.1), fds 29 (+0), threads 4 (+0), vfs alive 1
The guest memory (rings, NIC buffers, pool, VF windows) is read once before the loop, so RSS
starts at its full size; growth is memory the process added.

It fails (exit 1) on:
  - an unattributed loss: a frame neither delivered nor in a drop counter (or counted twice),
    or the switch's refusals disagreeing with the peer's; a frame counted as lost by one
    scenario and delivered in a later one;
  - a frame lost by the failover itself, in any scenario;
  - in a planned scenario (azure, openvmm, host-switch, the first attach), anything lost but to
    overload (stranded, link-down, refused at injection);
  - a corrupt frame, or a frame reordered within its flow in a scenario where none of the
    port's bounded waits ran out (tx order, acknowledgement, drain: under starvation one may,
    and the port then trades order for liveness and counts it; such reorderings are shown
    as NOTE lines and in the summary);
  - a wait that ran out (30 s), a port queue that stopped while the others moved, or a VF
    that was not released;
  - growth: the first report ends the warm-up (or half the run, if shorter); at every later
    one (traffic stopped, the port on the VF) the open file descriptors and threads may not
    exceed the warm-up's at all, resident memory may not exceed it by more than 8 MiB, and
    only the current VF device may be alive.
Losses to overload (a poller or the peer that did not keep up), stranded frames (surprise
removal, PF reset) and frames lost to a link that went down are expected and only reported.
Exit 2: bad arguments.";

/// What the soak was asked to do.
#[derive(Debug)]
struct Args {
    seconds: u64,
    report_every: u64,
    scenarios: Vec<Kind>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        seconds: 120,
        report_every: 60,
        scenarios: Kind::LOOP.to_vec(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "{name}: {v:?} is not a whole number of seconds above 0"
                )),
            }
        };
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--seconds" => args.seconds = value("--seconds")?,
            "--report-every" => args.report_every = value("--report-every")?,
            "--scenarios" => {
                let list = it.next().ok_or("--scenarios needs a value")?;
                args.scenarios = list
                    .split(',')
                    .map(|name| {
                        Kind::LOOP
                            .into_iter()
                            .find(|k| k.name() == name)
                            .ok_or_else(|| format!("--scenarios: no scenario {name:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(args))
}

/// The scenarios of the loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The VF offered the first time (before the loop).
    Attach,
    Azure,
    OpenVmm,
    Surprise,
    LinkFlap,
    PfReset,
    HostSwitch,
}

impl Kind {
    /// The loop, in order.
    const LOOP: [Kind; 6] = [
        Kind::Azure,
        Kind::OpenVmm,
        Kind::Surprise,
        Kind::LinkFlap,
        Kind::PfReset,
        Kind::HostSwitch,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Attach => "attach",
            Kind::Azure => "azure",
            Kind::OpenVmm => "openvmm",
            Kind::Surprise => "surprise",
            Kind::LinkFlap => "flap",
            Kind::PfReset => "pf-reset",
            Kind::HostSwitch => "host-switch",
        }
    }

    /// Whether nothing may be lost but to overload (docs/failover.md, guarantee 1).
    fn planned(self) -> bool {
        matches!(
            self,
            Kind::Attach | Kind::Azure | Kind::OpenVmm | Kind::HostSwitch
        )
    }

    fn index(self) -> usize {
        Kind::LOOP.iter().position(|k| *k == self).unwrap_or(0)
    }
}

/// The rig's counters, for a failure message (what the suites' `evidence` shows).
fn evidence(rig: &FailoverRig) -> String {
    format!(
        "  bus: {:?}\n  port: {:?}\n  nic: {:?}\n  host: {:?}",
        rig.pci.stats(),
        rig.port.stats(),
        rig.port.nic().stats(),
        rig.host.stats(),
    )
}

fn wait(
    rig: &FailoverRig,
    what: &str,
    done: impl FnMut(&FailoverStats) -> bool,
) -> Result<(), String> {
    if rig.port.wait_until(DEADLINE, done) {
        Ok(())
    } else {
        Err(format!(
            "the port never got to: {what} (waited {DEADLINE:?})\n{}",
            evidence(rig)
        ))
    }
}

/// Frames each port queue must receive and transmit in each phase (a queue that stops is a
/// stall even while the others carry the phase's frames).
const QUEUE_PHASE_FRAMES: u64 = PHASE_FRAMES / 8;

/// Frames each port queue received and transmitted so far, on either path.
fn per_queue(rig: &FailoverRig) -> Vec<(u64, u64)> {
    rig.port
        .stats()
        .queues
        .iter()
        .map(|q| (q.rx_synthetic + q.rx_vf, q.tx_synthetic + q.tx_vf))
        .collect()
}

/// Waits until [`PHASE_FRAMES`] more frames moved each way and every port queue moved
/// [`QUEUE_PHASE_FRAMES`] each way.
fn flowing(rig: &FailoverRig, traffic: &Traffic<FailoverQueue>) -> Result<(), String> {
    let deadline = Instant::now() + DEADLINE;
    let before = per_queue(rig);
    if !traffic.wait_progress(PHASE_FRAMES, DEADLINE) {
        return Err(format!(
            "traffic stalled for {DEADLINE:?}: {:?}",
            traffic.counts()
        ));
    }
    loop {
        let now = per_queue(rig);
        let stalled: Vec<usize> = before
            .iter()
            .zip(&now)
            .enumerate()
            .filter(|(_, (b, n))| n.0 < b.0 + QUEUE_PHASE_FRAMES || n.1 < b.1 + QUEUE_PHASE_FRAMES)
            .map(|(i, _)| i)
            .collect();
        if stalled.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "port queue(s) {stalled:?} stalled for {DEADLINE:?} while the others moved \
                 (received, transmitted per queue: before {before:?}, now {now:?})\n{}",
                evidence(rig)
            ));
        }
        // Polling counters that move per frame: nothing to wait on but time.
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn ensure(ok: bool, what: &str) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what.to_string()) }
}

/// Waits until the port is (back) on the VF after `before`.
fn on_vf(rig: &FailoverRig, before: &FailoverStats) -> Result<(), String> {
    let n = before.switches_to_vf;
    wait(rig, "on the VF", |s| {
        s.state == PortState::OnVf && s.switches_to_vf > n
    })
}

/// Waits until the port released the VF after `before`, traffic flows on synthetic, then
/// offers the VF again and waits until the port is on it.
fn released_then_reoffer(
    rig: &FailoverRig,
    traffic: &Traffic<FailoverQueue>,
    before: &FailoverStats,
) -> Result<(), String> {
    let n = before.vf_released;
    wait(rig, "synthetic, the VF released", |s| {
        s.state == PortState::Synthetic && s.vf_released > n
    })?;
    flowing(rig, traffic)?;
    rig.host.offer_vf(SERIAL);
    on_vf(rig, before)
}

/// Drives one scenario while `traffic` runs; the port is on the VF before (but for
/// [`Kind::Attach`]) and after.
fn drive(kind: Kind, rig: &FailoverRig, traffic: &Traffic<FailoverQueue>) -> Result<(), String> {
    let before = rig.port.stats();
    let switched = |reason: SwitchReason| before.switches_to_synthetic.get(reason);
    match kind {
        Kind::Attach => {
            rig.host.offer_vf(SERIAL);
            on_vf(rig, &before)
        }
        Kind::Azure => {
            ensure(
                rig.pci.eject_azure(DEADLINE),
                "the VF was not released (Azure order)",
            )?;
            released_then_reoffer(rig, traffic, &before)
        }
        Kind::OpenVmm => {
            ensure(
                rig.pci.remove_openvmm(DEADLINE),
                "the VF was not released (OpenVMM order)",
            )?;
            released_then_reoffer(rig, traffic, &before)
        }
        Kind::Surprise => {
            let n = switched(SwitchReason::Removed);
            let mut meanwhile = Ok(());
            let released = rig.pci.surprise_remove(
                || {
                    meanwhile = wait(rig, "off the dead VF", |s| {
                        s.switches_to_synthetic.get(SwitchReason::Removed) > n
                    })
                    .and_then(|()| flowing(rig, traffic));
                },
                DEADLINE,
            );
            meanwhile?;
            ensure(released, "the dead VF was never released")?;
            released_then_reoffer(rig, traffic, &before)
        }
        Kind::LinkFlap => {
            let vf = rig.pci.vf().ok_or("no VF bound before the flap")?;
            let n = switched(SwitchReason::LinkDown);
            vf.set_link(false);
            wait(rig, "off the VF on link down", |s| {
                s.switches_to_synthetic.get(SwitchReason::LinkDown) > n
                    && s.state == PortState::VfAttaching
            })?;
            flowing(rig, traffic)?;
            vf.set_link(true);
            on_vf(rig, &before)
        }
        Kind::PfReset => {
            let vf = rig.pci.vf().ok_or("no VF bound before the reset")?;
            let n = switched(SwitchReason::VfReset);
            vf.pf_reset();
            wait(rig, "off the VF on the reset", |s| {
                s.switches_to_synthetic.get(SwitchReason::VfReset) > n
            })?;
            on_vf(rig, &before)
        }
        Kind::HostSwitch => {
            let n = switched(SwitchReason::HostSwitched);
            rig.host.force_synthetic();
            wait(
                rig,
                "synthetic, the VF kept, after the host's switch",
                |s| {
                    s.switches_to_synthetic.get(SwitchReason::HostSwitched) > n
                        && s.state == PortState::VfAttaching
                },
            )?;
            flowing(rig, traffic)?;
            // A new association is the change the port waits for before switching again.
            rig.host.offer_vf(SERIAL);
            on_vf(rig, &before)
        }
    }
}

/// `total + run`, for the counters the accounting reads.
fn sum(total: &TrafficCounts, run: &TrafficCounts) -> TrafficCounts {
    TrafficCounts {
        guest_sent: total.guest_sent + run.guest_sent,
        guest_received: total.guest_received + run.guest_received,
        guest_received_broadcast: total.guest_received_broadcast + run.guest_received_broadcast,
        guest_reordered: total.guest_reordered + run.guest_reordered,
        guest_bad: total.guest_bad + run.guest_bad,
        peer_injected: total.peer_injected + run.peer_injected,
        peer_injected_broadcast: total.peer_injected_broadcast + run.peer_injected_broadcast,
        peer_refused: total.peer_refused + run.peer_refused,
        peer_received: total.peer_received + run.peer_received,
        peer_reordered: total.peer_reordered + run.peer_reordered,
        peer_bad: total.peer_bad + run.peer_bad,
        notes: Vec::new(),
    }
}

/// Frames lost between two accountings, by reason and direction. Signed: a count that went
/// down means a frame counted as lost earlier was delivered later (that accounting was wrong).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Losses {
    rx_stranded: i64,
    rx_overload: i64,
    rx_link_down: i64,
    rx_failover: i64,
    rx_unaccounted: i64,
    refused: i64,
    tx_stranded: i64,
    tx_overload: i64,
    tx_link_down: i64,
    tx_unaccounted: i64,
}

impl Losses {
    /// `a − b`.
    fn between(a: &Accounting, b: &Accounting) -> Self {
        let d = |a: u64, b: u64| a as i64 - b as i64;
        Self {
            rx_stranded: d(a.rx_stranded, b.rx_stranded),
            rx_overload: d(a.rx_overload, b.rx_overload),
            rx_link_down: d(a.rx_link_down, b.rx_link_down),
            rx_failover: d(a.rx_failover, b.rx_failover),
            rx_unaccounted: a.rx_unaccounted - b.rx_unaccounted,
            refused: d(a.refused, b.refused),
            tx_stranded: d(a.tx_stranded, b.tx_stranded),
            tx_overload: d(a.tx_overload, b.tx_overload),
            tx_link_down: d(a.tx_link_down, b.tx_link_down),
            tx_unaccounted: a.tx_unaccounted - b.tx_unaccounted,
        }
    }

    fn fields(&self) -> [i64; 10] {
        [
            self.rx_stranded,
            self.rx_overload,
            self.rx_link_down,
            self.rx_failover,
            self.rx_unaccounted,
            self.refused,
            self.tx_stranded,
            self.tx_overload,
            self.tx_link_down,
            self.tx_unaccounted,
        ]
    }

    fn add(&mut self, o: &Losses) {
        self.rx_stranded += o.rx_stranded;
        self.rx_overload += o.rx_overload;
        self.rx_link_down += o.rx_link_down;
        self.rx_failover += o.rx_failover;
        self.rx_unaccounted += o.rx_unaccounted;
        self.refused += o.refused;
        self.tx_stranded += o.tx_stranded;
        self.tx_overload += o.tx_overload;
        self.tx_link_down += o.tx_link_down;
        self.tx_unaccounted += o.tx_unaccounted;
    }

    fn overload(&self) -> i64 {
        self.rx_overload + self.tx_overload
    }

    fn stranded(&self) -> i64 {
        self.rx_stranded + self.tx_stranded
    }

    fn link_down(&self) -> i64 {
        self.rx_link_down + self.tx_link_down
    }

    fn failover(&self) -> i64 {
        self.rx_failover
    }

    /// Frames in no count, both ways (absolute: one counted twice is as wrong as one
    /// missing).
    fn unattributed(&self) -> u64 {
        self.rx_unaccounted.unsigned_abs() + self.tx_unaccounted.unsigned_abs()
    }

    /// Whether a count went down (see the type's docs).
    fn went_down(&self) -> bool {
        self.fields().iter().any(|&n| n < 0)
    }
}

/// The loop's state: the rig, and everything counted so far.
#[derive(Debug)]
struct Soak {
    rig: FailoverRig,
    traffic: TrafficConfig,
    /// Traffic counts summed over every run.
    total: TrafficCounts,
    /// The accounting of `total`.
    accounted: Accounting,
    violations: Vec<String>,
    /// The scenario run before the current one.
    previous: Kind,
    /// Frames reordered in scenarios where a bound of the port ran out.
    reordered_after_bounds: u64,
}

/// The port's bounded waits that ran out (order across a switch, acknowledgement, drain):
/// each lets the port go on at the cost of order, and is counted.
fn bounds_run_out(s: &FailoverStats) -> u64 {
    let tx_order: u64 = s.queues.iter().map(|q| q.tx_order_timeouts).sum();
    tx_order + s.ack_timeouts + s.drain_timeouts
}

/// What one scenario did.
#[derive(Debug, Default)]
struct Outcome {
    losses: Losses,
    to_guest: u64,
    to_peer: u64,
}

impl Soak {
    /// One scenario under its own traffic run; `Err` if it hung (the rig's state is then
    /// unknown and the soak stops). Violations of the accounting are recorded, not returned.
    fn scenario(&mut self, kind: Kind) -> Result<Outcome, String> {
        let bounds_before = bounds_run_out(&self.rig.port.stats());
        let traffic = self.rig.start_traffic(self.traffic.clone());
        let driven = flowing(&self.rig, &traffic)
            .and_then(|()| drive(kind, &self.rig, &traffic))
            .and_then(|()| flowing(&self.rig, &traffic));
        let (rig, total, base) = (&self.rig, &self.total, &self.accounted);
        // Settled once this run's frames are all delivered or counted (earlier runs' balance,
        // whatever it is, is not this run's to wait for).
        let settled = |c: &TrafficCounts| {
            Losses::between(&rig.account(&sum(total, c)), base).unattributed() == 0
        };
        let (run, queues) = traffic.stop(DEADLINE, settled);
        self.rig.queues = queues;
        driven.map_err(|e| format!("{} (after {}): {e}", kind.name(), self.previous.name()))?;

        let total = sum(&self.total, &run);
        let accounted = self.rig.account(&total);
        let losses = Losses::between(&accounted, &self.accounted);
        let mut wrong = Vec::new();
        if losses.unattributed() != 0 {
            wrong.push("unattributed loss");
        }
        if losses.went_down() {
            wrong.push("frames counted as lost in an earlier scenario were delivered in this one");
        }
        if losses.refused != run.peer_refused as i64 {
            wrong.push("the switch's refusals disagree with the peer's");
        }
        if losses.failover() != 0 {
            wrong.push("frames lost by the failover");
        }
        if kind.planned()
            && (losses.stranded() != 0 || losses.link_down() != 0 || run.peer_refused != 0)
        {
            wrong.push("a planned scenario lost frames to something but overload");
        }
        if run.guest_bad + run.peer_bad != 0 {
            wrong.push("corrupt frames");
        }
        let reordered = run.guest_reordered + run.peer_reordered;
        let bounds = bounds_run_out(&self.rig.port.stats()) - bounds_before;
        if reordered != 0 && bounds == 0 {
            wrong.push("frames reordered with no bound run out");
        } else if reordered != 0 {
            // The port gave order up for liveness when a wait ran out, and counted it.
            println!(
                "NOTE {reordered} frames reordered in scenario {} (after {}) after {bounds} \
                 bound(s) ran out (counted by the port): {:?}",
                kind.name(),
                self.previous.name(),
                run.notes.first()
            );
            self.reordered_after_bounds += reordered;
        }
        if !wrong.is_empty() {
            self.violation(format!(
                "{} (scenario {}, after {})\n  this scenario: {losses:?}\n  its traffic: {run:?}\n{}",
                wrong.join(", "),
                kind.name(),
                self.previous.name(),
                evidence(&self.rig),
            ));
        }
        self.total = total;
        self.accounted = accounted;
        self.previous = kind;
        // The port's events are bounded, but an application drains them: so does the soak.
        while self.rig.port.next_event(Duration::ZERO).is_some() {}
        Ok(Outcome {
            losses,
            to_guest: run.guest_received + run.guest_received_broadcast,
            to_peer: run.peer_received,
        })
    }

    fn violation(&mut self, what: String) {
        if self.violations.len() < VIOLATIONS_SHOWN {
            println!("VIOLATION {what}");
        } else {
            println!("VIOLATION {}", what.lines().next().unwrap_or_default());
        }
        self.violations
            .push(what.lines().next().unwrap_or_default().to_string());
    }
}

/// Process resources at one point of the loop.
#[derive(Clone, Copy, Debug)]
struct Resources {
    rss_kib: u64,
    fds: usize,
    threads: usize,
    vfs_alive: u64,
}

/// Measures, waiting at most [`SETTLE`] for released devices to be gone and (given a
/// baseline) for descriptors and threads to come back to it: a released device's thread is
/// joined by whoever drops it last, a moment after the port reports the release.
fn measure(rig: &FailoverRig, baseline: Option<&Resources>) -> Resources {
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = Resources {
            rss_kib: process::rss_kib(),
            fds: process::open_fds(),
            threads: process::threads(),
            vfs_alive: rig.pci.stats().devices_alive,
        };
        let settled = now.vfs_alive <= 1
            && baseline.is_none_or(|b| now.fds <= b.fds && now.threads <= b.threads);
        if settled || Instant::now() >= deadline {
            return now;
        }
        std::thread::yield_now();
    }
}

/// Reads one byte of every page of the guest's memory (the bus memfd: rings, the NIC's
/// receive and send buffers, the packet pool, the VF windows), so all of it is resident from
/// the start, as a real guest's pinned memory is. Otherwise the buffers' first use, which
/// depends on how fast the loop runs, shows as growth long after the warm-up. Reading
/// changes nothing the host, the NIC or a VF sees.
fn touch_guest_memory(rig: &FailoverRig) {
    let memory = rig.host.guest_memory();
    let mut byte = [0u8; 1];
    for offset in (0..memory.len()).step_by(4096) {
        let _ = memory.read(offset, &mut byte);
    }
}

/// Counts over one reporting period.
#[derive(Debug, Default)]
struct Period {
    scenarios: [u64; Kind::LOOP.len()],
    to_guest: u64,
    to_peer: u64,
    losses: Losses,
}

impl Period {
    fn record(&mut self, kind: Kind, o: &Outcome) {
        if kind != Kind::Attach {
            self.scenarios[kind.index()] += 1;
        }
        self.to_guest += o.to_guest;
        self.to_peer += o.to_peer;
        self.losses.add(&o.losses);
    }

    fn merge(&mut self, other: &Period) {
        for (a, b) in self.scenarios.iter_mut().zip(other.scenarios) {
            *a += b;
        }
        self.to_guest += other.to_guest;
        self.to_peer += other.to_peer;
        self.losses.add(&other.losses);
    }

    fn scenarios_line(&self) -> String {
        let total: u64 = self.scenarios.iter().sum();
        let mut s = format!("scenarios {total} (");
        for (i, kind) in Kind::LOOP.iter().enumerate() {
            let sep = if i == 0 { "" } else { " " };
            let _ = write!(s, "{sep}{} {}", kind.name(), self.scenarios[i]);
        }
        s.push(')');
        s
    }

    fn losses_line(&self) -> String {
        let a = &self.losses;
        format!(
            "lost overload {}, stranded {}, link-down {}, failover {}, unattributed {}",
            a.overload(),
            a.stranded(),
            a.link_down(),
            a.failover(),
            a.unattributed()
        )
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn report(elapsed: Duration, period: &Period, now: &Resources, baseline: Option<&Resources>) {
    let resources = match baseline {
        None => format!(
            "rss {:.1} MiB, fds {}, threads {}, vfs alive {} (warm-up baseline)",
            mib(now.rss_kib),
            now.fds,
            now.threads,
            now.vfs_alive
        ),
        Some(b) => format!(
            "rss {:.1} MiB ({:+.1}), fds {} ({:+}), threads {} ({:+}), vfs alive {}",
            mib(now.rss_kib),
            (now.rss_kib as f64 - b.rss_kib as f64) / 1024.0,
            now.fds,
            now.fds as i64 - b.fds as i64,
            now.threads,
            now.threads as i64 - b.threads as i64,
            now.vfs_alive
        ),
    };
    println!(
        "[{:>7.1}s] {} | delivered to guest {}, to peer {} | {} | {}",
        elapsed.as_secs_f64(),
        period.scenarios_line(),
        period.to_guest,
        period.to_peer,
        period.losses_line(),
        resources
    );
}

/// The growth found at `now` against the warm-up `baseline`, if any.
fn growth(now: &Resources, baseline: &Resources) -> Vec<String> {
    let mut found = Vec::new();
    if now.fds > baseline.fds {
        found.push(format!(
            "open file descriptors grew from {} to {}",
            baseline.fds, now.fds
        ));
    }
    if now.threads > baseline.threads {
        found.push(format!(
            "threads grew from {} to {}",
            baseline.threads, now.threads
        ));
    }
    if now.rss_kib > baseline.rss_kib + RSS_TOLERANCE_KIB {
        found.push(format!(
            "resident memory grew by {:.1} MiB (more than {} MiB) over the warm-up's {:.1} MiB",
            mib(now.rss_kib - baseline.rss_kib),
            RSS_TOLERANCE_KIB / 1024,
            mib(baseline.rss_kib)
        ));
    }
    if now.vfs_alive > 1 {
        found.push(format!(
            "{} VF devices alive (released ones still held)",
            now.vfs_alive
        ));
    }
    found
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("soak: {e}\n\n{HELP}");
            return ExitCode::from(2);
        }
    };
    let run_for = Duration::from_secs(args.seconds);
    let every = Duration::from_secs(args.report_every);
    // The warm-up ends at the first report, or half-way through a run shorter than two periods.
    let warm_up = every.min(run_for / 2);
    println!(
        "soak: {}s of failover scenarios under traffic both ways, a report every {}s \
         (warm-up {:.0}s; resident memory may grow {} MiB over it, descriptors and threads not at all)",
        args.seconds,
        args.report_every,
        warm_up.as_secs_f64(),
        RSS_TOLERANCE_KIB / 1024
    );
    let rig = match FailoverRig::start(FailoverRigConfig::default()) {
        Ok(rig) => rig,
        Err(e) => {
            println!("FAIL: the failover rig did not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut soak = Soak {
        rig,
        traffic: TrafficConfig::default(),
        total: TrafficCounts::default(),
        accounted: Accounting::default(),
        violations: Vec::new(),
        previous: Kind::Attach,
        reordered_after_bounds: 0,
    };
    touch_guest_memory(&soak.rig);
    let started = Instant::now();
    let mut period = Period::default();
    let mut whole = Period::default();
    let mut baseline: Option<Resources> = None;
    let mut last: Option<Resources> = None;
    let mut next_report = warm_up;
    let mut hung = None;
    let sequence = std::iter::once(Kind::Attach).chain(args.scenarios.iter().copied().cycle());
    for kind in sequence {
        match soak.scenario(kind) {
            Ok(outcome) => period.record(kind, &outcome),
            Err(e) => {
                hung = Some(e);
                break;
            }
        }
        let elapsed = started.elapsed();
        let done = elapsed >= run_for;
        if elapsed < next_report && !done {
            continue;
        }
        let now = measure(&soak.rig, baseline.as_ref());
        report(elapsed, &period, &now, baseline.as_ref());
        match &baseline {
            None => baseline = Some(now),
            Some(b) => {
                for g in growth(&now, b) {
                    soak.violation(format!("growth at {:.0}s: {g}", elapsed.as_secs_f64()));
                }
            }
        }
        last = Some(now);
        whole.merge(&period);
        period = Period::default();
        while next_report <= elapsed {
            next_report += every;
        }
        if done {
            break;
        }
    }
    whole.merge(&period);
    summary(&soak, &whole, started.elapsed(), baseline, last, hung)
}

fn summary(
    soak: &Soak,
    whole: &Period,
    elapsed: Duration,
    baseline: Option<Resources>,
    last: Option<Resources>,
    hung: Option<String>,
) -> ExitCode {
    let a = &soak.accounted;
    let c = &soak.total;
    let port = soak.rig.port.stats();
    let bus = soak.rig.pci.stats();
    println!("\nsoak summary after {:.1}s", elapsed.as_secs_f64());
    println!("  {}", whole.scenarios_line());
    println!(
        "  frames: to the guest {} injected, {} delivered; from the guest {} sent, {} delivered",
        c.peer_injected + c.peer_injected_broadcast,
        c.guest_received + c.guest_received_broadcast,
        c.guest_sent,
        c.peer_received
    );
    println!(
        "  lost to the guest: overload {}, stranded {}, link-down {}, failover {}, unattributed {}",
        a.rx_overload, a.rx_stranded, a.rx_link_down, a.rx_failover, a.rx_unaccounted
    );
    println!(
        "  lost from the guest: overload {}, stranded {}, link-down {}, unattributed {}",
        a.tx_overload, a.tx_stranded, a.tx_link_down, a.tx_unaccounted
    );
    println!(
        "  refused at injection: {} (switch) / {} (peer); reordered after a bound ran out: {}",
        a.refused, c.peer_refused, soak.reordered_after_bounds
    );
    let reasons: Vec<String> = SwitchReason::ALL
        .iter()
        .filter(|r| port.switches_to_synthetic.get(**r) > 0)
        .map(|r| format!("{} {}", r.as_str(), port.switches_to_synthetic.get(*r)))
        .collect();
    println!(
        "  port: {} switches to the VF; to synthetic: {}; VFs attached {}, released {}, \
         attach errors {}; ack timeouts {}, drain timeouts {}, tx order timeouts {}, \
         switch errors {}",
        port.switches_to_vf,
        reasons.join(", "),
        port.vf_attached,
        port.vf_released,
        port.vf_attach_errors,
        port.ack_timeouts,
        port.drain_timeouts,
        port.queues.iter().map(|q| q.tx_order_timeouts).sum::<u64>(),
        port.switch_errors
    );
    println!(
        "  bus: {} devices made, {} failed to open (a starved mailbox; retried)",
        bus.devices, bus.open_failures
    );
    if let (Some(b), Some(l)) = (baseline, last) {
        println!(
            "  resources: rss {:.1} -> {:.1} MiB (tolerance +{} MiB), fds {} -> {}, threads {} -> {}",
            mib(b.rss_kib),
            mib(l.rss_kib),
            RSS_TOLERANCE_KIB / 1024,
            b.fds,
            l.fds,
            b.threads,
            l.threads
        );
    }
    let mut failed: Vec<String> = soak.violations.clone();
    if let Some(e) = hung {
        failed.push(format!("hung: {e}"));
    }
    if baseline.is_none() || last.is_none() {
        failed.push("no report was made (the run ended before the warm-up)".into());
    }
    if failed.is_empty() {
        println!(
            "PASS: every frame delivered or counted by its reason, the failover lost none, \
             nothing grew"
        );
        ExitCode::SUCCESS
    } else {
        println!("FAIL: {} problem(s):", failed.len());
        for f in &failed {
            println!("  - {f}");
        }
        ExitCode::FAILURE
    }
}
