//! [`NicShared`]: the state every handle of one NIC shares (the control handle and the queue
//! handles hold it in an `Arc`), and the control plane's transport: sending on queue 0 and
//! waiting for answers while keeping queue 0 drained.
//!
//! Draining rule: a control wait re-checks the inbox, then — if a poller has run a burst on
//! queue 0 within the last few milliseconds, and the NIC is not closing — sleeps on the
//! inbox's condition variable (the poller will hand the answer over); otherwise it drains
//! queue 0 itself (`try_lock`, frames go to the queue's staging list) and, if nothing was
//! there, unmasks queue 0's interrupt and sleeps in the device's interrupt wait — also when
//! queue 0 stopped reading because its completion backlog is full (the host then signals once
//! it reads the guest's ring). Every sleep is a bounded slice; every wait ends by its
//! deadline.

use std::sync::atomic::{
    AtomicBool, AtomicU8, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering,
};
use std::time::{Duration, Instant};

use packet::{MacAddr, Pool, SharedMemory};
use parking_lot::Mutex;

use crate::nvsp::{self, NvspMessage};
use crate::rndis::{NdisOffload, RndisError};
use crate::vmbus::{DeviceError, OutgoingKind, OutgoingPacket, VmbusDevice};

use super::config::NicConfig;
use super::control::{Bound, Control, RndisAnswer};
use super::error::NicError;
use super::events::NicEvent;
use super::queue::{BURST_BUDGET, QueueShared};
use super::steering::SendTable;

/// Longest single sleep of a control wait.
pub(crate) const PUMP_SLICE: Duration = Duration::from_millis(5);
/// A poller that ran a burst this recently is trusted to drain queue 0.
const POLLER_WINDOW_NANOS: u64 = 20_000_000;

/// Where the NIC is in its life ([`NicShared::lifecycle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Lifecycle {
    /// Open: the session (or its re-establishing) serves the application.
    Open = 0,
    /// Closing (module `close`): queues take no new frames; the teardown talks to the host.
    Closing = 1,
    /// Closed for good: queues are detached, control calls fail with
    /// [`NicError::Closed`], the events that were queued are the last.
    Closed = 2,
}

/// The send buffer of the session, for control messages.
#[derive(Debug, Clone)]
pub(crate) struct SendBuffer {
    pub mem: SharedMemory,
    pub section_size: usize,
}

/// What every handle of the NIC shares.
#[derive(Debug)]
pub(crate) struct NicShared {
    pub config: NicConfig,
    pub pool: Pool,
    /// Whether the pool's bus addresses are readable by the host (GPA direct possible).
    pub gpa_capable: bool,
    pub device: Mutex<Box<dyn VmbusDevice>>,
    /// One per configured queue; the first `queue_count` are live.
    pub queues: Vec<QueueShared>,
    pub control: Control,
    /// Serialises open and re-establish.
    pub session_lock: Mutex<()>,
    pub sendbuf: Mutex<Option<SendBuffer>>,
    /// The host's last send indirection table as it sent it (empty until NVSP 134).
    pub send_table: Mutex<Vec<u32>>,
    /// The same table, for lock-free transmit queue selection.
    pub steering: SendTable,
    /// The host's offload hardware capabilities, if it answered the query this session.
    pub offload_caps: Mutex<Option<NdisOffload>>,
    pub epoch: Instant,
    mac: AtomicU64,
    mtu: AtomicUsize,
    nvsp_version: AtomicU32,
    ndis_version: AtomicU32,
    queue_count: AtomicU16,
    link_up: AtomicBool,
    link_speed: AtomicU64,
    pub packet_filter: AtomicU32,
    dead: AtomicBool,
    /// A [`Lifecycle`]; only `close` moves it, always forward.
    lifecycle: AtomicU8,
    pub reestablished: AtomicU64,
}

impl NicShared {
    pub(crate) fn new(
        config: NicConfig,
        pool: Pool,
        gpa_capable: bool,
        device: Box<dyn VmbusDevice>,
    ) -> Self {
        let max_frame = config.max_frame();
        let queues = (0..config.queues)
            .map(|i| QueueShared::new(i, max_frame, config.tx_copy_max))
            .collect();
        Self {
            mtu: AtomicUsize::new(config.mtu),
            packet_filter: AtomicU32::new(config.packet_filter),
            config,
            pool,
            gpa_capable,
            device: Mutex::new(device),
            queues,
            control: Control::default(),
            session_lock: Mutex::new(()),
            sendbuf: Mutex::new(None),
            send_table: Mutex::new(Vec::new()),
            steering: SendTable::default(),
            offload_caps: Mutex::new(None),
            epoch: Instant::now(),
            mac: AtomicU64::new(0),
            nvsp_version: AtomicU32::new(0),
            ndis_version: AtomicU32::new(0),
            queue_count: AtomicU16::new(1),
            link_up: AtomicBool::new(false),
            link_speed: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            lifecycle: AtomicU8::new(Lifecycle::Open as u8),
            reestablished: AtomicU64::new(0),
        }
    }

    // --- identity and state -----------------------------------------------------------------

    pub(crate) fn mac(&self) -> MacAddr {
        let v = self.mac.load(Ordering::Acquire).to_le_bytes();
        MacAddr([v[0], v[1], v[2], v[3], v[4], v[5]])
    }

    pub(crate) fn set_mac(&self, mac: MacAddr) {
        let mut v = [0u8; 8];
        v[..6].copy_from_slice(&mac.0);
        self.mac.store(u64::from_le_bytes(v), Ordering::Release);
    }

    pub(crate) fn mtu(&self) -> usize {
        self.mtu.load(Ordering::Acquire)
    }

    pub(crate) fn set_mtu(&self, mtu: usize) {
        self.mtu.store(mtu, Ordering::Release);
    }

    pub(crate) fn nvsp_version(&self) -> u32 {
        self.nvsp_version.load(Ordering::Acquire)
    }

    pub(crate) fn set_versions(&self, nvsp: u32, ndis: u32) {
        self.nvsp_version.store(nvsp, Ordering::Release);
        self.ndis_version.store(ndis, Ordering::Release);
    }

    pub(crate) fn ndis_version(&self) -> u32 {
        self.ndis_version.load(Ordering::Acquire)
    }

    pub(crate) fn queue_count(&self) -> u16 {
        self.queue_count.load(Ordering::Acquire)
    }

    pub(crate) fn set_queue_count(&self, n: u16) {
        self.queue_count.store(n, Ordering::Release);
    }

    pub(crate) fn link_up(&self) -> bool {
        self.link_up.load(Ordering::Acquire)
    }

    /// Sets the link state; `true` if it changed.
    pub(crate) fn set_link_up(&self, up: bool) -> bool {
        self.link_up.swap(up, Ordering::AcqRel) != up
    }

    pub(crate) fn link_speed(&self) -> u64 {
        self.link_speed.load(Ordering::Acquire)
    }

    pub(crate) fn set_link_speed(&self, bps: u64) {
        self.link_speed.store(bps, Ordering::Release);
    }

    pub(crate) fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }

    /// Where the NIC is in its life.
    pub(crate) fn lifecycle(&self) -> Lifecycle {
        match self.lifecycle.load(Ordering::Acquire) {
            0 => Lifecycle::Open,
            1 => Lifecycle::Closing,
            _ => Lifecycle::Closed,
        }
    }

    /// Moves the NIC on to `next` (module `close`).
    pub(crate) fn set_lifecycle(&self, next: Lifecycle) {
        self.lifecycle.store(next as u8, Ordering::Release);
    }

    /// Whether the NIC is closed for good.
    pub(crate) fn is_closed(&self) -> bool {
        self.lifecycle() == Lifecycle::Closed
    }

    /// Marks the channel dead and reports it once.
    pub(crate) fn mark_dead(&self) {
        if !self.dead.swap(true, Ordering::AcqRel) {
            self.control.push_event(NicEvent::ChannelDead);
        }
    }

    /// Sets the dead flag without an event (while a session is being rebuilt).
    pub(crate) fn set_dead_quietly(&self, dead: bool) {
        self.dead.store(dead, Ordering::Release);
    }

    /// Queues an event, after applying what it says to the NIC's state.
    pub(crate) fn push_event(&self, event: NicEvent) {
        match &event {
            NicEvent::LinkUp => {
                self.set_link_up(true);
            }
            NicEvent::LinkDown => {
                self.set_link_up(false);
            }
            NicEvent::LinkSpeedChange(bps) if *bps != 0 => self.set_link_speed(*bps),
            NicEvent::IndirectionTable(table) => {
                self.steering.store(table);
                *self.send_table.lock() = table.clone();
            }
            _ => {}
        }
        self.control.push_event(event);
    }

    pub(crate) fn device_failed(&self, error: &DeviceError) {
        if matches!(
            error,
            DeviceError::ChannelDead { .. } | DeviceError::Gone { .. }
        ) {
            self.mark_dead();
        }
    }

    // --- waiting ---------------------------------------------------------------------------

    /// One bounded step of waiting for something from the host (see the module docs).
    pub(crate) fn pump(&self, deadline: Instant) {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(PUMP_SLICE);
        let q0 = &self.queues[0];
        // A closing NIC drains queue 0 itself: its pollers may be on their way out.
        let trust_poller = self.lifecycle() == Lifecycle::Open
            && q0.poller_active(self.epoch, POLLER_WINDOW_NANOS);
        if self.is_dead() || trust_poller {
            self.control.wait_slice(slice);
            return;
        }
        {
            let Some(mut st) = q0.state.try_lock() else {
                self.control.wait_slice(slice.min(Duration::from_millis(1)));
                return;
            };
            let mut room = 0;
            let read = st.service(self, None, &mut room, BURST_BUDGET);
            st.flush();
            if read > 0 || self.is_dead() || slice.is_zero() {
                return;
            }
            if st.chan.is_none() {
                drop(st);
                self.control.wait_slice(slice);
                return;
            }
            if st.completion_backlog_full() {
                // The host has stopped reading our ring, and the queue reads nothing more until
                // it does: sleep (bounded) until it signals that it has read (`service` asked it
                // to), rather than spin on the packets waiting in the incoming ring.
            } else if st.arm_interrupt() {
                st.mask_interrupt();
                return;
            }
        }
        let woke = self.device.lock().wait_for_interrupt(slice);
        if let Some(st) = q0.state.try_lock() {
            st.mask_interrupt();
        }
        if let Err(error) = woke {
            tracing::debug!(%error, "waiting for the host failed");
            self.device_failed(&error);
            self.control.wait_slice(slice);
        }
    }

    /// Waits until `check` finds what it looks for in the inbox, the channel dies, or the
    /// deadline passes.
    pub(crate) fn wait_for<T>(
        &self,
        bound: Bound,
        what: &'static str,
        mut check: impl FnMut(&mut super::control::Inbox) -> Option<T>,
    ) -> Result<T, NicError> {
        loop {
            if let Some(found) = check(&mut self.control.inbox.lock()) {
                return Ok(found);
            }
            if self.is_closed() {
                return Err(NicError::Closed);
            }
            if self.is_dead() {
                return Err(NicError::ChannelDead);
            }
            if bound.expired() {
                self.control.count_timeout();
                return Err(bound.error(what));
            }
            self.pump(bound.deadline);
        }
    }

    // --- sending ---------------------------------------------------------------------------

    /// Writes one control packet into queue 0's ring, waiting (bounded) for room.
    pub(crate) fn send_control(
        &self,
        packet: &OutgoingPacket<'_>,
        bound: Bound,
        what: &'static str,
    ) -> Result<(), NicError> {
        loop {
            if self.is_closed() {
                return Err(NicError::Closed);
            }
            if self.is_dead() {
                return Err(NicError::ChannelDead);
            }
            if self.queues[0].state.lock().send_now(self, packet)? {
                return Ok(());
            }
            if bound.expired() {
                self.control.count_timeout();
                return Err(bound.error(what));
            }
            self.pump(bound.deadline);
        }
    }

    fn nvsp_bytes(msg: &NvspMessage<'_>) -> Vec<u8> {
        msg.to_vec(nvsp::GUEST_MESSAGE_SIZE)
    }

    /// Sends an NVSP message without asking for a completion.
    pub(crate) fn nvsp_post(
        &self,
        msg: &NvspMessage<'_>,
        bound: Bound,
        what: &'static str,
    ) -> Result<(), NicError> {
        let bytes = Self::nvsp_bytes(msg);
        let packet = OutgoingPacket {
            kind: OutgoingKind::InBand,
            transaction_id: 0,
            completion_requested: false,
            payload: &bytes,
        };
        self.send_control(&packet, bound, what)
    }

    /// Sends an NVSP request with completion requested and returns the completion's payload
    /// (padding included; empty for SWITCH_DATA_PATH). Returns the tid too.
    pub(crate) fn nvsp_request(
        &self,
        msg: &NvspMessage<'_>,
        bound: Bound,
        what: &'static str,
    ) -> Result<(u64, Vec<u8>), NicError> {
        let bytes = Self::nvsp_bytes(msg);
        let tid = self.control.new_tid();
        self.control.expect_nvsp(tid);
        let packet = OutgoingPacket {
            kind: OutgoingKind::InBand,
            transaction_id: tid,
            completion_requested: true,
            payload: &bytes,
        };
        let result = self
            .send_control(&packet, bound, what)
            .and_then(|()| self.wait_for(bound, what, |inbox| Control::take_nvsp(inbox, tid)));
        if result.is_err() {
            self.control.forget_nvsp(tid);
        }
        result.map(|payload| (tid, payload))
    }

    /// Writes an RNDIS control message into control send `section` and sends it as
    /// transaction `tid`, asking for its transport completion. The caller forgets the
    /// reservation when this fails.
    #[allow(clippy::too_many_arguments)]
    fn write_and_send_rndis(
        &self,
        sendbuf: &SendBuffer,
        section: u32,
        tid: u64,
        request_id: u32,
        bound: Bound,
        what: &'static str,
        encode: impl FnOnce(&mut [u8], u32) -> Result<usize, RndisError>,
    ) -> Result<(), NicError> {
        let bytes = Self::write_rndis(sendbuf, section, request_id, what, encode)?;
        let packet = OutgoingPacket {
            kind: OutgoingKind::InBand,
            transaction_id: tid,
            completion_requested: true,
            payload: &bytes,
        };
        self.send_control(&packet, bound, what)
    }

    /// Writes the RNDIS message `encode` builds (given the buffer and `request_id`) into
    /// control section `section` of `sendbuf`; returns the NVSP 107 that names it.
    fn write_rndis(
        sendbuf: &SendBuffer,
        section: u32,
        request_id: u32,
        what: &'static str,
        encode: impl FnOnce(&mut [u8], u32) -> Result<usize, RndisError>,
    ) -> Result<Vec<u8>, NicError> {
        let mut message = vec![0u8; sendbuf.section_size];
        let len = encode(&mut message, request_id).map_err(|source| NicError::Rndis {
            what,
            request_id,
            source,
        })?;
        let offset = section as usize * sendbuf.section_size;
        sendbuf.mem.write(offset, &message[..len])?;
        let nvsp_msg = NvspMessage::SendRndisPacket(nvsp::Message1SendRndisPacket::new(
            nvsp::CONTROL_CHANNEL_TYPE,
            section,
            len as u32,
        ));
        Ok(Self::nvsp_bytes(&nvsp_msg))
    }

    /// The session's send buffer, or why there is none.
    fn control_sendbuf(&self) -> Result<SendBuffer, NicError> {
        if self.is_closed() {
            return Err(NicError::Closed);
        }
        self.sendbuf.lock().clone().ok_or(NicError::ChannelDead)
    }

    /// Sends an RNDIS control message built by `encode` (given the buffer and the request id)
    /// through a control send section, and returns the host's RNDIS reply.
    pub(crate) fn rndis_request(
        &self,
        bound: Bound,
        what: &'static str,
        encode: impl FnOnce(&mut [u8], u32) -> Result<usize, RndisError>,
    ) -> Result<Vec<u8>, NicError> {
        let sendbuf = self.control_sendbuf()?;
        let request_id = self.control.new_request_id();
        let tid = self.control.new_tid();
        let Some(section) = self.control.reserve_section(tid, request_id) else {
            return Err(NicError::NoControlSection);
        };
        let sent =
            self.write_and_send_rndis(&sendbuf, section, tid, request_id, bound, what, encode);
        if let Err(e) = sent {
            self.control.forget_rndis(request_id, true);
            return Err(e);
        }
        let answer: Result<RndisAnswer, NicError> =
            self.wait_for(bound, what, |inbox| Control::take_rndis(inbox, request_id));
        match answer {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(status)) => Err(NicError::HostRefused { what, status }),
            Err(e) => {
                self.control.forget_rndis(request_id, false);
                Err(e)
            }
        }
    }

    /// Sends an RNDIS control message that gets no RNDIS reply (HALT) through a control send
    /// section, and waits for its transport completion (NVSP 108), the only answer a host
    /// gives. A status other than success is [`NicError::HostRefused`].
    pub(crate) fn rndis_post(
        &self,
        bound: Bound,
        what: &'static str,
        encode: impl FnOnce(&mut [u8], u32) -> Result<usize, RndisError>,
    ) -> Result<(), NicError> {
        let sendbuf = self.control_sendbuf()?;
        let request_id = self.control.new_request_id();
        let tid = self.control.new_tid();
        let Some(section) = self.control.reserve_posted_section(tid) else {
            return Err(NicError::NoControlSection);
        };
        let sent =
            self.write_and_send_rndis(&sendbuf, section, tid, request_id, bound, what, encode);
        if let Err(e) = sent {
            self.control.forget_posted(tid, true);
            return Err(e);
        }
        let payload = match self.wait_for(bound, what, |inbox| Control::take_nvsp(inbox, tid)) {
            Ok(payload) => payload,
            Err(e) => {
                self.control.forget_posted(tid, false);
                return Err(e);
            }
        };
        let status = match NvspMessage::parse(&payload) {
            Ok(NvspMessage::SendRndisPacketComplete(m)) => m.status.get(),
            Ok(other) => {
                return Err(NicError::Protocol {
                    queue: 0,
                    msg_type: other.msg_type(),
                    reason: format!("unexpected completion of {what}"),
                });
            }
            Err(source) => return Err(NicError::Nvsp { what, tid, source }),
        };
        if status != nvsp::STATUS_SUCCESS {
            return Err(NicError::HostRefused { what, status });
        }
        Ok(())
    }
}
