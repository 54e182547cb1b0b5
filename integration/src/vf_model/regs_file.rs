//! BAR0 of the model: the register file with the 82576 VF's side effects, and interrupts.
//!
//! [`Function`] is the whole device state behind one lock: registers, rings, the PF's mailbox
//! state, the wire and the counters. Register accesses from the driver and the DMA engine's
//! work both take the lock, so every side effect is atomic with respect to the other actor.
//!
//! Side effects modelled: `CTRL.RST` resets the function (queues, interrupt masks, mailbox
//! ownership; the PF then sees a VF reset: `RSTI` until it has handled it, then `RSTD`, which
//! satisfies both Linux igbvf's "RSTI or RSTD seen" and a driver that waits for `RSTI` to
//! clear; QEMU raises neither on a VF reset);
//! `STATUS.LU` follows the link; `EICR` is read-to-clear (and write-1-to-clear);
//! `EICS`/`EIMS`/`EIMC`/`EIAC`/`EIAM` drive MSI-X through `IVAR0`/`IVAR_MISC`;
//! `V2PMAILBOX` and `VMBMEM` (in `mailbox_pf`); ring registers (lengths masked to 128 bytes,
//! head and tail to 16 bits, `*DCTL.ENABLE` reads back at once); statistics are read-only.
//! Out-of-range or misaligned offsets read all ones and drop writes, as [`RegisterIo`] asks.
//!
//! [`RegisterIo`]: vf::device::RegisterIo

use std::sync::Arc;
use std::time::Instant;

use packet::SharedMemory;
use vf::device::{ALL_ONES, EventFd};
use vf::igbvf::regs::{self, IVAR_VALID, MSIX_VECTORS, Queue, Status, ctrl};

use super::mailbox_pf::PfMailbox;
use super::port::{FrameSink, VfModelStats, Wire};

/// Size of BAR0 in bytes.
pub(super) const BAR0_SIZE: u32 = 16 * 1024;
/// Bits of `EIMS`/`EICR` that exist: one per MSI-X vector.
const VECTOR_MASK: u32 = (1 << MSIX_VECTORS) - 1;
/// Writable bits of `RDLEN`/`TDLEN` (bytes, a multiple of 128).
const LEN_MASK: u32 = 0x000F_FF80;
/// Writable bits of head and tail registers.
const INDEX_MASK: u32 = 0xFFFF;

/// One descriptor ring's registers and the device's view of it.
#[derive(Clone, Debug, Default)]
pub(super) struct Ring {
    pub base_lo: u32,
    pub base_hi: u32,
    pub len: u32,
    pub srrctl: u32,
    pub head: u32,
    pub tail: u32,
    pub dca: u32,
    pub ctl: u32,
    pub wb_lo: u32,
    pub wb_hi: u32,
    /// A device error stopped the queue; cleared by disabling it or a reset.
    pub halted: bool,
}

impl Ring {
    /// Bus address of the ring.
    pub fn base(&self) -> u64 {
        u64::from(self.base_hi) << 32 | u64::from(self.base_lo)
    }

    /// Number of descriptors.
    pub fn count(&self) -> u32 {
        self.len / 16
    }
}

#[derive(Clone, Copy, Debug)]
enum Field {
    BaseLo,
    BaseHi,
    Len,
    Srrctl,
    Head,
    Tail,
    Dca,
    Ctl,
    WbLo,
    WbHi,
}

/// Which ring register `offset` is: (is TX, queue index, field).
fn ring_field(offset: u32) -> Option<(bool, usize, Field)> {
    for q in [Queue::Q0, Queue::Q1] {
        let table = [
            (regs::rdbal(q), false, Field::BaseLo),
            (regs::rdbah(q), false, Field::BaseHi),
            (regs::rdlen(q), false, Field::Len),
            (regs::srrctl(q), false, Field::Srrctl),
            (regs::rdh(q), false, Field::Head),
            (regs::dca_rxctrl(q), false, Field::Dca),
            (regs::rdt(q), false, Field::Tail),
            (regs::rxdctl(q), false, Field::Ctl),
            (regs::tdbal(q), true, Field::BaseLo),
            (regs::tdbah(q), true, Field::BaseHi),
            (regs::tdlen(q), true, Field::Len),
            (regs::tdh(q), true, Field::Head),
            (regs::dca_txctrl(q), true, Field::Dca),
            (regs::tdt(q), true, Field::Tail),
            (regs::txdctl(q), true, Field::Ctl),
            (regs::tdwbal(q), true, Field::WbLo),
            (regs::tdwbah(q), true, Field::WbHi),
        ];
        if let Some(&(_, tx, field)) = table.iter().find(|(o, _, _)| *o == offset) {
            return Some((tx, usize::from(q.index()), field));
        }
    }
    None
}

/// An interrupt cause, mapped to a vector through `IVAR0`/`IVAR_MISC`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cause {
    /// RX queue write-back.
    Rx(usize),
    /// TX queue write-back.
    Tx(usize),
    /// Mailbox event (PF message, PF ack, reset).
    Mailbox,
}

/// The VF's statistics registers.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct HwCounters {
    pub gprc: u32,
    pub gptc: u32,
    pub gorc: u32,
    pub gotc: u32,
    pub mprc: u32,
}

/// The whole device: registers, rings, PF state, wire, counters.
#[derive(Debug)]
pub(super) struct Function {
    /// Queue pairs the PF grants (1 or 2).
    pub queues: usize,
    /// `false` after a surprise removal.
    pub present: bool,
    /// `true` after `release()` or drop.
    pub released: bool,
    /// The DMA thread should exit.
    pub shutdown: bool,
    pub link_up: bool,
    pub ctrl: u32,
    pub eicr: u32,
    pub eims: u32,
    pub eiac: u32,
    pub eiam: u32,
    pub ivar0: u32,
    pub ivar_misc: u32,
    /// Registers without side effects, by word index.
    pub plain: Vec<u32>,
    pub rx: [Ring; 2],
    pub tx: [Ring; 2],
    pub counters: HwCounters,
    pub mbx: PfMailbox,
    pub msix: Vec<Arc<EventFd>>,
    /// Everything the function may DMA to: bus address `a` is offset `a - dma.bus_addr(0)`.
    pub dma: SharedMemory,
    pub wire: Wire,
    /// Where transmitted frames go instead of `wire.tx` (called under the device lock).
    pub uplink: Option<Arc<dyn FrameSink>>,
    pub stats: VfModelStats,
    /// Next RX write-back per queue carries a bad length.
    pub bad_writeback: [bool; 2],
    pub started: Instant,
}

impl Function {
    /// A fresh function: rings off, link as given, the PF ready but the VF not yet reset.
    pub fn new(queues: usize, link_up: bool, mac: [u8; 6], dma: SharedMemory) -> Self {
        Self {
            queues,
            present: true,
            released: false,
            shutdown: false,
            link_up,
            ctrl: 0,
            eicr: 0,
            eims: 0,
            eiac: 0,
            eiam: 0,
            ivar0: 0,
            ivar_misc: 0,
            plain: vec![0; (BAR0_SIZE / 4) as usize],
            rx: Default::default(),
            tx: Default::default(),
            counters: HwCounters::default(),
            mbx: PfMailbox::new(mac),
            msix: Vec::new(),
            dma,
            wire: Wire::default(),
            uplink: None,
            stats: VfModelStats::default(),
            bad_writeback: [false; 2],
            started: Instant::now(),
        }
    }

    /// Whether the device answers register accesses and does DMA.
    pub fn alive(&self) -> bool {
        self.present && !self.released
    }

    /// A 32-bit register read with its side effects.
    pub fn read(&mut self, offset: u32) -> u32 {
        if !self.alive() || offset >= BAR0_SIZE || !offset.is_multiple_of(4) {
            return ALL_ONES;
        }
        if let Some((tx, q, field)) = ring_field(offset) {
            let ring = if tx { &self.tx[q] } else { &self.rx[q] };
            return match field {
                Field::BaseLo => ring.base_lo,
                Field::BaseHi => ring.base_hi,
                Field::Len => ring.len,
                Field::Srrctl => ring.srrctl,
                Field::Head => ring.head,
                Field::Tail => ring.tail,
                Field::Dca => ring.dca,
                Field::Ctl => ring.ctl,
                Field::WbLo => ring.wb_lo,
                Field::WbHi => ring.wb_hi,
            };
        }
        if let Some(word) = self.mbx.vmbmem_index(offset) {
            return self.mbx.mem[word];
        }
        match offset {
            regs::CTRL => self.ctrl,
            regs::STATUS => self.status(),
            regs::FRTIMER => self.started.elapsed().as_micros() as u32,
            regs::EICR => std::mem::take(&mut self.eicr),
            regs::EIMS => self.eims,
            regs::EIAC => self.eiac,
            regs::EIAM => self.eiam,
            regs::EICS | regs::EIMC => 0,
            regs::IVAR0 => self.ivar0,
            regs::IVAR_MISC => self.ivar_misc,
            regs::V2PMAILBOX => self.mbx.read_v2p(),
            regs::VFGPRC => self.counters.gprc,
            regs::VFGPTC => self.counters.gptc,
            regs::VFGORC => self.counters.gorc,
            regs::VFGOTC => self.counters.gotc,
            regs::VFMPRC => self.counters.mprc,
            regs::VFGPRLBC | regs::VFGPTLBC | regs::VFGORLBC | regs::VFGOTLBC => 0,
            _ => self.plain[(offset / 4) as usize],
        }
    }

    fn status(&self) -> u32 {
        if self.link_up {
            Status::LU | Status::FD | Status::SPEED_1000
        } else {
            0
        }
    }

    /// A 32-bit register write with its side effects.
    pub fn write(&mut self, offset: u32, value: u32) {
        if !self.alive() || offset >= BAR0_SIZE || !offset.is_multiple_of(4) {
            return;
        }
        if let Some((tx, q, field)) = ring_field(offset) {
            self.write_ring(tx, q, field, value);
            return;
        }
        if let Some(word) = self.mbx.vmbmem_index(offset) {
            self.mbx.write_vmbmem(word, value);
            return;
        }
        match offset {
            regs::CTRL => {
                if value & ctrl::RST != 0 {
                    self.vf_reset();
                }
                self.ctrl = value & !ctrl::RST;
            }
            regs::STATUS
            | regs::FRTIMER
            | regs::VFGPRC
            | regs::VFGPTC
            | regs::VFGORC
            | regs::VFGOTC
            | regs::VFMPRC
            | regs::VFGPRLBC
            | regs::VFGPTLBC
            | regs::VFGORLBC
            | regs::VFGOTLBC => {}
            regs::EICR => self.eicr &= !value,
            regs::EICS => {
                self.eicr |= value & VECTOR_MASK;
                self.fire();
            }
            regs::EIMS => {
                self.eims |= value & VECTOR_MASK;
                self.fire();
            }
            regs::EIMC => self.eims &= !value,
            regs::EIAC => self.eiac = value & VECTOR_MASK,
            regs::EIAM => self.eiam = value & VECTOR_MASK,
            regs::IVAR0 => self.ivar0 = value,
            regs::IVAR_MISC => self.ivar_misc = value & 0xFF,
            regs::V2PMAILBOX => self.mbx.write_v2p(value),
            _ => self.plain[(offset / 4) as usize] = value,
        }
    }

    fn write_ring(&mut self, tx: bool, q: usize, field: Field, value: u32) {
        let ring = if tx { &mut self.tx[q] } else { &mut self.rx[q] };
        match field {
            Field::BaseLo => ring.base_lo = value,
            Field::BaseHi => ring.base_hi = value,
            Field::Len => ring.len = value & LEN_MASK,
            Field::Srrctl => ring.srrctl = value,
            Field::Head => ring.head = value & INDEX_MASK,
            Field::Tail => ring.tail = value & INDEX_MASK,
            Field::Dca => ring.dca = value,
            Field::Ctl => {
                let enable = if tx {
                    regs::txdctl::ENABLE
                } else {
                    regs::rxdctl::ENABLE
                };
                if value & enable == 0 {
                    ring.halted = false;
                }
                ring.ctl = value;
            }
            Field::WbLo => ring.wb_lo = value,
            Field::WbHi => ring.wb_hi = value,
        }
    }

    /// Resets what a function reset resets: rings, interrupt state. Counters keep counting.
    pub fn reset_queues_and_interrupts(&mut self) {
        self.rx = Default::default();
        self.tx = Default::default();
        self.eicr = 0;
        self.eims = 0;
        self.eiac = 0;
        self.eiam = 0;
        self.ivar0 = 0;
        self.ivar_misc = 0;
    }

    /// `CTRL.RST` or a function-level reset: the queues and interrupts reset, the VF loses the
    /// mailbox buffer and its clear-to-send, and the PF is told (it answers with `RSTI` until
    /// it has handled the reset, then `RSTD`).
    pub fn vf_reset(&mut self) {
        self.reset_queues_and_interrupts();
        self.mbx.vf_reset();
        self.stats.vf_resets += 1;
    }

    /// Raise `cause`: latch its vector in `EICR` and send the MSI-X message if unmasked.
    pub fn raise(&mut self, cause: Cause) {
        let entry = match cause {
            Cause::Rx(q) => self.ivar0 >> (16 * q),
            Cause::Tx(q) => self.ivar0 >> (16 * q + 8),
            Cause::Mailbox => self.ivar_misc,
        } & 0xFF;
        if entry & u32::from(IVAR_VALID) == 0 {
            return;
        }
        let vector = entry & !u32::from(IVAR_VALID);
        if vector >= u32::from(MSIX_VECTORS) {
            return;
        }
        self.eicr |= 1 << vector;
        self.fire();
    }

    /// Send an MSI-X message for every pending, unmasked vector (with auto-clear and
    /// auto-mask).
    fn fire(&mut self) {
        for vector in 0..usize::from(MSIX_VECTORS) {
            let bit = 1u32 << vector;
            if self.eicr & self.eims & bit == 0 {
                continue;
            }
            if let Some(fd) = self.msix.get(vector) {
                // A full eventfd counter still means "signalled": nothing is lost.
                let _ = fd.signal();
                self.stats.interrupts += 1;
            }
            if self.eiac & bit != 0 {
                self.eicr &= !bit;
            }
            if self.eiam & bit != 0 {
                self.eims &= !bit;
            }
        }
    }
}
