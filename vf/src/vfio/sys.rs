//! Every system call of the VFIO backend: the `/dev/vfio` opens and ioctls, region `mmap`s,
//! pinned DMA memory and eventfds.
//!
//! [`VfioSys`] is the seam: [`KernelVfio`] talks to the kernel, and the scripted fake twin
//! (`fake::FakeVfio`, built for tests and with the `test-utils` feature) returns programmed answers so the logic in
//! [`super`] is tested without `/dev/vfio`. File descriptors cross the seam as [`OwnedFd`]s;
//! the logic gives each one back through [`VfioSys::close`] so the release order can be observed.
//!
//! The eventfd calls are free functions used by [`crate::device::EventFd`]: eventfds are real in
//! tests too (the fake hands them out as stand-in descriptors).
//!
//! This module opts in to `unsafe` because it is the only place that calls `ioctl`,
//! `memfd_create`, `mlock`, `eventfd`, `poll`/`ppoll` and raw `read`/`write`/`pread`/`pwrite`; each block
//! says why its pointers are valid.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use packet::{MemError, SharedMemory};
use vfio_bindings::bindings::vfio as b;

/// The `_IO(VFIO_TYPE, VFIO_BASE + nr)` request number: VFIO ioctls encode no size or direction.
/// Typed as `libc::Ioctl` (`c_ulong` on glibc, `c_int` on musl, for static guest binaries).
const fn vfio_io(nr: u32) -> libc::Ioctl {
    (((b::VFIO_TYPE as u32) << 8) | (b::VFIO_BASE + nr)) as libc::Ioctl
}

const VFIO_GET_API_VERSION: libc::Ioctl = vfio_io(0);
const VFIO_CHECK_EXTENSION: libc::Ioctl = vfio_io(1);
const VFIO_SET_IOMMU: libc::Ioctl = vfio_io(2);
const VFIO_GROUP_GET_STATUS: libc::Ioctl = vfio_io(3);
const VFIO_GROUP_SET_CONTAINER: libc::Ioctl = vfio_io(4);
const VFIO_GROUP_GET_DEVICE_FD: libc::Ioctl = vfio_io(6);
const VFIO_DEVICE_GET_INFO: libc::Ioctl = vfio_io(7);
const VFIO_DEVICE_GET_REGION_INFO: libc::Ioctl = vfio_io(8);
const VFIO_DEVICE_GET_IRQ_INFO: libc::Ioctl = vfio_io(9);
const VFIO_DEVICE_SET_IRQS: libc::Ioctl = vfio_io(10);
const VFIO_DEVICE_RESET: libc::Ioctl = vfio_io(11);
const VFIO_IOMMU_MAP_DMA: libc::Ioctl = vfio_io(13);
const VFIO_IOMMU_UNMAP_DMA: libc::Ioctl = vfio_io(14);

/// Size of one huge page used for pinned DMA memory (x86-64 default hugetlb size).
pub const HUGE_PAGE_SIZE: usize = 2 << 20;

/// What `VFIO_DEVICE_GET_INFO` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions (BARs, ROM, config space, ...).
    pub num_regions: u32,
    /// Number of IRQ indexes (INTx, MSI, MSI-X, ERR, REQ).
    pub num_irqs: u32,
}

/// What `VFIO_DEVICE_GET_REGION_INFO` reports for one region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegionInfo {
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size of the region in bytes (0: not implemented).
    pub size: u64,
    /// Offset of the region in the device fd, for `pread`/`pwrite`/`mmap`.
    pub offset: u64,
}

/// What `VFIO_DEVICE_GET_IRQ_INFO` reports for one IRQ index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqInfo {
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// Number of vectors of this index.
    pub count: u32,
}

/// The system calls the VFIO backend makes, one method per call.
///
/// Implementations: [`KernelVfio`] (the kernel) and the scripted fake twin. Every method maps
/// to exactly one kernel operation; no policy lives here.
pub trait VfioSys: Send + Sync + fmt::Debug {
    /// Opens the container node (`/dev/vfio/vfio`).
    fn open_container(&self, path: &Path) -> io::Result<OwnedFd>;
    /// `VFIO_GET_API_VERSION`.
    fn api_version(&self, container: BorrowedFd<'_>) -> io::Result<u32>;
    /// `VFIO_CHECK_EXTENSION`: whether the container supports IOMMU type `extension`.
    fn check_extension(&self, container: BorrowedFd<'_>, extension: u32) -> io::Result<bool>;
    /// `VFIO_SET_IOMMU`.
    fn set_iommu(&self, container: BorrowedFd<'_>, iommu_type: u32) -> io::Result<()>;
    /// Opens a group node (`/dev/vfio/<n>` or `/dev/vfio/noiommu-<n>`).
    fn open_group(&self, path: &Path) -> io::Result<OwnedFd>;
    /// `VFIO_GROUP_GET_STATUS`: the `VFIO_GROUP_FLAGS_*` word.
    fn group_status(&self, group: BorrowedFd<'_>) -> io::Result<u32>;
    /// `VFIO_GROUP_SET_CONTAINER`.
    fn set_container(&self, group: BorrowedFd<'_>, container: BorrowedFd<'_>) -> io::Result<()>;
    /// `VFIO_GROUP_GET_DEVICE_FD` for the device named `name` (its PCI address).
    fn get_device_fd(&self, group: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd>;
    /// `VFIO_DEVICE_GET_INFO`.
    fn device_info(&self, device: BorrowedFd<'_>) -> io::Result<DeviceInfo>;
    /// `VFIO_DEVICE_GET_REGION_INFO` for region `index`.
    fn region_info(&self, device: BorrowedFd<'_>, index: u32) -> io::Result<RegionInfo>;
    /// `VFIO_DEVICE_GET_IRQ_INFO` for IRQ `index`.
    fn irq_info(&self, device: BorrowedFd<'_>, index: u32) -> io::Result<IrqInfo>;
    /// `VFIO_DEVICE_SET_IRQS` with `DATA_EVENTFD | ACTION_TRIGGER`: binds `eventfds` to vectors
    /// `start..start + eventfds.len()` of IRQ `index`. An empty list with `start` 0 disables the
    /// index (`DATA_NONE`, count 0).
    fn set_irqs(
        &self,
        device: BorrowedFd<'_>,
        index: u32,
        start: u32,
        eventfds: &[BorrowedFd<'_>],
    ) -> io::Result<()>;
    /// `VFIO_IOMMU_MAP_DMA`, read and write, of `size` bytes at user address `vaddr` to `iova`.
    fn map_dma(
        &self,
        container: BorrowedFd<'_>,
        vaddr: u64,
        iova: u64,
        size: u64,
    ) -> io::Result<()>;
    /// `VFIO_IOMMU_UNMAP_DMA` of a whole earlier mapping.
    fn unmap_dma(&self, container: BorrowedFd<'_>, iova: u64, size: u64) -> io::Result<()>;
    /// `VFIO_DEVICE_RESET`.
    fn reset(&self, device: BorrowedFd<'_>) -> io::Result<()>;
    /// Maps `len` bytes of a region at device-fd offset `offset`.
    fn mmap_region(
        &self,
        device: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> Result<SharedMemory, MemError>;
    /// `pread` of `buf.len()` bytes at device-fd offset `offset` (config space access).
    fn region_read(&self, device: BorrowedFd<'_>, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// `pwrite` of `buf` at device-fd offset `offset`.
    fn region_write(&self, device: BorrowedFd<'_>, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Allocates `size` bytes (rounded up to whole [`HUGE_PAGE_SIZE`] pages) of hugetlb memory
    /// locked in RAM (`mlock`ed, faulted in). Hugetlb pages are never migrated or compacted, so
    /// their physical addresses stay what `/proc/self/pagemap` said. Fails with `ENOMEM` when
    /// too few huge pages are free (the kernel reserves them when the memory is mapped). There
    /// is no fallback to small pages: those may be moved while a device holds their address.
    /// The returned region's bus base is 0; the caller sets it.
    fn alloc_pinned(&self, size: usize) -> io::Result<SharedMemory>;
    /// Closes a descriptor this trait handed out. The logic calls it in release order.
    fn close(&self, fd: OwnedFd) {
        drop(fd);
    }
}

/// The kernel implementation of [`VfioSys`].
#[derive(Clone, Copy, Debug, Default)]
pub struct KernelVfio;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// An ioctl whose argument is a plain integer (or absent).
fn ioctl_val(fd: BorrowedFd<'_>, request: libc::Ioctl, arg: libc::c_ulong) -> io::Result<i32> {
    // SAFETY: the argument is passed by value; the kernel does not dereference it for the VFIO
    // requests used with this helper (API version, extension check, set IOMMU, reset).
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) })
}

/// An ioctl whose argument is a pointer to `arg`.
fn ioctl_ref<T>(fd: BorrowedFd<'_>, request: libc::Ioctl, arg: &mut T) -> io::Result<i32> {
    // SAFETY: `arg` is a live, exclusively borrowed value of the `#[repr(C)]` type the request
    // expects, and its `argsz` (where present) was set by the caller to its size, so the kernel
    // reads and writes only inside it.
    cvt(unsafe { libc::ioctl(fd.as_raw_fd(), request, std::ptr::from_mut(arg)) })
}

fn open_rw(path: &Path) -> io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    Ok(file.into())
}

fn argsz<T>() -> u32 {
    size_of::<T>() as u32
}

/// The user-space address of the first byte of `mem`, for `VFIO_IOMMU_MAP_DMA`, `mlock` and
/// `/proc/self/pagemap`.
pub fn vaddr_of(mem: &SharedMemory) -> u64 {
    // Regions made by `SharedMemory`'s constructors start page-aligned, so the atomic view of the
    // first word exists; its address is the address of the mapping.
    match mem.atomic_u32(0) {
        Ok(word) => std::ptr::from_ref(word) as u64,
        Err(_) => 0,
    }
}

impl VfioSys for KernelVfio {
    fn open_container(&self, path: &Path) -> io::Result<OwnedFd> {
        open_rw(path)
    }

    fn api_version(&self, container: BorrowedFd<'_>) -> io::Result<u32> {
        ioctl_val(container, VFIO_GET_API_VERSION, 0).map(|v| v as u32)
    }

    fn check_extension(&self, container: BorrowedFd<'_>, extension: u32) -> io::Result<bool> {
        ioctl_val(container, VFIO_CHECK_EXTENSION, extension.into()).map(|v| v > 0)
    }

    fn set_iommu(&self, container: BorrowedFd<'_>, iommu_type: u32) -> io::Result<()> {
        ioctl_val(container, VFIO_SET_IOMMU, iommu_type.into()).map(drop)
    }

    fn open_group(&self, path: &Path) -> io::Result<OwnedFd> {
        open_rw(path)
    }

    fn group_status(&self, group: BorrowedFd<'_>) -> io::Result<u32> {
        let mut status = b::vfio_group_status {
            argsz: argsz::<b::vfio_group_status>(),
            flags: 0,
        };
        ioctl_ref(group, VFIO_GROUP_GET_STATUS, &mut status)?;
        Ok(status.flags)
    }

    fn set_container(&self, group: BorrowedFd<'_>, container: BorrowedFd<'_>) -> io::Result<()> {
        let mut fd: libc::c_int = container.as_raw_fd();
        ioctl_ref(group, VFIO_GROUP_SET_CONTAINER, &mut fd).map(drop)
    }

    fn get_device_fd(&self, group: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
        let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the argument is a valid NUL-terminated string that outlives the call; the
        // kernel only reads it.
        let raw = cvt(unsafe {
            libc::ioctl(group.as_raw_fd(), VFIO_GROUP_GET_DEVICE_FD, name.as_ptr())
        })?;
        // SAFETY: on success the ioctl returns a new descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(raw) })
    }

    fn device_info(&self, device: BorrowedFd<'_>) -> io::Result<DeviceInfo> {
        let mut info = b::vfio_device_info {
            argsz: argsz::<b::vfio_device_info>(),
            ..Default::default()
        };
        ioctl_ref(device, VFIO_DEVICE_GET_INFO, &mut info)?;
        Ok(DeviceInfo {
            flags: info.flags,
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
        })
    }

    fn region_info(&self, device: BorrowedFd<'_>, index: u32) -> io::Result<RegionInfo> {
        let mut info = b::vfio_region_info {
            argsz: argsz::<b::vfio_region_info>(),
            index,
            ..Default::default()
        };
        ioctl_ref(device, VFIO_DEVICE_GET_REGION_INFO, &mut info)?;
        Ok(RegionInfo {
            flags: info.flags,
            size: info.size,
            offset: info.offset,
        })
    }

    fn irq_info(&self, device: BorrowedFd<'_>, index: u32) -> io::Result<IrqInfo> {
        let mut info = b::vfio_irq_info {
            argsz: argsz::<b::vfio_irq_info>(),
            index,
            ..Default::default()
        };
        ioctl_ref(device, VFIO_DEVICE_GET_IRQ_INFO, &mut info)?;
        Ok(IrqInfo {
            flags: info.flags,
            count: info.count,
        })
    }

    fn set_irqs(
        &self,
        device: BorrowedFd<'_>,
        index: u32,
        start: u32,
        eventfds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        // `struct vfio_irq_set` is five u32s followed by the data: one s32 per eventfd. A
        // `Vec<u32>` gives the buffer the struct's 4-byte alignment.
        const HEADER_WORDS: usize = size_of::<b::vfio_irq_set>() / 4;
        let flags = if eventfds.is_empty() {
            b::VFIO_IRQ_SET_DATA_NONE | b::VFIO_IRQ_SET_ACTION_TRIGGER
        } else {
            b::VFIO_IRQ_SET_DATA_EVENTFD | b::VFIO_IRQ_SET_ACTION_TRIGGER
        };
        let mut buf = vec![0u32; HEADER_WORDS + eventfds.len()];
        buf[0] = (buf.len() * 4) as u32;
        buf[1] = flags;
        buf[2] = index;
        buf[3] = start;
        buf[4] = eventfds.len() as u32;
        for (slot, fd) in buf[HEADER_WORDS..].iter_mut().zip(eventfds) {
            *slot = fd.as_raw_fd() as u32;
        }
        // SAFETY: `buf` is a properly sized and aligned `vfio_irq_set` with `argsz` equal to its
        // length in bytes and `count` data entries; the kernel only reads it.
        cvt(unsafe { libc::ioctl(device.as_raw_fd(), VFIO_DEVICE_SET_IRQS, buf.as_mut_ptr()) })
            .map(drop)
    }

    fn map_dma(
        &self,
        container: BorrowedFd<'_>,
        vaddr: u64,
        iova: u64,
        size: u64,
    ) -> io::Result<()> {
        let mut map = b::vfio_iommu_type1_dma_map {
            argsz: argsz::<b::vfio_iommu_type1_dma_map>(),
            flags: b::VFIO_DMA_MAP_FLAG_READ | b::VFIO_DMA_MAP_FLAG_WRITE,
            vaddr,
            iova,
            size,
        };
        ioctl_ref(container, VFIO_IOMMU_MAP_DMA, &mut map).map(drop)
    }

    fn unmap_dma(&self, container: BorrowedFd<'_>, iova: u64, size: u64) -> io::Result<()> {
        let mut unmap = b::vfio_iommu_type1_dma_unmap {
            argsz: argsz::<b::vfio_iommu_type1_dma_unmap>(),
            iova,
            size,
            ..Default::default()
        };
        ioctl_ref(container, VFIO_IOMMU_UNMAP_DMA, &mut unmap)?;
        if unmap.size != size {
            return Err(io::Error::other(format!(
                "unmapped {:#x} bytes of a {size:#x}-byte mapping",
                unmap.size
            )));
        }
        Ok(())
    }

    fn reset(&self, device: BorrowedFd<'_>) -> io::Result<()> {
        ioctl_val(device, VFIO_DEVICE_RESET, 0).map(drop)
    }

    fn mmap_region(
        &self,
        device: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> Result<SharedMemory, MemError> {
        SharedMemory::map_fd(device, offset, len, 0)
    }

    fn region_read(&self, device: BorrowedFd<'_>, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        // SAFETY: `buf` is a live exclusive buffer of `buf.len()` bytes.
        let n = unsafe {
            libc::pread(
                device.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        short_io(n, buf.len())
    }

    fn region_write(&self, device: BorrowedFd<'_>, offset: u64, buf: &[u8]) -> io::Result<()> {
        // SAFETY: `buf` is a live buffer of `buf.len()` bytes that the kernel only reads.
        let n = unsafe {
            libc::pwrite(
                device.as_raw_fd(),
                buf.as_ptr().cast(),
                buf.len(),
                offset as libc::off_t,
            )
        };
        short_io(n, buf.len())
    }

    fn alloc_pinned(&self, size: usize) -> io::Result<SharedMemory> {
        let name = c"hvnet-dma";
        // SAFETY: `name` is a valid NUL-terminated string; the flags are valid.
        let raw = cvt(unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_HUGETLB)
        })?;
        // SAFETY: `raw` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = size.div_ceil(HUGE_PAGE_SIZE).max(1) * HUGE_PAGE_SIZE;
        // SAFETY: `fd` is a valid memfd; ftruncate takes no pointers.
        cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })?;
        let mem = SharedMemory::map_fd(fd.as_fd(), 0, len, 0).map_err(mem_to_io)?;
        // SAFETY: the range is exactly the mapping just created and still owned by `mem`;
        // mlock only changes its paging state (and faults it in).
        cvt(unsafe { libc::mlock(vaddr_of(&mem) as *const libc::c_void, mem.len()) })?;
        Ok(mem)
    }
}

fn short_io(n: isize, want: usize) -> io::Result<()> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else if n as usize != want {
        Err(io::Error::from(io::ErrorKind::UnexpectedEof))
    } else {
        Ok(())
    }
}

fn mem_to_io(err: MemError) -> io::Error {
    match err {
        MemError::Syscall { source, .. } => source,
        other => io::Error::other(other),
    }
}

/// Creates a non-blocking, close-on-exec eventfd with counter 0.
pub fn eventfd_create() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the result is checked.
    let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Reads and resets the eventfd counter: `Some(count)` if it was signalled, `None` if not.
pub fn eventfd_read(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let mut value = 0u64;
    // SAFETY: reads exactly 8 bytes into a live local u64.
    let n = unsafe { libc::read(fd.as_raw_fd(), std::ptr::from_mut(&mut value).cast(), 8) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(err)
        };
    }
    Ok(Some(value))
}

/// Adds `value` to the eventfd counter.
pub fn eventfd_write(fd: BorrowedFd<'_>, value: u64) -> io::Result<()> {
    // SAFETY: writes exactly 8 bytes from a live local u64.
    let n = unsafe { libc::write(fd.as_raw_fd(), std::ptr::from_ref(&value).cast(), 8) };
    short_io(n, 8)
}

/// Waits until `fd` is readable or `timeout` passes (millisecond resolution, rounded down);
/// returns whether it is readable. A signal interrupting the wait resumes it for the time
/// left until the deadline set on entry, so signals cannot stretch the wait. A `timeout` too
/// large for an `Instant` waits as long as `poll(2)` allows, again after each signal.
pub fn poll_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let deadline = std::time::Instant::now().checked_add(timeout);
    let mut ms = poll_millis(timeout);
    loop {
        // SAFETY: `pfd` is one live pollfd and the count is 1.
        let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                ms = millis_left(deadline, std::time::Instant::now());
                continue;
            }
            return Err(err);
        }
        return Ok(ret > 0 && pfd.revents & libc::POLLIN != 0);
    }
}

/// `wait` as a `poll(2)` timeout: whole milliseconds (rounded down), at most `i32::MAX`.
fn poll_millis(wait: Duration) -> libc::c_int {
    wait.as_millis().min(libc::c_int::MAX as u128) as libc::c_int
}

/// The `poll(2)` timeout that ends a wait at `deadline` when resumed at `now`: the time left
/// (0 once it has passed). No deadline (the bound did not fit an `Instant`): the longest wait
/// `poll(2)` takes.
fn millis_left(deadline: Option<std::time::Instant>, now: std::time::Instant) -> libc::c_int {
    match deadline {
        Some(deadline) => poll_millis(deadline.saturating_duration_since(now)),
        None => libc::c_int::MAX,
    }
}

/// Waits until at least one of `fds` is readable or `timeout` passes (one `ppoll(2)`, with
/// nanosecond resolution; a zero timeout only looks); returns, per descriptor, whether it is
/// readable (or in error or hung up, so a caller's read reports why). An empty set returns at
/// once. A signal interrupting the wait resumes it for the time left.
pub fn poll_any_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<bool>> {
    if fds.is_empty() {
        return Ok(Vec::new());
    }
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let deadline = std::time::Instant::now().checked_add(timeout);
    let mut left = timeout;
    loop {
        let ts = libc::timespec {
            tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: libc::c_long::from(left.subsec_nanos() as i32),
        };
        // SAFETY: `pfds` is a live array of `pfds.len()` pollfds the kernel writes `revents`
        // into; `ts` is a live timespec it only reads; a null signal mask is allowed.
        let ret = unsafe {
            libc::ppoll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if ret < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                left = deadline.map_or(left, |d| {
                    d.saturating_duration_since(std::time::Instant::now())
                });
                continue;
            }
            return Err(err);
        }
        let ready = libc::POLLIN | libc::POLLERR | libc::POLLHUP | libc::POLLNVAL;
        return Ok(pfds.iter().map(|p| p.revents & ready != 0).collect());
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::vfio::dma;

    #[test]
    fn a_resumed_poll_waits_only_for_what_is_left_of_its_deadline() {
        use std::time::Instant;
        let now = Instant::now();
        let deadline = now + Duration::from_millis(100);
        assert_eq!(millis_left(Some(deadline), now), 100);
        assert_eq!(
            millis_left(Some(deadline), now + Duration::from_millis(60)),
            40,
            "a signal 60 ms in leaves 40 ms, not the whole 100"
        );
        assert_eq!(
            millis_left(Some(deadline), now + Duration::from_micros(99_500)),
            0,
            "rounded down"
        );
        assert_eq!(millis_left(Some(deadline), now + Duration::from_secs(1)), 0);
        assert_eq!(millis_left(None, now), libc::c_int::MAX);
        assert_eq!(poll_millis(Duration::MAX), libc::c_int::MAX);
        assert_eq!(poll_millis(Duration::from_micros(2_900)), 2);
    }

    #[test]
    fn poll_readable_sees_a_signalled_eventfd_and_times_out_on_a_quiet_one() {
        let fd = eventfd_create().unwrap();
        let start = std::time::Instant::now();
        assert!(!poll_readable(fd.as_fd(), Duration::from_millis(30)).unwrap());
        assert!(
            start.elapsed() >= Duration::from_millis(29),
            "waited its timeout"
        );
        eventfd_write(fd.as_fd(), 1).unwrap();
        assert!(poll_readable(fd.as_fd(), Duration::MAX).unwrap());
        assert_eq!(eventfd_read(fd.as_fd()).unwrap(), Some(1));
        assert!(!poll_readable(fd.as_fd(), Duration::ZERO).unwrap());
    }

    extern "C" fn ignore_signal(_: libc::c_int) {}

    #[test]
    fn signals_do_not_stretch_a_poll_beyond_its_timeout() {
        use std::sync::atomic::{AtomicBool, Ordering};
        // A handler, so SIGUSR1 interrupts `poll(2)` (EINTR) instead of killing the process.
        // SAFETY: a zeroed sigaction with a handler that does nothing (async-signal-safe) and
        // an empty mask is a valid argument; the old action is not asked for.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = ignore_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            assert_eq!(
                libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
                0
            );
        }
        let fd = eventfd_create().unwrap();
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            // SAFETY: `pthread_self` has no preconditions.
            let poller = unsafe { libc::pthread_self() };
            let done = &done;
            // Interrupts the poll every 5 ms for at most 3 s: a poll that restarts its whole
            // 200 ms on each signal would only end when the signals stop.
            scope.spawn(move || {
                let start = std::time::Instant::now();
                while !done.load(Ordering::Acquire) && start.elapsed() < Duration::from_secs(3) {
                    // SAFETY: `poller` is the scope's thread, alive until this thread is
                    // joined at the end of the scope.
                    unsafe { libc::pthread_kill(poller, libc::SIGUSR1) };
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            let start = std::time::Instant::now();
            let readable = poll_readable(fd.as_fd(), Duration::from_millis(200));
            let waited = start.elapsed();
            done.store(true, Ordering::Release);
            assert!(!readable.unwrap());
            assert!(
                waited < Duration::from_secs(2),
                "a 200 ms wait took {waited:?} under signals"
            );
        });
    }

    #[test]
    fn vfio_ioctl_numbers_match_the_uapi_header() {
        // `_IO(';', 100 + n)`, from include/uapi/linux/vfio.h.
        assert_eq!(VFIO_GET_API_VERSION as u32, 0x3b64);
        assert_eq!(VFIO_DEVICE_SET_IRQS as u32, 0x3b6e);
        assert_eq!(VFIO_IOMMU_MAP_DMA as u32, 0x3b71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA as u32, 0x3b72);
    }

    #[test]
    fn kernel_calls_on_non_vfio_files_fail_cleanly() {
        let sys = KernelVfio;
        let err = sys
            .open_container(Path::new("/nonexistent/vfio/vfio"))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let file = tempfile::tempfile().unwrap();
        let fd = file.as_fd();
        // A VFIO ioctl on a regular file: ENOTTY, not a crash.
        let err = sys.group_status(fd).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOTTY));
        assert!(sys.set_irqs(fd, 2, 0, &[fd]).is_err());
        assert!(sys.unmap_dma(fd, 0x1000, 0x1000).is_err());
        assert!(sys.get_device_fd(fd, "0000:00:04.0").is_err());
    }

    #[test]
    fn kernel_region_read_write_and_mmap_on_a_file() {
        let sys = KernelVfio;
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[0u8; 8192]).unwrap();
        sys.region_write(file.as_fd(), 4100, &[1, 2, 3, 4]).unwrap();
        let mut buf = [0u8; 4];
        sys.region_read(file.as_fd(), 4100, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
        let err = sys.region_read(file.as_fd(), 8190, &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let map = sys.mmap_region(file.as_fd(), 4096, 4096).unwrap();
        let mut got = [0u8; 4];
        map.read(4, &mut got).unwrap();
        assert_eq!(got, [1, 2, 3, 4]);
    }

    #[test]
    fn kernel_pinned_memory_is_whole_locked_huge_pages_or_an_error() {
        // Machines without reserved hugepages fail with ENOMEM: there is no 4 KiB fallback.
        match KernelVfio.alloc_pinned(100) {
            Ok(mem) => {
                assert_eq!(mem.len(), HUGE_PAGE_SIZE);
                let vaddr = vaddr_of(&mem);
                assert_eq!(vaddr % HUGE_PAGE_SIZE as u64, 0);
                mem.write(HUGE_PAGE_SIZE - 4, &[7; 4]).unwrap();
                // Physical addresses need CAP_SYS_ADMIN: either a real address or the typed
                // error.
                let pagemap = Path::new("/proc/self/pagemap");
                match dma::physical_address("t", pagemap, vaddr, HUGE_PAGE_SIZE) {
                    Ok(pa) => assert_eq!(pa % HUGE_PAGE_SIZE as u64, 0),
                    Err(crate::device::DeviceError::PfnHidden { .. }) => {}
                    Err(other) => panic!("unexpected pagemap error: {other}"),
                }
            }
            Err(e) => assert!(
                matches!(e.raw_os_error(), Some(libc::ENOMEM) | Some(libc::EINVAL)),
                "{e}"
            ),
        }
    }
}
