//! NVSP wire structs: the message-type header and one struct per message body.
//!
//! Each body starts at byte 4 of its message, right after [`MessageHeader`]. Every field is a
//! little-endian byte-order type, so every struct has alignment 1 and no hidden padding: the
//! struct size is the wire size, asserted at compile time. Constructors take native integers.

use crate::rndis::objects::NdisObjectHeader;
use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// The 4-byte header of every NVSP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct MessageHeader {
    /// One of the `MESSAGE*_TYPE_*` constants.
    pub message_type: U32,
}
const _: () = assert!(size_of::<MessageHeader>() == 4);

/// INIT (1) body: the version the guest proposes. A guest sends one candidate in both
/// fields; the host looks only at `protocol_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct MessageInit {
    /// Proposed version (was "min protocol version").
    pub protocol_version: U32,
    /// Same version again (was "max protocol version"; ignored by hosts).
    pub protocol_version2: U32,
}
const _: () = assert!(size_of::<MessageInit>() == 8);

impl MessageInit {
    /// INIT proposing `version` in both fields, as Linux and DPDK send it.
    pub fn new(version: u32) -> Self {
        Self {
            protocol_version: U32::new(version),
            protocol_version2: U32::new(version),
        }
    }
}

/// INIT_COMPLETE (2) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct MessageInitComplete {
    /// Was the negotiated version: 2 for NVSP 1, else `INVALID_PROTOCOL_VERSION`.
    pub deprecated: U32,
    /// Maximum MDL chain length (34 from Hyper-V and OpenVMM).
    pub maximum_mdl_chain_length: U32,
    /// `STATUS_SUCCESS`, or `STATUS_NONE` for an unsupported version.
    pub status: U32,
}
const _: () = assert!(size_of::<MessageInitComplete>() == 12);

impl MessageInitComplete {
    /// An INIT_COMPLETE with the given fields.
    pub fn new(deprecated: u32, maximum_mdl_chain_length: u32, status: u32) -> Self {
        Self {
            deprecated: U32::new(deprecated),
            maximum_mdl_chain_length: U32::new(maximum_mdl_chain_length),
            status: U32::new(status),
        }
    }
}

/// SEND_NDIS_VERSION (100) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message1SendNdisVersion {
    /// NDIS major version (6).
    pub ndis_major_version: U32,
    /// NDIS minor version (1 or 30).
    pub ndis_minor_version: U32,
}
const _: () = assert!(size_of::<Message1SendNdisVersion>() == 8);

impl Message1SendNdisVersion {
    /// SEND_NDIS_VERSION for `ndis_version` given as `major << 16 | minor`.
    pub fn new(ndis_version: u32) -> Self {
        Self {
            ndis_major_version: U32::new(ndis_version >> 16),
            ndis_minor_version: U32::new(ndis_version & 0xFFFF),
        }
    }

    /// The version as `major << 16 | minor` (each part truncated to 16 bits).
    pub fn ndis_version(&self) -> u32 {
        (self.ndis_major_version.get() << 16) | (self.ndis_minor_version.get() & 0xFFFF)
    }
}

/// SEND_RECEIVE_BUFFER (101) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message1SendReceiveBuffer {
    /// GPADL handle of the receive buffer.
    pub gpadl_handle: U32,
    /// Transfer-page-set id the host will use (`RECEIVE_BUFFER_ID`).
    pub id: U16,
    /// Zero.
    pub reserved: U16,
}
const _: () = assert!(size_of::<Message1SendReceiveBuffer>() == 8);

impl Message1SendReceiveBuffer {
    /// SEND_RECEIVE_BUFFER for a GPADL and id.
    pub fn new(gpadl_handle: u32, id: u16) -> Self {
        Self {
            gpadl_handle: U32::new(gpadl_handle),
            id: U16::new(id),
            reserved: U16::ZERO,
        }
    }
}

/// One section of the receive buffer, as listed in SEND_RECEIVE_BUFFER_COMPLETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct ReceiveBufferSection {
    /// Byte offset of the section in the buffer (0).
    pub offset: U32,
    /// Size of one sub-allocation (1806 from OpenVMM at MTU 1500, 1728 from Hyper-V).
    pub sub_allocation_size: U32,
    /// Number of sub-allocations.
    pub num_sub_allocations: U32,
    /// `offset + sub_allocation_size * num_sub_allocations`.
    pub end_offset: U32,
}
const _: () = assert!(size_of::<ReceiveBufferSection>() == 16);

impl ReceiveBufferSection {
    /// A section of `count` sub-allocations of `size` bytes starting at `offset`; `end_offset`
    /// is computed (wrapping, as a host would).
    pub fn new(offset: u32, size: u32, count: u32) -> Self {
        Self {
            offset: U32::new(offset),
            sub_allocation_size: U32::new(size),
            num_sub_allocations: U32::new(count),
            end_offset: U32::new(offset.wrapping_add(size.wrapping_mul(count))),
        }
    }
}

/// SEND_RECEIVE_BUFFER_COMPLETE (102) body header; `num_sections` sections of
/// [`ReceiveBufferSection`] follow it (hosts send exactly one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message1SendReceiveBufferComplete {
    /// `STATUS_SUCCESS` or a failure.
    pub status: U32,
    /// Number of sections that follow.
    pub num_sections: U32,
}
const _: () = assert!(size_of::<Message1SendReceiveBufferComplete>() == 8);

/// REVOKE_RECEIVE_BUFFER (103) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message1RevokeReceiveBuffer {
    /// The id given in SEND_RECEIVE_BUFFER.
    pub id: U16,
}
const _: () = assert!(size_of::<Message1RevokeReceiveBuffer>() == 2);

impl Message1RevokeReceiveBuffer {
    /// REVOKE_RECEIVE_BUFFER for `id`.
    pub fn new(id: u16) -> Self {
        Self { id: U16::new(id) }
    }
}

/// SEND_SEND_BUFFER (104) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message1SendSendBuffer {
    /// GPADL handle of the send buffer.
    pub gpadl_handle: U32,
    /// Buffer id (Linux 0, DPDK `0xFACE`; the host does not care).
    pub id: U16,
    /// Zero.
    pub reserved: U16,
}
const _: () = assert!(size_of::<Message1SendSendBuffer>() == 8);

impl Message1SendSendBuffer {
    /// SEND_SEND_BUFFER for a GPADL and id.
    pub fn new(gpadl_handle: u32, id: u16) -> Self {
        Self {
            gpadl_handle: U32::new(gpadl_handle),
            id: U16::new(id),
            reserved: U16::ZERO,
        }
    }
}

/// SEND_SEND_BUFFER_COMPLETE (105) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message1SendSendBufferComplete {
    /// `STATUS_SUCCESS` or a failure.
    pub status: U32,
    /// Section size chosen by the host (`SEND_SECTION_SIZE`, 6144).
    pub section_size: U32,
}
const _: () = assert!(size_of::<Message1SendSendBufferComplete>() == 8);

impl Message1SendSendBufferComplete {
    /// SEND_SEND_BUFFER_COMPLETE with a status and section size.
    pub fn new(status: u32, section_size: u32) -> Self {
        Self {
            status: U32::new(status),
            section_size: U32::new(section_size),
        }
    }
}

/// REVOKE_SEND_BUFFER (106) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message1RevokeSendBuffer {
    /// The id given in SEND_SEND_BUFFER.
    pub id: U16,
}
const _: () = assert!(size_of::<Message1RevokeSendBuffer>() == 2);

impl Message1RevokeSendBuffer {
    /// REVOKE_SEND_BUFFER for `id`.
    pub fn new(id: u16) -> Self {
        Self { id: U16::new(id) }
    }
}

/// SEND_RNDIS_PACKET (107) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message1SendRndisPacket {
    /// `DATA_CHANNEL_TYPE` (0) or `CONTROL_CHANNEL_TYPE` (1).
    pub channel_type: U32,
    /// Send-buffer section holding the RNDIS bytes, or `NO_SEND_SECTION`.
    pub send_buffer_section_index: U32,
    /// Bytes used in that section (0 without a section).
    pub send_buffer_section_size: U32,
}
const _: () = assert!(size_of::<Message1SendRndisPacket>() == 12);

impl Message1SendRndisPacket {
    /// SEND_RNDIS_PACKET with the given fields.
    pub fn new(channel_type: u32, section_index: u32, section_size: u32) -> Self {
        Self {
            channel_type: U32::new(channel_type),
            send_buffer_section_index: U32::new(section_index),
            send_buffer_section_size: U32::new(section_size),
        }
    }
}

/// SEND_RNDIS_PACKET_COMPLETE (108) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message1SendRndisPacketComplete {
    /// `STATUS_SUCCESS` or `STATUS_FAILURE`.
    pub status: U32,
}
const _: () = assert!(size_of::<Message1SendRndisPacketComplete>() == 4);

impl Message1SendRndisPacketComplete {
    /// SEND_RNDIS_PACKET_COMPLETE with `status`.
    pub fn new(status: u32) -> Self {
        Self {
            status: U32::new(status),
        }
    }
}

/// SEND_NDIS_CONFIG (125) body. `capabilities` sits at byte 12 of the message, not 8-byte
/// aligned; as a little-endian byte-order type it needs no alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message2SendNdisConfig {
    /// Frame size: L3 MTU + 14 (hosts accept 1514..=9216).
    pub mtu: U32,
    /// Zero.
    pub reserved: U32,
    /// `CAPABILITY_*` bits.
    pub capabilities: U64,
}
const _: () = assert!(size_of::<Message2SendNdisConfig>() == 16);

impl Message2SendNdisConfig {
    /// SEND_NDIS_CONFIG for a frame size (`L3 MTU + 14`) and capability bits.
    pub fn new(mtu: u32, capabilities: u64) -> Self {
        Self {
            mtu: U32::new(mtu),
            reserved: U32::ZERO,
            capabilities: U64::new(capabilities),
        }
    }
}

/// SEND_VF_ASSOCIATION (128) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message4SendVfAssociation {
    /// `VF_ALLOCATED` (1) or `VF_NOT_ALLOCATED` (0).
    pub vf_allocated: U32,
    /// Serial number of the VF (its PCI slot name), valid when allocated.
    pub serial_number: U32,
}
const _: () = assert!(size_of::<Message4SendVfAssociation>() == 8);

impl Message4SendVfAssociation {
    /// SEND_VF_ASSOCIATION with the given fields.
    pub fn new(allocated: bool, serial_number: u32) -> Self {
        Self {
            vf_allocated: U32::new(u32::from(allocated)),
            serial_number: U32::new(serial_number),
        }
    }
}

/// SWITCH_DATA_PATH (129) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message4SwitchDataPath {
    /// `DATA_PATH_SYNTHETIC` (0) or `DATA_PATH_VF` (1).
    pub active_data_path: U32,
}
const _: () = assert!(size_of::<Message4SwitchDataPath>() == 4);

impl Message4SwitchDataPath {
    /// SWITCH_DATA_PATH to `active_data_path`.
    pub fn new(active_data_path: u32) -> Self {
        Self {
            active_data_path: U32::new(active_data_path),
        }
    }
}

/// OID_QUERY_EX (131) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message5OidQueryEx {
    /// NDIS object header of the request.
    pub header: NdisObjectHeader,
    /// The OID queried.
    pub oid: U32,
}
const _: () = assert!(size_of::<Message5OidQueryEx>() == 8);

/// OID_QUERY_EX_COMPLETE (132) body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message5OidQueryExComplete {
    /// An NDIS status (hosts answer `NOT_SUPPORTED`).
    pub status: U32,
    /// Bytes of result.
    pub bytes: U32,
}
const _: () = assert!(size_of::<Message5OidQueryExComplete>() == 8);

/// SUB_CHANNEL (133) request body (guest → host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message5SubchannelRequest {
    /// `SUBCHANNEL_OPERATION_ALLOCATE`.
    pub operation: U32,
    /// Subchannels wanted (queues − 1).
    pub num_sub_channels: U32,
}
const _: () = assert!(size_of::<Message5SubchannelRequest>() == 8);

impl Message5SubchannelRequest {
    /// A request to allocate `num_sub_channels` subchannels.
    pub fn allocate(num_sub_channels: u32) -> Self {
        Self {
            operation: U32::new(super::SUBCHANNEL_OPERATION_ALLOCATE),
            num_sub_channels: U32::new(num_sub_channels),
        }
    }
}

/// SUB_CHANNEL (133) completion body (host → guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message5SubchannelComplete {
    /// `STATUS_SUCCESS` or `STATUS_FAILURE`.
    pub status: U32,
    /// Subchannels allocated (may be fewer than requested).
    pub num_sub_channels: U32,
}
const _: () = assert!(size_of::<Message5SubchannelComplete>() == 8);

impl Message5SubchannelComplete {
    /// A completion with `status` and the number allocated.
    pub fn new(status: u32, num_sub_channels: u32) -> Self {
        Self {
            status: U32::new(status),
            num_sub_channels: U32::new(num_sub_channels),
        }
    }
}

/// SEND_INDIRECTION_TABLE (134) body header; the `u32` table lies at `table_offset` bytes
/// from the start of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct Message5SendIndirectionTable {
    /// Number of entries (must be 16).
    pub table_entry_count: U32,
    /// Byte offset of the table from the start of the NVSP message.
    pub table_offset: U32,
}
const _: () = assert!(size_of::<Message5SendIndirectionTable>() == 8);
