//! The face every port has: per-queue bursts of [`Packet`]s.
//!
//! A port (the synthetic NIC, a VF, the failover port) splits into one control handle, used by
//! the control thread, and one queue handle per queue, each owned by exactly one polling thread.
//! Queue handles implement [`PortQueue`]; an application, a forwarder or a TAP bridge sees only
//! this trait.

use crate::Packet;

/// One queue pair of a port, polled by one thread.
pub trait PortQueue: Send {
    /// Moves up to `max` received frames to the end of `out`; returns how many were added.
    /// Never blocks.
    fn rx_burst(&mut self, out: &mut Vec<Packet>, max: usize) -> usize;

    /// Takes frames from the front of `frames` for transmission and returns how many it took.
    /// Frames it did not take stay in `frames`, in order, for the caller to retry or drop (and
    /// count). Never blocks. Every frame taken is sent or reported in the port's counters.
    fn tx_burst(&mut self, frames: &mut Vec<Packet>) -> usize;
}
