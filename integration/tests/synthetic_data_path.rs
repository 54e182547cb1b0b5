//! The synthetic data path end to end: the guest `SyntheticNic` against the simulated host,
//! frames from 60 to 9014 bytes (MTU 9000) in both directions, on 1 and 4 queues, with small
//! rings so every run wraps them many times and reaches back-pressure. Contents and order of
//! every frame are checked at the far end.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use integration::host::Fault;
use packet::{MacAddr, PortQueue};

const FRAMES_PER_QUEUE: u32 = 600;

fn guest_to_host_in_order(queue_count: u16) {
    let mut rig = start(queue_count, 9000, small_shm(queue_count));
    assert_eq!(rig.nic.queue_count(), queue_count);
    let pool = rig.nic.pool().clone();
    let dst = MacAddr([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);

    let mut short_bursts = 0;
    std::thread::scope(|s| {
        let handles: Vec<_> = rig
            .queues
            .iter_mut()
            .map(|q| {
                let pool = pool.clone();
                s.spawn(move || {
                    let qi = q.index();
                    let mut sent = 0;
                    let mut shorts = 0;
                    // In rounds, so the pool (shared by all queues) never runs dry.
                    let all: Vec<usize> = lengths(FRAMES_PER_QUEUE, 9014).collect();
                    for chunk in all.chunks(100) {
                        let frames = chunk
                            .iter()
                            .map(|&len| {
                                let f = test_frame(dst, qi, sent, len);
                                sent += 1;
                                pool.alloc_from(&f).expect("pool has room")
                            })
                            .collect();
                        shorts += send_all(q, frames);
                    }
                    shorts
                })
            })
            .collect();
        short_bursts = handles.into_iter().map(|h| h.join().unwrap()).sum::<u64>();
    });

    let mut next: HashMap<u16, u32> = HashMap::new();
    let total = FRAMES_PER_QUEUE * queue_count as u32;
    let deadline = Instant::now() + DEADLINE;
    let mut got = 0;
    while got < total {
        // The queues must keep polling for completions while the host forwards.
        let mut sink = Vec::new();
        for q in &mut rig.queues {
            q.rx_burst(&mut sink, 64);
        }
        match rig.host.external().try_recv() {
            Some((host_queue, f)) => {
                let (q, seq) = check_frame(&f);
                assert_eq!(host_queue, q, "frame {seq} arrived on another channel");
                let expected = next.entry(q).or_default();
                assert_eq!(seq, *expected, "frame out of order on queue {q}");
                *expected += 1;
                got += 1;
            }
            None => {
                assert!(
                    Instant::now() < deadline,
                    "only {got} of {total} frames arrived"
                );
                std::thread::yield_now();
            }
        }
    }
    let stats = rig.nic.stats();
    let tx: u64 = stats.queues.iter().map(|q| q.tx_packets).sum();
    let failed: u64 = stats.queues.iter().map(|q| q.tx_failed).sum();
    assert_eq!(tx, total as u64);
    assert_eq!(failed, 0);
    // Both send paths were used: sections for small frames, GPA direct for large ones.
    assert!(stats.queues.iter().map(|q| q.tx_send_buffer).sum::<u64>() > 0);
    assert!(stats.queues.iter().map(|q| q.tx_gpa_direct).sum::<u64>() > 0);
    eprintln!("guest→host on {queue_count} queue(s): {total} frames, {short_bursts} short bursts");
}

fn host_to_guest_in_order(queue_count: u16) {
    let mut rig = start(queue_count, 9000, small_shm(queue_count));
    let mac = rig.nic.mac();
    let lens: Vec<usize> = lengths(FRAMES_PER_QUEUE, 9014).collect();
    let total = FRAMES_PER_QUEUE as usize * queue_count as usize;

    let mut next = vec![0u32; queue_count as usize];
    let mut injected = vec![0u32; queue_count as usize];
    let mut got = 0;
    let deadline = Instant::now() + DEADLINE;
    let mut out = Vec::new();
    while got < total {
        // Keep a bounded number of frames in the host's queue; the rest wait their turn.
        for q in 0..queue_count {
            let i = injected[q as usize];
            if i < FRAMES_PER_QUEUE && rig.host.external().pending_to_guest() < 256 {
                let f = test_frame(mac, q, i, lens[i as usize]);
                if rig.host.external().inject_on(q, &f) {
                    injected[q as usize] += 1;
                }
            }
        }
        for queue in &mut rig.queues {
            queue.rx_burst(&mut out, 64);
            for p in out.drain(..) {
                let (q, seq) = check_frame(p.data());
                assert_eq!(q, queue.index(), "frame {seq} delivered on the wrong queue");
                assert_eq!(p.meta.queue, queue.index());
                assert_eq!(seq, next[q as usize], "frame out of order on queue {q}");
                next[q as usize] += 1;
                got += 1;
            }
        }
        assert!(
            Instant::now() < deadline,
            "only {got} of {total} frames arrived"
        );
    }
    let host = rig.host.stats();
    assert_eq!(host.rx_delivered, total as u64);
    let rx: u64 = rig.nic.stats().queues.iter().map(|q| q.rx_packets).sum();
    assert_eq!(rx, total as u64);
}

#[test]
fn guest_to_host_frames_60_to_9014_arrive_whole_and_in_order_on_one_queue() {
    guest_to_host_in_order(1);
}

#[test]
fn guest_to_host_frames_60_to_9014_arrive_whole_and_in_order_on_four_queues() {
    guest_to_host_in_order(4);
}

#[test]
fn host_to_guest_frames_60_to_9014_arrive_whole_and_in_order_on_one_queue() {
    host_to_guest_in_order(1);
}

#[test]
fn host_to_guest_frames_60_to_9014_arrive_whole_and_in_order_on_four_queues() {
    host_to_guest_in_order(4);
}

#[test]
fn a_full_ring_pushes_back_and_loses_nothing_when_the_host_resumes() {
    let mut rig = start(1, 1500, small_shm(1));
    let pool = rig.nic.pool().clone();
    let dst = MacAddr([0x02, 0, 0, 0, 0, 9]);
    rig.host.inject_fault(Fault::StopReading);

    // Offer far more than a 16 KiB ring holds (several frames share a send section: 1200
    // frames are some 400 sends); tx_burst must stop taking frames.
    let mut pending: Vec<_> = (0..1200)
        .map(|i| pool.alloc_from(&test_frame(dst, 0, i, 1514)).unwrap())
        .collect();
    let queue = &mut rig.queues[0];
    let mut taken = 0;
    for _ in 0..50 {
        taken += queue.tx_burst(&mut pending);
    }
    assert!(taken > 0, "the ring took nothing");
    assert!(
        !pending.is_empty(),
        "a stopped host cannot absorb 1200 frames"
    );
    assert!(queue.stats().tx_ring_full > 0 || queue.stats().tx_no_section > 0);

    rig.host.inject_fault(Fault::ResumeReading);
    send_all(queue, pending);
    let deadline = Instant::now() + DEADLINE;
    let mut seq = 0;
    while seq < 1200 {
        let mut sink = Vec::new();
        rig.queues[0].rx_burst(&mut sink, 64);
        if let Some(f) = rig.host.external().recv(Duration::from_millis(10)) {
            assert_eq!(check_frame(&f), (0, seq));
            seq += 1;
        }
        assert!(
            Instant::now() < deadline,
            "{seq} of 1200 frames after resume"
        );
    }
}
