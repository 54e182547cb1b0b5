//! Replaying recorded host packets through the NIC's receive dispatch, for tests.
//!
//! [`classify_host_packet`] frames one raw host→guest packet (descriptor, type-specific
//! header, payload: what a transcript records) into a ring, reads it back with
//! [`IncomingRing`] exactly as a queue does, places the given receive-buffer bytes, and runs
//! the queue's dispatch over it with a sink that records what the NIC would do. Nothing is
//! sent anywhere. Not part of the stable API.

use std::sync::atomic::Ordering;

use packet::{PAGE_SIZE, Pool, SharedMemory};

use crate::nvsp::NvspMessage;
use crate::rndis::RndisMessage;
use crate::vmbus::ring::RING_HEADER_SIZE;
use crate::vmbus::{IncomingPacket, IncomingRing, RingMemory};

use super::NicEvent;
use super::error::NicError;
use super::rx::{HostSink, ReceiveBuffer, RxBuffers, RxEnv, RxScratch, dispatch};

/// What the NIC would do with one host packet (one entry per finding, in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostAction {
    /// A completion of the guest request `tid`, carrying an NVSP message of `msg_type` with
    /// `status` (both `None` for an empty completion, as SWITCH_DATA_PATH's).
    Completion {
        /// Transaction id.
        tid: u64,
        /// NVSP message type of the payload.
        msg_type: Option<u32>,
        /// The status field, for completion types that have one.
        status: Option<u32>,
    },
    /// An event for [`next_event`](super::SyntheticNic::next_event).
    Event(NicEvent),
    /// An RNDIS status indication without an event (unknown code).
    Indication {
        /// The indication code.
        status: u32,
    },
    /// A received frame.
    Frame {
        /// The frame bytes.
        bytes: Vec<u8>,
        /// VLAN tag from the 802.1Q PPI.
        vlan_tci: Option<u16>,
    },
    /// An RNDIS control reply for request `request_id`.
    RndisResponse {
        /// The request id it answers.
        request_id: u32,
        /// Its RNDIS message type.
        msg_type: u32,
    },
    /// A message dropped as malformed.
    Malformed {
        /// Why.
        reason: &'static str,
    },
    /// A frame dropped for lack of a pool buffer.
    NoBuffer,
    /// A well-formed message of a type the NIC ignores.
    Ignored {
        /// Its NVSP or RNDIS type.
        msg_type: u32,
    },
    /// The transfer-page packet is completed with NVSP 108 under this tid.
    CompleteReceive {
        /// Transaction id.
        tid: u64,
    },
}

#[derive(Default)]
struct Recorder {
    actions: Vec<HostAction>,
}

/// The status field of an NVSP completion message, where it has one.
fn completion_status(msg: &NvspMessage<'_>) -> Option<u32> {
    match msg {
        NvspMessage::InitComplete(m) => Some(m.status.get()),
        NvspMessage::SendReceiveBufferComplete(v) => Some(v.status()),
        NvspMessage::SendSendBufferComplete(m) => Some(m.status.get()),
        NvspMessage::SendRndisPacketComplete(m) => Some(m.status.get()),
        NvspMessage::OidQueryExComplete(m) => Some(m.status.get()),
        NvspMessage::SubchannelComplete(m) => Some(m.status.get()),
        _ => None,
    }
}

impl HostSink for Recorder {
    fn frame(&mut self, packet: packet::Packet) {
        self.actions.push(HostAction::Frame {
            bytes: packet.data().to_vec(),
            vlan_tci: packet.meta.vlan_tci,
        });
    }

    fn completion(&mut self, tid: u64, payload: &[u8]) {
        let parsed = NvspMessage::parse(payload).ok();
        self.actions.push(HostAction::Completion {
            tid,
            msg_type: parsed.as_ref().map(NvspMessage::msg_type),
            status: parsed.as_ref().and_then(completion_status),
        });
    }

    fn rndis_response(&mut self, request_id: u32, message: &RndisMessage, _bytes: &[u8]) {
        self.actions.push(HostAction::RndisResponse {
            request_id,
            msg_type: message.msg_type(),
        });
    }

    fn indication(&mut self, status: u32, event: Option<NicEvent>) {
        self.actions.push(match event {
            Some(event) => HostAction::Event(event),
            None => HostAction::Indication { status },
        });
    }

    fn event(&mut self, event: NicEvent) {
        self.actions.push(HostAction::Event(event));
    }

    fn malformed(&mut self, reason: &'static str) {
        self.actions.push(HostAction::Malformed { reason });
    }

    fn no_buffer(&mut self) {
        self.actions.push(HostAction::NoBuffer);
    }

    fn unknown_message(&mut self, msg_type: u32) {
        self.actions.push(HostAction::Ignored { msg_type });
    }
}

fn pages(len: usize) -> usize {
    len.max(1).next_multiple_of(PAGE_SIZE)
}

/// Classifies one raw host→guest packet (`raw` = descriptor + type-specific header +
/// payload, a multiple of 8 bytes), with `rxbuf` = `(byte_offset, bytes)` pieces of the
/// receive buffer, at NVSP version `nvsp_version`. Errors are what the ring reader reports
/// for a packet it cannot frame or parse.
pub fn classify_host_packet(
    raw: &[u8],
    rxbuf: &[(u32, &[u8])],
    nvsp_version: u32,
) -> Result<Vec<HostAction>, NicError> {
    let ring_err = |source| NicError::Ring { queue: 0, source };
    // A ring just big enough: the packet, its trailer, and one free byte-slot.
    let data = pages(raw.len() + 16);
    let ring_mem = SharedMemory::anonymous(RING_HEADER_SIZE + data)?;
    let mut framed = raw.to_vec();
    framed.resize(raw.len().next_multiple_of(8), 0);
    framed.extend_from_slice(&0u64.to_le_bytes());
    ring_mem.write(RING_HEADER_SIZE, &framed)?;
    let ring = RingMemory::new(ring_mem.clone()).map_err(ring_err)?;
    ring.write_index()
        .store(framed.len() as u32, Ordering::Release);
    let mut incoming = IncomingRing::new(ring_mem).map_err(ring_err)?;
    let mut pkt = IncomingPacket::new();
    if !incoming.read(&mut pkt).map_err(ring_err)? {
        return Ok(Vec::new());
    }

    let end = rxbuf
        .iter()
        .map(|(offset, bytes)| *offset as usize + bytes.len())
        .max()
        .unwrap_or(0);
    let buffer = SharedMemory::anonymous(pages(end))?;
    for (offset, bytes) in rxbuf {
        buffer.write(*offset as usize, bytes)?;
    }
    let pool = Pool::new(SharedMemory::anonymous(16 * 16384)?, 16384)?;
    let mut buffers = RxBuffers::default();
    let mut env = RxEnv {
        rxbuf: Some(ReceiveBuffer::new(&buffer)),
        pool: &pool,
        buffers: &mut buffers,
        queue: 0,
        nvsp_version,
        max_frame: super::config::MAX_MTU + 18,
    };
    let mut recorder = Recorder::default();
    let mut scratch = RxScratch::default();
    if let Some(tid) = dispatch(&pkt, &mut env, &mut scratch, &mut recorder) {
        recorder.actions.push(HostAction::CompleteReceive { tid });
    }
    Ok(recorder.actions)
}
