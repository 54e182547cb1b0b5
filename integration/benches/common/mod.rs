//! What the benchmarks share: test frames and the same-run SPSC baseline.

#![allow(dead_code)]

use std::time::Instant;

use packet::{MacAddr, Packet, Pool, SharedMemory};

/// Frames per `tx_burst`.
pub const BURST: usize = 32;

/// A frame of `len` bytes to `dst` with a local EtherType.
pub fn frame(len: usize, dst: MacAddr) -> Vec<u8> {
    let mut f = vec![0x5a; len];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
    f
}

/// Baseline: the same frames, allocated from a pool and copied in as the NIC's caller does,
/// moved through a wait-free SPSC queue to a consumer thread that copies them out and frees
/// them — what any inter-thread handoff costs without VMBus framing, NVSP or RNDIS.
pub fn spsc_baseline(len: usize, count: u64) -> f64 {
    let pool = Pool::new(SharedMemory::anonymous(64 << 20).unwrap(), 2048).unwrap();
    let f = frame(len, MacAddr([2, 9, 9, 9, 9, 9]));
    let (mut tx, mut rx) = rtrb::RingBuffer::<Packet>::new(4096);
    let started = Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut got = 0;
            let mut copy = vec![0u8; 2048];
            while got < count {
                match rx.pop() {
                    Ok(p) => {
                        copy[..p.len()].copy_from_slice(p.data());
                        got += 1;
                    }
                    Err(_) => std::hint::spin_loop(),
                }
            }
        });
        let mut sent = 0;
        while sent < count {
            if let Some(p) = pool.alloc_from(&f) {
                let mut p = p;
                loop {
                    match tx.push(p) {
                        Ok(()) => break,
                        Err(rtrb::PushError::Full(back)) => {
                            p = back;
                            std::hint::spin_loop();
                        }
                    }
                }
                sent += 1;
            }
        }
    });
    count as f64 / started.elapsed().as_secs_f64()
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
