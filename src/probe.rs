//! `hvnet probe`: open a real guest's synthetic NIC through `uio_hv_generic` and report what
//! the host negotiated, then the events the host sends, then close the NIC as Linux and DPDK
//! detach (RNDIS HALT, the receive and send buffers revoked), so the host is not left holding
//! them.
//!
//! Listening for events is bounded three ways, so a host that keeps sending cannot keep the
//! probe running: it stops after [`EVENT_QUIET`] without an event, after `--timeout` seconds in
//! all, and after [`MAX_EVENTS`] events.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use netvsc::nic::{NicConfig, SyntheticNic};
use netvsc::vmbus::uio::{Guid, UioConfig, UioDevice};

/// Listening stops once this long passes without a host event.
pub const EVENT_QUIET: Duration = Duration::from_millis(500);
/// The most host events the probe prints.
pub const MAX_EVENTS: usize = 64;

/// Options of `hvnet probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// Instance GUID of the NetVSC to open (see /sys/bus/vmbus/devices), e.g.
    /// f8615163-df3e-46c5-913f-f2d2f965ed0e, braces optional; default: the first NetVSC bound
    /// to uio_hv_generic.
    #[arg(long, value_name = "GUID")]
    pub(crate) instance: Option<Guid>,

    /// Queues to request, 1 to 64 (subchannels are one-shot per session; the host may grant
    /// fewer).
    #[arg(
        long,
        default_value_t = 1,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u16).range(1..=64)
    )]
    queues: u16,

    /// Layer-3 MTU to negotiate, 576 to 9000.
    #[arg(
        long,
        default_value_t = 1500,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u16).range(576..=9000)
    )]
    mtu: u16,

    /// The sysfs root to search (for testing against a copy of a guest's tree).
    #[arg(long, default_value = "/sys")]
    sysfs_root: PathBuf,

    /// Where the device node uioN is (for `hvnet sim-host`, whose node is under its root).
    #[arg(long, value_name = "DIR", default_value = "/dev")]
    dev_root: PathBuf,

    /// Seconds to wait for each host answer, 1 to 3600; also the longest time spent listening
    /// for host events after negotiating (which ends sooner after half a second without one,
    /// or after 64 events).
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=3600)
    )]
    timeout: u32,
}

/// Why listening for events ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListenEnd {
    /// [`EVENT_QUIET`] passed without an event.
    Quiet,
    /// The total time ran out.
    Deadline,
    /// [`MAX_EVENTS`] (or the given maximum) were handled.
    MaxEvents,
}

/// Hands events from `next` (which waits at most the duration it is given) to `handle` until
/// [`EVENT_QUIET`] passes without one, `clock` reaches `deadline`, or `max_events` were
/// handled. Returns how many were handled and why it stopped.
fn listen<E>(
    deadline: Instant,
    max_events: usize,
    clock: impl Fn() -> Instant,
    mut next: impl FnMut(Duration) -> Option<E>,
    mut handle: impl FnMut(E),
) -> (usize, ListenEnd) {
    let mut handled = 0;
    loop {
        if handled >= max_events {
            return (handled, ListenEnd::MaxEvents);
        }
        let left = deadline.saturating_duration_since(clock());
        if left.is_zero() {
            return (handled, ListenEnd::Deadline);
        }
        match next(EVENT_QUIET.min(left)) {
            Some(event) => {
                handle(event);
                handled += 1;
            }
            // A whole quiet interval passed without an event.
            None if left > EVENT_QUIET => return (handled, ListenEnd::Quiet),
            None => return (handled, ListenEnd::Deadline),
        }
    }
}

/// Runs the probe.
pub fn run(args: &ProbeArgs) -> anyhow::Result<()> {
    let timeout = Duration::from_secs(args.timeout.into());
    let device = UioDevice::open(UioConfig {
        sysfs_root: args.sysfs_root.clone(),
        dev_root: args.dev_root.clone(),
        instance: args.instance.clone(),
        ..UioConfig::default()
    })
    .context(
        "opening the NetVSC through uio_hv_generic (see docs/deploy.md for binding the device)",
    )?;
    let info = format!("{:?}", device.info());
    let (nic, _queues) = SyntheticNic::open(
        Box::new(device),
        NicConfig {
            mtu: args.mtu as usize,
            queues: args.queues,
            control_timeout: timeout,
            ..NicConfig::default()
        },
    )
    .context("negotiating NVSP and RNDIS with the host")?;
    say!("device: {info}");
    say!("{}", crate::nic_summary(&nic));
    let (events, end) = listen(
        crate::deadline(timeout)?,
        MAX_EVENTS,
        Instant::now,
        |wait| nic.next_event(wait),
        |event| say!("event: {event:?}"),
    );
    match end {
        ListenEnd::Quiet => {}
        ListenEnd::Deadline => say!(
            "stopped listening after {} s with the host still sending events ({events} printed)",
            args.timeout
        ),
        ListenEnd::MaxEvents => say!(
            "stopped listening after {events} events with the host still sending (the most the probe prints)"
        ),
    }
    nic.close(timeout)
        .context("closing the NIC (RNDIS HALT, revoking the receive and send buffers)")?;
    say!("closed: RNDIS HALT, buffers revoked");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// A clock the test moves: `start` plus the time the fake host's waits took.
    struct FakeClock {
        start: Instant,
        elapsed: Cell<Duration>,
    }

    impl FakeClock {
        fn new() -> Self {
            Self {
                start: Instant::now(),
                elapsed: Cell::new(Duration::ZERO),
            }
        }

        fn now(&self) -> Instant {
            self.start + self.elapsed.get()
        }

        fn advance(&self, by: Duration) {
            self.elapsed.set(self.elapsed.get() + by);
        }
    }

    /// More events than any bound lets through: a source that never runs dry.
    const ENDLESS: usize = 100_000;

    #[test]
    fn a_host_sending_every_100_ms_is_listened_to_until_the_deadline_only() {
        let clock = FakeClock::new();
        let deadline = clock.now() + Duration::from_secs(5);
        let mut sent = 0;
        let (handled, end) = listen(
            deadline,
            usize::MAX,
            || clock.now(),
            |wait| {
                assert!(wait <= EVENT_QUIET, "waited {wait:?}");
                sent += 1;
                clock.advance(Duration::from_millis(100));
                (sent <= ENDLESS).then_some(sent)
            },
            |_| {},
        );
        assert_eq!((handled, end), (50, ListenEnd::Deadline));
        assert_eq!(clock.elapsed.get(), Duration::from_secs(5));
    }

    #[test]
    fn a_host_sending_events_back_to_back_is_cut_off_at_the_most_events() {
        let clock = FakeClock::new();
        let deadline = clock.now() + Duration::from_secs(5);
        let mut sent = 0;
        let mut seen = Vec::new();
        let (handled, end) = listen(
            deadline,
            MAX_EVENTS,
            || clock.now(),
            |_| {
                sent += 1;
                (sent <= ENDLESS).then_some(sent)
            },
            |event| seen.push(event),
        );
        assert_eq!((handled, end), (MAX_EVENTS, ListenEnd::MaxEvents));
        assert_eq!(seen, (1..=MAX_EVENTS).collect::<Vec<_>>());
    }

    #[test]
    fn a_host_that_falls_quiet_ends_listening_after_the_quiet_interval() {
        let clock = FakeClock::new();
        let deadline = clock.now() + Duration::from_secs(5);
        let mut sent = 0;
        let (handled, end) = listen(
            deadline,
            MAX_EVENTS,
            || clock.now(),
            |wait| {
                sent += 1;
                if sent <= 3 {
                    clock.advance(Duration::from_millis(10));
                    Some(sent)
                } else {
                    clock.advance(wait);
                    None
                }
            },
            |_| {},
        );
        assert_eq!((handled, end), (3, ListenEnd::Quiet));
        assert_eq!(clock.elapsed.get(), Duration::from_millis(530));
    }

    #[test]
    fn the_last_wait_is_cut_to_the_time_left() {
        let clock = FakeClock::new();
        let deadline = clock.now() + Duration::from_millis(700);
        let mut waits = Vec::new();
        let (handled, end) = listen(
            deadline,
            MAX_EVENTS,
            || clock.now(),
            |wait| {
                waits.push(wait);
                clock.advance(Duration::from_millis(400).min(wait));
                (waits.len() == 1).then_some(())
            },
            |()| {},
        );
        assert_eq!((handled, end), (1, ListenEnd::Deadline));
        assert_eq!(waits, [EVENT_QUIET, Duration::from_millis(300)]);
    }
}
