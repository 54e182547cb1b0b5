//! [`NicEvent`]: what the host tells the guest unprompted, and the decoding of RNDIS status
//! indications into events.
//!
//! Events are produced by whichever thread drains a queue (a poller, or the control thread
//! when it waits) and queued, bounded, for [`next_event`](super::SyntheticNic::next_event).

use crate::rndis;

/// Something the host reported, in the order it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NicEvent {
    /// RNDIS MEDIA_CONNECT: the link came up.
    LinkUp,
    /// RNDIS MEDIA_DISCONNECT: the link went down.
    LinkDown,
    /// RNDIS NETWORK_CHANGE: the network behind the port changed (e.g. after live migration);
    /// re-run DHCP / neighbour discovery.
    NetworkChange,
    /// RNDIS LINK_SPEED_CHANGE: the new speed in bits per second (0 if the host did not say).
    LinkSpeedChange(u64),
    /// NVSP 128: a VF was offered (`allocated`) or is being removed; `serial` matches the VF's
    /// PCI slot.
    VfAssociation {
        /// Whether the VF is present.
        allocated: bool,
        /// The VF's serial number.
        serial: u32,
    },
    /// NVSP 129 from the host: the host moved the data path (to synthetic after a VF removal or
    /// a failed switch).
    HostSwitchedDataPath {
        /// Whether the data path is now on the VF.
        to_vf: bool,
    },
    /// NVSP 134: the host's send indirection table (tx hash & 15 → queue).
    IndirectionTable(Vec<u32>),
    /// RNDIS TASK_OFFLOAD_CURRENT_CONFIG: the host's offload configuration changed. Hosts
    /// send one after the handshake's offload parameters SET, so expect one soon after
    /// [`open`](super::SyntheticNic::open) and after each
    /// [`reestablish`](super::SyntheticNic::reestablish).
    OffloadConfigChanged,
    /// The channel died (corrupt ring, host closed it); control calls fail with
    /// [`NicError::ChannelDead`](super::NicError::ChannelDead) until re-established.
    ChannelDead,
}

/// The event an RNDIS INDICATE_STATUS carries, or `None` for codes without one.
pub(crate) fn indication_event(status: u32, buffer: &[u8]) -> Option<NicEvent> {
    match status {
        rndis::STATUS_MEDIA_CONNECT => Some(NicEvent::LinkUp),
        rndis::STATUS_MEDIA_DISCONNECT => Some(NicEvent::LinkDown),
        rndis::STATUS_NETWORK_CHANGE => Some(NicEvent::NetworkChange),
        rndis::STATUS_LINK_SPEED_CHANGE => {
            // The buffer holds the speed in units of 100 bit/s.
            let speed = buffer
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, |b| u64::from(u32::from_le_bytes(b)) * 100);
            Some(NicEvent::LinkSpeedChange(speed))
        }
        rndis::STATUS_TASK_OFFLOAD_CURRENT_CONFIG => Some(NicEvent::OffloadConfigChanged),
        _ => None,
    }
}
