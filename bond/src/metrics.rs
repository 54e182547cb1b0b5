//! The failover port's counters as telemetry's model (feature `telemetry`): every counter of
//! [`FailoverStats`] and the synthetic NIC's `NicStats` in exactly one series of the catalogue
//! (docs/metrics.md). A publisher thread calls [`port_sample`] once a second; the pollers never
//! call `metrics` (DESIGN §3). `hvnet run`, `hvnet demo` and the instruction-count bench use
//! the same mapping.

use std::collections::HashMap;
use std::path::Path;

use netvsc::nic::NicStats;
use parking_lot::Mutex;
use telemetry::{ByPath, PortCounters, PortSample, PortState, QueueSample, VfInfo};

use crate::{FailoverEvent, FailoverPort, FailoverStats, SwitchReason};

/// What the mapping keeps about a port between samples: the `device` label, the VF's serial
/// (from the port's events) and the drivers of the VFs seen.
#[derive(Debug)]
pub struct PortLabels {
    /// The `device` label: the NetVSC's instance GUID.
    pub device: String,
    /// (PCI address, association serial) of the last VF attached.
    serial: Mutex<Option<(String, u32)>>,
    /// Driver by PCI address, looked up once per VF.
    drivers: Mutex<HashMap<String, String>>,
}

impl PortLabels {
    /// Labels for the port on NetVSC `device`.
    pub fn new(device: impl Into<String>) -> Self {
        Self {
            device: device.into(),
            serial: Mutex::new(None),
            drivers: Mutex::new(HashMap::new()),
        }
    }

    /// Feeds a port event to the metrics: the duration histograms and the VF's serial.
    pub fn observe(&self, event: &FailoverEvent) {
        match event {
            FailoverEvent::VfAttached { serial, device } => {
                *self.serial.lock() = Some((device.clone(), *serial));
            }
            FailoverEvent::SwitchedToVf { duration } => {
                telemetry::record_failback(&self.device, *duration);
            }
            FailoverEvent::SwitchedToSynthetic { failover, .. } => {
                telemetry::record_failover(&self.device, *failover);
            }
            _ => {}
        }
    }

    /// The VF in use as the model has it; `driver` names the driver that runs the VF at
    /// `pci_address` (looked up once per address).
    fn vf(&self, stats: &FailoverStats, driver: impl FnOnce(&str) -> String) -> Option<VfInfo> {
        let name = stats.vf.clone()?;
        let serial = self
            .serial
            .lock()
            .as_ref()
            .filter(|(device, _)| *device == name)
            .map(|(_, serial)| *serial);
        let (pci_address, transport) = vf_name_parts(&name);
        let driver = self
            .drivers
            .lock()
            .entry(name.clone())
            .or_insert_with(|| match transport {
                Some(transport) => format!("{} ({transport})", driver(pci_address)),
                None => driver(pci_address),
            })
            .clone();
        Some(VfInfo {
            pci_address: pci_address.to_owned(),
            serial,
            driver,
        })
    }
}

/// A VF's name as the providers give it — its PCI address (or, without one, its interface),
/// then ` (interface)` and ` [transport]` for a VF the kernel keeps — split into the address
/// and the transport.
pub fn vf_name_parts(name: &str) -> (&str, Option<&str>) {
    let (device, transport) = match name.strip_suffix(']').and_then(|n| n.rsplit_once(" [")) {
        Some((device, transport)) => (device, Some(transport)),
        None => (name, None),
    };
    let address = device.split_once(" (").map_or(device, |(a, _)| a);
    (address, transport)
}

/// The driver that runs the VF at `bdf` under `sysfs_root`: hvnet's own when it is bound to
/// vfio-pci (`igbvf`), else its kernel driver (hvnet reaches it through AF_PACKET).
pub fn vf_driver(sysfs_root: &Path, bdf: &str) -> String {
    match crate::provider::bound_driver(sysfs_root, bdf) {
        Some(d) if d == "vfio-pci" => crate::provider::pci_id(sysfs_root, bdf)
            .ok()
            .flatten()
            .and_then(|id| id.hvnet_driver())
            .unwrap_or("vfio-pci")
            .to_owned(),
        Some(d) => d,
        None => "unknown".to_owned(),
    }
}

fn state(s: crate::PortState) -> PortState {
    match s {
        crate::PortState::Synthetic => PortState::Synthetic,
        crate::PortState::VfAttaching => PortState::VfAttaching,
        crate::PortState::SwitchingToVf => PortState::SwitchingToVf,
        crate::PortState::OnVf => PortState::OnVf,
        crate::PortState::SwitchingToSynthetic => PortState::SwitchingToSynthetic,
    }
}

/// A port's sample from what the failover port and its NIC count. `vf_driver` names the
/// driver of a VF by its PCI address.
pub fn port_sample(
    labels: &PortLabels,
    port: &FailoverPort,
    vf_driver: impl FnOnce(&str) -> String,
) -> PortSample {
    let stats = port.stats();
    let nic = port.nic().stats();
    sample(labels, &stats, &nic, port.nic().link_up(), vf_driver)
}

/// The mapping itself: every counter of `stats` and `nic` in exactly one series.
pub fn sample(
    labels: &PortLabels,
    stats: &FailoverStats,
    nic: &NicStats,
    synthetic_link_up: bool,
    vf_driver: impl FnOnce(&str) -> String,
) -> PortSample {
    let queues = (0..stats.queues.len().max(nic.queues.len()))
        .map(|i| {
            let f = stats.queues.get(i).cloned().unwrap_or_default();
            let n = nic.queues.get(i).cloned().unwrap_or_default();
            QueueSample {
                rx_packets: ByPath {
                    synthetic: f.rx_synthetic,
                    vf: f.rx_vf,
                },
                tx_packets: ByPath {
                    synthetic: f.tx_synthetic,
                    vf: f.tx_vf,
                },
                rx_bytes: ByPath {
                    synthetic: Some(n.rx_bytes),
                    vf: None,
                },
                tx_bytes: ByPath {
                    synthetic: Some(n.tx_bytes),
                    vf: None,
                },
                rx_dropped: vec![
                    ("no_buffer", n.rx_dropped_no_buffer),
                    ("malformed", n.rx_dropped_malformed),
                    ("overflow", n.rx_dropped_overflow),
                ],
                tx_dropped: vec![("unsendable", n.tx_dropped), ("host_failed", n.tx_failed)],
                tx_stalls: vec![
                    ("ring_full", n.tx_ring_full),
                    ("quota_full", n.tx_quota_full),
                ],
                tx_no_section: n.tx_no_section,
            }
        })
        .collect();
    let host_protocol_errors = nic
        .queues
        .iter()
        .map(|q| q.unknown_messages + q.unknown_completions)
        .sum::<u64>()
        + nic.control_unknown_completions;
    PortSample {
        device: labels.device.clone(),
        state: state(stats.state),
        data_path: if stats.state == crate::PortState::OnVf {
            telemetry::Path::Vf
        } else {
            telemetry::Path::Synthetic
        },
        link_up: ByPath {
            synthetic: synthetic_link_up,
            vf: stats.vf_link_up.unwrap_or(false),
        },
        vf: labels.vf(stats, vf_driver),
        queues,
        switches_to_vf: stats.switches_to_vf,
        switches_to_synthetic: SwitchReason::ALL
            .iter()
            .map(|r| (r.as_str(), stats.switches_to_synthetic.get(*r)))
            .collect(),
        wait_timeouts: vec![
            ("poller_ack", stats.ack_timeouts),
            ("vf_drain", stats.drain_timeouts),
            (
                "tx_order",
                stats.queues.iter().map(|q| q.tx_order_timeouts).sum(),
            ),
            ("control_request", nic.control_timeouts),
        ],
        counters: PortCounters {
            switches_refused: stats.switches_refused,
            switch_errors: stats.switch_errors,
            vf_attached: stats.vf_attached,
            vf_released: stats.vf_released,
            vf_attach_errors: stats.vf_attach_errors,
            vf_appear_timeouts: stats.vf_appear_timeouts,
            vf_reset_timeouts: stats.vf_reset_timeouts,
            vf_unsupported: stats.vf_unsupported,
            vf_mac_mismatches: stats.vf_mac_mismatches,
            tx_stranded: stats.lost_vf_tx,
            watchdog_reestablished: stats.watchdog_reestablished,
            watchdog_failures: stats.watchdog_failures,
            host_protocol_errors,
        },
    }
}

#[cfg(test)]
mod tests {
    use crate::{FailoverQueueStats, PortState as BondState, SwitchCounts};
    use netvsc::nic::QueueStats;

    use super::*;

    #[test]
    fn vf_names_split_into_address_and_transport() {
        assert_eq!(vf_name_parts("0000:00:02.0"), ("0000:00:02.0", None));
        assert_eq!(
            vf_name_parts("1d7c:00:02.0 (eth1) [AF_XDP: native XDP, zero-copy]"),
            ("1d7c:00:02.0", Some("AF_XDP: native XDP, zero-copy"))
        );
        assert_eq!(vf_name_parts("vf0 [AF_PACKET]"), ("vf0", Some("AF_PACKET")));
        let labels = PortLabels::new("dev");
        let stats = FailoverStats {
            vf: Some("1d7c:00:02.0 (eth1) [AF_XDP: generic XDP, copy]".into()),
            ..FailoverStats::default()
        };
        let info = labels.vf(&stats, |bdf| format!("driver-of-{bdf}")).unwrap();
        assert_eq!(info.pci_address, "1d7c:00:02.0");
        assert_eq!(
            info.driver,
            "driver-of-1d7c:00:02.0 (AF_XDP: generic XDP, copy)"
        );
    }

    #[test]
    fn every_counter_lands_in_one_series_with_its_reason() {
        let labels = PortLabels::new("guid");
        labels.observe(&FailoverEvent::VfAttached {
            serial: 7,
            device: "0000:00:07.0".into(),
        });
        let mut switches = SwitchCounts::default();
        switches.0[SwitchReason::Removed as usize] = 3;
        let stats = FailoverStats {
            state: BondState::OnVf,
            vf: Some("0000:00:07.0".into()),
            vf_link_up: Some(true),
            switches_to_vf: 4,
            switches_to_synthetic: switches,
            lost_vf_tx: 9,
            ack_timeouts: 1,
            queues: vec![FailoverQueueStats {
                rx_synthetic: 1,
                rx_vf: 2,
                tx_synthetic: 3,
                tx_vf: 4,
                tx_order_timeouts: 5,
                ..FailoverQueueStats::default()
            }],
            ..FailoverStats::default()
        };
        let nic = NicStats {
            queues: vec![QueueStats {
                rx_bytes: 100,
                tx_bytes: 200,
                rx_dropped_no_buffer: 11,
                rx_dropped_malformed: 12,
                rx_dropped_overflow: 13,
                tx_dropped: 14,
                tx_failed: 15,
                tx_ring_full: 16,
                tx_quota_full: 17,
                tx_no_section: 18,
                unknown_messages: 19,
                unknown_completions: 20,
                ..QueueStats::default()
            }],
            control_unknown_completions: 21,
            control_timeouts: 22,
            ..NicStats::default()
        };
        let mut asked = 0;
        let s = sample(&labels, &stats, &nic, true, |bdf| {
            asked += 1;
            format!("driver-of-{bdf}")
        });
        assert_eq!(asked, 1);
        assert_eq!(
            (s.state, s.data_path),
            (PortState::OnVf, telemetry::Path::Vf)
        );
        assert_eq!(
            s.vf,
            Some(VfInfo {
                pci_address: "0000:00:07.0".into(),
                serial: Some(7),
                driver: "driver-of-0000:00:07.0".into()
            })
        );
        let q = &s.queues[0];
        assert_eq!((q.rx_packets.synthetic, q.rx_packets.vf), (1, 2));
        assert_eq!((q.tx_packets.synthetic, q.tx_packets.vf), (3, 4));
        assert_eq!((q.rx_bytes.synthetic, q.rx_bytes.vf), (Some(100), None));
        assert_eq!(
            q.rx_dropped,
            vec![("no_buffer", 11), ("malformed", 12), ("overflow", 13)]
        );
        assert_eq!(q.tx_dropped, vec![("unsendable", 14), ("host_failed", 15)]);
        assert_eq!(q.tx_stalls, vec![("ring_full", 16), ("quota_full", 17)]);
        assert_eq!(q.tx_no_section, 18);
        assert_eq!(s.counters.host_protocol_errors, 19 + 20 + 21);
        assert_eq!(s.counters.tx_stranded, 9);
        assert_eq!(s.switches_to_vf, 4);
        assert!(s.switches_to_synthetic.contains(&("removed", 3)));
        assert_eq!(s.switches_to_synthetic.len(), SwitchReason::ALL.len());
        assert_eq!(
            s.wait_timeouts,
            vec![
                ("poller_ack", 1),
                ("vf_drain", 0),
                ("tx_order", 5),
                ("control_request", 22)
            ]
        );
        // Every reason the mapping uses is one the catalogue lists.
        for (reason, _) in q.rx_dropped.iter() {
            assert!(telemetry::catalogue::RX_DROP_REASONS.contains(reason));
        }
        for (reason, _) in q.tx_dropped.iter() {
            assert!(telemetry::catalogue::TX_DROP_REASONS.contains(reason));
        }
        for (reason, _) in &s.switches_to_synthetic {
            assert!(
                telemetry::catalogue::SWITCH_REASONS.contains(reason),
                "{reason}"
            );
        }
        // The driver is looked up once per VF.
        let again = sample(&labels, &stats, &nic, true, |_| unreachable!());
        assert_eq!(again.vf, s.vf);
        // Off the VF: synthetic path, no VF, its link down.
        let off = FailoverStats {
            state: BondState::SwitchingToSynthetic,
            ..FailoverStats::default()
        };
        let s = sample(&labels, &off, &nic, false, |_| unreachable!());
        assert_eq!(s.data_path, telemetry::Path::Synthetic);
        assert_eq!((s.link_up.synthetic, s.link_up.vf), (false, false));
        assert!(s.vf.is_none());
    }
}
