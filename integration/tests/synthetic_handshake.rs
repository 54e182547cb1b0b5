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
