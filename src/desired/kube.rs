//! [`KubeCluster`]: the [`Cluster`] implementation that asks a real Kubernetes API server.
//!
//! A `Deployment` query GETs the deployment (apps/v1) and lists pods with its `spec.selector`; a `Selector`
//! query lists pods with the label map. Lists are paged (`limit` + `continue`); an expired continue token
//! (410 Gone) restarts the list once. Within one run each distinct (namespace, selector) is listed once, even
//! when two deployments share a selector.
//!
//! Errors never become "zero pods". Because listing pods in a namespace that does not exist returns an empty
//! list, an empty result (and a 404 on the deployment) is followed by a GET of the namespace, so a typo in
//! `namespace:` is reported as [`Error::NamespaceNotFound`]. That GET needs `get` on `namespaces`; when the
//! role lacks it (403) the check is skipped and the result stands as it is.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod as K8sPod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use super::{Cluster, Error, Pod};
use crate::rules::{PodQuery, PodSource};

/// Pods per list request. Large enough that most workloads take one request, small enough to bound the
/// size of one response.
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// Deadline of one API request (a page, a GET). The client itself has no read timeout.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
struct Op<'a> {
    verb: &'a str,
    resource: &'a str,
    group: &'a str,
    namespace: &'a str,
}

impl KubeCluster {
    /// Connects with the kubeconfig at `kubeconfig` (its current context), or, when `None`, with kube-rs's
    /// defaults: `$KUBECONFIG`, then `~/.kube/config`, then the in-cluster service account. The error says
    /// which sources were tried.
    pub async fn connect(kubeconfig: Option<&Path>) -> Result<Self, Error> {
        let (config, tried) = match kubeconfig {
            Some(path) => {
                let tried = format!("kubeconfig {}", path.display());
                let config = async {
                    let file = Kubeconfig::read_from(path)?;
                    Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await
                }
                .await
                .map_err(|e| Error::Config { tried: tried.clone(), error: e.into() })?;
                (config, tried)
            }
            None => {
                let tried = match std::env::var_os("KUBECONFIG") {
                    Some(v) => format!("KUBECONFIG={} and the in-cluster service account", v.to_string_lossy()),
                    None => "~/.kube/config and the in-cluster service account".to_owned(),
                };
                let config = Config::infer()
                    .await
                    .map_err(|e| Error::Config { tried: tried.clone(), error: kube::Error::InferConfig(e) })?;
                (config, tried)
            }
        };
        let server = config.cluster_url.to_string();
        let client = Client::try_from(config).map_err(|error| Error::Config { tried, error })?;
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

    async fn selector_of(&self, namespace: &str, name: &str) -> Result<String, Error> {
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
        let op = Op { verb: "get", resource: "deployments", group: "apps", namespace };
        let what = format!("get deployment {namespace}/{name}");
        let deployment = match self.request(&what, op, api.get(name)).await {
            Ok(d) => d,
            Err(Error::Api { error: kube::Error::Api(status), .. }) if status.code == 404 => {
                self.check_namespace(namespace).await?;
                return Err(Error::DeploymentNotFound { namespace: namespace.to_owned(), name: name.to_owned() });
            }
            Err(e) => return Err(e),
        };
        let invalid =
            |reason: String| Error::InvalidSelector { query: format!("deployment {namespace}/{name}"), reason };
        let spec = deployment.spec.ok_or_else(|| invalid("the deployment has no spec".to_owned()))?;
        label_selector_string(&spec.selector).map_err(invalid)
    }

    /// Lists every page of pods matching `selector` in `namespace`, restarting once on 410 Gone.
    async fn list_pods(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>, Error> {
        let api: Api<K8sPod> = Api::namespaced(self.client.clone(), namespace);
        let op = Op { verb: "list", resource: "pods", group: "", namespace };
        let what = format!("list pods in namespace {namespace} with selector {selector}");
        let mut restarted = false;
        'list: loop {
            let mut pods = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut params = ListParams::default().labels(selector).limit(self.page_size);
                params = match &token {
                    Some(t) => params.continue_token(t),
                    // Served from the API server's watch cache, like an informer's first list, instead of a
                    // quorum read from etcd that scans (and label-filters) every pod of the namespace: 16 ms
                    // instead of 100+ ms per list on the testbed (BENCHMARKS.md). The cache may trail etcd by
                    // milliseconds, which a run every minute absorbs; the next run sees any pod it missed.
                    None => params.match_any(),
                };
                let page = match self.request(&what, op, api.list(&params)).await {
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
                pods.extend(page.items.into_iter().map(pod_from_k8s));
                match page.metadata.continue_.filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t),
                    None => return Ok(pods),
                }
            }
        }
    }

    /// Fails with [`Error::NamespaceNotFound`] if `namespace` does not exist. Skipped (Ok) when the role may
    /// not read namespaces.
    async fn check_namespace(&self, namespace: &str) -> Result<(), Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let op = Op { verb: "get", resource: "namespaces", group: "", namespace };
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
        op: Op<'_>,
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
        let namespace = query.namespace.as_str();
        let selector = match &query.source {
            PodSource::Deployment(name) => self.selector_of(namespace, name).await?,
            PodSource::Selector(labels) => labels_selector_string(labels)
                .map_err(|reason| Error::InvalidSelector { query: query.to_string(), reason })?,
        };
        let cell = {
            let mut lists = self.lists.lock().expect("the list cache lock is never held across a panic");
            lists.entry((namespace.to_owned(), selector.clone())).or_default().clone()
        };
        let pods = cell.get_or_try_init(|| self.list_pods(namespace, &selector)).await?.clone();
        if pods.is_empty() {
            self.check_namespace(namespace).await?;
        }
        Ok(pods)
    }
}

/// Maps a kube-rs error from a request described by `what`/`op` to an [`Error`] that names what to check.
fn map_error(err: kube::Error, what: &str, op: Op<'_>) -> Error {
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
        _ => Error::Api { what: what.to_owned(), error: err },
    }
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

/// Turns a Deployment's `spec.selector` into a label-selector string (`a=b,c in (d,e),!f`). Refuses an empty
/// selector, which would select every pod in the namespace, and malformed requirements. Requirements are
/// sorted, so equal selectors give equal strings (one list per distinct selector).
pub fn label_selector_string(selector: &LabelSelector) -> Result<String, String> {
    let mut parts: Vec<String> = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        parts.push(format!("{key}={value}"));
    }
    for req in selector.match_expressions.iter().flatten() {
        let key = &req.key;
        if key.is_empty() {
            return Err("a matchExpressions entry has an empty key".to_owned());
        }
        let mut values: Vec<&str> = req.values.iter().flatten().map(String::as_str).collect();
        values.sort_unstable();
        values.dedup();
        let part = match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                return Err(format!("operator {} on key `{key}` needs at least one value", req.operator));
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                return Err(format!("operator {} on key `{key}` must not have values", req.operator));
            }
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            other => return Err(format!("unknown operator `{other}` on key `{key}`")),
        };
        parts.push(part);
    }
    if parts.is_empty() {
        return Err("the selector is empty and would select every pod in the namespace".to_owned());
    }
    parts.sort();
    parts.dedup();
    Ok(parts.join(","))
}

/// Turns a rules-file label map into a selector string, refusing an empty map and characters that could
/// change the meaning of the selector (`,`, `!`, `(`, spaces, ...).
pub fn labels_selector_string(labels: &std::collections::BTreeMap<String, String>) -> Result<String, String> {
    if labels.is_empty() {
        return Err("the selector is empty and would select every pod in the namespace".to_owned());
    }
    let key_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    let value_ok = |s: &str| s.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    let mut out = String::new();
    for (key, value) in labels {
        if !key_ok(key) {
            return Err(format!("`{key}` is not a valid label key"));
        }
        if !value_ok(value) {
            return Err(format!("`{value}` (label `{key}`) is not a valid label value"));
        }
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{key}={value}");
    }
    Ok(out)
}

/// Keeps what clbsync needs from a Kubernetes pod. IPs that do not parse are dropped with a warning (the
/// API server validates them, so this does not happen in practice).
pub fn pod_from_k8s(pod: K8sPod) -> Pod {
    let name = pod.metadata.name.unwrap_or_default();
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let status = pod.status.unwrap_or_default();
    let phase = status.phase.unwrap_or_default();
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    let raw_ips: Vec<String> = match status.pod_ips.filter(|ips| !ips.is_empty()) {
        Some(ips) => ips.into_iter().map(|ip| ip.ip).collect(),
        None => status.pod_ip.into_iter().filter(|ip| !ip.is_empty()).collect(),
    };
    let mut ips: Vec<IpAddr> = Vec::with_capacity(raw_ips.len());
    for raw in raw_ips {
        match raw.parse() {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(pod = %name, ip = %raw, "ignoring a pod IP that does not parse")
            }
        }
    }
    let mut ports: Vec<(String, u16)> = Vec::new();
    for container in pod.spec.into_iter().flat_map(|s| s.containers) {
        for port in container.ports.into_iter().flatten() {
            let (Some(port_name), Ok(number)) = (port.name, u16::try_from(port.container_port)) else {
                continue;
            };
            if !ports.iter().any(|(n, _)| *n == port_name) {
                ports.push((port_name, number));
            }
        }
    }
    Pod { name, phase, ready, terminating, ips, ports }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodCondition, PodIP, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelectorRequirement, ObjectMeta, Time};
    use kube::core::Status;

    use super::*;

    // ---- builders ----

    fn selector() -> LabelSelector {
        LabelSelector::default()
    }

    trait SelectorExt {
        fn label(self, k: &str, v: &str) -> Self;
        fn expr(self, k: &str, op: &str, values: &[&str]) -> Self;
    }

    impl SelectorExt for LabelSelector {
        fn label(mut self, k: &str, v: &str) -> Self {
            self.match_labels.get_or_insert_with(BTreeMap::new).insert(k.into(), v.into());
            self
        }
        fn expr(mut self, k: &str, op: &str, values: &[&str]) -> Self {
            let values = (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect());
            self.match_expressions.get_or_insert_with(Vec::new).push(LabelSelectorRequirement {
                key: k.into(),
                operator: op.into(),
                values,
            });
            self
        }
    }

    struct PodBuilder(K8sPod);

    fn pod(name: &str) -> PodBuilder {
        PodBuilder(K8sPod {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(PodSpec::default()),
            status: Some(PodStatus::default()),
        })
    }

    impl PodBuilder {
        fn status(&mut self) -> &mut PodStatus {
            self.0.status.as_mut().expect("builder always sets status")
        }
        fn phase(mut self, phase: &str) -> Self {
            self.status().phase = Some(phase.into());
            self
        }
        fn condition(mut self, type_: &str, status: &str) -> Self {
            self.status().conditions.get_or_insert_with(Vec::new).push(PodCondition {
                type_: type_.into(),
                status: status.into(),
                ..Default::default()
            });
            self
        }
        fn ready(self) -> Self {
            self.phase("Running").condition("Ready", "True")
        }
        fn pod_ip(mut self, ip: &str) -> Self {
            self.status().pod_ip = Some(ip.into());
            self
        }
        fn pod_ips(mut self, ips: &[&str]) -> Self {
            self.status().pod_ips = Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
            self
        }
        fn deleting(mut self) -> Self {
            self.0.metadata.deletion_timestamp = Some(Time(Default::default()));
            self
        }
        fn container(mut self, name: &str, ports: &[(Option<&str>, i32)]) -> Self {
            let ports = ports
                .iter()
                .map(|(n, p)| ContainerPort { name: n.map(Into::into), container_port: *p, ..Default::default() })
                .collect();
            let spec = self.0.spec.as_mut().expect("builder always sets spec");
            spec.containers.push(Container { name: name.into(), ports: Some(ports), ..Default::default() });
            self
        }
        fn convert(self) -> Pod {
            pod_from_k8s(self.0)
        }
    }

    fn api_error(code: u16, reason: &str) -> kube::Error {
        let mut status = Status::failure(&format!("{reason} for test"), reason);
        status.code = code;
        kube::Error::Api(Box::new(status))
    }

    const LIST_PODS: Op<'static> = Op { verb: "list", resource: "pods", group: "", namespace: "shop" };

    // ---- selectors ----

    #[test]
    fn match_labels_become_equality_requirements() {
        let s = selector().label("app", "web").label("tier", "frontend");
        assert_eq!(label_selector_string(&s).unwrap(), "app=web,tier=frontend");
    }

    #[test]
    fn all_four_operators_are_converted() {
        let s = selector()
            .expr("env", "In", &["prod", "canary"])
            .expr("track", "NotIn", &["debug"])
            .expr("app", "Exists", &[])
            .expr("legacy", "DoesNotExist", &[]);
        assert_eq!(label_selector_string(&s).unwrap(), "!legacy,app,env in (canary,prod),track notin (debug)");
    }

    #[test]
    fn labels_and_expressions_combine_and_sort_so_equal_selectors_share_a_list() {
        let a = selector().label("app", "web").expr("env", "In", &["b", "a"]);
        let b = selector().expr("env", "In", &["a", "b"]).label("app", "web");
        assert_eq!(label_selector_string(&a).unwrap(), "app=web,env in (a,b)");
        assert_eq!(label_selector_string(&a), label_selector_string(&b));
    }

    #[test]
    fn empty_selector_is_refused_because_it_selects_every_pod() {
        let err = label_selector_string(&selector()).unwrap_err();
        assert!(err.contains("every pod"), "{err}");
        let err = label_selector_string(&LabelSelector {
            match_labels: Some(BTreeMap::new()),
            match_expressions: Some(vec![]),
        })
        .unwrap_err();
        assert!(err.contains("every pod"), "{err}");
    }

    #[test]
    fn malformed_requirements_are_refused() {
        for (s, want) in [
            (selector().expr("env", "In", &[]), "needs at least one value"),
            (selector().expr("env", "NotIn", &[]), "needs at least one value"),
            (selector().expr("env", "Exists", &["x"]), "must not have values"),
            (selector().expr("env", "Gt", &["1"]), "unknown operator `Gt`"),
            (selector().expr("", "Exists", &[]), "empty key"),
        ] {
            let err = label_selector_string(&s).unwrap_err();
            assert!(err.contains(want), "{err} should contain {want}");
        }
    }

    #[test]
    fn rules_label_maps_become_selectors_and_unsafe_characters_are_refused() {
        let labels = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        assert_eq!(
            labels_selector_string(&labels(&[("tier", "fe"), ("app.kubernetes.io/name", "web")])).unwrap(),
            "app.kubernetes.io/name=web,tier=fe"
        );
        assert!(labels_selector_string(&labels(&[])).unwrap_err().contains("every pod"));
        assert!(labels_selector_string(&labels(&[("app", "web,env=prod")])).is_err());
        assert!(labels_selector_string(&labels(&[("!app", "web")])).is_err());
        assert_eq!(labels_selector_string(&labels(&[("app", "")])).unwrap(), "app=");
    }

    // ---- pods ----

    #[test]
    fn ready_running_pod_keeps_phase_readiness_ip_and_named_ports() {
        let p = pod("web-0")
            .ready()
            .pod_ip("10.0.0.5")
            .container("web", &[(Some("http"), 8080), (None, 9000)])
            .container("sidecar", &[(Some("metrics"), 9100), (Some("http"), 1)])
            .convert();
        assert_eq!(
            p,
            Pod {
                name: "web-0".into(),
                phase: "Running".into(),
                ready: true,
                terminating: false,
                ips: vec!["10.0.0.5".parse().unwrap()],
                ports: vec![("http".into(), 8080), ("metrics".into(), 9100)],
            }
        );
    }

    #[test]
    fn ready_condition_must_be_true() {
        assert!(!pod("a").phase("Running").condition("Ready", "False").convert().ready);
        assert!(!pod("b").phase("Running").condition("ContainersReady", "True").convert().ready);
        assert!(!pod("c").phase("Pending").convert().ready);
    }

    #[test]
    fn deletion_timestamp_means_terminating() {
        assert!(pod("a").ready().deleting().convert().terminating);
        assert!(!pod("b").ready().convert().terminating);
    }

    #[test]
    fn pod_ips_win_over_pod_ip_and_keep_their_order() {
        let p = pod("a").pod_ip("10.0.0.1").pod_ips(&["10.0.0.1", "fd00::1"]).convert();
        assert_eq!(p.ips, vec!["10.0.0.1".parse::<IpAddr>().unwrap(), "fd00::1".parse().unwrap()]);
        let p = pod("b").pod_ip("fd00::2").pod_ips(&[]).convert();
        assert_eq!(p.ips, vec!["fd00::2".parse::<IpAddr>().unwrap()]);
    }

    #[test]
    fn pod_without_status_has_no_ip_and_is_not_ready() {
        let p = pod_from_k8s(K8sPod {
            metadata: ObjectMeta { name: Some("x".into()), ..Default::default() },
            ..Default::default()
        });
        assert_eq!((p.phase.as_str(), p.ready, p.ips.len(), p.ports.len()), ("", false, 0, 0));
    }

    #[test]
    fn unparsable_ips_and_out_of_range_ports_are_dropped() {
        let p = pod("a").pod_ips(&["not-an-ip", "10.0.0.9"]).container("c", &[(Some("big"), 70000)]).convert();
        assert_eq!(p.ips, vec!["10.0.0.9".parse::<IpAddr>().unwrap()]);
        assert!(p.ports.is_empty());
    }

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
