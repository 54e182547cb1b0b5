//! The per-queue generation handshake between the control thread and a queue's poller.
//!
//! The control thread decides, per queue, which path transmits and which paths are polled for
//! receive, and hands the queue the VF queue it may use ([`Route`]). It publishes a route by
//! storing it under the queue's route lock and bumping the queue's generation. A poller reads
//! the generation (one `Acquire` load) at the start of every burst and, only when it moved,
//! takes the route lock, copies the route and stores the generation it applied into `acked`.
//! No lock is taken per packet, and none per burst while nothing changes.
//!
//! The control thread waits on [`Handshake`] until every queue acknowledged (or was dropped):
//! from then on no poller uses what the previous route gave it, so the VF can be stopped and
//! released. A planned switch back also waits for `drained`: the poller saw the VF's receive
//! ring empty while receiving VF first, so everything the host put on the VF was handed out.
//!
//! Lock order: a queue's route lock, then the handshake lock; pollers never hold the route
//! lock while bursting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

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
    /// Synthetic first, then the VF if synthetic did not fill the burst: just switched to the
    /// VF. Once synthetic came up short (everything from before the switch is out) the queue
    /// moves to [`RxMode::VfThenSynthetic`] by itself.
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
    route: Mutex<Route>,
}

impl QueueLink {
    pub fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            drained: AtomicU64::new(0),
            closed: AtomicBool::new(false),
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

    /// The generation a poller last applied differs from `seen`.
    #[inline]
    pub fn changed(&self, seen: u64) -> bool {
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

    fn acked(&self, generation: u64) -> bool {
        self.closed.load(Ordering::Acquire) || self.acked.load(Ordering::Acquire) >= generation
    }

    fn drained(&self, generation: u64) -> bool {
        self.closed.load(Ordering::Acquire) || self.drained.load(Ordering::Acquire) >= generation
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
    /// that had not by `deadline`.
    pub fn wait(
        &self,
        links: &[&QueueLink],
        generations: &[u64],
        deadline: Instant,
        drained: bool,
    ) -> Vec<u16> {
        let done = |link: &QueueLink, g: u64| {
            if drained {
                link.drained(g)
            } else {
                link.acked(g)
            }
        };
        let late = || {
            links
                .iter()
                .zip(generations)
                .enumerate()
                .filter(|(_, (link, g))| !done(link, **g))
                .map(|(i, _)| i as u16)
                .collect::<Vec<_>>()
        };
        let mut guard = self.lock.lock();
        loop {
            let pending = late();
            if pending.is_empty() {
                return pending;
            }
            if self.cond.wait_until(&mut guard, deadline).timed_out() {
                return late();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_poller_sees_a_published_route_once_and_the_control_sees_its_ack() {
        let link = Arc::new(QueueLink::new());
        let hs = Arc::new(Handshake::default());
        let mut seen = 0;
        assert!(!link.changed(seen));
        let mut route = Route::synthetic();
        route.tx = TxPath::Vf;
        let g = link.publish(route);
        assert!(link.changed(seen));
        let poller = {
            let (link, hs) = (link.clone(), hs.clone());
            std::thread::spawn(move || {
                let (g, route) = link.take();
                link.ack(g, &hs);
                (g, route.tx)
            })
        };
        let late = hs.wait(
            &[&*link],
            &[g],
            Instant::now() + Duration::from_secs(10),
            false,
        );
        assert!(late.is_empty());
        let (applied, tx) = poller.join().unwrap();
        seen = applied;
        assert_eq!((applied, tx), (g, TxPath::Vf));
        assert!(!link.changed(seen));
    }

    #[test]
    fn a_silent_poller_is_reported_late_and_a_closed_one_is_not() {
        let links = [Arc::new(QueueLink::new()), Arc::new(QueueLink::new())];
        let hs = Handshake::default();
        let gens: Vec<u64> = links
            .iter()
            .map(|l| l.publish(Route::synthetic()))
            .collect();
        links[1].close(&hs);
        let refs: Vec<&QueueLink> = links.iter().map(|l| &**l).collect();
        let late = hs.wait(
            &refs,
            &gens,
            Instant::now() + Duration::from_millis(20),
            false,
        );
        assert_eq!(late, vec![0]);
        assert_eq!(
            hs.wait(&refs, &gens, Instant::now(), true),
            vec![0],
            "only the open queue owes a drain"
        );
    }
}
