//! What every application of `hvnet run` shares: a [`Lane`] (one queue of one port, with its
//! counters), receiving and transmitting a burst on it with every frame counted and
//! captured, and the polling loop of a thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bond::FailoverQueue;
use packet::{MacAddr, Packet, Pool, PortQueue};

use super::capture::{Capture, Direction};
use super::stats::QueueCounters;

/// Frames moved per burst.
pub const BURST: usize = 32;
/// Empty rounds a poller spins through before it rests.
const IDLE_SPINS: u32 = 256;
/// How long an idle poller rests between two rounds (unless it busy-polls). Short against
/// every bound the port waits under (a queue counts as idle after 50 ms).
const IDLE_REST: Duration = Duration::from_micros(50);

/// One queue of one port, owned by one poller.
#[derive(Debug)]
pub struct Lane {
    /// The port's index (for the statistics and the capture).
    pub port: usize,
    /// The queue.
    pub queue: FailoverQueue,
    /// Its counters.
    pub counters: Arc<QueueCounters>,
    /// The port's MAC.
    pub mac: MacAddr,
    /// The port's pool (frames to transmit come from it).
    pub pool: Pool,
}

/// Where the run is, as the pollers see it.
#[derive(Debug, Default)]
pub struct Phase(AtomicU8);

impl Phase {
    const RUNNING: u8 = 0;
    const DRAINING: u8 = 1;
    const STOPPED: u8 = 2;

    /// Sources stop (no frame is generated, read from the kernel or forwarded); what still
    /// arrives is received, counted as drained and freed (a TAP device still gets it).
    pub fn drain(&self) {
        self.0.store(Self::DRAINING, Ordering::Release);
    }

    /// The pollers return.
    pub fn stop(&self) {
        self.0.store(Self::STOPPED, Ordering::Release);
    }

    fn get(&self) -> u8 {
        self.0.load(Ordering::Acquire)
    }
}

/// Buffers a poller reuses, so a burst allocates nothing.
#[derive(Debug, Default)]
pub struct Scratch {
    /// The frames of the burst in hand.
    pub burst: Vec<Packet>,
    /// Frames generated and not yet taken by the port (txonly).
    pub pending: Vec<Packet>,
    lens: Vec<usize>,
    copy: Vec<u8>,
}

impl Scratch {
    /// Room for a burst.
    pub fn new() -> Self {
        Self {
            burst: Vec::with_capacity(BURST),
            pending: Vec::with_capacity(BURST),
            lens: Vec::with_capacity(BURST),
            copy: Vec::new(),
        }
    }
}

impl Lane {
    /// Receives a burst into `scratch.burst` (which must be empty), counted and captured;
    /// how many frames came.
    pub fn receive(&mut self, scratch: &mut Scratch, capture: Option<&Capture>) -> usize {
        let n = self.queue.rx_burst(&mut scratch.burst, BURST);
        if n != 0 {
            let bytes = scratch.burst.iter().map(Packet::len).sum();
            self.counters.received(n, bytes);
            if let Some(c) = capture {
                c.write(
                    self.port,
                    Direction::Inbound,
                    scratch.burst.iter().map(Packet::data),
                );
            }
        }
        n
    }

    /// Transmits `scratch.burst`: what the port takes is counted as sent (and captured), the
    /// rest is dropped and counted. The burst is empty afterwards.
    pub fn transmit(&mut self, scratch: &mut Scratch, capture: Option<&Capture>) {
        self.offer(scratch, capture);
        self.counters.tx_dropped(scratch.burst.len());
        scratch.burst.clear();
    }

    /// Receives a burst and frees it, counted as drained.
    pub fn drain(&mut self, scratch: &mut Scratch, capture: Option<&Capture>) -> usize {
        let n = self.receive(scratch, capture);
        self.counters.drained(n);
        if n == 0 {
            self.counters.quiet_round();
        }
        scratch.burst.clear();
        n
    }

    /// Offers `scratch.burst` to the port: what it takes is counted as sent (and captured);
    /// the rest stays in the burst, in order.
    pub fn offer(&mut self, scratch: &mut Scratch, capture: Option<&Capture>) {
        let Scratch {
            burst, lens, copy, ..
        } = scratch;
        if burst.is_empty() {
            return;
        }
        lens.clear();
        lens.extend(burst.iter().map(Packet::len));
        if capture.is_some() {
            // The frames are gone once taken; the capture needs their bytes after.
            copy.clear();
            for p in burst.iter() {
                copy.extend_from_slice(p.data());
            }
        }
        let taken = self.queue.tx_burst(burst);
        let bytes = lens[..taken].iter().sum();
        self.counters.sent(taken, bytes);
        if let Some(c) = capture {
            let mut at = 0;
            let frames = lens[..taken].iter().map(|&len| {
                let frame = &copy[at..at + len];
                at += len;
                frame
            });
            c.write(self.port, Direction::Outbound, frames);
        }
    }
}

/// Calls `round` until the phase is stopped; a round is told whether the run is draining and
/// returns how many frames it moved. An idle poller spins a while, then rests [`IDLE_REST`]
/// between rounds unless `busy_poll`.
pub fn poll(phase: &Phase, busy_poll: bool, mut round: impl FnMut(bool) -> usize) {
    let mut idle = 0u32;
    loop {
        let draining = match phase.get() {
            Phase::RUNNING => false,
            Phase::DRAINING => true,
            _ => return,
        };
        if round(draining) != 0 {
            idle = 0;
            continue;
        }
        idle = idle.saturating_add(1);
        if busy_poll || idle < IDLE_SPINS {
            std::hint::spin_loop();
        } else {
            std::thread::sleep(IDLE_REST);
        }
    }
}
