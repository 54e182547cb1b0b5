//! `hvnet run --tap NAME`: the port as a kernel network interface.
//!
//! A multi-queue TAP device with one queue per port queue: each poller moves frames between
//! its port queue and its TAP queue, both ways, in bursts. The device gets the synthetic NIC's
//! MAC and MTU, is brought up, and its carrier follows the port's link. It exists while `run`
//! runs: the kernel removes it when the last queue closes.
//!
//! Frames the port does not take are dropped and counted (TX-dropped); received frames the
//! TAP queue cannot take (its queue full) are dropped and counted (TAP-dropped). Nothing
//! waits on the kernel.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;

use anyhow::Context;
use packet::{MacAddr, netdev};

use super::capture::Capture;
use super::poller::{BURST, Lane, Scratch};

/// The TAP device: one file per queue.
#[derive(Debug)]
pub struct Tap {
    name: String,
    queues: Vec<File>,
}

impl Tap {
    /// Creates `name` with `queues` queues, the port's `mac` and `mtu`, carrier `link_up`,
    /// and brings it up.
    pub fn create(
        name: &str,
        queues: u16,
        mac: MacAddr,
        mtu: usize,
        link_up: bool,
    ) -> anyhow::Result<Self> {
        let fds = netdev::open_tap(name, queues).with_context(|| {
            format!("creating the TAP device {name} with {queues} queue(s) (needs CAP_NET_ADMIN and /dev/net/tun)")
        })?;
        let tap = Self {
            name: name.to_string(),
            queues: fds.into_iter().map(File::from).collect(),
        };
        netdev::set_mac(name, mac).with_context(|| format!("setting the MAC of {name}"))?;
        netdev::set_mtu(name, mtu as u32).with_context(|| format!("setting the MTU of {name}"))?;
        tap.set_carrier(link_up)?;
        netdev::set_interface_up(name, true).with_context(|| format!("bringing {name} up"))?;
        Ok(tap)
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the carrier (the port's link, as the kernel sees it).
    pub fn set_carrier(&self, up: bool) -> anyhow::Result<()> {
        netdev::set_tap_carrier(self.queues[0].as_fd(), up)
            .with_context(|| format!("setting the carrier of {}", self.name))
    }

    /// Takes the queue files, one per port queue, for the pollers.
    pub fn take_queues(&mut self) -> Vec<File> {
        // The first stays open here too, for the carrier.
        let mut queues = Vec::with_capacity(self.queues.len());
        for q in &self.queues {
            match q.try_clone() {
                Ok(f) => queues.push(f),
                Err(e) => tracing::error!("duplicating a TAP queue: {e}"),
            }
        }
        queues
    }
}

/// One round between a port queue and its TAP queue: a burst each way (only to the kernel
/// while `draining`). How many frames moved.
pub fn round(
    lane: &mut Lane,
    mut tap: &File,
    scratch: &mut Scratch,
    capture: Option<&Capture>,
    draining: bool,
) -> usize {
    // The kernel's frames to the port.
    let mut from_kernel = 0;
    while !draining && scratch.burst.len() < BURST {
        let Some(mut p) = lane.pool.alloc() else {
            break;
        };
        p.set_len(p.max_len());
        match tap.read(p.data_mut()) {
            Ok(n) if n > 0 => {
                p.set_len(n);
                scratch.burst.push(p);
                from_kernel += 1;
            }
            // Would block, or the device is down (EIO): nothing more now.
            _ => break,
        }
    }
    lane.transmit(scratch, capture);

    // The port's frames to the kernel.
    let received = lane.receive(scratch, capture);
    let mut refused = 0;
    for p in scratch.burst.drain(..) {
        match tap.write(p.data()) {
            Ok(n) if n == p.len() => {}
            Ok(_) | Err(_) => refused += 1,
        }
    }
    lane.counters.to_kernel_dropped(refused);
    if draining && received == 0 {
        lane.counters.quiet_round();
    }
    from_kernel + received
}
