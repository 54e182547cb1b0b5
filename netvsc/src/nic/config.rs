//! [`NicConfig`]: what the guest asks for when it opens the synthetic NIC.

use std::time::Duration;

use crate::nvsp;

use super::error::NicError;

/// Smallest L3 MTU the NIC accepts (the IPv4 minimum datagram size).
pub const MIN_MTU: usize = 576;
/// Largest L3 MTU the NIC accepts (jumbo frames; the host's NDIS_CONFIG limit is 9216 − 14).
pub const MAX_MTU: usize = 9000;
/// Most queues (VMBus channels) a NIC can have (`VRSS_CHANNEL_MAX`).
pub const MAX_QUEUES: u16 = 64;
/// Fewest pool buffers the NIC accepts.
pub const MIN_POOL_BUFFERS: usize = 64;
/// Default copy threshold: a full standard Ethernet frame (1514 bytes).
pub const DEFAULT_TX_COPY_MAX: usize = 1514;
/// Longest `control_timeout` the NIC accepts: an hour. A host that has not answered one
/// control request in that long is gone; a larger bound only delays the watchdog (and an
/// unbounded one would not fit an `Instant`).
pub const MAX_CONTROL_TIMEOUT: Duration = Duration::from_secs(3600);
/// The bound of the close a [`SyntheticNic`](super::SyntheticNic) does when it is dropped
/// open: long enough for a healthy host (it answers each step in milliseconds), short enough
/// that a dead or silent one does not hold the program up (DPDK lingers 200 ms for the same
/// reason).
pub const CLOSE_ON_DROP_TIMEOUT: Duration = Duration::from_millis(250);

/// How the synthetic NIC is opened.
///
/// `tx_copy_max` picks the transmit path per frame: frames up to this many bytes are copied,
/// with their RNDIS header, into a send-buffer section (one copy, the pool buffer is free at
/// once); larger frames go GPA direct (zero copy; the buffer is held until the host completes
/// the send). The default, 1514, copies every standard-MTU frame — copying 1.5 KB costs less
/// than holding the buffer and describing its pages — and sends jumbo frames zero-copy. Frames
/// that do not fit a section always go GPA direct, and small frames fall back to GPA direct when
/// the queue has no free section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicConfig {
    /// L3 MTU (576..=9000, default 1500). The frame size is `mtu + 14`.
    pub mtu: usize,
    /// Queues (VMBus channels) wanted, 1..=64 (default 1). The host may grant fewer.
    pub queues: u16,
    /// Highest NVSP version to offer (default 0x60001); lower versions are tried in turn.
    pub max_nvsp_version: u32,
    /// Advertise SR-IOV in NDIS_CONFIG (NVSP 5+), so the host offers a VF (default true).
    pub sriov: bool,
    /// Buffers in the packet pool shared by receive and transmit (default 4096).
    pub pool_buffers: usize,
    /// Bound on every control request during [`open`](super::SyntheticNic::open) (default 5 s;
    /// more than zero and at most [`MAX_CONTROL_TIMEOUT`]).
    pub control_timeout: Duration,
    /// Largest frame copied into a send-buffer section; larger ones go GPA direct (default
    /// 1514, see the type docs).
    pub tx_copy_max: usize,
    /// RNDIS packet filter set at the end of the handshake (default 0x0D: directed, all
    /// multicast, broadcast).
    pub packet_filter: u32,
}

impl Default for NicConfig {
    fn default() -> Self {
        Self {
            mtu: 1500,
            queues: 1,
            max_nvsp_version: nvsp::VERSION_61,
            sriov: true,
            pool_buffers: 4096,
            control_timeout: Duration::from_secs(5),
            tx_copy_max: DEFAULT_TX_COPY_MAX,
            packet_filter: crate::rndis::DEFAULT_PACKET_FILTER,
        }
    }
}

impl NicConfig {
    /// Checks every field's range; the error names the field, its value and the range
    /// accepted.
    pub fn validate(&self) -> Result<(), NicError> {
        let bad = |what: String| Err(NicError::Config(what));
        if !(MIN_MTU..=MAX_MTU).contains(&self.mtu) {
            return bad(format!("mtu {} is outside {MIN_MTU}..={MAX_MTU}", self.mtu));
        }
        if !(1..=MAX_QUEUES).contains(&self.queues) {
            return bad(format!(
                "queues {} is outside 1..={MAX_QUEUES}",
                self.queues
            ));
        }
        if self.versions().next().is_none() {
            return bad(format!(
                "max_nvsp_version {:#x} is below the lowest nvsp version {:#x}",
                self.max_nvsp_version,
                nvsp::VERSION_1
            ));
        }
        if self.pool_buffers < MIN_POOL_BUFFERS {
            return bad(format!(
                "pool_buffers {} is below the minimum of {MIN_POOL_BUFFERS}",
                self.pool_buffers
            ));
        }
        if self.control_timeout.is_zero() || self.control_timeout > MAX_CONTROL_TIMEOUT {
            return bad(format!(
                "control_timeout {:?} is outside (0s, {MAX_CONTROL_TIMEOUT:?}]",
                self.control_timeout
            ));
        }
        if self.packet_filter == 0 {
            return bad("packet_filter 0 receives nothing".into());
        }
        Ok(())
    }

    /// The NVSP versions to try, highest first.
    pub(crate) fn versions(&self) -> impl Iterator<Item = u32> + '_ {
        nvsp::VERSIONS
            .into_iter()
            .filter(|&v| v <= self.max_nvsp_version)
    }

    /// Largest frame the NIC sends or receives: the MTU plus the Ethernet header and an
    /// in-band 802.1Q tag.
    pub(crate) fn max_frame(&self) -> usize {
        self.mtu + 14 + 4
    }
}
