//! OIDs used by netvsc clients (reference §3.5), packet-filter bits and media states.

/// Query: the list of supported OIDs.
pub const OID_GEN_SUPPORTED_LIST: u32 = 0x0001_0101;
/// Query: the L3 MTU (the NDIS-config frame size − 14).
pub const OID_GEN_MAXIMUM_FRAME_SIZE: u32 = 0x0001_0106;
/// Query: link speed, `u32` in units of 100 bit/s.
pub const OID_GEN_LINK_SPEED: u32 = 0x0001_0107;
/// Set: the packet filter (`NDIS_PACKET_TYPE_*` bits); receive stays off while it is 0.
pub const OID_GEN_CURRENT_PACKET_FILTER: u32 = 0x0001_010E;
/// Query: `MEDIA_STATE_CONNECTED` (0) or `MEDIA_STATE_DISCONNECTED` (1).
pub const OID_GEN_MEDIA_CONNECT_STATUS: u32 = 0x0001_0114;
/// Set: a name/value configuration parameter (Linux sets "NetworkAddress" to change the MAC).
pub const OID_GEN_RNDIS_CONFIG_PARAMETER: u32 = 0x0001_021B;
/// Query: RSS capabilities (an [`NdisReceiveScaleCapabilities`](super::objects::NdisReceiveScaleCapabilities)).
pub const OID_GEN_RECEIVE_SCALE_CAPABILITIES: u32 = 0x0001_0203;
/// Set: RSS parameters (an [`NdisReceiveScaleParameters`](super::objects::NdisReceiveScaleParameters)
/// followed by the indirection table and the key).
pub const OID_GEN_RECEIVE_SCALE_PARAMETERS: u32 = 0x0001_0204;
/// Query: maximum link speed, `{u64 xmit, u64 rcv}` in bit/s.
pub const OID_GEN_MAX_LINK_SPEED: u32 = 0x0001_0206;
/// Query: an [`NdisLinkState`](super::objects::NdisLinkState) object.
pub const OID_GEN_LINK_STATE: u32 = 0x0001_0207;
/// Query: the adapter's friendly name (UTF-16).
pub const OID_GEN_FRIENDLY_NAME: u32 = 0x0002_0216;
/// Query: the permanent MAC address (6 bytes).
pub const OID_802_3_PERMANENT_ADDRESS: u32 = 0x0101_0101;
/// Query: the current MAC address (6 bytes).
pub const OID_802_3_CURRENT_ADDRESS: u32 = 0x0101_0102;
/// Set: the multicast list (hosts support none).
pub const OID_802_3_MULTICAST_LIST: u32 = 0x0101_0103;
/// Query/set: offload encapsulation (IEEE 802.3, header size 14).
pub const OID_OFFLOAD_ENCAPSULATION: u32 = 0x0101_010A;
/// Query: the current offload configuration (an [`NdisOffload`](super::objects::NdisOffload)).
pub const OID_TCP_OFFLOAD_CURRENT_CONFIG: u32 = 0xFC01_020B;
/// Set: offload parameters (an [`NdisOffloadParameters`](super::objects::NdisOffloadParameters)).
pub const OID_TCP_OFFLOAD_PARAMETERS: u32 = 0xFC01_020C;
/// Query: offload hardware capabilities (an [`NdisOffload`](super::objects::NdisOffload)).
pub const OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES: u32 = 0xFC01_020D;

/// The name of an OID, for logs; `None` for OIDs not listed here.
pub const fn oid_name(oid: u32) -> Option<&'static str> {
    Some(match oid {
        OID_GEN_SUPPORTED_LIST => "OID_GEN_SUPPORTED_LIST",
        OID_GEN_MAXIMUM_FRAME_SIZE => "OID_GEN_MAXIMUM_FRAME_SIZE",
        OID_GEN_LINK_SPEED => "OID_GEN_LINK_SPEED",
        OID_GEN_CURRENT_PACKET_FILTER => "OID_GEN_CURRENT_PACKET_FILTER",
        OID_GEN_MEDIA_CONNECT_STATUS => "OID_GEN_MEDIA_CONNECT_STATUS",
        OID_GEN_RNDIS_CONFIG_PARAMETER => "OID_GEN_RNDIS_CONFIG_PARAMETER",
        OID_GEN_RECEIVE_SCALE_CAPABILITIES => "OID_GEN_RECEIVE_SCALE_CAPABILITIES",
        OID_GEN_RECEIVE_SCALE_PARAMETERS => "OID_GEN_RECEIVE_SCALE_PARAMETERS",
        OID_GEN_MAX_LINK_SPEED => "OID_GEN_MAX_LINK_SPEED",
        OID_GEN_LINK_STATE => "OID_GEN_LINK_STATE",
        OID_GEN_FRIENDLY_NAME => "OID_GEN_FRIENDLY_NAME",
        OID_802_3_PERMANENT_ADDRESS => "OID_802_3_PERMANENT_ADDRESS",
        OID_802_3_CURRENT_ADDRESS => "OID_802_3_CURRENT_ADDRESS",
        OID_802_3_MULTICAST_LIST => "OID_802_3_MULTICAST_LIST",
        OID_OFFLOAD_ENCAPSULATION => "OID_OFFLOAD_ENCAPSULATION",
        OID_TCP_OFFLOAD_CURRENT_CONFIG => "OID_TCP_OFFLOAD_CURRENT_CONFIG",
        OID_TCP_OFFLOAD_PARAMETERS => "OID_TCP_OFFLOAD_PARAMETERS",
        OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES => "OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES",
        _ => return None,
    })
}

// ---------------------------------------------------------------------------------------------
// Packet filter (OID_GEN_CURRENT_PACKET_FILTER)
// ---------------------------------------------------------------------------------------------

/// Frames addressed to this MAC.
pub const NDIS_PACKET_TYPE_DIRECTED: u32 = 0x0000_0001;
/// Multicast frames of the multicast list.
pub const NDIS_PACKET_TYPE_MULTICAST: u32 = 0x0000_0002;
/// All multicast frames.
pub const NDIS_PACKET_TYPE_ALL_MULTICAST: u32 = 0x0000_0004;
/// Broadcast frames.
pub const NDIS_PACKET_TYPE_BROADCAST: u32 = 0x0000_0008;
/// Source routing (unused on Ethernet).
pub const NDIS_PACKET_TYPE_SOURCE_ROUTING: u32 = 0x0000_0010;
/// Every frame.
pub const NDIS_PACKET_TYPE_PROMISCUOUS: u32 = 0x0000_0020;
/// SMT frames (FDDI; unused).
pub const NDIS_PACKET_TYPE_SMT: u32 = 0x0000_0040;
/// All local frames.
pub const NDIS_PACKET_TYPE_ALL_LOCAL: u32 = 0x0000_0080;
/// Group frames (token ring; unused).
pub const NDIS_PACKET_TYPE_GROUP: u32 = 0x0000_1000;
/// All functional frames (token ring; unused).
pub const NDIS_PACKET_TYPE_ALL_FUNCTIONAL: u32 = 0x0000_2000;
/// Functional frames (token ring; unused).
pub const NDIS_PACKET_TYPE_FUNCTIONAL: u32 = 0x0000_4000;
/// MAC frames (token ring; unused).
pub const NDIS_PACKET_TYPE_MAC_FRAME: u32 = 0x0000_8000;
/// Linux's filter when the interface is up: directed | all-multicast | broadcast (`0x0D`).
pub const DEFAULT_PACKET_FILTER: u32 =
    NDIS_PACKET_TYPE_DIRECTED | NDIS_PACKET_TYPE_ALL_MULTICAST | NDIS_PACKET_TYPE_BROADCAST;

// ---------------------------------------------------------------------------------------------
// Media state (OID_GEN_MEDIA_CONNECT_STATUS)
// ---------------------------------------------------------------------------------------------

/// OID_GEN_MEDIA_CONNECT_STATUS: connected.
pub const MEDIA_STATE_CONNECTED: u32 = 0;
/// OID_GEN_MEDIA_CONNECT_STATUS: disconnected.
pub const MEDIA_STATE_DISCONNECTED: u32 = 1;
