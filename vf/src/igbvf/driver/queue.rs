//! One queue pair: its rings, buffers, counters and state, and the [`IgbvfQueue`] handle.
//!
//! Lifecycle of a queue: built and programmed by `open` (`Running`); paused by the control
//! thread while the function is re-initialised after a PF reset (`Resetting`, then re-armed
//! and `Running` again with the same buffers); `Stopped` by `stop`; `Gone` after a removal or
//! `release`. Only a `Running` queue moves frames; every other state makes both bursts return
//! 0 without touching the device.
//!
//! Lost transmits: whatever `tx_burst` took and the device did not complete is counted in
//! `tx_lost` exactly once, by `forget_tx`, when the ring can no longer complete it: at the PF
//! reset (reported by the control thread), at removal (the control thread's, or the queue's
//! own when [`VfQueue::tx_pending`] reads `TDH` as all ones), and at the end of `stop` or
//! `release`. `forget_tx` empties the ring, so a second call counts nothing.
//!
//! Buffer ownership: every RX slot holds the [`Packet`] whose bus address is posted in its
//! descriptor; its buffer leaves the slot only when the device has written it back (`DD`).
//! The TX ring's `in_flight` holds, oldest first, the packets of the descriptors before
//! `next_use` that the device is reading, each until its `DD`. A packet dropped (or freed in
//! a batch) returns to its pool.

use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};
use std::time::Instant;

use packet::{Packet, Pool, PortQueue};
use parking_lot::Mutex;

use super::error::IgbvfError;
use super::ring::{self, DescRing};
use super::{Clock, IgbvfConfig};
use crate::device::{ALL_ONES, RegisterIo, VfDevice};
use crate::igbvf::descriptors::DESC_SIZE;
use crate::igbvf::regs::{
    Queue, rdbah, rdbal, rdh, rdlen, rdt, rxdctl, srrctl, srrctl_one_buffer, tdbah, tdbal, tdh,
    tdlen, tdt, txdctl,
};
use crate::port::VfQueue;

/// Per-queue counters, plain integers updated by the queue's poller once per burst.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Frames handed out by `rx_burst`.
    pub rx_packets: u64,
    /// Bytes handed out by `rx_burst`.
    pub rx_bytes: u64,
    /// Frames the device completed (`DD`) after `tx_burst` took them.
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// RX write-backs rejected by the parser (slot re-armed, frame dropped).
    pub rx_descriptor_errors: u64,
    /// Frames the device flagged as errored.
    pub rx_frame_errors: u64,
    /// Frames dropped because no buffer was free to re-arm their slot.
    pub rx_no_buffer: u64,
    /// Frames the device wrote back that no `rx_burst` handed out before a PF reset stopped
    /// the ring: the re-initialisation re-arms every slot, so they are dropped (each counted
    /// once).
    pub rx_dropped_reset: u64,
    /// Frames taken by `tx_burst` and never completed (reset, stop timeout, removal).
    pub tx_lost: u64,
    /// Frames taken by `tx_burst` and dropped because they are empty or longer than MTU + 14
    /// bytes.
    pub tx_dropped: u64,
    /// Frames copied into the queue's own buffers before transmit because the device cannot
    /// DMA from the memory they were in.
    pub tx_bounced: u64,
}

/// Where a queue is in its lifecycle (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueueState {
    Running,
    Resetting,
    Stopped,
    Gone,
}

/// The RX ring.
#[derive(Debug)]
pub(crate) struct RxRing {
    pub(crate) ring: DescRing,
    /// Always full: a slot's buffer is swapped out only for a fresh one. Every slot's packet
    /// is empty with the default headroom (as `Pool::alloc` makes it): nothing changes it
    /// while it is posted.
    pub(crate) slots: Vec<Packet>,
    pub(crate) pool: Pool,
    /// Next descriptor to look at (`< size`); the tail register is always one behind it.
    pub(crate) next: usize,
    /// Packet buffer size posted to the device (`SRRCTL.BSIZEPKT`).
    pub(crate) buf_size: usize,
}

/// The TX ring.
#[derive(Debug)]
pub(crate) struct TxRing {
    pub(crate) ring: DescRing,
    /// The packets of the descriptors the device has not completed, oldest first: the last
    /// is posted at `next_use - 1`. At most `size - 1` (its capacity is `size`, so it never
    /// allocates). A plain vector: a burst is appended with one copy and a completed run
    /// freed in one batch from the front (moving what is left, usually nothing, forward).
    pub(crate) in_flight: Vec<Packet>,
    /// Next descriptor to fill (`< size`); the tail register.
    pub(crate) next_use: usize,
}

/// Everything of one queue pair, behind the queue's lock.
#[derive(Debug)]
pub(crate) struct QueueInner {
    pub(crate) name: String,
    pub(crate) queue: Queue,
    pub(crate) bar: Arc<dyn RegisterIo>,
    /// Which packet pools the device can DMA from.
    pub(crate) reach: DmaReach,
    pub(crate) state: QueueState,
    pub(crate) rx: RxRing,
    pub(crate) tx: TxRing,
    pub(crate) counters: QueueCounters,
    /// Longest frame `tx_burst` sends ([`IgbvfConfig::max_tx_frame`], at most 9014).
    pub(crate) max_tx_frame: u16,
}

/// Which pools' buffers the device can DMA from, asked of the device once per pool.
#[derive(Debug)]
pub(crate) struct DmaReach {
    device: Arc<dyn VfDevice>,
    /// Pools seen so far (the queue's own first) and whether the device reaches them; the
    /// pool asked about last is last.
    known: Vec<(Pool, bool)>,
    /// A copy of the last entry of `known`, where the fast path looks without indexing.
    last: (Pool, bool),
}

/// Pools a queue remembers (the least recently used is forgotten first).
const REACH_CACHE: usize = 8;

impl DmaReach {
    /// Knows the queue's own pool, which the device reaches.
    fn new(device: Arc<dyn VfDevice>, own: Pool) -> Self {
        Self {
            device,
            known: vec![(own.clone(), true)],
            last: (own, true),
        }
    }

    /// Whether the device can read `packet`'s buffer at its bus address.
    #[inline]
    pub(crate) fn reaches(&mut self, packet: &Packet) -> bool {
        // The pool asked about last first: a burst's frames come from one pool (at first the
        // queue's own).
        if packet.is_from(&self.last.0) {
            return self.last.1;
        }
        self.lookup(packet)
    }

    #[cold]
    fn lookup(&mut self, packet: &Packet) -> bool {
        if let Some(i) = self.known.iter().position(|(pool, _)| packet.is_from(pool)) {
            // Move it last, where the fast path looks.
            let entry = self.known.remove(i);
            let reachable = entry.1;
            self.last = entry.clone();
            self.known.push(entry);
            return reachable;
        }
        let pool = packet.pool();
        let reachable = self.device.dma_reachable(pool.memory());
        if self.known.len() == REACH_CACHE {
            self.known.remove(0);
        }
        self.last = (pool.clone(), reachable);
        self.known.push((pool, reachable));
        reachable
    }
}

/// Ring memory alignment the 82576 requires (`RDBAL`/`TDBAL`).
const RING_ALIGN: u64 = 128;

fn alloc_ring(
    device: &dyn VfDevice,
    queue: Queue,
    descriptors: usize,
) -> Result<DescRing, IgbvfError> {
    let bytes = descriptors * DESC_SIZE;
    let mem = device
        .dma_alloc(bytes + RING_ALIGN as usize)
        .map_err(|source| IgbvfError::Device {
            device: device.name().to_owned(),
            op: "allocate ring memory",
            source,
        })?;
    let misalign = mem.bus_addr(0) % RING_ALIGN;
    let skip = if misalign == 0 {
        0
    } else {
        (RING_ALIGN - misalign) as usize
    };
    mem.subregion(skip, bytes)
        .and_then(|mem| DescRing::new(mem, descriptors))
        .map_err(|source| IgbvfError::Memory {
            device: device.name().to_owned(),
            queue: queue.index(),
            op: "align ring memory",
            source,
        })
}

impl QueueInner {
    /// Allocates the rings and the buffer pool (three buffers per descriptor: one set posted
    /// for RX, one in the caller's hands, one for frames the caller sends) and fills every RX
    /// slot.
    pub(crate) fn new(
        device: &Arc<dyn VfDevice>,
        queue: Queue,
        config: &IgbvfConfig,
    ) -> Result<Self, IgbvfError> {
        let size = usize::from(config.ring_size);
        let name = device.name().to_owned();
        let rx_mem = alloc_ring(device.as_ref(), queue, size)?;
        let tx_mem = alloc_ring(device.as_ref(), queue, size)?;
        let buf = config.rx_buf_size + packet::pool::HEADROOM;
        let pool_mem = device
            .dma_alloc(buf.next_multiple_of(64) * size * 3)
            .map_err(|source| IgbvfError::Device {
                device: name.clone(),
                op: "allocate packet buffers",
                source,
            })?;
        let pool = Pool::new(pool_mem, buf).map_err(|source| IgbvfError::Memory {
            device: name.clone(),
            queue: queue.index(),
            op: "cut packet buffers",
            source,
        })?;
        let mut slots = Vec::with_capacity(size);
        for _ in 0..size {
            // The pool holds three buffers per descriptor, so this only fails on a pool that
            // came out smaller than asked.
            let packet = pool.alloc().ok_or_else(|| IgbvfError::Memory {
                device: name.clone(),
                queue: queue.index(),
                op: "fill rx ring",
                source: packet::MemError::Empty,
            })?;
            slots.push(packet);
        }
        let reach = DmaReach::new(device.clone(), pool.clone());
        Ok(Self {
            name,
            queue,
            bar: device.bar0(),
            reach,
            state: QueueState::Resetting,
            rx: RxRing {
                ring: rx_mem,
                slots,
                pool,
                next: 0,
                buf_size: config.rx_buf_size,
            },
            tx: TxRing {
                ring: tx_mem,
                in_flight: Vec::with_capacity(size),
                next_use: 0,
            },
            counters: QueueCounters::default(),
            // The MTU is at most 9000 (`IgbvfConfig::validate`).
            max_tx_frame: u16::try_from(config.max_tx_frame()).unwrap_or(u16::MAX),
        })
    }

    /// Counts every TX frame still in the ring as lost and frees it. Only after the device
    /// stopped reading the ring (queue disabled, function reset, or device gone). Frames the
    /// device completed (`DD` written back, which lives in our memory and stays readable
    /// after the device is gone) were sent: they are reclaimed first, not counted as lost.
    pub(crate) fn forget_tx(&mut self) {
        self.reclaim_tx();
        self.counters.tx_lost += self.tx.in_flight.len() as u64;
        self.tx.in_flight.clear();
        self.tx.next_use = 0;
    }

    /// Reclaims completions and returns the frames still in flight. A running queue whose
    /// `TDH` reads all ones has lost its device: it becomes `Gone` and its frames are counted
    /// as lost at once, without waiting for the control thread to notice. In any other state
    /// the control thread counts them (at the end of `stop`, bounded by its deadline, or
    /// already done at a reset or removal).
    pub(crate) fn tx_pending(&mut self) -> usize {
        if self.tx.in_flight.is_empty() {
            return 0;
        }
        self.reclaim_tx();
        if !self.tx.in_flight.is_empty()
            && self.state == QueueState::Running
            && self.bar.read32(tdh(self.queue)) == ALL_ONES
        {
            self.state = QueueState::Gone;
            self.forget_tx();
        }
        self.tx.in_flight.len()
    }

    /// Re-arms every RX descriptor with its slot's buffer and clears the TX ring memory. The
    /// device must not be using the rings.
    fn arm_rings(&mut self) {
        for i in 0..self.rx.slots.len() {
            self.rearm(i);
        }
        for desc in self.tx.ring.descs() {
            ring::post(desc, [0; DESC_SIZE]);
        }
        self.rx.next = 0;
    }

    /// Programs both rings into the (freshly reset) function and enables them, waiting at
    /// most until `deadline` for each enable bit to read back. Leaves the queue `Running`.
    pub(crate) fn program(
        &mut self,
        clock: &dyn Clock,
        deadline: Instant,
    ) -> Result<(), IgbvfError> {
        self.forget_tx();
        self.arm_rings();
        let q = self.queue;
        let bar = self.bar.clone();
        let size = self.rx.slots.len();
        let len = (size * DESC_SIZE) as u32;
        let srr =
            srrctl_one_buffer(self.rx.buf_size, true).map_err(|source| IgbvfError::Register {
                device: self.name.clone(),
                register: srrctl(q),
                source,
            })?;

        // TX first, as Linux igbvf does.
        let tx_base = self.tx.ring.memory().bus_addr(0);
        bar.write32(txdctl(q), 0);
        bar.write32(tdbal(q), tx_base as u32);
        bar.write32(tdbah(q), (tx_base >> 32) as u32);
        bar.write32(tdlen(q), len);
        bar.write32(tdh(q), 0);
        bar.write32(tdt(q), 0);
        bar.write32(txdctl(q), txdctl::ENABLE | txdctl::thresholds(8, 1, 16));
        self.wait_bits(clock, deadline, txdctl(q), txdctl::ENABLE)?;

        let rx_base = self.rx.ring.memory().bus_addr(0);
        bar.write32(rxdctl(q), 0);
        bar.write32(rdbal(q), rx_base as u32);
        bar.write32(rdbah(q), (rx_base >> 32) as u32);
        bar.write32(rdlen(q), len);
        bar.write32(srrctl(q), srr);
        bar.write32(rdh(q), 0);
        bar.write32(rdt(q), 0);
        bar.write32(rxdctl(q), rxdctl::ENABLE | rxdctl::thresholds(16, 8, 1));
        self.wait_bits(clock, deadline, rxdctl(q), rxdctl::ENABLE)?;
        // Descriptors were written above; make them visible before the device may fetch.
        fence(Ordering::SeqCst);
        bar.write32(rdt(q), (size - 1) as u32);
        self.state = QueueState::Running;
        Ok(())
    }

    fn wait_bits(
        &self,
        clock: &dyn Clock,
        deadline: Instant,
        register: u32,
        bits: u32,
    ) -> Result<(), IgbvfError> {
        loop {
            let value = self.bar.read32(register);
            if value == ALL_ONES {
                return Err(IgbvfError::Removed {
                    device: self.name.clone(),
                    register,
                });
            }
            if value & bits == bits {
                return Ok(());
            }
            if clock.now() >= deadline {
                return Err(IgbvfError::QueueEnable {
                    device: self.name.clone(),
                    queue: self.queue.index(),
                    register,
                    expected: bits,
                });
            }
            clock.pause(super::mailbox_io::POLL_INTERVAL);
        }
    }
}

/// The data-path handle of one queue pair, owned by one polling thread.
///
/// Each burst takes the queue's lock once (uncontended unless the control thread is
/// resetting, stopping or releasing the port) and allocates nothing. `rx_burst` hands out
/// packets from [`Self::pool`]; `tx_burst` keeps the packets it takes until the device reports
/// them done. Both return 0 unless the queue is running. As a [`VfQueue`], `tx_pending`
/// reclaims completions and counts what is still in flight (see the module docs for when
/// that drops to 0 without completions).
#[derive(Debug)]
pub struct IgbvfQueue {
    pub(crate) inner: Arc<Mutex<QueueInner>>,
    pub(crate) index: u16,
    pub(crate) pool: Pool,
}

impl IgbvfQueue {
    /// The queue's buffer pool, in DMA memory the device reaches: RX buffers come from it,
    /// and frames for [`PortQueue::tx_burst`] must live in memory like it (this pool or
    /// another DMA-mapped one).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The queue pair index.
    pub fn index(&self) -> u16 {
        self.index
    }

    /// A snapshot of this queue's counters.
    pub fn counters(&self) -> QueueCounters {
        self.inner.lock().counters
    }
}

impl VfQueue for IgbvfQueue {
    fn index(&self) -> u16 {
        self.index
    }

    fn tx_pending(&mut self) -> usize {
        self.inner.lock().tx_pending()
    }
}

impl PortQueue for IgbvfQueue {
    fn rx_burst(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        let mut inner = self.inner.lock();
        if inner.state != QueueState::Running {
            return 0;
        }
        inner.rx_burst(out, max, self.index)
    }

    fn tx_burst(&mut self, frames: &mut Vec<Packet>) -> usize {
        let mut inner = self.inner.lock();
        if inner.state != QueueState::Running {
            return 0;
        }
        inner.tx_burst(frames)
    }
}
