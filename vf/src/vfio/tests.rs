//! The VFIO logic against the scripted fake: open sequences, failures, interrupts, DMA
//! bookkeeping and release order.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::fake::{Call, FakeScript, FakeVfio, FdKind};
use super::*;
use crate::device::ALL_ONES;

const BDF: &str = "0000:00:04.0";
const GROUP: u32 = 7;

/// A sysfs tree with `bus/pci/devices/<BDF>/iommu_group -> ../../../../kernel/iommu_groups/7`.
fn sysfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let dev = dir.path().join("bus/pci/devices").join(BDF);
    std::fs::create_dir_all(&dev).unwrap();
    let group = dir
        .path()
        .join("kernel/iommu_groups")
        .join(GROUP.to_string());
    std::fs::create_dir_all(&group).unwrap();
    std::os::unix::fs::symlink(
        format!("../../../../kernel/iommu_groups/{GROUP}"),
        dev.join("iommu_group"),
    )
    .unwrap();
    dir
}

fn config(mode: IommuMode, sysfs: &tempfile::TempDir) -> VfioConfig {
    VfioConfig {
        mode,
        sysfs_root: sysfs.path().to_owned(),
        dev_root: PathBuf::from("/fakedev"),
        pagemap: PathBuf::from("/nonexistent/pagemap"),
    }
}

fn open_with(
    mode: IommuMode,
    script: FakeScript,
) -> (
    tempfile::TempDir,
    Arc<FakeVfio>,
    Result<VfioDevice, DeviceError>,
) {
    let tree = sysfs();
    let fake = Arc::new(FakeVfio::new(script));
    let result = VfioDevice::open(BDF, &config(mode, &tree), fake.clone());
    (tree, fake, result)
}

fn open_sequence(group_node: &str, iommu: u32) -> Vec<Call> {
    vec![
        Call::OpenContainer(PathBuf::from("/fakedev/vfio/vfio")),
        Call::ApiVersion,
        Call::CheckExtension(iommu),
        Call::OpenGroup(PathBuf::from("/fakedev/vfio").join(group_node)),
        Call::GroupStatus,
        Call::SetContainer,
        Call::SetIommu(iommu),
        Call::GetDeviceFd(BDF.to_owned()),
        Call::DeviceInfo,
        Call::RegionInfo(b::VFIO_PCI_CONFIG_REGION_INDEX),
        Call::RegionInfo(b::VFIO_PCI_BAR0_REGION_INDEX),
        Call::MmapRegion {
            offset: 0,
            len: 16 * 1024,
        },
    ]
}

const RELEASE: [Call; 3] = [
    Call::Close(FdKind::Device),
    Call::Close(FdKind::Group),
    Call::Close(FdKind::Container),
];

#[test]
fn sysfs_group_discovery() {
    let tree = sysfs();
    assert_eq!(iommu_group(tree.path(), BDF).unwrap(), GROUP);
    let err = iommu_group(tree.path(), "0000:00:05.0").unwrap_err();
    assert!(matches!(err, DeviceError::NoIommuGroup { .. }), "{err}");
    let bad = tree.path().join("bus/pci/devices/0000:00:06.0");
    std::fs::create_dir_all(&bad).unwrap();
    std::os::unix::fs::symlink("../groups/not-a-number", bad.join("iommu_group")).unwrap();
    let err = iommu_group(tree.path(), "0000:00:06.0").unwrap_err();
    assert!(err.to_string().contains("iommu_group"), "{err}");
}

#[test]
fn group_paths_per_mode() {
    let mut cfg = VfioConfig::new(IommuMode::Type1);
    assert_eq!(cfg.group_path(3), PathBuf::from("/dev/vfio/3"));
    assert_eq!(cfg.container_path(), PathBuf::from("/dev/vfio/vfio"));
    cfg.mode = IommuMode::NoIommu;
    assert_eq!(cfg.group_path(3), PathBuf::from("/dev/vfio/noiommu-3"));
}

#[test]
fn type1_open_sequence() {
    let (_tree, fake, dev) = open_with(IommuMode::Type1, FakeScript::default());
    // Drivers hold the device as a trait object.
    let dev: Arc<dyn VfDevice> = Arc::new(dev.unwrap());
    assert_eq!(dev.name(), BDF);
    assert_eq!(fake.calls(), open_sequence("7", b::VFIO_TYPE1v2_IOMMU));
    assert_eq!(fake.open_fds(), 3);
    drop(dev);
    assert_eq!(fake.open_fds(), 0);
}

#[test]
fn group_and_mode_are_reported() {
    let (_tree, _fake, dev) = open_with(IommuMode::NoIommu, FakeScript::default());
    let dev = dev.unwrap();
    assert_eq!(dev.group(), GROUP);
    assert_eq!(dev.mode(), IommuMode::NoIommu);
}

#[test]
fn noiommu_open_sequence() {
    let (_tree, fake, dev) = open_with(IommuMode::NoIommu, FakeScript::default());
    let _dev = dev.unwrap();
    assert_eq!(
        fake.calls(),
        open_sequence("noiommu-7", b::VFIO_NOIOMMU_IOMMU)
    );
}

#[test]
fn group_not_viable_is_an_error_and_releases_what_was_opened() {
    let script = FakeScript {
        group_flags: 0,
        ..FakeScript::default()
    };
    let (_tree, fake, dev) = open_with(IommuMode::Type1, script);
    let err = dev.unwrap_err();
    assert!(
        matches!(err, DeviceError::GroupNotViable { group: GROUP, .. }),
        "{err}"
    );
    let calls = fake.calls();
    assert_eq!(calls[calls.len() - 3], Call::GroupStatus);
    assert_eq!(calls[calls.len() - 2..], RELEASE[1..]);
    assert_eq!(fake.open_fds(), 0);
}

#[test]
fn missing_noiommu_extension_is_a_clear_error() {
    let script = FakeScript {
        extensions: vec![b::VFIO_TYPE1v2_IOMMU],
        ..FakeScript::default()
    };
    let (_tree, fake, dev) = open_with(IommuMode::NoIommu, script);
    let err = dev.unwrap_err();
    assert!(matches!(err, DeviceError::ExtensionMissing { .. }));
    let msg = err.to_string();
    assert!(msg.contains("VFIO_NOIOMMU_IOMMU") && msg.contains("enable_unsafe_noiommu_mode"));
    assert!(msg.starts_with(BDF), "{msg}");
    assert_eq!(fake.calls().last(), Some(&Call::Close(FdKind::Container)));
    assert_eq!(fake.open_fds(), 0);
}

#[test]
fn api_version_mismatch_is_an_error() {
    let script = FakeScript {
        api_version: 1,
        ..FakeScript::default()
    };
    let (_tree, _fake, dev) = open_with(IommuMode::Type1, script);
    assert!(matches!(
        dev.unwrap_err(),
        DeviceError::ApiVersion { version: 1, .. }
    ));
}

#[test]
fn failing_device_fd_releases_group_then_container() {
    let mut script = FakeScript::default();
    script.failures.insert("GetDeviceFd", libc::EBUSY);
    let (_tree, fake, dev) = open_with(IommuMode::Type1, script);
    let err = dev.unwrap_err();
    assert!(
        matches!(&err, DeviceError::Io { op: "VFIO_GROUP_GET_DEVICE_FD", source, .. }
            if source.raw_os_error() == Some(libc::EBUSY)),
        "{err}"
    );
    let calls = fake.calls();
    assert_eq!(calls[calls.len() - 2..], RELEASE[1..]);
}

#[test]
fn bar0_must_be_mappable() {
    let mut script = FakeScript::default();
    script
        .regions
        .get_mut(&b::VFIO_PCI_BAR0_REGION_INDEX)
        .unwrap()
        .flags &= !b::VFIO_REGION_INFO_FLAG_MMAP;
    let (_tree, fake, dev) = open_with(IommuMode::Type1, script);
    let err = dev.unwrap_err();
    assert!(
        matches!(err, DeviceError::Region { region: 0, .. }),
        "{err}"
    );
    assert_eq!(fake.calls()[fake.calls().len() - 3..], RELEASE);
    assert_eq!(fake.open_fds(), 0);
}

#[test]
fn bar0_registers_reach_the_mapping_and_read_all_ones_after_release() {
    let (_tree, fake, dev) = open_with(IommuMode::Type1, FakeScript::default());
    let dev = dev.unwrap();
    let regs = dev.bar0();
    regs.write32(0x10, 0xabcd);
    let bar = &fake.mapped_regions()[0];
    assert_eq!(bar.atomic_u32(0x10).unwrap().load(Ordering::SeqCst), 0xabcd);
    bar.atomic_u32(0x20).unwrap().store(5, Ordering::SeqCst);
    assert_eq!(regs.read32(0x20), 5);
    assert_eq!(regs.read32(16 * 1024), ALL_ONES);
    dev.release().unwrap();
    assert_eq!(regs.read32(0x20), ALL_ONES);
}

#[test]
fn config_space_access_is_bounded() {
    let (_tree, fake, dev) = open_with(IommuMode::Type1, FakeScript::default());
    let dev = dev.unwrap();
    assert_eq!(dev.config_read16(0).unwrap(), 0x8086);
    assert_eq!(dev.config_read16(2).unwrap(), 0x10ca);
    dev.config_write32(0x10, 0xfeed_f00d).unwrap();
    assert_eq!(dev.config_read32(0x10).unwrap(), 0xfeed_f00d);
    dev.config_write8(0xfff, 9).unwrap();
    assert_eq!(dev.config_read8(0xfff).unwrap(), 9);
    fake.clear_calls();
    let err = dev.config_read16(4095).unwrap_err();
    assert!(matches!(
        err,
        DeviceError::ConfigOutOfRange {
            offset: 4095,
            len: 2,
            ..
        }
    ));
    assert!(dev.config_write32(4094, 0).is_err());
    assert!(
        fake.calls().is_empty(),
        "out-of-range accesses never reach the kernel"
    );
}

#[test]
fn presence_follows_config_space() {
    let (_tree, fake, dev) = open_with(IommuMode::Type1, FakeScript::default());
    let dev = dev.unwrap();
    assert!(dev.is_present());
    fake.script(|s| s.config.fill(0xff));
    assert!(!dev.is_present());
    fake.script(|s| s.config[0] = 0x86);
    assert!(dev.is_present());
    dev.release().unwrap();
    assert!(!dev.is_present());
}

#[test]
fn msix_setup_binds_one_eventfd_per_vector() {
    let (_tree, fake, dev) = open_with(IommuMode::Type1, FakeScript::default());
    let dev = dev.unwrap();
    fake.clear_calls();
    let msix = b::VFIO_PCI_MSIX_IRQ_INDEX;
    let fds = dev.enable_msix(3).unwrap();
    assert_eq!(fds.len(), 3);
    assert_eq!(
        fake.calls(),
        [
            Call::IrqInfo(msix),
            Call::SetIrqs {
                index: msix,
                start: 0,
                count: 3
            }
        ]
    );
    let err = dev.enable_msix(4).unwrap_err();
    assert!(
        matches!(
            err,
            DeviceError::IrqUnavailable {
                requested: 4,
                available: 3,
                ..
            }
        ),
        "{err}"
    );
    fake.clear_calls();
    assert_eq!(dev.enable_msix(2).unwrap().len(), 2);
    assert_eq!(
        fake.calls()[1..],
        [
            Call::SetIrqs {
                index: msix,
                start: 0,
                count: 0
            },
            Call::SetIrqs {
                index: msix,
                start: 0,
                count: 2
            }
        ]
    );
    fake.clear_calls();
    dev.disable_msix().unwrap();
    dev.disable_msix().unwrap();
    assert_eq!(
        fake.calls(),
        [Call::SetIrqs {
            index: msix,
            start: 0,
            count: 0
        }]
    );
}

#[test]
fn msix_without_eventfd_support_is_unavailable() {
    let mut script = FakeScript::default();
    script
        .irqs
        .get_mut(&b::VFIO_PCI_MSIX_IRQ_INDEX)
        .unwrap()
        .flags = 0;
    let (_tree, _fake, dev) = open_with(IommuMode::Type1, script);
    let err = dev.unwrap().enable_msix(1).unwrap_err();
    assert!(matches!(
        err,
        DeviceError::IrqUnavailable { available: 0, .. }
    ));
}

#[test]
fn request_irq_is_registered_once() {
    let (_tree, fake, dev) = open_with(IommuMode::NoIommu, FakeScript::default());
    let dev = dev.unwrap();
    fake.clear_calls();
    let req = b::VFIO_PCI_REQ_IRQ_INDEX;
    let first = dev.request_irq().unwrap();
    let second = dev.request_irq().unwrap();
    assert!(Arc::ptr_eq(&first, &second));
    assert_eq!(
        fake.calls(),
        [
            Call::IrqInfo(req),
            Call::SetIrqs {
                index: req,
                start: 0,
                count: 1
            }
        ]
    );
    // The kernel signals the eventfd on a removal request; the driver sees it.
    first.signal().unwrap();
    assert_eq!(second.try_consume().unwrap(), Some(1));
}

#[test]
fn request_irq_missing_on_old_kernels() {
    let mut script = FakeScript::default();
    script.device_info.num_irqs = b::VFIO_PCI_REQ_IRQ_INDEX;
    let (_tree, fake, dev) = open_with(IommuMode::Type1, script);
    let dev = dev.unwrap();
    fake.clear_calls();
    let err = dev.request_irq().unwrap_err();
    assert!(matches!(
        err,
        DeviceError::IrqUnavailable { available: 0, .. }
    ));
    assert!(fake.calls().is_empty());
}

#[test]
fn reset_needs_the_reset_flag() {
    let (_tree, fake, dev) = open_with(IommuMode::Type1, FakeScript::default());
    dev.unwrap().reset().unwrap();
    assert!(fake.calls().contains(&Call::Reset));
    let mut script = FakeScript::default();
    script.device_info.flags = b::VFIO_DEVICE_FLAGS_PCI;
    let (_tree, _fake, dev) = open_with(IommuMode::Type1, script);
    assert!(matches!(
        dev.unwrap().reset(),
        Err(DeviceError::Unsupported { .. })
    ));
}

#[test]
fn type1_dma_is_mapped_at_allocated_iovas_and_unmapped_before_release() {
    let (_tree, fake, dev) = open_with(IommuMode::Type1, FakeScript::default());
    let dev = dev.unwrap();
    fake.clear_calls();
    let a = dev.dma_alloc(100).unwrap();
    let b_ = dev.dma_alloc(8192).unwrap();
    assert_eq!((a.len(), a.bus_addr(0)), (100, dma::IOVA_BASE));
    assert_eq!((b_.len(), b_.bus_addr(0)), (8192, dma::IOVA_BASE + 4096));
    assert_eq!(dev.dma_mappings(), 2);
    a.write(0, b"ring").unwrap();
    let (_, bar) = (dev.request_irq().unwrap(), dev.bar0());
    fake.clear_calls();
    drop(dev);
    assert_eq!(
        fake.calls(),
        [
            Call::UnmapDma {
                iova: dma::IOVA_BASE,
                size: 4096
            },
            Call::UnmapDma {
                iova: dma::IOVA_BASE + 4096,
                size: 8192
            },
            RELEASE[0].clone(),
            RELEASE[1].clone(),
            RELEASE[2].clone(),
        ]
    );
    assert_eq!(fake.open_fds(), 0);
    // The caller's memory outlives the device; the device can no longer reach it.
    let mut buf = [0; 4];
    a.read(0, &mut buf).unwrap();
    assert_eq!(&buf, b"ring");
    assert_eq!(bar.read32(0), ALL_ONES);
}

#[test]
fn failed_dma_map_leaves_no_bookkeeping() {
    let mut script = FakeScript::default();
    script.failures.insert("MapDma", libc::ENOSPC);
    let (_tree, _fake, dev) = open_with(IommuMode::Type1, script);
    let dev = dev.unwrap();
    let err = dev.dma_alloc(4096).unwrap_err();
    assert!(
        matches!(
            err,
            DeviceError::Io {
                op: "VFIO_IOMMU_MAP_DMA",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(dev.dma_mappings(), 0);
    assert!(dev.dma_alloc(0).is_err());
}

#[test]
fn release_is_idempotent_and_later_calls_fail_closed() {
    let (_tree, fake, dev) = open_with(IommuMode::Type1, FakeScript::default());
    let dev = dev.unwrap();
    fake.clear_calls();
    dev.release().unwrap();
    dev.release().unwrap();
    assert_eq!(fake.calls(), RELEASE);
    assert!(matches!(dev.dma_alloc(64), Err(DeviceError::Closed { .. })));
    assert!(matches!(
        dev.enable_msix(1),
        Err(DeviceError::Closed { .. })
    ));
    assert!(matches!(dev.request_irq(), Err(DeviceError::Closed { .. })));
    assert!(matches!(
        dev.config_read32(0),
        Err(DeviceError::Closed { .. })
    ));
    drop(dev);
    assert_eq!(
        fake.calls(),
        RELEASE,
        "drop after release releases nothing twice"
    );
}

/// A pagemap the fake fills in as the kernel would (sparse: entries sit at vaddr / 4096 * 8),
/// with `huge_pages` free 2 MiB pages.
fn noiommu_with_pagemap(
    huge_pages: usize,
) -> (
    tempfile::TempDir,
    tempfile::NamedTempFile,
    Arc<FakeVfio>,
    VfioDevice,
) {
    let pagemap = tempfile::NamedTempFile::new().unwrap();
    let script = FakeScript {
        huge_pages,
        pagemap: Some(pagemap.path().to_owned()),
        ..FakeScript::default()
    };
    let tree = sysfs();
    let mut cfg = config(IommuMode::NoIommu, &tree);
    cfg.pagemap = pagemap.path().to_owned();
    let fake = Arc::new(FakeVfio::new(script));
    let dev = VfioDevice::open(BDF, &cfg, fake.clone()).unwrap();
    fake.clear_calls();
    (tree, pagemap, fake, dev)
}

#[test]
fn noiommu_dma_uses_pinned_hugepages_and_physical_addresses() {
    let (_tree, _pagemap, fake, dev) = noiommu_with_pagemap(8);
    let mem = dev.dma_alloc(64 * 1024).unwrap();
    assert_eq!(mem.len(), 64 * 1024);
    assert_eq!(
        mem.bus_addr(0),
        0x10_0000 * 4096,
        "first PFN the fake handed out"
    );
    assert_eq!(fake.calls(), [Call::AllocPinned { size: 64 * 1024 }]);
    let err = dev.dma_alloc(3 << 20).unwrap_err();
    assert!(matches!(err, DeviceError::DmaTooLarge { limit, .. } if limit == sys::HUGE_PAGE_SIZE));
    fake.clear_calls();
    drop(dev);
    assert_eq!(fake.calls(), RELEASE, "no IOMMU: nothing to unmap");
}

#[test]
fn noiommu_dma_without_hugepages_is_an_error_naming_the_sysctl_not_a_small_page() {
    let (_tree, _pagemap, fake, dev) = noiommu_with_pagemap(0);
    // Even a request that fits a 4 KiB page is refused: a small page may be moved by the
    // kernel while the device holds its physical address.
    let err = dev.dma_alloc(2048).unwrap_err();
    assert!(
        matches!(&err, DeviceError::NoHugePages { size: 2048, source, .. }
            if source.raw_os_error() == Some(libc::ENOMEM)),
        "{err}"
    );
    let message = err.to_string();
    for words in [
        "vm.nr_hugepages",
        "/proc/sys/vm/nr_hugepages",
        "hvnet bind --hugepages",
        BDF,
    ] {
        assert!(message.contains(words), "{words:?} missing: {message}");
    }
    assert_eq!(
        fake.calls(),
        [Call::AllocPinned { size: 2048 }],
        "one hugepage attempt, no fallback allocation"
    );
    assert_eq!(dev.dma_mappings(), 0);
}

#[test]
fn noiommu_dma_fails_cleanly_once_the_hugepages_run_out() {
    let (_tree, _pagemap, _fake, dev) = noiommu_with_pagemap(2);
    let first = dev.dma_alloc(4096).unwrap();
    let second = dev.dma_alloc(sys::HUGE_PAGE_SIZE).unwrap();
    assert_eq!(first.bus_addr(0), 0x10_0000 * 4096);
    assert_eq!(
        second.bus_addr(0),
        first.bus_addr(0) + sys::HUGE_PAGE_SIZE as u64,
        "the 4 KiB request took a whole huge page"
    );
    assert!(matches!(
        dev.dma_alloc(4096),
        Err(DeviceError::NoHugePages { .. })
    ));
    assert_eq!(
        dev.dma_mappings(),
        2,
        "the failed allocation left no mapping"
    );
}

#[test]
fn type1_dma_needs_no_hugepages() {
    let script = FakeScript {
        huge_pages: 0,
        ..FakeScript::default()
    };
    let (_tree, fake, dev) = open_with(IommuMode::Type1, script);
    let dev = dev.unwrap();
    fake.clear_calls();
    let mem = dev.dma_alloc(8192).unwrap();
    assert_eq!(mem.len(), 8192);
    assert!(
        fake.calls()
            .iter()
            .all(|c| !matches!(c, Call::AllocPinned { .. })),
        "{:?}",
        fake.calls()
    );
    assert_eq!(dev.dma_mappings(), 1);
}

#[test]
fn noiommu_dma_without_pagemap_access_is_an_error() {
    let (_tree, fake, dev) = open_with(IommuMode::NoIommu, FakeScript::default());
    let dev = dev.unwrap();
    fake.clear_calls();
    let err = dev.dma_alloc(4096).unwrap_err();
    assert!(
        matches!(
            err,
            DeviceError::Io {
                op: "reading pagemap",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(dev.dma_mappings(), 0);
}
