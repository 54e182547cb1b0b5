//! Per-packet info (PPI) of RNDIS data packets (reference §3.8).
//!
//! A PPI area is a sequence of elements packed back to back: a 12-byte [`PerPacketInfo`]
//! header (`size` of the whole element, `ppi_type`, `ppi_offset` of the value from the start of
//! the element, normally 12) followed by the value. [`PacketInfo`] holds the values this driver
//! understands, parses an area and writes one. The value types are `u32` bit fields with named
//! accessors: [`TxChecksumInfo`], [`RxChecksumInfo`], [`LsoV2Info`], [`Ieee8021QInfo`] and
//! [`PacketIdInfo`].

use super::error::RndisError;
use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

// ---------------------------------------------------------------------------------------------
// Element header and types
// ---------------------------------------------------------------------------------------------

/// The header of one PPI element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout, Unaligned)]
pub struct PerPacketInfo {
    /// Size of the whole element, header included (a multiple of 4).
    pub size: U32,
    /// One of the `PPI_*` types; bit 31 marks the internal namespace.
    pub ppi_type: U32,
    /// Offset of the value from the start of the element (12).
    pub ppi_offset: U32,
}
const _: () = assert!(size_of::<PerPacketInfo>() == 12);

/// Size of a PPI element header; also the `ppi_offset` of every element this crate writes.
pub const PPI_HEADER_SIZE: usize = size_of::<PerPacketInfo>();
/// Size of a PPI element with a 4-byte value, the only kind this crate writes.
pub const PPI_ELEMENT_SIZE: usize = PPI_HEADER_SIZE + 4;

/// TCP/IP checksum info: a [`TxChecksumInfo`] on transmit, an [`RxChecksumInfo`] on receive.
pub const PPI_TCP_IP_CHECKSUM: u32 = 0;
/// IPsec info (unused).
pub const PPI_IPSEC: u32 = 1;
/// Large send offload: an [`LsoV2Info`] on transmit.
pub const PPI_LSO: u32 = 2;
/// Classification handle (unused).
pub const PPI_CLASSIFICATION_HANDLE: u32 = 3;
/// Scatter-gather list (unused).
pub const PPI_SG_LIST: u32 = 5;
/// IEEE 802.1Q tag: an [`Ieee8021QInfo`].
pub const PPI_IEEE_8021Q: u32 = 6;
/// Original packet info (unused).
pub const PPI_ORIGINAL_PACKET: u32 = 7;
/// Receive hash value (Toeplitz) on receive; shares its number with PACKET_CANCEL_ID.
pub const PPI_HASH_VALUE: u32 = 8;
/// Receive hash type bits (`NDIS_HASH_*`); shares its number with ORIGINAL_NET_BUFLIST.
pub const PPI_HASH_INFO: u32 = 9;
/// Short packet padding (unused).
pub const PPI_SHORT_PACKET_PADDING: u32 = 11;
/// Bit 31 of `ppi_type`: the internal namespace.
pub const PPI_INTERNAL: u32 = 0x8000_0000;
/// Internal type 1: packet id of an RSC fragment, a [`PacketIdInfo`].
pub const PPI_PACKET_ID: u32 = PPI_INTERNAL | 1;

// ---------------------------------------------------------------------------------------------
// Value types
// ---------------------------------------------------------------------------------------------

/// Transmit checksum request (PPI type 0 from the guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct TxChecksumInfo(pub u32);

impl TxChecksumInfo {
    /// Bit 0: the packet is IPv4.
    pub const IS_IPV4: u32 = 1 << 0;
    /// Bit 1: the packet is IPv6.
    pub const IS_IPV6: u32 = 1 << 1;
    /// Bit 2: compute the TCP checksum.
    pub const TCP_CHECKSUM: u32 = 1 << 2;
    /// Bit 3: compute the UDP checksum.
    pub const UDP_CHECKSUM: u32 = 1 << 3;
    /// Bit 4: compute the IPv4 header checksum.
    pub const IP_HEADER_CHECKSUM: u32 = 1 << 4;
    const HEADER_OFFSET_SHIFT: u32 = 16;
    const HEADER_OFFSET_MASK: u32 = 0x3FF;

    /// `flags` (the bit constants above) with the transport header at `tcp_header_offset`
    /// (10 bits; higher bits are dropped).
    pub const fn new(flags: u32, tcp_header_offset: u16) -> Self {
        let offset =
            (tcp_header_offset as u32 & Self::HEADER_OFFSET_MASK) << Self::HEADER_OFFSET_SHIFT;
        Self((flags & 0x1F) | offset)
    }
    /// Whether the packet is IPv4.
    pub const fn is_ipv4(self) -> bool {
        self.0 & Self::IS_IPV4 != 0
    }
    /// Whether the packet is IPv6.
    pub const fn is_ipv6(self) -> bool {
        self.0 & Self::IS_IPV6 != 0
    }
    /// Whether the TCP checksum is requested.
    pub const fn tcp_checksum(self) -> bool {
        self.0 & Self::TCP_CHECKSUM != 0
    }
    /// Whether the UDP checksum is requested.
    pub const fn udp_checksum(self) -> bool {
        self.0 & Self::UDP_CHECKSUM != 0
    }
    /// Whether the IPv4 header checksum is requested.
    pub const fn ip_header_checksum(self) -> bool {
        self.0 & Self::IP_HEADER_CHECKSUM != 0
    }
    /// Offset of the transport header from the start of the frame (bits 16–25).
    pub const fn tcp_header_offset(self) -> u16 {
        ((self.0 >> Self::HEADER_OFFSET_SHIFT) & Self::HEADER_OFFSET_MASK) as u16
    }
}

/// Receive checksum result (PPI type 0 from the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct RxChecksumInfo(pub u32);

impl RxChecksumInfo {
    /// Bit 0: the TCP checksum is wrong.
    pub const TCP_CHECKSUM_FAILED: u32 = 1 << 0;
    /// Bit 1: the UDP checksum is wrong.
    pub const UDP_CHECKSUM_FAILED: u32 = 1 << 1;
    /// Bit 2: the IP header checksum is wrong.
    pub const IP_CHECKSUM_FAILED: u32 = 1 << 2;
    /// Bit 3: the TCP checksum was verified.
    pub const TCP_CHECKSUM_SUCCEEDED: u32 = 1 << 3;
    /// Bit 4: the UDP checksum was verified.
    pub const UDP_CHECKSUM_SUCCEEDED: u32 = 1 << 4;
    /// Bit 5: the IP header checksum was verified.
    pub const IP_CHECKSUM_SUCCEEDED: u32 = 1 << 5;
    /// Bit 6: the packet was looped back.
    pub const LOOPBACK: u32 = 1 << 6;
    /// Bit 7: the TCP checksum value is invalid.
    pub const TCP_CHECKSUM_VALUE_INVALID: u32 = 1 << 7;
    /// Bit 8: the IP checksum value is invalid.
    pub const IP_CHECKSUM_VALUE_INVALID: u32 = 1 << 8;

    /// Whether any checksum was found wrong.
    pub const fn any_failed(self) -> bool {
        self.0 & (Self::TCP_CHECKSUM_FAILED | Self::UDP_CHECKSUM_FAILED | Self::IP_CHECKSUM_FAILED)
            != 0
    }
    /// Whether the TCP checksum was verified good.
    pub const fn tcp_checksum_succeeded(self) -> bool {
        self.0 & Self::TCP_CHECKSUM_SUCCEEDED != 0
    }
    /// Whether the UDP checksum was verified good.
    pub const fn udp_checksum_succeeded(self) -> bool {
        self.0 & Self::UDP_CHECKSUM_SUCCEEDED != 0
    }
    /// Whether the IP header checksum was verified good.
    pub const fn ip_checksum_succeeded(self) -> bool {
        self.0 & Self::IP_CHECKSUM_SUCCEEDED != 0
    }
}

/// Large send offload request, version 2 (PPI type 2 from the guest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct LsoV2Info(pub u32);

impl LsoV2Info {
    const MSS_MASK: u32 = 0xF_FFFF;
    const HEADER_OFFSET_SHIFT: u32 = 20;
    const HEADER_OFFSET_MASK: u32 = 0x3FF;
    /// Bit 30: the request type; 1 means LSOv2 (always set by [`LsoV2Info::new`]).
    pub const TYPE_LSO_V2: u32 = 1 << 30;
    /// Bit 31: the packet is IPv6.
    pub const IPV6: u32 = 1 << 31;

    /// LSOv2 with `mss` (20 bits) and the TCP header at `tcp_header_offset` (10 bits).
    pub const fn new(mss: u32, tcp_header_offset: u16, ipv6: bool) -> Self {
        let mut value = (mss & Self::MSS_MASK)
            | ((tcp_header_offset as u32 & Self::HEADER_OFFSET_MASK) << Self::HEADER_OFFSET_SHIFT)
            | Self::TYPE_LSO_V2;
        if ipv6 {
            value |= Self::IPV6;
        }
        Self(value)
    }
    /// Maximum segment size (bits 0–19).
    pub const fn mss(self) -> u32 {
        self.0 & Self::MSS_MASK
    }
    /// Offset of the TCP header from the start of the frame (bits 20–29).
    pub const fn tcp_header_offset(self) -> u16 {
        ((self.0 >> Self::HEADER_OFFSET_SHIFT) & Self::HEADER_OFFSET_MASK) as u16
    }
    /// Whether the type bit says LSOv2.
    pub const fn is_lso_v2(self) -> bool {
        self.0 & Self::TYPE_LSO_V2 != 0
    }
    /// Whether the packet is IPv6.
    pub const fn is_ipv6(self) -> bool {
        self.0 & Self::IPV6 != 0
    }
}

/// IEEE 802.1Q info (PPI type 6): priority in bits 0–2, CFI/DEI in bit 3, VLAN id in bits
/// 4–15. This is not the order of the 802.1Q TCI; [`Ieee8021QInfo::from_tci`] and
/// [`Ieee8021QInfo::tci`] convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Ieee8021QInfo(pub u32);

impl Ieee8021QInfo {
    /// The info for a priority (3 bits), CFI/DEI bit and VLAN id (12 bits).
    pub const fn new(priority: u8, cfi: bool, vlan_id: u16) -> Self {
        Self((priority as u32 & 0x7) | ((cfi as u32) << 3) | ((vlan_id as u32 & 0xFFF) << 4))
    }
    /// The info for an 802.1Q tag control field (PCP in bits 13–15, DEI in bit 12, VID in
    /// bits 0–11).
    pub const fn from_tci(tci: u16) -> Self {
        Self::new((tci >> 13) as u8, tci & 0x1000 != 0, tci & 0xFFF)
    }
    /// Priority (bits 0–2).
    pub const fn priority(self) -> u8 {
        (self.0 & 0x7) as u8
    }
    /// CFI/DEI (bit 3).
    pub const fn cfi(self) -> bool {
        self.0 & 0x8 != 0
    }
    /// VLAN id (bits 4–15).
    pub const fn vlan_id(self) -> u16 {
        ((self.0 >> 4) & 0xFFF) as u16
    }
    /// The 802.1Q tag control field.
    pub const fn tci(self) -> u16 {
        ((self.priority() as u16) << 13) | ((self.cfi() as u16) << 12) | self.vlan_id()
    }
}

/// Packet id of an RSC fragment (internal PPI 1): version in bits 0–7, flags in bits 8–15,
/// id in bits 16–31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PacketIdInfo(pub u32);

impl PacketIdInfo {
    /// Version 1 of the packet-id info.
    pub const VERSION_1: u8 = 1;
    /// Flag: the packet spans several sub-allocations.
    pub const FLAG_SUBALLOC: u8 = 1 << 0;
    /// Flag: this is the first fragment.
    pub const FLAG_FIRST_FRAGMENT: u8 = 1 << 1;
    /// Flag: this is the last fragment.
    pub const FLAG_LAST_FRAGMENT: u8 = 1 << 2;

    /// The info for a version, flags and id.
    pub const fn new(version: u8, flags: u8, id: u16) -> Self {
        Self(version as u32 | ((flags as u32) << 8) | ((id as u32) << 16))
    }
    /// Version (bits 0–7).
    pub const fn version(self) -> u8 {
        self.0 as u8
    }
    /// Flags (bits 8–15).
    pub const fn flags(self) -> u8 {
        (self.0 >> 8) as u8
    }
    /// Packet id (bits 16–31).
    pub const fn id(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

// ---------------------------------------------------------------------------------------------
// PacketInfo
// ---------------------------------------------------------------------------------------------

/// The error for the element at `offset` of a PPI area (out of line: parsing is on the
/// receive path of every frame, a bad area is not).
#[cold]
#[inline(never)]
fn bad_ppi(offset: usize, reason: &'static str) -> RndisError {
    RndisError::BadPpi { offset, reason }
}

/// Which order [`PacketInfo::write`] lays the elements out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PpiOrder {
    /// The guest's transmit order, as Linux writes it: hash value, 802.1Q, checksum, LSO, hash
    /// info, packet id.
    Guest,
    /// The host's receive order, as the recorded host writes it: checksum, 802.1Q, hash value,
    /// hash info, LSO, packet id.
    Host,
}

/// Checks a PPI area as [`PacketInfo::parse`] does and calls `found(type, value)` for each
/// element of a type [`PacketInfo`] holds, in area order (repeats included). The walk that
/// `parse` is built on, for a receive path that keeps only some of the values in registers
/// instead of a whole [`PacketInfo`].
#[inline(always)]
pub fn for_each_known(area: &[u8], mut found: impl FnMut(u32, u32)) -> Result<(), RndisError> {
    let known = |ppi_type| {
        matches!(
            ppi_type,
            PPI_TCP_IP_CHECKSUM
                | PPI_LSO
                | PPI_IEEE_8021Q
                | PPI_HASH_VALUE
                | PPI_HASH_INFO
                | PPI_PACKET_ID
        )
    };
    let mut pos = 0usize;
    while let Some(rest) = area.get(pos..).filter(|rest| !rest.is_empty()) {
        // The element every host writes (16 bytes, the 4-byte value right after the header)
        // passes every check below: it is taken in two comparisons.
        if let Some(element) = rest.first_chunk::<16>() {
            let word = |at: usize| {
                u32::from_le_bytes([
                    element[at],
                    element[at + 1],
                    element[at + 2],
                    element[at + 3],
                ])
            };
            if word(0) == 16 && word(8) == PPI_HEADER_SIZE as u32 {
                if known(word(4)) {
                    found(word(4), word(12));
                }
                pos += 16;
                continue;
            }
        }
        let Some(header) = rest.first_chunk::<PPI_HEADER_SIZE>() else {
            return Err(bad_ppi(pos, "header truncated"));
        };
        let field = |at: usize| {
            u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        let (size, ppi_type, value_offset) = (field(0) as usize, field(4), field(8) as usize);
        if size < PPI_HEADER_SIZE {
            return Err(bad_ppi(pos, "size smaller than the element header"));
        }
        if size > rest.len() {
            return Err(bad_ppi(pos, "size runs past the area"));
        }
        if value_offset < PPI_HEADER_SIZE {
            return Err(bad_ppi(pos, "value offset inside the element header"));
        }
        if value_offset > size {
            return Err(bad_ppi(pos, "value offset past the element"));
        }
        if known(ppi_type) {
            // `value_offset <= size <= rest.len()`: only the value's length is left to check.
            let Some(value) = rest[..size]
                .get(value_offset..)
                .and_then(|v| v.first_chunk::<4>())
            else {
                return Err(bad_ppi(pos, "value shorter than 4 bytes"));
            };
            found(ppi_type, u32::from_le_bytes(*value));
        }
        pos += size;
    }
    Ok(())
}

/// The per-packet info this driver understands. `None` means "no such element".
///
/// Parsing keeps the first element of each type and skips types it does not know; writing
/// emits one 16-byte element (12-byte header, 4-byte value) per `Some` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PacketInfo {
    /// PPI 0, raw: read it with [`PacketInfo::tx_checksum`] or [`PacketInfo::rx_checksum`]
    /// depending on the direction.
    pub checksum: Option<u32>,
    /// PPI 2: large send offload request.
    pub lso: Option<LsoV2Info>,
    /// PPI 6: the VLAN tag.
    pub ieee8021q: Option<Ieee8021QInfo>,
    /// PPI 8: the receive hash value (or the sender's hash or queue id on transmit).
    pub hash_value: Option<u32>,
    /// PPI 9: the receive hash type.
    pub hash_info: Option<u32>,
    /// Internal PPI 1: RSC fragment id.
    pub packet_id: Option<PacketIdInfo>,
}

impl PacketInfo {
    /// The checksum element read as a transmit request.
    pub fn tx_checksum(&self) -> Option<TxChecksumInfo> {
        self.checksum.map(TxChecksumInfo)
    }

    /// The checksum element read as a receive result.
    pub fn rx_checksum(&self) -> Option<RxChecksumInfo> {
        self.checksum.map(RxChecksumInfo)
    }

    /// The elements as `(type, value)` in `order`.
    fn elements(&self, order: PpiOrder) -> [(u32, Option<u32>); 6] {
        let checksum = (PPI_TCP_IP_CHECKSUM, self.checksum);
        let lso = (PPI_LSO, self.lso.map(|v| v.0));
        let vlan = (PPI_IEEE_8021Q, self.ieee8021q.map(|v| v.0));
        let hash_value = (PPI_HASH_VALUE, self.hash_value);
        let hash_info = (PPI_HASH_INFO, self.hash_info);
        let packet_id = (PPI_PACKET_ID, self.packet_id.map(|v| v.0));
        match order {
            PpiOrder::Guest => [hash_value, vlan, checksum, lso, hash_info, packet_id],
            PpiOrder::Host => [checksum, vlan, hash_value, hash_info, lso, packet_id],
        }
    }

    /// Number of elements [`PacketInfo::write`] emits.
    pub fn count(&self) -> usize {
        self.elements(PpiOrder::Guest)
            .iter()
            .filter(|(_, value)| value.is_some())
            .count()
    }

    /// Bytes [`PacketInfo::write`] emits: 16 per element.
    pub fn len(&self) -> usize {
        self.count() * PPI_ELEMENT_SIZE
    }

    /// Whether there is no element at all.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Parses a PPI area. Every element must have a header that fits, a `size` of at least 12
    /// that stays inside the area, and a value offset between 12 and `size`; an element of a
    /// known type needs a value of at least 4 bytes. Unknown types are skipped; a repeated
    /// known type keeps its first value.
    pub fn parse(area: &[u8]) -> Result<Self, RndisError> {
        let mut info = Self::default();
        for_each_known(area, |ppi_type, value| match ppi_type {
            PPI_TCP_IP_CHECKSUM => _ = info.checksum.get_or_insert(value),
            PPI_LSO => _ = info.lso.get_or_insert(LsoV2Info(value)),
            PPI_IEEE_8021Q => _ = info.ieee8021q.get_or_insert(Ieee8021QInfo(value)),
            PPI_HASH_VALUE => _ = info.hash_value.get_or_insert(value),
            PPI_HASH_INFO => _ = info.hash_info.get_or_insert(value),
            _ => _ = info.packet_id.get_or_insert(PacketIdInfo(value)),
        })?;
        Ok(info)
    }

    /// Writes the elements at the start of `out` in `order` and returns the bytes written
    /// ([`PacketInfo::len`]).
    pub fn write(&self, out: &mut [u8], order: PpiOrder) -> Result<usize, RndisError> {
        let needed = self.len();
        if needed == 0 {
            // No PPI: the common data packet.
            return Ok(0);
        }
        let available = out.len();
        let out = out.get_mut(..needed).ok_or(RndisError::BufferTooSmall {
            msg_type: super::messages::MESSAGE_TYPE_PACKET_MSG,
            needed,
            available,
        })?;
        let present = self
            .elements(order)
            .into_iter()
            .filter_map(|(ppi_type, value)| value.map(|v| (ppi_type, v)));
        for ((ppi_type, value), chunk) in present.zip(out.chunks_exact_mut(PPI_ELEMENT_SIZE)) {
            let header = PerPacketInfo {
                size: U32::new(PPI_ELEMENT_SIZE as u32),
                ppi_type: U32::new(ppi_type),
                ppi_offset: U32::new(PPI_HEADER_SIZE as u32),
            };
            let (head, tail) = chunk.split_at_mut(PPI_HEADER_SIZE);
            head.copy_from_slice(header.as_bytes());
            tail.copy_from_slice(&value.to_le_bytes());
        }
        Ok(needed)
    }
}
