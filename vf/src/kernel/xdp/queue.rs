//! A queue of the AF_XDP transport: `rx_burst` and `tx_burst` over its socket's rings.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use packet::{Packet, Pool, PortQueue};

use crate::kernel::Shared;
use crate::port::VfQueue;

/// The queue handle of a kernel VF over AF_XDP (owned by one poller).
#[derive(Debug)]
pub struct XdpVfQueue {
    shared: Arc<Shared>,
    index: u16,
    /// The socket's pool (received frames come from it; frames from it are sent in place).
    pool: Pool,
}

impl XdpVfQueue {
    pub(in crate::kernel) fn new(shared: Arc<Shared>, index: u16, pool: Pool) -> Self {
        Self {
            shared,
            index,
            pool,
        }
    }

    /// The pool received frames come from (the socket's UMEM). Frames from it are sent
    /// without a copy.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn sockets(&self) -> &super::Sockets {
        self.shared
            .xdp
            .as_ref()
            .expect("an AF_XDP queue has AF_XDP sockets")
    }
}

/// Whether an error from a socket call means the device is down or gone.
fn device_unavailable(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENETDOWN | libc::ENXIO | libc::ENODEV)
    )
}

impl PortQueue for XdpVfQueue {
    fn rx_burst(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        if self.shared.stopped.load(Ordering::Acquire) {
            return 0;
        }
        let mut socket = self.sockets().queues[self.index as usize].lock();
        match socket.as_mut() {
            Some(xsk) => xsk.rx(out, max, self.index),
            None => 0,
        }
    }

    fn tx_burst(&mut self, frames: &mut Vec<Packet>) -> usize {
        if self.shared.stopped.load(Ordering::Acquire) {
            return 0;
        }
        let mut socket = self.sockets().queues[self.index as usize].lock();
        let Some(xsk) = socket.as_mut() else {
            return 0;
        };
        if xsk.unbound {
            return 0;
        }
        let taken = xsk.tx(frames);
        if xsk.in_flight() > 0
            && let Err(error) = xsk.kick()
            && device_unavailable(&error)
        {
            self.shared.socket_failed(&error);
        }
        taken
    }
}

impl VfQueue for XdpVfQueue {
    fn index(&self) -> u16 {
        self.index
    }

    /// Frames on the TX ring the kernel has not completed; 0 once the socket is unbound (its
    /// device gone: they are counted as lost) or released.
    fn tx_pending(&mut self) -> usize {
        let mut socket = self.sockets().queues[self.index as usize].lock();
        let Some(xsk) = socket.as_mut() else {
            return 0;
        };
        xsk.reap();
        if xsk.in_flight() > 0
            && let Err(error) = xsk.kick()
            && device_unavailable(&error)
        {
            self.shared.socket_failed(&error);
        }
        if xsk.unbound {
            xsk.abandon_in_flight();
        }
        xsk.in_flight()
    }
}
