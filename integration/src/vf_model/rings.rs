//! The device-side DMA engine: transmit and receive rings with advanced descriptors.
//!
//! TX: from `TDH` up to `TDT` the engine reads descriptors out of DMA memory, gathers the
//! buffers of one frame (up to the descriptor with `EOP`; a frame whose `EOP` is not yet posted
//! waits), puts the frame on the wire (or hands it to the uplink), then writes `DD` back into every descriptor posted with `RS`
//! and advances `TDH`. Context descriptors carry no data and are consumed. RX: an injected frame
//! goes into the packet buffer of the descriptor at `RDH` (if `RDH != RDT`), the descriptor is
//! overwritten with the write-back (length, `DD | EOP`, no VLAN, no RSS) and `RDH` advances.
//! With no descriptor posted the frame is dropped and counted whatever `SRRCTL.DROP_EN` says
//! (the model has no packet buffer to hold it in); a frame longer than the `SRRCTL` buffer is
//! dropped and counted (no multi-descriptor receive), leaving the descriptor posted.
//!
//! Validation is what a device does to protect itself: a ring length of zero, a head or tail
//! beyond the ring, a descriptor or buffer outside DMA memory, a legacy, TSO or unknown
//! descriptor, a zero-length buffer or a frame longer than the device sends: each is a counted
//! device error that stops the queue (until it is disabled or the function reset). Nothing here
//! panics on driver input. The hardware counters include the 4-byte FCS in octet counts, as
//! the 82576 does.

use packet::MacAddr;
use vf::igbvf::descriptors::{
    AdvRxDescRead, AdvRxDescWb, AdvTxDataDesc, DESC_SIZE, TxWriteback, rx_status, tx_cmd,
};
use vf::igbvf::regs::{rxdctl, srrctl, txdctl};
use zerocopy::FromBytes;
use zerocopy::byteorder::little_endian::{U16, U32};

use super::port::WIRE_CAPACITY;
use super::regs_file::{Cause, Function};

/// Longest frame the model transmits or accepts on the wire (jumbo frame plus VLAN tags).
pub(super) const MAX_WIRE_FRAME: usize = 9728 + 8;
/// Buffer size when `SRRCTL.BSIZEPKT` is 0 (the PF's `RCTL.BSIZE` default).
const DEFAULT_RX_BUFFER: usize = 2048;
/// FCS bytes the octet counters include.
const FCS_LEN: u32 = 4;

/// One gathered TX frame.
struct TxFrame {
    /// The frame's bytes.
    bytes: Vec<u8>,
    /// The descriptor index after its last descriptor (the new `TDH`).
    next: u32,
    /// Descriptors posted with `RS`, to write back.
    report: Vec<u32>,
}

/// Why a queue stopped.
fn describe(tx: bool, q: usize, what: &str) -> String {
    format!("{} queue {q}: {what}", if tx { "tx" } else { "rx" })
}

impl Function {
    fn device_error(&mut self, tx: bool, q: usize, what: &str) {
        self.stats.device_errors += 1;
        self.stats.last_device_error = Some(describe(tx, q, what));
        if tx {
            self.tx[q].halted = true;
        } else {
            self.rx[q].halted = true;
        }
    }

    /// The offset in the DMA memory of bus address `addr`, if it is inside.
    fn dma_offset(&self, addr: u64) -> Option<usize> {
        addr.checked_sub(self.dma.bus_addr(0))
            .and_then(|offset| usize::try_from(offset).ok())
    }

    fn dma_read(&self, addr: u64, buf: &mut [u8]) -> bool {
        self.dma_offset(addr)
            .is_some_and(|offset| self.dma.read(offset, buf).is_ok())
    }

    fn dma_write(&self, addr: u64, buf: &[u8]) -> bool {
        self.dma_offset(addr)
            .is_some_and(|offset| self.dma.write(offset, buf).is_ok())
    }

    /// Process TX queue `q` as far as it goes; whether any frame was sent.
    pub(super) fn tx_service(&mut self, q: usize) -> bool {
        let mut sent = false;
        loop {
            let ring = &self.tx[q];
            if !self.mbx.state.vf_enabled || ring.ctl & txdctl::ENABLE == 0 || ring.halted {
                break;
            }
            let (count, base, head, tail) = (ring.count(), ring.base(), ring.head, ring.tail);
            if head == tail {
                break;
            }
            if count == 0 {
                self.device_error(true, q, "tail moved on a ring of length 0");
                break;
            }
            if tail >= count || head >= count {
                self.device_error(
                    true,
                    q,
                    &format!("head {head} or tail {tail} beyond {count}"),
                );
                break;
            }
            match self.tx_gather(base, count, head, tail) {
                Err(what) => {
                    self.device_error(true, q, &what);
                    break;
                }
                Ok(None) => break,
                Ok(Some(TxFrame {
                    bytes,
                    next,
                    report,
                })) => {
                    // On the wire (or the uplink) before DD: a driver that saw the completion
                    // knows the frame left.
                    self.transmit(q, bytes);
                    sent = true;
                    let done = TxWriteback::done().to_bytes();
                    let mut ok = true;
                    for index in report {
                        ok &= self.dma_write(base + u64::from(index) * DESC_SIZE as u64, &done);
                    }
                    if !ok {
                        self.device_error(true, q, "descriptor write-back outside dma memory");
                        break;
                    }
                    self.tx[q].head = next;
                }
            }
        }
        if sent {
            self.raise(Cause::Tx(q));
        }
        sent
    }

    /// The frame at `head`; `None` while its `EOP` descriptor is not posted yet.
    fn tx_gather(
        &self,
        base: u64,
        count: u32,
        head: u32,
        tail: u32,
    ) -> Result<Option<TxFrame>, String> {
        let mut frame = Vec::new();
        let mut report = Vec::new();
        let mut index = head;
        while index != tail {
            let mut bytes = [0u8; DESC_SIZE];
            let addr = base.wrapping_add(u64::from(index) * DESC_SIZE as u64);
            if !self.dma_read(addr, &mut bytes) {
                return Err(format!(
                    "descriptor {index} at {addr:#x} outside dma memory"
                ));
            }
            let desc = AdvTxDataDesc::read_from_bytes(&bytes)
                .map_err(|_| "descriptor size mismatch".to_owned())?;
            let cmd = desc.cmd_type_len.get();
            let next = (index + 1) % count;
            if cmd & tx_cmd::DEXT == 0 {
                return Err(format!("descriptor {index} is a legacy descriptor"));
            }
            let data = desc.decode();
            if data.report_status {
                report.push(index);
            }
            match cmd & tx_cmd::DTYP_MASK {
                tx_cmd::DTYP_CTXT => {
                    index = next;
                    continue;
                }
                tx_cmd::DTYP_DATA => {}
                other => return Err(format!("descriptor {index} has type {:#x}", other >> 20)),
            }
            if cmd & tx_cmd::TSE != 0 {
                return Err(format!("descriptor {index} asks for segmentation"));
            }
            let len = usize::from(data.length);
            if len == 0 {
                return Err(format!("descriptor {index} has a zero-length buffer"));
            }
            if frame.len() + len > MAX_WIRE_FRAME {
                return Err(format!("frame exceeds {MAX_WIRE_FRAME} bytes"));
            }
            let start = frame.len();
            frame.resize(start + len, 0);
            if !self.dma_read(data.buffer_addr, &mut frame[start..]) {
                return Err(format!(
                    "descriptor {index} buffer {:#x}+{len} outside dma memory",
                    data.buffer_addr
                ));
            }
            index = next;
            if data.eop {
                return Ok(Some(TxFrame {
                    bytes: frame,
                    next: index,
                    report,
                }));
            }
        }
        Ok(None)
    }

    fn transmit(&mut self, q: usize, frame: Vec<u8>) {
        let len = frame.len() as u32;
        self.counters.gptc = self.counters.gptc.wrapping_add(1);
        self.counters.gotc = self.counters.gotc.wrapping_add(len + FCS_LEN);
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += u64::from(len);
        if !self.link_up {
            self.stats.tx_wire_dropped += 1;
        } else if let Some(uplink) = &self.uplink {
            uplink.transmit(q as u16, &frame);
        } else if self.wire.tx.len() >= WIRE_CAPACITY {
            self.stats.tx_wire_dropped += 1;
        } else {
            self.wire.tx.push_back((q as u16, frame));
        }
    }

    /// Deliver one injected frame to RX queue `q`, or drop and count it.
    pub(super) fn rx_deliver(&mut self, q: u16, frame: &[u8]) {
        if frame.is_empty() || frame.len() > MAX_WIRE_FRAME {
            self.stats.rx_dropped_invalid += 1;
            return;
        }
        let q = usize::from(q);
        if !self.link_up {
            self.stats.rx_dropped_link_down += 1;
            return;
        }
        if !self.mbx.state.vf_enabled {
            // A PF reset (or a function reset not yet followed by the RESET handshake).
            self.stats.rx_dropped_reset += 1;
            return;
        }
        if q >= self.queues || self.rx[q].ctl & rxdctl::ENABLE == 0 || self.rx[q].halted {
            self.stats.rx_dropped_disabled += 1;
            return;
        }
        let ring = &self.rx[q];
        let (count, base, head, tail, srr) =
            (ring.count(), ring.base(), ring.head, ring.tail, ring.srrctl);
        if count == 0 {
            self.device_error(false, q, "queue enabled with a ring of length 0");
            return;
        }
        if tail >= count || head >= count {
            self.device_error(
                false,
                q,
                &format!("head {head} or tail {tail} beyond {count}"),
            );
            return;
        }
        if srr & srrctl::DESCTYPE_MASK != srrctl::DESCTYPE_ADV_ONEBUF {
            self.device_error(false, q, "descriptor type other than advanced one-buffer");
            return;
        }
        if head == tail {
            self.stats.rx_no_descriptor += 1;
            return;
        }
        let buffer = match (srr & srrctl::BSIZEPKT_MASK) as usize {
            0 => DEFAULT_RX_BUFFER,
            kib => kib << srrctl::BSIZEPKT_SHIFT,
        };
        if frame.len() > buffer {
            self.stats.rx_oversize += 1;
            return;
        }
        let addr = base.wrapping_add(u64::from(head) * DESC_SIZE as u64);
        let mut bytes = [0u8; DESC_SIZE];
        if !self.dma_read(addr, &mut bytes) {
            self.device_error(false, q, &format!("descriptor {head} outside dma memory"));
            return;
        }
        let Ok(desc) = AdvRxDescRead::read_from_bytes(&bytes) else {
            self.device_error(false, q, "descriptor size mismatch");
            return;
        };
        if !self.dma_write(desc.pkt_addr.get(), frame) {
            let what = format!("buffer {:#x} outside dma memory", desc.pkt_addr.get());
            self.device_error(false, q, &what);
            return;
        }
        let mut length = frame.len() as u16;
        if std::mem::take(&mut self.bad_writeback[q]) {
            length = u16::try_from(buffer + 1).unwrap_or(u16::MAX);
            self.stats.bad_writebacks += 1;
        }
        let wb = AdvRxDescWb {
            pkt_info: U16::new(0),
            hdr_info: U16::new(0),
            rss: U32::new(0),
            status_error: U32::new(rx_status::DD | rx_status::EOP),
            length: U16::new(length),
            vlan: U16::new(0),
        };
        if !self.dma_write(addr, &wb.to_bytes()) {
            self.device_error(false, q, "descriptor write-back outside dma memory");
            return;
        }
        self.rx[q].head = (head + 1) % count;
        let len = frame.len() as u32;
        self.counters.gprc = self.counters.gprc.wrapping_add(1);
        self.counters.gorc = self.counters.gorc.wrapping_add(len + FCS_LEN);
        let mut dst = [0u8; 6];
        if let Some(bytes) = frame.get(..6) {
            dst.copy_from_slice(bytes);
        }
        let dst = MacAddr(dst);
        if dst.is_multicast() && !dst.is_broadcast() {
            self.counters.mprc = self.counters.mprc.wrapping_add(1);
        }
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += u64::from(len);
        self.raise(Cause::Rx(q));
    }
}
