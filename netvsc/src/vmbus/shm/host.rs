//! The host's side of a shared-memory bus: what a VMBus server and NetVSP see and do. It uses
//! only the memfd bytes and the eventfds (see the parent module for the control page
//! handshakes).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use packet::SharedMemory;

use super::{
    CTRL_OPEN_ACK, CTRL_OPEN_REQUEST, CTRL_RECEIVE_GPADL, CTRL_SEND_GPADL, CTRL_STATE,
    CTRL_SUBCHANNELS_OFFERED, CTRL_SUBCHANNELS_OPENED, ChannelState, EventFd, Shared, ShmLayout,
    syscall,
};
use crate::vmbus::channel::DeviceError;
use crate::vmbus::{
    MONITOR_LATENCY_UNIT, MONITOR_TRIGGER_GROUPS, monitor_latency_offset, monitor_pending_offset,
};

/// What woke the host in [`ShmHostSide::wait_guest_signal`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestSignals {
    /// Bit `i`: channel `i`'s doorbell rang.
    pub channels: u64,
    /// The guest changed the control page (opened subchannels, asked for a reopen).
    pub control: bool,
}

impl GuestSignals {
    /// Whether nothing was signalled (the wait timed out).
    pub fn is_empty(&self) -> bool {
        self.channels == 0 && !self.control
    }

    /// The channels whose doorbell rang.
    pub fn channels(&self) -> impl Iterator<Item = u16> + '_ {
        (0..64u16).filter(|&c| self.channels & (1 << c) != 0)
    }
}

/// The host's side of a [`ShmBus`](super::ShmBus): the memfd, the layout, the eventfds, and the control plane
/// operations a VMBus server performs. Cloneable and shareable between host threads.
#[derive(Clone, Debug)]
pub struct ShmHostSide {
    pub(super) shared: Shared,
}

impl ShmHostSide {
    /// The whole memfd ("guest physical memory", GPA = offset).
    pub fn memory(&self) -> &SharedMemory {
        &self.shared.mem
    }

    /// The layout.
    pub fn layout(&self) -> &ShmLayout {
        &self.shared.layout
    }

    /// Channel `channel`'s guest→host ring: the host consumes it with an
    /// [`IncomingRing`](crate::vmbus::IncomingRing).
    pub fn guest_outgoing_ring(&self, channel: u16) -> Result<SharedMemory, DeviceError> {
        self.shared
            .check_channel(channel, self.shared.layout.max_channels)?;
        self.shared
            .ring(self.shared.layout.outgoing_ring_offset(channel))
    }

    /// Channel `channel`'s host→guest ring: the host produces into it with an
    /// [`OutgoingRing`](crate::vmbus::OutgoingRing) (`init_header = true` when it opens the channel).
    pub fn guest_incoming_ring(&self, channel: u16) -> Result<SharedMemory, DeviceError> {
        self.shared
            .check_channel(channel, self.shared.layout.max_channels)?;
        self.shared
            .ring(self.shared.layout.incoming_ring_offset(channel))
    }

    /// The memory a GPADL handle names (the receive or send buffer), as the guest's NVSP 101
    /// and 104 messages refer to it; `None` for an unknown handle.
    pub fn gpadl(&self, handle: u32) -> Option<SharedMemory> {
        let l = &self.shared.layout;
        let (offset, size) =
            if handle == self.shared.word(CTRL_RECEIVE_GPADL).load(Ordering::Relaxed) {
                (l.receive_buffer_offset, l.receive_buffer_size)
            } else if handle == self.shared.word(CTRL_SEND_GPADL).load(Ordering::Relaxed) {
                (l.send_buffer_offset, l.send_buffer_size)
            } else {
                return None;
            };
        self.shared.mem.subregion(offset, size).ok()
    }

    /// Waits until the guest rings any doorbell or kicks the control eventfd, or `timeout`
    /// passes (then the result is empty). Drains what it reports.
    pub fn wait_guest_signal(&self, timeout: Duration) -> Result<GuestSignals, DeviceError> {
        let deadline = packet::deadline::after(Instant::now(), timeout);
        let signals = &self.shared.signals;
        let fds: Vec<&EventFd> = signals
            .to_host
            .iter()
            .chain([&signals.control_to_host])
            .collect();
        let mut ready = Vec::new();
        self.shared.wait(&fds, deadline, &mut ready)?;
        let n = signals.to_host.len();
        Ok(GuestSignals {
            channels: ready[..n]
                .iter()
                .enumerate()
                .filter(|(_, r)| **r)
                .fold(0, |acc, (i, _)| acc | 1 << i),
            control: ready[n],
        })
    }

    /// The shortest latency the guest asked for in the monitor page over the bus's channels
    /// (monitor id = channel index), or `None` if it wrote none: a host that honours the
    /// monitor page polls its trigger bits at least this often.
    pub fn monitor_latency(&self) -> Result<Option<Duration>, DeviceError> {
        let base = self.shared.layout.monitor_offset;
        let mut shortest: Option<u16> = None;
        for id in (0..usize::from(self.shared.layout.max_channels)).step_by(2) {
            // Two neighbouring u16 entries in one aligned word: the guest may write either.
            let word = self
                .shared
                .mem
                .atomic_u32(base + monitor_latency_offset(id))?
                .load(Ordering::Relaxed);
            for entry in [word as u16, (word >> 16) as u16] {
                if entry != 0 {
                    shortest = Some(shortest.map_or(entry, |s| s.min(entry)));
                }
            }
        }
        Ok(shortest.map(|units| MONITOR_LATENCY_UNIT * u32::from(units)))
    }

    /// Takes and clears the monitor page's pending bits (bit `i` = channel `i`), as a host
    /// polling the monitor page does.
    pub fn take_monitor_pending(&self) -> Result<u64, DeviceError> {
        let mut bits = 0u64;
        let groups = usize::from(self.shared.layout.max_channels).div_ceil(32);
        for group in 0..groups.min(MONITOR_TRIGGER_GROUPS) {
            let word = self
                .shared
                .mem
                .atomic_u32(self.shared.layout.monitor_offset + monitor_pending_offset(group))?;
            bits |= u64::from(word.swap(0, Ordering::AcqRel)) << (32 * group);
        }
        Ok(bits)
    }

    /// Interrupts the guest on channel `channel`. The ring rules (interrupt mask, empty before
    /// the write) decide whether to call this.
    pub fn signal_guest(&self, channel: u16) -> Result<(), DeviceError> {
        self.shared
            .check_channel(channel, self.shared.layout.max_channels)?;
        self.shared.signals.to_guest[usize::from(channel)]
            .signal()
            .map_err(syscall("write eventfd"))
    }

    /// Offers subchannels 1..=`count` (after completing NVSP 133): zeroes the rings of the
    /// newly offered ones, publishes the count and kicks the guest. Offers only grow within a
    /// session.
    pub fn offer_subchannels(&self, count: u16) -> Result<(), DeviceError> {
        self.shared
            .check_channel(count, self.shared.layout.max_channels)?;
        let offered = self.subchannels_offered();
        if count < offered {
            return Err(DeviceError::Config(format!(
                "cannot withdraw offers ({offered} offered, {count} asked) without a reopen"
            )));
        }
        for channel in offered + 1..=count {
            self.zero_channel(channel)?;
        }
        // Release: the zeroed rings are visible to a guest that sees the count.
        self.shared
            .word(CTRL_SUBCHANNELS_OFFERED)
            .store(u32::from(count), Ordering::Release);
        self.kick_guest_control()
    }

    /// Subchannels offered in this session.
    pub fn subchannels_offered(&self) -> u16 {
        self.clamp_channels(
            self.shared
                .word(CTRL_SUBCHANNELS_OFFERED)
                .load(Ordering::Acquire),
        )
    }

    /// Subchannels the guest has opened in this session (serve channels 1..=this).
    pub fn subchannels_opened(&self) -> u16 {
        self.clamp_channels(
            self.shared
                .word(CTRL_SUBCHANNELS_OPENED)
                .load(Ordering::Acquire),
        )
    }

    fn clamp_channels(&self, word: u32) -> u16 {
        word.min(u32::from(self.shared.layout.max_channels - 1)) as u16
    }

    /// The generation the guest asked to reopen, if it has not been acknowledged yet.
    pub fn pending_reopen(&self) -> Option<u32> {
        let request = self.shared.word(CTRL_OPEN_REQUEST).load(Ordering::Acquire);
        (request != self.generation()).then_some(request)
    }

    /// The open generation last acknowledged (1 after [`ShmBus::new`](super::ShmBus::new)).
    pub fn generation(&self) -> u32 {
        self.shared.word(CTRL_OPEN_ACK).load(Ordering::Acquire)
    }

    /// Completes a reopen in one step: [`prepare_reopen`](Self::prepare_reopen), then
    /// [`finish_reopen`](Self::finish_reopen), for a host with nothing to set up between.
    pub fn acknowledge_reopen(&self, generation: u32) -> Result<(), DeviceError> {
        self.prepare_reopen()?;
        self.finish_reopen(generation)
    }

    /// The first half of a reopen; the host must have dropped its ring ends first. Zeroes the
    /// rings of every channel used this session, withdraws subchannel offers and turns a dead
    /// device alive (a rescinded one stays rescinded). The guest still waits.
    pub fn prepare_reopen(&self) -> Result<(), DeviceError> {
        let used = self.subchannels_offered().max(self.subchannels_opened());
        for channel in 0..=used {
            self.zero_channel(channel)?;
        }
        self.shared
            .word(CTRL_SUBCHANNELS_OFFERED)
            .store(0, Ordering::Release);
        let _ = self.shared.word(CTRL_STATE).compare_exchange(
            1,
            0,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        Ok(())
    }

    /// The second half of a reopen, once the host's new session is ready to be talked to
    /// (its primary channel open): writes the ack and kicks the guest.
    pub fn finish_reopen(&self, generation: u32) -> Result<(), DeviceError> {
        // Release: zeroed rings, the cleared state and whatever the host wrote into the rings
        // since are visible to a guest that sees the ack.
        self.shared
            .word(CTRL_OPEN_ACK)
            .store(generation, Ordering::Release);
        self.kick_guest_control()
    }

    /// The device state the host has set.
    pub fn state(&self) -> ChannelState {
        self.shared.state()
    }

    /// Closes the channels from the host side (a dead host channel): guest waits fail with
    /// [`DeviceError::ChannelDead`] until it reopens.
    pub fn mark_dead(&self) -> Result<(), DeviceError> {
        self.set_state(1)
    }

    /// Removes the device for good: guest waits fail with [`DeviceError::Gone`].
    pub fn rescind(&self) -> Result<(), DeviceError> {
        self.set_state(2)
    }

    fn set_state(&self, state: u32) -> Result<(), DeviceError> {
        self.shared.word(CTRL_STATE).store(state, Ordering::Release);
        // Every guest wait polls the control eventfd too.
        self.kick_guest_control()
    }

    fn kick_guest_control(&self) -> Result<(), DeviceError> {
        self.shared
            .signals
            .control_to_guest
            .signal()
            .map_err(syscall("write eventfd"))
    }

    fn zero_channel(&self, channel: u16) -> Result<(), DeviceError> {
        for offset in [
            self.shared.layout.outgoing_ring_offset(channel),
            self.shared.layout.incoming_ring_offset(channel),
        ] {
            self.shared
                .mem
                .fill(offset, self.shared.layout.ring_size, 0)?;
        }
        Ok(())
    }
}
