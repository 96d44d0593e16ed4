//! [`ClbClient`]: the real [`Clb`], TC3-signed JSON over HTTPS (or plain HTTP to a loopback emulator).
//!
//! Every call is paced per action ([`Pacer`]), calls that start a task also all together (see [`TASK_STARTS`]),
//! and sent by the [`Transport`]. Reads are retried after throttling, a busy load balancer, server errors
//! (`InternalError`, `ServiceUnavailable`, HTTP 5xx) and transport errors.
//! **Writes are retried when CLB answered that they were not executed (throttled, busy) or answered with a server
//! error, which may hide an executed write**: a change that then fails as already done (a target already bound,
//! or no longer bound for a removal) is checked with `DescribeTargets` and counted as applied when the target is
//! as wanted. A write whose answer never arrived (timeout, reset) is never resent: it becomes `OutcomeUnknown`
//! and the next run re-reads the targets. Every accepted mutation except `BatchModifyTargetTag` (synchronous) is
//! followed by `DescribeTaskStatus` polling.
//!
//! Mutations of one load balancer are sequential: chunks go one after another, each waited for. Batch actions
//! come first (`Batch(De)RegisterTargets`, 500 targets; `BatchModifyTargetWeight`, 100 × 50, 500 total); if
//! one answers `UnsupportedOperation` or `InvalidAction`, the rest of the call uses `RegisterTargets` /
//! `DeregisterTargets` / `ModifyTargetWeight` per binding, 20 targets each (the strategy is in `mutate`).

mod actions;
mod mutate;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::debug;

use super::Error;
use super::credentials::{Credentials, Provider};
use super::http::{Endpoint, Transport};
use super::pace::{self, Pacer};
use super::retry::{self, RetryPolicy};
use super::task::{self, Learner, TaskPolicy, TaskStatus};
use super::wire;
use crate::stop::Stop;

/// [`ClientConfig::rate_limit_per_action`] unless told otherwise (`--rate-limit`): CLB's documented limit.
pub(crate) const DEFAULT_RATE_LIMIT: u32 = 20;

/// Everything the client needs; [`ClientConfig::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    /// Sent as `X-TC-Region`; the region of the load balancers.
    pub region: String,
    pub credentials: Provider,
    /// Requests per second per action (CLB's documented limit is 20); 0 turns pacing off.
    pub rate_limit_per_action: u32,
    pub connect_timeout: Duration,
    /// Whole-request timeout of one HTTP call.
    pub request_timeout: Duration,
    /// How long to wait for one async task before reporting `TaskTimeout`.
    pub task_timeout: Duration,
    /// When the run's first task is polled first; later tasks are polled when the run's tasks are learned to
    /// be done ([`task`]).
    pub task_poll_interval: Duration,
    pub retry: RetryPolicy,
}

impl ClientConfig {
    pub fn new(region: impl Into<String>, credentials: impl Into<Provider>) -> Self {
        ClientConfig {
            endpoint: Endpoint::Default,
            region: region.into(),
            credentials: credentials.into(),
            rate_limit_per_action: DEFAULT_RATE_LIMIT,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            task_timeout: task::DEFAULT_TIMEOUT,
            task_poll_interval: task::DEFAULT_FIRST_INTERVAL,
            retry: RetryPolicy::default(),
        }
    }
}

/// Calls and retries of one action, for benchmarks: a view of [`ClbClient::answers`] and the retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionStats {
    /// HTTP requests answered (by CLB or with a transport error), retries included.
    pub requests: u64,
    /// Requests that were retries of an earlier attempt.
    pub retries: u64,
}

/// One action's requests so far: their answers by `ok` or error code, and how many were retries.
#[derive(Clone, Debug, Default)]
struct Calls {
    answers: BTreeMap<String, u64>,
    retries: u64,
}

/// Whether a call changes anything: a write is never resent after an answer that was lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CallKind {
    Read,
    /// A synchronous write.
    Write,
    /// A write whose answer is a task to poll.
    StartsTask,
}

impl CallKind {
    fn writes(self) -> bool {
        self != CallKind::Read
    }
}

/// Codes with which CLB refuses the credentials themselves (expired, unknown): after them the credentials are
/// fetched or read again.
const REFUSED_CREDENTIALS: &[&str] = &["AuthFailure.TokenFailure", "AuthFailure.SecretIdNotFound"];

/// The pacer's budget shared by every call that starts a task, at the per-action rate like each action. Every
/// task needs at least one `DescribeTaskStatus`, so tasks started faster than that rate (registrations and
/// deregistrations at once) end no sooner: their polls only queue in the limiter, each seeing its task done late.
/// A poll that finds its task still running is charged here too, so that tasks started plus such extra polls
/// stay within what `DescribeTaskStatus` may be called; and a poll that waited for the polls' budget holds its
/// task's place that much longer, so the next task starts when its poll can be sent on time.
const TASK_STARTS: &str = "(calls that start a task)";

/// A poll that waited this long or less for the polls' budget does not hold its task's place longer: such waits
/// come and go with the network's jitter, and holding places for them would slow every later task.
const POLL_WAIT_TOLERATED: Duration = Duration::from_millis(20);

/// The CLB API client. One instance is shared by every load balancer of a run (`&self` everywhere).
pub struct ClbClient {
    transport: Transport,
    credentials: Provider,
    pacer: Pacer,
    task: TaskPolicy,
    /// How long this run's tasks take, learned from its first ones.
    learner: Learner,
    retry: RetryPolicy,
    /// Answers per action and `ok` or error code (`clbsync_api_calls_total`), and retries.
    calls: Mutex<BTreeMap<&'static str, Calls>>,
}

/// The answer to a call, and whether it was sent again after a server error that may hide an executed write.
struct Answer<T> {
    result: Result<(T, String), Error>,
    resent_after_server_error: bool,
    /// How long the call waited in the pacer, over all its attempts.
    paced: Duration,
}

impl ClbClient {
    /// Builds the client and its one HTTP transport.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let transport =
            Transport::new(&config.endpoint, config.region, config.connect_timeout, config.request_timeout)?;
        let first = config.task_poll_interval;
        Ok(ClbClient {
            transport,
            credentials: config.credentials,
            pacer: Pacer::new(config.rate_limit_per_action),
            task: TaskPolicy {
                timeout: config.task_timeout,
                first_interval: first,
                max_interval: first.max(task::MAX_INTERVAL),
            },
            learner: Learner::default(),
            retry: config.retry,
            calls: Mutex::new(BTreeMap::new()),
        })
    }

    /// Requests and retries per action so far.
    pub fn stats(&self) -> BTreeMap<&'static str, ActionStats> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let stats = |c: &Calls| ActionStats { requests: c.answers.values().sum(), retries: c.retries };
        calls.iter().map(|(action, c)| (*action, stats(c))).collect()
    }

    /// Requests so far per action and answer (`ok` or the error code), retries included.
    pub fn answers(&self) -> BTreeMap<(&'static str, String), u64> {
        let calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let answers =
            calls.iter().flat_map(|(action, c)| c.answers.iter().map(|(code, n)| ((*action, code.clone()), *n)));
        answers.collect()
    }

    /// The `Host` value sent and signed.
    pub fn host(&self) -> &str {
        self.transport.host()
    }

    /// Where the requests' credentials come from.
    pub fn credential_source(&self) -> &Provider {
        &self.credentials
    }

    /// A read with pacing and retries. Returns the response fields and the `RequestId`.
    async fn read<Req, Resp>(&self, action: &'static str, lb: &str, req: &Req) -> Result<(Resp, String), Error>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        self.call(action, lb, CallKind::Read, req, None).await.result
    }

    /// One action with pacing and retries (see the module doc for which errors are retried). A write checks
    /// `stop` right before each attempt is sent, after any wait in the pacer or a backoff, and is not sent once
    /// it fired.
    async fn call<Req, Resp>(
        &self,
        action: &'static str,
        lb: &str,
        kind: CallKind,
        req: &Req,
        stop: Option<&Stop>,
    ) -> Answer<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body = serde_json::to_vec(req).expect("request bodies are plain structs and always serialise");
        let first = Instant::now();
        let mut attempt: u32 = 0;
        let mut resent_after_server_error = false;
        let mut paced = Duration::ZERO;
        let mut re_signed = false;
        loop {
            attempt += 1;
            let start_permit = match kind {
                CallKind::StartsTask => Some(self.pacer.acquire(TASK_STARTS).await.0),
                CallKind::Read | CallKind::Write => None,
            };
            let (permit, waited) = self.pacer.acquire(action).await;
            paced += waited;
            // Asked after the pacer's wait, so that the request leaves with credentials valid now.
            let credentials = match self.credentials(action, resent_after_server_error).await {
                Ok(c) => c,
                Err(err) => return Answer { result: Err(err), resent_after_server_error, paced },
            };
            if let Some(err) = self.stopped_before_send(action, stop, resent_after_server_error) {
                return Answer { result: Err(err), resent_after_server_error, paced };
            }
            let started = Instant::now();
            let result = self.transport.send::<Resp>(action, &body, &credentials).await;
            // The answer is in: from now on this call counts against the budgets for one second.
            drop((permit, start_permit));
            let ms = started.elapsed().as_millis() as u64;
            self.record_answer(action, attempt > 1, &result);
            let err = match result {
                Ok((resp, request_id)) => {
                    debug!(action, lb, attempt, request_id = %request_id, ms, "clb call");
                    return Answer { result: Ok((resp, request_id)), resent_after_server_error, paced };
                }
                Err(err) => err,
            };
            debug!(
                action,
                lb,
                attempt,
                request_id = err.request_id().unwrap_or("-"),
                ms,
                code = err.code(),
                "clb call failed"
            );
            if kind == CallKind::Read && !re_signed && self.renewed_after_refusal(&err, &credentials).await {
                re_signed = true;
                debug!(action, lb, code = err.code(), "credentials refused: the read is sent again with new ones");
                continue;
            }
            let (server_error, retryable) = (is_server_error(&err), is_retryable(&err, kind));
            // Equal jitter (at least half the exponential delay), as the watches use: with full jitter five
            // retries could all land within a fraction of a second and meet the same throttled window.
            let delay = retry::backoff(&self.retry, attempt - 1, 0.5 + fastrand::f64() / 2.0);
            if !retryable || attempt >= self.retry.max_attempts || first.elapsed() + delay > self.retry.max_total {
                return Answer { result: Err(self.given_up(err, kind)), resent_after_server_error, paced };
            }
            resent_after_server_error |= kind.writes() && server_error;
            tokio::time::sleep(delay).await;
        }
    }

    /// The error of a call that `stop` ends before this attempt is sent: not sent, or, after a server error that
    /// may hide an executed write, of unknown outcome.
    fn stopped_before_send(&self, action: &'static str, stop: Option<&Stop>, resent: bool) -> Option<Error> {
        let Some(Err(reason)) = stop.map(Stop::check) else { return None };
        Some(if resent {
            let reason = format!("a server error answered it, then the run stopped ({reason})");
            Error::OutcomeUnknown { action, endpoint: self.transport.url(), reason }
        } else {
            Error::NotSent { action, reason }
        })
    }

    /// Counts an answer per action and `ok` or error code ([`ClbClient::answers`]), and whether it was a retry.
    fn record_answer<T>(&self, action: &'static str, retry: bool, result: &Result<T, Error>) {
        let code = result.as_ref().map_or_else(|e| e.code().to_owned(), |_| "ok".to_owned());
        let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let calls = calls.entry(action).or_default();
        *calls.answers.entry(code).or_default() += 1;
        calls.retries += u64::from(retry);
    }

    /// The error a call ends with when it is not retried: a write whose answer was lost or cannot be read may
    /// have been applied, so its outcome is unknown.
    fn given_up(&self, err: Error, kind: CallKind) -> Error {
        match err {
            Error::Transport { action, endpoint, error } if kind.writes() && !error.is_connect() => {
                Error::OutcomeUnknown { action, endpoint, reason: super::http::describe_transport_error(&error) }
            }
            // A 200 whose body cannot be read: the mutation may have been applied.
            Error::Decode { action, reason, excerpt } if kind.writes() => {
                Error::UnreadableAnswer { action, endpoint: self.transport.url(), reason, excerpt }
            }
            other => other,
        }
    }

    /// The credentials to sign an attempt with. Without them nothing is sent; after a server error that may hide
    /// an executed write, the write's outcome is unknown.
    async fn credentials(
        &self,
        action: &'static str,
        resent_after_server_error: bool,
    ) -> Result<Arc<Credentials>, Error> {
        self.credentials.get().await.map_err(|error| {
            if resent_after_server_error {
                let reason = format!("a server error answered it, then it could not be signed again ({error})");
                Error::OutcomeUnknown { action, endpoint: self.transport.url(), reason }
            } else {
                Error::Credentials { action, error }
            }
        })
    }

    /// Whether `err` refused the credentials themselves (expired early, rotated away) and other ones are now in
    /// use, for the one resend of a read. A write is not resent: its change fails, the next pass re-reads.
    async fn renewed_after_refusal(&self, err: &Error, used: &Arc<Credentials>) -> bool {
        let refused = matches!(err, Error::Api(api) if REFUSED_CREDENTIALS.contains(&api.code.as_str()));
        refused && self.credentials.rejected(used).await.is_some()
    }

    /// Polls the task created by a mutation answered at `accepted`.
    async fn wait_task(&self, lb: &str, task_id: &str, accepted: Instant) -> Result<u32, Error> {
        let request = wire::DescribeTaskStatusRequest { task_id: task_id.to_string() };
        task::wait(task_id, &self.task, &self.learner, || async {
            let answer = self
                .call::<_, wire::DescribeTaskStatusResponse>("DescribeTaskStatus", lb, CallKind::Read, &request, None)
                .await;
            let (resp, _) = answer.result?;
            let status = TaskStatus::from_api(resp.status, resp.message);
            if status == TaskStatus::Running {
                self.pacer.charge(TASK_STARTS);
            }
            if answer.paced > POLL_WAIT_TOLERATED {
                // The polls' budget is behind: the task starting in this one's place a second later would be
                // polled that much late too, so it starts that much later.
                self.pacer.charge_until(TASK_STARTS, accepted + pace::WINDOW + answer.paced);
            }
            Ok((status, answer.paced))
        })
        .await
    }
}

/// Whether CLB answered with a server error, which may hide an executed write.
fn is_server_error(err: &Error) -> bool {
    match err {
        Error::Api(api) => api.kind() == super::ErrorKind::Server,
        Error::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// Whether a call of `kind` that failed with `err` may be sent again (see the module doc).
fn is_retryable(err: &Error, kind: CallKind) -> bool {
    match err {
        Error::Api(api) => retry::is_retryable(api.kind()),
        Error::Status { status, .. } => *status >= 500,
        Error::Transport { error, .. } => kind == CallKind::Read || error.is_connect(),
        _ => false,
    }
}
