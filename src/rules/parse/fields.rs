//! Reading one YAML mapping's fields: unknown keys (with a suggestion), missing ones, and the type and range of
//! each value, each problem recorded with its position.

use serde_yaml::Value;

use super::super::spans::join_key;
use super::{Validator, problem};

/// A mapping being validated: reports unknown keys and missing ones against a known key list.
pub(super) struct Fields<'a> {
    pub(super) path: String,
    map: &'a serde_yaml::Mapping,
}

impl Validator {
    /// Checks `value` is a mapping without unknown keys; `None` (with a problem recorded) otherwise.
    pub(super) fn fields<'a>(&mut self, path: &str, value: &'a Value, known: &[&str]) -> Option<Fields<'a>> {
        let Value::Mapping(map) = value else {
            self.err(path, format!("expected a map with {}, got {}", known.join(", "), kind(value)));
            return None;
        };
        for key in map.keys() {
            match key.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => {
                    let p = join_key(path, k);
                    let pos = self.spans.key(&p);
                    let hint = suggest(k, known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                    self.problems.push(problem(
                        pos,
                        &p,
                        format!("unknown field{hint}; expected one of {}", known.join(", ")),
                    ));
                }
                None => self.err(path, format!("keys must be strings, got {}", kind(key))),
            }
        }
        Some(Fields { path: path.to_string(), map })
    }

    pub(super) fn string(&mut self, f: &Fields<'_>, key: &str, required: bool) -> Option<String> {
        let path = join_key(&f.path, key);
        match f.get(key) {
            None if required => {
                self.err(&f.path, format!("missing field `{key}`"));
                None
            }
            None => None,
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.err(&path, "must not be empty");
                None
            }
            Some(Value::String(s)) => match s.chars().find(|&c| crate::model::is_unprintable(c)) {
                Some(c) => {
                    let what = if c.is_control() {
                        "a control character"
                    } else {
                        "a bidirectional formatting character, which reorders what follows it on screen"
                    };
                    let message = format!("contains U+{:04X}, {what}: remove it", u32::from(c));
                    self.err(&path, message);
                    None
                }
                None => Some(s.clone()),
            },
            Some(other) => {
                self.err(&path, format!("expected a string, got {}", kind(other)));
                None
            }
        }
    }

    pub(super) fn int(&mut self, f: &Fields<'_>, key: &str, min: i64, max: i64, default: Option<i64>) -> Option<i64> {
        let path = join_key(&f.path, key);
        match f.get(key) {
            None => {
                if default.is_none() {
                    self.err(&f.path, format!("missing field `{key}`"));
                }
                default
            }
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Some(i),
                _ => {
                    self.err(&path, format!("expected {min}..{max}, got {n}"));
                    None
                }
            },
            Some(other) => {
                self.err(&path, format!("expected an integer {min}..{max}, got {}", kind(other)));
                None
            }
        }
    }

    pub(super) fn bool(&mut self, f: &Fields<'_>, key: &str) -> Option<bool> {
        match f.get(key) {
            None => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.err(&join_key(&f.path, key), format!("expected true or false, got {}", kind(other)));
                None
            }
        }
    }

    /// An optional or required id with a prefix, e.g. `lb-` + 8 lowercase letters or digits.
    pub(super) fn id(&mut self, f: &Fields<'_>, key: &str, prefix: &str, required: bool) -> Option<String> {
        let s = self.string(f, key, required)?;
        if is_tencent_id(&s, prefix) {
            Some(s)
        } else {
            self.err(&join_key(&f.path, key), format!("expected an id like `{prefix}1a2b3c4d`, got `{s}`"));
            None
        }
    }

    pub(super) fn list<'a>(&mut self, f: &Fields<'a>, key: &str, required: bool) -> Option<&'a Vec<Value>> {
        let path = join_key(&f.path, key);
        match f.get(key) {
            None => {
                if required {
                    self.err(&f.path, format!("missing field `{key}`"));
                }
                None
            }
            Some(Value::Sequence(items)) if items.is_empty() => {
                self.err(&path, format!("`{key}` is empty"));
                None
            }
            Some(Value::Sequence(items)) => Some(items),
            Some(other) => {
                self.err(&path, format!("expected a list, got {}", kind(other)));
                None
            }
        }
    }
}

impl<'a> Fields<'a> {
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }
}

pub(super) fn kind(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string \"{s}\""),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
        Value::Tagged(t) => format!("tagged value {}", t.tag),
    }
}

/// Label keys and values must be YAML strings; `tier: 1` is a number and is refused with a hint to quote it.
pub(super) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn is_tencent_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

pub(super) fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// IANA service name, as Kubernetes requires of container port names.
pub(super) fn is_port_name(s: &str) -> bool {
    is_dns_label(s, 15) && s.bytes().any(|b| b.is_ascii_lowercase()) && !s.contains("--")
}

/// The known key closest to a typo, if any is within two edits.
fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known.iter().copied().map(|k| (edit_distance(key, k), k)).filter(|(d, _)| *d <= 2).min().map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
