//! The watches: one pod watch per namespace the rules name, one workload watch per kind its rules name
//! (Deployments always), and one of its Services while a rule names one, feeding the [`Cache`] and sending a [`Change`] for every event that can matter to a rule.
//! A scalable kind (`workload:` with `apiVersion`) is found through discovery first; each of its objects' selector
//! is read from its `scale` subresource when the object changes.
//!
//! kube-rs's watcher lists, then watches from the list's resourceVersion and re-lists on 410 Gone. Any other
//! error marks the watch failing (its rules are skipped) and the watch starts over with a fresh list after a
//! backoff; the cache keeps the last known objects until that list completes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod as K8sPod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Api;
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::watcher;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::cache::{Cache, Change, Kind, Reported, Scope};
use crate::desired::kube::{Access, MAX_RESPONSE_BYTES, built_in, map_error, scalable_resource};
use crate::desired::selector::parse_selector_string;
use crate::rules::WorkloadKind;

/// First and longest wait before a failed watch starts over.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// The largest object the API server stores (etcd's default request limit, 1.5 MiB).
const MAX_OBJECT_BYTES: usize = 3 << 19;

/// Objects per page of a watch's list: a page of the largest objects stays under the response limit
/// ([`MAX_RESPONSE_BYTES`]); with larger pages, pods with large labels or annotations failed the list forever.
pub const PAGE_SIZE: u32 = (MAX_RESPONSE_BYTES / MAX_OBJECT_BYTES) as u32;

/// The wait before the `attempt`-th restart (0-based): doubling from [`BACKOFF_MIN`] to [`BACKOFF_MAX`],
/// scaled by `jitter` in [0.5, 1].
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    let base = BACKOFF_MIN.saturating_mul(2u32.saturating_pow(attempt.min(16))).min(BACKOFF_MAX);
    base.mul_f64(jitter.clamp(0.5, 1.0))
}

/// The watch tasks of one namespace.
struct Tasks {
    pods: JoinHandle<()>,
    workloads: BTreeMap<WorkloadKind, JoinHandle<()>>,
    /// The Services' watch, while a rule names a Service.
    services: Option<JoinHandle<()>>,
}

impl Tasks {
    fn abort(&self) {
        self.pods.abort();
        self.workloads.values().for_each(JoinHandle::abort);
        self.services.iter().for_each(JoinHandle::abort);
    }
}

/// The running watches, per namespace. Dropping it stops them all.
pub struct Watches {
    client: kube::Client,
    cache: Arc<Cache>,
    changes: UnboundedSender<Change>,
    running: BTreeMap<String, Tasks>,
}

impl Watches {
    pub fn new(client: kube::Client, cache: Arc<Cache>, changes: UnboundedSender<Change>) -> Self {
        Watches { client, cache, changes, running: BTreeMap::new() }
    }

    /// Watches exactly these namespaces, each with what its rules select by: the workload kinds they name
    /// (Deployments always) and its Services while a rule names one. Starts the new watches, stops (and forgets)
    /// the ones no rule needs, and lists pods again where a key is new.
    pub fn set_namespaces(&mut self, wanted: &BTreeMap<&str, Scope>) {
        let gone: Vec<String> = self.running.keys().filter(|ns| !wanted.contains_key(ns.as_str())).cloned().collect();
        for ns in gone {
            if let Some(tasks) = self.running.remove(&ns) {
                tasks.abort();
            }
            self.cache.remove_namespace(&ns);
            tracing::info!(namespace = %ns, "stopped watching: no rule names the namespace any more");
        }
        for (&ns, scope) in wanted {
            self.cache.add_namespace(ns, scope);
            let mut kinds = scope.kinds();
            kinds.insert(WorkloadKind::Deployment);
            self.cache.set_kinds(ns, &kinds);
            if let Some(tasks) = self.running.get_mut(ns) {
                tasks.workloads.retain(|kind, task| {
                    let keep = kinds.contains(kind);
                    if !keep {
                        task.abort();
                        tracing::info!(namespace = %ns, kind = %kind, "stopped watching: no rule names the kind any more");
                    }
                    keep
                });
                let new: Vec<WorkloadKind> =
                    kinds.iter().filter(|k| !tasks.workloads.contains_key(*k)).cloned().collect();
                for kind in new {
                    let task = self.spawn_workloads(ns, &kind);
                    if let Some(tasks) = self.running.get_mut(ns) {
                        tasks.workloads.insert(kind.clone(), task);
                    }
                    tracing::info!(namespace = %ns, kind = %kind, "watching a workload kind a rule names");
                }
                self.set_services(ns, !scope.services.is_empty());
                self.relist_pods_if_asked(ns);
                continue;
            }
            self.start(ns, &kinds, !scope.services.is_empty());
            tracing::info!(namespace = %ns, kinds = ?kinds.iter().map(|k| k.to_string()).collect::<Vec<_>>(), "watching pods and workloads");
        }
    }

    /// Starts the pod watch of `namespace` over when the cache asks for it: a selector with a label key its pods
    /// were not cached with appeared. Its rules wait until that list completes.
    pub fn relist_pods_if_asked(&mut self, namespace: &str) {
        if !self.cache.take_relist(namespace) {
            return;
        }
        if !self.running.contains_key(namespace) {
            return;
        }
        let pods = self.spawn_pods(namespace);
        if let Some(tasks) = self.running.get_mut(namespace) {
            std::mem::replace(&mut tasks.pods, pods).abort();
        }
        tracing::info!(%namespace, "a selector uses a label key the cached pods lack: listing pods again");
    }

    /// Starts every watch over with a fresh (quorum) list; until a namespace has listed again its rules wait, as
    /// after a failed watch. A new leadership term does this: its writes must not come from what was cached
    /// before it held the lease. (The runtime is single-threaded: an aborted watch task never runs again, so no
    /// event of the old watch lands after the restart.)
    pub fn relist(&mut self) {
        let now = Instant::now();
        let namespaces: Vec<String> = self.running.keys().cloned().collect();
        for ns in namespaces {
            let Some(tasks) = self.running.remove(&ns) else { continue };
            tasks.abort();
            let kinds: BTreeSet<WorkloadKind> = tasks.workloads.into_keys().collect();
            self.cache.mark_failing(&ns, &Kind::Pods, now, None);
            for kind in &kinds {
                self.cache.mark_failing(&ns, &Kind::Workloads(kind.clone()), now, None);
            }
            self.cache.mark_failing(&ns, &Kind::Services, now, None);
            self.start(&ns, &kinds, tasks.services.is_some());
        }
    }

    /// The pod watch of `ns`. It lists once the workloads have (their selectors' label keys are the ones its
    /// pods keep): listing before would cache pods without them, and list again.
    fn spawn_pods(&self, ns: &str) -> JoinHandle<()> {
        let api = Api::<K8sPod>::namespaced(self.client.clone(), ns);
        let pods = watch(api, ns.to_owned(), Kind::Pods, self.cache.clone(), self.changes.clone(), Pods);
        let (cache, ns) = (self.cache.clone(), ns.to_owned());
        tokio::spawn(async move {
            while !cache.workloads_settled(&ns) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            pods.await
        })
    }

    /// The watch of workload kind `kind` in `ns`; a scalable kind is discovered first (again and again, while the
    /// API server does not serve it with a `scale` subresource: its rules are skipped with why meanwhile).
    fn spawn_workloads(&self, ns: &str, kind: &WorkloadKind) -> JoinHandle<()> {
        let (client, cache, changes) = (self.client.clone(), self.cache.clone(), self.changes.clone());
        let (ns, kind) = (ns.to_owned(), kind.clone());
        tokio::spawn(async move {
            let resource = match kind.built_in_resource() {
                Some(_) => built_in(&kind),
                None => discover(&client, &cache, &changes, &ns, &kind).await,
            };
            let api = Api::<DynamicObject>::namespaced_with(client, &ns, &resource);
            let scale = kind.built_in_resource().is_none().then(|| api.clone());
            let workloads = Workloads { kind: kind.clone(), resource, scale };
            watch(api, ns, Kind::Workloads(kind), cache, changes, workloads).await;
        })
    }

    /// The watch of the Services of `ns`.
    fn spawn_services(&self, ns: &str) -> JoinHandle<()> {
        let api = Api::<Service>::namespaced(self.client.clone(), ns);
        let services = watch(api, ns.to_owned(), Kind::Services, self.cache.clone(), self.changes.clone(), Services);
        tokio::spawn(services)
    }

    /// Starts or stops the Services' watch of a running namespace.
    fn set_services(&mut self, ns: &str, wanted: bool) {
        let running = self.running.get(ns).is_some_and(|t| t.services.is_some());
        if wanted && !running {
            let task = self.spawn_services(ns);
            if let Some(tasks) = self.running.get_mut(ns) {
                tasks.services = Some(task);
            }
            tracing::info!(namespace = %ns, "watching Services: a rule names one");
        } else if !wanted && let Some(task) = self.running.get_mut(ns).and_then(|t| t.services.take()) {
            task.abort();
            tracing::info!(namespace = %ns, "stopped watching Services: no rule names one any more");
        }
    }

    fn start(&mut self, ns: &str, kinds: &BTreeSet<WorkloadKind>, services: bool) {
        self.cache.take_relist(ns);
        let pods = self.spawn_pods(ns);
        let workloads = kinds.iter().map(|k| (k.clone(), self.spawn_workloads(ns, k))).collect();
        let services = services.then(|| self.spawn_services(ns));
        self.running.insert(ns.to_owned(), Tasks { pods, workloads, services });
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        self.running.values().for_each(Tasks::abort);
    }
}

/// The resource of scalable kind `kind`, from discovery; until there is one, the kind is unusable in `ns` (its
/// rules are skipped with why) and discovery is retried.
async fn discover(
    client: &kube::Client,
    cache: &Cache,
    changes: &UnboundedSender<Change>,
    ns: &str,
    kind: &WorkloadKind,
) -> ApiResource {
    let mut attempt = 0u32;
    loop {
        let reason = match client.list_api_group_resources(kind.api_version()).await {
            Ok(list) => match scalable_resource(&list, kind) {
                Ok(resource) => return resource,
                Err(reason) => Some(reason),
            },
            Err(kube::Error::Api(status)) if status.code == 404 => {
                Some(format!("the API server serves no {} (is its CRD installed?)", kind.api_version()))
            }
            Err(e) => {
                tracing::warn!(namespace = %ns, kind = %kind, "discovery failed, trying again: {e}");
                None
            }
        };
        if let Some(reason) = reason
            && cache.set_unusable(ns, kind, reason)
        {
            let _ = changes.send(Change::Resynced { namespace: ns.to_owned() });
        }
        tokio::time::sleep(backoff(attempt, 0.5 + fastrand::f64() / 2.0)).await;
        attempt = attempt.saturating_add(1);
    }
}

/// What the cache does with an event of one watch.
trait Watched: Send + Sync + 'static {
    type Object: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static;
    fn apply(
        &self,
        cache: &Cache,
        namespace: &str,
        event: watcher::Event<Self::Object>,
    ) -> impl Future<Output = Option<Change>> + Send;
}

struct Pods;

impl Watched for Pods {
    type Object = K8sPod;
    fn apply(&self, cache: &Cache, ns: &str, event: watcher::Event<K8sPod>) -> impl Future<Output = Option<Change>> {
        std::future::ready(cache.apply_pod(ns, event))
    }
}

/// The watch of a namespace's Services.
struct Services;

impl Watched for Services {
    type Object = Service;
    fn apply(&self, cache: &Cache, ns: &str, event: watcher::Event<Service>) -> impl Future<Output = Option<Change>> {
        std::future::ready(cache.apply_service(ns, event))
    }
}

/// The watch of one workload kind: a built-in kind's selector is its `spec.selector`; a scalable kind's is read
/// from the `scale` subresource (through `scale`) of each object that changes.
struct Workloads {
    kind: WorkloadKind,
    resource: ApiResource,
    scale: Option<Api<DynamicObject>>,
}

impl Workloads {
    async fn reduce(&self, ns: &str, object: DynamicObject, deleted: bool) -> Reported {
        let name = object.metadata.name.clone().unwrap_or_default();
        let spec = object.data.get("spec");
        let (selector, replicas) = match &self.scale {
            _ if deleted => (Err("deleted".to_owned()), None),
            None => {
                let selector = match spec.and_then(|s| s.get("selector")) {
                    Some(s) => {
                        serde_json::from_value::<LabelSelector>(s.clone()).map_err(|e| format!("spec.selector: {e}"))
                    }
                    None => Err(format!("the {} has no spec.selector", self.kind.kind())),
                };
                let replicas = spec.and_then(|s| s.get("replicas")).and_then(serde_json::Value::as_u64);
                (selector, replicas.and_then(|r| u32::try_from(r).ok()))
            }
            Some(api) => match self.scale(api, ns, &name).await {
                Ok((selector, replicas)) => (Ok(selector), replicas),
                Err(reason) => (Err(reason), None),
            },
        };
        Reported { name, selector, replicas }
    }

    /// A scalable object's selector (its scale's `status.selector`) and the replicas its scale asks for.
    async fn scale(
        &self,
        api: &Api<DynamicObject>,
        ns: &str,
        name: &str,
    ) -> Result<(LabelSelector, Option<u32>), String> {
        let scale = format!("{}/scale", self.resource.plural);
        let op = Access { verb: "get", resource: &scale, group: &self.resource.group, namespace: ns };
        let what = format!("get {} {ns}/{name}", self.kind);
        let scale = api.get_scale(name).await.map_err(|e| map_error(e, &what, op).to_string())?;
        let replicas = scale.spec.and_then(|s| s.replicas).and_then(|r| u32::try_from(r).ok());
        match scale.status.and_then(|s| s.selector).filter(|s| !s.is_empty()) {
            Some(text) => Ok((parse_selector_string(&text)?, replicas)),
            None => Err("its scale subresource reports no status.selector (yet)".to_owned()),
        }
    }
}

impl Watched for Workloads {
    type Object = DynamicObject;
    async fn apply(&self, cache: &Cache, ns: &str, event: watcher::Event<DynamicObject>) -> Option<Change> {
        let event = match event {
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitDone => watcher::Event::InitDone,
            watcher::Event::InitApply(o) => watcher::Event::InitApply(self.reduce(ns, o, false).await),
            watcher::Event::Apply(o) => watcher::Event::Apply(self.reduce(ns, o, false).await),
            watcher::Event::Delete(o) => watcher::Event::Delete(self.reduce(ns, o, true).await),
        };
        cache.apply_workload(ns, &self.kind, event)
    }
}

/// Why a watch failed, for its rules' skip reason: a refusal names the rule to add.
fn failure(e: &watcher::Error, ns: &str, kind: &Kind) -> String {
    let (group, resource) = match kind {
        Kind::Pods => (String::new(), "pods".to_owned()),
        Kind::Workloads(k) => (k.group().to_owned(), kind.name()),
        Kind::Services => (String::new(), kind.name()),
    };
    let (verb, error) = match e {
        watcher::Error::InitialListFailed(error) => ("list", error),
        watcher::Error::WatchStartFailed(error) | watcher::Error::WatchFailed(error) => ("watch", error),
        other => return other.to_string(),
    };
    let op = Access { verb, resource: &resource, group: &group, namespace: ns };
    let what = format!("{verb} {resource} in namespace {ns}");
    match error {
        kube::Error::Api(status) => map_error(kube::Error::Api(status.clone()), &what, op).to_string(),
        other => other.to_string(),
    }
}

async fn watch<W: Watched>(
    api: Api<W::Object>,
    namespace: String,
    kind: Kind,
    cache: Arc<Cache>,
    changes: UnboundedSender<Change>,
    watched: W,
) where
    <W::Object as kube::Resource>::DynamicType: Clone + Eq + std::hash::Hash,
{
    let mut attempt = 0u32;
    loop {
        let mut stream = watcher(api.clone(), watcher::Config::default().page_size(PAGE_SIZE)).boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    if matches!(event, watcher::Event::InitDone) {
                        if attempt > 0 {
                            tracing::info!(%namespace, kind = kind.name(), "watch listed again, its rules resume");
                        }
                        attempt = 0;
                    }
                    if let Some(change) = watched.apply(&cache, &namespace, event).await
                        && changes.send(change).is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    let reason = failure(&e, &namespace, &kind);
                    cache.mark_failing(&namespace, &kind, Instant::now(), Some(reason.clone()));
                    let _ = changes.send(Change::Resynced { namespace: namespace.clone() });
                    tracing::warn!(
                        %namespace,
                        kind = kind.name(),
                        "watch failed, its rules wait until it lists again: {reason}; check that the API server is reachable and the role may list and watch {}",
                        kind.name()
                    );
                    break;
                }
            }
        }
        drop(stream);
        tokio::time::sleep(backoff(attempt, 0.5 + fastrand::f64() / 2.0)).await;
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_only_shortens_it() {
        assert_eq!(backoff(0, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(10, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX, 1.0), BACKOFF_MAX);
        assert_eq!(backoff(1, 0.5), Duration::from_millis(500));
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
    }
}
