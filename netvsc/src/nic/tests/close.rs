//! Closing the NIC against the fake host: the message sequence and its ids, what the close
//! waits for, its bound on a silent host, idempotence, and what the handles do afterwards.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use packet::PortQueue;

use super::fake_host::{Command, Script, Step};
use super::{frame, open, poll_until, settle, small_config, success_108};
use crate::nic::control::Control;
use crate::nic::{NicError, NicEvent};
use crate::nvsp;

/// The bound a close on a healthy host is given (it needs milliseconds).
const CLOSE: Duration = Duration::from_secs(10);

/// The steps from the last packet-filter set on.
fn teardown(steps: &[Step]) -> Vec<Step> {
    let start = steps
        .iter()
        .rposition(|s| matches!(s, Step::Filter(_)))
        .unwrap_or(0);
    steps[start..].to_vec()
}

#[test]
fn a_posted_message_waits_for_its_transport_completion_which_frees_its_section() {
    let control = Control::default();
    control.reset(0..1);
    let tid = control.new_tid();
    assert_eq!(control.reserve_posted_section(tid), Some(0));
    assert_eq!(
        control.reserve_posted_section(control.new_tid()),
        None,
        "one section only"
    );
    assert_eq!(Control::take_nvsp(&mut control.inbox.lock(), tid), None);
    control.completion(tid, &success_108());
    assert_eq!(
        Control::take_nvsp(&mut control.inbox.lock(), tid),
        Some(success_108())
    );
    assert_eq!(
        control.reserve_posted_section(control.new_tid()),
        Some(0),
        "the completion freed the section"
    );
    let inbox = control.inbox.lock();
    assert_eq!(inbox.counters.unknown_completions, 0);
    assert_eq!(inbox.counters.requests, 2);
}

#[test]
fn an_unsent_posted_message_frees_its_section_and_a_sent_one_keeps_it() {
    let control = Control::default();
    control.reset(0..1);
    let unsent = control.new_tid();
    control.reserve_posted_section(unsent).unwrap();
    control.forget_posted(unsent, true);
    let sent = control.new_tid();
    assert_eq!(control.reserve_posted_section(sent), Some(0));
    control.forget_posted(sent, false);
    assert_eq!(
        control.reserve_posted_section(control.new_tid()),
        None,
        "the host may still read a sent message's section"
    );
    // Its late completion frees the section and is not an unknown one.
    control.completion(sent, &success_108());
    assert_eq!(control.inbox.lock().counters.unknown_completions, 0);
    assert_eq!(control.reserve_posted_section(control.new_tid()), Some(0));
}

#[test]
fn a_close_halts_waits_for_the_sends_in_flight_then_revokes_both_buffers_by_id() {
    let (host, nic, mut queues) = open(Script::default(), small_config());
    settle(&nic);
    // Frames for the guest that nobody polls: the close reads them for the application.
    host.command(Command::Frames(vec![frame(90, 1), frame(91, 2)]));
    // Data transfer-page packets are numbered from the first data slot, 16.
    host.wait_until("the frames delivered", |log| log.rx_tids.contains(&16));
    host.script
        .hold_send_completions
        .store(true, Ordering::Release);
    let pool = nic.pool().clone();
    let mut frames = vec![
        pool.alloc_from(&frame(60, 3)).unwrap(),
        pool.alloc_from(&frame(1514, 4)).unwrap(),
    ];
    assert_eq!(queues[0].tx_burst(&mut frames), 2);
    host.wait_until("the two sends", |log| log.frames.len() == 2);

    let closed = std::thread::scope(|s| {
        let closing = s.spawn(|| nic.close(CLOSE));
        // The host releases the sends only once it has the HALT: a close that revoked the
        // buffers without waiting for them would have revoked them before this.
        host.wait_until("the halt", |log| log.steps.contains(&Step::Halt));
        host.command(Command::ReleaseSends);
        closing.join().expect("close panicked")
    });
    closed.expect("the close against a healthy host");

    let log = host.log.lock();
    assert_eq!(
        log.buffer_ids,
        (Some(nvsp::RECEIVE_BUFFER_ID), Some(nvsp::SEND_BUFFER_ID))
    );
    assert_eq!(
        teardown(&log.steps),
        [
            Step::Filter(0),
            Step::Halt,
            Step::SendsReleased,
            Step::RevokeReceive(nvsp::RECEIVE_BUFFER_ID),
            Step::RevokeSend(nvsp::SEND_BUFFER_ID),
        ]
    );
    assert_eq!(
        log.unexpected_completion_requests, 0,
        "a revoke asked for a reply"
    );
    drop(log);
    let stats = queues[0].stats();
    assert_eq!((stats.tx_packets, stats.tx_failed), (2, 0));
    // The frames the close read are the application's; then nothing more comes.
    let got = poll_until(&mut queues[0], "the staged frames", |g, _| g.len() == 2);
    assert_eq!(got[0].data(), frame(90, 1).as_slice());
    assert_eq!(got[1].data(), frame(91, 2).as_slice());
    let mut more = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut more, 64), 0);
    drop(got);
    // Every buffer is back: the GPA-direct send's with its completion, the received ones.
    assert_eq!(pool.available(), pool.capacity());
}

#[test]
fn after_a_close_every_call_fails_or_returns_nothing_and_a_second_close_does_nothing() {
    let (host, nic, mut queues) = open(Script::default(), small_config());
    settle(&nic);
    nic.close(CLOSE).expect("the close");
    assert!(nic.is_closed());
    assert!(queues[0].is_closed());
    let requests = nic.stats().control_requests;

    nic.close(CLOSE).expect("closing again");
    assert_eq!(
        nic.stats().control_requests,
        requests,
        "the second close sent something"
    );
    assert!(matches!(nic.keepalive(CLOSE), Err(NicError::Closed)));
    assert!(matches!(
        nic.query_oid(crate::rndis::OID_GEN_LINK_SPEED, CLOSE),
        Err(NicError::Closed)
    ));
    assert!(matches!(
        nic.set_packet_filter(1, CLOSE),
        Err(NicError::Closed)
    ));
    assert!(matches!(
        nic.switch_data_path(false, CLOSE),
        Err(NicError::Closed)
    ));
    assert!(matches!(nic.reestablish(CLOSE), Err(NicError::Closed)));
    assert_eq!(
        host.log.lock().reopens,
        0,
        "a closed nic reopened the device"
    );

    let mut frames = vec![nic.pool().alloc_from(&frame(60, 9)).unwrap()];
    assert_eq!(queues[0].tx_burst(&mut frames), 0);
    assert_eq!(frames.len(), 1, "the frame stays with the caller");
    let mut got = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut got, 8), 0);
    assert_eq!(queues[0].tx_pending(), 0);

    // The event stream has ended: a long wait returns at once.
    let asked = Instant::now();
    assert_eq!(nic.next_event(Duration::from_secs(30)), None);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "next_event waited on a closed nic"
    );
    let log = host.log.lock();
    assert_eq!(
        log.steps.iter().filter(|s| **s == Step::Halt).count(),
        1,
        "{:?}",
        log.steps
    );
}

#[test]
fn a_close_on_a_silent_host_returns_a_timeout_within_its_bound_and_the_nic_is_closed() {
    let (host, nic, queues) = open(Script::default(), small_config());
    settle(&nic);
    host.script.read_guest_ring.store(false, Ordering::Release);
    let bound = Duration::from_millis(300);
    let started = Instant::now();
    let err = nic.close(bound).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, NicError::Timeout { .. }), "{err}");
    assert!(took >= bound, "gave up after {took:?}, before its bound");
    assert!(
        took < bound + Duration::from_secs(5),
        "close took {took:?} on a silent host"
    );
    assert!(nic.is_closed());
    assert!(queues[0].is_closed());
    assert!(matches!(nic.keepalive(bound), Err(NicError::Closed)));
    assert!(nic.stats().control_timeouts >= 1);
}

#[test]
fn a_halt_the_host_never_completes_times_out_and_the_buffers_are_revoked_all_the_same() {
    let script = Script::default();
    script.complete_halt.store(false, Ordering::Release);
    let (host, nic, _queues) = open(script, small_config());
    settle(&nic);
    match nic.close(Duration::from_millis(300)) {
        Err(NicError::Timeout { what, .. }) => assert_eq!(what, "rndis halt"),
        other => panic!("expected the halt to time out, got {other:?}"),
    }
    host.wait_until("both revokes", |log| {
        log.steps.contains(&Step::RevokeSend(nvsp::SEND_BUFFER_ID))
    });
    assert_eq!(
        teardown(&host.log.lock().steps),
        [
            Step::Filter(0),
            Step::Halt,
            Step::RevokeReceive(nvsp::RECEIVE_BUFFER_ID),
            Step::RevokeSend(nvsp::SEND_BUFFER_ID),
        ]
    );
}

#[test]
fn a_dead_channel_is_closed_at_once_with_channel_dead() {
    let (host, nic, queues) = open(Script::default(), small_config());
    settle(&nic);
    host.command(Command::CorruptRing);
    assert_eq!(
        nic.next_event(Duration::from_secs(5)),
        Some(NicEvent::ChannelDead)
    );
    assert!(matches!(nic.close(CLOSE), Err(NicError::ChannelDead)));
    assert!(nic.is_closed() && queues[0].is_closed());
    assert!(
        !host.log.lock().steps.contains(&Step::Halt),
        "a halt on a dead channel"
    );
}

#[test]
fn dropping_an_open_nic_closes_it_under_the_pollers() {
    let (host, nic, mut queues) = open(Script::default(), small_config());
    settle(&nic);
    let pool = nic.pool().clone();
    drop(nic);
    host.wait_until("the revokes of a dropped nic", |log| {
        log.steps.contains(&Step::RevokeSend(nvsp::SEND_BUFFER_ID))
    });
    assert_eq!(
        teardown(&host.log.lock().steps),
        [
            Step::Filter(0),
            Step::Halt,
            Step::RevokeReceive(nvsp::RECEIVE_BUFFER_ID),
            Step::RevokeSend(nvsp::SEND_BUFFER_ID),
        ]
    );
    assert!(queues[0].is_closed());
    let mut frames = vec![pool.alloc_from(&frame(60, 1)).unwrap()];
    assert_eq!(queues[0].tx_burst(&mut frames), 0);
}

#[test]
fn a_poller_sending_through_a_close_loses_no_frame_it_handed_over() {
    let (host, nic, mut queues) = open(Script::default(), small_config());
    settle(&nic);
    let pool = nic.pool().clone();
    let mut queue = queues.remove(0);
    let started = std::sync::Barrier::new(2);
    let (taken, closed) = std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let mut taken = 0u64;
            let mut seed = 0u8;
            let mut got = Vec::new();
            started.wait();
            while !queue.is_closed() {
                seed = seed.wrapping_add(1);
                let mut frames: Vec<_> = pool.alloc_from(&frame(64, seed)).into_iter().collect();
                taken += queue.tx_burst(&mut frames) as u64;
                queue.rx_burst(&mut got, 32);
                got.clear();
            }
            taken
        });
        started.wait();
        // The poller has started; close while it sends.
        host.wait_until("the poller's first frame", |log| !log.frames.is_empty());
        let closed = nic.close(CLOSE);
        (poller.join().expect("the poller panicked"), closed)
    });
    closed.expect("the close");
    let stats = queue.stats();
    assert_eq!(stats.tx_packets, taken);
    assert_eq!(stats.tx_failed, 0, "a send the close abandoned");
    assert_eq!(
        host.log.lock().frames.len() as u64,
        taken,
        "every frame tx_burst took reached the host"
    );
    assert_eq!(pool.available(), pool.capacity());
}
