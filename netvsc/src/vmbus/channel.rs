//! The device backend the NIC programs against: ring memory, buffers, doorbells, interrupts.
//!
//! Two implementations: [`UioDevice`](super::uio::UioDevice) (`uio_hv_generic` on a real
//! guest) and [`ShmDevice`](super::shm::ShmDevice) (a memfd shared with the simulated host).
//!
//! Lifecycle of a [`VmbusDevice`]:
//! 1. Opened by its backend's constructor (with uio: opening `/dev/uioN` makes the kernel open
//!    the primary channel). [`primary`](VmbusDevice::primary), the buffers and the doorbells
//!    are available at once.
//! 2. After the NVSP subchannel request (message 133) is completed by the host,
//!    [`open_subchannels`](VmbusDevice::open_subchannels) waits for the host's offers and
//!    returns the new channels' rings. Subchannels are one-shot per session.
//! 3. [`reopen`](VmbusDevice::reopen) closes every channel and opens the primary again with
//!    zeroed rings: the only recovery from a dead host channel. Every [`ChannelRings`],
//!    [`Doorbell`] and buffer obtained before is stale afterwards and must be dropped *before*
//!    calling it (with uio, a live mapping keeps the old channel open); ask again.
//!
//! Every wait takes a timeout; nothing blocks unboundedly.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use packet::{MemError, SharedMemory};

use super::ring::RingError;

/// The two rings of one channel, each a header page plus data area (feed them to
/// [`OutgoingRing::new`](super::OutgoingRing::new) and
/// [`IncomingRing::new`](super::IncomingRing::new)).
#[derive(Clone, Debug)]
pub struct ChannelRings {
    /// 0 for the primary channel, `i` for subchannel `i`.
    pub index: u16,
    /// The guest→host ring (the guest's TX ring).
    pub outgoing: SharedMemory,
    /// The host→guest ring (the guest's RX ring).
    pub incoming: SharedMemory,
}

/// Tells the host that a channel's guest→host ring has new data (or freed space the host was
/// waiting for). One per channel; cheap to call from the channel's polling thread.
pub trait Doorbell: Send + Sync + Debug {
    /// Rings the doorbell.
    fn signal(&self) -> Result<(), DeviceError>;
}

/// A VMBus NetVSC device as the NIC sees it. Object safe: the NIC holds a
/// `Box<dyn VmbusDevice>`.
pub trait VmbusDevice: Send + Debug {
    /// The primary channel's rings.
    fn primary(&self) -> Result<ChannelRings, DeviceError>;

    /// The receive buffer and its GPADL handle (for NVSP 101).
    fn receive_buffer(&self) -> Result<(SharedMemory, u32), DeviceError>;

    /// The send buffer and its GPADL handle (for NVSP 104).
    fn send_buffer(&self) -> Result<(SharedMemory, u32), DeviceError>;

    /// The doorbell of channel `channel` (0 = primary).
    fn doorbell(&self, channel: u16) -> Result<Arc<dyn Doorbell>, DeviceError>;

    /// After the host completed NVSP 133 allocating `count` subchannels: waits (at most
    /// `timeout`) until all `count` are offered and open, then returns their rings, in order
    /// of subchannel index 1..=count.
    fn open_subchannels(
        &mut self,
        count: u16,
        timeout: Duration,
    ) -> Result<Vec<ChannelRings>, DeviceError>;

    /// Blocks until the host signals any open channel or `timeout` passes; `Ok(true)` if
    /// signalled. [`DeviceError::Gone`] or [`DeviceError::ChannelDead`] if the host removed
    /// the device or closed the channel.
    fn wait_for_interrupt(&self, timeout: Duration) -> Result<bool, DeviceError>;

    /// Closes every channel and reopens the primary with zeroed rings (see the module docs
    /// for what must be dropped first). Subchannels must be requested again.
    fn reopen(&mut self, timeout: Duration) -> Result<(), DeviceError>;

    /// `size` bytes (rounded up to 4 KiB pages) of memory whose bus addresses the host can
    /// read, for GPA-direct packet buffers.
    fn dma_memory(&mut self, size: usize) -> Result<SharedMemory, DeviceError>;
}

/// Errors of the device layer.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// No device matched.
    #[error("no VMBus device of class {class_id} (instance {instance}) under {root}")]
    NotFound {
        /// The sysfs directory searched.
        root: PathBuf,
        /// The class GUID looked for.
        class_id: String,
        /// The instance asked for, or `any`.
        instance: String,
    },
    /// A sysfs file or the device node could not be used.
    #[error("{path}: {reason}")]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An I/O error on a sysfs file or device node.
    #[error("{op} {path}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A uio map does not have the expected name or size.
    #[error("uio map {index} of {device}: {reason}")]
    BadMap {
        /// The uio device (`uioN`).
        device: String,
        /// The map index.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A channel index the device does not have (or not yet).
    #[error("channel {channel} does not exist ({available} open)")]
    NoSuchChannel {
        /// The channel asked for.
        channel: u16,
        /// How many channels are open (primary included).
        available: u16,
    },
    /// A bounded wait ran out.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// How long.
        timeout: Duration,
    },
    /// The device was removed (rescinded); reopening will not help.
    #[error("device {device} is gone")]
    Gone {
        /// The device (instance GUID or bus name).
        device: String,
    },
    /// The host closed the channel; [`VmbusDevice::reopen`] may recover it.
    #[error("channel of device {device} was closed by the host")]
    ChannelDead {
        /// The device.
        device: String,
    },
    /// `dma_memory` ran out.
    #[error("out of DMA memory: {requested} bytes requested, {available} left")]
    OutOfMemory {
        /// Bytes asked for (rounded to pages).
        requested: usize,
        /// Bytes left.
        available: usize,
    },
    /// The backend cannot do this at all.
    #[error("{0} is not supported by this backend")]
    Unsupported(&'static str),
    /// A configuration value is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A system call failed.
    #[error("{call} failed")]
    Syscall {
        /// The call.
        call: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Mapping or accessing shared memory failed.
    #[error("shared memory")]
    Memory(#[from] MemError),
    /// A ring could not be set up.
    #[error("ring")]
    Ring(#[from] RingError),
}
