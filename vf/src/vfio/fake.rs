//! The scripted fake twin of [`KernelVfio`](super::sys::KernelVfio): answers programmed in a
//! [`FakeScript`], every call recorded as a [`Call`], no `/dev/vfio` needed.
//!
//! Descriptors it hands out are real eventfds (cheap, closable), tagged with the kind of object
//! they stand for; a call given the wrong kind of descriptor fails with `EBADF`, so tests catch
//! swapped arguments. Allocated pinned memory is plain anonymous memory; when
//! [`FakeScript::pagemap`] is set the fake writes pagemap entries for it, as the kernel would.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use packet::{MemError, SharedMemory};
use parking_lot::Mutex;
use vfio_bindings::bindings::vfio as b;

use super::sys::{self, DeviceInfo, IrqInfo, RegionInfo, VfioSys};

/// What a descriptor handed out by the fake stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// `/dev/vfio/vfio`.
    Container,
    /// A group node.
    Group,
    /// A device fd.
    Device,
}

/// One recorded call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// [`VfioSys::open_container`].
    OpenContainer(PathBuf),
    /// [`VfioSys::api_version`].
    ApiVersion,
    /// [`VfioSys::check_extension`].
    CheckExtension(u32),
    /// [`VfioSys::set_iommu`].
    SetIommu(u32),
    /// [`VfioSys::open_group`].
    OpenGroup(PathBuf),
    /// [`VfioSys::group_status`].
    GroupStatus,
    /// [`VfioSys::set_container`].
    SetContainer,
    /// [`VfioSys::get_device_fd`].
    GetDeviceFd(String),
    /// [`VfioSys::device_info`].
    DeviceInfo,
    /// [`VfioSys::region_info`].
    RegionInfo(u32),
    /// [`VfioSys::irq_info`].
    IrqInfo(u32),
    /// [`VfioSys::set_irqs`].
    SetIrqs {
        /// IRQ index.
        index: u32,
        /// First vector.
        start: u32,
        /// Number of eventfds (0: disable).
        count: u32,
    },
    /// [`VfioSys::map_dma`].
    MapDma {
        /// IOVA.
        iova: u64,
        /// Size.
        size: u64,
    },
    /// [`VfioSys::unmap_dma`].
    UnmapDma {
        /// IOVA.
        iova: u64,
        /// Size.
        size: u64,
    },
    /// [`VfioSys::reset`].
    Reset,
    /// [`VfioSys::mmap_region`].
    MmapRegion {
        /// Device-fd offset.
        offset: u64,
        /// Length.
        len: usize,
    },
    /// [`VfioSys::region_read`].
    RegionRead {
        /// Device-fd offset.
        offset: u64,
        /// Length.
        len: usize,
    },
    /// [`VfioSys::region_write`].
    RegionWrite {
        /// Device-fd offset.
        offset: u64,
        /// Length.
        len: usize,
    },
    /// [`VfioSys::alloc_pinned`].
    AllocPinned {
        /// Size.
        size: usize,
    },
    /// [`VfioSys::close`].
    Close(FdKind),
}

/// The answers the fake gives. [`Default`] is a healthy igbvf VF (8086:10ca) in a viable group
/// whose container supports both IOMMU models.
#[derive(Debug, Clone)]
pub struct FakeScript {
    /// `VFIO_GET_API_VERSION`.
    pub api_version: u32,
    /// IOMMU models `VFIO_CHECK_EXTENSION` reports.
    pub extensions: Vec<u32>,
    /// `VFIO_GROUP_GET_STATUS` flags.
    pub group_flags: u32,
    /// `VFIO_DEVICE_GET_INFO`.
    pub device_info: DeviceInfo,
    /// `VFIO_DEVICE_GET_REGION_INFO` by index (missing: `EINVAL`).
    pub regions: HashMap<u32, RegionInfo>,
    /// `VFIO_DEVICE_GET_IRQ_INFO` by index (missing: `EINVAL`).
    pub irqs: HashMap<u32, IrqInfo>,
    /// Contents of config space (the config region), read and written by `pread`/`pwrite`.
    pub config: Vec<u8>,
    /// Free 2 MiB huge pages: pinned allocations take whole pages from them and fail with
    /// `ENOMEM` (as the kernel's `mmap` of hugetlb memory does) once they run out (pages are
    /// not given back when the memory is dropped).
    pub huge_pages: usize,
    /// A pagemap file the fake fills in for pinned memory (PFNs from `next_pfn` upwards).
    pub pagemap: Option<PathBuf>,
    /// Next page frame number handed out for pinned memory.
    pub next_pfn: u64,
    /// Calls that fail, by [`Call`] name (e.g. `"MapDma"`), with the errno they fail with.
    pub failures: HashMap<&'static str, i32>,
}

/// Device-fd offset of the config region in the default script (as vfio-pci: index << 40).
pub const CONFIG_OFFSET: u64 = (b::VFIO_PCI_CONFIG_REGION_INDEX as u64) << 40;

impl Default for FakeScript {
    fn default() -> Self {
        let rw = b::VFIO_REGION_INFO_FLAG_READ | b::VFIO_REGION_INFO_FLAG_WRITE;
        let mut regions = HashMap::new();
        let bar = |index: u32| RegionInfo {
            flags: rw | b::VFIO_REGION_INFO_FLAG_MMAP,
            size: 16 * 1024,
            offset: u64::from(index) << 40,
        };
        regions.insert(
            b::VFIO_PCI_BAR0_REGION_INDEX,
            bar(b::VFIO_PCI_BAR0_REGION_INDEX),
        );
        regions.insert(
            b::VFIO_PCI_BAR3_REGION_INDEX,
            bar(b::VFIO_PCI_BAR3_REGION_INDEX),
        );
        regions.insert(
            b::VFIO_PCI_CONFIG_REGION_INDEX,
            RegionInfo {
                flags: rw,
                size: 4096,
                offset: CONFIG_OFFSET,
            },
        );
        let mut irqs = HashMap::new();
        let eventfd = b::VFIO_IRQ_INFO_EVENTFD;
        irqs.insert(b::VFIO_PCI_INTX_IRQ_INDEX, IrqInfo { flags: 7, count: 0 });
        irqs.insert(b::VFIO_PCI_MSI_IRQ_INDEX, IrqInfo { flags: 9, count: 0 });
        irqs.insert(
            b::VFIO_PCI_MSIX_IRQ_INDEX,
            IrqInfo {
                flags: eventfd,
                count: 3,
            },
        );
        irqs.insert(
            b::VFIO_PCI_ERR_IRQ_INDEX,
            IrqInfo {
                flags: eventfd | b::VFIO_IRQ_INFO_NORESIZE,
                count: 1,
            },
        );
        irqs.insert(
            b::VFIO_PCI_REQ_IRQ_INDEX,
            IrqInfo {
                flags: eventfd | b::VFIO_IRQ_INFO_NORESIZE,
                count: 1,
            },
        );
        let mut config = vec![0u8; 4096];
        config[0..2].copy_from_slice(&0x8086u16.to_le_bytes());
        config[2..4].copy_from_slice(&0x10cau16.to_le_bytes());
        Self {
            api_version: b::VFIO_API_VERSION,
            extensions: vec![b::VFIO_TYPE1v2_IOMMU, b::VFIO_NOIOMMU_IOMMU],
            group_flags: b::VFIO_GROUP_FLAGS_VIABLE,
            device_info: DeviceInfo {
                flags: b::VFIO_DEVICE_FLAGS_PCI | b::VFIO_DEVICE_FLAGS_RESET,
                num_regions: b::VFIO_PCI_NUM_REGIONS,
                num_irqs: b::VFIO_PCI_NUM_IRQS,
            },
            regions,
            irqs,
            config,
            huge_pages: 64,
            pagemap: None,
            next_pfn: 0x10_0000,
            failures: HashMap::new(),
        }
    }
}

/// The scripted fake [`VfioSys`].
#[derive(Debug, Default)]
pub struct FakeVfio {
    script: Mutex<FakeScript>,
    calls: Mutex<Vec<Call>>,
    fds: Mutex<HashMap<RawFd, FdKind>>,
    bars: Mutex<Vec<SharedMemory>>,
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

impl FakeVfio {
    /// A fake answering from `script`.
    pub fn new(script: FakeScript) -> Self {
        Self {
            script: Mutex::new(script),
            ..Self::default()
        }
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.calls.lock().clear();
    }

    /// Changes the script (e.g. to make config space read all ones after a removal).
    pub fn script(&self, edit: impl FnOnce(&mut FakeScript)) {
        edit(&mut self.script.lock());
    }

    /// Descriptors handed out and not yet closed.
    pub fn open_fds(&self) -> usize {
        self.fds.lock().len()
    }

    /// The memory behind every region mapped so far (what the "device" sees).
    pub fn mapped_regions(&self) -> Vec<SharedMemory> {
        self.bars.lock().clone()
    }

    fn record(&self, call: Call, name: &'static str) -> io::Result<()> {
        self.calls.lock().push(call);
        match self.script.lock().failures.get(name) {
            Some(&code) => Err(errno(code)),
            None => Ok(()),
        }
    }

    fn expect(&self, fd: BorrowedFd<'_>, kind: FdKind) -> io::Result<()> {
        if self.fds.lock().get(&fd.as_raw_fd()) == Some(&kind) {
            Ok(())
        } else {
            Err(errno(libc::EBADF))
        }
    }

    fn new_fd(&self, kind: FdKind) -> io::Result<OwnedFd> {
        let fd = sys::eventfd_create()?;
        self.fds.lock().insert(fd.as_raw_fd(), kind);
        Ok(fd)
    }
}

impl VfioSys for FakeVfio {
    fn open_container(&self, path: &Path) -> io::Result<OwnedFd> {
        self.record(Call::OpenContainer(path.to_owned()), "OpenContainer")?;
        self.new_fd(FdKind::Container)
    }

    fn api_version(&self, container: BorrowedFd<'_>) -> io::Result<u32> {
        self.record(Call::ApiVersion, "ApiVersion")?;
        self.expect(container, FdKind::Container)?;
        Ok(self.script.lock().api_version)
    }

    fn check_extension(&self, container: BorrowedFd<'_>, extension: u32) -> io::Result<bool> {
        self.record(Call::CheckExtension(extension), "CheckExtension")?;
        self.expect(container, FdKind::Container)?;
        Ok(self.script.lock().extensions.contains(&extension))
    }

    fn set_iommu(&self, container: BorrowedFd<'_>, iommu_type: u32) -> io::Result<()> {
        self.record(Call::SetIommu(iommu_type), "SetIommu")?;
        self.expect(container, FdKind::Container)
    }

    fn open_group(&self, path: &Path) -> io::Result<OwnedFd> {
        self.record(Call::OpenGroup(path.to_owned()), "OpenGroup")?;
        self.new_fd(FdKind::Group)
    }

    fn group_status(&self, group: BorrowedFd<'_>) -> io::Result<u32> {
        self.record(Call::GroupStatus, "GroupStatus")?;
        self.expect(group, FdKind::Group)?;
        Ok(self.script.lock().group_flags)
    }

    fn set_container(&self, group: BorrowedFd<'_>, container: BorrowedFd<'_>) -> io::Result<()> {
        self.record(Call::SetContainer, "SetContainer")?;
        self.expect(group, FdKind::Group)?;
        self.expect(container, FdKind::Container)
    }

    fn get_device_fd(&self, group: BorrowedFd<'_>, name: &str) -> io::Result<OwnedFd> {
        self.record(Call::GetDeviceFd(name.to_owned()), "GetDeviceFd")?;
        self.expect(group, FdKind::Group)?;
        self.new_fd(FdKind::Device)
    }

    fn device_info(&self, device: BorrowedFd<'_>) -> io::Result<DeviceInfo> {
        self.record(Call::DeviceInfo, "DeviceInfo")?;
        self.expect(device, FdKind::Device)?;
        Ok(self.script.lock().device_info)
    }

    fn region_info(&self, device: BorrowedFd<'_>, index: u32) -> io::Result<RegionInfo> {
        self.record(Call::RegionInfo(index), "RegionInfo")?;
        self.expect(device, FdKind::Device)?;
        let script = self.script.lock();
        script
            .regions
            .get(&index)
            .copied()
            .ok_or_else(|| errno(libc::EINVAL))
    }

    fn irq_info(&self, device: BorrowedFd<'_>, index: u32) -> io::Result<IrqInfo> {
        self.record(Call::IrqInfo(index), "IrqInfo")?;
        self.expect(device, FdKind::Device)?;
        let script = self.script.lock();
        script
            .irqs
            .get(&index)
            .copied()
            .ok_or_else(|| errno(libc::EINVAL))
    }

    fn set_irqs(
        &self,
        device: BorrowedFd<'_>,
        index: u32,
        start: u32,
        eventfds: &[BorrowedFd<'_>],
    ) -> io::Result<()> {
        let count = eventfds.len() as u32;
        self.record(
            Call::SetIrqs {
                index,
                start,
                count,
            },
            "SetIrqs",
        )?;
        self.expect(device, FdKind::Device)?;
        let available = self.script.lock().irqs.get(&index).map_or(0, |i| i.count);
        if start.saturating_add(count) > available {
            return Err(errno(libc::EINVAL));
        }
        Ok(())
    }

    fn map_dma(
        &self,
        container: BorrowedFd<'_>,
        vaddr: u64,
        iova: u64,
        size: u64,
    ) -> io::Result<()> {
        self.record(Call::MapDma { iova, size }, "MapDma")?;
        self.expect(container, FdKind::Container)?;
        if vaddr == 0 || !vaddr.is_multiple_of(4096) || !size.is_multiple_of(4096) {
            return Err(errno(libc::EINVAL));
        }
        Ok(())
    }

    fn unmap_dma(&self, container: BorrowedFd<'_>, iova: u64, size: u64) -> io::Result<()> {
        self.record(Call::UnmapDma { iova, size }, "UnmapDma")?;
        self.expect(container, FdKind::Container)
    }

    fn reset(&self, device: BorrowedFd<'_>) -> io::Result<()> {
        self.record(Call::Reset, "Reset")?;
        self.expect(device, FdKind::Device)
    }

    fn mmap_region(
        &self,
        device: BorrowedFd<'_>,
        offset: u64,
        len: usize,
    ) -> Result<SharedMemory, MemError> {
        let syscall = |source| MemError::Syscall {
            call: "mmap",
            source,
        };
        self.record(Call::MmapRegion { offset, len }, "MmapRegion")
            .map_err(syscall)?;
        self.expect(device, FdKind::Device).map_err(syscall)?;
        let mem = SharedMemory::anonymous(len)?;
        self.bars.lock().push(mem.clone());
        Ok(mem)
    }

    fn region_read(&self, device: BorrowedFd<'_>, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let len = buf.len();
        self.record(Call::RegionRead { offset, len }, "RegionRead")?;
        self.expect(device, FdKind::Device)?;
        let script = self.script.lock();
        let at = offset.wrapping_sub(CONFIG_OFFSET) as usize;
        let src = script
            .config
            .get(at..at.saturating_add(len))
            .ok_or_else(|| errno(libc::EINVAL))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn region_write(&self, device: BorrowedFd<'_>, offset: u64, buf: &[u8]) -> io::Result<()> {
        let len = buf.len();
        self.record(Call::RegionWrite { offset, len }, "RegionWrite")?;
        self.expect(device, FdKind::Device)?;
        let mut script = self.script.lock();
        let at = offset.wrapping_sub(CONFIG_OFFSET) as usize;
        let dst = script
            .config
            .get_mut(at..at.saturating_add(len))
            .ok_or_else(|| errno(libc::EINVAL))?;
        dst.copy_from_slice(buf);
        Ok(())
    }

    fn alloc_pinned(&self, size: usize) -> io::Result<SharedMemory> {
        self.record(Call::AllocPinned { size }, "AllocPinned")?;
        let mut script = self.script.lock();
        let pages = size.div_ceil(sys::HUGE_PAGE_SIZE).max(1);
        if pages > script.huge_pages {
            return Err(errno(libc::ENOMEM));
        }
        script.huge_pages -= pages;
        let len = pages * sys::HUGE_PAGE_SIZE;
        let mem = SharedMemory::anonymous(len).map_err(io::Error::other)?;
        if let Some(path) = script.pagemap.clone() {
            let file = OpenOptions::new().write(true).open(path)?;
            let first_page = sys::vaddr_of(&mem) / 4096;
            for page in 0..len.div_ceil(4096) as u64 {
                let entry = (1u64 << 63) | script.next_pfn;
                script.next_pfn += 1;
                file.write_all_at(&entry.to_le_bytes(), (first_page + page) * 8)?;
            }
        }
        Ok(mem)
    }

    fn close(&self, fd: OwnedFd) {
        let kind = self.fds.lock().remove(&fd.as_raw_fd());
        if let Some(kind) = kind {
            self.calls.lock().push(Call::Close(kind));
        }
        drop(fd);
    }
}
