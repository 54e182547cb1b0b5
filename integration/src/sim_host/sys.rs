//! The system calls of the simulated host's nodes that `std` has no safe form of: `sendmsg`
//! with an `SCM_RIGHTS` control message, to hand a client the memory fd along with the
//! handshake, and `fallocate` to zero a client's heap between clients. The TAP device and the
//! VF port's packet socket and interface flags are `packet::netdev`'s.
//!
//! This module opts in to `unsafe` because the `libc` calls are `unsafe fn`s; each passes
//! buffers it owns, with their exact lengths, and fds borrowed for the call.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
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
