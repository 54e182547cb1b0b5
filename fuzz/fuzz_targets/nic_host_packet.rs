//! Arbitrary host→guest packets through the guest NIC's receive dispatch: the same code the
//! queues run on every packet read from the ring (VMBus framing, NVSP, RNDIS in the receive
//! buffer, completions, unsolicited messages). It must never panic, whatever the host wrote.
//!
//! Input: `[version selector: u8][raw length: u16 LE][raw packet][rxbuf offset: u32 LE][rxbuf
//! bytes…]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netvsc::nic::classify::classify_host_packet;
use netvsc::nvsp;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let version = nvsp::VERSIONS[selector as usize % nvsp::VERSIONS.len()];
    let Some((len, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let len = (u16::from_le_bytes(*len) as usize).min(rest.len()).min(16 << 10);
    let (raw, rest) = rest.split_at(len);
    let (offset, rxbuf) = match rest.split_first_chunk::<4>() {
        Some((o, bytes)) => (u32::from_le_bytes(*o) % (1 << 20), bytes),
        None => (0, &[][..]),
    };
    let pieces = [(offset, rxbuf)];
    let _ = classify_host_packet(raw, &pieces, version);
});
