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

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::stream::{self, StreamExt};

use crate::clb::Clb;
use crate::desired::Cluster;
use crate::model::{Change, Failure, GATE_CONDITION, Owner, RuleId, Target};
use crate::plan::{Action, GateChange, Plan, Row, Status, UnlessFailed};
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

/// What became of every change apply was given, by rule and target; a row it was not given is [`RowStatus::NoOp`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    rows: BTreeMap<(RuleId, Target), RowStatus>,
}

impl ApplyReport {
    /// What became of `row` of rule `rule`.
    pub fn status(&self, rule: RuleId, row: &Row) -> &RowStatus {
        self.rows.get(&(rule, row.target)).unwrap_or(&RowStatus::NoOp)
    }

    /// Adds what apply did on another load balancer.
    pub fn extend(&mut self, other: ApplyReport) {
        self.rows.extend(other.rows);
    }

    /// (applied, failed, not attempted) counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for s in self.rows.values() {
            match s {
                RowStatus::Applied => c.0 += 1,
                RowStatus::Failed(_) => c.1 += 1,
                RowStatus::NotAttempted(_) => c.2 += 1,
                RowStatus::NoOp => {}
            }
        }
        c
    }

    /// Records what happened to the row of rule `rule` with target `target`; a row with two changes (an adoption
    /// that also changes the weight) keeps the first failure.
    #[cfg(test)]
    pub fn record(&mut self, rule: RuleId, target: Target, status: RowStatus) {
        self.set((rule, target), status);
    }

    fn set(&mut self, at: RowRef, status: RowStatus) {
        let slot = self.rows.entry(at).or_insert(RowStatus::NoOp);
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

/// Where a change comes from: a rule, and the target of its row.
type RowRef = (RuleId, Target);

/// A change to make, the row it came from, and which failed registrations hold it back.
struct Pending {
    at: RowRef,
    change: Change,
    unless_failed: UnlessFailed,
}

/// Applies every change of the rules whose status is [`Status::Ready`]. Every binding in `plan` is on load
/// balancer `lb` (reconcile plans one load balancer at a time).
pub async fn apply<C: Clb>(lb: &str, plan: &Plan, clb: &C, opts: &ApplyOptions) -> ApplyReport {
    let mut report = ApplyReport::default();
    let mut failed = FailedRegistrations::default();
    for (stage, items) in stages(lb, plan) {
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
        let items = hold_dependents(items, &failed, &mut report);
        if !items.is_empty() {
            call(lb, stage, items, clb, opts, &mut failed, &mut report).await;
        }
    }
    report
}

/// The changes of `plan`'s ready rules by stage, in the order they are made: adopt (tag), register, change weights
/// (drains included), deregister.
fn stages(lb: &str, plan: &Plan) -> [(Action, Vec<Pending>); 4] {
    let [mut adopt, mut register, mut reweight, mut deregister] = <[Vec<Pending>; 4]>::default();
    for rule in &plan.rules {
        let (Status::Ready, Some(binding)) = (&rule.status, &rule.binding) else {
            continue;
        };
        debug_assert_eq!(binding.lb, lb, "a plan handed to apply covers one load balancer");
        let tag = rule.owner.as_ref().map(Owner::tag);
        for row in &rule.rows {
            let pending = |tag: Option<String>| Pending {
                at: (rule.id, row.target),
                change: Change { binding: binding.clone(), target: row.target, weight: row.weight.unwrap_or(0), tag },
                unless_failed: row.unless_failed,
            };
            match row.action {
                // An adopted target is tagged first; a weight it must change follows with the other weights.
                Action::Adopt => {
                    if row.weight != row.current_weight {
                        reweight.push(pending(None));
                    }
                    adopt.push(pending(tag.clone()));
                }
                Action::Register => register.push(pending(tag.clone())),
                Action::Reweight | Action::Drain => reweight.push(pending(None)),
                Action::Deregister => deregister.push(pending(None)),
                Action::Wait | Action::Unchanged | Action::Unmanaged => {}
            }
        }
    }
    [
        (Action::Adopt, adopt),
        (Action::Register, register),
        (Action::Reweight, reweight),
        (Action::Deregister, deregister),
    ]
}

/// Registrations (and weight changes) of this run that failed: the rows that depend on them are held.
#[derive(Default)]
struct FailedRegistrations {
    /// (rule, IP) of each registration.
    targets: BTreeSet<(RuleId, std::net::IpAddr)>,
    /// The rules with a failed registration or weight change.
    rules: BTreeSet<RuleId>,
}

/// Reports the changes that must wait for a registration that failed as not attempted, and returns the others.
fn hold_dependents(items: Vec<Pending>, failed: &FailedRegistrations, report: &mut ApplyReport) -> Vec<Pending> {
    let (items, held): (Vec<Pending>, Vec<Pending>) = items.into_iter().partition(|p| match p.unless_failed {
        UnlessFailed::Unconditional => true,
        UnlessFailed::SamePod => !failed.targets.contains(&(p.at.0, p.change.target.ip)),
        UnlessFailed::AnyOfRule => !failed.rules.contains(&p.at.0),
    });
    for p in held {
        let why = match p.unless_failed {
            UnlessFailed::SamePod => {
                "not attempted: registering this pod's new target failed, so its old target is kept"
            }
            _ => {
                "not attempted: a registration or weight change on this rule failed, so this target keeps serving until its replacement takes traffic"
            }
        };
        report.set(p.at, RowStatus::NotAttempted(why.into()));
    }
    items
}

/// Makes one stage's changes in one call (which the client batches), and records what became of each.
async fn call<C: Clb>(
    lb: &str,
    stage: Action,
    items: Vec<Pending>,
    clb: &C,
    opts: &ApplyOptions,
    failed: &mut FailedRegistrations,
    report: &mut ApplyReport,
) {
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
            Some(Err(f)) => {
                if stage == Action::Register {
                    failed.targets.insert((at.0, change.target.ip));
                }
                // A weight that did not move (a split's new backend from 0) leaves the old targets serving.
                if matches!(stage, Action::Register | Action::Reweight) {
                    failed.rules.insert(at.0);
                }
                if f.is_not_sent() {
                    RowStatus::NotAttempted(format!("not attempted: {}", f.message))
                } else {
                    RowStatus::Failed(f.clone())
                }
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
