//! Time as an input. The port's timers (looking for a VF, the watchdog) read
//! [`Clock::now`]; tests drive a [`ManualClock`] so "the VF is absent for 60 s" takes no
//! wall time. Waits on pollers and on the host are bounded in wall time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
pub use vf::igbvf::driver::{Clock, SystemClock};

/// A clock that moves only when told to: `now` is its start plus everything
/// [`advance`](Self::advance)d (and every `pause`).
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<Instant>>,
}

impl ManualClock {
    /// A clock standing at the current instant.
    pub fn new() -> Self {
        Self {
            now: Arc::new(Mutex::new(Instant::now())),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        *self.now.lock() += by;
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        *self.now.lock()
    }

    fn pause(&self, duration: Duration) {
        self.advance(duration);
        std::thread::yield_now();
    }
}
