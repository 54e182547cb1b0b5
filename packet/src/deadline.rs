//! Deadlines that never panic: `now + timeout` for any timeout.
//!
//! `Instant + Duration` panics when the sum does not fit an `Instant`, and timeouts reach
//! hvnet from configuration files, the command line and callers that pass `Duration::MAX` to
//! mean "no bound". Every crate computes its deadlines here.

use std::time::{Duration, Instant};

/// How far ahead a deadline is put when the timeout asked for does not fit an `Instant`:
/// about a century, which does on every clock hvnet runs on.
pub const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `timeout` after `now`. A sum that does not fit an `Instant` saturates to [`FAR_FUTURE`]
/// after `now` (or to `now` itself on a clock that close to its end).
pub fn after(now: Instant, timeout: Duration) -> Instant {
    now.checked_add(timeout)
        .or_else(|| now.checked_add(FAR_FUTURE.min(timeout)))
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_that_fits_is_the_plain_sum() {
        let now = Instant::now();
        assert_eq!(
            after(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert_eq!(after(now, Duration::ZERO), now);
    }

    #[test]
    fn a_deadline_too_far_for_an_instant_saturates() {
        let now = Instant::now();
        for huge in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
            let deadline = after(now, huge);
            assert!(
                deadline > now + Duration::from_secs(10 * 365 * 24 * 3600),
                "{huge:?} gave a near deadline"
            );
        }
    }
}
