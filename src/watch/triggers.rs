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

use super::cache::{Cache, Change, Kind};

/// First and longest wait before a failed watch starts over.
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

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

    /// Watches exactly these namespaces: starts the new ones, stops (and forgets) the ones no rule names.
    pub fn set_namespaces<'a>(&mut self, namespaces: impl IntoIterator<Item = &'a str>) {
        let wanted: std::collections::BTreeSet<&str> = namespaces.into_iter().collect();
        let gone: Vec<String> = self.running.keys().filter(|ns| !wanted.contains(ns.as_str())).cloned().collect();
        for ns in gone {
            if let Some(tasks) = self.running.remove(&ns) {
                tasks.iter().for_each(JoinHandle::abort);
            }
            self.cache.remove_namespace(&ns);
            tracing::info!(namespace = %ns, "stopped watching: no rule names the namespace any more");
        }
        for ns in wanted {
            if self.running.contains_key(ns) {
                continue;
            }
            self.cache.add_namespace(ns);
            self.start(ns);
            tracing::info!(namespace = %ns, "watching pods and deployments");
        }
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

    fn start(&mut self, ns: &str) {
        let pods = tokio::spawn(watch(
            Api::<K8sPod>::namespaced(self.client.clone(), ns),
            ns.to_owned(),
            Kind::Pods,
            self.cache.clone(),
            self.changes.clone(),
        ));
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
        let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
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
