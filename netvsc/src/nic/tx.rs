//! Transmit: send-buffer sections and GPA-direct sends of one queue.
//!
//! Each frame is framed as an RNDIS PACKET (44-byte header, plus an 802.1Q PPI when
//! `meta.vlan_tci` is set) inside NVSP 107 with completion requested:
//!
//! - **Section copy**: header and frame are copied into a section of the send buffer and an
//!   in-band packet names the section; the pool buffer is released at once. Frames of one burst
//!   share a section, as Linux and DPDK pack them (aggregation): each RNDIS PACKET starts on the
//!   host's alignment (`2^packet_alignment_factor`): every message is padded to it when it is
//!   written, its `MessageLength` covering the zeroed padding (as Linux pads a packet that
//!   more may follow), so the copies are whole aligned words and nothing written is rewritten;
//!   at most the host's `max_packets_per_message` share a section, and one NVSP 107 names them
//!   all. A section is sent when the next frame does not fit it, before a frame
//!   that goes another way (GPA direct, or dropped), and at the end of the burst: a frame never
//!   waits for the next burst. Sections are partitioned per queue (`[base, base + count)`, no
//!   cross-queue lock); a section is owned by the host until the completion that carries its
//!   tid.
//! - **GPA direct**: the header is pushed into the packet's headroom and one GPA range covers
//!   header and frame (the pool buffer is contiguous in bus addresses); the packet is held in
//!   the in-flight table until its completion.
//!
//! Invariants: at most [`MAX_OUTSTANDING`] sends per channel are outstanding (the host stops
//! reading beyond 1024); every frame `transmit` takes is sent or counted in `tx_dropped` (a
//! section whose NVSP message does not fit the ring gives its frames back: they were not
//! taken); a completion frees exactly the slot reserved under its tid (a stale or duplicate
//! tid matches nothing and is counted in `unknown_completions`); a status other than success
//! counts every frame of that send in `tx_failed` and frees the resources all the same.

use std::sync::atomic::{AtomicU64, Ordering};

use packet::{Packet, Pool, SharedMemory};

use crate::nvsp::{self, Message1SendRndisPacket, NvspMessage};
use crate::rndis::{self, Ieee8021QInfo, PacketInfo};
use crate::vmbus::{GpaRange, OutgoingKind, OutgoingPacket, RingError};

use super::queue::ChannelIo;
use super::stats::QueueStats;
use super::tids::{KIND_GPA, KIND_SECTION, SlotTable, kind_of};

/// Sends a queue keeps outstanding at most: the host's 1024 per channel, less room for
/// control requests on queue 0.
pub(crate) const MAX_OUTSTANDING: usize = 1024 - 16;

/// Largest RNDIS header the guest writes (the header and two PPIs).
const MAX_HEADER: usize = rndis::PACKET_MESSAGE_SIZE + 2 * rndis::PPI_ELEMENT_SIZE;

/// The send buffer and this queue's share of it.
#[derive(Debug)]
struct TxSession {
    sendbuf: SharedMemory,
    section_size: usize,
    section_base: u32,
    gpa_capable: bool,
    /// Most RNDIS packets in one section (the host's `max_packets_per_message`, at least 1).
    agg_packets: u32,
    /// Alignment of each packet in a section (`2^packet_alignment_factor`, a power of two).
    agg_align: usize,
}

/// What the host allows in one section (from RNDIS INITIALIZE_CMPLT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Aggregation {
    /// `max_packets_per_message`.
    pub max_packets: u32,
    /// `packet_alignment_factor` (log2).
    pub alignment_factor: u32,
}

/// The section being filled during a burst.
#[derive(Debug)]
struct OpenSection {
    slot: u32,
    tid: u64,
    section: u32,
    /// Bytes written so far (a multiple of the alignment: each message is padded to it).
    used: usize,
    packets: u32,
    bytes: u64,
    /// Index in the burst of its first frame.
    first_taken: usize,
}

/// What happened to one frame.
enum Outcome {
    Section,
    /// A section was opened for a plain frame, not written yet.
    Opened,
    Gpa(u32),
    Dropped,
    /// Not taken: the burst stops here.
    Stop,
    /// The open section could not be sent (the ring is full): its frames, from this index in
    /// the burst on, were not taken after all; the burst stops here.
    GiveBack(usize),
}

/// Transmit state of one queue.
#[derive(Debug)]
pub(crate) struct TxState {
    session: Option<TxSession>,
    /// Sections in flight, each with its frame count.
    sections: SlotTable<u32>,
    /// Frames in the sections in flight.
    section_frames: u64,
    /// The section this burst is filling.
    open: Option<OpenSection>,
    /// Set when sending the open section failed on a corrupt ring: the burst index of its
    /// first frame (they were not taken).
    given_back: Option<usize>,
    gpa: SlotTable<Packet>,
    max_frame: usize,
    copy_max: usize,
    pfns: Vec<u64>,
    /// The frames of a burst sent GPA-direct: (index in the burst, in-flight slot).
    gpa_taken: Vec<(usize, u32)>,
    /// The RNDIS header of a section send, then the frame's first bytes up to a word boundary
    /// (so the header and the frame are written with one whole-word copy and one that starts on
    /// a word: shared-memory copies cost more where they start or end inside a word).
    header: [u8; MAX_HEADER + 8],
}

/// The NVSP 107 message for a data send.
fn nvsp_send(section: u32, size: u32) -> ([u8; nvsp::GUEST_MESSAGE_SIZE], usize) {
    let mut msg = [0u8; nvsp::GUEST_MESSAGE_SIZE];
    let body = Message1SendRndisPacket::new(nvsp::DATA_CHANNEL_TYPE, section, size);
    // 16 bytes into a 40-byte buffer cannot fail.
    let len = NvspMessage::SendRndisPacket(body)
        .emit(&mut msg, nvsp::GUEST_MESSAGE_SIZE)
        .unwrap_or(nvsp::GUEST_MESSAGE_SIZE);
    (msg, len)
}

impl TxState {
    pub(crate) fn new(max_frame: usize, copy_max: usize) -> Self {
        Self {
            session: None,
            sections: SlotTable::new(KIND_SECTION, 0),
            section_frames: 0,
            open: None,
            given_back: None,
            gpa: SlotTable::new(KIND_GPA, 0),
            max_frame,
            copy_max,
            pfns: Vec::with_capacity(8),
            gpa_taken: Vec::with_capacity(64),
            header: [0; MAX_HEADER + 8],
        }
    }

    /// Takes a session into use: sections `[base, base + count)` of `sendbuf`, GPA direct if
    /// the pool's bus addresses are readable by the host.
    pub(crate) fn install(
        &mut self,
        sendbuf: SharedMemory,
        section_size: usize,
        base: u32,
        count: usize,
        gpa_capable: bool,
        aggregation: Aggregation,
    ) {
        self.sections = SlotTable::new(KIND_SECTION, count);
        self.section_frames = 0;
        self.open = None;
        self.gpa = SlotTable::new(KIND_GPA, if gpa_capable { MAX_OUTSTANDING } else { 0 });
        self.session = Some(TxSession {
            sendbuf,
            section_size,
            section_base: base,
            gpa_capable,
            agg_packets: aggregation.max_packets.clamp(1, 64),
            // 8 bytes at least (a word: the copies stay word-aligned), a page at most.
            agg_align: 1 << aggregation.alignment_factor.clamp(3, 12),
        });
    }

    /// Drops the session; sends in flight (sections and GPA-direct packets) are freed and
    /// counted as failed: never completed, maybe sent.
    pub(crate) fn detach(&mut self, stats: &mut QueueStats) {
        self.session = None;
        self.open = None;
        self.sections.clear();
        stats.tx_failed += std::mem::take(&mut self.section_frames) + self.gpa.clear() as u64;
    }

    /// Sends (NVSP messages) outstanding now.
    pub(crate) fn outstanding(&self) -> usize {
        self.sections.in_use() + self.gpa.in_use()
    }

    /// Frames outstanding now (a section holds several).
    pub(crate) fn outstanding_frames(&self) -> usize {
        self.section_frames as usize + self.gpa.in_use()
    }

    /// A completion on this queue: frees the section or in-flight slot reserved under `tid`.
    pub(crate) fn complete(&mut self, tid: u64, payload: &[u8], stats: &mut QueueStats) {
        let frames = match kind_of(tid) {
            KIND_SECTION => self.sections.complete(tid).map(|(_, n)| {
                let n = u64::from(n.unwrap_or(0));
                self.section_frames -= n.min(self.section_frames);
                n
            }),
            // Dropping the packet returns its buffer to the pool.
            KIND_GPA => self.gpa.complete(tid).map(|_| 1),
            _ => None,
        };
        let Some(frames) = frames else {
            stats.unknown_completions += 1;
            return;
        };
        let status = nvsp::send_complete_status(payload).unwrap_or(nvsp::STATUS_NONE);
        if status != nvsp::STATUS_SUCCESS {
            stats.tx_failed += frames;
        }
    }

    /// Takes frames from the front of `frames` while they can be sent, stages them, and
    /// returns how many were taken (the caller publishes the ring). On a ring failure
    /// returns what was taken so far with the error.
    pub(crate) fn transmit(
        &mut self,
        ch: &mut ChannelIo,
        frames: &mut Vec<Packet>,
        stats: &mut QueueStats,
        pool: &Pool,
    ) -> Result<usize, (usize, RingError)> {
        if self.session.is_none() {
            return Ok(0);
        }
        let mut gpa_taken = std::mem::take(&mut self.gpa_taken);
        gpa_taken.clear();
        // Frames taken: `frames[..n]`.
        let mut n = 0;
        let mut failure = None;
        while n < frames.len() {
            let joined = self.join_run(&frames[n..]);
            if joined > 0 {
                n += joined;
                continue;
            }
            if self.outstanding() >= MAX_OUTSTANDING {
                stats.tx_quota_full += 1;
                break;
            }
            match self.send_one(ch, &mut frames[n], stats, pool, n) {
                Ok(Outcome::Section | Outcome::Dropped) => n += 1,
                // A section was opened for this frame, which `join_run` writes next (or, should
                // it not, `send_one` again, into the section now open).
                Ok(Outcome::Opened) => {}
                Ok(Outcome::Gpa(slot)) => {
                    gpa_taken.push((n, slot));
                    n += 1;
                }
                Ok(Outcome::Stop) => break,
                Ok(Outcome::GiveBack(first)) => {
                    n = first;
                    break;
                }
                Err(e) => {
                    if let Some(first) = self.given_back.take() {
                        n = first;
                    }
                    failure = Some(e);
                    break;
                }
            }
        }
        // The open section goes with this burst.
        match self.flush(ch, stats) {
            Ok(Outcome::GiveBack(first)) => n = first,
            Ok(_) => {}
            Err((first, e)) => {
                n = first;
                failure.get_or_insert(e);
            }
        }
        // A section given back always starts after the last GPA-direct frame (one is sent
        // only once the open section is), so none of those is ever given back.
        debug_assert!(gpa_taken.iter().all(|&(i, _)| i < n));
        // GPA-direct packets wait for their completions; the copied ones go back to their
        // pools, a lock per pool for the whole burst.
        if gpa_taken.is_empty() {
            packet::pool::free_bulk(frames.drain(..n));
        } else {
            let gpa = &mut self.gpa;
            let mut in_flight = gpa_taken.iter().peekable();
            packet::pool::free_bulk(frames.drain(..n).enumerate().filter_map(|(i, p)| {
                match in_flight.next_if(|&&(at, _)| at == i) {
                    Some(&(_, slot)) => {
                        gpa.fill(slot, p);
                        None
                    }
                    None => Some(p),
                }
            }));
        }
        self.gpa_taken = gpa_taken;
        match failure {
            Some(e) => Err((n, e)),
            None => Ok(n),
        }
    }

    /// Sends the open section, if any. `GiveBack(first)` when the ring is full (its frames
    /// from `taken[first]` on are given back; the host is asked to signal room); an error
    /// with the same index when the ring is corrupt.
    fn flush(
        &mut self,
        ch: &mut ChannelIo,
        stats: &mut QueueStats,
    ) -> Result<Outcome, (usize, RingError)> {
        let Some(open) = self.open.take() else {
            return Ok(Outcome::Section);
        };
        let (msg, msg_len) = nvsp_send(open.section, open.used as u32);
        let packet = OutgoingPacket {
            kind: OutgoingKind::InBand,
            transaction_id: open.tid,
            completion_requested: true,
            payload: &msg[..msg_len],
        };
        match ch.out.stage(&packet) {
            Ok(()) => {
                self.sections.fill(open.slot, open.packets);
                self.section_frames += u64::from(open.packets);
                stats.tx_send_buffer += u64::from(open.packets);
                stats.tx_packets += u64::from(open.packets);
                stats.tx_bytes += open.bytes;
                Ok(Outcome::Section)
            }
            Err(e) => {
                self.sections.release(open.slot);
                match ring_refused(ch, e, stats) {
                    Ok(Outcome::Stop) => Ok(Outcome::GiveBack(open.first_taken)),
                    // Refused for this message alone: its frames are taken and lost.
                    Ok(_) => {
                        stats.tx_dropped += u64::from(open.packets);
                        Ok(Outcome::Section)
                    }
                    Err(e) => Err((open.first_taken, e)),
                }
            }
        }
    }

    /// Sends the open section before a frame that will not join it; `None` when the burst
    /// goes on, else what `send_one` returns.
    fn flush_before(
        &mut self,
        ch: &mut ChannelIo,
        stats: &mut QueueStats,
    ) -> Option<Result<Outcome, RingError>> {
        match self.flush(ch, stats) {
            Ok(Outcome::GiveBack(first)) => Some(Ok(Outcome::GiveBack(first))),
            Ok(_) => None,
            Err((first, e)) => {
                // The caller stops at the error; the section's frames were not taken.
                self.given_back = Some(first);
                Some(Err(e))
            }
        }
    }

    /// The common frames in a few steps: writes the leading frames of `frames` that are
    /// untagged, short enough to be copied and have room in the section this burst has open,
    /// and returns how many (0 leaves the first to [`send_one`](Self::send_one)). The
    /// session's limits are read once per run, not once per frame.
    #[inline]
    fn join_run(&mut self, frames: &[Packet]) -> usize {
        let (Some(session), Some(open)) = (&self.session, self.open.as_mut()) else {
            return 0;
        };
        let copy_limit = self.copy_max.min(self.max_frame);
        let align = session.agg_align - 1;
        let room = session.agg_packets.saturating_sub(open.packets) as usize;
        if room == 0 {
            return 0;
        }
        let start = open.section as usize * session.section_size;
        // The section's words, when it lies on words (else the general copy, `append`).
        let Ok(section) = session.sendbuf.atomic_u64s(start, session.section_size / 8) else {
            return 0;
        };
        // `used` stays a multiple of the alignment (at least a word).
        let (mut used, mut bytes, mut n) = (open.used, 0u64, 0usize);
        for p in &frames[..frames.len().min(room)] {
            let len = p.len();
            if p.meta.vlan_tci.is_some() || len == 0 || len > copy_limit {
                break;
            }
            let padded = (rndis::PACKET_MESSAGE_SIZE + len + align) & !align;
            let Some(words) = section.get(used / 8..(used + padded) / 8) else {
                break;
            };
            write_plain_message(words, p.data_and_tailroom(), len);
            used += padded;
            bytes += len as u64;
            n += 1;
        }
        open.used = used;
        open.packets += n as u32;
        open.bytes += bytes;
        n
    }

    fn send_one(
        &mut self,
        ch: &mut ChannelIo,
        p: &mut Packet,
        stats: &mut QueueStats,
        pool: &Pool,
        index: usize,
    ) -> Result<Outcome, RingError> {
        let Some(session) = &self.session else {
            return Ok(Outcome::Stop);
        };
        let len = p.len();
        if len == 0 || len > self.max_frame {
            if let Some(out) = self.flush_before(ch, stats) {
                return out;
            }
            stats.tx_dropped += 1;
            return Ok(Outcome::Dropped);
        }
        // Per-packet information only for a tagged frame: the common frame has none.
        let info = p.meta.vlan_tci.map(|tci| PacketInfo {
            ieee8021q: Some(Ieee8021QInfo::from_tci(tci)),
            ..PacketInfo::default()
        });
        let header_len = info
            .as_ref()
            .map_or(rndis::PACKET_MESSAGE_SIZE, rndis::packet_header_len);
        // What the message takes in a section, padded to the host's alignment.
        let padded = (header_len + len + session.agg_align - 1) & !(session.agg_align - 1);
        let fits_section = padded <= session.section_size;
        let gpa_ok = session.gpa_capable && p.is_from(pool) && p.headroom() >= header_len;
        if fits_section && (len <= self.copy_max || !gpa_ok) {
            // Into the open section if it has room, else into a new one.
            let (agg_packets, section_size) = (session.agg_packets, session.section_size);
            let joins = self
                .open
                .as_ref()
                .is_some_and(|o| o.packets < agg_packets && o.used + padded <= section_size);
            if !joins {
                if let Some(out) = self.flush_before(ch, stats) {
                    return out;
                }
                match self.sections.reserve() {
                    Some((slot, tid)) => {
                        let section = self.session.as_ref().map_or(0, |s| s.section_base) + slot;
                        self.open = Some(OpenSection {
                            slot,
                            tid,
                            section,
                            used: 0,
                            packets: 0,
                            bytes: 0,
                            first_taken: index,
                        });
                        if info.is_none() {
                            // The burst's run of plain frames starts here (`join_run`).
                            return Ok(Outcome::Opened);
                        }
                    }
                    None => {
                        stats.tx_no_section += 1;
                        if !gpa_ok {
                            return Ok(Outcome::Stop);
                        }
                    }
                }
            }
            if self.open.is_some() {
                return Ok(self.append(p, info.as_ref(), padded, stats));
            }
        }
        if let Some(out) = self.flush_before(ch, stats) {
            return out;
        }
        if !gpa_ok {
            stats.tx_dropped += 1;
            return Ok(Outcome::Dropped);
        }
        let info = info.unwrap_or_default();
        self.send_gpa(ch, p, &info, header_len, stats)
    }

    /// Writes `p` with its RNDIS header (`info`'s PPIs, none if `None`) into the open section,
    /// which has room for the `padded` bytes the message takes there.
    fn append(
        &mut self,
        p: &Packet,
        info: Option<&PacketInfo>,
        padded: usize,
        stats: &mut QueueStats,
    ) -> Outcome {
        let (Some(session), Some(open)) = (&self.session, self.open.as_mut()) else {
            return Outcome::Stop;
        };
        let len = p.len();
        let header = match info {
            None => self
                .header
                .first_chunk_mut::<{ rndis::PACKET_MESSAGE_SIZE }>()
                .map(|h| rndis::write_plain_packet_header(h, padded as u32, len as u32)),
            Some(info) => rndis::write_packet_header(&mut self.header[..MAX_HEADER], len, info)
                .ok()
                .inspect(|_| {
                    // The message covers its padding.
                    self.header[4..8].copy_from_slice(&(padded as u32).to_le_bytes())
                }),
        };
        let offset = open.section as usize * session.section_size + open.used;
        let written = header.and_then(|h| {
            let data = p.data();
            // The frame's first bytes complete the header's last word; the rest of the frame
            // then starts on a word, and its last word is written whole, padding included.
            let k = (h.next_multiple_of(8) - h).min(len);
            self.header[h..h + k].copy_from_slice(&data[..k]);
            session
                .sendbuf
                .write_padded_pair(offset, &self.header[..h + k], &data[k..], padded)
                .ok()
        });
        if written.is_none() {
            stats.tx_dropped += 1;
            return Outcome::Dropped;
        }
        open.used += padded;
        open.packets += 1;
        open.bytes += len as u64;
        Outcome::Section
    }

    fn send_gpa(
        &mut self,
        ch: &mut ChannelIo,
        p: &mut Packet,
        info: &PacketInfo,
        header_len: usize,
        stats: &mut QueueStats,
    ) -> Result<Outcome, RingError> {
        let Some((slot, tid)) = self.gpa.reserve() else {
            stats.tx_quota_full += 1;
            return Ok(Outcome::Stop);
        };
        let len = p.len();
        let Some(head) = p.push_head(header_len) else {
            self.gpa.release(slot);
            stats.tx_dropped += 1;
            return Ok(Outcome::Dropped);
        };
        if rndis::write_packet_header(head, len, info).is_err() {
            p.pull_head(header_len);
            self.gpa.release(slot);
            stats.tx_dropped += 1;
            return Ok(Outcome::Dropped);
        }
        let range = GpaRange::contiguous(p.bus_addr(), (header_len + len) as u32, &mut self.pfns);
        let (msg, msg_len) = nvsp_send(nvsp::NO_SEND_SECTION, 0);
        let ranges = [range];
        let packet = OutgoingPacket {
            kind: OutgoingKind::GpaDirect { ranges: &ranges },
            transaction_id: tid,
            completion_requested: true,
            payload: &msg[..msg_len],
        };
        match ch.out.stage(&packet) {
            Ok(()) => {
                stats.tx_gpa_direct += 1;
                stats.tx_packets += 1;
                stats.tx_bytes += len as u64;
                Ok(Outcome::Gpa(slot))
            }
            Err(e) => {
                p.pull_head(header_len);
                self.gpa.release(slot);
                ring_refused(ch, e, stats)
            }
        }
    }
}

/// Writes an untagged RNDIS PACKET for the frame of `len` bytes at the start of `src` into
/// `words` (a message of `8 * words.len()` bytes, at least the header and the frame): the
/// header built in registers, the frame in whole words, the padding zeroed. Every word is one
/// store; the bytes are those [`rndis::write_plain_packet_header`] and the frame copy would
/// write. When `src` holds 8 readable bytes past the frame (its buffer's tailroom), the frame's
/// last word is read whole and masked, else assembled from the bytes that are there.
#[inline(always)]
fn write_plain_message(words: &[AtomicU64], src: &[u8], len: usize) {
    if len > LONG_FRAME {
        write_long_message(words, src, len);
    } else {
        write_message::<false>(words, src, len);
    }
}

/// [`write_plain_message`] of a frame longer than [`LONG_FRAME`]: the frame copied four words
/// a step, out of line (so that the short frames' code stays as small as it is).
#[inline(never)]
fn write_long_message(words: &[AtomicU64], src: &[u8], len: usize) {
    write_message::<true>(words, src, len);
}

/// [`write_plain_message`]; `LONG` picks the frame copy (four words a step, or one).
#[inline(always)]
fn write_message<const LONG: bool>(words: &[AtomicU64], src: &[u8], len: usize) {
    // Two little-endian u32 fields as the word that holds them.
    let pair = |low: u32, high: u32| (u64::from(low) | u64::from(high) << 32).to_le();
    let store = |word: &AtomicU64, value: u64| word.store(value, Ordering::Relaxed);
    let Some((head, body)) = words.split_first_chunk::<6>() else {
        return;
    };
    let data_offset = (rndis::PACKET_MESSAGE_SIZE - rndis::MESSAGE_HEADER_SIZE) as u32;
    store(
        &head[0],
        pair(rndis::MESSAGE_TYPE_PACKET_MSG, (words.len() * 8) as u32),
    );
    store(&head[1], pair(data_offset, len as u32));
    // OOB and PPI offsets and lengths, the VC handle: zero.
    store(&head[2], 0);
    store(&head[3], 0);
    store(&head[4], 0);
    // The reserved field ends the header; the frame's first 4 bytes complete its word, and
    // from byte 4 on the frame fills whole words. `n` words hold frame bytes after the header.
    let n = (len + 3) / 8;
    // The frame and a word past its end to read from: each word is one load, the last one
    // masked to the frame's end.
    let window = 4 + 8 * n;
    match src
        .get(..window.max(8))
        .filter(|_| len >= 4 && n <= body.len())
    {
        Some(src) => {
            store(
                &head[5],
                pair(0, u32::from_le_bytes([src[0], src[1], src[2], src[3]])),
            );
            // The bytes of the last word past the frame: `window - len` (0 to 7).
            let mask = u64::MAX >> ((window - len) * 8);
            let (frame_words, padding) = body.split_at(n);
            let mut chunks = src[4..window].chunks_exact(8);
            if let Some((last, full)) = frame_words.split_last() {
                if LONG {
                    copy_words(full, &src[4..window - 8]);
                    chunks = src[window - 8..window].chunks_exact(8);
                } else {
                    for (word, chunk) in full.iter().zip(chunks.by_ref()) {
                        store(
                            word,
                            u64::from_le_bytes(chunk.try_into().unwrap_or_default()),
                        );
                    }
                }
                let chunk = chunks.next().unwrap_or_default();
                let value = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                store(last, value & mask);
            }
            for word in padding {
                store(word, 0);
            }
        }
        None => write_plain_tail(head, body, src.get(..len).unwrap_or_default()),
    }
}

/// Frames longer than this are copied four words a step ([`copy_words`]); below it, one a
/// step costs fewer instructions in all.
const LONG_FRAME: usize = 128;

/// Stores `src` (8 bytes per word of `dst`) into `dst`, four words a step and then one at a
/// time: a frame of 1,500 bytes is 187 words, and the loop's own instructions count.
#[inline(never)]
fn copy_words(dst: &[AtomicU64], src: &[u8]) {
    let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    let store = |dst: &AtomicU64, value: u64| dst.store(value, Ordering::Relaxed);
    let (dst4, dst1) = dst.split_at(dst.len() / 4 * 4);
    let (src4, src1) = src.split_at((dst4.len() * 8).min(src.len()));
    for (d, s) in dst4.chunks_exact(4).zip(src4.chunks_exact(32)) {
        store(&d[0], word(&s[..8]));
        store(&d[1], word(&s[8..16]));
        store(&d[2], word(&s[16..24]));
        store(&d[3], word(&s[24..]));
    }
    for (d, s) in dst1.iter().zip(src1.chunks_exact(8)) {
        store(d, word(s));
    }
}

/// The frame's part of [`write_plain_message`] from the frame's bytes alone (a frame shorter
/// than 4 bytes, or one that ends less than a word before its buffer does).
#[cold]
fn write_plain_tail(head: &[AtomicU64; 6], body: &[AtomicU64], frame: &[u8]) {
    let store = |word: &AtomicU64, value: u64| word.store(value, Ordering::Relaxed);
    let (first, rest) = frame.split_at(frame.len().min(4));
    store(&head[5], (little_endian(first) << 32).to_le());
    let (chunks, tail) = rest.as_chunks::<8>();
    let (whole, after) = body.split_at(chunks.len().min(body.len()));
    for (word, chunk) in whole.iter().zip(chunks) {
        store(word, u64::from_le_bytes(*chunk).to_le());
    }
    let mut after = after.iter();
    if !tail.is_empty()
        && let Some(word) = after.next()
    {
        store(word, little_endian(tail).to_le());
    }
    for word in after {
        store(word, 0);
    }
}

/// Up to 8 bytes as a little-endian value (byte `i` in bits `8 * i`), in at most three
/// fixed-size reads rather than a copy of variable length.
#[inline]
fn little_endian(bytes: &[u8]) -> u64 {
    let (mut value, mut at) = (0u64, 0usize);
    if let Some(word) = bytes.first_chunk::<8>() {
        return u64::from_le_bytes(*word);
    }
    if let Some(four) = bytes.first_chunk::<4>() {
        value = u64::from(u32::from_le_bytes(*four));
        at = 4;
    }
    if let Some(two) = bytes.get(at..).and_then(|b| b.first_chunk::<2>()) {
        value |= u64::from(u16::from_le_bytes(*two)) << (8 * at);
        at += 2;
    }
    if let Some(&one) = bytes.get(at) {
        value |= u64::from(one) << (8 * at);
    }
    value
}

/// A stage that failed: a full ring stops the burst (and asks the host to signal when there
/// is room); a corrupt ring is the caller's error; anything else drops this one frame.
fn ring_refused(
    ch: &mut ChannelIo,
    error: RingError,
    stats: &mut QueueStats,
) -> Result<Outcome, RingError> {
    match error {
        RingError::Full { needed, .. } => {
            stats.tx_ring_full += 1;
            ch.out.request_space(needed)?;
            Ok(Outcome::Stop)
        }
        e @ RingError::Corrupt { .. } => Err(e),
        _ => {
            stats.tx_dropped += 1;
            Ok(Outcome::Dropped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_message_in_words_is_the_header_the_frame_and_zeros() {
        let mem = SharedMemory::anonymous(4096).unwrap();
        for len in (1..=80usize).chain(120..=140).chain([300, 1514]) {
            for align in [8usize, 64] {
                let padded = (rndis::PACKET_MESSAGE_SIZE + len).next_multiple_of(align);
                mem.fill(0, 4096, 0xEE).unwrap();
                let frame: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ 0x5A).collect();
                // With 8 bytes of garbage after the frame (a buffer's tailroom), and without.
                let tailroom = if len % 2 == 0 { 8 } else { 0 };
                let src = [&frame[..], &[0xA5; 8][..tailroom]].concat();
                write_plain_message(mem.atomic_u64s(64, padded / 8).unwrap(), &src, len);
                let mut want = vec![0u8; padded];
                let head = want
                    .first_chunk_mut::<{ rndis::PACKET_MESSAGE_SIZE }>()
                    .unwrap();
                rndis::write_plain_packet_header(head, padded as u32, len as u32);
                want[rndis::PACKET_MESSAGE_SIZE..][..len].copy_from_slice(&frame);
                let mut got = vec![0u8; padded + 16];
                mem.read(56, &mut got).unwrap();
                assert_eq!(&got[..8], &[0xEE; 8], "nothing before the message");
                assert_eq!(
                    &got[8..8 + padded],
                    &want[..],
                    "frame of {len}, aligned {align}"
                );
                assert_eq!(&got[8 + padded..], &[0xEE; 8], "nothing after the message");
            }
        }
    }

    #[test]
    fn little_endian_reads_any_short_tail() {
        let bytes = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        for n in 0..=8 {
            let mut word = [0u8; 8];
            word[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(
                little_endian(&bytes[..n]),
                u64::from_le_bytes(word),
                "{n} bytes"
            );
        }
    }
}
