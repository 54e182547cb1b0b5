//! The kernel VF over a veth pair in a network namespace of the test's own (see [`netns`]):
//! `vf0` is the VF (with the synthetic NIC's MAC), `peer0` the far end, where the test reads
//! and writes frames through its own packet socket.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use packet::netdev;
use packet::{MacAddr, Packet, Pool, PortQueue, SharedMemory};

use super::netns::{self, in_new_namespace, ip};
use super::*;
use crate::port::{VfEvent, VfPort, VfQueue};

const MAC: MacAddr = MacAddr([0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0c]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
const ETHERTYPE: u16 = 0x88b5;
const DEADLINE: Duration = Duration::from_secs(10);
const VF: &str = "vf0";
const PEER: &str = "peer0";

/// Runs `body` in a namespace of its own with the veth pair made, if the machine allows.
fn with_veth(test: &'static str, body: impl FnOnce() + Send + 'static) {
    if !netns::runnable(test) {
        return;
    }
    in_new_namespace(test, move || {
        netns::veth(VF, PEER, MAC);
        body();
    });
}

/// A test frame: `dst`, `src`, the test's EtherType, `seq`, then filler up to `len` bytes.
fn frame(dst: MacAddr, src: MacAddr, seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend((0..len.saturating_sub(f.len())).map(|i| (i as u8) ^ (seq as u8)));
    f
}

fn is_test_frame(bytes: &[u8]) -> bool {
    bytes.len() >= 14 && bytes[12..14] == ETHERTYPE.to_be_bytes()
}

fn open(mtu: usize) -> (KernelVfPort, KernelVfQueue) {
    let config = KernelVfConfig {
        mtu,
        mac: MAC,
        pool_buffers: 256,
        ..KernelVfConfig::default()
    };
    let (port, mut queues) = KernelVf::open(VF, config).expect("opening the kernel VF");
    assert_eq!(queues.len(), 1);
    (port, queues.pop().unwrap())
}

fn peer_socket() -> OwnedFd {
    let fd = netdev::open_packet_socket(PEER).unwrap();
    netdev::enable_packet_auxdata(fd.as_fd()).unwrap();
    fd
}

/// The next test frame the peer receives (with its out-of-band VLAN tag), within the deadline.
fn peer_recv(fd: &OwnedFd) -> (Vec<u8>, Option<u16>) {
    let deadline = Instant::now() + DEADLINE;
    let mut buf = vec![0u8; 65_536];
    loop {
        match netdev::recv_frame_vlan(fd.as_fd(), &mut buf) {
            Ok((n, tci)) if is_test_frame(&buf[..n]) => return (buf[..n].to_vec(), tci),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("peer receive: {e}"),
        }
        assert!(Instant::now() < deadline, "the peer received nothing");
        netdev::wait_readable(fd.as_fd(), Duration::from_millis(100)).unwrap();
    }
}

/// Receives through the VF until `n` test frames arrived (other frames, IPv6 neighbour
/// discovery for instance, are dropped), within the deadline.
fn rx(queue: &mut KernelVfQueue, n: usize) -> Vec<Packet> {
    let deadline = Instant::now() + DEADLINE;
    let mut got = Vec::new();
    let mut burst = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} frames arrived",
            got.len()
        );
        if queue.rx_burst(&mut burst, 32) == 0 {
            std::thread::yield_now();
        }
        got.extend(burst.drain(..).filter(|p| is_test_frame(p.data())));
    }
    got
}

/// Calls `service` until it reports something, within the deadline.
fn next_events(port: &KernelVfPort) -> Vec<VfEvent> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let events = port.service(Duration::from_millis(200));
        if !events.is_empty() {
            return events;
        }
        assert!(Instant::now() < deadline, "no VF event");
    }
}

fn tx_pool() -> Pool {
    Pool::new(SharedMemory::anonymous(64 * 4096).unwrap(), 4096).unwrap()
}

#[test]
fn frames_move_both_ways_with_their_bytes_and_in_order() {
    with_veth("kernel_vf_frames_both_ways", || {
        let (port, mut queue) = open(1500);
        assert_eq!(port.mac(), MAC);
        assert_eq!(port.queue_count(), 1);
        assert_eq!(queue.index(), 0);
        assert!(port.link_up(), "both ends are up");
        let peer = peer_socket();
        let sent: Vec<Vec<u8>> = (0..100)
            .map(|seq| frame(MAC, PEER_MAC, seq, 60 + seq as usize * 14))
            .collect();
        for f in &sent {
            assert_eq!(netdev::send_frame(peer.as_fd(), f).unwrap(), f.len());
        }
        let got = rx(&mut queue, sent.len());
        for (p, f) in got.iter().zip(&sent) {
            assert_eq!(p.data(), &f[..]);
            assert!(p.is_from(queue.pool()));
            assert_eq!(p.meta.vlan_tci, None);
        }
        drop(got);
        let pool = tx_pool();
        let mut frames: Vec<Packet> = (0..50)
            .map(|seq| pool.alloc_from(&frame(PEER_MAC, MAC, seq, 1514)).unwrap())
            .collect();
        let expected: Vec<Vec<u8>> = frames.iter().map(|p| p.data().to_vec()).collect();
        let mut taken = 0;
        let deadline = Instant::now() + DEADLINE;
        while !frames.is_empty() {
            assert!(Instant::now() < deadline, "tx_burst stopped taking frames");
            taken += queue.tx_burst(&mut frames);
        }
        assert_eq!(taken, 50);
        assert_eq!(queue.tx_pending(), 0);
        for f in &expected {
            assert_eq!(peer_recv(&peer).0, *f);
        }
        let stats = port.stats();
        assert!(stats.rx_packets >= 100, "{stats:?}");
        assert_eq!(stats.tx_packets, 50);
        assert_eq!(stats.tx_bytes, 50 * 1514);
        assert_eq!((stats.tx_lost, stats.rx_frame_errors), (0, 0));
        port.release().unwrap();
    });
}

#[test]
fn a_vf_without_the_nics_mac_is_refused_and_left_as_it_was() {
    with_veth("kernel_vf_wrong_mac", || {
        ip(&["link", "set", VF, "down"]);
        ip(&["link", "set", VF, "address", "02:00:00:00:00:99"]);
        let e = KernelVf::open(
            VF,
            KernelVfConfig {
                mac: MAC,
                ..KernelVfConfig::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, KernelVfError::MacMismatch { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "vf0 has MAC 02:00:00:00:00:99, not the synthetic NIC's 00:15:5d:0a:0b:0c: not its VF"
        );
        assert!(!netdev::interface_flags(VF).unwrap().up(), "left down");
        let missing = KernelVf::open("vf-none", KernelVfConfig::default()).unwrap_err();
        assert!(missing.to_string().contains("vf-none"), "{missing}");
    });
}

#[test]
fn open_brings_a_down_vf_up_with_the_nics_mtu_and_release_restores_it() {
    with_veth("kernel_vf_restore", || {
        ip(&["link", "set", VF, "down"]);
        ip(&["link", "set", VF, "mtu", "1400"]);
        let (port, mut queue) = open(1500);
        assert!(netdev::interface_flags(VF).unwrap().up());
        assert_eq!(netdev::interface_mtu(VF).unwrap(), 1500);
        port.release().unwrap();
        assert!(
            !netdev::interface_flags(VF).unwrap().up(),
            "brought down again"
        );
        assert_eq!(netdev::interface_mtu(VF).unwrap(), 1400);
        port.release().unwrap();
        // Released: the queue is inert, frames offered stay with the caller.
        let pool = tx_pool();
        let mut frames = vec![pool.alloc_from(&frame(PEER_MAC, MAC, 0, 60)).unwrap()];
        assert_eq!(queue.tx_burst(&mut frames), 0);
        assert_eq!(frames.len(), 1);
        assert_eq!(queue.rx_burst(&mut Vec::new(), 32), 0);
        assert!(port.service(Duration::ZERO).is_empty());
        // An interface that was up is left up.
        ip(&["link", "set", VF, "up"]);
        let (port, _queue) = open(1400);
        port.release().unwrap();
        assert!(netdev::interface_flags(VF).unwrap().up());
    });
}

#[test]
fn the_kernel_stack_is_fenced_off_while_open_and_the_fence_goes_at_release() {
    with_veth("kernel_vf_fence", || {
        // IPv4 packets this namespace's stack took in (this thread's namespace: thread-self).
        let ip_in = || -> u64 {
            let snmp = std::fs::read_to_string("/proc/thread-self/net/snmp").unwrap();
            let mut ip = snmp.lines().filter(|l| l.starts_with("Ip:"));
            let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
            let at = names
                .split_whitespace()
                .position(|n| n == "InReceives")
                .unwrap();
            values.split_whitespace().nth(at).unwrap().parse().unwrap()
        };
        let ipv4 = |seq: u32| {
            let mut f = frame(MAC, PEER_MAC, seq, 60);
            f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
            f
        };
        // Sends `n` IPv4 frames to the VF and waits until hvnet received them all; how many
        // the stack took in meanwhile.
        let send = |queue: &mut KernelVfQueue, n: u32| -> u64 {
            let peer = peer_socket();
            let before = ip_in();
            for seq in 0..n {
                netdev::send_frame(peer.as_fd(), &ipv4(seq)).unwrap();
            }
            let (mut got, deadline) = (0, Instant::now() + DEADLINE);
            while got < n as usize {
                let mut burst = Vec::new();
                queue.rx_burst(&mut burst, 32);
                got += burst.iter().filter(|p| p.data()[12..14] == [8, 0]).count();
                assert!(Instant::now() < deadline, "hvnet received {got} of {n}");
            }
            ip_in() - before
        };
        let index = netdev::interface_index(VF).unwrap();
        let (port, mut queue) = open(1500);
        assert!(fence::is_raised(index));
        assert_eq!(
            send(&mut queue, 20),
            0,
            "the stack took frames through the fence"
        );
        port.release().unwrap();
        assert!(!fence::is_raised(index));
        // Without the fence the same frames reach the stack (the test can fail).
        let config = KernelVfConfig {
            mac: MAC,
            fence_stack: false,
            ..KernelVfConfig::default()
        };
        let (port, mut queues) = KernelVf::open(VF, config).unwrap();
        assert!(!fence::is_raised(index));
        assert_eq!(
            send(&mut queues[0], 20),
            20,
            "an unfenced VF feeds the stack"
        );
        port.release().unwrap();
        // A VF deleted under the port: its table goes at release all the same.
        let (port, _queue) = open(1500);
        assert!(fence::is_raised(index));
        ip(&["link", "del", VF]);
        port.release().unwrap();
        assert!(!fence::is_raised(index));
    });
}

#[test]
fn the_peer_going_down_is_link_down_and_coming_back_is_link_up() {
    with_veth("kernel_vf_link", || {
        let (port, _queue) = open(1500);
        assert!(port.link_up());
        assert!(port.service(Duration::ZERO).is_empty(), "nothing changed");
        ip(&["link", "set", PEER, "down"]);
        assert_eq!(next_events(&port), vec![VfEvent::LinkDown]);
        assert!(!port.link_up());
        ip(&["link", "set", PEER, "up"]);
        assert_eq!(next_events(&port), vec![VfEvent::LinkUp]);
        assert!(port.link_up());
        // A rename (udev names a VF after it appeared) is followed, not taken for a removal.
        ip(&["link", "set", VF, "down"]);
        assert_eq!(next_events(&port), vec![VfEvent::LinkDown]);
        ip(&["link", "set", VF, "name", "vf-renamed"]);
        ip(&["link", "set", "vf-renamed", "up"]);
        assert_eq!(next_events(&port), vec![VfEvent::LinkUp]);
        assert_eq!(port.ifname(), "vf-renamed");
        port.release().unwrap();
    });
}

#[test]
fn deleting_the_vf_is_removed_once_and_its_frames_stay_with_the_caller() {
    with_veth("kernel_vf_removed", || {
        let (port, mut queue) = open(1500);
        let index = port.ifindex();
        ip(&["link", "del", VF]);
        assert_eq!(next_events(&port), vec![VfEvent::Removed]);
        assert!(!port.link_up());
        assert!(port.service(Duration::from_millis(50)).is_empty(), "once");
        assert_eq!(netdev::interface_name(index).unwrap(), None);
        let pool = tx_pool();
        let mut frames: Vec<Packet> = (0..4)
            .map(|seq| pool.alloc_from(&frame(PEER_MAC, MAC, seq, 60)).unwrap())
            .collect();
        // The socket's device is gone: nothing is taken (an error pending on the socket may
        // be reported by the receive first; either way no frame is lost).
        let _ = queue.rx_burst(&mut Vec::new(), 32);
        assert_eq!(queue.tx_burst(&mut frames), 0);
        assert_eq!(frames.len(), 4);
        port.stop(Duration::from_secs(1)).unwrap();
        assert_eq!(queue.tx_pending(), 0);
        port.release().unwrap();
        assert_eq!(port.stats().tx_lost, 0);
    });
}

#[test]
fn the_same_name_on_another_interface_is_still_a_removal() {
    with_veth("kernel_vf_name_reused", || {
        let (port, _queue) = open(1500);
        ip(&["link", "del", VF]);
        netns::veth(VF, PEER, MAC);
        assert_eq!(next_events(&port), vec![VfEvent::Removed]);
        port.release().unwrap();
        assert!(
            netdev::interface_flags(VF).unwrap().up(),
            "the new interface is not touched"
        );
    });
}

#[test]
fn frames_over_the_mtu_are_dropped_and_counted_both_ways() {
    with_veth("kernel_vf_oversize", || {
        let (port, mut queue) = open(1500);
        // The kernel itself drops what exceeds the interface's MTU; raise it under the port
        // so that oversize frames reach the socket.
        ip(&["link", "set", VF, "mtu", "9000"]);
        ip(&["link", "set", PEER, "mtu", "9000"]);
        let peer = peer_socket();
        // Over the MTU but within a buffer; over a buffer (truncated); a good frame; a tagged
        // frame of 1518 bytes, which the kernel untags (1514 then: it fits).
        let mut tagged = frame(MAC, PEER_MAC, 4, 1518);
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
        tagged.truncate(1518);
        for f in [
            frame(MAC, PEER_MAC, 1, 1530),
            frame(MAC, PEER_MAC, 2, 4000),
            frame(MAC, PEER_MAC, 3, 1514),
            tagged,
        ] {
            netdev::send_frame(peer.as_fd(), &f).unwrap();
        }
        let got = rx(&mut queue, 2);
        assert_eq!(got[0].data(), &frame(MAC, PEER_MAC, 3, 1514)[..]);
        assert_eq!(got[1].len(), 1514);
        assert_eq!(got[1].meta.vlan_tci, Some(7));
        assert_eq!(port.stats().rx_frame_errors, 2);
        // Transmit: the port's MTU is still 1500, whatever the interface's is now.
        let pool = tx_pool();
        let mut frames = vec![
            pool.alloc_from(&frame(PEER_MAC, MAC, 10, 1515)).unwrap(),
            pool.alloc_from(&[0u8; 10]).unwrap(),
            pool.alloc_from(&frame(PEER_MAC, MAC, 11, 200)).unwrap(),
        ];
        assert_eq!(queue.tx_burst(&mut frames), 3);
        assert_eq!(peer_recv(&peer).0, frame(PEER_MAC, MAC, 11, 200));
        let stats = port.stats();
        assert_eq!((stats.tx_lost, stats.tx_packets), (2, 1), "{stats:?}");
        port.release().unwrap();
    });
}

#[test]
fn a_vlan_tag_asked_for_out_of_band_is_sent_in_the_frame() {
    with_veth("kernel_vf_vlan_tx", || {
        let (port, mut queue) = open(1500);
        let peer = peer_socket();
        let pool = tx_pool();
        let mut p = pool.alloc_from(&frame(PEER_MAC, MAC, 1, 1514)).unwrap();
        p.meta.vlan_tci = Some(0x2005);
        let mut frames = vec![p];
        assert_eq!(queue.tx_burst(&mut frames), 1);
        // The peer's kernel untags it again: the same frame, the tag beside it.
        let (bytes, tci) = peer_recv(&peer);
        assert_eq!(bytes, frame(PEER_MAC, MAC, 1, 1514));
        assert_eq!(tci, Some(0x2005));
        assert_eq!(port.stats().tx_bytes, 1518);
        port.release().unwrap();
    });
}

#[test]
fn a_stopped_vf_hands_out_and_takes_nothing() {
    with_veth("kernel_vf_stop", || {
        let (port, mut queue) = open(1500);
        let peer = peer_socket();
        netdev::send_frame(peer.as_fd(), &frame(MAC, PEER_MAC, 1, 60)).unwrap();
        port.stop(Duration::from_secs(1)).unwrap();
        assert_eq!(queue.rx_burst(&mut Vec::new(), 32), 0);
        let pool = tx_pool();
        let mut frames = vec![pool.alloc_from(&frame(PEER_MAC, MAC, 2, 60)).unwrap()];
        assert_eq!(queue.tx_burst(&mut frames), 0);
        assert_eq!(frames.len(), 1);
        assert_eq!(queue.tx_pending(), 0);
        port.release().unwrap();
    });
}

#[test]
fn a_full_socket_queue_is_counted_as_no_buffer() {
    with_veth("kernel_vf_no_buffer", || {
        let config = KernelVfConfig {
            mac: MAC,
            socket_buffer: 0,
            pool_buffers: 8,
            ..KernelVfConfig::default()
        };
        let (port, mut queue) = KernelVf::open(VF, config).unwrap();
        let queue = &mut queue[0];
        let peer = netdev::open_packet_socket(PEER).unwrap();
        // The smallest receive queue the kernel allows holds a few frames: the rest are
        // dropped by the kernel and counted.
        for seq in 0..2000 {
            netdev::send_frame(peer.as_fd(), &frame(MAC, PEER_MAC, seq, 1514)).unwrap();
        }
        let deadline = Instant::now() + DEADLINE;
        let mut received = 0;
        let mut burst = Vec::new();
        loop {
            received += queue.rx_burst(&mut burst, 64) as u64;
            burst.clear();
            let stats = port.stats();
            if stats.rx_packets + stats.rx_no_buffer >= 2000 {
                assert!(stats.rx_no_buffer > 0, "{stats:?}");
                assert_eq!(stats.rx_packets, received);
                break;
            }
            assert!(Instant::now() < deadline, "{stats:?}");
            std::thread::yield_now();
        }
        port.release().unwrap();
    });
}
