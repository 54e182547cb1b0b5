//! What `hvnet unbind` writes: the recorded state put back, from what sysfs says now.
//!
//! In the reverse order of `bind`: each VF (its `driver_override` as it was, unbound from
//! `vfio-pci`, re-probed so its own driver takes it), each NetVSC (unbound from
//! `uio_hv_generic`, bound to its driver), the NetVSC class removed from `uio_hv_generic`'s
//! IDs if hvnet added it, no-IOMMU mode off if hvnet turned it on, the hugepage pool back to
//! its size if nobody changed it since. Only what differs from the record is written, so
//! `unbind` can be run again after a partial failure; a device that is gone is reported.

use std::path::Path;

use super::plan::{Write, WriteKind};
use super::state::BindState;
use super::survey::{self, HUGEPAGES_2M, NOIOMMU_PARAM, UIO_DRIVER, VFIO_DRIVER, parse_bool_param};

/// The writes that restore `state` under `root`, and remarks for the operator.
pub fn unbind_plan(root: &Path, state: &BindState) -> (Vec<Write>, Vec<String>) {
    let mut writes = Vec::new();
    let mut notes = Vec::new();
    let write = |path: std::path::PathBuf, value: &str| Write {
        path,
        value: value.to_owned(),
        kind: WriteKind::Plain,
    };
    for record in &state.vfs {
        let device = root.join("bus/pci/devices").join(&record.bdf);
        if !device.exists() {
            notes.push(format!("VF {} is gone: nothing to restore", record.bdf));
            continue;
        }
        let now = survey::read_function(root, &record.bdf);
        if now.driver_override != record.driver_override {
            writes.push(write(
                device.join("driver_override"),
                record.driver_override.as_deref().unwrap_or(""),
            ));
        }
        let original = record.driver.as_deref();
        if now.driver.as_deref() == Some(VFIO_DRIVER) && original != Some(VFIO_DRIVER) {
            writes.push(write(
                root.join("bus/pci/drivers")
                    .join(VFIO_DRIVER)
                    .join("unbind"),
                &record.bdf,
            ));
        }
        if original.is_some() && now.driver.as_deref() != original {
            writes.push(write(root.join("bus/pci/drivers_probe"), &record.bdf));
        }
    }
    let vmbus_drivers = root.join("bus/vmbus/drivers");
    for record in &state.netvscs {
        if !root
            .join("bus/vmbus/devices")
            .join(&record.instance)
            .exists()
        {
            notes.push(format!(
                "NetVSC {} is gone: nothing to restore",
                record.instance
            ));
            continue;
        }
        let now = survey::vmbus_driver(root, &record.instance);
        let original = record.driver.as_deref();
        if now.as_deref() == Some(UIO_DRIVER) && original != Some(UIO_DRIVER) {
            writes.push(write(
                vmbus_drivers.join(UIO_DRIVER).join("unbind"),
                &record.instance,
            ));
        }
        if let Some(driver) = original
            && now.as_deref() != Some(driver)
        {
            writes.push(write(
                vmbus_drivers.join(driver).join("bind"),
                &record.instance,
            ));
        }
    }
    if state.new_id_added {
        writes.push(Write {
            path: vmbus_drivers.join(UIO_DRIVER).join("remove_id"),
            value: netvsc::vmbus::NETVSC_CLASS_ID.into(),
            kind: WriteKind::RemoveId,
        });
    }
    if let Some(was) = state.noiommu_was {
        let now = std::fs::read_to_string(root.join(NOIOMMU_PARAM))
            .ok()
            .and_then(|t| parse_bool_param(&t));
        if now.is_some_and(|now| now != was) {
            writes.push(write(root.join(NOIOMMU_PARAM), if was { "1" } else { "0" }));
        }
    }
    if let Some(pages) = state.hugepages {
        let now: Option<u64> = std::fs::read_to_string(root.join(HUGEPAGES_2M))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        match now {
            Some(now) if now == pages.set => {
                writes.push(write(root.join(HUGEPAGES_2M), &pages.was.to_string()));
            }
            Some(now) if now != pages.was => notes.push(format!(
                "hugepages: {now} reserved now, not the {} hvnet set: left as they are",
                pages.set
            )),
            _ => {}
        }
    }
    (writes, notes)
}
