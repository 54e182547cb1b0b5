//! Forwarding against the simulated host, three ways in one run: the guest NIC and the host
//! in one process (the in-process figure), `hvnet run` attached to `hvnet sim-host` through
//! its real uio backend, and stock `dpdk-testpmd` attached to the same kind of host.
//!
//! Each forwards in io mode on one queue against a host in loopback mode (every frame the
//! client sends comes straight back), seeded with one burst of 64-byte frames (testpmd's
//! `--tx-first`), so the rate is the round trip the client and the host sustain together.
//! The external clients' rate is the median of their own once-a-second Tx-pps, the first
//! second left out; the in-process rate is frames over time. Each line shows its ratio to the
//! in-process figure. Seconds are measured here only; tests never assert on them.
//!
//! Run: `cargo bench -p hvnet --bench sim_host` (add `-- --quick` for a short run). The
//! DPDK line needs root (a mount namespace), `unshare` and `dpdk-testpmd` (Debian's
//! dpdk-dev); without them it says why it was left out.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Served, hvnet, preload};
use integration::harness::rig::SyntheticRig;
use integration::host::{HostConfig, PortMode};
use netvsc::nic::NicConfig;
use netvsc::vmbus::shm::ShmConfig;
use packet::{MacAddr, Packet, PortQueue};

/// Frames of the seed burst (testpmd's burst).
const SEED: usize = 32;

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied()
}

/// The in-process figure: the guest NIC forwarding io against a loopback host on its own
/// thread, for `seconds`.
fn in_process(seconds: u64) -> f64 {
    let mut rig = SyntheticRig::start(
        HostConfig {
            shm: ShmConfig {
                max_channels: 1,
                ..ShmConfig::default()
            },
            port: PortMode::Loopback,
            ..HostConfig::default()
        },
        NicConfig::default(),
    )
    .expect("host starts and the NIC opens");
    let mut frame = vec![0u8; 64];
    frame[..6].copy_from_slice(&MacAddr([2, 0, 0, 0, 0, 0]).0);
    frame[6..12].copy_from_slice(&rig.nic.mac().0);
    let pool = rig.nic.pool().clone();
    let queue = &mut rig.queues[0];
    let mut burst: Vec<Packet> = (0..SEED).filter_map(|_| pool.alloc_from(&frame)).collect();
    queue.tx_burst(&mut burst);
    burst.clear();
    let (mut forwarded, started) = (0u64, Instant::now());
    let until = started + Duration::from_secs(seconds);
    while Instant::now() < until {
        queue.rx_burst(&mut burst, 64);
        forwarded += queue.tx_burst(&mut burst) as u64;
        burst.clear();
    }
    forwarded as f64 / started.elapsed().as_secs_f64()
}

/// The Tx-pps values a client printed once a second, the first left out.
fn periodic_tx_pps(out: &str) -> Vec<f64> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("Tx-pps:"))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .skip(1)
        .collect()
}

/// `hvnet run --forward io --tx-first` against `hvnet sim-host --port loopback`.
fn hvnet_run(preload: &Path, seconds: u64) -> Result<f64, String> {
    let root = std::env::temp_dir().join(format!("hvnet-bench-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut served = Served::start_with(&root, &["--port", "loopback"]);
    let out = hvnet()
        .env("LD_PRELOAD", preload)
        .arg("run")
        .arg("--sysfs-root")
        .arg(&root)
        .arg("--dev-root")
        .arg(root.join("dev"))
        .args([
            "--forward",
            "io",
            "--tx-first",
            "--vf",
            "off",
            "--busy-poll",
        ])
        .args(["--stats-period", "1", "--duration", &seconds.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running hvnet run: {e}"))?;
    served.stop();
    let _ = std::fs::remove_dir_all(&root);
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("hvnet run failed ({}):\n{text}", out.status));
    }
    // The last block is the average over the run, drain included: not a periodic one.
    let mut rates = periodic_tx_pps(&text);
    rates.pop();
    median(rates).ok_or_else(|| format!("hvnet run printed no rates:\n{text}"))
}

/// Why DPDK cannot run here, if it cannot.
fn dpdk_missing() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("needs root (a mount namespace)".into());
    }
    ["unshare", "dpdk-testpmd", "timeout"]
        .into_iter()
        .find(|tool| {
            !std::env::var_os("PATH")
                .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
        })
        .map(|tool| format!("{tool} is not installed (apt-get install dpdk-dev util-linux)"))
}

/// Stock `dpdk-testpmd --forward-mode=io --tx-first` against `hvnet sim-host --port loopback`.
fn testpmd(preload: &Path, seconds: u64) -> Result<f64, String> {
    if let Some(why) = dpdk_missing() {
        return Err(why);
    }
    let root = std::env::temp_dir().join(format!("hvnet-bench-dpdk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut served = Served::start_with(&root, &["--port", "loopback"]);
    let script = format!(
        "mount --bind \"$0/bus\" /sys/bus && exec timeout -s INT {} dpdk-testpmd \
         --no-huge -m 512 --no-pci --iova-mode=va -l 0-1 --file-prefix hvnet-bench \
         -a {} -- --forward-mode=io --tx-first --stats-period=1 --nb-cores=1 \
         --total-num-mbufs=16384",
        seconds + 1,
        integration::sim_host::DEFAULT_INSTANCE
    );
    let out = Command::new("unshare")
        .args(["-m", "-p", "-f", "--kill-child", "sh", "-c", &script])
        .arg(&root)
        .env("LD_PRELOAD", preload)
        .env("HVNET_SIM_DEV", root.join("dev"))
        .output()
        .map_err(|e| format!("running dpdk-testpmd: {e}"))?;
    served.stop();
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all("/var/run/dpdk/hvnet-bench");
    let text = String::from_utf8_lossy(&out.stdout);
    median(periodic_tx_pps(&text)).ok_or_else(|| format!("testpmd printed no rates:\n{text}"))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let seconds = if quick { 3 } else { 8 };
    let preload = preload();
    println!(
        "io forwarding against a loopback sim host, one queue, 64-byte frames seeded by one burst, {seconds} s each"
    );
    println!(
        "{:<50} {:>12} {:>14}",
        "client", "frames/s", "vs in-process"
    );
    let base = in_process(seconds);
    println!(
        "{:<50} {base:>12.0} {:>14.3}",
        "in-process (guest NIC + host thread)", 1.0
    );
    for (name, rate) in [
        (
            "hvnet run, through uio + preload",
            hvnet_run(&preload, seconds),
        ),
        (
            "dpdk-testpmd (net_netvsc), through uio + preload",
            testpmd(&preload, seconds),
        ),
    ] {
        match rate {
            Ok(rate) => println!("{name:<50} {rate:>12.0} {:>14.3}", rate / base),
            Err(why) => println!("{name:<50} {:>12} {why}", "-"),
        }
    }
}
