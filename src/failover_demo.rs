//! The failover part of `hvnet demo`: a FailoverPort over the synthetic NIC and a software
//! SR-IOV VF on the simulated host, under traffic both ways, through a planned removal, a
//! re-offer and a surprise removal.

use std::time::Duration;

use anyhow::{Context, ensure};
use bond::{FailoverEvent, FailoverStats, PortState, SwitchReason};
use integration::harness::failover::{Accounting, FailoverRig, FailoverRigConfig};
use integration::harness::traffic::{TrafficConfig, TrafficCounts};

/// Bound of every wait of the demo.
const WAIT: Duration = Duration::from_secs(30);
/// The VF's association serial (its PCI slot).
const SERIAL: u32 = 7;

fn wait(
    rig: &FailoverRig,
    what: &str,
    done: impl FnMut(&FailoverStats) -> bool,
) -> anyhow::Result<()> {
    ensure!(
        rig.port.wait_until(WAIT, done),
        "the port never got to: {what} ({:?})",
        rig.port.stats()
    );
    Ok(())
}

fn switched_back(rig: &FailoverRig) -> Option<(SwitchReason, Duration, Duration)> {
    std::iter::from_fn(|| rig.port.next_event(Duration::from_millis(100))).find_map(|e| match e {
        FailoverEvent::SwitchedToSynthetic {
            reason,
            failover,
            complete,
        } => Some((reason, failover, complete)),
        _ => None,
    })
}

fn print_switch(rig: &FailoverRig) {
    if let Some((reason, failover, complete)) = switched_back(rig) {
        say!(
            "  left the VF ({}): transmit on synthetic after {:.3} ms, VF drained and released after {:.3} ms",
            reason.as_str(),
            failover.as_secs_f64() * 1e3,
            complete.as_secs_f64() * 1e3
        );
    }
}

pub fn run(queues: u16) -> anyhow::Result<()> {
    let mut config = FailoverRigConfig::default();
    config.nic.queues = queues.min(2);
    say!(
        "failover: a FailoverPort over the synthetic NIC and a software 82576 VF on the simulated host ({} queues)",
        config.nic.queues
    );
    let mut rig = FailoverRig::start(config).context("starting the failover rig")?;
    let traffic = rig.start_traffic(TrafficConfig::default());
    ensure!(
        traffic.wait_progress(2_000, WAIT),
        "no traffic on synthetic"
    );
    say!(
        "  synthetic only: {:.0} frames/s both ways",
        traffic.rate(Duration::from_millis(200))
    );

    say!(
        "host offers the VF (NVSP 128); the port binds it, waits for its link and switches (NVSP 129)"
    );
    rig.host.offer_vf(SERIAL);
    wait(&rig, "on the VF", |s| s.state == PortState::OnVf)?;
    say!(
        "  on the VF: {:.0} frames/s both ways",
        traffic.rate(Duration::from_millis(200))
    );

    say!(
        "planned removal, Azure order: the VFIO request IRQ first, the association after the release"
    );
    ensure!(rig.pci.eject_azure(WAIT), "the VF was not released");
    wait(&rig, "released", |s| {
        s.state == PortState::Synthetic && s.vf_released == 1
    })?;
    print_switch(&rig);

    say!("the host offers the VF again; the port re-attaches it");
    rig.host.offer_vf(SERIAL);
    wait(&rig, "on the VF again", |s| {
        s.state == PortState::OnVf && s.switches_to_vf == 2
    })?;
    ensure!(traffic.wait_progress(2_000, WAIT), "no traffic on the VF");

    say!("surprise removal: the VF vanishes mid-traffic; the port notices and moves at once");
    let released = rig.pci.surprise_remove(
        || {
            let _ = rig.port.wait_until(WAIT, |s| {
                s.switches_to_synthetic.get(SwitchReason::Removed) == 1
            });
        },
        WAIT,
    );
    ensure!(released, "the dead VF was not released");
    wait(&rig, "released", |s| {
        s.state == PortState::Synthetic && s.vf_released == 2
    })?;
    print_switch(&rig);
    ensure!(
        traffic.wait_progress(2_000, WAIT),
        "no traffic after the surprise removal"
    );

    let (counts, _) = traffic.stop(WAIT, |c| rig.account(c).balanced(c));
    let a = rig.account(&counts);
    report(&counts, &rig.port.stats(), &a);
    ensure!(
        a.balanced(&counts),
        "frames unaccounted for: {a:?} {counts:?}"
    );
    ensure!(
        a.failover_lost() == 0,
        "frames lost by the failover itself: {a:?} {counts:?}"
    );
    ensure!(
        counts.guest_reordered + counts.peer_reordered == 0,
        "frames reordered: {counts:?}"
    );
    say!(
        "failover finished: no frame reordered; every frame delivered or counted where it was lost"
    );
    Ok(())
}

fn report(c: &TrafficCounts, s: &FailoverStats, a: &Accounting) {
    let rx_vf: u64 = s.queues.iter().map(|q| q.rx_vf).sum();
    let tx_vf: u64 = s.queues.iter().map(|q| q.tx_vf).sum();
    say!(
        "  to the guest: {} injected, {} received ({} through the VF), {} lost with the dead VF (counted)",
        c.peer_injected,
        c.guest_received,
        rx_vf,
        a.rx_stranded
    );
    say!(
        "  from the guest: {} sent ({} through the VF), {} arrived, {} stranded on the dead VF (counted)",
        c.guest_sent,
        tx_vf,
        c.peer_received,
        a.tx_stranded
    );
    if a.overload() + a.link_down() > 0 {
        say!(
            "  also counted: {} dropped because a poller or the peer did not keep up, {} on a VF link that went down",
            a.overload(),
            a.link_down()
        );
    }
    say!(
        "  switches to the VF {}, back {}, VFs attached {} released {}",
        s.switches_to_vf,
        s.switches_to_synthetic.total(),
        s.vf_attached,
        s.vf_released
    );
}
