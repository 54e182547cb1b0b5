//! Property tests: every codec round-trips, and no input makes a parser panic.

use super::*;
use proptest::prelude::*;
use zerocopy::IntoBytes;

fn packet_info() -> impl Strategy<Value = PacketInfo> {
    (
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(
            |(checksum, lso, vlan, hash_value, hash_info, packet_id)| PacketInfo {
                checksum,
                lso: lso.map(LsoV2Info),
                ieee8021q: vlan.map(Ieee8021QInfo),
                hash_value,
                hash_info,
                packet_id: packet_id.map(PacketIdInfo),
            },
        )
}

proptest! {
    #[test]
    fn guest_packets_round_trip(frame in proptest::collection::vec(any::<u8>(), 1..1600), info in packet_info()) {
        let mut out = vec![0u8; 2000];
        let n = write_packet(&mut out, &frame, &info).expect("fits");
        prop_assert_eq!(n, packet_header_len(&info) + frame.len());
        let RndisMessage::Packet(p) = RndisMessage::parse(&out[..n]).expect("parses") else {
            panic!("not PACKET");
        };
        prop_assert_eq!(p.frame.get(&out), Some(&frame[..]));
        prop_assert_eq!(p.frame.offset, packet_header_len(&info));
        prop_assert_eq!(p.info, info);
    }

    #[test]
    fn plain_padded_packets_parse_to_their_frame(
        frame in proptest::collection::vec(any::<u8>(), 1..1600),
        pad in 0usize..64,
    ) {
        let total = PACKET_MESSAGE_SIZE + frame.len() + pad;
        let mut out = vec![0u8; total];
        let head = out.first_chunk_mut::<PACKET_MESSAGE_SIZE>().unwrap();
        write_plain_packet_header(head, total as u32, frame.len() as u32);
        out[PACKET_MESSAGE_SIZE..PACKET_MESSAGE_SIZE + frame.len()].copy_from_slice(&frame);
        let RndisMessage::Packet(p) = RndisMessage::parse(&out).expect("parses") else {
            panic!("not PACKET");
        };
        prop_assert_eq!(p.frame.get(&out), Some(&frame[..]));
        prop_assert_eq!(p.info, PacketInfo::default());
    }

    #[test]
    fn host_packets_round_trip(
        frame in proptest::collection::vec(any::<u8>(), 1..1550),
        info in packet_info(),
        slack in 0usize..64,
    ) {
        let mut out = vec![0xEEu8; HOST_RX_FRAME_OFFSET + frame.len() + slack];
        let len = out.len();
        prop_assert_eq!(write_host_packet(&mut out, &frame, &info), Ok(len));
        let RndisMessage::Packet(p) = RndisMessage::parse(&out).expect("parses") else {
            panic!("not PACKET");
        };
        prop_assert_eq!(p.frame, Span { offset: HOST_RX_FRAME_OFFSET, len: frame.len() });
        prop_assert_eq!(p.info, info);
        prop_assert!(out[packet_header_len(&info)..HOST_RX_FRAME_OFFSET].iter().all(|&b| b == 0xEE));
        // The header alone, for a host that writes the frame itself: the same bytes.
        let mut header = vec![0u8; packet_header_len(&info)];
        prop_assert_eq!(
            write_host_packet_header(&mut header, len, frame.len(), &info),
            Ok(header.len())
        );
        prop_assert_eq!(&header[..], &out[..header.len()]);
        prop_assert!(write_host_packet_header(&mut header, HOST_RX_FRAME_OFFSET + frame.len() - 1,
            frame.len(), &info).is_err());
    }

    #[test]
    fn oid_requests_and_completions_round_trip(
        request_id in any::<u32>(),
        oid in any::<u32>(),
        status in any::<u32>(),
        info in proptest::collection::vec(any::<u8>(), 0..200),
        which in 0usize..4,
    ) {
        let mut out = vec![0u8; 256];
        let n = match which {
            0 => encode_query(&mut out, request_id, oid, &info),
            1 => encode_set(&mut out, request_id, oid, &info),
            2 => encode_oid_request(&mut out, MESSAGE_TYPE_SET_EX_MSG, request_id, oid, &info),
            _ => encode_query_complete(&mut out, request_id, status, &info),
        }
        .expect("fits");
        let bytes = &out[..n];
        match (which, RndisMessage::parse(bytes).expect("parses")) {
            (0, RndisMessage::Query(r)) | (1, RndisMessage::Set(r)) | (2, RndisMessage::SetEx(r)) => {
                prop_assert_eq!((r.request_id, r.oid, r.device_vc_handle), (request_id, oid, 0));
                prop_assert_eq!(r.info.get(bytes), Some(&info[..]));
            }
            (3, RndisMessage::QueryComplete(c)) => {
                prop_assert_eq!((c.request_id, c.status), (request_id, status));
                prop_assert_eq!(c.info.get(bytes), Some(&info[..]));
            }
            (_, other) => prop_assert!(false, "wrong variant {:?}", other),
        }
    }

    #[test]
    fn fixed_messages_round_trip(a in any::<u32>(), b in any::<u32>(), which in 0usize..9) {
        let mut out = [0u8; 64];
        let n = match which {
            0 => encode_initialize(&mut out, a, b),
            1 => encode_halt(&mut out, a),
            2 => encode_keepalive(&mut out, a),
            3 => encode_keepalive_complete(&mut out, a, b),
            4 => encode_set_complete(&mut out, a, b),
            5 => encode_reset_complete(&mut out, a, b),
            6 => encode_reset(&mut out),
            7 => {
                let mut complete = InitializeComplete::host_default(a);
                complete.status.set(b);
                encode_initialize_complete(&mut out, &complete)
            }
            _ => encode_indicate_status(&mut out, a, &b.to_le_bytes()),
        }
        .expect("fits");
        let message = RndisMessage::parse(&out[..n]).expect("parses");
        let ok = match message {
            RndisMessage::Initialize(m) => which == 0 && m.request_id == a && m.max_transfer_size == b,
            RndisMessage::Halt(m) => which == 1 && m.request_id == a,
            RndisMessage::Keepalive(m) => which == 2 && m.request_id == a,
            RndisMessage::KeepaliveComplete(m) => which == 3 && m.request_id == a && m.status == b,
            RndisMessage::SetComplete(m) => which == 4 && m.request_id == a && m.status == b,
            RndisMessage::ResetComplete(m) => which == 5 && m.status == a && m.addressing_reset == b,
            RndisMessage::Reset(m) => which == 6 && m.reserved == 0,
            RndisMessage::InitializeComplete(m) => which == 7 && m.request_id == a && m.status == b,
            RndisMessage::IndicateStatus(s) => {
                which == 8 && s.status == a && s.buffer.get(&out[..n]) == Some(&b.to_le_bytes()[..])
            }
            _ => false,
        };
        prop_assert!(ok, "{:?} from builder {}", message, which);
    }

    #[test]
    fn rss_parameters_round_trip(
        flags in any::<u16>(),
        hash_information in any::<u32>(),
        table in proptest::collection::vec(any::<u32>(), 0..256),
        key in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let params = RssParameters { flags, hash_information, indirection_table: table, hash_key: key };
        let mut out = vec![0u8; params.encoded_len()];
        prop_assert_eq!(params.encode(&mut out), Ok(params.encoded_len()));
        prop_assert_eq!(RssParameters::parse(&out), Ok(params));
    }

    #[test]
    fn ndis_objects_round_trip(raw in any::<[u8; 156]>(), revision in 1u8..4) {
        use zerocopy::FromBytes;
        let mut offload = NdisOffload::read_from_bytes(&raw).expect("156 bytes");
        let size = [0, 112, 144, 156][usize::from(revision)];
        offload.header = NdisObjectHeader::new(NDIS_OBJECT_TYPE_OFFLOAD, revision, size);
        let parsed = NdisOffload::parse(offload.wire_bytes()).expect("parses");
        prop_assert_eq!(parsed.wire_bytes(), offload.wire_bytes());
        prop_assert!(parsed.as_bytes()[usize::from(size)..].iter().all(|&b| b == 0));

        let mut params = NdisOffloadParameters::read_from_prefix(&raw).expect("28 bytes").0;
        params.header = NdisObjectHeader::new(NDIS_OBJECT_TYPE_DEFAULT, 3, 28);
        prop_assert_eq!(NdisOffloadParameters::parse(params.wire_bytes()), Ok(params));

        let mut caps = NdisReceiveScaleCapabilities::read_from_prefix(&raw).expect("18 bytes").0;
        caps.header = NdisObjectHeader::new(NDIS_OBJECT_TYPE_RSS_CAPABILITIES, 2, 18);
        prop_assert_eq!(NdisReceiveScaleCapabilities::parse(caps.wire_bytes()), Ok(caps));

        let mut state = NdisLinkState::read_from_prefix(&raw).expect("40 bytes").0;
        state.header = NdisObjectHeader::new(NDIS_OBJECT_TYPE_DEFAULT, 1, 40);
        prop_assert_eq!(NdisLinkState::parse(state.as_bytes()), Ok(state));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_parsed_messages_reemit_equivalently(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        check_reemit(&bytes)?;
        let _ = Messages::new(&bytes).count();
        let _ = PacketInfo::parse(&bytes);
        let _ = NdisOffload::parse(&bytes);
        let _ = NdisOffloadParameters::parse(&bytes);
        let _ = NdisReceiveScaleCapabilities::parse(&bytes);
        let _ = RssParameters::parse(&bytes);
        let _ = NdisLinkState::parse(&bytes);
    }

    #[test]
    fn known_types_with_plausible_lengths_never_panic(
        msg_type in proptest::sample::select(vec![
            1u32, 2, 3, 4, 5, 6, 7, 8, 9,
            0x8000_0002, 0x8000_0004, 0x8000_0005, 0x8000_0006, 0x8000_0008,
        ]),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        small_words in proptest::collection::vec(0u32..400, 9),
    ) {
        // A valid header, then fields that are mostly small so offsets land near the buffer.
        let mut bytes = msg_type.to_le_bytes().to_vec();
        bytes.extend_from_slice(&((8 + body.len()) as u32).to_le_bytes());
        bytes.extend_from_slice(&body);
        for (i, word) in small_words.iter().enumerate() {
            let at = 8 + 4 * i;
            if at + 4 <= bytes.len() {
                bytes[at..at + 4].copy_from_slice(&word.to_le_bytes());
            }
        }
        check_reemit(&bytes)?;
    }
}

/// Parses `bytes`; if that works, emits the message and checks that the result parses to the
/// same message with the same variable parts.
fn check_reemit(bytes: &[u8]) -> Result<(), TestCaseError> {
    let Ok(message) = RndisMessage::parse(bytes) else {
        return Ok(());
    };
    let mut out = vec![0u8; bytes.len() + 256];
    let n = message
        .emit(bytes, &mut out)
        .expect("a parsed message re-emits");
    let again = RndisMessage::parse(&out[..n]).expect("an emitted message parses");
    prop_assert_eq!(again.msg_type(), message.msg_type());
    let spans = |m: &RndisMessage, src: &[u8]| -> Option<Vec<u8>> {
        match m {
            RndisMessage::Packet(p) => p.frame.get(src).map(<[u8]>::to_vec),
            RndisMessage::Query(r) | RndisMessage::Set(r) | RndisMessage::SetEx(r) => {
                r.info.get(src).map(<[u8]>::to_vec)
            }
            RndisMessage::QueryComplete(c) => c.info.get(src).map(<[u8]>::to_vec),
            RndisMessage::IndicateStatus(s) => s.buffer.get(src).map(<[u8]>::to_vec),
            _ => None,
        }
    };
    prop_assert_eq!(spans(&again, &out[..n]), spans(&message, bytes));
    match (message, again) {
        (RndisMessage::Packet(a), RndisMessage::Packet(b)) => prop_assert_eq!(a.info, b.info),
        (RndisMessage::Query(a), RndisMessage::Query(b))
        | (RndisMessage::Set(a), RndisMessage::Set(b))
        | (RndisMessage::SetEx(a), RndisMessage::SetEx(b)) => {
            prop_assert_eq!((a.request_id, a.oid), (b.request_id, b.oid))
        }
        (RndisMessage::QueryComplete(a), RndisMessage::QueryComplete(b)) => {
            prop_assert_eq!((a.request_id, a.status), (b.request_id, b.status))
        }
        (RndisMessage::IndicateStatus(a), RndisMessage::IndicateStatus(b)) => {
            prop_assert_eq!(a.status, b.status)
        }
        (a, b) => prop_assert_eq!(a, b),
    }
    Ok(())
}

/// What `for_each_known` reports for `area`.
fn walk(area: &[u8]) -> Result<Vec<(u32, u32)>, RndisError> {
    let mut found = Vec::new();
    for_each_known(area, |ppi_type, value| found.push((ppi_type, value)))?;
    Ok(found)
}

proptest! {
    /// The walk takes a 16-byte element (value right after the header) in a short cut; any
    /// other layout in full. Both report the same: elements written 16 bytes long, and the
    /// same elements padded (their value further in, which the short cut does not take), in
    /// any mix, give the same values in the same order, and garbage after them the same error.
    #[test]
    fn the_walk_reports_the_same_for_short_and_padded_elements(
        elements in proptest::collection::vec(
            (prop_oneof![Just(0u32), Just(2), Just(6), Just(7), Just(8), Just(9),
                Just(0x8000_0001), any::<u32>()], any::<u32>(), any::<bool>()),
            0..6,
        ),
        garbage in proptest::collection::vec(any::<u8>(), 0..24),
    ) {
        let (mut short, mut mixed, mut padded) = (Vec::new(), Vec::new(), Vec::new());
        for &(ppi_type, value, pad) in &elements {
            let plain = [16, ppi_type, 12, value];
            let long = [20, ppi_type, 16, 0xdead_beef, value];
            short.extend(plain.iter().flat_map(|f| f.to_le_bytes()));
            padded.extend(long.iter().flat_map(|f| f.to_le_bytes()));
            let either: &[u32] = if pad { &long } else { &plain };
            mixed.extend(either.iter().flat_map(|f| f.to_le_bytes()));
        }
        let expected = walk(&short).unwrap();
        prop_assert_eq!(walk(&padded).unwrap(), expected.clone());
        prop_assert_eq!(walk(&mixed).unwrap(), expected);
        // Garbage after the elements: the same verdict whichever way the elements before it
        // were taken (an error names its position, which the padding moves).
        let verdict = |area: &[u8]| walk(&[area, &garbage].concat()).map(|found| found.len()).ok();
        prop_assert_eq!(verdict(&short), verdict(&padded));
    }
}
