//! RSS capabilities (object type `0x88`) and RSS parameters (object type `0x89`), reference
//! §3.7.

use super::{
    NDIS_OBJECT_TYPE_RSS_CAPABILITIES, NDIS_OBJECT_TYPE_RSS_PARAMETERS, NdisObjectHeader,
    parse_object, wire_prefix,
};
use crate::rndis::error::RndisError;
use zerocopy::byteorder::little_endian::{U16, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

// ---------------------------------------------------------------------------------------------
// RSS capabilities
// ---------------------------------------------------------------------------------------------

/// RSS capabilities revision 1 size (no table-entries field).
pub const NDIS_RSS_CAPABILITIES_SIZE_REVISION_1: u16 = 16;
/// RSS capabilities revision 2 size, as a host sends it.
pub const NDIS_RSS_CAPABILITIES_SIZE_REVISION_2: u16 = 18;
/// Size of the query input Linux sends (its C struct, padded to 20 bytes).
pub const NDIS_RSS_CAPABILITIES_QUERY_INPUT_SIZE: u16 = 20;
/// Table size Linux uses when the host reports 0 or more than 256 entries.
pub const DEFAULT_RSS_INDIRECTION_TABLE_SIZE: u16 = 128;
/// Largest indirection table Linux accepts from the capabilities.
pub const MAX_RSS_INDIRECTION_TABLE_SIZE: u16 = 256;

/// RSS capability: Toeplitz hash function.
pub const NDIS_RSS_CAPS_HASH_FUNCTION_TOEPLITZ: u32 = 0x0000_0001;
/// RSS capability: TCP/IPv4 hashing.
pub const NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4: u32 = 0x0000_0100;
/// RSS capability: TCP/IPv6 hashing.
pub const NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6: u32 = 0x0000_0200;
/// RSS capability: TCP/IPv6 with extension headers hashing.
pub const NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6_EX: u32 = 0x0000_0400;

/// RSS capabilities (object type `0x88`), revision 2: 18 bytes, no padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NdisReceiveScaleCapabilities {
    /// Type `0x88`, revision 2, size 18.
    pub header: NdisObjectHeader,
    /// `NDIS_RSS_CAPS_*` bits.
    pub capabilities_flags: U32,
    /// Interrupt messages (1).
    pub number_of_interrupt_messages: U32,
    /// Receive queues the host offers.
    pub number_of_receive_queues: U32,
    /// Indirection table entries (revision 2+).
    pub number_of_indirection_table_entries: U16,
}
const _: () = assert!(size_of::<NdisReceiveScaleCapabilities>() == 18);

impl NdisReceiveScaleCapabilities {
    /// The capabilities a host reports (revision 2, 18 bytes).
    pub fn new(flags: u32, receive_queues: u32, table_entries: u16) -> Self {
        Self {
            header: NdisObjectHeader::new(
                NDIS_OBJECT_TYPE_RSS_CAPABILITIES,
                2,
                NDIS_RSS_CAPABILITIES_SIZE_REVISION_2,
            ),
            capabilities_flags: U32::new(flags),
            number_of_interrupt_messages: U32::new(1),
            number_of_receive_queues: U32::new(receive_queues),
            number_of_indirection_table_entries: U16::new(table_entries),
        }
    }

    /// The query's input buffer as Linux sends it: a revision-2 header with size 20, then
    /// zeros.
    pub fn query_input() -> [u8; NDIS_RSS_CAPABILITIES_QUERY_INPUT_SIZE as usize] {
        let mut input = [0; NDIS_RSS_CAPABILITIES_QUERY_INPUT_SIZE as usize];
        let header = NdisObjectHeader::new(
            NDIS_OBJECT_TYPE_RSS_CAPABILITIES,
            2,
            NDIS_RSS_CAPABILITIES_QUERY_INPUT_SIZE,
        );
        input[..4].copy_from_slice(header.as_bytes());
        input
    }

    /// Parses RSS capabilities of any revision whose size is at least the revision-1 size.
    pub fn parse(bytes: &[u8]) -> Result<Self, RndisError> {
        parse_object(
            bytes,
            NDIS_OBJECT_TYPE_RSS_CAPABILITIES,
            usize::from(NDIS_RSS_CAPABILITIES_SIZE_REVISION_1),
        )
    }

    /// The indirection table size to use: the reported count, or 128 when it is 0 or more
    /// than 256 (Linux's rule).
    pub fn usable_indirection_table_entries(&self) -> u16 {
        match self.number_of_indirection_table_entries.get() {
            0 => DEFAULT_RSS_INDIRECTION_TABLE_SIZE,
            n if n > MAX_RSS_INDIRECTION_TABLE_SIZE => DEFAULT_RSS_INDIRECTION_TABLE_SIZE,
            n => n,
        }
    }

    /// The object's bytes up to its header's size.
    pub fn wire_bytes(&self) -> &[u8] {
        wire_prefix(self.as_bytes(), &self.header)
    }
}

// ---------------------------------------------------------------------------------------------
// RSS parameters
// ---------------------------------------------------------------------------------------------

/// RSS parameters revision 1 size.
pub const NDIS_RSS_PARAMETERS_SIZE_REVISION_1: u16 = 28;
/// RSS parameters revision 2 size (what Linux and this crate send).
pub const NDIS_RSS_PARAMETERS_SIZE_REVISION_2: u16 = 40;
/// Size of the Toeplitz key.
pub const RSS_HASH_KEY_SIZE: usize = 40;

/// RSS parameter flag: base CPU unchanged.
pub const NDIS_RSS_PARAM_FLAG_BASE_CPU_UNCHANGED: u16 = 0x0001;
/// RSS parameter flag: hash information unchanged.
pub const NDIS_RSS_PARAM_FLAG_HASH_INFO_UNCHANGED: u16 = 0x0002;
/// RSS parameter flag: indirection table unchanged.
pub const NDIS_RSS_PARAM_FLAG_ITABLE_UNCHANGED: u16 = 0x0004;
/// RSS parameter flag: hash key unchanged.
pub const NDIS_RSS_PARAM_FLAG_HASH_KEY_UNCHANGED: u16 = 0x0008;
/// RSS parameter flag: disable RSS.
pub const NDIS_RSS_PARAM_FLAG_DISABLE_RSS: u16 = 0x0010;

/// Hash information: the Toeplitz function.
pub const NDIS_HASH_FUNCTION_TOEPLITZ: u32 = 0x0000_0001;
/// Hash information: IPv4 addresses.
pub const NDIS_HASH_IPV4: u32 = 0x0000_0100;
/// Hash information: TCP/IPv4.
pub const NDIS_HASH_TCP_IPV4: u32 = 0x0000_0200;
/// Hash information: IPv6 addresses.
pub const NDIS_HASH_IPV6: u32 = 0x0000_0400;
/// Hash information: IPv6 with extension headers.
pub const NDIS_HASH_IPV6_EX: u32 = 0x0000_0800;
/// Hash information: TCP/IPv6.
pub const NDIS_HASH_TCP_IPV6: u32 = 0x0000_1000;
/// Hash information: TCP/IPv6 with extension headers.
pub const NDIS_HASH_TCP_IPV6_EX: u32 = 0x0000_2000;
/// Linux's hash information: Toeplitz over IPv4, TCP/IPv4, IPv6, TCP/IPv6 (`0x1701`).
pub const DEFAULT_RSS_HASH_INFORMATION: u32 = NDIS_HASH_FUNCTION_TOEPLITZ
    | NDIS_HASH_IPV4
    | NDIS_HASH_TCP_IPV4
    | NDIS_HASH_IPV6
    | NDIS_HASH_TCP_IPV6;

/// The Microsoft RSS verification key, Linux netvsc's default Toeplitz key.
pub const RSS_HASH_KEY_MICROSOFT: [u8; RSS_HASH_KEY_SIZE] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// RSS parameters (object type `0x89`), revision 2: 40 bytes; the indirection table and the
/// key follow at the offsets given (from the start of the object).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct NdisReceiveScaleParameters {
    /// Type `0x89`, revision 2, size 40.
    pub header: NdisObjectHeader,
    /// `NDIS_RSS_PARAM_FLAG_*` bits.
    pub flags: U16,
    /// Base CPU (unused).
    pub base_cpu_number: U16,
    /// Hash function and types (`NDIS_HASH_*`).
    pub hash_information: U32,
    /// Indirection table size in bytes (4 per entry).
    pub indirection_table_size: U16,
    /// Padding.
    pub pad0: U16,
    /// Offset of the indirection table.
    pub indirection_table_offset: U32,
    /// Key size in bytes (40).
    pub hash_secret_key_size: U16,
    /// Padding.
    pub pad1: U16,
    /// Offset of the key.
    pub hash_secret_key_offset: U32,
    /// Processor masks offset (0).
    pub processor_masks_offset: U32,
    /// Number of processor masks (0).
    pub number_of_processor_masks: U32,
    /// Processor mask entry size (0).
    pub processor_masks_entry_size: U32,
}
const _: () = assert!(size_of::<NdisReceiveScaleParameters>() == 40);

/// RSS parameters with their table and key: what a guest sets and a host applies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RssParameters {
    /// `NDIS_RSS_PARAM_FLAG_*` bits.
    pub flags: u16,
    /// Hash function and types (`NDIS_HASH_*`).
    pub hash_information: u32,
    /// Indirection table: entries are subchannel indexes (0 = primary).
    pub indirection_table: Vec<u32>,
    /// Toeplitz key (40 bytes).
    pub hash_key: Vec<u8>,
}

impl RssParameters {
    /// Bytes [`RssParameters::encode`] writes: the 40-byte object, the table, the key.
    pub fn encoded_len(&self) -> usize {
        usize::from(NDIS_RSS_PARAMETERS_SIZE_REVISION_2)
            + self.indirection_table.len() * 4
            + self.hash_key.len()
    }

    /// Writes the object (revision 2), then the table at offset 40, then the key, as Linux
    /// lays them out; returns the bytes written.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, RndisError> {
        let fixed = usize::from(NDIS_RSS_PARAMETERS_SIZE_REVISION_2);
        let table_size = self.indirection_table.len() * 4;
        let table_size_u16 = u16::try_from(table_size).map_err(|_| RndisError::TooLong {
            what: "rss indirection table",
            len: table_size,
        })?;
        let key_size = u16::try_from(self.hash_key.len()).map_err(|_| RndisError::TooLong {
            what: "rss hash key",
            len: self.hash_key.len(),
        })?;
        let needed = self.encoded_len();
        let available = out.len();
        let out = out.get_mut(..needed).ok_or(RndisError::BufferTooSmall {
            msg_type: crate::rndis::messages::MESSAGE_TYPE_SET_MSG,
            needed,
            available,
        })?;
        let object = NdisReceiveScaleParameters {
            header: NdisObjectHeader::new(
                NDIS_OBJECT_TYPE_RSS_PARAMETERS,
                2,
                NDIS_RSS_PARAMETERS_SIZE_REVISION_2,
            ),
            flags: U16::new(self.flags),
            base_cpu_number: U16::ZERO,
            hash_information: U32::new(self.hash_information),
            indirection_table_size: U16::new(table_size_u16),
            pad0: U16::ZERO,
            indirection_table_offset: U32::new(fixed as u32),
            hash_secret_key_size: U16::new(key_size),
            pad1: U16::ZERO,
            hash_secret_key_offset: U32::new((fixed + table_size) as u32),
            processor_masks_offset: U32::ZERO,
            number_of_processor_masks: U32::ZERO,
            processor_masks_entry_size: U32::ZERO,
        };
        let (head, rest) = out.split_at_mut(fixed);
        head.copy_from_slice(object.as_bytes());
        let (table, key) = rest.split_at_mut(table_size);
        for (chunk, entry) in table.chunks_exact_mut(4).zip(&self.indirection_table) {
            chunk.copy_from_slice(&entry.to_le_bytes());
        }
        key.copy_from_slice(&self.hash_key);
        Ok(needed)
    }

    /// Parses RSS parameters (revision ≥ 1, size ≥ 28) and reads the table and key at their
    /// offsets; both must lie inside `bytes` and the table size must be a multiple of 4.
    pub fn parse(bytes: &[u8]) -> Result<Self, RndisError> {
        let object: NdisReceiveScaleParameters = parse_object(
            bytes,
            NDIS_OBJECT_TYPE_RSS_PARAMETERS,
            usize::from(NDIS_RSS_PARAMETERS_SIZE_REVISION_1),
        )?;
        let area = |what, offset: U32, size: U16| {
            let bad = RndisError::BadRssParameters {
                what,
                offset: offset.get(),
                size: size.get(),
                available: bytes.len(),
            };
            let start = offset.get() as usize;
            let end = start
                .checked_add(usize::from(size.get()))
                .ok_or(bad.clone())?;
            bytes.get(start..end).ok_or(bad)
        };
        let table_size = object.indirection_table_size;
        let table = if table_size.get() == 0 {
            &[][..]
        } else {
            area(
                "indirection table",
                object.indirection_table_offset,
                table_size,
            )?
        };
        if !table.len().is_multiple_of(4) {
            return Err(RndisError::BadRssParameters {
                what: "indirection table",
                offset: object.indirection_table_offset.get(),
                size: table_size.get(),
                available: bytes.len(),
            });
        }
        let key_size = object.hash_secret_key_size;
        let key = if key_size.get() == 0 {
            &[][..]
        } else {
            area("hash key", object.hash_secret_key_offset, key_size)?
        };
        Ok(Self {
            flags: object.flags.get(),
            hash_information: object.hash_information.get(),
            indirection_table: table
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            hash_key: key.to_vec(),
        })
    }
}
