//! NVSP codec tests: real host and guest bytes from the conformance transcripts
//! (`shared/conformance/netvsp/*.jsonl`, quoted by file and `seq`), and property tests.
//!
//! - [`transcripts`]: every message type decoded from, and re-encoded to, recorded bytes.
//! - [`properties`]: round trips of every message and parsing of arbitrary bytes.

mod properties;
mod transcripts;

use super::*;

/// Decodes a hex string (test vectors only).
pub(crate) fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

pub(super) fn parse_host(bytes: &[u8]) -> NvspMessage<'_> {
    NvspMessage::parse(bytes).expect("host message parses")
}

pub(super) fn parse_guest(bytes: &[u8]) -> NvspMessage<'_> {
    NvspMessage::parse_from_guest(bytes).expect("guest message parses")
}
