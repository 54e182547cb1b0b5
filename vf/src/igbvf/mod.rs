//! Intel 82576 virtual function ("igbvf"): the wire layer.
//!
//! - [`regs`]: BAR0 register offsets, bit definitions, and the rollover-aware statistics
//!   accumulation;
//! - [`descriptors`]: advanced RX/TX descriptors as `zerocopy` declarations, builders for the
//!   formats the driver writes, and validating parsers for what the device writes back;
//! - [`mailbox`]: PF↔VF mailbox messages and the `V2PMAILBOX` handshake as a pure state machine.
//!
//! Nothing here does I/O. The driver on top reads and writes registers and ring memory and
//! passes copies in.
//!
//! Trust rules: the device and the PF behind it are untrusted. Register values may be
//! all-ones (device removed); descriptors and mailbox words are copied out of shared memory
//! once, then validated, then used. Every malformed input becomes a typed error for the
//! driver to count; nothing here panics on device input.

pub mod descriptors;
pub mod driver;
pub mod mailbox;
pub mod regs;

pub use driver::{Clock, Igbvf, IgbvfConfig, IgbvfError, IgbvfQueue, QueueCounters, SystemClock};
