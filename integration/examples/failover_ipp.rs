//! A fixed workload for counting the failover port's instructions per packet with
//! callgrind, on the VF path: `scripts/bench-ipp` runs it under valgrind, collecting only
//! inside `failover_tx_burst` and `failover_rx_burst`, and compares with `vf_ipp` (the bare
//! igbvf queue). The port's queue runs in lock-step with the software VF, so no empty poll
//! of the VF is counted; the synthetic path is polled as it always is on the VF (the host
//! keeps delivering there), which is part of what the port costs.
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

use std::hint::black_box;
use std::time::{Duration, Instant};

use bond::{FailoverQueue, PortState};
use integration::harness::failover::{FailoverRig, FailoverRigConfig};
use integration::harness::traffic::PEER_MAC;
use packet::{Packet, PortQueue};

#[inline(never)]
fn failover_tx_burst(queue: &mut FailoverQueue, frames: &mut Vec<Packet>) -> usize {
    queue.tx_burst(black_box(frames))
}

#[inline(never)]
fn failover_rx_burst(queue: &mut FailoverQueue, out: &mut Vec<Packet>) -> usize {
    queue.rx_burst(black_box(out), 64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage =
        "usage: failover_ipp <tx|rx> <frame bytes 60..=1514> <frames> [failback] [telemetry]";
    let [_, dir, len, count, options @ ..] = args.as_slice() else {
        panic!("{usage}");
    };
    assert!(
        options.iter().all(|o| o == "failback" || o == "telemetry"),
        "{usage}"
    );
    let failback = options.iter().any(|o| o == "failback");
    let telemetry = options.iter().any(|o| o == "telemetry");
    let len: usize = len.parse().expect(usage);
    let count: u64 = count.parse().expect(usage);
    assert!((60..=1514).contains(&len), "{usage}");
    let mut config = FailoverRigConfig::default();
    config.nic.queues = 1;
    config.pci.vf_queues = 1;
    config.host.vf_device_delay = Duration::ZERO;
    let mut rig = FailoverRig::start(config).expect("rig starts");
    rig.host.offer_vf(7);
    let mut queue = rig.queues.remove(0);
    let deadline = Instant::now() + Duration::from_secs(600);
    // Poll until the port is where it should be (and the queue has left "synthetic first").
    let mut out = Vec::with_capacity(64);
    let mut poll_until = |queue: &mut FailoverQueue, done: &dyn Fn() -> bool| {
        while !done() {
            queue.rx_burst(&mut out, 64);
            out.clear();
            assert!(Instant::now() < deadline, "the port never got there");
            std::thread::yield_now();
        }
    };
    poll_until(&mut queue, &|| rig.port.state() == PortState::OnVf);
    if failback {
        let pci = rig.pci.clone();
        let ejector = std::thread::spawn(move || pci.eject_azure(Duration::from_secs(60)));
        poll_until(&mut queue, &|| {
            let s = rig.port.stats();
            s.state == PortState::Synthetic && s.vf_released == 1
        });
        assert!(ejector.join().expect("ejector"), "the VF was not released");
        rig.host.offer_vf(7);
        poll_until(&mut queue, &|| {
            let s = rig.port.stats();
            s.state == PortState::OnVf && s.switches_to_vf == 2
        });
    }
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
        workload(&rig, &mut queue, dir, len, count, deadline, usage);
        drop(publisher);
    });
}

/// The counted workload: `count` frames of `len` bytes through the port on the VF.
fn workload(
    rig: &FailoverRig,
    queue: &mut FailoverQueue,
    dir: &str,
    len: usize,
    count: u64,
    deadline: Instant,
    usage: &str,
) {
    let mut out = Vec::with_capacity(64);
    for _ in 0..4 {
        queue.rx_burst(&mut out, 64);
        out.clear();
    }
    let vf = rig.pci.vf().expect("VF bound");
    let wait = |until: &dyn Fn() -> bool| {
        while !until() {
            assert!(Instant::now() < deadline, "stalled");
            std::thread::yield_now();
        }
    };
    let mac = rig.port.mac();
    let mut frame = vec![0x5au8; len];
    let mut done = 0u64;
    match dir {
        "tx" => {
            frame[0..6].copy_from_slice(&PEER_MAC.0);
            frame[6..12].copy_from_slice(&mac.0);
            let pool = rig.port.pool().clone();
            let mut burst = Vec::with_capacity(32);
            while done < count {
                while done + (burst.len() as u64) < count && burst.len() < 32 {
                    burst.push(pool.alloc_from(&frame).expect("pool"));
                }
                done += failover_tx_burst(queue, &mut burst) as u64;
                wait(&|| vf.stats().tx_frames >= done);
                while rig.host.external().try_recv().is_some() {}
            }
            failover_tx_burst(queue, &mut burst);
        }
        "rx" => {
            frame[0..6].copy_from_slice(&mac.0);
            frame[6..12].copy_from_slice(&PEER_MAC.0);
            let mut injected = 0;
            while done < count {
                let n = (count - injected).min(32);
                for _ in 0..n {
                    assert!(rig.host.external().inject_on(0, &frame));
                }
                injected += n;
                wait(&|| vf.stats().rx_frames >= injected);
                while done < injected {
                    done += failover_rx_burst(queue, &mut out) as u64;
                    out.clear();
                    assert!(Instant::now() < deadline, "the port stalled");
                }
            }
        }
        _ => panic!("{usage}"),
    }
    let stats = rig.port.stats();
    assert_eq!(stats.state, PortState::OnVf, "left the VF during the run");
    println!("packets {done}");
}
