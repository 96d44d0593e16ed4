//! How [`ClbClient`] applies one load balancer's changes: batch calls first, per-binding calls where batch is
//! unsupported, each write settled from CLB's answer and, where that answer is ambiguous, confirmed with
//! `DescribeTargets`.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{CallKind, ClbClient};
use crate::clb::batch::{self, BatchCall, WithWeight};
use crate::clb::{ChangeResults, Clb, Error, wire};
use crate::model::{Binding, Change, Failure, Target, TargetKind};
use crate::stop::Stop;

/// The three mutations, each with its batch action and its per-binding fallback.
#[derive(Clone, Copy, Debug)]
pub(super) enum Mutation {
    Register,
    Deregister,
    Weight,
}

impl Mutation {
    fn batch_action(self) -> &'static str {
        match self {
            Mutation::Register => "BatchRegisterTargets",
            Mutation::Deregister => "BatchDeregisterTargets",
            Mutation::Weight => "BatchModifyTargetWeight",
        }
    }

    fn single_action(self) -> &'static str {
        match self {
            Mutation::Register => "RegisterTargets",
            Mutation::Deregister => "DeregisterTargets",
            Mutation::Weight => "ModifyTargetWeight",
        }
    }

    fn weight(self) -> WithWeight {
        match self {
            Mutation::Deregister => WithWeight::No,
            Mutation::Register | Mutation::Weight => WithWeight::Yes,
        }
    }
}

/// Codes after which a batch action is replaced by its per-binding action.
fn batch_unsupported(code: &str) -> bool {
    code == "UnsupportedOperation" || code.starts_with("UnsupportedOperation.") || code == "InvalidAction"
}

/// The state of one mutation of one load balancer: the changes and what happened to each so far.
struct Mutating<'a> {
    lb: &'a str,
    /// Checked before every request sent.
    stop: &'a Stop,
    mutation: Mutation,
    changes: &'a [Change],
    outcomes: Vec<Option<Result<(), Failure>>>,
    /// Changes that failed only because CLB put their listener in `FailListenerIdSet` while the call also carried
    /// other rules of that listener: the failure may be another rule's, so they are sent again per rule.
    shared_failures: Vec<usize>,
}

impl ClbClient {
    /// One mutation: batch calls first, per-binding calls if the batch action is unsupported; changes of a listener
    /// that failed as a whole are sent again one rule (binding) at a time, so only the rule at fault fails.
    pub(super) async fn mutate(&self, lb: &str, changes: &[Change], mutation: Mutation, stop: &Stop) -> ChangeResults {
        let outcomes = vec![None; changes.len()];
        let mut m = Mutating { lb, stop, mutation, changes, outcomes, shared_failures: Vec::new() };
        let mut idx = Vec::with_capacity(changes.len());
        for (i, c) in changes.iter().enumerate() {
            if c.binding.lb == lb {
                idx.push(i);
            } else {
                let message = format!("change for {} was sent with load balancer {lb}", c.binding);
                m.outcomes[i] = Some(Err(Failure { code: "Refused".into(), message, request_id: None }));
            }
        }
        self.batch(&mut m, &idx).await;
        let shared = std::mem::take(&mut m.shared_failures);
        let mut by_binding: BTreeMap<&Binding, Vec<usize>> = BTreeMap::new();
        // Changes confirmed as applied after a resend are not sent again.
        for i in shared.into_iter().filter(|&i| matches!(m.outcomes[i], Some(Err(_)))) {
            by_binding.entry(&changes[i].binding).or_default().push(i);
        }
        if !by_binding.is_empty() {
            info!(
                lb,
                rules = by_binding.len(),
                "a listener failed as a whole; sending its rules' changes one rule at a time"
            );
        }
        for group in by_binding.into_values() {
            self.batch(&mut m, &group).await;
        }
        m.outcomes
            .into_iter()
            .map(|o| o.expect("every change is in exactly one planned call or refused up front"))
            .collect()
    }

    /// The changes `idx` with the batch action, and with the per-binding action where the batch one is unsupported.
    async fn batch(&self, m: &mut Mutating<'_>, idx: &[usize]) {
        let action = m.mutation.batch_action();
        let rest: Option<Vec<usize>> = match m.mutation {
            Mutation::Weight => {
                let calls = batch::batch_weights(m.lb, m.changes, idx);
                let stop = self.run_calls(m, action, &calls, true).await;
                stop.map(|k| calls[k..].iter().flat_map(|c| c.changes.iter().copied()).collect())
            }
            Mutation::Register | Mutation::Deregister => {
                let calls = batch::batch_targets(m.lb, m.changes, idx, m.mutation.weight());
                let stop = self.run_calls(m, action, &calls, true).await;
                stop.map(|k| calls[k..].iter().flat_map(|c| c.changes.iter().copied()).collect())
            }
        };
        if let Some(rest) = rest {
            let single = m.mutation.single_action();
            info!(lb = m.lb, action = single, changes = rest.len(), "using per-binding actions, 20 targets per call");
            let calls = batch::per_binding(m.lb, m.changes, &rest, m.mutation.weight());
            self.run_calls(m, single, &calls, false).await;
        }
    }

    /// Sends the planned calls one after another and records one outcome per change. Stops at the first call the
    /// API refuses as unsupported and returns the index of that call, so the caller can fall back.
    async fn run_calls<R: Serialize>(
        &self,
        m: &mut Mutating<'_>,
        action: &'static str,
        calls: &[BatchCall<R>],
        fallback_allowed: bool,
    ) -> Option<usize> {
        for (k, call) in calls.iter().enumerate() {
            let answer = self
                .call::<_, wire::BatchTargetsResponse>(action, m.lb, CallKind::StartsTask, &call.request, Some(m.stop))
                .await;
            match answer.result {
                Ok((resp, request_id)) => self.settle(m, &request_id, &call.changes, &resp).await,
                Err(Error::Api(e)) if fallback_allowed && batch_unsupported(&e.code) => {
                    warn!(action, lb = m.lb, code = %e.code, request_id = %e.request_id, "batch action refused; falling back to per-binding actions");
                    return Some(k);
                }
                Err(e) => {
                    let failure = e.to_failure();
                    for &i in &call.changes {
                        m.outcomes[i] = Some(Err(failure.clone()));
                    }
                }
            }
            let failed = call.changes.iter().any(|&i| matches!(m.outcomes[i], Some(Err(_))));
            if answer.resent_after_server_error && failed {
                self.confirm(m, &call.changes).await;
            }
        }
        None
    }

    /// After a write was resent following a server error, its first attempt may have been executed, so the resent
    /// one can fail as already done. Reads the targets and counts each failed change whose target is now as wanted
    /// (bound with its weight, or gone) as applied. When the targets cannot be read the failures stand.
    async fn confirm(&self, m: &mut Mutating<'_>, idx: &[usize]) {
        let failed: Vec<usize> = idx.iter().copied().filter(|&i| matches!(m.outcomes[i], Some(Err(_)))).collect();
        let listeners: Vec<String> = failed.iter().map(|&i| m.changes[i].binding.listener.clone()).collect();
        let bound = match self.targets(m.lb, &listeners).await {
            Ok(bound) => bound,
            Err(e) => {
                warn!(lb = m.lb, error = %e, "cannot confirm changes resent after a server error; reporting them as failed");
                return;
            }
        };
        let now: BTreeMap<(&Binding, Target), u8> =
            bound.iter().filter(|b| b.kind == TargetKind::Ip).map(|b| ((&b.binding, b.target), b.weight)).collect();
        for i in failed {
            let c = &m.changes[i];
            let weight = now.get(&(&c.binding, c.target));
            let done = match m.mutation {
                Mutation::Register | Mutation::Weight => weight == Some(&c.weight),
                Mutation::Deregister => weight.is_none(),
            };
            if done {
                debug!(lb = m.lb, binding = %c.binding, target = %c.target, "a change resent after a server error was already applied");
                m.outcomes[i] = Some(Ok(()));
            }
        }
    }

    /// ChangeResults of one accepted call: listeners in `FailListenerIdSet` failed; the others wait for the task.
    async fn settle(&self, m: &mut Mutating<'_>, request_id: &str, idx: &[usize], resp: &wire::BatchTargetsResponse) {
        let accepted = Instant::now();
        let failed: HashSet<&str> = resp.fail_listener_id_set.iter().map(String::as_str).collect();
        let (bad, good): (Vec<usize>, Vec<usize>) =
            idx.iter().partition(|&&i| failed.contains(m.changes[i].binding.listener.as_str()));
        for &i in &bad {
            let binding = &m.changes[i].binding;
            let message = if resp.message.is_empty() {
                format!("CLB reported listener {} in FailListenerIdSet", binding.listener)
            } else {
                resp.message.clone()
            };
            m.outcomes[i] =
                Some(Err(Failure { code: "PartialFailure".into(), message, request_id: Some(request_id.into()) }));
            let other_rule = |j: &usize| {
                let b = &m.changes[*j].binding;
                b.listener == binding.listener && b != binding
            };
            if bad.iter().any(other_rule) {
                m.shared_failures.push(i);
            }
        }
        if good.is_empty() {
            return;
        }
        let result = match self.wait_task(m.lb, request_id, accepted).await {
            Ok(polls) => {
                debug!(lb = m.lb, task = request_id, polls, "task done");
                Ok(())
            }
            Err(e @ (Error::TaskFailed { .. } | Error::TaskTimeout { .. })) => Err(e.to_failure()),
            Err(other) => Err(Failure {
                code: "OutcomeUnknown".into(),
                message: format!(
                    "the call was accepted but the status of task {request_id} could not be read ({other}); the next run re-reads the targets"
                ),
                request_id: Some(request_id.into()),
            }),
        };
        for &i in &good {
            m.outcomes[i] = Some(result.clone());
        }
    }
}
