//! Watch mode (`reconcile --watch`): a driver that decides **when** and **over which rules** to run the one pass,
//! [`reconcile::run`]; every decision is still the planner's, from state read at that moment (pods from the
//! watch cache, targets from CLB).
//!
//! - A pod or Deployment change schedules the rules it touches after `--debounce`; a relisted watch schedules its
//!   namespace's rules; every rule runs every `--resync-interval` (changes made on the CLB side).
//! - The rules file is polled; a changed file is validated first, and an invalid one is refused (logged, metric
//!   set) while the old rules stay in force.
//! - A rule that waits on CLB ([`RulePlan::waits`]: a drain held until new targets pass their health checks, or a
//!   gated pod waiting for its registration or health checks) runs again after [`schedule::RECHECK`] while its
//!   wait is young, then less and less often ([`Schedule::recheck`]); each recheck counts in
//!   `clbsync_rechecks_total`. A pass over a rule that selects gated pods also takes the other rules that select
//!   them (a pod's condition depends on each), and no other rule.
//! - A rule whose watch is not synced is not run (never planned against a stale or empty cache) until its watch
//!   lists again. A rule that fails (skipped, or a change failed) is retried with a backoff of its own.
//! - After each pass of `reconcile` its Kubernetes Events are recorded, one per (object, reason), each reused by
//!   later passes ([`events::Series`]).
//! - With leader election only the leader runs passes. SIGTERM stops scheduling, lets the pass in flight finish
//!   or give up within `--stop-grace`, releases the lease and returns `Ok`.

pub mod cache;
pub mod lease;
pub mod schedule;
pub mod triggers;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
use cache::{Cache, CachedCluster};
use schedule::Schedule;
use triggers::Watches;

/// How often the rules file is read to see whether it changed.
pub const RULES_POLL: Duration = Duration::from_secs(2);

/// What watch mode adds to a run's [`Settings`].
#[derive(Clone, Debug)]
pub struct Options {
    pub rules_path: PathBuf,
    pub debounce: Duration,
    pub resync_interval: Duration,
    /// `(namespace, name)` of the Lease, when replicas elect a leader.
    pub election: Option<(String, String)>,
    pub metrics_addr: Option<SocketAddr>,
    /// `--max-events` when passes record Kubernetes Events (`reconcile`, `--events` on), else `None`.
    pub events: Option<usize>,
}

/// CLB API answers so far per (action, `ok` or error code), read after each pass for the metrics.
pub type Answers = BTreeMap<(&'static str, String), u64>;

/// Runs until `stop` turns true (SIGTERM), then releases the lease and returns.
pub async fn run<C: Clb>(
    client: kube::Client,
    clb: &C,
    answers: impl Fn() -> Answers,
    mut rules: Rules,
    settings: &Settings,
    opts: &Options,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let cache = Arc::new(Cache::default());
    let api = KubeCluster::from_client(client.clone());
    let (tx, mut changes) = mpsc::unbounded_channel();
    let mut watches = Watches::new(client.clone(), cache.clone(), tx);
    watches.set_namespaces(namespaces(&rules));
    let mut rules_text = std::fs::read(&opts.rules_path).unwrap_or_default();

    if let Some(addr) = opts.metrics_addr {
        let (cache, max_failing) = (cache.clone(), opts.resync_interval);
        let ready = Box::new(move || cache.readiness(Instant::now(), max_failing));
        serve::spawn(addr, serve::Endpoints { metrics: metrics.clone(), ready }).await?;
    }
    let election = match &opts.election {
        Some((ns, name)) => Some(lease::Election::join(client.clone(), ns, name, lease::identity()).await?),
        None => None,
    };
    let mut leader_rx = election.as_ref().map(|e| e.leader.clone());
    let mut leader = leader_rx.as_ref().is_none_or(|rx| *rx.borrow());
    metrics.set_leader(leader);

    let mut schedule = Schedule::new(opts.resync_interval);
    let mut latest: BTreeMap<usize, RulePlan> = BTreeMap::new();
    let mut answers_seen = Answers::new();
    let mut event_series = events::Series::default();
    let instance = events::instance();
    let mut next_resync = tokio::time::Instant::now() + opts.resync_interval;
    let mut next_poll = tokio::time::Instant::now() + RULES_POLL;
    let far = Duration::from_secs(86_400);
    let stop_pass = stop.clone();
    loop {
        let due = schedule.next_due().filter(|_| leader);
        let due_at = due.map_or_else(|| tokio::time::Instant::now() + far, tokio::time::Instant::from_std);
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            Some(change) = changes.recv() => {
                let touched = cache.rules_touched(&rules.rules, &change);
                tracing::debug!(?change, rules = touched.len(), "change");
                schedule.trigger(touched, Instant::now() + opts.debounce);
            }
            Some(is_leader) = leader_changed(&mut leader_rx) => {
                leader = is_leader;
                metrics.set_leader(leader);
                tracing::info!(leader, "leadership changed");
                if leader {
                    schedule.trigger(0..rules.rules.len(), Instant::now());
                }
            }
            _ = tokio::time::sleep_until(next_resync) => {
                next_resync = tokio::time::Instant::now() + opts.resync_interval;
                schedule.trigger(0..rules.rules.len(), Instant::now());
            }
            _ = tokio::time::sleep_until(next_poll) => {
                next_poll = tokio::time::Instant::now() + RULES_POLL;
                let text = std::fs::read(&opts.rules_path).unwrap_or_default();
                if text != rules_text {
                    rules_text = text;
                    if let Some(new) = reload(&opts.rules_path, &metrics) {
                        rules = new;
                        watches.set_namespaces(namespaces(&rules));
                        schedule = Schedule::new(opts.resync_interval);
                        latest.clear();
                        schedule.trigger(0..rules.rules.len(), Instant::now());
                    }
                }
            }
            _ = tokio::time::sleep_until(due_at), if due.is_some() => {
                let (ready, waiting): (Vec<usize>, Vec<usize>) = schedule
                    .take_due(Instant::now())
                    .into_iter()
                    .partition(|&i| cache.is_synced(&rules.rules[i].backend.pods.namespace));
                if !waiting.is_empty() {
                    tracing::info!(rules = waiting.len(), "rules wait for their watch to list again");
                }
                if ready.is_empty() {
                    continue;
                }
                let ready = cache.with_gate_neighbours(&rules.rules, ready);
                let Some((outcome, elapsed)) = pass(&rules, &ready, &CachedCluster { cache: &cache, api: &api }, clb, settings, stop_pass.clone()).await? else {
                    break;
                };
                // Waits nothing in the cluster records are timed from the first pass that held them.
                let mut outcome = outcome;
                let now = outcome.waits.now;
                for (&i, plan) in ready.iter().zip(outcome.plan.rules.iter_mut()) {
                    crate::plan::carry_waits(latest.get(&i), plan, now);
                }
                metrics.record_pass(&outcome, elapsed, crate::observe::metrics::unix_now());
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
                if let Some(max) = opts.events {
                    let subset = Rules { rules: ready.iter().map(|&i| rules.rules[i].clone()).collect() };
                    let (drafts, left_out) = events::drafts(&subset, &outcome, max);
                    if left_out > 0 {
                        tracing::info!(left_out, "--max-events {max} reached: {left_out} Kubernetes Event(s) not recorded");
                    }
                    let posted = event_series.record(&client, drafts, &instance).await;
                    metrics.record_events(posted.recorded, posted.failed);
                }
                let total = answers();
                metrics.record_api_calls(total.iter().map(|((action, code), n)| {
                    (*action, code.as_str(), n - answers_seen.get(&(*action, code.clone())).copied().unwrap_or(0))
                }));
                answers_seen = total;
            }
        }
    }
    tracing::info!("stopping: no new passes");
    drop(watches);
    // The election task releases the lease once every receiver of its channel is gone.
    drop(leader_rx);
    if let Some(election) = election {
        election.release(Duration::from_secs(5)).await;
    }
    Ok(())
}

/// One pass over the rules `idx`; its report goes to stdout when it changed or failed something. `None` when
/// SIGTERM came and the pass did not end within the stop grace.
async fn pass<C: Clb>(
    rules: &Rules,
    idx: &[usize],
    cluster: &CachedCluster<'_>,
    clb: &C,
    settings: &Settings,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Option<(reconcile::Outcome, Duration)>> {
    let subset = Rules { rules: idx.iter().map(|&i| rules.rules[i].clone()).collect() };
    let started = Instant::now();
    let mut report = Vec::new();
    let grace = settings.stop_grace + Duration::from_secs(1);
    let outcome = tokio::select! {
        outcome = reconcile::run(&subset, cluster, clb, settings, &mut report) => outcome?,
        _ = async { let _ = stop.wait_for(|s| *s).await; tokio::time::sleep(grace).await } => {
            tracing::warn!("stop grace over: gave up the pass in flight; the next run re-reads the state and converges");
            return Ok(None);
        }
    };
    let elapsed = started.elapsed();
    if outcome.plan.has_changes() || !outcome.plan.gate.is_empty() || outcome.exit_code(false) != reconcile::exit::OK {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        out.write_all(&report)?;
        out.flush()?;
    }
    Ok(Some((outcome, elapsed)))
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

/// Loads and validates the changed rules file; `None` (old rules stay) when it is invalid.
fn reload(path: &std::path::Path, metrics: &Metrics) -> Option<Rules> {
    match rules::load(path) {
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

fn namespaces(rules: &Rules) -> BTreeSet<&str> {
    rules.rules.iter().map(|r| r.backend.pods.namespace.as_str()).collect()
}

/// The next leadership state; pending forever without an election.
async fn leader_changed(rx: &mut Option<watch::Receiver<bool>>) -> Option<bool> {
    match rx {
        Some(r) => match r.changed().await {
            Ok(()) => Some(*r.borrow_and_update()),
            Err(_) => {
                tracing::error!("the leader election stopped; this replica no longer mutates");
                *rx = None;
                Some(false)
            }
        },
        None => std::future::pending().await,
    }
}

/// SIGTERM or Ctrl-C: sets `stop` (apply starts no new changes) and says so on the returned channel. A second
/// signal exits at once. Used by one-shot runs and watch mode alike.
pub fn on_signals(stop: Arc<AtomicBool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                return;
            }
        };
        // Counted here, not by `stop`: --run-timeout sets `stop` too, and a first signal after it is not a second.
        for second in [false, true] {
            #[cfg(unix)]
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            if second {
                eprintln!("error: second signal, exiting now; the next run re-reads the state and converges");
                std::process::exit(i32::from(reconcile::exit::ERROR));
            }
            stop.store(true, Ordering::SeqCst);
            tracing::warn!("signal received: finishing the changes in flight, starting no new ones");
            let _ = tx.send(true);
        }
    });
    rx
}
