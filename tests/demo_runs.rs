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
fn each_scenario_runs_and_duration_repeats_them_under_a_plain_live_line() {
    let demo = |args: &[&str]| -> String {
        let out = hvnet()
            .args(["demo", "--queues", "1", "--frames", "100"])
            .args(args)
            .output()
            .expect("running hvnet");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "hvnet demo {args:?} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let left = |out: &str, reason: &str| out.matches(&format!("left the VF ({reason})")).count();
    let flap = demo(&["--scenario", "flap"]);
    assert_eq!(left(&flap, "link_down"), 1, "{flap}");
    assert!(flap.contains("switches to the VF 2, back 2"), "{flap}");
    let servicing = demo(&["--scenario", "servicing"]);
    assert_eq!(left(&servicing, "release_requested"), 2, "{servicing}");
    // Repeated until the duration passed; the live line is plain text (not a terminal).
    let repeated = demo(&["--scenario", "planned", "--duration", "2"]);
    assert!(left(&repeated, "release_requested") >= 2, "{repeated}");
    assert!(
        repeated
            .lines()
            .any(|l| l.starts_with('[') && l.contains("switches to VF")),
        "{repeated}"
    );
    assert!(
        !repeated.contains('\x1b'),
        "escape sequences without a terminal"
    );
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
