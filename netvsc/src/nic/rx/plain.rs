//! The data message every host sends, recognised in one pass over its first words.
//!
//! A host lays out each received frame the same way: a PACKET message whose per-packet info
//! follows its header (offset 36), made of one or two 16-byte elements with the value right
//! after the element header — the checksum info always, the 802.1Q tag when tagged, a hash
//! value from hosts that send one — and the frame further on. [`data_frame`] checks a
//! message's first [`HEAD_READ`](super::HEAD_READ) bytes for exactly that shape and, when
//! they have it, says where the frame is and what its metadata is. It gives no reasons: any
//! other message, well-formed or not, gets `None`, and the general path
//! ([`super::general_range`]) reads it and says what is wrong. So the checks here need only
//! be sufficient, and the general path stays the one authority on what is accepted: for any
//! bytes, both paths deliver the same frame or this one declines (the property tests and the
//! `rx_paths` fuzz target hold them to it).

use crate::rndis::{
    Ieee8021QInfo, MESSAGE_HEADER_SIZE, MESSAGE_TYPE_PACKET_MSG, PACKET_MESSAGE_SIZE,
    PPI_HASH_VALUE, PPI_HEADER_SIZE, PPI_IEEE_8021Q, PPI_TCP_IP_CHECKSUM,
};

use packet::PacketMeta;

use super::HEAD_READ;

/// Bytes of one element as hosts write it: the header and a 4-byte value.
const ELEMENT: usize = PPI_HEADER_SIZE + 4;
/// The area of two elements, the most [`data_frame`] takes: what fits the first
/// [`HEAD_READ`] bytes.
const TWO_ELEMENTS: usize = 2 * ELEMENT;
const _: () = assert!(PACKET_MESSAGE_SIZE + TWO_ELEMENTS == HEAD_READ);
/// The per-packet-info offset (from the start of the PACKET body) that puts the area right
/// after the header.
const PPI_RIGHT_AFTER_HEADER: u32 = (PACKET_MESSAGE_SIZE - MESSAGE_HEADER_SIZE) as u32;

/// Where a message's frame is and what the receive path records of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PlainFrame {
    /// The frame's first byte, from the message start.
    pub start: usize,
    /// The frame's length.
    pub len: usize,
    /// The frame's metadata: the 802.1Q tag (as a TCI), the receive hash value, the queue.
    pub meta: PacketMeta,
}

/// The frame of the message whose first bytes are `head`, when the message is a PACKET of
/// the hosts' shape, at most `count` bytes long (its transfer-page range), with a frame of
/// at most `max_frame` bytes, received on `queue`; `None` for anything else. The bytes of
/// `head` past the message (when it is shorter) are never used for more than declining.
#[inline(always)]
pub(super) fn data_frame(
    head: &[u8; HEAD_READ],
    count: usize,
    max_frame: usize,
    queue: u16,
) -> Option<PlainFrame> {
    let word = |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
    // Widened before any sum: no field, and no sum of two, can overflow.
    let field = |at: usize| u64::from(word(at));
    let msg_len = field(4);
    if word(0) != MESSAGE_TYPE_PACKET_MSG
        || msg_len < PACKET_MESSAGE_SIZE as u64
        || msg_len > count as u64
    {
        return None;
    }
    // PACKET body fields: data offset and length (from the body, 8 bytes in), then the
    // per-packet-info offset and length.
    let (start, len) = (field(8) + MESSAGE_HEADER_SIZE as u64, field(12));
    if len == 0 || start + len > msg_len || len > max_frame as u64 {
        return None;
    }
    let ppi_len = word(32) as usize;
    let mut frame = PlainFrame {
        start: start as usize,
        len: len as usize,
        meta: PacketMeta {
            queue,
            ..PacketMeta::default()
        },
    };
    if ppi_len == 0 {
        return Some(frame);
    }
    let elements = match ppi_len {
        ELEMENT => 1,
        TWO_ELEMENTS => 2,
        _ => return None,
    };
    if word(28) != PPI_RIGHT_AFTER_HEADER || (PACKET_MESSAGE_SIZE + ppi_len) as u64 > msg_len {
        return None;
    }
    // The last element first, so that where a type repeats the first one's value stays, as
    // in the general path.
    let mut element = |i: usize| {
        let at = PACKET_MESSAGE_SIZE + i * ELEMENT;
        if word(at) != ELEMENT as u32 || word(at + 8) != PPI_HEADER_SIZE as u32 {
            return None;
        }
        let value = word(at + 12);
        match word(at + 4) {
            PPI_TCP_IP_CHECKSUM => {}
            PPI_IEEE_8021Q => frame.meta.vlan_tci = Some(Ieee8021QInfo(value).tci()),
            PPI_HASH_VALUE => frame.meta.rss_hash = Some(value),
            _ => return None,
        }
        Some(())
    };
    if elements == 2 {
        element(1)?;
    }
    element(0)?;
    Some(frame)
}
