//! The vSwitch behind the simulated NIC: where the guest's transmitted frames go and where the
//! frames it receives come from.
//!
//! Two port modes ([`PortMode`]):
//! - **Loopback**, like OpenVMM's loopback endpoint the conformance transcripts were recorded
//!   with: every frame the guest sends on queue *q* comes back as a receive on queue *q*.
//! - **External**: frames the guest sends go to the in-memory [`ExternalPort`] (a test reads
//!   them with [`ExternalPort::recv`]); frames a test injects there are delivered to the guest.
//!
//! **The VF port.** A test harness plugs a VF into the switch with
//! [`SimHost::attach_vf_wire`](super::SimHost::attach_vf_wire) (a [`VfWire`]: where frames
//! steered to the VF go) and takes the VF's transmissions through a [`VfUplink`]
//! ([`SimHost::vf_uplink`](super::SimHost::vf_uplink)). Steering, as on Azure: while the
//! guest's data path is the VF (NVSP 129, mirrored in an atomic flag the NetVSP session sets
//! wherever it changes the data path) and a wire is attached, unicast frames for the guest
//! (destination MAC bit 0 clear) go to the VF on the same queue index folded onto
//! [`VfWire::queues`]; broadcast and multicast always take the synthetic path. A frame the VF
//! refuses is lost and counted (`rx_dropped_vf`), as a dead VF loses what the host steered to
//! it. What the VF transmits goes to the external port's FIFO (External mode) or back towards
//! the guest through the same steering (Loopback mode; those frames are queued and steered by
//! the host thread, so an uplink call never calls back into the VF).
//!
//! **Ordering at a data-path switch** (the simulated host's promise): a flip of the steering
//! flag never falls between a frame's steering decision and its queueing (the steering lock),
//! and a guest's NVSP 129 is completed only after the *old* path is flushed:
//! - to the VF: every frame already waiting in the switch's per-queue FIFOs (all queues) has
//!   been written into the guest's rings (published) before the completion is staged; the
//!   session defers the completion meanwhile and keeps delivering, at most
//!   `SWITCH_FLUSH_TIMEOUT` (2 s), after which it completes anyway and counts
//!   `switch_flush_timeouts`;
//! - to synthetic (guest- or host-initiated): [`VfWire::flush`] (2 s) runs with steering held,
//!   *before* the flag flips, so no frame reaches the synthetic path while an older one is still
//!   on its way into the VF's rings; then the completion, or the host's own 129, goes out (a
//!   false result is counted in `switch_flush_timeouts`).
//!
//! With nothing pending the completion is immediate, byte for byte what the recorded hosts
//! send.
//!
//! **Lock order.** The one switch lock held while calling into a [`VfWire`] is the steering
//! lock, shared, around `deliver` (a data-path flip takes it exclusively, so no frame is
//! steered across a flip); the wire's `Arc` is cloned out of its slot and that slot's lock
//! dropped before `deliver` or `flush`, and `flush` runs with no switch lock held. A VF may call [`VfUplink::transmit`] while holding its own device lock: the uplink
//! takes only the switch's leaf locks (the external FIFO, the VF-loopback FIFO) and rings the
//! host thread's doorbell; it never calls a [`VfWire`]. So the order is
//! *steering lock → VF device lock → switch leaf locks*; the uplink never takes the steering
//! lock.
//!
//! Lifecycle and invariants: one switch per [`SimHost`](super::SimHost), shared between the
//! host thread and the control handle. Frames for the guest wait in one bounded FIFO per queue
//! (the backend's queue) until the host has a free receive sub-allocation and room in the
//! guest's ring; they are never reordered within a queue. When a queue is full the new frame
//! is dropped and counted by the reason the queue backed up (packet filter 0, no free
//! sub-allocation, guest ring full). Once the guest revokes its receive buffer, every frame
//! waiting for it and every one after is dropped at once and counted (`rx_dropped_revoked`),
//! until a reopen starts a new session. The host thread never blocks on the switch: a guest
//! transmit always completes, whatever the receive side does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use netvsc::vmbus::Doorbell;

use super::stats::{StatsCell, bump};

/// Frames each guest queue holds while waiting for the guest (the backend queue).
pub const PORT_QUEUE_FRAMES: usize = 8192;
/// Frames the external port holds for the test before dropping what the guest sends.
pub const EXTERNAL_TX_FRAMES: usize = 1 << 16;
/// Buffers of delivered frames the switch keeps for the next ones.
const SPARE_BUFFERS: usize = 4096;
/// Queues a switch port can have (VRSS_CHANNEL_MAX).
pub const MAX_PORT_QUEUES: usize = 64;

/// The vSwitch's view of a VF: where it delivers frames steered to the VF.
pub trait VfWire: Send + Sync + std::fmt::Debug {
    /// Hands `frame` to the VF's receive queue `queue`; false if the VF dropped it (the VF
    /// counts it).
    fn deliver(&self, queue: u16, frame: &[u8]) -> bool;
    /// Waits at most `timeout` until every frame delivered so far is in the VF's receive rings
    /// or dropped and counted; whether it got there.
    fn flush(&self, timeout: Duration) -> bool;
    /// Receive queues the VF has (frames for higher queues are folded: queue % queues).
    fn queues(&self) -> u16;
    /// How many frames `deliver` on `queue` would take now without a drop: the receive
    /// descriptors the driver posted that no delivered frame is already headed for (0 when
    /// the VF would refuse). The credit a paced peer sends on.
    fn room(&self, queue: u16) -> usize;
    /// Moves to the uplink what the VF sent that is still on its way there. A wire whose VF
    /// hands frames to the uplink as it sends them (the software VF) has nothing to do. The
    /// host thread calls it before it reads the guest's rings, so a frame the guest sent
    /// through the VF leaves before one it sent on synthetic afterwards.
    fn pump_uplink(&self) {}
}

/// What a paced injection did ([`ExternalPort::inject_paced`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Paced {
    /// Handed to the path steering picked.
    Delivered,
    /// Dropped and counted by the switch (queue not open) or refused by the VF.
    Refused,
    /// Not sent: the path has no room for it now (nothing counted; send it later).
    NoRoom,
}

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
    /// The guest revoked its receive buffer: nothing is delivered until a new session, and
    /// every frame is dropped at once (`rx_dropped_revoked`).
    Revoked = 4,
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
    /// Buffers of frames delivered (to the guest, or taken at the external port), for the
    /// next frames (a leaf lock; at most [`SPARE_BUFFERS`]): frames at full rate allocate
    /// nothing.
    spare: Mutex<Vec<Vec<u8>>>,
    pending: AtomicUsize,
    open_queues: AtomicU16,
    backlog: Vec<AtomicU8>,
    from_guest: Mutex<VecDeque<(u16, Vec<u8>)>>,
    from_guest_ready: Condvar,
    rss: Mutex<RssState>,
    /// Whether the guest's data path is the VF (mirrors the session's `persist.data_path_vf`).
    data_path_vf: AtomicBool,
    /// Held shared from a frame's steering decision until it is queued or handed to the VF,
    /// and exclusively to flip the data path: a flip never falls between the two, so the
    /// session's "old path flushed" checks after a flip see every frame steered before it.
    steering: RwLock<()>,
    /// The VF's port, while one is attached.
    vf_wire: Mutex<Option<Arc<dyn VfWire>>>,
    /// Frames the VF sent in Loopback mode, steered by the host thread.
    vf_loopback: Mutex<VecDeque<(u16, Vec<u8>)>>,
    /// The serial of the VF whose device the host made available to the guest.
    vf_device: Mutex<Option<u32>>,
}

impl Switch {
    pub fn new(mode: PortMode, stats: Arc<StatsCell>) -> Self {
        Self {
            mode,
            stats,
            to_guest: Mutex::new((0..MAX_PORT_QUEUES).map(|_| VecDeque::new()).collect()),
            spare: Mutex::new(Vec::new()),
            pending: AtomicUsize::new(0),
            open_queues: AtomicU16::new(1),
            backlog: (0..MAX_PORT_QUEUES).map(|_| AtomicU8::new(0)).collect(),
            from_guest: Mutex::new(VecDeque::new()),
            from_guest_ready: Condvar::new(),
            rss: Mutex::new(RssState::default()),
            data_path_vf: AtomicBool::new(false),
            steering: RwLock::new(()),
            vf_wire: Mutex::new(None),
            vf_loopback: Mutex::new(VecDeque::new()),
            vf_device: Mutex::new(None),
        }
    }

    /// Plugs the VF's port in (replacing any) or, with `None`, pulls it out.
    pub fn set_vf_wire(&self, wire: Option<Arc<dyn VfWire>>) {
        *self.vf_wire.lock() = wire;
    }

    /// The attached VF port (cloned out: call it without the switch lock).
    pub fn vf_wire(&self) -> Option<Arc<dyn VfWire>> {
        self.vf_wire.lock().clone()
    }

    /// Sets the steering flag. Leaving the VF, the VF's wire is flushed first, with steering
    /// held: every frame the VF took is in its rings (or dropped and counted) before anything
    /// is steered to synthetic. Whether that flush finished within `flush_timeout`.
    pub fn set_data_path_vf(&self, vf: bool, flush_timeout: Duration) -> bool {
        let _flip = self.steering.write();
        let mut flushed = true;
        if !vf
            && self.data_path_vf.load(Ordering::Acquire)
            && let Some(wire) = self.vf_wire()
        {
            flushed = wire.flush(flush_timeout);
        }
        self.data_path_vf.store(vf, Ordering::Release);
        flushed
    }

    /// Whether the guest's data path is the VF.
    pub fn data_path_vf(&self) -> bool {
        self.data_path_vf.load(Ordering::Acquire)
    }

    pub fn set_vf_device(&self, serial: Option<u32>) {
        *self.vf_device.lock() = serial;
    }

    pub fn vf_device(&self) -> Option<u32> {
        *self.vf_device.lock()
    }

    /// Frames waiting for the guest on the synthetic path, all queues.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Sends `frame` for the guest on `queue` down the path steering picks (see the module
    /// docs); `false` if dropped (and counted).
    pub fn to_guest(&self, queue: u16, frame: RxFrame) -> bool {
        self.steer(queue, frame, false) != Paced::Refused
    }

    /// [`to_guest`](Self::to_guest), but only if the path steering picks has room for the
    /// frame now: the room check and the hand-over happen under the steering lock, so no
    /// data-path flip falls between them, and only the paced sender adds to what the room
    /// counts, so the answer still holds when the frame arrives.
    pub fn to_guest_paced(&self, queue: u16, frame: RxFrame) -> Paced {
        self.steer(queue, frame, true)
    }

    fn steer(&self, queue: u16, frame: RxFrame, paced: bool) -> Paced {
        let unicast = frame.data.first().is_some_and(|b| b & 1 == 0);
        let _steering = self.steering.read();
        if unicast
            && self.data_path_vf()
            && let Some(wire) = self.vf_wire()
        {
            let queue = queue % wire.queues().max(1);
            if paced && wire.room(queue) == 0 {
                return Paced::NoRoom;
            }
            return if wire.deliver(queue, &frame.data) {
                bump(&self.stats.rx_to_vf, 1);
                Paced::Delivered
            } else {
                bump(&self.stats.rx_dropped_vf, 1);
                Paced::Refused
            };
        }
        if paced && self.synthetic_room(queue) == 0 {
            return Paced::NoRoom;
        }
        if self.enqueue_for_guest(queue, frame) {
            Paced::Delivered
        } else {
            Paced::Refused
        }
    }

    /// Frames `queue`'s synthetic backlog takes before it drops (an unopened queue refuses
    /// at once: room is only what waits, not whether the queue exists).
    fn synthetic_room(&self, queue: u16) -> usize {
        self.to_guest
            .lock()
            .get(usize::from(queue))
            .map_or(0, |q| PORT_QUEUE_FRAMES.saturating_sub(q.len()))
    }

    /// Steers the frames the VF sent in Loopback mode; `true` if there were any. Host thread
    /// only (it holds no switch lock while steering).
    pub fn steer_vf_loopback(&self) -> bool {
        let frames = std::mem::take(&mut *self.vf_loopback.lock());
        let any = !frames.is_empty();
        for (queue, data) in frames {
            self.to_guest(queue, RxFrame { data, vlan: None });
        }
        any
    }

    /// Whether VF-loopback frames wait for the host thread.
    pub fn has_vf_loopback(&self) -> bool {
        !self.vf_loopback.lock().is_empty()
    }

    /// Puts a frame on the external port's FIFO; counts it if the FIFO is full.
    fn to_external(&self, queue: u16, data: &[u8]) {
        let buffer = self.buffer_with(data);
        let mut q = self.from_guest.lock();
        if q.len() >= EXTERNAL_TX_FRAMES {
            bump(&self.stats.tx_dropped_port_full, 1);
            return;
        }
        q.push_back((queue, buffer));
        drop(q);
        self.from_guest_ready.notify_all();
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

    /// Every queue's frames wait for `why` (a session's start: [`Backlog::None`]).
    pub fn set_backlog_all(&self, why: Backlog) {
        for b in &self.backlog {
            b.store(why as u8, Ordering::Relaxed);
        }
    }

    /// The guest revoked its receive buffer: every frame waiting for it is dropped and
    /// counted, and so is every one that comes until [`set_backlog_all`](Self::set_backlog_all)
    /// says otherwise (a new session). Returns how many were waiting.
    pub fn receive_buffer_revoked(&self) -> usize {
        // Marked first: an enqueue that takes the lock after the drain below sees the mark.
        self.set_backlog_all(Backlog::Revoked);
        let mut queues = self.to_guest.lock();
        let dropped: usize = queues.iter().map(VecDeque::len).sum();
        queues.iter_mut().for_each(VecDeque::clear);
        drop(queues);
        self.taken(dropped);
        bump(&self.stats.rx_dropped_revoked, dropped as u64);
        dropped
    }

    /// Queues `frame` for the guest on `queue` on the synthetic path; `false` if dropped (and
    /// counted).
    pub fn enqueue_for_guest(&self, queue: u16, frame: RxFrame) -> bool {
        if queue >= self.open_queues.load(Ordering::Acquire) {
            bump(&self.stats.rx_dropped_no_queue, 1);
            return false;
        }
        let mut queues = self.to_guest.lock();
        if self.backlog[usize::from(queue)].load(Ordering::Relaxed) == Backlog::Revoked as u8 {
            bump(&self.stats.rx_dropped_revoked, 1);
            return false;
        }
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

    /// A buffer holding a copy of `bytes`: a spare one when there is one.
    fn buffer_with(&self, bytes: &[u8]) -> Vec<u8> {
        let mut buffer = self.spare.lock().pop().unwrap_or_default();
        buffer.clear();
        buffer.extend_from_slice(bytes);
        buffer
    }

    /// Keeps the buffers of `delivered` for the frames that come next, up to
    /// [`SPARE_BUFFERS`], and drops the rest; `delivered` is left empty.
    pub fn recycle(&self, delivered: impl IntoIterator<Item = Vec<u8>>) {
        let mut spare = self.spare.lock();
        let room = SPARE_BUFFERS.saturating_sub(spare.len());
        spare.extend(delivered.into_iter().take(room));
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
                self.to_guest(
                    queue,
                    RxFrame {
                        data: data.to_vec(),
                        vlan,
                    },
                );
            }
            PortMode::External => self.to_external(queue, data),
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
    /// While the data path is the VF and a VF port is attached, a unicast frame goes to the VF
    /// instead (`false` if the VF refused it, counted in `rx_dropped_vf`).
    pub fn inject_on(&self, queue: u16, frame: &[u8]) -> bool {
        self.switch.to_guest(
            queue,
            RxFrame {
                data: self.switch.buffer_with(frame),
                vlan: None,
            },
        )
    }

    /// [`inject_on`](Self::inject_on) paced by credit: the frame goes only if the path
    /// steering picks for it (the VF's posted receive descriptors, or the synthetic queue's
    /// backlog) has room now, so a sender that waits on [`Paced::NoRoom`] never overruns the
    /// guest, however slowly it polls. Broadcast and multicast are paced on the synthetic
    /// backlog.
    pub fn inject_paced(&self, queue: u16, frame: &[u8]) -> Paced {
        self.switch.to_guest_paced(
            queue,
            RxFrame {
                data: self.switch.buffer_with(frame),
                vlan: None,
            },
        )
    }

    /// The next frame the guest transmitted (FIFO over all queues, in order within a queue),
    /// waiting at most `timeout`.
    pub fn recv(&self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = packet::deadline::after(Instant::now(), timeout);
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

    /// Every frame the guest transmitted that waits, in order, appended to `frames` (with the
    /// queue each was sent on), under one lock: what [`try_recv`](Self::try_recv) in a loop
    /// returns, for a far end that keeps up with a fast sender. When `frames` is empty the
    /// two are exchanged, so its capacity goes on holding the frames that come next.
    pub fn recv_all(&self, frames: &mut VecDeque<(u16, Vec<u8>)>) {
        let mut waiting = self.switch.from_guest.lock();
        if frames.is_empty() {
            std::mem::swap(&mut *waiting, frames);
        } else {
            frames.append(&mut waiting);
        }
    }

    /// Hands the buffers of frames taken from the port (by [`recv_all`](Self::recv_all)) back
    /// for the frames that come next, leaving `frames` empty: a far end that keeps up with a
    /// fast sender then costs no allocation per frame.
    pub fn recycle(&self, frames: &mut VecDeque<(u16, Vec<u8>)>) {
        self.switch
            .recycle(frames.drain(..).map(|(_, frame)| frame));
    }

    /// Frames injected (or looped back) that the guest has not received yet on the synthetic
    /// path.
    pub fn pending_to_guest(&self) -> usize {
        self.switch.pending.load(Ordering::Acquire)
    }
}

/// The VF's uplink into the switch ([`SimHost::vf_uplink`](super::SimHost::vf_uplink)):
/// what the VF transmits. Cheap to clone, `Send + Sync`; it never calls back into a VF (see
/// the module docs' lock order).
#[derive(Clone, Debug)]
pub struct VfUplink {
    switch: Arc<Switch>,
    /// Wakes the host thread to steer Loopback-mode frames.
    kick: Arc<dyn Doorbell>,
}

impl VfUplink {
    pub(crate) fn new(switch: Arc<Switch>, kick: Arc<dyn Doorbell>) -> Self {
        Self { switch, kick }
    }

    /// A frame the VF sent on `queue`: to the external port's FIFO (External mode, read by
    /// [`ExternalPort::recv`] and [`ExternalPort::try_recv`]) or, in Loopback mode, back
    /// towards the guest through the usual steering (by the host thread, in order). Counted in
    /// `tx_from_vf`.
    pub fn transmit(&self, queue: u16, frame: &[u8]) {
        bump(&self.switch.stats.tx_from_vf, 1);
        match self.switch.mode {
            PortMode::External => self.switch.to_external(queue, frame),
            PortMode::Loopback => {
                let mut q = self.switch.vf_loopback.lock();
                if q.len() >= EXTERNAL_TX_FRAMES {
                    bump(&self.switch.stats.tx_dropped_port_full, 1);
                    return;
                }
                q.push_back((queue, frame.to_vec()));
                drop(q);
                let _ = self.kick.signal();
            }
        }
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

    /// A frame in a recycled buffer is its own bytes, whatever the buffer held before, and
    /// the switch keeps no more than its bound of spare buffers.
    #[test]
    fn recycled_buffers_carry_only_the_new_frame_and_stay_bounded() {
        let stats = Arc::new(StatsCell::default());
        let sw = Switch::new(PortMode::External, stats);
        sw.recycle([vec![0xee; 1500], vec![0xdd; 9000]]);
        let short = [1u8, 2, 3];
        assert_eq!(sw.buffer_with(&short), short);
        let long: Vec<u8> = (0..2000).map(|i| i as u8).collect();
        assert_eq!(sw.buffer_with(&long), long);
        assert_eq!(sw.buffer_with(&short), short, "no spare left: a new buffer");
        sw.recycle((0..SPARE_BUFFERS + 10).map(|_| vec![0u8; 64]));
        assert_eq!(sw.spare.lock().len(), SPARE_BUFFERS);
        // The far end's frames go back the same way.
        let port = ExternalPort::new(Arc::new(sw));
        let mut taken = VecDeque::from([(0, vec![7u8; 60])]);
        port.recycle(&mut taken);
        assert!(taken.is_empty());
        assert_eq!(port.switch.spare.lock().len(), SPARE_BUFFERS);
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

    #[test]
    fn a_revoked_receive_buffer_drops_what_waits_and_what_comes_until_a_new_session() {
        let stats = Arc::new(StatsCell::default());
        let port = ExternalPort::new(Arc::new(Switch::new(PortMode::External, stats.clone())));
        port.switch.set_open_queues(2);
        for q in [0, 1, 1] {
            assert!(port.inject_on(q, &[0; 60]));
        }
        assert_eq!(port.switch.receive_buffer_revoked(), 3);
        assert_eq!(port.pending_to_guest(), 0);
        assert!(!port.inject_on(1, &[0; 60]), "taken after the revoke");
        assert_eq!(stats.rx_dropped_revoked.load(Ordering::Relaxed), 4);
        port.switch.set_backlog_all(Backlog::None);
        assert!(port.inject_on(1, &[0; 60]), "a new session receives again");
        assert_eq!(port.pending_to_guest(), 1);
        assert_eq!(stats.rx_dropped_revoked.load(Ordering::Relaxed), 4);
    }
}
