//! The VF: association messages and the data path.
//!
//! The association `{128, 1, serial}` (in-band, tid `0x8000000000000000`, completion
//! requested but optional) goes out only if NVSP ≥ 4, the guest set the SR-IOV capability bit
//! and RNDIS is initialised: right after INITIALIZE_CMPLT when a VF is present, or when one is
//! offered later. `vf_device_delay` after it the host makes the device available (counted;
//! the simulated VF itself lives elsewhere). The guest switches with `SWITCH_DATA_PATH`
//! (completed with an empty payload); a data-path change is recorded like the transcripts'
//! `set_data_path_to_guest_vf` calls. Removal follows OpenVMM's order: if the data path is the
//! VF, a host `SWITCH_DATA_PATH {synthetic}` (tid `…01`, 8-byte payload) first, then
//! `{128, 0, serial}`.
//!
//! Every change of the data path goes through `Session::set_data_path`, which also flips the
//! vSwitch's steering flag. The guest's switch is completed only once the old path is flushed
//! (the ordering promise in the [`vswitch`](crate::host::vswitch) docs): to the VF, the
//! completion waits in [`VfState::switch_pending`] until the switch's synthetic FIFOs are
//! empty (the session keeps delivering; at most [`SWITCH_FLUSH_TIMEOUT`]). Leaving the VF,
//! guest- or host-initiated, the switch flushes the VF's wire while it holds steering, before
//! the flag flips: nothing reaches the synthetic path before every older frame is in the VF's
//! rings, and the completion or the host's message follows.

use std::time::{Duration, Instant};

use netvsc::nvsp::{self, NvspMessage};
use netvsc::vmbus::{OutgoingKind, OutgoingPacket};

use super::{OutMsg, Session};
use crate::host::stats::bump;

/// How long a data-path switch waits for the old path to drain before completing anyway.
pub(crate) const SWITCH_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A guest `SWITCH_DATA_PATH {VF}` whose completion waits for the synthetic path to drain.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingSwitch {
    pub tid: u64,
    pub completion_requested: bool,
    /// When the host completes it regardless (counted in `switch_flush_timeouts`).
    pub deadline: Instant,
}

/// VF state of a session.
#[derive(Clone, Debug, Default)]
pub(crate) struct VfState {
    /// The serial of the association currently advertised to the guest.
    pub advertised: Option<u32>,
    /// When the host makes the VF device available to the guest.
    pub ready_at: Option<Instant>,
    /// A deferred completion of the guest's switch to the VF.
    pub switch_pending: Option<PendingSwitch>,
}

impl Session {
    /// Moves the data path (persisted state, steering flag, stats); whether it changed.
    pub(super) fn set_data_path(&mut self, to_vf: bool) -> bool {
        if to_vf == self.persist.data_path_vf {
            return false;
        }
        self.persist.data_path_vf = to_vf;
        // Leaving the VF, the switch flushes its wire before it steers to synthetic.
        if !self.switch.set_data_path_vf(to_vf, SWITCH_FLUSH_TIMEOUT) {
            bump(&self.stats.switch_flush_timeouts, 1);
        }
        self.stats.record_switch(to_vf);
        true
    }

    /// Whether this session may carry VF associations.
    fn vf_capable(&self) -> bool {
        self.version.unwrap_or(0) >= nvsp::VERSION_4
            && self
                .ndis_config
                .is_some_and(|c| c.capabilities & nvsp::CAPABILITY_SRIOV != 0)
            && self.rndis.initialized
            && !self.dead
    }

    /// Queues the association `{128, allocated, serial}`.
    fn queue_association(&mut self, allocated: bool, serial: u32) {
        let payload =
            NvspMessage::SendVfAssociation(nvsp::Message4SendVfAssociation::new(allocated, serial))
                .to_vec(self.host_message_size());
        self.queue_out(OutMsg::InBand {
            tid: nvsp::HOST_VF_ASSOCIATION_TRANSACTION_ID,
            completion_requested: true,
            payload,
        });
    }

    /// Advertises the present VF, if the session allows it.
    fn advertise_vf(&mut self) {
        let Some(serial) = self.persist.vf_serial else {
            return;
        };
        if !self.vf_capable() {
            return;
        }
        self.queue_association(true, serial);
        self.vf.advertised = Some(serial);
        self.vf.ready_at = Some(Instant::now() + self.config.vf_device_delay);
        bump(&self.stats.vf_associations, 1);
    }

    /// After INITIALIZE_CMPLT was queued.
    pub(super) fn vf_after_rndis_init(&mut self) {
        self.advertise_vf();
    }

    /// The backend gained a VF with id `serial`.
    pub(super) fn offer_vf(&mut self, serial: u32) {
        self.persist.vf_serial = Some(serial);
        self.advertise_vf();
    }

    /// Moves the data path to synthetic on the host's initiative: host `SWITCH_DATA_PATH
    /// {synthetic}` (8-byte payload, tid `…01`).
    fn host_switch_to_synthetic(&mut self) {
        self.overtake_pending_switch();
        self.set_data_path(false);
        let payload = NvspMessage::SwitchDataPath(nvsp::Message4SwitchDataPath::new(
            nvsp::DATA_PATH_SYNTHETIC,
        ))
        .to_vec(nvsp::HOST_SWITCH_DATA_PATH_MESSAGE_SIZE);
        self.queue_out(OutMsg::InBand {
            tid: nvsp::HOST_SWITCH_DATA_PATH_TRANSACTION_ID,
            completion_requested: true,
            payload,
        });
    }

    /// The backend lost its VF (OpenVMM order, see the module docs).
    pub(super) fn remove_vf(&mut self) {
        let serial = self.persist.vf_serial.take();
        self.vf.ready_at = None;
        self.switch.set_vf_device(None);
        if self.persist.data_path_vf && !self.dead {
            self.host_switch_to_synthetic();
        } else {
            self.set_data_path(false);
        }
        if let Some(advertised) = self.vf.advertised.take()
            && !self.dead
        {
            self.queue_association(false, serial.unwrap_or(advertised));
        }
    }

    /// A host-initiated fallback to the synthetic path.
    pub(super) fn force_synthetic(&mut self) {
        if self.vf_capable() {
            self.host_switch_to_synthetic();
        } else {
            self.set_data_path(false);
        }
    }

    /// The guest's `SWITCH_DATA_PATH`: completed once the old path is flushed (module docs).
    pub(super) fn guest_switch(&mut self, tid: u64, rc: bool, path: u32) {
        self.overtake_pending_switch();
        let to_vf = path == nvsp::DATA_PATH_VF;
        if to_vf && self.vf.advertised.is_none() {
            tracing::warn!(target: "hvnet::host", "guest switches to a VF that is not advertised");
        } else if to_vf && self.persist.faults.refuse_vf_switch {
            // Completed whether or not it worked; the refusal follows.
            self.complete(0, tid, rc, &[]);
            self.host_switch_to_synthetic();
            return;
        } else if self.set_data_path(to_vf) && to_vf {
            // OpenVMM makes the device available at once when the guest switches; the
            // association's own timer still fires later.
            bump(&self.stats.vf_ready_for_device, 1);
            self.switch.set_vf_device(self.vf.advertised);
            if self.switch.pending() > 0 {
                self.vf.switch_pending = Some(PendingSwitch {
                    tid,
                    completion_requested: rc,
                    deadline: Instant::now() + SWITCH_FLUSH_TIMEOUT,
                });
                return;
            }
        }
        self.complete(0, tid, rc, &[]);
    }

    /// A switch still waiting for its completion is overtaken by another change of the data
    /// path: it is completed at once, so the guest sees the completions in order.
    fn overtake_pending_switch(&mut self) {
        if let Some(pending) = self.vf.switch_pending.take() {
            self.complete(0, pending.tid, pending.completion_requested, &[]);
        }
    }

    /// Writes a deferred switch completion once the synthetic path is drained (or the wait
    /// timed out) and the guest's ring has room; `true` if it did. Called after the round's
    /// deliveries were published, so the guest sees them before the completion.
    pub(super) fn finish_switch(&mut self, now: Instant) -> bool {
        let Some(pending) = self.vf.switch_pending else {
            return false;
        };
        let drained = self.switch.pending() == 0;
        if !drained && now < pending.deadline {
            return false;
        }
        if pending.completion_requested {
            let packet = OutgoingPacket {
                kind: OutgoingKind::Completion,
                transaction_id: pending.tid,
                completion_requested: false,
                payload: &[],
            };
            let Some(primary) = self.channels.first_mut() else {
                return false;
            };
            if primary.free() <= packet.ring_len() {
                primary.request_space(packet.ring_len() + 1);
                return false;
            }
        }
        if !drained {
            tracing::warn!(target: "hvnet::host", "switch to the VF completed with synthetic frames pending");
            bump(&self.stats.switch_flush_timeouts, 1);
        }
        self.vf.switch_pending = None;
        self.complete(0, pending.tid, pending.completion_requested, &[]);
        true
    }

    /// Fires the VF device timer; `true` if it did.
    pub(super) fn vf_timers(&mut self, now: Instant) -> bool {
        match self.vf.ready_at {
            Some(at) if now >= at => {
                self.vf.ready_at = None;
                self.switch.set_vf_device(self.vf.advertised);
                bump(&self.stats.vf_ready_for_device, 1);
                true
            }
            _ => false,
        }
    }
}
