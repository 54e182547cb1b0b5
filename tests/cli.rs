//! The `hvnet` command line as a user meets it: exit codes and what stderr says for bad
//! arguments and for a machine that is not set up.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn hvnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hvnet"))
        .args(args)
        .env_remove("HVNET_LOG")
        .output()
        .expect("running hvnet")
}

/// Asserts that `args` exit with `code` and that stderr holds every one of `words`.
fn assert_fails(args: &[&str], code: i32, words: &[&str]) -> String {
    let out = hvnet(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "hvnet {args:?}:\n{stderr}");
    for w in words {
        assert!(
            stderr.contains(w),
            "hvnet {args:?}: {w:?} missing in:\n{stderr}"
        );
    }
    stderr
}

#[test]
fn a_bad_log_level_before_the_subcommand_is_reported_instead_of_help() {
    let out = hvnet(&["--log", "loud", "demo", "--help"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "help was printed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid value 'loud' for '--log <LEVEL>'")
            && stderr.contains("[possible values: off, error, warn, info, debug, trace]"),
        "{stderr}"
    );
    // A good level does not stop help.
    let out = hvnet(&["--log", "debug", "demo", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: hvnet demo"));
}

#[test]
fn a_negative_number_is_an_invalid_value_with_its_range() {
    assert_fails(
        &["probe", "--timeout", "-1"],
        2,
        &["invalid value '-1' for '--timeout <SECONDS>': -1 is not in 1..=3600"],
    );
    let stderr = assert_fails(
        &["demo", "--frames", "-5"],
        2,
        &["invalid value '-5' for '--frames <FRAMES>': -5 is not in 0..=1000000"],
    );
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
}

#[test]
fn a_bad_instance_guid_names_the_accepted_form() {
    assert_fails(
        &["probe", "--instance", "not-a-guid"],
        2,
        &[
            "invalid value 'not-a-guid' for '--instance <GUID>'",
            "32 hex digits grouped 8-4-4-4-12",
        ],
    );
}

/// A guest's sysfs tree in a fresh directory, removed on drop.
struct FakeSysfs(PathBuf);

impl FakeSysfs {
    /// A NetVSC bound to `uio_hv_generic` as `uio`, with its five maps.
    fn with_bound_nic(name: &str, instance: &str, uio: &str) -> Self {
        let root = std::env::temp_dir().join(format!("hvnet-cli-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let write = |path: PathBuf, text: &str| {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        };
        let device = root.join("bus/vmbus/devices").join(instance);
        write(
            device.join("class_id"),
            "{f8615163-df3e-46c5-913f-f2d2f965ed0e}\n",
        );
        write(device.join("device_id"), &format!("{{{instance}}}\n"));
        write(device.join("id"), "14\n");
        fs::create_dir_all(device.join("uio").join(uio)).unwrap();
        let maps = [
            ("txrx_rings", 0x40_0000),
            ("int_page", 0x1000),
            ("monitor_page", 0x1000),
            ("recv:1", 0x1f0_0000),
            ("send:2", 0x100_0000),
        ];
        for (k, (name, size)) in maps.iter().enumerate() {
            let map = root.join(format!("class/uio/{uio}/maps/map{k}"));
            write(map.join("name"), &format!("{name}\n"));
            write(map.join("size"), &format!("{size:#x}\n"));
            write(map.join("offset"), "0x0\n");
            write(map.join("addr"), "0x0\n");
        }
        Self(root)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for FakeSysfs {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_missing_device_node_says_to_bind_uio_hv_generic() {
    const INSTANCE: &str = "ed963694-e847-4b2a-85af-bc9cfc11d6f3";
    // No guest has this many uio devices: /dev/uio987654 does not exist.
    let sysfs = FakeSysfs::with_bound_nic("missing-node", INSTANCE, "uio987654");
    let root = sysfs.path().to_str().unwrap();
    assert_fails(
        &["probe", "--sysfs-root", root],
        1,
        &[
            "opening the NetVSC through uio_hv_generic",
            "/dev/uio987654",
            "device node is missing",
            "must be bound to uio_hv_generic",
            "docs/deploy.md",
            INSTANCE,
        ],
    );
    // Asked for by another instance: not found, naming the instance.
    assert_fails(
        &[
            "probe",
            "--sysfs-root",
            root,
            "--instance",
            "{0A2B4C6D-0000-4000-8000-000000000001}",
        ],
        1,
        &["instance 0a2b4c6d-0000-4000-8000-000000000001"],
    );
}
