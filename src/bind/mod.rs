//! `hvnet bind`, `hvnet unbind`, `hvnet status`: handing a NetVSC and its VF from the kernel
//! to hvnet and back, safely.
//!
//! Modules: [`survey`] reads sysfs (NetVSCs, their VFs, IOMMU, no-IOMMU mode, hugepages);
//! [`hostnet`] reads the routes, addresses and SSH session the safety check needs; [`plan`]
//! decides per device and orders the writes; [`state`] records what was there before;
//! [`restore`] computes the writes that put it back; [`status`] reports. This module parses
//! the command lines and makes the writes.
//!
//! Lifecycle: `bind` reads, decides, refuses (nothing written) or records the state, then
//! writes in order; `unbind` reads the state, writes what differs from it, then removes it.
//! Every write is printed as the `echo VALUE > PATH` line that makes it, so `--dry-run`
//! prints a shell script of exactly what would be done.

pub mod hostnet;
pub mod plan;
pub mod restore;
pub mod state;
pub mod status;
pub mod survey;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use netvsc::vmbus::uio::Guid;

use plan::{BindOptions, NetvscAction, VfAction, Write, WriteKind};
use survey::{UIO_DRIVER, VFIO_DRIVER};

/// The default number of 2 MiB hugepages `bind` reserves (128 MiB: an igbvf queue takes three,
/// the rest is room for the packet pools).
pub const DEFAULT_HUGEPAGES: u64 = 64;
/// The most `--hugepages` accepts (128 GiB).
pub const MAX_HUGEPAGES: u64 = 65_536;

/// Options of `hvnet bind`.
#[derive(Debug, clap::Args)]
pub struct BindArgs {
    /// The NetVSC to bind (instance GUID, as `hvnet status` lists it); repeat for several.
    /// Default: every NetVSC that carries neither the default route nor the SSH session.
    #[arg(long, value_name = "GUID")]
    instance: Vec<Guid>,

    /// 2 MiB hugepages to have reserved, 0 to 65536 (written only if fewer are); no-IOMMU DMA
    /// comes only from them.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_HUGEPAGES,
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(u64).range(0..=MAX_HUGEPAGES))]
    hugepages: u64,

    /// Bind a NetVSC even if its interface carries the default route or this SSH session.
    #[arg(long)]
    force: bool,

    /// Leave every VF on its kernel driver (the port then runs on the synthetic path only).
    #[arg(long)]
    no_vf: bool,

    /// Print every sysfs write, in order, as `echo VALUE > PATH`, and write nothing.
    #[arg(long)]
    dry_run: bool,

    /// The sysfs root (a copy of a guest's tree, for tests).
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sysfs_root: PathBuf,

    /// The procfs root the routes and the SSH session are read from (for tests).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    proc_root: PathBuf,

    /// Where the original drivers are recorded for `hvnet unbind`.
    #[arg(long, value_name = "FILE", default_value = state::DEFAULT_STATE)]
    state: PathBuf,
}

/// Options of `hvnet unbind`.
#[derive(Debug, clap::Args)]
pub struct UnbindArgs {
    /// Print every sysfs write, in order, as `echo VALUE > PATH`, and write nothing.
    #[arg(long)]
    dry_run: bool,

    /// The sysfs root (a copy of a guest's tree, for tests).
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sysfs_root: PathBuf,

    /// The state `hvnet bind` recorded.
    #[arg(long, value_name = "FILE", default_value = state::DEFAULT_STATE)]
    state: PathBuf,
}

/// Options of `hvnet status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,

    /// The sysfs root (a copy of a guest's tree, for tests).
    #[arg(long, value_name = "DIR", default_value = "/sys")]
    sysfs_root: PathBuf,

    /// The procfs root the routes and the SSH session are read from (for tests).
    #[arg(long, value_name = "DIR", default_value = "/proc")]
    proc_root: PathBuf,

    /// The state `hvnet bind` recorded.
    #[arg(long, value_name = "FILE", default_value = state::DEFAULT_STATE)]
    state: PathBuf,
}

/// Writes `w` as `echo` would: the value and a newline, to an existing file.
fn write_sysfs(w: &Write) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&w.path)?;
    file.write_all(&w.bytes())
}

fn comment(text: &str) {
    say!("# {text}");
}

/// The `#` lines describing the decisions.
fn describe(decisions: &plan::Decisions) {
    for p in &decisions.netvscs {
        let n = &p.netvsc;
        let interface = n.interface.as_ref().map(|i| i.name.as_str());
        let mac = n.mac.map(|m| m.to_string());
        comment(&format!(
            "NetVSC {} ({}, {}): {}",
            n.instance,
            interface.unwrap_or("no interface"),
            mac.as_deref().unwrap_or("MAC unknown"),
            p.action.describe(n)
        ));
        for v in &p.vfs {
            let f = &v.vf.function;
            comment(&format!(
                "  VF {} {}{}: {}",
                f.bdf,
                f.id.map_or("?:?".into(), |id| id.to_string()),
                f.serial.map_or(String::new(), |s| format!(" slot {s}")),
                v.action.describe(f)
            ));
        }
    }
    for (f, action) in &decisions.others {
        if matches!(action, VfAction::Unsupported(_)) {
            comment(&format!(
                "VF {} {}: {}",
                f.bdf,
                f.id.map_or("?:?".into(), |id| id.to_string()),
                action.describe(f)
            ));
        }
    }
}

/// Refuses `--instance` values that name no NetVSC.
fn check_instances(survey: &survey::Survey, instances: &[String]) -> anyhow::Result<()> {
    let known: Vec<&str> = survey
        .netvscs
        .iter()
        .map(|(n, _)| n.instance.as_str())
        .collect();
    for wanted in instances {
        anyhow::ensure!(
            known.contains(&wanted.as_str()),
            "no NetVSC {wanted} under {}; NetVSCs found: {}",
            survey.root.join("bus/vmbus/devices").display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    }
    Ok(())
}

/// Runs `hvnet bind`.
pub fn run_bind(args: &BindArgs) -> anyhow::Result<()> {
    let root = &args.sysfs_root;
    let existing = state::load(&args.state, root)?;
    let survey = survey::survey(root, existing.as_ref())?;
    let options = BindOptions {
        instances: args
            .instance
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
        force: args.force,
        hugepages: args.hugepages,
        no_vf: args.no_vf,
    };
    check_instances(&survey, &options.instances)?;
    let facts = if args.force {
        hostnet::Facts::none()
    } else {
        hostnet::read_facts(&args.proc_root)
    };
    let decisions = plan::decide(&survey, &facts, &options);
    let plan = match plan::bind_plan(&survey, decisions, &options) {
        Ok(plan) => plan,
        Err(errors) => {
            anyhow::bail!(
                "refusing to bind; nothing was written:\n  - {}",
                errors.join("\n  - ")
            )
        }
    };
    describe(&plan.decisions);
    for note in &plan.notes {
        comment(note);
    }
    if plan.writes.is_empty() {
        comment("nothing to write: everything selected is bound already");
        return Ok(());
    }
    if args.dry_run {
        for w in &plan.writes {
            say!("{w}");
        }
        comment(&format!(
            "dry run: nothing was written; bind records the original drivers in {}",
            args.state.display()
        ));
        return Ok(());
    }
    let mut record = existing.unwrap_or_else(|| state::BindState::new(root));
    let mut newer = plan.record.clone();
    newer.new_id_added = false;
    if let Some(h) = &mut newer.hugepages {
        // What the kernel reserves is read back after the write.
        h.set = h.was;
    }
    record.merge(newer);
    state::save(&args.state, &record)?;
    execute_bind(root, &plan, &args.state, &mut record, &mut write_sysfs)?;
    check_bound(root, &plan);
    Ok(())
}

/// Makes the writes of `plan` in order with `write`, printing each one made, and keeps
/// `record` (saved at `state_path`) up to date with what is learnt on the way: whether the
/// `new_id` write added the class (`EEXIST`: it was there, not added), how many hugepages the
/// kernel reserved. A NetVSC already on `uio_hv_generic` is not bound again. Stops at the
/// first failed write, saying that `hvnet unbind` restores what was changed.
fn execute_bind(
    root: &Path,
    plan: &plan::BindPlan,
    state_path: &Path,
    record: &mut state::BindState,
    write: &mut dyn FnMut(&Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let failed = |w: &Write, e: std::io::Error| {
        anyhow::anyhow!(
            "{w}: {e}; what was changed before is recorded in {}: `hvnet unbind` restores it",
            state_path.display()
        )
    };
    for w in &plan.writes {
        match &w.kind {
            WriteKind::BindNetvsc(instance)
                if survey::vmbus_driver(root, instance).as_deref() == Some(UIO_DRIVER) =>
            {
                comment(&format!("NetVSC {instance} is on {UIO_DRIVER} already"));
                continue;
            }
            WriteKind::NewId => match write(w) {
                Ok(()) => {
                    record.new_id_added = true;
                    state::save(state_path, record)?;
                }
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    comment(&format!(
                        "{UIO_DRIVER} has the NetVSC class already (EEXIST): not added"
                    ));
                    continue;
                }
                Err(e) => return Err(failed(w, e)),
            },
            _ => write(w).map_err(|e| failed(w, e))?,
        }
        say!("{w}");
        if w.path == root.join(survey::HUGEPAGES_2M) {
            record_hugepages(root, state_path, record, plan.record.hugepages)?;
        }
    }
    Ok(())
}

/// Records how many hugepages the kernel reserved after hvnet asked for more, and warns when
/// it could not reserve them all.
fn record_hugepages(
    root: &Path,
    state_path: &Path,
    record: &mut state::BindState,
    asked: Option<state::HugepagesRecord>,
) -> anyhow::Result<()> {
    let Some(asked) = asked else {
        return Ok(());
    };
    let now: u64 = std::fs::read_to_string(root.join(survey::HUGEPAGES_2M))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(asked.was);
    if now < asked.set {
        eprintln!(
            "warning: only {now} of {} 2 MiB hugepages could be reserved (memory is \
             fragmented): reserve them at boot with hugepages={} on the kernel command line",
            asked.set, asked.set
        );
    }
    if let Some(h) = &mut record.hugepages {
        h.set = now;
    }
    state::save(state_path, record)
}

/// Warns about devices the kernel did not move although every write succeeded.
fn check_bound(root: &Path, plan: &plan::BindPlan) {
    for p in &plan.decisions.netvscs {
        if p.action == NetvscAction::Bind {
            let now = survey::vmbus_driver(root, &p.netvsc.instance);
            if now.as_deref() != Some(UIO_DRIVER) {
                eprintln!(
                    "warning: NetVSC {} is on {} after the writes, not {UIO_DRIVER} (see dmesg)",
                    p.netvsc.instance,
                    now.as_deref().unwrap_or("no driver")
                );
            }
        }
        for v in &p.vfs {
            if matches!(v.action, VfAction::BindVfio(_)) {
                let now = bond::provider::bound_driver(root, &v.vf.function.bdf);
                if now.as_deref() != Some(VFIO_DRIVER) {
                    eprintln!(
                        "warning: VF {} is on {} after the writes, not {VFIO_DRIVER} (see dmesg)",
                        v.vf.function.bdf,
                        now.as_deref().unwrap_or("no driver")
                    );
                }
            }
        }
    }
}

/// Runs `hvnet unbind`.
pub fn run_unbind(args: &UnbindArgs) -> anyhow::Result<()> {
    let root = &args.sysfs_root;
    let Some(recorded) = state::load(&args.state, root)? else {
        comment(&format!(
            "nothing to restore: no bind state at {}",
            args.state.display()
        ));
        return Ok(());
    };
    let (writes, notes) = restore::unbind_plan(root, &recorded);
    for note in &notes {
        comment(note);
    }
    if args.dry_run {
        for w in &writes {
            say!("{w}");
        }
        comment(&format!(
            "dry run: nothing was written; {} is kept",
            args.state.display()
        ));
        return Ok(());
    }
    let mut errors = Vec::new();
    for w in &writes {
        match write_sysfs(w) {
            Ok(()) => say!("{w}"),
            Err(e) if w.kind == WriteKind::RemoveId && e.raw_os_error() == Some(libc::ENODEV) => {
                comment(&format!(
                    "{UIO_DRIVER} no longer has the NetVSC class (ENODEV)"
                ));
            }
            // Keep going: restore as much as can be restored.
            Err(e) => errors.push(format!("{w}: {e}")),
        }
    }
    anyhow::ensure!(
        errors.is_empty(),
        "some writes failed; {} is kept for another `hvnet unbind`:\n  - {}",
        args.state.display(),
        errors.join("\n  - ")
    );
    state::remove(&args.state).context("the drivers are restored, but")?;
    comment(&format!("restored; removed {}", args.state.display()));
    Ok(())
}

/// Runs `hvnet status`.
pub fn run_status(args: &StatusArgs) -> anyhow::Result<()> {
    let root = &args.sysfs_root;
    let recorded = state::load(&args.state, root)?;
    let survey = survey::survey(root, recorded.as_ref())?;
    let facts = hostnet::read_facts(&args.proc_root);
    let options = BindOptions {
        hugepages: DEFAULT_HUGEPAGES,
        ..BindOptions::default()
    };
    let decisions = plan::decide(&survey, &facts, &options);
    let report = status::status(
        &survey,
        &decisions,
        recorded.map(|_| args.state.display().to_string()),
    );
    if args.json {
        say!(
            "{}",
            serde_json::to_string_pretty(&report).context("encoding the status")?
        );
    } else {
        for line in status::render(&report) {
            say!("{line}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::*;

    const ETH1: &str = "ed963694-e847-4b2a-85af-bc9cfc11d6f3";

    /// A plan of three writes: hugepages, `new_id`, the NetVSC's bind.
    fn plan(root: &Path) -> plan::BindPlan {
        let mut record = state::BindState::new(root);
        record.hugepages = Some(state::HugepagesRecord { was: 0, set: 64 });
        let write = |path: &str, value: &str, kind: WriteKind| Write {
            path: root.join(path),
            value: value.into(),
            kind,
        };
        plan::BindPlan {
            decisions: plan::Decisions {
                netvscs: Vec::new(),
                others: Vec::new(),
            },
            writes: vec![
                write(survey::HUGEPAGES_2M, "64", WriteKind::Plain),
                write(
                    "bus/vmbus/drivers/uio_hv_generic/new_id",
                    netvsc::vmbus::NETVSC_CLASS_ID,
                    WriteKind::NewId,
                ),
                write(
                    "bus/vmbus/drivers/uio_hv_generic/bind",
                    ETH1,
                    WriteKind::BindNetvsc(ETH1.into()),
                ),
            ],
            record,
            notes: Vec::new(),
        }
    }

    /// Runs `execute_bind` with a writer that answers `answer(index)` and counts the writes
    /// it was asked for; returns the result, the record and what was asked.
    fn run(
        answer: impl Fn(usize) -> io::Result<()>,
    ) -> (
        anyhow::Result<()>,
        state::BindState,
        Vec<String>,
        tempfile::TempDir,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sys");
        let hugepages = root.join(survey::HUGEPAGES_2M);
        std::fs::create_dir_all(hugepages.parent().unwrap()).unwrap();
        // The kernel could reserve only 40 of the 64.
        std::fs::write(&hugepages, "40\n").unwrap();
        let plan = plan(&root);
        let state_path = dir.path().join("state.json");
        let mut record = plan.record.clone();
        record.hugepages = Some(state::HugepagesRecord { was: 0, set: 0 });
        let mut asked = Vec::new();
        let mut writer = |w: &Write| {
            asked.push(w.to_string());
            answer(asked.len() - 1)
        };
        let result = execute_bind(&root, &plan, &state_path, &mut record, &mut writer);
        (result, record, asked, dir)
    }

    #[test]
    fn an_existing_new_id_counts_as_done_and_is_not_recorded_as_added() {
        let (result, record, asked, dir) = run(|i| {
            if i == 1 {
                Err(io::Error::from_raw_os_error(libc::EEXIST))
            } else {
                Ok(())
            }
        });
        result.unwrap();
        assert_eq!(
            asked.len(),
            3,
            "the bind after EEXIST was still made: {asked:?}"
        );
        assert!(!record.new_id_added);
        assert_eq!(
            record.hugepages,
            Some(state::HugepagesRecord { was: 0, set: 40 }),
            "what the kernel reserved is what unbind restores from"
        );
        let saved = state::load(&dir.path().join("state.json"), &dir.path().join("sys"))
            .unwrap()
            .unwrap();
        assert_eq!(saved, record);
    }

    #[test]
    fn an_added_new_id_is_recorded_before_the_next_write() {
        let (result, record, asked, dir) = run(|i| {
            if i == 2 {
                Err(io::Error::from_raw_os_error(libc::ENODEV))
            } else {
                Ok(())
            }
        });
        let err = result.unwrap_err().to_string();
        assert!(
            err.contains("uio_hv_generic/bind") && err.contains("`hvnet unbind` restores it"),
            "{err}"
        );
        assert_eq!(asked.len(), 3);
        assert!(record.new_id_added);
        let saved = state::load(&dir.path().join("state.json"), &dir.path().join("sys"))
            .unwrap()
            .unwrap();
        assert!(
            saved.new_id_added,
            "the state on disk knows the ID was added"
        );
    }

    #[test]
    fn any_other_new_id_error_stops_the_bind() {
        let (result, record, asked, _dir) = run(|i| {
            if i == 1 {
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            } else {
                Ok(())
            }
        });
        assert!(result.is_err());
        assert_eq!(asked.len(), 2, "nothing after the failed write: {asked:?}");
        assert!(!record.new_id_added);
    }
}
