//! The orchestrator: rules → desired → actual → plan → (apply) → report. It does I/O and wires the stages
//! together; every decision is the planner's. The only module that knows the difference between `diff` and
//! `reconcile`.

use std::io::Write;
use std::sync::Arc;

use anyhow::Context;
use futures::FutureExt;
use futures::stream::{self, StreamExt};

use crate::apply::{self, ApplyOptions, ApplyReport, RowStatus};
use crate::clb::Clb;
use crate::clb::resolve::{self, LbRules};
use crate::desired::{self, Cluster};
use crate::model::printable;
use crate::observe::progress::{Observer, Progress};
use crate::plan::{self, Applied, Fingerprint, Plan, PlanOptions, PodLists, PodsByIp, RulePlan, Waits};
use crate::report::{self, Style};
use crate::rules::{Rule, Rules};
use crate::stop::Stop;

/// `diff` plans only; `reconcile` plans and applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Diff,
    Reconcile,
}

/// Everything a run needs besides the rules and the two clients.
#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    pub plan: PlanOptions,
    pub style: Style,
    /// Load balancers handled at once ([`concurrency`] by default); Kubernetes lists at most [`LISTS_AT_ONCE`] of
    /// it.
    pub concurrency: usize,
    /// For messages about load balancers that are not found.
    pub region: String,
    /// Checked before every write (CLB calls, gate conditions): a signal, the run timeout or a lost lease.
    pub stop: Stop,
    /// After a signal or the run timeout, how long changes in flight may still take
    /// ([`ApplyOptions::stop_grace`]).
    pub stop_grace: std::time::Duration,
    /// `--warn-waiting-after`: a held drain or removal waiting longer is a Warning Event and counts in
    /// `clbsync_waiting_targets`.
    pub warn_waiting_after: std::time::Duration,
    /// Told what the run is doing, for a progress display (`None`: nobody is watching).
    pub progress: Option<Observer>,
    /// `--expect-plan`: every load balancer is planned first, and the plan is applied only if its fingerprint is
    /// this one.
    pub expect_plan: Option<Fingerprint>,
}

/// Seconds of work per load balancer the default concurrency covers (see [`concurrency`]).
const SECONDS_PER_LOAD_BALANCER: usize = 2;

/// Kubernetes requests (pod lists, gate-condition patches) in flight at most: the API server, not a client-side
/// limit, is what they wait for.
pub const LISTS_AT_ONCE: usize = 16;

/// The default number of load balancers in flight for a client limited to `rate_limit` calls per second per
/// action.
///
/// The limiter paces every call, so this number only has to be large enough to keep each action's budget busy
/// (Little's law: in flight = rate × time in flight). One load balancer makes its calls one after another, and
/// between two calls of the same action it waits for its reads and for a task (CLB's take 0.1–2 s, plus the
/// poll), up to about [`SECONDS_PER_LOAD_BALANCER`] seconds; tasks start at most `rate_limit` per second
/// together, whatever the number in flight. More only makes load balancers wait at the limiter, each holding its
/// targets and plan in memory.
pub fn concurrency(rate_limit: u32) -> usize {
    (rate_limit as usize * SECONDS_PER_LOAD_BALANCER).max(1)
}

/// What a run found and did.
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    /// `None` for `diff` (and for `reconcile` when there was nothing to apply).
    pub applied: Option<ApplyReport>,
    /// When the plan was made, and how long a held drain or removal may wait before it is reported.
    pub waits: Waits,
    /// `--expect-plan` and the plan found is another: (expected, found). Nothing was applied.
    pub plan_changed: Option<(Fingerprint, Fingerprint)>,
}

/// The exit codes, documented in `--help` and docs/src/commands.md.
pub mod exit {
    /// Success: in sync, or every change applied.
    pub const OK: u8 = 0;
    /// Runtime error: a rule skipped or blocked, a change failed, bad rules, missing credentials.
    pub const ERROR: u8 = 1;
    /// `--detailed-exitcode`: changes are pending.
    pub const CHANGES: u8 = 2;
    /// `--expect-plan`: the plan is not the one reviewed any more; nothing was changed.
    pub const PLAN_CHANGED: u8 = 3;
    /// Command-line usage error (EX_USAGE).
    pub const USAGE: u8 = 64;
}

/// How much of the first problem the error line quotes; the report has it whole.
const TROUBLE_CHARS: usize = 600;

impl Outcome {
    /// One line saying what went wrong, for the end of a failed run: `2 rule(s) skipped, 1 change(s) failed; the
    /// first: <rule>: <why>`.
    pub fn trouble(&self) -> String {
        let s = self.plan.summary();
        let (_, failed, not_attempted) = self.applied.as_ref().map_or((0, 0, 0), ApplyReport::counts);
        let parts: Vec<String> = [
            (s.skipped, "rule(s) skipped"),
            (s.blocked, "rule(s) blocked"),
            (failed, "change(s) failed"),
            (not_attempted, "change(s) not attempted"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        let mut line = parts.join(", ");
        // With stdout in a file (`diff -o json > plan.json` in CI), this line is all the job log shows.
        let held = self.plan.rules.iter().find_map(|r| match &r.status {
            plan::Status::Blocked { reason } | plan::Status::Skipped { reason } => {
                Some(format!("{}: {reason}", r.place))
            }
            plan::Status::Ready => None,
        });
        let failed = || {
            let report = self.applied.as_ref()?;
            self.plan.rules.iter().zip(&report.rows).find_map(|(rule, statuses)| {
                rule.rows.iter().zip(statuses).find_map(|(row, status)| match status {
                    RowStatus::Failed(f) => Some(format!("{}: {}: {f}", rule.place, row.target)),
                    _ => None,
                })
            })
        };
        if let Some(first) = held.or_else(failed) {
            line.push_str("; the first: ");
            line.extend(first.chars().take(TROUBLE_CHARS));
            if first.chars().count() > TROUBLE_CHARS {
                line.push('…');
            }
        }
        line
    }

    /// The process exit code of this outcome.
    pub fn exit_code(&self, detailed: bool) -> u8 {
        if self.plan_changed.is_some() {
            return exit::PLAN_CHANGED;
        }
        let troubled = self.plan.rules.iter().any(|r| r.status != plan::Status::Ready);
        let incomplete = self.applied.as_ref().is_some_and(ApplyReport::incomplete);
        if troubled || incomplete {
            exit::ERROR
        } else if detailed && self.applied.is_none() && self.plan.has_pending() {
            exit::CHANGES
        } else {
            exit::OK
        }
    }
}

/// One pass: read both sides, plan, apply if asked, and write the report to `out`.
///
/// Load balancers are pipelined: each is read, planned and (for `reconcile`) applied as soon as its own targets
/// and the pods its rules name are known, up to `concurrency` load balancers at a time, so the API's per-action
/// rate limits overlap (later load balancers' reads go on while earlier ones apply) instead of adding up. The
/// plan is the same as planning every rule at once: a rule's plan depends only on its own binding and pods, and
/// bindings never clash across load balancers.
pub async fn run<K: Cluster, C: Clb>(
    rules: &Rules,
    cluster: &K,
    clb: &C,
    settings: &Settings,
    out: &mut impl Write,
) -> anyhow::Result<Outcome> {
    let queries = rules.rules.iter().flat_map(Rule::queries).cloned();
    let pods = async {
        let listing = desired::list_each(cluster, queries.clone(), settings.concurrency.min(LISTS_AT_ONCE));
        let mut listing = std::pin::pin!(listing);
        let mut lists = PodLists::new();
        // A stop (--run-timeout, a signal, a lost lease) gives up the lists still in flight: the pass ends within
        // its deadline, not a Kubernetes request timeout later. Lists already done are kept; the other rules are
        // skipped.
        loop {
            tokio::select! {
                biased;
                next = listing.next() => match next {
                    Some((q, r)) => {
                        lists.insert(q, r.map_err(|e| printable(&e.to_string()).into_owned()));
                    }
                    None => break,
                },
                reason = settings.stop.stopped() => {
                    for q in queries.clone() {
                        let stopped = format!("stopped by {reason} before its pods were listed; the next run lists them");
                        lists.entry(q).or_insert(Err(stopped));
                    }
                    break;
                }
            }
        }
        Arc::new(lists)
    }
    .shared();
    let progress = |step| {
        if let Some(observer) = &settings.progress {
            observer.report(step);
        }
    };
    let apply_opts = (settings.mode == Mode::Reconcile)
        .then(|| ApplyOptions { stop: settings.stop.clone(), stop_grace: settings.stop_grace });
    // With --expect-plan every load balancer is planned before anything is applied.
    let (apply_opts, held_opts) = match settings.expect_plan {
        Some(_) => (None, apply_opts),
        None => (apply_opts, None),
    };
    let per_lb = async {
        let check = resolve::load_balancers(clb, &rules.rules, &settings.region).await;
        progress(Progress::Reading { load_balancers: check.readable.len() });
        let done: Vec<LbResult> = stream::iter(check.readable)
            .map(|LbRules { lb, rules: idx }| {
                let pods = pods.clone();
                let apply_opts = apply_opts.as_ref();
                async move {
                    let lb_rules: Vec<&Rule> = idx.iter().map(|&i| &rules.rules[i]).collect();
                    let mut actual = resolve::read_lb(clb, lb, &lb_rules).await;
                    let listed = pods.await;
                    let pods = &*listed;
                    let mut elsewhere = PodsByIp::new();
                    let mut plan = plan::plan(&lb_rules, pods, &actual, &elsewhere, &settings.plan);
                    // The planner holds a drain or removal that could take traffic away until it knows the targets'
                    // health (one call for the load balancer) and, for targets the rules no longer select, whether
                    // a pod still serves their IPs: read what it asks for and plan again (twice at most).
                    let mut health_read = false;
                    loop {
                        let mut again = false;
                        if plan.needs_health() && !health_read {
                            health_read = true;
                            match resolve::read_health(clb, lb, &mut actual).await {
                                Ok(()) => again = true,
                                Err(e) => {
                                    tracing::warn!(%lb, "{e}; drains and removals that could take traffic away wait")
                                }
                            }
                        }
                        let lookups = plan.lookups();
                        let asked: Vec<(&str, Vec<std::net::IpAddr>)> =
                            lookups.into_iter().filter(|(ns, _)| !elsewhere.contains_key(*ns)).collect();
                        for (namespace, ips) in asked {
                            let found = cluster.pods_at(namespace, &ips).await;
                            let found = found.map_err(|e| printable(&e.to_string()).into_owned());
                            elsewhere.insert(namespace.to_owned(), found);
                            again = true;
                        }
                        if !again {
                            break;
                        }
                        plan = plan::plan(&lb_rules, pods, &actual, &elsewhere, &settings.plan);
                    }
                    let applied = match apply_opts {
                        Some(opts) if plan.has_changes() => {
                            let ready = plan.rules.iter().filter(|r| r.status == plan::Status::Ready);
                            progress(Progress::Planned { changes: ready.map(|r| r.changes().count()).sum() });
                            Some(apply::apply(lb, &plan, clb, opts).await)
                        }
                        _ => None,
                    };
                    let (applied_n, failed, not_attempted) = applied.as_ref().map_or((0, 0, 0), ApplyReport::counts);
                    progress(Progress::Done { applied: applied_n, failed: failed + not_attempted });
                    LbResult { lb: lb.to_owned(), rules: idx, plan, applied }
                }
            })
            .buffer_unordered(settings.concurrency.max(1))
            .collect()
            .await;
        (check.unreadable, done)
    };
    let (listed, (unreadable, mut groups)) = tokio::join!(pods.clone(), per_lb);
    let pods = &*listed;
    tracing::info!(rules = rules.rules.len(), pod_lists = pods.len(), "read desired and actual state");

    // Rules of unreadable load balancers are planned (as skipped) like the others, then everything is put back
    // in rule order.
    if !unreadable.is_empty() {
        let (idx, actual): (Vec<usize>, Vec<_>) = unreadable.into_iter().map(|(i, reason)| (i, Err(reason))).unzip();
        let lb_rules: Vec<&Rule> = idx.iter().map(|&i| &rules.rules[i]).collect();
        groups.push(LbResult {
            lb: String::new(),
            plan: plan::plan(&lb_rules, pods, &actual, &PodsByIp::new(), &settings.plan),
            rules: idx,
            applied: None,
        });
    }
    let plan_changed = match (settings.expect_plan, held_opts) {
        (Some(expected), Some(opts)) => {
            let found = plan::fingerprint(groups.iter().flat_map(|g| &g.plan.rules));
            if found == expected {
                apply_reviewed(&mut groups, clb, &opts, settings.concurrency).await;
                None
            } else {
                tracing::warn!(%expected, %found, "the plan is not the one reviewed: nothing is applied");
                Some((expected, found))
            }
        }
        _ => None,
    };
    let mut slots: Vec<Option<(RulePlan, Option<Vec<RowStatus>>)>> = (0..rules.rules.len()).map(|_| None).collect();
    for group in groups {
        let mut statuses = group.applied.map(|a| a.rows.into_iter());
        for (i, rule) in group.rules.into_iter().zip(group.plan.rules) {
            slots[i] = Some((rule, statuses.as_mut().and_then(Iterator::next)));
        }
    }
    let mut plan = Plan { rules: Vec::with_capacity(slots.len()), gate: Vec::new() };
    let mut rows = Vec::with_capacity(slots.len());
    for slot in slots {
        let (rule, status) = slot.expect("every rule is in exactly one group");
        rows.push(status.unwrap_or_else(|| vec![RowStatus::NoOp; rule.rows.len()]));
        plan.rules.push(rule);
    }
    let s = plan.summary();
    tracing::info!(
        register = s.register,
        deregister = s.deregister,
        drain = s.drain,
        reweight = s.reweight,
        blocked = s.blocked,
        skipped = s.skipped,
        "planned"
    );
    let applied = if settings.mode == Mode::Reconcile && plan_changed.is_none() && plan.has_changes() {
        let report = ApplyReport { rows };
        let (ok, failed, not_attempted) = report.counts();
        tracing::info!(applied = ok, failed, not_attempted, "applied");
        Some(report)
    } else {
        None
    };
    // The gate follows the CLB changes of every load balancer of this run (make before break).
    let all: Vec<&Rule> = rules.rules.iter().collect();
    let applied_row = |i: usize, j: usize| match applied.as_ref().and_then(|a| a.rows.get(i)).and_then(|r| r.get(j)) {
        Some(RowStatus::Applied) => Applied::Done,
        Some(RowStatus::Failed(f)) => Applied::Failed(printable(&f.to_string()).into_owned()),
        _ => Applied::NotRun,
    };
    plan::plan_gate(&all, pods, &mut plan, applied_row, settings.plan.gate_on);
    if settings.mode == Mode::Reconcile && plan_changed.is_none() && !plan.gate.is_empty() {
        apply::set_conditions(cluster, &plan.gate, settings.concurrency.min(LISTS_AT_ONCE), &settings.stop).await;
    }
    progress(Progress::Reporting);
    match report::write(&plan, applied.as_ref(), settings.style, out) {
        // A reader that went away (`clbsync diff | head`) ends the report quietly, as other CLIs do.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        written => written.context("writing the report to stdout")?,
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let waits = Waits { now: i64::try_from(now).unwrap_or(i64::MAX), after: settings.warn_waiting_after };
    Ok(Outcome { plan, applied, waits, plan_changed })
}

/// Applies the plans of a run whose fingerprint was checked (`--expect-plan`), load balancers in parallel as in a
/// run without it.
async fn apply_reviewed<C: Clb>(groups: &mut [LbResult], clb: &C, opts: &ApplyOptions, concurrency: usize) {
    let pending = groups.iter_mut().filter(|g| !g.lb.is_empty() && g.plan.has_changes());
    stream::iter(pending)
        .for_each_concurrent(concurrency.max(1), |group| async move {
            group.applied = Some(apply::apply(&group.lb, &group.plan, clb, opts).await);
        })
        .await;
}

/// What one load balancer's part of a run planned and applied.
struct LbResult {
    /// Its id; empty for the rules of load balancers that could not be read.
    lb: String,
    /// Indices of its rules in the rules file, aligned with `plan.rules`.
    rules: Vec<usize>,
    plan: Plan,
    /// `None` when nothing was applied (diff, or no changes).
    applied: Option<ApplyReport>,
}

#[cfg(test)]
mod tests;
