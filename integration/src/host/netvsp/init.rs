//! NVSP message dispatch and the initialisation state machine.
//!
//! Order rules (OpenVMM's): INIT must come first (anything else first is fatal); an
//! unsupported version is answered with status NONE and the guest may retry; NDIS_CONFIG
//! (v2+) must precede SEND_RECEIVE_BUFFER; NDIS_VERSION may come at any point; every
//! duplicate is fatal. Initialisation ends when version, NDIS version, NDIS config (v2+),
//! receive and send buffers are all present, or at the first RNDIS message (which needs all
//! but the send buffer); a SEND_SEND_BUFFER after that is fatal. Only the completion-requested
//! messages are answered; NDIS_CONFIG and NDIS_VERSION get an empty completion.

use netvsc::nvsp::{self, NvspMessage};
use netvsc::vmbus::IncomingPacket;
use zerocopy::byteorder::little_endian::U32;

use super::rx::{self, ReceiveBuffer};
use super::{Fatal, NdisConfig, Session, fatal};

/// INIT_COMPLETE is 32 bytes at every version.
const INIT_COMPLETE_SIZE: usize = nvsp::INIT_COMPLETE_MESSAGE_SIZE;

impl Session {
    /// Handles one NVSP message from channel `ch`.
    pub(super) fn dispatch(
        &mut self,
        ch: u16,
        packet: &IncomingPacket,
        message: NvspMessage<'_>,
    ) -> Result<(), Fatal> {
        let tid = packet.transaction_id();
        let rc = packet.completion_requested();
        let msg_type = message.msg_type();
        let Some(version) = self.version else {
            return match message {
                NvspMessage::Init(m) if ch == 0 => {
                    self.init(tid, rc, m.protocol_version.get());
                    Ok(())
                }
                _ => fatal!("NVSP message {msg_type} before INIT"),
            };
        };
        if ch != 0 && !matches!(message, NvspMessage::SendRndisPacket(_)) {
            return fatal!("NVSP message {msg_type} on subchannel {ch}");
        }
        match message {
            NvspMessage::Init(_) => fatal!("duplicate INIT"),
            NvspMessage::SendNdisConfig(m) => {
                if version < nvsp::VERSION_2 {
                    return fatal!("NDIS_CONFIG at NVSP {version:#x}");
                }
                if self.ndis_config.is_some() || self.init_done {
                    return fatal!("duplicate NDIS_CONFIG");
                }
                let mtu = m.mtu.get();
                let mtu = if (nvsp::MIN_NDIS_CONFIG_MTU..=nvsp::MAX_NDIS_CONFIG_MTU).contains(&mtu)
                {
                    mtu
                } else {
                    nvsp::MIN_NDIS_CONFIG_MTU
                };
                self.ndis_config = Some(NdisConfig {
                    mtu,
                    capabilities: m.capabilities.get(),
                });
                self.complete(ch, tid, rc, &[]);
                self.check_init_done();
                Ok(())
            }
            NvspMessage::SendNdisVersion(m) => {
                if self.ndis_version.is_some() {
                    return fatal!("duplicate NDIS_VERSION");
                }
                self.ndis_version = Some(m.ndis_version());
                self.complete(ch, tid, rc, &[]);
                self.check_init_done();
                Ok(())
            }
            NvspMessage::SendReceiveBuffer(m) => {
                self.receive_buffer(tid, rc, m.gpadl_handle.get(), m.id.get())
            }
            NvspMessage::SendSendBuffer(m) => {
                self.send_buffer(tid, rc, m.gpadl_handle.get(), m.id.get())
            }
            NvspMessage::RevokeReceiveBuffer(m) => self.revoke_receive_buffer(m.id.get()),
            NvspMessage::RevokeSendBuffer(m) => self.revoke_send_buffer(m.id.get()),
            NvspMessage::SendRndisPacket(m) => {
                self.ensure_ready()?;
                self.rndis_packet(ch, packet, m)
            }
            NvspMessage::SwitchDataPath(m) if version >= nvsp::VERSION_4 => {
                self.ensure_ready()?;
                self.guest_switch(tid, rc, m.active_data_path.get());
                Ok(())
            }
            NvspMessage::SubchannelRequest(m) if version >= nvsp::VERSION_5 => {
                self.ensure_ready()?;
                self.subchannel_request(tid, rc, m.operation.get(), m.num_sub_channels.get());
                Ok(())
            }
            NvspMessage::OidQueryEx(_) if version >= nvsp::VERSION_5 => {
                let reply = NvspMessage::OidQueryExComplete(nvsp::Message5OidQueryExComplete {
                    status: U32::new(netvsc::rndis::STATUS_NOT_SUPPORTED),
                    bytes: U32::ZERO,
                });
                self.complete_message(ch, tid, rc, &reply);
                Ok(())
            }
            _ => fatal!("unexpected NVSP message {msg_type} at NVSP {version:#x}"),
        }
    }

    /// INIT: accept one of the known versions (unless a fault refuses it).
    fn init(&mut self, tid: u64, rc: bool, requested: u32) {
        let accepted = nvsp::is_known_version(requested) && !self.persist.faults.refuses(requested);
        let deprecated = if requested == nvsp::VERSION_1 {
            nvsp::VERSION_1
        } else {
            nvsp::INVALID_PROTOCOL_VERSION
        };
        let status = if accepted {
            nvsp::STATUS_SUCCESS
        } else {
            nvsp::STATUS_NONE
        };
        let reply = NvspMessage::InitComplete(nvsp::MessageInitComplete::new(
            deprecated,
            nvsp::MAX_MDL_CHAIN_LENGTH,
            status,
        ));
        let bytes = reply.to_vec(INIT_COMPLETE_SIZE);
        self.complete(0, tid, rc, &bytes);
        if accepted {
            self.version = Some(requested);
            self.stats
                .nvsp_version
                .store(requested, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// SEND_RECEIVE_BUFFER: one section of `mtu + 256 + 36`-byte sub-allocations.
    fn receive_buffer(&mut self, tid: u64, rc: bool, gpadl: u32, id: u16) -> Result<(), Fatal> {
        let version = self.version.unwrap_or(nvsp::VERSION_1);
        if self.recv.is_some() {
            return fatal!("duplicate SEND_RECEIVE_BUFFER");
        }
        let mtu = match self.ndis_config {
            Some(c) => c.mtu,
            None if version >= nvsp::VERSION_2 => {
                return fatal!(
                    "SEND_RECEIVE_BUFFER before NDIS_CONFIG (SendReceiveBufferMissingMTU)"
                );
            }
            None => nvsp::MIN_NDIS_CONFIG_MTU,
        };
        let Some(mem) = self.host_side.gpadl(gpadl) else {
            return fatal!("SEND_RECEIVE_BUFFER names unknown GPADL {gpadl:#x}");
        };
        let sub_allocation = mtu + rx::RX_HEADROOM + rx::RX_TAILROOM;
        let count = (mem.len() / sub_allocation as usize).min(u32::MAX as usize) as u32;
        if count < rx::CONTROL_BUFFERS + 1 {
            return fatal!(
                "receive buffer of {} bytes holds only {count} sub-allocations",
                mem.len()
            );
        }
        let queues = self.channels.len() as u16;
        self.recv = Some(ReceiveBuffer::new(mem, id, sub_allocation, count, queues));
        let section = nvsp::ReceiveBufferSection::new(0, sub_allocation, count);
        let mut bytes = vec![0u8; 64];
        let len = nvsp::encode_receive_buffer_complete(
            &mut bytes,
            nvsp::STATUS_SUCCESS,
            &[section],
            self.host_message_size(),
        )
        .unwrap_or(0);
        bytes.truncate(len);
        self.complete(0, tid, rc, &bytes);
        self.check_init_done();
        Ok(())
    }

    /// SEND_SEND_BUFFER: sections of 6144 bytes.
    fn send_buffer(&mut self, tid: u64, rc: bool, gpadl: u32, id: u16) -> Result<(), Fatal> {
        if self.send.is_some() {
            return fatal!("duplicate SEND_SEND_BUFFER");
        }
        if self.init_done {
            return fatal!("SEND_SEND_BUFFER after initialisation ended");
        }
        let Some(mem) = self.host_side.gpadl(gpadl) else {
            return fatal!("SEND_SEND_BUFFER names unknown GPADL {gpadl:#x}");
        };
        self.send = Some(mem);
        self.send_id = id;
        let reply = NvspMessage::SendSendBufferComplete(nvsp::Message1SendSendBufferComplete::new(
            nvsp::STATUS_SUCCESS,
            nvsp::SEND_SECTION_SIZE,
        ));
        self.complete_message(0, tid, rc, &reply);
        self.check_init_done();
        Ok(())
    }

    /// REVOKE_RECEIVE_BUFFER (no reply): `id` must name the session's receive buffer. From
    /// now on nothing is written into it: what waits for the guest and what comes is dropped
    /// and counted; completions of packets delivered before are still accepted. (OpenVMM tears
    /// its worker down here; this host goes on reading the guest's ring, so it sees and counts
    /// the REVOKE_SEND_BUFFER a detaching guest sends next.)
    fn revoke_receive_buffer(&mut self, id: u16) -> Result<(), Fatal> {
        let expected = match &self.recv {
            Some(recv) if !self.recv_revoked => recv.id(),
            _ => return fatal!("REVOKE_RECEIVE_BUFFER {id:#x} without a receive buffer"),
        };
        if id != expected {
            return fatal!("REVOKE_RECEIVE_BUFFER {id:#x}: the receive buffer is {expected:#x}");
        }
        self.recv_revoked = true;
        let dropped = self.switch.receive_buffer_revoked();
        // Control messages still queued would go into the buffer: they are dropped too.
        self.control_out
            .retain(|m| !matches!(m, super::OutMsg::Control(_)));
        self.control_bytes = 0;
        self.stats
            .record_teardown(crate::host::stats::TeardownStep::ReceiveBufferRevoked);
        tracing::info!(
            target: "hvnet::host",
            dropped,
            "guest revoked its receive buffer {id:#x}"
        );
        Ok(())
    }

    /// REVOKE_SEND_BUFFER (no reply): `id` must name the session's send buffer.
    fn revoke_send_buffer(&mut self, id: u16) -> Result<(), Fatal> {
        if self.send.is_none() {
            return fatal!("REVOKE_SEND_BUFFER {id:#x} without a send buffer");
        }
        if id != self.send_id {
            return fatal!(
                "REVOKE_SEND_BUFFER {id:#x}: the send buffer is {:#x}",
                self.send_id
            );
        }
        self.send = None;
        self.stats
            .record_teardown(crate::host::stats::TeardownStep::SendBufferRevoked);
        tracing::info!(target: "hvnet::host", "guest revoked its send buffer {id:#x}");
        Ok(())
    }

    fn has_init_prerequisites(&self) -> bool {
        let version = self.version.unwrap_or(nvsp::VERSION_1);
        self.ndis_version.is_some()
            && self.recv.is_some()
            && (version < nvsp::VERSION_2 || self.ndis_config.is_some())
    }

    /// Ends initialisation when everything is present.
    fn check_init_done(&mut self) {
        if !self.init_done && self.has_init_prerequisites() && self.send.is_some() {
            self.init_done = true;
        }
    }

    /// The first RNDIS (or later) message ends initialisation, with or without a send buffer.
    fn ensure_ready(&mut self) -> Result<(), Fatal> {
        if self.init_done {
            return Ok(());
        }
        if !self.has_init_prerequisites() {
            return fatal!("message before NVSP initialisation completed");
        }
        self.init_done = true;
        Ok(())
    }

    /// SUB_CHANNEL: grant `n` subchannels if `n < max_queues` and the receive buffer holds 16
    /// plus one per queue; one-shot per session.
    fn subchannel_request(&mut self, tid: u64, rc: bool, operation: u32, n: u32) {
        let max = u32::from(self.config.max_queues.min(64))
            .min(u32::from(self.host_side.layout().max_channels));
        let buffers = self.recv.as_ref().map_or(0, |r| r.count());
        let ok = operation == nvsp::SUBCHANNEL_OPERATION_ALLOCATE
            && self.subchannels_granted.is_none()
            && n < max
            && u64::from(buffers) > u64::from(rx::CONTROL_BUFFERS) + u64::from(n);
        let (status, granted) = if ok {
            (nvsp::STATUS_SUCCESS, n)
        } else {
            (nvsp::STATUS_FAILURE, 0)
        };
        let reply =
            NvspMessage::SubchannelComplete(nvsp::Message5SubchannelComplete::new(status, granted));
        self.complete_message(0, tid, rc, &reply);
        if ok {
            self.subchannels_granted = Some(n as u16);
            if n > 0
                && let Err(e) = self.host_side.offer_subchannels(n as u16)
            {
                tracing::warn!(target: "hvnet::host", "offering {n} subchannels: {e}");
            }
        }
    }
}
