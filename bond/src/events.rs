//! What the failover port reports: [`FailoverEvent`]s, [`SwitchReason`]s and
//! [`FailoverStats`].

use std::time::Duration;

use crate::queue::FailoverQueueStats;

/// Where the port's data path is (DESIGN §4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PortState {
    /// No VF in use: everything goes through VMBus.
    #[default]
    Synthetic,
    /// A VF is bound and its queues started, but the data path is still synthetic (its link is
    /// down, it is resetting, or the host refused the last switch).
    VfAttaching,
    /// NVSP 129 {VF} was sent; waiting for its completion.
    SwitchingToVf,
    /// Transmit goes to the VF; receive polls both paths.
    OnVf,
    /// Leaving the VF: transmit moved back, the VF is being drained.
    SwitchingToSynthetic,
}

/// Why the port left the VF.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SwitchReason {
    /// The VFIO device-request IRQ: the host wants the device back (planned eject).
    ReleaseRequested,
    /// Host NVSP 128 {allocated = 0}.
    AssociationRemoved,
    /// Host NVSP 129 {synthetic}: the host moved the data path (or refused the switch).
    HostSwitched,
    /// The VF's link went down.
    LinkDown,
    /// The PF reset the VF in place (service reset).
    VfReset,
    /// The device is gone (MMIO reads all ones): surprise removal.
    Removed,
    /// The port is closing.
    Shutdown,
    /// The watchdog re-established the host session, whose data path starts synthetic: the
    /// port leaves the VF in order and switches to it again.
    SessionReestablished,
}

impl SwitchReason {
    /// Every reason, in the order [`SwitchCounts`] lists them.
    pub const ALL: [SwitchReason; 8] = [
        SwitchReason::ReleaseRequested,
        SwitchReason::AssociationRemoved,
        SwitchReason::HostSwitched,
        SwitchReason::LinkDown,
        SwitchReason::VfReset,
        SwitchReason::Removed,
        SwitchReason::Shutdown,
        SwitchReason::SessionReestablished,
    ];

    /// A short name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SwitchReason::ReleaseRequested => "release_requested",
            SwitchReason::AssociationRemoved => "association_removed",
            SwitchReason::HostSwitched => "host_switched",
            SwitchReason::LinkDown => "link_down",
            SwitchReason::VfReset => "vf_reset",
            SwitchReason::Removed => "removed",
            SwitchReason::Shutdown => "shutdown",
            SwitchReason::SessionReestablished => "session_reestablished",
        }
    }

    /// Whether the VF's rings were dead when the port left them (frames in them are lost).
    pub fn is_surprise(self) -> bool {
        matches!(self, SwitchReason::Removed | SwitchReason::VfReset)
    }
}

/// Switches back to synthetic, by reason.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SwitchCounts(pub [u64; 8]);

impl SwitchCounts {
    /// The count for `reason`.
    pub fn get(&self, reason: SwitchReason) -> u64 {
        self.0[reason as usize]
    }

    pub(crate) fn bump(&mut self, reason: SwitchReason) {
        self.0[reason as usize] += 1;
    }

    /// The sum over every reason.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// Something the failover port did, for telemetry and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FailoverEvent {
    /// Host NVSP 128 {allocated = 1}: a VF is coming.
    VfAssociated {
        /// The association serial (the VF's PCI slot).
        serial: u32,
    },
    /// The VF was found, bound and opened; its MAC matches the port's.
    VfAttached {
        /// The association serial.
        serial: u32,
        /// The device's name (its PCI address).
        device: String,
    },
    /// Looking for or opening the VF failed: it is retried until `vf_appear_timeout`, except a
    /// VF hvnet has no driver for (`ProbeError::Unsupported`), which is reported once and left
    /// to its kernel driver.
    VfAttachFailed {
        /// The association serial.
        serial: u32,
        /// What went wrong.
        error: String,
    },
    /// The data path moved to the VF.
    SwitchedToVf {
        /// From the decision to switch until every poller transmits on the VF.
        duration: Duration,
    },
    /// The data path moved back to synthetic.
    SwitchedToSynthetic {
        /// Why.
        reason: SwitchReason,
        /// From the trigger until every poller transmits on synthetic (the failover).
        failover: Duration,
        /// From the trigger until the VF was drained (and released, if it was).
        complete: Duration,
    },
    /// The host took the data path back right after the port switched to the VF; the port
    /// stays synthetic until the VF's link or the association changes.
    SwitchRefused,
    /// The VF was stopped and released (the host's eject can complete).
    VfReleased {
        /// The association serial.
        serial: u32,
        /// Why.
        reason: SwitchReason,
        /// Frames the VF had accepted for transmit and never sent.
        tx_lost: u64,
    },
    /// The watchdog found the host channel dead and re-established the session.
    SessionReestablished {
        /// How long re-establishing took.
        duration: Duration,
    },
    /// The watchdog could not re-establish the session (it retries).
    SessionLost {
        /// What went wrong.
        error: String,
    },
}

/// Counters of a failover port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailoverStats {
    /// Where the data path is.
    pub state: PortState,
    /// The VF in use, if any (its PCI address).
    pub vf: Option<String>,
    /// The VF's link, as last reported (`None` without a VF).
    pub vf_link_up: Option<bool>,
    /// Switches to the VF.
    pub switches_to_vf: u64,
    /// Switches back to synthetic, by reason.
    pub switches_to_synthetic: SwitchCounts,
    /// Switches the host took back at once (NVSP 129 {synthetic} while on the VF).
    pub switches_refused: u64,
    /// NVSP 129 requests that failed or timed out.
    pub switch_errors: u64,
    /// VFs attached.
    pub vf_attached: u64,
    /// VFs released.
    pub vf_released: u64,
    /// Failed looks for or opens of a VF.
    pub vf_attach_errors: u64,
    /// Associated VFs hvnet has no driver for (their vendor:device is not supported): left on
    /// their kernel driver, untouched, while the port stays synthetic. Counted once per
    /// association.
    pub vf_unsupported: u64,
    /// VFs found whose MAC is not the port's (released, not used).
    pub vf_mac_mismatches: u64,
    /// Associations whose VF did not appear within `vf_appear_timeout`.
    pub vf_appear_timeouts: u64,
    /// VFs given up because they did not come back from a reset within `vf_reset_timeout`.
    pub vf_reset_timeouts: u64,
    /// Frames lost: accepted by a VF for transmit and never sent (surprise removal, reset).
    pub lost_vf_tx: u64,
    /// Waits for pollers that ran out (a queue handle that is not polled).
    pub ack_timeouts: u64,
    /// Drains of the VF's receive rings that ran out.
    pub drain_timeouts: u64,
    /// Sessions the watchdog re-established.
    pub watchdog_reestablished: u64,
    /// Keepalives or re-establishments that failed.
    pub watchdog_failures: u64,
    /// The last failover's duration (trigger to transmit on synthetic).
    pub last_failover: Option<Duration>,
    /// The last switch to the VF's duration.
    pub last_failback: Option<Duration>,
    /// Per-queue counters.
    pub queues: Vec<FailoverQueueStats>,
}
