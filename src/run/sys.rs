//! The one system call of `hvnet run` that `std` has no form of: pinning a poller to a CPU.
//!
//! This module opts in to `unsafe` for `sched_setaffinity`, which reads a CPU set it owns.
#![allow(unsafe_code)]

use std::io;

/// Pins the calling thread to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "CPU {cpu} is past the largest CPU set ({})",
                libc::CPU_SETSIZE
            ),
        ));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set; CPU_SET writes one bit of it, in range
    // (checked above); sched_setaffinity reads the set, owned here, with its exact size, for
    // the calling thread (pid 0).
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cpu_past_the_set_is_refused_and_cpu_0_is_taken() {
        let e = pin_current_thread(1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        // In a thread of its own, so the test runner's thread keeps its CPUs.
        std::thread::spawn(|| pin_current_thread(0).unwrap())
            .join()
            .unwrap();
    }
}
