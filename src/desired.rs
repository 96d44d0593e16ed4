//! Stage 2, desired state: the pods behind each rule, from Kubernetes.
//!
//! [`Cluster`] is the I/O boundary; the real implementation is [`kube::KubeCluster`]. Which pods become targets
//! is the planner's decision (`plan::targets_for`), not this module's.

pub mod convert;
pub mod kube;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod ports;
pub mod selector;
pub mod service;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;

use futures::stream::{self, StreamExt};

use crate::model::{GateCondition, Pod, Selected};
use crate::rules::{PodQuery, PodSource};
use service::ServiceDef;

/// The pods a [`PodQuery`] selects, as the cluster reports them, and the one write clbsync makes to pods: the
/// readiness-gate condition. Implementations must never turn an error into an empty list: "no pods" and "could
/// not list pods" lead to very different plans.
pub trait Cluster {
    /// Every pod matched by `query`, in any state (the caller decides which ones are targets).
    fn pods(&self, query: &PodQuery) -> impl Future<Output = Result<Vec<Pod>, Error>>;

    /// Service `namespace/name`'s selector and ports (a `service:` backend); a missing one is
    /// [`Error::WorkloadNotFound`].
    fn service(&self, namespace: &str, name: &str) -> impl Future<Output = Result<ServiceDef, Error>>;

    /// [`Cluster::pods`] with the replicas the query's workload asks for (`spec.replicas`, or its scale's, where the
    /// kind has one: not a DaemonSet or a `selector:`). By default none: a cluster that does not read them (watch
    /// mode's cache) leaves the source sanity check out, and only the deletion budget applies.
    fn listed(&self, query: &PodQuery) -> impl Future<Output = Result<Selected, Error>> {
        async move { Ok(Selected::from(self.pods(query).await?)) }
    }

    /// The pods of `namespace`, whatever their labels, that hold any of `ips`: whether a bound target the rules
    /// no longer select still has a pod that serves it (make before break). Asked only when a removal depends on
    /// it.
    fn pods_at(&self, namespace: &str, ips: &[IpAddr]) -> impl Future<Output = Result<Vec<Pod>, Error>>;

    /// Sets pod `namespace/pod`'s [`crate::model::GATE_CONDITION`] condition to `condition`, leaving its other
    /// conditions alone. `transition`: the status changes (or the condition is new), so `lastTransitionTime` is
    /// set to now; otherwise it is kept.
    fn set_pod_condition(
        &self,
        namespace: &str,
        pod: &str,
        condition: &GateCondition,
        transition: bool,
    ) -> impl Future<Output = Result<(), Error>>;
}

/// Why the pods of a query could not be listed. Each variant names what to check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `workload`: the query as displayed (`statefulset shop/db`); `field`: the rules-file key that names it.
    #[error("{workload} not found: check `{field}` in the rules file and the namespace")]
    WorkloadNotFound { workload: String, field: &'static str },
    /// A `workload:` whose kind the API server does not serve, or serves without a selector clbsync can read.
    #[error("{workload} cannot be read: {reason}; check `workload:` in the rules file")]
    UnusableKind { workload: String, reason: String },
    /// A `service:` whose Service cannot choose pods or has no such port; `reason` says what to fix.
    #[error("{service} cannot be used: {reason}")]
    UnusableService { service: String, reason: String },
    #[error("namespace {namespace} not found: check `namespace:` in the rules file")]
    NamespaceNotFound { namespace: String },
    #[error(
        "the Kubernetes API rejected clbsync's credentials (401 Unauthorized): check the kubeconfig or the service account token"
    )]
    Unauthorized,
    #[error(
        "forbidden (403): cannot {verb} {resource} in namespace {namespace}; the ClusterRole bound to clbsync needs the rule {{apiGroups: [\"{group}\"], resources: [\"{resource}\"], verbs: [\"{verb}\"]}} (the API server said: {message})"
    )]
    Forbidden { verb: String, resource: String, group: String, namespace: String, message: String },
    /// `query` is the [`PodQuery`] as displayed, e.g. `deployment shop/web`.
    #[error("{query} has an invalid selector: {reason}")]
    InvalidSelector { query: String, reason: String },
    /// `what` is the request, e.g. `list pods in namespace shop with selector app=web`.
    #[error("timed out talking to the Kubernetes API ({what}): check that the API server is reachable")]
    Timeout { what: String },
    /// The request never reached the server: `cause` is the innermost error (e.g. `Connection refused`).
    #[error(
        "cannot reach the Kubernetes API server {server} ({what}): {cause}; check the server in the kubeconfig and that the API server is running"
    )]
    Unreachable { server: String, what: String, cause: String },
    /// The kube error is part of the message rather than a `source`: its own Display already carries its
    /// causes, so a chained `{:#}` would print them twice.
    #[error("Kubernetes API request failed ({what}): {error}")]
    Api { what: String, error: ::kube::Error },
    /// `what` is the request; `max_mib` the cap of one response body.
    #[error(
        "a Kubernetes API response is larger than {max_mib} MiB ({what}): refused; check the server in the kubeconfig"
    )]
    ResponseTooLarge { what: String, max_mib: usize },
    #[error(
        "the pod list did not end after {max} pages ({what}): refused; check the server in the kubeconfig (an API server ends a list with an empty continue token)"
    )]
    TooManyPages { what: String, max: usize },
    #[error("more than {max} pods ({what}): refused; check the selector in the rules file")]
    TooManyPods { what: String, max: usize },
    /// Building the client runs the kubeconfig's credential plugin (`exec`, or an auth-provider `cmd-path`).
    #[error(
        "connecting with {tried} took longer than {secs}s: check its credential plugin (`exec` or `cmd-path`), which runs then"
    )]
    ConnectTimeout { tried: String, secs: u64 },
    #[error(
        "kubeconfig cluster `{cluster}` ({server}) sets insecure-skip-tls-verify: true, so the API server's certificate would not be checked and clbsync's token could go to anyone on the path: set certificate-authority(-data) in that cluster instead, or pass --allow-insecure-skip-tls-verify to accept it"
    )]
    InsecureTls { cluster: String, server: String },
    /// Watch mode: the watch behind the query has not listed yet or is failing (`what`: `pods in namespace shop`).
    /// Its rules wait rather than be planned against a stale or empty cache.
    #[error(
        "the watch of {what} is not synced: its rules wait until it lists again; check that the API server is reachable"
    )]
    NotSynced { what: String },
    /// Watch mode: the watch behind the query fails, `reason` saying why (a 403 names the rule to add).
    #[error("the watch of {what} fails, its rules are skipped until it lists again: {reason}")]
    WatchFailing { what: String, reason: String },
    /// No usable client configuration: `tried` names the kubeconfig path or the sources kube-rs looked at.
    #[error("loading the Kubernetes client configuration from {tried}: {error}")]
    Config { tried: String, error: ::kube::Error },
}

/// What `query` selects: its pods and, for a `service:` backend, the Service port's target port. The Service is
/// read once and its selector listed like a `selector:` (the same list as a rule with that selector).
pub async fn select<C: Cluster>(cluster: &C, query: &PodQuery) -> Result<Selected, Error> {
    let PodSource::Service(s) = &query.source else { return cluster.listed(query).await };
    let (labels, target) = service::resolve(cluster, &query.namespace, s).await?;
    let by_labels = PodQuery { namespace: query.namespace.clone(), source: PodSource::Selector(labels) };
    Ok(Selected { target_port: Some(target), ..Selected::from(cluster.pods(&by_labels).await?) })
}

/// Lists the pods of every distinct query once, up to `concurrency` lists at a time. The result holds one entry
/// per distinct query, so rules sharing a deployment share one list.
pub async fn list_all<C: Cluster>(
    cluster: &C,
    queries: impl IntoIterator<Item = PodQuery>,
    concurrency: usize,
) -> BTreeMap<PodQuery, Result<Selected, Error>> {
    list_each(cluster, queries, concurrency).collect().await
}

/// [`list_all`] as the lists complete, for a caller that may stop waiting for the rest.
pub(crate) fn list_each<C: Cluster>(
    cluster: &C,
    queries: impl IntoIterator<Item = PodQuery>,
    concurrency: usize,
) -> impl futures::Stream<Item = (PodQuery, Result<Selected, Error>)> {
    let mut distinct: Vec<PodQuery> = queries.into_iter().collect();
    distinct.sort();
    distinct.dedup();
    stream::iter(distinct)
        .map(move |q| async move {
            let selected = select(cluster, &q).await;
            (q, selected)
        })
        .buffer_unordered(concurrency.max(1))
}
