//! The Prometheus endpoint: where it may listen ([`parse_addr`], [`check_policy`]) and
//! installing the recorder with its HTTP listener ([`install`]).
//!
//! Address policy (DESIGN §5: the endpoint binds to loopback by default):
//! - `PORT` or `:PORT` means `127.0.0.1:PORT`; an address without a port gets
//!   [`DEFAULT_PORT`]; `localhost` means `127.0.0.1`; otherwise the host is an IP address
//!   (IPv6 in brackets when a port follows), never a name to resolve;
//! - a wildcard address (`0.0.0.0`, `::`), which serves every interface, is refused unless the
//!   operator says the endpoint is public (`--metrics-public`): counters of a network driver
//!   tell a lot about a host, and the exporter has no authentication;
//! - port 0 is refused: Prometheus could not find a port the kernel picked.
//!
//! The exporter answers GET on any path (`/metrics` included), renders the catalogue's
//! histograms with [`DURATION_BUCKETS`](crate::catalogue::DURATION_BUCKETS) (not as summaries)
//! and runs its own upkeep every [`UPKEEP`]. One recorder per process: installing twice is an
//! error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

use crate::catalogue::{self, Kind};

/// The port when the address gives none.
pub const DEFAULT_PORT: u16 = 9464;
/// How often the exporter drains histogram samples.
pub const UPKEEP: Duration = Duration::from_secs(5);

/// Why an endpoint cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Not an address.
    #[error(
        "not a metrics address: {0:?} (HOST:PORT, HOST or PORT; HOST an IP address or localhost, IPv6 in brackets before a port)"
    )]
    Syntax(String),
    /// Port 0.
    #[error("refusing to serve metrics on port 0: give the port Prometheus will scrape")]
    PortZero,
    /// A wildcard address without the public flag.
    #[error(
        "refusing to serve metrics on {0} (every interface): give a loopback or management address, or --metrics-public"
    )]
    Wildcard(SocketAddr),
    /// Installing the recorder or binding the listener failed.
    #[error("serving metrics on {addr}: {reason}")]
    Install {
        /// The address.
        addr: SocketAddr,
        /// What the exporter said.
        reason: String,
    },
}

fn port(s: &str, whole: &str) -> Result<u16, EndpointError> {
    let p: u16 = s
        .parse()
        .map_err(|_| EndpointError::Syntax(whole.to_owned()))?;
    if p == 0 {
        return Err(EndpointError::PortZero);
    }
    Ok(p)
}

fn host(s: &str, whole: &str) -> Result<IpAddr, EndpointError> {
    if s.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let s = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    s.parse()
        .map_err(|_| EndpointError::Syntax(whole.to_owned()))
}

/// Parses `--metrics-addr` (see the module docs for the forms). Does not apply the wildcard
/// policy: [`check_policy`] does.
pub fn parse_addr(text: &str) -> Result<SocketAddr, EndpointError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(EndpointError::Syntax(text.to_owned()));
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port(s, text)?));
    }
    if let Some(p) = s.strip_prefix(':')
        && !p.contains(':')
    {
        return Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port(p, text)?));
    }
    if let Ok(addr) = s.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(EndpointError::PortZero);
        }
        return Ok(addr);
    }
    // HOST:PORT with a name, or a host alone (an IPv6 address has several colons).
    if let Some((h, p)) = s.rsplit_once(':')
        && (if h.starts_with('[') {
            h.ends_with(']')
        } else {
            !h.contains(':')
        })
    {
        return Ok(SocketAddr::new(host(h, text)?, port(p, text)?));
    }
    Ok(SocketAddr::new(host(s, text)?, DEFAULT_PORT))
}

/// Whether `addr` serves every interface (`0.0.0.0`, `::`, `::ffff:0.0.0.0`).
pub fn is_wildcard(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_unspecified()
}

/// `addr` if it may be served: a wildcard only when `public`.
pub fn check_policy(addr: SocketAddr, public: bool) -> Result<SocketAddr, EndpointError> {
    if is_wildcard(&addr) && !public {
        return Err(EndpointError::Wildcard(addr));
    }
    Ok(addr)
}

/// The exporter's settings: explicit buckets for the catalogue's histograms (matched by full
/// name, as the code emits it), recommended naming left off (the names carry their suffixes).
pub fn builder() -> PrometheusBuilder {
    let mut b = PrometheusBuilder::new().upkeep_timeout(UPKEEP);
    for m in catalogue::ALL.iter().filter(|m| m.kind == Kind::Histogram) {
        b = b
            .set_buckets_for_metric(
                Matcher::Full(m.name.to_owned()),
                catalogue::DURATION_BUCKETS,
            )
            .expect("the bucket list is not empty");
    }
    b
}

/// A recorder with the endpoint's settings and no listener: for tests and for rendering
/// without serving (`with_local_recorder`, then `handle().render()`).
pub fn recorder() -> PrometheusRecorder {
    builder().build_recorder()
}

/// Installs the global recorder with an HTTP listener on `addr` (the exporter's thread, with
/// its own single-threaded runtime) and describes every metric of the catalogue. Apply
/// [`check_policy`] first.
pub fn install(addr: SocketAddr) -> Result<(), EndpointError> {
    builder()
        .with_http_listener(addr)
        .install()
        .map_err(|e| EndpointError::Install {
            addr,
            reason: e.to_string(),
        })?;
    catalogue::describe();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> String {
        parse_addr(s).unwrap().to_string()
    }

    #[test]
    fn a_port_alone_or_a_host_alone_means_loopback_or_the_default_port() {
        assert_eq!(parsed("9464"), "127.0.0.1:9464");
        assert_eq!(parsed(":9100"), "127.0.0.1:9100");
        assert_eq!(parsed("127.0.0.1:9100"), "127.0.0.1:9100");
        assert_eq!(parsed("10.1.2.3"), "10.1.2.3:9464");
        assert_eq!(parsed("localhost"), "127.0.0.1:9464");
        assert_eq!(parsed("LocalHost:81"), "127.0.0.1:81");
        assert_eq!(parsed("[::1]:9100"), "[::1]:9100");
        assert_eq!(parsed("::1"), "[::1]:9464");
        assert_eq!(parsed("[fd00::5]"), "[fd00::5]:9464");
        assert_eq!(parsed(" 0.0.0.0:9464 "), "0.0.0.0:9464");
    }

    #[test]
    fn names_bad_ports_and_port_zero_are_refused() {
        for bad in [
            "",
            "metrics.example:9100",
            "127.0.0.1:http",
            "127.0.0.1:70000",
            "1.2.3.4.5",
            "[::1",
            "::1]:80",
        ] {
            assert!(
                matches!(parse_addr(bad), Err(EndpointError::Syntax(_))),
                "{bad:?}: {:?}",
                parse_addr(bad)
            );
        }
        for zero in ["0", ":0", "127.0.0.1:0", "[::1]:0"] {
            assert!(
                matches!(parse_addr(zero), Err(EndpointError::PortZero)),
                "{zero}"
            );
        }
    }

    #[test]
    fn a_wildcard_is_refused_unless_public_with_the_message_operators_see() {
        for wildcard in ["0.0.0.0:9464", "[::]:9464", "::", "[::ffff:0.0.0.0]:9464"] {
            let addr = parse_addr(wildcard).unwrap();
            assert!(is_wildcard(&addr), "{wildcard}");
            let err = check_policy(addr, false).unwrap_err();
            assert!(matches!(err, EndpointError::Wildcard(_)), "{wildcard}");
            assert_eq!(check_policy(addr, true).unwrap(), addr);
        }
        assert_eq!(
            check_policy(parse_addr("0.0.0.0:9464").unwrap(), false)
                .unwrap_err()
                .to_string(),
            "refusing to serve metrics on 0.0.0.0:9464 (every interface): give a loopback or management address, or --metrics-public"
        );
        for fine in ["127.0.0.1:9464", "10.0.0.4:9100", "[::1]:9464"] {
            let addr = parse_addr(fine).unwrap();
            assert_eq!(check_policy(addr, false).unwrap(), addr, "{fine}");
        }
    }
}
