//! A fixed VF-path workload for counting driver instructions per packet with callgrind:
//! `scripts/bench-ipp` runs it under valgrind, collecting only inside `driver_tx_burst` and
//! `driver_rx_burst`, and divides by the packet count this program prints. Driver and model
//! run in lock-step (the driver is called only once the model has done its part), so no
//! empty poll is counted. The workload is `integration::bench::ipp::vf`, the same
//! `hvnet bench` counts.
//!
//! Usage: `vf_ipp <tx|rx> <frame bytes 60..=1514> <frames>`.

use integration::bench::ipp::{self, IppPath};

fn main() {
    let usage = "usage: vf_ipp <tx|rx> <frame bytes 60..=1514> <frames>";
    let args: Vec<String> = std::env::args().skip(1).collect();
    match ipp::run_from_args(IppPath::Vf, &args) {
        Ok(packets) => println!("packets {packets}"),
        Err(e) => {
            eprintln!("vf_ipp: {e}\n{usage}");
            std::process::exit(2);
        }
    }
}
