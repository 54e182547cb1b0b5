//! `hvnet run` on `hvnet sim-host`, through its real uio backend (the published sysfs tree
//! and device node, under the preload library): forwarding with the counts equal at both
//! ends and in the capture, SIGTERM ending in a clean exit, and the kernel stack on the port
//! through `--tap` (ping both ways, iperf3 TCP and UDP) between two network namespaces.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::*;

/// A running `hvnet run`, its stdout read line by line; killed if the test fails first.
struct Running {
    child: Child,
    out: Output,
}

impl Running {
    /// `command` (an `hvnet run …`), once it says it is running.
    fn spawn(mut command: Command, preload: &Path) -> Self {
        let mut child = command
            .env("LD_PRELOAD", preload)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting hvnet run");
        let mut running = Self {
            out: Output::read(child.stdout.take().unwrap()),
            child,
        };
        running.out.wait("hvnet run", "running", |l| {
            l.starts_with("running").then_some(0)
        });
        running
    }

    /// SIGTERM; waits (bounded) for the exit, which must be clean. Everything it printed.
    fn terminate(mut self) -> String {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success());
        self.out
            .wait("hvnet run", "closed", |l| (l == "closed").then_some(0));
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "hvnet run exited with {status}:\n{}",
                    self.out.seen.join("\n")
                );
                return self.out.seen.join("\n");
            }
            assert!(Instant::now() < deadline, "hvnet run did not exit");
            std::thread::yield_now();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hvnet run` against the host under `root`, with `args`.
fn run_command(root: &Path, args: &[&str]) -> Command {
    let mut c = hvnet();
    c.arg("run")
        .arg("--sysfs-root")
        .arg(root)
        .arg("--dev-root")
        .arg(root.join("dev"))
        .args(args);
    c
}

/// The number after `name:` in the last statistics block of port `port`.
fn final_field(out: &str, port: usize, name: &str) -> u64 {
    let header = format!("Forward statistics for port {port} ");
    let block = out
        .rsplit(&header)
        .next()
        .filter(|_| out.contains(&header))
        .unwrap_or_else(|| panic!("no statistics for port {port} in:\n{out}"));
    let rest = block
        .split(&format!("{name}:"))
        .nth(1)
        .unwrap_or_else(|| panic!("no {name} in:\n{block}"));
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

/// A counter of the host's `ctl stats` answer: `section.name`.
fn host_counter(root: &Path, section: &str, name: &str) -> u64 {
    let answer = ctl(root, &["stats"]);
    let stats: serde_json::Value = serde_json::from_str(&answer).unwrap();
    stats[section][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no {section}.{name} in {answer}"))
}

fn temp_root(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("hvnet-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    root
}

#[test]
fn txonly_against_a_loopback_host_counts_the_same_at_both_ends_and_in_the_capture() {
    let tshark = runnable_without_root("capture test", &[("tshark", "tshark")]);
    let preload = preload();
    let root = temp_root("txonly");
    let pcap = root.with_extension("pcapng");
    let mut served = Served::start_with(&root, &["--port", "loopback"]);
    let running = Running::spawn(
        run_command(
            &root,
            &[
                "--forward",
                "txonly",
                "--queues",
                "2",
                "--vf",
                "off",
                "--pcap",
                pcap.to_str().unwrap(),
            ],
        ),
        &preload,
    );
    // Traffic for a while, on the host's word: a number of frames, not a time.
    let deadline = Instant::now() + BOUND;
    while host_counter(&root, "host", "tx_packets") < 20_000 {
        assert!(Instant::now() < deadline, "the host saw too few frames");
        std::thread::yield_now();
    }
    let out = running.terminate();
    let (tx, rx) = (
        final_field(&out, 0, "TX-packets"),
        final_field(&out, 0, "RX-packets"),
    );
    assert!(tx >= 20_000, "{out}");
    // Everything hvnet sent, the host took; everything the host gave back, hvnet received
    // (draining at exit took in what was in flight) or counted as missed (no free buffer: the
    // txonly source shares the pool).
    let missed = final_field(&out, 0, "RX-missed");
    assert_eq!(host_counter(&root, "host", "tx_packets"), tx, "{out}");
    assert_eq!(
        host_counter(&root, "host", "rx_delivered"),
        rx + missed,
        "{out}"
    );
    assert_eq!(host_counter(&root, "host", "protocol_errors"), 0);
    // SIGTERM mid-traffic ended in a clean detach, as the host saw it.
    let stats: serde_json::Value = serde_json::from_str(&ctl(&root, &["stats"])).unwrap();
    assert_eq!(
        stats["host"]["teardown"],
        serde_json::json!([
            "rndis_halt",
            "receive_buffer_revoked",
            "send_buffer_revoked"
        ]),
        "{stats}"
    );
    assert_eq!(final_field(&out, 0, "TX-dropped"), 0, "{out}");
    assert!(
        out.contains(&format!("capture: {} frame(s) written", rx + tx)),
        "{out}"
    );
    if tshark {
        let count = |filter: &str| -> u64 {
            let out = Command::new("tshark")
                .args([
                    "-r",
                    pcap.to_str().unwrap(),
                    "-Y",
                    filter,
                    "-T",
                    "fields",
                    "-e",
                    "frame.number",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stderr(Stdio::null())
                .output()
                .expect("running tshark");
            assert!(out.status.success(), "tshark failed");
            String::from_utf8_lossy(&out.stdout).lines().count() as u64
        };
        assert_eq!(count("frame.packet_flags_direction == 1"), rx);
        assert_eq!(count("frame.packet_flags_direction == 2"), tx);
        assert_eq!(count("udp.dstport == 9 && ip.dst == 198.18.0.2"), rx + tx);
    }
    served.stop();
    let _ = std::fs::remove_file(&pcap);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Whether `tools` are here (no root needed): off CI a missing one is a notice and that part
/// of the test is left out; in CI it fails.
fn runnable_without_root(test: &str, tools: &[(&str, &str)]) -> bool {
    for (tool, package) in tools {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()));
        if !found {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "the {test} cannot run in CI: {tool} is not installed (apt-get install {package})"
            );
            eprintln!("NOTICE: the {test} runs without {tool} (apt-get install {package})");
            return false;
        }
    }
    true
}

/// The sim-host with its TAP in one namespace (10.201.0.1/24), `hvnet run` with args in
/// another.
struct TwoSides {
    host_ns: Netns,
    guest_ns: Netns,
    root: PathBuf,
    served: Served,
}

/// The synthetic NIC's MAC on the sim host (the VF's end of the veth carries it).
const NIC_MAC: &str = "00:15:5d:01:02:03";

impl TwoSides {
    fn new(name: &str) -> Self {
        Self::start(name, false)
    }

    /// With a VF: a veth pair whose host end `vfh` is the sim host's VF port and whose guest
    /// end `vfg` carries the NIC's MAC, for hvnet's kernel VF backend.
    fn with_vf(name: &str) -> Self {
        Self::start(name, true)
    }

    fn start(name: &str, vf: bool) -> Self {
        let pid = std::process::id();
        let root = temp_root(name);
        let host_ns = Netns::new(format!("hvnet-{name}-h-{pid}"));
        let guest_ns = Netns::new(format!("hvnet-{name}-g-{pid}"));
        for ns in [&host_ns, &guest_ns] {
            ns.run(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
            ns.run(&["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]);
            ns.run(&["ip", "link", "set", "lo", "up"]);
        }
        let mut command = host_ns.exec(&[env!("CARGO_BIN_EXE_hvnet"), "sim-host", "--tap", "hvh0"]);
        command.arg("--root").arg(&root);
        if vf {
            host_ns.run(&[
                "ip",
                "link",
                "add",
                "vfh",
                "type",
                "veth",
                "peer",
                "name",
                "vfg",
                "netns",
                &guest_ns.0,
            ]);
            guest_ns.run(&["ip", "link", "set", "vfg", "address", NIC_MAC]);
            command.args(["--vf-iface", "vfh"]);
        }
        let served = Served::spawn(command);
        host_ns.run(&["ip", "addr", "add", "10.201.0.1/24", "dev", "hvh0"]);
        host_ns.run(&["ip", "link", "set", "hvh0", "up"]);
        Self {
            host_ns,
            guest_ns,
            root,
            served,
        }
    }

    /// `hvnet run` in the guest's namespace.
    fn run(&self, preload: &Path, args: &[&str]) -> Running {
        let mut command = self.guest_ns.exec(&[env!("CARGO_BIN_EXE_hvnet"), "run"]);
        command
            .arg("--sysfs-root")
            .arg(&self.root)
            .arg("--dev-root")
            .arg(self.root.join("dev"))
            .args(args);
        Running::spawn(command, preload)
    }

    fn finish(mut self) {
        self.served.stop();
        std::fs::remove_dir_all(&self.root).unwrap();
        drop(self.host_ns);
        drop(self.guest_ns);
    }
}

#[test]
fn the_kernel_stack_on_hvnet_run_tap_pings_and_carries_iperf3_both_ways() {
    if !runnable(
        "run --tap test",
        &[
            ("ip", "iproute2"),
            ("ping", "iputils-ping"),
            ("iperf3", "iperf3"),
        ],
    ) {
        return;
    }
    let preload = preload();
    let sides = TwoSides::new("tap");
    let running = sides.run(&preload, &["--tap", "hvg0", "--queues", "2", "--vf", "off"]);
    let g = &sides.guest_ns;
    let h = &sides.host_ns;
    g.run(&["ip", "addr", "add", "10.201.0.2/24", "dev", "hvg0"]);
    // The TAP is up with the synthetic NIC's MAC and MTU.
    let link = g
        .exec(&["ip", "-o", "link", "show", "hvg0"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    assert!(
        link.contains("mtu 1500") && link.contains("link/ether 00:15:5d") && link.contains(",UP"),
        "{link}"
    );
    // Five pings each way, every one answered.
    for (ns, to) in [(g, "10.201.0.1"), (h, "10.201.0.2")] {
        let out = ns
            .exec(&["ping", "-c", "5", "-i", "0.2", "-W", "10", to])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && text.contains("5 packets transmitted, 5 received"),
            "ping {to}: {text}"
        );
    }
    // iperf3: a TCP stream from the guest side, then UDP at a fixed rate from the host side,
    // each bounded in bytes (-n) and time (timeout).
    let server = Server::start(h, "10.201.0.1");
    let tcp = iperf3(g, &["-c", "10.201.0.1", "-n", "20M"]);
    let sent = tcp["end"]["sum_sent"]["bytes"].as_u64().unwrap();
    let received = tcp["end"]["sum_received"]["bytes"].as_u64().unwrap();
    // iperf3's receiver stops counting when the sender's end message arrives, which can pass
    // the last segments; TCP itself delivered them (the stream ended without a reset).
    assert!(sent >= 20 << 20 && received >= sent / 10 * 8, "TCP: {tcp}");
    eprintln!(
        "TCP through hvnet run --tap: {:.0} Mbit/s, {} retransmits",
        tcp["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .unwrap()
            / 1e6,
        tcp["end"]["sum_sent"]["retransmits"]
    );
    server.wait();
    let server = Server::start(g, "10.201.0.2");
    let udp = iperf3(
        h,
        &[
            "-c",
            "10.201.0.2",
            "-u",
            "-b",
            "20M",
            "-n",
            "10M",
            "-l",
            "1200",
        ],
    );
    let number = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("UDP: {udp}"));
    let lost = number(&udp["end"]["sum"]["lost_packets"]);
    let packets = number(&udp["end"]["sum"]["packets"]);
    assert!(packets > 8000, "UDP: {udp}");
    assert_eq!(lost, 0, "UDP datagrams lost through the port: {udp}");
    server.wait();
    // The TAP's carrier follows the host's link.
    let carrier = |want: bool| {
        let deadline = Instant::now() + BOUND;
        loop {
            let out = g
                .exec(&["ip", "-o", "link", "show", "hvg0"])
                .output()
                .unwrap();
            let link = String::from_utf8_lossy(&out.stdout).to_string();
            if link.contains("NO-CARRIER") != want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "carrier never became {want}: {link}"
            );
            std::thread::yield_now();
        }
    };
    ctl(&sides.root, &["link", "down"]);
    carrier(false);
    ctl(&sides.root, &["link", "up"]);
    carrier(true);
    let out = running.terminate();
    assert!(
        out.contains("port 0: link down") && out.contains("port 0: link up"),
        "{out}"
    );
    assert_eq!(final_field(&out, 0, "TX-dropped"), 0, "{out}");
    assert_eq!(final_field(&out, 0, "RX-missed"), 0, "{out}");
    assert!(!out.contains("TAP-dropped"), "{out}");
    sides.finish();
}

/// Runs an iperf3 client with `args` (JSON output, a bound on its time), which must succeed.
fn iperf3(ns: &Netns, args: &[&str]) -> serde_json::Value {
    let mut full = vec![
        "timeout",
        "60",
        "iperf3",
        "-J",
        "--connect-timeout",
        "10000",
    ];
    full.extend_from_slice(args);
    let out = ns.exec(&full).output().expect("running iperf3");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "iperf3 {args:?}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("iperf3 output: {e}: {text}"))
}

/// A one-shot iperf3 server (`-s -1`); killed if the test fails before it exits.
struct Server(Child);

impl Server {
    fn start(ns: &Netns, address: &str) -> Self {
        let child = ns
            .exec(&["iperf3", "-s", "-1", "-B", address])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting iperf3 -s");
        let server = Self(child);
        // Listening before a client tries (a refused connection fails the client at once).
        let deadline = Instant::now() + BOUND;
        loop {
            let out = ns
                .exec(&["ss", "-Hltn", "src", &format!("{address}:5201")])
                .output()
                .expect("running ss");
            if !out.stdout.is_empty() {
                return server;
            }
            assert!(Instant::now() < deadline, "iperf3 -s never listened");
            std::thread::yield_now();
        }
    }

    /// Waits (bounded) for the server to exit after its one test.
    fn wait(mut self) {
        let deadline = Instant::now() + BOUND;
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "iperf3 server did not exit");
            std::thread::yield_now();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn forward_io_returns_every_frame_the_kernel_sends_and_both_ends_count_the_same() {
    if !runnable(
        "run --forward test",
        &[("ip", "iproute2"), ("ping", "iputils-ping")],
    ) {
        return;
    }
    let preload = preload();
    let sides = TwoSides::new("io");
    let running = sides.run(&preload, &["--forward", "io", "--vf", "off"]);
    let h = &sides.host_ns;
    let mac = running_mac(&running);
    // 10.201.0.9 is the port's (by a static neighbour entry): the kernel sends it ICMP
    // echo requests, which io forwarding sends back unchanged (and the kernel then drops as
    // addressed to another host).
    h.run(&[
        "ip",
        "neigh",
        "add",
        "10.201.0.9",
        "lladdr",
        &mac,
        "dev",
        "hvh0",
        "nud",
        "permanent",
    ]);
    let _ = h
        .exec(&["ping", "-c", "200", "-i", "0.005", "-W", "1", "10.201.0.9"])
        .output()
        .unwrap();
    let out = running.terminate();
    let (rx, tx) = (
        final_field(&out, 0, "RX-packets"),
        final_field(&out, 0, "TX-packets"),
    );
    assert!(rx >= 200, "{out}");
    assert_eq!(rx, tx, "io sends back what it receives: {out}");
    assert_eq!(host_counter(&sides.root, "tap", "to_guest"), rx, "{out}");
    assert_eq!(host_counter(&sides.root, "tap", "from_guest"), tx, "{out}");
    sides.finish();
}

/// The port's MAC from `hvnet run`'s "port: …" line.
fn running_mac(running: &Running) -> String {
    let line = running
        .out
        .seen
        .iter()
        .find(|l| l.starts_with("port: "))
        .expect("no port line");
    let at = line.find("MAC ").expect("no MAC") + 4;
    line[at..at + 17].to_string()
}

/// The intervals' rates of an iperf3 run, in Mbit/s, and its retransmits (TCP).
fn intervals(result: &serde_json::Value) -> (Vec<f64>, u64) {
    let rates = result["intervals"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["sum"]["bits_per_second"].as_f64())
                .map(|b| b / 1e6)
                .collect()
        })
        .unwrap_or_default();
    let retransmits = result["end"]["sum_sent"]["retransmits"]
        .as_u64()
        .unwrap_or(0);
    (rates, retransmits)
}

#[test]
fn iperf3_through_hvnet_run_keeps_going_while_the_vf_leaves_and_comes_back() {
    iperf3_across_vf_moves("kernel", "[AF_PACKET]");
}

#[test]
fn iperf3_through_hvnet_run_over_af_xdp_keeps_going_while_the_vf_leaves_and_comes_back() {
    iperf3_across_vf_moves("afxdp", "[AF_XDP: native XDP, copy]");
}

/// TCP and UDP through `hvnet run --tap` with the VF on `backend` (whose VF name ends in
/// `transport`) while the VF leaves and comes back.
fn iperf3_across_vf_moves(backend: &str, transport: &str) {
    if !runnable(
        "run --tap with a VF test",
        &[("ip", "iproute2"), ("iperf3", "iperf3")],
    ) {
        return;
    }
    let preload = preload();
    // Namespaces named per backend: the two tests run side by side.
    let sides = TwoSides::with_vf(if backend == "kernel" { "vf" } else { "vfx" });
    let mut running = sides.run(&preload, &["--tap", "hvg0", "--vf-backend", backend]);
    let (g, h, root) = (&sides.guest_ns, &sides.host_ns, &sides.root);
    g.run(&["ip", "addr", "add", "10.201.0.2/24", "dev", "hvg0"]);
    let on_the_vf = |running: &mut Running| {
        running.out.wait("hvnet run", "the switch to the VF", |l| {
            l.contains("Data path switched to VF").then_some(0)
        });
    };
    let off_the_vf = |running: &mut Running| {
        running.out.wait("hvnet run", "the switch back", |l| {
            l.contains("Data path switched from VF").then_some(0)
        });
    };
    ctl(root, &["offer-vf", "7"]);
    running.out.wait("hvnet run", "the VF's transport", |l| {
        (l.contains("VF registering:") && l.contains(transport)).then_some(0)
    });
    on_the_vf(&mut running);
    // Frames through the VF: `from_vf` the guest sent on it, `to_vf` the host steered to it.
    let through_the_vf = |counter: &str, at_least: u64| {
        let deadline = Instant::now() + BOUND;
        let start = host_counter(root, "vf_port", counter);
        while host_counter(root, "vf_port", counter) < start + at_least {
            assert!(
                Instant::now() < deadline,
                "no traffic through the VF ({counter})"
            );
            std::thread::yield_now();
        }
    };

    // TCP from the guest while the VF leaves (planned) and comes back: the stream ends
    // normally (no reset), and the dip shows in its half-second intervals.
    let server = Server::start(h, "10.201.0.1");
    let client = g
        .exec(&[
            "timeout",
            "60",
            "iperf3",
            "-J",
            "--connect-timeout",
            "10000",
            "-c",
            "10.201.0.1",
            "-t",
            "6",
            "-i",
            "0.5",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting iperf3");
    through_the_vf("from_vf", 1000);
    ctl(root, &["remove-vf"]);
    off_the_vf(&mut running);
    ctl(root, &["offer-vf", "7"]);
    on_the_vf(&mut running);
    through_the_vf("from_vf", 200);
    let out = client.wait_with_output().expect("iperf3 client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "iperf3 TCP across the VF's removal: {text}"
    );
    server.wait();
    let tcp: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (rates, retransmits) = intervals(&tcp);
    let mut sorted = rates.clone();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "TCP through hvnet run with the VF removed and re-added: median {:.0} Mbit/s, lowest half-second {:.0} Mbit/s, {retransmits} retransmits; intervals {:.0?}",
        sorted[sorted.len() / 2],
        sorted[0],
        rates
    );
    assert!(
        tcp["end"]["sum_received"]["bytes"].as_u64().unwrap() > 0,
        "{text}"
    );

    // UDP at a fixed rate towards the guest across a planned removal: nothing lost.
    let server = Server::start(g, "10.201.0.2");
    let client = h
        .exec(&[
            "timeout",
            "60",
            "iperf3",
            "-J",
            "--connect-timeout",
            "10000",
            "-c",
            "10.201.0.2",
            "-u",
            "-b",
            "20M",
            "-l",
            "1200",
            "-t",
            "4",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting iperf3");
    through_the_vf("to_vf", 500);
    ctl(root, &["remove-vf"]);
    off_the_vf(&mut running);
    let out = client.wait_with_output().expect("iperf3 client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "iperf3 UDP across a planned removal: {text}"
    );
    server.wait();
    let udp: serde_json::Value = serde_json::from_str(&text).unwrap();
    let number = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("UDP: {text}"));
    let (packets, lost) = (
        number(&udp["end"]["sum"]["packets"]),
        number(&udp["end"]["sum"]["lost_packets"]),
    );
    eprintln!("UDP at 20 Mbit/s across a planned removal: {packets} datagrams, {lost} lost");
    assert!(packets > 5000, "{text}");
    assert_eq!(lost, 0, "datagrams lost across a planned removal: {text}");

    let out = running.terminate();
    let totals = out.rsplit("Forward statistics").next().unwrap_or_default();
    eprintln!("hvnet run at exit:{totals}");
    assert!(
        out.contains("VF registering") && out.contains("VF unregistering"),
        "{out}"
    );
    sides.finish();
}
