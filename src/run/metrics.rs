//! Metrics of `hvnet run`, `hvnet demo` and `hvnet sim-host`: the `--metrics-addr` /
//! `--metrics-public` flags, and the run's own drops added to the port's sample. The mapping
//! of a failover port's counters into telemetry's model is `bond::metrics`; the catalogue and
//! the address policy are in the `telemetry` crate (docs/metrics.md).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
pub use bond::metrics::{PortLabels, port_sample, vf_driver};
use telemetry::PortSample;

use super::stats::QueueCounters;

/// The metrics flags, shared by `hvnet run` and `hvnet demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (docs/metrics.md) on HOST:PORT, any path (e.g. /metrics).
    /// PORT alone means 127.0.0.1:PORT, a HOST alone port 9464; HOST is an IP address or
    /// localhost. A wildcard address (0.0.0.0, ::) is refused without --metrics-public.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_metrics_addr)]
    pub metrics_addr: Option<SocketAddr>,

    /// Allow --metrics-addr to be a wildcard address: the counters are then served on every
    /// interface, without authentication.
    #[arg(long, requires = "metrics_addr")]
    pub metrics_public: bool,
}

fn parse_metrics_addr(s: &str) -> Result<SocketAddr, String> {
    telemetry::parse_addr(s).map_err(|e| e.to_string())
}

impl MetricsArgs {
    /// The address to serve on, the policy applied. A refused address ends the program as a
    /// usage error does (clap's `error:` line, exit status 2), before anything starts.
    pub fn checked(&self) -> Option<SocketAddr> {
        let addr = self.metrics_addr?;
        match telemetry::check_policy(addr, self.metrics_public) {
            Ok(addr) => Some(addr),
            Err(e) => {
                clap::Error::raw(clap::error::ErrorKind::ArgumentConflict, format!("{e}\n")).exit()
            }
        }
    }

    /// Installs the recorder and its listener when `--metrics-addr` was given; the address.
    pub fn serve(&self) -> anyhow::Result<Option<SocketAddr>> {
        let Some(addr) = self.checked() else {
            return Ok(None);
        };
        telemetry::endpoint::install(addr).context("starting the metrics endpoint")?;
        say!("metrics: serving on http://{addr}/metrics");
        Ok(Some(addr))
    }
}

/// Adds the run's own drops to `sample`: frames the port did not take for transmit
/// (`port_full`) and received frames the TAP device did not take (`tap_full`), per queue.
pub fn add_run_counters(sample: &mut PortSample, queues: &[Arc<QueueCounters>]) {
    for (q, counters) in sample.queues.iter_mut().zip(queues) {
        let (port_full, tap_full) = counters.app_drops();
        q.rx_dropped.push(("tap_full", tap_full));
        q.tx_dropped.push(("port_full", port_full));
    }
}
