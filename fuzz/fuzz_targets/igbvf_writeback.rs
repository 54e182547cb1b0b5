//! Arbitrary bytes as a sequence of device actions against the igbvf wire layer: RX and TX
//! write-backs, PF mailbox buffers and `V2PMAILBOX` reads. No input may panic a parser, an
//! accepted RX completion must respect the limits it was parsed under, and a decoded mailbox
//! request must re-encode to itself.
//!
//! Input: a stream of actions, each one opcode byte (low 3 bits) followed by its operands:
//! 0 = RX write-back (1 config byte: buffer size index and chaining bit, then 16 bytes);
//! 1 = TX write-back (16 bytes); 2 = mailbox buffer (64 bytes, 16 little-endian words);
//! 3 = `V2PMAILBOX` read (4 bytes); 4 = start a send expecting a reply; 5 = start a send
//! without one; 6 = start a VF reset; 7 = a read of the low byte only (1 byte).
#![no_main]

use libfuzzer_sys::fuzz_target;
use vf::igbvf::descriptors::{DESC_SIZE, RxChaining, RxWriteback, TxWriteback};
use vf::igbvf::mailbox::{
    MailboxAction, MailboxPhase, MailboxProtocol, MessageType, Request, parse_ack,
    parse_pf_message, parse_reset_reply,
};
use vf::igbvf::regs::VMBMEM_WORDS;

const BUFFER_SIZES: [usize; 4] = [0, 256, 2048, 16384];

fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    if data.len() < n {
        return None;
    }
    let (head, tail) = data.split_at(n);
    *data = tail;
    Some(head)
}

fn step(protocol: &mut MailboxProtocol, raw: u32) {
    let action = protocol.step(raw);
    if matches!(
        action,
        MailboxAction::Complete
            | MailboxAction::ReadMessage
            | MailboxAction::PfReset
            | MailboxAction::ResetComplete
            | MailboxAction::TimedOut
            | MailboxAction::Removed
    ) {
        assert_eq!(protocol.phase(), MailboxPhase::Idle);
    }
}

fuzz_target!(|input: &[u8]| {
    let mut data = input;
    let mut protocol = MailboxProtocol::new(8);
    while let Some(&[op]) = take(&mut data, 1) {
        match op & 7 {
            0 => {
                let Some(&[config]) = take(&mut data, 1) else {
                    return;
                };
                let Some(bytes) = take(&mut data, DESC_SIZE) else {
                    return;
                };
                let bytes: &[u8; DESC_SIZE] = bytes.try_into().unwrap();
                let buffer = BUFFER_SIZES[usize::from(config & 3)];
                let chaining = if config & 4 != 0 {
                    RxChaining::MultiDescriptor
                } else {
                    RxChaining::SingleDescriptor
                };
                if let Ok(Some(c)) = RxWriteback::parse(bytes, buffer, chaining) {
                    assert!(c.length > 0 && usize::from(c.length) <= buffer);
                    assert!(c.eop || chaining == RxChaining::MultiDescriptor);
                    assert!(c.eop || usize::from(c.length) == buffer);
                }
            }
            1 => {
                let Some(bytes) = take(&mut data, DESC_SIZE) else {
                    return;
                };
                let _ = TxWriteback::is_done(bytes.try_into().unwrap());
            }
            2 => {
                let Some(bytes) = take(&mut data, 4 * VMBMEM_WORDS) else {
                    return;
                };
                let mut words = [0u32; VMBMEM_WORDS];
                for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(4)) {
                    *word = u32::from_le_bytes(chunk.try_into().unwrap());
                }
                let _ = parse_reset_reply(&words);
                let _ = parse_pf_message(words[0]);
                for t in [
                    MessageType::SET_MAC_ADDR,
                    MessageType::SET_LPE,
                    MessageType::of(words[0]),
                ] {
                    let _ = parse_ack(words[0], t);
                }
                if let Ok(Some(request)) = Request::decode(&words) {
                    let encoded = request.encode().expect("a decoded request re-encodes");
                    assert_eq!(Request::decode(&encoded.words), Ok(Some(request)));
                }
            }
            3 => {
                let Some(bytes) = take(&mut data, 4) else {
                    return;
                };
                step(&mut protocol, u32::from_le_bytes(bytes.try_into().unwrap()));
            }
            4 => {
                protocol.start_send(true);
            }
            5 => {
                protocol.start_send(false);
            }
            6 => {
                protocol.start_vf_reset();
            }
            _ => {
                let Some(&[low]) = take(&mut data, 1) else {
                    return;
                };
                step(&mut protocol, u32::from(low));
            }
        }
    }
});
