//! A simulated host with a guest NIC opened against it: the pair every suite, benchmark,
//! example and the demo start from.

use netvsc::nic::{NicConfig, NicError, SyntheticNic, SyntheticQueue};

use crate::host::{HostConfig, HostError, SimHost};

/// Starting a rig failed.
#[derive(Debug, thiserror::Error)]
pub enum RigError {
    /// The simulated host did not start.
    #[error("starting the simulated host")]
    Host(#[source] HostError),
    /// The guest NIC did not open against it.
    #[error("opening the synthetic NIC against the simulated host")]
    Nic(#[source] NicError),
    /// The failover port did not open over the NIC.
    #[error("opening the failover port")]
    Failover(#[source] bond::FailoverError),
}

/// The simulated host, the guest's control handle and its queues.
#[derive(Debug)]
pub struct SyntheticRig {
    // Fields drop in this order: the queues and the NIC (whose drop closes it against the
    // host) before the host.
    /// One queue handle per channel, in channel order.
    pub queues: Vec<SyntheticQueue>,
    /// The guest NIC's control handle.
    pub nic: SyntheticNic,
    /// The simulated host's control handle.
    pub host: SimHost,
}

impl SyntheticRig {
    /// Starts a host with `host` and opens a NIC with `nic` against it.
    pub fn start(host: HostConfig, nic: NicConfig) -> Result<Self, RigError> {
        let (host, device) = SimHost::start(host).map_err(RigError::Host)?;
        let (nic, queues) = SyntheticNic::open(Box::new(device), nic).map_err(RigError::Nic)?;
        Ok(Self { host, nic, queues })
    }
}
