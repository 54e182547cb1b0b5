//! VMBus ring buffers: one producer and one consumer sharing a header page and a data area.
//!
//! A ring is one [`SharedMemory`] region: a 4096-byte header page, then a data area whose size
//! is a non-zero multiple of 4096. The same code serves both ends of a channel: the guest
//! writes its TX ring with an [`OutgoingRing`] and reads its RX ring with an [`IncomingRing`];
//! a (simulated) host does the opposite over the same memory. Nothing here knows which side it
//! is on.
//!
//! Header words (reached only as atomics; the peer writes concurrently):
//!
//! | offset | word | written by |
//! |---|---|---|
//! | 0 | `write_index` | producer |
//! | 4 | `read_index` | consumer |
//! | 8 | `interrupt_mask` (1 = consumer does not want signals) | consumer |
//! | 12 | `pending_send_sz` (bytes the blocked producer waits for) | producer |
//! | 64 | `feature_bits`, bit 0 = pending-send-size supported | producer at init |
//!
//! Invariants and lifecycle:
//! - Indices are byte offsets into the data area, 8-byte aligned and below its size; every
//!   index read from the peer is checked, and a bad one is [`RingError::Corrupt`] (sticky: the
//!   channel must be reopened), never a panic or an out-of-bounds access.
//! - A packet takes `length8 * 8 + 8` bytes (the trailer holds its start offset `<< 32`). The
//!   producer never fills the ring completely (full would look like empty): a write of `n`
//!   ring bytes needs `free > n`, where `free = size - used`; the largest packet is
//!   `size - 8` ring bytes.
//! - The producer stages packets at a local position and publishes `write_index` once per
//!   batch ([`OutgoingRing::commit`]); the consumer reads at a local position and publishes
//!   `read_index` once per batch ([`IncomingRing::commit`]). Both return whether the peer must
//!   be signalled; signalling is the caller's job (a [`Doorbell`](super::Doorbell) or the
//!   host's interrupt).
//! - Producer signal rule: signal only if the consumer's `interrupt_mask` is 0 and the ring was
//!   empty before the batch (the consumer's `read_index`, read after a full fence, equals the
//!   previously published `write_index`).
//! - Pending send size: a blocked producer calls [`OutgoingRing::request_space`]`(n)` for a
//!   packet of `n` ring bytes. It writes `P = n + 8`, so that "the consumer's free space
//!   reached P" (OpenVMM's rule `free >= P`, used by [`IncomingRing::commit`]) means exactly
//!   "the producer's `free > n` holds". A Linux-style consumer (`free > P`) then signals 8
//!   bytes later than strictly needed, which is harmless. The consumer signals only on
//!   the crossing (`free_before < P <= free_after`, low 3 bits of `P` masked) and only if
//!   feature bit 0 is set on that ring.
//! - A corrupt or malformed *packet* whose framing is sound (unknown type or flag, ranges past
//!   the payload offset) is consumed and reported as [`RingError::InvalidPacket`] with its
//!   transaction id, so the caller can count it, complete it if asked and go on.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

use packet::{MemError, PAGE_SIZE, SharedMemory};
use zerocopy::{FromBytes, IntoBytes};

use super::packet::{
    IncomingPacket, OutgoingKind, OutgoingPacket, PACKET_TRAILER_SIZE, PacketDescriptor,
    VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED, VMBUS_DATA_PACKET_KNOWN_FLAGS,
    VMBUS_PACKET_TYPE_COMPLETION,
};

/// Largest payload [`OutgoingRing::stage`] lays out on the stack and
/// [`IncomingRing::read_small_completion`] reads (an NVSP message is 40 bytes).
pub const SMALL_PAYLOAD: usize = 48;

/// What [`IncomingRing::read_small_completion`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peek {
    /// Nothing to read.
    Empty,
    /// A completion, read: its transaction id and where its payload lies in the caller's
    /// buffer.
    Completion {
        /// The transaction id it completes.
        transaction_id: u64,
        /// The payload's bytes in the buffer.
        payload: std::ops::Range<usize>,
    },
    /// Another packet (or one to refuse), left for [`IncomingRing::read`].
    Other,
}

/// Size of the ring header page (always 4 KiB, the Hyper-V page size).
pub const RING_HEADER_SIZE: usize = PAGE_SIZE;
/// Header offset of `write_index`.
pub const RING_WRITE_INDEX_OFFSET: usize = 0;
/// Header offset of `read_index`.
pub const RING_READ_INDEX_OFFSET: usize = 4;
/// Header offset of `interrupt_mask`.
pub const RING_INTERRUPT_MASK_OFFSET: usize = 8;
/// Header offset of `pending_send_sz`.
pub const RING_PENDING_SEND_SIZE_OFFSET: usize = 12;
/// Header offset of `feature_bits`.
pub const RING_FEATURE_BITS_OFFSET: usize = 64;
/// `feature_bits` bit 0: the ring's producer uses `pending_send_sz`.
pub const RING_FEATURE_PENDING_SEND_SIZE: u32 = 1;
/// Largest ring (header included) this code accepts; keeps index arithmetic in `u32`.
pub const MAX_RING_SIZE: usize = 1 << 30;

/// Errors of the ring layer.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The region cannot hold a ring.
    #[error("a ring region of {len:#x} bytes is invalid: {reason}")]
    InvalidMemory {
        /// Size of the region.
        len: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Not enough free space now; retry after the consumer frees some (see
    /// [`OutgoingRing::request_space`]).
    #[error("ring full: packet needs {needed} bytes, {free} free (must exceed the need)")]
    Full {
        /// Ring bytes the packet needs (packet plus trailer).
        needed: usize,
        /// Free bytes at the time of the attempt.
        free: usize,
    },
    /// The packet can never fit this ring.
    #[error("a packet of {needed} ring bytes can never fit a ring with {data_size} data bytes")]
    TooLarge {
        /// Ring bytes the packet needs.
        needed: usize,
        /// Size of the data area.
        data_size: usize,
    },
    /// The caller built a packet the wire format cannot express.
    #[error("outgoing packet is invalid: {0}")]
    InvalidOutgoing(&'static str),
    /// The peer broke the ring: its index or a packet's framing is impossible. Sticky: the
    /// channel must be reopened.
    #[error(
        "ring corrupt: {reason} (value {value:#x}, position {position:#x}, data size {data_size:#x})"
    )]
    Corrupt {
        /// What is wrong.
        reason: &'static str,
        /// The offending value (an index or a length).
        value: u32,
        /// The local read or write position at the time.
        position: u32,
        /// Size of the data area.
        data_size: u32,
    },
    /// A packet with sound framing but invalid content; it has been consumed.
    #[error("invalid packet (type {packet_type:#x}, transaction id {transaction_id:#x}): {reason}")]
    InvalidPacket {
        /// The packet type from the descriptor.
        packet_type: u16,
        /// The transaction id from the descriptor (complete it if the sender asked).
        transaction_id: u64,
        /// Whether the sender asked for a completion.
        completion_requested: bool,
        /// What is wrong.
        reason: &'static str,
    },
    /// A shared-memory access failed (cannot happen for a validated ring; kept typed).
    #[error("ring memory access failed")]
    Memory(#[from] MemError),
}

/// A validated ring region (header page plus data area) with its header words as atomics.
///
/// Cloning shares the memory. Both ring ends, tests and host models use it for raw header
/// access.
#[derive(Clone, Debug)]
pub struct RingMemory {
    mem: SharedMemory,
    data_size: u32,
}

impl RingMemory {
    /// Validates `mem` as a ring: a 4096-byte header then a non-zero data area that is a
    /// multiple of 4096 bytes, with 8-byte aligned header words.
    pub fn new(mem: SharedMemory) -> Result<Self, RingError> {
        let len = mem.len();
        let invalid = |reason| Err(RingError::InvalidMemory { len, reason });
        if len > MAX_RING_SIZE {
            return invalid("larger than 1 GiB");
        }
        if len <= RING_HEADER_SIZE {
            return invalid("no data area after the 4096-byte header");
        }
        if !len.is_multiple_of(PAGE_SIZE) {
            return invalid("data area is not a multiple of 4096 bytes");
        }
        // Alignment of the header words never changes afterwards, so checking it once lets
        // `word` assume it.
        if mem.atomic_u64(0).is_err() {
            return invalid("header is not 8-byte aligned");
        }
        Ok(Self {
            data_size: (len - RING_HEADER_SIZE) as u32,
            mem,
        })
    }

    /// The whole region (header and data).
    pub fn shared_memory(&self) -> &SharedMemory {
        &self.mem
    }

    /// Size of the data area in bytes.
    pub fn data_size(&self) -> usize {
        self.data_size as usize
    }

    fn word(&self, offset: usize) -> &AtomicU32 {
        self.mem
            .atomic_u32(offset)
            .expect("header words are in bounds and aligned: checked in RingMemory::new")
    }

    /// The `write_index` word.
    pub fn write_index(&self) -> &AtomicU32 {
        self.word(RING_WRITE_INDEX_OFFSET)
    }

    /// The `read_index` word.
    pub fn read_index(&self) -> &AtomicU32 {
        self.word(RING_READ_INDEX_OFFSET)
    }

    /// The `interrupt_mask` word.
    pub fn interrupt_mask(&self) -> &AtomicU32 {
        self.word(RING_INTERRUPT_MASK_OFFSET)
    }

    /// The `pending_send_sz` word.
    pub fn pending_send_size(&self) -> &AtomicU32 {
        self.word(RING_PENDING_SEND_SIZE_OFFSET)
    }

    /// The `feature_bits` word.
    pub fn feature_bits(&self) -> &AtomicU32 {
        self.word(RING_FEATURE_BITS_OFFSET)
    }

    /// Zeroes header and data: what a host does to a channel's rings when it (re)opens it. Only
    /// while neither end is using the ring.
    pub fn zero(&self) -> Result<(), RingError> {
        self.mem.fill(0, self.mem.len(), 0)?;
        Ok(())
    }

    /// Loads an index word and checks it: 8-byte aligned and inside the data area.
    fn load_index(
        &self,
        word: &AtomicU32,
        order: Ordering,
        position: u32,
    ) -> Result<u32, RingError> {
        let value = word.load(order);
        if !value.is_multiple_of(8) || value >= self.data_size {
            return Err(RingError::Corrupt {
                reason: "peer index unaligned or outside the data area",
                value,
                position,
                data_size: self.data_size,
            });
        }
        Ok(value)
    }

    /// Bytes between `from` and `to` going forward around the ring.
    fn distance(&self, from: u32, to: u32) -> u32 {
        (to + self.data_size - from) % self.data_size
    }

    /// Copies `buf.len()` bytes out of the data area at `pos`, wrapping at its end; returns the
    /// position after them.
    fn copy_out(&self, pos: u32, buf: &mut [u8]) -> Result<u32, RingError> {
        let (size, pos) = (self.data_size as usize, pos as usize);
        let first = buf.len().min(size.saturating_sub(pos));
        let (head, tail) = buf.split_at_mut(first);
        self.mem.read(RING_HEADER_SIZE + pos, head)?;
        if !tail.is_empty() {
            self.mem.read(RING_HEADER_SIZE, tail)?;
        }
        Ok(((pos + buf.len()) % size) as u32)
    }

    /// The `count` words of the data area at `pos` (a multiple of 8), when they lie before
    /// its end (no wrap).
    #[inline]
    fn words(&self, pos: u32, count: usize) -> Option<&[AtomicU64]> {
        let pos = pos as usize;
        (pos + 8 * count <= self.data_size as usize)
            .then(|| self.mem.atomic_u64s_or_none(RING_HEADER_SIZE + pos, count))
            .flatten()
    }

    /// Copies `buf` into the data area at `pos`, wrapping at its end; returns the position
    /// after it.
    fn copy_in(&self, pos: u32, buf: &[u8]) -> Result<u32, RingError> {
        let (size, pos) = (self.data_size as usize, pos as usize);
        let first = buf.len().min(size.saturating_sub(pos));
        let (head, tail) = buf.split_at(first);
        self.mem.write(RING_HEADER_SIZE + pos, head)?;
        if !tail.is_empty() {
            self.mem.write(RING_HEADER_SIZE, tail)?;
        }
        Ok(((pos + buf.len()) % size) as u32)
    }
}

/// The ring word that holds `chunk` (at most 8 bytes), zero-padded.
#[inline(always)]
fn word_of(chunk: &[u8]) -> u64 {
    match <[u8; 8]>::try_from(chunk) {
        Ok(bytes) => u64::from_ne_bytes(bytes),
        Err(_) => {
            let mut bytes = [0u8; 8];
            let n = chunk.len().min(8);
            bytes[..n].copy_from_slice(&chunk[..n]);
            u64::from_ne_bytes(bytes)
        }
    }
}

/// The producer end of a ring.
///
/// Lifecycle: [`new`](Self::new) over the ring memory (once per channel open); then any number
/// of [`stage`](Self::stage) calls followed by one [`commit`](Self::commit), or
/// [`write`](Self::write) for a single packet; signal the consumer when `commit` says so. When
/// a write fails with [`RingError::Full`], call [`request_space`](Self::request_space) and wait
/// for the consumer's signal (or poll).
#[derive(Debug)]
pub struct OutgoingRing {
    ring: RingMemory,
    /// `write_index` as last published.
    published: u32,
    /// Where the next staged packet goes.
    next: u32,
    /// Whether `pending_send_sz` holds our request.
    pending_requested: bool,
    /// Bytes known free after what is staged, as of the last `read_index` load (free space
    /// only grows as the consumer reads, so this is never more than what is free): a short
    /// packet that fits it is staged without another load.
    free_hint: usize,
    /// Descriptor and type-specific header of the packet being staged.
    scratch: Vec<u8>,
}

impl OutgoingRing {
    /// The producer over `mem`. With `init_header`, advertises pending-send-size support
    /// (sets feature bit 0) and clears `pending_send_sz`: the guest does this on the ring it
    /// sends on (its TX ring), the host on the guest's RX ring when it opens the channel.
    /// Resumes from the current `write_index` (0 on a freshly opened channel).
    pub fn new(mem: SharedMemory, init_header: bool) -> Result<Self, RingError> {
        let ring = RingMemory::new(mem)?;
        if init_header {
            ring.pending_send_size().store(0, Ordering::Relaxed);
            ring.feature_bits()
                .fetch_or(RING_FEATURE_PENDING_SEND_SIZE, Ordering::SeqCst);
        }
        let start = ring.load_index(ring.write_index(), Ordering::Acquire, 0)?;
        Ok(Self {
            ring,
            published: start,
            next: start,
            pending_requested: false,
            free_hint: 0,
            scratch: Vec::with_capacity(64),
        })
    }

    /// The ring memory (raw header access).
    pub fn memory(&self) -> &RingMemory {
        &self.ring
    }

    /// Writes one packet and publishes it; returns whether to signal the consumer.
    /// Anything staged before is published with it.
    pub fn write(&mut self, packet: &OutgoingPacket<'_>) -> Result<bool, RingError> {
        self.stage(packet)?;
        Ok(self.commit())
    }

    /// Copies one packet into the ring without publishing it (the consumer cannot see it until
    /// [`commit`](Self::commit)). On error nothing is written and earlier staged packets stay
    /// staged.
    pub fn stage(&mut self, packet: &OutgoingPacket<'_>) -> Result<(), RingError> {
        if matches!(packet.kind, OutgoingKind::InBand | OutgoingKind::Completion)
            && packet.payload.len() <= SMALL_PAYLOAD
        {
            return self.stage_small(packet);
        }
        packet.validate().map_err(RingError::InvalidOutgoing)?;
        let needed = packet.ring_len();
        let free = self.free_bytes()?;
        self.check_room(needed, free)?;
        let start = self.next;
        // The whole packet in one copy of whole words: descriptor and type-specific header,
        // payload, zero padding to 8 bytes, then the trailer (the packet's start offset << 32).
        packet.encode_header(&mut self.scratch);
        self.scratch.extend_from_slice(packet.payload);
        self.scratch.resize(needed - PACKET_TRAILER_SIZE, 0);
        self.scratch
            .extend_from_slice((u64::from(start) << 32).as_bytes());
        self.next = self.ring.copy_in(start, &self.scratch)?;
        self.free_hint = free - needed;
        if self.pending_requested {
            self.clear_pending_send_size();
        }
        Ok(())
    }

    /// `Ok` when a packet of `needed` ring bytes fits `free` (the ring is never filled
    /// completely); else [`RingError::Full`], or [`RingError::TooLarge`] for one that never fits.
    #[inline]
    fn check_room(&self, needed: usize, free: usize) -> Result<(), RingError> {
        if free > needed {
            return Ok(());
        }
        if needed + PACKET_TRAILER_SIZE > self.ring.data_size() {
            return Err(RingError::TooLarge {
                needed,
                data_size: self.ring.data_size(),
            });
        }
        Err(RingError::Full { needed, free })
    }

    /// [`stage`](Self::stage) of an in-band packet or a completion with a payload of at most
    /// [`SMALL_PAYLOAD`] bytes (the NVSP messages of the data path): the same bytes, stored a
    /// word at a time where the packet does not wrap, else laid out in a fixed buffer on the
    /// stack and copied (nothing to validate: its headers fit every field).
    fn stage_small(&mut self, packet: &OutgoingPacket<'_>) -> Result<(), RingError> {
        const DESC: usize = size_of::<PacketDescriptor>();
        let packet_len = (DESC + packet.payload.len()).next_multiple_of(8);
        let needed = packet_len + PACKET_TRAILER_SIZE;
        let free = if self.free_hint > needed {
            self.free_hint
        } else {
            self.free_bytes()?
        };
        self.check_room(needed, free)?;
        let start = self.next;
        let desc = PacketDescriptor {
            packet_type: packet.packet_type(),
            data_offset8: (DESC / 8) as u16,
            length8: (packet_len / 8) as u16,
            flags: if packet.completion_requested {
                VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED
            } else {
                0
            },
            transaction_id: packet.transaction_id,
        };
        let trailer = u64::from(start) << 32;
        if let Some([kind, tid, rest @ ..]) = self.ring.words(start, needed / 8) {
            // One store a word: the descriptor's two, the payload's (the last one zero-padded: `rest` holds
            // as many words, then the trailer's).
            let (desc_words, _) = desc.as_bytes().as_chunks::<8>();
            for (word, chunk) in [kind, tid].into_iter().zip(desc_words) {
                word.store(u64::from_ne_bytes(*chunk), Ordering::Relaxed);
            }
            let (full, tail) = packet.payload.as_chunks::<8>();
            for (word, chunk) in rest.iter().zip(full) {
                word.store(u64::from_ne_bytes(*chunk), Ordering::Relaxed);
            }
            if let (false, Some(word)) = (tail.is_empty(), rest.get(full.len())) {
                word.store(word_of(tail), Ordering::Relaxed);
            }
            if let Some(last) = rest.last() {
                last.store(trailer, Ordering::Relaxed);
            }
            self.next = ((start as usize + needed) % self.ring.data_size()) as u32;
        } else {
            let mut bytes = [0u8; DESC + SMALL_PAYLOAD + PACKET_TRAILER_SIZE];
            bytes[..DESC].copy_from_slice(desc.as_bytes());
            bytes[DESC..DESC + packet.payload.len()].copy_from_slice(packet.payload);
            bytes[packet_len..needed].copy_from_slice(trailer.as_bytes());
            self.next = self.ring.copy_in(start, &bytes[..needed])?;
        }
        self.free_hint = free - needed;
        if self.pending_requested {
            self.clear_pending_send_size();
        }
        Ok(())
    }

    /// Publishes every staged packet with one `write_index` store; returns whether to signal
    /// the consumer (its `interrupt_mask` is 0 and it had consumed everything published
    /// before this batch). Nothing staged: `false`.
    pub fn commit(&mut self) -> bool {
        if self.next == self.published {
            return false;
        }
        let before = self.published;
        // Release: the packet bytes and trailers copied in by `stage` are visible to a
        // consumer that loads this `write_index` with Acquire before it copies them out.
        self.ring.write_index().store(self.next, Ordering::Release);
        self.published = self.next;
        // Full fence: our `write_index` store must be ordered before the loads of the
        // consumer's `interrupt_mask` and `read_index` (store→load, which only SeqCst
        // orders). The consumer unmasks, fences, then re-reads `write_index`: one of the two
        // sides sees the other's store, so a wakeup is never lost.
        fence(Ordering::SeqCst);
        if self.ring.interrupt_mask().load(Ordering::Relaxed) != 0 {
            return false;
        }
        self.ring.read_index().load(Ordering::Relaxed) == before
    }

    /// Ring bytes staged but not yet committed.
    pub fn staged_bytes(&self) -> usize {
        self.ring.distance(self.published, self.next) as usize
    }

    /// Bytes in use (published or staged, not yet consumed), from the consumer's current
    /// `read_index`.
    pub fn used_bytes(&self) -> Result<usize, RingError> {
        // Acquire: pairs with the consumer's Release store of `read_index`; its copies out of
        // the space we may now reuse are complete.
        let read = self
            .ring
            .load_index(self.ring.read_index(), Ordering::Acquire, self.next)?;
        Ok(self.ring.distance(read, self.next) as usize)
    }

    /// `data size - used`; a packet of `n` ring bytes fits if this is greater than `n`.
    pub fn free_bytes(&self) -> Result<usize, RingError> {
        Ok(self.ring.data_size() - self.used_bytes()?)
    }

    /// Whether the consumer has consumed everything (published and staged).
    pub fn is_empty(&self) -> Result<bool, RingError> {
        Ok(self.used_bytes()? == 0)
    }

    /// Whether the consumer honours [`request_space`](Self::request_space) (feature bit 0 on
    /// this ring). If not, a blocked producer has to poll.
    pub fn consumer_signals_space(&self) -> bool {
        self.ring.feature_bits().load(Ordering::Relaxed) & RING_FEATURE_PENDING_SEND_SIZE != 0
    }

    /// For a producer blocked on a packet of `needed` ring bytes
    /// ([`RingError::Full::needed`](RingError::Full)): asks the consumer to signal once
    /// enough is free by writing `pending_send_sz = needed + 8` (see the module docs for why
    /// +8), then re-checks. Returns `true` if the space is already there (the request is
    /// withdrawn; retry the write now), `false` to wait for the consumer's signal. The request
    /// is withdrawn automatically by the next successful [`stage`](Self::stage).
    pub fn request_space(&mut self, needed: usize) -> Result<bool, RingError> {
        if needed + PACKET_TRAILER_SIZE > self.ring.data_size() {
            return Err(RingError::TooLarge {
                needed,
                data_size: self.ring.data_size(),
            });
        }
        self.ring
            .pending_send_size()
            .store((needed + PACKET_TRAILER_SIZE) as u32, Ordering::Relaxed);
        self.pending_requested = true;
        // Full fence: the `pending_send_sz` store must be ordered before our re-read of
        // `read_index`. The consumer stores `read_index`, fences, then reads
        // `pending_send_sz`: either it sees our request and signals, or we see its progress.
        fence(Ordering::SeqCst);
        if self.free_bytes()? > needed {
            self.clear_pending_send_size();
            return Ok(true);
        }
        Ok(false)
    }

    /// Withdraws a space request (writes `pending_send_sz = 0`).
    pub fn clear_pending_send_size(&mut self) {
        self.ring.pending_send_size().store(0, Ordering::Relaxed);
        self.pending_requested = false;
    }
}

/// The consumer end of a ring.
///
/// Lifecycle: [`new`](Self::new) over the ring memory (once per channel open); then
/// [`read`](Self::read) packets until it returns `Ok(false)`, and [`commit`](Self::commit) to
/// hand the space back (signal the producer when it says so). A consumer that sleeps between
/// bursts uses [`arm_interrupt`](Self::arm_interrupt) before sleeping; a polling one keeps
/// the interrupt masked ([`set_interrupt_mask`](Self::set_interrupt_mask)`(true)`).
#[derive(Debug)]
pub struct IncomingRing {
    ring: RingMemory,
    /// `read_index` as last published.
    published: u32,
    /// Where the next packet starts.
    next: u32,
}

impl IncomingRing {
    /// The consumer over `mem`, resuming from the current `read_index` (0 on a freshly opened
    /// channel). Leaves the header as it is.
    pub fn new(mem: SharedMemory) -> Result<Self, RingError> {
        let ring = RingMemory::new(mem)?;
        let start = ring.load_index(ring.read_index(), Ordering::Relaxed, 0)?;
        Ok(Self {
            ring,
            published: start,
            next: start,
        })
    }

    /// The ring memory (raw header access).
    pub fn memory(&self) -> &RingMemory {
        &self.ring
    }

    /// The next packet when it is a completion (type 0xB) of at most [`SMALL_PAYLOAD`] bytes
    /// of payload that does not wrap: read past as [`read`](Self::read) reads it, with its
    /// transaction id, and its payload copied into `payload` ([`Peek::Completion`] says where).
    /// Anything else is left unread for `read` ([`Peek::Other`]), which also reports every
    /// framing error: so is a packet this would refuse. The completions of a guest's sends
    /// are most of what its rings carry back; this reads one in a few loads.
    pub fn read_small_completion(
        &mut self,
        payload: &mut [u8; SMALL_PAYLOAD],
    ) -> Result<Peek, RingError> {
        // Acquire, as in `read`.
        let write = self
            .ring
            .load_index(self.ring.write_index(), Ordering::Acquire, self.next)?;
        if write == self.next {
            return Ok(Peek::Empty);
        }
        let available = self.ring.distance(self.next, write) as usize;
        const DESC: usize = size_of::<PacketDescriptor>();
        // The words of the longest packet this reads, in one look (words past a shorter
        // packet are loaded, never used); near the data area's end, `read`.
        let Some((desc_words, payload_words)) = self
            .ring
            .words(self.next, (DESC + SMALL_PAYLOAD) / 8)
            .and_then(|w| w.split_first_chunk::<{ DESC / 8 }>())
        else {
            return Ok(Peek::Other);
        };
        let mut desc_bytes = [0u8; DESC];
        for (chunk, word) in desc_bytes.chunks_exact_mut(8).zip(desc_words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        let Ok(desc) = PacketDescriptor::read_from_bytes(&desc_bytes) else {
            return Ok(Peek::Other);
        };
        let len = usize::from(desc.length8) * 8;
        let data_offset = usize::from(desc.data_offset8) * 8;
        // `read`'s checks, and this path's own limits.
        if desc.packet_type != VMBUS_PACKET_TYPE_COMPLETION
            || len < DESC
            || len - DESC > SMALL_PAYLOAD
            || len + PACKET_TRAILER_SIZE > available
            || data_offset < DESC
            || data_offset > len
            || desc.flags & !VMBUS_DATA_PACKET_KNOWN_FLAGS != 0
        {
            return Ok(Peek::Other);
        }
        let words = &payload_words[..(len - DESC) / 8];
        for (chunk, word) in payload.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes());
        }
        self.next =
            ((self.next as usize + len + PACKET_TRAILER_SIZE) % self.ring.data_size()) as u32;
        Ok(Peek::Completion {
            transaction_id: desc.transaction_id,
            payload: data_offset - DESC..len - DESC,
        })
    }

    /// Copies the next packet out of the ring into `packet` (once: descriptor, headers and
    /// payload), validates the copy and advances the local read position. `Ok(false)` if the
    /// ring is empty. The space is handed back to the producer only by
    /// [`commit`](Self::commit).
    ///
    /// Errors: [`RingError::Corrupt`] if the producer's index or the packet framing is
    /// impossible (nothing consumed; the channel must be reopened);
    /// [`RingError::InvalidPacket`] if the framing is sound but the content is not (the packet
    /// is consumed; `packet` holds no valid data).
    pub fn read(&mut self, packet: &mut IncomingPacket) -> Result<bool, RingError> {
        // Acquire: pairs with the producer's Release store, so the packet bytes before this
        // index are visible to the copies below.
        let write = self
            .ring
            .load_index(self.ring.write_index(), Ordering::Acquire, self.next)?;
        if write == self.next {
            return Ok(false);
        }
        let available = self.ring.distance(self.next, write) as usize;
        let corrupt = |reason, value| RingError::Corrupt {
            reason,
            value,
            position: self.next,
            data_size: self.ring.data_size,
        };
        if available < size_of::<PacketDescriptor>() + PACKET_TRAILER_SIZE {
            return Err(corrupt(
                "fewer bytes published than a descriptor and trailer",
                available as u32,
            ));
        }
        let mut desc_bytes = [0u8; size_of::<PacketDescriptor>()];
        // Two whole words where the descriptor does not wrap (it starts on a word: every
        // packet does), else a copy in two parts.
        let after_desc = match self.ring.words(self.next, 2) {
            Some([low, high]) => {
                desc_bytes[..8].copy_from_slice(&low.load(Ordering::Relaxed).to_ne_bytes());
                desc_bytes[8..].copy_from_slice(&high.load(Ordering::Relaxed).to_ne_bytes());
                (self.next + 16) % self.ring.data_size
            }
            _ => self.ring.copy_out(self.next, &mut desc_bytes)?,
        };
        let desc = PacketDescriptor::read_from_bytes(&desc_bytes).expect("exact size");
        let len = usize::from(desc.length8) * 8;
        if len + PACKET_TRAILER_SIZE > available {
            return Err(corrupt(
                "packet length past the write index",
                u32::from(desc.length8),
            ));
        }
        if desc.data_offset8 < 2 || desc.data_offset8 > desc.length8 {
            return Err(corrupt(
                "data offset outside the packet",
                u32::from(desc.data_offset8),
            ));
        }
        // One copy of the whole packet: the descriptor bytes already copied, then the rest.
        let raw = packet.raw_buffer(len);
        raw[..desc_bytes.len()].copy_from_slice(&desc_bytes);
        self.ring
            .copy_out(after_desc, &mut raw[desc_bytes.len()..])?;
        self.next =
            ((self.next as usize + len + PACKET_TRAILER_SIZE) % self.ring.data_size()) as u32;

        let invalid = |reason| RingError::InvalidPacket {
            packet_type: desc.packet_type,
            transaction_id: desc.transaction_id,
            completion_requested: desc.flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED != 0,
            reason,
        };
        if desc.flags & !VMBUS_DATA_PACKET_KNOWN_FLAGS != 0 {
            return Err(invalid("unknown flags"));
        }
        packet.parse(&desc).map_err(invalid)?;
        Ok(true)
    }

    /// Publishes the local read position with one `read_index` store, handing the space of
    /// every packet read since the last commit back to the producer. Returns whether to signal
    /// the producer: it asked for space (`pending_send_sz = P != 0`, feature bit 0 set on this
    /// ring) and the free space crossed `P & !7` in this commit (before `< P <=` after).
    pub fn commit(&mut self) -> bool {
        if self.next == self.published {
            return false;
        }
        let freed = self.ring.distance(self.published, self.next);
        // Release: our copies out of the consumed packets are complete before the producer
        // can see the space as free and overwrite it.
        self.ring.read_index().store(self.next, Ordering::Release);
        self.published = self.next;
        if self.ring.feature_bits().load(Ordering::Relaxed) & RING_FEATURE_PENDING_SEND_SIZE == 0 {
            return false;
        }
        // Full fence: the `read_index` store must be ordered before the load of
        // `pending_send_sz` (store→load). The producer stores `pending_send_sz`, fences, then
        // re-reads `read_index`: one side sees the other's store.
        fence(Ordering::SeqCst);
        let pending = self.ring.pending_send_size().load(Ordering::Relaxed) & !7;
        if pending == 0 {
            return false;
        }
        let Ok(write) = self
            .ring
            .load_index(self.ring.write_index(), Ordering::Acquire, self.next)
        else {
            // A corrupt producer index will fail the next read; a spurious signal is harmless.
            return true;
        };
        let free_after = self.ring.data_size - self.ring.distance(self.next, write);
        let free_before = free_after.saturating_sub(freed);
        free_before < pending && free_after >= pending
    }

    /// Sets or clears `interrupt_mask`: masked, the producer does not signal (polling mode).
    pub fn set_interrupt_mask(&self, masked: bool) {
        self.ring
            .interrupt_mask()
            .store(u32::from(masked), Ordering::SeqCst);
    }

    /// Unmasks the interrupt, then re-checks for data that arrived before the producer could
    /// see the unmask. Returns `true` if data is already there: keep reading instead of
    /// sleeping (the interrupt stays unmasked; a spurious signal may follow, which is
    /// harmless). A corrupt producer index also returns `true`, so the next read reports it.
    pub fn arm_interrupt(&self) -> bool {
        self.ring.interrupt_mask().store(0, Ordering::SeqCst);
        // Full fence: the unmask must be ordered before the re-read of `write_index`; pairs
        // with the producer's fence between publishing `write_index` and reading the mask.
        fence(Ordering::SeqCst);
        self.ring
            .load_index(self.ring.write_index(), Ordering::Acquire, self.next)
            .map_or(true, |write| write != self.next)
    }

    /// Bytes published by the producer and not yet read locally.
    pub fn available_bytes(&self) -> Result<usize, RingError> {
        let write = self
            .ring
            .load_index(self.ring.write_index(), Ordering::Acquire, self.next)?;
        Ok(self.ring.distance(self.next, write) as usize)
    }

    /// Whether there is nothing left to read.
    pub fn is_empty(&self) -> Result<bool, RingError> {
        Ok(self.available_bytes()? == 0)
    }

    /// Bytes read locally but not yet handed back by [`commit`](Self::commit).
    pub fn uncommitted_bytes(&self) -> usize {
        self.ring.distance(self.published, self.next) as usize
    }

    /// Whether there is nothing to read and nothing read is left to commit, in two loads
    /// (the poll of an idle queue). A corrupt `write_index` counts as something to read: the
    /// read then reports it.
    #[inline]
    pub fn is_idle(&self) -> bool {
        // Acquire, as in `read`: a packet published with this index is visible after it.
        self.next == self.published && self.ring.write_index().load(Ordering::Acquire) == self.next
    }
}
