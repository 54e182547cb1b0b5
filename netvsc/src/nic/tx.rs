//! Transmit: send-buffer sections and GPA-direct sends of one queue.
//!
//! Each frame is framed as an RNDIS PACKET (44-byte header, plus an 802.1Q PPI when
//! `meta.vlan_tci` is set) inside NVSP 107 with completion requested:
//!
//! - **Section copy**: header and frame are copied into a free section of the send buffer and
//!   an in-band packet names the section; the pool buffer is released at once. Sections are
//!   partitioned per queue (`[base, base + count)`, no cross-queue lock); a section is owned by
//!   the host until the completion that carries its tid.
//! - **GPA direct**: the header is pushed into the packet's headroom and one GPA range covers
//!   header and frame (the pool buffer is contiguous in bus addresses); the packet is held in
//!   the in-flight table until its completion.
//!
//! Invariants: at most [`MAX_OUTSTANDING`] sends per channel are outstanding (the host stops
//! reading beyond 1024); every frame `transmit` takes is sent or counted in `tx_dropped`; a
//! completion frees exactly the slot reserved under its tid (a stale or duplicate tid matches
//! nothing and is counted in `unknown_completions`); a status other than success counts
//! `tx_failed` and frees the resources all the same.

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
}

/// What happened to one frame.
enum Outcome {
    Section,
    Gpa(u32),
    Dropped,
    /// Not taken: the burst stops here.
    Stop,
}

/// Transmit state of one queue.
#[derive(Debug)]
pub(crate) struct TxState {
    session: Option<TxSession>,
    sections: SlotTable<()>,
    gpa: SlotTable<Packet>,
    max_frame: usize,
    copy_max: usize,
    pfns: Vec<u64>,
    taken: Vec<Option<u32>>,
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
            gpa: SlotTable::new(KIND_GPA, 0),
            max_frame,
            copy_max,
            pfns: Vec::with_capacity(8),
            taken: Vec::with_capacity(64),
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
    ) {
        self.sections = SlotTable::new(KIND_SECTION, count);
        self.gpa = SlotTable::new(KIND_GPA, if gpa_capable { MAX_OUTSTANDING } else { 0 });
        self.session = Some(TxSession {
            sendbuf,
            section_size,
            section_base: base,
            gpa_capable,
        });
    }

    /// Drops the session; sends in flight (sections and GPA-direct packets) are freed and
    /// counted as failed: never completed, maybe sent.
    pub(crate) fn detach(&mut self, stats: &mut QueueStats) {
        self.session = None;
        stats.tx_failed += (self.sections.clear() + self.gpa.clear()) as u64;
    }

    /// Sends outstanding now.
    pub(crate) fn outstanding(&self) -> usize {
        self.sections.in_use() + self.gpa.in_use()
    }

    /// A completion on this queue: frees the section or in-flight slot reserved under `tid`.
    pub(crate) fn complete(&mut self, tid: u64, payload: &[u8], stats: &mut QueueStats) {
        let found = match kind_of(tid) {
            KIND_SECTION => self.sections.complete(tid).is_some(),
            // Dropping the packet returns its buffer to the pool.
            KIND_GPA => self.gpa.complete(tid).is_some(),
            _ => false,
        };
        if !found {
            stats.unknown_completions += 1;
            return;
        }
        let status = match NvspMessage::parse(payload) {
            Ok(NvspMessage::SendRndisPacketComplete(m)) => m.status.get(),
            _ => nvsp::STATUS_NONE,
        };
        if status != nvsp::STATUS_SUCCESS {
            stats.tx_failed += 1;
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
        let mut taken = std::mem::take(&mut self.taken);
        taken.clear();
        let mut failure = None;
        for p in frames.iter_mut() {
            if self.outstanding() >= MAX_OUTSTANDING {
                stats.tx_quota_full += 1;
                break;
            }
            match self.send_one(ch, p, stats, pool) {
                Ok(Outcome::Section | Outcome::Dropped) => taken.push(None),
                Ok(Outcome::Gpa(slot)) => taken.push(Some(slot)),
                Ok(Outcome::Stop) => break,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let n = taken.len();
        for (p, slot) in frames.drain(..n).zip(taken.iter()) {
            if let Some(slot) = *slot {
                self.gpa.fill(slot, p);
            }
        }
        self.taken = taken;
        match failure {
            Some(e) => Err((n, e)),
            None => Ok(n),
        }
    }

    fn send_one(
        &mut self,
        ch: &mut ChannelIo,
        p: &mut Packet,
        stats: &mut QueueStats,
        pool: &Pool,
    ) -> Result<Outcome, RingError> {
        let Some(session) = &self.session else {
            return Ok(Outcome::Stop);
        };
        let len = p.len();
        if len == 0 || len > self.max_frame {
            stats.tx_dropped += 1;
            return Ok(Outcome::Dropped);
        }
        let info = PacketInfo {
            ieee8021q: p.meta.vlan_tci.map(Ieee8021QInfo::from_tci),
            ..PacketInfo::default()
        };
        let header_len = rndis::packet_header_len(&info);
        let fits_section = header_len + len <= session.section_size;
        let gpa_ok = session.gpa_capable && p.is_from(pool) && p.headroom() >= header_len;
        if fits_section && (len <= self.copy_max || !gpa_ok) {
            match self.sections.reserve() {
                Some((slot, tid)) => return self.send_section(ch, p, &info, slot, tid, stats),
                None => {
                    stats.tx_no_section += 1;
                    if !gpa_ok {
                        return Ok(Outcome::Stop);
                    }
                }
            }
        }
        if !gpa_ok {
            stats.tx_dropped += 1;
            return Ok(Outcome::Dropped);
        }
        self.send_gpa(ch, p, &info, header_len, stats)
    }

    fn send_section(
        &mut self,
        ch: &mut ChannelIo,
        p: &Packet,
        info: &PacketInfo,
        slot: u32,
        tid: u64,
        stats: &mut QueueStats,
    ) -> Result<Outcome, RingError> {
        let Some(session) = &self.session else {
            return Ok(Outcome::Stop);
        };
        let len = p.len();
        let section = session.section_base + slot;
        let offset = section as usize * session.section_size;
        let written = rndis::write_packet_header(&mut self.header[..MAX_HEADER], len, info)
            .ok()
            .and_then(|h| {
                let data = p.data();
                // Frame bytes that complete the header's last word.
                let k = ((offset + h).next_multiple_of(8) - (offset + h)).min(len);
                self.header[h..h + k].copy_from_slice(&data[..k]);
                session.sendbuf.write(offset, &self.header[..h + k]).ok()?;
                session.sendbuf.write(offset + h + k, &data[k..]).ok()?;
                Some(h + len)
            });
        let Some(size) = written else {
            self.sections.release(slot);
            stats.tx_dropped += 1;
            return Ok(Outcome::Dropped);
        };
        let (msg, msg_len) = nvsp_send(section, size as u32);
        let packet = OutgoingPacket {
            kind: OutgoingKind::InBand,
            transaction_id: tid,
            completion_requested: true,
            payload: &msg[..msg_len],
        };
        match ch.out.stage(&packet) {
            Ok(()) => {
                stats.tx_send_buffer += 1;
                stats.tx_packets += 1;
                stats.tx_bytes += len as u64;
                Ok(Outcome::Section)
            }
            Err(e) => {
                self.sections.release(slot);
                ring_refused(ch, e, stats)
            }
        }
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
