//! The vSwitch's external port as a TAP device: the kernel stack behind the host.
//!
//! Frames the kernel sends into the TAP reach the client as if from the external network
//! (on the queue a vSwitch picks); frames the client transmits come out of the TAP. A thread
//! moves them both ways; a frame the TAP cannot take now (its queue is full) is dropped and
//! counted, never waited for, so the host is never held up by the kernel. The device's
//! carrier follows the host's link (`ctl link up|down`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::host::SimHost;

use packet::netdev;

/// How long the bridge waits for the kernel before it looks at the guest's frames again.
const TICK: Duration = Duration::from_millis(1);
/// Largest frame read from the TAP (jumbo).
const MAX_FRAME: usize = 9018;

/// Counters of the TAP port.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TapStats {
    /// Frames from the kernel handed to the vSwitch.
    pub to_guest: u64,
    /// Of those, refused by the vSwitch (counted there by reason too).
    pub to_guest_refused: u64,
    /// Frames from the guest written into the TAP.
    pub from_guest: u64,
    /// Frames from the guest the TAP could not take (its queue full, or down).
    pub from_guest_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    to_guest: AtomicU64,
    to_guest_refused: AtomicU64,
    from_guest: AtomicU64,
    from_guest_dropped: AtomicU64,
}

/// A running TAP port; dropping it stops the bridge and removes the device.
#[derive(Debug)]
pub struct TapPort {
    name: String,
    tap: Arc<File>,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl TapPort {
    /// Creates the TAP device `name` and bridges it to `host`'s external port.
    pub fn open(name: &str, host: Arc<SimHost>) -> io::Result<Self> {
        let fd = netdev::open_tap(name, 1)?
            .pop()
            .ok_or_else(|| io::Error::other("no TAP queue"))?;
        let tap = Arc::new(File::from(fd));
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let thread = {
            let (tap, stop, counters) = (tap.clone(), stop.clone(), counters.clone());
            std::thread::Builder::new()
                .name("sim-tap".into())
                .spawn(move || bridge(&tap, &host, &stop, &counters))?
        };
        Ok(Self {
            name: name.to_string(),
            tap,
            stop,
            counters,
            thread: Some(thread),
        })
    }

    /// The device's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sets the device's carrier: the host's link, as the kernel sees it.
    pub fn set_carrier(&self, up: bool) -> io::Result<()> {
        netdev::set_tap_carrier(self.tap.as_fd(), up)
    }

    /// The port's counters.
    pub fn stats(&self) -> TapStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let c = &self.counters;
        TapStats {
            to_guest: get(&c.to_guest),
            to_guest_refused: get(&c.to_guest_refused),
            from_guest: get(&c.from_guest),
            from_guest_dropped: get(&c.from_guest_dropped),
        }
    }
}

impl Drop for TapPort {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bridge(tap: &File, host: &SimHost, stop: &AtomicBool, counters: &Counters) {
    let mut tap = tap;
    let external = host.external();
    let mut frame = vec![0u8; MAX_FRAME];
    while !stop.load(Ordering::Acquire) {
        loop {
            match tap.read(&mut frame) {
                Ok(0) => break,
                Ok(n) => {
                    counters.to_guest.fetch_add(1, Ordering::Relaxed);
                    if !external.inject(&frame[..n]) {
                        counters.to_guest_refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Would block, or the interface is down (EIO): nothing to read now.
                Err(_) => break,
            }
        }
        while let Some((_, out)) = external.try_recv() {
            match tap.write(&out) {
                Ok(n) if n == out.len() => {
                    counters.from_guest.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    counters.from_guest_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Err(e) = netdev::wait_readable(tap.as_fd(), TICK) {
            tracing::warn!("sim-host tap: {e}");
            std::thread::sleep(TICK);
        }
    }
}
