//! The NVSP/RNDIS handshake, as Linux netvsc does it (reference §2.4, §3.10):
//!
//! 1. INIT with min = max = one candidate version, highest first; status ≠ SUCCESS (hosts
//!    answer NONE for versions they do not know) → the next lower one.
//! 2. NDIS_CONFIG (v2+: MTU + 14, 802.1Q, SR-IOV and teaming from v5, RSC from 6.1) and
//!    NDIS_VERSION (6.1 up to NVSP 4, 6.30 above), both without completion.
//! 3. SEND_RECEIVE_BUFFER (id 0xCAFE), reply validated like Linux; SEND_SEND_BUFFER (id 0),
//!    section size validated. A few sections at the start of the send buffer are kept for
//!    control messages; the rest are split evenly between the queues.
//! 4. RNDIS INITIALIZE; QUERY current MAC and maximum frame size; QUERY the offload hardware
//!    capabilities and SET the offload parameters (module `offload`: checksum offloads and LSO
//!    off; a host that supports neither OID is tolerated); QUERY media connect status and
//!    (v5+) link speed.
//! 5. With more than one queue at v5+: QUERY RSS capabilities, SUB_CHANNEL allocate (the host
//!    may grant fewer), open the subchannels, SET RSS parameters (Toeplitz, hash info 0x1701,
//!    128 entries `i % queues`, the Microsoft key).
//! 6. SET packet filter; every queue becomes ready to transmit.
//!
//! Unsolicited host messages (VF association, indirection table, status indications) may
//! arrive at any point after INIT; they become events and never disturb the handshake, which
//! matches every reply by tid or request id.

use std::time::Duration;

use packet::{MacAddr, SharedMemory};

use crate::nvsp::{self, NvspMessage};
use crate::rndis::{self, NdisReceiveScaleCapabilities, RssParameters};

use super::control::Bound;
use super::error::NicError;
use super::shared::{NicShared, SendBuffer};

/// Send sections kept for RNDIS control messages at most.
const MAX_CONTROL_SECTIONS: usize = 4;

/// How long each step of a handshake may take.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Steps {
    /// Each request gets this long (open).
    Each(Duration),
    /// Everything must be done by this bound (re-establish).
    Until(Bound),
}

impl Steps {
    /// The bound of the next request.
    pub(crate) fn bound(&self) -> Bound {
        match *self {
            Steps::Each(timeout) => Bound::after(timeout),
            Steps::Until(bound) => bound,
        }
    }
}

/// What to negotiate.
#[derive(Debug, Clone)]
pub(crate) struct SessionPlan {
    /// NVSP versions to try, highest first.
    pub versions: Vec<u32>,
    /// Subchannels to ask for.
    pub subchannels: u16,
    /// Whether the host must grant all of them (re-establish keeps the queue count).
    pub exact_subchannels: bool,
    /// The MAC to keep (re-establish), if any.
    pub keep_mac: Option<MacAddr>,
}

fn nvsp_error(what: &'static str, tid: u64) -> impl FnOnce(nvsp::NvspError) -> NicError {
    move |source| NicError::Nvsp { what, tid, source }
}

fn unexpected(what: &'static str, msg_type: u32) -> NicError {
    NicError::Protocol {
        queue: 0,
        msg_type,
        reason: format!("unexpected reply to {what}"),
    }
}

/// The NDIS_CONFIG capability bits for `version`.
pub(crate) fn capabilities(version: u32, sriov: bool) -> u64 {
    let mut caps = nvsp::default_capabilities(version);
    if !sriov {
        caps &= !nvsp::CAPABILITY_SRIOV;
    }
    caps
}

/// Sections `[start, end)` of queue `q` among `queues`, out of `data` sections starting at
/// `first`.
pub(crate) fn partition(first: usize, data: usize, q: usize, queues: usize) -> (usize, usize) {
    let start = first + q * data / queues;
    let end = first + (q + 1) * data / queues;
    (start, end - start)
}

/// Sections kept for control out of `total`.
pub(crate) fn control_sections(total: usize) -> usize {
    (total / 8).clamp(1, MAX_CONTROL_SECTIONS).min(total)
}

impl NicShared {
    /// Runs a whole session set-up on a freshly opened (or reopened) device. The caller holds
    /// the session lock and has detached every queue.
    pub(crate) fn start_session(&self, plan: &SessionPlan, steps: Steps) -> Result<(), NicError> {
        let (rings, doorbell, (rxbuf, rx_gpadl), (sendbuf, tx_gpadl)) = {
            let device = self.device.lock();
            (
                device.primary()?,
                device.doorbell(0)?,
                device.receive_buffer()?,
                device.send_buffer()?,
            )
        };
        self.control.reset(0..0);
        *self.sendbuf.lock() = None;
        self.queues[0]
            .state
            .lock()
            .install_channel(rings, doorbell)?;
        self.set_dead_quietly(false);

        let version = self.negotiate(&plan.versions, steps)?;
        let ndis = nvsp::ndis_version_for(version);
        self.set_versions(version, ndis);
        if version >= nvsp::VERSION_2 {
            let mtu = (self.config.mtu as u32) + nvsp::ETHERNET_HEADER_LEN;
            let msg = NvspMessage::SendNdisConfig(nvsp::Message2SendNdisConfig::new(
                mtu,
                capabilities(version, self.config.sriov),
            ));
            self.nvsp_post(&msg, steps.bound(), "nvsp ndis config")?;
        }
        let msg = NvspMessage::SendNdisVersion(nvsp::Message1SendNdisVersion::new(ndis));
        self.nvsp_post(&msg, steps.bound(), "nvsp ndis version")?;

        self.send_receive_buffer(&rxbuf, rx_gpadl, steps)?;
        let (section_size, total) = self.send_send_buffer(&sendbuf, tx_gpadl, steps)?;
        let control = control_sections(total);
        *self.sendbuf.lock() = Some(SendBuffer {
            mem: sendbuf.clone(),
            section_size,
        });
        self.control.reset(0..control as u32);

        let device = self.rndis_initialize(steps.bound())?;
        let aggregation = super::tx::Aggregation {
            max_packets: device.max_packets_per_message,
            alignment_factor: device.packet_alignment_factor,
        };
        self.query_device(plan.keep_mac, version, steps)?;

        let granted = if plan.subchannels > 0 && version >= nvsp::VERSION_5 {
            self.open_subchannels(plan.subchannels, steps)?
        } else {
            0
        };
        if plan.exact_subchannels && granted < plan.subchannels {
            return Err(NicError::Protocol {
                queue: 0,
                msg_type: nvsp::MESSAGE5_TYPE_SUB_CHANNEL,
                reason: format!(
                    "host granted {granted} subchannels, the session had {}",
                    plan.subchannels
                ),
            });
        }
        let queues = granted + 1;
        self.set_queue_count(queues);
        if granted > 0 {
            self.set_rss(queues, steps)?;
        }
        let filter = self
            .packet_filter
            .load(std::sync::atomic::Ordering::Acquire);
        self.rndis_set(
            rndis::OID_GEN_CURRENT_PACKET_FILTER,
            &filter.to_le_bytes(),
            steps.bound(),
            "rndis set packet filter",
        )?;

        let data = total - control;
        for q in 0..usize::from(queues) {
            let (start, count) = partition(control, data, q, usize::from(queues));
            let mut st = self.queues[q].state.lock();
            st.tx.install(
                sendbuf.clone(),
                section_size,
                start as u32,
                count,
                self.gpa_capable,
                aggregation,
            );
            st.ready = st.chan.is_some();
        }
        Ok(())
    }

    /// INIT with each candidate in turn.
    fn negotiate(&self, versions: &[u32], steps: Steps) -> Result<u32, NicError> {
        const WHAT: &str = "nvsp init";
        for &version in versions {
            let msg = NvspMessage::Init(nvsp::MessageInit::new(version));
            let (tid, reply) = self.nvsp_request(&msg, steps.bound(), WHAT)?;
            match NvspMessage::parse(&reply).map_err(nvsp_error(WHAT, tid))? {
                NvspMessage::InitComplete(c) if c.status.get() == nvsp::STATUS_SUCCESS => {
                    return Ok(version);
                }
                NvspMessage::InitComplete(c) => {
                    tracing::debug!(version, status = c.status.get(), "nvsp version refused");
                }
                other => return Err(unexpected(WHAT, other.msg_type())),
            }
        }
        Err(NicError::UnsupportedVersion {
            max: versions.first().copied().unwrap_or(0),
        })
    }

    fn send_receive_buffer(
        &self,
        rxbuf: &SharedMemory,
        gpadl: u32,
        steps: Steps,
    ) -> Result<(), NicError> {
        const WHAT: &str = "nvsp send receive buffer";
        let msg = NvspMessage::SendReceiveBuffer(nvsp::Message1SendReceiveBuffer::new(
            gpadl,
            nvsp::RECEIVE_BUFFER_ID,
        ));
        let (tid, reply) = self.nvsp_request(&msg, steps.bound(), WHAT)?;
        let sections = match NvspMessage::parse(&reply).map_err(nvsp_error(WHAT, tid))? {
            NvspMessage::SendReceiveBufferComplete(view) => {
                let section = view.validate(rxbuf.len()).map_err(nvsp_error(WHAT, tid))?;
                section.num_sub_allocations.get() as usize
            }
            other => return Err(unexpected(WHAT, other.msg_type())),
        };
        for q in &self.queues {
            q.state
                .lock()
                .install_receive_buffer(rxbuf.clone(), sections);
        }
        Ok(())
    }

    /// Returns the section size and the number of sections.
    fn send_send_buffer(
        &self,
        sendbuf: &SharedMemory,
        gpadl: u32,
        steps: Steps,
    ) -> Result<(usize, usize), NicError> {
        const WHAT: &str = "nvsp send send buffer";
        let msg = NvspMessage::SendSendBuffer(nvsp::Message1SendSendBuffer::new(
            gpadl,
            nvsp::SEND_BUFFER_ID,
        ));
        let (tid, reply) = self.nvsp_request(&msg, steps.bound(), WHAT)?;
        match NvspMessage::parse(&reply).map_err(nvsp_error(WHAT, tid))? {
            NvspMessage::SendSendBufferComplete(c) => {
                let status = c.status.get();
                if status != nvsp::STATUS_SUCCESS {
                    return Err(NicError::HostRefused { what: WHAT, status });
                }
                let size = c.section_size.get() as usize;
                if size == 0 || size > sendbuf.len() {
                    return Err(NicError::Protocol {
                        queue: 0,
                        msg_type: nvsp::MESSAGE1_TYPE_SEND_SEND_BUFFER_COMPLETE,
                        reason: format!(
                            "send section size {size} unusable for a {}-byte send buffer",
                            sendbuf.len()
                        ),
                    });
                }
                Ok((size, sendbuf.len() / size))
            }
            other => Err(unexpected(WHAT, other.msg_type())),
        }
    }

    /// MAC, MTU, offloads (module `offload`), link state and speed.
    fn query_device(
        &self,
        keep_mac: Option<MacAddr>,
        version: u32,
        steps: Steps,
    ) -> Result<(), NicError> {
        const WHAT: &str = "rndis query mac address";
        let info = self.rndis_query(rndis::OID_802_3_CURRENT_ADDRESS, &[], steps.bound(), WHAT)?;
        let mac = info
            .get(..6)
            .and_then(|b| <[u8; 6]>::try_from(b).ok())
            .map(MacAddr)
            .ok_or_else(|| NicError::Protocol {
                queue: 0,
                msg_type: rndis::MESSAGE_TYPE_QUERY_CMPLT,
                reason: format!("mac address of {} bytes", info.len()),
            })?;
        match keep_mac {
            Some(old) if old != mac => {
                tracing::warn!(%old, new = %mac, "host reports another mac; keeping the old one");
            }
            Some(_) => {}
            None => self.set_mac(mac),
        }
        let max_frame = self.rndis_query_u32(
            rndis::OID_GEN_MAXIMUM_FRAME_SIZE,
            steps.bound(),
            "rndis query maximum frame size",
        )?;
        let host_mtu = max_frame as usize;
        if host_mtu < self.config.mtu {
            tracing::warn!(
                host_mtu,
                asked = self.config.mtu,
                "host allows a smaller mtu than configured"
            );
        }
        self.set_mtu(self.config.mtu.min(host_mtu.max(super::config::MIN_MTU)));
        self.configure_offloads(version, steps)?;
        let media = self.rndis_query_u32(
            rndis::OID_GEN_MEDIA_CONNECT_STATUS,
            steps.bound(),
            "rndis query media connect status",
        )?;
        let up = media == rndis::MEDIA_STATE_CONNECTED;
        if self.set_link_up(up) && keep_mac.is_some() {
            self.push_event(if up {
                super::NicEvent::LinkUp
            } else {
                super::NicEvent::LinkDown
            });
        }
        if version >= nvsp::VERSION_5 {
            let speed = self.rndis_query_u32(
                rndis::OID_GEN_LINK_SPEED,
                steps.bound(),
                "rndis query link speed",
            )?;
            self.set_link_speed(u64::from(speed) * 100);
        }
        Ok(())
    }

    /// RSS capabilities, SUB_CHANNEL allocate, and opening what the host granted; returns
    /// the number of subchannels open.
    fn open_subchannels(&self, wanted: u16, steps: Steps) -> Result<u16, NicError> {
        const WHAT: &str = "nvsp subchannel request";
        let caps = self
            .rndis_query(
                rndis::OID_GEN_RECEIVE_SCALE_CAPABILITIES,
                &NdisReceiveScaleCapabilities::query_input(),
                steps.bound(),
                "rndis query rss capabilities",
            )
            .and_then(|info| {
                NdisReceiveScaleCapabilities::parse(&info).map_err(|source| NicError::Rndis {
                    what: "rss capabilities",
                    request_id: 0,
                    source,
                })
            });
        let caps = match caps {
            Ok(caps) => caps,
            Err(e @ (NicError::Timeout { .. } | NicError::ChannelDead)) => return Err(e),
            Err(error) => {
                tracing::warn!(%error, "no rss capabilities; using one queue");
                return Ok(0);
            }
        };
        let host_queues = caps.number_of_receive_queues.get();
        let want = u32::from(wanted).min(host_queues.saturating_sub(1));
        if want == 0 {
            return Ok(0);
        }
        let msg = NvspMessage::SubchannelRequest(nvsp::Message5SubchannelRequest::allocate(want));
        let (tid, reply) = self.nvsp_request(&msg, steps.bound(), WHAT)?;
        let granted = match NvspMessage::parse(&reply).map_err(nvsp_error(WHAT, tid))? {
            NvspMessage::SubchannelComplete(c) => {
                let status = c.status.get();
                if status != nvsp::STATUS_SUCCESS {
                    return Err(NicError::HostRefused { what: WHAT, status });
                }
                c.num_sub_channels.get().min(want) as u16
            }
            other => return Err(unexpected(WHAT, other.msg_type())),
        };
        if granted == 0 {
            return Ok(0);
        }
        let bound = steps.bound();
        let remaining = bound
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        let mut device = self.device.lock();
        let rings = device.open_subchannels(granted, remaining)?;
        let mut opened = 0;
        for rings in rings {
            let index = usize::from(rings.index);
            if index == 0 || index >= self.queues.len() {
                continue;
            }
            let doorbell = device.doorbell(rings.index)?;
            self.queues[index]
                .state
                .lock()
                .install_channel(rings, doorbell)?;
            opened += 1;
        }
        Ok(opened)
    }

    fn set_rss(&self, queues: u16, steps: Steps) -> Result<(), NicError> {
        const WHAT: &str = "rndis set rss parameters";
        let entries = u32::from(rndis::DEFAULT_RSS_INDIRECTION_TABLE_SIZE);
        let params = RssParameters {
            flags: 0,
            hash_information: rndis::DEFAULT_RSS_HASH_INFORMATION,
            indirection_table: (0..entries).map(|i| i % u32::from(queues)).collect(),
            hash_key: rndis::RSS_HASH_KEY_MICROSOFT.to_vec(),
        };
        let mut value = vec![0u8; params.encoded_len()];
        params
            .encode(&mut value)
            .map_err(|source| NicError::Rndis {
                what: WHAT,
                request_id: 0,
                source,
            })?;
        self.rndis_set(
            rndis::OID_GEN_RECEIVE_SCALE_PARAMETERS,
            &value,
            steps.bound(),
            WHAT,
        )
    }
}
