//! What the kernel says about routes, addresses and the SSH session, for the safety check of
//! `hvnet bind`: a NetVSC whose interface carries the default route or the current SSH session
//! is refused unless `--force`.
//!
//! Sources, all under a root the tests replace (`--proc-root`, default `/proc`) except one:
//! - the default routes: `net/route` (IPv4) and `net/ipv6_route` (IPv6), the kernel's main
//!   routing table as text ([`parse_route`], [`parse_ipv6_route`]);
//! - the SSH session: `SSH_CONNECTION` (`client port server port`) in this process's
//!   environment or, because `sudo` drops it, in an ancestor's (`<pid>/stat` for the parent,
//!   `<pid>/environ`), up to [`MAX_ANCESTORS`] levels;
//! - which interface holds the session's server address: `ip -j address show` (iproute2's
//!   JSON), run through `PATH`, since the kernel lists IPv4 addresses in no procfs file
//!   ([`parse_ip_addresses`]). It is only run when there is an SSH session.
//!
//! Anything that cannot be read is an error the plan turns into a refusal ("cannot tell"), so
//! a guest whose facts are unreadable is not bound without `--force`.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// How far up the process tree `SSH_CONNECTION` is looked for.
pub const MAX_ANCESTORS: usize = 32;

/// `RTF_UP`: the route is usable.
const RTF_UP: u32 = 0x0001;
/// `RTF_REJECT`: an unreachable/prohibit route (IPv6 lists an unreachable default on `lo`).
const RTF_REJECT: u32 = 0x0200;

/// A line of a procfs routing table that is not what the kernel writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// One IPv4 route of `/proc/net/route`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route4 {
    /// The interface.
    pub interface: String,
    /// The destination network.
    pub destination: Ipv4Addr,
    /// The gateway (`0.0.0.0`: on link).
    pub gateway: Ipv4Addr,
    /// `RTF_*` flags.
    pub flags: u32,
    /// The metric.
    pub metric: u32,
    /// The destination's netmask.
    pub mask: Ipv4Addr,
}

/// One IPv6 route of `/proc/net/ipv6_route`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route6 {
    /// The interface.
    pub interface: String,
    /// The destination network.
    pub destination: Ipv6Addr,
    /// Its prefix length.
    pub prefix_len: u8,
    /// The next hop (`::`: on link).
    pub next_hop: Ipv6Addr,
    /// The metric.
    pub metric: u32,
    /// `RTF_*` flags.
    pub flags: u32,
}

fn hex_u32(text: &str, line: usize, what: &str) -> Result<u32, ParseError> {
    if text.is_empty() || text.len() > 8 {
        return Err(ParseError {
            line,
            reason: format!("{what}: expected up to 8 hex digits, found {text:?}"),
        });
    }
    u32::from_str_radix(text, 16).map_err(|_| ParseError {
        line,
        reason: format!("{what}: not hex: {text:?}"),
    })
}

fn dec_u32(text: &str, line: usize, what: &str) -> Result<u32, ParseError> {
    text.parse().map_err(|_| ParseError {
        line,
        reason: format!("{what}: not a decimal number: {text:?}"),
    })
}

/// An IPv4 address as `/proc/net/route` prints it: the network-order word read as a host
/// integer, in hex (`0100000A` is 10.0.0.1 on a little-endian machine).
fn route_addr(text: &str, line: usize, what: &str) -> Result<Ipv4Addr, ParseError> {
    if text.len() != 8 {
        return Err(ParseError {
            line,
            reason: format!("{what}: expected 8 hex digits, found {text:?}"),
        });
    }
    Ok(Ipv4Addr::from(hex_u32(text, line, what)?.to_ne_bytes()))
}

fn interface_name(text: &str, line: usize) -> Result<String, ParseError> {
    // IFNAMSIZ is 16 with the terminating NUL.
    if text.is_empty() || text.len() > 15 || text.contains('/') {
        return Err(ParseError {
            line,
            reason: format!("not an interface name: {text:?}"),
        });
    }
    Ok(text.to_owned())
}

/// Parses `/proc/net/route`: a header line (`Iface Destination Gateway Flags RefCnt Use
/// Metric Mask MTU Window IRTT`), then one route per line, fields separated by white space.
pub fn parse_route(text: &str) -> Result<Vec<Route4>, ParseError> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.split_whitespace().next() == Some("Iface") => {}
        _ => {
            return Err(ParseError {
                line: 1,
                reason: "expected the header line starting with \"Iface\"".into(),
            });
        }
    }
    let mut routes = Vec::new();
    for (index, text) in lines {
        let line = index + 1;
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 11 {
            return Err(ParseError {
                line,
                reason: format!("expected 11 fields, found {}", fields.len()),
            });
        }
        routes.push(Route4 {
            interface: interface_name(fields[0], line)?,
            destination: route_addr(fields[1], line, "destination")?,
            gateway: route_addr(fields[2], line, "gateway")?,
            flags: hex_u32(fields[3], line, "flags")?,
            metric: dec_u32(fields[6], line, "metric")?,
            mask: route_addr(fields[7], line, "mask")?,
        });
    }
    Ok(routes)
}

fn ipv6_hex(text: &str, line: usize, what: &str) -> Result<Ipv6Addr, ParseError> {
    if text.len() != 32 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ParseError {
            line,
            reason: format!("{what}: expected 32 hex digits, found {text:?}"),
        });
    }
    let value = u128::from_str_radix(text, 16).map_err(|_| ParseError {
        line,
        reason: format!("{what}: not hex: {text:?}"),
    })?;
    Ok(Ipv6Addr::from(value))
}

/// Parses `/proc/net/ipv6_route`: one route per line, no header: destination, its prefix
/// length (hex), source, its prefix length, next hop, metric, reference count, use count,
/// flags (all hex) and the interface.
pub fn parse_ipv6_route(text: &str) -> Result<Vec<Route6>, ParseError> {
    let mut routes = Vec::new();
    for (index, text) in text.lines().enumerate() {
        let line = index + 1;
        if text.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() != 10 {
            return Err(ParseError {
                line,
                reason: format!("expected 10 fields, found {}", fields.len()),
            });
        }
        let prefix_len = hex_u32(fields[1], line, "prefix length")?;
        if prefix_len > 128 {
            return Err(ParseError {
                line,
                reason: format!("prefix length {prefix_len} is over 128"),
            });
        }
        routes.push(Route6 {
            destination: ipv6_hex(fields[0], line, "destination")?,
            prefix_len: prefix_len as u8,
            next_hop: ipv6_hex(fields[4], line, "next hop")?,
            metric: hex_u32(fields[5], line, "metric")?,
            flags: hex_u32(fields[8], line, "flags")?,
            interface: interface_name(fields[9], line)?,
        });
    }
    Ok(routes)
}

/// The interfaces that carry a default route (IPv4 `0.0.0.0/0` or IPv6 `::/0`, up, not a
/// reject route, not on `lo`).
pub fn default_route_interfaces(v4: &[Route4], v6: &[Route6]) -> BTreeSet<String> {
    let usable = |flags: u32, interface: &str| {
        flags & RTF_UP != 0 && flags & RTF_REJECT == 0 && interface != "lo"
    };
    let v4 = v4
        .iter()
        .filter(|r| r.destination.is_unspecified() && r.mask.is_unspecified())
        .filter(|r| usable(r.flags, &r.interface))
        .map(|r| r.interface.clone());
    let v6 = v6
        .iter()
        .filter(|r| r.destination.is_unspecified() && r.prefix_len == 0)
        .filter(|r| usable(r.flags, &r.interface))
        .map(|r| r.interface.clone());
    v4.chain(v6).collect()
}

/// One address of an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfAddr {
    /// The interface.
    pub interface: String,
    /// The address.
    pub address: IpAddr,
}

#[derive(serde::Deserialize)]
struct IpLink {
    ifname: String,
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(serde::Deserialize)]
struct IpAddrInfo {
    #[serde(default)]
    local: Option<String>,
}

/// Parses `ip -j address show`: an array of interfaces, each with `ifname` and `addr_info`
/// entries whose `local` is the address. Entries without a parsable `local` are skipped.
pub fn parse_ip_addresses(json: &str) -> Result<Vec<IfAddr>, serde_json::Error> {
    let links: Vec<IpLink> = serde_json::from_str(json)?;
    Ok(links
        .into_iter()
        .flat_map(|link| {
            let interface = link.ifname;
            link.addr_info
                .into_iter()
                .filter_map(|info| parse_ip(info.local.as_deref()?))
                .map(move |address| IfAddr {
                    interface: interface.clone(),
                    address,
                })
        })
        .collect())
}

/// An address as sshd or iproute2 print it: a zone (`fe80::1%eth0`) is dropped and an
/// IPv4-mapped IPv6 address (`::ffff:10.0.0.4`) is taken as the IPv4 address.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let bare = text.split('%').next()?;
    match bare.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// An SSH session as `SSH_CONNECTION` describes it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SshSession {
    /// The client's address.
    pub client: IpAddr,
    /// The address of this machine the client connected to.
    pub server: IpAddr,
}

/// Parses `SSH_CONNECTION` (`client_ip client_port server_ip server_port`).
pub fn parse_ssh_connection(value: &str) -> Option<SshSession> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [client, client_port, server, server_port] = fields[..] else {
        return None;
    };
    client_port.parse::<u16>().ok()?;
    server_port.parse::<u16>().ok()?;
    Some(SshSession {
        client: parse_ip(client)?,
        server: parse_ip(server)?,
    })
}

/// The parent pid in a `/proc/<pid>/stat` line (`pid (comm) state ppid …`; the command name
/// may hold spaces and parentheses, so fields are counted after the last `)`).
pub fn parent_pid(stat: &str) -> Option<u32> {
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    fields.next()?; // state
    fields.next()?.parse().ok()
}

/// The value of `name` in a `/proc/<pid>/environ` (NUL-separated `NAME=value` entries).
pub fn environ_var(environ: &[u8], name: &str) -> Option<String> {
    environ.split(|&b| b == 0).find_map(|entry| {
        let entry = std::str::from_utf8(entry).ok()?;
        let (key, value) = entry.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// The SSH sessions this command runs in: its own `SSH_CONNECTION`, then its ancestors'
/// (read under `proc_root`), deduplicated.
pub fn ssh_sessions(proc_root: &Path) -> Vec<SshSession> {
    let mut values: Vec<String> = std::env::var("SSH_CONNECTION").into_iter().collect();
    let mut pid = "self".to_owned();
    for _ in 0..MAX_ANCESTORS {
        let Some(parent) = std::fs::read_to_string(proc_root.join(&pid).join("stat"))
            .ok()
            .as_deref()
            .and_then(parent_pid)
        else {
            break;
        };
        if parent <= 1 {
            break;
        }
        pid = parent.to_string();
        if let Ok(environ) = std::fs::read(proc_root.join(&pid).join("environ"))
            && let Some(value) = environ_var(&environ, "SSH_CONNECTION")
        {
            values.push(value);
        }
    }
    let mut sessions: Vec<SshSession> = values
        .iter()
        .filter_map(|v| parse_ssh_connection(v))
        .collect();
    sessions.sort();
    sessions.dedup();
    sessions
}

/// The interfaces holding `address` among `addresses`.
pub fn interfaces_with(addresses: &[IfAddr], address: IpAddr) -> BTreeSet<String> {
    addresses
        .iter()
        .filter(|a| a.address == address)
        .map(|a| a.interface.clone())
        .collect()
}

/// The facts the safety check needs, each read once; an error is kept as text and turns
/// into a refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Facts {
    /// Interfaces carrying a default route.
    pub default_route: Result<BTreeSet<String>, String>,
    /// The SSH sessions this command runs in, each with the interfaces holding its server
    /// address.
    pub ssh: Result<Vec<(SshSession, BTreeSet<String>)>, String>,
}

impl Facts {
    /// No default route and no SSH session (what `--force` makes of any guest).
    pub fn none() -> Self {
        Self {
            default_route: Ok(BTreeSet::new()),
            ssh: Ok(Vec::new()),
        }
    }
}

fn read_default_routes(proc_root: &Path) -> Result<BTreeSet<String>, String> {
    let v4_path = proc_root.join("net/route");
    let v4 = std::fs::read_to_string(&v4_path)
        .map_err(|e| format!("cannot read {}: {e}", v4_path.display()))
        .and_then(|text| parse_route(&text).map_err(|e| format!("{}: {e}", v4_path.display())))?;
    let v6_path = proc_root.join("net/ipv6_route");
    let v6 = match std::fs::read_to_string(&v6_path) {
        Ok(text) => parse_ipv6_route(&text).map_err(|e| format!("{}: {e}", v6_path.display()))?,
        // IPv6 disabled: no table, no IPv6 default route.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", v6_path.display())),
    };
    Ok(default_route_interfaces(&v4, &v6))
}

/// Runs `ip -j address show` and parses its output.
fn read_addresses() -> Result<Vec<IfAddr>, String> {
    let what = "`ip -j address show`";
    let output = std::process::Command::new("ip")
        .args(["-j", "address", "show"])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {what} (iproute2): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8(output.stdout).map_err(|_| format!("{what}: not UTF-8"))?;
    parse_ip_addresses(&text).map_err(|e| format!("{what}: {e}"))
}

/// Reads the facts from the running system (`proc_root` is `/proc` outside tests).
pub fn read_facts(proc_root: &Path) -> Facts {
    let sessions = ssh_sessions(proc_root);
    let ssh = if sessions.is_empty() {
        Ok(Vec::new())
    } else {
        read_addresses().map(|addresses| {
            sessions
                .into_iter()
                .map(|s| {
                    let interfaces = interfaces_with(&addresses, s.server);
                    (s, interfaces)
                })
                .collect()
        })
    };
    Facts {
        default_route: read_default_routes(proc_root),
        ssh,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ROUTE_HEADER: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT";

    /// A line as the kernel prints it (`%s\t%08X\t%08X\t%04X\t%d\t%u\t%d\t%08X\t%d\t%u\t%u`).
    fn route_line(r: &Route4) -> String {
        let word = |a: Ipv4Addr| u32::from_ne_bytes(a.octets());
        format!(
            "{}\t{:08X}\t{:08X}\t{:04X}\t0\t0\t{}\t{:08X}\t0\t0\t0",
            r.interface,
            word(r.destination),
            word(r.gateway),
            r.flags,
            r.metric,
            word(r.mask)
        )
    }

    fn route6_line(r: &Route6) -> String {
        format!(
            "{:032x} {:02x} {:032x} 00 {:032x} {:08x} 00000001 00000000 {:08x} {:>8}",
            u128::from(r.destination),
            r.prefix_len,
            0u128,
            u128::from(r.next_hop),
            r.metric,
            r.flags,
            r.interface
        )
    }

    #[test]
    fn an_azure_route_table_has_its_default_route_on_eth0() {
        let v4 = parse_route(&format!(
            "{ROUTE_HEADER}\n\
             eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             eth0\t0000000A\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n\
             eth1\t0001000A\t00000000\t0001\t0\t0\t101\t00FFFFFF\t0\t0\t0\n"
        ))
        .unwrap();
        assert_eq!(v4.len(), 3);
        if cfg!(target_endian = "little") {
            assert_eq!(v4[0].gateway, Ipv4Addr::new(10, 0, 0, 1));
            assert_eq!(v4[1].mask, Ipv4Addr::new(255, 255, 255, 0));
        }
        let v6 = parse_ipv6_route(
            "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 \
             00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth1\n\
             00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
             00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n",
        )
        .unwrap();
        assert_eq!(v6[0].prefix_len, 64);
        assert_eq!(
            default_route_interfaces(&v4, &v6),
            BTreeSet::from(["eth0".to_string()]),
            "the unreachable IPv6 default on lo is not a default route"
        );
        let v6_default = parse_ipv6_route(
            "00000000000000000000000000000000 00 00000000000000000000000000000000 00 \
             fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth1\n",
        )
        .unwrap();
        assert_eq!(
            default_route_interfaces(&[], &v6_default),
            BTreeSet::from(["eth1".to_string()])
        );
    }

    #[test]
    fn garbled_route_tables_are_errors_naming_the_line() {
        assert_eq!(parse_route("").unwrap_err().line, 1);
        assert_eq!(parse_route("eth0 00000000").unwrap_err().line, 1);
        let err = parse_route(&format!(
            "{ROUTE_HEADER}\neth0\t0000000G\t0\t1\t0\t0\t0\t0\t0\t0\t0\n"
        ))
        .unwrap_err();
        assert_eq!(err.line, 2, "{err}");
        let err = parse_ipv6_route("00 00\n").unwrap_err();
        assert!(err.reason.contains("10 fields"), "{err}");
        let too_long = format!(
            "{:032x} 81 {:032x} 00 {:032x} 0 0 0 1 eth0",
            0u128, 0u128, 0u128
        );
        assert!(parse_ipv6_route(&too_long).is_err(), "prefix length 0x81");
    }

    #[test]
    fn ip_json_addresses_are_read_per_interface() {
        let json = r#"[
          {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP"],"addr_info":[
            {"family":"inet","local":"127.0.0.1","prefixlen":8,"scope":"host"},
            {"family":"inet6","local":"::1","prefixlen":128}]},
          {"ifindex":2,"ifname":"eth0","addr_info":[
            {"family":"inet","local":"10.0.0.4","prefixlen":24,"broadcast":"10.0.0.255"},
            {"family":"inet6","local":"fe80::215:5dff:fe01:203","prefixlen":64,"scope":"link"}]},
          {"ifindex":3,"ifname":"eth1","addr_info":[]},
          {"ifindex":4,"ifname":"enP7424s1"}
        ]"#;
        let addresses = parse_ip_addresses(json).unwrap();
        assert_eq!(addresses.len(), 4);
        assert_eq!(
            interfaces_with(&addresses, "10.0.0.4".parse().unwrap()),
            BTreeSet::from(["eth0".to_string()])
        );
        assert!(interfaces_with(&addresses, "10.0.1.4".parse().unwrap()).is_empty());
        assert!(parse_ip_addresses("{}").is_err());
    }

    #[test]
    fn ssh_connection_and_proc_entries_are_parsed() {
        assert_eq!(
            parse_ssh_connection("203.0.113.9 50022 10.0.0.4 22"),
            Some(SshSession {
                client: "203.0.113.9".parse().unwrap(),
                server: "10.0.0.4".parse().unwrap(),
            })
        );
        assert_eq!(
            parse_ssh_connection("2001:db8::9 50022 ::ffff:10.0.0.4 22")
                .unwrap()
                .server,
            "10.0.0.4".parse::<IpAddr>().unwrap(),
            "an IPv4-mapped server address is its IPv4 address"
        );
        assert_eq!(parse_ip("fe80::1%eth0"), Some("fe80::1".parse().unwrap()));
        for bad in ["", "1.2.3.4 22 5.6.7.8", "a b c d", "1.2.3.4 x 5.6.7.8 22"] {
            assert_eq!(parse_ssh_connection(bad), None, "{bad:?}");
        }
        assert_eq!(
            parent_pid("1234 (sshd: a (b)) S 987 1234 1234 0"),
            Some(987)
        );
        assert_eq!(parent_pid("1234 (bash) S"), None);
        let environ = b"HOME=/root\0SSH_CONNECTION=1.2.3.4 5 6.7.8.9 22\0TERM=xterm\0";
        assert_eq!(
            environ_var(environ, "SSH_CONNECTION").as_deref(),
            Some("1.2.3.4 5 6.7.8.9 22")
        );
        assert_eq!(environ_var(environ, "SSH_CLIENT"), None);
    }

    #[test]
    fn ancestors_environments_are_searched_for_the_ssh_session() {
        let proc = tempfile::tempdir().unwrap();
        let at = |pid: &str, stat: &str, environ: &[u8]| {
            let dir = proc.path().join(pid);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("stat"), stat).unwrap();
            std::fs::write(dir.join("environ"), environ).unwrap();
        };
        // hvnet (self) ← sudo (200, no SSH_CONNECTION) ← bash (100, in the session) ← 1.
        at("self", "300 (hvnet) R 200 300 100 0", b"");
        at("200", "200 (sudo) S 100 200 100 0", b"PATH=/usr/bin\0");
        at(
            "100",
            "100 (bash) S 1 100 100 0",
            b"SSH_CONNECTION=198.51.100.7 40000 10.0.0.4 22\0",
        );
        let sessions = ssh_sessions(proc.path());
        let expected = SshSession {
            client: "198.51.100.7".parse().unwrap(),
            server: "10.0.0.4".parse().unwrap(),
        };
        assert!(sessions.contains(&expected), "{sessions:?}");
        // A loop in the tree ends at MAX_ANCESTORS instead of spinning.
        at("self", "300 (hvnet) R 300 300 100 0", b"");
        at("300", "300 (hvnet) R 300 300 100 0", b"");
        let _ = ssh_sessions(proc.path());
    }

    fn interface() -> impl Strategy<Value = String> {
        "[a-zA-Z][a-zA-Z0-9._-]{0,14}"
    }

    proptest! {
        #[test]
        fn route_lines_round_trip(
            routes in proptest::collection::vec(
                (interface(), any::<u32>(), any::<u32>(), 0u32..0x10000, any::<u32>(), any::<u32>())
                    .prop_map(|(interface, d, g, flags, metric, m)| Route4 {
                        interface,
                        destination: Ipv4Addr::from(d),
                        gateway: Ipv4Addr::from(g),
                        flags,
                        metric: metric % (i32::MAX as u32),
                        mask: Ipv4Addr::from(m),
                    }),
                0..8,
            )
        ) {
            let text: String = std::iter::once(ROUTE_HEADER.to_string())
                .chain(routes.iter().map(route_line))
                .map(|l| l + "\n")
                .collect();
            prop_assert_eq!(parse_route(&text).unwrap(), routes);
        }

        #[test]
        fn ipv6_route_lines_round_trip(
            routes in proptest::collection::vec(
                (interface(), any::<u128>(), 0u8..=128, any::<u128>(), any::<u32>(), any::<u32>())
                    .prop_map(|(interface, d, prefix_len, n, metric, flags)| Route6 {
                        interface,
                        destination: Ipv6Addr::from(d),
                        prefix_len,
                        next_hop: Ipv6Addr::from(n),
                        metric,
                        flags,
                    }),
                0..8,
            )
        ) {
            let text: String = routes.iter().map(|r| route6_line(r) + "\n").collect();
            prop_assert_eq!(parse_ipv6_route(&text).unwrap(), routes);
        }

        #[test]
        fn parsers_never_panic_on_arbitrary_text(text in "[ -~\t\n]{0,400}") {
            let _ = parse_route(&text);
            let _ = parse_route(&format!("{ROUTE_HEADER}\n{text}"));
            let _ = parse_ipv6_route(&text);
            let _ = parse_ip_addresses(&text);
            let _ = parse_ssh_connection(&text);
            let _ = parent_pid(&text);
            let _ = environ_var(text.as_bytes(), "SSH_CONNECTION");
        }

        #[test]
        fn a_default_route_is_found_whatever_else_the_table_holds(
            others in proptest::collection::vec((interface(), 1u32.., any::<u32>()), 0..6),
            default_on in interface(),
        ) {
            let mut routes: Vec<Route4> = others
                .into_iter()
                .filter(|(name, _, _)| name != "lo")
                .map(|(interface, d, m)| Route4 {
                    interface,
                    destination: Ipv4Addr::from(d),
                    gateway: Ipv4Addr::UNSPECIFIED,
                    flags: RTF_UP,
                    metric: 0,
                    mask: Ipv4Addr::from(m | 1),
                })
                .collect();
            let expected: BTreeSet<String> = if default_on == "lo" {
                BTreeSet::new()
            } else {
                BTreeSet::from([default_on.clone()])
            };
            routes.push(Route4 {
                interface: default_on,
                destination: Ipv4Addr::UNSPECIFIED,
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                flags: RTF_UP | 0x2,
                metric: 100,
                mask: Ipv4Addr::UNSPECIFIED,
            });
            let text: String = std::iter::once(ROUTE_HEADER.to_string())
                .chain(routes.iter().map(route_line))
                .map(|l| l + "\n")
                .collect();
            let parsed = parse_route(&text).unwrap();
            prop_assert_eq!(default_route_interfaces(&parsed, &[]), expected);
        }
    }
}
