//! Watch mode (`reconcile --watch`): a driver that decides **when** and **over which rules** to run the one pass,
//! [`reconcile::run`]; every decision is still the planner's, from state read at that moment (pods from the
//! watch cache, targets from CLB).
//!
//! - A pod or Deployment change schedules the rules it touches after `--debounce`; a relisted watch schedules its
//!   namespace's rules; every rule runs every `--resync-interval` (changes made on the CLB side).
//! - The rules file is polled off the runtime's threads ([`poll`]); a changed file is validated first, and an
//!   invalid or unreadable one is refused (logged, metric set) while the old rules stay in force.
//! - A rule that waits on CLB ([`RulePlan::waits`]: a drain held until new targets pass their health checks, or a
//!   gated pod waiting for its registration or health checks) runs again after [`schedule::RECHECK`] while its
//!   wait is young, then less and less often ([`Schedule::recheck`]); each recheck counts in
//!   `clbsync_rechecks_total`. A pass over a rule that selects gated pods also takes the other rules that select
//!   them (a pod's condition depends on each), and no other rule.
//! - A rule whose watch is not synced is not run (never planned against a stale or empty cache) until its watch
//!   lists again. A rule that fails (skipped, or a change failed) is retried with a backoff of its own.
//! - After each pass of `reconcile` its Kubernetes Events are recorded, one per (object, reason), each reused by
//!   later passes ([`events::Series`]).
//! - With leader election only the leader runs passes, each under the [`Stop`] of its term: the pass stops
//!   writing the moment the term's fence closes (renew deadline passed, lease taken over) and is given up at
//!   once. A new term lists every watch again before its first pass: no write is based on a cache older than the
//!   lease it holds.
//! - A signal (or the stop given) stops scheduling, lets the pass in flight finish or give up within
//!   `--stop-grace`, releases the lease and returns `Ok`.

pub mod cache;
pub mod lease;
pub mod poll;
pub mod schedule;
pub mod triggers;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::apply::RowStatus;
use crate::clb::Clb;
use crate::desired::kube::KubeCluster;
use crate::observe::events;
use crate::observe::metrics::Metrics;
use crate::plan::{RulePlan, Status};
use crate::reconcile::{self, Settings};
use crate::rules::{self, Rules};
use crate::serve;
use crate::stop::{Reason, Stop};
use cache::{Cache, CachedCluster, Scope};
use lease::{Election, Role};
use schedule::Schedule;

use triggers::Watches;

/// What watch mode adds to a run's [`Settings`].
#[derive(Clone, Debug)]
pub struct Options {
    pub rules_path: PathBuf,
    pub debounce: Duration,
    pub resync_interval: Duration,
    /// The Lease and its durations, when replicas elect a leader.
    pub election: Option<lease::Config>,
    pub metrics_addr: Option<SocketAddr>,
    /// `--max-events` when passes record Kubernetes Events (`reconcile`, `--events` on), else `None`.
    pub events: Option<usize>,
    /// The credentials the CLB client signs with, whose refreshes and expiry the metrics show.
    pub credentials: Option<crate::credentials::Provider>,
}

/// CLB API answers so far per (action, `ok` or error code), read after each pass for the metrics.
pub type Answers = BTreeMap<(&'static str, String), u64>;

/// Runs until `stop` fires (a signal), then releases the lease and returns.
pub async fn run<C: Clb>(
    client: kube::Client,
    clb: &C,
    answers: impl Fn() -> Answers,
    loaded: rules::Loaded,
    settings: &Settings,
    opts: &Options,
    stop: Stop,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let cache = Arc::new(Cache::default());
    let api = KubeCluster::from_client(client.clone());
    let (tx, mut changes) = mpsc::unbounded_channel();
    let mut watches = Watches::new(client.clone(), cache.clone(), tx);
    let mut rules = loaded.rules;
    watches.set_namespaces(&namespaces(&rules));
    let mut reloads = poll::spawn(opts.rules_path.clone(), loaded.text)?;

    let election = opts.election.clone().map(|config| Election::start(client.clone(), config, metrics.clone()));
    if let Some(addr) = opts.metrics_addr {
        let (cache, max_failing) = (cache.clone(), opts.resync_interval);
        let health = election.as_ref().map(Election::health);
        let ready = Box::new(move || {
            let now = Instant::now();
            cache.readiness(now, max_failing)?;
            health.as_ref().map_or(Ok(()), |h| h.check(now))
        });
        serve::spawn(addr, serve::Endpoints { metrics: metrics.clone(), ready }).await?;
    }
    let mut role = election.as_ref().map(Election::role);
    // The stop of the passes of this term (term 0 without an election: the run's own), or `None` as a follower.
    let mut writer: Option<(u64, Stop)> = match &role {
        None => Some((0, stop.clone())),
        Some(_) => None,
    };
    metrics.set_leader(writer.is_some());

    let mut schedule = Schedule::new(opts.resync_interval);
    let mut latest: BTreeMap<usize, RulePlan> = BTreeMap::new();
    let mut observer = PassObserver {
        client: &client,
        metrics: &metrics,
        answers,
        seen: Answers::new(),
        series: events::Series::default(),
        instance: events::instance(),
        events: opts.events,
        credentials: opts.credentials.clone(),
    };
    let mut next_resync = tokio::time::Instant::now() + opts.resync_interval;
    let far = Duration::from_secs(86_400);
    loop {
        let due = schedule.next_due().filter(|_| writer.is_some());
        let due_at = due.map_or_else(|| tokio::time::Instant::now() + far, tokio::time::Instant::from_std);
        tokio::select! {
            _ = stop.stopped() => break,
            Some(change) = changes.recv() => {
                watches.relist_pods_if_asked(change.namespace());
                let touched = cache.rules_touched(&rules.rules, &change);
                tracing::debug!(?change, rules = touched.len(), "change");
                schedule.trigger(touched, Instant::now() + opts.debounce);
            }
            Some(now) = role_changed(&mut role) => match now {
                Role::Leader { term, fence } if writer.as_ref().is_none_or(|(t, _)| *t != term) => {
                    // The cache may be older than this lease (a SIGSTOP, a partition): list again first; the rules
                    // wait until their namespace has listed.
                    watches.relist();
                    writer = Some((term, stop.with_fence(&fence)));
                    schedule.trigger(0..rules.rules.len(), Instant::now());
                    tracing::info!(term, "leading: the watches list again before the first pass of this term");
                }
                Role::Leader { .. } => {}
                Role::Follower => writer = None,
            },
            _ = tokio::time::sleep_until(next_resync) => {
                next_resync = tokio::time::Instant::now() + opts.resync_interval;
                // A label key that grew with no change sent for it (a list that failed after it) is caught here.
                for namespace in namespaces(&rules).keys() {
                    watches.relist_pods_if_asked(namespace);
                }
                schedule.trigger(0..rules.rules.len(), Instant::now());
            }
            reloaded = reloads.recv(), if !reloads.is_closed() => {
                let Some(reloaded) = reloaded else {
                    tracing::error!("the thread reading the rules file stopped: changes to it are no longer seen; restart clbsync");
                    metrics.set_rules_file_valid(false);
                    continue;
                };
                if let Some(new) = reload(&opts.rules_path, reloaded, &metrics) {
                    rules = new;
                    watches.set_namespaces(&namespaces(&rules));
                    schedule = Schedule::new(opts.resync_interval);
                    latest.clear();
                    schedule.trigger(0..rules.rules.len(), Instant::now());
                }
            }
            _ = tokio::time::sleep_until(due_at), if due.is_some() => {
                let Some((_, pass_stop)) = writer.clone() else { continue };
                // Checked before anything is read: after a SIGSTOP this sees the write deadline gone before the
                // election task has run.
                if let Err(reason) = pass_stop.check() {
                    tracing::info!("no pass: {reason}");
                    writer = None;
                    continue;
                }
                let (ready, waiting): (Vec<usize>, Vec<usize>) = schedule
                    .take_due(Instant::now())
                    .into_iter()
                    .partition(|&i| cache.is_synced(&rules.rules[i]));
                if !waiting.is_empty() {
                    tracing::info!(rules = waiting.len(), "rules wait for their watch to list again");
                }
                if ready.is_empty() {
                    continue;
                }
                let ready = cache.with_gate_neighbours(&rules.rules, ready);
                let settings = Settings { stop: pass_stop.clone(), ..settings.clone() };
                let cluster = CachedCluster { cache: &cache, api: &api };
                let closed;
                let (outcome, elapsed) = match pass(&rules, &ready, &cluster, clb, &settings).await? {
                    Pass::Done { outcome, elapsed, stdout_closed } => {
                        closed = stdout_closed;
                        (outcome, elapsed)
                    }
                    Pass::GaveUp(reason) if reason.lets_in_flight_finish() => break,
                    Pass::GaveUp(_) => {
                        writer = None;
                        continue;
                    }
                };
                // Waits nothing in the cluster records are timed from the first pass that held them.
                let mut outcome = outcome;
                let now = outcome.waits.now;
                for (&i, plan) in ready.iter().zip(outcome.plan.rules.iter_mut()) {
                    crate::plan::carry_waits(latest.get(&i), plan, now);
                }
                let now = Instant::now();
                for (k, (&i, plan)) in ready.iter().zip(&outcome.plan.rules).enumerate() {
                    if troubled(plan, &outcome, k) {
                        schedule.failed(i, now);
                    } else {
                        schedule.succeeded(i);
                        if plan.waits() {
                            schedule.recheck(i, now);
                            metrics.record_recheck(if plan.gate_waits { "gate" } else { "wait" });
                        } else {
                            schedule.settled(i);
                        }
                    }
                    latest.insert(i, plan.clone());
                }
                metrics.set_rules(latest.values(), outcome.waits);
                observer.record(&rules, &ready, &outcome, elapsed, &pass_stop).await;
                // After the record: the pass's Events are what is left of its report.
                if closed && stop.stop(Reason::OutputClosed) {
                    tracing::warn!("stdout closed: starting no new passes");
                }
            }
        }
    }
    tracing::info!("stopping: no new passes");
    drop(watches);
    if let Some(election) = election {
        let wait =
            opts.election.as_ref().map_or(Duration::ZERO, |c| c.timing.retry_period * 2) + Duration::from_secs(1);
        election.release(wait).await;
    }
    Ok(())
}

/// What the observers of a pass need between passes: metrics, API-call counts, Kubernetes Events.
struct PassObserver<'a, A: Fn() -> Answers> {
    client: &'a kube::Client,
    metrics: &'a Metrics,
    answers: A,
    /// API answers counted so far.
    seen: Answers,
    series: events::Series,
    instance: String,
    /// `--max-events` when passes record Events.
    events: Option<usize>,
    credentials: Option<crate::credentials::Provider>,
}

impl<A: Fn() -> Answers> PassObserver<'_, A> {
    /// Records a pass over the rules `ready`: metrics, and its Events unless the pass may no longer write.
    async fn record(
        &mut self,
        rules: &Rules,
        ready: &[usize],
        outcome: &reconcile::Outcome,
        elapsed: Duration,
        stop: &Stop,
    ) {
        self.metrics.record_pass(outcome, elapsed, crate::observe::metrics::unix_now());
        if let Some(max) = self.events
            && stop.check().is_ok()
        {
            let subset = Rules { rules: ready.iter().map(|&i| rules.rules[i].clone()).collect() };
            let (drafts, left_out) = events::drafts(&subset, outcome, max);
            if left_out > 0 {
                tracing::info!(left_out, "--max-events {max} reached: {left_out} Kubernetes Event(s) not recorded");
            }
            let posted = self.series.record(self.client, drafts, &self.instance).await;
            self.metrics.record_events(posted.recorded, posted.failed);
        }
        let total = (self.answers)();
        self.metrics.record_api_calls(total.iter().map(|((action, code), n)| {
            (*action, code.as_str(), n - self.seen.get(&(*action, code.clone())).copied().unwrap_or(0))
        }));
        self.seen = total;
        if let Some(credentials) = &self.credentials {
            self.metrics.record_credentials(&credentials.stats());
        }
    }
}

/// How a pass ended.
enum Pass {
    /// The pass ended; `stdout_closed`: its report met a closed stdout, so watch mode stops once it is recorded.
    Done { outcome: reconcile::Outcome, elapsed: Duration, stdout_closed: bool },
    /// Given up: the lease was lost (at once), or the run stopped and the pass did not end within the stop grace.
    GaveUp(Reason),
}

/// One pass over the rules `idx`; its report goes to stdout when it changed or failed something.
async fn pass<C: Clb>(
    rules: &Rules,
    idx: &[usize],
    cluster: &CachedCluster<'_>,
    clb: &C,
    settings: &Settings,
) -> anyhow::Result<Pass> {
    let subset = Rules { rules: idx.iter().map(|&i| rules.rules[i].clone()).collect() };
    let started = Instant::now();
    let mut report = Vec::new();
    let grace = settings.stop_grace + Duration::from_secs(1);
    let outcome = tokio::select! {
        outcome = reconcile::run(&subset, cluster, clb, settings, &mut report) => outcome?,
        reason = given_up(&settings.stop, grace) => {
            if reason.lets_in_flight_finish() {
                tracing::warn!("stop grace over: gave up the pass in flight; the next run re-reads the state and converges");
            } else {
                tracing::warn!("gave up the pass in flight ({reason}); the next leader re-reads the state and converges");
            }
            return Ok(Pass::GaveUp(reason));
        }
    };
    let elapsed = started.elapsed();
    let mut stdout_closed = false;
    if outcome.plan.has_changes() || !outcome.plan.gate.is_empty() || outcome.exit_code(false) != reconcile::exit::OK {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        match out.write_all(&report).and_then(|()| out.flush()) {
            // The pass's changes are made; the caller stops as after SIGTERM rather than run on unseen.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => stdout_closed = true,
            written => written?,
        }
    }
    Ok(Pass::Done { outcome, elapsed, stdout_closed })
}

/// Resolves when a pass in flight must be given up: at once when the lease is lost, `grace` after a signal.
async fn given_up(stop: &Stop, grace: Duration) -> Reason {
    let reason = stop.stopped().await;
    if reason.lets_in_flight_finish() {
        tokio::time::sleep(grace).await;
    }
    reason
}

/// Whether the `k`-th rule of a pass failed (skipped, or a change failed or was not attempted): it is retried.
fn troubled(plan: &RulePlan, outcome: &reconcile::Outcome, k: usize) -> bool {
    let failed = outcome
        .applied
        .as_ref()
        .and_then(|a| a.rows.get(k))
        .is_some_and(|rows| rows.iter().any(|r| matches!(r, RowStatus::Failed(_) | RowStatus::NotAttempted(_))));
    failed || matches!(plan.status, Status::Skipped { .. })
}

/// The changed rules file, loaded and validated; `None` (old rules stay) when it is invalid.
fn reload(path: &std::path::Path, reloaded: Result<Rules, rules::Error>, metrics: &Metrics) -> Option<Rules> {
    match reloaded {
        Ok(rules) => {
            tracing::info!(file = %path.display(), rules = rules.rules.len(), "rules file changed: reloaded");
            metrics.set_rules_file_valid(true);
            Some(rules)
        }
        Err(e) => {
            tracing::error!(file = %path.display(), "rules file changed but is invalid, the old rules stay in force: {e}");
            metrics.set_rules_file_valid(false);
            None
        }
    }
}

/// The namespaces the rules name, each with the label keys its rules' selectors use and the workload kinds they
/// name.
fn namespaces(rules: &Rules) -> BTreeMap<&str, Scope> {
    let mut namespaces: BTreeMap<&str, Scope> = BTreeMap::new();
    for pods in rules.rules.iter().flat_map(rules::Rule::queries) {
        let scope = namespaces.entry(pods.namespace.as_str()).or_default();
        match &pods.source {
            rules::PodSource::Selector(labels) => scope.keys.extend(labels.keys().cloned()),
            rules::PodSource::Workload(w) => {
                scope.workloads.insert(w.clone());
            }
            rules::PodSource::Service(service) => {
                scope.services.insert(service.name.clone());
            }
        }
    }
    namespaces
}

/// The next role in the election; pending forever without one.
async fn role_changed(rx: &mut Option<watch::Receiver<Role>>) -> Option<Role> {
    match rx {
        Some(r) => match r.changed().await {
            Ok(()) => Some(r.borrow_and_update().clone()),
            Err(_) => {
                tracing::error!("the leader election stopped; this replica no longer writes");
                *rx = None;
                Some(Role::Follower)
            }
        },
        None => std::future::pending().await,
    }
}
