//! SIGINT and SIGTERM as events the main thread waits for, so a long-running command stops
//! cleanly (removes what it published, prints its counters) instead of dying mid-way.
//!
//! [`block_termination`] blocks both signals in the calling thread, before any other thread
//! is started (threads inherit the mask), so they stay pending until [`wait_termination`]
//! takes one with `sigtimedwait`.
//!
//! This module opts in to `unsafe` for the two `libc` calls; each passes a signal set it owns.
#![allow(unsafe_code)]

use std::io;
use std::time::Duration;

/// The signals that end a command.
fn termination_set() -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is a valid argument to sigemptyset, which initialises it;
    // sigaddset with valid signal numbers on an initialised set cannot fail.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT and SIGTERM in this thread and every thread it starts later.
pub fn block_termination() -> io::Result<()> {
    let set = termination_set();
    // SAFETY: `set` is an initialised signal set owned here; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits at most `timeout` for SIGINT or SIGTERM (blocked by [`block_termination`]); the
/// signal's name if one came.
pub fn wait_termination(timeout: Duration) -> io::Result<Option<&'static str>> {
    let set = termination_set();
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` and `ts` are initialised and owned here; a null siginfo pointer is allowed.
    let rc = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
    match rc {
        libc::SIGINT => Ok(Some("SIGINT")),
        libc::SIGTERM => Ok(Some("SIGTERM")),
        _ => {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                _ => Err(e),
            }
        }
    }
}
