//! Instructions per packet: this executable run again under
//! `valgrind --tool=callgrind --toggle-collect=…` as `hvnet bench-worker ipp PATH DIR BYTES
//! FRAMES`, which runs one lock-step workload of `integration::bench::ipp` and prints
//! `packets N`; callgrind counts only the instructions inside the workload's two counted
//! functions, and the count in its output's `summary:` (or `totals:`) line divided by N is
//! the figure.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use integration::bench::ipp::{self, IppPath};
use integration::bench::{Direction, FRAME_SIZES};

/// Options of the hidden `hvnet bench-worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    #[command(subcommand)]
    job: Job,
}

#[derive(Debug, clap::Subcommand)]
enum Job {
    /// One lock-step workload, for counting under callgrind; prints `packets N`.
    Ipp {
        /// synthetic, vf, failover or failback.
        #[arg(value_parser = parse::<IppPath>)]
        path: IppPath,
        /// tx or rx.
        #[arg(value_parser = parse::<Direction>)]
        dir: Direction,
        /// Frame length, 60 to 1514.
        #[arg(value_parser = clap::value_parser!(u64).range(60..=1514))]
        bytes: u64,
        /// Frames to move.
        #[arg(value_parser = clap::value_parser!(u64).range(1..=super::MAX_IPP_FRAMES))]
        frames: u64,
    },
}

/// A value parser from the type's `FromStr` with its message.
fn parse<T: std::str::FromStr<Err = integration::bench::BenchError>>(s: &str) -> Result<T, String> {
    s.parse()
        .map_err(|e: integration::bench::BenchError| e.to_string())
}

/// Runs the worker's job.
pub fn run_worker(args: &WorkerArgs) -> anyhow::Result<()> {
    let Job::Ipp {
        path,
        dir,
        bytes,
        frames,
    } = args.job;
    let packets = ipp::run(path, dir, bytes as usize, frames)
        .with_context(|| format!("the {path} {dir} workload at {bytes} bytes"))?;
    say!("packets {packets}");
    Ok(())
}

/// Whether `tool` is an executable file in a directory of `PATH`.
fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// A directory of its own under the temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("hvnet-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the scratch directory {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Counts and prints instructions per packet for every path, direction and frame size,
/// `frames` frames per workload; a line saying how to get them without valgrind.
pub fn ipp(frames: u64) -> anyhow::Result<()> {
    say!("");
    let Some(valgrind) = on_path("valgrind") else {
        say!(
            "instructions per packet: valgrind is not installed; apt-get install valgrind \
             (or your system's package) and run hvnet bench again"
        );
        return Ok(());
    };
    let exe = std::env::current_exe().context("finding this executable to run it again")?;
    let scratch = Scratch::new()?;
    say!(
        "instructions per packet (callgrind, {frames} frames per workload, driver and peer in \
         lock-step; the peer's thread is not counted); vs: the failover port against the bare VF"
    );
    say!(
        "{:<10} {:<4} {:>6} {:>9} {:>14} {:>11} {:>8}",
        "path",
        "dir",
        "bytes",
        "packets",
        "instructions",
        "per packet",
        "vs"
    );
    let mut bare_vf = std::collections::HashMap::new();
    for path in IppPath::ALL {
        for dir in Direction::BOTH {
            for len in FRAME_SIZES {
                let (packets, instructions) =
                    count(&valgrind, &exe, &scratch.0, path, dir, len, frames)
                        .with_context(|| format!("counting {path} {dir} at {len} bytes"))?;
                let per_packet = instructions as f64 / packets as f64;
                let vs = match path {
                    IppPath::Vf => {
                        bare_vf.insert((dir, len), per_packet);
                        String::new()
                    }
                    IppPath::Failover | IppPath::Failback => bare_vf
                        .get(&(dir, len))
                        .map(|vf| format!("vf{:+.1}%", (per_packet / vf - 1.0) * 100.0))
                        .unwrap_or_default(),
                    IppPath::Synthetic => String::new(),
                };
                say!(
                    "{path:<10} {dir:<4} {len:>6} {packets:>9} {instructions:>14} \
                     {per_packet:>11.1} {vs:>8}"
                );
            }
        }
    }
    Ok(())
}

/// One workload under callgrind: (packets the worker moved, instructions counted).
fn count(
    valgrind: &Path,
    exe: &Path,
    scratch: &Path,
    path: IppPath,
    dir: Direction,
    len: usize,
    frames: u64,
) -> anyhow::Result<(u64, u64)> {
    let out_file = scratch.join(format!("callgrind.{path}.{dir}.{len}"));
    let [tx_fn, rx_fn] = path.toggle_functions();
    let output = Command::new(valgrind)
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(format!("--toggle-collect={tx_fn}"))
        .arg(format!("--toggle-collect={rx_fn}"))
        .arg(exe)
        .args([
            "--log",
            "warn",
            "bench-worker",
            "ipp",
            path.as_str(),
            dir.as_str(),
        ])
        .arg(len.to_string())
        .arg(frames.to_string())
        .output()
        .with_context(|| format!("running {}", valgrind.display()))?;
    if !output.status.success() {
        bail!(
            "the worker under valgrind failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let packets = packets_line(&stdout)
        .with_context(|| format!("the worker printed no 'packets N' line:\n{stdout}"))?;
    let text = std::fs::read_to_string(&out_file)
        .with_context(|| format!("reading callgrind's output {}", out_file.display()))?;
    let instructions = total_instructions(&text).with_context(|| {
        format!(
            "callgrind's output {} has no summary: or totals: line",
            out_file.display()
        )
    })?;
    if packets == 0 {
        bail!("the worker moved no packets");
    }
    Ok((packets, instructions))
}

/// N from the worker's `packets N` line.
fn packets_line(stdout: &str) -> Option<u64> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("packets "))
        .and_then(|n| n.trim().parse().ok())
}

/// The instruction count of a callgrind output: the first number of its `summary:` line,
/// or of its `totals:` line when it has none (the first event is `Ir`, instructions).
fn total_instructions(callgrind_out: &str) -> Option<u64> {
    let first = |prefix: &str| {
        callgrind_out
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    first("summary:").or_else(|| first("totals:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_total_comes_from_summary_then_totals() {
        let out = "version: 1\ncmd: hvnet\nevents: Ir\nfn=(1) x\n3 5\nsummary: 123456\n";
        assert_eq!(total_instructions(out), Some(123_456));
        let out = "events: Ir\nfn=(1) x\n3 5\ntotals: 789 1\n";
        assert_eq!(total_instructions(out), Some(789));
        assert_eq!(total_instructions("events: Ir\nfn=(1) x\n"), None);
        assert_eq!(total_instructions("summary: lots\n"), None);
    }

    #[test]
    fn the_packet_count_is_read_from_its_line() {
        assert_eq!(packets_line("something\npackets 2000\n"), Some(2000));
        assert_eq!(packets_line("packets many\n"), None);
        assert_eq!(packets_line(""), None);
    }
}
