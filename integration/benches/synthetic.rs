//! Synthetic-path throughput: the guest `SyntheticNic` against the simulated host running on
//! another thread, beside a baseline measured in the same run that moves the same frames
//! through a plain SPSC queue (`rtrb`) between two threads.
//!
//! Run: `cargo bench -p integration --bench synthetic` (add `-- --quick` for a short run).
//! It prints packets per second for 64- and 1500-byte frames in each direction and the ratio
//! to the baseline. Seconds are measured here only; tests never assert on them. Instruction
//! counts per packet come from `scripts/bench-ipp` (callgrind).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod common;

use common::{frame, median, spsc_baseline};
use integration::harness::rig::SyntheticRig;
use integration::host::{HostConfig, PortMode};
use netvsc::nic::NicConfig;
use netvsc::vmbus::shm::ShmConfig;
use packet::{MacAddr, Packet, PortQueue};

fn rig() -> SyntheticRig {
    SyntheticRig::start(
        HostConfig {
            shm: ShmConfig {
                max_channels: 1,
                ..ShmConfig::default()
            },
            port: PortMode::External,
            ..HostConfig::default()
        },
        NicConfig::default(),
    )
    .expect("host starts and the NIC opens")
}

/// Guest transmit: frames through `tx_burst`; the host forwards them to its external port,
/// where a drain thread takes them.
fn synthetic_tx(rig: &mut SyntheticRig, len: usize, count: u64) -> f64 {
    let f = frame(len, MacAddr([2, 9, 9, 9, 9, 9]));
    let pool = rig.nic.pool().clone();
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    std::thread::scope(|s| {
        let (received2, stop2, host) = (received.clone(), stop.clone(), &rig.host);
        s.spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                while host.external().try_recv().is_some() {
                    received2.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::yield_now();
            }
        });
        let mut burst: Vec<Packet> = Vec::with_capacity(common::BURST);
        let mut sink = Vec::new();
        let mut sent = 0u64;
        while sent < count {
            while burst.len() < common::BURST {
                match pool.alloc_from(&f) {
                    Some(p) => burst.push(p),
                    None => break,
                }
            }
            sent += rig.queues[0].tx_burst(&mut burst) as u64;
            rig.queues[0].rx_burst(&mut sink, 64);
            sink.clear();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.load(Ordering::Relaxed) < count && Instant::now() < deadline {
            rig.queues[0].rx_burst(&mut sink, 64);
            sink.clear();
        }
        stop.store(true, Ordering::Relaxed);
    });
    count as f64 / started.elapsed().as_secs_f64()
}

/// Guest receive: an injector thread feeds the host's external port, the guest polls
/// `rx_burst`.
fn synthetic_rx(rig: &mut SyntheticRig, len: usize, count: u64) -> f64 {
    let f = frame(len, rig.nic.mac());
    let started = Instant::now();
    let mut got = 0u64;
    std::thread::scope(|s| {
        let host = &rig.host;
        let f = &f;
        s.spawn(move || {
            let mut injected = 0;
            let deadline = Instant::now() + Duration::from_secs(60);
            while injected < count && Instant::now() < deadline {
                if host.external().pending_to_guest() < 4096 && host.external().inject_on(0, f) {
                    injected += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        });
        let mut out = Vec::with_capacity(64);
        let deadline = Instant::now() + Duration::from_secs(60);
        while got < count && Instant::now() < deadline {
            got += rig.queues[0].rx_burst(&mut out, 64) as u64;
            out.clear();
        }
    });
    got as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let count: u64 = if quick { 50_000 } else { 300_000 };
    let trials = if quick { 1 } else { 3 };
    println!("synthetic path vs SPSC baseline, {count} frames per trial, median of {trials}");
    println!(
        "{:<10} {:>6} {:>14} {:>14} {:>8}",
        "direction", "bytes", "synthetic pps", "baseline pps", "ratio"
    );
    let mut rig = rig();
    for len in [64usize, 1500] {
        for dir in ["tx", "rx"] {
            let synthetic = median(
                (0..trials)
                    .map(|_| match dir {
                        "tx" => synthetic_tx(&mut rig, len.max(60), count),
                        _ => synthetic_rx(&mut rig, len.max(60), count),
                    })
                    .collect(),
            );
            let baseline = median((0..trials).map(|_| spsc_baseline(len, count)).collect());
            println!(
                "{dir:<10} {len:>6} {synthetic:>14.0} {baseline:>14.0} {:>8.3}",
                synthetic / baseline
            );
        }
    }
}
