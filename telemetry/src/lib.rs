//! Metrics for operators: what hvnet counts, exported for Prometheus.
//!
//! Modules:
//! - [`catalogue`]: every metric (name, type, unit, help, labels) in one table, the source of
//!   `docs/metrics.md` ([`catalogue::markdown`]);
//! - [`model`]: the neutral data the program fills from its ports ([`PortSample`]: per-queue
//!   counters by path, drops by reason, the data path, links, the VF, switches, errors) and the
//!   [`Emitter`] that turns it into `metrics` calls; [`record_failover`] and
//!   [`record_failback`] for the duration histograms;
//! - [`publisher`]: the thread that samples the ports every period ([`Publisher`]);
//! - [`endpoint`]: the listen-address policy (loopback by default, a wildcard only when
//!   public) and the recorder with its HTTP listener;
//! - [`exposition`]: the text exposition read back (`hvnet stats`).
//!
//! The pollers never call `metrics`: they keep plain per-queue counters that the publisher's
//! sample closure reads (DESIGN §3). This crate depends on no other hvnet crate; the program
//! maps its own types into [`model`].

pub mod catalogue;
pub mod endpoint;
pub mod exposition;
pub mod model;
pub mod publisher;

pub use endpoint::{EndpointError, check_policy, parse_addr};
pub use model::{
    ByPath, Emitter, Path, PortCounters, PortSample, PortState, QueueSample, VfInfo,
    record_failback, record_failover,
};
pub use publisher::{Publisher, PublisherConfig, ScopedPublisher};
