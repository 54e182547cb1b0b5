//! `hvnet`: the command-line front end. Wiring only; the protocol logic lives in the crates.

/// `println!` that ends the program quietly when stdout is gone (e.g. piped into `head`)
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    }};
}

mod bench;
mod bind;
mod demo;
mod failover_demo;
mod live;
mod probe;
mod run;
mod signals;
mod sim_host;
mod stats;

use std::ffi::OsString;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, Subcommand};
use tracing_subscriber::filter::LevelFilter;

/// The values `--log` accepts, least verbose first.
const LOG_LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A userspace network driver for Linux guests on Hyper-V and Azure: the synthetic NIC
/// (VMBus, NVSP, RNDIS) today, the SR-IOV VF and failover between them next.
#[derive(Debug, Parser)]
#[command(name = "hvnet", version, about, long_about = None)]
struct Cli {
    /// Most verbose log level to print on stderr.
    #[arg(
        long,
        global = true,
        value_name = "LEVEL",
        default_value = "warn",
        env = "HVNET_LOG",
        ignore_case = true,
        value_parser = PossibleValuesParser::new(LOG_LEVELS).try_map(|s| s.parse::<LevelFilter>())
    )]
    log: LevelFilter,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a session against the built-in simulated Hyper-V host and print what happened.
    ///
    /// The simulated host (NetVSP plus a vSwitch with an in-memory external port) runs on its
    /// own thread and sees only the guest's shared memory and doorbells, as a real host
    /// would. The demo opens the synthetic NIC against it, negotiates NVSP and RNDIS, sends
    /// and receives frames on every queue with their contents checked, flaps the link and
    /// prints the counters of both sides. Then it runs a FailoverPort over a second NIC and a
    /// software SR-IOV VF under traffic both ways through the --scenario chosen (a planned
    /// removal, a surprise removal, a link flap, a servicing absence; all by default), each
    /// starting with the switch to the VF, with every frame delivered in order or counted. A
    /// live line shows the rates, the data path and the switches (redrawn on a terminal, a
    /// plain line a second otherwise); --duration repeats the scenarios, --metrics-addr serves
    /// it all to Prometheus.
    Demo(demo::DemoArgs),

    /// Open this guest's synthetic NIC through uio_hv_generic, negotiate with the real host
    /// and print what it answered (NVSP and NDIS versions, MAC, MTU, link, queues, events).
    ///
    /// Needs root and a NetVSC bound to uio_hv_generic; docs/deploy.md shows how. The
    /// kernel's netvsc driver must not be using the device at the same time.
    Probe(probe::ProbeArgs),

    /// Run the port: the synthetic NIC and its VF as one port, connected to a TAP device (the
    /// kernel stack) or to one of testpmd's forwarding modes, until SIGINT or SIGTERM.
    ///
    /// Needs root and a NetVSC bound to uio_hv_generic (`hvnet bind`; docs/deploy.md). Every
    /// setting can come from --config FILE (TOML) as well; flags win. On a signal the VF is
    /// left as a planned removal leaves it, then RNDIS is halted and the receive and send
    /// buffers revoked, and the totals print in testpmd's words (RX-packets, RX-missed,
    /// TX-packets, TX-dropped, …), for the port and for each path. Examples:
    ///
    ///   hvnet run --tap hvnet0 --queues 4            # then: ip addr add … dev hvnet0
    ///
    ///   hvnet run --forward macswap --stats-period 5 --cpus 2-3
    ///
    ///   hvnet run --config /etc/hvnet/hvnet.toml
    ///
    /// Against `hvnet sim-host --root DIR`: LD_PRELOAD=libhvnet_sim_uio.so hvnet run
    /// --sysfs-root DIR --dev-root DIR/dev … (docs/sim-host.md).
    Run(run::RunArgs),

    /// Measure hvnet on this machine: packets per second on each path beside a baseline
    /// measured in the same run, failover and failback durations, and instructions per packet.
    ///
    /// Everything runs in this process against the simulated host and the software VF (no
    /// root, no device). The report is a table per part:
    ///
    /// - packets per second: one row per path (synthetic: the guest's NIC queue against the
    ///   simulated host's thread; vf: the igbvf driver's queue against the software VF's DMA
    ///   thread), direction (tx: the guest sends; rx: it receives) and frame size (64, 1500
    ///   bytes), in Mpps beside the baseline — the same frames allocated, copied and handed to
    ///   another thread through a wait-free SPSC queue, measured right after each trial so
    ///   both see the same load — and their ratio: what the path costs over a bare handoff.
    ///   "dropped" counts frames the simulated peer dropped (overload), each counted.
    ///
    /// - failover and failback: --cycles times the VF offered, traffic both ways, the VF
    ///   ejected the planned way (Azure's order), traffic on synthetic; the median and the
    ///   longest failover (trigger until every queue sends on synthetic), complete (until the
    ///   VF is drained and released) and failback (until every queue sends on the VF); then
    ///   where every frame went: lost to the failover must be 0 (the command fails
    ///   otherwise), other losses are counted by reason.
    ///
    /// - instructions per packet, when valgrind is installed (--no-ipp leaves them out): each
    ///   path's queue in lock-step with its peer, run again as this executable under
    ///   callgrind, counting only inside the queue's tx_burst and rx_burst (the peer's thread
    ///   is not counted); failover is the failover port on the VF, failback the same after a
    ///   whole cycle, each compared with the bare VF.
    ///
    /// Seconds vary with the machine and whatever else runs on it: compare ratios to the
    /// baseline, not Mpps between runs. Instruction counts do not vary between runs of the
    /// same build. Build with --release to measure the optimised code. The default, short
    /// mode finishes in well under a minute on 2 cores; --full runs longer, with medians.
    /// docs/bench.md says more. Examples:
    ///
    ///   cargo run --release -- bench
    ///
    ///   hvnet bench --full
    ///
    ///   hvnet bench --only ipp --ipp-frames 20000
    Bench(bench::BenchArgs),

    /// One workload of `hvnet bench`, run by it under valgrind.
    #[command(hide = true)]
    BenchWorker(bench::WorkerArgs),

    /// Show the metrics of a running `hvnet run`, `hvnet demo` or `hvnet sim-host`: read from
    /// its --metrics-addr and listed by the catalogue (docs/metrics.md), each metric with its
    /// series; --json for scripts. Example: hvnet stats --metrics-addr 9464
    Stats(stats::StatsArgs),

    /// Serve the simulated Hyper-V host to other processes: a NetVSC any netvsc client can
    /// attach to, as on a Hyper-V guest with the device bound to uio_hv_generic.
    ///
    /// Publishes under --root the sysfs tree such a guest's kernel shows
    /// (bus/vmbus/devices/INSTANCE, class/uio/uio0) and the device node dev/uio0, then
    /// serves one client at a time, session after session, until SIGINT or SIGTERM. The node
    /// is a unix socket: a client runs with the preload library libhvnet_sim_uio.so (built
    /// beside hvnet by `cargo build -p hvnet-sim-uio`), which makes opening and mapping it
    /// behave as a real uio node. Example, in two terminals:
    ///
    ///   hvnet sim-host --root /tmp/sim
    ///
    ///   LD_PRELOAD=target/debug/libhvnet_sim_uio.so hvnet probe --sysfs-root /tmp/sim --dev-root /tmp/sim/dev
    ///
    /// Up to 8 queues: subchannels are published under channels/ as the host offers them. A
    /// DPDK application (stock dpdk-testpmd, --no-huge --iova-mode=va) attaches too, in a mount
    /// namespace with the tree over /sys/bus and HVNET_SIM_DEV=DIR/dev: docs/sim-host.md.
    /// --tap NAME puts the kernel stack behind the host; `hvnet sim-host ctl` scripts it.
    SimHost(sim_host::SimHostArgs),

    /// Hand NetVSCs and their VFs from the kernel to hvnet: the NetVSC to uio_hv_generic, its
    /// VF to vfio-pci (only a VF hvnet has a driver for), 2 MiB hugepages reserved.
    ///
    /// Writes, in order, under --sysfs-root: kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
    /// (only if fewer than --hugepages are reserved); module/vfio/parameters/
    /// enable_unsafe_noiommu_mode = 1 when a VF is bound and there is no IOMMU; the NetVSC class
    /// GUID to bus/vmbus/drivers/uio_hv_generic/new_id (EEXIST: there already); per NetVSC its
    /// GUID to hv_netvsc/unbind and uio_hv_generic/bind; per VF driver_override = vfio-pci, its
    /// driver's unbind, bus/pci/drivers_probe. Only Intel 82576 and I350 VFs (8086:10ca,
    /// 8086:1520: the igbvf driver) go to vfio-pci; any other VF (mlx5, MANA, ixgbevf, iavf)
    /// stays on its kernel driver and is reported. A VF is the PCI function whose interface has
    /// its NetVSC's MAC.
    ///
    /// Safety: a NetVSC whose interface (or its VF's, or a bridge, bond or VLAN on them) carries
    /// the default route or the SSH session this runs in is refused: with --instance nothing at
    /// all is written, without it the others are bound. --force overrides. The original drivers,
    /// no-IOMMU mode and hugepage count are recorded in --state for `hvnet unbind`. --dry-run
    /// prints the writes as a shell script and writes nothing. Examples:
    ///
    ///   hvnet status
    ///
    ///   hvnet bind --instance ed963694-e847-4b2a-85af-bc9cfc11d6f3 --dry-run
    ///
    ///   hvnet bind --instance ed963694-e847-4b2a-85af-bc9cfc11d6f3 --hugepages 128
    Bind(bind::BindArgs),

    /// Give back what `hvnet bind` took: each NetVSC and VF to the driver it had, no-IOMMU mode
    /// and the hugepage pool as they were.
    ///
    /// Reads the state `hvnet bind` recorded (--state) and writes only what differs from it,
    /// in the reverse order of bind: per VF its driver_override as it was (cleared), unbind
    /// from vfio-pci, bus/pci/drivers_probe (its own driver takes it); per NetVSC
    /// uio_hv_generic/unbind and hv_netvsc/bind; the class GUID to uio_hv_generic/remove_id if
    /// bind added it; enable_unsafe_noiommu_mode; nr_hugepages (unless changed since). Stop
    /// `hvnet run` first. A failed write is reported and the others still made; the state is
    /// kept for another try, and removed once everything is restored. Examples:
    ///
    ///   hvnet unbind --dry-run
    ///
    ///   hvnet unbind
    Unbind(bind::UnbindArgs),

    /// Show every NetVSC and VF (driver, interface, MAC, VF slot serial and vendor:device) and
    /// what `hvnet bind` would do with each.
    ///
    /// Writes nothing. Actions read like "bind to vfio-pci (igbvf)", "leave on mlx5_core: no
    /// hvnet driver; hvnet run uses it through the kernel (AF_XDP)" or "refuse: carries the default route (on eth0)
    /// (use --force)". A VF belongs to the NetVSC whose MAC its interface has; its slot is
    /// named by the serial the host associates it with. Examples:
    ///
    ///   hvnet status
    ///
    ///   hvnet status --json | jq '.netvscs[] | {instance, action}'
    Status(bind::StatusArgs),
}

/// One line saying what a synthetic NIC negotiated with its host.
fn nic_summary(nic: &netvsc::nic::SyntheticNic) -> String {
    format!(
        "NVSP {:#x}, NDIS {}.{}, MAC {}, MTU {}, link {}{}, {} queue(s)",
        nic.nvsp_version(),
        nic.ndis_version() >> 16,
        nic.ndis_version() & 0xffff,
        nic.mac(),
        nic.mtu(),
        if nic.link_up() { "up" } else { "down" },
        match nic.link_speed() {
            0 => String::new(), // not asked below NVSP 5
            bps => format!(" at {} Mbit/s", bps / 1_000_000),
        },
        nic.queue_count()
    )
}

/// The instant `after` from now; an error, not a panic, past what the clock can hold.
fn deadline(after: Duration) -> anyhow::Result<Instant> {
    Instant::now()
        .checked_add(after)
        .with_context(|| format!("a deadline {after:?} from now is past the clock's range"))
}

/// Parses the command line, or exits with clap's message (help and version included).
fn parse_cli(args: &[OsString]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(args).map_err(|e| bad_log_level_hidden_by(&e, args).unwrap_or(e))
}

/// The error for a bad `--log` that clap did not report because help or the version was asked
/// for, if there is one.
///
/// clap checks the value of an option given as `--log LEVEL` (not `--log=LEVEL`) before a
/// subcommand only once the subcommand's arguments are parsed, so `hvnet --log loud demo
/// --help` (or `hvnet --log loud help demo`) printed help and said nothing of `loud`. The
/// same arguments are parsed again here by a command that knows only `--log` and takes the
/// subcommand, unparsed, as an external one: its value is checked once the subcommand is
/// reached.
fn bad_log_level_hidden_by(error: &clap::Error, args: &[OsString]) -> Option<clap::Error> {
    if !matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        return None;
    }
    let cli = Cli::command();
    let log = cli.get_arguments().find(|a| a.get_id() == "log")?.clone();
    let top_level = clap::Command::new("hvnet")
        .disable_help_subcommand(true)
        .allow_external_subcommands(true)
        // Only what the command line says: help still shows with a bad HVNET_LOG.
        .arg(log.global(false).env(None));
    let bad = top_level.try_get_matches_from(args).err()?;
    matches!(
        bad.kind(),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation
    )
    .then_some(bad)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = parse_cli(&args).unwrap_or_else(|e| e.exit());
    tracing_subscriber::fmt()
        .with_max_level(cli.log)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Probe(args) => probe::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::BenchWorker(args) => bench::run_worker(&args),
        Command::Stats(args) => stats::run(&args),
        Command::SimHost(args) => sim_host::run(&args),
        Command::Bind(args) => bind::run_bind(&args),
        Command::Unbind(args) => bind::run_unbind(&args),
        Command::Status(args) => bind::run_status(&args),
    }
}

#[cfg(test)]
mod tests {
    use netvsc::vmbus::uio::Guid;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let args: Vec<OsString> = std::iter::once("hvnet")
            .chain(args.iter().copied())
            .map(OsString::from)
            .collect();
        parse_cli(&args)
    }

    /// The message clap would print, without its styling.
    fn refused(args: &[&str]) -> (ErrorKind, String) {
        let e = parse(args).expect_err("accepted");
        (e.kind(), e.render().to_string())
    }

    #[test]
    fn a_bad_log_level_is_reported_even_when_help_follows() {
        for args in [
            &["--log", "loud", "demo", "--help"][..],
            &["--log", "loud", "help", "demo"],
            &["--log", "loud", "probe", "-h"],
            &["--log", "loud", "--version"],
            &["--log=loud", "demo", "--help"],
            &["demo", "--log", "loud", "--help"],
            &["--log", "loud", "demo"],
        ] {
            let (kind, message) = refused(args);
            assert_eq!(kind, ErrorKind::InvalidValue, "{args:?}: {message}");
            assert!(
                message.contains("invalid value 'loud' for '--log <LEVEL>'")
                    && message.contains("possible values: off, error, warn, info, debug, trace"),
                "{args:?}: {message}"
            );
        }
        // Good levels, in any case, still let help through.
        for args in [
            &["--log", "debug", "demo", "--help"][..],
            &["--log", "TRACE", "--help"],
        ] {
            assert_eq!(refused(args).0, ErrorKind::DisplayHelp, "{args:?}");
        }
        let cli = parse(&["--log", "Info", "demo"]).unwrap();
        assert_eq!(cli.log, LevelFilter::INFO);
        assert_eq!(parse(&["demo"]).unwrap().log, LevelFilter::WARN);
    }

    #[test]
    fn negative_numbers_are_refused_with_the_accepted_range() {
        for (args, expected) in [
            (
                &["probe", "--timeout", "-1"][..],
                "invalid value '-1' for '--timeout <SECONDS>': -1 is not in 1..=3600",
            ),
            (
                &["probe", "--queues", "-2"],
                "invalid value '-2' for '--queues <QUEUES>': -2 is not in 1..=64",
            ),
            (
                &["probe", "--mtu", "-1500"],
                "invalid value '-1500' for '--mtu <MTU>': -1500 is not in 576..=9000",
            ),
            (
                &["demo", "--queues", "-1"],
                "invalid value '-1' for '--queues <QUEUES>': -1 is not in 1..=8",
            ),
            (
                &["demo", "--mtu", "-1"],
                "invalid value '-1' for '--mtu <MTU>': -1 is not in 576..=9000",
            ),
            (
                &["demo", "--frames", "-1"],
                "invalid value '-1' for '--frames <FRAMES>': -1 is not in 0..=1000000",
            ),
            (
                &["demo", "--nvsp-version", "-1"],
                "invalid value '-1' for '--nvsp-version <NVSP_VERSION>': not a number",
            ),
        ] {
            let (kind, message) = refused(args);
            assert_eq!(kind, ErrorKind::ValueValidation, "{args:?}: {message}");
            assert!(message.contains(expected), "{args:?}: {message}");
        }
    }

    #[test]
    fn frames_and_timeout_are_capped() {
        let (_, message) = refused(&["demo", "--frames", "4294967295"]);
        assert!(
            message.contains("4294967295 is not in 0..=1000000"),
            "{message}"
        );
        assert!(parse(&["demo", "--frames", "1000000"]).is_ok());
        let (_, message) = refused(&["probe", "--timeout", "18446744073709551615"]);
        assert!(message.contains("'--timeout <SECONDS>'"), "{message}");
        let (_, message) = refused(&["probe", "--timeout", "0"]);
        assert!(message.contains("0 is not in 1..=3600"), "{message}");
        assert!(parse(&["probe", "--timeout", "3600"]).is_ok());
    }

    #[test]
    fn a_bad_instance_guid_is_refused_naming_the_accepted_form() {
        let (kind, message) = refused(&["probe", "--instance", "eth0"]);
        assert_eq!(kind, ErrorKind::ValueValidation);
        assert!(
            message.contains("invalid value 'eth0' for '--instance <GUID>'")
                && message.contains("32 hex digits grouped 8-4-4-4-12"),
            "{message}"
        );
        let Command::Probe(args) = parse(&[
            "probe",
            "--instance",
            "{ED963694-E847-4B2A-85AF-BC9CFC11D6F3}",
        ])
        .unwrap()
        .command
        else {
            panic!("not probe");
        };
        assert_eq!(
            args.instance.as_ref().map(Guid::as_str),
            Some("ed963694-e847-4b2a-85af-bc9cfc11d6f3")
        );
    }

    #[test]
    fn the_help_states_the_bounds_the_code_uses() {
        let mut cli = Cli::command();
        let probe = cli
            .find_subcommand_mut("probe")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            probe.contains(&format!("after {} events", probe::MAX_EVENTS))
                && probe.contains("half a second")
                && probe::EVENT_QUIET == Duration::from_millis(500),
            "{probe}"
        );
        let demo = cli
            .find_subcommand_mut("demo")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            demo.contains(&format!("0 to {}", demo::MAX_FRAMES)),
            "{demo}"
        );
    }

    #[test]
    fn a_deadline_past_the_clock_is_an_error_not_a_panic() {
        let err = deadline(Duration::MAX).unwrap_err();
        assert!(err.to_string().contains("past the clock's range"), "{err}");
        assert!(deadline(Duration::from_secs(1)).unwrap() > Instant::now());
    }
}
