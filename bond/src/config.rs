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
    /// A queue whose poller starts no burst for this long while the control thread waits for
    /// it counts as not polled, and is not waited for (a queue never polled is not waited for
    /// at all). A poller the scheduler sets aside for longer than this during a switch can
    /// see frames from both sides of it out of order; raise it on a heavily loaded machine.
    pub idle_queue: Duration,
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
            idle_queue: Duration::from_millis(50),
        }
    }
}

/// The longest any bound may be: an hour. A longer wait is a configuration mistake, and
/// bounds this size keep every deadline the port computes far inside what an `Instant` holds.
pub const MAX_BOUND: Duration = Duration::from_secs(3600);

impl FailoverConfig {
    /// Every bound with its name, for validation and messages.
    fn bounds(&self) -> [(&'static str, Duration); 12] {
        [
            ("vf_appear_timeout", self.vf_appear_timeout),
            ("vf_probe_interval", self.vf_probe_interval),
            ("vf_reset_timeout", self.vf_reset_timeout),
            ("switch_timeout", self.switch_timeout),
            ("ack_timeout", self.ack_timeout),
            ("drain_timeout", self.drain_timeout),
            ("vf_stop_timeout", self.vf_stop_timeout),
            ("tx_order_timeout", self.tx_order_timeout),
            ("watchdog_interval", self.watchdog_interval),
            ("watchdog_timeout", self.watchdog_timeout),
            ("tick", self.tick),
            ("idle_queue", self.idle_queue),
        ]
    }

    /// Rejects zero bounds that would make a wait meaningless, and any bound above
    /// [`MAX_BOUND`]; the error names the field, its value and what is accepted.
    pub fn validate(&self) -> Result<(), crate::FailoverError> {
        const NONZERO: [&str; 5] = [
            "switch_timeout",
            "ack_timeout",
            "watchdog_interval",
            "watchdog_timeout",
            "tick",
        ];
        for (name, value) in self.bounds() {
            let low = if NONZERO.contains(&name) {
                "(0s"
            } else {
                "[0s"
            };
            if value > MAX_BOUND || (value.is_zero() && NONZERO.contains(&name)) {
                return Err(crate::FailoverError::Config(format!(
                    "{name} {value:?} is outside {low}, {MAX_BOUND:?}]"
                )));
            }
        }
        Ok(())
    }

    /// How long [`FailoverPort::close`](crate::FailoverPort::close) waits for the control
    /// thread: the longest step it can be in (re-establishing the session, or a VF probe)
    /// followed by the planned leave it does on the way out, each wait at its bound, doubled
    /// for a loaded machine.
    pub(crate) fn close_bound(&self) -> Duration {
        let step = self.watchdog_timeout.max(self.vf_probe_interval) + self.switch_timeout;
        let leave = 3 * self.ack_timeout
            + 2 * self.drain_timeout
            + self.switch_timeout
            + self.vf_stop_timeout;
        2 * (step + leave + self.tick) + Duration::from_secs(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        FailoverConfig::default().validate().unwrap();
    }

    #[test]
    fn a_zero_bound_where_one_is_needed_is_refused_by_name() {
        let config = FailoverConfig {
            ack_timeout: Duration::ZERO,
            ..FailoverConfig::default()
        };
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("ack_timeout 0ns is outside (0s, 3600s]"),
            "{message}"
        );
        let config = FailoverConfig {
            vf_probe_interval: Duration::ZERO,
            ..FailoverConfig::default()
        };
        config
            .validate()
            .expect("probing without a pause is allowed");
    }

    #[test]
    fn a_bound_too_long_is_refused_by_name_and_value() {
        for field in 0..12 {
            let mut config = FailoverConfig::default();
            let huge = Duration::from_secs(u64::MAX);
            let name = {
                let slots: [&mut Duration; 12] = [
                    &mut config.vf_appear_timeout,
                    &mut config.vf_probe_interval,
                    &mut config.vf_reset_timeout,
                    &mut config.switch_timeout,
                    &mut config.ack_timeout,
                    &mut config.drain_timeout,
                    &mut config.vf_stop_timeout,
                    &mut config.tx_order_timeout,
                    &mut config.watchdog_interval,
                    &mut config.watchdog_timeout,
                    &mut config.tick,
                    &mut config.idle_queue,
                ];
                *slots.into_iter().nth(field).unwrap() = huge;
                FailoverConfig::default().bounds()[field].0
            };
            let message = config.validate().unwrap_err().to_string();
            for part in [name, "18446744073709551615s", "3600s]"] {
                assert!(message.contains(part), "{part:?} missing from {message:?}");
            }
        }
    }

    #[test]
    fn the_close_bound_fits_the_longest_bounds() {
        let config = FailoverConfig {
            vf_appear_timeout: MAX_BOUND,
            vf_probe_interval: MAX_BOUND,
            vf_reset_timeout: MAX_BOUND,
            switch_timeout: MAX_BOUND,
            ack_timeout: MAX_BOUND,
            drain_timeout: MAX_BOUND,
            vf_stop_timeout: MAX_BOUND,
            tx_order_timeout: MAX_BOUND,
            watchdog_interval: MAX_BOUND,
            watchdog_timeout: MAX_BOUND,
            tick: MAX_BOUND,
            idle_queue: MAX_BOUND,
        };
        config.validate().unwrap();
        assert!(config.close_bound() > 8 * MAX_BOUND);
    }
}
