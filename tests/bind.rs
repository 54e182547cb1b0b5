//! `hvnet bind`, `unbind` and `status` against fake sysfs trees of two guests, run as a user
//! runs them: an on-prem Hyper-V guest whose second NIC has an Intel 82576 VF (igbvf), and an
//! Azure guest whose NICs have Mellanox ConnectX-4 Lx VFs (mlx5).
//!
//! A fake tree has no kernel behind it: a write lands in a plain file and no driver link
//! moves. So the writes are the test: `--dry-run` must print exactly the expected sequence
//! and change nothing; a real run must change exactly the files the sequence names, each to
//! its value and a newline, as `echo` writes it. Between `bind` and `unbind` the test moves
//! the links itself, as the kernel would have, so `unbind` sees a bound guest.
//!
//! Routes come from a fake `--proc-root`; the SSH session from `SSH_CONNECTION` and a fake
//! `ip` on `PATH` that prints `ip -j address show` output.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CLASS: &str = "f8615163-df3e-46c5-913f-f2d2f965ed0e";
/// The management NIC (eth0) of both guests.
const ETH0: &str = "6c3fc8b4-9e1b-4c1a-8f2a-0b7c1d2e3f40";
/// The NIC for hvnet (eth1) of both guests.
const ETH1: &str = "ed963694-e847-4b2a-85af-bc9cfc11d6f3";
const ETH0_MAC: &str = "00:15:5d:01:02:01";
const ETH1_MAC: &str = "00:15:5d:01:02:03";
/// The igbvf VF of the on-prem guest's eth1, in slot 7.
const IGBVF: &str = "1d7c:00:02.0";
/// The mlx5 VFs of the Azure guest: eth0's in slot 1, eth1's in slot 2.
const MLX5_ETH0: &str = "6f51:00:02.0";
const MLX5_ETH1: &str = "8a3e:00:02.0";

/// A guest: its sysfs and procfs trees, where bind keeps its state, a directory for a fake
/// `ip`; removed on drop.
struct Guest {
    dir: PathBuf,
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

impl Guest {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hvnet-bind-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let guest = Self { dir };
        let sys = guest.sys();
        for driver in ["hv_netvsc", "uio_hv_generic"] {
            for file in ["bind", "unbind", "new_id", "remove_id"] {
                write(&sys.join("bus/vmbus/drivers").join(driver).join(file), "");
            }
        }
        for driver in ["vfio-pci", "igbvf", "mlx5_core"] {
            for file in ["bind", "unbind", "new_id", "remove_id"] {
                write(&sys.join("bus/pci/drivers").join(driver).join(file), "");
            }
        }
        write(&sys.join("bus/pci/drivers_probe"), "");
        write(
            &sys.join("module/vfio/parameters/enable_unsafe_noiommu_mode"),
            "N\n",
        );
        write(
            &sys.join("kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
            "0\n",
        );
        // Hyper-V and Azure guests have no IOMMU.
        fs::create_dir_all(sys.join("class/iommu")).unwrap();
        // The default route is on eth0; eth1 has a subnet route only.
        write(
            &guest.proc().join("net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
             eth1\t0001000A\t00000000\t0001\t0\t0\t101\t00FFFFFF\t0\t0\t0\n",
        );
        write(
            &guest.proc().join("net/ipv6_route"),
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
             00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n",
        );
        // `ip -j address show`: eth0 has 10.0.0.4, eth1 has 10.0.1.4.
        write(
            &guest.dir.join("bin/ip"),
            "#!/bin/sh\n[ \"$*\" = \"-j address show\" ] || exit 3\ncat <<'EOF'\n\
             [{\"ifindex\":1,\"ifname\":\"lo\",\"addr_info\":[{\"family\":\"inet\",\"local\":\"127.0.0.1\"}]},\
             {\"ifindex\":2,\"ifname\":\"eth0\",\"addr_info\":[{\"family\":\"inet\",\"local\":\"10.0.0.4\",\"prefixlen\":24}]},\
             {\"ifindex\":3,\"ifname\":\"eth1\",\"addr_info\":[{\"family\":\"inet\",\"local\":\"10.0.1.4\",\"prefixlen\":24}]}]\n\
             EOF\n",
        );
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(guest.dir.join("bin/ip"), fs::Permissions::from_mode(0o755)).unwrap();
        guest
    }

    fn sys(&self) -> PathBuf {
        self.dir.join("sys")
    }

    fn proc(&self) -> PathBuf {
        self.dir.join("proc")
    }

    fn state(&self) -> PathBuf {
        self.dir.join("run/hvnet/bind-state.json")
    }

    /// A NetVSC on hv_netvsc with its interface.
    fn netvsc(&self, instance: &str, ifname: &str, mac: &str) {
        let dev = self.sys().join("bus/vmbus/devices").join(instance);
        write(&dev.join("class_id"), &format!("{{{CLASS}}}\n"));
        write(
            &dev.join("net").join(ifname).join("address"),
            &format!("{mac}\n"),
        );
        symlink(
            self.sys().join("bus/vmbus/drivers/hv_netvsc"),
            dev.join("driver"),
        )
        .unwrap();
    }

    /// A VF on its kernel driver, in pci-hyperv slot `serial`, with its interface.
    fn vf(&self, bdf: &str, id: (&str, &str), driver: &str, serial: u32, ifname: &str, mac: &str) {
        let sys = self.sys();
        let dev = sys.join("bus/pci/devices").join(bdf);
        write(&dev.join("vendor"), &format!("{}\n", id.0));
        write(&dev.join("device"), &format!("{}\n", id.1));
        write(&dev.join("class"), "0x020000\n");
        write(&dev.join("driver_override"), "(null)\n");
        write(
            &dev.join("net").join(ifname).join("address"),
            &format!("{mac}\n"),
        );
        symlink(sys.join("bus/pci/drivers").join(driver), dev.join("driver")).unwrap();
        let address = bdf.rsplit_once('.').unwrap().0;
        write(
            &sys.join("bus/pci/slots")
                .join(serial.to_string())
                .join("address"),
            &format!("{address}\n"),
        );
        // netvsc makes the VF's interface a lower device of its own.
        let upper = if mac == ETH0_MAC { "eth0" } else { "eth1" };
        fs::create_dir_all(
            sys.join("class/net")
                .join(ifname)
                .join(format!("upper_{upper}")),
        )
        .unwrap();
    }

    /// An on-prem Hyper-V guest: eth0 for management, eth1 with an Intel 82576 VF.
    fn on_prem(name: &str) -> Self {
        let guest = Self::new(name);
        guest.netvsc(ETH0, "eth0", ETH0_MAC);
        guest.netvsc(ETH1, "eth1", ETH1_MAC);
        guest.vf(
            IGBVF,
            ("0x8086", "0x10ca"),
            "igbvf",
            7,
            "enP7548s1",
            ETH1_MAC,
        );
        guest
    }

    /// An Azure guest with accelerated networking: both NICs have a ConnectX-4 Lx VF.
    fn azure(name: &str) -> Self {
        let guest = Self::new(name);
        guest.netvsc(ETH0, "eth0", ETH0_MAC);
        guest.netvsc(ETH1, "eth1", ETH1_MAC);
        guest.vf(
            MLX5_ETH0,
            ("0x15b3", "0x1016"),
            "mlx5_core",
            1,
            "enP28497s1",
            ETH0_MAC,
        );
        guest.vf(
            MLX5_ETH1,
            ("0x15b3", "0x1016"),
            "mlx5_core",
            2,
            "enP35390s1",
            ETH1_MAC,
        );
        guest
    }

    /// Runs hvnet with the guest's roots, no SSH session unless `ssh` is given, and the fake
    /// `ip` first on `PATH`.
    fn hvnet(&self, ssh: Option<&str>, args: &[&str]) -> Output {
        let sys = self.sys();
        let proc = self.proc();
        let state = self.state();
        let mut full: Vec<&str> = args.to_vec();
        full.extend(["--sysfs-root", sys.to_str().unwrap()]);
        if args[0] != "unbind" {
            full.extend(["--proc-root", proc.to_str().unwrap()]);
        }
        full.extend(["--state", state.to_str().unwrap()]);
        let path = format!(
            "{}:{}",
            self.dir.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(env!("CARGO_BIN_EXE_hvnet"));
        command
            .args(&full)
            .env_remove("HVNET_LOG")
            .env_remove("SSH_CONNECTION")
            .env("PATH", path);
        if let Some(ssh) = ssh {
            command.env("SSH_CONNECTION", ssh);
        }
        command.output().expect("running hvnet")
    }

    /// Plays the kernel after a bind: eth1 on uio_hv_generic without its interface, the VF
    /// (if any) on vfio-pci without its interface, no-IOMMU mode on.
    fn kernel_moves_eth1(&self, vf: Option<&str>) {
        let sys = self.sys();
        // Write-only attributes read back empty.
        for driver in ["hv_netvsc", "uio_hv_generic"] {
            for file in ["bind", "unbind", "new_id", "remove_id"] {
                write(&sys.join("bus/vmbus/drivers").join(driver).join(file), "");
            }
        }
        for driver in ["vfio-pci", "igbvf", "mlx5_core"] {
            for file in ["bind", "unbind"] {
                write(&sys.join("bus/pci/drivers").join(driver).join(file), "");
            }
        }
        write(&sys.join("bus/pci/drivers_probe"), "");
        let dev = sys.join("bus/vmbus/devices").join(ETH1);
        fs::remove_file(dev.join("driver")).unwrap();
        symlink(
            sys.join("bus/vmbus/drivers/uio_hv_generic"),
            dev.join("driver"),
        )
        .unwrap();
        fs::remove_dir_all(dev.join("net")).unwrap();
        if let Some(bdf) = vf {
            let dev = sys.join("bus/pci/devices").join(bdf);
            fs::remove_file(dev.join("driver")).unwrap();
            symlink(sys.join("bus/pci/drivers/vfio-pci"), dev.join("driver")).unwrap();
            fs::remove_dir_all(dev.join("net")).unwrap();
            write(
                &sys.join("module/vfio/parameters/enable_unsafe_noiommu_mode"),
                "Y\n",
            );
        }
    }
}

/// Every entry under `root`: a file's contents, a link's target, a directory.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let value = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                "<dir>".into()
            } else {
                fs::read_to_string(&path).unwrap()
            };
            out.insert(path, value);
        }
    }
    out
}

/// What changed from `before` to `after`: path → new value (nothing may disappear).
fn changes(
    before: &BTreeMap<PathBuf, String>,
    after: &BTreeMap<PathBuf, String>,
) -> BTreeMap<PathBuf, String> {
    for path in before.keys() {
        assert!(after.contains_key(path), "{} disappeared", path.display());
    }
    after
        .iter()
        .filter(|(path, value)| before.get(*path) != Some(value))
        .map(|(path, value)| (path.clone(), value.clone()))
        .collect()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `echo` lines of an output.
fn echoes(out: &Output) -> Vec<String> {
    stdout(out)
        .lines()
        .filter(|l| l.starts_with("echo "))
        .map(str::to_owned)
        .collect()
}

/// `echo VALUE > ROOT/PATH` for each `(VALUE, PATH)`.
fn expected(root: &Path, writes: &[(&str, &str)]) -> Vec<String> {
    writes
        .iter()
        .map(|(value, path)| {
            let path = root.join(path);
            if value.is_empty() {
                format!("echo > {}", path.display())
            } else {
                format!("echo {value} > {}", path.display())
            }
        })
        .collect()
}

/// The files a run of `writes` must have changed, with their contents.
fn written(root: &Path, writes: &[(&str, &str)]) -> BTreeMap<PathBuf, String> {
    writes
        .iter()
        .map(|(value, path)| (root.join(path), format!("{value}\n")))
        .collect()
}

/// What `hvnet bind` (no --instance) does on the on-prem guest: eth0 carries the default
/// route and is skipped; eth1 and its igbvf VF are bound.
const ON_PREM_BIND: [(&str, &str); 8] = [
    ("64", "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
    ("1", "module/vfio/parameters/enable_unsafe_noiommu_mode"),
    (CLASS, "bus/vmbus/drivers/uio_hv_generic/new_id"),
    (ETH1, "bus/vmbus/drivers/hv_netvsc/unbind"),
    (ETH1, "bus/vmbus/drivers/uio_hv_generic/bind"),
    ("vfio-pci", "bus/pci/devices/1d7c:00:02.0/driver_override"),
    (IGBVF, "bus/pci/drivers/igbvf/unbind"),
    (IGBVF, "bus/pci/drivers_probe"),
];

#[test]
fn a_dry_run_on_prem_prints_the_writes_in_order_and_changes_nothing() {
    let guest = Guest::on_prem("dry");
    let before = snapshot(&guest.dir);
    let out = guest.hvnet(None, &["bind", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(echoes(&out), expected(&guest.sys(), &ON_PREM_BIND));
    let text = stdout(&out);
    assert!(
        text.lines()
            .all(|l| l.starts_with("echo ") || l.starts_with("# ")),
        "dry-run output is a shell script:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "# NetVSC {ETH0} (eth0) is skipped: carries the default route (on eth0); \
             to take it anyway: --instance {ETH0} --force"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "#   VF {IGBVF} 8086:10ca slot 7: bind to vfio-pci (igbvf)"
        )),
        "{text}"
    );
    assert_eq!(snapshot(&guest.dir), before, "a dry run wrote something");
    assert!(!guest.state().exists());
}

#[test]
fn a_real_run_on_prem_writes_exactly_those_files_and_unbind_restores_them() {
    let guest = Guest::on_prem("real");
    let sys = guest.sys();
    let before = snapshot(&sys);
    let out = guest.hvnet(None, &["bind"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        echoes(&out),
        expected(&sys, &ON_PREM_BIND),
        "printed as made"
    );
    assert_eq!(
        changes(&before, &snapshot(&sys)),
        written(&sys, &ON_PREM_BIND)
    );
    // The fake kernel moved nothing, and bind says so.
    assert!(
        stderr(&out).contains(&format!(
            "warning: NetVSC {ETH1} is on hv_netvsc after the writes"
        )),
        "{}",
        stderr(&out)
    );
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(guest.state()).unwrap()).unwrap();
    assert_eq!(state["new_id_added"], true);
    assert_eq!(state["netvscs"][0]["instance"], ETH1);
    assert_eq!(state["netvscs"][0]["driver"], "hv_netvsc");
    assert_eq!(state["netvscs"][0]["interface"], "eth1");
    assert_eq!(state["vfs"][0]["bdf"], IGBVF);
    assert_eq!(state["vfs"][0]["driver"], "igbvf");
    assert_eq!(state["noiommu_was"], false);
    assert_eq!(state["hugepages"]["was"], 0);
    assert_eq!(state["hugepages"]["set"], 64);

    // What the kernel does with those writes.
    guest.kernel_moves_eth1(Some(IGBVF));
    let out = guest.hvnet(None, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        format!("NetVSC {ETH1}  driver uio_hv_generic  interface eth1  MAC {ETH1_MAC}"),
        "  hvnet would: already on uio_hv_generic".to_string(),
        format!("  VF {IGBVF}  8086:10ca (igbvf)  driver vfio-pci  slot 7  interface -  MAC -"),
        "    hvnet would: already on vfio-pci (igbvf)".to_string(),
    ] {
        assert!(text.contains(&line), "{line:?} missing in:\n{text}");
    }
    // A second bind has nothing left to do but keeps the first record.
    let out = guest.hvnet(None, &["bind"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(echoes(&out).is_empty(), "{}", stdout(&out));

    let restore: [(&str, &str); 8] = [
        ("", "bus/pci/devices/1d7c:00:02.0/driver_override"),
        (IGBVF, "bus/pci/drivers/vfio-pci/unbind"),
        (IGBVF, "bus/pci/drivers_probe"),
        (ETH1, "bus/vmbus/drivers/uio_hv_generic/unbind"),
        (ETH1, "bus/vmbus/drivers/hv_netvsc/bind"),
        (CLASS, "bus/vmbus/drivers/uio_hv_generic/remove_id"),
        ("0", "module/vfio/parameters/enable_unsafe_noiommu_mode"),
        ("0", "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
    ];
    let bound = snapshot(&sys);
    let out = guest.hvnet(None, &["unbind", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(echoes(&out), expected(&sys, &restore));
    assert_eq!(snapshot(&sys), bound, "a dry run wrote something");
    assert!(guest.state().exists());

    let out = guest.hvnet(None, &["unbind"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(echoes(&out), expected(&sys, &restore));
    assert_eq!(changes(&bound, &snapshot(&sys)), written(&sys, &restore));
    assert!(
        !guest.state().exists(),
        "the state outlived a complete restore"
    );
    let out = guest.hvnet(None, &["unbind"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        stdout(&out).contains("nothing to restore"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_nic_carrying_the_default_route_is_refused_unless_forced() {
    let guest = Guest::on_prem("route");
    let before = snapshot(&guest.dir);
    let out = guest.hvnet(None, &["bind", "--instance", ETH0]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("refusing to bind; nothing was written")
            && err.contains(&format!(
                "NetVSC {ETH0} (eth0) is refused: carries the default route (on eth0)"
            ))
            && err.contains("--force"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    assert_eq!(snapshot(&guest.dir), before, "a refusal wrote something");

    let out = guest.hvnet(None, &["bind", "--instance", ETH0, "--force", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let sys = guest.sys();
    assert_eq!(
        echoes(&out),
        expected(
            &sys,
            &[
                ("64", "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
                (CLASS, "bus/vmbus/drivers/uio_hv_generic/new_id"),
                (ETH0, "bus/vmbus/drivers/hv_netvsc/unbind"),
                (ETH0, "bus/vmbus/drivers/uio_hv_generic/bind"),
            ]
        ),
        "eth0 has no VF; eth1 is not named"
    );
}

#[test]
fn the_nic_carrying_the_ssh_session_is_refused_unless_forced() {
    let guest = Guest::on_prem("ssh");
    let before = snapshot(&guest.dir);
    let ssh = Some("203.0.113.9 50022 10.0.1.4 22");
    let out = guest.hvnet(ssh, &["bind", "--instance", ETH1]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "NetVSC {ETH1} (eth1) is refused: carries the current SSH session from 203.0.113.9 (to 10.0.1.4 on eth1)"
        )),
        "{err}"
    );
    // Without --instance: eth0 has the default route, eth1 the session: nothing to take.
    let out = guest.hvnet(ssh, &["bind"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("every NetVSC is refused"),
        "{}",
        stderr(&out)
    );
    assert_eq!(snapshot(&guest.dir), before, "a refusal wrote something");
    // status says the same.
    let out = guest.hvnet(ssh, &["status"]);
    assert!(
        stdout(&out).contains(
            "  hvnet would: refuse: carries the current SSH session from 203.0.113.9 (to 10.0.1.4 on eth1) (use --force)"
        ),
        "{}",
        stdout(&out)
    );

    let out = guest.hvnet(ssh, &["bind", "--instance", ETH1, "--force", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(echoes(&out), expected(&guest.sys(), &ON_PREM_BIND));
}

#[test]
fn an_unreadable_route_table_refuses_rather_than_guesses() {
    let guest = Guest::on_prem("noproc");
    fs::remove_file(guest.proc().join("net/route")).unwrap();
    let out = guest.hvnet(None, &["bind", "--instance", ETH1]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot tell whether it carries the default route: cannot read"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn on_azure_the_mlx5_vf_is_left_on_its_driver_and_reported() {
    let guest = Guest::azure("azure");
    let sys = guest.sys();
    let before = snapshot(&sys);
    let nic_only: [(&str, &str); 4] = [
        ("64", "kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"),
        (CLASS, "bus/vmbus/drivers/uio_hv_generic/new_id"),
        (ETH1, "bus/vmbus/drivers/hv_netvsc/unbind"),
        (ETH1, "bus/vmbus/drivers/uio_hv_generic/bind"),
    ];
    let out = guest.hvnet(None, &["bind", "--dry-run"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        echoes(&out),
        expected(&sys, &nic_only),
        "no PCI write, no no-IOMMU"
    );
    assert!(
        stdout(&out).contains(&format!(
            "#   VF {MLX5_ETH1} 15b3:1016 slot 2: leave on mlx5_core: no hvnet driver; hvnet run uses it through the kernel (AF_XDP)"
        )),
        "{}",
        stdout(&out)
    );
    let out = guest.hvnet(None, &["bind"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(changes(&before, &snapshot(&sys)), written(&sys, &nic_only));
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(guest.state()).unwrap()).unwrap();
    assert_eq!(state["vfs"], serde_json::json!([]), "no VF was moved");
    assert_eq!(state["noiommu_was"], serde_json::Value::Null);
}

#[test]
fn status_on_azure_shows_every_nic_and_vf_and_what_bind_would_do() {
    let guest = Guest::azure("status");
    let before = snapshot(&guest.dir);
    let out = guest.hvnet(None, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for line in [
        "no IOMMU, VFIO no-IOMMU mode off; 2 MiB hugepages 0 reserved; uio_hv_generic loaded; vfio-pci loaded",
        &format!("NetVSC {ETH0}  driver hv_netvsc  interface eth0  MAC {ETH0_MAC}"),
        "  hvnet would: refuse: carries the default route (on eth0) (use --force)",
        &format!(
            "  VF {MLX5_ETH0}  15b3:1016  driver mlx5_core  slot 1  interface enP28497s1  MAC {ETH0_MAC}"
        ),
        "    hvnet would: leave on mlx5_core: no hvnet driver; hvnet run uses it through the kernel (AF_XDP)",
        &format!("NetVSC {ETH1}  driver hv_netvsc  interface eth1  MAC {ETH1_MAC}"),
        "  hvnet would: bind to uio_hv_generic",
        &format!(
            "  VF {MLX5_ETH1}  15b3:1016  driver mlx5_core  slot 2  interface enP35390s1  MAC {ETH1_MAC}"
        ),
    ] {
        assert!(text.contains(line), "{line:?} missing in:\n{text}");
    }
    let out = guest.hvnet(None, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["iommu"], false);
    assert_eq!(json["noiommu_mode"], false);
    assert_eq!(json["hugepages_2m"], 0);
    let eth1 = &json["netvscs"][1];
    assert_eq!(eth1["instance"], ETH1);
    assert_eq!(eth1["action"], "bind to uio_hv_generic");
    let vf = &eth1["vfs"][0];
    assert_eq!(vf["pci_address"], MLX5_ETH1);
    assert_eq!(vf["id"], "15b3:1016");
    assert_eq!(vf["hvnet_driver"], serde_json::Value::Null);
    assert_eq!(vf["driver"], "mlx5_core");
    assert_eq!(vf["serial"], 2);
    assert_eq!(vf["mac"], ETH1_MAC);
    assert_eq!(vf["found_by"], "mac");
    assert_eq!(
        vf["action"],
        "leave on mlx5_core: no hvnet driver; hvnet run uses it through the kernel (AF_XDP)"
    );
    assert!(
        json["netvscs"][0]["action"]
            .as_str()
            .unwrap()
            .starts_with("refuse: carries the default route")
    );
    assert_eq!(snapshot(&guest.dir), before, "status wrote something");
}

#[test]
fn a_missing_driver_is_named_with_the_modprobe_that_loads_it() {
    let guest = Guest::on_prem("modprobe");
    fs::remove_dir_all(guest.sys().join("bus/pci/drivers/vfio-pci")).unwrap();
    fs::remove_dir_all(guest.sys().join("bus/vmbus/drivers/uio_hv_generic")).unwrap();
    let before = snapshot(&guest.dir);
    let out = guest.hvnet(None, &["bind"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("run `modprobe uio_hv_generic`") && err.contains("run `modprobe vfio-pci`"),
        "{err}"
    );
    assert_eq!(snapshot(&guest.dir), before);
    let out = guest.hvnet(
        None,
        &["bind", "--instance", "0a2b4c6d-0000-4000-8000-000000000001"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains(&format!("NetVSCs found: {ETH0}, {ETH1}")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn each_help_says_what_it_writes_how_it_is_safe_and_shows_an_example() {
    for (command, words) in [
        (
            "bind",
            &[
                "uio_hv_generic/new_id",
                "driver_override",
                "8086:10ca",
                "default route",
                "SSH session",
                "--force",
                "--dry-run",
                "hvnet bind --instance",
            ][..],
        ),
        (
            "unbind",
            &[
                "remove_id",
                "drivers_probe",
                "--state",
                "hvnet unbind --dry-run",
            ],
        ),
        (
            "status",
            &[
                "Writes nothing",
                "through the kernel",
                "hvnet status --json",
            ],
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_hvnet"))
            .args([command, "--help"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = stdout(&out);
        for word in words {
            assert!(
                help.contains(word),
                "hvnet {command} --help lacks {word:?}:\n{help}"
            );
        }
    }
}
