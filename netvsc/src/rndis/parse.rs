//! [`RndisMessage`]: one RNDIS message from either side, parsed and checked; and
//! [`RndisMessage::emit`], which writes a parsed message back.
//!
//! The parser works on bytes the caller already copied out of shared memory (one range of a
//! transfer-page packet, a send section, a GPA-direct buffer) and copies nothing: variable
//! parts are reported as [`Span`]s, byte ranges within the parsed buffer that are checked
//! against both the buffer and the message length. All arithmetic is overflow-checked; no
//! input makes it panic.

use super::encode;
use super::error::RndisError;
use super::messages::*;
use super::ppi::PacketInfo;
use zerocopy::FromBytes;

/// A checked byte range within the buffer a message was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    /// Offset from the start of the buffer (the start of the RNDIS message).
    pub offset: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Span {
    /// The empty span.
    pub const EMPTY: Span = Span { offset: 0, len: 0 };

    /// The span as a range.
    pub fn range(&self) -> core::ops::Range<usize> {
        self.offset..self.offset.saturating_add(self.len)
    }

    /// Whether the span is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes of the span in `buf` (the buffer it was parsed from), or `None` if `buf` is
    /// too short (only possible with a different buffer).
    pub fn get<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        if self.len == 0 {
            return Some(&[]);
        }
        buf.get(self.range())
    }
}

/// A PACKET message: where the frame is, and its per-packet info.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RndisPacket {
    /// The frame, at `8 + data_offset`, never empty.
    pub frame: Span,
    /// Per-packet info present in the packet.
    pub info: PacketInfo,
    /// Out-of-band data, if the packet claims any (hosts reject it; it is bounds-checked here
    /// and otherwise ignored).
    pub oob: Option<Span>,
    /// The VC handle (0 for connectionless data; hosts reject anything else).
    pub vc_handle: u32,
}

/// A QUERY, SET or SET_EX request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OidRequest {
    /// Request id, echoed in the completion.
    pub request_id: u32,
    /// The OID.
    pub oid: u32,
    /// The information buffer (empty when its length is 0, whatever its offset).
    pub info: Span,
    /// The device VC handle (0).
    pub device_vc_handle: u32,
}

/// A QUERY_CMPLT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryCompletion {
    /// The request's id.
    pub request_id: u32,
    /// An NDIS status.
    pub status: u32,
    /// The answer (empty when its length is 0, whatever its offset).
    pub info: Span,
}

/// An INDICATE_STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusIndication {
    /// The indication code (`STATUS_MEDIA_CONNECT`, …).
    pub status: u32,
    /// The status buffer (empty when its length is 0, whatever its offset).
    pub buffer: Span,
}

/// One RNDIS message, typed by its message type. Sent by the host: `Packet`, the completions
/// and `IndicateStatus`; sent by the guest: `Packet` and the requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RndisMessage {
    /// PACKET_MSG.
    Packet(RndisPacket),
    /// INITIALIZE_MSG.
    Initialize(InitializeRequest),
    /// INITIALIZE_CMPLT.
    InitializeComplete(InitializeComplete),
    /// HALT_MSG.
    Halt(HaltRequest),
    /// QUERY_MSG.
    Query(OidRequest),
    /// QUERY_CMPLT.
    QueryComplete(QueryCompletion),
    /// SET_MSG.
    Set(OidRequest),
    /// SET_CMPLT.
    SetComplete(SetComplete),
    /// SET_EX_MSG.
    SetEx(OidRequest),
    /// RESET_MSG.
    Reset(ResetRequest),
    /// RESET_CMPLT.
    ResetComplete(ResetComplete),
    /// INDICATE_STATUS_MSG.
    IndicateStatus(StatusIndication),
    /// KEEPALIVE_MSG.
    Keepalive(KeepaliveRequest),
    /// KEEPALIVE_CMPLT.
    KeepaliveComplete(KeepaliveComplete),
    /// Any other type: not an error here; the caller decides.
    Unknown {
        /// The message type.
        msg_type: u32,
    },
}

/// The header of the message at the start of `buf`, after checking that its length lies
/// between 8 and `buf.len()`.
fn checked_header(buf: &[u8]) -> Result<(u32, usize), RndisError> {
    let (header, _) = MessageHeader::read_from_prefix(buf)
        .map_err(|_| RndisError::NoHeader { len: buf.len() })?;
    let msg_type = header.message_type.get();
    let msg_len = header.message_length.get();
    let len = msg_len as usize;
    if len < MESSAGE_HEADER_SIZE || len > buf.len() {
        return Err(RndisError::BadMessageLength {
            msg_type,
            msg_len,
            available: buf.len(),
        });
    }
    Ok((msg_type, len))
}

/// Reads the fixed body `T` of a message of `msg_len` bytes.
fn body<T: FromBytes>(msg: &[u8], msg_type: u32) -> Result<T, RndisError> {
    msg.get(MESSAGE_HEADER_SIZE..)
        .and_then(|rest| T::read_from_prefix(rest).ok())
        .map(|(value, _)| value)
        .ok_or(RndisError::Truncated {
            msg_type,
            msg_len: msg.len(),
            min: MESSAGE_HEADER_SIZE + size_of::<T>(),
        })
}

/// The span of `len` bytes at body offset `offset` (relative to byte 8), checked against the
/// message length. A zero length gives the empty span whatever the offset.
fn body_span(
    msg_type: u32,
    msg_len: usize,
    field: &'static str,
    offset: u32,
    len: u32,
) -> Result<Span, RndisError> {
    if len == 0 {
        return Ok(Span::EMPTY);
    }
    let start = (offset as usize).checked_add(MESSAGE_HEADER_SIZE);
    let end = start.and_then(|s| s.checked_add(len as usize));
    match (start, end) {
        (Some(start), Some(end)) if end <= msg_len => Ok(Span {
            offset: start,
            len: len as usize,
        }),
        _ => Err(RndisError::OutOfBounds {
            msg_type,
            field,
            offset,
            len,
            msg_len,
        }),
    }
}

fn parse_packet(msg: &[u8]) -> Result<RndisPacket, RndisError> {
    let msg_type = MESSAGE_TYPE_PACKET_MSG;
    let msg_len = msg.len();
    let packet: Packet = body(msg, msg_type)?;
    let data_len = packet.data_length.get();
    if data_len == 0 {
        return Err(RndisError::EmptyFrame);
    }
    let frame = body_span(
        msg_type,
        msg_len,
        "data",
        packet.data_offset.get(),
        data_len,
    )?;
    let oob_len = packet.oob_data_length.get();
    let oob = if oob_len != 0 || packet.num_oob_data_elements.get() != 0 {
        Some(body_span(
            msg_type,
            msg_len,
            "out-of-band data",
            packet.oob_data_offset.get(),
            oob_len,
        )?)
    } else {
        None
    };
    let ppi = body_span(
        msg_type,
        msg_len,
        "per-packet info",
        packet.per_packet_info_offset.get(),
        packet.per_packet_info_length.get(),
    )?;
    let info = match ppi.get(msg) {
        Some(area) => PacketInfo::parse(area)?,
        None => PacketInfo::default(),
    };
    Ok(RndisPacket {
        frame,
        info,
        oob,
        vc_handle: packet.vc_handle.get(),
    })
}

fn parse_oid_request(msg: &[u8], msg_type: u32) -> Result<OidRequest, RndisError> {
    // QUERY, SET and SET_EX share one layout.
    let request: QueryRequest = body(msg, msg_type)?;
    let info = body_span(
        msg_type,
        msg.len(),
        "information buffer",
        request.information_buffer_offset.get(),
        request.information_buffer_length.get(),
    )?;
    Ok(OidRequest {
        request_id: request.request_id.get(),
        oid: request.oid.get(),
        info,
        device_vc_handle: request.device_vc_handle.get(),
    })
}

impl RndisMessage {
    /// Parses the message at the start of `buf`.
    ///
    /// The header's length must lie between 8 and `buf.len()` (bytes after the message are
    /// ignored: a real host's data range is a whole sub-allocation and its `message_length`
    /// says so); the message must hold its type's fixed part; every offset/length pair must
    /// lie inside the message. A PACKET must carry a non-empty frame and a well-formed PPI area.
    /// An unknown type parses to [`RndisMessage::Unknown`].
    pub fn parse(buf: &[u8]) -> Result<Self, RndisError> {
        let (msg_type, msg_len) = checked_header(buf)?;
        let msg = &buf[..msg_len];
        Ok(match msg_type {
            MESSAGE_TYPE_PACKET_MSG => Self::Packet(parse_packet(msg)?),
            MESSAGE_TYPE_INITIALIZE_MSG => Self::Initialize(body(msg, msg_type)?),
            MESSAGE_TYPE_INITIALIZE_CMPLT => Self::InitializeComplete(body(msg, msg_type)?),
            MESSAGE_TYPE_HALT_MSG => Self::Halt(body(msg, msg_type)?),
            MESSAGE_TYPE_QUERY_MSG => Self::Query(parse_oid_request(msg, msg_type)?),
            MESSAGE_TYPE_QUERY_CMPLT => {
                let complete: QueryComplete = body(msg, msg_type)?;
                Self::QueryComplete(QueryCompletion {
                    request_id: complete.request_id.get(),
                    status: complete.status.get(),
                    info: body_span(
                        msg_type,
                        msg_len,
                        "information buffer",
                        complete.information_buffer_offset.get(),
                        complete.information_buffer_length.get(),
                    )?,
                })
            }
            MESSAGE_TYPE_SET_MSG => Self::Set(parse_oid_request(msg, msg_type)?),
            MESSAGE_TYPE_SET_CMPLT => Self::SetComplete(body(msg, msg_type)?),
            MESSAGE_TYPE_SET_EX_MSG => Self::SetEx(parse_oid_request(msg, msg_type)?),
            MESSAGE_TYPE_RESET_MSG => Self::Reset(body(msg, msg_type)?),
            MESSAGE_TYPE_RESET_CMPLT => Self::ResetComplete(body(msg, msg_type)?),
            MESSAGE_TYPE_INDICATE_STATUS_MSG => {
                let indicate: IndicateStatus = body(msg, msg_type)?;
                Self::IndicateStatus(StatusIndication {
                    status: indicate.status.get(),
                    buffer: body_span(
                        msg_type,
                        msg_len,
                        "status buffer",
                        indicate.status_buffer_offset.get(),
                        indicate.status_buffer_length.get(),
                    )?,
                })
            }
            MESSAGE_TYPE_KEEPALIVE_MSG => Self::Keepalive(body(msg, msg_type)?),
            MESSAGE_TYPE_KEEPALIVE_CMPLT => Self::KeepaliveComplete(body(msg, msg_type)?),
            msg_type => Self::Unknown { msg_type },
        })
    }

    /// The message type.
    pub fn msg_type(&self) -> u32 {
        match self {
            Self::Packet(_) => MESSAGE_TYPE_PACKET_MSG,
            Self::Initialize(_) => MESSAGE_TYPE_INITIALIZE_MSG,
            Self::InitializeComplete(_) => MESSAGE_TYPE_INITIALIZE_CMPLT,
            Self::Halt(_) => MESSAGE_TYPE_HALT_MSG,
            Self::Query(_) => MESSAGE_TYPE_QUERY_MSG,
            Self::QueryComplete(_) => MESSAGE_TYPE_QUERY_CMPLT,
            Self::Set(_) => MESSAGE_TYPE_SET_MSG,
            Self::SetComplete(_) => MESSAGE_TYPE_SET_CMPLT,
            Self::SetEx(_) => MESSAGE_TYPE_SET_EX_MSG,
            Self::Reset(_) => MESSAGE_TYPE_RESET_MSG,
            Self::ResetComplete(_) => MESSAGE_TYPE_RESET_CMPLT,
            Self::IndicateStatus(_) => MESSAGE_TYPE_INDICATE_STATUS_MSG,
            Self::Keepalive(_) => MESSAGE_TYPE_KEEPALIVE_MSG,
            Self::KeepaliveComplete(_) => MESSAGE_TYPE_KEEPALIVE_CMPLT,
            Self::Unknown { msg_type } => *msg_type,
        }
    }

    /// Writes this message, parsed from `src`, at the start of `out` in canonical form and
    /// returns its length: fixed bodies as they are, information and status buffers right after
    /// the fixed part, a PACKET in the guest layout (PPIs after the header, then the frame; the
    /// out-of-band data and VC handle are dropped). An [`RndisMessage::Unknown`] becomes a bare
    /// 8-byte header. Parsing the result gives back the same message, up to span offsets.
    pub fn emit(&self, src: &[u8], out: &mut [u8]) -> Result<usize, RndisError> {
        let msg_type = self.msg_type();
        let span = |span: &Span| {
            span.get(src).ok_or(RndisError::BufferTooSmall {
                msg_type,
                needed: span.range().end,
                available: src.len(),
            })
        };
        match self {
            Self::Packet(packet) => encode::write_packet(out, span(&packet.frame)?, &packet.info),
            Self::Initialize(m) => encode::encode_fixed(out, msg_type, m),
            Self::InitializeComplete(m) => encode::encode_fixed(out, msg_type, m),
            Self::Halt(m) => encode::encode_fixed(out, msg_type, m),
            Self::Query(r) | Self::Set(r) | Self::SetEx(r) => {
                encode::encode_oid_request(out, msg_type, r.request_id, r.oid, span(&r.info)?)
            }
            Self::QueryComplete(c) => {
                encode::encode_query_complete(out, c.request_id, c.status, span(&c.info)?)
            }
            Self::SetComplete(m) => encode::encode_fixed(out, msg_type, m),
            Self::Reset(m) => encode::encode_fixed(out, msg_type, m),
            Self::ResetComplete(m) => encode::encode_fixed(out, msg_type, m),
            Self::IndicateStatus(s) => {
                encode::encode_indicate_status(out, s.status, span(&s.buffer)?)
            }
            Self::Keepalive(m) => encode::encode_fixed(out, msg_type, m),
            Self::KeepaliveComplete(m) => encode::encode_fixed(out, msg_type, m),
            Self::Unknown { msg_type } => encode::encode_fixed(out, *msg_type, &[0u8; 0]),
        }
    }
}

/// Splits a buffer holding several concatenated RNDIS messages (a send section with aggregated
/// data packets) into the messages, using each header's length.
///
/// Yields `(offset, message bytes)`; a header whose length is below 8 or runs past the buffer,
/// or trailing bytes too short for a header, yield one error and end the iteration.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> Messages<'a> {
    /// Iterates over the messages in `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self {
            buf,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<(usize, &'a [u8]), RndisError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.buf.get(self.pos..).filter(|r| !r.is_empty())?;
        match checked_header(rest) {
            Ok((_, len)) => {
                let start = self.pos;
                self.pos += len;
                Some(Ok((start, &rest[..len])))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}
