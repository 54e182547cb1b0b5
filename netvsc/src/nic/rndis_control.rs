//! RNDIS control requests over the control engine: INITIALIZE, QUERY, SET, KEEPALIVE. Each
//! waits for its reply (matched by request id) and checks the reply's type and status.

use crate::rndis::{self, RndisMessage};

use super::control::Bound;
use super::error::NicError;
use super::shared::NicShared;

/// What RNDIS INITIALIZE_CMPLT told the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RndisDevice {
    /// Most PACKET messages per send.
    pub max_packets_per_message: u32,
    /// Alignment of aggregated packets, log2.
    pub packet_alignment_factor: u32,
}

fn protocol(what: &'static str, msg_type: u32) -> NicError {
    NicError::Protocol {
        queue: 0,
        msg_type,
        reason: format!("unexpected rndis reply to {what}"),
    }
}

fn parse<'a>(what: &'static str, bytes: &'a [u8]) -> Result<(RndisMessage, &'a [u8]), NicError> {
    RndisMessage::parse(bytes)
        .map(|m| (m, bytes))
        .map_err(|source| NicError::Rndis {
            what,
            request_id: 0,
            source,
        })
}

fn check_status(what: &'static str, status: u32) -> Result<(), NicError> {
    if status == rndis::STATUS_SUCCESS {
        Ok(())
    } else {
        Err(NicError::HostRefused { what, status })
    }
}

impl NicShared {
    /// RNDIS INITIALIZE (1.0, max transfer 0x4000).
    pub(crate) fn rndis_initialize(&self, bound: Bound) -> Result<RndisDevice, NicError> {
        const WHAT: &str = "rndis initialize";
        let reply = self.rndis_request(bound, WHAT, |out, id| {
            rndis::encode_initialize(out, id, rndis::GUEST_MAX_TRANSFER_SIZE)
        })?;
        match parse(WHAT, &reply)?.0 {
            RndisMessage::InitializeComplete(c) => {
                check_status(WHAT, c.status.get())?;
                Ok(RndisDevice {
                    max_packets_per_message: c.max_packets_per_message.get(),
                    packet_alignment_factor: c.packet_alignment_factor.get(),
                })
            }
            other => Err(protocol(WHAT, other.msg_type())),
        }
    }

    /// RNDIS QUERY of `oid` with `input`; returns the information buffer.
    pub(crate) fn rndis_query(
        &self,
        oid: u32,
        input: &[u8],
        bound: Bound,
        what: &'static str,
    ) -> Result<Vec<u8>, NicError> {
        let reply = self.rndis_request(bound, what, |out, id| {
            rndis::encode_query(out, id, oid, input)
        })?;
        let (message, bytes) = parse(what, &reply)?;
        match message {
            RndisMessage::QueryComplete(c) => {
                check_status(what, c.status)?;
                Ok(c.info.get(bytes).unwrap_or_default().to_vec())
            }
            other => Err(protocol(what, other.msg_type())),
        }
    }

    /// RNDIS SET of `oid` to `value`.
    pub(crate) fn rndis_set(
        &self,
        oid: u32,
        value: &[u8],
        bound: Bound,
        what: &'static str,
    ) -> Result<(), NicError> {
        let reply = self.rndis_request(bound, what, |out, id| {
            rndis::encode_set(out, id, oid, value)
        })?;
        match parse(what, &reply)?.0 {
            RndisMessage::SetComplete(c) => check_status(what, c.status.get()),
            other => Err(protocol(what, other.msg_type())),
        }
    }

    /// RNDIS KEEPALIVE.
    pub(crate) fn rndis_keepalive(&self, bound: Bound) -> Result<(), NicError> {
        const WHAT: &str = "rndis keepalive";
        let reply = self.rndis_request(bound, WHAT, rndis::encode_keepalive)?;
        match parse(WHAT, &reply)?.0 {
            RndisMessage::KeepaliveComplete(c) => check_status(WHAT, c.status.get()),
            other => Err(protocol(WHAT, other.msg_type())),
        }
    }

    /// A query whose answer is a little-endian `u32`.
    pub(crate) fn rndis_query_u32(
        &self,
        oid: u32,
        bound: Bound,
        what: &'static str,
    ) -> Result<u32, NicError> {
        let info = self.rndis_query(oid, &[], bound, what)?;
        info.get(..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| NicError::Protocol {
                queue: 0,
                msg_type: rndis::MESSAGE_TYPE_QUERY_CMPLT,
                reason: format!("{what}: answer of {} bytes, expected 4", info.len()),
            })
    }
}
