//! Reading the sysfs view of VMBus devices bound to `uio_hv_generic`.
//!
//! Paths (under a configurable root, `/sys` on a real guest):
//! - `bus/vmbus/devices/<instance>/{class_id,device_id,id,monitor_id}` and `uio/uioN/`;
//! - `bus/vmbus/devices/<instance>/channels/<relid>/{subchannel_id,monitor_id,ring}`;
//! - `class/uio/uioN/maps/mapK/{name,size,offset,addr}`.
//!
//! Everything is parsed strictly; a missing or garbled file is a [`DeviceError`] naming it, and
//! one that the user may not read (`EACCES`/`EPERM`) says that root is needed.
//! A missing `monitor_id` means the channel is not monitored (the kernel hides the file).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::vmbus::channel::DeviceError;

/// A VMBus GUID (a device's instance or class), in the form sysfs prints inside braces:
/// lowercase, 32 hex digits grouped 8-4-4-4-12.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Guid(String);

impl Guid {
    /// The GUID as sysfs names device directories: lowercase, without braces.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text that is not a GUID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected a GUID of 32 hex digits grouped 8-4-4-4-12, braces optional \
     (e.g. f8615163-df3e-46c5-913f-f2d2f965ed0e), found {text:?}"
)]
pub struct GuidError {
    /// The text that was given.
    pub text: String,
}

impl FromStr for Guid {
    type Err = GuidError;

    /// Accepts `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` in any case, bare or in one pair of
    /// braces.
    fn from_str(text: &str) -> Result<Self, GuidError> {
        let inner = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(text);
        let shape_ok = inner.len() == 36
            && inner.char_indices().all(|(i, c)| {
                if matches!(i, 8 | 13 | 18 | 23) {
                    c == '-'
                } else {
                    c.is_ascii_hexdigit()
                }
            });
        if shape_ok {
            Ok(Self(inner.to_ascii_lowercase()))
        } else {
            Err(GuidError { text: text.into() })
        }
    }
}

/// One VMBus device as sysfs shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmbusDeviceInfo {
    /// The instance GUID (directory name), lowercase without braces.
    pub instance: String,
    /// The device directory.
    pub path: PathBuf,
    /// The class (interface type) GUID, lowercase without braces.
    pub class_id: String,
    /// The device (instance) GUID from `device_id`, lowercase without braces.
    pub device_id: String,
    /// The primary channel's relid (`id`), its interrupt bit.
    pub relid: u32,
    /// The primary channel's monitor id, if monitored.
    pub monitor_id: Option<u8>,
    /// The uio device (`uioN`) if bound to `uio_hv_generic`.
    pub uio: Option<String>,
}

/// One uio map as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UioMap {
    /// Map index K (mmap it at file offset K × page size).
    pub index: usize,
    /// The map's name.
    pub name: String,
    /// Size in bytes.
    pub size: usize,
    /// Offset of the memory within its first page.
    pub offset: u64,
    /// The kernel's address of the memory (informational).
    pub addr: u64,
}

/// A subchannel as sysfs shows it under `channels/<relid>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubchannelInfo {
    /// The channel's relid (directory name), its interrupt bit.
    pub relid: u32,
    /// The subchannel index (1..).
    pub subchannel_id: u16,
    /// The monitor id, if monitored.
    pub monitor_id: Option<u8>,
    /// The `ring` file (may not exist yet: the kernel creates it after the directory).
    pub ring: PathBuf,
}

/// An I/O error from `op` (`open` for read and write, `read`, `list` or `stat`) on `path`. `EACCES` and
/// `EPERM` become a [`DeviceError::Sysfs`] saying that root (or access to the file) is needed:
/// on a real guest `/dev/uioN` and the subchannels' `ring` files belong to root.
pub(crate) fn io_error(op: &'static str, path: &Path, source: io::Error) -> DeviceError {
    match source.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => DeviceError::Sysfs {
            path: path.to_path_buf(),
            reason: format!(
                "{op} failed: {source}: this needs root, or {} access to the file for this user",
                if op == "open" {
                    "read and write"
                } else {
                    "read"
                }
            ),
        },
        _ => DeviceError::Io {
            op,
            path: path.to_path_buf(),
            source,
        },
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DeviceError + 'a {
    move |source| io_error(op, path, source)
}

fn garbled(path: &Path, what: impl Into<String>) -> DeviceError {
    DeviceError::Sysfs {
        path: path.to_path_buf(),
        reason: what.into(),
    }
}

/// Reads a one-line attribute, trimmed.
pub(crate) fn read_attr(path: &Path) -> Result<String, DeviceError> {
    Ok(fs::read_to_string(path)
        .map_err(io_err("read", path))?
        .trim()
        .to_string())
}

/// Reads an optional attribute: `None` if the file does not exist.
fn read_optional_attr(path: &Path) -> Result<Option<String>, DeviceError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

fn parse_decimal<T: FromStr>(path: &Path, text: &str) -> Result<T, DeviceError> {
    text.parse()
        .map_err(|_| garbled(path, format!("expected a decimal number, found {text:?}")))
}

fn parse_hex(path: &Path, text: &str) -> Result<u64, DeviceError> {
    let digits = text
        .strip_prefix("0x")
        .or_else(|| text.strip_prefix("0X"))
        .unwrap_or(text);
    u64::from_str_radix(digits, 16)
        .map_err(|_| garbled(path, format!("expected a hex number, found {text:?}")))
}

/// Normalises a GUID as sysfs prints it (`{...}`, any case) and checks its shape.
pub(crate) fn parse_guid(path: &Path, text: &str) -> Result<String, DeviceError> {
    text.parse::<Guid>()
        .map(|guid| guid.0)
        .map_err(|e| garbled(path, e.to_string()))
}

fn read_monitor_id(dir: &Path) -> Result<Option<u8>, DeviceError> {
    let path = dir.join("monitor_id");
    read_optional_attr(&path)?
        .map(|t| parse_decimal::<u8>(&path, &t))
        .transpose()
}

/// Reads one device directory.
pub fn read_device(path: &Path) -> Result<VmbusDeviceInfo, DeviceError> {
    let instance = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| garbled(path, "device directory name is not UTF-8"))?;
    let class_path = path.join("class_id");
    let device_path = path.join("device_id");
    let id_path = path.join("id");
    let uio_dir = path.join("uio");
    let uio = match fs::read_dir(&uio_dir) {
        Ok(entries) => {
            let mut names: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with("uio"))
                .collect();
            names.sort();
            names.into_iter().next()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("list", &uio_dir)(e)),
    };
    Ok(VmbusDeviceInfo {
        instance: instance.to_ascii_lowercase(),
        path: path.to_path_buf(),
        class_id: parse_guid(&class_path, &read_attr(&class_path)?)?,
        device_id: parse_guid(&device_path, &read_attr(&device_path)?)?,
        relid: parse_decimal(&id_path, &read_attr(&id_path)?)?,
        monitor_id: read_monitor_id(path)?,
        uio,
    })
}

/// Every VMBus device of class `class_id` under `sysfs_root`, sorted by instance. Devices
/// whose files cannot be read are skipped (other drivers' devices may be half set up).
pub fn devices_of_class(
    sysfs_root: &Path,
    class_id: &str,
) -> Result<Vec<VmbusDeviceInfo>, DeviceError> {
    let dir = sysfs_root.join("bus/vmbus/devices");
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).map_err(io_err("list", &dir))? {
        let path = entry.map_err(io_err("list", &dir))?.path();
        match read_device(&path) {
            Ok(info) if info.class_id == class_id => found.push(info),
            Ok(_) => {}
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "skipping VMBus device"),
        }
    }
    found.sort_by(|a, b| a.instance.cmp(&b.instance));
    Ok(found)
}

/// Reads every `mapK` of `class/uio/<uio>/maps`, in index order; indices must be dense.
pub fn read_maps(sysfs_root: &Path, uio: &str) -> Result<Vec<UioMap>, DeviceError> {
    let dir = sysfs_root.join("class/uio").join(uio).join("maps");
    let mut maps = Vec::new();
    loop {
        let map_dir = dir.join(format!("map{}", maps.len()));
        if !map_dir.is_dir() {
            break;
        }
        let attr = |name: &str| {
            let path = map_dir.join(name);
            read_attr(&path).map(|text| (path, text))
        };
        let (_, name) = attr("name")?;
        let (size_path, size) = attr("size")?;
        let (offset_path, offset) = attr("offset")?;
        let (addr_path, addr) = attr("addr")?;
        maps.push(UioMap {
            index: maps.len(),
            name,
            size: parse_hex(&size_path, &size)? as usize,
            offset: parse_hex(&offset_path, &offset)?,
            addr: parse_hex(&addr_path, &addr)?,
        });
    }
    if maps.is_empty() {
        return Err(garbled(&dir, "no uio maps"));
    }
    Ok(maps)
}

/// The subchannels of a device (its `channels/` entries other than the primary), sorted by
/// subchannel index. A directory whose files are not readable yet is skipped.
pub fn subchannels(device: &VmbusDeviceInfo) -> Result<Vec<SubchannelInfo>, DeviceError> {
    let dir = device.path.join("channels");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", &dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err("list", &dir))?.path();
        let Some(relid) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if relid == device.relid {
            continue;
        }
        let id_path = path.join("subchannel_id");
        let Some(id_text) = read_optional_attr(&id_path)? else {
            continue;
        };
        let subchannel_id: u16 = parse_decimal(&id_path, &id_text)?;
        if subchannel_id == 0 {
            continue;
        }
        found.push(SubchannelInfo {
            relid,
            subchannel_id,
            monitor_id: read_monitor_id(&path)?,
            ring: path.join("ring"),
        });
    }
    found.sort_by_key(|s| s.subchannel_id);
    Ok(found)
}

/// Parses the GPADL handle out of a `recv:<n>` / `send:<n>` map name.
pub fn gpadl_from_map_name(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.strip_prefix(':')?.parse().ok()
}
