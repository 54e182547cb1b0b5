//! The per-queue generation handshake between the control thread and a queue's poller.
//!
//! The control thread decides, per queue, which path transmits and which paths are polled for
//! receive, and hands the queue the VF queue it may use ([`Route`]). It publishes a route by
//! storing it under the queue's route lock and bumping the queue's generation. A poller reads
//! the generation (one `Acquire` load) at the start of every burst and, only when it moved,
//! takes the route lock, copies the route and stores the generation it applied into `acked`.
//! No lock is taken per packet, and none per burst while nothing changes.
//!
//! The control thread waits on [`Handshake`] until every queue acknowledged or was dropped:
//! from then on no poller uses what the previous route gave it, so the VF can be stopped and
//! released, and the next step of a switch can count on every queue having taken this one. A planned switch
//! back also waits for `drained`: the poller saw the VF's receive ring empty while receiving
//! VF first, so everything the host put on the VF was handed out. A queue nobody polls (no
//! burst for a while) is not waited for; order is kept for the queues that are polled.
//!
//! Lock order: a queue's route lock, then the handshake lock; pollers never hold the route
//! lock while bursting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use vf::port::VfQueue;

/// A VF queue shared by the port queues folded onto it (a lock per burst, uncontended when
/// the VF has as many queues as the port).
pub(crate) type SharedVfQueue = Arc<Mutex<Box<dyn VfQueue>>>;

/// Which path carries a queue's transmit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxPath {
    Synthetic,
    Vf,
}

/// Which paths a queue receives from, in which order. The path the data left comes first,
/// so frames it still holds are handed out before the ones the new path brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RxMode {
    /// Synthetic only (no VF, or the switch to the VF is not complete yet).
    Synthetic,
    /// Just switched to the VF: synthetic first, until a burst read it until it was empty
    /// (everything from before the switch is out, whatever routes follow meanwhile); then as
    /// [`RxMode::VfThenSynthetic`].
    SyntheticThenVf,
    /// The VF only (a switch back is in flight: synthetic may already hold newer frames).
    Vf,
    /// The VF first, then synthetic, then the VF again (on the VF, ready for the host to move
    /// the path on its own; or switched back while the VF's rings are drained).
    VfThenSynthetic,
}

/// What a queue should do, as a whole (routes are level-triggered: the newest wins).
#[derive(Clone, Debug)]
pub(crate) struct Route {
    pub tx: TxPath,
    /// Move transmit at once, without waiting for the old path to empty (surprise removal:
    /// the old path will never complete).
    pub tx_at_once: bool,
    pub rx: RxMode,
    /// The VF queue this queue receives from (only queues below the VF's count have one).
    pub rx_vf: Option<SharedVfQueue>,
    /// The VF queue this queue transmits on (queue index folded onto the VF's count).
    pub tx_vf: Option<SharedVfQueue>,
}

impl Route {
    /// Synthetic only, no VF.
    pub fn synthetic() -> Self {
        Self {
            tx: TxPath::Synthetic,
            tx_at_once: false,
            rx: RxMode::Synthetic,
            rx_vf: None,
            tx_vf: None,
        }
    }
}

/// The control thread's and one poller's shared state for one queue.
#[derive(Debug)]
pub(crate) struct QueueLink {
    generation: AtomicU64,
    acked: AtomicU64,
    drained: AtomicU64,
    closed: AtomicBool,
    /// Bursts the poller started (written by the poller only).
    bursts: AtomicU64,
    route: Mutex<Route>,
}

impl QueueLink {
    pub fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            bursts: AtomicU64::new(0),
            route: Mutex::new(Route::synthetic()),
        }
    }

    /// Publishes `route`; returns its generation.
    pub fn publish(&self, route: Route) -> u64 {
        let mut current = self.route.lock();
        *current = route;
        // Under the route lock, so a poller that sees this generation reads this route.
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// A burst starts (the poller's `bursts`-th); whether the route moved since `seen`.
    #[inline]
    pub fn begin_burst(&self, seen: u64, bursts: u64) -> bool {
        self.bursts.store(bursts, Ordering::Relaxed);
        self.generation.load(Ordering::Acquire) != seen
    }

    /// The current route and its generation (poller side, only after [`changed`]).
    pub fn take(&self) -> (u64, Route) {
        let route = self.route.lock();
        (self.generation.load(Ordering::Acquire), route.clone())
    }

    pub fn ack(&self, generation: u64, handshake: &Handshake) {
        self.acked.store(generation, Ordering::Release);
        handshake.notify();
    }

    pub fn mark_drained(&self, generation: u64, handshake: &Handshake) {
        self.drained.store(generation, Ordering::Release);
        handshake.notify();
    }

    /// The poller is gone: it will never use a route again.
    pub fn close(&self, handshake: &Handshake) {
        self.closed.store(true, Ordering::Release);
        // Drop what the last route lent, so a VF can be released without this queue.
        *self.route.lock() = Route::synthetic();
        handshake.notify();
    }

    /// Whether the poller can no longer use an older route: it acknowledged this one or its
    /// handle is gone.
    fn acked(&self, generation: u64) -> bool {
        self.closed.load(Ordering::Acquire) || self.acked.load(Ordering::Acquire) >= generation
    }

    fn drained(&self, generation: u64) -> bool {
        self.closed.load(Ordering::Acquire) || self.drained.load(Ordering::Acquire) >= generation
    }

    fn bursts(&self) -> u64 {
        self.bursts.load(Ordering::Relaxed)
    }
}

/// Where the control thread waits for pollers.
#[derive(Debug, Default)]
pub(crate) struct Handshake {
    lock: Mutex<()>,
    cond: Condvar,
}

impl Handshake {
    fn notify(&self) {
        // Taking the lock orders this notify after a waiter's check (no lost wake-up).
        drop(self.lock.lock());
        self.cond.notify_all();
    }

    /// Waits until every queue acknowledged its generation in `generations` (or, with
    /// `drained`, reported its VF receive drained at that generation); returns the queues
    /// that had not by `deadline`. A queue that was never polled, or whose poller starts no
    /// burst for `idle`, is not polled at all and is not waited for: it takes the route first
    /// thing at its next burst, and nobody receives from it meanwhile.
    pub fn wait(
        &self,
        links: &[&QueueLink],
        generations: &[u64],
        deadline: Instant,
        drained: bool,
        idle: Duration,
    ) -> Vec<u16> {
        let started = Instant::now();
        let bursts: Vec<u64> = links.iter().map(|l| l.bursts()).collect();
        let done = |i: usize, link: &QueueLink, g: u64| {
            let flag = if drained {
                link.drained(g)
            } else {
                link.acked(g)
            };
            flag || link.bursts() == 0 || (started.elapsed() >= idle && link.bursts() == bursts[i])
        };
        let late = || {
            links
                .iter()
                .zip(generations)
                .enumerate()
                .filter(|(i, (link, g))| !done(*i, link, **g))
                .map(|(i, _)| i as u16)
                .collect::<Vec<_>>()
        };
        let mut guard = self.lock.lock();
        loop {
            let pending = late();
            if pending.is_empty() {
                return pending;
            }
            let now = Instant::now();
            if now >= deadline {
                return pending;
            }
            // Wake at least every `idle` to look for queues nobody polls.
            let _ = self.cond.wait_until(&mut guard, deadline.min(now + idle));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long against scheduling hiccups: the bursting thread must only burst once per this.
    const IDLE: Duration = Duration::from_millis(100);

    fn vf_route() -> Route {
        Route {
            tx: TxPath::Vf,
            ..Route::synthetic()
        }
    }

    #[test]
    fn a_poller_takes_a_new_route_at_its_next_burst_start_only() {
        let link = QueueLink::new();
        assert!(!link.begin_burst(0, 1), "nothing published yet");
        let g = link.publish(vf_route());
        assert!(link.begin_burst(0, 2));
        let (applied, route) = link.take();
        assert_eq!((applied, route.tx), (g, TxPath::Vf));
        assert!(
            !link.begin_burst(applied, 3),
            "the same generation is not news"
        );
    }

    #[test]
    fn a_polled_queue_is_waited_for_and_one_nobody_polls_is_not() {
        let links = [QueueLink::new(), QueueLink::new()];
        let hs = Handshake::default();
        let gens: Vec<u64> = links.iter().map(|l| l.publish(vf_route())).collect();
        let refs: Vec<&QueueLink> = links.iter().collect();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            // Queue 0 keeps bursting on its old route; queue 1 is never polled.
            scope.spawn(|| {
                let mut n = 1;
                while !stop.load(Ordering::Acquire) {
                    links[0].begin_burst(0, n);
                    n += 1;
                    std::thread::yield_now();
                }
            });
            while links[0].bursts() == 0 {
                std::thread::yield_now();
            }
            let soon = Instant::now() + 4 * IDLE;
            assert_eq!(hs.wait(&refs, &gens, soon, false, IDLE), vec![0]);
            stop.store(true, Ordering::Release);
        });
        let (g, _) = links[0].take();
        links[0].ack(g, &hs);
        let late = hs.wait(
            &refs,
            &gens,
            Instant::now() + Duration::from_secs(10),
            false,
            IDLE,
        );
        assert!(late.is_empty());
    }

    #[test]
    fn a_drain_waits_for_a_polled_queue_but_not_for_one_nobody_polls() {
        let links = [QueueLink::new(), QueueLink::new()];
        let hs = Handshake::default();
        let gens: Vec<u64> = links
            .iter()
            .map(|l| l.publish(Route::synthetic()))
            .collect();
        let refs: Vec<&QueueLink> = links.iter().collect();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            // Queue 0 keeps bursting without draining; queue 1 is never polled.
            scope.spawn(|| {
                let mut n = 1;
                while !stop.load(Ordering::Acquire) {
                    links[0].begin_burst(gens[0], n);
                    n += 1;
                    std::thread::yield_now();
                }
            });
            while links[0].bursts() == 0 {
                std::thread::yield_now();
            }
            let soon = Instant::now() + 4 * IDLE;
            assert_eq!(hs.wait(&refs, &gens, soon, true, IDLE), vec![0]);
            links[0].mark_drained(gens[0], &hs);
            let late = hs.wait(
                &refs,
                &gens,
                Instant::now() + Duration::from_secs(10),
                true,
                IDLE,
            );
            assert!(late.is_empty());
            stop.store(true, Ordering::Release);
        });
        links[1].close(&hs);
        assert!(links[1].drained(u64::MAX), "a closed queue owes nothing");
    }
}
