//! Tests over real interfaces without touching the machine's: a thread of its own in a new
//! network namespace (and a private mount namespace with the namespace's sysfs at `/sys`).
//!
//! [`in_new_namespace`] runs a test's body on a thread that first calls
//! `packet::netdev::enter_new_network_namespace`, which moves only that thread; every
//! process it starts (`ip link add …`) and every thread it spawns (a port's control thread,
//! a simulated host) are in the namespace too, and nothing else is. The mounts are made
//! private before sysfs is mounted over `/sys`, so the mount never propagates to the
//! machine's namespace (what `ip netns exec` does for a process). The namespace has no name
//! to delete: it goes away, with every interface in it, when the thread and what it started
//! are gone, even if the test panics or the process is killed. The thread is named after the
//! test and the process ID.
//!
//! Rule for tests that need this ([`runnable`]): root and the `ip` and `mount` tools. Off CI
//! a missing piece skips the test with a notice; in CI (`CI=true`) it fails the test.

use std::process::Command;

/// Whether a test that needs root, `ip` and `mount` can run here. Off CI a missing piece skips
/// the test with a notice; in CI it fails the test.
pub fn runnable(test: &str) -> bool {
    let on_path = |tool: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
    };
    let uid = Command::new("id").arg("-u").output();
    let root = uid.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let missing = if !root {
        Some("it needs root".to_string())
    } else {
        [("ip", "iproute2"), ("mount", "mount")]
            .iter()
            .find(|(tool, _)| !on_path(tool))
            .map(|(tool, package)| format!("{tool} is not installed (apt-get install {package})"))
    };
    let Some(why) = missing else {
        return true;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "the {test} test cannot run in CI: {why}"
    );
    eprintln!("NOTICE: skipping the {test} test: {why}");
    false
}

/// Runs `body` on a thread of its own in a new network namespace (see the module docs), with
/// the loopback interface up and the namespace's sysfs at `/sys`; its result, or its panic.
pub fn in_new_namespace<T: Send + 'static>(
    test: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> T {
    let name = format!("{test}-{}", std::process::id());
    let thread = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            packet::netdev::enter_new_network_namespace()
                .unwrap_or_else(|e| panic!("{name}: entering a new network namespace: {e}"));
            run("mount", &["--make-rprivate", "/"]);
            run("mount", &["-t", "sysfs", "sysfs", "/sys"]);
            ip(&["link", "set", "lo", "up"]);
            body()
        })
        .expect("spawning the namespace's thread");
    match thread.join() {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs `ip ARGS` (in the calling thread's namespace), failing the test with its error output
/// if it fails.
pub fn ip(args: &[&str]) {
    run("ip", args);
}

/// Runs `ip ARGS` and returns whether it succeeded (for commands a test expects may fail).
pub fn try_ip(args: &[&str]) -> bool {
    Command::new("ip")
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(tool: &str, args: &[&str]) {
    let output = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool} {args:?}: {e}"));
    assert!(
        output.status.success(),
        "{tool} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// Makes a veth pair `a`–`b`, `a` with MAC `mac`, both up.
pub fn veth(a: &str, b: &str, mac: packet::MacAddr) {
    ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
    ip(&["link", "set", a, "address", &mac.to_string()]);
    ip(&["link", "set", a, "up"]);
    ip(&["link", "set", b, "up"]);
}
