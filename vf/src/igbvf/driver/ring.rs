//! Descriptor ring memory, reached as two 64-bit atomic words per descriptor.
//!
//! A [`DescRing`] checks its memory once, when it is made (bounds and alignment for the whole
//! ring); a burst then takes the ring as a slice of [`Desc`] and reaches descriptor `i & mask`
//! with no further check than the slice's own. Ring sizes are powers of two
//! ([`IgbvfConfig::validate`](super::IgbvfConfig::validate)), so the rings' indices advance
//! with a mask.
//!
//! Every access is atomic and whole-word, as the device model's and our own copies of these
//! bytes are (see `packet::mem`): the driver stores a descriptor it posts with two `Relaxed`
//! stores (the caller's fence before the tail write publishes them), and copies a written-back
//! one with [`written_back`].

use std::sync::atomic::{AtomicU64, Ordering, fence};

use packet::{MemError, SharedMemory};

use crate::igbvf::descriptors::DESC_SIZE;

/// One descriptor as ring memory holds it: two little-endian 64-bit words (bytes 0..8 and
/// 8..16).
pub(crate) type Desc = [AtomicU64; 2];

/// Words per descriptor.
const WORDS: usize = DESC_SIZE / 8;

/// The memory of one descriptor ring of a power-of-two size.
#[derive(Debug)]
pub(crate) struct DescRing {
    mem: SharedMemory,
    size: usize,
}

impl DescRing {
    /// `size` descriptors at the start of `mem`; fails unless they are in bounds and 8-byte
    /// aligned.
    pub(crate) fn new(mem: SharedMemory, size: usize) -> Result<Self, MemError> {
        debug_assert!(size.is_power_of_two());
        mem.atomic_u64s(0, WORDS * size)?;
        Ok(Self { mem, size })
    }

    /// `size - 1`: index `i` of the ring is `i & mask`.
    pub(crate) fn mask(&self) -> usize {
        self.size - 1
    }

    /// The ring's memory (for its bus address).
    pub(crate) fn memory(&self) -> &SharedMemory {
        &self.mem
    }

    /// The descriptors, `size` of them.
    #[inline]
    pub(crate) fn descs(&self) -> &[Desc] {
        let words = self
            .mem
            .atomic_u64s(0, WORDS * self.size)
            .expect("DescRing::new checked this range, and a view never changes");
        words.as_chunks::<WORDS>().0
    }
}

/// Stores the 16 bytes of a descriptor the driver posts, with plain (`Relaxed`) stores: the
/// device reads it only after the caller's fence and tail write.
#[inline]
pub(crate) fn post(desc: &Desc, bytes: [u8; DESC_SIZE]) {
    let words: [u64; WORDS] = zerocopy::transmute!(bytes);
    desc[0].store(words[0], Ordering::Relaxed);
    desc[1].store(words[1], Ordering::Relaxed);
}

/// Whether the device has written `desc` back (`DD` set; see [`written_back`]), without
/// copying it: a look ahead, to be followed by `written_back` before anything is used.
#[inline]
pub(crate) fn is_done(desc: &Desc, dd: u64) -> bool {
    u64::from_le(desc[1].load(Ordering::Relaxed)) & dd != 0
}

/// Copies a descriptor once the device has written it back, for the caller to validate.
/// `dd` is the `DD` bit as it sits in the little-endian value of word 1 (bytes 8..16, which
/// hold the status word in both write-back formats).
///
/// Word 1 is loaded once with `Acquire`: that load is both the look at `DD` and the copy of
/// those 8 bytes, so the status and the length beside it come from the same write. `None`
/// while `DD` is clear (the device still owns the descriptor). Otherwise an `Acquire` fence,
/// then word 0: the device writes `DD` last, so the whole copy is at least as new as the `DD`
/// seen.
#[inline]
pub(crate) fn written_back(desc: &Desc, dd: u64) -> Option<[u8; DESC_SIZE]> {
    let high = desc[1].load(Ordering::Acquire);
    if u64::from_le(high) & dd == 0 {
        return None;
    }
    fence(Ordering::Acquire);
    let low = desc[0].load(Ordering::Relaxed);
    Some(zerocopy::transmute!([low, high]))
}
