//! The control handle of a kernel VF: link and removal from the interface, stop, release.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use packet::MacAddr;
use packet::netdev;
use parking_lot::Mutex;

use super::Shared;
use crate::device::DeviceError;
use crate::port::{VfEvent, VfPort, VfPortStats};

/// Link monitor messages read per `service` at most (each is one interface change).
const MONITOR_DRAIN: usize = 256;

/// What open changed on the interface, undone at release.
#[derive(Debug)]
pub(super) struct Restore {
    /// The interface's index (it is restored only if it is still there).
    pub index: u32,
    /// Its MTU before open, if open changed it.
    pub mtu: Option<u32>,
    /// Whether open brought it up.
    pub brought_up: bool,
    /// The fence keeping the kernel's stack off the VF, if open raised one.
    pub fence: Option<super::fence::Fence>,
}

impl Restore {
    /// Undoes what open changed on interface `name`; nothing if the interface is gone.
    pub fn apply(&mut self, name: &str) -> io::Result<()> {
        // The fence's table outlives its interface: it goes in any case.
        if let Some(fence) = self.fence.take() {
            super::fence::lower(fence);
        }
        if netdev::interface_name(self.index)?.as_deref() != Some(name) {
            return Ok(());
        }
        if let Some(mtu) = self.mtu.take() {
            netdev::set_mtu(name, mtu)?;
        }
        if std::mem::take(&mut self.brought_up) {
            netdev::set_interface_up(name, false)?;
        }
        Ok(())
    }
}

/// What `service` compares against.
#[derive(Debug)]
struct State {
    /// The interface's current name (followed through renames).
    name: String,
    link_up: bool,
    removed: bool,
    released: bool,
    restore: Restore,
    monitor: Option<OwnedFd>,
    /// Scratch for link monitor messages.
    scratch: Vec<u8>,
}

/// The control handle of a kernel VF (see the module docs).
#[derive(Debug)]
pub struct KernelVfPort {
    shared: Arc<Shared>,
    mac: MacAddr,
    link_up: AtomicBool,
    state: Mutex<State>,
}

impl KernelVfPort {
    pub(super) fn new(
        shared: Arc<Shared>,
        mac: MacAddr,
        monitor: OwnedFd,
        restore: Restore,
        link_up: bool,
    ) -> Self {
        let name = shared.ifname.clone();
        Self {
            shared,
            mac,
            link_up: AtomicBool::new(link_up),
            state: Mutex::new(State {
                name,
                link_up,
                removed: false,
                released: false,
                restore,
                monitor: Some(monitor),
                scratch: vec![0; 8192],
            }),
        }
    }

    /// The interface's name now (it follows renames).
    pub fn ifname(&self) -> String {
        self.state.lock().name.clone()
    }

    /// The interface's index.
    pub fn ifindex(&self) -> u32 {
        self.state.lock().restore.index
    }

    /// What the AF_XDP transport ended up with (native or generic XDP, zero-copy or copy);
    /// `None` with a packet socket.
    pub fn xdp_info(&self) -> Option<super::XdpInfo> {
        self.shared.xdp.as_ref().map(|x| x.info)
    }

    /// Compares the interface with `state`; the events that makes.
    fn look(&self, state: &mut State) -> Vec<VfEvent> {
        if state.removed || state.released {
            return Vec::new();
        }
        self.shared.socket_error.store(false, Ordering::Release);
        let name = match netdev::interface_name(state.restore.index) {
            Ok(Some(name)) => name,
            Ok(None) => return self.removed(state),
            Err(error) => {
                tracing::warn!(target: "hvnet::vf", ifname = state.name, %error, "looking up the VF");
                return Vec::new();
            }
        };
        if name != state.name {
            tracing::info!(target: "hvnet::vf", from = state.name, to = name, "the VF was renamed");
            state.name = name;
        }
        let running = match netdev::interface_flags(&state.name) {
            Ok(flags) => flags.up() && flags.running(),
            // Gone between the two calls (or renamed again): the next look tells which.
            Err(_) => match netdev::interface_name(state.restore.index) {
                Ok(None) => return self.removed(state),
                _ => return Vec::new(),
            },
        };
        if running == state.link_up {
            return Vec::new();
        }
        state.link_up = running;
        self.link_up.store(running, Ordering::Release);
        vec![if running {
            VfEvent::LinkUp
        } else {
            VfEvent::LinkDown
        }]
    }

    fn removed(&self, state: &mut State) -> Vec<VfEvent> {
        tracing::warn!(target: "hvnet::vf", ifname = state.name, "the VF's interface is gone");
        state.removed = true;
        state.link_up = false;
        self.link_up.store(false, Ordering::Release);
        // Nothing restored for an interface that is gone.
        state.restore.mtu = None;
        state.restore.brought_up = false;
        if let Some(fence) = state.restore.fence.take() {
            super::fence::lower(fence);
        }
        vec![VfEvent::Removed]
    }

    /// Adds the kernel's drops on the socket since the last look to `rx_no_buffer` (the
    /// AF_XDP sockets' are read with their counters).
    fn collect_drops(&self) {
        let socket = self.shared.socket.read();
        if let Some(fd) = socket.as_ref()
            && let Ok(drops) = netdev::packet_socket_drops(fd.as_fd())
            && drops > 0
        {
            self.shared
                .counters
                .rx_no_buffer
                .fetch_add(drops, Ordering::Relaxed);
        }
    }
}

impl VfPort for KernelVfPort {
    fn mac(&self) -> MacAddr {
        self.mac
    }

    fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Acquire)
    }

    fn queue_count(&self) -> u16 {
        self.shared.xdp.as_ref().map_or(1, |x| x.info.queues)
    }

    /// Looks at the interface; when nothing changed, waits at most `timeout` for the link
    /// monitor (any interface change in the namespace, or the queue's socket reporting an
    /// error within the monitor's wait) and looks again.
    fn service(&self, timeout: Duration) -> Vec<VfEvent> {
        self.collect_drops();
        let mut state = self.state.lock();
        let events = self.look(&mut state);
        if !events.is_empty() || timeout.is_zero() || state.removed || state.released {
            return events;
        }
        let Some(monitor) = state.monitor.take() else {
            return events;
        };
        match netdev::wait_readable(monitor.as_fd(), timeout) {
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(target: "hvnet::vf", %error, "waiting on the link monitor");
            }
        }
        // Every message only says "something changed": read them all, then look once.
        for _ in 0..MONITOR_DRAIN {
            match netdev::recv_frame(monitor.as_fd(), &mut state.scratch) {
                Ok(_) => {}
                // Would block; or the monitor overflowed (ENOBUFS), which the look covers.
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        state.monitor = Some(monitor);
        self.look(&mut state)
    }

    /// Stops the queues. With a packet socket there is nothing to wait for: frames `send()`
    /// accepted are the kernel's, which transmits them or counts them in the interface's
    /// `tx_dropped`; frames still in the socket's receive queue are not handed out any more
    /// (a planned removal drains them before it stops the VF). With AF_XDP the frames on
    /// each TX ring are waited for (at most `timeout`) and what did not complete is counted
    /// in `tx_lost`; frames left on an RX ring are counted in `rx_dropped_reset`.
    fn stop(&self, timeout: Duration) -> Result<(), DeviceError> {
        self.shared.stopped.store(true, Ordering::Release);
        if let Some(xdp) = &self.shared.xdp {
            xdp.stop(std::time::Instant::now() + timeout);
        }
        Ok(())
    }

    /// Closes the socket (once any burst in progress is over) and the link monitor, and
    /// restores the MTU and administrative state open changed, unless the interface is gone.
    fn release(&self) -> Result<(), DeviceError> {
        self.shared.stopped.store(true, Ordering::Release);
        self.collect_drops();
        drop(self.shared.socket.write().take());
        if let Some(xdp) = &self.shared.xdp {
            xdp.release();
        }
        let mut state = self.state.lock();
        if state.released {
            return Ok(());
        }
        state.released = true;
        state.monitor = None;
        self.link_up.store(false, Ordering::Release);
        let name = state.name.clone();
        state
            .restore
            .apply(&name)
            .map_err(|source| DeviceError::Io {
                device: name,
                op: "restoring the interface's MTU and state",
                source,
            })
    }

    fn stats(&self) -> VfPortStats {
        self.collect_drops();
        if let Some(xdp) = &self.shared.xdp {
            let c = xdp.counters();
            return VfPortStats {
                rx_packets: c.rx_packets,
                rx_bytes: c.rx_bytes,
                tx_packets: c.tx_packets,
                tx_bytes: c.tx_bytes,
                rx_descriptor_errors: c.rx_descriptor_errors,
                rx_frame_errors: c.rx_frame_errors,
                rx_no_buffer: c.rx_no_buffer,
                rx_dropped_reset: c.rx_dropped_stop,
                tx_lost: c.tx_lost,
                ..VfPortStats::default()
            };
        }
        let c = &self.shared.counters;
        let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        VfPortStats {
            rx_packets: get(&c.rx_packets),
            rx_bytes: get(&c.rx_bytes),
            tx_packets: get(&c.tx_packets),
            tx_bytes: get(&c.tx_bytes),
            rx_frame_errors: get(&c.rx_frame_errors),
            rx_no_buffer: get(&c.rx_no_buffer),
            tx_lost: get(&c.tx_lost),
            ..VfPortStats::default()
        }
    }
}
