//! The readiness gate: which condition each gated pod gets, from the rules that select it and what the run did.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::desired::memory::pod;
use crate::model::{BoundTarget, GateCondition, Health, Pod, TargetKind};
use crate::rules::{Rules, parse};

/// Two rules on two load balancers select the pods of deployment shop/api.
const RULES: &str = "
- load_balancer_id: lb-00000001
  listeners:
    - port: 80
      protocol: http
      rules:
        - domain: shop.example.com
          url: /api
          backend: {namespace: shop, deployment: api, port: 8080}
- load_balancer_id: lb-00000002
  listeners:
    - port: 443
      protocol: tcp
      backend: {namespace: shop, deployment: api, port: 8443}
";

fn rules() -> Rules {
    parse("rules.yaml", RULES).expect("valid rules")
}

const PORTS: [u16; 2] = [8080, 8443];

fn binding(i: usize) -> Binding {
    Binding { lb: format!("lb-0000000{}", i + 1), listener: format!("lbl-{i}"), location: None }
}

/// What CLB holds on rule `i`: the pod 10.0.0.5 bound with `health`, or nothing.
fn bound(i: usize, health: Option<Health>) -> Result<RuleTargets, String> {
    let targets = health.into_iter().map(|health| BoundTarget {
        binding: binding(i),
        target: Target::new("10.0.0.5".parse::<IpAddr>().expect("ip"), PORTS[i]),
        weight: 10,
        kind: TargetKind::Ip,
        health,
        tag: String::new(),
    });
    Ok(RuleTargets { binding: binding(i), targets: targets.collect() })
}

fn gated() -> Pod {
    pod("api-1", "10.0.0.5").gated().containers_ready()
}

/// Plans `pods` against `actual` (one entry per rule), then the gate with every registration's outcome `applied`.
fn gate_plan(pods: Vec<Pod>, actual: &[Result<RuleTargets, String>], applied: Applied, gate_on: GateOn) -> Plan {
    let rules = rules();
    let rules: Vec<&Rule> = rules.rules.iter().collect();
    let lists: PodLists = [(rules[0].backend.pods.clone(), Ok(pods))].into_iter().collect();
    let opts = PlanOptions { gate_on, ..PlanOptions::default() };
    let mut plan = plan(&rules, &lists, actual, &opts);
    let rows = plan.rules.clone();
    let applied = |i: usize, j: usize| match rows[i].rows[j].action {
        Action::Register => applied.clone(),
        _ => Applied::NotRun,
    };
    plan_gate(&rules, &lists, &mut plan, applied, gate_on);
    plan
}

/// The single gate change of a plan: (status, reason).
fn only_change(plan: &Plan) -> (bool, &str, &str) {
    assert_eq!(plan.gate.len(), 1, "{:#?}", plan.gate);
    let c = &plan.gate[0].condition;
    (c.status, c.reason.as_str(), c.message.as_str())
}

#[test]
fn a_gated_pod_is_registered_on_containers_ready_without_waiting_for_ready() {
    let plan = gate_plan(vec![gated()], &[bound(0, None), bound(1, None)], Applied::NotRun, GateOn::Healthy);
    for rule in &plan.rules {
        assert_eq!(actions(&rule.rows), [("10.0.0.5".into(), Action::Register)]);
        assert!(rule.gate_waits);
    }
    let (status, reason, message) = only_change(&plan);
    assert_eq!((status, reason), (false, "RegistrationPending"));
    assert!(message.contains("lb-00000001 HTTP:80 shop.example.com/api (rules file line 7)"), "{message}");
    assert_eq!(plan.gate[0].pod, "api-1");
    assert!(plan.gate[0].transition);
}

#[test]
fn a_gated_pod_whose_containers_are_not_ready_is_neither_registered_nor_given_a_condition() {
    let plan = gate_plan(
        vec![pod("api-1", "10.0.0.5").gated()],
        &[bound(0, None), bound(1, None)],
        Applied::NotRun,
        GateOn::Healthy,
    );
    assert!(plan.rules.iter().all(|r| r.rows.is_empty()));
    assert!(plan.gate.is_empty());
}

#[test]
fn just_registered_targets_wait_for_health_checks_then_turn_true_once_healthy_on_every_rule() {
    let plan = gate_plan(vec![gated()], &[bound(0, None), bound(1, None)], Applied::Done, GateOn::Healthy);
    assert_eq!(only_change(&plan).1, "WaitingForHealthCheck");

    let probing = [bound(0, Some(Health::Healthy)), bound(1, Some(Health::Unhealthy))];
    let plan = gate_plan(vec![gated()], &probing, Applied::NotRun, GateOn::Healthy);
    let (status, reason, message) = only_change(&plan);
    assert_eq!((status, reason), (false, "WaitingForHealthCheck"));
    assert!(message.contains("lb-00000002 TCP:443"), "names the rule still probing: {message}");
    assert!(plan.rules.iter().all(|r| r.gate_waits));

    let healthy = [bound(0, Some(Health::Healthy)), bound(1, Some(Health::Healthy))];
    let plan = gate_plan(vec![gated()], &healthy, Applied::NotRun, GateOn::Healthy);
    assert_eq!(only_change(&plan), (true, "Registered", "bound and healthy on 2 rule(s)"));
    assert!(plan.gate[0].transition);
    assert!(plan.rules.iter().all(|r| !r.gate_waits));
}

#[test]
fn gate_on_bound_turns_true_as_soon_as_every_rule_is_bound() {
    let plan = gate_plan(vec![gated()], &[bound(0, None), bound(1, None)], Applied::Done, GateOn::Bound);
    assert!(only_change(&plan).0);
    let half = [bound(0, Some(Health::Unknown)), bound(1, None)];
    let plan = gate_plan(vec![gated()], &half, Applied::NotRun, GateOn::Bound);
    assert_eq!(only_change(&plan).1, "RegistrationPending");
}

#[test]
fn a_failed_registration_says_so_and_names_the_failure() {
    let failed = Applied::Failed("LimitExceeded: too many backends (RequestId r-1)".into());
    let plan = gate_plan(vec![gated()], &[bound(0, Some(Health::Healthy)), bound(1, None)], failed, GateOn::Healthy);
    let (status, reason, message) = only_change(&plan);
    assert_eq!((status, reason), (false, "RegistrationFailed"));
    assert!(message.contains("lb-00000002 TCP:443") && message.contains("LimitExceeded"), "{message}");
}

#[test]
fn a_skipped_rule_blocks_the_gate_but_keeps_a_true_condition() {
    let actual = [bound(0, Some(Health::Healthy)), Err("DescribeTargets: InternalError (RequestId r-2)".into())];
    let plan = gate_plan(vec![gated()], &actual, Applied::NotRun, GateOn::Healthy);
    let (status, reason, message) = only_change(&plan);
    assert_eq!((status, reason), (false, "RuleBlocked"));
    assert!(message.contains("lb-00000002 TCP:443") && message.contains("skipped"), "{message}");

    let registered = gated().gate_condition(true, "Registered", "bound and healthy on 2 rule(s)");
    let plan = gate_plan(vec![registered], &actual, Applied::NotRun, GateOn::Healthy);
    assert!(plan.gate.is_empty(), "a read error changes no condition: {:#?}", plan.gate);
}

#[test]
fn a_pod_that_cannot_be_a_target_of_a_rule_is_blocked_by_that_rule() {
    let mut no_port = gated();
    no_port.ports.clear();
    let rules = parse("rules.yaml", &RULES.replace("port: 8443}", "port: https}")).expect("valid rules");
    let rules: Vec<&Rule> = rules.rules.iter().collect();
    let lists: PodLists = [(rules[0].backend.pods.clone(), Ok(vec![no_port]))].into_iter().collect();
    let mut plan = plan(&rules, &lists, &[bound(0, Some(Health::Healthy)), bound(1, None)], &PlanOptions::default());
    plan_gate(&rules, &lists, &mut plan, |_, _| Applied::NotRun, GateOn::Healthy);
    let (status, reason, message) = only_change(&plan);
    assert_eq!((status, reason), (false, "RuleBlocked"));
    assert!(message.contains("no container port named `https`"), "{message}");
}

#[test]
fn pods_without_the_gate_get_no_condition_and_an_unchanged_one_is_not_written_again() {
    let healthy = [bound(0, Some(Health::Healthy)), bound(1, Some(Health::Healthy))];
    let plain = pod("api-1", "10.0.0.5").ready();
    assert!(gate_plan(vec![plain], &healthy, Applied::NotRun, GateOn::Healthy).gate.is_empty());
    let registered = gated().gate_condition(true, "Registered", "bound and healthy on 2 rule(s)");
    assert!(gate_plan(vec![registered], &healthy, Applied::NotRun, GateOn::Healthy).gate.is_empty());
}

#[test]
fn a_true_condition_goes_false_when_a_target_is_gone_or_the_containers_stop_being_ready() {
    let registered = gated().gate_condition(true, "Registered", "bound and healthy on 2 rule(s)");
    let plan = gate_plan(
        vec![registered.clone()],
        &[bound(0, Some(Health::Healthy)), bound(1, None)],
        Applied::NotRun,
        GateOn::Healthy,
    );
    assert_eq!(only_change(&plan).1, "RegistrationPending");
    assert!(plan.gate[0].transition);

    let mut crashed = registered;
    crashed.gate.as_mut().expect("gated").containers_ready = false;
    let plan = gate_plan(
        vec![crashed],
        &[bound(0, Some(Health::Healthy)), bound(1, Some(Health::Healthy))],
        Applied::NotRun,
        GateOn::Healthy,
    );
    assert!(!only_change(&plan).0);
    assert!(plan.gate[0].transition);
}

#[test]
fn health_is_read_only_while_a_gated_pod_waits() {
    let unread = [bound(0, Some(Health::Unknown)), bound(1, Some(Health::Unknown))];
    let needs = |pods: Vec<Pod>, gate_on| gate_plan(pods, &unread, Applied::NotRun, gate_on).needs_health();
    assert!(needs(vec![gated()], GateOn::Healthy));
    assert!(!needs(vec![gated()], GateOn::Bound));
    assert!(!needs(vec![gated().gate_condition(true, "Registered", "")], GateOn::Healthy));
    assert!(!needs(vec![pod("api-1", "10.0.0.5").ready()], GateOn::Healthy));
}

/// One rule's state for the pod: skipped, not bound, or bound with a health.
fn arb_rule_state() -> impl Strategy<Value = Option<Option<Health>>> {
    prop_oneof![
        Just(None),
        Just(Some(None)),
        Just(Some(Some(Health::Unknown))),
        Just(Some(Some(Health::Healthy))),
        Just(Some(Some(Health::Unhealthy))),
    ]
}

fn arb_condition() -> impl Strategy<Value = Option<GateCondition>> {
    prop_oneof![
        Just(None),
        Just(Some(GateCondition { status: true, reason: "Registered".into(), message: String::new() })),
        Just(Some(GateCondition { status: false, reason: "WaitingForHealthCheck".into(), message: String::new() })),
    ]
}

fn arb_applied() -> impl Strategy<Value = Applied> {
    prop_oneof![Just(Applied::NotRun), Just(Applied::Done), Just(Applied::Failed("InternalError: x".into()))]
}

proptest! {
    #[test]
    fn the_gate_is_never_set_true_unless_bound_on_every_selecting_rule_and_healthy(
        states in proptest::collection::vec(arb_rule_state(), 2),
        condition in arb_condition(),
        applied in arb_applied(),
        on_bound in any::<bool>(),
        containers_ready in any::<bool>(),
    ) {
        let gate_on = if on_bound { GateOn::Bound } else { GateOn::Healthy };
        let actual: Vec<_> = states
            .iter()
            .enumerate()
            .map(|(i, s)| match s {
                None => Err("skipped".to_string()),
                Some(health) => bound(i, *health),
            })
            .collect();
        let mut p = gated();
        p.gate.as_mut().expect("gated").containers_ready = containers_ready;
        p.gate.as_mut().expect("gated").condition = condition;
        let plan = gate_plan(vec![p], &actual, applied.clone(), gate_on);
        for change in plan.gate.iter().filter(|c| c.condition.status) {
            for (i, state) in states.iter().enumerate() {
                let Some(Some(health)) = state else {
                    // Not bound before this run: bound only by a registration that succeeded now, and a
                    // just-registered target is not healthy yet.
                    prop_assert!(state.is_some() && applied == Applied::Done && gate_on == GateOn::Bound, "{change:?} on rule {i}");
                    continue;
                };
                prop_assert!(gate_on == GateOn::Bound || *health == Health::Healthy, "{change:?}: {health:?} on rule {i}");
            }
            prop_assert!(containers_ready);
        }
    }

    #[test]
    fn pods_without_the_gate_never_get_a_condition(
        states in proptest::collection::vec(arb_rule_state(), 2),
        applied in arb_applied(),
        ready in any::<bool>(),
    ) {
        let actual: Vec<_> = states
            .iter()
            .enumerate()
            .map(|(i, s)| s.map_or_else(|| Err("skipped".to_string()), |h| bound(i, h)))
            .collect();
        let p = if ready { pod("api-1", "10.0.0.5").ready() } else { pod("api-1", "10.0.0.5") };
        let plan = gate_plan(vec![p], &actual, applied, GateOn::Healthy);
        prop_assert!(plan.gate.is_empty());
        prop_assert!(plan.rules.iter().all(|r| !r.gate_waits));
    }
}
