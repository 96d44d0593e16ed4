//! One way to stop writing, whatever the reason: a signal, `--run-timeout`, or (in watch mode) the loss of the
//! leader lease.
//!
//! A [`Stop`] is checked **synchronously before every write** (each CLB call, each pod-status patch) with
//! [`Stop::check`], and awaited with [`Stop::stopped`] by whatever has to give up work in flight. Under leader
//! election a pass gets a `Stop` bound to the lease's [`Fence`]: `check` then also compares the monotonic clock
//! with the fence's write deadline (last renewal sent + the renew deadline), so a process resumed after SIGSTOP
//! refuses its first write before any other task has had a chance to run — no timer has to fire first.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Why writing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// SIGTERM, or SIGINT (Ctrl-C).
    Signal(&'static str),
    /// `--run-timeout` passed.
    RunTimeout(Duration),
    /// This replica may no longer write under leader election: its lease was not renewed by the write deadline,
    /// another replica took it, or it was released. The text says which.
    LeaseLost(String),
    /// stdout was closed (`reconcile --watch | head`): nobody reads the reports any more.
    OutputClosed,
}

impl Reason {
    /// Whether changes already sent may still be waited for (up to `--stop-grace`): yes after a signal or the
    /// run timeout, when nobody else writes; no once the lease is lost, when another replica may be writing.
    pub(crate) fn lets_in_flight_finish(&self) -> bool {
        !matches!(self, Reason::LeaseLost(_))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Signal(name) => f.write_str(name),
            Reason::RunTimeout(after) => write!(f, "run timeout (--run-timeout {}s)", after.as_secs()),
            Reason::LeaseLost(why) => write!(f, "leader lease lost: {why}"),
            Reason::OutputClosed => f.write_str("stdout closed"),
        }
    }
}

/// A reason to stop, set once (the first one stays), with a deadline past which it counts as set.
#[derive(Debug)]
struct Gate {
    state: Mutex<GateState>,
    /// Bumped on every change, so [`Stop::stopped`] wakes up to look again.
    changed: watch::Sender<()>,
}

#[derive(Debug, Default)]
struct GateState {
    reason: Option<Reason>,
    /// Past this instant the gate is closed with `expired` as its reason.
    deadline: Option<(Instant, Reason)>,
}

impl Gate {
    fn new(deadline: Option<(Instant, Reason)>) -> Arc<Gate> {
        Arc::new(Gate { state: Mutex::new(GateState { reason: None, deadline }), changed: watch::channel(()).0 })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The reason, if closed at `now`.
    fn closed(&self, now: Instant) -> Option<Reason> {
        let state = self.lock();
        match (&state.reason, &state.deadline) {
            (Some(reason), _) => Some(reason.clone()),
            (None, Some((at, expired))) if now >= *at => Some(expired.clone()),
            _ => None,
        }
    }

    /// Closes the gate unless it already is; whether this call closed it.
    fn close(&self, reason: Reason) -> bool {
        let closed = {
            let mut state = self.lock();
            let open = state.reason.is_none() && state.deadline.as_ref().is_none_or(|(at, _)| Instant::now() < *at);
            if open {
                state.reason = Some(reason);
            }
            open
        };
        self.changed.send_replace(());
        closed
    }

    fn deadline(&self) -> Option<Instant> {
        self.lock().deadline.as_ref().map(|(at, _)| *at)
    }
}

/// The stop of a run or of one pass; cheap to clone, every clone sees the same state.
#[derive(Clone, Debug)]
pub struct Stop {
    run: Arc<Gate>,
    lease: Option<Arc<Gate>>,
}

impl Default for Stop {
    fn default() -> Self {
        Stop::new()
    }
}

impl Stop {
    /// A stop that nothing has fired yet.
    pub fn new() -> Stop {
        Stop { run: Gate::new(None), lease: None }
    }

    /// Stops the run (a signal, the run timeout). The first reason stays; whether this call was the first.
    pub fn stop(&self, reason: Reason) -> bool {
        self.run.close(reason)
    }

    /// This stop, and also stopped when `fence` closes: what a pass under leader election gets.
    pub fn with_fence(&self, fence: &Fence) -> Stop {
        Stop { run: self.run.clone(), lease: Some(fence.0.clone()) }
    }

    /// `Ok` while writing is allowed, at this instant. Call it right before every write. A lost lease is reported
    /// before a signal or the run timeout: another replica may be writing, so nothing may finish.
    pub fn check(&self) -> Result<(), Reason> {
        let now = Instant::now();
        match self.lease.as_ref().and_then(|l| l.closed(now)).or_else(|| self.run.closed(now)) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// Why the run itself stopped (a signal or the run timeout), if it did; a lost lease does not count.
    pub fn run_reason(&self) -> Option<Reason> {
        self.run.closed(Instant::now())
    }

    /// Resolves once [`Stop::check`] fails, with its reason.
    pub async fn stopped(&self) -> Reason {
        let mut run = self.run.changed.subscribe();
        let mut lease = self.lease.as_ref().map(|l| l.changed.subscribe());
        loop {
            if let Err(reason) = self.check() {
                return reason;
            }
            let deadline = self.lease.as_ref().and_then(|l| l.deadline());
            tokio::select! {
                _ = run.changed() => {}
                () = changed(lease.as_mut()) => {}
                () = sleep_until(deadline) => {}
            }
        }
    }
}

impl Stop {
    /// `--run-timeout`: stops the run `after` from now, like SIGTERM (a task on the runtime).
    pub(crate) fn stop_after(&self, after: Duration) {
        let stop = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            if stop.stop(Reason::RunTimeout(after)) {
                tracing::warn!(
                    "run deadline (--run-timeout {}s) reached: finishing the changes in flight, starting no new ones",
                    after.as_secs()
                );
            }
        });
    }

    /// SIGTERM or Ctrl-C stops the run (no new change starts; the first reason stays, so a signal after
    /// --run-timeout does not change it). Resolves with the name of a second signal, for the caller to exit at
    /// once; never when signals cannot be watched (logged).
    pub async fn on_signals(&self) -> &'static str {
        let mut signals = match Signals::new() {
            Ok(signals) => signals,
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                return std::future::pending().await;
            }
        };
        let name = signals.next().await;
        self.stop(Reason::Signal(name));
        tracing::warn!("signal received ({name}): finishing the changes in flight, starting no new ones");
        signals.next().await
    }
}

/// SIGTERM and Ctrl-C, as they come.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        #[cfg(unix)]
        let signals = Signals { term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())? };
        #[cfg(not(unix))]
        let signals = Signals {};
        Ok(signals)
    }

    /// The name of the next signal.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        let name = tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = tokio::signal::ctrl_c() => "SIGINT",
        };
        #[cfg(not(unix))]
        let name = {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        };
        name
    }
}

/// The next change of a gate; pending forever without one.
async fn changed(rx: Option<&mut watch::Receiver<()>>) {
    match rx {
        Some(rx) => {
            let _ = rx.changed().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The write permission of one leadership term: open until its deadline (moved on by every renewal) or until it
/// is closed (taken over, released). A closed fence never opens again; the next term gets a new one.
#[derive(Clone, Debug)]
pub struct Fence(Arc<Gate>);

impl Fence {
    /// A fence open until `deadline`; past it, writes fail with `expired`.
    pub fn new(deadline: Instant, expired: Reason) -> Fence {
        Fence(Gate::new(Some((deadline, expired))))
    }

    /// Moves the deadline to `deadline` (a renewal), unless the fence is already closed or it has passed: a late
    /// renewal does not reopen a term whose writes were already refused.
    pub fn extend(&self, deadline: Instant) -> bool {
        let extended = {
            let mut state = self.0.lock();
            let now = Instant::now();
            let unclosed = state.reason.is_none();
            match &mut state.deadline {
                Some((at, _)) if unclosed && now < *at => {
                    *at = (*at).max(deadline);
                    true
                }
                _ => false,
            }
        };
        self.0.changed.send_replace(());
        extended
    }

    /// Closes the fence; whether it was still open.
    pub fn close(&self, reason: Reason) -> bool {
        self.0.close(reason)
    }

    /// Whether writes are allowed now.
    pub(crate) fn is_open(&self) -> bool {
        self.0.closed(Instant::now()).is_none()
    }

    /// The instant writes stop unless the fence is extended.
    pub fn deadline(&self) -> Option<Instant> {
        self.0.deadline()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> Reason {
        Reason::LeaseLost("not renewed".into())
    }

    #[test]
    fn a_new_stop_allows_writes_and_the_first_reason_stays() {
        let stop = Stop::new();
        assert_eq!(stop.check(), Ok(()));
        assert!(stop.stop(Reason::RunTimeout(Duration::from_secs(25))));
        assert!(!stop.stop(Reason::Signal("SIGTERM")), "a signal after the run timeout is not the reason");
        assert_eq!(stop.check(), Err(Reason::RunTimeout(Duration::from_secs(25))));
        assert_eq!(stop.clone().run_reason(), Some(Reason::RunTimeout(Duration::from_secs(25))));
    }

    #[test]
    fn reasons_name_what_happened() {
        assert_eq!(Reason::Signal("SIGTERM").to_string(), "SIGTERM");
        assert_eq!(Reason::RunTimeout(Duration::from_secs(25)).to_string(), "run timeout (--run-timeout 25s)");
        assert_eq!(lost().to_string(), "leader lease lost: not renewed");
        assert!(Reason::Signal("SIGINT").lets_in_flight_finish());
        assert!(!lost().lets_in_flight_finish());
    }

    #[test]
    fn a_fence_stops_writes_at_its_deadline_without_anyone_closing_it() {
        let fence = Fence::new(Instant::now() + Duration::from_millis(30), lost());
        let stop = Stop::new().with_fence(&fence);
        assert_eq!(stop.check(), Ok(()));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(stop.check(), Err(lost()), "the clock alone closes it: nothing ran in between");
        assert!(!fence.is_open());
        assert!(!fence.extend(Instant::now() + Duration::from_secs(10)), "a late renewal does not reopen it");
        assert_eq!(stop.check(), Err(lost()));
    }

    #[test]
    fn a_renewal_moves_the_deadline_and_a_closed_fence_stays_closed() {
        let fence = Fence::new(Instant::now() + Duration::from_millis(30), lost());
        let stop = Stop::new().with_fence(&fence);
        assert!(fence.extend(Instant::now() + Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(stop.check(), Ok(()));
        assert!(fence.close(Reason::LeaseLost("taken by b".into())));
        assert!(!fence.close(lost()));
        assert_eq!(stop.check(), Err(Reason::LeaseLost("taken by b".into())));
        assert!(!fence.extend(Instant::now() + Duration::from_secs(20)));
        assert_eq!(stop.run_reason(), None, "the run itself goes on");
    }

    #[test]
    fn the_run_stop_also_stops_a_pass_under_a_fence_and_a_lost_lease_comes_first() {
        let fence = Fence::new(Instant::now() + Duration::from_secs(10), lost());
        let run = Stop::new();
        let pass = run.with_fence(&fence);
        run.stop(Reason::Signal("SIGTERM"));
        assert_eq!(pass.check(), Err(Reason::Signal("SIGTERM")));
        // SIGTERM lets writes in flight finish, a lost lease does not: once both, nothing may finish.
        fence.close(lost());
        assert_eq!(pass.check(), Err(lost()));
        assert!(!pass.check().expect_err("stopped").lets_in_flight_finish());
        assert_eq!(Stop::new().with_fence(&fence).check(), Err(lost()));
    }

    #[tokio::test]
    async fn stopped_resolves_when_stopped_closed_or_past_the_deadline() {
        let run = Stop::new();
        let waiting = tokio::spawn({
            let run = run.clone();
            async move { run.stopped().await }
        });
        tokio::task::yield_now().await;
        run.stop(Reason::Signal("SIGINT"));
        assert_eq!(waiting.await.expect("join"), Reason::Signal("SIGINT"));

        let fence = Fence::new(Instant::now() + Duration::from_millis(50), lost());
        let pass = Stop::new().with_fence(&fence);
        let started = Instant::now();
        assert_eq!(pass.stopped().await, lost());
        assert!(started.elapsed() >= Duration::from_millis(45), "at the deadline, not before");

        let fence = Fence::new(Instant::now() + Duration::from_secs(60), lost());
        let pass = Stop::new().with_fence(&fence);
        let waiting = tokio::spawn(async move { pass.stopped().await });
        tokio::task::yield_now().await;
        fence.extend(Instant::now() + Duration::from_secs(120));
        fence.close(Reason::LeaseLost("released".into()));
        assert_eq!(waiting.await.expect("join"), Reason::LeaseLost("released".into()));
    }
}
