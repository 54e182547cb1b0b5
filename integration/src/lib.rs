//! The simulated Hyper-V host and the suites that run hvnet against it.
//!
//! It plays the host's part, and the device's, so the driver crates can be tested without
//! Hyper-V or hardware. Each simulated party is a separate actor that sees only the bytes a
//! real one would see (shared memory, DMA memory, registers, doorbells).
//!
//! - [`host`]: the simulated Hyper-V host — [`host::SimHost`] serves a shared-memory VMBus
//!   (NetVSP, a vSwitch with loopback and an in-memory external port, link and VF scripting,
//!   fault injection) and hands the guest its device;
//! - [`conformance`]: the NetVSP conformance transcripts, golden answers recorded from a real
//!   NetVSP host, loaded and compared against what the simulated host produces;
//! - [`rig`]: [`rig::SyntheticRig`], a host with a guest NIC opened against it;
//! - [`vf_model`]: the software igbvf (82576 VF) behind `vf::device`, with its PF's mailbox,
//!   a DMA engine on its own thread, an in-memory wire and fault injection.
//!
//! The failover suites (synthetic ⇄ VF) will join `tests/` with the bond issue.

pub mod conformance;
pub mod host;
pub mod rig;
pub mod vf_model;
