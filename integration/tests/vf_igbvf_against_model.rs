//! The igbvf driver against the software igbvf + PF model: initialisation, traffic both ways
//! with contents checked, ring wraparound, a PF reset in the middle of traffic, surprise
//! removal without a hang and with every in-flight frame counted lost once, release on
//! request, and a PF without an administrator MAC (the driver sets its own). The model is a
//! separate actor that sees only its registers and the DMA memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::vf_model::{SoftIgbvf, SoftIgbvfConfig, VfModelControl};
use packet::{MacAddr, Packet, PortQueue};
use vf::device::VfDevice;
use vf::igbvf::driver::{Igbvf, IgbvfConfig, IgbvfQueue};
use vf::port::{VfEvent, VfPort, VfQueue};

const MAC: MacAddr = MacAddr([0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c]);
const DEADLINE: Duration = Duration::from_secs(20);

struct Rig {
    model: VfModelControl,
    port: Igbvf,
    queues: Vec<IgbvfQueue>,
}

fn rig(queues: u16, ring_size: u16) -> Rig {
    rig_with(MAC, None, queues, ring_size)
}

/// A rig whose PF has `admin_mac` (all-zero: none) and whose driver is configured with `mac`.
fn rig_with(admin_mac: MacAddr, mac: Option<MacAddr>, queues: u16, ring_size: u16) -> Rig {
    let (device, model) = SoftIgbvf::new(SoftIgbvfConfig {
        mac: admin_mac,
        queues: 2,
        ..SoftIgbvfConfig::default()
    });
    let device: Arc<dyn VfDevice> = device;
    let (port, queues) = Igbvf::open(
        device,
        IgbvfConfig {
            queues,
            ring_size,
            mac,
            ..IgbvfConfig::default()
        },
    )
    .expect("the driver initialises against the model");
    Rig {
        model,
        port,
        queues,
    }
}

fn frame(dst: MacAddr, queue: u16, seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, queue as u8]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f[14..16].copy_from_slice(&queue.to_be_bytes());
    f[16..20].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[20..].iter_mut().enumerate() {
        *b = (seq as usize * 7 + i) as u8;
    }
    f
}

fn seq_of(f: &[u8]) -> u32 {
    u32::from_be_bytes(f[16..20].try_into().unwrap())
}

fn len_for(seq: u32) -> usize {
    60 + (seq as usize * 613) % (1514 - 59)
}

/// Sends `count` frames on queue `q` and checks that the wire sees them whole and in order.
fn transmit(rig: &mut Rig, q: usize, first: u32, count: u32) {
    let pool = rig.queues[q].pool().clone();
    let dst = MacAddr([2, 1, 1, 1, 1, 1]);
    let mut pending: Vec<Packet> = Vec::new();
    let mut next_tx = first;
    let mut next_wire = first;
    let deadline = Instant::now() + DEADLINE;
    while next_wire < first + count {
        while next_tx < first + count && pending.len() < 32 {
            match pool.alloc_from(&frame(dst, q as u16, next_tx, len_for(next_tx))) {
                Some(p) => pending.push(p),
                None => break,
            }
            next_tx += 1;
        }
        rig.queues[q].tx_burst(&mut pending);
        while let Some((wq, f)) = rig.model.recv_frame(Duration::from_millis(1)) {
            assert_eq!(wq as usize, q);
            assert_eq!(seq_of(&f), next_wire, "wire order");
            assert_eq!(f, frame(dst, q as u16, next_wire, len_for(next_wire)));
            next_wire += 1;
        }
        assert!(Instant::now() < deadline, "tx stalled at {next_wire}");
    }
}

/// Injects `count` frames on queue `q` and checks the driver hands them out whole, in order.
fn receive(rig: &mut Rig, q: usize, first: u32, count: u32) {
    let mut injected = first;
    let mut next = first;
    let mut out = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while next < first + count {
        // Stay within the ring: the model drops what finds no posted descriptor.
        if injected < first + count && injected - next < 16 {
            rig.model
                .inject(q as u16, &frame(MAC, q as u16, injected, len_for(injected)));
            injected += 1;
        }
        rig.queues[q].rx_burst(&mut out, 32);
        for p in out.drain(..) {
            assert_eq!(seq_of(p.data()), next, "receive order");
            assert_eq!(
                p.data(),
                frame(MAC, q as u16, next, len_for(next)).as_slice()
            );
            next += 1;
        }
        assert!(Instant::now() < deadline, "rx stalled at {next}");
    }
}

fn wait_event(rig: &Rig, want: VfEvent) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if rig.port.service(Duration::from_millis(5)).contains(&want) {
            return;
        }
        assert!(Instant::now() < deadline, "no {want:?}");
    }
}

#[test]
fn init_adopts_the_pf_mac_and_reports_link() {
    let rig = rig(2, 64);
    assert_eq!(rig.port.mac(), MAC);
    assert_eq!(rig.port.queue_count(), 2);
    assert!(rig.port.link_up());
}

#[test]
fn traffic_both_ways_keeps_contents_and_order_across_ring_wraparound() {
    // 64-descriptor rings, 1000 frames per direction per queue: the rings wrap 15 times.
    let mut rig = rig(2, 64);
    for q in 0..2 {
        transmit(&mut rig, q, 0, 1000);
        receive(&mut rig, q, 0, 1000);
    }
    let stats = rig.port.stats();
    assert_eq!(stats.tx_packets, 2000);
    assert_eq!(stats.rx_packets, 2000);
    assert_eq!(stats.rx_descriptor_errors, 0);
}

#[test]
fn a_pf_reset_mid_traffic_is_reported_and_traffic_resumes_with_the_same_mac() {
    let mut rig = rig(1, 64);
    transmit(&mut rig, 0, 0, 100);
    rig.model.pf_reset();
    wait_event(&rig, VfEvent::PfReset);
    wait_event(&rig, VfEvent::ResetComplete);
    assert_eq!(rig.port.mac(), MAC);
    transmit(&mut rig, 0, 100, 200);
    receive(&mut rig, 0, 0, 200);
}

/// Frames the device wrote into the ring before a PF reset and the poller had not taken are
/// dropped by the re-initialisation: the driver counts each once (`rx_dropped_reset`), so
/// every frame the device received is handed out, counted, or still unread.
#[test]
fn frames_unread_at_a_pf_reset_are_counted_as_dropped_by_it() {
    let mut rig = rig(1, 64);
    for seq in 0..10 {
        rig.model.inject(0, &frame(MAC, 0, seq, len_for(seq)));
    }
    rig.model
        .wait_for_stats(DEADLINE, |s| s.rx_frames == 10)
        .expect("the device writes the ten frames back");
    let mut out = Vec::new();
    assert_eq!(
        rig.queues[0].rx_burst(&mut out, 4),
        4,
        "the poller takes four"
    );

    rig.model.pf_reset();
    wait_event(&rig, VfEvent::PfReset);
    assert_eq!(
        rig.port.stats().rx_dropped_reset,
        6,
        "counted at the report"
    );
    wait_event(&rig, VfEvent::ResetComplete);
    let stats = rig.port.stats();
    assert_eq!(
        (stats.rx_packets, stats.rx_dropped_reset),
        (4, 6),
        "{stats:?}"
    );
    assert_eq!(
        rig.model.stats().rx_frames,
        stats.rx_packets + stats.rx_dropped_reset,
        "every frame the device wrote is read or counted"
    );
    assert_eq!(rig.queues[0].rx_burst(&mut out, 32), 0, "nothing stale");
    receive(&mut rig, 0, 100, 20);
    assert_eq!(rig.port.stats().rx_dropped_reset, 6, "counted once");
}

#[test]
fn a_write_back_the_device_should_never_produce_is_counted_not_followed() {
    let mut rig = rig(1, 64);
    rig.model.inject_bad_writeback(0);
    rig.model.inject(0, &frame(MAC, 0, 0, 100));
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while rig.port.stats().rx_descriptor_errors == 0 {
        rig.queues[0].rx_burst(&mut out, 32);
        assert!(out.is_empty(), "a bad write-back must not yield a frame");
        assert!(Instant::now() < deadline);
    }
    receive(&mut rig, 0, 1, 50);
}

#[test]
fn surprise_removal_is_reported_and_never_hangs() {
    let mut rig = rig(1, 64);
    transmit(&mut rig, 0, 0, 50);
    rig.model.surprise_remove();
    wait_event(&rig, VfEvent::Removed);
    let mut out = Vec::new();
    assert_eq!(rig.queues[0].rx_burst(&mut out, 32), 0);
    let pool = rig.queues[0].pool().clone();
    let mut frames: Vec<_> = (0..8)
        .map(|i| pool.alloc_from(&frame(MAC, 0, i, 64)).unwrap())
        .collect();
    rig.queues[0].tx_burst(&mut frames);
    rig.port.stop(Duration::from_millis(200)).ok();
    rig.port.release().expect("release after removal");
}

#[test]
fn a_release_request_is_reported_and_release_gives_the_device_back() {
    let mut rig = rig(1, 64);
    transmit(&mut rig, 0, 0, 50);
    rig.model.request_release();
    wait_event(&rig, VfEvent::ReleaseRequested);
    rig.port.stop(Duration::from_secs(1)).expect("planned stop");
    assert_eq!(rig.port.stats().tx_lost, 0, "a planned stop loses nothing");
    rig.port.release().expect("release");
    assert!(rig.model.released_within(Duration::from_secs(1)));
}

#[test]
fn multicast_groups_reach_the_pf_and_survive_a_pf_reset() {
    let mut rig = rig(1, 64);
    let groups = [
        MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]),
        MacAddr([0x33, 0x33, 0x00, 0x00, 0x00, 0x01]),
        MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb]),
    ];
    rig.port
        .set_multicast(&groups)
        .expect("the PF accepts the list");
    let expected: Vec<u16> = {
        let mut h: Vec<u16> = groups
            .iter()
            .map(|g| vf::igbvf::mailbox::multicast_hash(&g.0))
            .collect();
        h.sort_unstable();
        h.dedup();
        h
    };
    assert_eq!(expected.len(), 2, "the duplicate is sent once");
    assert_eq!(rig.model.pf_state().multicast, expected);

    rig.model.pf_reset();
    wait_event(&rig, VfEvent::PfReset);
    wait_event(&rig, VfEvent::ResetComplete);
    assert_eq!(
        rig.model.pf_state().multicast,
        expected,
        "the list is re-sent after the PF reset"
    );
    receive(&mut rig, 0, 0, 10);

    rig.port
        .set_multicast(&[])
        .expect("an empty list clears the filter");
    assert!(rig.model.pf_state().multicast.is_empty());
}

const NO_MAC: MacAddr = MacAddr([0; 6]);

#[test]
fn without_an_administrator_mac_the_driver_sets_a_random_local_one_and_keeps_it_across_a_pf_reset()
{
    let mut rig = rig_with(NO_MAC, None, 1, 64);
    let mac = rig.port.mac();
    assert_eq!(mac.0[0] & 0x03, 0x02, "{mac}: locally administered unicast");
    assert_eq!(rig.model.pf_state().mac, mac.0, "the PF accepted it");
    assert_eq!(rig.model.stats().mailbox.set_mac_addr, 1);
    transmit(&mut rig, 0, 0, 20);

    rig.model.pf_reset();
    wait_event(&rig, VfEvent::PfReset);
    wait_event(&rig, VfEvent::ResetComplete);
    assert_eq!(rig.port.mac(), mac, "the same mac after the reset");
    assert_eq!(rig.model.stats().mailbox.set_mac_addr, 2, "re-sent");
    assert_eq!(rig.model.pf_state().mac, mac.0);
    transmit(&mut rig, 0, 20, 20);
}

#[test]
fn without_an_administrator_mac_the_configured_mac_is_used() {
    let own = MacAddr([0x02, 0x15, 0x5d, 0xaa, 0xbb, 0xcc]);
    let mut rig = rig_with(NO_MAC, Some(own), 1, 64);
    assert_eq!(rig.port.mac(), own);
    assert_eq!(rig.model.pf_state().mac, own.0);
    receive(&mut rig, 0, 0, 10);
}

#[test]
fn a_multicast_administrator_mac_counts_as_none() {
    // The model, like Linux igb, treats a multicast administrator MAC as unset.
    let own = MacAddr([0x02, 0, 0, 0, 0, 0x42]);
    let rig = rig_with(MacAddr([0x01, 0, 0x5e, 0, 0, 1]), Some(own), 1, 64);
    assert_eq!(rig.port.mac(), own);
    assert_eq!(rig.model.pf_state().mac, own.0);
}

#[test]
fn the_administrator_mac_wins_over_a_configured_one() {
    let rig = rig_with(MAC, Some(MacAddr([0x02, 0, 0, 0, 0, 0x42])), 1, 64);
    assert_eq!(rig.port.mac(), MAC);
    assert_eq!(rig.model.stats().mailbox.set_mac_addr, 0);
}

#[test]
fn tx_pending_drains_to_zero_as_the_device_completes() {
    let mut rig = rig(1, 64);
    transmit(&mut rig, 0, 0, 40);
    let deadline = Instant::now() + DEADLINE;
    while rig.queues[0].tx_pending() > 0 {
        assert!(Instant::now() < deadline, "completions never came");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(VfQueue::index(&rig.queues[0]), 0);
    let stats = rig.port.stats();
    assert_eq!((stats.tx_packets, stats.tx_lost), (40, 0));
}

/// Puts `count` frames in flight that the device will never complete: the PF reset has
/// begun (the model's rings are off) but the driver has not serviced it yet, so its queue
/// still runs. Returns how many `tx_burst` took.
fn stranded_in_flight(rig: &mut Rig, count: u32) -> usize {
    rig.model.pf_reset_begin();
    let pool = rig.queues[0].pool().clone();
    let mut frames: Vec<Packet> = (0..count)
        .map(|i| pool.alloc_from(&frame(MAC, 0, i, 64)).unwrap())
        .collect();
    rig.queues[0].tx_burst(&mut frames)
}

#[test]
fn surprise_removal_with_frames_in_flight_counts_each_once_and_nothing_stays_pending() {
    let mut rig = rig(1, 64);
    assert_eq!(stranded_in_flight(&mut rig, 32), 32);
    assert_eq!(rig.queues[0].tx_pending(), 32, "the device holds them");
    rig.model.surprise_remove();
    // The queue alone notices (TDH reads all ones): lost, not pending forever.
    assert_eq!(rig.queues[0].tx_pending(), 0);
    assert_eq!(rig.port.stats().tx_lost, 32);
    wait_event(&rig, VfEvent::Removed);
    rig.port.stop(Duration::from_millis(100)).ok();
    rig.port.release().expect("release after removal");
    assert_eq!(rig.queues[0].tx_pending(), 0);
    let stats = rig.port.stats();
    assert_eq!((stats.tx_packets, stats.tx_lost), (0, 32), "counted once");
}

#[test]
fn removal_seen_by_the_control_thread_first_counts_each_once() {
    let mut rig = rig(1, 64);
    assert_eq!(stranded_in_flight(&mut rig, 16), 16);
    rig.model.surprise_remove();
    wait_event(&rig, VfEvent::Removed);
    assert_eq!(rig.queues[0].tx_pending(), 0);
    rig.port.release().expect("release after removal");
    assert_eq!(rig.port.stats().tx_lost, 16);
}

#[test]
fn a_stop_that_times_out_then_release_count_stranded_frames_once() {
    let mut rig = rig(1, 64);
    assert_eq!(stranded_in_flight(&mut rig, 32), 32);
    rig.port.stop(Duration::from_millis(50)).expect("stop");
    assert_eq!(rig.queues[0].tx_pending(), 0);
    assert_eq!(rig.port.stats().tx_lost, 32);
    rig.port.release().expect("release");
    assert_eq!(rig.queues[0].tx_pending(), 0);
    assert_eq!(rig.port.stats().tx_lost, 32, "counted once");
    assert!(rig.model.released_within(Duration::from_secs(1)));
}

#[test]
fn release_with_frames_in_flight_leaves_nothing_pending() {
    let mut rig = rig(1, 64);
    let pool = rig.queues[0].pool().clone();
    let mut frames: Vec<Packet> = (0..32)
        .map(|i| pool.alloc_from(&frame(MAC, 0, i, 64)).unwrap())
        .collect();
    assert_eq!(rig.queues[0].tx_burst(&mut frames), 32);
    rig.port.release().expect("release");
    assert_eq!(rig.queues[0].tx_pending(), 0);
    let stats = rig.port.stats();
    assert_eq!(
        stats.tx_packets + stats.tx_lost,
        32,
        "each completed or lost, once"
    );
    assert!(rig.model.released_within(Duration::from_secs(1)));
}
