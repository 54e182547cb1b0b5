//! A fixed workload for counting the failover port's instructions per packet with
//! callgrind, on the VF path: `scripts/bench-ipp` runs it under valgrind, collecting only
//! inside `failover_tx_burst` and `failover_rx_burst`, and compares with `vf_ipp` (the bare
//! igbvf queue). The port's queue runs in lock-step with the software VF, so no empty poll
//! of the VF is counted; the synthetic path is polled as it always is on the VF (the host
//! keeps delivering there), which is part of what the port costs. The workload is
//! `integration::bench::ipp::failover`, the same `hvnet bench` counts.
//!
//! With `failback` as a fourth argument the port first goes through a whole cycle — on the
//! VF, the VF ejected, synthetic, the VF offered again, back on it — before the counted
//! workload, so `scripts/bench-ipp` can compare the cost on the VF after a failback with the
//! cost before (deterministic, unlike packets per second on a shared 2-core machine).
//!
//! With `telemetry` as an argument a metrics recorder is installed and the port's publisher
//! (`bond::metrics::port_sample`, what `hvnet run --metrics-addr` runs) samples the port every
//! millisecond through the counted workload, so `scripts/bench-ipp` shows what telemetry costs
//! the data path: the publisher runs on its own thread and the pollers make no metrics call.
//!
//! Usage: `failover_ipp <tx|rx> <frame bytes 60..=1514> <frames> [failback] [telemetry]`.

use std::time::Duration;

use integration::bench::BenchError;
use integration::bench::ipp::{self, failover::FailoverIpp};

fn run(args: &[String]) -> Result<u64, BenchError> {
    let (dir, len, count, options) = ipp::parse_args(args)?;
    if let Some(o) = options
        .iter()
        .find(|o| *o != "failback" && *o != "telemetry")
    {
        return Err(BenchError::Invalid(format!("unknown option '{o}'")));
    }
    let failback = options.iter().any(|o| o == "failback");
    let telemetry = options.iter().any(|o| o == "telemetry");
    let FailoverIpp { rig, mut queue, .. } = FailoverIpp::start(failback)?;
    let upkeep = telemetry.then(|| {
        let recorder = telemetry::endpoint::recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).expect("the only recorder");
        handle
    });
    let labels = bond::metrics::PortLabels::new("bench");
    std::thread::scope(|s| {
        let publisher = upkeep.map(|handle| {
            let config = telemetry::PublisherConfig {
                period: Duration::from_millis(1),
                upkeep: Some(handle),
            };
            let (labels, port) = (&labels, &rig.port);
            telemetry::Publisher::scoped(s, config, move || {
                vec![bond::metrics::port_sample(labels, port, |_| "igbvf".into())]
            })
            .expect("the publisher starts")
        });
        let done = ipp::failover::workload(&rig, &mut queue, dir, len, count);
        drop(publisher);
        drop(queue);
        done
    })
}

fn main() {
    let usage =
        "usage: failover_ipp <tx|rx> <frame bytes 60..=1514> <frames> [failback] [telemetry]";
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(packets) => println!("packets {packets}"),
        Err(e) => {
            eprintln!("failover_ipp: {e}\n{usage}");
            std::process::exit(2);
        }
    }
}
