//! One binding's rows: what to do with each desired and bound target, and whether the empty-rule guard holds
//! the rule.

use std::collections::BTreeMap;

use super::{Action, DesiredTargets, PlanOptions, Row, Status};
use crate::model::{BoundTarget, PodState, Target, TargetKind};
use crate::rules::{Policy, Rule};

/// What one rule's planner needs from the rule itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleOptions {
    pub policy: Policy,
    pub allow_empty: bool,
}

impl RuleOptions {
    /// The options the rules file sets on `rule`'s backend.
    pub fn of(rule: &Rule) -> RuleOptions {
        RuleOptions { policy: rule.backend.policy, allow_empty: rule.backend.allow_empty }
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
