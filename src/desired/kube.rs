//! [`KubeCluster`]: the [`Cluster`] implementation that asks a real Kubernetes API server.
//!
//! A workload query GETs the workload and lists pods with its selector: a built-in kind's (apps/v1 Deployment,
//! StatefulSet, DaemonSet, ReplicaSet) `spec.selector`; for any other kind, found through the API server's
//! discovery of its `apiVersion`, the `status.selector` of its `scale` subresource (what `kubectl scale` and the
//! HPA read). A `service:` query GETs the Service and lists pods with its `spec.selector`. A `Selector` query lists
//! pods with the label map. Lists are paged (`limit` + `continue`); an expired continue token
//! (410 Gone) restarts the list once. Within one run each distinct (namespace, selector) is listed once, even
//! when two deployments share a selector.
//!
//! Limits: a response body is read up to [`MAX_RESPONSE_BYTES`], a list is followed for at most [`MAX_PAGES`]
//! pages and [`MAX_PODS`] pods; past any of them the query fails (the rule is skipped). Building the client runs
//! the kubeconfig's credential plugin, if any, off the async runtime and within [`DEFAULT_REQUEST_TIMEOUT`],
//! with the CLB credential variables removed from its environment; `insecure-skip-tls-verify` is refused
//! unless [`ConnectOptions::allow_insecure_skip_tls_verify`].
//!
//! Errors never become "zero pods". Because listing pods in a namespace that does not exist returns an empty
//! list, an empty result (and a 404 on the workload) is followed by a GET of the namespace, so a typo in
//! `namespace:` is reported as [`Error::NamespaceNotFound`]. That GET needs `get` on `namespaces`; when the
//! role lacks it (403) the check is skipped and the result stands as it is.
//!
//! The readiness gate's condition is written with a strategic-merge patch of `pods/status` (conditions merge by
//! `type`, so the kubelet's own conditions are left alone); it needs `patch` on `pods/status`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod as K8sPod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use tokio::sync::OnceCell;

use super::selector::label_map_selector_string;
use super::service::ServiceDef;
use super::{Cluster, Error};
use crate::model::{GATE_CONDITION, GateCondition, Pod, Selected};
use crate::rules::{PodQuery, PodSource};

mod connect;
mod errors;
mod list;
mod workload;

pub(crate) use connect::ConnectOptions;
pub use connect::hidden_from_plugins;
use errors::connect_failure;
pub(crate) use errors::map_error;
pub use workload::built_in;
pub(crate) use workload::{not_found, scalable_resource, service_not_found};

/// Pods per list request. Large enough that most workloads take one request, small enough to bound the
/// size of one response.
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 500;

/// Deadline of one API request (a page, a GET). The client itself has no read timeout.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest Kubernetes response body read: a page of [`DEFAULT_PAGE_SIZE`] pods stays far below it.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Pages followed in one list before it is refused. A label-filtered list can page through a whole namespace
/// with few matches per page, so this bounds the namespace at about 500,000 pods.
pub const MAX_PAGES: usize = 1000;

/// Pods in one query's list before it is refused.
pub(crate) const MAX_PODS: usize = 200_000;

type ListKey = (String, String);

/// A [`Cluster`] backed by the Kubernetes API. Cheap to share by reference; holds a per-run cache of pod
/// lists, so build a new one for each run.
pub struct KubeCluster {
    client: Client,
    /// The API server URL, for "cannot reach" errors (`None` when built from a bare client).
    server: Option<String>,
    page_size: u32,
    request_timeout: Duration,
    lists: Mutex<HashMap<ListKey, Arc<OnceCell<Vec<Pod>>>>>,
}

/// What a request was doing, for error messages.
#[derive(Clone, Copy)]
pub(crate) struct Access<'a> {
    pub verb: &'a str,
    pub resource: &'a str,
    pub group: &'a str,
    pub namespace: &'a str,
}

impl KubeCluster {
    /// Wraps an existing client (tests, or a caller with its own configuration).
    pub fn from_client(client: Client) -> Self {
        Self {
            client,
            server: None,
            page_size: DEFAULT_PAGE_SIZE,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            lists: Mutex::new(HashMap::new()),
        }
    }

    /// Sets the number of pods asked for per list request (at least 1).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Sets the deadline of each API request; past it the query fails with [`Error::Timeout`].
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one request with the deadline and maps its error. 404 and 410 come back as [`Error::Api`] for the
    /// caller to interpret; 401 and 403 are mapped here.
    async fn request<T>(
        &self,
        what: &str,
        op: Access<'_>,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        match tokio::time::timeout(self.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => match connect_failure(&e) {
                Some(cause) => Err(Error::Unreachable {
                    server: self.server.clone().unwrap_or_else(|| "the Kubernetes API server".to_owned()),
                    what: what.to_owned(),
                    cause,
                }),
                None => Err(map_error(e, what, op)),
            },
            Err(_) => Err(Error::Timeout { what: what.to_owned() }),
        }
    }
}

impl Cluster for KubeCluster {
    async fn pods(&self, query: &PodQuery) -> Result<Vec<Pod>, Error> {
        Ok(self.listed(query).await?.pods)
    }

    /// The pods, and the replicas a workload's `spec.replicas` (or its scale's) asks for, from the GET that gives
    /// its selector.
    async fn listed(&self, query: &PodQuery) -> Result<Selected, Error> {
        let namespace = query.namespace.as_str();
        let invalid = |reason| Error::InvalidSelector { query: query.to_string(), reason };
        let mut target_port = None;
        let (selector, replicas) = match &query.source {
            PodSource::Workload(w) => self.selector_of(namespace, w).await?,
            PodSource::Service(service) => {
                let (labels, target) = super::service::resolve(self, namespace, service).await?;
                // Never the Service's own port number as a container port: the target port comes along.
                target_port = Some(target);
                (label_map_selector_string(&labels).map_err(invalid)?, None)
            }
            PodSource::Selector(labels) => (label_map_selector_string(labels).map_err(invalid)?, None),
        };
        let cell = {
            let mut lists = self.lists.lock().expect("the list cache lock is never held across a panic");
            lists.entry((namespace.to_owned(), selector.clone())).or_default().clone()
        };
        let pods = cell.get_or_try_init(|| self.list_pods(namespace, &selector)).await?.clone();
        if pods.is_empty() {
            self.check_namespace(namespace).await?;
        }
        Ok(Selected { pods, target_port, replicas })
    }

    /// A GET of the Service; a 404 is [`Error::WorkloadNotFound`] (or [`Error::NamespaceNotFound`]).
    async fn service(&self, namespace: &str, name: &str) -> Result<ServiceDef, Error> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        let op = Access { verb: "get", resource: "services", group: "", namespace };
        let what = format!("get service {namespace}/{name}");
        match self.request(&what, op, api.get(name)).await {
            Ok(service) => Ok(service.into()),
            Err(Error::Api { error: kube::Error::Api(status), .. }) if status.code == 404 => {
                self.check_namespace(namespace).await?;
                Err(service_not_found(namespace, name))
            }
            Err(e) => Err(e),
        }
    }

    /// One paged LIST of the namespace's pods, without a selector, from the API server's watch cache.
    async fn pods_at(&self, namespace: &str, ips: &[IpAddr]) -> Result<Vec<Pod>, Error> {
        let pods = self.list_pods(namespace, "").await?;
        Ok(pods.into_iter().filter(|p| p.ips.iter().any(|ip| ips.contains(ip))).collect())
    }

    async fn set_pod_condition(
        &self,
        namespace: &str,
        pod: &str,
        condition: &GateCondition,
        transition: bool,
    ) -> Result<(), Error> {
        let api: Api<K8sPod> = Api::namespaced(self.client.clone(), namespace);
        let op = Access { verb: "patch", resource: "pods/status", group: "", namespace };
        let what = format!("patch the {GATE_CONDITION} condition of pod {namespace}/{pod}");
        let now = transition.then(|| Time(k8s_openapi::jiff::Timestamp::now()));
        let patch = Patch::Strategic(condition_patch(condition, now));
        self.request(&what, op, api.patch_status(pod, &PatchParams::default(), &patch)).await.map(drop)
    }
}

/// The strategic-merge patch of `pods/status` that sets the gate condition; `lastTransitionTime` only when given
/// (a status change), so an unchanged status keeps the time it last changed.
fn condition_patch(condition: &GateCondition, transition: Option<Time>) -> serde_json::Value {
    let mut c = serde_json::json!({
        "type": GATE_CONDITION,
        "status": if condition.status { "True" } else { "False" },
        "reason": condition.reason,
        "message": condition.message,
    });
    if let Some(time) = transition {
        c["lastTransitionTime"] = serde_json::to_value(time).expect("a timestamp serializes");
    }
    serde_json::json!({ "status": { "conditions": [c] } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_patch_sets_only_our_condition_and_a_transition_time_only_when_given() {
        let c = GateCondition { status: false, reason: "WaitingForHealthCheck".into(), message: "bound".into() };
        let condition = serde_json::json!({
            "type": "clbsync.dev/registered", "status": "False", "reason": "WaitingForHealthCheck", "message": "bound"
        });
        assert_eq!(condition_patch(&c, None), serde_json::json!({"status": {"conditions": [condition]}}));
        let at = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).expect("a valid time"));
        let patch = condition_patch(&GateCondition { status: true, ..c }, Some(at));
        assert_eq!(patch["status"]["conditions"][0]["status"], "True");
        assert_eq!(patch["status"]["conditions"][0]["lastTransitionTime"], "2023-11-14T22:13:20Z");
    }
}
