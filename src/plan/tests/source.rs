//! The source sanity check (issue 27 #4): fewer pods listed than the workload's `spec.replicas` while the rule's
//! targets would shrink past the deletion budget holds the rule, naming both numbers; a scale-down, a rule within
//! its budget and `--force` are not held by it.

use proptest::prelude::*;

use super::*;
use crate::model::RuleTargets;
use crate::rules::parse;

fn budget(b: &str) -> PlanOptions {
    PlanOptions { max_deregister: Some(Budget::parse(b).expect("a budget")), ..PlanOptions::default() }
}

fn bound(n: u8) -> Vec<BoundTarget> {
    (0..n).map(|i| eni(&format!("10.0.0.{i}"), 10)).collect()
}

/// The first `n` of the bound targets' pods, ready.
fn first(n: u8) -> DesiredTargets {
    desired((0..n).map(|i| ready(&format!("10.0.0.{i}"), 10)).collect())
}

fn with(listed: usize, replicas: u32) -> RuleOptions<'static> {
    RuleOptions { source: Some(Source { pods: "deployment shop/web", listed, replicas }), ..SYNC }
}

#[test]
fn a_half_answered_list_is_held_with_pods_listed_and_replicas() {
    let (status, rows) = planned(&first(3), &bound(10), with(3, 10), &budget("50%"));
    let Status::Blocked { reason } = &status else { panic!("not held: {status:?}") };
    assert!(
        reason.starts_with(
            "3 pods listed for deployment shop/web, which asks for 10 replicas: a selector typo or a half-answered list?"
        ),
        "{reason}"
    );
    assert!(reason.contains("7 of its 10 bound target(s)") && reason.contains("--max-deregister 50% (5"), "{reason}");
    assert!(reason.ends_with("held; --force to apply"), "{reason}");
    assert_eq!(removals(&rows), 7, "the rows still show what would have happened");
}

#[test]
fn a_scale_down_is_the_budgets_to_judge_and_force_lets_both_through() {
    let (status, _) = planned(&first(3), &bound(10), with(3, 3), &budget("50%"));
    let Status::Blocked { reason } = &status else { panic!("not held: {status:?}") };
    assert!(reason.starts_with("would take 7 of its 10"), "the budget's message, not the source check's: {reason}");
    let (status, _) = planned(&first(3), &bound(10), with(3, 10), &PlanOptions::default());
    assert_eq!(status, Status::Ready, "--force (no budget) applies it");
}

#[test]
fn missing_pods_within_the_budget_are_not_held() {
    // Two pods not created yet (replicas 10, 8 listed): two targets go, within 50%.
    let (status, rows) = planned(&first(8), &bound(10), with(8, 10), &budget("50%"));
    assert_eq!(status, Status::Ready);
    assert_eq!(removals(&rows), 2);
}

const RULES: &str = "
- load_balancer_id: lb-00000001
  listeners:
    - {port: 80, protocol: tcp, backend: {namespace: shop, deployment: web, port: 8080}}
";

/// A ready pod of deployment shop/web on 10.0.0.`i`.
fn pod(i: u8) -> Pod {
    Pod {
        name: format!("web-{i}"),
        phase: "Running".into(),
        ready: true,
        terminating: false,
        terminating_since: None,
        ips: vec![format!("10.0.0.{i}").parse().expect("test IP")],
        ports: vec![("http".into(), 8080)],
        gate: None,
    }
}

/// Plans the one rule of [`RULES`] with `pods` listed, the Deployment asking for `replicas`, 10 targets bound.
fn plan_web(pods: Vec<Pod>, replicas: Option<u32>) -> Status {
    let rules = parse("rules.yaml", RULES).expect("valid rules");
    let rules: Vec<&Rule> = rules.rules.iter().collect();
    let query = rules[0].backend.pods.clone();
    let lists: PodLists = [(query, Ok(Selected { replicas, ..Selected::from(pods) }))].into_iter().collect();
    let actual = by_rule([Ok(RuleTargets { binding: binding(), targets: bound(10) })]);
    let p = plan(&rules, &lists, &actual, &PodsByIp::new(), &budget("50%"));
    p.rules[0].status.clone()
}

#[test]
fn the_planner_counts_listed_pods_without_the_terminating_ones_and_a_daemonset_has_no_replicas() {
    // 10 pods listed, 7 of them terminating: 3 listed for 10 replicas, and 7 drains.
    let pods: Vec<Pod> = (0..10).map(|i| if i < 3 { pod(i) } else { pod(i).terminating() }).collect();
    let status = plan_web(pods.clone(), Some(10));
    assert!(
        matches!(&status, Status::Blocked { reason } if reason.starts_with("3 pods listed for deployment shop/web"))
    );
    // No replicas (a DaemonSet, a `selector:`, watch mode): only the budget, with its own message.
    let status = plan_web(pods, None);
    assert!(
        matches!(&status, Status::Blocked { reason } if reason.starts_with("would take 7 of its 10")),
        "{status:?}"
    );
    // All 10 listed and ready: nothing leaves.
    assert_eq!(plan_web((0..10).map(pod).collect(), Some(10)), Status::Ready);
}

proptest! {
    /// With fewer pods listed than replicas, no plan that would be applied has more targets leaving (drains and
    /// deregistrations; a removal that waits removes nothing) than the budget allows; with as many or more, the
    /// check never changes the plan.
    #[test]
    fn the_source_check_bounds_leaving_targets_and_never_fires_when_enough_pods_were_listed(
        (d, a, rule) in arb_world(),
        b in prop_oneof![(0usize..6).prop_map(Budget::Targets), (0u8..=100).prop_map(Budget::Percent)],
        listed in 0usize..12,
        replicas in 0u32..12,
    ) {
        let opts = PlanOptions { max_deregister: Some(b), ..PlanOptions::default() };
        let checked = RuleOptions { source: Some(Source { pods: "deployment shop/web", listed, replicas }), ..rule };
        let (status, rows) = planned(&desired(d.clone()), &a, checked, &opts);
        if u32::try_from(listed).is_ok_and(|n| n >= replicas) {
            prop_assert_eq!((status, rows), planned(&desired(d), &a, rule, &opts));
        } else if status == Status::Ready {
            let bound = rows.iter().filter(|r| r.current_weight.is_some() && r.action != Action::Unmanaged).count();
            let leaving = rows.iter().filter(|r| matches!(r.action, Action::Drain | Action::Deregister)).count();
            if let Some(limit) = b.limit(bound) {
                prop_assert!(leaving <= limit, "{leaving} leaving over {b} of {bound}: {rows:?}");
            }
        }
    }
}

/// An Evicted (Failed) or Succeeded pod the list still holds is not one the workload counts: 4 running and 6
/// evicted pods for 10 replicas are 4 listed, and the check names that.
#[test]
fn evicted_and_finished_pods_are_not_counted_as_listed() {
    let pods: Vec<Pod> = (0..10)
        .map(|i| match i {
            0..4 => pod(i),
            4..8 => Pod { phase: "Failed".into(), ready: false, ..pod(i) },
            _ => Pod { phase: "Succeeded".into(), ready: false, ..pod(i) },
        })
        .collect();
    let status = plan_web(pods, Some(10));
    assert!(
        matches!(&status, Status::Blocked { reason } if reason.starts_with("4 pods listed for deployment shop/web")),
        "{status:?}"
    );
}

/// A removal that waits for its replacement (make before break) removes nothing: a rule whose bound targets all
/// wait, with fewer pods listed than replicas (a backend switched to a workload still creating its pods), is
/// not held by the source check.
#[test]
fn removals_that_wait_are_not_counted_as_leaving() {
    let rows: Vec<Row> = (0..10u8)
        .map(|i| Row {
            action: Action::Wait,
            target: Target::new(format!("10.0.0.{i}").parse().expect("IP"), 8080),
            weight: Some(10),
            current_weight: Some(10),
            pod: None,
            note: Some("removal waits: no other target of this rule takes traffic".into()),
            unless_failed: UnlessFailed::Unconditional,
            unmanaged: None,
            health: Health::Healthy,
            waiting_since: None,
        })
        .collect();
    let source = Source { pods: "deployment shop/green", listed: 3, replicas: 10 };
    assert_eq!(source.holds(&rows, Budget::Percent(50)), None);
}
