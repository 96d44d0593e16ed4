//! Fault injection: latency, rate limiting, injected errors / HTTP 502, "drop after apply",
//! "executed, then error",
//! failed and slow tasks, busy load balancers and garbage responses. Every random decision comes
//! from one PRNG seeded with [`Faults::seed`], so the same seed and the same sequence of calls give
//! the same faults. Every fault can be bounded with `max` (occurrences) and `actions` (names).

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use tokio::time::Instant;

/// Fault configuration. All fields are optional in YAML/JSON; the default injects nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// PRNG seed for every probabilistic decision.
    pub seed: u64,
    /// Added latency per API call, in ms.
    pub latency_ms: u64,
    /// Extra random latency 0..=jitter per call, in ms.
    pub latency_jitter_ms: u64,
    /// Overrides [`crate::Config::rate_limit_per_action`] when set (requests/second per action, 0 = off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_action: Option<u32>,
    /// Overrides [`crate::Config::task_delay`] when set (ms until an async task completes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_delay_ms: Option<u64>,
    /// Calls failing before they are executed (API error or HTTP 502).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorFault>,
    /// Mutations applied (task created) but the response withheld / connection closed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drop_after_apply: Option<DropFault>,
    /// Mutations executed (task created, completing normally) but answered with an error, so the
    /// client cannot tell that its change was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_after_apply: Option<ErrorAfterApplyFault>,
    /// Tasks that end with Status 1 (failed) without changing state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_failures: Option<TaskFailureFault>,
    /// Mutations answered with `FailedOperation.ResourceInOperating`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busy: Option<BusyFault>,
    /// Responses replaced by huge or malformed bodies (after the action ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub garbage: Option<GarbageFault>,
    /// STS `AssumeRoleWithWebIdentity` answers (the faults above are the CLB API's and leave STS alone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sts: Option<CredentialFault>,
    /// The CVM metadata endpoint's answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<CredentialFault>,
}

/// A fault of a credential service (STS or the CVM metadata endpoint). A service that is down
/// (connection refused) is the test's to arrange: it does not start one, or points the client at a
/// closed port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialFault {
    /// Probability 0..=1 per request.
    #[serde(default = "one")]
    pub rate: f64,
    /// Stop after this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// What happens.
    pub kind: CredentialFaultKind,
    /// `slow`: the delay before the normal answer. `hang`: how long the connection is held before it
    /// is closed without an answer (default 600000 ms; the emulator's shutdown ends it sooner).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// `http_error`: the HTTP status (default 502).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// What a [`CredentialFault`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialFaultKind {
    /// The normal answer, after `delay_ms`.
    Slow,
    /// No answer: the connection is held, then closed.
    Hang,
    /// STS: `InternalError.SystemError`. Metadata: HTTP 200 with `"Code": "InternalError"`.
    Error,
    /// STS: `RequestLimitExceeded`. Metadata: HTTP 200 with `"Code": "RequestLimitExceeded"`.
    RequestLimitExceeded,
    /// An HTML error page with HTTP `status`.
    HttpError,
}

/// What a credential request gets from an injected [`CredentialFault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CredentialOutcome {
    Slow(u64),
    Hang(u64),
    Error,
    RequestLimitExceeded,
    HttpError(u16),
}

impl CredentialFault {
    fn outcome(&self) -> CredentialOutcome {
        match self.kind {
            CredentialFaultKind::Slow => CredentialOutcome::Slow(self.delay_ms.unwrap_or(0)),
            CredentialFaultKind::Hang => CredentialOutcome::Hang(self.delay_ms.unwrap_or(600_000)),
            CredentialFaultKind::Error => CredentialOutcome::Error,
            CredentialFaultKind::RequestLimitExceeded => CredentialOutcome::RequestLimitExceeded,
            CredentialFaultKind::HttpError => CredentialOutcome::HttpError(self.status.unwrap_or(502)),
        }
    }
}

fn one() -> f64 {
    1.0
}

/// Injected failures. `rate` is the probability per eligible call (default 1.0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorFault {
    /// Probability 0..=1 per eligible call.
    #[serde(default = "one")]
    pub rate: f64,
    /// Stop after this many injections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Only these actions (empty = all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// What to answer.
    #[serde(default)]
    pub kind: ErrorKind,
}

/// Kind of injected failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// `{"Response":{"Error":{"Code":"InternalError",...}}}` with HTTP 200.
    #[default]
    InternalError,
    /// HTTP 502 with an HTML body (the SDKs raise a network error).
    Http502,
    /// `RequestLimitExceeded` regardless of the rate limiter.
    RequestLimitExceeded,
}

/// "Drop after apply": the mutation is accepted (task created and applied as usual), then the
/// connection is closed without a response, after holding it for `hold_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropFault {
    /// Probability 0..=1 per eligible successful mutation.
    #[serde(default = "one")]
    pub rate: f64,
    /// Stop after this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Only these actions (empty = all mutating actions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// How long to hold the connection before closing it (ms; 0 = close at once).
    #[serde(default)]
    pub hold_ms: u64,
}

/// "Executed, then error": a successful mutation is applied exactly as usual (task created and
/// completing normally, or the change made at once), and then answered with `kind` instead of
/// its success response. Recorded in the call log as `InternalErrorAfterApply` /
/// `HTTP502AfterApply` (see [`crate::CallLog::errors_after_apply`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorAfterApplyFault {
    /// Probability 0..=1 per eligible successful mutation.
    #[serde(default = "one")]
    pub rate: f64,
    /// Stop after this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Only these actions (empty = all mutating actions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// What to answer.
    #[serde(default)]
    pub kind: AfterApplyKind,
}

/// Answer sent for an executed mutation by [`ErrorAfterApplyFault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterApplyKind {
    /// `{"Response":{"Error":{"Code":"InternalError",...}}}` with HTTP 200.
    #[default]
    InternalError,
    /// HTTP 502 with an HTML body (the SDKs raise a network error).
    Http502,
}

impl AfterApplyKind {
    /// The call-log code of a call answered this way.
    pub fn log_code(self) -> &'static str {
        match self {
            AfterApplyKind::InternalError => "InternalErrorAfterApply",
            AfterApplyKind::Http502 => "HTTP502AfterApply",
        }
    }
}

/// Tasks that fail (DescribeTaskStatus Status 1, state unchanged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskFailureFault {
    /// Probability 0..=1 per created task.
    #[serde(default = "one")]
    pub rate: f64,
    /// Stop after this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Only tasks of these actions (empty = all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// `Message` of the failed task.
    #[serde(default = "default_task_message")]
    pub message: String,
}

fn default_task_message() -> String {
    "emulated task failure".into()
}

/// Busy load balancers: the next `calls` mutations (on the listed LBs, or any) get
/// `FailedOperation.ResourceInOperating`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusyFault {
    /// How many mutating calls to refuse.
    pub calls: u32,
    /// Only these load balancers (empty = all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_ids: Vec<String>,
}

/// Garbage responses for client robustness tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GarbageFault {
    /// Probability 0..=1 per eligible call.
    #[serde(default = "one")]
    pub rate: f64,
    /// Stop after this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Only these actions (empty = all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
    /// What to send.
    #[serde(default)]
    pub mode: GarbageMode,
    /// Body size for `huge` (bytes, default 16 MiB).
    #[serde(default = "default_huge")]
    pub huge_bytes: usize,
}

fn default_huge() -> usize {
    16 << 20
}

/// Kind of garbage response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GarbageMode {
    /// The real response plus a huge `Padding` string field (valid JSON).
    #[default]
    Huge,
    /// The real response cut in half (invalid JSON).
    Truncated,
    /// `{"Response": "garbage"}` (valid JSON, wrong shape).
    WrongShape,
    /// An empty body with HTTP 200.
    Empty,
    /// An HTML page with HTTP 200 and `Content-Type: text/html`.
    Html,
}

/// splitmix64: tiny, deterministic, good enough for fault decisions.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn applies(actions: &[String], action: &str) -> bool {
    actions.is_empty() || actions.iter().any(|a| a == action)
}

/// Mutable fault machinery: PRNG, counters of injected faults, rate-limit windows.
#[derive(Debug)]
pub(crate) struct FaultEngine {
    pub faults: Faults,
    rng: Rng,
    errors_done: u32,
    drops_done: u32,
    after_apply_done: u32,
    task_failures_done: u32,
    garbage_done: u32,
    sts_done: u32,
    metadata_done: u32,
    busy_left: u32,
    /// Per action: (window start, count in window).
    windows: HashMap<String, (Instant, u32)>,
}

impl FaultEngine {
    pub fn new(faults: Faults) -> Self {
        let rng = Rng::new(faults.seed);
        let busy_left = faults.busy.as_ref().map_or(0, |b| b.calls);
        FaultEngine {
            faults,
            rng,
            errors_done: 0,
            drops_done: 0,
            after_apply_done: 0,
            task_failures_done: 0,
            garbage_done: 0,
            sts_done: 0,
            metadata_done: 0,
            busy_left,
            windows: HashMap::new(),
        }
    }

    fn roll(rng: &mut Rng, rate: f64, done: &mut u32, max: Option<u32>) -> bool {
        if max.is_some_and(|m| *done >= m) || rate <= 0.0 {
            return false;
        }
        let hit = rate >= 1.0 || rng.unit() < rate;
        if hit {
            *done += 1;
        }
        hit
    }

    /// Latency to add to this call.
    pub fn latency_ms(&mut self) -> u64 {
        let j = self.faults.latency_jitter_ms;
        self.faults.latency_ms + if j > 0 { self.rng.next_u64() % (j + 1) } else { 0 }
    }

    /// Fixed one-second window per action: true when the call is over the limit.
    pub fn rate_limited(&mut self, action: &str, default_limit: u32, now: Instant) -> bool {
        let limit = self.faults.rate_limit_per_action.unwrap_or(default_limit);
        if limit == 0 {
            return false;
        }
        let entry = self.windows.entry(action.to_string()).or_insert((now, 0));
        if now.duration_since(entry.0).as_millis() >= 1000 {
            *entry = (now, 0);
        }
        if entry.1 >= limit {
            return true;
        }
        entry.1 += 1;
        false
    }

    /// Injected error for this call, if any.
    pub fn error(&mut self, action: &str) -> Option<ErrorKind> {
        let e = self.faults.errors.as_ref()?;
        if !applies(&e.actions, action) {
            return None;
        }
        let (rate, max, kind) = (e.rate, e.max, e.kind);
        Self::roll(&mut self.rng, rate, &mut self.errors_done, max).then_some(kind)
    }

    /// True when this mutation on `lb` must be refused as busy.
    pub fn busy(&mut self, lb: &str) -> bool {
        let Some(b) = &self.faults.busy else {
            return false;
        };
        if self.busy_left == 0 || !(b.load_balancer_ids.is_empty() || b.load_balancer_ids.iter().any(|x| x == lb)) {
            return false;
        }
        self.busy_left -= 1;
        true
    }

    /// Hold time when this successful mutation's response must be dropped.
    pub fn drop_after_apply(&mut self, action: &str) -> Option<u64> {
        let d = self.faults.drop_after_apply.as_ref()?;
        if !applies(&d.actions, action) {
            return None;
        }
        let (rate, max, hold) = (d.rate, d.max, d.hold_ms);
        Self::roll(&mut self.rng, rate, &mut self.drops_done, max).then_some(hold)
    }

    /// The error to answer this executed mutation with, if any.
    pub fn error_after_apply(&mut self, action: &str) -> Option<AfterApplyKind> {
        let e = self.faults.error_after_apply.as_ref()?;
        if !applies(&e.actions, action) {
            return None;
        }
        let (rate, max, kind) = (e.rate, e.max, e.kind);
        Self::roll(&mut self.rng, rate, &mut self.after_apply_done, max).then_some(kind)
    }

    /// Failure message when the task created by `action` must fail.
    pub fn task_failure(&mut self, action: &str) -> Option<String> {
        let t = self.faults.task_failures.as_ref()?;
        if !applies(&t.actions, action) {
            return None;
        }
        let (rate, max, msg) = (t.rate, t.max, t.message.clone());
        Self::roll(&mut self.rng, rate, &mut self.task_failures_done, max).then_some(msg)
    }

    /// The injected fault of this STS request, if any.
    pub fn sts(&mut self) -> Option<CredentialOutcome> {
        let f = self.faults.sts.as_ref()?;
        let outcome = f.outcome();
        Self::roll(&mut self.rng, f.rate, &mut self.sts_done, f.max).then_some(outcome)
    }

    /// The injected fault of this metadata request, if any.
    pub fn metadata(&mut self) -> Option<CredentialOutcome> {
        let f = self.faults.metadata.as_ref()?;
        let outcome = f.outcome();
        Self::roll(&mut self.rng, f.rate, &mut self.metadata_done, f.max).then_some(outcome)
    }

    /// Garbage to send instead of the response, if any.
    pub fn garbage(&mut self, action: &str) -> Option<(GarbageMode, usize)> {
        let g = self.faults.garbage.as_ref()?;
        if !applies(&g.actions, action) {
            return None;
        }
        let (rate, max, mode, size) = (g.rate, g.max, g.mode, g.huge_bytes);
        Self::roll(&mut self.rng, rate, &mut self.garbage_done, max).then_some((mode, size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_decisions() {
        let faults = Faults {
            seed: 42,
            errors: Some(ErrorFault { rate: 0.3, max: None, actions: vec![], kind: ErrorKind::InternalError }),
            ..Faults::default()
        };
        let run = |f: &Faults| {
            let mut e = FaultEngine::new(f.clone());
            (0..200).map(|_| e.error("DescribeTargets").is_some()).collect::<Vec<_>>()
        };
        let a = run(&faults);
        assert_eq!(a, run(&faults));
        let hits = a.iter().filter(|x| **x).count();
        assert!((30..90).contains(&hits), "{hits}");
        let other = Faults { seed: 43, ..faults.clone() };
        assert_ne!(a, run(&other));
    }

    #[test]
    fn max_bounds_injections() {
        let faults = Faults {
            errors: Some(ErrorFault {
                rate: 1.0,
                max: Some(3),
                actions: vec!["RegisterTargets".into()],
                kind: ErrorKind::Http502,
            }),
            ..Faults::default()
        };
        let mut e = FaultEngine::new(faults);
        assert_eq!(e.error("DescribeTargets"), None);
        let n = (0..10).filter(|_| e.error("RegisterTargets").is_some()).count();
        assert_eq!(n, 3);
    }

    #[test]
    fn yaml_round_trip() {
        let y = "seed: 7\nlatency_ms: 5\nerrors: {rate: 0.5, kind: http502, max: 2}\nbusy: {calls: 2}\ngarbage: {mode: truncated}\n";
        let f: Faults = serde_yaml::from_str(y).unwrap();
        assert_eq!(f.errors.as_ref().unwrap().kind, ErrorKind::Http502);
        let back: Faults = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(f, back);
        assert!(serde_yaml::from_str::<Faults>("sede: 1").is_err());
    }

    #[test]
    fn credential_faults_have_defaults_and_bounds() {
        let y = "sts: {kind: http_error, max: 1}\nmetadata: {kind: hang}\n";
        let f: Faults = serde_yaml::from_str(y).unwrap();
        let mut e = FaultEngine::new(f);
        assert_eq!(e.sts(), Some(CredentialOutcome::HttpError(502)));
        assert_eq!(e.sts(), None, "max 1");
        assert_eq!(e.metadata(), Some(CredentialOutcome::Hang(600_000)));
        assert_eq!(e.error("AssumeRoleWithWebIdentity"), None);
        assert!(serde_yaml::from_str::<Faults>("sts: {kind: down}").is_err());
    }
}
