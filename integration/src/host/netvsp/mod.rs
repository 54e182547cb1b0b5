//! NetVSP, the host end of the synthetic NIC: one [`Session`] per open generation of the
//! primary channel.
//!
//! Lifecycle: the host thread creates a session when the primary channel opens (at start and
//! after each guest reopen) and polls it. A session goes through NVSP initialisation
//! ([`init`]), then serves RNDIS control ([`rndis`]), guest sends ([`tx`]), receive delivery
//! ([`rx`]), subchannels and the VF data path ([`vf`]), and the guest's teardown (RNDIS
//! HALT, then REVOKE_RECEIVE_BUFFER and REVOKE_SEND_BUFFER naming the ids the buffers were
//! sent with; a wrong id is a protocol error): after the receive revoke the session writes
//! nothing more into the receive buffer and drops what comes for the guest, after the send
//! revoke a send through a section is a protocol error. A protocol violation (or a
//! worker-stopping fault) stops the session silently: no reply, no further ring activity, the
//! guest→host `interrupt_mask` left at 1, until the guest reopens. Host-level state (link,
//! VF presence, armed faults) outlives sessions in [`Persist`].
//!
//! The session never blocks: before reading a guest packet it makes sure the guest's RX ring
//! has room for the completion that packet may need, and receive delivery only uses what is
//! free (sub-allocations, ring space) and leaves the rest queued in the vSwitch. Guest
//! completions therefore never wait behind receives.

pub(crate) mod init;
pub(crate) mod rndis;
pub(crate) mod rx;
pub(crate) mod tx;
pub(crate) mod vf;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use netvsc::nvsp::{self, NvspMessage};
use netvsc::vmbus::shm::ShmHostSide;
use netvsc::vmbus::{IncomingKind, IncomingPacket, OutgoingKind, OutgoingPacket, RingError};
use packet::{MacAddr, SharedMemory};

use super::channel::HostChannel;
use super::faults::{Fault, FaultState};
use super::stats::StatsCell;
use super::vswitch::Switch;
use rx::ReceiveBuffer;

/// Guest packets read per channel per poll, so one busy channel cannot starve the others.
const READ_BUDGET: usize = 256;
/// Ring bytes kept free in the guest's RX ring for completions: two 40-byte completions with
/// descriptor and trailer (a duplicated completion writes two).
const COMPLETION_ROOM: usize = 2 * (16 + nvsp::PACKET_SIZE_V61 + 8);
/// Free ring bytes a control message needs beyond its packet (OpenVMM: 144).
const CONTROL_ROOM: usize = 144;
/// Queued control bytes above which the session dies (OpenVMM: 100 KiB).
const MAX_CONTROL_BACKLOG: usize = 100 * 1024;

/// What the host is configured with, as a session needs it.
#[derive(Clone, Debug)]
pub(crate) struct SessionConfig {
    pub mac: MacAddr,
    pub max_queues: u16,
    pub link_speed_bps: u64,
    pub tx_offloads: bool,
    pub rss_table_size: u16,
    pub link_delay: Duration,
    pub vf_device_delay: Duration,
}

/// A request from the control handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Command {
    SetLink(bool),
    NetworkChange,
    OfferVf(u32),
    RemoveVf,
    ForceSynthetic,
    Fault(Fault),
}

/// State that outlives a session (the endpoint's and the host's, not the channel's).
#[derive(Clone, Debug, Default)]
pub(crate) struct Persist {
    pub link_up: bool,
    /// A delayed second link transition: when, and to which state.
    pub link_toggle: Option<(Instant, bool)>,
    pub vf_serial: Option<u32>,
    pub faults: FaultState,
    pub data_path_vf: bool,
    pub rescinded: bool,
}

/// Why a session stopped.
#[derive(Debug)]
pub(crate) struct Fatal(pub String);

/// `Err(Fatal)` with a formatted reason.
macro_rules! fatal {
    ($($arg:tt)*) => { Err($crate::host::netvsp::Fatal(format!($($arg)*))) };
}
pub(crate) use fatal;

/// A host→guest message waiting on the primary channel, in order.
#[derive(Clone, Debug)]
pub(crate) enum OutMsg {
    /// An RNDIS control message: one control buffer, one transfer-page packet.
    Control(Vec<u8>),
    /// An in-band NVSP message (VF association, host SWITCH_DATA_PATH, indirection table).
    InBand {
        tid: u64,
        completion_requested: bool,
        payload: Vec<u8>,
    },
}

/// The NDIS_CONFIG the guest sent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NdisConfig {
    pub mtu: u32,
    pub capabilities: u64,
}

/// One NetVSP session (see the module docs).
#[derive(Debug)]
pub(crate) struct Session {
    pub config: SessionConfig,
    pub host_side: ShmHostSide,
    pub stats: Arc<StatsCell>,
    pub switch: Arc<Switch>,
    pub persist: Persist,
    pub channels: Vec<HostChannel>,
    packet: IncomingPacket,
    pub scratch: Vec<u8>,
    /// Buffers of the frames a delivery round wrote, handed back to the switch after it.
    delivered_buffers: Vec<Vec<u8>>,
    // NVSP initialisation.
    pub version: Option<u32>,
    pub ndis_version: Option<u32>,
    pub ndis_config: Option<NdisConfig>,
    pub recv: Option<ReceiveBuffer>,
    /// The guest revoked the receive buffer: `recv` stays only to accept completions of
    /// packets delivered before (a subchannel's may be read after the revoke); nothing is
    /// written into it any more.
    pub recv_revoked: bool,
    pub send: Option<SharedMemory>,
    /// The id the guest gave the send buffer in SEND_SEND_BUFFER.
    pub send_id: u16,
    pub init_done: bool,
    // RNDIS.
    pub rndis: rndis::RndisState,
    // Subchannels: how many were granted (one-shot per session).
    pub subchannels_granted: Option<u16>,
    // VF.
    pub vf: vf::VfState,
    // Host→guest messages for the primary channel.
    pub control_out: VecDeque<OutMsg>,
    pub control_bytes: usize,
    pub dead: bool,
}

impl Session {
    /// A fresh session over the freshly (re)opened primary channel.
    pub fn new(
        config: SessionConfig,
        host_side: ShmHostSide,
        stats: Arc<StatsCell>,
        switch: Arc<Switch>,
        mut persist: Persist,
    ) -> Result<Self, netvsc::vmbus::DeviceError> {
        let primary = HostChannel::open(&host_side, 0)?;
        if persist.data_path_vf {
            persist.data_path_vf = false;
            stats.record_switch(false);
        }
        switch.set_data_path_vf(false, vf::SWITCH_FLUSH_TIMEOUT);
        switch.set_open_queues(1);
        // A new session has a new receive buffer coming: frames wait for it again.
        switch.set_backlog_all(super::vswitch::Backlog::None);
        stats.nvsp_version.store(0, Ordering::Relaxed);
        stats.packet_filter.store(0, Ordering::Relaxed);
        stats.subchannels_open.store(0, Ordering::Relaxed);
        stats.completions_outstanding.store(0, Ordering::Relaxed);
        stats
            .channel_dead
            .store(persist.rescinded, Ordering::Relaxed);
        Ok(Self {
            config,
            host_side,
            stats,
            switch,
            persist,
            channels: vec![primary],
            packet: IncomingPacket::new(),
            scratch: Vec::new(),
            delivered_buffers: Vec::new(),
            version: None,
            ndis_version: None,
            ndis_config: None,
            recv: None,
            recv_revoked: false,
            send: None,
            send_id: 0,
            init_done: false,
            rndis: rndis::RndisState::default(),
            subchannels_granted: None,
            vf: vf::VfState::default(),
            control_out: VecDeque::new(),
            control_bytes: 0,
            dead: false,
        })
    }

    /// Ends the session, handing back what outlives it.
    pub fn into_persist(self) -> Persist {
        self.persist
    }

    /// Stops the worker silently (see the module docs).
    pub fn die(&mut self, reason: String, protocol_error: bool) {
        if self.dead {
            return;
        }
        tracing::warn!(target: "hvnet::host", "NetVSP worker stops: {reason}");
        self.dead = true;
        self.stats.record_stop(reason, protocol_error);
        for ch in &self.channels {
            ch.set_busy(true);
        }
    }

    /// The NVSP message size the host pads to in this session.
    pub fn host_message_size(&self) -> usize {
        nvsp::host_message_size(self.version.unwrap_or(nvsp::VERSION_1))
    }

    /// Applies a control-handle request.
    pub fn command(&mut self, command: Command, now: Instant) {
        match command {
            Command::SetLink(up) => self.set_link(up, now),
            Command::NetworkChange => {
                self.queue_indication(netvsc::rndis::STATUS_NETWORK_CHANGE, &[]);
            }
            Command::OfferVf(serial) => self.offer_vf(serial),
            Command::RemoveVf => self.remove_vf(),
            Command::ForceSynthetic => self.force_synthetic(),
            Command::Fault(fault) => {
                crate::host::stats::bump(&self.stats.faults_injected, 1);
                if let Some(now_fault) = self.persist.faults.arm(fault) {
                    self.immediate_fault(now_fault);
                }
            }
        }
    }

    fn immediate_fault(&mut self, fault: Fault) {
        match fault {
            Fault::DeadChannel => self.die("fault: dead channel".into(), false),
            Fault::RevokeReceiveBuffer => {
                self.recv = None;
                self.die("fault: receive buffer revoked".into(), false);
            }
            Fault::RingCorruption => {
                if let Some(ch) = self.channels.first_mut() {
                    ch.corrupt_guest_ring();
                }
                self.die("fault: guest RX ring corrupted".into(), false);
            }
            Fault::Rescind => {
                self.persist.rescinded = true;
                let _ = self.host_side.rescind();
                self.die("fault: device rescinded".into(), false);
            }
            _ => {}
        }
    }

    /// One round of work; `true` if anything happened.
    pub fn poll(&mut self, now: Instant) -> bool {
        let mut work = self.timers(now);
        if !self.dead {
            self.open_subchannels_if_ready();
            for i in 0..self.channels.len() {
                work |= self.read_channel(i);
                if self.dead {
                    break;
                }
            }
        }
        if !self.dead {
            work |= self.flush_control();
            for i in 0..self.channels.len() {
                work |= self.deliver_rx(i);
            }
        }
        for ch in &mut self.channels {
            ch.flush();
        }
        if !self.dead && self.finish_switch(now) {
            if let Some(primary) = self.channels.first_mut() {
                primary.flush();
            }
            work = true;
        }
        work
    }

    /// Reads and handles the guest's packets on channel `i`.
    fn read_channel(&mut self, i: usize) -> bool {
        if self.persist.faults.stop_reading {
            self.channels[i].set_busy(true);
            return false;
        }
        self.channels[i].set_busy(true);
        let mut work = false;
        for _ in 0..READ_BUDGET {
            let blocked = self.channels[i].free() <= COMPLETION_ROOM
                && !self.channels[i].request_space(COMPLETION_ROOM);
            self.channels[i].space_blocked = blocked;
            if blocked {
                break;
            }
            let mut packet = std::mem::take(&mut self.packet);
            let result = self.channels[i].read(&mut packet);
            let outcome = match result {
                Ok(false) => {
                    self.packet = packet;
                    break;
                }
                Ok(true) => self.handle(i as u16, &packet),
                Err(RingError::InvalidPacket { reason, .. }) => {
                    fatal!("invalid packet on channel {i}: {reason}")
                }
                Err(e) => fatal!("guest TX ring of channel {i} is corrupt: {e}"),
            };
            self.packet = packet;
            work = true;
            if let Err(Fatal(reason)) = outcome {
                self.die(reason, true);
                break;
            }
        }
        self.channels[i].commit_read();
        work
    }

    /// Handles one guest packet on channel `ch`.
    fn handle(&mut self, ch: u16, packet: &IncomingPacket) -> Result<(), Fatal> {
        match packet.kind() {
            IncomingKind::Completion => {
                self.guest_completion(ch, packet.transaction_id(), packet.payload())
            }
            IncomingKind::InBand | IncomingKind::GpaDirect => {
                let message = match NvspMessage::parse_from_guest(packet.payload()) {
                    Ok(m) => m,
                    Err(e) => return fatal!("malformed NVSP message on channel {ch}: {e}"),
                };
                self.dispatch(ch, packet, message)
            }
            IncomingKind::TransferPages { .. } => {
                fatal!("guest sent a transfer-page packet on channel {ch}")
            }
        }
    }

    /// Stages a packet on channel `ch`; the callers checked the room.
    pub fn stage(&mut self, ch: u16, packet: &OutgoingPacket<'_>) {
        if let Some(c) = self.channels.get_mut(usize::from(ch))
            && let Err(e) = c.stage(packet)
        {
            tracing::warn!(target: "hvnet::host", "channel {ch}: cannot write: {e}");
        }
    }

    /// Writes a completion carrying `payload` (already padded) if the guest asked for one.
    pub fn complete(&mut self, ch: u16, tid: u64, completion_requested: bool, payload: &[u8]) {
        if completion_requested {
            self.stage(
                ch,
                &OutgoingPacket {
                    kind: OutgoingKind::Completion,
                    transaction_id: tid,
                    completion_requested: false,
                    payload,
                },
            );
        }
    }

    /// Writes the completion of an NVSP message: `message` padded to the session's size.
    pub fn complete_message(
        &mut self,
        ch: u16,
        tid: u64,
        completion_requested: bool,
        message: &NvspMessage<'_>,
    ) {
        let bytes = message.to_vec(self.host_message_size());
        self.complete(ch, tid, completion_requested, &bytes);
    }

    /// Queues a host→guest message on the primary channel.
    pub fn queue_out(&mut self, msg: OutMsg) {
        if let OutMsg::Control(bytes) = &msg {
            self.control_bytes += bytes.len();
        }
        self.control_out.push_back(msg);
        if self.control_bytes > MAX_CONTROL_BACKLOG {
            self.die(
                format!("more than {MAX_CONTROL_BACKLOG} bytes of control messages queued"),
                true,
            );
        }
    }

    /// Writes queued primary-channel messages, in order, while control buffers and ring room
    /// last.
    fn flush_control(&mut self) -> bool {
        let mut work = false;
        while let Some(msg) = self.control_out.front() {
            let written = match msg.clone() {
                OutMsg::Control(bytes) => self.write_control(&bytes),
                OutMsg::InBand {
                    tid,
                    completion_requested,
                    payload,
                } => self.write_in_band(tid, completion_requested, &payload),
            };
            if !written {
                break;
            }
            if let Some(OutMsg::Control(bytes)) = self.control_out.pop_front() {
                self.control_bytes -= bytes.len();
            }
            work = true;
        }
        work
    }

    fn write_in_band(&mut self, tid: u64, completion_requested: bool, payload: &[u8]) -> bool {
        let packet = OutgoingPacket {
            kind: OutgoingKind::InBand,
            transaction_id: tid,
            completion_requested,
            payload,
        };
        let Some(primary) = self.channels.first_mut() else {
            return false;
        };
        if primary.free() <= packet.ring_len() + COMPLETION_ROOM {
            primary.request_space(packet.ring_len() + COMPLETION_ROOM);
            return false;
        }
        self.stage(0, &packet);
        true
    }

    /// Fires due timers; `true` if any did.
    fn timers(&mut self, now: Instant) -> bool {
        let mut work = false;
        if let Some((at, up)) = self.persist.link_toggle
            && now >= at
        {
            self.persist.link_toggle = None;
            self.persist.link_up = up;
            self.queue_link_indication(up);
            work = true;
        }
        work |= self.vf_timers(now);
        work
    }

    /// The next timer deadline, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        let link = self.persist.link_toggle.map(|(at, _)| at);
        let switch = self.vf.switch_pending.map(|p| p.deadline);
        [link, self.vf.ready_at, switch].into_iter().flatten().min()
    }

    /// Whether work waits on something other than a guest signal (queued messages, frames).
    pub fn has_backlog(&self) -> bool {
        let receiving = self.init_done && self.rndis.filter != 0 && !self.recv_revoked;
        !self.dead
            && (!self.control_out.is_empty()
                || self.vf.switch_pending.is_some()
                || (receiving
                    && (0..self.channels.len() as u16).any(|q| self.switch.has_pending(q))))
    }

    /// Before sleeping: unmask guest signals on live channels; `true` if data arrived.
    pub fn arm(&self) -> bool {
        if self.dead || self.persist.faults.stop_reading {
            return false;
        }
        let mut arrived = false;
        for ch in &self.channels {
            // A channel waiting for RX-ring room is woken by the guest's space signal.
            arrived |= ch.arm() && !ch.space_blocked;
        }
        arrived
    }

    /// Opens the granted subchannels once the guest has opened them, then sends the send
    /// indirection table.
    fn open_subchannels_if_ready(&mut self) {
        let Some(n) = self.subchannels_granted else {
            return;
        };
        if self.channels.len() > 1 || n == 0 || self.host_side.subchannels_opened() < n {
            return;
        }
        for index in 1..=n {
            match HostChannel::open(&self.host_side, index) {
                Ok(ch) => self.channels.push(ch),
                Err(e) => {
                    self.die(format!("cannot open subchannel {index}: {e}"), false);
                    return;
                }
            }
        }
        let queues = n + 1;
        if let Some(recv) = &mut self.recv {
            recv.split(queues);
        }
        self.switch.set_open_queues(queues);
        self.stats.subchannels_open.store(n, Ordering::Relaxed);
        let table: Vec<u32> = (0..nvsp::SEND_INDIRECTION_TABLE_ENTRIES as u32)
            .map(|i| i % u32::from(queues))
            .collect();
        let mut payload = vec![0u8; nvsp::SEND_INDIRECTION_TABLE_MESSAGE_SIZE];
        match nvsp::encode_send_indirection_table(&mut payload, &table) {
            Ok(len) => {
                payload.truncate(len);
                self.queue_out(OutMsg::InBand {
                    tid: 0,
                    completion_requested: false,
                    payload,
                });
            }
            Err(e) => tracing::warn!(target: "hvnet::host", "indirection table: {e}"),
        }
    }
}
