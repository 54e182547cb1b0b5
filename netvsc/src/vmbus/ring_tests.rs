//! Tests of the ring core: framing, wraparound, signalling rules, pending send size, corrupt
//! rings, and property tests (round trip through both ends; garbage never panics).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use packet::SharedMemory;
use proptest::prelude::*;

use super::packet::*;
use super::ring::*;

fn ring_memory(data_pages: usize) -> SharedMemory {
    SharedMemory::anonymous(RING_HEADER_SIZE + data_pages * 4096).unwrap()
}

fn pair(data_pages: usize) -> (OutgoingRing, IncomingRing) {
    let mem = ring_memory(data_pages);
    let tx = OutgoingRing::new(mem.clone(), true).unwrap();
    let rx = IncomingRing::new(mem).unwrap();
    (tx, rx)
}

fn inband(tid: u64, payload: &[u8]) -> OutgoingPacket<'_> {
    OutgoingPacket {
        kind: OutgoingKind::InBand,
        transaction_id: tid,
        completion_requested: true,
        payload,
    }
}

#[test]
fn ring_memory_rejects_bad_regions() {
    for len in [4096, 4096 + 100, 4096 + 4095] {
        let mem = SharedMemory::anonymous(len).unwrap();
        assert!(matches!(
            RingMemory::new(mem),
            Err(RingError::InvalidMemory { .. })
        ));
    }
    let mem = SharedMemory::anonymous(3 * 4096).unwrap();
    let unaligned = mem.subregion(4, 2 * 4096).unwrap();
    assert!(RingMemory::new(unaligned).is_err());
    assert_eq!(RingMemory::new(mem).unwrap().data_size(), 2 * 4096);
}

#[test]
fn every_kind_round_trips_with_exact_framing() {
    let (mut tx, mut rx) = pair(1);
    assert_eq!(
        tx.memory().feature_bits().load(Ordering::Relaxed),
        RING_FEATURE_PENDING_SEND_SIZE
    );
    let mut pfns = Vec::new();
    let gpa = [GpaRange::contiguous(0x1_2345_6ff0, 0x30, &mut pfns)];
    assert_eq!(gpa[0].byte_offset, 0xff0);
    assert_eq!(gpa[0].pfns, &[0x0012_3456, 0x0012_3457]);
    let xfer = [TransferPageRange {
        byte_count: 100,
        byte_offset: 6144,
    }];
    let packets = [
        inband(1, b"hello"),
        OutgoingPacket {
            kind: OutgoingKind::Completion,
            transaction_id: 2,
            completion_requested: false,
            payload: &[1, 2, 3, 4, 5, 6, 7, 8],
        },
        OutgoingPacket {
            kind: OutgoingKind::GpaDirect { ranges: &gpa },
            transaction_id: 3,
            completion_requested: true,
            payload: &[9; 40],
        },
        OutgoingPacket {
            kind: OutgoingKind::TransferPages {
                set_id: 0xCAFE,
                ranges: &xfer,
            },
            transaction_id: 4,
            completion_requested: true,
            payload: &[7; 12],
        },
    ];
    let mut expected_write = 0;
    for p in &packets {
        // Masked consumer: no signal even though the ring was empty.
        rx.set_interrupt_mask(true);
        assert!(!tx.write(p).unwrap());
        expected_write += p.ring_len();
        assert_eq!(
            tx.memory().write_index().load(Ordering::Relaxed) as usize,
            expected_write
        );
    }
    // First packet: 16-byte descriptor + 5 bytes, padded to 24, trailer = 0 << 32.
    let mut raw = [0u8; 32];
    tx.memory().shared_memory().read(4096, &mut raw).unwrap();
    assert_eq!(&raw[..8], &[6, 0, 2, 0, 3, 0, 1, 0]);
    assert_eq!(&raw[16..24], b"hello\0\0\0");
    assert_eq!(&raw[24..32], &[0; 8]);
    // Second packet's trailer holds its start offset (32) in the upper half.
    let mut trailer = [0u8; 8];
    tx.memory()
        .shared_memory()
        .read(4096 + 32 + 24, &mut trailer)
        .unwrap();
    assert_eq!(u64::from_le_bytes(trailer), 32 << 32);

    let mut pkt = IncomingPacket::new();
    assert!(rx.read(&mut pkt).unwrap());
    assert_eq!(pkt.kind(), IncomingKind::InBand);
    assert_eq!(pkt.transaction_id(), 1);
    assert!(pkt.completion_requested());
    assert_eq!(pkt.payload(), b"hello\0\0\0");
    assert!(rx.read(&mut pkt).unwrap());
    assert_eq!(pkt.kind(), IncomingKind::Completion);
    assert!(!pkt.completion_requested());
    assert_eq!(pkt.payload(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    assert!(rx.read(&mut pkt).unwrap());
    assert_eq!(pkt.kind(), IncomingKind::GpaDirect);
    assert_eq!(pkt.gpa_ranges().collect::<Vec<_>>(), gpa);
    assert_eq!(pkt.payload(), &[9; 40]);
    assert!(rx.read(&mut pkt).unwrap());
    assert_eq!(pkt.kind(), IncomingKind::TransferPages { set_id: 0xCAFE });
    assert_eq!(pkt.transfer_ranges().collect::<Vec<_>>(), &xfer[..]);
    assert_eq!(&pkt.payload()[..12], &[7; 12]);
    assert!(!rx.read(&mut pkt).unwrap());
    assert_eq!(rx.uncommitted_bytes(), expected_write);
    assert!(!rx.commit());
    assert_eq!(
        rx.memory().read_index().load(Ordering::Relaxed) as usize,
        expected_write
    );
    assert!(tx.is_empty().unwrap());
}

#[test]
fn packets_wrap_around_the_data_area() {
    let (mut tx, mut rx) = pair(1);
    let payload: Vec<u8> = (0..=255).cycle().take(1500).collect();
    let mut pkt = IncomingPacket::new();
    for round in 0..20u64 {
        tx.write(&inband(round, &payload)).unwrap();
        assert!(rx.read(&mut pkt).unwrap());
        rx.commit();
        assert_eq!(pkt.transaction_id(), round);
        assert_eq!(&pkt.payload()[..1500], &payload[..]);
    }
    // 20 packets of 1528 ring bytes went round a 4096-byte area several times.
    assert_eq!(
        tx.memory().write_index().load(Ordering::Relaxed) as usize,
        (20 * 1528) % 4096
    );
}

#[test]
fn the_ring_is_never_filled_completely() {
    let (mut tx, mut rx) = pair(1);
    // 16 + 4064 = 4080 packet bytes + 8 trailer = 4088: the largest that fits (free 4096 > 4088).
    let big = vec![0xAB; 4064];
    assert_eq!(inband(0, &big).ring_len(), 4088);
    assert!(matches!(
        tx.write(&inband(0, &[0; 4072])),
        Err(RingError::TooLarge { needed: 4096, .. })
    ));
    tx.write(&inband(1, &big)).unwrap();
    // 8 bytes free: not even an empty packet (24 ring bytes) fits.
    assert!(matches!(
        tx.write(&inband(2, &[])),
        Err(RingError::Full {
            needed: 24,
            free: 8
        })
    ));
    let mut pkt = IncomingPacket::new();
    assert!(rx.read(&mut pkt).unwrap());
    assert!(!rx.read(&mut pkt).unwrap());
    // Read but not committed: still no space for the producer.
    assert!(tx.write(&inband(2, &[])).is_err());
    rx.commit();
    tx.write(&inband(2, &[])).unwrap();
}

#[test]
fn producer_signals_only_an_unmasked_consumer_of_an_empty_ring() {
    let (mut tx, mut rx) = pair(2);
    rx.set_interrupt_mask(false);
    assert!(tx.write(&inband(1, b"a")).unwrap(), "empty ring, unmasked");
    assert!(
        !tx.write(&inband(2, b"b")).unwrap(),
        "consumer has not caught up"
    );
    let mut pkt = IncomingPacket::new();
    while rx.read(&mut pkt).unwrap() {}
    assert!(
        !tx.write(&inband(3, b"c")).unwrap(),
        "consumer read but did not commit"
    );
    while rx.read(&mut pkt).unwrap() {}
    rx.commit();
    rx.set_interrupt_mask(true);
    assert!(!tx.write(&inband(4, b"d")).unwrap(), "masked");
    while rx.read(&mut pkt).unwrap() {}
    rx.commit();

    // A batch signals once, for the empty-before-the-batch state.
    rx.set_interrupt_mask(false);
    for tid in 0..5 {
        tx.stage(&inband(tid, b"batch")).unwrap();
    }
    assert!(rx.is_empty().unwrap(), "staged packets are invisible");
    assert_eq!(tx.staged_bytes(), 5 * 32);
    assert!(tx.commit());
    assert!(!tx.commit(), "nothing staged");
    for tid in 0..5 {
        assert!(rx.read(&mut pkt).unwrap());
        assert_eq!(pkt.transaction_id(), tid);
    }
}

#[test]
fn arm_interrupt_reports_data_that_is_already_there() {
    let (mut tx, mut rx) = pair(1);
    rx.set_interrupt_mask(true);
    assert!(!rx.arm_interrupt());
    assert_eq!(rx.memory().interrupt_mask().load(Ordering::Relaxed), 0);
    rx.set_interrupt_mask(true);
    tx.write(&inband(1, b"x")).unwrap();
    assert!(rx.arm_interrupt());
    let mut pkt = IncomingPacket::new();
    assert!(rx.read(&mut pkt).unwrap());
    assert!(!rx.arm_interrupt());
}

#[test]
fn pending_send_size_wakes_the_producer_exactly_on_the_crossing() {
    let (mut tx, mut rx) = pair(1);
    // Four packets of 1024 ring bytes would fill the ring exactly; only three fit.
    let payload = vec![0u8; 1024 - 8 - 16];
    for tid in 0..3 {
        tx.write(&inband(tid, &payload)).unwrap();
    }
    let Err(RingError::Full { needed, free }) = tx.write(&inband(3, &payload)) else {
        panic!("expected a full ring");
    };
    assert_eq!((needed, free), (1024, 1024));
    assert!(!tx.request_space(needed).unwrap());
    assert_eq!(
        tx.memory().pending_send_size().load(Ordering::Relaxed),
        1032
    );

    let mut pkt = IncomingPacket::new();
    assert!(rx.read(&mut pkt).unwrap());
    assert!(rx.commit(), "free 1024 -> 2048 crosses 1032");
    assert!(rx.read(&mut pkt).unwrap());
    assert!(!rx.commit(), "already above the request: no second signal");
    tx.write(&inband(3, &payload)).unwrap();
    assert_eq!(
        tx.memory().pending_send_size().load(Ordering::Relaxed),
        0,
        "cleared once the space was obtained"
    );

    // Space already there when asking: the request is withdrawn at once.
    assert!(tx.request_space(1024).unwrap());
    assert_eq!(tx.memory().pending_send_size().load(Ordering::Relaxed), 0);
    assert!(matches!(
        tx.request_space(4096),
        Err(RingError::TooLarge { .. })
    ));
}

#[test]
fn consumer_ignores_pending_send_size_without_the_feature_bit() {
    let mem = ring_memory(1);
    let mut tx = OutgoingRing::new(mem.clone(), false).unwrap();
    let mut rx = IncomingRing::new(mem).unwrap();
    assert!(!tx.consumer_signals_space());
    let payload = vec![0u8; 1000];
    for tid in 0..3 {
        tx.write(&inband(tid, &payload)).unwrap();
    }
    tx.request_space(4000).unwrap();
    let mut pkt = IncomingPacket::new();
    while rx.read(&mut pkt).unwrap() {}
    assert!(!rx.commit());
}

fn write_header(mem: &SharedMemory, write: u32, read: u32) {
    mem.atomic_u32(RING_WRITE_INDEX_OFFSET)
        .unwrap()
        .store(write, Ordering::SeqCst);
    mem.atomic_u32(RING_READ_INDEX_OFFSET)
        .unwrap()
        .store(read, Ordering::SeqCst);
}

fn write_descriptor(mem: &SharedMemory, at: usize, ty: u16, off8: u16, len8: u16, flags: u16) {
    let desc = PacketDescriptor {
        packet_type: ty,
        data_offset8: off8,
        length8: len8,
        flags,
        transaction_id: 0x55,
    };
    mem.write_obj(RING_HEADER_SIZE + at, &desc).unwrap();
}

#[test]
fn corrupt_indices_and_framing_are_errors_not_panics() {
    let mem = ring_memory(1);
    let mut pkt = IncomingPacket::new();
    let corrupt = |mem: &SharedMemory| {
        let mut rx = IncomingRing::new(mem.clone()).unwrap();
        let mut pkt = IncomingPacket::new();
        matches!(rx.read(&mut pkt), Err(RingError::Corrupt { .. }))
    };
    write_header(&mem, 4096, 0);
    assert!(corrupt(&mem), "write index past the data area");
    write_header(&mem, 12, 0);
    assert!(corrupt(&mem), "unaligned write index");
    write_header(&mem, 16, 0);
    assert!(corrupt(&mem), "less than a descriptor and trailer");
    write_header(&mem, 0, 4100);
    assert!(IncomingRing::new(mem.clone()).is_err(), "bad read index");
    assert!(OutgoingRing::new(mem.clone(), false).is_ok());
    write_header(&mem, 0, 8);
    let mut tx = OutgoingRing::new(mem.clone(), false).unwrap();
    mem.atomic_u32(RING_READ_INDEX_OFFSET)
        .unwrap()
        .store(13, Ordering::SeqCst);
    assert!(matches!(
        tx.write(&inband(1, b"x")),
        Err(RingError::Corrupt { .. })
    ));

    // Length past the write index.
    write_header(&mem, 32, 0);
    write_descriptor(&mem, 0, 6, 2, 4, 0);
    assert!(corrupt(&mem));
    // Data offset below the descriptor, and past the packet.
    write_descriptor(&mem, 0, 6, 1, 3, 0);
    assert!(corrupt(&mem));
    write_descriptor(&mem, 0, 6, 4, 3, 0);
    assert!(corrupt(&mem));

    // Sound framing, bad content: consumed and reported with the transaction id.
    for (ty, flags) in [(8, 0), (6, 2)] {
        write_descriptor(&mem, 0, ty, 2, 3, flags);
        let mut rx = IncomingRing::new(mem.clone()).unwrap();
        let err = rx.read(&mut pkt).unwrap_err();
        assert!(
            matches!(
                err,
                RingError::InvalidPacket {
                    transaction_id: 0x55,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!rx.read(&mut pkt).unwrap(), "the bad packet was consumed");
    }
    // Transfer page header claiming more ranges than fit before the payload.
    write_header(&mem, 48, 0);
    write_descriptor(&mem, 0, 7, 4, 5, 0);
    mem.write_obj(
        RING_HEADER_SIZE + 16,
        &TransferPageHeader {
            transfer_page_set_id: 1,
            sender_owns_set: 0,
            reserved: 0,
            range_count: 2,
        },
    )
    .unwrap();
    let mut rx = IncomingRing::new(mem.clone()).unwrap();
    assert!(matches!(
        rx.read(&mut pkt),
        Err(RingError::InvalidPacket { .. })
    ));
    // GPA direct with no ranges, and with an offset past the page.
    write_descriptor(&mem, 0, 9, 4, 5, 0);
    for (count, offset) in [(0, 0), (1, 4096)] {
        mem.write_obj(
            RING_HEADER_SIZE + 16,
            &GpaDirectHeader {
                reserved: 0,
                range_count: count,
            },
        )
        .unwrap();
        mem.write_obj(
            RING_HEADER_SIZE + 24,
            &GpaRangeHeader {
                byte_count: 1,
                byte_offset: offset,
            },
        )
        .unwrap();
        let mut rx = IncomingRing::new(mem.clone()).unwrap();
        assert!(matches!(
            rx.read(&mut pkt),
            Err(RingError::InvalidPacket { .. })
        ));
    }
}

#[test]
fn invalid_outgoing_packets_are_refused() {
    let (mut tx, _rx) = pair(1);
    let pfns = [1u64];
    for ranges in [
        &[][..],
        &[GpaRange {
            byte_offset: 4096,
            byte_count: 1,
            pfns: &pfns,
        }],
        &[GpaRange {
            byte_offset: 4095,
            byte_count: 2,
            pfns: &pfns,
        }],
    ] {
        let p = OutgoingPacket {
            kind: OutgoingKind::GpaDirect { ranges },
            transaction_id: 0,
            completion_requested: false,
            payload: &[],
        };
        assert!(matches!(tx.write(&p), Err(RingError::InvalidOutgoing(_))));
    }
    assert_eq!(tx.memory().write_index().load(Ordering::Relaxed), 0);
}

#[test]
fn small_completions_are_read_in_place_and_everything_else_is_left_for_read() {
    let (mut tx, mut rx) = pair(1);
    let completion = |tid, payload| OutgoingPacket {
        kind: OutgoingKind::Completion,
        transaction_id: tid,
        completion_requested: false,
        payload,
    };
    let mut buf = [0u8; SMALL_PAYLOAD];
    let mut pkt = IncomingPacket::new();
    assert_eq!(rx.read_small_completion(&mut buf).unwrap(), Peek::Empty);
    tx.write(&completion(7, &[0x66, 0, 0, 0, 1, 0, 0, 0]))
        .unwrap();
    tx.write(&inband(8, b"in band")).unwrap();
    tx.write(&completion(9, &[5; 100])).unwrap();
    let Peek::Completion {
        transaction_id,
        payload,
    } = rx.read_small_completion(&mut buf).unwrap()
    else {
        panic!("a small completion")
    };
    assert_eq!(transaction_id, 7);
    assert_eq!(&buf[payload], &[0x66, 0, 0, 0, 1, 0, 0, 0]);
    // An in-band packet and a long completion: left, then read by `read`.
    for tid in [8, 9] {
        assert_eq!(rx.read_small_completion(&mut buf).unwrap(), Peek::Other);
        assert!(rx.read(&mut pkt).unwrap());
        assert_eq!(pkt.transaction_id(), tid);
    }
    assert_eq!(rx.read_small_completion(&mut buf).unwrap(), Peek::Empty);
    rx.commit();
    // A completion that wraps around the data area's end is left for `read` too: the three
    // packets took 32 + 32 + 128 bytes, a filler of 16 + 3848 + 8 brings the next one to
    // 4064, whose descriptor ends at 4080 and payload runs past 4096.
    let filler = [0u8; 3848];
    tx.write(&inband(10, &filler)).unwrap();
    assert!(rx.read(&mut pkt).unwrap());
    rx.commit();
    tx.write(&completion(11, &[3; 40])).unwrap();
    assert_eq!(rx.read_small_completion(&mut buf).unwrap(), Peek::Other);
    assert!(rx.read(&mut pkt).unwrap());
    assert_eq!(
        (pkt.transaction_id(), pkt.kind()),
        (11, IncomingKind::Completion)
    );
    assert_eq!(&pkt.payload()[..40], &[3; 40]);
}

// ---- property tests ----

#[derive(Clone, Debug)]
enum ModelKind {
    InBand,
    Completion,
    Gpa(Vec<(u32, u32, Vec<u64>)>),
    Xfer(u16, Vec<TransferPageRange>),
}

#[derive(Clone, Debug)]
struct ModelPacket {
    kind: ModelKind,
    tid: u64,
    rc: bool,
    payload: Vec<u8>,
}

impl ModelPacket {
    fn with<R>(&self, f: impl FnOnce(&OutgoingPacket<'_>) -> R) -> R {
        let gpa: Vec<GpaRange<'_>> = match &self.kind {
            ModelKind::Gpa(r) => r
                .iter()
                .map(|(o, c, p)| GpaRange {
                    byte_offset: *o,
                    byte_count: *c,
                    pfns: p,
                })
                .collect(),
            _ => Vec::new(),
        };
        let kind = match &self.kind {
            ModelKind::InBand => OutgoingKind::InBand,
            ModelKind::Completion => OutgoingKind::Completion,
            ModelKind::Gpa(_) => OutgoingKind::GpaDirect { ranges: &gpa },
            ModelKind::Xfer(set_id, ranges) => OutgoingKind::TransferPages {
                set_id: *set_id,
                ranges,
            },
        };
        f(&OutgoingPacket {
            kind,
            transaction_id: self.tid,
            completion_requested: self.rc,
            payload: &self.payload,
        })
    }

    fn check(&self, got: &IncomingPacket) {
        assert_eq!(got.transaction_id(), self.tid);
        assert_eq!(got.completion_requested(), self.rc);
        let n = self.payload.len();
        assert_eq!(&got.payload()[..n], &self.payload[..]);
        assert!(got.payload()[n..].iter().all(|&b| b == 0));
        assert!(got.payload().len() - n < 8);
        match &self.kind {
            ModelKind::InBand => assert_eq!(got.kind(), IncomingKind::InBand),
            ModelKind::Completion => assert_eq!(got.kind(), IncomingKind::Completion),
            ModelKind::Gpa(ranges) => {
                assert_eq!(got.kind(), IncomingKind::GpaDirect);
                let got: Vec<_> = got
                    .gpa_ranges()
                    .map(|r| (r.byte_offset, r.byte_count, r.pfns.to_vec()))
                    .collect();
                assert_eq!(&got, ranges);
            }
            ModelKind::Xfer(set_id, ranges) => {
                assert_eq!(got.kind(), IncomingKind::TransferPages { set_id: *set_id });
                assert_eq!(&got.transfer_ranges().collect::<Vec<_>>(), ranges);
            }
        }
    }
}

fn gpa_range() -> impl Strategy<Value = (u32, u32, Vec<u64>)> {
    (0u32..4096, 0u32..10_000).prop_flat_map(|(o, c)| {
        let n = gpa_page_count(o, c) as usize;
        prop::collection::vec(any::<u64>(), n).prop_map(move |p| (o, c, p))
    })
}

fn model_packet() -> impl Strategy<Value = ModelPacket> {
    let kind = prop_oneof![
        Just(ModelKind::InBand),
        Just(ModelKind::Completion),
        prop::collection::vec(gpa_range(), 1..4).prop_map(ModelKind::Gpa),
        (
            any::<u16>(),
            prop::collection::vec(
                (any::<u32>(), any::<u32>()).prop_map(|(c, o)| TransferPageRange {
                    byte_count: c,
                    byte_offset: o,
                }),
                0..8
            )
        )
            .prop_map(|(s, r)| ModelKind::Xfer(s, r)),
    ];
    (
        kind,
        any::<u64>(),
        any::<bool>(),
        // Half of them short enough for the small-packet path (`stage_small`), at every
        // length around its words.
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..=SMALL_PAYLOAD),
            prop::collection::vec(any::<u8>(), 0..700),
        ],
    )
        .prop_map(|(kind, tid, rc, payload)| ModelPacket {
            kind,
            tid,
            rc,
            payload,
        })
}

#[derive(Clone, Debug)]
enum Op {
    Write(ModelPacket),
    Stage(ModelPacket),
    Commit,
    Read,
    /// `read_small_completion`, then nothing more when it leaves the packet.
    ReadSmall,
    ReadCommit,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => model_packet().prop_map(Op::Write),
        2 => model_packet().prop_map(Op::Stage),
        1 => Just(Op::Commit),
        4 => Just(Op::Read),
        3 => Just(Op::ReadSmall),
        2 => Just(Op::ReadCommit),
    ]
}

proptest! {
    #[test]
    fn packets_round_trip_through_any_interleaving(
        pages in 1usize..3,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let (mut tx, mut rx) = pair(pages);
        let size = pages * 4096;
        let mut staged: VecDeque<ModelPacket> = VecDeque::new();
        let mut published: VecDeque<ModelPacket> = VecDeque::new();
        // Ring bytes in use as the producer sees them: staged + published + read-uncommitted.
        let mut used = 0usize;
        let mut uncommitted = 0usize;
        let mut pkt = IncomingPacket::new();
        for op in ops {
            match op {
                Op::Write(p) | Op::Stage(p) if p.with(|o| o.ring_len()) + 8 > size => {
                    let res = p.with(|o| tx.stage(o));
                    let too_large = matches!(res, Err(RingError::TooLarge { .. }));
                    prop_assert!(too_large, "{:?}", res);
                }
                Op::Write(p) | Op::Stage(p) if size - used <= p.with(|o| o.ring_len()) => {
                    let res = p.with(|o| tx.stage(o));
                    let full = matches!(res, Err(RingError::Full { free, .. }) if free == size - used);
                    prop_assert!(full, "{:?}", res);
                }
                Op::Write(p) => {
                    used += p.with(|o| o.ring_len());
                    p.with(|o| tx.write(o)).unwrap();
                    staged.push_back(p);
                    published.extend(staged.drain(..));
                }
                Op::Stage(p) => {
                    used += p.with(|o| o.ring_len());
                    p.with(|o| tx.stage(o)).unwrap();
                    staged.push_back(p);
                }
                Op::Commit => {
                    tx.commit();
                    published.extend(staged.drain(..));
                }
                Op::Read => {
                    let got = rx.read(&mut pkt).unwrap();
                    match published.pop_front() {
                        Some(p) => {
                            prop_assert!(got);
                            p.check(&pkt);
                            uncommitted += pkt.ring_len();
                        }
                        None => prop_assert!(!got),
                    }
                }
                Op::ReadSmall => {
                    let mut buf = [0u8; SMALL_PAYLOAD];
                    match (rx.read_small_completion(&mut buf).unwrap(), published.front()) {
                        (Peek::Empty, next) => prop_assert!(next.is_none()),
                        (Peek::Completion { transaction_id, payload }, Some(p)) => {
                            prop_assert!(matches!(p.kind, ModelKind::Completion));
                            prop_assert!(p.payload.len() <= SMALL_PAYLOAD);
                            prop_assert_eq!(transaction_id, p.tid);
                            let got = &buf[payload];
                            let n = p.payload.len();
                            prop_assert_eq!(&got[..n], &p.payload[..]);
                            prop_assert!(got[n..].iter().all(|&b| b == 0) && got.len() - n < 8);
                            uncommitted += p.with(|o| o.ring_len());
                            published.pop_front();
                        }
                        (Peek::Completion { .. }, None) => prop_assert!(false, "read from nothing"),
                        // Left for `read` (another kind, a long one, or one that wraps), which
                        // the next `Read` checks.
                        (Peek::Other, next) => prop_assert!(next.is_some()),
                    }
                }
                Op::ReadCommit => {
                    rx.commit();
                    used -= uncommitted;
                    uncommitted = 0;
                }
            }
            prop_assert_eq!(tx.used_bytes().unwrap(), used);
        }
        tx.commit();
        published.extend(staged.drain(..));
        while let Some(p) = published.pop_front() {
            prop_assert!(rx.read(&mut pkt).unwrap());
            p.check(&pkt);
        }
        prop_assert!(!rx.read(&mut pkt).unwrap());
    }

    #[test]
    fn garbage_in_the_ring_never_panics_the_reader(
        pages in 1usize..3,
        write in prop_oneof![any::<u32>(), (0u32..1024).prop_map(|i| i * 8)],
        read in prop_oneof![any::<u32>(), (0u32..1024).prop_map(|i| i * 8)],
        feature in any::<u32>(),
        pending in any::<u32>(),
        data in prop::collection::vec(any::<u8>(), 0..8192),
    ) {
        let mem = ring_memory(pages);
        mem.write(RING_HEADER_SIZE, &data[..data.len().min(pages * 4096)]).unwrap();
        write_header(&mem, write, read);
        mem.atomic_u32(RING_FEATURE_BITS_OFFSET).unwrap().store(feature, Ordering::SeqCst);
        mem.atomic_u32(RING_PENDING_SEND_SIZE_OFFSET).unwrap().store(pending, Ordering::SeqCst);
        if let Ok(mut rx) = IncomingRing::new(mem.clone()) {
            let mut pkt = IncomingPacket::new();
            let mut small = [0u8; SMALL_PAYLOAD];
            for i in 0..64 {
                if i % 2 == 0 {
                    match rx.read_small_completion(&mut small) {
                        Ok(Peek::Completion { payload, .. }) => {
                            let _ = &small[payload];
                            continue;
                        }
                        Ok(Peek::Other) => {}
                        Ok(Peek::Empty) | Err(_) => break,
                    }
                }
                match rx.read(&mut pkt) {
                    Ok(true) | Err(RingError::InvalidPacket { .. }) => {
                        let _ = pkt.payload();
                        let _ = pkt.gpa_ranges().count();
                    }
                    Ok(false) | Err(_) => break,
                }
            }
            rx.commit();
            rx.arm_interrupt();
        }
        if let Ok(mut tx) = OutgoingRing::new(mem, false) {
            let _ = tx.write(&inband(1, &[1; 100]));
            let _ = tx.request_space(200);
        }
    }
}
