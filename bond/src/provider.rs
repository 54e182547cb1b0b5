//! Finding, binding and opening the VF the host associated: [`VfProvider`].
//!
//! The host names a VF by the serial of its association (NVSP 128). Linux's pci-hyperv names
//! the VF's PCI slot with that serial in decimal, so `/sys/bus/pci/slots/<serial>/address`
//! holds the VF's `domain:bus:device` ([`slot_address`]); the functions of that device are the
//! `/sys/bus/pci/devices/<address>.<function>` entries ([`functions_in_slot`]). A function not
//! yet bound to `vfio-pci` is bound to it ([`bind_to_vfio_pci`]: `driver_override`, unbind
//! from its current driver, `drivers_probe`). The port then checks that the opened VF's MAC
//! is the synthetic NIC's (Hyper-V gives a VF the MAC of its NIC), and refuses it otherwise.
//!
//! [`VfioIgbvfProvider`] does all of that for Intel 82576 VFs through VFIO; tests supply their
//! own provider over a software VF.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use packet::MacAddr;
use vf::igbvf::{Igbvf, IgbvfConfig};
use vf::port::{VfPort, VfQueue};
use vf::vfio::{VfioConfig, VfioDevice};

/// What the port asks of a VF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfRequest {
    /// The synthetic NIC's MAC (the VF must have it; a VF without an administrator MAC takes
    /// it).
    pub mac: MacAddr,
    /// The synthetic NIC's MTU.
    pub mtu: usize,
    /// The port's queue count (the VF may have fewer; port queues fold onto them).
    pub queues: u16,
}

/// An opened VF: its control handle and its queues.
#[derive(Debug)]
pub struct AttachedVf {
    /// The device's name (its PCI address).
    pub name: String,
    /// The control handle.
    pub port: Arc<dyn VfPort>,
    /// One handle per VF queue.
    pub queues: Vec<Box<dyn VfQueue>>,
}

/// Looking for or opening a VF failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Reading or writing sysfs failed.
    #[error("{path}: {source}")]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The device was found but could not be opened.
    #[error("opening {device}: {message}")]
    Open {
        /// The PCI address.
        device: String,
        /// What failed (the driver's error chain).
        message: String,
    },
}

/// Finds and opens the VF of an association. Called by the port's control thread every
/// `vf_probe_interval` until it returns a VF or `vf_appear_timeout` runs out.
pub trait VfProvider: Send + Sync + Debug {
    /// Looks for the VF with association serial `serial`: `Ok(None)` while its device has
    /// not appeared; an opened VF (reset, rings up) once it has.
    fn probe(&self, serial: u32, request: &VfRequest) -> Result<Option<AttachedVf>, ProbeError>;
}

/// A provider that never finds a VF: the port stays on the synthetic path.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoVf;

impl VfProvider for NoVf {
    fn probe(&self, _: u32, _: &VfRequest) -> Result<Option<AttachedVf>, ProbeError> {
        Ok(None)
    }
}

fn sysfs_error(path: &Path) -> impl FnOnce(io::Error) -> ProbeError + '_ {
    move |source| ProbeError::Sysfs {
        path: path.to_owned(),
        source,
    }
}

/// The `domain:bus:device` of PCI slot `serial` (`<sysfs>/bus/pci/slots/<serial>/address`),
/// or `None` if there is no such slot yet.
pub fn slot_address(sysfs_root: &Path, serial: u32) -> Result<Option<String>, ProbeError> {
    let path = sysfs_root
        .join("bus/pci/slots")
        .join(serial.to_string())
        .join("address");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let address = text.trim();
            let valid = !address.is_empty()
                && address.len() <= 32
                && address.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
            if valid {
                Ok(Some(address.to_owned()))
            } else {
                Err(ProbeError::Sysfs {
                    path,
                    source: io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("not a PCI slot address: {address:?}"),
                    ),
                })
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(sysfs_error(&path)(e)),
    }
}

/// The PCI functions (`<address>.<function>`) present in the device at `address`, sorted.
pub fn functions_in_slot(sysfs_root: &Path, address: &str) -> Result<Vec<String>, ProbeError> {
    let dir = sysfs_root.join("bus/pci/devices");
    let prefix = format!("{address}.");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(sysfs_error(&dir)(e)),
    };
    let mut functions: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            name.strip_prefix(&prefix)
                .is_some_and(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    functions.sort();
    Ok(functions)
}

/// The driver `bdf` is bound to, if any.
pub fn bound_driver(sysfs_root: &Path, bdf: &str) -> Option<String> {
    let link = sysfs_root.join("bus/pci/devices").join(bdf).join("driver");
    std::fs::read_link(link)
        .ok()
        .and_then(|target| target.file_name()?.to_str().map(str::to_owned))
}

/// Binds `bdf` to `vfio-pci`: writes `driver_override`, unbinds it from its current driver
/// and asks the bus to probe it again. Returns whether it is bound to `vfio-pci` afterwards.
pub fn bind_to_vfio_pci(sysfs_root: &Path, bdf: &str) -> Result<bool, ProbeError> {
    if bound_driver(sysfs_root, bdf).as_deref() == Some("vfio-pci") {
        return Ok(true);
    }
    let device = sysfs_root.join("bus/pci/devices").join(bdf);
    let write = |path: PathBuf, value: &str| {
        std::fs::write(&path, value).map_err(|source| ProbeError::Sysfs { path, source })
    };
    write(device.join("driver_override"), "vfio-pci")?;
    if bound_driver(sysfs_root, bdf).is_some() {
        write(device.join("driver/unbind"), bdf)?;
    }
    write(sysfs_root.join("bus/pci/drivers_probe"), bdf)?;
    Ok(bound_driver(sysfs_root, bdf).as_deref() == Some("vfio-pci"))
}

/// Finds VFs by slot in sysfs, binds them to `vfio-pci`, opens them through VFIO and drives
/// them with the igbvf driver (an Intel 82576 VF).
#[derive(Clone, Debug)]
pub struct VfioIgbvfProvider {
    /// VFIO settings (IOMMU mode, sysfs and /dev roots).
    pub vfio: VfioConfig,
    /// Driver settings; `mtu`, `queues` and `mac` are taken from the port's request.
    pub igbvf: IgbvfConfig,
}

impl VfioIgbvfProvider {
    /// No-IOMMU VFIO (Hyper-V and Azure guests have no vIOMMU) and the driver's defaults.
    pub fn no_iommu() -> Self {
        Self {
            vfio: VfioConfig::new(vf::vfio::IommuMode::NoIommu),
            igbvf: IgbvfConfig::default(),
        }
    }
}

impl VfProvider for VfioIgbvfProvider {
    fn probe(&self, serial: u32, request: &VfRequest) -> Result<Option<AttachedVf>, ProbeError> {
        let root = &self.vfio.sysfs_root;
        let Some(address) = slot_address(root, serial)? else {
            return Ok(None);
        };
        let Some(bdf) = functions_in_slot(root, &address)?.into_iter().next() else {
            return Ok(None);
        };
        if !bind_to_vfio_pci(root, &bdf)? {
            // The bus has not bound it yet; look again next time.
            return Ok(None);
        }
        let open_error = |message: String| ProbeError::Open {
            device: bdf.clone(),
            message,
        };
        let device =
            VfioDevice::open_kernel(&bdf, &self.vfio).map_err(|e| open_error(error_chain(&e)))?;
        let mut config = self.igbvf.clone();
        config.mtu = request.mtu;
        config.queues = request.queues.clamp(1, 2);
        config.mac = Some(request.mac);
        let (port, queues) =
            Igbvf::open(Arc::new(device), config).map_err(|e| open_error(error_chain(&e)))?;
        Ok(Some(AttachedVf {
            name: bdf,
            port: Arc::new(port),
            queues: queues
                .into_iter()
                .map(|q| Box::new(q) as Box<dyn VfQueue>)
                .collect(),
        }))
    }
}

/// An error and its sources, joined with ": " (for events and logs).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("bus/pci/slots/7")).unwrap();
        std::fs::write(root.join("bus/pci/slots/7/address"), "1d7c:00:02\n").unwrap();
        for f in [
            "1d7c:00:02.0",
            "1d7c:00:02.1",
            "1d7c:00:020.0",
            "0000:00:02.0",
        ] {
            std::fs::create_dir_all(root.join("bus/pci/devices").join(f)).unwrap();
        }
        dir
    }

    #[test]
    fn a_serial_resolves_to_the_functions_of_its_slot() {
        let dir = tree();
        let address = slot_address(dir.path(), 7).unwrap().unwrap();
        assert_eq!(address, "1d7c:00:02");
        assert_eq!(
            functions_in_slot(dir.path(), &address).unwrap(),
            vec!["1d7c:00:02.0", "1d7c:00:02.1"]
        );
        assert_eq!(slot_address(dir.path(), 8).unwrap(), None, "no slot yet");
    }

    #[test]
    fn a_garbled_slot_address_is_an_error_not_a_path() {
        let dir = tree();
        std::fs::write(dir.path().join("bus/pci/slots/7/address"), "../../etc\n").unwrap();
        assert!(matches!(
            slot_address(dir.path(), 7),
            Err(ProbeError::Sysfs { .. })
        ));
    }

    #[test]
    fn binding_writes_the_override_unbinds_and_probes() {
        let dir = tree();
        let root = dir.path();
        let dev = root.join("bus/pci/devices/1d7c:00:02.0");
        std::fs::create_dir_all(root.join("bus/pci/drivers/mlx5_core")).unwrap();
        std::fs::write(root.join("bus/pci/drivers/mlx5_core/unbind"), "").unwrap();
        std::os::unix::fs::symlink(root.join("bus/pci/drivers/mlx5_core"), dev.join("driver"))
            .unwrap();
        // A fake tree has no kernel behind it: the device stays on its old driver.
        let bound = bind_to_vfio_pci(root, "1d7c:00:02.0").unwrap();
        assert!(!bound);
        assert_eq!(
            std::fs::read_to_string(dev.join("driver_override")).unwrap(),
            "vfio-pci"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("bus/pci/drivers/mlx5_core/unbind")).unwrap(),
            "1d7c:00:02.0"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("bus/pci/drivers_probe")).unwrap(),
            "1d7c:00:02.0"
        );
        // Once bound, nothing is written again.
        std::fs::remove_file(dev.join("driver")).unwrap();
        std::fs::create_dir_all(root.join("bus/pci/drivers/vfio-pci")).unwrap();
        std::os::unix::fs::symlink(root.join("bus/pci/drivers/vfio-pci"), dev.join("driver"))
            .unwrap();
        std::fs::remove_file(root.join("bus/pci/drivers_probe")).unwrap();
        assert!(bind_to_vfio_pci(root, "1d7c:00:02.0").unwrap());
        assert!(!root.join("bus/pci/drivers_probe").exists());
    }
}
