//! [`RndisError`]: everything that can be wrong with an RNDIS message or NDIS object.

/// An RNDIS message or NDIS object that cannot be parsed or encoded.
///
/// Variants carry the message type (or object type) and the offsets and lengths involved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RndisError {
    /// Fewer than 8 bytes: not even a message header.
    #[error("rndis message of {len} bytes has no 8-byte header")]
    NoHeader {
        /// Bytes available.
        len: usize,
    },
    /// A message length below 8 or beyond the bytes available.
    #[error(
        "rndis message type {msg_type:#x} claims {msg_len} bytes but {available} are available"
    )]
    BadMessageLength {
        /// The message type.
        msg_type: u32,
        /// The message length field.
        msg_len: u32,
        /// Bytes available.
        available: usize,
    },
    /// A message shorter than its type's fixed part.
    #[error(
        "rndis message type {msg_type:#x} is {msg_len} bytes, shorter than its minimum of {min}"
    )]
    Truncated {
        /// The message type.
        msg_type: u32,
        /// The message length.
        msg_len: usize,
        /// Bytes the type needs.
        min: usize,
    },
    /// An offset/length pair that points outside the message.
    #[error(
        "rndis message type {msg_type:#x}: {field} at body offset {offset} length {len} lies outside the {msg_len}-byte message"
    )]
    OutOfBounds {
        /// The message type.
        msg_type: u32,
        /// Which area (`"data"`, `"per-packet info"`, …).
        field: &'static str,
        /// The offset field (relative to byte 8).
        offset: u32,
        /// The length field.
        len: u32,
        /// The message length.
        msg_len: usize,
    },
    /// A data packet without frame bytes.
    #[error("rndis packet carries an empty frame")]
    EmptyFrame,
    /// A malformed per-packet-info element.
    #[error("per-packet info element at byte {offset} of the ppi area is malformed: {reason}")]
    BadPpi {
        /// Offset of the element in the PPI area.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The output buffer is too small.
    #[error(
        "encoding rndis message type {msg_type:#x} needs {needed} bytes, the buffer has {available}"
    )]
    BufferTooSmall {
        /// The message type.
        msg_type: u32,
        /// Bytes needed.
        needed: usize,
        /// Bytes in the buffer.
        available: usize,
    },
    /// A length that does not fit the wire format's `u32` (or `u16`) field.
    #[error("{what} of {len} bytes does not fit its rndis length field")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// An NDIS object whose header does not describe a valid object of the expected type.
    #[error(
        "ndis object type {object_type:#x} revision {revision} size {size} is not a valid object of type {expected:#x} in {available} bytes"
    )]
    BadObject {
        /// The object type expected.
        expected: u8,
        /// The object type found.
        object_type: u8,
        /// The revision found.
        revision: u8,
        /// The size found.
        size: u16,
        /// Bytes available.
        available: usize,
    },
    /// RSS parameters whose table or key lies outside the object or has an odd size.
    #[error(
        "rss parameters: {what} at offset {offset} size {size} is invalid in {available} bytes"
    )]
    BadRssParameters {
        /// `"indirection table"` or `"hash key"`.
        what: &'static str,
        /// Its offset from the start of the object.
        offset: u32,
        /// Its size in bytes.
        size: u16,
        /// Bytes available.
        available: usize,
    },
}
