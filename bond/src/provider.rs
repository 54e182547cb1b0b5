//! Finding, binding and opening the VF the host associated: [`VfProvider`].
//!
//! The host names a VF by the serial of its association (NVSP 128). Linux's pci-hyperv names
//! the VF's PCI slot with that serial in decimal, so `/sys/bus/pci/slots/<serial>/address`
//! holds the VF's `domain:bus:device` ([`slot_address`]); the functions of that device are the
//! `/sys/bus/pci/devices/<address>.<function>` entries ([`functions_in_slot`]). When there is
//! no such slot, the VF is the PCI function whose network interface has the synthetic NIC's
//! MAC ([`functions_with_mac`]): Linux's netvsc matches a VF the same way, serial first, then
//! MAC ([`find_vf`]).
//!
//! A function is only ever touched when hvnet has a driver for it: its `vendor` and `device`
//! must be in [`SUPPORTED_VFS`] (the igbvf driver's Intel 82576 and I350 VFs). Any other VF
//! (Mellanox ConnectX, MANA, ixgbevf, iavf, …) is left on its kernel driver, nothing is
//! written, and [`ProbeError::Unsupported`] says so; the port counts it and stays synthetic.
//! A supported function not yet bound to `vfio-pci` is bound to it ([`bind_to_vfio_pci`]:
//! `driver_override`, unbind from its current driver, `drivers_probe`). The port then checks
//! that the opened VF's MAC is the synthetic NIC's (Hyper-V gives a VF the MAC of its NIC),
//! and refuses it otherwise.
//!
//! [`VfioIgbvfProvider`] does all of that for igbvf VFs through VFIO; tests supply their own
//! provider over a software VF. `hvnet bind` and `hvnet status` use the same lookups.

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
    /// The associated VF is a device hvnet has no driver for: it was left on its kernel
    /// driver, untouched. It stays unsupported, so the port stops looking until the host
    /// associates a VF again.
    #[error(
        "VF {device} {id} has no hvnet driver; left on {}",
        driver.as_deref().unwrap_or("no driver")
    )]
    Unsupported {
        /// The PCI address.
        device: String,
        /// Its vendor and device IDs.
        id: PciId,
        /// The kernel driver it is bound to, if any.
        driver: Option<String>,
    },
}

/// A PCI function's vendor and device IDs, shown as `vendor:device` in hex (`8086:10ca`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PciId {
    /// The vendor ID.
    pub vendor: u16,
    /// The device ID.
    pub device: u16,
}

impl PciId {
    /// The hvnet driver for this device, if there is one ([`SUPPORTED_VFS`]).
    pub fn hvnet_driver(self) -> Option<&'static str> {
        SUPPORTED_VFS
            .iter()
            .find(|(id, _)| *id == self)
            .map(|(_, driver)| *driver)
    }
}

impl std::fmt::Display for PciId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

/// The VFs hvnet has a driver for, and the driver: Intel 82576 VF (8086:10ca) and I350 VF
/// (8086:1520), both driven by `vf::igbvf`. Every other function is left to its kernel driver.
pub const SUPPORTED_VFS: [(PciId, &str); 2] = [
    (
        PciId {
            vendor: 0x8086,
            device: 0x10ca,
        },
        "igbvf",
    ),
    (
        PciId {
            vendor: 0x8086,
            device: 0x1520,
        },
        "igbvf",
    ),
];

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

/// Whether `name` has the shape of a PCI function address (`dddd:bb:dd.f`, hex digits): the
/// names listed under `bus/pci/devices` that are worth reading, and never a path.
pub fn is_function_address(name: &str) -> bool {
    let Some((device, function)) = name.rsplit_once('.') else {
        return false;
    };
    !device.is_empty()
        && !function.is_empty()
        && name.len() <= 32
        && device.chars().all(|c| c.is_ascii_hexdigit() || c == ':')
        && function.chars().all(|c| c.is_ascii_hexdigit())
}

/// Reads a sysfs ID file (`0x8086`); `None` if it does not exist.
fn read_id(path: &Path) -> Result<Option<u16>, ProbeError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(sysfs_error(path)(e)),
    };
    let digits = text.trim();
    let digits = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
        .unwrap_or(digits);
    u16::from_str_radix(digits, 16)
        .map(Some)
        .map_err(|_| ProbeError::Sysfs {
            path: path.to_owned(),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not a PCI ID: {:?}", text.trim()),
            ),
        })
}

/// The vendor and device IDs of `bdf` (its sysfs `vendor` and `device` files), or `None` while
/// they are not there (a function still being added).
pub fn pci_id(sysfs_root: &Path, bdf: &str) -> Result<Option<PciId>, ProbeError> {
    let device = sysfs_root.join("bus/pci/devices").join(bdf);
    let Some(vendor) = read_id(&device.join("vendor"))? else {
        return Ok(None);
    };
    let Some(id) = read_id(&device.join("device"))? else {
        return Ok(None);
    };
    Ok(Some(PciId { vendor, device: id }))
}

/// A kernel network interface of a device, as sysfs shows it under `<device>/net/<name>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetInterface {
    /// The interface name.
    pub name: String,
    /// Its MAC (`address`), if readable.
    pub mac: Option<MacAddr>,
}

/// The kernel network interfaces under `device_dir/net`, sorted by name (none when the device
/// has no kernel network driver).
pub fn net_interfaces(device_dir: &Path) -> Vec<NetInterface> {
    let Ok(entries) = std::fs::read_dir(device_dir.join("net")) else {
        return Vec::new();
    };
    let mut found: Vec<NetInterface> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| !name.is_empty() && !name.contains('/'))
        .map(|name| {
            let mac = std::fs::read_to_string(device_dir.join("net").join(&name).join("address"))
                .ok()
                .and_then(|text| text.trim().parse().ok());
            NetInterface { name, mac }
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    found
}

/// The PCI functions with a network interface whose MAC is `mac`, sorted.
pub fn functions_with_mac(sysfs_root: &Path, mac: MacAddr) -> Result<Vec<String>, ProbeError> {
    let dir = sysfs_root.join("bus/pci/devices");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(sysfs_error(&dir)(e)),
    };
    let mut functions: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| is_function_address(name))
        .filter(|name| {
            net_interfaces(&dir.join(name))
                .iter()
                .any(|i| i.mac == Some(mac))
        })
        .collect();
    functions.sort();
    Ok(functions)
}

/// The serial of the PCI slot holding `bdf` (the slot whose `address` is its
/// `domain:bus:device`), if pci-hyperv made one: the reverse of [`slot_address`].
pub fn slot_of(sysfs_root: &Path, bdf: &str) -> Option<u32> {
    let (address, _) = bdf.rsplit_once('.')?;
    let entries = std::fs::read_dir(sysfs_root.join("bus/pci/slots")).ok()?;
    let mut serials: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.parse::<u32>().ok())
        .filter(|serial| {
            slot_address(sysfs_root, *serial)
                .ok()
                .flatten()
                .is_some_and(|a| a == address)
        })
        .collect();
    serials.sort_unstable();
    serials.into_iter().next()
}

/// How [`find_vf`] found a VF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfMatch {
    /// In the PCI slot named by the association's serial.
    Slot,
    /// By its network interface's MAC (there was no slot for the serial).
    Mac,
}

/// The PCI function of the VF with association serial `serial` for the synthetic NIC whose
/// MAC is `mac`, as Linux's netvsc matches them: the first function of slot `serial` if that
/// slot exists (`None` while the function has not appeared), otherwise the first function
/// whose network interface has `mac`.
pub fn find_vf(
    sysfs_root: &Path,
    serial: u32,
    mac: MacAddr,
) -> Result<Option<(String, VfMatch)>, ProbeError> {
    if let Some(address) = slot_address(sysfs_root, serial)? {
        return Ok(functions_in_slot(sysfs_root, &address)?
            .into_iter()
            .next()
            .map(|bdf| (bdf, VfMatch::Slot)));
    }
    Ok(functions_with_mac(sysfs_root, mac)?
        .into_iter()
        .next()
        .map(|bdf| (bdf, VfMatch::Mac)))
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
/// Writes nothing when `vfio-pci` is not loaded (the override would leave the function with
/// no driver at all).
pub fn bind_to_vfio_pci(sysfs_root: &Path, bdf: &str) -> Result<bool, ProbeError> {
    if bound_driver(sysfs_root, bdf).as_deref() == Some("vfio-pci") {
        return Ok(true);
    }
    let vfio = sysfs_root.join("bus/pci/drivers/vfio-pci");
    if !vfio.is_dir() {
        return Err(ProbeError::Sysfs {
            path: vfio,
            source: io::Error::new(
                io::ErrorKind::NotFound,
                "vfio-pci is not loaded (modprobe vfio-pci)",
            ),
        });
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

/// Finds VFs in sysfs (slot, then MAC), binds those the igbvf driver supports
/// ([`SUPPORTED_VFS`]) to `vfio-pci`, opens them through VFIO and drives them with the igbvf
/// driver. Any other VF is reported ([`ProbeError::Unsupported`]) and left alone.
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
        let Some((bdf, matched)) = find_vf(root, serial, request.mac)? else {
            return Ok(None);
        };
        let Some(id) = pci_id(root, &bdf)? else {
            // Its ID files are not there yet; look again next time.
            return Ok(None);
        };
        if id.hvnet_driver().is_none() {
            // Nothing is written: the device stays with its kernel driver.
            let error = ProbeError::Unsupported {
                device: bdf.clone(),
                id,
                driver: bound_driver(root, &bdf),
            };
            tracing::warn!(target: "hvnet::bond", serial, "{error}");
            return Err(error);
        }
        tracing::debug!(target: "hvnet::bond", serial, device = bdf, ?matched, %id, "found the VF");
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
        // Without vfio-pci nothing is written: the override would leave it driverless.
        assert!(matches!(
            bind_to_vfio_pci(root, "1d7c:00:02.0"),
            Err(ProbeError::Sysfs { .. })
        ));
        assert!(!dev.join("driver_override").exists());
        std::fs::create_dir_all(root.join("bus/pci/drivers/vfio-pci")).unwrap();
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
        std::os::unix::fs::symlink(root.join("bus/pci/drivers/vfio-pci"), dev.join("driver"))
            .unwrap();
        std::fs::remove_file(root.join("bus/pci/drivers_probe")).unwrap();
        assert!(bind_to_vfio_pci(root, "1d7c:00:02.0").unwrap());
        assert!(!root.join("bus/pci/drivers_probe").exists());
    }

    /// A function directory with its IDs, a driver link and, optionally, a network interface.
    fn function(root: &Path, bdf: &str, id: (&str, &str), driver: &str, net: Option<(&str, &str)>) {
        let dev = root.join("bus/pci/devices").join(bdf);
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("vendor"), format!("{}\n", id.0)).unwrap();
        std::fs::write(dev.join("device"), format!("{}\n", id.1)).unwrap();
        let drv = root.join("bus/pci/drivers").join(driver);
        std::fs::create_dir_all(&drv).unwrap();
        std::fs::write(drv.join("unbind"), "").unwrap();
        std::os::unix::fs::symlink(&drv, dev.join("driver")).unwrap();
        if let Some((ifname, mac)) = net {
            let dir = dev.join("net").join(ifname);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
        }
    }

    /// Every file under `root` with its contents (links not followed).
    fn snapshot(root: &Path) -> Vec<(PathBuf, Option<String>)> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.is_dir() {
                    stack.push(path);
                } else if meta.is_file() {
                    out.push((path.clone(), std::fs::read_to_string(&path).ok()));
                } else {
                    out.push((path, None));
                }
            }
        }
        out.sort();
        out
    }

    const MAC: MacAddr = MacAddr([0x00, 0x15, 0x5d, 0x01, 0x02, 0x03]);

    fn request() -> VfRequest {
        VfRequest {
            mac: MAC,
            mtu: 1500,
            queues: 1,
        }
    }

    fn provider(root: &Path) -> VfioIgbvfProvider {
        let mut provider = VfioIgbvfProvider::no_iommu();
        provider.vfio.sysfs_root = root.to_path_buf();
        provider.vfio.dev_root = root.join("dev");
        provider
    }

    #[test]
    fn only_igbvf_ids_have_an_hvnet_driver() {
        let id = |vendor, device| PciId { vendor, device };
        assert_eq!(id(0x8086, 0x10ca).hvnet_driver(), Some("igbvf"));
        assert_eq!(id(0x8086, 0x1520).hvnet_driver(), Some("igbvf"));
        for (vendor, device) in [
            (0x15b3, 0x1016), // ConnectX-4 Lx VF (mlx5)
            (0x15b3, 0x101a), // ConnectX-5 VF (mlx5)
            (0x1414, 0x00ba), // MANA VF
            (0x8086, 0x10ed), // 82599 VF (ixgbevf)
            (0x8086, 0x154c), // XL710 VF (iavf)
            (0x8086, 0x10c9), // the 82576 PF itself
        ] {
            assert_eq!(
                id(vendor, device).hvnet_driver(),
                None,
                "{vendor:04x}:{device:04x}"
            );
        }
        assert_eq!(id(0x15b3, 0x101a).to_string(), "15b3:101a");
    }

    #[test]
    fn pci_ids_are_read_from_sysfs_and_garbled_ones_are_errors() {
        let dir = tree();
        let root = dir.path();
        function(root, "1d7c:00:02.0", ("0x8086", "0x10ca"), "igbvf", None);
        assert_eq!(
            pci_id(root, "1d7c:00:02.0").unwrap(),
            Some(PciId {
                vendor: 0x8086,
                device: 0x10ca
            })
        );
        assert_eq!(
            pci_id(root, "1d7c:00:02.1").unwrap(),
            None,
            "no ID files yet"
        );
        std::fs::write(root.join("bus/pci/devices/1d7c:00:02.0/device"), "0xzz\n").unwrap();
        assert!(matches!(
            pci_id(root, "1d7c:00:02.0"),
            Err(ProbeError::Sysfs { .. })
        ));
    }

    #[test]
    fn the_slot_wins_over_the_mac_and_the_mac_is_used_when_there_is_no_slot() {
        let dir = tree();
        let root = dir.path();
        // The slot's function, and another function with the NIC's MAC.
        function(root, "1d7c:00:02.0", ("0x8086", "0x10ca"), "igbvf", None);
        function(
            root,
            "5a2b:00:02.0",
            ("0x15b3", "0x1016"),
            "mlx5_core",
            Some(("enP23083s1", "00:15:5d:01:02:03")),
        );
        assert_eq!(
            find_vf(root, 7, MAC).unwrap(),
            Some(("1d7c:00:02.0".into(), VfMatch::Slot))
        );
        assert_eq!(
            find_vf(root, 9, MAC).unwrap(),
            Some(("5a2b:00:02.0".into(), VfMatch::Mac)),
            "no slot 9: the function with the MAC"
        );
        assert_eq!(
            find_vf(root, 9, MacAddr([2, 0, 0, 0, 0, 1])).unwrap(),
            None,
            "no slot and no function with that MAC"
        );
        // A slot whose function has not appeared is waited for, not replaced by a MAC match.
        std::fs::create_dir_all(root.join("bus/pci/slots/11")).unwrap();
        std::fs::write(root.join("bus/pci/slots/11/address"), "7777:00:02\n").unwrap();
        assert_eq!(find_vf(root, 11, MAC).unwrap(), None);
        assert_eq!(slot_of(root, "1d7c:00:02.0"), Some(7));
        assert_eq!(slot_of(root, "5a2b:00:02.0"), None);
        assert_eq!(
            functions_with_mac(root, MAC).unwrap(),
            vec!["5a2b:00:02.0".to_string()]
        );
    }

    #[test]
    fn an_unsupported_vf_is_reported_and_nothing_is_written() {
        let dir = tree();
        let root = dir.path();
        std::fs::remove_dir_all(root.join("bus/pci/devices")).unwrap();
        function(
            root,
            "1d7c:00:02.0",
            ("0x15b3", "0x101a"),
            "mlx5_core",
            Some(("enP7548s1", "00:15:5d:01:02:03")),
        );
        let before = snapshot(root);
        let err = provider(root).probe(7, &request()).unwrap_err();
        assert!(
            matches!(&err, ProbeError::Unsupported { device, id, driver }
                if device == "1d7c:00:02.0"
                    && id.to_string() == "15b3:101a"
                    && driver.as_deref() == Some("mlx5_core")),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
            "VF 1d7c:00:02.0 15b3:101a has no hvnet driver; left on mlx5_core"
        );
        assert_eq!(snapshot(root), before, "the provider wrote to sysfs");
        // Found by MAC (no slot) it is refused the same way.
        std::fs::remove_dir_all(root.join("bus/pci/slots")).unwrap();
        let before = snapshot(root);
        assert!(matches!(
            provider(root).probe(7, &request()),
            Err(ProbeError::Unsupported { .. })
        ));
        assert_eq!(snapshot(root), before);
    }

    #[test]
    fn a_supported_vf_found_by_mac_is_bound_to_vfio_pci() {
        let dir = tree();
        let root = dir.path();
        std::fs::remove_dir_all(root.join("bus/pci/slots")).unwrap();
        function(
            root,
            "0000:00:10.0",
            ("0x8086", "0x1520"),
            "igbvf",
            Some(("eth1", "00:15:5d:01:02:03")),
        );
        std::fs::create_dir_all(root.join("bus/pci/drivers/vfio-pci")).unwrap();
        // A fake tree has no kernel behind it: the function stays on igbvf, so the provider
        // waits (Ok(None)) after writing what binding takes.
        assert!(provider(root).probe(7, &request()).unwrap().is_none());
        let dev = root.join("bus/pci/devices/0000:00:10.0");
        assert_eq!(
            std::fs::read_to_string(dev.join("driver_override")).unwrap(),
            "vfio-pci"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("bus/pci/drivers/igbvf/unbind")).unwrap(),
            "0000:00:10.0"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("bus/pci/drivers_probe")).unwrap(),
            "0000:00:10.0"
        );
    }

    #[test]
    fn function_addresses_are_recognised_and_paths_are_not() {
        for good in ["0000:00:10.0", "1d7c:00:02.1", "abcd:ef:1f.7"] {
            assert!(is_function_address(good), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "0000:00:10.",
            ".0",
            "../x.0",
            "0000:00:10.0/..",
            "a b.0",
        ] {
            assert!(!is_function_address(bad), "{bad}");
        }
    }
}
