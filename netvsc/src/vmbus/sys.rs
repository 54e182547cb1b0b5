//! Every system call of the VMBus backends (`open`, `read`, `write`, `poll`, `eventfd`,
//! `sysconf`), as thin safe wrappers returning `io::Result`. Mapping memory lives in
//! `packet::mem`.
//!
//! This module opts in to `unsafe` because `libc` calls are `unsafe fn`s; each call passes
//! buffers it owns with their exact lengths and file descriptors borrowed for the call.
#![allow(unsafe_code)]

use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// Opens `path` read-write with close-on-exec (the default of `std`).
pub(crate) fn open_rw(path: &Path) -> io::Result<OwnedFd> {
    Ok(OpenOptions::new().read(true).write(true).open(path)?.into())
}

/// Reads exactly `buf.len()` bytes with one `read`; a short read is `UnexpectedEof`.
pub(crate) fn read_exact_once(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<()> {
    // SAFETY: `buf` is a live, writable buffer of `buf.len()` bytes owned by the caller; the
    // fd is borrowed for the duration of the call.
    let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("short read: {n} of {} bytes", buf.len()),
        ));
    }
    Ok(())
}

/// Writes all of `buf` with one `write`; a short write is `WriteZero`.
pub(crate) fn write_once(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<()> {
    // SAFETY: `buf` is a live buffer of `buf.len()` bytes; the fd is borrowed for the call.
    let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != buf.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!("short write: {n} of {} bytes", buf.len()),
        ));
    }
    Ok(())
}

/// Waits until any of `fds` is readable (or has an error or hang-up) or `timeout` passes.
/// Fills `ready[i]` for each fd and returns how many are ready; an interrupted wait returns 0
/// (callers loop until their deadline).
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Duration,
    ready: &mut Vec<bool>,
) -> io::Result<usize> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // ppoll, not poll: a host polling the monitor page at the 50 µs a guest asked for needs
    // waits shorter than poll's millisecond. A timeout beyond what a timespec holds is capped.
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    };
    // SAFETY: `pollfds` is a live array of `pollfds.len()` entries whose fds are borrowed by
    // the caller for the duration of the call; `ts` lives across it; a null signal mask keeps
    // the thread's own.
    let n = unsafe {
        libc::ppoll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    ready.clear();
    if n < 0 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::Interrupted {
            ready.resize(fds.len(), false);
            return Ok(0);
        }
        return Err(err);
    }
    ready.extend(
        pollfds
            .iter()
            .map(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0),
    );
    Ok(n as usize)
}

/// `fstat` of the open file `fd`.
fn stat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value for `fstat` to fill; the fd is borrowed for
    // the call.
    let (rc, st) = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let rc = libc::fstat(fd.as_raw_fd(), &mut st);
        (rc, st)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The size `fstat` gives the open file `fd` (a sysfs binary attribute's size, as for a
/// subchannel's `ring`).
pub(crate) fn file_size(fd: BorrowedFd<'_>) -> io::Result<u64> {
    Ok(stat(fd)?.st_size.max(0) as u64)
}

/// The size of `fd` if it is a regular file (a stand-in for a device node, as tests and
/// fakes use), `None` for a device or a socket (whose size says nothing of what maps).
pub(crate) fn regular_file_size(fd: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    let st = stat(fd)?;
    Ok((st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(st.st_size.max(0) as u64))
}

/// The system page size (the stride of uio map offsets).
pub(crate) fn page_size() -> usize {
    // SAFETY: `sysconf` only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 { size as usize } else { 4096 }
}

/// A non-blocking eventfd: a counter one side increments and the other drains.
#[derive(Debug)]
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    /// A new eventfd with count 0.
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall with valid flags; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd owned by nobody else.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Adds 1 to the counter, waking a poller.
    pub(crate) fn signal(&self) -> io::Result<()> {
        write_once(self.0.as_fd(), &1u64.to_ne_bytes())
    }

    /// Takes the counter (0 if nothing was signalled).
    pub(crate) fn drain(&self) -> io::Result<u64> {
        let mut buf = [0u8; 8];
        match read_exact_once(self.0.as_fd(), &mut buf) {
            Ok(()) => Ok(u64::from_ne_bytes(buf)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            Err(e) => Err(e),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eventfd_signal_poll_drain() {
        let efd = EventFd::new().unwrap();
        let mut ready = Vec::new();
        assert_eq!(
            poll_readable(&[efd.as_fd()], Duration::ZERO, &mut ready).unwrap(),
            0
        );
        assert_eq!(efd.drain().unwrap(), 0);
        efd.signal().unwrap();
        efd.signal().unwrap();
        assert_eq!(
            poll_readable(&[efd.as_fd()], Duration::from_secs(5), &mut ready).unwrap(),
            1
        );
        assert_eq!(ready, [true]);
        assert_eq!(efd.drain().unwrap(), 2);
        assert_eq!(efd.drain().unwrap(), 0);
        assert!(page_size() >= 4096);
    }
}
