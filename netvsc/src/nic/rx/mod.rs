//! Receive: turning one packet read from a host→guest ring into frames, completions, control
//! responses and events.
//!
//! [`dispatch`] handles one [`IncomingPacket`] and reports what it found to a [`HostSink`];
//! the queues implement the sink with their counters, staging list and the control inbox, and
//! the transcript classifier ([`super::classify`]) implements it by recording. So the code the
//! transcripts exercise is the code the data path runs.
//!
//! Trust: every transfer-page range is bounds-checked against the receive buffer before it is
//! touched, the RNDIS header part is copied out of shared memory once and validated, and only
//! then is the frame copied — straight into a pool [`Packet`]. Nothing here panics on host
//! input; a bad message is reported with [`HostSink::malformed`]. The caller completes every
//! transfer-page packet that asked for it ([`dispatch`] returns the tid), malformed or not.
//!
//! Per packet this allocates nothing: the scratch buffers ([`RxScratch`]) and the packet keep
//! their capacity.

use packet::{Packet, PacketMeta, Pool, SharedMemory};
use std::sync::atomic::{AtomicU64, Ordering};

use zerocopy::{FromBytes, IntoBytes};

use crate::nvsp::{self, NvspMessage};
#[cfg(test)]
use crate::rndis::PacketInfo;
use crate::rndis::{self, PacketIdInfo, RndisMessage};
use crate::vmbus::{IncomingKind, IncomingPacket, TransferPageRange};

use super::events::{NicEvent, indication_event};

mod plain;

/// Largest RNDIS control message (completion or indication) the guest copies out.
pub(crate) const MAX_CONTROL_MESSAGE: usize = 64 * 1024;
/// Largest per-packet-info area the guest accepts on a received data packet.
const MAX_PPI_AREA: usize = 1024;
/// Bytes of a range copied out first: the PACKET header and, as hosts lay them out, its PPIs
/// (44 bytes and two 16-byte elements: the checksum always, the 802.1Q tag when tagged; a
/// longer area is copied out on its own).
const HEAD_READ: usize = rndis::PACKET_MESSAGE_SIZE + 2 * 16;
/// Words that hold [`HEAD_READ`] bytes at any byte offset.
const HEAD_WORDS: usize = (HEAD_READ + 7).div_ceil(8);

/// What [`dispatch`] reports.
pub(crate) trait HostSink {
    /// A received frame, in a pool packet with its metadata set.
    fn frame(&mut self, packet: Packet);
    /// A pool packet (empty, default headroom and metadata) to copy the next frame into where
    /// the sink keeps it, so that the frame is delivered without moving the packet; report it
    /// with [`slot_filled`](Self::slot_filled). `None` (the default) when the sink has no such
    /// place: the frame then comes in a packet of the caller's, through
    /// [`frame`](Self::frame). A slot given out and not filled stays the next one (its
    /// metadata untouched).
    #[inline(always)]
    fn slot(&mut self, _pool: &Pool) -> Option<&mut Packet> {
        None
    }
    /// The packet [`slot`](Self::slot) gave out holds a frame of `len` bytes with its
    /// metadata.
    #[inline(always)]
    fn slot_filled(&mut self, _len: usize) {}
    /// A VMBus completion of one of the guest's requests (`payload` includes padding; it may
    /// be empty).
    fn completion(&mut self, tid: u64, payload: &[u8]);
    /// An RNDIS control completion (INITIALIZE/QUERY/SET/KEEPALIVE_CMPLT), parsed from
    /// `bytes`, with its request id.
    fn rndis_response(&mut self, request_id: u32, message: &RndisMessage, bytes: &[u8]);
    /// An RNDIS INDICATE_STATUS with its code and, for known codes, the event.
    fn indication(&mut self, status: u32, event: Option<NicEvent>);
    /// An unsolicited NVSP message turned into an event (VF association, host data-path
    /// switch, send indirection table).
    fn event(&mut self, event: NicEvent);
    /// A host message the guest cannot use; dropped.
    fn malformed(&mut self, reason: &'static str);
    /// A frame dropped because the pool was empty.
    fn no_buffer(&mut self);
    /// A well-formed host message of a type the guest does not handle; ignored.
    fn unknown_message(&mut self, msg_type: u32);
}

/// What the receive path copies host bytes into, kept across packets: nothing to allocate
/// or clear per frame.
// `repr(C)`: the header words first, at the address the receive path holds, so that its
// loads need no offset computed.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct RxScratch {
    /// The first words of a message (its header and, usually, its PPIs).
    head: [u64; HEAD_WORDS],
    /// PPIs past those words, and control messages.
    bytes: Vec<u8>,
}

impl Default for RxScratch {
    fn default() -> Self {
        Self {
            head: [0; HEAD_WORDS],
            bytes: Vec::with_capacity(1024),
        }
    }
}

/// Buffers most [`RxBuffers`] takes from the pool at once.
const STASH: usize = 32;

/// Pool buffers for the frames of one poll, taken from the pool a batch at a time (one lock
/// per batch, not one per frame). What is left goes back with [`RxBuffers::release`] when
/// the poll ends, so that between polls the pool counts every buffer no frame holds.
#[derive(Debug, Default)]
pub(crate) struct RxBuffers {
    stash: Vec<Packet>,
}

impl RxBuffers {
    /// An empty packet from `pool`; `None` when the pool is empty.
    #[inline]
    fn take(&mut self, pool: &Pool) -> Option<Packet> {
        match self.stash.pop() {
            Some(packet) => Some(packet),
            None => self.refill(pool),
        }
    }

    #[inline(never)]
    fn refill(&mut self, pool: &Pool) -> Option<Packet> {
        pool.alloc_bulk(&mut self.stash, STASH);
        self.stash.pop()
    }

    /// Returns the buffers not used to their pool.
    pub(crate) fn release(&mut self) {
        if !self.stash.is_empty() {
            packet::pool::free_bulk(self.stash.drain(..));
        }
    }
}

/// The receive buffer as the receive path reads it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReceiveBuffer<'a> {
    mem: &'a SharedMemory,
    /// The whole words of `mem` (empty when its view does not start on a word: every read then
    /// goes through `mem`), looked up once for all the messages of a poll.
    words: &'a [AtomicU64],
}

impl<'a> ReceiveBuffer<'a> {
    pub(crate) fn new(mem: &'a SharedMemory) -> Self {
        let words = mem
            .atomic_u64s_or_none(0, mem.len() / 8)
            .unwrap_or_default();
        Self { mem, words }
    }
}

/// What [`dispatch`] needs besides the packet.
#[derive(Debug)]
pub(crate) struct RxEnv<'a> {
    /// The receive buffer, once the host accepted it.
    pub rxbuf: Option<ReceiveBuffer<'a>>,
    /// Where frames are copied to.
    pub pool: &'a Pool,
    /// Buffers taken from `pool` ahead of the frames.
    pub buffers: &'a mut RxBuffers,
    /// The queue, recorded in every frame's metadata.
    pub queue: u16,
    /// Negotiated NVSP version (the send indirection table's offset depends on it).
    pub nvsp_version: u32,
    /// Largest frame accepted.
    pub max_frame: usize,
}

/// Handles one packet read from a host→guest ring. Returns the tid to complete with NVSP 108
/// (a transfer-page packet that requested a completion), whatever its content was.
pub(crate) fn dispatch(
    pkt: &IncomingPacket,
    env: &mut RxEnv<'_>,
    scratch: &mut RxScratch,
    sink: &mut impl HostSink,
) -> Option<u64> {
    match pkt.kind() {
        IncomingKind::Completion => {
            sink.completion(pkt.transaction_id(), pkt.payload());
            None
        }
        IncomingKind::InBand => {
            // Host in-band messages (128, 129, 134) are never completed, like Linux.
            inband(pkt.payload(), env, sink);
            None
        }
        IncomingKind::GpaDirect => {
            sink.malformed("gpa-direct packet from the host");
            None
        }
        IncomingKind::TransferPages { set_id } => {
            let complete = pkt.completion_requested().then_some(pkt.transaction_id());
            if complete.is_none() {
                sink.malformed("transfer-page packet without a completion request");
            }
            transfer_pages(pkt, set_id, env, scratch, sink);
            complete
        }
    }
}

fn inband(payload: &[u8], env: &RxEnv<'_>, sink: &mut impl HostSink) {
    match NvspMessage::parse(payload) {
        Ok(NvspMessage::SendVfAssociation(m)) => sink.event(NicEvent::VfAssociation {
            allocated: m.vf_allocated.get() != nvsp::VF_NOT_ALLOCATED,
            serial: m.serial_number.get(),
        }),
        Ok(NvspMessage::SwitchDataPath(m)) => sink.event(NicEvent::HostSwitchedDataPath {
            to_vf: m.active_data_path.get() == nvsp::DATA_PATH_VF,
        }),
        Ok(NvspMessage::SendIndirectionTable(table)) => match table.table(env.nvsp_version) {
            Ok(entries) => sink.event(NicEvent::IndirectionTable(entries.to_vec())),
            Err(_) => sink.malformed("send indirection table out of bounds"),
        },
        Ok(other) => sink.unknown_message(other.msg_type()),
        Err(_) => sink.malformed("host nvsp message too short for its type"),
    }
}

fn transfer_pages(
    pkt: &IncomingPacket,
    set_id: u16,
    env: &mut RxEnv<'_>,
    scratch: &mut RxScratch,
    sink: &mut impl HostSink,
) {
    if set_id != nvsp::RECEIVE_BUFFER_ID {
        sink.malformed("transfer-page packet names another page set");
        return;
    }
    if !matches!(
        NvspMessage::parse(pkt.payload()),
        Ok(NvspMessage::SendRndisPacket(_))
    ) {
        sink.malformed("transfer-page packet does not carry nvsp 107");
        return;
    }
    let Some(rxbuf) = env.rxbuf else {
        sink.malformed("transfer-page packet before the receive buffer was accepted");
        return;
    };
    let mut partial: Option<Packet> = None;
    for range in pkt.transfer_ranges() {
        one_range(&range, rxbuf, env, scratch, sink, &mut partial);
    }
    if partial.is_some() {
        sink.malformed("coalesced frame without its last fragment");
    }
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map_or(0, u32::from_le_bytes)
}

/// One RNDIS message in the receive buffer at `range`: a data message of the hosts' shape
/// through [`plain`], anything else through [`general_range`].
#[inline(always)]
fn one_range(
    range: &TransferPageRange,
    rxbuf: ReceiveBuffer<'_>,
    env: &mut RxEnv<'_>,
    scratch: &mut RxScratch,
    sink: &mut impl HostSink,
    partial: &mut Option<Packet>,
) {
    let offset = range.byte_offset as usize;
    let count = range.byte_count as usize;
    // The header and (usually) every PPI in one copy of the whole words that hold them. The
    // range checked against the whole words (at most the buffer's length: a range in a last
    // part word goes the general way).
    let inside =
        u64::from(range.byte_offset) + u64::from(range.byte_count) <= rxbuf.words.len() as u64 * 8;
    let at = load_head(rxbuf.words, offset, &mut scratch.head);
    if inside
        && let Some(head) = at.and_then(|at| scratch.head.as_bytes()[at..].first_chunk())
        && let Some(frame) = plain::data_frame(head, count, env.max_frame, env.queue)
    {
        deliver(
            offset + frame.start,
            frame.len,
            frame.meta,
            rxbuf,
            env,
            sink,
        );
        return;
    }
    general_range(offset, count, at, rxbuf, env, scratch, sink, partial);
}

/// One RNDIS message of `count` bytes at `offset` of the receive buffer (a range inside it),
/// of any kind, checked field by field; a refusal says why. `at` is where [`load_head`] put
/// its first byte in `scratch.head` (`None` when it did not load it).
#[allow(clippy::too_many_arguments)]
fn general_range(
    offset: usize,
    count: usize,
    at: Option<usize>,
    buffer: ReceiveBuffer<'_>,
    env: &mut RxEnv<'_>,
    scratch: &mut RxScratch,
    sink: &mut impl HostSink,
    partial: &mut Option<Packet>,
) {
    let rxbuf = buffer.mem;
    if offset
        .checked_add(count)
        .is_none_or(|end| end > rxbuf.len())
    {
        sink.malformed("transfer-page range outside the receive buffer");
        return;
    }
    if count < rndis::MESSAGE_HEADER_SIZE {
        sink.malformed("transfer-page range shorter than an rndis header");
        return;
    }
    let RxScratch { head: words, bytes } = scratch;
    let head_len = count.min(HEAD_READ);
    let head = match at {
        Some(at) => &words.as_bytes()[at..at + head_len],
        None => {
            let bytes = &mut words.as_mut_bytes()[..head_len];
            if rxbuf.read(offset, bytes).is_err() {
                sink.malformed("transfer-page range unreadable");
                return;
            }
            bytes
        }
    };
    let msg_type = read_u32(head, 0);
    let msg_len = read_u32(head, 4) as usize;
    if msg_len < rndis::MESSAGE_HEADER_SIZE || msg_len > count {
        sink.malformed("rndis message length outside its range");
        return;
    }
    if msg_type == rndis::MESSAGE_TYPE_PACKET_MSG {
        data_packet(head, offset, msg_len, buffer, env, bytes, sink, partial);
    } else {
        control_message(offset, msg_len, rxbuf, bytes, sink);
    }
}

/// Loads the [`HEAD_WORDS`] words of the receive buffer (`words`) from the one that holds byte
/// `offset` into `out` and returns where in them that byte is: the first [`HEAD_READ`] bytes
/// from `offset` are in `out` (the bytes around them are the host's: copied, never used).
/// `None` when those words run outside `words` (the caller copies the bytes alone). Received
/// messages lie at any byte (a sub-allocation is 1806 bytes); a fixed run of word loads is
/// the cheap copy.
#[inline(always)]
fn load_head(words: &[AtomicU64], offset: usize, out: &mut [u64; HEAD_WORDS]) -> Option<usize> {
    let words = words.get(offset / 8..offset / 8 + HEAD_WORDS)?;
    for (word, shared) in out.iter_mut().zip(words) {
        *word = shared.load(Ordering::Relaxed);
    }
    Some(offset % 8)
}

/// Where the frame of a PACKET message lies, relative to the message start.
fn frame_span(body: &rndis::Packet, msg_len: usize) -> Option<(usize, usize)> {
    let len = body.data_length.get() as usize;
    let start = (body.data_offset.get() as usize).checked_add(rndis::MESSAGE_HEADER_SIZE)?;
    let end = start.checked_add(len)?;
    (len != 0 && end <= msg_len).then_some((start, len))
}

#[allow(clippy::too_many_arguments)]
fn data_packet(
    head: &[u8],
    offset: usize,
    msg_len: usize,
    buffer: ReceiveBuffer<'_>,
    env: &mut RxEnv<'_>,
    scratch: &mut Vec<u8>,
    sink: &mut impl HostSink,
    partial: &mut Option<Packet>,
) {
    let Some(body) = head
        .get(rndis::MESSAGE_HEADER_SIZE..rndis::PACKET_MESSAGE_SIZE)
        .filter(|_| msg_len >= rndis::PACKET_MESSAGE_SIZE)
        .and_then(|b| rndis::Packet::read_from_bytes(b).ok())
    else {
        sink.malformed("rndis packet shorter than its header");
        return;
    };
    let Some((frame_start, frame_len)) = frame_span(&body, msg_len) else {
        sink.malformed("rndis packet frame empty or outside the message");
        return;
    };
    let rxbuf = buffer.mem;
    let info = match ppi(&body, head, offset, msg_len, rxbuf, scratch) {
        Ok(info) => info,
        Err(reason) => {
            sink.malformed(reason);
            return;
        }
    };
    let src = offset + frame_start;
    let fragment = info
        .packet_id
        .filter(|id| id.flags() & PacketIdInfo::FLAG_SUBALLOC != 0);
    if let Some(id) = fragment {
        coalesced(id, src, frame_len, &info, rxbuf, env, sink, partial);
        return;
    }
    if frame_len > env.max_frame {
        sink.malformed("received frame longer than the mtu allows");
        return;
    }
    deliver(src, frame_len, meta(&info, env.queue), buffer, env, sink);
}

/// Copies the `len`-byte frame at `src` of the receive buffer into the sink's next slot (or a
/// packet of the caller's) with `meta`, and reports it.
#[inline(always)]
fn deliver(
    src: usize,
    len: usize,
    meta: PacketMeta,
    rxbuf: ReceiveBuffer<'_>,
    env: &mut RxEnv<'_>,
    sink: &mut impl HostSink,
) {
    if let Some(slot) = sink.slot(env.pool) {
        if copy_frame(slot, rxbuf, src, len).is_err() {
            sink.malformed("received frame unreadable");
            return;
        }
        // A slot comes with the default metadata: only what a frame has is written.
        debug_assert_eq!(slot.meta, PacketMeta::default());
        slot.meta.queue = meta.queue;
        if meta.vlan_tci.is_some() {
            slot.meta.vlan_tci = meta.vlan_tci;
        }
        if meta.rss_hash.is_some() {
            slot.meta.rss_hash = meta.rss_hash;
        }
        sink.slot_filled(len);
        return;
    }
    let Some(mut packet) = env.buffers.take(env.pool) else {
        sink.no_buffer();
        return;
    };
    if copy_frame(&mut packet, rxbuf, src, len).is_err() {
        sink.malformed("received frame unreadable");
        return;
    }
    packet.meta = meta;
    sink.frame(packet);
}

/// Makes `packet` the `len`-byte frame at `src` of the receive buffer: the whole words that
/// hold it where they fit, else the bytes alone (a frame near the buffer's end).
#[inline(always)]
fn copy_frame(
    packet: &mut Packet,
    rxbuf: ReceiveBuffer<'_>,
    src: usize,
    len: usize,
) -> Result<(), packet::MemError> {
    packet
        .copy_from_words(rxbuf.words, src, len)
        .or_else(|_| packet.copy_from_shared(rxbuf.mem, src, len))
}

/// What the receive path keeps of a PACKET message's per-packet info.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RxInfo {
    /// The 802.1Q tag (PPI 6), as a TCI.
    pub vlan_tci: Option<u16>,
    /// The receive hash value (PPI 8).
    pub rss_hash: Option<u32>,
    /// The RSC fragment id (internal PPI 1).
    pub packet_id: Option<PacketIdInfo>,
}

impl RxInfo {
    /// The values of a PPI area, checked as [`PacketInfo::parse`] checks it (the first
    /// element of a type wins, as there).
    #[inline(always)]
    pub(crate) fn parse(area: &[u8]) -> Result<Self, rndis::RndisError> {
        let (mut vlan, mut hash, mut id) = (None, None, None);
        rndis::for_each_known(area, |ppi_type, value| match ppi_type {
            rndis::PPI_IEEE_8021Q => _ = vlan.get_or_insert(value),
            rndis::PPI_HASH_VALUE => _ = hash.get_or_insert(value),
            rndis::PPI_PACKET_ID => _ = id.get_or_insert(value),
            _ => {}
        })?;
        Ok(Self {
            vlan_tci: vlan.map(|v| rndis::Ieee8021QInfo(v).tci()),
            rss_hash: hash,
            packet_id: id.map(PacketIdInfo),
        })
    }
}

fn meta(info: &RxInfo, queue: u16) -> PacketMeta {
    PacketMeta {
        vlan_tci: info.vlan_tci,
        rss_hash: info.rss_hash,
        queue,
    }
}

/// Parses the PPI area of a PACKET message: in `head` (the message's first bytes, already
/// copied out) when it lies there, else copied out of the receive buffer first.
#[inline(always)]
fn ppi(
    body: &rndis::Packet,
    head: &[u8],
    offset: usize,
    msg_len: usize,
    rxbuf: &SharedMemory,
    scratch: &mut Vec<u8>,
) -> Result<RxInfo, &'static str> {
    let len = body.per_packet_info_length.get() as usize;
    if len == 0 {
        return Ok(RxInfo::default());
    }
    let start = (body.per_packet_info_offset.get() as usize)
        .checked_add(rndis::MESSAGE_HEADER_SIZE)
        .filter(|s| s.checked_add(len).is_some_and(|end| end <= msg_len))
        .ok_or("per-packet info outside the message")?;
    if let Some(area) = head.get(start..start + len) {
        return RxInfo::parse(area).map_err(|_| "per-packet info malformed");
    }
    if len > MAX_PPI_AREA {
        return Err("per-packet info area too large");
    }
    scratch.clear();
    scratch.resize(len, 0);
    rxbuf
        .read(offset + start, scratch)
        .map_err(|_| "per-packet info unreadable")?;
    RxInfo::parse(scratch).map_err(|_| "per-packet info malformed")
}

/// One fragment of a frame the host coalesced over several ranges (RSC).
#[allow(clippy::too_many_arguments)]
fn coalesced(
    id: PacketIdInfo,
    src: usize,
    len: usize,
    info: &RxInfo,
    rxbuf: &SharedMemory,
    env: &mut RxEnv<'_>,
    sink: &mut impl HostSink,
    partial: &mut Option<Packet>,
) {
    if id.flags() & PacketIdInfo::FLAG_FIRST_FRAGMENT != 0 {
        if partial.take().is_some() {
            sink.malformed("coalesced frame without its last fragment");
        }
        match env.buffers.take(env.pool) {
            Some(mut p) => {
                p.meta = meta(info, env.queue);
                *partial = Some(p);
            }
            None => {
                sink.no_buffer();
                return;
            }
        }
    }
    let Some(mut p) = partial.take() else {
        // The first fragment was dropped (or never came): drop the rest silently once.
        if id.flags() & PacketIdInfo::FLAG_LAST_FRAGMENT != 0 {
            sink.malformed("coalesced fragment without a first fragment");
        }
        return;
    };
    let old = p.len();
    let Some(new_len) = old.checked_add(len).filter(|&n| n <= p.max_len()) else {
        sink.malformed("coalesced frame larger than a pool buffer");
        return;
    };
    p.set_len(new_len);
    if rxbuf.read(src, &mut p.data_mut()[old..]).is_err() {
        sink.malformed("coalesced fragment unreadable");
        return;
    }
    if id.flags() & PacketIdInfo::FLAG_LAST_FRAGMENT != 0 {
        sink.frame(p);
    } else {
        *partial = Some(p);
    }
}

/// The request id an RNDIS completion carries.
pub(crate) fn response_request_id(message: &RndisMessage) -> Option<u32> {
    match message {
        RndisMessage::InitializeComplete(m) => Some(m.request_id.get()),
        RndisMessage::QueryComplete(c) => Some(c.request_id),
        RndisMessage::SetComplete(m) => Some(m.request_id.get()),
        RndisMessage::KeepaliveComplete(m) => Some(m.request_id.get()),
        _ => None,
    }
}

fn control_message(
    offset: usize,
    msg_len: usize,
    rxbuf: &SharedMemory,
    scratch: &mut Vec<u8>,
    sink: &mut impl HostSink,
) {
    if msg_len > MAX_CONTROL_MESSAGE {
        sink.malformed("rndis control message too large");
        return;
    }
    scratch.clear();
    scratch.resize(msg_len, 0);
    if rxbuf.read(offset, scratch).is_err() {
        sink.malformed("rndis control message unreadable");
        return;
    }
    let message = match RndisMessage::parse(scratch) {
        Ok(m) => m,
        Err(_) => {
            sink.malformed("rndis control message malformed");
            return;
        }
    };
    match &message {
        RndisMessage::IndicateStatus(s) => {
            let buffer = s.buffer.get(scratch).unwrap_or_default();
            sink.indication(s.status, indication_event(s.status, buffer));
        }
        m => match response_request_id(m) {
            Some(request_id) => sink.rndis_response(request_id, m, scratch),
            None => sink.unknown_message(m.msg_type()),
        },
    }
}

/// What one message read by the receive path came to: its frames (bytes, VLAN tag, hash) and
/// its refusals, in order.
#[cfg(any(test, feature = "fuzzing"))]
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    frames: Vec<(Vec<u8>, Option<u16>, Option<u32>)>,
    refused: Vec<&'static str>,
}

#[cfg(any(test, feature = "fuzzing"))]
impl HostSink for Outcome {
    fn frame(&mut self, packet: Packet) {
        let meta = packet.meta;
        self.frames
            .push((packet.data().to_vec(), meta.vlan_tci, meta.rss_hash));
    }
    fn completion(&mut self, _: u64, _: &[u8]) {}
    fn rndis_response(&mut self, _: u32, _: &RndisMessage, _: &[u8]) {}
    fn indication(&mut self, _: u32, _: Option<NicEvent>) {}
    fn event(&mut self, _: NicEvent) {}
    fn malformed(&mut self, reason: &'static str) {
        self.refused.push(reason);
    }
    fn no_buffer(&mut self) {
        self.refused.push("no buffer");
    }
    fn unknown_message(&mut self, _: u32) {
        self.refused.push("unknown message");
    }
}

/// Reads the message of `range` in `rxbuf` the way the queues do (the hosts' shape through
/// [`plain`], anything else through [`general_range`]) and through [`general_range`] alone,
/// and fails when the two differ in any frame, metadata or refusal: the fast path may only
/// decline what it does not know, never decide otherwise.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn compare_paths(
    rxbuf: &SharedMemory,
    range: TransferPageRange,
    max_frame: usize,
) -> Result<(), String> {
    let pool = SharedMemory::anonymous(4 * 2048)
        .and_then(|mem| Pool::new(mem, 2048))
        .map_err(|e| e.to_string())?;
    let buffer = ReceiveBuffer::new(rxbuf);
    let read = |general_only: bool| {
        let (mut buffers, mut scratch, mut outcome) = (
            RxBuffers::default(),
            RxScratch::default(),
            Outcome::default(),
        );
        let mut env = RxEnv {
            rxbuf: Some(buffer),
            pool: &pool,
            buffers: &mut buffers,
            queue: 1,
            nvsp_version: nvsp::VERSION_61,
            max_frame,
        };
        let mut partial = None;
        if general_only {
            let (offset, count) = (range.byte_offset as usize, range.byte_count as usize);
            let at = load_head(buffer.words, offset, &mut scratch.head);
            general_range(
                offset,
                count,
                at,
                buffer,
                &mut env,
                &mut scratch,
                &mut outcome,
                &mut partial,
            );
        } else {
            one_range(
                &range,
                buffer,
                &mut env,
                &mut scratch,
                &mut outcome,
                &mut partial,
            );
        }
        if partial.is_some() {
            outcome.refused.push("first fragment held");
        }
        buffers.release();
        outcome
    };
    let (queues, general) = (read(false), read(true));
    if queues != general {
        return Err(format!(
            "the receive path read {queues:?}, the general path alone {general:?}"
        ));
    }
    if pool.available() != pool.capacity() {
        return Err("a buffer was not given back".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The frames and refusals of a receive.
    #[derive(Default)]
    struct Frames {
        frames: Vec<Packet>,
        malformed: Vec<&'static str>,
    }

    impl HostSink for Frames {
        fn frame(&mut self, packet: Packet) {
            self.frames.push(packet);
        }
        fn completion(&mut self, _: u64, _: &[u8]) {}
        fn rndis_response(&mut self, _: u32, _: &RndisMessage, _: &[u8]) {}
        fn indication(&mut self, _: u32, _: Option<NicEvent>) {}
        fn event(&mut self, _: NicEvent) {}
        fn malformed(&mut self, reason: &'static str) {
            self.malformed.push(reason);
        }
        fn no_buffer(&mut self) {
            self.malformed.push("no buffer");
        }
        fn unknown_message(&mut self, _: u32) {}
    }

    /// A data message is read the same wherever it lies: on a word or not, and where the
    /// words its header is loaded in would run past the end of the receive buffer (the bytes
    /// are then copied alone); with the PPIs hosts send (inside the first words loaded) and
    /// with more (the area then copied out on its own).
    #[test]
    fn a_data_message_is_received_at_any_offset_up_to_the_end_of_the_receive_buffer() {
        let tagged = PacketInfo {
            checksum: Some(0),
            ieee8021q: Some(rndis::Ieee8021QInfo(0x2a)),
            ..PacketInfo::default()
        };
        let hashed = PacketInfo {
            hash_value: Some(0x1234_5678),
            ..tagged
        };
        assert!(rndis::packet_header_len(&tagged) <= HEAD_READ);
        assert!(rndis::packet_header_len(&hashed) > HEAD_READ);
        const RXBUF: usize = 4096;
        let rxbuf = SharedMemory::anonymous(RXBUF).unwrap();
        let pool = Pool::new(SharedMemory::anonymous(8 * 2048).unwrap(), 2048).unwrap();
        let (mut buffers, mut scratch, mut sink) = (
            RxBuffers::default(),
            RxScratch::default(),
            Frames::default(),
        );
        // As a host lays a frame out (PPIs, the frame at byte 256), and with no PPI: a short
        // frame then makes a message shorter than the words its header is loaded in.
        for (frame_len, ppi) in [
            (61, Some(tagged)),
            (61, Some(hashed)),
            (61, None),
            (3, None),
        ] {
            let frame: Vec<u8> = (0..frame_len).map(|b| (b as u8).wrapping_mul(7)).collect();
            let mut message = [0u8; 512];
            let len = if let Some(info) = &ppi {
                rndis::write_host_packet(&mut message, &frame, info).unwrap()
            } else {
                let len = rndis::PACKET_MESSAGE_SIZE + frame.len();
                let (head, rest) = message.split_first_chunk_mut().unwrap();
                rndis::write_plain_packet_header(head, len as u32, frame.len() as u32);
                rest[..frame.len()].copy_from_slice(&frame);
                len
            };
            let sent = ppi.unwrap_or_default();
            let offsets = [
                0,
                1,
                3,
                8,
                13,
                RXBUF - len - 9,
                RXBUF - len - 1,
                RXBUF - len,
            ];
            for offset in offsets {
                rxbuf.write(offset, &message[..len]).unwrap();
                let mut env = RxEnv {
                    rxbuf: Some(ReceiveBuffer::new(&rxbuf)),
                    pool: &pool,
                    buffers: &mut buffers,
                    queue: 3,
                    nvsp_version: nvsp::VERSION_61,
                    max_frame: 1514,
                };
                let range = TransferPageRange {
                    byte_count: len as u32,
                    byte_offset: offset as u32,
                };
                let mut partial = None;
                one_range(
                    &range,
                    ReceiveBuffer::new(&rxbuf),
                    &mut env,
                    &mut scratch,
                    &mut sink,
                    &mut partial,
                );
                let at = format!("{frame_len} bytes at {offset}");
                assert!(sink.malformed.is_empty(), "{at}: {:?}", sink.malformed);
                let packet = sink.frames.pop().expect("a frame");
                assert_eq!(packet.data(), &frame[..], "{at}");
                assert_eq!(packet.meta.rss_hash, sent.hash_value, "{at}");
                assert_eq!(
                    packet.meta.vlan_tci,
                    sent.ieee8021q.map(|v| v.tci()),
                    "{at}"
                );
                assert_eq!(packet.meta.queue, 3);
            }
        }
        buffers.release();
        assert_eq!(pool.available(), pool.capacity());
    }

    /// A message as a host writes it: the header, `ppis` as 16-byte elements right after it,
    /// and a `frame_len`-byte frame at byte 256.
    fn host_message(frame_len: usize, ppis: &[(u32, u32)]) -> Vec<u8> {
        let mut m = vec![0u8; 256 + frame_len];
        let ppi_len = 16 * ppis.len() as u32;
        let fields = [
            rndis::MESSAGE_TYPE_PACKET_MSG,
            m.len() as u32,
            248,
            frame_len as u32,
            0,
            0,
            0,
            if ppis.is_empty() { 0 } else { 36 },
            ppi_len,
        ];
        for (i, field) in fields.iter().enumerate() {
            m[4 * i..4 * i + 4].copy_from_slice(&field.to_le_bytes());
        }
        for (i, (ppi_type, value)) in ppis.iter().enumerate() {
            for (j, field) in [16, *ppi_type, 12, *value].iter().enumerate() {
                let at = 44 + 16 * i + 4 * j;
                m[at..at + 4].copy_from_slice(&field.to_le_bytes());
            }
        }
        for (i, b) in m[256..].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(7);
        }
        m
    }

    fn head_of(message: &[u8]) -> [u8; HEAD_READ] {
        let mut head = [0u8; HEAD_READ];
        let n = message.len().min(HEAD_READ);
        head[..n].copy_from_slice(&message[..n]);
        head
    }

    /// The messages hosts send take the fast path, with their metadata; what it does not
    /// know (a third element, a fragment id, a type it does not keep) it leaves to the
    /// general path. Without this, a fast path that declined everything would
    /// pass every other test and only show in the instruction counts.
    #[test]
    fn the_messages_hosts_send_are_read_by_the_fast_path() {
        let (checksum, vlan, hash) = (
            (rndis::PPI_TCP_IP_CHECKSUM, 0),
            (
                rndis::PPI_IEEE_8021Q,
                rndis::Ieee8021QInfo::from_tci(0x6123).0,
            ),
            (rndis::PPI_HASH_VALUE, 0x1234_5678),
        );
        for (ppis, tci, rss) in [
            (vec![], None, None),
            (vec![checksum], None, None),
            (vec![checksum, vlan], Some(0x6123), None),
            (vec![vlan, checksum], Some(0x6123), None),
            (vec![checksum, hash], None, Some(0x1234_5678)),
            (vec![checksum, checksum], None, None),
            // A repeated type: the first element's value, as the general path keeps it.
            (
                vec![vlan, (rndis::PPI_IEEE_8021Q, 0x10)],
                Some(0x6123),
                None,
            ),
        ] {
            let m = host_message(60, &ppis);
            let frame = plain::data_frame(&head_of(&m), m.len(), 1514, 3);
            let want = plain::PlainFrame {
                start: 256,
                len: 60,
                meta: PacketMeta {
                    vlan_tci: tci,
                    rss_hash: rss,
                    queue: 3,
                },
            };
            assert_eq!(frame, Some(want), "{ppis:?}");
        }
        let id = (rndis::PPI_PACKET_ID, 0x0005_0101);
        for ppis in [vec![checksum, vlan, hash], vec![id], vec![(3, 0)]] {
            let m = host_message(60, &ppis);
            assert_eq!(
                plain::data_frame(&head_of(&m), m.len(), 1514, 3),
                None,
                "{ppis:?}"
            );
        }
        // A range shorter than the message, a frame over the limit.
        let m = host_message(60, &[checksum]);
        assert_eq!(plain::data_frame(&head_of(&m), m.len() - 1, 1514, 3), None);
        assert_eq!(plain::data_frame(&head_of(&m), m.len(), 59, 3), None);
    }

    proptest! {
        /// For any message near the hosts' shape (fields, elements and ranges bent or
        /// replaced), anywhere in the receive buffer, the receive path delivers and refuses
        /// exactly as its general path alone does.
        #[test]
        fn the_fast_path_reads_every_message_as_the_general_path_does(
            frame_len in 1usize..200,
            ppis in proptest::collection::vec(
                (prop_oneof![Just(0u32), Just(6), Just(8), Just(9), Just(0x8000_0001),
                    any::<u32>()], any::<u32>()),
                0..4,
            ),
            edits in proptest::collection::vec(
                (0usize..24, prop_oneof![0u32..64, 250u32..300, any::<u32>()]),
                0..3,
            ),
            offset in 0usize..40,
            count_change in prop_oneof![4 => Just(0i64), 1 => -300i64..300],
            max_frame in prop_oneof![Just(1514usize), 0usize..300],
            tail in 0usize..24,
        ) {
            let mut m = host_message(frame_len, &ppis);
            // A field of the header or of the first elements (a whole u32) replaced.
            for (field, value) in edits {
                m[4 * field..4 * field + 4].copy_from_slice(&value.to_le_bytes());
            }
            let rxbuf = SharedMemory::anonymous(offset + m.len() + tail).unwrap();
            rxbuf.write(offset, &m).unwrap();
            let range = TransferPageRange {
                byte_count: (m.len() as i64 + count_change).max(0) as u32,
                byte_offset: offset as u32,
            };
            if let Err(e) = compare_paths(&rxbuf, range, max_frame) {
                prop_assert!(false, "{}", e);
            }
        }

        /// The receive path's walk keeps what `PacketInfo::parse` keeps and fails where it
        /// fails, for any area (well-formed elements of any type, and garbage).
        #[test]
        fn rx_info_agrees_with_packet_info(
            elements in proptest::collection::vec(
                (prop_oneof![Just(0u32), Just(2), Just(6), Just(8), Just(9), Just(0x8000_0001),
                    any::<u32>()], any::<u32>()),
                0..6,
            ),
            garbage in proptest::collection::vec(any::<u8>(), 0..24),
        ) {
            let mut area = Vec::new();
            for (ppi_type, value) in &elements {
                for field in [16, *ppi_type, 12, *value] {
                    area.extend_from_slice(&field.to_le_bytes());
                }
            }
            for area in [area.clone(), [area, garbage].concat()] {
                match (PacketInfo::parse(&area), RxInfo::parse(&area)) {
                    (Ok(full), Ok(rx)) => {
                        prop_assert_eq!(rx.vlan_tci, full.ieee8021q.map(|v| v.tci()));
                        prop_assert_eq!(rx.rss_hash, full.hash_value);
                        prop_assert_eq!(rx.packet_id, full.packet_id);
                    }
                    (Err(a), Err(b)) => prop_assert_eq!(a, b),
                    (a, b) => prop_assert!(false, "disagree: {:?} vs {:?}", a, b),
                }
            }
        }
    }
}
