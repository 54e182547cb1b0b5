//! Transmit queue selection by the host's send indirection table (NVSP 134, reference §4.4).
//!
//! The host sends a 16-entry table mapping `tx hash & 15` to a channel index. Linux
//! (`netvsc_get_tx_queue`) picks `table[hash & (VRSS_SEND_TAB_SIZE - 1)]` for a flow with no
//! queue assigned yet. [`SendTable`] keeps the entries in atomics so a forwarder can look one
//! up without a lock; the host is untrusted, so an entry is reduced modulo the open queue count
//! when it is read.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::nvsp::SEND_INDIRECTION_TABLE_ENTRIES;

/// The host's send indirection table, readable without a lock.
///
/// Updates store the entries one by one: a reader racing an update may see a mix of the old
/// and the new table, which is harmless (every entry it returns is clamped to an open queue).
#[derive(Debug, Default)]
pub(crate) struct SendTable {
    entries: [AtomicU32; SEND_INDIRECTION_TABLE_ENTRIES],
    /// Whether any table arrived.
    present: AtomicBool,
}

impl SendTable {
    /// Installs the entries of a table the host sent (already checked to hold 16 entries by
    /// the NVSP parser; a shorter slice leaves the remaining entries as they were, a longer
    /// one is cut).
    pub(crate) fn store(&self, table: &[u32]) {
        for (slot, &entry) in self.entries.iter().zip(table) {
            slot.store(entry, Ordering::Relaxed);
        }
        self.present.store(true, Ordering::Release);
    }

    /// The queue for `hash` among `queue_count` open queues: the table entry for
    /// `hash % 16`, reduced modulo `queue_count` if the host named a queue that is not open;
    /// `hash % queue_count` before any table arrived. `queue_count` 0 is treated as 1.
    pub(crate) fn queue_for_hash(&self, hash: u32, queue_count: u16) -> u16 {
        let queues = u32::from(queue_count.max(1));
        if !self.present.load(Ordering::Acquire) {
            return (hash % queues) as u16;
        }
        let slot = hash as usize % SEND_INDIRECTION_TABLE_ENTRIES;
        let entry = self.entries[slot].load(Ordering::Relaxed);
        (entry % queues) as u16
    }
}
