//! `hvnet stats` reads the text a metrics endpoint answered: whatever the bytes, the reader
//! returns samples or an error, never panics, and what it read renders back to text it reads
//! the same way.
#![no_main]

use libfuzzer_sys::fuzz_target;
use telemetry::exposition::parse;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(samples) = parse(text) else {
        return;
    };
    let rendered: String = samples.iter().map(|s| s.render() + "\n").collect();
    let again = parse(&rendered).expect("a rendered sample reads back");
    assert_eq!(again.len(), samples.len());
    for (a, b) in again.iter().zip(&samples) {
        assert_eq!((&a.name, &a.labels), (&b.name, &b.labels));
        assert!(a.value == b.value || (a.value.is_nan() && b.value.is_nan()));
    }
});
