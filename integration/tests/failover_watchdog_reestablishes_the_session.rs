//! Guarantee 7 (DESIGN §4): a dead host channel is found by the watchdog (its keepalive
//! goes unanswered) and the NVSP session is re-established; the port reports it, keeps its
//! identity (MAC, queues) and carries traffic again, in order. The new session starts with
//! no VF association: a VF its host no longer offers is not switched to again, and is
//! released once the time a VF is given to appear has passed.

mod failover_common;

use bond::{FailoverEvent, PortState, SwitchReason};
use failover_common::*;
use integration::harness::traffic::TrafficConfig;
use integration::host::Fault;

fn watchdog_recovers(with_vf: bool) {
    let mut rig = rig();
    let mac = rig.port.mac();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    if with_vf {
        attach(&rig);
    }
    flowing(&traffic, PHASE_FRAMES);

    rig.host.inject_fault(Fault::DeadChannel);
    // Applied before the keepalive is due: a host thread the scheduler set aside could
    // otherwise still answer it, and nothing would ever make the port look again.
    assert!(
        rig.host.settle(DEADLINE),
        "the host never applied the fault"
    );
    // The next keepalive is due one watchdog interval later on the port's clock.
    rig.clock.advance(rig_config().failover.watchdog_interval);
    wait_port(&rig, "the session re-established", |s| {
        s.watchdog_reestablished == 1
    });
    flowing(&traffic, PHASE_FRAMES);
    let counts = finish(traffic, |_| true);
    assert_no_reordering(&counts);

    assert_eq!(rig.port.mac(), mac, "the port changed identity");
    assert_eq!(rig.port.nic().stats().reestablished, 1);
    assert_eq!(rig.host.stats().reopens, 1);
    let expected = if with_vf {
        PortState::OnVf
    } else {
        PortState::Synthetic
    };
    wait_port(&rig, "the same data path as before", |s| {
        s.state == expected
    });
    if with_vf {
        wait_port(&rig, "the host back on the VF", |_| rig.host.data_path_vf());
    }
    let reported = std::iter::from_fn(|| rig.port.next_event(std::time::Duration::ZERO))
        .any(|e| matches!(e, FailoverEvent::SessionReestablished { .. }));
    assert!(reported, "no SessionReestablished event");
}

fn rig_config() -> integration::harness::failover::FailoverRigConfig {
    integration::harness::failover::FailoverRigConfig::default()
}

#[test]
fn a_dead_channel_is_reestablished_keeping_the_port_identity() {
    watchdog_recovers(false);
}

#[test]
fn a_dead_channel_under_a_vf_is_reestablished_and_the_vf_kept() {
    watchdog_recovers(true);
}

#[test]
fn a_session_reestablished_without_its_vf_never_switches_back_and_releases_it() {
    let mut rig = rig();
    let config = rig_config().failover;
    let traffic = traffic(&mut rig, TrafficConfig::default());
    attach(&rig);
    flowing(&traffic, PHASE_FRAMES);

    // The channel dies, then the host drops the VF: its 128 {0} is never written. The new
    // session has no VF to advertise.
    rig.host.inject_fault(Fault::DeadChannel);
    rig.host.remove_vf();
    assert!(
        rig.host.settle(DEADLINE),
        "the host never applied the fault"
    );
    rig.clock.advance(config.watchdog_interval);
    wait_port(&rig, "the session re-established, the VF unused", |s| {
        s.watchdog_reestablished == 1 && s.state == PortState::VfAttaching
    });
    flowing(&traffic, PHASE_FRAMES);
    assert_eq!(
        rig.port.stats().switches_to_vf,
        1,
        "switched back to a VF the new session never offered"
    );
    assert!(!rig.host.data_path_vf());

    rig.clock.advance(config.vf_appear_timeout);
    wait_port(&rig, "the orphaned VF released", |s| {
        s.state == PortState::Synthetic && s.vf.is_none() && s.vf_released == 1
    });
    flowing(&traffic, PHASE_FRAMES);
    finish_accounted(traffic, &rig);
    let stats = rig.port.stats();
    assert_eq!(stats.switches_to_vf, 1, "{stats:#?}");
    assert_eq!(
        stats
            .switches_to_synthetic
            .get(SwitchReason::SessionReestablished),
        1,
        "{stats:#?}"
    );
}
