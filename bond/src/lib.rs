//! One port over both paths: [`FailoverPort`].
//!
//! A failover port wraps a synthetic NIC (`netvsc::nic::SyntheticNic`, always there) and,
//! when the host offers one, an SR-IOV VF (`vf::port::VfPort`). Like every port in hvnet it
//! splits into a control handle ([`FailoverPort`], `Sync`) and one queue handle per queue
//! ([`FailoverQueue`], owned by one poller): queue *i* is VMBus channel *i* and VF queue *i*
//! (port queues beyond the VF's count transmit on VF queue *i mod n* and receive from the VF
//! only through the queues below *n*).
//!
//! Modules:
//! - `control`: the control thread and the state machine ([`PortState`]): VF association,
//!   discovery and binding through a [`VfProvider`], the switch to the VF (NVSP 129 {VF} and
//!   its completion) and back (planned: drain, then release; surprise: at once, stranded
//!   frames counted), in-place resets, and the watchdog that re-establishes a dead session;
//! - `link`: the per-queue generation handshake between the control thread and the pollers;
//! - `queue`: [`FailoverQueue`];
//! - [`provider`]: finding a VF by its slot, binding it to `vfio-pci`, opening it (or its
//!   kernel interface, for VFs hvnet has no driver for);
//! - [`events`]: [`FailoverEvent`], [`FailoverStats`];
//! - [`clock`] and [`config`];
//! - `metrics` (feature `telemetry`): the port's counters as telemetry's model.
//!
//! Lifecycle: [`FailoverPort::open`] takes the opened NIC and its queues, starts the control
//! thread and returns the port and its queues. Frames for transmit come from
//! [`FailoverPort::pool`] (the NIC's pool, which the VF reaches too). Dropping the port (or
//! [`FailoverPort::close`]) leaves the VF as a planned removal would, releases it and joins
//! the thread, then closes the synthetic NIC as Linux and DPDK detach (RNDIS HALT, what is in
//! flight drained, the receive and send buffers revoked: `SyntheticNic::close`); queue
//! handles hand out what was already received and return 0 afterwards.
//!
//! Guarantees (DESIGN §4, each with a suite in `integration/tests/failover_*.rs`): a planned
//! removal loses nothing; a surprise removal never hangs and counts what it strands; no
//! reordering within a queue across a switch; every wait bounded; a VF absent for long costs
//! nothing and is re-attached when offered again; attach/remove cycles leak nothing; a dead
//! host channel is re-established with the port's identity kept.

pub mod clock;
pub mod config;
mod control;
mod error;
pub mod events;
mod link;
#[cfg(feature = "telemetry")]
pub mod metrics;
pub mod provider;
mod queue;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netvsc::nic::{SyntheticNic, SyntheticQueue};
use packet::{MacAddr, Pool};
use parking_lot::{Condvar, Mutex};
use vf::port::VfPortStats;

pub use clock::{Clock, ManualClock, SystemClock};
pub use config::FailoverConfig;
pub use error::FailoverError;
pub use events::{FailoverEvent, FailoverStats, PortState, SwitchCounts, SwitchReason};
pub use provider::{
    AttachedVf, AutoVfProvider, KernelVfProvider, NoVf, ProbeError, VfProvider, VfRequest,
    VfioIgbvfProvider,
};
pub use queue::{FailoverQueue, FailoverQueueStats};

use control::{Control, Inner};
use link::{Handshake, QueueLink};
use queue::{QueueCounters, QueueShared};

/// The control handle of a failover port (`Send + Sync`). See the crate docs.
#[derive(Debug)]
pub struct FailoverPort {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl FailoverPort {
    /// Starts the port over `nic` and its `queues` (every queue the NIC has, in order), with
    /// `provider` to find VFs and `clock` for its timers.
    pub fn open(
        nic: SyntheticNic,
        queues: Vec<SyntheticQueue>,
        provider: Arc<dyn VfProvider>,
        config: FailoverConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(FailoverPort, Vec<FailoverQueue>), FailoverError> {
        config.validate()?;
        if queues.len() != usize::from(nic.queue_count())
            || queues
                .iter()
                .enumerate()
                .any(|(i, q)| usize::from(q.index()) != i)
        {
            return Err(FailoverError::Config(format!(
                "expected the NIC's {} queues in order",
                nic.queue_count()
            )));
        }
        let handshake = Arc::new(Handshake::default());
        let shared: Vec<Arc<QueueShared>> = queues
            .iter()
            .map(|_| {
                Arc::new(QueueShared {
                    link: QueueLink::new(),
                    counters: QueueCounters::default(),
                })
            })
            .collect();
        let failover_queues = queues
            .into_iter()
            .zip(&shared)
            .map(|(q, s)| {
                FailoverQueue::new(
                    q.index(),
                    q,
                    s.clone(),
                    handshake.clone(),
                    config.tx_order_timeout,
                )
            })
            .collect();
        let inner = Arc::new(Inner {
            nic,
            provider,
            config,
            clock,
            queues: shared,
            handshake,
            stop: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            status: Mutex::new(FailoverStats::default()),
            status_changed: Condvar::new(),
            events: Mutex::new(VecDeque::new()),
            events_ready: Condvar::new(),
            vf_counters: Mutex::new((None, VfPortStats::default())),
        });
        let control = Control::new(inner.clone());
        let thread = std::thread::Builder::new()
            .name("hvnet-failover".into())
            .spawn(move || {
                let _finished = control::Finished(control.inner());
                control.run();
            })
            .map_err(FailoverError::Thread)?;
        Ok((
            FailoverPort {
                inner,
                thread: Mutex::new(Some(thread)),
            },
            failover_queues,
        ))
    }

    /// The port's MAC (the synthetic NIC's; a VF must have the same).
    pub fn mac(&self) -> MacAddr {
        self.inner.nic.mac()
    }

    /// The port's MTU.
    pub fn mtu(&self) -> usize {
        self.inner.nic.mtu()
    }

    /// Number of queues.
    pub fn queue_count(&self) -> u16 {
        self.inner.nic.queue_count()
    }

    /// The pool to take transmit frames from (both paths reach it without a copy).
    pub fn pool(&self) -> &Pool {
        self.inner.nic.pool()
    }

    /// The synthetic NIC (its link, counters and control requests).
    pub fn nic(&self) -> &SyntheticNic {
        &self.inner.nic
    }

    /// Where the data path is now.
    pub fn state(&self) -> PortState {
        self.inner.status.lock().state
    }

    /// Waits at most `timeout` until `done` holds for the port's counters; whether it did.
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&FailoverStats) -> bool,
    ) -> bool {
        let deadline = packet::deadline::after(Instant::now(), timeout);
        let mut status = self.inner.status.lock();
        loop {
            if done(&status) {
                return true;
            }
            if self
                .inner
                .status_changed
                .wait_until(&mut status, deadline)
                .timed_out()
            {
                return done(&status);
            }
        }
    }

    /// The VF backends' own counters over the port's life: every VF released so far and the
    /// one in use (frames its driver received or sent, and dropped by reason: no buffer,
    /// descriptor or frame errors, lost in a reset, taken and never sent).
    pub fn vf_stats(&self) -> VfPortStats {
        let (current, mut totals) = {
            let counters = self.inner.vf_counters.lock();
            (counters.0.clone(), counters.1.clone())
        };
        if let Some(vf) = current {
            totals.add(&vf.stats());
        }
        totals
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> FailoverStats {
        let mut stats = self.inner.status.lock().clone();
        stats.queues = self
            .inner
            .queues
            .iter()
            .map(|q| q.counters.snapshot())
            .collect();
        stats
    }

    /// The next event, waiting at most `timeout`. An event is queued before the counters and
    /// the state it reports change, so once [`wait_until`](Self::wait_until) saw them the event
    /// is already there.
    pub fn next_event(&self, timeout: Duration) -> Option<FailoverEvent> {
        let deadline = packet::deadline::after(Instant::now(), timeout);
        let mut events = self.inner.events.lock();
        loop {
            if let Some(event) = events.pop_front() {
                return Some(event);
            }
            if self
                .inner
                .events_ready
                .wait_until(&mut events, deadline)
                .timed_out()
            {
                return events.pop_front();
            }
        }
    }

    /// Leaves and releases the VF (as a planned removal), stops the control thread, then
    /// closes the synthetic NIC (`SyntheticNic::close`: packet filter 0, RNDIS HALT, the
    /// sends and receives in flight drained, REVOKE_RECEIVE_BUFFER and REVOKE_SEND_BUFFER).
    /// Closing a closed port does nothing.
    ///
    /// Bounded, in two parts:
    /// - the thread is waited for as long as the step it is in and the leave could take with
    ///   every wait at its [`FailoverConfig`] bound (doubled). A thread still running then (a
    ///   VF driver or provider stuck in a call that does not return) is left to finish on its
    ///   own, logged as an error; the port's state says where it was;
    /// - the NIC's close then gets [`FailoverConfig::watchdog_timeout`], the bound of the
    ///   other whole-session operation, re-establishing. It runs even after a stuck thread: a
    ///   program that is going away must not leave the host its buffers. A close that fails
    ///   (a dead or silent host) is logged; the NIC is closed all the same.
    pub fn close(&self) {
        self.stop_thread();
        if self.inner.nic.is_closed() {
            return;
        }
        if let Err(error) = self.inner.nic.close(self.inner.config.watchdog_timeout) {
            tracing::warn!(
                target: "hvnet::bond",
                %error,
                "closing the synthetic NIC did not end cleanly"
            );
        }
    }

    /// Asks the control thread to stop (leaving the VF on its way out) and waits for it, at
    /// most the close bound.
    fn stop_thread(&self) {
        self.inner.stop.store(true, Ordering::Release);
        let Some(thread) = self.thread.lock().take() else {
            return;
        };
        let bound = self.inner.config.close_bound();
        let deadline = packet::deadline::after(Instant::now(), bound);
        let mut status = self.inner.status.lock();
        while !self.inner.finished.load(Ordering::Acquire) {
            if self
                .inner
                .status_changed
                .wait_until(&mut status, deadline)
                .timed_out()
            {
                break;
            }
        }
        drop(status);
        if self.inner.finished.load(Ordering::Acquire) {
            // The thread only panics on a bug; closing must not panic on top of it.
            let _ = thread.join();
        } else {
            tracing::error!(
                target: "hvnet::bond",
                ?bound,
                "the failover control thread did not stop in time; leaving it to finish"
            );
        }
    }
}

impl Drop for FailoverPort {
    fn drop(&mut self) {
        self.close();
    }
}
