//! Our own device traits in front of any PCI backend.
//!
//! `pci-driver`'s `PciDevice` is sealed, so the igbvf driver talks to [`VfDevice`] instead: one
//! PCI function with BAR0 register I/O ([`RegisterIo`]), bounded config-space access, DMA
//! memory whose bus addresses the device can use, interrupts as eventfds (MSI-X vectors and the
//! VFIO device-request IRQ), presence and reset. Implementations: [`crate::vfio::VfioDevice`]
//! (the kernel) and the software igbvf model of the `integration` crate.
//!
//! Lifecycle: a backend opens the device and hands out an `Arc<dyn VfDevice>`; the driver maps
//! nothing itself. [`VfDevice::release`] (or dropping the last reference) releases everything
//! (DMA mappings, BAR mappings, descriptors) in the backend's documented order, even while the
//! driver still holds references: a planned removal must not wait for every clone to drop. After a removal, register reads return all
//! ones and writes are dropped, so a driver detects "gone" with one comparison.
//!
//! Invariants: register offsets are checked against the BAR size (see [`RegisterIo`]); config
//! accesses are checked against [`CONFIG_SPACE_SIZE`] and fail with a typed error; every error
//! names the device.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use packet::{MemError, SharedMemory};
use parking_lot::RwLock;

use crate::vfio::sys;

/// Size of PCI Express configuration space.
pub const CONFIG_SPACE_SIZE: u16 = 4096;

/// The value every register read returns when the device is gone (or the offset is invalid).
pub const ALL_ONES: u32 = u32::MAX;

/// Errors of the device layer, each naming the device (its PCI address).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A system call on the device, its group or its container failed.
    #[error("{device}: {op} failed")]
    Io {
        /// The device.
        device: String,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The device's IOMMU group could not be found in sysfs.
    #[error("{device}: no iommu group at {path}")]
    NoIommuGroup {
        /// The device.
        device: String,
        /// The sysfs link that was read.
        path: String,
        /// Why it could not be read or parsed.
        #[source]
        source: io::Error,
    },
    /// The kernel speaks another VFIO API version.
    #[error("{device}: vfio api version {version}, expected {expected}")]
    ApiVersion {
        /// The device.
        device: String,
        /// Version reported by the kernel.
        version: u32,
        /// Version this code speaks.
        expected: u32,
    },
    /// The container lacks the IOMMU model the mode needs.
    #[error(
        "{device}: the vfio container does not support {extension} (for no-IOMMU, load vfio \
         with enable_unsafe_noiommu_mode=1 on a kernel built with CONFIG_VFIO_NOIOMMU)"
    )]
    ExtensionMissing {
        /// The device.
        device: String,
        /// The IOMMU model, as vfio.h names it.
        extension: &'static str,
    },
    /// Not every device of the IOMMU group is bound to vfio (or released).
    #[error("{device}: iommu group {group} is not viable (bind every device in it to vfio-pci)")]
    GroupNotViable {
        /// The device.
        device: String,
        /// The group number.
        group: u32,
    },
    /// A region cannot be used as needed.
    #[error("{device}: region {region}: {reason}")]
    Region {
        /// The device.
        device: String,
        /// Region index (`VFIO_PCI_*_REGION_INDEX`).
        region: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A config-space access fell outside the 4 KiB config space.
    #[error("{device}: config access of {len} bytes at offset {offset:#x} is out of range")]
    ConfigOutOfRange {
        /// The device.
        device: String,
        /// Offset of the access.
        offset: u16,
        /// Length of the access.
        len: usize,
    },
    /// An IRQ index has fewer vectors (or no eventfd support) than requested.
    #[error(
        "{device}: irq index {index} offers {available} eventfd vectors, {requested} requested"
    )]
    IrqUnavailable {
        /// The device.
        device: String,
        /// IRQ index (`VFIO_PCI_*_IRQ_INDEX`).
        index: u32,
        /// Vectors requested.
        requested: u32,
        /// Vectors the device offers with eventfd signalling.
        available: u32,
    },
    /// A DMA allocation of this size cannot be made physically contiguous in this mode.
    #[error("{device}: dma allocation of {size:#x} bytes exceeds the {limit:#x}-byte limit")]
    DmaTooLarge {
        /// The device.
        device: String,
        /// Requested size.
        size: usize,
        /// Largest allocation possible.
        limit: usize,
    },
    /// No-IOMMU DMA memory must be pinned 2 MiB hugepages (small pages may be moved while the
    /// device holds their address), and none could be had.
    #[error(
        "{device}: no-IOMMU DMA needs pinned 2 MiB hugepages and {size:#x} bytes of them could \
         not be allocated: reserve hugepages with `hvnet bind --hugepages 64` or \
         `sysctl -w vm.nr_hugepages=64` (/proc/sys/vm/nr_hugepages)"
    )]
    NoHugePages {
        /// The device.
        device: String,
        /// Requested size.
        size: usize,
        /// Why the allocation failed (`ENOMEM`: too few free hugepages).
        #[source]
        source: io::Error,
    },
    /// The IOVA space is exhausted.
    #[error("{device}: no iova space left for {size:#x} bytes")]
    IovaExhausted {
        /// The device.
        device: String,
        /// Requested size.
        size: usize,
    },
    /// `/proc/self/pagemap` says a page of pinned memory is not present.
    #[error("{device}: page at {vaddr:#x} is not present in pagemap")]
    PageNotPresent {
        /// The device.
        device: String,
        /// Virtual address of the page.
        vaddr: u64,
    },
    /// `/proc/self/pagemap` hides page frame numbers (reads 0) without `CAP_SYS_ADMIN`.
    #[error("{device}: pagemap shows no frame number for {vaddr:#x} (needs CAP_SYS_ADMIN)")]
    PfnHidden {
        /// The device.
        device: String,
        /// Virtual address of the page.
        vaddr: u64,
    },
    /// Pinned memory turned out not to be physically contiguous.
    #[error("{device}: pinned memory at {vaddr:#x} is not physically contiguous")]
    NotContiguous {
        /// The device.
        device: String,
        /// Virtual address of the first discontiguous page.
        vaddr: u64,
    },
    /// Shared-memory creation or access failed.
    #[error("{device}: {op}")]
    Memory {
        /// The device.
        device: String,
        /// What was being done.
        op: &'static str,
        /// The memory error.
        #[source]
        source: MemError,
    },
    /// The feature is not offered by the device (e.g. no reset flag).
    #[error("{device}: {what} is not supported by the device")]
    Unsupported {
        /// The device.
        device: String,
        /// The missing feature.
        what: &'static str,
    },
    /// The device was closed or removed.
    #[error("{device}: device is closed")]
    Closed {
        /// The device.
        device: String,
    },
}

/// 32-bit register access to a BAR.
///
/// Out-of-range or misaligned offsets are not errors: reads return [`ALL_ONES`] and writes are
/// dropped, exactly what a removed device does, so the driver's one "all ones means gone" check
/// also catches a bad offset and the hot path carries no `Result`.
pub trait RegisterIo: Send + Sync + fmt::Debug {
    /// Reads the 32-bit register at byte `offset`.
    fn read32(&self, offset: u32) -> u32;
    /// Writes the 32-bit register at byte `offset`.
    fn write32(&self, offset: u32, value: u32);
}

/// A memory-mapped BAR: [`RegisterIo`] over a [`SharedMemory`] view, revocable.
///
/// Accesses are 32-bit atomic loads (`Acquire`) and stores (`Release`): each one aligned MMIO
/// transaction, ordered after earlier DMA-memory writes. Never `SeqCst` or a read-modify-write:
/// on x86 those become a locked `xchg`, which reads the register (and so triggers read-to-clear
/// side effects) before writing it. After
/// [`revoke`](Self::revoke) the mapping is released and the region behaves like a removed device.
#[derive(Debug)]
pub struct MmioRegion {
    map: RwLock<Option<SharedMemory>>,
    size: u32,
}

impl MmioRegion {
    /// Wraps a mapped BAR (its length is the BAR size, capped at 4 GiB).
    pub fn new(map: SharedMemory) -> Self {
        let size = map.len().min(u32::MAX as usize) as u32;
        Self {
            map: RwLock::new(Some(map)),
            size,
        }
    }

    /// Size of the BAR in bytes.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Releases the mapping; from now on reads return all ones and writes are dropped.
    pub fn revoke(&self) {
        self.map.write().take();
    }

    /// Whether [`revoke`](Self::revoke) has been called.
    pub fn is_revoked(&self) -> bool {
        self.map.read().is_none()
    }
}

impl RegisterIo for MmioRegion {
    fn read32(&self, offset: u32) -> u32 {
        let map = self.map.read();
        match map.as_ref().map(|m| m.atomic_u32(offset as usize)) {
            Some(Ok(reg)) => reg.load(Ordering::Acquire),
            _ => ALL_ONES,
        }
    }

    fn write32(&self, offset: u32, value: u32) {
        let map = self.map.read();
        if let Some(Ok(reg)) = map.as_ref().map(|m| m.atomic_u32(offset as usize)) {
            reg.store(value, Ordering::Release);
        }
    }
}

/// An eventfd: how interrupts and device requests are delivered.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// Creates a non-blocking eventfd with counter 0.
    pub fn new() -> io::Result<Self> {
        Ok(Self {
            fd: sys::eventfd_create()?,
        })
    }

    /// Adds one to the counter (what the kernel does on an interrupt; used by software models).
    pub fn signal(&self) -> io::Result<()> {
        sys::eventfd_write(self.fd.as_fd(), 1)
    }

    /// Consumes pending signals without blocking: `Some(count)` if signalled, `None` if not.
    pub fn try_consume(&self) -> io::Result<Option<u64>> {
        sys::eventfd_read(self.fd.as_fd())
    }

    /// Waits up to `timeout` for a signal and consumes it: `Some(count)` or `None` on timeout.
    pub fn wait(&self, timeout: Duration) -> io::Result<Option<u64>> {
        if sys::poll_readable(self.fd.as_fd(), timeout)? {
            self.try_consume()
        } else {
            Ok(None)
        }
    }

    /// Waits up to `timeout` until at least one of `fds` is signalled, in one wait over
    /// all of them (`ppoll(2)`); consumes nothing. Returns, per eventfd, whether it is signalled (so a
    /// caller [`try_consume`](Self::try_consume)s those it cares about). A zero `timeout`
    /// only looks; an empty set returns at once.
    pub fn wait_any(fds: &[&EventFd], timeout: Duration) -> io::Result<Vec<bool>> {
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|fd| fd.fd.as_fd()).collect();
        sys::poll_any_readable(&borrowed, timeout)
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// One PCI function as the VF driver sees it. Object-safe: drivers hold `Arc<dyn VfDevice>`.
pub trait VfDevice: Send + Sync + fmt::Debug {
    /// The device's name (its PCI address, e.g. `0000:00:04.0`), for errors and logs.
    fn name(&self) -> &str;

    /// Register access to BAR0.
    fn bar0(&self) -> Arc<dyn RegisterIo>;

    /// Reads `buf.len()` bytes of config space at `offset`; the range must lie within
    /// [`CONFIG_SPACE_SIZE`].
    fn config_read(&self, offset: u16, buf: &mut [u8]) -> Result<(), DeviceError>;

    /// Writes `buf` to config space at `offset`; the range must lie within
    /// [`CONFIG_SPACE_SIZE`].
    fn config_write(&self, offset: u16, buf: &[u8]) -> Result<(), DeviceError>;

    /// Allocates `size` bytes of zeroed memory the device can DMA to and from; the region's bus
    /// addresses are what the device must be given (IOVA or physical address). The memory
    /// stays valid for DMA until the device is released.
    fn dma_alloc(&self, size: usize) -> Result<SharedMemory, DeviceError>;

    /// Enables MSI-X vectors `0..vectors`, each signalling its own eventfd (index = vector).
    /// Replaces any earlier MSI-X setup.
    /// Whether the device can DMA to every byte of `memory` at the bus addresses `memory`
    /// gives: memory from this device's [`dma_alloc`](Self::dma_alloc), or memory the
    /// platform otherwise lets it reach. A driver must not hand the device any other address.
    fn dma_reachable(&self, memory: &SharedMemory) -> bool;

    fn enable_msix(&self, vectors: u32) -> Result<Vec<Arc<EventFd>>, DeviceError>;

    /// Disables MSI-X.
    fn disable_msix(&self) -> Result<(), DeviceError>;

    /// The device-request eventfd: signalled when the host wants the device back (planned
    /// removal). Registered once; later calls return the same eventfd.
    fn request_irq(&self) -> Result<Arc<EventFd>, DeviceError>;

    /// Whether the device still answers (config space does not read all ones).
    fn is_present(&self) -> bool;

    /// Releases the device now, even while other references exist: the device can no longer
    /// reach DMA memory, register reads return all ones, later calls fail with
    /// [`DeviceError::Closed`], and the backend's descriptors are closed (which lets a pending
    /// host removal complete). Idempotent; dropping the last reference does it too. Memory from
    /// [`dma_alloc`](Self::dma_alloc) stays valid for the CPU while the caller holds it.
    fn release(&self) -> Result<(), DeviceError>;

    /// Resets the function (function-level reset).
    fn reset(&self) -> Result<(), DeviceError>;

    /// Reads one config byte.
    fn config_read8(&self, offset: u16) -> Result<u8, DeviceError> {
        let mut b = [0; 1];
        self.config_read(offset, &mut b)?;
        Ok(b[0])
    }

    /// Reads one little-endian config word.
    fn config_read16(&self, offset: u16) -> Result<u16, DeviceError> {
        let mut b = [0; 2];
        self.config_read(offset, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads one little-endian config dword.
    fn config_read32(&self, offset: u16) -> Result<u32, DeviceError> {
        let mut b = [0; 4];
        self.config_read(offset, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes one config byte.
    fn config_write8(&self, offset: u16, value: u8) -> Result<(), DeviceError> {
        self.config_write(offset, &[value])
    }

    /// Writes one little-endian config word.
    fn config_write16(&self, offset: u16, value: u16) -> Result<(), DeviceError> {
        self.config_write(offset, &value.to_le_bytes())
    }

    /// Writes one little-endian config dword.
    fn config_write32(&self, offset: u16, value: u32) -> Result<(), DeviceError> {
        self.config_write(offset, &value.to_le_bytes())
    }
}

/// Checks that a config access of `len` bytes at `offset` lies within config space; for
/// implementations of [`VfDevice::config_read`]/[`VfDevice::config_write`].
pub fn check_config_range(device: &str, offset: u16, len: usize) -> Result<(), DeviceError> {
    if usize::from(offset) + len <= usize::from(CONFIG_SPACE_SIZE) {
        Ok(())
    } else {
        Err(DeviceError::ConfigOutOfRange {
            device: device.to_owned(),
            offset,
            len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn config_range_check_matches_the_4k_bound(offset in any::<u16>(), len in 0usize..8) {
            let ok = check_config_range("d", offset, len).is_ok();
            prop_assert_eq!(ok, usize::from(offset) + len <= 4096);
        }
    }

    #[test]
    fn mmio_region_checks_offsets_and_revokes() {
        let mem = SharedMemory::anonymous(4096).unwrap();
        let bar = MmioRegion::new(mem.clone());
        bar.write32(8, 0x1234_5678);
        assert_eq!(bar.read32(8), 0x1234_5678);
        assert_eq!(
            mem.atomic_u32(8).unwrap().load(Ordering::SeqCst),
            0x1234_5678
        );
        assert_eq!(bar.read32(4096), ALL_ONES, "past the end");
        assert_eq!(bar.read32(4094), ALL_ONES, "straddles the end");
        assert_eq!(bar.read32(2), ALL_ONES, "misaligned");
        bar.write32(4096, 1); // dropped, no panic
        bar.revoke();
        assert!(bar.is_revoked());
        assert_eq!(bar.read32(8), ALL_ONES);
        bar.write32(8, 0);
        assert_eq!(
            mem.atomic_u32(8).unwrap().load(Ordering::SeqCst),
            0x1234_5678
        );
    }

    #[test]
    fn eventfd_signal_wait_consume() {
        let fd = EventFd::new().unwrap();
        assert_eq!(fd.try_consume().unwrap(), None);
        assert_eq!(fd.wait(Duration::from_millis(1)).unwrap(), None);
        fd.signal().unwrap();
        fd.signal().unwrap();
        assert_eq!(fd.wait(Duration::from_secs(1)).unwrap(), Some(2));
        assert_eq!(fd.try_consume().unwrap(), None);
    }

    #[test]
    fn wait_any_reports_which_eventfds_are_signalled_and_consumes_nothing() {
        let a = EventFd::new().unwrap();
        let b = EventFd::new().unwrap();
        let c = EventFd::new().unwrap();
        assert_eq!(
            EventFd::wait_any(&[&a, &b, &c], Duration::ZERO).unwrap(),
            vec![false; 3],
            "a zero timeout only looks"
        );
        assert!(
            EventFd::wait_any(&[], Duration::from_secs(5))
                .unwrap()
                .is_empty()
        );
        b.signal().unwrap();
        c.signal().unwrap();
        assert_eq!(
            EventFd::wait_any(&[&a, &b, &c], Duration::from_secs(5)).unwrap(),
            vec![false, true, true]
        );
        assert_eq!(
            b.try_consume().unwrap(),
            Some(1),
            "still pending after the wait"
        );
        // A signal from another thread ends a long wait early.
        let a = Arc::new(a);
        let signaller = {
            let a = a.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                a.signal().unwrap();
            })
        };
        assert_eq!(
            EventFd::wait_any(&[&*a, &b], Duration::from_secs(30)).unwrap(),
            vec![true, false]
        );
        signaller.join().unwrap();
    }

    #[test]
    fn wait_any_times_out_after_a_sub_millisecond_timeout() {
        let a = EventFd::new().unwrap();
        assert_eq!(
            EventFd::wait_any(&[&a], Duration::from_micros(300)).unwrap(),
            vec![false]
        );
    }

    #[test]
    fn config_range_is_bounded_to_4k() {
        assert!(check_config_range("d", 4092, 4).is_ok());
        let err = check_config_range("0000:00:04.0", 4094, 4).unwrap_err();
        assert!(matches!(
            err,
            DeviceError::ConfigOutOfRange {
                offset: 4094,
                len: 4,
                ..
            }
        ));
        assert!(err.to_string().starts_with("0000:00:04.0: "));
    }
}
