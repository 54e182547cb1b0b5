//! The guest's handshake against the simulated host at every NVSP version the host accepts,
//! and the fallback from 6.1: each version negotiates, reports the NDIS version the
//! specification pairs with it, and carries frames both ways.

mod common;

use std::time::{Duration, Instant};

use common::*;
use integration::host::{Fault, HostConfig, PortMode, SimHost};
use netvsc::nic::{NicConfig, SyntheticNic};
use netvsc::nvsp;
use packet::{MacAddr, PortQueue};

fn open(max_version: u32, queues: u16, refuse_above: Option<u32>) -> Rig {
    let (host, device) = SimHost::start(HostConfig {
        shm: small_shm(4),
        port: PortMode::External,
        ..HostConfig::default()
    })
    .unwrap();
    if let Some(v) = refuse_above {
        host.inject_fault(Fault::RefuseVersionsAbove(v));
    }
    let (nic, queues) = SyntheticNic::open(
        Box::new(device),
        NicConfig {
            max_nvsp_version: max_version,
            queues,
            ..NicConfig::default()
        },
    )
    .unwrap_or_else(|e| panic!("handshake at {max_version:#x}: {e}"));
    Rig { host, nic, queues }
}

fn one_frame_each_way(rig: &mut Rig) {
    let mac = rig.nic.mac();
    assert!(
        rig.host
            .external()
            .inject_on(0, &test_frame(mac, 0, 1, 200))
    );
    let p = rig
        .nic
        .pool()
        .alloc_from(&test_frame(MacAddr([2, 0, 0, 0, 0, 2]), 0, 2, 1514))
        .unwrap();
    send_all(&mut rig.queues[0], vec![p]);
    let deadline = Instant::now() + DEADLINE;
    let (mut rx, mut tx) = (false, false);
    let mut out = Vec::new();
    while !(rx && tx) {
        rig.queues[0].rx_burst(&mut out, 8);
        for p in out.drain(..) {
            assert_eq!(check_frame(p.data()), (0, 1));
            rx = true;
        }
        if let Some(f) = rig.host.external().recv(Duration::from_millis(1)) {
            assert_eq!(check_frame(&f), (0, 2));
            tx = true;
        }
        assert!(Instant::now() < deadline, "rx {rx} tx {tx}");
    }
}

#[test]
fn every_version_the_host_accepts_negotiates_and_carries_frames() {
    for version in nvsp::VERSIONS {
        let mut rig = open(version, 1, None);
        assert_eq!(rig.nic.nvsp_version(), version);
        assert_eq!(rig.host.stats().nvsp_version, Some(version));
        assert_eq!(rig.nic.ndis_version(), nvsp::ndis_version_for(version));
        assert_eq!(rig.nic.mac(), HostConfig::default().mac);
        assert_eq!(rig.nic.mtu(), 1500);
        assert!(rig.nic.link_up());
        one_frame_each_way(&mut rig);
    }
}

#[test]
fn the_guest_falls_back_from_6_1_one_version_at_a_time() {
    let versions = nvsp::VERSIONS;
    for pair in versions.windows(2) {
        let (refused, accepted) = (pair[0], pair[1]);
        let mut rig = open(nvsp::VERSION_61, 1, Some(accepted));
        assert_eq!(
            rig.nic.nvsp_version(),
            accepted,
            "after {refused:#x} was refused"
        );
        one_frame_each_way(&mut rig);
    }
}

#[test]
fn subchannels_need_nvsp_5_and_are_granted_from_it_on() {
    for version in nvsp::VERSIONS {
        let rig = open(version, 4, None);
        let expected = if version >= 0x50000 { 4 } else { 1 };
        assert_eq!(rig.nic.queue_count(), expected, "at {version:#x}");
        assert_eq!(rig.queues.len(), expected as usize);
        assert_eq!(rig.host.stats().subchannels_open, expected - 1);
    }
}

#[test]
fn the_link_queries_answer_the_link_as_it_is_now() {
    // DPDK's PMD learns the link only from OID_GEN_MEDIA_CONNECT_STATUS, re-queried after each
    // status indication: the host must answer the current link, not "connected" always.
    let rig = open(nvsp::VERSION_61, 1, None);
    let media = |rig: &Rig| {
        let answer = rig
            .nic
            .query_oid(netvsc::rndis::OID_GEN_MEDIA_CONNECT_STATUS, DEADLINE)
            .expect("the host answers the media query");
        u32::from_le_bytes(answer[..4].try_into().expect("four bytes"))
    };
    let link_state = |rig: &Rig| {
        let answer = rig
            .nic
            .query_oid(netvsc::rndis::OID_GEN_LINK_STATE, DEADLINE)
            .expect("the host answers the link-state query");
        // NDIS_LINK_STATE: a 4-byte object header, then MediaConnectState.
        u32::from_le_bytes(answer[4..8].try_into().expect("four bytes"))
    };
    assert_eq!(media(&rig), netvsc::rndis::MEDIA_STATE_CONNECTED);
    assert_eq!(
        link_state(&rig),
        netvsc::rndis::NDIS_MEDIA_CONNECT_STATE_CONNECTED
    );

    let next_link_event = |rig: &Rig| {
        std::iter::from_fn(|| rig.nic.next_event(DEADLINE)).find(|e| {
            matches!(
                e,
                netvsc::nic::NicEvent::LinkDown | netvsc::nic::NicEvent::LinkUp
            )
        })
    };
    rig.host.set_link(false);
    assert_eq!(next_link_event(&rig), Some(netvsc::nic::NicEvent::LinkDown));
    assert_eq!(media(&rig), netvsc::rndis::MEDIA_STATE_DISCONNECTED);
    assert_eq!(
        link_state(&rig),
        netvsc::rndis::NDIS_MEDIA_CONNECT_STATE_DISCONNECTED
    );

    rig.host.set_link(true);
    assert_eq!(next_link_event(&rig), Some(netvsc::nic::NicEvent::LinkUp));
    assert_eq!(media(&rig), netvsc::rndis::MEDIA_STATE_CONNECTED);
}
