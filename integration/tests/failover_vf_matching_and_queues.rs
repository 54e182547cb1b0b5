//! Which VF the port takes and when: a VF whose MAC is not the port's is refused; a VF whose
//! link is down is bound but not switched to until its link comes up; and a VF with fewer
//! queues than the port serves every port queue (transmit folds onto the VF's queues); and
//! a host that associates another VF while the port is on one has the first left in order
//! and released before the second is taken.

mod failover_common;

use bond::{FailoverEvent, PortState, SwitchReason};
use failover_common::*;
use integration::harness::failover::FailoverRigConfig;
use integration::harness::traffic::TrafficConfig;
use packet::MacAddr;

#[test]
fn a_vf_with_another_mac_is_refused_and_released() {
    let mut config = FailoverRigConfig::default();
    // The PF insists on its own MAC for the VF, not the synthetic NIC's.
    config.pci.admin_mac = Some(MacAddr([0x02, 0xaa, 0, 0, 0, 0x01]));
    config.failover.vf_appear_timeout = std::time::Duration::from_secs(5);
    let rig = rig_with(config);
    rig.host.offer_vf(SERIAL);
    wait_port(&rig, "the mismatch", |s| s.vf_mac_mismatches >= 1);
    let stats = rig.port.stats();
    assert_eq!(stats.state, PortState::Synthetic, "{stats:#?}");
    assert_eq!(stats.vf_attached, 0);
    assert!(!rig.host.data_path_vf());
    let reported = std::iter::from_fn(|| rig.port.next_event(DEADLINE))
        .find(|e| matches!(e, FailoverEvent::VfAttachFailed { .. }));
    let Some(FailoverEvent::VfAttachFailed { error, .. }) = reported else {
        panic!("no VfAttachFailed event");
    };
    assert!(error.contains("02:aa:00:00:00:01"), "{error}");
    let vf = rig.pci.vf().expect("the device is still on the bus");
    assert!(vf.released(), "a refused VF must be given back");
}

#[test]
fn a_vf_with_its_link_down_is_bound_but_not_used_until_the_link_comes_up() {
    let mut config = FailoverRigConfig::default();
    config.pci.link_up = false;
    let mut rig = rig_with(config);
    let traffic = traffic(&mut rig, TrafficConfig::default());
    rig.host.offer_vf(SERIAL);
    wait_port(&rig, "bound, link down", |s| {
        s.state == PortState::VfAttaching && s.vf_link_up == Some(false)
    });
    flowing(&traffic, PHASE_FRAMES);
    assert_eq!(rig.port.stats().switches_to_vf, 0);
    assert!(!rig.host.data_path_vf());
    rig.pci.vf().expect("bound").set_link(true);
    wait_port(&rig, "on the VF", |s| s.state == PortState::OnVf);
    flowing(&traffic, PHASE_FRAMES);
    finish_lossless(traffic, &rig);
}

#[test]
fn four_port_queues_over_a_two_queue_vf_lose_nothing() {
    let mut config = FailoverRigConfig::default();
    config.nic.queues = 4;
    let mut rig = rig_with(config);
    assert_eq!(rig.port.queue_count(), 4);
    // Two port queues' flows share each VF receive ring: keep both windows within one ring.
    let traffic = traffic(
        &mut rig,
        TrafficConfig {
            window: 64,
            ..TrafficConfig::default()
        },
    );
    attach(&rig);
    flowing(&traffic, PHASE_FRAMES);
    let stats = rig.port.stats();
    assert!(
        stats.queues.iter().all(|q| q.tx_vf > 0),
        "every port queue transmits on the VF: {stats:#?}"
    );
    assert!(stats.queues[..2].iter().all(|q| q.rx_vf > 0), "{stats:#?}");
    assert!(stats.queues[2..].iter().all(|q| q.rx_vf == 0), "{stats:#?}");
    assert!(rig.pci.eject_azure(DEADLINE));
    wait_port(&rig, "released", |s| s.vf_released == 1);
    flowing(&traffic, PHASE_FRAMES);
    finish_lossless(traffic, &rig);
}

#[test]
fn a_host_associating_another_vf_has_the_first_left_and_released() {
    let mut rig = rig();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    attach(&rig);
    flowing(&traffic, PHASE_FRAMES);
    let first = rig.pci.vf().expect("the first VF is on the bus");

    rig.host.offer_vf(SERIAL + 1);
    wait_port(&rig, "on the second VF", |s| {
        s.state == PortState::OnVf && s.switches_to_vf == 2
    });
    flowing(&traffic, PHASE_FRAMES);
    finish_lossless(traffic, &rig);

    let stats = rig.port.stats();
    assert_eq!(stats.vf_attached, 2, "{stats:#?}");
    assert_eq!(
        stats.vf_released, 1,
        "the first VF was never released: {stats:#?}"
    );
    assert_eq!(
        stats
            .switches_to_synthetic
            .get(SwitchReason::AssociationRemoved),
        1,
        "{stats:#?}"
    );
    assert!(first.released(), "the first VF's driver still holds it");
    let released = std::iter::from_fn(|| rig.port.next_event(std::time::Duration::ZERO))
        .find(|e| matches!(e, FailoverEvent::VfReleased { serial, .. } if *serial == SERIAL));
    assert!(released.is_some(), "no VfReleased event for the first VF");
}
