//! Property tests: every message round-trips, and no input makes the parser panic.

use super::*;
use proptest::prelude::*;

/// Any fixed-size message, with arbitrary field values, and who sends it.
fn fixed_message() -> impl Strategy<Value = (Sender, NvspMessage<'static>)> {
    (0usize..17, any::<[u8; 16]>()).prop_map(|(which, raw)| {
        use zerocopy::FromBytes;
        fn read<T: FromBytes>(raw: &[u8; 16]) -> T {
            T::read_from_prefix(raw)
                .map(|(t, _)| t)
                .expect("16 bytes cover every body")
        }
        match which {
            0 => (Sender::Guest, NvspMessage::Init(read(&raw))),
            1 => (Sender::Host, NvspMessage::InitComplete(read(&raw))),
            2 => (Sender::Guest, NvspMessage::SendNdisVersion(read(&raw))),
            3 => (Sender::Guest, NvspMessage::SendReceiveBuffer(read(&raw))),
            4 => (Sender::Guest, NvspMessage::RevokeReceiveBuffer(read(&raw))),
            5 => (Sender::Guest, NvspMessage::SendSendBuffer(read(&raw))),
            6 => (
                Sender::Host,
                NvspMessage::SendSendBufferComplete(read(&raw)),
            ),
            7 => (Sender::Guest, NvspMessage::RevokeSendBuffer(read(&raw))),
            8 => (Sender::Guest, NvspMessage::SendRndisPacket(read(&raw))),
            9 => (
                Sender::Host,
                NvspMessage::SendRndisPacketComplete(read(&raw)),
            ),
            10 => (Sender::Guest, NvspMessage::SendNdisConfig(read(&raw))),
            11 => (Sender::Host, NvspMessage::SendVfAssociation(read(&raw))),
            12 => (Sender::Host, NvspMessage::SwitchDataPath(read(&raw))),
            13 => (Sender::Guest, NvspMessage::OidQueryEx(read(&raw))),
            14 => (Sender::Host, NvspMessage::OidQueryExComplete(read(&raw))),
            15 => (Sender::Guest, NvspMessage::SubchannelRequest(read(&raw))),
            _ => (Sender::Host, NvspMessage::SubchannelComplete(read(&raw))),
        }
    })
}

proptest! {
    #[test]
    fn every_fixed_message_round_trips_through_emit_and_parse(
        (sender, message) in fixed_message(),
        padded_len in 0usize..64,
    ) {
        let bytes = message.to_vec(padded_len);
        prop_assert_eq!(bytes.len(), message.encoded_len().max(padded_len));
        prop_assert!(bytes[message.encoded_len()..].iter().all(|&b| b == 0));
        let parsed = NvspMessage::parse_from(sender, &bytes).expect("emitted message parses");
        prop_assert_eq!(parsed, message);
    }

    #[test]
    fn receive_buffer_complete_round_trips(
        status in any::<u32>(),
        sections in proptest::collection::vec(any::<(u32, u32, u32)>(), 0..4),
        padded_len in 0usize..96,
    ) {
        let sections: Vec<_> = sections
            .into_iter()
            .map(|(offset, size, count)| ReceiveBufferSection::new(offset, size, count))
            .collect();
        let mut out = [0u8; 128];
        let n = encode_receive_buffer_complete(&mut out, status, &sections, padded_len).expect("fits");
        let NvspMessage::SendReceiveBufferComplete(done) = NvspMessage::parse(&out[..n]).expect("parses") else {
            panic!("wrong variant");
        };
        prop_assert_eq!(done.status(), status);
        prop_assert_eq!(done.num_sections() as usize, sections.len());
        prop_assert_eq!(done.sections().collect::<Vec<_>>(), sections);
    }

    #[test]
    fn send_indirection_table_round_trips(table in any::<[u32; 16]>(), version in proptest::sample::select(VERSIONS.to_vec())) {
        let mut out = [0u8; 80];
        let n = encode_send_indirection_table(&mut out, &table).expect("fits");
        let NvspMessage::SendIndirectionTable(parsed) = NvspMessage::parse(&out[..n]).expect("parses") else {
            panic!("wrong variant");
        };
        prop_assert_eq!(parsed.table(version), Ok(table));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_parsed_messages_reemit_identically(
        bytes in proptest::collection::vec(any::<u8>(), 0..160),
        guest in any::<bool>(),
        buffer_size in any::<usize>(),
        version in any::<u32>(),
    ) {
        let sender = if guest { Sender::Guest } else { Sender::Host };
        if let Ok(message) = NvspMessage::parse_from(sender, &bytes) {
            match message {
                NvspMessage::SendReceiveBufferComplete(done) => {
                    let _ = done.validate(buffer_size);
                    prop_assert!(done.sections().count() <= done.num_sections() as usize);
                }
                NvspMessage::SendIndirectionTable(table) => {
                    let _ = table.table(version);
                }
                _ => {}
            }
            let emitted = message.to_vec(0);
            prop_assert_eq!(&emitted[..], &bytes[..emitted.len()]);
            prop_assert_eq!(NvspMessage::parse_from(sender, &emitted), Ok(message));
        }
    }

    #[test]
    fn known_types_with_random_bodies_never_panic(
        msg_type in proptest::sample::select(vec![1u32, 2, 100, 101, 102, 103, 104, 105, 106, 107, 108, 125, 128, 129, 131, 132, 133, 134]),
        body in proptest::collection::vec(any::<u8>(), 0..120),
        version in any::<u32>(),
    ) {
        let mut bytes = msg_type.to_le_bytes().to_vec();
        bytes.extend_from_slice(&body);
        for sender in [Sender::Guest, Sender::Host] {
            match NvspMessage::parse_from(sender, &bytes) {
                Ok(NvspMessage::SendIndirectionTable(table)) => {
                    if let Ok(entries) = table.table(version) {
                        let offset = table.effective_offset(version) as usize;
                        prop_assert!(offset + 64 <= bytes.len());
                        prop_assert_eq!(entries[0].to_le_bytes(), [bytes[offset], bytes[offset + 1], bytes[offset + 2], bytes[offset + 3]]);
                    }
                }
                Ok(message) => prop_assert_eq!(message.msg_type(), msg_type),
                Err(NvspError::Truncated { msg_type: t, len, min }) => {
                    prop_assert_eq!(t, msg_type);
                    prop_assert!(len < min);
                }
                Err(other) => prop_assert!(false, "unexpected error {other}"),
            }
        }
    }

    /// The completion fast path reads what the full parser reads, for any bytes.
    #[test]
    fn send_complete_status_agrees_with_parse(
        msg_type in prop_oneof![Just(MESSAGE1_TYPE_SEND_RNDIS_PACKET_COMPLETE), any::<u32>()],
        rest in proptest::collection::vec(any::<u8>(), 0..12),
        cut in 0usize..16,
    ) {
        let bytes = [&msg_type.to_le_bytes()[..], &rest].concat();
        let bytes = &bytes[..cut.min(bytes.len())];
        let full = match NvspMessage::parse(bytes) {
            Ok(NvspMessage::SendRndisPacketComplete(m)) => Some(m.status.get()),
            _ => None,
        };
        prop_assert_eq!(send_complete_status(bytes), full);
    }
}
