//! The vSwitch behind the simulated NIC: where the guest's transmitted frames go and where the
//! frames it receives come from.
//!
//! Two port modes ([`PortMode`]):
//! - **Loopback**, like OpenVMM's loopback endpoint the conformance transcripts were recorded
//!   with: every frame the guest sends on queue *q* comes back as a receive on queue *q*.
//! - **External**: frames the guest sends go to the in-memory [`ExternalPort`] (a test reads
//!   them with [`ExternalPort::recv`]); frames a test injects there are delivered to the guest.
//!
//! Lifecycle and invariants: one switch per [`SimHost`](super::SimHost), shared between the
//! host thread and the control handle. Frames for the guest wait in one bounded FIFO per queue
//! (the backend's queue) until the host has a free receive sub-allocation and room in the
//! guest's ring; they are never reordered within a queue. When a queue is full the new frame
//! is dropped and counted by the reason the queue backed up (packet filter 0, no free
//! sub-allocation, guest ring full). The host thread never blocks on the switch: a guest
//! transmit always completes, whatever the receive side does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::stats::{StatsCell, bump};

/// Frames each guest queue holds while waiting for the guest (the backend queue).
pub const PORT_QUEUE_FRAMES: usize = 8192;
/// Frames the external port holds for the test before dropping what the guest sends.
pub const EXTERNAL_TX_FRAMES: usize = 1 << 16;
/// Queues a switch port can have (VRSS_CHANNEL_MAX).
pub const MAX_PORT_QUEUES: usize = 64;

/// Where the guest's transmitted frames go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PortMode {
    /// Back to the guest, on the queue they were sent on (OpenVMM's loopback endpoint).
    Loopback,
    /// To the in-memory [`ExternalPort`].
    #[default]
    External,
}

/// Why a queue's frames are waiting (the reason counted if the queue overflows).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Backlog {
    /// Nothing blocks delivery (or nothing was tried yet).
    None = 0,
    /// The guest's packet filter is 0 (receive held).
    Filtered = 1,
    /// No receive sub-allocation is free.
    NoBuffer = 2,
    /// The guest's receive ring is full.
    RingFull = 3,
}

/// A frame on its way to the guest, with the VLAN tag to report in the 802.1Q PPI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RxFrame {
    pub data: Vec<u8>,
    pub vlan: Option<u32>,
}

/// RSS state the guest set: Toeplitz key and indirection table (entries = queue indexes).
#[derive(Clone, Debug, Default)]
pub(crate) struct RssState {
    pub key: Vec<u8>,
    pub table: Vec<u32>,
}

/// The switch state shared by the host thread and the control handle.
#[derive(Debug)]
pub(crate) struct Switch {
    mode: PortMode,
    stats: Arc<StatsCell>,
    to_guest: Mutex<Vec<VecDeque<RxFrame>>>,
    pending: AtomicUsize,
    open_queues: AtomicU16,
    backlog: Vec<AtomicU8>,
    from_guest: Mutex<VecDeque<(u16, Vec<u8>)>>,
    from_guest_ready: Condvar,
    rss: Mutex<RssState>,
}

impl Switch {
    pub fn new(mode: PortMode, stats: Arc<StatsCell>) -> Self {
        Self {
            mode,
            stats,
            to_guest: Mutex::new((0..MAX_PORT_QUEUES).map(|_| VecDeque::new()).collect()),
            pending: AtomicUsize::new(0),
            open_queues: AtomicU16::new(1),
            backlog: (0..MAX_PORT_QUEUES).map(|_| AtomicU8::new(0)).collect(),
            from_guest: Mutex::new(VecDeque::new()),
            from_guest_ready: Condvar::new(),
            rss: Mutex::new(RssState::default()),
        }
    }

    /// Sets how many queues the host serves (1 + open subchannels).
    pub fn set_open_queues(&self, queues: u16) {
        self.open_queues.store(queues.max(1), Ordering::Release);
    }

    pub fn set_rss(&self, rss: RssState) {
        *self.rss.lock() = rss;
    }

    /// Records why `queue`'s frames wait.
    pub fn set_backlog(&self, queue: u16, why: Backlog) {
        if let Some(b) = self.backlog.get(usize::from(queue)) {
            b.store(why as u8, Ordering::Relaxed);
        }
    }

    /// Queues `frame` for the guest on `queue`; `false` if dropped (and counted).
    pub fn enqueue_for_guest(&self, queue: u16, frame: RxFrame) -> bool {
        if queue >= self.open_queues.load(Ordering::Acquire) {
            bump(&self.stats.rx_dropped_no_queue, 1);
            return false;
        }
        let mut queues = self.to_guest.lock();
        let q = &mut queues[usize::from(queue)];
        if q.len() >= PORT_QUEUE_FRAMES {
            let counter = match self.backlog[usize::from(queue)].load(Ordering::Relaxed) {
                1 => &self.stats.rx_dropped_filtered,
                3 => &self.stats.rx_dropped_ring_full,
                _ => &self.stats.rx_dropped_no_buffer,
            };
            bump(counter, 1);
            return false;
        }
        q.push_back(frame);
        self.pending.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Locks the guest-bound queues for the host thread's delivery round. Use
    /// [`Switch::taken`] to account for the frames popped.
    pub fn lock_for_guest(&self) -> parking_lot::MutexGuard<'_, Vec<VecDeque<RxFrame>>> {
        self.to_guest.lock()
    }

    /// Accounts for `n` frames popped from the queues.
    pub fn taken(&self, n: usize) {
        self.pending.fetch_sub(n, Ordering::AcqRel);
    }

    /// Whether any frame waits for `queue`.
    pub fn has_pending(&self, queue: u16) -> bool {
        self.pending.load(Ordering::Acquire) != 0
            && self
                .to_guest
                .lock()
                .get(usize::from(queue))
                .is_some_and(|q| !q.is_empty())
    }

    /// A frame the guest sent on `queue`: looped back or handed to the external port.
    pub fn transmitted(&self, queue: u16, data: &[u8], vlan: Option<u32>) {
        match self.mode {
            PortMode::Loopback => {
                self.enqueue_for_guest(
                    queue,
                    RxFrame {
                        data: data.to_vec(),
                        vlan,
                    },
                );
            }
            PortMode::External => {
                let mut q = self.from_guest.lock();
                if q.len() >= EXTERNAL_TX_FRAMES {
                    bump(&self.stats.tx_dropped_port_full, 1);
                    return;
                }
                q.push_back((queue, data.to_vec()));
                drop(q);
                self.from_guest_ready.notify_all();
            }
        }
    }

    /// The queue a vSwitch would pick for `frame`: the Toeplitz hash of its IPv4 addresses
    /// (and TCP/UDP ports) over the guest's indirection table; queue 0 without RSS or for
    /// other traffic.
    pub fn pick_queue(&self, frame: &[u8]) -> u16 {
        let rss = self.rss.lock();
        if rss.table.is_empty() || rss.key.len() < 12 {
            return 0;
        }
        let Some(input) = flow_tuple(frame) else {
            return 0;
        };
        let hash = toeplitz(&rss.key, &input);
        let entry = rss.table[hash as usize % rss.table.len()];
        let open = u32::from(self.open_queues.load(Ordering::Acquire));
        if entry < open { entry as u16 } else { 0 }
    }
}

/// The hash input of an IPv4 frame (source, destination, then ports for TCP/UDP), or `None`.
fn flow_tuple(frame: &[u8]) -> Option<Vec<u8>> {
    let mut off = 14;
    let mut ethertype = u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]);
    if ethertype == 0x8100 {
        ethertype = u16::from_be_bytes([*frame.get(16)?, *frame.get(17)?]);
        off = 18;
    }
    if ethertype != 0x0800 {
        return None;
    }
    let ip = frame.get(off..)?;
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let proto = *ip.get(9)?;
    let mut input = ip.get(12..20)?.to_vec();
    if matches!(proto, 6 | 17)
        && let Some(ports) = ip.get(ihl..ihl + 4)
    {
        input.extend_from_slice(ports);
    }
    Some(input)
}

/// The Toeplitz hash of `input` under `key` (key at least `input.len() + 4` bytes long is
/// not required: missing key bits read as 0).
pub(crate) fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_bit = |i: usize| -> u32 {
        key.get(i / 8)
            .map_or(0, |b| u32::from((b >> (7 - i % 8)) & 1))
    };
    let mut window: u32 = (0..32).fold(0, |acc, i| (acc << 1) | key_bit(i));
    let mut hash = 0u32;
    for (byte_index, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | key_bit(32 + byte_index * 8 + bit);
        }
    }
    hash
}

/// The vSwitch's in-memory external port ([`PortMode::External`]): frames a test injects
/// reach the guest, frames the guest transmits can be received here. `Send + Sync`; usable
/// from any thread while the host runs.
#[derive(Debug)]
pub struct ExternalPort {
    switch: Arc<Switch>,
}

impl ExternalPort {
    pub(crate) fn new(switch: Arc<Switch>) -> Self {
        Self { switch }
    }

    /// Delivers `frame` to the guest on the queue a vSwitch would pick: the Toeplitz hash of
    /// the flow over the guest's RSS indirection table (queue 0 without RSS or for non-IPv4
    /// frames). `false` if dropped (counted).
    pub fn inject(&self, frame: &[u8]) -> bool {
        let queue = self.switch.pick_queue(frame);
        self.inject_on(queue, frame)
    }

    /// Delivers `frame` to the guest on `queue`. `false` if dropped and counted: the queue is
    /// not open (`rx_dropped_no_queue`) or its backlog is full (counted by the reason it
    /// backed up). Frames wait, in order, while the guest has no free receive buffer or the
    /// packet filter is 0.
    /// The frame is delivered as given (an 802.1Q tag inside it stays in the frame; only
    /// looped-back frames carry a VLAN PPI, the one the guest sent).
    pub fn inject_on(&self, queue: u16, frame: &[u8]) -> bool {
        self.switch.enqueue_for_guest(
            queue,
            RxFrame {
                data: frame.to_vec(),
                vlan: None,
            },
        )
    }

    /// The next frame the guest transmitted (FIFO over all queues, in order within a queue),
    /// waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut q = self.switch.from_guest.lock();
        loop {
            if let Some((_, frame)) = q.pop_front() {
                return Some(frame);
            }
            if self
                .switch
                .from_guest_ready
                .wait_until(&mut q, deadline)
                .timed_out()
            {
                return q.pop_front().map(|(_, f)| f);
            }
        }
    }

    /// The next frame the guest transmitted, with the queue it was sent on, if any.
    pub fn try_recv(&self) -> Option<(u16, Vec<u8>)> {
        self.switch.from_guest.lock().pop_front()
    }

    /// Frames injected (or looped back) that the guest has not received yet.
    pub fn pending_to_guest(&self) -> usize {
        self.switch.pending.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Microsoft RSS verification suite's first IPv4 vector (66.9.149.187:2794 →
    /// 161.142.100.80:1766).
    #[test]
    fn toeplitz_matches_the_verification_vector() {
        let key = netvsc::rndis::RSS_HASH_KEY_MICROSOFT;
        let input = [66, 9, 149, 187, 161, 142, 100, 80, 0x0a, 0xea, 0x06, 0xe6];
        assert_eq!(toeplitz(&key, &input), 0x51cc_c178);
        assert_eq!(toeplitz(&key, &input[..8]), 0x323e_8fc2);
    }

    #[test]
    fn a_full_queue_drops_and_counts_by_backlog_reason() {
        let stats = Arc::new(StatsCell::default());
        let sw = Switch::new(PortMode::External, stats.clone());
        let port = ExternalPort::new(Arc::new(sw));
        assert!(!port.inject_on(1, &[0; 60]), "queue 1 is not open");
        assert_eq!(stats.rx_dropped_no_queue.load(Ordering::Relaxed), 1);
        port.switch.set_backlog(0, Backlog::Filtered);
        for _ in 0..PORT_QUEUE_FRAMES {
            assert!(port.inject_on(0, &[0; 60]));
        }
        assert!(!port.inject_on(0, &[0; 60]));
        assert_eq!(stats.rx_dropped_filtered.load(Ordering::Relaxed), 1);
        assert_eq!(port.pending_to_guest(), PORT_QUEUE_FRAMES);
    }
}
