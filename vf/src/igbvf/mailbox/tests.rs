//! Mailbox format and protocol tests.
//!
//! PF words are those upstream Linux igb writes (`igb_vf_reset_msg`, `igb_rcv_msg_from_vf`,
//! `igb_ping_all_vfs`) as described in reference §2.4; §2.4/§3 record the behaviour, not raw
//! dumps, so the exact values below are constructed from that description and the `E1000_VT_*`
//! definitions.

use super::*;
use crate::igbvf::regs::V2pMailbox as M;
use proptest::prelude::*;

fn buffer(prefix: &[u32]) -> MailboxWords {
    let mut words = [0u32; VMBMEM_WORDS];
    words[..prefix.len()].copy_from_slice(prefix);
    words
}

#[test]
fn reset_reply_with_admin_mac() {
    // RESET|ACK, MAC 52:54:00:12:34:56 memcpy'd into words 1-2.
    let reply = parse_reset_reply(&buffer(&[0x8000_0001, 0x1200_5452, 0x0000_5634])).unwrap();
    assert_eq!(reply.mac, Some([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]));
    assert!(!reply.cts);
}

#[test]
fn reset_nack_without_admin_mac_is_not_an_error() {
    let reply = parse_reset_reply(&buffer(&[0x4000_0001, 0, 0])).unwrap();
    assert_eq!(reply.mac, None);
}

#[test]
fn reset_reply_rejects_bad_mac_and_wrong_type() {
    assert_eq!(
        parse_reset_reply(&buffer(&[0x8000_0001, 0, 0])),
        Err(MailboxError::InvalidMac([0; 6]))
    );
    assert!(matches!(
        parse_reset_reply(&buffer(&[0x8000_0001, 0x0000_0001, 0])),
        Err(MailboxError::InvalidMac(_))
    ));
    assert!(matches!(
        parse_reset_reply(&buffer(&[0xA000_0002, 0x1200_5452, 0x5634])),
        Err(MailboxError::WrongType { .. })
    ));
    assert_eq!(
        parse_reset_reply(&buffer(&[0x0000_0001])),
        Err(MailboxError::NotAReply(1))
    );
    assert_eq!(
        parse_reset_reply(&buffer(&[0xC000_0001])),
        Err(MailboxError::NotAReply(0xC000_0001))
    );
}

#[test]
fn acks_as_linux_igb_sends_them() {
    // igb echoes word 0 (info field included) and ORs ACK|CTS.
    assert_eq!(
        parse_ack(0xA000_0002, MessageType::SET_MAC_ADDR),
        Ok(Ack { cts: true })
    );
    assert_eq!(
        parse_ack(0xA003_0003, MessageType::SET_MULTICAST),
        Ok(Ack { cts: true })
    );
    assert_eq!(
        parse_ack(0xA001_0004, MessageType::SET_VLAN),
        Ok(Ack { cts: true })
    );
    assert_eq!(
        parse_ack(0x6000_0005, MessageType::SET_LPE),
        Err(MailboxError::Nacked {
            msg_type: MessageType::SET_LPE,
            cts: true
        })
    );
    // After a PF reset: a bare NACK without CTS.
    assert_eq!(
        parse_ack(0x4000_0005, MessageType::SET_LPE),
        Err(MailboxError::Nacked {
            msg_type: MessageType::SET_LPE,
            cts: false
        })
    );
    assert!(matches!(
        parse_ack(0xA000_0005, MessageType::SET_VLAN),
        Err(MailboxError::WrongType { .. })
    ));
}

#[test]
fn pf_control_messages() {
    assert_eq!(
        parse_pf_message(0x2000_0100),
        PfMessage::Control { cts: true }
    );
    assert_eq!(
        parse_pf_message(0x0000_0100),
        PfMessage::Control { cts: false }
    );
    assert_eq!(
        parse_pf_message(0x4000_0005),
        PfMessage::Nack { word0: 0x4000_0005 }
    );
    assert_eq!(parse_pf_message(0x77), PfMessage::Other { word0: 0x77 });
}

#[test]
fn requests_encode_as_linux_igbvf() {
    assert_eq!(Request::Reset.encode().unwrap().as_words(), &[0x01]);
    let mac = Request::SetMacAddr([0x02, 0, 0, 0, 0, 0x01])
        .encode()
        .unwrap();
    assert_eq!(mac.as_words(), &[0x02, 0x0000_0002, 0x0000_0100]);
    let mc = Request::SetMulticast(vec![0x010, 0xFAF, 0x123])
        .encode()
        .unwrap();
    assert_eq!(mc.as_words(), &[0x0003_0003, 0x0FAF_0010, 0x0000_0123]);
    let vlan = Request::SetVlan {
        vid: 100,
        add: true,
    }
    .encode()
    .unwrap();
    assert_eq!(vlan.as_words(), &[0x0001_0004, 100]);
    let lpe = Request::SetLpe(1522).encode().unwrap();
    assert_eq!(lpe.as_words(), &[0x05, 1522]);
}

#[test]
fn requests_reject_bad_arguments() {
    assert!(
        Request::SetMacAddr([0x01, 0, 0x5e, 0, 0, 1])
            .encode()
            .is_err()
    );
    assert!(Request::SetMacAddr([0; 6]).encode().is_err());
    assert_eq!(
        Request::SetMulticast(vec![0; 31]).encode(),
        Err(MailboxError::TooManyMulticast(31))
    );
    assert_eq!(
        Request::SetMulticast(vec![0x1000]).encode(),
        Err(MailboxError::MulticastHash(0x1000))
    );
    assert_eq!(
        Request::SetVlan {
            vid: 4096,
            add: true
        }
        .encode(),
        Err(MailboxError::VlanId(4096))
    );
    assert_eq!(Request::SetLpe(0).encode(), Err(MailboxError::FrameSize(0)));
}

#[test]
fn decode_leaves_unmodelled_requests_alone() {
    // SET_MAC_ADDR with E1000_VF_MAC_FILTER_ADD: an extra unicast filter, not the station MAC.
    assert_eq!(
        Request::decode(&buffer(&[0x0002_0002, 0x0000_0002, 0x0000_0100])),
        Ok(None)
    );
    assert_eq!(Request::decode(&buffer(&[0x0000_0006])), Ok(None));
    assert_eq!(
        Request::decode(&buffer(&[0x8000_0001])),
        Err(MailboxError::NotARequest(0x8000_0001))
    );
}

#[test]
fn multicast_hash_uses_the_top_twelve_bits() {
    assert_eq!(multicast_hash(&[0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]), 0x010);
    assert_eq!(multicast_hash(&[0x01, 0x00, 0x5e, 0x7f, 0xff, 0xfa]), 0xFAF);
}

#[test]
fn send_with_reply_full_handshake() {
    let mut p = MailboxProtocol::new(10);
    assert_eq!(p.start_send(true), MailboxAction::ClaimBuffer);
    // PFU held by the PF for one read: retry the claim.
    assert_eq!(p.step(M::PFU), MailboxAction::ClaimBuffer);
    // A stale PFACK from an earlier exchange is dropped once we own the buffer.
    assert_eq!(p.step(M::VFU | M::PFACK), MailboxAction::PostRequest);
    assert_eq!(p.step(0), MailboxAction::Wait);
    // PFACK and PFSTS arrive in the same read (both read-to-clear): both latched.
    assert_eq!(p.step(M::PFACK | M::PFSTS), MailboxAction::ClaimBuffer);
    assert_eq!(p.step(M::VFU), MailboxAction::ReadMessage);
    assert_eq!(p.phase(), MailboxPhase::Idle);
    assert_eq!(p.latched(), M(0));
}

#[test]
fn send_without_reply_completes_on_pfack() {
    let mut p = MailboxProtocol::default();
    p.start_send(false);
    assert_eq!(p.step(M::VFU), MailboxAction::PostRequest);
    assert_eq!(p.step(M::PFACK), MailboxAction::Complete);
    assert_eq!(p.step(0), MailboxAction::Idle);
}

#[test]
fn rstd_read_while_idle_is_latched_not_lost() {
    let mut p = MailboxProtocol::default();
    // A read taken for any reason sees RSTD; the next step reports it even though the
    // register no longer shows it.
    assert_eq!(p.step(M::RSTD | M::PFSTS), MailboxAction::PfReset);
    assert_eq!(p.step(0), MailboxAction::Idle);
}

#[test]
fn unsolicited_message_is_read_when_idle() {
    let mut p = MailboxProtocol::default();
    assert_eq!(p.step(M::PFSTS), MailboxAction::ClaimBuffer);
    assert_eq!(p.phase(), MailboxPhase::ClaimForRead);
    assert_eq!(p.step(M::VFU), MailboxAction::ReadMessage);
}

#[test]
fn pf_reset_during_send_aborts_the_exchange() {
    let mut p = MailboxProtocol::default();
    p.start_send(true);
    assert_eq!(p.step(M::VFU), MailboxAction::PostRequest);
    assert_eq!(p.step(M::RSTI), MailboxAction::PfReset);
    assert_eq!(p.phase(), MailboxPhase::Idle);
}

#[test]
fn vf_reset_waits_for_rsti_to_clear_and_does_not_need_rstd() {
    let mut p = MailboxProtocol::new(5);
    assert_eq!(p.start_vf_reset(), MailboxAction::Wait);
    assert_eq!(p.step(M::RSTI), MailboxAction::Wait);
    assert_eq!(p.step(M::RSTI | M::PFSTS), MailboxAction::Wait);
    assert_eq!(p.step(0), MailboxAction::ResetComplete);
    // The PFSTS seen during the reset was stale and is gone.
    assert_eq!(p.latched(), M(0));
    assert_eq!(p.step(0), MailboxAction::Idle);
}

#[test]
fn missing_pfack_times_out() {
    let mut p = MailboxProtocol::new(3);
    p.start_send(false);
    p.step(M::VFU);
    assert_eq!(p.step(0), MailboxAction::Wait);
    assert_eq!(p.step(0), MailboxAction::Wait);
    assert_eq!(p.step(0), MailboxAction::Wait);
    assert_eq!(p.step(0), MailboxAction::TimedOut);
    assert_eq!(p.phase(), MailboxPhase::Idle);
}

#[test]
fn all_ones_means_removed() {
    let mut p = MailboxProtocol::default();
    p.start_send(true);
    assert_eq!(p.step(u32::MAX), MailboxAction::Removed);
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        Just(Request::Reset),
        any::<[u8; 6]>()
            .prop_filter("unicast", is_valid_unicast)
            .prop_map(Request::SetMacAddr),
        proptest::collection::vec(0u16..0x1000, 0..=MAX_MULTICAST_HASHES)
            .prop_map(Request::SetMulticast),
        (0..=MAX_VLAN_ID, any::<bool>()).prop_map(|(vid, add)| Request::SetVlan { vid, add }),
        (1..=MAX_FRAME_LIMIT).prop_map(Request::SetLpe),
    ]
}

proptest! {
    #[test]
    fn request_encode_decode_round_trips(r in request()) {
        let m = r.encode().unwrap();
        prop_assert_eq!(MessageType::of(m.words[0]), r.msg_type());
        prop_assert_eq!(Request::decode(&m.words), Ok(Some(r)));
    }

    #[test]
    fn reset_reply_round_trips(mac in any::<[u8; 6]>().prop_filter("unicast", is_valid_unicast)) {
        let mut words = [0u32; VMBMEM_WORDS];
        words[0] = VT_MSGTYPE_ACK | u32::from(MessageType::RESET.0);
        words[1..3].copy_from_slice(&mac_to_words(&mac));
        prop_assert_eq!(parse_reset_reply(&words), Ok(ResetReply { mac: Some(mac), cts: false }));
    }

    #[test]
    fn arbitrary_words_never_panic(words in any::<[u32; VMBMEM_WORDS]>()) {
        let _ = parse_reset_reply(&words);
        let _ = parse_ack(words[0], MessageType::of(words[1]));
        let _ = parse_pf_message(words[0]);
        let _ = Request::decode(&words);
    }

    #[test]
    fn arbitrary_register_sequences_keep_the_protocol_sane(
        start in 0u8..4,
        reads in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut p = MailboxProtocol::new(4);
        match start {
            0 => {}
            1 => { p.start_send(false); }
            2 => { p.start_send(true); }
            _ => { p.start_vf_reset(); }
        }
        for raw in reads {
            let action = p.step(u32::from(raw));
            if matches!(
                action,
                MailboxAction::Complete
                    | MailboxAction::ReadMessage
                    | MailboxAction::PfReset
                    | MailboxAction::ResetComplete
                    | MailboxAction::TimedOut
                    | MailboxAction::Removed
            ) {
                prop_assert_eq!(p.phase(), MailboxPhase::Idle);
            }
            prop_assert_eq!(p.latched().0 & !M::R2C_BITS, 0);
        }
    }
}
