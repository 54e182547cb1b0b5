//! Sequenced traffic through a port under test, both ways, checked at the far end:
//! [`Traffic`].
//!
//! One poller thread per port queue receives (checking that sequence numbers only grow within
//! each flow) and transmits numbered frames; one peer thread stands at the vSwitch's external
//! port, injecting numbered frames for every queue (unicast to the port's MAC, and, if asked,
//! a broadcast flow) and checking the order of what the guest sent.
//!
//! **Pacing.** Each direction keeps at most `window` frames in flight per queue. A direction
//! that makes no progress for `stall` writes its in-flight frames off, so a run goes on after
//! a real loss (a surprise removal strands frames; the test's accounting must find them in a
//! drop counter). A write-off never causes a loss by itself: with `paced` (the default) the
//! peer sends a frame only when the path the switch steers it to has room for it now — the
//! receive descriptors the VF's driver posted, or the synthetic queue's backlog
//! ([`ExternalPort::inject_paced`](crate::host::ExternalPort::inject_paced)) — so a poller
//! the scheduler starves for seconds slows the peer down instead of overrunning its rings.
//! The guest's transmit side needs no credit: `tx_burst` takes only what its rings hold.
//!
//! A flow is (the queue the frame was sent or injected on, its kind); order is checked per
//! flow, which is what "no reordering within a queue" means when a port queue and the VF
//! queue under it have the same index.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use packet::{MacAddr, Packet, Pool, PortQueue};

use crate::host::{Paced, SimHost};

/// EtherType of traffic frames (IEEE local experimental).
pub const TRAFFIC_ETHERTYPE: u16 = 0x88b5;
/// The peer's MAC.
pub const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0xfe]);
const MAGIC: u32 = 0x4856_4654;
const HEADER: usize = 14 + 4 + 1 + 2 + 8;
/// Flows per queue: unicast to the guest, broadcast to the guest, from the guest.
const KINDS: usize = 3;
const KIND_UNICAST: u8 = 0;
const KIND_BROADCAST: u8 = 1;
const KIND_FROM_GUEST: u8 = 2;
const MAX_QUEUES: usize = 64;
const BURST: usize = 32;

/// How traffic is generated.
#[derive(Clone, Debug)]
pub struct TrafficConfig {
    /// Bytes per frame (60..=1514).
    pub frame_len: usize,
    /// Frames in flight per queue and direction at most.
    pub window: u64,
    /// Whether the guest transmits.
    pub guest_tx: bool,
    /// Whether the peer transmits.
    pub peer_tx: bool,
    /// Every how many peer frames one is broadcast (0 = never).
    pub broadcast_every: u64,
    /// No progress for this long writes a direction's in-flight frames off.
    pub stall: Duration,
    /// Whether the peer sends only on credit (see the module docs); without it the peer
    /// overruns a guest that does not keep up, and the drops land in the overload counters.
    pub paced: bool,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            frame_len: 128,
            window: 128,
            guest_tx: true,
            peer_tx: true,
            broadcast_every: 16,
            stall: Duration::from_millis(50),
            paced: true,
        }
    }
}

/// Counters of a traffic run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficCounts {
    /// Frames the port's `tx_burst` took.
    pub guest_sent: u64,
    /// Unicast frames the guest received.
    pub guest_received: u64,
    /// Broadcast frames the guest received.
    pub guest_received_broadcast: u64,
    /// Frames the guest received out of order within their flow.
    pub guest_reordered: u64,
    /// Frames the guest received that were not traffic frames or were corrupt.
    pub guest_bad: u64,
    /// Unicast frames the peer injected and the vSwitch accepted.
    pub peer_injected: u64,
    /// Broadcast frames the peer injected and the vSwitch accepted.
    pub peer_injected_broadcast: u64,
    /// Frames the vSwitch refused at injection (counted by the host too).
    pub peer_refused: u64,
    /// Frames the peer received from the guest.
    pub peer_received: u64,
    /// Frames the peer received out of order within their flow.
    pub peer_reordered: u64,
    /// Frames the peer received that were not traffic frames or were corrupt.
    pub peer_bad: u64,
    /// The first anomalies seen (which flow was reordered, at which sequence numbers).
    pub notes: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    stop_sending: AtomicBool,
    /// Threads (pollers and the peer) that saw `stop_sending` and will send nothing more:
    /// a sender preempted in the middle of a burst still finishes it, so the counts are final
    /// only once every sender said so.
    senders_stopped: AtomicUsize,
    halt: AtomicBool,
    guest_sent: PerQueue,
    guest_received: PerQueue,
    guest_received_broadcast: AtomicU64,
    guest_reordered: AtomicU64,
    guest_bad: AtomicU64,
    peer_injected: PerQueue,
    peer_injected_broadcast: AtomicU64,
    peer_refused: AtomicU64,
    peer_received: PerQueue,
    peer_reordered: AtomicU64,
    peer_bad: AtomicU64,
    notes: parking_lot::Mutex<Vec<String>>,
}

/// One counter per queue.
type PerQueue = [AtomicU64; MAX_QUEUES];

impl Default for Shared {
    fn default() -> Self {
        let per_queue = || std::array::from_fn(|_| AtomicU64::new(0));
        Self {
            stop_sending: AtomicBool::new(false),
            senders_stopped: AtomicUsize::new(0),
            halt: AtomicBool::new(false),
            guest_sent: per_queue(),
            guest_received: per_queue(),
            guest_received_broadcast: AtomicU64::new(0),
            guest_reordered: AtomicU64::new(0),
            guest_bad: AtomicU64::new(0),
            peer_injected: per_queue(),
            peer_injected_broadcast: AtomicU64::new(0),
            peer_refused: AtomicU64::new(0),
            peer_received: per_queue(),
            peer_reordered: AtomicU64::new(0),
            peer_bad: AtomicU64::new(0),
            notes: parking_lot::Mutex::new(Vec::new()),
        }
    }
}

impl Shared {
    /// Keeps the first few anomalies for the test's failure message.
    fn note(&self, what: String) {
        let mut notes = self.notes.lock();
        if notes.len() < 8 {
            notes.push(what);
        }
    }

    fn counts(&self) -> TrafficCounts {
        let sum = |a: &PerQueue| a.iter().map(|c| c.load(Ordering::Acquire)).sum();
        let get = |c: &AtomicU64| c.load(Ordering::Acquire);
        TrafficCounts {
            guest_sent: sum(&self.guest_sent),
            guest_received: sum(&self.guest_received),
            guest_received_broadcast: get(&self.guest_received_broadcast),
            guest_reordered: get(&self.guest_reordered),
            guest_bad: get(&self.guest_bad),
            peer_injected: sum(&self.peer_injected),
            peer_injected_broadcast: get(&self.peer_injected_broadcast),
            peer_refused: get(&self.peer_refused),
            peer_received: sum(&self.peer_received),
            peer_reordered: get(&self.peer_reordered),
            peer_bad: get(&self.peer_bad),
            notes: self.notes.lock().clone(),
        }
    }
}

/// Builds a traffic frame.
fn frame(dst: MacAddr, src: MacAddr, kind: u8, queue: u16, seq: u64, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(HEADER)];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&TRAFFIC_ETHERTYPE.to_be_bytes());
    f[14..18].copy_from_slice(&MAGIC.to_be_bytes());
    f[18] = kind;
    f[19..21].copy_from_slice(&queue.to_le_bytes());
    f[21..29].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in f[HEADER..].iter_mut().enumerate() {
        *b = (seq as u8) ^ (i as u8);
    }
    f
}

/// Parses a traffic frame: (kind, queue, seq), or `None` if it is not one or is corrupt.
fn parse(f: &[u8]) -> Option<(u8, u16, u64)> {
    if f.len() < HEADER
        || f[12..14] != TRAFFIC_ETHERTYPE.to_be_bytes()
        || f[14..18] != MAGIC.to_be_bytes()
    {
        return None;
    }
    let kind = f[18];
    let queue = u16::from_le_bytes([f[19], f[20]]);
    let seq = u64::from_le_bytes(f[21..29].try_into().ok()?);
    let payload_ok = f[HEADER..]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (seq as u8) ^ (i as u8));
    (usize::from(kind) < KINDS && usize::from(queue) < MAX_QUEUES && payload_ok)
        .then_some((kind, queue, seq))
}

/// Order checking per flow.
struct Order {
    last: Vec<Option<u64>>,
}

impl Order {
    fn new() -> Self {
        Self {
            last: vec![None; MAX_QUEUES * KINDS],
        }
    }

    /// Records `seq` on flow (queue, kind); on a reordering, the flow's last sequence number.
    fn check(&mut self, kind: u8, queue: u16, seq: u64) -> Result<(), Option<u64>> {
        let slot = &mut self.last[usize::from(queue) * KINDS + usize::from(kind)];
        if slot.is_none_or(|last| seq > last) {
            *slot = Some(seq);
            Ok(())
        } else {
            Err(*slot)
        }
    }
}

/// Running traffic; see the module docs.
#[derive(Debug)]
pub struct Traffic<Q: PortQueue + 'static> {
    shared: Arc<Shared>,
    pollers: Vec<JoinHandle<Q>>,
    peer: Option<JoinHandle<()>>,
    /// (guest transmits, peer transmits): the directions [`Traffic::wait_progress`] waits for.
    directions: (bool, bool),
}

impl<Q: PortQueue + 'static> Traffic<Q> {
    /// Starts a poller per queue of `queues` and the peer at `host`'s external port.
    pub fn start(
        queues: Vec<Q>,
        pool: Pool,
        mac: MacAddr,
        host: Arc<SimHost>,
        config: TrafficConfig,
    ) -> Self {
        let shared = Arc::new(Shared::default());
        let directions = (config.guest_tx, config.peer_tx);
        let n = queues.len();
        let pollers = queues
            .into_iter()
            .enumerate()
            .map(|(i, q)| {
                let (shared, pool, config) = (shared.clone(), pool.clone(), config.clone());
                std::thread::Builder::new()
                    .name(format!("traffic-q{i}"))
                    .spawn(move || poll(q, i as u16, pool, mac, &shared, &config))
                    .expect("spawning a poller")
            })
            .collect();
        let peer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("traffic-peer".into())
                .spawn(move || peer(n, mac, &host, &shared, &config))
                .expect("spawning the peer")
        };
        Self {
            shared,
            pollers,
            peer: Some(peer),
            directions,
        }
    }

    /// The counters so far.
    pub fn counts(&self) -> TrafficCounts {
        self.shared.counts()
    }

    /// Frames per second both ways together over `window` (this thread sleeps meanwhile).
    pub fn rate(&self, window: Duration) -> f64 {
        let a = self.counts();
        let started = Instant::now();
        std::thread::sleep(window);
        let b = self.counts();
        let frames = (b.guest_received - a.guest_received) + (b.peer_received - a.peer_received);
        frames as f64 / started.elapsed().as_secs_f64()
    }

    /// Waits at most `timeout` until both directions moved `frames` more frames (those the
    /// config enables); whether they did.
    ///
    /// Which directions count comes from the config, never from whether a direction has
    /// moved yet: a sender the scheduler has not run since it started has moved nothing, and
    /// must not be taken for a direction that is off.
    pub fn wait_progress(&self, frames: u64, timeout: Duration) -> bool {
        let (guest_tx, peer_tx) = self.directions;
        let start = self.counts();
        let deadline = packet::deadline::after(Instant::now(), timeout);
        loop {
            let now = self.counts();
            let rx_ok = !peer_tx || now.guest_received >= start.guest_received + frames;
            let tx_ok = !guest_tx || now.peer_received >= start.peer_received + frames;
            if rx_ok && tx_ok {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::yield_now();
        }
    }

    /// Stops generating frames, waits until every sender has stopped, then at most `timeout`
    /// in all until `settled` holds for the counts (keeping both ends receiving), then stops
    /// the threads. Returns the final counts and the queues.
    ///
    /// `settled` is asked only once no thread can send any more: a sender the scheduler
    /// preempted in the middle of a burst finishes that burst after the stop is asked for,
    /// and frames counted after `settled` held would be left in the rings unread.
    pub fn stop(
        mut self,
        timeout: Duration,
        settled: impl Fn(&TrafficCounts) -> bool,
    ) -> (TrafficCounts, Vec<Q>) {
        self.shared.stop_sending.store(true, Ordering::Release);
        let deadline = packet::deadline::after(Instant::now(), timeout);
        let senders = self.pollers.len() + usize::from(self.peer.is_some());
        while self.shared.senders_stopped.load(Ordering::Acquire) < senders
            && Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        while !settled(&self.counts()) && Instant::now() < deadline {
            std::thread::yield_now();
        }
        self.shared.halt.store(true, Ordering::Release);
        let queues = self
            .pollers
            .drain(..)
            .map(|p| p.join().expect("poller panicked"))
            .collect();
        if let Some(peer) = self.peer.take() {
            peer.join().expect("peer panicked");
        }
        (self.counts(), queues)
    }
}

impl<Q: PortQueue + 'static> Drop for Traffic<Q> {
    fn drop(&mut self) {
        self.shared.stop_sending.store(true, Ordering::Release);
        self.shared.halt.store(true, Ordering::Release);
        for p in self.pollers.drain(..) {
            let _ = p.join();
        }
        if let Some(peer) = self.peer.take() {
            let _ = peer.join();
        }
    }
}

/// A direction's flow control: in flight = sent − arrived − written off.
struct Window {
    written_off: u64,
    last_arrived: u64,
    since: Instant,
}

impl Window {
    fn new() -> Self {
        Self {
            written_off: 0,
            last_arrived: 0,
            since: Instant::now(),
        }
    }

    /// How many more may be sent now.
    fn room(&mut self, sent: u64, arrived: u64, config: &TrafficConfig) -> u64 {
        if arrived != self.last_arrived {
            self.last_arrived = arrived;
            self.since = Instant::now();
        }
        let in_flight = sent.saturating_sub(arrived + self.written_off);
        if in_flight >= config.window && self.since.elapsed() >= config.stall {
            self.written_off = sent.saturating_sub(arrived);
            self.since = Instant::now();
            return config.window;
        }
        config.window.saturating_sub(in_flight)
    }
}

fn poll<Q: PortQueue>(
    mut q: Q,
    index: u16,
    pool: Pool,
    mac: MacAddr,
    shared: &Shared,
    config: &TrafficConfig,
) -> Q {
    let i = usize::from(index);
    let mut rx: Vec<Packet> = Vec::with_capacity(BURST * 2);
    let mut tx: Vec<Packet> = Vec::with_capacity(BURST);
    let mut order = Order::new();
    let mut window = Window::new();
    let mut seq = 0u64;
    let mut stopped = false;
    while !shared.halt.load(Ordering::Acquire) {
        // Read once per pass: after saying it stopped, this pass and later ones send nothing.
        let stopping = shared.stop_sending.load(Ordering::Acquire);
        if stopping && !stopped {
            tx.clear();
            stopped = true;
            shared.senders_stopped.fetch_add(1, Ordering::AcqRel);
        }
        let mut busy = false;
        if q.rx_burst(&mut rx, BURST * 2) > 0 {
            busy = true;
            let mut broadcast = 0u64;
            for p in rx.drain(..) {
                match parse(p.data()) {
                    Some((kind @ (KIND_UNICAST | KIND_BROADCAST), queue, s)) => {
                        if let Err(last) = order.check(kind, queue, s) {
                            shared.guest_reordered.fetch_add(1, Ordering::Relaxed);
                            shared.note(format!(
                                "guest queue {index}: flow (queue {queue}, kind {kind}) got {s} after {last:?}"
                            ));
                        }
                        if kind == KIND_UNICAST {
                            // Counted for the flow's queue (the peer's window), whichever
                            // port queue received it (a VF with fewer queues folds flows).
                            shared.guest_received[usize::from(queue)]
                                .fetch_add(1, Ordering::Release);
                        } else {
                            broadcast += 1;
                        }
                    }
                    _ => {
                        shared.guest_bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            shared
                .guest_received_broadcast
                .fetch_add(broadcast, Ordering::Release);
        }
        if config.guest_tx && !stopping {
            let sent = shared.guest_sent[i].load(Ordering::Relaxed);
            let arrived = shared.peer_received[i].load(Ordering::Acquire);
            let room = window.room(sent + tx.len() as u64, arrived, config);
            while tx.len() < BURST && (tx.len() as u64) < room {
                let f = frame(PEER_MAC, mac, KIND_FROM_GUEST, index, seq, config.frame_len);
                match pool.alloc_from(&f) {
                    Some(p) => {
                        tx.push(p);
                        seq += 1;
                    }
                    None => break,
                }
            }
        }
        if !stopping && !tx.is_empty() {
            let n = q.tx_burst(&mut tx);
            if n > 0 {
                busy = true;
                shared.guest_sent[i].fetch_add(n as u64, Ordering::Release);
            }
        }
        if !busy {
            std::hint::spin_loop();
            std::thread::yield_now();
        }
    }
    q
}

fn peer(queues: usize, mac: MacAddr, host: &SimHost, shared: &Shared, config: &TrafficConfig) {
    let external = host.external();
    let mut order = Order::new();
    let mut windows: Vec<Window> = (0..queues).map(|_| Window::new()).collect();
    let mut seqs = vec![0u64; queues];
    let mut broadcast_seq = vec![0u64; queues];
    let mut count = 0u64;
    let mut stopped = false;
    while !shared.halt.load(Ordering::Acquire) {
        // Read once per pass, as the pollers do: the injection below runs to its end.
        let stopping = shared.stop_sending.load(Ordering::Acquire);
        if stopping && !stopped {
            stopped = true;
            shared.senders_stopped.fetch_add(1, Ordering::AcqRel);
        }
        let mut busy = false;
        if config.peer_tx && !stopping {
            for q in 0..queues {
                let sent = shared.peer_injected[q].load(Ordering::Relaxed);
                let arrived = shared.guest_received[q].load(Ordering::Acquire);
                let room = windows[q].room(sent, arrived, config).min(BURST as u64);
                for _ in 0..room {
                    let broadcast = config.broadcast_every != 0
                        && (count + 1).is_multiple_of(config.broadcast_every);
                    let (dst, kind, seq) = if broadcast {
                        (MacAddr::BROADCAST, KIND_BROADCAST, broadcast_seq[q] + 1)
                    } else {
                        (mac, KIND_UNICAST, seqs[q] + 1)
                    };
                    let f = frame(dst, PEER_MAC, kind, q as u16, seq, config.frame_len);
                    let outcome = if config.paced {
                        external.inject_paced(q as u16, &f)
                    } else if external.inject_on(q as u16, &f) {
                        Paced::Delivered
                    } else {
                        Paced::Refused
                    };
                    if outcome == Paced::NoRoom {
                        // No credit on this queue's path: the frame waits for the guest.
                        break;
                    }
                    count += 1;
                    if broadcast {
                        broadcast_seq[q] = seq;
                    } else {
                        seqs[q] = seq;
                    }
                    if outcome == Paced::Refused {
                        shared.peer_refused.fetch_add(1, Ordering::Release);
                    } else if broadcast {
                        shared
                            .peer_injected_broadcast
                            .fetch_add(1, Ordering::Release);
                    } else {
                        shared.peer_injected[q].fetch_add(1, Ordering::Release);
                    }
                    busy = true;
                }
            }
        }
        while let Some((_, f)) = external.try_recv() {
            busy = true;
            match parse(&f) {
                Some((KIND_FROM_GUEST, queue, seq)) if usize::from(queue) < queues => {
                    if let Err(last) = order.check(KIND_FROM_GUEST, queue, seq) {
                        shared.peer_reordered.fetch_add(1, Ordering::Relaxed);
                        shared.note(format!(
                            "peer: flow (queue {queue}) got {seq} after {last:?}"
                        ));
                    }
                    shared.peer_received[usize::from(queue)].fetch_add(1, Ordering::Release);
                }
                _ => {
                    shared.peer_bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if !busy {
            std::thread::yield_now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_corruption_is_caught() {
        let f = frame(PEER_MAC, MacAddr::BROADCAST, KIND_UNICAST, 3, 77, 100);
        assert_eq!(parse(&f), Some((KIND_UNICAST, 3, 77)));
        let mut bad = f.clone();
        bad[60] ^= 1;
        assert_eq!(parse(&bad), None);
        assert_eq!(parse(&f[..20]), None);
    }

    /// A queue whose first transmit burst holds the poller inside `tx_burst` until the stop
    /// was asked for and `settled` consulted (or, as it must be with a correct `stop`, a
    /// bound ran out): a sender preempted mid-burst at the stop.
    struct PreemptedMidBurst {
        shared: Arc<std::sync::OnceLock<Arc<Shared>>>,
        in_burst: Arc<AtomicBool>,
        settled_asked: Arc<AtomicBool>,
        held_once: bool,
    }

    impl PortQueue for PreemptedMidBurst {
        fn rx_burst(&mut self, _out: &mut Vec<Packet>, _max: usize) -> usize {
            0
        }

        fn tx_burst(&mut self, frames: &mut Vec<Packet>) -> usize {
            if !self.held_once {
                self.held_once = true;
                self.in_burst.store(true, Ordering::SeqCst);
                let shared = loop {
                    if let Some(shared) = self.shared.get() {
                        break shared.clone();
                    }
                    std::thread::yield_now();
                };
                while !shared.stop_sending.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                // A correct stop never asks `settled` now; this bound ends the wait then.
                let bound = Instant::now() + Duration::from_secs(1);
                while !self.settled_asked.load(Ordering::SeqCst) && Instant::now() < bound {
                    std::thread::yield_now();
                }
                self.in_burst.store(false, Ordering::SeqCst);
            }
            let n = frames.len();
            frames.clear();
            n
        }
    }

    #[test]
    fn settled_is_asked_only_once_no_sender_is_mid_burst() {
        let (host, _device) = SimHost::start(crate::host::HostConfig::default()).unwrap();
        let host = Arc::new(host);
        let pool = Pool::new(packet::SharedMemory::anonymous(1 << 20).unwrap(), 2048).unwrap();
        let shared_slot = Arc::new(std::sync::OnceLock::new());
        let in_burst = Arc::new(AtomicBool::new(false));
        let settled_asked = Arc::new(AtomicBool::new(false));
        let queue = PreemptedMidBurst {
            shared: shared_slot.clone(),
            in_burst: in_burst.clone(),
            settled_asked: settled_asked.clone(),
            held_once: false,
        };
        let config = TrafficConfig {
            peer_tx: false,
            ..TrafficConfig::default()
        };
        let traffic = Traffic::start(vec![queue], pool, PEER_MAC, host, config);
        shared_slot.set(traffic.shared.clone()).unwrap();
        while !in_burst.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let asked_mid_burst = AtomicBool::new(false);
        let seen_sent = AtomicU64::new(u64::MAX);
        let (counts, _queues) = traffic.stop(Duration::from_secs(30), |c| {
            if in_burst.load(Ordering::SeqCst) {
                asked_mid_burst.store(true, Ordering::SeqCst);
            }
            settled_asked.store(true, Ordering::SeqCst);
            seen_sent.store(c.guest_sent, Ordering::SeqCst);
            true
        });
        assert!(
            !asked_mid_burst.load(Ordering::SeqCst),
            "stop asked `settled` while a poller was still inside its last transmit burst"
        );
        assert_eq!(
            seen_sent.load(Ordering::SeqCst),
            counts.guest_sent,
            "frames were counted after `settled` held"
        );
        assert!(counts.guest_sent > 0, "the held burst was counted");
    }

    /// A queue that takes every frame and never receives one.
    struct Deaf;

    impl PortQueue for Deaf {
        fn rx_burst(&mut self, _out: &mut Vec<Packet>, _max: usize) -> usize {
            0
        }

        fn tx_burst(&mut self, frames: &mut Vec<Packet>) -> usize {
            let n = frames.len();
            frames.clear();
            n
        }
    }

    #[test]
    fn a_direction_that_has_not_moved_yet_is_not_taken_for_one_that_is_off() {
        // No guest is attached to the host, so the peer's frames reach nobody: exactly what a
        // peer thread the scheduler has not run yet looks like from outside.
        let (host, _device) = SimHost::start(crate::host::HostConfig::default()).unwrap();
        let pool = Pool::new(packet::SharedMemory::anonymous(1 << 20).unwrap(), 2048).unwrap();
        let config = TrafficConfig {
            guest_tx: false,
            ..TrafficConfig::default()
        };
        let traffic = Traffic::start(vec![Deaf], pool, PEER_MAC, Arc::new(host), config);
        assert!(
            !traffic.wait_progress(1, Duration::from_millis(200)),
            "progress reported while the peer's direction moved nothing: {:?}",
            traffic.counts()
        );
        let (counts, _) = traffic.stop(Duration::from_secs(5), |_| true);
        assert_eq!(counts.guest_received, 0);
    }

    #[test]
    fn order_is_per_flow() {
        let mut o = Order::new();
        assert!(o.check(0, 1, 5).is_ok());
        assert!(o.check(0, 2, 1).is_ok(), "another queue is another flow");
        assert!(o.check(1, 1, 1).is_ok(), "another kind is another flow");
        assert_eq!(o.check(0, 1, 5), Err(Some(5)));
        assert!(o.check(0, 1, 9).is_ok(), "gaps are loss, not reordering");
    }
}
