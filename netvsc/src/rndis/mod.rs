//! RNDIS, carried in NVSP SEND_RNDIS_PACKET (reference §3).
//!
//! Every RNDIS message starts with `u32 message_type; u32 message_length` (the length covers
//! the whole message, header included); every offset inside a body is relative to byte 8, the
//! start of the body. Guest → host messages travel in send-buffer sections or GPA-direct ranges;
//! host → guest messages arrive one per range of a transfer-page packet in the receive buffer.
//!
//! Submodules:
//! - [`messages`]: message-type constants and the `#[repr(C)]` wire structs of every message
//!   body (PACKET, INITIALIZE, HALT, QUERY, SET, RESET, INDICATE_STATUS, KEEPALIVE and their
//!   completions), with compile-time size assertions.
//! - [`status`]: NDIS status codes, including the status-indication codes.
//! - [`oids`]: the OIDs netvsc clients use, packet-filter bits and media states.
//! - [`ppi`]: per-packet info: the element header, the types, the bit-field values (checksum,
//!   LSO, 802.1Q, packet id) and [`PacketInfo`], which parses and writes a PPI area.
//! - [`objects`]: NDIS objects carried in OID buffers: the object header and NDIS_LINK_STATE,
//!   with NDIS_OFFLOAD and NDIS_OFFLOAD_PARAMETERS in [`objects::offload`] and the RSS
//!   capabilities and parameters in [`objects::rss`].
//! - [`parse`]: [`RndisMessage::parse`] for a message from either side, [`RndisMessage::emit`]
//!   to write a parsed message back, [`Span`] (a checked byte range) and [`Messages`], which
//!   splits a send section holding several concatenated messages.
//! - [`encode`]: the builders: guest requests and data-packet headers, host completions,
//!   indications and data packets laid out as a real host lays them out.
//! - [`error`]: [`RndisError`], the one error type of this module.
//!
//! Parsing never panics and never trusts a length: every offset and length is checked against
//! the message length and the buffer with overflow-checked arithmetic. The parser copies
//! nothing; it works on bytes the caller already copied out of shared memory and reports
//! byte ranges ([`Span`]) within them.
//!
//! `nvsp` and `rndis` both define `STATUS_*`, `MESSAGE_HEADER_SIZE` and `message_type_name`,
//! with different values (`nvsp::STATUS_SUCCESS` is 1, `rndis::STATUS_SUCCESS` is 0): name
//! them through their module rather than glob-importing both.

pub mod encode;
pub mod error;
pub mod messages;
pub mod objects;
pub mod oids;
pub mod parse;
pub mod ppi;
pub mod status;

pub use encode::*;
pub use error::RndisError;
pub use messages::*;
pub use objects::*;
pub use oids::*;
pub use parse::{
    Messages, OidRequest, QueryCompletion, RndisMessage, RndisPacket, Span, StatusIndication,
};
pub use ppi::*;
pub use status::*;

#[cfg(test)]
mod tests;
