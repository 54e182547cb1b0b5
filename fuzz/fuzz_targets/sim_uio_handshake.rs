//! Arbitrary bytes through the handshake parser of the sim-host preload library
//! (`integration/uio-preload`), which runs inside a client's `open` on bytes from a socket.
//!
//! The parser's module is included by path: the library itself exports `open`, `mmap` and
//! `close`, which must not replace libc's in the fuzzer. Whatever parses must encode back to
//! the same bytes, and every map must be non-empty, page-aligned and end inside an `off_t`.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../integration/uio-preload/src/handshake.rs"]
#[allow(dead_code)]
mod handshake;

fuzz_target!(|data: &[u8]| {
    let header = handshake::total_len(data);
    let Ok(maps) = handshake::parse(data) else {
        return;
    };
    assert_eq!(header, Ok(data.len()));
    let mut encoded = Vec::with_capacity(data.len());
    encoded.extend_from_slice(&handshake::MAGIC);
    encoded.extend_from_slice(&handshake::VERSION.to_le_bytes());
    encoded.extend_from_slice(&(maps.count as u32).to_le_bytes());
    encoded.extend_from_slice(&0u32.to_le_bytes());
    for map in &maps.maps[..maps.count] {
        assert!(map.size > 0 && map.offset % handshake::PAGE == 0 && map.size % handshake::PAGE == 0);
        assert!(map.offset.checked_add(map.size).is_some_and(|end| end <= i64::MAX as u64));
        encoded.extend_from_slice(&map.offset.to_le_bytes());
        encoded.extend_from_slice(&map.size.to_le_bytes());
    }
    assert_eq!(encoded, data, "a parsed handshake encodes back to its bytes");
    assert_eq!(maps.get(maps.count as u64), None);
});
