//! A pool of fixed-size packet buffers and the RAII [`Packet`].
//!
//! A [`Pool`] cuts a [`SharedMemory`] region into `count` buffers of `buf_size` bytes. A
//! [`Packet`] owns one buffer exclusively until it is dropped, which returns the buffer to the
//! pool's free list, so a packet may be dropped on any thread. Each buffer keeps [`HEADROOM`]
//! bytes in front of the frame so that a driver can prepend its own header (the RNDIS packet
//! header, for instance) in place and hand header and frame to the peer as one range.
//!
//! The free list is a queue of buffer indices (oldest freed first) behind a lock held for a
//! few instructions: a push or a pop, or one copy for a whole batch. Drivers move buffers in
//! batches ([`Pool::alloc_bulk`], [`free_bulk`]): one lock per burst instead of one atomic
//! operation per frame. Invariant: every buffer index is either in the free list or owned by
//! exactly one `Packet`, never both; nothing that can panic runs while the lock is held, and a
//! packet is never dropped while it is.
//!
//! Buffers are contiguous in bus address space: in simulation the region is a memfd whose bus
//! address is its offset; on a real guest the pool is built on pinned hugepages and a buffer
//! never crosses one.
//!
//! This module opts in to `unsafe` for two things: handing out `&[u8]`/`&mut [u8]` over the
//! buffer a `Packet` exclusively owns, and moving the pool handle out of a packet that
//! [`free_bulk`] returns without running its `Drop`.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::fmt;
use std::mem::ManuallyDrop;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::mem::{MemError, SharedMemory};

/// Bytes reserved in front of every frame for headers a driver prepends.
pub const HEADROOM: usize = 128;

/// Per-packet metadata carried beside the frame (receive offload results, transmit requests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketMeta {
    /// 802.1Q tag control information, when the VLAN tag travels out of band.
    pub vlan_tci: Option<u16>,
    /// Receive-side hash delivered by the NIC.
    pub rss_hash: Option<u32>,
    /// Queue the packet was received on.
    pub queue: u16,
}

#[derive(Debug)]
struct PoolInner {
    mem: SharedMemory,
    buf_size: usize,
    count: usize,
    /// Indices of the free buffers, oldest freed first. Its capacity is `count`, so it never
    /// reallocates (each index is in it at most once).
    free: Mutex<VecDeque<u32>>,
}

impl PoolInner {
    /// The free list, locked.
    #[inline]
    fn free_list(&self) -> MutexGuard<'_, VecDeque<u32>> {
        // Nothing that can panic runs under this lock, so even a poisoned one guards a whole
        // list.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl PoolInner {
    /// Puts `indices` (of buffers no packet owns any more) back on the free list, under one
    /// lock.
    #[inline(never)]
    fn give_back(&self, indices: &[u32]) {
        self.free_list().extend(indices);
    }
}

/// Most indices [`free_bulk`] gathers before it takes a pool's lock, and most
/// [`Pool::alloc_bulk`] takes under it at once.
const FREE_RUN: usize = 64;

/// A fixed-size buffer pool in shared memory. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

impl Pool {
    /// Cuts `mem` into as many `buf_size`-byte buffers as fit. `buf_size` is rounded up to a
    /// multiple of 64 (a cache line) and must leave room for [`HEADROOM`] and one byte.
    pub fn new(mem: SharedMemory, buf_size: usize) -> Result<Self, MemError> {
        let buf_size = buf_size.next_multiple_of(64);
        if buf_size <= HEADROOM {
            return Err(MemError::OutOfBounds {
                offset: 0,
                len: HEADROOM + 1,
                size: buf_size,
            });
        }
        let count = (mem.len() / buf_size).min(u32::MAX as usize);
        if count == 0 {
            return Err(MemError::OutOfBounds {
                offset: 0,
                len: buf_size,
                size: mem.len(),
            });
        }
        let mut free = VecDeque::with_capacity(count);
        free.extend(0..count as u32);
        Ok(Self {
            inner: Arc::new(PoolInner {
                mem,
                buf_size,
                count,
                free: Mutex::new(free),
            }),
        })
    }

    /// A packet owning buffer `index`, empty, with the default headroom.
    #[inline]
    fn packet(&self, index: u32) -> Packet {
        Packet {
            pool: self.inner.clone(),
            index,
            head: HEADROOM as u32,
            len: 0,
            meta: PacketMeta::default(),
        }
    }

    /// Takes a free buffer, empty, with the default headroom. `None` when the pool is empty.
    #[inline]
    pub fn alloc(&self) -> Option<Packet> {
        let index = self.inner.free_list().pop_front()?;
        Some(self.packet(index))
    }

    /// Takes up to `n` free buffers at once and appends them to `out`, each empty with the
    /// default headroom, the way `n` calls to [`alloc`](Self::alloc) would, but under one
    /// lock. Returns how many: fewer than `n` only when the pool has fewer free buffers.
    pub fn alloc_bulk(&self, out: &mut Vec<Packet>, n: usize) -> usize {
        out.reserve(n);
        let mut taken = 0;
        while taken < n {
            // Indices are copied out under the lock, packets are made outside it.
            let mut indices = [0u32; FREE_RUN];
            let chunk = {
                let mut free = self.inner.free_list();
                let chunk = (n - taken).min(FREE_RUN).min(free.len());
                let (front, back) = free.as_slices();
                let from_front = chunk.min(front.len());
                indices[..from_front].copy_from_slice(&front[..from_front]);
                indices[from_front..chunk].copy_from_slice(&back[..chunk - from_front]);
                free.drain(..chunk);
                chunk
            };
            out.extend(indices[..chunk].iter().map(|&index| self.packet(index)));
            taken += chunk;
            if chunk < FREE_RUN {
                break;
            }
        }
        taken
    }

    /// Takes a buffer and copies `frame` into it. `None` when the pool is empty or the frame
    /// does not fit.
    pub fn alloc_from(&self, frame: &[u8]) -> Option<Packet> {
        if frame.len() > self.frame_capacity() {
            return None;
        }
        let mut p = self.alloc()?;
        p.set_len(frame.len());
        p.data_mut().copy_from_slice(frame);
        Some(p)
    }

    /// Largest frame a buffer holds after the headroom.
    #[inline]
    pub fn frame_capacity(&self) -> usize {
        self.inner.buf_size - HEADROOM
    }

    /// Size of every buffer, headroom included.
    #[inline]
    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// Number of buffers in the pool.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.inner.count
    }

    /// Number of buffers free right now.
    pub fn available(&self) -> usize {
        self.inner.free_list().len()
    }

    /// The region the pool is cut from.
    pub fn memory(&self) -> &SharedMemory {
        &self.inner.mem
    }
}

/// Returns the buffers of `packets` to their pools, as dropping each one would, but taking
/// a pool's lock once per run of up to 64 consecutive packets from that pool instead of once
/// per packet. Packets may come from any pools, in any order.
pub fn free_bulk<I: IntoIterator<Item = Packet>>(packets: I) {
    let mut packets = packets.into_iter();
    let Some(first) = packets.next() else {
        return;
    };
    // The pool of the current run, held so that it outlives the indices gathered for it.
    let (mut pool, index) = first.into_parts();
    let mut indices = [0u32; FREE_RUN];
    indices[0] = index;
    let mut len = 1;
    packets.for_each(|packet| {
        let (next, index) = packet.into_parts();
        if len < FREE_RUN && Arc::ptr_eq(&pool, &next) {
            // Another reference to the run's pool, which `pool` keeps alive.
            drop(next);
        } else {
            pool.give_back(&indices[..len]);
            pool = next;
            len = 0;
        }
        indices[len] = index;
        len += 1;
    });
    pool.give_back(&indices[..len]);
}

/// A frame in a pool buffer, owned exclusively; dropping it returns the buffer to the pool.
pub struct Packet {
    pool: Arc<PoolInner>,
    index: u32,
    head: u32,
    len: u32,
    /// Metadata carried beside the frame.
    pub meta: PacketMeta,
}

/// Why [`Packet::copy_from_words`] copied nothing: the words past the slice (`past_words`),
/// else the frame, rounded to words, past the buffer.
#[cold]
fn words_refused(past_words: bool, at: usize, len: usize, words: usize, room: usize) -> MemError {
    let (offset, size) = match past_words {
        true => (at, words * 8),
        false => (at % 8, room),
    };
    MemError::OutOfBounds { offset, len, size }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Packet")
            .field("index", &self.index)
            .field("head", &self.head)
            .field("len", &self.len)
            .field("meta", &self.meta)
            .finish()
    }
}

impl Packet {
    /// The pool handle and buffer index, without returning the buffer: the caller must.
    #[inline]
    fn into_parts(self) -> (Arc<PoolInner>, u32) {
        let this = ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped nor used again after this read, so the `Arc` is
        // moved out of it exactly once: its strong count is handed over, not duplicated, and
        // the other fields are plain integers.
        let pool = unsafe { std::ptr::read(&this.pool) };
        (pool, this.index)
    }

    #[inline]
    fn buf_offset(&self) -> usize {
        self.index as usize * self.pool.buf_size
    }

    /// Length of the frame.
    #[inline]
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the frame is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes in front of the frame that [`push_head`](Self::push_head) can claim.
    #[inline]
    pub fn headroom(&self) -> usize {
        self.head as usize
    }

    /// Largest frame length this buffer allows at the current head.
    #[inline]
    pub fn max_len(&self) -> usize {
        self.pool.buf_size - self.head as usize
    }

    /// Sets the frame length (bytes past the old length are whatever the buffer held).
    ///
    /// # Panics
    /// If `len` exceeds [`max_len`](Self::max_len): a caller bug, not a data condition.
    #[inline]
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.max_len(), "packet length {len} exceeds buffer");
        self.len = len as u32;
    }

    /// Extends the frame `n` bytes toward the buffer start and returns the new leading bytes.
    /// `None` when the headroom is smaller than `n`.
    #[inline]
    pub fn push_head(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.head as usize {
            return None;
        }
        self.head -= n as u32;
        self.len += n as u32;
        Some(&mut self.data_mut()[..n])
    }

    /// Removes `n` leading bytes from the frame (e.g. a header that was parsed).
    #[inline]
    pub fn pull_head(&mut self, n: usize) -> bool {
        if n > self.len as usize {
            return false;
        }
        self.head += n as u32;
        self.len -= n as u32;
        true
    }

    /// Resets the frame to empty with the default headroom.
    #[inline]
    pub fn reset(&mut self) {
        self.head = HEADROOM as u32;
        self.len = 0;
        self.meta = PacketMeta::default();
    }

    /// The frame bytes.
    #[inline]
    pub fn data(&self) -> &[u8] {
        // SAFETY: this Packet exclusively owns its buffer; while a `&self` borrow lives nobody
        // writes it (a peer only touches it while the driver has handed its bus address out,
        // which requires `&mut self` or ownership). Bounds: head + len <= buf_size.
        unsafe {
            self.pool
                .mem
                .slice(self.buf_offset() + self.head as usize, self.len as usize)
        }
    }

    /// The frame bytes followed by the rest of the buffer (its tailroom, bytes of no meaning:
    /// there to read whole words past the frame's end instead of assembling the last one).
    #[inline]
    pub fn data_and_tailroom(&self) -> &[u8] {
        let (start, len) = (
            self.buf_offset() + self.head as usize,
            self.pool.buf_size - self.head as usize,
        );
        debug_assert!(start + len <= self.pool.mem.len());
        // SAFETY: the bytes from the head to the end of this packet's buffer, which lies inside
        // the pool's region (`count * buf_size <= mem.len()` when the pool was cut, and
        // `head <= buf_size`), so no bounds check is repeated here; as in `data`, this Packet
        // owns the buffer exclusively and nobody writes it while `&self` lives.
        unsafe { std::slice::from_raw_parts(self.pool.mem.as_mut_ptr().add(start), len) }
    }

    /// The frame bytes, writable.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: exclusive ownership of the buffer plus `&mut self`; bounds as in `data`.
        unsafe {
            self.pool
                .mem
                .slice_mut(self.buf_offset() + self.head as usize, self.len as usize)
        }
    }

    /// Makes the frame a copy of the `len` bytes of `mem` at `offset` (a peer's memory, read
    /// atomically). Where the aligned words that hold those bytes lie inside `mem` and fit the
    /// buffer, the whole words are copied (the cheap copy) and the frame starts at the same
    /// place within a word as in `mem`, up to 7 bytes further from the buffer start; otherwise
    /// the bytes alone are copied at the current head. On error the frame is empty.
    #[inline(always)]
    pub fn copy_from_shared(
        &mut self,
        mem: &SharedMemory,
        offset: usize,
        len: usize,
    ) -> Result<(), MemError> {
        let skip = (mem.offset_in_mapping() + offset) % 8;
        let words = (skip + len).next_multiple_of(8);
        let at = self.buf_offset() + self.head as usize;
        let room = self.max_len();
        if offset >= skip && words <= room {
            // SAFETY: exclusive ownership of the buffer plus `&mut self`; `words` bytes from
            // the head fit the buffer (checked just above, and by `slice_mut`).
            let dst = unsafe { self.pool.mem.slice_mut(at, words) };
            if mem.read_inlined(offset - skip, dst).is_ok() {
                self.head += skip as u32;
                self.len = len as u32;
                return Ok(());
            }
        }
        self.len = 0;
        if len > room {
            return Err(MemError::OutOfBounds {
                offset: 0,
                len,
                size: room,
            });
        }
        // SAFETY: as above, for `len <= room` bytes.
        let dst = unsafe { self.pool.mem.slice_mut(at, len) };
        mem.read(offset, dst)?;
        self.len = len as u32;
        Ok(())
    }

    /// Makes the frame a copy of the `len` bytes at byte `at` of `words` (a peer's memory, as
    /// [`SharedMemory::atomic_u64s`] gives it). The whole words that hold those bytes are
    /// copied, one atomic load each, and the frame starts at the same place within a word as
    /// in `words`: up to 7 bytes further from the buffer start. Where those words run past
    /// `words` or do not fit the buffer, nothing is copied and the frame is empty (the caller
    /// copies the bytes alone, as [`copy_from_shared`](Self::copy_from_shared) does).
    #[inline(always)]
    pub fn copy_from_words(
        &mut self,
        words: &[AtomicU64],
        at: usize,
        len: usize,
    ) -> Result<(), MemError> {
        let room = self.max_len();
        if len > room {
            self.len = 0;
            return Err(words_refused(false, at, len, words.len(), room));
        }
        // From the start of the word that holds byte `at`: at most `room + 7`, no overflow.
        let end = at % 8 + len;
        let count = end.div_ceil(8);
        let src = words.get(at / 8..).and_then(|w| w.get(..count));
        let (Some(src), true) = (src, count * 8 <= room) else {
            self.len = 0;
            return Err(words_refused(src.is_none(), at, len, words.len(), room));
        };
        // SAFETY: the buffer is this packet's alone (`&mut self`), and `count` words from the
        // head lie inside it (checked just above): the buffer lies inside the pool's memory
        // (`index < count`, `count * buf_size <= mem.len()`, both from `Pool::new`).
        unsafe {
            let dst = self
                .pool
                .mem
                .as_mut_ptr()
                .add(self.buf_offset() + self.head as usize);
            crate::mem::load_words_to(src, dst);
        }
        self.head += (at % 8) as u32;
        self.len = len as u32;
        Ok(())
    }

    /// Exchanges the buffers of two packets from the same pool, with the frames in them
    /// (headroom and length); each packet keeps its own [`meta`](Self::meta). What a driver
    /// does when it hands out the frame a device wrote into a posted packet and posts a fresh
    /// buffer in its place, without moving whole packets.
    ///
    /// # Panics
    /// If the packets come from different pools: a caller bug (each pool's buffers must go
    /// back to it).
    #[inline]
    pub fn swap_buffers(&mut self, other: &mut Packet) {
        assert!(
            Arc::ptr_eq(&self.pool, &other.pool),
            "swap_buffers between packets of different pools"
        );
        std::mem::swap(&mut self.index, &mut other.index);
        std::mem::swap(&mut self.head, &mut other.head);
        std::mem::swap(&mut self.len, &mut other.len);
    }

    /// Bus address of the first frame byte (what a device or host is given).
    #[inline]
    pub fn bus_addr(&self) -> u64 {
        self.pool
            .mem
            .bus_addr(self.buf_offset() + self.head as usize)
    }

    /// The frame as a region of the pool's shared memory (for peers that read it in place).
    pub fn region(&self) -> SharedMemory {
        self.pool
            .mem
            .subregion(self.buf_offset() + self.head as usize, self.len as usize)
            .expect("packet lies inside its pool")
    }

    /// The pool this packet's buffer comes from (and returns to).
    pub fn pool(&self) -> Pool {
        Pool {
            inner: self.pool.clone(),
        }
    }

    /// Whether this packet's buffer comes from `pool`.
    #[inline]
    pub fn is_from(&self, pool: &Pool) -> bool {
        Arc::ptr_eq(&self.pool, &pool.inner)
    }
}

impl Drop for Packet {
    #[inline]
    fn drop(&mut self) {
        // The list has room for every buffer, and each index is pushed back exactly once.
        self.pool.free_list().push_back(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_copied_from_shared_memory_is_those_bytes_at_any_offset_and_length() {
        let pool = Pool::new(SharedMemory::anonymous(2 * 2048).unwrap(), 2048).unwrap();
        // A peer's region, mapped at an offset that is not a whole word, with a pattern.
        let peer = SharedMemory::anonymous(4096)
            .unwrap()
            .subregion(3, 600)
            .unwrap();
        let pattern: Vec<u8> = (0..600u32).map(|i| (i * 7 + 1) as u8).collect();
        peer.write(0, &pattern).unwrap();
        for offset in [0, 1, 2, 5, 7, 8, 13, 64] {
            for len in [1, 3, 8, 9, 60, 64, 65, 200] {
                let mut p = pool.alloc().unwrap();
                p.copy_from_shared(&peer, offset, len).unwrap();
                assert_eq!(p.data(), &pattern[offset..offset + len], "{offset}+{len}");
                assert!(p.headroom() >= HEADROOM && p.headroom() < HEADROOM + 8);
            }
        }
        // The last bytes of the region: the words that hold them run past it, so the bytes
        // alone are copied.
        let mut p = pool.alloc().unwrap();
        p.copy_from_shared(&peer, 595, 5).unwrap();
        assert_eq!(p.data(), &pattern[595..]);
        // Outside the region, or longer than the buffer: an error and an empty frame.
        assert!(p.copy_from_shared(&peer, 598, 5).is_err());
        assert!(p.is_empty());
        let big = SharedMemory::anonymous(8192).unwrap();
        assert!(p.copy_from_shared(&big, 0, 2048).is_err());
        assert!(p.is_empty());
    }

    #[test]
    fn a_frame_copied_from_shared_words_is_those_bytes_at_any_byte_and_length() {
        let pool = Pool::new(SharedMemory::anonymous(4 * 2048).unwrap(), 2048).unwrap();
        let peer = SharedMemory::anonymous(4096).unwrap();
        let pattern: Vec<u8> = (0..600u32).map(|i| (i * 7 + 1) as u8).collect();
        peer.write(0, &pattern).unwrap();
        let words = peer.atomic_u64s(0, 600 / 8).unwrap();
        for at in [0, 1, 2, 5, 7, 8, 13, 64] {
            for len in [1, 3, 8, 9, 60, 64, 65, 200] {
                let mut p = pool.alloc().unwrap();
                p.copy_from_words(words, at, len).unwrap();
                assert_eq!(p.data(), &pattern[at..at + len], "{at}+{len}");
                assert_eq!(p.headroom(), HEADROOM + at % 8);
            }
        }
        // The last whole word, and a frame that ends inside it.
        let mut p = pool.alloc().unwrap();
        p.copy_from_words(words, 592, 8).unwrap();
        assert_eq!(p.data(), &pattern[592..]);
        p.copy_from_words(words, 593, 3).unwrap();
        assert_eq!(p.data(), &pattern[593..596]);
        // Words past the slice, or more than the buffer holds (with the rounding to words or
        // without): an error and an empty frame, the head where it was.
        let fresh = pool.alloc().unwrap().headroom();
        for (at, len) in [(593, 8), (600, 1), (usize::MAX - 3, 2), (1, 600)] {
            let mut p = pool.alloc().unwrap();
            assert!(p.copy_from_words(words, at, len).is_err(), "{at}+{len}");
            assert!(p.is_empty());
            assert_eq!(p.headroom(), fresh);
        }
        let big = SharedMemory::anonymous(8192).unwrap();
        let big = big.atomic_u64s(0, 1024).unwrap();
        let mut p = pool.alloc().unwrap();
        let room = p.max_len();
        assert!(p.copy_from_words(big, 0, room + 1).is_err());
        assert!(p.copy_from_words(big, 3, room - 2).is_err());
        p.copy_from_words(big, 0, room).unwrap();
        assert_eq!(p.len(), room);
        let mut p = pool.alloc().unwrap();
        assert!(p.copy_from_words(big, 0, usize::MAX).is_err());
    }

    #[test]
    fn drop_returns_the_buffer_and_frames_do_not_alias() {
        let mem = SharedMemory::memfd("pool", 4 * 2048).unwrap();
        let pool = Pool::new(mem, 2048).unwrap();
        assert_eq!(pool.capacity(), 4);
        let a = pool.alloc_from(b"first frame").unwrap();
        let b = pool.alloc_from(b"second").unwrap();
        assert_eq!(pool.available(), 2);
        assert_eq!(a.data(), b"first frame");
        assert_eq!(b.data(), b"second");
        assert_ne!(a.bus_addr(), b.bus_addr());
        drop(a);
        assert_eq!(pool.available(), 3);
        let all: Vec<_> = std::iter::from_fn(|| pool.alloc()).collect();
        assert_eq!(all.len(), 3);
        assert!(pool.alloc().is_none());
    }

    #[test]
    fn headroom_is_claimed_and_released() {
        let pool = Pool::new(SharedMemory::anonymous(4096).unwrap(), 1024).unwrap();
        let mut p = pool.alloc_from(&[0xAB; 60]).unwrap();
        let addr = p.bus_addr();
        p.push_head(44).unwrap().fill(1);
        assert_eq!(p.len(), 104);
        assert_eq!(p.bus_addr(), addr - 44);
        assert!(p.push_head(HEADROOM).is_none());
        assert!(p.pull_head(44));
        assert_eq!(p.data(), &[0xAB; 60]);
        assert!(pool.alloc_from(&vec![0; 1024]).is_none());
    }

    #[test]
    fn a_batch_freed_on_another_thread_comes_back_whole() {
        let pool = Pool::new(SharedMemory::anonymous(200 * 1024).unwrap(), 1024).unwrap();
        let mut pkts = Vec::new();
        assert_eq!(pool.alloc_bulk(&mut pkts, 150), 150);
        assert_eq!(pool.available(), 50);
        std::thread::spawn(move || free_bulk(pkts)).join().unwrap();
        assert_eq!(pool.available(), 200);
    }

    #[test]
    #[should_panic(expected = "different pools")]
    fn buffers_are_only_swapped_within_a_pool() {
        let a = Pool::new(SharedMemory::anonymous(4096).unwrap(), 1024).unwrap();
        let b = Pool::new(SharedMemory::anonymous(4096).unwrap(), 1024).unwrap();
        let mut x = a.alloc().unwrap();
        let mut y = b.alloc().unwrap();
        x.swap_buffers(&mut y);
    }

    #[test]
    fn packets_can_be_dropped_on_another_thread() {
        let pool = Pool::new(SharedMemory::anonymous(8192).unwrap(), 1024).unwrap();
        let pkts: Vec<_> = (0..8).map(|_| pool.alloc().unwrap()).collect();
        std::thread::spawn(move || drop(pkts)).join().unwrap();
        assert_eq!(pool.available(), 8);
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        /// One step against two pools (`pool` picks one).
        #[derive(Clone, Debug)]
        enum Op {
            Alloc {
                pool: bool,
            },
            AllocBulk {
                pool: bool,
                n: usize,
            },
            /// Drops the held packet at this position (modulo how many are held).
            Drop {
                at: usize,
            },
            /// Frees, in one batch, the held packets whose position's bit is set (positions
            /// past 64 by `rest`), in the order they are held.
            FreeBulk {
                mask: u64,
                rest: bool,
            },
            /// Swaps the buffers of two held packets when they share a pool.
            Swap {
                a: usize,
                b: usize,
            },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                any::<bool>().prop_map(|pool| Op::Alloc { pool }),
                (any::<bool>(), 0..160usize).prop_map(|(pool, n)| Op::AllocBulk { pool, n }),
                any::<usize>().prop_map(|at| Op::Drop { at }),
                (any::<u64>(), any::<bool>()).prop_map(|(mask, rest)| Op::FreeBulk { mask, rest }),
                (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Op::Swap { a, b }),
            ]
        }

        /// A held packet and the byte its frame was filled with.
        struct Held {
            packet: Packet,
            fill: u8,
        }

        fn check(pools: &[Pool; 2], held: &[Held]) -> Result<(), TestCaseError> {
            for (i, pool) in pools.iter().enumerate() {
                let out = held.iter().filter(|h| h.packet.is_from(pool)).count();
                prop_assert_eq!(pool.available() + out, pool.capacity(), "pool {}", i);
            }
            // Per pool: each region's bus addresses start where the region says.
            for pool in pools {
                let mut addrs: Vec<u64> = held
                    .iter()
                    .filter(|h| h.packet.is_from(pool))
                    .map(|h| h.packet.bus_addr())
                    .collect();
                let n = addrs.len();
                addrs.sort_unstable();
                addrs.dedup();
                prop_assert_eq!(addrs.len(), n, "two packets share a buffer");
            }
            for h in held {
                prop_assert!(
                    h.packet.data().iter().all(|&b| b == h.fill),
                    "a frame changed"
                );
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn bulk_alloc_and_free_account_for_every_buffer(
                ops in proptest::collection::vec(op(), 1..60),
            ) {
                // Pools of 100 and 150 buffers: batches cross `FREE_RUN` and run them dry.
                let pools = [
                    Pool::new(SharedMemory::anonymous(100 * 256).unwrap(), 256).unwrap(),
                    Pool::new(SharedMemory::anonymous(150 * 256).unwrap(), 256).unwrap(),
                ];
                let mut held: Vec<Held> = Vec::new();
                let mut fill = 0u8;
                let mut take = |p: Packet, held: &mut Vec<Held>| -> Result<(), TestCaseError> {
                    // Fresh packets are empty with the default headroom.
                    prop_assert!(p.is_empty());
                    prop_assert_eq!(p.headroom(), HEADROOM);
                    let mut p = p;
                    fill = fill.wrapping_add(1);
                    p.set_len(8);
                    p.data_mut().fill(fill);
                    held.push(Held { packet: p, fill });
                    Ok(())
                };
                for op in ops {
                    match op {
                        Op::Alloc { pool } => {
                            let pool = &pools[usize::from(pool)];
                            let before = pool.available();
                            match pool.alloc() {
                                Some(p) => take(p, &mut held)?,
                                None => prop_assert_eq!(before, 0),
                            }
                        }
                        Op::AllocBulk { pool, n } => {
                            let pool = &pools[usize::from(pool)];
                            let before = pool.available();
                            let mut out = Vec::new();
                            let got = pool.alloc_bulk(&mut out, n);
                            prop_assert_eq!(got, n.min(before));
                            prop_assert_eq!(out.len(), got);
                            for p in out {
                                prop_assert!(p.is_from(pool));
                                take(p, &mut held)?;
                            }
                        }
                        Op::Drop { at } => {
                            if !held.is_empty() {
                                let at = at % held.len();
                                drop(held.remove(at));
                            }
                        }
                        Op::FreeBulk { mask, rest } => {
                            let mut batch = Vec::new();
                            let mut kept = Vec::new();
                            for (i, h) in held.drain(..).enumerate() {
                                let free = if i < 64 { mask & (1 << i) != 0 } else { rest };
                                if free {
                                    batch.push(h.packet);
                                } else {
                                    kept.push(h);
                                }
                            }
                            held = kept;
                            free_bulk(batch);
                        }
                        Op::Swap { a, b } => {
                            if held.len() >= 2 {
                                let (a, b) = (a % held.len(), b % held.len());
                                if a != b && held[b].packet.is_from(&held[a].packet.pool()) {
                                    let (lo, hi) = (a.min(b), a.max(b));
                                    let (left, right) = held.split_at_mut(hi);
                                    left[lo].packet.swap_buffers(&mut right[0].packet);
                                    std::mem::swap(&mut left[lo].fill, &mut right[0].fill);
                                }
                            }
                        }
                    }
                    check(&pools, &held)?;
                }
                free_bulk(held.into_iter().map(|h| h.packet));
                for pool in &pools {
                    prop_assert_eq!(pool.available(), pool.capacity());
                }
            }

            #[test]
            fn a_mixed_batch_goes_back_to_each_packets_own_pool(
                picks in proptest::collection::vec(0..3usize, 0..300),
            ) {
                let pools = [
                    Pool::new(SharedMemory::anonymous(120 * 256).unwrap(), 256).unwrap(),
                    Pool::new(SharedMemory::anonymous(120 * 256).unwrap(), 256).unwrap(),
                    Pool::new(SharedMemory::anonymous(120 * 256).unwrap(), 256).unwrap(),
                ];
                let batch: Vec<Packet> =
                    picks.iter().filter_map(|&i| pools[i].alloc()).collect();
                for (i, pool) in pools.iter().enumerate() {
                    let n = batch.iter().filter(|p| p.is_from(pool)).count();
                    prop_assert_eq!(pool.available(), pool.capacity() - n, "pool {}", i);
                }
                free_bulk(batch);
                for pool in &pools {
                    prop_assert_eq!(pool.available(), pool.capacity());
                }
            }

            #[test]
            fn swapped_buffers_keep_their_frames_and_the_packets_their_metadata(
                a in proptest::collection::vec(any::<u8>(), 0..=128),
                b in proptest::collection::vec(any::<u8>(), 0..=128),
                pulled in 0..8usize,
                queue in any::<u16>(),
            ) {
                let pool = Pool::new(SharedMemory::anonymous(4 * 256).unwrap(), 256).unwrap();
                let mut x = pool.alloc_from(&a).unwrap();
                let mut y = pool.alloc_from(&b).unwrap();
                let pulled = if x.pull_head(pulled) { pulled } else { 0 };
                x.meta.queue = queue;
                let (x_addr, y_addr) = (x.bus_addr(), y.bus_addr());
                let x_data = x.data().to_vec();
                x.swap_buffers(&mut y);
                prop_assert_eq!(y.data(), &x_data[..]);
                prop_assert_eq!(x.data(), &b[..]);
                prop_assert_eq!((x.bus_addr(), y.bus_addr()), (y_addr, x_addr));
                prop_assert_eq!(x.meta.queue, queue);
                prop_assert_eq!(y.meta.queue, 0);
                prop_assert_eq!((x.headroom(), y.headroom()), (HEADROOM, HEADROOM + pulled));
                drop((x, y));
                prop_assert_eq!(pool.available(), pool.capacity());
            }
        }
    }
}
