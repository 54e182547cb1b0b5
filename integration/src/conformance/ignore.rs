//! The `ignore` entries of a record: parsing, checking against the record, applying to JSON.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

use super::ConformanceError;

/// One entry of a record's `ignore` list, in one of the README's three forms.
///
/// Entries are parsed when a transcript is loaded, so a malformed entry fails the load.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum IgnoreRule {
    /// `name`: drop that top-level field (`ring_pos`, `gpadl_id`, …).
    Field(String),
    /// `a.b[*].c`: drop a nested field; a segment marked `[*]` is an array and the rest of the
    /// path applies to every element (`gpa.ranges[*].pfns`,
    /// `guest_to_host_ring.interrupt_mask`). Always two or more segments.
    Path(Vec<PathSegment>),
    /// `field[s:e]`: mask **bytes** `s..e` (end exclusive) of the decoded hex string `field`
    /// (`payload_hex[4:8]` masks the 4-byte GPADL handle at NVSP offset 4).
    ByteMask {
        /// The top-level hex field (`payload_hex`, `ext_hex`).
        field: String,
        /// First masked byte.
        start: usize,
        /// One past the last masked byte.
        end: usize,
    },
}

/// One segment of an [`IgnoreRule::Path`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathSegment {
    /// The object key.
    pub name: String,
    /// `true` for `name[*]`: the value is an array and the rest applies to each element.
    pub each: bool,
}

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl FromStr for IgnoreRule {
    type Err = ConformanceError;

    fn from_str(entry: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| ConformanceError::BadIgnore {
            entry: entry.to_owned(),
            reason: reason.to_owned(),
        };
        if entry.contains('.') {
            let segments = entry
                .split('.')
                .map(|seg| {
                    let (name, each) = match seg.strip_suffix("[*]") {
                        Some(name) => (name, true),
                        None => (seg, false),
                    };
                    if is_ident(name) {
                        Ok(PathSegment {
                            name: name.to_owned(),
                            each,
                        })
                    } else {
                        Err(bad("a path segment must be `name` or `name[*]`"))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(Self::Path(segments));
        }
        if let Some(open) = entry.find('[') {
            let field = &entry[..open];
            let inner = entry[open + 1..]
                .strip_suffix(']')
                .ok_or_else(|| bad("a byte mask must end with `]`"))?;
            let (s, e) = inner
                .split_once(':')
                .ok_or_else(|| bad("a byte mask must be `field[start:end]`"))?;
            let num = |n: &str| {
                if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) {
                    n.parse::<usize>()
                        .map_err(|_| bad("byte index out of range"))
                } else {
                    Err(bad("byte indexes must be decimal numbers"))
                }
            };
            let (start, end) = (num(s)?, num(e)?);
            if !is_ident(field) {
                return Err(bad("a byte mask must name a top-level field"));
            }
            if start >= end {
                return Err(bad("a byte mask needs start < end"));
            }
            return Ok(Self::ByteMask {
                field: field.to_owned(),
                start,
                end,
            });
        }
        if is_ident(entry) {
            Ok(Self::Field(entry.to_owned()))
        } else {
            Err(bad("not `name`, `a.b[*].c` or `field[start:end]`"))
        }
    }
}

impl TryFrom<String> for IgnoreRule {
    type Error = ConformanceError;

    fn try_from(entry: String) -> Result<Self, Self::Error> {
        entry.parse()
    }
}

impl fmt::Display for IgnoreRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Field(name) => f.write_str(name),
            Self::Path(segments) => {
                for (i, seg) in segments.iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(&seg.name)?;
                    if seg.each {
                        f.write_str("[*]")?;
                    }
                }
                Ok(())
            }
            Self::ByteMask { field, start, end } => write!(f, "{field}[{start}:{end}]"),
        }
    }
}

impl IgnoreRule {
    /// The top-level field the entry refers to.
    pub fn top_level(&self) -> &str {
        match self {
            Self::Field(name) | Self::ByteMask { field: name, .. } => name,
            Self::Path(segments) => &segments[0].name,
        }
    }

    /// Checks that the entry refers to something that exists in `record` (the record's JSON
    /// object): the field, every element along a `[*]` path (arrays must be non-empty), or a
    /// hex string at least `end` bytes long.
    pub fn check_against(&self, record: &Value) -> Result<(), String> {
        match self {
            Self::Field(name) => record
                .get(name)
                .map(|_| ())
                .ok_or_else(|| format!("no field `{name}`")),
            Self::ByteMask { field, end, .. } => {
                let hex = record
                    .get(field)
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("`{field}` is not a string field"))?;
                let bytes = hex::decode(hex).map_err(|e| format!("`{field}` is not hex: {e}"))?;
                if *end > bytes.len() {
                    return Err(format!(
                        "mask ends at byte {end} but `{field}` has {} bytes",
                        bytes.len()
                    ));
                }
                Ok(())
            }
            Self::Path(segments) => resolve(record, segments),
        }
    }

    /// Removes (or, for a byte mask, blanks with `..`) what the entry names from `value`.
    /// Missing parts are left alone.
    pub(crate) fn strip(&self, value: &mut Value) {
        match self {
            Self::Field(name) => {
                if let Some(obj) = value.as_object_mut() {
                    obj.remove(name);
                }
            }
            Self::ByteMask { field, start, end } => {
                if let Some(Value::String(hex)) = value.get_mut(field) {
                    let blanked: String = hex
                        .chars()
                        .enumerate()
                        .map(|(i, c)| {
                            if (start * 2..end * 2).contains(&i) {
                                '.'
                            } else {
                                c
                            }
                        })
                        .collect();
                    *hex = blanked;
                }
            }
            Self::Path(segments) => strip_path(value, segments),
        }
    }
}

fn resolve(value: &Value, segments: &[PathSegment]) -> Result<(), String> {
    let Some((seg, rest)) = segments.split_first() else {
        return Ok(());
    };
    let next = value
        .get(&seg.name)
        .ok_or_else(|| format!("no field `{}`", seg.name))?;
    if seg.each {
        let items = next
            .as_array()
            .filter(|a| !a.is_empty())
            .ok_or_else(|| format!("`{}` is not a non-empty array", seg.name))?;
        items.iter().try_for_each(|item| resolve(item, rest))
    } else {
        resolve(next, rest)
    }
}

fn strip_path(value: &mut Value, segments: &[PathSegment]) {
    let Some((seg, rest)) = segments.split_first() else {
        return;
    };
    let Some(obj) = value.as_object_mut() else {
        return;
    };
    if rest.is_empty() && !seg.each {
        obj.remove(&seg.name);
        return;
    }
    match obj.get_mut(&seg.name) {
        Some(Value::Array(items)) if seg.each => {
            if rest.is_empty() {
                items.clear();
            } else {
                items.iter_mut().for_each(|item| strip_path(item, rest));
            }
        }
        Some(next) if !seg.each => strip_path(next, rest),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> IgnoreRule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(parse("ring_pos"), IgnoreRule::Field("ring_pos".into()));
        assert_eq!(
            parse("gpa.ranges[*].pfns"),
            IgnoreRule::Path(vec![
                PathSegment {
                    name: "gpa".into(),
                    each: false
                },
                PathSegment {
                    name: "ranges".into(),
                    each: true
                },
                PathSegment {
                    name: "pfns".into(),
                    each: false
                },
            ])
        );
        assert_eq!(
            parse("guest_to_host_ring.interrupt_mask"),
            IgnoreRule::Path(vec![
                PathSegment {
                    name: "guest_to_host_ring".into(),
                    each: false
                },
                PathSegment {
                    name: "interrupt_mask".into(),
                    each: false
                },
            ])
        );
        assert_eq!(
            parse("payload_hex[4:8]"),
            IgnoreRule::ByteMask {
                field: "payload_hex".into(),
                start: 4,
                end: 8
            }
        );
        for s in [
            "ring_pos",
            "gpa.ranges[*].pfns",
            "ext_hex[16:24]",
            "rxbuf[*].hex",
        ] {
            assert_eq!(parse(s).to_string(), s);
        }
        assert_eq!(parse("rxbuf[*].hex").top_level(), "rxbuf");
    }

    #[test]
    fn rejects_other_forms() {
        for s in [
            "", "a b", "x[8:4]", "x[4:4]", "x[4:]", "x[:4]", "x[-1:4]", "x[0x4:8]", "x[4:8",
            "[4:8]", "x[*]", "a..b", "a.", ".a", "a.b[4:8]", "a.b[]", "9a",
        ] {
            assert!(s.parse::<IgnoreRule>().is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn checks_and_strips_json() {
        let mut rec = serde_json::json!({
            "ring_pos": 3,
            "payload_hex": "0011223344556677",
            "gpa": {"ranges": [{"pfns": [1], "byte_count": 2}, {"pfns": [2, 3], "byte_count": 4}]},
            "empty": [],
        });
        assert!(parse("ring_pos").check_against(&rec).is_ok());
        assert!(parse("nope").check_against(&rec).is_err());
        assert!(parse("payload_hex[4:8]").check_against(&rec).is_ok());
        assert!(parse("payload_hex[4:9]").check_against(&rec).is_err());
        assert!(parse("ring_pos[0:1]").check_against(&rec).is_err());
        assert!(parse("gpa.ranges[*].pfns").check_against(&rec).is_ok());
        assert!(parse("gpa.ranges[*].nope").check_against(&rec).is_err());
        assert!(parse("empty[*].x").check_against(&rec).is_err());

        parse("gpa.ranges[*].pfns").strip(&mut rec);
        parse("payload_hex[1:3]").strip(&mut rec);
        parse("ring_pos").strip(&mut rec);
        assert_eq!(
            rec,
            serde_json::json!({
                "payload_hex": "00....3344556677",
                "gpa": {"ranges": [{"byte_count": 2}, {"byte_count": 4}]},
                "empty": [],
            })
        );
    }
}
