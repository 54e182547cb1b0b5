//! What `hvnet bind` would do, decided from a [`Survey`] and the host's [`Facts`] without
//! touching anything: an action per NetVSC and per VF ([`decide`], also what `status` shows),
//! then the sysfs writes in order and what to record ([`bind_plan`]).
//!
//! The order of the writes:
//! 1. the 2 MiB hugepage pool, grown to `--hugepages` if it holds fewer;
//! 2. VFIO's no-IOMMU mode, turned on when a VF is to be bound and there is no IOMMU (before
//!    `vfio-pci` takes the VF: the group is made when it binds);
//! 3. the NetVSC class GUID to `uio_hv_generic/new_id` (once; a kernel that has it answers
//!    `EEXIST`, which counts as done);
//! 4. per NetVSC: unbind from its driver, bind to `uio_hv_generic`;
//! 5. per VF hvnet has a driver for: `driver_override` = `vfio-pci`, unbind from its driver,
//!    `drivers_probe`.
//!
//! Every value is written followed by a newline, exactly as the printed `echo VALUE > PATH`
//! line would write it.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;

use bond::provider::PciId;

use super::hostnet::Facts;
use super::state::{BindState, HugepagesRecord, NetvscRecord, VfRecord};
use super::survey::{
    HUGEPAGES_2M, NOIOMMU_PARAM, Netvsc, PciFunction, Survey, UIO_DRIVER, VFIO_DRIVER, Vf,
};

/// What `hvnet run` does with a VF hvnet has no driver for: it uses it through its kernel
/// driver (`--vf-backend auto`: AF_XDP, or a packet socket where AF_XDP cannot be set up).
pub const KERNEL_VF_PATH: &str = "hvnet run uses it through the kernel (AF_XDP)";

/// What `hvnet bind` takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// The NetVSCs to bind (instance GUIDs); empty: every one that is safe to take.
    pub instances: Vec<String>,
    /// Take NetVSCs that carry the default route or the SSH session too.
    pub force: bool,
    /// 2 MiB hugepages to have reserved.
    pub hugepages: u64,
    /// Leave every VF on its kernel driver.
    pub no_vf: bool,
}

/// What happens to a NetVSC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetvscAction {
    /// Moved to `uio_hv_generic`.
    Bind,
    /// Already on `uio_hv_generic`.
    AlreadyBound,
    /// Left alone: its interface carries the default route or the SSH session (or that
    /// cannot be told). The reasons.
    Refuse(Vec<String>),
    /// Left alone: `--instance` names others.
    NotSelected,
}

impl NetvscAction {
    /// Whether the NetVSC is (or will be) hvnet's.
    pub fn takes(&self) -> bool {
        matches!(self, Self::Bind | Self::AlreadyBound)
    }

    /// What `status` prints.
    pub fn describe(&self, netvsc: &Netvsc) -> String {
        match self {
            Self::Bind => format!("bind to {UIO_DRIVER}"),
            Self::AlreadyBound => format!("already on {UIO_DRIVER}"),
            Self::Refuse(reasons) => format!("refuse: {} (use --force)", reasons.join("; ")),
            Self::NotSelected => format!(
                "leave on {}: not selected (--instance)",
                netvsc.driver.as_deref().unwrap_or("no driver")
            ),
        }
    }
}

/// What happens to a VF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VfAction {
    /// Moved to `vfio-pci`, for this hvnet driver.
    BindVfio(&'static str),
    /// Already on `vfio-pci`; this hvnet driver drives it.
    AlreadyVfio(&'static str),
    /// Left on its kernel driver: hvnet has no driver for this vendor:device.
    Unsupported(PciId),
    /// Left alone: its vendor:device cannot be read.
    UnknownId,
    /// Left alone, for this reason (its NetVSC is not taken, `--no-vf`, no NetVSC).
    Held(String),
}

impl VfAction {
    /// What `status` prints.
    pub fn describe(&self, function: &PciFunction) -> String {
        let on = match &function.driver {
            Some(driver) => format!("on {driver}"),
            None => "unbound".to_owned(),
        };
        match self {
            Self::BindVfio(driver) => format!("bind to {VFIO_DRIVER} ({driver})"),
            Self::AlreadyVfio(driver) => format!("already on {VFIO_DRIVER} ({driver})"),
            Self::Unsupported(_) => {
                format!("leave {on}: no hvnet driver; {KERNEL_VF_PATH}")
            }
            Self::UnknownId => format!("leave {on}: its vendor:device cannot be read"),
            Self::Held(why) => format!("leave {on}: {why}"),
        }
    }
}

/// A VF and what happens to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfPlan {
    /// The VF.
    pub vf: Vf,
    /// What happens to it.
    pub action: VfAction,
}

/// A NetVSC, its VFs and what happens to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetvscPlan {
    /// The NetVSC.
    pub netvsc: Netvsc,
    /// What happens to it.
    pub action: NetvscAction,
    /// Its VFs.
    pub vfs: Vec<VfPlan>,
}

/// The decisions for every device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decisions {
    /// Per NetVSC.
    pub netvscs: Vec<NetvscPlan>,
    /// Network functions in pci-hyperv slots of no NetVSC found.
    pub others: Vec<(PciFunction, VfAction)>,
}

/// Why the interfaces in `carriers` may not be taken (empty: they may).
fn refusal_reasons(carriers: &BTreeSet<String>, facts: &Facts) -> Vec<String> {
    let mut reasons = Vec::new();
    if carriers.is_empty() {
        return reasons;
    }
    let names = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
    match &facts.default_route {
        Ok(interfaces) => {
            let hit: BTreeSet<String> = carriers.intersection(interfaces).cloned().collect();
            if !hit.is_empty() {
                reasons.push(format!("carries the default route (on {})", names(&hit)));
            }
        }
        Err(e) => reasons.push(format!(
            "cannot tell whether it carries the default route: {e}"
        )),
    }
    match &facts.ssh {
        Ok(sessions) => {
            for (session, interfaces) in sessions {
                let hit: BTreeSet<String> = carriers.intersection(interfaces).cloned().collect();
                if !hit.is_empty() {
                    reasons.push(format!(
                        "carries the current SSH session from {} (to {} on {})",
                        session.client,
                        session.server,
                        names(&hit)
                    ));
                }
            }
        }
        Err(e) => reasons.push(format!(
            "cannot tell whether it carries the SSH session: {e}"
        )),
    }
    reasons
}

/// What happens to a VF of a NetVSC whose action is `netvsc` (or of none).
fn vf_action(function: &PciFunction, netvsc: Option<&NetvscAction>, no_vf: bool) -> VfAction {
    let Some(id) = function.id else {
        return VfAction::UnknownId;
    };
    let Some(driver) = id.hvnet_driver() else {
        return VfAction::Unsupported(id);
    };
    if function.driver.as_deref() == Some(VFIO_DRIVER) {
        return VfAction::AlreadyVfio(driver);
    }
    match netvsc {
        None => VfAction::Held("it belongs to no NetVSC (no NetVSC has its MAC)".into()),
        Some(NetvscAction::Refuse(_)) => VfAction::Held("its NetVSC is refused".into()),
        Some(NetvscAction::NotSelected) => VfAction::Held("its NetVSC is not selected".into()),
        Some(_) if no_vf => VfAction::Held("--no-vf".into()),
        Some(_) => VfAction::BindVfio(driver),
    }
}

/// Decides, for every device of `survey`, what `hvnet bind` with `options` does.
pub fn decide(survey: &Survey, facts: &Facts, options: &BindOptions) -> Decisions {
    let netvscs = survey
        .netvscs
        .iter()
        .map(|(netvsc, vfs)| {
            let selected =
                options.instances.is_empty() || options.instances.contains(&netvsc.instance);
            // The interfaces this NetVSC takes from the kernel: its own, its VFs' (while
            // bound to their kernel driver) and everything stacked on them.
            let mut carriers: BTreeSet<String> = netvsc
                .interface
                .iter()
                .chain(vfs.iter().filter_map(|v| v.function.interface.as_ref()))
                .map(|i| i.name.clone())
                .collect();
            let stacked: Vec<String> = carriers
                .iter()
                .flat_map(|c| survey.uppers.get(c).into_iter().flatten().cloned())
                .collect();
            carriers.extend(stacked);
            let action = if netvsc.driver.as_deref() == Some(UIO_DRIVER) {
                NetvscAction::AlreadyBound
            } else if !selected {
                NetvscAction::NotSelected
            } else {
                let reasons = if options.force {
                    Vec::new()
                } else {
                    refusal_reasons(&carriers, facts)
                };
                if reasons.is_empty() {
                    NetvscAction::Bind
                } else {
                    NetvscAction::Refuse(reasons)
                }
            };
            let vfs = vfs
                .iter()
                .map(|vf| VfPlan {
                    action: vf_action(&vf.function, Some(&action), options.no_vf),
                    vf: vf.clone(),
                })
                .collect();
            NetvscPlan {
                netvsc: netvsc.clone(),
                action,
                vfs,
            }
        })
        .collect();
    let others = survey
        .others
        .iter()
        .map(|f| (f.clone(), vf_action(f, None, options.no_vf)))
        .collect();
    Decisions { netvscs, others }
}

/// How a write is checked while it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteKind {
    /// Any error is an error.
    Plain,
    /// `new_id`: `EEXIST` means the ID is there already (done, not added by hvnet).
    NewId,
    /// Binding this NetVSC: skipped if it is on `uio_hv_generic` already (`new_id` probes
    /// devices that have no driver).
    BindNetvsc(String),
    /// `remove_id`: `ENODEV` means the ID is gone already (done).
    RemoveId,
}

/// One sysfs write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The file.
    pub path: PathBuf,
    /// The value, written followed by a newline (as `echo` writes it).
    pub value: String,
    /// How it is checked.
    pub kind: WriteKind,
}

impl Write {
    fn plain(path: PathBuf, value: impl Into<String>) -> Self {
        Self {
            path,
            value: value.into(),
            kind: WriteKind::Plain,
        }
    }

    /// The bytes written.
    pub fn bytes(&self) -> Vec<u8> {
        format!("{}\n", self.value).into_bytes()
    }
}

/// A word for a shell command line: as is when it is plain, single-quoted otherwise.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:+,=@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

impl fmt::Display for Write {
    /// `echo VALUE > PATH`, which writes exactly [`Write::bytes`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = shell_word(&self.path.to_string_lossy());
        if self.value.is_empty() {
            write!(f, "echo > {path}")
        } else {
            write!(f, "echo {} > {path}", shell_word(&self.value))
        }
    }
}

/// What `hvnet bind` does: the decisions, the writes in order and what to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindPlan {
    /// The decisions.
    pub decisions: Decisions,
    /// The writes, in order.
    pub writes: Vec<Write>,
    /// What to record (merged into an existing state).
    pub record: BindState,
    /// Remarks for the operator (printed as `#` lines).
    pub notes: Vec<String>,
}

/// The writes and records of `decisions`, or every reason not to write anything: a NetVSC
/// named with `--instance` that is refused, every NetVSC refused, a driver or kernel feature
/// that is missing.
pub fn bind_plan(
    survey: &Survey,
    decisions: Decisions,
    options: &BindOptions,
) -> Result<BindPlan, Vec<String>> {
    let root = &survey.root;
    let system = &survey.system;
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let label = |n: &Netvsc| match &n.interface {
        Some(i) => format!("NetVSC {} ({})", n.instance, i.name),
        None => format!("NetVSC {}", n.instance),
    };
    for plan in &decisions.netvscs {
        if let NetvscAction::Refuse(reasons) = &plan.action {
            let who = label(&plan.netvsc);
            let why = reasons.join("; ");
            if options.instances.is_empty() {
                notes.push(format!(
                    "{who} is skipped: {why}; to take it anyway: --instance {} --force",
                    plan.netvsc.instance
                ));
            } else {
                errors.push(format!(
                    "{who} is refused: {why}; add --force to bind it anyway"
                ));
            }
        }
    }
    let taken = decisions
        .netvscs
        .iter()
        .filter(|p| p.action.takes())
        .count();
    if decisions.netvscs.is_empty() {
        errors.push(format!(
            "no NetVSC under {} (class {{{}}})",
            root.join("bus/vmbus/devices").display(),
            netvsc::vmbus::NETVSC_CLASS_ID
        ));
    } else if taken == 0 && errors.is_empty() {
        errors.push(
            "every NetVSC is refused: name the one to take with --instance GUID and --force".into(),
        );
    }
    let binding = |p: &&NetvscPlan| p.action == NetvscAction::Bind;
    let to_bind: Vec<&NetvscPlan> = decisions.netvscs.iter().filter(binding).collect();
    let vfs_to_bind: Vec<(&NetvscPlan, &VfPlan)> = decisions
        .netvscs
        .iter()
        .flat_map(|p| p.vfs.iter().map(move |v| (p, v)))
        .filter(|(_, v)| matches!(v.action, VfAction::BindVfio(_)))
        .collect();
    if !to_bind.is_empty() && !system.uio_loaded {
        errors.push(format!(
            "{UIO_DRIVER} is not loaded ({} is missing): run `modprobe {UIO_DRIVER}`",
            root.join("bus/vmbus/drivers").join(UIO_DRIVER).display()
        ));
    }
    let no_iommu = !system.iommu;
    if !vfs_to_bind.is_empty() {
        if !system.vfio_loaded {
            errors.push(format!(
                "{VFIO_DRIVER} is not loaded ({} is missing): run `modprobe {VFIO_DRIVER}`, or \
                 leave the VFs to their kernel drivers with --no-vf",
                root.join("bus/pci/drivers").join(VFIO_DRIVER).display()
            ));
        }
        if no_iommu && system.noiommu.is_none() {
            errors.push(format!(
                "there is no IOMMU and VFIO's no-IOMMU mode is unavailable ({} is missing): \
                 load vfio on a kernel built with CONFIG_VFIO_NOIOMMU=y, or --no-vf",
                root.join(NOIOMMU_PARAM).display()
            ));
        }
        if no_iommu && system.hugepages.is_none() {
            errors.push(format!(
                "no-IOMMU DMA needs 2 MiB hugepages and this kernel has no 2 MiB pool ({} is \
                 missing), or --no-vf",
                root.join(HUGEPAGES_2M).display()
            ));
        }
        if no_iommu && options.hugepages == 0 && system.hugepages == Some(0) {
            errors.push(
                "no-IOMMU DMA needs 2 MiB hugepages and none are reserved: --hugepages 0 \
                 would leave the VF unusable"
                    .into(),
            );
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let mut writes = Vec::new();
    let mut record = BindState::new(root);
    match system.hugepages {
        Some(have) if have < options.hugepages => {
            writes.push(Write::plain(
                root.join(HUGEPAGES_2M),
                options.hugepages.to_string(),
            ));
            record.hugepages = Some(HugepagesRecord {
                was: have,
                set: options.hugepages,
            });
        }
        Some(_) => {}
        None if options.hugepages > 0 => notes.push(format!(
            "no 2 MiB hugepage pool ({} is missing): none reserved",
            root.join(HUGEPAGES_2M).display()
        )),
        None => {}
    }
    if !vfs_to_bind.is_empty() && no_iommu && system.noiommu == Some(false) {
        writes.push(Write::plain(root.join(NOIOMMU_PARAM), "1"));
        record.noiommu_was = Some(false);
    }
    let uio = root.join("bus/vmbus/drivers").join(UIO_DRIVER);
    if !to_bind.is_empty() {
        writes.push(Write {
            path: uio.join("new_id"),
            value: netvsc::vmbus::NETVSC_CLASS_ID.into(),
            kind: WriteKind::NewId,
        });
    }
    for plan in &to_bind {
        let n = &plan.netvsc;
        if let Some(driver) = &n.driver {
            writes.push(Write::plain(
                root.join("bus/vmbus/drivers").join(driver).join("unbind"),
                n.instance.clone(),
            ));
        }
        writes.push(Write {
            path: uio.join("bind"),
            value: n.instance.clone(),
            kind: WriteKind::BindNetvsc(n.instance.clone()),
        });
        record.netvscs.push(NetvscRecord {
            instance: n.instance.clone(),
            driver: n.driver.clone(),
            interface: n.interface.as_ref().map(|i| i.name.clone()),
            mac: n.mac.map(|m| m.to_string()),
        });
    }
    for (netvsc, vf) in &vfs_to_bind {
        let f = &vf.vf.function;
        let device = root.join("bus/pci/devices").join(&f.bdf);
        writes.push(Write::plain(device.join("driver_override"), VFIO_DRIVER));
        if let Some(driver) = &f.driver {
            writes.push(Write::plain(
                root.join("bus/pci/drivers").join(driver).join("unbind"),
                f.bdf.clone(),
            ));
        }
        writes.push(Write::plain(
            root.join("bus/pci/drivers_probe"),
            f.bdf.clone(),
        ));
        record.vfs.push(VfRecord {
            bdf: f.bdf.clone(),
            netvsc: netvsc.netvsc.instance.clone(),
            driver: f.driver.clone(),
            driver_override: f.driver_override.clone(),
        });
    }
    Ok(BindPlan {
        decisions,
        writes,
        record,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use bond::provider::NetInterface;

    use super::super::hostnet::SshSession;
    use super::super::survey::{FoundBy, System};
    use super::*;

    const ETH0: &str = "11111111-2222-3333-4444-555555555555";
    const ETH1: &str = "ed963694-e847-4b2a-85af-bc9cfc11d6f3";

    fn netvsc(instance: &str, ifname: &str, mac: [u8; 6]) -> Netvsc {
        Netvsc {
            instance: instance.into(),
            driver: Some("hv_netvsc".into()),
            interface: Some(NetInterface {
                name: ifname.into(),
                mac: Some(packet::MacAddr(mac)),
            }),
            recorded_interface: None,
            mac: Some(packet::MacAddr(mac)),
        }
    }

    fn vf(bdf: &str, id: (u16, u16), driver: &str, ifname: &str) -> Vf {
        Vf {
            function: PciFunction {
                bdf: bdf.into(),
                id: Some(PciId {
                    vendor: id.0,
                    device: id.1,
                }),
                driver: Some(driver.into()),
                driver_override: None,
                serial: Some(7),
                interface: Some(NetInterface {
                    name: ifname.into(),
                    mac: None,
                }),
            },
            found_by: FoundBy::Mac,
        }
    }

    /// A guest with eth0 (management) and eth1 (for hvnet, with an igbvf VF).
    fn guest() -> Survey {
        Survey {
            root: PathBuf::from("/sys"),
            netvscs: vec![
                (netvsc(ETH0, "eth0", [0, 0x15, 0x5d, 0, 0, 1]), Vec::new()),
                (
                    netvsc(ETH1, "eth1", [0, 0x15, 0x5d, 0, 0, 2]),
                    vec![vf("1d7c:00:02.0", (0x8086, 0x10ca), "igbvf", "enP7548s1")],
                ),
            ],
            others: Vec::new(),
            system: System {
                iommu: false,
                noiommu: Some(false),
                hugepages: Some(0),
                uio_loaded: true,
                vfio_loaded: true,
            },
            uppers: BTreeMap::new(),
        }
    }

    fn facts(default_on: &[&str], ssh_on: &[&str]) -> Facts {
        let session = SshSession {
            client: "203.0.113.9".parse().unwrap(),
            server: "10.0.0.4".parse().unwrap(),
        };
        Facts {
            default_route: Ok(default_on.iter().map(|s| s.to_string()).collect()),
            ssh: Ok(vec![(
                session,
                ssh_on.iter().map(|s| s.to_string()).collect(),
            )]),
        }
    }

    fn options() -> BindOptions {
        BindOptions {
            hugepages: 64,
            ..BindOptions::default()
        }
    }

    fn lines(plan: &BindPlan) -> Vec<String> {
        plan.writes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_default_route_nic_is_skipped_and_the_other_bound_with_its_vf() {
        let survey = guest();
        let decisions = decide(&survey, &facts(&["eth0"], &[]), &options());
        assert!(matches!(
            decisions.netvscs[0].action,
            NetvscAction::Refuse(_)
        ));
        assert_eq!(decisions.netvscs[1].action, NetvscAction::Bind);
        let plan = bind_plan(&survey, decisions, &options()).unwrap();
        assert_eq!(
            lines(&plan),
            [
                "echo 64 > /sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages",
                "echo 1 > /sys/module/vfio/parameters/enable_unsafe_noiommu_mode",
                "echo f8615163-df3e-46c5-913f-f2d2f965ed0e > /sys/bus/vmbus/drivers/uio_hv_generic/new_id",
                "echo ed963694-e847-4b2a-85af-bc9cfc11d6f3 > /sys/bus/vmbus/drivers/hv_netvsc/unbind",
                "echo ed963694-e847-4b2a-85af-bc9cfc11d6f3 > /sys/bus/vmbus/drivers/uio_hv_generic/bind",
                "echo vfio-pci > /sys/bus/pci/devices/1d7c:00:02.0/driver_override",
                "echo 1d7c:00:02.0 > /sys/bus/pci/drivers/igbvf/unbind",
                "echo 1d7c:00:02.0 > /sys/bus/pci/drivers_probe",
            ]
        );
        assert!(
            plan.notes[0].starts_with(&format!(
                "NetVSC {ETH0} (eth0) is skipped: carries the default route"
            )),
            "{:?}",
            plan.notes
        );
        assert_eq!(plan.record.netvscs.len(), 1);
        assert_eq!(plan.record.vfs[0].driver.as_deref(), Some("igbvf"));
        assert_eq!(plan.record.noiommu_was, Some(false));
        assert_eq!(
            plan.record.hugepages,
            Some(HugepagesRecord { was: 0, set: 64 })
        );
    }

    #[test]
    fn a_named_nic_carrying_the_ssh_session_is_refused_unless_forced() {
        let survey = guest();
        let mut opts = options();
        opts.instances = vec![ETH1.into()];
        let decisions = decide(&survey, &facts(&[], &["eth1"]), &opts);
        let errors = bind_plan(&survey, decisions, &opts).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("carries the current SSH session from 203.0.113.9")
                && errors[0].contains("--force"),
            "{errors:?}"
        );
        opts.force = true;
        let decisions = decide(&survey, &facts(&[], &["eth1"]), &opts);
        let plan = bind_plan(&survey, decisions, &opts).unwrap();
        assert!(
            lines(&plan)
                .iter()
                .any(|l| l.ends_with("uio_hv_generic/bind"))
        );
        assert_eq!(
            plan.decisions.netvscs[0].action,
            NetvscAction::NotSelected,
            "eth0 is not named"
        );
    }

    #[test]
    fn a_bridge_over_the_nic_carrying_the_default_route_refuses_it() {
        let mut survey = guest();
        survey
            .uppers
            .insert("eth1".into(), BTreeSet::from(["br0".to_string()]));
        let decisions = decide(&survey, &facts(&["br0"], &[]), &options());
        assert!(
            matches!(&decisions.netvscs[1].action, NetvscAction::Refuse(r) if r[0].contains("br0")),
            "{:?}",
            decisions.netvscs[1].action
        );
        // The VF's interface counts too.
        let decisions = decide(&guest(), &facts(&["enP7548s1"], &[]), &options());
        assert!(matches!(
            decisions.netvscs[1].action,
            NetvscAction::Refuse(_)
        ));
        assert_eq!(
            decisions.netvscs[1].vfs[0].action,
            VfAction::Held("its NetVSC is refused".into())
        );
    }

    #[test]
    fn unreadable_facts_refuse_and_every_refused_nic_is_an_error() {
        let survey = guest();
        let facts = Facts {
            default_route: Err("cannot read /proc/net/route".into()),
            ssh: Ok(Vec::new()),
        };
        let decisions = decide(&survey, &facts, &options());
        let errors = bind_plan(&survey, decisions, &options()).unwrap_err();
        assert!(errors[0].contains("every NetVSC is refused"), "{errors:?}");
    }

    #[test]
    fn an_mlx5_vf_is_left_on_its_driver_and_the_nic_still_bound() {
        let mut survey = guest();
        survey.netvscs[1].1 = vec![vf("5a2b:00:02.0", (0x15b3, 0x101a), "mlx5_core", "enP1s1")];
        let decisions = decide(&survey, &facts(&["eth0"], &[]), &options());
        let vf = &decisions.netvscs[1].vfs[0];
        assert_eq!(
            vf.action.describe(&vf.vf.function),
            "leave on mlx5_core: no hvnet driver; hvnet run uses it through the kernel (AF_XDP)"
        );
        let plan = bind_plan(&survey, decisions, &options()).unwrap();
        assert!(
            lines(&plan)
                .iter()
                .all(|l| !l.contains("5a2b") && !l.contains("noiommu")),
            "{:?}",
            lines(&plan)
        );
        assert!(plan.record.vfs.is_empty());
    }

    #[test]
    fn missing_drivers_and_features_are_errors_before_anything_is_written() {
        let mut survey = guest();
        survey.system.uio_loaded = false;
        survey.system.vfio_loaded = false;
        survey.system.noiommu = None;
        let decisions = decide(&survey, &facts(&["eth0"], &[]), &options());
        let errors = bind_plan(&survey, decisions, &options()).unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains("modprobe uio_hv_generic")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("modprobe vfio-pci")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e.contains("CONFIG_VFIO_NOIOMMU")),
            "{errors:?}"
        );
        // --no-vf needs none of the VF's.
        let mut opts = options();
        opts.no_vf = true;
        survey.system.uio_loaded = true;
        let decisions = decide(&survey, &facts(&["eth0"], &[]), &opts);
        let plan = bind_plan(&survey, decisions, &opts).unwrap();
        assert!(lines(&plan).iter().all(|l| !l.contains("1d7c")));
    }

    #[test]
    fn writes_print_as_the_echo_that_makes_them() {
        let w = Write::plain(Path::new("/tmp/a b/x").to_path_buf(), "it's");
        assert_eq!(w.to_string(), r"echo 'it'\''s' > '/tmp/a b/x'");
        assert_eq!(w.bytes(), b"it's\n");
        let clear = Write::plain(PathBuf::from("/sys/x/driver_override"), "");
        assert_eq!(clear.to_string(), "echo > /sys/x/driver_override");
        assert_eq!(clear.bytes(), b"\n");
    }
}
