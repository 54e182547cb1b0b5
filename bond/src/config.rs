//! [`FailoverConfig`]: every bound the failover port waits under, with production defaults.

use std::time::Duration;

/// How long the failover port waits for each step, and how often it checks on the host.
///
/// Every wait of DESIGN §4 has a bound here; when one runs out the port falls back to the
/// synthetic path, counts it and logs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    /// How long to look for the VF's PCI device after the host associated it (NVSP 128).
    /// Azure offers the device about 1 s after the association; MANA probes can take much
    /// longer, so the default is generous.
    pub vf_appear_timeout: Duration,
    /// Pause between two looks for the VF's device, and before retrying a failed open.
    pub vf_probe_interval: Duration,
    /// How long a VF may take to come back from a PF reset (on the port's clock) before the
    /// port gives it up and releases it.
    pub vf_reset_timeout: Duration,
    /// Bound of one NVSP request (the data-path switch) and of its completion.
    pub switch_timeout: Duration,
    /// How long pollers may take to acknowledge a new path (one burst each, normally).
    pub ack_timeout: Duration,
    /// How long pollers may take to drain the VF's receive rings after a planned switch back.
    pub drain_timeout: Duration,
    /// How long the VF may take to send what it accepted before it is stopped.
    pub vf_stop_timeout: Duration,
    /// How long a poller holds transmit back so the old path empties first (order across a
    /// switch); after it, frames go out on the new path anyway and the wait is counted.
    pub tx_order_timeout: Duration,
    /// Period of the watchdog's RNDIS keepalive.
    pub watchdog_interval: Duration,
    /// Bound of the keepalive, and of re-establishing the session after it failed.
    pub watchdog_timeout: Duration,
    /// How long the control thread sleeps at most between two looks at its inputs.
    pub tick: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            vf_appear_timeout: Duration::from_secs(120),
            vf_probe_interval: Duration::from_millis(100),
            vf_reset_timeout: Duration::from_secs(30),
            switch_timeout: Duration::from_secs(5),
            ack_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(1),
            vf_stop_timeout: Duration::from_secs(1),
            tx_order_timeout: Duration::from_millis(100),
            watchdog_interval: Duration::from_secs(2),
            watchdog_timeout: Duration::from_secs(5),
            tick: Duration::from_millis(1),
        }
    }
}

impl FailoverConfig {
    /// Rejects zero bounds that would make a wait meaningless.
    pub fn validate(&self) -> Result<(), crate::FailoverError> {
        let checks = [
            ("switch_timeout", self.switch_timeout),
            ("ack_timeout", self.ack_timeout),
            ("watchdog_interval", self.watchdog_interval),
            ("watchdog_timeout", self.watchdog_timeout),
            ("tick", self.tick),
        ];
        for (name, value) in checks {
            if value.is_zero() {
                return Err(crate::FailoverError::Config(format!("{name} is zero")));
            }
        }
        Ok(())
    }
}
