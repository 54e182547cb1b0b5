//! The Hyper-V synthetic NIC, driven from userspace.
//!
//! Layers, bottom up:
//! - [`vmbus`]: VMBus ring buffers in shared memory (header words as atomics, packet framing,
//!   a reader that copies each packet out once and validates it, a writer that follows the
//!   interrupt-mask and pending-send-size rules) and the device backends that provide the ring
//!   memory and doorbells: `uio_hv_generic` on a real guest, a shared-memory transport with
//!   eventfd doorbells for the simulated host.
//! - [`nvsp`]: the Network VSP protocol carried in VMBus packets, as `zerocopy` wire structs.
//! - [`rndis`]: RNDIS messages carried in NVSP 107, with NDIS objects and per-packet info.
//! - [`nic`]: the guest-side [`SyntheticNic`] (handshake, control requests, host events,
//!   re-establishing a dead session) and its per-queue [`SyntheticQueue`]s (receive dispatch,
//!   send-buffer sections and GPA-direct sends).
//!
//! All integers on the wire are little-endian. Everything read from the host is untrusted:
//! copied out of shared memory once, then validated, then used.

pub mod nic;
pub mod nvsp;
pub mod rndis;
pub mod vmbus;

pub use nic::{NicConfig, NicError, NicEvent, NicStats, QueueStats, SyntheticNic, SyntheticQueue};
