//! Stage 4, the planner: a pure function from desired targets + actual targets + policy to changes.
//!
//! For every rule it lines up what should be bound (ready pods, terminating pods) with what is bound, keyed by
//! (IP, port), and decides one action per target:
//!
//! ```text
//!  target          desired        actual (EniIp)   action
//!  10.0.0.5:8080   ready, w=10    -                register   (w=10)
//!  10.0.0.6:8080   ready, w=10    w=10             unchanged
//!  10.0.0.7:8080   ready, w=20    w=10             reweight   10 → 20
//!  10.0.0.8:8080   terminating    w=10             drain      10 → 0
//!  10.0.0.9:8080   terminating    w=0              unchanged  (draining)
//!  10.0.1.1:8080   -              w=10             deregister (upsert-only: kept)
//!  172.16.0.5:80   -              CVM ins-1234     unmanaged  (never touched)
//! ```
//!
//! Ownership is decided here and nowhere else: only targets bound by IP on a binding named in the rules are
//! managed. A rule whose desired set is empty while targets would lose traffic is blocked, not emptied.

use std::collections::BTreeMap;

use crate::clb::{BoundTarget, TargetKind};
use crate::desired::{DesiredTargets, PodState};
use crate::model::{Binding, Protocol, Target, Weight};
use crate::rules::{Policy, Rule};

/// What a row of the plan does to one target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Register,
    Reweight,
    Drain,
    Deregister,
    Unchanged,
    Unmanaged,
}

impl Action {
    /// Lowercase name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Reweight => "reweight",
            Action::Drain => "drain",
            Action::Deregister => "deregister",
            Action::Unchanged => "unchanged",
            Action::Unmanaged => "unmanaged",
        }
    }

    /// Whether the row needs an API call.
    pub fn is_change(self) -> bool {
        matches!(self, Action::Register | Action::Reweight | Action::Drain | Action::Deregister)
    }
}

/// One target of one rule and what happens to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub action: Action,
    pub target: Target,
    /// The weight after the change (register, reweight, drain) or the current one otherwise.
    pub weight: Option<Weight>,
    /// The weight bound now, when the target is bound.
    pub current_weight: Option<Weight>,
    /// The pod behind the target, when there is one.
    pub pod: Option<String>,
    /// Why the row is what it is, when that is not obvious (e.g. `CVM ins-12345678`, `kept: upsert-only`).
    pub note: Option<String>,
}

/// Whether a rule's rows are applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The rows are applied.
    Ready,
    /// A safety guard stopped the rule; nothing is applied. The rows show what would have happened.
    Blocked { reason: String },
    /// The rule could not be planned (Kubernetes or CLB error); nothing is applied and nothing is removed.
    Skipped { reason: String },
}

/// What a rule is about, for reports: the load balancer, listener, rule and pods, with resolved ids if known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Field path of the rule in the rules file.
    pub path: String,
    pub line: usize,
    pub load_balancer_id: String,
    pub protocol: Protocol,
    pub port: u16,
    pub listener_id: Option<String>,
    pub location_id: Option<String>,
    pub domain: Option<String>,
    pub url: Option<String>,
    pub namespace: String,
    /// `deployment shop/api` or `pods in cache with app=redis`.
    pub pods: String,
}

impl Subject {
    /// The subject of a rule before its ids are resolved.
    pub fn of(rule: &Rule) -> Subject {
        Subject {
            path: rule.path.clone(),
            line: rule.line,
            load_balancer_id: rule.load_balancer_id.clone(),
            protocol: rule.listener.protocol,
            port: rule.listener.port,
            listener_id: rule.listener.listener_id.clone(),
            location_id: rule.l7.as_ref().and_then(|l| l.location_id.clone()),
            domain: rule.l7.as_ref().map(|l| l.domain.clone()),
            url: rule.l7.as_ref().map(|l| l.url.clone()),
            namespace: rule.backend.pods.namespace.clone(),
            pods: rule.backend.pods.to_string(),
        }
    }

    /// `lb-1a2b3c4d HTTP:80 example.com/api`, for messages.
    pub fn describe(&self) -> String {
        let place =
            crate::clb::describe_place(self.protocol, self.port, self.domain.as_deref().zip(self.url.as_deref()));
        format!("{} {place}", self.load_balancer_id)
    }
}

/// The plan of one rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePlan {
    pub subject: Subject,
    /// The resolved binding; `None` when resolution failed (the rule is then skipped).
    pub binding: Option<Binding>,
    pub status: Status,
    /// Sorted by target.
    pub rows: Vec<Row>,
    /// Pods that matched but could not become targets, and other things worth a look.
    pub warnings: Vec<String>,
}

impl RulePlan {
    /// A rule that could not be planned; it makes no changes.
    pub fn skipped(subject: Subject, binding: Option<Binding>, reason: String) -> RulePlan {
        RulePlan { subject, binding, status: Status::Skipped { reason }, rows: Vec::new(), warnings: Vec::new() }
    }

    /// The rows that would change something, whatever the status.
    pub fn changes(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.action.is_change())
    }
}

/// Options that apply to every rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--allow-empty`: let rules with no ready pods remove all their targets.
    pub allow_empty: bool,
}

/// What one rule's planner needs from the rule itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleOptions {
    pub policy: Policy,
    pub allow_empty: bool,
}

/// The whole plan, one entry per rule in rules-file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub rules: Vec<RulePlan>,
}

/// Counts for the summary line and the JSON `summary` object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub register: usize,
    pub deregister: usize,
    pub drain: usize,
    pub reweight: usize,
    pub unchanged: usize,
    pub unmanaged: usize,
    /// Rules stopped by the empty-rule guard.
    pub blocked: usize,
    /// Rules that could not be planned (Kubernetes or CLB errors).
    pub skipped: usize,
}

impl Plan {
    /// Counts of the rows of rules that will be applied, and of blocked and skipped rules.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for rule in &self.rules {
            match rule.status {
                Status::Blocked { .. } => {
                    s.blocked += 1;
                    continue;
                }
                Status::Skipped { .. } => {
                    s.skipped += 1;
                    continue;
                }
                Status::Ready => {}
            }
            for row in &rule.rows {
                match row.action {
                    Action::Register => s.register += 1,
                    Action::Deregister => s.deregister += 1,
                    Action::Drain => s.drain += 1,
                    Action::Reweight => s.reweight += 1,
                    Action::Unchanged => s.unchanged += 1,
                    Action::Unmanaged => s.unmanaged += 1,
                }
            }
        }
        s
    }

    /// True when applying would change nothing and nothing is blocked or skipped.
    pub fn in_sync(&self) -> bool {
        self.rules.iter().all(|r| r.status == Status::Ready && r.changes().next().is_none())
    }

    /// True when at least one rule will make an API call.
    pub fn has_changes(&self) -> bool {
        self.rules.iter().any(|r| r.status == Status::Ready && r.changes().next().is_some())
    }
}

/// Plans one rule: the rows for every desired and bound target, and whether the guard blocks them.
///
/// Pure and deterministic: rows come out sorted by target.
pub fn plan_rule(
    desired: &DesiredTargets,
    actual: &[BoundTarget],
    rule: RuleOptions,
    opts: &PlanOptions,
) -> (Status, Vec<Row>) {
    let wanted: BTreeMap<Target, _> = desired.targets.iter().map(|d| (d.target, d)).collect();
    let bound: BTreeMap<Target, &BoundTarget> = actual.iter().map(|b| (b.target, b)).collect();
    let mut rows = Vec::with_capacity(wanted.len().max(bound.len()));

    for (target, b) in &bound {
        let want = wanted.get(target);
        let pod = want.map(|d| d.pod.clone());
        let row = |action, weight, note: Option<String>| Row {
            action,
            target: *target,
            weight,
            current_weight: Some(b.weight),
            pod: pod.clone(),
            note,
        };
        rows.push(match (&b.kind, want) {
            (TargetKind::Instance { kind, instance_id }, _) => {
                row(Action::Unmanaged, Some(b.weight), Some(format!("{kind} {instance_id}, not bound by clbsync")))
            }
            (TargetKind::Ip, Some(d)) if d.state == PodState::Ready => {
                if b.weight == d.weight {
                    row(Action::Unchanged, Some(b.weight), None)
                } else {
                    row(Action::Reweight, Some(d.weight), None)
                }
            }
            (TargetKind::Ip, Some(_)) => {
                if b.weight > 0 {
                    row(Action::Drain, Some(0), Some("pod is terminating".into()))
                } else {
                    row(Action::Unchanged, Some(0), Some("draining: pod is terminating".into()))
                }
            }
            (TargetKind::Ip, None) => match rule.policy {
                Policy::Sync => row(Action::Deregister, None, Some("no ready pod has this IP".into())),
                Policy::UpsertOnly => row(Action::Unchanged, Some(b.weight), Some("kept: upsert-only".into())),
            },
        });
    }
    for (target, d) in &wanted {
        if bound.contains_key(target) || d.state != PodState::Ready {
            continue;
        }
        rows.push(Row {
            action: Action::Register,
            target: *target,
            weight: Some(d.weight),
            current_weight: None,
            pod: Some(d.pod.clone()),
            note: None,
        });
    }
    rows.sort_by_key(|r| r.target);

    let ready = desired.targets.iter().filter(|d| d.state == PodState::Ready).count();
    let removes_traffic = rows
        .iter()
        .any(|r| matches!(r.action, Action::Deregister | Action::Drain) && r.current_weight.is_some_and(|w| w > 0));
    let status = if ready == 0 && removes_traffic && !(rule.allow_empty || opts.allow_empty) {
        let n = rows.iter().filter(|r| matches!(r.action, Action::Deregister | Action::Drain)).count();
        Status::Blocked {
            reason: format!(
                "no ready pods: this would take all {n} serving target(s) out of the load balancer; if that is \
                 intended, set `allow_empty: true` on the backend or pass --allow-empty"
            ),
        }
    } else {
        Status::Ready
    };
    (status, rows)
}

#[cfg(test)]
mod tests;
