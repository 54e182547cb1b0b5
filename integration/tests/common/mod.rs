//! Shared harness for the suites that run the guest `SyntheticNic` against the simulated host.
//!
//! Frames carry a test header after the Ethernet header — queue, sequence number, length — and
//! a payload derived from them, so the far end can check contents and order of every frame.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use integration::host::{HostConfig, PortMode};
use netvsc::nic::{NicConfig, SyntheticQueue};
use netvsc::vmbus::shm::ShmConfig;
use packet::{MacAddr, Packet, PortQueue};

/// EtherType of test frames (IEEE local experimental).
pub const TEST_ETHERTYPE: u16 = 0x88b5;
/// Upper bound for any wait in these suites.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running pair: the simulated host and the guest NIC opened against it.
pub type Rig = integration::harness::rig::SyntheticRig;

/// Small rings (16 KiB of data per direction) so that tests wrap them many times and reach
/// back-pressure; a modest receive buffer so its sub-allocations run out under load.
pub fn small_shm(channels: u16) -> ShmConfig {
    ShmConfig {
        max_channels: channels,
        ring_size: 5 * 4096,
        receive_buffer_size: 4 << 20,
        send_buffer_size: 1 << 20,
        dma_size: 96 << 20,
        ..ShmConfig::default()
    }
}

pub fn start(queues: u16, mtu: usize, shm: ShmConfig) -> Rig {
    let host_config = HostConfig {
        shm,
        port: PortMode::External,
        link_delay: Duration::from_millis(50),
        vf_device_delay: Duration::from_millis(10),
        ..HostConfig::default()
    };
    start_with(
        host_config,
        NicConfig {
            mtu,
            queues,
            ..NicConfig::default()
        },
    )
}

pub fn start_with(host_config: HostConfig, nic_config: NicConfig) -> Rig {
    Rig::start(host_config, nic_config).expect("host starts and the NIC opens against it")
}

/// The frame with sequence number `seq` on `queue`, `len` bytes long (60..=9014).
pub fn test_frame(dst: MacAddr, queue: u16, seq: u32, len: usize) -> Vec<u8> {
    assert!(len >= 60);
    let mut f = vec![0u8; len];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, queue as u8]);
    f[12..14].copy_from_slice(&TEST_ETHERTYPE.to_be_bytes());
    f[14..16].copy_from_slice(&queue.to_be_bytes());
    f[16..20].copy_from_slice(&seq.to_be_bytes());
    f[20..24].copy_from_slice(&(len as u32).to_be_bytes());
    for (i, b) in f[24..].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_mul(31).wrapping_add(i) as u8;
    }
    f
}

/// Checks a received test frame; returns its (queue, seq).
pub fn check_frame(f: &[u8]) -> (u16, u32) {
    assert!(f.len() >= 60, "frame of {} bytes", f.len());
    assert_eq!(u16::from_be_bytes([f[12], f[13]]), TEST_ETHERTYPE);
    let queue = u16::from_be_bytes([f[14], f[15]]);
    let seq = u32::from_be_bytes(f[16..20].try_into().unwrap());
    let len = u32::from_be_bytes(f[20..24].try_into().unwrap()) as usize;
    assert_eq!(f.len(), len, "length of frame {seq} on queue {queue}");
    let expected = test_frame(MacAddr(f[0..6].try_into().unwrap()), queue, seq, len);
    assert!(
        f == expected.as_slice(),
        "contents of frame {seq} on queue {queue}"
    );
    (queue, seq)
}

/// Frame lengths that cover 60..=max, both ends included, with the sizes around the
/// send-section and page boundaries.
pub fn lengths(count: u32, max: usize) -> impl Iterator<Item = usize> {
    const EDGES: [usize; 10] = [60, 61, 64, 127, 1514, 1515, 4095, 4096, 6100, 9014];
    (0..count).map(move |i| {
        let l = if (i as usize) < EDGES.len() {
            EDGES[i as usize]
        } else {
            60 + (i as usize * 7919) % (max - 59)
        };
        l.min(max)
    })
}

/// Sends `frames` through `queue`, retrying what `tx_burst` leaves (back-pressure), with a
/// bounded deadline. Returns how many tx_burst calls took fewer frames than offered.
pub fn send_all(queue: &mut SyntheticQueue, mut frames: Vec<Packet>) -> u64 {
    let deadline = Instant::now() + DEADLINE;
    let mut short_bursts = 0;
    let mut burst = Vec::with_capacity(32);
    let mut drain = Vec::new();
    frames.reverse();
    while !frames.is_empty() || !burst.is_empty() {
        while burst.len() < 32 {
            match frames.pop() {
                Some(p) => burst.push(p),
                None => break,
            }
        }
        let offered = burst.len();
        let took = queue.tx_burst(&mut burst);
        if took < offered {
            short_bursts += 1;
            // Completions arrive on the receive side of the channel: keep it moving.
            queue.rx_burst(&mut drain, 64);
            drain.clear();
            assert!(
                Instant::now() < deadline,
                "tx stuck with {} frames left",
                burst.len()
            );
            std::thread::yield_now();
        }
    }
    short_bursts
}
