//! NDIS_OFFLOAD (object type `0xA7`: hardware capabilities and current configuration) and
//! NDIS_OFFLOAD_PARAMETERS (object type `0x80`), reference §3.6.

use super::{
    NDIS_OBJECT_TYPE_DEFAULT, NDIS_OBJECT_TYPE_OFFLOAD, NdisObjectHeader, parse_object, wire_prefix,
};
use crate::nvsp::constants::{VERSION_4, VERSION_5};
use crate::rndis::error::RndisError;
use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout, Unaligned};

// ---------------------------------------------------------------------------------------------
// NDIS_OFFLOAD (hardware capabilities, current configuration)
// ---------------------------------------------------------------------------------------------

/// NDIS_OFFLOAD revision 1 size (NVSP ≤ 2).
pub const NDIS_OFFLOAD_SIZE_REVISION_1: u16 = 112;
/// NDIS_OFFLOAD revision 2 size (NVSP 4, NDIS 6.1).
pub const NDIS_OFFLOAD_SIZE_REVISION_2: u16 = 144;
/// NDIS_OFFLOAD revision 3 size (NVSP ≥ 5, NDIS 6.30).
pub const NDIS_OFFLOAD_SIZE_REVISION_3: u16 = 156;

/// Encapsulation value: IEEE 802.3 (Linux enables TSO only when the LSOv2 encapsulation has it).
pub const NDIS_ENCAPSULATION_IEEE_802_3: u32 = 0x0000_0002;

/// Checksum capability (IPv4 flags): IP options supported.
pub const NDIS_CSUM_CAP_IP4_OPTIONS: u32 = 0x001;
/// Checksum capability (IPv4 flags): TCP options supported.
pub const NDIS_CSUM_CAP_TCP4_OPTIONS: u32 = 0x004;
/// Checksum capability (IPv4 flags): TCP checksum.
pub const NDIS_CSUM_CAP_TCP4: u32 = 0x010;
/// Checksum capability (IPv4 flags): UDP checksum.
pub const NDIS_CSUM_CAP_UDP4: u32 = 0x040;
/// Checksum capability (IPv4 flags): IP header checksum.
pub const NDIS_CSUM_CAP_IP4: u32 = 0x100;
/// Checksum capability (IPv6 flags): extension headers supported.
pub const NDIS_CSUM_CAP_IP6_EXTENSION_HEADERS: u32 = 0x001;
/// Checksum capability (IPv6 flags): TCP options supported.
pub const NDIS_CSUM_CAP_TCP6_OPTIONS: u32 = 0x004;
/// Checksum capability (IPv6 flags): TCP checksum.
pub const NDIS_CSUM_CAP_TCP6: u32 = 0x010;
/// Checksum capability (IPv6 flags): UDP checksum.
pub const NDIS_CSUM_CAP_UDP6: u32 = 0x040;
/// LSOv2 IPv6 flags: extension headers supported.
pub const NDIS_LSOV2_CAP_IP6_EXTENSION_HEADERS: u32 = 0x001;
/// LSOv2 IPv6 flags: TCP options supported.
pub const NDIS_LSOV2_CAP_TCP6_OPTIONS: u32 = 0x004;

/// Checksum offload block of NDIS_OFFLOAD: encapsulation and `NDIS_CSUM_CAP_*` flags per
/// IP version and direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NdisTcpIpChecksumOffload {
    /// IPv4 transmit encapsulation.
    pub ipv4_tx_encapsulation: U32,
    /// IPv4 transmit flags.
    pub ipv4_tx_flags: U32,
    /// IPv4 receive encapsulation.
    pub ipv4_rx_encapsulation: U32,
    /// IPv4 receive flags.
    pub ipv4_rx_flags: U32,
    /// IPv6 transmit encapsulation.
    pub ipv6_tx_encapsulation: U32,
    /// IPv6 transmit flags.
    pub ipv6_tx_flags: U32,
    /// IPv6 receive encapsulation.
    pub ipv6_rx_encapsulation: U32,
    /// IPv6 receive flags.
    pub ipv6_rx_flags: U32,
}
const _: () = assert!(size_of::<NdisTcpIpChecksumOffload>() == 32);

/// Large send offload v1 block of NDIS_OFFLOAD (IPv4 only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NdisLsoV1Offload {
    /// Encapsulation.
    pub encapsulation: U32,
    /// Largest offload size.
    pub max_offload_size: U32,
    /// Smallest segment count.
    pub min_segment_count: U32,
    /// TCP and IP options bits.
    pub flags: U32,
}
const _: () = assert!(size_of::<NdisLsoV1Offload>() == 16);

/// Large send offload v2 block of NDIS_OFFLOAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NdisLsoV2Offload {
    /// IPv4 encapsulation ([`NDIS_ENCAPSULATION_IEEE_802_3`] when supported).
    pub ipv4_encapsulation: U32,
    /// IPv4 largest offload size.
    pub ipv4_max_offload_size: U32,
    /// IPv4 smallest segment count.
    pub ipv4_min_segment_count: U32,
    /// IPv6 encapsulation.
    pub ipv6_encapsulation: U32,
    /// IPv6 largest offload size.
    pub ipv6_max_offload_size: U32,
    /// IPv6 smallest segment count.
    pub ipv6_min_segment_count: U32,
    /// IPv6 `NDIS_LSOV2_CAP_*` flags.
    pub ipv6_flags: U32,
}
const _: () = assert!(size_of::<NdisLsoV2Offload>() == 28);

/// NDIS_OFFLOAD (object type `0xA7`), revision 3 layout (156 bytes). Revision 1 ends after
/// `flags` (112 bytes), revision 2 after `ipsec_v2` (144 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NdisOffload {
    /// Type `0xA7`, revision 1–3, size 112/144/156.
    pub header: NdisObjectHeader,
    /// Checksum offload.
    pub checksum: NdisTcpIpChecksumOffload,
    /// LSOv1.
    pub lso_v1: NdisLsoV1Offload,
    /// IPsec v1 (unused, 7 words).
    pub ipsec_v1: [U32; 7],
    /// LSOv2.
    pub lso_v2: NdisLsoV2Offload,
    /// Flags.
    pub flags: U32,
    /// IPsec v2 (revision 2+, unused, 8 words).
    pub ipsec_v2: [U32; 8],
    /// RSC for IPv4 (revision 3+): non-zero when supported.
    pub rsc_ipv4: u8,
    /// RSC for IPv6 (revision 3+): non-zero when supported.
    pub rsc_ipv6: u8,
    /// Padding.
    pub reserved: [u8; 2],
    /// NVGRE encapsulated-packet task offload (revision 3+).
    pub encapsulated_packet_task_offload_gre: [U32; 2],
}
const _: () = assert!(size_of::<NdisOffload>() == 156);

impl NdisOffload {
    /// The revision and size a guest asks for at `nvsp_version`: 3/156 from NVSP 5, 2/144 at
    /// NVSP 4, 1/112 below.
    pub const fn revision_for(nvsp_version: u32) -> (u8, u16) {
        if nvsp_version >= VERSION_5 {
            (3, NDIS_OFFLOAD_SIZE_REVISION_3)
        } else if nvsp_version >= VERSION_4 {
            (2, NDIS_OFFLOAD_SIZE_REVISION_2)
        } else {
            (1, NDIS_OFFLOAD_SIZE_REVISION_1)
        }
    }

    /// An all-zero object with the header for `nvsp_version`: the input buffer of the
    /// hardware-capabilities query (send its [`NdisOffload::wire_bytes`]).
    pub fn query_input(nvsp_version: u32) -> Self {
        let (revision, size) = Self::revision_for(nvsp_version);
        let mut value = Self::new_zeroed();
        value.header = NdisObjectHeader::new(NDIS_OBJECT_TYPE_OFFLOAD, revision, size);
        value
    }

    /// Parses an NDIS_OFFLOAD of any revision whose size is at least the revision-1 size.
    pub fn parse(bytes: &[u8]) -> Result<Self, RndisError> {
        parse_object(
            bytes,
            NDIS_OBJECT_TYPE_OFFLOAD,
            usize::from(NDIS_OFFLOAD_SIZE_REVISION_1),
        )
    }

    /// The object's bytes up to its header's size.
    pub fn wire_bytes(&self) -> &[u8] {
        wire_prefix(self.as_bytes(), &self.header)
    }
}

// ---------------------------------------------------------------------------------------------
// NDIS_OFFLOAD_PARAMETERS
// ---------------------------------------------------------------------------------------------

/// NDIS_OFFLOAD_PARAMETERS revision 1 size.
pub const NDIS_OFFLOAD_PARAMETERS_SIZE_REVISION_1: u16 = 20;
/// NDIS_OFFLOAD_PARAMETERS revision 2 size.
pub const NDIS_OFFLOAD_PARAMETERS_SIZE_REVISION_2: u16 = 24;
/// NDIS_OFFLOAD_PARAMETERS revision 3 size.
pub const NDIS_OFFLOAD_PARAMETERS_SIZE_REVISION_3: u16 = 28;
/// The size Linux sends (with revision 3) at NVSP ≤ 4: up to the RSC fields.
pub const NDIS_OFFLOAD_PARAMETERS_SIZE_NVSP4: u16 = 22;

/// Offload parameter: leave unchanged.
pub const NDIS_OFFLOAD_PARAMETERS_NO_CHANGE: u8 = 0;
/// Checksum parameter: transmit and receive off.
pub const NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED: u8 = 1;
/// Checksum parameter: transmit on, receive off.
pub const NDIS_OFFLOAD_PARAMETERS_TX_ENABLED_RX_DISABLED: u8 = 2;
/// Checksum parameter: receive on, transmit off.
pub const NDIS_OFFLOAD_PARAMETERS_RX_ENABLED_TX_DISABLED: u8 = 3;
/// Checksum parameter: transmit and receive on.
pub const NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED: u8 = 4;
/// LSOv2 / RSC parameter: off.
pub const NDIS_OFFLOAD_PARAMETERS_DISABLED: u8 = 1;
/// LSOv2 / RSC parameter: on.
pub const NDIS_OFFLOAD_PARAMETERS_ENABLED: u8 = 2;

/// NDIS_OFFLOAD_PARAMETERS (object type `0x80`), revision 3 layout (28 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NdisOffloadParameters {
    /// Type `0x80`, revision 3, size 28 (or 22 at NVSP ≤ 4).
    pub header: NdisObjectHeader,
    /// IPv4 header checksum (`NDIS_OFFLOAD_PARAMETERS_TX_*`).
    pub ipv4_checksum: u8,
    /// TCP/IPv4 checksum.
    pub tcp4_checksum: u8,
    /// UDP/IPv4 checksum.
    pub udp4_checksum: u8,
    /// TCP/IPv6 checksum.
    pub tcp6_checksum: u8,
    /// UDP/IPv6 checksum.
    pub udp6_checksum: u8,
    /// LSOv1.
    pub lsov1: u8,
    /// IPsec v1.
    pub ipsec_v1: u8,
    /// LSOv2 for IPv4 (`NDIS_OFFLOAD_PARAMETERS_ENABLED` / `_DISABLED`).
    pub lsov2_ipv4: u8,
    /// LSOv2 for IPv6.
    pub lsov2_ipv6: u8,
    /// TCP connection offload for IPv4.
    pub tcp_connection_ipv4: u8,
    /// TCP connection offload for IPv6.
    pub tcp_connection_ipv6: u8,
    /// Padding.
    pub reserved: u8,
    /// Flags.
    pub flags: U32,
    /// IPsec v2 (revision 2+).
    pub ipsec_v2: u8,
    /// IPsec v2 for IPv4 (revision 2+).
    pub ipsec_v2_ipv4: u8,
    /// RSC for IPv4 (revision 3+).
    pub rsc_ipv4: u8,
    /// RSC for IPv6 (revision 3+).
    pub rsc_ipv6: u8,
    /// Encapsulated packet task offload (revision 3+).
    pub encapsulated_packet_task_offload: u8,
    /// Encapsulation types (revision 3+).
    pub encapsulation_types: u8,
    /// Padding.
    pub padding: [u8; 2],
}
const _: () = assert!(size_of::<NdisOffloadParameters>() == 28);

impl NdisOffloadParameters {
    /// An all-"no change" object with the header Linux uses at `nvsp_version`: revision 3,
    /// size 28, or 22 at NVSP ≤ 4.
    pub fn new(nvsp_version: u32) -> Self {
        let size = if nvsp_version <= VERSION_4 {
            NDIS_OFFLOAD_PARAMETERS_SIZE_NVSP4
        } else {
            NDIS_OFFLOAD_PARAMETERS_SIZE_REVISION_3
        };
        let mut value = Self::new_zeroed();
        value.header = NdisObjectHeader::new(NDIS_OBJECT_TYPE_DEFAULT, 3, size);
        value
    }

    /// Parses offload parameters of any revision whose size is at least the revision-1 size
    /// (what OpenVMM accepts).
    pub fn parse(bytes: &[u8]) -> Result<Self, RndisError> {
        parse_object(
            bytes,
            NDIS_OBJECT_TYPE_DEFAULT,
            usize::from(NDIS_OFFLOAD_PARAMETERS_SIZE_REVISION_1),
        )
    }

    /// The object's bytes up to its header's size.
    pub fn wire_bytes(&self) -> &[u8] {
        wire_prefix(self.as_bytes(), &self.header)
    }
}
