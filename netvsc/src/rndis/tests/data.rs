//! Data packets, PPIs and aggregated sections, real bytes.

use super::*;

const RX_HEADER_60: &str = "010000000e070000f80000003c0000000000000000000000000000002400000010000000000000000000000010000000000000000c00000000000000";
const RX_HEADER_1514: &str = "010000000e070000f8000000ea0500000000000000000000000000002400000010000000000000000000000010000000000000000c00000000000000";
const RX_HEADER_VLAN: &str = "010000000e070000f80000003c0000000000000000000000000000002400000020000000000000000000000010000000000000000c0000000000000010000000060000000c00000043060000";

#[test]
fn received_frames_parse_and_the_host_layout_is_reproduced_byte_for_byte() {
    // data-loopback seq 26 (60 bytes) and seq 30 (1514 bytes); data-vlan-ppi seq 26.
    let vlan = PacketInfo {
        checksum: Some(0),
        ieee8021q: Some(Ieee8021QInfo(0x643)),
        ..PacketInfo::default()
    };
    let plain = PacketInfo {
        checksum: Some(0),
        ..PacketInfo::default()
    };
    for (header, frame, info) in [
        (RX_HEADER_60, test_frame(BROADCAST_60, 60), plain),
        (RX_HEADER_1514, test_frame(UNICAST_1514, 1514), plain),
        (RX_HEADER_VLAN, test_frame(BROADCAST_60, 60), vlan),
    ] {
        let frame_hex: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        let rxbuf = poisoned_sub_allocation(&[(0, header), (256, &frame_hex)]);
        let RndisMessage::Packet(packet) = parse(&rxbuf) else {
            panic!("not PACKET");
        };
        assert_eq!(
            packet.frame,
            Span {
                offset: 256,
                len: frame.len()
            }
        );
        assert_eq!(packet.frame.get(&rxbuf), Some(&frame[..]));
        assert_eq!(packet.info, info);
        assert_eq!(packet.info.rx_checksum(), Some(RxChecksumInfo(0)));
        assert_eq!((packet.oob, packet.vc_handle), (None, 0));

        let mut built = vec![0xEE; 1806];
        assert_eq!(write_host_packet(&mut built, &frame, &info), Ok(1806));
        assert_eq!(built, rxbuf);
    }
    let tag = vlan.ieee8021q.expect("tagged");
    assert_eq!((tag.vlan_id(), tag.priority(), tag.cfi()), (100, 3, false));
    assert_eq!(Ieee8021QInfo::from_tci(tag.tci()), tag);
    assert_eq!(tag.tci(), (3 << 13) | 100);
}

#[test]
fn guest_packets_match_the_sections_the_guest_sent() {
    // data-loopback seq 24 (no PPI) and data-vlan-ppi seq 24 (802.1Q then checksum PPI).
    let plain = hex(
        "0100000068000000240000003c00000000000000000000000000000000000000000000000000000000000000",
    );
    let frame = test_frame(BROADCAST_60, 60);
    let mut expected = plain.clone();
    expected.extend_from_slice(&frame);
    assert_eq!(
        encoded(|o| write_packet(o, &frame, &PacketInfo::default())),
        expected
    );

    let tagged = hex(
        "0100000088000000440000003c0000000000000000000000000000002400000020000000000000000000000010000000060000000c0000004306000010000000000000000c00000000000000",
    );
    let info = PacketInfo {
        checksum: Some(0),
        ieee8021q: Some(Ieee8021QInfo::new(3, false, 100)),
        ..PacketInfo::default()
    };
    let mut expected = tagged.clone();
    expected.extend_from_slice(&frame);
    assert_eq!(packet_header_len(&info), 76);
    assert_eq!(encoded(|o| write_packet(o, &frame, &info)), expected);
    let RndisMessage::Packet(parsed) = parse(&expected) else {
        panic!("not PACKET");
    };
    assert_eq!(parsed.info, info);
    assert_eq!(
        parsed.frame,
        Span {
            offset: 76,
            len: 60
        }
    );
}

#[test]
fn gpa_direct_header_is_written_without_its_frame() {
    // data-gpa-direct seq 28: range 0 holds the 44-byte header of a 1514-byte frame.
    let header = hex(
        "010000001606000024000000ea05000000000000000000000000000000000000000000000000000000000000",
    );
    let mut out = [0xAAu8; 44];
    assert_eq!(
        write_packet_header(&mut out, 1514, &PacketInfo::default()),
        Ok(44)
    );
    assert_eq!(&out[..], &header[..]);
    // The transmit path's plain header is the same bytes, for its message length.
    let mut plain = [0x55u8; 44];
    assert_eq!(write_plain_packet_header(&mut plain, 1558, 1514), 44);
    assert_eq!(&plain[..], &header[..]);
    assert_eq!(write_plain_packet_header(&mut plain, 1560, 1514), 44);
    assert_eq!(&plain[4..8], &1560u32.to_le_bytes(), "a padded message");
    assert_eq!(&plain[8..], &header[8..]);
    let mut short = [0u8; 43];
    assert!(matches!(
        write_packet_header(&mut short, 1514, &PacketInfo::default()),
        Err(RndisError::BufferTooSmall {
            needed: 44,
            available: 43,
            ..
        })
    ));
}

#[test]
fn a_batched_section_splits_into_its_packets() {
    // data-batched seq 24: two 104-byte PACKET_MSGs in one 208-byte section.
    let first = test_frame(BROADCAST_60, 60);
    let mut second = first.clone();
    second[14] = 0xaa;
    let mut section = vec![0u8; 208];
    let n = write_packet(&mut section, &first, &PacketInfo::default()).expect("fits");
    write_packet(&mut section[n..], &second, &PacketInfo::default()).expect("fits");
    let messages: Vec<_> = Messages::new(&section)
        .collect::<Result<_, _>>()
        .expect("two messages");
    assert_eq!(
        messages
            .iter()
            .map(|(offset, m)| (*offset, m.len()))
            .collect::<Vec<_>>(),
        vec![(0, 104), (104, 104)]
    );
    let RndisMessage::Packet(p) = parse(messages[1].1) else {
        panic!("not PACKET");
    };
    assert_eq!(p.frame.get(messages[1].1), Some(&second[..]));
    // A trailing fragment ends the iteration with an error.
    let mut broken = section.clone();
    broken.extend_from_slice(&[1, 0, 0]);
    let results: Vec<_> = Messages::new(&broken).collect();
    assert_eq!(results.len(), 3);
    assert_eq!(results[2], Err(RndisError::NoHeader { len: 3 }));
}

#[test]
fn malformed_packets_are_errors() {
    // err-bad-rndis-packet seq 24: data_length 0.
    let empty = hex(
        "010000002c000000240000000000000000000000000000000000000000000000000000000000000000000000",
    );
    assert_eq!(RndisMessage::parse(&empty), Err(RndisError::EmptyFrame));
    let frame = test_frame(BROADCAST_60, 60);
    let good = encoded(|o| write_packet(o, &frame, &PacketInfo::default()));
    // data_offset pointing past the message.
    let mut bad = good.clone();
    bad[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        RndisMessage::parse(&bad),
        Err(RndisError::OutOfBounds { field: "data", .. })
    ));
    // message_length larger than the buffer, and smaller than a header.
    let mut bad = good.clone();
    bad[4..8].copy_from_slice(&105u32.to_le_bytes());
    assert_eq!(
        RndisMessage::parse(&bad),
        Err(RndisError::BadMessageLength {
            msg_type: 1,
            msg_len: 105,
            available: 104
        })
    );
    bad[4..8].copy_from_slice(&7u32.to_le_bytes());
    assert!(matches!(
        RndisMessage::parse(&bad),
        Err(RndisError::BadMessageLength { .. })
    ));
    // message_length that cuts the frame.
    let mut bad = good.clone();
    bad[4..8].copy_from_slice(&103u32.to_le_bytes());
    assert!(matches!(
        RndisMessage::parse(&bad),
        Err(RndisError::OutOfBounds { .. })
    ));
    // Shorter than the PACKET body.
    let mut bad = good[..40].to_vec();
    bad[4..8].copy_from_slice(&40u32.to_le_bytes());
    assert_eq!(
        RndisMessage::parse(&bad),
        Err(RndisError::Truncated {
            msg_type: 1,
            msg_len: 40,
            min: 44
        })
    );
    // Out-of-band data is bounds-checked and reported.
    let mut oob = good.clone();
    oob[20..24].copy_from_slice(&4u32.to_le_bytes()); // oob_data_length
    oob[16..20].copy_from_slice(&36u32.to_le_bytes()); // oob_data_offset
    let RndisMessage::Packet(p) = parse(&oob) else {
        panic!("not PACKET");
    };
    assert_eq!(p.oob, Some(Span { offset: 44, len: 4 }));
    assert_eq!(
        RndisMessage::parse(&[1, 0, 0, 0, 8, 0, 0]),
        Err(RndisError::NoHeader { len: 7 })
    );
}

#[test]
fn malformed_ppi_areas_are_errors() {
    let element = |size: u32, ppi_type: u32, offset: u32, value: u32| {
        let mut e = Vec::new();
        for w in [size, ppi_type, offset, value] {
            e.extend_from_slice(&w.to_le_bytes());
        }
        e
    };
    assert_eq!(PacketInfo::parse(&[]), Ok(PacketInfo::default()));
    assert!(matches!(
        PacketInfo::parse(&element(0, 0, 12, 0)),
        Err(RndisError::BadPpi { offset: 0, .. })
    ));
    assert!(matches!(
        PacketInfo::parse(&element(20, 0, 12, 0)),
        Err(RndisError::BadPpi { .. })
    ));
    assert!(matches!(
        PacketInfo::parse(&element(16, 0, 4, 0)),
        Err(RndisError::BadPpi { .. })
    ));
    assert!(matches!(
        PacketInfo::parse(&element(16, 0, 17, 0)),
        Err(RndisError::BadPpi { .. })
    ));
    // A known type with a 2-byte value.
    assert!(matches!(
        PacketInfo::parse(&element(16, PPI_IEEE_8021Q, 14, 0)),
        Err(RndisError::BadPpi { .. })
    ));
    // A header cut short after a good element: the error names the second element.
    let mut area = element(16, PPI_HASH_VALUE, 12, 5);
    area.extend_from_slice(&[0; 8]);
    assert_eq!(
        PacketInfo::parse(&area),
        Err(RndisError::BadPpi {
            offset: 16,
            reason: "header truncated"
        })
    );
    // Unknown types are skipped; the first of a repeated type wins.
    let mut area = element(16, 0x42, 12, 9);
    area.extend(element(16, PPI_HASH_VALUE, 12, 5));
    area.extend(element(16, PPI_HASH_VALUE, 12, 6));
    area.extend(element(20, PPI_HASH_INFO, 16, 0xFFFF_FFFF));
    area.extend_from_slice(&0x1701u32.to_le_bytes());
    let info = PacketInfo::parse(&area).expect("valid");
    assert_eq!(info.hash_value, Some(5));
    assert_eq!(info.hash_info, Some(0x1701));
    assert_eq!(info.count(), 2);
}

#[test]
fn ppi_bit_fields_decode_as_specified() {
    let lso = LsoV2Info::new(1448, 34, true);
    assert_eq!(
        (
            lso.mss(),
            lso.tcp_header_offset(),
            lso.is_ipv6(),
            lso.is_lso_v2()
        ),
        (1448, 34, true, true)
    );
    assert_eq!(lso.0, 1448 | (34 << 20) | (1 << 30) | (1 << 31));
    let csum = TxChecksumInfo::new(TxChecksumInfo::IS_IPV4 | TxChecksumInfo::TCP_CHECKSUM, 34);
    assert!(csum.is_ipv4() && csum.tcp_checksum() && !csum.udp_checksum() && !csum.is_ipv6());
    assert_eq!(csum.tcp_header_offset(), 34);
    assert_eq!(csum.0, 0b101 | (34 << 16));
    let id = PacketIdInfo::new(1, PacketIdInfo::FLAG_FIRST_FRAGMENT, 0xBEEF);
    assert_eq!((id.version(), id.flags(), id.id()), (1, 2, 0xBEEF));
    assert!(RxChecksumInfo(RxChecksumInfo::UDP_CHECKSUM_FAILED).any_failed());
    assert!(RxChecksumInfo(RxChecksumInfo::TCP_CHECKSUM_SUCCEEDED).tcp_checksum_succeeded());
}

#[test]
fn host_packet_needs_room_for_the_frame_at_byte_256() {
    let frame = [0x55u8; 1551];
    let mut out = vec![0u8; 1806];
    assert!(matches!(
        write_host_packet(&mut out, &frame, &PacketInfo::default()),
        Err(RndisError::BufferTooSmall {
            needed: 1807,
            available: 1806,
            ..
        })
    ));
    assert_eq!(
        write_host_packet(&mut out, &frame[..1550], &PacketInfo::default()),
        Ok(1806)
    );
    let RndisMessage::Packet(p) = parse(&out) else {
        panic!("not PACKET");
    };
    assert_eq!(
        p.frame,
        Span {
            offset: HOST_RX_FRAME_OFFSET,
            len: 1550
        }
    );
}

#[test]
fn unknown_types_parse_to_unknown_and_reemit_as_a_bare_header() {
    let bytes = hex("990000000c00000000000000");
    assert_eq!(parse(&bytes), RndisMessage::Unknown { msg_type: 0x99 });
    let mut out = [0u8; 16];
    assert_eq!(parse(&bytes).emit(&bytes, &mut out), Ok(8));
    assert_eq!(&out[..8], &hex("9900000008000000")[..]);
    assert_eq!(
        message_type_name(MESSAGE_TYPE_KEEPALIVE_CMPLT),
        Some("KEEPALIVE_CMPLT")
    );
    assert_eq!(oid_name(OID_GEN_LINK_STATE), Some("OID_GEN_LINK_STATE"));
    assert_eq!(status_name(STATUS_MEDIA_CONNECT), Some("MEDIA_CONNECT"));
}
