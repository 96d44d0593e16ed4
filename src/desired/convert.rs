//! Pure conversions between Kubernetes objects and clbsync's words: selectors to label-selector strings, and
//! pods (decoded into [`MinimalPod`], or typed in watch mode) to [`Pod`]s that keep only what clbsync reads.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod as K8sPod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;

use crate::model::{GATE_CONDITION, GateCondition, Pod, PodGate};

/// Turns a Deployment's `spec.selector` into a label-selector string (`a=b,c in (d,e),!f`). Refuses an empty
/// selector, which would select every pod in the namespace, and malformed requirements. Requirements are
/// sorted, so equal selectors give equal strings (one list per distinct selector).
pub fn label_selector_string(selector: &LabelSelector) -> Result<String, String> {
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
pub fn parse_selector_string(text: &str) -> Result<LabelSelector, String> {
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
pub fn labels_selector_string(labels: &BTreeMap<String, String>) -> Result<String, String> {
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

/// A pod as clbsync decodes pod lists: only the fields it reads. Decoding k8s-openapi's whole `Pod` (managed
/// fields, env, volumes, every status) costs several times the CPU and memory (BENCHMARKS.md, "Pod decoding").
/// A field clbsync starts to read is one line in these structs, one in `From<K8sPod>` (watch mode decodes the
/// typed `Pod`) and its use in [`pod_from_minimal`].
#[derive(Clone, Debug, Default, Deserialize)]
pub struct MinimalPod {
    #[serde(default)]
    pub metadata: MinimalMeta,
    #[serde(default)]
    pub spec: Option<MinimalSpec>,
    #[serde(default)]
    pub status: Option<MinimalStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinimalMeta {
    #[serde(default)]
    pub name: Option<String>,
    /// RFC 3339; set when the pod is shutting down: the deletion time plus its grace period.
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
    #[serde(default)]
    pub deletion_grace_period_seconds: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinimalSpec {
    #[serde(default)]
    pub containers: Option<Vec<MinimalContainer>>,
    #[serde(default)]
    pub readiness_gates: Option<Vec<MinimalReadinessGate>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinimalReadinessGate {
    pub condition_type: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct MinimalContainer {
    #[serde(default)]
    pub ports: Option<Vec<MinimalPort>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinimalPort {
    #[serde(default)]
    pub name: Option<String>,
    pub container_port: i32,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MinimalStatus {
    #[serde(default)]
    pub phase: Option<String>,
    #[serde(default)]
    pub conditions: Option<Vec<MinimalCondition>>,
    #[serde(default, rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(default, rename = "podIPs")]
    pub pod_ips: Option<Vec<MinimalPodIp>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct MinimalCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct MinimalPodIp {
    pub ip: String,
}

impl From<K8sPod> for MinimalPod {
    fn from(pod: K8sPod) -> Self {
        MinimalPod {
            metadata: MinimalMeta {
                name: pod.metadata.name,
                deletion_timestamp: pod.metadata.deletion_timestamp.map(|t| t.0.to_string()),
                deletion_grace_period_seconds: pod.metadata.deletion_grace_period_seconds,
            },
            spec: pod.spec.map(|spec| MinimalSpec {
                containers: Some(
                    spec.containers
                        .into_iter()
                        .map(|c| MinimalContainer {
                            ports: c.ports.map(|ports| {
                                ports
                                    .into_iter()
                                    .map(|p| MinimalPort { name: p.name, container_port: p.container_port })
                                    .collect()
                            }),
                        })
                        .collect(),
                ),
                readiness_gates: spec.readiness_gates.map(|gates| {
                    gates.into_iter().map(|g| MinimalReadinessGate { condition_type: g.condition_type }).collect()
                }),
            }),
            status: pod.status.map(|status| MinimalStatus {
                phase: status.phase,
                conditions: status.conditions.map(|conditions| {
                    conditions
                        .into_iter()
                        .map(|c| MinimalCondition {
                            type_: c.type_,
                            status: c.status,
                            reason: c.reason,
                            message: c.message,
                        })
                        .collect()
                }),
                pod_ip: status.pod_ip,
                pod_ips: status.pod_ips.map(|ips| ips.into_iter().map(|ip| MinimalPodIp { ip: ip.ip }).collect()),
            }),
        }
    }
}

/// Keeps what clbsync needs from a typed Kubernetes pod (watch mode): see [`pod_from_minimal`].
pub fn pod_from_k8s(pod: K8sPod) -> Pod {
    pod_from_minimal(pod.into())
}

/// Keeps what clbsync needs from a Kubernetes pod. IPs that do not parse are dropped with a warning (the
/// API server validates them, so this does not happen in practice).
pub fn pod_from_minimal(pod: MinimalPod) -> Pod {
    let name = pod.metadata.name.unwrap_or_default();
    let terminating = pod.metadata.deletion_timestamp.is_some();
    // The API server sets deletionTimestamp to the end of the grace period: the deletion began that much earlier.
    let grace = pod.metadata.deletion_grace_period_seconds.unwrap_or(0);
    let terminating_since = pod
        .metadata
        .deletion_timestamp
        .as_deref()
        .and_then(|t| t.parse::<k8s_openapi::jiff::Timestamp>().ok().map(|t| t.as_second().saturating_sub(grace)));
    let status = pod.status.unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let conditions = status.conditions.unwrap_or_default();
    let is_true = |type_: &str| conditions.iter().any(|c| c.type_ == type_ && c.status == "True");
    let ready = is_true("Ready");
    let gated =
        pod.spec.iter().flat_map(|s| s.readiness_gates.iter().flatten()).any(|g| g.condition_type == GATE_CONDITION);
    let gate = gated.then(|| PodGate {
        containers_ready: is_true("ContainersReady"),
        condition: conditions.iter().find(|c| c.type_ == GATE_CONDITION).map(|c| GateCondition {
            status: c.status == "True",
            reason: c.reason.clone().unwrap_or_default(),
            message: c.message.clone().unwrap_or_default(),
        }),
    });
    let raw_ips: Vec<String> = match status.pod_ips.filter(|ips| !ips.is_empty()) {
        Some(ips) => ips.into_iter().map(|ip| ip.ip).collect(),
        None => status.pod_ip.into_iter().filter(|ip| !ip.is_empty()).collect(),
    };
    let mut ips: Vec<IpAddr> = Vec::with_capacity(raw_ips.len());
    for raw in raw_ips {
        match raw.parse() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(pod = %name, ip = %raw, "ignoring a pod IP that does not parse")
            }
        }
    }
    let mut ports: Vec<(String, u16)> = Vec::new();
    for container in pod.spec.and_then(|s| s.containers).into_iter().flatten() {
        for port in container.ports.into_iter().flatten() {
            let (Some(port_name), Ok(number)) = (port.name, u16::try_from(port.container_port)) else {
                continue;
            };
            if !ports.iter().any(|(n, _)| *n == port_name) {
                ports.push((port_name, number));
            }
        }
    }
    Pod { name, phase, ready, terminating, terminating_since, ips, ports, gate }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Container, ContainerPort, PodCondition, PodIP, PodReadinessGate, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta, Time};

    use super::*;

    // ---- builders ----

    fn selector() -> LabelSelector {
        LabelSelector::default()
    }

    trait SelectorExt {
        fn label(self, k: &str, v: &str) -> Self;
        fn expr(self, k: &str, op: &str, values: &[&str]) -> Self;
    }

    impl SelectorExt for LabelSelector {
        fn label(mut self, k: &str, v: &str) -> Self {
            self.match_labels.get_or_insert_with(BTreeMap::new).insert(k.into(), v.into());
            self
        }
        fn expr(mut self, k: &str, op: &str, values: &[&str]) -> Self {
            let values = (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect());
            self.match_expressions.get_or_insert_with(Vec::new).push(LabelSelectorRequirement {
                key: k.into(),
                operator: op.into(),
                values,
            });
            self
        }
    }

    struct PodBuilder(K8sPod);

    fn pod(name: &str) -> PodBuilder {
        PodBuilder(K8sPod {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus::default()),
        })
    }

    impl PodBuilder {
        fn status(&mut self) -> &mut PodStatus {
            self.0.status.as_mut().expect("builder always sets status")
        }
        fn phase(mut self, phase: &str) -> Self {
            self.status().phase = Some(phase.into());
            self
        }
        fn condition(mut self, type_: &str, status: &str) -> Self {
            self.status().conditions.get_or_insert_with(Vec::new).push(PodCondition {
                type_: type_.into(),
                status: status.into(),
                ..Default::default()
            });
            self
        }
        fn ready(self) -> Self {
            self.phase("Running").condition("Ready", "True")
        }
        fn pod_ip(mut self, ip: &str) -> Self {
            self.status().pod_ip = Some(ip.into());
            self
        }
        fn pod_ips(mut self, ips: &[&str]) -> Self {
            self.status().pod_ips = Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
            self
        }
        fn deleting(mut self) -> Self {
            let at = k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("a valid time");
            self.0.metadata.deletion_timestamp = Some(Time(at));
            self
        }
        fn container(mut self, name: &str, ports: &[(Option<&str>, i32)]) -> Self {
            let ports = ports
                .iter()
                .map(|(n, p)| ContainerPort { name: n.map(Into::into), container_port: *p, ..Default::default() })
                .collect();
            let spec = self.0.spec.as_mut().expect("builder always sets spec");
            spec.containers.push(Container { name: name.into(), ports: Some(ports), ..Default::default() });
            self
        }
        fn readiness_gate(mut self, condition_type: &str) -> Self {
            let spec = self.0.spec.as_mut().expect("builder always sets spec");
            spec.readiness_gates
                .get_or_insert_with(Vec::new)
                .push(PodReadinessGate { condition_type: condition_type.into() });
            self
        }
        fn gate_condition(mut self, status: &str, reason: &str, message: &str) -> Self {
            self.status().conditions.get_or_insert_with(Vec::new).push(PodCondition {
                type_: GATE_CONDITION.into(),
                status: status.into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                ..Default::default()
            });
            self
        }
        /// Converts the pod both ways: typed (watch mode), and as JSON decoded into [`MinimalPod`] (lists),
        /// which must agree.
        fn convert(self) -> Pod {
            let json = serde_json::to_string(&self.0).expect("a pod serialises");
            let listed = pod_from_minimal(serde_json::from_str(&json).expect("a pod decodes into MinimalPod"));
            let watched = pod_from_k8s(self.0);
            assert_eq!(listed, watched, "decoding only the fields read gives the same pod");
            watched
        }
    }

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
            labels_selector_string(&labels(&[("tier", "fe"), ("app.kubernetes.io/name", "web")])).unwrap(),
            "app.kubernetes.io/name=web,tier=fe"
        );
        assert!(labels_selector_string(&labels(&[])).unwrap_err().contains("every pod"));
        assert!(labels_selector_string(&labels(&[("app", "web,env=prod")])).is_err());
        assert!(labels_selector_string(&labels(&[("!app", "web")])).is_err());
        assert_eq!(labels_selector_string(&labels(&[("app", "")])).unwrap(), "app=");
    }

    // ---- pods ----

    #[test]
    fn ready_running_pod_keeps_phase_readiness_ip_and_named_ports() {
        let p = pod("web-0")
            .ready()
            .pod_ip("10.0.0.5")
            .container("web", &[(Some("http"), 8080), (None, 9000)])
            .container("sidecar", &[(Some("metrics"), 9100), (Some("http"), 1)])
            .convert();
        assert_eq!(
            p,
            Pod {
                name: "web-0".into(),
                phase: "Running".into(),
                ready: true,
                terminating: false,
                terminating_since: None,
                ips: vec!["10.0.0.5".parse().unwrap()],
                ports: vec![("http".into(), 8080), ("metrics".into(), 9100)],
                gate: None,
            }
        );
    }

    #[test]
    fn ready_condition_must_be_true() {
        assert!(!pod("a").phase("Running").condition("Ready", "False").convert().ready);
        assert!(!pod("b").phase("Running").condition("ContainersReady", "True").convert().ready);
        assert!(!pod("c").phase("Pending").convert().ready);
    }

    #[test]
    fn deletion_timestamp_means_terminating_since_then() {
        let p = pod("a").ready().deleting().convert();
        assert_eq!((p.terminating, p.terminating_since), (true, Some(1_700_000_000)));
        let minimal: MinimalPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "b", "deletionTimestamp": "2023-11-14T22:13:50Z", "deletionGracePeriodSeconds": 30}
        }))
        .expect("a pod");
        assert_eq!(pod_from_minimal(minimal).terminating_since, Some(1_700_000_000), "the deadline less the grace");
        assert!(!pod("c").ready().convert().terminating);
    }

    #[test]
    fn pod_ips_win_over_pod_ip_and_keep_their_order() {
        let p = pod("a").pod_ip("10.0.0.1").pod_ips(&["10.0.0.1", "fd00::1"]).convert();
        assert_eq!(p.ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::1".parse().unwrap()]);
        let p = pod("b").pod_ip("fd00::2").pod_ips(&[]).convert();
        assert_eq!(p.ips, vec!["fd00::2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn pod_without_status_has_no_ip_and_is_not_ready() {
        let p = pod_from_k8s(K8sPod {
            metadata: ObjectMeta { name: Some("x".into()), ..Default::default() },
            ..Default::default()
        });
        assert_eq!((p.phase.as_str(), p.ready, p.ips.len(), p.ports.len()), ("", false, 0, 0));
    }

    #[test]
    fn unparsable_ips_and_out_of_range_ports_are_dropped() {
        let p = pod("a").pod_ips(&["not-an-ip", "10.0.0.9"]).container("c", &[(Some("big"), 70000)]).convert();
        assert_eq!(p.ips, vec!["10.0.0.9".parse::<IpAddr>().unwrap()]);
        assert!(p.ports.is_empty());
    }

    // ---- readiness gate ----

    #[test]
    fn a_pod_without_our_readiness_gate_has_no_gate() {
        assert_eq!(pod("a").ready().convert().gate, None);
        assert_eq!(pod("b").ready().readiness_gate("example.com/other").convert().gate, None);
    }

    #[test]
    fn a_gated_pod_keeps_containers_ready_and_its_current_condition() {
        let p = pod("a")
            .phase("Running")
            .condition("ContainersReady", "True")
            .readiness_gate("example.com/other")
            .readiness_gate(GATE_CONDITION)
            .gate_condition("False", "WaitingForHealthCheck", "bound; health checks pending")
            .convert();
        assert!(!p.ready);
        assert_eq!(
            p.gate,
            Some(PodGate {
                containers_ready: true,
                condition: Some(GateCondition {
                    status: false,
                    reason: "WaitingForHealthCheck".into(),
                    message: "bound; health checks pending".into(),
                }),
            })
        );
        let fresh = pod("b").phase("Running").readiness_gate(GATE_CONDITION).convert();
        assert_eq!(fresh.gate, Some(PodGate { containers_ready: false, condition: None }));
    }
}
