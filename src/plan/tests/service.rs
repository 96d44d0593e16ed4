//! `service:` backends (issue 29): the target port is the one the Service's port names, resolved per pod when it is a
//! container-port name; without it the rule is skipped, never planned on the Service's own port number.

use super::*;
use crate::model::{Pod, RuleTargets, Selected};
use crate::rules::{PortRef, Rules, parse};

/// One rule naming port `http` of Service shop/web.
fn rules() -> Rules {
    let text = "
- load_balancer_id: lb-00000001
  listeners:
    - {port: 80, protocol: tcp, backend: {namespace: shop, service: web, port: http}}
";
    parse("rules.yaml", text).expect("valid rules")
}

/// A ready pod whose container port `serve` is `port`.
fn pod(name: &str, ip: &str, port: u16) -> Pod {
    Pod {
        name: name.into(),
        phase: "Running".into(),
        ready: true,
        terminating: false,
        terminating_since: None,
        ips: vec![ip.parse().expect("test IP")],
        ports: vec![("serve".into(), port)],
        gate: None,
    }
}

fn planned(selected: Selected) -> RulePlan {
    let rules = rules();
    let rules: Vec<&Rule> = rules.rules.iter().collect();
    let binding = Binding { lb: "lb-00000001".into(), listener: "lbl-1".into(), location: None };
    let actual = by_rule([Ok(RuleTargets { binding, targets: Vec::new() })]);
    let lists: PodLists = [(rules[0].backend.pods.clone(), Ok(selected))].into_iter().collect();
    plan(&rules, &lists, &actual, &PodsByIp::new(), &PlanOptions::default()).rules.remove(0)
}

fn registered(rule: &RulePlan) -> Vec<String> {
    rule.rows.iter().filter(|r| r.action == Action::Register).map(|r| r.target.to_string()).collect()
}

#[test]
fn a_named_target_port_is_resolved_on_each_pod() {
    let pods = vec![pod("a", "10.0.0.1", 8081), pod("b", "10.0.0.2", 8082)];
    let rule = planned(Selected { target_port: Some(PortRef::Name("serve".into())), ..Selected::from(pods) });
    assert_eq!(rule.status, Status::Ready);
    assert_eq!(registered(&rule), ["10.0.0.1:8081", "10.0.0.2:8082"]);
}

#[test]
fn a_numbered_target_port_is_the_port_of_every_pod() {
    let pods = vec![pod("a", "10.0.0.1", 8081)];
    let rule = planned(Selected { target_port: Some(PortRef::Number(9000)), ..Selected::from(pods) });
    assert_eq!(registered(&rule), ["10.0.0.1:9000"]);
}

#[test]
fn a_pod_without_the_named_target_port_is_a_warning_that_names_the_services_port() {
    let mut other = pod("c", "10.0.0.3", 8083);
    other.ports = vec![("metrics".into(), 9100)];
    let pods = vec![pod("a", "10.0.0.1", 8081), other];
    let rule = planned(Selected { target_port: Some(PortRef::Name("serve".into())), ..Selected::from(pods) });
    assert_eq!(registered(&rule), ["10.0.0.1:8081"]);
    assert_eq!(
        rule.warnings,
        ["pod c has no container port named `serve`, skipped: check the targetPort of port `http` of service shop/web"]
    );
}

#[test]
fn without_the_services_target_port_the_rule_is_skipped_not_planned_on_the_service_port() {
    let rule = planned(Selected::from(vec![pod("a", "10.0.0.1", 8081)]));
    assert!(matches!(&rule.status, Status::Skipped { reason } if reason.contains("target port")), "{:?}", rule.status);
    assert!(rule.rows.is_empty());
}
