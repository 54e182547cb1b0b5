//! The control engine: requests to the host and the inbox their answers arrive in.
//!
//! The control thread sends NVSP requests (in-band, completion requested) and RNDIS control
//! messages (NVSP 107 channel type 1, through one of a few send sections reserved for
//! control) on queue 0. Answers are read by whoever drains queue 0 — a poller, or the control
//! thread itself when it waits — and land in the [`Inbox`]:
//!
//! - an NVSP completion whose tid belongs to an outstanding request (tids are the control
//!   engine's own counter, see [`super::tids`]); matched by tid only, never by order;
//! - an RNDIS completion, matched by its request id;
//! - unsolicited host messages, as events.
//!
//! An RNDIS message that gets no RNDIS reply (HALT) is *posted*: it waits for the transport
//! completion of its tid instead, which also frees its section.
//!
//! The waiting thread sleeps on a condition variable with a bounded slice and re-checks;
//! every wait ends by its deadline with [`NicError::Timeout`]. A control send section is owned
//! by the host until the transport completion of its tid *or* the RNDIS reply to its request
//! arrives (either proves the host has read it); a late completion after a reply is
//! recognised and not counted as unknown.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::nvsp::{self, NvspMessage};

use super::error::NicError;
use super::events::NicEvent;
use super::tids::control_tid;

/// Events kept for [`next_event`](super::SyntheticNic::next_event) at most; older ones are
/// dropped (and counted) when nobody reads them.
pub(crate) const EVENT_CAPACITY: usize = 1024;
/// Late transport completions remembered after their section was freed by the RNDIS reply.
const RETIRED_CAPACITY: usize = 64;

/// A send section reserved for RNDIS control messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ControlSection {
    /// The section index in the send buffer.
    pub index: u32,
    /// The tid of the send that holds it.
    tid: Option<u64>,
    /// The RNDIS request id of the message in it.
    request_id: Option<u32>,
}

impl ControlSection {
    fn is_free(&self) -> bool {
        self.tid.is_none()
    }

    fn free(&mut self) {
        self.tid = None;
        self.request_id = None;
    }
}

/// The answer to an RNDIS request: its bytes, or the failure status of its transport.
pub(crate) type RndisAnswer = Result<Vec<u8>, u32>;

/// Counters of the control plane.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct ControlCounters {
    pub requests: u64,
    pub timeouts: u64,
    pub unknown_completions: u64,
    pub late_responses: u64,
    pub events_dropped: u64,
}

/// Where answers and events wait for the control thread.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Outstanding NVSP requests by tid; `Some` once the completion arrived.
    nvsp: HashMap<u64, Option<Vec<u8>>>,
    /// Outstanding RNDIS requests by request id; `Some` once answered.
    rndis: HashMap<u32, Option<RndisAnswer>>,
    /// Sections reserved for control messages in this session.
    sections: Vec<ControlSection>,
    /// Tids of control sends whose section was freed by the RNDIS reply before the transport
    /// completion came.
    retired: VecDeque<u64>,
    /// Events not yet taken.
    pub events: VecDeque<NicEvent>,
    pub counters: ControlCounters,
}

impl Inbox {
    fn retire(&mut self, tid: u64) {
        if self.retired.len() == RETIRED_CAPACITY {
            self.retired.pop_front();
        }
        self.retired.push_back(tid);
    }
}

/// The control engine's shared state.
#[derive(Debug, Default)]
pub(crate) struct Control {
    pub inbox: Mutex<Inbox>,
    pub cond: Condvar,
    next_tid: AtomicU64,
    next_request_id: AtomicU32,
}

impl Control {
    /// A fresh control tid.
    pub(crate) fn new_tid(&self) -> u64 {
        control_tid(self.next_tid.fetch_add(1, Ordering::Relaxed) + 1)
    }

    /// A fresh RNDIS request id (never 0).
    pub(crate) fn new_request_id(&self) -> u32 {
        loop {
            let id = self
                .next_request_id
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            if id != 0 {
                return id;
            }
        }
    }

    /// A completion with a control tid, read by a queue.
    pub(crate) fn completion(&self, tid: u64, payload: &[u8]) {
        let mut inbox = self.inbox.lock();
        let section = inbox.sections.iter().position(|s| s.tid == Some(tid));
        if let Some(slot) = inbox.nvsp.get_mut(&tid) {
            *slot = Some(payload.to_vec());
            // A posted RNDIS message (no RNDIS reply) waits for this completion, and its
            // section is the host's until it comes.
            if let Some(i) = section {
                inbox.sections[i].free();
            }
            self.cond.notify_all();
            return;
        }
        if let Some(i) = section {
            let request_id = inbox.sections[i].request_id;
            inbox.sections[i].free();
            let status = match NvspMessage::parse(payload) {
                Ok(NvspMessage::SendRndisPacketComplete(m)) => m.status.get(),
                _ => nvsp::STATUS_NONE,
            };
            if status != nvsp::STATUS_SUCCESS
                && let Some(slot @ None) = request_id.and_then(|r| inbox.rndis.get_mut(&r))
            {
                // The host refused the message: its reply will never come.
                *slot = Some(Err(status));
                self.cond.notify_all();
            }
            return;
        }
        if let Some(i) = inbox.retired.iter().position(|&t| t == tid) {
            inbox.retired.remove(i);
            return;
        }
        inbox.counters.unknown_completions += 1;
    }

    /// An RNDIS completion with request id `request_id`, read by a queue.
    pub(crate) fn rndis_response(&self, request_id: u32, bytes: &[u8]) {
        let mut inbox = self.inbox.lock();
        if let Some(i) = inbox
            .sections
            .iter()
            .position(|s| s.request_id == Some(request_id))
        {
            // The host has read the request: the section may be reused.
            if let Some(tid) = inbox.sections[i].tid {
                inbox.retire(tid);
            }
            inbox.sections[i].free();
        }
        match inbox.rndis.get_mut(&request_id) {
            Some(slot @ None) => {
                *slot = Some(Ok(bytes.to_vec()));
                self.cond.notify_all();
            }
            _ => inbox.counters.late_responses += 1,
        }
    }

    /// Queues an event (bounded) and wakes waiters.
    pub(crate) fn push_event(&self, event: NicEvent) {
        let mut inbox = self.inbox.lock();
        if inbox.events.len() == EVENT_CAPACITY {
            inbox.events.pop_front();
            inbox.counters.events_dropped += 1;
        }
        inbox.events.push_back(event);
        self.cond.notify_all();
    }

    /// Registers an outstanding NVSP request.
    pub(crate) fn expect_nvsp(&self, tid: u64) {
        let mut inbox = self.inbox.lock();
        inbox.counters.requests += 1;
        inbox.nvsp.insert(tid, None);
    }

    /// Takes the completion of `tid` if it arrived.
    pub(crate) fn take_nvsp(inbox: &mut Inbox, tid: u64) -> Option<Vec<u8>> {
        match inbox.nvsp.get(&tid) {
            Some(Some(_)) => inbox.nvsp.remove(&tid).flatten(),
            _ => None,
        }
    }

    /// Gives up on `tid`; a later completion counts as unknown.
    pub(crate) fn forget_nvsp(&self, tid: u64) {
        self.inbox.lock().nvsp.remove(&tid);
    }

    /// Reserves a free control section for request `request_id` sent under `tid`, and
    /// registers the request. `None` if every control section is held.
    pub(crate) fn reserve_section(&self, tid: u64, request_id: u32) -> Option<u32> {
        let mut inbox = self.inbox.lock();
        let section = inbox.sections.iter_mut().find(|s| s.is_free())?;
        section.tid = Some(tid);
        section.request_id = Some(request_id);
        let index = section.index;
        inbox.counters.requests += 1;
        inbox.rndis.insert(request_id, None);
        Some(index)
    }

    /// Reserves a free control section for an RNDIS message that gets no RNDIS reply (HALT),
    /// sent under `tid`: the request waits for the transport completion of `tid`
    /// ([`take_nvsp`](Self::take_nvsp)), which also frees the section. `None` if every
    /// control section is held.
    pub(crate) fn reserve_posted_section(&self, tid: u64) -> Option<u32> {
        let mut inbox = self.inbox.lock();
        let section = inbox.sections.iter_mut().find(|s| s.is_free())?;
        section.tid = Some(tid);
        section.request_id = None;
        let index = section.index;
        inbox.counters.requests += 1;
        inbox.nvsp.insert(tid, None);
        Some(index)
    }

    /// Gives up on the posted message sent under `tid`. With `unsent`, the message never
    /// reached the ring: its section is freed at once; otherwise it stays held, since the host
    /// may still read it.
    pub(crate) fn forget_posted(&self, tid: u64, unsent: bool) {
        let mut inbox = self.inbox.lock();
        inbox.nvsp.remove(&tid);
        if unsent && let Some(s) = inbox.sections.iter_mut().find(|s| s.tid == Some(tid)) {
            s.free();
        }
    }

    /// Takes the answer to `request_id` if it arrived.
    pub(crate) fn take_rndis(inbox: &mut Inbox, request_id: u32) -> Option<RndisAnswer> {
        match inbox.rndis.get(&request_id) {
            Some(Some(_)) => inbox.rndis.remove(&request_id).flatten(),
            _ => None,
        }
    }

    /// Gives up on `request_id`. With `unsent`, the message never reached the ring: its
    /// section is freed at once; otherwise the section stays held until the host answers.
    pub(crate) fn forget_rndis(&self, request_id: u32, unsent: bool) {
        let mut inbox = self.inbox.lock();
        inbox.rndis.remove(&request_id);
        if unsent
            && let Some(s) = inbox
                .sections
                .iter_mut()
                .find(|s| s.request_id == Some(request_id))
        {
            s.free();
        }
    }

    /// Counts a timed-out request.
    pub(crate) fn count_timeout(&self) {
        self.inbox.lock().counters.timeouts += 1;
    }

    /// Starts a session's control sections (`indexes` of the send buffer); forgets every
    /// outstanding request of the previous session.
    pub(crate) fn reset(&self, indexes: std::ops::Range<u32>) {
        let mut inbox = self.inbox.lock();
        inbox.nvsp.clear();
        inbox.rndis.clear();
        inbox.retired.clear();
        inbox.sections = indexes
            .map(|index| ControlSection {
                index,
                tid: None,
                request_id: None,
            })
            .collect();
        self.cond.notify_all();
    }

    /// Waits on the condition variable for at most `slice`.
    pub(crate) fn wait_slice(&self, slice: Duration) {
        let mut inbox = self.inbox.lock();
        self.cond.wait_for(&mut inbox, slice);
    }
}

/// A deadline and the bound it came from (for the timeout error).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    pub deadline: Instant,
    pub timeout: Duration,
}

impl Bound {
    /// `timeout` from now (saturating: see [`packet::deadline::after`]).
    pub(crate) fn after(timeout: Duration) -> Self {
        Self {
            deadline: packet::deadline::after(Instant::now(), timeout),
            timeout,
        }
    }

    /// Whether the deadline has passed.
    pub(crate) fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }

    /// The timeout error for `what`.
    pub(crate) fn error(&self, what: &'static str) -> NicError {
        NicError::Timeout {
            what,
            timeout: self.timeout,
        }
    }
}
