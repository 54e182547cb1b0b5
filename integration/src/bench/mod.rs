//! The benchmarks' workloads, one implementation for `cargo bench -p integration`, the
//! `*_ipp` examples, `scripts/bench-ipp` and `hvnet bench`.
//!
//! Each measures one thing against the simulated host or the software VF, which run on
//! threads of their own as they do in the suites:
//! - [`synthetic`]: packets per second through the guest's `SyntheticNic` queue, each way;
//! - [`vf`]: the same through the igbvf driver's queue against the software model;
//! - [`spsc`]: the same-run baseline for both: the same frames moved between two threads
//!   through a wait-free SPSC queue, with no VMBus, NVSP, RNDIS or descriptor ring;
//! - [`failover`]: failover and failback durations over add/remove cycles under traffic both
//!   ways, and where every frame of the run went;
//! - [`ipp`]: fixed lock-step workloads for counting instructions per packet under
//!   callgrind (the counted functions are `#[inline(never)]` and named for
//!   `--toggle-collect`).
//!
//! Seconds vary with the machine and its load; nothing here asserts on them. Instruction
//! counts do not vary, which is why [`ipp`] exists.

use std::time::{Duration, Instant};

use packet::MacAddr;

use crate::harness::rig::RigError;

pub mod failover;
pub mod ipp;
pub mod spsc;
pub mod synthetic;
pub mod vf;

/// Frames per `tx_burst`.
pub const BURST: usize = 32;

/// Frames per `rx_burst`.
pub const RX_BURST: usize = 64;

/// The longest any one workload may go without finishing before it is reported as stalled.
pub const STALL: Duration = Duration::from_secs(60);

/// The frame sizes every rate is measured at: the smallest and a full MTU's.
pub const FRAME_SIZES: [usize; 2] = [64, 1500];

/// The smallest and largest frame a workload takes (a frame without its FCS).
pub const FRAME_BYTES: std::ops::RangeInclusive<usize> = 60..=1514;

/// Which way the frames go, seen from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The guest transmits (`tx_burst`).
    Tx,
    /// The guest receives (`rx_burst`).
    Rx,
}

impl Direction {
    /// Both, transmit first.
    pub const BOTH: [Direction; 2] = [Direction::Tx, Direction::Rx];

    /// `tx` or `rx`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Tx => "tx",
            Direction::Rx => "rx",
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for Direction {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tx" => Ok(Direction::Tx),
            "rx" => Ok(Direction::Rx),
            _ => Err(BenchError::Invalid(format!(
                "direction '{s}': expected tx or rx"
            ))),
        }
    }
}

/// A benchmark could not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The rig under measurement did not start.
    #[error("starting the {what}")]
    Rig {
        /// Which rig.
        what: &'static str,
        /// Why.
        #[source]
        source: RigError,
    },
    /// The igbvf driver did not open on the software model.
    #[error("opening the igbvf driver on the software VF")]
    Vf(#[source] ::vf::igbvf::IgbvfError),
    /// Memory for the baseline's pool could not be had.
    #[error("allocating the baseline's packet pool")]
    Memory(#[source] packet::MemError),
    /// A workload stopped making progress.
    #[error("{what}: not done within {within:?}")]
    Stalled {
        /// What was waited for, with how far it got.
        what: String,
        /// How long it was given.
        within: Duration,
    },
    /// A lock-step workload found no free buffer in its pool (every burst is reclaimed
    /// before the next, so this is a leak).
    #[error("{0}: the packet pool ran dry")]
    PoolDry(&'static str),
    /// The simulated host refused a frame a lock-step workload injected.
    #[error("{0}: the simulated host refused an injected frame")]
    Refused(&'static str),
    /// The workload was asked for something it does not do.
    #[error("{0}")]
    Invalid(String),
    /// Frames of a failover run are in no count.
    #[error("frames unaccounted for after the failover cycles: {0}")]
    Unaccounted(String),
}

/// Checks a frame length against [`FRAME_BYTES`].
pub fn check_frame_len(len: usize) -> Result<(), BenchError> {
    if FRAME_BYTES.contains(&len) {
        Ok(())
    } else {
        Err(BenchError::Invalid(format!(
            "frame length {len}: expected {}..={} bytes",
            FRAME_BYTES.start(),
            FRAME_BYTES.end()
        )))
    }
}

/// A frame of `len` bytes to `dst` with a local EtherType (0x88b5).
pub fn frame(len: usize, dst: MacAddr) -> Vec<u8> {
    let mut f = vec![0x5a; len.max(14)];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f
}

/// The median of `v` (the upper one of an even count); 0 for none.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Packets moved and the time they took.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Packets counted at the far end.
    pub packets: u64,
    /// Packets offered that the far end's simulated party dropped and counted (overload:
    /// a full port, no receive slot or descriptor); 0 when it kept up.
    pub dropped: u64,
    /// From the first packet offered to the last counted.
    pub elapsed: Duration,
}

impl Rate {
    /// Packets per second (0 for no time at all).
    pub fn pps(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            self.packets as f64 / s
        } else {
            0.0
        }
    }
}

/// A bound on a workload: `Err(Stalled)` naming `what` once it has passed.
#[derive(Debug)]
struct Deadline {
    at: Instant,
    within: Duration,
}

impl Deadline {
    /// [`STALL`] from now.
    fn start() -> Self {
        Self::after(STALL)
    }

    fn after(within: Duration) -> Self {
        Self {
            at: packet::deadline::after(Instant::now(), within),
            within,
        }
    }

    fn check(&self, what: impl FnOnce() -> String) -> Result<(), BenchError> {
        if Instant::now() < self.at {
            Ok(())
        } else {
            Err(BenchError::Stalled {
                what: what(),
                within: self.within,
            })
        }
    }
}
