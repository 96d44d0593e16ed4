//! The orchestrator: rules → desired → actual → plan → (apply) → report. It does I/O and wires the stages
//! together; every decision is the planner's. The only module that knows the difference between `diff` and
//! `reconcile`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;

use anyhow::Context;
use futures::FutureExt;
use futures::stream::{self, StreamExt};

use crate::actual::{self, LbRules};
use crate::apply::{self, ApplyOptions, ApplyReport, RowStatus};
use crate::clb::Clb;
use crate::desired::{self, Cluster};
use crate::model::{Actual, printable};
use crate::observe::progress::{Observer, Progress};
use crate::outcome::Outcome;
use crate::plan::{self, Fingerprint, Plan, PlanOptions, PodLists, PodsByIp, RowResult, Waits};
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

impl Settings {
    /// A run's settings with every default, as `--help` gives them: the planner's defaults, a plain table,
    /// [`concurrency`] of the default rate limit, [`DEFAULT_REGION`](crate::clb::DEFAULT_REGION), [`DEFAULT_STOP_GRACE`](apply::DEFAULT_STOP_GRACE),
    /// [`WARN_WAITING_AFTER`](plan::WARN_WAITING_AFTER), no progress display and no reviewed plan.
    pub fn new(mode: Mode) -> Settings {
        Settings {
            mode,
            plan: PlanOptions::default(),
            style: Style::default(),
            concurrency: concurrency(crate::clb::client::DEFAULT_RATE_LIMIT),
            region: crate::clb::DEFAULT_REGION.to_owned(),
            stop: Stop::new(),
            stop_grace: apply::DEFAULT_STOP_GRACE,
            warn_waiting_after: plan::WARN_WAITING_AFTER,
            progress: None,
            expect_plan: None,
        }
    }
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
    let pods = read_desired(rules, cluster, settings).shared();
    // With --expect-plan every load balancer is planned before anything is applied.
    let apply_now = settings.mode == Mode::Reconcile && settings.expect_plan.is_none();
    let per_lb = async {
        let check = actual::load_balancers(clb, &rules.rules, &settings.region).await;
        progress(settings, Progress::Reading { load_balancers: check.readable.len() });
        let done: Vec<LbResult> = stream::iter(check.readable)
            .map(|lb| one_load_balancer(lb, pods.clone(), cluster, clb, settings, apply_now))
            .buffer_unordered(settings.concurrency.max(1))
            .collect()
            .await;
        (check.unreadable, done)
    };
    let (listed, (unreadable, mut groups)) = tokio::join!(pods.clone(), per_lb);
    let pods = &*listed;
    tracing::info!(rules = rules.rules.len(), pod_lists = pods.len(), "read desired and actual state");
    // Rules of unreadable load balancers are planned (as skipped) like the others.
    if !unreadable.is_empty() {
        let lb_rules: Vec<&Rule> = rules.rules.iter().filter(|r| unreadable.contains_key(&r.id)).collect();
        let plan = plan::plan(&lb_rules, pods, &unreadable, &PodsByIp::new(), &settings.plan);
        groups.push(LbResult { lb: String::new(), plan, applied: None });
    }
    let plan_changed = match settings.expect_plan {
        Some(expected) if settings.mode == Mode::Reconcile => {
            apply_reviewed(expected, &mut groups, clb, settings).await
        }
        _ => None,
    };
    let (mut plan, applied) = assemble(groups);
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
    let writes = settings.mode == Mode::Reconcile && plan_changed.is_none();
    let applied = (writes && plan.has_changes()).then(|| {
        let (ok, failed, not_attempted) = applied.counts();
        tracing::info!(applied = ok, failed, not_attempted, "applied");
        applied
    });
    gate(rules, pods, &mut plan, applied.as_ref(), cluster, settings, writes).await;
    progress(settings, Progress::Reporting);
    let written = report::write(&plan, applied.as_ref(), settings.style, out);
    report::ending::quiet_on_broken_pipe(written).context("writing the report to stdout")?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let waits = Waits { now: i64::try_from(now).unwrap_or(i64::MAX), after: settings.warn_waiting_after };
    Ok(Outcome { plan, applied, waits, plan_changed })
}

/// Tells the progress display, if any, what the run is doing.
fn progress(settings: &Settings, step: Progress) {
    if let Some(observer) = &settings.progress {
        observer.report(step);
    }
}

/// Stage 2: the pods of every query of the rules, each listed once. A stop (--run-timeout, a signal, a lost lease)
/// gives up the lists still in flight: the pass ends within its deadline, not a Kubernetes request timeout
/// later. Lists already done are kept; the other rules are skipped.
async fn read_desired<K: Cluster>(rules: &Rules, cluster: &K, settings: &Settings) -> Arc<PodLists> {
    let queries = rules.rules.iter().flat_map(Rule::queries).cloned();
    let listing = desired::list_each(cluster, queries.clone(), settings.concurrency.min(LISTS_AT_ONCE));
    let mut listing = std::pin::pin!(listing);
    let mut lists = PodLists::new();
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

/// Stages 3 to 5 for one load balancer: read its targets, plan its rules once their pods are listed (reading
/// what the planner asks for), and apply the plan when `apply_now`.
async fn one_load_balancer<K: Cluster, C: Clb>(
    LbRules { lb, rules }: LbRules<'_>,
    pods: impl std::future::Future<Output = Arc<PodLists>>,
    cluster: &K,
    clb: &C,
    settings: &Settings,
    apply_now: bool,
) -> LbResult {
    let actual = actual::read_lb(clb, lb, &rules).await;
    let listed = pods.await;
    let plan = plan_with_reads(lb, &rules, &listed, actual, cluster, clb, settings).await;
    let applied = if apply_now && plan.has_changes() {
        let ready = plan.rules.iter().filter(|r| r.status == plan::Status::Ready);
        progress(settings, Progress::Planned { changes: ready.map(|r| r.changes().count()).sum() });
        Some(apply::apply(lb, &plan, clb, &apply_options(settings)).await)
    } else {
        None
    };
    let (applied_n, failed, not_attempted) = applied.as_ref().map_or((0, 0, 0), ApplyReport::counts);
    progress(settings, Progress::Done { applied: applied_n, failed: failed + not_attempted });
    LbResult { lb: lb.to_owned(), plan, applied }
}

/// Plans one load balancer's rules. The planner holds a drain or removal that could take traffic away until it
/// knows the targets' health (one call for the load balancer) and, for targets the rules no longer select, whether
/// a pod still serves their IPs: this reads what it asks for and plans again, until it asks for nothing new (the
/// health once, each IP once).
async fn plan_with_reads<K: Cluster, C: Clb>(
    lb: &str,
    rules: &[&Rule],
    pods: &PodLists,
    mut actual: Actual,
    cluster: &K,
    clb: &C,
    settings: &Settings,
) -> Plan {
    let mut elsewhere = PodsByIp::new();
    let mut asked = Asked::new();
    let mut plan = plan::plan(rules, pods, &actual, &elsewhere, &settings.plan);
    let mut health_read = false;
    loop {
        let mut again = false;
        if plan.needs_health() && !health_read {
            health_read = true;
            match actual::read_health(clb, lb, &mut actual).await {
                Ok(()) => again = true,
                Err(e) => tracing::warn!(%lb, "{e}; drains and removals that could take traffic away wait"),
            }
        }
        let lookups: Vec<(String, Vec<IpAddr>)> =
            plan.lookups().into_iter().map(|(ns, ips)| (ns.to_owned(), ips)).collect();
        again |= ask_elsewhere(cluster, lookups, &mut asked, &mut elsewhere).await;
        if !again {
            return plan;
        }
        plan = plan::plan(rules, pods, &actual, &elsewhere, &settings.plan);
    }
}

/// The IPs already asked about, by namespace.
type Asked = BTreeMap<String, BTreeSet<IpAddr>>;

/// Asks the cluster about the IPs of `lookups` not asked before and adds the answers to `elsewhere`: the pods
/// found join those of earlier asks in the namespace, and an error stands for the whole namespace (its removals
/// then wait). An IP the planner finds in no answer is one nothing holds, so every IP it looks up must have been
/// asked. Returns whether it asked anything.
async fn ask_elsewhere<K: Cluster>(
    cluster: &K,
    lookups: Vec<(String, Vec<IpAddr>)>,
    asked: &mut Asked,
    elsewhere: &mut PodsByIp,
) -> bool {
    let mut any = false;
    for (namespace, ips) in lookups {
        let done = asked.entry(namespace.clone()).or_default();
        let new: Vec<IpAddr> = ips.into_iter().filter(|ip| !done.contains(ip)).collect();
        if new.is_empty() {
            continue;
        }
        done.extend(&new);
        any = true;
        let found = cluster.pods_at(&namespace, &new).await;
        let answers = elsewhere.entry(namespace).or_insert_with(|| Ok(Vec::new()));
        match (found, answers) {
            (Err(e), answers) => *answers = Err(printable(&e.to_string()).into_owned()),
            (Ok(more), Ok(pods)) => {
                let more: Vec<_> = more.into_iter().filter(|p| !pods.iter().any(|q| q.name == p.name)).collect();
                pods.extend(more);
            }
            (Ok(_), Err(_)) => {}
        }
    }
    any
}

fn apply_options(settings: &Settings) -> ApplyOptions {
    ApplyOptions { stop: settings.stop.clone(), stop_grace: settings.stop_grace }
}

/// `--expect-plan`: applies the plans of every load balancer, in parallel as in a run without it, if their
/// fingerprint is the one expected; otherwise applies nothing and returns (expected, found).
async fn apply_reviewed<C: Clb>(
    expected: Fingerprint,
    groups: &mut [LbResult],
    clb: &C,
    settings: &Settings,
) -> Option<(Fingerprint, Fingerprint)> {
    let found = plan::fingerprint(groups.iter().flat_map(|g| &g.plan.rules));
    if found != expected {
        tracing::warn!(%expected, %found, "the plan is not the one reviewed: nothing is applied");
        return Some((expected, found));
    }
    let opts = apply_options(settings);
    let pending = groups.iter_mut().filter(|g| !g.lb.is_empty() && g.plan.has_changes());
    stream::iter(pending)
        .for_each_concurrent(settings.concurrency.max(1), |group| async {
            group.applied = Some(apply::apply(&group.lb, &group.plan, clb, &opts).await);
        })
        .await;
    None
}

/// The plans of every load balancer as one, in the order of the rules' ids, and what apply did on all of them.
fn assemble(groups: Vec<LbResult>) -> (Plan, ApplyReport) {
    let mut plan = Plan::default();
    let mut applied = ApplyReport::default();
    for group in groups {
        plan.rules.extend(group.plan.rules);
        applied.extend(group.applied.unwrap_or_default());
    }
    plan.rules.sort_by_key(|r| r.id);
    (plan, applied)
}

/// Plans the readiness gate from the CLB changes of every load balancer of this run (make before break), and
/// writes the conditions when `writes`.
async fn gate<K: Cluster>(
    rules: &Rules,
    pods: &PodLists,
    plan: &mut Plan,
    applied: Option<&ApplyReport>,
    cluster: &K,
    settings: &Settings,
    writes: bool,
) {
    let applied_row = |rule, row: &plan::Row| match applied.map(|a| a.status(rule, row)) {
        Some(RowStatus::Applied) => RowResult::Done,
        Some(RowStatus::Failed(f)) => RowResult::Failed(printable(&f.to_string()).into_owned()),
        _ => RowResult::NotRun,
    };
    plan::plan_gate(rules, pods, plan, applied_row, settings.plan.gate_on);
    if writes && !plan.gate.is_empty() {
        apply::set_conditions(cluster, &plan.gate, settings.concurrency.min(LISTS_AT_ONCE), &settings.stop).await;
    }
}

/// What one load balancer's part of a run planned and applied.
struct LbResult {
    /// Its id; empty for the rules of load balancers that could not be read.
    lb: String,
    plan: Plan,
    /// `None` when nothing was applied (diff, or no changes).
    applied: Option<ApplyReport>,
}

#[cfg(test)]
mod tests;
