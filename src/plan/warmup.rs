//! Make before break across backends: when a share edit or a new backend moves a split rule's weight toward
//! targets that do not take traffic yet (new, or bound and not healthy), those targets get no more of the rule's
//! weight than their backend had before, until their health checks pass; a later pass moves the rest.
//!
//! ```text
//!  [blue] → [green]              pass 1: green registered at weight 0 (blue had it all), every blue target kept
//!                                pass 2: green healthy → weighted; blue removed once the weights are set
//!  95/5 → 50/50, canary warming  pass 1: web 10 → 5, the canary at 5 (its previous ~5%) instead of 100
//!                                pass 2: the canary healthy → 100
//! ```
//!
//! "Share" here is a part of the rule's weight: a backend's previous share is its bound targets' weight over the
//! weight of every target bound on the binding (but targets of no backend failing their health checks); after the plan, its warming targets' weight over the planned
//! weight of the rule's ready targets (held removals left out, so the bound errs on the safe side). Healthy
//! targets are never held back, so a rule that had a serving target keeps one.

use std::collections::BTreeMap;

use crate::model::{BoundTarget, DesiredTarget, Health, PodState, Target, Weight};

/// What [`hold_warming`] held back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Warmup {
    /// The targets held below their backend's weight, each with what its row says.
    pub held: BTreeMap<Target, String>,
    /// The weight each held target would have without the hold.
    pub unheld: BTreeMap<Target, Weight>,
    /// Per backend, how many of its targets are held.
    pub waiting: Vec<usize>,
}

/// Lowers the weights of `targets` (a split rule's, weighted as planned) that do not take traffic yet, so that
/// no backend's warming targets get more of the rule's weight than the backend had on `bound`. `backend_of` maps
/// each target to its backend's index in `names`. Nothing is held when nothing bound has a weight but targets of
/// no backend that fail their health checks (a new rule, or one whose pods are all gone, has no split to keep).
/// Pure.
pub(super) fn hold_warming(
    targets: &mut [DesiredTarget],
    backend_of: &BTreeMap<Target, usize>,
    names: &[String],
    bound: &[BoundTarget],
) -> Warmup {
    let mut out = Warmup { waiting: vec![0; names.len()], ..Warmup::default() };
    // A target of no backend that fails its health checks (its pod gone) had weight but no share of the traffic.
    let counted = |b: &&BoundTarget| backend_of.contains_key(&b.target) || b.health != Health::Unhealthy;
    let before: u64 = bound.iter().filter(counted).map(|b| u64::from(b.weight)).sum();
    if before == 0 {
        return out;
    }
    let bound: BTreeMap<Target, &BoundTarget> = bound.iter().map(|b| (b.target, b)).collect();
    let mut previous = vec![0u64; names.len()];
    for (t, &i) in backend_of {
        previous[i] += bound.get(t).map_or(0, |b| u64::from(b.weight));
    }
    // Each backend's ready targets that CLB does not send traffic to yet, each with the weight it may not go below:
    // new ones and bound ones failing their health checks (0: they serve nothing), and bound ones whose health was
    // not read (their bound weight: a failed health read must not take weight away).
    let mut warming: Vec<Vec<(usize, Weight)>> = vec![Vec::new(); names.len()];
    for (k, d) in targets.iter().enumerate() {
        let floor = match bound.get(&d.target).map(|b| (b.health, b.weight)) {
            None | Some((Health::Unhealthy, _)) => Some(0),
            Some((Health::Unknown, weight)) => Some(weight),
            Some((Health::Healthy, _)) => None,
        };
        if let (PodState::Ready, Some(floor), Some(&i)) = (d.state, floor, backend_of.get(&d.target)) {
            warming[i].push((k, floor));
        }
    }
    let planned: Vec<Weight> = targets.iter().map(|d| d.weight).collect();
    // Lowering one backend's warming weights raises the others' part: again until nothing is lowered. Each round
    // that goes on lowers a weight, so it ends.
    loop {
        let total: u64 = targets.iter().filter(|d| d.state == PodState::Ready).map(|d| u64::from(d.weight)).sum();
        let mut lowered = false;
        for (i, warm) in warming.iter().enumerate() {
            let sum: u64 = warm.iter().map(|&(k, _)| u64::from(targets[k].weight)).sum();
            // sum / total ≤ previous / before, in integers; equality when the backend had all the weight.
            if sum * before <= previous[i] * total {
                continue;
            }
            // k·c / (rest + k·c) ≤ P / B  ⇔  c ≤ P·rest / (k·(B − P)); here P < B.
            let k = warm.len() as u64;
            let most = previous[i] * (total - sum) / (k * (before - previous[i]));
            let most = Weight::try_from(most).unwrap_or(Weight::MAX);
            for &(k, floor) in warm {
                let capped = targets[k].weight.min(most.max(floor));
                lowered |= capped < targets[k].weight;
                targets[k].weight = capped;
            }
        }
        if !lowered {
            break;
        }
    }
    for (i, warm) in warming.iter().enumerate() {
        let held: Vec<usize> = warm.iter().map(|&(k, _)| k).filter(|&k| targets[k].weight < planned[k]).collect();
        out.waiting[i] = held.len();
        for k in held {
            let note = format!(
                "waiting for {} target(s) of {} to pass health checks: weight {} until then (no more than the \
                 backend's previous share), {} after",
                out.waiting[i], names[i], targets[k].weight, planned[k]
            );
            out.held.insert(targets[k].target, note);
            out.unheld.insert(targets[k].target, planned[k]);
        }
    }
    out
}
