//! A raw guest's clean detach: RNDIS HALT, then REVOKE_RECEIVE_BUFFER and REVOKE_SEND_BUFFER
//! naming the buffers' ids; what the host counts, what it stops touching, and the fresh
//! buffers of the next session.

use netvsc::nvsp::{self, NvspMessage};
use netvsc::rndis;
use netvsc::vmbus::{IncomingKind, OutgoingKind, VmbusDevice};

use super::{RawGuest, WAIT, config, frame, wait_until};
use crate::host::TeardownStep;

impl RawGuest {
    /// Sends an NVSP message in band without asking for a completion (as the revokes go).
    fn post(&mut self, message: &NvspMessage<'_>) {
        let bytes = message.to_vec(nvsp::GUEST_MESSAGE_SIZE);
        self.write(OutgoingKind::InBand, 0, false, &bytes);
    }

    /// RNDIS HALT; returns the NVSP tid of its send.
    fn halt(&mut self, id: u32) -> u64 {
        let mut buf = [0u8; 64];
        let n = rndis::encode_halt(&mut buf, id).unwrap();
        self.rndis(&buf[..n], nvsp::CONTROL_CHANNEL_TYPE)
    }

    fn revoke_receive(&mut self, id: u16) {
        self.post(&NvspMessage::RevokeReceiveBuffer(
            nvsp::Message1RevokeReceiveBuffer::new(id),
        ));
    }

    fn revoke_send(&mut self, id: u16) {
        self.post(&NvspMessage::RevokeSendBuffer(
            nvsp::Message1RevokeSendBuffer::new(id),
        ));
    }

    /// RNDIS SET of the packet filter, answered.
    fn set_filter(&mut self, id: u32, filter: u32) {
        let mut buf = [0u8; 64];
        let n = rndis::encode_set(
            &mut buf,
            id,
            rndis::OID_GEN_CURRENT_PACKET_FILTER,
            &filter.to_le_bytes(),
        )
        .unwrap();
        let tid = self.rndis(&buf[..n], nvsp::CONTROL_CHANNEL_TYPE);
        self.completion(tid);
        assert_eq!(
            self.control()[..4],
            rndis::MESSAGE_TYPE_SET_CMPLT.to_le_bytes()
        );
    }
}

#[test]
fn a_halt_and_both_revokes_are_counted_in_order_and_the_next_session_has_fresh_buffers() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    assert!(g.host.external().inject_on(0, &frame(1)));
    let seen = g.next();
    g.complete_rx(seen.tid);

    let tid = g.halt(7);
    // HALT gets its send completion only: no RNDIS reply follows it.
    assert_eq!(g.completion(tid).word(4), nvsp::STATUS_SUCCESS);
    g.revoke_receive(nvsp::RECEIVE_BUFFER_ID);
    // A keepalive is still completed at the transport level, but its reply would go into the
    // revoked buffer: none comes.
    let tid = g.keepalive(8);
    g.completion(tid);
    g.assert_quiet();
    g.revoke_send(0);
    wait_until("both revokes counted", || {
        g.host.stats().send_buffer_revokes == 1
    });
    let stats = g.host.stats();
    assert_eq!(
        (
            stats.rndis_halts,
            stats.receive_buffer_revokes,
            stats.send_buffer_revokes
        ),
        (1, 1, 1)
    );
    assert_eq!(
        stats.teardown,
        [
            TeardownStep::RndisHalt,
            TeardownStep::ReceiveBufferRevoked,
            TeardownStep::SendBufferRevoked
        ]
    );
    assert_eq!(stats.protocol_errors, 0, "{:?}", stats.last_error);
    assert!(stats.channel_alive);
    // The host no longer writes into the buffer: a frame for the guest is dropped, counted.
    assert!(!g.host.external().inject_on(0, &frame(2)));
    assert_eq!(g.host.stats().rx_dropped_revoked, 1);

    g.device.reopen(WAIT).unwrap();
    g.reopen_rings();
    g.bring_up();
    assert!(g.host.external().inject_on(0, &frame(3)));
    let seen = g.next();
    assert!(
        matches!(seen.kind, IncomingKind::TransferPages { .. }),
        "{seen:?}"
    );
    assert_eq!(seen.tid, 16, "the fresh buffer's first data sub-allocation");
    g.complete_rx(seen.tid);
    let stats = g.host.stats();
    assert_eq!(stats.rx_dropped_revoked, 1);
    assert_eq!(stats.rx_delivered, 2);
    assert_eq!(stats.protocol_errors, 0);
}

#[test]
fn frames_waiting_when_the_receive_buffer_is_revoked_are_dropped_and_counted() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    // Packet filter 0, as a guest sets it before it halts: frames wait in the vSwitch.
    g.set_filter(3, 0);
    for i in 0..3 {
        assert!(g.host.external().inject_on(0, &frame(i)));
    }
    assert_eq!(g.host.external().pending_to_guest(), 3);
    g.revoke_receive(nvsp::RECEIVE_BUFFER_ID);
    wait_until("the revoke counted", || {
        g.host.stats().receive_buffer_revokes == 1
    });
    let stats = g.host.stats();
    assert_eq!(stats.rx_dropped_revoked, 3);
    assert_eq!(stats.rx_delivered, 0);
    assert_eq!(g.host.external().pending_to_guest(), 0);
}

#[test]
fn a_revoke_naming_another_buffer_is_a_protocol_error() {
    for send in [false, true] {
        let mut g = RawGuest::start(config());
        g.bring_up();
        if send {
            g.revoke_send(0xFACE);
        } else {
            g.revoke_receive(0x1234);
        }
        g.wait_dead();
        let stats = g.host.stats();
        assert_eq!(stats.protocol_errors, 1);
        assert_eq!(stats.receive_buffer_revokes + stats.send_buffer_revokes, 0);
        assert!(stats.teardown.is_empty());
        let reason = stats.last_error.unwrap_or_default();
        assert!(reason.contains("REVOKE_"), "{reason}");
    }
}

#[test]
fn a_send_through_a_section_after_the_send_buffer_is_revoked_is_a_protocol_error() {
    let mut g = RawGuest::start(config());
    g.bring_up();
    g.revoke_send(0);
    let mut buf = vec![0u8; 200];
    let n = rndis::write_packet(&mut buf, &frame(4), &rndis::PacketInfo::default()).unwrap();
    g.rndis(&buf[..n], nvsp::DATA_CHANNEL_TYPE);
    g.wait_dead();
    let stats = g.host.stats();
    assert_eq!((stats.send_buffer_revokes, stats.protocol_errors), (1, 1));
    assert_eq!(stats.tx_packets, 0);
}
