//! The guest's clean detach against the simulated host, as Linux and DPDK do it: packet filter
//! 0, RNDIS HALT, what is in flight drained, then REVOKE_RECEIVE_BUFFER and REVOKE_SEND_BUFFER.
//! The host counts one HALT, then both revokes, in that order; every frame sent either way
//! before the close is received or in exactly one drop counter; a failover port leaves its VF
//! before any of it.

mod common;

use std::time::Instant;

use bond::{PortState, SwitchReason};
use common::*;
use integration::harness::failover::{FailoverRig, FailoverRigConfig};
use integration::host::{HostStats, TeardownStep};
use netvsc::nic::NicError;
use packet::PortQueue;

const CLEAN: [TeardownStep; 3] = [
    TeardownStep::RndisHalt,
    TeardownStep::ReceiveBufferRevoked,
    TeardownStep::SendBufferRevoked,
];

/// Waits (bounded) until the host's counters satisfy `done`.
fn wait_host(host: &integration::host::SimHost, what: &str, done: impl Fn(&HostStats) -> bool) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stats = host.stats();
        if done(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the host never got to: {what}; {stats:#?}"
        );
        std::thread::yield_now();
    }
}

#[test]
fn a_close_with_traffic_in_flight_halts_then_revokes_and_accounts_for_every_frame() {
    let mut rig = start(2, 1500, small_shm(2));
    let mac = rig.nic.mac();
    let pool = rig.nic.pool().clone();
    let queues = rig.queues.len() as u16;
    assert_eq!(queues, 2);

    // From the guest: bursts nobody waits for, their completions still to come.
    let mut taken = 0u64;
    for (q, queue) in rig.queues.iter_mut().enumerate() {
        for seq in 0..200u32 {
            let frame = test_frame(mac, q as u16, seq, 60 + (seq as usize * 37) % 1450);
            let mut burst: Vec<_> = pool.alloc_from(&frame).into_iter().collect();
            taken += queue.tx_burst(&mut burst) as u64;
        }
    }
    // Towards the guest, right before the close: 2000 frames a queue, more than its share of
    // the receive buffer (4 MiB in 1806-byte sub-allocations, 16 for control, ~1150 a queue),
    // so some still wait in the host when the close sets the packet filter to 0.
    let mut injected = 0u64;
    let mut refused = 0u64;
    for seq in 0..4000u32 {
        let q = (seq % 2) as u16;
        if rig
            .host
            .external()
            .inject_on(q, &test_frame(mac, q, seq, 60 + (seq as usize % 1400)))
        {
            injected += 1;
        } else {
            refused += 1;
        }
    }
    assert!(taken > 0, "nothing was sent before the close");

    rig.nic.close(DEADLINE).expect("the close");
    wait_host(&rig.host, "both revokes", |s| s.send_buffer_revokes == 1);
    let host = rig.host.stats();
    assert_eq!(host.teardown, CLEAN, "{host:#?}");
    assert_eq!(
        (
            host.rndis_halts,
            host.receive_buffer_revokes,
            host.send_buffer_revokes
        ),
        (1, 1, 1)
    );
    assert_eq!(host.protocol_errors, 0, "{:?}", host.last_error);
    assert_eq!(
        host.packet_filter, 0,
        "the close stops the host's receives first"
    );

    // Guest → host: every frame tx_burst took reached the external port, whole.
    let mut arrived = 0u64;
    while let Some((_, frame)) = rig.host.external().try_recv() {
        check_frame(&frame);
        arrived += 1;
    }
    let nic = rig.nic.stats();
    let tx_failed: u64 = nic.queues.iter().map(|q| q.tx_failed).sum();
    let tx_dropped: u64 = nic.queues.iter().map(|q| q.tx_dropped).sum();
    assert_eq!((tx_failed, tx_dropped), (0, 0), "{nic:#?}");
    assert_eq!(host.tx_dropped_port_full, 0);
    assert_eq!(arrived, taken, "sent {taken}, the far end got {arrived}");
    assert_eq!(host.tx_packets, taken);

    // Host → guest: what the close read is the application's; then the queues are done.
    let mut received = 0u64;
    for queue in &mut rig.queues {
        let mut got = Vec::new();
        while queue.rx_burst(&mut got, 64) > 0 {}
        for p in &got {
            check_frame(p.data());
        }
        received += got.len() as u64;
        assert!(queue.is_closed());
    }
    let nic = rig.nic.stats();
    let guest_drops: u64 = nic
        .queues
        .iter()
        .map(|q| q.rx_dropped_overflow + q.rx_dropped_no_buffer + q.rx_dropped_malformed)
        .sum();
    let host_drops = host.rx_dropped_no_queue
        + host.rx_dropped_filtered
        + host.rx_dropped_no_buffer
        + host.rx_dropped_ring_full
        + host.rx_dropped_oversize
        + host.rx_dropped_revoked;
    assert_eq!(
        host.rx_delivered,
        received + guest_drops,
        "frames the host put in the rings that the guest neither handed out nor counted"
    );
    assert_eq!(
        injected + refused,
        received + guest_drops + host_drops,
        "injected {injected} (+{refused} refused), received {received}, guest drops \
         {guest_drops}, host drops {host_drops}: {host:#?}"
    );
    assert_eq!(rig.host.external().pending_to_guest(), 0);
    assert!(received > 0, "nothing was delivered before the close");
    assert!(
        host.rx_dropped_revoked > 0,
        "no frame was still waiting in the host at the close: {host:#?}"
    );
}

#[test]
fn a_closed_nic_refuses_control_calls_and_a_second_close_sends_nothing() {
    let rig = start(1, 1500, small_shm(1));
    rig.nic.close(DEADLINE).expect("the close");
    wait_host(&rig.host, "both revokes", |s| s.send_buffer_revokes == 1);
    rig.nic.close(DEADLINE).expect("closing again");
    assert!(matches!(rig.nic.keepalive(DEADLINE), Err(NicError::Closed)));
    assert!(matches!(
        rig.nic.reestablish(DEADLINE),
        Err(NicError::Closed)
    ));
    let host = rig.host.stats();
    assert_eq!(host.teardown, CLEAN);
    assert_eq!(host.reopens, 0);
}

#[test]
fn a_failover_port_leaves_its_vf_before_it_halts_and_revokes() {
    let rig = FailoverRig::start(FailoverRigConfig::default()).expect("the failover rig");
    rig.host.offer_vf(7);
    assert!(
        rig.port
            .wait_until(DEADLINE, |s| s.state == PortState::OnVf),
        "the port never got on the VF: {:#?}",
        rig.port.stats()
    );
    assert!(rig.host.data_path_vf());

    rig.port.close();
    let host = rig.host.stats();
    assert_eq!(host.teardown, CLEAN, "{host:#?}");
    assert_eq!(
        host.data_path_vf_at_halt,
        Some(false),
        "the HALT came while the data path was the VF"
    );
    assert_eq!(host.data_path_switches.last(), Some(&false));
    assert!(!rig.host.data_path_vf());
    let port = rig.port.stats();
    assert_eq!(port.state, PortState::Synthetic);
    assert_eq!(port.vf, None);
    assert_eq!((port.vf_attached, port.vf_released), (1, 1));
    assert_eq!(port.switches_to_synthetic.get(SwitchReason::Shutdown), 1);
    assert!(rig.port.nic().is_closed());
}
