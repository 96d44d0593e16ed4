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

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod as K8sPod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIResourceList, Time};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::client::ClientBuilder;
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, DynamicObject, ObjectList, Request};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use super::convert::{
    MinimalPod, label_selector_string, labels_selector_string, parse_selector_string, pod_from_minimal,
};
use super::service::ServiceDef;
use super::{Cluster, Error};
use crate::credentials;
use crate::model::{GATE_CONDITION, GateCondition, Pod, Selected};
use crate::rules::{PodQuery, PodSource, Workload, WorkloadKind};

/// Pods per list request. Large enough that most workloads take one request, small enough to bound the
/// size of one response.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// Deadline of one API request (a page, a GET). The client itself has no read timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest Kubernetes response body read: a page of [`DEFAULT_PAGE_SIZE`] pods stays far below it.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Pages followed in one list before it is refused. A label-filtered list can page through a whole namespace
/// with few matches per page, so this bounds the namespace at about 500,000 pods.
pub const MAX_PAGES: usize = 1000;

/// Pods in one query's list before it is refused.
pub const MAX_PODS: usize = 200_000;

type ListKey = (String, String);

/// What [`KubeCluster::connect_with`] tolerates in the client configuration.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// Accept `insecure-skip-tls-verify: true` (with a warning) instead of refusing it.
    pub allow_insecure_skip_tls_verify: bool,
}

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
    /// Connects with the kubeconfig at `kubeconfig` (its current context), or, when `None`, with kube-rs's
    /// defaults: `$KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account. The error says
    /// which sources were tried.
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Self, Error> {
        Self::connect_with(kubeconfig, &ConnectOptions::default()).await
    }

    /// [`KubeCluster::connect`] with `options`.
    pub async fn connect_with(kubeconfig: Option<&Path>, options: &ConnectOptions) -> Result<Self, Error> {
        let (mut config, tried) = match kubeconfig {
            Some(path) => {
                let tried = format!("kubeconfig {}", path.display());
                let config = async {
                    let file = Kubeconfig::read_from(path)?;
                    let cluster = current_cluster(&file);
                    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
                    Ok::<_, kube::Error>((config, cluster))
                }
                .await
                .map_err(|error| Error::Config { tried: tried.clone(), error })?;
                check_tls(&config.0, config.1, options)?;
                (config.0, tried)
            }
            None => {
                let tried = match std::env::var_os("KUBECONFIG") {
                    Some(v) => format!("KUBECONFIG={} and the in-cluster service account", v.to_string_lossy()),
                    None => "~/.kube/config and the in-cluster service account".to_owned(),
                };
                let config = Config::infer()
                    .await
                    .map_err(|e| Error::Config { tried: tried.clone(), error: kube::Error::InferConfig(e) })?;
                // Only a kubeconfig can set insecure-skip-tls-verify: name its cluster.
                let cluster = config.accept_invalid_certs.then(|| Kubeconfig::read().ok()).flatten();
                check_tls(&config, cluster.as_ref().and_then(current_cluster), options)?;
                (config, tried)
            }
        };
        hide_credentials_from_plugins(&mut config.auth_info);
        let server = config.cluster_url.to_string();
        // Building the client runs the credential plugin (std::process, blocking): off the runtime, bounded.
        let build = tokio::task::spawn_blocking(move || {
            ClientBuilder::try_from(config).map(|b| b.with_layer(&BodyLimit(MAX_RESPONSE_BYTES)).build())
        });
        let client = match tokio::time::timeout(DEFAULT_REQUEST_TIMEOUT, build).await {
            Ok(Ok(built)) => built.map_err(|error| Error::Config { tried, error })?,
            Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
            Err(_) => return Err(Error::ConnectTimeout { tried, secs: DEFAULT_REQUEST_TIMEOUT.as_secs() }),
        };
        Ok(Self { server: Some(server), ..Self::from_client(client) })
    }

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

    /// The selector of workload `namespace/w`, as a selector string: a built-in kind's `spec.selector`, any other
    /// kind's `scale` subresource's `status.selector`; and the replicas it asks for (`spec.replicas` of the object
    /// or of its scale), `None` for a kind without (DaemonSet).
    async fn selector_of(&self, namespace: &str, w: &Workload) -> Result<(String, Option<u32>), Error> {
        let query = PodQuery { namespace: namespace.to_owned(), source: PodSource::Workload(w.clone()) };
        let invalid = |reason: String| Error::InvalidSelector { query: query.to_string(), reason };
        let (selector, replicas) = if w.kind.built_in_resource().is_some() {
            let object = self.workload(namespace, w).await?;
            let spec = object.data.get("spec");
            let replicas = spec.and_then(|s| s.get("replicas")).and_then(serde_json::Value::as_u64);
            let selector = spec.and_then(|s| s.get("selector")).cloned();
            let selector = selector.ok_or_else(|| invalid(format!("the {} has no spec.selector", w.kind.kind())))?;
            let selector = serde_json::from_value(selector).map_err(|e| invalid(format!("spec.selector: {e}")))?;
            (selector, replicas.and_then(|r| u32::try_from(r).ok()))
        } else {
            let resource = self.discover(&query, w).await?;
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
            let scale = format!("{}/scale", resource.plural);
            let op = Access { verb: "get", resource: &scale, group: &resource.group, namespace };
            let scale = self.found(&query, op, api.get_scale(&w.name)).await?;
            let replicas = scale.spec.and_then(|s| s.replicas).and_then(|r| u32::try_from(r).ok());
            let text = scale.status.and_then(|s| s.selector).unwrap_or_default();
            if text.is_empty() {
                return Err(invalid("its scale subresource reports no status.selector (yet)".to_owned()));
            }
            (parse_selector_string(&text).map_err(invalid)?, replicas)
        };
        Ok((label_selector_string(&selector).map_err(invalid)?, replicas))
    }

    /// GETs workload `namespace/w` of a built-in kind.
    async fn workload(&self, namespace: &str, w: &Workload) -> Result<DynamicObject, Error> {
        let query = PodQuery { namespace: namespace.to_owned(), source: PodSource::Workload(w.clone()) };
        let resource = match w.kind.built_in_resource() {
            Some(_) => built_in(&w.kind),
            None => self.discover(&query, w).await?,
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
        let op = Access { verb: "get", resource: &resource.plural, group: &resource.group, namespace };
        self.found(&query, op, api.get(&w.name)).await
    }

    /// Runs a GET of a workload (or its scale); a 404 is [`Error::WorkloadNotFound`], or
    /// [`Error::NamespaceNotFound`] when the namespace is missing.
    async fn found<T>(
        &self,
        query: &PodQuery,
        op: Access<'_>,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        let what = format!("get {query}");
        match self.request(&what, op, fut).await {
            Err(Error::Api { error: kube::Error::Api(status), .. }) if status.code == 404 => {
                self.check_namespace(&query.namespace).await?;
                Err(not_found(query))
            }
            answer => answer,
        }
    }

    /// The resource of a scalable kind, from the API server's discovery: it must be namespaced and have a `scale`
    /// subresource.
    async fn discover(&self, query: &PodQuery, w: &Workload) -> Result<ApiResource, Error> {
        let api_version = w.kind.api_version();
        let unusable = |reason: String| Error::UnusableKind { workload: query.to_string(), reason };
        let op = Access { verb: "get", resource: "(discovery)", group: w.kind.group(), namespace: &query.namespace };
        let what = format!("discover the resources of {api_version}");
        let list = match self.request(&what, op, self.client.list_api_group_resources(api_version)).await {
            Err(Error::Api { error: kube::Error::Api(status), .. }) if status.code == 404 => {
                return Err(unusable(format!("the API server serves no {api_version} (is its CRD installed?)")));
            }
            answer => answer?,
        };
        scalable_resource(&list, &w.kind).map_err(unusable)
    }

    /// The names of the container ports of workload `namespace/w`'s pod template (`spec.template`): the ports its
    /// pods have and will have (`validate --kubeconfig`). `None` when the kind has no `spec.template`.
    pub async fn template_ports(&self, namespace: &str, w: &Workload) -> Result<Option<BTreeSet<String>>, Error> {
        let object = self.workload(namespace, w).await?;
        let Some(template) = object.data.get("spec").and_then(|s| s.get("template")) else { return Ok(None) };
        let containers = template.pointer("/spec/containers").and_then(|c| c.as_array()).cloned().unwrap_or_default();
        let ports = containers.iter().flat_map(|c| c.get("ports").and_then(|p| p.as_array()).into_iter().flatten());
        Ok(Some(ports.filter_map(|p| p.get("name")?.as_str().map(str::to_owned)).collect()))
    }

    /// Lists every page of pods matching `selector` in `namespace`, restarting once on 410 Gone.
    async fn list_pods(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>, Error> {
        // Decoded into the fields clbsync reads only (`MinimalPod`): the same request as `Api::<Pod>::list`.
        let path = <K8sPod as kube::Resource>::url_path(&(), Some(namespace));
        let op = Access { verb: "list", resource: "pods", group: "", namespace };
        let what = match selector {
            "" => format!("list pods in namespace {namespace}"),
            _ => format!("list pods in namespace {namespace} with selector {selector}"),
        };
        let mut restarted = false;
        'list: loop {
            let mut pods = Vec::new();
            let mut token: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let mut params = ListParams::default().labels(selector).limit(self.page_size);
                params = match &token {
                    Some(t) => params.continue_token(t),
                    // Served from the API server's watch cache, like an informer's first list, instead of a
                    // quorum read from etcd that scans (and label-filters) every pod of the namespace
                    // (BENCHMARKS.md). The cache may trail etcd by a moment; the next run sees any pod it missed.
                    None => params.match_any(),
                };
                let list = async {
                    let mut request = Request::new(&path).list(&params).map_err(kube::Error::BuildRequest)?;
                    request.extensions_mut().insert("list");
                    self.client.request::<ObjectList<MinimalPod>>(request).await
                };
                let page = match self.request(&what, op, list).await {
                    Ok(page) => page,
                    Err(Error::Api { error: kube::Error::Api(status), .. })
                        if status.code == 410 && token.is_some() && !restarted =>
                    {
                        tracing::warn!(%namespace, %selector, "pod list continue token expired (410 Gone), listing again");
                        restarted = true;
                        continue 'list;
                    }
                    Err(e) => return Err(e),
                };
                if pods.len() + page.items.len() > MAX_PODS {
                    return Err(Error::TooManyPods { what, max: MAX_PODS });
                }
                pods.extend(page.items.into_iter().map(pod_from_minimal));
                match page.metadata.continue_.filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t),
                    None => return Ok(pods),
                }
            }
            return Err(Error::TooManyPages { what, max: MAX_PAGES });
        }
    }

    /// Fails with [`Error::NamespaceNotFound`] if `namespace` does not exist. Skipped (Ok) when the role may
    /// not read namespaces.
    pub async fn check_namespace(&self, namespace: &str) -> Result<(), Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let op = Access { verb: "get", resource: "namespaces", group: "", namespace };
        match self.request(&format!("get namespace {namespace}"), op, api.get(namespace)).await {
            Ok(_) => Ok(()),
            Err(Error::Api { error: kube::Error::Api(status), .. }) if status.code == 404 => {
                Err(Error::NamespaceNotFound { namespace: namespace.to_owned() })
            }
            Err(Error::Forbidden { .. }) => {
                tracing::debug!(%namespace, "no `get namespaces` permission, cannot tell a missing namespace from an empty one");
                Ok(())
            }
            Err(e) => Err(e),
        }
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
                (labels_selector_string(&labels).map_err(invalid)?, None)
            }
            PodSource::Selector(labels) => (labels_selector_string(labels).map_err(invalid)?, None),
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

/// The resource of scalable kind `kind` in its group version's discovery `list`: it must be namespaced and have a
/// `scale` subresource; otherwise why not.
pub fn scalable_resource(list: &APIResourceList, kind: &WorkloadKind) -> Result<ApiResource, String> {
    let (api_version, name) = (kind.api_version(), kind.kind());
    let Some(resource) = list.resources.iter().find(|r| r.kind == name && !r.name.contains('/')) else {
        return Err(format!("{api_version} has no kind {name}"));
    };
    if !resource.namespaced {
        return Err(format!("{name} is cluster-scoped; a workload is namespaced"));
    }
    let scale = format!("{}/scale", resource.name);
    if !list.resources.iter().any(|r| r.name == scale) {
        return Err(format!(
            "{name} ({}) has no scale subresource, so no status.selector to read (its CRD declares none)",
            resource.name
        ));
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Ok(ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: api_version.to_owned(),
        kind: name.to_owned(),
        plural: resource.name.clone(),
    })
}

/// The resource of a built-in kind (apps/v1).
pub fn built_in(kind: &WorkloadKind) -> ApiResource {
    ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: kind.kind().into(),
        plural: kind.built_in_resource().unwrap_or_default().into(),
    }
}

/// [`Error::WorkloadNotFound`] for a workload query.
pub fn not_found(query: &PodQuery) -> Error {
    let field = match &query.source {
        PodSource::Workload(w) if w.kind == WorkloadKind::Deployment => "deployment:` or `workload:",
        _ => "workload:",
    };
    Error::WorkloadNotFound { workload: query.to_string(), field }
}

/// [`Error::WorkloadNotFound`] for the Service of a `service:` backend.
pub fn service_not_found(namespace: &str, name: &str) -> Error {
    Error::WorkloadNotFound { workload: format!("service {namespace}/{name}"), field: "service:" }
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

/// Maps a kube-rs error from a request described by `what`/`op` to an [`Error`] that names what to check.
pub(crate) fn map_error(err: kube::Error, what: &str, op: Access<'_>) -> Error {
    match &err {
        kube::Error::Api(status) if status.code == 401 => Error::Unauthorized,
        kube::Error::Api(status) if status.code == 403 => Error::Forbidden {
            verb: op.verb.to_owned(),
            resource: op.resource.to_owned(),
            group: op.group.to_owned(),
            namespace: op.namespace.to_owned(),
            message: status.message.clone(),
        },
        kube::Error::Api(status) if status.code == 504 => Error::Timeout { what: what.to_owned() },
        _ if is_timeout(&err) => Error::Timeout { what: what.to_owned() },
        _ if is_too_large(&err) => Error::ResponseTooLarge { what: what.to_owned(), max_mib: MAX_RESPONSE_BYTES >> 20 },
        _ => Error::Api { what: what.to_owned(), error: err },
    }
}

/// The cluster of the kubeconfig's current context, for messages.
fn current_cluster(file: &Kubeconfig) -> Option<String> {
    let current = file.current_context.as_deref()?;
    let context = file.contexts.iter().find(|c| c.name == current)?.context.as_ref()?;
    Some(context.cluster.clone())
}

/// Refuses a configuration that skips TLS verification, unless allowed; then warns.
fn check_tls(config: &Config, cluster: Option<String>, options: &ConnectOptions) -> Result<(), Error> {
    if !config.accept_invalid_certs {
        return Ok(());
    }
    let cluster = cluster.unwrap_or_else(|| "(current context)".to_owned());
    let server = config.cluster_url.to_string();
    if !options.allow_insecure_skip_tls_verify {
        return Err(Error::InsecureTls { cluster, server });
    }
    tracing::warn!(
        %cluster,
        %server,
        "INSECURE: the Kubernetes API server's certificate is NOT checked (insecure-skip-tls-verify in the kubeconfig, accepted by --allow-insecure-skip-tls-verify): anyone on the path can read clbsync's token"
    );
    Ok(())
}

/// The variables no credential plugin gets: the CLB credentials', and `CLBSYNC_PUSHGATEWAY` (its URL may hold a
/// password).
pub fn hidden_from_plugins() -> impl Iterator<Item = &'static str> {
    credentials::VARIABLES.into_iter().chain(["CLBSYNC_PUSHGATEWAY"])
}

/// Removes [`hidden_from_plugins`] from the environment of the kubeconfig's credential plugins: an `exec` plugin
/// (`drop_env`) and an auth-provider's `cmd-path` command (`cmd-drop-env`).
fn hide_credentials_from_plugins(auth: &mut AuthInfo) {
    if let Some(exec) = auth.exec.as_mut() {
        exec.drop_env.get_or_insert_default().extend(hidden_from_plugins().map(String::from));
    }
    if let Some(provider) = auth.auth_provider.as_mut() {
        let drop = provider.config.entry("cmd-drop-env".to_owned()).or_default();
        let names: Vec<String> =
            drop.split_whitespace().map(String::from).chain(hidden_from_plugins().map(String::from)).collect();
        *drop = names.join(" ");
    }
}

/// Caps every response body at the given size while it is read (kube-rs buffers whole bodies).
#[derive(Clone, Copy)]
struct BodyLimit(usize);

impl<S> tower::Layer<S> for BodyLimit {
    type Service = BodyLimited<S>;

    fn layer(&self, inner: S) -> BodyLimited<S> {
        BodyLimited { inner, max: self.0 }
    }
}

#[derive(Clone)]
struct BodyLimited<S> {
    inner: S,
    max: usize,
}

impl<S, Req, B> tower::Service<Req> for BodyLimited<S>
where
    S: tower::Service<Req, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<http_body_util::Limited<B>>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Req) -> Self::Future {
        use futures::TryFutureExt;
        let max = self.max;
        Box::pin(self.inner.call(request).map_ok(move |r| r.map(|body| http_body_util::Limited::new(body, max))))
    }
}

/// Whether a response body was cut by [`BodyLimit`], somewhere down the error's source chain.
fn is_too_large(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = e.source();
    }
    false
}

/// When the request never reached the API server (refused, reset, no route, DNS), the innermost cause.
fn connect_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    use std::io::ErrorKind::*;
    let mut cur = Some(err);
    let mut connect = false;
    let mut innermost = String::new();
    while let Some(e) = cur {
        let io_connect = e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | HostUnreachable
                    | NetworkUnreachable
                    | AddrNotAvailable
            )
        });
        // hyper-util's connector error displays as "client error (Connect)".
        connect |= io_connect || e.to_string().ends_with("(Connect)");
        innermost = e.to_string();
        cur = e.source();
    }
    connect.then_some(innermost)
}

/// Whether a transport error is a timeout somewhere down its source chain.
fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        if e.to_string().contains("timed out") {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

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

    fn api_error(code: u16, reason: &str) -> kube::Error {
        let mut status = Status::failure(&format!("{reason} for test"), reason);
        status.code = code;
        kube::Error::Api(Box::new(status))
    }

    const LIST_PODS: Access<'static> = Access { verb: "list", resource: "pods", group: "", namespace: "shop" };

    // ---- errors ----

    #[test]
    fn unauthorized_maps_to_unauthorized() {
        assert!(matches!(map_error(api_error(401, "Unauthorized"), "pods", LIST_PODS), Error::Unauthorized));
    }

    #[test]
    fn forbidden_names_verb_resource_group_namespace_and_the_rule_to_add() {
        let err = map_error(api_error(403, "Forbidden"), "pods", LIST_PODS);
        assert!(matches!(err, Error::Forbidden { .. }), "{err:?}");
        let msg = err.to_string();
        for want in
            ["cannot list pods in namespace shop", "apiGroups: [\"\"]", "resources: [\"pods\"]", "verbs: [\"list\"]"]
        {
            assert!(msg.contains(want), "{msg} should contain {want}");
        }
    }

    #[test]
    fn gateway_timeout_maps_to_timeout() {
        let err = map_error(api_error(504, "Timeout"), "pods in shop", LIST_PODS);
        assert!(matches!(&err, Error::Timeout { what } if what == "pods in shop"), "{err:?}");
    }

    #[test]
    fn transport_timeout_maps_to_timeout() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "deadline");
        let err = map_error(kube::Error::ReadEvents(io), "pods in shop", LIST_PODS);
        assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    }

    #[test]
    fn other_api_errors_keep_their_context_and_cause() {
        let err = map_error(api_error(500, "InternalError"), "pods in shop", LIST_PODS);
        assert!(matches!(&err, Error::Api { what, .. } if what == "pods in shop"), "{err:?}");
        assert!(err.to_string().contains("InternalError"), "the cause is in the message: {err}");
    }
}
