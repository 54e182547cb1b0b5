//! The shared-memory VMBus transport between the guest driver and the simulated host.
//!
//! One memfd is the guest's "physical memory" (GPA = offset). An [`ShmBus`] lays out in it,
//! per [`ShmLayout`]:
//!
//! | what | where |
//! |---|---|
//! | bus control page | offset 0, one page of little-endian `u32` words (`CTRL_*`) |
//! | monitor page | next page; guest→host trigger bits as in §1.6 (`pending` of trigger group `id / 32`, bit `id % 32`; monitor id = channel index) |
//! | rings | channel `i`: guest→host ring then host→guest ring, `ring_size` bytes each (header page included), for `max_channels` channels |
//! | receive buffer | then the send buffer, each with a GPADL handle written in the control page |
//! | DMA area | the rest, handed out page by page by [`VmbusDevice::dma_memory`] |
//!
//! Doorbells are eventfds, one per channel and direction plus one control eventfd per
//! direction. A guest doorbell also sets the channel's monitor pending bit, so a host that
//! only polls the monitor page (like DPDK's PMD expects of Hyper-V) sees it too. The host side
//! ([`ShmHostSide`]) uses nothing but the memfd bytes and the eventfds.
//!
//! The control page models what the kernel's VMBus control plane does for uio:
//! - **Open.** [`ShmBus::new`] opens the primary channel (generation 1), as the kernel does on
//!   the first open of `/dev/uioN`; the guest masks its incoming interrupt like
//!   `uio_hv_generic` does.
//! - **Subchannels.** After completing NVSP 133, the host calls
//!   [`ShmHostSide::offer_subchannels`]`(n)`: it zeroes those channels' rings, writes
//!   `CTRL_SUBCHANNELS_OFFERED = n` and kicks the guest's control eventfd. The guest's
//!   [`open_subchannels`](VmbusDevice::open_subchannels) waits for the offer, masks the new
//!   incoming interrupts, writes `CTRL_SUBCHANNELS_OPENED` and kicks the host's control
//!   eventfd; the host starts serving those channels when it sees the count.
//! - **Reopen.** The guest writes `CTRL_SUBCHANNELS_OPENED = 0`, then
//!   `CTRL_OPEN_REQUEST = generation + 1`, kicks the host and waits (bounded) for
//!   `CTRL_OPEN_ACK` to match. The host ([`ShmHostSide::pending_reopen`]) stops using its
//!   ring ends, then [`ShmHostSide::prepare_reopen`] zeroes the rings of every channel,
//!   withdraws subchannel offers and clears a "dead" state; the host sets up its new session
//!   and [`ShmHostSide::finish_reopen`] writes the ack ([`ShmHostSide::acknowledge_reopen`]
//!   does both at once). The host's VMBus
//!   control loop must keep acknowledging even when its NetVSP is "dead" (fault injection),
//!   as Hyper-V's VMBus server does.
//! - **Death.** `CTRL_STATE` is 0 (alive), 1 (dead: the host closed the channel; reopen
//!   recovers) or 2 (rescinded: the device is gone for good). The guest learns it from
//!   [`wait_for_interrupt`](VmbusDevice::wait_for_interrupt) and the other waits.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use packet::{PAGE_SIZE, SharedMemory};
use parking_lot::Mutex;

use super::channel::{ChannelRings, DeviceError, Doorbell, VmbusDevice};
use super::monitor_pending_offset;
use super::ring::{MAX_RING_SIZE, RING_HEADER_SIZE, RingMemory};
use super::sys::{self, EventFd};

/// Control word: magic, [`CTRL_MAGIC_VALUE`].
pub const CTRL_MAGIC: usize = 0x00;
/// Control word: layout version (1).
pub const CTRL_VERSION: usize = 0x04;
/// Control word: number of channels laid out (primary included).
pub const CTRL_MAX_CHANNELS: usize = 0x08;
/// Control word: GPADL handle of the receive buffer.
pub const CTRL_RECEIVE_GPADL: usize = 0x0C;
/// Control word: GPADL handle of the send buffer.
pub const CTRL_SEND_GPADL: usize = 0x10;
/// Control word (host writes): subchannels offered in this session.
pub const CTRL_SUBCHANNELS_OFFERED: usize = 0x14;
/// Control word (guest writes): subchannels opened in this session.
pub const CTRL_SUBCHANNELS_OPENED: usize = 0x18;
/// Control word (guest writes): the open generation the guest asks for.
pub const CTRL_OPEN_REQUEST: usize = 0x1C;
/// Control word (host writes): the open generation the host has completed.
pub const CTRL_OPEN_ACK: usize = 0x20;
/// Control word (host writes): a [`ChannelState`] value.
pub const CTRL_STATE: usize = 0x24;
/// The value of [`CTRL_MAGIC`] ("hvnt").
pub const CTRL_MAGIC_VALUE: u32 = 0x746e_7668;

/// The largest channel count (VRSS_CHANNEL_MAX); monitor ids 0..64 use trigger groups 0 and 1.
pub const SHM_MAX_CHANNELS: u16 = 64;

/// What the host says about the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelState {
    /// Channels work.
    Alive,
    /// The host closed the channels; a reopen recovers.
    Dead,
    /// The device was removed.
    Rescinded,
}

impl ChannelState {
    fn from_word(word: u32) -> Self {
        match word {
            0 => Self::Alive,
            1 => Self::Dead,
            _ => Self::Rescinded,
        }
    }
}

/// Sizes of a shared-memory bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShmConfig {
    /// Channels laid out, primary included (1..=64).
    pub max_channels: u16,
    /// Bytes per ring (one direction), header page included: a multiple of 4096, at least
    /// 8192.
    pub ring_size: usize,
    /// Receive buffer bytes (multiple of 4096).
    pub receive_buffer_size: usize,
    /// Send buffer bytes (multiple of 4096).
    pub send_buffer_size: usize,
    /// Bytes for [`VmbusDevice::dma_memory`] (multiple of 4096; may be 0).
    pub dma_size: usize,
    /// GPADL handle of the receive buffer.
    pub receive_gpadl: u32,
    /// GPADL handle of the send buffer.
    pub send_gpadl: u32,
}

impl Default for ShmConfig {
    /// The sizes `uio_hv_generic` uses (2 MiB of ring data per direction, 31 MiB receive and
    /// 16 MiB send buffers), 8 channels and 64 MiB of DMA memory. The memfd is sparse: pages
    /// cost memory only once touched.
    fn default() -> Self {
        Self {
            max_channels: 8,
            ring_size: (2 << 20) + RING_HEADER_SIZE,
            receive_buffer_size: 31 << 20,
            send_buffer_size: 16 << 20,
            dma_size: 64 << 20,
            receive_gpadl: 0x000e_1e10,
            send_gpadl: 0x000e_1e11,
        }
    }
}

/// Where everything sits in the memfd (GPA = offset). Both sides compute it from the same
/// [`ShmConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShmLayout {
    /// Channels laid out, primary included.
    pub max_channels: u16,
    /// Bytes per ring, header included.
    pub ring_size: usize,
    /// Offset of the bus control page.
    pub control_offset: usize,
    /// Offset of the monitor page.
    pub monitor_offset: usize,
    /// Offset of channel 0's guest→host ring.
    pub rings_offset: usize,
    /// Offset of the receive buffer.
    pub receive_buffer_offset: usize,
    /// Size of the receive buffer.
    pub receive_buffer_size: usize,
    /// Offset of the send buffer.
    pub send_buffer_offset: usize,
    /// Size of the send buffer.
    pub send_buffer_size: usize,
    /// Offset of the DMA area.
    pub dma_offset: usize,
    /// Size of the DMA area.
    pub dma_size: usize,
    /// Size of the memfd.
    pub total_size: usize,
}

impl ShmLayout {
    /// Validates `config` and lays it out.
    pub fn new(config: &ShmConfig) -> Result<Self, DeviceError> {
        let bad = |what: &str| Err(DeviceError::Config(what.to_string()));
        if config.max_channels == 0 || config.max_channels > SHM_MAX_CHANNELS {
            return bad("max_channels must be 1..=64");
        }
        if !config.ring_size.is_multiple_of(PAGE_SIZE)
            || config.ring_size < 2 * PAGE_SIZE
            || config.ring_size > MAX_RING_SIZE
        {
            return bad("ring_size must be a multiple of 4096 between 8 KiB and 1 GiB");
        }
        for (size, what) in [
            (config.receive_buffer_size, "receive_buffer_size"),
            (config.send_buffer_size, "send_buffer_size"),
        ] {
            if size == 0 || !size.is_multiple_of(PAGE_SIZE) {
                return Err(DeviceError::Config(format!(
                    "{what} must be a non-zero multiple of 4096"
                )));
            }
        }
        if !config.dma_size.is_multiple_of(PAGE_SIZE) {
            return bad("dma_size must be a multiple of 4096");
        }
        if config.receive_gpadl == config.send_gpadl {
            return bad("the two GPADL handles must differ");
        }
        let rings_offset = 2 * PAGE_SIZE;
        let receive_buffer_offset =
            rings_offset + 2 * config.ring_size * usize::from(config.max_channels);
        let send_buffer_offset = receive_buffer_offset + config.receive_buffer_size;
        let dma_offset = send_buffer_offset + config.send_buffer_size;
        Ok(Self {
            max_channels: config.max_channels,
            ring_size: config.ring_size,
            control_offset: 0,
            monitor_offset: PAGE_SIZE,
            rings_offset,
            receive_buffer_offset,
            receive_buffer_size: config.receive_buffer_size,
            send_buffer_offset,
            send_buffer_size: config.send_buffer_size,
            dma_offset,
            dma_size: config.dma_size,
            total_size: dma_offset + config.dma_size,
        })
    }

    /// Offset of channel `channel`'s guest→host ring.
    pub fn outgoing_ring_offset(&self, channel: u16) -> usize {
        self.rings_offset + 2 * self.ring_size * usize::from(channel)
    }

    /// Offset of channel `channel`'s host→guest ring.
    pub fn incoming_ring_offset(&self, channel: u16) -> usize {
        self.outgoing_ring_offset(channel) + self.ring_size
    }
}

/// The eventfds of a bus.
#[derive(Debug)]
struct Signals {
    to_host: Vec<EventFd>,
    to_guest: Vec<EventFd>,
    control_to_host: EventFd,
    control_to_guest: EventFd,
}

/// The device name in errors.
const SHM_DEVICE: &str = "shm";

fn syscall(call: &'static str) -> impl FnOnce(std::io::Error) -> DeviceError {
    move |source| DeviceError::Syscall { call, source }
}

/// Everything both sides share: the memory, its layout and the eventfds.
#[derive(Clone, Debug)]
struct Shared {
    mem: SharedMemory,
    layout: ShmLayout,
    signals: Arc<Signals>,
}

impl Shared {
    fn word(&self, offset: usize) -> &AtomicU32 {
        self.mem
            .atomic_u32(self.layout.control_offset + offset)
            .expect("control words lie in the control page of a validated layout")
    }

    fn state(&self) -> ChannelState {
        ChannelState::from_word(self.word(CTRL_STATE).load(Ordering::Acquire))
    }

    /// `Ok` while the host says the device is alive.
    fn check_alive(&self) -> Result<(), DeviceError> {
        match self.state() {
            ChannelState::Alive => Ok(()),
            ChannelState::Dead => Err(DeviceError::ChannelDead {
                device: SHM_DEVICE.into(),
            }),
            ChannelState::Rescinded => Err(DeviceError::Gone {
                device: SHM_DEVICE.into(),
            }),
        }
    }

    fn check_channel(&self, channel: u16, available: u16) -> Result<(), DeviceError> {
        if channel >= available {
            return Err(DeviceError::NoSuchChannel { channel, available });
        }
        Ok(())
    }

    fn ring(&self, offset: usize) -> Result<SharedMemory, DeviceError> {
        Ok(self.mem.subregion(offset, self.layout.ring_size)?)
    }

    fn rings(&self, channel: u16) -> Result<ChannelRings, DeviceError> {
        Ok(ChannelRings {
            index: channel,
            outgoing: self.ring(self.layout.outgoing_ring_offset(channel))?,
            incoming: self.ring(self.layout.incoming_ring_offset(channel))?,
        })
    }

    fn buffer(
        &self,
        offset: usize,
        size: usize,
        gpadl_word: usize,
    ) -> Result<(SharedMemory, u32), DeviceError> {
        let gpadl = self.word(gpadl_word).load(Ordering::Relaxed);
        Ok((self.mem.subregion(offset, size)?, gpadl))
    }

    /// Sets `interrupt_mask = 1` on a channel's host→guest ring, as `uio_hv_generic` does
    /// when it opens a channel.
    fn mask_incoming(&self, channel: u16) -> Result<(), DeviceError> {
        let ring = RingMemory::new(self.ring(self.layout.incoming_ring_offset(channel))?)?;
        ring.interrupt_mask().store(1, Ordering::SeqCst);
        Ok(())
    }

    /// Waits on `fds` until one is readable or `deadline`; drains the ready eventfds and
    /// returns which were ready.
    fn wait(
        &self,
        fds: &[&EventFd],
        deadline: Instant,
        ready: &mut Vec<bool>,
    ) -> Result<(), DeviceError> {
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|e| e.as_fd()).collect();
        let remaining = deadline.saturating_duration_since(Instant::now());
        sys::poll_readable(&borrowed, remaining, ready).map_err(syscall("poll"))?;
        for (efd, &r) in fds.iter().zip(ready.iter()) {
            if r {
                efd.drain().map_err(syscall("read eventfd"))?;
            }
        }
        Ok(())
    }
}

/// A shared-memory VMBus: the memfd, its layout and the eventfds. Hands out the guest's
/// [`ShmDevice`] and the host's [`ShmHostSide`].
#[derive(Debug)]
pub struct ShmBus {
    shared: Shared,
    dma_next: Arc<Mutex<usize>>,
}

impl ShmBus {
    /// Creates the memfd and eventfds, writes the control page and opens the primary channel.
    pub fn new(config: &ShmConfig) -> Result<Self, DeviceError> {
        let layout = ShmLayout::new(config)?;
        let mem = SharedMemory::memfd("hvnet-guest-memory", layout.total_size)?;
        let channels = usize::from(layout.max_channels);
        let new_efd = || EventFd::new().map_err(syscall("eventfd"));
        let signals = Signals {
            to_host: (0..channels).map(|_| new_efd()).collect::<Result<_, _>>()?,
            to_guest: (0..channels).map(|_| new_efd()).collect::<Result<_, _>>()?,
            control_to_host: new_efd()?,
            control_to_guest: new_efd()?,
        };
        let shared = Shared {
            mem,
            layout,
            signals: Arc::new(signals),
        };
        for (word, value) in [
            (CTRL_MAGIC, CTRL_MAGIC_VALUE),
            (CTRL_VERSION, 1),
            (CTRL_MAX_CHANNELS, u32::from(config.max_channels)),
            (CTRL_RECEIVE_GPADL, config.receive_gpadl),
            (CTRL_SEND_GPADL, config.send_gpadl),
            (CTRL_OPEN_REQUEST, 1),
            (CTRL_OPEN_ACK, 1),
        ] {
            shared.word(word).store(value, Ordering::Release);
        }
        shared.mask_incoming(0)?;
        Ok(Self {
            dma_next: Arc::new(Mutex::new(shared.layout.dma_offset)),
            shared,
        })
    }

    /// The whole memfd ("guest physical memory").
    pub fn memory(&self) -> &SharedMemory {
        &self.shared.mem
    }

    /// The layout.
    pub fn layout(&self) -> &ShmLayout {
        &self.shared.layout
    }

    /// The guest's device. Like the single open `/dev/uioN` it models, use one at a time:
    /// handles share the DMA allocator, the control page and the guest's eventfds, so two
    /// handles waiting at once could take each other's wakeups.
    pub fn guest_device(&self) -> ShmDevice {
        ShmDevice {
            shared: self.shared.clone(),
            dma_next: self.dma_next.clone(),
            subchannels_open: 0,
        }
    }

    /// The host's side of the bus.
    pub fn host_side(&self) -> ShmHostSide {
        ShmHostSide {
            shared: self.shared.clone(),
        }
    }
}

/// The guest's [`VmbusDevice`] over a [`ShmBus`].
#[derive(Debug)]
pub struct ShmDevice {
    shared: Shared,
    dma_next: Arc<Mutex<usize>>,
    /// Subchannels this handle opened in the current session.
    subchannels_open: u16,
}

impl ShmDevice {
    /// Waits on the guest's control eventfd until `done` says so, the device dies or the
    /// deadline passes.
    fn wait_control(
        &self,
        timeout: Duration,
        what: &'static str,
        mut done: impl FnMut(&Shared) -> Result<bool, DeviceError>,
    ) -> Result<(), DeviceError> {
        let deadline = packet::deadline::after(Instant::now(), timeout);
        let mut ready = Vec::new();
        loop {
            if done(&self.shared)? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(DeviceError::Timeout { what, timeout });
            }
            let fds = [&self.shared.signals.control_to_guest];
            self.shared.wait(&fds, deadline, &mut ready)?;
        }
    }
}

impl VmbusDevice for ShmDevice {
    fn primary(&self) -> Result<ChannelRings, DeviceError> {
        self.shared.rings(0)
    }

    fn receive_buffer(&self) -> Result<(SharedMemory, u32), DeviceError> {
        let l = &self.shared.layout;
        self.shared.buffer(
            l.receive_buffer_offset,
            l.receive_buffer_size,
            CTRL_RECEIVE_GPADL,
        )
    }

    fn send_buffer(&self) -> Result<(SharedMemory, u32), DeviceError> {
        let l = &self.shared.layout;
        self.shared
            .buffer(l.send_buffer_offset, l.send_buffer_size, CTRL_SEND_GPADL)
    }

    fn doorbell(&self, channel: u16) -> Result<Arc<dyn Doorbell>, DeviceError> {
        self.shared
            .check_channel(channel, 1 + self.subchannels_open)?;
        Ok(Arc::new(ShmDoorbell {
            shared: self.shared.clone(),
            channel,
        }))
    }

    fn open_subchannels(
        &mut self,
        count: u16,
        timeout: Duration,
    ) -> Result<Vec<ChannelRings>, DeviceError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        if self.subchannels_open != 0 {
            return Err(DeviceError::Config(
                "subchannels are one-shot per session: reopen before opening them again".into(),
            ));
        }
        self.shared
            .check_channel(count, self.shared.layout.max_channels)?;
        self.wait_control(timeout, "the host to offer subchannels", |s| {
            s.check_alive()?;
            Ok(s.word(CTRL_SUBCHANNELS_OFFERED).load(Ordering::Acquire) >= u32::from(count))
        })?;
        let rings = (1..=count)
            .map(|i| {
                self.shared.mask_incoming(i)?;
                self.shared.rings(i)
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Release: the masks written above are visible to a host that sees the count.
        self.shared
            .word(CTRL_SUBCHANNELS_OPENED)
            .store(u32::from(count), Ordering::Release);
        self.subchannels_open = count;
        self.shared
            .signals
            .control_to_host
            .signal()
            .map_err(syscall("write eventfd"))?;
        Ok(rings)
    }

    fn wait_for_interrupt(&self, timeout: Duration) -> Result<bool, DeviceError> {
        let deadline = packet::deadline::after(Instant::now(), timeout);
        let signals = &self.shared.signals;
        let open = usize::from(1 + self.subchannels_open);
        let fds: Vec<&EventFd> = signals.to_guest[..open]
            .iter()
            .chain([&signals.control_to_guest])
            .collect();
        let mut ready = Vec::new();
        loop {
            self.shared.check_alive()?;
            self.shared.wait(&fds, deadline, &mut ready)?;
            if ready[..open].iter().any(|&r| r) {
                self.shared.check_alive()?;
                return Ok(true);
            }
            if Instant::now() >= deadline {
                self.shared.check_alive()?;
                return Ok(false);
            }
        }
    }

    fn reopen(&mut self, timeout: Duration) -> Result<(), DeviceError> {
        if self.shared.state() == ChannelState::Rescinded {
            return Err(DeviceError::Gone {
                device: SHM_DEVICE.into(),
            });
        }
        // Close: withdraw the subchannels, then ask for the next generation.
        self.shared
            .word(CTRL_SUBCHANNELS_OPENED)
            .store(0, Ordering::Release);
        self.subchannels_open = 0;
        let generation = self
            .shared
            .word(CTRL_OPEN_REQUEST)
            .load(Ordering::Acquire)
            .wrapping_add(1);
        self.shared
            .word(CTRL_OPEN_REQUEST)
            .store(generation, Ordering::Release);
        self.shared
            .signals
            .control_to_host
            .signal()
            .map_err(syscall("write eventfd"))?;
        self.wait_control(timeout, "the host to reopen the channel", |s| {
            if s.state() == ChannelState::Rescinded {
                return Err(DeviceError::Gone {
                    device: SHM_DEVICE.into(),
                });
            }
            Ok(s.word(CTRL_OPEN_ACK).load(Ordering::Acquire) == generation)
        })?;
        self.shared.mask_incoming(0)
    }

    fn dma_memory(&mut self, size: usize) -> Result<SharedMemory, DeviceError> {
        let layout = &self.shared.layout;
        let requested = size.max(1).next_multiple_of(PAGE_SIZE);
        let mut next = self.dma_next.lock();
        let available = layout.dma_offset + layout.dma_size - *next;
        if requested > available {
            return Err(DeviceError::OutOfMemory {
                requested,
                available,
            });
        }
        let mem = self.shared.mem.subregion(*next, requested)?;
        *next += requested;
        Ok(mem)
    }
}

/// A guest doorbell of a [`ShmBus`] channel: sets the monitor pending bit, then kicks the
/// channel's guest→host eventfd.
#[derive(Debug)]
struct ShmDoorbell {
    shared: Shared,
    channel: u16,
}

impl Doorbell for ShmDoorbell {
    fn signal(&self) -> Result<(), DeviceError> {
        let group = usize::from(self.channel) / 32;
        let word = self
            .shared
            .mem
            .atomic_u32(self.shared.layout.monitor_offset + monitor_pending_offset(group))?;
        // SeqCst: the ring writes before this doorbell are ordered before the bit, for a host
        // that polls the monitor page and then reads the ring.
        word.fetch_or(1 << (self.channel % 32), Ordering::SeqCst);
        self.shared.signals.to_host[usize::from(self.channel)]
            .signal()
            .map_err(syscall("write eventfd"))
    }
}

mod host;

pub use host::{GuestSignals, ShmHostSide};

#[cfg(test)]
mod tests;
