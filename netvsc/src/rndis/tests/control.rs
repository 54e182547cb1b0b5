//! Control messages (INITIALIZE, QUERY, SET, KEEPALIVE, HALT, RESET, INDICATE_STATUS), real bytes.

use super::*;

#[test]
fn initialize_and_its_completion_match_the_transcript() {
    // handshake-0x60001 seq 16 (section 0) and seq 18 (rxbuf).
    let init = hex("020000001800000001000000010000000000000000400000");
    let RndisMessage::Initialize(req) = parse(&init) else {
        panic!("not INITIALIZE");
    };
    assert_eq!(req.request_id.get(), 1);
    assert_eq!((req.major_version.get(), req.minor_version.get()), (1, 0));
    assert_eq!(req.max_transfer_size.get(), GUEST_MAX_TRANSFER_SIZE);
    assert_eq!(
        encoded(|o| encode_initialize(o, 1, GUEST_MAX_TRANSFER_SIZE)),
        init
    );

    let done = hex(
        "020000803400000001000000000000000100000000000000010000000000000008000000ffffffef030000000000000000000000",
    );
    let RndisMessage::InitializeComplete(c) = parse(&done) else {
        panic!("not INITIALIZE_CMPLT");
    };
    assert_eq!(c.request_id.get(), 1);
    assert_eq!(c.status.get(), STATUS_SUCCESS);
    assert_eq!(c.device_flags.get(), DF_CONNECTIONLESS);
    assert_eq!(c.medium.get(), MEDIUM_802_3);
    assert_eq!(c.max_packets_per_message.get(), 8);
    assert_eq!(c.max_transfer_size.get(), 0xEFFF_FFFF);
    assert_eq!(c.packet_alignment_factor.get(), 3);
    assert_eq!(
        encoded(|o| encode_initialize_complete(o, &InitializeComplete::host_default(1))),
        done
    );
}

#[test]
fn query_mac_and_its_completion() {
    // rndis-control seq 20 (section 1) and seq 22 (rxbuf).
    let query = hex("040000001c0000000200000002010101000000001400000000000000");
    let RndisMessage::Query(q) = parse(&query) else {
        panic!("not QUERY");
    };
    assert_eq!((q.request_id, q.oid), (2, OID_802_3_CURRENT_ADDRESS));
    assert!(q.info.is_empty());
    assert_eq!(
        encoded(|o| encode_query(o, 2, OID_802_3_CURRENT_ADDRESS, &[])),
        query
    );

    let done = hex("040000801e0000000200000000000000060000001000000000155d010203");
    let RndisMessage::QueryComplete(c) = parse(&done) else {
        panic!("not QUERY_CMPLT");
    };
    assert_eq!((c.request_id, c.status), (2, STATUS_SUCCESS));
    assert_eq!(c.info, Span { offset: 24, len: 6 });
    assert_eq!(
        c.info.get(&done),
        Some(&[0x00, 0x15, 0x5d, 0x01, 0x02, 0x03][..])
    );
    let mac = [0x00, 0x15, 0x5d, 0x01, 0x02, 0x03];
    assert_eq!(
        encoded(|o| encode_query_complete(o, 2, STATUS_SUCCESS, &mac)),
        done
    );
}

#[test]
fn query_completions_for_frame_size_speed_and_media() {
    // rndis-control seq 26, 30, 34.
    for (text, request_id, value) in [
        (
            "040000801c00000003000000000000000400000010000000dc050000",
            3,
            1500u32,
        ),
        (
            "040000801c0000000400000000000000040000001000000000e1f505",
            4,
            100_000_000,
        ),
        (
            "040000801c0000000500000000000000040000001000000000000000",
            5,
            MEDIA_STATE_CONNECTED,
        ),
    ] {
        let bytes = hex(text);
        let RndisMessage::QueryComplete(c) = parse(&bytes) else {
            panic!("not QUERY_CMPLT");
        };
        assert_eq!(c.request_id, request_id);
        assert_eq!(c.info.get(&bytes), Some(&value.to_le_bytes()[..]));
        assert_eq!(
            encoded(|o| encode_query_complete(o, request_id, STATUS_SUCCESS, &value.to_le_bytes())),
            bytes
        );
    }
}

#[test]
fn packet_filter_set_and_completion() {
    // data-loopback seq 20 (section 1) and seq 22.
    let set = hex("0500000020000000020000000e0101000400000014000000000000000d000000");
    let RndisMessage::Set(s) = parse(&set) else {
        panic!("not SET");
    };
    assert_eq!((s.request_id, s.oid), (2, OID_GEN_CURRENT_PACKET_FILTER));
    assert_eq!(
        s.info.get(&set),
        Some(&DEFAULT_PACKET_FILTER.to_le_bytes()[..])
    );
    assert_eq!(DEFAULT_PACKET_FILTER, 0x0D);
    assert_eq!(
        encoded(|o| encode_set(
            o,
            2,
            OID_GEN_CURRENT_PACKET_FILTER,
            &DEFAULT_PACKET_FILTER.to_le_bytes()
        )),
        set
    );
    let done = hex("05000080100000000200000000000000");
    assert!(
        matches!(parse(&done), RndisMessage::SetComplete(c) if c.request_id == 2 && c.status == STATUS_SUCCESS)
    );
    assert_eq!(encoded(|o| encode_set_complete(o, 2, STATUS_SUCCESS)), done);
}

#[test]
fn unknown_oid_is_answered_not_supported_with_an_empty_buffer() {
    // rndis-misc seq 34 and 38.
    let query_done = hex("040000801800000005000000bb0000c00000000010000000");
    let RndisMessage::QueryComplete(c) = parse(&query_done) else {
        panic!("not QUERY_CMPLT");
    };
    assert_eq!(c.status, STATUS_NOT_SUPPORTED);
    assert!(c.info.is_empty());
    assert_eq!(
        encoded(|o| encode_query_complete(o, 5, STATUS_NOT_SUPPORTED, &[])),
        query_done
    );
    let set_done = hex("050000801000000006000000bb0000c0");
    assert_eq!(
        encoded(|o| encode_set_complete(o, 6, STATUS_NOT_SUPPORTED)),
        set_done
    );
}

#[test]
fn keepalive_halt_and_reset_match_the_transcripts() {
    // rndis-misc seq 40/42 (keepalive), 46 (halt); err-rndis-reset seq 20.
    let keepalive = hex("080000000c00000007000000");
    assert!(matches!(parse(&keepalive), RndisMessage::Keepalive(k) if k.request_id == 7));
    assert_eq!(encoded(|o| encode_keepalive(o, 7)), keepalive);
    let keepalive_done = hex("08000080100000000700000000000000");
    assert!(
        matches!(parse(&keepalive_done), RndisMessage::KeepaliveComplete(k) if k.request_id == 7 && k.status == 0)
    );
    assert_eq!(
        encoded(|o| encode_keepalive_complete(o, 7, STATUS_SUCCESS)),
        keepalive_done
    );
    let halt = hex("030000000c00000008000000");
    assert!(matches!(parse(&halt), RndisMessage::Halt(h) if h.request_id == 8));
    assert_eq!(encoded(|o| encode_halt(o, 8)), halt);
    let reset = hex("060000000c00000000000000");
    assert!(matches!(parse(&reset), RndisMessage::Reset(_)));
    assert_eq!(encoded(encode_reset), reset);
    let reset_done = encoded(|o| encode_reset_complete(o, STATUS_SUCCESS, 1));
    assert!(
        matches!(parse(&reset_done), RndisMessage::ResetComplete(r) if r.addressing_reset == 1)
    );
}

#[test]
fn link_indications_carry_no_buffer() {
    // link-down-up seq 25 and 28: 20 bytes, offset 0.
    for (text, status) in [
        (
            "07000000140000000c0001400000000000000000",
            STATUS_MEDIA_DISCONNECT,
        ),
        (
            "07000000140000000b0001400000000000000000",
            STATUS_MEDIA_CONNECT,
        ),
    ] {
        let bytes = hex(text);
        assert_eq!(
            parse(&bytes),
            RndisMessage::IndicateStatus(StatusIndication {
                status,
                buffer: Span::EMPTY
            })
        );
        assert_eq!(encoded(|o| encode_indicate_status(o, status, &[])), bytes);
    }
}
