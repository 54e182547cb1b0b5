//! Fixed workloads for counting instructions per packet with callgrind.
//!
//! Each runs a path's queue in lock-step with its peer (the simulated host or the software
//! VF, on their own threads): the queue is called only once the peer has done its part, so
//! every counted call does real work and no empty poll is counted (under valgrind the peer
//! runs far slower than natively, and a free-running poller would count mostly empty polls).
//! The counted calls go through two `#[inline(never)]` functions per path, named in
//! [`IppPath::toggle_functions`]: callgrind runs with `--toggle-collect` on them, so only
//! what happens inside them is counted, whatever inlining does inside. Dividing the total by
//! the packets the workload returns gives instructions per packet — the same on every run of
//! the same build, unlike seconds.
//!
//! `scripts/bench-ipp` (through the `*_ipp` examples) and `hvnet bench` (through its hidden
//! `bench-worker ipp`) both run these.

use std::time::Duration;

use super::{BenchError, Direction};

pub mod failover;
pub mod synthetic;
pub mod vf;

/// The bound on a lock-step workload: under valgrind everything runs tens of times slower.
pub const IPP_STALL: Duration = Duration::from_secs(600);

/// Frames per counted `tx_burst` (and most per `rx_burst` wait).
const LOCKSTEP_BURST: u64 = 32;

/// What an instructions-per-packet workload runs through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IppPath {
    /// The guest's synthetic queue (`SyntheticQueue`) against the simulated host; the
    /// host's work is not counted.
    Synthetic,
    /// The igbvf driver's queue against the software model; the model is not counted.
    Vf,
    /// The failover port's queue on the VF: the same driver and model, plus the port's own
    /// work and its poll of the synthetic path.
    Failover,
    /// As [`IppPath::Failover`], after one whole cycle (the VF ejected, synthetic, the VF
    /// offered again): the cost on the VF after a failback.
    Failback,
}

impl IppPath {
    /// Every path, in report order.
    pub const ALL: [IppPath; 4] = [
        IppPath::Synthetic,
        IppPath::Vf,
        IppPath::Failover,
        IppPath::Failback,
    ];

    /// Its name on a command line and in a report.
    pub fn as_str(self) -> &'static str {
        match self {
            IppPath::Synthetic => "synthetic",
            IppPath::Vf => "vf",
            IppPath::Failover => "failover",
            IppPath::Failback => "failback",
        }
    }

    /// The callgrind `--toggle-collect` patterns of its counted functions (transmit,
    /// receive): only instructions inside them are counted.
    pub fn toggle_functions(self) -> [&'static str; 2] {
        match self {
            IppPath::Synthetic => ["*guest_tx_burst*", "*guest_rx_burst*"],
            IppPath::Vf => ["*driver_tx_burst*", "*driver_rx_burst*"],
            IppPath::Failover | IppPath::Failback => ["*failover_tx_burst*", "*failover_rx_burst*"],
        }
    }
}

impl std::fmt::Display for IppPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for IppPath {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                BenchError::Invalid(format!(
                    "path '{s}': expected synthetic, vf, failover or failback"
                ))
            })
    }
}

/// Runs `frames` frames of `len` bytes through `path` one way in lock-step; the packets
/// the counted functions moved.
pub fn run(path: IppPath, dir: Direction, len: usize, frames: u64) -> Result<u64, BenchError> {
    super::check_frame_len(len)?;
    match path {
        IppPath::Synthetic => synthetic::run(dir, len, frames),
        IppPath::Vf => vf::run(dir, len, frames),
        IppPath::Failover | IppPath::Failback => {
            let mut rig = failover::FailoverIpp::start(path == IppPath::Failback)?;
            rig.workload(dir, len, frames)
        }
    }
}

/// Parses a workload's `<tx|rx> <frame bytes> <frames>` from the front of `args`; the rest
/// of `args` is returned for the caller's own options.
pub fn parse_args(args: &[String]) -> Result<(Direction, usize, u64, &[String]), BenchError> {
    let [dir, len, frames, rest @ ..] = args else {
        return Err(BenchError::Invalid(format!(
            "expected <tx|rx> <frame bytes> <frames>, got {} argument(s)",
            args.len()
        )));
    };
    let dir: Direction = dir.parse()?;
    let len: usize = len
        .parse()
        .map_err(|_| BenchError::Invalid(format!("frame bytes '{len}': not a number")))?;
    super::check_frame_len(len)?;
    let frames: u64 = frames
        .parse()
        .map_err(|_| BenchError::Invalid(format!("frames '{frames}': not a number")))?;
    Ok((dir, len, frames, rest))
}

/// [`run`] with `args` as [`parse_args`] reads them (nothing after them).
pub fn run_from_args(path: IppPath, args: &[String]) -> Result<u64, BenchError> {
    let (dir, len, frames, rest) = parse_args(args)?;
    if let Some(extra) = rest.first() {
        return Err(BenchError::Invalid(format!(
            "unexpected argument '{extra}'"
        )));
    }
    run(path, dir, len, frames)
}
