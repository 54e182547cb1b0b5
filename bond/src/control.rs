//! The control thread: the state machine of DESIGN §4.
//!
//! One thread per port owns the VF and every NVSP request the port makes. It loops: wait a
//! tick for the VF's interrupts (or, without a VF, for a host event), take the host's events
//! (VF association, host data-path switch, dead channel) and the VF's (link, reset, removal,
//! release request), run the timers on the port's [`Clock`] (looking for an associated VF, the
//! watchdog's keepalive), and switch to the VF when one is attached, its link is up and the
//! host has not refused it.
//!
//! Leaving the VF, planned (release request, association 0, host switch, link down):
//! 1. every queue transmits on synthetic once the VF sent what it took, and receives from the
//!    VF only (synthetic may soon hold newer frames) once it has handed out what synthetic
//!    received before the switch to the VF;
//! 2. NVSP 129 {synthetic} and its completion (the host has put everything for the VF in its
//!    rings);
//! 3. every queue receives VF first until it found the VF's rings empty;
//! 4. the queues give the VF up; the VF is stopped and released, or kept for later (link down,
//!    host switch).
//!
//! Surprise (removal, in-place reset): transmit and receive move to synthetic at once, the
//! frames stranded on the VF are counted as lost, then 129 {synthetic}. Every wait is bounded
//! by [`FailoverConfig`]; a wait that runs out is counted and the sequence goes on.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use netvsc::nic::{NicEvent, SyntheticNic};
use packet::deadline::after;
use parking_lot::{Condvar, Mutex};
use vf::port::{VfEvent, VfPort, VfPortStats};

use crate::clock::Clock;
use crate::config::FailoverConfig;
use crate::events::{FailoverEvent, FailoverStats, PortState, SwitchReason};
use crate::link::{Handshake, Route, RxMode, SharedVfQueue, TxPath};
use crate::provider::{AttachedVf, ProbeError, VfProvider, VfRequest};
use crate::queue::QueueShared;

/// Events kept for [`FailoverPort::next_event`](crate::FailoverPort::next_event); older ones
/// are dropped first.
const EVENT_CAPACITY: usize = 1024;
/// Host events handled in one step at most: a host that sends events without pause must not
/// starve the timers (the watchdog, the VF probe, the reset bound). The rest wait in the NIC's
/// inbox for the next step, a tick later at most.
const EVENTS_PER_STEP: usize = 64;

/// What the control thread and the port's handle share.
#[derive(Debug)]
pub(crate) struct Inner {
    pub nic: SyntheticNic,
    pub provider: Arc<dyn VfProvider>,
    pub config: FailoverConfig,
    pub clock: Arc<dyn Clock>,
    pub queues: Vec<Arc<QueueShared>>,
    pub handshake: Arc<Handshake>,
    pub stop: AtomicBool,
    /// Set (under `status`'s lock) when the control thread has returned or unwound.
    pub finished: AtomicBool,
    pub status: Mutex<FailoverStats>,
    pub status_changed: Condvar,
    pub events: Mutex<VecDeque<FailoverEvent>>,
    pub events_ready: Condvar,
    /// The VF in use (for its counters), and the counters of the VFs released before it.
    pub vf_counters: Mutex<(Option<Arc<dyn VfPort>>, VfPortStats)>,
}

impl Inner {
    fn emit(&self, event: FailoverEvent) {
        tracing::info!(target: "hvnet::bond", ?event);
        let mut events = self.events.lock();
        if events.len() >= EVENT_CAPACITY {
            events.pop_front();
        }
        events.push_back(event);
        drop(events);
        self.events_ready.notify_all();
    }

    fn update(&self, f: impl FnOnce(&mut FailoverStats)) {
        f(&mut self.status.lock());
        self.status_changed.notify_all();
    }
}

/// Marks the control thread finished when dropped: on return and on unwind alike.
pub(crate) struct Finished(pub Arc<Inner>);

impl Drop for Finished {
    fn drop(&mut self) {
        let status = self.0.status.lock();
        self.0.finished.store(true, Ordering::Release);
        drop(status);
        self.0.status_changed.notify_all();
    }
}

/// A VF in use.
#[derive(Debug)]
struct Attached {
    serial: u32,
    name: String,
    port: Arc<dyn VfPort>,
    queues: Vec<SharedVfQueue>,
    link_up: bool,
    resetting: bool,
    /// When the current reset began (on the port's clock).
    reset_since: Option<Instant>,
    /// Whether the pollers were given its queues (the data path is or was just on it).
    in_use: bool,
    /// Its `tx_lost` already added to the port's `lost_vf_tx`.
    tx_lost_counted: u64,
    /// Set when the session that associated it was re-established: the new session has not
    /// associated it (yet). Kept unused until the host does, released at this instant (on the
    /// port's clock) if it does not.
    orphaned_until: Option<Instant>,
}

/// Looking for the VF of an association.
#[derive(Debug)]
struct Probe {
    serial: u32,
    deadline: Instant,
    next_try: Instant,
}

/// The control thread's own state.
#[derive(Debug)]
pub(crate) struct Control {
    inner: Arc<Inner>,
    state: PortState,
    association: Option<u32>,
    vf: Option<Attached>,
    probe: Option<Probe>,
    /// The host refused (or took back) the last switch; wait for a change before retrying.
    refused: bool,
    next_keepalive: Instant,
}

impl Control {
    pub fn new(inner: Arc<Inner>) -> Self {
        let next_keepalive = inner.clock.now() + inner.config.watchdog_interval;
        Self {
            inner,
            state: PortState::Synthetic,
            association: None,
            vf: None,
            probe: None,
            refused: false,
            next_keepalive,
        }
    }

    /// What the thread shares with the port's handle.
    pub fn inner(&self) -> Arc<Inner> {
        self.inner.clone()
    }

    /// The thread's body; returns when the port closes.
    pub fn run(mut self) {
        while !self.inner.stop.load(Ordering::Acquire) {
            self.step();
        }
        if self.vf.is_some() {
            self.leave_vf(SwitchReason::Shutdown, true);
        }
    }

    fn set_state(&mut self, state: PortState) {
        self.state = state;
        let vf = self.vf.as_ref().map(|v| v.name.clone());
        let link = self.vf.as_ref().map(|v| v.link_up);
        self.inner.update(|s| {
            s.state = state;
            s.vf = vf;
            s.vf_link_up = link;
        });
    }

    fn step(&mut self) {
        let tick = self.inner.config.tick;
        let vf_events = match &self.vf {
            Some(vf) => vf.port.service(tick),
            None => Vec::new(),
        };
        let mut wait = if self.vf.is_some() {
            Duration::ZERO
        } else {
            tick
        };
        let mut nic_events = Vec::new();
        while nic_events.len() < EVENTS_PER_STEP
            && let Some(event) = self.inner.nic.next_event(wait)
        {
            nic_events.push(event);
            wait = Duration::ZERO;
        }
        for event in vf_events {
            self.on_vf_event(event);
        }
        for event in nic_events {
            self.on_nic_event(event);
        }
        self.run_timers();
        self.maybe_switch_to_vf();
    }

    fn on_nic_event(&mut self, event: NicEvent) {
        match event {
            NicEvent::VfAssociation {
                allocated: true,
                serial,
            } => {
                // The host associates another VF than the one the port holds: the one held is
                // no longer the host's, so it is left (planned) and released first.
                if self.vf.as_ref().is_some_and(|v| v.serial != serial) {
                    self.leave_vf(SwitchReason::AssociationRemoved, true);
                }
                self.association = Some(serial);
                self.refused = false;
                match self.vf.as_mut() {
                    Some(vf) => vf.orphaned_until = None,
                    None => {
                        let now = self.inner.clock.now();
                        self.probe = Some(Probe {
                            serial,
                            deadline: after(now, self.inner.config.vf_appear_timeout),
                            next_try: now,
                        });
                    }
                }
                // Reported once the look for the VF is timed: whoever sees the event and then
                // moves the port's clock moves it past a deadline already set.
                self.inner.emit(FailoverEvent::VfAssociated { serial });
            }
            NicEvent::VfAssociation {
                allocated: false, ..
            } => {
                self.association = None;
                self.probe = None;
                if self.vf.is_some() {
                    self.leave_vf(SwitchReason::AssociationRemoved, true);
                }
            }
            NicEvent::HostSwitchedDataPath { to_vf: false } => {
                if matches!(self.state, PortState::OnVf | PortState::SwitchingToVf) {
                    self.refused = true;
                    self.inner.emit(FailoverEvent::SwitchRefused);
                    self.inner.update(|s| s.switches_refused += 1);
                    self.leave_vf(SwitchReason::HostSwitched, false);
                }
            }
            NicEvent::ChannelDead => self.recover_session(),
            _ => {}
        }
    }

    fn on_vf_event(&mut self, event: VfEvent) {
        let Some(vf) = self.vf.as_mut() else {
            return;
        };
        match event {
            VfEvent::LinkUp => {
                vf.link_up = true;
                self.refused = false;
                self.inner.update(|s| s.vf_link_up = Some(true));
            }
            VfEvent::LinkDown => {
                vf.link_up = false;
                let in_use = vf.in_use;
                self.inner.update(|s| s.vf_link_up = Some(false));
                if in_use {
                    self.leave_vf(SwitchReason::LinkDown, false);
                }
            }
            VfEvent::PfReset => {
                vf.resetting = true;
                vf.reset_since = Some(self.inner.clock.now());
                if vf.in_use {
                    self.leave_vf(SwitchReason::VfReset, false);
                }
            }
            VfEvent::ResetComplete => {
                vf.resetting = false;
                vf.reset_since = None;
                self.refused = false;
            }
            VfEvent::Removed => self.leave_vf(SwitchReason::Removed, true),
            VfEvent::ReleaseRequested => self.leave_vf(SwitchReason::ReleaseRequested, true),
        }
    }

    fn run_timers(&mut self) {
        let now = self.inner.clock.now();
        // A VF the re-established session never associated again is not the host's any more.
        let orphaned = self
            .vf
            .as_ref()
            .and_then(|v| v.orphaned_until)
            .is_some_and(|until| now >= until);
        if orphaned {
            tracing::warn!(
                target: "hvnet::bond",
                "the re-established session did not associate the VF again: releasing it"
            );
            self.leave_vf(SwitchReason::AssociationRemoved, true);
        }
        // A VF that does not come back from a reset is given up (the host can offer it again).
        let stuck = self
            .vf
            .as_ref()
            .and_then(|v| v.reset_since)
            .is_some_and(|since| {
                now.saturating_duration_since(since) >= self.inner.config.vf_reset_timeout
            });
        if stuck {
            tracing::warn!(target: "hvnet::bond", "the VF did not come back from its reset");
            self.inner.update(|s| s.vf_reset_timeouts += 1);
            self.release_vf(SwitchReason::VfReset);
            self.set_state(PortState::Synthetic);
        }
        if now >= self.next_keepalive {
            self.next_keepalive = after(now, self.inner.config.watchdog_interval);
            if let Err(error) = self.inner.nic.keepalive(self.inner.config.watchdog_timeout) {
                tracing::warn!(target: "hvnet::bond", %error, "keepalive failed");
                self.recover_session();
            }
        }
        if let Some(probe) = self.probe.as_mut()
            && now >= probe.next_try
        {
            probe.next_try = after(now, self.inner.config.vf_probe_interval);
            let serial = probe.serial;
            let expired = now >= probe.deadline;
            self.try_attach(serial);
            if self.vf.is_none() && self.probe.is_some() && expired {
                self.probe = None;
                self.inner.update(|s| s.vf_appear_timeouts += 1);
                tracing::warn!(target: "hvnet::bond", serial, "the VF did not appear in time");
            }
        }
    }

    fn request(&self) -> VfRequest {
        VfRequest {
            mac: self.inner.nic.mac(),
            mtu: self.inner.nic.mtu(),
            queues: self.inner.nic.queue_count(),
        }
    }

    fn try_attach(&mut self, serial: u32) {
        let attached = match self.inner.provider.probe(serial, &self.request()) {
            Ok(Some(attached)) => attached,
            Ok(None) => return,
            Err(error @ ProbeError::Unsupported { .. }) => {
                // Its IDs will not change: stop looking until the host associates a VF again.
                // The provider wrote nothing; the VF stays on its kernel driver.
                self.probe = None;
                self.inner.emit(FailoverEvent::VfAttachFailed {
                    serial,
                    error: error.to_string(),
                });
                self.inner.update(|s| s.vf_unsupported += 1);
                return;
            }
            Err(error) => {
                self.inner.emit(FailoverEvent::VfAttachFailed {
                    serial,
                    error: error.to_string(),
                });
                self.inner.update(|s| s.vf_attach_errors += 1);
                return;
            }
        };
        let AttachedVf { name, port, queues } = attached;
        if port.mac() != self.inner.nic.mac() || queues.is_empty() {
            let _ = port.release();
            self.inner.emit(FailoverEvent::VfAttachFailed {
                serial,
                error: format!(
                    "{name}: MAC {} is not the port's {} (or it has no queues)",
                    port.mac(),
                    self.inner.nic.mac()
                ),
            });
            self.inner.update(|s| s.vf_mac_mismatches += 1);
            return;
        }
        self.probe = None;
        let link_up = port.link_up();
        let queues = queues
            .into_iter()
            .map(|q| Arc::new(Mutex::new(q)))
            .collect();
        self.inner.emit(FailoverEvent::VfAttached {
            serial,
            device: name.clone(),
        });
        self.inner.update(|s| s.vf_attached += 1);
        self.inner.vf_counters.lock().0 = Some(port.clone());
        self.vf = Some(Attached {
            serial,
            name,
            port,
            queues,
            link_up,
            resetting: false,
            reset_since: None,
            in_use: false,
            tx_lost_counted: 0,
            orphaned_until: None,
        });
        self.set_state(PortState::VfAttaching);
    }

    fn maybe_switch_to_vf(&mut self) {
        let ready = self.vf.as_ref().is_some_and(|vf| {
            vf.link_up
                && !vf.resetting
                && !vf.in_use
                && vf.orphaned_until.is_none()
                && self.association == Some(vf.serial)
        });
        if ready && !self.refused {
            self.switch_to_vf();
        }
    }

    /// Publishes `route(i)` to every queue *i*; returns the generations to wait for.
    fn publish(&self, route: impl Fn(usize) -> Route) -> Vec<u64> {
        self.inner
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| q.link.publish(route(i)))
            .collect()
    }

    fn wait_acked(&self, generations: &[u64]) {
        let deadline = after(Instant::now(), self.inner.config.ack_timeout);
        let late = wait_queues(&self.inner, generations, deadline, false);
        if !late.is_empty() {
            tracing::warn!(target: "hvnet::bond", ?late, "queues did not take the new path in time");
            self.inner.update(|s| s.ack_timeouts += 1);
        }
    }

    /// Queue `i`'s route over `vf`: it receives from VF queue `i` if the VF has one, and
    /// transmits (when on the VF) on VF queue `i` folded onto the VF's count.
    fn route_for(vf: &Attached, tx: TxPath, rx: RxMode, i: usize) -> Route {
        let n = vf.queues.len();
        Route {
            tx,
            tx_at_once: false,
            rx,
            rx_vf: (i < n).then(|| vf.queues[i].clone()),
            tx_vf: (tx == TxPath::Vf).then(|| vf.queues[i % n].clone()),
        }
    }

    fn switch_to_vf(&mut self) {
        let started = Instant::now();
        self.set_state(PortState::SwitchingToVf);
        if let Err(error) = self
            .inner
            .nic
            .switch_data_path(true, self.inner.config.switch_timeout)
        {
            tracing::warn!(target: "hvnet::bond", %error, "switching the data path to the VF failed");
            self.inner.update(|s| s.switch_errors += 1);
            self.refused = true;
            self.set_state(PortState::VfAttaching);
            return;
        }
        let Some(vf) = self.vf.as_mut() else {
            return;
        };
        vf.in_use = true;
        let vf = self.vf.as_ref().expect("checked above");
        let generations =
            self.publish(|i| Self::route_for(vf, TxPath::Vf, RxMode::SyntheticThenVf, i));
        self.wait_acked(&generations);
        let duration = started.elapsed();
        self.inner.emit(FailoverEvent::SwitchedToVf { duration });
        self.inner.update(|s| {
            s.switches_to_vf += 1;
            s.last_failback = Some(duration);
        });
        self.set_state(PortState::OnVf);
    }

    /// Leaves the VF for `reason` (see the module docs); releases it if `release`.
    fn leave_vf(&mut self, reason: SwitchReason, release: bool) {
        let started = Instant::now();
        let Some(vf) = self.vf.as_mut() else {
            return;
        };
        let was_in_use = std::mem::replace(&mut vf.in_use, false);
        let mut failover = Duration::ZERO;
        if was_in_use {
            self.set_state(PortState::SwitchingToSynthetic);
            let vf = self.vf.as_ref().expect("checked above");
            if reason.is_surprise() {
                let generations = self.publish(|_| Route {
                    tx_at_once: true,
                    ..Route::synthetic()
                });
                self.wait_acked(&generations);
                failover = started.elapsed();
                self.switch_back_request();
            } else {
                // 1. Transmit moves (after the VF sent what it took); receive from the VF only,
                //    once synthetic holds nothing from before the switch to the VF.
                let generations =
                    self.publish(|i| Self::route_for(vf, TxPath::Synthetic, RxMode::Vf, i));
                self.wait_acked(&generations);
                failover = started.elapsed();
                let deadline = after(Instant::now(), self.inner.config.drain_timeout);
                if !wait_queues(&self.inner, &generations, deadline, true).is_empty() {
                    self.inner.update(|s| s.drain_timeouts += 1);
                }
                // 2. The host moves its side and flushes the VF.
                self.switch_back_request();
                // 3. Drain the VF's receive rings.
                let generations = self.publish(|i| {
                    Self::route_for(vf, TxPath::Synthetic, RxMode::VfThenSynthetic, i)
                });
                let deadline = after(Instant::now(), self.inner.config.drain_timeout);
                if !wait_queues(&self.inner, &generations, deadline, true).is_empty() {
                    self.inner.update(|s| s.drain_timeouts += 1);
                }
            }
            // 4. Give the VF up.
            let generations = self.publish(|_| Route::synthetic());
            self.wait_acked(&generations);
        }
        self.count_lost();
        if release {
            self.release_vf(reason);
        }
        let complete = started.elapsed();
        if was_in_use {
            self.inner.emit(FailoverEvent::SwitchedToSynthetic {
                reason,
                failover,
                complete,
            });
            self.inner.update(|s| {
                s.switches_to_synthetic.bump(reason);
                s.last_failover = Some(failover);
            });
        }
        let next = if self.vf.is_some() {
            PortState::VfAttaching
        } else {
            PortState::Synthetic
        };
        self.set_state(next);
    }

    /// NVSP 129 {synthetic}, errors counted.
    fn switch_back_request(&self) {
        if let Err(error) = self
            .inner
            .nic
            .switch_data_path(false, self.inner.config.switch_timeout)
        {
            tracing::warn!(target: "hvnet::bond", %error, "switching the data path back failed");
            self.inner.update(|s| s.switch_errors += 1);
        }
    }

    /// Adds what the VF lost since the last look to `lost_vf_tx`; the VF's total.
    fn count_lost(&mut self) -> u64 {
        let Some(vf) = self.vf.as_mut() else {
            return 0;
        };
        let total = vf.port.stats().tx_lost;
        let new = total.saturating_sub(vf.tx_lost_counted);
        vf.tx_lost_counted = total;
        if new > 0 {
            self.inner.update(|s| s.lost_vf_tx += new);
        }
        total
    }

    fn release_vf(&mut self, reason: SwitchReason) {
        let Some(vf) = self.vf.as_ref() else {
            return;
        };
        let _ = vf.port.stop(self.inner.config.vf_stop_timeout);
        if let Err(error) = vf.port.release() {
            tracing::warn!(target: "hvnet::bond", %error, device = vf.name, "releasing the VF");
        }
        let tx_lost = self.count_lost();
        let Some(vf) = self.vf.take() else {
            return;
        };
        {
            let mut counters = self.inner.vf_counters.lock();
            counters.0 = None;
            counters.1.add(&vf.port.stats());
        }
        self.inner.emit(FailoverEvent::VfReleased {
            serial: vf.serial,
            reason,
            tx_lost,
        });
        self.inner.update(|s| s.vf_released += 1);
    }

    /// The watchdog: re-establishes a dead session, keeping the port's identity.
    fn recover_session(&mut self) {
        let started = Instant::now();
        match self
            .inner
            .nic
            .reestablish(self.inner.config.watchdog_timeout)
        {
            Ok(()) => {
                let duration = started.elapsed();
                // The new session's data path is synthetic: leave the VF in order. A fresh
                // session has no association either: the host sends 128 {1} again if it
                // still has a VF for the port, and the port switches to it then. Until it
                // does, a VF the port holds stays unused, and is released if the host does
                // not associate it within the time a VF is given to appear. All of this is
                // in place before the re-establishment is reported.
                let until = after(self.inner.clock.now(), self.inner.config.vf_appear_timeout);
                if self.vf.as_ref().is_some_and(|v| v.in_use) {
                    self.leave_vf(SwitchReason::SessionReestablished, false);
                }
                self.association = None;
                self.probe = None;
                if let Some(vf) = self.vf.as_mut() {
                    vf.orphaned_until = Some(until);
                }
                self.inner
                    .emit(FailoverEvent::SessionReestablished { duration });
                self.inner.update(|s| s.watchdog_reestablished += 1);
            }
            Err(error) => {
                self.inner.emit(FailoverEvent::SessionLost {
                    error: error.to_string(),
                });
                self.inner.update(|s| s.watchdog_failures += 1);
            }
        }
    }
}

/// Waits until every queue acknowledged (or, with `drained`, drained at) its generation.
fn wait_queues(inner: &Inner, generations: &[u64], deadline: Instant, drained: bool) -> Vec<u16> {
    let links: Vec<&crate::link::QueueLink> = inner.queues.iter().map(|q| &q.link).collect();
    inner.handshake.wait(
        &links,
        generations,
        deadline,
        drained,
        inner.config.idle_queue,
    )
}
