//! The same-run baseline: what handing frames from one thread to another costs without
//! VMBus framing, NVSP, RNDIS or a descriptor ring.
//!
//! The producer allocates each frame from a [`Pool`] and copies it in, as a NIC's caller
//! does; a wait-free SPSC queue (`rtrb`) carries it to a consumer thread that copies it out
//! and frees it. Measured beside each path in the same run, so the ratio says what the path
//! costs over a plain handoff on this machine at this moment.

use std::time::Instant;

use packet::{MacAddr, Packet, Pool, SharedMemory};

use super::{BenchError, Rate, frame};

/// Slots in the queue between the two threads.
const QUEUE: usize = 4096;

/// Moves `count` frames of `len` bytes through the SPSC queue; the rate the consumer saw.
pub fn spsc_baseline(len: usize, count: u64) -> Result<Rate, BenchError> {
    let memory = SharedMemory::anonymous(64 << 20).map_err(BenchError::Memory)?;
    let pool = Pool::new(memory, 2048).map_err(BenchError::Memory)?;
    let f = frame(len, MacAddr([2, 9, 9, 9, 9, 9]));
    let (mut tx, mut rx) = rtrb::RingBuffer::<Packet>::new(QUEUE);
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
            // The pool holds far more buffers than the queue: an allocation fails only
            // while the consumer has yet to free, so it is retried.
            let Some(mut p) = pool.alloc_from(&f) else {
                std::hint::spin_loop();
                continue;
            };
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
    });
    Ok(Rate {
        packets: count,
        dropped: 0,
        elapsed: started.elapsed(),
    })
}
