//! The kernel's network devices as frame endpoints: TAP devices (one fd per queue), packet
//! sockets on an interface, and the interface settings a port gives them (MAC, MTU, up,
//! carrier).
//!
//! `hvnet run --tap` puts a port behind a multi-queue TAP device; the simulated host puts its
//! vSwitch's external port behind one and its VF's port on a veth. Both use these calls.
//!
//! This module opts in to `unsafe` because the `libc` calls are `unsafe fn`s; each passes an
//! `ifreq`, `sockaddr_ll` or option value it owns, with its exact size, and fds borrowed for
//! the call.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::MacAddr;

/// `TUNSETCARRIER`: `_IOW('T', 226, int)` (Linux 4.20 on); the libc crate has no name for it.
const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;

/// The most queues a TAP device takes (the kernel's `MAX_TAP_QUEUES`).
pub const MAX_TAP_QUEUES: u16 = 256;

/// Checks that `name` can be an interface name.
pub fn check_ifname(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', ' ', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name (1 to 15 characters, no '/' or space)"),
        ));
    }
    Ok(())
}

/// An `ifreq` naming `name` (checked by [`check_ifname`]).
fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: an all-zero ifreq is a valid value (empty name, zero union).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, b) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = b as libc::c_char;
    }
    req
}

/// The `ioctl` of an interface request on `fd`.
fn ioctl(fd: BorrowedFd<'_>, request: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: the interface ioctls used here read and write the ifreq passed, which is a
    // valid, exclusively borrowed value that lives for the call; the fd is borrowed.
    if unsafe { libc::ioctl(fd.as_raw_fd(), request, req as *mut libc::ifreq) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A datagram socket to carry interface ioctls.
fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a socket this call just opened and nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// The index of interface `name`, or a `NotFound` error naming it.
pub fn interface_index(name: &str) -> io::Result<u32> {
    check_ifname(name)?;
    let cname = CString::new(name).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated string that lives for the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name:?}"),
        ));
    }
    Ok(index)
}

/// Opens (creating) the TAP device `name` without packet information, non-blocking, with
/// `queues` queues (1 to [`MAX_TAP_QUEUES`]): one fd per queue, in order. More than one
/// queue makes a multi-queue device (`IFF_MULTI_QUEUE`), whose transmit queue the kernel
/// picks per flow.
pub fn open_tap(name: &str, queues: u16) -> io::Result<Vec<OwnedFd>> {
    check_ifname(name)?;
    if queues == 0 || queues > MAX_TAP_QUEUES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a TAP device has 1 to {MAX_TAP_QUEUES} queues, not {queues}"),
        ));
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if queues > 1 {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    (0..queues)
        .map(|_| {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open("/dev/net/tun")?;
            let mut req = ifreq(name);
            req.ifr_ifru.ifru_flags = flags as libc::c_short;
            ioctl(file.as_fd(), libc::TUNSETIFF, &mut req)?;
            Ok(OwnedFd::from(file))
        })
        .collect()
}

/// Sets the carrier of the TAP device open on `tap` (any of its queues).
pub fn set_tap_carrier(tap: BorrowedFd<'_>, up: bool) -> io::Result<()> {
    let value: libc::c_int = up.into();
    // SAFETY: TUNSETCARRIER reads one int through the pointer passed, which points at a local
    // that lives for the call; the fd is the open TAP device.
    let rc = unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETCARRIER, &value) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets or clears `IFF_UP` on interface `name`; whether it was up before.
pub fn set_interface_up(name: &str, up: bool) -> io::Result<bool> {
    check_ifname(name)?;
    let socket = control_socket()?;
    let mut req = ifreq(name);
    ioctl(socket.as_fd(), libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let was_up = flags & libc::IFF_UP as libc::c_short != 0;
    if was_up != up {
        req.ifr_ifru.ifru_flags = if up {
            flags | libc::IFF_UP as libc::c_short
        } else {
            flags & !(libc::IFF_UP as libc::c_short)
        };
        ioctl(socket.as_fd(), libc::SIOCSIFFLAGS, &mut req)?;
    }
    Ok(was_up)
}

/// Sets the hardware address of Ethernet interface `name`.
pub fn set_mac(name: &str, mac: MacAddr) -> io::Result<()> {
    check_ifname(name)?;
    let socket = control_socket()?;
    let mut req = ifreq(name);
    // SAFETY: writing the hwaddr member of the union: a plain sockaddr.
    unsafe {
        req.ifr_ifru.ifru_hwaddr.sa_family = libc::ARPHRD_ETHER;
        for (slot, b) in req.ifr_ifru.ifru_hwaddr.sa_data.iter_mut().zip(mac.0) {
            *slot = b as libc::c_char;
        }
    }
    ioctl(socket.as_fd(), libc::SIOCSIFHWADDR, &mut req)
}

/// Sets the MTU of interface `name`.
pub fn set_mtu(name: &str, mtu: u32) -> io::Result<()> {
    check_ifname(name)?;
    let socket = control_socket()?;
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_mtu = i32::try_from(mtu)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("MTU {mtu}")))?;
    ioctl(socket.as_fd(), libc::SIOCSIFMTU, &mut req)
}

/// Opens a non-blocking packet socket bound to interface `name` that sees every frame the
/// interface receives and none it sends.
pub fn open_packet_socket(name: &str) -> io::Result<OwnedFd> {
    let index = interface_index(name).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {name:?} (create it first, e.g. one end of a veth pair)"),
            )
        } else {
            e
        }
    })?;
    let protocol = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain integer arguments.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(protocol),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a socket this call just opened and nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    // SAFETY: the option value is a c_int owned here, with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_IGNORE_OUTGOING,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: an all-zero sockaddr_ll is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = protocol;
    addr.sll_ifindex = index as libc::c_int;
    // SAFETY: `addr` is a sockaddr_ll owned here, passed with its exact size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Waits at most `timeout` for `fd` to be readable; whether it is. A signal ends the wait
/// early with `false`.
pub fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one pollfd, owned here, for the call.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        };
    }
    Ok(rc > 0 && pfd.revents & libc::POLLIN != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_before_any_call() {
        for bad in ["", "sixteen-chars-xx", "a/b", "a b", "a\0b"] {
            let e = check_ifname(bad).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert!(open_tap(bad, 1).is_err(), "{bad:?}");
            assert!(set_mtu(bad, 1500).is_err(), "{bad:?}");
        }
        assert!(check_ifname("fifteen-chars-x").is_ok());
    }

    #[test]
    fn a_tap_needs_one_to_the_kernels_most_queues() {
        for queues in [0, MAX_TAP_QUEUES + 1] {
            let e = open_tap("hvtest0", queues).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(e.to_string().contains("1 to 256 queues"), "{e}");
        }
    }

    #[test]
    fn a_missing_interface_is_named() {
        let e = interface_index("hvnet-none0").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("hvnet-none0"), "{e}");
    }

    #[test]
    fn an_idle_fd_is_not_readable_and_a_written_pipe_is() {
        let (rx, mut tx) = io::pipe().unwrap();
        let fd = rx.as_fd();
        assert!(!wait_readable(fd, Duration::ZERO).unwrap());
        io::Write::write_all(&mut tx, b"x").unwrap();
        assert!(wait_readable(fd, Duration::from_secs(5)).unwrap());
    }
}
