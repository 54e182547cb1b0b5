//! Arbitrary bytes through the NVSP parser, as if sent by the host and by the guest.
//!
//! Whatever parses must re-emit: unpadded, the output is a prefix of the input and parses to the
//! same message; padded to a guest's 40 bytes, it still parses to the same message type. The
//! checked views (receive-buffer sections, send indirection table) are exercised at every
//! protocol version.

#![no_main]

use libfuzzer_sys::fuzz_target;
use netvsc::nvsp::{GUEST_MESSAGE_SIZE, NvspMessage, Sender, VERSIONS};

fuzz_target!(|data: &[u8]| {
    for sender in [Sender::Host, Sender::Guest] {
        let Ok(message) = NvspMessage::parse_from(sender, data) else {
            continue;
        };
        match message {
            NvspMessage::SendReceiveBufferComplete(done) => {
                assert!(done.sections().count() <= done.num_sections() as usize);
                for buffer_size in [0, 262_144, 31 << 20, usize::MAX] {
                    if let Ok(section) = done.validate(buffer_size) {
                        let bytes = u64::from(section.sub_allocation_size.get())
                            * u64::from(section.num_sub_allocations.get());
                        assert!(bytes <= buffer_size as u64);
                    }
                }
            }
            NvspMessage::SendIndirectionTable(table) => {
                for version in VERSIONS {
                    if table.table(version).is_ok() {
                        let end = table.effective_offset(version) + 64;
                        assert!(end <= data.len() as u64);
                    }
                }
            }
            _ => {}
        }
        let bytes = message.to_vec(0);
        assert_eq!(bytes.len(), message.encoded_len());
        assert_eq!(&bytes[..], &data[..bytes.len()]);
        assert_eq!(NvspMessage::parse_from(sender, &bytes), Ok(message));
        let padded = message.to_vec(GUEST_MESSAGE_SIZE);
        let reparsed = NvspMessage::parse_from(sender, &padded).map(|m| m.msg_type());
        assert_eq!(reparsed, Ok(message.msg_type()));
    }
});
