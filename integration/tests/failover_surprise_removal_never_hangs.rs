//! Guarantee 2 (DESIGN §4): a surprise removal never hangs and never loses silently — the
//! frames stranded on the VF are counted, and traffic resumes on synthetic as soon as the
//! host delivers there.

mod failover_common;

use bond::{FailoverEvent, PortState, SwitchReason};
use failover_common::*;
use integration::harness::traffic::TrafficConfig;

#[test]
fn surprise_removal_counts_exactly_the_stranded_frames_and_never_hangs() {
    let mut rig = rig();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    attach(&rig);
    flowing(&traffic, PHASE_FRAMES);

    // The device vanishes mid-traffic. The port notices on its own (all-ones reads), moves
    // to synthetic and says so with its own 129; only then does the host notice.
    let released = rig.pci.surprise_remove(
        || {
            wait_port(&rig, "off the VF after the surprise", |s| {
                s.switches_to_synthetic.get(SwitchReason::Removed) == 1
            });
            flowing(&traffic, PHASE_FRAMES);
        },
        DEADLINE,
    );
    assert!(released, "the dead VF was never released");
    wait_port(&rig, "synthetic, VF released", |s| {
        s.state == PortState::Synthetic && s.vf_released == 1
    });
    flowing(&traffic, PHASE_FRAMES);
    let counts = finish_accounted(traffic, &rig);
    assert!(counts.guest_received > 0 && counts.peer_received > 0);

    let stats = rig.port.stats();
    assert_eq!(stats.vf, None);
    // The release event reports the same stranded count the port's counter holds.
    let mut reported = None;
    while let Some(event) = rig.port.next_event(std::time::Duration::ZERO) {
        if let FailoverEvent::VfReleased {
            reason, tx_lost, ..
        } = event
        {
            assert_eq!(reason, SwitchReason::Removed);
            reported = Some(tx_lost);
        }
    }
    assert_eq!(reported, Some(stats.lost_vf_tx));
}

#[test]
fn surprise_removal_without_traffic_loses_nothing_and_releases_the_device() {
    let rig = rig();
    attach(&rig);
    assert!(rig.pci.surprise_remove(|| {}, DEADLINE));
    wait_port(&rig, "synthetic, VF released", |s| {
        s.state == PortState::Synthetic && s.vf_released == 1
    });
    let stats = rig.port.stats();
    assert_eq!(stats.lost_vf_tx, 0, "{stats:#?}");
    assert_eq!(
        rig.pci.stats().devices_alive,
        0,
        "something still holds the dead VF"
    );
}
