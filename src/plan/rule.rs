//! One binding's rows: what to do with each desired and bound target, and whether the empty-rule guard holds
//! the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::capacity::{Kept, Leaving, keep_serving_capacity};
use super::source::Source;
use super::{Action, DesiredTargets, PlanOptions, Row, Status, UnlessFailed, Unmanaged, serves};
use crate::model::{BoundTarget, DesiredTarget, Health, Pod, PodState, TAG_PREFIX, Target, TargetKind};
use crate::rules::{Policy, Rule};

/// What one rule's planner needs from the rule itself and from what the cluster said of its workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleOptions<'a> {
    pub policy: Policy,
    pub allow_empty: bool,
    /// Pods listed and replicas asked for, when the rule's workload has `spec.replicas` ([`Source::holds`]).
    pub source: Option<Source<'a>>,
}

impl RuleOptions<'_> {
    /// The options the rules file sets on `rule`'s backend (no [`Source`]).
    pub fn of(rule: &Rule) -> RuleOptions<'static> {
        RuleOptions { policy: rule.backend.policy, allow_empty: rule.backend.allow_empty, source: None }
    }
}

/// Whose a bound target is.
enum Ownership {
    Ours,
    /// Untagged, of one of our pods, and `--adopt-untagged`: tag it, then it is ours.
    Adopt,
    Not(Unmanaged),
}

/// One rule's rows, whether the empty-rule guard holds it, and what a second plan needs read first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleRows {
    pub status: Status,
    /// Sorted by target.
    pub rows: Vec<Row>,
    /// A drain or removal waits because the targets' health was not read.
    pub needs_health: bool,
    /// A removal waits because the cluster was not asked whether a pod still serves these IPs (targets the rules
    /// no longer select): ask (`Elsewhere`) and plan again.
    pub lookup: Vec<IpAddr>,
}

/// What the cluster says of the IPs of bound targets that are not the rule's targets: the rule's own pods (listed
/// anyway), then the other pods of its namespace holding them, read only when a removal depends on it
/// ([`RuleRows::lookup`]).
#[derive(Clone, Copy, Debug)]
pub struct Elsewhere<'a> {
    /// The pods the rule selects, in any state.
    pub own: &'a [Pod],
    pub asked: Asked<'a>,
}

/// What the cluster said of IPs that none of the rule's pods has.
#[derive(Clone, Copy, Debug)]
pub enum Asked<'a> {
    /// Not asked: such a target is held as if it still served, and [`RuleRows::lookup`] asks.
    NotRead,
    /// The pods of the rule's namespace that hold any of the IPs asked about.
    Pods(&'a [Pod]),
    /// Could not be read (the reason): such a target is taken to still serve; a read error never removes one.
    Unreadable(&'a str),
}

/// What [`Elsewhere`] says of one IP.
enum Found<'a> {
    /// A pod that serves has it (the pod's name).
    Serving(&'a str),
    Terminating(&'a Pod),
    /// No pod has it, or only one that does not serve.
    Gone,
    NotRead,
    Unreadable(&'a str),
}

impl<'a> Elsewhere<'a> {
    fn find(self, ip: IpAddr) -> Found<'a> {
        let holders = |pods: &'a [Pod]| {
            let mut holding = pods.iter().filter(move |p| p.ips.contains(&ip)).peekable();
            holding.peek()?;
            let serving = holding.clone().find(|p| !p.terminating && serves(p));
            Some(match (serving, holding.find(|p| p.terminating)) {
                (Some(p), _) => Found::Serving(&p.name),
                (None, Some(p)) => Found::Terminating(p),
                (None, None) => Found::Gone,
            })
        };
        holders(self.own).unwrap_or_else(|| match self.asked {
            Asked::NotRead => Found::NotRead,
            Asked::Unreadable(why) => Found::Unreadable(why),
            Asked::Pods(pods) => holders(pods).unwrap_or(Found::Gone),
        })
    }
}

/// Plans one rule: the rows for every desired and bound target, then two guards.
///
/// - **Make before break** ([`keep_serving_capacity`]): a drain or removal of a target whose pod still serves
///   waits ([`Action::Wait`]) where it would take traffic away before the rule's other targets take it.
///   Targets of pods that are gone are removed at once: they serve nothing. A bound target that no pod of the
///   rule has is not taken for gone: `elsewhere` says whether a pod still serves its IP.
/// - **Empty rule**: with no ready pod at all, a rule that would lose traffic is blocked unless `allow_empty`.
/// - **Deletion budget** (`--max-deregister`): a rule that would take more of its targets out is blocked, and so
///   is one whose targets would shrink past it while its workload asks for more replicas than were listed
///   ([`Source::holds`]).
///
/// Pure and deterministic: rows come out sorted by target.
pub fn plan_rule(
    desired: &DesiredTargets,
    actual: &[BoundTarget],
    elsewhere: Elsewhere<'_>,
    rule: RuleOptions<'_>,
    opts: &PlanOptions,
) -> RuleRows {
    let wanted: BTreeMap<Target, _> = desired.targets.iter().map(|d| (d.target, d)).collect();
    let bound: BTreeMap<Target, &BoundTarget> = actual.iter().map(|b| (b.target, b)).collect();
    let ready_ips: BTreeSet<IpAddr> =
        desired.targets.iter().filter(|d| d.state == PodState::Ready).map(|d| d.target.ip).collect();
    let mut rows = Vec::with_capacity(wanted.len().max(bound.len()));
    let mut leaving = BTreeMap::new();
    // Since when a terminating pod's target has been leaving: the pod's deletion time.
    let mut since: BTreeMap<Target, i64> = desired.targets.iter().filter_map(|d| Some((d.target, d.since?))).collect();
    let ctx = Bound { desired, elsewhere, rule, ready_ips: &ready_ips };
    for (target, b) in &bound {
        let want = wanted.get(target).copied();
        rows.push(ctx.row(*target, b, want, ownership(b, want.is_some(), opts), &mut leaving, &mut since));
    }
    let new = wanted.iter().filter(|(t, d)| !bound.contains_key(*t) && d.state == PodState::Ready);
    rows.extend(new.map(|(target, d)| Row {
        action: Action::Register,
        target: *target,
        weight: Some(d.weight),
        current_weight: None,
        pod: Some(d.pod.clone()),
        note: desired.warming.get(target).cloned(),
        unless_failed: UnlessFailed::Unconditional,
        unmanaged: None,
        health: Health::Unknown,
        waiting_since: None,
    }));
    rows.sort_by_key(|r| r.target);

    if let Some(reason) = empty_rule(desired, &rows, rule, opts) {
        return RuleRows { status: Status::Blocked { reason }, rows, needs_health: false, lookup: Vec::new() };
    }
    let kept = keep_serving_capacity(&mut rows, &bound, &wanted, &leaving, &since, &desired.warming);
    release_warmup(&mut rows, desired);
    // Held back while some bound target's health was not read: its previous share or its own health may free it.
    let warming_unread = !desired.warming.is_empty() && bound.values().any(|b| b.health == Health::Unknown);
    let kept = Kept { needs_health: kept.needs_health || warming_unread, ..kept };
    // Held over budget, the rule still asks what it needs read: planned again with it, the numbers are final.
    let held = opts.max_deregister.and_then(|budget| {
        rule.source.and_then(|s| s.holds(&rows, budget)).or_else(|| super::budget::over(&rows, budget))
    });
    let status = held.map_or(Status::Ready, |reason| Status::Blocked { reason });
    RuleRows { status, rows, needs_health: kept.needs_health, lookup: kept.lookup }
}

/// Make before break across backends holds new targets below their weight only while another target of the rule
/// keeps serving: when none would (the old backend's pods are gone, or every bound target fails its health
/// checks), the held targets get their weight now. At weight 0 they would get nothing even from CLB's forwarding
/// to all targets when all fail their checks. A target passing its health checks that the plan weights serves,
/// whatever its bound weight (CLB checks targets at weight 0 too). A bound, weighted target whose health was not
/// read counts as serving: a failed health read holds the weights as they are, it does not release them.
fn release_warmup(rows: &mut [Row], desired: &DesiredTargets) {
    let serves_after = |r: &Row| {
        let stays = !matches!(r.action, Action::Deregister | Action::Drain);
        let weighted = r.weight.is_some_and(|w| w > 0);
        let unread_but_serving = r.health == Health::Unknown && r.current_weight.is_some_and(|w| w > 0);
        stays && weighted && (r.health == Health::Healthy || unread_but_serving)
    };
    if desired.warming.is_empty() || rows.iter().any(serves_after) {
        return;
    }
    for row in rows.iter_mut() {
        let Some(&weight) = desired.unheld.get(&row.target) else { continue };
        row.weight = Some(weight);
        row.note = None;
        if matches!(row.action, Action::Wait | Action::Reweight) {
            row.action = if row.current_weight == Some(weight) { Action::Unchanged } else { Action::Reweight };
        }
    }
}

/// Whose bound target `b` is: `ours_wanted` says whether one of the rule's pods has it.
fn ownership(b: &BoundTarget, ours_wanted: bool, opts: &PlanOptions) -> Ownership {
    match (&b.kind, &opts.owner) {
        (TargetKind::Instance { kind, instance_id }, _) => {
            Ownership::Not(Unmanaged::Instance { kind: kind.clone(), instance_id: instance_id.clone() })
        }
        (TargetKind::Ip, None) => Ownership::Ours,
        (TargetKind::Ip, Some(owner)) if b.tag == owner.tag() => Ownership::Ours,
        (TargetKind::Ip, Some(_)) => match b.tag.strip_prefix(TAG_PREFIX) {
            Some(other) => Ownership::Not(Unmanaged::Owner(other.to_string())),
            None if b.tag.is_empty() && opts.adopt_untagged && ours_wanted => Ownership::Adopt,
            None if b.tag.is_empty() => Ownership::Not(Unmanaged::Untagged),
            None => Ownership::Not(Unmanaged::Tagged(b.tag.clone())),
        },
    }
}

/// The empty-rule guard: with no ready pod at all, a rule that would take serving targets out is blocked (the
/// reason) unless `allow_empty`.
fn empty_rule(desired: &DesiredTargets, rows: &[Row], rule: RuleOptions<'_>, opts: &PlanOptions) -> Option<String> {
    let ready = desired.targets.iter().filter(|d| d.state == PodState::Ready).count();
    let removes_traffic = rows
        .iter()
        .any(|r| matches!(r.action, Action::Deregister | Action::Drain) && r.current_weight.is_some_and(|w| w > 0));
    // Owner or not: another owner's (or a hand-bound) target that still serves does not make an empty desired set
    // intended; a selector typo looks the same as a cluster handing the rule over, so handing over needs
    // `allow_empty`.
    if ready > 0 || !removes_traffic || rule.allow_empty || opts.allow_empty {
        return None;
    }
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
    Some(reason)
}

/// What one rule's bound targets are planned against.
struct Bound<'a> {
    desired: &'a DesiredTargets,
    elsewhere: Elsewhere<'a>,
    rule: RuleOptions<'a>,
    /// IPs of the rule's ready pods (on any port).
    ready_ips: &'a BTreeSet<IpAddr>,
}

impl Bound<'_> {
    /// The row of bound target `b` at `target`, which pod `want` of the rule may have. Records in `leaving` and
    /// `since` what the capacity guard needs to know of a target that goes.
    fn row(
        &self,
        target: Target,
        b: &BoundTarget,
        want: Option<&DesiredTarget>,
        ownership: Ownership,
        leaving: &mut BTreeMap<Target, Leaving>,
        since: &mut BTreeMap<Target, i64>,
    ) -> Row {
        let row = |action, weight, note: Option<String>| Row {
            action,
            target,
            weight,
            current_weight: Some(b.weight),
            pod: want.map(|d| d.pod.clone()),
            note,
            unless_failed: UnlessFailed::Unconditional,
            unmanaged: None,
            health: b.health,
            waiting_since: None,
        };
        match (ownership, want) {
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
                // A split's target held back until its health checks pass waits at the weight it may have.
                let held = self.desired.warming.get(&target).cloned();
                match (b.weight == d.weight, held) {
                    (true, None) => row(Action::Unchanged, Some(b.weight), None),
                    (true, Some(note)) => row(Action::Wait, Some(b.weight), Some(note)),
                    (false, note) => row(Action::Reweight, Some(d.weight), note),
                }
            }
            (Ownership::Ours, Some(_)) if b.weight > 0 => {
                let note = Some("pod is terminating".into());
                Row { unless_failed: UnlessFailed::AnyOfRule, ..row(Action::Drain, Some(0), note) }
            }
            (Ownership::Ours, Some(_)) => row(Action::Unchanged, Some(0), Some("draining: pod is terminating".into())),
            (Ownership::Ours, None) if self.desired.kept.is_some() => {
                row(Action::Unchanged, Some(b.weight), self.desired.kept.clone())
            }
            (Ownership::Ours, None) => match self.rule.policy {
                Policy::UpsertOnly => row(Action::Unchanged, Some(b.weight), Some("kept: upsert-only".into())),
                // The pod of this IP is still ready on another port: it moves (the rules or its template changed
                // the port), and keeps its old port until the new one takes traffic.
                Policy::Sync if self.ready_ips.contains(&target.ip) => {
                    leaving.insert(target, Leaving::Moves);
                    let note = Some("the pod's port changed".into());
                    Row { unless_failed: UnlessFailed::SamePod, ..row(Action::Deregister, None, note) }
                }
                // Takes no traffic: nothing to keep.
                Policy::Sync if b.weight == 0 || b.health == Health::Unhealthy => {
                    row(Action::Deregister, None, Some("no ready pod has this IP".into()))
                }
                // The rules no longer select it (a backend switched, a selector changed): whether it still
                // serves is what the cluster knows of its IP.
                Policy::Sync => not_selected(row(Action::Deregister, None, None), self.elsewhere, leaving, since),
            },
        }
    }
}

/// A bound target of ours, weighted and not unhealthy, that the rule's pods do not have (a backend switched, a
/// selector changed): `removal` of it, decided by what the cluster says of its IP ([`Elsewhere`]). Records in
/// `leaving` whether it may still serve, and in `since` when its pod began to terminate.
fn not_selected(
    removal: Row,
    elsewhere: Elsewhere<'_>,
    leaving: &mut BTreeMap<Target, Leaving>,
    since: &mut BTreeMap<Target, i64>,
) -> Row {
    let target = removal.target;
    let held = |note: String| Row { note: Some(note), unless_failed: UnlessFailed::AnyOfRule, ..removal.clone() };
    match elsewhere.find(target.ip) {
        Found::Serving(name) => {
            leaving.insert(target, Leaving::Moves);
            Row {
                pod: Some(name.to_owned()),
                ..held(format!("pod {name} still serves; this rule no longer selects it"))
            }
        }
        Found::Terminating(pod) => {
            since.extend(pod.terminating_since.map(|s| (target, s)));
            let note = format!("pod {} is terminating (this rule no longer selects it)", pod.name);
            Row { action: Action::Drain, weight: Some(0), pod: Some(pod.name.clone()), ..held(note) }
        }
        Found::Gone => Row { note: Some("no ready pod has this IP".into()), ..removal },
        Found::NotRead => {
            leaving.insert(target, Leaving::Unknown);
            held("this rule no longer selects its IP; the cluster is asked whether a pod still serves it".into())
        }
        Found::Unreadable(why) => {
            leaving.insert(target, Leaving::Moves);
            held(format!(
                "this rule no longer selects its IP, and whether a pod still serves it could not be read ({why})"
            ))
        }
    }
}
