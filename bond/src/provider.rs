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
//!
//! Every VF, whatever its device, also has a kernel network interface while its kernel driver
//! keeps it. [`KernelVfProvider`] finds that interface ([`find_vf_interface`]: the slot's
//! functions' `net/` entries first, then, with no slot, a function or an interface under
//! `class/net` with the NIC's MAC, skipping TUN/TAP devices, synthetic NICs (`hv_netvsc`) and
//! interfaces stacked on another) and opens it with `vf::kernel` — over AF_XDP (an XDP
//! program redirecting to one socket per queue, zero-copy where the driver has it) or, as the
//! portable fallback, a packet socket — writing nothing to sysfs. The interfaces are read from a sysfs root of their own
//! (`net_sysfs_root`): the one mounted for the port's network namespace, which need not be the
//! tree the PCI slots are read from (the simulated host publishes slots but no `class/net`).
//! [`AutoVfProvider`] picks per function: hvnet's VFIO driver for [`SUPPORTED_VFS`], the
//! kernel backend (AF_XDP, falling back to a packet socket where AF_XDP cannot be set up) for
//! everything else.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use packet::MacAddr;
use vf::igbvf::{Igbvf, IgbvfConfig};
use vf::kernel::{KernelVf, KernelVfConfig, XdpConfig, XdpProgram};
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

/// Whether interface `name` under `<net_sysfs_root>/class/net` may be a VF: not a TUN/TAP
/// device (it has `tun_flags`), not a synthetic NIC (driven by `hv_netvsc`), and not stacked
/// on another interface (a `lower_*` link: a VLAN, macvlan or bond on top of the VF carries
/// its MAC too).
fn may_be_vf(dir: &Path) -> bool {
    if dir.join("tun_flags").exists() {
        return false;
    }
    let driver = std::fs::read_link(dir.join("device/driver"))
        .ok()
        .and_then(|t| t.file_name()?.to_str().map(str::to_owned));
    if driver.as_deref() == Some("hv_netvsc") {
        return false;
    }
    let stacked = std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .any(|name| name.starts_with("lower_"))
    });
    !stacked
}

/// The kernel network interfaces (`<net_sysfs_root>/class/net`) whose MAC is `mac` and that
/// may be a VF (not TUN/TAP, not driven by `hv_netvsc`, not stacked on another interface),
/// sorted by name. `net_sysfs_root` is the sysfs of the network namespace the port runs in.
pub fn interfaces_with_mac(net_sysfs_root: &Path, mac: MacAddr) -> Result<Vec<String>, ProbeError> {
    let dir = net_sysfs_root.join("class/net");
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(sysfs_error(&dir)(e)),
    };
    let mut found: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| packet::netdev::check_ifname(name).is_ok())
        .filter(|name| {
            let path = dir.join(name);
            std::fs::read_to_string(path.join("address"))
                .ok()
                .and_then(|text| text.trim().parse::<MacAddr>().ok())
                == Some(mac)
                && may_be_vf(&path)
        })
        .collect();
    found.sort();
    Ok(found)
}

/// A VF's kernel interface, as [`find_vf_interface`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VfInterface {
    /// The interface's name.
    pub ifname: String,
    /// Its PCI function, when it has one.
    pub function: Option<String>,
    /// How it was found.
    pub matched: VfMatch,
}

/// The kernel interface of the VF with association serial `serial` for the synthetic NIC whose
/// MAC is `mac`, in Linux's order: if slot `serial` exists (under `pci_sysfs_root`), an
/// interface of its functions (the one with `mac` if several; `None` while none has appeared);
/// otherwise the first PCI function whose interface has `mac`; otherwise the first interface
/// under `<net_sysfs_root>/class/net` with `mac` that may be a VF ([`interfaces_with_mac`]).
pub fn find_vf_interface(
    pci_sysfs_root: &Path,
    net_sysfs_root: &Path,
    serial: u32,
    mac: MacAddr,
) -> Result<Option<VfInterface>, ProbeError> {
    let pick = |function: &str| {
        let interfaces = net_interfaces(&pci_sysfs_root.join("bus/pci/devices").join(function));
        let best = interfaces
            .iter()
            .find(|i| i.mac == Some(mac))
            .or(interfaces.first())
            .map(|i| i.name.clone());
        best.filter(|name| packet::netdev::check_ifname(name).is_ok())
    };
    if let Some(address) = slot_address(pci_sysfs_root, serial)? {
        return Ok(functions_in_slot(pci_sysfs_root, &address)?
            .into_iter()
            .find_map(|function| {
                pick(&function).map(|ifname| VfInterface {
                    ifname,
                    function: Some(function),
                    matched: VfMatch::Slot,
                })
            }));
    }
    if let Some((function, ifname)) = functions_with_mac(pci_sysfs_root, mac)?
        .into_iter()
        .find_map(|function| pick(&function).map(|ifname| (function, ifname)))
    {
        return Ok(Some(VfInterface {
            ifname,
            function: Some(function),
            matched: VfMatch::Mac,
        }));
    }
    Ok(interfaces_with_mac(net_sysfs_root, mac)?
        .into_iter()
        .next()
        .map(|ifname| VfInterface {
            function: std::fs::read_link(
                net_sysfs_root
                    .join("class/net")
                    .join(&ifname)
                    .join("device"),
            )
            .ok()
            .and_then(|t| t.file_name()?.to_str().map(str::to_owned))
            .filter(|name| is_function_address(name)),
            ifname,
            matched: VfMatch::Mac,
        }))
}

/// Finds the VF's kernel interface ([`find_vf_interface`]) and opens it with the kernel
/// backend (`vf::kernel`: a packet socket on the interface, the device left to its kernel
/// driver). Works for any VF with a netdev (mlx5, MANA, ixgbevf, iavf, igbvf on its kernel
/// driver) and for an interface with the NIC's MAC and no PCI function (a veth in tests).
/// Writes nothing to sysfs.
#[derive(Clone, Debug)]
pub struct KernelVfProvider {
    /// Where the PCI slots and functions are (`/sys`; the simulated host's published tree).
    pub pci_sysfs_root: PathBuf,
    /// Where the network interfaces of the port's namespace are (`/sys`, whose `class/net`
    /// lists the interfaces of the namespace that mounted it).
    pub net_sysfs_root: PathBuf,
    /// Backend settings; `mtu` and `mac` are taken from the port's request.
    pub kernel: KernelVfConfig,
    /// AF_XDP's settings (`queues` is taken from the port's request); `None` for a packet
    /// socket.
    pub xdp: Option<XdpConfig>,
    /// With `xdp`: when AF_XDP cannot be set up (a kernel without XDP sockets, no CAP_BPF),
    /// open the VF with a packet socket instead of failing.
    pub packet_fallback: bool,
    /// The XDP program, loaded at the first VF and kept for the next ones (shared by clones).
    pub xdp_program: XdpProgramCache,
}

/// The XDP program a [`KernelVfProvider`] loaded, kept for every VF after the first: loading
/// needs CAP_BPF and CAP_NET_ADMIN, attaching a loaded one needs nothing, so a VF that arrives
/// later is served with CAP_NET_RAW alone (for its sockets).
#[derive(Clone, Debug, Default)]
pub struct XdpProgramCache(Arc<parking_lot::Mutex<Option<Arc<XdpProgram>>>>);

impl XdpProgramCache {
    /// The program, loaded now if it was not before.
    pub fn get(&self) -> io::Result<Arc<XdpProgram>> {
        let mut slot = self.0.lock();
        if let Some(program) = slot.as_ref() {
            return Ok(program.clone());
        }
        let program = Arc::new(XdpProgram::load()?);
        *slot = Some(program.clone());
        Ok(program)
    }
}

impl Default for KernelVfProvider {
    /// `/sys` for both roots, the backend's defaults: a packet socket.
    fn default() -> Self {
        Self {
            pci_sysfs_root: PathBuf::from("/sys"),
            net_sysfs_root: PathBuf::from("/sys"),
            kernel: KernelVfConfig::default(),
            xdp: None,
            packet_fallback: false,
            xdp_program: XdpProgramCache::default(),
        }
    }
}

impl KernelVfProvider {
    /// AF_XDP with its defaults (auto mode), falling back to a packet socket.
    pub fn afxdp() -> Self {
        Self {
            xdp: Some(XdpConfig::default()),
            packet_fallback: true,
            ..Self::default()
        }
    }

    /// Opens `found` for `request`.
    fn open(&self, found: VfInterface, request: &VfRequest) -> Result<AttachedVf, ProbeError> {
        let name = match &found.function {
            Some(function) => format!("{function} ({})", found.ifname),
            None => found.ifname.clone(),
        };
        let config = KernelVfConfig {
            mtu: request.mtu,
            mac: request.mac,
            ..self.kernel.clone()
        };
        let open_error = |e: &dyn std::error::Error| ProbeError::Open {
            device: name.clone(),
            message: error_chain(e),
        };
        if let Some(xdp) = &self.xdp {
            let xdp = XdpConfig {
                queues: request.queues.max(1),
                ..xdp.clone()
            };
            let opened = self
                .xdp_program
                .get()
                .map_err(|source| vf::kernel::KernelVfError::Interface {
                    ifname: found.ifname.clone(),
                    op: "setting up XDP",
                    source,
                })
                .and_then(|program| {
                    KernelVf::open_xdp_with(&found.ifname, config.clone(), xdp, program)
                });
            match opened {
                Ok((port, queues)) => {
                    let transport = port
                        .xdp_info()
                        .map_or_else(String::new, |info| info.describe());
                    return Ok(AttachedVf {
                        name: format!("{name} [AF_XDP: {transport}]"),
                        port: Arc::new(port),
                        queues: queues
                            .into_iter()
                            .map(|q| Box::new(q) as Box<dyn VfQueue>)
                            .collect(),
                    });
                }
                Err(e) if self.packet_fallback => tracing::warn!(
                    target: "hvnet::bond",
                    device = name,
                    error = error_chain(&e),
                    "AF_XDP cannot be set up: a packet socket instead"
                ),
                Err(e) => return Err(open_error(&e)),
            }
        }
        let (port, queues) = KernelVf::open(&found.ifname, config).map_err(|e| open_error(&e))?;
        Ok(AttachedVf {
            name: format!("{name} [AF_PACKET]"),
            port: Arc::new(port),
            queues: queues
                .into_iter()
                .map(|q| Box::new(q) as Box<dyn VfQueue>)
                .collect(),
        })
    }
}

impl VfProvider for KernelVfProvider {
    fn probe(&self, serial: u32, request: &VfRequest) -> Result<Option<AttachedVf>, ProbeError> {
        let Some(found) = find_vf_interface(
            &self.pci_sysfs_root,
            &self.net_sysfs_root,
            serial,
            request.mac,
        )?
        else {
            return Ok(None);
        };
        tracing::debug!(
            target: "hvnet::bond",
            serial,
            ifname = found.ifname,
            function = found.function,
            matched = ?found.matched,
            "found the VF's interface"
        );
        self.open(found, request).map(Some)
    }
}

/// Which backend [`AutoVfProvider`] chose for a VF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfBackend {
    /// hvnet's own driver through VFIO (a function in [`SUPPORTED_VFS`]).
    Vfio,
    /// The kernel's driver, frames over AF_XDP or a packet socket on its interface.
    Kernel,
}

/// hvnet's own VFIO driver for the functions it has one for ([`SUPPORTED_VFS`]), the kernel
/// backend ([`KernelVfProvider`]) for any other function with a kernel interface, and for an
/// interface with the NIC's MAC and no PCI function. A function that is neither (no hvnet
/// driver and no interface yet) is waited for, as a VF whose driver is still probing is.
#[derive(Clone, Debug)]
pub struct AutoVfProvider {
    /// The VFIO provider; its `vfio.sysfs_root` is where the PCI slots and functions are
    /// looked for (`kernel.pci_sysfs_root` is not used).
    pub vfio: VfioIgbvfProvider,
    /// The kernel provider (its `net_sysfs_root` and backend settings).
    pub kernel: KernelVfProvider,
}

impl AutoVfProvider {
    /// No-IOMMU VFIO for hvnet's drivers, AF_XDP (or a packet socket where AF_XDP cannot be
    /// set up) for the rest, `/sys` for both.
    pub fn new() -> Self {
        Self {
            vfio: VfioIgbvfProvider::no_iommu(),
            kernel: KernelVfProvider::afxdp(),
        }
    }

    /// The backend for the VF with association serial `serial` and the function it is, if
    /// it has appeared: [`VfBackend::Vfio`] for a function hvnet has a driver for, else the
    /// kernel's.
    pub fn choose(
        &self,
        serial: u32,
        mac: MacAddr,
    ) -> Result<Option<(VfBackend, Option<String>)>, ProbeError> {
        let root = &self.vfio.vfio.sysfs_root;
        let function = match find_vf(root, serial, mac)? {
            Some((bdf, _)) => Some(bdf),
            None if slot_address(root, serial)?.is_some() => return Ok(None),
            None => None,
        };
        let Some(bdf) = function else {
            // No PCI function: only an interface with the MAC can be the VF.
            return Ok(Some((VfBackend::Kernel, None)));
        };
        let Some(id) = pci_id(root, &bdf)? else {
            return Ok(None);
        };
        let backend = if id.hvnet_driver().is_some() {
            VfBackend::Vfio
        } else {
            VfBackend::Kernel
        };
        Ok(Some((backend, Some(bdf))))
    }
}

impl Default for AutoVfProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl VfProvider for AutoVfProvider {
    fn probe(&self, serial: u32, request: &VfRequest) -> Result<Option<AttachedVf>, ProbeError> {
        let Some((backend, function)) = self.choose(serial, request.mac)? else {
            return Ok(None);
        };
        match backend {
            VfBackend::Vfio => self.vfio.probe(serial, request),
            VfBackend::Kernel => {
                let kernel = KernelVfProvider {
                    pci_sysfs_root: self.vfio.vfio.sysfs_root.clone(),
                    ..self.kernel.clone()
                };
                let Some(found) = find_vf_interface(
                    &kernel.pci_sysfs_root,
                    &kernel.net_sysfs_root,
                    serial,
                    request.mac,
                )?
                else {
                    tracing::debug!(
                        target: "hvnet::bond",
                        serial,
                        function,
                        "the VF has no hvnet driver and no interface yet"
                    );
                    return Ok(None);
                };
                tracing::debug!(
                    target: "hvnet::bond",
                    serial,
                    ifname = found.ifname,
                    function = found.function,
                    matched = ?found.matched,
                    "found the VF: the kernel backend"
                );
                kernel.open(found, request).map(Some)
            }
        }
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

    /// An interface under `<root>/class/net` with `mac`, and what makes it special.
    fn class_net(root: &Path, name: &str, mac: &str, extra: &[&str]) -> PathBuf {
        let dir = root.join("class/net").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
        for what in extra {
            match *what {
                "tap" => std::fs::write(dir.join("tun_flags"), "0x1002\n").unwrap(),
                "netvsc" => {
                    let drv = root.join("bus/vmbus/drivers/hv_netvsc");
                    std::fs::create_dir_all(&drv).unwrap();
                    std::fs::create_dir_all(dir.join("device")).unwrap();
                    std::os::unix::fs::symlink(&drv, dir.join("device/driver")).unwrap();
                }
                lower => std::fs::create_dir_all(dir.join(lower)).unwrap(),
            }
        }
        dir
    }

    #[test]
    fn an_interface_with_the_mac_is_found_skipping_taps_netvsc_and_stacked_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mac = "00:15:5d:01:02:03";
        class_net(root, "a-tap", mac, &["tap"]);
        class_net(root, "b-netvsc", mac, &["netvsc"]);
        class_net(root, "c-vlan", mac, &["lower_vf1"]);
        class_net(root, "other", "02:00:00:00:00:01", &[]);
        assert_eq!(
            interfaces_with_mac(root, MAC).unwrap(),
            Vec::<String>::new()
        );
        class_net(root, "vf1", mac, &[]);
        class_net(root, "vf0", mac, &[]);
        assert_eq!(interfaces_with_mac(root, MAC).unwrap(), vec!["vf0", "vf1"]);
        // No slot and no PCI function with the MAC: the interface, without a function.
        assert_eq!(
            find_vf_interface(root, root, 7, MAC).unwrap(),
            Some(VfInterface {
                ifname: "vf0".into(),
                function: None,
                matched: VfMatch::Mac,
            })
        );
        let none = tempfile::tempdir().unwrap();
        assert_eq!(
            interfaces_with_mac(none.path(), MAC).unwrap(),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_slots_function_interface_wins_and_is_waited_for() {
        let dir = tree();
        let root = dir.path();
        let net = tempfile::tempdir().unwrap();
        class_net(net.path(), "veth-mac", "00:15:5d:01:02:03", &[]);
        // Slot 7 exists but its function has no interface yet: wait, never the MAC match.
        assert_eq!(find_vf_interface(root, net.path(), 7, MAC).unwrap(), None);
        function(
            root,
            "1d7c:00:02.1",
            ("0x15b3", "0x101a"),
            "mlx5_core",
            Some(("enP7548s1", "00:15:5d:01:02:03")),
        );
        // A second interface of the function (a representor, say) without the MAC is passed.
        let rep = root.join("bus/pci/devices/1d7c:00:02.1/net/aaa-rep");
        std::fs::create_dir_all(&rep).unwrap();
        std::fs::write(rep.join("address"), "02:00:00:00:00:02\n").unwrap();
        assert_eq!(
            find_vf_interface(root, net.path(), 7, MAC).unwrap(),
            Some(VfInterface {
                ifname: "enP7548s1".into(),
                function: Some("1d7c:00:02.1".into()),
                matched: VfMatch::Slot,
            })
        );
        // Without the slot, the PCI function with the MAC comes before class/net.
        std::fs::remove_dir_all(root.join("bus/pci/slots")).unwrap();
        assert_eq!(
            find_vf_interface(root, net.path(), 7, MAC)
                .unwrap()
                .map(|f| (f.ifname, f.matched)),
            Some(("enP7548s1".into(), VfMatch::Mac))
        );
    }

    #[test]
    fn auto_picks_vfio_for_hvnets_drivers_and_the_kernel_for_the_rest() {
        let dir = tree();
        let root = dir.path();
        let mut auto = AutoVfProvider::new();
        auto.vfio.vfio.sysfs_root = root.to_path_buf();
        auto.vfio.vfio.dev_root = root.join("dev");
        auto.kernel.net_sysfs_root = root.join("net-ns");
        // The slot's function has no IDs yet: wait.
        assert_eq!(auto.choose(7, MAC).unwrap(), None);
        function(root, "1d7c:00:02.0", ("0x8086", "0x10ca"), "igbvf", None);
        assert_eq!(
            auto.choose(7, MAC).unwrap(),
            Some((VfBackend::Vfio, Some("1d7c:00:02.0".into())))
        );
        std::fs::write(root.join("bus/pci/devices/1d7c:00:02.0/device"), "0x101a\n").unwrap();
        std::fs::write(root.join("bus/pci/devices/1d7c:00:02.0/vendor"), "0x15b3\n").unwrap();
        assert_eq!(
            auto.choose(7, MAC).unwrap(),
            Some((VfBackend::Kernel, Some("1d7c:00:02.0".into())))
        );
        // A kernel VF without an interface yet is waited for; nothing is written.
        let before = snapshot(root);
        assert!(auto.probe(7, &request()).unwrap().is_none());
        assert_eq!(snapshot(root), before);
        // No slot, no function with the MAC: the kernel backend, on an interface if any.
        assert_eq!(
            auto.choose(9, MAC).unwrap(),
            Some((VfBackend::Kernel, None))
        );
        assert!(auto.probe(9, &request()).unwrap().is_none());
        // An interface that sysfs lists but the namespace does not have fails to open,
        // named.
        class_net(
            &root.join("net-ns"),
            "hvnet-gone0",
            "00:15:5d:01:02:03",
            &[],
        );
        let before = snapshot(root);
        let err = auto.probe(9, &request()).unwrap_err();
        assert!(
            matches!(&err, ProbeError::Open { device, .. } if device == "hvnet-gone0"),
            "{err:?}"
        );
        assert_eq!(snapshot(root), before);
    }
}
