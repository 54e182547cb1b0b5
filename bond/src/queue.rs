//! [`FailoverQueue`]: queue *i* of the failover port, over VMBus channel *i* and VF queue *i*.
//!
//! At every burst boundary the queue checks its link's generation (see `link`); when it moved
//! it takes the new route: which path transmits, which paths receive in which order, and the
//! VF queue it may use. Between changes a burst costs one atomic load over the path's own
//! burst (plus an uncontended lock on the VF queue, which port queues folded onto the same VF
//! queue share).
//!
//! Order across a switch: when transmit moves to the other path, the queue first lets the old
//! path finish what it accepted ([`tx_pending`](vf::port::VfQueue::tx_pending) reaches 0) and
//! accepts nothing meanwhile (the caller keeps its frames and retries), bounded by
//! `tx_order_timeout`; receive polls the path the data left before the one it moved to, and
//! the second only when the first did not fill the burst.
//!
//! On the VF, receive reads the VF, then synthetic, then the VF again (see `rx_vf_first`);
//! an idle synthetic path is looked at every 16th burst (at once again after it brought
//! something), so first packets of flows and broadcasts wait a few bursts at most, and a
//! VF that fills every burst still gets synthetic read every 17th. Synthetic frames wait in
//! `held` until a VF read after them came up short — a VF that stays saturated delays them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use netvsc::nic::SyntheticQueue;
use packet::{Packet, PortQueue};

use crate::link::{Handshake, QueueLink, Route, RxMode, SharedVfQueue, TxPath};

/// Synthetic frames a queue holds back at most while a switch back to synthetic is in flight.
const HELD_MAX: usize = 4096;
/// Bursts on the VF that skip polling an idle synthetic path before looking at it again.
const SYNTHETIC_IDLE_SKIP: u32 = 15;
/// Bursts a saturated VF may fill before the synthetic path is read anyway (into `held`).
const SYNTHETIC_POLL_MAX_SKIP: u32 = 16;

/// Counters of one queue, written by its poller once per burst, read by anyone.
#[derive(Debug, Default)]
pub(crate) struct QueueCounters {
    rx_synthetic: AtomicU64,
    rx_vf: AtomicU64,
    tx_synthetic: AtomicU64,
    tx_vf: AtomicU64,
    tx_order_waits: AtomicU64,
    tx_order_timeouts: AtomicU64,
    routes_applied: AtomicU64,
}

/// A snapshot of one queue's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailoverQueueStats {
    /// Frames received from the synthetic path.
    pub rx_synthetic: u64,
    /// Frames received from the VF.
    pub rx_vf: u64,
    /// Frames the synthetic path took for transmit.
    pub tx_synthetic: u64,
    /// Frames the VF took for transmit.
    pub tx_vf: u64,
    /// Transmit bursts held back while the old path emptied after a switch.
    pub tx_order_waits: u64,
    /// Switches after which the old path did not empty within `tx_order_timeout`.
    pub tx_order_timeouts: u64,
    /// Routes (path changes) this queue applied.
    pub routes_applied: u64,
}

impl QueueCounters {
    fn add(counter: &AtomicU64, n: usize) {
        if n != 0 {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> FailoverQueueStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FailoverQueueStats {
            rx_synthetic: get(&self.rx_synthetic),
            rx_vf: get(&self.rx_vf),
            tx_synthetic: get(&self.tx_synthetic),
            tx_vf: get(&self.tx_vf),
            tx_order_waits: get(&self.tx_order_waits),
            tx_order_timeouts: get(&self.tx_order_timeouts),
            routes_applied: get(&self.routes_applied),
        }
    }
}

/// The old path a queue waits on before transmitting on the new one.
#[derive(Debug)]
enum Gate {
    Synthetic {
        deadline: Instant,
    },
    Vf {
        queue: SharedVfQueue,
        deadline: Instant,
    },
}

/// What the control thread and a queue handle share.
#[derive(Debug)]
pub(crate) struct QueueShared {
    pub link: QueueLink,
    pub counters: QueueCounters,
}

/// One queue of a [`FailoverPort`](crate::FailoverPort), owned by one polling thread.
/// Implements [`PortQueue`]. Dropping it tells the control thread this queue will not poll
/// again (a switch then does not wait for it).
#[derive(Debug)]
pub struct FailoverQueue {
    index: u16,
    synthetic: SyntheticQueue,
    shared: Arc<QueueShared>,
    handshake: Arc<Handshake>,
    tx_order_timeout: std::time::Duration,
    seen: u64,
    tx: TxPath,
    rx: RxMode,
    rx_vf: Option<SharedVfQueue>,
    tx_vf: Option<SharedVfQueue>,
    gate: Option<Gate>,
    drain_generation: Option<u64>,
    /// The generation of a "receive from the VF only" route to report (as drained) once
    /// synthetic has caught up.
    caught_up_generation: Option<u64>,
    /// Synthetic frames read but not handed out yet (see [`Self::rx_vf_first`]).
    held: Vec<Packet>,
    /// Since the switch to the VF, synthetic has not yet been read until caught up: it may
    /// still hold frames older than anything on the VF, so it is read first.
    synthetic_first: bool,
    /// Bursts started.
    bursts: u64,
    /// Bursts on the VF since synthetic was last polled, and how many to skip.
    synthetic_skipped: u32,
    synthetic_skip: u32,
}

impl FailoverQueue {
    pub(crate) fn new(
        index: u16,
        synthetic: SyntheticQueue,
        shared: Arc<QueueShared>,
        handshake: Arc<Handshake>,
        tx_order_timeout: std::time::Duration,
    ) -> Self {
        Self {
            index,
            synthetic,
            shared,
            handshake,
            tx_order_timeout,
            seen: 0,
            tx: TxPath::Synthetic,
            rx: RxMode::Synthetic,
            rx_vf: None,
            tx_vf: None,
            gate: None,
            drain_generation: None,
            caught_up_generation: None,
            held: Vec::new(),
            synthetic_first: false,
            bursts: 0,
            synthetic_skipped: 0,
            synthetic_skip: 0,
        }
    }

    /// The queue's index (VMBus channel *i*, VF queue *i* folded onto the VF's count).
    pub fn index(&self) -> u16 {
        self.index
    }

    /// A snapshot of this queue's counters.
    pub fn stats(&self) -> FailoverQueueStats {
        self.shared.counters.snapshot()
    }

    /// Starts a burst: applies a new route if the control thread published one.
    #[inline]
    fn begin(&mut self) {
        self.bursts = self.bursts.wrapping_add(1);
        if self.shared.link.begin_burst(self.seen, self.bursts) {
            self.apply();
        }
    }

    #[cold]
    fn apply(&mut self) {
        let (generation, route) = self.shared.link.take();
        let Route {
            tx,
            tx_at_once,
            rx,
            rx_vf,
            tx_vf,
        } = route;
        if tx != self.tx {
            let deadline = Instant::now() + self.tx_order_timeout;
            self.gate = match (tx_at_once, self.tx, self.tx_vf.take()) {
                (true, _, _) => None,
                (false, TxPath::Synthetic, _) => Some(Gate::Synthetic { deadline }),
                (false, TxPath::Vf, Some(queue)) => Some(Gate::Vf { queue, deadline }),
                (false, TxPath::Vf, None) => None,
            };
        } else if tx_at_once {
            self.gate = None;
        }
        self.tx = tx;
        self.tx_vf = tx_vf;
        // Receiving from the VF where this queue did not: synthetic may hold older frames
        // (see `synthetic_first`), even if a route in between was never seen here.
        if rx == RxMode::SyntheticThenVf || (self.rx_vf.is_none() && rx_vf.is_some()) {
            self.synthetic_first = true;
        }
        if rx == RxMode::Synthetic {
            self.synthetic_first = false;
        }
        self.rx = rx;
        self.rx_vf = rx_vf;
        self.drain_generation = (rx == RxMode::VfThenSynthetic).then_some(generation);
        // A queue that receives nothing from the VF has nothing to drain.
        if self.rx_vf.is_none()
            && let Some(g) = self.drain_generation.take()
        {
            self.shared.link.mark_drained(g, &self.handshake);
        }
        // Before the host may move its side back, synthetic must hold nothing from before the
        // switch to the VF (or frames from before and after the two flips would mix there).
        self.caught_up_generation = None;
        if rx == RxMode::Vf {
            if self.synthetic_first {
                self.caught_up_generation = Some(generation);
            } else {
                self.shared.link.mark_drained(generation, &self.handshake);
            }
        }
        self.seen = generation;
        self.shared
            .counters
            .routes_applied
            .fetch_add(1, Ordering::Relaxed);
        self.shared.link.ack(generation, &self.handshake);
    }

    #[inline]
    fn rx_from_vf(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        let Some(vf) = &self.rx_vf else {
            return 0;
        };
        let n = vf.lock().rx_burst(out, max);
        QueueCounters::add(&self.shared.counters.rx_vf, n);
        if n < max && self.drain_generation.is_some() {
            self.report_drained();
        }
        n
    }

    /// The VF's receive ring was read until empty while a drain was awaited: report it, once.
    #[cold]
    fn report_drained(&mut self) {
        if let Some(g) = self.drain_generation.take() {
            self.shared.link.mark_drained(g, &self.handshake);
        }
    }

    fn rx_from_synthetic(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        let n = self.synthetic.rx_burst(out, max);
        QueueCounters::add(&self.shared.counters.rx_synthetic, n);
        n
    }

    /// Receives VF first, then synthetic, then the VF again; the synthetic frames are handed
    /// out only once a VF read after them came up short. A host that moves the data path on
    /// its own flushes the VF before it steers anything to synthetic, so once a synthetic
    /// frame is visible every older VF frame is too: the later VF read finds any the first
    /// one missed, and no flow is reordered whenever the host flips the path. Synthetic frames
    /// that cannot go out yet wait in `held`, ahead of anything synthetic read later.
    fn rx_vf_first(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        let mut n = self.rx_from_vf(out, max);
        // While the synthetic path brings nothing, look at it every few bursts only (at once
        // again after it brought something, and whenever frames are held back).
        let due = if !self.held.is_empty() {
            true
        } else {
            self.synthetic_skipped += 1;
            let limit = if n < max {
                self.synthetic_skip
            } else {
                SYNTHETIC_POLL_MAX_SKIP
            };
            self.synthetic_skipped > limit
        };
        let room = HELD_MAX.saturating_sub(self.held.len()).min(max);
        if due && room > 0 {
            self.synthetic_skipped = 0;
            // Straight into `held` (no `take` and put back, which drops an empty vector).
            let got = self.synthetic.rx_burst(&mut self.held, room);
            QueueCounters::add(&self.shared.counters.rx_synthetic, got);
            self.synthetic_skip = if got == 0 { SYNTHETIC_IDLE_SKIP } else { 0 };
        }
        if self.held.is_empty() || n == max {
            return n;
        }
        let room = max - n;
        let again = self.rx_from_vf(out, room);
        n += again;
        if again < room {
            n += self.release_held(out, max - n);
        }
        n
    }

    /// Hands out up to `max` held synthetic frames, oldest first.
    fn release_held(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        let take = self.held.len().min(max);
        out.extend(self.held.drain(..take));
        take
    }

    /// Whether the old path still holds frames this queue gave it (after a switch).
    fn gated(&mut self) -> bool {
        let Some(gate) = &self.gate else {
            return false;
        };
        let (pending, deadline) = match gate {
            Gate::Synthetic { deadline } => (self.synthetic.tx_pending(), *deadline),
            Gate::Vf { queue, deadline } => (queue.lock().tx_pending(), *deadline),
        };
        if pending == 0 {
            self.gate = None;
            return false;
        }
        if Instant::now() >= deadline {
            self.shared
                .counters
                .tx_order_timeouts
                .fetch_add(1, Ordering::Relaxed);
            self.gate = None;
            return false;
        }
        self.shared
            .counters
            .tx_order_waits
            .fetch_add(1, Ordering::Relaxed);
        true
    }
}

impl PortQueue for FailoverQueue {
    fn rx_burst(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        self.begin();
        self.receive(out, max)
    }

    fn tx_burst(&mut self, frames: &mut Vec<Packet>) -> usize {
        self.begin();
        self.transmit(frames)
    }
}

impl FailoverQueue {
    fn receive(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        if self.rx == RxMode::Synthetic {
            let n = self.release_held(out, max);
            return n + self.rx_from_synthetic(out, max - n);
        }
        let mut n = 0;
        if self.synthetic_first {
            // Frames the synthetic path received before the switch to the VF go out before
            // anything from the VF, whatever the route says meanwhile.
            n = self.release_held(out, max);
            n += self.rx_from_synthetic(out, max - n);
            if n == max || !self.synthetic.rx_caught_up() {
                return n;
            }
            self.synthetic_first = false;
            if let Some(g) = self.caught_up_generation.take() {
                self.shared.link.mark_drained(g, &self.handshake);
            }
        }
        n + match self.rx {
            RxMode::Vf => self.rx_vf_only(out, max - n),
            _ => self.rx_vf_first(out, max - n),
        }
    }

    /// Receives from the VF only, while a switch back is in flight: synthetic may already hold
    /// newer frames, so what it brings is read into `held` (not handed out), up to
    /// [`HELD_MAX`] frames — keeping the synthetic queue drained, so nothing overflows there
    /// during the switch. `rx_vf_first` hands them out once the VF is empty.
    fn rx_vf_only(&mut self, out: &mut Vec<Packet>, max: usize) -> usize {
        let n = self.rx_from_vf(out, max);
        let room = HELD_MAX.saturating_sub(self.held.len()).min(max);
        if room > 0 {
            let got = self.synthetic.rx_burst(&mut self.held, room);
            QueueCounters::add(&self.shared.counters.rx_synthetic, got);
        }
        n
    }

    fn transmit(&mut self, frames: &mut Vec<Packet>) -> usize {
        if self.gated() {
            return 0;
        }
        match (self.tx, &self.tx_vf) {
            (TxPath::Vf, Some(vf)) => {
                let n = vf.lock().tx_burst(frames);
                QueueCounters::add(&self.shared.counters.tx_vf, n);
                n
            }
            _ => {
                let n = self.synthetic.tx_burst(frames);
                QueueCounters::add(&self.shared.counters.tx_synthetic, n);
                n
            }
        }
    }
}

impl Drop for FailoverQueue {
    fn drop(&mut self) {
        self.rx_vf = None;
        self.tx_vf = None;
        self.gate = None;
        self.shared.link.close(&self.handshake);
    }
}
