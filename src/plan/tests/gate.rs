//! The readiness gate: which condition each gated pod gets, from the rules that select it and what the run did.

use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::model::testing::pod;
use crate::model::{BoundTarget, GateCondition, Health, Pod, RuleTargets, TargetKind};
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
fn gate_plan(pods: Vec<Pod>, actual: &[Result<RuleTargets, String>], applied: RowResult, gate_on: GateOn) -> Plan {
    let opts = PlanOptions { gate_on, ..PlanOptions::default() };
    gate_plan_with(
        pods,
        actual,
        |action| if action == Action::Register { applied.clone() } else { RowResult::NotRun },
        &opts,
    )
}

/// [`gate_plan`] with options, and what became of each row's change by its action.
fn gate_plan_with(
    pods: Vec<Pod>,
    actual: &[Result<RuleTargets, String>],
    applied: impl Fn(Action) -> RowResult,
    opts: &PlanOptions,
) -> Plan {
    let file = rules();
    let rules: Vec<&Rule> = file.rules.iter().collect();
    let lists: PodLists = [(rules[0].backend.pods.clone(), Ok(pods.into()))].into_iter().collect();
    let mut plan = plan(&rules, &lists, &by_rule(actual.iter().cloned()), &PodsByIp::new(), opts);
    plan_gate(&file, &lists, &mut plan, |_, row| applied(row.action), opts.gate_on);
    plan
}

/// What CLB holds on rule `i`: the pod 10.0.0.5 bound, healthy, at `weight` with `tag`.
fn bound_at(i: usize, weight: u8, tag: &str) -> Result<RuleTargets, String> {
    let mut rule = bound(i, Some(Health::Healthy))?;
    rule.targets[0].weight = weight;
    rule.targets[0].tag = tag.into();
    Ok(rule)
}

/// Issue 24 #10: a target at weight 0 takes no traffic. Bound means bound at the weight the plan gives it: an
/// untagged target under `--owner`, or a reweight from 0 that failed or did not run, is not bound.
#[test]
fn a_target_at_weight_0_or_short_of_its_planned_weight_does_not_turn_the_gate_true() {
    let owner = PlanOptions { owner: Some(crate::model::Owner::new("a").expect("owner")), ..PlanOptions::default() };
    let untagged = [bound_at(0, 0, ""), bound_at(1, 10, "clbsync:a")];
    let plan = gate_plan_with(vec![gated()], &untagged, |_| RowResult::NotRun, &owner);
    let (status, reason, message) = only_change(&plan);
    assert_eq!((status, reason), (false, "RegistrationPending"), "{message}");
    assert!(message.contains("at weight 0: bound, untagged"), "{message}");

    let drained = [bound_at(0, 0, ""), bound_at(1, 10, "")];
    assert_eq!(
        plan_actions(&gate_plan_with(vec![gated()], &drained, |_| RowResult::NotRun, &PlanOptions::default()))[0],
        Action::Reweight
    );
    for (applied, want) in [
        (RowResult::NotRun, "RegistrationPending"),
        (RowResult::Failed("InternalError: x (RequestId r-3)".into()), "RegistrationFailed"),
    ] {
        let plan = gate_plan_with(vec![gated()], &drained, |_| applied.clone(), &PlanOptions::default());
        let (status, reason, message) = only_change(&plan);
        assert_eq!((status, reason), (false, want), "{message}");
    }
    let plan = gate_plan_with(vec![gated()], &drained, |_| RowResult::Done, &PlanOptions::default());
    assert!(only_change(&plan).0, "a reweight done in this run binds it at its weight");

    // Another owner's target of our pod that takes a weight serves it: bound.
    let foreign = [bound_at(0, 10, "clbsync:b"), bound_at(1, 10, "clbsync:a")];
    let plan = gate_plan_with(vec![gated()], &foreign, |_| RowResult::NotRun, &owner);
    assert!(only_change(&plan).0);
}

/// A serving target whose weight changes (a split's re-weight, a `weight:` edit) stays registered: a re-weight
/// that fails, does not run or is held leaves a True condition True (it flipped the pod NotReady before).
#[test]
fn a_reweight_of_a_serving_target_keeps_its_gate_true_whatever_becomes_of_it() {
    let serving = [bound_at(0, 15, ""), bound_at(1, 10, "")];
    let registered = gated().gate_condition(true, "Registered", "bound and healthy on 2 rule(s)");
    let opts = PlanOptions::default();
    assert_eq!(
        plan_actions(&gate_plan_with(vec![registered.clone()], &serving, |_| RowResult::NotRun, &opts))[0],
        Action::Reweight
    );
    for applied in [RowResult::NotRun, RowResult::Failed("RequestLimitExceeded: slow down (RequestId r-4)".into())] {
        let plan = gate_plan_with(vec![registered.clone()], &serving, |_| applied.clone(), &opts);
        assert!(plan.gate.is_empty(), "{applied:?}: {:#?}", plan.gate);
    }
}

/// The first row's action of each rule.
fn plan_actions(plan: &Plan) -> Vec<Action> {
    plan.rules.iter().map(|r| r.rows[0].action).collect()
}

/// The single gate change of a plan: (status, reason).
fn only_change(plan: &Plan) -> (bool, &str, &str) {
    assert_eq!(plan.gate.len(), 1, "{:#?}", plan.gate);
    let c = &plan.gate[0].condition;
    (c.status, c.reason.as_str(), c.message.as_str())
}

#[test]
fn a_gated_pod_is_registered_on_containers_ready_without_waiting_for_ready() {
    let plan = gate_plan(vec![gated()], &[bound(0, None), bound(1, None)], RowResult::NotRun, GateOn::Healthy);
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
        RowResult::NotRun,
        GateOn::Healthy,
    );
    assert!(plan.rules.iter().all(|r| r.rows.is_empty()));
    assert!(plan.gate.is_empty());
}

#[test]
fn just_registered_targets_wait_for_health_checks_then_turn_true_once_healthy_on_every_rule() {
    let plan = gate_plan(vec![gated()], &[bound(0, None), bound(1, None)], RowResult::Done, GateOn::Healthy);
    assert_eq!(only_change(&plan).1, "WaitingForHealthCheck");

    let probing = [bound(0, Some(Health::Healthy)), bound(1, Some(Health::Unhealthy))];
    let plan = gate_plan(vec![gated()], &probing, RowResult::NotRun, GateOn::Healthy);
    let (status, reason, message) = only_change(&plan);
    assert_eq!((status, reason), (false, "WaitingForHealthCheck"));
    assert!(message.contains("lb-00000002 TCP:443"), "names the rule still probing: {message}");
    assert!(plan.rules.iter().all(|r| r.gate_waits));

    let healthy = [bound(0, Some(Health::Healthy)), bound(1, Some(Health::Healthy))];
    let plan = gate_plan(vec![gated()], &healthy, RowResult::NotRun, GateOn::Healthy);
    assert_eq!(only_change(&plan), (true, "Registered", "bound and healthy on 2 rule(s)"));
    assert!(plan.gate[0].transition);
    assert!(plan.rules.iter().all(|r| !r.gate_waits));
}

#[test]
fn gate_on_bound_turns_true_as_soon_as_every_rule_is_bound() {
    let plan = gate_plan(vec![gated()], &[bound(0, None), bound(1, None)], RowResult::Done, GateOn::Bound);
    assert!(only_change(&plan).0);
    let half = [bound(0, Some(Health::Unknown)), bound(1, None)];
    let plan = gate_plan(vec![gated()], &half, RowResult::NotRun, GateOn::Bound);
    assert_eq!(only_change(&plan).1, "RegistrationPending");
}

#[test]
fn a_failed_registration_says_so_and_names_the_failure() {
    let failed = RowResult::Failed("LimitExceeded: too many backends (RequestId r-1)".into());
    let plan = gate_plan(vec![gated()], &[bound(0, Some(Health::Healthy)), bound(1, None)], failed, GateOn::Healthy);
    let (status, reason, message) = only_change(&plan);
    assert_eq!((status, reason), (false, "RegistrationFailed"));
    assert!(message.contains("lb-00000002 TCP:443") && message.contains("LimitExceeded"), "{message}");
}

#[test]
fn a_skipped_rule_blocks_the_gate_but_keeps_a_true_condition() {
    let actual = [bound(0, Some(Health::Healthy)), Err("DescribeTargets: InternalError (RequestId r-2)".into())];
    let plan = gate_plan(vec![gated()], &actual, RowResult::NotRun, GateOn::Healthy);
    let (status, reason, message) = only_change(&plan);
    assert_eq!((status, reason), (false, "RuleBlocked"));
    assert!(message.contains("lb-00000002 TCP:443") && message.contains("skipped"), "{message}");

    let registered = gated().gate_condition(true, "Registered", "bound and healthy on 2 rule(s)");
    let plan = gate_plan(vec![registered], &actual, RowResult::NotRun, GateOn::Healthy);
    assert!(plan.gate.is_empty(), "a read error changes no condition: {:#?}", plan.gate);
}

/// Plans the gate of `pods` with the rules file `text` (the two rules of [`RULES`], changed).
fn gate_plan_rules(text: &str, pods: Vec<Pod>, actual: &[Result<RuleTargets, String>]) -> Plan {
    let file = parse("rules.yaml", text).expect("valid rules");
    let rules: Vec<&Rule> = file.rules.iter().collect();
    let lists: PodLists = [(rules[0].backend.pods.clone(), Ok(pods.into()))].into_iter().collect();
    let mut plan = plan(&rules, &lists, &by_rule(actual.iter().cloned()), &PodsByIp::new(), &PlanOptions::default());
    plan_gate(&file, &lists, &mut plan, |_, _| RowResult::NotRun, GateOn::Healthy);
    plan
}

/// Issue 24 #6: a rule that cannot make a target of the pod (a port-name typo) does not decide its condition,
/// and its warning says so: the pod is bound and healthy on the rule that can bind it, so it turns True.
#[test]
fn a_rule_that_cannot_make_a_target_of_the_pod_does_not_hold_its_gate() {
    let typo = RULES.replace("port: 8443}", "port: https}");
    let plan = gate_plan_rules(&typo, vec![gated()], &[bound(0, Some(Health::Healthy)), bound(1, None)]);
    assert_eq!(only_change(&plan), (true, "Registered", "bound and healthy on 1 rule(s)"));
    assert!(matches!(plan.rules[1].status, Status::Blocked { .. }), "the typo'd rule is still blocked");
    let warning = plan.rules[1].warnings.join("; ");
    assert!(warning.contains("no container port named `https`"), "{warning}");
    assert!(warning.contains("its readiness gate does not wait for this rule"), "{warning}");
    // And a pod already True is not touched by the typo.
    let registered = gated().gate_condition(true, "Registered", "bound and healthy on 2 rule(s)");
    let healthy = [bound(0, Some(Health::Healthy)), bound(1, Some(Health::Healthy))];
    assert!(gate_plan_rules(&typo, vec![registered], &healthy).gate.is_empty());
}

/// Issue 24 #6: when no rule that selects a serving pod can bind it (the rules file changed to a port name no
/// container has), a True condition stays True and says why, and the blocked rule names the pod (its Event says
/// so); a condition that was not True stays False. Once the rules file is fixed the True condition says so.
#[test]
fn a_typo_on_every_rule_of_a_serving_pod_keeps_a_true_condition_true_and_says_why() {
    let typo = RULES.replace("port: 8443}", "port: https}").replace("port: 8080}", "port: web}");
    let healthy = [bound(0, Some(Health::Healthy)), bound(1, Some(Health::Healthy))];
    let registered = gated().gate_condition(true, "Registered", "bound and healthy on 2 rule(s)");
    let plan = gate_plan_rules(&typo, vec![registered], &healthy);
    let (status, reason, message) = only_change(&plan);
    assert_eq!((status, reason), (true, "RuleBlocked"), "{message}");
    assert!(message.starts_with("kept True") && message.contains("no container port named `web`"), "{message}");
    assert!(!plan.gate[0].transition, "the status does not change");
    assert!(plan.rules.iter().all(|r| r.gate_kept == ["api-1"] && matches!(r.status, Status::Blocked { .. })));
    assert!(plan.rules.iter().all(|r| !r.rows.iter().any(Row::is_pending)), "the blocked rules change nothing");

    let kept = gated().gate_condition(true, "RuleBlocked", message);
    assert!(gate_plan_rules(&typo, vec![kept.clone()], &healthy).gate.is_empty(), "written once");

    let plan = gate_plan_rules(&typo, vec![gated()], &healthy);
    assert!(!only_change(&plan).0, "a pod that was not True is not let in");
    assert!(plan.rules.iter().all(|r| r.gate_kept.is_empty()));

    let plan = gate_plan_rules(RULES, vec![kept], &healthy);
    assert_eq!(only_change(&plan), (true, "Registered", "bound on 2 rule(s)"));
}

#[test]
fn pods_without_the_gate_get_no_condition_and_an_unchanged_one_is_not_written_again() {
    let healthy = [bound(0, Some(Health::Healthy)), bound(1, Some(Health::Healthy))];
    let plain = pod("api-1", "10.0.0.5").ready();
    assert!(gate_plan(vec![plain], &healthy, RowResult::NotRun, GateOn::Healthy).gate.is_empty());
    let registered = gated().gate_condition(true, "Registered", "bound and healthy on 2 rule(s)");
    assert!(gate_plan(vec![registered], &healthy, RowResult::NotRun, GateOn::Healthy).gate.is_empty());
}

#[test]
fn a_true_condition_goes_false_when_a_target_is_gone_or_the_containers_stop_being_ready() {
    let registered = gated().gate_condition(true, "Registered", "bound and healthy on 2 rule(s)");
    let plan = gate_plan(
        vec![registered.clone()],
        &[bound(0, Some(Health::Healthy)), bound(1, None)],
        RowResult::NotRun,
        GateOn::Healthy,
    );
    assert_eq!(only_change(&plan).1, "RegistrationPending");
    assert!(plan.gate[0].transition);

    let mut crashed = registered;
    crashed.gate.as_mut().expect("gated").containers_ready = false;
    let plan = gate_plan(
        vec![crashed],
        &[bound(0, Some(Health::Healthy)), bound(1, Some(Health::Healthy))],
        RowResult::NotRun,
        GateOn::Healthy,
    );
    assert!(!only_change(&plan).0);
    assert!(plan.gate[0].transition);
}

#[test]
fn health_is_read_only_while_a_gated_pod_waits() {
    let unread = [bound(0, Some(Health::Unknown)), bound(1, Some(Health::Unknown))];
    let needs = |pods: Vec<Pod>, gate_on| gate_plan(pods, &unread, RowResult::NotRun, gate_on).needs_health();
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

fn arb_applied() -> impl Strategy<Value = RowResult> {
    prop_oneof![Just(RowResult::NotRun), Just(RowResult::Done), Just(RowResult::Failed("InternalError: x".into()))]
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
                    prop_assert!(state.is_some() && applied == RowResult::Done && gate_on == GateOn::Bound, "{change:?} on rule {i}");
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
