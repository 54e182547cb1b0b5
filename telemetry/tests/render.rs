//! A sample rendered through a local recorder with the endpoint's settings gives the
//! expected Prometheus series: counters, state-set gauges, the VF info series (0 once the VF
//! is gone), histograms with the catalogue's buckets, `# HELP` and `# TYPE` for each.

use std::time::Duration;

use telemetry::catalogue;
use telemetry::{
    ByPath, Emitter, Path, PortCounters, PortSample, PortState, QueueSample, VfInfo, endpoint,
};

fn sample(on_vf: bool) -> PortSample {
    PortSample {
        device: "dev0".into(),
        state: if on_vf {
            PortState::OnVf
        } else {
            PortState::Synthetic
        },
        data_path: if on_vf { Path::Vf } else { Path::Synthetic },
        link_up: ByPath {
            synthetic: true,
            vf: on_vf,
        },
        vf: on_vf.then(|| VfInfo {
            pci_address: "0000:00:07.0".into(),
            serial: Some(7),
            driver: "igbvf".into(),
        }),
        queues: vec![
            QueueSample {
                rx_packets: ByPath {
                    synthetic: 10,
                    vf: 20,
                },
                tx_packets: ByPath {
                    synthetic: 30,
                    vf: 40,
                },
                rx_bytes: ByPath {
                    synthetic: Some(1000),
                    vf: None,
                },
                tx_bytes: ByPath {
                    synthetic: Some(3000),
                    vf: None,
                },
                rx_dropped: vec![("no_buffer", 2), ("malformed", 0)],
                tx_dropped: vec![("unsendable", 1)],
                tx_stalls: vec![("ring_full", 5)],
                tx_no_section: 3,
            },
            QueueSample::default(),
        ],
        switches_to_vf: 2,
        switches_to_synthetic: vec![("release_requested", 1), ("removed", 1)],
        wait_timeouts: vec![("poller_ack", 0)],
        counters: PortCounters {
            vf_attach_errors: 4,
            tx_stranded: 6,
            ..PortCounters::default()
        },
    }
}

/// The value of the series `series` (name and labels exactly as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn a_sample_renders_as_the_catalogue_says() {
    let recorder = endpoint::recorder();
    let mut emitter = Emitter::new();
    metrics::with_local_recorder(&recorder, || {
        catalogue::describe();
        emitter.emit(&[sample(true)]);
        telemetry::record_failover("dev0", Duration::from_micros(300));
        telemetry::record_failback("dev0", Duration::from_millis(3));
    });
    let text = recorder.handle().render();
    let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in:\n{text}"));
    assert_eq!(
        v(r#"hvnet_rx_packets_total{device="dev0",queue="0",path="synthetic"}"#),
        10.0
    );
    assert_eq!(
        v(r#"hvnet_rx_packets_total{device="dev0",queue="0",path="vf"}"#),
        20.0
    );
    assert_eq!(
        v(r#"hvnet_tx_packets_total{device="dev0",queue="0",path="vf"}"#),
        40.0
    );
    assert_eq!(
        v(r#"hvnet_tx_packets_total{device="dev0",queue="1",path="synthetic"}"#),
        0.0
    );
    assert_eq!(
        v(r#"hvnet_rx_bytes_total{device="dev0",queue="0",path="synthetic"}"#),
        1000.0
    );
    assert!(
        value(
            &text,
            r#"hvnet_rx_bytes_total{device="dev0",queue="0",path="vf"}"#
        )
        .is_none(),
        "bytes the data does not have are not exported as 0"
    );
    assert_eq!(
        v(r#"hvnet_rx_dropped_total{device="dev0",queue="0",reason="no_buffer"}"#),
        2.0
    );
    assert_eq!(
        v(r#"hvnet_tx_stalls_total{device="dev0",queue="0",reason="ring_full"}"#),
        5.0
    );
    assert_eq!(v(r#"hvnet_data_path{device="dev0",path="vf"}"#), 1.0);
    assert_eq!(v(r#"hvnet_data_path{device="dev0",path="synthetic"}"#), 0.0);
    assert_eq!(v(r#"hvnet_port_state{device="dev0",state="on_vf"}"#), 1.0);
    assert_eq!(
        v(r#"hvnet_port_state{device="dev0",state="vf_attaching"}"#),
        0.0
    );
    assert_eq!(v(r#"hvnet_link_up{device="dev0",path="vf"}"#), 1.0);
    let vf_info =
        r#"hvnet_vf_info{device="dev0",pci_address="0000:00:07.0",serial="7",driver="igbvf"}"#;
    assert_eq!(v(vf_info), 1.0);
    assert_eq!(
        v(r#"hvnet_switches_total{device="dev0",direction="to_vf",reason="vf_ready"}"#),
        2.0
    );
    assert_eq!(
        v(r#"hvnet_switches_total{device="dev0",direction="to_synthetic",reason="removed"}"#),
        1.0
    );
    assert_eq!(v(r#"hvnet_vf_attach_errors_total{device="dev0"}"#), 4.0);
    assert_eq!(v(r#"hvnet_tx_stranded_total{device="dev0"}"#), 6.0);
    // Histograms, not summaries, with the catalogue's buckets.
    assert!(
        text.contains("# TYPE hvnet_failover_duration_seconds histogram"),
        "{text}"
    );
    assert_eq!(
        v(r#"hvnet_failover_duration_seconds_bucket{device="dev0",le="0.00025"}"#),
        0.0
    );
    assert_eq!(
        v(r#"hvnet_failover_duration_seconds_bucket{device="dev0",le="0.0005"}"#),
        1.0
    );
    assert_eq!(
        v(r#"hvnet_failback_duration_seconds_bucket{device="dev0",le="0.0025"}"#),
        0.0
    );
    assert_eq!(
        v(r#"hvnet_failback_duration_seconds_bucket{device="dev0",le="10"}"#),
        1.0
    );
    assert_eq!(
        v(r#"hvnet_failback_duration_seconds_count{device="dev0"}"#),
        1.0
    );
    // Every metric emitted has HELP and TYPE.
    for line in text.lines().filter(|l| l.starts_with("hvnet_")) {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| catalogue::find(f).is_some())
            })
            .unwrap_or(name);
        let m = catalogue::find(family).unwrap_or_else(|| panic!("{name} is not in the catalogue"));
        assert!(
            text.contains(&format!("# TYPE {family} {}", m.kind.as_str())),
            "{family}"
        );
        assert!(text.contains(&format!("# HELP {family} ")), "{family}");
    }

    // The VF goes away: its info series reads 0, the data path synthetic; counters only rise.
    let mut later = sample(false);
    later.queues[0].rx_packets.synthetic = 11;
    metrics::with_local_recorder(&recorder, || emitter.emit(&[later]));
    let text = recorder.handle().render();
    assert_eq!(value(&text, vf_info), Some(0.0), "{text}");
    assert_eq!(
        value(&text, r#"hvnet_data_path{device="dev0",path="synthetic"}"#),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            r#"hvnet_rx_packets_total{device="dev0",queue="0",path="synthetic"}"#
        ),
        Some(11.0)
    );
}
