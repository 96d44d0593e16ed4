//! Kubernetes label syntax, checked offline so `validate` refuses what the API server would.

/// Why `key` is not a Kubernetes label key (`[prefix/]name`: a DNS subdomain of at most 253 characters, and a name of
/// at most 63 alphanumerics, `-`, `_` or `.`, starting and ending with an alphanumeric), or `None` when it is one.
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if prefix.is_empty() || prefix.len() > 253 || !prefix.split('.').all(label_ok) {
            return Some(format!("the prefix `{prefix}` must be a lowercase DNS subdomain (like example.com)"));
        }
    }
    if name.is_empty() {
        return Some("the name part is empty".into());
    }
    label_value_problem(name)
}

/// Why `value` is not a Kubernetes label value (empty, or at most 63 alphanumerics, `-`, `_` or `.`, starting and
/// ending with an alphanumeric), or `None` when it is one.
pub fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() > 63 {
        return Some(format!("{} characters; the limit is 63", value.len()));
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Some("only letters, digits, `-`, `_` and `.` are allowed".into());
    }
    if !edge(value.chars().next()) || !edge(value.chars().last()) {
        return Some("it must start and end with a letter or digit".into());
    }
    None
}
