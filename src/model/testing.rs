//! Test builders of the shared vocabulary, for unit tests, the integration tests and the benchmarks (the
//! `testing` feature): `pod("web-1", "10.0.0.5").ready()`, `selector().label("app", "web")`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

use super::{BoundTarget, GateCondition, Health, Pod, PodGate};

/// A pod builder: `pod("web-1", "10.0.0.5").ready()`.
pub fn pod(name: &str, ip: &str) -> Pod {
    Pod {
        name: name.to_string(),
        phase: "Pending".into(),
        ready: false,
        terminating: false,
        terminating_since: None,
        ips: vec![ip.parse().expect("test IP")],
        ports: vec![("http".into(), 8080)],
        gate: None,
    }
}

impl Pod {
    /// Running with the Ready condition true.
    pub fn ready(mut self) -> Pod {
        self.phase = "Running".into();
        self.ready = true;
        self
    }

    /// Opts into the readiness gate; containers not ready yet, no condition set.
    pub fn gated(mut self) -> Pod {
        self.gate = Some(PodGate::default());
        self
    }

    /// Running with its containers ready; a gated pod is not `Ready` until its gate condition is True.
    pub fn containers_ready(mut self) -> Pod {
        self.phase = "Running".into();
        self.gate.get_or_insert_with(PodGate::default).containers_ready = true;
        self
    }

    /// Its gate condition as it is now.
    pub fn gate_condition(mut self, status: bool, reason: &str, message: &str) -> Pod {
        let condition = GateCondition { status, reason: reason.into(), message: message.into() };
        self.gate.get_or_insert_with(PodGate::default).condition = Some(condition);
        self
    }

    /// Shutting down (deletionTimestamp set).
    pub fn terminating(mut self) -> Pod {
        self.phase = "Running".into();
        self.terminating = true;
        self.terminating_since = Some(1_700_000_000);
        self
    }
}

impl BoundTarget {
    /// Whether CLB sends this target new requests now: healthy and weighted.
    pub fn takes_traffic(&self) -> bool {
        self.health == Health::Healthy && self.weight > 0
    }
}

/// A label selector builder: `selector().label("app", "web").expr("env", "In", &["prod"])`.
pub fn selector() -> LabelSelector {
    LabelSelector::default()
}

/// Adds `matchLabels` and `matchExpressions` to a [`LabelSelector`].
pub trait SelectorExt {
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
