//! The face of a VF port that `bond` drives, whatever the device behind it.
//!
//! Like every port in hvnet (see `packet::PortQueue`), a VF port splits into one control handle
//! ([`VfPort`], used by the control thread) and one queue handle per queue (a [`VfQueue`]: a
//! `packet::PortQueue` that also reports its index and its transmits in flight, owned by
//! exactly one poller). Queue *i* of the VF serves queue *i* of the failover port.
//!
//! Lifecycle: a driver's `open` resets the function, negotiates with the PF, sets up the
//! rings and returns the control handle and the queues; [`VfPort::service`] is called by the
//! control thread periodically and after every interrupt (mailbox, link, PF reset, removal)
//! and turns what it finds into [`VfEvent`]s; [`VfPort::stop`] quiesces the rings (no new
//! receives, transmits drained or reported) so a planned removal loses nothing; and
//! [`VfPort::release`] gives every device resource back (DMA, interrupts, BAR mappings, the
//! device fd), which is what lets the host's eject complete.

use std::fmt::Debug;
use std::time::Duration;

use packet::MacAddr;

/// One queue pair of a VF port, as the failover port drives it.
pub trait VfQueue: packet::PortQueue + Debug {
    /// The queue's index.
    fn index(&self) -> u16;

    /// Reclaims completed transmits and returns how many frames `tx_burst` took that the
    /// device has not completed yet. 0 once the queue is stopped, reset or gone and its
    /// in-flight frames were counted as lost (`tx_lost`) — never a number that can stay above
    /// 0 forever.
    fn tx_pending(&mut self) -> usize;
}

/// Something the VF or its PF did that the control thread must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VfEvent {
    /// The VF's link came up.
    LinkUp,
    /// The VF's link went down.
    LinkDown,
    /// The PF reset the function (in-place service reset): the rings stopped; the driver
    /// re-initialises and reports [`VfEvent::ResetComplete`] when traffic can resume.
    PfReset,
    /// The function is usable again after a reset, with the same MAC.
    ResetComplete,
    /// The device is gone (MMIO reads return all ones): surprise removal.
    Removed,
    /// The host asked for the device back (the VFIO device-request IRQ): a planned eject.
    ReleaseRequested,
}

/// Counters of a VF port, summed over its queues and read from the hardware.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VfPortStats {
    /// Frames received, per the driver.
    pub rx_packets: u64,
    /// Bytes received, per the driver.
    pub rx_bytes: u64,
    /// Frames sent (completed by the device), per the driver.
    pub tx_packets: u64,
    /// Bytes sent, per the driver.
    pub tx_bytes: u64,
    /// Receive descriptors the device wrote back with values it should never produce.
    pub rx_descriptor_errors: u64,
    /// Frames the device flagged as errored (CRC, length…), dropped.
    pub rx_frame_errors: u64,
    /// Frames received while no buffer was free, dropped.
    pub rx_no_buffer: u64,
    /// Frames the device had written into the receive rings that a PF reset (an in-place
    /// reset of the function) discarded before the driver handed them out. With
    /// `rx_packets`, `rx_no_buffer`, `rx_frame_errors` and `rx_descriptor_errors` it accounts
    /// for every frame the device wrote; what is in none of them is still in the rings.
    pub rx_dropped_reset: u64,
    /// Frames taken by `tx_burst` and never completed, each counted once: the device went
    /// away, the PF reset the function, or `stop`/`release` ran out of time.
    pub tx_lost: u64,
    /// Good packets received, per the hardware counters (VFGPRC).
    pub hw_rx_packets: u64,
    /// Good packets sent, per the hardware counters (VFGPTC).
    pub hw_tx_packets: u64,
}

impl VfPortStats {
    /// Adds `other`'s counters to these (the totals of several VFs one after another).
    pub fn add(&mut self, other: &VfPortStats) {
        self.rx_packets += other.rx_packets;
        self.rx_bytes += other.rx_bytes;
        self.tx_packets += other.tx_packets;
        self.tx_bytes += other.tx_bytes;
        self.rx_descriptor_errors += other.rx_descriptor_errors;
        self.rx_frame_errors += other.rx_frame_errors;
        self.rx_no_buffer += other.rx_no_buffer;
        self.rx_dropped_reset += other.rx_dropped_reset;
        self.tx_lost += other.tx_lost;
        self.hw_rx_packets += other.hw_rx_packets;
        self.hw_tx_packets += other.hw_tx_packets;
    }
}

/// The control handle of a VF port.
pub trait VfPort: Send + Sync + Debug {
    /// The MAC address in use: the PF's administrator MAC, or, when the PF has none, the one
    /// the driver chose and the PF accepted.
    fn mac(&self) -> MacAddr;

    /// Whether the link is up, as of the last [`service`](Self::service).
    fn link_up(&self) -> bool;

    /// Number of queues the port was opened with.
    fn queue_count(&self) -> u16;

    /// Polls the mailbox, link, reset and removal state and the request IRQ, waiting at most
    /// `timeout` for an interrupt first (a zero `timeout` does not block); returns what
    /// happened, oldest first.
    fn service(&self, timeout: Duration) -> Vec<VfEvent>;

    /// Quiesces every queue: receive stops, frames already accepted by `tx_burst` are sent
    /// (waiting at most `timeout`) or counted as lost, queues hand out nothing afterwards and
    /// their [`VfQueue::tx_pending`] is 0.
    fn stop(&self, timeout: Duration) -> Result<(), crate::device::DeviceError>;

    /// Gives every device resource back. The port and its queues are unusable afterwards;
    /// frames still in flight are counted as lost.
    fn release(&self) -> Result<(), crate::device::DeviceError>;

    /// Counters, summed over queues.
    fn stats(&self) -> VfPortStats;
}
