//! What the suites, benchmarks and the demo build on: rigs that put hvnet's ports on the
//! simulated host, traffic checked at the far end, and the process's resources.
//!
//! - [`rig`]: [`rig::SyntheticRig`], a host with a guest NIC opened against it;
//! - [`failover`]: [`failover::FailoverRig`], a failover port over a NIC on the host with a
//!   simulated vPCI bus ([`failover::SimPci`]) that makes software VFs in guest memory,
//!   plugged into the host's vSwitch;
//! - [`traffic`]: sequenced traffic both ways through a port, checked at the far end;
//! - [`process`]: what the process holds (fds, threads, RSS), for leak checks.

pub mod failover;
pub mod process;
pub mod rig;
pub mod traffic;
