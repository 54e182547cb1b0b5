//! `hvnet status`: every NetVSC and VF, its driver, serial (slot), MAC, and what `hvnet bind`
//! would do with it, as text for people or JSON for programs.

use serde::Serialize;

use super::plan::{Decisions, VfAction};
use super::survey::{FoundBy, PciFunction, Survey};

/// One VF (or other network function in a pci-hyperv slot).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VfStatus {
    /// Its PCI address.
    pub pci_address: String,
    /// `vendor:device`, if readable.
    pub id: Option<String>,
    /// The hvnet driver for it, if there is one.
    pub hvnet_driver: Option<&'static str>,
    /// The kernel driver it is bound to.
    pub driver: Option<String>,
    /// The serial of its pci-hyperv slot (the host's association serial).
    pub serial: Option<u32>,
    /// Its kernel interface.
    pub interface: Option<String>,
    /// Its MAC.
    pub mac: Option<String>,
    /// How it was associated with its NetVSC.
    pub found_by: Option<FoundBy>,
    /// What `hvnet bind` would do.
    pub action: String,
    /// For a VF hvnet has no driver for, read from its interface's driver (`xdp_features`):
    /// how `hvnet run` would reach it over AF_XDP. `None` off the live system or without an
    /// interface.
    pub afxdp: Option<String>,
}

/// One NetVSC.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetvscStatus {
    /// Its instance GUID.
    pub instance: String,
    /// The driver it is bound to.
    pub driver: Option<String>,
    /// Its kernel interface (or, once hvnet has it, the one it had).
    pub interface: Option<String>,
    /// Its MAC.
    pub mac: Option<String>,
    /// What `hvnet bind` would do.
    pub action: String,
    /// Its VFs.
    pub vfs: Vec<VfStatus>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The sysfs root read.
    pub sysfs_root: String,
    /// Whether the guest has an IOMMU.
    pub iommu: bool,
    /// VFIO's no-IOMMU mode (`None`: unavailable).
    pub noiommu_mode: Option<bool>,
    /// 2 MiB hugepages reserved (`None`: no pool).
    pub hugepages_2m: Option<u64>,
    /// Whether `uio_hv_generic` is loaded.
    pub uio_hv_generic_loaded: bool,
    /// Whether `vfio-pci` is loaded.
    pub vfio_pci_loaded: bool,
    /// The bind state file, when there is one.
    pub state_file: Option<String>,
    /// Every NetVSC.
    pub netvscs: Vec<NetvscStatus>,
    /// Network functions in pci-hyperv slots that belong to no NetVSC found.
    pub other_vfs: Vec<VfStatus>,
}

/// How `hvnet run --vf-backend auto` would run AF_XDP on `interface`, from what its driver's
/// XDP can do.
fn afxdp_plan(interface: &str) -> Option<String> {
    let index = packet::netdev::interface_index(interface).ok()?;
    Some(match vf::kernel::xdp::xdp_features(index) {
        Ok(Some(f)) if f.can_redirect() => format!(
            "native XDP (its driver redirects to sockets), {}",
            if f.zero_copy() {
                "zero-copy"
            } else {
                "copy mode"
            }
        ),
        Ok(Some(_)) => "generic XDP (its driver's native XDP cannot redirect), copy mode".into(),
        Ok(None) | Err(_) => {
            "generic XDP (the kernel does not say what its driver's XDP can do), copy mode".into()
        }
    })
}

fn vf_status(
    function: &PciFunction,
    found_by: Option<FoundBy>,
    action: &VfAction,
    live: bool,
) -> VfStatus {
    let hvnet_driver = function.id.and_then(|id| id.hvnet_driver());
    let afxdp = match (&function.interface, hvnet_driver, live) {
        (Some(interface), None, true) => afxdp_plan(&interface.name),
        _ => None,
    };
    VfStatus {
        pci_address: function.bdf.clone(),
        id: function.id.map(|id| id.to_string()),
        hvnet_driver,
        driver: function.driver.clone(),
        serial: function.serial,
        interface: function.interface.as_ref().map(|i| i.name.clone()),
        mac: function
            .interface
            .as_ref()
            .and_then(|i| i.mac)
            .map(|m| m.to_string()),
        found_by,
        action: action.describe(function),
        afxdp,
    }
}

/// The report of `survey` with the `decisions` of a default `hvnet bind`.
pub fn status(survey: &Survey, decisions: &Decisions, state_file: Option<String>) -> Status {
    let system = &survey.system;
    // Interfaces are only asked about on the machine's own tree.
    let live = survey.root == std::path::Path::new("/sys");
    Status {
        sysfs_root: survey.root.display().to_string(),
        iommu: system.iommu,
        noiommu_mode: system.noiommu,
        hugepages_2m: system.hugepages,
        uio_hv_generic_loaded: system.uio_loaded,
        vfio_pci_loaded: system.vfio_loaded,
        state_file,
        netvscs: decisions
            .netvscs
            .iter()
            .map(|plan| NetvscStatus {
                instance: plan.netvsc.instance.clone(),
                driver: plan.netvsc.driver.clone(),
                interface: plan
                    .netvsc
                    .interface
                    .as_ref()
                    .map(|i| i.name.clone())
                    .or_else(|| plan.netvsc.recorded_interface.clone()),
                mac: plan.netvsc.mac.map(|m| m.to_string()),
                action: plan.action.describe(&plan.netvsc),
                vfs: plan
                    .vfs
                    .iter()
                    .map(|v| vf_status(&v.vf.function, Some(v.vf.found_by), &v.action, live))
                    .collect(),
            })
            .collect(),
        other_vfs: decisions
            .others
            .iter()
            .map(|(f, action)| vf_status(f, None, action, live))
            .collect(),
    }
}

fn opt(value: &Option<String>) -> &str {
    value.as_deref().unwrap_or("-")
}

fn vf_lines(vf: &VfStatus, indent: &str) -> Vec<String> {
    let id = match (&vf.id, vf.hvnet_driver) {
        (Some(id), Some(driver)) => format!("{id} ({driver})"),
        (Some(id), None) => id.clone(),
        (None, _) => "?:?".into(),
    };
    let mut lines = vec![
        format!(
            "{indent}VF {}  {id}  driver {}  slot {}  interface {}  MAC {}",
            vf.pci_address,
            opt(&vf.driver),
            vf.serial.map_or("-".into(), |s| s.to_string()),
            opt(&vf.interface),
            opt(&vf.mac),
        ),
        format!("{indent}  hvnet would: {}", vf.action),
    ];
    if let Some(afxdp) = &vf.afxdp {
        lines.push(format!("{indent}  hvnet run would use AF_XDP: {afxdp}"));
    }
    lines
}

/// The report as lines of text.
pub fn render(status: &Status) -> Vec<String> {
    let mut lines = Vec::new();
    let yes_no = |b: bool| if b { "loaded" } else { "not loaded" };
    lines.push(format!(
        "sysfs {}: {}; 2 MiB hugepages {}; uio_hv_generic {}; vfio-pci {}",
        status.sysfs_root,
        match (status.iommu, status.noiommu_mode) {
            (true, _) => "IOMMU present".to_owned(),
            (false, Some(true)) => "no IOMMU, VFIO no-IOMMU mode on".to_owned(),
            (false, Some(false)) => "no IOMMU, VFIO no-IOMMU mode off".to_owned(),
            (false, None) => "no IOMMU, VFIO no-IOMMU mode unavailable".to_owned(),
        },
        status
            .hugepages_2m
            .map_or("unavailable".to_owned(), |n| format!("{n} reserved")),
        yes_no(status.uio_hv_generic_loaded),
        yes_no(status.vfio_pci_loaded),
    ));
    if let Some(file) = &status.state_file {
        lines.push(format!(
            "bound by hvnet, recorded in {file} (`hvnet unbind` restores)"
        ));
    }
    if status.netvscs.is_empty() {
        lines.push("no NetVSC found".into());
    }
    for n in &status.netvscs {
        lines.push(format!(
            "NetVSC {}  driver {}  interface {}  MAC {}",
            n.instance,
            opt(&n.driver),
            opt(&n.interface),
            opt(&n.mac)
        ));
        lines.push(format!("  hvnet would: {}", n.action));
        if n.vfs.is_empty() {
            lines.push("  no VF (no PCI function has its MAC)".into());
        }
        for vf in &n.vfs {
            lines.extend(vf_lines(vf, "  "));
        }
    }
    if !status.other_vfs.is_empty() {
        lines.push("network functions of no NetVSC:".into());
        for vf in &status.other_vfs {
            lines.extend(vf_lines(vf, "  "));
        }
    }
    lines
}
