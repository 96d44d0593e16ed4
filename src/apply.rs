//! Stage 5: execute one load balancer's plan, make before break.
//!
//! In this order: register new targets, change weights (including drains), then deregister — so capacity never
//! dips mid-run. The calls are strictly sequential (CLB locks a load balancer while a task runs); different load
//! balancers are applied by different tasks of `reconcile`.
//!
//! When registering a pod's new target fails, that pod's old target on the same rule (same IP, another port:
//! a port change) is kept: its deregistration is not attempted. Targets of pods that are gone are removed
//! regardless — they serve nothing, and keeping them would let one failing registration (a full backend
//! quota, say) pin a rule's stale targets forever.
//!
//! After every load balancer of a run is applied, [`set_conditions`] writes the readiness-gate conditions the
//! planner chose from the outcome.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use crate::clb::Clb;
use crate::desired::Cluster;
use crate::model::{Change, Failure, GATE_CONDITION, Owner};
use crate::plan::{Action, GateChange, Plan, Status, UnlessFailed};
use crate::stop::{Reason, Stop};

/// What happened to one row of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowStatus {
    /// Nothing to do (unchanged, unmanaged, or the rule was blocked or skipped).
    NoOp,
    Applied,
    Failed(Failure),
    /// Not tried, and why (an earlier failure, or the run was stopped).
    NotAttempted(String),
}

/// The outcome of every row, aligned with `plan.rules[i].rows[j]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub rows: Vec<Vec<RowStatus>>,
}

impl ApplyReport {
    /// (applied, failed, not attempted) counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for s in self.rows.iter().flatten() {
            match s {
                RowStatus::Applied => c.0 += 1,
                RowStatus::Failed(_) => c.1 += 1,
                RowStatus::NotAttempted(_) => c.2 += 1,
                RowStatus::NoOp => {}
            }
        }
        c
    }

    /// Records what happened to a row; a row with two changes (an adoption that also changes the weight) keeps the
    /// first failure.
    fn set(&mut self, at: RowRef, status: RowStatus) {
        let slot = &mut self.rows[at.rule][at.row];
        if !matches!(slot, RowStatus::Failed(_) | RowStatus::NotAttempted(_)) {
            *slot = status;
        }
    }

    /// True when some change failed or was not attempted.
    pub fn incomplete(&self) -> bool {
        let (_, failed, skipped) = self.counts();
        failed + skipped > 0
    }
}

/// [`ApplyOptions::stop_grace`] unless told otherwise: well inside Kubernetes' default 30 s grace period.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(20);

/// How to apply.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    /// Checked before every call (and by the client before every request it sends): once it fires no new call
    /// starts. After a signal or the run timeout the calls in flight finish and are reported; after the leader
    /// lease is lost they are abandoned at once (another replica may be writing).
    pub stop: Stop,
    /// After a signal or the run timeout, how long a call in flight (and its async task) may still take. Past it
    /// the call is abandoned and its changes reported as `Stopped`, so the report is printed before the pod is
    /// killed (a CronJob pod gets terminationGracePeriodSeconds, 30 s by default, between SIGTERM and SIGKILL).
    pub stop_grace: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions { stop: Stop::new(), stop_grace: DEFAULT_STOP_GRACE }
    }
}

/// Where a change comes from: `plan.rules[rule].rows[row]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RowRef {
    rule: usize,
    row: usize,
}

/// A change to make, the row it came from, and which failed registrations hold it back.
struct Pending {
    at: RowRef,
    change: Change,
    unless_failed: UnlessFailed,
}

/// Applies every change of the rules whose status is [`Status::Ready`]. Every binding in `plan` is on load
/// balancer `lb` (reconcile plans one load balancer at a time).
pub async fn apply<C: Clb>(lb: &str, plan: &Plan, clb: &C, opts: &ApplyOptions) -> ApplyReport {
    let mut report = ApplyReport { rows: plan.rules.iter().map(|r| vec![RowStatus::NoOp; r.rows.len()]).collect() };
    let mut stages: [Vec<Pending>; 4] = Default::default();
    for (i, rule) in plan.rules.iter().enumerate() {
        let (Status::Ready, Some(binding)) = (&rule.status, &rule.binding) else {
            continue;
        };
        debug_assert_eq!(binding.lb, lb, "a plan handed to apply covers one load balancer");
        let tag = rule.owner.as_ref().map(Owner::tag);
        for (j, row) in rule.rows.iter().enumerate() {
            let at = RowRef { rule: i, row: j };
            let change = |tag: Option<String>| Change {
                binding: binding.clone(),
                target: row.target,
                weight: row.weight.unwrap_or(0),
                tag,
            };
            let pending =
                |stage: usize, change: Change| (stage, Pending { at, change, unless_failed: row.unless_failed });
            let (stage, p) = match row.action {
                // An adopted target is tagged first; a weight it must change follows with the other weights.
                Action::Adopt => {
                    if row.weight != row.current_weight {
                        stages[2].push(pending(2, change(None)).1);
                    }
                    pending(0, change(tag.clone()))
                }
                Action::Register => pending(1, change(tag.clone())),
                Action::Reweight | Action::Drain => pending(2, change(None)),
                Action::Deregister => pending(3, change(None)),
                Action::Wait | Action::Unchanged | Action::Unmanaged => continue,
            };
            stages[stage].push(p);
        }
    }
    let [adopt, register, reweight, deregister] = stages;
    // (rule, IP) of registrations that failed, and their rules: the rows that depend on them are held.
    let mut failed = BTreeSet::new();
    let mut failed_rules = BTreeSet::new();
    let stages = [
        (Action::Adopt, adopt),
        (Action::Register, register),
        (Action::Reweight, reweight),
        (Action::Deregister, deregister),
    ];
    for (stage, items) in stages {
        if items.is_empty() {
            continue;
        }
        if let Err(reason) = opts.stop.check() {
            let why = format!("not attempted: the run was stopped before this change ({reason})");
            for p in items {
                report.set(p.at, RowStatus::NotAttempted(why.clone()));
            }
            continue;
        }
        let (items, held): (Vec<Pending>, Vec<Pending>) = items.into_iter().partition(|p| match p.unless_failed {
            UnlessFailed::Nothing => true,
            UnlessFailed::SamePod => !failed.contains(&(p.at.rule, p.change.target.ip)),
            UnlessFailed::AnyOfRule => !failed_rules.contains(&p.at.rule),
        });
        for p in held {
            let why = match p.unless_failed {
                UnlessFailed::SamePod => {
                    "not attempted: registering this pod's new target failed, so its old target is kept"
                }
                _ => {
                    "not attempted: a registration on this rule failed, so this target keeps serving until its replacement is bound"
                }
            };
            report.set(p.at, RowStatus::NotAttempted(why.into()));
        }
        if items.is_empty() {
            continue;
        }
        // The changes move into the call; their rows stay here (one copy of each change).
        let (rows, changes): (Vec<RowRef>, Vec<Change>) = items.into_iter().map(|p| (p.at, p.change)).unzip();
        let call = async {
            match stage {
                Action::Adopt => clb.tag(lb, &changes, &opts.stop).await,
                Action::Register => clb.register(lb, &changes, &opts.stop).await,
                Action::Reweight => clb.set_weight(lb, &changes, &opts.stop).await,
                _ => clb.deregister(lb, &changes, &opts.stop).await,
            }
        };
        let outcomes = tokio::select! {
            outcomes = call => outcomes,
            (reason, waited) = stopped_then(&opts.stop, opts.stop_grace) => {
                let stopped = Failure {
                    code: "Stopped".into(),
                    message: format!(
                        "the run was stopped ({reason}) and this change was not confirmed within {}s; it may still \
                         complete: the next run re-reads the targets",
                        waited.as_secs()
                    ),
                    request_id: None,
                };
                vec![Err(stopped); changes.len()]
            }
        };
        log_failures(lb, &outcomes);
        for (k, (at, change)) in rows.into_iter().zip(&changes).enumerate() {
            let status = match outcomes.get(k) {
                Some(Ok(())) => RowStatus::Applied,
                Some(Err(f)) if f.is_not_sent() => {
                    if stage == Action::Register {
                        failed.insert((at.rule, change.target.ip));
                        failed_rules.insert(at.rule);
                    }
                    RowStatus::NotAttempted(format!("not attempted: {}", f.message))
                }
                Some(Err(f)) => {
                    if stage == Action::Register {
                        failed.insert((at.rule, change.target.ip));
                        failed_rules.insert(at.rule);
                    }
                    RowStatus::Failed(f.clone())
                }
                None => RowStatus::Failed(Failure {
                    code: "Internal".into(),
                    message: "the client returned no outcome for this change".into(),
                    request_id: None,
                }),
            };
            report.set(at, status);
        }
    }
    report
}

/// Writes the readiness-gate conditions of a run, up to `concurrency` at a time, after its CLB changes; each
/// write checks `stop` first and is not sent once it fired. A failed write is a warning, not a failure of the
/// run: the CLB work is done, and the next run plans the condition again.
pub async fn set_conditions<K: Cluster>(cluster: &K, changes: &[GateChange], concurrency: usize, stop: &Stop) {
    let writes = stream::iter(changes)
        .map(|c| async move {
            if let Err(reason) = stop.check() {
                return Written::NotSent(reason);
            }
            match cluster.set_pod_condition(&c.namespace, &c.pod, &c.condition, c.transition).await {
                Ok(()) => Written::Set,
                Err(e) => {
                    tracing::warn!(pod = %format!("{}/{}", c.namespace, c.pod), "setting {GATE_CONDITION} failed: {e}");
                    Written::Failed
                }
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<Written>>()
        .await;
    let count = |w: fn(&Written) -> bool| writes.iter().filter(|x| w(x)).count();
    let (set, failed) = (count(|w| matches!(w, Written::Set)), count(|w| matches!(w, Written::Failed)));
    let not_sent = writes.iter().find_map(|w| match w {
        Written::NotSent(reason) => Some(reason),
        _ => None,
    });
    if let Some(reason) = not_sent {
        let n = changes.len() - set - failed;
        tracing::warn!(not_sent = n, "readiness-gate conditions not written: the run was stopped ({reason})");
    }
    tracing::info!(set, failed, "readiness-gate conditions");
}

/// What became of one readiness-gate condition write.
enum Written {
    Set,
    Failed,
    NotSent(Reason),
}

/// One warning per distinct failure of a call, with the number of changes it hit.
fn log_failures(lb: &str, outcomes: &[Result<(), Failure>]) {
    let mut seen: Vec<(&Failure, usize)> = Vec::new();
    for f in outcomes.iter().filter_map(|o| o.as_ref().err()) {
        match seen.iter_mut().find(|(g, _)| *g == f) {
            Some((_, n)) => *n += 1,
            None => seen.push((f, 1)),
        }
    }
    for (f, n) in seen {
        let request_id = f.request_id.as_deref().unwrap_or("-");
        tracing::warn!(lb, code = %f.code, request_id, changes = n, "change failed: {}", f.message);
    }
}

/// Resolves once `stop` fires and a call in flight may no longer be waited for: `grace` later after a signal or
/// the run timeout, at once when the lease is lost. The reason, and how long the call was waited for.
async fn stopped_then(stop: &Stop, grace: Duration) -> (Reason, Duration) {
    let reason = stop.stopped().await;
    let waited = if reason.lets_in_flight_finish() { grace } else { Duration::ZERO };
    tokio::time::sleep(waited).await;
    (reason, waited)
}
