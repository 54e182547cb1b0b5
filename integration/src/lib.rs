//! The simulated Hyper-V host and the suites that run hvnet against it.
//!
//! This crate plays the host's part so the guest driver can be tested without Hyper-V:
//!
//! - the VMBus host side (offers, GPADLs, channel open and close, ring doorbells);
//! - NetVSP, the host end of the synthetic NIC (NVSP and RNDIS);
//! - a vSwitch that connects the synthetic NICs and loops frames back;
//! - fault injection on all of the above;
//! - [`host`]: the simulated host itself — [`host::SimHost`] serves a shared-memory VMBus
//!   (NetVSP, vSwitch with loopback and an in-memory external port, fault injection) and hands
//!   the guest its device;
//! - the NetVSP conformance transcripts ([`conformance`]): golden host answers recorded from a
//!   real NetVSP, loaded and compared against what the simulated host produces;
//! - later, the software VF and the failover suites (synthetic ⇄ VF data path).

pub mod conformance;
pub mod host;
