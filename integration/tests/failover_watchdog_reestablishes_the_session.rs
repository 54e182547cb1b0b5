//! Guarantee 7 (DESIGN §4): a dead host channel is found by the watchdog (its keepalive
//! goes unanswered) and the NVSP session is re-established; the port reports it, keeps its
//! identity (MAC, queues) and carries traffic again, in order.

mod failover_common;

use bond::{FailoverEvent, PortState};
use failover_common::*;
use integration::host::Fault;
use integration::traffic::TrafficConfig;

fn watchdog_recovers(with_vf: bool) {
    let mut rig = rig();
    let mac = rig.port.mac();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    if with_vf {
        attach(&rig);
    }
    flowing(&traffic, PHASE_FRAMES);

    rig.host.inject_fault(Fault::DeadChannel);
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

fn rig_config() -> integration::failover_rig::FailoverRigConfig {
    integration::failover_rig::FailoverRigConfig::default()
}

#[test]
fn a_dead_channel_is_reestablished_keeping_the_port_identity() {
    watchdog_recovers(false);
}

#[test]
fn a_dead_channel_under_a_vf_is_reestablished_and_the_vf_kept() {
    watchdog_recovers(true);
}
