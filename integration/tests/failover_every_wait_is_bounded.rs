//! Guarantee 4 (DESIGN §4): every wait is bounded — the host refusing the switch, a VF that
//! never appears, a poller that never polls — and each ends on the synthetic path, counted,
//! with traffic unharmed.

mod failover_common;

use std::time::Duration;

use bond::{FailoverEvent, PortState, SwitchReason};
use failover_common::*;
use integration::harness::failover::FailoverRigConfig;
use integration::harness::traffic::TrafficConfig;
use integration::host::Fault;

#[test]
fn the_host_refusing_the_switch_leaves_the_port_on_synthetic_without_loss() {
    let mut rig = rig();
    let traffic = traffic(&mut rig, TrafficConfig::default());
    rig.host.inject_fault(Fault::RefuseVfSwitch(true));
    rig.host.offer_vf(SERIAL);
    wait_port(&rig, "the refusal", |s| s.switches_refused == 1);
    wait_port(&rig, "attached, on synthetic", |s| {
        s.state == PortState::VfAttaching
    });
    flowing(&traffic, PHASE_FRAMES);
    let stats = rig.port.stats();
    assert_eq!(
        stats.switches_to_vf, 1,
        "it must not retry on its own: {stats:#?}"
    );
    assert_eq!(
        stats.switches_to_synthetic.get(SwitchReason::HostSwitched),
        1
    );
    assert!(!rig.host.data_path_vf());

    // The host can switch again; a link change of the VF is what makes the port retry.
    rig.host.inject_fault(Fault::RefuseVfSwitch(false));
    // Applied before the port retries: a host thread the scheduler set aside mid-pass could
    // otherwise read the retry before the request (and refuse it again).
    let deadline = std::time::Instant::now() + DEADLINE;
    while rig.host.stats().faults_injected < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the host never applied the fault"
        );
        std::thread::yield_now();
    }
    let vf = rig.pci.vf().expect("the VF stays bound");
    vf.set_link(false);
    wait_port(&rig, "the VF's link down", |s| s.vf_link_up == Some(false));
    vf.set_link(true);
    wait_port(&rig, "on the VF after the retry", |s| {
        s.state == PortState::OnVf && s.switches_to_vf == 2
    });
    flowing(&traffic, PHASE_FRAMES);
    finish_accounted(traffic, &rig);
}

#[test]
fn a_vf_that_never_appears_is_given_up_after_its_bound_on_the_port_clock() {
    let mut config = FailoverRigConfig::default();
    // The host sends the association but never offers the device.
    config.host.vf_device_delay = Duration::from_secs(3600);
    config.failover.vf_appear_timeout = Duration::from_secs(30);
    let mut rig = rig_with(config);
    let traffic = traffic(&mut rig, TrafficConfig::default());
    rig.host.offer_vf(SERIAL);
    let associated = rig.port.next_event(DEADLINE);
    assert_eq!(
        associated,
        Some(FailoverEvent::VfAssociated { serial: SERIAL })
    );
    flowing(&traffic, PHASE_FRAMES);
    assert_eq!(rig.port.stats().vf_appear_timeouts, 0);
    rig.clock.advance(Duration::from_secs(31));
    wait_port(&rig, "the association given up", |s| {
        s.vf_appear_timeouts == 1
    });
    flowing(&traffic, PHASE_FRAMES);
    let counts = finish_lossless(traffic, &rig);
    assert!(counts.guest_received > 0);
    let stats = rig.port.stats();
    assert_eq!(stats.state, PortState::Synthetic);
    assert_eq!(stats.vf_attached, 0);
}

#[test]
fn a_queue_nobody_polls_does_not_hold_a_failover_up() {
    // The rig's queue handles stay in the rig: nobody polls them.
    let rig = rig();
    attach(&rig);
    assert!(rig.pci.eject_azure(DEADLINE));
    wait_port(&rig, "released", |s| {
        s.vf_released == 1 && s.state == PortState::Synthetic
    });
    let stats = rig.port.stats();
    assert_eq!(stats.ack_timeouts, 0, "{stats:#?}");
    assert_eq!(stats.drain_timeouts, 0, "{stats:#?}");
    let Some(FailoverEvent::SwitchedToSynthetic { complete, .. }) =
        std::iter::from_fn(|| rig.port.next_event(DEADLINE))
            .find(|e| matches!(e, FailoverEvent::SwitchedToSynthetic { .. }))
    else {
        panic!("no switch back reported");
    };
    assert!(
        complete < rig_config_ack_timeout(),
        "the switch back waited out a bound: {complete:?}"
    );
}

fn rig_config_ack_timeout() -> Duration {
    FailoverRigConfig::default().failover.ack_timeout
}

/// A provider whose probe does not return until the test lets it (a VF driver stuck in a
/// call): the control thread is inside it when the port closes.
#[derive(Debug, Default)]
struct StuckProvider {
    /// (entered, let go)
    state: std::sync::Mutex<(bool, bool)>,
    changed: std::sync::Condvar,
}

impl StuckProvider {
    fn wait(&self, what: impl Fn(&(bool, bool)) -> bool) -> bool {
        let guard = self.state.lock().unwrap();
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, DEADLINE, |s| !what(s))
            .unwrap();
        what(&guard)
    }

    fn set(&self, f: impl FnOnce(&mut (bool, bool))) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }
}

impl bond::VfProvider for StuckProvider {
    fn probe(
        &self,
        _serial: u32,
        _request: &bond::VfRequest,
    ) -> Result<Option<bond::AttachedVf>, bond::ProbeError> {
        self.set(|s| s.0 = true);
        self.wait(|s| s.1);
        Ok(None)
    }
}

#[test]
fn closing_a_port_whose_control_thread_is_stuck_returns_within_its_bound() {
    use integration::host::{HostConfig, SimHost};
    use netvsc::nic::{NicConfig, SyntheticNic};
    use std::sync::Arc;
    use std::time::Instant;

    let (host, device) = SimHost::start(HostConfig::default()).expect("starting the host");
    let nic_config = NicConfig {
        sriov: true,
        ..NicConfig::default()
    };
    let (nic, queues) = SyntheticNic::open(Box::new(device), nic_config).expect("opening");
    let failover = bond::FailoverConfig {
        vf_probe_interval: Duration::ZERO,
        switch_timeout: Duration::from_millis(100),
        ack_timeout: Duration::from_millis(100),
        drain_timeout: Duration::from_millis(100),
        vf_stop_timeout: Duration::from_millis(100),
        watchdog_timeout: Duration::from_millis(500),
        ..bond::FailoverConfig::default()
    };
    let provider = Arc::new(StuckProvider::default());
    let (port, queues) = bond::FailoverPort::open(
        nic,
        queues,
        provider.clone(),
        failover,
        Arc::new(bond::ManualClock::new()),
    )
    .expect("opening the port");
    host.offer_vf(SERIAL);
    assert!(provider.wait(|s| s.0), "the port never probed for the VF");

    let started = Instant::now();
    port.close();
    let took = started.elapsed();
    // The bound: (0.5 s + 0.1 s + 3 × 0.1 s + 2 × 0.1 s + 0.1 s + 0.1 s + 1 ms) × 2 + 1 s.
    assert!(
        took < Duration::from_secs(5),
        "close waited {took:?} on a stuck control thread"
    );
    assert!(
        took >= Duration::from_secs(2),
        "close returned after {took:?}, before its bound: did it wait at all?"
    );
    provider.set(|s| s.1 = true);
    drop(queues);
    drop(port);
}
