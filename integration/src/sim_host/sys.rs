//! The system calls of the simulated host's nodes that `std` has no safe form of: `sendmsg`
//! with an `SCM_RIGHTS` control message, to hand a client the memory fd along with the
//! handshake, `fallocate` to zero a client's heap between clients, the TAP device, and the
//! packet socket and interface flags of a VF port on a kernel interface.
//!
//! This module opts in to `unsafe` because the `libc` calls are `unsafe fn`s; each passes
//! buffers it owns, with their exact lengths, and fds borrowed for the call.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;

/// Sends all of `bytes` on `stream` in one `sendmsg`, with `fd` attached (`SCM_RIGHTS`). A
/// short send is an error: the handshake is far smaller than a socket buffer.
pub(crate) fn send_with_fd(
    stream: &UnixStream,
    bytes: &[u8],
    fd: BorrowedFd<'_>,
) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // Room for one cmsghdr carrying one int, aligned as the kernel expects (u64 words).
    let mut control = [0u64; 4];
    // SAFETY: CMSG_SPACE only computes a size from its argument.
    let space = unsafe { libc::CMSG_SPACE(size_of::<libc::c_int>() as u32) } as usize;
    if space > size_of_val(&control) {
        return Err(io::Error::other("control buffer too small for one fd"));
    }
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    // SAFETY: an all-zero msghdr is a valid value (null pointers, zero lengths).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: `msg` points at `control`, which holds `space` bytes, so CMSG_FIRSTHDR returns
    // a pointer inside it (non-null: `space` covers one header) that is suitably aligned (u64
    // storage); the header and its data (one c_int, CMSG_LEN of it) fit in `space` bytes.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() {
            return Err(io::Error::other("no room for the control message"));
        }
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), raw);
    }
    // SAFETY: `msg` describes `iov` (over `bytes`, read-only for the kernel) and `control`,
    // both alive for the call; the socket fd is borrowed from `stream` for the call.
    let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short sendmsg: {n} of {} bytes", bytes.len()),
        ));
    }
    Ok(())
}

/// Gives the pages of `fd` in `offset .. offset + len` back (they read as zero again),
/// keeping the file's size.
pub(crate) fn punch_hole(fd: BorrowedFd<'_>, offset: usize, len: usize) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: fallocate takes plain integers; the fd is borrowed for the call.
    let rc = unsafe {
        libc::fallocate(
            fd.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as libc::off_t,
            len as libc::off_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens (creating) the TAP device `name` without packet information, non-blocking.
pub(crate) fn open_tap(name: &str) -> io::Result<OwnedFd> {
    check_ifname(name)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")?;
    let mut req = ifreq(name);
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq passed, which lives for the call; the fd
    // is the open tun device.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

/// Waits at most `timeout` for `fd` to be readable; whether it is.
pub(crate) fn wait_readable(fd: BorrowedFd<'_>, timeout: std::time::Duration) -> io::Result<bool> {
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

/// Checks that `name` can be an interface name.
fn check_ifname(name: &str) -> io::Result<()> {
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

/// Opens a non-blocking packet socket bound to interface `name` that sees every frame the
/// interface receives and none it sends.
pub(crate) fn open_packet_socket(name: &str) -> io::Result<OwnedFd> {
    check_ifname(name)?;
    let cname = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: a NUL-terminated string that lives for the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface {name:?} (create it first, e.g. one end of a veth pair)"),
        ));
    }
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
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
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

/// Sets or clears `IFF_UP` on interface `name` through `socket` (any socket); whether it
/// was up before.
pub(crate) fn set_interface_up(socket: BorrowedFd<'_>, name: &str, up: bool) -> io::Result<bool> {
    check_ifname(name)?;
    let mut req = ifreq(name);
    // SAFETY: SIOCGIFFLAGS writes the flags into the ifreq passed, which lives for the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    let was_up = flags & libc::IFF_UP as libc::c_short != 0;
    if was_up != up {
        req.ifr_ifru.ifru_flags = if up {
            flags | libc::IFF_UP as libc::c_short
        } else {
            flags & !(libc::IFF_UP as libc::c_short)
        };
        // SAFETY: SIOCSIFFLAGS reads the ifreq passed, which lives for the call.
        if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(was_up)
}

/// `TUNSETCARRIER`: `_IOW('T', 226, int)` (Linux 4.20 on); the libc crate has no name for it.
const TUNSETCARRIER: libc::c_ulong = 0x4004_54e2;

/// Sets the carrier of the TAP device open on `tap`.
pub(crate) fn set_tap_carrier(tap: BorrowedFd<'_>, up: bool) -> io::Result<()> {
    let value: libc::c_int = up.into();
    // SAFETY: TUNSETCARRIER reads one int through the pointer passed, which points at a local
    // that lives for the call; the fd is the open TAP device.
    let rc = unsafe { libc::ioctl(tap.as_raw_fd(), TUNSETCARRIER, &value) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
