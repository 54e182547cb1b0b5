//! VF-path throughput: the igbvf driver against the software igbvf model (its DMA engine on
//! another thread), beside a baseline measured in the same run that moves the same frames
//! through a plain SPSC queue (`rtrb`) between two threads. The workloads are
//! `integration::bench::{vf, spsc}`, the same `hvnet bench` runs.
//!
//! Run: `cargo bench -p integration --bench vf` (add `-- --quick` for a short run). Instruction
//! counts per packet come from `scripts/bench-ipp` (callgrind). The model is software: these
//! numbers measure the driver's per-packet cost and the handoff, not a NIC.

use integration::bench::vf::VfBench;
use integration::bench::{Direction, FRAME_SIZES, median, spsc};

fn main() -> Result<(), integration::bench::BenchError> {
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
    let mut bench = VfBench::start()?;
    for len in FRAME_SIZES {
        for dir in Direction::BOTH {
            let vf = median(
                (0..trials)
                    .map(|_| bench.run(dir, len, count).map(|r| r.pps()))
                    .collect::<Result<_, _>>()?,
            );
            let baseline = median(
                (0..trials)
                    .map(|_| spsc::spsc_baseline(len, count).map(|r| r.pps()))
                    .collect::<Result<_, _>>()?,
            );
            println!(
                "{dir:<10} {len:>6} {vf:>14.0} {baseline:>14.0} {:>8.3}",
                vf / baseline
            );
        }
    }
    let stats = bench.model_stats();
    println!(
        "model: rx_no_descriptor {} (frames injected while the driver had no buffer posted)",
        stats.rx_no_descriptor
    );
    Ok(())
}
