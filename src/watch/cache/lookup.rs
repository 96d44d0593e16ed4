//! What the passes and the watch loop read from the cache: whether a rule can be answered, which rules a change
//! touches, readiness, and the pods a query selects.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use kube::core::{Selector, SelectorExt};

use super::{Cache, CachedPod, Change, Kind, Store};
use crate::desired::Error;
use crate::desired::selector::label_map_selector_string;
use crate::desired::service::service_target;
use crate::model::Pod;
use crate::rules::{PodQuery, PodSource, Rule, RuleId};

impl Cache {
    /// Whether every workload watch of `namespace` has listed once or failed (its pod watch then lists with
    /// their selectors' keys), or the namespace is no longer cached.
    pub(crate) fn workloads_settled(&self, namespace: &str) -> bool {
        self.lock().get(namespace).is_none_or(|ns| {
            ns.workloads.iter().all(|(k, s)| s.settled() || ns.unusable.contains_key(k))
                && ns.services.as_ref().is_none_or(Store::settled)
        })
    }

    /// Whether `rule` can be answered now: the pods of its namespace are synced, and its workload's watch has
    /// listed (or fails, or its kind is unusable: it is answered with why).
    pub(crate) fn is_synced(&self, rule: &Rule) -> bool {
        let namespaces = self.lock();
        let Some(ns) = namespaces.get(&rule.backend.pods.namespace) else { return false };
        let workload_settled = rule.queries().all(|q| match &q.source {
            PodSource::Selector(_) => true,
            PodSource::Workload(w) => {
                ns.unusable.contains_key(&w.kind)
                    || ns.workloads.get(&w.kind).is_some_and(|s| s.synced || s.failure.is_some())
            }
            PodSource::Service(_) => ns.services.as_ref().is_some_and(|s| s.synced || s.failure.is_some()),
        });
        ns.pods.synced && workload_settled
    }

    /// `due` plus every other rule that selects a gated pod a due rule selects: a gated pod's condition depends on
    /// every rule that selects it, and on no other (a pass over more would read load balancers for nothing).
    pub(crate) fn with_gate_neighbours(&self, rules: &[Rule], mut due: Vec<RuleId>) -> Vec<RuleId> {
        let namespaces = self.lock();
        let selects = |rule: &Rule, labels: &BTreeMap<String, String>| {
            namespaces.get(&rule.backend.pods.namespace).is_some_and(|ns| ns.selects(rule, labels))
        };
        let mut gated: Vec<(&str, &BTreeMap<String, String>)> = Vec::new();
        let is_due: BTreeSet<RuleId> = due.iter().copied().collect();
        for rule in rules.iter().filter(|r| is_due.contains(&r.id)) {
            let namespace = rule.backend.pods.namespace.as_str();
            let Some(ns) = namespaces.get(namespace) else { continue };
            let pods = ns.pods.objects.values().filter(|p| p.pod.gate.is_some() && selects(rule, &p.labels));
            gated.extend(pods.map(|p| (namespace, &p.labels)));
        }
        let neighbours = rules.iter().filter(|rule| {
            let namespace = rule.backend.pods.namespace.as_str();
            gated.iter().any(|(ns, labels)| *ns == namespace && selects(rule, labels))
        });
        due.extend(neighbours.map(|r| r.id));
        due.sort_unstable();
        due.dedup();
        due
    }

    /// Ready (`/readyz`) once every watch has listed, until one has been failing for longer than `max_failing`.
    pub fn readiness(&self, now: Instant, max_failing: Duration) -> Result<(), String> {
        let namespaces = self.lock();
        for (name, ns) in namespaces.iter() {
            let workloads = ns.workloads.iter().filter(|(k, _)| !ns.unusable.contains_key(k));
            let workloads = workloads.map(|(k, s)| (Kind::Workloads(k.clone()), s.listed_once, s.failing_since));
            let services = ns.services.iter().map(|s| (Kind::Services, s.listed_once, s.failing_since));
            for (kind, listed, since) in
                [(Kind::Pods, ns.pods.listed_once, ns.pods.failing_since)].into_iter().chain(workloads).chain(services)
            {
                if !listed {
                    return Err(format!("the watch of {} in namespace {name} has not listed yet", kind.name()));
                }
                if let Some(since) = since
                    && now.saturating_duration_since(since) > max_failing
                {
                    return Err(format!(
                        "the watch of {} in namespace {name} has been failing for {}s",
                        kind.name(),
                        now.saturating_duration_since(since).as_secs()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The rules a change can affect.
    pub(crate) fn rules_touched(&self, rules: &[Rule], change: &Change) -> BTreeSet<RuleId> {
        let namespaces = self.lock();
        let namespace = change.namespace();
        let ns = namespaces.get(namespace);
        let touches = |rule: &Rule| match change {
            Change::Resynced { .. } => true,
            Change::Workload { kind, name, .. } => rule
                .queries()
                .any(|q| matches!(&q.source, PodSource::Workload(w) if w.kind == *kind && w.name == *name)),
            Change::Service { name, .. } => {
                rule.queries().any(|q| matches!(&q.source, PodSource::Service(s) if s.name == *name))
            }
            Change::Pod { labels, .. } => labels.iter().any(|l| ns.is_some_and(|ns| ns.selects(rule, l))),
        };
        rules.iter().filter(|r| r.backend.pods.namespace == namespace && touches(r)).map(|r| r.id).collect()
    }

    /// The cached pods of `namespace` that hold any of `ips`; like a query, only from a synced watch.
    pub(super) fn pods_at(&self, namespace: &str, ips: &[IpAddr]) -> Result<Vec<Pod>, Error> {
        let namespaces = self.lock();
        let ns = namespaces.get(namespace).filter(|ns| ns.pods.synced);
        let ns = ns.ok_or_else(|| Error::NotSynced { what: format!("pods in namespace {namespace}") })?;
        let holds = |p: &&CachedPod| p.pod.ips.iter().any(|ip| ips.contains(ip));
        Ok(ns.pods.objects.values().filter(holds).map(|p| p.pod.clone()).collect())
    }

    /// The replicas the workload of `query` asks for, if it is cached and its kind has them.
    pub(super) fn replicas(&self, query: &PodQuery) -> Option<u32> {
        let PodSource::Workload(w) = &query.source else { return None };
        let namespaces = self.lock();
        namespaces.get(&query.namespace)?.workloads.get(&w.kind)?.objects.get(&w.name)?.replicas
    }

    pub(super) fn query(&self, query: &PodQuery) -> Result<Vec<Pod>, Error> {
        let namespaces = self.lock();
        let not_synced =
            |kind: Kind| Error::NotSynced { what: format!("{} in namespace {}", kind.name(), query.namespace) };
        let ns = namespaces.get(&query.namespace).ok_or_else(|| not_synced(Kind::Pods))?;
        let invalid = |reason: &String| Error::InvalidSelector { query: query.to_string(), reason: reason.clone() };
        let by_service;
        let wanted = match &query.source {
            PodSource::Workload(w) => {
                if let Some(reason) = ns.unusable.get(&w.kind) {
                    return Err(Error::UnusableKind { workload: query.to_string(), reason: reason.clone() });
                }
                let store = ns.workloads.get(&w.kind).ok_or_else(|| not_synced(Kind::Workloads(w.kind.clone())))?;
                if !store.synced {
                    return Err(match &store.failure {
                        Some(reason) => Error::WatchFailing {
                            what: format!(
                                "{} in namespace {}",
                                Kind::Workloads(w.kind.clone()).name(),
                                query.namespace
                            ),
                            reason: reason.clone(),
                        },
                        None => not_synced(Kind::Workloads(w.kind.clone())),
                    });
                }
                let workload = store.objects.get(&w.name).ok_or_else(|| crate::desired::kube::not_found(query))?;
                Wanted::Selector(workload.selector.as_ref().map_err(invalid)?)
            }
            PodSource::Service(service) => {
                let def = ns.service(&query.namespace, &service.name)?;
                let labels = service_target(def, &service.port).map_err(|reason| Error::UnusableService {
                    service: format!("service {}/{}", query.namespace, service.name),
                    reason,
                })?;
                label_map_selector_string(&labels.0).map_err(|reason| invalid(&reason))?;
                by_service = labels.0;
                Wanted::Labels(&by_service)
            }
            PodSource::Selector(labels) => {
                label_map_selector_string(labels).map_err(|reason| invalid(&reason))?;
                Wanted::Labels(labels)
            }
        };
        if !ns.pods.synced {
            return Err(not_synced(Kind::Pods));
        }
        Ok(ns.pods.objects.values().filter(|p| wanted.matches(&p.labels)).map(|p| p.pod.clone()).collect())
    }
}

/// The pods a query selects: a workload's selector or a rules-file label map.
pub(super) enum Wanted<'a> {
    Selector(&'a Selector),
    Labels(&'a BTreeMap<String, String>),
}

impl Wanted<'_> {
    pub(super) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Wanted::Selector(s) => s.matches(labels),
            Wanted::Labels(want) => want.iter().all(|(k, v)| labels.get(k) == Some(v)),
        }
    }
}
