//! The neutral data model the publisher exports: a [`PortSample`] per port, which the program
//! fills from whatever its ports count (hvnet: `bond::FailoverStats`, `netvsc`'s `NicStats`,
//! the run's own per-queue counters), and [`Emitter`], which turns samples into `metrics`
//! calls: counters with `absolute`, gauges with `set`. Durations of rare events go straight
//! to the histograms ([`record_failover`], [`record_failback`]).
//!
//! Every value here is a total since the port opened; nothing is a delta.

use std::collections::BTreeSet;
use std::time::Duration;

use metrics::Label;

use crate::catalogue::{self, Metric};

/// One of the port's two paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Path {
    /// VMBus: the synthetic NIC.
    #[default]
    Synthetic,
    /// The SR-IOV VF.
    Vf,
}

impl Path {
    /// The `path` label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Synthetic => "synthetic",
            Path::Vf => "vf",
        }
    }
}

/// A value for each path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByPath<T> {
    /// The synthetic path's.
    pub synthetic: T,
    /// The VF's.
    pub vf: T,
}

impl<T: Copy> ByPath<T> {
    /// Each path with its value.
    pub fn each(&self) -> [(Path, T); 2] {
        [(Path::Synthetic, self.synthetic), (Path::Vf, self.vf)]
    }
}

/// The failover port's state (DESIGN §4), as the `state` label says it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PortState {
    /// No VF in use.
    #[default]
    Synthetic,
    /// A VF is bound, the data path still synthetic.
    VfAttaching,
    /// Switching to the VF.
    SwitchingToVf,
    /// Transmit goes to the VF.
    OnVf,
    /// Leaving the VF.
    SwitchingToSynthetic,
}

impl PortState {
    /// Every state, in the catalogue's order.
    pub const ALL: [PortState; 5] = [
        PortState::Synthetic,
        PortState::VfAttaching,
        PortState::SwitchingToVf,
        PortState::OnVf,
        PortState::SwitchingToSynthetic,
    ];

    /// The `state` label's value.
    pub fn as_str(self) -> &'static str {
        match self {
            PortState::Synthetic => "synthetic",
            PortState::VfAttaching => "vf_attaching",
            PortState::SwitchingToVf => "switching_to_vf",
            PortState::OnVf => "on_vf",
            PortState::SwitchingToSynthetic => "switching_to_synthetic",
        }
    }
}

/// The VF in use.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct VfInfo {
    /// Its PCI address.
    pub pci_address: String,
    /// The association serial (its PCI slot), when known.
    pub serial: Option<u32>,
    /// The driver that runs it (hvnet's own, e.g. `igbvf`, or the kernel's).
    pub driver: String,
}

/// Counters of one queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSample {
    /// Frames received, per path.
    pub rx_packets: ByPath<u64>,
    /// Frames taken for transmit, per path.
    pub tx_packets: ByPath<u64>,
    /// Bytes received, per path where counted.
    pub rx_bytes: ByPath<Option<u64>>,
    /// Bytes sent, per path where counted.
    pub tx_bytes: ByPath<Option<u64>>,
    /// Receive drops by reason (`catalogue::RX_DROP_REASONS`).
    pub rx_dropped: Vec<(&'static str, u64)>,
    /// Transmit drops by reason (`catalogue::TX_DROP_REASONS`).
    pub tx_dropped: Vec<(&'static str, u64)>,
    /// Transmit bursts stopped early, by reason (`catalogue::TX_STALL_REASONS`).
    pub tx_stalls: Vec<(&'static str, u64)>,
    /// Frames that found no free send section.
    pub tx_no_section: u64,
}

/// Port-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Switches the host took back at once.
    pub switches_refused: u64,
    /// NVSP 129 requests that failed.
    pub switch_errors: u64,
    /// VFs attached.
    pub vf_attached: u64,
    /// VFs released.
    pub vf_released: u64,
    /// Failed looks for or opens of a VF.
    pub vf_attach_errors: u64,
    /// Associations whose VF never appeared.
    pub vf_appear_timeouts: u64,
    /// VFs given up after a reset.
    pub vf_reset_timeouts: u64,
    /// VFs hvnet has no driver for.
    pub vf_unsupported: u64,
    /// VFs with another MAC.
    pub vf_mac_mismatches: u64,
    /// Frames stranded on a VF that went away.
    pub tx_stranded: u64,
    /// Sessions the watchdog re-established.
    pub watchdog_reestablished: u64,
    /// Failed keepalives or re-establishments.
    pub watchdog_failures: u64,
    /// Host messages ignored (unknown types, stray completions).
    pub host_protocol_errors: u64,
}

/// Everything exported about one port at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSample {
    /// The `device` label: the NetVSC's instance GUID.
    pub device: String,
    /// The port's state.
    pub state: PortState,
    /// Where transmit goes.
    pub data_path: Path,
    /// Each path's link.
    pub link_up: ByPath<bool>,
    /// The VF in use, if any.
    pub vf: Option<VfInfo>,
    /// Per queue, index = queue.
    pub queues: Vec<QueueSample>,
    /// Switches to the VF.
    pub switches_to_vf: u64,
    /// Switches back to synthetic, by reason (`catalogue::SWITCH_REASONS`).
    pub switches_to_synthetic: Vec<(&'static str, u64)>,
    /// Bounded waits that ran out, by wait (`catalogue::WAITS`).
    pub wait_timeouts: Vec<(&'static str, u64)>,
    /// Port-wide counters.
    pub counters: PortCounters,
}

/// The labels of a series of `metric`, checked against the catalogue in debug builds.
fn labels(metric: &Metric, pairs: &[(&'static str, &str)]) -> Vec<Label> {
    debug_assert_eq!(
        pairs.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        metric.labels,
        "{}: labels",
        metric.name
    );
    debug_assert!(
        pairs.iter().all(|(k, v)| metric.allows(k, v)),
        "{}: a label value outside the catalogue: {pairs:?}",
        metric.name
    );
    pairs
        .iter()
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect()
}

fn counter(metric: &Metric, pairs: &[(&'static str, &str)], value: u64) {
    debug_assert_eq!(metric.kind, catalogue::Kind::Counter, "{}", metric.name);
    metrics::counter!(metric.name, labels(metric, pairs)).absolute(value);
}

fn gauge(metric: &Metric, pairs: &[(&'static str, &str)], value: f64) {
    debug_assert_eq!(metric.kind, catalogue::Kind::Gauge, "{}", metric.name);
    metrics::gauge!(metric.name, labels(metric, pairs)).set(value);
}

fn flag(on: bool) -> f64 {
    if on { 1.0 } else { 0.0 }
}

/// Records a failover of `device` (trigger to transmit on synthetic) in
/// `hvnet_failover_duration_seconds`.
pub fn record_failover(device: &str, duration: Duration) {
    let m = &catalogue::FAILOVER_DURATION;
    metrics::histogram!(m.name, labels(m, &[("device", device)])).record(duration.as_secs_f64());
}

/// Records a switch of `device` to the VF in `hvnet_failback_duration_seconds`.
pub fn record_failback(device: &str, duration: Duration) {
    let m = &catalogue::FAILBACK_DURATION;
    metrics::histogram!(m.name, labels(m, &[("device", device)])).record(duration.as_secs_f64());
}

/// Turns samples into `metrics` calls on the current recorder. Remembers the VFs it has seen,
/// so a VF no longer in use reads 0 in `hvnet_vf_info` (the exporter keeps a series once
/// made).
#[derive(Debug, Default)]
pub struct Emitter {
    vfs_seen: BTreeSet<(String, VfInfo)>,
}

impl Emitter {
    /// An emitter that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exports every sample.
    pub fn emit(&mut self, samples: &[PortSample]) {
        for s in samples {
            self.emit_port(s);
        }
    }

    fn emit_port(&mut self, s: &PortSample) {
        use catalogue as c;
        let device = s.device.as_str();
        let d = [("device", device)];
        for (q, queue) in s.queues.iter().enumerate() {
            let q = q.to_string();
            let q = q.as_str();
            for (path, n) in queue.rx_packets.each() {
                let l = [("device", device), ("queue", q), ("path", path.as_str())];
                counter(&c::RX_PACKETS, &l, n);
            }
            for (path, n) in queue.tx_packets.each() {
                let l = [("device", device), ("queue", q), ("path", path.as_str())];
                counter(&c::TX_PACKETS, &l, n);
            }
            for (path, n) in queue.rx_bytes.each() {
                if let Some(n) = n {
                    let l = [("device", device), ("queue", q), ("path", path.as_str())];
                    counter(&c::RX_BYTES, &l, n);
                }
            }
            for (path, n) in queue.tx_bytes.each() {
                if let Some(n) = n {
                    let l = [("device", device), ("queue", q), ("path", path.as_str())];
                    counter(&c::TX_BYTES, &l, n);
                }
            }
            for (metric, by_reason) in [
                (&c::RX_DROPPED, &queue.rx_dropped),
                (&c::TX_DROPPED, &queue.tx_dropped),
                (&c::TX_STALLS, &queue.tx_stalls),
            ] {
                for (reason, n) in by_reason {
                    let l = [("device", device), ("queue", q), ("reason", *reason)];
                    counter(metric, &l, *n);
                }
            }
            counter(
                &c::TX_NO_SECTION,
                &[("device", device), ("queue", q)],
                queue.tx_no_section,
            );
        }
        for path in [Path::Synthetic, Path::Vf] {
            let l = [("device", device), ("path", path.as_str())];
            gauge(&c::DATA_PATH, &l, flag(s.data_path == path));
        }
        for state in PortState::ALL {
            let l = [("device", device), ("state", state.as_str())];
            gauge(&c::PORT_STATE, &l, flag(s.state == state));
        }
        for (path, up) in s.link_up.each() {
            gauge(
                &c::LINK_UP,
                &[("device", device), ("path", path.as_str())],
                flag(up),
            );
        }
        if let Some(vf) = &s.vf {
            self.vfs_seen.insert((s.device.clone(), vf.clone()));
        }
        for (dev, vf) in &self.vfs_seen {
            if dev != device {
                continue;
            }
            let serial = vf.serial.map(|n| n.to_string()).unwrap_or_default();
            let l = [
                ("device", device),
                ("pci_address", vf.pci_address.as_str()),
                ("serial", serial.as_str()),
                ("driver", vf.driver.as_str()),
            ];
            gauge(&c::VF_INFO, &l, flag(s.vf.as_ref() == Some(vf)));
        }
        counter(
            &c::SWITCHES,
            &[
                ("device", device),
                ("direction", "to_vf"),
                ("reason", "vf_ready"),
            ],
            s.switches_to_vf,
        );
        for (reason, n) in &s.switches_to_synthetic {
            let l = [
                ("device", device),
                ("direction", "to_synthetic"),
                ("reason", *reason),
            ];
            counter(&c::SWITCHES, &l, *n);
        }
        for (wait, n) in &s.wait_timeouts {
            counter(
                &c::WAIT_TIMEOUTS,
                &[("device", device), ("wait", *wait)],
                *n,
            );
        }
        let k = &s.counters;
        for (metric, n) in [
            (&c::SWITCHES_REFUSED, k.switches_refused),
            (&c::SWITCH_ERRORS, k.switch_errors),
            (&c::VF_ATTACHED, k.vf_attached),
            (&c::VF_RELEASED, k.vf_released),
            (&c::VF_ATTACH_ERRORS, k.vf_attach_errors),
            (&c::VF_APPEAR_TIMEOUTS, k.vf_appear_timeouts),
            (&c::VF_RESET_TIMEOUTS, k.vf_reset_timeouts),
            (&c::VF_UNSUPPORTED, k.vf_unsupported),
            (&c::VF_MAC_MISMATCHES, k.vf_mac_mismatches),
            (&c::TX_STRANDED, k.tx_stranded),
            (&c::WATCHDOG_REESTABLISHED, k.watchdog_reestablished),
            (&c::WATCHDOG_FAILURES, k.watchdog_failures),
            (&c::HOST_PROTOCOL_ERRORS, k.host_protocol_errors),
        ] {
            counter(metric, &d, n);
        }
    }
}
