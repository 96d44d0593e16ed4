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

use crate::clb::Clb;
use crate::desired::kube::KubeCluster;
use crate::observe::metrics::Metrics;
use crate::observe::pass::{Answers, EventSink, Observers};
use crate::outcome::{Outcome, exit};
use crate::plan::RulePlan;
use crate::reconcile::{self, Settings};
use crate::rules::{self, RuleId, Rules};
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
    pub credentials: Option<crate::clb::credentials::Provider>,
}

/// How far off the loop's timer is set when no rule is due.
const NOTHING_DUE: Duration = Duration::from_secs(86_400);

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
    let (metrics, cache) = (Arc::new(Metrics::new()), Arc::new(Cache::default()));
    let api = KubeCluster::from_client(client.clone());
    let (tx, mut changes) = mpsc::unbounded_channel();
    let mut watches = Watches::new(client.clone(), cache.clone(), tx);
    watches.set_namespaces(&namespaces(&loaded.rules));
    let mut reloads = poll::spawn(opts.rules_path.clone(), loaded.text)?;
    let election = opts.election.clone().map(|config| Election::start(client.clone(), config, metrics.clone()));
    if let Some(addr) = opts.metrics_addr {
        serve_endpoints(addr, &cache, election.as_ref(), &metrics, opts.resync_interval).await?;
    }
    let mut role = election.as_ref().map(Election::role);
    // Without an election the passes write under the run's own stop, as term 0; with one, once elected.
    let writer = role.is_none().then(|| (0, stop.clone()));
    metrics.set_leader(writer.is_some());
    let mut state =
        State { rules: loaded.rules, schedule: Schedule::new(opts.resync_interval), latest: BTreeMap::new(), writer };
    let sink = opts.events.map(|max| EventSink { client: &client, max, after_a_stop: false });
    let mut observers = Observers::new(Some(&metrics), sink, answers, opts.credentials.clone());
    let cluster = CachedCluster { cache: &cache, api: &api };
    let mut next_resync = tokio::time::Instant::now() + opts.resync_interval;
    loop {
        let due = state.schedule.next_due().filter(|_| state.writer.is_some());
        let due_at = due.map_or_else(|| tokio::time::Instant::now() + NOTHING_DUE, tokio::time::Instant::from_std);
        tokio::select! {
            _ = stop.stopped() => break,
            Some(change) = changes.recv() => {
                watches.relist_pods_if_asked(change.namespace());
                let touched = cache.rules_touched(&state.rules.rules, &change);
                tracing::debug!(?change, rules = touched.len(), "change");
                state.schedule.trigger(touched, Instant::now() + opts.debounce);
            }
            Some(now) = role_changed(&mut role) => state.role(now, &stop, &mut watches),
            _ = tokio::time::sleep_until(next_resync) => {
                next_resync = tokio::time::Instant::now() + opts.resync_interval;
                // A label key that grew with no change sent for it (a list that failed after it) is caught here.
                for namespace in namespaces(&state.rules).keys() {
                    watches.relist_pods_if_asked(namespace);
                }
                state.trigger_all();
            }
            reloaded = reloads.recv(), if !reloads.is_closed() => {
                let Some(reloaded) = reloaded else {
                    tracing::error!("the thread reading the rules file stopped: changes to it are no longer seen; restart clbsync");
                    metrics.set_rules_file_valid(false);
                    continue;
                };
                if let Some(new) = reload(&opts.rules_path, reloaded, &metrics) {
                    watches.set_namespaces(&namespaces(&new));
                    state.replace_rules(new, opts.resync_interval);
                }
            }
            _ = tokio::time::sleep_until(due_at), if due.is_some() => {
                match state.due_pass(&cluster, clb, settings, &metrics, &mut observers).await? {
                    Flow::Stop => break,
                    Flow::OutputClosed if stop.stop(Reason::OutputClosed) => {
                        tracing::warn!("stdout closed: starting no new passes");
                    }
                    Flow::OutputClosed | Flow::Go => {}
                }
            }
        }
    }
    tracing::info!("stopping: no new passes");
    drop(watches);
    if let Some(election) = election {
        // Two retry periods: a renewal in flight ends first.
        let retry = opts.election.as_ref().map_or(Duration::ZERO, |c| c.timing.retry_period);
        election.release(retry * 2 + Duration::from_secs(1)).await;
    }
    Ok(())
}

/// Serves `/healthz`, `/readyz` (the watches have listed, and the lease is renewed in time) and `/metrics`.
async fn serve_endpoints(
    addr: SocketAddr,
    cache: &Arc<Cache>,
    election: Option<&Election>,
    metrics: &Arc<Metrics>,
    max_failing: Duration,
) -> anyhow::Result<()> {
    let cache = cache.clone();
    let health = election.map(Election::health);
    let ready = Box::new(move || {
        let now = Instant::now();
        cache.readiness(now, max_failing)?;
        health.as_ref().map_or(Ok(()), |h| h.check(now))
    });
    serve::spawn(addr, serve::Endpoints { metrics: metrics.clone(), ready }).await?;
    Ok(())
}

/// The rules due now whose watches have listed, with the rules that share gated pods with them.
fn due_rules(schedule: &mut Schedule, rules: &Rules, cache: &Cache) -> Vec<RuleId> {
    let (ready, waiting): (Vec<RuleId>, Vec<RuleId>) = schedule
        .take_due(Instant::now())
        .into_iter()
        .partition(|&id| rules.get(id).is_some_and(|rule| cache.is_synced(rule)));
    if !waiting.is_empty() {
        tracing::info!(rules = waiting.len(), "rules wait for their watch to list again");
    }
    if ready.is_empty() {
        return ready;
    }
    cache.with_gate_neighbours(&rules.rules, ready)
}

/// What the loop of watch mode keeps: the rules in force, when each runs next, each one's latest plan, and
/// whether this replica writes.
struct State {
    rules: Rules,
    schedule: Schedule,
    latest: BTreeMap<RuleId, RulePlan>,
    /// The stop of the passes of this term (term 0 without an election), or `None` as a follower.
    writer: Option<(u64, Stop)>,
}

/// What the loop does after a due pass.
enum Flow {
    Go,
    /// The pass's report met a closed stdout: stop once it is recorded, as after SIGTERM.
    OutputClosed,
    /// The run stopped and the pass in flight was given up.
    Stop,
}

impl State {
    fn trigger_all(&mut self) {
        self.schedule.trigger(self.rules.rules.iter().map(|r| r.id), Instant::now());
    }

    /// A reloaded rules file: its rules' ids are new, so their schedule and plans start again, now.
    fn replace_rules(&mut self, rules: Rules, resync_interval: Duration) {
        self.rules = rules;
        self.schedule = Schedule::new(resync_interval);
        self.latest.clear();
        self.trigger_all();
    }

    /// A new role in the election: a new term lists every watch again before its first pass.
    fn role(&mut self, now: Role, stop: &Stop, watches: &mut Watches) {
        match now {
            Role::Leader { term, fence } if self.writer.as_ref().is_none_or(|(t, _)| *t != term) => {
                // The cache may be older than this lease (a SIGSTOP, a partition): list again first; the rules
                // wait until their namespace has listed.
                watches.relist();
                self.writer = Some((term, stop.with_fence(&fence)));
                self.trigger_all();
                tracing::info!(term, "leading: the watches list again before the first pass of this term");
            }
            Role::Leader { .. } => {}
            Role::Follower => self.writer = None,
        }
    }

    /// Runs the rules that are due, if this replica may still write, and records the pass.
    async fn due_pass<C: Clb, A: Fn() -> Answers>(
        &mut self,
        cluster: &CachedCluster<'_>,
        clb: &C,
        settings: &Settings,
        metrics: &Metrics,
        observers: &mut Observers<'_, A>,
    ) -> anyhow::Result<Flow> {
        let Some((_, pass_stop)) = self.writer.clone() else { return Ok(Flow::Go) };
        // Checked before anything is read: after a SIGSTOP this sees the write deadline gone before the election
        // task has run.
        if let Err(reason) = pass_stop.check() {
            tracing::info!("no pass: {reason}");
            self.writer = None;
            return Ok(Flow::Go);
        }
        let ready = due_rules(&mut self.schedule, &self.rules, cluster.cache);
        if ready.is_empty() {
            return Ok(Flow::Go);
        }
        let settings = Settings { stop: pass_stop.clone(), ..settings.clone() };
        let (mut outcome, elapsed, closed) = match pass(&self.rules, &ready, cluster, clb, &settings).await? {
            Pass::Done { outcome, elapsed, stdout_closed } => (outcome, elapsed, stdout_closed),
            Pass::GaveUp(reason) if reason.lets_in_flight_finish() => return Ok(Flow::Stop),
            Pass::GaveUp(_) => {
                self.writer = None;
                return Ok(Flow::Go);
            }
        };
        self.reschedule(&mut outcome, metrics);
        observers.record(&self.rules, &outcome, elapsed, &pass_stop).await;
        // After the record: the pass's Events are what is left of its report.
        Ok(if closed { Flow::OutputClosed } else { Flow::Go })
    }

    /// After a pass: times the waits nothing in the cluster records from the first pass that held them, schedules
    /// each rule again (soon when it failed or waits, at the resync otherwise), and keeps its plan for the metrics.
    fn reschedule(&mut self, outcome: &mut Outcome, metrics: &Metrics) {
        let now = outcome.waits.now;
        for plan in &mut outcome.plan.rules {
            crate::plan::carry_waits(self.latest.get(&plan.id), plan, now);
        }
        let now = Instant::now();
        for rule in outcome.rules() {
            let (id, plan) = (rule.plan.id, rule.plan);
            if rule.troubled() {
                self.schedule.failed(id, now);
            } else {
                self.schedule.succeeded(id);
                if plan.waits() {
                    self.schedule.recheck(id, now);
                    metrics.record_recheck(if plan.gate_waits { "gate" } else { "wait" });
                } else {
                    self.schedule.settled(id);
                }
            }
            self.latest.insert(id, plan.clone());
        }
        metrics.set_rules(self.latest.values(), outcome.waits);
    }
}

/// How a pass ended.
enum Pass {
    /// The pass ended; `stdout_closed`: its report met a closed stdout, so watch mode stops once it is recorded.
    Done { outcome: Outcome, elapsed: Duration, stdout_closed: bool },
    /// Given up: the lease was lost (at once), or the run stopped and the pass did not end within the stop grace.
    GaveUp(Reason),
}

/// One pass over the rules `ids`; its report goes to stdout when it changed or failed something.
async fn pass<C: Clb>(
    rules: &Rules,
    ids: &[RuleId],
    cluster: &CachedCluster<'_>,
    clb: &C,
    settings: &Settings,
) -> anyhow::Result<Pass> {
    let subset = rules.subset(ids.iter().copied());
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
    if outcome.plan.has_changes() || !outcome.plan.gate.is_empty() || outcome.exit_code(false) != exit::OK {
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
