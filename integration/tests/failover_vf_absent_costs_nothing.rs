//! Guarantee 5 (DESIGN §4): a VF absent for minutes (host servicing) costs nothing but its
//! speed — the port carries everything on synthetic — and it is re-attached automatically
//! when the host offers it again.

mod failover_common;

use std::time::Duration;

use bond::PortState;
use failover_common::*;
use integration::harness::traffic::TrafficConfig;

#[test]
fn a_vf_absent_for_60_seconds_is_reattached_when_offered_again() {
    let mut rig = rig();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    attach(&rig);
    flowing(&traffic, PHASE_FRAMES);
    assert!(rig.pci.eject_azure(DEADLINE));
    wait_port(&rig, "on synthetic, VF released", |s| {
        s.state == PortState::Synthetic && s.vf_released == 1
    });

    // A minute of servicing on the port's clock, traffic flowing throughout.
    for _ in 0..60 {
        rig.clock.advance(Duration::from_secs(1));
        flowing(&traffic, PHASE_FRAMES / 20);
    }
    let absent = rig.port.stats();
    assert_eq!(absent.state, PortState::Synthetic);
    assert_eq!(
        absent.vf_attach_errors + absent.vf_appear_timeouts,
        0,
        "{absent:#?}"
    );
    assert_eq!(absent.watchdog_reestablished, 0, "{absent:#?}");
    assert!(absent.watchdog_failures == 0, "{absent:#?}");

    rig.host.offer_vf(SERIAL);
    wait_port(&rig, "back on a new VF", |s| {
        s.state == PortState::OnVf && s.vf_attached == 2 && s.switches_to_vf == 2
    });
    flowing(&traffic, PHASE_FRAMES);
    let counts = finish_lossless(traffic, &rig);
    assert!(counts.guest_received > 0);
    assert_eq!(rig.pci.stats().devices, 2);
}
