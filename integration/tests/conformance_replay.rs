//! Conformance replay: the simulated host answers every recorded guest step with the bytes
//! OpenVMM's NetVSP answered.
//!
//! For each of the 29 transcripts the test starts a [`SimHost`] configured like the recording
//! (16-page rings, 64-page receive buffer, 32-page send buffer, loopback endpoint, 64 queues,
//! VF 7 for `vf-*`), then plays the guest by hand on raw rings of the [`ShmDevice`]: every
//! `g2h` record is rebuilt and written (send sections placed at `index × 6144`, GPA-direct data
//! placed in DMA pages with the page numbers rewritten, GPADL handles patched to the bus's),
//! every host action, close/reopen and subchannel offer is performed in its place, and every
//! `h2g` record is compared with what the host wrote, receive-buffer bytes included. As the
//! recorded guest did, the receive buffer starts poisoned with `0xEE` and each range is
//! re-poisoned before its completion is written.
//!
//! Policy: [`ComparePolicy::STRICT`] everywhere — the simulated host allocates control buffers,
//! data sub-allocations and transaction ids exactly like OpenVMM with these buffer sizes.
//! `silence` events are checked with a short bounded wait (nothing may arrive), not the
//! recorded duration.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use integration::conformance::{
    self, ComparePolicy, Direction, EventKind, HostAction, ObservedPacket, PacketRecord, Record,
    Transcript, compare,
};
use integration::host::{HostConfig, PortMode, SimHost};
use netvsc::vmbus::packet::gpa_page_count;
use netvsc::vmbus::ring::RING_HEADER_SIZE;
use netvsc::vmbus::shm::{ShmConfig, ShmDevice};
use netvsc::vmbus::{
    Doorbell, GpaRange, IncomingPacket, IncomingRing, OutgoingKind, OutgoingPacket, OutgoingRing,
    VmbusDevice,
};
use packet::{PAGE_SIZE, SharedMemory};

/// Bound on waiting for one host packet.
const PACKET_WAIT: Duration = Duration::from_secs(5);
/// How long a `silence` event is checked (the recordings waited 0.5–1.5 s).
const SILENCE: Duration = Duration::from_millis(150);
/// The link toggle delay given to the host: long enough that the delayed second indication
/// of `link-same-state` is unmistakably delayed, short enough for the suite.
const LINK_DELAY: Duration = Duration::from_millis(600);
/// Send-buffer section size.
const SECTION: usize = 6144;
/// The recorded guest's receive-buffer poison.
const POISON: u8 = 0xEE;

/// The guest's ends of one channel.
struct GuestChannel {
    tx: OutgoingRing,
    rx: IncomingRing,
    bell: Arc<dyn Doorbell>,
}

/// A transfer-page packet the guest read and has not completed yet.
struct Received {
    tid: u64,
    ranges: Vec<(u32, u32)>,
}

/// The hand-driven guest.
struct Guest {
    name: String,
    device: ShmDevice,
    channels: Vec<GuestChannel>,
    recv: SharedMemory,
    recv_gpadl: u32,
    send: SharedMemory,
    send_gpadl: u32,
    /// (channel, recorded tid) → what the host actually sent.
    received: HashMap<(u16, u64), Received>,
    packet: IncomingPacket,
    last_h2g_at: Option<Instant>,
}

impl Guest {
    fn new(name: &str, device: ShmDevice) -> Self {
        let (recv, recv_gpadl) = device.receive_buffer().unwrap();
        let (send, send_gpadl) = device.send_buffer().unwrap();
        recv.fill(0, recv.len(), POISON).unwrap();
        let mut guest = Self {
            name: name.to_owned(),
            device,
            channels: Vec::new(),
            recv,
            recv_gpadl,
            send,
            send_gpadl,
            received: HashMap::new(),
            packet: IncomingPacket::new(),
            last_h2g_at: None,
        };
        guest.open_primary();
        guest
    }

    fn open_primary(&mut self) {
        let rings = self.device.primary().unwrap();
        self.channels = vec![GuestChannel {
            tx: OutgoingRing::new(rings.outgoing, true).unwrap(),
            rx: IncomingRing::new(rings.incoming).unwrap(),
            bell: self.device.doorbell(0).unwrap(),
        }];
    }

    /// Close and reopen the primary channel (same GPADLs, zeroed rings).
    fn reopen(&mut self) {
        self.channels.clear();
        self.received.clear();
        self.device.reopen(PACKET_WAIT).unwrap();
        self.open_primary();
    }

    fn open_subchannels(&mut self, count: u16) {
        let rings = self.device.open_subchannels(count, PACKET_WAIT).unwrap();
        for r in rings {
            let bell = self.device.doorbell(r.index).unwrap();
            self.channels.push(GuestChannel {
                tx: OutgoingRing::new(r.outgoing, true).unwrap(),
                rx: IncomingRing::new(r.incoming).unwrap(),
                bell,
            });
        }
    }

    /// Writes the guest packet of record `p`.
    fn send(&mut self, p: &PacketRecord) {
        let mut payload = p.payload.clone();
        if matches!(p.packet_type, 6 | 9) && payload.len() >= 8 {
            let handle = match p.nvsp_type() {
                Some(101) => Some(self.recv_gpadl),
                Some(104) => Some(self.send_gpadl),
                _ => None,
            };
            if let Some(h) = handle {
                payload[4..8].copy_from_slice(&h.to_le_bytes());
            }
        }
        if let Some(section) = &p.section
            && let Some(bytes) = &section.bytes
        {
            self.send
                .write(section.index as usize * SECTION, bytes)
                .unwrap();
        }
        let mut tid = p.tid;
        if p.packet_type == 11
            && let Some(r) = self.received.remove(&(p.chan, p.tid))
        {
            for &(offset, count) in &r.ranges {
                let (offset, count) = (offset as usize, count as usize);
                if offset.saturating_add(count) <= self.recv.len() {
                    self.recv.fill(offset, count, POISON).unwrap();
                }
            }
            tid = r.tid;
        }
        // GPA direct: the recorded bytes go into fresh DMA pages at the recorded in-page offsets.
        let mut pfn_lists: Vec<Vec<u64>> = Vec::new();
        if let Some(gpa) = &p.gpa {
            for (i, range) in gpa.ranges.iter().enumerate() {
                let pages = gpa_page_count(range.byte_offset, range.byte_count) as usize;
                let mem = self.device.dma_memory(pages * PAGE_SIZE).unwrap();
                let data = &p.gpa_data[i];
                assert_eq!(data.range, i);
                mem.write(range.byte_offset as usize, &data.bytes).unwrap();
                let first = mem.bus_addr(0) / PAGE_SIZE as u64;
                pfn_lists.push((0..pages as u64).map(|k| first + k).collect());
            }
        }
        let gpa_ranges: Vec<GpaRange<'_>> = p.gpa.as_ref().map_or(Vec::new(), |gpa| {
            gpa.ranges
                .iter()
                .zip(&pfn_lists)
                .map(|(r, pfns)| GpaRange {
                    byte_offset: r.byte_offset,
                    byte_count: r.byte_count,
                    pfns,
                })
                .collect()
        });
        let kind = match p.packet_type {
            6 => OutgoingKind::InBand,
            11 => OutgoingKind::Completion,
            9 => OutgoingKind::GpaDirect {
                ranges: &gpa_ranges,
            },
            other => panic!("{}: seq {}: guest packet type {other}", self.name, p.seq),
        };
        let packet = OutgoingPacket {
            kind,
            transaction_id: tid,
            completion_requested: p.flags & 1 != 0,
            payload: &payload,
        };
        let ch = &mut self.channels[usize::from(p.chan)];
        if ch.tx.write(&packet).unwrap() {
            ch.bell.signal().unwrap();
        }
    }

    /// Reads the next host packet on `chan`, raw (descriptor, ext, payload), if any.
    fn try_read(&mut self, chan: u16) -> Option<Vec<u8>> {
        let ch = &mut self.channels[usize::from(chan)];
        let ring = ch.rx.memory().clone();
        let pos = ring.read_index().load(Ordering::Acquire) as usize;
        let got = ch
            .rx
            .read(&mut self.packet)
            .unwrap_or_else(|e| panic!("{}: channel {chan}: bad host packet: {e}", self.name));
        if !got {
            return None;
        }
        let len = self.packet.ring_len() - 8;
        let size = ring.data_size();
        let mut raw = vec![0u8; len];
        let first = len.min(size - pos);
        let mem = ring.shared_memory();
        mem.read(RING_HEADER_SIZE + pos, &mut raw[..first]).unwrap();
        mem.read(RING_HEADER_SIZE, &mut raw[first..]).unwrap();
        if ch.rx.commit() {
            ch.bell.signal().unwrap();
        }
        Some(raw)
    }

    /// Waits (bounded) until any open channel may have data.
    fn wait(&mut self, deadline: Instant) {
        let mut data = false;
        for ch in &self.channels {
            data |= ch.rx.arm_interrupt();
        }
        if !data {
            let remaining = deadline.saturating_duration_since(Instant::now());
            self.device
                .wait_for_interrupt(remaining.min(Duration::from_millis(20)))
                .unwrap();
        }
    }

    /// Reads the next host packet on `chan`, waiting at most [`PACKET_WAIT`].
    fn read(&mut self, chan: u16, seq: u64) -> Vec<u8> {
        let deadline = Instant::now() + PACKET_WAIT;
        loop {
            if let Some(raw) = self.try_read(chan) {
                self.last_h2g_at = Some(Instant::now());
                return raw;
            }
            assert!(
                Instant::now() < deadline,
                "{}: seq {seq}: no host packet on channel {chan} within {PACKET_WAIT:?}",
                self.name
            );
            self.wait(deadline);
        }
    }

    /// Compares the host's next packet on the record's channel with the record.
    fn expect(&mut self, p: &PacketRecord) {
        let raw = self.read(p.chan, p.seq);
        let observed = ObservedPacket::from_raw(p.chan, &raw).unwrap();
        let mut rxbuf = Vec::new();
        let mut ranges = Vec::new();
        for r in observed.transfer_ranges().unwrap_or_default() {
            let (offset, count) = (r.byte_offset as usize, r.byte_count as usize);
            let mut bytes = vec![0u8; count];
            if offset.saturating_add(count) <= self.recv.len() {
                self.recv.read(offset, &mut bytes).unwrap();
            } else {
                bytes.clear();
            }
            rxbuf.push(bytes);
            ranges.push((r.byte_offset, r.byte_count));
        }
        if observed.packet_type == 7 {
            self.received.insert(
                (p.chan, p.tid),
                Received {
                    tid: observed.tid,
                    ranges,
                },
            );
        }
        let observed = observed.with_rxbuf(rxbuf);
        if let Err(m) = compare(p, &observed, &ComparePolicy::STRICT) {
            panic!(
                "{}: seq {} ({}): {m:?}\nobserved: {observed:02x?}",
                self.name,
                p.seq,
                p.what.as_deref().unwrap_or("")
            );
        }
    }

    /// Nothing may arrive on any open channel for `duration`.
    fn assert_silence(&mut self, duration: Duration, seq: u64) {
        let deadline = Instant::now() + duration;
        loop {
            for chan in 0..self.channels.len() as u16 {
                if let Some(raw) = self.try_read(chan) {
                    let observed = ObservedPacket::from_raw(chan, &raw).unwrap();
                    panic!(
                        "{}: seq {seq}: expected silence, channel {chan} got {observed:02x?}",
                        self.name
                    );
                }
            }
            if Instant::now() >= deadline {
                return;
            }
            self.wait(deadline);
        }
    }
}

/// The host configuration of the recording.
fn host_config(t: &Transcript) -> HostConfig {
    let h = &t.header.host_config;
    HostConfig {
        shm: ShmConfig {
            max_channels: 4,
            ring_size: 16 * PAGE_SIZE,
            receive_buffer_size: 64 * PAGE_SIZE,
            send_buffer_size: 32 * PAGE_SIZE,
            dma_size: 64 * PAGE_SIZE,
            ..ShmConfig::default()
        },
        port: PortMode::Loopback,
        max_queues: h.endpoint_max_queues_after_cap as u16,
        link_speed_bps: h.endpoint_link_speed_bps,
        vf: h.vf_id,
        link_delay: LINK_DELAY,
        vf_device_delay: Duration::from_millis(100),
        rss_table_size: h.endpoint_indirection_table_size as u16,
        tx_offloads: h.endpoint_tx_offloads,
        ..HostConfig::default()
    }
}

fn replay(name: &str) {
    let t = conformance::load(name).unwrap();
    let vf_id = t.header.host_config.vf_id;
    let (host, device) = SimHost::start(host_config(&t)).unwrap();
    let mut guest = Guest::new(name, device);
    let offers = t
        .events()
        .filter(|e| matches!(e.kind, EventKind::SubchannelOffer { .. }))
        .count() as u16;
    let mut subchannels_opened = false;
    let mut last_action_at = None;
    for record in &t.records {
        match record {
            Record::Packet(p) if p.dir == Direction::G2h => guest.send(p),
            Record::Packet(p) => guest.expect(p),
            Record::Event(e) => match &e.kind {
                EventKind::HostAction { action, .. } => {
                    last_action_at = Some(Instant::now());
                    match action {
                        HostAction::LinkDown => host.set_link(false),
                        HostAction::LinkUp => host.set_link(true),
                        HostAction::VfRemoved => host.remove_vf(),
                        HostAction::VfAvailable => host.offer_vf(vf_id.expect("a VF id")),
                        HostAction::Other(what) => panic!("{name}: unknown host action {what}"),
                    }
                }
                EventKind::Silence { .. } => guest.assert_silence(SILENCE, e.seq),
                EventKind::Close { chan } => {
                    assert_eq!(*chan, 0, "{name}: only the primary is closed");
                    guest.reopen();
                }
                EventKind::SubchannelOffer { .. } if !subchannels_opened => {
                    subchannels_opened = true;
                    guest.open_subchannels(offers);
                }
                EventKind::Timing { .. } => {
                    // link-same-state: the second indication came only after the link delay.
                    let (Some(action), Some(second)) = (last_action_at, guest.last_h2g_at) else {
                        panic!("{name}: timing event without a host action and a reply");
                    };
                    assert!(
                        second.duration_since(action) >= LINK_DELAY,
                        "{name}: second link indication after {:?}, before the link delay",
                        second.duration_since(action)
                    );
                }
                EventKind::End(end) => {
                    let stats = host.stats();
                    assert_eq!(
                        stats.data_path_switches, end.set_data_path_to_guest_vf_calls,
                        "{name}: data path switches"
                    );
                    let recorded = &end.primary_guest_to_host_ring;
                    if recorded.interrupt_mask == 1 {
                        // A dead worker: it left the mask at 1 and did not consume the probe.
                        assert!(!stats.channel_alive, "{name}: the worker should be dead");
                        let ring = guest.channels[0].tx.memory();
                        assert_eq!(ring.interrupt_mask().load(Ordering::Acquire), 1, "{name}");
                        let unread = |w: u32, r: u32| {
                            (w + ring.data_size() as u32 - r) % ring.data_size() as u32
                        };
                        assert_eq!(
                            unread(
                                ring.write_index().load(Ordering::Acquire),
                                ring.read_index().load(Ordering::Acquire)
                            ),
                            unread(recorded.write_index, recorded.read_index),
                            "{name}: bytes the dead host left unread"
                        );
                    } else {
                        assert!(stats.channel_alive, "{name}: {:?}", stats.last_error);
                    }
                }
                _ => {}
            },
        }
    }
    guest.assert_silence(Duration::from_millis(100), u64::MAX);
}

macro_rules! scenarios {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                replay($name);
            }
        )*

        /// Every transcript in the folder has a test above.
        #[test]
        fn every_transcript_is_replayed() {
            let names: Vec<&str> = vec![$($name),*];
            let mut on_disk: Vec<String> = conformance::load_all()
                .unwrap()
                .iter()
                .map(|t| t.name().to_owned())
                .collect();
            on_disk.sort();
            let mut ours: Vec<String> = names.iter().map(|s| s.to_string()).collect();
            ours.sort();
            assert_eq!(ours, on_disk);
        }
    };
}

scenarios! {
    data_batched => "data-batched",
    data_gpa_direct => "data-gpa-direct",
    data_loopback => "data-loopback",
    data_vlan_ppi => "data-vlan-ppi",
    err_bad_rndis_packet => "err-bad-rndis-packet",
    err_bad_section_index => "err-bad-section-index",
    err_before_init => "err-before-init",
    err_empty_rx_completion => "err-empty-rx-completion",
    err_rndis_initialize_twice => "err-rndis-initialize-twice",
    err_rndis_reset => "err-rndis-reset",
    err_send_buffer_twice => "err-send-buffer-twice",
    err_unknown_nvsp_type => "err-unknown-nvsp-type",
    handshake_0x2 => "handshake-0x2",
    handshake_0x30002 => "handshake-0x30002",
    handshake_0x40000 => "handshake-0x40000",
    handshake_0x50000 => "handshake-0x50000",
    handshake_0x60000 => "handshake-0x60000",
    handshake_0x60001 => "handshake-0x60001",
    handshake_retry => "handshake-retry",
    link_down_up => "link-down-up",
    link_same_state => "link-same-state",
    rndis_control => "rndis-control",
    rndis_misc => "rndis-misc",
    rndis_offload_caps => "rndis-offload-caps",
    rndis_query_before_initialize => "rndis-query-before-initialize",
    subchannels_4q => "subchannels-4q",
    vf_host_remove => "vf-host-remove",
    vf_no_sriov_cap => "vf-no-sriov-cap",
    vf_switch => "vf-switch",
}
