//! Guest sends: NVSP 107 with the RNDIS message(s) in a send-buffer section or in GPA-direct
//! ranges.
//!
//! A send names either a section (`index * 6144`, `size` bytes, which may run past one
//! section but must lie inside the buffer, or the worker dies) or `0xFFFFFFFF` with GPA-direct
//! ranges (read through guest memory, GPA = memfd offset). Control messages (INITIALIZE, QUERY,
//! …) go to [`rndis`](super::rndis); data is one or more concatenated PACKET_MSGs, each
//! forwarded to the vSwitch. Every send is completed with `{108, SUCCESS | FAILURE}` (padded
//! to the session's size) before any RNDIS reply. Bad data packets — empty frame, OOB data, a
//! VC handle, malformed PPIs, a bad TCP header offset, unreadable GPA, the RNDIS header split
//! across GPA ranges — get FAILURE and the channel stays alive. The host completes each send
//! as soon as it has copied it, so at most one send per channel is ever outstanding (well
//! under OpenVMM's quota of 1024).

use netvsc::nvsp::{self, NvspMessage};
use netvsc::rndis::{self, Messages, RndisMessage, RndisPacket};
use netvsc::vmbus::{IncomingKind, IncomingPacket};
use packet::PAGE_SIZE;

use super::{Fatal, Session, fatal};
use crate::host::faults::CompletionPlan;
use crate::host::stats::bump;

/// What became of a send, for its completion.
pub(super) enum SendOutcome {
    /// Completed with this NVSP status.
    Status(u32),
    /// Completed with this status, then the worker dies with this reason.
    StatusThenFatal(u32, String),
}

impl Session {
    /// NVSP 107 from the guest on channel `ch`.
    pub(super) fn rndis_packet(
        &mut self,
        ch: u16,
        packet: &IncomingPacket,
        m: nvsp::Message1SendRndisPacket,
    ) -> Result<(), Fatal> {
        let index = m.send_buffer_section_index.get();
        let size = m.send_buffer_section_size.get();
        let mut bytes = std::mem::take(&mut self.scratch);
        // The bytes of this send: `bytes[..used]` (the buffer keeps its length between sends,
        // so a section's bytes are copied into it without zeroing it first).
        let mut used = 0;
        let header_limit = if index != nvsp::NO_SEND_SECTION {
            let Some(send) = &self.send else {
                self.scratch = bytes;
                return fatal!("send through section {index} without a send buffer");
            };
            let start = u64::from(index) * u64::from(nvsp::SEND_SECTION_SIZE);
            let end = start + u64::from(size);
            if end > send.len() as u64 {
                self.scratch = bytes;
                return fatal!("send section {index} (+{size} bytes) outside the send buffer");
            }
            used = size as usize;
            if bytes.len() < used {
                bytes.resize(used, 0);
            }
            if send.read(start as usize, &mut bytes[..used]).is_err() {
                self.scratch = bytes;
                return fatal!("send section {index} unreadable");
            }
            Some(used)
        } else if packet.kind() == IncomingKind::GpaDirect {
            bytes.clear();
            let first = self.read_gpa(packet, &mut bytes);
            used = bytes.len();
            first
        } else {
            None
        };
        let outcome = match header_limit {
            Some(first_range) => self.process_rndis(ch, &bytes[..used], first_range),
            None => SendOutcome::Status(nvsp::STATUS_FAILURE),
        };
        self.scratch = bytes;
        bump(&self.stats.tx_sends, 1);
        let (status, then) = match outcome {
            SendOutcome::Status(s) => (s, None),
            SendOutcome::StatusThenFatal(s, reason) => (s, Some(reason)),
        };
        self.complete_send(
            ch,
            packet.transaction_id(),
            packet.completion_requested(),
            status,
        );
        match then {
            Some(reason) => Err(Fatal(reason)),
            None => Ok(()),
        }
    }

    /// Writes a send completion, subject to the armed completion faults.
    fn complete_send(&mut self, ch: u16, tid: u64, rc: bool, status: u32) {
        if status != nvsp::STATUS_SUCCESS {
            bump(&self.stats.tx_failed, 1);
        }
        if !rc {
            return;
        }
        let reply = NvspMessage::SendRndisPacketComplete(
            nvsp::Message1SendRndisPacketComplete::new(status),
        )
        .to_vec(self.host_message_size());
        match self.persist.faults.next_completion() {
            CompletionPlan::Normal => self.complete(ch, tid, true, &reply),
            CompletionPlan::Drop => {
                bump(&self.stats.tx_completions_dropped, 1);
                return;
            }
            CompletionPlan::Duplicate => {
                self.complete(ch, tid, true, &reply);
                self.complete(ch, tid, true, &reply);
            }
            CompletionPlan::WrongTid(wrong) => self.complete(ch, wrong, true, &reply),
        }
        bump(&self.stats.tx_completions, 1);
    }

    /// Copies the GPA-direct ranges into `out`; returns the length of the first range (the
    /// RNDIS header and PPIs must lie in it), or `None` if a range is unreadable.
    fn read_gpa(&self, packet: &IncomingPacket, out: &mut Vec<u8>) -> Option<usize> {
        let mem = self.host_side.memory();
        let mut first = None;
        for range in packet.gpa_ranges() {
            let mut remaining = range.byte_count as usize;
            let mut in_page = range.byte_offset as usize;
            for &pfn in range.pfns {
                if remaining == 0 {
                    break;
                }
                let chunk = remaining.min(PAGE_SIZE - in_page);
                let gpa = usize::try_from(pfn)
                    .ok()?
                    .checked_mul(PAGE_SIZE)?
                    .checked_add(in_page)?;
                let start = out.len();
                out.resize(start + chunk, 0);
                mem.read(gpa, &mut out[start..]).ok()?;
                remaining -= chunk;
                in_page = 0;
            }
            if remaining != 0 {
                return None;
            }
            first.get_or_insert(out.len());
        }
        first
    }

    /// Processes the RNDIS bytes of one send. `first_range` bounds where the first message's
    /// header and PPIs may lie.
    fn process_rndis(&mut self, ch: u16, bytes: &[u8], first_range: usize) -> SendOutcome {
        let mut messages = Messages::new(bytes);
        let Some(first) = messages.next() else {
            return SendOutcome::Status(nvsp::STATUS_FAILURE);
        };
        let Ok((_, first_bytes)) = first else {
            return SendOutcome::Status(nvsp::STATUS_FAILURE);
        };
        let first_type = u32::from_le_bytes([
            first_bytes[0],
            first_bytes[1],
            first_bytes[2],
            first_bytes[3],
        ]);
        if first_type != rndis::MESSAGE_TYPE_PACKET_MSG {
            if ch != 0 {
                return SendOutcome::StatusThenFatal(
                    nvsp::STATUS_SUCCESS,
                    format!("RNDIS control message on subchannel {ch}"),
                );
            }
            return self.rndis_control(first_bytes);
        }
        let mut status = nvsp::STATUS_SUCCESS;
        for (i, item) in std::iter::once(first).chain(messages).enumerate() {
            let Ok((offset, msg)) = item else {
                status = nvsp::STATUS_FAILURE;
                break;
            };
            let parsed = match RndisMessage::parse(msg) {
                Ok(RndisMessage::Packet(p)) => p,
                _ => {
                    status = nvsp::STATUS_FAILURE;
                    break;
                }
            };
            let header_end = rndis::PACKET_MESSAGE_SIZE + parsed.info.len();
            if i == 0 && offset + header_end > first_range {
                status = nvsp::STATUS_FAILURE;
                break;
            }
            if !self.forward(ch, msg, &parsed) {
                status = nvsp::STATUS_FAILURE;
                break;
            }
        }
        SendOutcome::Status(status)
    }

    /// Checks one data packet and hands its frame to the vSwitch; `false` if it is bad.
    fn forward(&mut self, ch: u16, msg: &[u8], packet: &RndisPacket) -> bool {
        if packet.oob.is_some() || packet.vc_handle != 0 {
            return false;
        }
        let Some(frame) = packet.frame.get(msg) else {
            return false;
        };
        let tcp_offset_ok = |offset: u16| usize::from(offset) + 20 <= frame.len();
        if let Some(csum) = packet.info.tx_checksum()
            && csum.tcp_checksum()
            && !tcp_offset_ok(csum.tcp_header_offset())
        {
            return false;
        }
        if let Some(lso) = packet.info.lso
            && !tcp_offset_ok(lso.tcp_header_offset())
        {
            return false;
        }
        bump(&self.stats.tx_packets, 1);
        self.switch
            .transmitted(ch, frame, packet.info.ieee8021q.map(|v| v.0));
        true
    }
}
