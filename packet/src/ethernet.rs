//! Ethernet addresses and a checked frame view.

use std::fmt;
use std::str::FromStr;

/// Length of an Ethernet II header (destination, source, EtherType).
pub const HEADER_LEN: usize = 14;
/// Shortest frame on the wire without the FCS (shorter frames are padded to it).
pub const MIN_FRAME_LEN: usize = 60;
/// The default layer-3 MTU.
pub const DEFAULT_MTU: usize = 1500;
/// The largest layer-3 MTU hvnet supports (a 9014-byte frame).
pub const MAX_MTU: usize = 9000;

/// A 48-bit MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// Whether the group bit is set (multicast or broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// Whether this is the broadcast address.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Error parsing a MAC address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: expected six hex octets like 00:15:5d:01:02:03")]
pub struct ParseMacError(String);

impl FromStr for MacAddr {
    type Err = ParseMacError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseMacError(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(err)?;
            if part.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

/// A view of an Ethernet II frame whose one length check makes every accessor panic-free.
#[derive(Debug, Clone, Copy)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buf: T,
}

/// The buffer is shorter than an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame of {0} bytes is shorter than an Ethernet header")]
pub struct TruncatedFrame(pub usize);

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Checks that `buf` holds at least a header.
    pub fn new_checked(buf: T) -> Result<Self, TruncatedFrame> {
        let len = buf.as_ref().len();
        if len < HEADER_LEN {
            return Err(TruncatedFrame(len));
        }
        Ok(Self { buf })
    }

    fn b(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// Destination address.
    pub fn dst(&self) -> MacAddr {
        MacAddr(self.b()[0..6].try_into().expect("checked length"))
    }

    /// Source address.
    pub fn src(&self) -> MacAddr {
        MacAddr(self.b()[6..12].try_into().expect("checked length"))
    }

    /// EtherType (host order).
    pub fn ethertype(&self) -> u16 {
        u16::from_be_bytes([self.b()[12], self.b()[13]])
    }

    /// Bytes after the header.
    pub fn payload(&self) -> &[u8] {
        &self.b()[HEADER_LEN..]
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Writes the header fields.
    pub fn set_header(&mut self, dst: MacAddr, src: MacAddr, ethertype: u16) {
        let b = self.buf.as_mut();
        b[0..6].copy_from_slice(&dst.0);
        b[6..12].copy_from_slice(&src.0);
        b[12..14].copy_from_slice(&ethertype.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_buffers_are_rejected() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]).unwrap_err(),
            TruncatedFrame(13)
        );
    }

    #[test]
    fn bad_macs_are_rejected() {
        for s in [
            "",
            "00:11",
            "00:11:22:33:44:55:66",
            "0:11:22:33:44:55",
            "zz:11:22:33:44:55",
        ] {
            assert!(s.parse::<MacAddr>().is_err(), "{s}");
        }
    }

    proptest! {
        #[test]
        fn mac_display_parse_round_trip(bytes in any::<[u8; 6]>()) {
            let mac = MacAddr(bytes);
            prop_assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
        }

        #[test]
        fn header_round_trip(dst in any::<[u8; 6]>(), src in any::<[u8; 6]>(), et in any::<u16>(),
                             payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = vec![0u8; HEADER_LEN + payload.len()];
            buf[HEADER_LEN..].copy_from_slice(&payload);
            let mut f = EthernetFrame::new_checked(&mut buf[..]).unwrap();
            f.set_header(MacAddr(dst), MacAddr(src), et);
            let f = EthernetFrame::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(f.dst(), MacAddr(dst));
            prop_assert_eq!(f.src(), MacAddr(src));
            prop_assert_eq!(f.ethertype(), et);
            prop_assert_eq!(f.payload(), &payload[..]);
        }
    }
}
