//! Which API errors are retried, and how long to wait: pure functions, jitter passed in.

use std::time::Duration;

use super::ErrorKind;

/// Rate-limit codes: back off and retry.
const THROTTLED: &[&str] = &[
    "RequestLimitExceeded",
    "RequestLimitExceeded.UinLimitExceeded",
    "RequestLimitExceeded.IPLimitExceeded",
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
];
/// The load balancer is locked by another task; the call was not executed, so even a write is safe to retry.
const BUSY: &[&str] = &["FailedOperation.ResourceInOperating"];
/// Transient server-side failures.
const SERVER: &[&str] = &["InternalError", "ServiceUnavailable"];
/// Resource lookups that failed.
const NOT_FOUND: &[&str] = &[
    "ResourceNotFound",
    "InvalidParameter.LBIdNotFound",
    "InvalidParameter.ListenerIdNotFound",
    "InvalidParameter.LocationNotFound",
];

/// Classifies an API error code. Unknown codes are `Invalid`: never retried.
pub fn classify(code: &str) -> ErrorKind {
    if THROTTLED.contains(&code) || code.starts_with("RequestLimitExceeded") {
        ErrorKind::Throttled
    } else if BUSY.contains(&code) {
        ErrorKind::Busy
    } else if SERVER.contains(&code) || code.starts_with("InternalError") {
        ErrorKind::Server
    } else if code.starts_with("AuthFailure") || code.starts_with("UnauthorizedOperation") {
        ErrorKind::Auth
    } else if NOT_FOUND.contains(&code) {
        ErrorKind::NotFound
    } else if code == "LimitExceeded" || code.starts_with("LimitExceeded.") {
        ErrorKind::Quota
    } else {
        ErrorKind::Invalid
    }
}

/// Whether an error of this kind is worth another attempt.
pub fn is_retryable(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::Throttled | ErrorKind::Busy | ErrorKind::Server)
}

/// Bounds for retries.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub max_delay: Duration,
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_total: Duration::from_secs(30),
        }
    }
}

/// Exponential backoff with full jitter: `jitter` in `[0, 1)` scales `min(max_delay, base * 2^attempt)`.
pub fn backoff(policy: &RetryPolicy, attempt: u32, jitter: f64) -> Duration {
    let exp = policy.base.saturating_mul(1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX));
    let capped = exp.min(policy.max_delay);
    capped.mul_f64(jitter.clamp(0.0, 1.0))
}
