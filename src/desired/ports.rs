//! `validate --kubeconfig`: the rules file checked against the cluster before it is applied. A named `port:` that
//! no container of the rule's pods has would block the rule (and, before issue 24, the readiness gate of every
//! pod it selects); here it is a problem at the rule's `port:` line, like any other validation problem.

use std::collections::BTreeSet;

use super::kube::KubeCluster;
use super::{Cluster, Error};
use crate::rules::{Backend, PodQuery, PodSource, PortRef, Problem, Rules};

/// The problems of `rules` that only the cluster can tell: a named port that no container of the rule's pods has
/// (a workload's pod template; for a `selector:` or a kind without `spec.template`, the pods it matches now, when
/// there are any; for a `service:`, its port's named targetPort on the pods its selector matches now), and a
/// workload, Service, kind or namespace that does not exist, a Service without a selector or without that port. Any other Kubernetes error is an error: the check could not be made.
pub async fn check(cluster: &KubeCluster, rules: &Rules) -> Result<Vec<Problem>, Error> {
    let mut problems = Vec::new();
    for rule in &rules.rules {
        match &rule.split {
            None => {
                let at = At { path: format!("{}.backend", rule.path), line: rule.line, port: rule.id_lines.port };
                check_backend(cluster, &rule.backend, &at, &mut problems).await?;
            }
            Some(split) => {
                for (k, share) in split.backends.iter().enumerate() {
                    let path = format!("{}.backends[{k}]", rule.path);
                    let at = At { path, line: share.port_at.0, port: share.port_at };
                    check_backend(cluster, &share.backend, &at, &mut problems).await?;
                }
            }
        }
    }
    problems.sort_by_key(|p| (p.line, p.column));
    Ok(problems)
}

/// Where a backend is in the rules file: its field path, the line a missing workload is reported at, and the
/// (line, column) of its `port`.
struct At {
    path: String,
    line: usize,
    port: (usize, usize),
}

/// [`check`] for one backend, adding its problems to `problems`.
async fn check_backend(
    cluster: &KubeCluster,
    backend: &Backend,
    at: &At,
    problems: &mut Vec<Problem>,
) -> Result<(), Error> {
    let query = &backend.pods;
    let (line, column) = at.port;
    let missing = |e: Error| Problem { line: at.line, column: 1, path: at.path.clone(), message: e.to_string() };
    let mut port = backend.port.clone();
    let names: Option<BTreeSet<String>> = match &query.source {
        PodSource::Service(service) => match super::service::resolve(cluster, &query.namespace, service).await {
            Ok((labels, target)) => {
                port = target;
                let by_labels = PodQuery { namespace: query.namespace.clone(), source: PodSource::Selector(labels) };
                pod_ports(cluster, &by_labels).await?
            }
            Err(
                e @ (Error::WorkloadNotFound { .. } | Error::NamespaceNotFound { .. } | Error::UnusableService { .. }),
            ) => {
                problems.push(missing(e));
                return Ok(());
            }
            Err(e) => return Err(e),
        },
        PodSource::Workload(w) => match cluster.template_ports(&query.namespace, w).await {
            Ok(Some(names)) => Some(names),
            Ok(None) => pod_ports(cluster, query).await?,
            Err(
                e @ (Error::WorkloadNotFound { .. } | Error::NamespaceNotFound { .. } | Error::UnusableKind { .. }),
            ) => {
                problems.push(missing(e));
                return Ok(());
            }
            Err(e) => return Err(e),
        },
        PodSource::Selector(_) => match pod_ports(cluster, query).await {
            Ok(names) => names,
            Err(e @ Error::NamespaceNotFound { .. }) => {
                problems.push(missing(e));
                return Ok(());
            }
            Err(e) => return Err(e),
        },
    };
    if let (PortRef::Name(port), Some(names)) = (&port, names)
        && !names.contains(port)
    {
        let have = if names.is_empty() {
            "none is named".to_owned()
        } else {
            format!("they have {}", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
        };
        let whose = match &query.source {
            PodSource::Workload(_) => "the pod template of",
            PodSource::Service(_) => "the pods (by the Service's selector and targetPort) of",
            PodSource::Selector(_) => "the pods of",
        };
        problems.push(Problem {
            line,
            column,
            path: format!("{}.port", at.path),
            message: format!(
                "no container of {whose} {query} has a port named `{port}` ({have}): the rule would be blocked"
            ),
        });
    }
    Ok(())
}

/// The port names of the pods `query` selects now; `None` when it selects none.
async fn pod_ports(cluster: &KubeCluster, query: &PodQuery) -> Result<Option<BTreeSet<String>>, Error> {
    let pods = cluster.pods(query).await?;
    Ok((!pods.is_empty()).then(|| pods.into_iter().flat_map(|p| p.ports).map(|(n, _)| n).collect()))
}
