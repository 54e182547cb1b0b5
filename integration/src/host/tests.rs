//! Host-level tests with a raw guest: NVSP init ordering, and every [`Fault`] producing its
//! effect on the wire.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use netvsc::nvsp::{self, NvspMessage};
use netvsc::rndis;
use netvsc::vmbus::shm::{ChannelState, ShmConfig, ShmDevice};
use netvsc::vmbus::{
    DeviceError, Doorbell, IncomingKind, IncomingPacket, IncomingRing, OutgoingKind,
    OutgoingPacket, OutgoingRing, RingError, VmbusDevice,
};
use packet::SharedMemory;

use super::{Fault, HostConfig, PortMode, SimHost};

mod teardown;

const WAIT: Duration = Duration::from_secs(3);
const QUIET: Duration = Duration::from_millis(150);

/// One host packet as the raw guest saw it.
#[derive(Debug)]
struct Seen {
    kind: IncomingKind,
    tid: u64,
    payload: Vec<u8>,
    ranges: Vec<(u32, u32)>,
}

impl Seen {
    fn nvsp_type(&self) -> u32 {
        u32::from_le_bytes(self.payload[..4].try_into().unwrap())
    }
    fn word(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

struct RawGuest {
    host: SimHost,
    device: ShmDevice,
    tx: OutgoingRing,
    rx: IncomingRing,
    bell: Arc<dyn Doorbell>,
    recv: (SharedMemory, u32),
    send: (SharedMemory, u32),
    next_tid: u64,
    next_section: usize,
    packet: IncomingPacket,
    /// Host in-band messages (VF association, host SWITCH_DATA_PATH) set aside by
    /// [`RawGuest::completion`] and [`RawGuest::control`].
    side: Vec<Seen>,
}

fn config() -> HostConfig {
    HostConfig {
        shm: ShmConfig {
            max_channels: 2,
            ring_size: 8 * 4096,
            receive_buffer_size: 64 * 4096,
            send_buffer_size: 32 * 4096,
            dma_size: 0,
            ..ShmConfig::default()
        },
        port: PortMode::External,
        link_delay: Duration::from_millis(50),
        ..HostConfig::default()
    }
}

impl RawGuest {
    fn start(config: HostConfig) -> Self {
        let (host, device) = SimHost::start(config).unwrap();
        let recv = device.receive_buffer().unwrap();
        let send = device.send_buffer().unwrap();
        let mut g = Self {
            tx: OutgoingRing::new(device.primary().unwrap().outgoing, true).unwrap(),
            rx: IncomingRing::new(device.primary().unwrap().incoming).unwrap(),
            bell: device.doorbell(0).unwrap(),
            host,
            device,
            recv,
            send,
            next_tid: 1,
            next_section: 0,
            packet: IncomingPacket::new(),
            side: Vec::new(),
        };
        g.reopen_rings();
        g
    }

    fn reopen_rings(&mut self) {
        let rings = self.device.primary().unwrap();
        self.tx = OutgoingRing::new(rings.outgoing, true).unwrap();
        self.rx = IncomingRing::new(rings.incoming).unwrap();
        self.bell = self.device.doorbell(0).unwrap();
        self.next_section = 0;
    }

    fn write(&mut self, kind: OutgoingKind<'_>, tid: u64, rc: bool, payload: &[u8]) {
        let p = OutgoingPacket {
            kind,
            transaction_id: tid,
            completion_requested: rc,
            payload,
        };
        self.tx.write(&p).unwrap();
        self.bell.signal().unwrap();
    }

    /// Sends an NVSP message in band with completion requested; returns its tid.
    fn nvsp(&mut self, message: &NvspMessage<'_>) -> u64 {
        let tid = self.next_tid;
        self.next_tid += 1;
        let bytes = message.to_vec(nvsp::GUEST_MESSAGE_SIZE);
        self.write(OutgoingKind::InBand, tid, true, &bytes);
        tid
    }

    /// Sends an RNDIS message through the next send section; returns the NVSP tid.
    fn rndis(&mut self, message: &[u8], channel_type: u32) -> u64 {
        let section = self.next_section;
        self.next_section += 1;
        self.send.0.write(section * 6144, message).unwrap();
        self.nvsp(&NvspMessage::SendRndisPacket(
            nvsp::Message1SendRndisPacket::new(channel_type, section as u32, message.len() as u32),
        ))
    }

    fn keepalive(&mut self, id: u32) -> u64 {
        let mut buf = [0u8; 64];
        let n = rndis::encode_keepalive(&mut buf, id).unwrap();
        self.rndis(&buf[..n], nvsp::CONTROL_CHANNEL_TYPE)
    }

    fn try_next(&mut self) -> Result<Option<Seen>, RingError> {
        if !self.rx.read(&mut self.packet)? {
            return Ok(None);
        }
        self.rx.commit();
        let p = &self.packet;
        Ok(Some(Seen {
            kind: p.kind(),
            tid: p.transaction_id(),
            payload: p.payload().to_vec(),
            ranges: p
                .transfer_ranges()
                .map(|r| (r.byte_offset, r.byte_count))
                .collect(),
        }))
    }

    fn next_within(&mut self, limit: Duration) -> Option<Seen> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(seen) = self.try_next().unwrap() {
                return Some(seen);
            }
            if Instant::now() >= deadline {
                return None;
            }
            if !self.rx.arm_interrupt() {
                let _ = self.device.wait_for_interrupt(Duration::from_millis(10));
            }
        }
    }

    fn next(&mut self) -> Seen {
        self.next_within(WAIT).expect("a host packet")
    }

    fn assert_quiet(&mut self) {
        if let Some(seen) = self.next_within(QUIET) {
            panic!("expected nothing, got {seen:?}");
        }
    }

    /// The next packet that is not a host in-band message (those go to `side`).
    fn next_reply(&mut self) -> Seen {
        loop {
            let seen = self.next();
            if seen.kind == IncomingKind::InBand
                && seen.tid >= nvsp::HOST_VF_ASSOCIATION_TRANSACTION_ID
            {
                self.side.push(seen);
            } else {
                return seen;
            }
        }
    }

    /// Reads the next completion for `tid` and returns it.
    fn completion(&mut self, tid: u64) -> Seen {
        let seen = self.next_reply();
        assert_eq!(
            (seen.kind, seen.tid),
            (IncomingKind::Completion, tid),
            "{seen:?}"
        );
        seen
    }

    /// Reads a control transfer-page packet, returns the RNDIS bytes and completes it.
    fn control(&mut self) -> Vec<u8> {
        let seen = self.next_reply();
        assert!(
            matches!(seen.kind, IncomingKind::TransferPages { .. }),
            "{seen:?}"
        );
        let (offset, count) = seen.ranges[0];
        let mut bytes = vec![0u8; count as usize];
        self.recv.0.read(offset as usize, &mut bytes).unwrap();
        self.complete_rx(seen.tid);
        bytes
    }

    fn complete_rx(&mut self, tid: u64) {
        let payload = NvspMessage::SendRndisPacketComplete(
            nvsp::Message1SendRndisPacketComplete::new(nvsp::STATUS_SUCCESS),
        )
        .to_vec(8);
        self.write(OutgoingKind::Completion, tid, false, &payload);
    }

    /// INIT 0x60001 … SEND_SEND_BUFFER, RNDIS INITIALIZE, filter 0xd.
    fn bring_up(&mut self) {
        let tid = self.nvsp(&NvspMessage::Init(nvsp::MessageInit::new(nvsp::VERSION_61)));
        assert_eq!(self.completion(tid).word(12), nvsp::STATUS_SUCCESS);
        let tid = self.nvsp(&NvspMessage::SendNdisConfig(
            nvsp::Message2SendNdisConfig::new(1514, nvsp::default_capabilities(nvsp::VERSION_61)),
        ));
        self.completion(tid);
        let tid = self.nvsp(&NvspMessage::SendNdisVersion(
            nvsp::Message1SendNdisVersion::new(nvsp::NDIS_VERSION_6_30),
        ));
        self.completion(tid);
        let tid = self.nvsp(&NvspMessage::SendReceiveBuffer(
            nvsp::Message1SendReceiveBuffer::new(self.recv.1, nvsp::RECEIVE_BUFFER_ID),
        ));
        assert_eq!(self.completion(tid).word(4), nvsp::STATUS_SUCCESS);
        let tid = self.nvsp(&NvspMessage::SendSendBuffer(
            nvsp::Message1SendSendBuffer::new(self.send.1, 0),
        ));
        self.completion(tid);
        let mut buf = [0u8; 64];
        let n = rndis::encode_initialize(&mut buf, 1, rndis::GUEST_MAX_TRANSFER_SIZE).unwrap();
        let tid = self.rndis(&buf[..n], nvsp::CONTROL_CHANNEL_TYPE);
        self.completion(tid);
        assert_eq!(
            self.control()[..4],
            rndis::MESSAGE_TYPE_INITIALIZE_CMPLT.to_le_bytes()
        );
        let n = rndis::encode_set(
            &mut buf,
            2,
            rndis::OID_GEN_CURRENT_PACKET_FILTER,
            &13u32.to_le_bytes(),
        )
        .unwrap();
        let tid = self.rndis(&buf[..n], nvsp::CONTROL_CHANNEL_TYPE);
        self.completion(tid);
        self.control();
    }

    /// Waits (bounded) until the host says its worker is dead.
    fn wait_dead(&self) {
        let deadline = Instant::now() + WAIT;
        while self.host.stats().channel_alive {
            assert!(Instant::now() < deadline, "the worker did not stop");
            std::thread::yield_now();
        }
    }
}

fn frame(n: u8) -> Vec<u8> {
    let mut f = vec![n; 60];
    f[..6].copy_from_slice(&[0x00, 0x15, 0x5d, 0x01, 0x02, 0x03]);
    f
}

#[test]
fn the_control_handle_and_the_external_port_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SimHost>();
    check::<super::ExternalPort>();
    check::<super::HostStats>();
}

// --- Initialisation order ------------------------------------------------------------------

#[test]
fn a_message_before_init_stops_the_worker_silently() {
    let mut g = RawGuest::start(config());
    g.nvsp(&NvspMessage::SendNdisVersion(
        nvsp::Message1SendNdisVersion::new(nvsp::NDIS_VERSION_6_30),
    ));
    g.wait_dead();
    g.nvsp(&NvspMessage::Init(nvsp::MessageInit::new(nvsp::VERSION_61)));
    g.assert_quiet();
    let stats = g.host.stats();
    assert_eq!(stats.protocol_errors, 1);
    assert_eq!(stats.nvsp_version, None);
    // The guest→host interrupt mask stays 1 on a dead channel.
    assert_eq!(g.tx.memory().interrupt_mask().load(Ordering::Acquire), 1);
}

#[test]
fn the_receive_buffer_before_ndis_config_is_fatal_from_nvsp_2() {
    let mut g = RawGuest::start(config());
    let tid = g.nvsp(&NvspMessage::Init(nvsp::MessageInit::new(nvsp::VERSION_61)));
    g.completion(tid);
    g.nvsp(&NvspMessage::SendReceiveBuffer(
        nvsp::Message1SendReceiveBuffer::new(g.recv.1, nvsp::RECEIVE_BUFFER_ID),
    ));
    g.wait_dead();
    g.assert_quiet();
}

#[test]
fn duplicates_are_fatal_and_a_reopen_recovers() {
    let mut g = RawGuest::start(config());
    let tid = g.nvsp(&NvspMessage::Init(nvsp::MessageInit::new(nvsp::VERSION_61)));
    g.completion(tid);
    for _ in 0..2 {
        g.nvsp(&NvspMessage::SendNdisVersion(
            nvsp::Message1SendNdisVersion::new(nvsp::NDIS_VERSION_6_30),
        ));
    }
    // The first gets its empty completion, the duplicate kills the worker.
    assert!(g.next().payload.is_empty());
    g.wait_dead();
    g.device.reopen(WAIT).unwrap();
    g.reopen_rings();
    g.bring_up();
    let stats = g.host.stats();
    assert!(stats.channel_alive);
    assert_eq!(stats.reopens, 1);
}

#[test]
fn an_unsupported_version_gets_status_none_and_the_guest_may_retry_lower() {
    let mut g = RawGuest::start(config());
    g.host
        .inject_fault(Fault::RefuseVersionsAbove(nvsp::VERSION_5));
    for (version, status) in [
        (0x70000, nvsp::STATUS_NONE),
        (nvsp::VERSION_61, nvsp::STATUS_NONE),
        (nvsp::VERSION_5, nvsp::STATUS_SUCCESS),
    ] {
        let tid = g.nvsp(&NvspMessage::Init(nvsp::MessageInit::new(version)));
        let reply = g.completion(tid);
        assert_eq!(reply.payload.len(), nvsp::INIT_COMPLETE_MESSAGE_SIZE);
        assert_eq!(reply.word(12), status, "INIT {version:#x}");
    }
    assert_eq!(g.host.stats().nvsp_version, Some(nvsp::VERSION_5));
}

// --- Data path -----------------------------------------------------------------------------

#[test]
fn frames_go_both_ways_through_the_external_port() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    assert!(g.host.external().inject_on(0, &frame(1)));
    let seen = g.next();
    assert_eq!(seen.tid, 16);
    assert_eq!(seen.ranges, vec![(16 * 1806, 1806)]);
    g.complete_rx(seen.tid);
    let mut buf = vec![0u8; 200];
    let n = rndis::write_packet(&mut buf, &frame(2), &rndis::PacketInfo::default()).unwrap();
    let tid = g.rndis(&buf[..n], nvsp::DATA_CHANNEL_TYPE);
    assert_eq!(g.completion(tid).word(4), nvsp::STATUS_SUCCESS);
    assert_eq!(g.host.external().recv(WAIT), Some(frame(2)));
    let stats = g.host.stats();
    assert_eq!((stats.rx_delivered, stats.tx_packets), (1, 1));
    assert_eq!(stats.completions_outstanding, 0);
}

#[test]
fn the_drop_counters_a_poller_reads_are_the_snapshots() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    // The guest reads nothing: the queue's backlog fills, and the rest is refused and counted.
    let sent = 2 * super::vswitch::PORT_QUEUE_FRAMES;
    let refused = (0..sent)
        .filter(|&i| !g.host.external().inject_on(0, &frame(i as u8)))
        .count() as u64;
    assert!(refused >= 1000, "{refused} of {sent} refused");
    let (drops, stats) = (g.host.flow_drops(), g.host.stats());
    assert_eq!(drops.to_guest, refused);
    assert_eq!(
        drops.to_guest,
        stats.rx_dropped_ring_full + stats.rx_dropped_no_buffer + stats.rx_dropped_filtered
    );
    assert_eq!(drops.to_external, stats.tx_dropped_port_full);
}

#[test]
fn the_far_end_takes_every_waiting_frame_at_once_in_order() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    let mut buf = vec![0u8; 200];
    for n in 10..13 {
        let len = rndis::write_packet(&mut buf, &frame(n), &rndis::PacketInfo::default()).unwrap();
        let tid = g.rndis(&buf[..len], nvsp::DATA_CHANNEL_TYPE);
        // The host completes a send once its frame is at the external port.
        assert_eq!(g.completion(tid).word(4), nvsp::STATUS_SUCCESS);
    }
    let mut frames = std::collections::VecDeque::from([(7, frame(9))]);
    g.host.external().recv_all(&mut frames);
    let got: Vec<_> = frames.iter().map(|(q, f)| (*q, f.clone())).collect();
    assert_eq!(
        got,
        [
            (7, frame(9)),
            (0, frame(10)),
            (0, frame(11)),
            (0, frame(12))
        ]
    );
    // Nothing left; an empty batch is exchanged, not appended to.
    frames.clear();
    g.host.external().recv_all(&mut frames);
    assert!(frames.is_empty());
    assert_eq!(g.host.external().try_recv(), None);
}

#[test]
fn receives_wait_for_the_packet_filter() {
    let mut g = RawGuest::start(config());
    let tid = g.nvsp(&NvspMessage::Init(nvsp::MessageInit::new(nvsp::VERSION_1)));
    g.completion(tid);
    assert!(g.host.external().inject_on(0, &frame(3)));
    g.assert_quiet();
    assert_eq!(g.host.external().pending_to_guest(), 1);
}

// --- Faults --------------------------------------------------------------------------------

#[test]
fn bad_transfer_range_points_outside_the_receive_buffer_once() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    g.host.inject_fault(Fault::BadTransferRange);
    for i in 0..2u8 {
        assert!(g.host.external().inject_on(0, &frame(i)));
        let seen = g.next();
        let (offset, _) = seen.ranges[0];
        if i == 0 {
            assert_eq!(offset as usize, g.recv.0.len());
        } else {
            assert!((offset as usize) < g.recv.0.len());
        }
        g.complete_rx(seen.tid);
    }
    assert!(g.host.stats().channel_alive);
}

#[test]
fn malformed_packet_corrupts_the_next_receive_message() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    g.host.inject_fault(Fault::MalformedPacket);
    assert!(g.host.external().inject_on(0, &frame(1)));
    let seen = g.next();
    let (offset, count) = seen.ranges[0];
    let mut msg = vec![0u8; count as usize];
    g.recv.0.read(offset as usize, &mut msg).unwrap();
    assert!(rndis::RndisMessage::parse(&msg).is_err());
    g.complete_rx(seen.tid);
    assert!(g.host.external().inject_on(0, &frame(2)));
    let seen = g.next();
    let (offset, count) = seen.ranges[0];
    let mut msg = vec![0u8; count as usize];
    g.recv.0.read(offset as usize, &mut msg).unwrap();
    assert!(matches!(
        rndis::RndisMessage::parse(&msg),
        Ok(rndis::RndisMessage::Packet(_))
    ));
}

#[test]
fn drop_duplicate_and_wrong_tid_completions() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    g.host.inject_fault(Fault::DropCompletions(1));
    g.keepalive(10);
    // Only the RNDIS reply arrives, not the send completion.
    assert_eq!(
        g.control()[..4],
        rndis::MESSAGE_TYPE_KEEPALIVE_CMPLT.to_le_bytes()
    );
    g.assert_quiet();
    g.host.inject_fault(Fault::DuplicateCompletion);
    let tid = g.keepalive(11);
    g.completion(tid);
    g.completion(tid);
    g.control();
    g.host.inject_fault(Fault::WrongTid);
    let tid = g.keepalive(12);
    let seen = g.next();
    assert_eq!(seen.kind, IncomingKind::Completion);
    assert_ne!(seen.tid, tid);
    assert_eq!(seen.tid >> 48, 0x5EED);
    g.control();
    let tid = g.keepalive(13);
    g.completion(tid);
    g.control();
    assert_eq!(g.host.stats().faults_injected, 3);
}

#[test]
fn stop_reading_leaves_the_ring_unconsumed_until_resumed() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    g.host.inject_fault(Fault::StopReading);
    // Let the host apply the fault before writing: bounded wait on its counter.
    let deadline = Instant::now() + WAIT;
    while g.host.stats().faults_injected == 0 {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    let tid = g.keepalive(20);
    g.assert_quiet();
    let ring = g.tx.memory();
    assert_ne!(
        ring.read_index().load(Ordering::Acquire),
        ring.write_index().load(Ordering::Acquire)
    );
    g.host.inject_fault(Fault::ResumeReading);
    g.completion(tid);
    g.control();
}

#[test]
fn dead_channel_and_revoked_receive_buffer_stop_the_worker_until_a_reopen() {
    for fault in [Fault::DeadChannel, Fault::RevokeReceiveBuffer] {
        let mut g = RawGuest::start(config());
        g.bring_up();
        g.host.inject_fault(fault);
        g.wait_dead();
        g.keepalive(30);
        g.assert_quiet();
        assert_eq!(
            g.host.stats().protocol_errors,
            0,
            "{fault:?} is not the guest's fault"
        );
        g.device.reopen(WAIT).unwrap();
        g.reopen_rings();
        g.bring_up();
        assert!(g.host.stats().channel_alive);
    }
}

#[test]
fn rescind_removes_the_device_for_good() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    g.host.inject_fault(Fault::Rescind);
    let deadline = Instant::now() + WAIT;
    while g.host.host_side().state() != ChannelState::Rescinded {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    assert!(matches!(
        g.device.wait_for_interrupt(QUIET),
        Err(DeviceError::Gone { .. })
    ));
    assert!(matches!(
        g.device.reopen(QUIET),
        Err(DeviceError::Gone { .. })
    ));
}

#[test]
fn ring_corruption_makes_the_guest_reader_fail() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    g.host.inject_fault(Fault::RingCorruption);
    let deadline = Instant::now() + WAIT;
    loop {
        match g.try_next() {
            Err(RingError::Corrupt { .. }) => break,
            Ok(None) => {}
            other => panic!("{other:?}"),
        }
        assert!(Instant::now() < deadline, "no corrupt descriptor seen");
        if !g.rx.arm_interrupt() {
            let _ = g.device.wait_for_interrupt(Duration::from_millis(10));
        }
    }
    g.wait_dead();
}

#[test]
fn a_host_switch_to_synthetic_and_vf_removal_follow_openvmm_order() {
    let mut g = RawGuest::start(HostConfig {
        vf: Some(7),
        ..config()
    });
    g.bring_up();
    // The association came right after INITIALIZE_CMPLT; bring_up set it aside.
    let assoc = g.side.remove(0);
    assert_eq!(assoc.tid, nvsp::HOST_VF_ASSOCIATION_TRANSACTION_ID);
    assert_eq!(
        (assoc.nvsp_type(), assoc.word(4), assoc.word(8)),
        (128, 1, 7)
    );
    let tid = g.nvsp(&NvspMessage::SwitchDataPath(
        nvsp::Message4SwitchDataPath::new(nvsp::DATA_PATH_VF),
    ));
    assert!(g.completion(tid).payload.is_empty());
    g.host.remove_vf();
    let switch = g.next();
    assert_eq!(switch.tid, nvsp::HOST_SWITCH_DATA_PATH_TRANSACTION_ID);
    assert_eq!(switch.payload.len(), 8);
    let gone = g.next();
    assert_eq!((gone.nvsp_type(), gone.word(4), gone.word(8)), (128, 0, 7));
    assert_eq!(g.host.stats().data_path_switches, vec![true, false]);
}

// --- The VF port: steering, ordering at a switch, the uplink --------------------------------

/// A VF port that records what it gets; it can refuse frames and hold a flush.
#[derive(Debug, Default)]
struct FakeWire {
    queues: u16,
    refuse: std::sync::atomic::AtomicBool,
    delivered: parking_lot::Mutex<Vec<(u16, Vec<u8>)>>,
    flushes: std::sync::atomic::AtomicUsize,
    /// While true, `flush` waits (bounded by its timeout) for the test to clear it.
    hold_flush: parking_lot::Mutex<bool>,
    released: parking_lot::Condvar,
    /// What `room` answers (unless refusing).
    room: std::sync::atomic::AtomicUsize,
}

impl FakeWire {
    fn new(queues: u16) -> Arc<Self> {
        Arc::new(Self {
            queues,
            room: std::sync::atomic::AtomicUsize::new(usize::MAX),
            ..Self::default()
        })
    }

    fn delivered(&self) -> Vec<(u16, Vec<u8>)> {
        self.delivered.lock().clone()
    }

    fn release_flush(&self) {
        *self.hold_flush.lock() = false;
        self.released.notify_all();
    }
}

impl super::VfWire for FakeWire {
    fn deliver(&self, queue: u16, frame: &[u8]) -> bool {
        if self.refuse.load(Ordering::Relaxed) {
            return false;
        }
        self.delivered.lock().push((queue, frame.to_vec()));
        true
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.flushes.fetch_add(1, Ordering::AcqRel);
        let deadline = Instant::now() + timeout;
        let mut hold = self.hold_flush.lock();
        while *hold {
            if self.released.wait_until(&mut hold, deadline).timed_out() {
                return !*hold;
            }
        }
        true
    }

    fn queues(&self) -> u16 {
        self.queues
    }

    fn room(&self, _queue: u16) -> usize {
        if self.refuse.load(Ordering::Relaxed) {
            0
        } else {
            self.room.load(Ordering::Relaxed)
        }
    }
}

/// Waits (bounded) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

fn vf_config() -> HostConfig {
    HostConfig {
        vf: Some(7),
        vf_device_delay: Duration::from_millis(20),
        ..config()
    }
}

impl RawGuest {
    /// Sends `SWITCH_DATA_PATH {path}`; returns its tid.
    fn switch_path(&mut self, path: u32) -> u64 {
        self.nvsp(&NvspMessage::SwitchDataPath(
            nvsp::Message4SwitchDataPath::new(path),
        ))
    }

    /// Reads transfer-page packets (completing them) until `frames` came, in order, and
    /// nothing else.
    fn expect_synthetic(&mut self, frames: &[&[u8]]) {
        let mut got = Vec::new();
        while got.len() < frames.len() {
            let seen = self.next_reply();
            assert!(
                matches!(seen.kind, IncomingKind::TransferPages { .. }),
                "{seen:?}"
            );
            for &(offset, _) in &seen.ranges {
                let mut frame = vec![0u8; frames.get(got.len()).map_or(60, |f| f.len())];
                self.recv
                    .0
                    .read(offset as usize + rndis::HOST_RX_FRAME_OFFSET, &mut frame)
                    .unwrap();
                got.push(frame);
            }
            self.complete_rx(seen.tid);
        }
        assert_eq!(got, frames);
    }
}

fn multicast(n: u8) -> Vec<u8> {
    let mut f = frame(n);
    f[..6].copy_from_slice(&[0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
    f
}

fn broadcast(n: u8) -> Vec<u8> {
    let mut f = frame(n);
    f[..6].fill(0xff);
    f
}

#[test]
fn unicast_follows_the_data_path_to_the_vf_and_broadcast_and_multicast_stay_synthetic() {
    let mut g = RawGuest::start(vf_config());
    g.bring_up();
    let wire = FakeWire::new(2);
    g.host.attach_vf_wire(wire.clone());
    // Synthetic data path: everything goes to the guest's rings.
    assert!(g.host.external().inject_on(0, &frame(1)));
    g.expect_synthetic(&[&frame(1)]);
    assert!(wire.delivered().is_empty());

    let tid = g.switch_path(nvsp::DATA_PATH_VF);
    assert!(
        g.completion(tid).payload.is_empty(),
        "nothing pending: at once"
    );
    assert!(g.host.data_path_vf());
    assert_eq!(g.host.vf_device_ready(), Some(7));

    assert!(g.host.external().inject_on(0, &frame(2)));
    // Queue 3 folds onto the VF's 2 queues.
    assert!(g.host.external().inject_on(3, &frame(3)));
    assert!(g.host.external().inject_on(0, &broadcast(4)));
    assert!(g.host.external().inject_on(0, &multicast(5)));
    g.expect_synthetic(&[&broadcast(4), &multicast(5)]);
    assert_eq!(wire.delivered(), vec![(0, frame(2)), (1, frame(3))]);

    // A VF that refuses loses the frame, counted.
    wire.refuse.store(true, Ordering::Relaxed);
    assert!(!g.host.external().inject_on(0, &frame(6)));
    // Paced, the frame waits instead: nothing delivered, nothing counted.
    assert_eq!(
        g.host.external().inject_paced(0, &frame(6)),
        super::Paced::NoRoom
    );
    wire.refuse.store(false, Ordering::Relaxed);
    wire.room.store(0, Ordering::Relaxed);
    assert_eq!(
        g.host.external().inject_paced(1, &frame(6)),
        super::Paced::NoRoom
    );
    assert_eq!(
        g.host.external().inject_paced(0, &broadcast(6)),
        super::Paced::Delivered,
        "broadcast is paced on the synthetic backlog"
    );
    g.expect_synthetic(&[&broadcast(6)]);
    wire.room.store(1, Ordering::Relaxed);
    assert_eq!(
        g.host.external().inject_paced(1, &frame(8)),
        super::Paced::Delivered
    );
    assert_eq!(wire.delivered().last(), Some(&(1, frame(8))));
    wire.delivered.lock().pop();

    // Without a VF port, unicast is synthetic again even on the VF data path.
    g.host.detach_vf_wire();
    assert!(g.host.external().inject_on(0, &frame(7)));
    g.expect_synthetic(&[&frame(7)]);
    let stats = g.host.stats();
    assert_eq!((stats.rx_to_vf, stats.rx_dropped_vf), (3, 1));
    assert_eq!(stats.switch_flush_timeouts, 0);
    assert_eq!(wire.delivered().len(), 2);
}

#[test]
fn a_switch_to_the_vf_completes_only_after_the_synthetic_backlog_reached_the_guest() {
    let mut g = RawGuest::start(vf_config());
    g.bring_up();
    let wire = FakeWire::new(1);
    g.host.attach_vf_wire(wire.clone());
    // More frames than receive sub-allocations (129): the guest completes none yet, so the
    // rest waits in the switch.
    const FRAMES: usize = 200;
    for i in 0..FRAMES {
        assert!(g.host.external().inject_on(0, &frame(i as u8)));
    }
    wait_until("the host ran out of sub-allocations", || {
        g.host.external().pending_to_guest() == FRAMES - 129
    });
    let tid = g.switch_path(nvsp::DATA_PATH_VF);
    wait_until("the host took the switch", || g.host.data_path_vf());
    // Injected after the flip: straight to the VF, not behind the backlog.
    assert!(g.host.external().inject_on(0, &frame(0xee)));
    assert_eq!(wire.delivered(), vec![(0, frame(0xee))]);

    // Read (without completing) everything the host wrote: only receives, no completion.
    let mut held = Vec::new();
    let mut ranges = 0;
    while let Some(seen) = g.next_within(QUIET) {
        assert!(
            matches!(seen.kind, IncomingKind::TransferPages { .. }),
            "the switch completed while frames were pending: {seen:?}"
        );
        ranges += seen.ranges.len();
        held.push(seen.tid);
    }
    assert_eq!(ranges, 129);
    for tid in held {
        g.complete_rx(tid);
    }
    // Now the rest arrives, then the completion.
    loop {
        let seen = g.next();
        match seen.kind {
            IncomingKind::TransferPages { .. } => {
                ranges += seen.ranges.len();
                g.complete_rx(seen.tid);
            }
            IncomingKind::Completion => {
                assert_eq!(seen.tid, tid);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        ranges, FRAMES,
        "every synthetic frame came before the completion"
    );
    let stats = g.host.stats();
    assert_eq!(stats.switch_flush_timeouts, 0);
    assert_eq!(stats.rx_delivered, FRAMES as u64);
    assert_eq!(stats.rx_to_vf, 1);
}

#[test]
fn a_switch_to_synthetic_flushes_the_vf_wire_before_completing() {
    let mut g = RawGuest::start(vf_config());
    g.bring_up();
    let wire = FakeWire::new(1);
    g.host.attach_vf_wire(wire.clone());
    let tid = g.switch_path(nvsp::DATA_PATH_VF);
    g.completion(tid);
    assert_eq!(wire.flushes.load(Ordering::Acquire), 0);

    *wire.hold_flush.lock() = true;
    let tid = g.switch_path(nvsp::DATA_PATH_SYNTHETIC);
    wait_until("the host flushes the VF", || {
        wire.flushes.load(Ordering::Acquire) == 1
    });
    assert!(
        g.host.data_path_vf(),
        "the steering flag flips only after the VF's wire is flushed"
    );
    g.assert_quiet();
    wire.release_flush();
    assert!(g.completion(tid).payload.is_empty());
    assert!(!g.host.data_path_vf());
    // Frames now take the synthetic path.
    assert!(g.host.external().inject_on(0, &frame(9)));
    g.expect_synthetic(&[&frame(9)]);
    assert!(wire.delivered().is_empty());
    assert_eq!(g.host.stats().switch_flush_timeouts, 0);
    assert_eq!(g.host.stats().data_path_switches, vec![true, false]);
}

#[test]
fn a_host_switch_to_synthetic_flushes_the_vf_and_removal_clears_the_device() {
    let mut g = RawGuest::start(vf_config());
    g.bring_up();
    wait_until("the VF device is ready", || {
        g.host.vf_device_ready() == Some(7)
    });
    let wire = FakeWire::new(1);
    g.host.attach_vf_wire(wire.clone());
    let tid = g.switch_path(nvsp::DATA_PATH_VF);
    g.completion(tid);
    g.host.remove_vf();
    let switch = g.next();
    assert_eq!(switch.tid, nvsp::HOST_SWITCH_DATA_PATH_TRANSACTION_ID);
    assert_eq!(wire.flushes.load(Ordering::Acquire), 1);
    assert!(!g.host.data_path_vf());
    assert_eq!(g.host.vf_device_ready(), None);
}

#[test]
fn vf_uplink_frames_reach_the_external_port() {
    let g = RawGuest::start(config());
    let uplink = g.host.vf_uplink();
    uplink.clone().transmit(1, &frame(1));
    uplink.transmit(0, &frame(2));
    assert_eq!(g.host.external().try_recv(), Some((1, frame(1))));
    assert_eq!(g.host.external().recv(WAIT), Some(frame(2)));
    assert_eq!(g.host.stats().tx_from_vf, 2);
}

#[test]
fn in_loopback_vf_uplink_frames_come_back_through_the_steering() {
    let mut g = RawGuest::start(HostConfig {
        port: PortMode::Loopback,
        ..vf_config()
    });
    g.bring_up();
    g.host.vf_uplink().transmit(0, &frame(3));
    g.expect_synthetic(&[&frame(3)]);
    let wire = FakeWire::new(1);
    g.host.attach_vf_wire(wire.clone());
    let tid = g.switch_path(nvsp::DATA_PATH_VF);
    g.completion(tid);
    g.host.vf_uplink().transmit(0, &frame(4));
    wait_until("the frame is looped back to the VF", || {
        wire.delivered() == vec![(0, frame(4))]
    });
    assert!(g.host.external().try_recv().is_none());
}

#[test]
fn the_guest_memory_is_the_whole_bus() {
    let g = RawGuest::start(config());
    let memory = g.host.guest_memory();
    let layout = g.host.host_side().layout().clone();
    assert_eq!(memory.len(), layout.total_size);
    assert_eq!(memory.bus_addr(0), 0);
    // The receive buffer the guest sees is that memory at its offset.
    g.recv.0.write(0, &[0xab]).unwrap();
    let mut byte = [0u8];
    memory
        .read(layout.receive_buffer_offset, &mut byte)
        .unwrap();
    assert_eq!(byte, [0xab]);
}

#[test]
fn the_host_polls_the_monitor_page_at_the_latency_the_guest_wrote() {
    let idle = super::idle_wait;
    assert_eq!(idle(None), super::IDLE_WAIT, "no latency written");
    assert_eq!(
        idle(Some(Duration::from_micros(50))),
        Duration::from_micros(50),
        "DPDK's default"
    );
    assert_eq!(
        idle(Some(Duration::from_nanos(100))),
        super::MIN_MONITOR_POLL,
        "one unit would keep a core busy"
    );
    assert_eq!(
        idle(Some(Duration::from_secs(6))),
        super::IDLE_WAIT,
        "never slower than without one"
    );
}
