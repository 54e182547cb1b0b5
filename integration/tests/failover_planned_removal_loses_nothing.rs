//! Guarantee 1 (DESIGN §4): a planned removal loses nothing — every frame `tx_burst` accepted
//! reaches the far end, every frame the host put on the VF is drained before release — in
//! both orders real hosts use, under load both ways, with order kept within every flow.

mod failover_common;

use bond::{PortState, SwitchReason};
use failover_common::*;
use integration::harness::traffic::TrafficConfig;

#[test]
fn planned_removal_in_azure_order_loses_nothing() {
    let mut rig = rig();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    flowing(&traffic, PHASE_FRAMES);
    attach(&rig);
    flowing(&traffic, PHASE_FRAMES);
    let host = rig.host.stats();
    assert!(
        host.rx_to_vf > 0,
        "the host never steered to the VF: {host:?}"
    );
    assert!(
        host.tx_from_vf > 0,
        "the guest never sent on the VF: {host:?}"
    );

    // Eject first (the VFIO request IRQ); the association goes only after the release.
    assert!(rig.pci.eject_azure(DEADLINE), "the VF was not released");
    wait_port(&rig, "back on synthetic", |s| {
        s.state == PortState::Synthetic && s.vf_released == 1
    });
    flowing(&traffic, PHASE_FRAMES);
    finish_lossless(traffic, &rig);

    let stats = rig.port.stats();
    assert_eq!(
        stats
            .switches_to_synthetic
            .get(SwitchReason::ReleaseRequested),
        1
    );
    assert_eq!(stats.lost_vf_tx, 0, "{stats:#?}");
    assert_eq!(stats.drain_timeouts, 0, "{stats:#?}");
    assert_eq!(stats.ack_timeouts, 0, "{stats:#?}");
    let vf_rx: u64 = stats.queues.iter().map(|q| q.rx_vf).sum();
    let vf_tx: u64 = stats.queues.iter().map(|q| q.tx_vf).sum();
    assert!(vf_rx > 0 && vf_tx > 0, "{stats:#?}");
    assert_eq!(rig.host.stats().rx_dropped_vf, 0);
    // The released VF's own counters are the port's: what its driver handed out is what the
    // queues took from it, and what the queues gave it, it sent.
    let vf = rig.port.vf_stats();
    assert_eq!((vf.rx_packets, vf.tx_packets), (vf_rx, vf_tx), "{vf:#?}");
    assert_eq!(
        vf.tx_lost + vf.rx_no_buffer + vf.rx_dropped_reset,
        0,
        "{vf:#?}"
    );
}

#[test]
fn planned_removal_in_openvmm_order_loses_nothing() {
    let mut rig = rig();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    attach(&rig);
    flowing(&traffic, PHASE_FRAMES);

    // The host moves the data path itself (129 {synthetic}), then drops the association
    // (128 {0}), then waits for the guest to let the device go.
    assert!(rig.pci.remove_openvmm(DEADLINE), "the VF was not released");
    wait_port(&rig, "back on synthetic", |s| {
        s.state == PortState::Synthetic && s.vf_released == 1
    });
    flowing(&traffic, PHASE_FRAMES);
    finish_lossless(traffic, &rig);

    let stats = rig.port.stats();
    assert_eq!(stats.switches_to_synthetic.total(), 1, "{stats:#?}");
    assert_eq!(stats.lost_vf_tx, 0, "{stats:#?}");
    assert_eq!(rig.host.stats().rx_dropped_vf, 0);
}
