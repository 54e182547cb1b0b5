//! Tests of the shared-memory transport: layout, data and doorbells both ways, subchannel
//! offer/open, reopen, death and rescind, DMA allocation.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;

use super::*;
use crate::vmbus::{
    IncomingPacket, IncomingRing, OutgoingKind, OutgoingPacket, OutgoingRing, RingError,
};

/// Long enough never to expire on a loaded machine; the waits return as soon as signalled.
const LONG: Duration = Duration::from_secs(10);
const SHORT: Duration = Duration::from_millis(20);

fn small() -> ShmConfig {
    ShmConfig {
        max_channels: 4,
        ring_size: 4 * PAGE_SIZE,
        receive_buffer_size: 16 * PAGE_SIZE,
        send_buffer_size: 8 * PAGE_SIZE,
        dma_size: 8 * PAGE_SIZE,
        receive_gpadl: 0x100,
        send_gpadl: 0x200,
    }
}

fn inband(tid: u64, payload: &[u8]) -> OutgoingPacket<'_> {
    OutgoingPacket {
        kind: OutgoingKind::InBand,
        transaction_id: tid,
        completion_requested: false,
        payload,
    }
}

#[test]
fn layout_is_page_aligned_and_disjoint() {
    let config = small();
    let l = ShmLayout::new(&config).unwrap();
    let mut regions = vec![
        (l.control_offset, PAGE_SIZE),
        (l.monitor_offset, PAGE_SIZE),
        (l.receive_buffer_offset, l.receive_buffer_size),
        (l.send_buffer_offset, l.send_buffer_size),
        (l.dma_offset, l.dma_size),
    ];
    for c in 0..config.max_channels {
        regions.push((l.outgoing_ring_offset(c), l.ring_size));
        regions.push((l.incoming_ring_offset(c), l.ring_size));
    }
    regions.sort();
    let mut end = 0;
    for (offset, size) in regions {
        assert!(offset.is_multiple_of(PAGE_SIZE));
        assert_eq!(offset, end, "regions are contiguous and disjoint");
        end = offset + size;
    }
    assert_eq!(end, l.total_size);

    for bad in [
        ShmConfig {
            max_channels: 0,
            ..small()
        },
        ShmConfig {
            max_channels: 65,
            ..small()
        },
        ShmConfig {
            ring_size: PAGE_SIZE,
            ..small()
        },
        ShmConfig {
            ring_size: 3 * PAGE_SIZE + 1,
            ..small()
        },
        ShmConfig {
            send_buffer_size: 0,
            ..small()
        },
        ShmConfig {
            send_gpadl: 0x100,
            ..small()
        },
    ] {
        assert!(matches!(ShmLayout::new(&bad), Err(DeviceError::Config(_))));
    }
}

#[test]
fn packets_and_doorbells_flow_both_ways() {
    let bus = ShmBus::new(&small()).unwrap();
    let guest = bus.guest_device();
    let host = bus.host_side();
    let rings = guest.primary().unwrap();
    assert_eq!(rings.index, 0);
    assert_eq!(
        rings.outgoing.bus_addr(0),
        bus.layout().outgoing_ring_offset(0) as u64
    );

    // Guest → host: write, ring the doorbell (eventfd and monitor bit).
    let mut guest_tx = OutgoingRing::new(rings.outgoing.clone(), true).unwrap();
    let mut host_rx = IncomingRing::new(host.guest_outgoing_ring(0).unwrap()).unwrap();
    assert!(guest_tx.write(&inband(7, b"request")).unwrap());
    guest.doorbell(0).unwrap().signal().unwrap();
    let signals = host.wait_guest_signal(LONG).unwrap();
    assert_eq!(signals.channels().collect::<Vec<_>>(), [0]);
    assert!(!signals.control);
    assert_eq!(host.take_monitor_pending().unwrap(), 1);
    assert_eq!(host.take_monitor_pending().unwrap(), 0, "test-and-clear");
    let mut pkt = IncomingPacket::new();
    assert!(host_rx.read(&mut pkt).unwrap());
    assert_eq!(pkt.transaction_id(), 7);
    assert!(host.wait_guest_signal(Duration::ZERO).unwrap().is_empty());

    // Host → guest: the guest starts masked (as uio opens channels), so no signal is due.
    let mut host_tx = OutgoingRing::new(host.guest_incoming_ring(0).unwrap(), true).unwrap();
    let mut guest_rx = IncomingRing::new(rings.incoming).unwrap();
    assert_eq!(
        guest_rx.memory().interrupt_mask().load(Ordering::Relaxed),
        1
    );
    assert!(!host_tx.write(&inband(8, b"masked")).unwrap());
    assert!(guest_rx.arm_interrupt(), "data already there");
    while guest_rx.read(&mut pkt).unwrap() {}
    guest_rx.commit();
    assert!(!guest_rx.arm_interrupt());
    assert!(
        !guest.wait_for_interrupt(SHORT).unwrap(),
        "nothing signalled"
    );

    // A host thread answers while the guest sleeps on its interrupt.
    let responder = thread::spawn(move || {
        if host_tx.write(&inband(9, b"response")).unwrap() {
            host.signal_guest(0).unwrap();
        }
    });
    assert!(guest.wait_for_interrupt(LONG).unwrap());
    responder.join().unwrap();
    assert!(guest_rx.read(&mut pkt).unwrap());
    assert_eq!(pkt.transaction_id(), 9);
}

#[test]
fn buffers_carry_their_gpadl_handles() {
    let bus = ShmBus::new(&small()).unwrap();
    let guest = bus.guest_device();
    let host = bus.host_side();
    let (recv, recv_gpadl) = guest.receive_buffer().unwrap();
    let (send, send_gpadl) = guest.send_buffer().unwrap();
    assert_eq!((recv_gpadl, send_gpadl), (0x100, 0x200));
    assert_eq!(recv.len(), 16 * PAGE_SIZE);
    assert_eq!(recv.bus_addr(0), bus.layout().receive_buffer_offset as u64);
    send.write(5, b"chimney").unwrap();
    let host_send = host.gpadl(0x200).unwrap();
    let mut buf = [0u8; 7];
    host_send.read(5, &mut buf).unwrap();
    assert_eq!(&buf, b"chimney");
    assert!(host.gpadl(0x100).unwrap().same_memory(&recv));
    assert!(host.gpadl(0x300).is_none());
}

#[test]
fn subchannels_are_opened_after_the_host_offers_them() {
    let bus = ShmBus::new(&small()).unwrap();
    let mut guest = bus.guest_device();
    let host = bus.host_side();
    assert!(matches!(
        guest.open_subchannels(2, SHORT),
        Err(DeviceError::Timeout { .. })
    ));
    assert!(matches!(
        guest.open_subchannels(4, SHORT),
        Err(DeviceError::NoSuchChannel { .. })
    ));
    assert!(matches!(
        guest.doorbell(1),
        Err(DeviceError::NoSuchChannel { .. })
    ));

    let offerer = {
        let host = host.clone();
        thread::spawn(move || host.offer_subchannels(3).unwrap())
    };
    let subs = guest.open_subchannels(3, LONG).unwrap();
    offerer.join().unwrap();
    assert_eq!(subs.iter().map(|r| r.index).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(host.subchannels_offered(), 3);
    assert_eq!(host.subchannels_opened(), 3);
    let signals = host.wait_guest_signal(LONG).unwrap();
    assert!(signals.control, "the guest kicked the host after opening");
    for r in &subs {
        assert!(
            r.incoming
                .same_memory(&host.guest_incoming_ring(r.index).unwrap())
        );
        let ring = RingMemory::new(r.incoming.clone()).unwrap();
        assert_eq!(ring.interrupt_mask().load(Ordering::Relaxed), 1);
    }
    assert!(matches!(
        guest.open_subchannels(1, SHORT),
        Err(DeviceError::Config(_))
    ));

    // Channel 3's doorbell sets monitor bit 3 and its own eventfd.
    guest.doorbell(3).unwrap().signal().unwrap();
    assert_eq!(host.wait_guest_signal(LONG).unwrap().channels, 1 << 3);
    assert_eq!(host.take_monitor_pending().unwrap(), 1 << 3);
    // A host interrupt on a subchannel wakes the guest.
    host.signal_guest(2).unwrap();
    assert!(guest.wait_for_interrupt(LONG).unwrap());
}

#[test]
fn reopen_zeroes_rings_and_starts_a_new_session() {
    let bus = ShmBus::new(&small()).unwrap();
    let mut guest = bus.guest_device();
    let host = bus.host_side();
    host.offer_subchannels(1).unwrap();
    guest.open_subchannels(1, LONG).unwrap();
    {
        let rings = guest.primary().unwrap();
        let mut tx = OutgoingRing::new(rings.outgoing, true).unwrap();
        tx.write(&inband(1, b"before the reopen")).unwrap();
    }
    assert_eq!(host.pending_reopen(), None);
    assert!(matches!(
        guest.reopen(SHORT),
        Err(DeviceError::Timeout { .. })
    ));
    // The unanswered request stands; a host control loop acknowledges it.
    let server = {
        let host = host.clone();
        thread::spawn(move || {
            loop {
                if let Some(generation) = host.pending_reopen() {
                    host.acknowledge_reopen(generation).unwrap();
                    return generation;
                }
                assert!(host.wait_guest_signal(LONG).unwrap().control);
            }
        })
    };
    guest.reopen(LONG).unwrap();
    let generation = server.join().unwrap();
    assert_eq!(
        generation, 3,
        "two requests: the timed-out one and this one"
    );
    assert_eq!(host.generation(), 3);
    assert_eq!(host.pending_reopen(), None);
    assert_eq!(host.subchannels_offered(), 0);
    assert_eq!(host.subchannels_opened(), 0);
    let rings = guest.primary().unwrap();
    let tx = RingMemory::new(rings.outgoing).unwrap();
    assert_eq!(tx.write_index().load(Ordering::Relaxed), 0);
    let mut data = [0xFFu8; 32];
    tx.shared_memory()
        .read(RING_HEADER_SIZE, &mut data)
        .unwrap();
    assert_eq!(data, [0; 32]);
    let rx = RingMemory::new(rings.incoming).unwrap();
    assert_eq!(rx.interrupt_mask().load(Ordering::Relaxed), 1);
    // Subchannels can be opened again in the new session.
    host.offer_subchannels(2).unwrap();
    assert_eq!(guest.open_subchannels(2, LONG).unwrap().len(), 2);
}

#[test]
fn a_dead_channel_is_reported_and_recovered_by_reopen() {
    let bus = ShmBus::new(&small()).unwrap();
    let mut guest = bus.guest_device();
    let host = bus.host_side();
    let waiter = {
        let guest = bus.guest_device();
        thread::spawn(move || guest.wait_for_interrupt(LONG))
    };
    host.mark_dead().unwrap();
    assert!(matches!(
        waiter.join().unwrap(),
        Err(DeviceError::ChannelDead { .. })
    ));
    assert_eq!(host.state(), ChannelState::Dead);
    assert!(matches!(
        guest.open_subchannels(1, LONG),
        Err(DeviceError::ChannelDead { .. })
    ));
    let server = {
        let host = host.clone();
        thread::spawn(move || {
            while host.pending_reopen().is_none() {
                host.wait_guest_signal(LONG).unwrap();
            }
            host.acknowledge_reopen(host.pending_reopen().unwrap())
                .unwrap();
        })
    };
    guest.reopen(LONG).unwrap();
    server.join().unwrap();
    assert_eq!(host.state(), ChannelState::Alive);
    assert!(!guest.wait_for_interrupt(Duration::ZERO).unwrap());
}

#[test]
fn a_rescinded_device_is_gone_for_good() {
    let bus = ShmBus::new(&small()).unwrap();
    let mut guest = bus.guest_device();
    let host = bus.host_side();
    host.rescind().unwrap();
    assert!(matches!(
        guest.wait_for_interrupt(LONG),
        Err(DeviceError::Gone { .. })
    ));
    assert!(matches!(guest.reopen(LONG), Err(DeviceError::Gone { .. })));
    // Even an acknowledged reopen leaves it rescinded.
    host.acknowledge_reopen(2).unwrap();
    assert_eq!(host.state(), ChannelState::Rescinded);
}

#[test]
fn dma_memory_is_page_granular_and_bounded() {
    let bus = ShmBus::new(&small()).unwrap();
    let mut guest = bus.guest_device();
    let dma_offset = bus.layout().dma_offset as u64;
    let a = guest.dma_memory(100).unwrap();
    let b = guest.dma_memory(PAGE_SIZE + 1).unwrap();
    assert_eq!(a.len(), PAGE_SIZE);
    assert_eq!(a.bus_addr(0), dma_offset);
    assert_eq!(b.len(), 2 * PAGE_SIZE);
    assert_eq!(b.bus_addr(0), dma_offset + PAGE_SIZE as u64);
    // A second handle shares the allocator.
    let c = bus.guest_device().dma_memory(PAGE_SIZE).unwrap();
    assert_eq!(c.bus_addr(0), dma_offset + 3 * PAGE_SIZE as u64);
    assert!(matches!(
        guest.dma_memory(5 * PAGE_SIZE),
        Err(DeviceError::OutOfMemory {
            requested: 20480,
            available: 16384
        })
    ));
    // The host sees the guest's buffer at its bus address.
    b.write(10, b"frame").unwrap();
    let mut buf = [0u8; 5];
    bus.host_side()
        .memory()
        .read(b.bus_addr(10) as usize, &mut buf)
        .unwrap();
    assert_eq!(&buf, b"frame");
}

/// A guest producer and a host consumer on two threads, with a ring far smaller than the
/// traffic: the producer blocks on a full ring (pending send size) and the consumer sleeps on
/// an empty one (interrupt mask). Every wait is bounded; a lost wakeup fails the test.
#[test]
fn flow_control_never_loses_a_wakeup() {
    const PACKETS: u32 = 20_000;
    let bus = ShmBus::new(&small()).unwrap();
    let host = bus.host_side();
    let consumer = thread::spawn(move || {
        let mut rx = IncomingRing::new(host.guest_outgoing_ring(0).unwrap()).unwrap();
        let mut pkt = IncomingPacket::new();
        let mut expected = 0u32;
        while expected < PACKETS {
            while rx.read(&mut pkt).unwrap() {
                let seq = u32::from_le_bytes(pkt.payload()[..4].try_into().unwrap());
                assert_eq!(seq, expected);
                assert_eq!(pkt.transaction_id(), u64::from(seq));
                expected += 1;
            }
            if rx.commit() {
                host.signal_guest(0).unwrap();
            }
            if expected < PACKETS && !rx.arm_interrupt() {
                assert!(
                    !host.wait_guest_signal(LONG).unwrap().is_empty(),
                    "lost producer wakeup at packet {expected}"
                );
            }
        }
    });

    let guest = bus.guest_device();
    let mut tx = OutgoingRing::new(guest.primary().unwrap().outgoing, true).unwrap();
    let doorbell = guest.doorbell(0).unwrap();
    let mut payload = vec![0u8; 700];
    let mut blocked = 0;
    for seq in 0..PACKETS {
        let len = 4 + (seq as usize * 37) % 600;
        payload[..4].copy_from_slice(&seq.to_le_bytes());
        let packet = inband(u64::from(seq), &payload[..len]);
        loop {
            match tx.write(&packet) {
                Ok(signal) => {
                    if signal {
                        doorbell.signal().unwrap();
                    }
                    break;
                }
                Err(RingError::Full { needed, .. }) => {
                    blocked += 1;
                    if !tx.request_space(needed).unwrap() {
                        assert!(
                            guest.wait_for_interrupt(LONG).unwrap(),
                            "lost consumer wakeup at packet {seq}"
                        );
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    consumer.join().unwrap();
    assert!(blocked > 0, "the ring filled up at least once");
}

#[test]
fn a_wait_without_a_bound_does_not_overflow_its_deadline() {
    // `Duration::MAX` means "no bound" to a caller; the deadline saturates instead of
    // panicking on `Instant + Duration`, and a signal already pending ends the wait at once.
    let bus = ShmBus::new(&small()).unwrap();
    let guest = bus.guest_device();
    let host = bus.host_side();
    let _rings = guest.primary().unwrap();
    host.signal_guest(0).unwrap();
    assert!(guest.wait_for_interrupt(Duration::MAX).unwrap());
    guest.doorbell(0).unwrap().signal().unwrap();
    let signals = host.wait_guest_signal(Duration::MAX).unwrap();
    assert_eq!(signals.channels().collect::<Vec<_>>(), [0]);
}

#[test]
fn the_host_reads_the_shortest_monitor_latency_the_guest_wrote() {
    let bus = ShmBus::new(&small()).unwrap();
    let host = bus.host_side();
    assert_eq!(host.monitor_latency().unwrap(), None, "nothing written yet");
    // The guest writes latency[0][1] = 500 (50 µs, DPDK's default) and latency[0][0] = 1000,
    // as u16 entries of the monitor page in 100 ns units.
    let guest_mem = bus.memory();
    let page = bus.layout().monitor_offset;
    let write_u16 = |id: usize, value: u16| {
        let at = page + crate::vmbus::monitor_latency_offset(id);
        let word = guest_mem.atomic_u32(at & !3).unwrap();
        let shift = 8 * (at & 3);
        let old = word.load(Ordering::Relaxed);
        word.store(
            (old & !(0xffff << shift)) | (u32::from(value) << shift),
            Ordering::Relaxed,
        );
    };
    write_u16(0, 1000);
    write_u16(1, 500);
    assert_eq!(
        host.monitor_latency().unwrap(),
        Some(Duration::from_micros(50))
    );
    // An entry far beyond the bus's four channels is no monitor id of it: ignored.
    write_u16(100, 1);
    assert_eq!(
        host.monitor_latency().unwrap(),
        Some(Duration::from_micros(50))
    );
}

#[test]
fn a_reopen_is_acknowledged_only_when_the_host_finishes_it() {
    let bus = ShmBus::new(&small()).unwrap();
    let mut guest = bus.guest_device();
    let host = bus.host_side();
    let before = host.generation();
    let (prepared_tx, prepared_rx) = std::sync::mpsc::channel();
    let (finish_tx, finish_rx) = std::sync::mpsc::channel::<()>();
    let server = {
        let host = host.clone();
        thread::spawn(move || {
            while host.pending_reopen().is_none() {
                host.wait_guest_signal(LONG).unwrap();
            }
            let generation = host.pending_reopen().unwrap();
            host.prepare_reopen().unwrap();
            prepared_tx.send(host.generation()).unwrap();
            // The host sets its new session up here; the guest must still be waiting.
            finish_rx.recv_timeout(LONG).unwrap();
            host.finish_reopen(generation).unwrap();
        })
    };
    let client = thread::spawn(move || guest.reopen(LONG));
    let seen = prepared_rx.recv_timeout(LONG).unwrap();
    assert_eq!(seen, before, "prepare_reopen wrote the ack");
    assert!(!client.is_finished(), "the guest did not wait for the ack");
    finish_tx.send(()).unwrap();
    client.join().unwrap().unwrap();
    server.join().unwrap();
    assert_eq!(host.generation(), before + 1);
}
