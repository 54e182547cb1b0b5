//! The numbers of NVSP: message types, status codes, versions, capability bits, ids and sizes.
//!
//! Values are from reference §2 and §9; names follow OpenVMM's `netvsp` protocol module (which
//! follows the Windows headers). Message-type constants carry the protocol generation that
//! introduced them (`MESSAGE1_…` for NVSP 1, `MESSAGE5_…` for NVSP 5).

// ---------------------------------------------------------------------------------------------
// Protocol versions
// ---------------------------------------------------------------------------------------------

/// NVSP 1 (`0x0000_0002`): init, NDIS version, receive/send buffers, RNDIS packets, revoke.
pub const VERSION_1: u32 = 0x0000_0002;
/// NVSP 2 (`0x0003_0002`): adds NDIS_CONFIG (MTU and capability bits).
pub const VERSION_2: u32 = 0x0003_0002;
/// NVSP 4 (`0x0004_0000`): adds VF association (128) and switch data path (129).
pub const VERSION_4: u32 = 0x0004_0000;
/// NVSP 5 (`0x0005_0000`): adds OID_QUERY_EX, subchannels (vRSS) and the send indirection table.
pub const VERSION_5: u32 = 0x0005_0000;
/// NVSP 6 (`0x0006_0000`): adds the packet-direct messages (unused by netvsc clients).
pub const VERSION_6: u32 = 0x0006_0000;
/// NVSP 6.1 (`0x0006_0001`): RSC usable, 40-byte host messages; required for confidential VMs.
pub const VERSION_61: u32 = 0x0006_0001;

/// Every version a host accepts, highest first: the order a guest tries them in INIT.
pub const VERSIONS: [u32; 6] = [
    VERSION_61, VERSION_6, VERSION_5, VERSION_4, VERSION_2, VERSION_1,
];

/// Whether `version` is one of the six NVSP versions (a host accepts exactly these).
pub const fn is_known_version(version: u32) -> bool {
    matches!(
        version,
        VERSION_1 | VERSION_2 | VERSION_4 | VERSION_5 | VERSION_6 | VERSION_61
    )
}

/// The `deprecated` field of INIT_COMPLETE for every version but NVSP 1 (OpenVMM's
/// `INVALID_PROTOCOL_VERSION`); for NVSP 1 the host puts 2 there.
pub const INVALID_PROTOCOL_VERSION: u32 = 0xFFFF_FFFF;

/// The `maximum_mdl_chain_length` a host reports in INIT_COMPLETE.
pub const MAX_MDL_CHAIN_LENGTH: u32 = 34;

// ---------------------------------------------------------------------------------------------
// NDIS versions (SEND_NDIS_VERSION)
// ---------------------------------------------------------------------------------------------

/// NDIS major version sent in SEND_NDIS_VERSION.
pub const NDIS_MAJOR_VERSION: u32 = 6;
/// NDIS 6.1 minor version: sent when the negotiated NVSP version is 4 or lower.
pub const NDIS_MINOR_VERSION_6_1: u32 = 1;
/// NDIS 6.30 minor version: sent when the negotiated NVSP version is 5 or higher (a host
/// advertises the RSS OIDs only for NDIS 6.30 and later).
pub const NDIS_MINOR_VERSION_6_30: u32 = 30;
/// NDIS 6.1 as one number (`major << 16 | minor`).
pub const NDIS_VERSION_6_1: u32 = 0x0006_0001;
/// NDIS 6.30 as one number (`major << 16 | minor`).
pub const NDIS_VERSION_6_30: u32 = 0x0006_001E;

/// The NDIS version (`major << 16 | minor`) a guest sends for a negotiated NVSP version:
/// 6.1 up to NVSP 4, 6.30 from NVSP 5.
pub const fn ndis_version_for(nvsp_version: u32) -> u32 {
    if nvsp_version <= VERSION_4 {
        NDIS_VERSION_6_1
    } else {
        NDIS_VERSION_6_30
    }
}

// ---------------------------------------------------------------------------------------------
// Message types (u32 at offset 0 of every message)
// ---------------------------------------------------------------------------------------------

/// No message (never sent).
pub const MESSAGE_TYPE_NONE: u32 = 0;
/// INIT (guest → host, completion requested; answered by INIT_COMPLETE).
pub const MESSAGE_TYPE_INIT: u32 = 1;
/// INIT_COMPLETE (host → guest, in a VMBus completion).
pub const MESSAGE_TYPE_INIT_COMPLETE: u32 = 2;
/// SEND_NDIS_VERSION (guest → host).
pub const MESSAGE1_TYPE_SEND_NDIS_VERSION: u32 = 100;
/// SEND_RECEIVE_BUFFER (guest → host; answered by SEND_RECEIVE_BUFFER_COMPLETE).
pub const MESSAGE1_TYPE_SEND_RECEIVE_BUFFER: u32 = 101;
/// SEND_RECEIVE_BUFFER_COMPLETE (host → guest): status and the buffer's sections.
pub const MESSAGE1_TYPE_SEND_RECEIVE_BUFFER_COMPLETE: u32 = 102;
/// REVOKE_RECEIVE_BUFFER (guest → host, no reply).
pub const MESSAGE1_TYPE_REVOKE_RECEIVE_BUFFER: u32 = 103;
/// SEND_SEND_BUFFER (guest → host; answered by SEND_SEND_BUFFER_COMPLETE).
pub const MESSAGE1_TYPE_SEND_SEND_BUFFER: u32 = 104;
/// SEND_SEND_BUFFER_COMPLETE (host → guest): status and section size.
pub const MESSAGE1_TYPE_SEND_SEND_BUFFER_COMPLETE: u32 = 105;
/// REVOKE_SEND_BUFFER (guest → host, no reply).
pub const MESSAGE1_TYPE_REVOKE_SEND_BUFFER: u32 = 106;
/// SEND_RNDIS_PACKET (both directions): one RNDIS message or a batch of data packets.
pub const MESSAGE1_TYPE_SEND_RNDIS_PACKET: u32 = 107;
/// SEND_RNDIS_PACKET_COMPLETE (both directions, in a VMBus completion).
pub const MESSAGE1_TYPE_SEND_RNDIS_PACKET_COMPLETE: u32 = 108;
/// SEND_NDIS_CONFIG (guest → host, NVSP 2+): MTU and capability bits.
pub const MESSAGE2_TYPE_SEND_NDIS_CONFIG: u32 = 125;
/// SEND_VF_ASSOCIATION (host → guest, NVSP 4+, unsolicited).
pub const MESSAGE4_TYPE_SEND_VF_ASSOCIATION: u32 = 128;
/// SWITCH_DATA_PATH (guest → host, and host → guest when the host forces synthetic; NVSP 4+).
pub const MESSAGE4_TYPE_SWITCH_DATA_PATH: u32 = 129;
/// UPLINK_CONNECT_STATE (deprecated, never sent).
pub const MESSAGE4_TYPE_UPLINK_CONNECT_STATE_DEPRECATED: u32 = 130;
/// OID_QUERY_EX (guest → host, NVSP 5; unused by Linux and DPDK).
pub const MESSAGE5_TYPE_OID_QUERY_EX: u32 = 131;
/// OID_QUERY_EX_COMPLETE (host → guest).
pub const MESSAGE5_TYPE_OID_QUERY_EX_COMPLETE: u32 = 132;
/// SUB_CHANNEL (NVSP 5+): the guest's request and the host's completion share this type.
pub const MESSAGE5_TYPE_SUB_CHANNEL: u32 = 133;
/// SEND_INDIRECTION_TABLE (host → guest, NVSP 5+, unsolicited).
pub const MESSAGE5_TYPE_SEND_INDIRECTION_TABLE: u32 = 134;
/// PD_API (NVSP 6, packet direct; unused by netvsc clients).
pub const MESSAGE6_TYPE_PD_API: u32 = 135;
/// PD_POST_BATCH (NVSP 6, packet direct; unused by netvsc clients).
pub const MESSAGE6_TYPE_PD_POST_BATCH: u32 = 136;

/// The specification's name of an NVSP message type, for logs; `None` for types this crate does
/// not know.
pub const fn message_type_name(msg_type: u32) -> Option<&'static str> {
    Some(match msg_type {
        MESSAGE_TYPE_NONE => "NONE",
        MESSAGE_TYPE_INIT => "INIT",
        MESSAGE_TYPE_INIT_COMPLETE => "INIT_COMPLETE",
        MESSAGE1_TYPE_SEND_NDIS_VERSION => "SEND_NDIS_VERSION",
        MESSAGE1_TYPE_SEND_RECEIVE_BUFFER => "SEND_RECEIVE_BUFFER",
        MESSAGE1_TYPE_SEND_RECEIVE_BUFFER_COMPLETE => "SEND_RECEIVE_BUFFER_COMPLETE",
        MESSAGE1_TYPE_REVOKE_RECEIVE_BUFFER => "REVOKE_RECEIVE_BUFFER",
        MESSAGE1_TYPE_SEND_SEND_BUFFER => "SEND_SEND_BUFFER",
        MESSAGE1_TYPE_SEND_SEND_BUFFER_COMPLETE => "SEND_SEND_BUFFER_COMPLETE",
        MESSAGE1_TYPE_REVOKE_SEND_BUFFER => "REVOKE_SEND_BUFFER",
        MESSAGE1_TYPE_SEND_RNDIS_PACKET => "SEND_RNDIS_PACKET",
        MESSAGE1_TYPE_SEND_RNDIS_PACKET_COMPLETE => "SEND_RNDIS_PACKET_COMPLETE",
        MESSAGE2_TYPE_SEND_NDIS_CONFIG => "SEND_NDIS_CONFIG",
        MESSAGE4_TYPE_SEND_VF_ASSOCIATION => "SEND_VF_ASSOCIATION",
        MESSAGE4_TYPE_SWITCH_DATA_PATH => "SWITCH_DATA_PATH",
        MESSAGE4_TYPE_UPLINK_CONNECT_STATE_DEPRECATED => "UPLINK_CONNECT_STATE",
        MESSAGE5_TYPE_OID_QUERY_EX => "OID_QUERY_EX",
        MESSAGE5_TYPE_OID_QUERY_EX_COMPLETE => "OID_QUERY_EX_COMPLETE",
        MESSAGE5_TYPE_SUB_CHANNEL => "SUB_CHANNEL",
        MESSAGE5_TYPE_SEND_INDIRECTION_TABLE => "SEND_INDIRECTION_TABLE",
        MESSAGE6_TYPE_PD_API => "PD_API",
        MESSAGE6_TYPE_PD_POST_BATCH => "PD_POST_BATCH",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Status codes (u32)
// ---------------------------------------------------------------------------------------------

/// No status. A host answers an unsupported INIT version with this, not with FAILURE.
pub const STATUS_NONE: u32 = 0;
/// Success.
pub const STATUS_SUCCESS: u32 = 1;
/// Failure (for example a malformed RNDIS data packet).
pub const STATUS_FAILURE: u32 = 2;
/// The requested protocol version is too new.
pub const STATUS_PROTOCOL_TOO_NEW: u32 = 3;
/// The requested protocol version is too old.
pub const STATUS_PROTOCOL_TOO_OLD: u32 = 4;
/// The RNDIS packet is invalid.
pub const STATUS_INVALID_RNDIS_PACKET: u32 = 5;
/// The peer is busy.
pub const STATUS_BUSY: u32 = 6;
/// The protocol version is unsupported (defined, not sent by known hosts).
pub const STATUS_PROTOCOL_UNSUPPORTED: u32 = 7;

// ---------------------------------------------------------------------------------------------
// NDIS config capability bits (SEND_NDIS_CONFIG, u64)
// ---------------------------------------------------------------------------------------------

/// Capability bit 0: VMQ.
pub const CAPABILITY_VMQ: u64 = 1 << 0;
/// Capability bit 1: chimney offload.
pub const CAPABILITY_CHIMNEY: u64 = 1 << 1;
/// Capability bit 2: SR-IOV. Without it the host never offers a VF.
pub const CAPABILITY_SRIOV: u64 = 1 << 2;
/// Capability bit 3: IEEE 802.1Q (VLAN tags by PPI).
pub const CAPABILITY_IEEE_8021Q: u64 = 1 << 3;
/// Capability bit 4: correlation id.
pub const CAPABILITY_CORRELATION_ID: u64 = 1 << 4;
/// Capability bit 5: teaming (makes the host send link-speed updates).
pub const CAPABILITY_TEAMING: u64 = 1 << 5;
/// Capability bit 6: virtual subnet id.
pub const CAPABILITY_VIRTUAL_SUBNET_ID: u64 = 1 << 6;
/// Capability bit 7: RSC over VMBus (NVSP 6.1+).
pub const CAPABILITY_RSC: u64 = 1 << 7;

/// The capability bits Linux sends for a negotiated version on a non-isolated guest: 802.1Q
/// always, SR-IOV and teaming from NVSP 5, RSC from 6.1 (`0x8`, `0x2c`, `0xac`).
pub const fn default_capabilities(nvsp_version: u32) -> u64 {
    let mut caps = CAPABILITY_IEEE_8021Q;
    if nvsp_version >= VERSION_5 {
        caps |= CAPABILITY_SRIOV | CAPABILITY_TEAMING;
    }
    if nvsp_version >= VERSION_61 {
        caps |= CAPABILITY_RSC;
    }
    caps
}

/// Ethernet header length added to the L3 MTU in SEND_NDIS_CONFIG's `mtu` field.
pub const ETHERNET_HEADER_LEN: u32 = 14;
/// Smallest NDIS_CONFIG `mtu` (frame size) a host accepts; others silently become this.
pub const MIN_NDIS_CONFIG_MTU: u32 = 1514;
/// Largest NDIS_CONFIG `mtu` (frame size) a host accepts.
pub const MAX_NDIS_CONFIG_MTU: u32 = 9216;

// ---------------------------------------------------------------------------------------------
// Buffers, sections, channels, data paths
// ---------------------------------------------------------------------------------------------

/// Transfer-page-set id of the receive buffer (Linux and DPDK use `0xCAFE`).
pub const RECEIVE_BUFFER_ID: u16 = 0xCAFE;
/// Id of the send buffer (Linux uses 0; the host does not care).
pub const SEND_BUFFER_ID: u16 = 0;
/// Size of one send-buffer section: fixed at 6144 bytes by Hyper-V and OpenVMM.
pub const SEND_SECTION_SIZE: u32 = 6144;
/// `send_buffer_section_index` meaning "no section": the payload is GPA-direct (or, from the
/// host, in the receive buffer).
pub const NO_SEND_SECTION: u32 = 0xFFFF_FFFF;
/// Smallest receive sub-allocation a guest accepts (Linux's `NETVSC_MTU_MIN`, 68).
pub const MIN_RECEIVE_SUB_ALLOCATION_SIZE: u32 = 68;

/// `channel_type` of SEND_RNDIS_PACKET: data (RNDIS PACKET messages).
pub const DATA_CHANNEL_TYPE: u32 = 0;
/// `channel_type` of SEND_RNDIS_PACKET: control (RNDIS management messages).
pub const CONTROL_CHANNEL_TYPE: u32 = 1;

/// `active_data_path` of SWITCH_DATA_PATH: the synthetic path.
pub const DATA_PATH_SYNTHETIC: u32 = 0;
/// `active_data_path` of SWITCH_DATA_PATH: the VF.
pub const DATA_PATH_VF: u32 = 1;

/// `vf_allocated` of SEND_VF_ASSOCIATION: the VF is being removed.
pub const VF_NOT_ALLOCATED: u32 = 0;
/// `vf_allocated` of SEND_VF_ASSOCIATION: a VF is present (its serial number is valid).
pub const VF_ALLOCATED: u32 = 1;

/// `operation` of the SUB_CHANNEL request: none.
pub const SUBCHANNEL_OPERATION_NONE: u32 = 0;
/// `operation` of the SUB_CHANNEL request: allocate `num_sub_channels` subchannels.
pub const SUBCHANNEL_OPERATION_ALLOCATE: u32 = 1;

/// Entries in the send indirection table (NVSP 134); any other count is rejected.
pub const SEND_INDIRECTION_TABLE_ENTRIES: usize = 16;

/// VMBus transaction id of the host's unsolicited VF association (OpenVMM).
pub const HOST_VF_ASSOCIATION_TRANSACTION_ID: u64 = 0x8000_0000_0000_0000;
/// VMBus transaction id of the host's unsolicited SWITCH_DATA_PATH (OpenVMM).
pub const HOST_SWITCH_DATA_PATH_TRANSACTION_ID: u64 = 0x8000_0000_0000_0001;

// ---------------------------------------------------------------------------------------------
// Message sizes
// ---------------------------------------------------------------------------------------------

/// Size of the message-type header every NVSP message starts with.
pub const MESSAGE_HEADER_SIZE: usize = 4;
/// Size a guest pads every message to (Linux's `struct nvsp_message`); hosts ignore messages
/// shorter than 32 bytes.
pub const GUEST_MESSAGE_SIZE: usize = 40;
/// Size of host messages below NVSP 6.1 (OpenVMM `PACKET_SIZE_V1`).
pub const PACKET_SIZE_V1: usize = 28;
/// Size of host messages at NVSP 6.1 (OpenVMM `PACKET_SIZE_V61`).
pub const PACKET_SIZE_V61: usize = 40;
/// Size of INIT_COMPLETE at every version (the padded size changes only after it).
pub const INIT_COMPLETE_MESSAGE_SIZE: usize = 32;
/// Size of the host's own SWITCH_DATA_PATH: unpadded at every version.
pub const HOST_SWITCH_DATA_PATH_MESSAGE_SIZE: usize = 8;
/// Size of SEND_INDIRECTION_TABLE as OpenVMM sends it: 12-byte header and 16 entries.
pub const SEND_INDIRECTION_TABLE_MESSAGE_SIZE: usize = 76;
/// Offset of the send indirection table in OpenVMM's message: right after the 12-byte header.
pub const SEND_INDIRECTION_TABLE_OFFSET: u32 = 12;
/// Offset Linux substitutes for the table when NVSP ≤ 6 and the message is long enough
/// (header plus the largest NVSP 6 body: 40 bytes), working around a host bug.
pub const LEGACY_INDIRECTION_TABLE_OFFSET: usize = 40;

/// The size a host pads its messages to at `nvsp_version` (28 below 6.1, 40 at 6.1).
pub const fn host_message_size(nvsp_version: u32) -> usize {
    if nvsp_version >= VERSION_61 {
        PACKET_SIZE_V61
    } else {
        PACKET_SIZE_V1
    }
}
