//! The catalogue: every metric hvnet exports, in one table ([`ALL`]): the port's (`hvnet run`,
//! `hvnet demo`) and, prefixed `hvnet_sim_host_`, the simulated host's (`hvnet sim-host`).
//!
//! Names are written out in full, suffixes included (`_total` on counters, `_seconds` and
//! `_bytes` for the base units), and the exporter's recommended naming is left off, so the
//! name here is the name on the wire, in `docs/metrics.md` and in a PromQL query. Labels come
//! in one fixed order (the `metrics` crate's keys are order-sensitive): `device` (the NetVSC's
//! instance GUID), then `queue`, `path` (`synthetic`, `vf`), `direction`, `reason`, `state`,
//! and the VF's identity.
//!
//! A label whose values are a closed set lists them in [`Metric::values`]; the publisher checks
//! what it emits against them in debug builds, and `docs/metrics.md` shows them.

use std::fmt::Write as _;

/// The Prometheus type of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Observations in buckets ([`DURATION_BUCKETS`]).
    Histogram,
}

impl Kind {
    /// The name Prometheus's `# TYPE` line uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The unit of a metric's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A count of things (frames, switches, errors).
    Count,
    /// Bytes.
    Bytes,
    /// Seconds.
    Seconds,
    /// 0 or 1: a state, a flag or an info series.
    Boolean,
}

impl Unit {
    /// The name in the reference table.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Bytes => "bytes",
            Unit::Seconds => "seconds",
            Unit::Boolean => "0 or 1",
        }
    }

    /// The `metrics` crate's unit, for `describe_*`.
    pub fn to_metrics(self) -> metrics::Unit {
        match self {
            Unit::Count | Unit::Boolean => metrics::Unit::Count,
            Unit::Bytes => metrics::Unit::Bytes,
            Unit::Seconds => metrics::Unit::Seconds,
        }
    }
}

/// One metric of the catalogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Metric {
    /// The full name, as exported.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its unit.
    pub unit: Unit,
    /// The `# HELP` text.
    pub help: &'static str,
    /// Label names, in the order every series of the metric carries them.
    pub labels: &'static [&'static str],
    /// The values of the labels that take a closed set of them.
    pub values: &'static [(&'static str, &'static [&'static str])],
}

impl Metric {
    /// Whether `value` is allowed for `label` (any value for a label with an open set).
    pub fn allows(&self, label: &str, value: &str) -> bool {
        self.labels.contains(&label)
            && self
                .values
                .iter()
                .find(|(l, _)| *l == label)
                .is_none_or(|(_, vs)| vs.contains(&value))
    }
}

/// `path` values.
pub const PATHS: &[&str] = &["synthetic", "vf"];
/// Why a received frame was dropped.
pub const RX_DROP_REASONS: &[&str] = &["no_buffer", "malformed", "overflow", "tap_full"];
/// Why a frame taken for transmit (or offered to the port) was dropped.
pub const TX_DROP_REASONS: &[&str] = &["unsendable", "host_failed", "port_full"];
/// Why a transmit burst stopped early (the frames are left to the caller: back-pressure).
pub const TX_STALL_REASONS: &[&str] = &["ring_full", "quota_full"];
/// Switch directions.
pub const DIRECTIONS: &[&str] = &["to_vf", "to_synthetic"];
/// Why the data path switched: `vf_ready` to the VF, one of `bond::SwitchReason` back.
pub const SWITCH_REASONS: &[&str] = &[
    "vf_ready",
    "release_requested",
    "association_removed",
    "host_switched",
    "link_down",
    "vf_reset",
    "removed",
    "shutdown",
    "session_reestablished",
];
/// The failover port's states (DESIGN §4).
pub const PORT_STATES: &[&str] = &[
    "synthetic",
    "vf_attaching",
    "switching_to_vf",
    "on_vf",
    "switching_to_synthetic",
];
/// The bounded waits whose expiry is counted.
pub const WAITS: &[&str] = &["poller_ack", "vf_drain", "tx_order", "control_request"];

const DEVICE: &[&str] = &["device"];
const DEVICE_QUEUE_PATH: &[&str] = &["device", "queue", "path"];
const DEVICE_QUEUE_REASON: &[&str] = &["device", "queue", "reason"];
const DEVICE_PATH: &[&str] = &["device", "path"];

/// Frames received, per queue and path.
pub const RX_PACKETS: Metric = Metric {
    name: "hvnet_rx_packets_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Frames the port received and handed to the application, by queue and path.",
    labels: DEVICE_QUEUE_PATH,
    values: &[("path", PATHS)],
};
/// Frames taken for transmit, per queue and path.
pub const TX_PACKETS: Metric = Metric {
    name: "hvnet_tx_packets_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Frames the port took for transmit, by queue and path.",
    labels: DEVICE_QUEUE_PATH,
    values: &[("path", PATHS)],
};
/// Bytes received, per queue and path where counted.
pub const RX_BYTES: Metric = Metric {
    name: "hvnet_rx_bytes_total",
    kind: Kind::Counter,
    unit: Unit::Bytes,
    help: "Bytes of the frames received, by queue and path (the synthetic NIC's count; the VF path's bytes are not exported yet).",
    labels: DEVICE_QUEUE_PATH,
    values: &[("path", PATHS)],
};
/// Bytes sent, per queue and path where counted.
pub const TX_BYTES: Metric = Metric {
    name: "hvnet_tx_bytes_total",
    kind: Kind::Counter,
    unit: Unit::Bytes,
    help: "Bytes of the frames sent, by queue and path (the synthetic NIC's count; the VF path's bytes are not exported yet).",
    labels: DEVICE_QUEUE_PATH,
    values: &[("path", PATHS)],
};
/// Received frames dropped, by reason.
pub const RX_DROPPED: Metric = Metric {
    name: "hvnet_rx_dropped_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Frames dropped on receive, by queue and reason: no_buffer (the pool had no free buffer), malformed (the host sent a bad message), overflow (the queue's staging list was full), tap_full (hvnet run: the TAP device did not take it).",
    labels: DEVICE_QUEUE_REASON,
    values: &[("reason", RX_DROP_REASONS)],
};
/// Frames for transmit dropped, by reason.
pub const TX_DROPPED: Metric = Metric {
    name: "hvnet_tx_dropped_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Frames dropped on transmit, by queue and reason: unsendable (empty, too big for the MTU, or not sendable on the device), host_failed (the host completed the send with an error, or it was in flight when the session dropped), port_full (hvnet run: the port did not take the frame and the application dropped it).",
    labels: DEVICE_QUEUE_REASON,
    values: &[("reason", TX_DROP_REASONS)],
};
/// Transmit bursts stopped by back-pressure.
pub const TX_STALLS: Metric = Metric {
    name: "hvnet_tx_stalls_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Transmit bursts that stopped early, the rest left to the caller (back-pressure, not a drop), by queue and reason: ring_full (the outgoing VMBus ring was full), quota_full (the host's limit of sends in flight per channel).",
    labels: DEVICE_QUEUE_REASON,
    values: &[("reason", TX_STALL_REASONS)],
};
/// Frames that found no free send section.
pub const TX_NO_SECTION: Metric = Metric {
    name: "hvnet_tx_no_section_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Frames that found no free send-buffer section (they went GPA direct when they could), by queue.",
    labels: &["device", "queue"],
    values: &[],
};
/// Frames stranded on a VF that went away.
pub const TX_STRANDED: Metric = Metric {
    name: "hvnet_tx_stranded_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Frames a VF had taken for transmit and never sent: stranded on a VF that was removed by surprise or reset.",
    labels: DEVICE,
    values: &[],
};
/// The data path as a state set.
pub const DATA_PATH: Metric = Metric {
    name: "hvnet_data_path",
    kind: Kind::Gauge,
    unit: Unit::Boolean,
    help: "Where transmit goes: 1 on the series of the current path (synthetic or vf), 0 on the other.",
    labels: DEVICE_PATH,
    values: &[("path", PATHS)],
};
/// The failover port's state as a state set.
pub const PORT_STATE: Metric = Metric {
    name: "hvnet_port_state",
    kind: Kind::Gauge,
    unit: Unit::Boolean,
    help: "The failover port's state: 1 on the series of the current state, 0 on the others.",
    labels: &["device", "state"],
    values: &[("state", PORT_STATES)],
};
/// Link state per path.
pub const LINK_UP: Metric = Metric {
    name: "hvnet_link_up",
    kind: Kind::Gauge,
    unit: Unit::Boolean,
    help: "Whether the path's link is up (1) or down (0); the vf path is 0 while no VF is attached.",
    labels: DEVICE_PATH,
    values: &[("path", PATHS)],
};
/// The VF in use.
pub const VF_INFO: Metric = Metric {
    name: "hvnet_vf_info",
    kind: Kind::Gauge,
    unit: Unit::Boolean,
    help: "1 for the VF attached now, 0 for a VF attached before: its PCI address (its interface when it has none), association serial (empty when not seen) and the driver that runs it — for a VF the kernel keeps, with hvnet's transport: AF_XDP (native or generic XDP, zero-copy or copy) or AF_PACKET.",
    labels: &["device", "pci_address", "serial", "driver"],
    values: &[],
};
/// Data-path switches.
pub const SWITCHES: Metric = Metric {
    name: "hvnet_switches_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Data-path switches, by direction and reason: to_vf (vf_ready: a VF attached with its link up), to_synthetic (release_requested, association_removed, host_switched, link_down, vf_reset, removed, shutdown, session_reestablished).",
    labels: &["device", "direction", "reason"],
    values: &[("direction", DIRECTIONS), ("reason", SWITCH_REASONS)],
};
/// Switches the host took back at once.
pub const SWITCHES_REFUSED: Metric = Metric {
    name: "hvnet_switches_refused_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Switches to the VF the host took back at once (also counted as to_synthetic host_switched).",
    labels: DEVICE,
    values: &[],
};
/// NVSP 129 requests that failed.
pub const SWITCH_ERRORS: Metric = Metric {
    name: "hvnet_switch_errors_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Data-path switch requests (NVSP 129) that failed or timed out.",
    labels: DEVICE,
    values: &[],
};
/// Time to leave the VF.
pub const FAILOVER_DURATION: Metric = Metric {
    name: "hvnet_failover_duration_seconds",
    kind: Kind::Histogram,
    unit: Unit::Seconds,
    help: "Failovers: from the trigger (removal, reset, host message) until every poller transmits on synthetic.",
    labels: DEVICE,
    values: &[],
};
/// Time to move onto the VF.
pub const FAILBACK_DURATION: Metric = Metric {
    name: "hvnet_failback_duration_seconds",
    kind: Kind::Histogram,
    unit: Unit::Seconds,
    help: "Switches to the VF: from the decision to switch until every poller transmits on the VF.",
    labels: DEVICE,
    values: &[],
};
/// VFs attached.
pub const VF_ATTACHED: Metric = Metric {
    name: "hvnet_vf_attached_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "VFs found, bound and opened.",
    labels: DEVICE,
    values: &[],
};
/// VFs released.
pub const VF_RELEASED: Metric = Metric {
    name: "hvnet_vf_released_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "VFs stopped and released (the host's eject can complete).",
    labels: DEVICE,
    values: &[],
};
/// Failed looks for or opens of a VF.
pub const VF_ATTACH_ERRORS: Metric = Metric {
    name: "hvnet_vf_attach_errors_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Failed looks for or opens of an associated VF (each retried until the appear timeout).",
    labels: DEVICE,
    values: &[],
};
/// Associations whose VF never appeared.
pub const VF_APPEAR_TIMEOUTS: Metric = Metric {
    name: "hvnet_vf_appear_timeouts_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Associations whose VF did not appear within the appear timeout.",
    labels: DEVICE,
    values: &[],
};
/// VFs given up after a reset.
pub const VF_RESET_TIMEOUTS: Metric = Metric {
    name: "hvnet_vf_reset_timeouts_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "VFs given up because they did not come back from a reset within the reset timeout.",
    labels: DEVICE,
    values: &[],
};
/// VFs hvnet has no driver for.
pub const VF_UNSUPPORTED: Metric = Metric {
    name: "hvnet_vf_unsupported_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Associated VFs hvnet has no driver for, left to their kernel driver (once per association).",
    labels: DEVICE,
    values: &[],
};
/// VFs with the wrong MAC.
pub const VF_MAC_MISMATCHES: Metric = Metric {
    name: "hvnet_vf_mac_mismatches_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "VFs found whose MAC is not the port's (released, not used).",
    labels: DEVICE,
    values: &[],
};
/// Sessions re-established by the watchdog.
pub const WATCHDOG_REESTABLISHED: Metric = Metric {
    name: "hvnet_watchdog_reestablished_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Host sessions the watchdog found dead and re-established.",
    labels: DEVICE,
    values: &[],
};
/// Failed keepalives or re-establishments.
pub const WATCHDOG_FAILURES: Metric = Metric {
    name: "hvnet_watchdog_failures_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Keepalives or session re-establishments that failed (retried).",
    labels: DEVICE,
    values: &[],
};
/// Host protocol errors.
pub const HOST_PROTOCOL_ERRORS: Metric = Metric {
    name: "hvnet_host_protocol_errors_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Host messages the NIC ignored: NVSP messages of an unknown type, completions matching no send or control request.",
    labels: DEVICE,
    values: &[],
};
/// Bounded waits that ran out.
pub const WAIT_TIMEOUTS: Metric = Metric {
    name: "hvnet_wait_timeouts_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "Bounded waits that ran out, by wait: poller_ack (a poller did not take a new route), vf_drain (the VF's rings did not empty), tx_order (a queue's old path did not empty after a switch), control_request (an NVSP or RNDIS request got no answer).",
    labels: &["device", "wait"],
    values: &[("wait", WAITS)],
};

/// Where a frame the simulated host dropped was going (`hvnet sim-host`).
pub const SIM_HOST_DIRECTIONS: &[&str] = &["to_guest", "from_guest"];
/// Why the simulated host dropped a frame (`hvnet sim-host`).
pub const SIM_HOST_DROP_REASONS: &[&str] = &[
    "ring_full",
    "no_buffer",
    "filtered",
    "oversize",
    "no_queue",
    "revoked",
    "vf_refused",
    "port_full",
    "send_failed",
];

/// `hvnet sim-host`: frames delivered to the guest on the synthetic path.
pub const SIM_HOST_FRAMES_TO_GUEST: Metric = Metric {
    name: "hvnet_sim_host_frames_to_guest_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: frames the simulated host delivered to the guest through VMBus (the synthetic path).",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: frames the guest sent on the synthetic path.
pub const SIM_HOST_FRAMES_FROM_GUEST: Metric = Metric {
    name: "hvnet_sim_host_frames_from_guest_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: frames the guest sent through VMBus that the simulated host accepted and forwarded to its vSwitch.",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: frames for the guest steered to the VF.
pub const SIM_HOST_FRAMES_TO_VF: Metric = Metric {
    name: "hvnet_sim_host_frames_to_vf_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: frames for the guest the vSwitch steered to the VF (accepted by its wire).",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: frames the VF sent into the vSwitch.
pub const SIM_HOST_FRAMES_FROM_VF: Metric = Metric {
    name: "hvnet_sim_host_frames_from_vf_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: frames the guest's VF transmitted into the vSwitch.",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: frames dropped, by direction and reason.
pub const SIM_HOST_DROPPED: Metric = Metric {
    name: "hvnet_sim_host_dropped_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: frames the simulated host dropped, by direction and reason: to_guest (ring_full: the guest's receive ring stayed full, no_buffer: no receive sub-allocation was free, filtered: the guest's packet filter was 0, oversize: bigger than a sub-allocation, no_queue: its queue's channel was not open, revoked: the guest had revoked its receive buffer, vf_refused: steered to a VF that did not take it), from_guest (port_full: the external port could not hold it, send_failed: the send was completed with a failure).",
    labels: &["device", "direction", "reason"],
    values: &[
        ("direction", SIM_HOST_DIRECTIONS),
        ("reason", SIM_HOST_DROP_REASONS),
    ],
};
/// `hvnet sim-host`: the host's data path as a state set.
pub const SIM_HOST_DATA_PATH: Metric = Metric {
    name: "hvnet_sim_host_data_path",
    kind: Kind::Gauge,
    unit: Unit::Boolean,
    help: "hvnet sim-host: where the simulated host sends the guest's traffic: 1 on the series of the current path (synthetic or vf, as the guest last asked with NVSP 129), 0 on the other.",
    labels: DEVICE_PATH,
    values: &[("path", PATHS)],
};
/// `hvnet sim-host`: data-path changes.
pub const SIM_HOST_DATA_PATH_SWITCHES: Metric = Metric {
    name: "hvnet_sim_host_data_path_switches_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: changes of the simulated host's data path, either way.",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: switches completed before the old path was flushed.
pub const SIM_HOST_SWITCH_FLUSH_TIMEOUTS: Metric = Metric {
    name: "hvnet_sim_host_switch_flush_timeouts_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: data-path switches the simulated host completed without the old path flushed within its bound.",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: VF associations offered.
pub const SIM_HOST_VF_ASSOCIATIONS: Metric = Metric {
    name: "hvnet_sim_host_vf_associations_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: VF associations (NVSP 128 with a VF) the simulated host sent.",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: guest protocol violations.
pub const SIM_HOST_PROTOCOL_ERRORS: Metric = Metric {
    name: "hvnet_sim_host_protocol_errors_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: guest protocol violations that stopped the simulated host's NetVSP worker until the guest reopened the channel.",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: whether the NetVSP worker serves the channel.
pub const SIM_HOST_CHANNEL_ALIVE: Metric = Metric {
    name: "hvnet_sim_host_channel_alive",
    kind: Kind::Gauge,
    unit: Unit::Boolean,
    help: "hvnet sim-host: 1 while the simulated host's NetVSP worker serves the channel, 0 after a protocol error or a worker-stopping fault until the guest reopens it.",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: channel reopens.
pub const SIM_HOST_REOPENS: Metric = Metric {
    name: "hvnet_sim_host_reopens_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: channel reopens the simulated host acknowledged.",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: client sessions.
pub const SIM_HOST_SESSIONS: Metric = Metric {
    name: "hvnet_sim_host_sessions_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: client sessions started on the device node (a client attaching after the previous one left).",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: clients connected.
pub const SIM_HOST_CLIENTS: Metric = Metric {
    name: "hvnet_sim_host_clients",
    kind: Kind::Gauge,
    unit: Unit::Count,
    help: "hvnet sim-host: connections to the device node open now.",
    labels: DEVICE,
    values: &[],
};
/// `hvnet sim-host`: faults injected.
pub const SIM_HOST_FAULTS_INJECTED: Metric = Metric {
    name: "hvnet_sim_host_faults_injected_total",
    kind: Kind::Counter,
    unit: Unit::Count,
    help: "hvnet sim-host: faults injected into the simulated host (ctl fault).",
    labels: DEVICE,
    values: &[],
};

/// Every metric, in the order of the reference table.
pub const ALL: &[Metric] = &[
    RX_PACKETS,
    TX_PACKETS,
    RX_BYTES,
    TX_BYTES,
    RX_DROPPED,
    TX_DROPPED,
    TX_STALLS,
    TX_NO_SECTION,
    TX_STRANDED,
    DATA_PATH,
    PORT_STATE,
    LINK_UP,
    VF_INFO,
    SWITCHES,
    SWITCHES_REFUSED,
    SWITCH_ERRORS,
    FAILOVER_DURATION,
    FAILBACK_DURATION,
    VF_ATTACHED,
    VF_RELEASED,
    VF_ATTACH_ERRORS,
    VF_APPEAR_TIMEOUTS,
    VF_RESET_TIMEOUTS,
    VF_UNSUPPORTED,
    VF_MAC_MISMATCHES,
    WATCHDOG_REESTABLISHED,
    WATCHDOG_FAILURES,
    HOST_PROTOCOL_ERRORS,
    WAIT_TIMEOUTS,
    SIM_HOST_FRAMES_TO_GUEST,
    SIM_HOST_FRAMES_FROM_GUEST,
    SIM_HOST_FRAMES_TO_VF,
    SIM_HOST_FRAMES_FROM_VF,
    SIM_HOST_DROPPED,
    SIM_HOST_DATA_PATH,
    SIM_HOST_DATA_PATH_SWITCHES,
    SIM_HOST_SWITCH_FLUSH_TIMEOUTS,
    SIM_HOST_VF_ASSOCIATIONS,
    SIM_HOST_PROTOCOL_ERRORS,
    SIM_HOST_CHANNEL_ALIVE,
    SIM_HOST_REOPENS,
    SIM_HOST_SESSIONS,
    SIM_HOST_CLIENTS,
    SIM_HOST_FAULTS_INJECTED,
];

/// Bucket bounds of the duration histograms, in seconds: 1, 2.5 and 5 per decade from 10 µs
/// to 10 s (a failover takes tens of microseconds to a few milliseconds in simulation, a
/// servicing event on Azure seconds).
pub const DURATION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Describes every metric to the installed recorder (unit and help: Prometheus's `# HELP`).
pub fn describe() {
    for m in ALL {
        let unit = m.unit.to_metrics();
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, unit, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, unit, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, unit, m.help),
        }
    }
}

/// The metric called `name`, if the catalogue has it.
pub fn find(name: &str) -> Option<&'static Metric> {
    ALL.iter().find(|m| m.name == name)
}

/// `docs/metrics.md`: the reference table, generated from [`ALL`].
pub fn markdown() -> String {
    let mut s = String::new();
    s.push_str("# Metrics\n\n");
    s.push_str(
        "<!-- Generated from telemetry/src/catalogue.rs by telemetry::catalogue::markdown(); do not\n     \
         edit. Regenerate: HVNET_BLESS=1 cargo test -p telemetry --test docs -->\n\n",
    );
    s.push_str(
        "`hvnet run` and `hvnet demo` serve the port's metrics on `--metrics-addr HOST:PORT`, \
         `hvnet sim-host` the simulated host's own (the `hvnet_sim_host_` ones, for CI \
         dashboards), in the Prometheus text format on any path (e.g. `/metrics`). The address \
         is loopback unless given otherwise: \
         `--metrics-addr 9464` means `127.0.0.1:9464`, a host without a port gets port 9464, and a \
         wildcard address (`0.0.0.0`, `::`) is refused unless `--metrics-public` is given. A \
         publisher thread samples the counters the pollers keep (no metrics call per packet) \
         every second.\n\n",
    );
    s.push_str(
        "Labels: `device` is the NetVSC's instance GUID (`hvnet demo`: `demo`), `queue` the queue \
         index, `path` `synthetic` or `vf`. Counters start at 0 when the process starts. The two \
         duration histograms have buckets from 10 µs to 10 s (1, 2.5, 5 per decade).\n\n",
    );
    s.push_str(
        "A Grafana dashboard over these (rates per path, drops, the data-path timeline, the \
         failover and failback histograms, switches by reason) is \
         `docs/grafana/hvnet-dashboard.json`: import it and pick a Prometheus data source. A test \
         (`tests/grafana_dashboard.rs`) fails when one of its queries names a metric or a label \
         this table does not have.\n\n",
    );
    s.push_str("| name | type | unit | labels | help |\n|---|---|---|---|---|\n");
    for m in ALL {
        let labels = m
            .labels
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} |",
            m.name,
            m.kind.as_str(),
            m.unit.as_str(),
            labels,
            m.help.replace('|', "\\|")
        );
    }
    s.push_str("\n## Label values\n\n| metric | label | values |\n|---|---|---|\n");
    for m in ALL {
        for (label, values) in m.values {
            let values = values
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(s, "| `{}` | `{label}` | {values} |", m.name);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn is_name(s: &str, first: impl Fn(char) -> bool, rest: impl Fn(char) -> bool) -> bool {
        let mut chars = s.chars();
        chars.next().is_some_and(first) && chars.all(rest)
    }

    #[test]
    fn names_are_unique_and_follow_the_prometheus_rules_and_suffix_conventions() {
        let mut seen = HashSet::new();
        for m in ALL {
            assert!(seen.insert(m.name), "{} twice", m.name);
            assert!(
                is_name(
                    m.name,
                    |c| c.is_ascii_alphabetic() || c == '_' || c == ':',
                    |c| c.is_ascii_alphanumeric() || c == '_' || c == ':'
                ),
                "{} is not a Prometheus metric name",
                m.name
            );
            assert!(m.name.starts_with("hvnet_"), "{}: no hvnet_ prefix", m.name);
            assert!(!m.name.contains("__"), "{}", m.name);
            let base = m.name.strip_suffix("_total");
            match m.kind {
                Kind::Counter => assert!(base.is_some(), "counter {} lacks _total", m.name),
                Kind::Gauge | Kind::Histogram => {
                    assert!(
                        base.is_none(),
                        "{} {} ends in _total",
                        m.kind.as_str(),
                        m.name
                    )
                }
            }
            let base = base.unwrap_or(m.name);
            match m.unit {
                Unit::Bytes => assert!(base.ends_with("_bytes"), "{}", m.name),
                Unit::Seconds => assert!(base.ends_with("_seconds"), "{}", m.name),
                Unit::Count | Unit::Boolean => assert!(
                    !base.ends_with("_bytes") && !base.ends_with("_seconds"),
                    "{} has a unit suffix but no unit",
                    m.name
                ),
            }
            if m.kind == Kind::Histogram {
                assert_eq!(m.unit, Unit::Seconds, "{}", m.name);
            }
            if m.name.ends_with("_info") {
                assert_eq!((m.kind, m.unit), (Kind::Gauge, Unit::Boolean), "{}", m.name);
            }
            assert!(
                !m.help.is_empty() && m.help.ends_with('.'),
                "{}: help is a sentence",
                m.name
            );
        }
        // The rendered names of histograms must not collide with another metric.
        for m in ALL.iter().filter(|m| m.kind == Kind::Histogram) {
            for suffix in ["_bucket", "_sum", "_count"] {
                assert!(find(&format!("{}{suffix}", m.name)).is_none(), "{}", m.name);
            }
        }
    }

    #[test]
    fn labels_are_valid_ordered_and_their_value_sets_belong_to_them() {
        let order = [
            "device",
            "queue",
            "path",
            "direction",
            "reason",
            "state",
            "wait",
            "pci_address",
            "serial",
            "driver",
        ];
        for m in ALL {
            assert_eq!(m.labels.first(), Some(&"device"), "{}", m.name);
            let positions: Vec<usize> = m
                .labels
                .iter()
                .map(|l| {
                    assert!(
                        is_name(
                            l,
                            |c| c.is_ascii_alphabetic() || c == '_',
                            |c| c.is_ascii_alphanumeric() || c == '_'
                        ) && !l.starts_with("__"),
                        "{}: label {l}",
                        m.name
                    );
                    assert!(!["le", "quantile"].contains(l), "{}: label {l}", m.name);
                    order
                        .iter()
                        .position(|o| o == l)
                        .unwrap_or_else(|| panic!("{}: label {l} has no place", m.name))
                })
                .collect();
            assert!(positions.is_sorted(), "{}: labels out of order", m.name);
            for (label, values) in m.values {
                assert!(m.labels.contains(label), "{}: values of {label}", m.name);
                assert!(!values.is_empty(), "{}", m.name);
            }
        }
        assert!(SWITCHES.allows("reason", "removed"));
        assert!(!SWITCHES.allows("reason", "cosmic_ray"));
        assert!(SWITCHES.allows("device", "anything"));
        assert!(!SWITCHES.allows("queue", "0"));
    }

    #[test]
    fn buckets_rise_from_ten_microseconds_to_ten_seconds() {
        assert_eq!(DURATION_BUCKETS.first(), Some(&0.00001));
        assert_eq!(DURATION_BUCKETS.last(), Some(&10.0));
        assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(DURATION_BUCKETS.len(), 19);
    }

    #[test]
    fn the_reference_table_has_a_row_per_metric() {
        let md = markdown();
        for m in ALL {
            assert_eq!(
                md.matches(&format!("| `{}` | {} |", m.name, m.kind.as_str()))
                    .count(),
                1,
                "{}",
                m.name
            );
        }
    }
}
