//! What the tests that run `hvnet` as a process share: the binary, the preload library, a
//! child's output read line by line, a served sim-host, its `ctl`, network namespaces, and
//! the rule for a test whose tools are missing (skipped with a notice off CI, failed in CI).
#![allow(dead_code)] // each test binary uses a part

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every wait's bound.
pub const BOUND: Duration = Duration::from_secs(60);

pub fn hvnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hvnet"))
}

/// The preload library, built by this test (`cargo test` does not build a workspace's cdylibs)
/// into its own target directory, so it never waits for the lock of the build running it.
pub fn preload() -> PathBuf {
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

/// A child's stdout, line by line as it arrives, and every line read so far.
pub struct Output {
    pub lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Output {
    pub fn read(stdout: impl std::io::Read + Send + 'static) -> Self {
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (bounded) for a line where `find` finds something; the line from there on.
    /// `who` and `what` name them in the failure.
    pub fn wait(&mut self, who: &str, what: &str, find: impl Fn(&str) -> Option<usize>) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(at) = find(&line) {
                        return line[at..].to_string();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{who} never printed {what:?} in {BOUND:?}; it printed:\n{}",
                    self.seen.join("\n")
                ),
                // Its stderr (inherited) says why.
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "{who} closed its output (it exited) before printing {what:?}; see its \
                     error above; it printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

/// A running `hvnet sim-host`, its stdout lines arriving on a channel; killed if the test
/// fails before it stops it.
pub struct Served {
    pub child: Child,
    pub out: Output,
}

impl Served {
    pub fn start(root: &Path) -> Self {
        Self::start_with(root, &[])
    }

    /// `hvnet sim-host --root ROOT` with `args`, once it said it is ready.
    pub fn start_with(root: &Path, args: &[&str]) -> Self {
        let mut command = hvnet();
        command.args(["sim-host", "--root"]).arg(root).args(args);
        Self::spawn(command)
    }

    /// `command` (an `hvnet sim-host`, perhaps inside `ip netns exec`), once it is ready.
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hvnet sim-host");
        let out = Output::read(child.stdout.take().unwrap());
        let mut served = Self { child, out };
        served.wait_for_line("ready");
        served
    }

    /// Waits (bounded) for a line starting with `prefix`; returns it.
    pub fn wait_for_line(&mut self, prefix: &str) -> String {
        self.out
            .wait("sim-host", prefix, |l| l.starts_with(prefix).then_some(0))
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    pub fn stop(&mut self) {
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

/// `hvnet sim-host ctl --root ROOT COMMAND…`: its answer, which must say `"ok":true`.
pub fn ctl(root: &Path, command: &[&str]) -> String {
    let out = hvnet()
        .args(["sim-host", "ctl", "--root"])
        .arg(root)
        .args(command)
        .output()
        .expect("running hvnet sim-host ctl");
    let answer = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && answer.contains("\"ok\":true"),
        "ctl {command:?} failed: {answer}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    answer
}

/// A network namespace this test made; deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: String) -> Self {
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("running ip netns add");
        assert!(ok.success(), "ip netns add {name} failed");
        Self(name)
    }

    /// `ip netns exec NAME …`.
    pub fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    pub fn run(&self, args: &[&str]) {
        let out = self.exec(args).output().expect("running ip netns exec");
        assert!(
            out.status.success(),
            "{args:?} in {} failed: {}",
            self.0,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Whether a test that needs root and `tools` (each with the package that has it) can run
/// here. Off CI a missing piece skips the test with a notice; in CI it fails the test.
pub fn runnable(test: &str, tools: &[(&str, &str)]) -> bool {
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
    };
    let uid = Command::new("id").arg("-u").output();
    let root = uid.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let missing = if root {
        tools
            .iter()
            .find(|(tool, _)| !on_path(tool))
            .map(|(tool, package)| format!("{tool} is not installed (apt-get install {package})"))
    } else {
        Some("it needs root".to_string())
    };
    let Some(why) = missing else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the {test} cannot run in CI: {why}"
    );
    eprintln!("NOTICE: skipping the {test}: {why}");
    false
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding 127.0.0.1:0")
        .port()
}

/// `GET path` from `addr` over HTTP/1.0 (so no chunked answer): the status and the body, or
/// `None` when nothing answers.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "a chunked answer to HTTP/1.0: {head}"
    );
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// `GET /metrics` from `addr`, which must answer 200: the body, or `None` when nothing
/// answers.
pub fn scrape(addr: &str) -> Option<String> {
    let (status, body) = http_get(addr, "/metrics")?;
    assert_eq!(status, 200, "{addr} answered {status}: {body}");
    Some(body)
}

/// Whether `tool` (from `package`) is on PATH, for a test that needs no root: off CI a
/// missing one is a notice and the caller skips; in CI it fails the test.
pub fn tool_available(test: &str, tool: &str, package: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    if found {
        return true;
    }
    let why = format!("{tool} is not installed (apt-get install {package})");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the {test} cannot run in CI: {why}"
    );
    eprintln!("NOTICE: skipping the {test}: {why}");
    false
}

/// `promtool check metrics` on `text` (when promtool is there: in CI it must be).
pub fn promtool_accepts(text: &str) {
    use std::io::Write;
    if !tool_available("promtool check of the exposition", "promtool", "prometheus") {
        return;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    child
        .stdin
        .take()
        .expect("promtool's input")
        .write_all(text.as_bytes())
        .expect("writing to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\non:\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A child process killed (and waited for) if the test ends before it does.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
