//! Transmit: reclaiming completed descriptors and posting new frames.
//!
//! Ordering: a completion is seen by an `Acquire` load of the write-back status word, then an
//! `Acquire` fence, then the 16 bytes are copied once and checked with
//! [`TxWriteback::is_done`]; only then is the packet released to its pool (the device is done
//! reading it). New descriptors are written with plain stores; a `SeqCst` fence orders them
//! (and the frame bytes the caller wrote) before the single `TDT` write of the burst.
//!
//! One descriptor per frame, with `EOP | IFCS | RS | DEXT` and `DTYP` data; at most
//! `ring_size - 1` descriptors are in flight, so `TDT == TDH` always means "empty". A frame
//! that is empty or longer than MTU + 14 bytes is taken, dropped and counted (`tx_dropped`).

use std::sync::atomic::{Ordering, fence};

use packet::Packet;

use super::queue::{QueueInner, written_back};
use crate::igbvf::descriptors::{AdvTxDataDesc, DESC_SIZE, TxWriteback};
use crate::igbvf::regs::tdt;

/// Offset of the write-back `status` word in a TX descriptor.
const STATUS_OFFSET: usize = 12;

impl QueueInner {
    /// Releases every descriptor the device completed, oldest first; returns how many.
    pub(crate) fn reclaim_tx(&mut self) -> usize {
        let size = self.tx.slots.len();
        let mut reclaimed = 0;
        while self.tx.in_flight > 0 {
            let i = self.tx.next_clean;
            let mut bytes = [0u8; DESC_SIZE];
            if !written_back(&self.tx.mem, i, STATUS_OFFSET, &mut bytes)
                || !TxWriteback::is_done(&bytes)
            {
                break;
            }
            if let Some(packet) = self.tx.slots[i].take() {
                self.counters.tx_packets += 1;
                self.counters.tx_bytes += packet.len() as u64;
            }
            self.tx.next_clean = (i + 1) % size;
            self.tx.in_flight -= 1;
            reclaimed += 1;
        }
        reclaimed
    }

    /// Takes frames from the front of `frames` while descriptors are free; see the module
    /// docs. A frame whose buffer the device cannot reach is copied into one of the queue's
    /// own buffers first (counted in `tx_bounced`); when none is free the burst stops there.
    pub(crate) fn tx_burst(&mut self, frames: &mut Vec<Packet>) -> usize {
        self.reclaim_tx();
        let size = self.tx.slots.len();
        let free = size - 1 - self.tx.in_flight;
        // First pass: how many to take, bouncing the ones the device cannot read.
        let mut taken = 0;
        let mut posted = 0;
        for frame in frames.iter_mut() {
            let len = frame.len();
            if len == 0 || len > self.max_tx_frame || len > usize::from(u16::MAX) {
                taken += 1;
                continue;
            }
            if posted == free {
                break;
            }
            if !self.reach.reaches(frame) {
                let Some(mut copy) = self.rx.pool.alloc_from(frame.data()) else {
                    break;
                };
                copy.meta = frame.meta;
                *frame = copy;
                self.counters.tx_bounced += 1;
            }
            taken += 1;
            posted += 1;
        }
        if taken == 0 {
            return 0;
        }
        for frame in frames.drain(..taken) {
            let len = frame.len();
            if len == 0 || len > self.max_tx_frame || len > usize::from(u16::MAX) {
                self.counters.tx_dropped += 1;
                continue;
            }
            let i = self.tx.next_use;
            match AdvTxDataDesc::single(frame.bus_addr(), len as u16) {
                Ok(desc) if self.tx.mem.write(i * DESC_SIZE, &desc.to_bytes()).is_ok() => {
                    self.tx.slots[i] = Some(frame);
                    self.tx.next_use = (i + 1) % size;
                    self.tx.in_flight += 1;
                }
                _ => self.counters.tx_dropped += 1,
            }
        }
        if posted > 0 {
            // Descriptors and frame bytes before the tail moves past them.
            fence(Ordering::SeqCst);
            self.bar.write32(tdt(self.queue), self.tx.next_use as u32);
        }
        taken
    }
}
