//! What sysfs says now: every NetVSC, the PCI functions that are (or may be) their VFs, and
//! the system settings binding depends on. Read-only; [`super::plan`] decides from it.
//!
//! Paths, under the sysfs root:
//! - NetVSCs: `bus/vmbus/devices/<instance>/class_id` = `{f8615163-…}`, its `driver` link and
//!   `net/<ifname>/address` while the kernel's netvsc has it;
//! - PCI functions: `bus/pci/devices/<bdf>/{vendor,device,class,driver_override}`, the
//!   `driver` link, `net/<ifname>/address`; their slot is the `bus/pci/slots/<serial>` whose
//!   `address` is the function's `domain:bus:device` (pci-hyperv names slots by serial);
//! - the IOMMU: entries under `class/iommu`; no-IOMMU mode:
//!   `module/vfio/parameters/enable_unsafe_noiommu_mode`; 2 MiB hugepages:
//!   `kernel/mm/hugepages/hugepages-2048kB/nr_hugepages`; drivers:
//!   `bus/vmbus/drivers/uio_hv_generic`, `bus/pci/drivers/vfio-pci`;
//! - the devices stacked on an interface (a bridge, a bond, a VLAN, netvsc over its VF):
//!   `class/net/<ifname>/upper_<name>` links.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use bond::provider::{self, NetInterface, PciId};
use netvsc::vmbus::uio::Guid;
use packet::MacAddr;

use super::state::BindState;

/// The driver hvnet binds a NetVSC to.
pub const UIO_DRIVER: &str = "uio_hv_generic";
/// The driver hvnet binds a VF to.
pub const VFIO_DRIVER: &str = "vfio-pci";
/// The vfio module parameter that allows no-IOMMU groups.
pub const NOIOMMU_PARAM: &str = "module/vfio/parameters/enable_unsafe_noiommu_mode";
/// The 2 MiB hugepage pool size.
pub const HUGEPAGES_2M: &str = "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";

/// A NetVSC as sysfs shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netvsc {
    /// Its instance GUID (lowercase, no braces).
    pub instance: String,
    /// The driver it is bound to, if any.
    pub driver: Option<String>,
    /// Its kernel interface, while `hv_netvsc` has it.
    pub interface: Option<NetInterface>,
    /// The interface hvnet recorded for it when it bound it (its `net/` is gone since).
    pub recorded_interface: Option<String>,
    /// Its MAC: the interface's, or the one recorded when hvnet bound it.
    pub mac: Option<MacAddr>,
}

/// How a VF was associated with its NetVSC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FoundBy {
    /// Its network interface has the NetVSC's MAC (how Linux matches a VF without a slot).
    Mac,
    /// `hvnet bind` recorded it (its interface is gone since it left its kernel driver).
    State,
}

/// A PCI function as sysfs shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// Its address, `dddd:bb:dd.f`.
    pub bdf: String,
    /// Vendor and device IDs, if readable.
    pub id: Option<PciId>,
    /// The driver it is bound to, if any.
    pub driver: Option<String>,
    /// Its `driver_override`, if set.
    pub driver_override: Option<String>,
    /// The serial of the pci-hyperv slot it sits in, if any.
    pub serial: Option<u32>,
    /// Its kernel network interface, if it has one.
    pub interface: Option<NetInterface>,
}

/// A VF of a NetVSC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vf {
    /// The function.
    pub function: PciFunction,
    /// How it was associated.
    pub found_by: FoundBy,
}

/// The settings binding depends on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    /// Whether the guest has an IOMMU (`class/iommu` has entries); Hyper-V and Azure guests
    /// have none, so VFIO runs in no-IOMMU mode.
    pub iommu: bool,
    /// `enable_unsafe_noiommu_mode`; `None` when vfio is not loaded or the kernel lacks
    /// `CONFIG_VFIO_NOIOMMU`.
    pub noiommu: Option<bool>,
    /// 2 MiB hugepages reserved; `None` without a 2 MiB pool.
    pub hugepages: Option<u64>,
    /// Whether `uio_hv_generic` is loaded.
    pub uio_loaded: bool,
    /// Whether `vfio-pci` is loaded.
    pub vfio_loaded: bool,
}

/// Everything [`super::plan`] decides from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Survey {
    /// The sysfs root read.
    pub root: PathBuf,
    /// Every NetVSC, sorted by instance, each with its VFs.
    pub netvscs: Vec<(Netvsc, Vec<Vf>)>,
    /// Network functions in pci-hyperv slots that belong to no NetVSC found.
    pub others: Vec<PciFunction>,
    /// The settings.
    pub system: System,
    /// For every interface above (NetVSCs' and VFs'), the interfaces stacked on it, at any
    /// depth: traffic of those goes through it.
    pub uppers: BTreeMap<String, BTreeSet<String>>,
}

/// How deep [`upper_interfaces`] follows `upper_*` links.
const MAX_STACK: usize = 8;

/// The interfaces stacked on `interface` (its `upper_*` links under `class/net`, and theirs),
/// at most [`MAX_STACK`] levels up.
pub fn upper_interfaces(root: &Path, interface: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut level = vec![interface.to_owned()];
    for _ in 0..MAX_STACK {
        let mut next = Vec::new();
        for name in &level {
            let Ok(entries) = std::fs::read_dir(root.join("class/net").join(name)) else {
                continue;
            };
            for upper in entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter_map(|n| n.strip_prefix("upper_").map(str::to_owned))
            {
                if upper != interface && found.insert(upper.clone()) {
                    next.push(upper);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        level = next;
    }
    found
}

fn link_name(path: &Path) -> Option<String> {
    std::fs::read_link(path)
        .ok()?
        .file_name()?
        .to_str()
        .map(str::to_owned)
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_owned())
}

/// Reads `bool` module parameters as the kernel prints them (`Y`/`N`, or `1`/`0`).
pub fn parse_bool_param(text: &str) -> Option<bool> {
    match text.trim() {
        "Y" | "y" | "1" => Some(true),
        "N" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// Reads one PCI function.
pub fn read_function(root: &Path, bdf: &str) -> PciFunction {
    let dir = root.join("bus/pci/devices").join(bdf);
    let driver_override =
        read_trimmed(&dir.join("driver_override")).filter(|o| !o.is_empty() && o != "(null)");
    PciFunction {
        bdf: bdf.to_owned(),
        id: provider::pci_id(root, bdf).ok().flatten(),
        driver: provider::bound_driver(root, bdf),
        driver_override,
        serial: provider::slot_of(root, bdf),
        interface: provider::net_interfaces(&dir).into_iter().next(),
    }
}

/// Reads the NetVSCs under `root` (sorted by instance), with what `state` recorded of those
/// hvnet bound.
fn read_netvscs(root: &Path, state: Option<&BindState>) -> anyhow::Result<Vec<Netvsc>> {
    let dir = root.join("bus/vmbus/devices");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("listing {}: {e}", dir.display())),
    };
    let mut found = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Ok(instance) = entry.file_name().to_string_lossy().parse::<Guid>() else {
            continue;
        };
        let path = entry.path();
        let is_netvsc = read_trimmed(&path.join("class_id"))
            .and_then(|c| c.parse::<Guid>().ok())
            .is_some_and(|c| c.as_str() == netvsc::vmbus::NETVSC_CLASS_ID);
        if !is_netvsc {
            continue;
        }
        let instance = instance.as_str().to_owned();
        let interface = provider::net_interfaces(&path).into_iter().next();
        let record = state.and_then(|s| s.netvscs.iter().find(|n| n.instance == instance));
        let mac = interface
            .as_ref()
            .and_then(|i| i.mac)
            .or_else(|| record.and_then(|r| r.mac.as_deref()?.parse().ok()));
        found.push(Netvsc {
            driver: link_name(&path.join("driver")),
            recorded_interface: record.and_then(|r| r.interface.clone()),
            interface,
            mac,
            instance,
        });
    }
    found.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(found)
}

/// The network functions (PCI class 02) in pci-hyperv slots.
fn slotted_network_functions(root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join("bus/pci/slots")) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.parse::<u32>().ok())
        .filter_map(|serial| provider::slot_address(root, serial).ok().flatten())
        .filter_map(|address| provider::functions_in_slot(root, &address).ok())
        .flatten()
        .filter(|bdf| {
            let class = read_trimmed(&root.join("bus/pci/devices").join(bdf).join("class"));
            // Unknown class: listed (better shown than hidden); a known one must be network.
            class.is_none_or(|c| c.trim_start_matches("0x").starts_with("02"))
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

/// Reads everything under `root`; `state` is what an earlier `hvnet bind` recorded.
pub fn survey(root: &Path, state: Option<&BindState>) -> anyhow::Result<Survey> {
    let mut netvscs = Vec::new();
    let mut taken: Vec<String> = Vec::new();
    for netvsc in read_netvscs(root, state)? {
        let mut vfs: Vec<Vf> = Vec::new();
        if let Some(mac) = netvsc.mac {
            for bdf in provider::functions_with_mac(root, mac).unwrap_or_default() {
                vfs.push(Vf {
                    function: read_function(root, &bdf),
                    found_by: FoundBy::Mac,
                });
            }
        }
        let recorded = state
            .map(|s| s.vfs.iter().filter(|v| v.netvsc == netvsc.instance))
            .into_iter()
            .flatten();
        for record in recorded {
            let present = root.join("bus/pci/devices").join(&record.bdf).exists();
            if present && !vfs.iter().any(|v| v.function.bdf == record.bdf) {
                vfs.push(Vf {
                    function: read_function(root, &record.bdf),
                    found_by: FoundBy::State,
                });
            }
        }
        vfs.sort_by(|a, b| a.function.bdf.cmp(&b.function.bdf));
        taken.extend(vfs.iter().map(|v| v.function.bdf.clone()));
        netvscs.push((netvsc, vfs));
    }
    let others = slotted_network_functions(root)
        .into_iter()
        .filter(|bdf| !taken.contains(bdf))
        .map(|bdf| read_function(root, &bdf))
        .collect();
    let iommu = std::fs::read_dir(root.join("class/iommu"))
        .map(|mut entries| entries.next().is_some())
        .unwrap_or(false);
    let system = System {
        iommu,
        noiommu: read_trimmed(&root.join(NOIOMMU_PARAM)).and_then(|t| parse_bool_param(&t)),
        hugepages: read_trimmed(&root.join(HUGEPAGES_2M)).and_then(|t| t.parse().ok()),
        uio_loaded: root.join("bus/vmbus/drivers").join(UIO_DRIVER).is_dir(),
        vfio_loaded: root.join("bus/pci/drivers").join(VFIO_DRIVER).is_dir(),
    };
    let uppers = netvscs
        .iter()
        .flat_map(|(n, vfs)| {
            n.interface
                .iter()
                .chain(vfs.iter().filter_map(|v| v.function.interface.as_ref()))
        })
        .map(|i| (i.name.clone(), upper_interfaces(root, &i.name)))
        .collect();
    Ok(Survey {
        root: root.to_path_buf(),
        netvscs,
        others,
        system,
        uppers,
    })
}

/// The driver of VMBus device `instance`, read again (for checks between writes).
pub fn vmbus_driver(root: &Path, instance: &str) -> Option<String> {
    link_name(&root.join("bus/vmbus/devices").join(instance).join("driver"))
}
