//! The guest NIC accepts every host message recorded from a real NetVSP host
//! (`shared/conformance/netvsp/*.jsonl`): each host→guest packet is replayed through the
//! NIC's own ring reader and receive dispatch, with the receive-buffer bytes the host wrote,
//! and must decode to what the host meant — completions of the right tids, events, frames,
//! RNDIS replies — without a single drop.

use integration::conformance::{self, Direction, PacketRecord, Transcript};
use netvsc::nic::NicEvent;
use netvsc::nic::classify::{HostAction, classify_host_packet};
use netvsc::nvsp;
use netvsc::rndis::{self, RndisMessage};

/// The NVSP version the transcript's guest negotiated: its last INIT.
fn negotiated_version(t: &Transcript) -> u32 {
    t.packets()
        .filter(|p| p.dir == Direction::G2h && p.nvsp_type() == Some(nvsp::MESSAGE_TYPE_INIT))
        .filter_map(|p| p.payload.get(4..8))
        .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
        .last()
        .unwrap_or(nvsp::VERSION_61)
}

fn classify(p: &PacketRecord, version: u32) -> Vec<HostAction> {
    let raw = p.raw_packet().expect("the record rebuilds");
    let rxbuf: Vec<(u32, &[u8])> = p
        .rxbuf
        .iter()
        .map(|r| (r.byte_offset, r.bytes.as_slice()))
        .collect();
    classify_host_packet(&raw, &rxbuf, version)
        .unwrap_or_else(|e| panic!("seq {}: host packet refused: {e}", p.seq))
}

/// Every host action of a transcript, in order, after checking each packet is accepted.
fn replay(t: &Transcript) -> Vec<HostAction> {
    let version = negotiated_version(t);
    let mut all = Vec::new();
    for p in t.packets().filter(|p| p.dir == Direction::H2g) {
        let actions = classify(p, version);
        assert!(
            !actions.is_empty(),
            "{}: seq {} produced nothing",
            t.header.scenario,
            p.seq
        );
        for a in &actions {
            assert!(
                !matches!(
                    a,
                    HostAction::Malformed { .. }
                        | HostAction::NoBuffer
                        | HostAction::Ignored { .. }
                ),
                "{}: seq {} not accepted: {a:?}",
                t.header.scenario,
                p.seq
            );
            match a {
                HostAction::Completion { tid, .. } => assert_eq!(*tid, p.tid),
                HostAction::CompleteReceive { tid } => assert_eq!(*tid, p.tid),
                _ => {}
            }
        }
        // Transfer-page packets ask for a completion and get one.
        if p.packet_type == 7 {
            assert_eq!(
                actions.last(),
                Some(&HostAction::CompleteReceive { tid: p.tid }),
                "{}: seq {} not completed",
                t.header.scenario,
                p.seq
            );
        }
        all.extend(actions);
    }
    all
}

fn events(actions: &[HostAction]) -> Vec<NicEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            HostAction::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn frames(actions: &[HostAction]) -> Vec<(Vec<u8>, Option<u16>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            HostAction::Frame { bytes, vlan_tci } => Some((bytes.clone(), *vlan_tci)),
            _ => None,
        })
        .collect()
}

/// The frames the guest sent through send sections, in order.
fn sent_frames(t: &Transcript) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for p in t.packets().filter(|p| p.dir == Direction::G2h) {
        let Some(bytes) = p.section.as_ref().and_then(|s| s.bytes.as_ref()) else {
            continue;
        };
        for message in rndis::Messages::new(bytes) {
            let (_, msg) = message.unwrap();
            if let Ok(RndisMessage::Packet(packet)) = RndisMessage::parse(msg) {
                out.push(packet.frame.get(msg).unwrap().to_vec());
            }
        }
    }
    out
}

fn load(name: &str) -> Transcript {
    conformance::load(name).expect("transcript loads")
}

#[test]
fn every_recorded_host_packet_is_accepted() {
    let all = conformance::load_all().expect("transcripts load");
    assert!(all.len() >= 29, "only {} transcripts", all.len());
    let mut packets = 0;
    for t in &all {
        packets += t.packets().filter(|p| p.dir == Direction::H2g).count();
        replay(t);
    }
    assert!(packets > 100, "only {packets} host packets replayed");
}

#[test]
fn link_down_up_yields_link_down_then_link_up() {
    let events = events(&replay(&load("link-down-up")));
    assert_eq!(events, vec![NicEvent::LinkDown, NicEvent::LinkUp]);
}

#[test]
fn link_same_state_yields_a_down_up_toggle() {
    let events = events(&replay(&load("link-same-state")));
    assert_eq!(events, vec![NicEvent::LinkDown, NicEvent::LinkUp]);
}

#[test]
fn vf_host_remove_yields_the_switch_back_then_the_disassociation() {
    let events = events(&replay(&load("vf-host-remove")));
    let expected = [
        NicEvent::VfAssociation {
            allocated: true,
            serial: 7,
        },
        NicEvent::HostSwitchedDataPath { to_vf: false },
        NicEvent::VfAssociation {
            allocated: false,
            serial: 7,
        },
        NicEvent::VfAssociation {
            allocated: true,
            serial: 7,
        },
    ];
    assert_eq!(events, expected);
}

#[test]
fn vf_switch_completions_are_empty_and_matched_by_tid() {
    let actions = replay(&load("vf-switch"));
    let empty = actions
        .iter()
        .filter(|a| matches!(a, HostAction::Completion { msg_type: None, .. }))
        .count();
    // NDIS_CONFIG, NDIS_VERSION (the recording guest asked for completions) and both switches.
    assert!(empty >= 2, "{empty} empty completions");
    assert_eq!(
        events(&actions),
        vec![NicEvent::VfAssociation {
            allocated: true,
            serial: 7
        }]
    );
}

#[test]
fn data_loopback_yields_the_60_and_1514_byte_frames_sent() {
    let t = load("data-loopback");
    let got = frames(&replay(&t));
    let lens: Vec<usize> = got.iter().map(|(f, _)| f.len()).collect();
    assert_eq!(lens, vec![60, 1514]);
    let sent = sent_frames(&t);
    assert_eq!(sent.len(), 2);
    for ((frame, vlan), sent) in got.iter().zip(&sent) {
        assert_eq!(frame, sent, "the looped-back frame is the frame sent");
        assert_eq!(*vlan, None);
    }
}

#[test]
fn data_batched_yields_both_frames_from_one_transfer_page_packet() {
    let t = load("data-batched");
    assert_eq!(frames(&replay(&t)).len(), 2);
}

#[test]
fn data_vlan_ppi_yields_the_vlan_tag() {
    let got = frames(&replay(&load("data-vlan-ppi")));
    assert_eq!(got.len(), 1);
    // PPI value 0x643: VLAN 100, priority 3 → TCI 0x6064.
    assert_eq!(got[0].1, Some(0x6064));
}

#[test]
fn data_gpa_direct_yields_the_frames_sent() {
    let lens: Vec<usize> = frames(&replay(&load("data-gpa-direct")))
        .iter()
        .map(|(f, _)| f.len())
        .collect();
    assert_eq!(lens, vec![60, 1514]);
}

#[test]
fn subchannels_4q_yields_the_indirection_table() {
    let events = events(&replay(&load("subchannels-4q")));
    let table: Vec<u32> = (0..16).map(|i| i % 4).collect();
    assert_eq!(events, vec![NicEvent::IndirectionTable(table)]);
}

#[test]
fn rndis_control_replies_are_matched_by_request_id() {
    let t = load("rndis-control");
    let actions = replay(&t);
    let replies: Vec<(u32, u32)> = actions
        .iter()
        .filter_map(|a| match a {
            HostAction::RndisResponse {
                request_id,
                msg_type,
            } => Some((*request_id, *msg_type)),
            _ => None,
        })
        .collect();
    // INITIALIZE, four queries, two sets, the RSS capabilities query: ids 1.. in order.
    assert_eq!(replies.len(), 8, "{replies:?}");
    for (i, (id, _)) in replies.iter().enumerate() {
        assert_eq!(*id, i as u32 + 1);
    }
    assert_eq!(replies[0].1, rndis::MESSAGE_TYPE_INITIALIZE_CMPLT);
    assert!(events(&actions).contains(&NicEvent::OffloadConfigChanged));
}

#[test]
fn handshake_retry_sees_the_refusal_then_the_success() {
    let actions = replay(&load("handshake-retry"));
    let inits: Vec<Option<u32>> = actions
        .iter()
        .filter_map(|a| match a {
            HostAction::Completion {
                msg_type: Some(nvsp::MESSAGE_TYPE_INIT_COMPLETE),
                status,
                ..
            } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(
        inits,
        vec![Some(nvsp::STATUS_NONE), Some(nvsp::STATUS_SUCCESS)]
    );
}

#[test]
fn a_refused_data_packet_is_a_failed_send_completion() {
    let actions = replay(&load("err-bad-rndis-packet"));
    assert!(actions.iter().any(|a| matches!(
        a,
        HostAction::Completion {
            msg_type: Some(nvsp::MESSAGE1_TYPE_SEND_RNDIS_PACKET_COMPLETE),
            status: Some(nvsp::STATUS_FAILURE),
            ..
        }
    )));
}
