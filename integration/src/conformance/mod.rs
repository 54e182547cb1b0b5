//! NetVSP conformance transcripts: loading and comparing.
//!
//! `../shared/conformance/netvsp/` (beside the repository) holds 29 golden transcripts of what a
//! real NetVSP host (OpenVMM's `netvsp`) answered to a scripted guest, byte for byte. Each file is
//! JSON Lines: a scenario header, then one record per ring packet (`g2h` / `h2g`) or event. The
//! folder's `README.md` is the format's specification; this module follows it.
//!
//! - [`transcripts_dir`], [`load`], [`load_all`] (and the `*_from` variants taking a folder)
//!   and [`SCENARIOS`] find and load the files. A missing folder is an error
//!   ([`ConformanceError::MissingDir`]), never a silent skip.
//! - [`Transcript`], [`Record`], [`PacketRecord`] and [`EventRecord`] are the typed records.
//!   Loading also checks every record for consistency (see [`PacketRecord::validate`]).
//! - [`PacketRecord::raw_packet`] rebuilds the bytes the guest or host wrote into the ring.
//! - [`compare`] checks one packet our simulated host produced ([`ObservedPacket`]) against an
//!   expected record, applying the record's `ignore` list ([`IgnoreRule`]) and a
//!   [`ComparePolicy`] for the fields that follow from host policy.
//!
//! # `ignore` byte masks index bytes, not hex characters
//!
//! A mask `field[s:e]` covers **bytes** `s..e` of the decoded hex string. The data settles it:
//! `payload_hex[4:8]` on NVSP 101/104 covers the GPADL handle at NVSP byte offset 4 (hex
//! characters 4..8 would be half of the message type), and `ext_hex[16:24]` (and `[32:40]`,
//! `[40:48]`) on GPA-direct packets covers exactly one 8-byte guest page number in the GPA-direct
//! header (reserved u32, range count u32, then per range byte count u32, byte offset u32, PFNs
//! u64 each). Every mask in the 29 files ends within its field's byte length.

mod compare;
mod ignore;
mod record;

use std::path::{Path, PathBuf};

pub use compare::{ComparePolicy, Mismatch, ObservedPacket, compare};
pub use ignore::{IgnoreRule, PathSegment};
pub use record::{
    Direction, EndEvent, EventKind, EventRecord, GpaData, GpaDirect, GpaRange, GpadlPurpose,
    GuestConfig, HostAction, HostConfig, PacketRecord, Record, RingHeader, RxBufRange,
    ScenarioHeader, Section, Transcript, TransferPageRange, TransferPages,
};

/// Environment variable that overrides [`transcripts_dir`].
pub const DIR_ENV_VAR: &str = "HVNET_CONFORMANCE_DIR";

/// The 29 scenarios, by file stem (`<name>.jsonl`), in file-name order.
pub const SCENARIOS: &[&str] = &[
    "data-batched",
    "data-gpa-direct",
    "data-loopback",
    "data-vlan-ppi",
    "err-bad-rndis-packet",
    "err-bad-section-index",
    "err-before-init",
    "err-empty-rx-completion",
    "err-rndis-initialize-twice",
    "err-rndis-reset",
    "err-send-buffer-twice",
    "err-unknown-nvsp-type",
    "handshake-0x2",
    "handshake-0x30002",
    "handshake-0x40000",
    "handshake-0x50000",
    "handshake-0x60000",
    "handshake-0x60001",
    "handshake-retry",
    "link-down-up",
    "link-same-state",
    "rndis-control",
    "rndis-misc",
    "rndis-offload-caps",
    "rndis-query-before-initialize",
    "subchannels-4q",
    "vf-host-remove",
    "vf-no-sriov-cap",
    "vf-switch",
];

/// Everything that can go wrong while loading or checking transcripts.
#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The transcripts folder does not exist.
    #[error(
        "conformance transcripts not found at {}: check out shared/ beside the repository \
         or set {DIR_ENV_VAR}",
        path.display()
    )]
    MissingDir {
        /// The folder that was looked for.
        path: PathBuf,
    },
    /// The transcripts folder holds no `*.jsonl` files.
    #[error("no conformance transcripts (*.jsonl) in {}", path.display())]
    NoTranscripts {
        /// The folder.
        path: PathBuf,
    },
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not valid JSON or does not fit the record format.
    #[error("{}:{line}: {reason}", file.display())]
    Malformed {
        /// The transcript file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record parsed, but its fields contradict each other (for example `len8` and the hex
    /// lengths, or `xfer` and `ext_hex`).
    #[error("record seq {seq}: {reason}")]
    Inconsistent {
        /// The record's `seq`.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// An `ignore` entry is none of the three forms.
    #[error("bad ignore entry {entry:?}: {reason}")]
    BadIgnore {
        /// The entry as written.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// Raw packet bytes given to [`ObservedPacket::from_raw`] are not a whole VMBus packet.
    #[error("bad raw packet: {0}")]
    BadRawPacket(String),
}

/// The folder holding the transcripts.
///
/// `$HVNET_CONFORMANCE_DIR` if set and non-empty (a relative path is taken from the current
/// directory, which is `integration/` under `cargo test`), otherwise `../shared/conformance/netvsp` relative to the
/// repository root (resolved from this crate's manifest directory). The folder is not checked
/// here; [`load`] and [`load_all`] fail with [`ConformanceError::MissingDir`] if it is absent.
pub fn transcripts_dir() -> PathBuf {
    match std::env::var_os(DIR_ENV_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/netvsp"),
    }
}

/// [`transcripts_dir`], or [`ConformanceError::MissingDir`] if it is not a folder.
pub fn require_transcripts_dir() -> Result<PathBuf, ConformanceError> {
    let dir = transcripts_dir();
    require_dir(&dir)?;
    Ok(dir)
}

fn require_dir(dir: &Path) -> Result<(), ConformanceError> {
    if dir.is_dir() {
        Ok(())
    } else {
        Err(ConformanceError::MissingDir {
            path: dir.to_owned(),
        })
    }
}

/// Loads and validates the scenario `name` (a file stem such as `"subchannels-4q"`) from
/// [`transcripts_dir`].
pub fn load(name: &str) -> Result<Transcript, ConformanceError> {
    load_from(&transcripts_dir(), name)
}

/// Loads and validates the scenario `name` from the folder `dir`.
pub fn load_from(dir: &Path, name: &str) -> Result<Transcript, ConformanceError> {
    require_dir(dir)?;
    Transcript::load(&dir.join(format!("{name}.jsonl")))
}

/// Loads and validates every `*.jsonl` file in [`transcripts_dir`], sorted by file name.
///
/// Fails if the folder is missing or holds no transcripts.
pub fn load_all() -> Result<Vec<Transcript>, ConformanceError> {
    load_all_from(&transcripts_dir())
}

/// Loads and validates every `*.jsonl` file in `dir`, sorted by file name.
///
/// Fails if the folder is missing or holds no transcripts.
pub fn load_all_from(dir: &Path) -> Result<Vec<Transcript>, ConformanceError> {
    require_dir(dir)?;
    let io_err = |source| ConformanceError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        if path.extension().is_some_and(|ext| ext == "jsonl") {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(ConformanceError::NoTranscripts {
            path: dir.to_owned(),
        });
    }
    files.sort();
    files.iter().map(|path| Transcript::load(path)).collect()
}
