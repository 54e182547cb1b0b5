//! NDIS status codes (u32) used in RNDIS completions and status indications (reference §3.4,
//! §3.9).

/// Success.
pub const STATUS_SUCCESS: u32 = 0x0000_0000;
/// The request is pending.
pub const STATUS_PENDING: u32 = 0x0000_0103;
/// Indication: the link is up.
pub const STATUS_MEDIA_CONNECT: u32 = 0x4001_000B;
/// Indication: the link is down.
pub const STATUS_MEDIA_DISCONNECT: u32 = 0x4001_000C;
/// Indication: the link speed changed; the buffer holds the new speed in units of 100 bit/s.
pub const STATUS_LINK_SPEED_CHANGE: u32 = 0x4001_0013;
/// Indication: the network behind the port changed (re-run DHCP / ND).
pub const STATUS_NETWORK_CHANGE: u32 = 0x4001_0018;
/// Indication: the offload configuration changed; the buffer holds an NDIS_OFFLOAD.
pub const STATUS_TASK_OFFLOAD_CURRENT_CONFIG: u32 = 0x4002_0006;
/// The buffer is too small for the answer.
pub const STATUS_BUFFER_OVERFLOW: u32 = 0x8000_0005;
/// Generic failure.
pub const STATUS_FAILURE: u32 = 0xC000_0001;
/// Out of resources.
pub const STATUS_RESOURCES: u32 = 0xC000_009A;
/// Not supported (hosts answer unknown OIDs with this).
pub const STATUS_NOT_SUPPORTED: u32 = 0xC000_00BB;
/// Invalid packet.
pub const STATUS_INVALID_PACKET: u32 = 0xC001_000F;
/// Invalid length.
pub const STATUS_INVALID_LENGTH: u32 = 0xC001_0014;
/// Invalid data.
pub const STATUS_INVALID_DATA: u32 = 0xC001_0015;
/// The buffer is too short.
pub const STATUS_BUFFER_TOO_SHORT: u32 = 0xC001_0016;
/// Unknown OID.
pub const STATUS_INVALID_OID: u32 = 0xC001_0017;

/// The name of a status code, for logs; `None` for codes not listed here.
pub const fn status_name(status: u32) -> Option<&'static str> {
    Some(match status {
        STATUS_SUCCESS => "SUCCESS",
        STATUS_PENDING => "PENDING",
        STATUS_MEDIA_CONNECT => "MEDIA_CONNECT",
        STATUS_MEDIA_DISCONNECT => "MEDIA_DISCONNECT",
        STATUS_LINK_SPEED_CHANGE => "LINK_SPEED_CHANGE",
        STATUS_NETWORK_CHANGE => "NETWORK_CHANGE",
        STATUS_TASK_OFFLOAD_CURRENT_CONFIG => "TASK_OFFLOAD_CURRENT_CONFIG",
        STATUS_BUFFER_OVERFLOW => "BUFFER_OVERFLOW",
        STATUS_FAILURE => "FAILURE",
        STATUS_RESOURCES => "RESOURCES",
        STATUS_NOT_SUPPORTED => "NOT_SUPPORTED",
        STATUS_INVALID_PACKET => "INVALID_PACKET",
        STATUS_INVALID_LENGTH => "INVALID_LENGTH",
        STATUS_INVALID_DATA => "INVALID_DATA",
        STATUS_BUFFER_TOO_SHORT => "BUFFER_TOO_SHORT",
        STATUS_INVALID_OID => "INVALID_OID",
        _ => return None,
    })
}
