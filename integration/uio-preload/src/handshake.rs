//! The handshake of protocol "hvnet-sim-uio v1" (the server is
//! `integration/src/sim_host/uio.rs`): 16 bytes of header — `b"hvsu"`, version 1, the map
//! count, 0, as little-endian `u32`s — then per map its offset and size in the memory fd, as
//! little-endian `u64`s. Pure parsing, no allocation (it runs inside `open`).

/// The magic.
pub const MAGIC: [u8; 4] = *b"hvsu";
/// The version understood.
pub const VERSION: u32 = 1;
/// Header bytes.
pub const HEADER: usize = 16;
/// Bytes per map entry.
pub const ENTRY: usize = 16;
/// The most maps a node may describe.
pub const MAX_MAPS: usize = 8;
/// The page size maps are aligned to (the uio map index is `offset / PAGE`).
pub const PAGE: u64 = 4096;
/// The longest handshake.
pub const MAX_LEN: usize = HEADER + MAX_MAPS * ENTRY;

/// One map: where it is in the memory fd.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Map {
    /// Byte offset in the memory fd.
    pub offset: u64,
    /// Length in bytes.
    pub size: u64,
}

/// The maps of one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Maps {
    /// How many of `maps` are valid.
    pub count: usize,
    /// Map K at index K.
    pub maps: [Map; MAX_MAPS],
}

impl Maps {
    /// Map `index`, if the node has it.
    pub fn get(&self, index: u64) -> Option<Map> {
        usize::try_from(index)
            .ok()
            .filter(|&i| i < self.count)
            .map(|i| self.maps[i])
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The whole handshake's length, from its header.
pub fn total_len(header: &[u8]) -> Result<usize, &'static str> {
    if header.len() < HEADER {
        return Err("short header");
    }
    if header[..4] != MAGIC {
        return Err("not an hvnet-sim-uio node (bad magic)");
    }
    if u32_at(header, 4) != VERSION {
        return Err("unsupported protocol version");
    }
    let count = u32_at(header, 8) as usize;
    if count == 0 || count > MAX_MAPS {
        return Err("map count out of range");
    }
    if u32_at(header, 12) != 0 {
        return Err("reserved word is not zero");
    }
    Ok(HEADER + count * ENTRY)
}

/// Parses and checks a whole handshake.
pub fn parse(bytes: &[u8]) -> Result<Maps, &'static str> {
    let len = total_len(bytes)?;
    if bytes.len() != len {
        return Err("handshake length does not match its map count");
    }
    let mut out = Maps {
        count: (len - HEADER) / ENTRY,
        ..Maps::default()
    };
    for (k, map) in out.maps[..out.count].iter_mut().enumerate() {
        let at = HEADER + k * ENTRY;
        let (offset, size) = (u64_at(bytes, at), u64_at(bytes, at + 8));
        if size == 0 || !offset.is_multiple_of(PAGE) || !size.is_multiple_of(PAGE) {
            return Err("a map is empty or not page-aligned");
        }
        if offset
            .checked_add(size)
            .is_none_or(|end| end > i64::MAX as u64)
        {
            return Err("a map ends past any file offset");
        }
        *map = Map { offset, size };
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake(maps: &[(u64, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(maps.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        for (offset, size) in maps {
            out.extend_from_slice(&offset.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
        }
        out
    }

    #[test]
    fn a_good_handshake_parses() {
        let bytes = handshake(&[(0x2000, 0x4000), (0, 0x1000)]);
        assert_eq!(total_len(&bytes[..HEADER]), Ok(48));
        let maps = parse(&bytes).unwrap();
        assert_eq!(maps.count, 2);
        assert_eq!(
            maps.get(0),
            Some(Map {
                offset: 0x2000,
                size: 0x4000
            })
        );
        assert_eq!(
            maps.get(1),
            Some(Map {
                offset: 0,
                size: 0x1000
            })
        );
        assert_eq!(maps.get(2), None);
        assert_eq!(maps.get(u64::MAX), None);
    }

    #[test]
    fn bad_handshakes_are_refused() {
        let good = handshake(&[(0x2000, 0x4000)]);
        let mut magic = good.clone();
        magic[0] = b'x';
        assert!(parse(&magic).is_err());
        let mut version = good.clone();
        version[4] = 2;
        assert!(parse(&version).is_err());
        let mut reserved = good.clone();
        reserved[12] = 1;
        assert!(parse(&reserved).is_err());
        assert!(parse(&handshake(&[])).is_err(), "no maps");
        assert!(parse(&handshake(&[(0, 4096); 9])).is_err(), "nine maps");
        assert!(parse(&good[..good.len() - 1]).is_err(), "short");
        assert!(
            parse(&handshake(&[(0x2001, 0x1000)])).is_err(),
            "misaligned offset"
        );
        assert!(
            parse(&handshake(&[(0x2000, 0x1001)])).is_err(),
            "misaligned size"
        );
        assert!(parse(&handshake(&[(0x2000, 0)])).is_err(), "empty");
        assert!(
            parse(&handshake(&[(u64::MAX - 4095, 0x1000)])).is_err(),
            "overflow"
        );
        assert!(parse(&good[..10]).is_err(), "short header");
    }

    proptest::proptest! {
        #[test]
        fn every_valid_handshake_round_trips(
            maps in proptest::collection::vec((0u64..1 << 40, 1u64..1 << 20), 1..=MAX_MAPS)
        ) {
            let maps: Vec<(u64, u64)> =
                maps.into_iter().map(|(o, s)| (o * PAGE, s * PAGE)).collect();
            let bytes = handshake(&maps);
            proptest::prop_assert_eq!(total_len(&bytes), Ok(bytes.len()));
            let parsed = parse(&bytes).unwrap();
            proptest::prop_assert_eq!(parsed.count, maps.len());
            for (k, &(offset, size)) in maps.iter().enumerate() {
                proptest::prop_assert_eq!(parsed.get(k as u64), Some(Map { offset, size }));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_what_parses_is_valid(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)
        ) {
            if let Ok(maps) = parse(&bytes) {
                proptest::prop_assert!(maps.count >= 1 && maps.count <= MAX_MAPS);
                for map in &maps.maps[..maps.count] {
                    proptest::prop_assert!(map.size > 0 && map.offset % PAGE == 0);
                }
            }
        }
    }
}
