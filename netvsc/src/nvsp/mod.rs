//! NVSP, the Network VSP protocol carried in VMBus packets (reference §2).
//!
//! Every NVSP message is a little-endian `u32` message type followed by a type-specific body.
//! This module declares those bodies as wire structs and provides one codec for both sides of
//! the channel: the guest NIC parses what the host sends and emits its requests; the simulated
//! host in `integration` parses the guest's requests and emits the host's replies.
//!
//! Submodules:
//! - [`constants`]: message types, status codes, protocol and NDIS versions, NDIS-config
//!   capability bits, buffer ids, message sizes, channel types and other numbers of the protocol.
//! - [`messages`]: the `#[repr(C)]` wire structs, one per message body, each with a
//!   compile-time size assertion. They hold only little-endian byte-order types, so they have
//!   alignment 1 and can be read from any offset.
//! - [`message`]: [`NvspMessage`], the typed view of one whole message, with
//!   [`NvspMessage::parse`] (host → guest), [`NvspMessage::parse_from_guest`] and
//!   [`NvspMessage::emit`]; the checked views [`ReceiveBufferComplete`] (NVSP 102) and
//!   [`SendIndirectionTable`] (NVSP 134); and the encoders for those two variable-length
//!   messages.
//! - [`error`]: [`NvspError`], the one error type of this module.
//!
//! # Naming
//!
//! Structs and fields are named as OpenVMM's `netvsp` protocol definitions name them, which in
//! turn follow the Windows NVSP headers: `MessageInit`, `Message1SendReceiveBuffer`,
//! `Message2SendNdisConfig`, `Message4SendVfAssociation`, `Message5SubchannelRequest`, … where
//! the digit is the protocol generation that introduced the message. A struct holds only the
//! body: the 4-byte type ([`messages::MessageHeader`]) is not part of it, so a body starts at
//! byte 4 of the NVSP message and the reference's offsets are the struct's offsets plus 4.
//!
//! # Sizes
//!
//! Parsing never assumes a total size: a message is accepted when it is at least as long as its
//! type needs, and trailing padding is ignored (hosts pad to 28 bytes below NVSP 6.1 and to 40
//! bytes at 6.1; INIT_COMPLETE is 32 bytes; the host's SWITCH_DATA_PATH is 8 bytes;
//! SEND_INDIRECTION_TABLE is 76). Emitting takes the padded size from the caller: a guest
//! always sends [`constants::GUEST_MESSAGE_SIZE`] (40) zero-padded bytes.

pub mod constants;
pub mod error;
pub mod message;
pub mod messages;

pub use constants::*;
pub use error::NvspError;
pub use message::{
    NvspMessage, ReceiveBufferComplete, SendIndirectionTable, Sender,
    encode_receive_buffer_complete, encode_send_indirection_table, send_complete_status,
};
pub use messages::*;

#[cfg(test)]
pub(crate) mod tests;
