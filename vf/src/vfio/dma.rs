//! DMA bookkeeping of the VFIO backend: the IOVA allocator (IOMMU type1) and the
//! `/proc/self/pagemap` lookup that gives pinned memory its physical addresses (no-IOMMU).
//!
//! Pagemap format (Documentation/admin-guide/mm/pagemap.rst): one little-endian u64 per 4 KiB
//! virtual page at file offset `vaddr / 4096 * 8`; bits 0–54 are the page frame number, bit 63
//! says the page is present. Without `CAP_SYS_ADMIN` the kernel reports every PFN as 0, which
//! is a typed error here ([`DeviceError::PfnHidden`]), never a bus address of 0.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::device::DeviceError;

/// Base page size, the granularity of pagemap entries and of IOVA allocations.
pub const PAGE_SIZE: u64 = 4096;

const PAGEMAP_PRESENT: u64 = 1 << 63;
const PAGEMAP_PFN_MASK: u64 = (1 << 55) - 1;

/// First IOVA handed out: page 0 and the low megabyte stay unused.
pub const IOVA_BASE: u64 = 0x10_0000;
/// End of the IOVA space handed out: below the x86 MSI window at `0xfee0_0000`, so every IOVA
/// also fits 32-bit DMA.
pub const IOVA_END: u64 = 0xfee0_0000;

/// A bump allocator of IOVA ranges in `[IOVA_BASE, IOVA_END)`.
///
/// Ranges are page-aligned (2 MiB-aligned for allocations of 2 MiB or more) and never reused:
/// mappings live as long as the device, and the space (about 4 GiB) outlasts any device.
#[derive(Debug, Clone)]
pub struct IovaAllocator {
    next: u64,
    end: u64,
}

impl Default for IovaAllocator {
    fn default() -> Self {
        Self::new(IOVA_BASE, IOVA_END)
    }
}

impl IovaAllocator {
    /// An allocator over `[start, end)`.
    pub fn new(start: u64, end: u64) -> Self {
        Self { next: start, end }
    }

    /// Allocates `size` bytes (rounded up to a page); `None` when the space is exhausted.
    pub fn alloc(&mut self, size: u64) -> Option<u64> {
        let size = size.checked_next_multiple_of(PAGE_SIZE)?.max(PAGE_SIZE);
        let align = if size >= 2 << 20 { 2 << 20 } else { PAGE_SIZE };
        let start = self.next.checked_next_multiple_of(align)?;
        let end = start.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(start)
    }
}

/// Decodes one pagemap entry for the page at `vaddr` into its physical page address.
pub fn decode_pagemap_entry(device: &str, vaddr: u64, entry: u64) -> Result<u64, DeviceError> {
    if entry & PAGEMAP_PRESENT == 0 {
        return Err(DeviceError::PageNotPresent {
            device: device.to_owned(),
            vaddr,
        });
    }
    let pfn = entry & PAGEMAP_PFN_MASK;
    if pfn == 0 {
        return Err(DeviceError::PfnHidden {
            device: device.to_owned(),
            vaddr,
        });
    }
    Ok(pfn * PAGE_SIZE)
}

/// The physical address of `vaddr` (which need not be page-aligned) for `len` bytes of pinned
/// memory, read from the pagemap file at `pagemap`; every page of the range must be present
/// and physically contiguous with the first.
pub fn physical_address(
    device: &str,
    pagemap: &Path,
    vaddr: u64,
    len: usize,
) -> Result<u64, DeviceError> {
    let io_err = |source| DeviceError::Io {
        device: device.to_owned(),
        op: "reading pagemap",
        source,
    };
    let first_page = vaddr / PAGE_SIZE;
    let last_page = (vaddr + len.max(1) as u64 - 1) / PAGE_SIZE;
    let pages = (last_page - first_page + 1) as usize;
    let mut raw = vec![0u8; pages * 8];
    let file = File::open(pagemap).map_err(io_err)?;
    file.read_exact_at(&mut raw, first_page * 8)
        .map_err(io_err)?;
    let mut base = 0;
    for (i, chunk) in raw.chunks_exact(8).enumerate() {
        let page_vaddr = (first_page + i as u64) * PAGE_SIZE;
        let entry = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        let phys = decode_pagemap_entry(device, page_vaddr, entry)?;
        if i == 0 {
            base = phys;
        } else if phys != base + i as u64 * PAGE_SIZE {
            return Err(DeviceError::NotContiguous {
                device: device.to_owned(),
                vaddr: page_vaddr,
            });
        }
    }
    Ok(base + vaddr % PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn pagemap_file(entries: &[(u64, u64)]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for &(page, entry) in entries {
            file.as_file()
                .write_all_at(&entry.to_le_bytes(), page * 8)
                .unwrap();
        }
        file.flush().unwrap();
        file
    }

    #[test]
    fn pagemap_present_absent_and_hidden_pfn() {
        let file = pagemap_file(&[
            (0x100, PAGEMAP_PRESENT | 0x1234),
            (0x101, PAGEMAP_PRESENT | 0x1235),
            (0x102, 0x1236),          // not present
            (0x103, PAGEMAP_PRESENT), // PFN hidden
            (0x104, PAGEMAP_PRESENT | 0x9999),
        ]);
        let path = file.path();
        assert_eq!(
            physical_address("d", path, 0x100_010, 16).unwrap(),
            0x0123_4010
        );
        assert_eq!(
            physical_address("d", path, 0x100_000, 8192).unwrap(),
            0x0123_4000
        );
        assert!(matches!(
            physical_address("d", path, 0x102_000, 8),
            Err(DeviceError::PageNotPresent {
                vaddr: 0x102_000,
                ..
            })
        ));
        assert!(matches!(
            physical_address("d", path, 0x103_000, 8),
            Err(DeviceError::PfnHidden {
                vaddr: 0x103_000,
                ..
            })
        ));
        assert!(matches!(
            physical_address("d", path, 0x101_000, 8),
            Ok(0x0123_5000)
        ));
        // Present pages whose frames are not adjacent.
        let file2 = pagemap_file(&[(7, PAGEMAP_PRESENT | 50), (8, PAGEMAP_PRESENT | 52)]);
        assert!(matches!(
            physical_address("d", file2.path(), 7 * 4096, 8192),
            Err(DeviceError::NotContiguous { vaddr: 0x8000, .. })
        ));
        // Past the end of the file: an I/O error, not a zero address.
        assert!(matches!(
            physical_address("d", path, 0x9000_0000, 8),
            Err(DeviceError::Io { .. })
        ));
    }

    #[test]
    fn pfn_uses_bits_0_to_54_only() {
        let entry = PAGEMAP_PRESENT | (1 << 55) | (1 << 61) | 0x42;
        assert_eq!(decode_pagemap_entry("d", 0, entry).unwrap(), 0x42_000);
    }

    #[test]
    fn iova_allocator_aligns_and_exhausts() {
        let mut a = IovaAllocator::new(0x1000, 0x60_0000);
        assert_eq!(a.alloc(1), Some(0x1000));
        assert_eq!(a.alloc(0x1001), Some(0x2000));
        assert_eq!(a.alloc(2 << 20), Some(0x20_0000));
        assert_eq!(a.alloc(2 << 20), Some(0x40_0000));
        assert_eq!(a.alloc(1), None);
    }

    proptest! {
        #[test]
        fn iova_ranges_never_overlap(sizes in proptest::collection::vec(1u64..(4 << 20), 1..40)) {
            let mut a = IovaAllocator::default();
            let mut ranges: Vec<(u64, u64)> = Vec::new();
            for size in sizes {
                if let Some(start) = a.alloc(size) {
                    prop_assert_eq!(start % PAGE_SIZE, 0);
                    prop_assert!(start >= IOVA_BASE && start + size <= IOVA_END);
                    for &(s, e) in &ranges {
                        prop_assert!(start >= e || start + size <= s);
                    }
                    ranges.push((start, start + size));
                }
            }
        }
    }
}
