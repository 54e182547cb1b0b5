//! Shared memory regions with bus addresses.
//!
//! A [`SharedMemory`] is a view (offset, length) into an `mmap`ed mapping that is kept alive by
//! reference counting, so views can be cloned and sent to other threads. The mapping is shared
//! with a peer (the host, a device, another process) that may write to it at any time: nothing
//! here hands out a `&[u8]` over shared bytes. Reads copy out, writes copy in, and control words
//! are reached as atomics.
//!
//! # Accesses under the memory model
//!
//! The peer may write any byte while we copy it, so every access this module makes to shared
//! bytes is an atomic one (`Relaxed`: ordering comes from the rings' Release/Acquire index
//! stores, not from the copies), never `memcpy`: a plain read racing a write is a data race,
//! undefined behaviour even when the torn result is validated afterwards. The copies work in
//! naturally aligned 8-byte words, and only in those: a whole word of the range is one
//! `AtomicU64` load or store; a word the range covers only in part (its first or last) is one
//! `AtomicU64` load, and for a write a compare-exchange loop that replaces only the range's bytes
//! and keeps whatever the word's other bytes hold. So two copies that touch the same bytes at
//! the same time always do it with accesses of the same size at the same address (the memory
//! model forbids racing atomics that overlap only partly), whatever their offsets and lengths,
//! and a byte read is always a byte some writer wrote. Control words ([`atomic_u32`],
//! [`atomic_u64`]) are reached only through their accessors while the peer may use them; they
//! are never copied over concurrently.
//!
//! Touching a whole word for a range that covers part of it stays inside the mapping: mappings
//! start on a page boundary and `mmap` maps whole pages, and an aligned word never crosses a
//! page. It reads (and, through the compare-exchange, rewrites with their own values) bytes
//! next to the range: those must not be accessed non-atomically meanwhile, which is why
//! the crate's `SharedMemory::slice` and `slice_mut` (pool buffers) demand exclusivity of whole
//! words.
//!
//! This module opts in to `unsafe`: it owns the `memfd_create`/`mmap`/`munmap` calls and the
//! raw-pointer accesses, each bounds-checked before the pointer is formed.
//!
//! [`atomic_u32`]: SharedMemory::atomic_u32
//! [`atomic_u64`]: SharedMemory::atomic_u64
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Errors from creating or accessing shared memory.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    /// An access fell outside the region.
    #[error("access of {len} bytes at offset {offset:#x} is outside a region of {size:#x} bytes")]
    OutOfBounds {
        /// Offset of the access within the region.
        offset: usize,
        /// Length of the access.
        len: usize,
        /// Size of the region.
        size: usize,
    },
    /// An atomic access was not naturally aligned.
    #[error("atomic access at offset {offset:#x} is not {align}-byte aligned")]
    Misaligned {
        /// Offset of the access within the region.
        offset: usize,
        /// Required alignment.
        align: usize,
    },
    /// A system call failed.
    #[error("{call} failed")]
    Syscall {
        /// The call that failed.
        call: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A zero-length region was requested.
    #[error("a shared memory region cannot be empty")]
    Empty,
}

/// One `mmap`ed range, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
    /// The file behind the mapping, kept so another process or thread can map it too.
    fd: Option<OwnedFd>,
}

// SAFETY: the mapping is plain memory; all access goes through bounds-checked copies and
// atomics, so sharing the pointer between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above: no method gives out references that alias mutable state unsafely.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` came from a successful mmap and are unmapped exactly once.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// A bounds-checked view of memory shared with a peer, with a bus address for every byte.
#[derive(Clone, Debug)]
pub struct SharedMemory {
    map: Arc<Mapping>,
    offset: usize,
    len: usize,
    bus_base: u64,
}

fn syscall_err(call: &'static str) -> MemError {
    MemError::Syscall {
        call,
        source: std::io::Error::last_os_error(),
    }
}

/// Bytes in one access of a shared-memory copy: every copy works in naturally aligned words of
/// this size (see the module docs).
const WORD: usize = 8;

/// Bytes a [`SharedMemory::copy_from`] moves per step through its stack buffer.
const BOUNCE: usize = 256;

/// The aligned word that holds the byte at `at`, and the index of that byte in it.
///
/// Only computes an address (`wrapping_sub` keeps `at`'s provenance); the callers argue that
/// the word is mapped.
#[inline]
fn word_of(at: *mut u8) -> (*mut u8, usize) {
    let index = (at as usize) % WORD;
    (at.wrapping_sub(index), index)
}

/// The shared word at `word` as an atomic.
///
/// # Safety
/// `word` is 8-byte aligned and lies inside a live mapping of this module (so it is mapped
/// memory, readable and writable, for as long as the mapping lives, which outlives `'a`), and
/// every access to it by anyone while `'a` lasts is an atomic access of these same 8 bytes.
#[inline(always)]
unsafe fn shared_word<'a>(word: *mut u8) -> &'a AtomicU64 {
    debug_assert!((word as usize).is_multiple_of(WORD));
    // SAFETY: aligned, mapped and only accessed atomically as this word: the caller's
    // obligations are exactly `AtomicU64::from_ptr`'s. Every bit pattern is a valid u64.
    unsafe { AtomicU64::from_ptr(word.cast()) }
}

/// Reads `n < 8` bytes of a private buffer at `src` as the low bytes of a little-endian value
/// (byte `i` in bits `8 * i..`), in at most three fixed-size loads (4, 2, 1 bytes): cheaper
/// than a byte loop or a variable-length `memcpy` for the head and tail of a copy.
///
/// # Safety
/// `src..src + n` is readable and not written concurrently (it is a Rust buffer we borrow).
#[inline(always)]
unsafe fn gather(src: *const u8, n: usize) -> u64 {
    debug_assert!(n < WORD);
    let (mut value, mut at) = (0u64, 0usize);
    if n & 4 != 0 {
        // SAFETY: bytes `0..4` of the `n` the caller lets us read.
        let word = unsafe { src.cast::<[u8; 4]>().read_unaligned() };
        value = u64::from(u32::from_le_bytes(word));
        at = 4;
    }
    if n & 2 != 0 {
        // SAFETY: bytes `at..at + 2`, with `at + 2 <= n`.
        let half = unsafe { src.add(at).cast::<[u8; 2]>().read_unaligned() };
        value |= u64::from(u16::from_le_bytes(half)) << (8 * at);
        at += 2;
    }
    if n & 1 != 0 {
        // SAFETY: byte `at`, with `at + 1 == n`.
        value |= u64::from(unsafe { src.add(at).read() }) << (8 * at);
    }
    value
}

/// Writes the low `n < 8` bytes of little-endian `value` to a private buffer at `dst` (the
/// mirror of [`gather`]).
///
/// # Safety
/// `dst..dst + n` is writable and not accessed concurrently (it is a Rust buffer we borrow
/// mutably).
#[inline(always)]
unsafe fn scatter(dst: *mut u8, n: usize, value: u64) {
    debug_assert!(n < WORD);
    let mut at = 0usize;
    if n & 4 != 0 {
        // SAFETY: bytes `0..4` of the `n` the caller lets us write.
        unsafe {
            dst.cast::<[u8; 4]>()
                .write_unaligned((value as u32).to_le_bytes())
        };
        at = 4;
    }
    if n & 2 != 0 {
        let half = (value >> (8 * at)) as u16;
        // SAFETY: bytes `at..at + 2`, with `at + 2 <= n`.
        unsafe {
            dst.add(at)
                .cast::<[u8; 2]>()
                .write_unaligned(half.to_le_bytes())
        };
        at += 2;
    }
    if n & 1 != 0 {
        // SAFETY: byte `at`, with `at + 1 == n`.
        unsafe { dst.add(at).write((value >> (8 * at)) as u8) };
    }
}

/// The little-endian mask of `n` bytes starting at byte `at` of a word (`0 < n`, `at + n <= 8`).
#[inline(always)]
fn byte_mask(at: usize, n: usize) -> u64 {
    (u64::MAX >> (8 * (WORD - n))) << (8 * at)
}

/// Replaces the bytes of a shared word selected by little-endian `mask` with those of
/// little-endian `value` (zero outside `mask`), leaving the others as they are at the moment
/// of the store: a compare-exchange loop, so a peer writing the other bytes concurrently makes
/// it retry, never lose the peer's bytes. A word that already holds the bytes is not written.
#[inline]
fn merge_into(word: &AtomicU64, mask: u64, value: u64) {
    let mut current = word.load(Ordering::Relaxed);
    loop {
        // `from_le`/`to_le` turn the native word into "byte i in bits 8i" and back.
        let merged = ((u64::from_le(current) & !mask) | value).to_le();
        if merged == current {
            return;
        }
        match word.compare_exchange_weak(current, merged, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(actual) => current = actual,
        }
    }
}

/// Words a bulk copy moves per loop step: fewer loop instructions per byte on long copies.
const UNROLL: usize = 8;

/// Copies `words` whole shared words from aligned `src` to a private buffer at `dst`.
///
/// # Safety
/// `src..src + 8 * words` is as [`copy_out`] requires; `dst..dst + 8 * words` is writable and
/// not accessed concurrently (a Rust buffer we borrow mutably).
#[inline(always)]
unsafe fn words_out(src: *mut u8, dst: *mut u8, words: usize) {
    let mut i = 0;
    while words - i >= UNROLL {
        for k in 0..UNROLL {
            // SAFETY: word `i + k < words` on both sides.
            unsafe {
                let word = shared_word(src.add((i + k) * WORD)).load(Ordering::Relaxed);
                dst.add((i + k) * WORD).cast::<u64>().write_unaligned(word);
            }
        }
        i += UNROLL;
    }
    // The rest (fewer than `UNROLL` words) in straight-line steps of 4, 2 and 1 words: no
    // loop set-up for the short copies that most copies are.
    for step in [4, 2, 1] {
        if words - i >= step {
            for k in 0..step {
                // SAFETY: word `i + k < words` on both sides.
                unsafe {
                    let word = shared_word(src.add((i + k) * WORD)).load(Ordering::Relaxed);
                    dst.add((i + k) * WORD).cast::<u64>().write_unaligned(word);
                }
            }
            i += step;
        }
    }
}

/// Copies `words` (a peer's memory, as [`SharedMemory::atomic_u64s`] gives it: one atomic
/// load each) to the `8 * words.len()` bytes at `dst`.
///
/// # Safety
/// `dst..dst + 8 * words.len()` is writable and nobody else accesses it meanwhile.
#[inline(always)]
pub(crate) unsafe fn load_words_to(words: &[AtomicU64], dst: *mut u8) {
    // SAFETY: `words` are live, aligned atomic words that everybody accesses atomically (their
    // type says so), which is all `words_out` asks of its source; the destination is the
    // caller's obligation.
    unsafe { words_out(words.as_ptr().cast_mut().cast(), dst, words.len()) }
}

/// Copies `words` whole words from a private buffer at `src` to aligned shared `dst`.
///
/// # Safety
/// `dst..dst + 8 * words` is as [`copy_in`] requires; `src..src + 8 * words` is readable and
/// not written concurrently (a Rust buffer we borrow).
#[inline(always)]
unsafe fn words_in(dst: *mut u8, src: *const u8, words: usize) {
    let mut i = 0;
    while words - i >= UNROLL {
        for k in 0..UNROLL {
            // SAFETY: word `i + k < words` on both sides.
            unsafe {
                let value = src.add((i + k) * WORD).cast::<u64>().read_unaligned();
                shared_word(dst.add((i + k) * WORD)).store(value, Ordering::Relaxed);
            }
        }
        i += UNROLL;
    }
    // The rest as in `words_out`.
    for step in [4, 2, 1] {
        if words - i >= step {
            for k in 0..step {
                // SAFETY: word `i + k < words` on both sides.
                unsafe {
                    let value = src.add((i + k) * WORD).cast::<u64>().read_unaligned();
                    shared_word(dst.add((i + k) * WORD)).store(value, Ordering::Relaxed);
                }
            }
            i += step;
        }
    }
}

/// Copies the `dst.len()` shared bytes at `src` into `dst`, one aligned atomic word at a time.
///
/// # Safety
/// `src..src + dst.len()` lies inside a live mapping of this module, and nobody accesses the
/// aligned words it touches non-atomically meanwhile (module docs).
#[inline(always)]
unsafe fn copy_out(src: *mut u8, dst: &mut [u8]) {
    if ((src as usize) | dst.len()).is_multiple_of(WORD) {
        // SAFETY: whole aligned words: the caller's range, and all of `dst`.
        unsafe { words_out(src, dst.as_mut_ptr(), dst.len() / WORD) }
    } else {
        // SAFETY: the caller's obligations.
        unsafe { copy_out_ragged(src, dst) }
    }
}

/// [`copy_out`] of a range that starts or ends inside a word (kept out of line: the whole-word
/// case is the common one, and stays small where it is inlined).
///
/// # Safety
/// As [`copy_out`].
#[inline(never)]
unsafe fn copy_out_ragged(src: *mut u8, dst: &mut [u8]) {
    let (len, out) = (dst.len(), dst.as_mut_ptr());
    let (first, skip) = word_of(src);
    let mut done = 0;
    if skip != 0 && len != 0 {
        done = (WORD - skip).min(len);
        // SAFETY: the word holding the first byte: aligned, and mapped because the mapping
        // starts on a page boundary and maps whole pages (module docs).
        let word = u64::from_le(unsafe { shared_word(first) }.load(Ordering::Relaxed));
        // SAFETY: `done <= len` bytes of `dst`.
        unsafe { scatter(out, done, word >> (8 * skip)) };
    }
    // `src + done` is aligned from here on (or nothing is left).
    let words = (len - done) / WORD;
    // SAFETY: `words` aligned shared words inside the caller's range, and as many bytes of
    // `dst` after the `done` written.
    unsafe { words_out(src.wrapping_add(done), out.wrapping_add(done), words) };
    done += words * WORD;
    if done < len {
        // SAFETY: the word holding the last byte starts at `src + done` (aligned, in range);
        // its bytes past the range are in the same page, so mapped (module docs). `len - done`
        // bytes of `dst` are left.
        unsafe {
            let word = u64::from_le(shared_word(src.add(done)).load(Ordering::Relaxed));
            scatter(out.add(done), len - done, word);
        }
    }
}

/// Copies `src` into the shared bytes at `dst`, one aligned atomic word at a time; a word the
/// range covers only in part is merged ([`merge_into`]).
///
/// # Safety
/// As [`copy_out`], for `dst..dst + src.len()`; the mapping is writable.
#[inline(always)]
unsafe fn copy_in(dst: *mut u8, src: &[u8]) {
    if ((dst as usize) | src.len()).is_multiple_of(WORD) {
        // SAFETY: whole aligned words: the caller's range, and all of `src`.
        unsafe { words_in(dst, src.as_ptr(), src.len() / WORD) }
    } else {
        // SAFETY: the caller's obligations.
        unsafe { copy_in_ragged(dst, src) }
    }
}

/// [`copy_in`] of a range that starts or ends inside a word (out of line, as
/// [`copy_out_ragged`]).
///
/// # Safety
/// As [`copy_in`].
#[inline(never)]
unsafe fn copy_in_ragged(dst: *mut u8, src: &[u8]) {
    let (len, from) = (src.len(), src.as_ptr());
    let (first, skip) = word_of(dst);
    let mut done = 0;
    if skip != 0 && len != 0 {
        done = (WORD - skip).min(len);
        // SAFETY: `done <= len` bytes of `src`; the aligned, mapped word holding the first
        // byte (as in `copy_out_ragged`).
        unsafe {
            let value = gather(from, done) << (8 * skip);
            merge_into(shared_word(first), byte_mask(skip, done), value);
        }
    }
    let words = (len - done) / WORD;
    // SAFETY: as in `copy_out`, the other way.
    unsafe { words_in(dst.wrapping_add(done), from.wrapping_add(done), words) };
    done += words * WORD;
    if done < len {
        // SAFETY: the last `len - done` bytes of `src`; the aligned, mapped word holding the
        // last byte (as in `copy_out_ragged`).
        unsafe {
            let value = gather(from.add(done), len - done);
            merge_into(shared_word(dst.add(done)), byte_mask(0, len - done), value);
        }
    }
}

/// Sets the `len` shared bytes at `dst` to `byte`, one aligned atomic word at a time.
///
/// # Safety
/// As [`copy_in`], for `dst..dst + len`.
unsafe fn fill_in(dst: *mut u8, len: usize, byte: u8) {
    let pattern = u64::from_ne_bytes([byte; WORD]);
    let (first, skip) = word_of(dst);
    let mut done = 0;
    if skip != 0 && len != 0 {
        done = (WORD - skip).min(len);
        let mask = byte_mask(skip, done);
        // SAFETY: the aligned, mapped word holding the first byte (as in `copy_out_ragged`).
        merge_into(unsafe { shared_word(first) }, mask, pattern & mask);
    }
    while len - done >= WORD {
        // SAFETY: an aligned word entirely inside the caller's range.
        unsafe { shared_word(dst.add(done)) }.store(pattern, Ordering::Relaxed);
        done += WORD;
    }
    if done < len {
        let mask = byte_mask(0, len - done);
        // SAFETY: the aligned, mapped word holding the last byte (as in `copy_out_ragged`).
        merge_into(unsafe { shared_word(dst.add(done)) }, mask, pattern & mask);
    }
}

impl SharedMemory {
    /// Creates a memfd-backed region of `size` bytes, zero-filled, whose bus address is its
    /// offset: the simulated guest's "physical memory". Another thread can use a clone; another
    /// process can map [`fd`](Self::fd) with [`map_fd`](Self::map_fd).
    pub fn memfd(name: &str, size: usize) -> Result<Self, MemError> {
        if size == 0 {
            return Err(MemError::Empty);
        }
        let cname = CString::new(name.replace('\0', "_")).expect("NULs were replaced");
        // SAFETY: `cname` is a valid NUL-terminated string; flags are valid.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(syscall_err("memfd_create"));
        }
        // SAFETY: `raw` is a freshly created fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: `fd` is a valid memfd.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } < 0 {
            return Err(syscall_err("ftruncate"));
        }
        let mut mem = Self::map_fd(fd.as_fd(), 0, size, 0)?;
        Arc::get_mut(&mut mem.map).expect("fresh mapping").fd = Some(fd);
        Ok(mem)
    }

    /// Creates an anonymous private region (not shareable with another process); for buffers
    /// that never leave this process.
    pub fn anonymous(size: usize) -> Result<Self, MemError> {
        if size == 0 {
            return Err(MemError::Empty);
        }
        // SAFETY: anonymous mapping with a null hint; the result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(syscall_err("mmap"));
        }
        Ok(Self {
            map: Arc::new(Mapping {
                ptr: ptr.cast(),
                len: size,
                fd: None,
            }),
            offset: 0,
            len: size,
            bus_base: 0,
        })
    }

    /// Maps `len` bytes of `fd` at `file_offset` shared and read-write, with `bus_base` as the
    /// bus address of the first byte. Used for memfds shared with another process and for the
    /// maps of a `/dev/uioN` device (where the file offset selects the map).
    pub fn map_fd(
        fd: BorrowedFd<'_>,
        file_offset: u64,
        len: usize,
        bus_base: u64,
    ) -> Result<Self, MemError> {
        if len == 0 {
            return Err(MemError::Empty);
        }
        // SAFETY: a fresh shared mapping of a caller-provided fd; failure is checked below and
        // the kernel validates the fd, offset and length.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                file_offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(syscall_err("mmap"));
        }
        Ok(Self {
            map: Arc::new(Mapping {
                ptr: ptr.cast(),
                len,
                fd: None,
            }),
            offset: 0,
            len,
            bus_base,
        })
    }

    /// The file behind the mapping, if it was created by [`memfd`](Self::memfd).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.map.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// Length of this view in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the view is empty (never true for a view made by this module's constructors).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bus address (guest-physical, IOVA, or simulated GPA) of byte `offset` of this view.
    pub fn bus_addr(&self, offset: usize) -> u64 {
        self.bus_base + offset as u64
    }

    /// Offset of this view inside the mapping it was cut from.
    pub fn offset_in_mapping(&self) -> usize {
        self.offset
    }

    /// A view of `len` bytes at `offset` of this view, sharing the mapping.
    pub fn subregion(&self, offset: usize, len: usize) -> Result<Self, MemError> {
        self.check(offset, len)?;
        Ok(Self {
            map: self.map.clone(),
            offset: self.offset + offset,
            len,
            bus_base: self.bus_base + offset as u64,
        })
    }

    /// The same bytes with another bus address for their first byte.
    pub fn with_bus_base(mut self, bus_base: u64) -> Self {
        self.bus_base = bus_base;
        self
    }

    /// Whether every byte of `other` is a byte of this view, at the bus address this view
    /// gives it (a device that reaches this view reaches `other` where `other` says).
    pub fn contains(&self, other: &Self) -> bool {
        let Some(start) = other.offset.checked_sub(self.offset) else {
            return false;
        };
        Arc::ptr_eq(&self.map, &other.map)
            && start
                .checked_add(other.len)
                .is_some_and(|end| end <= self.len)
            && other.bus_base == self.bus_base + start as u64
    }

    /// Whether two views cover the same bytes of the same mapping.
    pub fn same_memory(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.map, &other.map) && self.offset == other.offset && self.len == other.len
    }

    #[inline]
    fn check(&self, offset: usize, len: usize) -> Result<(), MemError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(MemError::OutOfBounds {
                offset,
                len,
                size: self.len,
            }),
        }
    }

    /// The address of the view's first byte, for handing the region to the kernel (an AF_XDP
    /// UMEM registration); reading or writing through it is the caller's `unsafe` to argue.
    #[inline]
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr(0)
    }

    /// Pointer to byte `offset` of this view; the caller has bounds-checked `offset..offset+len`.
    #[inline]
    fn ptr(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.len);
        // SAFETY: `self.offset + offset <= map.len` because views are only made inside the
        // mapping and callers check `offset` against `self.len`.
        unsafe { self.map.ptr.add(self.offset + offset) }
    }

    /// Copies `buf.len()` bytes at `offset` out of the region. The peer may write them
    /// meanwhile: each byte copied is then its old or its new value (the copy as a whole may be
    /// torn), which callers handle by validating what they copied.
    #[inline]
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemError> {
        self.read_inlined(offset, buf)
    }

    /// [`read`](Self::read), inlined where this crate copies a received frame into a packet
    /// (the one copy on every frame's path).
    #[inline(always)]
    pub(crate) fn read_inlined(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(offset, buf.len())?;
        // SAFETY: the range was bounds-checked against this view, which lies inside its live
        // mapping; the copy accesses shared bytes only atomically (module docs), so a peer
        // writing concurrently is not a data race. `buf` is a distinct Rust buffer.
        unsafe { copy_out(self.ptr(offset), buf) };
        Ok(())
    }

    /// Copies `buf` into the region at `offset`. Bytes of the region outside the range are
    /// never changed, even where the copy shares a word with them.
    #[inline]
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), MemError> {
        self.check(offset, buf.len())?;
        // SAFETY: as in `read`; the mapping is writable (every mapping is read-write).
        unsafe { copy_in(self.ptr(offset), buf) };
        Ok(())
    }

    /// Copies `buf` into the region at `offset`, then zeros up to `padded_len` bytes in all
    /// (`buf.len() <= padded_len`): [`write_padded_pair`](Self::write_padded_pair) with no
    /// head.
    #[inline]
    pub fn write_padded(
        &self,
        offset: usize,
        buf: &[u8],
        padded_len: usize,
    ) -> Result<(), MemError> {
        self.write_padded_pair(offset, &[], buf, padded_len)
    }

    /// Copies `head`, then `body` right after it, into the region at `offset`, then zeros up to
    /// `padded_len` bytes in all (`head.len() + body.len() <= padded_len`). Where `offset` lies
    /// on a word and `head.len()` and `padded_len` are whole numbers of words, every shared
    /// word is written whole with one store (the last bytes of `body` and the first zeros
    /// share one): no word is merged, which makes this the cheap way to lay out a message (a
    /// header and a frame) that the peer reads at an aligned offset. Anywhere else it is
    /// [`write`](Self::write) twice and [`fill`](Self::fill).
    pub fn write_padded_pair(
        &self,
        offset: usize,
        head: &[u8],
        body: &[u8],
        padded_len: usize,
    ) -> Result<(), MemError> {
        self.check(offset, padded_len)?;
        let len = head.len() + body.len();
        if len > padded_len {
            return Err(MemError::OutOfBounds {
                offset,
                len,
                size: padded_len,
            });
        }
        let dst = self.ptr(offset);
        if !((dst as usize) | head.len() | padded_len).is_multiple_of(WORD) {
            self.write(offset, head)?;
            self.write(offset + head.len(), body)?;
            return self.fill(offset + len, padded_len - len, 0);
        }
        // SAFETY: as in `write`: `offset..offset + padded_len` was bounds-checked against this
        // view and is made of whole aligned words (checked above), which are accessed only
        // atomically; `head` and `body` are Rust buffers, read for their whole words only.
        unsafe {
            words_in(dst, head.as_ptr(), head.len() / WORD);
            let at = dst.add(head.len());
            let words = body.len() / WORD;
            words_in(at, body.as_ptr(), words);
            let mut done = head.len() + words * WORD;
            let tail = len - done;
            if tail != 0 {
                // The last `tail < 8` bytes of `body`, zero-extended: the word at `done` is
                // whole inside the range (`done + 8 <= padded_len`, both multiples of 8).
                let value = gather(body.as_ptr().add(words * WORD), tail);
                shared_word(dst.add(done)).store(value.to_le(), Ordering::Relaxed);
                done += WORD;
            }
            while done < padded_len {
                shared_word(dst.add(done)).store(0, Ordering::Relaxed);
                done += WORD;
            }
        }
        Ok(())
    }

    /// Fills `len` bytes at `offset` with `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), MemError> {
        self.check(offset, len)?;
        // SAFETY: as in `write`.
        unsafe { fill_in(self.ptr(offset), len, byte) };
        Ok(())
    }

    /// Copies `len` bytes from `src_offset` of `src` to `dst_offset` of this region, through a
    /// small stack buffer (the bytes are shared on both sides, so they are moved with atomic
    /// accesses like [`read`](Self::read) and [`write`](Self::write)). The ranges may be in the
    /// same mapping; if they overlap, the result is as if the source had been copied out whole
    /// first.
    pub fn copy_from(
        &self,
        dst_offset: usize,
        src: &SharedMemory,
        src_offset: usize,
        len: usize,
    ) -> Result<(), MemError> {
        self.check(dst_offset, len)?;
        src.check(src_offset, len)?;
        let (from, to) = (src.ptr(src_offset), self.ptr(dst_offset));
        // Moving towards higher addresses over an overlap: copy the last step first, so every
        // step reads source bytes no earlier step has overwritten.
        let backwards = (to as usize) > (from as usize) && (to as usize) < (from as usize) + len;
        let mut bounce = [0u8; BOUNCE];
        let steps = len.div_ceil(BOUNCE);
        for step in 0..steps {
            let step = if backwards { steps - 1 - step } else { step };
            let at = step * BOUNCE;
            let n = (len - at).min(BOUNCE);
            // SAFETY: `at + n <= len`, and both ranges were bounds-checked for `len` bytes
            // against views that lie inside their live mappings; both copies are atomic (module
            // docs). `bounce` is a distinct Rust buffer.
            unsafe {
                copy_out(from.add(at), &mut bounce[..n]);
                copy_in(to.add(at), &bounce[..n]);
            }
        }
        Ok(())
    }

    /// Reads a plain wire struct at `offset`.
    pub fn read_obj<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, MemError> {
        let mut value = T::new_zeroed();
        self.read(offset, value.as_mut_bytes())?;
        Ok(value)
    }

    /// Writes a plain wire struct at `offset`.
    pub fn write_obj<T: IntoBytes + Immutable>(
        &self,
        offset: usize,
        value: &T,
    ) -> Result<(), MemError> {
        self.write(offset, value.as_bytes())
    }

    /// The naturally aligned 32-bit word at `offset`, as an atomic shared with the peer.
    pub fn atomic_u32(&self, offset: usize) -> Result<&AtomicU32, MemError> {
        self.check(offset, 4)?;
        let ptr = self.ptr(offset);
        if !(ptr as usize).is_multiple_of(4) {
            return Err(MemError::Misaligned { offset, align: 4 });
        }
        // SAFETY: in bounds, aligned, and the mapping lives as long as `self`; AtomicU32 has
        // the layout of u32 and every bit pattern is valid.
        Ok(unsafe { AtomicU32::from_ptr(ptr.cast()) })
    }

    /// The naturally aligned 64-bit word at `offset`, as an atomic shared with the peer.
    pub fn atomic_u64(&self, offset: usize) -> Result<&AtomicU64, MemError> {
        self.check(offset, 8)?;
        let ptr = self.ptr(offset);
        if !(ptr as usize).is_multiple_of(8) {
            return Err(MemError::Misaligned { offset, align: 8 });
        }
        // SAFETY: in bounds, aligned, and the mapping lives as long as `self`.
        Ok(unsafe { AtomicU64::from_ptr(ptr.cast()) })
    }

    /// The `count` naturally aligned 64-bit words at `offset`, as atomics shared with the peer:
    /// for a ring of fixed-size descriptors, bounds and alignment are checked once for the
    /// whole ring instead of at every access. As with [`atomic_u64`](Self::atomic_u64), the
    /// words must only be accessed atomically, as whole words, while the peer may use them
    /// (this module's own copies of them are such accesses).
    pub fn atomic_u64s(&self, offset: usize, count: usize) -> Result<&[AtomicU64], MemError> {
        self.atomic_u64s_or_none(offset, count)
            .ok_or_else(|| self.words_error(offset, count))
    }

    /// [`atomic_u64s`](Self::atomic_u64s) without the reason when it fails: small enough to
    /// inline where a ring looks at a few words of every packet it reads.
    #[inline]
    pub fn atomic_u64s_or_none(&self, offset: usize, count: usize) -> Option<&[AtomicU64]> {
        let end = count
            .checked_mul(WORD)
            .and_then(|len| offset.checked_add(len))?;
        if end > self.len {
            return None;
        }
        let ptr = self.ptr(offset);
        if !(ptr as usize).is_multiple_of(WORD) {
            return None;
        }
        // SAFETY: `count` words in bounds (so at most the mapping's length, below
        // `isize::MAX`), non-null and aligned; the mapping lives as long as `self`. AtomicU64
        // has the size and alignment of u64, and every bit pattern is valid; its interior
        // mutability lets the peer and our own atomic copies change the words meanwhile.
        Some(unsafe { std::slice::from_raw_parts(ptr.cast::<AtomicU64>(), count) })
    }

    /// Why [`atomic_u64s_or_none`](Self::atomic_u64s_or_none) refused `count` words at
    /// `offset`.
    #[cold]
    fn words_error(&self, offset: usize, count: usize) -> MemError {
        match count.checked_mul(WORD) {
            None => MemError::OutOfBounds {
                offset,
                len: usize::MAX,
                size: self.len,
            },
            Some(len) => match self.check(offset, len) {
                Err(e) => e,
                Ok(()) => MemError::Misaligned {
                    offset,
                    align: WORD,
                },
            },
        }
    }

    /// An exclusive byte slice over `offset..offset+len`.
    ///
    /// # Safety
    /// The caller must guarantee that for the lifetime of the slice no one else (in this
    /// process or outside it) reads or writes these bytes, nor copies (with this module) any
    /// byte of the aligned 8-byte words they lie in — such a copy reads whole words and may
    /// rewrite their other bytes with their own values (module docs): e.g. a pool buffer, a
    /// multiple of 64 bytes starting on a word boundary, owned by one
    /// [`Packet`](crate::Packet) and not currently handed to a peer.
    // The mutable slice comes from `&self` on purpose: exclusivity is not a property of this
    // view (views are cloned freely) but of the pool buffer the caller owns.
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub(crate) unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        if self.check(offset, len).is_err() {
            slice_out_of_bounds(offset, len, self.len);
        }
        // SAFETY: bounds checked above; exclusivity is the caller's obligation.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(offset), len) }
    }

    /// A shared byte slice over `offset..offset+len`.
    ///
    /// # Safety
    /// As [`slice_mut`](Self::slice_mut), for writers: nobody may write these bytes, nor copy
    /// into any byte of the aligned 8-byte words they lie in, while the slice lives.
    pub(crate) unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        assert!(self.check(offset, len).is_ok(), "slice out of bounds");
        // SAFETY: bounds checked above; the absence of writers is the caller's obligation.
        unsafe { std::slice::from_raw_parts(self.ptr(offset), len) }
    }
}

/// The panic of [`SharedMemory::slice_mut`] on a range outside its view (a bug of the caller's
/// bounds), out of line so that the check stays small where it is inlined.
#[cold]
#[inline(never)]
fn slice_out_of_bounds(offset: usize, len: usize, size: usize) -> ! {
    panic!("slice_mut out of bounds: {offset:#x}+{len:#x} > {size:#x}")
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_view_contains_its_subregions_at_their_bus_addresses_only() {
        let mem = SharedMemory::anonymous(8192)
            .unwrap()
            .with_bus_base(0x10_0000);
        let sub = mem.subregion(4096, 100).unwrap();
        assert!(mem.contains(&sub));
        assert!(mem.contains(&mem));
        assert!(!sub.contains(&mem), "larger than the view");
        assert!(
            !mem.contains(&sub.clone().with_bus_base(0)),
            "another bus address"
        );
        let other = SharedMemory::anonymous(8192)
            .unwrap()
            .with_bus_base(0x10_0000);
        assert!(
            !mem.contains(&other.subregion(0, 10).unwrap()),
            "another mapping"
        );
        let window = mem.subregion(4096, 4096).unwrap();
        assert!(
            !window.contains(&mem.subregion(0, 10).unwrap()),
            "before the view"
        );
    }
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn memfd_is_shared_between_views_and_mappings() {
        let mem = SharedMemory::memfd("t", 8192).unwrap();
        let sub = mem.subregion(4096, 4096).unwrap();
        sub.write(10, b"hello").unwrap();
        let mut buf = [0u8; 5];
        mem.read(4106, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(sub.bus_addr(10), 4106);

        let again = SharedMemory::map_fd(mem.fd().unwrap(), 0, 8192, 0).unwrap();
        again.read(4106, &mut buf).unwrap();
        assert_eq!(&buf, b"hello");
        again.atomic_u32(0).unwrap().store(7, Ordering::SeqCst);
        assert_eq!(mem.atomic_u32(0).unwrap().load(Ordering::SeqCst), 7);
    }

    #[test]
    fn out_of_bounds_and_misaligned_accesses_are_errors() {
        let mem = SharedMemory::anonymous(4096).unwrap();
        assert!(matches!(
            mem.read(4090, &mut [0u8; 8]),
            Err(MemError::OutOfBounds { .. })
        ));
        assert!(mem.write(usize::MAX, b"x").is_err());
        assert!(mem.subregion(4000, 200).is_err());
        assert!(matches!(
            mem.atomic_u32(2),
            Err(MemError::Misaligned { .. })
        ));
        assert!(mem.atomic_u64(4092).is_err());
        assert!(matches!(SharedMemory::memfd("z", 0), Err(MemError::Empty)));
        assert!(matches!(
            mem.atomic_u64s(4, 2),
            Err(MemError::Misaligned { .. })
        ));
        assert!(matches!(
            mem.atomic_u64s(4088, 2),
            Err(MemError::OutOfBounds { .. })
        ));
        assert!(mem.atomic_u64s(0, usize::MAX).is_err());
    }

    #[test]
    fn atomic_word_slices_see_the_bytes_copies_write() {
        let mem = SharedMemory::anonymous(4096).unwrap();
        let view = mem.subregion(64, 128).unwrap();
        let words = view.atomic_u64s(8, 15).unwrap();
        assert_eq!(words.len(), 15);
        assert!(view.atomic_u64s(8, 16).is_err(), "one word past the view");
        mem.write(72, &0x1122_3344_5566_7788u64.to_ne_bytes())
            .unwrap();
        assert_eq!(words[0].load(Ordering::Relaxed), 0x1122_3344_5566_7788);
        words[14].store(0xAB, Ordering::Relaxed);
        let mut back = [0u8; 8];
        mem.read(64 + 8 + 14 * 8, &mut back).unwrap();
        assert_eq!(u64::from_ne_bytes(back), 0xAB);
    }

    /// The byte a copy test expects at absolute offset `at` from the writer with `key`.
    fn pattern(at: usize, key: u8) -> u8 {
        (at as u8).wrapping_mul(13) ^ key
    }

    /// Writes `len` pattern bytes at `offset` of `view`, reads them back, and checks the whole
    /// mapping: the range holds the pattern, every other byte its background value.
    fn round_trip(mem: &SharedMemory, view: &SharedMemory, offset: usize, len: usize) {
        let base = view.offset_in_mapping();
        mem.fill(0, mem.len(), 0xEE).unwrap();
        let data: Vec<u8> = (0..len).map(|i| pattern(base + offset + i, 0x5A)).collect();
        view.write(offset, &data).unwrap();
        let mut back = vec![0u8; len];
        view.read(offset, &mut back).unwrap();
        assert_eq!(
            back, data,
            "read back at {offset:#x}+{len} of a view at {base:#x}"
        );
        let mut all = vec![0u8; mem.len()];
        mem.read(0, &mut all).unwrap();
        for (at, &byte) in all.iter().enumerate() {
            let inside = (base + offset..base + offset + len).contains(&at);
            let want = if inside { pattern(at, 0x5A) } else { 0xEE };
            assert_eq!(
                byte, want,
                "byte {at:#x} after {offset:#x}+{len} at {base:#x}"
            );
        }
    }

    #[test]
    fn copies_round_trip_at_every_alignment_and_leave_their_neighbours_alone() {
        let mem = SharedMemory::anonymous(256).unwrap();
        for start in 0..8 {
            let view = mem.subregion(start, 200).unwrap();
            for offset in 0..17 {
                for len in 0..40 {
                    round_trip(&mem, &view, offset, len);
                }
            }
        }
    }

    #[test]
    fn write_padded_writes_the_bytes_then_zeros_and_nothing_else() {
        let mem = SharedMemory::anonymous(256).unwrap();
        for start in 0..8 {
            let view = mem.subregion(start, 200).unwrap();
            for offset in [0, 3, 8, 16, 21] {
                for len in 0usize..30 {
                    for padded in [len, len.next_multiple_of(8), len.next_multiple_of(8) + 16] {
                        mem.fill(0, 256, 0xEE).unwrap();
                        let data: Vec<u8> = (0..len).map(|i| pattern(i, 0x77)).collect();
                        view.write_padded(offset, &data, padded).unwrap();
                        let mut all = [0u8; 256];
                        mem.read(0, &mut all).unwrap();
                        let at = start + offset;
                        for (i, &byte) in all.iter().enumerate() {
                            let want = if (at..at + len).contains(&i) {
                                pattern(i - at, 0x77)
                            } else if (at + len..at + padded).contains(&i) {
                                0
                            } else {
                                0xEE
                            };
                            assert_eq!(byte, want, "byte {i}: {len} padded to {padded} at {at}");
                        }
                    }
                }
            }
        }
        // A head and a body: whole words when the head is, merged writes otherwise.
        for head_len in [0usize, 5, 8, 16] {
            for len in 0usize..20 {
                let padded = (head_len + len).next_multiple_of(8) + 8;
                mem.fill(0, 256, 0xEE).unwrap();
                let head: Vec<u8> = (0..head_len).map(|i| pattern(i, 1)).collect();
                let body: Vec<u8> = (0..len).map(|i| pattern(i, 2)).collect();
                mem.write_padded_pair(16, &head, &body, padded).unwrap();
                let mut all = [0u8; 256];
                mem.read(0, &mut all).unwrap();
                let mut want = vec![0xEEu8; 256];
                want[16..16 + head_len].copy_from_slice(&head);
                want[16 + head_len..16 + head_len + len].copy_from_slice(&body);
                want[16 + head_len + len..16 + padded].fill(0);
                assert_eq!(all.to_vec(), want, "head {head_len} body {len}");
            }
        }
        assert!(
            mem.write_padded(0, &[1; 9], 8).is_err(),
            "longer than its padding"
        );
        assert!(mem.write_padded_pair(0, &[1; 8], &[1; 1], 8).is_err());
        assert!(
            mem.write_padded(250, &[1; 4], 8).is_err(),
            "past the region"
        );
    }

    #[test]
    fn fill_sets_exactly_its_range() {
        let mem = SharedMemory::anonymous(64).unwrap();
        for offset in 0..20 {
            for len in 0..30 {
                mem.fill(0, 64, 1).unwrap();
                mem.fill(offset, len, 9).unwrap();
                let mut all = [0u8; 64];
                mem.read(0, &mut all).unwrap();
                for (at, &byte) in all.iter().enumerate() {
                    let want = if (offset..offset + len).contains(&at) {
                        9
                    } else {
                        1
                    };
                    assert_eq!(byte, want, "byte {at} after fill {offset}+{len}");
                }
            }
        }
    }

    #[test]
    fn copy_from_moves_overlapping_ranges_like_memmove() {
        let mem = SharedMemory::anonymous(4096).unwrap();
        for (src, dst, len) in [(0, 3, 1000), (3, 0, 1000), (5, 700, 600), (700, 5, 600)] {
            let data: Vec<u8> = (0..len).map(|i| pattern(i, 0x33)).collect();
            mem.write(src, &data).unwrap();
            mem.copy_from(dst, &mem, src, len).unwrap();
            let mut back = vec![0u8; len];
            mem.read(dst, &mut back).unwrap();
            assert_eq!(back, data, "{len} bytes from {src} to {dst}");
        }
        let other = SharedMemory::anonymous(64).unwrap();
        assert!(matches!(
            other.copy_from(60, &mem, 0, 8),
            Err(MemError::OutOfBounds { .. })
        ));
        assert!(mem.copy_from(0, &other, 60, 8).is_err());
    }

    proptest::proptest! {
        #[test]
        fn copies_round_trip_for_any_view_offset_and_length(
            start in 0usize..64,
            offset in 0usize..2048,
            len in 0usize..1600,
        ) {
            let mem = SharedMemory::anonymous(4096).unwrap();
            let view = mem.subregion(start, 4096 - start).unwrap();
            round_trip(&mem, &view, offset, len);
        }
    }

    /// A small deterministic generator for the concurrency tests.
    struct XorShift(u64);

    impl XorShift {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    #[test]
    fn a_copy_racing_writers_reads_only_bytes_some_writer_wrote() {
        const SIZE: usize = 4096;
        const KEYS: [u8; 3] = [0x00, 0x55, 0xAA];
        let mem = SharedMemory::memfd("race", SIZE).unwrap();
        let initial: Vec<u8> = (0..SIZE).map(|at| pattern(at, KEYS[0])).collect();
        mem.write(0, &initial).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for (seed, key) in [(1u64, KEYS[1]), (2, KEYS[2])] {
                let (mem, stop) = (mem.clone(), &stop);
                scope.spawn(move || {
                    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let mut buf = vec![0u8; SIZE];
                    while !stop.load(Ordering::Relaxed) {
                        let offset = rng.below(SIZE);
                        let len = rng.below(SIZE - offset + 1);
                        for (i, b) in buf[..len].iter_mut().enumerate() {
                            *b = pattern(offset + i, key);
                        }
                        mem.write(offset, &buf[..len]).unwrap();
                    }
                });
            }
            // Stops the writers however the reader ends (a failed assertion included), so the
            // scope can join them.
            let _stop = StopOnDrop(&stop);
            let mut rng = XorShift(0xDEAD_BEEF);
            let mut buf = vec![0u8; SIZE];
            for _ in 0..20_000 {
                let offset = rng.below(SIZE);
                let len = rng.below(SIZE - offset + 1);
                mem.read(offset, &mut buf[..len]).unwrap();
                for (i, &b) in buf[..len].iter().enumerate() {
                    let at = offset + i;
                    assert!(
                        KEYS.iter().any(|&k| pattern(at, k) == b),
                        "byte {at:#x} read as {b:#04x}, which no writer wrote there"
                    );
                }
            }
        });
    }

    /// Sets the flag when dropped.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// Small enough for Miri, whose data-race detector reports the race a plain `memcpy` from
    /// shared memory is (`cargo +nightly miri test -p packet racing`); natively it checks
    /// what the larger test above checks.
    #[test]
    fn a_read_racing_a_write_of_the_same_bytes_is_not_a_data_race() {
        let mem = SharedMemory::anonymous(64).unwrap();
        mem.fill(0, 64, 1).unwrap();
        let writer = mem.clone();
        let thread = std::thread::spawn(move || {
            for value in 2..6u8 {
                writer.write(3, &[value; 50]).unwrap();
            }
        });
        let mut buf = [0u8; 60];
        for _ in 0..4 {
            mem.read(1, &mut buf).unwrap();
            assert!(buf[..2].iter().all(|&b| b == 1), "{buf:?}");
            assert!(buf[2..52].iter().all(|&b| (1..6).contains(&b)), "{buf:?}");
            assert!(buf[52..].iter().all(|&b| b == 1), "{buf:?}");
        }
        thread.join().unwrap();
    }

    #[test]
    fn writers_sharing_words_never_undo_each_other() {
        // Writer `w` owns bytes 8k + 3w .. 8k + 3w + 3 of every word (w = 0, 1; bytes 6 and 7
        // are nobody's): each write is partial in every word, so the two writers merge into
        // the same words all the time. Whatever the interleaving, once both are done every
        // byte holds its own writer's last value.
        const WORDS: usize = 64;
        let mem = SharedMemory::memfd("merge", WORDS * 8).unwrap();
        mem.fill(0, WORDS * 8, 0xEE).unwrap();
        const ROUNDS: usize = 5000;
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            for w in 0..2usize {
                let (mem, start) = (mem.clone(), &start);
                scope.spawn(move || {
                    start.wait();
                    let value = |round: usize| round as u8 ^ (w as u8 * 0x80);
                    let mut mine = [0u8; 3];
                    for round in 1..=ROUNDS {
                        for k in 0..WORDS {
                            let at = 8 * k + 3 * w;
                            if round > 1 {
                                // Nobody else writes these bytes: they still hold our last
                                // value, unless the other writer's merge put back an old one.
                                mem.read(at, &mut mine).unwrap();
                                assert_eq!(mine, [value(round - 1); 3], "writer {w} word {k}");
                            }
                            mem.write(at, &[value(round); 3]).unwrap();
                        }
                    }
                });
            }
        });
        let mut all = vec![0u8; WORDS * 8];
        mem.read(0, &mut all).unwrap();
        for (at, &byte) in all.iter().enumerate() {
            let want = match at % 8 {
                0..=2 => ROUNDS as u8,
                3..=5 => ROUNDS as u8 ^ 0x80,
                _ => 0xEE,
            };
            assert_eq!(byte, want, "byte {at}");
        }
    }
}
