//! RNDIS message types and the wire structs of every message body.
//!
//! A message is [`MessageHeader`] (type and total length) followed by a body. Names follow
//! OpenVMM's `rndisprot` (which follows the RNDIS specification): `InitializeRequest`,
//! `InitializeComplete`, `QueryRequest`, … Every field is a little-endian byte-order type, so
//! the structs have alignment 1 and their sizes are the wire sizes, asserted at compile time.

use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

// ---------------------------------------------------------------------------------------------
// Message types
// ---------------------------------------------------------------------------------------------

/// Data packet (both directions).
pub const MESSAGE_TYPE_PACKET_MSG: u32 = 0x0000_0001;
/// INITIALIZE request (guest → host).
pub const MESSAGE_TYPE_INITIALIZE_MSG: u32 = 0x0000_0002;
/// HALT (guest → host, no reply).
pub const MESSAGE_TYPE_HALT_MSG: u32 = 0x0000_0003;
/// QUERY request (guest → host).
pub const MESSAGE_TYPE_QUERY_MSG: u32 = 0x0000_0004;
/// SET request (guest → host).
pub const MESSAGE_TYPE_SET_MSG: u32 = 0x0000_0005;
/// RESET request (guest → host; fatal to an OpenVMM channel).
pub const MESSAGE_TYPE_RESET_MSG: u32 = 0x0000_0006;
/// Status indication (host → guest, unsolicited).
pub const MESSAGE_TYPE_INDICATE_STATUS_MSG: u32 = 0x0000_0007;
/// KEEPALIVE request.
pub const MESSAGE_TYPE_KEEPALIVE_MSG: u32 = 0x0000_0008;
/// SET_EX request (unused; fatal to an OpenVMM channel).
pub const MESSAGE_TYPE_SET_EX_MSG: u32 = 0x0000_0009;
/// Bit set in the type of every completion.
pub const MESSAGE_COMPLETION: u32 = 0x8000_0000;
/// INITIALIZE completion.
pub const MESSAGE_TYPE_INITIALIZE_CMPLT: u32 = MESSAGE_COMPLETION | MESSAGE_TYPE_INITIALIZE_MSG;
/// QUERY completion.
pub const MESSAGE_TYPE_QUERY_CMPLT: u32 = MESSAGE_COMPLETION | MESSAGE_TYPE_QUERY_MSG;
/// SET completion.
pub const MESSAGE_TYPE_SET_CMPLT: u32 = MESSAGE_COMPLETION | MESSAGE_TYPE_SET_MSG;
/// RESET completion.
pub const MESSAGE_TYPE_RESET_CMPLT: u32 = MESSAGE_COMPLETION | MESSAGE_TYPE_RESET_MSG;
/// KEEPALIVE completion.
pub const MESSAGE_TYPE_KEEPALIVE_CMPLT: u32 = MESSAGE_COMPLETION | MESSAGE_TYPE_KEEPALIVE_MSG;

/// The specification's name of a message type, for logs; `None` for unknown types.
pub const fn message_type_name(msg_type: u32) -> Option<&'static str> {
    Some(match msg_type {
        MESSAGE_TYPE_PACKET_MSG => "PACKET_MSG",
        MESSAGE_TYPE_INITIALIZE_MSG => "INITIALIZE_MSG",
        MESSAGE_TYPE_HALT_MSG => "HALT_MSG",
        MESSAGE_TYPE_QUERY_MSG => "QUERY_MSG",
        MESSAGE_TYPE_SET_MSG => "SET_MSG",
        MESSAGE_TYPE_RESET_MSG => "RESET_MSG",
        MESSAGE_TYPE_INDICATE_STATUS_MSG => "INDICATE_STATUS_MSG",
        MESSAGE_TYPE_KEEPALIVE_MSG => "KEEPALIVE_MSG",
        MESSAGE_TYPE_SET_EX_MSG => "SET_EX_MSG",
        MESSAGE_TYPE_INITIALIZE_CMPLT => "INITIALIZE_CMPLT",
        MESSAGE_TYPE_QUERY_CMPLT => "QUERY_CMPLT",
        MESSAGE_TYPE_SET_CMPLT => "SET_CMPLT",
        MESSAGE_TYPE_RESET_CMPLT => "RESET_CMPLT",
        MESSAGE_TYPE_KEEPALIVE_CMPLT => "KEEPALIVE_CMPLT",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Numbers used in INITIALIZE and its completion
// ---------------------------------------------------------------------------------------------

/// RNDIS major version (1).
pub const RNDIS_MAJOR_VERSION: u32 = 1;
/// RNDIS minor version (0).
pub const RNDIS_MINOR_VERSION: u32 = 0;
/// `max_transfer_size` Linux and DPDK send in INITIALIZE.
pub const GUEST_MAX_TRANSFER_SIZE: u32 = 0x4000;
/// `device_flags` of INITIALIZE_CMPLT: connectionless device.
pub const DF_CONNECTIONLESS: u32 = 0x0000_0001;
/// `medium` of INITIALIZE_CMPLT: 802.3.
pub const MEDIUM_802_3: u32 = 0;
/// `max_packets_per_message` a host reports (8); Linux caps aggregation there too.
pub const HOST_MAX_PACKETS_PER_MESSAGE: u32 = 8;
/// `max_transfer_size` OpenVMM reports.
pub const HOST_MAX_TRANSFER_SIZE: u32 = 0xEFFF_FFFF;
/// `packet_alignment_factor` a host reports: log2 of the alignment (8 bytes).
pub const HOST_PACKET_ALIGNMENT_FACTOR: u32 = 3;

// ---------------------------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------------------------

/// Size of [`MessageHeader`]; body offsets are relative to this byte.
pub const MESSAGE_HEADER_SIZE: usize = 8;
/// Size of a PACKET message header: message header plus [`Packet`] (44).
pub const PACKET_MESSAGE_SIZE: usize = MESSAGE_HEADER_SIZE + size_of::<Packet>();
/// Size of an INITIALIZE message (24).
pub const INITIALIZE_MESSAGE_SIZE: usize = MESSAGE_HEADER_SIZE + size_of::<InitializeRequest>();
/// Size of an INITIALIZE_CMPLT message (52).
pub const INITIALIZE_COMPLETE_MESSAGE_SIZE: usize =
    MESSAGE_HEADER_SIZE + size_of::<InitializeComplete>();
/// Size of a QUERY or SET message without its information buffer (28); the buffer follows.
pub const OID_REQUEST_MESSAGE_SIZE: usize = MESSAGE_HEADER_SIZE + size_of::<QueryRequest>();
/// `information_buffer_offset` of a QUERY or SET whose buffer directly follows the header (20).
pub const OID_REQUEST_INFO_OFFSET: u32 = size_of::<QueryRequest>() as u32;
/// Size of a QUERY_CMPLT message without its information buffer (24).
pub const QUERY_COMPLETE_MESSAGE_SIZE: usize = MESSAGE_HEADER_SIZE + size_of::<QueryComplete>();
/// `information_buffer_offset` of a QUERY_CMPLT whose buffer directly follows the header (16).
pub const QUERY_COMPLETE_INFO_OFFSET: u32 = size_of::<QueryComplete>() as u32;
/// Size of an INDICATE_STATUS message without its status buffer (20).
pub const INDICATE_STATUS_MESSAGE_SIZE: usize = MESSAGE_HEADER_SIZE + size_of::<IndicateStatus>();
/// `status_buffer_offset` of an INDICATE_STATUS whose buffer directly follows the header (12).
pub const INDICATE_STATUS_BUFFER_OFFSET: u32 = size_of::<IndicateStatus>() as u32;

// ---------------------------------------------------------------------------------------------
// Wire structs
// ---------------------------------------------------------------------------------------------

/// The 8-byte header of every RNDIS message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct MessageHeader {
    /// One of the `MESSAGE_TYPE_*` constants.
    pub message_type: U32,
    /// Length of the whole message, this header included.
    pub message_length: U32,
}
const _: () = assert!(size_of::<MessageHeader>() == 8);

/// PACKET body (36 bytes after the message header). Offsets are relative to byte 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Packet {
    /// Offset of the frame.
    pub data_offset: U32,
    /// Length of the frame.
    pub data_length: U32,
    /// Offset of out-of-band data (unused; hosts reject it).
    pub oob_data_offset: U32,
    /// Length of out-of-band data.
    pub oob_data_length: U32,
    /// Number of out-of-band elements.
    pub num_oob_data_elements: U32,
    /// Offset of the per-packet-info area (36 when it follows the header).
    pub per_packet_info_offset: U32,
    /// Length of the per-packet-info area.
    pub per_packet_info_length: U32,
    /// VC handle (0 for connectionless data; hosts reject anything else).
    pub vc_handle: U32,
    /// Zero.
    pub reserved: U32,
}
const _: () = assert!(size_of::<Packet>() == 36);

/// INITIALIZE body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct InitializeRequest {
    /// Echoed in the completion.
    pub request_id: U32,
    /// [`RNDIS_MAJOR_VERSION`].
    pub major_version: U32,
    /// [`RNDIS_MINOR_VERSION`].
    pub minor_version: U32,
    /// Largest message the guest accepts ([`GUEST_MAX_TRANSFER_SIZE`]).
    pub max_transfer_size: U32,
}
const _: () = assert!(size_of::<InitializeRequest>() == 16);

impl InitializeRequest {
    /// INITIALIZE for RNDIS 1.0.
    pub fn new(request_id: u32, max_transfer_size: u32) -> Self {
        Self {
            request_id: U32::new(request_id),
            major_version: U32::new(RNDIS_MAJOR_VERSION),
            minor_version: U32::new(RNDIS_MINOR_VERSION),
            max_transfer_size: U32::new(max_transfer_size),
        }
    }
}

/// INITIALIZE_CMPLT body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct InitializeComplete {
    /// The request's id.
    pub request_id: U32,
    /// An NDIS status.
    pub status: U32,
    /// RNDIS major version.
    pub major_version: U32,
    /// RNDIS minor version.
    pub minor_version: U32,
    /// [`DF_CONNECTIONLESS`].
    pub device_flags: U32,
    /// [`MEDIUM_802_3`].
    pub medium: U32,
    /// Most PACKET messages per send (aggregation limit).
    pub max_packets_per_message: U32,
    /// Largest message the host accepts.
    pub max_transfer_size: U32,
    /// log2 of the alignment of aggregated packets.
    pub packet_alignment_factor: U32,
    /// Address-family list offset (0).
    pub af_list_offset: U32,
    /// Address-family list size (0).
    pub af_list_size: U32,
}
const _: () = assert!(size_of::<InitializeComplete>() == 44);

impl InitializeComplete {
    /// The completion a host sends: success, RNDIS 1.0, connectionless 802.3, 8 packets per
    /// message, max transfer `0xEFFFFFFF`, alignment 2^3.
    pub fn host_default(request_id: u32) -> Self {
        Self {
            request_id: U32::new(request_id),
            status: U32::new(super::status::STATUS_SUCCESS),
            major_version: U32::new(RNDIS_MAJOR_VERSION),
            minor_version: U32::new(RNDIS_MINOR_VERSION),
            device_flags: U32::new(DF_CONNECTIONLESS),
            medium: U32::new(MEDIUM_802_3),
            max_packets_per_message: U32::new(HOST_MAX_PACKETS_PER_MESSAGE),
            max_transfer_size: U32::new(HOST_MAX_TRANSFER_SIZE),
            packet_alignment_factor: U32::new(HOST_PACKET_ALIGNMENT_FACTOR),
            af_list_offset: U32::ZERO,
            af_list_size: U32::ZERO,
        }
    }
}

/// HALT body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct HaltRequest {
    /// Request id (no completion carries it back).
    pub request_id: U32,
}
const _: () = assert!(size_of::<HaltRequest>() == 4);

/// QUERY body; the information buffer follows at `information_buffer_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct QueryRequest {
    /// Echoed in the completion.
    pub request_id: U32,
    /// The OID.
    pub oid: U32,
    /// Length of the input buffer.
    pub information_buffer_length: U32,
    /// Offset of the input buffer ([`OID_REQUEST_INFO_OFFSET`]).
    pub information_buffer_offset: U32,
    /// Zero.
    pub device_vc_handle: U32,
}
const _: () = assert!(size_of::<QueryRequest>() == 20);

/// QUERY_CMPLT body; the information buffer follows at `information_buffer_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct QueryComplete {
    /// The request's id.
    pub request_id: U32,
    /// An NDIS status.
    pub status: U32,
    /// Length of the answer.
    pub information_buffer_length: U32,
    /// Offset of the answer ([`QUERY_COMPLETE_INFO_OFFSET`]).
    pub information_buffer_offset: U32,
}
const _: () = assert!(size_of::<QueryComplete>() == 16);

/// SET body; the information buffer follows at `information_buffer_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct SetRequest {
    /// Echoed in the completion.
    pub request_id: U32,
    /// The OID.
    pub oid: U32,
    /// Length of the value.
    pub information_buffer_length: U32,
    /// Offset of the value ([`OID_REQUEST_INFO_OFFSET`]).
    pub information_buffer_offset: U32,
    /// Zero.
    pub device_vc_handle: U32,
}
const _: () = assert!(size_of::<SetRequest>() == 20);

/// SET_EX body (same layout as SET; unused by netvsc clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct SetExRequest {
    /// Request id.
    pub request_id: U32,
    /// The OID.
    pub oid: U32,
    /// Length of the value.
    pub information_buffer_length: U32,
    /// Offset of the value.
    pub information_buffer_offset: U32,
    /// Zero.
    pub device_vc_handle: U32,
}
const _: () = assert!(size_of::<SetExRequest>() == 20);

/// SET_CMPLT body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct SetComplete {
    /// The request's id.
    pub request_id: U32,
    /// An NDIS status.
    pub status: U32,
}
const _: () = assert!(size_of::<SetComplete>() == 8);

/// RESET body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct ResetRequest {
    /// Zero.
    pub reserved: U32,
}
const _: () = assert!(size_of::<ResetRequest>() == 4);

/// RESET_CMPLT body (carries no request id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct ResetComplete {
    /// An NDIS status.
    pub status: U32,
    /// Whether addressing information was reset.
    pub addressing_reset: U32,
}
const _: () = assert!(size_of::<ResetComplete>() == 8);

/// INDICATE_STATUS body; the status buffer follows at `status_buffer_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct IndicateStatus {
    /// The indication (`STATUS_MEDIA_CONNECT`, …).
    pub status: U32,
    /// Length of the status buffer.
    pub status_buffer_length: U32,
    /// Offset of the status buffer (12, or 0 without a buffer).
    pub status_buffer_offset: U32,
}
const _: () = assert!(size_of::<IndicateStatus>() == 12);

/// KEEPALIVE body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct KeepaliveRequest {
    /// Echoed in the completion.
    pub request_id: U32,
}
const _: () = assert!(size_of::<KeepaliveRequest>() == 4);

/// KEEPALIVE_CMPLT body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct KeepaliveComplete {
    /// The request's id.
    pub request_id: U32,
    /// An NDIS status.
    pub status: U32,
}
const _: () = assert!(size_of::<KeepaliveComplete>() == 8);
