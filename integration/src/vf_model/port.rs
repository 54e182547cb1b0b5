//! The model's port to the outside: the in-memory wire, the uplink, the counters, and the
//! model as a vSwitch port.
//!
//! The wire has two directions. Frames the device transmits are queued for the test to take
//! with `VfModelControl::recv_frame` (or, with an uplink, handed to a [`FrameSink`] such as
//! the simulated host's [`VfUplink`]); frames the test injects (or the vSwitch delivers
//! through [`VfWire`]) wait in a receive backlog until the DMA engine delivers (or drops)
//! them. Both queues are bounded: a full queue drops and counts, it never blocks the device.
//! The uplink is called under the device lock (see the lock order in the parent module).

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use vf::igbvf::regs::rxdctl;

use super::VfModelControl;
use crate::host::{VfUplink, VfWire};

/// Where a VF's transmitted frames go instead of the in-memory wire.
///
/// Called by the device's DMA thread under the device lock, before the descriptor's `DD`
/// write-back: an implementation must not block for long and must never call back into the
/// same model (no [`VfWire`] of it, no `VfModelControl` method).
pub trait FrameSink: Send + Sync + std::fmt::Debug {
    /// Takes `frame`, transmitted on TX queue `queue`.
    fn transmit(&self, queue: u16, frame: &[u8]);
}

impl FrameSink for VfUplink {
    fn transmit(&self, queue: u16, frame: &[u8]) {
        VfUplink::transmit(self, queue, frame);
    }
}

impl VfWire for VfModelControl {
    /// [`VfModelControl::inject`], but a function that is gone, released, not enabled by the
    /// PF or whose link is down refuses the frame (counted in `rx_refused`) and says so: the
    /// switch counts the loss (`rx_dropped_vf`).
    fn deliver(&self, queue: u16, frame: &[u8]) -> bool {
        self.with_state(|f| {
            if !f.alive()
                || !f.link_up
                || !f.mbx.state.vf_enabled
                || f.wire.rx_backlog.len() >= WIRE_CAPACITY
            {
                f.stats.rx_refused += 1;
                false
            } else {
                f.wire.rx_backlog.push_back((queue, frame.to_vec()));
                true
            }
        })
    }

    /// Receive descriptors the driver posted on `queue` that no frame on the wire is already
    /// headed for: how many frames the queue takes now without a drop. 0 while the function
    /// is gone, released, not enabled, its link down or the queue disabled.
    fn room(&self, queue: u16) -> usize {
        self.with_state(|f| {
            let q = usize::from(queue);
            if !f.alive() || !f.mbx.state.vf_enabled || !f.link_up || q >= f.queues {
                return 0;
            }
            let ring = &f.rx[q];
            let count = ring.count();
            if ring.ctl & rxdctl::ENABLE == 0 || ring.halted || count == 0 {
                return 0;
            }
            let posted = (ring.tail + count - ring.head.min(count)) % count;
            let waiting = f
                .wire
                .rx_backlog
                .iter()
                .filter(|(b, _)| *b == queue)
                .count();
            (posted as usize).saturating_sub(waiting)
        })
    }

    fn flush(&self, timeout: Duration) -> bool {
        self.wait_rx_drained(timeout)
    }

    fn queues(&self) -> u16 {
        self.inner.state.lock().queues as u16
    }
}

/// Most frames the wire holds in each direction before it drops.
pub(super) const WIRE_CAPACITY: usize = 65_536;

/// The in-memory wire.
#[derive(Debug, Default)]
pub(super) struct Wire {
    /// Frames the device transmitted: (queue, frame), oldest first.
    pub tx: VecDeque<(u16, Vec<u8>)>,
    /// Frames injected by the test, waiting for the DMA engine: (queue, frame).
    pub rx_backlog: VecDeque<(u16, Vec<u8>)>,
}

/// Mailbox messages the PF saw or sent, by type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MailboxStats {
    /// `RESET` requests.
    pub reset: u64,
    /// `SET_MAC_ADDR` requests.
    pub set_mac_addr: u64,
    /// `SET_MULTICAST` requests.
    pub set_multicast: u64,
    /// `SET_VLAN` requests.
    pub set_vlan: u64,
    /// `SET_LPE` requests.
    pub set_lpe: u64,
    /// Requests of any other type (or malformed words).
    pub other: u64,
    /// Words the VF posted that already carried ACK or NACK (ignored, as Linux igb does).
    pub ignored: u64,
    /// Replies with `ACK`.
    pub acked: u64,
    /// Replies with `NACK`.
    pub nacked: u64,
    /// `PF_CONTROL_MSG` notifications posted (link change, PF reset done).
    pub pf_control: u64,
    /// Bare `NACK`s posted after a PF reset, until the VF redoes `RESET`.
    pub pf_nack: u64,
}

/// Counters of the model, as the test sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VfModelStats {
    /// Frames the device transmitted (put on the wire or dropped there).
    pub tx_frames: u64,
    /// Bytes of those frames (no FCS).
    pub tx_bytes: u64,
    /// Transmitted frames dropped because the link was down or the wire was full.
    pub tx_wire_dropped: u64,
    /// Frames written into RX buffers.
    pub rx_frames: u64,
    /// Bytes of those frames (no FCS).
    pub rx_bytes: u64,
    /// Injected frames dropped because no RX descriptor was owned by the device.
    pub rx_no_descriptor: u64,
    /// Injected frames dropped because they exceed the queue's `SRRCTL` buffer size.
    pub rx_oversize: u64,
    /// Injected frames dropped because the queue does not exist or is disabled, the driver
    /// released the device, or the wire's receive backlog was full.
    pub rx_dropped_disabled: u64,
    /// Injected frames dropped because the PF has not enabled the VF: a PF reset is under way,
    /// or the VF has not redone the `RESET` handshake since one.
    pub rx_dropped_reset: u64,
    /// Injected frames dropped because the link was down.
    pub rx_dropped_link_down: u64,
    /// Injected frames dropped because the device was gone (surprise removal): those waiting
    /// on the wire when it vanished.
    pub rx_dropped_gone: u64,
    /// Frames the vSwitch delivered ([`VfWire::deliver`]) that the function refused at once
    /// (gone, released, not enabled, link down or its wire full); the switch counts them too.
    /// Not in any `rx_dropped_*` counter.
    pub rx_refused: u64,
    /// Injected frames that are empty or longer than any frame a wire carries.
    pub rx_dropped_invalid: u64,
    /// Things a device would refuse: a bad descriptor, address or length, a tail beyond the
    /// ring. Each stops the queue until it is disabled or the function reset.
    pub device_errors: u64,
    /// What the last device error was, for diagnostics.
    pub last_device_error: Option<String>,
    /// RX write-backs deliberately corrupted by `inject_bad_writeback`.
    pub bad_writebacks: u64,
    /// MSI-X messages sent (eventfd signals).
    pub interrupts: u64,
    /// `CTRL.RST` and function-level resets of the VF.
    pub vf_resets: u64,
    /// PF resets injected.
    pub pf_resets: u64,
    /// Device-request signals sent.
    pub release_requests: u64,
    /// Mailbox traffic.
    pub mailbox: MailboxStats,
}

/// What the PF currently holds for this VF.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PfState {
    /// Whether the VF is clear to send (it completed `RESET` since its last reset).
    pub cts: bool,
    /// Whether the PF enabled the VF's transmit and receive (`VFTE`/`VFRE`).
    pub vf_enabled: bool,
    /// The MAC the VF uses: the administrator's, or the one it set when there is none.
    pub mac: [u8; 6],
    /// Max frame size from the last accepted `SET_LPE`.
    pub max_frame: u32,
    /// Multicast hashes from the last `SET_MULTICAST`.
    pub multicast: Vec<u16>,
    /// VLAN filters set with `SET_VLAN`.
    pub vlans: BTreeSet<u16>,
}
