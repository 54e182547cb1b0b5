//! What a driver's XDP can do (`xdp_features`), asked over the `netdev` generic-netlink
//! family (Linux 6.3 and later): `CTRL_CMD_GETFAMILY` resolves the family's id, then
//! `NETDEV_CMD_DEV_GET` with the interface's index answers `NETDEV_A_DEV_XDP_FEATURES`.
//!
//! The answers are parsed as untrusted bytes: every length is checked against what is left.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use packet::netdev;

use super::sys;

/// `GENL_ID_CTRL`, the controller family.
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
const NETDEV_CMD_DEV_GET: u8 = 1;
const NETDEV_A_DEV_IFINDEX: u16 = 1;
const NETDEV_A_DEV_XDP_FEATURES: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
/// The attribute type bits (the top two are flags).
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Bytes of `nlmsghdr` and `genlmsghdr`.
const NLMSG_HEADER: usize = 16;
const GENL_HEADER: usize = 4;
/// How long the kernel has to answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// `enum netdev_xdp_act` bits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpFeatures(pub u64);

impl XdpFeatures {
    /// `NETDEV_XDP_ACT_BASIC`: XDP_PASS, XDP_DROP, XDP_ABORTED, XDP_TX.
    pub const BASIC: u64 = 1 << 0;
    /// `NETDEV_XDP_ACT_REDIRECT`: XDP_REDIRECT (what an XSKMAP needs).
    pub const REDIRECT: u64 = 1 << 1;
    /// `NETDEV_XDP_ACT_XSK_ZEROCOPY`: AF_XDP zero-copy.
    pub const XSK_ZEROCOPY: u64 = 1 << 3;

    /// Whether native XDP on this driver can redirect to a socket.
    pub fn can_redirect(self) -> bool {
        self.0 & Self::REDIRECT != 0
    }

    /// Whether the driver has AF_XDP zero-copy.
    pub fn zero_copy(self) -> bool {
        self.0 & Self::XSK_ZEROCOPY != 0
    }
}

/// One netlink attribute: its type (flags masked off) and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr<'a> {
    /// `nla_type & NLA_TYPE_MASK`.
    pub kind: u16,
    /// The payload.
    pub payload: &'a [u8],
}

/// Appends attribute `kind` with `payload`, padded to four bytes.
pub fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The attributes in `bytes`; `None` if one claims more bytes than are left or fewer than
/// its own header.
pub fn parse_attrs(mut bytes: &[u8]) -> Option<Vec<Attr<'_>>> {
    let mut attrs = Vec::new();
    while bytes.len() >= 4 {
        let len = u16::from_ne_bytes([bytes[0], bytes[1]]) as usize;
        let kind = u16::from_ne_bytes([bytes[2], bytes[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > bytes.len() {
            return None;
        }
        attrs.push(Attr {
            kind,
            payload: &bytes[4..len],
        });
        bytes = &bytes[len.next_multiple_of(4).min(bytes.len())..];
    }
    bytes.is_empty().then_some(attrs)
}

/// A generic-netlink request: family `family`, command `cmd`, `attrs` already encoded.
fn request(family: u16, cmd: u8, attrs: &[u8], seq: u32) -> Vec<u8> {
    let len = NLMSG_HEADER + GENL_HEADER + attrs.len();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&family.to_ne_bytes());
    out.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.extend_from_slice(&[cmd, 1, 0, 0]);
    out.extend_from_slice(attrs);
    out
}

/// The attributes of the answer in `bytes` (one message), or the kernel's error.
pub fn answer_attrs(bytes: &[u8]) -> io::Result<Vec<Attr<'_>>> {
    let malformed = || io::Error::new(io::ErrorKind::InvalidData, "malformed netlink answer");
    if bytes.len() < NLMSG_HEADER {
        return Err(malformed());
    }
    let len = u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let kind = u16::from_ne_bytes([bytes[4], bytes[5]]);
    if len < NLMSG_HEADER || len > bytes.len() {
        return Err(malformed());
    }
    let body = &bytes[NLMSG_HEADER..len];
    if kind == NLMSG_ERROR {
        let code = body
            .get(..4)
            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
            .ok_or_else(malformed)?;
        return Err(io::Error::from_raw_os_error(
            code.checked_neg().unwrap_or(libc::EIO),
        ));
    }
    let attrs = body.get(GENL_HEADER..).ok_or_else(malformed)?;
    parse_attrs(attrs).ok_or_else(malformed)
}

/// Sends `message` on `fd` and reads the answer into `buf`; its length.
fn exchange(fd: &std::os::fd::OwnedFd, message: &[u8], buf: &mut [u8]) -> io::Result<usize> {
    netdev::send_frame(fd.as_fd(), message)?;
    loop {
        if !netdev::wait_readable(fd.as_fd(), ANSWER_TIMEOUT)? {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the kernel did not answer",
            ));
        }
        match netdev::recv_frame(fd.as_fd(), buf) {
            Ok(n) if n > buf.len() => return Err(io::Error::other("netlink answer too long")),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The XDP features of interface `ifindex`; `None` when the kernel cannot say (no `netdev`
/// family: before Linux 6.3).
pub fn xdp_features(ifindex: u32) -> io::Result<Option<XdpFeatures>> {
    let fd = sys::genetlink_socket()?;
    let mut buf = vec![0u8; 8192];
    let mut attrs = Vec::new();
    put_attr(&mut attrs, CTRL_ATTR_FAMILY_NAME, b"netdev\0");
    let n = exchange(
        &fd,
        &request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, &attrs, 1),
        &mut buf,
    )?;
    let family = match answer_attrs(&buf[..n]) {
        Ok(attrs) => attrs
            .iter()
            .find(|a| a.kind == CTRL_ATTR_FAMILY_ID)
            .and_then(|a| Some(u16::from_ne_bytes(a.payload.get(..2)?.try_into().ok()?))),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(family) = family else {
        return Ok(None);
    };
    attrs.clear();
    put_attr(&mut attrs, NETDEV_A_DEV_IFINDEX, &ifindex.to_ne_bytes());
    let n = exchange(
        &fd,
        &request(family, NETDEV_CMD_DEV_GET, &attrs, 2),
        &mut buf,
    )?;
    let features = answer_attrs(&buf[..n])?
        .iter()
        .find(|a| a.kind == NETDEV_A_DEV_XDP_FEATURES)
        .and_then(|a| Some(u64::from_ne_bytes(a.payload.get(..8)?.try_into().ok()?)));
    Ok(features.map(XdpFeatures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn attributes_round_trip(attrs in proptest::collection::vec(
            (0u16..0x3fff, proptest::collection::vec(any::<u8>(), 0..40)), 0..8)) {
            let mut bytes = Vec::new();
            for (kind, payload) in &attrs {
                put_attr(&mut bytes, *kind, payload);
            }
            let parsed = parse_attrs(&bytes).expect("well-formed");
            prop_assert_eq!(parsed.len(), attrs.len());
            for (p, (kind, payload)) in parsed.iter().zip(&attrs) {
                prop_assert_eq!(p.kind, *kind);
                prop_assert_eq!(p.payload, &payload[..]);
            }
        }

        #[test]
        fn any_answer_parses_or_is_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = answer_attrs(&bytes);
        }
    }

    #[test]
    fn an_attribute_longer_than_the_message_is_refused() {
        let mut bytes = Vec::new();
        put_attr(&mut bytes, 3, &[1, 2, 3, 4]);
        bytes[0] = 40;
        assert!(parse_attrs(&bytes).is_none());
        bytes[0] = 2;
        assert!(parse_attrs(&bytes).is_none());
    }

    #[test]
    fn a_kernel_error_is_its_errno() {
        let mut msg = request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, &[], 1);
        msg[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg.truncate(NLMSG_HEADER);
        msg.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        let e = answer_attrs(&msg).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }
}
