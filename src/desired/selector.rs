//! Label selectors as strings: a Kubernetes `LabelSelector` or a rules-file label map to the string a list asks
//! with, and a `scale` subresource's `status.selector` string back to its requirements.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Turns a Deployment's `spec.selector` into a label-selector string (`a=b,c in (d,e),!f`). Refuses an empty
/// selector, which would select every pod in the namespace, and malformed requirements. Requirements are
/// sorted, so equal selectors give equal strings (one list per distinct selector).
pub(crate) fn label_selector_string(selector: &LabelSelector) -> Result<String, String> {
    let mut parts: Vec<String> = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        parts.push(format!("{key}={value}"));
    }
    for req in selector.match_expressions.iter().flatten() {
        let key = &req.key;
        if key.is_empty() {
            return Err("a matchExpressions entry has an empty key".to_owned());
        }
        let mut values: Vec<&str> = req.values.iter().flatten().map(String::as_str).collect();
        values.sort_unstable();
        values.dedup();
        let part = match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!("operator {} on key `{key}` needs at least one value", req.operator));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!("operator {} on key `{key}` must not have values", req.operator));
            }
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => return Err(format!("unknown operator `{other}` on key `{key}`")),
        };
        parts.push(part);
    }
    if parts.is_empty() {
        return Err("the selector is empty and would select every pod in the namespace".to_owned());
    }
    parts.sort();
    parts.dedup();
    Ok(parts.join(","))
}

/// Parses a label-selector string (`a=b,c!=d,e in (f,g),h notin (i),j,!k`), as a `scale` subresource's
/// `status.selector` holds it, into the requirements it stands for.
pub(crate) fn parse_selector_string(text: &str) -> Result<LabelSelector, String> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement as Req;
    let mut selector = LabelSelector::default();
    let (mut parts, mut depth, mut start) = (Vec::new(), 0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    let req = |key: &str, operator: &str, values: Option<Vec<String>>| Req {
        key: key.trim().to_owned(),
        operator: operator.to_owned(),
        values,
    };
    let set = |v: &str| -> Result<Vec<String>, String> {
        let inner = v.trim().strip_prefix('(').and_then(|v| v.strip_suffix(')'));
        let inner = inner.ok_or_else(|| format!("expected `(values)` in `{text}`"))?;
        Ok(inner.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect())
    };
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let exprs = selector.match_expressions.get_or_insert_default();
        if let Some(key) = part.strip_prefix('!') {
            exprs.push(req(key, "DoesNotExist", None));
        } else if let Some((key, values)) = part.split_once(" notin ") {
            exprs.push(req(key, "NotIn", Some(set(values)?)));
        } else if let Some((key, values)) = part.split_once(" in ") {
            exprs.push(req(key, "In", Some(set(values)?)));
        } else if let Some((key, value)) = part.split_once("!=") {
            exprs.push(req(key, "NotIn", Some(vec![value.trim().to_owned()])));
        } else if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
            let labels = selector.match_labels.get_or_insert_default();
            labels.insert(key.trim().to_owned(), value.trim().to_owned());
        } else if part.contains([' ', '(', ')', '=', '<', '>']) {
            return Err(format!("cannot read the requirement `{part}` of selector `{text}`"));
        } else {
            exprs.push(req(part, "Exists", None));
        }
    }
    Ok(selector)
}

/// Turns a rules-file label map into a selector string, refusing an empty map and characters that could
/// change the meaning of the selector (`,`, `!`, `(`, spaces, ...).
pub(crate) fn label_map_selector_string(labels: &BTreeMap<String, String>) -> Result<String, String> {
    if labels.is_empty() {
        return Err("the selector is empty and would select every pod in the namespace".to_owned());
    }
    let key_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    let value_ok = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let mut out = String::new();
    for (key, value) in labels {
        if !key_ok(key) {
            return Err(format!("`{key}` is not a valid label key"));
        }
        if !value_ok(value) {
            return Err(format!("`{value}` (label `{key}`) is not a valid label value"));
        }
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{key}={value}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::{SelectorExt, selector};

    // ---- selectors ----

    #[test]
    fn match_labels_become_equality_requirements() {
        let s = selector().label("app", "web").label("tier", "frontend");
        assert_eq!(label_selector_string(&s).unwrap(), "app=web,tier=frontend");
    }

    #[test]
    fn all_four_operators_are_converted() {
        let s = selector()
            .expr("env", "In", &["prod", "canary"])
            .expr("track", "NotIn", &["debug"])
            .expr("app", "Exists", &[])
            .expr("legacy", "DoesNotExist", &[]);
        assert_eq!(label_selector_string(&s).unwrap(), "!legacy,app,env in (canary,prod),track notin (debug)");
    }

    #[test]
    fn labels_and_expressions_combine_and_sort_so_equal_selectors_share_a_list() {
        let a = selector().label("app", "web").expr("env", "In", &["b", "a"]);
        let b = selector().expr("env", "In", &["a", "b"]).label("app", "web");
        assert_eq!(label_selector_string(&a).unwrap(), "app=web,env in (a,b)");
        assert_eq!(label_selector_string(&a), label_selector_string(&b));
    }

    /// Issue 29: a scale subresource's `status.selector` string reads back as the requirements it was written from.
    #[test]
    fn a_scale_status_selector_string_parses_into_its_requirements() {
        let text = "app=web,tier==front,env in (a, b),track notin (debug),!legacy,canary,zone!=x";
        let parsed = label_selector_string(&parse_selector_string(text).unwrap()).unwrap();
        assert_eq!(parsed, "!legacy,app=web,canary,env in (a,b),tier=front,track notin (debug),zone notin (x)");
        assert!(parse_selector_string("app in web").is_err());
        assert!(parse_selector_string("a b").is_err());
    }

    #[test]
    fn empty_selector_is_refused_because_it_selects_every_pod() {
        let err = label_selector_string(&selector()).unwrap_err();
        assert!(err.contains("every pod"), "{err}");
        let err = label_selector_string(&LabelSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: Some(vec![]),
        })
        .unwrap_err();
        assert!(err.contains("every pod"), "{err}");
    }

    #[test]
    fn malformed_requirements_are_refused() {
        for (s, want) in [
            (selector().expr("env", "In", &[]), "needs at least one value"),
            (selector().expr("env", "NotIn", &[]), "needs at least one value"),
            (selector().expr("env", "Exists", &["x"]), "must not have values"),
            (selector().expr("env", "Gt", &["1"]), "unknown operator `Gt`"),
            (selector().expr("", "Exists", &[]), "empty key"),
        ] {
            let err = label_selector_string(&s).unwrap_err();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn rules_label_maps_become_selectors_and_unsafe_characters_are_refused() {
        let labels = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(
            label_map_selector_string(&labels(&[("tier", "fe"), ("app.kubernetes.io/name", "web")])).unwrap(),
            "app.kubernetes.io/name=web,tier=fe"
        );
        assert!(label_map_selector_string(&labels(&[])).unwrap_err().contains("every pod"));
        assert!(label_map_selector_string(&labels(&[("app", "web,env=prod")])).is_err());
        assert!(label_map_selector_string(&labels(&[("!app", "web")])).is_err());
        assert_eq!(label_map_selector_string(&labels(&[("app", "")])).unwrap(), "app=");
    }
}
