//! The [`Clb`] trait over [`ClbClient`]: reads mapped to the engine's types, and mutations split into calls
//! within the per-call limits, with the per-binding fallback, partial failures and task settlement.
//!
//! Mutations of one load balancer are sequential: chunks go one after another, each waited for. Batch actions
//! come first (`Batch(De)RegisterTargets`, 500 targets; `BatchModifyTargetWeight`, 100 × 50, 500 total); if
//! one answers `UnsupportedOperation` or `InvalidAction`, the rest of the call uses `RegisterTargets` /
//! `DeregisterTargets` / `ModifyTargetWeight` per binding, 20 targets each.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::Serialize;
use tracing::{debug, info, warn};

use super::batch::{self, Planned, WithWeight};
use super::http::{ClbClient, Kind};
use super::wire;
use super::{BoundTarget, Change, Clb, Error, Failure, Listener, ListenerRule, LoadBalancer, Outcomes, TargetKind};
use crate::model::{Binding, Target};

/// The three mutations, each with its batch action and its per-binding fallback.
#[derive(Clone, Copy, Debug)]
enum Op {
    Register,
    Deregister,
    Weight,
}

impl Op {
    fn batch_action(self) -> &'static str {
        match self {
            Op::Register => "BatchRegisterTargets",
            Op::Deregister => "BatchDeregisterTargets",
            Op::Weight => "BatchModifyTargetWeight",
        }
    }

    fn single_action(self) -> &'static str {
        match self {
            Op::Register => "RegisterTargets",
            Op::Deregister => "DeregisterTargets",
            Op::Weight => "ModifyTargetWeight",
        }
    }

    fn weight(self) -> WithWeight {
        match self {
            Op::Deregister => WithWeight::No,
            Op::Register | Op::Weight => WithWeight::Yes,
        }
    }
}

/// Codes after which a batch action is replaced by its per-binding action.
fn batch_unsupported(code: &str) -> bool {
    code == "UnsupportedOperation" || code.starts_with("UnsupportedOperation.") || code == "InvalidAction"
}

impl ClbClient {
    /// Sends the planned calls one after another and records one outcome per change. Stops at the first call the
    /// API refuses as unsupported and returns the index of that call, so the caller can fall back.
    async fn run_calls<R: Serialize>(
        &self,
        lb: &str,
        action: &'static str,
        calls: &[Planned<R>],
        changes: &[Change],
        outcomes: &mut [Option<Result<(), Failure>>],
        fallback_allowed: bool,
    ) -> Option<usize> {
        for (k, call) in calls.iter().enumerate() {
            match self.call::<_, wire::BatchTargetsResponse>(action, lb, Kind::Write, &call.request).await {
                Ok((resp, request_id)) => {
                    self.settle(lb, &request_id, &call.changes, changes, &resp, outcomes).await;
                }
                Err(Error::Api(e)) if fallback_allowed && batch_unsupported(&e.code) => {
                    warn!(action, lb, code = %e.code, request_id = %e.request_id, "batch action refused; falling back to per-binding actions");
                    return Some(k);
                }
                Err(e) => {
                    let failure = e.to_failure();
                    for &i in &call.changes {
                        outcomes[i] = Some(Err(failure.clone()));
                    }
                }
            }
        }
        None
    }

    /// Outcomes of one accepted call: listeners in `FailListenerIdSet` failed; the others wait for the task.
    async fn settle(
        &self,
        lb: &str,
        request_id: &str,
        idx: &[usize],
        changes: &[Change],
        resp: &wire::BatchTargetsResponse,
        outcomes: &mut [Option<Result<(), Failure>>],
    ) {
        let failed: HashSet<&str> = resp.fail_listener_id_set.iter().map(String::as_str).collect();
        let (bad, good): (Vec<usize>, Vec<usize>) =
            idx.iter().partition(|&&i| failed.contains(changes[i].binding.listener.as_str()));
        for &i in &bad {
            let message = if resp.message.is_empty() {
                format!("CLB reported listener {} in FailListenerIdSet", changes[i].binding.listener)
            } else {
                resp.message.clone()
            };
            outcomes[i] =
                Some(Err(Failure { code: "PartialFailure".into(), message, request_id: Some(request_id.into()) }));
        }
        if good.is_empty() {
            return;
        }
        let result = match self.wait_task(lb, request_id).await {
            Ok(polls) => {
                debug!(lb, task = request_id, polls, "task done");
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
            outcomes[i] = Some(result.clone());
        }
    }

    /// One mutation: batch calls first, per-binding calls if the batch action is unsupported.
    async fn mutate(&self, lb: &str, changes: &[Change], op: Op) -> Outcomes {
        let mut outcomes: Vec<Option<Result<(), Failure>>> = vec![None; changes.len()];
        let mut idx = Vec::with_capacity(changes.len());
        for (i, c) in changes.iter().enumerate() {
            if c.binding.lb == lb {
                idx.push(i);
            } else {
                let message = format!("change for {} was sent with load balancer {lb}", c.binding);
                outcomes[i] = Some(Err(Failure { code: "Refused".into(), message, request_id: None }));
            }
        }
        let action = op.batch_action();
        let rest: Option<Vec<usize>> = match op {
            Op::Weight => {
                let calls = batch::batch_weights(lb, changes, &idx);
                let stop = self.run_calls(lb, action, &calls, changes, &mut outcomes, true).await;
                stop.map(|k| calls[k..].iter().flat_map(|c| c.changes.iter().copied()).collect())
            }
            Op::Register | Op::Deregister => {
                let calls = batch::batch_targets(lb, changes, &idx, op.weight());
                let stop = self.run_calls(lb, action, &calls, changes, &mut outcomes, true).await;
                stop.map(|k| calls[k..].iter().flat_map(|c| c.changes.iter().copied()).collect())
            }
        };
        if let Some(rest) = rest {
            let single = op.single_action();
            info!(lb, action = single, changes = rest.len(), "using per-binding actions, 20 targets per call");
            let calls = batch::per_binding(lb, changes, &rest, op.weight());
            self.run_calls(lb, single, &calls, changes, &mut outcomes, false).await;
        }
        outcomes
            .into_iter()
            .map(|o| o.expect("every change is in exactly one planned call or refused up front"))
            .collect()
    }
}

/// Unique ids in first-seen order.
fn dedup(ids: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.iter().filter(|id| seen.insert(id.as_str())).cloned().collect()
}

/// A `DescribeTargets` backend as a [`BoundTarget`], or `None` (logged) when it has no usable private IP.
fn bound_target(binding: &Binding, b: &wire::Backend) -> Option<BoundTarget> {
    let Some(ip) = b.private_ip_addresses.first().and_then(|ip| ip.parse::<IpAddr>().ok()) else {
        warn!(%binding, instance = %b.instance_id, port = b.port, ips = ?b.private_ip_addresses, "skipping a backend without a usable private IP");
        return None;
    };
    let kind = if b.r#type.eq_ignore_ascii_case("ENI") {
        TargetKind::Ip
    } else {
        TargetKind::Instance { kind: b.r#type.clone(), instance_id: b.instance_id.clone() }
    };
    Some(BoundTarget { binding: binding.clone(), target: Target::new(ip, b.port), weight: b.weight, kind })
}

impl Clb for ClbClient {
    async fn load_balancers(&self, ids: &[String]) -> Result<Vec<LoadBalancer>, Error> {
        let mut out = Vec::new();
        for chunk in dedup(ids).chunks(batch::DESCRIBE_IDS_MAX) {
            let req =
                wire::DescribeLoadBalancersRequest { load_balancer_ids: chunk.to_vec(), offset: None, limit: None };
            let (resp, _) = self
                .call::<_, wire::DescribeLoadBalancersResponse>("DescribeLoadBalancers", "-", Kind::Read, &req)
                .await?;
            out.extend(resp.load_balancer_set.into_iter().map(|lb| LoadBalancer {
                id: lb.load_balancer_id,
                name: lb.load_balancer_name,
                classic: lb.forward == Some(0),
            }));
        }
        Ok(out)
    }

    async fn listeners(&self, lb: &str) -> Result<Vec<Listener>, Error> {
        let req = wire::DescribeListenersRequest { load_balancer_id: lb.to_string(), listener_ids: Vec::new() };
        let (resp, _) =
            self.call::<_, wire::DescribeListenersResponse>("DescribeListeners", lb, Kind::Read, &req).await?;
        Ok(resp
            .listeners
            .into_iter()
            .map(|l| Listener {
                id: l.listener_id,
                protocol: l.protocol,
                port: l.port,
                target_type: l.target_type,
                rules: l
                    .rules
                    .into_iter()
                    .map(|r| ListenerRule {
                        location_id: r.location_id,
                        domain: r.domain,
                        url: r.url,
                        target_type: r.target_type,
                    })
                    .collect(),
            })
            .collect())
    }

    async fn targets(&self, lb: &str, listener_ids: &[String]) -> Result<Vec<BoundTarget>, Error> {
        let mut out = Vec::new();
        // An empty ListenerIds would mean "every listener": never send one.
        for chunk in dedup(listener_ids).chunks(batch::DESCRIBE_IDS_MAX) {
            let req = wire::DescribeTargetsRequest { load_balancer_id: lb.to_string(), listener_ids: chunk.to_vec() };
            let (resp, _) =
                self.call::<_, wire::DescribeTargetsResponse>("DescribeTargets", lb, Kind::Read, &req).await?;
            for l in resp.listeners {
                let binding = Binding { lb: lb.to_string(), listener: l.listener_id.clone(), location: None };
                out.extend(l.targets.iter().filter_map(|b| bound_target(&binding, b)));
                for rule in &l.rules {
                    let binding = Binding { location: Some(rule.location_id.clone()), ..binding.clone() };
                    out.extend(rule.targets.iter().filter_map(|b| bound_target(&binding, b)));
                }
            }
        }
        Ok(out)
    }

    async fn register(&self, lb: &str, changes: &[Change]) -> Outcomes {
        self.mutate(lb, changes, Op::Register).await
    }

    async fn set_weight(&self, lb: &str, changes: &[Change]) -> Outcomes {
        self.mutate(lb, changes, Op::Weight).await
    }

    async fn deregister(&self, lb: &str, changes: &[Change]) -> Outcomes {
        self.mutate(lb, changes, Op::Deregister).await
    }
}
