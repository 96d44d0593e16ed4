//! Stage 3, actual state: the bindings the rules name and the targets bound on them now, read from CLB.
//!
//! Per load balancer: one `DescribeListeners` to turn port + protocol (and domain + url) into listener and
//! location ids ([`bind`], pure), then `DescribeTargets` for just the listeners the rules name, and
//! `DescribeTargetHealth` when the planner asks for it. Any failure affects only the rules of that load balancer
//! (or that rule), which are then skipped, never planned against an empty set.

mod bind;

use std::collections::{BTreeMap, BTreeSet};

use bind::{refused, resolve};

use crate::clb::{Clb, Error, ErrorKind};
use crate::model::{Actual, Binding, BoundTarget, Health, RuleId, RuleTargets, Target};
use crate::rules::Rule;

/// The load balancers the rules name, as [`load_balancers`] found them.
#[derive(Debug, Default)]
pub struct LbCheck<'r> {
    /// Rules whose load balancer is missing, classic or unreadable, with the reason.
    pub unreadable: Actual,
    /// Readable load balancers with their rules, to be read with [`read_lb`].
    pub readable: Vec<LbRules<'r>>,
}

/// One load balancer and the rules that name it.
#[derive(Debug)]
pub struct LbRules<'r> {
    pub lb: &'r str,
    pub rules: Vec<&'r Rule>,
}

/// The load balancers the rules name, checked with `DescribeLoadBalancers` (20 per call).
pub async fn load_balancers<'r, C: Clb>(clb: &C, rules: &'r [Rule], region: &str) -> LbCheck<'r> {
    let mut by_lb: BTreeMap<&str, Vec<&Rule>> = BTreeMap::new();
    for rule in rules {
        by_lb.entry(rule.load_balancer_id.as_str()).or_default().push(rule);
    }
    let ids: Vec<String> = by_lb.keys().map(|s| s.to_string()).collect();
    let known = match clb.load_balancers(&ids).await {
        Ok(lbs) => lbs,
        Err(e) => {
            let reason = format!("reading load balancers {}: {}", ids.join(", "), with_hint(&e));
            return LbCheck { unreadable: every(rules.iter().map(|r| r.id), &reason), readable: Vec::new() };
        }
    };
    let mut check = LbCheck::default();
    for (lb, lb_rules) in by_lb {
        match refused(lb, known.iter().find(|l| l.id == lb), region) {
            Some(reason) => check.unreadable.extend(every(lb_rules.iter().map(|r| r.id), &reason)),
            None => check.readable.push(LbRules { lb, rules: lb_rules }),
        }
    }
    check
}

/// The same failure for each of `ids`.
fn every(ids: impl Iterator<Item = RuleId>, reason: &str) -> Actual {
    ids.map(|id| (id, Err(reason.to_owned()))).collect()
}

/// Reads one load balancer: its listeners, then the targets of the listeners `rules` name.
pub async fn read_lb<C: Clb>(clb: &C, lb: &str, rules: &[&Rule]) -> Actual {
    let listeners = match clb.listeners(lb).await {
        Ok(l) => l,
        Err(e) => return every(rules.iter().map(|r| r.id), &format!("reading listeners of {lb}: {}", with_hint(&e))),
    };
    let bindings: Vec<(RuleId, Result<Binding, String>)> =
        rules.iter().map(|r| (r.id, resolve(lb, &listeners, r))).collect();
    let listener_ids: Vec<String> = bindings
        .iter()
        .filter_map(|(_, b)| b.as_ref().ok().map(|b| b.listener.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let targets = if listener_ids.is_empty() {
        Vec::new()
    } else {
        match clb.targets(lb, &listener_ids).await {
            Ok(t) => t,
            Err(e) => {
                return every(rules.iter().map(|r| r.id), &format!("reading targets of {lb}: {}", with_hint(&e)));
            }
        }
    };
    let mut by_binding: BTreeMap<&Binding, Vec<BoundTarget>> = BTreeMap::new();
    for t in &targets {
        by_binding.entry(&t.binding).or_default().push(t.clone());
    }
    let bound = |binding: Binding| {
        let targets = by_binding.get(&binding).cloned().unwrap_or_default();
        RuleTargets { binding, targets }
    };
    bindings.into_iter().map(|(id, b)| (id, b.map(bound))).collect()
}

/// Reads what CLB's health checks say of the targets of `actual` (the rules of load balancer `lb`) and records it on
/// each bound target. Targets CLB does not report keep [`Health::Unknown`].
pub async fn read_health<C: Clb>(clb: &C, lb: &str, actual: &mut Actual) -> Result<(), String> {
    let listeners: BTreeSet<String> = actual.values().flatten().map(|r| r.binding.listener.clone()).collect();
    if listeners.is_empty() {
        return Ok(());
    }
    let listeners: Vec<String> = listeners.into_iter().collect();
    let health =
        clb.health(lb, &listeners).await.map_err(|e| format!("reading target health of {lb}: {}", with_hint(&e)))?;
    let by_target: BTreeMap<(&Binding, Target), Health> =
        health.iter().map(|h| ((&h.binding, h.target), h.health)).collect();
    for rule in actual.values_mut().flatten() {
        for t in &mut rule.targets {
            if let Some(h) = by_target.get(&(&t.binding, t.target)) {
                t.health = *h;
            }
        }
    }
    Ok(())
}

/// The error, plus what to check for the codes users hit most.
fn with_hint(e: &Error) -> String {
    let hint = match e {
        Error::Api(api) => match (api.kind(), api.code.as_str()) {
            (_, "AuthFailure.SignatureExpire") => Some("check the machine clock (it must be within 5 minutes of UTC)"),
            (_, "AuthFailure.SecretIdNotFound") | (_, "AuthFailure.InvalidSecretId") => {
                Some("check the SecretId (look for stray whitespace) and that the key is enabled")
            }
            (_, "AuthFailure.SignatureFailure") => Some("check the SecretKey belongs to the SecretId"),
            (_, "AuthFailure.TokenFailure") => {
                Some("the session token is invalid or expired: refresh the temporary credentials")
            }
            (ErrorKind::Auth, _) => Some("check the CAM policy of the key allows the clb actions clbsync uses"),
            (ErrorKind::Throttled, _) => {
                Some("the account's API rate limit is exhausted: lower --rate-limit or spread other tools' calls")
            }
            (ErrorKind::NotFound, _) => Some("check the ids in the rules file and --region"),
            _ => None,
        },
        Error::Transport { .. } => Some("check --endpoint / network access to the CLB API"),
        _ => None,
    };
    match hint {
        Some(h) => format!("{e}; {h}"),
        None => e.to_string(),
    }
}
