//! The bind state file: what `hvnet bind` changed and what was there before, so `hvnet
//! unbind` puts it back.
//!
//! Default location [`DEFAULT_STATE`] (`/run/hvnet/bind-state.json`): `/run` is a tmpfs, so
//! the file lives exactly as long as the bindings it describes (a reboot drops both), and
//! nothing stale survives to misguide an `unbind` after a reboot. `--state FILE` puts it
//! elsewhere (the tests keep it beside their fake sysfs tree). The file names the sysfs root
//! it belongs to; `unbind` and a second `bind` refuse a file of another root.
//!
//! It is written (atomically: a temporary file renamed over it) before the first sysfs write,
//! and again when something is learnt while writing (whether hvnet's `new_id` write added the
//! ID), so an interrupted bind can still be undone. A second `bind` merges into it: the
//! drivers recorded first stay the ones restored.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// Where the state lives unless `--state` says otherwise.
pub const DEFAULT_STATE: &str = "/run/hvnet/bind-state.json";
/// The version of the file's format.
pub const VERSION: u32 = 1;

/// A NetVSC hvnet moved to `uio_hv_generic`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetvscRecord {
    /// Its instance GUID.
    pub instance: String,
    /// The driver it was on (`hv_netvsc`), restored by `unbind`.
    pub driver: Option<String>,
    /// Its kernel interface then.
    pub interface: Option<String>,
    /// Its MAC (to find its VFs again, and for `status`).
    pub mac: Option<String>,
}

/// A VF hvnet moved to `vfio-pci`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VfRecord {
    /// Its PCI address.
    pub bdf: String,
    /// The NetVSC it belongs to.
    pub netvsc: String,
    /// The driver it was on, re-probed by `unbind`.
    pub driver: Option<String>,
    /// Its `driver_override` before (normally none), restored by `unbind`.
    pub driver_override: Option<String>,
}

/// The 2 MiB hugepage pool hvnet grew.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HugepagesRecord {
    /// Reserved before.
    pub was: u64,
    /// What hvnet asked for.
    pub set: u64,
}

/// What `hvnet bind` changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindState {
    /// [`VERSION`].
    pub version: u32,
    /// The sysfs root the records are about.
    pub sysfs_root: PathBuf,
    /// Whether hvnet's write to `uio_hv_generic/new_id` added the NetVSC class (then `unbind`
    /// removes it, so new NetVSCs go to `hv_netvsc` again).
    pub new_id_added: bool,
    /// The NetVSCs it moved.
    pub netvscs: Vec<NetvscRecord>,
    /// The VFs it moved.
    pub vfs: Vec<VfRecord>,
    /// `Some(previous)` when hvnet turned no-IOMMU mode on.
    pub noiommu_was: Option<bool>,
    /// Set when hvnet grew the hugepage pool.
    pub hugepages: Option<HugepagesRecord>,
}

impl BindState {
    /// An empty record for `sysfs_root`.
    pub fn new(sysfs_root: &Path) -> Self {
        Self {
            version: VERSION,
            sysfs_root: sysfs_root.to_path_buf(),
            ..Self::default()
        }
    }

    /// Adds what `newer` records that this one does not: the first record of a device (its
    /// original driver) is kept.
    pub fn merge(&mut self, newer: BindState) {
        self.new_id_added |= newer.new_id_added;
        for n in newer.netvscs {
            if !self.netvscs.iter().any(|o| o.instance == n.instance) {
                self.netvscs.push(n);
            }
        }
        for v in newer.vfs {
            if !self.vfs.iter().any(|o| o.bdf == v.bdf) {
                self.vfs.push(v);
            }
        }
        self.noiommu_was = self.noiommu_was.or(newer.noiommu_was);
        self.hugepages = self.hugepages.or(newer.hugepages);
    }
}

/// Reads the state at `path`: `None` if there is none; an error if it is unreadable, of
/// another version or of another sysfs root than `sysfs_root`.
pub fn load(path: &Path, sysfs_root: &Path) -> anyhow::Result<Option<BindState>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let state: BindState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an hvnet bind state", path.display()))?;
    anyhow::ensure!(
        state.version == VERSION,
        "{}: state version {}, this hvnet reads version {VERSION}",
        path.display(),
        state.version
    );
    anyhow::ensure!(
        state.sysfs_root == sysfs_root,
        "{} records bindings under {}, not {} (pass --state for another file)",
        path.display(),
        state.sysfs_root.display(),
        sysfs_root.display()
    );
    Ok(Some(state))
}

/// Writes `state` to `path` atomically (creating its directory).
pub fn save(path: &Path, state: &BindState) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut text = serde_json::to_string_pretty(state).context("encoding the bind state")?;
    text.push('\n');
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

/// Removes the state file (after a complete restore).
pub fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_and_refuses_another_root() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let mut state = BindState::new(Path::new("/sys"));
        state.new_id_added = true;
        state.netvscs.push(NetvscRecord {
            instance: "ed963694-e847-4b2a-85af-bc9cfc11d6f3".into(),
            driver: Some("hv_netvsc".into()),
            interface: Some("eth1".into()),
            mac: Some("00:15:5d:01:02:03".into()),
        });
        state.hugepages = Some(HugepagesRecord { was: 0, set: 64 });
        save(&path, &state).unwrap();
        assert_eq!(load(&path, Path::new("/sys")).unwrap(), Some(state));
        let err = load(&path, Path::new("/tmp/fake")).unwrap_err().to_string();
        assert!(err.contains("not /tmp/fake"), "{err}");
        assert_eq!(
            load(&dir.path().join("none.json"), Path::new("/sys")).unwrap(),
            None
        );
        std::fs::write(&path, "{\"version\":1,\"bogus\":2}").unwrap();
        assert!(load(&path, Path::new("/sys")).is_err());
        remove(&path).unwrap();
        remove(&path).unwrap();
    }

    #[test]
    fn merging_keeps_the_first_record_of_a_device() {
        let mut old = BindState::new(Path::new("/sys"));
        old.vfs.push(VfRecord {
            bdf: "1d7c:00:02.0".into(),
            netvsc: "a".into(),
            driver: Some("igbvf".into()),
            driver_override: None,
        });
        old.noiommu_was = Some(false);
        let mut newer = BindState::new(Path::new("/sys"));
        newer.vfs.push(VfRecord {
            bdf: "1d7c:00:02.0".into(),
            netvsc: "a".into(),
            driver: Some("vfio-pci".into()),
            driver_override: Some("vfio-pci".into()),
        });
        newer.noiommu_was = Some(true);
        newer.new_id_added = true;
        old.merge(newer);
        assert_eq!(old.vfs.len(), 1);
        assert_eq!(old.vfs[0].driver.as_deref(), Some("igbvf"));
        assert_eq!(old.noiommu_was, Some(false));
        assert!(old.new_id_added);
    }
}
