//! RNDIS control: INITIALIZE, QUERY and SET of OIDs with OpenVMM's answers, KEEPALIVE, HALT,
//! the unsupported messages that stop the worker, and the host's status indications (link,
//! network change, offload configuration).
//!
//! Every reply and indication is queued on the primary channel and goes out in a control
//! buffer once the send that caused it has been completed. RESET, SET_EX, INDICATE_STATUS, a
//! second INITIALIZE and unknown messages are completed `{108, 1}` and then stop the worker.
//! A QUERY before INITIALIZE is answered normally; HALT gets only its send completion. Unknown
//! OIDs get `NOT_SUPPORTED` (0xC00000BB). The link is up from the start, with no initial
//! indication; a same-state link request is a toggle whose second half follows `link_delay`
//! later.

use std::sync::atomic::Ordering;
use std::time::Instant;

use netvsc::nvsp;
use netvsc::rndis::{self, NdisOffload, NdisOffloadParameters, RndisMessage, RssParameters};
use zerocopy::byteorder::little_endian::U32;
use zerocopy::{FromZeros, IntoBytes};

use super::tx::SendOutcome;
use super::{OutMsg, Session};
use crate::host::stats::{TeardownStep, bump};
use crate::host::vswitch::RssState;

/// Vendor id OpenVMM reports (Microsoft's OUI, 00-15-5D).
const VENDOR_ID: u32 = 0x0000_155D;
/// `OID_GEN_VENDOR_ID`.
const OID_GEN_VENDOR_ID: u32 = 0x0001_010C;
/// `OID_GEN_MAXIMUM_SEND_PACKETS`.
const OID_GEN_MAXIMUM_SEND_PACKETS: u32 = 0x0001_0115;
/// `OID_GEN_MAC_OPTIONS`.
const OID_GEN_MAC_OPTIONS: u32 = 0x0001_0113;
/// `NDIS_MAC_OPTION_8021Q_VLAN`.
const NDIS_MAC_OPTION_8021Q_VLAN: u32 = 0x0000_0200;
/// RSS capability flags OpenVMM reports: TCP/IPv4, TCP/IPv6, Toeplitz.
const RSS_CAPS_FLAGS: u32 = rndis::NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4
    | rndis::NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6
    | rndis::NDIS_RSS_CAPS_HASH_FUNCTION_TOEPLITZ;
/// NDIS_OFFLOAD checksum capability bits for IPv4 (options, TCP options, TCP, UDP, IP).
const CSUM_V4: u32 = rndis::NDIS_CSUM_CAP_IP4_OPTIONS
    | rndis::NDIS_CSUM_CAP_TCP4_OPTIONS
    | rndis::NDIS_CSUM_CAP_TCP4
    | rndis::NDIS_CSUM_CAP_UDP4
    | rndis::NDIS_CSUM_CAP_IP4;
/// NDIS_OFFLOAD checksum capability bits for IPv6 (extension headers, TCP options, TCP, UDP).
const CSUM_V6: u32 = rndis::NDIS_CSUM_CAP_IP6_EXTENSION_HEADERS
    | rndis::NDIS_CSUM_CAP_TCP6_OPTIONS
    | rndis::NDIS_CSUM_CAP_TCP6
    | rndis::NDIS_CSUM_CAP_UDP6;
/// Largest LSOv2 offload OpenVMM's endpoints report.
const LSO_MAX_SIZE: u32 = 0xF53C;

/// RNDIS state of a session.
#[derive(Clone, Debug, Default)]
pub(crate) struct RndisState {
    pub initialized: bool,
    pub halted: bool,
    pub filter: u32,
    /// The guest's offload parameters (transmit checksum and LSO switched off where 1 = off or
    /// 3 = receive only).
    pub offload: Option<NdisOffloadParameters>,
}

impl Session {
    /// One RNDIS control message (from a send on the primary channel).
    pub(super) fn rndis_control(&mut self, bytes: &[u8]) -> SendOutcome {
        let ok = SendOutcome::Status(nvsp::STATUS_SUCCESS);
        let fatal_after = |what: &str| {
            SendOutcome::StatusThenFatal(nvsp::STATUS_SUCCESS, format!("unsupported RNDIS {what}"))
        };
        let message = match RndisMessage::parse(bytes) {
            Ok(m) => m,
            Err(_) => return SendOutcome::Status(nvsp::STATUS_FAILURE),
        };
        match message {
            RndisMessage::Initialize(m) => {
                if self.rndis.initialized {
                    return fatal_after("second INITIALIZE");
                }
                self.rndis.initialized = true;
                let reply = rndis::InitializeComplete::host_default(m.request_id.get());
                self.queue_rndis(|out| rndis::encode_initialize_complete(out, &reply));
                self.vf_after_rndis_init();
                ok
            }
            RndisMessage::Query(r) => {
                let info = r.info.get(bytes).unwrap_or_default().to_vec();
                let (status, answer) = self.query(r.oid, &info);
                self.queue_rndis(|out| {
                    rndis::encode_query_complete(out, r.request_id, status, &answer)
                });
                ok
            }
            RndisMessage::Set(r) => {
                let info = r.info.get(bytes).unwrap_or_default().to_vec();
                let status = self.set(r.oid, &info);
                self.queue_rndis(|out| rndis::encode_set_complete(out, r.request_id, status));
                if r.oid == rndis::OID_TCP_OFFLOAD_PARAMETERS
                    && status == rndis::STATUS_SUCCESS
                    && self.rndis.initialized
                {
                    let config = self.offload_config();
                    self.queue_indication(
                        rndis::STATUS_TASK_OFFLOAD_CURRENT_CONFIG,
                        config.wire_bytes(),
                    );
                }
                ok
            }
            RndisMessage::Keepalive(m) => {
                let id = m.request_id.get();
                self.queue_rndis(|out| {
                    rndis::encode_keepalive_complete(out, id, rndis::STATUS_SUCCESS)
                });
                ok
            }
            RndisMessage::Halt(_) => {
                self.rndis.halted = true;
                self.stats.record_teardown(TeardownStep::RndisHalt);
                ok
            }
            RndisMessage::Reset(_) => fatal_after("RESET"),
            RndisMessage::SetEx(_) => fatal_after("SET_EX"),
            RndisMessage::IndicateStatus(_) => fatal_after("INDICATE_STATUS"),
            other => fatal_after(&format!("message {:#x}", other.msg_type())),
        }
    }

    /// Queues the RNDIS message `encode` writes.
    fn queue_rndis(&mut self, encode: impl FnOnce(&mut [u8]) -> Result<usize, rndis::RndisError>) {
        let mut buf = vec![0u8; 1024];
        match encode(&mut buf) {
            Ok(len) => {
                buf.truncate(len);
                self.queue_out(OutMsg::Control(buf));
            }
            Err(e) => tracing::warn!(target: "hvnet::host", "cannot encode an RNDIS reply: {e}"),
        }
    }

    /// Queues an INDICATE_STATUS (only once RNDIS is initialised).
    pub(crate) fn queue_indication(&mut self, status: u32, buffer: &[u8]) {
        if !self.rndis.initialized || self.dead {
            return;
        }
        bump(&self.stats.indications, 1);
        self.queue_rndis(|out| rndis::encode_indicate_status(out, status, buffer));
    }

    /// Queues the media connect or disconnect indication.
    pub(super) fn queue_link_indication(&mut self, up: bool) {
        let status = if up {
            rndis::STATUS_MEDIA_CONNECT
        } else {
            rndis::STATUS_MEDIA_DISCONNECT
        };
        self.queue_indication(status, &[]);
    }

    /// The endpoint reports link `up`: a change is indicated at once; the same state is a
    /// toggle, the second transition `link_delay` later.
    pub(super) fn set_link(&mut self, up: bool, now: Instant) {
        if up != self.persist.link_up {
            self.persist.link_up = up;
            self.persist.link_toggle = None;
            self.queue_link_indication(up);
        } else {
            self.persist.link_up = !up;
            self.queue_link_indication(!up);
            self.persist.link_toggle = Some((now + self.config.link_delay, up));
        }
    }

    /// The NDIS_OFFLOAD the endpoint supports (OpenVMM's loopback: receive checksums always;
    /// transmit checksums and LSOv2 only when the endpoint claims them).
    fn offload_caps(&self) -> NdisOffload {
        let mut o = NdisOffload::new_zeroed();
        o.header = rndis::NdisObjectHeader::new(
            rndis::NDIS_OBJECT_TYPE_OFFLOAD,
            3,
            rndis::NDIS_OFFLOAD_SIZE_REVISION_3,
        );
        let encap = U32::new(rndis::NDIS_ENCAPSULATION_IEEE_802_3);
        let c = &mut o.checksum;
        c.ipv4_tx_encapsulation = encap;
        c.ipv4_rx_encapsulation = encap;
        c.ipv6_tx_encapsulation = encap;
        c.ipv6_rx_encapsulation = encap;
        c.ipv4_rx_flags = U32::new(CSUM_V4);
        c.ipv6_rx_flags = U32::new(CSUM_V6);
        if self.config.tx_offloads {
            c.ipv4_tx_flags = U32::new(CSUM_V4);
            c.ipv6_tx_flags = U32::new(CSUM_V6);
            let l = &mut o.lso_v2;
            l.ipv4_encapsulation = encap;
            l.ipv4_max_offload_size = U32::new(LSO_MAX_SIZE);
            l.ipv4_min_segment_count = U32::new(2);
            l.ipv6_encapsulation = encap;
            l.ipv6_max_offload_size = U32::new(LSO_MAX_SIZE);
            l.ipv6_min_segment_count = U32::new(2);
            l.ipv6_flags = U32::new(
                rndis::NDIS_LSOV2_CAP_IP6_EXTENSION_HEADERS | rndis::NDIS_LSOV2_CAP_TCP6_OPTIONS,
            );
        }
        o
    }

    /// The current offload configuration: the capabilities, with the transmit offloads the
    /// guest switched off removed.
    fn offload_config(&self) -> NdisOffload {
        let mut o = self.offload_caps();
        let Some(p) = self.rndis.offload else {
            return o;
        };
        let tx_off = |v: u8| {
            v == rndis::NDIS_OFFLOAD_PARAMETERS_TX_RX_DISABLED
                || v == rndis::NDIS_OFFLOAD_PARAMETERS_RX_ENABLED_TX_DISABLED
        };
        if tx_off(p.ipv4_checksum) && tx_off(p.tcp4_checksum) && tx_off(p.udp4_checksum) {
            o.checksum.ipv4_tx_flags = U32::ZERO;
        }
        if tx_off(p.tcp6_checksum) && tx_off(p.udp6_checksum) {
            o.checksum.ipv6_tx_flags = U32::ZERO;
        }
        if p.lsov2_ipv4 == rndis::NDIS_OFFLOAD_PARAMETERS_DISABLED {
            o.lso_v2.ipv4_encapsulation = U32::ZERO;
            o.lso_v2.ipv4_max_offload_size = U32::ZERO;
            o.lso_v2.ipv4_min_segment_count = U32::ZERO;
        }
        if p.lsov2_ipv6 == rndis::NDIS_OFFLOAD_PARAMETERS_DISABLED {
            o.lso_v2.ipv6_encapsulation = U32::ZERO;
            o.lso_v2.ipv6_max_offload_size = U32::ZERO;
            o.lso_v2.ipv6_min_segment_count = U32::ZERO;
            o.lso_v2.ipv6_flags = U32::ZERO;
        }
        o
    }

    /// Answers a QUERY: `(status, information buffer)`.
    fn query(&self, oid: u32, _input: &[u8]) -> (u32, Vec<u8>) {
        let u32_answer = |v: u32| (rndis::STATUS_SUCCESS, v.to_le_bytes().to_vec());
        let mtu = self
            .ndis_config
            .map_or(nvsp::MIN_NDIS_CONFIG_MTU, |c| c.mtu);
        let speed = self.config.link_speed_bps;
        match oid {
            rndis::OID_802_3_PERMANENT_ADDRESS | rndis::OID_802_3_CURRENT_ADDRESS => {
                (rndis::STATUS_SUCCESS, self.config.mac.0.to_vec())
            }
            rndis::OID_GEN_MAXIMUM_FRAME_SIZE => u32_answer(mtu - nvsp::ETHERNET_HEADER_LEN),
            rndis::OID_GEN_LINK_SPEED => u32_answer((speed / 100).min(u64::from(u32::MAX)) as u32),
            // The link as it is now: a client that learns the link only from this query
            // (DPDK's PMD re-queries after every status indication) must see it go down.
            rndis::OID_GEN_MEDIA_CONNECT_STATUS => u32_answer(if self.persist.link_up {
                rndis::MEDIA_STATE_CONNECTED
            } else {
                rndis::MEDIA_STATE_DISCONNECTED
            }),
            rndis::OID_GEN_LINK_STATE => {
                let state = rndis::NdisLinkState::new(self.persist.link_up, speed);
                (rndis::STATUS_SUCCESS, state.as_bytes().to_vec())
            }
            rndis::OID_GEN_MAX_LINK_SPEED => {
                let mut v = speed.to_le_bytes().to_vec();
                v.extend_from_slice(&speed.to_le_bytes());
                (rndis::STATUS_SUCCESS, v)
            }
            rndis::OID_GEN_CURRENT_PACKET_FILTER => u32_answer(0),
            rndis::OID_GEN_FRIENDLY_NAME => {
                let name: Vec<u8> = "Network Device\0"
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes)
                    .collect();
                (rndis::STATUS_SUCCESS, name)
            }
            OID_GEN_VENDOR_ID => u32_answer(VENDOR_ID),
            OID_GEN_MAXIMUM_SEND_PACKETS => u32_answer(u32::MAX),
            OID_GEN_MAC_OPTIONS => u32_answer(NDIS_MAC_OPTION_8021Q_VLAN),
            rndis::OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES => (
                rndis::STATUS_SUCCESS,
                self.offload_caps().wire_bytes().to_vec(),
            ),
            rndis::OID_TCP_OFFLOAD_CURRENT_CONFIG => (
                rndis::STATUS_SUCCESS,
                self.offload_config().wire_bytes().to_vec(),
            ),
            rndis::OID_GEN_RECEIVE_SCALE_CAPABILITIES
                if self.ndis_version.unwrap_or(0) >= nvsp::NDIS_VERSION_6_30 =>
            {
                let entries = match self.config.rss_table_size {
                    0 => rndis::DEFAULT_RSS_INDIRECTION_TABLE_SIZE,
                    n => n,
                };
                let caps = rndis::NdisReceiveScaleCapabilities::new(
                    RSS_CAPS_FLAGS,
                    u32::from(self.config.max_queues.min(64)),
                    entries,
                );
                (rndis::STATUS_SUCCESS, caps.wire_bytes().to_vec())
            }
            _ => (rndis::STATUS_NOT_SUPPORTED, Vec::new()),
        }
    }

    /// Applies a SET; returns its status.
    fn set(&mut self, oid: u32, info: &[u8]) -> u32 {
        match oid {
            rndis::OID_GEN_CURRENT_PACKET_FILTER => {
                let Some(v) = info.get(..4) else {
                    return rndis::STATUS_INVALID_LENGTH;
                };
                let filter = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                self.rndis.filter = filter;
                self.stats.packet_filter.store(filter, Ordering::Relaxed);
                rndis::STATUS_SUCCESS
            }
            rndis::OID_TCP_OFFLOAD_PARAMETERS => match NdisOffloadParameters::parse(info) {
                Ok(p) => {
                    self.rndis.offload = Some(p);
                    rndis::STATUS_SUCCESS
                }
                Err(_) => rndis::STATUS_INVALID_DATA,
            },
            rndis::OID_GEN_RECEIVE_SCALE_PARAMETERS => match RssParameters::parse(info) {
                Ok(p) => {
                    let disabled = p.flags & rndis::NDIS_RSS_PARAM_FLAG_DISABLE_RSS != 0;
                    self.switch.set_rss(if disabled {
                        RssState::default()
                    } else {
                        RssState {
                            key: p.hash_key.clone(),
                            table: p.indirection_table.clone(),
                        }
                    });
                    rndis::STATUS_SUCCESS
                }
                Err(_) => rndis::STATUS_INVALID_DATA,
            },
            rndis::OID_GEN_RNDIS_CONFIG_PARAMETER
            | rndis::OID_OFFLOAD_ENCAPSULATION
            | rndis::OID_802_3_MULTICAST_LIST => rndis::STATUS_SUCCESS,
            _ => rndis::STATUS_NOT_SUPPORTED,
        }
    }
}
