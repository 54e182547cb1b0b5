//! The guest side of the synthetic NIC: [`SyntheticNic`] (the control handle) and
//! [`SyntheticQueue`] (one per queue, for one polling thread).
//!
//! # Lifecycle
//!
//! 1. [`SyntheticNic::open`] takes a [`VmbusDevice`] and a [`NicConfig`], creates the packet
//!    pool (from the device's DMA memory when it has some, so GPA-direct sends work), runs the
//!    handshake (module `handshake`: NVSP INIT with version fallback, NDIS config and version,
//!    receive and send buffers, RNDIS INITIALIZE and queries, offload capabilities and
//!    parameters, subchannels and RSS, packet filter) and returns the control handle and the
//!    queue handles.
//! 2. Pollers call [`rx_burst`](packet::PortQueue::rx_burst) and
//!    [`tx_burst`](packet::PortQueue::tx_burst); the control thread calls the control methods
//!    and [`SyntheticNic::next_event`].
//! 3. When a control call times out or the channel dies ([`NicEvent::ChannelDead`]), a
//!    watchdog calls [`SyntheticNic::reestablish`]: every ring, doorbell and buffer mapping is
//!    dropped, the device reopened and the whole handshake redone with the same version and
//!    queue count; the queue handles keep working, the MAC is kept.
//! 4. [`SyntheticNic::close`] (or dropping the control handle, with a short bound) detaches
//!    as Linux and DPDK do (module `close`): packet filter 0, RNDIS HALT, what is in flight
//!    drains, the receive and send buffers are revoked. Queue handles the pollers still hold
//!    learn it at their next burst: `tx_burst` takes nothing from the start of the close,
//!    and once it is done both bursts return 0 (after the frames already staged).
//!    [`SyntheticQueue::is_closed`] tells a poller it may stop. The device itself (with uio,
//!    the open device file) goes when the last handle is dropped.
//!
//! # Threads and locks
//!
//! Each queue's channel state is behind a `parking_lot::Mutex` taken once per burst. Queue 0
//! also carries control traffic: replies and unsolicited host messages read by whoever drains
//! queue 0 go to the control inbox (a mutex and a condition variable) that the control thread
//! waits on, always with a bound. When no poller drains queue 0, the waiting control thread
//! drains it itself; data frames it reads wait in the queue's bounded staging list.
//!
//! # Trust
//!
//! The host is untrusted: every range, length, index and tid from it is checked; bad input
//! is a counted drop or a typed error, never a panic. A corrupt ring marks the channel dead
//! until re-established. Every transfer-page packet is completed, malformed or not.
//!
//! # Modules
//!
//! - `config`, `error`, `events`, `stats`: the public types.
//! - `close`: the teardown (HALT, drain, buffer revokes).
//! - `tids`: transaction-id layout and the slot tables behind sends.
//! - `control`: the control inbox and request bookkeeping; `shared`: sending on queue 0 and
//!   bounded waiting; `rndis_control`: RNDIS requests; `handshake`: the session set-up;
//!   `offload`: the offload capabilities query and parameters set.
//! - `steering`: the host's send indirection table, for
//!   [`SyntheticNic::tx_queue_for_hash`].
//! - `queue`: per-queue state and [`SyntheticQueue`]; `rx`: receive dispatch; `tx`: sections
//!   and GPA direct.
//! - [`classify`]: the receive dispatch exposed for replaying recorded host packets (tests).

pub mod classify;
mod close;
mod config;
mod control;
mod error;
mod events;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod handshake;
mod offload;
mod queue;
mod rndis_control;
mod rx;
mod shared;
mod stats;
mod steering;
mod tids;
mod tx;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use packet::{MacAddr, Pool, SharedMemory};

use crate::nvsp::{self, NvspMessage};
use crate::rndis::NdisOffload;
use crate::vmbus::{DeviceError, VmbusDevice};

pub use config::{
    CLOSE_ON_DROP_TIMEOUT, DEFAULT_TX_COPY_MAX, MAX_CONTROL_TIMEOUT, MAX_MTU, MAX_QUEUES, MIN_MTU,
    MIN_POOL_BUFFERS, NicConfig,
};
pub use error::NicError;
pub use events::NicEvent;
pub use queue::SyntheticQueue;
pub use stats::{NicStats, QueueStats};

use control::Bound;
use handshake::{SessionPlan, Steps};
use shared::{Lifecycle, NicShared};

/// The synthetic NIC's control handle (`Send + Sync`): identity, control requests, events,
/// re-establishing the session, counters.
#[derive(Debug)]
pub struct SyntheticNic {
    shared: Arc<NicShared>,
}

/// Creates the packet pool: in the device's DMA memory if it has some (GPA direct possible),
/// else in private memory (every frame then goes through send sections).
fn make_pool(device: &mut dyn VmbusDevice, config: &NicConfig) -> Result<(Pool, bool), NicError> {
    let buf_size = (packet::pool::HEADROOM + config.max_frame()).next_multiple_of(64);
    let size = buf_size * config.pool_buffers;
    let (mem, gpa_capable) = match device.dma_memory(size) {
        Ok(mem) => (mem, true),
        Err(DeviceError::Unsupported(what)) => {
            tracing::info!(
                what,
                "no dma memory: every frame goes through send sections"
            );
            (SharedMemory::anonymous(size)?, false)
        }
        Err(e) => return Err(e.into()),
    };
    Ok((Pool::new(mem, buf_size)?, gpa_capable))
}

impl SyntheticNic {
    /// Opens the NIC on `device` and runs the handshake; returns the control handle and one
    /// handle per queue the host granted (possibly fewer than asked).
    pub fn open(
        mut device: Box<dyn VmbusDevice>,
        config: NicConfig,
    ) -> Result<(SyntheticNic, Vec<SyntheticQueue>), NicError> {
        config.validate()?;
        let (pool, gpa_capable) = make_pool(&mut *device, &config)?;
        let plan = SessionPlan {
            versions: config.versions().collect(),
            subchannels: config.queues - 1,
            exact_subchannels: false,
            keep_mac: None,
        };
        let steps = Steps::Each(config.control_timeout);
        let shared = Arc::new(NicShared::new(config, pool, gpa_capable, device));
        {
            let _session = shared.session_lock.lock();
            shared.start_session(&plan, steps)?;
        }
        let queues = (0..shared.queue_count())
            .map(|i| SyntheticQueue::new(shared.clone(), i))
            .collect();
        Ok((SyntheticNic { shared }, queues))
    }

    /// The MAC address the host assigned (kept across re-establish).
    pub fn mac(&self) -> MacAddr {
        self.shared.mac()
    }

    /// The L3 MTU in use (the configured one, or less if the host allows less).
    pub fn mtu(&self) -> usize {
        self.shared.mtu()
    }

    /// Whether the link is up (initial query, then status indications).
    pub fn link_up(&self) -> bool {
        self.shared.link_up()
    }

    /// Link speed in bits per second (0 if the host did not say; queried from NVSP 5).
    pub fn link_speed(&self) -> u64 {
        self.shared.link_speed()
    }

    /// The negotiated NVSP version.
    pub fn nvsp_version(&self) -> u32 {
        self.shared.nvsp_version()
    }

    /// The NDIS version sent (`major << 16 | minor`).
    pub fn ndis_version(&self) -> u32 {
        self.shared.ndis_version()
    }

    /// Queues in use (primary plus subchannels granted).
    pub fn queue_count(&self) -> u16 {
        self.shared.queue_count()
    }

    /// The host's last send indirection table (empty until NVSP 134 arrives).
    pub fn send_indirection_table(&self) -> Vec<u32> {
        self.shared.send_table.lock().clone()
    }

    /// The transmit queue for a flow whose hash is `hash`, as Linux picks one for a flow
    /// without an assigned queue: entry `hash % 16` of the host's send indirection table
    /// (NVSP 134). The host is untrusted: an entry naming a queue that is not open (`>=`
    /// [`queue_count`](Self::queue_count)) maps to `entry % queue_count`. Before any table
    /// arrived, `hash % queue_count`.
    ///
    /// Lock-free (a few atomic loads), but meant to be called once per burst or per flow —
    /// cache the answer in the flow table — rather than for every packet.
    pub fn tx_queue_for_hash(&self, hash: u32) -> u16 {
        self.shared
            .steering
            .queue_for_hash(hash, self.shared.queue_count())
    }

    /// The host's offload hardware capabilities (the NDIS_OFFLOAD it answered
    /// `OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES` with during this session's handshake), or `None`
    /// if it did not answer the query usefully. Informational: the NIC itself asks the host
    /// for no checksum offload and no LSO, since it computes no checksums and sends no
    /// segments larger than the MTU.
    pub fn offload_capabilities(&self) -> Option<NdisOffload> {
        *self.shared.offload_caps.lock()
    }

    /// The pool received frames come from and transmitted frames should be allocated from
    /// (GPA-direct sends need its host-readable bus addresses).
    pub fn pool(&self) -> &Pool {
        &self.shared.pool
    }

    /// The next host event, waiting at most `timeout`. Drains queue 0 while waiting if no
    /// poller does, so a control-only program sees events too; with a zero `timeout` it still
    /// reads what queue 0 holds once (without sleeping), so a caller that polls events between
    /// other work sees them as they come, not at its next wait.
    ///
    /// Once the NIC is closed the stream ends: the events queued before are still handed
    /// out, then `None` comes at once, without waiting.
    pub fn next_event(&self, timeout: Duration) -> Option<NicEvent> {
        let deadline = Bound::after(timeout).deadline;
        let mut looked = false;
        loop {
            if let Some(event) = self.shared.control.inbox.lock().events.pop_front() {
                return Some(event);
            }
            if self.shared.is_closed() {
                return None;
            }
            if looked && Instant::now() >= deadline {
                return None;
            }
            self.shared.pump(deadline);
            looked = true;
        }
    }

    /// Sends NVSP SWITCH_DATA_PATH (to the VF or back to synthetic) and waits for its (empty)
    /// completion. A failed switch is reported later by the host's own
    /// [`NicEvent::HostSwitchedDataPath`].
    pub fn switch_data_path(&self, to_vf: bool, timeout: Duration) -> Result<(), NicError> {
        const WHAT: &str = "nvsp switch data path";
        self.require(nvsp::VERSION_4, WHAT)?;
        let path = if to_vf {
            nvsp::DATA_PATH_VF
        } else {
            nvsp::DATA_PATH_SYNTHETIC
        };
        let msg = NvspMessage::SwitchDataPath(nvsp::Message4SwitchDataPath::new(path));
        self.shared
            .nvsp_request(&msg, Bound::after(timeout), WHAT)
            .map(|_| ())
    }

    /// RNDIS QUERY of `oid`; returns the information buffer.
    pub fn query_oid(&self, oid: u32, timeout: Duration) -> Result<Vec<u8>, NicError> {
        self.shared
            .rndis_query(oid, &[], Bound::after(timeout), "rndis query")
    }

    /// Sets the RNDIS packet filter (kept for re-establish).
    pub fn set_packet_filter(&self, filter: u32, timeout: Duration) -> Result<(), NicError> {
        self.shared.rndis_set(
            crate::rndis::OID_GEN_CURRENT_PACKET_FILTER,
            &filter.to_le_bytes(),
            Bound::after(timeout),
            "rndis set packet filter",
        )?;
        self.shared.packet_filter.store(filter, Ordering::Release);
        Ok(())
    }

    /// RNDIS KEEPALIVE: the watchdog's health probe.
    pub fn keepalive(&self, timeout: Duration) -> Result<(), NicError> {
        self.shared.rndis_keepalive(Bound::after(timeout))
    }

    /// Rebuilds the session: drops every ring, doorbell and buffer the NIC holds, reopens the
    /// device and redoes the handshake with the version negotiated before and the same queue
    /// count. Queue handles keep working afterwards; the MAC is kept. Sends in flight are
    /// abandoned and counted in `tx_failed` (the host never completed them). Events of the
    /// dead session not yet taken that describe the session itself (VF association, host
    /// data-path switch, channel dead) are dropped: the new session starts with none.
    /// Everything must finish within `timeout`.
    ///
    /// A closed NIC (or one closing) is not re-established: [`NicError::Closed`].
    pub fn reestablish(&self, timeout: Duration) -> Result<(), NicError> {
        let shared = &*self.shared;
        let _session = shared.session_lock.lock();
        if shared.lifecycle() != Lifecycle::Open {
            return Err(NicError::Closed);
        }
        let bound = Bound::after(timeout);
        shared.set_dead_quietly(true);
        for q in &shared.queues {
            q.state.lock().detach();
        }
        *shared.sendbuf.lock() = None;
        shared.control.reset(0..0);
        // What the dead session said about its VF, its data path and its own death is not
        // true of the new one: a fresh session starts with no association (the host sends
        // 128 again if it still has a VF) and on the synthetic path.
        shared.control.inbox.lock().events.retain(|event| {
            !matches!(
                event,
                NicEvent::VfAssociation { .. }
                    | NicEvent::HostSwitchedDataPath { .. }
                    | NicEvent::ChannelDead
            )
        });
        let remaining = bound.deadline.saturating_duration_since(Instant::now());
        shared.device.lock().reopen(remaining)?;
        let plan = SessionPlan {
            versions: vec![shared.nvsp_version()],
            subchannels: shared.queue_count() - 1,
            exact_subchannels: true,
            keep_mac: Some(shared.mac()),
        };
        let result = shared.start_session(&plan, Steps::Until(bound));
        match &result {
            Ok(()) => {
                shared.reestablished.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::warn!(%error, "re-establishing the session failed");
                shared.mark_dead();
            }
        }
        result
    }

    /// Closes the NIC as Linux and DPDK detach from a NetVSC (module `close`): RNDIS SET of
    /// the packet filter to 0, RNDIS HALT (waiting for its transport completion, the only
    /// answer a host gives), the sends and receives in flight drained, then NVSP
    /// REVOKE_RECEIVE_BUFFER and REVOKE_SEND_BUFFER with the ids the handshake used, and the
    /// host reading them. Everything within `timeout`; a host that does not answer makes it
    /// return [`NicError::Timeout`] then, a dead channel [`NicError::ChannelDead`] at once. A
    /// step that fails does not stop the ones after it; the first error is returned.
    ///
    /// Whatever it returns, the NIC is closed afterwards: control calls fail with
    /// [`NicError::Closed`], queue bursts hand out the frames already staged and then return
    /// 0, [`next_event`](Self::next_event) ends, [`reestablish`](Self::reestablish) is
    /// refused. Closing a closed NIC does nothing and returns `Ok`. Waits for a re-establish
    /// in progress to end first (within the same `timeout`).
    pub fn close(&self, timeout: Duration) -> Result<(), NicError> {
        self.shared.close(Bound::after(timeout))
    }

    /// Whether the NIC is closed ([`close`](Self::close)).
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// A snapshot of every counter.
    pub fn stats(&self) -> NicStats {
        let shared = &*self.shared;
        let queues = shared
            .queues
            .iter()
            .take(usize::from(shared.queue_count()))
            .map(|q| q.state.lock().stats.clone())
            .collect();
        let counters = shared.control.inbox.lock().counters;
        NicStats {
            queues,
            control_requests: counters.requests,
            control_timeouts: counters.timeouts,
            control_unknown_completions: counters.unknown_completions,
            control_late_responses: counters.late_responses,
            events_dropped: counters.events_dropped,
            reestablished: shared.reestablished.load(Ordering::Relaxed),
        }
    }

    fn require(&self, needed: u32, what: &'static str) -> Result<(), NicError> {
        let negotiated = self.shared.nvsp_version();
        if negotiated < needed {
            return Err(NicError::NotSupported {
                what,
                needed,
                negotiated,
            });
        }
        Ok(())
    }
}

impl Drop for SyntheticNic {
    /// Dropping an open NIC closes it ([`SyntheticNic::close`]) with the short bound
    /// [`CLOSE_ON_DROP_TIMEOUT`]: a healthy host answers in milliseconds, and a dead or silent
    /// one costs no more than that. Queue handles still held are closed with it.
    fn drop(&mut self) {
        if self.shared.is_closed() {
            return;
        }
        if let Err(error) = self.close(CLOSE_ON_DROP_TIMEOUT) {
            tracing::warn!(%error, "closing the nic as it was dropped did not end cleanly");
        }
    }
}
