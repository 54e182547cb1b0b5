//! Fault injection: what a misbehaving host does, on request of the test.
//!
//! Lifecycle: [`SimHost::inject_fault`](super::SimHost::inject_fault) queues a [`Fault`]; the
//! host thread applies it on its next loop. One-shot faults arm a flag consumed by the next
//! matching event (a receive, a send completion); state faults (`StopReading`,
//! `RefuseVersionsAbove`) last until undone or until the host is dropped; worker-stopping
//! faults (`RevokeReceiveBuffer`, `DeadChannel`, `RingCorruption`) end the current NetVSP
//! session like a protocol error does, and a guest reopen starts a fresh, healthy one.
//! `Rescind` removes the device for good.

/// A fault the simulated host can produce. Each must end, on the guest side, in a typed
/// error or a counted drop; the host only produces it faithfully and counts it
/// ([`HostStats::faults_injected`](super::HostStats::faults_injected)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The next receive data packet carries a corrupt RNDIS message in its first range (its
    /// `data_length` runs past the message). The guest must complete it and drop the frame.
    MalformedPacket,
    /// The next receive data packet's first range points outside the receive buffer. The
    /// guest must complete it and drop the frame.
    BadTransferRange,
    /// The next `n` send completions (NVSP 108) are never written.
    DropCompletions(u32),
    /// The next send completion is written twice.
    DuplicateCompletion,
    /// The next send completion carries a transaction id the guest never used (instead of the
    /// right one, which is therefore lost).
    WrongTid,
    /// The host stops using the receive buffer and the NetVSP worker stops (OpenVMM tears its
    /// worker down when a buffer is revoked). Not a guest's revoke, which this host counts and
    /// goes on after (see `netvsp`).
    RevokeReceiveBuffer,
    /// The host stops consuming the guest's TX rings (every channel) until
    /// [`Fault::ResumeReading`]. Receive delivery goes on while buffers last.
    StopReading,
    /// Undoes [`Fault::StopReading`].
    ResumeReading,
    /// The NetVSP worker stops silently (no rescind, no reply), as on a protocol error.
    DeadChannel,
    /// The device is rescinded: the guest's waits fail with `Gone`, a reopen is refused.
    Rescind,
    /// INIT is answered with status NONE for every version above this one.
    RefuseVersionsAbove(u32),
    /// A garbage descriptor is written into the primary channel's guest RX ring and published;
    /// the worker then stops (its ring is unusable until the guest reopens).
    RingCorruption,
    /// While `true`, the host cannot move its data path to the VF: a guest `SWITCH_DATA_PATH
    /// {VF}` is completed, then refused with a host `SWITCH_DATA_PATH {synthetic}` (OpenVMM's
    /// failed switch); the data path stays synthetic. Lasts until set to `false`.
    RefuseVfSwitch(bool),
}

/// Armed one-shot faults and lasting fault states.
#[derive(Clone, Debug, Default)]
pub(crate) struct FaultState {
    pub malformed_next: bool,
    pub bad_range_next: bool,
    pub drop_completions: u32,
    pub duplicate_next: bool,
    pub wrong_tid_next: bool,
    pub stop_reading: bool,
    pub refuse_above: Option<u32>,
    pub refuse_vf_switch: bool,
    /// Source of the never-used transaction ids of `WrongTid`.
    pub wrong_tid_counter: u64,
}

/// What the host must do about one send completion, after the faults had their say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompletionPlan {
    /// Write it once with its transaction id.
    Normal,
    /// Do not write it.
    Drop,
    /// Write it twice.
    Duplicate,
    /// Write it once with this transaction id instead.
    WrongTid(u64),
}

impl FaultState {
    /// Arms or applies the state part of `fault`. Returns the faults the session must act on
    /// at once (worker stops, rescind, ring corruption) as `Some`.
    pub fn arm(&mut self, fault: Fault) -> Option<Fault> {
        match fault {
            Fault::MalformedPacket => self.malformed_next = true,
            Fault::BadTransferRange => self.bad_range_next = true,
            Fault::DropCompletions(n) => {
                self.drop_completions = self.drop_completions.saturating_add(n)
            }
            Fault::DuplicateCompletion => self.duplicate_next = true,
            Fault::WrongTid => self.wrong_tid_next = true,
            Fault::StopReading => self.stop_reading = true,
            Fault::ResumeReading => self.stop_reading = false,
            Fault::RefuseVersionsAbove(v) => self.refuse_above = Some(v),
            Fault::RefuseVfSwitch(refuse) => self.refuse_vf_switch = refuse,
            Fault::RevokeReceiveBuffer
            | Fault::DeadChannel
            | Fault::Rescind
            | Fault::RingCorruption => {
                return Some(fault);
            }
        }
        None
    }

    /// Decides the fate of the next send completion, consuming one armed fault.
    pub fn next_completion(&mut self) -> CompletionPlan {
        if self.drop_completions > 0 {
            self.drop_completions -= 1;
            CompletionPlan::Drop
        } else if self.duplicate_next {
            self.duplicate_next = false;
            CompletionPlan::Duplicate
        } else if self.wrong_tid_next {
            self.wrong_tid_next = false;
            self.wrong_tid_counter += 1;
            // High bits no guest allocator produces, distinct from the host's own 0x8000… ids.
            CompletionPlan::WrongTid(0x5EED_0000_0000_0000 | self.wrong_tid_counter)
        } else {
            CompletionPlan::Normal
        }
    }

    /// Whether INIT for `version` must be refused by fault.
    pub fn refuses(&self, version: u32) -> bool {
        self.refuse_above.is_some_and(|limit| version > limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_faults_are_consumed_in_order() {
        let mut f = FaultState::default();
        assert_eq!(f.next_completion(), CompletionPlan::Normal);
        assert_eq!(f.arm(Fault::DropCompletions(2)), None);
        f.arm(Fault::DuplicateCompletion);
        f.arm(Fault::WrongTid);
        assert_eq!(f.next_completion(), CompletionPlan::Drop);
        assert_eq!(f.next_completion(), CompletionPlan::Drop);
        assert_eq!(f.next_completion(), CompletionPlan::Duplicate);
        assert!(matches!(f.next_completion(), CompletionPlan::WrongTid(t) if t >> 48 == 0x5EED));
        assert_eq!(f.next_completion(), CompletionPlan::Normal);
    }

    #[test]
    fn stop_and_resume_reading_toggle_and_refusal_compares_versions() {
        let mut f = FaultState::default();
        f.arm(Fault::StopReading);
        assert!(f.stop_reading);
        f.arm(Fault::ResumeReading);
        assert!(!f.stop_reading);
        f.arm(Fault::RefuseVersionsAbove(0x50000));
        assert!(f.refuses(0x60001));
        assert!(!f.refuses(0x50000));
    }

    #[test]
    fn session_faults_are_handed_back() {
        let mut f = FaultState::default();
        for fault in [
            Fault::DeadChannel,
            Fault::Rescind,
            Fault::RingCorruption,
            Fault::RevokeReceiveBuffer,
        ] {
            assert_eq!(f.arm(fault), Some(fault));
        }
    }
}
