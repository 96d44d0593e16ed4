//! Make before break: which drains and removals of one rule wait so that the rule keeps serving.
//!
//! CLB sends a new target nothing until its health checks pass and a weight-0 target nothing at all, so a target
//! "takes traffic" when it is healthy and weighted. Two kinds of removal can take traffic away:
//!
//! ```text
//!  leaving target                              waits while                               held
//!  its pod terminates (the Deployment's pace)  no other target of the rule takes traffic  the best one
//!  its pod still serves, the rules moved on    the rule's other targets take less traffic as many as that
//!  (a backend switched, a port changed)        than the serving ones did (up to what the
//!                                              new set will take)
//! ```
//!
//! A terminating pod goes whatever clbsync does, so only the last of them waits. A pod the rules no longer select
//! keeps serving: its target stays, weight kept, until enough of the new targets take traffic, so a blue → green
//! switch moves traffic as green passes its health checks instead of cutting it. Targets of pods that are gone
//! are removed at once: they serve nothing.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use super::{Action, Row};
use crate::model::{BoundTarget, DesiredTarget, Health, Target};

/// Why a removed target, that no pod of the rule has, may still serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Leaving {
    /// Its pod still serves (or may: the cluster could not be read); the rules moved on.
    Moves,
    /// The cluster was not asked about its IP yet: held as if it moved, until asked.
    Unknown,
}

/// What [`keep_serving_capacity`] needs next.
pub(super) struct Kept {
    /// A wait could end, or another start, once health is read.
    pub needs_health: bool,
    /// IPs of held targets whose pods the cluster was not asked about.
    pub lookup: Vec<IpAddr>,
}

/// Turns drains and removals into [`Action::Wait`] where they would take traffic away before the rule's other
/// targets take it (see the module). `leaving` names the removed targets whose pod may still serve though the
/// rule no longer selects it; `since`, when the pods of terminating targets began to terminate.
pub(super) fn keep_serving_capacity(
    rows: &mut [Row],
    bound: &BTreeMap<Target, &BoundTarget>,
    wanted: &BTreeMap<Target, &DesiredTarget>,
    leaving: &BTreeMap<Target, Leaving>,
    since: &BTreeMap<Target, i64>,
    warming: &BTreeMap<Target, String>,
) -> Kept {
    let removed = |r: &Row| matches!(r.action, Action::Drain | Action::Deregister);
    // The weight a row leaves its target with (a registration's, for targets bound by this run).
    let weight_after = |r: &Row| match r.action {
        Action::Register | Action::Reweight | Action::Adopt => r.weight.unwrap_or(0),
        _ => r.current_weight.unwrap_or(0),
    };
    let healthy = |r: &Row| bound.get(&r.target).is_some_and(|b| b.health == Health::Healthy);
    let may_serve = |r: &Row| bound.get(&r.target).is_some_and(|b| b.weight > 0 && b.health != Health::Unhealthy);
    let takes_after = |r: &Row| !removed(r) && healthy(r) && weight_after(r) > 0;
    let candidate = |r: &Row| removed(r) && may_serve(r);
    let moves = |r: &Row| candidate(r) && leaving.contains_key(&r.target);
    // A terminating pod's drain (of the rule's pods, or of a pod it no longer selects).
    let goes = |r: &Row| {
        candidate(r)
            && !leaving.contains_key(&r.target)
            && (wanted.contains_key(&r.target) || r.action == Action::Drain)
    };
    let rank = |r: &Row| (healthy(r), r.current_weight.unwrap_or(0), r.target);

    // Counted in pods (IPs), not targets: a pod bound on two ports serves no more for it.
    let ips =
        |keep: &dyn Fn(&Row) -> bool| rows.iter().filter(|r| keep(r)).map(|r| r.target.ip).collect::<BTreeSet<_>>();
    let keepers = ips(&takes_after);
    // Moves: the pods that keep taking traffic and the moving ones took this much; the rule keeps as much as the
    // pods it will have can take.
    let mut serving = ips(&|r| takes_after(r) && r.current_weight.unwrap_or(0) > 0);
    serving.extend(ips(&|r| moves(r) && healthy(r)));
    // A split's targets held back until their health checks pass will take traffic; until they do, every moving
    // target stays (make before break across backends: the old backend goes only once the weight has moved).
    let eventual = ips(&|r| !removed(r) && (weight_after(r) > 0 || warming.contains_key(&r.target)));
    let needed = serving.len().min(eventual.len());
    let hold_all = !warming.is_empty();
    let mut moving: Vec<usize> = (0..rows.len()).filter(|&i| moves(&rows[i])).collect();
    moving.sort_by_key(|&i| Reverse(rank(&rows[i])));
    let mut held: Vec<usize> = Vec::new();
    let mut held_ips = keepers.clone();
    for i in moving {
        if held_ips.len() >= needed && !hold_all {
            break;
        }
        if held_ips.insert(rows[i].target.ip) {
            held.push(i);
        }
    }
    let keepers = keepers.len();
    // The last one: with nothing else taking traffic, one serving removal waits (a healthy one if any, then the
    // heaviest, then the last).
    if keepers == 0 && held.is_empty() {
        let last = (0..rows.len()).filter(|&i| moves(&rows[i]) || goes(&rows[i])).max_by_key(|&i| rank(&rows[i]));
        held.extend(last);
    }
    let needs_health = rows.iter().any(|r| moves(r) || goes(r))
        && rows.iter().any(|r| bound.get(&r.target).is_some_and(|b| b.health == Health::Unknown));
    // Asked about together: every unknown one, so that the next plan, whatever it holds, knows them all.
    let unknown: Vec<IpAddr> = rows
        .iter()
        .filter(|r| moves(r) && leaving.get(&r.target) == Some(&Leaving::Unknown))
        .map(|r| r.target.ip)
        .collect();
    let mut ask = false;
    for i in held {
        let row = &mut rows[i];
        let leaves = leaving.get(&row.target).copied();
        ask |= leaves == Some(Leaving::Unknown);
        hold(row, bound[&row.target], leaves, (keepers, needed), since.get(&row.target).copied());
    }
    let mut lookup = if ask { unknown } else { Vec::new() };
    lookup.sort();
    lookup.dedup();
    Kept { needs_health, lookup }
}

/// Turns a drain or removal into a wait, saying why: `counts` is (pods that take traffic, pods the rule needs)
/// for a target the rules no longer select (`leaves`).
fn hold(row: &mut Row, b: &BoundTarget, leaves: Option<Leaving>, counts: (usize, usize), since: Option<i64>) {
    let what = if row.action == Action::Drain { "drain" } else { "removal" };
    let why = row.note.take().unwrap_or_default();
    let (keepers, needed) = counts;
    row.note = Some(match leaves {
        Some(_) if b.health == Health::Unknown => format!("{what} waits: target health not read yet ({why})"),
        Some(_) => format!(
            "{what} waits until the rule's other targets take its traffic ({keepers} of {needed} do; new targets \
             pass CLB's health checks first): {why}"
        ),
        None if b.health == Health::Unknown => {
            format!("{what} waits: target health not read yet; no other target of this rule takes traffic")
        }
        None => format!(
            "{what} waits until another target of this rule is healthy (new targets pass CLB's health checks first)"
        ),
    });
    row.action = Action::Wait;
    row.weight = Some(b.weight);
    row.waiting_since = since;
}
