//! [`NvspMessage`]: one whole NVSP message, parsed from bytes or to be emitted.
//!
//! Parsing dispatches on the type and checks only the minimum length of that type: hosts pad
//! their messages to various sizes, and padding is ignored. An unknown type is not an error;
//! it parses to [`NvspMessage::Unknown`] and the caller decides. The two variable-length
//! messages are checked views over the message bytes: [`ReceiveBufferComplete`] (NVSP 102) and
//! [`SendIndirectionTable`] (NVSP 134); their accessors bounds-check every read.

use super::constants::*;
use super::error::NvspError;
use super::messages::*;
use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromBytes, IntoBytes};

/// Which side of the channel sent a message. Only SUB_CHANNEL (133) needs it: the request and
/// the completion share the type but not the meaning of their first field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    /// The guest sent it (the host is parsing).
    Guest,
    /// The host sent it (the guest is parsing).
    Host,
}

/// One NVSP message, typed by its message type.
///
/// Fixed-size bodies are held by value; the two variable-length messages borrow the message
/// bytes. Emitting a parsed message with `padded_len` 0 reproduces its bytes up to the end of
/// the body (for the borrowed views: all of the original bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NvspMessage<'a> {
    /// INIT (1).
    Init(MessageInit),
    /// INIT_COMPLETE (2).
    InitComplete(MessageInitComplete),
    /// SEND_NDIS_VERSION (100).
    SendNdisVersion(Message1SendNdisVersion),
    /// SEND_RECEIVE_BUFFER (101).
    SendReceiveBuffer(Message1SendReceiveBuffer),
    /// SEND_RECEIVE_BUFFER_COMPLETE (102).
    SendReceiveBufferComplete(ReceiveBufferComplete<'a>),
    /// REVOKE_RECEIVE_BUFFER (103).
    RevokeReceiveBuffer(Message1RevokeReceiveBuffer),
    /// SEND_SEND_BUFFER (104).
    SendSendBuffer(Message1SendSendBuffer),
    /// SEND_SEND_BUFFER_COMPLETE (105).
    SendSendBufferComplete(Message1SendSendBufferComplete),
    /// REVOKE_SEND_BUFFER (106).
    RevokeSendBuffer(Message1RevokeSendBuffer),
    /// SEND_RNDIS_PACKET (107).
    SendRndisPacket(Message1SendRndisPacket),
    /// SEND_RNDIS_PACKET_COMPLETE (108).
    SendRndisPacketComplete(Message1SendRndisPacketComplete),
    /// SEND_NDIS_CONFIG (125).
    SendNdisConfig(Message2SendNdisConfig),
    /// SEND_VF_ASSOCIATION (128).
    SendVfAssociation(Message4SendVfAssociation),
    /// SWITCH_DATA_PATH (129).
    SwitchDataPath(Message4SwitchDataPath),
    /// OID_QUERY_EX (131).
    OidQueryEx(Message5OidQueryEx),
    /// OID_QUERY_EX_COMPLETE (132).
    OidQueryExComplete(Message5OidQueryExComplete),
    /// SUB_CHANNEL (133) sent by the guest.
    SubchannelRequest(Message5SubchannelRequest),
    /// SUB_CHANNEL (133) sent by the host.
    SubchannelComplete(Message5SubchannelComplete),
    /// SEND_INDIRECTION_TABLE (134).
    SendIndirectionTable(SendIndirectionTable<'a>),
    /// Any other type (including the obsolete and packet-direct ones): not an error here.
    Unknown {
        /// The message type.
        msg_type: u32,
    },
}

/// Reads the fixed body `T` that follows the 4-byte type, or reports the minimum length.
fn body<T: FromBytes>(bytes: &[u8], msg_type: u32) -> Result<T, NvspError> {
    bytes
        .get(MESSAGE_HEADER_SIZE..)
        .and_then(|rest| T::read_from_prefix(rest).ok())
        .map(|(value, _)| value)
        .ok_or(NvspError::Truncated {
            msg_type,
            len: bytes.len(),
            min: MESSAGE_HEADER_SIZE + size_of::<T>(),
        })
}

/// Reads the little-endian `u32` at `offset`, if it is inside `bytes`.
fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let end = offset.checked_add(4)?;
    let raw: [u8; 4] = bytes.get(offset..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

/// The status of a SEND_RNDIS_PACKET_COMPLETE: what [`NvspMessage::parse`] reads from one,
/// without building the message (a completion is read once per send). `None` for any other
/// message, or one too short.
#[inline]
pub fn send_complete_status(bytes: &[u8]) -> Option<u32> {
    let (head, _) = bytes.split_first_chunk::<8>()?;
    let (msg_type, status) = head.split_at(4);
    let field = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap_or_default());
    (field(msg_type) == MESSAGE1_TYPE_SEND_RNDIS_PACKET_COMPLETE).then(|| field(status))
}

impl<'a> NvspMessage<'a> {
    /// Parses a message the host sent (what the guest receives).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, NvspError> {
        Self::parse_from(Sender::Host, bytes)
    }

    /// Parses a message the guest sent (what the simulated host receives).
    pub fn parse_from_guest(bytes: &'a [u8]) -> Result<Self, NvspError> {
        Self::parse_from(Sender::Guest, bytes)
    }

    /// Parses a message sent by `sender`: any input of 4 bytes or more with the minimum
    /// length of its type; trailing bytes are ignored.
    pub fn parse_from(sender: Sender, bytes: &'a [u8]) -> Result<Self, NvspError> {
        let msg_type = read_u32(bytes, 0).ok_or(NvspError::NoMessageType { len: bytes.len() })?;
        Ok(match msg_type {
            MESSAGE_TYPE_INIT => Self::Init(body(bytes, msg_type)?),
            MESSAGE_TYPE_INIT_COMPLETE => Self::InitComplete(body(bytes, msg_type)?),
            MESSAGE1_TYPE_SEND_NDIS_VERSION => Self::SendNdisVersion(body(bytes, msg_type)?),
            MESSAGE1_TYPE_SEND_RECEIVE_BUFFER => Self::SendReceiveBuffer(body(bytes, msg_type)?),
            MESSAGE1_TYPE_SEND_RECEIVE_BUFFER_COMPLETE => {
                Self::SendReceiveBufferComplete(ReceiveBufferComplete::new(bytes)?)
            }
            MESSAGE1_TYPE_REVOKE_RECEIVE_BUFFER => {
                Self::RevokeReceiveBuffer(body(bytes, msg_type)?)
            }
            MESSAGE1_TYPE_SEND_SEND_BUFFER => Self::SendSendBuffer(body(bytes, msg_type)?),
            MESSAGE1_TYPE_SEND_SEND_BUFFER_COMPLETE => {
                Self::SendSendBufferComplete(body(bytes, msg_type)?)
            }
            MESSAGE1_TYPE_REVOKE_SEND_BUFFER => Self::RevokeSendBuffer(body(bytes, msg_type)?),
            MESSAGE1_TYPE_SEND_RNDIS_PACKET => Self::SendRndisPacket(body(bytes, msg_type)?),
            MESSAGE1_TYPE_SEND_RNDIS_PACKET_COMPLETE => {
                Self::SendRndisPacketComplete(body(bytes, msg_type)?)
            }
            MESSAGE2_TYPE_SEND_NDIS_CONFIG => Self::SendNdisConfig(body(bytes, msg_type)?),
            MESSAGE4_TYPE_SEND_VF_ASSOCIATION => Self::SendVfAssociation(body(bytes, msg_type)?),
            MESSAGE4_TYPE_SWITCH_DATA_PATH => Self::SwitchDataPath(body(bytes, msg_type)?),
            MESSAGE5_TYPE_OID_QUERY_EX => Self::OidQueryEx(body(bytes, msg_type)?),
            MESSAGE5_TYPE_OID_QUERY_EX_COMPLETE => Self::OidQueryExComplete(body(bytes, msg_type)?),
            MESSAGE5_TYPE_SUB_CHANNEL => match sender {
                Sender::Guest => Self::SubchannelRequest(body(bytes, msg_type)?),
                Sender::Host => Self::SubchannelComplete(body(bytes, msg_type)?),
            },
            MESSAGE5_TYPE_SEND_INDIRECTION_TABLE => {
                Self::SendIndirectionTable(SendIndirectionTable::new(bytes)?)
            }
            msg_type => Self::Unknown { msg_type },
        })
    }

    /// The message type.
    pub fn msg_type(&self) -> u32 {
        match self {
            Self::Init(_) => MESSAGE_TYPE_INIT,
            Self::InitComplete(_) => MESSAGE_TYPE_INIT_COMPLETE,
            Self::SendNdisVersion(_) => MESSAGE1_TYPE_SEND_NDIS_VERSION,
            Self::SendReceiveBuffer(_) => MESSAGE1_TYPE_SEND_RECEIVE_BUFFER,
            Self::SendReceiveBufferComplete(_) => MESSAGE1_TYPE_SEND_RECEIVE_BUFFER_COMPLETE,
            Self::RevokeReceiveBuffer(_) => MESSAGE1_TYPE_REVOKE_RECEIVE_BUFFER,
            Self::SendSendBuffer(_) => MESSAGE1_TYPE_SEND_SEND_BUFFER,
            Self::SendSendBufferComplete(_) => MESSAGE1_TYPE_SEND_SEND_BUFFER_COMPLETE,
            Self::RevokeSendBuffer(_) => MESSAGE1_TYPE_REVOKE_SEND_BUFFER,
            Self::SendRndisPacket(_) => MESSAGE1_TYPE_SEND_RNDIS_PACKET,
            Self::SendRndisPacketComplete(_) => MESSAGE1_TYPE_SEND_RNDIS_PACKET_COMPLETE,
            Self::SendNdisConfig(_) => MESSAGE2_TYPE_SEND_NDIS_CONFIG,
            Self::SendVfAssociation(_) => MESSAGE4_TYPE_SEND_VF_ASSOCIATION,
            Self::SwitchDataPath(_) => MESSAGE4_TYPE_SWITCH_DATA_PATH,
            Self::OidQueryEx(_) => MESSAGE5_TYPE_OID_QUERY_EX,
            Self::OidQueryExComplete(_) => MESSAGE5_TYPE_OID_QUERY_EX_COMPLETE,
            Self::SubchannelRequest(_) | Self::SubchannelComplete(_) => MESSAGE5_TYPE_SUB_CHANNEL,
            Self::SendIndirectionTable(_) => MESSAGE5_TYPE_SEND_INDIRECTION_TABLE,
            Self::Unknown { msg_type } => *msg_type,
        }
    }

    /// The bytes that follow the 4-byte type when this message is emitted.
    fn body_bytes(&self) -> &[u8] {
        match self {
            Self::Init(m) => m.as_bytes(),
            Self::InitComplete(m) => m.as_bytes(),
            Self::SendNdisVersion(m) => m.as_bytes(),
            Self::SendReceiveBuffer(m) => m.as_bytes(),
            Self::SendReceiveBufferComplete(view) => view.bytes.get(4..).unwrap_or_default(),
            Self::RevokeReceiveBuffer(m) => m.as_bytes(),
            Self::SendSendBuffer(m) => m.as_bytes(),
            Self::SendSendBufferComplete(m) => m.as_bytes(),
            Self::RevokeSendBuffer(m) => m.as_bytes(),
            Self::SendRndisPacket(m) => m.as_bytes(),
            Self::SendRndisPacketComplete(m) => m.as_bytes(),
            Self::SendNdisConfig(m) => m.as_bytes(),
            Self::SendVfAssociation(m) => m.as_bytes(),
            Self::SwitchDataPath(m) => m.as_bytes(),
            Self::OidQueryEx(m) => m.as_bytes(),
            Self::OidQueryExComplete(m) => m.as_bytes(),
            Self::SubchannelRequest(m) => m.as_bytes(),
            Self::SubchannelComplete(m) => m.as_bytes(),
            Self::SendIndirectionTable(view) => view.bytes.get(4..).unwrap_or_default(),
            Self::Unknown { .. } => &[],
        }
    }

    /// Bytes this message takes without padding: the type plus the body (for the borrowed
    /// views, the length of the parsed message).
    pub fn encoded_len(&self) -> usize {
        MESSAGE_HEADER_SIZE + self.body_bytes().len()
    }

    /// Writes the message at the start of `out`, zero-padded to `padded_len` bytes when that is
    /// longer than the message, and returns the bytes written
    /// (`max(encoded_len, padded_len)`). A guest passes [`GUEST_MESSAGE_SIZE`]; a host passes
    /// [`host_message_size`] (or the per-message sizes of [`super::constants`]).
    pub fn emit(&self, out: &mut [u8], padded_len: usize) -> Result<usize, NvspError> {
        let msg_type = self.msg_type();
        let body = self.body_bytes();
        emit_parts(out, msg_type, &[body], padded_len)
    }

    /// The emitted message as a new vector (see [`NvspMessage::emit`]).
    pub fn to_vec(&self, padded_len: usize) -> Vec<u8> {
        let mut out = vec![0; self.encoded_len().max(padded_len)];
        // The buffer was sized for the message, so this cannot fail.
        let written = self.emit(&mut out, padded_len).unwrap_or(0);
        out.truncate(written);
        out
    }
}

/// Writes `msg_type`, then each part in turn, then zeros up to `padded_len`.
fn emit_parts(
    out: &mut [u8],
    msg_type: u32,
    parts: &[&[u8]],
    padded_len: usize,
) -> Result<usize, NvspError> {
    let len = MESSAGE_HEADER_SIZE + parts.iter().map(|p| p.len()).sum::<usize>();
    let total = len.max(padded_len);
    let available = out.len();
    let out = out.get_mut(..total).ok_or(NvspError::BufferTooSmall {
        msg_type,
        needed: total,
        available,
    })?;
    let (header, mut rest) = out.split_at_mut(MESSAGE_HEADER_SIZE);
    header.copy_from_slice(&msg_type.to_le_bytes());
    for part in parts {
        let (dst, tail) = rest.split_at_mut(part.len());
        dst.copy_from_slice(part);
        rest = tail;
    }
    rest.fill(0);
    Ok(total)
}

// ---------------------------------------------------------------------------------------------
// SEND_RECEIVE_BUFFER_COMPLETE (102)
// ---------------------------------------------------------------------------------------------

/// Offset of the first section in SEND_RECEIVE_BUFFER_COMPLETE: type, status, count.
const SECTIONS_OFFSET: usize = MESSAGE_HEADER_SIZE + size_of::<Message1SendReceiveBufferComplete>();

/// SEND_RECEIVE_BUFFER_COMPLETE (102): status, section count and the sections that are
/// actually present in the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveBufferComplete<'a> {
    header: Message1SendReceiveBufferComplete,
    /// The whole message, type included.
    bytes: &'a [u8],
}

impl<'a> ReceiveBufferComplete<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, NvspError> {
        let header = body(bytes, MESSAGE1_TYPE_SEND_RECEIVE_BUFFER_COMPLETE)?;
        Ok(Self { header, bytes })
    }

    /// The fixed part: status and section count.
    pub fn header(&self) -> Message1SendReceiveBufferComplete {
        self.header
    }

    /// The NVSP status.
    pub fn status(&self) -> u32 {
        self.header.status.get()
    }

    /// The section count the host claims.
    pub fn num_sections(&self) -> u32 {
        self.header.num_sections.get()
    }

    /// Sections present: the claimed count, capped by what the message bytes hold.
    pub fn sections_present(&self) -> usize {
        let room =
            self.bytes.len().saturating_sub(SECTIONS_OFFSET) / size_of::<ReceiveBufferSection>();
        room.min(self.num_sections() as usize)
    }

    /// Section `index`, if it is both claimed and present.
    pub fn section(&self, index: usize) -> Option<ReceiveBufferSection> {
        if index >= self.sections_present() {
            return None;
        }
        let start = index
            .checked_mul(size_of::<ReceiveBufferSection>())?
            .checked_add(SECTIONS_OFFSET)?;
        let rest = self.bytes.get(start..)?;
        ReceiveBufferSection::read_from_prefix(rest)
            .ok()
            .map(|(section, _)| section)
    }

    /// The sections present, in order.
    pub fn sections(&self) -> impl Iterator<Item = ReceiveBufferSection> + 'a {
        let this = *self;
        (0..this.sections_present()).filter_map(move |i| this.section(i))
    }

    /// The message bytes this view was parsed from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Linux's checks of the reply to SEND_RECEIVE_BUFFER, for a receive buffer of
    /// `buffer_size` bytes: status success, exactly one section, at offset 0, with a
    /// sub-allocation size of at least 68 bytes, and `size × count` inside the buffer. Beyond
    /// Linux, a count of 0 is refused too (such a buffer cannot receive anything). Returns the
    /// one section.
    pub fn validate(&self, buffer_size: usize) -> Result<ReceiveBufferSection, NvspError> {
        let status = self.status();
        if status != STATUS_SUCCESS {
            return Err(NvspError::ReceiveBufferStatus { status });
        }
        let num_sections = self.num_sections();
        if num_sections != 1 {
            return Err(NvspError::ReceiveBufferSectionCount { num_sections });
        }
        let section = self.section(0).ok_or(NvspError::Truncated {
            msg_type: MESSAGE1_TYPE_SEND_RECEIVE_BUFFER_COMPLETE,
            len: self.bytes.len(),
            min: SECTIONS_OFFSET + size_of::<ReceiveBufferSection>(),
        })?;
        let offset = section.offset.get();
        if offset != 0 {
            return Err(NvspError::ReceiveBufferSectionOffset { offset });
        }
        let size = section.sub_allocation_size.get();
        let count = section.num_sub_allocations.get();
        if size < MIN_RECEIVE_SUB_ALLOCATION_SIZE || count == 0 {
            return Err(NvspError::ReceiveBufferSubAllocation { size, count });
        }
        if u64::from(size) * u64::from(count) > buffer_size as u64 {
            return Err(NvspError::ReceiveBufferOverflow {
                size,
                count,
                buffer_size,
            });
        }
        Ok(section)
    }
}

/// Writes SEND_RECEIVE_BUFFER_COMPLETE (102) with `status` and `sections` (a host sends one),
/// zero-padded to `padded_len`; returns the bytes written.
pub fn encode_receive_buffer_complete(
    out: &mut [u8],
    status: u32,
    sections: &[ReceiveBufferSection],
    padded_len: usize,
) -> Result<usize, NvspError> {
    let msg_type = MESSAGE1_TYPE_SEND_RECEIVE_BUFFER_COMPLETE;
    let count = u32::try_from(sections.len()).map_err(|_| NvspError::TooManyEntries {
        msg_type,
        count: sections.len(),
    })?;
    let header = Message1SendReceiveBufferComplete {
        status: U32::new(status),
        num_sections: U32::new(count),
    };
    emit_parts(
        out,
        msg_type,
        &[header.as_bytes(), sections.as_bytes()],
        padded_len,
    )
}

// ---------------------------------------------------------------------------------------------
// SEND_INDIRECTION_TABLE (134)
// ---------------------------------------------------------------------------------------------

/// Bytes of a full send indirection table.
const TABLE_BYTES: usize = SEND_INDIRECTION_TABLE_ENTRIES * 4;

/// SEND_INDIRECTION_TABLE (134): entry count, table offset, and the message bytes the table is
/// read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendIndirectionTable<'a> {
    header: Message5SendIndirectionTable,
    /// The whole message, type included.
    bytes: &'a [u8],
}

impl<'a> SendIndirectionTable<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, NvspError> {
        let header = body(bytes, MESSAGE5_TYPE_SEND_INDIRECTION_TABLE)?;
        Ok(Self { header, bytes })
    }

    /// The fixed part: count and offset as the host sent them.
    pub fn header(&self) -> Message5SendIndirectionTable {
        self.header
    }

    /// The entry count the host sent.
    pub fn count(&self) -> u32 {
        self.header.table_entry_count.get()
    }

    /// The table offset the host sent (bytes from the start of the message).
    pub fn offset(&self) -> u32 {
        self.header.table_offset.get()
    }

    /// The message bytes this view was parsed from.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The offset the table is read from at `protocol_version`.
    ///
    /// Hosts up to NVSP 6 may send a wrong offset. Like Linux, when the negotiated version is
    /// at most [`VERSION_6`] and the message is long enough to hold the table at byte
    /// [`LEGACY_INDIRECTION_TABLE_OFFSET`] (40: the header plus the largest NVSP 6 body), the
    /// table is taken from byte 40; otherwise the host's offset is used. OpenVMM's 76-byte
    /// message (offset 12) is too short for the fix-up at every version, so its offset stands.
    pub fn effective_offset(&self, protocol_version: u32) -> u64 {
        let fixed_up_end = LEGACY_INDIRECTION_TABLE_OFFSET + TABLE_BYTES;
        if protocol_version <= VERSION_6 && self.bytes.len() >= fixed_up_end {
            LEGACY_INDIRECTION_TABLE_OFFSET as u64
        } else {
            u64::from(self.offset())
        }
    }

    /// The 16 table entries (subchannel indexes; tx hash & 15 selects one), read at
    /// [`Self::effective_offset`]. Fails when the count is not 16 or the table does not lie
    /// inside the message.
    pub fn table(
        &self,
        protocol_version: u32,
    ) -> Result<[u32; SEND_INDIRECTION_TABLE_ENTRIES], NvspError> {
        let count = self.count();
        if count as usize != SEND_INDIRECTION_TABLE_ENTRIES {
            return Err(NvspError::IndirectionTableCount { count });
        }
        let offset = self.effective_offset(protocol_version);
        let out_of_bounds = NvspError::IndirectionTableOutOfBounds {
            count,
            offset,
            len: self.bytes.len(),
        };
        let start = usize::try_from(offset).map_err(|_| out_of_bounds.clone())?;
        let raw = start
            .checked_add(TABLE_BYTES)
            .and_then(|end| self.bytes.get(start..end))
            .ok_or(out_of_bounds)?;
        let mut table = [0u32; SEND_INDIRECTION_TABLE_ENTRIES];
        for (entry, chunk) in table.iter_mut().zip(raw.chunks_exact(4)) {
            *entry = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Ok(table)
    }
}

/// Writes SEND_INDIRECTION_TABLE (134) as OpenVMM does: count, offset 12, then the entries
/// (76 bytes for 16 entries); returns the bytes written.
pub fn encode_send_indirection_table(out: &mut [u8], table: &[u32]) -> Result<usize, NvspError> {
    let msg_type = MESSAGE5_TYPE_SEND_INDIRECTION_TABLE;
    let count = u32::try_from(table.len()).map_err(|_| NvspError::TooManyEntries {
        msg_type,
        count: table.len(),
    })?;
    let header = Message5SendIndirectionTable {
        table_entry_count: U32::new(count),
        table_offset: U32::new(SEND_INDIRECTION_TABLE_OFFSET),
    };
    let entries: Vec<U32> = table.iter().map(|&e| U32::new(e)).collect();
    emit_parts(out, msg_type, &[header.as_bytes(), entries.as_bytes()], 0)
}
