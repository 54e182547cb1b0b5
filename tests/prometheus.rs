//! A real Prometheus server (Debian's `prometheus` package) scrapes `hvnet demo
//! --metrics-addr` every 200 ms, loopback only, and its HTTP API then answers for the run:
//! the hvnet series exist, the packet rates were above zero on both paths, the data path was
//! seen on the VF and on synthetic, and the failover histogram counted exactly the switches
//! back to synthetic the demo printed (the failback histogram the switches to the VF). Every
//! query of the Grafana dashboard (`docs/grafana/hvnet-dashboard.json`) runs against it too.
//!
//! Off CI a missing `prometheus` skips the test with a notice; in CI (`CI=true`) it fails it.
//! Prometheus needs no root.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

/// How often Prometheus scrapes the demo.
const SCRAPE_INTERVAL: &str = "200ms";
/// Each phase of the demo's failover part is held this long (13 phases with every
/// scenario), so several scrapes see each.
const HOLD_SECONDS: &str = "1";
/// The bound of the demo's run (about 20 s on an idle machine; the tier runs loaded).
const DEMO_BOUND: Duration = Duration::from_secs(240);
/// A range that covers the whole run in the queries made after it.
const RUN_RANGE: &str = "10m";

/// Percent-encodes `s` for a query string (everything but RFC 3986's unreserved bytes).
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server in a temporary directory (its config, its TSDB, its log), killed and
/// removed however the test ends.
struct Prometheus {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts one scraping `target` every [`SCRAPE_INTERVAL`] and waits (bounded) until it is
    /// ready.
    fn start(target: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("hvnet-prometheus-")
            .tempdir()
            .expect("making a temporary directory");
        // One static target, nothing else: no rules, no alertmanager, no remote storage.
        // scrape_timeout must not exceed the interval (the global default is 10 s).
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}\n  scrape_timeout: {SCRAPE_INTERVAL}\n\
                 scrape_configs:\n  - job_name: hvnet\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("writing prometheus.yml");
        let log = File::create(dir.path().join("prometheus.log")).expect("creating the log");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg(format!(
                "--web.console.templates={}",
                dir.path().join("consoles").display()
            ))
            .arg(format!(
                "--web.console.libraries={}",
                dir.path().join("console_libraries").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log's handle"))
            .stderr(log)
            .spawn()
            .expect("starting prometheus");
        let mut prometheus = Self { child, addr, dir };
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = prometheus.child.try_wait().unwrap() {
                panic!(
                    "prometheus exited ({status}) before it was ready:\n{}",
                    prometheus.log()
                );
            }
            if http_get(&prometheus.addr, "/-/ready").is_some_and(|(status, _)| status == 200) {
                return prometheus;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus was not ready within {BOUND:?}:\n{}",
                prometheus.log()
            );
            std::thread::yield_now();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/PATH?PARAMS`: the answer's `data`, which must be a success.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let query: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", url_encode(v)))
            .collect();
        let path = format!("/api/v1/{path}?{}", query.join("&"));
        let (status, body) = http_get(&self.addr, &path)
            .unwrap_or_else(|| panic!("prometheus did not answer {path}:\n{}", self.log()));
        let answer: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {body}"));
        assert!(
            status == 200 && answer["status"] == "success",
            "{params:?}: {status} {body}"
        );
        answer["data"].clone()
    }

    /// An instant query: each series' labels and value.
    fn query(&self, promql: &str) -> Vec<(Value, f64)> {
        let data = self.api("query", &[("query", promql)]);
        assert_eq!(data["resultType"], "vector", "{promql}: {data}");
        data["result"]
            .as_array()
            .expect("a result")
            .iter()
            .map(|s| {
                let value = s["value"][1].as_str().expect("a sample value");
                (
                    s["metric"].clone(),
                    value
                        .parse()
                        .unwrap_or_else(|_| panic!("{promql}: {value}")),
                )
            })
            .collect()
    }

    /// An instant query with one series in its answer: its value.
    fn one(&self, promql: &str) -> Option<f64> {
        match self.query(promql).as_slice() {
            [] => None,
            [(_, v)] => Some(*v),
            many => panic!("{promql}: {} series: {many:?}", many.len()),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
}

/// Every `expr` of the dashboard's panels, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/hvnet-dashboard.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the dashboard"))
        .expect("the dashboard is JSON");
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = d["panels"].as_array().expect("panels").iter().collect();
    while let Some(p) = panels.pop() {
        panels.extend(p["panels"].as_array().into_iter().flatten());
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or_default().to_string();
            out.push((title, t["expr"].as_str().expect("an expr").to_string()));
        }
    }
    out
}

/// The demo's count of switches (to the VF, back to synthetic) from its summary line
/// `  switches to the VF N, back M, VFs attached …`.
fn switches(lines: &[String]) -> Option<(u64, u64)> {
    lines.iter().find_map(|l| {
        let rest = l.trim().strip_prefix("switches to the VF ")?;
        let (to_vf, rest) = rest.split_once(", back ")?;
        let back = rest.split(',').next()?;
        Some((to_vf.parse().ok()?, back.parse().ok()?))
    })
}

#[test]
fn prometheus_scrapes_the_demo_and_counts_every_failover_it_printed() {
    if !tool_available("Prometheus server test", "prometheus", "prometheus") {
        return;
    }
    let target = format!("127.0.0.1:{}", free_port());
    // Prometheus first, so it scrapes the demo from its first phase on.
    let prometheus = Prometheus::start(&target);
    let started = unix_now();
    let mut demo = Killed(
        hvnet()
            .args([
                "demo",
                "--frames",
                "500",
                "--queues",
                "2",
                "--hold",
                HOLD_SECONDS,
                "--metrics-addr",
                &target,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hvnet demo"),
    );
    let mut out = Output::read(demo.0.stdout.take().unwrap());
    // The demo's whole run, bounded: its output ends when it exits.
    let deadline = Instant::now() + DEMO_BOUND;
    loop {
        match out
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => out.seen.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!(
                "hvnet demo did not finish within {DEMO_BOUND:?}; it printed:\n{}",
                out.seen.join("\n")
            ),
        }
    }
    let status = loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "hvnet demo closed its output but did not exit"
        );
        std::thread::yield_now();
    };
    let printed = out.seen.join("\n");
    assert!(
        status.success() && out.seen.iter().any(|l| l == "demo finished"),
        "the demo failed ({status}):\n{printed}"
    );
    let ended = unix_now();
    let (to_vf, back) = switches(&out.seen)
        .unwrap_or_else(|| panic!("no `switches to the VF N, back M` line in:\n{printed}"));
    // Every scenario ran (planned, surprise, flap and servicing: at least one switch each
    // way apiece).
    assert!(to_vf >= 4 && back >= 4, "{printed}");

    // The target is gone now, so its series are stale: instant selectors find nothing, range
    // selectors over the run find every sample.
    let count = |promql: &str| {
        prometheus
            .one(promql)
            .unwrap_or_else(|| panic!("nothing for {promql}"))
    };
    // The histogram's count reaches the demo's count once Prometheus has the last scrape
    // (bounded: no more scrapes come, so it is there or never).
    let failovers = format!(
        "max(max_over_time(hvnet_failover_duration_seconds_count{{job=\"hvnet\",device=\"demo\"}}[{RUN_RANGE}]))"
    );
    let deadline = Instant::now() + BOUND;
    loop {
        let seen = prometheus.one(&failovers);
        if seen == Some(back as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{failovers} is {seen:?}, the demo printed {back} switches back to synthetic:\n{printed}\nprometheus:\n{}",
            prometheus.log()
        );
        std::thread::yield_now();
    }
    assert_eq!(
        count(&format!(
            "max(max_over_time(hvnet_failback_duration_seconds_count{{job=\"hvnet\"}}[{RUN_RANGE}]))"
        )),
        to_vf as f64
    );
    assert_eq!(
        count(&format!(
            "sum(max_over_time(hvnet_switches_total{{job=\"hvnet\",direction=\"to_synthetic\"}}[{RUN_RANGE}]))"
        )),
        back as f64
    );
    // The target was up, and the hvnet series exist: a packet counter per queue and path.
    assert_eq!(
        count(&format!("max_over_time(up{{job=\"hvnet\"}}[{RUN_RANGE}])")),
        1.0
    );
    for family in ["hvnet_tx_packets_total", "hvnet_rx_packets_total"] {
        assert_eq!(
            count(&format!(
                "count(last_over_time({family}{{job=\"hvnet\",device=\"demo\"}}[{RUN_RANGE}]))"
            )),
            4.0,
            "{family}: 2 queues x 2 paths"
        );
    }
    // A rate over the run on each path: the highest 2-second rate, and the increase.
    let rates = prometheus.query(&format!(
        "max_over_time(sum by (path) (rate(hvnet_tx_packets_total{{job=\"hvnet\"}}[2s]))[{RUN_RANGE}:{SCRAPE_INTERVAL}])"
    ));
    for path in ["synthetic", "vf"] {
        let rate = rates
            .iter()
            .find(|(labels, _)| labels["path"] == path)
            .map(|(_, v)| *v);
        assert!(
            rate.is_some_and(|r| r > 0.0),
            "no transmit rate on {path}: {rates:?}"
        );
    }
    assert!(
        count(&format!(
            "sum(increase(hvnet_rx_packets_total{{job=\"hvnet\"}}[{RUN_RANGE}]))"
        )) > 0.0
    );
    // The data-path timeline: on the VF and on synthetic, both seen.
    for (f, want) in [("max_over_time", 1.0), ("min_over_time", 0.0)] {
        assert_eq!(
            count(&format!(
                "{f}(hvnet_data_path{{job=\"hvnet\",path=\"vf\"}}[{RUN_RANGE}])"
            )),
            want,
            "{f} of the vf data path"
        );
    }

    // Every query of the dashboard, as Grafana would send it over the run.
    let (start, end) = (format!("{started:.3}"), format!("{ended:.3}"));
    let queries = dashboard_queries();
    assert!(!queries.is_empty());
    for (panel, expr) in queries {
        let promql = expr
            .replace("$__rate_interval", "2s")
            .replace("$window", "1m")
            .replace("$device", ".*");
        assert!(
            !promql.contains('$'),
            "{panel}: a variable left in {promql}"
        );
        let data = prometheus.api(
            "query_range",
            &[
                ("query", &promql),
                ("start", &start),
                ("end", &end),
                ("step", "1"),
            ],
        );
        assert_eq!(data["resultType"], "matrix", "{panel}: {promql}");
        // The simulated host's panels have nothing from the demo; the others show it.
        if !promql.contains("hvnet_sim_host_") {
            assert!(
                data["result"].as_array().is_some_and(|r| !r.is_empty()),
                "{panel}: {promql} shows nothing over the run"
            );
        }
    }
}

#[test]
fn query_strings_are_percent_encoded() {
    assert_eq!(
        url_encode(r#"sum(rate(x{a="b"}[2s])) > 0"#),
        "sum%28rate%28x%7Ba%3D%22b%22%7D%5B2s%5D%29%29%20%3E%200"
    );
    assert_eq!(url_encode("a-b_c.d~e"), "a-b_c.d~e");
    assert_eq!(
        switches(&["  switches to the VF 6, back 5, VFs attached 5 released 5".to_string()]),
        Some((6, 5))
    );
    assert_eq!(switches(&["switches to the VF six".to_string()]), None);
}
