//! One port over both paths: `FailoverPort`.
//!
//! This crate will hold the data-path state machine of DESIGN §4 (Synthetic → VfAttaching →
//! SwitchingToVf → OnVf → SwitchingToSynthetic), VF discovery and matching (NVSP 128 serial
//! against the PCI slot, then the MAC), the per-queue generation handshake between the control
//! thread and the pollers, and the events and counters telemetry publishes. It builds on
//! `netvsc::SyntheticNic` and `vf::VfPort`.
//!
//! Nothing is implemented yet.
