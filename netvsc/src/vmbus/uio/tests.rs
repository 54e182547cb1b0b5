//! The uio backend against a fake kernel: a sysfs tree in a temporary directory, a regular
//! file standing for `/dev/uioN` (mmap of a regular file works; note that its maps overlap,
//! since map K is just file offset K × page size, unlike a real uio node where the offset only
//! selects the map), and a socket pair standing for the interrupt side of the uio fd.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;
use crate::vmbus::{OutgoingKind, OutgoingPacket, OutgoingRing, RingMemory};

const LONG: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(30);
const STORVSC: &str = "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f";
const NIC_ON_UIO: &str = "ed963694-e847-4b2a-85af-bc9cfc11d6f3";
const NIC_ON_NETVSC: &str = "0a2b4c6d-0000-4000-8000-000000000001";
const RING_HALF: usize = 16 * PAGE_SIZE;
const DEVICE_FILE_SIZE: usize = 2 * RING_HALF;

struct FakeKernel {
    _dir: tempfile::TempDir,
    sys: PathBuf,
    dev: PathBuf,
    /// The kernel's end of the interrupt socket pair.
    irq_peer: UnixStream,
    irq: Arc<OwnedFd>,
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

impl FakeKernel {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sys = dir.path().join("sys");
        let dev = dir.path().join("dev");
        fs::create_dir_all(sys.join("bus/vmbus/devices")).unwrap();
        fs::create_dir_all(&dev).unwrap();
        let (ours, peer) = UnixStream::pair().unwrap();
        peer.set_read_timeout(Some(LONG)).unwrap();
        let kernel = Self {
            _dir: dir,
            sys,
            dev,
            irq_peer: peer,
            irq: Arc::new(OwnedFd::from(ours)),
        };
        kernel.add_device(
            STORVSC,
            "{BA6163D9-04A1-4D29-B605-72E2FFB1DC7F}",
            3,
            None,
            None,
        );
        kernel.add_device(NIC_ON_NETVSC, NETVSC_CLASS_ID, 11, Some(1), None);
        kernel.add_device(
            NIC_ON_UIO,
            &format!("{{{NETVSC_CLASS_ID}}}"),
            14,
            Some(37),
            Some("uio3"),
        );
        kernel.set_maps(
            "uio3",
            &[
                ("txrx_rings", DEVICE_FILE_SIZE),
                ("int_page", PAGE_SIZE),
                ("monitor_page", PAGE_SIZE),
                ("recv:1234", 8 * PAGE_SIZE),
                ("send:5678", 4 * PAGE_SIZE),
            ],
        );
        let node = fs::File::create(kernel.dev.join("uio3")).unwrap();
        node.set_len(DEVICE_FILE_SIZE as u64).unwrap();
        kernel
    }

    fn device_dir(&self, instance: &str) -> PathBuf {
        self.sys.join("bus/vmbus/devices").join(instance)
    }

    fn add_device(
        &self,
        instance: &str,
        class: &str,
        relid: u32,
        monitor_id: Option<u8>,
        uio: Option<&str>,
    ) {
        let dir = self.device_dir(instance);
        write(&dir.join("class_id"), &format!("{class}\n"));
        write(&dir.join("device_id"), &format!("{{{instance}}}\n"));
        write(&dir.join("id"), &format!("{relid}\n"));
        if let Some(m) = monitor_id {
            write(&dir.join("monitor_id"), &format!("{m}\n"));
        }
        if let Some(uio) = uio {
            fs::create_dir_all(dir.join("uio").join(uio)).unwrap();
        }
        // The primary channel also appears under channels/.
        write(
            &dir.join("channels")
                .join(relid.to_string())
                .join("subchannel_id"),
            "0\n",
        );
    }

    fn set_maps(&self, uio: &str, maps: &[(&str, usize)]) {
        let dir = self.sys.join("class/uio").join(uio).join("maps");
        let _ = fs::remove_dir_all(&dir);
        for (k, (name, size)) in maps.iter().enumerate() {
            let map = dir.join(format!("map{k}"));
            write(&map.join("name"), &format!("{name}\n"));
            write(&map.join("size"), &format!("0x{size:016x}\n"));
            write(&map.join("offset"), "0x0\n");
            write(
                &map.join("addr"),
                &format!("0x{:016x}\n", 0xffff_8880_0000_0000u64 + k as u64),
            );
        }
    }

    fn config(&self) -> UioConfig {
        UioConfig {
            sysfs_root: self.sys.clone(),
            dev_root: self.dev.clone(),
            instance: None,
            retry_interval: Duration::from_millis(1),
            irq: IrqSource::Fd(self.irq.clone()),
            monitor_latency: DEFAULT_MONITOR_LATENCY,
        }
    }

    fn device_bytes(&self, offset: usize, len: usize) -> Vec<u8> {
        fs::read(self.dev.join("uio3")).unwrap()[offset..offset + len].to_vec()
    }

    fn device_word(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.device_bytes(offset, 4).try_into().unwrap())
    }

    /// Reads one 4-byte write the driver made to the uio fd.
    fn take_irq_write(&mut self) -> i32 {
        let mut buf = [0u8; 4];
        self.irq_peer.read_exact(&mut buf).unwrap();
        i32::from_ne_bytes(buf)
    }
}

#[test]
fn finds_the_netvsc_bound_to_uio_among_several_devices() {
    let kernel = FakeKernel::new();
    let all = sysfs::devices_of_class(&kernel.sys, NETVSC_CLASS_ID).unwrap();
    assert_eq!(
        all.iter().map(|d| d.instance.as_str()).collect::<Vec<_>>(),
        [NIC_ON_NETVSC, NIC_ON_UIO]
    );
    let device = UioDevice::open(kernel.config()).unwrap();
    let info = device.info();
    assert_eq!(info.instance, NIC_ON_UIO);
    assert_eq!(info.device_id, NIC_ON_UIO);
    assert_eq!(info.class_id, NETVSC_CLASS_ID);
    assert_eq!((info.relid, info.monitor_id), (14, Some(37)));
    assert_eq!(info.uio.as_deref(), Some("uio3"));
    assert!(device.is_present());

    let by_instance = UioDevice::open(UioConfig {
        instance: Some(
            format!("{{{}}}", NIC_ON_UIO.to_uppercase())
                .parse()
                .unwrap(),
        ),
        ..kernel.config()
    })
    .unwrap();
    assert_eq!(by_instance.info().instance, NIC_ON_UIO);

    let not_bound = UioDevice::open(UioConfig {
        instance: Some(NIC_ON_NETVSC.parse().unwrap()),
        ..kernel.config()
    })
    .unwrap_err();
    assert!(
        matches!(&not_bound, DeviceError::Sysfs { reason, .. } if reason.contains("uio_hv_generic")),
        "{not_bound}"
    );
    let storage = UioDevice::open(UioConfig {
        instance: Some(STORVSC.parse().unwrap()),
        ..kernel.config()
    })
    .unwrap_err();
    assert!(matches!(storage, DeviceError::NotFound { .. }), "{storage}");
}

#[test]
fn garbled_or_missing_files_are_clear_errors() {
    let kernel = FakeKernel::new();
    let dir = kernel.device_dir(NIC_ON_UIO);
    write(&dir.join("id"), "fourteen\n");
    let err = sysfs::read_device(&dir).unwrap_err();
    assert!(
        err.to_string().contains("id: expected a decimal number"),
        "{err}"
    );
    // A device that cannot be read is skipped by discovery: none is left bound to uio.
    assert!(matches!(
        UioDevice::open(kernel.config()),
        Err(DeviceError::NotFound { .. })
    ));
    write(&dir.join("id"), "14\n");
    write(&dir.join("class_id"), "{not-a-guid}\n");
    assert!(
        sysfs::read_device(&dir)
            .unwrap_err()
            .to_string()
            .contains("expected a GUID")
    );
    write(&dir.join("class_id"), NETVSC_CLASS_ID);
    fs::remove_file(dir.join("device_id")).unwrap();
    assert!(matches!(
        sysfs::read_device(&dir),
        Err(DeviceError::Io { op: "read", .. })
    ));
    write(&dir.join("device_id"), NIC_ON_UIO);
    write(&dir.join("monitor_id"), "300\n");
    assert!(
        sysfs::read_device(&dir).is_err(),
        "monitor id must fit a u8"
    );
    write(&dir.join("monitor_id"), "37\n");

    write(&kernel.sys.join("class/uio/uio3/maps/map3/size"), "0xZZ\n");
    let err = UioDevice::open(kernel.config()).unwrap_err();
    assert!(
        matches!(&err, DeviceError::Sysfs { path, reason }
            if path.ends_with("map3/size") && reason.contains("hex")),
        "{err}"
    );
    kernel.set_maps("uio5", &[]);
    assert!(sysfs::read_maps(&kernel.sys, "uio5").is_err());
    fs::remove_file(kernel.dev.join("uio3")).unwrap();
    kernel.set_maps(
        "uio3",
        &[
            ("txrx_rings", DEVICE_FILE_SIZE),
            ("int_page", PAGE_SIZE),
            ("monitor_page", PAGE_SIZE),
            ("recv:1234", PAGE_SIZE),
            ("send:5678", PAGE_SIZE),
        ],
    );
    let err = UioDevice::open(kernel.config()).unwrap_err();
    assert!(
        matches!(&err, DeviceError::Sysfs { path, .. } if path.ends_with("dev/uio3")),
        "{err}"
    );
    for words in [
        "device node is missing",
        NIC_ON_UIO,
        "must be bound to uio_hv_generic",
        "docs/deploy.md",
    ] {
        assert!(err.to_string().contains(words), "{words:?} missing: {err}");
    }
}

#[test]
fn instance_guids_are_parsed_in_the_forms_sysfs_and_users_write() {
    for text in [
        NIC_ON_UIO,
        "{ED963694-E847-4B2A-85AF-BC9CFC11D6F3}",
        "Ed963694-e847-4B2A-85af-bc9cfc11d6f3",
    ] {
        let guid: Guid = text.parse().unwrap();
        assert_eq!(guid.as_str(), NIC_ON_UIO, "{text}");
        assert_eq!(guid.to_string(), NIC_ON_UIO);
    }
    for text in [
        "",
        "eth0",
        "ed963694e8474b2a85afbc9cfc11d6f3",
        "ed963694-e847-4b2a-85af-bc9cfc11d6f",
        "ed963694-e847-4b2a-85af-bc9cfc11d6f3a",
        "ed96369-4e847-4b2a-85af-bc9cfc11d6f3",
        "ed963694-e847-4b2a-85af-bc9cfc11d6fg",
        "{ed963694-e847-4b2a-85af-bc9cfc11d6f3",
        "ed963694-e847-4b2a-85af-bc9cfc11d6f3}",
        "{{ed963694-e847-4b2a-85af-bc9cfc11d6f3}}",
        " ed963694-e847-4b2a-85af-bc9cfc11d6f3",
    ] {
        let err = text.parse::<Guid>().unwrap_err();
        assert_eq!(err.text, text);
        let message = err.to_string();
        assert!(
            message.contains("8-4-4-4-12") && message.contains(&format!("{text:?}")),
            "{message}"
        );
    }
}

#[test]
fn a_permission_error_says_root_is_needed() {
    // Tests run as root, which the kernel lets through: script the kernel's answers instead.
    let node = Path::new("/dev/uio3");
    for errno in [libc::EACCES, libc::EPERM] {
        let err = node_open_error(node, NIC_ON_UIO, io::Error::from_raw_os_error(errno));
        assert!(
            matches!(&err, DeviceError::Sysfs { path, .. } if path == node),
            "{err}"
        );
        let message = err.to_string();
        assert!(
            message.contains("needs root") && message.contains("read and write access"),
            "{message}"
        );
        let sysfs_err = sysfs::io_error(
            "read",
            Path::new("/sys/class/uio/uio3/maps/map0/size"),
            io::Error::from_raw_os_error(errno),
        );
        assert!(
            sysfs_err.to_string().contains("needs root, or read access"),
            "{sysfs_err}"
        );
    }
    // Other errors keep their kind.
    assert!(matches!(
        node_open_error(node, NIC_ON_UIO, io::Error::from_raw_os_error(libc::ENODEV)),
        DeviceError::Gone { .. }
    ));
    assert!(matches!(
        node_open_error(node, NIC_ON_UIO, io::Error::from_raw_os_error(libc::EBUSY)),
        DeviceError::Io { op: "open", .. }
    ));
    assert!(matches!(
        node_open_error(node, NIC_ON_UIO, io::Error::from_raw_os_error(libc::ENOENT)),
        DeviceError::Sysfs { .. }
    ));
}

#[test]
fn a_failed_mmap_names_the_map_and_its_size() {
    let kernel = FakeKernel::new();
    // No address space holds 1 EiB: the mmap of the receive buffer fails.
    kernel.set_maps(
        "uio3",
        &[
            ("txrx_rings", DEVICE_FILE_SIZE),
            ("int_page", PAGE_SIZE),
            ("monitor_page", PAGE_SIZE),
            ("recv:1234", 1 << 60),
            ("send:5678", 4 * PAGE_SIZE),
        ],
    );
    let err = UioDevice::open(kernel.config()).unwrap_err();
    assert!(
        matches!(&err, DeviceError::BadMap { device, index: 3, .. } if device == "uio3"),
        "{err}"
    );
    let message = err.to_string();
    for words in [
        "\"recv:1234\"",
        "0x1000000000000000 bytes",
        &format!("offset {:#x}", 3 * sys::page_size()),
        // The fake node is a regular file: the map is refused before an mmap could succeed
        // and a touch past the file's end raise SIGBUS.
        "is a regular file of 0x20000 bytes, shorter than",
    ] {
        assert!(message.contains(words), "{words:?} missing: {message}");
    }
}

fn map(index: usize, name: &str, size: usize) -> UioMap {
    UioMap {
        index,
        name: name.into(),
        size,
        offset: 0,
        addr: 0,
    }
}

#[test]
fn map_names_and_sizes_are_checked_and_gpadls_parsed() {
    let good = || {
        vec![
            map(0, "txrx_rings", 4 << 20),
            map(1, "int_page", PAGE_SIZE),
            map(2, "monitor_page", PAGE_SIZE),
            map(3, "recv:4294967295", 31 << 20),
            map(4, "send:7", 16 << 20),
        ]
    };
    let maps = NetvscMaps::validate("uio0", good()).unwrap();
    assert_eq!((maps.receive_gpadl, maps.send_gpadl), (u32::MAX, 7));

    type Mangle = Box<dyn Fn(&mut Vec<UioMap>)>;
    let cases: Vec<(usize, Mangle)> = vec![
        (4, Box::new(|m| m.truncate(4))),
        (0, Box::new(|m| m[0].name = "rings".into())),
        (0, Box::new(|m| m[0].size = 3 * PAGE_SIZE)),
        (0, Box::new(|m| m[0].size = 2 * PAGE_SIZE)),
        (1, Box::new(|m| m[1].name = "monitor_page".into())),
        (2, Box::new(|m| m[2].size = 100)),
        (3, Box::new(|m| m[3].name = "recv:".into())),
        (3, Box::new(|m| m[3].name = "recv:-1".into())),
        (3, Box::new(|m| m[3].name = "send:12".into())),
        (4, Box::new(|m| m[4].name = "send 12".into())),
        (4, Box::new(|m| m[4].size = 0)),
    ];
    for (index, mangle) in cases {
        let mut maps = good();
        mangle(&mut maps);
        let err = NetvscMaps::validate("uio0", maps).unwrap_err();
        assert!(
            matches!(&err, DeviceError::BadMap { index: i, .. } if *i == index),
            "expected map {index}: {err}"
        );
    }
}

#[test]
fn primary_rings_are_map_zero_split_in_half() {
    let kernel = FakeKernel::new();
    let device = UioDevice::open(kernel.config()).unwrap();
    assert_eq!(device.maps().receive_gpadl, 1234);
    assert_eq!(device.maps().send_gpadl, 5678);
    let (recv, gpadl) = device.receive_buffer().unwrap();
    assert_eq!((recv.len(), gpadl), (8 * PAGE_SIZE, 1234));
    assert_eq!(device.send_buffer().unwrap().1, 5678);

    let rings = device.primary().unwrap();
    assert_eq!(rings.outgoing.len(), RING_HALF);
    assert_eq!(rings.incoming.len(), RING_HALF);
    let mut tx = OutgoingRing::new(rings.outgoing, true).unwrap();
    tx.write(&OutgoingPacket {
        kind: OutgoingKind::InBand,
        transaction_id: 1,
        completion_requested: false,
        payload: &[0; 8],
    })
    .unwrap();
    assert_eq!(
        kernel.device_word(0),
        32,
        "TX write_index in the file's first half"
    );
    RingMemory::new(rings.incoming)
        .unwrap()
        .interrupt_mask()
        .store(1, Ordering::SeqCst);
    assert_eq!(
        kernel.device_word(RING_HALF + 8),
        1,
        "RX header in the second half"
    );
    assert!(matches!(
        UioDevice::open(kernel.config()).unwrap().dma_memory(4096),
        Err(DeviceError::Unsupported(_))
    ));
}

#[test]
fn a_latency_past_the_tables_range_saturates_and_keeps_the_neighbour() {
    let page = SharedMemory::anonymous(PAGE_SIZE).unwrap();
    let neighbour = monitor_latency_offset(4);
    page.atomic_u32(neighbour)
        .unwrap()
        .store(0x1234, Ordering::SeqCst);
    write_monitor_latency(&page, 5, Duration::from_secs(1)).unwrap();
    assert_eq!(
        page.atomic_u32(neighbour).unwrap().load(Ordering::SeqCst),
        0xffff_1234
    );
    write_monitor_latency(&page, 4, Duration::from_nanos(250)).unwrap();
    assert_eq!(
        page.atomic_u32(neighbour).unwrap().load(Ordering::SeqCst),
        0xffff_0002
    );
}

#[test]
fn subchannels_wait_for_their_late_ring_file_and_doorbells_land_in_the_right_page() {
    let mut kernel = FakeKernel::new();
    let mut device = UioDevice::open(kernel.config()).unwrap();
    let dir = kernel.device_dir(NIC_ON_UIO).join("channels/40");
    write(&dir.join("subchannel_id"), "1\n");
    // The directory is there, the ring file not yet.
    assert!(matches!(
        device.open_subchannels(1, SHORT),
        Err(DeviceError::Timeout { .. })
    ));
    let ring = fs::File::create(dir.join("ring")).unwrap();
    ring.set_len(2 * 4 * PAGE_SIZE as u64).unwrap();
    assert!(matches!(
        device.open_subchannels(2, SHORT),
        Err(DeviceError::Timeout { .. })
    ));
    let subs = device.open_subchannels(1, LONG).unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].index, 1);
    assert_eq!(subs[0].outgoing.len(), 4 * PAGE_SIZE);
    assert!(matches!(
        device.open_subchannels(1, SHORT),
        Err(DeviceError::Config(_))
    ));

    // Primary: monitored, id 37 → trigger group 1, bit 5 of its pending word.
    device.doorbell(0).unwrap().signal().unwrap();
    let monitor = 2 * sys::page_size();
    assert_eq!(
        kernel.device_word(monitor + monitor_pending_offset(1)),
        1 << 5
    );
    assert_eq!(kernel.device_word(monitor + monitor_pending_offset(0)), 0);
    // Its latency entry (a u16; 37 is odd, so the high half of its word) says 50 µs in
    // 100 ns units, and its neighbour's half is untouched.
    let latency_word = monitor + (monitor_latency_offset(37) & !3);
    assert_eq!(kernel.device_word(latency_word), 500 << 16);

    // Subchannel 1: not monitored, relid 40 → interrupt page send half, word 1, bit 8, and a
    // write of 1 to the uio fd so the kernel signals the host.
    device.doorbell(1).unwrap().signal().unwrap();
    let int_page = sys::page_size();
    assert_eq!(
        kernel.device_word(int_page + INT_PAGE_SEND_OFFSET + 4),
        1 << 8
    );
    assert_eq!(kernel.take_irq_write(), 1);
    assert!(matches!(
        device.doorbell(2),
        Err(DeviceError::NoSuchChannel {
            channel: 2,
            available: 2
        })
    ));

    // After a reopen the session starts over.
    device.reopen(LONG).unwrap();
    assert!(matches!(
        device.doorbell(1),
        Err(DeviceError::NoSuchChannel { .. })
    ));
    assert_eq!(device.open_subchannels(1, LONG).unwrap().len(), 1);
}

#[test]
fn interrupts_are_enabled_waited_for_and_a_vanished_device_is_gone() {
    let mut kernel = FakeKernel::new();
    let mut device = UioDevice::open(kernel.config()).unwrap();
    assert!(!device.wait_for_interrupt(SHORT).unwrap());
    assert_eq!(kernel.take_irq_write(), 1, "waiting enables interrupts");
    kernel.irq_peer.write_all(&5u32.to_ne_bytes()).unwrap();
    assert!(device.wait_for_interrupt(LONG).unwrap());
    assert_eq!(kernel.take_irq_write(), 1);
    assert!(
        !device.wait_for_interrupt(Duration::ZERO).unwrap(),
        "count consumed"
    );

    fs::remove_dir_all(kernel.device_dir(NIC_ON_UIO)).unwrap();
    assert!(!device.is_present());
    assert!(matches!(device.reopen(LONG), Err(DeviceError::Gone { .. })));
    assert!(matches!(
        device.primary(),
        Err(DeviceError::ChannelDead { .. })
    ));
    assert!(matches!(
        device.open_subchannels(1, LONG),
        Err(DeviceError::ChannelDead { .. })
    ));
}

#[test]
fn a_closed_interrupt_fd_means_the_device_is_gone() {
    let kernel = FakeKernel::new();
    let device = UioDevice::open(kernel.config()).unwrap();
    // The kernel's end closing (as on rescind) reads as end of file or a broken pipe: gone.
    drop(kernel);
    assert!(matches!(
        device.wait_for_interrupt(LONG),
        Err(DeviceError::Gone { .. })
    ));
}
