//! Shared memory regions with bus addresses.
//!
//! A [`SharedMemory`] is a view (offset, length) into an `mmap`ed mapping that is kept alive by
//! reference counting, so views can be cloned and sent to other threads. The mapping is shared
//! with a peer (the host, a device, another process) that may write to it at any time: nothing
//! here hands out a `&[u8]` over shared bytes. Reads copy out, writes copy in, and control words
//! are reached as atomics.
//!
//! This module opts in to `unsafe`: it owns the `memfd_create`/`mmap`/`munmap` calls and the
//! raw-pointer accesses, each bounds-checked before the pointer is formed.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

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

    /// Pointer to byte `offset` of this view; the caller has bounds-checked `offset..offset+len`.
    fn ptr(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset <= self.len);
        // SAFETY: `self.offset + offset <= map.len` because views are only made inside the
        // mapping and callers check `offset` against `self.len`.
        unsafe { self.map.ptr.add(self.offset + offset) }
    }

    /// Copies `buf.len()` bytes at `offset` out of the region.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<(), MemError> {
        self.check(offset, buf.len())?;
        // SAFETY: the source range was bounds-checked; the destination is a distinct Rust
        // buffer. The peer may write concurrently: the copy is then torn, which callers handle
        // by validating what they copied.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `buf` into the region at `offset`.
    pub fn write(&self, offset: usize, buf: &[u8]) -> Result<(), MemError> {
        self.check(offset, buf.len())?;
        // SAFETY: the destination range was bounds-checked and lies in writable shared memory;
        // the source is a distinct Rust buffer.
        unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), self.ptr(offset), buf.len()) };
        Ok(())
    }

    /// Fills `len` bytes at `offset` with `byte`.
    pub fn fill(&self, offset: usize, len: usize, byte: u8) -> Result<(), MemError> {
        self.check(offset, len)?;
        // SAFETY: the range was bounds-checked.
        unsafe { std::ptr::write_bytes(self.ptr(offset), byte, len) };
        Ok(())
    }

    /// Copies `len` bytes from `src_offset` of `src` to `dst_offset` of this region, without an
    /// intermediate buffer. The two ranges may be in the same mapping but must not overlap.
    pub fn copy_from(
        &self,
        dst_offset: usize,
        src: &SharedMemory,
        src_offset: usize,
        len: usize,
    ) -> Result<(), MemError> {
        self.check(dst_offset, len)?;
        src.check(src_offset, len)?;
        // SAFETY: both ranges were bounds-checked; `copy` tolerates overlap.
        unsafe { std::ptr::copy(src.ptr(src_offset), self.ptr(dst_offset), len) };
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

    /// An exclusive byte slice over `offset..offset+len`.
    ///
    /// # Safety
    /// The caller must guarantee that for the lifetime of the slice no one else (in this
    /// process or outside it) reads or writes these bytes: e.g. a pool buffer owned by one
    /// [`Packet`](crate::Packet) and not currently handed to a peer.
    // The mutable slice comes from `&self` on purpose: exclusivity is not a property of this
    // view (views are cloned freely) but of the pool buffer the caller owns.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice_mut(&self, offset: usize, len: usize) -> &mut [u8] {
        assert!(
            self.check(offset, len).is_ok(),
            "slice_mut out of bounds: {offset:#x}+{len:#x} > {:#x}",
            self.len
        );
        // SAFETY: bounds checked above; exclusivity is the caller's obligation.
        unsafe { std::slice::from_raw_parts_mut(self.ptr(offset), len) }
    }

    /// A shared byte slice over `offset..offset+len`.
    ///
    /// # Safety
    /// As [`slice_mut`](Self::slice_mut): nobody may write these bytes while the slice lives.
    pub(crate) unsafe fn slice(&self, offset: usize, len: usize) -> &[u8] {
        assert!(self.check(offset, len).is_ok(), "slice out of bounds");
        // SAFETY: bounds checked above; the absence of writers is the caller's obligation.
        unsafe { std::slice::from_raw_parts(self.ptr(offset), len) }
    }
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
    }
}
