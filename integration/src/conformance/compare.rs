//! Comparing what the simulated host produced with a transcript record.

use std::fmt;

use super::record::{
    DESCRIPTOR_LEN, TYPE_COMPLETION, TYPE_TRANSFER_PAGES, le_u32, nvsp_type, rndis_channel_type,
};
use super::{ConformanceError, IgnoreRule, PacketRecord, TransferPageRange};

/// NVSP1_SEND_RECEIVE_BUFFER_COMPLETE.
const NVSP_SEND_RECEIVE_BUFFER_COMPLETE: u32 = 102;
/// Bytes of NVSP 102 holding `num_sub_allocations` and `end_offset` of the first section.
const RECEIVE_BUFFER_GEOMETRY: std::ops::Range<usize> = 20..28;
/// Bytes of an RNDIS message holding `message_length`.
const RNDIS_MESSAGE_LENGTH: std::ops::Range<usize> = 4..8;
/// RNDIS channel type of data packets.
const CHANNEL_DATA: u32 = 0;
/// RNDIS channel type of control packets.
const CHANNEL_CONTROL: u32 = 1;

/// One packet our simulated host produced, as the guest side read it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedPacket {
    /// 0 = primary channel, 1..n = subchannel index.
    pub chan: u16,
    /// VMBus packet type.
    pub packet_type: u16,
    /// Descriptor flags.
    pub flags: u16,
    /// Transaction id.
    pub tid: u64,
    /// Descriptor offset in 8-byte units.
    pub offset8: u16,
    /// Descriptor length in 8-byte units.
    pub len8: u16,
    /// Bytes between the descriptor and `offset8 * 8`.
    pub ext: Vec<u8>,
    /// Bytes from `offset8 * 8` to `len8 * 8`, padding included.
    pub payload: Vec<u8>,
    /// Type 7: the receive-buffer bytes of each range, read at the packet's own byte offsets
    /// (see [`transfer_ranges`](Self::transfer_ranges)).
    pub rxbuf: Vec<Vec<u8>>,
}

impl ObservedPacket {
    /// Splits a raw ring packet (descriptor, ext, payload; `len8 * 8` bytes, without the 8-byte
    /// ring trailer) read from channel `chan`. `rxbuf` is left empty; see
    /// [`with_rxbuf`](Self::with_rxbuf).
    pub fn from_raw(chan: u16, raw: &[u8]) -> Result<Self, ConformanceError> {
        let bad = |what: String| ConformanceError::BadRawPacket(what);
        if raw.len() < DESCRIPTOR_LEN {
            return Err(bad(format!(
                "{} bytes, shorter than a descriptor",
                raw.len()
            )));
        }
        let u16_at = |at: usize| u16::from_le_bytes([raw[at], raw[at + 1]]);
        let packet_type = u16_at(0);
        let offset8 = u16_at(2);
        let len8 = u16_at(4);
        let flags = u16_at(6);
        let mut tid = [0; 8];
        tid.copy_from_slice(&raw[8..16]);
        let (data_offset, len) = (usize::from(offset8) * 8, usize::from(len8) * 8);
        if data_offset < DESCRIPTOR_LEN || data_offset > len || len != raw.len() {
            return Err(bad(format!(
                "offset8 {offset8} and len8 {len8} do not fit {} bytes",
                raw.len()
            )));
        }
        Ok(Self {
            chan,
            packet_type,
            flags,
            tid: u64::from_le_bytes(tid),
            offset8,
            len8,
            ext: raw[DESCRIPTOR_LEN..data_offset].to_vec(),
            payload: raw[data_offset..].to_vec(),
            rxbuf: Vec::new(),
        })
    }

    /// The same packet with the receive-buffer bytes of each range.
    pub fn with_rxbuf(mut self, rxbuf: Vec<Vec<u8>>) -> Self {
        self.rxbuf = rxbuf;
        self
    }

    /// What the record says was observed (`rxbuf` from the record's `rxbuf[i].hex`). Comparing
    /// a record with this passes; tests mutate it to check the comparer.
    pub fn from_record(record: &PacketRecord) -> Self {
        Self {
            chan: record.chan,
            packet_type: record.packet_type,
            flags: record.flags,
            tid: record.tid,
            offset8: record.offset8,
            len8: record.len8,
            ext: record.ext.clone(),
            payload: record.payload.clone(),
            rxbuf: record.rxbuf.iter().map(|r| r.bytes.clone()).collect(),
        }
    }

    /// For a type-7 packet, the transfer-page ranges decoded from `ext` (where to read the
    /// receive buffer); `None` for other types or a truncated header.
    pub fn transfer_ranges(&self) -> Option<Vec<TransferPageRange>> {
        if self.packet_type != TYPE_TRANSFER_PAGES {
            return None;
        }
        let count = le_u32(&self.ext, 4)? as usize;
        (0..count)
            .map(|i| {
                Some(TransferPageRange {
                    byte_count: le_u32(&self.ext, 8 + 8 * i)?,
                    byte_offset: le_u32(&self.ext, 12 + 8 * i)?,
                })
            })
            .collect()
    }
}

/// Which host-policy fields [`compare`] checks (README, "Fields that follow from host policy or
/// guest configuration"). These are not environment noise, but a different host design may
/// legitimately differ; a test picks deliberately.
///
/// Environment-specific fields (ring positions, GPADL ids, page numbers) are never part of this:
/// the records' `ignore` lists drop them, and `ring_pos` is not in [`ObservedPacket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComparePolicy {
    /// Control packets (type 7, RNDIS channel_type 1): check `tid`, the control buffer index
    /// (15 first, handed out last-in-first-out).
    pub control_tids: bool,
    /// Control packets: check each range's `byte_offset` (`index × 1806`).
    pub control_byte_offsets: bool,
    /// Data packets (type 7, channel_type 0): check `tid`, the first receive sub-allocation id
    /// (16 or more; queue *q* of 4 starts at `16 + 32·q`).
    pub data_tids: bool,
    /// Data packets: check each range's `byte_offset` (`id × 1806`).
    pub data_byte_offsets: bool,
    /// Data packets: check each range's `byte_count` (the full sub-allocation, 1806) and the
    /// RNDIS `message_length` at bytes 4..8 of the range, which equals it.
    pub data_byte_counts: bool,
    /// NVSP 102 (SEND_RECEIVE_BUFFER_COMPLETE): check `num_sub_allocations` and `end_offset`
    /// (payload bytes 20..28), which depend on the receive-buffer size and sub-allocation size.
    pub receive_buffer_geometry: bool,
}

impl ComparePolicy {
    /// Check every host-policy field: the simulated host must allocate exactly like OpenVMM.
    pub const STRICT: Self = Self {
        control_tids: true,
        control_byte_offsets: true,
        data_tids: true,
        data_byte_offsets: true,
        data_byte_counts: true,
        receive_buffer_geometry: true,
    };

    /// Check none of the host-policy fields: only the protocol content must match.
    pub const RELAXED: Self = Self {
        control_tids: false,
        control_byte_offsets: false,
        data_tids: false,
        data_byte_offsets: false,
        data_byte_counts: false,
        receive_buffer_geometry: false,
    };
}

impl Default for ComparePolicy {
    /// [`ComparePolicy::STRICT`].
    fn default() -> Self {
        Self::STRICT
    }
}

/// The first difference [`compare`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// `seq` of the expected record.
    pub seq: u64,
    /// The field, named as in the transcript: `type`, `chan`, `flags`, `tid`, `offset8`,
    /// `len8`, `ext_hex`, `payload_hex`, `rxbuf` (range count) or `rxbuf[i].hex`.
    pub field: String,
    /// Expected value: lowercase hex bytes for byte fields, `0x…` for numbers.
    pub expected: String,
    /// Actual value, in the same form.
    pub actual: String,
    /// For byte fields, the index of the first differing byte (or the shorter length when one
    /// is a prefix of the other); `None` for numbers.
    pub first_difference: Option<usize>,
}

impl Mismatch {
    fn number(seq: u64, field: &str, expected: u64, actual: u64, digits: usize) -> Self {
        Self {
            seq,
            field: field.to_owned(),
            expected: format!("{expected:#0w$x}", w = digits + 2),
            actual: format!("{actual:#0w$x}", w = digits + 2),
            first_difference: None,
        }
    }
}

/// First byte of the 32-byte window shown around byte `at`.
fn window_start(at: usize) -> usize {
    at.saturating_sub(8) / 4 * 4
}

/// Bytes `start..start + 32` of `hex` in 4-byte groups, and the column of byte `at`.
fn window(hex: &str, start: usize, at: usize) -> (String, usize) {
    let len = hex.len() / 2;
    let start = start.min(len);
    let end = (start + 32).min(len);
    let mut out = String::new();
    let mut column = 0;
    if start > 0 {
        out.push_str("… ");
    }
    for i in start..end {
        if i > start && (i - start).is_multiple_of(4) {
            out.push(' ');
        }
        if i == at {
            column = out.chars().count();
        }
        out.push_str(&hex[2 * i..2 * i + 2]);
    }
    if at >= end {
        column = out.chars().count() + usize::from(end > start && (end - start).is_multiple_of(4));
    }
    if end < len {
        out.push_str(" …");
    }
    (out, column)
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(at) = self.first_difference else {
            return write!(
                f,
                "seq {}: `{}` differs: expected {}, actual {}",
                self.seq, self.field, self.expected, self.actual
            );
        };
        let (expected_len, actual_len) = (self.expected.len() / 2, self.actual.len() / 2);
        let start = window_start(at);
        write!(
            f,
            "seq {}: `{}` differs at byte {at} (expected {expected_len} bytes, actual \
             {actual_len} bytes)",
            self.seq, self.field,
        )?;
        if start > 0 || expected_len.max(actual_len) > start + 32 {
            write!(f, ", showing bytes from {start}")?;
        }
        writeln!(f)?;
        let (exp, column) = window(&self.expected, start, at);
        let (act, _) = window(&self.actual, start, at);
        writeln!(f, "  expected: {exp}")?;
        writeln!(f, "  actual:   {act}")?;
        write!(f, "            {}^^", " ".repeat(column))
    }
}

impl std::error::Error for Mismatch {}

/// What to leave out, derived from a record's `ignore` list and the policy.
struct Masks {
    skip: Vec<&'static str>,
    ext: Vec<bool>,
    payload: Vec<bool>,
    skip_rxbuf: bool,
    rxbuf: Vec<Vec<bool>>,
}

fn mask(bits: &mut [bool], range: std::ops::Range<usize>) {
    let end = range.end.min(bits.len());
    if range.start < end {
        bits[range.start..end].fill(true);
    }
}

impl Masks {
    fn new(expected: &PacketRecord, policy: &ComparePolicy) -> Self {
        let mut masks = Self {
            skip: Vec::new(),
            ext: vec![false; expected.ext.len()],
            payload: vec![false; expected.payload.len()],
            skip_rxbuf: false,
            rxbuf: expected
                .rxbuf
                .iter()
                .map(|r| vec![false; r.bytes.len()])
                .collect(),
        };
        for rule in &expected.ignore {
            masks.apply_rule(expected, rule);
        }
        masks.apply_policy(expected, policy);
        masks
    }

    /// Ext byte ranges of every transfer-page range's `byte_count` (`field_at` 0) or
    /// `byte_offset` (`field_at` 4).
    fn xfer_ranges(&mut self, count: usize, field_at: usize) {
        for i in 0..count {
            let at = 8 + 8 * i + field_at;
            mask(&mut self.ext, at..at + 4);
        }
    }

    fn apply_rule(&mut self, expected: &PacketRecord, rule: &IgnoreRule) {
        let n_xfer = expected.xfer.as_ref().map_or(0, |x| x.ranges.len());
        let all = 0..usize::MAX;
        match rule {
            IgnoreRule::Field(name) => match name.as_str() {
                "chan" => self.skip.push("chan"),
                "type" => self.skip.push("type"),
                "flags" => self.skip.push("flags"),
                "tid" => self.skip.push("tid"),
                "offset8" => self.skip.push("offset8"),
                "len8" => self.skip.push("len8"),
                // `xfer` and `gpa` are decodings of `ext_hex`.
                "ext_hex" | "xfer" | "gpa" => mask(&mut self.ext, all),
                "payload_hex" => mask(&mut self.payload, all),
                "rxbuf" => self.skip_rxbuf = true,
                // Not compared: ring_pos, type_name, section, gpa_data, what, note, …
                _ => {}
            },
            IgnoreRule::ByteMask { field, start, end } => match field.as_str() {
                "ext_hex" => mask(&mut self.ext, *start..*end),
                "payload_hex" => mask(&mut self.payload, *start..*end),
                _ => {}
            },
            IgnoreRule::Path(_) => match rule.to_string().as_str() {
                "xfer.transfer_page_set_id" => mask(&mut self.ext, 0..2),
                "xfer.sender_owns" => mask(&mut self.ext, 2..3),
                "xfer.range_count" | "gpa.range_count" => mask(&mut self.ext, 4..8),
                "xfer.ranges" | "gpa.ranges" => mask(&mut self.ext, 8..usize::MAX),
                "xfer.ranges[*].byte_count" | "rxbuf[*].byte_count" => self.xfer_ranges(n_xfer, 0),
                "xfer.ranges[*].byte_offset" | "rxbuf[*].byte_offset" => {
                    self.xfer_ranges(n_xfer, 4)
                }
                "rxbuf[*].hex" => self.skip_rxbuf = true,
                path @ ("gpa.ranges[*].byte_count"
                | "gpa.ranges[*].byte_offset"
                | "gpa.ranges[*].pfns") => {
                    let Some(gpa) = &expected.gpa else { return };
                    let mut at = 8;
                    for range in &gpa.ranges {
                        let span = match path {
                            "gpa.ranges[*].byte_count" => at..at + 4,
                            "gpa.ranges[*].byte_offset" => at + 4..at + 8,
                            _ => at + 8..at + 8 + 8 * range.pfns.len(),
                        };
                        mask(&mut self.ext, span);
                        at += 8 + 8 * range.pfns.len();
                    }
                }
                // Other paths name nothing that is compared.
                _ => {}
            },
        }
    }

    fn apply_policy(&mut self, expected: &PacketRecord, policy: &ComparePolicy) {
        if expected.packet_type == TYPE_TRANSFER_PAGES {
            let n = expected.xfer.as_ref().map_or(0, |x| x.ranges.len());
            let (tids, offsets, counts) = match rndis_channel_type(&expected.payload) {
                Some(CHANNEL_CONTROL) => (policy.control_tids, policy.control_byte_offsets, true),
                Some(CHANNEL_DATA) => (
                    policy.data_tids,
                    policy.data_byte_offsets,
                    policy.data_byte_counts,
                ),
                _ => (true, true, true),
            };
            if !tids {
                self.skip.push("tid");
            }
            if !offsets {
                self.xfer_ranges(n, 4);
            }
            if !counts {
                self.xfer_ranges(n, 0);
                for range in &mut self.rxbuf {
                    mask(range, RNDIS_MESSAGE_LENGTH);
                }
            }
        }
        if expected.packet_type == TYPE_COMPLETION
            && nvsp_type(&expected.payload) == Some(NVSP_SEND_RECEIVE_BUFFER_COMPLETE)
            && !policy.receive_buffer_geometry
        {
            mask(&mut self.payload, RECEIVE_BUFFER_GEOMETRY);
        }
    }
}

/// Index of the first byte that differs outside `masked` (a mask shorter than the data leaves
/// the rest unmasked), or the shorter length if one is a prefix of the other.
fn first_difference(expected: &[u8], actual: &[u8], masked: &[bool]) -> Option<usize> {
    let common = expected.len().min(actual.len());
    (0..common)
        .find(|&i| expected[i] != actual[i] && !masked.get(i).copied().unwrap_or(false))
        .or((expected.len() != actual.len()).then_some(common))
}

fn compare_bytes(
    seq: u64,
    field: &str,
    expected: &[u8],
    actual: &[u8],
    masked: &[bool],
) -> Result<(), Mismatch> {
    match first_difference(expected, actual, masked) {
        None => Ok(()),
        Some(at) => Err(Mismatch {
            seq,
            field: field.to_owned(),
            expected: hex::encode(expected),
            actual: hex::encode(actual),
            first_difference: Some(at),
        }),
    }
}

/// Compares a packet the simulated host produced with the expected transcript record.
///
/// In order: `type`, `chan`, `flags`, `tid`, `offset8`, `len8`, `ext_hex`, `payload_hex`, then
/// for type 7 the number of receive-buffer ranges and each range's bytes **within its
/// `significant` spans only** (the poison outside them depends on the guest). The record's
/// `ignore` entries are applied first:
///
/// - `name` skips a compared field (`xfer`/`gpa` mask all of `ext_hex`; fields that are not
///   compared, like `ring_pos`, need nothing);
/// - `field[s:e]` masks bytes `s..e` of `ext_hex` or `payload_hex`;
/// - paths into `xfer`, `gpa` or `rxbuf` mask the `ext_hex` bytes they decode from
///   (`gpa.ranges[*].pfns` masks every page number); `rxbuf[*].hex` skips the receive buffer.
///
/// Then `policy` masks the host-policy fields it turns off. Returns the first difference.
pub fn compare(
    expected: &PacketRecord,
    actual: &ObservedPacket,
    policy: &ComparePolicy,
) -> Result<(), Mismatch> {
    let seq = expected.seq;
    let masks = Masks::new(expected, policy);
    let numbers = [
        (
            "type",
            u64::from(expected.packet_type),
            u64::from(actual.packet_type),
            4,
        ),
        ("chan", u64::from(expected.chan), u64::from(actual.chan), 4),
        (
            "flags",
            u64::from(expected.flags),
            u64::from(actual.flags),
            4,
        ),
        ("tid", expected.tid, actual.tid, 16),
        (
            "offset8",
            u64::from(expected.offset8),
            u64::from(actual.offset8),
            4,
        ),
        ("len8", u64::from(expected.len8), u64::from(actual.len8), 4),
    ];
    for (field, e, a, digits) in numbers {
        if e != a && !masks.skip.contains(&field) {
            return Err(Mismatch::number(seq, field, e, a, digits));
        }
    }
    compare_bytes(seq, "ext_hex", &expected.ext, &actual.ext, &masks.ext)?;
    compare_bytes(
        seq,
        "payload_hex",
        &expected.payload,
        &actual.payload,
        &masks.payload,
    )?;
    if expected.packet_type != TYPE_TRANSFER_PAGES || masks.skip_rxbuf {
        return Ok(());
    }
    if expected.rxbuf.len() != actual.rxbuf.len() {
        return Err(Mismatch::number(
            seq,
            "rxbuf",
            expected.rxbuf.len() as u64,
            actual.rxbuf.len() as u64,
            0,
        ));
    }
    for (i, ((range, actual_bytes), masked)) in expected
        .rxbuf
        .iter()
        .zip(&actual.rxbuf)
        .zip(&masks.rxbuf)
        .enumerate()
    {
        for &(start, end) in &range.significant {
            let differs = |j: &usize| !masked[*j] && actual_bytes.get(*j) != Some(&range.bytes[*j]);
            if let Some(at) = (start..end).find(differs) {
                return Err(Mismatch {
                    seq,
                    field: format!("rxbuf[{i}].hex"),
                    expected: hex::encode(&range.bytes),
                    actual: hex::encode(actual_bytes),
                    first_difference: Some(at),
                });
            }
        }
    }
    Ok(())
}
