//! Guarantee 3 (DESIGN §4): no reordering within a queue across a switch, in either
//! direction. Twenty switches each way under load both ways, alternating the removal orders
//! real hosts use, with a broadcast flow that stays on synthetic throughout; every flow is
//! checked at the far end and nothing may be lost.

mod failover_common;

use bond::PortState;
use failover_common::*;
use integration::harness::traffic::TrafficConfig;

const SWITCHES: u64 = 20;

#[test]
fn twenty_switches_each_way_under_load_reorder_and_lose_nothing() {
    let mut rig = rig();
    let traffic = traffic(
        &mut rig,
        TrafficConfig {
            broadcast_every: 4,
            ..TrafficConfig::default()
        },
    );
    for n in 1..=SWITCHES {
        rig.host.offer_vf(SERIAL);
        wait_port(&rig, "on the VF", |s| {
            s.state == PortState::OnVf && s.switches_to_vf == n
        });
        flowing(&traffic, PHASE_FRAMES / 4);
        let released = if n % 2 == 0 {
            rig.pci.eject_azure(DEADLINE)
        } else {
            rig.pci.remove_openvmm(DEADLINE)
        };
        assert!(released, "switch {n}: the VF was not released");
        wait_port(&rig, "on synthetic", |s| {
            s.state == PortState::Synthetic && s.vf_released == n
        });
        flowing(&traffic, PHASE_FRAMES / 4);
    }
    let counts = finish_lossless(traffic, &rig);
    assert!(counts.guest_received_broadcast > 0);
    let stats = rig.port.stats();
    let rx_vf: u64 = stats.queues.iter().map(|q| q.rx_vf).sum();
    assert!(rx_vf > 0, "{stats:#?}");
    assert_eq!(stats.switches_to_synthetic.total(), SWITCHES);
}
