//! The kernel VF backend's transports over the same veth in the same run: AF_XDP (native and
//! generic XDP, copy mode: veth has no zero-copy) beside the AF_PACKET baseline.
//!
//! Each runs in a network namespace of its own with a veth pair: `vf0` (the VF, the backend on
//! it) and `peer0`. Receive: a thread on `peer0` sends 64-byte frames through a packet socket
//! as fast as it can while the backend's queue is polled; the rate is the frames the queue
//! handed out over the time. On veth the whole receive path (veth, XDP or the stack's packet
//! tap, the copy) runs in the sender's context, so the rate is what sender and path sustain
//! together — the same sender for every transport. Transmit: the queue is given 64-byte frames
//! in bursts of 32 as fast as it takes them; the rate is the frames the kernel completed (for
//! AF_PACKET: accepted) over the time. Each line shows its ratio to AF_PACKET's in the same
//! direction. Seconds are measured here only; tests never assert on them.
//!
//! Run (root, `ip`): `cargo bench -p integration --bench kernel_vf` (add `-- --quick` for a
//! short run).

use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use packet::netdev;
use packet::{MacAddr, Packet, Pool, SharedMemory};
use vf::kernel::netns::{self, in_new_namespace};
use vf::kernel::{KernelVf, KernelVfConfig, XdpConfig, XdpMode};
use vf::port::VfPort;

const MAC: MacAddr = MacAddr([0x00, 0x15, 0x5d, 0x0b, 0x0c, 0x0d]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x03]);
const BURST: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Packet,
    Xdp(XdpMode),
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Packet => "AF_PACKET",
            Transport::Xdp(XdpMode::Native) => "AF_XDP native",
            Transport::Xdp(_) => "AF_XDP generic",
        }
    }
}

fn frame(dst: MacAddr, src: MacAddr) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f
}

/// Opens the VF with `transport`: the port and its queue.
fn open(transport: Transport) -> (Box<dyn VfPort>, Box<dyn vf::port::VfQueue>) {
    let config = KernelVfConfig {
        mtu: 1500,
        mac: MAC,
        pool_buffers: 4096,
        // The bench's frames are not the stack's business either way.
        fence_stack: false,
        ..KernelVfConfig::default()
    };
    match transport {
        Transport::Packet => {
            let (port, mut queues) = KernelVf::open("vf0", config).expect("AF_PACKET");
            (Box::new(port), Box::new(queues.remove(0)))
        }
        Transport::Xdp(mode) => {
            let xdp = XdpConfig {
                mode,
                ..XdpConfig::default()
            };
            let (port, mut queues) = KernelVf::open_xdp("vf0", config, xdp).expect("AF_XDP");
            (Box::new(port), Box::new(queues.remove(0)))
        }
    }
}

/// Frames per second the queue received from a peer sending as fast as it can, and the
/// peer's rate.
fn receive(transport: Transport, seconds: f64) -> (f64, f64) {
    let (port, mut queue) = open(transport);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let fd = netdev::open_packet_socket("peer0").expect("peer socket");
            let f = frame(MAC, PEER_MAC);
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..BURST {
                    if netdev::send_frame(fd.as_fd(), &f).is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let mut burst = Vec::with_capacity(BURST);
    // Warm up: the first frames through.
    let warm = Instant::now() + Duration::from_millis(200);
    while Instant::now() < warm {
        queue.rx_burst(&mut burst, BURST);
        burst.clear();
    }
    let start = Instant::now();
    let offered_before = sent.load(Ordering::Relaxed);
    let mut received = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        received += queue.rx_burst(&mut burst, BURST) as u64;
        burst.clear();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let offered = sent.load(Ordering::Relaxed) - offered_before;
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    port.release().unwrap();
    (received as f64 / elapsed, offered as f64 / elapsed)
}

/// Frames per second the queue sent (completed), given 64-byte frames as fast as it takes
/// them.
fn transmit(transport: Transport, seconds: f64) -> (f64, f64) {
    let (port, mut queue) = open(transport);
    let pool = Pool::new(SharedMemory::anonymous(4096 * 2048).unwrap(), 2048).unwrap();
    let f = frame(PEER_MAC, MAC);
    let mut burst: Vec<Packet> = Vec::with_capacity(BURST);
    let run = |queue: &mut Box<dyn vf::port::VfQueue>, burst: &mut Vec<Packet>, until: Instant| {
        while Instant::now() < until {
            while burst.len() < BURST {
                match pool.alloc_from(&f) {
                    Some(p) => burst.push(p),
                    None => break,
                }
            }
            queue.tx_burst(burst);
            queue.tx_pending();
        }
    };
    run(
        &mut queue,
        &mut burst,
        Instant::now() + Duration::from_millis(200),
    );
    let before = port.stats().tx_packets;
    let start = Instant::now();
    run(
        &mut queue,
        &mut burst,
        start + Duration::from_secs_f64(seconds),
    );
    let elapsed = start.elapsed().as_secs_f64();
    let sent = port.stats().tx_packets - before;
    port.release().unwrap();
    let pps = sent as f64 / elapsed;
    (pps, pps)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `cargo bench` passes --bench; anything else that is not ours is ignored.
    let seconds = if quick { 1.0 } else { 3.0 };
    if !netns::runnable("kernel_vf bench") {
        return;
    }
    let rows = in_new_namespace("kernel_vf_bench", move || {
        for conf in ["all", "default"] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
        }
        netns::veth("vf0", "peer0", MAC);
        let transports = [
            Transport::Packet,
            Transport::Xdp(XdpMode::Native),
            Transport::Xdp(XdpMode::Generic),
        ];
        let mut rows = Vec::new();
        for (dir, measure) in [
            ("rx", receive as fn(Transport, f64) -> (f64, f64)),
            ("tx", transmit),
        ] {
            for t in transports {
                rows.push((dir, t, measure(t, seconds)));
            }
        }
        rows
    });
    println!("kernel VF transports over one veth, 64-byte frames, one queue, {seconds} s each");
    println!(
        "{:<4} {:<16} {:>12} {:>14} {:>12}",
        "dir", "transport", "pps", "vs AF_PACKET", "offered pps"
    );
    for (dir, t, (pps, offered)) in &rows {
        let base = rows
            .iter()
            .find(|(d, b, _)| d == dir && *b == Transport::Packet)
            .map(|r| r.2.0)
            .unwrap_or(f64::NAN);
        println!(
            "{dir:<4} {:<16} {pps:>12.0} {:>14.2} {offered:>12.0}",
            t.name(),
            pps / base
        );
    }
}
