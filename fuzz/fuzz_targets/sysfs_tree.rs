//! Discovery under `--sysfs-root` over a tree the fuzzer builds: the uio backend's (find the
//! NetVSC by class GUID, its uio device and maps, its subchannels; open `dev/uioN` and map
//! it) and the VF provider's (serial → `bus/pci/slots/<serial>/address` → functions → driver
//! → bind to `vfio-pci` → VFIO).
//!
//! Each input becomes a small tree in a scratch directory (`hvnet-fuzz-sysfs-<pid>` under
//! `/dev/shm` when there is one, else the temporary directory), rebuilt for every input; a
//! later run removes the directories of runs that are gone. Nothing outside it is touched:
//! `/dev` is the tree's `dev/` (which never holds a `vfio/` directory, so VFIO stops at
//! opening its container), the interrupt fd is a socket pair, and no mapped memory is ever
//! read or written.
//!
//! Input: `[instance][serial][entry…]`, at most 48 entries. `instance` picks the instance the
//! uio backend is asked for (0: any; 1, 2: one of the tree's GUIDs; 3: the second in braces,
//! upper case); `serial` the VF serial asked for (7, 8, 4294967295, 0). An entry is
//! `[template][a][b][kind]` then, by kind: 0 a file with `[len][len bytes]`; 1 a directory;
//! 2 a symbolic link (to the template's target `a`/`b` pick, always inside the tree); 3 a
//! file with the template's preset value `[index]` (for `ring` and `dev/uioN`: an empty file
//! of a preset size). Templates (a and b pick names from small lists of plausible ones):
//! VMBus device `class_id`, `device_id`, `id`, `monitor_id`, `uio/<uioN>`, subchannel
//! `subchannel_id`, `monitor_id`, `ring`; uio `maps/mapK/{name,size,offset,addr}`;
//! `dev/uioN`; PCI slot `address`; function `driver` and `iommu_group` links, its
//! `driver_override`, `vendor`, `device`; driver `unbind`/`bind`; `drivers_probe`; a function
//! directory.
//!
//! Invariants: no panic, only typed errors. What discovery returns is what the tree says:
//! devices of the NetVSC class only, sorted; dense map indices; maps that pass validation obey
//! its rules; subchannels sorted, never index 0 nor the primary's relid; an opened device is
//! the one asked for, or the first NetVSC bound to uio, with the checked maps. The provider
//! writes only what binding the first function of the slot the serial names takes — that
//! function's `driver_override`, its current driver's `unbind`, `drivers_probe`, each with
//! the expected value — and nothing at all when the tree names no function; it never returns
//! a VF (there is no VFIO here).
#![no_main]

use std::collections::BTreeMap;
use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bond::provider::{self, VfProvider, VfRequest, VfioIgbvfProvider};
use libfuzzer_sys::fuzz_target;
use netvsc::vmbus::uio::{self, IrqSource, NetvscMaps, UioConfig, UioDevice, sysfs};
use netvsc::vmbus::{NETVSC_CLASS_ID, VmbusDevice};
use packet::{MacAddr, PAGE_SIZE};
use vf::vfio::{IommuMode, VfioConfig};

const MAX_ENTRIES: usize = 48;
const DEVS: [&str; 5] = [
    "ed963694-e847-4b2a-85af-bc9cfc11d6f3",
    "0a2b4c6d-0000-4000-8000-000000000001",
    "ba6163d9-04a1-4d29-b605-72e2ffb1dc7f",
    "{ED963694-E847-4B2A-85AF-BC9CFC11D6F3}",
    "not-a-guid",
];
const UIOS: [&str; 4] = ["uio0", "uio3", "uio10", "uiox"];
const RELIDS: [&str; 5] = ["14", "15", "16", "0", "x"];
const SERIALS: [u32; 4] = [7, 8, u32::MAX, 0];
const BDFS: [&str; 6] = [
    "1d7c:00:02.0",
    "1d7c:00:02.1",
    "1d7c:00:020.0",
    "0000:00:02.0",
    "1d7c:00:02.x",
    "1d7c:00:02.",
];
const DRIVERS: [&str; 3] = ["vfio-pci", "mlx5_core", "igbvf"];
const MAP_ATTRS: [&str; 4] = ["name", "size", "offset", "addr"];
const RING_SIZES: [u64; 6] = [0, 8192, 16384, 32768, 65536, 12288];
const NODE_SIZES: [u64; 4] = [0x40000, 0, 4096, 0x10_0000];

/// The input as a byte cursor; missing bytes read as 0.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

/// One entry's path (relative to the root), its link target and its preset values.
struct Template {
    path: String,
    link: String,
    presets: &'static [&'static str],
    /// Presets are file sizes, not contents.
    sizes: &'static [u64],
}

fn template(t: u8, a: u8, b: u8) -> Template {
    let dev = format!("bus/vmbus/devices/{}", pick(&DEVS, a));
    let chan = format!("{dev}/channels/{}", pick(&RELIDS, b));
    let bdf = format!("bus/pci/devices/{}", pick(&BDFS, a));
    let driver = format!("bus/pci/drivers/{}", pick(&DRIVERS, b));
    let plain = |path: String, presets: &'static [&'static str]| Template {
        path,
        link: driver.clone(),
        presets,
        sizes: &[],
    };
    match t % 17 {
        0 => plain(
            format!("{dev}/class_id"),
            &[
                "{f8615163-df3e-46c5-913f-f2d2f965ed0e}\n",
                "f8615163-DF3E-46c5-913f-f2d2f965ed0e",
                "{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}\n",
            ],
        ),
        1 => plain(
            format!("{dev}/device_id"),
            &[
                "{ed963694-e847-4b2a-85af-bc9cfc11d6f3}\n",
                "{0a2b4c6d-0000-4000-8000-000000000001}\n",
            ],
        ),
        2 => plain(format!("{dev}/id"), &["14\n", "11\n", "4294967296\n", "-1"]),
        3 => plain(
            format!("{dev}/monitor_id"),
            &["37\n", "1\n", "255\n", "256\n"],
        ),
        4 => plain(format!("{dev}/uio/{}", pick(&UIOS, b)), &[""]),
        5 => plain(
            format!("{chan}/subchannel_id"),
            &["1\n", "2\n", "0\n", "65536\n"],
        ),
        6 => plain(format!("{chan}/monitor_id"), &["38\n", "255\n", "300\n"]),
        7 => Template {
            path: format!("{chan}/ring"),
            link: driver.clone(),
            presets: &[],
            sizes: &RING_SIZES,
        },
        8 => {
            let attr = MAP_ATTRS[usize::from(b / 7) % MAP_ATTRS.len()];
            let presets: &'static [&'static str] = match attr {
                "name" => &[
                    "txrx_rings\n",
                    "int_page\n",
                    "monitor_page\n",
                    "recv:1234\n",
                    "send:5678\n",
                    "recv:x\n",
                ],
                "size" => &[
                    "0x20000\n",
                    "0x1000\n",
                    "0x8000\n",
                    "0x4000\n",
                    "0x0\n",
                    "0xffffffffffffffff\n",
                    "0x3000\n",
                ],
                _ => &["0x0\n", "0xffffffff\n", "zz\n"],
            };
            plain(
                format!("class/uio/{}/maps/map{}/{attr}", pick(&UIOS, a), b % 7),
                presets,
            )
        }
        9 => Template {
            path: format!("dev/{}", pick(&UIOS, a)),
            link: driver.clone(),
            presets: &[],
            sizes: &NODE_SIZES,
        },
        10 => plain(
            format!(
                "bus/pci/slots/{}/address",
                SERIALS[usize::from(a) % SERIALS.len()]
            ),
            &[
                "1d7c:00:02\n",
                "0000:00:02",
                "../../etc",
                "",
                "1d7c:00:02:00",
            ],
        ),
        11 => plain(format!("{bdf}/driver"), &["mlx5_core"]),
        12 => Template {
            path: format!("{bdf}/iommu_group"),
            link: format!("kernel/iommu_groups/{}", pick(&["3", "x"], b)),
            presets: &["3"],
            sizes: &[],
        },
        13 => plain(
            format!(
                "{bdf}/{}",
                pick(&["driver_override", "vendor", "device"], b)
            ),
            &["vfio-pci\n", "0x8086\n", "0x10ca\n"],
        ),
        14 => plain(
            format!(
                "bus/pci/drivers/{}/{}",
                pick(&DRIVERS, a),
                pick(&["unbind", "bind"], b)
            ),
            &[""],
        ),
        15 => plain("bus/pci/drivers_probe".into(), &[""]),
        _ => plain(bdf, &[""]),
    }
}

/// The scratch root for this process: emptied, then returned.
fn fresh_root() -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() {
            base.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let base = fs::canonicalize(&base).unwrap_or(base);
        // libFuzzer exits without running destructors: remove what dead runs left behind.
        for entry in fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("hvnet-fuzz-sysfs-")
                && !Path::new("/proc").join(pid).exists()
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        base.join(format!("hvnet-fuzz-sysfs-{}", std::process::id()))
    });
    let _ = fs::remove_dir_all(root);
    fs::create_dir_all(root.join("sys")).expect("scratch root");
    fs::create_dir_all(root.join("dev")).expect("scratch dev");
    root.clone()
}

/// Builds the tree; entries that cannot be made (a parent is a file, the path exists) are
/// skipped, as a kernel would never show them.
fn build(sys: &Path, dev: &Path, input: &mut Input<'_>) {
    for _ in 0..MAX_ENTRIES {
        if input.0.is_empty() {
            break;
        }
        let (t, a, b, kind) = (input.byte(), input.byte(), input.byte(), input.byte());
        let tpl = template(t, a, b);
        let path = match tpl.path.strip_prefix("dev/") {
            Some(node) => dev.join(node),
            None => sys.join(&tpl.path),
        };
        if let Some(parent) = path.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let _ = match kind % 4 {
            0 => {
                let len = usize::from(input.byte());
                fs::write(&path, input.bytes(len))
            }
            1 => fs::create_dir(&path),
            2 => std::os::unix::fs::symlink(sys.join(&tpl.link), &path),
            _ => {
                let i = usize::from(input.byte());
                if tpl.sizes.is_empty() {
                    fs::write(&path, tpl.presets[i % tpl.presets.len()])
                } else {
                    fs::File::create(&path).and_then(|f| f.set_len(tpl.sizes[i % tpl.sizes.len()]))
                }
            }
        };
    }
}

/// A file, directory or link of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
    Link(PathBuf),
    Other,
}

/// Everything under `dir`, links not followed.
fn snapshot(dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let node = if meta.file_type().is_symlink() {
            Node::Link(fs::read_link(&path).unwrap_or_default())
        } else if meta.is_dir() {
            snapshot(&path, out);
            Node::Dir
        } else if meta.is_file() {
            Node::File(fs::read(&path).unwrap_or_default())
        } else {
            Node::Other
        };
        out.insert(path, node);
    }
}

fn check_uio(sys: &Path, dev: &Path, wanted: Option<&str>) {
    let found = sysfs::devices_of_class(sys, NETVSC_CLASS_ID);
    if let Ok(found) = &found {
        assert!(found.iter().all(|d| d.class_id == NETVSC_CLASS_ID));
        assert!(
            found.windows(2).all(|w| w[0].instance <= w[1].instance),
            "unsorted"
        );
        for d in found {
            if let Some(uio) = &d.uio {
                assert!(uio.starts_with("uio"));
                if let Ok(maps) = sysfs::read_maps(sys, uio) {
                    assert!(!maps.is_empty());
                    assert!(
                        maps.iter().enumerate().all(|(i, m)| m.index == i),
                        "sparse maps"
                    );
                    if let Ok(checked) = NetvscMaps::validate(uio, maps) {
                        let m = &checked.maps;
                        assert_eq!(m[uio::MAP_RINGS].name, "txrx_rings");
                        assert_eq!(m[uio::MAP_INT_PAGE].name, "int_page");
                        assert_eq!(m[uio::MAP_MONITOR_PAGE].name, "monitor_page");
                        let rings = m[uio::MAP_RINGS].size;
                        assert!(rings.is_multiple_of(2 * PAGE_SIZE) && rings / 2 >= 2 * PAGE_SIZE);
                        assert!(m[uio::MAP_INT_PAGE].size >= PAGE_SIZE);
                        assert!(m[uio::MAP_MONITOR_PAGE].size >= PAGE_SIZE);
                        assert!(m[uio::MAP_RECEIVE_BUFFER].size > 0);
                        assert!(m[uio::MAP_SEND_BUFFER].size > 0);
                        assert_eq!(
                            sysfs::gpadl_from_map_name(&m[uio::MAP_RECEIVE_BUFFER].name, "recv"),
                            Some(checked.receive_gpadl)
                        );
                        assert_eq!(
                            sysfs::gpadl_from_map_name(&m[uio::MAP_SEND_BUFFER].name, "send"),
                            Some(checked.send_gpadl)
                        );
                    }
                }
            }
            if let Ok(subs) = sysfs::subchannels(d) {
                assert!(
                    subs.windows(2)
                        .all(|w| w[0].subchannel_id <= w[1].subchannel_id)
                );
                assert!(
                    subs.iter()
                        .all(|s| s.subchannel_id != 0 && s.relid != d.relid)
                );
            }
        }
    }

    let (ours, kernel) = UnixStream::pair().expect("socket pair");
    let config = UioConfig {
        sysfs_root: sys.to_path_buf(),
        dev_root: dev.to_path_buf(),
        instance: wanted.and_then(|w| w.parse().ok()),
        retry_interval: Duration::ZERO,
        irq: IrqSource::Fd(Arc::new(OwnedFd::from(ours))),
        ..UioConfig::default()
    };
    let asked = config.instance.is_some();
    let Ok(mut device) = UioDevice::open(config) else {
        drop(kernel);
        return;
    };
    let found = found.expect("a device opened from a tree that lists none");
    let expected = if asked {
        let w = wanted
            .unwrap()
            .trim_start_matches('{')
            .trim_end_matches('}')
            .to_ascii_lowercase();
        found.iter().find(|d| d.instance == w)
    } else {
        found.iter().find(|d| d.uio.is_some())
    };
    let info = device.info().clone();
    assert_eq!(
        Some(&info),
        expected,
        "opened another device than the tree names"
    );
    assert_eq!(info.class_id, NETVSC_CLASS_ID);
    assert!(info.uio.is_some());
    assert!(device.maps().maps.len() >= 5);
    // Mapped memory is never touched: a map larger than the node file would fault.
    let _ = device.primary();
    if let Ok((_, gpadl)) = device.receive_buffer() {
        assert_eq!(gpadl, device.maps().receive_gpadl);
    }
    if let Ok((_, gpadl)) = device.send_buffer() {
        assert_eq!(gpadl, device.maps().send_gpadl);
    }
    let _ = device.doorbell(0);
    let _ = device.dma_memory(PAGE_SIZE);
    for count in [1u16, 3] {
        if let Ok(rings) = device.open_subchannels(count, Duration::ZERO) {
            assert_eq!(rings.len(), usize::from(count));
            assert!(rings.iter().zip(1..).all(|(r, i)| r.index == i));
            let _ = device.doorbell(count);
            break;
        }
    }
    let _ = device.reopen(Duration::ZERO);
    let _ = device.primary();
}

/// Where a write to `path` lands: links followed, in its directories and at its end (every
/// link of the tree points inside it).
fn landing(path: &Path) -> Option<PathBuf> {
    let mut path = path.to_path_buf();
    for _ in 0..8 {
        match fs::read_link(&path) {
            Ok(target) => path = path.parent()?.join(target),
            Err(_) => break,
        }
    }
    Some(
        fs::canonicalize(path.parent()?)
            .ok()?
            .join(path.file_name()?),
    )
}

fn check_provider(root: &Path, sys: &Path, serial: u32) {
    // What the tree says, read before the provider runs.
    let bdf = provider::slot_address(sys, serial)
        .ok()
        .flatten()
        .and_then(|address| provider::functions_in_slot(sys, &address).ok())
        .and_then(|f| f.into_iter().next());
    let before = {
        let mut m = BTreeMap::new();
        snapshot(root, &mut m);
        m
    };
    let driver_is_link = bdf.as_ref().is_some_and(|bdf| {
        fs::read_link(sys.join("bus/pci/devices").join(bdf).join("driver")).is_ok()
    });
    let vfio = VfioConfig {
        mode: IommuMode::NoIommu,
        sysfs_root: sys.to_path_buf(),
        dev_root: root.join("dev"),
        pagemap: root.join("pagemap"),
    };
    let provider = VfioIgbvfProvider {
        vfio,
        igbvf: Default::default(),
    };
    let request = VfRequest {
        mac: MacAddr([0x00, 0x15, 0x5d, 1, 2, 3]),
        mtu: 1500,
        queues: 1,
    };
    let result = provider.probe(serial, &request);
    assert!(!matches!(result, Ok(Some(_))), "a VF opened without VFIO");

    let mut after = BTreeMap::new();
    snapshot(root, &mut after);
    let mut allowed: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(bdf) = &bdf {
        let device = sys.join("bus/pci/devices").join(bdf);
        allowed.extend(landing(&device.join("driver_override")).map(|p| (p, "vfio-pci")));
        allowed.extend(landing(&sys.join("bus/pci/drivers_probe")).map(|p| (p, bdf.as_str())));
        if driver_is_link {
            allowed.extend(landing(&device.join("driver/unbind")).map(|p| (p, bdf.as_str())));
        }
    }
    for (path, node) in &after {
        if before.get(path) == Some(node) {
            continue;
        }
        let ok = allowed
            .iter()
            .any(|(p, value)| p == path && *node == Node::File(value.as_bytes().to_vec()));
        assert!(
            ok,
            "the provider changed {} to {node:?} (serial {serial}, function {bdf:?})",
            path.display()
        );
    }
    assert!(
        before.keys().all(|p| after.contains_key(p)),
        "the provider removed a file"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let instance = input.byte();
    let serial = SERIALS[usize::from(input.byte()) % SERIALS.len()];
    let root = fresh_root();
    let sys = root.join("sys");
    let dev = root.join("dev");
    build(&sys, &dev, &mut input);
    let wanted = match instance % 4 {
        0 => None,
        1 => Some(DEVS[0]),
        2 => Some(DEVS[1]),
        _ => Some("{0A2B4C6D-0000-4000-8000-000000000001}"),
    };
    check_uio(&sys, &dev, wanted);
    check_provider(&root, &sys, serial);
});
