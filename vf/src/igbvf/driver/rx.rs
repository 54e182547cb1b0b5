//! Receive: harvesting written-back RX descriptors.
//!
//! Ordering: for each descriptor the word holding the status (bytes 8..16) is loaded once with
//! `Acquire` to see `DD`, and that load is also the copy of those bytes; an `Acquire` fence
//! follows, and only then is the other word copied, and the 16 bytes parsed (the device writes
//! `DD` last, so everything in the copy is at least as new as the `DD` seen; see
//! `ring::written_back`). Re-armed descriptors are written with plain stores; a `SeqCst` fence
//! orders them before the single `RDT` write at the end of the burst, so the device never
//! fetches a half-written descriptor.
//!
//! Buffers: a burst first looks (a plain load of the status word, no copy) how many
//! descriptors are done, takes that many fresh buffers from the pool in one batch
//! (`Pool::alloc_bulk`, appended to the caller's `out`), then copies and checks each
//! descriptor as above. A good frame's buffer is swapped with the next fresh one
//! (`Packet::swap_buffers`): the frame goes out in the packet already in `out`, the slot keeps
//! an empty packet over the fresh buffer. Fresh buffers left over (a rejected write-back keeps
//! its slot's buffer) go back in one batch. The common case is tested once per frame
//! (`RxWriteback::good_frame`); only a write-back it refuses goes through the full parser, to
//! be counted.
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

use super::queue::QueueInner;
use super::ring::{self, Desc};
use crate::igbvf::descriptors::{
    AdvRxDescRead, DESC_SIZE, DescriptorError, RxChaining, RxCompletion, RxWriteback,
};
use crate::igbvf::regs::rdt;

/// `DD` in the little-endian word 1 of a write-back: bit 0 of `status_error`, the word's
/// first 4 bytes.
const DD: u64 = crate::igbvf::descriptors::rx_status::DD as u64;

impl QueueInner {
    /// Harvests up to `max` frames into `out`; see the module docs.
    pub(crate) fn rx_burst(&mut self, out: &mut Vec<Packet>, max: usize, queue: u16) -> usize {
        let rx = &mut self.rx;
        let mask = rx.ring.mask();
        // Both `size` long, so indices masked with `mask` need no bounds check.
        let descs = &rx.ring.descs()[..=mask];
        let slots = &mut rx.slots[..=mask];
        let start = rx.next;
        // At most one lap, so a device that keeps writing back cannot hold the poller. First
        // look: how many descriptors are done, to take their fresh buffers in one batch.
        let limit = max.min(descs.len());
        let mut ready = 0;
        while ready < limit && ring::is_done(&descs[(start + ready) & mask], DD) {
            ready += 1;
        }
        if ready == 0 {
            return 0;
        }
        // The fresh buffers go straight to the end of `out`; each good frame is swapped with
        // the next of them, so `out` ends with the frames, in ring order.
        let base = out.len();
        let got = rx.pool.alloc_bulk(out, ready);
        let fresh = &mut out[base..];
        let mut handed = 0;
        let mut cleaned = 0;
        let mut bytes_total = 0u64;
        while cleaned < ready {
            let i = (start + cleaned) & mask;
            // Copied once, and only this copy is used. A device that took `DD` back since the
            // first look ends the burst there.
            let Some(bytes) = ring::written_back(&descs[i], DD) else {
                break;
            };
            let slot = &mut slots[i];
            match RxWriteback::good_frame(&bytes, rx.buf_size) {
                Some(frame) => match fresh.get_mut(handed) {
                    Some(fresh) => {
                        // The device wrote into the slot's buffer: that buffer moves to the
                        // fresh packet, which is handed out; the slot's packet, empty as
                        // posted, takes the fresh buffer. `good_frame` bounded the length by
                        // the posted buffer size, which the buffer holds after its headroom.
                        fresh.swap_buffers(slot);
                        fresh.set_len(usize::from(frame.length));
                        fresh.meta.queue = queue;
                        fresh.meta.vlan_tci = frame.vlan;
                        bytes_total += u64::from(frame.length);
                        handed += 1;
                    }
                    None => self.counters.rx_no_buffer += 1,
                },
                // `DD` is set in the copy, so `parse` never says the device still owns it.
                None => count_rejected(&mut self.counters, &bytes, rx.buf_size),
            }
            // The slot's packet is empty (a fresh one, or the one posted, untouched).
            post(&descs[i], slot);
            cleaned += 1;
        }
        if handed < got {
            // Rejected write-backs kept their buffers: the spare fresh ones go back.
            return_fresh(out, base + handed);
        }
        let next = start + cleaned;
        rx.next = next & mask;
        self.counters.rx_packets += handed as u64;
        self.counters.rx_bytes += bytes_total;
        if cleaned > 0 {
            // Re-armed descriptors before the tail moves past them.
            fence(Ordering::SeqCst);
            let tail = next.wrapping_sub(1) & mask;
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
        let descs = self.rx.ring.descs();
        let mask = self.rx.ring.mask();
        for _ in 0..descs.len() {
            let i = self.rx.next;
            let Some(bytes) = ring::written_back(&descs[i], DD) else {
                break;
            };
            match RxWriteback::parse(&bytes, self.rx.buf_size, RxChaining::SingleDescriptor) {
                Ok(Some(c)) if !c.frame_error => self.counters.rx_dropped_reset += 1,
                rejected => count_parsed(&mut self.counters, rejected),
            }
            post(&descs[i], &self.rx.slots[i]);
            self.rx.next = (i + 1) & mask;
        }
    }

    /// Posts slot `i`'s buffer again, reset to empty (which also clears `DD`: the header
    /// address word it overlays is 0).
    pub(crate) fn rearm(&mut self, i: usize) {
        let packet = &mut self.rx.slots[i];
        packet.reset();
        post(&self.rx.ring.descs()[i], packet);
    }
}

/// Posts `packet`'s buffer in `desc` (one buffer, header address 0, which clears `DD`).
#[inline]
fn post(desc: &Desc, packet: &Packet) {
    ring::post(
        desc,
        AdvRxDescRead::one_buffer(packet.bus_addr()).to_bytes(),
    );
}

/// Gives the fresh buffers a burst did not use (`out[from..]`) back to their pool. Rare:
/// only after a rejected or errored write-back, or a device that took `DD` back.
#[cold]
fn return_fresh(out: &mut Vec<Packet>, from: usize) {
    packet::pool::free_bulk(out.drain(from..));
}

/// Counts a write-back that hands out no frame (`good_frame` said `None` with `DD` set):
/// rejected by the parser, or a frame the device flagged as errored. Rare, so out of the
/// burst's loop.
#[cold]
fn count_rejected(counters: &mut super::QueueCounters, bytes: &[u8; DESC_SIZE], buf_size: usize) {
    count_parsed(
        counters,
        RxWriteback::parse(bytes, buf_size, RxChaining::SingleDescriptor),
    );
}

/// Counts what `parse` made of a write-back that hands out no frame.
#[cold]
fn count_parsed(
    counters: &mut super::QueueCounters,
    parsed: Result<Option<RxCompletion>, DescriptorError>,
) {
    match parsed {
        Err(_) => counters.rx_descriptor_errors += 1,
        Ok(Some(c)) if c.frame_error => counters.rx_frame_errors += 1,
        // Only ever called with `DD` set (a device that still owns the descriptor is not
        // counted), and with good frames handled by the caller.
        Ok(_) => {}
    }
}
