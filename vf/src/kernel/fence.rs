//! Keeping the kernel's stack off the VF's frames.
//!
//! The kernel keeps the VF's netdev, so every frame it receives also goes up the kernel's
//! own stack — which, by the weak host model, accepts any frame addressed to any of the
//! host's addresses whatever interface it came in on. An appliance with an address on the
//! port's TAP device would then get each frame twice: once through hvnet, once straight
//! from the VF. The fence is an nftables `netdev` table with an ingress chain on the VF whose
//! policy is drop: packet sockets see a frame before the ingress hooks run, so hvnet still
//! gets it, and the stack never does. It is set up with `nft` (package nftables) and its
//! table deleted at release. (tc's `matchall` + `gact` would do as well, but kernels are
//! built without them more often than without nf_tables.)

use std::io::{self, Write};
use std::process::{Command, Stdio};

/// A fence raised on an interface: the name of its table.
#[derive(Debug)]
pub(super) struct Fence {
    table: String,
}

/// The table of the fence on the interface with index `index`.
fn table(index: u32) -> String {
    format!("hvnet_fence_{index}")
}

/// Runs `nft ARGS` with `script` on its input; its error output when it fails.
fn nft(args: &[&str], script: &str) -> io::Result<Result<(), String>> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "running nft (package nftables), which fences the kernel stack off the VF: {e}"
                ),
            )
        })?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(script.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(String::from_utf8_lossy(&out.stderr).trim().to_string()))
    }
}

/// Raises the fence on `ifname` (index `index`).
pub(super) fn raise(ifname: &str, index: u32) -> io::Result<Fence> {
    let table = table(index);
    // Before any other ingress chain (priority -500), and a table of its own so release
    // removes exactly what this added.
    let script = format!(
        "table netdev {table} {{\n  chain ingress {{\n    type filter hook ingress device \"{ifname}\" priority -500; policy drop;\n  }}\n}}\n"
    );
    match nft(&["-f", "-"], &script)? {
        Ok(()) => Ok(Fence { table }),
        Err(e) => Err(io::Error::other(format!(
            "nft: an ingress chain dropping every frame on {ifname} for the stack: {e}"
        ))),
    }
}

/// Takes the fence down (whether the interface is still there or not).
pub(super) fn lower(fence: Fence) {
    match nft(&["delete", "table", "netdev", &fence.table], "") {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(target: "hvnet::vf", table = fence.table, "nft delete table: {e}")
        }
        Err(e) => tracing::warn!(target: "hvnet::vf", table = fence.table, "{e}"),
    }
}

/// Whether the interface with index `index` has hvnet's fence now (for tests and `status`).
pub fn is_raised(index: u32) -> bool {
    Command::new("nft")
        .args(["list", "table", "netdev", &table(index)])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains("policy drop")
        })
}
