//! NDIS objects in OID buffers and indications, real bytes.

use super::*;
use crate::nvsp::{VERSION_4, VERSION_61};
use zerocopy::IntoBytes;

const OFFLOAD_CONFIG_INDICATION: &str = "07000000b0000000060002409c0000000c000000a7039c000200000000000000020000005501000002000000000000000200000055000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";

#[test]
fn offload_parameters_set_and_the_resulting_indication() {
    // rndis-control seq 40: SET OID_TCP_OFFLOAD_PARAMETERS, checksums TX+RX, LSOv2 on.
    let set = hex(
        "0500000038000000070000000c0201fc1c000000140000000000000080031c00040404040400000202000000000000000000000000000000",
    );
    let RndisMessage::Set(s) = parse(&set) else {
        panic!("not SET");
    };
    assert_eq!(s.oid, OID_TCP_OFFLOAD_PARAMETERS);
    let params =
        NdisOffloadParameters::parse(s.info.get(&set).expect("in message")).expect("valid");
    assert_eq!(
        params.header,
        NdisObjectHeader::new(NDIS_OBJECT_TYPE_DEFAULT, 3, 28)
    );
    assert_eq!(params.tcp4_checksum, NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED);
    assert_eq!(params.lsov2_ipv6, NDIS_OFFLOAD_PARAMETERS_ENABLED);
    let mut built = NdisOffloadParameters::new(VERSION_61);
    built.ipv4_checksum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED;
    built.tcp4_checksum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED;
    built.udp4_checksum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED;
    built.tcp6_checksum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED;
    built.udp6_checksum = NDIS_OFFLOAD_PARAMETERS_TX_RX_ENABLED;
    built.lsov2_ipv4 = NDIS_OFFLOAD_PARAMETERS_ENABLED;
    built.lsov2_ipv6 = NDIS_OFFLOAD_PARAMETERS_ENABLED;
    assert_eq!(built, params);
    assert_eq!(
        encoded(|o| encode_set(o, 7, OID_TCP_OFFLOAD_PARAMETERS, built.wire_bytes())),
        set
    );
    // At NVSP 4 Linux sends the same revision truncated to 22 bytes.
    assert_eq!(NdisOffloadParameters::new(VERSION_4).wire_bytes().len(), 22);

    // seq 43: INDICATE_STATUS TASK_OFFLOAD_CURRENT_CONFIG with a 156-byte NDIS_OFFLOAD.
    let indication = hex(OFFLOAD_CONFIG_INDICATION);
    let RndisMessage::IndicateStatus(s) = parse(&indication) else {
        panic!("not INDICATE_STATUS");
    };
    assert_eq!(s.status, STATUS_TASK_OFFLOAD_CURRENT_CONFIG);
    assert_eq!(
        s.buffer,
        Span {
            offset: 20,
            len: 156
        }
    );
    let buffer = s.buffer.get(&indication).expect("in message");
    let offload = NdisOffload::parse(buffer).expect("valid NDIS_OFFLOAD");
    assert_eq!(
        offload.header,
        NdisObjectHeader::new(NDIS_OBJECT_TYPE_OFFLOAD, 3, 156)
    );
    assert_eq!(
        offload.checksum.ipv4_tx_encapsulation.get(),
        NDIS_ENCAPSULATION_IEEE_802_3
    );
    assert_eq!(offload.checksum.ipv4_tx_flags.get(), 0);
    assert_eq!(
        offload.checksum.ipv4_rx_flags.get(),
        NDIS_CSUM_CAP_IP4_OPTIONS
            | NDIS_CSUM_CAP_TCP4_OPTIONS
            | NDIS_CSUM_CAP_TCP4
            | NDIS_CSUM_CAP_UDP4
            | NDIS_CSUM_CAP_IP4
    );
    assert_eq!(offload.checksum.ipv6_rx_flags.get(), 0x55);
    assert_eq!(offload.wire_bytes(), buffer);
    assert_eq!(
        encoded(|o| encode_indicate_status(o, STATUS_TASK_OFFLOAD_CURRENT_CONFIG, buffer)),
        indication
    );
}

#[test]
fn offload_hardware_capabilities_query_and_answer() {
    // rndis-offload-caps seq 20: the query carries a zeroed revision-3 object.
    let query = hex(
        "04000000b8000000020000000d0201fc9c0000001400000000000000a7039c000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    );
    let input = NdisOffload::query_input(VERSION_61);
    assert_eq!(input.wire_bytes().len(), 156);
    assert_eq!(
        encoded(|o| encode_query(
            o,
            2,
            OID_TCP_OFFLOAD_HARDWARE_CAPABILITIES,
            input.wire_bytes()
        )),
        query
    );
    assert_eq!(NdisOffload::query_input(VERSION_4).wire_bytes().len(), 144);
    assert_eq!(NdisOffload::query_input(0x2).wire_bytes().len(), 112);

    // seq 22: the endpoint claims TX checksums and TSO.
    let done = hex(
        "04000080b400000002000000000000009c00000010000000a7039c0002000000550100000200000055010000020000005500000002000000550000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000020000003cf5000002000000020000003cf500000200000005000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    );
    let RndisMessage::QueryComplete(c) = parse(&done) else {
        panic!("not QUERY_CMPLT");
    };
    let offload = NdisOffload::parse(c.info.get(&done).expect("in message")).expect("valid");
    assert_eq!(offload.checksum.ipv4_tx_flags.get(), 0x155);
    assert_eq!(offload.checksum.ipv6_tx_flags.get(), 0x55);
    assert_eq!(
        offload.lso_v2.ipv4_encapsulation.get(),
        NDIS_ENCAPSULATION_IEEE_802_3
    );
    assert_eq!(offload.lso_v2.ipv4_max_offload_size.get(), 0xF53C);
    assert_eq!(offload.lso_v2.ipv4_min_segment_count.get(), 2);
    assert_eq!(offload.lso_v2.ipv6_max_offload_size.get(), 0xF53C);
    assert_eq!(
        offload.lso_v2.ipv6_flags.get(),
        NDIS_LSOV2_CAP_IP6_EXTENSION_HEADERS | NDIS_LSOV2_CAP_TCP6_OPTIONS
    );
    assert_eq!((offload.rsc_ipv4, offload.rsc_ipv6), (0, 0));
}

#[test]
fn older_offload_revisions_parse_with_the_tail_zeroed() {
    let mut rev1 = NdisOffload::query_input(0x2);
    rev1.flags.set(0x1234);
    rev1.lso_v2.ipv4_max_offload_size.set(64_000);
    let bytes = rev1.wire_bytes().to_vec();
    let parsed = NdisOffload::parse(&bytes).expect("revision 1 parses");
    assert_eq!(parsed.flags.get(), 0x1234);
    assert_eq!(parsed.lso_v2.ipv4_max_offload_size.get(), 64_000);
    assert_eq!(parsed.header.size.get(), 112);
    // Too short for revision 1, wrong type, or a size beyond the buffer.
    assert!(NdisOffload::parse(&bytes[..111]).is_err());
    let mut wrong_type = bytes.clone();
    wrong_type[0] = NDIS_OBJECT_TYPE_DEFAULT;
    assert!(matches!(
        NdisOffload::parse(&wrong_type),
        Err(RndisError::BadObject {
            expected: NDIS_OBJECT_TYPE_OFFLOAD,
            object_type: NDIS_OBJECT_TYPE_DEFAULT,
            ..
        })
    ));
    // A newer, larger revision: what this struct knows is kept, the size clamped to it.
    let mut newer = NdisOffload::query_input(VERSION_61).wire_bytes().to_vec();
    newer.resize(200, 0x77);
    newer[1] = 4;
    newer[2..4].copy_from_slice(&200u16.to_le_bytes());
    let parsed = NdisOffload::parse(&newer).expect("a newer revision parses");
    assert_eq!(
        parsed.header,
        NdisObjectHeader::new(NDIS_OBJECT_TYPE_OFFLOAD, 4, 156)
    );
    assert_eq!(NdisOffload::parse(parsed.wire_bytes()), Ok(parsed));
    let mut too_small = bytes.clone();
    too_small[2..4].copy_from_slice(&100u16.to_le_bytes());
    assert!(NdisOffload::parse(&too_small).is_err());
}

#[test]
fn rss_capabilities_query_and_answer() {
    // rndis-control seq 46 (Linux-style 20-byte input) and seq 48 (18-byte answer).
    let query = hex(
        "040000003000000008000000030201001400000014000000000000008802140000000000000000000000000000000000",
    );
    assert_eq!(
        encoded(|o| encode_query(
            o,
            8,
            OID_GEN_RECEIVE_SCALE_CAPABILITIES,
            &NdisReceiveScaleCapabilities::query_input()
        )),
        query
    );
    let done =
        hex("040000802a00000008000000000000001200000010000000880212000103000001000000400000004000");
    let RndisMessage::QueryComplete(c) = parse(&done) else {
        panic!("not QUERY_CMPLT");
    };
    let info = c.info.get(&done).expect("in message");
    let caps = NdisReceiveScaleCapabilities::parse(info).expect("valid");
    assert_eq!(
        caps.capabilities_flags.get(),
        NDIS_RSS_CAPS_HASH_FUNCTION_TOEPLITZ
            | NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV4
            | NDIS_RSS_CAPS_HASH_TYPE_TCP_IPV6
    );
    assert_eq!(caps.number_of_receive_queues.get(), 64);
    assert_eq!(caps.number_of_indirection_table_entries.get(), 64);
    assert_eq!(caps.usable_indirection_table_entries(), 64);
    let built = NdisReceiveScaleCapabilities::new(0x301, 64, 64);
    assert_eq!(built.wire_bytes(), info);
    assert_eq!(
        encoded(|o| encode_query_complete(o, 8, STATUS_SUCCESS, built.wire_bytes())),
        done
    );
    // Linux's table-size rule.
    assert_eq!(
        NdisReceiveScaleCapabilities::new(0, 1, 0).usable_indirection_table_entries(),
        128
    );
    assert_eq!(
        NdisReceiveScaleCapabilities::new(0, 1, 512).usable_indirection_table_entries(),
        128
    );
}

#[test]
fn rss_parameters_match_the_four_queue_transcript() {
    // subchannels-4q seq 36: SET RSS parameters, 128 entries i % 4, Linux's key.
    let params = RssParameters {
        flags: 0,
        hash_information: DEFAULT_RSS_HASH_INFORMATION,
        indirection_table: (0..128).map(|i| i % 4).collect(),
        hash_key: RSS_HASH_KEY_MICROSOFT.to_vec(),
    };
    assert_eq!(DEFAULT_RSS_HASH_INFORMATION, 0x1701);
    let mut info = vec![0u8; params.encoded_len()];
    assert_eq!(params.encode(&mut info), Ok(592));
    let head = hex(
        "050000006c020000030000000402010050020000140000000000000089022800000000000117000000020000280000002800000028020000000000000000000000000000",
    );
    let set = encoded(|o| encode_set(o, 3, OID_GEN_RECEIVE_SCALE_PARAMETERS, &info));
    assert_eq!(set.len(), 620);
    assert_eq!(&set[..head.len()], &head[..]);
    assert_eq!(&set[68..72], &[0, 0, 0, 0]);
    assert_eq!(&set[72..76], &[1, 0, 0, 0]);
    assert_eq!(&set[580..], &RSS_HASH_KEY_MICROSOFT[..]);
    let RndisMessage::Set(s) = parse(&set) else {
        panic!("not SET");
    };
    assert_eq!(
        RssParameters::parse(s.info.get(&set).expect("in message")),
        Ok(params)
    );
}

#[test]
fn rss_parameters_reject_tables_and_keys_outside_the_buffer() {
    let params = RssParameters {
        flags: NDIS_RSS_PARAM_FLAG_DISABLE_RSS,
        hash_information: 0,
        indirection_table: vec![0; 16],
        hash_key: vec![7; 40],
    };
    let mut bytes = vec![0u8; params.encoded_len()];
    params.encode(&mut bytes).expect("fits");
    assert!(RssParameters::parse(&bytes[..bytes.len() - 1]).is_err());
    let mut odd = bytes.clone();
    odd[12..14].copy_from_slice(&63u16.to_le_bytes());
    assert!(matches!(
        RssParameters::parse(&odd),
        Err(RndisError::BadRssParameters {
            what: "indirection table",
            ..
        })
    ));
    let mut far = bytes.clone();
    far[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        RssParameters::parse(&far),
        Err(RndisError::BadRssParameters {
            what: "hash key",
            ..
        })
    ));
    let mut out = [0u8; 10];
    assert!(matches!(
        params.encode(&mut out),
        Err(RndisError::BufferTooSmall { .. })
    ));
}

#[test]
fn link_state_answer_matches_the_host() {
    // rndis-misc seq 30: OID_GEN_LINK_STATE, connected, 10 Gbit/s.
    let done = hex(
        "0400008040000000040000000000000028000000100000008001280001000000000000000000000000e40b540200000000e40b54020000000000000000000000",
    );
    let RndisMessage::QueryComplete(c) = parse(&done) else {
        panic!("not QUERY_CMPLT");
    };
    let info = c.info.get(&done).expect("in message");
    let state = NdisLinkState::parse(info).expect("valid");
    assert_eq!(
        state.media_connect_state.get(),
        NDIS_MEDIA_CONNECT_STATE_CONNECTED
    );
    assert_eq!(state.xmit_link_speed.get(), 10_000_000_000);
    assert_eq!(NdisLinkState::new(true, 10_000_000_000).as_bytes(), info);
}
