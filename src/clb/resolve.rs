//! Stage 3a: from rules to bindings and the targets bound on them now.
//!
//! Per load balancer: one `DescribeListeners` to turn port + protocol (and domain + url) into listener and
//! location ids, then `DescribeTargets` for just the listeners the rules name. Any failure affects only the
//! rules of that load balancer (or that rule), which are then skipped, never planned against an empty set.

use std::collections::{BTreeMap, BTreeSet};

use super::{Clb, Error, ErrorKind, Listener};
use crate::model::{Binding, BoundTarget, Health, RuleTargets, Target};
use crate::rules::Rule;

/// The load balancers the rules name, as [`load_balancers`] found them.
#[derive(Debug, Default)]
pub struct LbCheck<'r> {
    /// Rules whose load balancer is missing, classic or unreadable, by index, with the reason.
    pub unreadable: Vec<(usize, String)>,
    /// Readable load balancers with the indices of their rules, to be read with [`read_lb`].
    pub readable: Vec<LbRules<'r>>,
}

/// One load balancer and the indices of the rules that name it.
#[derive(Debug)]
pub struct LbRules<'r> {
    pub lb: &'r str,
    pub rules: Vec<usize>,
}

/// The load balancers the rules name, checked with `DescribeLoadBalancers` (20 per call).
pub async fn load_balancers<'r, C: Clb>(clb: &C, rules: &'r [Rule], region: &str) -> LbCheck<'r> {
    let mut by_lb: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, rule) in rules.iter().enumerate() {
        by_lb.entry(rule.load_balancer_id.as_str()).or_default().push(i);
    }
    let ids: Vec<String> = by_lb.keys().map(|s| s.to_string()).collect();
    let mut failed = Vec::new();

    let known = match clb.load_balancers(&ids).await {
        Ok(lbs) => lbs,
        Err(e) => {
            let reason = format!("reading load balancers {}: {}", ids.join(", "), with_hint(&e));
            return LbCheck {
                unreadable: (0..rules.len()).map(|i| (i, reason.clone())).collect(),
                readable: Vec::new(),
            };
        }
    };
    let mut readable = Vec::new();
    for (lb, idx) in by_lb {
        let reason = match known.iter().find(|l| l.id == lb) {
            None => Some(format!(
                "load balancer {lb} not found in region {region}: check load_balancer_id in the rules file and --region"
            )),
            Some(l) if l.classic => Some(format!(
                "load balancer {lb} is a classic CLB, which clbsync does not support (its targets use the *WithClassicalLB actions)"
            )),
            Some(_) => None,
        };
        match reason {
            Some(r) => failed.extend(idx.iter().map(|&i| (i, r.clone()))),
            None => readable.push(LbRules { lb, rules: idx }),
        }
    }
    LbCheck { unreadable: failed, readable }
}

/// Reads one load balancer: its listeners, then the targets of the listeners `rules` name. One entry per rule.
pub async fn read_lb<C: Clb>(clb: &C, lb: &str, rules: &[&Rule]) -> Vec<Result<RuleTargets, String>> {
    let listeners = match clb.listeners(lb).await {
        Ok(l) => l,
        Err(e) => {
            let reason = format!("reading listeners of {lb}: {}", with_hint(&e));
            return rules.iter().map(|_| Err(reason.clone())).collect();
        }
    };
    let bindings: Vec<Result<Binding, String>> = rules.iter().map(|r| resolve(lb, &listeners, r)).collect();
    let listener_ids: Vec<String> = bindings
        .iter()
        .filter_map(|b| b.as_ref().ok().map(|b| b.listener.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if listener_ids.is_empty() {
        return bindings.into_iter().map(|b| b.map(|binding| RuleTargets { binding, targets: Vec::new() })).collect();
    }
    let targets = match clb.targets(lb, &listener_ids).await {
        Ok(t) => t,
        Err(e) => {
            let reason = format!("reading targets of {lb}: {}", with_hint(&e));
            return rules.iter().map(|_| Err(reason.clone())).collect();
        }
    };
    let mut by_binding: BTreeMap<&Binding, Vec<BoundTarget>> = BTreeMap::new();
    for t in &targets {
        by_binding.entry(&t.binding).or_default().push(t.clone());
    }
    bindings
        .into_iter()
        .map(|b| {
            b.map(|binding| {
                let targets = by_binding.get(&binding).cloned().unwrap_or_default();
                RuleTargets { binding, targets }
            })
        })
        .collect()
}

/// Reads what CLB's health checks say of the targets of `actual` (the rules of load balancer `lb`) and records it on
/// each bound target. Targets CLB does not report keep [`Health::Unknown`].
pub async fn read_health<C: Clb>(clb: &C, lb: &str, actual: &mut [Result<RuleTargets, String>]) -> Result<(), String> {
    let listeners: BTreeSet<String> = actual.iter().flatten().map(|r| r.binding.listener.clone()).collect();
    if listeners.is_empty() {
        return Ok(());
    }
    let listeners: Vec<String> = listeners.into_iter().collect();
    let health =
        clb.health(lb, &listeners).await.map_err(|e| format!("reading target health of {lb}: {}", with_hint(&e)))?;
    let by_target: BTreeMap<(&Binding, Target), Health> =
        health.iter().map(|h| ((&h.binding, h.target), h.health)).collect();
    for rule in actual.iter_mut().flatten() {
        for t in &mut rule.targets {
            if let Some(h) = by_target.get(&(&t.binding, t.target)) {
                t.health = *h;
            }
        }
    }
    Ok(())
}

/// Finds the listener (and L7 rule) a rule names, by id or by port + protocol (domain + url), and refuses
/// ones whose backends are not bound directly (`TargetType` other than `NODE`).
pub fn resolve(lb: &str, listeners: &[Listener], rule: &Rule) -> Result<Binding, String> {
    let spec = &rule.listener;
    let proto = spec.protocol.api_name();
    let listener = match &spec.listener_id {
        Some(id) => {
            let l = listeners.iter().find(|l| &l.id == id).ok_or_else(|| {
                format!(
                    "listener {id} not found on {lb}: check listener_id (rules file line {})",
                    rule.id_lines.listener_id
                )
            })?;
            if !l.protocol.eq_ignore_ascii_case(proto) || l.port != spec.port {
                return Err(format!(
                    "listener {id} on {lb} is {}:{}, but the rule says {proto}:{}: fix port/protocol or listener_id (line {})",
                    l.protocol, l.port, spec.port, rule.id_lines.listener_id
                ));
            }
            l
        }
        None => listeners.iter().find(|l| l.port == spec.port && l.protocol.eq_ignore_ascii_case(proto)).ok_or_else(
            || {
                format!(
                    "no {proto} listener on port {} of {lb}: check port and protocol (rules file line {})",
                    spec.port, rule.line
                )
            },
        )?,
    };
    let Some(l7) = &rule.l7 else {
        check_node(&listener.target_type, || format!("listener {} of {lb}", listener.id))?;
        return Ok(Binding { lb: lb.to_string(), listener: listener.id.clone(), location: None });
    };
    let found = match &l7.location_id {
        Some(loc) => {
            let line = rule.id_lines.location_id;
            let found = listener.rules.iter().find(|r| &r.location_id == loc).ok_or_else(|| {
                format!("rule {loc} not found on listener {} of {lb}: check location_id (line {line})", listener.id)
            })?;
            // An id that names another site's rule would hand that site's backends to these pods.
            if found.domain != l7.domain || found.url != l7.url {
                return Err(format!(
                    "{loc} is {}{}, the rules file says {}{}: fix domain/url or location_id (line {line})",
                    found.domain, found.url, l7.domain, l7.url
                ));
            }
            found
        }
        None => listener.rules.iter().find(|r| r.domain == l7.domain && r.url == l7.url).ok_or_else(|| {
            format!(
                "no rule for {}{} on listener {} ({proto}:{}) of {lb}: create it in CLB or fix domain/url (line {})",
                l7.domain, l7.url, listener.id, spec.port, rule.line
            )
        })?,
    };
    check_node(&found.target_type, || format!("rule {} of listener {} of {lb}", found.location_id, listener.id))?;
    Ok(Binding { lb: lb.to_string(), listener: listener.id.clone(), location: Some(found.location_id.clone()) })
}

fn check_node(target_type: &str, what: impl Fn() -> String) -> Result<(), String> {
    if target_type.is_empty() || target_type.eq_ignore_ascii_case("NODE") {
        Ok(())
    } else {
        Err(format!(
            "{} binds backends through a target group (TargetType {target_type}); clbsync binds targets directly and needs TargetType NODE",
            what()
        ))
    }
}

/// The error, plus what to check for the codes users hit most.
pub fn with_hint(e: &Error) -> String {
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
