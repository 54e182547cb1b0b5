//! The counters of `hvnet run` and how they are printed: testpmd's field names
//! (RX-packets, RX-missed, RX-bytes, TX-packets, TX-dropped, TX-bytes, Rx-pps, Tx-pps, Rx-bps,
//! Tx-bps), which testpmd users and Microsoft's LISA parse, for each port and for each of its
//! paths (synthetic, VF).
//!
//! Each poller owns the counters of its queue and adds to them once per burst; the main thread
//! sums them when it prints.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bond::FailoverPort;

/// Counters of one queue of one port, written by its poller only.
#[derive(Debug, Default)]
pub struct QueueCounters {
    rx_packets: AtomicU64,
    rx_bytes: AtomicU64,
    tx_packets: AtomicU64,
    tx_bytes: AtomicU64,
    tx_dropped: AtomicU64,
    to_kernel_dropped: AtomicU64,
    drained: AtomicU64,
    quiet_rounds: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    if n != 0 {
        // One writer: a load and a store would do, but fetch_add is as cheap on x86 and
        // stays right if a queue ever has two.
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl QueueCounters {
    /// `packets` frames of `bytes` in all received.
    pub fn received(&self, packets: usize, bytes: usize) {
        add(&self.rx_packets, packets as u64);
        add(&self.rx_bytes, bytes as u64);
    }

    /// `packets` frames of `bytes` in all taken for transmit.
    pub fn sent(&self, packets: usize, bytes: usize) {
        add(&self.tx_packets, packets as u64);
        add(&self.tx_bytes, bytes as u64);
    }

    /// `packets` frames the port did not take for transmit (its queue full), dropped here.
    pub fn tx_dropped(&self, packets: usize) {
        add(&self.tx_dropped, packets as u64);
    }

    /// `packets` received frames the TAP device did not take (its queue full, or down).
    pub fn to_kernel_dropped(&self, packets: usize) {
        add(&self.to_kernel_dropped, packets as u64);
    }

    /// `packets` frames received while draining at exit, freed without forwarding.
    pub fn drained(&self, packets: usize) {
        add(&self.drained, packets as u64);
    }

    /// A round while draining found nothing to receive.
    pub fn quiet_round(&self) {
        add(&self.quiet_rounds, 1);
    }

    /// Frames the port did not take for transmit (dropped by the application), and received
    /// frames the TAP device did not take: the run's own drops, for the metrics.
    pub fn app_drops(&self) -> (u64, u64) {
        (
            self.tx_dropped.load(Ordering::Relaxed),
            self.to_kernel_dropped.load(Ordering::Relaxed),
        )
    }

    /// (received, sent) frames, for tests.
    #[cfg(test)]
    pub fn clone_totals(&self) -> (u64, u64) {
        (
            self.rx_packets.load(Ordering::Relaxed),
            self.tx_packets.load(Ordering::Relaxed),
        )
    }

    /// Rounds while draining that found nothing to receive.
    pub fn quiet_rounds(&self) -> u64 {
        self.quiet_rounds.load(Ordering::Relaxed)
    }
}

/// Totals of one path of a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathTotals {
    /// Frames received on the path.
    pub rx_packets: u64,
    /// Frames the path took for transmit.
    pub tx_packets: u64,
}

/// A port's counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortTotals {
    /// Frames the application received.
    pub rx_packets: u64,
    /// Frames the host delivered that the port could not take (no free buffer, or its ring
    /// of completions full), counted by the synthetic NIC.
    pub rx_missed: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames the port took for transmit.
    pub tx_packets: u64,
    /// Frames the port did not take (dropped by the application) or took and then could not
    /// send (counted by the synthetic NIC).
    pub tx_dropped: u64,
    /// Bytes taken for transmit.
    pub tx_bytes: u64,
    /// Received frames a TAP device did not take.
    pub to_kernel_dropped: u64,
    /// Frames received while draining at exit (after the sources stopped), not forwarded.
    pub drained: u64,
    /// The synthetic path's share.
    pub synthetic: PathTotals,
    /// The VF's share.
    pub vf: PathTotals,
}

impl PortTotals {
    /// Sums the queues' counters and reads the port's own.
    pub fn read(port: &FailoverPort, queues: &[std::sync::Arc<QueueCounters>]) -> Self {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut t = Self::default();
        for q in queues {
            t.rx_packets += get(&q.rx_packets);
            t.rx_bytes += get(&q.rx_bytes);
            t.tx_packets += get(&q.tx_packets);
            t.tx_bytes += get(&q.tx_bytes);
            t.tx_dropped += get(&q.tx_dropped);
            t.to_kernel_dropped += get(&q.to_kernel_dropped);
            t.drained += get(&q.drained);
        }
        let nic = port.nic().stats();
        for q in &nic.queues {
            t.rx_missed += q.rx_dropped_no_buffer + q.rx_dropped_overflow;
            t.tx_dropped += q.tx_dropped + q.tx_failed;
        }
        for q in port.stats().queues {
            t.synthetic.rx_packets += q.rx_synthetic;
            t.synthetic.tx_packets += q.tx_synthetic;
            t.vf.rx_packets += q.rx_vf;
            t.vf.tx_packets += q.tx_vf;
        }
        t
    }
}

/// Rates between two readings.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Frames received per second.
    pub rx_pps: u64,
    /// Bits received per second.
    pub rx_bps: u64,
    /// Frames sent per second.
    pub tx_pps: u64,
    /// Bits sent per second.
    pub tx_bps: u64,
}

impl Rates {
    /// From `before` to `after`, `elapsed` apart (zero rates for no time).
    pub fn between(before: &PortTotals, after: &PortTotals, elapsed: Duration) -> Self {
        let seconds = elapsed.as_secs_f64();
        if seconds <= 0.0 {
            return Self::default();
        }
        let per_second = |a: u64, b: u64| (b.saturating_sub(a) as f64 / seconds).round() as u64;
        Self {
            rx_pps: per_second(before.rx_packets, after.rx_packets),
            rx_bps: per_second(before.rx_bytes, after.rx_bytes) * 8,
            tx_pps: per_second(before.tx_packets, after.tx_packets),
            tx_bps: per_second(before.tx_bytes, after.tx_bytes) * 8,
        }
    }
}

/// The block printed for port `index`, testpmd's shape: a header line, the totals, the rates
/// since the last print (`rates_title` says over what), and one line per path.
pub fn format_port(index: usize, t: &PortTotals, rates: &Rates, rates_title: &str) -> String {
    let mut s = String::new();
    let rule = "#".repeat(24);
    s.push_str(&format!(
        "  {rule} Forward statistics for port {index:<2} {rule}\n"
    ));
    s.push_str(&format!(
        "  RX-packets: {:<14} RX-missed: {:<14} RX-bytes:  {}\n",
        t.rx_packets, t.rx_missed, t.rx_bytes
    ));
    s.push_str(&format!(
        "  TX-packets: {:<14} TX-dropped: {:<13} TX-bytes:  {}\n",
        t.tx_packets, t.tx_dropped, t.tx_bytes
    ));
    if t.to_kernel_dropped != 0 {
        s.push_str(&format!(
            "  TAP-dropped: {} (received, the TAP device did not take them)\n",
            t.to_kernel_dropped
        ));
    }
    if t.drained != 0 {
        s.push_str(&format!(
            "  Drained: {} (received at exit after the sources stopped, not forwarded)\n",
            t.drained
        ));
    }
    s.push_str(&format!("\n  Throughput ({rates_title})\n"));
    s.push_str(&format!(
        "  Rx-pps: {:>14}          Rx-bps: {:>14}\n",
        rates.rx_pps, rates.rx_bps
    ));
    s.push_str(&format!(
        "  Tx-pps: {:>14}          Tx-bps: {:>14}\n",
        rates.tx_pps, rates.tx_bps
    ));
    for (name, p) in [("synthetic", t.synthetic), ("VF", t.vf)] {
        s.push_str(&format!(
            "  path {name:<9} RX-packets: {:<14} TX-packets: {}\n",
            p.rx_packets, p.tx_packets
        ));
    }
    s.push_str(&format!("  {}\n", "#".repeat(76)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The number after `field:` in `text` (the first occurrence), as LISA's regexes read it.
    fn field(text: &str, field: &str) -> u64 {
        let at = text.find(&format!("{field}:")).expect(field) + field.len() + 1;
        text[at..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn every_field_reads_back_as_a_parser_of_testpmd_output_reads_it() {
        let t = PortTotals {
            rx_packets: 1,
            rx_missed: 2,
            rx_bytes: 3,
            tx_packets: 4,
            tx_dropped: 5,
            tx_bytes: 6,
            to_kernel_dropped: 0,
            drained: 0,
            synthetic: PathTotals {
                rx_packets: 7,
                tx_packets: 8,
            },
            vf: PathTotals {
                rx_packets: 9,
                tx_packets: 10,
            },
        };
        let r = Rates {
            rx_pps: 11,
            rx_bps: 12,
            tx_pps: 13,
            tx_bps: 14,
        };
        let text = format_port(0, &t, &r, "since last show");
        for (name, value) in [
            ("RX-packets", 1),
            ("RX-missed", 2),
            ("RX-bytes", 3),
            ("TX-packets", 4),
            ("TX-dropped", 5),
            ("TX-bytes", 6),
            ("Rx-pps", 11),
            ("Rx-bps", 12),
            ("Tx-pps", 13),
            ("Tx-bps", 14),
        ] {
            assert_eq!(field(&text, name), value, "{name} in\n{text}");
        }
        let synthetic = &text[text.find("path synthetic").unwrap()..];
        assert_eq!(
            (
                field(synthetic, "RX-packets"),
                field(synthetic, "TX-packets")
            ),
            (7, 8)
        );
        let vf = &text[text.find("path VF").unwrap()..];
        assert_eq!((field(vf, "RX-packets"), field(vf, "TX-packets")), (9, 10));
        assert!(text.contains("Forward statistics for port 0"), "{text}");
        assert!(!text.contains("TAP-dropped"), "{text}");
    }

    #[test]
    fn rates_are_per_second_and_bits_are_eight_per_byte() {
        let before = PortTotals::default();
        let after = PortTotals {
            rx_packets: 1000,
            rx_bytes: 64_000,
            tx_packets: 500,
            tx_bytes: 32_000,
            ..PortTotals::default()
        };
        let r = Rates::between(&before, &after, Duration::from_millis(500));
        assert_eq!(
            (r.rx_pps, r.rx_bps, r.tx_pps, r.tx_bps),
            (2000, 1_024_000, 1000, 512_000)
        );
        assert_eq!(
            Rates::between(&before, &after, Duration::ZERO),
            Rates::default()
        );
        // A counter that went backwards (a reading race) gives 0, not a wrap.
        assert_eq!(
            Rates::between(&after, &before, Duration::from_secs(1)).rx_pps,
            0
        );
    }
}
