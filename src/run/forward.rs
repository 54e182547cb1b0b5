//! `hvnet run --forward MODE`: testpmd's forwarding modes over one port (frames go back out
//! of the port they came in on) or two (`--peer`: what one receives the other sends).

use packet::{MacAddr, Packet};

use super::capture::Capture;
use super::config::ForwardMode;
use super::poller::{BURST, Lane, Scratch};

/// The source address txonly frames carry (testpmd's: 198.18.0.1, RFC 2544's range).
const TX_SOURCE: [u8; 4] = [198, 18, 0, 1];
/// Their destination (testpmd's: 198.18.0.2).
const TX_DESTINATION: [u8; 4] = [198, 18, 0, 2];
/// UDP ports of txonly frames (testpmd's: 9, discard).
const TX_UDP_PORT: u16 = 9;

/// One poller's forwarding work.
#[derive(Debug)]
pub struct Forwarder {
    mode: ForwardMode,
    eth_peer: MacAddr,
    /// The frame txonly sends (without the source MAC, set per port).
    template: Vec<u8>,
}

impl Forwarder {
    /// A forwarder for `mode`; `tx_size` is txonly's frame size (checked by the config).
    pub fn new(mode: ForwardMode, eth_peer: MacAddr, tx_size: u16) -> Self {
        Self {
            mode,
            eth_peer,
            template: udp_frame(eth_peer, usize::from(tx_size)),
        }
    }

    /// One round over `lanes` (one lane, or one of each port): every stream moves at most a
    /// burst. While `draining`, what arrives is only received and counted. Returns how many
    /// frames moved.
    pub fn round(
        &self,
        lanes: &mut [Lane],
        scratch: &mut Scratch,
        capture: Option<&Capture>,
        draining: bool,
    ) -> usize {
        if draining {
            // Generated frames never offered are not frames of the run.
            scratch.pending.clear();
            return lanes.iter_mut().map(|l| l.drain(scratch, capture)).sum();
        }
        match lanes {
            [only] => self.stream(only, None, scratch, capture),
            [a, b] => {
                self.stream(a, Some(b), scratch, capture)
                    + self.stream(b, Some(a), scratch, capture)
            }
            _ => 0,
        }
    }

    /// Sends one burst of txonly frames on every lane (`--tx-first`); what a port does not
    /// take is freed (it was never a frame of the run).
    pub fn seed(&self, lanes: &mut [Lane], scratch: &mut Scratch, capture: Option<&Capture>) {
        for lane in lanes {
            self.generate(lane, &mut scratch.burst);
            lane.offer(scratch, capture);
            scratch.burst.clear();
        }
    }

    /// The stream from `from` to `to` (`None`: back out of `from`).
    fn stream(
        &self,
        from: &mut Lane,
        to: Option<&mut Lane>,
        scratch: &mut Scratch,
        capture: Option<&Capture>,
    ) -> usize {
        if self.mode == ForwardMode::Txonly {
            // Generated frames the port does not take now wait for the next round: only
            // frames a port received can be dropped.
            let out = to.unwrap_or(from);
            std::mem::swap(&mut scratch.burst, &mut scratch.pending);
            self.generate(out, &mut scratch.burst);
            let offered = scratch.burst.len();
            out.offer(scratch, capture);
            let sent = offered - scratch.burst.len();
            std::mem::swap(&mut scratch.burst, &mut scratch.pending);
            // What arrives is received, counted and freed, so the port's buffers stay free.
            let received = out.receive(scratch, capture);
            scratch.burst.clear();
            return sent + received;
        }
        let n = from.receive(scratch, capture);
        if n == 0 {
            return 0;
        }
        let out = match to {
            Some(to) => to,
            None => from,
        };
        match self.mode {
            ForwardMode::Rxonly => {
                scratch.burst.clear();
                return n;
            }
            ForwardMode::Mac => {
                for p in &mut scratch.burst {
                    set_macs(p, self.eth_peer, out.mac);
                }
            }
            ForwardMode::Macswap => {
                for p in &mut scratch.burst {
                    swap_macs(p);
                }
            }
            ForwardMode::Io | ForwardMode::Txonly => {}
        }
        out.transmit(scratch, capture);
        n
    }

    /// Fills `burst` with up to [`BURST`] copies of the txonly frame from `lane`'s pool.
    fn generate(&self, lane: &Lane, burst: &mut Vec<Packet>) {
        while burst.len() < BURST {
            let Some(mut p) = lane.pool.alloc() else {
                break;
            };
            if self.template.len() > p.max_len() {
                break;
            }
            p.set_len(self.template.len());
            let data = p.data_mut();
            data.copy_from_slice(&self.template);
            data[6..12].copy_from_slice(&lane.mac.0);
            burst.push(p);
        }
    }
}

/// Sets the destination and source MAC of `p` (a frame shorter than a header is left alone).
fn set_macs(p: &mut Packet, dst: MacAddr, src: MacAddr) {
    if p.len() >= 14 {
        let data = p.data_mut();
        data[..6].copy_from_slice(&dst.0);
        data[6..12].copy_from_slice(&src.0);
    }
}

/// Swaps the destination and source MAC of `p` (a frame shorter than a header is left
/// alone).
fn swap_macs(p: &mut Packet) {
    if p.len() >= 14 {
        let data = p.data_mut();
        let (dst, rest) = data.split_at_mut(6);
        dst.swap_with_slice(&mut rest[..6]);
    }
}

/// A UDP/IPv4 frame of `size` bytes (header to payload end) to `dst`, source MAC zero, zero
/// payload, valid IPv4 checksum (UDP checksum 0: none, as IPv4 allows).
pub fn udp_frame(dst: MacAddr, size: usize) -> Vec<u8> {
    let mut f = vec![0u8; size.max(42)];
    f[..6].copy_from_slice(&dst.0);
    f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip_len = (f.len() - 14) as u16;
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&TX_SOURCE);
    ip[16..20].copy_from_slice(&TX_DESTINATION);
    let checksum = ipv4_checksum(ip);
    ip[10..12].copy_from_slice(&checksum.to_be_bytes());
    let udp_len = ip_len - 20;
    let udp = &mut f[34..42];
    udp[0..2].copy_from_slice(&TX_UDP_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&TX_UDP_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    f
}

/// The ones' complement sum of an IPv4 header (with its checksum field zero).
fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use integration::harness::failover::{FailoverRig, FailoverRigConfig};
    use proptest::prelude::*;

    use super::*;
    use crate::run::poller::Lane;
    use crate::run::stats::QueueCounters;

    /// The first queue of `rig` as port `port`'s lane, taken out of the rig.
    fn lane(rig: &mut FailoverRig, port: usize) -> Lane {
        Lane {
            port,
            queue: rig.queues.remove(0),
            counters: Arc::new(QueueCounters::default()),
            mac: rig.port.mac(),
            pool: rig.port.pool().clone(),
        }
    }

    fn one_queue() -> FailoverRig {
        let mut config = FailoverRigConfig::default();
        config.nic.queues = 1;
        FailoverRig::start(config).expect("rig")
    }

    #[test]
    fn two_ports_forward_each_others_frames_with_the_macs_each_mode_sets() {
        for mode in [ForwardMode::Io, ForwardMode::Mac, ForwardMode::Macswap] {
            let (mut a, mut b) = (one_queue(), one_queue());
            let peer = MacAddr([2, 0, 0, 0, 0, 9]);
            let forwarder = Forwarder::new(mode, peer, 64);
            let mut lanes = [lane(&mut a, 0), lane(&mut b, 1)];
            let mut scratch = Scratch::new();
            let mut frame = udp_frame(a.port.mac(), 100);
            frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
            const FRAMES: usize = 50;
            for _ in 0..FRAMES {
                assert!(a.host.external().inject(&frame));
            }
            let mut out = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(30);
            while out.len() < FRAMES && Instant::now() < deadline {
                forwarder.round(&mut lanes, &mut scratch, None, false);
                while let Some((_, f)) = b.host.external().try_recv() {
                    out.push(f);
                }
                std::thread::yield_now();
            }
            assert_eq!(out.len(), FRAMES, "{mode:?}");
            // Nothing came back out of the port it arrived on.
            assert!(a.host.external().try_recv().is_none(), "{mode:?}");
            let (dst, src) = match mode {
                ForwardMode::Io => (a.port.mac().0, [2, 0, 0, 0, 0, 1]),
                ForwardMode::Mac => (peer.0, b.port.mac().0),
                _ => ([2, 0, 0, 0, 0, 1], a.port.mac().0),
            };
            for f in &out {
                assert_eq!((&f[..6], &f[6..12]), (&dst[..], &src[..]), "{mode:?}");
                assert_eq!(&f[12..], &frame[12..], "{mode:?}");
            }
            let [from, to] = &lanes;
            let get = |c: &QueueCounters| c.clone_totals();
            assert_eq!(
                get(&from.counters).0,
                FRAMES as u64,
                "{mode:?} received on port 0"
            );
            assert_eq!(
                get(&to.counters).1,
                FRAMES as u64,
                "{mode:?} sent on port 1"
            );
        }
    }

    #[test]
    fn the_txonly_frame_is_a_valid_udp_datagram() {
        let f = udp_frame(MacAddr([2, 0, 0, 0, 0, 1]), 64);
        assert_eq!(f.len(), 64);
        assert_eq!(&f[..6], &[2, 0, 0, 0, 0, 1]);
        assert_eq!(u16::from_be_bytes([f[12], f[13]]), 0x0800);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 50); // IPv4 total length
        assert_eq!(
            ipv4_checksum(&f[14..34]),
            0,
            "a header with its checksum sums to 0"
        );
        assert_eq!(u16::from_be_bytes([f[38], f[39]]), 30); // UDP length
        assert_eq!(&f[26..30], &TX_SOURCE);
    }

    #[test]
    fn the_checksum_matches_a_known_header() {
        // RFC 1071's worked example style: a header whose checksum is known (0xb861).
        let header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(ipv4_checksum(&header), 0xb861);
    }

    proptest! {
        #[test]
        fn every_size_gives_a_frame_of_that_size_whose_lengths_agree(size in 60usize..=9014) {
            let f = udp_frame(MacAddr([2, 0, 0, 0, 0, 0]), size);
            prop_assert_eq!(f.len(), size);
            prop_assert_eq!(usize::from(u16::from_be_bytes([f[16], f[17]])), size - 14);
            prop_assert_eq!(usize::from(u16::from_be_bytes([f[38], f[39]])), size - 34);
            prop_assert_eq!(ipv4_checksum(&f[14..34]), 0);
        }
    }
}
