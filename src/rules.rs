//! `rules.yaml`: what should be bound where. Raw YAML → validated [`Rules`]; every problem is reported with
//! file, line, column and field path, all at once.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{Place, Protocol, Weight};
pub use crate::model::{PortRef, RuleId};

/// A validated rules file: one [`Rule`] per place backends are bound (an L4 listener or an L7 rule).
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// In the file's order, which is the order of their ids.
    pub rules: Vec<Rule>,
}

impl Rules {
    /// The rule with this id, if it is one of these.
    pub fn get(&self, id: RuleId) -> Option<&Rule> {
        let at = self.rules.binary_search_by_key(&id, |r| r.id).ok()?;
        Some(&self.rules[at])
    }

    /// The rules with these ids, in id order; ids not among these rules are left out.
    pub fn subset(&self, ids: impl IntoIterator<Item = RuleId>) -> Rules {
        let mut ids: Vec<RuleId> = ids.into_iter().collect();
        ids.sort();
        ids.dedup();
        Rules { rules: ids.into_iter().filter_map(|id| self.get(id).cloned()).collect() }
    }
}

/// One binding spec: which load balancer, listener and (L7) rule, and which pods go behind it.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub id: RuleId,
    /// Field path of the rule in the file, e.g. `[0].listeners[1].rules[0]`, for messages.
    pub path: String,
    /// 1-based line of the rule in the file, for messages.
    pub line: usize,
    /// Lines of `listener_id` and `location_id`, for messages about them (the rule's line when not set).
    pub id_lines: IdLines,
    pub load_balancer_id: String,
    pub listener: ListenerSpec,
    /// Set for HTTP/HTTPS listeners, `None` for layer 4.
    pub l7: Option<L7Spec>,
    /// The rule's backend; with `backends:`, the first of [`Rule::split`]'s (whose `policy` and `allow_empty`
    /// every backend shares).
    pub backend: Backend,
    /// `backends:`: several backends, each with its share of the rule's traffic; `None` for `backend:`.
    pub split: Option<Split>,
}

/// A rule's traffic split over several backends (`backends:`), all in one namespace.
#[derive(Clone, Debug, PartialEq)]
pub struct Split {
    /// In the order of the file; at least one.
    pub backends: Vec<Share>,
    pub on_empty: OnEmpty,
}

/// One backend of a [`Split`] and its part of the rule's traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    pub backend: Backend,
    /// A positive proportion: shares need not add up to 100.
    pub share: u32,
    /// (line, column) of the backend's `port`, for `validate --kubeconfig`.
    pub port_at: (usize, usize),
}

/// `on_empty_backend:`, what a split does while one of its backends has no ready pods (CLB cannot fail a part of
/// the requests, so that backend's part goes to the others either way).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnEmpty {
    /// The warning says the other backends' weights are held. The weights are the same as with `Redistribute`:
    /// the others are weighted by their shares among themselves, bound weights kept within the tolerance.
    #[default]
    Hold,
    /// The warning says the others are weighted again by their shares.
    Redistribute,
}

/// Where a rule's ids (and its backend's port, for `validate --kubeconfig`) are written in the rules file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdLines {
    pub listener_id: usize,
    pub location_id: usize,
    /// (line, column) of `backend.port`.
    pub port: (usize, usize),
}

impl Rule {
    /// The rule's backends: the split's, or the one `backend:`.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> + Clone {
        let split = self.split.as_ref().map(|s| s.backends.iter().map(|b| &b.backend));
        let one = self.split.is_none().then_some(&self.backend);
        split.into_iter().flatten().chain(one)
    }

    /// The pods each backend names, in the file's order.
    pub fn queries(&self) -> impl Iterator<Item = &PodQuery> + Clone {
        self.backends().map(|b| &b.pods)
    }

    /// Where the rule binds, as the rules file says it.
    pub fn place(&self) -> Place {
        Place {
            load_balancer_id: self.load_balancer_id.clone(),
            protocol: self.listener.protocol,
            port: self.listener.port,
            l7: self.l7.as_ref().map(|l| (l.domain.clone(), l.url.clone())),
        }
    }
}

/// How a listener is identified: by port + protocol, or directly by id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerSpec {
    pub port: u16,
    pub protocol: Protocol,
    pub listener_id: Option<String>,
}

/// How a layer-7 rule is identified: by domain + url, or directly by location id.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct L7Spec {
    pub domain: String,
    pub url: String,
    pub location_id: Option<String>,
}

/// The pods behind a rule and how their targets are bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub pods: PodQuery,
    pub port: PortRef,
    pub weight: Weight,
    pub policy: Policy,
    pub allow_empty: bool,
    pub ip_family: IpFamily,
}

/// Which pods: a namespace and either a workload (its own selector) or a label map.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodQuery {
    pub namespace: String,
    pub source: PodSource,
}

/// The ways a backend names its pods.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PodSource {
    /// `workload:`, or its short form `deployment: NAME`.
    Workload(Workload),
    /// `service: NAME`: the Service's `spec.selector` chooses the pods, and the `targetPort` of its port `port:`
    /// is the target port.
    Service(ServicePort),
    Selector(BTreeMap<String, String>),
}

/// A port of a Service, as a `service:` backend names it: the Service, and the name or number of one of its
/// ports (the backend's `port:`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePort {
    pub name: String,
    pub port: PortRef,
}

impl PodSource {
    /// `deployment: NAME`.
    pub fn deployment(name: impl Into<String>) -> Self {
        PodSource::Workload(Workload { kind: WorkloadKind::Deployment, name: name.into() })
    }
}

/// A workload whose selector chooses the pods: a built-in kind's `spec.selector`, or the `status.selector` of the
/// `scale` subresource of any other kind (as `kubectl scale` and the HPA read it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
}

/// The kind of a [`Workload`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    /// Any other namespaced kind with a `scale` subresource, e.g. `argoproj.io/v1alpha1` `Rollout`; its resource
    /// is found through the API server's discovery.
    Scalable {
        api_version: String,
        kind: String,
    },
}

impl WorkloadKind {
    /// The built-in kinds (apps/v1), read by their `spec.selector`.
    pub(crate) const BUILT_IN: [WorkloadKind; 4] =
        [WorkloadKind::Deployment, WorkloadKind::StatefulSet, WorkloadKind::DaemonSet, WorkloadKind::ReplicaSet];

    /// `Deployment`, `Rollout`.
    pub fn kind(&self) -> &str {
        match self {
            WorkloadKind::Deployment => "Deployment",
            WorkloadKind::StatefulSet => "StatefulSet",
            WorkloadKind::DaemonSet => "DaemonSet",
            WorkloadKind::ReplicaSet => "ReplicaSet",
            WorkloadKind::Scalable { kind, .. } => kind,
        }
    }

    /// `apps/v1`, `argoproj.io/v1alpha1`.
    pub(crate) fn api_version(&self) -> &str {
        match self {
            WorkloadKind::Scalable { api_version, .. } => api_version,
            _ => "apps/v1",
        }
    }

    /// The API group: `apps`, `argoproj.io`.
    pub fn group(&self) -> &str {
        self.api_version().split_once('/').map_or("", |(g, _)| g)
    }

    /// A built-in kind's resource (`statefulsets`); `None` for a scalable kind (discovery names it).
    pub(crate) fn built_in_resource(&self) -> Option<&'static str> {
        match self {
            WorkloadKind::Deployment => Some("deployments"),
            WorkloadKind::StatefulSet => Some("statefulsets"),
            WorkloadKind::DaemonSet => Some("daemonsets"),
            WorkloadKind::ReplicaSet => Some("replicasets"),
            WorkloadKind::Scalable { .. } => None,
        }
    }
}

/// `statefulset`, or `rollout.argoproj.io` for a scalable kind (as kubectl names them).
impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkloadKind::Scalable { kind, .. } => write!(f, "{}.{}", kind.to_lowercase(), self.group()),
            _ => f.write_str(&self.kind().to_lowercase()),
        }
    }
}

impl fmt::Display for PodQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            PodSource::Workload(w) => write!(f, "{} {}/{}", w.kind, self.namespace, w.name),
            PodSource::Service(s) => write!(f, "service {}/{} port {}", self.namespace, s.name, s.port),
            PodSource::Selector(labels) => {
                write!(f, "pods in {} with ", self.namespace)?;
                let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                f.write_str(&parts.join(","))
            }
        }
    }
}

/// What the planner may do on a rule. `UpsertOnly` never deregisters (as in ExternalDNS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    #[default]
    Sync,
    UpsertOnly,
}

/// Which pod IP to bind when a pod has several (dual stack).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IpFamily {
    #[default]
    Ipv4,
    Ipv6,
}

mod labels;
mod parse;
mod read;
mod spans;

pub use parse::parse;
pub use read::load;
pub(crate) use read::{Loaded, from_bytes, load_regular, read_regular};

/// One problem in a rules file, located by line, column and field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Field path, e.g. `[0].listeners[1].port`; empty for the document itself.
    pub path: String,
    pub message: String,
}

/// Why a rules file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The I/O error is part of the message, not a `source`: `{:#}` would print it twice.
    #[error("cannot read rules file {file}: {error}; check --rules / CLBSYNC_RULES")]
    Read { file: String, error: std::io::Error },
    #[error("{}", render(file, problems))]
    Invalid { file: String, problems: Vec<Problem> },
}

impl Error {
    /// Every problem found (empty for read errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Error::Read { .. } => &[],
            Error::Invalid { problems, .. } => problems,
        }
    }
}

fn render(file: &str, problems: &[Problem]) -> String {
    let n = problems.len();
    let mut out = format!("{file} has {n} problem{}:", if n == 1 { "" } else { "s" });
    for p in problems {
        out.push_str(&format!("\n  {}", p.render(file)));
    }
    out
}

impl Problem {
    /// `file:line:col: path: message`, the format editors and CI annotate.
    /// The message is [printable](crate::model::printable): it may quote the file.
    pub fn render(&self, file: &str) -> String {
        let message = crate::model::printable(&self.message);
        if self.path.is_empty() {
            format!("{file}:{}:{}: {message}", self.line, self.column)
        } else {
            format!("{file}:{}:{}: {}: {message}", self.line, self.column, crate::model::printable(&self.path))
        }
    }
}
