//! The synthetic NIC's queues fed a sequence of host and guest actions chosen by the fuzzer,
//! after a well-behaved handshake against `netvsc::nic::fuzzing`'s synchronous `StepHost`
//! (one or two queues, 16 KiB rings, 64 receive sub-allocations, 10 send sections, a pool of
//! 64 buffers: rings fill, wrap and run out of room after a few dozen packets).
//!
//! Input: `[config]` (bit 0: two queues; bits 1–2: `tx_copy_max` 1514, 0, 60 or 9000), then
//! actions, each an opcode byte (modulo 20) and its operands (missing bytes read as 0); `q`
//! is a queue byte, taken modulo the queue count:
//! - host: 0 frames `[q][n][rc][len:u16 vlan:u8]×(n%4+1)` (one transfer-page packet, a
//!   valid RNDIS PACKET per range; lengths past the MTU are malformed on purpose); 1 bad
//!   transfer-page packet `[q][kind]` (range outside the buffer, range shorter than a header,
//!   another page set, not NVSP 107); 2 flood `[q][n]` (n×4 of those); 3 garbage RNDIS in the
//!   receive buffer `[q][control][len][bytes]`; 4 status indication `[q][code][len][bytes]`;
//!   5 RNDIS completion of request id `[q][id:u32]`; 6 complete an outstanding guest send
//!   `[which][status][wrong channel]`; 7 complete all outstanding `[reverse]`; 8 completion
//!   of any tid `[q][tid:u64][payload len][bytes]`; 9 unsolicited in-band NVSP
//!   `[q][kind][rc][len][bytes]` (VF association, data path switch, indirection table, raw);
//!   10 stop reading the guest's rings (completions back up); 11 read them again; 12 ring the
//!   guest's doorbell `[q]`; 13 corrupt the guest's incoming ring `[q][write index:u32]`.
//! - watchdog: 19 `[0x7e]` `reestablish`, once per input (the host acknowledges the reopen at
//!   once and answers the new handshake like a well-behaved host; refused once closed);
//!   19 `[0xc1]` `close`, once per input: everything settles first (as at the end of an
//!   input), then a host that answers the teardown records it; other operands read the stats.
//! - guest: 14 `rx_burst` `[q][max]`; 15 `tx_burst` `[q][n][len:u16 vlan:u8]×(n%8+1)`;
//!   16 drop the received packets held; 17 `tx_pending` `[q]`; 18 read the stats.
//!
//! Invariants, after every action: no panic; the guest writes only valid packets; it never
//! completes a transfer-page packet twice or one never sent; its completion backlog (packets
//! consumed and not completed, seen from the ring indices) never exceeds the receive buffer's
//! sub-allocation count; a data send names a section of its queue's share that the host does
//! not hold, or DMA memory no other outstanding send uses, never reuses an outstanding tid,
//! and carries the frame `tx_burst` took, in order; received frames are the host's, in order.
//! At the end, after the host reads and completes everything and the guest drains its rings
//! (unless the ring was corrupted): every transfer-page packet that asked for a completion was
//! completed exactly once; `tx_pending` is 0; the counters add up (frames delivered =
//! `rx_packets`; valid frames written = delivered + `rx_dropped_overflow` +
//! `rx_dropped_no_buffer` while no garbage was written; `tx_dropped` and `tx_failed` as
//! predicted); and every pool buffer is back. Then the NIC is closed (unless an action did):
//! the guest sends exactly packet filter 0, RNDIS HALT, REVOKE_RECEIVE_BUFFER (0xCAFE) and
//! REVOKE_SEND_BUFFER (0), the revokes without a completion request, nothing else; every
//! transfer-page packet is completed; a second close sends nothing. After a close, bursts take
//! and return nothing new, a re-establish is refused, and what the host writes is never read.
#![no_main]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use netvsc::nic::fuzzing::{
    GuestKind, GuestPacket, HostIdentity, Reply, Responder, SUB_ALLOC, StepHandle, StepHost, Wake,
    WellBehaved, bus_config, step_bus,
};
use netvsc::nvsp::{self, NvspMessage};
use netvsc::rndis::{self, Ieee8021QInfo, PacketInfo, RndisMessage};
use netvsc::vmbus::{OutgoingKind, OutgoingPacket, TransferPageRange};
use netvsc::{NicConfig, NicError, SyntheticNic, SyntheticQueue};
use packet::{Packet, PortQueue};

/// The operand that makes opcode 19 a re-establish.
const REESTABLISH_KEY: u8 = 0x7e;
/// The operand that makes opcode 19 a close.
const CLOSE_KEY: u8 = 0xc1;
/// The bound of a close against the host below (it answers at once).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// Actions per input at most.
const MAX_ACTIONS: usize = 400;
const COPY_MAX: [usize; 4] = [1514, 0, 60, 9000];

/// The fuzz input as a byte cursor; missing bytes read as 0.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | u64::from(self.u32()) << 32
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
}

/// After the handshake nothing may wait for the host: a wait would be a bug in the target.
#[derive(Debug)]
struct Passive;

impl Responder for Passive {
    fn respond(&mut self, _: &mut StepHost) -> Wake {
        Wake::Quiet
    }
}

/// What the guest sent while it closed, as [`Closer`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CloseStep {
    Filter(u32),
    Halt,
    RevokeReceive(u16),
    RevokeSend(u16),
}

#[derive(Debug, Default)]
struct CloseLog {
    steps: Vec<CloseStep>,
    /// Anything else the guest sent (described), which it must not.
    unexpected: Vec<String>,
}

/// The host while the guest closes: it reads every channel, completes the control sends,
/// answers the packet-filter SET, and records the teardown. A data send (there must be none:
/// everything settled before, and a closing NIC takes no frames) is completed and recorded as
/// unexpected.
#[derive(Debug)]
struct Closer {
    log: Arc<Mutex<CloseLog>>,
}

fn send_complete(status: u32) -> Vec<u8> {
    NvspMessage::SendRndisPacketComplete(nvsp::Message1SendRndisPacketComplete::new(status))
        .to_vec(nvsp::PACKET_SIZE_V61)
}

impl Closer {
    /// What the host does with one guest packet: its replies, and what it records.
    fn serve(&self, host: &StepHost, packet: &GuestPacket) -> Vec<Reply> {
        let mut log = self.log.lock().unwrap();
        match &packet.kind {
            GuestKind::Completion => return Vec::new(),
            GuestKind::InBand | GuestKind::GpaDirect => {}
            other => {
                log.unexpected.push(format!("{other:?}"));
                return Vec::new();
            }
        }
        let complete = Reply::Completion {
            tid: packet.tid,
            payload: send_complete(nvsp::STATUS_SUCCESS),
        };
        let msg = match NvspMessage::parse_from_guest(&packet.payload) {
            Ok(msg) => msg,
            Err(e) => {
                log.unexpected.push(format!("unparsable NVSP: {e}"));
                return Vec::new();
            }
        };
        match msg {
            NvspMessage::SendRndisPacket(m)
                if m.channel_type.get() == nvsp::CONTROL_CHANNEL_TYPE && packet.channel == 0 =>
            {
                let Some(bytes) = host.rndis_of(packet, &m) else {
                    log.unexpected.push("an unreadable control message".into());
                    return vec![complete];
                };
                match RndisMessage::parse(&bytes) {
                    Ok(RndisMessage::Set(set))
                        if set.oid == rndis::OID_GEN_CURRENT_PACKET_FILTER =>
                    {
                        let value = set
                            .info
                            .get(&bytes)
                            .and_then(|v| v.try_into().ok())
                            .map_or(u32::MAX, u32::from_le_bytes);
                        log.steps.push(CloseStep::Filter(value));
                        let mut replies = vec![complete];
                        replies.extend(host.rndis_answer(&bytes).into_iter().map(Reply::Rndis));
                        replies
                    }
                    // No RNDIS reply: the transport completion is HALT's only answer.
                    Ok(RndisMessage::Halt(_)) => {
                        log.steps.push(CloseStep::Halt);
                        vec![complete]
                    }
                    other => {
                        log.unexpected.push(format!("RNDIS {other:?}"));
                        vec![complete]
                    }
                }
            }
            NvspMessage::RevokeReceiveBuffer(m) => {
                log.steps.push(CloseStep::RevokeReceive(m.id.get()));
                if packet.completion_requested {
                    log.unexpected
                        .push("a revoke asking for a completion".into());
                }
                Vec::new()
            }
            NvspMessage::RevokeSendBuffer(m) => {
                log.steps.push(CloseStep::RevokeSend(m.id.get()));
                if packet.completion_requested {
                    log.unexpected
                        .push("a revoke asking for a completion".into());
                }
                Vec::new()
            }
            other => {
                log.unexpected
                    .push(format!("{other:?} on channel {}", packet.channel));
                if packet.completion_requested {
                    vec![complete]
                } else {
                    Vec::new()
                }
            }
        }
    }
}

impl Responder for Closer {
    fn respond(&mut self, host: &mut StepHost) -> Wake {
        let mut acted = false;
        for channel in 0..host.max_channels() {
            let Ok(packets) = host.read_guest(channel) else {
                continue;
            };
            // Reading made room in the guest's ring: a host would signal a waiting guest.
            acted |= !packets.is_empty();
            for packet in &packets {
                for reply in self.serve(host, packet) {
                    acted |= host.send_reply(channel, &reply).unwrap_or(false);
                }
            }
        }
        if acted { Wake::Signalled } else { Wake::Quiet }
    }
}

/// A guest send the host has read and not completed.
#[derive(Debug, Clone)]
struct Outstanding {
    channel: u16,
    tid: u64,
    /// Frames in the send (a section holds several: aggregation).
    frames: usize,
    section: Option<u32>,
    /// Memfd byte ranges of a GPA-direct send.
    gpa: Vec<(u64, u64)>,
}

/// A frame as the guest should see it (or the host receive it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    bytes: Vec<u8>,
    vlan: Option<u16>,
}

struct Rig {
    nic: SyntheticNic,
    queues: Vec<SyntheticQueue>,
    handle: StepHandle,
    reading: bool,
    held: Vec<Packet>,
    seq: u32,
    max_frame: usize,
    sections: u32,
    control_sections: u32,
    dma: (u64, u64),
    /// Per queue: valid frames written and not yet matched, in ring order.
    expected_rx: Vec<VecDeque<Frame>>,
    skipped_rx: Vec<u64>,
    delivered: Vec<(u64, u64)>,
    malformed: Vec<u64>,
    /// Per queue: frames `tx_burst` took and the host has not seen yet.
    expected_tx: Vec<VecDeque<Frame>>,
    tx_dropped: Vec<u64>,
    tx_failed: Vec<u64>,
    outstanding: Vec<Outstanding>,
    /// Sends the host completed before reading them (channel, tid): the guest frees them when
    /// it reads the completion, so the host must not hold them when it reads them.
    precompleted: Vec<(u16, u64, usize)>,
    /// No garbage written: received frames can be matched exactly.
    exact: bool,
    /// The ring was corrupted: only "no panic" and the backlog bound hold.
    broken: bool,
    /// The session was re-established: frames in the old rings are gone uncounted.
    reestablished: bool,
    /// The NIC was closed: what the host writes from now on is never read.
    closed: bool,
}

/// The frames of a data send's RNDIS bytes (one PACKET, or several in an aggregated
/// section), in order; panics on anything else: the guest wrote it.
fn frames_of(bytes: &[u8]) -> Vec<Frame> {
    rndis::Messages::new(bytes)
        .map(|m| {
            let (_, m) = m.expect("the send's messages are well formed");
            let Ok(RndisMessage::Packet(p)) = RndisMessage::parse(m) else {
                panic!("a data send that is not an RNDIS PACKET");
            };
            Frame {
                bytes: p.frame.get(m).expect("frame inside the message").to_vec(),
                vlan: p.info.ieee8021q.map(|v| v.tci()),
            }
        })
        .collect()
}

fn frame_bytes(seq: u32, queue: u16, len: usize) -> Vec<u8> {
    let tag = seq.to_le_bytes();
    (0..len)
        .map(|i| match i {
            0..4 => tag[i],
            4 => queue as u8,
            _ => (i as u8).wrapping_mul(31) ^ tag[0],
        })
        .collect()
}

/// The status a guest reads from a send completion's payload (zero-padded to 8 bytes by the
/// ring).
fn completion_status(payload: &[u8]) -> u32 {
    let mut padded = payload.to_vec();
    padded.resize(payload.len().next_multiple_of(8), 0);
    match NvspMessage::parse(&padded) {
        Ok(NvspMessage::SendRndisPacketComplete(m)) => m.status.get(),
        _ => nvsp::STATUS_NONE,
    }
}

impl Rig {
    fn queue_count(&self) -> u16 {
        self.queues.len() as u16
    }

    fn q(&self, b: u8) -> u16 {
        u16::from(b) % self.queue_count()
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    /// The host reads what the guest sent on every channel and checks it.
    fn read_guest(&mut self) {
        for channel in 0..self.queue_count() {
            let packets = {
                let mut host = self.handle.host();
                match host.read_guest(channel) {
                    Ok(p) => p,
                    Err(e) => panic!("the guest corrupted its outgoing ring {channel}: {e}"),
                }
            };
            for packet in packets {
                self.guest_packet(&packet);
            }
        }
    }

    fn guest_packet(&mut self, packet: &GuestPacket) {
        match &packet.kind {
            GuestKind::Completion => return,
            GuestKind::InBand | GuestKind::GpaDirect => {}
            other => panic!("the guest sent {other:?}"),
        }
        let msg = match NvspMessage::parse_from_guest(&packet.payload) {
            Ok(NvspMessage::SendRndisPacket(m)) => m,
            other => panic!("unexpected guest message after the handshake: {other:?}"),
        };
        assert_eq!(msg.channel_type.get(), nvsp::DATA_CHANNEL_TYPE);
        assert!(
            packet.completion_requested,
            "a data send without a completion request"
        );
        let channel = packet.channel;
        if !self.broken {
            assert!(
                !self
                    .outstanding
                    .iter()
                    .any(|o| o.channel == channel && o.tid == packet.tid),
                "tid {:#x} reused while outstanding",
                packet.tid
            );
        }
        let index = msg.send_buffer_section_index.get();
        let (section, gpa) = if index == nvsp::NO_SEND_SECTION {
            assert_eq!(packet.kind, GuestKind::GpaDirect);
            let spans: Vec<(u64, u64)> = packet
                .gpa
                .iter()
                .map(|s| {
                    assert!(
                        s.pfns.windows(2).all(|w| w[1] == w[0] + 1),
                        "pool buffers are contiguous"
                    );
                    let start = s.pfns[0] * 4096 + u64::from(s.byte_offset);
                    (start, start + u64::from(s.byte_count))
                })
                .collect();
            for &(start, end) in &spans {
                assert!(
                    start >= self.dma.0 && end <= self.dma.1,
                    "gpa range {start:#x}..{end:#x} outside dma memory"
                );
                if !self.broken {
                    assert!(
                        !self
                            .outstanding
                            .iter()
                            .flat_map(|o| &o.gpa)
                            .any(|&(s, e)| s < end && start < e),
                        "buffer at {start:#x} reused while the host holds it"
                    );
                }
            }
            (None, spans)
        } else {
            assert_eq!(packet.kind, GuestKind::InBand);
            assert!(
                index >= self.control_sections && index < self.sections,
                "section {index} outside the data sections"
            );
            if !self.broken {
                assert!(
                    !self.outstanding.iter().any(|o| o.section == Some(index)),
                    "section {index} reused while the host holds it"
                );
            }
            (Some(index), Vec::new())
        };
        if let Some(i) = self
            .precompleted
            .iter()
            .position(|&(c, t, _)| c == channel && t == packet.tid)
        {
            // The host completed this send before reading it: the guest has freed its section
            // or buffer and may have reused it, so its bytes are no longer these frames'.
            let (_, _, frames) = self.precompleted.remove(i);
            for _ in 0..frames {
                self.expected_tx[usize::from(channel)].pop_front();
            }
            return;
        }
        let bytes = self
            .handle
            .host()
            .rndis_of(packet, &msg)
            .expect("the send's bytes lie in the send buffer or guest memory");
        let got = frames_of(&bytes);
        if section.is_none() {
            assert_eq!(got.len(), 1, "a GPA-direct send carries one frame");
        }
        for got in &got {
            if !self.broken {
                let want = self.expected_tx[usize::from(channel)].pop_front();
                assert_eq!(
                    Some(got),
                    want.as_ref(),
                    "queue {channel} sent another frame"
                );
            }
        }
        self.outstanding.push(Outstanding {
            channel,
            tid: packet.tid,
            frames: got.len(),
            section,
            gpa,
        });
    }

    /// A completion the host sends for `tid` on `channel`: the guest frees whatever it has
    /// outstanding under that tid on that channel.
    fn complete(&mut self, channel: u16, tid: u64, payload: &[u8]) {
        let reply = OutgoingPacket {
            kind: OutgoingKind::Completion,
            transaction_id: tid,
            completion_requested: false,
            payload,
        };
        let sent = self.handle.host().send(channel, &reply).unwrap_or(false);
        if !sent {
            return;
        }
        let failed = u64::from(completion_status(payload) != nvsp::STATUS_SUCCESS);
        if let Some(i) = self
            .outstanding
            .iter()
            .position(|o| o.channel == channel && o.tid == tid)
        {
            let o = self.outstanding.remove(i);
            self.tx_failed[usize::from(channel)] += failed * o.frames as u64;
        } else if !self
            .precompleted
            .iter()
            .any(|&(c, t, _)| c == channel && t == tid)
        {
            // A send still unread in the guest's ring: the guest frees it all the same. Its
            // bytes are still its own now (the guest has not read the completion yet).
            let unread = self.handle.host().peek_guest(channel).unwrap_or_default();
            let send = unread
                .iter()
                .find(|p| p.tid == tid && matches!(p.kind, GuestKind::InBand | GuestKind::GpaDirect));
            if let Some(send) = send {
                let frames = match NvspMessage::parse_from_guest(&send.payload) {
                    Ok(NvspMessage::SendRndisPacket(m)) => self
                        .handle
                        .host()
                        .rndis_of(send, &m)
                        .map_or(1, |bytes| frames_of(&bytes).len()),
                    _ => 1,
                };
                self.precompleted.push((channel, tid, frames));
                self.tx_failed[usize::from(channel)] += failed * frames as u64;
            }
        }
    }

    fn host_frames(&mut self, input: &mut Input<'_>) {
        let q = self.q(input.byte());
        let n = usize::from(input.byte() % 4) + 1;
        let rc = input.byte() & 1 == 0;
        let mut messages = Vec::new();
        let mut frames = Vec::new();
        let mut bad = 0;
        for _ in 0..n {
            let len = usize::from(input.u16()) % (SUB_ALLOC - rndis::HOST_RX_FRAME_OFFSET + 1);
            let vlan_byte = input.byte();
            let vlan = (vlan_byte & 1 != 0).then_some(u16::from(vlan_byte >> 1) * 17);
            let seq = self.next_seq();
            let bytes = frame_bytes(seq, q, len);
            let info = PacketInfo {
                ieee8021q: vlan.map(Ieee8021QInfo::from_tci),
                hash_value: Some(seq),
                ..PacketInfo::default()
            };
            let mut msg = vec![0u8; rndis::HOST_RX_FRAME_OFFSET + len];
            rndis::write_host_packet(&mut msg, &bytes, &info).expect("fits");
            messages.push(msg);
            if len == 0 || len > self.max_frame {
                bad += 1;
            } else {
                frames.push(Frame { bytes, vlan });
            }
        }
        let refs: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let sent = self
            .handle
            .host()
            .send_rndis(q, &refs, nvsp::DATA_CHANNEL_TYPE, rc)
            .expect("host ring");
        // A closed NIC never reads what the host writes.
        if sent.is_some() && !self.closed {
            self.expected_rx[usize::from(q)].extend(frames);
            self.malformed[usize::from(q)] += bad + u64::from(!rc);
        }
    }

    /// A transfer-page packet the guest must count as malformed (and complete).
    fn bad_tp(&mut self, q: u16, kind: u8) -> bool {
        let mut host = self.handle.host();
        let len = host.rxbuf().len() as u32;
        let tid = host.fresh_tid();
        let (set_id, range, payload) = match kind % 4 {
            0 => (nvsp::RECEIVE_BUFFER_ID, (len - 16, 64), 107),
            1 => (nvsp::RECEIVE_BUFFER_ID, (0, 4), 107),
            2 => (1, (0, 64), 107),
            _ => (nvsp::RECEIVE_BUFFER_ID, (0, 64), 1),
        };
        let msg = if payload == 107 {
            NvspMessage::SendRndisPacket(nvsp::Message1SendRndisPacket::new(
                nvsp::DATA_CHANNEL_TYPE,
                nvsp::NO_SEND_SECTION,
                0,
            ))
        } else {
            NvspMessage::Init(nvsp::MessageInit::new(nvsp::VERSION_61))
        };
        let payload = msg.to_vec(nvsp::PACKET_SIZE_V61);
        let ranges = [TransferPageRange {
            byte_offset: range.0,
            byte_count: range.1,
        }];
        let sent = host
            .send(
                q,
                &OutgoingPacket {
                    kind: OutgoingKind::TransferPages {
                        set_id,
                        ranges: &ranges,
                    },
                    transaction_id: tid,
                    completion_requested: true,
                    payload: &payload,
                },
            )
            .expect("host ring");
        drop(host);
        if sent && !self.closed {
            self.malformed[usize::from(q)] += 1;
        }
        sent
    }

    fn host_inband(&mut self, input: &mut Input<'_>) {
        let q = self.q(input.byte());
        let kind = input.byte() % 4;
        let rc = input.byte() & 1 != 0;
        let len = usize::from(input.byte());
        let raw = input.bytes(len);
        let word = |i: usize| {
            raw.get(i * 4..i * 4 + 4)
                .map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()))
        };
        let payload = match kind {
            0 => NvspMessage::SendVfAssociation(nvsp::Message4SendVfAssociation::new(
                word(0) & 1 != 0,
                word(1),
            ))
            .to_vec(nvsp::PACKET_SIZE_V61),
            1 => NvspMessage::SwitchDataPath(nvsp::Message4SwitchDataPath::new(word(0) % 3))
                .to_vec(8),
            2 => {
                let table: Vec<u32> = (0..16).map(word).collect();
                let mut out = vec![0u8; nvsp::SEND_INDIRECTION_TABLE_MESSAGE_SIZE];
                let n = nvsp::encode_send_indirection_table(&mut out, &table).unwrap_or(0);
                out.truncate(n);
                out
            }
            _ => raw.clone(),
        };
        if payload.is_empty() {
            return;
        }
        let mut host = self.handle.host();
        let tid = host.fresh_tid();
        let _ = host.send(
            q,
            &OutgoingPacket {
                kind: OutgoingKind::InBand,
                transaction_id: tid,
                completion_requested: rc,
                payload: &payload,
            },
        );
    }

    fn rx_burst(&mut self, q: u16, max: usize) {
        let mut out = Vec::new();
        let n = self.queues[usize::from(q)].rx_burst(&mut out, max);
        assert_eq!(
            n,
            out.len(),
            "rx_burst returned {n} for {} frames",
            out.len()
        );
        assert!(n <= max);
        let qi = usize::from(q);
        for p in &out {
            assert_eq!(p.meta.queue, q);
            self.delivered[qi].0 += 1;
            self.delivered[qi].1 += p.len() as u64;
            if !self.exact {
                continue;
            }
            let got = Frame {
                bytes: p.data().to_vec(),
                vlan: p.meta.vlan_tci,
            };
            let expected = &mut self.expected_rx[qi];
            let Some(at) = expected.iter().position(|f| *f == got) else {
                panic!("queue {q} received a frame the host never wrote (or out of order)");
            };
            self.skipped_rx[qi] += at as u64;
            expected.drain(..=at);
        }
        self.held.extend(out);
    }

    fn tx_burst(&mut self, input: &mut Input<'_>) {
        let q = self.q(input.byte());
        let n = usize::from(input.byte() % 8) + 1;
        let mut frames = Vec::new();
        let mut expected = Vec::new();
        for _ in 0..n {
            let len = usize::from(input.u16()) % 1540;
            let vlan_byte = input.byte();
            let vlan = (vlan_byte & 1 != 0).then_some(u16::from(vlan_byte >> 1) * 33);
            let seq = self.next_seq();
            let bytes = frame_bytes(seq, q, len);
            let Some(mut p) = self.nic.pool().alloc_from(&bytes) else {
                break;
            };
            p.meta.vlan_tci = vlan;
            frames.push(p);
            expected.push(Frame { bytes, vlan });
        }
        let taken = self.queues[usize::from(q)].tx_burst(&mut frames);
        assert!(taken <= expected.len());
        assert!(
            !self.closed || taken == 0,
            "a closed queue took {taken} frames"
        );
        assert_eq!(
            frames.len(),
            expected.len() - taken,
            "tx_burst took from the middle"
        );
        for f in expected.into_iter().take(taken) {
            if f.bytes.is_empty() || f.bytes.len() > self.max_frame {
                self.tx_dropped[usize::from(q)] += 1;
            } else {
                self.expected_tx[usize::from(q)].push_back(f);
            }
        }
    }

    fn tx_pending(&mut self, q: u16) {
        let pending = self.queues[usize::from(q)].tx_pending();
        self.handle.host().observe();
        let caught_up = self.handle.host().incoming_ring(q).is_some_and(|r| {
            r.read_index().load(std::sync::atomic::Ordering::Acquire)
                == r.write_index().load(std::sync::atomic::Ordering::Acquire)
        });
        if self.reading && caught_up && !self.broken {
            let held: usize = self
                .outstanding
                .iter()
                .filter(|o| o.channel == q)
                .map(|o| o.frames)
                .sum();
            assert_eq!(
                pending, held,
                "queue {q}: tx_pending disagrees with the host"
            );
        }
    }

    fn check_stats(&self) {
        for (q, s) in self.nic.stats().queues.iter().enumerate() {
            assert_eq!(
                s.tx_send_buffer + s.tx_gpa_direct,
                s.tx_packets,
                "queue {q}"
            );
            if !self.broken {
                assert!(s.rx_packets >= self.delivered[q].0, "queue {q} rx_packets");
            }
        }
    }

    /// The invariants that hold after every action.
    fn after_action(&mut self) {
        self.handle.host().observe();
        if self.reading {
            self.read_guest();
        }
        let limit = (self.handle.host().rxbuf().len() / SUB_ALLOC) as u64;
        for q in 0..self.queue_count() {
            let backlog = self
                .handle
                .host()
                .rx_completion_backlog(q)
                .expect("guest outgoing ring readable");
            assert!(
                backlog <= limit,
                "queue {q}: {backlog} receive completions backed up (bound {limit})"
            );
        }
        if !self.broken {
            assert_eq!(
                self.handle.host().excess_completions(),
                0,
                "excess completions"
            );
        }
    }

    fn act(&mut self, input: &mut Input<'_>) {
        match input.byte() % 20 {
            0 => self.host_frames(input),
            1 => {
                let q = self.q(input.byte());
                let kind = input.byte();
                self.bad_tp(q, kind);
            }
            2 => {
                let q = self.q(input.byte());
                for _ in 0..usize::from(input.byte()) * 4 {
                    if !self.bad_tp(q, 0) {
                        break;
                    }
                }
            }
            3 => {
                let q = self.q(input.byte());
                let control = input.byte() & 1 != 0;
                let len = usize::from(input.byte());
                let raw = input.bytes(len);
                let channel_type = if control {
                    nvsp::CONTROL_CHANNEL_TYPE
                } else {
                    nvsp::DATA_CHANNEL_TYPE
                };
                let sent = self
                    .handle
                    .host()
                    .send_rndis(q, &[&raw], channel_type, true);
                if matches!(sent, Ok(Some(_))) {
                    self.exact = false;
                }
            }
            4 => {
                let q = self.q(input.byte());
                let codes = [
                    rndis::STATUS_MEDIA_CONNECT,
                    rndis::STATUS_MEDIA_DISCONNECT,
                    rndis::STATUS_NETWORK_CHANGE,
                    rndis::STATUS_LINK_SPEED_CHANGE,
                    rndis::STATUS_TASK_OFFLOAD_CURRENT_CONFIG,
                    0x4001_0099,
                ];
                let code = codes[usize::from(input.byte()) % codes.len()];
                let len = usize::from(input.byte() % 16);
                let buffer = input.bytes(len);
                let mut out = [0u8; 64];
                if let Ok(n) = rndis::encode_indicate_status(&mut out, code, &buffer) {
                    let _ = self.handle.host().send_rndis(
                        q,
                        &[&out[..n]],
                        nvsp::CONTROL_CHANNEL_TYPE,
                        true,
                    );
                }
            }
            5 => {
                let q = self.q(input.byte());
                let id = input.u32();
                let mut out = [0u8; 64];
                if let Ok(n) =
                    rndis::encode_query_complete(&mut out, id, rndis::STATUS_SUCCESS, &[1, 2, 3, 4])
                {
                    let _ = self.handle.host().send_rndis(
                        q,
                        &[&out[..n]],
                        nvsp::CONTROL_CHANNEL_TYPE,
                        true,
                    );
                }
            }
            6 => {
                let which = usize::from(input.byte());
                let status = if input.byte().is_multiple_of(4) {
                    nvsp::STATUS_FAILURE
                } else {
                    nvsp::STATUS_SUCCESS
                };
                let wrong = input.byte() & 1 != 0;
                if !self.outstanding.is_empty() {
                    let o = self.outstanding[which % self.outstanding.len()].clone();
                    let channel = if wrong {
                        (o.channel + 1) % self.queue_count()
                    } else {
                        o.channel
                    };
                    let payload = NvspMessage::SendRndisPacketComplete(
                        nvsp::Message1SendRndisPacketComplete::new(status),
                    )
                    .to_vec(nvsp::PACKET_SIZE_V61);
                    self.complete(channel, o.tid, &payload);
                }
            }
            7 => {
                let mut all = self.outstanding.clone();
                if input.byte() & 1 != 0 {
                    all.reverse();
                }
                self.complete_all(&all);
            }
            8 => {
                let q = self.q(input.byte());
                let tid = input.u64();
                let len = usize::from(input.byte() % 48);
                let payload = input.bytes(len);
                self.complete(q, tid, &payload);
            }
            9 => self.host_inband(input),
            10 => self.reading = false,
            11 => self.reading = true,
            12 => {
                let q = self.q(input.byte());
                let _ = self.handle.host().side().signal_guest(q);
            }
            13 => {
                let q = self.q(input.byte());
                let index = input.u32();
                let _ = self.handle.host().corrupt_incoming(q, index);
                self.exact = false;
                self.broken = true;
            }
            14 => {
                let q = self.q(input.byte());
                let max = usize::from(input.byte() % 64) + 1;
                self.rx_burst(q, max);
            }
            15 => self.tx_burst(input),
            16 => self.held.clear(),
            17 => {
                let q = self.q(input.byte());
                self.tx_pending(q);
            }
            18 => self.check_stats(),
            // Each costs the NIC's poller window (20 ms: the control thread first trusts the
            // poller that just ran, which is this thread), so they are rare and one per input.
            _ => match input.byte() {
                REESTABLISH_KEY if !self.reestablished => self.reestablish(),
                CLOSE_KEY if !self.closed => self.close(),
                _ => self.check_stats(),
            },
        }
    }

    /// The watchdog's recovery: a new session on zeroed rings, the well-behaved host answering
    /// its handshake. Sends in flight are abandoned (`tx_failed`); staged frames stay.
    fn reestablish(&mut self) {
        if self.closed {
            let refused = self.nic.reestablish(Duration::from_secs(1));
            assert!(
                matches!(refused, Err(NicError::Closed)),
                "a closed nic re-established: {refused:?}"
            );
            self.reestablished = true;
            return;
        }
        let pending: Vec<u64> = self
            .queues
            .iter_mut()
            .map(|q| q.tx_pending() as u64)
            .collect();
        self.handle.set_responder(WellBehaved);
        let result = self.nic.reestablish(Duration::from_secs(1));
        self.handle.set_responder(Passive);
        match result {
            Ok(()) => {
                assert_eq!(usize::from(self.nic.queue_count()), self.queues.len());
                for (failed, n) in self.tx_failed.iter_mut().zip(pending) {
                    *failed += n;
                }
                self.outstanding.clear();
                self.precompleted.clear();
                self.expected_tx.iter_mut().for_each(VecDeque::clear);
                self.reestablished = true;
            }
            // Only a stalled machine makes the well-behaved host late.
            Err(_) => {
                self.broken = true;
                self.exact = false;
            }
        }
    }

    /// Closes the NIC once everything has settled, against [`Closer`], and checks the
    /// teardown the guest sent (unless the ring was corrupted or settling did not finish).
    fn close(&mut self) {
        self.drain();
        let settled = self.outstanding.is_empty() && self.handle.host().owed_completions() == 0;
        let log = Arc::new(Mutex::new(CloseLog::default()));
        self.handle.set_responder(Closer { log: log.clone() });
        let result = self.nic.close(CLOSE_TIMEOUT);
        self.closed = true;
        assert!(
            self.nic.is_closed(),
            "close returned {result:?} and left the nic open"
        );
        assert!(self.queues.iter().all(SyntheticQueue::is_closed));
        if self.broken || !settled {
            self.handle.set_responder(Passive);
            return;
        }
        match result {
            Ok(()) => {}
            // Only a stalled machine makes the host that answers at once late.
            Err(NicError::Timeout { .. }) => {
                self.handle.set_responder(Passive);
                return;
            }
            Err(e) => panic!("close against a host that answers failed: {e}"),
        }
        {
            let log = log.lock().unwrap();
            assert_eq!(
                log.steps,
                [
                    CloseStep::Filter(0),
                    CloseStep::Halt,
                    CloseStep::RevokeReceive(nvsp::RECEIVE_BUFFER_ID),
                    CloseStep::RevokeSend(nvsp::SEND_BUFFER_ID),
                ],
                "the teardown the guest sent"
            );
            assert!(log.unexpected.is_empty(), "{:?}", log.unexpected);
        }
        assert_eq!(
            self.handle.host().owed_completions(),
            0,
            "the close left transfer-page packets uncompleted"
        );
        let requests = self.nic.stats().control_requests;
        self.nic.close(CLOSE_TIMEOUT).expect("closing a closed nic");
        assert_eq!(self.nic.stats().control_requests, requests);
        assert_eq!(
            log.lock().unwrap().steps.len(),
            4,
            "the second close sent something"
        );
        self.handle.set_responder(Passive);
    }

    fn complete_all(&mut self, all: &[Outstanding]) {
        let payload = NvspMessage::SendRndisPacketComplete(
            nvsp::Message1SendRndisPacketComplete::new(nvsp::STATUS_SUCCESS),
        )
        .to_vec(nvsp::PACKET_SIZE_V61);
        for o in all {
            self.complete(o.channel, o.tid, &payload);
        }
    }

    /// The host reads and completes everything; the guest drains its rings.
    fn drain(&mut self) {
        self.reading = true;
        for _ in 0..64 {
            self.read_guest();
            let all = self.outstanding.clone();
            self.complete_all(&all);
            for q in 0..self.queue_count() {
                for _ in 0..64 {
                    self.rx_burst(q, 64);
                    self.handle.host().observe();
                    self.read_guest();
                    if self.queues[usize::from(q)].rx_caught_up() {
                        break;
                    }
                }
                self.tx_pending(q);
            }
            self.after_action();
            let host = self.handle.host();
            // A closed NIC reads nothing: what the host wrote since stays in the rings.
            let idle = (self.closed || host.owed_completions() == 0)
                && self.outstanding.is_empty()
                && (self.closed
                    || (0..self.queue_count()).all(|q| {
                        host.incoming_ring(q).is_some_and(|r| {
                            r.read_index().load(std::sync::atomic::Ordering::Acquire)
                                == r.write_index().load(std::sync::atomic::Ordering::Acquire)
                        })
                    }));
            if idle {
                break;
            }
        }
    }

    fn check_end(&mut self) {
        if self.broken {
            return;
        }
        // After a close the guest reads nothing: what the host wrote since is never completed
        // (what it owed at the close was checked there).
        if !self.closed {
            assert_eq!(
                self.handle.host().owed_completions(),
                0,
                "transfer-page packets never completed"
            );
        }
        let stats = self.nic.stats();
        for q in 0..usize::from(self.queue_count()) {
            let s = &stats.queues[q];
            assert_eq!(
                self.queues[q].tx_pending(),
                0,
                "queue {q} sends still pending"
            );
            assert!(
                self.expected_tx[q].is_empty(),
                "queue {q}: taken frames never sent"
            );
            assert_eq!(s.tx_dropped, self.tx_dropped[q], "queue {q} tx_dropped");
            assert_eq!(s.tx_failed, self.tx_failed[q], "queue {q} tx_failed");
            assert_eq!(s.rx_packets, self.delivered[q].0, "queue {q} rx_packets");
            assert_eq!(s.rx_bytes, self.delivered[q].1, "queue {q} rx_bytes");
            // Packets left in the rings a re-establish zeroed were never read.
            assert!(
                self.reestablished || s.rx_dropped_malformed >= self.malformed[q],
                "queue {q}: malformed packets not counted"
            );
            if self.exact {
                let lost = self.skipped_rx[q] + self.expected_rx[q].len() as u64;
                let counted = s.rx_dropped_overflow + s.rx_dropped_no_buffer;
                if self.reestablished {
                    assert!(
                        lost >= counted,
                        "queue {q}: more drops counted than frames lost"
                    );
                } else {
                    assert_eq!(
                        lost, counted,
                        "queue {q}: valid frames lost without being counted"
                    );
                }
            }
        }
        self.held.clear();
        let pool = self.nic.pool();
        assert_eq!(pool.available(), pool.capacity(), "pool buffers leaked");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };
    let config_byte = input.byte();
    let config = NicConfig {
        queues: 1 + u16::from(config_byte & 1),
        tx_copy_max: COPY_MAX[usize::from((config_byte >> 1) & 3)],
        pool_buffers: netvsc::nic::MIN_POOL_BUFFERS,
        control_timeout: Duration::from_secs(1),
        ..NicConfig::default()
    };
    let bus = bus_config();
    let (handle, device) = step_bus(HostIdentity::default(), &bus).expect("bus");
    let (nic, queues) = match SyntheticNic::open(Box::new(device), config.clone()) {
        Ok(opened) => opened,
        // A well-behaved host answers at once; only a stalled machine times out.
        Err(NicError::Timeout { .. }) => return,
        Err(e) => panic!("open against a well-behaved host failed: {e}"),
    };
    handle.set_responder(Passive);
    let queue_count = queues.len();
    assert_eq!(queue_count, usize::from(config.queues));
    let (sections, dma) = {
        let host = handle.host();
        let layout = host.side().layout();
        (
            (host.sendbuf().len() / host.section_size) as u32,
            (
                layout.dma_offset as u64,
                (layout.dma_offset + layout.dma_size) as u64,
            ),
        )
    };
    let mut rig = Rig {
        nic,
        queues,
        handle,
        reading: true,
        held: Vec::new(),
        seq: 0,
        max_frame: config.mtu + 18,
        sections,
        control_sections: (sections / 8).clamp(1, 4),
        dma,
        expected_rx: vec![VecDeque::new(); queue_count],
        skipped_rx: vec![0; queue_count],
        delivered: vec![(0, 0); queue_count],
        malformed: vec![0; queue_count],
        expected_tx: vec![VecDeque::new(); queue_count],
        tx_dropped: vec![0; queue_count],
        tx_failed: vec![0; queue_count],
        outstanding: Vec::new(),
        precompleted: Vec::new(),
        exact: true,
        broken: false,
        reestablished: false,
        closed: false,
    };
    // Leftovers of the handshake (the offload indication) and the guest's completions.
    rig.after_action();
    for _ in 0..MAX_ACTIONS {
        if input.data.is_empty() {
            break;
        }
        rig.act(&mut input);
        rig.after_action();
    }
    rig.drain();
    rig.check_end();
    // Every input ends with a close (dropping the NIC would close it too, but against the
    // passive host that would wait out its bound).
    if !rig.closed {
        rig.close();
    }
});
