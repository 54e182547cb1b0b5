//! Synthetic-path throughput: the guest `SyntheticNic` against the simulated host running on
//! another thread, beside a baseline measured in the same run that moves the same frames
//! through a plain SPSC queue (`rtrb`) between two threads. The workloads are
//! `integration::bench::{synthetic, spsc}`, the same `hvnet bench` runs.
//!
//! Run: `cargo bench -p integration --bench synthetic` (add `-- --quick` for a short run).
//! It prints packets per second for 64- and 1500-byte frames in each direction and the ratio
//! to the baseline. Seconds are measured here only; tests never assert on them. Instruction
//! counts per packet come from `scripts/bench-ipp` (callgrind).

use integration::bench::synthetic::SyntheticBench;
use integration::bench::{Direction, FRAME_SIZES, median, spsc};

fn main() -> Result<(), integration::bench::BenchError> {
    let quick = std::env::args().any(|a| a == "--quick");
    let count: u64 = if quick { 50_000 } else { 300_000 };
    let trials = if quick { 1 } else { 3 };
    println!("synthetic path vs SPSC baseline, {count} frames per trial, median of {trials}");
    println!(
        "{:<10} {:>6} {:>14} {:>14} {:>8} {:>8}",
        "direction", "bytes", "synthetic pps", "baseline pps", "ratio", "dropped"
    );
    let mut bench = SyntheticBench::start()?;
    for len in FRAME_SIZES {
        for dir in Direction::BOTH {
            let (mut rates, mut dropped) = (Vec::new(), 0);
            for _ in 0..trials {
                let rate = bench.run(dir, len, count)?;
                dropped += rate.dropped;
                rates.push(rate.pps());
            }
            let synthetic = median(rates);
            let baseline = median(
                (0..trials)
                    .map(|_| spsc::spsc_baseline(len, count).map(|r| r.pps()))
                    .collect::<Result<_, _>>()?,
            );
            println!(
                "{dir:<10} {len:>6} {synthetic:>14.0} {baseline:>14.0} {:>8.3} {dropped:>8}",
                synthetic / baseline
            );
        }
    }
    Ok(())
}
