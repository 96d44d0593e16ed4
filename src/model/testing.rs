//! Test builders of the shared vocabulary, for unit tests, the integration tests and the benchmarks (the
//! `testing` feature): `pod("web-1", "10.0.0.5").ready()`.

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
