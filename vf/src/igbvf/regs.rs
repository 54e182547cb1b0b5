//! 82576 VF register map (BAR0, 16 KiB), bit definitions and counter accumulation.
//!
//! Offsets are byte offsets into BAR0 as the VF sees them. Names follow Linux `igbvf`
//! (`regs.h`, `defines.h`) with the `E1000_` prefix dropped; the datasheet spells the VF copies
//! with a `VT` prefix (`VTCTRL`, `VTEICR`, ...), which is also dropped here.
//!
//! Trust rules: every value read from a register comes from an untrusted device. A surprise
//! removed device reads all-ones ([`ALL_ONES`]); check for it before interpreting any bit.
//! Some bits are read-to-clear ([`V2pMailbox::R2C_BITS`], [`EICR`]): a caller must latch them
//! on every read, or a read taken for logging silently eats an event.

use thiserror::Error;

/// What a removed (surprise-unplugged) device returns for every register read.
pub const ALL_ONES: u32 = u32::MAX;

/// Device control (`VTCTRL`).
pub const CTRL: u32 = 0x0000;
/// Device status (`VTSTATUS`), read-only.
pub const STATUS: u32 = 0x0008;
/// Free-running timer (`VTFRTIMER`), read-only.
pub const FRTIMER: u32 = 0x1048;

/// Extended interrupt cause set (`VTEICS`), write-only.
pub const EICS: u32 = 0x1520;
/// Extended interrupt mask set / read (`VTEIMS`).
pub const EIMS: u32 = 0x1524;
/// Extended interrupt mask clear (`VTEIMC`), write-only.
pub const EIMC: u32 = 0x1528;
/// Extended interrupt auto-clear enable (`VTEIAC`).
pub const EIAC: u32 = 0x152C;
/// Extended interrupt auto-mask enable (`VTEIAM`).
pub const EIAM: u32 = 0x1530;
/// Extended interrupt cause read (`VTEICR`): read-to-clear, latch what you read.
pub const EICR: u32 = 0x1580;
/// Interrupt vector allocation for queues 0 and 1 (`VTIVAR0`); see [`ivar0`].
pub const IVAR0: u32 = 0x1700;
/// Interrupt vector allocation for the mailbox ("other") cause (`VTIVAR_MISC`); see
/// [`ivar_misc`].
pub const IVAR_MISC: u32 = 0x1740;
/// MSI-X pending bit array clear (`VTPBACL`).
pub const PBACL: u32 = 0x0F04;
/// Packet split receive types (`VTPSRTYPE`).
pub const PSRTYPE: u32 = 0x0F0C;

/// Good packets received (`VFGPRC`), 32 bits, wraps.
pub const VFGPRC: u32 = 0x0F10;
/// Good packets transmitted (`VFGPTC`), 32 bits, wraps.
pub const VFGPTC: u32 = 0x0F14;
/// Good octets received (`VFGORC`), 32 bits, wraps.
pub const VFGORC: u32 = 0x0F18;
/// Good octets transmitted (`VFGOTC`), 32 bits, wraps.
pub const VFGOTC: u32 = 0x0F34;
/// Multicast packets received (`VFMPRC`), 32 bits, wraps.
pub const VFMPRC: u32 = 0x0F3C;
/// Good packets received by loopback (`VFGPRLBC`); always 0 in QEMU.
pub const VFGPRLBC: u32 = 0x0F40;
/// Good packets transmitted by loopback (`VFGPTLBC`); always 0 in QEMU.
pub const VFGPTLBC: u32 = 0x0F44;
/// Good octets received by loopback (`VFGORLBC`).
pub const VFGORLBC: u32 = 0x0F48;
/// Good octets transmitted by loopback (`VFGOTLBC`).
pub const VFGOTLBC: u32 = 0x0F50;

/// VF-to-PF mailbox control (`V2PMAILBOX(0)`); bits in [`V2pMailbox`].
pub const V2PMAILBOX: u32 = 0x0C40;
/// First word of the mailbox memory (`VMBMEM(0)`); see [`vmbmem`].
pub const VMBMEM: u32 = 0x0800;
/// Number of 32-bit words in the mailbox memory (`E1000_VFMAILBOX_SIZE`).
pub const VMBMEM_WORDS: usize = 16;

/// Number of MSI-X vectors an 82576 VF has (TX, RX, other in Linux igbvf's layout).
pub const MSIX_VECTORS: u8 = 3;

/// Byte offset of mailbox memory word `word` (`0..VMBMEM_WORDS`), or `None` past the end.
pub const fn vmbmem(word: usize) -> Option<u32> {
    if word < VMBMEM_WORDS {
        Some(VMBMEM + 4 * word as u32)
    } else {
        None
    }
}

/// Interrupt throttle register of MSI-X vector `vector` (`VTEITR(n)`), or `None` if the VF
/// has no such vector.
pub const fn eitr(vector: u8) -> Option<u32> {
    if vector < MSIX_VECTORS {
        Some(0x1680 + 4 * vector as u32)
    } else {
        None
    }
}

/// A VF queue pair index. An 82576 VF has two; the type makes every per-queue offset valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Queue(u8);

impl Queue {
    /// Queue pair 0.
    pub const Q0: Self = Self(0);
    /// Queue pair 1.
    pub const Q1: Self = Self(1);
    /// Number of queue pairs an 82576 VF has.
    pub const COUNT: usize = 2;

    /// The queue with index `index`, if the VF has it.
    pub const fn new(index: u8) -> Option<Self> {
        if (index as usize) < Self::COUNT {
            Some(Self(index))
        } else {
            None
        }
    }

    /// The index, `0` or `1`.
    pub const fn index(self) -> u8 {
        self.0
    }

    const fn stride(self) -> u32 {
        0x100 * self.0 as u32
    }
}

macro_rules! queue_reg {
    ($(#[$doc:meta])* $name:ident = $base:expr) => {
        $(#[$doc])*
        pub const fn $name(queue: Queue) -> u32 {
            $base + queue.stride()
        }
    };
}

queue_reg!(
    /// RX descriptor ring base address, low 32 bits (`RDBAL(n)`); 128-byte aligned.
    rdbal = 0x2800
);
queue_reg!(
    /// RX descriptor ring base address, high 32 bits (`RDBAH(n)`).
    rdbah = 0x2804
);
queue_reg!(
    /// RX ring length in bytes (`RDLEN(n)`); a multiple of 128.
    rdlen = 0x2808
);
queue_reg!(
    /// Split and replication RX control (`SRRCTL(n)`); bits in [`srrctl`](mod@srrctl).
    srrctl = 0x280C
);
queue_reg!(
    /// RX descriptor head (`RDH(n)`), written by the device.
    rdh = 0x2810
);
queue_reg!(
    /// RX DCA control (`DCA_RXCTRL(n)`).
    dca_rxctrl = 0x2814
);
queue_reg!(
    /// RX descriptor tail (`RDT(n)`), written by the driver.
    rdt = 0x2818
);
queue_reg!(
    /// RX descriptor control (`RXDCTL(n)`); bits in [`rxdctl`](mod@rxdctl).
    rxdctl = 0x2828
);
queue_reg!(
    /// TX descriptor ring base address, low 32 bits (`TDBAL(n)`).
    tdbal = 0x3800
);
queue_reg!(
    /// TX descriptor ring base address, high 32 bits (`TDBAH(n)`).
    tdbah = 0x3804
);
queue_reg!(
    /// TX ring length in bytes (`TDLEN(n)`); a multiple of 128.
    tdlen = 0x3808
);
queue_reg!(
    /// TX descriptor head (`TDH(n)`), written by the device.
    tdh = 0x3810
);
queue_reg!(
    /// TX DCA control (`DCA_TXCTRL(n)`).
    dca_txctrl = 0x3814
);
queue_reg!(
    /// TX descriptor tail (`TDT(n)`), written by the driver.
    tdt = 0x3818
);
queue_reg!(
    /// TX descriptor control (`TXDCTL(n)`); bits in [`txdctl`](mod@txdctl).
    txdctl = 0x3828
);
queue_reg!(
    /// TX head write-back address, low 32 bits (`TDWBAL(n)`); PF layout, unverified for VFs.
    tdwbal = 0x3838
);
queue_reg!(
    /// TX head write-back address, high 32 bits (`TDWBAH(n)`).
    tdwbah = 0x383C
);

/// `CTRL` bits.
pub mod ctrl {
    /// VF reset (`E1000_CTRL_RST`): resets the VF's queues and interrupts, self-clearing.
    pub const RST: u32 = 1 << 26;
}

/// Link speed decoded from `STATUS` bits 7:6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkSpeed {
    /// 10 Mb/s.
    Mbps10,
    /// 100 Mb/s.
    Mbps100,
    /// 1000 Mb/s.
    Mbps1000,
}

/// A `STATUS` value as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// Full duplex (`E1000_STATUS_FD`).
    pub const FD: u32 = 1 << 0;
    /// Link up (`E1000_STATUS_LU`); follows the PF's link.
    pub const LU: u32 = 1 << 1;
    /// Speed 100 (`E1000_STATUS_SPEED_100`).
    pub const SPEED_100: u32 = 1 << 6;
    /// Speed 1000 (`E1000_STATUS_SPEED_1000`).
    pub const SPEED_1000: u32 = 1 << 7;

    /// Whether the device is gone (the read returned all-ones).
    pub const fn is_removed(self) -> bool {
        self.0 == ALL_ONES
    }

    /// Link up, and the device not removed.
    pub const fn link_up(self) -> bool {
        !self.is_removed() && self.0 & Self::LU != 0
    }

    /// Full duplex.
    pub const fn full_duplex(self) -> bool {
        self.0 & Self::FD != 0
    }

    /// The speed bits (`1x` reads as 1000, as in Linux `e1000_get_speed_and_duplex`).
    pub const fn speed(self) -> LinkSpeed {
        if self.0 & Self::SPEED_1000 != 0 {
            LinkSpeed::Mbps1000
        } else if self.0 & Self::SPEED_100 != 0 {
            LinkSpeed::Mbps100
        } else {
            LinkSpeed::Mbps10
        }
    }
}

/// A `V2PMAILBOX` value. Bits 4, 5 and 7 ([`Self::R2C_BITS`]) clear when read: whoever reads
/// the register must OR them into a software latch on **every** read (see
/// [`super::mailbox::MailboxProtocol`], which does), or the event is lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct V2pMailbox(pub u32);

impl V2pMailbox {
    /// VF posted a message (`REQ`), written by the VF.
    pub const REQ: u32 = 1 << 0;
    /// VF acknowledged a PF message (`ACK`), written by the VF.
    pub const ACK: u32 = 1 << 1;
    /// VF owns the buffer (`VFU`); write it, read it back to take the buffer.
    pub const VFU: u32 = 1 << 2;
    /// PF owns the buffer (`PFU`).
    pub const PFU: u32 = 1 << 3;
    /// PF posted a message (`PFSTS`); read-to-clear.
    pub const PFSTS: u32 = 1 << 4;
    /// PF acknowledged our message (`PFACK`); read-to-clear.
    pub const PFACK: u32 = 1 << 5;
    /// PF reset in progress (`RSTI`); live status.
    pub const RSTI: u32 = 1 << 6;
    /// PF reset done (`RSTD`); read-to-clear.
    pub const RSTD: u32 = 1 << 7;
    /// The read-to-clear bits (`E1000_V2PMAILBOX_R2C_BITS`).
    pub const R2C_BITS: u32 = Self::PFSTS | Self::PFACK | Self::RSTD;

    /// Whether every bit of `mask` is set.
    pub const fn contains(self, mask: u32) -> bool {
        self.0 & mask == mask
    }

    /// Whether any bit of `mask` is set.
    pub const fn intersects(self, mask: u32) -> bool {
        self.0 & mask != 0
    }

    /// Whether the device is gone (the read returned all-ones).
    pub const fn is_removed(self) -> bool {
        self.0 == ALL_ONES
    }
}

/// `RXDCTL` bits.
pub mod rxdctl {
    /// Queue enable (`E1000_RXDCTL_QUEUE_ENABLE`); poll until it reads back set (or clear).
    pub const ENABLE: u32 = 1 << 25;
    /// Prefetch threshold field, bits 4:0.
    pub const PTHRESH_SHIFT: u32 = 0;
    /// Host threshold field, bits 12:8.
    pub const HTHRESH_SHIFT: u32 = 8;
    /// Write-back threshold field, bits 20:16.
    pub const WTHRESH_SHIFT: u32 = 16;
    /// Width mask of each threshold field.
    pub const THRESH_MASK: u32 = 0x1F;

    /// Threshold bits: each value is masked to its 5-bit field.
    pub const fn thresholds(pthresh: u32, hthresh: u32, wthresh: u32) -> u32 {
        (pthresh & THRESH_MASK) << PTHRESH_SHIFT
            | (hthresh & THRESH_MASK) << HTHRESH_SHIFT
            | (wthresh & THRESH_MASK) << WTHRESH_SHIFT
    }
}

/// `TXDCTL` bits (same layout as `RXDCTL`).
pub mod txdctl {
    /// Queue enable (`E1000_TXDCTL_QUEUE_ENABLE`).
    pub const ENABLE: u32 = 1 << 25;

    /// Threshold bits: each value is masked to its 5-bit field.
    pub const fn thresholds(pthresh: u32, hthresh: u32, wthresh: u32) -> u32 {
        super::rxdctl::thresholds(pthresh, hthresh, wthresh)
    }
}

/// `SRRCTL` bits.
pub mod srrctl {
    /// Packet buffer size in KiB, bits 6:0 (`E1000_SRRCTL_BSIZEPKT_MASK`).
    pub const BSIZEPKT_MASK: u32 = 0x7F;
    /// Bytes-to-field shift of the packet buffer size (`E1000_SRRCTL_BSIZEPKT_SHIFT`).
    pub const BSIZEPKT_SHIFT: u32 = 10;
    /// Header buffer size in 64-byte units, bits 11:8 (`E1000_SRRCTL_BSIZEHDRSIZE_MASK`).
    pub const BSIZEHDRSIZE_MASK: u32 = 0xF00;
    /// Descriptor type field, bits 27:25 (`E1000_SRRCTL_DESCTYPE_MASK`).
    pub const DESCTYPE_MASK: u32 = 0x0E00_0000;
    /// Advanced descriptors, one buffer (`E1000_SRRCTL_DESCTYPE_ADV_ONEBUF`).
    pub const DESCTYPE_ADV_ONEBUF: u32 = 0x0200_0000;
    /// Drop packets when no descriptor is available (`E1000_SRRCTL_DROP_EN`).
    pub const DROP_EN: u32 = 1 << 31;
}

/// Errors building register values.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RegisterError {
    /// The RX buffer size cannot be expressed in `SRRCTL.BSIZEPKT`.
    #[error("rx buffer size {0} is not a multiple of 1 KiB in 1..=127 KiB")]
    BufferSize(usize),
    /// The MSI-X vector does not exist on a VF.
    #[error("msi-x vector {0} out of range (a vf has {MSIX_VECTORS})")]
    Vector(u8),
}

/// `SRRCTL` for advanced one-buffer descriptors with `buffer_bytes` per packet buffer and,
/// if `drop_enable`, `DROP_EN`.
pub fn srrctl_one_buffer(buffer_bytes: usize, drop_enable: bool) -> Result<u32, RegisterError> {
    let kib = buffer_bytes >> srrctl::BSIZEPKT_SHIFT;
    if !buffer_bytes.is_multiple_of(1024) || kib == 0 || kib > srrctl::BSIZEPKT_MASK as usize {
        return Err(RegisterError::BufferSize(buffer_bytes));
    }
    let mut value = kib as u32 | srrctl::DESCTYPE_ADV_ONEBUF;
    if drop_enable {
        value |= srrctl::DROP_EN;
    }
    Ok(value)
}

/// Valid bit of an IVAR entry (`E1000_IVAR_VALID`).
pub const IVAR_VALID: u8 = 0x80;

fn ivar_entry(vector: Option<u8>) -> Result<u32, RegisterError> {
    match vector {
        None => Ok(0),
        Some(v) if v < MSIX_VECTORS => Ok(u32::from(v | IVAR_VALID)),
        Some(v) => Err(RegisterError::Vector(v)),
    }
}

/// `IVAR0`: the MSI-X vector for RX queue 0 (bits 7:0), TX queue 0 (15:8), RX queue 1
/// (23:16) and TX queue 1 (31:24); `None` leaves the cause unmapped.
pub fn ivar0(
    rx0: Option<u8>,
    tx0: Option<u8>,
    rx1: Option<u8>,
    tx1: Option<u8>,
) -> Result<u32, RegisterError> {
    Ok(ivar_entry(rx0)? | ivar_entry(tx0)? << 8 | ivar_entry(rx1)? << 16 | ivar_entry(tx1)? << 24)
}

/// `IVAR_MISC`: the mailbox vector in bits 7:0 (the PF's own register uses 15:8). QEMU
/// delivers the mailbox interrupt to the wrong vector (reference §3.5): poll the mailbox on
/// every interrupt and on a timer.
pub fn ivar_misc(vector: u8) -> Result<u32, RegisterError> {
    ivar_entry(Some(vector))
}

/// A 32-bit wrapping hardware counter accumulated into 64 bits.
///
/// The 82576 VF statistics registers (`VFGPRC` ... `VFGOTLBC`, octet counters included) are
/// 32 bits wide, do not clear on read and wrap; Linux `UPDATE_VF_COUNTER` adds 2^32 when a
/// read is below the previous one. This does the same with a wrapping difference, so at most
/// one wrap between two reads is assumed: read at least every ~30 s at line rate for octets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HwCounter {
    last: u32,
    total: u64,
}

impl HwCounter {
    /// A counter whose current register value is `raw`; the total starts at 0.
    pub const fn new(raw: u32) -> Self {
        Self {
            last: raw,
            total: 0,
        }
    }

    /// Accumulate a new reading; returns the increase since the last one.
    ///
    /// The caller must not feed reads from a removed device (all-ones).
    pub fn update(&mut self, raw: u32) -> u64 {
        let delta = u64::from(raw.wrapping_sub(self.last));
        self.last = raw;
        self.total = self.total.wrapping_add(delta);
        delta
    }

    /// Restart from `raw` without adding anything, after a reset zeroed the register (which
    /// would otherwise read as a wrap).
    pub fn rebase(&mut self, raw: u32) {
        self.last = raw;
    }

    /// Accumulated total since [`Self::new`].
    pub const fn total(&self) -> u64 {
        self.total
    }
}

/// One reading of every VF statistics register, in the order of [`VfCounters::REGISTERS`].
pub type CounterReadings = [u32; 9];

/// The VF statistics, accumulated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VfCounters {
    /// `VFGPRC`.
    pub gprc: HwCounter,
    /// `VFGPTC`.
    pub gptc: HwCounter,
    /// `VFGORC`.
    pub gorc: HwCounter,
    /// `VFGOTC`.
    pub gotc: HwCounter,
    /// `VFMPRC`.
    pub mprc: HwCounter,
    /// `VFGPRLBC`.
    pub gprlbc: HwCounter,
    /// `VFGPTLBC`.
    pub gptlbc: HwCounter,
    /// `VFGORLBC`.
    pub gorlbc: HwCounter,
    /// `VFGOTLBC`.
    pub gotlbc: HwCounter,
}

impl VfCounters {
    /// The registers to read, in [`CounterReadings`] order.
    pub const REGISTERS: [u32; 9] = [
        VFGPRC, VFGPTC, VFGORC, VFGOTC, VFMPRC, VFGPRLBC, VFGPTLBC, VFGORLBC, VFGOTLBC,
    ];

    /// Counters starting from `readings` (all totals 0).
    pub fn new(readings: &CounterReadings) -> Self {
        let mut counters = Self::default();
        counters.rebase(readings);
        counters
    }

    fn fields(&mut self) -> [&mut HwCounter; 9] {
        [
            &mut self.gprc,
            &mut self.gptc,
            &mut self.gorc,
            &mut self.gotc,
            &mut self.mprc,
            &mut self.gprlbc,
            &mut self.gptlbc,
            &mut self.gorlbc,
            &mut self.gotlbc,
        ]
    }

    /// Accumulate a full reading.
    pub fn update(&mut self, readings: &CounterReadings) {
        for (counter, &raw) in self.fields().into_iter().zip(readings) {
            counter.update(raw);
        }
    }

    /// Restart every counter from `readings` (after a VF or PF reset).
    pub fn rebase(&mut self, readings: &CounterReadings) {
        for (counter, &raw) in self.fields().into_iter().zip(readings) {
            counter.rebase(raw);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn queue_registers_match_linux_offsets() {
        assert_eq!(rdbal(Queue::Q0), 0x2800);
        assert_eq!(srrctl(Queue::Q0), 0x280C);
        assert_eq!(rxdctl(Queue::Q1), 0x2928);
        assert_eq!(tdt(Queue::Q1), 0x3918);
        assert_eq!(tdwbah(Queue::Q0), 0x383C);
        assert_eq!(Queue::new(2), None);
        assert_eq!(vmbmem(15), Some(0x083C));
        assert_eq!(vmbmem(16), None);
        assert_eq!(eitr(2), Some(0x1688));
        assert_eq!(eitr(3), None);
    }

    #[test]
    fn srrctl_2k_one_buffer_drop_enabled() {
        assert_eq!(srrctl_one_buffer(2048, true), Ok(0x8200_0002));
        assert_eq!(srrctl_one_buffer(2048, false), Ok(0x0200_0002));
        assert!(srrctl_one_buffer(1500, true).is_err());
        assert!(srrctl_one_buffer(0, true).is_err());
        assert!(srrctl_one_buffer(128 * 1024, true).is_err());
    }

    #[test]
    fn ivar_layout_matches_linux_igbvf() {
        // Linux igbvf: RX on vector 0, TX on vector 1, mailbox on vector 2.
        assert_eq!(ivar0(Some(0), Some(1), None, None), Ok(0x8180));
        assert_eq!(ivar_misc(2), Ok(0x82));
        assert_eq!(ivar_misc(3), Err(RegisterError::Vector(3)));
    }

    #[test]
    fn status_speed_and_link() {
        let s = Status(Status::LU | Status::FD | Status::SPEED_1000);
        assert!(s.link_up() && s.full_duplex());
        assert_eq!(s.speed(), LinkSpeed::Mbps1000);
        assert_eq!(Status(Status::SPEED_100).speed(), LinkSpeed::Mbps100);
        assert!(!Status(ALL_ONES).link_up());
    }

    #[test]
    fn rxdctl_thresholds_mask_fields() {
        assert_eq!(rxdctl::thresholds(16, 8, 1), 0x0001_0810);
        assert_eq!(txdctl::thresholds(0xFF, 0, 0), 0x1F);
    }

    #[test]
    fn counter_wraps_once() {
        let mut c = HwCounter::new(0xFFFF_FFF0);
        assert_eq!(c.update(0x10), 0x20);
        assert_eq!(c.total(), 0x20);
        c.rebase(0);
        assert_eq!(c.update(5), 5);
        assert_eq!(c.total(), 0x25);
    }

    #[test]
    fn vf_counters_accumulate_per_register() {
        let mut readings = [0u32; 9];
        let mut counters = VfCounters::new(&readings);
        readings[2] = 1000;
        readings[0] = 3;
        counters.update(&readings);
        assert_eq!(counters.gorc.total(), 1000);
        assert_eq!(counters.gprc.total(), 3);
        assert_eq!(counters.gotc.total(), 0);
    }

    proptest! {
        #[test]
        fn counter_total_is_sum_of_increments(
            start in any::<u32>(),
            steps in proptest::collection::vec(0u32..=u32::MAX, 0..32),
        ) {
            let mut c = HwCounter::new(start);
            let mut raw = start;
            let mut expected = 0u64;
            for step in steps {
                raw = raw.wrapping_add(step);
                expected += u64::from(step);
                prop_assert_eq!(c.update(raw), u64::from(step));
            }
            prop_assert_eq!(c.total(), expected);
        }
    }
}
