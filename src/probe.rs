//! `hvnet probe`: open a real guest's synthetic NIC through `uio_hv_generic` and report what
//! the host negotiated.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use netvsc::nic::{NicConfig, SyntheticNic};
use netvsc::vmbus::uio::{UioConfig, UioDevice};

/// Options of `hvnet probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Instance GUID of the NetVSC to open (see /sys/bus/vmbus/devices); default: the first
    /// NetVSC bound to uio_hv_generic.
    #[arg(long)]
    instance: Option<String>,

    /// Queues to request (subchannels are one-shot per session; the host may grant fewer).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    queues: u16,

    /// Layer-3 MTU to negotiate, 576 to 9000.
    #[arg(long, default_value_t = 1500, value_parser = clap::value_parser!(u16).range(576..=9000))]
    mtu: u16,

    /// The sysfs root to search (for testing against a copy of a guest's tree).
    #[arg(long, default_value = "/sys")]
    sysfs_root: PathBuf,

    /// Seconds to wait for each host answer.
    #[arg(long, default_value_t = 5)]
    timeout: u64,
}

/// Runs the probe.
pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let device = UioDevice::open(UioConfig {
        sysfs_root: args.sysfs_root.clone(),
        instance: args.instance.clone(),
        ..UioConfig::default()
    })
    .context(
        "opening the NetVSC through uio_hv_generic (see docs/deploy.md for binding the device)",
    )?;
    let info = format!("{:?}", device.info());
    let (nic, _queues) = SyntheticNic::open(
        Box::new(device),
        NicConfig {
            mtu: args.mtu as usize,
            queues: args.queues,
            control_timeout: Duration::from_secs(args.timeout),
            ..NicConfig::default()
        },
    )
    .context("negotiating NVSP and RNDIS with the host")?;
    say!("device: {info}");
    say!("{}", crate::nic_summary(&nic));
    while let Some(event) = nic.next_event(Duration::from_millis(500)) {
        say!("event: {event:?}");
    }
    Ok(())
}
