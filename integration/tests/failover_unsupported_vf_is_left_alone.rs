//! A VF hvnet has no driver for (an mlx5 or MANA VF on Azure) is never bound or opened: the
//! provider reports it (`ProbeError::Unsupported`), the port counts it once per association
//! in `vf_unsupported`, stops looking for it (no probe every interval for two minutes, no
//! appear timeout) and stays on the synthetic path. A new association looks again.

mod failover_common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bond::provider::PciId;
use bond::{AttachedVf, FailoverEvent, PortState, ProbeError, VfProvider, VfRequest};
use failover_common::{DEADLINE, SERIAL};
use integration::host::{HostConfig, SimHost};
use netvsc::nic::{NicConfig, SyntheticNic};

/// A provider that finds an mlx5 VF (15b3:101a on mlx5_core) for every association, as
/// `VfioIgbvfProvider` reports one, and counts the looks.
#[derive(Debug, Default)]
struct Mlx5Provider {
    calls: Mutex<Vec<u32>>,
}

impl Mlx5Provider {
    fn calls(&self) -> Vec<u32> {
        self.calls.lock().unwrap().clone()
    }
}

impl VfProvider for Mlx5Provider {
    fn probe(&self, serial: u32, _: &VfRequest) -> Result<Option<AttachedVf>, ProbeError> {
        self.calls.lock().unwrap().push(serial);
        Err(ProbeError::Unsupported {
            device: "1d7c:00:02.0".into(),
            id: PciId {
                vendor: 0x15b3,
                device: 0x101a,
            },
            driver: Some("mlx5_core".into()),
        })
    }
}

/// Waits (bounded) until the host has sent more than `before` RNDIS control messages.
fn wait_control_messages(host: &SimHost, before: u64) {
    let deadline = Instant::now() + DEADLINE;
    while host.stats().control_messages <= before {
        assert!(Instant::now() < deadline, "the port sent no keepalive");
        std::thread::yield_now();
    }
}

#[test]
fn an_unsupported_vf_is_counted_once_and_never_probed_again() {
    let (host, device) = SimHost::start(HostConfig::default()).expect("starting the host");
    let nic_config = NicConfig {
        sriov: true,
        ..NicConfig::default()
    };
    let (nic, queues) = SyntheticNic::open(Box::new(device), nic_config).expect("opening");
    let failover = bond::FailoverConfig {
        vf_probe_interval: Duration::from_millis(10),
        vf_appear_timeout: Duration::from_millis(100),
        watchdog_interval: Duration::from_secs(1),
        ..bond::FailoverConfig::default()
    };
    let provider = Arc::new(Mlx5Provider::default());
    let clock = bond::ManualClock::new();
    let (port, queues) = bond::FailoverPort::open(
        nic,
        queues,
        provider.clone(),
        failover.clone(),
        Arc::new(clock.clone()),
    )
    .expect("opening the port");

    host.offer_vf(SERIAL);
    assert!(
        port.wait_until(DEADLINE, |s| s.vf_unsupported == 1),
        "{:#?}",
        port.stats()
    );
    let reported = std::iter::from_fn(|| port.next_event(DEADLINE))
        .find(|e| matches!(e, FailoverEvent::VfAttachFailed { .. }));
    let Some(FailoverEvent::VfAttachFailed { serial, error }) = reported else {
        panic!("no VfAttachFailed event");
    };
    assert_eq!(serial, SERIAL);
    assert_eq!(
        error,
        "VF 1d7c:00:02.0 15b3:101a has no hvnet driver; left on mlx5_core"
    );

    // Past every probe interval and the appear timeout, twice: a keepalive marks each step
    // that ran on the advanced clock, and the second one comes from a later step than the
    // first, so any probe the first step would have made has been made.
    for _ in 0..2 {
        let before = host.stats().control_messages;
        clock.advance(failover.watchdog_interval + failover.vf_appear_timeout);
        wait_control_messages(&host, before);
    }
    assert_eq!(provider.calls(), [SERIAL], "the port looked again");
    let stats = port.stats();
    assert_eq!(stats.state, PortState::Synthetic, "{stats:#?}");
    assert_eq!(stats.vf_unsupported, 1, "{stats:#?}");
    assert_eq!(stats.vf_attach_errors, 0, "{stats:#?}");
    assert_eq!(
        stats.vf_appear_timeouts, 0,
        "it stopped looking: {stats:#?}"
    );
    assert_eq!(stats.vf_attached, 0);
    assert!(!host.data_path_vf());

    // The host associates a VF again (after servicing, say): the port looks once more.
    host.offer_vf(SERIAL + 1);
    assert!(
        port.wait_until(DEADLINE, |s| s.vf_unsupported == 2),
        "{:#?}",
        port.stats()
    );
    assert_eq!(provider.calls(), [SERIAL, SERIAL + 1]);
    port.close();
    drop(queues);
}
