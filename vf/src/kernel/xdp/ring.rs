//! The four single-producer, single-consumer rings an XDP socket shares with the kernel.
//!
//! Each ring is a mapping with a producer index, a consumer index and a flags word (`u32`s
//! the two sides update with release stores and read with acquire loads) and a power-of-two
//! array of entries; the indices run free and wrap, an entry's slot is `index & (size − 1)`.
//! We produce on the fill and TX rings and consume the RX and completion rings. The kernel is
//! not trusted: an index it moved further than the ring holds is clamped (the entries it
//! names are then validated by the caller like any other), so nothing it writes makes us read
//! outside the mapping.
#![allow(unsafe_code)]

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, Ordering};

use super::sys::{RingKind, RingMapping, RingOffsets};

/// An entry type of a ring: `xdp_desc` or a `u64` address.
pub trait Entry: Copy {}
impl Entry for u64 {}
impl Entry for libc::xdp_desc {}

/// One ring, seen from our side of it.
#[derive(Debug)]
pub struct Ring<T: Entry> {
    map: RingMapping,
    offsets: RingOffsets,
    size: u32,
    /// Our copy of our own index (the producer's on a ring we produce, else the consumer's).
    ours: u32,
    /// The other side's index as last read.
    theirs: u32,
    _entry: PhantomData<T>,
}

impl<T: Entry> Ring<T> {
    /// Wraps the mapping of a ring of `size` entries (a power of two) laid out as `offsets`
    /// says; `None` if the layout does not fit the mapping or is misaligned.
    pub fn new(map: RingMapping, offsets: RingOffsets, size: u32, kind: RingKind) -> Option<Self> {
        assert_eq!(kind.entry_size(), size_of::<T>(), "entry type of {kind:?}");
        let fits = |at: usize, len: usize| at.checked_add(len).is_some_and(|end| end <= map.len());
        let aligned = |at: usize, align: usize| at.is_multiple_of(align);
        let entries = (size as usize).checked_mul(size_of::<T>())?;
        let ok = size.is_power_of_two()
            && [offsets.producer, offsets.consumer, offsets.flags]
                .iter()
                .all(|&at| fits(at, 4) && aligned(at, 4))
            && fits(offsets.desc, entries)
            && aligned(offsets.desc, 8);
        if !ok {
            return None;
        }
        let mut ring = Self {
            map,
            offsets,
            size,
            ours: 0,
            theirs: 0,
            _entry: PhantomData,
        };
        let (producer, consumer) = (
            ring.load(ring.offsets.producer),
            ring.load(ring.offsets.consumer),
        );
        match kind {
            RingKind::Fill | RingKind::Tx => {
                ring.ours = producer;
                ring.theirs = consumer;
            }
            RingKind::Rx | RingKind::Completion => {
                ring.ours = consumer;
                ring.theirs = producer;
            }
        }
        Some(ring)
    }

    /// The `u32` at byte `at` of the mapping, as an atomic.
    fn word(&self, at: usize) -> &AtomicU32 {
        // SAFETY: `new` checked that `at..at + 4` lies in the mapping and is 4-aligned; the
        // mapping lives as long as `self`. The kernel accesses the word only atomically (its
        // smp_load_acquire/smp_store_release), so an `AtomicU32` view of it races with nothing
        // non-atomic.
        unsafe { &*self.map.ptr().as_ptr().add(at).cast::<AtomicU32>() }
    }

    fn load(&self, at: usize) -> u32 {
        self.word(at).load(Ordering::Acquire)
    }

    /// Pointer to the slot of free-running index `index`.
    fn slot(&self, index: u32) -> *mut T {
        let i = (index & (self.size - 1)) as usize;
        // SAFETY: `i < size`, and `new` checked that `size` entries from `desc` lie in the
        // mapping, 8-aligned (the alignment of both entry types).
        unsafe {
            self.map
                .ptr()
                .as_ptr()
                .add(self.offsets.desc)
                .cast::<T>()
                .add(i)
        }
    }

    /// Whether the kernel asked to be woken up (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        self.load(self.offsets.flags) & libc::XDP_RING_NEED_WAKEUP != 0
    }

    // ---- a ring we produce (fill, TX) ----

    /// Entries we may produce now (reads the kernel's consumer index).
    pub fn free(&mut self) -> u32 {
        let consumer = self.load(self.offsets.consumer);
        // The kernel may only have consumed what we produced.
        let used = self.ours.wrapping_sub(consumer);
        if used <= self.size {
            self.theirs = consumer;
        }
        self.size - self.ours.wrapping_sub(self.theirs).min(self.size)
    }

    /// Entries we produced that the kernel has not consumed yet, as of the last
    /// [`free`](Self::free).
    pub fn outstanding(&self) -> u32 {
        self.ours.wrapping_sub(self.theirs).min(self.size)
    }

    /// Writes `entry` at position `n` past our producer index; [`submit`](Self::submit)
    /// publishes it. The caller checked `n < free()`.
    pub fn write(&mut self, n: u32, entry: T) {
        debug_assert!(n < self.size - self.ours.wrapping_sub(self.theirs).min(self.size));
        // SAFETY: `slot` points inside the mapping, aligned. The slot is ours: the kernel
        // consumed it (its consumer index is past it) and reads it again only after the
        // release store in `submit`.
        unsafe { self.slot(self.ours.wrapping_add(n)).write_volatile(entry) }
    }

    /// Publishes the next `n` entries written.
    pub fn submit(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.ours = self.ours.wrapping_add(n);
        self.word(self.offsets.producer)
            .store(self.ours, Ordering::Release);
    }

    // ---- a ring we consume (RX, completion) ----

    /// Entries the kernel produced that we have not consumed (reads its producer index;
    /// never more than the ring holds).
    pub fn available(&mut self) -> u32 {
        self.theirs = self.load(self.offsets.producer);
        self.theirs.wrapping_sub(self.ours).min(self.size)
    }

    /// The entry at position `n` past our consumer index; the caller checked
    /// `n < available()`.
    pub fn read(&self, n: u32) -> T {
        // SAFETY: `slot` points inside the mapping, aligned. The kernel wrote the entry before
        // the release store of its producer index that `available` read with acquire, and does
        // not write it again until our consumer index passes it. A volatile read: the value
        // is copied out once, then validated.
        unsafe { self.slot(self.ours.wrapping_add(n)).read_volatile() }
    }

    /// Gives the next `n` entries back to the kernel.
    pub fn release(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        self.ours = self.ours.wrapping_add(n);
        self.word(self.offsets.consumer)
            .store(self.ours, Ordering::Release);
    }
}
