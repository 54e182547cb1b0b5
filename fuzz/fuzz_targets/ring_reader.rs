//! Arbitrary bytes as a small VMBus ring (header page + 1 or 2 data pages): the reader must
//! never panic, whatever the indices and packets say, and the producer end over the same
//! memory must not either.
//!
//! Input: byte 0 = flags (bit 0: one or two data pages; bit 1: fold the indices into aligned
//! in-range values so the fuzzer spends its time on packet contents; bit 2: alternate the
//! small-completion fast path with the general read); bytes 1..17 =
//! write_index, read_index, feature_bits, pending_send_sz (little-endian u32); the rest fills
//! the data area from offset 0.
#![no_main]

use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use netvsc::vmbus::ring::{RING_HEADER_SIZE, RingError};
use netvsc::vmbus::{
    IncomingPacket, IncomingRing, OutgoingKind, OutgoingPacket, OutgoingRing, Peek, SMALL_PAYLOAD,
};
use packet::SharedMemory;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < 16 {
        return;
    }
    let (header, body) = rest.split_at(16);
    let word = |i: usize| u32::from_le_bytes(header[i * 4..i * 4 + 4].try_into().unwrap());
    let data_size = 4096 * (1 + usize::from(flags & 1));
    let fold = |v: u32| {
        if flags & 2 != 0 {
            (v % data_size as u32) & !7
        } else {
            v
        }
    };
    let mem = SharedMemory::anonymous(RING_HEADER_SIZE + data_size).unwrap();
    mem.write(RING_HEADER_SIZE, &body[..body.len().min(data_size)])
        .unwrap();
    let ring = netvsc::vmbus::RingMemory::new(mem.clone()).unwrap();
    ring.write_index().store(fold(word(0)), Ordering::SeqCst);
    ring.read_index().store(fold(word(1)), Ordering::SeqCst);
    ring.feature_bits().store(word(2), Ordering::SeqCst);
    ring.pending_send_size().store(word(3), Ordering::SeqCst);

    if let Ok(mut rx) = IncomingRing::new(mem.clone()) {
        let mut packet = IncomingPacket::new();
        let mut small = [0u8; SMALL_PAYLOAD];
        for i in 0..256 {
            // Bit 2: every other read tries the completion fast path first.
            if flags & 4 != 0 && i % 2 == 0 {
                match rx.read_small_completion(&mut small) {
                    Ok(Peek::Completion { payload, .. }) => {
                        let _ = small[payload].len();
                        continue;
                    }
                    Ok(Peek::Other) => {}
                    Ok(Peek::Empty) | Err(_) => break,
                }
            }
            match rx.read(&mut packet) {
                Ok(true) => {
                    let _ = packet.kind();
                    let _ = packet.payload().len();
                    let _ = packet.transfer_ranges().len();
                    let _ = packet.gpa_ranges().map(|r| r.pfns.len()).sum::<usize>();
                }
                Err(RingError::InvalidPacket { .. }) => {}
                Ok(false) | Err(_) => break,
            }
        }
        let _ = rx.commit();
        let _ = rx.arm_interrupt();
        let _ = rx.available_bytes();
    }
    if let Ok(mut tx) = OutgoingRing::new(mem, false) {
        let payload = [0xA5u8; 100];
        let _ = tx.write(&OutgoingPacket {
            kind: OutgoingKind::InBand,
            transaction_id: 1,
            completion_requested: true,
            payload: &payload,
        });
        let _ = tx.request_space(200);
        let _ = tx.free_bytes();
    }
});
