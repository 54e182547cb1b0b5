//! Errors of the failover port.

use netvsc::nic::NicError;

/// Opening or driving the failover port failed.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// The configuration is invalid.
    #[error("invalid failover configuration: {0}")]
    Config(String),
    /// The synthetic NIC failed.
    #[error("synthetic NIC")]
    Nic(#[from] NicError),
    /// The control thread could not be started.
    #[error("starting the failover control thread")]
    Thread(#[source] std::io::Error),
    /// The port was closed.
    #[error("the failover port is closed")]
    Closed,
}
