//! VMBus packet framing: the wire structs of a ring packet and the owned representations the
//! ring reader and writer exchange with their callers.
//!
//! Every packet in a ring is a 16-byte [`PacketDescriptor`], an optional type-specific header
//! (transfer-page ranges or GPA-direct ranges), the payload starting at `data_offset8 * 8`,
//! zero padding to 8 bytes, then an 8-byte trailer written by the ring (not part of
//! `length8`). See `reference/netvsc-protocol.md` §1.2.
//!
//! - [`OutgoingPacket`] borrows everything it describes; the writer frames it straight into the
//!   ring without an intermediate copy of the payload.
//! - [`IncomingPacket`] is owned and reusable: the reader copies a packet out of shared memory
//!   once into it, then validates the copy, so the peer cannot change what was validated.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use packet::PAGE_SIZE;

/// VMBus packet type: data carried in band (the payload follows the descriptor).
pub const VMBUS_PACKET_TYPE_DATA_INBAND: u16 = 6;
/// VMBus packet type: data in the peer's transfer pages (the host's receive path).
pub const VMBUS_PACKET_TYPE_DATA_USING_TRANSFER_PAGES: u16 = 7;
/// VMBus packet type: data in guest pages named by GPA (the guest's zero-copy send path).
pub const VMBUS_PACKET_TYPE_DATA_USING_GPA_DIRECT: u16 = 9;
/// VMBus packet type: completion of a packet that requested one.
pub const VMBUS_PACKET_TYPE_COMPLETION: u16 = 0xB;

/// Descriptor flag: the sender wants a completion echoing the transaction id.
pub const VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED: u16 = 1;
/// Every flag a packet may carry; anything else is rejected.
pub const VMBUS_DATA_PACKET_KNOWN_FLAGS: u16 = VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED;

/// Size of the trailer that follows every packet in a ring.
pub const PACKET_TRAILER_SIZE: usize = 8;
/// The largest packet `length8` can express (`u16::MAX * 8` bytes, trailer excluded).
pub const MAX_PACKET_LEN: usize = u16::MAX as usize * 8;

/// The 16-byte descriptor that starts every ring packet (`vmpacket_descriptor`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct PacketDescriptor {
    /// One of the `VMBUS_PACKET_TYPE_*` constants.
    pub packet_type: u16,
    /// Start of the payload in 8-byte units from the start of the packet.
    pub data_offset8: u16,
    /// Total packet length (descriptor, headers, payload, padding; not the trailer) in 8-byte
    /// units.
    pub length8: u16,
    /// `VMBUS_DATA_PACKET_FLAG_*` bits.
    pub flags: u16,
    /// Echoed by the peer's completion.
    pub transaction_id: u64,
}

/// The header after the descriptor of a transfer-page packet (type 7).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TransferPageHeader {
    /// The transfer page set (the guest's receive buffer id, e.g. 0xCAFE).
    pub transfer_page_set_id: u16,
    /// Whether the sender owns the page set (unused by netvsc).
    pub sender_owns_set: u8,
    /// Reserved, zero.
    pub reserved: u8,
    /// Number of [`TransferPageRange`]s that follow.
    pub range_count: u32,
}

/// One range of a transfer-page packet: bytes of the page set.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TransferPageRange {
    /// Length of the range in bytes.
    pub byte_count: u32,
    /// Offset of the range from the start of the page set.
    pub byte_offset: u32,
}

/// The header after the descriptor of a GPA-direct packet (type 9).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct GpaDirectHeader {
    /// Reserved, zero.
    pub reserved: u32,
    /// Number of ranges that follow.
    pub range_count: u32,
}

/// The header of one GPA-direct range, followed by its page frame numbers (`u64` each).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct GpaRangeHeader {
    /// Length of the range in bytes.
    pub byte_count: u32,
    /// Offset of the range's first byte within its first page (< 4096).
    pub byte_offset: u32,
}

const _: () = assert!(size_of::<PacketDescriptor>() == 16);
const _: () = assert!(size_of::<TransferPageHeader>() == 8);
const _: () = assert!(size_of::<TransferPageRange>() == 8);
const _: () = assert!(size_of::<GpaDirectHeader>() == 8);
const _: () = assert!(size_of::<GpaRangeHeader>() == 8);

/// Number of 4 KiB pages a range of `byte_count` bytes starting `byte_offset` into its first
/// page touches: `ceil((byte_offset + byte_count) / 4096)`.
pub fn gpa_page_count(byte_offset: u32, byte_count: u32) -> u64 {
    (u64::from(byte_offset) + u64::from(byte_count)).div_ceil(PAGE_SIZE as u64)
}

/// One GPA-direct range of an outgoing packet: `byte_count` bytes starting `byte_offset` into
/// the first of `pfns` (4 KiB guest-physical frame numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GpaRange<'a> {
    /// Offset of the first byte within the first page (< 4096).
    pub byte_offset: u32,
    /// Length in bytes.
    pub byte_count: u32,
    /// Exactly [`gpa_page_count`]`(byte_offset, byte_count)` frame numbers.
    pub pfns: &'a [u64],
}

impl<'a> GpaRange<'a> {
    /// The range for `byte_count` bytes at bus address `bus_addr` (physically contiguous, e.g.
    /// a buffer of a [`SharedMemory`](packet::SharedMemory) region): fills `pfns` (cleared
    /// first, so it can be reused without allocating) and borrows it.
    pub fn contiguous(bus_addr: u64, byte_count: u32, pfns: &'a mut Vec<u64>) -> Self {
        let page = PAGE_SIZE as u64;
        let byte_offset = (bus_addr % page) as u32;
        let first = bus_addr / page;
        pfns.clear();
        pfns.extend((0..gpa_page_count(byte_offset, byte_count)).map(|i| first + i));
        Self {
            byte_offset,
            byte_count,
            pfns,
        }
    }

    /// Bytes this range takes in a packet: its header plus its frame numbers.
    fn wire_len(&self) -> usize {
        size_of::<GpaRangeHeader>() + self.pfns.len() * 8
    }
}

/// What an outgoing packet is, with its type-specific header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutgoingKind<'a> {
    /// Type 6: payload in band.
    InBand,
    /// Type 0xB: a completion; `transaction_id` echoes the request's.
    Completion,
    /// Type 9: data in guest pages; the payload (e.g. the NVSP message) is in band.
    GpaDirect {
        /// At least one range.
        ranges: &'a [GpaRange<'a>],
    },
    /// Type 7: data in the receiver's transfer page set `set_id` (the host's receive path).
    TransferPages {
        /// The page set id (the guest's receive buffer id).
        set_id: u16,
        /// Ranges of the page set.
        ranges: &'a [TransferPageRange],
    },
}

/// A packet to write into a ring; borrows everything, so building one costs nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutgoingPacket<'a> {
    /// Type and type-specific header.
    pub kind: OutgoingKind<'a>,
    /// Transaction id (echoed in the completion).
    pub transaction_id: u64,
    /// Sets [`VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED`].
    pub completion_requested: bool,
    /// In-band payload, padded with zeros to 8 bytes in the ring.
    pub payload: &'a [u8],
}

impl OutgoingPacket<'_> {
    /// The VMBus packet type number.
    pub fn packet_type(&self) -> u16 {
        match self.kind {
            OutgoingKind::InBand => VMBUS_PACKET_TYPE_DATA_INBAND,
            OutgoingKind::Completion => VMBUS_PACKET_TYPE_COMPLETION,
            OutgoingKind::GpaDirect { .. } => VMBUS_PACKET_TYPE_DATA_USING_GPA_DIRECT,
            OutgoingKind::TransferPages { .. } => VMBUS_PACKET_TYPE_DATA_USING_TRANSFER_PAGES,
        }
    }

    /// Length of descriptor plus type-specific header (a multiple of 8).
    pub fn header_len(&self) -> usize {
        size_of::<PacketDescriptor>()
            + match self.kind {
                OutgoingKind::InBand | OutgoingKind::Completion => 0,
                OutgoingKind::GpaDirect { ranges } => {
                    size_of::<GpaDirectHeader>()
                        + ranges.iter().map(GpaRange::wire_len).sum::<usize>()
                }
                OutgoingKind::TransferPages { ranges, .. } => {
                    size_of::<TransferPageHeader>() + size_of_val(ranges)
                }
            }
    }

    /// Packet length as `length8 * 8`: headers plus payload, padded to 8 (trailer excluded).
    pub fn packet_len(&self) -> usize {
        (self.header_len() + self.payload.len()).next_multiple_of(8)
    }

    /// Ring bytes this packet consumes: [`packet_len`](Self::packet_len) plus the trailer.
    pub fn ring_len(&self) -> usize {
        self.packet_len() + PACKET_TRAILER_SIZE
    }

    /// Checks what the writer cannot express or the peer would reject.
    pub(crate) fn validate(&self) -> Result<(), &'static str> {
        if self.header_len() / 8 > usize::from(u16::MAX) {
            return Err("type-specific header too long for data_offset8");
        }
        if self.packet_len() > MAX_PACKET_LEN {
            return Err("packet too long for length8");
        }
        if let OutgoingKind::GpaDirect { ranges } = self.kind {
            if ranges.is_empty() {
                return Err("a GPA-direct packet needs at least one range");
            }
            for r in ranges {
                if r.byte_offset as usize >= PAGE_SIZE {
                    return Err("GPA range byte_offset must be below 4096");
                }
                if r.pfns.len() as u64 != gpa_page_count(r.byte_offset, r.byte_count) {
                    return Err("GPA range pfn count does not match its offset and length");
                }
            }
        }
        Ok(())
    }

    /// Serialises descriptor and type-specific header into `out` (cleared first).
    pub(crate) fn encode_header(&self, out: &mut Vec<u8>) {
        out.clear();
        let header_len = self.header_len();
        let desc = PacketDescriptor {
            packet_type: self.packet_type(),
            data_offset8: (header_len / 8) as u16,
            length8: (self.packet_len() / 8) as u16,
            flags: if self.completion_requested {
                VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED
            } else {
                0
            },
            transaction_id: self.transaction_id,
        };
        out.extend_from_slice(desc.as_bytes());
        match self.kind {
            OutgoingKind::InBand | OutgoingKind::Completion => {}
            OutgoingKind::GpaDirect { ranges } => {
                let hdr = GpaDirectHeader {
                    reserved: 0,
                    range_count: ranges.len() as u32,
                };
                out.extend_from_slice(hdr.as_bytes());
                for r in ranges {
                    let rh = GpaRangeHeader {
                        byte_count: r.byte_count,
                        byte_offset: r.byte_offset,
                    };
                    out.extend_from_slice(rh.as_bytes());
                    out.extend_from_slice(r.pfns.as_bytes());
                }
            }
            OutgoingKind::TransferPages { set_id, ranges } => {
                let hdr = TransferPageHeader {
                    transfer_page_set_id: set_id,
                    sender_owns_set: 0,
                    reserved: 0,
                    range_count: ranges.len() as u32,
                };
                out.extend_from_slice(hdr.as_bytes());
                out.extend_from_slice(ranges.as_bytes());
            }
        }
        debug_assert_eq!(out.len(), header_len);
    }
}

/// What a received packet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncomingKind {
    /// Type 6.
    InBand,
    /// Type 0xB.
    Completion,
    /// Type 9; ranges via [`IncomingPacket::gpa_ranges`].
    GpaDirect,
    /// Type 7; ranges via [`IncomingPacket::transfer_ranges`].
    TransferPages {
        /// The page set id the sender named.
        set_id: u16,
    },
}

/// One GPA-direct range of a received packet (frame numbers live in the packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GpaRangeEntry {
    byte_offset: u32,
    byte_count: u32,
    pfn_start: usize,
    pfn_count: usize,
}

/// A packet copied out of a ring and validated; owned and reusable (its buffers keep their
/// capacity from one [`IncomingRing::read`](super::IncomingRing::read) to the next).
#[derive(Clone, Debug)]
pub struct IncomingPacket {
    kind: IncomingKind,
    transaction_id: u64,
    flags: u16,
    /// The whole packet as copied out of the ring: its first `len` (`length8 * 8`) bytes; the
    /// buffer only grows, so a read does not zero it again.
    raw: Vec<u8>,
    len: usize,
    payload_offset: usize,
    /// Where the transfer-page ranges lie in `raw` (decoded as they are used).
    transfer_ranges: std::ops::Range<usize>,
    gpa_ranges: Vec<GpaRangeEntry>,
    pfns: Vec<u64>,
}

impl Default for IncomingPacket {
    fn default() -> Self {
        Self::new()
    }
}

impl IncomingPacket {
    /// An empty packet to read into.
    pub fn new() -> Self {
        Self {
            kind: IncomingKind::InBand,
            transaction_id: 0,
            flags: 0,
            raw: Vec::new(),
            len: 0,
            payload_offset: 0,
            transfer_ranges: 0..0,
            gpa_ranges: Vec::new(),
            pfns: Vec::new(),
        }
    }

    /// The packet's type and type-specific header.
    pub fn kind(&self) -> IncomingKind {
        self.kind
    }

    /// The transaction id from the descriptor.
    pub fn transaction_id(&self) -> u64 {
        self.transaction_id
    }

    /// Whether the sender asked for a completion.
    pub fn completion_requested(&self) -> bool {
        self.flags & VMBUS_DATA_PACKET_FLAG_COMPLETION_REQUESTED != 0
    }

    /// The in-band payload, from `data_offset8 * 8` to `length8 * 8`: it includes the
    /// sender's padding (up to 7 bytes), since VMBus does not carry the exact length; the
    /// protocol inside (NVSP) carries its own.
    pub fn payload(&self) -> &[u8] {
        &self.raw[self.payload_offset..self.len]
    }

    /// The ranges of a transfer-page packet (none for other kinds), decoded from the copy of
    /// the packet as they are taken.
    pub fn transfer_ranges(&self) -> impl ExactSizeIterator<Item = TransferPageRange> + '_ {
        let (ranges, _) = self.raw[self.transfer_ranges.clone()]
            .as_chunks::<{ size_of::<TransferPageRange>() }>();
        ranges
            .iter()
            .map(|&r| -> TransferPageRange { zerocopy::transmute!(r) })
    }

    /// The ranges of a GPA-direct packet (none for other kinds).
    pub fn gpa_ranges(&self) -> impl ExactSizeIterator<Item = GpaRange<'_>> + '_ {
        self.gpa_ranges.iter().map(|r| GpaRange {
            byte_offset: r.byte_offset,
            byte_count: r.byte_count,
            pfns: &self.pfns[r.pfn_start..r.pfn_start + r.pfn_count],
        })
    }

    /// Ring bytes this packet occupied (`length8 * 8` plus the trailer).
    pub fn ring_len(&self) -> usize {
        self.len + PACKET_TRAILER_SIZE
    }

    /// The buffer the reader copies the packet into, `len` bytes (grown when it is shorter;
    /// the reader overwrites all of them).
    pub(crate) fn raw_buffer(&mut self, len: usize) -> &mut [u8] {
        if self.raw.len() < len {
            self.raw.resize(len, 0);
        }
        self.len = len;
        &mut self.raw[..len]
    }

    /// Validates the copied bytes (already `raw_buffer`ed) against `desc` and fills in the
    /// parsed fields. `desc` was decoded from the first 16 bytes of the copy and has passed
    /// the framing checks (`2 <= data_offset8 <= length8`, flags known).
    pub(crate) fn parse(&mut self, desc: &PacketDescriptor) -> Result<(), &'static str> {
        self.transaction_id = desc.transaction_id;
        self.flags = desc.flags;
        self.transfer_ranges = 0..0;
        self.gpa_ranges.clear();
        self.pfns.clear();
        let data_offset = usize::from(desc.data_offset8) * 8;
        self.payload_offset = data_offset;
        // Type-specific headers lie between the descriptor and the payload.
        let ext = &self.raw[size_of::<PacketDescriptor>()..data_offset];
        self.kind = match desc.packet_type {
            VMBUS_PACKET_TYPE_DATA_INBAND => IncomingKind::InBand,
            VMBUS_PACKET_TYPE_COMPLETION => IncomingKind::Completion,
            VMBUS_PACKET_TYPE_DATA_USING_TRANSFER_PAGES => {
                let (hdr, rest) = TransferPageHeader::read_from_prefix(ext)
                    .map_err(|_| "transfer page header past the payload offset")?;
                let count = hdr.range_count as usize;
                let bytes = count
                    .checked_mul(size_of::<TransferPageRange>())
                    .filter(|&b| b <= rest.len())
                    .ok_or("transfer page ranges past the payload offset")?;
                // Decoded where they are used: a packet carries up to 375.
                let start = size_of::<PacketDescriptor>() + size_of::<TransferPageHeader>();
                self.transfer_ranges = start..start + bytes;
                IncomingKind::TransferPages {
                    set_id: hdr.transfer_page_set_id,
                }
            }
            VMBUS_PACKET_TYPE_DATA_USING_GPA_DIRECT => {
                let (hdr, mut rest) = GpaDirectHeader::read_from_prefix(ext)
                    .map_err(|_| "GPA direct header past the payload offset")?;
                if hdr.range_count == 0 {
                    return Err("GPA direct packet without ranges");
                }
                for _ in 0..hdr.range_count {
                    let (rh, after) = GpaRangeHeader::read_from_prefix(rest)
                        .map_err(|_| "GPA range header past the payload offset")?;
                    if rh.byte_offset as usize >= PAGE_SIZE {
                        return Err("GPA range byte_offset not below 4096");
                    }
                    // At most 2^32 / 4096 + 1 pages, so the multiplication cannot overflow.
                    let count = gpa_page_count(rh.byte_offset, rh.byte_count) as usize;
                    let bytes = count * 8;
                    if bytes > after.len() {
                        return Err("GPA range pfns past the payload offset");
                    }
                    let pfn_start = self.pfns.len();
                    self.pfns.extend(
                        after[..bytes]
                            .chunks_exact(8)
                            .filter_map(|c| u64::read_from_bytes(c).ok()),
                    );
                    self.gpa_ranges.push(GpaRangeEntry {
                        byte_offset: rh.byte_offset,
                        byte_count: rh.byte_count,
                        pfn_start,
                        pfn_count: count,
                    });
                    rest = &after[bytes..];
                }
                IncomingKind::GpaDirect
            }
            _ => return Err("unknown packet type"),
        };
        Ok(())
    }
}
