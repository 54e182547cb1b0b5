//! `hvnet bench` as a user runs it: every row of its report, with positive rates and no
//! frame lost to a failover, and instructions per packet through the hidden worker under
//! valgrind. Only the structure and the accounting are asserted, never speed (the machine may
//! be loaded).

mod common;

use std::process::{Command, Output};

fn hvnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hvnet"))
        .args(args)
        .env_remove("HVNET_LOG")
        .output()
        .expect("running hvnet")
}

/// stdout of a run that must succeed.
fn succeeds(args: &[&str]) -> String {
    let out = hvnet(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "hvnet {args:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The table row that starts with `words` (whitespace-separated) followed by a number, split
/// into its fields.
fn row<'a>(stdout: &'a str, words: &[&str]) -> Vec<&'a str> {
    stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| {
            f.len() > words.len()
                && f[..words.len()] == *words
                && f[words.len()].parse::<f64>().is_ok()
        })
        .unwrap_or_else(|| panic!("no row {words:?} in:\n{stdout}"))
}

fn number(field: &str, stdout: &str) -> f64 {
    field
        .parse()
        .unwrap_or_else(|_| panic!("{field:?} is not a number in:\n{stdout}"))
}

#[test]
fn the_short_bench_prints_every_row_with_positive_rates_and_no_loss() {
    let frames = 2000;
    let stdout = succeeds(&[
        "bench",
        "--frames",
        &frames.to_string(),
        "--cycles",
        "2",
        "--no-ipp",
    ]);
    for path in ["synthetic", "vf"] {
        for dir in ["tx", "rx"] {
            for bytes in ["64", "1500"] {
                // path dir bytes Mpps baseline ratio dropped
                let f = row(&stdout, &[path, dir, bytes]);
                assert_eq!(f.len(), 7, "{f:?}");
                for value in &f[3..6] {
                    assert!(number(value, &stdout) > 0.0, "{f:?}:\n{stdout}");
                }
                let dropped = number(f[6], &stdout);
                assert!(
                    dropped >= 0.0 && dropped <= frames as f64,
                    "{f:?}:\n{stdout}"
                );
            }
        }
    }
    for switch in ["failover", "complete", "failback"] {
        // switch n median ms max ms …
        let f = row(&stdout, &[switch]);
        assert!(number(f[1], &stdout) >= 2.0, "{f:?}:\n{stdout}");
        assert!(number(f[2], &stdout) > 0.0, "{f:?}:\n{stdout}");
        assert!(
            number(f[4], &stdout) >= number(f[2], &stdout),
            "{f:?}:\n{stdout}"
        );
    }
    assert!(
        stdout.contains("lost to the failover 0 (must be 0)") && stdout.contains("in no count: 0"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("instructions per packet"),
        "--no-ipp still counted:\n{stdout}"
    );
}

#[test]
fn instructions_per_packet_are_counted_under_valgrind() {
    if !common::tool_available("instructions-per-packet bench", "valgrind", "valgrind") {
        return;
    }
    let frames = 64;
    let stdout = succeeds(&[
        "bench",
        "--only",
        "ipp",
        "--ipp-frames",
        &frames.to_string(),
    ]);
    for path in ["synthetic", "vf", "failover", "failback"] {
        for dir in ["tx", "rx"] {
            for bytes in ["64", "1500"] {
                // path dir bytes packets instructions per-packet [vs]
                let f = row(&stdout, &[path, dir, bytes]);
                assert_eq!(number(f[3], &stdout), frames as f64, "{f:?}");
                let instructions = number(f[4], &stdout);
                let per_packet = number(f[5], &stdout);
                assert!(per_packet > 0.0, "{f:?}:\n{stdout}");
                assert!(
                    (instructions / frames as f64 - per_packet).abs() < 0.1,
                    "{f:?}:\n{stdout}"
                );
                if path.starts_with("fail") {
                    assert!(f.len() == 7 && f[6].starts_with("vf"), "{f:?}");
                }
            }
        }
    }
}

#[test]
fn bad_bench_arguments_are_refused_with_what_is_accepted() {
    for (args, words) in [
        (
            &["bench", "--frames", "0"][..],
            &["invalid value '0' for '--frames <N>'", "1000..=100000000"][..],
        ),
        (&["bench", "--cycles", "-1"], &["-1 is not in 1..=10000"]),
        (
            &["bench", "--only", "ipp", "--no-ipp"],
            &["cannot be used with"],
        ),
        (
            &["bench", "--only", "speed"],
            &["possible values: pps, failover, ipp"],
        ),
        (
            &["bench-worker", "ipp", "nowhere", "tx", "64", "10"],
            &["expected synthetic, vf, failover or failback"],
        ),
        (
            &["bench-worker", "ipp", "vf", "up", "64", "10"],
            &["expected tx or rx"],
        ),
        (
            &["bench-worker", "ipp", "vf", "tx", "59", "10"],
            &["60..=1514"],
        ),
    ] {
        let out = hvnet(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "hvnet {args:?}:\n{stderr}");
        for w in words {
            assert!(
                stderr.contains(w),
                "hvnet {args:?}: {w:?} missing in:\n{stderr}"
            );
        }
    }
}

#[test]
fn the_help_says_what_each_row_and_baseline_means() {
    let help = succeeds(&["bench", "--help"]);
    for words in [
        "same run",
        "SPSC queue",
        "failback",
        "lost to the failover must be 0",
        "valgrind",
        "Seconds vary",
        "Instruction counts do not vary",
        "--full",
    ] {
        assert!(help.contains(words), "{words:?} missing in:\n{help}");
    }
    let top = succeeds(&["--help"]);
    assert!(
        !top.contains("bench-worker"),
        "the worker is not hidden:\n{top}"
    );
}
