//! `hvnet sim-host` with a client in another process: `hvnet probe` attaches through its
//! real uio backend (sysfs tree, device node, maps, subchannel ring files, monitor-page
//! doorbell), under the `hvnet-sim-uio` preload library, twice in a row on the same host
//! (two sessions, four queues then one).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every wait's bound.
const BOUND: Duration = Duration::from_secs(60);

fn hvnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hvnet"))
}

/// The preload library, built by this test (`cargo test` does not build a workspace's cdylibs)
/// into its own target directory, so it never waits for the lock of the build running it.
fn preload() -> PathBuf {
    let profile_dir = Path::new(env!("CARGO_BIN_EXE_hvnet")).parent().unwrap();
    let target = profile_dir.parent().unwrap().join("sim-uio-preload");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "hvnet-sim-uio", "--target-dir"])
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build -p hvnet-sim-uio");
    assert!(status.success(), "building the preload library failed");
    let path = target.join("debug/libhvnet_sim_uio.so");
    assert!(
        path.exists(),
        "{} is missing after the build",
        path.display()
    );
    path
}

/// A running `hvnet sim-host`, its stdout lines arriving on a channel; killed if the test
/// fails before it stops it.
struct Served {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Served {
    fn start(root: &Path) -> Self {
        let mut child = hvnet()
            .args(["sim-host", "--root"])
            .arg(root)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hvnet sim-host");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut served = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        served.wait_for_line("ready");
        served
    }

    /// Waits (bounded) for a line starting with `prefix`; returns it.
    fn wait_for_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "sim-host never printed {prefix:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    fn stop(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        let last = self.wait_for_line("stopped");
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "sim-host exited with {status}: {last}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sim-host did not exit after SIGTERM"
            );
            std::thread::yield_now();
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn probe(root: &Path, preload: &Path, queues: u16) -> String {
    let out = hvnet()
        .env("LD_PRELOAD", preload)
        .args([
            "probe",
            "--timeout",
            "20",
            "--queues",
            &queues.to_string(),
            "--sysfs-root",
        ])
        .arg(root)
        .arg("--dev-root")
        .arg(root.join("dev"))
        .output()
        .expect("running hvnet probe");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "hvnet probe failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn hvnet_probe_attaches_to_sim_host_through_its_uio_backend_with_subchannels_twice() {
    let preload = preload();
    let root = std::env::temp_dir().join(format!("hvnet-sim-host-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut served = Served::start(&root);
    let channels = root
        .join("bus/vmbus/devices")
        .join(integration::sim_host::DEFAULT_INSTANCE)
        .join("channels");
    // Four queues (three subchannels, published as the host offers them), then one: the
    // second session starts without the first one's subchannels.
    for (session, queues) in [(1, 4), (2, 1)] {
        let out = probe(&root, &preload, queues);
        let want_queues = format!("{queues} queue(s)");
        for want in [
            "NVSP 0x60001",
            "NDIS 6.30",
            "MAC 00:15:5d:01:02:03",
            "link up",
            want_queues.as_str(),
        ] {
            assert!(
                out.contains(want),
                "session {session}: no {want:?} in:\n{out}"
            );
        }
        let relid = integration::sim_host::DEFAULT_RELID;
        for sub in 1..4u32 {
            assert_eq!(
                channels
                    .join((relid + sub).to_string())
                    .join("ring")
                    .exists(),
                session == 1,
                "session {session}: subchannel {sub}'s ring"
            );
        }
    }
    served.stop();
    let last = served.seen.last().cloned().unwrap_or_default();
    assert!(last.contains("in 2 session(s)"), "{last}");
    assert!(last.contains("0 protocol error(s)"), "{last}");
    assert!(
        !root.join("bus").exists() && !root.join("dev/uio0").exists(),
        "sim-host left its tree behind"
    );
    std::fs::remove_dir_all(&root).unwrap();
}
