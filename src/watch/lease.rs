//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's `leaderelection` semantics ([`decide`] is
//! the decision, pure): get → create when missing (deleted later too) → replace at the resourceVersion read, so
//! of two replicas writing at once one gets 409 Conflict and loses. Every request times out after the retry
//! period, so a renewal that hangs on a dead connection is abandoned in time to try again on a new one.
//!
//! A term (this replica leading) comes with a [`Fence`]: passes check it before every write. It closes by itself at
//! the write deadline (the last successful renewal's send time + the renew deadline) unless a renewal moves it
//! on, and is closed when another replica holds the Lease or this one releases it. A closed fence never reopens:
//! writing again takes a new term, whose passes wait for the watches to list again.
//!
//! The role needs `get`, `create` and `update` on the Lease in its namespace.

pub mod decide;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::observe::metrics::Metrics;
use crate::stop::{Fence, Reason, Stop};
use decide::{Decision, Now, Observed, Record, Seen, Timing, Why, decide, observe};

/// Which Lease, as whom, with which durations.
#[derive(Clone, Debug)]
pub struct Config {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub timing: Timing,
}

/// What this replica is in the election now.
#[derive(Clone, Debug)]
pub enum Role {
    Follower,
    /// Holds the lease: may write while `fence` is open. `term` numbers this process's terms.
    Leader {
        term: u64,
        fence: Fence,
    },
}

/// What `/readyz` asks of the election: whether some replica (this one included) has been seen holding the Lease
/// within the last lease duration.
#[derive(Clone, Debug)]
pub struct Health {
    last_seen: Arc<Mutex<Instant>>,
    lease_duration: Duration,
    lease: String,
}

impl Health {
    fn saw_leader(&self, at: Instant) {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// `Err` (why) when no replica has been seen holding the Lease for longer than the lease duration.
    pub fn check(&self, now: Instant) -> Result<(), String> {
        let since = now.saturating_duration_since(*self.last_seen.lock().unwrap_or_else(|p| p.into_inner()));
        if since <= self.lease_duration {
            return Ok(());
        }
        Err(format!(
            "no replica has held the Lease {} for {}s, longer than the lease duration ({}s): see this replica's log, and check that the API server is reachable and the role may get, create and update the Lease",
            self.lease,
            since.as_secs(),
            self.lease_duration.as_secs()
        ))
    }
}

/// A running election. Dropping it without [`Election::release`] stops it and releases the lease too, unwaited.
pub struct Election {
    role: watch::Receiver<Role>,
    health: Health,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
    lease: String,
}

impl Election {
    /// Joins the election; `metrics` get `clbsync_leader`.
    pub fn start(client: kube::Client, config: Config, metrics: Arc<Metrics>) -> Election {
        let lease = format!("{}/{}", config.namespace, config.name);
        let health = Health {
            last_seen: Arc::new(Mutex::new(Instant::now())),
            lease_duration: config.timing.lease_duration,
            lease: lease.clone(),
        };
        let (role_tx, role) = watch::channel(Role::Follower);
        let (shutdown, shutdown_rx) = oneshot::channel();
        tracing::info!(%lease, identity = %config.identity, "joined the leader election");
        let elector = Elector {
            api: Api::namespaced(client, &config.namespace),
            lease: lease.clone(),
            config,
            metrics,
            role: role_tx,
            health: health.clone(),
            last: None,
            missing_since: None,
            term: None,
            terms: 0,
            warned: None,
            failing: false,
            following: None,
            leaderless: false,
        };
        let task = tokio::spawn(elector.run(shutdown_rx));
        Election { role, health, shutdown, task, lease }
    }

    /// This replica's role, as it changes.
    pub fn role(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    pub fn health(&self) -> Health {
        self.health.clone()
    }

    /// Stops the election: the term ends (no more writes), and the Lease, if it names this replica, is released
    /// so a follower takes over at once. Waits at most `wait`.
    pub async fn release(self, wait: Duration) {
        let Election { shutdown, task, lease, .. } = self;
        let _ = shutdown.send(());
        if tokio::time::timeout(wait, task).await.is_err() {
            tracing::warn!(%lease, "releasing the lease took longer than {}s; a follower takes over when it expires", wait.as_secs());
        }
    }
}

/// Why a term ends on shutdown (no warning for that one).
const RELEASED: &str = "released on shutdown";

/// This replica's identity in the election: the pod name (`HOSTNAME`) and a random suffix, so a restarted
/// pod with the same name is a new candidate.
pub fn identity() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "clbsync".to_owned());
    let suffix: String = std::iter::repeat_with(fastrand::alphanumeric).take(6).collect();
    format!("{host}-{}", suffix.to_lowercase())
}

/// The election task's state.
struct Elector {
    api: Api<Lease>,
    /// `namespace/name`, for messages.
    lease: String,
    config: Config,
    metrics: Arc<Metrics>,
    role: watch::Sender<Role>,
    health: Health,
    /// The last version of the Lease read or written, and when it was first seen.
    last: Option<Observed>,
    /// Since when the Lease has been missing (`None` while it exists).
    missing_since: Option<Instant>,
    term: Option<(u64, Fence)>,
    terms: u64,
    /// The version of the implausible record last warned about.
    warned: Option<String>,
    /// Whether the last attempt failed (one warning per streak of failures).
    failing: bool,
    /// The holder last followed (one line per change of leader).
    following: Option<String>,
    /// Whether `/readyz` has been said to fail (one line per streak).
    leaderless: bool,
}

impl Elector {
    async fn run(mut self, mut shutdown: oneshot::Receiver<()>) {
        loop {
            let started = Instant::now();
            tokio::select! {
                () = self.attempt() => {}
                _ = &mut shutdown => break,
            }
            self.check_leaderless(Instant::now());
            tokio::select! {
                () = tokio::time::sleep_until((started + self.config.timing.retry_period).into()) => {}
                _ = &mut shutdown => break,
            }
        }
        self.release().await;
    }

    fn leading(&self) -> bool {
        self.term.as_ref().is_some_and(|(_, fence)| fence.is_open())
    }

    /// The request timeout: one retry period.
    fn timeout(&self) -> Duration {
        self.config.timing.retry_period
    }

    /// One round of client-go's `tryAcquireOrRenew`: read, decide, write.
    async fn attempt(&mut self) {
        let got = tokio::time::timeout(self.timeout(), self.api.get_opt(&self.config.name)).await;
        let read_at = Instant::now();
        let lease = match got {
            Ok(Ok(lease)) => lease,
            Ok(Err(e)) => return self.failed(&format!("reading the Lease: {}", describe(&e))),
            Err(_) => return self.failed(&format!("reading the Lease: no answer within {:?}", self.timeout())),
        };
        let now = Now { mono: read_at, wall: SystemTime::now() };
        let (timing, me) = (&self.config.timing, self.config.identity.as_str());
        let decision = match &lease {
            Some(l) => {
                self.missing_since = None;
                let version = l.metadata.resource_version.clone().unwrap_or_default();
                let seen = observe(self.last.as_ref(), &version, &Record::from_spec(l.spec.as_ref()), read_at);
                let decision = decide(timing, me, Seen::Lease(&seen), now);
                self.last = Some(seen);
                decision
            }
            None => {
                let since = *self.missing_since.get_or_insert(read_at);
                decide(timing, me, Seen::Missing { last: self.last.as_ref(), since, leading: self.leading() }, now)
            }
        };
        match decision {
            Decision::Follow { holder, expires } => self.follow(holder, expires, lease.is_none(), read_at),
            Decision::Create(record) => self.write(None, record, Why::Created).await,
            Decision::Update { record, why } => self.write(lease, record, why).await,
        }
    }

    /// Another replica holds a valid lease (or a deleted one is being waited out): write nothing.
    fn follow(&mut self, holder: String, expires: Instant, missing: bool, now: Instant) {
        self.recovered();
        let wait = expires.saturating_duration_since(now).as_secs();
        if missing {
            if self.following.as_deref() != Some("") {
                tracing::warn!(lease = %self.lease, "the Lease is missing (deleted?): recreating it in {wait}s, a lease duration after it was found missing, unless its leader recreates it first");
                self.following = Some(String::new());
            }
            return;
        }
        self.health.saw_leader(now);
        if let Some((_, fence)) = &self.term {
            fence.close(Reason::LeaseLost(format!("{holder} holds the Lease now")));
        }
        if self.following.as_deref() != Some(holder.as_str()) {
            tracing::info!(lease = %self.lease, %holder, "following the leader");
            self.following = Some(holder);
        }
    }

    /// Creates (`read` is `None`) or replaces the Lease at the version read.
    async fn write(&mut self, read: Option<Lease>, record: Record, why: Why) {
        if let Why::Implausible { holder, renew_time } = &why {
            let version = read.as_ref().and_then(|l| l.metadata.resource_version.clone());
            if self.warned != version {
                let ahead = renew_time.duration_since(SystemTime::now()).unwrap_or_default().as_secs();
                tracing::warn!(
                    lease = %self.lease,
                    %holder,
                    "the Lease names {holder} with a renewTime {ahead}s ahead of this replica's clock, more than the lease duration plus {}s: no replica renews like that; taking it over (check who wrote it, and that node's clock)",
                    decide::CLOCK_SKEW_ALLOWANCE.as_secs()
                );
                self.warned = version;
            }
        }
        let spec = Some(record.to_spec());
        let pp = PostParams::default();
        let sent = Instant::now();
        let (what, result) = match read {
            Some(mut lease) => {
                lease.spec = spec;
                (
                    "updating",
                    tokio::time::timeout(self.timeout(), self.api.replace(&self.config.name, &pp, &lease)).await,
                )
            }
            None => {
                let metadata = ObjectMeta { name: Some(self.config.name.clone()), ..ObjectMeta::default() };
                let lease = Lease { metadata, spec };
                ("creating", tokio::time::timeout(self.timeout(), self.api.create(&pp, &lease)).await)
            }
        };
        match result {
            Ok(Ok(written)) => {
                let version = written.metadata.resource_version.unwrap_or_default();
                self.last = Some(Observed { version, record, at: Instant::now() });
                self.missing_since = None;
                self.recovered();
                self.won(sent, &why);
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => {
                tracing::debug!(lease = %self.lease, "{what} the Lease: another replica wrote it first");
                if let Some((_, fence)) = &self.term {
                    fence.close(Reason::LeaseLost("another replica wrote the Lease first".into()));
                }
            }
            Ok(Err(e)) => self.failed(&format!("{what} the Lease: {}", describe(&e))),
            Err(_) => self.failed(&format!("{what} the Lease: no answer within {:?}", self.timeout())),
        }
    }

    /// A write of ours landed: the term goes on until `sent` + the renew deadline, or a new one starts.
    fn won(&mut self, sent: Instant, why: &Why) {
        let deadline = self.config.timing.write_deadline(sent);
        self.health.saw_leader(Instant::now());
        self.following = None;
        if let Some((_, fence)) = &self.term
            && fence.extend(deadline)
        {
            return;
        }
        let how = match why {
            Why::Created => "created the Lease".to_owned(),
            Why::Ours => "renewed the Lease after this replica's writes had stopped".to_owned(),
            Why::Released => "took the released Lease".to_owned(),
            Why::Expired { holder } => format!(
                "took the Lease over: {holder} has not renewed it for {}s by this replica's clock",
                self.config.timing.lease_duration.as_secs()
            ),
            Why::Implausible { holder, .. } => format!("took the Lease over from {holder} (implausible renewTime)"),
        };
        let expired = Reason::LeaseLost(format!(
            "not renewed within --leader-election-renew-deadline ({}s)",
            self.config.timing.renew_deadline.as_secs_f64()
        ));
        let fence = Fence::new(deadline, expired);
        self.terms += 1;
        let term = self.terms;
        self.term = Some((term, fence.clone()));
        self.role.send_replace(Role::Leader { term, fence: fence.clone() });
        self.metrics.set_leader(true);
        tracing::info!(lease = %self.lease, identity = %self.config.identity, term, "{how}: this replica leads");
        tokio::spawn(end_of_term(fence, term, self.role.clone(), self.metrics.clone(), self.lease.clone()));
    }

    fn failed(&mut self, what: &str) {
        let then = if self.leading() {
            "this replica stops writing at its renew deadline unless a renewal gets through"
        } else {
            "retrying every retry period"
        };
        if self.failing {
            tracing::debug!(lease = %self.lease, "{what}");
        } else {
            tracing::warn!(
                lease = %self.lease,
                "{what}; {then}: check that the API server is reachable and the role may get, create and update leases in {}",
                self.config.namespace
            );
            self.failing = true;
        }
    }

    fn recovered(&mut self) {
        if std::mem::take(&mut self.failing) {
            tracing::info!(lease = %self.lease, "the Lease answers again");
        }
    }

    /// One line when `/readyz` starts failing for want of a leader, one when a leader is seen again.
    fn check_leaderless(&mut self, now: Instant) {
        match self.health.check(now) {
            Err(why) if !self.leaderless => {
                tracing::warn!("/readyz fails: {why}");
                self.leaderless = true;
            }
            Ok(()) if self.leaderless => {
                tracing::info!(lease = %self.lease, "a replica holds the Lease again: /readyz passes");
                self.leaderless = false;
            }
            _ => {}
        }
    }

    /// Ends the term and gives the lease up if the Lease names this replica (client-go's ReleaseOnCancel).
    async fn release(mut self) {
        if let Some((_, fence)) = self.term.take() {
            fence.close(Reason::LeaseLost(RELEASED.into()));
        }
        self.role.send_replace(Role::Follower);
        self.metrics.set_leader(false);
        if self.last.as_ref().is_none_or(|l| l.record.holder != self.config.identity) {
            return;
        }
        // Twice at most: a renewal that was in flight when the election stopped can make the first one conflict.
        for _ in 0..2 {
            match self.give_up().await {
                Ok(true) => {
                    tracing::info!(lease = %self.lease, "released the lease: a follower takes over at once");
                    return;
                }
                Ok(false) => return,
                Err(Some(e)) => {
                    tracing::warn!(lease = %self.lease, "releasing the lease: {e}; a follower takes over when it expires");
                    return;
                }
                Err(None) => {}
            }
        }
        tracing::warn!(lease = %self.lease, "releasing the lease: it kept changing; a follower takes over when it expires");
    }

    /// One release: `Ok(true)` released, `Ok(false)` not ours any more, `Err(None)` a conflict (try again).
    async fn give_up(&self) -> Result<bool, Option<String>> {
        let timeout = self.timeout();
        let got = tokio::time::timeout(timeout, self.api.get_opt(&self.config.name)).await;
        let mut lease = match got {
            Ok(Ok(Some(lease))) => lease,
            Ok(Ok(None)) => return Ok(false),
            Ok(Err(e)) => return Err(Some(format!("reading it: {}", describe(&e)))),
            Err(_) => return Err(Some(format!("reading it: no answer within {timeout:?}"))),
        };
        let record = Record::from_spec(lease.spec.as_ref());
        if record.holder != self.config.identity {
            return Ok(false);
        }
        lease.spec = Some(record.released(SystemTime::now()).to_spec());
        let pp = PostParams::default();
        match tokio::time::timeout(timeout, self.api.replace(&self.config.name, &pp, &lease)).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => Err(None),
            Ok(Err(e)) => Err(Some(format!("updating it: {}", describe(&e)))),
            Err(_) => Err(Some(format!("updating it: no answer within {timeout:?}"))),
        }
    }
}

/// The API server's message and code, or the client's error.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// Waits for a term's fence to close (its deadline, a takeover, a release), then says so: `clbsync_leader 0`, the
/// role back to follower, and a warning unless it was released.
async fn end_of_term(fence: Fence, term: u64, role: watch::Sender<Role>, metrics: Arc<Metrics>, lease: String) {
    let reason = Stop::new().with_fence(&fence).stopped().await;
    let ended = role.send_if_modified(|r| {
        let ours = matches!(r, Role::Leader { term: t, .. } if *t == term);
        if ours {
            *r = Role::Follower;
        }
        ours
    });
    if ended {
        metrics.set_leader(false);
    }
    match reason {
        Reason::LeaseLost(why) if why == RELEASED => tracing::debug!(%lease, term, "stopped leading: {why}"),
        reason => tracing::warn!(
            %lease,
            term,
            "stopped writing: {reason}; a pass in flight is given up before its next write, and writing resumes only once this replica holds the lease again and its watches have listed again"
        ),
    }
}
