//! `hvnet stats`: the metrics of a running `hvnet run`, `hvnet demo` or `hvnet sim-host`, read
//! from its `--metrics-addr` and shown by the catalogue (docs/metrics.md), for a person at a
//! terminal (or as JSON).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, bail};
use telemetry::catalogue::{self, Kind};
use telemetry::exposition::{self, Sample};

/// The largest answer read.
const MAX_ANSWER: u64 = 16 << 20;

/// Options of `hvnet stats`.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// Where the instance serves its metrics (its --metrics-addr): HOST:PORT, or PORT alone for
    /// 127.0.0.1:PORT.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_addr)]
    metrics_addr: SocketAddr,

    /// Print JSON: each metric of the catalogue with its type, help and series (labels and
    /// value), and the series the catalogue does not know under "other".
    #[arg(long)]
    json: bool,

    /// Seconds to wait for the instance to answer, 1 to 60.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 5,
        allow_negative_numbers = true,
        value_parser = clap::value_parser!(u64).range(1..=60)
    )]
    timeout: u64,
}

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    telemetry::parse_addr(s).map_err(|e| e.to_string())
}

/// `GET /metrics` from `addr`: the body.
fn scrape(addr: SocketAddr, timeout: Duration) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout).with_context(|| {
        format!("nothing answers at {addr} (is hvnet run, demo or sim-host serving --metrics-addr {addr}?)")
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .take(MAX_ANSWER)
        .read_to_end(&mut answer)
        .with_context(|| format!("reading the answer of {addr}"))?;
    let answer = String::from_utf8(answer).context("the answer is not UTF-8")?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .with_context(|| format!("{addr} did not answer HTTP"))?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1).is_none_or(|c| c != "200") {
        bail!("{addr} answered {status:?}");
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return dechunk(body);
    }
    Ok(body.to_string())
}

/// The body of a chunked answer.
fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body
            .split_once("\r\n")
            .context("a chunk without its size")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("a bad chunk size {size:?}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).context("a chunk shorter than its size")?;
        out.push_str(chunk);
        body = rest
            .get(size..)
            .and_then(|r| r.strip_prefix("\r\n"))
            .context("a chunk not ended by CRLF")?;
    }
}

/// The labels of `s` as `k=v` words, the device first.
fn labels(s: &Sample) -> String {
    s.labels
        .iter()
        .filter(|(k, _)| k != "le")
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => "counter",
        Kind::Gauge => "gauge",
        Kind::Histogram => "histogram",
    }
}

/// The text view: each metric of the catalogue that has series, its series aligned.
fn text(samples: &[Sample]) -> String {
    let mut out = String::new();
    for metric in catalogue::ALL {
        let series: Vec<&Sample> = match metric.kind {
            Kind::Histogram => samples
                .iter()
                .filter(|s| s.name == format!("{}_count", metric.name))
                .collect(),
            _ => samples.iter().filter(|s| s.name == metric.name).collect(),
        };
        if series.is_empty() {
            continue;
        }
        out.push_str(&format!(
            "{} ({}) {}\n",
            metric.name,
            kind_name(metric.kind),
            metric.help
        ));
        let width = series.iter().map(|s| labels(s).len()).max().unwrap_or(0);
        for s in series {
            let value = if metric.kind == Kind::Histogram {
                let sum = samples
                    .iter()
                    .find(|x| x.name == format!("{}_sum", metric.name) && x.labels == s.labels)
                    .map_or(0.0, |x| x.value);
                let mean = if s.value > 0.0 { sum / s.value } else { 0.0 };
                format!("{} observed, mean {:.6} s", s.value, mean)
            } else {
                format!("{}", s.value)
            };
            out.push_str(&format!("  {:<width$}  {value}\n", labels(s)));
        }
    }
    let known = |name: &str| {
        catalogue::ALL.iter().any(|m| {
            name == m.name
                || (m.kind == Kind::Histogram
                    && [
                        m.name.to_string() + "_bucket",
                        m.name.to_string() + "_sum",
                        m.name.to_string() + "_count",
                    ]
                    .iter()
                    .any(|n| n == name))
        })
    };
    let other = samples.iter().filter(|s| !known(&s.name)).count();
    if other > 0 {
        out.push_str(&format!("({other} series not in hvnet's catalogue)\n"));
    }
    out
}

/// The JSON view.
fn json(samples: &[Sample]) -> serde_json::Value {
    let series = |s: &Sample| {
        let labels: BTreeMap<&str, &str> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        serde_json::json!({ "labels": labels, "value": s.value })
    };
    let mut metrics = serde_json::Map::new();
    let mut used = vec![false; samples.len()];
    for metric in catalogue::ALL {
        let names: Vec<String> = match metric.kind {
            Kind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|s| format!("{}{s}", metric.name))
                .collect(),
            _ => vec![metric.name.to_string()],
        };
        let mut found = Vec::new();
        for (i, s) in samples.iter().enumerate() {
            if names.contains(&s.name) {
                used[i] = true;
                let mut v = series(s);
                v["name"] = serde_json::Value::from(s.name.clone());
                found.push(v);
            }
        }
        metrics.insert(
            metric.name.to_string(),
            serde_json::json!({
                "type": kind_name(metric.kind),
                "help": metric.help,
                "series": found,
            }),
        );
    }
    let other: Vec<serde_json::Value> = samples
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(s, _)| {
            let mut v = series(s);
            v["name"] = serde_json::Value::from(s.name.clone());
            v
        })
        .collect();
    serde_json::json!({ "metrics": metrics, "other": other })
}

/// Runs `hvnet stats`.
pub fn run(args: &StatsArgs) -> anyhow::Result<()> {
    let body = scrape(args.metrics_addr, Duration::from_secs(args.timeout))?;
    let samples = exposition::parse(&body)
        .with_context(|| format!("reading the metrics of {}", args.metrics_addr))?;
    if args.json {
        say!("{}", json(&samples));
    } else {
        let shown = text(&samples);
        if shown.is_empty() {
            say!("{} serves no hvnet metric yet", args.metrics_addr);
        } else {
            say!("{}", shown.trim_end());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_answers_are_joined_and_broken_ones_refused() {
        assert_eq!(
            dechunk("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap(),
            "hello world"
        );
        for bad in ["5\r\nhel", "zz\r\nx\r\n", "1\r\nxy0\r\n"] {
            assert!(dechunk(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn catalogue_metrics_are_shown_and_others_counted() {
        let body = "hvnet_link_up{device=\"d\",path=\"vf\"} 1\n\
                    hvnet_failover_duration_seconds_bucket{device=\"d\",le=\"+Inf\"} 2\n\
                    hvnet_failover_duration_seconds_sum{device=\"d\"} 0.5\n\
                    hvnet_failover_duration_seconds_count{device=\"d\"} 2\n\
                    process_open_fds 7\n";
        let samples = exposition::parse(body).unwrap();
        let shown = text(&samples);
        assert!(shown.contains("hvnet_link_up (gauge)"), "{shown}");
        assert!(shown.contains("device=d path=vf  1"), "{shown}");
        assert!(shown.contains("2 observed, mean 0.250000 s"), "{shown}");
        assert!(
            shown.contains("(1 series not in hvnet's catalogue)"),
            "{shown}"
        );
        let j = json(&samples);
        assert_eq!(j["metrics"]["hvnet_link_up"]["series"][0]["value"], 1.0);
        assert_eq!(
            j["metrics"]["hvnet_failover_duration_seconds"]["series"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(j["other"][0]["name"], "process_open_fds");
    }
}
