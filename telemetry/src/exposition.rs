//! Reading Prometheus' text exposition back: what `hvnet stats` shows of a running instance.
//!
//! Only what the exporter writes is read — `# HELP` / `# TYPE` comments and sample lines
//! `name{label="value",…} value` (label values with `\\`, `\"` and `\n` escaped, values as
//! floats including `+Inf`, `-Inf` and `NaN`, no timestamps needed but one is accepted).
//! Anything else is an error naming the line. The text comes from the network: every line
//! and label is bounded ([`MAX_LINE`], [`MAX_LABELS`]) and nothing is indexed unchecked.

use std::fmt::Write as _;

/// The longest line read.
pub const MAX_LINE: usize = 64 * 1024;
/// The most labels a sample may have.
pub const MAX_LABELS: usize = 32;

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series' name (`_bucket`, `_sum`, `_count` included for histograms).
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The sample as an exposition line (the inverse of [`parse`]).
    pub fn render(&self) -> String {
        let mut line = self.name.clone();
        if !self.labels.is_empty() {
            line.push('{');
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    line.push(',');
                }
                let _ = write!(line, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => line.push_str("\\\\"),
                        '"' => line.push_str("\\\""),
                        '\n' => line.push_str("\\n"),
                        c => line.push(c),
                    }
                }
                line.push('"');
            }
            line.push('}');
        }
        let value = if self.value.is_nan() {
            "NaN".to_string()
        } else if self.value == f64::INFINITY {
            "+Inf".to_string()
        } else if self.value == f64::NEG_INFINITY {
            "-Inf".to_string()
        } else {
            format!("{}", self.value)
        };
        let _ = write!(line, " {value}");
        line
    }
}

/// A line the reader refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Reads every sample of `text` (comments skipped).
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |reason: String| ParseError {
            line: n + 1,
            reason,
        };
        if line.len() > MAX_LINE {
            return Err(fail(format!("longer than {MAX_LINE} bytes")));
        }
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        samples.push(parse_line(line).map_err(fail)?);
    }
    Ok(samples)
}

/// One sample line.
fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .char_indices()
        .find(|&(_, c)| !is_name_char(c))
        .map_or(line.len(), |(i, _)| i);
    let name = &line[..name_end];
    if !name.chars().next().is_some_and(is_name_start) {
        return Err(format!("{line:?} does not start with a metric name"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = after;
        loop {
            rest = rest.trim_start();
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            if labels.len() == MAX_LABELS {
                return Err(format!("more than {MAX_LABELS} labels"));
            }
            let key_end = rest
                .char_indices()
                .find(|&(_, c)| !is_name_char(c))
                .map_or(rest.len(), |(i, _)| i);
            let key = &rest[..key_end];
            if !key.chars().next().is_some_and(is_name_start) {
                return Err(format!("a bad label name at {rest:?}"));
            }
            rest = rest[key_end..]
                .strip_prefix("=\"")
                .ok_or_else(|| format!("label {key} has no =\"value\""))?;
            let mut value = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err(format!("label {key}'s value never ends")),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => {
                            return Err(format!(
                                "label {key}: a bad escape {:?}",
                                other.map(|(_, c)| c)
                            ));
                        }
                    },
                    Some((_, c)) => value.push(c),
                }
            };
            labels.push((key.to_string(), value));
            rest = &rest[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
    }
    let mut fields = rest.split_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("{name} has no value"))?;
    let value = match value {
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v
            .parse::<f64>()
            .map_err(|_| format!("{name}: {v:?} is not a number"))?,
    };
    if let Some(timestamp) = fields.next()
        && timestamp.parse::<i64>().is_err()
    {
        return Err(format!("{name}: {timestamp:?} is not a timestamp"));
    }
    if fields.next().is_some() {
        return Err(format!("{name}: more after the value and timestamp"));
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn what_the_exporter_writes_is_read() {
        let text = "# HELP hvnet_link_up Whether the link is up.\n\
                    # TYPE hvnet_link_up gauge\n\
                    hvnet_link_up{device=\"d\",path=\"vf\"} 1\n\
                    hvnet_failover_duration_seconds_bucket{device=\"d\",le=\"+Inf\"} 2\n\
                    hvnet_failover_duration_seconds_sum{device=\"d\"} 0.000123\n\
                    up 1 1700000000000\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].label("path"), Some("vf"));
        assert_eq!(samples[1].label("le"), Some("+Inf"));
        assert_eq!(samples[2].value, 0.000123);
        assert_eq!(samples[3].labels, vec![]);
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, expected) in [
            (
                "9bad 1",
                "line 1: \"9bad 1\" does not start with a metric name",
            ),
            ("ok 1\nx{a=1} 2", "line 2: label a has no =\"value\""),
            ("x{a=\"open} 1", "label a's value never ends"),
            ("x{a=\"\\q\"} 1", "a bad escape Some('q')"),
            ("x one", "\"one\" is not a number"),
            ("x", "x has no value"),
            ("x 1 2 3", "more after the value"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text:?}: {e}");
        }
        let long = format!("x{{a=\"{}\"}} 1", "v".repeat(MAX_LINE));
        assert!(
            parse(&long)
                .unwrap_err()
                .to_string()
                .contains("longer than")
        );
        let many: Vec<String> = (0..=MAX_LABELS).map(|i| format!("l{i}=\"v\"")).collect();
        let line = format!("x{{{}}} 1", many.join(","));
        assert!(
            parse(&line)
                .unwrap_err()
                .to_string()
                .contains("more than 32 labels")
        );
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,20}",
            proptest::collection::vec(("[a-zA-Z_][a-zA-Z0-9_]{0,10}", "\\PC{0,12}"), 0..5),
            prop_oneof![
                any::<f64>(),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY),
                (0u64..1 << 53).prop_map(|v| v as f64)
            ],
        )
            .prop_map(|(name, labels, value)| Sample {
                name,
                labels,
                value,
            })
    }

    proptest! {
        #[test]
        fn rendered_samples_read_back_the_same(samples in proptest::collection::vec(sample(), 0..8)) {
            let text: String = samples.iter().map(|s| s.render() + "\n").collect();
            let back = parse(&text).unwrap();
            prop_assert_eq!(back.len(), samples.len());
            for (a, b) in back.iter().zip(&samples) {
                prop_assert_eq!(&a.name, &b.name);
                prop_assert_eq!(&a.labels, &b.labels);
                prop_assert!(a.value == b.value || (a.value.is_nan() && b.value.is_nan()));
            }
        }

        #[test]
        fn any_text_is_read_or_refused_without_panic(text in "\\PC{0,200}") {
            let _ = parse(&text);
        }
    }
}
