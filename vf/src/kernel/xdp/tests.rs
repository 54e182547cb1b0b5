//! The AF_XDP transport over a veth pair in a network namespace of the test's own: `vf0` is
//! the VF (with the synthetic NIC's MAC; the program and the sockets are on it), `peer0` the
//! far end, where the test reads and writes frames through a packet socket. Native and
//! generic XDP are both exercised (veth has both; neither is zero-copy).

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::process::Command;
use std::time::{Duration, Instant};

use packet::netdev;
use packet::{MacAddr, Packet, Pool, PortQueue, SharedMemory};

use super::*;
use crate::kernel::netns::{self, in_new_namespace, ip};
use crate::kernel::{KernelVf, KernelVfConfig, KernelVfError, KernelVfPort};
use crate::port::{VfEvent, VfPort, VfQueue};

const MAC: MacAddr = MacAddr([0x00, 0x15, 0x5d, 0x0a, 0x0b, 0x0d]);
const PEER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
const ETHERTYPE: u16 = 0x88b5;
const DEADLINE: Duration = Duration::from_secs(10);
const VF: &str = "vf0";
const PEER: &str = "peer0";

/// Held by every test here: the leak test counts the process's BPF descriptors, which only
/// these tests make.
static SERIAL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

fn with_veth(test: &'static str, body: impl FnOnce() + Send + 'static) {
    if !netns::runnable(test) {
        return;
    }
    let _serial = SERIAL.lock();
    in_new_namespace(test, move || {
        for conf in ["all", "default"] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
        }
        netns::veth(VF, PEER, MAC);
        body();
    });
}

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

fn open(mode: XdpMode) -> (KernelVfPort, XdpVfQueue) {
    open_with(mode, 1024)
}

fn open_with(mode: XdpMode, chunks: u32) -> (KernelVfPort, XdpVfQueue) {
    let config = KernelVfConfig {
        mtu: 1500,
        mac: MAC,
        ..KernelVfConfig::default()
    };
    let xdp = XdpConfig {
        mode,
        ring_size: 256,
        chunks,
        ..XdpConfig::default()
    };
    let (port, mut queues) = KernelVf::open_xdp(VF, config, xdp).expect("opening over AF_XDP");
    assert_eq!(queues.len(), 1);
    (port, queues.pop().unwrap())
}

fn peer_socket() -> OwnedFd {
    let fd = netdev::open_packet_socket(PEER).unwrap();
    // Room for every frame a test sends before it reads them.
    netdev::set_receive_buffer(fd.as_fd(), 8 << 20).unwrap();
    fd
}

/// The next test frame the peer receives, within the deadline.
fn peer_recv(fd: &OwnedFd) -> Vec<u8> {
    let deadline = Instant::now() + DEADLINE;
    let mut buf = vec![0u8; 65_536];
    loop {
        match netdev::recv_frame(fd.as_fd(), &mut buf) {
            Ok(n) if is_test_frame(&buf[..n]) => return buf[..n].to_vec(),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("peer receive: {e}"),
        }
        assert!(Instant::now() < deadline, "the peer received nothing");
        netdev::wait_readable(fd.as_fd(), Duration::from_millis(100)).unwrap();
    }
}

/// Receives until `n` test frames arrived, within the deadline.
fn rx(queue: &mut XdpVfQueue, n: usize) -> Vec<Packet> {
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

/// Sends every frame (retrying while the ring is full), within the deadline.
fn tx_all(queue: &mut XdpVfQueue, mut frames: Vec<Packet>) -> usize {
    let deadline = Instant::now() + DEADLINE;
    let mut taken = 0;
    while !frames.is_empty() {
        assert!(Instant::now() < deadline, "tx_burst stopped taking frames");
        taken += queue.tx_burst(&mut frames);
    }
    taken
}

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

/// What `ip -d link show vf0` says about XDP: "xdp" (native), "xdpgeneric", or "" (none).
fn attached_xdp() -> String {
    let out = Command::new("ip")
        .args(["-d", "link", "show", VF])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("xdpgeneric") {
        "xdpgeneric".into()
    } else if text.contains(" xdp ") || text.contains("prog/xdp") {
        "xdp".into()
    } else {
        String::new()
    }
}

fn frames_both_ways(mode: XdpMode) {
    let (port, mut queue) = open(mode);
    let info = port.xdp_info().expect("AF_XDP");
    assert_eq!(info.native, mode == XdpMode::Native);
    assert!(!info.zero_copy, "veth has no zero-copy");
    assert_eq!(
        attached_xdp(),
        if info.native { "xdp" } else { "xdpgeneric" }
    );
    assert_eq!((port.queue_count(), queue.index()), (1, 0));
    assert!(port.link_up());
    let peer = peer_socket();
    let sent: Vec<Vec<u8>> = (0..200)
        .map(|seq| frame(MAC, PEER_MAC, seq, 60 + (seq as usize * 7) % 1455))
        .collect();
    for f in &sent {
        assert_eq!(netdev::send_frame(peer.as_fd(), f).unwrap(), f.len());
    }
    let got = rx(&mut queue, sent.len());
    for (p, f) in got.iter().zip(&sent) {
        assert_eq!(p.data(), &f[..], "bytes and order");
        assert!(p.is_from(queue.pool()), "received in place in the UMEM");
    }
    // Sent back out from the UMEM in place, with the addresses swapped.
    let echoed: Vec<Packet> = got
        .into_iter()
        .map(|mut p| {
            let d = p.data_mut();
            d[..6].copy_from_slice(&PEER_MAC.0);
            d[6..12].copy_from_slice(&MAC.0);
            p
        })
        .collect();
    let expected: Vec<Vec<u8>> = echoed.iter().map(|p| p.data().to_vec()).collect();
    assert_eq!(tx_all(&mut queue, echoed), 200);
    // And frames from another pool, copied in.
    let pool = Pool::new(SharedMemory::anonymous(64 * 4096).unwrap(), 4096).unwrap();
    let other: Vec<Packet> = (1000..1050)
        .map(|seq| pool.alloc_from(&frame(PEER_MAC, MAC, seq, 1514)).unwrap())
        .collect();
    let expected_other: Vec<Vec<u8>> = other.iter().map(|p| p.data().to_vec()).collect();
    assert_eq!(tx_all(&mut queue, other), 50);
    for f in expected.iter().chain(&expected_other) {
        assert_eq!(peer_recv(&peer), *f);
    }
    let deadline = Instant::now() + DEADLINE;
    while queue.tx_pending() > 0 {
        assert!(Instant::now() < deadline, "transmits never completed");
        std::thread::yield_now();
    }
    let stats = port.stats();
    assert!(stats.rx_packets >= 200, "{stats:?}");
    assert_eq!(stats.tx_packets, 250, "{stats:?}");
    assert_eq!((stats.tx_lost, stats.rx_frame_errors), (0, 0));
    assert_eq!(stats.rx_descriptor_errors, 0);
    port.stop(Duration::from_secs(1)).unwrap();
    port.release().unwrap();
    assert_eq!(attached_xdp(), "", "the program goes with the port");
    assert_eq!(port.stats().tx_packets, 250, "counters outlive release");
}

#[test]
fn native_xdp_moves_frames_both_ways_in_place_and_in_order() {
    with_veth("afxdp_native_both_ways", || {
        frames_both_ways(XdpMode::Native)
    });
}

#[test]
fn generic_xdp_moves_frames_both_ways_in_place_and_in_order() {
    with_veth("afxdp_generic_both_ways", || {
        frames_both_ways(XdpMode::Generic)
    });
}

#[test]
fn auto_mode_takes_native_on_veth_whose_xdp_redirects() {
    with_veth("afxdp_auto_mode", || {
        let features = xdp_features(netdev::interface_index(VF).unwrap())
            .unwrap()
            .expect("this kernel reports xdp_features");
        assert!(features.can_redirect(), "{features:?}");
        assert!(!features.zero_copy());
        let (port, _queue) = open(XdpMode::Auto);
        assert!(port.xdp_info().unwrap().native);
        assert_eq!(port.xdp_info().unwrap().describe(), "native XDP, copy");
        port.release().unwrap();
    });
}

#[test]
fn frames_over_the_mtu_are_dropped_and_counted_both_ways() {
    with_veth("afxdp_mtu", || {
        ip(&["link", "set", PEER, "mtu", "3000"]);
        let (port, mut queue) = open(XdpMode::Native);
        let peer = peer_socket();
        // veth drops what exceeds the receiver's MTU before XDP; a frame of MTU + header
        // passes, one tag's worth more does not reach us.
        netdev::send_frame(peer.as_fd(), &frame(MAC, PEER_MAC, 1, 1514)).unwrap();
        assert_eq!(rx(&mut queue, 1)[0].len(), 1514);
        let pool = Pool::new(SharedMemory::anonymous(8 * 4096).unwrap(), 4096).unwrap();
        let big = vec![pool.alloc_from(&frame(PEER_MAC, MAC, 2, 1515)).unwrap()];
        assert_eq!(tx_all(&mut queue, big), 1);
        assert_eq!(port.stats().tx_lost, 1);
        port.release().unwrap();
    });
}

#[test]
fn the_peer_going_down_is_link_down_and_coming_back_is_link_up_without_reopening() {
    with_veth("afxdp_link", || {
        let (port, mut queue) = open(XdpMode::Native);
        ip(&["link", "set", PEER, "down"]);
        assert_eq!(next_events(&port), vec![VfEvent::LinkDown]);
        ip(&["link", "set", PEER, "up"]);
        assert_eq!(next_events(&port), vec![VfEvent::LinkUp]);
        let peer = peer_socket();
        netdev::send_frame(peer.as_fd(), &frame(MAC, PEER_MAC, 7, 100)).unwrap();
        assert_eq!(rx(&mut queue, 1).len(), 1, "the same sockets receive again");
        port.release().unwrap();
    });
}

#[test]
fn deleting_the_vf_is_a_removal_that_strands_nothing_uncounted_and_hangs_nothing() {
    with_veth("afxdp_removal", || {
        let (port, mut queue) = open(XdpMode::Generic);
        ip(&["link", "set", PEER, "down"]);
        assert_eq!(next_events(&port), vec![VfEvent::LinkDown]);
        // Frames queued while the far end is down are never sent by veth (its carrier is off).
        let pool = Pool::new(SharedMemory::anonymous(64 * 4096).unwrap(), 4096).unwrap();
        let mut frames: Vec<Packet> = (0..20)
            .map(|seq| pool.alloc_from(&frame(PEER_MAC, MAC, seq, 100)).unwrap())
            .collect();
        let taken = queue.tx_burst(&mut frames);
        ip(&["link", "del", VF]);
        let events = next_events(&port);
        assert_eq!(events, vec![VfEvent::Removed]);
        let deadline = Instant::now() + DEADLINE;
        while queue.tx_pending() > 0 {
            assert!(Instant::now() < deadline, "tx_pending never reached 0");
            std::thread::yield_now();
        }
        assert_eq!(queue.tx_burst(&mut frames), 0, "nothing is taken once gone");
        port.stop(Duration::from_secs(1)).unwrap();
        port.release().unwrap();
        let stats = port.stats();
        assert_eq!(
            stats.tx_packets + stats.tx_lost,
            taken as u64,
            "every frame taken is sent or counted lost: {stats:?}"
        );
        assert!(port.service(Duration::ZERO).is_empty(), "removed once");
    });
}

/// Chunks of the leak test's UMEMs.
const LEAK_CHUNKS: u32 = 1032;

/// What the leak test counts: XDP sockets in the thread's namespace (`/proc/thread-self/net/protocols`),
/// the process's BPF programs, maps and links (descriptors), and the UMEMs this process holds.
fn footprint() -> (usize, usize, usize) {
    let sockets = std::fs::read_to_string("/proc/thread-self/net/protocols")
        .unwrap()
        .lines()
        .find_map(|l| {
            let mut fields = l.split_whitespace();
            (fields.next() == Some("XDP")).then(|| fields.nth(1)?.parse().ok())?
        })
        .expect("the kernel lists XDP sockets");
    let bpf = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("anon_inode:bpf"))
        .count();
    (sockets, bpf, open_umems())
}

#[test]
fn a_hundred_open_release_and_removal_cycles_leak_no_fd_socket_program_or_umem() {
    with_veth("afxdp_cycles", || {
        let mut peer = peer_socket();
        let before = footprint();
        assert_eq!(before, (0, 0, 0), "nothing of ours before");
        for cycle in 0..100u32 {
            let mode = if cycle % 2 == 0 {
                XdpMode::Native
            } else {
                XdpMode::Generic
            };
            let (port, mut queue) = open_with(mode, LEAK_CHUNKS);
            assert_eq!(
                footprint(),
                (1, 3, 1),
                "cycle {cycle}: one socket, program, map, link, UMEM"
            );
            netdev::send_frame(peer.as_fd(), &frame(MAC, PEER_MAC, cycle, 64)).unwrap();
            let got = rx(&mut queue, 1);
            assert_eq!(tx_all(&mut queue, got), 1);
            if cycle % 10 == 9 {
                // A removal: the interface goes, and comes back for the next cycle.
                ip(&["link", "del", VF]);
                assert_eq!(next_events(&port), vec![VfEvent::Removed]);
                port.stop(Duration::from_millis(100)).unwrap();
                port.release().unwrap();
                drop((port, queue));
                netns::veth(VF, PEER, MAC);
                peer = peer_socket();
            } else {
                port.stop(Duration::from_secs(1)).unwrap();
                port.release().unwrap();
                drop((port, queue));
            }
            assert_eq!(
                attached_xdp(),
                "",
                "cycle {cycle}: no program left on the VF"
            );
            assert_eq!(
                footprint(),
                before,
                "cycle {cycle}: sockets, BPF fds, UMEMs"
            );
        }
    });
}

/// With the program loaded beforehand, a thread left with CAP_NET_RAW alone serves a VF:
/// attaching (through a link), the sockets, the map, the frames. Without the program it is
/// refused with a clear error.
#[test]
fn with_the_program_loaded_at_start_a_vf_needs_only_cap_net_raw() {
    with_veth("afxdp_least_privilege", || {
        let program = std::sync::Arc::new(XdpProgram::load().expect("loading as root"));
        sys::keep_only_capabilities(&[sys::CAP_NET_RAW]).expect("dropping capabilities");
        let config = KernelVfConfig {
            mtu: 1500,
            mac: MAC,
            ..KernelVfConfig::default()
        };
        let xdp = XdpConfig {
            mode: XdpMode::Native,
            ring_size: 256,
            chunks: 1024,
            ..XdpConfig::default()
        };
        let refused = KernelVf::open_xdp(VF, config.clone(), xdp.clone()).unwrap_err();
        assert!(refused.to_string().contains("setting up XDP"), "{refused}");
        for round in 0..2u32 {
            let (port, mut queues) =
                KernelVf::open_xdp_with(VF, config.clone(), xdp.clone(), program.clone())
                    .expect("serving the VF with CAP_NET_RAW");
            let peer = peer_socket();
            netdev::send_frame(peer.as_fd(), &frame(MAC, PEER_MAC, round, 64)).unwrap();
            let got = rx(&mut queues[0], 1);
            assert_eq!(tx_all(&mut queues[0], got), 1);
            assert_eq!(attached_xdp(), "xdp");
            port.release().unwrap();
            assert_eq!(attached_xdp(), "", "round {round}");
        }
    });
}

#[test]
fn bad_settings_are_refused_before_anything_changes() {
    with_veth("afxdp_settings", || {
        let config = KernelVfConfig {
            mtu: 1500,
            mac: MAC,
            ..KernelVfConfig::default()
        };
        let refused = |xdp: XdpConfig, config: KernelVfConfig| -> String {
            match KernelVf::open_xdp(VF, config, xdp) {
                Err(e @ KernelVfError::Config { .. }) => e.to_string(),
                other => panic!("not refused: {other:?}"),
            }
        };
        let ring = refused(
            XdpConfig {
                ring_size: 1000,
                ..XdpConfig::default()
            },
            config.clone(),
        );
        assert!(ring.contains("power of two"), "{ring}");
        let chunks = refused(
            XdpConfig {
                ring_size: 1024,
                chunks: 1024,
                ..XdpConfig::default()
            },
            config.clone(),
        );
        assert!(chunks.contains("twice the ring size"), "{chunks}");
        let jumbo = refused(
            XdpConfig::default(),
            KernelVfConfig {
                mtu: 9000,
                ..config
            },
        );
        assert!(jumbo.contains("larger than a page"), "{jumbo}");
        assert_eq!(attached_xdp(), "");
    });
}
