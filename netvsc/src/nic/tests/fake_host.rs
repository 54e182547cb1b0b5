//! A scripted NetVSP host over a [`ShmBus`], just enough for the NIC's unit tests: it answers
//! the handshake, RNDIS control requests and data sends, and injects what a test asks for.
//! It runs on its own thread, reads the guest's ring with an `IncomingRing` and answers with
//! an `OutgoingRing` plus `signal_guest`, like a real host.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use packet::{MacAddr, SharedMemory};
use parking_lot::Mutex;

use crate::nvsp::{self, NvspMessage};
use crate::rndis::{self, NdisOffload, PacketInfo, RndisMessage};
use crate::vmbus::shm::{ShmBus, ShmConfig, ShmDevice, ShmHostSide};
use crate::vmbus::{
    IncomingKind, IncomingPacket, IncomingRing, OutgoingKind, OutgoingPacket, OutgoingRing,
    RingError, RingMemory, TransferPageRange,
};

pub const HOST_MAC: MacAddr = MacAddr([0x00, 0x15, 0x5d, 0x01, 0x02, 0x03]);
pub const SUB_ALLOC: usize = 1806;
/// Bytes of the receive buffer the host offers.
pub const RECEIVE_BUFFER_SIZE: usize = 64 * 4096;
/// Control replies use sub-allocations 0..16, data 16..
const CONTROL_SLOTS: usize = 16;

/// What the host does differently from a well-behaved one.
#[derive(Debug)]
pub struct Script {
    /// INIT with a version above this is answered with status NONE.
    pub refuse_above: u32,
    /// Send a VF association between INIT and the receive-buffer completion.
    pub vf_mid_handshake: bool,
    /// Answer RNDIS KEEPALIVE (the transport completion is sent either way).
    pub answer_keepalive: AtomicBool,
    /// NVSP status of data send completions.
    pub send_status: AtomicU32,
    /// The answer to the offload hardware capabilities query (`None`: NOT_SUPPORTED).
    pub offload_caps: Option<NdisOffload>,
    /// Answer the offload parameters SET with NOT_SUPPORTED (no indication follows).
    pub refuse_offload_parameters: bool,
    /// Read the guest's ring (clear it to play a host that stops reading while it sends).
    pub read_guest_ring: AtomicBool,
    /// Complete RNDIS HALT's send (a host that never does leaves the guest's close waiting).
    pub complete_halt: AtomicBool,
    /// Keep data send completions back until [`Command::ReleaseSends`].
    pub hold_send_completions: AtomicBool,
}

/// Hardware capabilities like OpenVMM's with transmit offloads: checksums both ways, LSOv2.
pub fn host_offload_caps() -> NdisOffload {
    use zerocopy::FromZeros;
    use zerocopy::byteorder::little_endian::U32;
    let mut o = NdisOffload::new_zeroed();
    o.header = rndis::NdisObjectHeader::new(
        rndis::NDIS_OBJECT_TYPE_OFFLOAD,
        3,
        rndis::NDIS_OFFLOAD_SIZE_REVISION_3,
    );
    let encap = U32::new(rndis::NDIS_ENCAPSULATION_IEEE_802_3);
    o.checksum.ipv4_tx_encapsulation = encap;
    o.checksum.ipv4_tx_flags = U32::new(rndis::NDIS_CSUM_CAP_TCP4 | rndis::NDIS_CSUM_CAP_UDP4);
    o.lso_v2.ipv4_encapsulation = encap;
    o.lso_v2.ipv4_max_offload_size = U32::new(0xF53C);
    o.lso_v2.ipv4_min_segment_count = U32::new(2);
    o
}

impl Default for Script {
    fn default() -> Self {
        Self {
            refuse_above: nvsp::VERSION_61,
            vf_mid_handshake: false,
            answer_keepalive: AtomicBool::new(true),
            send_status: AtomicU32::new(nvsp::STATUS_SUCCESS),
            offload_caps: Some(host_offload_caps()),
            refuse_offload_parameters: false,
            read_guest_ring: AtomicBool::new(true),
            complete_halt: AtomicBool::new(true),
            hold_send_completions: AtomicBool::new(false),
        }
    }
}

/// Something the test makes the host do.
#[derive(Debug)]
pub enum Command {
    /// Frames in one transfer-page packet (one range each).
    Frames(Vec<Vec<u8>>),
    /// A transfer-page packet whose only range lies outside the receive buffer.
    MalformedRange,
    /// A completion with this tid and an NVSP 108 success payload.
    Completion(u64),
    /// An RNDIS INDICATE_STATUS.
    Indication(u32),
    /// Corrupt the write index of the guest's incoming ring.
    CorruptRing,
    /// An NVSP 134 send indirection table with these 16 entries (in-band, tid 0).
    IndirectionTable(Vec<u32>),
    /// This many transfer-page packets of one frame each (tids from [`FLOOD_TIDS`] up), sent
    /// as fast as the guest's ring takes them: whatever does not fit waits for a later step.
    Flood(usize),
    /// Write the data send completions held back ([`Script::hold_send_completions`]), and
    /// stop holding them.
    ReleaseSends,
}

/// What the host saw of a guest's teardown, and around it, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// RNDIS SET of the packet filter to this value.
    Filter(u32),
    /// RNDIS HALT.
    Halt,
    /// The data send completions held back were written.
    SendsReleased,
    /// NVSP REVOKE_RECEIVE_BUFFER with this id.
    RevokeReceive(u16),
    /// NVSP REVOKE_SEND_BUFFER with this id.
    RevokeSend(u16),
}

/// The first tid of a [`Command::Flood`].
pub const FLOOD_TIDS: u64 = 1 << 32;

/// What the host saw.
#[derive(Debug, Default)]
pub struct HostLog {
    pub inits: Vec<u32>,
    pub ndis_caps: Option<u64>,
    pub filter: Option<u32>,
    /// Completions the guest sent: tid and payload.
    pub guest_completions: Vec<(u64, Vec<u8>)>,
    /// Tids of the transfer-page packets the host sent.
    pub rx_tids: Vec<u64>,
    /// Frames the guest sent, with the path (true = GPA direct).
    pub frames: Vec<(Vec<u8>, bool)>,
    pub keepalives: usize,
    pub reopens: usize,
    /// RNDIS QUERY and SET requests in order: message type and OID.
    pub rndis_requests: Vec<(u32, u32)>,
    /// The input buffer of each offload hardware capabilities query.
    pub offload_caps_inputs: Vec<Vec<u8>>,
    /// The value of each offload parameters SET.
    pub offload_parameters: Vec<Vec<u8>>,
    /// Flood packets written into the guest's ring so far.
    pub flood_sent: usize,
    /// Times a flood packet found the guest's ring full (and waited).
    pub flood_ring_full: usize,
    /// Packet filter sets, HALTs, released sends and buffer revokes, in order.
    pub steps: Vec<Step>,
    /// The id of the receive buffer the guest sent (SEND_RECEIVE_BUFFER), and of its send
    /// buffer (SEND_SEND_BUFFER).
    pub buffer_ids: (Option<u16>, Option<u16>),
    /// Whether a guest message asked for a completion it should not (a revoke).
    pub unexpected_completion_requests: usize,
}

pub struct FakeHost {
    pub log: Arc<Mutex<HostLog>>,
    pub script: Arc<Script>,
    commands: Arc<Mutex<Vec<Command>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    _bus: ShmBus,
}

impl FakeHost {
    /// Starts the host; returns it and the guest's device.
    pub fn start(script: Script) -> (FakeHost, ShmDevice) {
        let bus = ShmBus::new(&ShmConfig {
            max_channels: 1,
            ring_size: 8 * 4096,
            receive_buffer_size: RECEIVE_BUFFER_SIZE,
            send_buffer_size: 32 * 4096,
            dma_size: 4 << 20,
            ..ShmConfig::default()
        })
        .unwrap();
        let device = bus.guest_device();
        let log = Arc::new(Mutex::new(HostLog::default()));
        let script = Arc::new(script);
        let commands = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut worker = Worker::new(
            bus.host_side(),
            log.clone(),
            script.clone(),
            commands.clone(),
        );
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Acquire) {
                worker.step();
            }
        });
        (
            FakeHost {
                log,
                script,
                commands,
                stop,
                thread: Some(thread),
                _bus: bus,
            },
            device,
        )
    }

    pub fn command(&self, command: Command) {
        self.commands.lock().push(command);
    }

    /// Waits (bounded) until `check` holds on the log.
    pub fn wait_until(&self, what: &str, mut check: impl FnMut(&HostLog) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !check(&self.log.lock()) {
            assert!(Instant::now() < deadline, "host never saw: {what}");
            std::thread::yield_now();
        }
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    host: ShmHostSide,
    log: Arc<Mutex<HostLog>>,
    script: Arc<Script>,
    commands: Arc<Mutex<Vec<Command>>>,
    from_guest: IncomingRing,
    to_guest: OutgoingRing,
    pkt: IncomingPacket,
    rxbuf: Option<SharedMemory>,
    sendbuf: Option<SharedMemory>,
    next_control: usize,
    next_data: usize,
    /// Flood packets still to send.
    flood_left: usize,
    /// Tids of data sends whose completion is held back.
    held_sends: Vec<u64>,
}

fn nvsp_bytes(msg: &NvspMessage<'_>, len: usize) -> Vec<u8> {
    msg.to_vec(len)
}

impl Worker {
    fn new(
        host: ShmHostSide,
        log: Arc<Mutex<HostLog>>,
        script: Arc<Script>,
        commands: Arc<Mutex<Vec<Command>>>,
    ) -> Self {
        let (from_guest, to_guest) = Self::rings(&host);
        Self {
            host,
            log,
            script,
            commands,
            from_guest,
            to_guest,
            pkt: IncomingPacket::new(),
            rxbuf: None,
            sendbuf: None,
            next_control: 0,
            next_data: CONTROL_SLOTS,
            flood_left: 0,
            held_sends: Vec::new(),
        }
    }

    fn rings(host: &ShmHostSide) -> (IncomingRing, OutgoingRing) {
        (
            IncomingRing::new(host.guest_outgoing_ring(0).unwrap()).unwrap(),
            OutgoingRing::new(host.guest_incoming_ring(0).unwrap(), true).unwrap(),
        )
    }

    fn step(&mut self) {
        if let Some(generation) = self.host.pending_reopen() {
            self.host.acknowledge_reopen(generation).unwrap();
            let (i, o) = Self::rings(&self.host);
            self.from_guest = i;
            self.to_guest = o;
            self.rxbuf = None;
            self.sendbuf = None;
            self.log.lock().reopens += 1;
        }
        let commands: Vec<Command> = std::mem::take(&mut *self.commands.lock());
        for c in commands {
            self.run(c);
        }
        self.flood();
        if self.script.read_guest_ring.load(Ordering::Acquire) {
            while let Ok(true) = self.from_guest.read(&mut self.pkt) {
                self.handle();
            }
            self.from_guest.commit();
        }
        let _ = self.host.wait_guest_signal(Duration::from_millis(1));
    }

    fn send(&mut self, kind: OutgoingKind<'_>, tid: u64, rc: bool, payload: &[u8]) {
        let packet = OutgoingPacket {
            kind,
            transaction_id: tid,
            completion_requested: rc,
            payload,
        };
        if self.to_guest.write(&packet).unwrap() {
            self.host.signal_guest(0).unwrap();
        }
    }

    /// Sends what is left of a flood, until the guest's ring is full. Every packet names the
    /// same frame, in the last suballocation.
    fn flood(&mut self) {
        if self.flood_left == 0 {
            return;
        }
        let rxbuf = self.rxbuf.as_ref().expect("flood after the handshake");
        let slot = rxbuf.len() / SUB_ALLOC - 1;
        let ranges = [TransferPageRange {
            byte_count: SUB_ALLOC as u32,
            byte_offset: (slot * SUB_ALLOC) as u32,
        }];
        let msg = NvspMessage::SendRndisPacket(nvsp::Message1SendRndisPacket::new(
            nvsp::DATA_CHANNEL_TYPE,
            nvsp::NO_SEND_SECTION,
            0,
        ));
        let payload = nvsp_bytes(&msg, 40);
        while self.flood_left > 0 {
            let mut log = self.log.lock();
            let tid = FLOOD_TIDS + log.flood_sent as u64;
            let packet = OutgoingPacket {
                kind: OutgoingKind::TransferPages {
                    set_id: nvsp::RECEIVE_BUFFER_ID,
                    ranges: &ranges,
                },
                transaction_id: tid,
                completion_requested: true,
                payload: &payload,
            };
            match self.to_guest.write(&packet) {
                Ok(signal) => {
                    log.flood_sent += 1;
                    log.rx_tids.push(tid);
                    self.flood_left -= 1;
                    if signal {
                        self.host.signal_guest(0).unwrap();
                    }
                }
                Err(RingError::Full { .. }) => {
                    log.flood_ring_full += 1;
                    return;
                }
                Err(e) => panic!("flood: {e}"),
            }
        }
    }

    fn complete(&mut self, tid: u64, msg: Option<&NvspMessage<'_>>) {
        let payload = msg.map_or_else(Vec::new, |m| nvsp_bytes(m, 40));
        self.send(OutgoingKind::Completion, tid, false, &payload);
    }

    /// Puts `message` into sub-allocation `slot` and sends it in a transfer-page packet.
    fn deliver(&mut self, slots: &[(usize, usize)], channel_type: u32, tid: u64) {
        let ranges: Vec<TransferPageRange> = slots
            .iter()
            .map(|&(slot, len)| TransferPageRange {
                byte_count: len as u32,
                byte_offset: (slot * SUB_ALLOC) as u32,
            })
            .collect();
        let msg = NvspMessage::SendRndisPacket(nvsp::Message1SendRndisPacket::new(
            channel_type,
            nvsp::NO_SEND_SECTION,
            0,
        ));
        let payload = nvsp_bytes(&msg, 40);
        self.send(
            OutgoingKind::TransferPages {
                set_id: nvsp::RECEIVE_BUFFER_ID,
                ranges: &ranges,
            },
            tid,
            true,
            &payload,
        );
        self.log.lock().rx_tids.push(tid);
    }

    fn control_reply(&mut self, bytes: &[u8]) {
        let slot = self.next_control;
        self.next_control = (self.next_control + 1) % CONTROL_SLOTS;
        self.rxbuf
            .as_ref()
            .unwrap()
            .write(slot * SUB_ALLOC, bytes)
            .unwrap();
        self.deliver(
            &[(slot, bytes.len())],
            nvsp::CONTROL_CHANNEL_TYPE,
            slot as u64,
        );
    }

    fn run(&mut self, command: Command) {
        match command {
            Command::Frames(frames) => {
                let first = self.next_data;
                let mut slots = Vec::new();
                for f in frames {
                    let slot = self.next_data;
                    self.next_data += 1;
                    let mut buf = vec![0u8; SUB_ALLOC];
                    let info = PacketInfo {
                        checksum: Some(0),
                        ..PacketInfo::default()
                    };
                    rndis::write_host_packet(&mut buf, &f, &info).unwrap();
                    self.rxbuf
                        .as_ref()
                        .unwrap()
                        .write(slot * SUB_ALLOC, &buf)
                        .unwrap();
                    slots.push((slot, SUB_ALLOC));
                }
                self.deliver(&slots, nvsp::DATA_CHANNEL_TYPE, first as u64);
            }
            Command::MalformedRange => {
                let tid = self.next_data as u64;
                self.next_data += 1;
                let len = self.rxbuf.as_ref().unwrap().len();
                let ranges = [TransferPageRange {
                    byte_count: SUB_ALLOC as u32,
                    byte_offset: (len - 100) as u32,
                }];
                let msg = NvspMessage::SendRndisPacket(nvsp::Message1SendRndisPacket::new(
                    0,
                    nvsp::NO_SEND_SECTION,
                    0,
                ));
                let payload = nvsp_bytes(&msg, 40);
                self.send(
                    OutgoingKind::TransferPages {
                        set_id: nvsp::RECEIVE_BUFFER_ID,
                        ranges: &ranges,
                    },
                    tid,
                    true,
                    &payload,
                );
                self.log.lock().rx_tids.push(tid);
            }
            Command::Completion(tid) => {
                let msg = NvspMessage::SendRndisPacketComplete(
                    nvsp::Message1SendRndisPacketComplete::new(nvsp::STATUS_SUCCESS),
                );
                self.complete(tid, Some(&msg));
            }
            Command::Indication(status) => {
                let mut buf = [0u8; 64];
                let n = rndis::encode_indicate_status(&mut buf, status, &[]).unwrap();
                self.control_reply(&buf[..n]);
            }
            Command::IndirectionTable(table) => {
                let mut payload = vec![0u8; nvsp::SEND_INDIRECTION_TABLE_MESSAGE_SIZE];
                let n = nvsp::encode_send_indirection_table(&mut payload, &table).unwrap();
                self.send(OutgoingKind::InBand, 0, false, &payload[..n]);
            }
            Command::Flood(count) => {
                let rxbuf = self.rxbuf.as_ref().unwrap();
                let slot = rxbuf.len() / SUB_ALLOC - 1;
                let mut buf = vec![0u8; SUB_ALLOC];
                let frame = [0x42u8; 60];
                rndis::write_host_packet(&mut buf, &frame, &PacketInfo::default()).unwrap();
                rxbuf.write(slot * SUB_ALLOC, &buf).unwrap();
                self.flood_left += count;
            }
            Command::ReleaseSends => {
                self.script
                    .hold_send_completions
                    .store(false, Ordering::Release);
                let msg = NvspMessage::SendRndisPacketComplete(
                    nvsp::Message1SendRndisPacketComplete::new(nvsp::STATUS_SUCCESS),
                );
                for tid in std::mem::take(&mut self.held_sends) {
                    self.complete(tid, Some(&msg));
                }
                self.log.lock().steps.push(Step::SendsReleased);
            }
            Command::CorruptRing => {
                let ring = RingMemory::new(self.host.guest_incoming_ring(0).unwrap()).unwrap();
                ring.write_index().store(3, Ordering::Release);
            }
        }
    }

    fn handle(&mut self) {
        let tid = self.pkt.transaction_id();
        let rc = self.pkt.completion_requested();
        match self.pkt.kind() {
            IncomingKind::Completion => {
                let payload = self.pkt.payload().to_vec();
                self.log.lock().guest_completions.push((tid, payload));
            }
            IncomingKind::InBand | IncomingKind::GpaDirect => {
                let payload = self.pkt.payload().to_vec();
                let gpa = self.gpa_bytes();
                self.nvsp(&payload, tid, rc, gpa);
            }
            IncomingKind::TransferPages { .. } => panic!("guest sent transfer pages"),
        }
    }

    /// The bytes of a GPA-direct packet's ranges, concatenated.
    fn gpa_bytes(&self) -> Option<Vec<u8>> {
        if self.pkt.kind() != IncomingKind::GpaDirect {
            return None;
        }
        let mem = self.host.memory();
        let mut out = Vec::new();
        for r in self.pkt.gpa_ranges() {
            let start = r.pfns[0] as usize * 4096 + r.byte_offset as usize;
            let mut buf = vec![0u8; r.byte_count as usize];
            mem.read(start, &mut buf).unwrap();
            out.extend_from_slice(&buf);
        }
        Some(out)
    }

    fn nvsp(&mut self, payload: &[u8], tid: u64, rc: bool, gpa: Option<Vec<u8>>) {
        let msg = NvspMessage::parse_from_guest(payload).unwrap();
        match msg {
            NvspMessage::Init(m) => {
                let version = m.protocol_version.get();
                self.log.lock().inits.push(version);
                let ok = nvsp::is_known_version(version) && version <= self.script.refuse_above;
                let status = if ok {
                    nvsp::STATUS_SUCCESS
                } else {
                    nvsp::STATUS_NONE
                };
                let reply = NvspMessage::InitComplete(nvsp::MessageInitComplete::new(
                    nvsp::INVALID_PROTOCOL_VERSION,
                    nvsp::MAX_MDL_CHAIN_LENGTH,
                    status,
                ));
                self.complete(tid, Some(&reply));
            }
            NvspMessage::SendNdisConfig(m) => {
                self.log.lock().ndis_caps = Some(m.capabilities.get());
                if rc {
                    self.complete(tid, None);
                }
            }
            NvspMessage::SendNdisVersion(_) => {
                if rc {
                    self.complete(tid, None);
                }
            }
            NvspMessage::SendReceiveBuffer(m) => {
                self.log.lock().buffer_ids.0 = Some(m.id.get());
                if self.script.vf_mid_handshake {
                    let vf = NvspMessage::SendVfAssociation(nvsp::Message4SendVfAssociation::new(
                        true, 7,
                    ));
                    let bytes = nvsp_bytes(&vf, 40);
                    self.send(
                        OutgoingKind::InBand,
                        nvsp::HOST_VF_ASSOCIATION_TRANSACTION_ID,
                        true,
                        &bytes,
                    );
                }
                let buf = self.host.gpadl(m.gpadl_handle.get()).unwrap();
                let count = (buf.len() / SUB_ALLOC) as u32;
                self.rxbuf = Some(buf);
                let section = nvsp::ReceiveBufferSection::new(0, SUB_ALLOC as u32, count);
                let mut out = [0u8; 64];
                let n = nvsp::encode_receive_buffer_complete(
                    &mut out,
                    nvsp::STATUS_SUCCESS,
                    &[section],
                    40,
                )
                .unwrap();
                self.send(OutgoingKind::Completion, tid, false, &out[..n]);
            }
            NvspMessage::SendSendBuffer(m) => {
                self.log.lock().buffer_ids.1 = Some(m.id.get());
                self.sendbuf = Some(self.host.gpadl(m.gpadl_handle.get()).unwrap());
                let reply =
                    NvspMessage::SendSendBufferComplete(nvsp::Message1SendSendBufferComplete::new(
                        nvsp::STATUS_SUCCESS,
                        nvsp::SEND_SECTION_SIZE,
                    ));
                self.complete(tid, Some(&reply));
            }
            NvspMessage::SendRndisPacket(m) => {
                let section = m.send_buffer_section_index.get();
                let bytes = match gpa {
                    Some(bytes) => bytes,
                    None => {
                        let size = m.send_buffer_section_size.get() as usize;
                        let mut buf = vec![0u8; size];
                        self.sendbuf
                            .as_ref()
                            .unwrap()
                            .read(
                                section as usize * nvsp::SEND_SECTION_SIZE as usize,
                                &mut buf,
                            )
                            .unwrap();
                        buf
                    }
                };
                let control = m.channel_type.get() == nvsp::CONTROL_CHANNEL_TYPE;
                let status = if control {
                    nvsp::STATUS_SUCCESS
                } else {
                    self.script.send_status.load(Ordering::Acquire)
                };
                let reply = NvspMessage::SendRndisPacketComplete(
                    nvsp::Message1SendRndisPacketComplete::new(status),
                );
                let halt = matches!(RndisMessage::parse(&bytes), Ok(RndisMessage::Halt(_)));
                let hold = !control && self.script.hold_send_completions.load(Ordering::Acquire);
                if hold {
                    self.held_sends.push(tid);
                } else if !halt || self.script.complete_halt.load(Ordering::Acquire) {
                    self.complete(tid, Some(&reply));
                }
                if control {
                    self.rndis(&bytes);
                } else {
                    // A section may hold several packets (aggregation).
                    for message in rndis::Messages::new(&bytes) {
                        let Ok((_, message)) = message else { break };
                        if let Ok(RndisMessage::Packet(p)) = RndisMessage::parse(message) {
                            let frame = p.frame.get(message).unwrap().to_vec();
                            self.log
                                .lock()
                                .frames
                                .push((frame, section == nvsp::NO_SEND_SECTION));
                        }
                    }
                }
            }
            NvspMessage::SwitchDataPath(_) => self.complete(tid, None),
            NvspMessage::RevokeReceiveBuffer(m) => {
                let mut log = self.log.lock();
                log.steps.push(Step::RevokeReceive(m.id.get()));
                log.unexpected_completion_requests += usize::from(rc);
                self.rxbuf = None;
            }
            NvspMessage::RevokeSendBuffer(m) => {
                let mut log = self.log.lock();
                log.steps.push(Step::RevokeSend(m.id.get()));
                log.unexpected_completion_requests += usize::from(rc);
                self.sendbuf = None;
            }
            other => panic!("fake host does not handle {other:?}"),
        }
    }

    fn rndis(&mut self, bytes: &[u8]) {
        let mut out = [0u8; 256];
        let mut indication = None;
        let n = match RndisMessage::parse(bytes).unwrap() {
            RndisMessage::Initialize(m) => {
                let c = rndis::InitializeComplete::host_default(m.request_id.get());
                rndis::encode_initialize_complete(&mut out, &c).unwrap()
            }
            RndisMessage::Query(q) => {
                let input = q.info.get(bytes).unwrap_or_default().to_vec();
                {
                    let mut log = self.log.lock();
                    log.rndis_requests
                        .push((rndis::MESSAGE_TYPE_QUERY_MSG, q.oid));
                    if q.oid == rndis::OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES {
                        log.offload_caps_inputs.push(input);
                    }
                }
                let info: Vec<u8> = match q.oid {
                    rndis::OID_802_3_CURRENT_ADDRESS => HOST_MAC.0.to_vec(),
                    rndis::OID_GEN_MAXIMUM_FRAME_SIZE => 1500u32.to_le_bytes().to_vec(),
                    rndis::OID_GEN_MEDIA_CONNECT_STATUS => 0u32.to_le_bytes().to_vec(),
                    rndis::OID_GEN_LINK_SPEED => 100_000_000u32.to_le_bytes().to_vec(),
                    rndis::OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES => self
                        .script
                        .offload_caps
                        .map(|c| c.wire_bytes().to_vec())
                        .unwrap_or_default(),
                    _ => Vec::new(),
                };
                let status = if info.is_empty() {
                    rndis::STATUS_NOT_SUPPORTED
                } else {
                    rndis::STATUS_SUCCESS
                };
                rndis::encode_query_complete(&mut out, q.request_id, status, &info).unwrap()
            }
            RndisMessage::Set(s) => {
                let v = s.info.get(bytes).unwrap();
                let mut status = rndis::STATUS_SUCCESS;
                {
                    let mut log = self.log.lock();
                    log.rndis_requests
                        .push((rndis::MESSAGE_TYPE_SET_MSG, s.oid));
                    if s.oid == rndis::OID_GEN_CURRENT_PACKET_FILTER {
                        let filter = u32::from_le_bytes(v.try_into().unwrap());
                        log.filter = Some(filter);
                        log.steps.push(Step::Filter(filter));
                    }
                    if s.oid == rndis::OID_TCP_OFFLOAD_PARAMETERS {
                        log.offload_parameters.push(v.to_vec());
                        if self.script.refuse_offload_parameters {
                            status = rndis::STATUS_NOT_SUPPORTED;
                        } else {
                            // Like OpenVMM: the new configuration follows the completion.
                            indication = Some(rndis::STATUS_TASK_OFFLOAD_CURRENT_CONFIG);
                        }
                    }
                }
                rndis::encode_set_complete(&mut out, s.request_id, status).unwrap()
            }
            RndisMessage::Halt(_) => {
                // Only the transport completion (written, or not, by the caller).
                self.log.lock().steps.push(Step::Halt);
                return;
            }
            RndisMessage::Keepalive(k) => {
                self.log.lock().keepalives += 1;
                if !self.script.answer_keepalive.load(Ordering::Acquire) {
                    return;
                }
                rndis::encode_keepalive_complete(
                    &mut out,
                    k.request_id.get(),
                    rndis::STATUS_SUCCESS,
                )
                .unwrap()
            }
            other => panic!("fake host does not handle {other:?}"),
        };
        self.control_reply(&out[..n]);
        if let Some(status) = indication {
            let buffer = self
                .script
                .offload_caps
                .map(|c| c.wire_bytes().to_vec())
                .unwrap_or_default();
            let n = rndis::encode_indicate_status(&mut out, status, &buffer).unwrap();
            self.control_reply(&out[..n]);
        }
    }
}
