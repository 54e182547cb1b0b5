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
//! - [`sim_host`]: `hvnet sim-host`, the simulated host served to another process through a
//!   published sysfs tree and a uio node (with the `hvnet-sim-uio` preload library);
//! - [`failover_rig`]: [`failover_rig::FailoverRig`], a failover port over a NIC on the
//!   simulated host with a simulated vPCI bus ([`failover_rig::SimPci`]) that makes software
//!   VFs in guest memory, plugged into the host's vSwitch;
//! - [`traffic`]: sequenced traffic both ways through a port, checked at the far end;
//! - [`process`]: what the process holds (fds, threads, RSS), for leak checks;
//! - [`vf_model`]: the software igbvf (82576 VF) behind `vf::device`, with its PF's mailbox,
//!   a DMA engine on its own thread, an in-memory wire and fault injection.
//!
//! The failover suites (`tests/failover_*.rs`) run a [`failover_rig::FailoverRig`] under
//! [`traffic::Traffic`], one suite per guarantee of DESIGN §4.

pub mod conformance;
pub mod failover_rig;
pub mod host;
pub mod process;
pub mod rig;
pub mod sim_host;
pub mod traffic;
pub mod vf_model;
