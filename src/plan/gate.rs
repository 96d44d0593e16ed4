//! The readiness gate: which pods' `clbsync.dev/registered` condition to set, and to what.
//!
//! A pod opts in with `readinessGates: [{conditionType: clbsync.dev/registered}]`; Kubernetes keeps it out of
//! `Ready` (and its Deployment's rollout waits) until the condition is True. clbsync registers such a pod on
//! `ContainersReady` ([`super::serves`]) and sets the condition once the run's CLB changes are known:
//!
//! ```text
//!  on every rule that selects the pod and can bind it   condition
//!  a registration failed                                False  RegistrationFailed
//!  a rule is blocked or skipped                         False  RuleBlocked        (kept True on a skipped rule)
//!  the target is not bound at its weight yet            False  RegistrationPending (weight 0, reweight not done)
//!  bound, health checks not passed (or unread)          False  WaitingForHealthCheck
//!  bound and healthy (`--gate-on bound`: bound)         True   Registered         (stays True while bound)
//!  no rule that selects it can bind it                  False  RuleBlocked        (a True one stays True)
//! ```
//!
//! A rule that cannot make a target of the pod (no container port of the rule's name, no address of its family)
//! does not count: its mistake is a warning of that rule, not a reason to hold the pod or take it out of its
//! Service. It is never True for a pod whose target is not bound, at the weight the plan gives it, on every rule
//! that can bind it. A condition that would not change is not written; pods without the gate, and terminating
//! ones, are left alone.

use std::collections::{BTreeMap, BTreeSet};

use super::{Action, Plan, PodLists, Row, RulePlan, Status, serves};
use crate::model::{GateCondition, Health, Pod, RuleId};
use crate::rules::Rules;

/// What the readiness gate waits for before it turns True (`--gate-on`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GateOn {
    /// Bound on every rule and healthy in CLB's health checks: the target takes requests.
    #[default]
    Healthy,
    /// Bound on every rule. Faster, weaker: CLB sends a new target nothing until its health checks pass.
    Bound,
}

/// What became of one row's change in this run, as far as the gate is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowResult {
    /// Not applied (`diff`, a blocked rule, or held back).
    NotRun,
    Done,
    /// Failed: the failure, as the report shows it.
    Failed(String),
}

/// One pod's gate condition to set.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GateChange {
    pub namespace: String,
    pub pod: String,
    pub condition: GateCondition,
    /// The status changes (or the condition is new): `lastTransitionTime` is set.
    pub transition: bool,
}

/// Where one gated pod stands on one rule that selects it.
enum OnRule {
    Bound {
        health: Health,
    },
    /// Not bound at its weight yet, and what is bound instead, if anything.
    Pending(Option<String>),
    Failed(String),
    Blocked(String),
    Skipped(String),
    /// The rule is blocked and has no row for the pod (a split rule refused as a whole): like a skipped rule, it
    /// says nothing about the pod's target, and a True condition stays.
    BlockedUnseen(String),
}

/// A `reason` of the gate condition.
const REGISTERED: &str = "Registered";
const PENDING: &str = "RegistrationPending";
const WAITING_FOR_HEALTH: &str = "WaitingForHealthCheck";
const BLOCKED: &str = "RuleBlocked";
const FAILED: &str = "RegistrationFailed";

/// Whether a rule's plan should read target health for the gate: a gated pod waits for its condition and its
/// bound target's health is unknown. Pods whose condition is True already are not looked at again.
pub fn gate_needs_health(pods: &[Pod], rows: &[Row], gate_on: GateOn) -> bool {
    gate_on == GateOn::Healthy
        && pods.iter().any(|pod| {
            let waiting = pod.gate.as_ref().is_some_and(|g| !g.condition.as_ref().is_some_and(|c| c.status));
            waiting
                && !pod.terminating
                && serves(pod)
                && rows.iter().any(|r| {
                    r.pod.as_deref() == Some(pod.name.as_str())
                        && r.action != Action::Register
                        && r.health == Health::Unknown
                })
        })
}

/// Plans the gate conditions of every gated pod of the rules of `plan` (made from `rules`) into `plan.gate`, and
/// marks the rules whose gated pods wait ([`RulePlan::gate_waits`]). `applied(rule, row)` says what became of a
/// row's change in this run.
///
/// Only the rules of this run are looked at: a namespace with a pod list that failed sets no pod True.
pub fn plan_gate(
    rules: &Rules,
    pods: &PodLists,
    plan: &mut Plan,
    applied: impl Fn(RuleId, &Row) -> RowResult,
    gate_on: GateOn,
) {
    let planned = || plan.rules.iter().enumerate().filter_map(|(i, p)| Some((i, rules.get(p.id)?)));
    let unlisted: BTreeSet<&str> = planned()
        .filter(|(_, r)| r.queries().any(|q| !matches!(pods.get(q), Some(Ok(_)))))
        .map(|(_, r)| r.backend.pods.namespace.as_str())
        .collect();
    // (namespace, pod) → the pod and the rules of the plan (their places in `plan.rules`) that select it.
    let mut gated: BTreeMap<(&str, &str), (&Pod, Vec<usize>)> = BTreeMap::new();
    for (i, rule) in planned() {
        let lists = rule.queries().filter_map(|q| pods.get(q)?.as_ref().ok());
        for pod in lists.flat_map(|l| &l.pods).filter(|p| p.gate.is_some() && !p.terminating) {
            let entry = gated.entry((rule.backend.pods.namespace.as_str(), pod.name.as_str())).or_insert((pod, vec![]));
            if !entry.1.contains(&i) {
                entry.1.push(i);
            }
        }
    }
    let mut changes = Vec::new();
    let mut waits = BTreeSet::new();
    let mut kept: Vec<(usize, &str)> = Vec::new();
    for ((namespace, name), (pod, selecting)) in gated {
        let current = pod.gate.as_ref().and_then(|g| g.condition.as_ref());
        // Only the rules that can bind the pod decide its condition: a rule that cannot make it a target (no
        // container port of that name, say) would otherwise hold it, or take it out of its Service, for a
        // mistake in the rules file.
        let (binding, unable): (Vec<usize>, Vec<usize>) =
            selecting.iter().partition(|&&i| !plan.rules[i].untargetable.contains(name));
        let wanted = if serves(pod) && binding.is_empty() {
            let is_true = current.is_some_and(|c| c.status);
            if is_true {
                kept.extend(unable.iter().map(|&i| (i, name)));
            }
            Some(unbindable(&plan.rules[unable[0]], name, is_true))
        } else if serves(pod) {
            let states: Vec<(&RulePlan, OnRule)> =
                binding.iter().map(|&i| (&plan.rules[i], on_rule(&plan.rules[i], name, &applied))).collect();
            wanted(&states, current, gate_on, unlisted.contains(namespace))
        } else if current.is_some_and(|c| c.status) {
            // Its containers stopped being ready: its targets go, so the gate goes False with them.
            Some(condition(false, PENDING, "waiting for the pod to be Running with ContainersReady and an IP"))
        } else {
            None
        };
        let Some(wanted) = wanted else { continue };
        if !wanted.status && [PENDING, WAITING_FOR_HEALTH].contains(&wanted.reason.as_str()) {
            waits.extend(selecting.iter().copied());
        }
        if current == Some(&wanted) {
            continue;
        }
        let transition = current.is_none_or(|c| c.status != wanted.status);
        changes.push(GateChange { namespace: namespace.into(), pod: name.into(), condition: wanted, transition });
    }
    for i in waits {
        plan.rules[i].gate_waits = true;
    }
    for (i, name) in kept {
        plan.rules[i].gate_kept.push(name.to_owned());
    }
    plan.gate = changes;
}

/// The condition of a serving gated pod that no rule selecting it can make a target of (`rule` is the first of
/// them). A True condition stays True, saying why: the pod was bound and serving before the rules file changed,
/// and turning it False would take it out of its Service for a typo. Otherwise it stays False.
fn unbindable(rule: &RulePlan, name: &str, is_true: bool) -> GateCondition {
    let prefix = format!("pod {name} ");
    let why = rule
        .warnings
        .iter()
        .find(|w| w.starts_with(&prefix))
        .cloned()
        .unwrap_or_else(|| format!("pod {name} is not a target"));
    let at = format!("{} (rules file line {})", rule.place, rule.line);
    if is_true {
        let message = format!(
            "kept True: no rule that selects it can make it a target, starting with {at}: {why}; fix the rules file"
        );
        condition(true, BLOCKED, &message)
    } else {
        condition(false, BLOCKED, &format!("no rule that selects it can make it a target, starting with {at}: {why}"))
    }
}

/// Where pod `name` stands on `rule` after this run.
fn on_rule(rule: &RulePlan, name: &str, applied: &impl Fn(RuleId, &Row) -> RowResult) -> OnRule {
    if let Status::Skipped { reason } = &rule.status {
        return OnRule::Skipped(reason.clone());
    }
    let Some(row) = rule.rows.iter().find(|r| r.pod.as_deref() == Some(name)) else {
        let prefix = format!("pod {name} ");
        return match (&rule.status, rule.warnings.iter().find(|w| w.starts_with(&prefix))) {
            (_, Some(warning)) => OnRule::Blocked(warning.clone()),
            (Status::Blocked { reason }, None) => OnRule::BlockedUnseen(reason.clone()),
            _ => OnRule::Blocked(format!("pod {name} is not a target of this rule")),
        };
    };
    // Bound means bound at the weight the plan gives it: a target at another weight (a reweight not done, say
    // from 0) takes other traffic than planned, or none.
    let at_weight = row.current_weight == row.weight;
    // A serving target whose weight changes (a split's re-weight) stays registered whatever becomes of the change.
    let serving = row.current_weight.is_some_and(|w| w > 0);
    match (row.action, &rule.status) {
        (Action::Reweight | Action::Adopt, _) if serving => OnRule::Bound { health: row.health },
        (Action::Register | Action::Reweight | Action::Adopt, Status::Blocked { reason }) if !at_weight => {
            OnRule::Blocked(reason.clone())
        }
        (Action::Register | Action::Reweight | Action::Adopt, _) => match applied(rule.id, row) {
            // Just bound: CLB has not probed it yet.
            RowResult::Done if row.action == Action::Register => OnRule::Bound { health: Health::Unhealthy },
            RowResult::Done => OnRule::Bound { health: row.health },
            RowResult::Failed(failure) => OnRule::Failed(failure),
            RowResult::NotRun if at_weight => OnRule::Bound { health: row.health },
            RowResult::NotRun => OnRule::Pending(row.current_weight.map(|w| format!("bound at weight {w}"))),
        },
        (Action::Unchanged | Action::Wait, _) => OnRule::Bound { health: row.health },
        // Not ours to weigh (untagged or another owner's under `--owner`): bound only while it takes a weight.
        (Action::Unmanaged, _) if row.current_weight.unwrap_or(0) > 0 => OnRule::Bound { health: row.health },
        (Action::Unmanaged, _) => OnRule::Pending(row.note.clone().map(|n| format!("at weight 0: {n}"))),
        (Action::Drain | Action::Deregister, _) => OnRule::Pending(None),
    }
}

/// The condition a serving gated pod should have, or `None` to leave it as it is.
fn wanted(
    states: &[(&RulePlan, OnRule)],
    current: Option<&GateCondition>,
    gate_on: GateOn,
    unlisted: bool,
) -> Option<GateCondition> {
    let is_true = current.is_some_and(|c| c.status);
    let at = |rule: &RulePlan| format!("{} (rules file line {})", rule.place, rule.line);
    let first = |pick: fn(&OnRule) -> Option<&String>| states.iter().find_map(|(r, s)| pick(s).map(|m| (*r, m)));
    if let Some((rule, failure)) = first(|s| if let OnRule::Failed(f) = s { Some(f) } else { None }) {
        let message = format!("registering its target on {} failed: {failure}; the next run retries", at(rule));
        return Some(condition(false, FAILED, &message));
    }
    if let Some((rule, reason)) = first(|s| if let OnRule::Blocked(r) = s { Some(r) } else { None }) {
        return Some(condition(false, BLOCKED, &format!("rule {} is blocked: {reason}", at(rule))));
    }
    if let Some((rule, reason)) = first(|s| if let OnRule::Skipped(r) = s { Some(r) } else { None }) {
        // A read error says nothing about the target: a True condition stays.
        return (!is_true).then(|| condition(false, BLOCKED, &format!("rule {} was skipped: {reason}", at(rule))));
    }
    if let Some((rule, reason)) = first(|s| if let OnRule::BlockedUnseen(r) = s { Some(r) } else { None }) {
        return (!is_true).then(|| condition(false, BLOCKED, &format!("rule {} is blocked: {reason}", at(rule))));
    }
    if unlisted {
        return None;
    }
    if let Some((rule, detail)) =
        states.iter().find_map(|(r, s)| if let OnRule::Pending(d) = s { Some((*r, d)) } else { None })
    {
        let detail = detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default();
        return Some(condition(false, PENDING, &format!("its target is not bound yet on {}{detail}", at(rule))));
    }
    // Bound on every rule that selects it.
    let n = states.len();
    if is_true {
        // Kept True while no rule could bind it (see [`unbindable`]): now they can, and it is bound on each.
        return Some(match current {
            Some(c) if c.reason != REGISTERED => condition(true, REGISTERED, &format!("bound on {n} rule(s)")),
            _ => current.cloned()?,
        });
    }
    if gate_on == GateOn::Bound {
        let message = format!("bound on {n} rule(s) (--gate-on bound: CLB's health checks are not waited for)");
        return Some(condition(true, REGISTERED, &message));
    }
    let health = |want: Health| states.iter().find(|(_, s)| matches!(s, OnRule::Bound { health } if *health == want));
    if let Some((rule, _)) = health(Health::Unhealthy) {
        let message = format!("bound on {n} rule(s); waiting for CLB's health checks to pass on {}", at(rule));
        return Some(condition(false, WAITING_FOR_HEALTH, &message));
    }
    if let Some((rule, _)) = health(Health::Unknown) {
        // Health could not be read: a condition set before stays as it is.
        let message = format!("bound on {n} rule(s); target health not read yet on {}", at(rule));
        return current.is_none().then(|| condition(false, WAITING_FOR_HEALTH, &message));
    }
    Some(condition(true, REGISTERED, &format!("bound and healthy on {n} rule(s)")))
}

fn condition(status: bool, reason: &str, message: &str) -> GateCondition {
    GateCondition { status, reason: reason.into(), message: message.into() }
}
