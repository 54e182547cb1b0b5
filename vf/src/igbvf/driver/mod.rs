//! The igbvf driver: an 82576 virtual function behind [`crate::device::VfDevice`].
//!
//! Modules: [`IgbvfConfig`] and [`Clock`] here; `error` ([`IgbvfError`]); `mailbox_io` (the
//! `V2PMAILBOX` handshake performed on registers, bounded by the clock); `mac` (whose MAC the
//! VF uses); `queue`, `ring`, `rx` and `tx` (rings, [`IgbvfQueue`], the
//! [`crate::port::VfQueue`]);
//! `control` ([`Igbvf`], the [`crate::port::VfPort`]).
//!
//! Lifecycle: [`Igbvf::open`] resets the function (`CTRL.RST`), waits for the PF (`RESET`
//! handshake), adopts the PF's administrator MAC or, when the PF NACKs `RESET` because it has
//! none, sets its own ([`IgbvfConfig::mac`] or a random locally administered one) with
//! `SET_MAC_ADDR`, sends `SET_LPE` for jumbo MTUs, builds and programs the rings and the
//! interrupts, and returns the control handle and one [`IgbvfQueue`] per queue. The control
//! thread calls [`crate::port::VfPort::service`] periodically and after interrupts: it waits in
//! one `poll(2)` over the MSI-X and request eventfds, then polls the mailbox (the mailbox
//! interrupt may arrive on the wrong vector), link and presence, and re-initialises the
//! function in place after a PF reset (same MAC, multicast list and frame size). `stop`
//! quiesces the rings (waiting for their enable bits to clear); `release` gives the device
//! back; the queues hand out nothing afterwards.
//!
//! Invariants:
//! - the device is untrusted: every descriptor is copied out of DMA memory once, then
//!   validated by the `descriptors` parsers, then used; every register read is checked for
//!   all-ones before its bits are interpreted; every read of `V2PMAILBOX` goes through the
//!   [`MailboxProtocol`](crate::igbvf::mailbox::MailboxProtocol), which latches the
//!   read-to-clear bits;
//! - every wait is bounded by the configured timeouts, measured with a [`Clock`]; the one
//!   exception is `service`'s wait for an interrupt, which the kernel (or a model's thread)
//!   ends, bounded by the caller's timeout in real time. Deadlines are computed with
//!   [`packet::deadline::after`], so no timeout (a caller's `Duration::MAX` included) makes
//!   one panic;
//! - every frame `tx_burst` takes is either completed (`tx_packets`) or counted once in
//!   `tx_lost` (a PF reset, a removal, `stop` or `release`), after which `tx_pending` is 0;
//! - every frame the device writes back into an RX ring is handed out by `rx_burst`
//!   (`rx_packets`), counted once as dropped (`rx_no_buffer`, `rx_frame_errors`,
//!   `rx_descriptor_errors`, or `rx_dropped_reset` when a PF reset discards it unread), or
//!   still in the ring;
//! - a packet buffer belongs to exactly one owner at a time: the pool, the RX ring (posted to
//!   the device), the TX ring (between `tx_burst` and its `DD`), or the caller;
//! - each queue's state sits behind one uncontended lock taken once per burst (the control
//!   thread takes it only to reset, stop or release), never per packet; the hot path does not
//!   allocate.

mod control;
mod error;
mod mac;
mod mailbox_io;
mod queue;
mod ring;
mod rx;
mod tx;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod config_tests {
    use super::*;

    #[test]
    fn durations_beyond_their_maxima_are_refused_with_field_value_and_range() {
        let cases = [
            (
                IgbvfConfig {
                    mailbox_timeout: Duration::MAX,
                    ..IgbvfConfig::default()
                },
                ["mailbox_timeout", "18446744073709551615", "3600s"],
            ),
            (
                IgbvfConfig {
                    link_wait: Duration::from_secs(u64::MAX),
                    ..IgbvfConfig::default()
                },
                ["link_wait", "18446744073709551615s", "3600s"],
            ),
            (
                IgbvfConfig {
                    mailbox_timeout: MAX_MAILBOX_TIMEOUT + Duration::from_nanos(1),
                    ..IgbvfConfig::default()
                },
                ["mailbox_timeout", "3600.000000001s", "(0s, 3600s]"],
            ),
        ];
        for (config, parts) in cases {
            let message = config.validate().unwrap_err().to_string();
            for part in parts {
                assert!(message.contains(part), "{part:?} missing from {message:?}");
            }
        }
        let longest = IgbvfConfig {
            mailbox_timeout: MAX_MAILBOX_TIMEOUT,
            link_wait: MAX_LINK_WAIT,
            ..IgbvfConfig::default()
        };
        assert!(longest.validate().is_ok());
        let no_wait = IgbvfConfig {
            link_wait: Duration::ZERO,
            ..IgbvfConfig::default()
        };
        assert!(no_wait.validate().is_ok(), "a zero link wait is allowed");
    }
}

use std::fmt;
use std::time::{Duration, Instant};

use packet::MacAddr;

pub use control::Igbvf;
pub use error::IgbvfError;
pub use queue::{IgbvfQueue, QueueCounters};

use crate::igbvf::mailbox::MAX_FRAME_LIMIT;
use crate::igbvf::regs::srrctl_one_buffer;

/// Bytes a frame carries beyond the MTU on the wire as the PF counts it for `SET_LPE`:
/// Ethernet header, FCS and one VLAN tag (Linux igbvf `igbvf_set_rlpml`).
pub const FRAME_OVERHEAD: usize = 14 + 4 + 4;

/// Longest [`IgbvfConfig::mailbox_timeout`] accepted: an hour. Far beyond what a PF needs
/// (the default is a second), and small enough that every deadline the driver computes from it
/// fits an `Instant`.
pub const MAX_MAILBOX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Longest [`IgbvfConfig::link_wait`] accepted: an hour, for the same reasons.
pub const MAX_LINK_WAIT: Duration = Duration::from_secs(3600);

/// Settings of one igbvf port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgbvfConfig {
    /// Queue pairs, `1..=2`.
    pub queues: u16,
    /// Descriptors per ring, a power of two in `8..=4096` (the device wants a multiple of 8;
    /// the driver advances its ring indices with a mask).
    pub ring_size: u16,
    /// MTU in bytes (`68..=9000`); above 1500 the PF is asked for large frames (`SET_LPE`).
    pub mtu: usize,
    /// RX packet buffer size: a multiple of 1 KiB holding a whole frame (MTU +
    /// [`FRAME_OVERHEAD`]).
    pub rx_buf_size: usize,
    /// Budget of one mailbox exchange, and of the whole reset handshake with the PF (more
    /// than zero, at most [`MAX_MAILBOX_TIMEOUT`]).
    pub mailbox_timeout: Duration,
    /// Budget at open (and after a PF reset) for the queue enable bits to read back and, at
    /// open, for `STATUS.LU`; a link still down after it is not an error (at most
    /// [`MAX_LINK_WAIT`]).
    pub link_wait: Duration,
    /// The MAC to use when the PF has no administrator MAC for the VF (it NACKs `RESET`); a
    /// unicast address. `None`: a random locally administered one. When the PF has one, the
    /// PF's is used whatever this says (a differing value is logged at warn).
    pub mac: Option<MacAddr>,
}

impl Default for IgbvfConfig {
    fn default() -> Self {
        Self {
            queues: 1,
            ring_size: 256,
            mtu: 1500,
            rx_buf_size: 2048,
            mailbox_timeout: Duration::from_secs(1),
            link_wait: Duration::from_secs(1),
            mac: None,
        }
    }
}

fn config_error(field: &'static str, reason: String) -> IgbvfError {
    IgbvfError::Config { field, reason }
}

impl IgbvfConfig {
    /// Checks every field against what the 82576 VF and the buffer layout allow, and the
    /// durations against their maxima; the error names the field, its value and the range.
    pub fn validate(&self) -> Result<(), IgbvfError> {
        if !(1..=2).contains(&self.queues) {
            return Err(config_error(
                "queues",
                format!("{} not in 1..=2", self.queues),
            ));
        }
        if !(8..=4096).contains(&self.ring_size) || !self.ring_size.is_power_of_two() {
            return Err(config_error(
                "ring_size",
                format!("{} is not a power of two in 8..=4096", self.ring_size),
            ));
        }
        if !(68..=9000).contains(&self.mtu) {
            return Err(config_error(
                "mtu",
                format!("{} not in 68..=9000", self.mtu),
            ));
        }
        if let Err(e) = srrctl_one_buffer(self.rx_buf_size, true) {
            return Err(config_error("rx_buf_size", e.to_string()));
        }
        if self.max_frame() > self.rx_buf_size || self.max_frame() > MAX_FRAME_LIMIT as usize {
            return Err(config_error(
                "rx_buf_size",
                format!(
                    "{} cannot hold a {}-byte frame (mtu {})",
                    self.rx_buf_size,
                    self.max_frame(),
                    self.mtu
                ),
            ));
        }
        if let Some(mac) = self.mac
            && !crate::igbvf::mailbox::is_valid_unicast(&mac.0)
        {
            return Err(config_error(
                "mac",
                format!("{mac} is not a unicast address"),
            ));
        }
        if self.mailbox_timeout.is_zero() || self.mailbox_timeout > MAX_MAILBOX_TIMEOUT {
            return Err(config_error(
                "mailbox_timeout",
                format!(
                    "{:?} not in (0s, {MAX_MAILBOX_TIMEOUT:?}]",
                    self.mailbox_timeout
                ),
            ));
        }
        if self.link_wait > MAX_LINK_WAIT {
            return Err(config_error(
                "link_wait",
                format!("{:?} not in [0s, {MAX_LINK_WAIT:?}]", self.link_wait),
            ));
        }
        Ok(())
    }

    /// Largest frame on the wire, FCS and one VLAN tag included (the `SET_LPE` value).
    pub fn max_frame(&self) -> usize {
        self.mtu + FRAME_OVERHEAD
    }

    /// Largest frame `tx_burst` accepts (header plus MTU; the device appends the FCS).
    pub fn max_tx_frame(&self) -> usize {
        self.mtu + 14
    }
}

/// Time as an input: where the driver gets "now" and how it pauses between register polls.
///
/// [`SystemClock`] is the real one; tests supply a clock whose `pause` advances a virtual
/// time, so every bounded wait ends without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Waits about `duration` before the next poll of a register.
    fn pause(&self, duration: Duration);
}

/// The wall clock: [`Instant::now`] and [`std::thread::sleep`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn pause(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}
