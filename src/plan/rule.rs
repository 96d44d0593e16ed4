//! One binding's rows: what to do with each desired and bound target, and whether the empty-rule guard holds
//! the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Action, DesiredTargets, PlanOptions, Row, Status, UnlessFailed, Unmanaged};
use crate::model::{BoundTarget, DesiredTarget, Health, PodState, TAG_PREFIX, Target, TargetKind};
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

/// Whose a bound target is.
enum Ownership {
    Ours,
    /// Untagged, of one of our pods, and `--adopt-untagged`: tag it, then it is ours.
    Adopt,
    Not(Unmanaged),
}

/// One rule's rows, whether the empty-rule guard holds it, and whether a wait could end once health is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRows {
    pub status: Status,
    /// Sorted by target.
    pub rows: Vec<Row>,
    /// A drain or removal waits because the targets' health was not read.
    pub needs_health: bool,
}

/// Plans one rule: the rows for every desired and bound target, then two guards.
///
/// - **Make before break**: a drain or removal of a target whose pod still serves never leaves the rule without a
///   target that takes traffic (healthy, weight > 0); such a row becomes [`Action::Wait`] until another target
///   does. Targets of pods that are gone are removed at once: they serve nothing.
/// - **Empty rule**: with no ready pod at all, a rule that would lose traffic is blocked unless `allow_empty`.
///
/// Pure and deterministic: rows come out sorted by target.
pub fn plan_rule(desired: &DesiredTargets, actual: &[BoundTarget], rule: RuleOptions, opts: &PlanOptions) -> RuleRows {
    let wanted: BTreeMap<Target, _> = desired.targets.iter().map(|d| (d.target, d)).collect();
    let bound: BTreeMap<Target, &BoundTarget> = actual.iter().map(|b| (b.target, b)).collect();
    let ready_ips: BTreeSet<IpAddr> =
        desired.targets.iter().filter(|d| d.state == PodState::Ready).map(|d| d.target.ip).collect();
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
            unless_failed: UnlessFailed::Nothing,
            unmanaged: None,
            health: b.health,
        };
        let ownership = match (&b.kind, &opts.owner) {
            (TargetKind::Instance { kind, instance_id }, _) => {
                Ownership::Not(Unmanaged::Instance { kind: kind.clone(), instance_id: instance_id.clone() })
            }
            (TargetKind::Ip, None) => Ownership::Ours,
            (TargetKind::Ip, Some(owner)) if b.tag == owner.tag() => Ownership::Ours,
            (TargetKind::Ip, Some(_)) => match b.tag.strip_prefix(TAG_PREFIX) {
                Some(other) => Ownership::Not(Unmanaged::Owner(other.to_string())),
                None if b.tag.is_empty() && opts.adopt_untagged && want.is_some() => Ownership::Adopt,
                None if b.tag.is_empty() => Ownership::Not(Unmanaged::Untagged),
                None => Ownership::Not(Unmanaged::Tagged(b.tag.clone())),
            },
        };
        rows.push(match (ownership, want) {
            (Ownership::Not(why), want) => {
                let bound = if want.is_some() { "bound, " } else { "" };
                let note = match &why {
                    Unmanaged::Instance { kind, instance_id } => format!("{kind} {instance_id}, not bound by clbsync"),
                    Unmanaged::Owner(name) => format!("{bound}owner:{name}: another clbsync's target"),
                    Unmanaged::Untagged => format!("{bound}untagged: not ours (adopt with --adopt-untagged)"),
                    Unmanaged::Tagged(tag) => format!("{bound}tagged `{tag}` by another tool"),
                };
                Row { unmanaged: Some(why), ..row(Action::Unmanaged, Some(b.weight), Some(note)) }
            }
            (Ownership::Adopt, want) => {
                let weight = match want {
                    Some(d) if d.state == PodState::Ready => d.weight,
                    _ => b.weight,
                };
                row(Action::Adopt, Some(weight), Some("untagged target of our pod: tagged as ours".into()))
            }
            (Ownership::Ours, Some(d)) if d.state == PodState::Ready => {
                if b.weight == d.weight {
                    row(Action::Unchanged, Some(b.weight), None)
                } else {
                    row(Action::Reweight, Some(d.weight), None)
                }
            }
            (Ownership::Ours, Some(_)) => {
                if b.weight > 0 {
                    let note = Some("pod is terminating".into());
                    Row { unless_failed: UnlessFailed::AnyOfRule, ..row(Action::Drain, Some(0), note) }
                } else {
                    row(Action::Unchanged, Some(0), Some("draining: pod is terminating".into()))
                }
            }
            (Ownership::Ours, None) => match rule.policy {
                // The pod of this IP is still ready on another port: it moves, and keeps its old port until the
                // new one is bound.
                Policy::Sync if ready_ips.contains(&target.ip) => {
                    let note = Some("the pod's port changed".into());
                    Row { unless_failed: UnlessFailed::SamePod, ..row(Action::Deregister, None, note) }
                }
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
            unless_failed: UnlessFailed::Nothing,
            unmanaged: None,
            health: Health::Unknown,
        });
    }
    rows.sort_by_key(|r| r.target);

    let ready = desired.targets.iter().filter(|d| d.state == PodState::Ready).count();
    let removes_traffic = rows
        .iter()
        .any(|r| matches!(r.action, Action::Deregister | Action::Drain) && r.current_weight.is_some_and(|w| w > 0));
    // Owner or not: another owner's (or a hand-bound) target that still serves does not make an empty desired set
    // intended; a selector typo looks the same as a cluster handing the rule over, so handing over needs
    // `allow_empty`.
    if ready == 0 && removes_traffic && !(rule.allow_empty || opts.allow_empty) {
        let n = rows.iter().filter(|r| matches!(r.action, Action::Deregister | Action::Drain)).count();
        let mut reason = format!(
            "no ready pods: this would take all {n} serving target(s) out of the load balancer; if that is \
             intended, set `allow_empty: true` on the backend or pass --allow-empty"
        );
        if let Some(owner) = &opts.owner {
            reason.push_str(&format!(
                "; with --owner {owner} other owners' targets do not count: handing the rule to another cluster needs \
                 allow_empty too"
            ));
        }
        return RuleRows { status: Status::Blocked { reason }, rows, needs_health: false };
    }
    let needs_health = keep_serving_capacity(&mut rows, &bound, &wanted);
    RuleRows { status: Status::Ready, rows, needs_health }
}

/// Turns drains and removals of targets whose pod still serves into [`Action::Wait`] where they would leave the
/// rule without a target that takes traffic. Returns whether a wait could end once health is read.
fn keep_serving_capacity(
    rows: &mut [Row],
    bound: &BTreeMap<Target, &BoundTarget>,
    wanted: &BTreeMap<Target, &DesiredTarget>,
) -> bool {
    let removed = |r: &Row| matches!(r.action, Action::Drain | Action::Deregister);
    // A removal matters only when its target takes traffic now (or may: health not read) and its pod still
    // serves; a target of a pod that is gone serves nothing.
    let serving = |r: &Row| {
        let pod_serves = wanted.contains_key(&r.target) || r.unless_failed == UnlessFailed::SamePod;
        removed(r) && pod_serves && bound.get(&r.target).is_some_and(|b| b.weight > 0 && b.health != Health::Unhealthy)
    };
    // Targets that keep taking traffic through this run: bound, healthy, weighted, and not being removed.
    let keepers = rows.iter().filter(|r| {
        !removed(r)
            && bound.get(&r.target).is_some_and(|b| {
                let weight = if r.action == Action::Reweight { r.weight.unwrap_or(0) } else { b.weight };
                b.health == Health::Healthy && weight > 0
            })
    });
    if keepers.count() > 0 {
        return false;
    }
    // None keep serving: hold back one serving removal, a healthy one if any (then the heaviest, then the last),
    // so one target still takes traffic.
    let rank = |r: &Row| {
        let b = bound[&r.target];
        (b.health == Health::Healthy, b.weight, r.target)
    };
    let Some(held) = rows.iter().enumerate().filter(|(_, r)| serving(r)).max_by_key(|(_, r)| rank(r)).map(|(i, _)| i)
    else {
        return false;
    };
    let row = &mut rows[held];
    let b = bound[&row.target];
    let unknown = b.health == Health::Unknown;
    let what = if row.action == Action::Drain { "drain" } else { "removal" };
    row.note = Some(if unknown {
        format!("{what} waits: target health not read yet; no other target of this rule takes traffic")
    } else {
        format!(
            "{what} waits until another target of this rule is healthy (new targets pass CLB's health checks first)"
        )
    });
    row.action = Action::Wait;
    row.weight = Some(b.weight);
    unknown || rows.iter().any(|r| bound.get(&r.target).is_some_and(|b| b.health == Health::Unknown))
}
