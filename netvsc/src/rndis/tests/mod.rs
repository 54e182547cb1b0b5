//! RNDIS codec tests: real host and guest bytes from the conformance transcripts
//! (`shared/conformance/netvsp/*.jsonl`, quoted by file and `seq`), and property tests.
//!
//! - [`control`]: control messages in both directions.
//! - [`objects`]: NDIS objects inside OID buffers and indications.
//! - [`data`]: data packets, PPIs and aggregated sections.
//! - [`properties`]: round trips of every codec and parsing of arbitrary bytes.

mod control;
mod data;
mod objects;
mod properties;

use super::*;
use crate::nvsp::tests::hex;

pub(super) fn parse(bytes: &[u8]) -> RndisMessage {
    RndisMessage::parse(bytes).expect("message parses")
}

pub(super) fn encoded(f: impl FnOnce(&mut [u8]) -> Result<usize, RndisError>) -> Vec<u8> {
    let mut out = vec![0u8; 4096];
    let n = f(&mut out).expect("encodes");
    out.truncate(n);
    out
}

/// The receive sub-allocation as the guest saw it: `0xEE` poison except the spans the host
/// wrote (the transcripts' `significant` spans).
pub(super) fn poisoned_sub_allocation(spans: &[(usize, &str)]) -> Vec<u8> {
    let mut buf = vec![0xEE; 1806];
    for (offset, text) in spans {
        let bytes = hex(text);
        buf[*offset..*offset + bytes.len()].copy_from_slice(&bytes);
    }
    buf
}

/// The test frames of the transcripts: Ethernet header, then payload bytes `i % 251`.
pub(super) fn test_frame(header: &str, len: usize) -> Vec<u8> {
    let mut frame = hex(header);
    frame.extend((0..len - frame.len()).map(|i| (i % 251) as u8));
    frame
}

pub(super) const BROADCAST_60: &str = "ffffffffffff00155d01020388b5";
pub(super) const UNICAST_1514: &str = "00155d0a0b0c00155d01020388b5";
