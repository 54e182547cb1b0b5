//! The real backend: a NetVSC device bound to `uio_hv_generic` (`reference/netvsc-protocol.md`
//! §1.7).
//!
//! Lifecycle: [`UioDevice::open`] finds the device by class GUID (optionally a given instance)
//! under the sysfs root, checks its five uio maps (`txrx_rings`, `int_page`, `monitor_page`,
//! `recv:<gpadl>`, `send:<gpadl>`), opens `/dev/uioN` (the kernel opens the primary channel)
//! and maps them (map K at file offset K × page size). The primary channel is map 0 split in
//! half (guest→host ring first). Subchannels appear under `channels/<relid>/` after NVSP 133;
//! their `ring` file (TX half then RX half) may appear after the directory, so
//! [`open_subchannels`](VmbusDevice::open_subchannels) retries until its deadline.
//! [`reopen`](VmbusDevice::reopen) drops every mapping and the fd and opens the device again;
//! if that fails the device stays closed ([`DeviceError::ChannelDead`] from every call) until
//! a reopen succeeds.
//!
//! Signalling the host: a monitored channel sets bit `monitor_id % 32` of
//! `trigger_group[monitor_id / 32].pending` in the monitor page (the host polls it); an
//! unmonitored one sets bit `relid` in the send half (offset 2048) of the interrupt page and
//! writes `1` to the uio fd, on which the kernel issues the signal hypercall. For a monitored
//! channel the device also writes [`UioConfig::monitor_latency`] into the monitor page's
//! latency table, as DPDK's vmbus driver does (its devarg `latency`, 50 µs by default): how
//! soon the host is asked to notice a trigger bit. Without it a host may poll the page as
//! slowly as it likes.
//!
//! Interrupts: writing an `i32` 1/0 to the fd enables/disables them; reading 4 bytes returns
//! the `u32` event count; all channels funnel into the one fd. How the kernel treats the
//! rings' `interrupt_mask` on these calls differs between kernel versions, so the NIC manages
//! the mask itself ([`IncomingRing::arm_interrupt`](super::IncomingRing::arm_interrupt)).
//! `EIO`/`ENODEV` (or end of file) from the fd means the device was rescinded:
//! [`DeviceError::Gone`].
//!
//! Errors say what to do about them: a missing `/dev/uioN` that uio_hv_generic must be bound
//! (and points at `docs/deploy.md`), `EACCES`/`EPERM` that root is needed, a failed mmap which
//! map (by its uio name), how large and at which file offset.
//!
//! Bus addresses of uio maps are offsets within each map: the host knows the buffers by GPADL
//! handle, not by address. [`dma_memory`](VmbusDevice::dma_memory) is not available (it needs a
//! pinned, physically resolved pool); use the send buffer.
//!
//! For tests, the sysfs and `/dev` roots are configurable and the interrupt fd can be replaced
//! ([`IrqSource::Fd`]) by anything accepting 4-byte writes and yielding 4-byte reads (one end
//! of a socket pair), so a fake kernel can be built in a temporary directory.

pub mod sysfs;

#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use packet::{PAGE_SIZE, SharedMemory};

use super::channel::{ChannelRings, DeviceError, Doorbell, VmbusDevice};
use super::sys;
use super::{
    MONITOR_LATENCY_UNIT, MONITOR_TRIGGER_GROUPS, NETVSC_CLASS_ID, monitor_latency_offset,
    monitor_pending_offset,
};
pub use sysfs::{Guid, GuidError, SubchannelInfo, UioMap, VmbusDeviceInfo};

/// Index of the ring map.
pub const MAP_RINGS: usize = 0;
/// Index of the interrupt page map.
pub const MAP_INT_PAGE: usize = 1;
/// Index of the monitor page map.
pub const MAP_MONITOR_PAGE: usize = 2;
/// Index of the receive buffer map.
pub const MAP_RECEIVE_BUFFER: usize = 3;
/// Index of the send buffer map.
pub const MAP_SEND_BUFFER: usize = 4;
/// Offset of the guest→host half of the interrupt page.
pub const INT_PAGE_SEND_OFFSET: usize = 2048;

/// Where the interrupt fd comes from.
#[derive(Clone, Debug, Default)]
pub enum IrqSource {
    /// The `/dev/uioN` fd itself (a real guest).
    #[default]
    DeviceNode,
    /// A stand-in that accepts 4-byte writes and yields 4-byte reads (tests: one end of a
    /// socket pair, the other end playing the kernel).
    Fd(Arc<OwnedFd>),
}

/// How to find and open the device.
#[derive(Clone, Debug)]
pub struct UioConfig {
    /// The sysfs root (`/sys`).
    pub sysfs_root: PathBuf,
    /// Where device nodes live (`/dev`).
    pub dev_root: PathBuf,
    /// The instance GUID to open; `None`: the first NetVSC bound to `uio_hv_generic`.
    pub instance: Option<Guid>,
    /// How often to look for subchannel ring files and the device node while waiting.
    pub retry_interval: Duration,
    /// The interrupt fd.
    pub irq: IrqSource,
    /// The latency written for each monitored channel into the monitor page (in its 100 ns
    /// units, at most `u16::MAX` of them): how soon the host should notice a doorbell.
    pub monitor_latency: Duration,
}

/// DPDK's default monitor latency (its vmbus devarg `latency`).
pub const DEFAULT_MONITOR_LATENCY: Duration = Duration::from_micros(50);

impl Default for UioConfig {
    fn default() -> Self {
        Self {
            sysfs_root: "/sys".into(),
            dev_root: "/dev".into(),
            instance: None,
            retry_interval: Duration::from_millis(10),
            irq: IrqSource::DeviceNode,
            monitor_latency: DEFAULT_MONITOR_LATENCY,
        }
    }
}

/// The five maps of a NetVSC uio device, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetvscMaps {
    /// All maps, by index.
    pub maps: Vec<UioMap>,
    /// GPADL handle of the receive buffer (from `recv:<n>`).
    pub receive_gpadl: u32,
    /// GPADL handle of the send buffer (from `send:<n>`).
    pub send_gpadl: u32,
}

impl NetvscMaps {
    /// Checks names and sizes of `maps` of device `uio`.
    pub fn validate(uio: &str, maps: Vec<UioMap>) -> Result<Self, DeviceError> {
        let bad = |index: usize, reason: String| DeviceError::BadMap {
            device: uio.to_string(),
            index,
            reason,
        };
        if maps.len() < 5 {
            return Err(bad(
                maps.len(),
                format!("expected 5 maps, found {} (is this a NIC?)", maps.len()),
            ));
        }
        for (index, name) in [
            (MAP_RINGS, "txrx_rings"),
            (MAP_INT_PAGE, "int_page"),
            (MAP_MONITOR_PAGE, "monitor_page"),
        ] {
            if maps[index].name != name {
                return Err(bad(
                    index,
                    format!("expected name {name:?}, found {:?}", maps[index].name),
                ));
            }
        }
        let rings = maps[MAP_RINGS].size;
        if rings == 0 || !rings.is_multiple_of(2 * PAGE_SIZE) || rings / 2 < 2 * PAGE_SIZE {
            return Err(bad(
                MAP_RINGS,
                format!("size {rings:#x} is not two rings of whole pages"),
            ));
        }
        for index in [MAP_INT_PAGE, MAP_MONITOR_PAGE] {
            if maps[index].size < PAGE_SIZE {
                return Err(bad(
                    index,
                    format!("size {:#x} is smaller than a page", maps[index].size),
                ));
            }
        }
        let gpadl = |index: usize, prefix: &str| {
            let map = &maps[index];
            if map.size == 0 {
                return Err(bad(index, "empty buffer".into()));
            }
            sysfs::gpadl_from_map_name(&map.name, prefix).ok_or_else(|| {
                bad(
                    index,
                    format!("expected name {prefix}:<gpadl>, found {:?}", map.name),
                )
            })
        };
        Ok(Self {
            receive_gpadl: gpadl(MAP_RECEIVE_BUFFER, "recv")?,
            send_gpadl: gpadl(MAP_SEND_BUFFER, "send")?,
            maps,
        })
    }
}

/// The interrupt fd with the uio read/write protocol.
#[derive(Debug)]
struct IrqFd {
    fd: Arc<OwnedFd>,
    device: String,
}

impl IrqFd {
    fn error(&self, call: &'static str, e: io::Error) -> DeviceError {
        // EIO/ENODEV: rescinded. End of file and EPIPE cannot come from a uio node; they mean
        // the stand-in's other end (the fake kernel) is gone.
        let gone = matches!(
            e.raw_os_error(),
            Some(libc::EIO) | Some(libc::ENODEV) | Some(libc::EPIPE)
        ) || e.kind() == io::ErrorKind::UnexpectedEof;
        if gone {
            DeviceError::Gone {
                device: self.device.clone(),
            }
        } else {
            DeviceError::Syscall { call, source: e }
        }
    }

    /// Enables (`true`) or disables interrupts; enabling also makes the kernel signal an
    /// unmonitored channel's host.
    fn enable(&self, on: bool) -> Result<(), DeviceError> {
        sys::write_once(self.fd.as_fd(), &i32::from(on).to_ne_bytes())
            .map_err(|e| self.error("write uio", e))
    }

    /// Waits for an interrupt; `Ok(true)` if one came (its count consumed).
    fn wait(&self, timeout: Duration) -> Result<bool, DeviceError> {
        let mut ready = Vec::new();
        sys::poll_readable(&[self.fd.as_fd()], timeout, &mut ready)
            .map_err(|e| self.error("poll uio", e))?;
        if !ready[0] {
            return Ok(false);
        }
        let mut count = [0u8; 4];
        sys::read_exact_once(self.fd.as_fd(), &mut count).map_err(|e| self.error("read uio", e))?;
        Ok(true)
    }
}

/// A channel's identity for signalling.
#[derive(Clone, Copy, Debug)]
struct ChannelId {
    relid: u32,
    monitor_id: Option<u8>,
}

/// Everything mapped from one open of the device node.
#[derive(Debug)]
struct Mapped {
    irq: Arc<IrqFd>,
    rings: SharedMemory,
    int_page: SharedMemory,
    monitor_page: SharedMemory,
    receive: SharedMemory,
    send: SharedMemory,
}

/// A NetVSC device bound to `uio_hv_generic`.
#[derive(Debug)]
pub struct UioDevice {
    config: UioConfig,
    info: VmbusDeviceInfo,
    uio: String,
    maps: NetvscMaps,
    /// `None` after a failed reopen: the device is closed.
    mapped: Option<Mapped>,
    /// Open subchannels, index `i - 1` = subchannel `i`.
    subchannels: Vec<(ChannelId, ChannelRings)>,
}

/// Splits a `TX ring | RX ring` region in half.
fn split_rings(index: u16, mem: &SharedMemory) -> Result<ChannelRings, DeviceError> {
    let half = mem.len() / 2;
    Ok(ChannelRings {
        index,
        outgoing: mem.subregion(0, half)?,
        incoming: mem.subregion(half, half)?,
    })
}

impl UioDevice {
    /// Finds, checks, opens and maps the device.
    pub fn open(config: UioConfig) -> Result<Self, DeviceError> {
        let candidates = sysfs::devices_of_class(&config.sysfs_root, NETVSC_CLASS_ID)?;
        let wanted = config.instance.as_ref().map(Guid::as_str);
        let info = candidates
            .into_iter()
            .filter(|d| wanted.is_none_or(|w| w == d.instance))
            .find(|d| d.uio.is_some() || wanted.is_some())
            .ok_or_else(|| DeviceError::NotFound {
                root: config.sysfs_root.join("bus/vmbus/devices"),
                class_id: NETVSC_CLASS_ID.into(),
                instance: wanted.unwrap_or("any bound to uio").into(),
            })?;
        let uio = info.uio.clone().ok_or_else(|| DeviceError::Sysfs {
            path: info.path.join("uio"),
            reason: "device is not bound to uio_hv_generic".into(),
        })?;
        let maps = NetvscMaps::validate(&uio, sysfs::read_maps(&config.sysfs_root, &uio)?)?;
        let mapped = Self::map(&config, &info, &uio, &maps)?;
        tracing::info!(
            instance = %info.instance, %uio, relid = info.relid, monitor_id = ?info.monitor_id,
            receive_gpadl = maps.receive_gpadl, send_gpadl = maps.send_gpadl,
            "opened NetVSC uio device"
        );
        Ok(Self {
            config,
            info,
            uio,
            maps,
            mapped: Some(mapped),
            subchannels: Vec::new(),
        })
    }

    fn map(
        config: &UioConfig,
        info: &VmbusDeviceInfo,
        uio: &str,
        maps: &NetvscMaps,
    ) -> Result<Mapped, DeviceError> {
        let node = config.dev_root.join(uio);
        let fd = sys::open_rw(&node).map_err(|e| node_open_error(&node, &info.instance, e))?;
        let page = sys::page_size();
        // A regular file standing in for the node must hold every map: touching a page of a
        // mapping past the end of a file is SIGBUS, not an error.
        let regular = sys::regular_file_size(fd.as_fd())
            .map_err(|e| node_open_error(&node, &info.instance, e))?;
        let map = |index: usize| {
            let map = &maps.maps[index];
            let offset = index * page;
            if let Some(len) = regular
                && (offset as u64).saturating_add(map.size as u64) > len
            {
                return Err(DeviceError::BadMap {
                    device: uio.to_string(),
                    index,
                    reason: format!(
                        "{} is a regular file of {len:#x} bytes, shorter than {:?} ({:#x} bytes at offset {offset:#x})",
                        node.display(),
                        map.name,
                        map.size
                    ),
                });
            }
            SharedMemory::map_fd(fd.as_fd(), offset as u64, map.size, 0).map_err(|e| {
                DeviceError::BadMap {
                    device: uio.to_string(),
                    index,
                    reason: format!(
                        "mapping {:?} ({:#x} bytes at offset {offset:#x} of {}): {}",
                        map.name,
                        map.size,
                        node.display(),
                        error_chain(&e)
                    ),
                }
            })
        };
        let mapped = Mapped {
            rings: map(MAP_RINGS)?,
            int_page: map(MAP_INT_PAGE)?,
            monitor_page: map(MAP_MONITOR_PAGE)?,
            receive: map(MAP_RECEIVE_BUFFER)?,
            send: map(MAP_SEND_BUFFER)?,
            irq: Arc::new(IrqFd {
                fd: match &config.irq {
                    IrqSource::DeviceNode => Arc::new(fd),
                    IrqSource::Fd(fd) => fd.clone(),
                },
                device: info.instance.clone(),
            }),
        };
        Ok(mapped)
    }

    fn mapped(&self) -> Result<&Mapped, DeviceError> {
        self.mapped
            .as_ref()
            .ok_or_else(|| DeviceError::ChannelDead {
                device: self.info.instance.clone(),
            })
    }

    /// What sysfs says about the device.
    pub fn info(&self) -> &VmbusDeviceInfo {
        &self.info
    }

    /// The checked maps.
    pub fn maps(&self) -> &NetvscMaps {
        &self.maps
    }

    /// Whether the device directory still exists (it disappears on rescind).
    pub fn is_present(&self) -> bool {
        self.info.path.is_dir()
    }

    fn channel_id(&self, channel: u16) -> Result<ChannelId, DeviceError> {
        if channel == 0 {
            return Ok(ChannelId {
                relid: self.info.relid,
                monitor_id: self.info.monitor_id,
            });
        }
        self.subchannels
            .get(usize::from(channel) - 1)
            .map(|(id, _)| *id)
            .ok_or(DeviceError::NoSuchChannel {
                channel,
                available: 1 + self.subchannels.len() as u16,
            })
    }

    /// Maps the ring file of a subchannel, if the kernel has created it.
    fn map_subchannel(&self, sub: &SubchannelInfo) -> Result<Option<ChannelRings>, DeviceError> {
        let fd = match sys::open_rw(&sub.ring) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(sysfs::io_error("open", &sub.ring, source)),
        };
        // sysfs gives the binary attribute its size: both rings. Read from the open file (as
        // DPDK does), so the size is the one of the file mapped.
        let size = sys::file_size(fd.as_fd())
            .map_err(|source| sysfs::io_error("fstat", &sub.ring, source))?
            as usize;
        if size == 0 || !size.is_multiple_of(2 * PAGE_SIZE) || size / 2 < 2 * PAGE_SIZE {
            return Err(DeviceError::Sysfs {
                path: sub.ring.clone(),
                reason: format!("size {size:#x} is not two rings of whole pages"),
            });
        }
        let mem = SharedMemory::map_fd(fd.as_fd(), 0, size, 0).map_err(|e| DeviceError::Sysfs {
            path: sub.ring.clone(),
            reason: format!(
                "mapping subchannel {}'s rings ({size:#x} bytes): {}",
                sub.subchannel_id,
                error_chain(&e)
            ),
        })?;
        split_rings(sub.subchannel_id, &mem).map(Some)
    }
}

/// The error for a failed open of the device node `node` of device `instance`.
fn node_open_error(node: &Path, instance: &str, source: io::Error) -> DeviceError {
    match source.raw_os_error() {
        // The node was never created, or went with an unbind.
        Some(libc::ENOENT) => DeviceError::Sysfs {
            path: node.to_path_buf(),
            reason: format!(
                "the device node is missing: NetVSC {instance} must be bound to uio_hv_generic, \
                 which creates it (docs/deploy.md shows the binding steps)"
            ),
        },
        // The node is there but its device is not: rescinded.
        Some(libc::ENODEV) => DeviceError::Gone {
            device: instance.to_string(),
        },
        _ => sysfs::io_error("open", node, source),
    }
}

/// `error` and its sources, `: `-separated, for a message that carries the whole chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Writes `latency` (in 100 ns units, saturated) as channel `monitor_id`'s entry of the
/// monitor page's latency table. The entry is a `u16` sharing an aligned word with its
/// neighbour, which this leaves as it is.
fn write_monitor_latency(
    page: &SharedMemory,
    monitor_id: usize,
    latency: Duration,
) -> Result<(), DeviceError> {
    let units = (latency.as_nanos() / MONITOR_LATENCY_UNIT.as_nanos()).min(u16::MAX.into()) as u32;
    let offset = monitor_latency_offset(monitor_id);
    let word = page.atomic_u32(offset & !3)?;
    let shift = if offset & 2 == 0 { 0 } else { 16 };
    let mask = 0xffff_u32 << shift;
    // The closure never returns None, so the update always succeeds.
    let _ = word.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |old| {
        Some((old & !mask) | (units << shift))
    });
    Ok(())
}

impl VmbusDevice for UioDevice {
    fn primary(&self) -> Result<ChannelRings, DeviceError> {
        split_rings(0, &self.mapped()?.rings)
    }

    fn receive_buffer(&self) -> Result<(SharedMemory, u32), DeviceError> {
        Ok((self.mapped()?.receive.clone(), self.maps.receive_gpadl))
    }

    fn send_buffer(&self) -> Result<(SharedMemory, u32), DeviceError> {
        Ok((self.mapped()?.send.clone(), self.maps.send_gpadl))
    }

    fn doorbell(&self, channel: u16) -> Result<Arc<dyn Doorbell>, DeviceError> {
        let id = self.channel_id(channel)?;
        let mapped = self.mapped()?;
        let doorbell = match id.monitor_id {
            Some(monitor_id) if usize::from(monitor_id) / 32 < MONITOR_TRIGGER_GROUPS => {
                write_monitor_latency(
                    &mapped.monitor_page,
                    usize::from(monitor_id),
                    self.config.monitor_latency,
                )?;
                UioDoorbell::Monitor {
                    page: mapped.monitor_page.clone(),
                    offset: monitor_pending_offset(usize::from(monitor_id) / 32),
                    bit: 1 << (monitor_id % 32),
                }
            }
            Some(monitor_id) => {
                return Err(DeviceError::Sysfs {
                    path: self.info.path.clone(),
                    reason: format!("monitor id {monitor_id} is outside the monitor page"),
                });
            }
            None => {
                let offset = INT_PAGE_SEND_OFFSET + (id.relid as usize / 32) * 4;
                if offset + 4 > PAGE_SIZE {
                    return Err(DeviceError::Sysfs {
                        path: self.info.path.clone(),
                        reason: format!("relid {} is outside the interrupt page", id.relid),
                    });
                }
                UioDoorbell::Interrupt {
                    page: mapped.int_page.clone(),
                    offset,
                    bit: 1 << (id.relid % 32),
                    irq: mapped.irq.clone(),
                }
            }
        };
        Ok(Arc::new(doorbell))
    }

    fn open_subchannels(
        &mut self,
        count: u16,
        timeout: Duration,
    ) -> Result<Vec<ChannelRings>, DeviceError> {
        self.mapped()?;
        if !self.subchannels.is_empty() {
            return Err(DeviceError::Config(
                "subchannels are one-shot per session: reopen before opening them again".into(),
            ));
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let deadline = packet::deadline::after(Instant::now(), timeout);
        loop {
            if !self.is_present() {
                return Err(DeviceError::Gone {
                    device: self.info.instance.clone(),
                });
            }
            let subs: Vec<SubchannelInfo> = sysfs::subchannels(&self.info)?
                .into_iter()
                .filter(|s| s.subchannel_id <= count)
                .collect();
            let all_listed = subs.iter().map(|s| s.subchannel_id).eq(1..=count);
            if all_listed {
                let mut opened = Vec::with_capacity(subs.len());
                for sub in &subs {
                    match self.map_subchannel(sub)? {
                        Some(rings) => opened.push((
                            ChannelId {
                                relid: sub.relid,
                                monitor_id: sub.monitor_id,
                            },
                            rings,
                        )),
                        None => break,
                    }
                }
                if opened.len() == subs.len() {
                    let rings = opened.iter().map(|(_, r)| r.clone()).collect();
                    self.subchannels = opened;
                    return Ok(rings);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(DeviceError::Timeout {
                    what: "subchannel directories and ring files",
                    timeout,
                });
            }
            // The kernel offers us no event for new sysfs files: poll at a bounded interval.
            thread::sleep(self.config.retry_interval.min(deadline - now));
        }
    }

    fn wait_for_interrupt(&self, timeout: Duration) -> Result<bool, DeviceError> {
        let irq = &self.mapped()?.irq;
        irq.enable(true)?;
        irq.wait(timeout)
    }

    fn reopen(&mut self, timeout: Duration) -> Result<(), DeviceError> {
        let deadline = packet::deadline::after(Instant::now(), timeout);
        // Dropping our mappings and fd closes the channel once the caller has dropped theirs
        // (the kernel closes it on the last close of the node, and a mapping holds the file).
        self.subchannels.clear();
        self.mapped = None;
        loop {
            if !self.is_present() {
                return Err(DeviceError::Gone {
                    device: self.info.instance.clone(),
                });
            }
            let attempt = sysfs::read_maps(&self.config.sysfs_root, &self.uio)
                .and_then(|maps| NetvscMaps::validate(&self.uio, maps))
                .and_then(|maps| {
                    let mapped = Self::map(&self.config, &self.info, &self.uio, &maps)?;
                    Ok((maps, mapped))
                });
            match attempt {
                Ok((maps, mapped)) => {
                    self.maps = maps;
                    self.mapped = Some(mapped);
                    return Ok(());
                }
                Err(e) => {
                    let now = Instant::now();
                    if now >= deadline {
                        tracing::warn!(error = %e, "reopening the uio device failed");
                        return Err(e);
                    }
                    thread::sleep(self.config.retry_interval.min(deadline - now));
                }
            }
        }
    }

    fn dma_memory(&mut self, _size: usize) -> Result<SharedMemory, DeviceError> {
        Err(DeviceError::Unsupported(
            "GPA-direct DMA memory on uio (needs a pinned pool with physical addresses)",
        ))
    }
}

/// A uio doorbell: a monitor-page trigger bit, or an interrupt-page bit plus a write to the fd.
#[derive(Debug)]
enum UioDoorbell {
    Monitor {
        page: SharedMemory,
        offset: usize,
        bit: u32,
    },
    Interrupt {
        page: SharedMemory,
        offset: usize,
        bit: u32,
        irq: Arc<IrqFd>,
    },
}

impl Doorbell for UioDoorbell {
    fn signal(&self) -> Result<(), DeviceError> {
        // SeqCst read-modify-write: the ring writes before the doorbell are ordered before the
        // bit, which the host (another CPU) tests before reading the ring.
        match self {
            Self::Monitor { page, offset, bit } => {
                page.atomic_u32(*offset)?.fetch_or(*bit, Ordering::SeqCst);
                Ok(())
            }
            Self::Interrupt {
                page,
                offset,
                bit,
                irq,
            } => {
                page.atomic_u32(*offset)?.fetch_or(*bit, Ordering::SeqCst);
                irq.enable(true)
            }
        }
    }
}
