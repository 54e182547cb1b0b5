//! Transmit: reclaiming completed descriptors and posting new frames.
//!
//! Ordering: a completion is seen by an `Acquire` load of the write-back word holding the
//! status (that load is also the copy of those 8 bytes), then an `Acquire` fence, then the
//! other word is copied and the 16 bytes checked with [`TxWriteback::is_done`]
//! (`ring::written_back`); only then is the packet released to its pool (the device is done
//! reading it). Reclaim reads write-backs up to the first one not done, then releases that run
//! of packets (one batch back to their pools, `packet::pool::free_bulk`) and counts them once.
//! New descriptors are written with plain stores; a `SeqCst` fence orders them (and the frame
//! bytes the caller wrote) before the single `TDT` write of the burst.
//!
//! One descriptor per frame, with `EOP | IFCS | RS | DEXT` and `DTYP` data; at most
//! `ring_size - 1` descriptors are in flight, so `TDT == TDH` always means "empty". A frame
//! that is empty or longer than MTU + 14 bytes is taken, dropped and counted (`tx_dropped`).
//! Reachability: every frame is asked of the queue's `DmaReach`, which answers a frame from
//! the pool it was asked about last (at first the queue's own) with one pointer comparison,
//! and bounced when the device cannot reach it.

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
    /// their pools in one batch and are counted, once.
    pub(crate) fn reclaim_tx(&mut self) -> usize {
        let tx = &mut self.tx;
        let mask = tx.ring.mask();
        // `size` long, so indices masked with `mask` need no bounds check.
        let descs = &tx.ring.descs()[..=mask];
        let oldest = tx.next_use.wrapping_sub(tx.in_flight.len());
        let mut done = 0;
        while done < tx.in_flight.len() {
            match ring::written_back(&descs[oldest.wrapping_add(done) & mask], DD) {
                Some(bytes) if TxWriteback::is_done(&bytes) => done += 1,
                _ => break,
            }
        }
        if done == 0 {
            return 0;
        }
        let bytes: usize = tx.in_flight[..done].iter().map(Packet::len).sum();
        // One lock per pool for the whole run, not one per frame. The packets still in flight
        // (those the device has not caught up with yet) move to the front.
        packet::pool::free_bulk(tx.in_flight.drain(..done));
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
        let mask = self.tx.ring.mask();
        let descs = &self.tx.ring.descs()[..=mask];
        let free = mask - self.tx.in_flight.len();
        let next_use = self.tx.next_use;
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
            // One pointer comparison for a frame from the pool the last one came from (at
            // first the queue's own, which the device reaches).
            if !self.reach.reaches(frame) && !bounce(frame, &self.rx.pool, &mut self.counters) {
                break;
            }
            let desc = AdvTxDataDesc::frame(frame.bus_addr(), len);
            ring::post(&descs[(next_use + posted) & mask], desc.to_bytes());
            taken += 1;
            posted += 1;
        }
        if taken == 0 {
            return 0;
        }
        // Second pass: the frames posted into the ring's keeping, in the same order; the
        // others dropped.
        if taken == frames.len() && taken == posted {
            // The whole burst, in one copy (no allocation: `in_flight` has room for a ring).
            self.tx.in_flight.append(frames);
        } else {
            self.counters.tx_dropped += (taken - posted) as u64;
            keep_sendable(frames.drain(..taken), &mut self.tx.in_flight, max);
        }
        if posted > 0 {
            self.tx.next_use = (next_use + posted) & mask;
            // Descriptors and frame bytes before the tail moves past them.
            fence(Ordering::SeqCst);
            self.bar.write32(tdt(self.queue), self.tx.next_use as u32);
        }
        taken
    }
}

/// Moves the sendable ones of `frames` into `in_flight`, in order, and drops the others.
#[cold]
fn keep_sendable(frames: impl Iterator<Item = Packet>, in_flight: &mut Vec<Packet>, max: u16) {
    for frame in frames {
        if sendable_len(&frame, max).is_some() {
            in_flight.push(frame);
        }
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
