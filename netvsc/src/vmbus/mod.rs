//! VMBus for a userspace NetVSC: rings, packet framing, doorbells and the device backends.
//!
//! - [`ring`]: [`RingMemory`], [`OutgoingRing`] (producer) and [`IncomingRing`] (consumer),
//!   one code path for both ends of a channel (guest or simulated host), with the
//!   interrupt-mask and pending-send-size signalling rules.
//! - [`packet`]: the wire structs of ring packets, [`OutgoingPacket`] (borrowed, framed
//!   straight into the ring) and [`IncomingPacket`] (owned, reusable, validated after one
//!   copy out of shared memory).
//! - [`channel`]: the [`VmbusDevice`] and [`Doorbell`] traits the NIC programs against, and
//!   [`DeviceError`].
//! - [`shm`]: the shared-memory transport for the simulated host: one memfd holding every ring,
//!   the buffers, the monitor page and a bus control page; eventfd doorbells;
//!   [`ShmDevice`](shm::ShmDevice) for the guest and [`ShmHostSide`](shm::ShmHostSide) for the
//!   host.
//! - [`uio`]: the real `uio_hv_generic` backend ([`UioDevice`](uio::UioDevice)).
//!
//! The peer is untrusted: every index and length read from shared memory is checked, a
//! violation is a typed error, never a panic. `unsafe` lives only in the private `sys`
//! module (system calls); memory mapping is `packet::mem`'s.

pub mod channel;
pub mod packet;
pub mod ring;
pub mod shm;
mod sys;
pub mod uio;

#[cfg(test)]
mod ring_tests;

pub use channel::{ChannelRings, DeviceError, Doorbell, VmbusDevice};
pub use packet::{
    GpaRange, IncomingKind, IncomingPacket, OutgoingKind, OutgoingPacket, TransferPageRange,
};
pub use ring::{IncomingRing, OutgoingRing, Peek, RingError, RingMemory, SMALL_PAYLOAD};

/// The VMBus class GUID of a NetVSC (synthetic network) device.
pub const NETVSC_CLASS_ID: &str = "f8615163-df3e-46c5-913f-f2d2f965ed0e";

/// Byte offset of `trigger_group[group].pending` in a monitor page (`u32 trigger_state`,
/// `u32 reserved`, then 4 groups of `{u32 pending; u32 armed}`).
pub const fn monitor_pending_offset(group: usize) -> usize {
    8 + group * 8
}

/// Number of trigger groups in a monitor page (32 monitor ids each).
pub const MONITOR_TRIGGER_GROUPS: usize = 4;

/// Byte offset of `latency[id / 32][id % 32]` (a `u16`, in units of 100 ns) in a monitor page:
/// after the trigger groups, 536 reserved bytes. The guest writes how soon it wants the host
/// to notice a trigger bit (DPDK's devarg `latency`, default 50 µs); the host polls at it.
pub const fn monitor_latency_offset(monitor_id: usize) -> usize {
    8 + MONITOR_TRIGGER_GROUPS * 8 + 536 + 2 * monitor_id
}

/// The unit of a monitor page's latency entries.
pub const MONITOR_LATENCY_UNIT: std::time::Duration = std::time::Duration::from_nanos(100);
