//! `hvnet sim-host ctl`: scripting a served host from outside, over a unix socket at
//! `ROOT/ctl`.
//!
//! One connection, one command: a line of text in, a line of JSON out, saying what the host
//! did (`{"ok":true,"did":"…"}`, or `{"ok":false,"error":"…"}`). Commands:
//!
//! - `link up`, `link down`: the endpoint's link. A change is indicated to the client at
//!   once (RNDIS media connect or disconnect), the TAP port's carrier follows it, and the link
//!   query answers it from then on; the
//!   state it is in already is a toggle (the other state, then this one again after the link
//!   delay), as a real host does;
//! - `network-change`: an RNDIS network-change indication;
//! - `offer-vf SERIAL`, `remove-vf [--order association-first|eject-first]`,
//!   `surprise-remove`, `switch-synthetic`: the host's VF association and data-path messages,
//!   and with a VF port ([`vf_iface`](super::vf_iface)) the device itself: offered, it comes
//!   up; removed association-first (OpenVMM's order), the data path and the association go
//!   before the device; eject-first (Azure's), the device goes first (the host steers to
//!   synthetic at once) and the association after; a surprise removal kills the device and
//!   leaves the rest to a later `remove-vf`, as a host that has not noticed yet;
//! - `absent SECONDS [--order …]`: a servicing window, the offered VF removed as `remove-vf`
//!   does and offered again (device and association) SECONDS later;
//! - `fault NAME [VALUE]`: one of the host's faults ([`Fault`]), kebab-case;
//! - `stats`: the host's and the device node's counters.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::host::{Fault, SimHost};

use super::tap::TapPort;
use super::uio::UioNodeStats;
use super::vf_iface::VfIfacePort;

/// The host's ports a command may act on besides the host itself.
#[derive(Debug, Default)]
pub struct Ports {
    /// The VF's port (`--vf-iface`).
    pub vf: Option<Arc<VfIfacePort>>,
    /// The TAP port (`--tap`): its carrier follows the link.
    pub tap: Option<Arc<TapPort>>,
}

/// The longest command line.
const MAX_LINE: u64 = 256;
/// How long a connection may take to send its line or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a command may take the host thread to apply.
const SETTLE: Duration = Duration::from_secs(5);
/// How often the server looks at its socket and the stop flag.
const TICK: Duration = Duration::from_millis(10);

/// The served control socket; dropping it stops the server and removes the socket.
#[derive(Debug)]
pub struct CtlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CtlServer {
    /// Serves `host` at `path`; `node` reads the device node's counters.
    pub fn serve(
        path: &Path,
        host: Arc<SimHost>,
        ports: Ports,
        node: impl Fn() -> UioNodeStats + Send + 'static,
    ) -> io::Result<Self> {
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sim-ctl".into())
                .spawn(move || {
                    let mut state = State::default();
                    let ctx = Ctx {
                        host: &host,
                        vf: ports.vf.as_deref(),
                        tap: ports.tap.as_deref(),
                        node: &node,
                    };
                    while !stop.load(Ordering::Acquire) {
                        reoffer_due(&ctx, &mut state);
                        match listener.accept() {
                            Ok((stream, _)) => {
                                if let Err(e) = answer(stream, &ctx, &mut state) {
                                    tracing::warn!("sim-host ctl: {e}");
                                }
                            }
                            // Nothing waiting: the socket has no event to wait on with the
                            // stop flag, so the loop looks again a tick later.
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                std::thread::sleep(TICK)
                            }
                            Err(e) => {
                                tracing::warn!("sim-host ctl: accept failed: {e}");
                                std::thread::sleep(TICK);
                            }
                        }
                    }
                })?
        };
        Ok(Self {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for CtlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What the server remembers between commands.
#[derive(Debug)]
struct State {
    /// The link the client was last told.
    link_up: bool,
    /// The serial of the VF last offered and not removed since.
    offered: Option<u32>,
    /// A VF to offer again at a time (`absent`).
    reoffer: Option<(Instant, u32)>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            link_up: true,
            offered: None,
            reoffer: None,
        }
    }
}

/// The longest absence `absent` takes (a day).
const ABSENT_MAX: u32 = 86_400;

/// What a command acts on.
struct Ctx<'a, N: Fn() -> UioNodeStats> {
    /// The host.
    host: &'a SimHost,
    /// The VF's port, if the host has one.
    vf: Option<&'a VfIfacePort>,
    /// The TAP port, if the host has one.
    tap: Option<&'a TapPort>,
    /// Reads the device node's counters.
    node: &'a N,
}

/// Reads one command, runs it, writes the answer.
fn answer<N: Fn() -> UioNodeStats>(
    stream: UnixStream,
    ctx: &Ctx<'_, N>,
    state: &mut State,
) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut line = String::new();
    BufReader::new((&stream).take_limited(MAX_LINE)).read_line(&mut line)?;
    let reply = run(line.trim(), ctx, state);
    let mut out = serde_json::to_string(&reply).map_err(io::Error::other)?;
    out.push('\n');
    (&stream).write_all(out.as_bytes())
}

/// `Read::take` on a borrowed stream, named for what it is for.
trait TakeLimited: io::Read + Sized {
    fn take_limited(self, limit: u64) -> io::Take<Self> {
        self.take(limit)
    }
}

impl<R: io::Read> TakeLimited for R {}

/// Runs one command: the JSON answer.
fn run<N: Fn() -> UioNodeStats>(
    command: &str,
    ctx: &Ctx<'_, N>,
    state: &mut State,
) -> serde_json::Value {
    let link_up = &mut state.link_up;
    let host = ctx.host;
    let words: Vec<&str> = command.split_whitespace().collect();
    // Answered once the host thread applied the command: what the answer says is then true.
    let did = |what: String| {
        if host.settle(SETTLE) {
            serde_json::json!({ "ok": true, "did": what })
        } else {
            serde_json::json!({
                "ok": false,
                "error": format!("the host did not apply it within {SETTLE:?}: {what}"),
            })
        }
    };
    match words.as_slice() {
        ["link", state @ ("up" | "down")] => {
            let up = *state == "up";
            host.set_link(up);
            if up == *link_up {
                did(format!(
                    "link already {state}: toggled (the other state indicated now, {state} again \
                     after the link delay)"
                ))
            } else {
                *link_up = up;
                let carrier = match ctx.tap.map(|t| t.set_carrier(up).map(|()| t.name())) {
                    None => String::new(),
                    Some(Ok(name)) => format!("; {name}'s carrier {state}"),
                    Some(Err(e)) => format!("; the TAP's carrier unchanged ({e})"),
                };
                did(format!(
                    "link {state}: media {} indicated; the link query answers {state}{carrier}",
                    if up { "connect" } else { "disconnect" }
                ))
            }
        }
        ["network-change"] => {
            host.network_change();
            did("network change indicated".into())
        }
        ["offer-vf", serial] => match serial.parse::<u32>() {
            Ok(serial) => {
                let device = match ctx.vf.map(|vf| vf.plug().map(|()| vf.name())) {
                    None => "no VF device (the host has no VF port)".to_string(),
                    Some(Ok(name)) => format!("the VF device is up on {name}"),
                    Some(Err(e)) => return refuse(format!("offer-vf: plugging the VF in: {e}")),
                };
                host.offer_vf(serial);
                state.offered = Some(serial);
                state.reoffer = None;
                did(format!(
                    "VF {serial} associated (NVSP 128 {{1, {serial}}}) once the session allows \
                     it; {device}"
                ))
            }
            Err(_) => refuse(format!("offer-vf: {serial:?} is not a VF serial (a u32)")),
        },
        ["remove-vf"] | ["remove-vf", "--order", "association-first"] => {
            match remove(ctx, state, false) {
                Ok(what) => did(what.into()),
                Err(e) => refuse(e),
            }
        }
        ["remove-vf", "--order", "eject-first"] => match remove(ctx, state, true) {
            Ok(what) => did(what.into()),
            Err(e) => refuse(e),
        },
        ["absent", seconds, order @ ..] => {
            let eject_first = match order {
                [] | ["--order", "association-first"] => false,
                ["--order", "eject-first"] => true,
                _ => {
                    return refuse(format!(
                        "absent: {command:?}: the order is --order association-first or --order \
                         eject-first"
                    ));
                }
            };
            let Some(seconds) = seconds
                .parse::<u32>()
                .ok()
                .filter(|s| (1..=ABSENT_MAX).contains(s))
            else {
                return refuse(format!(
                    "absent: {seconds:?} is not a number of seconds (1 to {ABSENT_MAX})"
                ));
            };
            let Some(serial) = state.offered else {
                return refuse("absent: no VF is offered (offer-vf SERIAL first)".into());
            };
            match remove(ctx, state, eject_first) {
                Ok(what) => {
                    state.reoffer =
                        Some((Instant::now() + Duration::from_secs(seconds.into()), serial));
                    did(format!("{what}; VF {serial} offered again in {seconds} s"))
                }
                Err(e) => refuse(e),
            }
        }
        ["remove-vf", ..] => refuse(format!(
            "remove-vf: {command:?}: the order is --order association-first or --order eject-first"
        )),
        ["surprise-remove"] => match ctx.vf.map(VfIfacePort::fail) {
            None => refuse("surprise-remove: the host has no VF port (--vf-iface)".into()),
            Some(Err(e)) => refuse(format!("surprise-remove: {e}")),
            Some(Ok(())) => did(
                "the VF device died: its link is down and the host still steers to it (each \
                 frame counted as dropped) until remove-vf"
                    .into(),
            ),
        },
        ["switch-synthetic"] => {
            host.force_synthetic();
            did("the host switched the data path to synthetic (NVSP 129)".into())
        }
        ["fault", name, rest @ ..] => match fault(name, rest) {
            Ok(f) => {
                host.inject_fault(f);
                did(format!("fault {f:?} injected"))
            }
            Err(e) => refuse(e),
        },
        ["stats"] => serde_json::json!({
            "ok": true,
            "host": host.stats(),
            "node": (ctx.node)(),
            "vf_port": ctx.vf.map(VfIfacePort::stats),
            "tap": ctx.tap.map(TapPort::stats),
        }),
        _ => refuse(format!("unknown command {command:?}: {COMMANDS}")),
    }
}

/// The commands, for errors and help.
pub const COMMANDS: &str = "link up|down, network-change, offer-vf SERIAL, remove-vf [--order \
                            association-first|eject-first], absent SECONDS [--order …], \
                            surprise-remove, switch-synthetic, fault NAME [VALUE], stats";

/// Removes the VF in the order asked for: what the host did, or why it could not.
fn remove<N: Fn() -> UioNodeStats>(
    ctx: &Ctx<'_, N>,
    state: &mut State,
    eject_first: bool,
) -> Result<&'static str, String> {
    state.offered = None;
    state.reoffer = None;
    let unplug = || match ctx.vf.map(VfIfacePort::unplug) {
        Some(Err(e)) => Err(format!("remove-vf: unplugging the VF: {e}")),
        _ => Ok(()),
    };
    if eject_first {
        unplug()?;
        ctx.host.remove_vf();
        return Ok(
            "VF removed eject-first (Azure's order): the device (the host steers to synthetic \
             from then on), then data path to synthetic if it was the VF and NVSP 128 {0}",
        );
    }
    ctx.host.remove_vf();
    if !ctx.host.settle(SETTLE) {
        return Err(format!(
            "the host did not apply remove-vf within {SETTLE:?}"
        ));
    }
    unplug()?;
    Ok(
        "VF removed association-first (OpenVMM's order): data path to synthetic if it was the \
        VF, NVSP 128 {0}, then the device",
    )
}

/// Offers the VF an `absent` took away once its time has come.
fn reoffer_due<N: Fn() -> UioNodeStats>(ctx: &Ctx<'_, N>, state: &mut State) {
    let Some((at, serial)) = state.reoffer else {
        return;
    };
    if Instant::now() < at {
        return;
    }
    state.reoffer = None;
    if let Some(Err(e)) = ctx.vf.map(VfIfacePort::plug) {
        tracing::warn!("sim-host ctl: plugging the VF back in: {e}");
        return;
    }
    ctx.host.offer_vf(serial);
    state.offered = Some(serial);
    tracing::info!("sim-host ctl: VF {serial} offered again after its absence");
}

fn refuse(error: String) -> serde_json::Value {
    serde_json::json!({ "ok": false, "error": error })
}

/// The fault `name` (kebab-case), with its value where it takes one.
fn fault(name: &str, rest: &[&str]) -> Result<Fault, String> {
    let number = || -> Result<u32, String> {
        match rest {
            [n] => n
                .parse()
                .map_err(|_| format!("fault {name}: {n:?} is not a whole number")),
            _ => Err(format!("fault {name} takes one number")),
        }
    };
    let flag = || -> Result<bool, String> {
        match rest {
            ["on"] => Ok(true),
            ["off"] => Ok(false),
            _ => Err(format!("fault {name} takes on or off")),
        }
    };
    let none = |f: Fault| -> Result<Fault, String> {
        if rest.is_empty() {
            Ok(f)
        } else {
            Err(format!("fault {name} takes no value"))
        }
    };
    match name {
        "malformed-packet" => none(Fault::MalformedPacket),
        "bad-transfer-range" => none(Fault::BadTransferRange),
        "drop-completions" => Ok(Fault::DropCompletions(number()?)),
        "duplicate-completion" => none(Fault::DuplicateCompletion),
        "wrong-tid" => none(Fault::WrongTid),
        "revoke-receive-buffer" => none(Fault::RevokeReceiveBuffer),
        "stop-reading" => none(Fault::StopReading),
        "resume-reading" => none(Fault::ResumeReading),
        "dead-channel" => none(Fault::DeadChannel),
        "rescind" => none(Fault::Rescind),
        "refuse-versions-above" => Ok(Fault::RefuseVersionsAbove(number()?)),
        "ring-corruption" => none(Fault::RingCorruption),
        "refuse-vf-switch" => Ok(Fault::RefuseVfSwitch(flag()?)),
        _ => Err(format!(
            "no fault {name:?}: malformed-packet, bad-transfer-range, drop-completions N, \
             duplicate-completion, wrong-tid, revoke-receive-buffer, stop-reading, \
             resume-reading, dead-channel, rescind, refuse-versions-above VERSION, \
             ring-corruption, refuse-vf-switch on|off"
        )),
    }
}

/// Sends `command` to the host served under `root`: its answer (one JSON line).
pub fn send(root: &Path, command: &str) -> io::Result<String> {
    let path = root.join("ctl");
    let stream = UnixStream::connect(&path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "no sim-host serves {} ({}: {e})",
                root.display(),
                path.display()
            ),
        )
    })?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    (&stream).write_all(format!("{command}\n").as_bytes())?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer)?;
    Ok(answer.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_names_parse_and_bad_ones_say_why() {
        assert_eq!(fault("rescind", &[]), Ok(Fault::Rescind));
        assert_eq!(
            fault("drop-completions", &["3"]),
            Ok(Fault::DropCompletions(3))
        );
        assert_eq!(
            fault("refuse-vf-switch", &["on"]),
            Ok(Fault::RefuseVfSwitch(true))
        );
        assert!(fault("rescind", &["now"]).unwrap_err().contains("no value"));
        assert!(
            fault("drop-completions", &["x"])
                .unwrap_err()
                .contains("whole number")
        );
        assert!(
            fault("refuse-vf-switch", &[])
                .unwrap_err()
                .contains("on or off")
        );
        assert!(fault("melt", &[]).unwrap_err().contains("ring-corruption"));
    }

    /// Runs `f` on a host without a session or ports, as the server would.
    fn on_bare_host(f: impl FnOnce(&Ctx<'_, fn() -> UioNodeStats>, &mut State)) {
        let (host, _device) = SimHost::start(crate::host::HostConfig::default()).unwrap();
        let node: fn() -> UioNodeStats = UioNodeStats::default;
        let ctx = Ctx {
            host: &host,
            vf: None,
            tap: None,
            node: &node,
        };
        f(&ctx, &mut State::default());
    }

    #[test]
    fn vf_commands_without_a_vf_port_say_what_they_did_or_why_not() {
        on_bare_host(|ctx, state| {
            let mut ask = |command: &str| run(command, ctx, state);
            let offered = ask("offer-vf 7");
            assert_eq!(offered["ok"], true, "{offered}");
            assert!(offered["did"].as_str().unwrap().contains("no VF device"));
            for order in ["remove-vf", "remove-vf --order association-first"] {
                let answer = ask(order);
                assert!(
                    answer["did"]
                        .as_str()
                        .unwrap()
                        .contains("association-first")
                );
            }
            let eject = ask("remove-vf --order eject-first");
            assert!(eject["did"].as_str().unwrap().contains("eject-first"));
            let bad = ask("remove-vf --order sideways");
            assert_eq!(bad["ok"], false);
            assert!(
                bad["error"]
                    .as_str()
                    .unwrap()
                    .contains("--order eject-first")
            );
            let surprise = ask("surprise-remove");
            assert_eq!(surprise["ok"], false);
            assert!(surprise["error"].as_str().unwrap().contains("--vf-iface"));
            assert_eq!(ask("stats")["vf_port"], serde_json::Value::Null);
        });
    }

    #[test]
    fn absent_removes_the_offered_vf_and_offers_it_again_when_due() {
        on_bare_host(|ctx, state| {
            let refused = run("absent 5", ctx, state);
            assert!(
                refused["error"]
                    .as_str()
                    .unwrap()
                    .contains("no VF is offered")
            );
            assert_eq!(run("offer-vf 7", ctx, state)["ok"], true);
            for bad in [
                "absent 0",
                "absent 86401",
                "absent soon",
                "absent 5 --order sideways",
            ] {
                assert_eq!(run(bad, ctx, state)["ok"], false, "{bad}");
            }
            assert_eq!(state.offered, Some(7), "a refused absence removes nothing");
            let answer = run("absent 30 --order eject-first", ctx, state);
            let did = answer["did"].as_str().unwrap();
            assert!(
                did.contains("eject-first") && did.contains("again in 30 s"),
                "{did}"
            );
            assert_eq!(state.offered, None);
            let (at, serial) = state.reoffer.unwrap();
            assert_eq!(serial, 7);
            reoffer_due(ctx, state);
            assert!(state.reoffer.is_some(), "not before its time");
            state.reoffer = Some((at - Duration::from_secs(31), serial));
            reoffer_due(ctx, state);
            assert_eq!((state.offered, state.reoffer), (Some(7), None));
        });
    }
}
