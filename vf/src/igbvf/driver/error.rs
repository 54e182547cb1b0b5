//! The driver's error type: every variant names the device, and the queue or register or
//! mailbox request involved.

use std::time::Duration;

use packet::{MacAddr, MemError};

use crate::device::DeviceError;
use crate::igbvf::mailbox::{MacAddress, MailboxError, MessageType};
use crate::igbvf::regs::RegisterError;

/// Errors of the igbvf driver.
#[derive(Debug, thiserror::Error)]
pub enum IgbvfError {
    /// The configuration is unusable.
    #[error("invalid igbvf config: {field}: {reason}")]
    Config {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A device operation failed.
    #[error("{device}: {op}")]
    Device {
        /// The device.
        device: String,
        /// What was being done.
        op: &'static str,
        /// The device-layer error.
        #[source]
        source: DeviceError,
    },
    /// Ring or buffer memory could not be set up.
    #[error("{device}: queue {queue}: {op}")]
    Memory {
        /// The device.
        device: String,
        /// The queue.
        queue: u8,
        /// What was being done.
        op: &'static str,
        /// The memory error.
        #[source]
        source: MemError,
    },
    /// A register read all ones: the device is gone.
    #[error("{device}: register {register:#06x} reads all ones (device removed)")]
    Removed {
        /// The device.
        device: String,
        /// The register read.
        register: u32,
    },
    /// A mailbox exchange did not finish in time.
    #[error("{device}: mailbox {request:?} timed out after {timeout:?}")]
    MailboxTimeout {
        /// The device.
        device: String,
        /// The request in flight.
        request: MessageType,
        /// The budget.
        timeout: Duration,
    },
    /// The PF reset the function in the middle of an exchange.
    #[error("{device}: pf reset during mailbox {request:?}")]
    PfReset {
        /// The device.
        device: String,
        /// The request in flight.
        request: MessageType,
    },
    /// A request could not be encoded or the PF's answer was malformed or a refusal.
    #[error("{device}: mailbox {request:?}")]
    Mailbox {
        /// The device.
        device: String,
        /// The request.
        request: MessageType,
        /// What went wrong.
        #[source]
        source: MailboxError,
    },
    /// The PF has no administrator MAC for the VF and refused the one the driver chose
    /// (`SET_MAC_ADDR` NACKed).
    #[error("{device}: pf has no mac for the vf and refused {}", MacAddr(*mac))]
    MacRejected {
        /// The device.
        device: String,
        /// The MAC the driver asked for.
        mac: MacAddress,
    },
    /// The PF has no administrator MAC, none is configured, and no random one could be made.
    #[error("{device}: cannot generate a random mac")]
    RandomMac {
        /// The device.
        device: String,
        /// Why `/dev/urandom` could not be read.
        #[source]
        source: std::io::Error,
    },
    /// A register value could not be built.
    #[error("{device}: register {register:#06x}")]
    Register {
        /// The device.
        device: String,
        /// The register.
        register: u32,
        /// Why.
        #[source]
        source: RegisterError,
    },
    /// A queue enable bit did not read back as written in time.
    #[error("{device}: queue {queue}: register {register:#06x} did not read back {expected:#010x}")]
    QueueEnable {
        /// The device.
        device: String,
        /// The queue.
        queue: u8,
        /// The control register.
        register: u32,
        /// The bits expected.
        expected: u32,
    },
}
