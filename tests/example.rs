//! The appliance example (`examples/appliance.rs`, docs/library.md) against `hvnet sim-host
//! --port loopback`, through the published uio tree and the preload library: it attaches,
//! logs the port's events, reflects the frames it seeded until the host has seen thousands,
//! stops on the end of its input or after `--seconds`, closes the port cleanly (the host sees
//! HALT, then both revokes), exits 0, and every count it prints equals the host's.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use common::*;

/// The example's binary. `cargo test` builds examples only when it builds every target, so
/// this test builds it, once per run, into the target directory the test itself comes from
/// (cargo holds no lock on it while tests run; after `cargo test --workspace` there is nothing
/// left to build).
fn appliance() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let profile_dir = Path::new(env!("CARGO_BIN_EXE_hvnet")).parent().unwrap();
        let target = profile_dir.parent().unwrap();
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(other) => other,
            None => panic!("no profile directory in {}", profile_dir.display()),
        };
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "appliance", "--profile"])
            .arg(profile)
            .arg("--target-dir")
            .arg(target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build --example appliance");
        assert!(status.success(), "building the appliance example failed");
        let path = profile_dir.join("examples/appliance");
        assert!(
            path.exists(),
            "{} is missing after the build",
            path.display()
        );
        path
    })
}

/// A running appliance, its stdout read line by line; killed if the test fails first.
struct Appliance {
    child: Child,
    out: Output,
    /// Its standard input; dropping it is the end of input that stops it.
    input: Option<ChildStdin>,
}

impl Appliance {
    /// The example against the host under `root` with `args`, once it says it is running.
    fn start(root: &Path, preload: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(appliance())
            .arg("--sysfs-root")
            .arg(root)
            .arg("--dev-root")
            .arg(root.join("dev"))
            .args(args)
            .env("LD_PRELOAD", preload)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the appliance example");
        let mut appliance = Self {
            out: Output::read(child.stdout.take().unwrap()),
            input: child.stdin.take(),
            child,
        };
        appliance.line("running");
        appliance
    }

    /// Waits (bounded) for a line starting with `prefix`; returns it.
    fn line(&mut self, prefix: &str) -> String {
        self.out.wait("the appliance", prefix, |l| {
            l.starts_with(prefix).then_some(0)
        })
    }

    /// Waits (bounded) for its last line and its exit, which must be clean; every line it
    /// printed.
    fn finish(mut self) -> Vec<String> {
        self.line("closed");
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the appliance exited with {status}:\n{}",
                    self.out.seen.join("\n")
                );
                return std::mem::take(&mut self.out.seen);
            }
            assert!(Instant::now() < deadline, "the appliance did not exit");
            std::thread::yield_now();
        }
    }
}

impl Drop for Appliance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `name=value` fields of the line that starts with `prefix`.
fn fields(lines: &[String], prefix: &str) -> HashMap<String, u64> {
    let line = lines
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{}", lines.join("\n")));
    line[prefix.len()..]
        .split_whitespace()
        .map(|field| {
            let (name, value) = field
                .split_once('=')
                .unwrap_or_else(|| panic!("{field:?} in {line:?} is not name=value"));
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("{field:?} in {line:?} is not a count"));
            (name.to_string(), value)
        })
        .collect()
}

/// The host's `host` counters (`hvnet sim-host ctl stats`).
fn host_stats(root: &Path) -> serde_json::Value {
    let answer: serde_json::Value = serde_json::from_str(&ctl(root, &["stats"])).unwrap();
    answer["host"].clone()
}

fn host_count(host: &serde_json::Value, name: &str) -> u64 {
    host[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no host.{name} in {host}"))
}

fn temp_root(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("hvnet-example-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    root
}

/// What every run must end with: the host saw the clean detach, no protocol error, and the
/// appliance's counts equal the host's and the port's, and balance among themselves.
/// Returns the appliance's totals.
fn check_accounting(root: &Path, lines: &[String], queues: usize) -> HashMap<String, u64> {
    let out = lines.join("\n");
    let host = host_stats(root);
    assert_eq!(
        host["teardown"],
        serde_json::json!([
            "rndis_halt",
            "receive_buffer_revoked",
            "send_buffer_revoked"
        ]),
        "{host}\n{out}"
    );
    assert_eq!(host_count(&host, "protocol_errors"), 0, "{host}");
    let total = fields(lines, "total:");
    let (rx, tx) = (total["rx"], total["tx"]);
    // Every frame the host took from the guest, the appliance counted as taken by the port;
    // every frame the host delivered, the appliance received (the close handed the pollers
    // what was in flight).
    assert_eq!(host_count(&host, "tx_packets"), tx, "{host}\n{out}");
    assert_eq!(host_count(&host, "rx_delivered"), rx, "{host}\n{out}");
    // Every frame received or seeded was ignored, taken by the port, or still unsent when
    // the port closed: none went without a count.
    assert_eq!(
        rx + total["seeded"],
        total["ignored"] + tx + total["unsent"],
        "{out}"
    );
    // The port's counters and the NIC's say the same: all of it went through the synthetic
    // path, none was dropped or failed.
    let port = fields(lines, "port:");
    assert_eq!(
        (port["rx_synthetic"], port["tx_synthetic"]),
        (rx, tx),
        "{out}"
    );
    assert_eq!((port["rx_vf"], port["tx_vf"]), (0, 0), "{out}");
    let nic = fields(lines, "nic:");
    assert_eq!((nic["rx_packets"], nic["tx_packets"]), (rx, tx), "{out}");
    assert_eq!((nic["tx_dropped"], nic["tx_failed"]), (0, 0), "{out}");
    // One line per queue, summing to the total.
    let mut sum = 0;
    for queue in 0..queues {
        let q = fields(lines, &format!("queue {queue}:"));
        assert!(q["rx"] > 0, "queue {queue} received nothing:\n{out}");
        sum += q["rx"];
    }
    assert_eq!(sum, rx, "{out}");
    total
}

#[test]
fn the_appliance_reflects_through_a_loopback_host_and_counts_what_the_host_counts() {
    let preload = preload();
    let root = temp_root("reflect");
    let mut served = Served::start_with(&root, &["--port", "loopback"]);
    let mut appliance = Appliance::start(&root, &preload, &["--queues", "2", "--seed", "32"]);
    let attached = appliance.out.seen.join("\n");
    assert!(
        attached.contains("MAC 00:15:5d:01:02:03") && attached.contains("link up, 2 queue(s)"),
        "{attached}"
    );
    // The main thread logs the port's events.
    ctl(&root, &["offer-vf", "7"]);
    appliance.line("event: VF associated: serial 7");
    // The seeds go round: thousands of frames, on the host's word (a count, not a time).
    let deadline = Instant::now() + BOUND;
    while host_count(&host_stats(&root), "tx_packets") < 20_000 {
        assert!(
            Instant::now() < deadline,
            "the host saw too few frames: {}",
            host_stats(&root)
        );
        std::thread::yield_now();
    }
    // The end of its input stops it.
    drop(appliance.input.take());
    let lines = appliance.finish();
    assert!(
        lines
            .iter()
            .any(|l| l == "stopping (end of input): closing the port while the pollers run"),
        "{}",
        lines.join("\n")
    );
    let total = check_accounting(&root, &lines, 2);
    assert!(total["tx"] >= 20_000, "{}", lines.join("\n"));
    assert_eq!(
        (total["seeded"], total["ignored"]),
        (64, 0),
        "{}",
        lines.join("\n")
    );
    served.stop();
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_appliance_without_a_vf_stops_on_its_own_after_seconds() {
    let preload = preload();
    let root = temp_root("seconds");
    let mut served = Served::start_with(&root, &["--port", "loopback"]);
    // Its input stays open: only the time stops it.
    let appliance = Appliance::start(
        &root,
        &preload,
        &["--vf", "off", "--seed", "8", "--seconds", "1"],
    );
    let lines = appliance.finish();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("stopping (the time passed)")),
        "{}",
        lines.join("\n")
    );
    let total = check_accounting(&root, &lines, 1);
    assert!(total["tx"] >= 8, "{}", lines.join("\n"));
    served.stop();
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_appliance_without_a_netvsc_says_what_to_bind_and_fails() {
    let root = temp_root("empty");
    std::fs::create_dir_all(root.join("dev")).unwrap();
    let out = Command::new(appliance())
        .arg("--sysfs-root")
        .arg(&root)
        .arg("--dev-root")
        .arg(root.join("dev"))
        .stdin(Stdio::null())
        .output()
        .expect("running the appliance example");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("uio_hv_generic") && stderr.contains("hvnet bind"),
        "{stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::remove_dir_all(&root).unwrap();
}
