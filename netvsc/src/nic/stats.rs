//! Counters: [`QueueStats`] per queue (plain `u64`s updated by whoever holds the queue, never
//! per-packet atomics or metric calls) and [`NicStats`], a snapshot of all of them plus the
//! control plane's counters.

/// Counters of one queue. A snapshot: cloning copies the values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames delivered to the application (or staged for it).
    pub rx_packets: u64,
    /// Bytes of those frames.
    pub rx_bytes: u64,
    /// Frames handed to the host (sent).
    pub tx_packets: u64,
    /// Bytes of those frames.
    pub tx_bytes: u64,
    /// Frames sent through a send-buffer section.
    pub tx_send_buffer: u64,
    /// Frames sent GPA direct.
    pub tx_gpa_direct: u64,
    /// Sends the host completed with a status other than success, plus sends (send-section
    /// and GPA-direct) in flight when the session was dropped: the host never completed them,
    /// so whether it sent them is unknown (resources are freed either way).
    pub tx_failed: u64,
    /// Bursts that stopped because the outgoing ring was full.
    pub tx_ring_full: u64,
    /// Frames that found no free send section (they went GPA direct if they could).
    pub tx_no_section: u64,
    /// Bursts that stopped at the host's limit of outstanding sends per channel.
    pub tx_quota_full: u64,
    /// Frames taken but dropped because they can never be sent (empty, larger than the MTU
    /// allows, or not sendable on this device); counted, not retried.
    pub tx_dropped: u64,
    /// Receive messages dropped because the host sent them malformed (bad range, bad RNDIS
    /// header); their transfer-page packet is completed anyway.
    pub rx_dropped_malformed: u64,
    /// Frames dropped because the pool had no free buffer.
    pub rx_dropped_no_buffer: u64,
    /// Frames dropped because the queue's staging list was full (frames read while nobody
    /// called `rx_burst`).
    pub rx_dropped_overflow: u64,
    /// Receive completions that did not fit the ring at once and were retried later.
    pub rx_completions_deferred: u64,
    /// Reads of the incoming ring that stopped because the backlog of receive completions
    /// waiting for room in the outgoing ring was full: the host sends transfer-page packets
    /// but does not read the guest's ring. Its packets stay in the ring (back-pressure, none
    /// is dropped) until it reads again.
    pub rx_completion_backlog_full: u64,
    /// Completions whose transaction id matches no outstanding send (duplicates, strays).
    pub unknown_completions: u64,
    /// Host NVSP messages of a type the guest does not handle (ignored).
    pub unknown_messages: u64,
    /// RNDIS control messages (completions, indications) read on this queue.
    pub rx_control_messages: u64,
}

/// A snapshot of every counter of the NIC.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Per-queue counters, index = queue.
    pub queues: Vec<QueueStats>,
    /// Control requests sent (NVSP and RNDIS).
    pub control_requests: u64,
    /// Control requests that timed out.
    pub control_timeouts: u64,
    /// Control-channel completions that matched no outstanding request.
    pub control_unknown_completions: u64,
    /// RNDIS replies that arrived after their request gave up, or matched none.
    pub control_late_responses: u64,
    /// Events dropped because nobody read them and the queue was full.
    pub events_dropped: u64,
    /// Sessions re-established.
    pub reestablished: u64,
}
