//! NDIS objects carried in OID information buffers (reference §3.6, §3.7).
//!
//! Every object starts with [`NdisObjectHeader`] (`u8` type, `u8` revision, `u16` size). Newer
//! revisions append fields, so parsing accepts any revision whose size covers the first
//! revision, copies what is present and leaves the rest zero (a size beyond the struct is
//! clamped to it in the parsed header). Each `wire_bytes` method gives the bytes to send: the
//! object truncated to its header's `size`.
//!
//! This module holds the header, the shared parsing helper and NDIS_LINK_STATE; the
//! submodules hold the bigger families:
//! - [`offload`]: NDIS_OFFLOAD (hardware capabilities, current configuration) and
//!   NDIS_OFFLOAD_PARAMETERS, with their capability bits and parameter values.
//! - [`rss`]: RSS capabilities and RSS parameters (with the indirection table and key), hash
//!   types and flags, and Linux's default key.

pub mod offload;
pub mod rss;

pub use offload::*;
pub use rss::*;

use super::error::RndisError;
use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

// ---------------------------------------------------------------------------------------------
// Object header
// ---------------------------------------------------------------------------------------------

/// Object type of the offload parameters and the link state.
pub const NDIS_OBJECT_TYPE_DEFAULT: u8 = 0x80;
/// Object type of the RSS capabilities.
pub const NDIS_OBJECT_TYPE_RSS_CAPABILITIES: u8 = 0x88;
/// Object type of the RSS parameters.
pub const NDIS_OBJECT_TYPE_RSS_PARAMETERS: u8 = 0x89;
/// Object type of an OID request (NVSP OID_QUERY_EX).
pub const NDIS_OBJECT_TYPE_OID_REQUEST: u8 = 0x96;
/// Object type of NDIS_OFFLOAD (hardware capabilities, current configuration).
pub const NDIS_OBJECT_TYPE_OFFLOAD: u8 = 0xA7;
/// Object type of the offload encapsulation.
pub const NDIS_OBJECT_TYPE_OFFLOAD_ENCAPSULATION: u8 = 0xA8;

/// The header of every NDIS object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NdisObjectHeader {
    /// One of the `NDIS_OBJECT_TYPE_*` constants.
    pub object_type: u8,
    /// Revision of the object.
    pub revision: u8,
    /// Size of the object in bytes, header included.
    pub size: U16,
}
const _: () = assert!(size_of::<NdisObjectHeader>() == 4);

impl NdisObjectHeader {
    /// A header with the given fields.
    pub fn new(object_type: u8, revision: u8, size: u16) -> Self {
        Self {
            object_type,
            revision,
            size: U16::new(size),
        }
    }
}

/// Reads an object of type `expected` whose size is at least `min_size`: the header's size must
/// lie between `min_size` and the bytes available, and the revision must be non-zero. The
/// present bytes (up to `size_of::<T>()`) are copied; the rest of `T` stays zero. A size larger
/// than `T` (a newer revision) is clamped to `size_of::<T>()` in the returned header.
pub(super) fn parse_object<T: FromBytes + IntoBytes>(
    bytes: &[u8],
    expected: u8,
    min_size: usize,
) -> Result<T, RndisError> {
    let header = NdisObjectHeader::read_from_prefix(bytes)
        .map(|(header, _)| header)
        .unwrap_or_default();
    let size = usize::from(header.size.get());
    let valid = header.object_type == expected
        && header.revision != 0
        && size >= min_size
        && size <= bytes.len();
    if !valid {
        return Err(RndisError::BadObject {
            expected,
            object_type: header.object_type,
            revision: header.revision,
            size: header.size.get(),
            available: bytes.len(),
        });
    }
    let mut value = T::new_zeroed();
    let present = size.min(size_of::<T>());
    value.as_mut_bytes()[..present].copy_from_slice(&bytes[..present]);
    if size > present {
        // A newer revision than this struct knows: keep what fits and say so in the header,
        // so that the value's `size` always describes the bytes it holds.
        value.as_mut_bytes()[2..4].copy_from_slice(&(present as u16).to_le_bytes());
    }
    Ok(value)
}

/// The first `header.size` bytes of `object` (all of it if the size is larger).
pub(super) fn wire_prefix<'a>(object: &'a [u8], header: &NdisObjectHeader) -> &'a [u8] {
    let size = usize::from(header.size.get()).min(object.len());
    &object[..size]
}

// ---------------------------------------------------------------------------------------------
// NDIS_LINK_STATE
// ---------------------------------------------------------------------------------------------

/// NDIS_LINK_STATE revision 1 size.
pub const NDIS_LINK_STATE_SIZE_REVISION_1: u16 = 40;
/// NDIS media connect state: unknown.
pub const NDIS_MEDIA_CONNECT_STATE_UNKNOWN: u32 = 0;
/// NDIS media connect state: connected (note: not the RNDIS media status, where 0 means up).
pub const NDIS_MEDIA_CONNECT_STATE_CONNECTED: u32 = 1;
/// NDIS media connect state: disconnected.
pub const NDIS_MEDIA_CONNECT_STATE_DISCONNECTED: u32 = 2;
/// NDIS duplex state: unknown.
pub const NDIS_MEDIA_DUPLEX_STATE_UNKNOWN: u32 = 0;
/// NDIS duplex state: full duplex.
pub const NDIS_MEDIA_DUPLEX_STATE_FULL: u32 = 2;

/// NDIS_LINK_STATE (object type `0x80`, revision 1, 40 bytes), the answer to
/// `OID_GEN_LINK_STATE`. The 64-bit speeds sit at offsets 16 and 24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NdisLinkState {
    /// Type `0x80`, revision 1, size 40.
    pub header: NdisObjectHeader,
    /// `NDIS_MEDIA_CONNECT_STATE_*`.
    pub media_connect_state: U32,
    /// `NDIS_MEDIA_DUPLEX_STATE_*`.
    pub media_duplex_state: U32,
    /// Padding before the 64-bit speeds.
    pub padding: U32,
    /// Transmit speed in bit/s.
    pub xmit_link_speed: U64,
    /// Receive speed in bit/s.
    pub rcv_link_speed: U64,
    /// Pause functions.
    pub pause_functions: U32,
    /// Auto-negotiation flags.
    pub auto_negotiation_flags: U32,
}
const _: () = assert!(size_of::<NdisLinkState>() == 40);

impl NdisLinkState {
    /// A link state as a host reports it: connected or not, duplex unknown, both speeds
    /// `speed_bps`.
    pub fn new(connected: bool, speed_bps: u64) -> Self {
        Self {
            header: NdisObjectHeader::new(
                NDIS_OBJECT_TYPE_DEFAULT,
                1,
                NDIS_LINK_STATE_SIZE_REVISION_1,
            ),
            media_connect_state: U32::new(if connected {
                NDIS_MEDIA_CONNECT_STATE_CONNECTED
            } else {
                NDIS_MEDIA_CONNECT_STATE_DISCONNECTED
            }),
            media_duplex_state: U32::new(NDIS_MEDIA_DUPLEX_STATE_UNKNOWN),
            padding: U32::ZERO,
            xmit_link_speed: U64::new(speed_bps),
            rcv_link_speed: U64::new(speed_bps),
            pause_functions: U32::ZERO,
            auto_negotiation_flags: U32::ZERO,
        }
    }

    /// Parses a link state (revision ≥ 1, size ≥ 40).
    pub fn parse(bytes: &[u8]) -> Result<Self, RndisError> {
        parse_object(
            bytes,
            NDIS_OBJECT_TYPE_DEFAULT,
            usize::from(NDIS_LINK_STATE_SIZE_REVISION_1),
        )
    }
}
