//! Transmit: reclaiming completed descriptors and posting new frames.
//!
//! Ordering: a completion is seen by an `Acquire` load of the write-back word holding the
//! status (that load is also the copy of those 8 bytes), then an `Acquire` fence, then the
//! other word is copied and the 16 bytes checked with [`TxWriteback::is_done`]
//! (`ring::written_back`); only then is the packet released to its pool (the device is done
//! reading it). Reclaim reads write-backs up to the first one not done, then releases that run
//! of packets and counts them once. New descriptors are written with plain stores; a `SeqCst`
//! fence orders them (and the frame bytes the caller wrote) before the single `TDT` write of
//! the burst.
//!
//! One descriptor per frame, with `EOP | IFCS | RS | DEXT` and `DTYP` data; at most
//! `ring_size - 1` descriptors are in flight, so `TDT == TDH` always means "empty". A frame
//! that is empty or longer than MTU + 14 bytes is taken, dropped and counted (`tx_dropped`).
//! Reachability: a frame from the queue's own pool needs no question; any other is asked of
//! the queue's `DmaReach` (which answers from its last pool first), and bounced when the
//! device cannot reach it.

use std::collections::VecDeque;
use std::num::NonZeroU16;
use std::sync::atomic::{Ordering, fence};

use packet::{Packet, Pool};

use super::QueueCounters;
use super::queue::QueueInner;
use super::ring;
use crate::igbvf::descriptors::{AdvTxDataDesc, TxWriteback, tx_status};
use crate::igbvf::regs::tdt;

/// `DD` in the little-endian word 1 of a write-back: bit 0 of `status`, the word's last 4
/// bytes.
const DD: u64 = (tx_status::DD as u64) << 32;

impl QueueInner {
    /// Releases every descriptor the device completed, oldest first; returns how many.
    /// Write-backs are read up to the first one not done, then the run's packets go back to
    /// their pools and are counted, once.
    pub(crate) fn reclaim_tx(&mut self) -> usize {
        let tx = &mut self.tx;
        let descs = tx.ring.descs();
        let mask = tx.ring.mask();
        let oldest = tx.next_use.wrapping_sub(tx.in_flight.len());
        let mut done = 0;
        while done < tx.in_flight.len() {
            match ring::written_back(&descs[oldest.wrapping_add(done) & mask], DD) {
                Some(bytes) if TxWriteback::is_done(&bytes) => done += 1,
                _ => break,
            }
        }
        let bytes: usize = tx.in_flight.range(..done).map(Packet::len).sum();
        tx.in_flight.drain(..done);
        self.counters.tx_packets += done as u64;
        self.counters.tx_bytes += bytes as u64;
        done
    }

    /// Takes frames from the front of `frames` while descriptors are free; see the module
    /// docs. A frame whose buffer the device cannot reach is copied into one of the queue's
    /// own buffers first (counted in `tx_bounced`); when none is free the burst stops there.
    pub(crate) fn tx_burst(&mut self, frames: &mut Vec<Packet>) -> usize {
        self.reclaim_tx();
        let max = self.max_tx_frame;
        let descs = self.tx.ring.descs();
        let mask = self.tx.ring.mask();
        let free = mask - self.tx.in_flight.len();
        // First pass: how many to take, bouncing the ones the device cannot read, and their
        // descriptors (which the device reads only once the tail moves past them).
        let mut taken = 0;
        let mut posted = 0;
        for frame in frames.iter_mut() {
            let Some(len) = sendable_len(frame, max) else {
                taken += 1;
                continue;
            };
            if posted == free {
                break;
            }
            // The queue's own pool first: the device reaches it, and it is where frames
            // normally come from.
            if !frame.is_from(&self.rx.pool)
                && !self.reach.reaches(frame)
                && !bounce(frame, &self.rx.pool, &mut self.counters)
            {
                break;
            }
            let desc = AdvTxDataDesc::frame(frame.bus_addr(), len);
            ring::post(&descs[(self.tx.next_use + posted) & mask], desc.to_bytes());
            taken += 1;
            posted += 1;
        }
        if taken == 0 {
            return 0;
        }
        // Second pass: the frames posted into the ring's keeping, in the same order; the
        // others dropped.
        self.counters.tx_dropped += (taken - posted) as u64;
        if taken == frames.len() && taken == posted {
            // The whole burst, in one copy: the caller's buffer lent to a deque (no
            // allocation either way), appended, and given back empty.
            let mut burst = VecDeque::from(std::mem::take(frames));
            self.tx.in_flight.append(&mut burst);
            *frames = Vec::from(burst);
        } else {
            for frame in frames.drain(..taken) {
                if sendable_len(&frame, max).is_some() {
                    self.tx.in_flight.push_back(frame);
                }
            }
        }
        if posted > 0 {
            self.tx.next_use = (self.tx.next_use + posted) & mask;
            // Descriptors and frame bytes before the tail moves past them.
            fence(Ordering::SeqCst);
            self.bar.write32(tdt(self.queue), self.tx.next_use as u32);
        }
        taken
    }
}

/// The length of `frame` when the driver sends it: `1..=max` bytes. `None`: the frame is
/// empty or too long, and is dropped.
#[inline]
fn sendable_len(frame: &Packet, max: u16) -> Option<NonZeroU16> {
    let len = frame.len();
    if len == 0 || len > usize::from(max) {
        return None;
    }
    NonZeroU16::new(len as u16)
}

/// Replaces `frame` with a copy in `pool` (the queue's own, which the device reaches); `false`
/// when the pool has no free buffer. Rare: frames normally come from memory the device
/// reaches.
#[cold]
fn bounce(frame: &mut Packet, pool: &Pool, counters: &mut QueueCounters) -> bool {
    let Some(mut copy) = pool.alloc_from(frame.data()) else {
        return false;
    };
    copy.meta = frame.meta;
    *frame = copy;
    counters.tx_bounced += 1;
    true
}
