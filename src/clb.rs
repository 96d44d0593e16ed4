//! The Tencent Cloud CLB API (version 2018-03-17), read by [`crate::actual`] and written by [`crate::apply`].
//!
//! [`Clb`] is the I/O boundary. The real implementation is [`client::ClbClient`] (TC3-signed HTTPS, batching,
//! task polling, pacing and retries); tests drive the same client against `clb-emulator` on loopback, and the
//! engine's unit tests use an in-memory double.
//!
//! ```text
//! client (retries, tasks, batching) ─► http (one signed request) ◄─ credentials (env, files, TKE OIDC, CVM role)
//!  batch · pace · retry · task            tc3 · wire
//! ```

pub mod batch;
pub mod client;
/// Tencent Cloud API credentials and where they come from (environment, files, TKE OIDC, CVM role), refreshed
/// before they expire.
pub mod credentials;
pub mod http;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod pace;
pub mod retry;
pub mod task;
pub mod tc3;
pub mod wire;

use std::future::Future;

use crate::model::{BoundTarget, Change, Failure, TargetHealth};
use crate::stop::{Reason, Stop};

/// The region of the load balancers when neither `--region` nor the environment names one.
pub const DEFAULT_REGION: &str = "ap-beijing";

/// A load balancer as `DescribeLoadBalancers` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadBalancer {
    pub id: String,
    pub name: String,
    /// `Forward = 0`: a classic load balancer, which has its own target actions; clbsync refuses it.
    pub classic: bool,
}

/// A listener as `DescribeListeners` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listener {
    pub id: String,
    /// The API's protocol name (`TCP`, `HTTP`, ...), kept as text so unknown protocols can still be shown.
    pub protocol: String,
    pub port: u16,
    /// `NODE` for directly bound backends; `TARGETGROUP*` listeners take backends through target groups.
    pub target_type: String,
    /// Layer-7 rules; empty on layer-4 listeners.
    pub rules: Vec<ListenerRule>,
}

/// A layer-7 forwarding rule of a listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerRule {
    pub location_id: String,
    pub domain: String,
    pub url: String,
    pub target_type: String,
}

/// The result of one mutation call for each change, in the order the changes were given.
pub type ChangeResults = Vec<Result<(), Failure>>;

/// The load-balancer side of a run. Reads return typed errors; mutations return one outcome per change, so
/// a partial failure is visible per target. A mutation checks `stop` before each request it sends (a mutation can
/// be several calls, and retries): once it fired, the changes not yet sent fail as [`Failure::NOT_SENT`].
pub trait Clb {
    /// `DescribeLoadBalancers` for these ids (any number; the client splits at 20). Unknown ids are absent.
    fn load_balancers(&self, ids: &[String]) -> impl Future<Output = Result<Vec<LoadBalancer>, Error>>;
    /// `DescribeListeners` of one load balancer, with their rules.
    fn listeners(&self, lb: &str) -> impl Future<Output = Result<Vec<Listener>, Error>>;
    /// `DescribeTargets` of these listeners of one load balancer (any number; the client splits at 20).
    fn targets(&self, lb: &str, listener_ids: &[String]) -> impl Future<Output = Result<Vec<BoundTarget>, Error>>;
    /// `DescribeTargetHealth` of these listeners of one load balancer: what CLB's health checks say of each target.
    fn health(&self, lb: &str, listener_ids: &[String]) -> impl Future<Output = Result<Vec<TargetHealth>, Error>>;
    /// Set the tag of bound targets (`BatchModifyTargetTag`, synchronous).
    fn tag(&self, lb: &str, changes: &[Change], stop: &Stop) -> impl Future<Output = ChangeResults>;
    /// Bind targets to listeners/rules of one load balancer, waiting for the async tasks.
    fn register(&self, lb: &str, changes: &[Change], stop: &Stop) -> impl Future<Output = ChangeResults>;
    /// Set the weight of bound targets (weight 0 drains), waiting for the async tasks.
    fn set_weight(&self, lb: &str, changes: &[Change], stop: &Stop) -> impl Future<Output = ChangeResults>;
    /// Unbind targets, waiting for the async tasks.
    fn deregister(&self, lb: &str, changes: &[Change], stop: &Stop) -> impl Future<Output = ChangeResults>;
}

/// An error answer of the CLB API (`Response.Error`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{action}: {code}: {message} (RequestId {request_id})")]
pub struct ApiError {
    pub action: &'static str,
    pub code: String,
    pub message: String,
    pub request_id: String,
}

/// How an API error code should be handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Rate limited: back off and retry.
    Throttled,
    /// The load balancer is busy with another task; the call was not executed, retry later.
    Busy,
    /// A transient server-side error; retry a bounded number of times.
    Server,
    /// Credentials or permissions: never retried.
    Auth,
    /// A resource named in the request does not exist.
    NotFound,
    /// Quota exhausted.
    Quota,
    /// The request itself is wrong; retrying cannot help.
    Invalid,
}

impl ApiError {
    /// Classifies the code once, so callers never match on message text.
    pub fn kind(&self) -> ErrorKind {
        retry::classify(&self.code)
    }
}

/// Everything that can go wrong talking to CLB.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The request did not get an answer. The cause is described in clbsync's words, once (`error` is kept for
    /// its kind, not chained: its own Display is reqwest's "error sending request for url").
    #[error("{action}: could not reach {endpoint}: {}", http::describe_transport_error(.error))]
    Transport { action: &'static str, endpoint: String, error: reqwest::Error },
    #[error("{action}: HTTP {status} from {endpoint}: {excerpt}")]
    Status { action: &'static str, endpoint: String, status: u16, excerpt: String },
    /// A 3xx answer: redirects are never followed, the signed request goes to the endpoint only.
    #[error(
        "{action}: HTTP {status} from {endpoint} redirects to {location}; redirects are not followed: check --endpoint"
    )]
    Redirect { action: &'static str, endpoint: String, status: u16, location: String },
    #[error("{action}: unreadable response ({reason}): {excerpt}")]
    Decode { action: &'static str, reason: String, excerpt: String },
    #[error("task {task_id} failed: {message}")]
    TaskFailed { task_id: String, message: String },
    #[error(
        "task {task_id} still running after {waited_secs}s: the change may still complete; the next run re-reads the targets"
    )]
    TaskTimeout { task_id: String, waited_secs: u64 },
    /// A mutation whose request may have reached CLB but whose answer never arrived (timeout, reset):
    /// it is not resent; the next run re-reads the targets and converges.
    #[error(
        "{action}: no answer from {endpoint} after the request was sent ({reason}): it may or may not have been applied; the next run re-reads the targets"
    )]
    OutcomeUnknown { action: &'static str, endpoint: String, reason: String },
    /// A mutation whose answer arrived but could not be read: it is not resent either.
    #[error(
        "{action}: an unreadable answer arrived from {endpoint} after the request was sent ({reason}): {excerpt}; it may or may not have been applied; the next run re-reads the targets"
    )]
    UnreadableAnswer { action: &'static str, endpoint: String, reason: String, excerpt: String },
    /// No credentials to sign the request with (STS or the metadata service failed, the files became unusable):
    /// nothing was sent.
    #[error("{action}: not sent: {error}")]
    Credentials { action: &'static str, error: credentials::Error },
    /// The client's own configuration is unusable (endpoint, region).
    #[error("{0}")]
    Config(String),
    /// A write not sent because the run had stopped (its [`Stop`] fired) before it went out.
    #[error("{action}: not sent: the run was stopped ({reason})")]
    NotSent { action: &'static str, reason: Reason },
}

impl Error {
    /// The code shown to users for this error (the API code where there is one).
    pub fn code(&self) -> &str {
        match self {
            Error::Api(e) => &e.code,
            Error::Transport { .. } => "Transport",
            Error::Status { .. } => "HttpStatus",
            Error::Redirect { .. } => "Redirect",
            Error::Decode { .. } => "Decode",
            Error::TaskFailed { .. } => "TaskFailed",
            Error::TaskTimeout { .. } => "TaskTimeout",
            Error::OutcomeUnknown { .. } | Error::UnreadableAnswer { .. } => "OutcomeUnknown",
            Error::Config(_) => "Config",
            Error::Credentials { .. } => "Credentials",
            Error::NotSent { .. } => Failure::NOT_SENT,
        }
    }

    /// The request or task id, when there is one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Api(e) => Some(&e.request_id),
            Error::TaskFailed { task_id, .. } | Error::TaskTimeout { task_id, .. } => Some(task_id),
            _ => None,
        }
    }

    /// The same error as a per-change [`Failure`].
    pub fn to_failure(&self) -> Failure {
        let message = match self {
            Error::Api(e) => e.message.clone(),
            other => other.to_string(),
        };
        Failure { code: self.code().to_string(), message, request_id: self.request_id().map(str::to_string) }
    }
}
