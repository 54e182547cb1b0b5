//! Offload negotiation and transmit steering against the simulated host: the handshake queries
//! the host's offload hardware capabilities and sets the offload parameters (checksums and
//! LSO off), the host's TASK_OFFLOAD_CURRENT_CONFIG indication arrives as an event, and
//! `tx_queue_for_hash` follows the send indirection table (NVSP 134) the host sent, with
//! frames sent on the chosen queue leaving the host on that queue.

mod common;

use std::time::{Duration, Instant};

use common::*;
use integration::host::{HostConfig, PortMode};
use netvsc::nic::{NicConfig, NicEvent, SyntheticNic};
use netvsc::nvsp;
use netvsc::rndis::{self, NdisOffload};
use packet::{MacAddr, PortQueue};

/// Bound on one control request in these tests.
const REQUEST: Duration = Duration::from_secs(5);

fn rig_with(queues: u16, tx_offloads: bool) -> Rig {
    start_with(
        HostConfig {
            shm: small_shm(queues),
            port: PortMode::External,
            tx_offloads,
            ..HostConfig::default()
        },
        NicConfig {
            queues,
            ..NicConfig::default()
        },
    )
}

/// Reads events until `want` matches one (others are skipped), within [`DEADLINE`].
fn wait_event(nic: &SyntheticNic, what: &str, want: impl Fn(&NicEvent) -> bool) -> NicEvent {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {what} event");
        if let Some(event) = nic.next_event(left.min(Duration::from_millis(100)))
            && want(&event)
        {
            return event;
        }
    }
}

fn current_config(nic: &SyntheticNic) -> NdisOffload {
    let info = nic
        .query_oid(rndis::OID_TCP_OFFLOAD_CURRENT_CONFIG, REQUEST)
        .expect("current offload configuration");
    NdisOffload::parse(&info).expect("an NDIS_OFFLOAD")
}

#[test]
fn the_handshake_records_the_host_caps_and_switches_tx_offloads_off() {
    let rig = rig_with(1, true);
    let caps = rig
        .nic
        .offload_capabilities()
        .expect("the host answered the capabilities query");
    // The endpoint claims transmit checksums and LSOv2 (tx_offloads), as in the
    // rndis-offload-caps transcript.
    assert_eq!(caps.header.object_type, rndis::NDIS_OBJECT_TYPE_OFFLOAD);
    assert_eq!(caps.header.revision, 3);
    assert_ne!(
        caps.lso_v2.ipv4_encapsulation.get() & rndis::NDIS_ENCAPSULATION_IEEE_802_3,
        0
    );
    assert!(caps.lso_v2.ipv4_max_offload_size.get() > 0);
    assert!(caps.lso_v2.ipv6_max_offload_size.get() > 0);
    assert_ne!(caps.checksum.ipv4_tx_flags.get(), 0);
    assert_ne!(caps.checksum.ipv6_tx_flags.get(), 0);

    wait_event(&rig.nic, "offload config changed", |e| {
        *e == NicEvent::OffloadConfigChanged
    });
    assert!(rig.host.stats().indications >= 1);

    // The host applied the parameters: its current configuration has no transmit offload left.
    let config = current_config(&rig.nic);
    assert_eq!(config.checksum.ipv4_tx_flags.get(), 0);
    assert_eq!(config.checksum.ipv6_tx_flags.get(), 0);
    assert_eq!(config.lso_v2.ipv4_max_offload_size.get(), 0);
    assert_eq!(config.lso_v2.ipv6_max_offload_size.get(), 0);
    assert_eq!(config.lso_v2.ipv4_encapsulation.get(), 0);
    // Receive checksum capabilities are reported, not configured by transmit parameters.
    assert_eq!(config.checksum.ipv4_rx_flags, caps.checksum.ipv4_rx_flags);

    // The indication did not disturb the control engine.
    rig.nic.keepalive(REQUEST).expect("control still works");
    let stats = rig.nic.stats();
    assert_eq!(stats.control_late_responses, 0);
    assert_eq!(stats.control_unknown_completions, 0);
    assert_eq!(stats.control_timeouts, 0);
}

#[test]
fn without_tx_offloads_the_recorded_caps_claim_no_lso() {
    let rig = rig_with(1, false);
    let caps = rig.nic.offload_capabilities().expect("caps recorded");
    assert_eq!(caps.lso_v2.ipv4_max_offload_size.get(), 0);
    assert_eq!(caps.lso_v2.ipv6_max_offload_size.get(), 0);
    assert_eq!(caps.checksum.ipv4_tx_flags.get(), 0);
    assert_ne!(caps.checksum.ipv4_rx_flags.get(), 0);
    wait_event(&rig.nic, "offload config changed", |e| {
        *e == NicEvent::OffloadConfigChanged
    });
}

#[test]
fn at_nvsp_4_the_caps_and_parameters_use_the_older_objects_and_still_apply() {
    let rig = start_with(
        HostConfig {
            shm: small_shm(1),
            port: PortMode::External,
            tx_offloads: true,
            ..HostConfig::default()
        },
        NicConfig {
            max_nvsp_version: nvsp::VERSION_4,
            ..NicConfig::default()
        },
    );
    assert_eq!(rig.nic.nvsp_version(), nvsp::VERSION_4);
    assert!(rig.nic.offload_capabilities().is_some());
    wait_event(&rig.nic, "offload config changed", |e| {
        *e == NicEvent::OffloadConfigChanged
    });
    // The 22-byte parameters were accepted and applied.
    let config = current_config(&rig.nic);
    assert_eq!(config.lso_v2.ipv4_max_offload_size.get(), 0);
    assert_eq!(config.checksum.ipv4_tx_flags.get(), 0);
}

/// Waits for the host's send indirection table and checks `tx_queue_for_hash` against it for
/// hashes 0..64.
fn check_steering(rig: &Rig, queues: u16) {
    assert_eq!(rig.nic.queue_count(), queues);
    let event = wait_event(&rig.nic, "indirection table", |e| {
        matches!(e, NicEvent::IndirectionTable(_))
    });
    let NicEvent::IndirectionTable(table) = event else {
        unreachable!()
    };
    let expected: Vec<u32> = (0..16).map(|i| i % u32::from(queues)).collect();
    assert_eq!(table, expected);
    assert_eq!(rig.nic.send_indirection_table(), expected);
    for hash in 0..64u32 {
        assert_eq!(
            rig.nic.tx_queue_for_hash(hash),
            expected[(hash % 16) as usize] as u16,
            "hash {hash}"
        );
    }
}

#[test]
fn tx_queue_for_hash_follows_the_host_table_and_frames_leave_on_that_queue() {
    let mut rig = rig_with(4, false);
    check_steering(&rig, 4);

    let pool = rig.nic.pool().clone();
    let dst = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);
    let hashes = [0u32, 5, 10, 15, 16, 33, 0xdead_beef];
    for (seq, &hash) in hashes.iter().enumerate() {
        let queue = rig.nic.tx_queue_for_hash(hash);
        let frame = test_frame(dst, queue, seq as u32, 128);
        let packet = pool.alloc_from(&frame).expect("pool has room");
        send_all(&mut rig.queues[usize::from(queue)], vec![packet]);
        let deadline = Instant::now() + DEADLINE;
        let (host_queue, got) = loop {
            if let Some(received) = rig.host.external().try_recv() {
                break received;
            }
            // Completions arrive on the queue's receive side: keep it polled.
            let mut sink = Vec::new();
            rig.queues[usize::from(queue)].rx_burst(&mut sink, 8);
            assert!(
                Instant::now() < deadline,
                "frame for hash {hash} never left"
            );
            std::thread::yield_now();
        };
        assert_eq!(host_queue, queue, "hash {hash}");
        assert_eq!(check_frame(&got), (queue, seq as u32));
    }
}

#[test]
fn with_three_queues_the_table_not_the_modulo_picks_the_queue() {
    // With 3 queues the host's table (i % 3 over 16 entries) and `hash % 3` differ, e.g. for
    // hash 16: table[0] = 0 but 16 % 3 = 1.
    let rig = rig_with(3, false);
    check_steering(&rig, 3);
    assert_eq!(rig.nic.tx_queue_for_hash(16), 0);
    assert_eq!(rig.nic.tx_queue_for_hash(17), 1);
    assert_eq!(rig.nic.tx_queue_for_hash(15), 0);
}
