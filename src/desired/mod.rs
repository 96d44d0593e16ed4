//! Stage 2, desired state: the pods behind each rule and the targets they should be bound as.
//!
//! [`Cluster`] is the I/O boundary (the real implementation is [`kube::KubeCluster`]); turning pods into
//! targets ([`targets_for`]) is pure and tested without a server.

pub mod kube;
pub mod memory;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;

use futures::stream::{self, StreamExt};

use crate::model::{Target, Weight};
use crate::rules::{Backend, IpFamily, PodQuery, PortRef};

/// The pods a [`PodQuery`] selects, as the cluster reports them. Implementations must never turn an error
/// into an empty list: "no pods" and "could not list pods" lead to very different plans.
pub trait Cluster {
    /// Every pod matched by `query`, in any state (the caller decides which ones are targets).
    fn pods(&self, query: &PodQuery) -> impl Future<Output = Result<Vec<Pod>, Error>>;
}

/// What clbsync needs to know about a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    /// `status.phase`, e.g. `Running`, `Pending`.
    pub phase: String,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set: the pod is shutting down.
    pub terminating: bool,
    /// `status.podIPs` (or `status.podIP`), in the order the cluster reports them.
    pub ips: Vec<IpAddr>,
    /// Named container ports (`name` → `containerPort`) of all containers.
    pub ports: Vec<(String, u16)>,
}

/// Why the pods of a query could not be listed. Each variant names what to check.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("deployment {namespace}/{name} not found: check `deployment:` in the rules file and the namespace")]
    DeploymentNotFound { namespace: String, name: String },
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
    /// No usable client configuration: `tried` names the kubeconfig path or the sources kube-rs looked at.
    #[error("loading the Kubernetes client configuration from {tried}: {error}")]
    Config { tried: String, error: ::kube::Error },
    #[error("{0}")]
    Other(String),
}

/// Whether a pod should receive traffic now, or is going away and should be drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodState {
    Ready,
    Terminating,
}

/// A target that should be bound, with the pod it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredTarget {
    pub target: Target,
    pub weight: Weight,
    pub pod: String,
    pub state: PodState,
}

/// The targets of one rule, plus the pods that matched but could not become targets and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredTargets {
    pub targets: Vec<DesiredTarget>,
    pub problems: Vec<String>,
}

/// Turns pods into the targets of one backend: Running + Ready + has an IP + not terminating gives a ready
/// target; a terminating pod that still has an IP gives a terminating one (the planner drains it). Pods without
/// the named port, or without an IP of the wanted family, are reported in `problems`, never silently dropped.
pub fn targets_for(backend: &Backend, pods: &[Pod]) -> DesiredTargets {
    let mut out = DesiredTargets::default();
    let mut seen = BTreeMap::new();
    for pod in pods {
        let state = if pod.terminating {
            PodState::Terminating
        } else if pod.phase == "Running" && pod.ready {
            PodState::Ready
        } else {
            continue;
        };
        let Some(ip) = pick_ip(&pod.ips, backend.ip_family) else {
            if !pod.ips.is_empty() {
                out.problems.push(format!(
                    "pod {} has no {} address ({}), skipped",
                    pod.name,
                    family_name(backend.ip_family),
                    pod.ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ));
            } else if state == PodState::Ready {
                out.problems.push(format!("pod {} is ready but has no pod IP yet, skipped", pod.name));
            }
            continue;
        };
        let port = match &backend.port {
            PortRef::Number(n) => *n,
            PortRef::Name(name) => match pod.ports.iter().find(|(n, _)| n == name) {
                Some((_, p)) => *p,
                None => {
                    out.problems.push(format!(
                        "pod {} has no container port named `{name}`, skipped: check `port:` in the rules file",
                        pod.name
                    ));
                    continue;
                }
            },
        };
        let target = Target::new(ip, port);
        let entry = DesiredTarget { target, weight: backend.weight, pod: pod.name.clone(), state };
        // Two pods with one IP (a reused IP while the old pod terminates): the ready one wins.
        match seen.get(&target) {
            Some(&i) => {
                let existing: &mut DesiredTarget = &mut out.targets[i];
                if existing.state == PodState::Terminating && state == PodState::Ready {
                    *existing = entry;
                }
            }
            None => {
                seen.insert(target, out.targets.len());
                out.targets.push(entry);
            }
        }
    }
    out.targets.sort_by_key(|t| t.target);
    out
}

fn pick_ip(ips: &[IpAddr], family: IpFamily) -> Option<IpAddr> {
    ips.iter().copied().find(|ip| match family {
        IpFamily::Ipv4 => ip.is_ipv4(),
        IpFamily::Ipv6 => ip.is_ipv6(),
    })
}

fn family_name(f: IpFamily) -> &'static str {
    match f {
        IpFamily::Ipv4 => "IPv4",
        IpFamily::Ipv6 => "IPv6",
    }
}

/// Lists the pods of every distinct query once, up to `concurrency` lists at a time. The result holds one entry
/// per distinct query, so rules sharing a deployment share one list.
pub async fn list_all<C: Cluster>(
    cluster: &C,
    queries: impl IntoIterator<Item = PodQuery>,
    concurrency: usize,
) -> BTreeMap<PodQuery, Result<Vec<Pod>, Error>> {
    let mut distinct: Vec<PodQuery> = queries.into_iter().collect();
    distinct.sort();
    distinct.dedup();
    stream::iter(distinct)
        .map(|q| async move {
            let pods = cluster.pods(&q).await;
            (q, pods)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}
