//! The publisher: a thread that, every period, asks the program for a [`PortSample`] per port
//! and exports them ([`Emitter`]), then runs the exporter's upkeep when it was given a handle
//! (with [`crate::endpoint::install`] the exporter's own task does it). The pollers never call
//! `metrics`: they keep plain counters, which the sample closure reads (DESIGN §3).
//!
//! Lifecycle: [`Publisher::start`] (a `'static` closure) or [`Publisher::scoped`] (a closure
//! borrowing from a `std::thread::scope`) exports a first sample at once, then one per
//! period, and a last one when stopped. Dropping the publisher stops it: the thread is told
//! and joined, bounded by [`JOIN_BOUND`] for the `'static` kind (a sample closure stuck past it
//! is left to finish on its own, logged); a scoped thread is joined by its scope.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::{JoinHandle, Scope, ScopedJoinHandle};
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;

use crate::model::{Emitter, PortSample};

/// The default sampling period.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(1);
/// How long dropping a publisher waits for its thread.
pub const JOIN_BOUND: Duration = Duration::from_secs(2);

/// How the publisher runs.
#[derive(Clone)]
pub struct PublisherConfig {
    /// Time between samples.
    pub period: Duration,
    /// A handle whose upkeep (draining histogram samples) to run after each sample; `None`
    /// when the exporter runs its own (an endpoint from [`crate::endpoint::install`]).
    pub upkeep: Option<PrometheusHandle>,
}

impl std::fmt::Debug for PublisherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherConfig")
            .field("period", &self.period)
            .field("upkeep", &self.upkeep.is_some())
            .finish()
    }
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            period: DEFAULT_PERIOD,
            upkeep: None,
        }
    }
}

/// What the publisher's thread and its owner share.
#[derive(Debug, Default)]
struct Shared {
    /// (stop asked, thread finished)
    state: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, (bool, bool)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `deadline` or a stop; whether a stop was asked.
    fn wait_stop(&self, deadline: Instant) -> bool {
        let mut state = self.lock();
        loop {
            if state.0 {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn ask_stop(&self) {
        self.lock().0 = true;
        self.changed.notify_all();
    }

    fn mark_finished(&self) {
        self.lock().1 = true;
        self.changed.notify_all();
    }

    /// Waits at most `bound` for the thread to finish; whether it did.
    fn wait_finished(&self, bound: Duration) -> bool {
        let deadline = Instant::now() + bound;
        let mut state = self.lock();
        while !state.1 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// Marks the thread finished however it ends (a panicking sample closure included).
struct Finished(Arc<Shared>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.mark_finished();
    }
}

/// The thread's loop.
fn publish_loop(
    shared: Arc<Shared>,
    config: PublisherConfig,
    mut sample: impl FnMut() -> Vec<PortSample>,
) {
    let _finished = Finished(shared.clone());
    let mut emitter = Emitter::new();
    let mut next = Instant::now();
    loop {
        emitter.emit(&sample());
        if let Some(handle) = &config.upkeep {
            handle.run_upkeep();
        }
        next += config.period;
        let now = Instant::now();
        if next < now {
            // A sample took longer than the period: start counting again from now.
            next = now + config.period;
        }
        if shared.wait_stop(next) {
            emitter.emit(&sample());
            return;
        }
    }
}

/// A publisher thread with a `'static` sample closure. Stops on drop.
#[derive(Debug)]
pub struct Publisher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Publisher {
    /// Starts the thread (`hvnet-metrics`).
    pub fn start<F>(config: PublisherConfig, sample: F) -> std::io::Result<Self>
    where
        F: FnMut() -> Vec<PortSample> + Send + 'static,
    {
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("hvnet-metrics".into())
                .spawn(move || publish_loop(shared, config, sample))?
        };
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Starts the thread in `scope`, so `sample` may borrow what outlives the scope.
    pub fn scoped<'scope, 'env, F>(
        scope: &'scope Scope<'scope, 'env>,
        config: PublisherConfig,
        sample: F,
    ) -> std::io::Result<ScopedPublisher<'scope>>
    where
        F: FnMut() -> Vec<PortSample> + Send + 'scope,
    {
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("hvnet-metrics".into())
                .spawn_scoped(scope, move || publish_loop(shared, config, sample))?
        };
        Ok(ScopedPublisher {
            shared,
            thread: Some(thread),
        })
    }

    /// Stops the thread after a last sample; waits for it at most [`JOIN_BOUND`].
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.ask_stop();
        if self.shared.wait_finished(JOIN_BOUND) {
            if thread.join().is_err() {
                tracing::error!(target: "hvnet::telemetry", "the metrics publisher panicked");
            }
        } else {
            tracing::error!(
                target: "hvnet::telemetry",
                "the metrics publisher did not stop within {JOIN_BOUND:?}; left to finish on its own"
            );
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// A publisher thread in a `std::thread::scope`. Stops on drop (its scope joins it).
#[derive(Debug)]
pub struct ScopedPublisher<'scope> {
    shared: Arc<Shared>,
    thread: Option<ScopedJoinHandle<'scope, ()>>,
}

impl ScopedPublisher<'_> {
    /// Stops the thread after a last sample and joins it.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.ask_stop();
        if thread.join().is_err() {
            tracing::error!(target: "hvnet::telemetry", "the metrics publisher panicked");
        }
    }
}

impl Drop for ScopedPublisher<'_> {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    #[test]
    fn samples_at_once_then_once_more_when_stopped_and_the_drop_returns() {
        let calls = Arc::new(AtomicU64::new(0));
        let publisher = {
            let calls = calls.clone();
            Publisher::start(
                PublisherConfig {
                    period: Duration::from_secs(3600),
                    upkeep: None,
                },
                move || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Vec::new()
                },
            )
            .unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while calls.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no first sample");
            std::thread::yield_now();
        }
        // The hour-long period does not hold the drop up: it wakes the thread, which samples
        // once more and ends.
        drop(publisher);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn samples_every_period() {
        let calls = AtomicU64::new(0);
        std::thread::scope(|s| {
            let publisher = Publisher::scoped(
                s,
                PublisherConfig {
                    period: Duration::from_millis(1),
                    upkeep: None,
                },
                || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Vec::new()
                },
            )
            .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while calls.load(Ordering::SeqCst) < 5 {
                assert!(Instant::now() < deadline, "fewer than 5 samples");
                std::thread::yield_now();
            }
            publisher.stop();
        });
        let after = calls.load(Ordering::SeqCst);
        assert!(after >= 6, "{after}");
    }
}
