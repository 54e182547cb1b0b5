//! Failover: how long the port takes to leave the VF and to return to it, how many frames
//! each kind of removal costs, and whether throughput on the VF after a failback matches
//! throughput before — all under traffic both ways (`integration::harness::traffic`), against the
//! simulated host and the software VF. The cycles are `integration::bench::failover`, the
//! same `hvnet bench` runs.
//!
//! Run: `cargo bench -p integration --bench failover` (add `-- --quick` for fewer cycles).
//! Instruction counts per packet of the port against the bare VF come from
//! `scripts/bench-ipp` (callgrind). Durations are wall time on this machine, reported as a
//! distribution; they include the simulated host's and VF's threads sharing the CPUs.
//!
//! - **failover**: from the trigger (the VFIO request IRQ, the host's 129, the device gone)
//!   until every queue transmits on synthetic;
//! - **complete**: until the VF's rings are drained and it is released;
//! - **failback**: from the decision to switch until every queue transmits on the VF.

use std::time::Duration;

use integration::bench::BenchError;
use integration::bench::failover::{FailoverBench, Removal, Spread};

fn distribution(name: &str, v: &[Duration]) {
    let s = Spread::of(v);
    if s.n == 0 {
        return;
    }
    println!(
        "  {name:<9} n={:<4} min {:>9.3?}  p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        s.n, s.min, s.p50, s.p90, s.p99, s.max
    );
}

fn scenario(removal: Removal, cycles: usize) -> Result<(), BenchError> {
    let mut bench = FailoverBench::start()?;
    for _ in 0..cycles {
        bench.cycle(removal)?;
    }
    let report = bench.finish()?;
    let (rx_lost, tx_lost) = (report.rx_lost(), report.tx_lost());
    println!(
        "{}: {cycles} cycles, {} frames to the guest and {} from it; lost {} to the guest \
         ({:.2} per cycle) and {} from it ({:.2} per cycle), every one counted",
        removal.describe(),
        report.counts.peer_injected,
        report.counts.guest_sent,
        rx_lost,
        rx_lost as f64 / cycles as f64,
        tx_lost,
        tx_lost as f64 / cycles as f64,
    );
    distribution("failover", &report.samples.failover);
    distribution("complete", &report.samples.complete);
    distribution("failback", &report.samples.failback);
    Ok(())
}

fn throughput_after_failback(
    window: Duration,
    windows: usize,
    rounds: usize,
) -> Result<(), BenchError> {
    let bench = FailoverBench::start()?;
    bench.attach()?;
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let before = bench.steady_rate(window, windows);
        bench.detach(Removal::PlannedAzure)?;
        let synthetic = bench.steady_rate(window, windows);
        bench.attach()?;
        let after = bench.steady_rate(window, windows);
        let settled = bench.steady_rate(window, windows);
        println!(
            "  on VF before {before:>10.0} f/s   on synthetic {synthetic:>10.0} f/s   on VF right \
             after failback {after:>10.0} f/s, then {settled:>10.0} f/s   after/before {:.3}",
            after / before
        );
        ratios.push(after / before);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "throughput after failback / before (medians of {windows} windows of {window:?}): \
         median {:.3} over {rounds} rounds, range {:.3}..{:.3} (goal ≥ 0.95)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    bench.finish()?;
    Ok(())
}

fn main() -> Result<(), BenchError> {
    let quick = std::env::args().any(|a| a == "--quick");
    let cycles = if quick { 10 } else { 50 };
    println!(
        "failover bench ({} cycles per scenario; wall time on this machine)",
        cycles
    );
    for removal in Removal::ALL {
        scenario(removal, cycles)?;
    }
    let (windows, rounds) = if quick { (3, 3) } else { (9, 7) };
    throughput_after_failback(Duration::from_millis(100), windows, rounds)
}
