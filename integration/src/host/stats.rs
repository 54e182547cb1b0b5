//! Host-side counters: [`HostStats`], the snapshot the control handle hands out, and
//! `StatsCell`, the live counters the host thread updates.
//!
//! Lifecycle: one `StatsCell` per [`SimHost`](super::SimHost), shared between the host thread
//! (writer) and the control handle (reader). Scalar counters are atomics the host thread bumps
//! *before* the guest can observe the effect (before it publishes the ring write), so a test
//! that saw a frame also sees it counted. Counters are cumulative over the host's life; they
//! survive channel reopens.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

/// One step of a guest's clean detach as the host saw it ([`HostStats::teardown`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TeardownStep {
    /// RNDIS HALT (completed at the transport level only, as OpenVMM does).
    RndisHalt,
    /// NVSP REVOKE_RECEIVE_BUFFER naming the session's receive buffer: the host no longer
    /// touches it, and frames for the guest are dropped (`rx_dropped_revoked`).
    ReceiveBufferRevoked,
    /// NVSP REVOKE_SEND_BUFFER naming the session's send buffer: a send through a section is
    /// a protocol error from then on.
    SendBufferRevoked,
}

/// A snapshot of the simulated host's counters ([`SimHost::stats`](super::SimHost::stats)).
/// The host's drop counters a traffic loop polls ([`SimHost::flow_drops`](super::SimHost::flow_drops)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowDrops {
    /// Frames the guest sent that the external port's FIFO had no room for
    /// ([`HostStats::tx_dropped_port_full`]).
    pub to_external: u64,
    /// Frames dropped on their way to the guest: its ring full, no receive buffer, or
    /// filtered out.
    pub to_guest: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct HostStats {
    /// The NVSP version negotiated in the current session (`None` before INIT succeeds).
    pub nvsp_version: Option<u32>,
    /// Frames delivered to the guest (data ranges of transfer-page packets).
    pub rx_delivered: u64,
    /// Transfer-page data packets written to the guest.
    pub rx_packets: u64,
    /// Frames dropped because the guest's receive ring stayed full until the port queue
    /// overflowed.
    pub rx_dropped_ring_full: u64,
    /// Frames dropped because no receive sub-allocation was free until the port queue
    /// overflowed.
    pub rx_dropped_no_buffer: u64,
    /// Frames dropped while the guest's packet filter was 0.
    pub rx_dropped_filtered: u64,
    /// Frames dropped because they do not fit a receive sub-allocation.
    pub rx_dropped_oversize: u64,
    /// Frames offered on a queue (channel) that is not open.
    pub rx_dropped_no_queue: u64,
    /// Frames for the guest dropped because it had revoked its receive buffer (those waiting
    /// then, and every one after, until a reopen starts a new session).
    pub rx_dropped_revoked: u64,
    /// Frames the guest transmitted (accepted and forwarded to the vSwitch).
    pub tx_packets: u64,
    /// Guest sends completed with FAILURE.
    pub tx_failed: u64,
    /// Frames the guest transmitted that the external port could not hold.
    pub tx_dropped_port_full: u64,
    /// Frames for the guest the vSwitch steered to the VF (accepted by its wire).
    pub rx_to_vf: u64,
    /// Frames for the guest steered to the VF that the VF refused (lost, as on a dead VF).
    pub rx_dropped_vf: u64,
    /// Frames the VF transmitted into the vSwitch (through the `VfUplink`).
    pub tx_from_vf: u64,
    /// Data-path switches completed without the old path flushed within 2 s.
    pub switch_flush_timeouts: u64,
    /// Guest protocol violations that stopped the NetVSP worker.
    pub protocol_errors: u64,
    /// Reason of the last worker stop, for diagnostics.
    pub last_error: Option<String>,
    /// Whether the data path is currently switched to the VF.
    pub data_path_vf: bool,
    /// The last [`DATA_PATH_HISTORY`] changes of the data path, in order (`true` = to the
    /// VF), like the transcripts' `set_data_path_to_guest_vf` calls.
    pub data_path_switches: Vec<bool>,
    /// Every change of the data path so far (a long run keeps only the last ones above).
    pub data_path_switches_total: u64,
    /// VF associations (`{128, 1, serial}`) sent.
    pub vf_associations: u64,
    /// Times the host made the VF device available to the guest (`VF_DEVICE_DELAY` after an
    /// association, or at once when the guest switches first).
    pub vf_ready_for_device: u64,
    /// Whether the NetVSP worker serves the channel (false after a protocol error or a
    /// worker-stopping fault, until the guest reopens).
    pub channel_alive: bool,
    /// Transfer-page packets (data and control) the guest has not completed yet.
    pub completions_outstanding: usize,
    /// The guest's current RNDIS packet filter.
    pub packet_filter: u32,
    /// Subchannels open in the current session.
    pub subchannels_open: u16,
    /// RNDIS control messages (completions and indications) sent.
    pub control_messages: u64,
    /// RNDIS status indications sent (link, network change, offload config).
    pub indications: u64,
    /// Data sends (NVSP 107 on a queue) processed, each holding one or more frames.
    pub tx_sends: u64,
    /// Sends completed (NVSP 108 written; a duplicated completion counts once).
    pub tx_completions: u64,
    /// Send completions withheld by [`Fault::DropCompletions`](super::Fault::DropCompletions).
    pub tx_completions_dropped: u64,
    /// Receive completions accepted from the guest.
    pub rx_completions: u64,
    /// Channel reopens acknowledged.
    pub reopens: u64,
    /// Faults injected so far.
    pub faults_injected: u64,
    /// RNDIS HALT messages the guest sent.
    pub rndis_halts: u64,
    /// NVSP REVOKE_RECEIVE_BUFFER messages accepted (naming the session's receive buffer; a
    /// wrong id is a protocol error instead).
    pub receive_buffer_revokes: u64,
    /// NVSP REVOKE_SEND_BUFFER messages accepted (naming the session's send buffer).
    pub send_buffer_revokes: u64,
    /// The last [`TEARDOWN_HISTORY`] HALTs and accepted revokes, in the order they came, over
    /// every session.
    pub teardown: Vec<TeardownStep>,
    /// Whether the data path was the VF when the last RNDIS HALT came (`None` before any): a
    /// guest that detaches cleanly has switched back to synthetic first.
    pub data_path_vf_at_halt: Option<bool>,
}

/// The live counters behind [`HostStats`].
#[derive(Debug, Default)]
pub(crate) struct StatsCell {
    pub nvsp_version: AtomicU32,
    pub rx_delivered: AtomicU64,
    pub rx_packets: AtomicU64,
    pub rx_dropped_ring_full: AtomicU64,
    pub rx_dropped_no_buffer: AtomicU64,
    pub rx_dropped_filtered: AtomicU64,
    pub rx_dropped_oversize: AtomicU64,
    pub rx_dropped_no_queue: AtomicU64,
    pub rx_dropped_revoked: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_failed: AtomicU64,
    pub tx_dropped_port_full: AtomicU64,
    pub rx_to_vf: AtomicU64,
    pub rx_dropped_vf: AtomicU64,
    pub tx_from_vf: AtomicU64,
    pub switch_flush_timeouts: AtomicU64,
    pub protocol_errors: AtomicU64,
    pub data_path_vf: AtomicBool,
    pub vf_associations: AtomicU64,
    pub vf_ready_for_device: AtomicU64,
    pub channel_dead: AtomicBool,
    pub completions_outstanding: AtomicUsize,
    pub packet_filter: AtomicU32,
    pub subchannels_open: AtomicU16,
    pub control_messages: AtomicU64,
    pub indications: AtomicU64,
    pub tx_sends: AtomicU64,
    pub tx_completions: AtomicU64,
    pub tx_completions_dropped: AtomicU64,
    pub rx_completions: AtomicU64,
    pub reopens: AtomicU64,
    pub faults_injected: AtomicU64,
    pub rndis_halts: AtomicU64,
    pub receive_buffer_revokes: AtomicU64,
    pub send_buffer_revokes: AtomicU64,
    pub misc: Mutex<Misc>,
}

/// Data-path changes [`HostStats::data_path_switches`] keeps (a soak makes thousands).
pub const DATA_PATH_HISTORY: usize = 64;
/// Teardown steps [`HostStats::teardown`] keeps.
pub const TEARDOWN_HISTORY: usize = 64;

/// The non-scalar parts of the stats.
#[derive(Debug, Default)]
pub(crate) struct Misc {
    pub data_path_switches: Vec<bool>,
    pub data_path_switches_total: u64,
    pub last_error: Option<String>,
    pub teardown: Vec<TeardownStep>,
    pub data_path_vf_at_halt: Option<bool>,
}

/// Adds `n` to a counter (relaxed: counters order nothing).
pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl StatsCell {
    /// Records a data-path change.
    pub fn record_switch(&self, to_vf: bool) {
        self.data_path_vf.store(to_vf, Ordering::Relaxed);
        let mut misc = self.misc.lock();
        if misc.data_path_switches.len() == DATA_PATH_HISTORY {
            misc.data_path_switches.remove(0);
        }
        misc.data_path_switches.push(to_vf);
        misc.data_path_switches_total += 1;
    }

    /// Counts a teardown step and records it in order.
    pub fn record_teardown(&self, step: TeardownStep) {
        let counter = match step {
            TeardownStep::RndisHalt => &self.rndis_halts,
            TeardownStep::ReceiveBufferRevoked => &self.receive_buffer_revokes,
            TeardownStep::SendBufferRevoked => &self.send_buffer_revokes,
        };
        let mut misc = self.misc.lock();
        if misc.teardown.len() == TEARDOWN_HISTORY {
            misc.teardown.remove(0);
        }
        misc.teardown.push(step);
        if step == TeardownStep::RndisHalt {
            misc.data_path_vf_at_halt = Some(self.data_path_vf.load(Ordering::Relaxed));
        }
        // Under the lock: a snapshot that sees the step in the list sees it counted.
        bump(counter, 1);
    }

    /// Records why the worker stopped.
    pub fn record_stop(&self, reason: String, protocol_error: bool) {
        // The reason first, and all of it under the lock: a snapshot that sees the channel
        // dead (or the error counted) sees why.
        let mut misc = self.misc.lock();
        misc.last_error = Some(reason);
        if protocol_error {
            bump(&self.protocol_errors, 1);
        }
        self.channel_dead.store(true, Ordering::Release);
    }

    /// A consistent-enough snapshot (each counter is read once).
    pub fn snapshot(&self) -> HostStats {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let misc = self.misc.lock();
        let version = self.nvsp_version.load(Ordering::Relaxed);
        HostStats {
            nvsp_version: (version != 0).then_some(version),
            rx_delivered: load(&self.rx_delivered),
            rx_packets: load(&self.rx_packets),
            rx_dropped_ring_full: load(&self.rx_dropped_ring_full),
            rx_dropped_no_buffer: load(&self.rx_dropped_no_buffer),
            rx_dropped_filtered: load(&self.rx_dropped_filtered),
            rx_dropped_oversize: load(&self.rx_dropped_oversize),
            rx_dropped_no_queue: load(&self.rx_dropped_no_queue),
            rx_dropped_revoked: load(&self.rx_dropped_revoked),
            tx_packets: load(&self.tx_packets),
            tx_failed: load(&self.tx_failed),
            tx_dropped_port_full: load(&self.tx_dropped_port_full),
            rx_to_vf: load(&self.rx_to_vf),
            rx_dropped_vf: load(&self.rx_dropped_vf),
            tx_from_vf: load(&self.tx_from_vf),
            switch_flush_timeouts: load(&self.switch_flush_timeouts),
            protocol_errors: load(&self.protocol_errors),
            last_error: misc.last_error.clone(),
            data_path_vf: self.data_path_vf.load(Ordering::Relaxed),
            data_path_switches: misc.data_path_switches.clone(),
            data_path_switches_total: misc.data_path_switches_total,
            vf_associations: load(&self.vf_associations),
            vf_ready_for_device: load(&self.vf_ready_for_device),
            channel_alive: !self.channel_dead.load(Ordering::Acquire),
            completions_outstanding: self.completions_outstanding.load(Ordering::Relaxed),
            packet_filter: self.packet_filter.load(Ordering::Relaxed),
            subchannels_open: self.subchannels_open.load(Ordering::Relaxed),
            control_messages: load(&self.control_messages),
            indications: load(&self.indications),
            tx_sends: load(&self.tx_sends),
            tx_completions: load(&self.tx_completions),
            tx_completions_dropped: load(&self.tx_completions_dropped),
            rx_completions: load(&self.rx_completions),
            reopens: load(&self.reopens),
            faults_injected: load(&self.faults_injected),
            rndis_halts: load(&self.rndis_halts),
            receive_buffer_revokes: load(&self.receive_buffer_revokes),
            send_buffer_revokes: load(&self.send_buffer_revokes),
            teardown: misc.teardown.clone(),
            data_path_vf_at_halt: misc.data_path_vf_at_halt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_history_is_bounded_and_the_total_exact() {
        let cell = StatsCell::default();
        for i in 0..(DATA_PATH_HISTORY + 36) {
            cell.record_switch(i % 2 == 0);
        }
        let stats = cell.snapshot();
        assert_eq!(stats.data_path_switches.len(), DATA_PATH_HISTORY);
        assert_eq!(
            stats.data_path_switches_total,
            DATA_PATH_HISTORY as u64 + 36
        );
        // The newest last: the final switch (index 99, odd) went to synthetic.
        assert_eq!(stats.data_path_switches.last(), Some(&false));
        assert_eq!(stats.data_path_switches.first(), Some(&true));
        assert!(!stats.data_path_vf);
    }

    #[test]
    fn the_teardown_history_is_bounded_and_each_step_counted() {
        let cell = StatsCell::default();
        for _ in 0..TEARDOWN_HISTORY {
            cell.record_teardown(TeardownStep::RndisHalt);
        }
        cell.record_teardown(TeardownStep::ReceiveBufferRevoked);
        cell.record_teardown(TeardownStep::SendBufferRevoked);
        let stats = cell.snapshot();
        assert_eq!(stats.teardown.len(), TEARDOWN_HISTORY);
        assert_eq!(
            stats.teardown[TEARDOWN_HISTORY - 2..],
            [
                TeardownStep::ReceiveBufferRevoked,
                TeardownStep::SendBufferRevoked
            ]
        );
        assert_eq!(
            (
                stats.rndis_halts,
                stats.receive_buffer_revokes,
                stats.send_buffer_revokes
            ),
            (TEARDOWN_HISTORY as u64, 1, 1)
        );
        assert_eq!(stats.data_path_vf_at_halt, Some(false));
        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(
            json["teardown"][TEARDOWN_HISTORY - 1],
            "send_buffer_revoked"
        );
        assert_eq!(json["rndis_halts"], TEARDOWN_HISTORY as u64);
    }
}
