//! The host end of one VMBus channel: it consumes the guest's TX ring and produces into the
//! guest's RX ring, over the same ring code the guest uses.
//!
//! Lifecycle: [`HostChannel::open`] when the channel is opened (the primary at start and
//! after each reopen, a subchannel once the guest has opened it); it initialises the guest RX
//! ring's header as a host does (`feature_bits = 1`, `pending_send_sz = 0`). Writes are staged
//! and published by [`HostChannel::flush`], which interrupts the guest when the ring rules say
//! so. Dropped before the host acknowledges a reopen (the rings are zeroed then).
//!
//! Signalling: while the host works it keeps `interrupt_mask = 1` on the guest's TX ring; when
//! it goes idle it unmasks ([`HostChannel::arm`]) and re-checks, so a guest write is never
//! missed. A dead worker leaves the mask at 1, as OpenVMM does.

use std::sync::atomic::Ordering;

use netvsc::vmbus::ring::RING_HEADER_SIZE;
use netvsc::vmbus::shm::ShmHostSide;
use netvsc::vmbus::{
    DeviceError, IncomingPacket, IncomingRing, OutgoingPacket, OutgoingRing, RingError,
};

/// The host's two ring ends of one channel.
#[derive(Debug)]
pub(crate) struct HostChannel {
    pub index: u16,
    /// The host stopped reading because the guest's RX ring lacks room for completions; the
    /// guest's space signal (or the host's bounded wait) resumes it.
    pub space_blocked: bool,
    from_guest: IncomingRing,
    to_guest: OutgoingRing,
    host_side: ShmHostSide,
}

impl HostChannel {
    /// Opens the host's ends of channel `index` (see the module docs).
    pub fn open(host_side: &ShmHostSide, index: u16) -> Result<Self, DeviceError> {
        let from_guest = IncomingRing::new(host_side.guest_outgoing_ring(index)?)?;
        let to_guest = OutgoingRing::new(host_side.guest_incoming_ring(index)?, true)?;
        from_guest.set_interrupt_mask(true);
        Ok(Self {
            index,
            space_blocked: false,
            from_guest,
            to_guest,
            host_side: host_side.clone(),
        })
    }

    /// Reads the next guest packet into `packet`; `Ok(false)` if the ring is empty.
    pub fn read(&mut self, packet: &mut IncomingPacket) -> Result<bool, RingError> {
        self.from_guest.read(packet)
    }

    /// Hands consumed space back to the guest, signalling it if it waits for space.
    pub fn commit_read(&mut self) {
        if self.from_guest.commit() {
            let _ = self.host_side.signal_guest(self.index);
        }
    }

    /// Free bytes in the guest's RX ring (a packet of `n` ring bytes fits if this exceeds
    /// `n`). A corrupt guest read index reads as 0 (nothing fits).
    pub fn free(&self) -> usize {
        self.to_guest.free_bytes().unwrap_or(0)
    }

    /// Asks the guest to signal once `needed` ring bytes are free; `true` if they already are.
    pub fn request_space(&mut self, needed: usize) -> bool {
        self.to_guest.request_space(needed).unwrap_or(false)
    }

    /// Stages one packet for the guest; published by [`HostChannel::flush`].
    pub fn stage(&mut self, packet: &OutgoingPacket<'_>) -> Result<(), RingError> {
        self.to_guest.stage(packet)
    }

    /// Publishes staged packets and interrupts the guest if the ring rules say so.
    pub fn flush(&mut self) {
        if self.to_guest.commit() {
            let _ = self.host_side.signal_guest(self.index);
        }
    }

    /// Marks the host busy (guest need not signal) or not.
    pub fn set_busy(&self, busy: bool) {
        self.from_guest.set_interrupt_mask(busy);
    }

    /// Unmasks the guest's signals before the host sleeps; `true` if data arrived meanwhile.
    pub fn arm(&self) -> bool {
        self.from_guest.arm_interrupt()
    }

    /// Writes a descriptor no reader accepts (data offset past the packet length) at the
    /// guest RX ring's write position and publishes it: `Fault::RingCorruption`.
    pub fn corrupt_guest_ring(&mut self) {
        self.to_guest.commit();
        let ring = self.to_guest.memory();
        let size = ring.data_size();
        let pos = ring.write_index().load(Ordering::Acquire) as usize % size;
        // type 6, data_offset8 0x7fff, length8 2, flags 0, tid 0xbad, then a zero trailer.
        let mut garbage = [0u8; 24];
        garbage[0..2].copy_from_slice(&6u16.to_le_bytes());
        garbage[2..4].copy_from_slice(&0x7fffu16.to_le_bytes());
        garbage[4..6].copy_from_slice(&2u16.to_le_bytes());
        garbage[8..16].copy_from_slice(&0xbadu64.to_le_bytes());
        let mem = ring.shared_memory();
        for (i, b) in garbage.iter().enumerate() {
            let _ = mem.write(RING_HEADER_SIZE + (pos + i) % size, std::slice::from_ref(b));
        }
        ring.write_index()
            .store(((pos + garbage.len()) % size) as u32, Ordering::Release);
        let _ = self.host_side.signal_guest(self.index);
    }
}
