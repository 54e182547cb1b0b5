//! Shared set-up of the failover suites: a [`FailoverRig`] under [`Traffic`], and the
//! accounting every suite checks at the end.

#![allow(dead_code)]

use std::time::Duration;

use bond::{FailoverQueue, FailoverStats, PortState};
use integration::failover_rig::{FailoverRig, FailoverRigConfig};
use integration::traffic::{Traffic, TrafficConfig, TrafficCounts};

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

/// Stops traffic expecting nothing lost, and checks that: every frame the port took reached
/// the peer, every frame the peer injected reached the guest, in order.
pub fn finish_lossless(traffic: Traffic<FailoverQueue>, rig: &FailoverRig) -> TrafficCounts {
    let counts = finish(traffic, |c| {
        c.peer_received == c.guest_sent
            && c.guest_received == c.peer_injected
            && c.guest_received_broadcast == c.peer_injected_broadcast
    });
    assert_no_reordering(&counts);
    let context = format!(
        "{counts:?}\nbus: {:?}\nhost: {:?}\nport: {:?}",
        rig.pci.stats(),
        rig.host.stats(),
        rig.port.stats()
    );
    assert_eq!(counts.peer_refused, 0, "{context}");
    assert_eq!(
        counts.peer_received, counts.guest_sent,
        "guest → peer lost frames: {context}"
    );
    assert_eq!(
        counts.guest_received, counts.peer_injected,
        "peer → guest lost frames: {context}"
    );
    assert_eq!(
        counts.guest_received_broadcast, counts.peer_injected_broadcast,
        "broadcasts lost: {context}"
    );
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

/// Whether every frame is accounted for ([`FailoverRig::account`]), with the evidence if not.
pub fn accounted(c: &TrafficCounts, rig: &FailoverRig) -> Result<(), String> {
    let a = rig.account(c);
    if a.complete {
        return Ok(());
    }
    Err(format!(
        "not accounted: {a:?}\n{c:?}\nbus: {:?}\nport: {:?}\nhost: {:?}\nnic: {:?}",
        rig.pci.stats(),
        rig.port.stats(),
        rig.host.stats(),
        rig.port.nic().stats()
    ))
}

/// Stops traffic once every frame is accounted for, and checks that, and the order.
pub fn finish_accounted(traffic: Traffic<FailoverQueue>, rig: &FailoverRig) -> TrafficCounts {
    let counts = finish(traffic, |c| accounted(c, rig).is_ok());
    assert_no_reordering(&counts);
    if let Err(e) = accounted(&counts, rig) {
        panic!("{e}");
    }
    counts
}
