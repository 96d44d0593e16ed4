//! The pure checks of actual state: whether a load balancer can be used, and which binding a rule names.

use crate::clb::{Listener, LoadBalancer};
use crate::model::Binding;
use crate::rules::Rule;

/// Why the rules of load balancer `lb` cannot be planned, given what `DescribeLoadBalancers` said of it (`None`:
/// not found in `region`); `None` when it can.
pub fn refused(lb: &str, found: Option<&LoadBalancer>, region: &str) -> Option<String> {
    match found {
        None => Some(format!(
            "load balancer {lb} not found in region {region}: check load_balancer_id in the rules file and --region"
        )),
        Some(l) if l.classic => Some(format!(
            "load balancer {lb} is a classic CLB, which clbsync does not support (its targets use the *WithClassicalLB actions)"
        )),
        Some(_) => None,
    }
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
