//! The VFIO backend of [`VfDevice`]: one PCI function opened through the legacy
//! container/group interface, with an IOMMU (type1v2) or without one (no-IOMMU, the normal case
//! in a Hyper-V/Azure guest, which has no vIOMMU).
//!
//! Every system call goes through [`sys::VfioSys`]; [`sys::KernelVfio`] is the kernel and
//! `fake::FakeVfio` the scripted twin the tests use (compiled for tests and with the
//! `test-utils` feature).
//!
//! # Lifecycle
//!
//! [`VfioDevice::open`]:
//! 1. finds the IOMMU group: `<sysfs>/bus/pci/devices/<bdf>/iommu_group` links to
//!    `.../iommu_groups/<n>`;
//! 2. opens the container `<dev>/vfio/vfio`, checks the API version and the IOMMU extension
//!    (`VFIO_TYPE1v2_IOMMU` or `VFIO_NOIOMMU_IOMMU`);
//! 3. opens the group `<dev>/vfio/<n>` (type1) or `<dev>/vfio/noiommu-<n>` (no-IOMMU), checks
//!    it is viable, attaches it to the container, sets the IOMMU model;
//! 4. gets the device fd, reads the device info, the config region and BAR0, and maps BAR0
//!    (it must be mmap-able).
//!
//! Interrupts are eventfds bound with `VFIO_DEVICE_SET_IRQS`: MSI-X vectors `0..n` and the
//! device-request IRQ (`VFIO_PCI_REQ_IRQ_INDEX`), which the kernel signals when the host wants
//! the device back and repeats every 10 s until every descriptor is closed.
//!
//! [`VfDevice::release`] (also run on drop) releases in this order: unmap every DMA mapping
//! from the IOMMU, revoke the BAR0 mapping (later register reads return all ones), close the
//! device fd, the group, the container. Once the device fd is closed a pending removal can
//! complete.
//!
//! # DMA
//!
//! - Type1: page-rounded anonymous memory mapped with `VFIO_IOMMU_MAP_DMA` at an IOVA from a
//!   bump allocator ([`dma::IovaAllocator`]); the region's bus address is the IOVA. Mappings
//!   live until the device is closed.
//! - No-IOMMU: `VFIO_IOMMU_MAP_DMA` does not exist; the device DMAs to physical addresses, so a
//!   buffer must stay at one physical address for as long as the device may use it, and be
//!   physically contiguous. Memory is **only ever one `mlock`ed hugetlb page (2 MiB)**: hugetlb
//!   pages are never migrated by compaction or NUMA balancing, whereas `mlock` alone does not
//!   stop the kernel from moving a small page (it keeps it resident, not in place), which would
//!   leave the device writing to memory the kernel has given to someone else. There is no
//!   fallback: without free hugepages an allocation fails with [`DeviceError::NoHugePages`],
//!   whose message names `vm.nr_hugepages` and `hvnet bind --hugepages`. An allocation is
//!   limited to 2 MiB ([`DeviceError::DmaTooLarge`]) and takes a whole huge page, so callers
//!   allocate pools, not single buffers (the igbvf driver takes three per queue: two rings and
//!   a buffer pool). The physical address comes from `/proc/self/pagemap`, which needs
//!   `CAP_SYS_ADMIN` (a zero PFN is [`DeviceError::PfnHidden`]); contiguity is verified page by
//!   page.
//!
//! # Invariants
//!
//! The descriptors are only used while the device is open (after `release` every call fails with
//! [`DeviceError::Closed`]); descriptors are never closed out of release order; DMA memory handed
//! out stays allocated while the caller holds it, but is unreachable by the device once the
//! device is closed.

pub mod dma;
#[cfg(any(test, feature = "test-utils"))]
pub mod fake;
pub mod sys;

#[cfg(test)]
mod tests;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use packet::SharedMemory;
use parking_lot::Mutex;
use vfio_bindings::bindings::vfio as b;

use crate::device::{DeviceError, EventFd, MmioRegion, RegisterIo, VfDevice, check_config_range};
use dma::{IovaAllocator, PAGE_SIZE};
use sys::{DeviceInfo, KernelVfio, RegionInfo, VfioSys};

/// Which IOMMU model the container uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuMode {
    /// A DMA-remapping IOMMU (`VFIO_TYPE1v2_IOMMU`): bus addresses are IOVAs.
    Type1,
    /// No IOMMU (`VFIO_NOIOMMU_IOMMU`, needs `vfio.enable_unsafe_noiommu_mode=1` and
    /// `CAP_SYS_RAWIO`): bus addresses are physical addresses.
    NoIommu,
}

impl IommuMode {
    fn extension(self) -> (u32, &'static str) {
        match self {
            Self::Type1 => (b::VFIO_TYPE1v2_IOMMU, "VFIO_TYPE1v2_IOMMU"),
            Self::NoIommu => (b::VFIO_NOIOMMU_IOMMU, "VFIO_NOIOMMU_IOMMU"),
        }
    }
}

/// Where the backend looks for things; the roots are configurable for tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfioConfig {
    /// IOMMU model.
    pub mode: IommuMode,
    /// The sysfs mount (`/sys`).
    pub sysfs_root: PathBuf,
    /// The device directory (`/dev`).
    pub dev_root: PathBuf,
    /// The pagemap of this process (`/proc/self/pagemap`), used in no-IOMMU mode.
    pub pagemap: PathBuf,
}

impl VfioConfig {
    /// The system paths, in `mode`.
    pub fn new(mode: IommuMode) -> Self {
        Self {
            mode,
            sysfs_root: PathBuf::from("/sys"),
            dev_root: PathBuf::from("/dev"),
            pagemap: PathBuf::from("/proc/self/pagemap"),
        }
    }

    /// The group node for group `group` in this mode.
    pub fn group_path(&self, group: u32) -> PathBuf {
        let name = match self.mode {
            IommuMode::Type1 => group.to_string(),
            IommuMode::NoIommu => format!("noiommu-{group}"),
        };
        self.dev_root.join("vfio").join(name)
    }

    /// The container node.
    pub fn container_path(&self) -> PathBuf {
        self.dev_root.join("vfio").join("vfio")
    }
}

/// The IOMMU group number of PCI device `bdf` (e.g. `0000:00:04.0`), read from the
/// `iommu_group` link under `sysfs_root`.
pub fn iommu_group(sysfs_root: &Path, bdf: &str) -> Result<u32, DeviceError> {
    let link = sysfs_root
        .join("bus/pci/devices")
        .join(bdf)
        .join("iommu_group");
    let err = |source| DeviceError::NoIommuGroup {
        device: bdf.to_owned(),
        path: link.display().to_string(),
        source,
    };
    let target = std::fs::read_link(&link).map_err(err)?;
    target
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("link target {} is not a group number", target.display()),
            ))
        })
}

/// The three descriptors of an open device.
#[derive(Debug)]
struct Fds {
    container: OwnedFd,
    group: OwnedFd,
    device: OwnedFd,
}

/// Descriptors opened so far during [`VfioDevice::open`]; closed in release order if opening
/// fails part-way.
struct Opening<'a> {
    sys: &'a dyn VfioSys,
    container: Option<OwnedFd>,
    group: Option<OwnedFd>,
    device: Option<OwnedFd>,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        for fd in [self.device.take(), self.group.take(), self.container.take()]
            .into_iter()
            .flatten()
        {
            self.sys.close(fd);
        }
    }
}

/// One DMA region the device can reach.
#[derive(Debug)]
struct DmaMapping {
    /// IOVA (type1) or physical address (no-IOMMU).
    bus: u64,
    size: u64,
    /// Keeps the memory alive while it is mapped, and says what the device reaches.
    _mem: SharedMemory,
}

/// The eventfds bound to the device.
#[derive(Debug, Default)]
struct Irqs {
    msix: Vec<Arc<EventFd>>,
    request: Option<Arc<EventFd>>,
}

#[derive(Debug)]
struct State {
    fds: Option<Fds>,
    iova: IovaAllocator,
    dma: Vec<DmaMapping>,
    irqs: Irqs,
}

/// A PCI function opened through VFIO. See the [module docs](self) for the lifecycle.
#[derive(Debug)]
pub struct VfioDevice {
    name: String,
    sys: Arc<dyn VfioSys>,
    mode: IommuMode,
    pagemap: PathBuf,
    group: u32,
    info: DeviceInfo,
    config_region: RegionInfo,
    bar0: Arc<MmioRegion>,
    state: Mutex<State>,
}

impl VfioDevice {
    /// Opens `bdf` through the kernel.
    pub fn open_kernel(bdf: &str, config: &VfioConfig) -> Result<Self, DeviceError> {
        Self::open(bdf, config, Arc::new(KernelVfio))
    }

    /// Opens `bdf` with the system calls of `sys`.
    pub fn open(
        bdf: &str,
        config: &VfioConfig,
        sys: Arc<dyn VfioSys>,
    ) -> Result<Self, DeviceError> {
        let group_number = iommu_group(&config.sysfs_root, bdf)?;
        let io = |op: &'static str| {
            move |source| DeviceError::Io {
                device: bdf.to_owned(),
                op,
                source,
            }
        };
        let mut opening = Opening {
            sys: sys.as_ref(),
            container: None,
            group: None,
            device: None,
        };

        opening.container = Some(
            sys.open_container(&config.container_path())
                .map_err(io("opening the vfio container"))?,
        );
        let container = opening.container.as_ref().expect("just opened").as_fd();
        let version = sys
            .api_version(container)
            .map_err(io("VFIO_GET_API_VERSION"))?;
        if version != b::VFIO_API_VERSION {
            return Err(DeviceError::ApiVersion {
                device: bdf.to_owned(),
                version,
                expected: b::VFIO_API_VERSION,
            });
        }
        let (iommu_type, extension) = config.mode.extension();
        if !sys
            .check_extension(container, iommu_type)
            .map_err(io("VFIO_CHECK_EXTENSION"))?
        {
            return Err(DeviceError::ExtensionMissing {
                device: bdf.to_owned(),
                extension,
            });
        }

        opening.group = Some(
            sys.open_group(&config.group_path(group_number))
                .map_err(io("opening the vfio group"))?,
        );
        let group = opening.group.as_ref().expect("just opened").as_fd();
        let status = sys
            .group_status(group)
            .map_err(io("VFIO_GROUP_GET_STATUS"))?;
        if status & b::VFIO_GROUP_FLAGS_VIABLE == 0 {
            return Err(DeviceError::GroupNotViable {
                device: bdf.to_owned(),
                group: group_number,
            });
        }
        sys.set_container(group, container)
            .map_err(io("VFIO_GROUP_SET_CONTAINER"))?;
        sys.set_iommu(container, iommu_type)
            .map_err(io("VFIO_SET_IOMMU"))?;

        opening.device = Some(
            sys.get_device_fd(group, bdf)
                .map_err(io("VFIO_GROUP_GET_DEVICE_FD"))?,
        );
        let device = opening.device.as_ref().expect("just opened").as_fd();
        let info = sys
            .device_info(device)
            .map_err(io("VFIO_DEVICE_GET_INFO"))?;
        let region_err = |region, reason| DeviceError::Region {
            device: bdf.to_owned(),
            region,
            reason,
        };
        if info.flags & b::VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(region_err(0, "the device is not a PCI device"));
        }
        if info.num_regions <= b::VFIO_PCI_CONFIG_REGION_INDEX {
            return Err(region_err(
                b::VFIO_PCI_CONFIG_REGION_INDEX,
                "the device has no config region",
            ));
        }
        let config_region = sys
            .region_info(device, b::VFIO_PCI_CONFIG_REGION_INDEX)
            .map_err(io("VFIO_DEVICE_GET_REGION_INFO"))?;
        if config_region.size == 0 {
            return Err(region_err(
                b::VFIO_PCI_CONFIG_REGION_INDEX,
                "config space is empty",
            ));
        }
        let bar0_index = b::VFIO_PCI_BAR0_REGION_INDEX;
        let bar0 = sys
            .region_info(device, bar0_index)
            .map_err(io("VFIO_DEVICE_GET_REGION_INFO"))?;
        if bar0.size == 0 {
            return Err(region_err(bar0_index, "BAR0 is not implemented"));
        }
        if bar0.flags & b::VFIO_REGION_INFO_FLAG_MMAP == 0 {
            return Err(region_err(bar0_index, "BAR0 cannot be mmapped"));
        }
        let bar0_len = usize::try_from(bar0.size)
            .map_err(|_| region_err(bar0_index, "BAR0 is larger than the address space"))?;
        let bar0_map = sys
            .mmap_region(device, bar0.offset, bar0_len)
            .map_err(|source| DeviceError::Memory {
                device: bdf.to_owned(),
                op: "mapping BAR0",
                source,
            })?;

        let fds = Fds {
            container: opening.container.take().expect("opened above"),
            group: opening.group.take().expect("opened above"),
            device: opening.device.take().expect("opened above"),
        };
        drop(opening);
        Ok(Self {
            name: bdf.to_owned(),
            sys,
            mode: config.mode,
            pagemap: config.pagemap.clone(),
            group: group_number,
            info,
            config_region,
            bar0: Arc::new(MmioRegion::new(bar0_map)),
            state: Mutex::new(State {
                fds: Some(fds),
                iova: IovaAllocator::default(),
                dma: Vec::new(),
                irqs: Irqs::default(),
            }),
        })
    }

    /// The IOMMU model in use.
    pub fn mode(&self) -> IommuMode {
        self.mode
    }

    /// The IOMMU group number.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// Number of live DMA mappings (for leak checks).
    pub fn dma_mappings(&self) -> usize {
        self.state.lock().dma.len()
    }

    /// Releases the device in the documented order; idempotent. Returns the first error met
    /// while unmapping DMA, after releasing everything anyway.
    fn close(&self) -> Result<(), DeviceError> {
        let mut state = self.state.lock();
        let Some(fds) = state.fds.take() else {
            return Ok(());
        };
        let mut first_err = None;
        for mapping in state.dma.drain(..) {
            if self.mode == IommuMode::Type1
                && let Err(source) =
                    self.sys
                        .unmap_dma(fds.container.as_fd(), mapping.bus, mapping.size)
            {
                first_err.get_or_insert(DeviceError::Io {
                    device: self.name.clone(),
                    op: "VFIO_IOMMU_UNMAP_DMA",
                    source,
                });
            }
        }
        state.irqs = Irqs::default();
        self.bar0.revoke();
        self.sys.close(fds.device);
        self.sys.close(fds.group);
        self.sys.close(fds.container);
        first_err.map_or(Ok(()), Err)
    }

    fn io_err(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> DeviceError + '_ {
        move |source| DeviceError::Io {
            device: self.name.clone(),
            op,
            source,
        }
    }

    fn closed(&self) -> DeviceError {
        DeviceError::Closed {
            device: self.name.clone(),
        }
    }

    /// Runs `f` with the device fd, or fails with [`DeviceError::Closed`].
    fn with_device<T>(
        &self,
        f: impl FnOnce(&mut Irqs, BorrowedFd<'_>) -> Result<T, DeviceError>,
    ) -> Result<T, DeviceError> {
        let mut guard = self.state.lock();
        let state = &mut *guard;
        let device = match &state.fds {
            Some(fds) => fds.device.as_fd(),
            None => return Err(self.closed()),
        };
        f(&mut state.irqs, device)
    }

    fn check_irq(
        &self,
        device: BorrowedFd<'_>,
        index: u32,
        requested: u32,
    ) -> Result<(), DeviceError> {
        let available = if index < self.info.num_irqs {
            let info = self
                .sys
                .irq_info(device, index)
                .map_err(self.io_err("VFIO_DEVICE_GET_IRQ_INFO"))?;
            if info.flags & b::VFIO_IRQ_INFO_EVENTFD == 0 {
                0
            } else {
                info.count
            }
        } else {
            0
        };
        if requested > available {
            return Err(DeviceError::IrqUnavailable {
                device: self.name.clone(),
                index,
                requested,
                available,
            });
        }
        Ok(())
    }

    fn dma_alloc_type1(&self, state: &mut State, size: usize) -> Result<SharedMemory, DeviceError> {
        let container = state
            .fds
            .as_ref()
            .ok_or_else(|| self.closed())?
            .container
            .as_fd();
        let len = size.next_multiple_of(PAGE_SIZE as usize);
        let iova = state
            .iova
            .alloc(len as u64)
            .ok_or_else(|| DeviceError::IovaExhausted {
                device: self.name.clone(),
                size,
            })?;
        let mem = SharedMemory::anonymous(len).map_err(|source| DeviceError::Memory {
            device: self.name.clone(),
            op: "allocating dma memory",
            source,
        })?;
        self.sys
            .map_dma(container, sys::vaddr_of(&mem), iova, len as u64)
            .map_err(self.io_err("VFIO_IOMMU_MAP_DMA"))?;
        let mem = mem.with_bus_base(iova);
        state.dma.push(DmaMapping {
            bus: iova,
            size: len as u64,
            _mem: mem.clone(),
        });
        self.subregion(&mem, size)
    }

    fn dma_alloc_pinned(
        &self,
        state: &mut State,
        size: usize,
    ) -> Result<SharedMemory, DeviceError> {
        let too_large = |limit| DeviceError::DmaTooLarge {
            device: self.name.clone(),
            size,
            limit,
        };
        if size > sys::HUGE_PAGE_SIZE {
            return Err(too_large(sys::HUGE_PAGE_SIZE));
        }
        let mem = self
            .sys
            .alloc_pinned(size)
            .map_err(|source| DeviceError::NoHugePages {
                device: self.name.clone(),
                size,
                source,
            })?;
        let phys =
            dma::physical_address(&self.name, &self.pagemap, sys::vaddr_of(&mem), mem.len())?;
        let mem = mem.with_bus_base(phys);
        state.dma.push(DmaMapping {
            bus: phys,
            size: mem.len() as u64,
            _mem: mem.clone(),
        });
        self.subregion(&mem, size)
    }

    fn subregion(&self, mem: &SharedMemory, size: usize) -> Result<SharedMemory, DeviceError> {
        mem.subregion(0, size)
            .map_err(|source| DeviceError::Memory {
                device: self.name.clone(),
                op: "cutting dma memory",
                source,
            })
    }
}

impl Drop for VfioDevice {
    fn drop(&mut self) {
        // Errors cannot be reported from drop; the release itself always completes.
        let _ = self.close();
    }
}

impl VfDevice for VfioDevice {
    fn name(&self) -> &str {
        &self.name
    }

    fn bar0(&self) -> Arc<dyn RegisterIo> {
        self.bar0.clone()
    }

    fn config_read(&self, offset: u16, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_config_range(&self.name, offset, buf.len())?;
        self.with_device(|_, device| {
            self.sys
                .region_read(device, self.config_region.offset + u64::from(offset), buf)
                .map_err(self.io_err("reading config space"))
        })
    }

    fn config_write(&self, offset: u16, buf: &[u8]) -> Result<(), DeviceError> {
        check_config_range(&self.name, offset, buf.len())?;
        self.with_device(|_, device| {
            self.sys
                .region_write(device, self.config_region.offset + u64::from(offset), buf)
                .map_err(self.io_err("writing config space"))
        })
    }

    fn dma_alloc(&self, size: usize) -> Result<SharedMemory, DeviceError> {
        if size == 0 {
            return Err(DeviceError::Memory {
                device: self.name.clone(),
                op: "allocating dma memory",
                source: packet::MemError::Empty,
            });
        }
        let mut state = self.state.lock();
        if state.fds.is_none() {
            return Err(self.closed());
        }
        match self.mode {
            IommuMode::Type1 => self.dma_alloc_type1(&mut state, size),
            IommuMode::NoIommu => self.dma_alloc_pinned(&mut state, size),
        }
    }

    fn dma_reachable(&self, memory: &SharedMemory) -> bool {
        self.state
            .lock()
            .dma
            .iter()
            .any(|m| m._mem.contains(memory))
    }

    fn enable_msix(&self, vectors: u32) -> Result<Vec<Arc<EventFd>>, DeviceError> {
        let index = b::VFIO_PCI_MSIX_IRQ_INDEX;
        self.with_device(|state, device| {
            self.check_irq(device, index, vectors)?;
            if !state.msix.is_empty() {
                self.sys
                    .set_irqs(device, index, 0, &[])
                    .map_err(self.io_err("disabling MSI-X"))?;
                state.msix.clear();
            }
            if vectors == 0 {
                return Ok(Vec::new());
            }
            let fds = (0..vectors)
                .map(|_| EventFd::new().map(Arc::new))
                .collect::<Result<Vec<_>, _>>()
                .map_err(self.io_err("creating eventfds"))?;
            let borrowed: Vec<_> = fds.iter().map(|fd| fd.as_fd()).collect();
            self.sys
                .set_irqs(device, index, 0, &borrowed)
                .map_err(self.io_err("enabling MSI-X"))?;
            state.msix.clone_from(&fds);
            Ok(fds)
        })
    }

    fn disable_msix(&self) -> Result<(), DeviceError> {
        self.with_device(|state, device| {
            if state.msix.is_empty() {
                return Ok(());
            }
            self.sys
                .set_irqs(device, b::VFIO_PCI_MSIX_IRQ_INDEX, 0, &[])
                .map_err(self.io_err("disabling MSI-X"))?;
            state.msix.clear();
            Ok(())
        })
    }

    fn request_irq(&self) -> Result<Arc<EventFd>, DeviceError> {
        let index = b::VFIO_PCI_REQ_IRQ_INDEX;
        self.with_device(|state, device| {
            if let Some(fd) = &state.request {
                return Ok(fd.clone());
            }
            self.check_irq(device, index, 1)?;
            let fd = Arc::new(EventFd::new().map_err(self.io_err("creating an eventfd"))?);
            self.sys
                .set_irqs(device, index, 0, &[fd.as_fd()])
                .map_err(self.io_err("registering the request irq"))?;
            state.request = Some(fd.clone());
            Ok(fd)
        })
    }

    fn is_present(&self) -> bool {
        !matches!(self.config_read16(0), Err(_) | Ok(0xffff))
    }

    fn release(&self) -> Result<(), DeviceError> {
        self.close()
    }

    fn reset(&self) -> Result<(), DeviceError> {
        if self.info.flags & b::VFIO_DEVICE_FLAGS_RESET == 0 {
            return Err(DeviceError::Unsupported {
                device: self.name.clone(),
                what: "VFIO_DEVICE_RESET",
            });
        }
        self.with_device(|_, device| {
            self.sys
                .reset(device)
                .map_err(self.io_err("VFIO_DEVICE_RESET"))
        })
    }
}
