//! Which pods become targets of a backend, and which pods could not and why.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::PodLists;
use crate::model::{DesiredTarget, Pod, PodState, Selected, Target, Weight};
use crate::rules::{Backend, IpFamily, PodSource, PortRef, Rule};

/// The targets of one rule, plus the pods that matched but could not become targets and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DesiredTargets {
    pub targets: Vec<DesiredTarget>,
    pub problems: Vec<String>,
    /// Serving pods that cannot be targets of this backend (no such named port, no address of its family): the
    /// backend cannot bind them, so their readiness gate does not wait for it.
    pub untargetable: BTreeSet<String>,
    /// Of a split rule, the ready targets whose weight is held back until they pass health checks (make before
    /// break across backends), each with what its row says.
    pub warming: BTreeMap<Target, String>,
    /// The weight each of `warming` would have without the hold (what a later pass gives it).
    pub unheld: BTreeMap<Target, Weight>,
    /// Of a split rule with a backend that could not be read, the note of every bound target no readable backend
    /// has: all are kept (which are that backend's is unknown).
    pub kept: Option<String>,
}

impl DesiredTargets {
    /// Adds the targets, problems and untargetable pods of one backend of the rule (as [`targets_for`] finds them).
    pub(super) fn absorb(&mut self, backend: DesiredTargets) {
        self.targets.extend(backend.targets);
        self.problems.extend(backend.problems);
        self.untargetable.extend(backend.untargetable);
    }

    /// Sorts the targets and keeps one per IP:port. Two pods with one (an IP reused while the old pod still
    /// terminates, in one backend or two): the ready pod's target wins, so a serving target is never drained for
    /// the old pod; otherwise the first found.
    pub(super) fn one_per_target(&mut self) {
        self.targets.sort_by_key(|t| (t.target, t.state != PodState::Ready));
        self.targets.dedup_by_key(|t| t.target);
    }
}

/// Whether a pod that is not terminating should take traffic: Running and `Ready`. A pod with clbsync's
/// readiness gate needs `ContainersReady` instead: its `Ready` waits for the gate, which waits for its target.
pub fn serves(pod: &Pod) -> bool {
    let ready = match &pod.gate {
        Some(gate) => gate.containers_ready,
        None => pod.ready,
    };
    pod.phase == "Running" && ready
}

/// Turns pods into the targets of one backend: serving (see [`serves`]) + has an IP + not terminating gives a
/// ready target; a terminating pod that still has an IP gives a terminating one (the planner drains it). Pods without
/// the named port, or without an IP of the wanted family, are reported in `problems`, never silently dropped.
/// The target port is the one `selected` names (a Service port's `targetPort`), else the backend's `port:`.
pub fn targets_for(backend: &Backend, selected: &Selected) -> DesiredTargets {
    let (port_ref, check) = match (&selected.target_port, &backend.pods.source) {
        (Some(target), PodSource::Service(s)) => (
            target,
            format!("check the targetPort of port `{}` of service {}/{}", s.port, backend.pods.namespace, s.name),
        ),
        (Some(target), _) => (target, format!("check the target port of {}", backend.pods)),
        (None, _) => (&backend.port, "check `port:` in the rules file".to_owned()),
    };
    let pods = &selected.pods;
    let mut out = DesiredTargets::default();
    for pod in pods {
        let state = if pod.terminating {
            PodState::Terminating
        } else if serves(pod) {
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
            if state == PodState::Ready {
                out.untargetable.insert(pod.name.clone());
            }
            continue;
        };
        let port = match port_ref {
            PortRef::Number(n) => *n,
            PortRef::Name(name) => match pod.ports.iter().find(|(n, _)| n == name) {
                Some((_, p)) => *p,
                None => {
                    let gate = if pod.gate.is_some() { "; its readiness gate does not wait for this rule" } else { "" };
                    out.problems
                        .push(format!("pod {} has no container port named `{name}`, skipped: {check}{gate}", pod.name));
                    if state == PodState::Ready {
                        out.untargetable.insert(pod.name.clone());
                    }
                    continue;
                }
            },
        };
        let target = Target::new(ip, port);
        let since = pod.terminating_since.filter(|_| pod.terminating);
        out.targets.push(DesiredTarget { target, weight: backend.weight, pod: pod.name.clone(), state, since });
    }
    out.one_per_target();
    out
}

/// Why a rule is not planned.
pub(super) enum Refused {
    /// Its pods could not be read: nothing is removed.
    Skip(String),
    /// A guard holds it; `found` is what its pods gave.
    Block { reason: String, found: Box<DesiredTargets> },
}

/// The targets of one of `rule`'s backends from its listed pods, and what its query selected.
pub(super) fn backend_targets<'p>(
    rule: &Rule,
    backend: &Backend,
    pods: &'p PodLists,
) -> Result<(DesiredTargets, &'p Selected), Refused> {
    let selected = match pods.get(&backend.pods) {
        Some(Ok(selected)) => selected,
        Some(Err(e)) => {
            return Err(Refused::Skip(format!("listing {}: {e}; its targets are left as they are", backend.pods)));
        }
        None => return Err(Refused::Skip(format!("{} was not listed", backend.pods))),
    };
    if matches!(backend.pods.source, PodSource::Service(_)) && selected.target_port.is_none() {
        let reason = format!("the target port of {} was not read; its targets are left as they are", backend.pods);
        return Err(Refused::Skip(reason));
    }
    let wanted = targets_for(backend, selected);
    // Ready pods that all failed to become targets (a port name typo, a missing address family) are a mistake in
    // the rules file, not an empty rule: hold the rule and say why.
    let ready_pods = selected.pods.iter().filter(|p| !p.terminating && serves(p)).count();
    if ready_pods > 0 && !wanted.targets.iter().any(|t| t.state == PodState::Ready) {
        let of = if rule.split.is_some() { format!(" of {}", backend.pods) } else { String::new() };
        let reason = format!(
            "none of the {ready_pods} ready pod(s){of} can be a target ({}): check `port:` and `ip_family:` in the \
             rules file (line {}); the rule's targets are left as they are",
            wanted.problems.first().map_or("no usable address or port", String::as_str),
            rule.line
        );
        return Err(Refused::Block { reason, found: Box::new(wanted) });
    }
    Ok((wanted, selected))
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
