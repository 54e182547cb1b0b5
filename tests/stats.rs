//! `hvnet stats` against a running `hvnet demo --metrics-addr`: the catalogue's metrics read
//! back for a person (text) and for a script (JSON), and a clear error when nothing serves.

mod common;

use std::process::Stdio;

use common::*;

/// `hvnet stats ARGS`: (success, stdout, stderr).
fn stats(args: &[&str]) -> (bool, String, String) {
    let out = hvnet()
        .arg("stats")
        .args(args)
        .output()
        .expect("running hvnet stats");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn stats_reads_a_running_demo_back_by_the_catalogue() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut demo = Killed(
        hvnet()
            .args([
                "demo",
                "--frames",
                "100",
                "--queues",
                "1",
                "--scenario",
                "planned",
            ])
            .args(["--hold", "1", "--metrics-addr", &addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hvnet demo"),
    );
    let mut out = Output::read(demo.0.stdout.take().unwrap());
    // Once the port has been on the VF, every later sample counts the switch (a counter
    // only grows): stats is asked until it shows one, with a bound.
    out.wait("hvnet demo", "on the VF", |l| {
        l.contains("on the VF:").then_some(0)
    });
    let switched = |text: &str| {
        text.lines()
            .any(|l| l.contains("direction=to_vf") && !l.trim_end().ends_with(" 0"))
    };
    let deadline = std::time::Instant::now() + BOUND;
    let text = loop {
        let (ok, text, err) = stats(&["--metrics-addr", &addr]);
        assert!(ok, "{err}");
        if switched(&text) {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no switch to the VF shown: {text}"
        );
        std::thread::yield_now();
    };
    assert!(text.contains("hvnet_data_path (gauge)"), "{text}");
    assert!(
        text.lines()
            .filter(|l| !l.contains("hvnet") && l.contains("path=vf"))
            .count()
            > 0,
        "{text}"
    );
    assert!(text.contains("hvnet_switches_total (counter)"), "{text}");
    let (ok, json, err) = stats(&["--metrics-addr", &addr, "--json"]);
    assert!(ok, "{err}");
    let json: serde_json::Value = serde_json::from_str(&json).expect("stats --json is JSON");
    let series = json["metrics"]["hvnet_tx_packets_total"]["series"]
        .as_array()
        .expect("tx packets");
    assert!(!series.is_empty(), "{json}");
    assert!(
        series
            .iter()
            .any(|s| s["value"].as_f64().unwrap_or(0.0) > 0.0),
        "{json}"
    );
    assert_eq!(json["metrics"]["hvnet_tx_packets_total"]["type"], "counter");
    drop(demo);

    // Nothing serving there any more: a clear error, not a hang.
    let (ok, _, err) = stats(&["--metrics-addr", &format!("127.0.0.1:{}", free_port())]);
    assert!(!ok);
    assert!(err.contains("nothing answers at 127.0.0.1:"), "{err}");
}
