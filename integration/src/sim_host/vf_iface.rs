//! The VF's port on a kernel interface: a client's VF path that is a real netdev.
//!
//! The host takes one end of a veth pair (`--vf-iface NAME`); the client uses the other end,
//! which carries the synthetic NIC's MAC, as its VF (DPDK's netvsc PMD adopts any port with
//! that MAC, e.g. `net_af_packet` on it). A packet socket on the host's end is the VF's wire in
//! the vSwitch: frames steered to the VF are written into it (and arrive on the client's end),
//! and what the client sends on its end is read from it and leaves through the VF uplink, as
//! a VF's transmissions do.
//!
//! The interface stands for the device, so the host drives its link: down until a VF is
//! offered, up while one is, down again when it is removed or fails; the flags it found are
//! restored when the port is dropped. Two ways the device goes:
//! - [`unplug`](VfIfacePort::unplug): the wire leaves the switch (steering falls back to the
//!   synthetic path at once) and the link goes down;
//! - [`fail`](VfIfacePort::fail): the link goes down but the switch still steers to it,
//!   as a host that has not noticed yet does: each such frame is refused and counted
//!   (`rx_dropped_vf`, and `to_vf_dropped` here).
//!
//! A frame the interface does not take at once is dropped and counted, never waited for.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;

use crate::host::{SimHost, VfUplink, VfWire};

use packet::netdev;

/// How long the reader waits for a frame before it looks at the stop flag again.
const TICK: Duration = Duration::from_millis(10);
/// Largest frame read (jumbo).
const MAX_FRAME: usize = 9018;
/// The credit a paced sender gets: the kernel gives no count of the client's free slots, and
/// a frame the interface cannot take is counted, not lost silently.
const ROOM: usize = 256;

/// Counters of the VF port.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VfIfaceStats {
    /// Frames steered to the VF and written into the interface.
    pub to_vf: u64,
    /// Frames steered to the VF the interface refused (down, or its queue full).
    pub to_vf_dropped: u64,
    /// Frames the client sent on the VF, handed to the VF uplink.
    pub from_vf: u64,
    /// Times the VF was plugged in (offered).
    pub plugged: u64,
    /// Times it was unplugged (removed).
    pub unplugged: u64,
    /// Times it failed (surprise removal).
    pub failed: u64,
}

#[derive(Debug, Default)]
struct Counters {
    to_vf: AtomicU64,
    to_vf_dropped: AtomicU64,
    from_vf: AtomicU64,
    plugged: AtomicU64,
    unplugged: AtomicU64,
    failed: AtomicU64,
}

/// The vSwitch's side of the port.
#[derive(Debug)]
struct Wire {
    socket: Arc<File>,
    counters: Arc<Counters>,
    uplink: VfUplink,
    /// Held while frames move from the socket to the uplink (by the reader thread, or by the
    /// host thread through `pump_uplink`), so they leave in the order the client sent them;
    /// holds the frame buffer.
    reading: Mutex<Vec<u8>>,
}

impl Wire {
    /// Moves every frame waiting on the socket to the uplink; how many.
    fn pump(&self) -> usize {
        let mut frame = self.reading.lock();
        let mut moved = 0;
        loop {
            match (&*self.socket).read(&mut frame) {
                Ok(0) => break,
                Ok(n) => {
                    self.counters.from_vf.fetch_add(1, Ordering::Relaxed);
                    self.uplink.transmit(0, &frame[..n]);
                    moved += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Would block, or the interface is down: nothing to read now.
                Err(_) => break,
            }
        }
        moved
    }
}

impl VfWire for Wire {
    fn deliver(&self, _queue: u16, frame: &[u8]) -> bool {
        let ok = matches!((&*self.socket).write(frame), Ok(n) if n == frame.len());
        let counter = if ok {
            &self.counters.to_vf
        } else {
            &self.counters.to_vf_dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
        ok
    }

    fn flush(&self, _timeout: Duration) -> bool {
        // A write hands the frame to the client's end before it returns.
        true
    }

    fn queues(&self) -> u16 {
        1
    }

    fn room(&self, _queue: u16) -> usize {
        ROOM
    }

    fn pump_uplink(&self) {
        self.pump();
    }
}

/// The VF port on interface `name`; dropping it detaches the wire, stops the reader and
/// restores the interface's link.
#[derive(Debug)]
pub struct VfIfacePort {
    name: String,
    host: Arc<SimHost>,
    wire: Arc<Wire>,
    was_up: bool,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl VfIfacePort {
    /// Opens the port on interface `name` (which must exist) for `host`; the link goes down
    /// until a VF is plugged in.
    pub fn open(name: &str, host: Arc<SimHost>) -> io::Result<Self> {
        let socket = Arc::new(File::from(netdev::open_packet_socket(name)?));
        let was_up = netdev::set_interface_up(name, false)?;
        let wire = Arc::new(Wire {
            socket,
            counters: Arc::new(Counters::default()),
            uplink: host.vf_uplink(),
            reading: Mutex::new(vec![0u8; MAX_FRAME]),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (wire, stop) = (wire.clone(), stop.clone());
            std::thread::Builder::new()
                .name("sim-vf-iface".into())
                .spawn(move || read_uplink(&wire, &stop))
        };
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => {
                let _ = netdev::set_interface_up(name, was_up);
                return Err(e);
            }
        };
        Ok(Self {
            name: name.to_string(),
            host,
            wire,
            was_up,
            stop,
            thread: Some(thread),
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device arrives: the link comes up and the wire joins the switch.
    pub fn plug(&self) -> io::Result<()> {
        netdev::set_interface_up(&self.name, true)?;
        self.host.attach_vf_wire(self.wire.clone());
        self.wire.counters.plugged.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The device goes: the wire leaves the switch, then the link goes down.
    pub fn unplug(&self) -> io::Result<()> {
        self.host.detach_vf_wire();
        netdev::set_interface_up(&self.name, false)?;
        self.wire.counters.unplugged.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The device dies under the host: the link goes down, the switch keeps steering to it.
    pub fn fail(&self) -> io::Result<()> {
        netdev::set_interface_up(&self.name, false)?;
        self.wire.counters.failed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The port's counters.
    pub fn stats(&self) -> VfIfaceStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.wire.counters;
        VfIfaceStats {
            to_vf: get(&c.to_vf),
            to_vf_dropped: get(&c.to_vf_dropped),
            from_vf: get(&c.from_vf),
            plugged: get(&c.plugged),
            unplugged: get(&c.unplugged),
            failed: get(&c.failed),
        }
    }
}

impl Drop for VfIfacePort {
    fn drop(&mut self) {
        self.host.detach_vf_wire();
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Err(e) = netdev::set_interface_up(&self.name, self.was_up) {
            tracing::warn!("sim-host: restoring the link of {}: {e}", self.name);
        }
    }
}

/// Moves what the client sends on its end to the VF uplink until `stop` (the host thread
/// does the same before it reads the guest's rings).
fn read_uplink(wire: &Wire, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        wire.pump();
        if let Err(e) = netdev::wait_readable(wire.socket.as_fd(), TICK) {
            tracing::warn!("sim-host vf port: {e}");
            std::thread::sleep(TICK);
        }
    }
}
