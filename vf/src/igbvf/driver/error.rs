//! The driver's error type: every variant names the device, and the queue or register or
//! mailbox request involved.

use std::time::Duration;

use packet::MemError;

use crate::device::DeviceError;
use crate::igbvf::mailbox::{MailboxError, MessageType};
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
    /// The PF kept refusing `RESET` (not ready, or no MAC assigned) for the whole budget.
    #[error("{device}: pf did not assign a mac within {timeout:?}")]
    NoMac {
        /// The device.
        device: String,
        /// The budget.
        timeout: Duration,
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
