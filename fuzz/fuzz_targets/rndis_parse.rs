//! Arbitrary bytes through the RNDIS parser and the NDIS object parsers.
//!
//! Whatever parses must re-emit and parse back to the same message with the same variable
//! parts; a data packet must also survive the host's receive layout. The same bytes are split as
//! an aggregated send section and read as every NDIS object.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netvsc::rndis::{
    HOST_RX_FRAME_OFFSET, Messages, NdisLinkState, NdisOffload, NdisOffloadParameters,
    NdisReceiveScaleCapabilities, PacketInfo, RndisMessage, RssParameters, Span, write_host_packet,
};

/// The variable part of a message (frame, information or status buffer), if any.
fn variable_part(message: &RndisMessage) -> Option<Span> {
    match message {
        RndisMessage::Packet(p) => Some(p.frame),
        RndisMessage::Query(r) | RndisMessage::Set(r) | RndisMessage::SetEx(r) => Some(r.info),
        RndisMessage::QueryComplete(c) => Some(c.info),
        RndisMessage::IndicateStatus(s) => Some(s.buffer),
        _ => None,
    }
}

fn check_message(data: &[u8]) {
    let Ok(message) = RndisMessage::parse(data) else {
        return;
    };
    let original = variable_part(&message).map(|s| s.get(data).expect("span inside input"));
    let mut out = vec![0u8; data.len() + 256];
    let n = message
        .emit(data, &mut out)
        .expect("a parsed message re-emits");
    let again = RndisMessage::parse(&out[..n]).expect("an emitted message parses");
    assert_eq!(again.msg_type(), message.msg_type());
    let emitted = variable_part(&again).map(|s| s.get(&out[..n]).expect("span inside output"));
    assert_eq!(emitted, original);
    match (message, again) {
        (RndisMessage::Packet(a), RndisMessage::Packet(b)) => {
            assert_eq!(a.info, b.info);
            let frame = a.frame.get(data).expect("frame inside input");
            let mut sub_allocation = vec![0u8; HOST_RX_FRAME_OFFSET + frame.len()];
            write_host_packet(&mut sub_allocation, frame, &a.info).expect("fits");
            match RndisMessage::parse(&sub_allocation) {
                Ok(RndisMessage::Packet(c)) => {
                    assert_eq!(c.info, a.info);
                    assert_eq!(c.frame.get(&sub_allocation), Some(frame));
                }
                other => panic!("host layout did not parse back: {other:?}"),
            }
        }
        (RndisMessage::Query(a), RndisMessage::Query(b))
        | (RndisMessage::Set(a), RndisMessage::Set(b))
        | (RndisMessage::SetEx(a), RndisMessage::SetEx(b)) => {
            assert_eq!((a.request_id, a.oid), (b.request_id, b.oid));
        }
        (RndisMessage::QueryComplete(a), RndisMessage::QueryComplete(b)) => {
            assert_eq!((a.request_id, a.status), (b.request_id, b.status));
        }
        (RndisMessage::IndicateStatus(a), RndisMessage::IndicateStatus(b)) => {
            assert_eq!(a.status, b.status);
        }
        (a, b) => assert_eq!(a, b),
    }
}

fn check_objects(data: &[u8]) {
    if let Ok(info) = PacketInfo::parse(data) {
        let mut out = vec![0u8; info.len()];
        info.write(&mut out, netvsc::rndis::PpiOrder::Host)
            .expect("fits");
        assert_eq!(PacketInfo::parse(&out), Ok(info));
    }
    if let Ok(offload) = NdisOffload::parse(data) {
        assert_eq!(NdisOffload::parse(offload.wire_bytes()), Ok(offload));
    }
    if let Ok(params) = NdisOffloadParameters::parse(data) {
        assert_eq!(
            NdisOffloadParameters::parse(params.wire_bytes()),
            Ok(params)
        );
    }
    if let Ok(caps) = NdisReceiveScaleCapabilities::parse(data) {
        assert_eq!(
            NdisReceiveScaleCapabilities::parse(caps.wire_bytes()),
            Ok(caps)
        );
    }
    if let Ok(rss) = RssParameters::parse(data) {
        let mut out = vec![0u8; rss.encoded_len()];
        rss.encode(&mut out).expect("fits");
        assert_eq!(RssParameters::parse(&out), Ok(rss));
    }
    let _ = NdisLinkState::parse(data);
}

fuzz_target!(|data: &[u8]| {
    check_message(data);
    for item in Messages::new(data) {
        match item {
            Ok((_, message)) => check_message(message),
            Err(_) => break,
        }
    }
    check_objects(data);
    // The information buffer of a parsed QUERY/SET/completion is where objects really live.
    if let Ok(message) = RndisMessage::parse(data) {
        if let Some(info) = variable_part(&message).and_then(|s| s.get(data)) {
            check_objects(info);
        }
    }
});
