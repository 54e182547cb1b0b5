//! VF-path throughput: the igbvf driver against the software igbvf model (its DMA engine on
//! another thread), beside a baseline measured in the same run that moves the same frames
//! through a plain SPSC queue (`rtrb`) between two threads.
//!
//! Run: `cargo bench -p integration --bench vf` (add `-- --quick` for a short run). Instruction
//! counts per packet come from `scripts/bench-ipp` (callgrind). The model is software: these
//! numbers measure the driver's per-packet cost and the handoff, not a NIC.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{frame, median, spsc_baseline};
use integration::vf_model::{SoftIgbvf, SoftIgbvfConfig, VfModelControl};
use packet::{MacAddr, PortQueue};
use vf::device::VfDevice;
use vf::igbvf::{Igbvf, IgbvfConfig, IgbvfQueue};

const MAC: MacAddr = MacAddr([0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c]);

struct Rig {
    model: VfModelControl,
    _port: Igbvf,
    queue: IgbvfQueue,
}

fn rig() -> Rig {
    let (device, model) = SoftIgbvf::new(SoftIgbvfConfig {
        mac: MAC,
        queues: 1,
        dma_size: 64 << 20,
        ..SoftIgbvfConfig::default()
    });
    let device: Arc<dyn VfDevice> = device;
    let (port, mut queues) = Igbvf::open(
        device,
        IgbvfConfig {
            queues: 1,
            ring_size: 512,
            ..IgbvfConfig::default()
        },
    )
    .expect("driver opens");
    Rig {
        model,
        _port: port,
        queue: queues.remove(0),
    }
}

/// Driver transmit: frames through `tx_burst`; the model's DMA engine puts them on its wire,
/// where this thread takes them off.
fn vf_tx(rig: &mut Rig, len: usize, count: u64) -> f64 {
    let f = frame(len, MacAddr([2, 9, 9, 9, 9, 9]));
    let pool = rig.queue.pool().clone();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let (mut sent, mut wire) = (0u64, 0u64);
    let mut burst = Vec::with_capacity(common::BURST);
    while wire < count && Instant::now() < deadline {
        while sent + (burst.len() as u64) < count && burst.len() < common::BURST {
            match pool.alloc_from(&f) {
                Some(p) => burst.push(p),
                None => break,
            }
        }
        sent += rig.queue.tx_burst(&mut burst) as u64;
        while rig.model.recv_frame(Duration::ZERO).is_some() {
            wire += 1;
        }
    }
    wire as f64 / started.elapsed().as_secs_f64()
}

/// Driver receive: this thread injects into the model's wire (keeping within the ring), the
/// driver polls `rx_burst`.
fn vf_rx(rig: &mut Rig, len: usize, count: u64) -> f64 {
    let f = frame(len, MAC);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let (mut injected, mut got) = (0u64, 0u64);
    let mut out = Vec::with_capacity(64);
    while got < count && Instant::now() < deadline {
        while injected < count && injected - got < 256 {
            rig.model.inject(0, &f);
            injected += 1;
        }
        got += rig.queue.rx_burst(&mut out, 64) as u64;
        out.clear();
    }
    got as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let count: u64 = if quick { 50_000 } else { 300_000 };
    let trials = if quick { 1 } else { 3 };
    println!(
        "VF path (igbvf driver vs software model) vs SPSC baseline, {count} frames per trial, median of {trials}"
    );
    println!(
        "{:<10} {:>6} {:>14} {:>14} {:>8}",
        "direction", "bytes", "vf pps", "baseline pps", "ratio"
    );
    let mut rig = rig();
    for len in [64usize, 1500] {
        for dir in ["tx", "rx"] {
            let vf = median(
                (0..trials)
                    .map(|_| match dir {
                        "tx" => vf_tx(&mut rig, len, count),
                        _ => vf_rx(&mut rig, len, count),
                    })
                    .collect(),
            );
            let baseline = median((0..trials).map(|_| spsc_baseline(len, count)).collect());
            println!(
                "{dir:<10} {len:>6} {vf:>14.0} {baseline:>14.0} {:>8.3}",
                vf / baseline
            );
        }
    }
    let stats = rig.model.stats();
    println!(
        "model: rx_no_descriptor {} (frames injected while the driver had no buffer posted)",
        stats.rx_no_descriptor
    );
}
