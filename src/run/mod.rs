//! `hvnet run`: the port on a real guest (or on `hvnet sim-host`), connected to an
//! application: a TAP device (the kernel stack) or one of testpmd's forwarding modes.
//!
//! Modules: [`config`] (the settings, from `--config` and flags), [`poller`] (a queue's
//! lane, bursts, the polling loop), [`forward`] and [`tap`] (the applications), [`stats`]
//! (counters and testpmd's print), [`capture`] (`--pcap`), [`sys`] (CPU pinning),
//! [`metrics`] (`--metrics-addr`: the counters mapped for the Prometheus endpoint).
//!
//! Threads: one poller per port queue (with `--peer`, queue *i* of both ports), the port's
//! control thread, with `--metrics-addr` the metrics publisher (a sample a second) and the
//! exporter's listener, and the main thread, which waits for SIGINT/SIGTERM, logs the port's
//! events, keeps the TAP's carrier on the link and prints the statistics. On a signal (or
//! after `--duration`) the ports close while the pollers still run — the VF is left as a
//! planned removal leaves it, then RNDIS HALT and the buffers are revoked — then the pollers
//! stop and the totals are printed.

pub mod capture;
pub mod config;
pub mod forward;
pub mod metrics;
pub mod poller;
pub mod stats;
pub mod sys;
pub mod tap;

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use bond::{
    AutoVfProvider, FailoverConfig, FailoverEvent, FailoverPort, FailoverQueue, KernelVfProvider,
    NoVf, SystemClock, VfProvider, VfioIgbvfProvider,
};
use netvsc::nic::{NicConfig, SyntheticNic};
use netvsc::vmbus::uio::{Guid, UioConfig, UioDevice};

use capture::Capture;
use config::{Application, ForwardMode, RunConfig, Settings, VfBackend, VfPolicy, XdpModeSetting};
use poller::{Lane, Phase, Scratch};
use stats::{PortTotals, QueueCounters, Rates};

/// How often the main thread looks at the ports' events and link when nothing else is due.
const TICK: Duration = Duration::from_millis(100);
/// Draining at exit ends once this long passes without a frame arriving…
const DRAIN_QUIET: Duration = Duration::from_millis(100);
/// …or after this long in all.
const DRAIN_BOUND: Duration = Duration::from_secs(2);

/// Options of `hvnet run`. Each may also be set in the `--config` file (same name without the
/// dashes' prefix, e.g. `queues = 4`, `sysfs-root = "/sys"`); a flag wins over the file.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A TOML file of settings (unknown keys are refused), e.g. `instance = "…"`, `queues =
    /// 4`, `tap = "hvnet0"`, `cpus = "2-3"`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Instance GUID of the NetVSC (see `hvnet status`); default: the first bound to
    /// uio_hv_generic.
    #[arg(long, value_name = "GUID")]
    instance: Option<String>,

    /// Queues to ask for, 1 to 64 (default 1; the host may grant fewer).
    #[arg(long, allow_negative_numbers = true)]
    queues: Option<u16>,

    /// Layer-3 MTU to negotiate, 576 to 9000 (default 1500).
    #[arg(long, allow_negative_numbers = true)]
    mtu: Option<u16>,

    /// Use the VF the host offers (on, the default) or stay on the synthetic path (off: the
    /// host is told the guest has no SR-IOV).
    #[arg(long, value_enum, value_name = "POLICY")]
    vf: Option<VfPolicy>,

    /// Which backend drives the VF: auto (the default: hvnet's own VFIO driver for an Intel
    /// 82576/I350 VF, AF_XDP on the kernel's netdev for any other — mlx5, MANA, ixgbevf,
    /// iavf — or a packet socket where AF_XDP cannot be set up), vfio (hvnet's drivers
    /// only), afxdp (AF_XDP on the netdev, whatever the VF), kernel (a packet socket on the
    /// netdev: the portable fallback).
    #[arg(long, value_enum, value_name = "BACKEND")]
    vf_backend: Option<VfBackend>,

    /// Where the AF_XDP backend's XDP program runs: auto (the default: native where the
    /// driver's XDP can redirect to a socket, as mlx5's and MANA's can; generic otherwise,
    /// as for ixgbevf and iavf), native, generic.
    #[arg(long, value_enum, value_name = "MODE")]
    xdp_mode: Option<XdpModeSetting>,

    /// CPUs for the pollers, e.g. 2-3 (poller i on the i-th, round robin); default: not pinned.
    #[arg(long, value_name = "LIST")]
    cpus: Option<String>,

    /// The sysfs root (default /sys; a `hvnet sim-host --root DIR` for tests).
    #[arg(long, value_name = "DIR")]
    sysfs_root: Option<PathBuf>,

    /// Where device nodes are (default /dev; DIR/dev for `hvnet sim-host`).
    #[arg(long, value_name = "DIR")]
    dev_root: Option<PathBuf>,

    /// Put the port behind the TAP device NAME (created here, removed at exit): the kernel
    /// stack, iperf3 or any socket program on hvnet. MAC and MTU are the synthetic NIC's; the
    /// carrier follows the port's link. Address it with ip(8).
    #[arg(long, value_name = "NAME")]
    tap: Option<String>,

    /// Forward in testpmd's MODE: io (back unchanged), mac (source MAC the port's,
    /// destination --eth-peer), macswap, txonly (generate --tx-size UDP frames), rxonly.
    #[arg(long, value_enum, value_name = "MODE")]
    forward: Option<ForwardMode>,

    /// A second NetVSC (GUID): what one port receives the other sends (needs --instance).
    #[arg(long, value_name = "GUID")]
    peer: Option<String>,

    /// Destination MAC of mac and txonly (default 02:00:00:00:00:00, as testpmd).
    #[arg(long, value_name = "MAC")]
    eth_peer: Option<String>,

    /// Size of txonly frames in bytes, header to payload end, 60 to the MTU + 14 (default 64).
    #[arg(long, value_name = "BYTES", allow_negative_numbers = true)]
    tx_size: Option<u16>,

    /// Write every frame received and sent to FILE (pcapng; the direction is in each frame's
    /// flags). Costs a copy per frame.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,

    /// Print the statistics every SECONDS (default: only at exit).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    stats_period: Option<u32>,

    /// Stop after SECONDS, as on SIGTERM (default: run until SIGINT or SIGTERM).
    #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
    duration: Option<u32>,

    /// Spin when idle instead of resting 50 µs between empty rounds.
    #[arg(long)]
    busy_poll: bool,

    /// Before forwarding (io, mac, macswap), send one burst of txonly frames on each queue:
    /// the seed that keeps frames circulating against a loopback peer (testpmd's --tx-first).
    #[arg(long)]
    tx_first: bool,

    /// The Prometheus endpoint (command line only, not in the --config file).
    #[command(flatten)]
    metrics: metrics::MetricsArgs,
}

impl RunArgs {
    /// The settings the flags give.
    fn settings(&self) -> Settings {
        Settings {
            instance: self.instance.clone(),
            queues: self.queues,
            mtu: self.mtu,
            vf: self.vf,
            vf_backend: self.vf_backend,
            xdp_mode: self.xdp_mode,
            cpus: self.cpus.clone(),
            sysfs_root: self.sysfs_root.clone(),
            dev_root: self.dev_root.clone(),
            tap: self.tap.clone(),
            forward: self.forward,
            peer: self.peer.clone(),
            eth_peer: self.eth_peer.clone(),
            tx_size: self.tx_size,
            pcap: self.pcap.clone(),
            stats_period: self.stats_period,
            duration: self.duration,
            busy_poll: self.busy_poll.then_some(true),
            tx_first: self.tx_first.then_some(true),
            metrics_addr: self.metrics.metrics_addr.map(|a| a.to_string()),
            metrics_public: self.metrics.metrics_public.then_some(true),
        }
    }

    /// The checked configuration: the file's settings, then the flags'.
    pub fn config(&self) -> anyhow::Result<RunConfig> {
        let file = match &self.config {
            Some(path) => Settings::load(path)?,
            None => Settings::default(),
        };
        RunConfig::from_settings(file.overridden_by(self.settings()))
    }
}

/// One open port and the counters of its queues.
struct OpenPort {
    port: FailoverPort,
    counters: Vec<Arc<QueueCounters>>,
    /// Its metrics labels (the NetVSC instance) and what the events told them.
    labels: metrics::PortLabels,
}

/// Opens the NetVSC `instance` and the failover port over it; the port, its queues and the
/// NetVSC's instance GUID.
fn open_port(
    config: &RunConfig,
    instance: Option<Guid>,
) -> anyhow::Result<(FailoverPort, Vec<FailoverQueue>, String)> {
    let device = UioDevice::open(UioConfig {
        sysfs_root: config.sysfs_root.clone(),
        dev_root: config.dev_root.clone(),
        instance,
        ..UioConfig::default()
    })
    .context("opening the NetVSC through uio_hv_generic (`hvnet bind` binds it: docs/deploy.md)")?;
    let name = device.info().instance.clone();
    let (nic, queues) = SyntheticNic::open(
        Box::new(device),
        NicConfig {
            mtu: config.mtu.into(),
            queues: config.queues,
            sriov: config.vf == VfPolicy::On,
            ..NicConfig::default()
        },
    )
    .with_context(|| format!("negotiating NVSP and RNDIS with the host for {name}"))?;
    let provider: Arc<dyn VfProvider> = match (config.vf, config.vf_backend) {
        (VfPolicy::Off, _) => Arc::new(NoVf),
        (VfPolicy::On, backend) => {
            let mut vfio = VfioIgbvfProvider::no_iommu();
            vfio.vfio.sysfs_root = config.sysfs_root.clone();
            vfio.vfio.dev_root = config.dev_root.clone();
            // The kernel's interfaces are the namespace's own, under /sys whatever the root
            // the NetVSC was found under (hvnet sim-host's tree has no class/net).
            let xdp = vf::kernel::XdpConfig {
                mode: config.xdp_mode.mode(),
                ..vf::kernel::XdpConfig::default()
            };
            let kernel = KernelVfProvider {
                pci_sysfs_root: config.sysfs_root.clone(),
                xdp: Some(xdp),
                packet_fallback: backend == VfBackend::Auto,
                ..KernelVfProvider::default()
            };
            match backend {
                VfBackend::Auto => Arc::new(AutoVfProvider { vfio, kernel }),
                VfBackend::Vfio => Arc::new(vfio),
                VfBackend::Afxdp => Arc::new(kernel),
                VfBackend::Kernel => Arc::new(KernelVfProvider {
                    xdp: None,
                    ..kernel
                }),
            }
        }
    };
    say!("port: {name}: {}", crate::nic_summary(&nic));
    let (port, queues) = FailoverPort::open(
        nic,
        queues,
        provider,
        FailoverConfig::default(),
        Arc::new(SystemClock),
    )
    .with_context(|| format!("starting the failover port over {name}"))?;
    Ok((port, queues, name))
}

/// Logs a port event in the words operators grep for (Linux's netvsc says the same).
fn report_event(port: usize, event: &FailoverEvent) {
    let line = match event {
        FailoverEvent::VfAssociated { serial } => format!("VF associated: serial {serial}"),
        FailoverEvent::VfAttached { serial, device } => {
            format!("VF registering: {device} (serial {serial})")
        }
        FailoverEvent::VfAttachFailed { serial, error } => {
            format!("VF attach failed: serial {serial}: {error}")
        }
        FailoverEvent::SwitchedToVf { duration } => format!(
            "Data path switched to VF ({:.3} ms)",
            duration.as_secs_f64() * 1e3
        ),
        FailoverEvent::SwitchedToSynthetic {
            reason,
            failover,
            complete,
        } => format!(
            "Data path switched from VF ({}): transmit on synthetic after {:.3} ms, VF drained after {:.3} ms",
            reason.as_str(),
            failover.as_secs_f64() * 1e3,
            complete.as_secs_f64() * 1e3
        ),
        FailoverEvent::SwitchRefused => "Data path switch to VF refused by the host".into(),
        FailoverEvent::VfReleased {
            serial,
            reason,
            tx_lost,
        } => format!(
            "VF unregistering: serial {serial} ({}), {tx_lost} frame(s) it had taken not sent",
            reason.as_str()
        ),
        FailoverEvent::SessionReestablished { duration } => format!(
            "host session re-established in {:.3} ms",
            duration.as_secs_f64() * 1e3
        ),
        FailoverEvent::SessionLost { error } => format!("host session lost: {error}"),
    };
    tracing::info!(target: "hvnet::run", port, "{line}");
    say!("port {port}: {line}");
}

/// Starts the pollers: queue *i* of every port on poller *i*.
fn start_pollers(
    config: &RunConfig,
    ports: &[OpenPort],
    queues: Vec<Vec<FailoverQueue>>,
    mut tap_queues: Vec<std::fs::File>,
    capture: Option<Arc<Capture>>,
    phase: &Arc<Phase>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let lanes_per_poller = queues.iter().map(Vec::len).min().unwrap_or(0);
    let mut per_port: Vec<std::vec::IntoIter<FailoverQueue>> =
        queues.into_iter().map(Vec::into_iter).collect();
    let mut pollers = Vec::new();
    tap_queues.reverse();
    for i in 0..lanes_per_poller {
        let lanes: Vec<Lane> = per_port
            .iter_mut()
            .zip(ports)
            .enumerate()
            .filter_map(|(p, (qs, open))| {
                Some(Lane {
                    port: p,
                    queue: qs.next()?,
                    counters: open.counters[i].clone(),
                    mac: open.port.mac(),
                    pool: open.port.pool().clone(),
                })
            })
            .collect();
        let cpu = (!config.cpus.0.is_empty()).then(|| config.cpus.0[i % config.cpus.0.len()]);
        let (phase, capture, busy) = (phase.clone(), capture.clone(), config.busy_poll);
        let work: Box<dyn FnOnce() + Send> = match &config.application {
            Application::Tap(_) => {
                let tap = tap_queues
                    .pop()
                    .context("the TAP device has fewer queues than the port")?;
                let mut lane = lanes
                    .into_iter()
                    .next()
                    .context("a poller without a lane")?;
                Box::new(move || {
                    let mut scratch = Scratch::new();
                    poller::poll(&phase, busy, |draining| {
                        tap::round(&mut lane, &tap, &mut scratch, capture.as_deref(), draining)
                    });
                })
            }
            Application::Forward { mode, .. } => {
                let forwarder = forward::Forwarder::new(*mode, config.eth_peer, config.tx_size);
                let mut lanes = lanes;
                let tx_first = config.tx_first;
                Box::new(move || {
                    let mut scratch = Scratch::new();
                    if tx_first {
                        forwarder.seed(&mut lanes, &mut scratch, capture.as_deref());
                    }
                    poller::poll(&phase, busy, |draining| {
                        forwarder.round(&mut lanes, &mut scratch, capture.as_deref(), draining)
                    });
                })
            }
        };
        let thread = std::thread::Builder::new()
            .name(format!("hvnet-poll-{i}"))
            .spawn(move || {
                if let Some(cpu) = cpu
                    && let Err(e) = sys::pin_current_thread(cpu)
                {
                    tracing::warn!("poller {i}: pinning to CPU {cpu}: {e}");
                }
                work();
            })
            .context("starting a poller")?;
        pollers.push(thread);
    }
    // Queues of a port with more than the other's are not polled; the port does not wait
    // for them (dropping a queue says so).
    for (p, rest) in per_port.into_iter().enumerate() {
        let unpolled = rest.count();
        if unpolled != 0 {
            tracing::warn!(
                "port {p}: {unpolled} queue(s) more than the other port has: not polled"
            );
        }
    }
    Ok(pollers)
}

/// Prints every port's statistics; returns the readings for the next rates.
fn print_stats(
    ports: &[OpenPort],
    last: &[(Instant, PortTotals)],
    title: &str,
) -> Vec<(Instant, PortTotals)> {
    ports
        .iter()
        .zip(last)
        .enumerate()
        .map(|(i, (open, (then, before)))| {
            let now = Instant::now();
            let totals = PortTotals::read(&open.port, &open.counters);
            let rates = Rates::between(before, &totals, now.duration_since(*then));
            say!("{}", stats::format_port(i, &totals, &rates, title));
            (now, totals)
        })
        .collect()
}

/// Waits until nothing more arrives on any port: [`DRAIN_QUIET`] without a frame, and every
/// queue polled at least once in that time and found empty (a poller the scheduler set aside
/// does not end the drain early), at most [`DRAIN_BOUND`]. The frames the host had in flight
/// when the sources stopped are then received and counted, not left in the rings at close.
fn drain(ports: &[OpenPort]) {
    let received = || -> u64 {
        ports
            .iter()
            .map(|p| PortTotals::read(&p.port, &p.counters).rx_packets)
            .sum()
    };
    let quiet_rounds = || -> Vec<u64> {
        ports
            .iter()
            .flat_map(|p| p.counters.iter().map(|c| c.quiet_rounds()))
            .collect()
    };
    let deadline = Instant::now() + DRAIN_BOUND;
    let mut seen = received();
    let mut quiet_since = Instant::now();
    let mut rounds_then = quiet_rounds();
    while Instant::now() < deadline {
        // A look at the counters every millisecond: polled state, bounded.
        std::thread::sleep(Duration::from_millis(1));
        let now = received();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
            rounds_then = quiet_rounds();
        } else if quiet_since.elapsed() >= DRAIN_QUIET
            && quiet_rounds()
                .iter()
                .zip(&rounds_then)
                .all(|(now, then)| now > then)
        {
            return;
        }
    }
    tracing::warn!(
        "frames kept arriving (or a queue was not polled) for {DRAIN_BOUND:?} after the sources stopped"
    );
}

/// Runs the port until a signal or `--duration`.
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    // A refused --metrics-addr is a usage error (exit 2), as for `hvnet demo`; the same
    // address from the config file is refused by the config's checks.
    args.metrics.checked();
    let config = args.config()?;
    // Before any thread starts, so every thread inherits the mask.
    crate::signals::block_termination().context("blocking SIGINT and SIGTERM")?;
    // After the mask, which the exporter's thread inherits.
    let serving = match config.metrics {
        Some(addr) => {
            telemetry::endpoint::install(addr).context("starting the metrics endpoint")?;
            say!("metrics: serving on http://{addr}/metrics");
            Some(addr)
        }
        None => None,
    };

    let mut instances = vec![config.instance.clone()];
    if let Application::Forward {
        peer: Some(peer), ..
    } = &config.application
    {
        instances.push(Some(peer.clone()));
    }
    let mut ports = Vec::new();
    let mut queues = Vec::new();
    for instance in instances {
        let (port, qs, device) = open_port(&config, instance)?;
        let counters = (0..qs.len())
            .map(|_| Arc::new(QueueCounters::default()))
            .collect();
        ports.push(OpenPort {
            port,
            counters,
            labels: metrics::PortLabels::new(device),
        });
        queues.push(qs);
    }

    let mut tap_device = None;
    let mut tap_queues = Vec::new();
    if let Application::Tap(name) = &config.application {
        let port = &ports[0].port;
        let mut tap = tap::Tap::create(
            name,
            port.queue_count(),
            port.mac(),
            port.mtu(),
            port.nic().link_up(),
        )?;
        tap_queues = tap.take_queues();
        say!(
            "tap: {} up with {} queue(s), MAC {}, MTU {}",
            tap.name(),
            port.queue_count(),
            port.mac(),
            port.mtu()
        );
        tap_device = Some(tap);
    }
    let capture = match &config.pcap {
        Some(path) => Some(Arc::new(Capture::create(path, ports.len())?)),
        None => None,
    };
    let phase = Arc::new(Phase::default());
    let pollers = start_pollers(&config, &ports, queues, tap_queues, capture.clone(), &phase)?;
    let ports = Arc::new(ports);
    let publisher = match serving {
        Some(_) => {
            let (ports, sysfs_root) = (ports.clone(), config.sysfs_root.clone());
            let sample = move || {
                ports
                    .iter()
                    .map(|open| {
                        let mut sample = metrics::port_sample(&open.labels, &open.port, |bdf| {
                            metrics::vf_driver(&sysfs_root, bdf)
                        });
                        metrics::add_run_counters(&mut sample, &open.counters);
                        sample
                    })
                    .collect()
            };
            Some(
                telemetry::Publisher::start(telemetry::PublisherConfig::default(), sample)
                    .context("starting the metrics publisher")?,
            )
        }
        None => None,
    };
    match &config.application {
        Application::Tap(name) => say!(
            "running: {} poller(s) between the port and {name}",
            pollers.len()
        ),
        Application::Forward { mode, .. } => say!(
            "running: {} forwarding on {} port(s), {} poller(s)",
            mode.as_str(),
            ports.len(),
            pollers.len()
        ),
    }

    let started = Instant::now();
    let mut last: Vec<(Instant, PortTotals)> = ports
        .iter()
        .map(|_| (started, PortTotals::default()))
        .collect();
    let mut next_print = config.stats_period.map(|p| started + p);
    let mut carrier = ports[0].port.nic().link_up();
    let why = loop {
        let now = Instant::now();
        let mut wait = TICK;
        if let Some(at) = next_print {
            wait = wait.min(at.saturating_duration_since(now));
        }
        if let Some(d) = config.duration {
            let left = d.saturating_sub(now.duration_since(started));
            if left.is_zero() {
                break "the duration passed".to_string();
            }
            wait = wait.min(left);
        }
        if let Some(signal) = crate::signals::wait_termination(wait)? {
            break signal.to_string();
        }
        for (i, open) in ports.iter().enumerate() {
            while let Some(event) = open.port.next_event(Duration::ZERO) {
                report_event(i, &event);
                open.labels.observe(&event);
            }
        }
        if let Some(tap) = &tap_device {
            let up = ports[0].port.nic().link_up();
            if up != carrier {
                tap.set_carrier(up)?;
                say!("port 0: link {}", if up { "up" } else { "down" });
                carrier = up;
            }
        }
        if let (Some(at), Some(period)) = (next_print, config.stats_period)
            && Instant::now() >= at
        {
            last = print_stats(&ports, &last, "since last show");
            next_print = Some(at + period);
        }
    };

    say!("{why}: draining, then leaving the VF, halting RNDIS and revoking the buffers");
    phase.drain();
    drain(&ports);
    for open in ports.iter() {
        open.port.close();
    }
    phase.stop();
    for poller in pollers {
        // A poller only panics on a bug; the totals still print.
        if poller.join().is_err() {
            tracing::error!("a poller panicked");
        }
    }
    for (i, open) in ports.iter().enumerate() {
        while let Some(event) = open.port.next_event(Duration::ZERO) {
            report_event(i, &event);
            open.labels.observe(&event);
        }
    }
    // A last sample, with the close in it.
    drop(publisher);
    let first = ports
        .iter()
        .map(|_| (started, PortTotals::default()))
        .collect::<Vec<_>>();
    print_stats(&ports, &first, "average over the run");
    for (i, open) in ports.iter().enumerate() {
        let s = open.port.stats();
        say!(
            "port {i}: switches to the VF {}, back {}; VFs attached {}, released {}, left to the kernel (no hvnet driver) {}, attach errors {}",
            s.switches_to_vf,
            s.switches_to_synthetic.total(),
            s.vf_attached,
            s.vf_released,
            s.vf_unsupported,
            s.vf_attach_errors
        );
    }
    if let Some(capture) = &capture {
        let (written, missed) = capture.finish()?;
        say!(
            "capture: {written} frame(s) written to {}{}",
            config
                .pcap
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            if missed == 0 {
                String::new()
            } else {
                format!(", {missed} not captured (write failed)")
            }
        );
    }
    drop(tap_device);
    say!("closed");
    Ok(())
}
