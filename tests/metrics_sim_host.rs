//! `hvnet sim-host --metrics-addr`: the simulated host's own counters (the catalogue's
//! `hvnet_sim_host_` metrics, docs/metrics.md) served to Prometheus while `hvnet run
//! --forward txonly` is attached, growing as it sends, clean for `promtool check metrics`;
//! read back by `hvnet stats`; a wildcard address refused without `--metrics-public` before
//! anything is published.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// The value of the one series `series` (name and labels exactly as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn temp_root(name: &str) -> PathBuf {
    let root =
        std::env::temp_dir().join(format!("hvnet-sim-metrics-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    root
}

/// Scrapes `addr` (bounded, at most 50 ms apart, paced by `out`'s lines) until `done` says
/// yes; that scrape.
fn scrape_until(addr: &str, out: &mut Output, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + BOUND;
    let mut last = String::new();
    loop {
        assert!(
            Instant::now() < deadline,
            "the sim-host's metrics never showed {what}; last scrape:\n{last}"
        );
        while let Ok(line) = out.lines.recv_timeout(Duration::from_millis(50)) {
            out.seen.push(line);
        }
        last = scrape(addr).expect("the sim-host's endpoint did not answer");
        if done(&last) {
            return last;
        }
    }
}

#[test]
fn sim_host_exports_its_own_counters_growing_under_a_txonly_client() {
    let preload = preload();
    let root = temp_root("txonly");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut served = Served::start_with(&root, &["--port", "loopback", "--metrics-addr", &addr]);
    assert!(
        served
            .out
            .seen
            .iter()
            .any(|l| l == &format!("metrics: serving on http://{addr}/metrics")),
        "{:?}",
        served.out.seen
    );
    let device = format!("device=\"{}\"", integration::sim_host::DEFAULT_INSTANCE);
    let series = |name: &str, more: &str| {
        if more.is_empty() {
            format!("{name}{{{device}}}")
        } else {
            format!("{name}{{{device},{more}}}")
        }
    };
    let from_guest = series("hvnet_sim_host_frames_from_guest_total", "");
    let to_guest = series("hvnet_sim_host_frames_to_guest_total", "");
    let clients = series("hvnet_sim_host_clients", "");

    // Before any client: the host's series are there, at zero.
    let idle = scrape_until(&addr, &mut served.out, "the idle host", |t| {
        value(t, &from_guest).is_some()
    });
    assert_eq!(value(&idle, &from_guest), Some(0.0), "{idle}");
    assert_eq!(value(&idle, &clients), Some(0.0), "{idle}");
    assert_eq!(
        value(
            &idle,
            &series("hvnet_sim_host_data_path", "path=\"synthetic\"")
        ),
        Some(1.0),
        "{idle}"
    );

    let mut running = Killed(
        hvnet()
            .arg("run")
            .arg("--sysfs-root")
            .arg(&root)
            .arg("--dev-root")
            .arg(root.join("dev"))
            .args(["--forward", "txonly", "--vf", "off"])
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

    // The client's frames reach the host, which loops them back: both counters grow.
    let first = scrape_until(&addr, &mut out, "frames from the guest", |t| {
        value(t, &from_guest).is_some_and(|n| n > 0.0)
    });
    let sent = value(&first, &from_guest).unwrap();
    let grown = scrape_until(&addr, &mut out, "the frame counters growing", |t| {
        value(t, &from_guest).is_some_and(|n| n > sent)
            && value(t, &to_guest).is_some_and(|n| n > 0.0)
    });
    for (name, more, want) in [
        ("hvnet_sim_host_clients", "", 1.0),
        ("hvnet_sim_host_sessions_total", "", 1.0),
        ("hvnet_sim_host_channel_alive", "", 1.0),
        ("hvnet_sim_host_protocol_errors_total", "", 0.0),
        ("hvnet_sim_host_vf_associations_total", "", 0.0),
        ("hvnet_sim_host_data_path", "path=\"vf\"", 0.0),
        (
            "hvnet_sim_host_dropped_total",
            "direction=\"to_guest\",reason=\"revoked\"",
            0.0,
        ),
    ] {
        assert_eq!(
            value(&grown, &series(name, more)),
            Some(want),
            "{name}{{{more}}}:\n{grown}"
        );
    }
    assert!(
        grown.contains("# TYPE hvnet_sim_host_dropped_total counter")
            && grown.contains("# HELP hvnet_sim_host_frames_from_guest_total "),
        "{grown}"
    );
    // Only the host's metrics: the sim-host has no port of its own.
    assert!(
        grown
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .all(|l| l.starts_with("hvnet_sim_host_")),
        "{grown}"
    );
    promtool_accepts(&grown);
    // `hvnet stats` reads the host's endpoint back by the catalogue: nothing unknown.
    let stats = hvnet()
        .args(["stats", "--metrics-addr", &addr])
        .output()
        .expect("running hvnet stats");
    let listed = String::from_utf8_lossy(&stats.stdout);
    assert!(stats.status.success(), "{listed}");
    assert!(
        listed.contains("hvnet_sim_host_frames_from_guest_total (counter)")
            && listed.contains("hvnet_sim_host_dropped_total (counter)")
            && !listed.contains("not in hvnet's catalogue"),
        "{listed}"
    );

    // The client leaves: the host sees it go.
    let status = Command::new("kill")
        .args(["-TERM", &running.0.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success());
    out.wait("hvnet run", "closed", |l| (l == "closed").then_some(0));
    let deadline = Instant::now() + BOUND;
    while running.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "hvnet run did not exit");
        std::thread::yield_now();
    }
    let after = scrape_until(&addr, &mut served.out, "the client gone", |t| {
        value(t, &clients) == Some(0.0)
    });
    assert!(value(&after, &from_guest).unwrap() >= value(&grown, &from_guest).unwrap());

    served.stop();
    // The endpoint went with the host.
    assert!(scrape(&addr).is_none(), "the endpoint outlived sim-host");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn sim_host_refuses_a_wildcard_metrics_address_before_publishing_anything() {
    let root = temp_root("wildcard");
    let out = hvnet()
        .args(["sim-host", "--root"])
        .arg(&root)
        .args(["--metrics-addr", "0.0.0.0:9464"])
        .output()
        .expect("running hvnet sim-host");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "refusing to serve metrics on 0.0.0.0:9464 (every interface): give a loopback or management address, or --metrics-public"
        ),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        !root.exists(),
        "sim-host published under {}",
        root.display()
    );
    // --metrics-public needs an address; a name is not an address.
    for bad in [
        &["--metrics-public"][..],
        &["--metrics-addr", "metrics.example:9464"],
    ] {
        let out = hvnet()
            .args(["sim-host", "--root"])
            .arg(&root)
            .args(bad)
            .output()
            .expect("running hvnet sim-host");
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(
            !root.exists(),
            "{bad:?}: sim-host published under {}",
            root.display()
        );
    }
}
