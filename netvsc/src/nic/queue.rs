//! One queue of the NIC: a VMBus channel's two rings, its doorbell, its receive staging, its
//! transmit tables and its counters, behind one lock, and [`SyntheticQueue`], the handle one
//! polling thread owns.
//!
//! Locking: a queue's [`QueueState`] sits behind a `parking_lot::Mutex` taken once per burst
//! (never per packet). Queue 0's rings also carry control traffic, so the control thread takes
//! the same lock to send a request, and drains queue 0 itself (with `try_lock`) when no poller
//! does. Lock order: queue state, then the control inbox; never the other way round.
//!
//! Lifecycle: a queue is created at open with no channel. The handshake installs the channel
//! ([`QueueState::install_channel`]), the receive buffer
//! ([`QueueState::install_receive_buffer`]) and, once the session is ready, the transmit
//! session ([`TxState::install`]). [`QueueState::detach`] drops all of it (re-establish, dead
//! channel, close); bursts on a queue without a channel return 0, and transmit waits for
//! `ready`. A close first clears `ready` (under the queue's lock, which every burst takes: that
//! is how a poller learns the NIC is closing — its next `tx_burst` takes nothing), waits for
//! what is in flight, then detaches the queue for good.
//!
//! Invariants: every transfer-page packet that asked for a completion is completed exactly
//! once — at once, or from the deferred list (the completion backlog) at the start of a later
//! burst if the ring was full; the incoming ring is committed and the outgoing ring published
//! once per burst.
//!
//! Back-pressure: the completion backlog is bounded by the receive buffer's section count
//! (see [`QueueState::install_receive_buffer`]). A host that keeps sending transfer-page
//! packets while it stops reading the guest's ring would otherwise grow it without end; once
//! it is full the queue reads nothing more from the incoming ring (the host's packets wait
//! there, and the host finds its ring full) and counts the burst in
//! `rx_completion_backlog_full`, until the host reads again and the backlog drains. A packet
//! is read only while the backlog has room for its completion, so none is ever dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use packet::{Packet, Pool, PortQueue, SharedMemory};
use parking_lot::Mutex;

use crate::nvsp;
use crate::rndis::RndisMessage;
use crate::vmbus::{
    ChannelRings, Doorbell, IncomingPacket, IncomingRing, OutgoingKind, OutgoingPacket,
    OutgoingRing, Peek, RingError, SMALL_PAYLOAD,
};

use super::error::NicError;
use super::events::NicEvent;
use super::rx::{HostSink, ReceiveBuffer, RxBuffers, RxEnv, RxScratch, dispatch};
use super::shared::NicShared;
use super::stats::QueueStats;
use super::tids::{KIND_CONTROL, KIND_GPA, KIND_SECTION, kind_of};
use super::tx::TxState;

/// Frames a queue keeps for the application when they were read outside `rx_burst` (by
/// `tx_burst` or the control thread); more are dropped and counted.
pub(crate) const STAGING_CAPACITY: usize = 1024;
/// Ring packets read per burst at most (bounds the time the lock is held).
pub(crate) const BURST_BUDGET: usize = 256;
/// Most receive completions a queue keeps waiting for room in its outgoing ring, whatever the
/// receive buffer's section count: Linux's largest receive buffer (31 MiB) cut into Hyper-V's
/// 1728-byte suballocations, plus one, the largest completion ring Linux allocates for a
/// channel (`recv_section_cnt + 1` entries). 18,812 tids of 8 bytes per queue at most.
pub(crate) const MAX_COMPLETION_BACKLOG: usize = (31 << 20) / 1728 + 1;

/// NVSP 108 {SUCCESS} padded to 40 bytes: the completion of every received transfer-page
/// packet.
const RX_COMPLETION: [u8; nvsp::GUEST_MESSAGE_SIZE] = {
    let mut msg = [0u8; nvsp::GUEST_MESSAGE_SIZE];
    let ty = nvsp::MESSAGE1_TYPE_SEND_RNDIS_PACKET_COMPLETE.to_le_bytes();
    let status = nvsp::STATUS_SUCCESS.to_le_bytes();
    let mut i = 0;
    while i < 4 {
        msg[i] = ty[i];
        msg[4 + i] = status[i];
        i += 1;
    }
    msg
};

/// The rings and doorbell of one open channel.
#[derive(Debug)]
pub(crate) struct ChannelIo {
    pub out: OutgoingRing,
    pub inc: IncomingRing,
    pub doorbell: Arc<dyn Doorbell>,
}

/// Everything of one queue that the lock protects.
#[derive(Debug)]
pub(crate) struct QueueState {
    index: u16,
    pub chan: Option<ChannelIo>,
    /// The receive buffer of the session (shared by every queue).
    pub rxbuf: Option<SharedMemory>,
    /// Whether the session is established and data may be sent.
    pub ready: bool,
    pkt: IncomingPacket,
    scratch: RxScratch,
    /// Pool buffers taken ahead of the frames of a poll (none between polls).
    buffers: RxBuffers,
    staging: VecDeque<Packet>,
    /// Completions of received transfer-page packets that did not fit the outgoing ring yet
    /// (the completion backlog), oldest first; never longer than `backlog_limit`.
    pending_completions: VecDeque<u64>,
    /// How many receive completions the queue keeps waiting for room in its outgoing ring
    /// before it stops reading the incoming ring: the receive buffer's section count, as
    /// Linux sizes its per-channel completion ring (plus the one slot its ring keeps empty),
    /// capped by [`MAX_COMPLETION_BACKLOG`]
    /// (before a receive buffer is accepted, the cap). A host that follows the protocol never
    /// reaches it: each uncompleted transfer-page packet holds at least one suballocation of
    /// the buffer, so at most this many can be outstanding, and the ones whose completions
    /// wait are a part of those.
    backlog_limit: usize,
    /// Whether the last `service` stopped because the incoming ring was empty.
    ring_emptied: bool,
    pub tx: TxState,
    pub stats: QueueStats,
}

/// One queue as the NIC holds it.
#[derive(Debug)]
pub(crate) struct QueueShared {
    pub state: Mutex<QueueState>,
    /// When a poller last ran a burst (nanoseconds since the NIC's epoch); queue 0 only.
    last_poll: AtomicU64,
    /// Whether the last `rx_burst` handed out everything the ring held when it read it.
    caught_up: AtomicBool,
}

impl QueueShared {
    pub(crate) fn new(index: u16, max_frame: usize, copy_max: usize) -> Self {
        Self {
            state: Mutex::new(QueueState {
                index,
                chan: None,
                rxbuf: None,
                ready: false,
                pkt: IncomingPacket::new(),
                scratch: RxScratch::default(),
                buffers: RxBuffers::default(),
                staging: VecDeque::new(),
                pending_completions: VecDeque::new(),
                backlog_limit: MAX_COMPLETION_BACKLOG,
                ring_emptied: false,
                tx: TxState::new(max_frame, copy_max),
                stats: QueueStats::default(),
            }),
            last_poll: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
        }
    }

    /// Records that a poller ran a burst now.
    fn touch(&self, epoch: Instant) {
        self.last_poll
            .store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
    }

    /// Whether a poller ran a burst within `window_nanos`.
    pub(crate) fn poller_active(&self, epoch: Instant, window_nanos: u64) -> bool {
        let last = self.last_poll.load(Ordering::Relaxed);
        last != 0 && (epoch.elapsed().as_nanos() as u64).saturating_sub(last) < window_nanos
    }
}

/// Packets [`QueueSink::slot`] takes from the pool at once (at most the room left).
const SLOT_BATCH: usize = 32;

/// Staging of a frame into `out` (while it has room) or the staging list.
///
/// Frames go into `out` in place: the sink appends empty pool packets to `out` a batch at a
/// time and the receive path copies each frame into the next one; `out[..delivered]` are
/// frames (the caller's, then this poll's), anything after is an empty packet that goes
/// back to the pool when the poll ends ([`give_back_slots`]).
struct QueueSink<'a> {
    shared: &'a NicShared,
    tx: &'a mut TxState,
    stats: &'a mut QueueStats,
    out: Option<&'a mut Vec<Packet>>,
    room: &'a mut usize,
    delivered: &'a mut usize,
    staging: &'a mut VecDeque<Packet>,
}

/// Appends up to `n` empty pool packets to `out` (out of line: once per batch).
#[inline(never)]
fn refill_slots(out: &mut Vec<Packet>, pool: &Pool, n: usize) {
    pool.alloc_bulk(out, n);
}

/// Returns the empty packets a poll left after the frames of `out` (see [`QueueSink`]).
fn give_back_slots(out: Option<&mut Vec<Packet>>, delivered: usize) {
    if let Some(out) = out
        && out.len() > delivered
    {
        packet::pool::free_bulk(out.drain(delivered..));
    }
}

impl HostSink for QueueSink<'_> {
    #[inline(always)]
    fn slot(&mut self, pool: &Pool) -> Option<&mut Packet> {
        let out = self.out.as_deref_mut()?;
        // Empty slots are only ever added up to the room left, and each one filled takes one
        // from both: while there is a slot there is room.
        if *self.delivered == out.len() {
            if *self.room == 0 {
                return None;
            }
            refill_slots(out, pool, (*self.room).min(SLOT_BATCH));
        }
        out.get_mut(*self.delivered)
    }

    #[inline(always)]
    fn slot_filled(&mut self, len: usize) {
        // Only ever after `slot` gave a packet out, which it does only with `out` given.
        debug_assert!(self.out.is_some());
        self.stats.rx_packets += 1;
        *self.delivered += 1;
        self.stats.rx_bytes += len as u64;
        *self.room -= 1;
    }

    #[inline(always)]
    fn frame(&mut self, packet: Packet) {
        let len = packet.len() as u64;
        match self.out.as_deref_mut() {
            Some(out) if *self.room > 0 => {
                match out.get_mut(*self.delivered) {
                    // An empty slot is where the frame goes; the slot goes back.
                    Some(slot) => drop(std::mem::replace(slot, packet)),
                    None => out.push(packet),
                }
                *self.delivered += 1;
                *self.room -= 1;
            }
            _ if self.staging.len() < STAGING_CAPACITY => self.staging.push_back(packet),
            _ => {
                self.stats.rx_dropped_overflow += 1;
                return;
            }
        }
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += len;
    }

    fn completion(&mut self, tid: u64, payload: &[u8]) {
        match kind_of(tid) {
            KIND_SECTION | KIND_GPA => self.tx.complete(tid, payload, self.stats),
            KIND_CONTROL => self.shared.control.completion(tid, payload),
            _ => self.stats.unknown_completions += 1,
        }
    }

    fn rndis_response(&mut self, request_id: u32, _message: &RndisMessage, bytes: &[u8]) {
        self.stats.rx_control_messages += 1;
        self.shared.control.rndis_response(request_id, bytes);
    }

    fn indication(&mut self, status: u32, event: Option<NicEvent>) {
        self.stats.rx_control_messages += 1;
        match event {
            Some(event) => self.shared.push_event(event),
            None => tracing::debug!(status, "rndis status indication ignored"),
        }
    }

    fn event(&mut self, event: NicEvent) {
        self.shared.push_event(event);
    }

    fn malformed(&mut self, reason: &'static str) {
        tracing::debug!(reason, "malformed host message dropped");
        self.stats.rx_dropped_malformed += 1;
    }

    fn no_buffer(&mut self) {
        self.stats.rx_dropped_no_buffer += 1;
    }

    fn unknown_message(&mut self, msg_type: u32) {
        tracing::debug!(msg_type, "host message of an unhandled type ignored");
        self.stats.unknown_messages += 1;
    }
}

/// Ring bytes one receive completion takes.
fn completion_ring_len() -> usize {
    OutgoingPacket {
        kind: OutgoingKind::Completion,
        transaction_id: 0,
        completion_requested: false,
        payload: &RX_COMPLETION,
    }
    .ring_len()
}

/// Stages the completion of received transfer-page packet `tid`.
fn stage_completion(out: &mut OutgoingRing, tid: u64) -> Result<(), RingError> {
    out.stage(&OutgoingPacket {
        kind: OutgoingKind::Completion,
        transaction_id: tid,
        completion_requested: false,
        payload: &RX_COMPLETION,
    })
}

impl QueueState {
    /// Takes a freshly opened channel into use (interrupts masked: the queue is polled).
    pub(crate) fn install_channel(
        &mut self,
        rings: ChannelRings,
        doorbell: Arc<dyn Doorbell>,
    ) -> Result<(), NicError> {
        let queue = self.index;
        let ring_err = |source| NicError::Ring { queue, source };
        let out = OutgoingRing::new(rings.outgoing, true).map_err(ring_err)?;
        let inc = IncomingRing::new(rings.incoming).map_err(ring_err)?;
        inc.set_interrupt_mask(true);
        self.chan = Some(ChannelIo { out, inc, doorbell });
        self.pending_completions.clear();
        Ok(())
    }

    /// Takes the session's receive buffer into use; the host cut it into `sections`
    /// suballocations (a validated count), which bounds the completion backlog (see
    /// `backlog_limit`).
    pub(crate) fn install_receive_buffer(&mut self, rxbuf: SharedMemory, sections: usize) {
        self.rxbuf = Some(rxbuf);
        self.backlog_limit = sections.clamp(1, MAX_COMPLETION_BACKLOG);
    }

    /// Whether the completion backlog is full: the queue reads nothing from the incoming ring
    /// until the host makes room in the outgoing one.
    pub(crate) fn completion_backlog_full(&self) -> bool {
        self.pending_completions.len() >= self.backlog_limit
    }

    /// Completions waiting in the backlog, the backlog's allocated capacity and its bound
    /// (tests).
    #[cfg(test)]
    pub(crate) fn completion_backlog(&self) -> (usize, usize, usize) {
        (
            self.pending_completions.len(),
            self.pending_completions.capacity(),
            self.backlog_limit,
        )
    }

    /// Drops the channel and the session's buffers; sends in flight are abandoned (their
    /// sections and packets freed, counted in `tx_failed`). Staged frames stay for the application.
    pub(crate) fn detach(&mut self) {
        self.chan = None;
        self.rxbuf = None;
        self.backlog_limit = MAX_COMPLETION_BACKLOG;
        self.ready = false;
        self.pending_completions.clear();
        self.tx.detach(&mut self.stats);
    }

    /// Whether the queue has nothing in flight with the host, as a close needs before it
    /// revokes the buffers: no send waiting for its completion, no receive completion waiting
    /// for room in the ring, and the incoming ring found empty by the last `service`. A queue
    /// without a channel has nothing in flight.
    pub(crate) fn quiescent(&self) -> bool {
        self.chan.is_none()
            || (self.tx.outstanding() == 0
                && self.pending_completions.is_empty()
                && self.ring_emptied)
    }

    /// Detaches the queue (see [`detach`](Self::detach)) and hands its channel over: a close
    /// still waits on queue 0's outgoing ring for the host to read the buffer revokes, with
    /// nothing left that could read the receive buffer.
    pub(crate) fn detach_taking_channel(&mut self) -> Option<ChannelIo> {
        let chan = self.chan.take();
        self.detach();
        chan
    }

    /// Unmasks the incoming interrupt before the control thread sleeps; `true` if data is
    /// already there (do not sleep).
    pub(crate) fn arm_interrupt(&self) -> bool {
        self.chan.as_ref().is_none_or(|c| c.inc.arm_interrupt())
    }

    /// Masks the incoming interrupt again (polling mode).
    pub(crate) fn mask_interrupt(&self) {
        if let Some(c) = &self.chan {
            c.inc.set_interrupt_mask(true);
        }
    }

    /// Retries the deferred receive completions, oldest first.
    fn retry_completions(&mut self) -> Result<(), RingError> {
        let Some(chan) = self.chan.as_mut() else {
            return Ok(());
        };
        while let Some(&tid) = self.pending_completions.front() {
            match stage_completion(&mut chan.out, tid) {
                Ok(()) => {
                    self.pending_completions.pop_front();
                }
                Err(RingError::Full { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads up to `budget` packets from the incoming ring and handles them. Frames go to
    /// `out` while `room` lasts, then to the staging list. Stops early, leaving the rest in
    /// the ring, when the completion backlog is full (module docs). Returns the packets read.
    /// A corrupt ring drops the channel and marks the NIC dead.
    pub(crate) fn service(
        &mut self,
        shared: &NicShared,
        mut out: Option<&mut Vec<Packet>>,
        room: &mut usize,
        budget: usize,
    ) -> usize {
        if let Err(e) = self.retry_completions() {
            self.channel_failed(shared, e);
            return 0;
        }
        let Self {
            index,
            chan,
            rxbuf,
            pkt,
            scratch,
            buffers,
            staging,
            pending_completions,
            backlog_limit,
            ring_emptied,
            tx,
            stats,
            ..
        } = self;
        *ring_emptied = false;
        let Some(ch) = chan.as_mut() else {
            return 0;
        };
        let mut env = RxEnv {
            rxbuf: rxbuf.as_ref().map(ReceiveBuffer::new),
            pool: &shared.pool,
            buffers,
            queue: *index,
            nvsp_version: shared.nvsp_version(),
            max_frame: shared.config.max_frame(),
        };
        let mut read = 0;
        let mut failure = None;
        let mut delivered = out.as_deref().map_or(0, Vec::len);
        let mut small = [0u8; SMALL_PAYLOAD];
        let mut sink = QueueSink {
            shared,
            tx,
            stats,
            out: out.as_deref_mut(),
            room,
            delivered: &mut delivered,
            staging,
        };
        while read < budget && !(sink.out.is_some() && *sink.room == 0) {
            if pending_completions.len() >= *backlog_limit {
                // Back-pressure: the next packet may need a completion the backlog has no
                // room for. Leave it in the ring, and ask the host to signal when it has read
                // ours (a control thread waiting on the interrupt then wakes).
                sink.stats.rx_completion_backlog_full += 1;
                if let Err(e) = ch.out.request_space(completion_ring_len()) {
                    failure = Some(e);
                }
                break;
            }
            // A completion of the guest's sends (most of what comes back) without the general
            // packet read; anything else, and anything to refuse, through it.
            match ch.inc.read_small_completion(&mut small) {
                Ok(Peek::Empty) => {
                    *ring_emptied = true;
                    break;
                }
                Ok(Peek::Completion {
                    transaction_id,
                    payload,
                }) => {
                    read += 1;
                    sink.completion(transaction_id, &small[payload]);
                    continue;
                }
                Ok(Peek::Other) => {}
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
            let complete = match ch.inc.read(pkt) {
                Ok(false) => {
                    *ring_emptied = true;
                    break;
                }
                Ok(true) => dispatch(pkt, &mut env, scratch, &mut sink),
                Err(RingError::InvalidPacket {
                    packet_type,
                    transaction_id,
                    completion_requested,
                    reason,
                }) => {
                    tracing::debug!(packet_type, reason, "invalid packet from the host");
                    sink.stats.rx_dropped_malformed += 1;
                    (packet_type
                        == crate::vmbus::packet::VMBUS_PACKET_TYPE_DATA_USING_TRANSFER_PAGES
                        && completion_requested)
                        .then_some(transaction_id)
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            read += 1;
            if let Some(tid) = complete {
                let staged = pending_completions.is_empty()
                    && match stage_completion(&mut ch.out, tid) {
                        Ok(()) => true,
                        Err(RingError::Full { .. }) => false,
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    };
                if !staged {
                    pending_completions.push_back(tid);
                    sink.stats.rx_completions_deferred += 1;
                }
            }
        }
        env.buffers.release();
        give_back_slots(out, delivered);
        if let Some(e) = failure {
            self.channel_failed(shared, e);
        }
        read
    }

    /// A ring error other than "full": the channel is unusable until re-established.
    fn channel_failed(&mut self, shared: &NicShared, error: RingError) {
        tracing::warn!(queue = self.index, %error, "channel failed; marking the nic dead");
        // Publish what was consumed so far is pointless on a corrupt ring: drop it all.
        self.chan = None;
        self.ready = false;
        shared.mark_dead();
    }

    /// Publishes both rings (once per burst) and rings the doorbell if either says so.
    /// Whether a service would do nothing: no frame staged, no completion waiting for ring
    /// space, nothing published by the host that is not read, nothing read or staged that is
    /// not published.
    fn idle(&self) -> bool {
        let Some(ch) = self.chan.as_ref() else {
            return false;
        };
        self.staging.is_empty()
            && self.pending_completions.is_empty()
            && ch.out.staged_bytes() == 0
            && ch.inc.is_idle()
    }

    /// Whether a service would read nothing and retry nothing: no receive completion waiting
    /// for ring space, and nothing in the incoming ring (two loads).
    fn nothing_to_service(&self) -> bool {
        self.pending_completions.is_empty() && self.chan.as_ref().is_some_and(|ch| ch.inc.is_idle())
    }

    pub(crate) fn flush(&mut self) {
        let Some(ch) = self.chan.as_mut() else {
            return;
        };
        let consumed = ch.inc.commit();
        let produced = ch.out.commit();
        if (consumed || produced)
            && let Err(error) = ch.doorbell.signal()
        {
            tracing::warn!(queue = self.index, %error, "doorbell failed");
        }
    }

    /// Sends one control packet at once (queue 0): `Ok(true)` if it was written and
    /// published, `Ok(false)` if the ring is full (space has been requested).
    pub(crate) fn send_now(
        &mut self,
        shared: &NicShared,
        packet: &OutgoingPacket<'_>,
    ) -> Result<bool, NicError> {
        let queue = self.index;
        let Some(ch) = self.chan.as_mut() else {
            return Err(NicError::ChannelDead);
        };
        match ch.out.stage(packet) {
            Ok(()) => {
                self.flush();
                Ok(true)
            }
            Err(RingError::Full { needed, .. }) => match ch.out.request_space(needed) {
                Ok(_) => Ok(false),
                Err(source) => Err(NicError::Ring { queue, source }),
            },
            Err(e @ RingError::Corrupt { .. }) => {
                self.channel_failed(shared, e);
                Err(NicError::ChannelDead)
            }
            Err(source) => Err(NicError::Ring { queue, source }),
        }
    }
}

/// The handle of one queue, owned by one polling thread. Implements [`PortQueue`].
///
/// Both bursts drain the queue's incoming ring (receives and send completions share it);
/// frames read by `tx_burst` wait in a bounded staging list for the next `rx_burst`. Handles
/// stay valid across [`reestablish`](super::SyntheticNic::reestablish): while the session is
/// down, bursts return 0. Once the NIC closes ([`close`](super::SyntheticNic::close), or the
/// control handle dropped), `tx_burst` takes nothing and `rx_burst` hands out what is staged,
/// then 0 for good ([`is_closed`](Self::is_closed)).
#[derive(Debug)]
pub struct SyntheticQueue {
    shared: Arc<NicShared>,
    index: u16,
    /// Bursts since the last one recorded as a poll ([`SyntheticQueue::record_poll`]).
    unrecorded: u32,
}

/// A poller's bursts record a poll (a clock read) once per this many: enough for a control
/// wait to trust a poller that polls every few milliseconds or more often (the window is
/// 20 ms), without a clock read per burst.
const POLL_RECORD_EVERY: u32 = 8;

impl SyntheticQueue {
    pub(crate) fn new(shared: Arc<NicShared>, index: u16) -> Self {
        Self {
            shared,
            index,
            unrecorded: 0,
        }
    }

    /// Records that a poller is draining this queue, on the first burst and every
    /// [`POLL_RECORD_EVERY`]th one after it.
    #[inline]
    fn record_poll(&mut self) {
        if self.unrecorded == 0 {
            let shared = &*self.shared;
            shared.queues[usize::from(self.index)].touch(shared.epoch);
        }
        self.unrecorded = (self.unrecorded + 1) % POLL_RECORD_EVERY;
    }

    /// The queue's index (0 = the primary channel).
    pub fn index(&self) -> u16 {
        self.index
    }

    /// Whether the NIC was closed ([`SyntheticNic::close`](super::SyntheticNic::close), or
    /// dropped): bursts hand out what was staged, then return 0 for good; a poller may stop.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// A snapshot of the queue's counters.
    pub fn stats(&self) -> QueueStats {
        self.queue().state.lock().stats.clone()
    }

    /// Whether the last `rx_burst` handed out everything the queue held when it looked: no
    /// frame left staged, and the incoming ring read until it was empty (not stopped by the
    /// burst's size or budget). A failover port uses this to know it has handed out every
    /// frame the synthetic path received before a switch to the VF.
    pub fn rx_caught_up(&self) -> bool {
        self.queue().caught_up.load(Ordering::Relaxed)
    }

    /// Takes the completions the host has written, then returns how many frames `tx_burst`
    /// took that the host has not completed yet. 0 while the session is down: sends abandoned
    /// by a dead channel are counted in `tx_failed` when it is detached. A failover port uses
    /// this to keep order across a switch: it moves a queue's transmit to the other path only
    /// once this reads 0.
    pub fn tx_pending(&mut self) -> usize {
        let shared = &*self.shared;
        let queue = &shared.queues[usize::from(self.index)];
        queue.touch(shared.epoch);
        let mut st = queue.state.lock();
        let mut room = 0;
        st.service(shared, None, &mut room, BURST_BUDGET);
        st.flush();
        if st.chan.is_none() {
            return 0;
        }
        st.tx.outstanding_frames()
    }

    fn queue(&self) -> &QueueShared {
        &self.shared.queues[usize::from(self.index)]
    }
}

impl PortQueue for SyntheticQueue {
    fn rx_burst(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        let shared = &*self.shared;
        let queue = &shared.queues[usize::from(self.index)];
        let mut st = queue.state.lock();
        if st.idle() {
            // Nothing to read, complete or publish: what a full service would find, in a few
            // loads (the failover port polls an idle synthetic path while the VF carries the
            // traffic). Not recorded as a poll that drains the queue (no clock read): while
            // every poll finds it idle, a control wait drains queue 0 itself.
            st.ring_emptied = true;
            queue.caught_up.store(true, Ordering::Relaxed);
            return 0;
        }
        let mut room = max;
        while room > 0 {
            match st.staging.pop_front() {
                Some(p) => {
                    out.push(p);
                    room -= 1;
                }
                None => break,
            }
        }
        if room > 0 {
            st.service(shared, Some(out), &mut room, BURST_BUDGET);
        } else if let Err(e) = st.retry_completions() {
            st.channel_failed(shared, e);
        }
        let caught_up = room > 0 && (st.ring_emptied || st.chan.is_none());
        queue.caught_up.store(caught_up, Ordering::Relaxed);
        st.flush();
        drop(st);
        self.record_poll();
        max - room
    }

    fn tx_burst(&mut self, frames: &mut Vec<Packet>) -> usize {
        self.record_poll();
        let shared = &*self.shared;
        let queue = &shared.queues[usize::from(self.index)];
        let mut st = queue.state.lock();
        // Completions free sections and in-flight slots: take them first (unless there is
        // nothing to read and no completion of ours waiting to go out).
        if !st.nothing_to_service() {
            let mut room = 0;
            st.service(shared, None, &mut room, BURST_BUDGET);
        }
        let result = if st.ready {
            let QueueState {
                chan, tx, stats, ..
            } = &mut *st;
            match chan.as_mut() {
                Some(ch) => tx.transmit(ch, frames, stats, &shared.pool),
                None => Ok(0),
            }
        } else {
            Ok(0)
        };
        let taken = match result {
            Ok(n) => n,
            Err((n, error)) => {
                st.channel_failed(shared, error);
                n
            }
        };
        st.flush();
        taken
    }
}
