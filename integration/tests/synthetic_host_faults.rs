//! Every injected host fault ends in a typed error or a counted drop on the guest side, never a
//! panic or a hang; where a real host allows it (a close and reopen of the channel), the guest
//! re-establishes the session and traffic flows again with the port's identity kept.

mod common;

use std::time::{Duration, Instant};

use common::*;
use integration::host::{Fault, HostConfig, PortMode};
use netvsc::nic::{NicConfig, NicError, NicEvent, SyntheticQueue};
use packet::{MacAddr, PortQueue};

const SHORT: Duration = Duration::from_millis(500);

fn rig() -> Rig {
    start_with(
        HostConfig {
            shm: small_shm(1),
            port: PortMode::External,
            link_delay: Duration::from_millis(50),
            ..HostConfig::default()
        },
        NicConfig {
            control_timeout: SHORT,
            ..NicConfig::default()
        },
    )
}

/// Injects `count` frames and polls until they all arrived or the deadline passed; returns
/// how many arrived.
fn receive(rig: &mut Rig, count: u32) -> u32 {
    let mac = rig.nic.mac();
    for i in 0..count {
        assert!(
            rig.host
                .external()
                .inject_on(0, &test_frame(mac, 0, i, 128))
        );
    }
    poll_rx(&mut rig.queues[0], count)
}

fn poll_rx(queue: &mut SyntheticQueue, count: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut got = 0;
    let mut out = Vec::new();
    while got < count && Instant::now() < deadline {
        queue.rx_burst(&mut out, 64);
        for p in out.drain(..) {
            check_frame(p.data());
            got += 1;
        }
        std::thread::yield_now();
    }
    got
}

/// Sends one frame and waits for the host to forward it.
fn transmit(rig: &mut Rig, seq: u32) -> bool {
    let p = rig
        .nic
        .pool()
        .alloc_from(&test_frame(MacAddr([2, 0, 0, 0, 0, 1]), 0, seq, 100))
        .unwrap();
    send_all(&mut rig.queues[0], vec![p]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut sink = Vec::new();
        rig.queues[0].rx_burst(&mut sink, 8);
        if let Some(f) = rig.host.external().recv(Duration::from_millis(5)) {
            return check_frame(&f) == (0, seq);
        }
    }
    false
}

fn assert_recovers(rig: &mut Rig) {
    let mac = rig.nic.mac();
    rig.nic
        .reestablish(Duration::from_secs(5))
        .expect("the session is re-established after a reopen");
    assert_eq!(rig.nic.mac(), mac, "the port keeps its identity");
    rig.nic.keepalive(SHORT).expect("the new session answers");
    assert_eq!(receive(rig, 10), 10, "receive works after re-establishing");
    assert!(transmit(rig, 77), "transmit works after re-establishing");
}

#[test]
fn a_malformed_host_packet_is_completed_and_counted_and_traffic_goes_on() {
    let mut rig = rig();
    rig.host.inject_fault(Fault::MalformedPacket);
    assert_eq!(
        receive(&mut rig, 5),
        4,
        "the corrupted one is dropped, the rest arrive"
    );
    assert_eq!(rig.queues[0].stats().rx_dropped_malformed, 1);
    assert_eq!(receive(&mut rig, 5), 5);
    assert!(
        rig.host.stats().channel_alive,
        "a completed malformed packet keeps the channel"
    );
}

#[test]
fn an_out_of_range_transfer_page_range_is_counted_not_followed() {
    let mut rig = rig();
    rig.host.inject_fault(Fault::BadTransferRange);
    assert_eq!(receive(&mut rig, 3), 2);
    assert_eq!(rig.queues[0].stats().rx_dropped_malformed, 1);
    assert_eq!(receive(&mut rig, 3), 3);
}

#[test]
fn a_missing_control_completion_does_not_block_the_request_or_the_next_ones() {
    let mut rig = rig();
    rig.host.inject_fault(Fault::DropCompletions(1));
    // The keepalive's NVSP transport completion goes missing, but its RNDIS reply still comes
    // and frees the control section: the request succeeds without waiting for the completion.
    rig.nic
        .keepalive(SHORT)
        .expect("the RNDIS reply completes the request");
    rig.nic.keepalive(SHORT).expect("the next request works");
    assert_eq!(
        rig.host.stats().tx_completions_dropped,
        1,
        "the host really withheld a completion"
    );
    assert!(transmit(&mut rig, 1));
}

#[test]
fn duplicate_and_wrong_tid_completions_are_counted_and_ignored() {
    let mut rig = rig();
    // Each fault armed before the send it is for: a host thread that read the send before the
    // command would put the fault on the next send's completion instead.
    rig.host.inject_fault(Fault::DuplicateCompletion);
    assert!(
        rig.host.settle(Duration::from_secs(5)),
        "the host took the fault"
    );
    assert!(transmit(&mut rig, 1));
    rig.host.inject_fault(Fault::WrongTid);
    assert!(
        rig.host.settle(Duration::from_secs(5)),
        "the host took the fault"
    );
    assert!(transmit(&mut rig, 2));
    // The host writes each stray completion after forwarding the frame: poll until both have
    // been read and counted (a bounded wait for the condition).
    let unknown = |rig: &Rig| {
        rig.queues[0].stats().unknown_completions + rig.nic.stats().control_unknown_completions
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sink = Vec::new();
    while unknown(&rig) < 2 && Instant::now() < deadline {
        rig.queues[0].rx_burst(&mut sink, 8);
        std::thread::yield_now();
    }
    assert_eq!(
        unknown(&rig),
        2,
        "one duplicate and one wrong-tid completion counted"
    );
    assert!(sink.is_empty(), "no frame was injected");
    assert!(transmit(&mut rig, 3));
}

#[test]
fn a_host_that_stops_reading_makes_control_requests_time_out_not_hang() {
    let rig = rig();
    rig.host.inject_fault(Fault::StopReading);
    let err = rig.nic.keepalive(SHORT).unwrap_err();
    assert!(matches!(err, NicError::Timeout { .. }), "{err}");
    rig.host.inject_fault(Fault::ResumeReading);
    rig.nic.keepalive(SHORT).expect("the host reads again");
}

#[test]
fn a_dead_channel_is_detected_and_the_session_re_established() {
    let mut rig = rig();
    rig.host.inject_fault(Fault::DeadChannel);
    let err = rig.nic.keepalive(SHORT).unwrap_err();
    assert!(
        matches!(err, NicError::Timeout { .. } | NicError::ChannelDead),
        "{err}"
    );
    assert_recovers(&mut rig);
}

#[test]
fn a_revoked_receive_buffer_is_recovered_by_re_establishing() {
    let mut rig = rig();
    rig.host.inject_fault(Fault::RevokeReceiveBuffer);
    assert!(rig.nic.keepalive(SHORT).is_err());
    assert_recovers(&mut rig);
}

#[test]
fn a_corrupt_receive_ring_marks_the_channel_dead_and_is_recovered() {
    let mut rig = rig();
    rig.host.inject_fault(Fault::RingCorruption);
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut dead = false;
    while !dead && Instant::now() < deadline {
        rig.queues[0].rx_burst(&mut out, 64);
        while let Some(ev) = rig.nic.next_event(Duration::from_millis(5)) {
            dead |= ev == NicEvent::ChannelDead;
        }
    }
    assert!(dead, "the corrupt ring was reported");
    assert!(matches!(
        rig.nic.keepalive(SHORT),
        Err(NicError::ChannelDead)
    ));
    assert_recovers(&mut rig);
}

#[test]
fn a_rescinded_device_fails_requests_with_an_error() {
    let mut rig = rig();
    rig.host.inject_fault(Fault::Rescind);
    assert!(rig.nic.keepalive(SHORT).is_err());
    assert!(
        rig.nic.reestablish(SHORT).is_err(),
        "a rescinded device cannot be reopened"
    );
    let mut out = Vec::new();
    rig.queues[0].rx_burst(&mut out, 8);
    assert!(out.is_empty());
}

#[test]
fn a_host_refusing_newer_versions_is_negotiated_down() {
    for (limit, expected) in [(0x50000, 0x50000), (0x40000, 0x40000), (0x2, 0x2)] {
        let (host, device) = integration::host::SimHost::start(HostConfig {
            shm: small_shm(1),
            ..HostConfig::default()
        })
        .unwrap();
        host.inject_fault(Fault::RefuseVersionsAbove(limit));
        let (nic, _queues) =
            netvsc::nic::SyntheticNic::open(Box::new(device), NicConfig::default()).unwrap();
        assert_eq!(nic.nvsp_version(), expected);
        assert_eq!(host.stats().nvsp_version, Some(expected));
    }
}

#[test]
fn sends_in_flight_when_the_channel_dies_are_counted_as_failed() {
    let mut rig = rig();
    // The host stops reading: these sends take sections and are never completed.
    rig.host.inject_fault(Fault::StopReading);
    let frames: Vec<_> = (0..5)
        .map(|seq| {
            rig.nic
                .pool()
                .alloc_from(&test_frame(MacAddr([2, 0, 0, 0, 0, 1]), 0, seq, 100))
                .unwrap()
        })
        .collect();
    send_all(&mut rig.queues[0], frames);
    assert_eq!(rig.queues[0].tx_pending(), 5, "taken, never completed");
    rig.host.inject_fault(Fault::DeadChannel);
    // Reading is a lasting state: the next session must be read.
    rig.host.inject_fault(Fault::ResumeReading);
    // Both applied to the old session before the guest reopens.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.host.stats().faults_injected < 3 {
        assert!(
            Instant::now() < deadline,
            "the host never applied the faults"
        );
        std::thread::yield_now();
    }
    rig.nic
        .reestablish(Duration::from_secs(5))
        .expect("the session is re-established");
    let stats = rig.nic.stats();
    assert_eq!(stats.queues[0].tx_failed, 5, "{stats:?}");
    assert_eq!(rig.queues[0].tx_pending(), 0);
    assert!(transmit(&mut rig, 9), "transmit works afterwards");
}
