//! `hvnet sim-host` with a client in another process: `hvnet probe` attaches through its
//! real uio backend (sysfs tree, device node, maps, subchannel ring files, monitor-page
//! doorbell), under the `hvnet-sim-uio` preload library, twice in a row on the same host
//! (two sessions, four queues then one).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

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
    // The control socket: counters, a refused command.
    let stats = ctl(&root, &["stats"]);
    assert!(stats.contains("\"sessions\":2"), "{stats}");
    let refused = hvnet()
        .args(["sim-host", "ctl", "--root"])
        .arg(&root)
        .args(["fault", "melt"])
        .output()
        .expect("running hvnet sim-host ctl");
    assert!(!refused.status.success());
    let answer = String::from_utf8_lossy(&refused.stdout);
    assert!(
        answer.contains("\"ok\":false") && answer.contains("no fault") && answer.contains("melt"),
        "{answer}"
    );
    served.stop();
    let last = served.out.seen.last().cloned().unwrap_or_default();
    assert!(last.contains("in 2 session(s)"), "{last}");
    assert!(last.contains("0 protocol error(s)"), "{last}");
    assert!(
        !root.join("bus").exists() && !root.join("dev/uio0").exists(),
        "sim-host left its tree behind"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Whether a DPDK test can run here, with `tools` besides: it needs root (a mount namespace
/// to show the tree at /sys/bus, where DPDK looks), `unshare` and Debian's `dpdk-testpmd`
/// (package dpdk-dev, which `scripts/test` installs).
fn dpdk_runnable(test: &str, tools: &[(&str, &str)]) -> bool {
    let mut all = vec![
        ("unshare", "util-linux"),
        ("dpdk-testpmd", "dpdk-dev"),
        ("timeout", "coreutils"),
    ];
    all.extend_from_slice(tools);
    runnable(test, &all)
}

/// Testpmd's accumulated forward counts: (RX-packets, RX-dropped, TX-packets, TX-dropped).
fn forward_totals(out: &str) -> Option<(u64, u64, u64, u64)> {
    let block = out.split("Accumulated forward statistics").nth(1)?;
    let field = |line: &str, name: &str| -> Option<u64> {
        let rest = line.split(name).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    let mut lines = block.lines().filter(|l| l.contains("-packets:"));
    let rx = lines.next()?;
    let tx = lines.next()?;
    Some((
        field(rx, "RX-packets:")?,
        field(rx, "RX-dropped:")?,
        field(tx, "TX-packets:")?,
        field(tx, "TX-dropped:")?,
    ))
}

/// Runs stock `dpdk-testpmd` against the served host for at most `seconds` (io forwarding,
/// the first burst sent by testpmd itself, the host looping frames back): its output.
fn testpmd(root: &Path, preload: &Path, seconds: u32, queues: u16) -> String {
    let script = format!(
        "mount --bind \"$0/bus\" /sys/bus && exec timeout -s INT {seconds} dpdk-testpmd \
         --no-huge -m 512 --no-pci --iova-mode=va -l 0-1 --file-prefix hvnet-sim-test \
         -a {} -- --forward-mode=io --tx-first --stats-period=1 --nb-cores=1 \
         --rxq={queues} --txq={queues} --total-num-mbufs=16384",
        integration::sim_host::DEFAULT_INSTANCE
    );
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .arg(root)
        .env("LD_PRELOAD", preload)
        .env("HVNET_SIM_DEV", root.join("dev"))
        .output()
        .expect("running dpdk-testpmd in a mount namespace");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // timeout(1) exits 124 after it had to send SIGINT; testpmd then ends normally.
    assert!(
        matches!(out.status.code(), Some(0 | 124)) && text.contains("Bye..."),
        "dpdk-testpmd did not end normally ({}):\n{text}",
        out.status
    );
    text
}

/// The numbers in sim-host's last line: (to the guest, from it, dropped, protocol errors).
fn host_totals(line: &str) -> (u64, u64, u64, u64) {
    let number_before = |marker: &str| -> u64 {
        let head = line.split(marker).next().unwrap_or_default();
        head.rsplit([' ', ','])
            .find(|w| !w.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    (
        number_before(" frame(s) to the guest"),
        number_before(" from it"),
        number_before(" dropped"),
        number_before(" protocol error(s)"),
    )
}

#[test]
fn stock_dpdk_testpmd_forwards_on_four_queues_through_sim_host_and_a_second_client_follows() {
    if !dpdk_runnable("DPDK test", &[]) {
        return;
    }
    let preload = preload();
    let root = std::env::temp_dir().join(format!("hvnet-sim-dpdk-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut served = Served::start_with(&root, &["--port", "loopback"]);
    // Two clients in a row on the same host, four queues then one: the second gets a new
    // session and zeroed memory. Each queue's first burst is 32 frames.
    let mut forwarded = Vec::new();
    let mut bursts = 0;
    for (run, queues) in [(1, 4u16), (2, 1)] {
        let out = testpmd(&root, &preload, 20, queues);
        bursts += 32 * u64::from(queues);
        let queue_line = format!("RX queue number: {queues} Tx queue number: {queues}");
        for want in [
            "Port 0: 00:15:5D:01:02:03",
            "io packet forwarding",
            queue_line.as_str(),
        ] {
            assert!(out.contains(want), "run {run}: no {want:?} in:\n{out}");
        }
        let (rx, rx_dropped, tx, tx_dropped) =
            forward_totals(&out).unwrap_or_else(|| panic!("run {run}: no totals in:\n{out}"));
        assert_eq!(
            (rx_dropped, tx_dropped),
            (0, 0),
            "run {run}: testpmd dropped frames"
        );
        assert_eq!(rx, tx, "run {run}: io forwarding sends what it receives");
        // The 32 frames of the first burst went round at least ten times.
        assert!(rx >= 320, "run {run}: only {rx} frames forwarded:\n{out}");
        forwarded.push(rx);
    }
    served.stop();
    let last = served.out.seen.last().cloned().unwrap_or_default();
    assert!(last.contains("in 2 session(s)"), "{last}");
    let (to_guest, from_guest, dropped, errors) = host_totals(&last);
    assert_eq!((dropped, errors), (0, 0), "{last}");
    // Loopback: every frame from the guest went back to it.
    assert_eq!(to_guest, from_guest, "{last}");
    // The host saw each run's forwarded frames plus its first bursts, and gave the guest each
    // run's received frames plus the bursts left in its rings when testpmd stopped (at most
    // the same): every frame is accounted for.
    let sent: u64 = forwarded.iter().sum();
    assert!(
        from_guest >= sent && from_guest - sent <= bursts,
        "host got {from_guest} from the guest, testpmd forwarded {sent}: {last}"
    );
    assert!(
        to_guest >= sent && to_guest - sent <= bursts,
        "host gave {to_guest} to the guest, testpmd received {sent}: {last}"
    );
    let _ = std::fs::remove_dir_all("/var/run/dpdk/hvnet-sim-test");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_host_link_down_shows_in_testpmd_port_info_and_up_again() {
    if !dpdk_runnable("DPDK test", &[]) {
        return;
    }
    let preload = preload();
    let root = std::env::temp_dir().join(format!("hvnet-sim-link-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut served = Served::start(&root);
    // Without LSC interrupts `show port info` asks the PMD, which queries the host.
    let mut tp = Testpmd::start(
        None,
        &root,
        &preload,
        "hvnet-sim-link-test",
        "-i --no-lsc-interrupt --total-num-mbufs=16384",
    );
    let show_link = |tp: &mut Testpmd| -> String {
        tp.send("show port info 0");
        tp.wait_for("Link status:")
    };
    assert_eq!(show_link(&mut tp), "Link status: up");
    ctl(&root, &["link", "down"]);
    assert_eq!(show_link(&mut tp), "Link status: down");
    ctl(&root, &["link", "up"]);
    assert_eq!(show_link(&mut tp), "Link status: up");
    tp.quit();
    served.stop();
    let _ = std::fs::remove_dir_all("/var/run/dpdk/hvnet-sim-link-test");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn the_linux_stack_pings_dpdk_through_the_hosts_tap_port() {
    if !dpdk_runnable("TAP test", &[("ip", "iproute2"), ("ping", "iputils-ping")]) {
        return;
    }
    let preload = preload();
    let pid = std::process::id();
    let root = std::env::temp_dir().join(format!("hvnet-sim-tap-test-{pid}"));
    let _ = std::fs::remove_dir_all(&root);
    let netns = Netns::new(format!("hvnet-sim-tap-{pid}"));
    let tap = "hvsim0";
    // The host, and its TAP, inside a namespace of the test's; the kernel end gets
    // 10.199.0.1 there, and testpmd's icmpecho answers for 10.199.0.2.
    let mut command = netns.exec(&[env!("CARGO_BIN_EXE_hvnet"), "sim-host", "--tap", tap]);
    command.arg("--root").arg(&root);
    let mut served = Served::spawn(command);
    netns.run(&["ip", "addr", "add", "10.199.0.1/24", "dev", tap]);
    netns.run(&["ip", "link", "set", tap, "up"]);
    // Its input kept open: testpmd forwards until its "Press enter to exit" read ends.
    let mut tp = Testpmd::start(
        None,
        &root,
        &preload,
        "hvnet-sim-tap-test",
        "--forward-mode=icmpecho --nb-cores=1 --total-num-mbufs=16384",
    );
    tp.wait_for("icmpecho packet forwarding - ports=1");
    let ping = netns
        .exec(&["ping", "-c", "5", "-i", "0.2", "-W", "10", "10.199.0.2"])
        .output()
        .expect("running ping");
    let ping_out = String::from_utf8_lossy(&ping.stdout).to_string();
    // Exactly five echoes (`-c 5`), each answer waited for at most 10 s (`-W`): a deadline
    // (`-w`) would keep sending until five answers came, and count the extra one, still in
    // flight at the end, as lost.
    assert!(
        ping.status.success()
            && ping_out.contains("5 packets transmitted, 5 received, 0% packet loss"),
        "ping through the TAP to testpmd:\n{ping_out}"
    );
    // The TAP's carrier follows the host's link.
    let carrier = || {
        let out = netns
            .exec(&["cat", &format!("/sys/class/net/{tap}/carrier")])
            .output()
            .expect("reading the TAP's carrier");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(carrier(), "1");
    ctl(&root, &["link", "down"]);
    assert_eq!(carrier(), "0", "the carrier stayed up with the link down");
    ctl(&root, &["link", "up"]);
    assert_eq!(carrier(), "1");
    // A line ends its "Press enter to exit" read.
    tp.quit();
    served.stop();
    let tap_line = served
        .out
        .seen
        .iter()
        .find(|l| l.starts_with("tap: "))
        .cloned()
        .unwrap_or_default();
    // Five echo replies and an ARP reply at least came out of the TAP, and nothing dropped.
    let from_guest: u64 = tap_line
        .split(", ")
        .nth(1)
        .and_then(|part| part.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no tap counters in {tap_line:?}"));
    assert!(from_guest >= 6, "{tap_line}");
    assert!(tap_line.ends_with("(0 dropped)"), "{tap_line}");
    let last = served.out.seen.last().cloned().unwrap_or_default();
    assert!(last.contains("0 protocol error(s)"), "{last}");
    let _ = std::fs::remove_dir_all("/var/run/dpdk/hvnet-sim-tap-test");
    std::fs::remove_dir_all(&root).unwrap();
}

/// Interactive `dpdk-testpmd` against a served host, inside `netns` (line-buffered, so each
/// answer arrives when printed).
struct Testpmd {
    child: Child,
    input: Option<std::process::ChildStdin>,
    out: Output,
}

impl Testpmd {
    fn start(netns: Option<&Netns>, root: &Path, preload: &Path, prefix: &str, args: &str) -> Self {
        let script = format!(
            "mount --bind \"$0/bus\" /sys/bus && exec timeout -s INT {} stdbuf -oL dpdk-testpmd \
             --no-huge -m 512 --no-pci --iova-mode=va -l 0-1 --file-prefix {prefix} -a {} -- \
             {args}",
            BOUND.as_secs(),
            integration::sim_host::DEFAULT_INSTANCE
        );
        // A pid namespace of its own whose first process dies with `unshare`
        // (`--kill-child`): killing the child on drop takes testpmd with it, wherever
        // `timeout` and the shell put it, so a failed test leaves no testpmd behind.
        let unshare = [
            "unshare",
            "-m",
            "-p",
            "-f",
            "--kill-child",
            "sh",
            "-c",
            &script,
        ];
        let mut command = match netns {
            Some(netns) => netns.exec(&unshare),
            None => {
                let mut c = Command::new(unshare[0]);
                c.args(&unshare[1..]);
                c
            }
        };
        let mut child = command
            .arg(root)
            .env("LD_PRELOAD", preload)
            .env("HVNET_SIM_DEV", root.join("dev"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dpdk-testpmd");
        let input = child.stdin.take();
        let out = Output::read(child.stdout.take().unwrap());
        Self { child, input, out }
    }

    fn send(&mut self, command: &str) {
        use std::io::Write as _;
        let input = self.input.as_mut().expect("testpmd's input is open");
        writeln!(input, "{command}").expect("writing to testpmd");
    }

    /// Waits (bounded) for a line containing `text`; the line from there on.
    fn wait_for(&mut self, text: &str) -> String {
        self.out.wait("testpmd", text, |l| l.find(text))
    }

    /// `stop`: the forward totals of the run it ends (RX-packets, RX-dropped, TX-packets,
    /// TX-dropped).
    fn stop(&mut self) -> (u64, u64, u64, u64) {
        let from = self.out.seen.len();
        self.send("stop");
        self.wait_for("Accumulated forward statistics");
        self.wait_for("Done.");
        let out = self.out.seen[from..].join("\n");
        forward_totals(&out).unwrap_or_else(|| panic!("no totals from testpmd:\n{out}"))
    }

    /// `quit`, then waits for a normal exit; everything it printed.
    fn quit(mut self) -> String {
        self.send("quit");
        drop(self.input.take());
        self.wait_for("Bye...");
        let status = self.child.wait().expect("waiting for testpmd");
        assert!(status.success(), "testpmd ended with {status}");
        self.out.seen.join("\n")
    }
}

impl Drop for Testpmd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The host's counters (ctl `stats`) that a VF test follows.
#[derive(Clone, Copy, Debug, Default)]
struct VfCounts {
    data_path_vf: bool,
    /// Frames to the guest on the synthetic path.
    synthetic_to_guest: u64,
    /// Frames from the guest on the synthetic path.
    synthetic_from_guest: u64,
    /// Frames the host wrote into the VF's interface.
    to_vf: u64,
    /// Frames the guest sent on the VF that reached the host.
    from_vf: u64,
}

fn vf_counts(root: &Path) -> VfCounts {
    let answer = ctl(root, &["stats"]);
    let v: serde_json::Value = serde_json::from_str(&answer).expect("stats are JSON");
    let n = |path: &[&str]| -> u64 {
        path.iter()
            .fold(&v, |v, k| &v[*k])
            .as_u64()
            .unwrap_or_else(|| panic!("no {path:?} in {answer}"))
    };
    VfCounts {
        data_path_vf: v["host"]["data_path_vf"].as_bool().expect("data_path_vf"),
        synthetic_to_guest: n(&["host", "rx_delivered"]),
        synthetic_from_guest: n(&["host", "tx_packets"]),
        to_vf: n(&["vf_port", "to_vf"]),
        from_vf: n(&["vf_port", "from_vf"]),
    }
}

/// Asks for the host's counters until `done` holds (bounded: each ask is a round trip to
/// the host, nothing is slept).
fn wait_counts(root: &Path, what: &str, done: impl Fn(&VfCounts) -> bool) -> VfCounts {
    let deadline = Instant::now() + BOUND;
    loop {
        let c = vf_counts(root);
        if done(&c) {
            return c;
        }
        assert!(Instant::now() < deadline, "never got to {what}: {c:?}");
    }
}

/// A counter of interface `name` in `netns` (`/sys/class/net/NAME/statistics/COUNTER`).
fn iface_counter(netns: &Netns, name: &str, counter: &str) -> u64 {
    let out = netns
        .exec(&[
            "cat",
            &format!("/sys/class/net/{name}/statistics/{counter}"),
        ])
        .output()
        .expect("reading an interface counter");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no counter {counter} for {name}"))
}

#[test]
fn dpdk_adopts_a_veth_vf_and_leaves_it_in_both_removal_orders() {
    if !dpdk_runnable("VF test", &[("ip", "iproute2")]) {
        return;
    }
    let preload = preload();
    let pid = std::process::id();
    let root = std::env::temp_dir().join(format!("hvnet-sim-vf-test-{pid}"));
    let _ = std::fs::remove_dir_all(&root);
    let netns = Netns::new(format!("hvnet-sim-vf-{pid}"));
    // No IPv6 chatter of the kernel's own on the veth: every frame on it is testpmd's.
    netns.run(&[
        "sysctl",
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=1",
        "net.ipv6.conf.default.disable_ipv6=1",
    ]);
    netns.run(&[
        "ip", "link", "add", "vfc", "type", "veth", "peer", "name", "vfh",
    ]);
    let mac = integration::host::HostConfig::default().mac.to_string();
    netns.run(&["ip", "link", "set", "vfc", "address", &mac, "up"]);
    let mut command = netns.exec(&[
        env!("CARGO_BIN_EXE_hvnet"),
        "sim-host",
        "--port",
        "loopback",
        "--vf-iface",
        "vfh",
    ]);
    command.arg("--root").arg(&root);
    let mut served = Served::spawn(command);

    // One client per order: DPDK 22.11 keeps a VF it adopted started after the association
    // goes, and does not adopt it again.
    for (i, order) in ["association-first", "eject-first"].into_iter().enumerate() {
        let mut tp = Testpmd::start(
            Some(&netns),
            &root,
            &preload,
            &format!("hvnet-sim-vf-test-{i}"),
            "-i --no-lsc-interrupt --total-num-mbufs=16384",
        );
        tp.wait_for("Port 0 Link up");
        let start = vf_counts(&root);
        let dropped_start = iface_counter(&netns, "vfc", "tx_dropped");
        tp.send("start tx_first");
        tp.wait_for("io packet forwarding - ports=1");
        tp.send("port attach net_af_packet0,iface=vfc");
        tp.wait_for("Port 1 is attached");

        ctl(&root, &["offer-vf", "7"]);
        let on_vf = wait_counts(&root, "the data path on the VF, frames both ways", |c| {
            c.data_path_vf && c.to_vf >= start.to_vf + 1000 && c.from_vf >= start.from_vf + 1000
        });
        ctl(&root, &["remove-vf", "--order", order]);
        let removed = vf_counts(&root);
        assert!(
            !removed.data_path_vf,
            "{order}: the host is still on the VF"
        );
        // The first burst is all that circulates, and in Azure's order what the client
        // still sends on the dead VF is lost (counted by the kernel): a new burst shows the
        // synthetic path carrying traffic again.
        let (rx1, rx_dropped1, tx1, tx_dropped1) = tp.stop();
        // `port attach` made the VF a forwarding port of testpmd's too: the netvsc port
        // alone forwards, its VF is the PMD's.
        tp.send("set portlist 0");
        tp.send("start tx_first");
        tp.wait_for("io packet forwarding - ports=1");
        let back = wait_counts(&root, "frames on the synthetic path again", |c| {
            c.synthetic_to_guest >= removed.synthetic_to_guest + 1000
                && c.synthetic_from_guest >= removed.synthetic_from_guest + 1000
        });
        let (rx2, rx_dropped2, tx2, tx_dropped2) = tp.stop();
        let end = vf_counts(&root);
        tp.quit();
        let (rx, rx_dropped, tx, tx_dropped) = (
            rx1 + rx2,
            rx_dropped1 + rx_dropped2,
            tx1 + tx2,
            tx_dropped1 + tx_dropped2,
        );
        let kernel_dropped = iface_counter(&netns, "vfc", "tx_dropped") - dropped_start;
        eprintln!(
            "{order}: testpmd rx {rx} (dropped {rx_dropped}) tx {tx} (dropped {tx_dropped}); \
             host start {start:?} on_vf {on_vf:?} removed {removed:?} back {back:?} end {end:?}; \
             vfc tx_dropped {kernel_dropped}"
        );
        assert_eq!(
            end.to_vf, removed.to_vf,
            "{order}: the host steered frames to the VF after removing it"
        );
        // Every frame each way is in one counter: what testpmd sent reached the host on one
        // of the paths or was dropped by the kernel on the dead VF; what testpmd received
        // the host sent on one of the paths. The frames in flight when testpmd stopped (a
        // burst at most each time; it discards what waits when it starts again) are the only
        // difference.
        let to_guest =
            (end.synthetic_to_guest - start.synthetic_to_guest) + (end.to_vf - start.to_vf);
        let from_guest = (end.synthetic_from_guest - start.synthetic_from_guest)
            + (end.from_vf - start.from_vf)
            + kernel_dropped;
        assert!(
            to_guest >= rx && to_guest - rx <= 128,
            "{order}: the host sent {to_guest} frames to the guest, testpmd received {rx}"
        );
        assert!(
            tx.abs_diff(from_guest) <= 128,
            "{order}: testpmd sent {tx}, the host and the kernel account for {from_guest}"
        );
    }
    served.stop();
    for i in 0..2 {
        let _ = std::fs::remove_dir_all(format!("/var/run/dpdk/hvnet-sim-vf-test-{i}"));
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn a_ctl_script_runs_its_commands_at_their_times_and_stops_at_a_refusal() {
    let root = std::env::temp_dir().join(format!("hvnet-sim-script-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let mut served = Served::start(&root);
    let script = root.join("servicing.txt");
    std::fs::write(
        &script,
        "# a link flap, then a command the host refuses\n0 link down\n0.2 link up\n0.2 fault melt\n0.3 link down\n",
    )
    .unwrap();
    let started = Instant::now();
    let out = hvnet()
        .args(["sim-host", "ctl", "--root"])
        .arg(&root)
        .arg("--script")
        .arg(&script)
        .output()
        .expect("running hvnet sim-host ctl --script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a refused step fails the script");
    assert!(stderr.contains("fault melt"), "{stderr}");
    let answers: Vec<&str> = stdout.lines().collect();
    assert_eq!(answers.len(), 3, "the step after the refusal ran: {stdout}");
    assert!(
        answers[0].contains("link down: media disconnect"),
        "{stdout}"
    );
    assert!(answers[1].contains("link up: media connect"), "{stdout}");
    assert!(answers[2].contains("\"ok\":false"), "{stdout}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the second step ran before its time"
    );
    served.stop();
    std::fs::remove_dir_all(&root).unwrap();
}
