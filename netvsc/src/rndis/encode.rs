//! Builders for RNDIS messages, for both sides of the channel.
//!
//! Every builder writes one message at the start of `out`, sets `message_length` and returns the
//! bytes written; a too-small `out` is an error, never a panic.
//!
//! - Guest → host: [`encode_initialize`], [`encode_query`], [`encode_set`], [`encode_halt`],
//!   [`encode_keepalive`], [`encode_reset`], and data packets: [`packet_header_len`] and
//!   [`write_packet_header`] for a header in front of a frame that lies elsewhere (GPA-direct)
//!   or that the caller copies in, [`write_packet`] for header and frame together. Information
//!   buffers directly follow the request header (`information_buffer_offset` 20), as hosts
//!   require.
//! - Host → guest: [`encode_initialize_complete`], [`encode_query_complete`],
//!   [`encode_set_complete`], [`encode_keepalive_complete`], [`encode_reset_complete`],
//!   [`encode_indicate_status`], and [`write_host_packet`], which lays a received frame out as
//!   the recorded host does (PPIs after the header, frame at byte 256 of the sub-allocation,
//!   `message_length` = the sub-allocation).

use super::error::RndisError;
use super::messages::*;
use super::ppi::{PPI_ELEMENT_SIZE, PacketInfo, PpiOrder};
use zerocopy::byteorder::little_endian::U32;
use zerocopy::{Immutable, IntoBytes};

/// Writes a header for `msg_type` and the concatenated `parts`.
fn write_message(out: &mut [u8], msg_type: u32, parts: &[&[u8]]) -> Result<usize, RndisError> {
    let len = MESSAGE_HEADER_SIZE + parts.iter().map(|p| p.len()).sum::<usize>();
    let msg_len = u32::try_from(len).map_err(|_| RndisError::TooLong {
        what: "rndis message",
        len,
    })?;
    let available = out.len();
    let out = out.get_mut(..len).ok_or(RndisError::BufferTooSmall {
        msg_type,
        needed: len,
        available,
    })?;
    let header = MessageHeader {
        message_type: U32::new(msg_type),
        message_length: U32::new(msg_len),
    };
    let (head, mut rest) = out.split_at_mut(MESSAGE_HEADER_SIZE);
    head.copy_from_slice(header.as_bytes());
    for part in parts {
        let (dst, tail) = rest.split_at_mut(part.len());
        dst.copy_from_slice(part);
        rest = tail;
    }
    Ok(len)
}

/// Writes a message whose body is the fixed struct `body` (or any bytes).
pub fn encode_fixed<T: IntoBytes + Immutable + ?Sized>(
    out: &mut [u8],
    msg_type: u32,
    body: &T,
) -> Result<usize, RndisError> {
    write_message(out, msg_type, &[body.as_bytes()])
}

// ---------------------------------------------------------------------------------------------
// Guest → host control
// ---------------------------------------------------------------------------------------------

/// INITIALIZE for RNDIS 1.0 (24 bytes); guests send `max_transfer_size`
/// [`GUEST_MAX_TRANSFER_SIZE`].
pub fn encode_initialize(
    out: &mut [u8],
    request_id: u32,
    max_transfer_size: u32,
) -> Result<usize, RndisError> {
    let body = InitializeRequest::new(request_id, max_transfer_size);
    encode_fixed(out, MESSAGE_TYPE_INITIALIZE_MSG, &body)
}

/// HALT (12 bytes).
pub fn encode_halt(out: &mut [u8], request_id: u32) -> Result<usize, RndisError> {
    let body = HaltRequest {
        request_id: U32::new(request_id),
    };
    encode_fixed(out, MESSAGE_TYPE_HALT_MSG, &body)
}

/// KEEPALIVE (12 bytes).
pub fn encode_keepalive(out: &mut [u8], request_id: u32) -> Result<usize, RndisError> {
    let body = KeepaliveRequest {
        request_id: U32::new(request_id),
    };
    encode_fixed(out, MESSAGE_TYPE_KEEPALIVE_MSG, &body)
}

/// RESET (12 bytes). Fatal to an OpenVMM channel: for tests of that behaviour.
pub fn encode_reset(out: &mut [u8]) -> Result<usize, RndisError> {
    encode_fixed(out, MESSAGE_TYPE_RESET_MSG, &ResetRequest::default())
}

/// A QUERY, SET or SET_EX (`msg_type`) with `info` directly after the 28-byte header
/// (`information_buffer_offset` 20).
pub fn encode_oid_request(
    out: &mut [u8],
    msg_type: u32,
    request_id: u32,
    oid: u32,
    info: &[u8],
) -> Result<usize, RndisError> {
    let info_len = u32::try_from(info.len()).map_err(|_| RndisError::TooLong {
        what: "information buffer",
        len: info.len(),
    })?;
    let body = QueryRequest {
        request_id: U32::new(request_id),
        oid: U32::new(oid),
        information_buffer_length: U32::new(info_len),
        information_buffer_offset: U32::new(OID_REQUEST_INFO_OFFSET),
        device_vc_handle: U32::ZERO,
    };
    write_message(out, msg_type, &[body.as_bytes(), info])
}

/// QUERY of `oid` with an input buffer (usually empty; some OIDs take an object header).
pub fn encode_query(
    out: &mut [u8],
    request_id: u32,
    oid: u32,
    info: &[u8],
) -> Result<usize, RndisError> {
    encode_oid_request(out, MESSAGE_TYPE_QUERY_MSG, request_id, oid, info)
}

/// SET of `oid` to `value`.
pub fn encode_set(
    out: &mut [u8],
    request_id: u32,
    oid: u32,
    value: &[u8],
) -> Result<usize, RndisError> {
    encode_oid_request(out, MESSAGE_TYPE_SET_MSG, request_id, oid, value)
}

// ---------------------------------------------------------------------------------------------
// Host → guest control
// ---------------------------------------------------------------------------------------------

/// INITIALIZE_CMPLT (52 bytes); [`InitializeComplete::host_default`] gives the host's values.
pub fn encode_initialize_complete(
    out: &mut [u8],
    complete: &InitializeComplete,
) -> Result<usize, RndisError> {
    encode_fixed(out, MESSAGE_TYPE_INITIALIZE_CMPLT, complete)
}

/// QUERY_CMPLT with `info` directly after the 24-byte header (`information_buffer_offset` 16,
/// also when `info` is empty, as hosts send it).
pub fn encode_query_complete(
    out: &mut [u8],
    request_id: u32,
    status: u32,
    info: &[u8],
) -> Result<usize, RndisError> {
    let info_len = u32::try_from(info.len()).map_err(|_| RndisError::TooLong {
        what: "information buffer",
        len: info.len(),
    })?;
    let body = QueryComplete {
        request_id: U32::new(request_id),
        status: U32::new(status),
        information_buffer_length: U32::new(info_len),
        information_buffer_offset: U32::new(QUERY_COMPLETE_INFO_OFFSET),
    };
    write_message(out, MESSAGE_TYPE_QUERY_CMPLT, &[body.as_bytes(), info])
}

/// SET_CMPLT (16 bytes).
pub fn encode_set_complete(
    out: &mut [u8],
    request_id: u32,
    status: u32,
) -> Result<usize, RndisError> {
    let body = SetComplete {
        request_id: U32::new(request_id),
        status: U32::new(status),
    };
    encode_fixed(out, MESSAGE_TYPE_SET_CMPLT, &body)
}

/// KEEPALIVE_CMPLT (16 bytes).
pub fn encode_keepalive_complete(
    out: &mut [u8],
    request_id: u32,
    status: u32,
) -> Result<usize, RndisError> {
    let body = KeepaliveComplete {
        request_id: U32::new(request_id),
        status: U32::new(status),
    };
    encode_fixed(out, MESSAGE_TYPE_KEEPALIVE_CMPLT, &body)
}

/// RESET_CMPLT (16 bytes).
pub fn encode_reset_complete(
    out: &mut [u8],
    status: u32,
    addressing_reset: u32,
) -> Result<usize, RndisError> {
    let body = ResetComplete {
        status: U32::new(status),
        addressing_reset: U32::new(addressing_reset),
    };
    encode_fixed(out, MESSAGE_TYPE_RESET_CMPLT, &body)
}

/// INDICATE_STATUS with `buffer` directly after the 20-byte header: `status_buffer_offset` 12,
/// or 0 when there is no buffer, as hosts send it.
pub fn encode_indicate_status(
    out: &mut [u8],
    status: u32,
    buffer: &[u8],
) -> Result<usize, RndisError> {
    let buffer_len = u32::try_from(buffer.len()).map_err(|_| RndisError::TooLong {
        what: "status buffer",
        len: buffer.len(),
    })?;
    let offset = if buffer.is_empty() {
        0
    } else {
        INDICATE_STATUS_BUFFER_OFFSET
    };
    let body = IndicateStatus {
        status: U32::new(status),
        status_buffer_length: U32::new(buffer_len),
        status_buffer_offset: U32::new(offset),
    };
    write_message(
        out,
        MESSAGE_TYPE_INDICATE_STATUS_MSG,
        &[body.as_bytes(), buffer],
    )
}

// ---------------------------------------------------------------------------------------------
// Data packets
// ---------------------------------------------------------------------------------------------

/// Offset of the PPI area relative to byte 8: right after the 36-byte [`Packet`] body.
const PPI_BODY_OFFSET: u32 = size_of::<Packet>() as u32;

/// `data_offset` of a received frame as the recorded host lays it out (frame at byte 256).
pub const HOST_RX_DATA_OFFSET: u32 = 248;
/// Byte of the sub-allocation where the recorded host puts a received frame.
pub const HOST_RX_FRAME_OFFSET: usize = MESSAGE_HEADER_SIZE + HOST_RX_DATA_OFFSET as usize;

// The header with every PPI this crate writes (six) ends before the host's frame offset.
const _: () = assert!(PACKET_MESSAGE_SIZE + 6 * PPI_ELEMENT_SIZE <= HOST_RX_FRAME_OFFSET);

/// Writes the PACKET message header and PPIs at the start of `out`, with the frame to follow at
/// `data_offset` and the message length covering it.
fn write_packet_prefix(
    out: &mut [u8],
    msg_len: usize,
    data_offset: u32,
    frame_len: usize,
    info: &PacketInfo,
    order: PpiOrder,
) -> Result<usize, RndisError> {
    let msg_type = MESSAGE_TYPE_PACKET_MSG;
    let too_long = |what, len| RndisError::TooLong { what, len };
    let msg_len_u32 = u32::try_from(msg_len).map_err(|_| too_long("rndis packet", msg_len))?;
    let frame_len_u32 = u32::try_from(frame_len).map_err(|_| too_long("frame", frame_len))?;
    let ppi_len = info.len();
    let header_len = PACKET_MESSAGE_SIZE + ppi_len;
    let available = out.len();
    let out = out
        .get_mut(..header_len)
        .ok_or(RndisError::BufferTooSmall {
            msg_type,
            needed: header_len,
            available,
        })?;
    let header = MessageHeader {
        message_type: U32::new(msg_type),
        message_length: U32::new(msg_len_u32),
    };
    let body = Packet {
        data_offset: U32::new(data_offset),
        data_length: U32::new(frame_len_u32),
        per_packet_info_offset: U32::new(if ppi_len == 0 { 0 } else { PPI_BODY_OFFSET }),
        per_packet_info_length: U32::new(ppi_len as u32),
        ..Packet::default()
    };
    let (head, ppis) = out.split_at_mut(PACKET_MESSAGE_SIZE);
    head[..MESSAGE_HEADER_SIZE].copy_from_slice(header.as_bytes());
    head[MESSAGE_HEADER_SIZE..].copy_from_slice(body.as_bytes());
    info.write(ppis, order)?;
    Ok(header_len)
}

/// Bytes of the PACKET header (44) plus the PPIs for `info` (16 each): where the frame starts.
pub fn packet_header_len(info: &PacketInfo) -> usize {
    PACKET_MESSAGE_SIZE + info.len()
}

/// Writes a guest PACKET header with the PPIs of `info` (guest order) into `out`, for a frame of
/// `frame_len` bytes that directly follows it (in `out`, or in the next GPA range). Returns the
/// header length ([`packet_header_len`]); `out` needs only that many bytes. The message length
/// is header + frame.
pub fn write_packet_header(
    out: &mut [u8],
    frame_len: usize,
    info: &PacketInfo,
) -> Result<usize, RndisError> {
    let header_len = packet_header_len(info);
    let msg_len = header_len
        .checked_add(frame_len)
        .ok_or(RndisError::TooLong {
            what: "frame",
            len: frame_len,
        })?;
    let data_offset = (header_len - MESSAGE_HEADER_SIZE) as u32;
    write_packet_prefix(out, msg_len, data_offset, frame_len, info, PpiOrder::Guest)
}

/// Writes the header of a guest PACKET without PPIs (what [`write_packet_header`] writes for
/// an empty [`PacketInfo`]) for a frame of `frame_len` bytes in a message of `message_length`
/// bytes (the frame, and any padding after it, follow the header): the per-frame header of the
/// transmit path, with nothing left to check.
#[inline]
pub fn write_plain_packet_header(
    out: &mut [u8; PACKET_MESSAGE_SIZE],
    message_length: u32,
    frame_len: u32,
) -> usize {
    let data_offset = (PACKET_MESSAGE_SIZE - MESSAGE_HEADER_SIZE) as u32;
    out.fill(0);
    for (at, value) in [
        (0, MESSAGE_TYPE_PACKET_MSG),
        (4, message_length),
        (8, data_offset),
        (12, frame_len),
    ] {
        out[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }
    PACKET_MESSAGE_SIZE
}

/// Writes a whole guest PACKET (header, PPIs, frame) into `out`; returns its length. An empty
/// frame is written as asked (for tests of host behaviour): hosts refuse it, and
/// [`RndisMessage::parse`](super::RndisMessage::parse) reports [`RndisError::EmptyFrame`].
pub fn write_packet(out: &mut [u8], frame: &[u8], info: &PacketInfo) -> Result<usize, RndisError> {
    let header_len = packet_header_len(info);
    let total = header_len.saturating_add(frame.len());
    if out.len() < total {
        return Err(RndisError::BufferTooSmall {
            msg_type: MESSAGE_TYPE_PACKET_MSG,
            needed: total,
            available: out.len(),
        });
    }
    write_packet_header(out, frame.len(), info)?;
    out[header_len..total].copy_from_slice(frame);
    Ok(total)
}

/// Writes a received frame the way the recorded host does into `out`, one receive
/// sub-allocation: `message_length` = `out.len()`, PPIs in host order (checksum first) right
/// after the header, `data_offset` 248 so the frame lands at byte 256. Only the header, the
/// PPIs and the frame are written; the rest of `out` is left as it is. Returns `out.len()`.
pub fn write_host_packet(
    out: &mut [u8],
    frame: &[u8],
    info: &PacketInfo,
) -> Result<usize, RndisError> {
    let msg_len = out.len();
    write_host_packet_header(out, msg_len, frame.len(), info)?;
    out[HOST_RX_FRAME_OFFSET..HOST_RX_FRAME_OFFSET + frame.len()].copy_from_slice(frame);
    Ok(msg_len)
}

/// The header and PPIs [`write_host_packet`] writes, alone, into `out` (which needs only
/// [`packet_header_len`] bytes), for a `frame_len`-byte frame at byte 256 of a sub-allocation
/// of `message_length` bytes: for a host that writes the frame into place itself. Returns the
/// header length.
pub fn write_host_packet_header(
    out: &mut [u8],
    message_length: usize,
    frame_len: usize,
    info: &PacketInfo,
) -> Result<usize, RndisError> {
    let needed = HOST_RX_FRAME_OFFSET.saturating_add(frame_len);
    if message_length < needed {
        return Err(RndisError::BufferTooSmall {
            msg_type: MESSAGE_TYPE_PACKET_MSG,
            needed,
            available: message_length,
        });
    }
    write_packet_prefix(
        out,
        message_length,
        HOST_RX_DATA_OFFSET,
        frame_len,
        info,
        PpiOrder::Host,
    )
}
