//! Record of the API calls the emulator received.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One received API call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Sequence number (0-based, since the last reset).
    pub seq: u64,
    /// `clb` (the CLB API), `sts` (STS `AssumeRoleWithWebIdentity`) or `metadata` (the CVM
    /// metadata endpoint).
    #[serde(default = "clb")]
    pub service: String,
    /// `X-TC-Action` (empty when missing); the path for `metadata`.
    pub action: String,
    /// Request parameters (parsed body; `null` when unparsable). For STS the `WebIdentityToken` is
    /// replaced by its [`crate::sts::token_fingerprint`].
    pub params: serde_json::Value,
    /// The SecretId named by the request's `Authorization` (CLB), or handed out by the metadata
    /// endpoint; `None` for STS and when there is none.
    #[serde(default)]
    pub secret_id: Option<String>,
    /// Whether `secret_id` is a temporary credential (issued by STS or the metadata endpoint, or a
    /// configured one with a token).
    #[serde(default)]
    pub temporary: bool,
    /// `Success`, an error code, `HTTP502`, or one of the codes of an executed call whose answer
    /// was replaced by a fault: `Dropped`, `Garbage`, `InternalErrorAfterApply`, `HTTP502AfterApply`.
    pub code: String,
    /// RequestId returned (also the TaskId of mutations).
    pub request_id: String,
    /// Whether the action is a mutating one.
    pub mutating: bool,
    /// Milliseconds spent handling (including injected latency).
    pub elapsed_ms: u64,
    /// When the call was handled (after the injected latency, when it sees the state), in microseconds of
    /// emulator time since the emulator started: task completion and the polls that saw it are measured with it.
    #[serde(default)]
    pub at_us: u64,
}

fn clb() -> String {
    "clb".into()
}

/// Codes of calls that were executed although the client got no usable success answer.
const EXECUTED_FAULT_CODES: &[&str] = &["Dropped", "Garbage", "InternalErrorAfterApply", "HTTP502AfterApply"];

/// Counters and the full request log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CallLog {
    /// Calls per action (all outcomes).
    pub by_action: BTreeMap<String, usize>,
    /// Calls per outcome code other than `Success`.
    pub errors_by_code: BTreeMap<String, usize>,
    /// Calls to mutating actions (all outcomes).
    pub mutating_calls: usize,
    /// Calls to mutating actions that were executed (a task was created, or BatchModifyTargetTag's
    /// change made), including those whose
    /// answer a fault then replaced (`Dropped`, `Garbage`, `*AfterApply`).
    pub mutating_ok: usize,
    /// Every call, in arrival order.
    pub records: Vec<CallRecord>,
}

impl CallLog {
    /// Calls of `action` (any outcome).
    pub fn count(&self, action: &str) -> usize {
        self.by_action.get(action).copied().unwrap_or(0)
    }
    /// Calls to mutating actions (any outcome).
    pub fn mutating(&self) -> usize {
        self.mutating_calls
    }
    /// Calls to mutating actions that were executed (see [`CallLog::mutating_ok`]).
    pub fn mutating_succeeded(&self) -> usize {
        self.mutating_ok
    }
    /// All calls.
    pub fn total(&self) -> usize {
        self.records.len()
    }
    /// Calls answered with `code` (e.g. `RequestLimitExceeded`, `HTTP502`).
    pub fn errors(&self, code: &str) -> usize {
        self.errors_by_code.get(code).copied().unwrap_or(0)
    }
    /// Calls executed and then answered with an injected error (`error_after_apply`):
    /// `InternalErrorAfterApply` plus `HTTP502AfterApply`. `errors("InternalError")` and
    /// `errors("HTTP502")` count only calls that were not executed.
    pub fn errors_after_apply(&self) -> usize {
        self.errors("InternalErrorAfterApply") + self.errors("HTTP502AfterApply")
    }
    /// Records of `service` (`clb`, `sts` or `metadata`).
    pub fn of_service(&self, service: &str) -> Vec<&CallRecord> {
        self.records.iter().filter(|r| r.service == service).collect()
    }
    /// Records of `action`.
    pub fn of(&self, action: &str) -> Vec<&CallRecord> {
        self.records.iter().filter(|r| r.action == action).collect()
    }

    pub(crate) fn push(&mut self, mut rec: CallRecord) {
        rec.seq = self.records.len() as u64;
        *self.by_action.entry(rec.action.clone()).or_default() += 1;
        if rec.code != "Success" {
            *self.errors_by_code.entry(rec.code.clone()).or_default() += 1;
        }
        if rec.mutating {
            self.mutating_calls += 1;
            if rec.code == "Success" || EXECUTED_FAULT_CODES.contains(&rec.code.as_str()) {
                self.mutating_ok += 1;
            }
        }
        self.records.push(rec);
    }
}
