//! `hvnet demo` as a user runs it: it must finish, say so, and fail loudly on bad options.

use std::process::Command;

fn hvnet() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hvnet"))
}

#[test]
fn the_demo_runs_both_parts_to_the_end() {
    let out = hvnet()
        .args(["demo", "--queues", "2", "--frames", "500"])
        .output()
        .expect("running hvnet");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hvnet demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "synthetic path finished",
        "left the VF (release_requested)",
        "left the VF (removed)",
        "failover finished: no frame reordered",
        "demo finished",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
}

#[test]
fn a_bad_option_is_refused_with_a_message() {
    let out = hvnet()
        .args(["demo", "--queues", "0"])
        .output()
        .expect("running hvnet");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--queues"), "{stderr}");
}
