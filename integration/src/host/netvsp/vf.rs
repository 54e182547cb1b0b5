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

use std::time::Instant;

use netvsc::nvsp::{self, NvspMessage};

use super::{OutMsg, Session};
use crate::host::stats::bump;

/// VF state of a session.
#[derive(Clone, Debug, Default)]
pub(crate) struct VfState {
    /// The serial of the association currently advertised to the guest.
    pub advertised: Option<u32>,
    /// When the host makes the VF device available to the guest.
    pub ready_at: Option<Instant>,
}

impl Session {
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
        if self.persist.data_path_vf {
            self.persist.data_path_vf = false;
            self.stats.record_switch(false);
        }
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
        if self.persist.data_path_vf && !self.dead {
            self.host_switch_to_synthetic();
        } else if self.persist.data_path_vf {
            self.persist.data_path_vf = false;
            self.stats.record_switch(false);
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
        } else if self.persist.data_path_vf {
            self.persist.data_path_vf = false;
            self.stats.record_switch(false);
        }
    }

    /// The guest's `SWITCH_DATA_PATH`.
    pub(super) fn guest_switch(&mut self, tid: u64, rc: bool, path: u32) {
        let to_vf = path == nvsp::DATA_PATH_VF;
        if to_vf && self.vf.advertised.is_none() {
            tracing::warn!(target: "hvnet::host", "guest switches to a VF that is not advertised");
        } else if to_vf != self.persist.data_path_vf {
            self.persist.data_path_vf = to_vf;
            self.stats.record_switch(to_vf);
            if to_vf {
                // OpenVMM makes the device available at once when the guest switches; the
                // association's own timer still fires later.
                bump(&self.stats.vf_ready_for_device, 1);
            }
        }
        self.complete(0, tid, rc, &[]);
    }

    /// Fires the VF device timer; `true` if it did.
    pub(super) fn vf_timers(&mut self, now: Instant) -> bool {
        match self.vf.ready_at {
            Some(at) if now >= at => {
                self.vf.ready_at = None;
                bump(&self.stats.vf_ready_for_device, 1);
                true
            }
            _ => false,
        }
    }
}
