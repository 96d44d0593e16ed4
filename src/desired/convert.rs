//! Pods as clbsync keeps them: decoded into [`MinimalPod`] (lists) or typed (watch mode), reduced to the [`Pod`]
//! fields the planner reads.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod as K8sPod;
use serde::Deserialize;

use crate::model::{GATE_CONDITION, GateCondition, Pod, PodGate};

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
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    use super::*;

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
