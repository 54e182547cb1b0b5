//! `hvnet sim-host`: the simulated Hyper-V host served to other processes (see
//! `integration::sim_host`). With `--metrics-addr` a sampler thread exports the host's own
//! counters (the catalogue's `hvnet_sim_host_` metrics, docs/metrics.md) once a second, for CI
//! dashboards: [`host_series`] maps them, [`HostSampler`] runs it.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::{Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context;
use integration::host::HostStats;
use integration::sim_host::uio::UioNodeStats;
use integration::sim_host::{DEFAULT_INSTANCE, SimHostConfig, SimHostServer};
use telemetry::catalogue::{self, Kind, Metric};

/// The preload library's file name, looked for next to the `hvnet` executable.
pub const PRELOAD: &str = "libhvnet_sim_uio.so";

/// Options of `hvnet sim-host`.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct SimHostArgs {
    #[command(subcommand)]
    action: Option<Action>,

    /// Directory to publish the guest's view under: bus/vmbus/devices/INSTANCE/…,
    /// class/uio/uio0 and the node dev/uio0. Created if missing; must not hold another host.
    #[arg(long, value_name = "DIR", required = true)]
    root: Option<PathBuf>,

    /// Instance GUID of the simulated NetVSC.
    #[arg(long, value_name = "GUID", default_value = DEFAULT_INSTANCE)]
    instance: String,

    /// Where the client's transmitted frames go: `external` (the vSwitch's external port,
    /// which nothing outside feeds yet) or `loopback` (back to the client on the queue they
    /// came on, as OpenVMM's loopback endpoint: a forwarding client then keeps them moving).
    #[arg(long, value_name = "MODE", default_value = "external", value_parser = ["external", "loopback"])]
    port: String,

    /// Make the vSwitch's external port the TAP device NAME (created here, removed at exit):
    /// the kernel stack behind the host. Frames the client sends come out of it, frames the
    /// kernel sends into it reach the client; its carrier follows the link (`ctl link down`).
    /// Needs CAP_NET_ADMIN; bring it up and address it with ip(8).
    #[arg(long, value_name = "NAME", conflicts_with = "port")]
    tap: Option<String>,

    /// Give the host a VF whose port is the interface NAME: the host's end of a veth pair
    /// whose other end carries the NIC's MAC (00:15:5d:…, printed at start) and is the
    /// client's VF (DPDK: --vdev net_af_packet0,iface=OTHER-END). Its link is the device:
    /// down until `ctl offer-vf`, down again on `remove-vf` or `surprise-remove`, restored at
    /// exit. Needs CAP_NET_RAW and CAP_NET_ADMIN.
    #[arg(long, value_name = "NAME")]
    vf_iface: Option<String>,

    /// Stop after this many seconds (default: run until SIGINT or SIGTERM).
    #[arg(
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=86_400)
    )]
    duration: Option<u32>,

    /// The Prometheus endpoint: the host's own counters (`hvnet_sim_host_…`).
    #[command(flatten)]
    metrics: crate::run::metrics::MetricsArgs,
}

/// What `hvnet sim-host` does besides serving.
#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Script a running sim-host: one command, answered with what the host did (JSON).
    ///
    /// Commands: `link up`, `link down` (indicated to the client at once and answered by the
    /// link query from then on; the state it is in already is a toggle, as on Hyper-V),
    /// `network-change`, `offer-vf SERIAL`, `remove-vf [--order association-first|eject-first]`
    /// (OpenVMM's order, the default, or Azure's: the device first), `absent SECONDS [--order
    /// …]` (the offered VF removed, then offered again SECONDS later), `surprise-remove` (the
    /// VF device dies; the host notices at the next remove-vf), `switch-synthetic`, `fault
    /// NAME [VALUE]` (e.g. `fault rescind`, `fault drop-completions 3`), `stats` (the host's,
    /// the device node's, the VF port's and the TAP port's counters). The answer comes once the host applied
    /// the command. Example: hvnet sim-host ctl --root /tmp/sim remove-vf --order eject-first
    Ctl {
        /// The root the host serves under.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Run a timed sequence instead of one command: each line `SECONDS COMMAND`, the time
        /// counted from the start of the script (non-decreasing; `#` starts a comment), e.g.
        /// `0 offer-vf 7`, `5 remove-vf --order eject-first`, `35 offer-vf 7`. Every line is
        /// checked before the first runs; the script stops at the first refusal.
        #[arg(long, value_name = "FILE", conflicts_with = "command")]
        script: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(
            required_unless_present = "script",
            num_args = 1..,
            value_name = "COMMAND",
            allow_hyphen_values = true
        )]
        command: Vec<String>,
    },
}

/// Where the preload library is expected: beside this executable.
fn preload_path() -> Option<PathBuf> {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name(PRELOAD))
}

/// Runs the served host until a signal or `--duration`.
pub fn run(args: &SimHostArgs) -> anyhow::Result<()> {
    if let Some(Action::Ctl {
        root,
        script,
        command,
    }) = &args.action
    {
        let steps = match script {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("reading the script {}", file.display()))?;
                parse_script(&text).with_context(|| format!("in {}", file.display()))?
            }
            None => vec![(Duration::ZERO, command.join(" "))],
        };
        let start = Instant::now();
        for (at, command) in &steps {
            // A schedule, not a synchronisation: each command is due at its time.
            std::thread::sleep(at.saturating_sub(start.elapsed()));
            let answer = integration::sim_host::ctl::send(root, command)
                .with_context(|| format!("asking the sim-host under {}", root.display()))?;
            if script.is_some() {
                say!(
                    "[{:>8.3}s] {command}: {answer}",
                    start.elapsed().as_secs_f64()
                );
            } else {
                say!("{answer}");
            }
            anyhow::ensure!(
                serde_json_ok(&answer),
                "the sim-host refused the command {command:?}"
            );
        }
        return Ok(());
    }
    let Some(root) = &args.root else {
        anyhow::bail!("--root DIR is required");
    };
    // A refused address ends the program here, before anything is published.
    args.metrics.checked();
    // Before any thread starts: every thread inherits the blocked mask, so the signal waits
    // for the main thread.
    crate::signals::block_termination().context("blocking SIGINT and SIGTERM")?;
    let serving = args.metrics.serve()?;
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let root = root
        .canonicalize()
        .with_context(|| format!("resolving {}", root.display()))?;
    let server = SimHostServer::start(
        &root,
        SimHostConfig {
            instance: args.instance.clone(),
            host: integration::host::HostConfig {
                port: if args.port == "loopback" {
                    integration::host::PortMode::Loopback
                } else {
                    integration::host::PortMode::External
                },
                ..integration::host::HostConfig::default()
            },
            vf_iface: args.vf_iface.clone(),
            tap: args.tap.clone(),
            ..SimHostConfig::default()
        },
    )
    .with_context(|| format!("serving a simulated host under {}", root.display()))?;
    let preload = match preload_path() {
        Some(p) if p.exists() => p.display().to_string(),
        _ => format!("<{PRELOAD}: cargo build -p hvnet-sim-uio>"),
    };
    say!(
        "hvnet sim-host: NetVSC {} (up to 8 queues) under {}",
        server.instance(),
        root.display()
    );
    say!(
        "attach hvnet:   LD_PRELOAD={preload} hvnet probe --sysfs-root {} --dev-root {}",
        root.display(),
        server
            .tree()
            .node
            .parent()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    );
    if let Some(tap) = server.tap_port() {
        say!(
            "external port: TAP device {} (its carrier follows the link)",
            tap.name()
        );
    }
    if let Some(vf) = server.vf_port() {
        say!(
            "VF port: {} (down until `ctl offer-vf`); the client's end needs the NIC's MAC {}",
            vf.name(),
            server.mac()
        );
    }
    let end = args
        .duration
        .map(|s| packet::deadline::after(Instant::now(), Duration::from_secs(s.into())));
    let reason = std::thread::scope(|scope| -> anyhow::Result<String> {
        // Stopped (and joined by the scope) however the wait ends.
        let _sampler = match serving {
            Some(_) => Some(
                HostSampler::start(scope, &server, SAMPLE_PERIOD)
                    .context("starting the metrics sampler")?,
            ),
            None => None,
        };
        say!("ready (SIGINT or SIGTERM stops the host and removes the tree)");
        loop {
            let wait = match end {
                Some(end) => {
                    let left = end.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok("--duration".to_string());
                    }
                    left.min(Duration::from_millis(500))
                }
                None => Duration::from_millis(500),
            };
            if let Some(signal) =
                crate::signals::wait_termination(wait).context("waiting for a signal")?
            {
                return Ok(signal.to_string());
            }
        }
    })?;
    let node = server.node_stats();
    let host = server.host().stats();
    if let Some(vf) = server.vf_port() {
        let v = vf.stats();
        say!(
            "vf port: {} frame(s) to the VF ({} dropped), {} from it; plugged {}, unplugged {}, failed {}",
            v.to_vf,
            v.to_vf_dropped,
            v.from_vf,
            v.plugged,
            v.unplugged,
            v.failed
        );
    }
    if let Some(tap) = server.tap_port() {
        let t = tap.stats();
        say!(
            "tap: {} frame(s) from the kernel to the guest ({} refused), {} from the guest to the kernel ({} dropped)",
            t.to_guest,
            t.to_guest_refused,
            t.from_guest,
            t.from_guest_dropped
        );
    }
    drop(server);
    say!(
        "stopped ({reason}): {} open(s) of the node in {} session(s); host: NVSP {}, {} frame(s) to the guest, {} from it, {} dropped, {} protocol error(s){}",
        node.opens,
        node.sessions,
        host.nvsp_version
            .map_or("not negotiated".into(), |v| format!("{v:#x}")),
        host.rx_delivered,
        host.tx_packets,
        host.rx_dropped_ring_full
            + host.rx_dropped_no_buffer
            + host.rx_dropped_filtered
            + host.rx_dropped_oversize
            + host.rx_dropped_no_queue
            + host.tx_dropped_port_full
            + host.tx_failed,
        host.protocol_errors,
        host.last_error
            .map(|e| format!(" (last: {e})"))
            .unwrap_or_default()
    );
    Ok(())
}

/// How often the sampler exports the host's counters.
const SAMPLE_PERIOD: Duration = Duration::from_secs(1);

/// A value of one series: a counter's total or a gauge's level.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Value {
    Total(u64),
    Level(f64),
}

/// One series of a `hvnet_sim_host_` metric: the metric, its labels in the catalogue's
/// order, its value.
#[derive(Clone, Debug, PartialEq)]
struct Series {
    metric: &'static Metric,
    labels: Vec<(&'static str, String)>,
    value: Value,
}

fn flag(on: bool) -> Value {
    Value::Level(if on { 1.0 } else { 0.0 })
}

/// The served host's counters as series of the catalogue's `hvnet_sim_host_` metrics: every
/// frame count and drop of `host` in exactly one series, `device` the NetVSC's instance GUID.
fn host_series(device: &str, host: &HostStats, node: &UioNodeStats) -> Vec<Series> {
    use catalogue as c;
    let one = |metric: &'static Metric, value: Value| Series {
        metric,
        labels: vec![("device", device.to_owned())],
        value,
    };
    let mut series = vec![
        one(
            &c::SIM_HOST_FRAMES_TO_GUEST,
            Value::Total(host.rx_delivered),
        ),
        one(
            &c::SIM_HOST_FRAMES_FROM_GUEST,
            Value::Total(host.tx_packets),
        ),
        one(&c::SIM_HOST_FRAMES_TO_VF, Value::Total(host.rx_to_vf)),
        one(&c::SIM_HOST_FRAMES_FROM_VF, Value::Total(host.tx_from_vf)),
    ];
    for (direction, reason, n) in [
        ("to_guest", "ring_full", host.rx_dropped_ring_full),
        ("to_guest", "no_buffer", host.rx_dropped_no_buffer),
        ("to_guest", "filtered", host.rx_dropped_filtered),
        ("to_guest", "oversize", host.rx_dropped_oversize),
        ("to_guest", "no_queue", host.rx_dropped_no_queue),
        ("to_guest", "revoked", host.rx_dropped_revoked),
        ("to_guest", "vf_refused", host.rx_dropped_vf),
        ("from_guest", "port_full", host.tx_dropped_port_full),
        ("from_guest", "send_failed", host.tx_failed),
    ] {
        series.push(Series {
            metric: &c::SIM_HOST_DROPPED,
            labels: vec![
                ("device", device.to_owned()),
                ("direction", direction.to_owned()),
                ("reason", reason.to_owned()),
            ],
            value: Value::Total(n),
        });
    }
    for (path, on) in [("synthetic", !host.data_path_vf), ("vf", host.data_path_vf)] {
        series.push(Series {
            metric: &c::SIM_HOST_DATA_PATH,
            labels: vec![("device", device.to_owned()), ("path", path.to_owned())],
            value: flag(on),
        });
    }
    series.extend([
        one(
            &c::SIM_HOST_DATA_PATH_SWITCHES,
            Value::Total(host.data_path_switches_total),
        ),
        one(
            &c::SIM_HOST_SWITCH_FLUSH_TIMEOUTS,
            Value::Total(host.switch_flush_timeouts),
        ),
        one(
            &c::SIM_HOST_VF_ASSOCIATIONS,
            Value::Total(host.vf_associations),
        ),
        one(
            &c::SIM_HOST_PROTOCOL_ERRORS,
            Value::Total(host.protocol_errors),
        ),
        one(&c::SIM_HOST_CHANNEL_ALIVE, flag(host.channel_alive)),
        one(&c::SIM_HOST_REOPENS, Value::Total(host.reopens)),
        one(&c::SIM_HOST_SESSIONS, Value::Total(node.sessions)),
        one(&c::SIM_HOST_CLIENTS, Value::Level(node.clients as f64)),
        one(
            &c::SIM_HOST_FAULTS_INJECTED,
            Value::Total(host.faults_injected),
        ),
    ]);
    series
}

/// Exports `series` to the current recorder (counters with `absolute`, gauges with `set`).
fn emit(series: &[Series]) {
    for s in series {
        let m = s.metric;
        debug_assert!(
            s.labels
                .iter()
                .map(|(k, _)| *k)
                .eq(m.labels.iter().copied())
                && s.labels.iter().all(|(k, v)| m.allows(k, v)),
            "{}: labels outside the catalogue: {:?}",
            m.name,
            s.labels
        );
        let labels: Vec<metrics::Label> = s
            .labels
            .iter()
            .map(|(k, v)| metrics::Label::new(*k, v.clone()))
            .collect();
        match (m.kind, s.value) {
            (Kind::Counter, Value::Total(n)) => metrics::counter!(m.name, labels).absolute(n),
            (Kind::Gauge, Value::Level(v)) => metrics::gauge!(m.name, labels).set(v),
            (kind, value) => debug_assert!(false, "{}: a {kind:?} given {value:?}", m.name),
        }
    }
}

/// The thread that exports the served host's counters every period, from a
/// `std::thread::scope` (it borrows the server). Dropping it stops the thread; its scope
/// joins it.
struct HostSampler<'scope> {
    /// Dropped to stop the thread (its wait ends as soon as the sender is gone).
    stop: Option<mpsc::Sender<()>>,
    _thread: ScopedJoinHandle<'scope, ()>,
}

impl<'scope> HostSampler<'scope> {
    /// Starts the thread (`hvnet-metrics`): a sample at once, then one per `period`.
    fn start<'env>(
        scope: &'scope Scope<'scope, 'env>,
        server: &'env SimHostServer,
        period: Duration,
    ) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("hvnet-metrics".into())
            .spawn_scoped(scope, move || {
                let device = server.instance().to_owned();
                loop {
                    emit(&host_series(
                        &device,
                        &server.host().stats(),
                        &server.node_stats(),
                    ));
                    // The sampling period; a stop (the sender dropped) ends it at once.
                    match stopped.recv_timeout(period) {
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(Self {
            stop: Some(stop),
            _thread: thread,
        })
    }
}

impl Drop for HostSampler<'_> {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

/// The longest wait a script may hold (a day).
const SCRIPT_MAX: Duration = Duration::from_secs(86_400);

/// A ctl script's steps: `SECONDS COMMAND` lines (blank lines and `#` comments skipped),
/// times non-decreasing and at most a day.
fn parse_script(text: &str) -> anyhow::Result<Vec<(Duration, String)>> {
    let mut steps: Vec<(Duration, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let line_no = n + 1;
        let (at, command) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| anyhow::anyhow!("line {line_no}: {line:?} is not `SECONDS COMMAND`"))?;
        let at = at
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .filter(|d| *d <= SCRIPT_MAX)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "line {line_no}: {at:?} is not a time in seconds (0 to 86400, e.g. 2.5)"
                )
            })?;
        if let Some((last, _)) = steps.last() {
            anyhow::ensure!(
                at >= *last,
                "line {line_no}: {at:?} comes before the line above it ({last:?})"
            );
        }
        steps.push((at, command.trim().to_string()));
    }
    anyhow::ensure!(!steps.is_empty(), "the script has no commands");
    Ok(steps)
}

/// Whether a ctl answer says `"ok":true` (the answer is one JSON object the host wrote).
fn serde_json_ok(answer: &str) -> bool {
    answer.contains("\"ok\":true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_counters_render_as_the_catalogue_says_each_drop_in_one_series() {
        let host = HostStats {
            rx_delivered: 1,
            tx_packets: 2,
            rx_to_vf: 3,
            tx_from_vf: 4,
            rx_dropped_ring_full: 11,
            rx_dropped_no_buffer: 12,
            rx_dropped_filtered: 13,
            rx_dropped_oversize: 14,
            rx_dropped_no_queue: 15,
            rx_dropped_revoked: 16,
            rx_dropped_vf: 17,
            tx_dropped_port_full: 18,
            tx_failed: 19,
            data_path_vf: true,
            data_path_switches_total: 5,
            switch_flush_timeouts: 6,
            vf_associations: 7,
            protocol_errors: 8,
            channel_alive: true,
            reopens: 9,
            faults_injected: 10,
            ..HostStats::default()
        };
        let node = UioNodeStats {
            sessions: 20,
            clients: 1,
            ..UioNodeStats::default()
        };
        let series = host_series("guid", &host, &node);
        // Every drop counter of the host in one series; their sum is the host's.
        let drops: Vec<_> = series
            .iter()
            .filter(|s| s.metric.name == "hvnet_sim_host_dropped_total")
            .collect();
        assert_eq!(drops.len(), catalogue::SIM_HOST_DROP_REASONS.len());
        let total: u64 = drops
            .iter()
            .map(|s| match s.value {
                Value::Total(n) => n,
                Value::Level(_) => panic!("a drop gauge"),
            })
            .sum();
        assert_eq!(total, (11..=19).sum::<u64>());
        // Each sim-host metric of the catalogue is exported, and nothing else.
        let names: std::collections::BTreeSet<_> = series.iter().map(|s| s.metric.name).collect();
        let sim_host: std::collections::BTreeSet<_> = catalogue::ALL
            .iter()
            .map(|m| m.name)
            .filter(|n| n.starts_with("hvnet_sim_host_"))
            .collect();
        assert_eq!(names, sim_host);

        let recorder = telemetry::endpoint::recorder();
        metrics::with_local_recorder(&recorder, || {
            catalogue::describe();
            emit(&series);
        });
        let text = recorder.handle().render();
        let value = |series: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        };
        assert_eq!(
            value(r#"hvnet_sim_host_frames_to_guest_total{device="guid"}"#),
            1.0
        );
        assert_eq!(
            value(r#"hvnet_sim_host_frames_from_guest_total{device="guid"}"#),
            2.0
        );
        assert_eq!(
            value(r#"hvnet_sim_host_frames_to_vf_total{device="guid"}"#),
            3.0
        );
        assert_eq!(
            value(r#"hvnet_sim_host_frames_from_vf_total{device="guid"}"#),
            4.0
        );
        assert_eq!(
            value(
                r#"hvnet_sim_host_dropped_total{device="guid",direction="to_guest",reason="vf_refused"}"#
            ),
            17.0
        );
        assert_eq!(
            value(
                r#"hvnet_sim_host_dropped_total{device="guid",direction="from_guest",reason="send_failed"}"#
            ),
            19.0
        );
        assert_eq!(
            value(r#"hvnet_sim_host_data_path{device="guid",path="vf"}"#),
            1.0
        );
        assert_eq!(
            value(r#"hvnet_sim_host_data_path{device="guid",path="synthetic"}"#),
            0.0
        );
        assert_eq!(
            value(r#"hvnet_sim_host_vf_associations_total{device="guid"}"#),
            7.0
        );
        assert_eq!(
            value(r#"hvnet_sim_host_protocol_errors_total{device="guid"}"#),
            8.0
        );
        assert_eq!(value(r#"hvnet_sim_host_channel_alive{device="guid"}"#), 1.0);
        assert_eq!(value(r#"hvnet_sim_host_reopens_total{device="guid"}"#), 9.0);
        assert_eq!(
            value(r#"hvnet_sim_host_sessions_total{device="guid"}"#),
            20.0
        );
        assert_eq!(value(r#"hvnet_sim_host_clients{device="guid"}"#), 1.0);
        assert!(
            text.contains("# TYPE hvnet_sim_host_dropped_total counter")
                && text.contains("# HELP hvnet_sim_host_data_path "),
            "{text}"
        );
    }

    #[test]
    fn scripts_parse_and_bad_lines_say_where() {
        let steps = parse_script(
            "# servicing\n0 offer-vf 7\n\n2.5 remove-vf --order eject-first  # the host\n30 offer-vf 7\n",
        )
        .unwrap();
        assert_eq!(
            steps,
            [
                (Duration::ZERO, "offer-vf 7".to_string()),
                (
                    Duration::from_millis(2500),
                    "remove-vf --order eject-first".to_string()
                ),
                (Duration::from_secs(30), "offer-vf 7".to_string()),
            ]
        );
        let err = |text: &str| format!("{:#}", parse_script(text).unwrap_err());
        assert!(err("1 link down\nsoon link up").contains("line 2"));
        assert!(err("-1 link down").contains("not a time"));
        assert!(err("1e9 link down").contains("not a time"));
        assert!(err("NaN link down").contains("not a time"));
        assert!(err("5 link down\n1 link up").contains("comes before"));
        assert!(err("7").contains("SECONDS COMMAND"));
        assert!(err("# nothing").contains("no commands"));
    }
}
