//! The sysfs tree a Hyper-V guest's kernel shows a `uio_hv_generic` user, written under a
//! directory: what DPDK's vmbus bus driver and hvnet's uio backend read
//! (`reference/dpdk-netvsc-client.md` §1.1).
//!
//! ```text
//! bus/vmbus/devices/<instance>/class_id            {f8615163-df3e-46c5-913f-f2d2f965ed0e}
//!                              device_id           {<instance>}
//!                              id                  the primary channel's relid
//!                              monitor_id          its monitor id
//!                              channels/<relid>/{subchannel_id 0, monitor_id}
//!                              uio/uioN/maps/mapK/{name,size,offset,addr}
//! class/uio/uioN -> ../../bus/vmbus/devices/<instance>/uio/uioN
//! dev/uioN                                          the node (a unix socket, see `uio`)
//! ```

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use netvsc::vmbus::NETVSC_CLASS_ID;

use super::uio::UioMap;

/// What the tree says about the device.
#[derive(Clone, Debug)]
pub struct DeviceEntry {
    /// The instance GUID (lower case, no braces).
    pub instance: String,
    /// The primary channel's relid.
    pub relid: u32,
    /// The primary channel's monitor id.
    pub monitor_id: u8,
    /// The uio device's name (`uio0`).
    pub uio: String,
    /// The uio maps, in order.
    pub maps: Vec<UioMap>,
}

/// Paths of a published tree.
#[derive(Clone, Debug)]
pub struct Tree {
    /// The root (`--sysfs-root` of a client).
    pub root: PathBuf,
    /// The device's directory under `bus/vmbus/devices`.
    pub device_dir: PathBuf,
    /// Where the node goes (`dev/uioN`; `--dev-root` is its directory).
    pub node: PathBuf,
}

fn write(path: &Path, text: &str) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, text)
}

impl Tree {
    /// Writes `device`'s entries under `root` (which must not hold a tree already).
    pub fn publish(root: &Path, device: &DeviceEntry) -> io::Result<Self> {
        let devices = root.join("bus/vmbus/devices");
        let device_dir = devices.join(&device.instance);
        if device_dir.exists() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists: another sim-host serves this root, or one did not clean up",
                    device_dir.display()
                ),
            ));
        }
        write(
            &device_dir.join("class_id"),
            &format!("{{{NETVSC_CLASS_ID}}}\n"),
        )?;
        write(
            &device_dir.join("device_id"),
            &format!("{{{}}}\n", device.instance),
        )?;
        write(&device_dir.join("id"), &format!("{}\n", device.relid))?;
        write(
            &device_dir.join("monitor_id"),
            &format!("{}\n", device.monitor_id),
        )?;
        let primary = device_dir.join("channels").join(device.relid.to_string());
        write(&primary.join("subchannel_id"), "0\n")?;
        write(
            &primary.join("monitor_id"),
            &format!("{}\n", device.monitor_id),
        )?;
        let uio_dir = device_dir.join("uio").join(&device.uio);
        for (k, map) in device.maps.iter().enumerate() {
            let dir = uio_dir.join("maps").join(format!("map{k}"));
            write(&dir.join("name"), &format!("{}\n", map.name))?;
            write(&dir.join("size"), &format!("0x{:016x}\n", map.size))?;
            write(&dir.join("offset"), "0x0\n")?;
            write(&dir.join("addr"), &format!("0x{:016x}\n", map.offset))?;
        }
        let class = root.join("class/uio");
        fs::create_dir_all(&class)?;
        let link = class.join(&device.uio);
        let target = Path::new("../../bus/vmbus/devices")
            .join(&device.instance)
            .join("uio")
            .join(&device.uio);
        std::os::unix::fs::symlink(target, &link)?;
        fs::create_dir_all(root.join("dev"))?;
        Ok(Self {
            root: root.to_path_buf(),
            device_dir,
            node: root.join("dev").join(&device.uio),
        })
    }

    /// Removes what [`publish`](Self::publish) wrote (the node is removed by its server).
    pub fn remove(&self, device: &DeviceEntry) {
        let _ = fs::remove_file(self.root.join("class/uio").join(&device.uio));
        let _ = fs::remove_dir_all(&self.device_dir);
        // Directories left empty go too; ones the caller put things in stay.
        for dir in [
            "class/uio",
            "class",
            "bus/vmbus/devices",
            "bus/vmbus",
            "bus",
            "dev",
        ] {
            let _ = fs::remove_dir(self.root.join(dir));
        }
    }
}
