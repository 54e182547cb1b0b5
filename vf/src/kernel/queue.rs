//! The one queue of a kernel VF: `rx_burst` and `tx_burst` over its packet socket.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use packet::netdev;
use packet::{Packet, Pool, PortQueue};

use super::{ETH_HEADER, Shared, VLAN_TAG, bump};
use crate::port::VfQueue;

/// The queue handle of a kernel VF (owned by one poller).
#[derive(Debug)]
pub struct KernelVfQueue {
    shared: Arc<Shared>,
    pool: Pool,
    /// A frame with a VLAN tag inserted (a tag asked for out of band on transmit).
    tagged: Vec<u8>,
}

impl KernelVfQueue {
    pub(super) fn new(shared: Arc<Shared>, pool: Pool) -> Self {
        Self {
            shared,
            pool,
            tagged: Vec::new(),
        }
    }

    /// The pool received frames come from.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The socket said the device is down or gone: the port looks at it next `service`.
    fn socket_failed(&self, error: &io::Error) {
        self.shared.socket_failed(error);
    }

    /// The bytes to send for `p`: its frame, or a copy with the VLAN tag its metadata asks
    /// for inserted after the addresses. `None` if it cannot be sent (too short).
    fn wire_bytes<'a>(tagged: &'a mut Vec<u8>, p: &'a Packet) -> Option<&'a [u8]> {
        let frame = p.data();
        let Some(tci) = p.meta.vlan_tci else {
            return Some(frame);
        };
        if frame.len() < ETH_HEADER {
            return None;
        }
        tagged.clear();
        tagged.extend_from_slice(&frame[..12]);
        tagged.extend_from_slice(&0x8100u16.to_be_bytes());
        tagged.extend_from_slice(&tci.to_be_bytes());
        tagged.extend_from_slice(&frame[12..]);
        debug_assert_eq!(tagged.len(), frame.len() + VLAN_TAG);
        Some(tagged)
    }
}

/// Whether an error from a socket call means the device is down or gone (rather than full).
fn device_unavailable(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV | libc::ENETUNREACH)
    )
}

impl PortQueue for KernelVfQueue {
    fn rx_burst(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        if self.shared.stopped.load(Ordering::Acquire) {
            return 0;
        }
        let socket = self.shared.socket.read();
        let Some(fd) = socket.as_ref() else {
            return 0;
        };
        let counters = &self.shared.counters;
        let mut received = 0;
        // One receive per frame, good or bad: a burst is bounded by `max` calls.
        for _ in 0..max {
            // No buffer: the frames wait in the socket's queue (the kernel counts what that
            // queue cannot hold; `service` adds it to `rx_no_buffer`).
            let Some(mut p) = self.pool.alloc() else {
                break;
            };
            let capacity = p.max_len();
            p.set_len(capacity);
            match netdev::recv_frame_vlan(fd.as_fd(), p.data_mut()) {
                Ok((len, tci)) if len <= capacity && self.shared.fits(&p.data()[..len]) => {
                    p.set_len(len);
                    p.meta.vlan_tci = tci;
                    bump(&counters.rx_packets, 1);
                    bump(&counters.rx_bytes, len as u64);
                    out.push(p);
                    received += 1;
                }
                Ok(_) => bump(&counters.rx_frame_errors, 1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // A pending error (the device went down or away) is reported once; the
                    // frames queued behind it are read next burst.
                    self.socket_failed(&e);
                    break;
                }
            }
        }
        received
    }

    fn tx_burst(&mut self, frames: &mut Vec<Packet>) -> usize {
        if self.shared.stopped.load(Ordering::Acquire) {
            return 0;
        }
        let socket = self.shared.socket.read();
        let Some(fd) = socket.as_ref() else {
            return 0;
        };
        let counters = &self.shared.counters;
        let mut taken = 0;
        for p in frames.iter() {
            let Some(bytes) = Self::wire_bytes(&mut self.tagged, p) else {
                bump(&counters.tx_lost, 1);
                taken += 1;
                continue;
            };
            if !self.shared.fits(bytes) {
                // Taken and never sent: counted.
                bump(&counters.tx_lost, 1);
                taken += 1;
                continue;
            }
            match netdev::send_frame(fd.as_fd(), bytes) {
                Ok(_) => {
                    bump(&counters.tx_packets, 1);
                    bump(&counters.tx_bytes, bytes.len() as u64);
                    taken += 1;
                }
                // The device's queue is full: the rest wait in `frames`.
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::ENOBUFS)
                        || e.kind() == io::ErrorKind::Interrupted =>
                {
                    break;
                }
                // Down or gone: left for the caller, which the port's next `service` moves
                // to the synthetic path.
                Err(e) if device_unavailable(&e) => {
                    self.socket_failed(&e);
                    break;
                }
                // The kernel refuses this frame (malformed for the device): taken, counted.
                Err(_) => {
                    bump(&counters.tx_lost, 1);
                    taken += 1;
                }
            }
        }
        frames.drain(..taken);
        taken
    }
}

impl VfQueue for KernelVfQueue {
    fn index(&self) -> u16 {
        0
    }

    /// Always 0: a frame `send()` accepted is the kernel's (see the module docs).
    fn tx_pending(&mut self) -> usize {
        0
    }
}
