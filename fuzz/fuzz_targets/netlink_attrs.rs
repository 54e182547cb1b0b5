//! The AF_XDP backend reads the kernel's generic-netlink answers (a driver's `xdp_features`):
//! whatever the bytes, the reader returns attributes or an error, never panics or reads past
//! them, and attributes it read encode back to bytes it reads the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vf::kernel::xdp::features::{answer_attrs, parse_attrs, put_attr};

fuzz_target!(|data: &[u8]| {
    let _ = answer_attrs(data);
    let Some(attrs) = parse_attrs(data) else {
        return;
    };
    let mut bytes = Vec::new();
    for a in &attrs {
        put_attr(&mut bytes, a.kind, a.payload);
    }
    let again = parse_attrs(&bytes).expect("encoded attributes read back");
    assert_eq!(again, attrs);
});
