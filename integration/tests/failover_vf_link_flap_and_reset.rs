//! The VF's link flapping, and the PF resetting the VF in place (a service reset): the port
//! leaves the VF, keeps it bound, and returns to it afterwards without binding it again.
//! Order holds throughout and every frame is delivered or counted.

mod failover_common;

use bond::{PortState, SwitchReason};
use failover_common::*;
use integration::harness::traffic::TrafficConfig;

#[test]
fn vf_link_flap_moves_to_synthetic_and_back_keeping_the_vf() {
    let mut rig = rig();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    attach(&rig);
    flowing(&traffic, PHASE_FRAMES);
    let vf = rig.pci.vf().expect("a VF is bound");
    for flap in 1..=3u64 {
        vf.set_link(false);
        wait_port(&rig, "off the VF on link down", |s| {
            s.switches_to_synthetic.get(SwitchReason::LinkDown) == flap
                && s.state == PortState::VfAttaching
        });
        flowing(&traffic, PHASE_FRAMES);
        vf.set_link(true);
        wait_port(&rig, "back on the VF on link up", |s| {
            s.state == PortState::OnVf && s.switches_to_vf == flap + 1
        });
        flowing(&traffic, PHASE_FRAMES);
    }
    finish_accounted(traffic, &rig);
    let stats = rig.port.stats();
    assert_eq!(
        stats.vf_attached, 1,
        "the VF must not be bound again: {stats:#?}"
    );
    assert_eq!(stats.vf_released, 0);
}

#[test]
fn in_place_vf_reset_returns_to_the_vf_without_rebinding() {
    let mut rig = rig();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    attach(&rig);
    flowing(&traffic, PHASE_FRAMES);
    let vf = rig.pci.vf().expect("a VF is bound");
    vf.pf_reset();
    wait_port(&rig, "off the VF on the reset", |s| {
        s.switches_to_synthetic.get(SwitchReason::VfReset) == 1
    });
    wait_port(&rig, "back on the VF after the reset", |s| {
        s.state == PortState::OnVf && s.switches_to_vf == 2
    });
    flowing(&traffic, PHASE_FRAMES);
    finish_accounted(traffic, &rig);
    let stats = rig.port.stats();
    assert_eq!(stats.vf_attached, 1, "{stats:#?}");
    assert_eq!(stats.vf_released, 0, "{stats:#?}");
}

/// A flap and an eject each right after the port got back on the VF: the pollers may not
/// have handed out what synthetic received before the switch yet, and the host moves back
/// to synthetic at once. Ten rounds under load; order and accounting checked.
#[test]
fn a_flap_then_an_eject_right_after_each_switch_keep_order() {
    let mut rig = rig();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    for round in 1..=10u64 {
        attach(&rig);
        let vf = rig.pci.vf().expect("a VF is bound");
        vf.set_link(false);
        wait_port(&rig, "the link down seen", |s| s.vf_link_up == Some(false));
        vf.set_link(true);
        wait_port(&rig, "back on the VF", |s| s.state == PortState::OnVf);
        assert!(rig.pci.eject_azure(DEADLINE));
        wait_port(&rig, "released", |s| {
            s.state == PortState::Synthetic && s.vf_released == round
        });
        flowing(&traffic, PHASE_FRAMES / 4);
    }
    finish_accounted(traffic, &rig);
}

/// A PF that goes into reset and stays there: the port leaves the VF at once, waits
/// `vf_reset_timeout` on its clock, then gives the VF up; traffic never stops.
#[test]
fn a_vf_stuck_in_reset_is_given_up_after_its_bound() {
    let mut rig = rig();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    attach(&rig);
    flowing(&traffic, PHASE_FRAMES);
    rig.pci.vf().expect("a VF is bound").pf_reset_begin();
    wait_port(&rig, "off the VF on the reset", |s| {
        s.switches_to_synthetic.get(SwitchReason::VfReset) == 1
    });
    flowing(&traffic, PHASE_FRAMES);
    assert_eq!(rig.port.stats().vf_released, 0, "not before the bound");
    rig.clock.advance(
        integration::harness::failover::FailoverRigConfig::default()
            .failover
            .vf_reset_timeout,
    );
    wait_port(&rig, "the stuck VF given up", |s| {
        s.vf_reset_timeouts == 1 && s.vf_released == 1 && s.state == PortState::Synthetic
    });
    flowing(&traffic, PHASE_FRAMES);
    finish_accounted(traffic, &rig);
}
