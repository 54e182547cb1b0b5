//! A pool of fixed-size packet buffers and the RAII [`Packet`].
//!
//! A [`Pool`] cuts a [`SharedMemory`] region into `count` buffers of `buf_size` bytes. A
//! [`Packet`] owns one buffer exclusively until it is dropped, which returns the buffer to the
//! pool's free list (lock-free, so a packet may be dropped on any thread). Each buffer keeps
//! [`HEADROOM`] bytes in front of the frame so that a driver can prepend its own header (the
//! RNDIS packet header, for instance) in place and hand header and frame to the peer as one
//! range.
//!
//! Buffers are contiguous in bus address space: in simulation the region is a memfd whose bus
//! address is its offset; on a real guest the pool is built on pinned hugepages and a buffer
//! never crosses one.
//!
//! This module opts in to `unsafe` for exactly one thing: handing out `&[u8]`/`&mut [u8]` over
//! the buffer a `Packet` exclusively owns.
#![allow(unsafe_code)]

use std::fmt;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

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
    free: ArrayQueue<u32>,
}

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
        let free = ArrayQueue::new(count);
        for i in 0..count {
            free.push(i as u32).expect("queue sized for every buffer");
        }
        Ok(Self {
            inner: Arc::new(PoolInner {
                mem,
                buf_size,
                count,
                free,
            }),
        })
    }

    /// Takes a free buffer, empty, with the default headroom. `None` when the pool is empty.
    pub fn alloc(&self) -> Option<Packet> {
        let index = self.inner.free.pop()?;
        Some(Packet {
            pool: self.inner.clone(),
            index,
            head: HEADROOM as u32,
            len: 0,
            meta: PacketMeta::default(),
        })
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
    pub fn frame_capacity(&self) -> usize {
        self.inner.buf_size - HEADROOM
    }

    /// Size of every buffer, headroom included.
    pub fn buf_size(&self) -> usize {
        self.inner.buf_size
    }

    /// Number of buffers in the pool.
    pub fn capacity(&self) -> usize {
        self.inner.count
    }

    /// Number of buffers free right now.
    pub fn available(&self) -> usize {
        self.inner.free.len()
    }

    /// The region the pool is cut from.
    pub fn memory(&self) -> &SharedMemory {
        &self.inner.mem
    }
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
    fn buf_offset(&self) -> usize {
        self.index as usize * self.pool.buf_size
    }

    /// Length of the frame.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the frame is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes in front of the frame that [`push_head`](Self::push_head) can claim.
    pub fn headroom(&self) -> usize {
        self.head as usize
    }

    /// Largest frame length this buffer allows at the current head.
    pub fn max_len(&self) -> usize {
        self.pool.buf_size - self.head as usize
    }

    /// Sets the frame length (bytes past the old length are whatever the buffer held).
    ///
    /// # Panics
    /// If `len` exceeds [`max_len`](Self::max_len): a caller bug, not a data condition.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.max_len(), "packet length {len} exceeds buffer");
        self.len = len as u32;
    }

    /// Extends the frame `n` bytes toward the buffer start and returns the new leading bytes.
    /// `None` when the headroom is smaller than `n`.
    pub fn push_head(&mut self, n: usize) -> Option<&mut [u8]> {
        if n > self.head as usize {
            return None;
        }
        self.head -= n as u32;
        self.len += n as u32;
        Some(&mut self.data_mut()[..n])
    }

    /// Removes `n` leading bytes from the frame (e.g. a header that was parsed).
    pub fn pull_head(&mut self, n: usize) -> bool {
        if n > self.len as usize {
            return false;
        }
        self.head += n as u32;
        self.len -= n as u32;
        true
    }

    /// Resets the frame to empty with the default headroom.
    pub fn reset(&mut self) {
        self.head = HEADROOM as u32;
        self.len = 0;
        self.meta = PacketMeta::default();
    }

    /// The frame bytes.
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

    /// The frame bytes, writable.
    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: exclusive ownership of the buffer plus `&mut self`; bounds as in `data`.
        unsafe {
            self.pool
                .mem
                .slice_mut(self.buf_offset() + self.head as usize, self.len as usize)
        }
    }

    /// Bus address of the first frame byte (what a device or host is given).
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
    pub fn is_from(&self, pool: &Pool) -> bool {
        Arc::ptr_eq(&self.pool, &pool.inner)
    }
}

impl Drop for Packet {
    fn drop(&mut self) {
        // The queue has room for every buffer, and each index is pushed back exactly once.
        let _ = self.pool.free.push(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn packets_can_be_dropped_on_another_thread() {
        let pool = Pool::new(SharedMemory::anonymous(8192).unwrap(), 1024).unwrap();
        let pkts: Vec<_> = (0..8).map(|_| pool.alloc().unwrap()).collect();
        std::thread::spawn(move || drop(pkts)).join().unwrap();
        assert_eq!(pool.available(), 8);
    }
}
