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

mod demo;
mod failover_demo;
mod probe;

use clap::{Parser, Subcommand};

/// A userspace network driver for Linux guests on Hyper-V and Azure: the synthetic NIC
/// (VMBus, NVSP, RNDIS) today, the SR-IOV VF and failover between them next.
#[derive(Debug, Parser)]
#[command(name = "hvnet", version, about, long_about = None)]
struct Cli {
    /// Most verbose log level to print on stderr: off, error, warn, info, debug or trace.
    #[arg(long, global = true, default_value = "warn", env = "HVNET_LOG")]
    log: tracing_subscriber::filter::LevelFilter,

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
    /// software SR-IOV VF under traffic both ways: the switch to the VF, a planned removal, a
    /// re-offer and a surprise removal, with every frame delivered in order or counted.
    Demo(demo::DemoArgs),

    /// Open this guest's synthetic NIC through uio_hv_generic, negotiate with the real host
    /// and print what it answered (NVSP and NDIS versions, MAC, MTU, link, queues, events).
    ///
    /// Needs root and a NetVSC bound to uio_hv_generic; docs/deploy.md shows how. The
    /// kernel's netvsc driver must not be using the device at the same time.
    Probe(probe::ProbeArgs),
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_max_level(cli.log)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Probe(args) => probe::run(&args),
    }
}
