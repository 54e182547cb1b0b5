//! [`NicError`]: everything a [`SyntheticNic`](super::SyntheticNic) call can fail with.

use std::time::Duration;

use packet::MemError;

use crate::nvsp::NvspError;
use crate::rndis::RndisError;
use crate::vmbus::{DeviceError, RingError};

/// An error of the synthetic NIC. Variants carry the queue, message type or transaction id
/// involved where there is one.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    /// The configuration is invalid.
    #[error("invalid nic configuration: {0}")]
    Config(String),
    /// A bounded wait ran out (the host did not answer in time). A watchdog may
    /// [`reestablish`](super::SyntheticNic::reestablish) the session.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The bound that ran out.
        timeout: Duration,
    },
    /// The host sent something the protocol does not allow here.
    #[error("protocol violation on queue {queue} (message type {msg_type:#x}): {reason}")]
    Protocol {
        /// Queue (channel) it arrived on.
        queue: u16,
        /// NVSP or RNDIS message type involved (0 if none).
        msg_type: u32,
        /// What is wrong.
        reason: String,
    },
    /// An NVSP message from the host could not be parsed or used.
    #[error("nvsp reply to {what} (transaction id {tid:#x})")]
    Nvsp {
        /// The request it answered.
        what: &'static str,
        /// Transaction id of the request.
        tid: u64,
        /// The parse or validation error.
        #[source]
        source: NvspError,
    },
    /// An RNDIS message could not be built or the host's reply could not be parsed.
    #[error("rndis {what} (request id {request_id})")]
    Rndis {
        /// The request.
        what: &'static str,
        /// RNDIS request id (0 if none).
        request_id: u32,
        /// The parse or encode error.
        #[source]
        source: RndisError,
    },
    /// The device backend failed.
    #[error("device")]
    Device(#[from] DeviceError),
    /// A ring of a queue failed (other than being full).
    #[error("ring of queue {queue}")]
    Ring {
        /// The queue.
        queue: u16,
        /// The ring error.
        #[source]
        source: RingError,
    },
    /// The packet pool could not be created.
    #[error("packet pool")]
    Memory(#[from] MemError),
    /// The host answered a request with a failure status.
    #[error("host refused {what} with status {status:#x}")]
    HostRefused {
        /// The request.
        what: &'static str,
        /// The NVSP or NDIS status the host sent.
        status: u32,
    },
    /// The host accepts none of the NVSP versions offered.
    #[error("host supports no nvsp version up to {max:#x}")]
    UnsupportedVersion {
        /// Highest version offered.
        max: u32,
    },
    /// The request needs a newer NVSP version than the one negotiated.
    #[error("{what} needs nvsp version {needed:#x}, negotiated {negotiated:#x}")]
    NotSupported {
        /// The request.
        what: &'static str,
        /// The version it needs.
        needed: u32,
        /// The version in use.
        negotiated: u32,
    },
    /// Every control send section is still held by the host (earlier requests were never
    /// answered); re-establish the session.
    #[error("no control send section is free")]
    NoControlSection,
    /// The channel is dead (corrupt ring, host closed it, or a re-establish failed); control
    /// calls fail with this until [`reestablish`](super::SyntheticNic::reestablish) succeeds.
    #[error("the host channel is dead; re-establish the session")]
    ChannelDead,
    /// The NIC was closed ([`close`](super::SyntheticNic::close)): every control call fails
    /// with this, and the session cannot be re-established.
    #[error("the nic is closed")]
    Closed,
}
