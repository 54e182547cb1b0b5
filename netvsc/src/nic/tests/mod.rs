//! Tests of the synthetic NIC: the control engine, the tid tables and the section partition as
//! units, then the whole NIC against a scripted fake host ([`fake_host`]).

mod close;
mod fake_host;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use packet::{Packet, PortQueue};

use super::control::Control;
use super::events::indication_event;
use super::handshake::{capabilities, control_sections, partition};
use super::offload::offload_parameters;
use super::steering::SendTable;
use super::tids::{KIND_CONTROL, KIND_GPA, KIND_SECTION, SlotTable, control_tid, kind_of};
use super::*;
use crate::nvsp;
use crate::rndis;
use fake_host::{Command, FakeHost, HOST_MAC, Script, host_offload_caps};

// --- units ---------------------------------------------------------------------------------

#[test]
fn a_slot_is_freed_only_by_its_exact_tid() {
    let mut table: SlotTable<u32> = SlotTable::new(KIND_GPA, 2);
    let (a, ta) = table.reserve().unwrap();
    let (b, tb) = table.reserve().unwrap();
    assert_ne!(a, b);
    assert!(table.reserve().is_none(), "two slots only");
    table.fill(a, 10);
    table.fill(b, 20);
    assert_eq!(table.complete(ta), Some((a, Some(10))));
    // A duplicate completion matches nothing.
    assert_eq!(table.complete(ta), None);
    // The slot is reused under a new sequence: the stale tid still matches nothing.
    let (a2, ta2) = table.reserve().unwrap();
    assert_eq!(a2, a);
    assert_ne!(ta2, ta);
    assert_eq!(table.complete(ta), None);
    assert_eq!(table.in_use(), 2);
    // Another kind's tid with the same slot and sequence does not match.
    let foreign = (tb & !(0x3F << 56)) | (KIND_SECTION << 56);
    assert_eq!(table.complete(foreign), None);
    assert_eq!(table.complete(tb), Some((b, Some(20))));
    assert_eq!(table.release(a2), None);
    assert_eq!(table.in_use(), 0);
}

#[test]
fn clearing_a_table_frees_every_slot_and_counts_them() {
    let mut table: SlotTable<()> = SlotTable::new(KIND_SECTION, 3);
    let (_, t) = table.reserve().unwrap();
    table.reserve().unwrap();
    assert_eq!(table.clear(), 2);
    assert_eq!(table.in_use(), 0);
    assert_eq!(table.complete(t), None);
    assert_eq!(table.capacity(), 3);
    // Out-of-range slots in a forged tid are rejected, not indexed.
    assert_eq!(
        table.complete((KIND_SECTION << 56) | (1000 << 32) | 1),
        None
    );
}

#[test]
fn guest_tids_never_look_like_host_tids() {
    for tid in [control_tid(1), control_tid(u64::MAX)] {
        assert_eq!(kind_of(tid), KIND_CONTROL);
        assert_eq!(tid & nvsp::HOST_VF_ASSOCIATION_TRANSACTION_ID, 0);
    }
    assert_eq!(kind_of(nvsp::HOST_VF_ASSOCIATION_TRANSACTION_ID), 0);
    assert_eq!(kind_of(16), 0);
}

#[test]
fn send_sections_are_partitioned_without_overlap() {
    assert_eq!(control_sections(1), 1);
    assert_eq!(control_sections(21), 2);
    assert_eq!(control_sections(2730), 4);
    for (total, queues) in [(21usize, 1usize), (170, 4), (2730, 64), (5, 8)] {
        let control = control_sections(total);
        let data = total - control;
        let mut next = control;
        for q in 0..queues {
            let (start, count) = partition(control, data, q, queues);
            assert_eq!(
                start,
                next,
                "queue {q} starts where {} ended",
                q.wrapping_sub(1)
            );
            next = start + count;
        }
        assert_eq!(next, total, "every data section belongs to a queue");
    }
}

#[test]
fn ndis_capabilities_follow_linux() {
    assert_eq!(capabilities(nvsp::VERSION_4, true), 0x8);
    assert_eq!(capabilities(nvsp::VERSION_5, true), 0x2c);
    assert_eq!(capabilities(nvsp::VERSION_61, true), 0xac);
    assert_eq!(capabilities(nvsp::VERSION_61, false), 0xa8);
}

fn success_108() -> Vec<u8> {
    NvspMessage::SendRndisPacketComplete(nvsp::Message1SendRndisPacketComplete::new(
        nvsp::STATUS_SUCCESS,
    ))
    .to_vec(40)
}

#[test]
fn control_completions_are_matched_by_tid_in_any_order() {
    let control = Control::default();
    let (t1, t2) = (control.new_tid(), control.new_tid());
    control.expect_nvsp(t1);
    control.expect_nvsp(t2);
    control.completion(t2, b"second");
    control.completion(t1, b"first");
    control.completion(control_tid(999), b"stray");
    let mut inbox = control.inbox.lock();
    assert_eq!(
        Control::take_nvsp(&mut inbox, t1).as_deref(),
        Some(&b"first"[..])
    );
    assert_eq!(
        Control::take_nvsp(&mut inbox, t2).as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(Control::take_nvsp(&mut inbox, t1), None);
    assert_eq!(inbox.counters.unknown_completions, 1);
}

#[test]
fn an_rndis_reply_frees_its_section_and_the_late_transport_completion_is_expected() {
    let control = Control::default();
    control.reset(0..1);
    let tid = control.new_tid();
    let id = control.new_request_id();
    assert_eq!(control.reserve_section(tid, id), Some(0));
    assert_eq!(
        control.reserve_section(control.new_tid(), 99),
        None,
        "one section only"
    );
    control.rndis_response(id, b"reply");
    let tid2 = control.new_tid();
    assert_eq!(
        control.reserve_section(tid2, 2),
        Some(0),
        "reply freed the section"
    );
    control.completion(tid, &success_108());
    control.completion(tid2, &success_108());
    control.rndis_response(id, b"again");
    let mut inbox = control.inbox.lock();
    assert_eq!(inbox.counters.unknown_completions, 0);
    assert_eq!(inbox.counters.late_responses, 1);
    assert_eq!(
        Control::take_rndis(&mut inbox, id),
        Some(Ok(b"reply".to_vec()))
    );
}

#[test]
fn a_refused_control_message_fails_its_request_at_once() {
    let control = Control::default();
    control.reset(0..2);
    let tid = control.new_tid();
    let id = control.new_request_id();
    control.reserve_section(tid, id).unwrap();
    let refused = NvspMessage::SendRndisPacketComplete(nvsp::Message1SendRndisPacketComplete::new(
        nvsp::STATUS_FAILURE,
    ))
    .to_vec(40);
    control.completion(tid, &refused);
    let mut inbox = control.inbox.lock();
    assert_eq!(
        Control::take_rndis(&mut inbox, id),
        Some(Err(nvsp::STATUS_FAILURE))
    );
}

#[test]
fn configuration_ranges_are_checked() {
    assert!(NicConfig::default().validate().is_ok());
    for bad in [
        NicConfig {
            mtu: 575,
            ..NicConfig::default()
        },
        NicConfig {
            mtu: 9001,
            ..NicConfig::default()
        },
        NicConfig {
            queues: 0,
            ..NicConfig::default()
        },
        NicConfig {
            queues: 65,
            ..NicConfig::default()
        },
        NicConfig {
            max_nvsp_version: 1,
            ..NicConfig::default()
        },
        NicConfig {
            control_timeout: Duration::ZERO,
            ..NicConfig::default()
        },
        NicConfig {
            control_timeout: MAX_CONTROL_TIMEOUT + Duration::from_nanos(1),
            ..NicConfig::default()
        },
        NicConfig {
            control_timeout: Duration::MAX,
            ..NicConfig::default()
        },
    ] {
        assert!(
            matches!(bad.validate(), Err(NicError::Config(_))),
            "{bad:?}"
        );
    }
    let at_most = NicConfig {
        control_timeout: MAX_CONTROL_TIMEOUT,
        ..NicConfig::default()
    };
    assert!(at_most.validate().is_ok());
}

#[test]
fn an_out_of_range_timeout_is_reported_with_its_field_value_and_range() {
    let config = NicConfig {
        control_timeout: Duration::from_secs(u64::MAX),
        ..NicConfig::default()
    };
    let message = config.validate().unwrap_err().to_string();
    for part in ["control_timeout", "18446744073709551615", "3600s"] {
        assert!(message.contains(part), "{part:?} missing from {message:?}");
    }
}

#[test]
fn status_indications_become_events() {
    assert_eq!(
        indication_event(rndis::STATUS_MEDIA_CONNECT, &[]),
        Some(NicEvent::LinkUp)
    );
    assert_eq!(
        indication_event(rndis::STATUS_MEDIA_DISCONNECT, &[]),
        Some(NicEvent::LinkDown)
    );
    assert_eq!(
        indication_event(rndis::STATUS_LINK_SPEED_CHANGE, &100_000u32.to_le_bytes()),
        Some(NicEvent::LinkSpeedChange(10_000_000))
    );
    assert_eq!(
        indication_event(rndis::STATUS_TASK_OFFLOAD_CURRENT_CONFIG, &[]),
        Some(NicEvent::OffloadConfigChanged)
    );
    assert_eq!(indication_event(0x4001_0001, &[]), None);
}

#[test]
fn before_a_send_table_the_hash_picks_the_queue_modulo_the_queue_count() {
    let table = SendTable::default();
    for hash in [0u32, 1, 3, 4, 5, 15, 16, 17, 1000, u32::MAX] {
        assert_eq!(table.queue_for_hash(hash, 4), (hash % 4) as u16);
        assert_eq!(table.queue_for_hash(hash, 1), 0);
        assert_eq!(table.queue_for_hash(hash, 0), 0, "0 queues counts as 1");
    }
}

#[test]
fn the_send_table_entry_is_selected_by_the_low_four_bits_of_the_hash() {
    let table = SendTable::default();
    let entries: Vec<u32> = (0..16).map(|i| (i * 3) % 4).collect();
    table.store(&entries);
    for hash in 0..256u32 {
        assert_eq!(
            table.queue_for_hash(hash, 4),
            entries[(hash & 15) as usize] as u16,
            "hash {hash}"
        );
    }
    assert_eq!(table.queue_for_hash(u32::MAX, 4), entries[15] as u16);
    // A newer table replaces the old one.
    table.store(&[1; 16]);
    assert_eq!(table.queue_for_hash(0, 4), 1);
}

#[test]
fn send_table_entries_naming_closed_queues_are_clamped() {
    let table = SendTable::default();
    let mut entries = vec![0u32; 16];
    entries[0] = 4;
    entries[1] = 7;
    entries[2] = 64;
    entries[3] = u32::MAX;
    entries[4] = 3;
    table.store(&entries);
    assert_eq!(table.queue_for_hash(0, 4), 0);
    assert_eq!(table.queue_for_hash(1, 4), 3);
    assert_eq!(table.queue_for_hash(2, 4), 0);
    assert_eq!(table.queue_for_hash(3, 4), (u32::MAX % 4) as u16);
    assert_eq!(table.queue_for_hash(4, 4), 3);
    assert_eq!(table.queue_for_hash(4, 3), 0);
    for hash in 0..64u32 {
        for queues in 1..=8u16 {
            assert!(table.queue_for_hash(hash, queues) < queues);
        }
    }
}

#[test]
fn offload_parameters_switch_checksums_and_lso_off_and_leave_the_rest() {
    let p = offload_parameters(nvsp::VERSION_61);
    let bytes = p.wire_bytes();
    assert_eq!(bytes.len(), 28);
    assert_eq!(&bytes[..4], &[0x80, 3, 28, 0]);
    // ip4, tcp4, udp4, tcp6, udp6 checksums: 1 = transmit and receive off.
    assert_eq!(&bytes[4..9], &[1, 1, 1, 1, 1]);
    // lsov1 and ipsec v1 unchanged; lsov2 ip4 and ip6: 1 = off; tcp connection unchanged.
    assert_eq!(&bytes[9..15], &[0, 0, 1, 1, 0, 0]);
    // flags, ipsec v2, rsc, encapsulation: unchanged.
    assert!(bytes[15..].iter().all(|&b| b == 0));
    assert_eq!(offload_parameters(nvsp::VERSION_5), p);

    for version in [nvsp::VERSION_4, nvsp::VERSION_2] {
        let p = offload_parameters(version);
        let bytes = p.wire_bytes();
        assert_eq!(bytes.len(), 22, "{version:#x}");
        assert_eq!(&bytes[..4], &[0x80, 3, 22, 0]);
        assert_eq!((bytes[6], bytes[8]), (1, 1), "udp checksum offload off");
        assert_eq!(&bytes[4..15], &[1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0]);
    }
}

// --- against the fake host -----------------------------------------------------------------

fn small_config() -> NicConfig {
    NicConfig {
        pool_buffers: 256,
        ..NicConfig::default()
    }
}

fn open(script: Script, config: NicConfig) -> (FakeHost, SyntheticNic, Vec<SyntheticQueue>) {
    let (host, device) = FakeHost::start(script);
    let (nic, queues) = SyntheticNic::open(Box::new(device), config).expect("nic opens");
    (host, nic, queues)
}

/// Takes the event the handshake's offload parameters SET causes, so a test sees only its own.
fn settle(nic: &SyntheticNic) {
    assert_eq!(
        nic.next_event(Duration::from_secs(5)),
        Some(NicEvent::OffloadConfigChanged)
    );
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ seed).collect();
    f[..6].copy_from_slice(&HOST_MAC.0);
    f
}

/// Polls `queue` until `done` holds on what it received and its counters (bounded).
fn poll_until(
    queue: &mut SyntheticQueue,
    what: &str,
    mut done: impl FnMut(&[Packet], &QueueStats) -> bool,
) -> Vec<Packet> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    loop {
        queue.rx_burst(&mut got, 64);
        if done(&got, &queue.stats()) {
            return got;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::yield_now();
    }
}

#[test]
fn the_handshake_falls_back_to_the_highest_version_the_host_accepts() {
    let script = Script {
        refuse_above: nvsp::VERSION_4,
        ..Script::default()
    };
    let (host, nic, queues) = open(script, small_config());
    assert_eq!(nic.nvsp_version(), nvsp::VERSION_4);
    assert_eq!(nic.ndis_version(), nvsp::NDIS_VERSION_6_1);
    assert_eq!(queues.len(), 1);
    let log = host.log.lock();
    assert_eq!(
        log.inits,
        vec![
            nvsp::VERSION_61,
            nvsp::VERSION_6,
            nvsp::VERSION_5,
            nvsp::VERSION_4
        ]
    );
    assert_eq!(log.ndis_caps, Some(0x8));
    assert_eq!(log.filter, Some(0x0D));
    assert_eq!(nic.mac(), HOST_MAC);
    assert_eq!(nic.mtu(), 1500);
    assert!(nic.link_up());
}

#[test]
fn the_default_handshake_negotiates_6_1_like_linux() {
    let (host, nic, _queues) = open(Script::default(), small_config());
    assert_eq!(nic.nvsp_version(), nvsp::VERSION_61);
    assert_eq!(nic.ndis_version(), nvsp::NDIS_VERSION_6_30);
    assert_eq!(nic.link_speed(), 10_000_000_000);
    assert_eq!(host.log.lock().ndis_caps, Some(0xac));
}

#[test]
fn a_host_accepting_no_version_is_an_unsupported_version_error() {
    let (_host, device) = FakeHost::start(Script {
        refuse_above: 1,
        ..Script::default()
    });
    let err = SyntheticNic::open(Box::new(device), small_config()).unwrap_err();
    assert!(
        matches!(
            err,
            NicError::UnsupportedVersion {
                max: nvsp::VERSION_61
            }
        ),
        "{err}"
    );
}

#[test]
fn a_vf_association_in_the_middle_of_the_handshake_is_an_event_and_the_handshake_succeeds() {
    let script = Script {
        vf_mid_handshake: true,
        ..Script::default()
    };
    let (_host, nic, _queues) = open(script, small_config());
    assert_eq!(nic.nvsp_version(), nvsp::VERSION_61);
    assert_eq!(
        nic.next_event(Duration::from_secs(5)),
        Some(NicEvent::VfAssociation {
            allocated: true,
            serial: 7
        })
    );
    assert_eq!(
        nic.next_event(Duration::from_secs(5)),
        Some(NicEvent::OffloadConfigChanged)
    );
    assert_eq!(nic.next_event(Duration::from_millis(10)), None);
}

#[test]
fn completions_with_unknown_tids_are_counted_and_ignored() {
    let (host, _nic, mut queues) = open(Script::default(), small_config());
    host.command(Command::Completion(0x1234));
    // Looks like a section tid, but no send is outstanding under it.
    host.command(Command::Completion((KIND_SECTION << 56) | (3 << 32) | 77));
    poll_until(&mut queues[0], "two unknown completions", |_, s| {
        s.unknown_completions == 2
    });
    host.command(Command::Frames(vec![frame(60, 1)]));
    let got = poll_until(&mut queues[0], "a frame after them", |got, _| {
        !got.is_empty()
    });
    assert_eq!(got[0].data(), frame(60, 1).as_slice());
}

#[test]
fn a_malformed_transfer_page_packet_is_completed_and_counted() {
    let (host, _nic, mut queues) = open(Script::default(), small_config());
    host.command(Command::MalformedRange);
    host.command(Command::Frames(vec![frame(60, 2), frame(1514, 3)]));
    let got = poll_until(&mut queues[0], "both frames", |got, _| got.len() == 2);
    assert_eq!(got[0].data(), frame(60, 2).as_slice());
    assert_eq!(got[1].data(), frame(1514, 3).as_slice());
    assert_eq!(got[1].meta.queue, 0);
    let stats = queues[0].stats();
    assert_eq!(stats.rx_dropped_malformed, 1);
    assert_eq!(stats.rx_packets, 2);
    // Every transfer-page packet the host sent came back completed with {108, SUCCESS}.
    let sent = host.log.lock().rx_tids.clone();
    host.wait_until("every receive completed", |log| {
        sent.iter()
            .all(|tid| log.guest_completions.iter().any(|(t, _)| t == tid))
    });
    for (tid, payload) in &host.log.lock().guest_completions {
        assert!(sent.contains(tid));
        assert_eq!(payload.len(), 40);
        assert_eq!(&payload[..8], &[108, 0, 0, 0, 1, 0, 0, 0]);
    }
}

/// The completion backlog of queue 0: waiting, allocated capacity, bound.
fn backlog(nic: &SyntheticNic) -> (usize, usize, usize) {
    nic.shared.queues[0].state.lock().completion_backlog()
}

#[test]
fn a_host_that_stops_reading_while_it_floods_is_held_back_and_every_packet_is_completed_once() {
    const FLOOD: usize = 3000;
    let (host, nic, mut queues) = open(Script::default(), small_config());
    let (_, _, limit) = backlog(&nic);
    assert_eq!(
        limit,
        fake_host::RECEIVE_BUFFER_SIZE / fake_host::SUB_ALLOC,
        "bounded by the receive buffer's section count"
    );
    host.script.read_guest_ring.store(false, Ordering::Release);
    host.command(Command::Flood(FLOOD));
    let mut got = Vec::new();
    let mut burst = |queue: &mut SyntheticQueue| {
        queue.rx_burst(&mut got, 64);
        got.clear();
        let (waiting, _, _) = backlog(&nic);
        assert!(waiting <= limit, "backlog {waiting} over its bound {limit}");
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    // The guest's ring fills with completions, then the backlog; then the guest pushes back.
    while queues[0].stats().rx_completion_backlog_full == 0 {
        assert!(Instant::now() < deadline, "the backlog never filled");
        burst(&mut queues[0]);
    }
    // The guest reads nothing more, so the host finds the guest's incoming ring full.
    let full_before = host.log.lock().flood_ring_full;
    while host.log.lock().flood_ring_full == full_before {
        assert!(Instant::now() < deadline, "the host was never held back");
        burst(&mut queues[0]);
    }
    let sent = host.log.lock().flood_sent;
    assert!(sent < FLOOD, "the host could send its whole flood");
    let (waiting, capacity, _) = backlog(&nic);
    assert_eq!(waiting, limit);
    let counted = queues[0].stats().rx_completion_backlog_full;
    for _ in 0..1000 {
        burst(&mut queues[0]);
    }
    assert_eq!(
        backlog(&nic),
        (limit, capacity, limit),
        "the backlog stays full and its memory flat"
    );
    assert!(queues[0].stats().rx_completion_backlog_full >= counted + 1000);
    assert_eq!(host.log.lock().flood_sent, sent, "the host stays held back");

    // The host reads again: the backlog drains, the rest of the flood comes, and every
    // transfer-page packet is completed exactly once.
    host.script.read_guest_ring.store(true, Ordering::Release);
    let done = |log: &fake_host::HostLog| {
        log.flood_sent == FLOOD
            && log
                .guest_completions
                .iter()
                .filter(|(tid, _)| *tid >= fake_host::FLOOD_TIDS)
                .count()
                >= FLOOD
    };
    while !done(&host.log.lock()) {
        assert!(Instant::now() < deadline, "the flood never completed");
        burst(&mut queues[0]);
    }
    let log = host.log.lock();
    let mut completed: Vec<u64> = log
        .guest_completions
        .iter()
        .map(|(tid, _)| *tid)
        .filter(|&tid| tid >= fake_host::FLOOD_TIDS)
        .collect();
    completed.sort_unstable();
    let expected: Vec<u64> = (0..FLOOD as u64)
        .map(|i| fake_host::FLOOD_TIDS + i)
        .collect();
    assert_eq!(
        completed, expected,
        "each flood packet completed exactly once"
    );
    drop(log);
    assert_eq!(backlog(&nic).0, 0);
}

#[test]
fn frames_beyond_max_wait_in_order_for_the_next_burst() {
    let (host, _nic, mut queues) = open(Script::default(), small_config());
    host.command(Command::Frames((0..3).map(|i| frame(100, i)).collect()));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 3 {
        let n = queues[0].rx_burst(&mut got, 1);
        assert!(n <= 1);
        assert!(Instant::now() < deadline);
    }
    for (i, p) in got.iter().enumerate() {
        assert_eq!(p.data(), frame(100, i as u8).as_slice());
    }
}

#[test]
fn frames_land_after_what_the_caller_holds_and_every_pool_buffer_is_accounted_for() {
    let (host, nic, mut queues) = open(Script::default(), small_config());
    let pool = nic.pool().clone();
    let capacity = pool.available();
    // The caller's vector already holds two packets of its own.
    let mut got = vec![
        pool.alloc_from(b"mine 0").unwrap(),
        pool.alloc_from(b"mine 1").unwrap(),
    ];
    host.command(Command::Frames((0..5).map(|i| frame(80, i)).collect()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while queues[0].stats().rx_packets < 5 {
        assert!(Instant::now() < deadline, "five frames never came");
        assert!(queues[0].rx_burst(&mut got, 3) <= 3);
        std::thread::yield_now();
    }
    assert_eq!(got.len(), 5);
    assert_eq!(
        (got[0].data(), got[1].data()),
        (&b"mine 0"[..], &b"mine 1"[..])
    );
    for (i, p) in got[2..].iter().enumerate() {
        assert_eq!(p.data(), frame(80, i as u8).as_slice());
    }
    // Two frames wait in the staging list; no other buffer is held between polls.
    assert_eq!(pool.available(), capacity - 2 - 5);
    drop(got);
    let mut got = poll_until(&mut queues[0], "the staged frames", |got, _| got.len() == 2);
    assert_eq!(got[1].data(), frame(80, 4).as_slice());
    got.clear();
    assert_eq!(pool.available(), capacity);

    // A pool with one free buffer: one frame is received, two are dropped and counted.
    let mut hoard = Vec::new();
    pool.alloc_bulk(&mut hoard, capacity - 1);
    host.command(Command::Frames((0..3).map(|i| frame(90, i)).collect()));
    let got = poll_until(&mut queues[0], "the drops counted", |_, stats| {
        stats.rx_dropped_no_buffer == 2
    });
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data(), frame(90, 0).as_slice());
    assert_eq!(queues[0].stats().rx_packets, 6);
    drop((got, hoard));
    assert_eq!(pool.available(), capacity);
}

#[test]
fn a_control_request_the_host_never_answers_times_out() {
    let (host, nic, _queues) = open(Script::default(), small_config());
    host.script.answer_keepalive.store(false, Ordering::Release);
    let err = nic.keepalive(Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, NicError::Timeout { .. }), "{err}");
    assert_eq!(nic.stats().control_timeouts, 1);
    host.script.answer_keepalive.store(true, Ordering::Release);
    nic.keepalive(Duration::from_secs(5))
        .expect("answered again");
    assert_eq!(host.log.lock().keepalives, 2);
}

#[test]
fn small_frames_go_through_sections_and_large_ones_gpa_direct() {
    let config = NicConfig {
        tx_copy_max: 128,
        ..small_config()
    };
    let (host, nic, mut queues) = open(Script::default(), config);
    let pool = nic.pool().clone();
    let free = pool.available();
    let mut vlan = pool.alloc_from(&frame(64, 9)).unwrap();
    vlan.meta.vlan_tci = Some(0x6064);
    let mut frames = vec![
        pool.alloc_from(&frame(60, 7)).unwrap(),
        pool.alloc_from(&frame(1514, 8)).unwrap(),
        vlan,
    ];
    assert_eq!(queues[0].tx_burst(&mut frames), 3);
    assert!(frames.is_empty());
    host.wait_until("three frames", |log| log.frames.len() == 3);
    {
        let log = host.log.lock();
        assert_eq!(log.frames[0], (frame(60, 7), false));
        assert_eq!(log.frames[1], (frame(1514, 8), true));
        assert_eq!(log.frames[2], (frame(64, 9), false));
    }
    // Completions free the in-flight packet.
    poll_until(&mut queues[0], "the gpa-direct buffer back", |_, _| {
        pool.available() == free
    });
    let stats = queues[0].stats();
    assert_eq!((stats.tx_send_buffer, stats.tx_gpa_direct), (2, 1));
    assert_eq!((stats.tx_packets, stats.tx_failed), (3, 0));
}

#[test]
fn a_failed_send_is_counted_and_its_resources_freed() {
    let (host, nic, mut queues) = open(Script::default(), small_config());
    host.script
        .send_status
        .store(nvsp::STATUS_FAILURE, Ordering::Release);
    let mut frames = vec![nic.pool().alloc_from(&frame(60, 1)).unwrap()];
    assert_eq!(queues[0].tx_burst(&mut frames), 1);
    poll_until(&mut queues[0], "the failure", |_, s| s.tx_failed == 1);
}

#[test]
fn control_calls_take_a_timeout_too_large_for_an_instant() {
    let (host, nic, _queues) = open(Script::default(), small_config());
    // The offload configuration indication of the handshake is waiting: no wait at all.
    assert_eq!(
        nic.next_event(Duration::MAX),
        Some(NicEvent::OffloadConfigChanged)
    );
    nic.keepalive(Duration::MAX).expect("the host answers");
    nic.switch_data_path(false, Duration::from_secs(u64::MAX))
        .expect("the host completes the switch");
    assert_eq!(host.log.lock().keepalives, 1);
}

#[test]
fn a_caller_polling_events_without_waiting_sees_them_as_they_come() {
    // The failover port's control thread, while a VF is attached, polls events with a zero
    // timeout between its other work; nobody polls queue 0. Each look must read queue 0.
    let (host, nic, _queues) = open(Script::default(), small_config());
    settle(&nic);
    host.command(Command::Indication(rndis::STATUS_MEDIA_DISCONNECT));
    let deadline = Instant::now() + Duration::from_secs(5);
    let event = loop {
        if let Some(event) = nic.next_event(Duration::ZERO) {
            break Some(event);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::yield_now();
    };
    assert_eq!(event, Some(NicEvent::LinkDown));
}

#[test]
fn a_control_only_program_sees_link_events() {
    let (host, nic, _queues) = open(Script::default(), small_config());
    settle(&nic);
    host.command(Command::Indication(rndis::STATUS_MEDIA_DISCONNECT));
    assert_eq!(
        nic.next_event(Duration::from_secs(5)),
        Some(NicEvent::LinkDown)
    );
    assert!(!nic.link_up());
    host.command(Command::Indication(rndis::STATUS_MEDIA_CONNECT));
    assert_eq!(
        nic.next_event(Duration::from_secs(5)),
        Some(NicEvent::LinkUp)
    );
    assert!(nic.link_up());
}

#[test]
fn a_corrupt_ring_kills_the_channel_until_the_session_is_re_established() {
    let (host, nic, mut queues) = open(Script::default(), small_config());
    settle(&nic);
    host.command(Command::CorruptRing);
    assert_eq!(
        nic.next_event(Duration::from_secs(5)),
        Some(NicEvent::ChannelDead)
    );
    assert!(matches!(
        nic.keepalive(Duration::from_millis(100)),
        Err(NicError::ChannelDead)
    ));
    let mut none = Vec::new();
    assert_eq!(queues[0].rx_burst(&mut none, 8), 0);

    nic.reestablish(Duration::from_secs(5))
        .expect("re-established");
    assert_eq!(host.log.lock().reopens, 1);
    assert_eq!(nic.mac(), HOST_MAC);
    nic.keepalive(Duration::from_secs(5))
        .expect("the new session answers");
    host.command(Command::Frames(vec![frame(60, 5)]));
    let got = poll_until(&mut queues[0], "a frame on the new session", |g, _| {
        !g.is_empty()
    });
    assert_eq!(got[0].data(), frame(60, 5).as_slice());
    let mut frames = vec![nic.pool().alloc_from(&frame(70, 6)).unwrap()];
    assert_eq!(queues[0].tx_burst(&mut frames), 1);
    host.wait_until("the frame sent after re-establishing", |log| {
        log.frames.iter().any(|(f, _)| *f == frame(70, 6))
    });
    assert_eq!(nic.stats().reestablished, 1);
}

const QUERY: u32 = rndis::MESSAGE_TYPE_QUERY_MSG;
const SET: u32 = rndis::MESSAGE_TYPE_SET_MSG;

#[test]
fn the_handshake_queries_offload_caps_and_sets_parameters_in_linux_order() {
    let (host, nic, _queues) = open(Script::default(), small_config());
    let log = host.log.lock();
    assert_eq!(
        log.rndis_requests,
        vec![
            (QUERY, rndis::OID_802_3_CURRENT_ADDRESS),
            (QUERY, rndis::OID_GEN_MAXIMUM_FRAME_SIZE),
            (QUERY, rndis::OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES),
            (SET, rndis::OID_TCP_OFFLOAD_PARAMETERS),
            (QUERY, rndis::OID_GEN_MEDIA_CONNECT_STATUS),
            (QUERY, rndis::OID_GEN_LINK_SPEED),
            (SET, rndis::OID_GEN_CURRENT_PACKET_FILTER),
        ]
    );
    let input = &log.offload_caps_inputs[0];
    assert_eq!(input.len(), 156);
    assert_eq!(&input[..4], &[0xA7, 3, 156, 0]);
    assert!(input[4..].iter().all(|&b| b == 0));
    assert_eq!(
        log.offload_parameters,
        vec![offload_parameters(nvsp::VERSION_61).wire_bytes().to_vec()]
    );
    drop(log);
    assert_eq!(nic.offload_capabilities(), Some(host_offload_caps()));
}

#[test]
fn the_offload_objects_follow_the_negotiated_version() {
    for (version, caps_size, revision, params_size) in [
        (nvsp::VERSION_5, 156usize, 3u8, 28usize),
        (nvsp::VERSION_4, 144, 2, 22),
        (nvsp::VERSION_2, 112, 1, 22),
    ] {
        let script = Script {
            refuse_above: version,
            ..Script::default()
        };
        let (host, nic, _queues) = open(script, small_config());
        assert_eq!(nic.nvsp_version(), version);
        let log = host.log.lock();
        let input = &log.offload_caps_inputs[0];
        assert_eq!(input.len(), caps_size, "{version:#x}");
        assert_eq!(input[..4], [0xA7, revision, caps_size as u8, 0]);
        let params = &log.offload_parameters[0];
        assert_eq!(params.len(), params_size, "{version:#x}");
        assert_eq!(params[..], *offload_parameters(version).wire_bytes());
    }
}

#[test]
fn the_offload_config_indication_is_an_event_and_leaves_the_control_engine_alone() {
    let (host, nic, _queues) = open(Script::default(), small_config());
    settle(&nic);
    nic.keepalive(Duration::from_secs(5))
        .expect("control works");
    let info = nic
        .query_oid(rndis::OID_GEN_MAXIMUM_FRAME_SIZE, Duration::from_secs(5))
        .expect("a query after the indication");
    assert_eq!(info, 1500u32.to_le_bytes());
    let stats = nic.stats();
    assert_eq!(stats.control_late_responses, 0);
    assert_eq!(stats.control_unknown_completions, 0);
    assert_eq!(stats.control_timeouts, 0);
    assert_eq!(host.log.lock().keepalives, 1);
}

#[test]
fn a_host_without_offload_support_does_not_fail_the_handshake() {
    let script = Script {
        offload_caps: None,
        refuse_offload_parameters: true,
        ..Script::default()
    };
    let (host, nic, mut queues) = open(script, small_config());
    assert_eq!(nic.offload_capabilities(), None);
    assert!(nic.link_up());
    assert_eq!(nic.link_speed(), 10_000_000_000);
    {
        let log = host.log.lock();
        assert_eq!(log.offload_caps_inputs.len(), 1);
        assert_eq!(log.offload_parameters.len(), 1);
        assert_eq!(log.filter, Some(0x0D));
    }
    nic.keepalive(Duration::from_secs(5))
        .expect("control works");
    assert_eq!(nic.next_event(Duration::from_millis(10)), None);
    let mut frames = vec![nic.pool().alloc_from(&frame(60, 4)).unwrap()];
    assert_eq!(queues[0].tx_burst(&mut frames), 1);
    host.wait_until("the frame", |log| log.frames.len() == 1);
}

#[test]
fn caps_are_recorded_again_when_the_session_is_re_established() {
    let (host, nic, _queues) = open(Script::default(), small_config());
    settle(&nic);
    host.command(Command::CorruptRing);
    assert_eq!(
        nic.next_event(Duration::from_secs(5)),
        Some(NicEvent::ChannelDead)
    );
    nic.reestablish(Duration::from_secs(5))
        .expect("re-established");
    assert_eq!(nic.offload_capabilities(), Some(host_offload_caps()));
    assert_eq!(host.log.lock().offload_parameters.len(), 2);
    settle(&nic);
}

#[test]
fn a_hostile_send_table_is_recorded_as_sent_and_clamped_for_steering() {
    let (host, nic, _queues) = open(Script::default(), small_config());
    settle(&nic);
    assert!(nic.send_indirection_table().is_empty());
    assert_eq!(nic.tx_queue_for_hash(7), 0);
    let table: Vec<u32> = (0..16)
        .map(|i| if i % 2 == 0 { 5 } else { u32::MAX })
        .collect();
    host.command(Command::IndirectionTable(table.clone()));
    assert_eq!(
        nic.next_event(Duration::from_secs(5)),
        Some(NicEvent::IndirectionTable(table.clone()))
    );
    assert_eq!(nic.send_indirection_table(), table);
    assert_eq!(nic.queue_count(), 1);
    for hash in 0..64 {
        assert_eq!(nic.tx_queue_for_hash(hash), 0);
    }
}
