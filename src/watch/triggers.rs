//! The watches: one pod watch and one Deployment watch per namespace the rules name, feeding the [`Cache`] and
//! sending a [`Change`] for every event that can matter to a rule.
//!
//! kube-rs's watcher lists, then watches from the list's resourceVersion and re-lists on 410 Gone. Any other
//! error marks the watch failing (its rules are skipped) and the watch starts over with a fresh list after a
//! backoff; the cache keeps the last known objects until that list completes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod as K8sPod;
use kube::Api;
use kube::runtime::watcher;
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;

use super::cache::{Cache, Change, Kind, Selects};
use crate::desired::kube::MAX_RESPONSE_BYTES;

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

/// The running watches, per namespace. Dropping it stops them all.
pub struct Watches {
    client: kube::Client,
    cache: Arc<Cache>,
    changes: UnboundedSender<Change>,
    running: BTreeMap<String, [JoinHandle<()>; 2]>,
}

impl Watches {
    pub fn new(client: kube::Client, cache: Arc<Cache>, changes: UnboundedSender<Change>) -> Self {
        Watches { client, cache, changes, running: BTreeMap::new() }
    }

    /// Watches exactly these namespaces, each with what its rules select by: starts the new ones,
    /// stops (and forgets) the ones no rule names, and lists pods again where a key is new.
    pub fn set_namespaces(&mut self, wanted: &BTreeMap<&str, Selects>) {
        let gone: Vec<String> = self.running.keys().filter(|ns| !wanted.contains_key(ns.as_str())).cloned().collect();
        for ns in gone {
            if let Some(tasks) = self.running.remove(&ns) {
                tasks.iter().for_each(JoinHandle::abort);
            }
            self.cache.remove_namespace(&ns);
            tracing::info!(namespace = %ns, "stopped watching: no rule names the namespace any more");
        }
        for (&ns, selects) in wanted {
            self.cache.add_namespace(ns, selects);
            if self.running.contains_key(ns) {
                self.relist_pods_if_asked(ns);
                continue;
            }
            self.start(ns);
            tracing::info!(namespace = %ns, "watching pods and deployments");
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
            std::mem::replace(&mut tasks[0], pods).abort();
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
            if let Some(tasks) = self.running.remove(&ns) {
                tasks.iter().for_each(JoinHandle::abort);
            }
            self.cache.mark_failing(&ns, Kind::Pods, now);
            self.cache.mark_failing(&ns, Kind::Deployments, now);
            self.start(&ns);
        }
    }

    /// The pod watch of `ns`. It lists once the Deployments have (their selectors' label keys are the ones its
    /// pods keep): listing before would cache pods without them, and list again.
    fn spawn_pods(&self, ns: &str) -> JoinHandle<()> {
        let pods = watch(
            Api::<K8sPod>::namespaced(self.client.clone(), ns),
            ns.to_owned(),
            Kind::Pods,
            self.cache.clone(),
            self.changes.clone(),
        );
        let (cache, ns) = (self.cache.clone(), ns.to_owned());
        tokio::spawn(async move {
            while !cache.deployments_listed(&ns) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            pods.await
        })
    }

    fn start(&mut self, ns: &str) {
        self.cache.take_relist(ns);
        let pods = self.spawn_pods(ns);
        let deployments = tokio::spawn(watch(
            Api::<Deployment>::namespaced(self.client.clone(), ns),
            ns.to_owned(),
            Kind::Deployments,
            self.cache.clone(),
            self.changes.clone(),
        ));
        self.running.insert(ns.to_owned(), [pods, deployments]);
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        self.running.values().flatten().for_each(JoinHandle::abort);
    }
}

/// What the cache does with an event of one kind.
trait Watched: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static {
    fn apply(cache: &Cache, namespace: &str, event: watcher::Event<Self>) -> Option<Change>;
}

impl Watched for K8sPod {
    fn apply(cache: &Cache, namespace: &str, event: watcher::Event<Self>) -> Option<Change> {
        cache.apply_pod(namespace, event)
    }
}

impl Watched for Deployment {
    fn apply(cache: &Cache, namespace: &str, event: watcher::Event<Self>) -> Option<Change> {
        cache.apply_deployment(namespace, event)
    }
}

async fn watch<K>(api: Api<K>, namespace: String, kind: Kind, cache: Arc<Cache>, changes: UnboundedSender<Change>)
where
    K: Watched,
    K::DynamicType: Default,
{
    let mut attempt = 0u32;
    loop {
        let mut stream = watcher(api.clone(), watcher::Config::default().page_size(PAGE_SIZE)).boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    if matches!(event, watcher::Event::InitDone) {
                        if attempt > 0 {
                            tracing::info!(%namespace, kind = kind.as_str(), "watch listed again, its rules resume");
                        }
                        attempt = 0;
                    }
                    if let Some(change) = K::apply(&cache, &namespace, event)
                        && changes.send(change).is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    cache.mark_failing(&namespace, kind, Instant::now());
                    tracing::warn!(
                        %namespace,
                        kind = kind.as_str(),
                        "watch failed, its rules wait until it lists again: {e}; check that the API server is reachable and the role may list and watch {}",
                        kind.as_str()
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
