//! Shared set-up of the failover suites: a [`FailoverRig`] under [`Traffic`], and the
//! accounting every suite checks at the end.

#![allow(dead_code)]

use std::time::Duration;

use bond::{FailoverQueue, FailoverStats, PortState};
use integration::harness::failover::{Accounting, FailoverRig, FailoverRigConfig};
use integration::harness::traffic::{Traffic, TrafficConfig, TrafficCounts};

/// Upper bound of every wait in these suites (a hang fails the test, it never blocks it).
pub const DEADLINE: Duration = Duration::from_secs(30);
/// The VF's association serial.
pub const SERIAL: u32 = 7;
/// Frames each direction must move in each phase of a scenario.
pub const PHASE_FRAMES: u64 = 2_000;

pub fn rig() -> FailoverRig {
    rig_with(FailoverRigConfig::default())
}

pub fn rig_with(config: FailoverRigConfig) -> FailoverRig {
    FailoverRig::start(config).expect("starting the failover rig")
}

/// Starts traffic over the rig's queues.
pub fn traffic(rig: &mut FailoverRig, config: TrafficConfig) -> Traffic<FailoverQueue> {
    rig.start_traffic(config)
}

/// Waits until the port's counters satisfy `done`, failing the test after [`DEADLINE`].
pub fn wait_port(rig: &FailoverRig, what: &str, done: impl FnMut(&FailoverStats) -> bool) {
    assert!(
        rig.port.wait_until(DEADLINE, done),
        "port never got to: {what}; stats: {:#?}",
        rig.port.stats()
    );
}

/// Offers the VF and waits until the port is on it.
pub fn attach(rig: &FailoverRig) {
    let before = rig.port.stats().switches_to_vf;
    rig.host.offer_vf(SERIAL);
    wait_port(rig, "on the VF", |s| {
        s.state == PortState::OnVf && s.switches_to_vf > before
    });
}

/// Waits for `frames` more frames both ways (those the traffic config enables).
pub fn flowing(traffic: &Traffic<FailoverQueue>, frames: u64) {
    assert!(
        traffic.wait_progress(frames, DEADLINE),
        "traffic stalled: {:?}",
        traffic.counts()
    );
}

/// Stops traffic once every frame is accounted for (or after [`DEADLINE`]), by `settled`.
pub fn finish(
    traffic: Traffic<FailoverQueue>,
    settled: impl Fn(&TrafficCounts) -> bool,
) -> TrafficCounts {
    traffic.stop(DEADLINE, settled).0
}

/// Stops traffic once every frame is accounted for, and checks a planned scenario's promise
/// (docs/failover.md): the accounting balances, order is kept, and nothing is lost but to
/// overload (a starved poller; the paced peer makes even that rare): nothing stranded,
/// nothing lost to the failover or a link, nothing refused.
pub fn finish_lossless(traffic: Traffic<FailoverQueue>, rig: &FailoverRig) -> TrafficCounts {
    let (counts, a) = finish_accounted_with(traffic, rig);
    let context = evidence(&a, &counts, rig);
    assert_eq!(counts.peer_refused, 0, "refused at injection: {context}");
    assert_eq!(a.stranded(), 0, "stranded in a planned scenario: {context}");
    assert_eq!(a.link_down(), 0, "lost to a link: {context}");
    counts
}

pub fn assert_no_reordering(counts: &TrafficCounts) {
    assert_eq!(
        counts.guest_reordered, 0,
        "reordered towards the guest: {counts:?}"
    );
    assert_eq!(
        counts.peer_reordered, 0,
        "reordered towards the peer: {counts:?}"
    );
    assert_eq!(
        counts.guest_bad, 0,
        "corrupt frames at the guest: {counts:?}"
    );
    assert_eq!(counts.peer_bad, 0, "corrupt frames at the peer: {counts:?}");
}

/// Everything a failed accounting check should show.
pub fn evidence(a: &Accounting, c: &TrafficCounts, rig: &FailoverRig) -> String {
    format!(
        "{a:?}\n{c:?}\nbus: {:?}\nport: {:?}\nhost: {:?}\nnic: {:?}",
        rig.pci.stats(),
        rig.port.stats(),
        rig.host.stats(),
        rig.port.nic().stats()
    )
}

/// Whether every frame is accounted for ([`FailoverRig::account`]), with the evidence if not.
pub fn accounted(c: &TrafficCounts, rig: &FailoverRig) -> Result<Accounting, String> {
    let a = rig.account(c);
    if a.balanced(c) {
        Ok(a)
    } else {
        Err(evidence(&a, c, rig))
    }
}

/// Stops traffic once every frame is accounted for, and checks that, the order, and that
/// the failover itself lost nothing (frames may be stranded by a surprise removal or lost to
/// a link that went down: each counted by its reason).
pub fn finish_accounted(traffic: Traffic<FailoverQueue>, rig: &FailoverRig) -> TrafficCounts {
    finish_accounted_with(traffic, rig).0
}

/// [`finish_accounted`], returning the accounting too.
pub fn finish_accounted_with(
    traffic: Traffic<FailoverQueue>,
    rig: &FailoverRig,
) -> (TrafficCounts, Accounting) {
    let counts = finish(traffic, |c| accounted(c, rig).is_ok());
    if counts.guest_reordered + counts.peer_reordered > 0 {
        // The port's counters say whether a bound ran out (and the switch went on anyway).
        eprintln!("reordered; the port: {:#?}", rig.port.stats());
    }
    assert_no_reordering(&counts);
    let a = match accounted(&counts, rig) {
        Ok(a) => a,
        Err(e) => panic!("not every frame is accounted for: {e}"),
    };
    assert_eq!(
        a.failover_lost(),
        0,
        "lost by the failover: {}",
        evidence(&a, &counts, rig)
    );
    if a.overload() > 0 {
        eprintln!("overload drops (a poller did not keep up): {a:?}");
    }
    (counts, a)
}
