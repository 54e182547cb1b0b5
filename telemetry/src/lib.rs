//! Metrics for operators.
//!
//! This crate will hold the catalogue of every metric hvnet exports (name, unit, help, labels
//! per path and queue), the publisher that samples the per-queue counters owned by the polling
//! threads and turns them into `metrics` calls (never a macro call per packet), and a
//! Prometheus endpoint bound to loopback by default. It depends on no other hvnet crate.
//!
//! Nothing is implemented yet.
