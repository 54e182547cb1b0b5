//! Memory shared with a host or a device, and the packets that live in it.
//!
//! Everything hvnet moves between a guest and its host (VMBus rings, receive and send buffers)
//! or between the driver and a device (DMA rings, packet buffers) lives in a [`SharedMemory`]:
//! an `mmap`ed region with a *bus address* for every byte. In simulation the region is a memfd
//! that stands for the guest's physical memory (bus address = offset, shareable with another
//! thread or process); on a real guest it is a uio map or a pinned hugepage pool whose bus
//! addresses are guest-physical.
//!
//! Modules:
//! - [`mem`]: [`SharedMemory`], the only place in this crate that maps memory or touches it
//!   through raw pointers. Every access is bounds-checked; the peer may write concurrently, so
//!   callers copy out and validate after the copy.
//! - [`pool`]: a fixed-size buffer [`Pool`] carved from a region and the RAII [`Packet`] that
//!   returns its buffer on drop. One pool serves every path of a port: no frame is copied
//!   between paths.
//! - [`deadline`]: `now + timeout` that never panics, for every crate's waits.
//! - [`ethernet`]: [`MacAddr`] and a checked [`EthernetFrame`] view.
//! - [`port`]: the one face every port has ([`PortQueue`]): `rx_burst` / `tx_burst`.
//! - [`netdev`]: the kernel's network devices as frame endpoints (TAP queues, packet sockets)
//!   and the interface settings a port gives them; with [`mem`], the only other module here
//!   that makes system calls.

pub mod deadline;
pub mod ethernet;
pub mod mem;
pub mod netdev;
pub mod pool;
pub mod port;

pub use ethernet::{EthernetFrame, MacAddr};
pub use mem::{MemError, SharedMemory};
pub use pool::{Packet, PacketMeta, Pool};
pub use port::PortQueue;

/// The page size of the bus: Hyper-V's 4 KiB, whatever the guest's own page size.
pub const PAGE_SIZE: usize = 4096;
