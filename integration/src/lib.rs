//! The simulated Hyper-V host and the suites that run hvnet against it.
//!
//! It plays the host's part, and the device's, so the driver crates can be tested without
//! Hyper-V or hardware. Each simulated party is a separate actor that sees only the bytes a
//! real one would see (shared memory, DMA memory, registers, doorbells).
//!
//! Its rooms, each a place of its own:
//! - [`host`]: the simulated Hyper-V host — [`host::SimHost`] serves a shared-memory VMBus
//!   (NetVSP, a vSwitch with loopback and an in-memory external port, link and VF scripting,
//!   fault injection) and hands the guest its device;
//! - [`sim_host`]: `hvnet sim-host`, that host served to another process through a published
//!   sysfs tree and a uio node (with the `hvnet-sim-uio` preload library in `uio-preload/`),
//!   with its TAP and VF ports and its scenario control;
//! - [`vf_model`]: the software igbvf (82576 VF) behind `vf::device`, with its PF's mailbox,
//!   a DMA engine on its own thread, an in-memory wire and fault injection;
//! - [`conformance`]: the conformance tooling — the NetVSP transcripts recorded from a real
//!   host, loaded and compared against what the simulated host answers;
//! - [`harness`]: what the suites build on — a NIC opened against the host
//!   ([`harness::rig`]), a failover port over one with a simulated vPCI bus
//!   ([`harness::failover`]), sequenced traffic checked at the far end
//!   ([`harness::traffic`]) and the process's resources for leak checks
//!   ([`harness::process`]);
//! - the suites themselves are `tests/`: `synthetic_*` (the synthetic NIC against the host),
//!   `conformance_*` (the transcripts), `vf_*` (the igbvf driver against the model) and
//!   `failover_*` (one per guarantee of DESIGN §4, a [`harness::failover::FailoverRig`] under
//!   [`harness::traffic::Traffic`]);
//! - [`bench`](mod@bench): the benchmarks' workloads (packets per second beside a same-run baseline,
//!   failover and failback durations, lock-step workloads for instructions per packet),
//!   run by `benches/`, the `*_ipp` examples and `hvnet bench`.

pub mod bench;
pub mod conformance;
pub mod harness;
pub mod host;
pub mod sim_host;
pub mod vf_model;
