//! 82576 advanced RX and TX descriptors (16 bytes each, little-endian).
//!
//! The driver writes the *read* formats ([`AdvRxDescRead`], [`AdvTxDataDesc`]); the device
//! overwrites them with the *write-back* formats ([`AdvRxDescWb`], [`AdvTxDescWb`]) and sets
//! `DD` last. Names follow Linux `igbvf` (`union e1000_adv_rx_desc`, `e1000_adv_tx_desc`).
//!
//! Trust rules: descriptor memory is shared with an untrusted device that may write it at any
//! time. The driver copies a descriptor out of ring memory **once** (after seeing `DD`, with an
//! acquire fence), then validates the copy with [`RxWriteback::parse`] or
//! [`TxWriteback::is_done`], then uses only the validated result. Anything a well-behaved
//! device never produces comes back as a [`DescriptorError`] for the driver to count and drop;
//! no input makes these parsers panic.

use std::num::NonZeroU16;

use thiserror::Error;
use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of every advanced descriptor in bytes.
pub const DESC_SIZE: usize = 16;

/// Advanced RX descriptor, read format (`e1000_adv_rx_desc.read`): written by the driver.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct AdvRxDescRead {
    /// Packet buffer bus address.
    pub pkt_addr: U64,
    /// Header buffer bus address; 0 without header split. Its bit 0 overlays `DD`.
    pub hdr_addr: U64,
}

/// Advanced RX descriptor, write-back format (`e1000_adv_rx_desc.wb`): written by the device.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct AdvRxDescWb {
    /// RSS type (bits 3:0) and packet type (bits 15:4) (`pkt_info`).
    pub pkt_info: U16,
    /// Header length and split-header flag (`hdr_info`).
    pub hdr_info: U16,
    /// RSS hash, or IP identification and checksum (`hi_dword`).
    pub rss: U32,
    /// Extended status (low bits) and errors (bits 31:20) (`status_error`).
    pub status_error: U32,
    /// Bytes written to the packet buffer (`length`).
    pub length: U16,
    /// VLAN tag when [`rx_status::VP`] is set (`vlan`).
    pub vlan: U16,
}

/// Advanced TX data descriptor, read format (`e1000_adv_tx_desc.read`): written by the driver.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct AdvTxDataDesc {
    /// Data buffer bus address.
    pub buffer_addr: U64,
    /// Buffer length (bits 15:0), `DTYP` (23:20) and `DCMD` (31:24) (`cmd_type_len`).
    pub cmd_type_len: U32,
    /// `STA` (3:0, must be 0), `IDX`, `CC`, `POPTS` (13:8), `PAYLEN` (31:14).
    pub olinfo_status: U32,
}

/// Advanced TX descriptor, write-back format (`e1000_adv_tx_desc.wb`): written by the device.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct AdvTxDescWb {
    /// Reserved.
    pub rsvd: U64,
    /// Next sequence seed (`nxtseq_seed`).
    pub nxtseq_seed: U32,
    /// Status; only [`tx_status::DD`] is meaningful.
    pub status: U32,
}

const _: () = assert!(size_of::<AdvRxDescRead>() == DESC_SIZE);
const _: () = assert!(size_of::<AdvRxDescWb>() == DESC_SIZE);
const _: () = assert!(size_of::<AdvTxDataDesc>() == DESC_SIZE);
const _: () = assert!(size_of::<AdvTxDescWb>() == DESC_SIZE);

/// RX write-back `status_error` bits (`E1000_RXD_STAT_*`, `E1000_RXDEXT_STATERR_*`).
pub mod rx_status {
    /// Descriptor done.
    pub const DD: u32 = 1 << 0;
    /// End of packet.
    pub const EOP: u32 = 1 << 1;
    /// Ignore checksum indication.
    pub const IXSM: u32 = 1 << 2;
    /// VLAN packet: the `vlan` field holds the stripped tag.
    pub const VP: u32 = 1 << 3;
    /// UDP checksum calculated.
    pub const UDPCS: u32 = 1 << 4;
    /// TCP checksum calculated.
    pub const TCPCS: u32 = 1 << 5;
    /// IPv4 header checksum calculated.
    pub const IPCS: u32 = 1 << 6;
    /// Looped back from another pool (VM-to-VM switching).
    pub const LB: u32 = 1 << 18;
    /// CRC error.
    pub const CE: u32 = 1 << 24;
    /// Symbol error.
    pub const SE: u32 = 1 << 25;
    /// Sequence error.
    pub const SEQ: u32 = 1 << 26;
    /// Carrier extension error.
    pub const CXE: u32 = 1 << 28;
    /// TCP/UDP checksum error.
    pub const TCPE: u32 = 1 << 29;
    /// IPv4 checksum error.
    pub const IPE: u32 = 1 << 30;
    /// RX data error.
    pub const RXE: u32 = 1 << 31;
    /// Errors that make the frame unusable (`E1000_RXDEXT_ERR_FRAME_ERR_MASK`).
    pub const FRAME_ERR_MASK: u32 = CE | SE | SEQ | CXE | RXE;
    /// VLAN ID bits of the `vlan` field (`E1000_RXD_SPC_VLAN_MASK`).
    pub const VLAN_ID_MASK: u16 = 0x0FFF;
}

/// TX `cmd_type_len` bits (`E1000_ADVTXD_*`).
pub mod tx_cmd {
    /// Buffer length, bits 15:0.
    pub const LEN_MASK: u32 = 0xFFFF;
    /// Descriptor type: data (`E1000_ADVTXD_DTYP_DATA`).
    pub const DTYP_DATA: u32 = 0x3 << 20;
    /// Descriptor type: context (`E1000_ADVTXD_DTYP_CTXT`).
    pub const DTYP_CTXT: u32 = 0x2 << 20;
    /// Descriptor type field mask.
    pub const DTYP_MASK: u32 = 0xF << 20;
    /// End of packet (`E1000_ADVTXD_DCMD_EOP`).
    pub const EOP: u32 = 1 << 24;
    /// Insert FCS (`E1000_ADVTXD_DCMD_IFCS`).
    pub const IFCS: u32 = 1 << 25;
    /// Report status: write back `DD` (`E1000_ADVTXD_DCMD_RS`).
    pub const RS: u32 = 1 << 27;
    /// Advanced descriptor (`E1000_ADVTXD_DCMD_DEXT`).
    pub const DEXT: u32 = 1 << 29;
    /// Insert VLAN tag (`E1000_ADVTXD_DCMD_VLE`).
    pub const VLE: u32 = 1 << 30;
    /// TCP segmentation (`E1000_ADVTXD_DCMD_TSE`).
    pub const TSE: u32 = 1 << 31;
    /// `PAYLEN` shift in `olinfo_status` (`E1000_ADVTXD_PAYLEN_SHIFT`).
    pub const PAYLEN_SHIFT: u32 = 14;
    /// Largest `PAYLEN` (18 bits).
    pub const PAYLEN_MAX: u32 = (1 << 18) - 1;
}

/// TX write-back `status` bits.
pub mod tx_status {
    /// Descriptor done (`E1000_TXD_STAT_DD`).
    pub const DD: u32 = 1 << 0;
}

/// Whether the driver lets a frame span several RX descriptors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxChaining {
    /// Every frame fits one buffer (`SET_LPE` max frame ≤ buffer size): `EOP` is required.
    SingleDescriptor,
    /// Frames may span descriptors; non-`EOP` descriptors must fill their buffer.
    MultiDescriptor,
}

/// What a device wrote back that a well-behaved device never writes. The driver counts these
/// and recycles the descriptor.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum DescriptorError {
    /// `DD` set with a zero length.
    #[error("rx descriptor done with zero length")]
    ZeroLength,
    /// More bytes than the buffer the driver posted.
    #[error("rx length {length} exceeds buffer size {buffer_size}")]
    LengthExceedsBuffer {
        /// Length the device reported.
        length: u16,
        /// Buffer size the driver posted.
        buffer_size: usize,
    },
    /// A frame continued past this descriptor, but the driver never enables that.
    #[error("rx descriptor without eop (length {length}) but multi-descriptor frames are off")]
    UnexpectedNonEop {
        /// Length the device reported.
        length: u16,
    },
    /// A non-final descriptor of a chained frame that does not fill its buffer.
    #[error("rx non-eop descriptor with short length {length} (buffer size {buffer_size})")]
    ShortNonEop {
        /// Length the device reported.
        length: u16,
        /// Buffer size the driver posted.
        buffer_size: usize,
    },
    /// A header buffer address with bit 0 set would read as `DD` before write-back.
    #[error("rx header buffer address {0:#x} is odd")]
    OddHeaderAddress(u64),
    /// A TX payload length that does not fit `PAYLEN`.
    #[error("tx payload length {0} exceeds the 18-bit paylen field")]
    PayloadTooLong(u32),
    /// A TX data descriptor with a zero-length buffer.
    #[error("tx buffer length is zero")]
    ZeroTxLength,
}

/// Hardware checksum verdict for a received frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RxChecksum {
    /// The device did not check (no `TCPCS`/`UDPCS`, or `IXSM`).
    NotChecked,
    /// The device checked the L4 (and IPv4 header) checksum and it is good.
    Good,
    /// The device reports an L4 or IPv4 header checksum error.
    Bad,
}

/// A validated RX write-back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxCompletion {
    /// Bytes in the packet buffer, `1..=buffer size`.
    pub length: u16,
    /// Last descriptor of the frame.
    pub eop: bool,
    /// The stripped VLAN tag (TCI as written, priority included) when `VP` is set.
    pub vlan: Option<u16>,
    /// Any of [`rx_status::FRAME_ERR_MASK`]: drop the frame and count an RX error.
    pub frame_error: bool,
    /// Checksum verdict.
    pub checksum: RxChecksum,
    /// Looped back from another pool on the same port.
    pub loopback: bool,
    /// `pkt_info` as written (RSS type and packet type).
    pub pkt_info: u16,
    /// RSS hash (or IP id/checksum) as written.
    pub rss: u32,
    /// The raw `status_error` word, for diagnostics.
    pub status_error: u32,
}

impl RxCompletion {
    /// The write-back a device would produce for this completion (for emulators and tests).
    pub fn write_back(&self) -> AdvRxDescWb {
        AdvRxDescWb {
            pkt_info: U16::new(self.pkt_info),
            hdr_info: U16::new(0),
            rss: U32::new(self.rss),
            status_error: U32::new(self.status_error | rx_status::DD),
            length: U16::new(self.length),
            vlan: U16::new(self.vlan.unwrap_or(0)),
        }
    }
}

/// Parser for the RX write-back format.
#[derive(Debug)]
pub struct RxWriteback;

impl RxWriteback {
    /// Validate one RX write-back copied out of the ring.
    ///
    /// Returns `Ok(None)` while `DD` is clear (the device still owns the descriptor and the
    /// other fields may still hold the read format). `buffer_size` is the packet buffer size
    /// the driver posted; `chaining` says whether frames may span descriptors.
    ///
    /// Rejected: `DD` with length 0, length above `buffer_size`, no `EOP` under
    /// [`RxChaining::SingleDescriptor`], a short non-`EOP` descriptor under
    /// [`RxChaining::MultiDescriptor`]. Reserved and unknown status bits are kept in
    /// [`RxCompletion::status_error`] but not rejected: their meaning differs between 82576,
    /// I350 and QEMU, and dropping good frames over them would cost more than it protects.
    /// Frame errors reported by the device (`RXE`, `CE`, ...) are legitimate and come back as
    /// [`RxCompletion::frame_error`], not as an error.
    pub fn parse(
        bytes: &[u8; DESC_SIZE],
        buffer_size: usize,
        chaining: RxChaining,
    ) -> Result<Option<RxCompletion>, DescriptorError> {
        let wb: AdvRxDescWb = zerocopy::transmute!(*bytes);
        let status = wb.status_error.get();
        if status & rx_status::DD == 0 {
            return Ok(None);
        }
        let length = wb.length.get();
        if length == 0 {
            return Err(DescriptorError::ZeroLength);
        }
        if usize::from(length) > buffer_size {
            return Err(DescriptorError::LengthExceedsBuffer {
                length,
                buffer_size,
            });
        }
        let eop = status & rx_status::EOP != 0;
        if !eop {
            match chaining {
                RxChaining::SingleDescriptor => {
                    return Err(DescriptorError::UnexpectedNonEop { length });
                }
                RxChaining::MultiDescriptor if usize::from(length) != buffer_size => {
                    return Err(DescriptorError::ShortNonEop {
                        length,
                        buffer_size,
                    });
                }
                RxChaining::MultiDescriptor => {}
            }
        }
        let checksum = if status & rx_status::IXSM != 0 {
            RxChecksum::NotChecked
        } else if status & (rx_status::TCPE | rx_status::IPE) != 0 {
            RxChecksum::Bad
        } else if status & (rx_status::TCPCS | rx_status::UDPCS) != 0 {
            RxChecksum::Good
        } else {
            RxChecksum::NotChecked
        };
        Ok(Some(RxCompletion {
            length,
            eop,
            vlan: (status & rx_status::VP != 0).then(|| wb.vlan.get()),
            frame_error: status & rx_status::FRAME_ERR_MASK != 0,
            checksum,
            loopback: status & rx_status::LB != 0,
            pkt_info: wb.pkt_info.get(),
            rss: wb.rss.get(),
            status_error: status,
        }))
    }
}

/// A good single-descriptor frame as [`RxWriteback::good_frame`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrame {
    /// Bytes written to the buffer: `1..=buffer_size`.
    pub length: u16,
    /// The stripped VLAN tag, when `VP` is set.
    pub vlan: Option<u16>,
}

impl RxWriteback {
    /// The receive fast path: `Some` exactly when [`parse`](Self::parse) under
    /// [`RxChaining::SingleDescriptor`] returns a completion without
    /// [`frame_error`](RxCompletion::frame_error), with the same length and tag; `None` for
    /// everything else (not done, rejected, errored), which the caller hands to `parse` to
    /// learn why. One test of the status word and one of the length instead of one per rule.
    #[inline]
    pub fn good_frame(bytes: &[u8; DESC_SIZE], buffer_size: usize) -> Option<RxFrame> {
        let wb: AdvRxDescWb = zerocopy::transmute!(*bytes);
        let status = wb.status_error.get();
        let length = wb.length.get();
        let checks = rx_status::DD | rx_status::EOP | rx_status::FRAME_ERR_MASK;
        // `length - 1 < buffer_size` is `1 <= length <= buffer_size` (0 wraps to the top).
        if status & checks != rx_status::DD | rx_status::EOP
            || usize::from(length).wrapping_sub(1) >= buffer_size
        {
            return None;
        }
        Some(RxFrame {
            length,
            vlan: (status & rx_status::VP != 0).then(|| wb.vlan.get()),
        })
    }
}

/// Parser for the TX write-back format.
#[derive(Debug)]
pub struct TxWriteback;

impl TxWriteback {
    /// Whether the device has written back `DD` for this descriptor (copied out of the ring).
    /// Only descriptors posted with [`tx_cmd::RS`] are ever written back.
    pub fn is_done(bytes: &[u8; DESC_SIZE]) -> bool {
        let wb: AdvTxDescWb = zerocopy::transmute!(*bytes);
        wb.status.get() & tx_status::DD != 0
    }

    /// The write-back a device produces (for emulators and tests).
    pub fn done() -> AdvTxDescWb {
        AdvTxDescWb {
            rsvd: U64::new(0),
            nxtseq_seed: U32::new(0),
            status: U32::new(tx_status::DD),
        }
    }
}

impl AdvRxDescRead {
    /// A one-buffer descriptor (header address 0) for a packet buffer at `pkt_addr`.
    pub fn one_buffer(pkt_addr: u64) -> Self {
        Self {
            pkt_addr: U64::new(pkt_addr),
            hdr_addr: U64::new(0),
        }
    }

    /// A descriptor with a header buffer; `hdr_addr` must be even (its bit 0 is where `DD`
    /// lands).
    pub fn with_header(pkt_addr: u64, hdr_addr: u64) -> Result<Self, DescriptorError> {
        if hdr_addr & 1 != 0 {
            return Err(DescriptorError::OddHeaderAddress(hdr_addr));
        }
        Ok(Self {
            pkt_addr: U64::new(pkt_addr),
            hdr_addr: U64::new(hdr_addr),
        })
    }

    /// The 16 bytes to store in the ring.
    pub fn to_bytes(&self) -> [u8; DESC_SIZE] {
        zerocopy::transmute!(*self)
    }
}

impl AdvRxDescWb {
    /// The 16 bytes a device stores in the ring.
    pub fn to_bytes(&self) -> [u8; DESC_SIZE] {
        zerocopy::transmute!(*self)
    }
}

impl AdvTxDescWb {
    /// The 16 bytes a device stores in the ring.
    pub fn to_bytes(&self) -> [u8; DESC_SIZE] {
        zerocopy::transmute!(*self)
    }
}

/// The fields of an advanced TX data descriptor, as built by the driver or decoded by an
/// emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxData {
    /// Buffer bus address.
    pub buffer_addr: u64,
    /// Bytes in this buffer, non-zero.
    pub length: u16,
    /// Last buffer of the frame.
    pub eop: bool,
    /// Ask for a `DD` write-back.
    pub report_status: bool,
    /// Total frame length (`PAYLEN`, on the first descriptor of a frame).
    pub paylen: u32,
}

impl AdvTxDataDesc {
    /// Build a data descriptor: `DTYP_DATA | DEXT | IFCS`, plus `EOP`/`RS` as asked.
    pub fn new(data: &TxData) -> Result<Self, DescriptorError> {
        if data.length == 0 {
            return Err(DescriptorError::ZeroTxLength);
        }
        if data.paylen > tx_cmd::PAYLEN_MAX {
            return Err(DescriptorError::PayloadTooLong(data.paylen));
        }
        let mut cmd = u32::from(data.length) | tx_cmd::DTYP_DATA | tx_cmd::DEXT | tx_cmd::IFCS;
        if data.eop {
            cmd |= tx_cmd::EOP;
        }
        if data.report_status {
            cmd |= tx_cmd::RS;
        }
        Ok(Self {
            buffer_addr: U64::new(data.buffer_addr),
            cmd_type_len: U32::new(cmd),
            olinfo_status: U32::new(data.paylen << tx_cmd::PAYLEN_SHIFT),
        })
    }

    /// A whole frame in one buffer, with `RS`.
    pub fn single(buffer_addr: u64, length: u16) -> Result<Self, DescriptorError> {
        Self::new(&TxData {
            buffer_addr,
            length,
            eop: true,
            report_status: true,
            paylen: u32::from(length),
        })
    }

    /// What [`single`](Self::single) builds, for a length known not to be zero: it cannot
    /// fail (16 bits of length always fit `PAYLEN`), so the driver's transmit loop has no
    /// error to handle.
    #[inline]
    pub fn frame(buffer_addr: u64, length: NonZeroU16) -> Self {
        let length = u32::from(length.get());
        let cmd =
            length | tx_cmd::DTYP_DATA | tx_cmd::DEXT | tx_cmd::IFCS | tx_cmd::EOP | tx_cmd::RS;
        Self {
            buffer_addr: U64::new(buffer_addr),
            cmd_type_len: U32::new(cmd),
            olinfo_status: U32::new(length << tx_cmd::PAYLEN_SHIFT),
        }
    }

    /// Decode the fields (an emulator's view of what the driver posted).
    pub fn decode(&self) -> TxData {
        let cmd = self.cmd_type_len.get();
        TxData {
            buffer_addr: self.buffer_addr.get(),
            length: (cmd & tx_cmd::LEN_MASK) as u16,
            eop: cmd & tx_cmd::EOP != 0,
            report_status: cmd & tx_cmd::RS != 0,
            paylen: self.olinfo_status.get() >> tx_cmd::PAYLEN_SHIFT,
        }
    }

    /// The 16 bytes to store in the ring.
    pub fn to_bytes(&self) -> [u8; DESC_SIZE] {
        zerocopy::transmute!(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BUF: usize = 2048;

    fn wb(status: u32, length: u16, vlan: u16) -> [u8; DESC_SIZE] {
        AdvRxDescWb {
            pkt_info: U16::new(0),
            hdr_info: U16::new(0),
            rss: U32::new(0),
            status_error: U32::new(status),
            length: U16::new(length),
            vlan: U16::new(vlan),
        }
        .to_bytes()
    }

    #[test]
    fn rx_layout_is_little_endian_linux_order() {
        let bytes = wb(rx_status::DD | rx_status::EOP, 0x0102, 0x0304);
        assert_eq!(&bytes[8..16], &[0x03, 0, 0, 0, 0x02, 0x01, 0x04, 0x03]);
    }

    #[test]
    fn rx_not_done_is_pending() {
        let read = AdvRxDescRead::one_buffer(0x1234_5678_9000).to_bytes();
        assert_eq!(
            RxWriteback::parse(&read, BUF, RxChaining::SingleDescriptor),
            Ok(None)
        );
    }

    #[test]
    fn rx_good_tcp_frame_with_vlan() {
        let status = rx_status::DD | rx_status::EOP | rx_status::VP | rx_status::TCPCS;
        let c = RxWriteback::parse(&wb(status, 60, 0x2005), BUF, RxChaining::SingleDescriptor)
            .unwrap()
            .unwrap();
        assert_eq!(c.length, 60);
        assert!(c.eop && !c.frame_error);
        assert_eq!(c.vlan, Some(0x2005));
        assert_eq!(c.checksum, RxChecksum::Good);
    }

    #[test]
    fn rx_rejects_what_a_device_never_writes() {
        let done = rx_status::DD | rx_status::EOP;
        let single = RxChaining::SingleDescriptor;
        assert_eq!(
            RxWriteback::parse(&wb(done, 0, 0), BUF, single),
            Err(DescriptorError::ZeroLength)
        );
        assert_eq!(
            RxWriteback::parse(&wb(done, 2049, 0), BUF, single),
            Err(DescriptorError::LengthExceedsBuffer {
                length: 2049,
                buffer_size: BUF
            })
        );
        assert_eq!(
            RxWriteback::parse(&wb(rx_status::DD, 100, 0), BUF, single),
            Err(DescriptorError::UnexpectedNonEop { length: 100 })
        );
        let multi = RxChaining::MultiDescriptor;
        assert!(matches!(
            RxWriteback::parse(&wb(rx_status::DD, 100, 0), BUF, multi),
            Err(DescriptorError::ShortNonEop { .. })
        ));
        assert!(
            RxWriteback::parse(&wb(rx_status::DD, 2048, 0), BUF, multi)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn rx_frame_errors_and_checksum_errors_are_reported_not_rejected() {
        let status = rx_status::DD | rx_status::EOP | rx_status::RXE | rx_status::TCPE;
        let c = RxWriteback::parse(&wb(status, 64, 0), BUF, RxChaining::SingleDescriptor)
            .unwrap()
            .unwrap();
        assert!(c.frame_error);
        assert_eq!(c.checksum, RxChecksum::Bad);
    }

    #[test]
    fn rx_read_rejects_odd_header_address() {
        assert_eq!(
            AdvRxDescRead::with_header(0x1000, 0x2001),
            Err(DescriptorError::OddHeaderAddress(0x2001))
        );
    }

    #[test]
    fn tx_single_matches_linux_cmd_bits() {
        let d = AdvTxDataDesc::single(0xABCD_0000, 60).unwrap();
        // DTYP_DATA | DCMD_EOP | IFCS | RS | DEXT | length.
        assert_eq!(d.cmd_type_len.get(), 0x2B30_003C);
        assert_eq!(d.olinfo_status.get(), 60 << 14);
        // STA bits stay clear, so the unwritten descriptor does not read as done.
        assert!(!TxWriteback::is_done(&d.to_bytes()));
        assert!(TxWriteback::is_done(&TxWriteback::done().to_bytes()));
        assert_eq!(
            AdvTxDataDesc::single(0, 0),
            Err(DescriptorError::ZeroTxLength)
        );
    }

    proptest! {
        #[test]
        fn rx_writeback_round_trips(
            length in 1..=BUF as u16,
            vlan in any::<Option<u16>>(),
            noise in any::<u32>(),
            pkt_info in any::<u16>(),
            rss in any::<u32>(),
        ) {
            // DD and EOP set, VP consistent with the tag; every other status bit arbitrary.
            let mut status = (noise & !rx_status::VP) | rx_status::DD | rx_status::EOP;
            if vlan.is_some() {
                status |= rx_status::VP;
            }
            let built = AdvRxDescWb {
                pkt_info: U16::new(pkt_info),
                hdr_info: U16::new(0),
                rss: U32::new(rss),
                status_error: U32::new(status),
                length: U16::new(length),
                vlan: U16::new(vlan.unwrap_or(0)),
            };
            let parsed = RxWriteback::parse(&built.to_bytes(), BUF, RxChaining::SingleDescriptor);
            let c = parsed.unwrap().unwrap();
            prop_assert_eq!(c.length, length);
            prop_assert_eq!(c.vlan, vlan);
            prop_assert_eq!(c.pkt_info, pkt_info);
            prop_assert_eq!(c.rss, rss);
            prop_assert_eq!(c.frame_error, status & rx_status::FRAME_ERR_MASK != 0);
            prop_assert_eq!(c.write_back().to_bytes(), built.to_bytes());
        }

        #[test]
        fn rx_read_round_trips(pkt in any::<u64>(), hdr in any::<u64>()) {
            let hdr = hdr & !1;
            let d = AdvRxDescRead::with_header(pkt, hdr).unwrap();
            let back = AdvRxDescRead::read_from_bytes(&d.to_bytes()).unwrap();
            prop_assert_eq!(back.pkt_addr.get(), pkt);
            prop_assert_eq!(back.hdr_addr.get(), hdr);
            // A freshly armed descriptor never reads as done.
            prop_assert_eq!(
                RxWriteback::parse(&d.to_bytes(), BUF, RxChaining::SingleDescriptor),
                Ok(None)
            );
        }

        #[test]
        fn tx_frame_is_single_without_the_error(
            buffer_addr in any::<u64>(),
            length in 1..=u16::MAX,
        ) {
            let frame = AdvTxDataDesc::frame(buffer_addr, NonZeroU16::new(length).unwrap());
            prop_assert_eq!(Ok(frame), AdvTxDataDesc::single(buffer_addr, length));
        }

        #[test]
        fn tx_data_round_trips(
            buffer_addr in any::<u64>(),
            length in 1..=u16::MAX,
            eop in any::<bool>(),
            report_status in any::<bool>(),
            paylen in 0..=tx_cmd::PAYLEN_MAX,
        ) {
            let data = TxData { buffer_addr, length, eop, report_status, paylen };
            let d = AdvTxDataDesc::new(&data).unwrap();
            let back = AdvTxDataDesc::read_from_bytes(&d.to_bytes()).unwrap();
            prop_assert_eq!(back.decode(), data);
            prop_assert_eq!(back.cmd_type_len.get() & tx_cmd::DTYP_MASK, tx_cmd::DTYP_DATA);
            prop_assert!(!TxWriteback::is_done(&d.to_bytes()));
        }

        #[test]
        fn tx_writeback_round_trips(seed in any::<u32>(), rsvd in any::<u64>()) {
            let mut wb = TxWriteback::done();
            wb.nxtseq_seed = U32::new(seed);
            wb.rsvd = U64::new(rsvd);
            prop_assert!(TxWriteback::is_done(&wb.to_bytes()));
        }

        #[test]
        fn the_rx_fast_path_agrees_with_parse(
            bytes in any::<[u8; DESC_SIZE]>(),
            status in prop_oneof![
                Just(rx_status::DD | rx_status::EOP),
                Just(rx_status::DD | rx_status::EOP | rx_status::VP),
                any::<u32>(),
            ],
            noise in any::<u32>(),
            length in prop_oneof![Just(0u16), Just(1), Just(BUF as u16), Just(BUF as u16 + 1), any::<u16>()],
            buffer in prop_oneof![Just(BUF), Just(0), any::<usize>(), 0..=(u16::MAX as usize + 1)],
        ) {
            // Mostly good-looking write-backs, plus noise in the status bits the fast path
            // does not test, plus arbitrary bytes.
            let mut wb = AdvRxDescWb::read_from_bytes(&bytes).unwrap();
            wb.status_error = U32::new(status ^ (noise & (rx_status::IXSM | rx_status::LB)));
            wb.length = U16::new(length);
            for bytes in [bytes, wb.to_bytes()] {
                let expected = match RxWriteback::parse(&bytes, buffer, RxChaining::SingleDescriptor) {
                    Ok(Some(c)) if !c.frame_error => Some(RxFrame { length: c.length, vlan: c.vlan }),
                    _ => None,
                };
                prop_assert_eq!(RxWriteback::good_frame(&bytes, buffer), expected);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in any::<[u8; DESC_SIZE]>(),
            buffer in any::<usize>(),
            multi in any::<bool>(),
        ) {
            let chaining = if multi {
                RxChaining::MultiDescriptor
            } else {
                RxChaining::SingleDescriptor
            };
            if let Ok(Some(c)) = RxWriteback::parse(&bytes, buffer, chaining) {
                prop_assert!(c.length > 0 && usize::from(c.length) <= buffer);
                prop_assert!(c.eop || multi);
            }
            let _ = TxWriteback::is_done(&bytes);
        }
    }
}
