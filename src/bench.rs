//! `hvnet bench`: the project's benchmarks for a user, in one command and one table — each
//! path's packets per second beside its same-run baseline, failover and failback durations
//! with the frames each cycle cost, and instructions per packet when valgrind is there
//! (`callgrind`: the hidden `bench-worker`). The workloads are `integration::bench`; this
//! module only chooses how long they run and prints them.

mod callgrind;

use std::time::Duration;

use anyhow::{Context, ensure};
use integration::bench::failover::{FailoverBench, FailoverReport, Removal, Spread};
use integration::bench::synthetic::SyntheticBench;
use integration::bench::vf::VfBench;
use integration::bench::{Direction, FRAME_SIZES, Rate, median, spsc};

pub use callgrind::{WorkerArgs, run_worker};

/// The most frames one rate trial may move.
pub const MAX_FRAMES: u64 = 100_000_000;

/// The most failover cycles.
pub const MAX_CYCLES: u32 = 10_000;

/// The most frames one instruction-count workload may move.
pub const MAX_IPP_FRAMES: u64 = 1_000_000;

/// The sections of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// Packets per second beside the SPSC baseline.
    Pps,
    /// Failover and failback durations and loss.
    Failover,
    /// Instructions per packet (callgrind).
    Ipp,
}

/// Options of `hvnet bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// The long run: 5 trials per rate row (medians), 1000000 frames per trial, 50 failover
    /// cycles, instruction counts over 20000 frames. Without it, one trial of 200000 frames
    /// per row, 10 cycles, instruction counts over 2000 frames: well under a minute on 2
    /// cores.
    #[arg(long)]
    full: bool,

    /// Frames per rate trial (each path row and each baseline), 1000 to 100000000.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(1000..=MAX_FRAMES)
    )]
    frames: Option<u64>,

    /// Failover cycles (VF offered, traffic, VF ejected, traffic), 1 to 10000.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=MAX_CYCLES as i64)
    )]
    cycles: Option<u32>,

    /// Frames per instruction-count workload, 32 to 1000000.
    #[arg(
        long,
        value_name = "N",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(32..=MAX_IPP_FRAMES)
    )]
    ipp_frames: Option<u64>,

    /// Leave out instructions per packet even when valgrind is installed.
    #[arg(long)]
    no_ipp: bool,

    /// Run only this section of the report.
    #[arg(long, value_enum, value_name = "SECTION", conflicts_with = "no_ipp")]
    only: Option<Section>,
}

/// How long each part runs, from the arguments.
#[derive(Clone, Copy, Debug)]
struct Plan {
    trials: usize,
    frames: u64,
    cycles: usize,
    ipp_frames: u64,
}

impl Plan {
    fn from(args: &BenchArgs) -> Self {
        let (trials, frames, cycles, ipp_frames) = if args.full {
            (5, 1_000_000, 50, 20_000)
        } else {
            (1, 200_000, 10, 2_000)
        };
        Self {
            trials,
            frames: args.frames.unwrap_or(frames),
            cycles: args.cycles.map_or(cycles, |c| c as usize),
            ipp_frames: args.ipp_frames.unwrap_or(ipp_frames),
        }
    }
}

/// Runs the benchmarks and prints the report; an error if one could not run or a failover
/// lost a frame.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let plan = Plan::from(args);
    let wanted = |s: Section| args.only.is_none_or(|o| o == s);
    say!(
        "hvnet bench ({}): seconds vary with the machine and its load; instruction counts do not",
        if args.full {
            "full"
        } else {
            "short; --full for medians of 5"
        }
    );
    if cfg!(debug_assertions) {
        say!("note: a debug build; `cargo run --release -- bench` measures the optimised code");
    }
    if wanted(Section::Pps) {
        pps(&plan)?;
    }
    let mut failover_lost = 0;
    if wanted(Section::Failover) {
        failover_lost = failover(&plan)?;
    }
    if wanted(Section::Ipp) && !args.no_ipp {
        callgrind::ipp(plan.ipp_frames)?;
    }
    ensure!(
        failover_lost == 0,
        "the failover lost {failover_lost} frame(s): a planned removal must lose none \
         (docs/failover.md, guarantee 1)"
    );
    Ok(())
}

/// The median rate of `trials` runs of `path`, each followed by a baseline run of the
/// same frames (so both see the same load); (path, baseline, frames dropped by the path).
fn row(
    plan: &Plan,
    len: usize,
    mut path: impl FnMut() -> Result<Rate, integration::bench::BenchError>,
) -> anyhow::Result<(f64, f64, u64)> {
    let (mut rates, mut baselines, mut dropped) = (Vec::new(), Vec::new(), 0);
    for _ in 0..plan.trials {
        let rate = path()?;
        dropped += rate.dropped;
        rates.push(rate.pps());
        baselines.push(spsc::spsc_baseline(len, plan.frames)?.pps());
    }
    Ok((median(rates), median(baselines), dropped))
}

fn pps(plan: &Plan) -> anyhow::Result<()> {
    say!("");
    say!(
        "packets per second: {} frame(s) per trial, {} trial(s) per row{}; baseline: the same \
         frames handed between two threads through an SPSC queue, measured right after",
        plan.frames,
        plan.trials,
        if plan.trials > 1 { " (medians)" } else { "" }
    );
    say!(
        "{:<10} {:<4} {:>6} {:>9} {:>14} {:>7} {:>9}",
        "path",
        "dir",
        "bytes",
        "Mpps",
        "baseline Mpps",
        "ratio",
        "dropped"
    );
    let print = |path: &str, dir: Direction, len: usize, (rate, base, dropped): (f64, f64, u64)| {
        say!(
            "{path:<10} {dir:<4} {len:>6} {:>9.3} {:>14.3} {:>7.3} {dropped:>9}",
            rate / 1e6,
            base / 1e6,
            rate / base
        );
    };
    let mut synthetic = SyntheticBench::start().context("the synthetic-path benchmark")?;
    for len in FRAME_SIZES {
        for dir in Direction::BOTH {
            let r = row(plan, len, || synthetic.run(dir, len, plan.frames))
                .with_context(|| format!("synthetic {dir} at {len} bytes"))?;
            print("synthetic", dir, len, r);
        }
    }
    drop(synthetic);
    let mut vf = VfBench::start().context("the VF-path benchmark")?;
    for len in FRAME_SIZES {
        for dir in Direction::BOTH {
            let r = row(plan, len, || vf.run(dir, len, plan.frames))
                .with_context(|| format!("vf {dir} at {len} bytes"))?;
            print("vf", dir, len, r);
        }
    }
    Ok(())
}

/// Runs the failover cycles and prints them; the frames the failover itself lost.
fn failover(plan: &Plan) -> anyhow::Result<u64> {
    let removal = Removal::PlannedAzure;
    let mut bench = FailoverBench::start().context("the failover benchmark")?;
    for i in 0..plan.cycles {
        bench
            .cycle(removal)
            .with_context(|| format!("failover cycle {} of {}", i + 1, plan.cycles))?;
    }
    let report = bench
        .finish()
        .context("the failover benchmark's accounting")?;
    print_failover(removal, &report);
    Ok(report.accounting.failover_lost())
}

fn print_failover(removal: Removal, r: &FailoverReport) {
    say!("");
    say!(
        "failover and failback: {} cycle(s) of VF offered, {}, under traffic both ways",
        r.cycles,
        removal.describe()
    );
    say!(
        "{:<10} {:>5} {:>12} {:>12}  from … until",
        "switch",
        "n",
        "median",
        "max"
    );
    for (name, v, what) in [
        (
            "failover",
            &r.samples.failover,
            "the trigger … every queue sends on synthetic",
        ),
        (
            "complete",
            &r.samples.complete,
            "the trigger … the VF drained and released",
        ),
        (
            "failback",
            &r.samples.failback,
            "the decision … every queue sends on the VF",
        ),
    ] {
        let s = Spread::of(v);
        say!(
            "{name:<10} {:>5} {:>12} {:>12}  {what}",
            s.n,
            ms(s.p50),
            ms(s.max)
        );
    }
    let a = &r.accounting;
    say!(
        "frames: {} to the guest, {} from it; lost to the failover {} (must be 0); counted \
         drops: overload {}, stranded {}, link down {}; in no count: {}",
        r.counts.peer_injected + r.counts.peer_injected_broadcast,
        r.counts.guest_sent,
        a.failover_lost(),
        a.overload(),
        a.stranded(),
        a.link_down(),
        a.rx_unaccounted + a.tx_unaccounted
    );
}

/// A duration in milliseconds with three decimals.
fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}
