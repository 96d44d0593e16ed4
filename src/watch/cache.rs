//! The watch cache: what the pod and workload watches last said, per namespace, reduced to the fields clbsync
//! reads ([`Pod`], with its readiness-gate fields, plus the labels selectors match on, and a workload's
//! selector). Deployments are watched in every namespace, the other workload kinds and Services where a rule names
//! them.
//!
//! A pod keeps only the labels whose keys some selector of its namespace uses (the rules' own, and those of the
//! workloads and Services the rules name): a cached pod's size is bounded by the selectors, not by what is put on
//! pods, and a workload no rule names (anyone who may create Deployments in the namespace can make one) cannot
//! grow the keys and so make the pods be listed again at will. When a selector
//! with a new key appears, the namespace's pods are not synced until its pod watch has listed again with that key
//! ([`Cache::take_relist`]), so no query is answered from pods cached without a label it matches on. Through [`CachedCluster`] it is a second [`Cluster`](crate::desired::Cluster): the planner gets the same `Vec<Pod>` it would
//! get from a LIST, and gate conditions are written to the API.
//!
//! A namespace whose watch has not listed yet, or has failed since (API server unreachable, 403, ...), is
//! **not synced**: its queries fail with [`Error::NotSynced`] and their rules are skipped, never planned against
//! an empty or stale set. The last known objects are kept; a restarted watch lists again and replaces them
//! at once when the list is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Instant;

use k8s_openapi::api::core::v1::Pod as K8sPod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use kube::runtime::watcher::Event;

use crate::desired::convert::pod_from_k8s;
use crate::desired::kube::service_not_found;
use crate::desired::selector::label_selector_string;
use crate::desired::service::ServiceDef;
use crate::model::Pod;
use crate::rules::{PodQuery, PodSource, Rule, Workload, WorkloadKind};

mod cluster;
mod lookup;
mod services;
mod store;

pub(crate) use cluster::CachedCluster;
use lookup::Wanted;
use store::{EventKind, Step, Store, split};

/// What is watched in a namespace: its pods, workloads of one kind, or its Services.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Pods,
    Workloads(WorkloadKind),
    Services,
}

impl Kind {
    /// `pods`, `statefulsets`, `rollout.argoproj.io`, `services`.
    pub fn name(&self) -> String {
        match self {
            Kind::Pods => "pods".to_owned(),
            Kind::Workloads(k) => k.built_in_resource().map_or_else(|| k.to_string(), str::to_owned),
            Kind::Services => "services".to_owned(),
        }
    }
}

/// What one namespace's rules select by: the label keys of their own selectors, and the workloads and Services
/// they name (only those add their selectors' keys).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub keys: BTreeSet<String>,
    pub workloads: BTreeSet<Workload>,
    pub services: BTreeSet<String>,
}

impl Scope {
    /// The workload kinds the rules name.
    pub fn kinds(&self) -> BTreeSet<WorkloadKind> {
        self.workloads.iter().map(|w| w.kind.clone()).collect()
    }
}

/// An object whose selector a rule may use: a workload or a Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Named {
    Workload(Workload),
    Service(String),
}

/// A pod as cached: what the planner reads, and the labels selectors match on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CachedPod {
    pub labels: BTreeMap<String, String>,
    pub pod: Pod,
}

impl CachedPod {
    /// The pod reduced to what the planner reads and its labels with one of `keys`.
    pub(crate) fn from_k8s(mut pod: K8sPod, keys: &BTreeSet<String>) -> Self {
        let mut labels = pod.metadata.labels.take().unwrap_or_default();
        labels.retain(|k, _| keys.contains(k));
        CachedPod { labels, pod: pod_from_k8s(pod) }
    }
}

/// The label keys a Kubernetes selector matches on.
fn selector_keys(selector: &LabelSelector) -> impl Iterator<Item = &String> {
    let labels = selector.match_labels.iter().flat_map(|m| m.keys());
    labels.chain(selector.match_expressions.iter().flatten().map(|e| &e.key))
}

/// A workload as cached: its selector, or why it cannot be used; and the replicas it asks for, where its kind has
/// them (the source sanity check compares them with the pods listed).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CachedWorkload {
    selector: Result<Selector, String>,
    replicas: Option<u32>,
}

/// A workload as its watch reports it: its name and selector, or why it has none clbsync can use, and its
/// `spec.replicas` (a scalable kind's scale's), if it has one.
#[derive(Clone, Debug)]
pub(crate) struct Reported {
    pub name: String,
    pub selector: Result<LabelSelector, String>,
    pub replicas: Option<u32>,
}

/// Reduces a workload to what is cached; an empty or malformed selector is kept as the reason it is refused.
fn cached(reported: &Reported) -> CachedWorkload {
    let selector = reported.selector.clone().and_then(|selector| {
        label_selector_string(&selector)?;
        Selector::try_from(selector).map_err(|e| e.to_string())
    });
    CachedWorkload { selector, replicas: reported.replicas }
}

/// What a watch event changed that can matter to a rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A pod appeared, went away, or changed in a field clbsync reads; the labels before and after (a label
    /// change can move a pod between rules).
    Pod { namespace: String, labels: Vec<BTreeMap<String, String>> },
    /// A workload appeared, went away or got another selector.
    Workload { namespace: String, kind: WorkloadKind, name: String },
    /// A Service appeared, went away, or got another selector or ports.
    Service { namespace: String, name: String },
    /// A watch (re)listed: every rule of the namespace may have changed.
    Resynced { namespace: String },
}

impl Change {
    pub fn namespace(&self) -> &str {
        match self {
            Change::Pod { namespace, .. }
            | Change::Workload { namespace, .. }
            | Change::Service { namespace, .. }
            | Change::Resynced { namespace } => namespace,
        }
    }
}

#[derive(Debug, Default)]
struct Namespace {
    pods: Store<CachedPod>,
    /// One store per workload kind watched: Deployments always, another kind while a rule names it.
    workloads: BTreeMap<WorkloadKind, Store<CachedWorkload>>,
    /// The workload kinds of this namespace that cannot be watched (unknown to the API server, or without a
    /// `scale` subresource), and why.
    unusable: BTreeMap<WorkloadKind, String>,
    /// The label keys pods keep: every key a selector of this namespace uses. It only grows.
    keys: BTreeSet<String>,
    /// Bumped each time `keys` grows.
    keys_generation: u64,
    /// The keys grew since the pod watch last (re)started: it must list again.
    relist: bool,
    /// The workloads and Services the rules name: only their selectors' keys are kept.
    named: BTreeSet<Named>,
    /// The label keys of each cached workload's and Service's selector, whether named or not (a rule may name it
    /// later).
    selector_keys: BTreeMap<Named, Vec<String>>,
    /// The Services, while a rule names one.
    services: Option<Store<ServiceDef>>,
}

impl Namespace {
    /// The cached selector of workload `kind/name`, if its kind is watched and it exists.
    fn selector(&self, kind: &WorkloadKind, name: &str) -> Option<&Selector> {
        self.workloads.get(kind)?.objects.get(name)?.selector.as_ref().ok()
    }

    /// Whether one of `rule`'s backends selects a pod with these labels.
    fn selects(&self, rule: &Rule, labels: &BTreeMap<String, String>) -> bool {
        rule.queries().any(|q| self.query_selects(q, labels))
    }

    /// Whether `query` selects a pod with these labels.
    fn query_selects(&self, query: &PodQuery, labels: &BTreeMap<String, String>) -> bool {
        match &query.source {
            PodSource::Selector(want) => Wanted::Labels(want).matches(labels),
            PodSource::Workload(w) => self.selector(&w.kind, &w.name).is_some_and(|s| s.matches(labels)),
            PodSource::Service(s) => self
                .services
                .as_ref()
                .and_then(|store| store.objects.get(&s.name))
                .is_some_and(|def| !def.selector.is_empty() && Wanted::Labels(&def.selector).matches(labels)),
        }
    }

    /// Records the label keys of `object`'s selector (`None`: it is gone); they are kept when a rule names it.
    fn track_keys(&mut self, object: Named, keys: Option<Vec<String>>) {
        match keys {
            None => {
                self.selector_keys.remove(&object);
            }
            Some(keys) => {
                if self.named.contains(&object) {
                    self.want_keys(&keys);
                }
                self.selector_keys.insert(object, keys);
            }
        }
    }

    /// Forgets the selector keys of the objects of kind `listed` that its complete list no longer has.
    fn forget_gone(&mut self, listed: &Kind) {
        let (workloads, services) = (&self.workloads, &self.services);
        self.selector_keys.retain(|n, _| match (n, listed) {
            (Named::Workload(w), Kind::Workloads(k)) if w.kind == *k => {
                workloads.get(k).is_some_and(|s| s.objects.contains_key(&w.name))
            }
            (Named::Service(name), Kind::Services) => services.as_ref().is_some_and(|s| s.objects.contains_key(name)),
            _ => true,
        });
    }

    /// Adds `keys`; when one is new, the pods are not synced until a list under the new keys completes.
    fn want_keys<'k>(&mut self, keys: impl IntoIterator<Item = &'k String>) {
        let mut grew = false;
        for key in keys {
            grew |= self.keys.insert(key.clone());
        }
        // Pods cached (or a list begun) without the new key must be listed again; before that there is nothing to
        // redo.
        if grew && (self.pods.listed_once || self.pods.listing.is_some()) {
            self.pods.synced = false;
            self.relist = true;
        }
        if grew {
            self.keys_generation += 1;
        }
    }
}

/// The cache of every watched namespace. Shared by the watch tasks (writers) and the passes (readers).
#[derive(Debug, Default)]
pub struct Cache {
    namespaces: Mutex<BTreeMap<String, Namespace>>,
}

impl Cache {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Namespace>> {
        self.namespaces.lock().expect("the cache lock is never held across a panic")
    }

    /// Starts caching `namespace` (not synced until its watches list), its pods with the label keys of the
    /// rules' selectors and of the selectors of the workloads and Services they name, its Deployments, and its
    /// Services while a rule names one.
    pub(crate) fn add_namespace(&self, namespace: &str, scope: &Scope) {
        let mut namespaces = self.lock();
        let ns = namespaces.entry(namespace.to_owned()).or_default();
        ns.workloads.entry(WorkloadKind::Deployment).or_default();
        let workloads = scope.workloads.iter().cloned().map(Named::Workload);
        ns.named = workloads.chain(scope.services.iter().cloned().map(Named::Service)).collect();
        if scope.services.is_empty() {
            ns.services = None;
        } else {
            ns.services.get_or_insert_default();
        }
        let named: Vec<String> = ns.named.iter().filter_map(|n| ns.selector_keys.get(n)).flatten().cloned().collect();
        ns.want_keys(scope.keys.iter().chain(&named));
    }

    /// Caches exactly these workload kinds in `namespace` (Deployments always): forgets the others.
    pub(crate) fn set_kinds(&self, namespace: &str, kinds: &BTreeSet<WorkloadKind>) {
        if let Some(ns) = self.lock().get_mut(namespace) {
            ns.workloads.retain(|k, _| *k == WorkloadKind::Deployment || kinds.contains(k));
            ns.unusable.retain(|k, _| kinds.contains(k));
            for kind in kinds {
                ns.workloads.entry(kind.clone()).or_default();
            }
        }
    }

    /// Records that workload kind `kind` of `namespace` cannot be watched, and why: its rules are skipped with
    /// that reason. Cleared when its watch lists.
    /// Returns whether the reason is new.
    pub(crate) fn set_unusable(&self, namespace: &str, kind: &WorkloadKind, reason: String) -> bool {
        let mut namespaces = self.lock();
        let Some(ns) = namespaces.get_mut(namespace) else { return false };
        ns.unusable.insert(kind.clone(), reason.clone()).is_none_or(|old| old != reason)
    }

    /// Whether the pod watch of `namespace` must list again (a selector with a new label key appeared); it is
    /// asked once: the answer is reset.
    pub(crate) fn take_relist(&self, namespace: &str) -> bool {
        self.lock().get_mut(namespace).is_some_and(|ns| std::mem::take(&mut ns.relist))
    }

    /// Forgets a namespace no rule names any more.
    pub(crate) fn remove_namespace(&self, namespace: &str) {
        self.lock().remove(namespace);
    }

    /// Applies a pod watch event; returns what changed that can matter to a rule.
    pub(crate) fn apply_pod(&self, namespace: &str, event: Event<K8sPod>) -> Option<Change> {
        let (kind, pod) = split(event);
        let name = pod.as_ref().and_then(|p| p.metadata.name.clone());
        let mut namespaces = self.lock();
        let ns = namespaces.get_mut(namespace)?;
        let pod = pod.map(|p| CachedPod::from_k8s(p, &ns.keys));
        let (old, new) = match ns.pods.apply(name, pod.clone(), kind, ns.keys_generation) {
            Step::Nothing => return None,
            Step::Listed => return Some(Change::Resynced { namespace: namespace.to_owned() }),
            Step::Changed(old) => (old, pod),
            Step::Removed(old) => (Some(old), None),
        };
        if old == new {
            return None;
        }
        let labels = old.into_iter().chain(new).map(|p| p.labels).collect();
        Some(Change::Pod { namespace: namespace.to_owned(), labels })
    }

    /// Applies a watch event of workload kind `kind`; returns what changed that can matter to a rule.
    pub(crate) fn apply_workload(
        &self,
        namespace: &str,
        kind: &WorkloadKind,
        event: Event<Reported>,
    ) -> Option<Change> {
        let (step, reported) = split(event);
        let name = reported.as_ref().map(|r| r.name.clone());
        let selector = reported.as_ref().map(cached);
        let mut namespaces = self.lock();
        let ns = namespaces.get_mut(namespace)?;
        if let Some(r) = &reported {
            let keys = match (&r.selector, step) {
                (_, EventKind::Delete) => None,
                (Ok(s), _) => Some(selector_keys(s).cloned().collect()),
                (Err(_), _) => Some(Vec::new()),
            };
            ns.track_keys(Named::Workload(Workload { kind: kind.clone(), name: r.name.clone() }), keys);
        }
        if matches!(step, EventKind::InitDone) {
            ns.unusable.remove(kind);
        }
        let changed = match ns.workloads.get_mut(kind)?.apply(name.clone(), selector.clone(), step, 0) {
            Step::Nothing => false,
            Step::Listed => {
                ns.forget_gone(&Kind::Workloads(kind.clone()));
                return Some(Change::Resynced { namespace: namespace.to_owned() });
            }
            Step::Changed(old) => old != selector,
            Step::Removed(_) => true,
        };
        let name = name.filter(|_| changed)?;
        Some(Change::Workload { namespace: namespace.to_owned(), kind: kind.clone(), name })
    }

    /// Marks a watch as failing, `reason` saying why: its rules are skipped until it lists again.
    pub(crate) fn mark_failing(&self, namespace: &str, kind: &Kind, now: Instant, reason: Option<String>) {
        let mut namespaces = self.lock();
        let Some(ns) = namespaces.get_mut(namespace) else { return };
        match kind {
            Kind::Pods => {
                ns.pods.synced = false;
                ns.pods.failing_since.get_or_insert(now);
            }
            Kind::Workloads(k) => {
                if let Some(store) = ns.workloads.get_mut(k) {
                    store.fail(now, reason);
                }
            }
            Kind::Services => {
                if let Some(store) = ns.services.as_mut() {
                    store.fail(now, reason);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
