//! Kubernetes Events for one `reconcile`: what it did to a workload's targets, on the workload, so that
//! `kubectl describe deployment` shows it next to the rollout that caused it.
//!
//! [`drafts`] is a pure function of the run's [`Outcome`]: one draft per (object, reason), in rule order, at most
//! `max` of them. [`Series`] creates them through `events.k8s.io/v1` after the report is written, and in watch
//! mode reuses one Event per (object, reason) across passes. A post that fails or takes longer than
//! [`POST_TIMEOUT`] (all of them: [`TOTAL_TIMEOUT`]) is dropped, logged once, counted (`clbsync_events_total`),
//! and never changes the exit code.
//!
//! The object: a `workload:` (or `deployment:`) backend's workload, a `service:` backend's Service. A `selector:` backend has no workload, so its Event goes on a
//! pod whose target changed: the first by name among the rule's rows of that reason. A selector rule with no such
//! pod (a blocked or skipped rule, or removals of pods that are gone) has no object and gets no Event.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::apply::RowStatus;
use crate::model::GATE_CONDITION;
use crate::outcome::{Outcome, RuleOutcome};
use crate::plan::{Action, Status, Waits};
use crate::rules::{PodSource, Rules, WorkloadKind};

/// `reportingController` of every Event.
pub const CONTROLLER: &str = "clbsync.dev/clbsync";
/// `--max-events` unless told otherwise.
pub const DEFAULT_MAX: usize = 100;
/// How long one post (with the read of its object's uid) may take.
pub const POST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long all posts of a run may take together.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Posts in flight at once.
const CONCURRENCY: usize = 8;
/// The API server refuses a longer note (bytes).
const NOTE_LIMIT: usize = 1024;
/// Targets named in a note per place; the rest are counted.
const SHOWN: usize = 5;

/// Why an Event is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    TargetsRegistered,
    TargetsDrained,
    TargetsDeregistered,
    WeightsChanged,
    RuleBlocked,
    RuleSkipped,
    ChangeFailed,
    /// Gated pods keep `clbsync.dev/registered` True though no rule that selects them can bind them.
    GateKept,
    /// Drains or removals held back (make before break) longer than `--warn-waiting-after`.
    TargetsWaiting,
    /// A split rule's backend has no ready pods, or its achieved split is past the tolerance.
    SplitDegraded,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TargetsRegistered => "TargetsRegistered",
            Reason::TargetsDrained => "TargetsDrained",
            Reason::TargetsDeregistered => "TargetsDeregistered",
            Reason::WeightsChanged => "WeightsChanged",
            Reason::RuleBlocked => "RuleBlocked",
            Reason::RuleSkipped => "RuleSkipped",
            Reason::ChangeFailed => "ChangeFailed",
            Reason::GateKept => "ReadinessGateKept",
            Reason::TargetsWaiting => "TargetsWaiting",
            Reason::SplitDegraded => "SplitDegraded",
        }
    }

    /// `Normal` or `Warning`.
    pub fn kind(self) -> &'static str {
        match self {
            Reason::RuleBlocked
            | Reason::RuleSkipped
            | Reason::ChangeFailed
            | Reason::GateKept
            | Reason::TargetsWaiting
            | Reason::SplitDegraded => "Warning",
            _ => "Normal",
        }
    }

    /// The Event's `action`: what clbsync did (or tried to do).
    pub fn action(self) -> &'static str {
        match self {
            Reason::TargetsRegistered => "RegisterTargets",
            Reason::TargetsDrained => "DrainTargets",
            Reason::TargetsDeregistered => "DeregisterTargets",
            Reason::WeightsChanged => "ChangeWeights",
            Reason::RuleBlocked
            | Reason::RuleSkipped
            | Reason::ChangeFailed
            | Reason::GateKept
            | Reason::TargetsWaiting
            | Reason::SplitDegraded => "Reconcile",
        }
    }

    /// The word the note starts each place with, as in the report (`blocked: <place>: <reason>`).
    fn word(self) -> &'static str {
        match self {
            Reason::TargetsRegistered => "registered",
            Reason::TargetsDrained => "drained",
            Reason::TargetsDeregistered => "deregistered",
            Reason::WeightsChanged => "reweighted",
            Reason::RuleBlocked => "blocked",
            Reason::RuleSkipped => "skipped",
            Reason::ChangeFailed => "failed",
            Reason::GateKept => "readiness gate kept",
            Reason::TargetsWaiting => "waiting",
            Reason::SplitDegraded => "split",
        }
    }
}

/// What an Event is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Object {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
}

/// The kind of an Event's [`Object`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Workload(WorkloadKind),
    Service,
    Pod,
}

impl Object {
    fn api_version(&self) -> &str {
        match &self.kind {
            ObjectKind::Workload(k) => k.api_version(),
            ObjectKind::Service | ObjectKind::Pod => "v1",
        }
    }

    /// `Deployment`, `Rollout`, `Service` or `Pod`.
    pub fn kind(&self) -> &str {
        match &self.kind {
            ObjectKind::Workload(k) => k.kind(),
            ObjectKind::Service => "Service",
            ObjectKind::Pod => "Pod",
        }
    }
}

/// One Event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub object: Object,
    pub reason: Reason,
    /// At most 1 KiB.
    pub note: String,
}

/// One line of a note: the place and what happened there, and the targets it happened to.
struct Entry {
    head: String,
    targets: Vec<String>,
}

/// The Events of a `reconcile`: one per (object, reason) in the order they first occur, at most `max`. `rules`
/// hold the rules the outcome's plan was made from. Also returns how many were left out by `max`.
pub fn drafts(rules: &Rules, outcome: &Outcome, max: usize) -> (Vec<Draft>, usize) {
    let mut groups: Vec<((Object, Reason), Vec<Entry>)> = Vec::new();
    for done in outcome.rules() {
        let (Some(rule), plan) = (rules.get(done.plan.id), done.plan) else { continue };
        for (reason, entry, pods) in rule_entries(done, outcome.waits) {
            let (kind, object) = match &rule.backend.pods.source {
                PodSource::Workload(w) => (ObjectKind::Workload(w.kind.clone()), Some(w.name.clone())),
                PodSource::Service(s) => (ObjectKind::Service, Some(s.name.clone())),
                PodSource::Selector(_) => (ObjectKind::Pod, pods.into_iter().next()),
            };
            let Some(name) = object else { continue };
            let key = (Object { kind, namespace: plan.namespace.clone(), name }, reason);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, entries)) => entries.push(entry),
                None => groups.push((key, vec![entry])),
            }
        }
    }
    let left_out = groups.len().saturating_sub(max);
    let drafts = groups
        .into_iter()
        .take(max)
        .map(|((object, reason), entries)| Draft { object, reason, note: note(&entries) })
        .collect();
    (drafts, left_out)
}

/// A rule's entries, each with the pods (sorted) whose targets it names.
fn rule_entries(done: RuleOutcome<'_>, waits: Waits) -> Vec<(Reason, Entry, BTreeSet<String>)> {
    let plan = done.plan;
    let place = &plan.place;
    let mut out = Vec::new();
    let overdue: Vec<&crate::plan::Row> = plan.overdue(waits).collect();
    if !overdue.is_empty() {
        let longest = overdue.iter().filter_map(|r| r.waiting_since).min().map_or(0, |s| waits.now - s);
        let head = format!(
            "{}: {place}: drain or removal held for {} min (more than --warn-waiting-after {} min) because the \
             rule's other targets do not take its traffic: check their CLB health checks",
            Reason::TargetsWaiting.word(),
            longest / 60,
            waits.after.as_secs() / 60
        );
        let targets = overdue.iter().map(|r| r.target.to_string()).collect();
        let pods = overdue.iter().filter_map(|r| r.pod.clone()).collect();
        out.push((Reason::TargetsWaiting, Entry { head, targets }, pods));
    }
    if !plan.gate_kept.is_empty() {
        let shown = plan.gate_kept.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
        let head = format!(
            "{}: {place}: {} pod(s) [{shown}] stay Ready ({GATE_CONDITION} kept True) though no rule that selects \
             them can make them targets; fix the rules file",
            Reason::GateKept.word(),
            plan.gate_kept.len()
        );
        let pods: BTreeSet<String> = plan.gate_kept.iter().cloned().collect();
        out.push((Reason::GateKept, Entry { head, targets: Vec::new() }, pods));
    }
    match &plan.status {
        Status::Blocked { reason } => {
            let entry = Entry { head: format!("blocked: {place}: {reason}"), targets: Vec::new() };
            out.push((Reason::RuleBlocked, entry, BTreeSet::new()));
            return out;
        }
        Status::Skipped { reason } => {
            let entry = Entry { head: format!("skipped: {place}: {reason}"), targets: Vec::new() };
            out.push((Reason::RuleSkipped, entry, BTreeSet::new()));
            return out;
        }
        Status::Ready => {}
    }
    // The plan's `split degraded: …` and `split off: …` warnings, each with its place, as the report has them.
    for w in plan.warnings.iter().filter(|w| w.starts_with("split ")) {
        let (what, rest) = w.split_once(": ").unwrap_or((w.as_str(), ""));
        let pods = plan.rows.iter().filter_map(|r| r.pod.clone()).collect();
        out.push((
            Reason::SplitDegraded,
            Entry { head: format!("{what}: {place}: {rest}"), targets: Vec::new() },
            pods,
        ));
    }
    out.extend(row_entries(done));
    out
}

/// The entries of what became of a ready rule's changes: one per (reason, head), with its targets and pods.
fn row_entries(done: RuleOutcome<'_>) -> impl Iterator<Item = (Reason, Entry, BTreeSet<String>)> {
    let place = &done.plan.place;
    // (reason, head) → targets and pods, in the order they first occur.
    let mut found: Vec<(Reason, String, Vec<String>, BTreeSet<String>)> = Vec::new();
    for (row, status) in done.rows() {
        let (reason, head) = match (status, row.action) {
            (RowStatus::Applied, Action::Register) => (Reason::TargetsRegistered, None),
            (RowStatus::Applied, Action::Drain) => (Reason::TargetsDrained, None),
            (RowStatus::Applied, Action::Deregister) => (Reason::TargetsDeregistered, None),
            (RowStatus::Applied, Action::Reweight) => (Reason::WeightsChanged, None),
            (RowStatus::Failed(f), _) => (Reason::ChangeFailed, Some(format!("failed: {place}: {f}"))),
            (RowStatus::NotAttempted(why), _) => (Reason::ChangeFailed, Some(format!("not attempted: {place}: {why}"))),
            _ => continue,
        };
        let head = head.unwrap_or_else(|| format!("{}: {place}", reason.word()));
        let target = match (row.action, row.current_weight, row.weight) {
            (Action::Reweight, Some(from), Some(to)) => format!("{} {from} → {to}", row.target),
            _ => row.target.to_string(),
        };
        let i = match found.iter().position(|(r, h, ..)| *r == reason && *h == head) {
            Some(i) => i,
            None => {
                found.push((reason, head, Vec::new(), BTreeSet::new()));
                found.len() - 1
            }
        };
        found[i].2.push(target);
        found[i].3.extend(row.pod.clone());
    }
    found.into_iter().map(|(reason, head, targets, pods)| (reason, Entry { head, targets }, pods))
}

/// `registered: lb-1 TCP:80: 2 target(s) [10.0.0.1:80, 10.0.0.2:80]; …`, cut to 1 KiB.
fn note(entries: &[Entry]) -> String {
    let parts: Vec<String> = entries
        .iter()
        .map(|e| {
            if e.targets.is_empty() {
                return e.head.clone();
            }
            let shown = e.targets.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
            let more = e.targets.len().saturating_sub(SHOWN);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            format!("{}: {} target(s) [{shown}{more}]", e.head, e.targets.len())
        })
        .collect();
    truncate(parts.join("; "), NOTE_LIMIT)
}

/// At most `limit` bytes, cut on a character boundary and ending in `…` when cut.
fn truncate(mut s: String, limit: usize) -> String {
    if s.len() <= limit {
        return s;
    }
    let mut end = limit - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

mod series;

pub use series::{Posted, Series, instance};

#[cfg(test)]
mod tests;
