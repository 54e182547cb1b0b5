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
use std::sync::atomic::Ordering;

use zerocopy::{FromBytes, IntoBytes};

use crate::nvsp::{self, NvspMessage};
#[cfg(test)]
use crate::rndis::PacketInfo;
use crate::rndis::{self, PacketIdInfo, RndisMessage};
use crate::vmbus::{IncomingKind, IncomingPacket, TransferPageRange};

use super::events::{NicEvent, indication_event};

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
    /// A pool packet (empty, default headroom) to copy the next frame into where the sink
    /// keeps it, so that the frame is delivered without moving the packet; report it with
    /// [`slot_filled`](Self::slot_filled). `None` (the default) when the sink has no such
    /// place: the frame then comes in a packet of the caller's, through
    /// [`frame`](Self::frame). A slot given out and not filled stays the next one.
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
#[derive(Debug)]
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

/// What [`dispatch`] needs besides the packet.
#[derive(Debug)]
pub(crate) struct RxEnv<'a> {
    /// The receive buffer, once the host accepted it.
    pub rxbuf: Option<&'a SharedMemory>,
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
        one_range(range, rxbuf, env, scratch, sink, &mut partial);
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

/// One RNDIS message in the receive buffer at `range`.
fn one_range(
    range: &TransferPageRange,
    rxbuf: &SharedMemory,
    env: &mut RxEnv<'_>,
    scratch: &mut RxScratch,
    sink: &mut impl HostSink,
    partial: &mut Option<Packet>,
) {
    let offset = range.byte_offset as usize;
    let count = range.byte_count as usize;
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
    // The header and (usually) every PPI in one copy of the whole words that hold them.
    let RxScratch { head: words, bytes } = scratch;
    let head_len = count.min(HEAD_READ);
    let head = match load_head(rxbuf, offset, words) {
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
        data_packet(head, offset, msg_len, rxbuf, env, bytes, sink, partial);
    } else {
        control_message(offset, msg_len, rxbuf, bytes, sink);
    }
}

/// Loads the [`HEAD_WORDS`] aligned words of `rxbuf` from the one that holds byte `offset`
/// into `out` and returns where in them that byte is: the first [`HEAD_READ`] bytes from
/// `offset` are in `out` (the bytes around them are the host's: copied, never used). `None`
/// when those words run outside `rxbuf` (the caller copies the bytes alone). Received
/// messages lie at any byte (a sub-allocation is 1806 bytes); a fixed run of word loads is
/// the cheap copy.
#[inline(always)]
fn load_head(rxbuf: &SharedMemory, offset: usize, out: &mut [u64; HEAD_WORDS]) -> Option<usize> {
    let skip = (rxbuf.offset_in_mapping() + offset) % 8;
    let words = rxbuf.atomic_u64s_or_none(offset.checked_sub(skip)?, HEAD_WORDS)?;
    for (word, shared) in out.iter_mut().zip(words) {
        *word = shared.load(Ordering::Relaxed);
    }
    Some(skip)
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
    rxbuf: &SharedMemory,
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
    if let Some(slot) = sink.slot(env.pool) {
        if slot.copy_from_shared(rxbuf, src, frame_len).is_err() {
            sink.malformed("received frame unreadable");
            return;
        }
        slot.meta = meta(&info, env.queue);
        sink.slot_filled(frame_len);
        return;
    }
    let Some(mut packet) = env.buffers.take(env.pool) else {
        sink.no_buffer();
        return;
    };
    if packet.copy_from_shared(rxbuf, src, frame_len).is_err() {
        sink.malformed("received frame unreadable");
        return;
    }
    packet.meta = meta(&info, env.queue);
    sink.frame(packet);
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
                    rxbuf: Some(&rxbuf),
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
                    &rxbuf,
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

    proptest! {
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
