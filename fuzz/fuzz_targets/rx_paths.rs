//! A received RNDIS message through the receive path's two readers: the one for the data
//! messages hosts send (a few comparisons on the first words) and the general one that checks
//! field by field and says what is wrong. For any bytes, any range and any frame limit they
//! must deliver the same frames with the same metadata and refuse the same way.
//!
//! Input: `[range offset: u16 LE][range length: u16 LE][frame limit: u16 LE][receive buffer
//! bytes…]`. Ranges may run past the buffer; most inputs that matter look like a PACKET
//! message at the offset, which the fuzzer finds from the seeds' comparisons.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netvsc::nic::fuzzing::receive_paths_agree;

fuzz_target!(|data: &[u8]| {
    let Some((head, rxbuf)) = data.split_first_chunk::<6>() else {
        return;
    };
    let field = |i: usize| u16::from_le_bytes([head[i], head[i + 1]]);
    let (offset, count, max_frame) = (field(0), field(2), field(4));
    if let Err(e) = receive_paths_agree(
        rxbuf,
        u32::from(offset),
        u32::from(count),
        usize::from(max_frame),
    ) {
        panic!("{e}");
    }
});
