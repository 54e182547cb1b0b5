//! Receive delivery: the receive buffer's sub-allocations, data and control transfer-page
//! packets, and the guest's completions of them.
//!
//! Geometry (OpenVMM's): one section of `count = floor(size / sub_alloc)` sub-allocations of
//! `sub_alloc = mtu + 256 + 36` bytes. The first 16 are control buffers, handed out
//! last-in-first-out from 15 down; the rest are split evenly across the open queues (queue
//! *q* starts at `16 + q * per_queue`, the last takes the remainder) and each queue hands its
//! own out first-in-first-out. A data packet's transaction id is its first sub-allocation id,
//! a control packet's its control-buffer index; both stay outstanding until the guest completes
//! them with an NVSP 108 payload. An empty payload, an unknown id or a second completion is
//! fatal. Frames wait in the vSwitch while no sub-allocation or ring room is free (never
//! blocking anything else) and while the packet filter is 0. Once the guest revokes the buffer
//! nothing is written into it (frames are dropped in the vSwitch, control messages dropped);
//! completions of packets delivered before are still accepted.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;

use netvsc::nvsp::{self, NvspMessage};
use netvsc::rndis::{self, PacketInfo};
use netvsc::vmbus::{OutgoingKind, OutgoingPacket, TransferPageRange};
use packet::SharedMemory;

use super::{COMPLETION_ROOM, CONTROL_ROOM, Fatal, Session, fatal};
use crate::host::stats::bump;
use crate::host::vswitch::{Backlog, RxFrame};

/// Control buffers at the start of the receive buffer.
pub(crate) const CONTROL_BUFFERS: u32 = 16;
/// Bytes before the frame in a data sub-allocation (RNDIS header and PPIs).
pub(crate) const RX_HEADROOM: u32 = 256;
/// Bytes OpenVMM leaves unused at the end of a sub-allocation.
pub(crate) const RX_TAILROOM: u32 = 36;
/// Most ranges in one data transfer-page packet.
pub(crate) const RX_BATCH: usize = 375;
/// Ring bytes kept free below a data packet (OpenVMM stops pulling receives below 2048).
const RX_RING_RESERVE: usize = 2048;

/// One transfer-page packet the guest has not completed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Outstanding {
    channel: u16,
    ids: Vec<u32>,
}

/// The guest's receive buffer as the host carves it (see the module docs).
#[derive(Debug)]
pub(crate) struct ReceiveBuffer {
    mem: SharedMemory,
    id: u16,
    sub_allocation: u32,
    count: u32,
    control_free: Vec<u32>,
    data_free: Vec<VecDeque<u32>>,
    queue_starts: Vec<u32>,
    outstanding: HashMap<u64, Outstanding>,
}

impl ReceiveBuffer {
    /// Carves `count` sub-allocations of `sub_allocation` bytes, data split over `queues`.
    pub fn new(mem: SharedMemory, id: u16, sub_allocation: u32, count: u32, queues: u16) -> Self {
        let mut buffer = Self {
            mem,
            id,
            sub_allocation,
            count,
            control_free: (0..CONTROL_BUFFERS).collect(),
            data_free: Vec::new(),
            queue_starts: Vec::new(),
            outstanding: HashMap::new(),
        };
        buffer.split(queues);
        buffer
    }

    /// Number of sub-allocations.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The id the guest gave the buffer (the transfer-page-set id of every packet).
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Re-splits the data sub-allocations over `queues` queues; ids the guest still holds go
    /// to their new owner when completed.
    pub fn split(&mut self, queues: u16) {
        let queues = u32::from(queues.max(1));
        let data = self.count.saturating_sub(CONTROL_BUFFERS);
        let per_queue = (data / queues).max(1);
        self.queue_starts = (0..queues)
            .map(|q| CONTROL_BUFFERS + (q * per_queue).min(data))
            .collect();
        let held: std::collections::HashSet<u32> = self
            .outstanding
            .values()
            .flat_map(|o| o.ids.iter().copied())
            .collect();
        self.data_free = (0..queues as usize)
            .map(|q| {
                let start = self.queue_starts[q];
                let end = self.queue_starts.get(q + 1).copied().unwrap_or(self.count);
                (start..end).filter(|id| !held.contains(id)).collect()
            })
            .collect();
    }

    /// The queue that owns data sub-allocation `id`.
    fn owner(&self, id: u32) -> usize {
        self.queue_starts
            .partition_point(|&start| start <= id)
            .saturating_sub(1)
    }

    /// Takes a control buffer (last freed first).
    pub fn alloc_control(&mut self) -> Option<u32> {
        self.control_free.pop()
    }

    /// Takes queue `queue`'s next data sub-allocation.
    pub fn alloc_data(&mut self, queue: u16) -> Option<u32> {
        self.data_free.get_mut(usize::from(queue))?.pop_front()
    }

    /// Gives a sub-allocation back (control LIFO, data to the back of its owner's queue).
    fn free(&mut self, id: u32) {
        if id < CONTROL_BUFFERS {
            self.control_free.push(id);
        } else if id < self.count {
            let q = self.owner(id);
            if let Some(free) = self.data_free.get_mut(q) {
                free.push_back(id);
            }
        }
    }

    /// Records a packet the guest must complete.
    fn hold(&mut self, tid: u64, channel: u16, ids: Vec<u32>) {
        self.outstanding.insert(tid, Outstanding { channel, ids });
    }

    /// Completes `tid` on `channel`; `false` if no such packet is outstanding there.
    fn release(&mut self, tid: u64, channel: u16) -> bool {
        match self.outstanding.get(&tid) {
            Some(o) if o.channel == channel => {
                if let Some(o) = self.outstanding.remove(&tid) {
                    for id in o.ids {
                        self.free(id);
                    }
                }
                true
            }
            _ => false,
        }
    }

    /// Packets the guest has not completed.
    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Free data sub-allocations of `queue`.
    #[cfg(test)]
    pub fn free_data(&self, queue: u16) -> usize {
        self.data_free
            .get(usize::from(queue))
            .map_or(0, VecDeque::len)
    }
}

impl Session {
    /// The guest completed a host packet.
    pub(super) fn guest_completion(
        &mut self,
        ch: u16,
        tid: u64,
        payload: &[u8],
    ) -> Result<(), Fatal> {
        if matches!(
            tid,
            nvsp::HOST_VF_ASSOCIATION_TRANSACTION_ID | nvsp::HOST_SWITCH_DATA_PATH_TRANSACTION_ID
        ) {
            // Optional completions of the host's own in-band messages: any payload.
            return Ok(());
        }
        if payload.is_empty() {
            return fatal!("receive completion {tid:#x} with an empty payload");
        }
        match NvspMessage::parse_from_guest(payload) {
            Ok(NvspMessage::SendRndisPacketComplete(_)) => {}
            Ok(m) => return fatal!("completion {tid:#x} carries NVSP {}", m.msg_type()),
            Err(e) => return fatal!("completion {tid:#x} is malformed: {e}"),
        }
        let Some(recv) = &mut self.recv else {
            return fatal!("completion {tid:#x} without a receive buffer");
        };
        if !recv.release(tid, ch) {
            return fatal!(
                "completion of unknown or completed transaction {tid:#x} on channel {ch}"
            );
        }
        bump(&self.stats.rx_completions, 1);
        self.stats
            .completions_outstanding
            .store(recv.outstanding(), Ordering::Relaxed);
        Ok(())
    }

    /// Writes one RNDIS control message in a control buffer; `false` if it must wait.
    pub(super) fn write_control(&mut self, message: &[u8]) -> bool {
        if self.recv_revoked {
            // The guest gave the buffer up: the message has nowhere to go.
            tracing::debug!(target: "hvnet::host", "control message after the receive buffer was revoked dropped");
            return true;
        }
        let payload = self.rndis_packet_message(nvsp::CONTROL_CHANNEL_TYPE);
        let Some(recv) = &mut self.recv else {
            return false;
        };
        if message.len() > recv.sub_allocation as usize {
            tracing::warn!(target: "hvnet::host", "control message of {} bytes dropped", message.len());
            return true;
        }
        let ring_len = 16 + 8 + 8 + payload.len().next_multiple_of(8) + 8;
        let Some(primary) = self.channels.first_mut() else {
            return false;
        };
        if primary.free() <= ring_len + CONTROL_ROOM {
            primary.request_space(ring_len + CONTROL_ROOM);
            return false;
        }
        let Some(index) = recv.alloc_control() else {
            return false;
        };
        let offset = index * recv.sub_allocation;
        if recv.mem.write(offset as usize, message).is_err() {
            recv.free(index);
            return true;
        }
        recv.hold(u64::from(index), 0, vec![index]);
        let set_id = recv.id;
        self.stats
            .completions_outstanding
            .store(recv.outstanding(), Ordering::Relaxed);
        bump(&self.stats.control_messages, 1);
        let ranges = [TransferPageRange {
            byte_count: message.len() as u32,
            byte_offset: offset,
        }];
        self.stage(
            0,
            &OutgoingPacket {
                kind: OutgoingKind::TransferPages {
                    set_id,
                    ranges: &ranges,
                },
                transaction_id: u64::from(index),
                completion_requested: true,
                payload: &payload,
            },
        );
        true
    }

    /// NVSP 107 as the host sends it inside transfer-page packets.
    fn rndis_packet_message(&self, channel_type: u32) -> Vec<u8> {
        NvspMessage::SendRndisPacket(nvsp::Message1SendRndisPacket::new(
            channel_type,
            nvsp::NO_SEND_SECTION,
            0,
        ))
        .to_vec(self.host_message_size())
    }

    /// Delivers waiting frames on queue `q` in one transfer-page packet; `true` if any.
    pub(super) fn deliver_rx(&mut self, q: usize) -> bool {
        let queue = q as u16;
        if !self.init_done || self.recv.is_none() || self.recv_revoked {
            return false;
        }
        if self.rndis.filter == 0 {
            self.switch.set_backlog(queue, Backlog::Filtered);
            return false;
        }
        let payload = self.rndis_packet_message(nvsp::DATA_CHANNEL_TYPE);
        let fixed = 16 + 8 + payload.len().next_multiple_of(8) + 8;
        let free = self.channels[q].free();
        let switch = self.switch.clone();
        let mut queues = switch.lock_for_guest();
        let Some(waiting) = queues.get_mut(q) else {
            return false;
        };
        if waiting.is_empty() {
            return false;
        }
        let Some(recv) = &mut self.recv else {
            return false;
        };
        let sub = recv.sub_allocation as usize;
        let mut ranges: Vec<TransferPageRange> = Vec::new();
        let mut ids = Vec::new();
        let mut taken = 0;
        let mut backlog = Backlog::None;
        while ranges.len() < RX_BATCH {
            let Some(frame) = waiting.front() else { break };
            if rndis::HOST_RX_FRAME_OFFSET + frame.data.len() > sub {
                waiting.pop_front();
                taken += 1;
                bump(&self.stats.rx_dropped_oversize, 1);
                continue;
            }
            let needed = fixed + 8 * (ranges.len() + 1);
            if free <= needed + RX_RING_RESERVE + COMPLETION_ROOM {
                backlog = Backlog::RingFull;
                break;
            }
            let Some(id) = recv.alloc_data(queue) else {
                backlog = Backlog::NoBuffer;
                break;
            };
            let Some(frame) = waiting.pop_front() else {
                break;
            };
            taken += 1;
            let offset = id as usize * sub;
            write_frame(&recv.mem, &mut self.scratch, sub, offset, &frame);
            self.delivered_buffers.push(frame.data);
            ranges.push(TransferPageRange {
                byte_count: sub as u32,
                byte_offset: offset as u32,
            });
            ids.push(id);
        }
        drop(queues);
        switch.recycle(self.delivered_buffers.drain(..));
        switch.taken(taken);
        switch.set_backlog(queue, backlog);
        if ranges.is_empty() {
            if backlog == Backlog::RingFull {
                let needed = fixed + 8 + RX_RING_RESERVE + COMPLETION_ROOM;
                self.channels[q].request_space(needed);
            }
            return taken > 0;
        }
        let tid = u64::from(ids[0]);
        let faults = &mut self.persist.faults;
        if std::mem::take(&mut faults.bad_range_next) {
            ranges[0].byte_offset = recv.mem.len() as u32;
        } else if std::mem::take(&mut faults.malformed_next) {
            // data_length far past the message: no parser may follow it.
            let _ = recv
                .mem
                .write(ids[0] as usize * sub + 12, &u32::MAX.to_le_bytes());
        }
        let frames = ranges.len() as u64;
        recv.hold(tid, queue, ids);
        self.stats
            .completions_outstanding
            .store(recv.outstanding(), Ordering::Relaxed);
        let set_id = recv.id;
        bump(&self.stats.rx_delivered, frames);
        bump(&self.stats.rx_packets, 1);
        self.stage(
            queue,
            &OutgoingPacket {
                kind: OutgoingKind::TransferPages {
                    set_id,
                    ranges: &ranges,
                },
                transaction_id: tid,
                completion_requested: true,
                payload: &payload,
            },
        );
        true
    }
}

/// Writes `frame` into the `sub`-byte sub-allocation at `offset` as the recorded host lays it
/// out: header and PPIs (checksum, then 802.1Q when tagged) at the start, the frame at byte
/// 256. Each part is laid out in `scratch` with zeros up to the end of its last word, and the
/// frame from the start of its first word as well: those bytes are this sub-allocation's own
/// padding, and writing whole words spares the shared memory a merge of a word it shares
/// (a sub-allocation is 1 806 bytes, so most start inside a word; only the header's first
/// word, shared with the sub-allocation before, is merged).
fn write_frame(
    mem: &SharedMemory,
    scratch: &mut Vec<u8>,
    sub: usize,
    offset: usize,
    frame: &RxFrame,
) {
    let info = PacketInfo {
        checksum: Some(0),
        ieee8021q: frame.vlan.map(rndis::Ieee8021QInfo),
        ..PacketInfo::default()
    };
    let in_word = |at: usize| (mem.offset_in_mapping() + at) % 8;
    let header_len = rndis::packet_header_len(&info);
    let header_end = offset + header_len;
    scratch.clear();
    scratch.resize(header_len + (8 - in_word(header_end)) % 8, 0);
    if rndis::write_host_packet_header(scratch, sub, frame.data.len(), &info).is_err() {
        return;
    }
    let _ = mem.write(offset, scratch);
    let at = offset + rndis::HOST_RX_FRAME_OFFSET;
    let skip = in_word(at);
    let padded = (skip + frame.data.len()).next_multiple_of(8);
    if rndis::HOST_RX_FRAME_OFFSET + padded - skip > sub {
        // The frame's last word would run into the next sub-allocation: the bytes alone.
        let _ = mem.write(at, &frame.data);
        return;
    }
    scratch.clear();
    scratch.resize(skip, 0);
    scratch.extend_from_slice(&frame.data);
    scratch.resize(padded, 0);
    let _ = mem.write(at - skip, scratch);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer(queues: u16) -> ReceiveBuffer {
        let mem = SharedMemory::anonymous(64 * 4096).unwrap();
        // 64 pages at MTU 1514: 145 sub-allocations of 1806 bytes, like the transcripts.
        ReceiveBuffer::new(mem, 0xcafe, 1806, 145, queues)
    }

    #[test]
    fn control_buffers_are_handed_out_last_in_first_out_from_15() {
        let mut b = buffer(1);
        assert_eq!(b.alloc_control(), Some(15));
        assert_eq!(b.alloc_control(), Some(14));
        b.hold(15, 0, vec![15]);
        b.hold(14, 0, vec![14]);
        assert!(b.release(15, 0));
        assert!(b.release(14, 0));
        // Completed 15 then 14: 14 comes back first.
        assert_eq!(b.alloc_control(), Some(14));
        assert!(!b.release(14, 0), "a second completion is refused");
        for _ in 0..15 {
            assert!(b.alloc_control().is_some());
        }
        assert_eq!(b.alloc_control(), None, "sixteen control buffers in all");
    }

    #[test]
    fn data_sub_allocations_are_first_in_first_out_per_queue() {
        let mut b = buffer(1);
        assert_eq!(b.alloc_data(0), Some(16));
        b.hold(16, 0, vec![16]);
        assert!(b.release(16, 0));
        assert_eq!(b.alloc_data(0), Some(17), "the freed one goes to the back");
        assert_eq!(b.free_data(0), 145 - 16 - 1);
    }

    #[test]
    fn four_queues_start_at_16_plus_32q_and_the_last_takes_the_remainder() {
        let mut b = buffer(4);
        for q in 0..4u16 {
            assert_eq!(b.alloc_data(q), Some(16 + 32 * u32::from(q)));
        }
        assert_eq!(b.free_data(3), 33 - 1);
        assert_eq!(b.alloc_data(4), None, "no fifth queue");
    }

    #[test]
    fn a_resplit_keeps_held_ids_out_until_completed_then_returns_them_to_their_owner() {
        let mut b = buffer(1);
        let id = b.alloc_data(0).unwrap();
        b.hold(u64::from(id), 0, vec![id, 50]);
        b.split(4);
        assert_eq!(b.free_data(0), 31, "16 is held");
        assert_eq!(b.free_data(1), 31, "50 is held");
        assert!(b.release(u64::from(id), 0));
        assert_eq!(b.free_data(0), 32);
        assert_eq!(b.free_data(1), 32);
        assert!(!b.release(u64::from(id), 0));
    }

    #[test]
    fn completions_must_come_on_the_channel_of_the_packet() {
        let mut b = buffer(2);
        let id = b.alloc_data(1).unwrap();
        b.hold(u64::from(id), 1, vec![id]);
        assert!(!b.release(u64::from(id), 0));
        assert!(b.release(u64::from(id), 1));
    }
}
