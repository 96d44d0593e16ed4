//! An in-memory cluster: drives the engine without a Kubernetes API server (unit tests, benchmarks).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;

use super::service::ServiceDef;
use super::{Cluster, Error};
use crate::model::{GateCondition, Pod, Selected};
use crate::rules::PodQuery;

/// Pods per query; a query mapped to `Err` fails with that message. Counts the lists made and records the gate
/// conditions written.
#[derive(Default)]
pub struct MemoryCluster {
    pub pods: BTreeMap<PodQuery, Result<Vec<Pod>, String>>,
    /// Services by (namespace, name); a missing one is not found.
    pub services: BTreeMap<(String, String), ServiceDef>,
    /// The `spec.replicas` of a query's workload, when it has one.
    pub replicas: BTreeMap<PodQuery, u32>,
    pub lists: Mutex<usize>,
    /// `(namespace, pod, condition, transition)` of every condition written, in order.
    pub conditions: Mutex<Vec<(String, String, GateCondition, bool)>>,
    /// Set: every condition write fails with this message.
    pub condition_error: Option<String>,
}

impl Cluster for MemoryCluster {
    async fn pods(&self, query: &PodQuery) -> Result<Vec<Pod>, Error> {
        *self.lists.lock().expect("lock") += 1;
        match self.pods.get(query) {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(e)) => Err(unreachable(query, e)),
            None => Err(unreachable(query, "no such test query")),
        }
    }

    async fn service(&self, namespace: &str, name: &str) -> Result<ServiceDef, Error> {
        let key = (namespace.to_owned(), name.to_owned());
        self.services.get(&key).cloned().ok_or_else(|| super::kube::service_not_found(namespace, name))
    }

    async fn listed(&self, query: &PodQuery) -> Result<Selected, Error> {
        let replicas = self.replicas.get(query).copied();
        Ok(Selected { replicas, ..Selected::from(self.pods(query).await?) })
    }

    /// Every pod of every query of `namespace` that holds one of `ips` (a failed query fails the lookup).
    async fn pods_at(&self, namespace: &str, ips: &[IpAddr]) -> Result<Vec<Pod>, Error> {
        let mut out: Vec<Pod> = Vec::new();
        for (query, pods) in self.pods.iter().filter(|(q, _)| q.namespace == namespace) {
            let pods = pods.as_ref().map_err(|e| unreachable(query, e))?;
            for p in pods.iter().filter(|p| p.ips.iter().any(|ip| ips.contains(ip))) {
                if !out.iter().any(|o| o.name == p.name) {
                    out.push(p.clone());
                }
            }
        }
        Ok(out)
    }

    async fn set_pod_condition(
        &self,
        namespace: &str,
        pod: &str,
        condition: &GateCondition,
        transition: bool,
    ) -> Result<(), Error> {
        if let Some(e) = &self.condition_error {
            let query = format!("pod {namespace}/{pod}");
            return Err(Error::Unreachable { server: "the in-memory cluster".into(), what: query, cause: e.clone() });
        }
        let written = (namespace.to_string(), pod.to_string(), condition.clone(), transition);
        self.conditions.lock().expect("lock").push(written);
        Ok(())
    }
}

/// The error of an injected list failure: the API server "could not be reached".
fn unreachable(query: &PodQuery, cause: &str) -> Error {
    Error::Unreachable { server: "the in-memory cluster".into(), what: format!("list {query}"), cause: cause.into() }
}
