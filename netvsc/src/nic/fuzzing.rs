//! A synchronous NetVSP host for fuzz targets (feature `fuzzing`; not a stable API).
//!
//! The NIC's unit tests use a host on its own thread and `integration` a whole simulated
//! host; both answer on their own schedule, so one fuzz input would not run the same way
//! twice. [`StepHost`] never acts on its own. It acts when called: by a fuzz target between
//! two guest calls, or by [`StepDevice`] when the NIC would sleep waiting for the host (that
//! is where the handshake's replies come from, through a [`Responder`]). The same input puts
//! the same bytes in the same rings, in the same order.
//!
//! Transport: a small [`ShmBus`] ([`bus_config`]); the host reads the guest's rings with an
//! [`IncomingRing`] and writes with an [`OutgoingRing`], byte for byte what a host does. The
//! receive buffer is cut into [`SUB_ALLOC`]-byte sub-allocations; a transfer-page packet the
//! host sends with [`StepHost::send_rndis`] holds its sub-allocations until the guest
//! completes its tid.
//!
//! Bookkeeping the targets assert on:
//! - every transfer-page packet written with "completion requested" is *owed* one guest
//!   completion; a guest completion that matches nothing owed is counted in
//!   [`StepHost::excess_completions`];
//! - [`StepHost::rx_completion_backlog`]: transfer-page packets the guest has consumed from its
//!   ring but not completed yet (the backlog it keeps while its outgoing ring is full), from
//!   the ring indices alone.
//!
//! Lifecycle: [`step_bus`] gives a [`StepHandle`] (the host and its responder) and the
//! [`StepDevice`] to open the NIC on. [`VmbusDevice::reopen`] on the device acknowledges at
//! once: the host drops its ring ends, zeroes the rings and forgets what it was owed.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use packet::{MacAddr, PAGE_SIZE, SharedMemory};
use parking_lot::{Mutex, MutexGuard};

use crate::nvsp::{self, NvspMessage};
use crate::rndis::{self, NdisOffload, NdisReceiveScaleCapabilities, RndisMessage};
use crate::vmbus::shm::{ChannelState, ShmBus, ShmConfig, ShmDevice, ShmHostSide};
use crate::vmbus::{
    ChannelRings, DeviceError, Doorbell, IncomingKind, IncomingPacket, IncomingRing, OutgoingKind,
    OutgoingPacket, OutgoingRing, RingError, RingMemory, TransferPageRange, VmbusDevice,
};

/// Bytes of one receive-buffer sub-allocation.
pub const SUB_ALLOC: usize = 2048;

/// A small bus: 5 channels of 16 KiB rings, a 128 KiB receive buffer (64 sub-allocations),
/// a 64 KiB send buffer (10 sections of 6144 bytes) and 256 KiB of DMA memory (a pool of 64
/// buffers at MTU 1500). Small rings fill and wrap after a few dozen packets.
pub fn bus_config() -> ShmConfig {
    ShmConfig {
        max_channels: 5,
        ring_size: 4 * PAGE_SIZE,
        receive_buffer_size: 32 * PAGE_SIZE,
        send_buffer_size: 16 * PAGE_SIZE,
        dma_size: 64 * PAGE_SIZE,
        ..ShmConfig::default()
    }
}

/// What the well-behaved host answers with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    /// The MAC address (OID_802_3_CURRENT_ADDRESS).
    pub mac: MacAddr,
    /// OID_GEN_MAXIMUM_FRAME_SIZE.
    pub mtu: u32,
    /// OID_GEN_LINK_SPEED, in units of 100 bit/s.
    pub link_speed: u32,
    /// Highest NVSP version accepted in INIT.
    pub max_version: u32,
}

impl Default for HostIdentity {
    fn default() -> Self {
        Self {
            mac: MacAddr([0x00, 0x15, 0x5d, 0x0f, 0x22, 0x33]),
            mtu: 1500,
            link_speed: 100_000_000,
            max_version: nvsp::VERSION_61,
        }
    }
}

/// What a [`Responder`] tells the NIC waiting in [`VmbusDevice::wait_for_interrupt`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wake {
    /// The host wrote something: the wait returns `Ok(true)` at once.
    Signalled,
    /// Nothing: the wait sleeps its whole (bounded) timeout and returns `Ok(false)`.
    Quiet,
}

/// Decides what the host does each time the NIC waits for it.
pub trait Responder: Send + Debug {
    /// Acts as the host (reads the guest's rings, answers) and says whether it wrote anything.
    fn respond(&mut self, host: &mut StepHost) -> Wake;
}

/// A well-behaved host: [`StepHost::serve_default`].
#[derive(Clone, Copy, Debug, Default)]
pub struct WellBehaved;

impl Responder for WellBehaved {
    fn respond(&mut self, host: &mut StepHost) -> Wake {
        host.serve_default()
    }
}

/// What the guest put in its outgoing ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GuestKind {
    /// In-band (an NVSP request).
    InBand,
    /// GPA direct (an NVSP 107 whose RNDIS message is in guest pages).
    GpaDirect,
    /// A completion (of one of the host's transfer-page packets).
    Completion,
    /// A transfer-page packet: the guest must never send one.
    TransferPages,
    /// A packet with sound framing and invalid content (the ring reader's reason).
    Invalid(&'static str),
}

/// One GPA-direct range as the guest described it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpaSpan {
    /// Offset into the first page.
    pub byte_offset: u32,
    /// Length.
    pub byte_count: u32,
    /// Frame numbers (GPA = memfd offset, so `pfn * 4096` is a memfd offset).
    pub pfns: Vec<u64>,
}

/// One packet the guest sent, copied out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestPacket {
    /// The channel it came on.
    pub channel: u16,
    /// Its kind.
    pub kind: GuestKind,
    /// Transaction id.
    pub tid: u64,
    /// Whether the guest asked for a completion.
    pub completion_requested: bool,
    /// In-band payload.
    pub payload: Vec<u8>,
    /// GPA-direct ranges.
    pub gpa: Vec<GpaSpan>,
}

/// Something the host sends (the well-behaved answers are lists of these, which a responder
/// may change before sending).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// A VMBus completion of `tid` carrying an NVSP message (may be empty).
    Completion {
        /// The request's tid.
        tid: u64,
        /// The NVSP bytes.
        payload: Vec<u8>,
    },
    /// An RNDIS control message, in a sub-allocation, in a transfer-page packet.
    Rndis(Vec<u8>),
    /// An in-band NVSP message.
    InBand {
        /// Its tid.
        tid: u64,
        /// Whether the host asks for a completion.
        completion_requested: bool,
        /// The NVSP bytes.
        payload: Vec<u8>,
    },
    /// Offer subchannels 1..=n (the kernel's offers after NVSP 133).
    OfferSubchannels(u16),
}

/// The host's ends of one channel and what it has written into the guest's incoming ring.
#[derive(Debug)]
struct HostChannel {
    from_guest: IncomingRing,
    to_guest: OutgoingRing,
    /// Ring bytes written to the guest since the channel opened.
    written: u64,
    /// Ring bytes the guest has consumed (from its `read_index`).
    consumed: u64,
    last_read_index: u32,
    /// End (in `written` bytes) of each packet not yet consumed, and whether it is a
    /// transfer-page packet owed a completion.
    unconsumed: VecDeque<(u64, bool)>,
    /// Owed transfer-page packets the guest has consumed.
    tp_consumed: u64,
    /// Completions of owed packets the host has read.
    completions_read: u64,
}

impl HostChannel {
    fn open(side: &ShmHostSide, index: u16) -> Result<Self, DeviceError> {
        let to_guest = OutgoingRing::new(side.guest_incoming_ring(index)?, true)?;
        let last_read_index = to_guest.memory().read_index().load(Ordering::Acquire);
        Ok(Self {
            from_guest: IncomingRing::new(side.guest_outgoing_ring(index)?)?,
            to_guest,
            written: 0,
            consumed: 0,
            last_read_index,
            unconsumed: VecDeque::new(),
            tp_consumed: 0,
            completions_read: 0,
        })
    }

    /// Catches up with the guest's `read_index`. Called before every host write and after
    /// every guest call, so it never moves by a whole ring between two looks.
    fn observe(&mut self) {
        let ring = self.to_guest.memory();
        let size = ring.data_size() as u64;
        let now = ring.read_index().load(Ordering::Acquire);
        if u64::from(now) >= size {
            return;
        }
        let delta = (u64::from(now) + size - u64::from(self.last_read_index)) % size;
        self.last_read_index = now;
        self.consumed = (self.consumed + delta).min(self.written);
        while let Some(&(end, owed)) = self.unconsumed.front() {
            if end > self.consumed {
                break;
            }
            self.unconsumed.pop_front();
            self.tp_consumed += u64::from(owed);
        }
    }
}

/// The host side (see the module docs).
#[derive(Debug)]
pub struct StepHost {
    bus: ShmBus,
    side: ShmHostSide,
    /// The well-behaved answers' values.
    pub identity: HostIdentity,
    channels: Vec<Option<HostChannel>>,
    pkt: IncomingPacket,
    rxbuf: SharedMemory,
    sendbuf: SharedMemory,
    /// The section size the well-behaved host announces (and reads sends with).
    pub section_size: usize,
    free_slots: Vec<u32>,
    held_slots: HashMap<u64, Vec<u32>>,
    owed: HashMap<u64, u32>,
    excess: u64,
    next_tid: u64,
    opens: u32,
}

fn nvsp_bytes(msg: &NvspMessage<'_>) -> Vec<u8> {
    msg.to_vec(nvsp::PACKET_SIZE_V61)
}

fn send_complete(status: u32) -> Vec<u8> {
    nvsp_bytes(&NvspMessage::SendRndisPacketComplete(
        nvsp::Message1SendRndisPacketComplete::new(status),
    ))
}

/// Reads the next packet of a guest→host ring into a [`GuestPacket`]; `None` if it is empty.
fn next_packet(
    ring: &mut IncomingRing,
    pkt: &mut IncomingPacket,
    channel: u16,
) -> Result<Option<GuestPacket>, RingError> {
    let packet = match ring.read(pkt) {
        Ok(false) => return Ok(None),
        Ok(true) => GuestPacket {
            channel,
            kind: match pkt.kind() {
                IncomingKind::InBand => GuestKind::InBand,
                IncomingKind::GpaDirect => GuestKind::GpaDirect,
                IncomingKind::Completion => GuestKind::Completion,
                IncomingKind::TransferPages { .. } => GuestKind::TransferPages,
            },
            tid: pkt.transaction_id(),
            completion_requested: pkt.completion_requested(),
            payload: pkt.payload().to_vec(),
            gpa: pkt
                .gpa_ranges()
                .map(|r| GpaSpan {
                    byte_offset: r.byte_offset,
                    byte_count: r.byte_count,
                    pfns: r.pfns.to_vec(),
                })
                .collect(),
        },
        Err(RingError::InvalidPacket {
            transaction_id,
            completion_requested,
            reason,
            ..
        }) => GuestPacket {
            channel,
            kind: GuestKind::Invalid(reason),
            tid: transaction_id,
            completion_requested,
            payload: Vec::new(),
            gpa: Vec::new(),
        },
        Err(e) => return Err(e),
    };
    Ok(Some(packet))
}

impl StepHost {
    fn new(bus: ShmBus, identity: HostIdentity) -> Result<Self, DeviceError> {
        let side = bus.host_side();
        let layout = side.layout().clone();
        let mem = side.memory();
        let rxbuf = mem.subregion(layout.receive_buffer_offset, layout.receive_buffer_size)?;
        let sendbuf = mem.subregion(layout.send_buffer_offset, layout.send_buffer_size)?;
        let slots = (rxbuf.len() / SUB_ALLOC) as u32;
        let primary = HostChannel::open(&side, 0)?;
        let mut channels: Vec<Option<HostChannel>> =
            (0..layout.max_channels).map(|_| None).collect();
        channels[0] = Some(primary);
        Ok(Self {
            bus,
            side,
            identity,
            channels,
            pkt: IncomingPacket::new(),
            rxbuf,
            sendbuf,
            section_size: nvsp::SEND_SECTION_SIZE as usize,
            free_slots: (0..slots).rev().collect(),
            held_slots: HashMap::new(),
            owed: HashMap::new(),
            excess: 0,
            next_tid: 1,
            opens: 1,
        })
    }

    /// The host's view of the bus (memory, control page, signals).
    pub fn side(&self) -> &ShmHostSide {
        &self.side
    }

    /// The receive buffer.
    pub fn rxbuf(&self) -> &SharedMemory {
        &self.rxbuf
    }

    /// The send buffer.
    pub fn sendbuf(&self) -> &SharedMemory {
        &self.sendbuf
    }

    /// Channels laid out (primary included).
    pub fn max_channels(&self) -> u16 {
        self.bus.layout().max_channels
    }

    /// Whether the host has channel `channel` open.
    pub fn has_channel(&self, channel: u16) -> bool {
        self.channels
            .get(usize::from(channel))
            .is_some_and(Option::is_some)
    }

    /// Times the channel was (re)opened, 1 at the start.
    pub fn opens(&self) -> u32 {
        self.opens
    }

    /// Sub-allocations not held by an uncompleted transfer-page packet.
    pub fn free_sub_allocations(&self) -> usize {
        self.free_slots.len()
    }

    /// A fresh host tid (never 0, bit 63 clear).
    pub fn fresh_tid(&mut self) -> u64 {
        let tid = self.next_tid;
        self.next_tid += 1;
        tid
    }

    /// Transfer-page packets still owed a completion, over every channel.
    pub fn owed_completions(&self) -> u64 {
        self.owed.values().map(|&n| u64::from(n)).sum()
    }

    /// Guest completions that matched no transfer-page packet owed one (duplicates, strays).
    pub fn excess_completions(&self) -> u64 {
        self.excess
    }

    /// Transfer-page packets the guest has consumed on `channel` and not completed yet,
    /// counting the completions still unread in its outgoing ring. This is the guest's
    /// deferred-completion backlog, seen from the ring indices alone.
    pub fn rx_completion_backlog(&mut self, channel: u16) -> Result<u64, DeviceError> {
        let Some(ch) = self.channel_mut(channel) else {
            return Ok(0);
        };
        ch.observe();
        let (consumed, read) = (ch.tp_consumed, ch.completions_read);
        let unread = self.peek_guest_completions(channel)?;
        Ok(consumed.saturating_sub(read + unread))
    }

    /// Completions waiting unread in the guest's outgoing ring of `channel`.
    fn peek_guest_completions(&mut self, channel: u16) -> Result<u64, DeviceError> {
        let unread = self.peek_guest(channel)?;
        Ok(unread
            .iter()
            .filter(|p| p.kind == GuestKind::Completion)
            .count() as u64)
    }

    /// What waits unread in the guest's outgoing ring of `channel`; the ring is left as it is.
    pub fn peek_guest(&mut self, channel: u16) -> Result<Vec<GuestPacket>, DeviceError> {
        let mut peek = IncomingRing::new(self.side.guest_outgoing_ring(channel)?)?;
        let mut out = Vec::new();
        while let Some(packet) = next_packet(&mut peek, &mut self.pkt, channel)? {
            out.push(packet);
        }
        Ok(out)
    }

    fn channel_mut(&mut self, channel: u16) -> Option<&mut HostChannel> {
        self.channels.get_mut(usize::from(channel))?.as_mut()
    }

    /// Catches up with the guest's consumption on every channel (call after each guest call).
    pub fn observe(&mut self) {
        for ch in self.channels.iter_mut().flatten() {
            ch.observe();
        }
    }

    /// Reads (and consumes) everything the guest sent on `channel`. Completions of owed
    /// transfer-page packets free their sub-allocations.
    pub fn read_guest(&mut self, channel: u16) -> Result<Vec<GuestPacket>, RingError> {
        let Some(ch) = self
            .channels
            .get_mut(usize::from(channel))
            .and_then(Option::as_mut)
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        while let Some(packet) = next_packet(&mut ch.from_guest, &mut self.pkt, channel)? {
            if packet.kind == GuestKind::Completion {
                match self.owed.get_mut(&packet.tid) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        if *n == 0 {
                            self.owed.remove(&packet.tid);
                        }
                        ch.completions_read += 1;
                        if let Some(slots) = self.held_slots.remove(&packet.tid) {
                            self.free_slots.extend(slots);
                        }
                    }
                    _ => self.excess += 1,
                }
            }
            out.push(packet);
        }
        if ch.from_guest.commit() {
            let _ = self.side.signal_guest(channel);
        }
        Ok(out)
    }

    /// Writes one packet into the guest's incoming ring of `channel` and signals the guest if
    /// the ring rules say so. `Ok(false)` if the ring has no room (or the channel is not open).
    /// A transfer-page packet asking for a completion is owed one.
    pub fn send(&mut self, channel: u16, packet: &OutgoingPacket<'_>) -> Result<bool, RingError> {
        let Some(ch) = self
            .channels
            .get_mut(usize::from(channel))
            .and_then(Option::as_mut)
        else {
            return Ok(false);
        };
        ch.observe();
        let signal = match ch.to_guest.write(packet) {
            Ok(signal) => signal,
            Err(RingError::Full { .. } | RingError::TooLarge { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        let owed = matches!(packet.kind, OutgoingKind::TransferPages { .. })
            && packet.completion_requested;
        ch.written += packet.ring_len() as u64;
        ch.unconsumed.push_back((ch.written, owed));
        if owed {
            *self.owed.entry(packet.transaction_id).or_default() += 1;
        }
        if signal {
            let _ = self.side.signal_guest(channel);
        }
        Ok(true)
    }

    /// Puts each of `messages` into a fresh sub-allocation and sends one transfer-page packet
    /// (NVSP 107 of `channel_type`) with a range per message, under a fresh tid. `Ok(None)` if
    /// a message is longer than a sub-allocation or there are not enough free ones, or the ring
    /// is full. The sub-allocations are held until the guest completes the tid.
    pub fn send_rndis(
        &mut self,
        channel: u16,
        messages: &[&[u8]],
        channel_type: u32,
        completion_requested: bool,
    ) -> Result<Option<u64>, RingError> {
        if messages.iter().any(|m| m.len() > SUB_ALLOC) || messages.len() > self.free_slots.len() {
            return Ok(None);
        }
        let slots: Vec<u32> = (0..messages.len())
            .filter_map(|_| self.free_slots.pop())
            .collect();
        let mut ranges = Vec::with_capacity(messages.len());
        for (&slot, msg) in slots.iter().zip(messages) {
            let offset = slot as usize * SUB_ALLOC;
            self.rxbuf.write(offset, msg)?;
            ranges.push(TransferPageRange {
                byte_count: msg.len() as u32,
                byte_offset: offset as u32,
            });
        }
        let tid = self.fresh_tid();
        let payload = nvsp_bytes(&NvspMessage::SendRndisPacket(
            nvsp::Message1SendRndisPacket::new(channel_type, nvsp::NO_SEND_SECTION, 0),
        ));
        let sent = self.send(
            channel,
            &OutgoingPacket {
                kind: OutgoingKind::TransferPages {
                    set_id: nvsp::RECEIVE_BUFFER_ID,
                    ranges: &ranges,
                },
                transaction_id: tid,
                completion_requested,
                payload: &payload,
            },
        )?;
        if !sent {
            self.free_slots.extend(slots);
            return Ok(None);
        }
        if completion_requested {
            self.held_slots.insert(tid, slots);
        }
        // Without a completion request the guest never hands the slots back: they stay lost,
        // like on a host that trusts a guest it should not.
        Ok(Some(tid))
    }

    /// Sends one [`Reply`] on `channel`; `Ok(false)` if there was no room.
    pub fn send_reply(&mut self, channel: u16, reply: &Reply) -> Result<bool, DeviceError> {
        Ok(match reply {
            Reply::Completion { tid, payload } => self.send(
                channel,
                &OutgoingPacket {
                    kind: OutgoingKind::Completion,
                    transaction_id: *tid,
                    completion_requested: false,
                    payload,
                },
            )?,
            Reply::Rndis(bytes) => self
                .send_rndis(channel, &[bytes], nvsp::CONTROL_CHANNEL_TYPE, true)?
                .is_some(),
            Reply::InBand {
                tid,
                completion_requested,
                payload,
            } => self.send(
                channel,
                &OutgoingPacket {
                    kind: OutgoingKind::InBand,
                    transaction_id: *tid,
                    completion_requested: *completion_requested,
                    payload,
                },
            )?,
            Reply::OfferSubchannels(n) => {
                self.offer_subchannels(*n)?;
                true
            }
        })
    }

    /// Offers subchannels 1..=n (capped by the bus) and opens the host's ends of them.
    pub fn offer_subchannels(&mut self, n: u16) -> Result<(), DeviceError> {
        let n = n.min(self.max_channels() - 1);
        if n <= self.side.subchannels_offered() {
            return Ok(());
        }
        self.side.offer_subchannels(n)?;
        for i in 1..=n {
            if self.channels[usize::from(i)].is_none() {
                self.channels[usize::from(i)] = Some(HostChannel::open(&self.side, i)?);
            }
        }
        Ok(())
    }

    /// Overwrites the `write_index` of the guest's incoming ring of `channel` (a host that
    /// breaks the ring).
    pub fn corrupt_incoming(&mut self, channel: u16, write_index: u32) -> Result<(), RingError> {
        if let Some(ch) = self.channel_mut(channel) {
            ch.to_guest
                .memory()
                .write_index()
                .store(write_index, Ordering::Release);
        }
        Ok(())
    }

    /// The guest's incoming ring of `channel`, raw.
    pub fn incoming_ring(&self, channel: u16) -> Option<RingMemory> {
        let ch = self.channels.get(usize::from(channel))?.as_ref()?;
        Some(ch.to_guest.memory().clone())
    }

    /// The bytes of a GPA-direct range, if every page lies in guest memory.
    pub fn read_gpa(&self, span: &GpaSpan) -> Option<Vec<u8>> {
        let mem = self.side.memory();
        let mut out = vec![0u8; span.byte_count as usize];
        let mut done = 0usize;
        let mut offset = span.byte_offset as usize;
        for &pfn in &span.pfns {
            if done == out.len() {
                break;
            }
            let n = (PAGE_SIZE - offset).min(out.len() - done);
            let base = usize::try_from(pfn).ok()?.checked_mul(PAGE_SIZE)?;
            mem.read(base.checked_add(offset)?, &mut out[done..done + n])
                .ok()?;
            done += n;
            offset = 0;
        }
        (done == out.len()).then_some(out)
    }

    /// The bytes of send-buffer section `index` (`size` bytes), if inside the send buffer.
    pub fn read_section(&self, index: u32, size: u32) -> Option<Vec<u8>> {
        let offset = (index as usize).checked_mul(self.section_size)?;
        if size as usize > self.section_size {
            return None;
        }
        let mut out = vec![0u8; size as usize];
        self.sendbuf.read(offset, &mut out).ok()?;
        Some(out)
    }

    /// The RNDIS message of a guest NVSP 107: from its section or its GPA ranges.
    pub fn rndis_of(
        &self,
        packet: &GuestPacket,
        msg: &nvsp::Message1SendRndisPacket,
    ) -> Option<Vec<u8>> {
        let index = msg.send_buffer_section_index.get();
        if index == nvsp::NO_SEND_SECTION {
            let mut bytes = Vec::new();
            for span in &packet.gpa {
                bytes.extend(self.read_gpa(span)?);
            }
            Some(bytes)
        } else {
            self.read_section(index, msg.send_buffer_section_size.get())
        }
    }

    /// What a well-behaved host answers to `packet` (nothing for completions, for messages
    /// posted without a completion request, and for data sends: see
    /// [`serve_default`](Self::serve_default)).
    pub fn answer(&self, packet: &GuestPacket) -> Vec<Reply> {
        if !matches!(packet.kind, GuestKind::InBand | GuestKind::GpaDirect) {
            return Vec::new();
        }
        let tid = packet.tid;
        let complete = |msg: &NvspMessage<'_>| Reply::Completion {
            tid,
            payload: nvsp_bytes(msg),
        };
        let empty = || {
            if packet.completion_requested {
                vec![Reply::Completion {
                    tid,
                    payload: Vec::new(),
                }]
            } else {
                Vec::new()
            }
        };
        let Ok(msg) = NvspMessage::parse_from_guest(&packet.payload) else {
            return empty();
        };
        match msg {
            NvspMessage::Init(m) => {
                let v = m.protocol_version.get();
                let ok = nvsp::is_known_version(v) && v <= self.identity.max_version;
                let status = if ok {
                    nvsp::STATUS_SUCCESS
                } else {
                    nvsp::STATUS_NONE
                };
                vec![complete(&NvspMessage::InitComplete(
                    nvsp::MessageInitComplete::new(
                        nvsp::INVALID_PROTOCOL_VERSION,
                        nvsp::MAX_MDL_CHAIN_LENGTH,
                        status,
                    ),
                ))]
            }
            NvspMessage::SendReceiveBuffer(m) => {
                let ok = self.side.gpadl(m.gpadl_handle.get()).is_some()
                    && m.id.get() == nvsp::RECEIVE_BUFFER_ID;
                let (status, sections) = if ok {
                    let count = (self.rxbuf.len() / SUB_ALLOC) as u32;
                    let s = nvsp::ReceiveBufferSection::new(0, SUB_ALLOC as u32, count);
                    (nvsp::STATUS_SUCCESS, vec![s])
                } else {
                    (nvsp::STATUS_FAILURE, Vec::new())
                };
                let mut out = [0u8; 64];
                let n = nvsp::encode_receive_buffer_complete(
                    &mut out,
                    status,
                    &sections,
                    nvsp::PACKET_SIZE_V61,
                )
                .unwrap_or(0);
                vec![Reply::Completion {
                    tid,
                    payload: out[..n].to_vec(),
                }]
            }
            NvspMessage::SendSendBuffer(m) => {
                let ok = self.side.gpadl(m.gpadl_handle.get()).is_some();
                let status = if ok {
                    nvsp::STATUS_SUCCESS
                } else {
                    nvsp::STATUS_FAILURE
                };
                vec![complete(&NvspMessage::SendSendBufferComplete(
                    nvsp::Message1SendSendBufferComplete::new(status, self.section_size as u32),
                ))]
            }
            NvspMessage::SendRndisPacket(m)
                if m.channel_type.get() == nvsp::CONTROL_CHANNEL_TYPE =>
            {
                let mut replies = vec![Reply::Completion {
                    tid,
                    payload: send_complete(nvsp::STATUS_SUCCESS),
                }];
                if let Some(bytes) = self.rndis_of(packet, &m) {
                    replies.extend(self.rndis_answer(&bytes).into_iter().map(Reply::Rndis));
                }
                replies
            }
            NvspMessage::SendRndisPacket(_) => Vec::new(),
            NvspMessage::SubchannelRequest(m) => {
                let n = m
                    .num_sub_channels
                    .get()
                    .min(u32::from(self.max_channels() - 1));
                vec![
                    Reply::OfferSubchannels(n as u16),
                    complete(&NvspMessage::SubchannelComplete(
                        nvsp::Message5SubchannelComplete::new(nvsp::STATUS_SUCCESS, n),
                    )),
                ]
            }
            _ => empty(),
        }
    }

    /// A well-behaved host's RNDIS answers to one control message.
    pub fn rndis_answer(&self, request: &[u8]) -> Vec<Vec<u8>> {
        let mut out = [0u8; 512];
        let id = &self.identity;
        let n = match RndisMessage::parse(request) {
            Ok(RndisMessage::Initialize(m)) => rndis::encode_initialize_complete(
                &mut out,
                &rndis::InitializeComplete::host_default(m.request_id.get()),
            ),
            Ok(RndisMessage::Query(q)) => {
                let info: Vec<u8> = match q.oid {
                    rndis::OID_802_3_CURRENT_ADDRESS => id.mac.0.to_vec(),
                    rndis::OID_GEN_MAXIMUM_FRAME_SIZE => id.mtu.to_le_bytes().to_vec(),
                    rndis::OID_GEN_MEDIA_CONNECT_STATUS => {
                        rndis::MEDIA_STATE_CONNECTED.to_le_bytes().to_vec()
                    }
                    rndis::OID_GEN_LINK_SPEED => id.link_speed.to_le_bytes().to_vec(),
                    rndis::OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES => {
                        NdisOffload::query_input(nvsp::VERSION_61)
                            .wire_bytes()
                            .to_vec()
                    }
                    rndis::OID_GEN_RECEIVE_SCALE_CAPABILITIES => NdisReceiveScaleCapabilities::new(
                        rndis::NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4,
                        u32::from(self.max_channels()),
                        rndis::DEFAULT_RSS_INDIRECTION_TABLE_SIZE,
                    )
                    .wire_bytes()
                    .to_vec(),
                    _ => Vec::new(),
                };
                let status = if info.is_empty() {
                    rndis::STATUS_NOT_SUPPORTED
                } else {
                    rndis::STATUS_SUCCESS
                };
                rndis::encode_query_complete(&mut out, q.request_id, status, &info)
            }
            Ok(RndisMessage::Set(s) | RndisMessage::SetEx(s)) => {
                let done =
                    rndis::encode_set_complete(&mut out, s.request_id, rndis::STATUS_SUCCESS);
                if s.oid == rndis::OID_TCP_OFFLOAD_PARAMETERS
                    && let Ok(n) = done
                {
                    let mut second = [0u8; 64];
                    let indication = rndis::encode_indicate_status(
                        &mut second,
                        rndis::STATUS_TASK_OFFLOAD_CURRENT_CONFIG,
                        &[],
                    );
                    let mut answers = vec![out[..n].to_vec()];
                    if let Ok(m) = indication {
                        answers.push(second[..m].to_vec());
                    }
                    return answers;
                }
                done
            }
            Ok(RndisMessage::Keepalive(k)) => rndis::encode_keepalive_complete(
                &mut out,
                k.request_id.get(),
                rndis::STATUS_SUCCESS,
            ),
            _ => return Vec::new(),
        };
        n.map(|n| vec![out[..n].to_vec()]).unwrap_or_default()
    }

    /// Reads every open channel and answers like a well-behaved host, data sends included
    /// (completed with success at once).
    pub fn serve_default(&mut self) -> Wake {
        let mut wrote = false;
        for channel in 0..self.max_channels() {
            let Ok(packets) = self.read_guest(channel) else {
                continue;
            };
            for packet in &packets {
                let mut replies = self.answer(packet);
                if replies.is_empty()
                    && packet.completion_requested
                    && matches!(packet.kind, GuestKind::InBand | GuestKind::GpaDirect)
                {
                    replies.push(Reply::Completion {
                        tid: packet.tid,
                        payload: send_complete(nvsp::STATUS_SUCCESS),
                    });
                }
                for reply in &replies {
                    wrote |= self.send_reply(channel, reply).unwrap_or(false);
                }
            }
        }
        if wrote { Wake::Signalled } else { Wake::Quiet }
    }

    /// A reopen: drops the host's ring ends, acknowledges the guest's next open generation
    /// (which zeroes the rings), reopens the primary, and forgets what the old session owed.
    fn acknowledge_next_open(&mut self) -> Result<(), DeviceError> {
        for ch in &mut self.channels {
            *ch = None;
        }
        let generation = self.side.generation().wrapping_add(1);
        self.side.acknowledge_reopen(generation)?;
        self.channels[0] = Some(HostChannel::open(&self.side, 0)?);
        self.owed.clear();
        self.held_slots.clear();
        let slots = (self.rxbuf.len() / SUB_ALLOC) as u32;
        self.free_slots = (0..slots).rev().collect();
        self.opens += 1;
        Ok(())
    }
}

/// The host and its responder, shared with the [`StepDevice`].
#[derive(Clone, Debug)]
pub struct StepHandle {
    host: Arc<Mutex<StepHost>>,
    responder: Arc<Mutex<Box<dyn Responder>>>,
}

impl StepHandle {
    /// The host. Never hold the guard across a call into the NIC: the device takes it when
    /// the NIC waits.
    pub fn host(&self) -> MutexGuard<'_, StepHost> {
        self.host.lock()
    }

    /// Replaces the responder.
    pub fn set_responder(&self, responder: impl Responder + 'static) {
        *self.responder.lock() = Box::new(responder);
    }
}

/// A bus, its [`StepHost`] (with a [`WellBehaved`] responder) and the guest's device.
pub fn step_bus(
    identity: HostIdentity,
    config: &ShmConfig,
) -> Result<(StepHandle, StepDevice), DeviceError> {
    let bus = ShmBus::new(config)?;
    let inner = bus.guest_device();
    let host = Arc::new(Mutex::new(StepHost::new(bus, identity)?));
    let responder: Arc<Mutex<Box<dyn Responder>>> = Arc::new(Mutex::new(Box::new(WellBehaved)));
    let handle = StepHandle { host, responder };
    let device = StepDevice {
        inner,
        handle: handle.clone(),
    };
    Ok((handle, device))
}

/// The guest's device: an [`ShmDevice`] whose waits run the host's responder first.
#[derive(Debug)]
pub struct StepDevice {
    inner: ShmDevice,
    handle: StepHandle,
}

impl VmbusDevice for StepDevice {
    fn primary(&self) -> Result<ChannelRings, DeviceError> {
        self.inner.primary()
    }

    fn receive_buffer(&self) -> Result<(SharedMemory, u32), DeviceError> {
        self.inner.receive_buffer()
    }

    fn send_buffer(&self) -> Result<(SharedMemory, u32), DeviceError> {
        self.inner.send_buffer()
    }

    fn doorbell(&self, channel: u16) -> Result<Arc<dyn Doorbell>, DeviceError> {
        self.inner.doorbell(channel)
    }

    /// Opens what the host has offered at once; if it offered fewer than `count`, times out
    /// at once instead of sleeping (the host acts only when called, so more will not come).
    fn open_subchannels(
        &mut self,
        count: u16,
        timeout: Duration,
    ) -> Result<Vec<ChannelRings>, DeviceError> {
        let offered = self.handle.host().side.subchannels_offered();
        if count > offered && count < self.handle.host().max_channels() {
            return Err(DeviceError::Timeout {
                what: "the host to offer subchannels",
                timeout,
            });
        }
        self.inner.open_subchannels(count, timeout)
    }

    fn wait_for_interrupt(&self, timeout: Duration) -> Result<bool, DeviceError> {
        let wake = {
            let mut host = self.handle.host.lock();
            let wake = self.handle.responder.lock().respond(&mut host);
            if host.side.state() != ChannelState::Alive {
                None
            } else {
                Some(wake)
            }
        };
        // Drains the eventfds the host kicked, and reports a dead or rescinded device.
        let signalled = self.inner.wait_for_interrupt(Duration::ZERO)?;
        match wake {
            Some(Wake::Signalled) => Ok(true),
            Some(Wake::Quiet) if !signalled => {
                std::thread::sleep(timeout);
                Ok(false)
            }
            Some(Wake::Quiet) => Ok(true),
            // The state changed under the responder: the inner wait above has already
            // reported it unless the host revived the device in between.
            None => Ok(signalled),
        }
    }

    fn reopen(&mut self, timeout: Duration) -> Result<(), DeviceError> {
        if self.handle.host().side.state() != ChannelState::Rescinded {
            self.handle.host().acknowledge_next_open()?;
        }
        self.inner.reopen(timeout)
    }

    fn dma_memory(&mut self, size: usize) -> Result<SharedMemory, DeviceError> {
        self.inner.dma_memory(size)
    }
}

/// Places `bytes` at the start of a receive buffer of their length and reads the message of
/// `byte_count` bytes at `byte_offset` through both of the receive path's readers (the
/// hosts' shape, and the general one alone); an error says how they differ. The `rx_paths`
/// target's check.
pub fn receive_paths_agree(
    bytes: &[u8],
    byte_offset: u32,
    byte_count: u32,
    max_frame: usize,
) -> Result<(), String> {
    let rxbuf = SharedMemory::anonymous(bytes.len().max(1)).map_err(|e| e.to_string())?;
    rxbuf.write(0, bytes).map_err(|e| e.to_string())?;
    let range = TransferPageRange {
        byte_count,
        byte_offset,
    };
    super::rx::compare_paths(&rxbuf, range, max_frame)
}
