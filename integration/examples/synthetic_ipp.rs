//! A fixed synthetic-path workload for counting guest-side instructions per packet with
//! callgrind: `scripts/bench-ipp` runs it under valgrind, collecting only inside
//! `guest_tx_burst` and `guest_rx_burst` (the guest's per-burst work, whatever inlining does
//! inside them), and divides by the packet counts this program prints. The workload is
//! `integration::bench::ipp::synthetic`, the same `hvnet bench` counts.
//!
//! Usage: `synthetic_ipp <tx|rx> <frame bytes> <frames>`.

use integration::bench::ipp::{self, IppPath};

fn main() {
    let usage = "usage: synthetic_ipp <tx|rx> <frame bytes 60..=1514> <frames>";
    let args: Vec<String> = std::env::args().skip(1).collect();
    match ipp::run_from_args(IppPath::Synthetic, &args) {
        Ok(packets) => println!("packets {packets}"),
        Err(e) => {
            eprintln!("synthetic_ipp: {e}\n{usage}");
            std::process::exit(2);
        }
    }
}
