//! Typed transcript records and the loader.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use super::{ConformanceError, IgnoreRule};

/// VMBus packet type DataInBand.
pub(crate) const TYPE_IN_BAND: u16 = 6;
/// VMBus packet type DataUsingTransferPages.
pub(crate) const TYPE_TRANSFER_PAGES: u16 = 7;
/// VMBus packet type DataUsingGpaDirect.
pub(crate) const TYPE_GPA_DIRECT: u16 = 9;
/// VMBus packet type Completion.
pub(crate) const TYPE_COMPLETION: u16 = 11;
/// NVSP1_SEND_RNDIS_PACKET.
pub(crate) const NVSP_SEND_RNDIS_PACKET: u32 = 107;
/// Size of a VMBus packet descriptor.
pub(crate) const DESCRIPTOR_LEN: usize = 16;
/// Page size the GPA-direct page numbers refer to.
const PAGE_SIZE: u64 = 4096;

/// Little-endian u32 at `at` in `bytes`, if it fits.
pub(crate) fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// The NVSP message type (first u32 of an NVSP payload).
pub(crate) fn nvsp_type(payload: &[u8]) -> Option<u32> {
    le_u32(payload, 0)
}

/// For an NVSP1_SEND_RNDIS_PACKET payload, its `channel_type` (0 data, 1 control).
pub(crate) fn rndis_channel_type(payload: &[u8]) -> Option<u32> {
    (nvsp_type(payload)? == NVSP_SEND_RNDIS_PACKET)
        .then(|| le_u32(payload, 4))
        .flatten()
}

fn de_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    hex::decode(&s).map_err(|e| serde::de::Error::custom(format!("bad hex string: {e}")))
}

fn de_opt_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) => hex::decode(&s)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("bad hex string: {e}"))),
    }
}

fn de_tid<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    let s = String::deserialize(d)?;
    let digits = s
        .strip_prefix("0x")
        .filter(|h| (1..=16).contains(&h.len()) && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            serde::de::Error::custom(format!("tid {s:?} is not a 0x-prefixed hex u64"))
        })?;
    u64::from_str_radix(digits, 16).map_err(serde::de::Error::custom)
}

/// The first line of every transcript (`record: "scenario"`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ScenarioHeader {
    /// Always `"scenario"`.
    pub record: String,
    /// The scenario's name; equals the file stem.
    pub scenario: String,
    /// OpenVMM commit of the host that was recorded.
    pub openvmm_commit: String,
    /// What the guest did, in one line (informative only).
    pub guest_did: String,
    /// The host's configuration.
    pub host_config: HostConfig,
    /// The guest's configuration.
    pub guest_config: GuestConfig,
}

/// Host configuration of a run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HostConfig {
    /// The NIC's MAC address, `00:15:5d:01:02:03`.
    pub mac: String,
    /// Description of the endpoint (the loopback backend).
    pub endpoint: String,
    /// Whether the endpoint claimed TX offloads (only `rndis-offload-caps`).
    pub endpoint_tx_offloads: bool,
    /// Queues the endpoint offered, after the host's cap.
    pub endpoint_max_queues_after_cap: u32,
    /// RSS indirection table size the endpoint offered.
    pub endpoint_indirection_table_size: u32,
    /// Link speed in bit/s.
    pub endpoint_link_speed_bps: u64,
    /// The VF's id (its association serial number), in `vf-*` files only.
    pub vf_id: Option<u32>,
}

/// Guest configuration of a run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GuestConfig {
    /// Ring pages per direction, header page included.
    pub ring_pages_per_direction: u32,
    /// Receive buffer size in bytes.
    pub receive_buffer_bytes: u32,
    /// Receive buffer id (`0xCAFE`).
    pub receive_buffer_id: u32,
    /// Send buffer size in bytes.
    pub send_buffer_bytes: u32,
    /// Send buffer id.
    pub send_buffer_id: u32,
    /// Poison byte of unread receive-buffer bytes, as written (`"0xee"`).
    pub receive_buffer_poison: String,
    /// Bytes in every guest NVSP message (padding included).
    pub nvsp_message_bytes_sent: u32,
}

impl GuestConfig {
    /// [`receive_buffer_poison`](Self::receive_buffer_poison) as a byte.
    pub fn poison_byte(&self) -> Option<u8> {
        let hex = self.receive_buffer_poison.strip_prefix("0x")?;
        u8::from_str_radix(hex, 16).ok()
    }
}

/// Which ring a packet record was written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Guest to host: the guest wrote it.
    G2h,
    /// Host to guest: the host wrote it and the guest read it.
    H2g,
}

/// A `g2h` or `h2g` record: one VMBus ring packet.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PacketRecord {
    /// Position in the transcript (0-based).
    pub seq: u64,
    /// Which ring.
    pub dir: Direction,
    /// 0 = primary channel, 1..n = subchannel index.
    pub chan: u16,
    /// VMBus packet type: 6, 7, 9 or 11 (JSON `type`).
    #[serde(rename = "type")]
    pub packet_type: u16,
    /// Name of the packet type (informative).
    #[serde(default)]
    pub type_name: String,
    /// Descriptor flags; 1 = completion requested.
    pub flags: u16,
    /// Transaction id (JSON: 16-digit hex string).
    #[serde(deserialize_with = "de_tid")]
    pub tid: u64,
    /// Descriptor offset in 8-byte units.
    pub offset8: u16,
    /// Descriptor length in 8-byte units.
    pub len8: u16,
    /// Byte offset in the ring's data area (environment-specific, never compared).
    pub ring_pos: u64,
    /// Bytes between the descriptor and `offset8 * 8` (JSON `ext_hex`).
    #[serde(rename = "ext_hex", deserialize_with = "de_hex")]
    pub ext: Vec<u8>,
    /// Bytes from `offset8 * 8` to `len8 * 8`, padding included (JSON `payload_hex`).
    #[serde(rename = "payload_hex", deserialize_with = "de_hex")]
    pub payload: Vec<u8>,
    /// Type 7 only: decoded transfer-page header.
    #[serde(default)]
    pub xfer: Option<TransferPages>,
    /// Type 7 only: receive-buffer bytes of each range.
    #[serde(default)]
    pub rxbuf: Vec<RxBufRange>,
    /// Type 9 only: decoded GPA-direct header.
    #[serde(default)]
    pub gpa: Option<GpaDirect>,
    /// Type 9 only: the bytes each GPA range describes.
    #[serde(default)]
    pub gpa_data: Vec<GpaData>,
    /// g2h NVSP 107 naming a send section: the section's contents.
    #[serde(default)]
    pub section: Option<Section>,
    /// Human decoding (informative only).
    #[serde(default)]
    pub what: Option<String>,
    /// Why the guest did this (informative only).
    #[serde(default)]
    pub note: Option<String>,
    /// What to leave out of a comparison.
    #[serde(default)]
    pub ignore: Vec<IgnoreRule>,
    /// The record's JSON object as read, unknown fields included.
    #[serde(skip)]
    pub json: Value,
}

/// Decoded transfer-page header (`xfer`) of a type-7 packet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TransferPages {
    /// The transfer page set (the receive buffer id, `0xCAFE`).
    pub transfer_page_set_id: u16,
    /// Sender-owns flag.
    pub sender_owns: u8,
    /// Number of ranges.
    pub range_count: u32,
    /// The ranges.
    pub ranges: Vec<TransferPageRange>,
}

/// One transfer-page range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct TransferPageRange {
    /// Length in bytes.
    pub byte_count: u32,
    /// Offset in the receive buffer.
    pub byte_offset: u32,
}

/// Receive-buffer bytes of one range of a type-7 packet (`rxbuf[i]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RxBufRange {
    /// Index of the range.
    pub range: usize,
    /// Offset in the receive buffer.
    pub byte_offset: u32,
    /// Length in bytes.
    pub byte_count: u32,
    /// The range's bytes (JSON `hex`).
    #[serde(rename = "hex", deserialize_with = "de_hex")]
    pub bytes: Vec<u8>,
    /// Spans `(start, end)`, end exclusive, that the host wrote; the rest is `0xEE` poison.
    pub significant: Vec<(usize, usize)>,
}

/// Decoded GPA-direct header (`gpa`) of a type-9 packet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GpaDirect {
    /// Number of ranges.
    pub range_count: u32,
    /// The ranges.
    pub ranges: Vec<GpaRange>,
}

/// One GPA-direct range.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GpaRange {
    /// Length in bytes.
    pub byte_count: u32,
    /// Offset into the first page.
    pub byte_offset: u32,
    /// Guest page numbers (environment-specific).
    pub pfns: Vec<u64>,
}

/// The bytes one GPA range describes (`gpa_data[i]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GpaData {
    /// Index of the range.
    pub range: usize,
    /// Length in bytes.
    pub byte_count: u32,
    /// The bytes (JSON `hex`).
    #[serde(rename = "hex", deserialize_with = "de_hex")]
    pub bytes: Vec<u8>,
}

/// The send section a g2h NVSP 107 names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Section {
    /// Section index.
    pub index: u32,
    /// Bytes used in the section.
    pub size: u32,
    /// The section's bytes; `None` when the index lies outside the send buffer (JSON `hex`).
    #[serde(rename = "hex", deserialize_with = "de_opt_hex", default)]
    pub bytes: Option<Vec<u8>>,
    /// Remark (informative).
    #[serde(default)]
    pub note: Option<String>,
}

impl PacketRecord {
    /// Rebuilds the packet as it was in the ring: the 16-byte descriptor (`type` u16, `offset8`
    /// u16, `len8` u16, `flags` u16, `tid` u64, little-endian), then `ext`, then `payload`. The
    /// 8-byte ring trailer is not included.
    ///
    /// Fails if `16 + ext.len() != offset8 * 8` or `16 + ext.len() + payload.len() != len8 * 8`.
    pub fn raw_packet(&self) -> Result<Vec<u8>, ConformanceError> {
        let data_offset = DESCRIPTOR_LEN + self.ext.len();
        if data_offset != usize::from(self.offset8) * 8 {
            return Err(self.inconsistent(format!(
                "16 + ext_hex ({} bytes) = {data_offset}, but offset8 * 8 = {}",
                self.ext.len(),
                usize::from(self.offset8) * 8
            )));
        }
        let total = data_offset + self.payload.len();
        if total != usize::from(self.len8) * 8 {
            return Err(self.inconsistent(format!(
                "16 + ext_hex + payload_hex ({} + {} bytes) = {total}, but len8 * 8 = {}",
                self.ext.len(),
                self.payload.len(),
                usize::from(self.len8) * 8
            )));
        }
        let mut raw = Vec::with_capacity(total);
        raw.extend_from_slice(&self.packet_type.to_le_bytes());
        raw.extend_from_slice(&self.offset8.to_le_bytes());
        raw.extend_from_slice(&self.len8.to_le_bytes());
        raw.extend_from_slice(&self.flags.to_le_bytes());
        raw.extend_from_slice(&self.tid.to_le_bytes());
        raw.extend_from_slice(&self.ext);
        raw.extend_from_slice(&self.payload);
        Ok(raw)
    }

    /// The NVSP message type (first u32 of the payload), if the payload has one.
    pub fn nvsp_type(&self) -> Option<u32> {
        nvsp_type(&self.payload)
    }

    /// For an NVSP1_SEND_RNDIS_PACKET payload, its `channel_type`: 0 data, 1 control.
    pub fn rndis_channel_type(&self) -> Option<u32> {
        rndis_channel_type(&self.payload)
    }

    fn inconsistent(&self, reason: String) -> ConformanceError {
        ConformanceError::Inconsistent {
            seq: self.seq,
            reason,
        }
    }

    /// Checks that the record is self-consistent: it rebuilds ([`raw_packet`](Self::raw_packet));
    /// the type is 6, 7, 9 or 11; `xfer`/`rxbuf` (type 7) and `gpa`/`gpa_data` (type 9) agree
    /// with `ext_hex` and with each other; `significant` spans lie inside their range; `section`
    /// agrees with the NVSP 107 payload; and every `ignore` entry refers to an existing field.
    ///
    /// [`Transcript::load`] runs this on every packet record.
    pub fn validate(&self) -> Result<(), ConformanceError> {
        self.raw_packet()?;
        self.validate_inner()
            .map_err(|reason| self.inconsistent(reason))
    }

    fn validate_inner(&self) -> Result<(), String> {
        match self.packet_type {
            TYPE_IN_BAND | TYPE_COMPLETION => {}
            TYPE_TRANSFER_PAGES => self.validate_xfer()?,
            TYPE_GPA_DIRECT => self.validate_gpa()?,
            other => return Err(format!("unknown VMBus packet type {other}")),
        }
        if self.packet_type != TYPE_TRANSFER_PAGES
            && (self.xfer.is_some() || !self.rxbuf.is_empty())
        {
            return Err("xfer/rxbuf on a packet that is not type 7".into());
        }
        if self.packet_type != TYPE_GPA_DIRECT && (self.gpa.is_some() || !self.gpa_data.is_empty())
        {
            return Err("gpa/gpa_data on a packet that is not type 9".into());
        }
        if let Some(section) = &self.section {
            if self.dir != Direction::G2h || self.nvsp_type() != Some(NVSP_SEND_RNDIS_PACKET) {
                return Err("section on a packet that is not a g2h NVSP 107".into());
            }
            let (index, size) = (le_u32(&self.payload, 8), le_u32(&self.payload, 12));
            if index != Some(section.index) || size != Some(section.size) {
                return Err(format!(
                    "section {{index {}, size {}}} but the NVSP 107 payload says {index:?}, {size:?}",
                    section.index, section.size
                ));
            }
            if let Some(bytes) = &section.bytes
                && bytes.len() != section.size as usize
            {
                return Err(format!(
                    "section hex has {} bytes, size is {}",
                    bytes.len(),
                    section.size
                ));
            }
        }
        for rule in &self.ignore {
            rule.check_against(&self.json)
                .map_err(|e| format!("ignore entry `{rule}`: {e}"))?;
        }
        Ok(())
    }

    fn validate_xfer(&self) -> Result<(), String> {
        let xfer = self.xfer.as_ref().ok_or("type 7 without xfer")?;
        let n = xfer.ranges.len();
        if xfer.range_count as usize != n {
            return Err(format!(
                "xfer.range_count {} but {n} ranges",
                xfer.range_count
            ));
        }
        let mut ext = Vec::with_capacity(8 + 8 * n);
        ext.extend_from_slice(&xfer.transfer_page_set_id.to_le_bytes());
        ext.push(xfer.sender_owns);
        ext.push(self.ext.get(3).copied().unwrap_or(0)); // reserved byte
        ext.extend_from_slice(&xfer.range_count.to_le_bytes());
        for r in &xfer.ranges {
            ext.extend_from_slice(&r.byte_count.to_le_bytes());
            ext.extend_from_slice(&r.byte_offset.to_le_bytes());
        }
        if ext != self.ext {
            return Err(format!(
                "xfer encodes to {} but ext_hex is {}",
                hex::encode(&ext),
                hex::encode(&self.ext)
            ));
        }
        if self.rxbuf.len() != n {
            return Err(format!(
                "{n} xfer ranges but {} rxbuf entries",
                self.rxbuf.len()
            ));
        }
        for (i, (range, rx)) in xfer.ranges.iter().zip(&self.rxbuf).enumerate() {
            if rx.range != i
                || rx.byte_offset != range.byte_offset
                || rx.byte_count != range.byte_count
            {
                return Err(format!(
                    "rxbuf[{i}] (range {}, offset {}, count {}) does not match xfer range {i} \
                     (offset {}, count {})",
                    rx.range, rx.byte_offset, rx.byte_count, range.byte_offset, range.byte_count
                ));
            }
            if rx.bytes.len() != rx.byte_count as usize {
                return Err(format!(
                    "rxbuf[{i}].hex has {} bytes, byte_count is {}",
                    rx.bytes.len(),
                    rx.byte_count
                ));
            }
            let mut prev_end = 0;
            for &(s, e) in &rx.significant {
                if s < prev_end || s > e || e > rx.bytes.len() {
                    return Err(format!(
                        "rxbuf[{i}].significant span [{s}, {e}] is out of order or outside \
                         the {} bytes",
                        rx.bytes.len()
                    ));
                }
                prev_end = e;
            }
        }
        Ok(())
    }

    fn validate_gpa(&self) -> Result<(), String> {
        let gpa = self.gpa.as_ref().ok_or("type 9 without gpa")?;
        let n = gpa.ranges.len();
        if gpa.range_count as usize != n {
            return Err(format!(
                "gpa.range_count {} but {n} ranges",
                gpa.range_count
            ));
        }
        let mut ext = Vec::new();
        ext.extend_from_slice(self.ext.get(..4).unwrap_or(&[0; 4])); // reserved
        ext.extend_from_slice(&gpa.range_count.to_le_bytes());
        for (i, r) in gpa.ranges.iter().enumerate() {
            ext.extend_from_slice(&r.byte_count.to_le_bytes());
            ext.extend_from_slice(&r.byte_offset.to_le_bytes());
            for pfn in &r.pfns {
                ext.extend_from_slice(&pfn.to_le_bytes());
            }
            let pages = (u64::from(r.byte_offset) + u64::from(r.byte_count)).div_ceil(PAGE_SIZE);
            if pages != r.pfns.len() as u64 {
                return Err(format!(
                    "gpa range {i} (offset {}, count {}) spans {pages} pages but lists {} pfns",
                    r.byte_offset,
                    r.byte_count,
                    r.pfns.len()
                ));
            }
        }
        if ext != self.ext {
            return Err(format!(
                "gpa encodes to {} but ext_hex is {}",
                hex::encode(&ext),
                hex::encode(&self.ext)
            ));
        }
        if self.gpa_data.len() != n {
            return Err(format!(
                "{n} gpa ranges but {} gpa_data entries",
                self.gpa_data.len()
            ));
        }
        for (i, (r, d)) in gpa.ranges.iter().zip(&self.gpa_data).enumerate() {
            if d.range != i
                || d.byte_count != r.byte_count
                || d.bytes.len() != d.byte_count as usize
            {
                return Err(format!(
                    "gpa_data[{i}] (range {}, count {}, {} bytes) does not match gpa range {i} \
                     (count {})",
                    d.range,
                    d.byte_count,
                    d.bytes.len(),
                    r.byte_count
                ));
            }
        }
        Ok(())
    }
}

/// A primary-ring header snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RingHeader {
    /// Write index.
    pub write_index: u32,
    /// Read index.
    pub read_index: u32,
    /// Interrupt mask.
    pub interrupt_mask: u32,
    /// Pending send size.
    pub pending_send_size: u32,
    /// Feature bits.
    pub feature_bits: u32,
}

/// What a GPADL is for, from the `gpadl` event's `what`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpadlPurpose {
    /// The primary channel's ring (guest→host pages, then host→guest pages).
    PrimaryRing,
    /// A subchannel's ring.
    SubchannelRing,
    /// The receive buffer.
    ReceiveBuffer,
    /// The send buffer.
    SendBuffer,
    /// Something else; the text as written.
    Other(String),
}

impl From<String> for GpadlPurpose {
    fn from(what: String) -> Self {
        let lower = what.to_ascii_lowercase();
        if lower.starts_with("primary ring") {
            Self::PrimaryRing
        } else if lower.starts_with("subchannel ring") {
            Self::SubchannelRing
        } else if lower.starts_with("receive buffer") {
            Self::ReceiveBuffer
        } else if lower.starts_with("send buffer") {
            Self::SendBuffer
        } else {
            Self::Other(what)
        }
    }
}

/// What a `host_action` event made the host do, from its `action` text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAction {
    /// The endpoint reports link down.
    LinkDown,
    /// The endpoint reports link up (also while already up, in `link-same-state`).
    LinkUp,
    /// The host removes the VF.
    VfRemoved,
    /// The VF becomes available again (re-add).
    VfAvailable,
    /// Something else; the text as written.
    Other(String),
}

impl From<String> for HostAction {
    fn from(action: String) -> Self {
        let lower = action.to_ascii_lowercase();
        if lower.contains("link down") {
            Self::LinkDown
        } else if lower.contains("link up") {
            Self::LinkUp
        } else if lower.contains("vf removed") {
            Self::VfRemoved
        } else if lower.contains("vf") && lower.contains("available again") {
            Self::VfAvailable
        } else {
            Self::Other(action)
        }
    }
}

/// Host-side observations in the `end` event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EndEvent {
    /// Arguments of the endpoint's `set_data_path_to_guest_vf` calls, in order.
    #[serde(rename = "endpoint_set_data_path_to_guest_vf_calls")]
    pub set_data_path_to_guest_vf_calls: Vec<bool>,
    /// `vf-*` files only: how often the host asked for the VF to be hot-added.
    #[serde(default)]
    pub vf_guest_ready_for_device_calls: Option<u64>,
    /// Primary guest→host ring header at the end (environment-specific; always ignored).
    pub primary_guest_to_host_ring: RingHeader,
    /// Primary host→guest ring header at the end (environment-specific; always ignored).
    pub primary_host_to_guest_ring: RingHeader,
}

/// The typed content of an event record, by its `event` name.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The primary channel was offered.
    Offer {
        /// Interface id (the synthetic NIC class).
        interface_id: String,
        /// Always 0 for the primary offer.
        #[serde(default)]
        subchannel_index: u16,
    },
    /// A GPADL was created.
    Gpadl {
        /// Channel it was created for.
        chan: u16,
        /// GPADL id (environment-specific).
        gpadl_id: u32,
        /// Number of pages.
        pages: u32,
        /// What it is for (JSON `what`).
        #[serde(rename = "what", deserialize_with = "de_from_string")]
        purpose: GpadlPurpose,
        /// Whether the host accepted it.
        accepted: bool,
    },
    /// A channel was opened.
    Open {
        /// The channel.
        chan: u16,
        /// GPADL id of the ring (environment-specific).
        ring_gpadl_id: u32,
        /// Page offset of the host→guest ring inside the ring GPADL (16 here).
        downstream_ring_page_offset: u32,
        /// Target virtual processor.
        target_vp: u32,
        /// Whether the host accepted the open.
        accepted: bool,
    },
    /// A channel was closed.
    Close {
        /// The channel.
        chan: u16,
    },
    /// The ring headers about 50 ms after open.
    RingHeadersAfterOpen {
        /// The channel.
        chan: u16,
        /// Guest→host ring header (`interrupt_mask` is timing-dependent).
        #[serde(rename = "guest_to_host_ring")]
        guest_to_host: RingHeader,
        /// Host→guest ring header.
        #[serde(rename = "host_to_guest_ring")]
        host_to_guest: RingHeader,
    },
    /// A subchannel offer appeared.
    SubchannelOffer {
        /// The subchannel index (1..n).
        subchannel_index: u16,
        /// Interface id.
        #[serde(default)]
        interface_id: String,
    },
    /// The script made the host act.
    HostAction {
        /// What the host did (JSON `action`).
        #[serde(deserialize_with = "de_from_string")]
        action: HostAction,
        /// Whether the host acknowledged the action, where recorded.
        #[serde(default)]
        host_acknowledged: Option<bool>,
    },
    /// Nothing arrived on any ring for `waited_ms`.
    Silence {
        /// How long the guest waited, in milliseconds.
        waited_ms: u64,
    },
    /// Fewer packets than expected arrived (no transcript contains one; its fields are only in
    /// [`EventRecord::fields`]).
    Timeout {},
    /// An approximate delay (environment-specific).
    Timing {
        /// Approximate milliseconds from the link notification to the second indication
        /// (`link-same-state`).
        #[serde(
            default,
            rename = "ms_from_link_notification_to_second_indication_approx"
        )]
        approx_ms: Option<u64>,
    },
    /// A remark.
    Note {
        /// The remark.
        note: String,
    },
    /// Host-side observations at the end of the run.
    End(EndEvent),
    /// An event name this version does not know; see [`EventRecord::fields`].
    #[serde(other)]
    Other,
}

fn de_from_string<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<T, D::Error> {
    String::deserialize(d).map(T::from)
}

/// An `event` record: context that is not a ring packet.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Position in the transcript (0-based).
    pub seq: u64,
    /// The event name as written (`offer`, `gpadl`, `host_action`, …).
    pub event: String,
    /// Typed content.
    pub kind: EventKind,
    /// What to leave out of a comparison.
    pub ignore: Vec<IgnoreRule>,
    /// The record's whole JSON object, unknown fields included.
    pub fields: Map<String, Value>,
}

impl EventRecord {
    fn from_json(value: &Value) -> Result<Self, String> {
        let fields = value.as_object().ok_or("not a JSON object")?.clone();
        let seq = fields
            .get("seq")
            .and_then(Value::as_u64)
            .ok_or("missing or bad `seq`")?;
        let event = fields
            .get("event")
            .and_then(Value::as_str)
            .ok_or("missing or bad `event`")?
            .to_owned();
        let kind = EventKind::deserialize(value).map_err(|e| format!("event `{event}`: {e}"))?;
        let ignore = match fields.get("ignore") {
            None => Vec::new(),
            Some(v) => Vec::<IgnoreRule>::deserialize(v).map_err(|e| format!("`ignore`: {e}"))?,
        };
        for rule in &ignore {
            rule.check_against(value)
                .map_err(|e| format!("ignore entry `{rule}`: {e}"))?;
        }
        Ok(Self {
            seq,
            event,
            kind,
            ignore,
            fields,
        })
    }

    /// The channel the event concerns, if it names one (`chan`).
    pub fn chan(&self) -> Option<u16> {
        self.fields
            .get("chan")
            .and_then(Value::as_u64)
            .and_then(|c| u16::try_from(c).ok())
    }

    /// The event's fields as they should compare: without `seq`, `dir`, `ignore` and the
    /// informative `what` and `note`, and with every `ignore` entry applied.
    pub fn comparable(&self) -> Value {
        let mut value = Value::Object(self.fields.clone());
        if let Some(obj) = value.as_object_mut() {
            for key in ["seq", "dir", "ignore", "what", "note"] {
                obj.remove(key);
            }
        }
        for rule in &self.ignore {
            rule.strip(&mut value);
        }
        value
    }
}

/// One record after the header.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A `g2h` or `h2g` ring packet (boxed: it is much larger than an event).
    Packet(Box<PacketRecord>),
    /// An `event`.
    Event(EventRecord),
}

impl Record {
    /// The record's `seq`.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Packet(p) => p.seq,
            Self::Event(e) => e.seq,
        }
    }

    /// The packet record, if this is one.
    pub fn as_packet(&self) -> Option<&PacketRecord> {
        match self {
            Self::Packet(p) => Some(p),
            Self::Event(_) => None,
        }
    }

    /// The event record, if this is one.
    pub fn as_event(&self) -> Option<&EventRecord> {
        match self {
            Self::Event(e) => Some(e),
            Self::Packet(_) => None,
        }
    }

    fn from_json(value: Value) -> Result<Self, String> {
        match value.get("dir").and_then(Value::as_str) {
            Some("g2h" | "h2g") => {
                let mut packet = PacketRecord::deserialize(&value).map_err(|e| e.to_string())?;
                packet.json = value;
                packet.validate().map_err(|e| e.to_string())?;
                Ok(Self::Packet(Box::new(packet)))
            }
            Some("event") => EventRecord::from_json(&value).map(Self::Event),
            Some(other) => Err(format!("unknown dir {other:?}")),
            None => Err("missing `dir`".into()),
        }
    }
}

/// One loaded transcript file.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// The scenario header (line 1).
    pub header: ScenarioHeader,
    /// Every later line, in order; `records[i].seq() == i`.
    pub records: Vec<Record>,
}

impl Transcript {
    /// Reads and parses `path` (see [`parse`](Self::parse)).
    pub fn load(path: &Path) -> Result<Self, ConformanceError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConformanceError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Parses transcript text; `path` is used in error messages and kept in
    /// [`path`](Self::path).
    ///
    /// Fails with [`ConformanceError::Malformed`] (file and 1-based line) on: a line that is not
    /// JSON or does not fit the format; a first line that is not the scenario header; a `seq`
    /// that is not the record's index; a packet record that fails
    /// [`PacketRecord::validate`]; an `ignore` entry that is malformed or names a missing field.
    /// Unknown fields are tolerated.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConformanceError> {
        let malformed = |line: usize, reason: String| ConformanceError::Malformed {
            file: path.to_owned(),
            line,
            reason,
        };
        let mut lines = text.lines();
        let first = lines
            .next()
            .ok_or_else(|| malformed(1, "empty file: no scenario header".into()))?;
        let header: ScenarioHeader = serde_json::from_str(first)
            .map_err(|e| malformed(1, format!("bad scenario header: {e}")))?;
        if header.record != "scenario" {
            return Err(malformed(
                1,
                format!(
                    "first line has record {:?}, not \"scenario\"",
                    header.record
                ),
            ));
        }
        let mut records = Vec::new();
        for (index, line) in lines.enumerate() {
            let line_no = index + 2;
            let value: Value = serde_json::from_str(line)
                .map_err(|e| malformed(line_no, format!("invalid JSON: {e}")))?;
            let record = Record::from_json(value).map_err(|e| malformed(line_no, e))?;
            if record.seq() != index as u64 {
                return Err(malformed(
                    line_no,
                    format!("seq {} where {index} was expected", record.seq()),
                ));
            }
            records.push(record);
        }
        Ok(Self {
            path: path.to_owned(),
            header,
            records,
        })
    }

    /// The scenario name from the header.
    pub fn name(&self) -> &str {
        &self.header.scenario
    }

    /// The packet records, in order.
    pub fn packets(&self) -> impl Iterator<Item = &PacketRecord> {
        self.records.iter().filter_map(Record::as_packet)
    }

    /// The event records, in order.
    pub fn events(&self) -> impl Iterator<Item = &EventRecord> {
        self.records.iter().filter_map(Record::as_event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"record":"scenario","scenario":"t","openvmm_commit":"c","guest_did":"g","host_config":{"mac":"m","endpoint":"e","endpoint_tx_offloads":false,"endpoint_max_queues_after_cap":64,"endpoint_indirection_table_size":64,"endpoint_link_speed_bps":1,"vf_id":null},"guest_config":{"ring_pages_per_direction":16,"receive_buffer_bytes":1,"receive_buffer_id":2,"send_buffer_bytes":3,"send_buffer_id":0,"receive_buffer_poison":"0xee","nvsp_message_bytes_sent":40}}"#;

    fn parse(lines: &[&str]) -> Result<Transcript, ConformanceError> {
        let text = std::iter::once(HEADER)
            .chain(lines.iter().copied())
            .collect::<Vec<_>>()
            .join("\n");
        Transcript::parse(Path::new("t.jsonl"), &text)
    }

    #[test]
    fn events_without_typed_fields_are_tolerated() {
        let t = parse(&[
            r#"{"seq":0,"dir":"event","event":"timeout","expected":2,"got":1}"#,
            r#"{"seq":1,"dir":"event","event":"something_new","x":1}"#,
            r#"{"seq":2,"dir":"event","event":"silence","waited_ms":250,"extra":true}"#,
        ])
        .unwrap();
        let kinds: Vec<&EventKind> = t.events().map(|e| &e.kind).collect();
        assert_eq!(
            kinds,
            [
                &EventKind::Timeout {},
                &EventKind::Other,
                &EventKind::Silence { waited_ms: 250 }
            ]
        );
        assert_eq!(t.events().next().unwrap().fields["got"], 1);
    }

    #[test]
    fn bad_lines_are_errors_with_line_numbers() {
        for (line, needle) in [
            (r#"{"seq":0,"dir":"sideways"}"#, "unknown dir"),
            (r#"{"seq":0}"#, "missing `dir`"),
            (r#"{"seq":0,"dir":"event","event":"silence"}"#, "waited_ms"),
            (
                r#"{"seq":0,"dir":"event","event":"note","note":"n","ignore":["x"]}"#,
                "no field `x`",
            ),
        ] {
            let err = parse(&[line]).unwrap_err().to_string();
            assert!(err.starts_with("t.jsonl:2: "), "{err}");
            assert!(err.contains(needle), "{needle:?} not in {err}");
        }
    }

    #[test]
    fn host_actions_and_gpadl_purposes() {
        assert_eq!(
            HostAction::from("endpoint reports link down".to_owned()),
            HostAction::LinkDown
        );
        assert_eq!(
            HostAction::from("VF (id 7) becomes available again".to_owned()),
            HostAction::VfAvailable
        );
        assert_eq!(
            HostAction::from("reboot".to_owned()),
            HostAction::Other("reboot".into())
        );
        assert_eq!(
            GpadlPurpose::from("subchannel ring".to_owned()),
            GpadlPurpose::SubchannelRing
        );
    }
}
