//! [`NvspError`]: everything that can be wrong with an NVSP message.

/// An NVSP message that cannot be parsed, emitted or used.
///
/// Parsing errors carry the message type and the lengths involved; none of them is fatal by
/// itself: the caller decides (a guest typically logs, counts and resets the channel).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvspError {
    /// Fewer than 4 bytes: not even a message type.
    #[error("nvsp message of {len} bytes has no 4-byte message type")]
    NoMessageType {
        /// Bytes available.
        len: usize,
    },
    /// Shorter than the message type needs.
    #[error("nvsp message type {msg_type} is {len} bytes, shorter than its minimum of {min}")]
    Truncated {
        /// The message type.
        msg_type: u32,
        /// Bytes available.
        len: usize,
        /// Bytes the type needs.
        min: usize,
    },
    /// The output buffer is too small for the message.
    #[error("nvsp message type {msg_type} needs {needed} bytes, the output buffer has {available}")]
    BufferTooSmall {
        /// The message type.
        msg_type: u32,
        /// Bytes needed (including padding).
        needed: usize,
        /// Bytes in the output buffer.
        available: usize,
    },
    /// A table or list too long to describe in the message's `u32` fields.
    #[error("nvsp message type {msg_type} cannot describe {count} entries")]
    TooManyEntries {
        /// The message type.
        msg_type: u32,
        /// Entries given.
        count: usize,
    },
    /// SEND_INDIRECTION_TABLE with a count other than 16.
    #[error("send indirection table has {count} entries, expected 16")]
    IndirectionTableCount {
        /// The count the host sent.
        count: u32,
    },
    /// SEND_INDIRECTION_TABLE whose table does not fit in the message.
    #[error(
        "send indirection table of {count} entries at offset {offset} lies outside the {len}-byte message"
    )]
    IndirectionTableOutOfBounds {
        /// Entries.
        count: u32,
        /// Offset used (after the legacy fix-up, if it applied).
        offset: u64,
        /// Message length.
        len: usize,
    },
    /// SEND_RECEIVE_BUFFER_COMPLETE with a status other than success.
    #[error("receive buffer refused by the host with nvsp status {status}")]
    ReceiveBufferStatus {
        /// The status the host sent.
        status: u32,
    },
    /// SEND_RECEIVE_BUFFER_COMPLETE with a section count other than one.
    #[error("receive buffer completion lists {num_sections} sections, expected 1")]
    ReceiveBufferSectionCount {
        /// The count the host sent.
        num_sections: u32,
    },
    /// A receive-buffer section that does not start at offset 0.
    #[error("receive buffer section starts at offset {offset}, expected 0")]
    ReceiveBufferSectionOffset {
        /// The offset the host sent.
        offset: u32,
    },
    /// A sub-allocation size below the 68-byte minimum, or no sub-allocations at all.
    #[error("receive buffer section of {count} sub-allocations of {size} bytes is unusable")]
    ReceiveBufferSubAllocation {
        /// Sub-allocation size.
        size: u32,
        /// Sub-allocation count.
        count: u32,
    },
    /// Sub-allocations that reach past the end of the receive buffer.
    #[error(
        "receive buffer section of {count} sub-allocations of {size} bytes exceeds the {buffer_size}-byte buffer"
    )]
    ReceiveBufferOverflow {
        /// Sub-allocation size.
        size: u32,
        /// Sub-allocation count.
        count: u32,
        /// Size of the guest's receive buffer.
        buffer_size: usize,
    },
}
