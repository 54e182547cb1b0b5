//! Transaction ids and the tables that map them back to what they stand for.
//!
//! Every request the guest sends with "completion requested" carries a transaction id (tid) of
//! the guest's choosing; the host echoes it in the completion, and completions are matched by
//! tid only. Layout of a guest tid (bit 63 stays clear: the host uses it for its own
//! unsolicited messages):
//!
//! | bits | field |
//! |---|---|
//! | 56..=61 | kind: [`KIND_SECTION`], [`KIND_GPA`] or [`KIND_CONTROL`] |
//! | 32..=55 | slot (section or in-flight slot of the queue) |
//! | 0..=31 | sequence number, never 0 |
//!
//! A [`SlotTable`] hands out slots with a fresh sequence number each time, so a duplicate or
//! stale completion (same slot, older sequence) never frees the slot's current occupant: it
//! matches nothing and is counted. Control tids are a plain counter under [`KIND_CONTROL`].

/// Kind of a tid naming a send-buffer section of a queue.
pub(crate) const KIND_SECTION: u64 = 1;
/// Kind of a tid naming a GPA-direct in-flight slot of a queue.
pub(crate) const KIND_GPA: u64 = 2;
/// Kind of a tid of a control request (NVSP request or RNDIS control message).
pub(crate) const KIND_CONTROL: u64 = 3;

const KIND_SHIFT: u32 = 56;
const SLOT_SHIFT: u32 = 32;
const SLOT_MASK: u64 = (1 << 24) - 1;
/// Most slots a table can have (24 bits).
pub(crate) const MAX_SLOTS: usize = 1 << 24;

/// The kind bits of `tid` (0 for tids the guest never makes).
pub(crate) fn kind_of(tid: u64) -> u64 {
    (tid >> KIND_SHIFT) & 0x3F
}

/// A control tid for counter value `n`.
pub(crate) fn control_tid(n: u64) -> u64 {
    (KIND_CONTROL << KIND_SHIFT) | (n & ((1 << KIND_SHIFT) - 1))
}

fn encode(kind: u64, slot: u32, seq: u32) -> u64 {
    (kind << KIND_SHIFT) | (u64::from(slot) << SLOT_SHIFT) | u64::from(seq)
}

/// One slot: the tid it is currently reserved under (0 = free) and its value.
#[derive(Debug)]
struct Slot<T> {
    tid: u64,
    value: Option<T>,
}

/// A fixed set of slots, each reserved under a unique tid until its completion.
///
/// Lifecycle of a slot: [`reserve`](Self::reserve) → (optionally) [`fill`](Self::fill) →
/// [`complete`](Self::complete) with the exact tid, or [`release`](Self::release) if the send
/// never happened. Free slots are reused last-in first-out.
#[derive(Debug)]
pub(crate) struct SlotTable<T> {
    kind: u64,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    seq: u32,
}

impl<T> SlotTable<T> {
    /// A table of `capacity` slots (capped at [`MAX_SLOTS`]) whose tids have kind `kind`.
    pub(crate) fn new(kind: u64, capacity: usize) -> Self {
        let capacity = capacity.min(MAX_SLOTS);
        Self {
            kind,
            slots: (0..capacity)
                .map(|_| Slot {
                    tid: 0,
                    value: None,
                })
                .collect(),
            // Reversed so that slot 0 is handed out first.
            free: (0..capacity as u32).rev().collect(),
            seq: 0,
        }
    }

    /// Number of slots.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Slots reserved now.
    pub(crate) fn in_use(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Reserves a free slot; returns it with its new tid. `None` when all are in use.
    pub(crate) fn reserve(&mut self) -> Option<(u32, u64)> {
        let slot = self.free.pop()?;
        self.seq = self.seq.wrapping_add(1).max(1);
        let tid = encode(self.kind, slot, self.seq);
        self.slots[slot as usize].tid = tid;
        Some((slot, tid))
    }

    /// Stores `value` in a reserved slot.
    pub(crate) fn fill(&mut self, slot: u32, value: T) {
        if let Some(s) = self.slots.get_mut(slot as usize).filter(|s| s.tid != 0) {
            s.value = Some(value);
        }
    }

    /// Frees a reserved slot whose send did not happen; returns its value.
    pub(crate) fn release(&mut self, slot: u32) -> Option<T> {
        let s = self.slots.get_mut(slot as usize).filter(|s| s.tid != 0)?;
        s.tid = 0;
        self.free.push(slot);
        s.value.take()
    }

    /// Frees the slot reserved under exactly `tid`; returns the slot and its value. `None` if
    /// no slot is reserved under `tid` (unknown, duplicate or stale completion).
    pub(crate) fn complete(&mut self, tid: u64) -> Option<(u32, Option<T>)> {
        if kind_of(tid) != self.kind {
            return None;
        }
        let slot = ((tid >> SLOT_SHIFT) & SLOT_MASK) as u32;
        let s = self.slots.get_mut(slot as usize)?;
        if s.tid != tid {
            return None;
        }
        s.tid = 0;
        self.free.push(slot);
        Some((slot, s.value.take()))
    }

    /// Frees every slot; returns how many were in use. Values are dropped.
    pub(crate) fn clear(&mut self) -> usize {
        let used = self.in_use();
        for s in &mut self.slots {
            s.tid = 0;
            s.value = None;
        }
        self.free.clear();
        self.free.extend((0..self.slots.len() as u32).rev());
        used
    }
}
