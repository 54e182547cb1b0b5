//! Real bytes: every NVSP message of the transcripts, decoded and re-encoded.

use super::*;

#[test]
fn guest_init_0x60001_parses_and_reencodes_byte_for_byte() {
    // handshake-0x60001 seq 6.
    let bytes =
        hex("01000000010006000100060000000000000000000000000000000000000000000000000000000000");
    let NvspMessage::Init(init) = parse_guest(&bytes) else {
        panic!("not INIT");
    };
    assert_eq!(init.protocol_version.get(), VERSION_61);
    assert_eq!(init.protocol_version2.get(), VERSION_61);
    let built = NvspMessage::Init(MessageInit::new(VERSION_61)).to_vec(GUEST_MESSAGE_SIZE);
    assert_eq!(built, bytes);
}

#[test]
fn init_complete_from_host_decodes_status_and_reencodes_at_32_bytes() {
    // handshake-0x60001 seq 7 (32-byte INIT_COMPLETE even at 6.1).
    let bytes = hex("02000000ffffffff220000000100000000000000000000000000000000000000");
    let NvspMessage::InitComplete(done) = parse_host(&bytes) else {
        panic!("not INIT_COMPLETE");
    };
    assert_eq!(done.deprecated.get(), INVALID_PROTOCOL_VERSION);
    assert_eq!(done.maximum_mdl_chain_length.get(), MAX_MDL_CHAIN_LENGTH);
    assert_eq!(done.status.get(), STATUS_SUCCESS);
    let built = NvspMessage::InitComplete(MessageInitComplete::new(
        INVALID_PROTOCOL_VERSION,
        MAX_MDL_CHAIN_LENGTH,
        STATUS_SUCCESS,
    ))
    .to_vec(INIT_COMPLETE_MESSAGE_SIZE);
    assert_eq!(built, bytes);
}

#[test]
fn init_complete_for_v1_and_for_a_refused_version() {
    // handshake-0x2 seq 7: deprecated = 2.
    let v1 = hex("0200000002000000220000000100000000000000000000000000000000000000");
    let NvspMessage::InitComplete(done) = parse_host(&v1) else {
        panic!("not INIT_COMPLETE");
    };
    assert_eq!(done.deprecated.get(), 2);
    // handshake-retry: INIT 0x70000 is answered with status NONE (0), not FAILURE.
    let init =
        hex("01000000000007000000070000000000000000000000000000000000000000000000000000000000");
    assert!(!is_known_version(0x70000));
    assert!(
        matches!(parse_guest(&init), NvspMessage::Init(i) if i.protocol_version.get() == 0x70000)
    );
    let refused = hex("02000000ffffffff220000000000000000000000000000000000000000000000");
    let NvspMessage::InitComplete(done) = parse_host(&refused) else {
        panic!("not INIT_COMPLETE");
    };
    assert_eq!(done.status.get(), STATUS_NONE);
}

#[test]
fn ndis_config_has_its_u64_capabilities_at_unaligned_byte_12() {
    // handshake-0x60001 seq 8: mtu 1514, capabilities 0xac.
    let bytes =
        hex("7d000000ea05000000000000ac000000000000000000000000000000000000000000000000000000");
    let NvspMessage::SendNdisConfig(config) = parse_guest(&bytes) else {
        panic!("not NDIS_CONFIG");
    };
    assert_eq!(config.mtu.get(), 1514);
    assert_eq!(config.capabilities.get(), 0xac);
    let built = NvspMessage::SendNdisConfig(Message2SendNdisConfig::new(
        1500 + ETHERNET_HEADER_LEN,
        default_capabilities(VERSION_61),
    ))
    .to_vec(GUEST_MESSAGE_SIZE);
    assert_eq!(built, bytes);
    // A capability bit above 32 lands in bytes 16..20.
    let high = NvspMessage::SendNdisConfig(Message2SendNdisConfig::new(1514, 1 << 40)).to_vec(0);
    assert_eq!(high.len(), 20);
    assert_eq!(&high[12..20], &(1u64 << 40).to_le_bytes());
}

#[test]
fn default_capabilities_match_the_recorded_guest_per_version() {
    assert_eq!(default_capabilities(VERSION_2), 0x8);
    assert_eq!(default_capabilities(VERSION_4), 0x8);
    assert_eq!(default_capabilities(VERSION_5), 0x2c);
    assert_eq!(default_capabilities(VERSION_6), 0x2c);
    assert_eq!(default_capabilities(VERSION_61), 0xac);
}

#[test]
fn ndis_version_is_6_1_up_to_nvsp_4_and_6_30_above() {
    // handshake-0x60001 seq 10 (6.30) and handshake-0x2 seq 8 (6.1).
    let v630 =
        hex("64000000060000001e00000000000000000000000000000000000000000000000000000000000000");
    let v61 =
        hex("64000000060000000100000000000000000000000000000000000000000000000000000000000000");
    for (nvsp, bytes) in [
        (VERSION_61, &v630),
        (VERSION_5, &v630),
        (VERSION_4, &v61),
        (VERSION_1, &v61),
    ] {
        let built =
            NvspMessage::SendNdisVersion(Message1SendNdisVersion::new(ndis_version_for(nvsp)))
                .to_vec(GUEST_MESSAGE_SIZE);
        assert_eq!(&built, bytes, "nvsp {nvsp:#x}");
    }
    let NvspMessage::SendNdisVersion(v) = parse_guest(&v630) else {
        panic!("not NDIS_VERSION");
    };
    assert_eq!(v.ndis_version(), NDIS_VERSION_6_30);
}

#[test]
fn buffer_messages_from_the_handshake_round_trip() {
    // handshake-0x60001 seq 12 (101) and seq 14 (104).
    let recv =
        hex("6500000002000000feca000000000000000000000000000000000000000000000000000000000000");
    let NvspMessage::SendReceiveBuffer(m) = parse_guest(&recv) else {
        panic!("not SEND_RECEIVE_BUFFER");
    };
    assert_eq!((m.gpadl_handle.get(), m.id.get()), (2, RECEIVE_BUFFER_ID));
    assert_eq!(
        NvspMessage::SendReceiveBuffer(Message1SendReceiveBuffer::new(2, RECEIVE_BUFFER_ID))
            .to_vec(GUEST_MESSAGE_SIZE),
        recv
    );
    let send =
        hex("68000000030000000000000000000000000000000000000000000000000000000000000000000000");
    assert_eq!(
        NvspMessage::SendSendBuffer(Message1SendSendBuffer::new(3, SEND_BUFFER_ID))
            .to_vec(GUEST_MESSAGE_SIZE),
        send
    );
    // seq 15: SEND_SEND_BUFFER_COMPLETE, 40 bytes at 6.1.
    let done =
        hex("69000000010000000018000000000000000000000000000000000000000000000000000000000000");
    let NvspMessage::SendSendBufferComplete(c) = parse_host(&done) else {
        panic!("not SEND_SEND_BUFFER_COMPLETE");
    };
    assert_eq!(
        (c.status.get(), c.section_size.get()),
        (STATUS_SUCCESS, SEND_SECTION_SIZE)
    );
    let built = NvspMessage::SendSendBufferComplete(Message1SendSendBufferComplete::new(
        STATUS_SUCCESS,
        SEND_SECTION_SIZE,
    ))
    .to_vec(host_message_size(VERSION_61));
    assert_eq!(built, done);
}

#[test]
fn receive_buffer_complete_sections_and_linux_validation() {
    // handshake-0x60001 seq 13 (40 bytes) and handshake-0x2 seq 11 (32 bytes).
    for text in [
        "660000000100000001000000000000000e07000091000000eefe0300000000000000000000000000",
        "660000000100000001000000000000000e07000091000000eefe030000000000",
    ] {
        let bytes = hex(text);
        let NvspMessage::SendReceiveBufferComplete(done) = parse_host(&bytes) else {
            panic!("not SEND_RECEIVE_BUFFER_COMPLETE");
        };
        assert_eq!(done.status(), STATUS_SUCCESS);
        assert_eq!(done.num_sections(), 1);
        let sections: Vec<_> = done.sections().collect();
        assert_eq!(sections, vec![ReceiveBufferSection::new(0, 1806, 145)]);
        assert_eq!(sections[0].end_offset.get(), 261_870);
        let section = done.validate(262_144).expect("valid for a 64-page buffer");
        assert_eq!(section.num_sub_allocations.get(), 145);
        assert_eq!(
            done.validate(261_869),
            Err(NvspError::ReceiveBufferOverflow {
                size: 1806,
                count: 145,
                buffer_size: 261_869
            })
        );
        let mut out = [0u8; 64];
        let n = encode_receive_buffer_complete(
            &mut out,
            STATUS_SUCCESS,
            &[ReceiveBufferSection::new(0, 1806, 145)],
            bytes.len(),
        )
        .expect("fits");
        assert_eq!(&out[..n], &bytes[..]);
    }
}

fn receive_buffer_complete(status: u32, num_sections: u32, sections: &[[u32; 4]]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in [
        MESSAGE1_TYPE_SEND_RECEIVE_BUFFER_COMPLETE,
        status,
        num_sections,
    ] {
        bytes.extend_from_slice(&word.to_le_bytes());
    }
    for section in sections {
        for word in section {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
    }
    bytes
}

#[test]
fn receive_buffer_validation_rejects_what_linux_rejects() {
    let check = |bytes: &[u8]| match NvspMessage::parse(bytes).expect("parses") {
        NvspMessage::SendReceiveBufferComplete(done) => done.validate(1 << 20),
        other => panic!("unexpected {other:?}"),
    };
    let good = [0, 1806, 145, 261_870];
    assert!(check(&receive_buffer_complete(STATUS_SUCCESS, 1, &[good])).is_ok());
    assert_eq!(
        check(&receive_buffer_complete(STATUS_FAILURE, 1, &[good])),
        Err(NvspError::ReceiveBufferStatus {
            status: STATUS_FAILURE
        })
    );
    assert_eq!(
        check(&receive_buffer_complete(STATUS_SUCCESS, 2, &[good, good])),
        Err(NvspError::ReceiveBufferSectionCount { num_sections: 2 })
    );
    assert_eq!(
        check(&receive_buffer_complete(STATUS_SUCCESS, 0, &[])),
        Err(NvspError::ReceiveBufferSectionCount { num_sections: 0 })
    );
    assert_eq!(
        check(&receive_buffer_complete(
            STATUS_SUCCESS,
            1,
            &[[4096, 1806, 10, 0]]
        )),
        Err(NvspError::ReceiveBufferSectionOffset { offset: 4096 })
    );
    assert_eq!(
        check(&receive_buffer_complete(
            STATUS_SUCCESS,
            1,
            &[[0, 67, 10, 0]]
        )),
        Err(NvspError::ReceiveBufferSubAllocation {
            size: 67,
            count: 10
        })
    );
    assert_eq!(
        check(&receive_buffer_complete(
            STATUS_SUCCESS,
            1,
            &[[0, 1806, 0, 0]]
        )),
        Err(NvspError::ReceiveBufferSubAllocation {
            size: 1806,
            count: 0
        })
    );
    // size × count overflows u32 but not the u64 check.
    assert_eq!(
        check(&receive_buffer_complete(
            STATUS_SUCCESS,
            1,
            &[[0, u32::MAX, u32::MAX, 0]]
        )),
        Err(NvspError::ReceiveBufferOverflow {
            size: u32::MAX,
            count: u32::MAX,
            buffer_size: 1 << 20
        })
    );
    // One section claimed, none present.
    assert_eq!(
        check(&receive_buffer_complete(STATUS_SUCCESS, 1, &[])),
        Err(NvspError::Truncated {
            msg_type: MESSAGE1_TYPE_SEND_RECEIVE_BUFFER_COMPLETE,
            len: 12,
            min: 28
        })
    );
}

#[test]
fn receive_buffer_sections_never_read_past_the_message() {
    // A host claims a billion sections but sends two.
    let bytes = receive_buffer_complete(
        STATUS_SUCCESS,
        1_000_000_000,
        &[[0, 100, 1, 100], [100, 100, 1, 200]],
    );
    let NvspMessage::SendReceiveBufferComplete(done) = parse_host(&bytes) else {
        panic!("not SEND_RECEIVE_BUFFER_COMPLETE");
    };
    assert_eq!(done.sections_present(), 2);
    assert_eq!(done.sections().count(), 2);
    assert_eq!(done.section(1).map(|s| s.offset.get()), Some(100));
    assert_eq!(done.section(2), None);
    assert_eq!(done.section(usize::MAX), None);
}

#[test]
fn rndis_packet_messages_in_both_directions() {
    // handshake-0x60001 seq 16: guest control message in send section 0, 24 bytes.
    let guest =
        hex("6b000000010000000000000018000000000000000000000000000000000000000000000000000000");
    let NvspMessage::SendRndisPacket(p) = parse_guest(&guest) else {
        panic!("not SEND_RNDIS_PACKET");
    };
    assert_eq!(p.channel_type.get(), CONTROL_CHANNEL_TYPE);
    assert_eq!(p.send_buffer_section_index.get(), 0);
    assert_eq!(p.send_buffer_section_size.get(), 24);
    // seq 18: the host's transfer-page packet payload, no section.
    let host =
        hex("6b00000001000000ffffffff00000000000000000000000000000000000000000000000000000000");
    let built = NvspMessage::SendRndisPacket(Message1SendRndisPacket::new(
        CONTROL_CHANNEL_TYPE,
        NO_SEND_SECTION,
        0,
    ))
    .to_vec(PACKET_SIZE_V61);
    assert_eq!(built, host);
    // seq 17: 40-byte completion from the host; seq 19: the guest's 8-byte completion.
    let host_done =
        hex("6c000000010000000000000000000000000000000000000000000000000000000000000000000000");
    assert!(
        matches!(parse_host(&host_done), NvspMessage::SendRndisPacketComplete(c) if c.status == STATUS_SUCCESS)
    );
    let guest_done = hex("6c00000001000000");
    let built =
        NvspMessage::SendRndisPacketComplete(Message1SendRndisPacketComplete::new(STATUS_SUCCESS))
            .to_vec(0);
    assert_eq!(built, guest_done);
    assert!(matches!(
        parse_guest(&guest_done),
        NvspMessage::SendRndisPacketComplete(_)
    ));
    // err-bad-rndis-packet seq 25: FAILURE.
    let failed =
        hex("6c000000020000000000000000000000000000000000000000000000000000000000000000000000");
    assert!(
        matches!(parse_host(&failed), NvspMessage::SendRndisPacketComplete(c) if c.status == STATUS_FAILURE)
    );
}

#[test]
fn vf_association_and_host_switch_data_path() {
    // vf-host-remove seq 19 (offer), 28 (host 129, 8 bytes), 29 (removal).
    let offer =
        hex("80000000010000000700000000000000000000000000000000000000000000000000000000000000");
    let NvspMessage::SendVfAssociation(a) = parse_host(&offer) else {
        panic!("not VF_ASSOCIATION");
    };
    assert_eq!(
        (a.vf_allocated.get(), a.serial_number.get()),
        (VF_ALLOCATED, 7)
    );
    assert_eq!(
        NvspMessage::SendVfAssociation(Message4SendVfAssociation::new(true, 7))
            .to_vec(PACKET_SIZE_V61),
        offer
    );
    let switch = hex("8100000000000000");
    let NvspMessage::SwitchDataPath(s) = parse_host(&switch) else {
        panic!("not SWITCH_DATA_PATH");
    };
    assert_eq!(s.active_data_path.get(), DATA_PATH_SYNTHETIC);
    assert_eq!(
        NvspMessage::SwitchDataPath(Message4SwitchDataPath::new(DATA_PATH_SYNTHETIC))
            .to_vec(HOST_SWITCH_DATA_PATH_MESSAGE_SIZE),
        switch
    );
    let removed =
        hex("80000000000000000700000000000000000000000000000000000000000000000000000000000000");
    assert!(
        matches!(parse_host(&removed), NvspMessage::SendVfAssociation(a) if a.vf_allocated == VF_NOT_ALLOCATED && a.serial_number == 7)
    );
    // seq 25: the guest's switch to the VF, 40 bytes.
    let to_vf =
        hex("81000000010000000000000000000000000000000000000000000000000000000000000000000000");
    assert_eq!(
        NvspMessage::SwitchDataPath(Message4SwitchDataPath::new(DATA_PATH_VF))
            .to_vec(GUEST_MESSAGE_SIZE),
        to_vf
    );
}

#[test]
fn subchannel_request_and_completion_share_a_type_but_not_a_meaning() {
    // subchannels-4q seq 24 (request) and seq 25 (completion): the same bytes.
    let bytes =
        hex("85000000010000000300000000000000000000000000000000000000000000000000000000000000");
    let NvspMessage::SubchannelRequest(req) = parse_guest(&bytes) else {
        panic!("not a request");
    };
    assert_eq!(
        (req.operation.get(), req.num_sub_channels.get()),
        (SUBCHANNEL_OPERATION_ALLOCATE, 3)
    );
    let NvspMessage::SubchannelComplete(done) = parse_host(&bytes) else {
        panic!("not a completion");
    };
    assert_eq!(
        (done.status.get(), done.num_sub_channels.get()),
        (STATUS_SUCCESS, 3)
    );
    assert_eq!(
        NvspMessage::SubchannelRequest(Message5SubchannelRequest::allocate(3))
            .to_vec(GUEST_MESSAGE_SIZE),
        bytes
    );
    assert_eq!(
        NvspMessage::SubchannelComplete(Message5SubchannelComplete::new(STATUS_SUCCESS, 3))
            .to_vec(PACKET_SIZE_V61),
        bytes
    );
}

const INDIRECTION_TABLE_HEX: &str = "86000000100000000c0000000000000001000000020000000300000000000000010000000200000003000000000000000100000002000000030000000000000001000000020000000300000000000000";

#[test]
fn send_indirection_table_from_openvmm_reads_at_offset_12_at_every_version() {
    // subchannels-4q seq 35: 76 bytes (80 in the ring).
    let bytes = hex(INDIRECTION_TABLE_HEX);
    let NvspMessage::SendIndirectionTable(table) = parse_host(&bytes) else {
        panic!("not SEND_INDIRECTION_TABLE");
    };
    assert_eq!((table.count(), table.offset()), (16, 12));
    let expected: [u32; 16] = core::array::from_fn(|i| (i % 4) as u32);
    for version in VERSIONS {
        assert_eq!(table.effective_offset(version), 12);
        assert_eq!(table.table(version), Ok(expected));
    }
    let mut out = [0u8; 128];
    let n = encode_send_indirection_table(&mut out, &expected).expect("fits");
    assert_eq!(n, SEND_INDIRECTION_TABLE_MESSAGE_SIZE);
    assert_eq!(&out[..n], &bytes[..n]);
}

#[test]
fn send_indirection_table_legacy_offset_fixup_applies_up_to_nvsp_6() {
    // A 104-byte message whose offset field says 12, with the real table at byte 40.
    let mut bytes = vec![0u8; 104];
    bytes[..4].copy_from_slice(&MESSAGE5_TYPE_SEND_INDIRECTION_TABLE.to_le_bytes());
    bytes[4..8].copy_from_slice(&16u32.to_le_bytes());
    bytes[8..12].copy_from_slice(&12u32.to_le_bytes());
    // Junk where the offset field points, then the real table (the two overlap).
    for i in 0..16 {
        bytes[12 + 4 * i..16 + 4 * i].copy_from_slice(&0xdead_u32.to_le_bytes());
    }
    for i in 0..16 {
        bytes[40 + 4 * i..44 + 4 * i].copy_from_slice(&(i as u32).to_le_bytes());
    }
    let NvspMessage::SendIndirectionTable(table) = parse_host(&bytes) else {
        panic!("not SEND_INDIRECTION_TABLE");
    };
    let real: [u32; 16] = core::array::from_fn(|i| i as u32);
    assert_eq!(table.table(VERSION_6), Ok(real));
    assert_eq!(table.table(VERSION_5), Ok(real));
    // From 6.1 the host's offset is trusted.
    assert_eq!(table.table(VERSION_61).map(|t| t[0]), Ok(0xdead));
}

#[test]
fn send_indirection_table_rejects_bad_counts_and_offsets() {
    let message = |count: u32, offset: u32, len: usize| {
        let mut bytes = vec![0u8; len];
        bytes[..4].copy_from_slice(&MESSAGE5_TYPE_SEND_INDIRECTION_TABLE.to_le_bytes());
        bytes[4..8].copy_from_slice(&count.to_le_bytes());
        bytes[8..12].copy_from_slice(&offset.to_le_bytes());
        bytes
    };
    let table_of = |bytes: &[u8]| match NvspMessage::parse(bytes).expect("parses") {
        NvspMessage::SendIndirectionTable(t) => t.table(VERSION_61),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        table_of(&message(8, 12, 76)),
        Err(NvspError::IndirectionTableCount { count: 8 })
    );
    assert_eq!(
        table_of(&message(16, 13, 76)),
        Err(NvspError::IndirectionTableOutOfBounds {
            count: 16,
            offset: 13,
            len: 76
        })
    );
    assert_eq!(
        table_of(&message(16, u32::MAX, 76)),
        Err(NvspError::IndirectionTableOutOfBounds {
            count: 16,
            offset: u64::from(u32::MAX),
            len: 76
        })
    );
    // Header only: parses, but there is no table.
    assert!(table_of(&message(16, 12, 12)).is_err());
    // Shorter than the header: a parse error.
    assert_eq!(
        NvspMessage::parse(&message(16, 12, 12)[..11]),
        Err(NvspError::Truncated {
            msg_type: MESSAGE5_TYPE_SEND_INDIRECTION_TABLE,
            len: 11,
            min: 12
        })
    );
}

#[test]
fn oid_query_ex_and_its_not_supported_completion() {
    // rndis-misc seq 44 and 45.
    let query =
        hex("83000000800201040701010000000000000000000000000000000000000000000000000000000000");
    let NvspMessage::OidQueryEx(q) = parse_guest(&query) else {
        panic!("not OID_QUERY_EX");
    };
    assert_eq!(q.header.object_type, 0x80);
    assert_eq!(q.oid.get(), crate::rndis::OID_GEN_LINK_SPEED);
    let done =
        hex("84000000bb0000c00000000000000000000000000000000000000000000000000000000000000000");
    let NvspMessage::OidQueryExComplete(c) = parse_host(&done) else {
        panic!("not OID_QUERY_EX_COMPLETE");
    };
    assert_eq!(c.status.get(), crate::rndis::STATUS_NOT_SUPPORTED);
    assert_eq!(c.bytes.get(), 0);
}

#[test]
fn unknown_types_parse_to_unknown_and_short_messages_are_errors() {
    // err-unknown-nvsp-type: NVSP type 999.
    let bytes =
        hex("e7030000000000000000000000000000000000000000000000000000000000000000000000000000");
    assert_eq!(parse_guest(&bytes), NvspMessage::Unknown { msg_type: 999 });
    assert_eq!(parse_host(&bytes).to_vec(0), hex("e7030000"));
    assert_eq!(
        NvspMessage::parse(&[1, 0, 0]),
        Err(NvspError::NoMessageType { len: 3 })
    );
    assert_eq!(
        NvspMessage::parse(&[]),
        Err(NvspError::NoMessageType { len: 0 })
    );
    assert_eq!(
        NvspMessage::parse(&hex("0200000001000000")),
        Err(NvspError::Truncated {
            msg_type: MESSAGE_TYPE_INIT_COMPLETE,
            len: 8,
            min: 16
        })
    );
    assert_eq!(
        NvspMessage::parse(&hex("81000000")),
        Err(NvspError::Truncated {
            msg_type: MESSAGE4_TYPE_SWITCH_DATA_PATH,
            len: 4,
            min: 8
        })
    );
    assert_eq!(
        message_type_name(MESSAGE5_TYPE_SEND_INDIRECTION_TABLE),
        Some("SEND_INDIRECTION_TABLE")
    );
    assert_eq!(message_type_name(999), None);
}

#[test]
fn emit_reports_a_too_small_buffer() {
    let message = NvspMessage::Init(MessageInit::new(VERSION_61));
    let mut out = [0u8; 39];
    assert_eq!(
        message.emit(&mut out, GUEST_MESSAGE_SIZE),
        Err(NvspError::BufferTooSmall {
            msg_type: MESSAGE_TYPE_INIT,
            needed: 40,
            available: 39
        })
    );
    assert_eq!(message.emit(&mut out[..12], 0), Ok(12));
    assert_eq!(message.encoded_len(), 12);
}

#[test]
fn versions_are_listed_highest_first_and_sizes_follow_the_version() {
    assert!(VERSIONS.windows(2).all(|w| w[0] > w[1]));
    assert!(VERSIONS.iter().all(|&v| is_known_version(v)));
    assert_eq!(host_message_size(VERSION_61), 40);
    assert_eq!(host_message_size(VERSION_6), 28);
    assert_eq!(host_message_size(VERSION_1), 28);
}
