//! What this process holds, from `/proc/self`: the leak checks of the cycles suite and the
//! soak measure the same things the same way.

/// Open file descriptors (entries of `/proc/self/fd`; 0 if it cannot be read).
pub fn open_fds() -> usize {
    count_dir("/proc/self/fd")
}

/// Threads (entries of `/proc/self/task`; 0 if it cannot be read).
pub fn threads() -> usize {
    count_dir("/proc/self/task")
}

/// Resident memory in KiB (`VmRSS` of `/proc/self/status`; 0 if it cannot be read).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_has_descriptors_threads_and_memory() {
        assert!(open_fds() >= 3, "stdin, stdout, stderr at least");
        assert!(threads() >= 1);
        assert!(rss_kib() > 0);
    }
}
