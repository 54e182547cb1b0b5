//! A fixed AF_XDP workload for counting the kernel VF backend's own instructions per packet
//! with callgrind: `scripts/bench-ipp` runs it under valgrind, collecting only inside
//! `afxdp_tx_burst` and `afxdp_rx_burst` (the kernel's share, in the system calls, is not
//! counted), and divides by the packet count this program prints.
//!
//! It makes a network namespace with a veth pair (`vf0`, the VF, and `peer0`), so it needs
//! root. Transmit sends frames from the queue's own pool (in place, as a forwarder does) in
//! bursts of 32 and waits for their completion; receive has the peer send 32 frames through a
//! packet socket, which on veth reaches the socket's ring within the send, then reads them.
//!
//! Usage: `afxdp_ipp <tx|rx> <frame bytes 60..=1514> <frames> [native|generic]`.

use std::hint::black_box;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use packet::netdev;
use packet::{MacAddr, Packet, PortQueue};
use vf::kernel::netns::{self, in_new_namespace};
use vf::kernel::{KernelVf, KernelVfConfig, XdpConfig, XdpMode, XdpVfQueue};
use vf::port::{VfPort, VfQueue};

#[inline(never)]
fn afxdp_tx_burst(queue: &mut XdpVfQueue, frames: &mut Vec<Packet>) -> usize {
    let taken = queue.tx_burst(black_box(frames));
    queue.tx_pending();
    taken
}

#[inline(never)]
fn afxdp_rx_burst(queue: &mut XdpVfQueue, out: &mut Vec<Packet>) -> usize {
    queue.rx_burst(black_box(out), 64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: afxdp_ipp <tx|rx> <frame bytes 60..=1514> <frames> [native|generic]";
    let (dir, len, count, mode) = match args.as_slice() {
        [_, dir, len, count] => (dir.clone(), len, count, XdpMode::Native),
        [_, dir, len, count, mode] => (dir.clone(), len, count, mode.parse().expect(usage)),
        _ => panic!("{usage}"),
    };
    let len: usize = len.parse().expect(usage);
    let count: u64 = count.parse().expect(usage);
    assert!((60..=1514).contains(&len), "{usage}");
    assert!(netns::runnable("afxdp_ipp"), "afxdp_ipp needs root and ip");
    let done = in_new_namespace("afxdp_ipp", move || run(&dir, len, count, mode));
    println!("packets {done}");
}

fn run(dir: &str, len: usize, count: u64, mode: XdpMode) -> u64 {
    let mac = MacAddr([0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0e]);
    let _ = std::fs::write("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    netns::veth("vf0", "peer0", mac);
    let config = KernelVfConfig {
        mtu: 1500,
        mac,
        ..KernelVfConfig::default()
    };
    let xdp = XdpConfig {
        mode,
        ..XdpConfig::default()
    };
    let (port, mut queues) = KernelVf::open_xdp("vf0", config, xdp).expect("AF_XDP opens");
    let queue = &mut queues[0];
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut frame = vec![0x5au8; len];
    frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    let mut done = 0u64;
    let mut out = Vec::with_capacity(64);
    match dir {
        "tx" => {
            frame[0..6].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
            frame[6..12].copy_from_slice(&mac.0);
            let pool = queue.pool().clone();
            let mut burst = Vec::with_capacity(32);
            while done < count {
                while done + (burst.len() as u64) < count && burst.len() < 32 {
                    burst.push(pool.alloc_from(&frame).expect("pool"));
                }
                done += afxdp_tx_burst(queue, &mut burst) as u64;
                while queue.tx_pending() > 0 {
                    assert!(Instant::now() < deadline, "transmits stalled");
                }
            }
        }
        "rx" => {
            frame[0..6].copy_from_slice(&mac.0);
            frame[6..12].copy_from_slice(&[2, 9, 9, 9, 9, 9]);
            let peer = netdev::open_packet_socket("peer0").expect("peer socket");
            let mut injected = 0;
            while done < count {
                let n = (count - injected).min(32);
                for _ in 0..n {
                    netdev::send_frame(peer.as_fd(), &frame).expect("peer send");
                }
                injected += n;
                while done < injected {
                    done += afxdp_rx_burst(queue, &mut out) as u64;
                    out.clear();
                    assert!(Instant::now() < deadline, "the queue stalled");
                }
            }
        }
        _ => panic!("bad direction"),
    }
    let stats = port.stats();
    assert_eq!(stats.tx_lost + stats.rx_no_buffer, 0, "{stats:?}");
    port.release().expect("release");
    done
}
