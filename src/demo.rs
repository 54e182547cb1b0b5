//! `hvnet demo`: a synthetic-path session against the built-in simulated host, then the
//! failover part (`failover_demo`). With `--metrics-addr` the failover part's port is served
//! to Prometheus (docs/metrics.md) while it runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use integration::host::{HostConfig, PortMode, SimHost};
use netvsc::nic::{NicConfig, NicEvent, SyntheticNic, SyntheticQueue};
use netvsc::nvsp;
use netvsc::vmbus::shm::ShmConfig;
use packet::{MacAddr, Pool, PortQueue};

/// Options of `hvnet demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Queues to open (VMBus channels: the primary plus subchannels), 1 to 8. The failover
    /// part uses at most 2 (an 82576 VF has two queue pairs).
    #[arg(
        long,
        default_value_t = 4,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u16).range(1..=8)
    )]
    queues: u16,

    /// Layer-3 MTU to negotiate, 576 to 9000; frames up to MTU + 14 bytes are exchanged.
    #[arg(
        long,
        default_value_t = 1500,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u16).range(576..=9000)
    )]
    mtu: u16,

    /// Frames to send in each direction on each queue, 0 to 1000000.
    #[arg(
        long,
        default_value_t = 10_000,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(0..=MAX_FRAMES as i64)
    )]
    frames: u32,

    /// Highest NVSP version to offer (the host negotiates down from it), e.g. 0x60001.
    #[arg(
        long,
        default_value = "0x60001",
        allow_negative_numbers = true,
        value_parser = parse_version
    )]
    nvsp_version: u32,

    /// Stay SECONDS in each phase of the failover part (synthetic, on the VF, after the
    /// planned removal, on the VF again, after the surprise removal), traffic running, so a
    /// scraper of --metrics-addr (or a person) sees each; 0 to 3600.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 0,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(0..=MAX_HOLD as i64)
    )]
    hold: u32,

    /// Which failover scenarios to run: planned (the VF ejected the Azure way, nothing
    /// lost), surprise (the VF vanishes mid-traffic, the stranded frames counted), flap (the
    /// VF's link down and up: to synthetic and back, the VF kept), servicing (the VF absent a
    /// while, as during host servicing, then offered again), or all of them in that order.
    #[arg(long, value_enum, default_value = "all")]
    scenario: crate::failover_demo::Scenario,

    /// Repeat the scenarios until SECONDS have passed (at least once), 1 to 86400; the live
    /// line shows the rates, the data path and the switches as they happen.
    #[arg(
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u32).range(1..=86_400)
    )]
    duration: Option<u32>,

    /// The Prometheus endpoint.
    #[command(flatten)]
    metrics: crate::run::metrics::MetricsArgs,
}

/// The most seconds `--hold` takes.
pub const MAX_HOLD: u32 = 3600;

/// The most frames `--frames` takes: each allows a queue 1 ms more (`FRAME_ALLOWANCE`), so
/// the synthetic part ends within 10 s + 1000 s even when it stalls.
pub const MAX_FRAMES: u32 = 1_000_000;

fn parse_version(s: &str) -> Result<u32, String> {
    let v = match s.strip_prefix("0x") {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    }
    .map_err(|e| format!("not a number (decimal, or hex after 0x): {e}"))?;
    if nvsp::is_known_version(v) {
        Ok(v)
    } else {
        Err(format!(
            "{v:#x} is not an NVSP version; known: 0x2, 0x30002, 0x40000, 0x50000, 0x60000, 0x60001"
        ))
    }
}

const ETHERTYPE: u16 = 0x88b5;
const WAIT: Duration = Duration::from_secs(10);
/// Time a queue is allowed per frame, on top of `WAIT`.
const FRAME_ALLOWANCE: Duration = Duration::from_millis(1);

/// How long a queue may take for `frames` frames each way: `WAIT` plus `FRAME_ALLOWANCE` a
/// frame.
fn queue_budget(frames: u32) -> anyhow::Result<Duration> {
    FRAME_ALLOWANCE
        .checked_mul(frames)
        .and_then(|d| d.checked_add(WAIT))
        .with_context(|| format!("no time budget can be set for {frames} frames"))
}

/// A demo frame: queue and sequence number after the Ethernet header, then a pattern.
fn frame(dst: MacAddr, queue: u16, seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&[0x02, 0x00, 0x5e, 0x00, 0x00, queue as u8]);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14..16].copy_from_slice(&queue.to_be_bytes());
    f[16..20].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[20..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    f
}

fn frame_len(seq: u32, max: usize) -> usize {
    60 + (seq as usize * 997) % (max - 59)
}

/// Checks a frame against what `frame` would have built; returns (queue, seq).
fn check(f: &[u8], max: usize) -> anyhow::Result<(u16, u32)> {
    ensure!(f.len() >= 60, "a {}-byte frame arrived", f.len());
    let queue = u16::from_be_bytes([f[14], f[15]]);
    let seq = u32::from_be_bytes([f[16], f[17], f[18], f[19]]);
    let dst = MacAddr(f[0..6].try_into().expect("checked length"));
    ensure!(
        f == frame(dst, queue, seq, frame_len(seq, max)).as_slice(),
        "frame {seq} of queue {queue} arrived damaged"
    );
    Ok((queue, seq))
}

/// What one queue's poller did.
struct QueueRun {
    sent: u32,
    received: u32,
}

/// Sends `frames` frames and receives as many, in order, on one queue.
fn run_queue(
    queue: &mut SyntheticQueue,
    pool: &Pool,
    host: &SimHost,
    mac: MacAddr,
    frames: u32,
    max: usize,
    port_done: &AtomicBool,
) -> anyhow::Result<QueueRun> {
    let qi = queue.index();
    let deadline = crate::deadline(queue_budget(frames)?)?;
    let peer = MacAddr([0x02, 0x00, 0x5e, 0x00, 0x01, qi as u8]);
    let (mut sent, mut injected, mut received) = (0u32, 0u32, 0u32);
    let mut tx = Vec::with_capacity(32);
    let mut rx = Vec::with_capacity(64);
    while sent < frames || received < frames {
        while sent + (tx.len() as u32) < frames && tx.len() < 32 {
            let seq = sent + tx.len() as u32;
            match pool.alloc_from(&frame(peer, qi, seq, frame_len(seq, max))) {
                Some(p) => tx.push(p),
                None => break,
            }
        }
        sent += queue.tx_burst(&mut tx) as u32;
        if injected < frames
            && host.external().pending_to_guest() < 64
            && host
                .external()
                .inject_on(qi, &frame(mac, qi, injected, frame_len(injected, max)))
        {
            injected += 1;
        }
        queue.rx_burst(&mut rx, 64);
        for p in rx.drain(..) {
            let (q, seq) = check(p.data(), max)?;
            ensure!(q == qi, "frame {seq} of queue {q} arrived on queue {qi}");
            ensure!(
                seq == received,
                "queue {qi}: frame {seq} arrived, {received} expected"
            );
            received += 1;
        }
        if Instant::now() > deadline {
            bail!("queue {qi} stalled: {sent} sent, {received} of {frames} received");
        }
    }
    // Completions for the last sends arrive on the receive side: keep polling until the host
    // has forwarded everything, so it never waits for ring space that nobody frees.
    while !port_done.load(Ordering::Acquire) {
        queue.rx_burst(&mut rx, 64);
        ensure!(rx.is_empty(), "queue {qi}: an unexpected frame arrived");
        if Instant::now() > deadline {
            bail!("queue {qi}: the host did not forward every frame in time");
        }
        std::thread::yield_now();
    }
    Ok(QueueRun { sent, received })
}

/// Waits for an event matching `want`, printing every event seen on the way.
fn expect_event(
    nic: &SyntheticNic,
    what: &str,
    want: impl Fn(&NicEvent) -> bool,
) -> anyhow::Result<()> {
    let deadline = crate::deadline(WAIT)?;
    while Instant::now() < deadline {
        if let Some(ev) = nic.next_event(Duration::from_millis(20)) {
            say!("  event: {ev:?}");
            if want(&ev) {
                return Ok(());
            }
        }
    }
    bail!("no {what} event within {WAIT:?}")
}

/// Sets the flag when dropped, so pollers stop even if the collector fails.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let serving = args.metrics.serve()?;
    let max = args.mtu as usize + 14;
    let host_config = HostConfig {
        shm: ShmConfig {
            max_channels: args.queues,
            ..ShmConfig::default()
        },
        port: PortMode::External,
        link_delay: Duration::from_millis(200),
        vf_device_delay: Duration::from_millis(100),
        ..HostConfig::default()
    };
    say!("starting the simulated Hyper-V host (NetVSP, vSwitch with an in-memory port)");
    let (host, device) = SimHost::start(host_config).context("starting the simulated host")?;
    let config = NicConfig {
        mtu: args.mtu as usize,
        queues: args.queues,
        max_nvsp_version: args.nvsp_version,
        ..NicConfig::default()
    };
    let started = Instant::now();
    let (nic, mut queues) =
        SyntheticNic::open(Box::new(device), config).context("opening the synthetic NIC")?;
    say!(
        "synthetic NIC up in {:.1} ms: {}",
        started.elapsed().as_secs_f64() * 1e3,
        crate::nic_summary(&nic)
    );

    say!(
        "exchanging {} frames each way on each queue (60..={max} bytes, contents and order checked)",
        args.frames
    );
    let pool = nic.pool().clone();
    let mac = nic.mac();
    let started = Instant::now();
    let total = args.frames as usize * queues.len();
    let queue_count = queues.len();
    let port_done = AtomicBool::new(false);
    let (runs, collected) = std::thread::scope(|s| {
        // Every frame the guest sends must come out of the host's external port, whole and
        // in order per queue.
        let host_ref = &host;
        let port_done = &port_done;
        let collector = s.spawn(move || -> anyhow::Result<usize> {
            let _done = SetOnDrop(port_done);
            let mut next = vec![0u32; queue_count];
            for n in 0..total {
                let f = host_ref
                    .external()
                    .recv(WAIT)
                    .with_context(|| format!("only {n} of {total} frames left the host"))?;
                let (q, seq) = check(&f, max)?;
                let slot = next
                    .get_mut(q as usize)
                    .context("frame for an unknown queue")?;
                ensure!(
                    seq == *slot,
                    "host port: queue {q} frame {seq}, {slot} expected"
                );
                *slot += 1;
            }
            Ok(total)
        });
        let handles: Vec<_> = queues
            .iter_mut()
            .map(|q| {
                let (pool, host) = (&pool, &host);
                s.spawn(move || run_queue(q, pool, host, mac, args.frames, max, port_done))
            })
            .collect();
        let runs = handles
            .into_iter()
            .map(|h| h.join().expect("queue thread panicked"))
            .collect::<anyhow::Result<Vec<_>>>();
        (runs, collector.join().expect("collector thread panicked"))
    });
    let runs = runs?;
    collected?;
    let secs = started.elapsed().as_secs_f64();
    for (q, run) in runs.iter().enumerate() {
        say!("  queue {q}: sent {} received {}", run.sent, run.received);
    }
    say!(
        "  {} frames in {secs:.2} s ({:.0} frames/s both ways together; not a benchmark)",
        2 * total,
        2.0 * total as f64 / secs
    );

    say!("link down, then up (RNDIS status indications)");
    host.set_link(false);
    expect_event(&nic, "link down", |e| *e == NicEvent::LinkDown)?;
    host.set_link(true);
    expect_event(&nic, "link up", |e| *e == NicEvent::LinkUp)?;

    let stats = nic.stats();
    say!("guest counters:");
    for (q, s) in stats.queues.iter().enumerate() {
        say!(
            "  queue {q}: rx {} pkts {} B, tx {} pkts {} B (sections {}, GPA direct {}), tx ring full {}, malformed {}",
            s.rx_packets,
            s.rx_bytes,
            s.tx_packets,
            s.tx_bytes,
            s.tx_send_buffer,
            s.tx_gpa_direct,
            s.tx_ring_full,
            s.rx_dropped_malformed
        );
    }
    let h = host.stats();
    say!(
        "host counters: delivered {}, from guest {}, dropped ring-full {} no-buffer {} filtered {}, protocol errors {}",
        h.rx_delivered,
        h.tx_packets,
        h.rx_dropped_ring_full,
        h.rx_dropped_no_buffer,
        h.rx_dropped_filtered,
        h.protocol_errors
    );
    ensure!(h.protocol_errors == 0, "the host saw protocol errors");
    say!("synthetic path finished: every frame arrived whole and in order");
    drop(nic);
    drop(host);
    crate::failover_demo::run(&crate::failover_demo::Plan {
        queues: args.queues,
        hold: Duration::from_secs(args.hold.into()),
        metrics: serving.is_some(),
        scenario: args.scenario,
        duration: args.duration.map(|s| Duration::from_secs(s.into())),
    })?;
    say!("demo finished");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_given_ten_seconds_and_a_millisecond_a_frame() {
        assert_eq!(queue_budget(0).unwrap(), WAIT);
        assert_eq!(
            queue_budget(MAX_FRAMES).unwrap(),
            WAIT + Duration::from_secs(1000)
        );
        // Past the cap (the CLI refuses it) the sum still fits a `Duration`.
        assert_eq!(
            queue_budget(u32::MAX).unwrap(),
            WAIT + Duration::from_millis(u32::MAX.into())
        );
    }
}
