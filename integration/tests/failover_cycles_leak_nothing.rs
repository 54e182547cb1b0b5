//! Guarantee 6 (DESIGN §4): attach/remove cycles leak no memory, file descriptor, DMA
//! memory or thread. 1000 cycles (the VF offered, bound, switched to, ejected, released),
//! resources measured after a warm-up and again at the end.

mod failover_common;

use std::time::Duration;

use bond::PortState;
use failover_common::*;
use integration::harness::failover::{FailoverRigConfig, VF_WINDOWS};
use integration::harness::process::{open_fds, rss_kib, threads};

const CYCLES: u64 = 1000;
const WARM_UP: u64 = 2 * VF_WINDOWS as u64;

fn cycle(rig: &integration::harness::failover::FailoverRig, n: u64) {
    rig.host.offer_vf(SERIAL);
    wait_port(rig, "on the VF", |s| {
        s.state == PortState::OnVf && s.switches_to_vf == n
    });
    assert!(rig.pci.eject_azure(DEADLINE), "cycle {n}: VF not released");
    wait_port(rig, "released", |s| {
        s.state == PortState::Synthetic && s.vf_released == n
    });
}

#[test]
fn a_thousand_attach_remove_cycles_leak_nothing() {
    let mut config = FailoverRigConfig::default();
    config.host.vf_device_delay = Duration::ZERO;
    let rig = rig_with(config);
    for n in 1..=WARM_UP {
        cycle(&rig, n);
    }
    let fds = open_fds();
    let thread_count = threads();
    let rss = rss_kib();
    let pool = rig.port.pool().available();
    for n in WARM_UP + 1..=CYCLES {
        cycle(&rig, n);
    }
    // The leak checks first: nothing about how the cycles went may keep them from running.
    let bus = rig.pci.stats();
    assert_eq!(bus.devices_alive, 0, "released VFs still held by something");
    assert_eq!(open_fds(), fds, "file descriptors leaked");
    assert_eq!(threads(), thread_count, "threads leaked");
    assert_eq!(rig.port.pool().available(), pool, "packet buffers leaked");
    let grown = rss_kib().saturating_sub(rss);
    assert!(
        grown < 16 * 1024,
        "resident memory grew by {grown} KiB over the cycles"
    );

    let stats = rig.port.stats();
    assert_eq!(stats.vf_attached, CYCLES);
    assert_eq!(stats.vf_released, CYCLES);
    assert_eq!(stats.lost_vf_tx, 0);
    assert_eq!(
        stats.ack_timeouts + stats.drain_timeouts + stats.switch_errors,
        0,
        "{stats:#?}"
    );
    // On a loaded machine the simulated PF's mailbox thread can be starved past the driver's
    // mailbox timeout: that open fails, is counted, and the port probes again, which makes
    // one more device. Every device is an attachment or a counted failed open.
    assert_eq!(bus.devices, CYCLES + bus.open_failures, "{bus:?}");
    assert!(stats.vf_attach_errors >= bus.open_failures, "{stats:#?}");
}
