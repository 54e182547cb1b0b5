//! The Prometheus endpoint (`--metrics-addr`, docs/metrics.md) of the real binary: `hvnet
//! demo` scraped while it runs, the data path seen on the VF and back, the switch counters and
//! the failover histogram moving, the exposition clean for `promtool check metrics`; `hvnet
//! run` against `hvnet sim-host` exporting transmit counters that grow; a wildcard address
//! refused without `--metrics-public`.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The sum of the series of `family` whose labels contain every one of `with` (e.g.
/// `path="vf"`); `None` when there is none.
fn sum(text: &str, family: &str, with: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(family) else {
            continue;
        };
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once("} ") {
                Some(x) => x,
                None => continue,
            },
            None => match rest.strip_prefix(' ') {
                Some(v) => ("", v),
                None => continue,
            },
        };
        if with.iter().all(|w| labels.split(',').any(|l| l == *w)) {
            *found.get_or_insert(0.0) += value.trim().parse::<f64>().expect(line);
        }
    }
    found
}

/// Waits (bounded) for the child to exit; whether it succeeded.
fn exit_status(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + BOUND;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the child did not exit");
        std::thread::yield_now();
    }
}

#[test]
fn the_demo_serves_the_failover_to_prometheus_as_it_happens() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Killed(
        hvnet()
            .args([
                "demo",
                "--frames",
                "500",
                "--queues",
                "2",
                "--hold",
                "3",
                "--metrics-addr",
                &addr,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hvnet demo"),
    );
    let mut out = Output::read(child.0.stdout.take().unwrap());
    out.wait("hvnet demo", "metrics: serving", |l| {
        l.starts_with("metrics: serving").then_some(0)
    });

    let path = |p: &str| format!("path=\"{p}\"");
    let (vf, synthetic) = (path("vf"), path("synthetic"));
    let device = "device=\"demo\"";
    let on = |text: &str, p: &str| sum(text, "hvnet_data_path", &[device, p]) == Some(1.0);
    // The phases in order: on the VF, back on synthetic after the planned removal, and the
    // end (both removals counted, both failovers in the histogram).
    let (mut seen_vf, mut seen_back) = (None::<String>, None::<String>);
    let mut last = None::<String>;
    let deadline = Instant::now() + BOUND;
    loop {
        assert!(
            Instant::now() < deadline,
            "the scrapes never showed the whole failover (on the VF: {}, back: {}); the demo printed:\n{}\nlast scrape:\n{}",
            seen_vf.is_some(),
            seen_back.is_some(),
            out.seen.join("\n"),
            last.unwrap_or_default()
        );
        // Paced by the demo's output, at most 50 ms between scrapes.
        while let Ok(line) = out.lines.recv_timeout(Duration::from_millis(50)) {
            out.seen.push(line);
        }
        let Some(text) = scrape(&addr) else {
            panic!(
                "the endpoint stopped answering before the end was seen; the demo printed:\n{}",
                out.seen.join("\n")
            );
        };
        let switched = |reason: &str| {
            sum(
                &text,
                "hvnet_switches_total",
                &[
                    device,
                    "direction=\"to_synthetic\"",
                    &format!("reason=\"{reason}\""),
                ],
            )
            .unwrap_or(0.0)
        };
        if seen_vf.is_none() && on(&text, &vf) {
            assert_eq!(sum(&text, "hvnet_link_up", &[device, &vf]), Some(1.0));
            assert_eq!(
                sum(
                    &text,
                    "hvnet_vf_info",
                    &[device, "driver=\"igbvf\"", "serial=\"7\""]
                ),
                Some(1.0),
                "{text}"
            );
            seen_vf = Some(text.clone());
        } else if seen_vf.is_some()
            && seen_back.is_none()
            && on(&text, &synthetic)
            && switched("release_requested") == 1.0
        {
            seen_back = Some(text.clone());
        } else if seen_back.is_some()
            && switched("removed") == 1.0
            && sum(&text, "hvnet_failover_duration_seconds_count", &[device]) == Some(2.0)
        {
            last = Some(text);
            break;
        }
        last = Some(text);
    }
    let (on_vf, end) = (seen_vf.unwrap(), last.unwrap());
    let total = |text: &str, family: &str, p: &str| sum(text, family, &[device, p]).unwrap_or(0.0);
    // Traffic went through the VF and its counters only rose.
    assert!(total(&end, "hvnet_tx_packets_total", &vf) > 0.0, "{end}");
    assert!(total(&end, "hvnet_rx_packets_total", &vf) > 0.0, "{end}");
    for family in ["hvnet_tx_packets_total", "hvnet_rx_packets_total"] {
        for p in [&vf, &synthetic] {
            assert!(
                total(&end, family, p) >= total(&on_vf, family, p),
                "{family} {p}"
            );
        }
    }
    assert_eq!(
        sum(
            &end,
            "hvnet_switches_total",
            &[device, "direction=\"to_vf\""]
        ),
        Some(2.0)
    );
    assert_eq!(
        sum(&end, "hvnet_failback_duration_seconds_count", &[device]),
        Some(2.0)
    );
    // The VF is gone: its info series reads 0.
    assert_eq!(sum(&end, "hvnet_vf_info", &[device]), Some(0.0), "{end}");
    assert!(end.contains("# TYPE hvnet_failover_duration_seconds histogram"));
    assert!(end.contains("# HELP hvnet_switches_total "));
    promtool_accepts(&on_vf);
    promtool_accepts(&end);

    let status = exit_status(&mut child.0);
    while let Ok(line) = out.lines.recv_timeout(Duration::from_secs(1)) {
        out.seen.push(line);
    }
    assert!(
        status.success() && out.seen.iter().any(|l| l == "demo finished"),
        "the demo failed ({status}):\n{}",
        out.seen.join("\n")
    );
}

#[test]
fn a_wildcard_address_is_refused_without_metrics_public() {
    for (command, addr) in [
        (&["demo"][..], "0.0.0.0:9464"),
        (&["demo", "--frames", "0"], "[::]:9464"),
        (&["run", "--forward", "txonly"], "0.0.0.0:9464"),
    ] {
        let out = hvnet()
            .args(command)
            .args(["--metrics-addr", addr])
            .output()
            .expect("running hvnet");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command:?} {addr}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "refusing to serve metrics on {addr} (every interface): give a loopback or management address, or --metrics-public"
            )),
            "{command:?}: {stderr}"
        );
        // Refused before anything started.
        assert!(
            out.stdout.is_empty(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // A bad address is a usage error too; --metrics-public needs an address.
    for args in [
        &["demo", "--metrics-addr", "metrics.example:9464"][..],
        &["demo", "--metrics-addr", "127.0.0.1:0"],
        &["demo", "--metrics-public"],
    ] {
        let out = hvnet().args(args).output().expect("running hvnet");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
    }
}

fn temp_root(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("hvnet-metrics-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    root
}

#[test]
fn run_exports_transmit_counters_that_grow() {
    let preload = preload();
    let root = temp_root("txonly");
    let mut served = Served::start_with(&root, &["--port", "loopback"]);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut running = Killed(
        hvnet()
            .arg("run")
            .arg("--sysfs-root")
            .arg(&root)
            .arg("--dev-root")
            .arg(root.join("dev"))
            .args([
                "--forward",
                "txonly",
                "--vf",
                "off",
                "--metrics-addr",
                &addr,
            ])
            .env("LD_PRELOAD", &preload)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hvnet run"),
    );
    let mut out = Output::read(running.0.stdout.take().unwrap());
    out.wait("hvnet run", "running", |l| {
        l.starts_with("running").then_some(0)
    });

    let synthetic = "path=\"synthetic\"";
    let sent = |text: &str| sum(text, "hvnet_tx_packets_total", &[synthetic]).unwrap_or(0.0);
    let deadline = Instant::now() + BOUND;
    let mut first = None::<(f64, String)>;
    let text = loop {
        assert!(
            Instant::now() < deadline,
            "hvnet_tx_packets_total did not grow; first: {first:?}"
        );
        while let Ok(line) = out.lines.recv_timeout(Duration::from_millis(50)) {
            out.seen.push(line);
        }
        let text = scrape(&addr).expect("hvnet run's endpoint did not answer");
        let n = sent(&text);
        match &first {
            None if n > 0.0 => first = Some((n, text)),
            Some((before, _)) if n > *before => break text,
            _ => {}
        }
    };
    assert!(
        sum(&text, "hvnet_tx_bytes_total", &[synthetic]).unwrap_or(0.0) > 0.0,
        "{text}"
    );
    assert_eq!(
        sum(&text, "hvnet_data_path", &[synthetic]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sum(&text, "hvnet_link_up", &[synthetic]),
        Some(1.0),
        "{text}"
    );
    assert!(
        sum(&text, "hvnet_tx_dropped_total", &["reason=\"port_full\""]).is_some(),
        "{text}"
    );
    // The device label is the NetVSC's instance GUID.
    let device = text
        .lines()
        .find_map(|l| l.strip_prefix("hvnet_tx_packets_total{device=\""))
        .and_then(|l| l.split('"').next())
        .expect("a device label");
    assert_eq!(device.len(), 36, "{device}");
    promtool_accepts(&text);

    let status = Command::new("kill")
        .args(["-TERM", &running.0.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    out.wait("hvnet run", "closed", |l| (l == "closed").then_some(0));
    assert!(exit_status(&mut running.0).success());
    served.stop();
    let _ = std::fs::remove_dir_all(&root);
}
