//! The Grafana dashboard (`docs/grafana/hvnet-dashboard.json`) cannot drift from the code:
//! it is a dashboard Grafana imports (a datasource input, panels with ids, positions and
//! queries), and every metric its queries name is in the catalogue (`telemetry::catalogue`),
//! with labels that metric has. `tests/prometheus.rs` runs the same queries against a real
//! Prometheus scraping `hvnet demo`.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use serde_json::Value;
use telemetry::catalogue::{self, Kind, Metric};

fn dashboard() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/hvnet-dashboard.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A token of a PromQL expression, as far as this check needs one.
#[derive(Debug, PartialEq)]
enum Token {
    /// A name: a metric, a function, a keyword or a label.
    Name(String),
    /// `$name` or `${name}`: a dashboard variable.
    Variable(String),
    /// Any one other character (strings, numbers and durations are skipped).
    Punct(char),
}

fn tokens(expr: &str) -> Vec<Token> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let is_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_rest = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' || c == '`' {
            // A string: to its closing quote (backslash escapes, except in raw strings); only
            // the dashboard's variables in it count (`{device=~"$device"}`).
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '$' {
                    let start = i + 1 + usize::from(chars.get(i + 1) == Some(&'{'));
                    let end = (start..chars.len())
                        .find(|&j| !is_rest(chars[j]))
                        .unwrap_or(chars.len());
                    out.push(Token::Variable(chars[start..end].iter().collect()));
                }
                i += if chars[i] == '\\' && c != '`' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '$' {
            let braced = chars.get(i + 1) == Some(&'{');
            let start = i + 1 + usize::from(braced);
            let mut end = start;
            while end < chars.len() && is_rest(chars[end]) {
                end += 1;
            }
            out.push(Token::Variable(chars[start..end].iter().collect()));
            i = end + usize::from(braced);
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (5m, 1e-3, 0.99).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if is_start(c) {
            let start = i;
            while i < chars.len() && is_rest(chars[i]) {
                i += 1;
            }
            out.push(Token::Name(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

/// What an expression uses: the metrics it selects (as written), the label names of their
/// matchers (per metric), the label names of its `by`/`without`/`on`/`ignoring` clauses, and
/// its variables.
#[derive(Debug, Default)]
struct Uses {
    metrics: Vec<String>,
    matchers: Vec<(String, String)>,
    grouping: Vec<String>,
    variables: Vec<String>,
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
];

fn uses(expr: &str) -> Uses {
    let t = tokens(expr);
    let mut u = Uses::default();
    let mut i = 0;
    let mut last_metric: Option<String> = None;
    while i < t.len() {
        match &t[i] {
            Token::Variable(v) => u.variables.push(v.clone()),
            Token::Name(name)
                if [
                    "by",
                    "without",
                    "on",
                    "ignoring",
                    "group_left",
                    "group_right",
                ]
                .contains(&name.as_str())
                    && t.get(i + 1) == Some(&Token::Punct('(')) =>
            {
                i += 2;
                while i < t.len() && t[i] != Token::Punct(')') {
                    if let Token::Name(label) = &t[i] {
                        u.grouping.push(label.clone());
                    }
                    i += 1;
                }
            }
            Token::Name(name) if KEYWORDS.contains(&name.to_ascii_lowercase().as_str()) => {}
            // A function or an aggregation (`sum(…)`, `sum by (…) (…)`).
            Token::Name(_)
                if t.get(i + 1) == Some(&Token::Punct('('))
                    || matches!(t.get(i + 1), Some(Token::Name(n)) if n == "by" || n == "without") =>
                {}
            Token::Name(name) => {
                u.metrics.push(name.clone());
                last_metric = Some(name.clone());
            }
            Token::Punct('{') => {
                // Matchers: `label op "value"`, comma-separated; the values were skipped.
                i += 1;
                let mut expect_label = true;
                while i < t.len() && t[i] != Token::Punct('}') {
                    match &t[i] {
                        Token::Name(label) if expect_label => {
                            let metric = last_metric.clone().unwrap_or_default();
                            u.matchers.push((metric, label.clone()));
                            expect_label = false;
                        }
                        Token::Punct(',') => expect_label = true,
                        Token::Variable(v) => u.variables.push(v.clone()),
                        _ => {}
                    }
                    i += 1;
                }
            }
            Token::Punct('[') => {
                // A range or a subquery's duration.
                while i < t.len() && t[i] != Token::Punct(']') {
                    if let Token::Variable(v) = &t[i] {
                        u.variables.push(v.clone());
                    }
                    i += 1;
                }
            }
            Token::Punct(_) => {}
        }
        i += 1;
    }
    u
}

/// The catalogue's metric a selected series name belongs to, and the extra label it may
/// carry (`le` on a histogram's buckets).
fn resolve(name: &str) -> Result<(&'static Metric, Option<&'static str>), String> {
    if let Some(m) = catalogue::find(name) {
        if m.kind == Kind::Histogram {
            return Err(format!(
                "{name} is a histogram: select its _bucket, _sum or _count"
            ));
        }
        return Ok((m, None));
    }
    for (suffix, extra) in [("_bucket", Some("le")), ("_sum", None), ("_count", None)] {
        if let Some(m) = name.strip_suffix(suffix).and_then(catalogue::find)
            && m.kind == Kind::Histogram
        {
            return Ok((m, extra));
        }
    }
    Err(format!(
        "{name} is not in the catalogue (telemetry/src/catalogue.rs)"
    ))
}

/// Labels every series has whatever the metric (Prometheus adds them at scrape time).
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// The problems of one expression: names the catalogue does not have, labels the metric
/// does not carry, variables the dashboard does not define.
fn problems(expr: &str, variables: &HashSet<String>) -> Vec<String> {
    let u = uses(expr);
    let mut problems = Vec::new();
    if u.metrics.is_empty() {
        problems.push("selects no metric".to_string());
    }
    let mut labels: HashSet<&str> = TARGET_LABELS.iter().copied().collect();
    for name in &u.metrics {
        match resolve(name) {
            Ok((m, extra)) => labels.extend(m.labels.iter().copied().chain(extra)),
            Err(e) => problems.push(e),
        }
    }
    for (metric, label) in &u.matchers {
        let known = TARGET_LABELS.contains(&label.as_str())
            || resolve(metric).is_ok_and(|(m, extra)| {
                m.labels.contains(&label.as_str()) || extra == Some(label.as_str())
            });
        if !known {
            problems.push(format!("{metric} has no label {label}"));
        }
    }
    for label in &u.grouping {
        if !labels.contains(label.as_str()) {
            problems.push(format!("grouping by {label}, which no metric here has"));
        }
    }
    for v in &u.variables {
        if !v.starts_with("__") && !variables.contains(v) {
            problems.push(format!("${v} is not a variable of the dashboard"));
        }
    }
    problems
}

/// Every panel, rows' nested panels included.
fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

fn variables(d: &Value) -> HashSet<String> {
    d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| v["name"].as_str().expect("a variable's name").to_string())
        .collect()
}

#[test]
fn every_query_of_the_dashboard_names_catalogue_metrics_with_their_labels() {
    let d = dashboard();
    let variables = variables(&d);
    let mut used = BTreeSet::new();
    let mut exprs = 0;
    for p in panels(&d) {
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().expect("a target without expr");
            exprs += 1;
            let problems = problems(expr, &variables);
            assert!(
                problems.is_empty(),
                "panel {:?}: {expr}: {problems:?}",
                p["title"]
            );
            for name in uses(expr).metrics {
                used.insert(resolve(&name).unwrap().0.name);
            }
        }
    }
    // The variables' queries too: `label_values(METRIC, LABEL)`.
    for v in d["templating"]["list"].as_array().unwrap() {
        if v["type"] == "query" {
            let q = v["definition"]
                .as_str()
                .expect("a query variable's definition");
            assert_eq!(
                v["query"]["query"].as_str(),
                Some(q),
                "variable {}",
                v["name"]
            );
            let (metric, label) = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .and_then(|r| r.split_once(','))
                .unwrap_or_else(|| panic!("variable {}: {q}", v["name"]));
            let (m, _) =
                resolve(metric.trim()).unwrap_or_else(|e| panic!("variable {}: {e}", v["name"]));
            assert!(
                m.labels.contains(&label.trim()),
                "variable {}: {q}",
                v["name"]
            );
        }
    }
    assert!(exprs >= 10, "{exprs} queries");
    // What the dashboard is for is on it.
    for needed in [
        catalogue::RX_PACKETS.name,
        catalogue::TX_PACKETS.name,
        catalogue::RX_DROPPED.name,
        catalogue::TX_DROPPED.name,
        catalogue::DATA_PATH.name,
        catalogue::FAILOVER_DURATION.name,
        catalogue::FAILBACK_DURATION.name,
        catalogue::SWITCHES.name,
        catalogue::SIM_HOST_FRAMES_TO_GUEST.name,
    ] {
        assert!(used.contains(needed), "no panel shows {needed}");
    }
}

#[test]
fn the_dashboard_is_an_importable_grafana_model() {
    let d = dashboard();
    let input = &d["__inputs"][0];
    assert_eq!(
        (&input["name"], &input["type"], &input["pluginId"]),
        (
            &Value::from("DS_PROMETHEUS"),
            &Value::from("datasource"),
            &Value::from("prometheus")
        )
    );
    let schema = d["schemaVersion"].as_u64().expect("schemaVersion");
    assert!((36..=41).contains(&schema), "schemaVersion {schema}");
    for key in ["uid", "title"] {
        assert!(d[key].as_str().is_some_and(|s| !s.is_empty()), "no {key}");
    }
    let datasource = serde_json::json!({"type": "prometheus", "uid": "${DS_PROMETHEUS}"});
    let mut ids = HashSet::new();
    let mut types = BTreeSet::new();
    for p in panels(&d) {
        let title = &p["title"];
        assert!(
            ids.insert(p["id"].as_u64().expect("a panel id")),
            "id of {title} twice"
        );
        let g = &p["gridPos"];
        let (x, w, h) = (g["x"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        assert!(
            matches!((x, w, h), (Some(x), Some(w), Some(h)) if w > 0 && h > 0 && x + w <= 24)
                && g["y"].is_u64(),
            "{title}: gridPos {g}"
        );
        let kind = p["type"].as_str().expect("a panel type");
        types.insert(kind);
        if kind == "row" {
            continue;
        }
        assert_eq!(p["datasource"], datasource, "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        let mut refs = HashSet::new();
        for t in targets {
            assert_eq!(t["datasource"], datasource, "{title}");
            assert!(
                refs.insert(t["refId"].as_str().expect("refId")),
                "{title}: refId twice"
            );
        }
        if kind == "heatmap" {
            // Prometheus buckets, shown as they are (not re-bucketed by Grafana).
            assert_eq!(targets[0]["format"], "heatmap", "{title}");
            assert_eq!(p["options"]["calculate"], false, "{title}");
            assert!(
                targets[0]["expr"].as_str().unwrap().contains("_bucket"),
                "{title}"
            );
        }
    }
    for kind in ["timeseries", "state-timeline", "heatmap"] {
        assert!(types.contains(kind), "no {kind} panel: {types:?}");
    }
}

#[test]
fn the_check_catches_a_misspelt_metric_a_foreign_label_and_an_unknown_variable() {
    let vars: HashSet<String> = ["device".to_string()].into();
    assert!(
        problems(
            r#"sum by (path) (rate(hvnet_tx_packets_total{device=~"$device"}[$__rate_interval]))"#,
            &vars
        )
        .is_empty()
    );
    assert!(
        problems(
            r#"histogram_quantile(0.99, sum by (le) (rate(hvnet_failover_duration_seconds_bucket[5m])))"#,
            &vars
        )
        .is_empty()
    );
    let bad = |expr: &str| {
        let p = problems(expr, &vars);
        assert!(!p.is_empty(), "{expr} passed");
        p.join("; ")
    };
    assert!(bad("rate(hvnet_tx_packet_total[1m])").contains("not in the catalogue"));
    assert!(bad(r#"hvnet_data_path{reason="x"}"#).contains("no label reason"));
    assert!(bad("sum by (queue) (hvnet_data_path)").contains("grouping by queue"));
    assert!(bad("hvnet_failover_duration_seconds").contains("is a histogram"));
    assert!(bad(r#"hvnet_data_path{device=~"$host"}"#).contains("$host"));
    assert!(bad("sum(rate(node_cpu_seconds_total[1m]))").contains("node_cpu_seconds_total"));
    // A label value or a string that looks like a metric is not one.
    assert!(problems(r#"hvnet_data_path{path="hvnet_nonsense"}"#, &vars).is_empty());
}
