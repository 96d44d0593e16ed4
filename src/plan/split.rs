//! Traffic splitting: the per-target CLB weights that give each backend of a `backends:` rule its `share` of the
//! rule's traffic. CLB sends a target `weight / Σ weights` of the requests, so a backend with `n` targets of
//! weight `w` gets `n·w / Σ nⱼ·wⱼ`; weights are integers 1–100, so a split is met only as closely as they allow.
//!
//! ```text
//!  95/5, 19 + 1 pods:  web 10 × 19 = 190, canary 10 × 1 = 10   → 95% / 5% (exact)
//!  95/5, 20 + 1 pods:  web 10 × 20 = 200, canary 11 × 1 = 11   → 94.8% / 5.2% (0.21 points off)
//! ```
//!
//! Weights change only when they must (each change is a `BatchModifyTargetWeight` call): the bound weights stay
//! while the split they give is within [`TOLERANCE_BP`] of the request (or of the best integer weights can do,
//! when that is further); otherwise the larger backend keeps its weight and the smaller ones move, then weights
//! are computed around the default 10, then the closest split of all is taken.

use std::collections::BTreeMap;

use super::targets::{Refused, backend_targets};
use super::warmup::hold_warming;
use super::{DesiredTargets, PodLists};
use crate::model::{BoundTarget, DEFAULT_WEIGHT, DesiredTarget, Pod, PodState, Selected, Target, Weight};
use crate::rules::{OnEmpty, Rule, Share, Split};

/// How far (in hundredths of a percentage point) a backend's achieved share may be from its requested one
/// before weights change: 50, half a percentage point. Past it (and past the best integer weights can reach)
/// the plan warns.
pub const TOLERANCE_BP: u32 = 50;

/// What the weights of one backend are computed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    pub share: u32,
    /// Targets that take traffic (ready pods' targets).
    pub targets: usize,
    /// The weight its bound targets have now (the most common one), if any is bound.
    pub current: Option<Weight>,
}

/// The weights of a split, one per [`Part`], and how far they are from what was asked.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    /// `None` for a backend without targets.
    pub weights: Vec<Option<Weight>>,
    /// The largest distance between a backend's achieved and aimed-at share, in basis points (aimed at: its
    /// share of the shares of the backends with targets).
    pub error_bp: u32,
    /// The best any integer weights could do, in basis points (the planner's own search).
    pub best_bp: u32,
}

impl Weights {
    /// Whether the achieved split is past the tolerance (and so past what integer weights can reach closer).
    pub fn off(&self) -> bool {
        self.error_bp > TOLERANCE_BP
    }
}

/// Each backend's part of the traffic with `weights` (parts without a weight take none), in basis points.
pub fn achieved_bp(parts: &[Part], weights: &[Option<Weight>]) -> Vec<u32> {
    let shares = achieved(parts, weights);
    shares.iter().map(|s| (s * 10_000.0).round() as u32).collect()
}

/// Each backend's requested part of the rule's traffic (of all its backends), in basis points.
pub fn requested_bp(parts: &[Part]) -> Vec<u32> {
    let total: u64 = parts.iter().map(|p| u64::from(p.share)).sum();
    parts.iter().map(|p| (u64::from(p.share) * 10_000 + total / 2).checked_div(total).unwrap_or(0) as u32).collect()
}

/// The weights for `parts`. Pure; see the module doc for the order of preference. A backend without targets
/// takes nothing, and the others are weighted by their shares among themselves, their bound weights kept while
/// within the tolerance: with `hold` as with `redistribute` (the policies differ in what the plan says), so with
/// three backends and one empty, the two left keep the proportions asked for between them.
pub fn weights(parts: &[Part]) -> Weights {
    let live: Vec<usize> = (0..parts.len()).filter(|&i| parts[i].targets > 0).collect();
    let none = || Weights { weights: vec![None; parts.len()], error_bp: 0, best_bp: 0 };
    if live.is_empty() {
        return none();
    }
    let current: Option<Vec<Option<Weight>>> = live
        .iter()
        .map(|&i| parts[i].current.map(|w| w.clamp(1, 100)))
        .collect::<Option<Vec<_>>>()
        .map(|ws| spread(parts.len(), &live, &ws));
    let aim = aims(parts, &live);
    let best = search(parts, &live, &aim);
    let best_err = error(parts, &aim, &best);
    let bound = best_err.max(f64::from(TOLERANCE_BP) / 10_000.0) + 1e-12;
    let largest =
        *live.iter().max_by_key(|&&i| (parts[i].share, parts[i].targets, std::cmp::Reverse(i))).expect("live");
    let mut tried = Vec::new();
    tried.extend(current);
    // The larger backend keeps its bound weight, also when another backend is new.
    if let Some(w) = parts[largest].current {
        tried.push(around(parts, &live, &aim, largest, w.clamp(1, 100)));
    }
    tried.push(around(parts, &live, &aim, largest, DEFAULT_WEIGHT));
    let chosen = tried.into_iter().find(|ws| error(parts, &aim, ws) <= bound).unwrap_or(best);
    let to_bp = |e: f64| (e * 10_000.0).round() as u32;
    Weights { error_bp: to_bp(error(parts, &aim, &chosen)), best_bp: to_bp(best_err), weights: chosen }
}

/// The share each part aims at: its share of the live parts' shares (0 for the others).
fn aims(parts: &[Part], live: &[usize]) -> Vec<f64> {
    let total: f64 = live.iter().map(|&i| f64::from(parts[i].share)).sum();
    (0..parts.len()).map(|i| if live.contains(&i) { f64::from(parts[i].share) / total } else { 0.0 }).collect()
}

fn spread(n: usize, live: &[usize], ws: &[Weight]) -> Vec<Option<Weight>> {
    let mut out = vec![None; n];
    for (&i, &w) in live.iter().zip(ws) {
        out[i] = Some(w);
    }
    out
}

fn achieved(parts: &[Part], weights: &[Option<Weight>]) -> Vec<f64> {
    let load = |i: usize| weights[i].map_or(0.0, |w| f64::from(w) * parts[i].targets as f64);
    let total: f64 = (0..parts.len()).map(load).sum();
    (0..parts.len()).map(|i| if total > 0.0 { load(i) / total } else { 0.0 }).collect()
}

/// The largest distance between achieved and aimed-at shares (fractions of 1).
fn error(parts: &[Part], aim: &[f64], weights: &[Option<Weight>]) -> f64 {
    achieved(parts, weights).iter().zip(aim).map(|(a, p)| (a - p).abs()).fold(0.0, f64::max)
}

/// Weights with part `anchor` at `w` and every other live part as close to its aim as integers 1–100 allow:
/// the ideal `wᵢ = aimᵢ · X / nᵢ` (with `X` the total load the anchor implies), rounded down or up, whichever
/// gives the smaller error (one part at a time, in order).
fn around(parts: &[Part], live: &[usize], aim: &[f64], anchor: usize, w: Weight) -> Vec<Option<Weight>> {
    let total = f64::from(w) * parts[anchor].targets as f64 / aim[anchor];
    let mut out = vec![None; parts.len()];
    for &i in live {
        let ideal = aim[i] * total / parts[i].targets as f64;
        out[i] = Some(if i == anchor { w } else { ideal.round().clamp(1.0, 100.0) as Weight });
    }
    for &i in live.iter().filter(|&&i| i != anchor) {
        let ideal = aim[i] * total / parts[i].targets as f64;
        let (down, up) = (ideal.floor().clamp(1.0, 100.0) as Weight, ideal.ceil().clamp(1.0, 100.0) as Weight);
        let mut with = |x: Weight| {
            out[i] = Some(x);
            error(parts, aim, &out)
        };
        let e_down = with(down);
        if with(up) > e_down {
            out[i] = Some(down);
        }
    }
    out
}

/// The closest split: every live part as the anchor, at every weight 1–100 (exhaustive for two backends).
/// Ties go to the first found: the largest part first, from weight 100 down (finer steps for the others).
fn search(parts: &[Part], live: &[usize], aim: &[f64]) -> Vec<Option<Weight>> {
    let mut anchors = live.to_vec();
    anchors.sort_by_key(|&i| (std::cmp::Reverse(parts[i].share), i));
    let mut best: Option<(f64, Vec<Option<Weight>>)> = None;
    for &anchor in &anchors {
        for w in (1..=100).rev() {
            let ws = around(parts, live, aim, anchor, w);
            let e = error(parts, aim, &ws);
            if best.as_ref().is_none_or(|(b, _)| e < *b - 1e-12) {
                best = Some((e, ws));
            }
        }
    }
    best.expect("at least one live part").1
}

/// One backend of a split rule as planned: what it asked for and what its weights give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitRow {
    /// The backend's pods in words (`deployment shop/web`).
    pub backend: String,
    /// Its share of the rule's traffic as the rules file asks, in basis points (9500 = 95%).
    pub requested_bp: u32,
    /// Its share with the planned weights and its targets that take traffic, in basis points.
    pub achieved_bp: u32,
    /// Its targets that take traffic (ready pods' targets).
    pub targets: usize,
    /// The weight of each of them; `None` without targets.
    pub weight: Option<Weight>,
    /// Of them, those held below that weight until they pass health checks (make before break across backends).
    pub waiting: usize,
}

/// What [`desired`] finds: the targets, the pods, the split rows and what the source sanity check compares.
pub(super) type Desired = (DesiredTargets, Vec<Pod>, Vec<SplitRow>, Option<super::source::Facts>);

/// The desired targets of a split rule: each backend's, with the weights that give it its share, the pods of
/// all its backends, what the report shows of the split, and the replicas its workloads ask for together (when
/// each has `spec.replicas`, for the source sanity check). Refused when a backend cannot be read (skipped) or a pod is in two backends
/// (blocked, never merged).
pub(super) fn desired(rule: &Rule, split: &Split, pods: &PodLists, on_lb: &[BoundTarget]) -> Result<Desired, Refused> {
    let mut read = Vec::with_capacity(split.backends.len());
    let mut unread = None;
    for share in &split.backends {
        match backend_targets(rule, &share.backend, pods) {
            Ok(found) => read.push(Some(found)),
            Err(Refused::Skip(reason)) => {
                unread.get_or_insert(reason);
                read.push(None);
            }
            Err(refused) => return Err(refused),
        }
    }
    if let Some(reason) = unread {
        one_backend_per_pod(split, read.iter().map(|r| r.as_ref().map(|(_, listed)| *listed)))?;
        return held(read, reason, on_lb);
    }
    let each: Vec<(DesiredTargets, &Selected)> = read.into_iter().flatten().collect();
    refuse_empty(split, &each)?;
    one_backend_per_pod(split, each.iter().map(|(_, listed)| Some(*listed)))?;
    let parts = parts(split, &each, on_lb);
    let planned = weights(&parts);
    let facts = facts(split, &each);
    let backend_of = backend_of(&each);
    let mut out = DesiredTargets::default();
    let mut listed = Vec::new();
    for ((mut found, pods), weight) in each.into_iter().zip(&planned.weights) {
        if let Some(w) = weight {
            found.targets.iter_mut().filter(|t| t.state == PodState::Ready).for_each(|t| t.weight = *w);
        }
        out.absorb(found);
        listed.extend(pods.pods.iter().cloned());
    }
    out.one_per_target();
    out.problems.extend(warnings(split, &parts, &planned));
    let names: Vec<String> = split.backends.iter().map(|s| s.backend.pods.to_string()).collect();
    let warm = hold_warming(&mut out.targets, &backend_of, &names, on_lb);
    let requested = requested_bp(&parts);
    let achieved = if warm.held.is_empty() {
        achieved_bp(&parts, &planned.weights)
    } else {
        held_bp(&out, &backend_of, parts.len())
    };
    let rows = (0..parts.len())
        .map(|i| SplitRow {
            backend: names[i].clone(),
            requested_bp: requested[i],
            achieved_bp: achieved[i],
            targets: parts[i].targets,
            weight: planned.weights[i],
            waiting: warm.waiting[i],
        })
        .collect();
    out.warming = warm.held;
    out.unheld = warm.unheld;
    Ok((out, listed, rows, facts))
}

/// An empty list is a selector typo or a deleted workload, as for a rule with one backend: the whole backend would
/// leave at once (its targets are no longer selected), so the rule is held; unless the workload asks for no pods
/// (a canary scaled to 0) or the rule allows it.
fn refuse_empty(split: &Split, each: &[(DesiredTargets, &Selected)]) -> Result<(), Refused> {
    for (share, (_, listed)) in split.backends.iter().zip(each) {
        if listed.pods.is_empty() && listed.replicas != Some(0) && !share.backend.allow_empty {
            let reason = format!(
                "{} lists no pods: a selector typo, or a workload deleted or not created yet? the rule's targets \
                 are left as they are (scale it to 0 replicas, or set allow_empty: true, to let its targets go)",
                share.backend.pods
            );
            return Err(Refused::Block { reason, found: Box::default() });
        }
    }
    Ok(())
}

/// Each backend's share, its targets that take traffic, and the weight most of them are bound at now.
fn parts(split: &Split, each: &[(DesiredTargets, &Selected)], on_lb: &[BoundTarget]) -> Vec<Part> {
    let bound: BTreeMap<Target, Weight> = on_lb.iter().map(|b| (b.target, b.weight)).collect();
    let part = |(share, (found, _)): (&Share, &(DesiredTargets, &Selected))| {
        let targets = found.targets.iter().filter(|d| d.state == PodState::Ready).count();
        Part { share: share.share, targets, current: most_bound_weight(&found.targets, &bound) }
    };
    split.backends.iter().zip(each).map(part).collect()
}

/// The weight most of `targets`' ready ones are bound at (the larger on a tie), weight 0 not counted.
fn most_bound_weight(targets: &[DesiredTarget], bound: &BTreeMap<Target, Weight>) -> Option<Weight> {
    let mut counts: BTreeMap<Weight, usize> = BTreeMap::new();
    let ready = targets.iter().filter(|d| d.state == PodState::Ready);
    for w in ready.filter_map(|d| bound.get(&d.target)).filter(|&&w| w > 0) {
        *counts.entry(*w).or_default() += 1;
    }
    counts.into_iter().max_by_key(|&(w, n)| (n, w)).map(|(w, _)| w)
}

/// What the source sanity check compares, for the backend furthest short of its replicas. Each backend is looked
/// at on its own: a sum would let one backend's surge hide another's shortfall, and one backend without replicas
/// switch the check off for all.
fn facts(split: &Split, each: &[(DesiredTargets, &Selected)]) -> Option<super::source::Facts> {
    split
        .backends
        .iter()
        .zip(each)
        .filter_map(|(share, (_, selected))| {
            let replicas = selected.replicas?;
            Some((share.backend.pods.to_string(), super::source::counted(&selected.pods), replicas))
        })
        .max_by_key(|(_, listed, replicas)| i64::from(*replicas) - *listed as i64)
}

/// Which backend (its place in the split) each target is of: a ready pod's, for an IP in two backends.
fn backend_of(each: &[(DesiredTargets, &Selected)]) -> BTreeMap<Target, usize> {
    let mut backend_of: BTreeMap<Target, (usize, bool)> = BTreeMap::new();
    for (i, (found, _)) in each.iter().enumerate() {
        for t in &found.targets {
            let ready = t.state == PodState::Ready;
            if backend_of.get(&t.target).is_none_or(|&(_, was)| ready && !was) {
                backend_of.insert(t.target, (i, ready));
            }
        }
    }
    backend_of.into_iter().map(|(t, (i, _))| (t, i)).collect()
}

/// Blocks a rule whose pod is selected by two of its backends (`listed`, in the file's order; `None`: not read):
/// never merged.
fn one_backend_per_pod<'a>(split: &Split, listed: impl Iterator<Item = Option<&'a Selected>>) -> Result<(), Refused> {
    let mut owner: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, listed) in listed.enumerate() {
        for pod in listed.iter().flat_map(|l| l.pods.iter()) {
            if let Some(j) = owner.insert(&pod.name, i).filter(|&j| j != i) {
                let reason = format!(
                    "pod {} is selected by backends[{j}] ({}) and backends[{i}] ({}): a pod may be in one backend of \
                     a rule (make their selectors exclusive, e.g. with a `track: canary` label); the rule's targets \
                     are left as they are",
                    pod.name, split.backends[j].backend.pods, split.backends[i].backend.pods
                );
                return Err(Refused::Block { reason, found: Box::default() });
            }
        }
    }
    Ok(())
}

/// A split rule with a backend that could not be read (`reason`): which bound targets are its is unknown, and so
/// is the split, so every bound target that no readable backend has stays, and so does every weight; the readable
/// backends' new pods are registered at their backend's bound weight and their terminating pods drained, so their
/// rollouts go on. Skipped as a whole (as before) when no backend can be read, or a readable one has ready pods but
/// no bound weight to register them at.
fn held(
    read: Vec<Option<(DesiredTargets, &Selected)>>,
    reason: String,
    on_lb: &[BoundTarget],
) -> Result<Desired, Refused> {
    if read.iter().all(Option::is_none) {
        return Err(Refused::Skip(reason));
    }
    let bound: BTreeMap<Target, Weight> = on_lb.iter().map(|b| (b.target, b.weight)).collect();
    let mut out = DesiredTargets::default();
    let mut listed = Vec::new();
    for (mut found, selected) in read.into_iter().flatten() {
        let current = most_bound_weight(&found.targets, &bound);
        for target in found.targets.iter_mut().filter(|t| t.state == PodState::Ready) {
            let Some(w) = bound.get(&target.target).copied().or(current) else {
                return Err(Refused::Skip(reason));
            };
            target.weight = w;
        }
        out.absorb(found);
        listed.extend(selected.pods.iter().cloned());
    }
    out.one_per_target();
    out.problems.push(format!(
        "split held: {reason}; every weight is kept, and so is every target no other backend has; the other \
         backends' new pods are registered at their bound weight and their terminating pods drained"
    ));
    out.kept = Some("kept: a backend of this rule could not be read".to_owned());
    Ok((out, listed, Vec::new(), None))
}

/// Each backend's part of the weight of `desired`'s ready targets (some held below their backend's weight), in
/// basis points.
fn held_bp(desired: &DesiredTargets, backend_of: &BTreeMap<Target, usize>, n: usize) -> Vec<u32> {
    let mut load = vec![0u64; n];
    for d in desired.targets.iter().filter(|d| d.state == PodState::Ready) {
        if let Some(&i) = backend_of.get(&d.target) {
            load[i] += u64::from(d.weight);
        }
    }
    let total: u64 = load.iter().sum();
    load.iter().map(|l| (l * 10_000 + total / 2).checked_div(total).unwrap_or(0) as u32).collect()
}

/// What the plan says of a split that is degraded (a backend without ready pods) or off by more than the
/// tolerance.
fn warnings(split: &Split, parts: &[Part], planned: &Weights) -> Vec<String> {
    let requested = requested_bp(parts);
    let mut out = Vec::new();
    let all_empty = parts.iter().all(|p| p.targets == 0);
    for i in (0..parts.len()).filter(|&i| parts[i].targets == 0 && !all_empty) {
        let what = format!(
            "split degraded: backend {} has no ready pods, so its {} of the traffic goes to the other backends",
            split.backends[i].backend.pods,
            percent(requested[i])
        );
        out.push(match split.on_empty {
            OnEmpty::Hold => format!("{what}, whose weights are held (on_empty_backend: hold)"),
            OnEmpty::Redistribute => {
                format!("{what}, weighted again by their shares (on_empty_backend: redistribute)")
            }
        });
    }
    if planned.off() {
        out.push(format!(
            "split off: the achieved split is {} points from the requested one, past the {}-point tolerance; integer \
             weights 1-100 cannot come closer with these pod counts (scale the backends or change the shares)",
            points(planned.error_bp),
            points(TOLERANCE_BP)
        ));
    }
    out
}

/// `95%`, `5.2%`, `94.79%`: basis points as a percentage, without trailing zeros.
pub fn percent(bp: u32) -> String {
    format!("{}%", points(bp))
}

/// Basis points as percentage points: `0.5`, `12`, `4.76`.
pub fn points(bp: u32) -> String {
    let s = format!("{}.{:02}", bp / 100, bp % 100);
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}
