//! Failover: how long the port takes to leave the VF and to return to it, how many frames
//! each kind of removal costs, and whether throughput on the VF after a failback matches
//! throughput before — all under traffic both ways (`integration::harness::traffic`), against the
//! simulated host and the software VF.
//!
//! Run: `cargo bench -p integration --bench failover` (add `-- --quick` for fewer cycles).
//! Instruction counts per packet of the port against the bare VF come from
//! `scripts/bench-ipp` (callgrind). Durations are wall time on this machine, reported as a
//! distribution; they include the simulated host's and VF's threads sharing the CPUs.
//!
//! - **failover**: from the trigger (the VFIO request IRQ, the host's 129, the device gone)
//!   until every queue transmits on synthetic;
//! - **complete**: until the VF's rings are drained and it is released;
//! - **failback**: from the decision to switch until every queue transmits on the VF.

use std::time::Duration;

use bond::{FailoverEvent, FailoverQueue, PortState};
use integration::harness::failover::{FailoverRig, FailoverRigConfig};
use integration::harness::traffic::{Traffic, TrafficConfig, TrafficCounts};

const SERIAL: u32 = 7;
const WAIT: Duration = Duration::from_secs(30);

fn start() -> (FailoverRig, Traffic<FailoverQueue>) {
    let mut config = FailoverRigConfig::default();
    config.host.vf_device_delay = Duration::ZERO;
    let mut rig = FailoverRig::start(config).expect("rig starts");
    let traffic = rig.start_traffic(TrafficConfig::default());
    (rig, traffic)
}

fn wait(rig: &FailoverRig, what: &str, done: impl FnMut(&bond::FailoverStats) -> bool) {
    assert!(rig.port.wait_until(WAIT, done), "never got to: {what}");
}

fn attach(rig: &FailoverRig) {
    let n = rig.port.stats().switches_to_vf;
    rig.host.offer_vf(SERIAL);
    wait(rig, "on the VF", |s| {
        s.state == PortState::OnVf && s.switches_to_vf > n
    });
}

#[derive(Default)]
struct Samples {
    failover: Vec<Duration>,
    complete: Vec<Duration>,
    failback: Vec<Duration>,
}

impl Samples {
    fn collect(&mut self, rig: &FailoverRig) {
        while let Some(event) = rig.port.next_event(Duration::ZERO) {
            match event {
                FailoverEvent::SwitchedToSynthetic {
                    failover, complete, ..
                } => {
                    self.failover.push(failover);
                    self.complete.push(complete);
                }
                FailoverEvent::SwitchedToVf { duration } => self.failback.push(duration),
                _ => {}
            }
        }
    }
}

fn distribution(name: &str, mut v: Vec<Duration>) {
    if v.is_empty() {
        return;
    }
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!(
        "  {name:<9} n={:<4} min {:>9.3?}  p50 {:>9.3?}  p90 {:>9.3?}  p99 {:>9.3?}  max {:>9.3?}",
        v.len(),
        v[0],
        at(0.5),
        at(0.9),
        at(0.99),
        v[v.len() - 1]
    );
}

/// Frames lost in a run, as the rig accounts for them (each counted where it was lost).
fn finish(rig: &FailoverRig, traffic: Traffic<FailoverQueue>) -> (TrafficCounts, u64, u64) {
    let (counts, _) = traffic.stop(WAIT, |c| rig.account(c).balanced(c));
    let a = rig.account(&counts);
    assert!(
        a.balanced(&counts),
        "frames unaccounted for: {a:?} {counts:?}"
    );
    assert_eq!(
        counts.guest_reordered + counts.peer_reordered,
        0,
        "{counts:?}"
    );
    let rx_lost = a.rx_stranded + a.rx_overload + a.rx_link_down + a.rx_failover;
    let tx_lost = a.tx_stranded + a.tx_overload + a.tx_link_down;
    (counts, rx_lost, tx_lost)
}

fn scenario(name: &str, cycles: usize, remove: impl Fn(&FailoverRig, &Traffic<FailoverQueue>)) {
    let (rig, traffic) = start();
    let mut samples = Samples::default();
    for _ in 0..cycles {
        attach(&rig);
        assert!(traffic.wait_progress(500, WAIT));
        let released = rig.port.stats().vf_released;
        remove(&rig, &traffic);
        wait(&rig, "released", |s| {
            s.state == PortState::Synthetic && s.vf_released > released
        });
        assert!(traffic.wait_progress(500, WAIT));
        samples.collect(&rig);
    }
    let (counts, rx_lost, tx_lost) = finish(&rig, traffic);
    samples.collect(&rig);
    println!(
        "{name}: {cycles} cycles, {} frames to the guest and {} from it; lost {} to the guest \
         ({:.2} per cycle) and {} from it ({:.2} per cycle), every one counted",
        counts.peer_injected,
        counts.guest_sent,
        rx_lost,
        rx_lost as f64 / cycles as f64,
        tx_lost,
        tx_lost as f64 / cycles as f64,
    );
    distribution("failover", samples.failover);
    distribution("complete", samples.complete);
    distribution("failback", samples.failback);
}

/// The median of `n` rates over `window` each (a 2-core machine running the host, the VF
/// and the pollers moves single windows by a lot).
fn steady_rate(traffic: &Traffic<FailoverQueue>, window: Duration, n: usize) -> f64 {
    let mut v: Vec<f64> = (0..n).map(|_| traffic.rate(window)).collect();
    v.sort_by(f64::total_cmp);
    v[n / 2]
}

fn throughput_after_failback(window: Duration, windows: usize, rounds: usize) {
    let (rig, traffic) = start();
    attach(&rig);
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let before = steady_rate(&traffic, window, windows);
        assert!(rig.pci.eject_azure(WAIT));
        wait(&rig, "released", |s| s.state == PortState::Synthetic);
        let synthetic = steady_rate(&traffic, window, windows);
        attach(&rig);
        let after = steady_rate(&traffic, window, windows);
        let settled = steady_rate(&traffic, window, windows);
        println!(
            "  on VF before {before:>10.0} f/s   on synthetic {synthetic:>10.0} f/s   on VF right \
             after failback {after:>10.0} f/s, then {settled:>10.0} f/s   after/before {:.3}",
            after / before
        );
        ratios.push(after / before);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "throughput after failback / before (medians of {windows} windows of {window:?}): \
         median {:.3} over {rounds} rounds, range {:.3}..{:.3} (goal ≥ 0.95)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    finish(&rig, traffic);
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cycles = if quick { 10 } else { 50 };
    println!(
        "failover bench ({} cycles per scenario; wall time on this machine)",
        cycles
    );
    scenario("planned, Azure order (eject first)", cycles, |rig, _| {
        assert!(rig.pci.eject_azure(WAIT));
    });
    scenario(
        "planned, OpenVMM order (host 129, then 128 {0})",
        cycles,
        |rig, _| {
            assert!(rig.pci.remove_openvmm(WAIT));
        },
    );
    scenario("surprise removal", cycles, |rig, traffic| {
        assert!(rig.pci.surprise_remove(
            || {
                let n = rig.port.stats().switches_to_synthetic.total();
                wait(rig, "off the dead VF", |s| {
                    s.switches_to_synthetic.total() > n
                });
                assert!(traffic.wait_progress(200, WAIT));
            },
            WAIT
        ));
    });
    scenario("VF link flap", cycles, |rig, _| {
        let vf = rig.pci.vf().expect("VF");
        vf.set_link(false);
        wait(rig, "link down seen", |s| s.vf_link_up == Some(false));
        vf.set_link(true);
        wait(rig, "back on the VF", |s| s.state == PortState::OnVf);
        assert!(rig.pci.eject_azure(WAIT));
    });
    let (windows, rounds) = if quick { (3, 3) } else { (9, 7) };
    throughput_after_failback(Duration::from_millis(100), windows, rounds);
}
