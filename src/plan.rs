//! Stage 4, the planner: the one place where clbsync decides. A pure function of the rules, the pods each rule
//! selects and the targets bound on each binding; it returns what to change, what to hold and why.
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
//! managed. A rule whose pods or targets could not be read is skipped, never planned against an empty set; a
//! rule whose desired set is empty while targets would lose traffic is blocked, not emptied; two rules that
//! resolve to one binding are both skipped.

mod budget;
mod capacity;
mod fingerprint;
mod gate;
mod row;
mod rule;
mod source;
mod split;
mod targets;
mod warmup;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

pub use budget::{Budget, PERCENT_FROM, removals};
pub use fingerprint::{Fingerprint, fingerprint};
pub use gate::{GateChange, GateOn, RowResult, gate_needs_health, plan_gate};
pub use row::{Action, Row, UnlessFailed, Unmanaged};
pub use rule::{Asked, Elsewhere, RuleOptions, RuleRows, plan_rule};
pub use source::Source;
pub use split::{Part, SplitRow, TOLERANCE_BP, Weights, achieved_bp, percent, points, requested_bp, weights};
pub use targets::{DesiredTargets, serves, targets_for};
use targets::{Refused, backend_targets};

use crate::model::{Actual, Binding, Owner, Place, Pod, RuleId, Selected};
use crate::rules::{PodQuery, Rule};

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

/// The plan of one rule, with what reports need to name it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulePlan {
    pub id: RuleId,
    /// Field path of the rule in the rules file, e.g. `[0].listeners[1].rules[0]`.
    pub path: String,
    /// 1-based line of the rule in the rules file.
    pub line: usize,
    pub place: Place,
    /// The listener id the rules file names, if any (the resolved one is in `binding`).
    pub listener_id: Option<String>,
    /// The location id the rules file names, if any (the resolved one is in `binding`).
    pub location_id: Option<String>,
    pub namespace: String,
    /// The rule's pods in words: `deployment shop/api` or `pods in cache with app=redis`.
    pub pods: String,
    /// The resolved binding; `None` when resolution failed (the rule is then skipped).
    pub binding: Option<Binding>,
    pub status: Status,
    /// Sorted by target.
    pub rows: Vec<Row>,
    /// Pods that matched but could not become targets, and other things worth a look.
    pub warnings: Vec<String>,
    /// Serving pods this rule cannot make targets of (see [`DesiredTargets::untargetable`]); their readiness gate
    /// does not wait for this rule.
    pub untargetable: BTreeSet<String>,
    /// Gated pods whose condition stays True only because no rule that selects them can bind them any more (a
    /// mistake in the rules file must not take a serving pod out of its Service); set by [`plan_gate`].
    pub gate_kept: Vec<String>,
    /// Some row waits because the targets' health was not read: read `DescribeTargetHealth` and plan again.
    pub needs_health: bool,
    /// Some removal waits because the cluster was not asked whether a pod still serves these IPs (bound targets
    /// the rule no longer selects): ask ([`PodsByIp`], in the rule's namespace) and plan again.
    pub lookup: Vec<std::net::IpAddr>,
    /// The owner whose targets this rule manages (`--owner`); `None` manages every target bound by IP.
    pub owner: Option<Owner>,
    /// For a `backends:` rule, each backend's requested and achieved share, in the file's order; empty otherwise.
    pub split: Vec<SplitRow>,
    /// A pod of this rule with the readiness gate waits for its registration or its health checks: run the rule
    /// again soon, nothing else will tell (see [`plan_gate`]).
    pub gate_waits: bool,
}

impl RulePlan {
    /// A rule that makes no changes because it could not be planned.
    pub fn skipped(rule: &Rule, binding: Option<Binding>, reason: String) -> RulePlan {
        RulePlan { binding, status: Status::Skipped { reason }, ..RulePlan::named(rule) }
    }

    /// A rule's names, before anything is planned for it.
    pub(crate) fn named(rule: &Rule) -> RulePlan {
        RulePlan {
            id: rule.id,
            path: rule.path.clone(),
            line: rule.line,
            place: rule.place(),
            listener_id: rule.listener.listener_id.clone(),
            location_id: rule.l7.as_ref().and_then(|l| l.location_id.clone()),
            namespace: rule.backend.pods.namespace.clone(),
            pods: rule.backend.pods.to_string(),
            binding: None,
            status: Status::Ready,
            rows: Vec::new(),
            warnings: Vec::new(),
            untargetable: BTreeSet::new(),
            gate_kept: Vec::new(),
            needs_health: false,
            lookup: Vec::new(),
            owner: None,
            split: Vec::new(),
            gate_waits: false,
        }
    }

    /// Something of this rule waits on CLB (a row held until new targets are healthy, a split's new targets held
    /// below their weight until they pass health checks, or a gated pod waiting for its registration or health
    /// checks): only running the rule again will carry it on.
    pub fn waits(&self) -> bool {
        let warming = self.split.iter().any(|s| s.waiting > 0);
        self.gate_waits || warming || self.rows.iter().any(|r| r.action == Action::Wait)
    }

    /// The rows that would change something, whatever the status.
    pub fn changes(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.action.is_change())
    }

    /// The held drains and removals that have waited longer than `waits.after` (see [`Row::waiting_since`]).
    pub fn overdue(&self, waits: Waits) -> impl Iterator<Item = &Row> {
        let limit = i64::try_from(waits.after.as_secs()).unwrap_or(i64::MAX);
        let ready = self.status == Status::Ready;
        self.rows.iter().filter(move |r| {
            ready && r.action == Action::Wait && r.waiting_since.is_some_and(|s| waits.now.saturating_sub(s) > limit)
        })
    }
}

/// When a held drain or removal counts as waiting too long (`--warn-waiting-after`): a Warning Event and
/// `clbsync_waiting_targets`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waits {
    /// Unix seconds at the pass.
    pub now: i64,
    pub after: std::time::Duration,
}

/// `--warn-waiting-after` unless told otherwise: far past a rollout's health-check warm-ups (15 s each with
/// CLB's defaults), well before anyone would notice a rollout that never ends.
pub const WARN_WAITING_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// Watch mode: carries over from a rule's previous plan since when each of its held targets has waited, for the
/// waits nothing in the cluster records (a target the rules no longer select), and starts the clock at `now` for
/// new ones. The memory is the previous plan: a restart starts these clocks again, so their warning comes up to
/// one bound later; waits the cluster records (a terminating pod's deletion time) are not affected.
pub fn carry_waits(previous: Option<&RulePlan>, plan: &mut RulePlan, now: i64) {
    for row in plan.rows.iter_mut().filter(|r| r.action == Action::Wait && r.waiting_since.is_none()) {
        let before = previous.and_then(|p| p.rows.iter().find(|r| r.target == row.target && r.action == Action::Wait));
        row.waiting_since = Some(before.and_then(|r| r.waiting_since).unwrap_or(now));
    }
}

/// Options that apply to every rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlanOptions {
    /// `--allow-empty`: let rules with no ready pods remove all their targets.
    pub allow_empty: bool,
    /// `--owner`: manage only targets tagged `clbsync:NAME`, and tag what is registered so.
    pub owner: Option<Owner>,
    /// `--adopt-untagged` (with an owner): tag the untagged targets of our pods as ours, then manage them.
    pub adopt_untagged: bool,
    /// `--gate-on`: what the readiness gate waits for before it turns True.
    pub gate_on: GateOn,
    /// `--max-deregister`: a rule whose plan removes more of its targets is blocked; `None` (`--force`, or no
    /// budget given): no limit.
    pub max_deregister: Option<Budget>,
}

/// The pods of each distinct query, or why they could not be listed.
pub type PodLists = BTreeMap<PodQuery, Result<Selected, String>>;

/// What the cluster knows of the IPs that rules asked about ([`RulePlan::lookup`]), per namespace: the pods there
/// holding any of them, or why they could not be read. A namespace that is not in it was not asked.
pub type PodsByIp = BTreeMap<String, Result<Vec<Pod>, String>>;

/// The whole plan, one entry per rule, in the order of their ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub rules: Vec<RulePlan>,
    /// Readiness-gate conditions to set, sorted by namespace and pod; filled by [`plan_gate`] once the run's
    /// CLB changes are known.
    pub gate: Vec<GateChange>,
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
    /// Drains and removals held until another target takes traffic, and split weights held until health checks
    /// pass.
    pub waiting: usize,
    /// Untagged targets of our pods to tag as ours (`--adopt-untagged`).
    pub adopt: usize,
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
                    Action::Adopt => s.adopt += 1,
                    Action::Register => s.register += 1,
                    Action::Deregister => s.deregister += 1,
                    Action::Drain => s.drain += 1,
                    Action::Reweight => s.reweight += 1,
                    Action::Wait => s.waiting += 1,
                    Action::Unchanged => s.unchanged += 1,
                    Action::Unmanaged => s.unmanaged += 1,
                }
            }
        }
        s
    }

    /// True when applying would change nothing (targets or gate conditions), nothing waits, and nothing is
    /// blocked or skipped.
    pub fn in_sync(&self) -> bool {
        self.gate.is_empty()
            && self.rules.iter().all(|r| r.status == Status::Ready && r.rows.iter().all(|row| !row.is_pending()))
    }

    /// The fingerprint of this plan ([`fingerprint`]).
    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(&self.rules)
    }

    /// True when at least one rule will make an API call.
    pub fn has_changes(&self) -> bool {
        self.rules.iter().any(|r| r.status == Status::Ready && r.changes().next().is_some())
    }

    /// True when a rule has changes to make now or waiting ones, or a gate condition is to be set
    /// (`--detailed-exitcode` exits 2).
    pub fn has_pending(&self) -> bool {
        !self.gate.is_empty()
            || self.rules.iter().any(|r| r.status == Status::Ready && r.rows.iter().any(Row::is_pending))
    }

    /// True when some rule waits on target health that was not read.
    pub fn needs_health(&self) -> bool {
        self.rules.iter().any(|r| r.needs_health)
    }

    /// The IPs to ask the cluster about before planning again, per namespace ([`RulePlan::lookup`]).
    pub fn lookups(&self) -> BTreeMap<&str, Vec<std::net::IpAddr>> {
        let mut out: BTreeMap<&str, Vec<std::net::IpAddr>> = BTreeMap::new();
        for rule in self.rules.iter().filter(|r| !r.lookup.is_empty()) {
            let ips = out.entry(rule.namespace.as_str()).or_default();
            ips.extend(&rule.lookup);
            ips.sort();
            ips.dedup();
        }
        out
    }
}

/// Plans `rules`: `pods` holds what each distinct query selected (its pods, and the replicas its workload asks
/// for, which the source sanity check compares with them), `actual` what CLB holds for each rule or why it could
/// not be read, and `elsewhere` what the cluster said of the IPs earlier plans asked about. One [`RulePlan`] per
/// rule, in the order of `rules`.
///
/// Pure and deterministic.
pub fn plan(rules: &[&Rule], pods: &PodLists, actual: &Actual, elsewhere: &PodsByIp, opts: &PlanOptions) -> Plan {
    let clashes = clashing_bindings(rules, actual);
    let mut out = Vec::with_capacity(rules.len());
    for rule in rules {
        let bound = match actual.get(&rule.id) {
            Some(Ok(bound)) => bound,
            Some(Err(reason)) => {
                out.push(RulePlan::skipped(rule, None, reason.clone()));
                continue;
            }
            None => {
                let reason = "internal error: nothing was read from CLB for this rule (please report it); its targets \
                              are left as they are";
                out.push(RulePlan::skipped(rule, None, reason.into()));
                continue;
            }
        };
        let binding = Some(bound.binding.clone());
        if let Some(other) = clashes.get(&rule.id) {
            let reason = format!(
                "this rule and the rule at line {other} bind the same {}; each listener or rule may be named once",
                binding.as_ref().expect("set above")
            );
            out.push(RulePlan::skipped(rule, binding, reason));
            continue;
        }
        let found = match &rule.split {
            None => backend_targets(rule, &rule.backend, pods).map(|(t, selected)| {
                let facts =
                    selected.replicas.map(|r| (rule.backend.pods.to_string(), source::counted(&selected.pods), r));
                (t, Cow::Borrowed(&selected.pods[..]), Vec::new(), facts)
            }),
            Some(split) => {
                split::desired(rule, split, pods, &bound.targets).map(|(t, p, s, facts)| (t, Cow::Owned(p), s, facts))
            }
        };
        let (wanted, pods, split, facts) = match found {
            Ok(found) => found,
            Err(Refused::Skip(reason)) => {
                out.push(RulePlan::skipped(rule, binding, reason));
                continue;
            }
            Err(Refused::Block { reason, found }) => {
                out.push(RulePlan {
                    binding,
                    status: Status::Blocked { reason },
                    warnings: found.problems,
                    untargetable: found.untargetable,
                    ..RulePlan::named(rule)
                });
                continue;
            }
        };
        let pods: &[Pod] = &pods;
        let asked = match elsewhere.get(&rule.backend.pods.namespace) {
            None => Asked::NotRead,
            Some(Ok(pods)) => Asked::Pods(pods),
            Some(Err(why)) => Asked::Unreadable(why),
        };
        let elsewhere = Elsewhere { own: pods, asked };
        let source = facts.as_ref().map(Source::of);
        let planned =
            plan_rule(&wanted, &bound.targets, elsewhere, RuleOptions { source, ..RuleOptions::of(rule) }, opts);
        let needs_health = planned.needs_health || gate_needs_health(pods, &planned.rows, opts.gate_on);
        out.push(RulePlan {
            binding,
            status: planned.status,
            rows: planned.rows,
            warnings: wanted.problems,
            untargetable: wanted.untargetable,
            needs_health,
            lookup: planned.lookup,
            owner: opts.owner.clone(),
            split,
            ..RulePlan::named(rule)
        });
    }
    Plan { rules: out, gate: Vec::new() }
}

/// Rules that resolve to the same binding (say one by id, one by port) would fight; maps each to the other's line.
fn clashing_bindings(rules: &[&Rule], actual: &Actual) -> BTreeMap<RuleId, usize> {
    let mut first: BTreeMap<&Binding, &Rule> = BTreeMap::new();
    let mut clashes = BTreeMap::new();
    for rule in rules {
        let Some(Ok(bound)) = actual.get(&rule.id) else { continue };
        match first.get(&bound.binding) {
            Some(other) => {
                clashes.insert(rule.id, other.line);
                clashes.insert(other.id, rule.line);
            }
            None => {
                first.insert(&bound.binding, rule);
            }
        }
    }
    clashes
}

#[cfg(test)]
mod tests;
