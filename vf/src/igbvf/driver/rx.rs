//! Receive: harvesting written-back RX descriptors.
//!
//! Ordering: for each descriptor the status word is loaded with `Acquire` to see `DD`; an
//! `Acquire` fence follows, and only then are the 16 bytes copied out once and parsed (the
//! device writes `DD` last, so everything in the copy is at least as new as the `DD` seen).
//! Re-armed descriptors are written with plain stores; a `SeqCst` fence orders them before the
//! single `RDT` write at the end of the burst, so the device never fetches a half-written
//! descriptor.
//!
//! The device is untrusted: a write-back the parser rejects is counted in
//! `rx_descriptor_errors` and its slot re-armed with the same buffer; the length used is the
//! validated one, never more than the posted buffer.
//!
//! A PF reset stops the ring with frames in it that no poller has taken: `discard_rx` counts
//! them (`rx_dropped_reset`) when the reset is reported and again just before the ring is
//! re-armed, so every frame the device wrote back is handed out or counted exactly once.

use std::sync::atomic::{Ordering, fence};

use packet::Packet;

use super::queue::{QueueInner, written_back};
use crate::igbvf::descriptors::{AdvRxDescRead, DESC_SIZE, RxChaining, RxWriteback};
use crate::igbvf::regs::rdt;

/// Offset of the `status_error` word in a write-back descriptor.
const STATUS_OFFSET: usize = 8;

impl QueueInner {
    /// Harvests up to `max` frames into `out`; see the module docs.
    pub(crate) fn rx_burst(&mut self, out: &mut Vec<Packet>, max: usize, queue: u16) -> usize {
        let size = self.rx.slots.len();
        let mut handed = 0;
        let mut cleaned = 0;
        let mut bytes_total = 0u64;
        while handed < max && cleaned < size {
            let i = self.rx.next;
            let mut bytes = [0u8; DESC_SIZE];
            if !written_back(&self.rx.mem, i, STATUS_OFFSET, &mut bytes) {
                break;
            }
            match RxWriteback::parse(&bytes, self.rx.buf_size, RxChaining::SingleDescriptor) {
                // DD vanished between the peek and the copy: the device still owns it.
                Ok(None) => break,
                Err(_) => self.counters.rx_descriptor_errors += 1,
                Ok(Some(c)) if c.frame_error => self.counters.rx_frame_errors += 1,
                Ok(Some(c)) => match self.rx.pool.alloc() {
                    None => self.counters.rx_no_buffer += 1,
                    Some(fresh) => {
                        let mut frame = std::mem::replace(&mut self.rx.slots[i], fresh);
                        // `parse` bounded the length by the posted buffer size, which the
                        // packet's buffer holds after its headroom.
                        frame.set_len(usize::from(c.length));
                        frame.meta.queue = queue;
                        frame.meta.vlan_tci = c.vlan;
                        bytes_total += u64::from(c.length);
                        out.push(frame);
                        handed += 1;
                    }
                },
            }
            self.rearm(i);
            self.rx.next = (i + 1) % size;
            cleaned += 1;
        }
        if cleaned > 0 {
            self.counters.rx_packets += handed as u64;
            self.counters.rx_bytes += bytes_total;
            // Re-armed descriptors before the tail moves past them.
            fence(Ordering::SeqCst);
            let tail = (self.rx.next + size - 1) % size;
            self.bar.write32(rdt(self.queue), tail as u32);
        }
        handed
    }

    /// Drops every frame the device wrote back that `rx_burst` has not handed out yet,
    /// counting it once: a good frame in `rx_dropped_reset`, a rejected write-back or an
    /// errored frame as `rx_burst` would have counted it. Walks the ring from `next` as
    /// `rx_burst` does and re-arms each slot with its own buffer (clearing `DD`, so a second
    /// call counts nothing); the tail register is left alone.
    ///
    /// Only for a ring a PF reset stopped, whose frames nobody will read: the
    /// re-initialisation re-arms every slot and restarts the ring from descriptor 0.
    pub(crate) fn discard_rx(&mut self) {
        let size = self.rx.slots.len();
        for _ in 0..size {
            let i = self.rx.next;
            let mut bytes = [0u8; DESC_SIZE];
            if !written_back(&self.rx.mem, i, STATUS_OFFSET, &mut bytes) {
                break;
            }
            match RxWriteback::parse(&bytes, self.rx.buf_size, RxChaining::SingleDescriptor) {
                Ok(None) => break,
                Err(_) => self.counters.rx_descriptor_errors += 1,
                Ok(Some(c)) if c.frame_error => self.counters.rx_frame_errors += 1,
                Ok(Some(_)) => self.counters.rx_dropped_reset += 1,
            }
            self.rearm(i);
            self.rx.next = (i + 1) % size;
        }
    }

    /// Posts slot `i`'s buffer again, reset to empty (which also clears `DD`: the header
    /// address word it overlays is 0).
    pub(crate) fn rearm(&mut self, i: usize) {
        let packet = &mut self.rx.slots[i];
        packet.reset();
        let desc = AdvRxDescRead::one_buffer(packet.bus_addr());
        // The offset is inside the ring (i < slots.len()), so this cannot fail.
        let _ = self.rx.mem.write(i * DESC_SIZE, &desc.to_bytes());
    }
}
