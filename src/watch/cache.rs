//! The watch cache: what the pod and Deployment watches last said, per namespace, reduced to the fields clbsync
//! reads ([`Pod`], with its readiness-gate fields, plus the labels selectors match on, and a Deployment's
//! selector).
//!
//! A pod keeps only the labels whose keys some selector of its namespace uses (the rules' own, and those of the
//! Deployments they name): a cached pod's size is bounded by the selectors, not by what is put on pods. When a selector
//! with a new key appears, the namespace's pods are not synced until its pod watch has listed again with that key
//! ([`Cache::take_relist`]), so no query is answered from pods cached without a label it matches on. Through [`CachedCluster`] it is a second [`Cluster`]: the planner gets the same `Vec<Pod>` it would
//! get from a LIST, and gate conditions are written to the API.
//!
//! A namespace whose watch has not listed yet, or has failed since (API server unreachable, 403, ...), is
//! **not synced**: its queries fail with [`Error::NotSynced`] and their rules are skipped, never planned against
//! an empty or stale set. The last known objects are kept; a restarted watch lists again and replaces them
//! at once when the list is complete.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod as K8sPod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use kube::runtime::watcher::Event;

use crate::desired::convert::{label_selector_string, labels_selector_string, pod_from_k8s};
use crate::desired::kube::KubeCluster;
use crate::desired::{Cluster, Error};
use crate::model::{GateCondition, Pod};
use crate::rules::{PodQuery, PodSource, Rule};

/// The two kinds of object watched in each namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Pods,
    Deployments,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Pods => "pods",
            Kind::Deployments => "deployments",
        }
    }
}

/// A pod as cached: what the planner reads, and the labels selectors match on.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedPod {
    pub labels: BTreeMap<String, String>,
    pub pod: Pod,
}

impl CachedPod {
    /// The pod reduced to what the planner reads and its labels with one of `keys`.
    pub fn from_k8s(mut pod: K8sPod, keys: &BTreeSet<String>) -> Self {
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

/// What the rules of one namespace select by: the label keys of their selectors and the Deployments they name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selects {
    pub keys: BTreeSet<String>,
    pub deployments: BTreeSet<String>,
}

/// A Deployment as cached: its `spec.selector`, or why it cannot be used.
pub type CachedDeployment = Result<Selector, String>;

/// Reduces a Deployment to its selector; an empty or malformed selector is kept as the reason it is refused.
pub fn deployment_selector(d: &Deployment) -> CachedDeployment {
    let selector = d.spec.as_ref().map(|s| s.selector.clone()).unwrap_or_default();
    label_selector_string(&selector)?;
    Selector::try_from(selector).map_err(|e| e.to_string())
}

/// What a watch event changed that can matter to a rule.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// A pod appeared, went away, or changed in a field clbsync reads; the labels before and after (a label
    /// change can move a pod between rules).
    Pod { namespace: String, labels: Vec<BTreeMap<String, String>> },
    /// A Deployment appeared, went away or got another selector.
    Deployment { namespace: String, name: String },
    /// A watch (re)listed: every rule of the namespace may have changed.
    Resynced { namespace: String },
}

impl Change {
    pub fn namespace(&self) -> &str {
        match self {
            Change::Pod { namespace, .. } | Change::Deployment { namespace, .. } | Change::Resynced { namespace } => {
                namespace
            }
        }
    }
}

/// One kind's objects in one namespace, and whether they can be trusted.
#[derive(Debug)]
struct Store<T> {
    objects: BTreeMap<String, T>,
    /// Objects of a list in progress; they replace `objects` when it completes.
    listing: Option<BTreeMap<String, T>>,
    /// The label-key generation the list in progress began under: a list that began before the keys grew
    /// completes without syncing the store.
    listing_keys: u64,
    synced: bool,
    /// Whether a list ever completed (readiness).
    listed_once: bool,
    /// Since when the watch has been failing (set on the first error, cleared by a complete list).
    failing_since: Option<Instant>,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            listing: None,
            listing_keys: 0,
            synced: false,
            listed_once: false,
            failing_since: None,
        }
    }
}

impl<T: PartialEq> Store<T> {
    /// Applies one watch event and says what it did; `keys` is the namespace's label-key generation now.
    fn apply(&mut self, name: Option<String>, value: Option<T>, kind: EventKind, keys: u64) -> Step<T> {
        match kind {
            EventKind::Init => {
                self.listing = Some(BTreeMap::new());
                self.listing_keys = keys;
                Step::Nothing
            }
            EventKind::InitApply => {
                if let (Some(name), Some(value), Some(listing)) = (name, value, self.listing.as_mut()) {
                    listing.insert(name, value);
                }
                Step::Nothing
            }
            EventKind::InitDone => {
                self.objects = self.listing.take().unwrap_or_default();
                if self.listing_keys != keys {
                    return Step::Nothing;
                }
                self.synced = true;
                self.listed_once = true;
                self.failing_since = None;
                Step::Listed
            }
            EventKind::Apply => {
                let Some(name) = name else { return Step::Nothing };
                let Some(value) = value else { return Step::Nothing };
                let old = self.objects.insert(name, value);
                Step::Changed(old)
            }
            EventKind::Delete => {
                let Some(name) = name else { return Step::Nothing };
                match self.objects.remove(&name) {
                    Some(old) => Step::Removed(old),
                    None => Step::Nothing,
                }
            }
        }
    }
}

enum Step<T> {
    Nothing,
    Listed,
    /// Applied; the previous object if there was one.
    Changed(Option<T>),
    Removed(T),
}

#[derive(Clone, Copy)]
enum EventKind {
    Init,
    InitApply,
    InitDone,
    Apply,
    Delete,
}

fn split<K>(event: Event<K>) -> (EventKind, Option<K>) {
    match event {
        Event::Init => (EventKind::Init, None),
        Event::InitApply(o) => (EventKind::InitApply, Some(o)),
        Event::InitDone => (EventKind::InitDone, None),
        Event::Apply(o) => (EventKind::Apply, Some(o)),
        Event::Delete(o) => (EventKind::Delete, Some(o)),
    }
}

#[derive(Debug, Default)]
struct Namespace {
    pods: Store<CachedPod>,
    deployments: Store<CachedDeployment>,
    /// The label keys pods keep: every key a selector of this namespace uses. It only grows.
    keys: BTreeSet<String>,
    /// Bumped each time `keys` grows.
    keys_generation: u64,
    /// The keys grew since the pod watch last (re)started: it must list again.
    relist: bool,
    /// The Deployments the rules name: only their selectors' keys are kept (anyone who may create a Deployment
    /// could otherwise grow the keys, and relist the pods, at will).
    named: BTreeSet<String>,
    /// The label keys of each cached Deployment's selector.
    deployment_keys: BTreeMap<String, Vec<String>>,
}

impl Namespace {
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

    /// Starts caching `namespace` (not synced until its watches list), its pods with the label keys in `keys`
    /// (the rules' selectors) and those of its Deployments' selectors.
    pub fn add_namespace(&self, namespace: &str, wanted: &Selects) {
        let mut namespaces = self.lock();
        let ns = namespaces.entry(namespace.to_owned()).or_default();
        ns.named.clone_from(&wanted.deployments);
        let named: Vec<String> = ns.named.iter().filter_map(|d| ns.deployment_keys.get(d)).flatten().cloned().collect();
        ns.want_keys(wanted.keys.iter().chain(&named));
    }

    /// Whether the pod watch of `namespace` must list again (a selector with a new label key appeared); it is
    /// asked once: the answer is reset.
    pub fn take_relist(&self, namespace: &str) -> bool {
        self.lock().get_mut(namespace).is_some_and(|ns| std::mem::take(&mut ns.relist))
    }

    /// Forgets a namespace no rule names any more.
    pub fn remove_namespace(&self, namespace: &str) {
        self.lock().remove(namespace);
    }

    /// Applies a pod watch event; returns what changed that can matter to a rule.
    pub fn apply_pod(&self, namespace: &str, event: Event<K8sPod>) -> Option<Change> {
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

    /// Applies a Deployment watch event; returns what changed that can matter to a rule.
    pub fn apply_deployment(&self, namespace: &str, event: Event<Deployment>) -> Option<Change> {
        let (kind, deployment) = split(event);
        let name = deployment.as_ref().and_then(|d| d.metadata.name.clone());
        let selector = deployment.as_ref().map(deployment_selector);
        let mut namespaces = self.lock();
        let ns = namespaces.get_mut(namespace)?;
        if let (Some(name), Some(d)) = (&name, &deployment) {
            if matches!(kind, EventKind::Delete) {
                ns.deployment_keys.remove(name);
            } else if let Some(spec) = &d.spec {
                let keys: Vec<String> = selector_keys(&spec.selector).cloned().collect();
                if ns.named.contains(name) {
                    ns.want_keys(&keys);
                }
                ns.deployment_keys.insert(name.clone(), keys);
            }
        }
        let changed = match ns.deployments.apply(name.clone(), selector.clone(), kind, 0) {
            Step::Nothing => false,
            Step::Listed => return Some(Change::Resynced { namespace: namespace.to_owned() }),
            Step::Changed(old) => old != selector,
            Step::Removed(_) => true,
        };
        let name = name.filter(|_| changed)?;
        Some(Change::Deployment { namespace: namespace.to_owned(), name })
    }

    /// Marks a watch as failing: its namespace's rules are skipped until it lists again.
    pub fn mark_failing(&self, namespace: &str, kind: Kind, now: Instant) {
        if let Some(ns) = self.lock().get_mut(namespace) {
            let (synced, failing_since) = match kind {
                Kind::Pods => (&mut ns.pods.synced, &mut ns.pods.failing_since),
                Kind::Deployments => (&mut ns.deployments.synced, &mut ns.deployments.failing_since),
            };
            *synced = false;
            failing_since.get_or_insert(now);
        }
    }

    /// Whether the Deployment watch of `namespace` has listed once (or the namespace is no longer cached).
    pub fn deployments_listed(&self, namespace: &str) -> bool {
        self.lock().get(namespace).is_none_or(|ns| ns.deployments.listed_once)
    }

    /// Whether both watches of `namespace` have listed and neither is failing now.
    pub fn is_synced(&self, namespace: &str) -> bool {
        self.lock().get(namespace).is_some_and(|ns| ns.pods.synced && ns.deployments.synced)
    }

    /// `due` plus every other rule that selects a gated pod a due rule selects: a gated pod's condition depends on
    /// every rule that selects it, and on no other (a pass over more would read load balancers for nothing).
    pub fn with_gate_neighbours(&self, rules: &[Rule], mut due: Vec<usize>) -> Vec<usize> {
        let namespaces = self.lock();
        let selects = |rule: &Rule, labels: &BTreeMap<String, String>| {
            let Some(ns) = namespaces.get(&rule.backend.pods.namespace) else { return false };
            match &rule.backend.pods.source {
                PodSource::Selector(want) => Wanted::Labels(want).matches(labels),
                PodSource::Deployment(d) => ns
                    .deployments
                    .objects
                    .get(d)
                    .is_some_and(|s| s.as_ref().is_ok_and(|s| Wanted::Selector(s).matches(labels))),
            }
        };
        let mut gated: Vec<(&str, &BTreeMap<String, String>)> = Vec::new();
        for &i in &due {
            let namespace = rules[i].backend.pods.namespace.as_str();
            let Some(ns) = namespaces.get(namespace) else { continue };
            let pods = ns.pods.objects.values().filter(|p| p.pod.gate.is_some() && selects(&rules[i], &p.labels));
            gated.extend(pods.map(|p| (namespace, &p.labels)));
        }
        let neighbours = (0..rules.len()).filter(|&j| {
            let namespace = rules[j].backend.pods.namespace.as_str();
            gated.iter().any(|(ns, labels)| *ns == namespace && selects(&rules[j], labels))
        });
        due.extend(neighbours);
        due.sort_unstable();
        due.dedup();
        due
    }

    /// Ready (`/readyz`) once every watch has listed, until one has been failing for longer than `max_failing`.
    pub fn readiness(&self, now: Instant, max_failing: Duration) -> Result<(), String> {
        let namespaces = self.lock();
        for (name, ns) in namespaces.iter() {
            for (kind, listed, since) in [
                (Kind::Pods, ns.pods.listed_once, ns.pods.failing_since),
                (Kind::Deployments, ns.deployments.listed_once, ns.deployments.failing_since),
            ] {
                if !listed {
                    return Err(format!("the watch of {} in namespace {name} has not listed yet", kind.as_str()));
                }
                if let Some(since) = since
                    && now.saturating_duration_since(since) > max_failing
                {
                    return Err(format!(
                        "the watch of {} in namespace {name} has been failing for {}s",
                        kind.as_str(),
                        now.saturating_duration_since(since).as_secs()
                    ));
                }
            }
        }
        Ok(())
    }

    /// The indices of the rules a change can affect.
    pub fn rules_touched(&self, rules: &[Rule], change: &Change) -> BTreeSet<usize> {
        let namespaces = self.lock();
        let namespace = change.namespace();
        let deployments = namespaces.get(namespace).map(|ns| &ns.deployments.objects);
        let touches = |rule: &Rule| match change {
            Change::Resynced { .. } => true,
            Change::Deployment { name, .. } => {
                matches!(&rule.backend.pods.source, PodSource::Deployment(d) if d == name)
            }
            Change::Pod { labels, .. } => labels.iter().any(|l| match &rule.backend.pods.source {
                PodSource::Selector(want) => Wanted::Labels(want).matches(l),
                PodSource::Deployment(d) => deployments
                    .and_then(|ds| ds.get(d))
                    .is_some_and(|s| s.as_ref().is_ok_and(|s| Wanted::Selector(s).matches(l))),
            }),
        };
        rules
            .iter()
            .enumerate()
            .filter(|(_, r)| r.backend.pods.namespace == namespace && touches(r))
            .map(|(i, _)| i)
            .collect()
    }

    /// The cached pods of `namespace` that hold any of `ips`; like a query, only from a synced watch.
    fn pods_at(&self, namespace: &str, ips: &[IpAddr]) -> Result<Vec<Pod>, Error> {
        let namespaces = self.lock();
        let ns = namespaces.get(namespace).filter(|ns| ns.pods.synced);
        let ns = ns.ok_or_else(|| Error::NotSynced { what: format!("pods in namespace {namespace}") })?;
        let holds = |p: &&CachedPod| p.pod.ips.iter().any(|ip| ips.contains(ip));
        Ok(ns.pods.objects.values().filter(holds).map(|p| p.pod.clone()).collect())
    }

    fn query(&self, query: &PodQuery) -> Result<Vec<Pod>, Error> {
        let namespaces = self.lock();
        let not_synced =
            |kind: Kind| Error::NotSynced { what: format!("{} in namespace {}", kind.as_str(), query.namespace) };
        let ns = namespaces.get(&query.namespace).ok_or_else(|| not_synced(Kind::Pods))?;
        let wanted =
            match &query.source {
                PodSource::Deployment(name) => {
                    if !ns.deployments.synced {
                        return Err(not_synced(Kind::Deployments));
                    }
                    let selector = ns.deployments.objects.get(name).ok_or_else(|| Error::DeploymentNotFound {
                        namespace: query.namespace.clone(),
                        name: name.clone(),
                    })?;
                    Wanted::Selector(selector.as_ref().map_err(|reason| Error::InvalidSelector {
                        query: query.to_string(),
                        reason: reason.clone(),
                    })?)
                }
                PodSource::Selector(labels) => {
                    labels_selector_string(labels)
                        .map_err(|reason| Error::InvalidSelector { query: query.to_string(), reason })?;
                    Wanted::Labels(labels)
                }
            };
        if !ns.pods.synced {
            return Err(not_synced(Kind::Pods));
        }
        Ok(ns.pods.objects.values().filter(|p| wanted.matches(&p.labels)).map(|p| p.pod.clone()).collect())
    }
}

/// The pods a query selects: a Deployment's selector or a rules-file label map.
enum Wanted<'a> {
    Selector(&'a Selector),
    Labels(&'a BTreeMap<String, String>),
}

impl Wanted<'_> {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Wanted::Selector(s) => s.matches(labels),
            Wanted::Labels(want) => want.iter().all(|(k, v)| labels.get(k) == Some(v)),
        }
    }
}

/// Watch mode's [`Cluster`]: pods from the cache, readiness-gate conditions written through the API.
pub struct CachedCluster<'a> {
    pub cache: &'a Cache,
    pub api: &'a KubeCluster,
}

impl Cluster for CachedCluster<'_> {
    /// As [`KubeCluster`] answers it: a watch of a namespace that does not exist lists nothing, like a LIST there,
    /// so an empty answer (or a missing Deployment) is checked against the namespace and a missing one is
    /// [`Error::NamespaceNotFound`], never zero pods.
    async fn pods(&self, query: &PodQuery) -> Result<Vec<Pod>, Error> {
        match self.cache.query(query) {
            Ok(pods) if pods.is_empty() => {
                self.api.check_namespace(&query.namespace).await?;
                Ok(pods)
            }
            Err(e @ Error::DeploymentNotFound { .. }) => {
                self.api.check_namespace(&query.namespace).await?;
                Err(e)
            }
            answer => answer,
        }
    }

    async fn pods_at(&self, namespace: &str, ips: &[IpAddr]) -> Result<Vec<Pod>, Error> {
        self.cache.pods_at(namespace, ips)
    }

    async fn set_pod_condition(
        &self,
        namespace: &str,
        pod: &str,
        condition: &GateCondition,
        transition: bool,
    ) -> Result<(), Error> {
        self.api.set_pod_condition(namespace, pod, condition, transition).await
    }
}

#[cfg(test)]
mod tests;
