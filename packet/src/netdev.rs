//! The kernel's network devices as frame endpoints: TAP devices (one fd per queue), packet
//! sockets on an interface, and the interface settings a port gives them (MAC, MTU, up,
//! carrier), read back (flags, MTU, MAC, index and name), a link monitor (rtnetlink) that
//! wakes a waiter when an interface changes, and a thread's own network namespace for tests.
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

/// The flags of an interface (`SIOCGIFFLAGS`), the `IFF_*` bits of `netdevice(7)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceFlags(pub u16);

impl InterfaceFlags {
    /// `IFF_UP`: the administrator brought it up.
    pub fn up(self) -> bool {
        self.0 & libc::IFF_UP as u16 != 0
    }

    /// `IFF_RUNNING`: up with its carrier (the kernel's operational state is up).
    pub fn running(self) -> bool {
        self.0 & libc::IFF_RUNNING as u16 != 0
    }
}

/// The flags of interface `name`.
pub fn interface_flags(name: &str) -> io::Result<InterfaceFlags> {
    check_ifname(name)?;
    let socket = control_socket()?;
    let mut req = ifreq(name);
    ioctl(socket.as_fd(), libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    Ok(InterfaceFlags(flags as u16))
}

/// The MTU of interface `name`.
pub fn interface_mtu(name: &str) -> io::Result<u32> {
    check_ifname(name)?;
    let socket = control_socket()?;
    let mut req = ifreq(name);
    ioctl(socket.as_fd(), libc::SIOCGIFMTU, &mut req)?;
    // SAFETY: SIOCGIFMTU filled the mtu member of the union.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    u32::try_from(mtu).map_err(|_| io::Error::other(format!("{name}: MTU {mtu}")))
}

/// The hardware address of Ethernet interface `name`.
pub fn interface_mac(name: &str) -> io::Result<MacAddr> {
    check_ifname(name)?;
    let socket = control_socket()?;
    let mut req = ifreq(name);
    ioctl(socket.as_fd(), libc::SIOCGIFHWADDR, &mut req)?;
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union, a plain sockaddr.
    let hwaddr = unsafe { req.ifr_ifru.ifru_hwaddr };
    if hwaddr.sa_family != libc::ARPHRD_ETHER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{name} is not an Ethernet interface (hardware type {})",
                hwaddr.sa_family
            ),
        ));
    }
    let mut mac = [0u8; 6];
    for (b, c) in mac.iter_mut().zip(hwaddr.sa_data) {
        *b = c as u8;
    }
    Ok(MacAddr(mac))
}

/// The name of the interface with index `index`, or `None` when there is none (in this
/// thread's network namespace).
pub fn interface_name(index: u32) -> io::Result<Option<String>> {
    let mut buf = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: the buffer is IFNAMSIZ bytes, as if_indextoname requires, and lives for the call.
    let rc = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if rc.is_null() {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENXIO) || e.raw_os_error() == Some(libc::ENODEV) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    let bytes: Vec<u8> = buf
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Receives one frame (or datagram) from the non-blocking socket `fd` into `buf`; its full
/// length, which is larger than `buf` when the frame was truncated (`MSG_TRUNC`). An empty
/// socket is a `WouldBlock` error.
pub fn recv_frame(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is an exclusively borrowed buffer of `buf.len()` bytes that lives for the
    // call; the kernel writes at most that many.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Asks packet socket `fd` to report, with each frame, the VLAN tag the kernel took out of it
/// (`PACKET_AUXDATA`): read frames with [`recv_frame_vlan`] then.
pub fn enable_packet_auxdata(fd: BorrowedFd<'_>) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the option value is a c_int owned here, with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_AUXDATA,
            (&one as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// [`recv_frame`] on a packet socket with [`enable_packet_auxdata`]: the frame's full length
/// and the VLAN tag control information the kernel took out of it (receive VLAN offload, or
/// the stack's own untagging before packet sockets see a frame), if any. The frame in `buf`
/// is without that tag.
pub fn recv_frame_vlan(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Option<u16>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for one tpacket_auxdata message, aligned for cmsghdr.
    let mut control = [0u64; 8];
    // SAFETY: an all-zero msghdr is a valid value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = size_of_val(&control);
    // SAFETY: `msg` points at one iovec over `buf` (exclusively borrowed, `buf.len()` bytes)
    // and at `control` (its exact size); all live for the call, and the kernel writes within
    // those lengths.
    let n = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut tci = None;
    // SAFETY: `msg` was filled by recvmsg: its control pointer and length describe `control`,
    // within which CMSG_FIRSTHDR and CMSG_NXTHDR stay (they return null past its end).
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is a non-null header inside `control`, as CMSG_FIRSTHDR/NXTHDR
        // guarantee.
        let header = unsafe { *cmsg };
        let payload = size_of::<libc::tpacket_auxdata>();
        // SAFETY: CMSG_LEN computes a length from an integer.
        let needed = unsafe { libc::CMSG_LEN(payload as u32) } as usize;
        if header.cmsg_level == libc::SOL_PACKET
            && header.cmsg_type == libc::PACKET_AUXDATA
            && header.cmsg_len >= needed
        {
            // SAFETY: the header says its data holds a whole tpacket_auxdata, inside
            // `control`; read unaligned, as cmsg data need not be aligned for it.
            let aux: libc::tpacket_auxdata =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                tci = Some(aux.tp_vlan_tci);
            }
        }
        // SAFETY: `cmsg` is a header inside the control buffer `msg` describes.
        cmsg = unsafe { libc::CMSG_NXTHDR(&msg, cmsg) };
    }
    Ok((n as usize, tci))
}

/// Sends one frame on the bound packet socket `fd` without blocking; the bytes sent. A full
/// queue is a `WouldBlock` error.
pub fn send_frame(fd: BorrowedFd<'_>, frame: &[u8]) -> io::Result<usize> {
    // SAFETY: `frame` is a buffer of `frame.len()` bytes that lives for the call; the kernel
    // only reads it.
    let n = unsafe {
        libc::send(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Frames the kernel dropped on packet socket `fd` since the last call because its receive
/// queue was full (`PACKET_STATISTICS`'s `tp_drops`; reading resets the kernel's count).
pub fn packet_socket_drops(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut stats = libc::tpacket_stats {
        tp_packets: 0,
        tp_drops: 0,
    };
    let mut len = size_of::<libc::tpacket_stats>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `stats`, a tpacket_stats owned here,
    // and stores the length it wrote in `len`, a local.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&mut stats as *mut libc::tpacket_stats).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(stats.tp_drops))
}

/// Sets the receive buffer of socket `fd` to `bytes`: past `net.core.rmem_max` when the
/// process may (`SO_RCVBUFFORCE`, CAP_NET_ADMIN), else up to it (`SO_RCVBUF`).
pub fn set_receive_buffer(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |option: libc::c_int| {
        // SAFETY: the option value is a c_int owned here, with its exact size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_RCVBUFFORCE) == 0 || set(libc::SO_RCVBUF) == 0 {
        return Ok(());
    }
    Err(io::Error::last_os_error())
}

/// Opens a non-blocking rtnetlink socket that becomes readable whenever an interface of this
/// thread's network namespace changes (`RTMGRP_LINK`: added, removed, up, down, carrier).
/// Its messages are not parsed here: read them with [`recv_frame`] until it would block, then
/// look at the interface.
pub fn open_link_monitor() -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a socket this call just opened and nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero sockaddr_nl is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = libc::RTMGRP_LINK as u32;
    // SAFETY: `addr` is a sockaddr_nl owned here, passed with its exact size.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Moves the calling thread (only it: the rest of the process stays where it is) into a new,
/// empty network namespace and a private copy of its mount namespace, so that interfaces can
/// be made and sysfs mounted for them without touching the machine's. Threads and processes
/// the calling thread starts afterwards are in both namespaces too; the network namespace and
/// every interface in it go away when the last of them (and the last socket in it) is gone.
/// Needs CAP_SYS_ADMIN; for tests and the simulated host.
pub fn enter_new_network_namespace() -> io::Result<()> {
    // SAFETY: plain integer arguments. CLONE_NEWNET and CLONE_NEWNS (which implies CLONE_FS)
    // change only the calling thread's namespaces and filesystem context, never memory the
    // program shares between threads.
    if unsafe { libc::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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

    #[test]
    fn the_loopback_interface_reads_back_by_name_and_index() {
        let index = interface_index("lo").unwrap();
        assert_eq!(interface_name(index).unwrap().as_deref(), Some("lo"));
        assert_eq!(interface_name(u32::MAX - 1).unwrap(), None);
        let flags = interface_flags("lo").unwrap();
        assert!(flags.up() && flags.running(), "{flags:?}");
        assert!(interface_mtu("lo").unwrap() >= 1280);
        let e = interface_mac("lo").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert!(interface_flags("hvnet-none0").is_err());
    }
}
