use std::net::IpAddr;

use proptest::prelude::*;

use super::*;
use crate::model::{
    BoundTarget, DesiredTarget, Health, Owner, PodState, Protocol, RuleTargets, Target, TargetKind, Weight,
};
use crate::rules::Policy;

/// What CLB holds for the rules of a parsed file, in their order (their ids are 0, 1, …).
fn by_rule(states: impl IntoIterator<Item = Result<RuleTargets, String>>) -> Actual {
    states.into_iter().enumerate().map(|(i, s)| (RuleId(i), s)).collect()
}

fn t(ip: &str, port: u16) -> Target {
    Target::new(ip.parse::<IpAddr>().expect("test IP"), port)
}

fn binding() -> Binding {
    Binding { lb: "lb-1a2b3c4d".into(), listener: "lbl-1a2b3c4d".into(), location: None }
}

fn ready(ip: &str, weight: Weight) -> DesiredTarget {
    DesiredTarget { target: t(ip, 8080), weight, pod: format!("pod-{ip}"), state: PodState::Ready, since: None }
}

fn terminating(ip: &str) -> DesiredTarget {
    DesiredTarget {
        target: t(ip, 8080),
        weight: 10,
        pod: format!("pod-{ip}"),
        state: PodState::Terminating,
        since: Some(1_700_000_000),
    }
}

fn eni(ip: &str, weight: Weight) -> BoundTarget {
    BoundTarget {
        binding: binding(),
        target: t(ip, 8080),
        weight,
        kind: TargetKind::Ip,
        health: Health::Healthy,
        tag: String::new(),
    }
}

fn cvm(ip: &str) -> BoundTarget {
    BoundTarget {
        binding: binding(),
        target: t(ip, 8080),
        weight: 10,
        kind: TargetKind::Instance { kind: "CVM".into(), instance_id: "ins-12345678".into() },
        health: Health::Healthy,
        tag: String::new(),
    }
}

fn desired(targets: Vec<DesiredTarget>) -> DesiredTargets {
    DesiredTargets { targets, ..Default::default() }
}

const SYNC: RuleOptions<'static> = RuleOptions { policy: Policy::Sync, allow_empty: false, source: None };
const UPSERT: RuleOptions<'static> = RuleOptions { policy: Policy::UpsertOnly, allow_empty: false, source: None };

fn run(d: Vec<DesiredTarget>, a: Vec<BoundTarget>, rule: RuleOptions) -> (Status, Vec<Row>) {
    planned(&desired(d), &a, rule, &PlanOptions::default())
}

/// [`plan_rule`]'s status and rows.
fn planned(d: &DesiredTargets, a: &[BoundTarget], rule: RuleOptions, opts: &PlanOptions) -> (Status, Vec<Row>) {
    let r = plan_rule(d, a, Elsewhere { own: &[], asked: Asked::Pods(&[]) }, rule, opts);
    (r.status, r.rows)
}

fn actions(rows: &[Row]) -> Vec<(String, Action)> {
    rows.iter().map(|r| (r.target.ip.to_string(), r.action)).collect()
}

#[test]
fn new_ready_pod_is_registered_with_its_weight() {
    let (status, rows) = run(vec![ready("10.0.0.1", 20)], vec![], SYNC);
    assert_eq!(status, Status::Ready);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].action, Action::Register);
    assert_eq!(rows[0].weight, Some(20));
    assert_eq!(rows[0].current_weight, None);
    assert_eq!(rows[0].pod.as_deref(), Some("pod-10.0.0.1"));
}

#[test]
fn bound_ready_pod_with_same_weight_is_unchanged() {
    let (_, rows) = run(vec![ready("10.0.0.1", 10)], vec![eni("10.0.0.1", 10)], SYNC);
    assert_eq!(actions(&rows), [("10.0.0.1".into(), Action::Unchanged)]);
}

#[test]
fn weight_difference_is_a_reweight() {
    let (_, rows) = run(vec![ready("10.0.0.1", 30)], vec![eni("10.0.0.1", 10)], SYNC);
    assert_eq!(rows[0].action, Action::Reweight);
    assert_eq!((rows[0].current_weight, rows[0].weight), (Some(10), Some(30)));
}

#[test]
fn drained_target_of_a_ready_pod_gets_its_weight_back() {
    let (_, rows) = run(vec![ready("10.0.0.1", 10)], vec![eni("10.0.0.1", 0)], SYNC);
    assert_eq!(rows[0].action, Action::Reweight);
    assert_eq!(rows[0].weight, Some(10));
}

#[test]
fn stale_target_is_deregistered_under_sync() {
    let (status, rows) = run(vec![ready("10.0.0.1", 10)], vec![eni("10.0.0.1", 10), eni("10.0.0.9", 10)], SYNC);
    assert_eq!(status, Status::Ready);
    assert_eq!(actions(&rows), [("10.0.0.1".into(), Action::Unchanged), ("10.0.0.9".into(), Action::Deregister)]);
}

#[test]
fn upsert_only_never_deregisters() {
    let (_, rows) = run(vec![ready("10.0.0.1", 10)], vec![eni("10.0.0.9", 10)], UPSERT);
    assert_eq!(actions(&rows), [("10.0.0.1".into(), Action::Register), ("10.0.0.9".into(), Action::Unchanged)]);
    assert_eq!(rows[1].note.as_deref(), Some("kept: upsert-only"));
}

#[test]
fn terminating_pod_is_drained_first() {
    let (_, rows) =
        run(vec![ready("10.0.0.1", 10), terminating("10.0.0.2")], vec![eni("10.0.0.1", 10), eni("10.0.0.2", 10)], SYNC);
    assert_eq!(rows[1].action, Action::Drain);
    assert_eq!((rows[1].current_weight, rows[1].weight), (Some(10), Some(0)));
}

#[test]
fn drained_terminating_pod_stays_until_it_is_gone_then_is_deregistered() {
    let (_, rows) =
        run(vec![ready("10.0.0.1", 10), terminating("10.0.0.2")], vec![eni("10.0.0.1", 10), eni("10.0.0.2", 0)], SYNC);
    assert_eq!(rows[1].action, Action::Unchanged);
    let (_, rows) = run(vec![ready("10.0.0.1", 10)], vec![eni("10.0.0.1", 10), eni("10.0.0.2", 0)], SYNC);
    assert_eq!(rows[1].action, Action::Deregister);
}

#[test]
fn terminating_pod_that_is_not_bound_is_not_registered() {
    let (_, rows) = run(vec![ready("10.0.0.1", 10), terminating("10.0.0.2")], vec![eni("10.0.0.1", 10)], SYNC);
    assert_eq!(actions(&rows), [("10.0.0.1".into(), Action::Unchanged)]);
}

#[test]
fn cvm_backends_are_unmanaged_and_never_touched() {
    let (status, rows) = run(vec![ready("10.0.0.1", 10)], vec![cvm("172.16.0.5")], SYNC);
    assert_eq!(status, Status::Ready);
    assert_eq!(actions(&rows), [("10.0.0.1".into(), Action::Register), ("172.16.0.5".into(), Action::Unmanaged)]);
    assert!(rows[1].note.as_deref().unwrap_or_default().contains("ins-12345678"));
}

#[test]
fn cvm_backend_on_a_pod_ip_is_neither_registered_again_nor_removed() {
    let (_, rows) = run(vec![ready("10.0.0.1", 10)], vec![cvm("10.0.0.1")], SYNC);
    assert_eq!(actions(&rows), [("10.0.0.1".into(), Action::Unmanaged)]);
}

#[test]
fn empty_desired_set_blocks_instead_of_removing_everything() {
    let (status, rows) = run(vec![], vec![eni("10.0.0.1", 10), eni("10.0.0.2", 10)], SYNC);
    assert!(matches!(status, Status::Blocked { ref reason } if reason.contains("allow_empty")));
    assert_eq!(rows.iter().filter(|r| r.action == Action::Deregister).count(), 2);
}

#[test]
fn only_terminating_pods_also_block_the_drain_of_everything() {
    let (status, _) = run(vec![terminating("10.0.0.1")], vec![eni("10.0.0.1", 10)], SYNC);
    assert!(matches!(status, Status::Blocked { .. }));
}

#[test]
fn allow_empty_on_the_backend_or_the_flag_lifts_the_guard() {
    let a = vec![eni("10.0.0.1", 10)];
    let (status, _) = run(vec![], a.clone(), RuleOptions { allow_empty: true, ..SYNC });
    assert_eq!(status, Status::Ready);
    let (status, _) = planned(&desired(vec![]), &a, SYNC, &PlanOptions { allow_empty: true, ..Default::default() });
    assert_eq!(status, Status::Ready);
}

#[test]
fn empty_desired_with_only_drained_or_unmanaged_targets_is_not_blocked() {
    let (status, rows) = run(vec![], vec![eni("10.0.0.1", 0), cvm("172.16.0.5")], SYNC);
    assert_eq!(status, Status::Ready);
    assert_eq!(rows[0].action, Action::Deregister);
}

#[test]
fn empty_desired_and_empty_actual_is_in_sync() {
    let (status, rows) = run(vec![], vec![], SYNC);
    assert_eq!(status, Status::Ready);
    assert!(rows.is_empty());
}

/// A rule's plan with the given outcome, named like a TCP:80 rule at line 3.
fn rule_plan(status: Status, rows: Vec<Row>) -> RulePlan {
    RulePlan {
        id: RuleId(0),
        path: "[0].listeners[0]".into(),
        line: 3,
        place: Place { load_balancer_id: "lb-1a2b3c4d".into(), protocol: Protocol::Tcp, port: 80, l7: None },
        listener_id: None,
        location_id: None,
        namespace: "default".into(),
        pods: "deployment default/web".into(),
        binding: Some(binding()),
        status,
        rows,
        warnings: vec![],
        untargetable: Default::default(),
        gate_kept: Vec::new(),
        needs_health: false,
        lookup: Vec::new(),
        owner: None,
        split: Vec::new(),
        gate_waits: false,
    }
}

#[test]
fn summary_counts_rows_of_ready_rules_and_blocked_and_skipped_rules() {
    let (status, rows) = run(
        vec![ready("10.0.0.1", 10), ready("10.0.0.5", 10), terminating("10.0.0.2")],
        vec![eni("10.0.0.2", 10), eni("10.0.0.3", 10), eni("10.0.0.5", 10)],
        SYNC,
    );
    let (bstatus, brows) = run(vec![], vec![eni("10.0.0.4", 10)], SYNC);
    let skipped = Status::Skipped { reason: "deployment default/web not found".into() };
    let rules = vec![rule_plan(status, rows), rule_plan(bstatus, brows), rule_plan(skipped, vec![])];
    let plan = Plan { rules, ..Plan::default() };
    let s = plan.summary();
    assert_eq!((s.register, s.drain, s.deregister, s.blocked, s.skipped), (1, 1, 1, 1, 1));
    assert!(!plan.in_sync());
    assert!(plan.has_changes());
}

// ---- properties -------------------------------------------------------------------------------------------

/// A managed-target world: desired pods and bound targets drawn from a small IP pool so they overlap.
fn arb_world() -> impl Strategy<Value = (Vec<DesiredTarget>, Vec<BoundTarget>, RuleOptions<'static>)> {
    let ip = 0u8..12;
    let desired = prop::collection::btree_map(ip.clone(), (any::<bool>(), 0u8..=100), 0..10).prop_map(|m| {
        m.into_iter()
            .map(|(i, (is_ready, w))| {
                let ip = format!("10.0.0.{i}");
                if is_ready { ready(&ip, w) } else { terminating(&ip) }
            })
            .collect::<Vec<_>>()
    });
    let health = prop_oneof![Just(Health::Healthy), Just(Health::Unhealthy), Just(Health::Unknown)];
    let actual = prop::collection::btree_map(ip, (0u8..4, 0u8..=100, health), 0..10).prop_map(|m| {
        m.into_iter()
            .map(|(i, (kind, w, health))| {
                let ip = format!("10.0.0.{i}");
                let b = if kind == 0 { BoundTarget { weight: w, ..cvm(&ip) } } else { eni(&ip, w) };
                BoundTarget { health, ..b }
            })
            .collect::<Vec<_>>()
    });
    let rule = (any::<bool>(), any::<bool>()).prop_map(|(upsert, allow_empty)| RuleOptions {
        policy: if upsert { Policy::UpsertOnly } else { Policy::Sync },
        allow_empty,
        source: None,
    });
    (desired, actual, rule)
}

/// What the load balancer holds after a plan's rows are applied (blocked plans change nothing).
fn apply_rows(actual: &[BoundTarget], status: &Status, rows: &[Row]) -> Vec<BoundTarget> {
    if *status != Status::Ready {
        return actual.to_vec();
    }
    let mut out: BTreeMap<Target, BoundTarget> = actual.iter().map(|b| (b.target, b.clone())).collect();
    for row in rows {
        match row.action {
            Action::Register => {
                let registered = eni(&row.target.ip.to_string(), row.weight.unwrap_or(10));
                // A new target is not healthy until CLB's health checks pass.
                out.insert(row.target, BoundTarget { health: Health::Unknown, ..registered });
            }
            Action::Reweight | Action::Drain => {
                if let Some(b) = out.get_mut(&row.target) {
                    b.weight = row.weight.expect("reweight rows carry a weight");
                }
            }
            Action::Deregister => {
                out.remove(&row.target);
            }
            Action::Adopt | Action::Wait | Action::Unchanged | Action::Unmanaged => {}
        }
    }
    out.into_values().collect()
}

proptest! {
    #[test]
    fn applying_a_sync_plan_yields_the_desired_managed_targets((d, a, rule) in arb_world()) {
        let (status, rows) = planned(&desired(d.clone()), &a, rule, &PlanOptions::default());
        prop_assume!(status == Status::Ready && rule.policy == Policy::Sync);
        let after = apply_rows(&a, &status, &rows);
        let unmanaged: Vec<Target> = a.iter().filter(|b| b.kind != TargetKind::Ip).map(|b| b.target).collect();
        let managed: BTreeMap<Target, Weight> =
            after.iter().filter(|b| b.kind == TargetKind::Ip).map(|b| (b.target, b.weight)).collect();
        let bound_before: Vec<Target> = a.iter().map(|b| b.target).collect();
        let waiting: BTreeMap<Target, Weight> = rows
            .iter()
            .filter(|r| r.action == Action::Wait)
            .map(|r| (r.target, r.current_weight.expect("a waiting row is bound")))
            .collect();
        let mut expected: BTreeMap<Target, Weight> = d
            .iter()
            .filter(|x| !unmanaged.contains(&x.target))
            .filter_map(|x| match x.state {
                PodState::Ready => Some((x.target, x.weight)),
                PodState::Terminating => bound_before.contains(&x.target).then_some((x.target, 0)),
            })
            .collect();
        expected.extend(waiting);
        prop_assert_eq!(managed, expected);
    }

    #[test]
    fn unmanaged_targets_are_never_changed((d, a, rule) in arb_world()) {
        let (_, rows) = planned(&desired(d), &a, rule, &PlanOptions::default());
        for b in a.iter().filter(|b| b.kind != TargetKind::Ip) {
            let row = rows.iter().find(|r| r.target == b.target).expect("every bound target has a row");
            prop_assert_eq!(row.action, Action::Unmanaged);
        }
    }

    #[test]
    fn a_second_plan_after_applying_is_empty((d, a, rule) in arb_world()) {
        let dt = desired(d);
        let (status, rows) = planned(&dt, &a, rule, &PlanOptions::default());
        prop_assume!(status == Status::Ready);
        let after = apply_rows(&a, &status, &rows);
        let (_, again) = planned(&dt, &after, rule, &PlanOptions::default());
        let changes: Vec<_> = again.iter().filter(|r| r.action.is_change()).collect();
        prop_assert!(changes.is_empty(), "second plan still changes {changes:?}");
    }

    #[test]
    fn upsert_only_never_deregisters_anything((d, a, _rule) in arb_world()) {
        let (_, rows) = planned(&desired(d), &a, UPSERT, &PlanOptions::default());
        prop_assert!(rows.iter().all(|r| r.action != Action::Deregister));
    }

    #[test]
    fn the_empty_desired_guard_always_blocks_lost_traffic((a, rule) in (arb_world().prop_map(|w| (w.1, w.2)))) {
        let rule = RuleOptions { allow_empty: false, ..rule };
        let (status, rows) = planned(&desired(vec![]), &a, rule, &PlanOptions::default());
        let serving_managed = a.iter().any(|b| b.kind == TargetKind::Ip && b.weight > 0);
        if serving_managed && rule.policy == Policy::Sync {
            prop_assert!(matches!(status, Status::Blocked { .. }), "expected blocked, got {:?}", status);
        }
        if status == Status::Ready {
            let loses = rows.iter().any(|r| matches!(r.action, Action::Deregister | Action::Drain) && r.current_weight.unwrap_or(0) > 0);
            prop_assert!(!loses || rule.policy == Policy::UpsertOnly, "ready plan removes traffic: {:?}", rows);
        }
    }

    /// Issue 17 #4: make before break counts CLB health. A drain or removal never leaves a rule without a target
    /// that takes traffic (healthy, weight > 0) while a target whose pod still serves, and should take traffic
    /// (the rules file's weight is not 0), took traffic before.
    #[test]
    fn a_rule_that_took_traffic_keeps_a_target_that_takes_traffic((d, a, rule) in arb_world()) {
        let (status, rows) = planned(&desired(d.clone()), &a, rule, &PlanOptions::default());
        prop_assume!(status == Status::Ready);
        let pod_serves = |b: &BoundTarget| {
            b.kind != TargetKind::Ip || d.iter().any(|x| x.target.ip == b.target.ip && x.weight > 0)
        };
        let served = a.iter().any(|b| b.takes_traffic() && pod_serves(b));
        let after = apply_rows(&a, &status, &rows);
        if served {
            prop_assert!(after.iter().any(BoundTarget::takes_traffic), "no target takes traffic after {rows:?}");
        }
    }

    #[test]
    fn only_serving_targets_wait_and_never_more_than_one_per_rule((d, a, rule) in arb_world()) {
        let (_, rows) = planned(&desired(d), &a, rule, &PlanOptions::default());
        let waits: Vec<&Row> = rows.iter().filter(|r| r.action == Action::Wait).collect();
        prop_assert!(waits.len() <= 1, "{waits:?}");
        for w in waits {
            let b = a.iter().find(|b| b.target == w.target).expect("a waiting row is bound");
            prop_assert!(b.weight > 0 && b.health != Health::Unhealthy, "{w:?} {b:?}");
            prop_assert_eq!(w.weight, Some(b.weight), "a waiting row keeps its weight");
        }
    }

    #[test]
    fn rows_are_sorted_and_unique_by_target((d, a, rule) in arb_world()) {
        let (_, rows) = planned(&desired(d), &a, rule, &PlanOptions::default());
        prop_assert!(rows.windows(2).all(|w| w[0].target < w[1].target));
    }
}

// ---- make before break, counting health (issue 17 #3, #4) -------------------------------------------------

#[test]
fn a_rollout_registers_the_new_pod_and_keeps_the_old_one_serving_until_the_new_one_is_healthy() {
    let (status, rows) = run(vec![ready("10.0.0.2", 10), terminating("10.0.0.1")], vec![eni("10.0.0.1", 10)], SYNC);
    assert_eq!(status, Status::Ready);
    assert_eq!(actions(&rows), [("10.0.0.1".into(), Action::Wait), ("10.0.0.2".into(), Action::Register)]);
    assert_eq!(rows[0].weight, Some(10), "the old target keeps its weight");
    assert!(rows[0].note.as_deref().unwrap_or_default().contains("until another target of this rule is healthy"));

    // Next run: the new target is bound but still in its health-check warm-up: the drain still waits.
    let warming = BoundTarget { health: Health::Unhealthy, ..eni("10.0.0.2", 10) };
    let (_, rows) = run(vec![ready("10.0.0.2", 10), terminating("10.0.0.1")], vec![eni("10.0.0.1", 10), warming], SYNC);
    assert_eq!(rows[0].action, Action::Wait);

    // Once it is healthy the old one is drained.
    let (_, rows) =
        run(vec![ready("10.0.0.2", 10), terminating("10.0.0.1")], vec![eni("10.0.0.1", 10), eni("10.0.0.2", 10)], SYNC);
    assert_eq!(rows[0].action, Action::Drain);
}

#[test]
fn unknown_health_holds_the_drain_and_asks_for_health() {
    let unknown = |ip| BoundTarget { health: Health::Unknown, ..eni(ip, 10) };
    let d = desired(vec![ready("10.0.0.2", 10), terminating("10.0.0.1")]);
    let r = plan_rule(
        &d,
        &[unknown("10.0.0.1"), unknown("10.0.0.2")],
        Elsewhere { own: &[], asked: Asked::Pods(&[]) },
        SYNC,
        &PlanOptions::default(),
    );
    assert_eq!(r.rows[0].action, Action::Wait);
    assert!(r.needs_health, "the planner asks for health to decide");
    let r = plan_rule(
        &d,
        &[eni("10.0.0.1", 10), eni("10.0.0.2", 10)],
        Elsewhere { own: &[], asked: Asked::Pods(&[]) },
        SYNC,
        &PlanOptions::default(),
    );
    assert!(!r.needs_health);
    assert_eq!(r.rows[0].action, Action::Drain);
}

#[test]
fn targets_of_pods_that_are_gone_are_removed_at_once_even_if_nothing_else_serves() {
    let (_, rows) = run(vec![ready("10.0.0.2", 10)], vec![eni("10.0.0.1", 10)], SYNC);
    assert_eq!(actions(&rows), [("10.0.0.1".into(), Action::Deregister), ("10.0.0.2".into(), Action::Register)]);
}

#[test]
fn an_unhealthy_old_target_is_drained_without_waiting() {
    let dead = BoundTarget { health: Health::Unhealthy, ..eni("10.0.0.1", 10) };
    let (_, rows) = run(vec![ready("10.0.0.2", 10), terminating("10.0.0.1")], vec![dead], SYNC);
    assert_eq!(rows[0].action, Action::Drain);
}

#[test]
fn a_healthy_cvm_backend_is_serving_capacity() {
    let (_, rows) =
        run(vec![ready("10.0.0.2", 10), terminating("10.0.0.1")], vec![eni("10.0.0.1", 10), cvm("172.16.0.5")], SYNC);
    assert_eq!(rows[0].action, Action::Drain);
}

#[test]
fn drains_depend_on_the_rules_registrations_and_old_ports_on_their_pods() {
    let (_, rows) = run(
        vec![ready("10.0.0.2", 10), ready("10.0.0.3", 10), terminating("10.0.0.1")],
        vec![
            eni("10.0.0.1", 10),
            eni("10.0.0.3", 10),
            BoundTarget { target: t("10.0.0.3", 9090), ..eni("10.0.0.3", 10) },
        ],
        SYNC,
    );
    let by = |ip: &str, port| rows.iter().find(|r| r.target == t(ip, port)).expect("row");
    assert_eq!(
        (by("10.0.0.1", 8080).action, by("10.0.0.1", 8080).unless_failed),
        (Action::Drain, UnlessFailed::AnyOfRule)
    );
    assert_eq!(
        (by("10.0.0.3", 9090).action, by("10.0.0.3", 9090).unless_failed),
        (Action::Deregister, UnlessFailed::SamePod)
    );
    assert_eq!(by("10.0.0.2", 8080).unless_failed, UnlessFailed::Unconditional);
}

// ---- ownership (issue 14) ------------------------------------------------------------------------------------

fn tagged(ip: &str, weight: Weight, tag: &str) -> BoundTarget {
    BoundTarget { tag: tag.into(), ..eni(ip, weight) }
}

fn owned(owner: &str, adopt_untagged: bool) -> PlanOptions {
    PlanOptions { owner: Some(Owner::new(owner).expect("valid owner")), adopt_untagged, ..Default::default() }
}

#[test]
fn with_an_owner_only_our_tag_is_managed_and_the_rest_is_named() {
    let d = desired(vec![ready("10.0.0.1", 10), ready("10.0.0.2", 10)]);
    let a = [
        tagged("10.0.0.1", 10, "clbsync:b"),
        tagged("10.0.0.3", 10, "clbsync:b"),
        tagged("10.0.0.4", 10, ""),
        tagged("10.0.0.5", 10, "clbsync:a"),
        tagged("10.0.0.6", 10, "team-x"),
    ];
    let (_, rows) = planned(&d, &a, SYNC, &owned("a", false));
    let got: Vec<(String, Action, Option<String>)> =
        rows.iter().map(|r| (r.target.ip.to_string(), r.action, r.unmanaged.as_ref().map(Unmanaged::reason))).collect();
    assert_eq!(
        got,
        [
            ("10.0.0.1".into(), Action::Unmanaged, Some("owner:b".into())),
            ("10.0.0.2".into(), Action::Register, None),
            ("10.0.0.3".into(), Action::Unmanaged, Some("owner:b".into())),
            ("10.0.0.4".into(), Action::Unmanaged, Some("untagged".into())),
            ("10.0.0.5".into(), Action::Deregister, None),
            ("10.0.0.6".into(), Action::Unmanaged, Some("tag:team-x".into())),
        ]
    );
    assert_eq!(rows[0].note.as_deref(), Some("bound, owner:b: another clbsync's target"), "our pod, bound by b");
}

#[test]
fn adopt_untagged_tags_only_the_targets_of_our_pods() {
    let d = desired(vec![ready("10.0.0.1", 20)]);
    let (_, rows) = planned(&d, &[tagged("10.0.0.1", 10, ""), tagged("10.0.0.9", 10, "")], SYNC, &owned("a", true));
    assert_eq!(actions(&rows), [("10.0.0.1".into(), Action::Adopt), ("10.0.0.9".into(), Action::Unmanaged)]);
    assert_eq!((rows[0].current_weight, rows[0].weight), (Some(10), Some(20)), "adopted, then given its weight");
}

/// Issue 24 #8: another owner's targets (healthy or not, or a hand-bound CVM) do not make an empty desired set
/// intended: a selector typo under `--owner` is blocked like any other, and handing the rule over takes
/// `allow_empty`.
#[test]
fn with_an_owner_a_rule_with_no_ready_pods_is_still_blocked_unless_allow_empty() {
    let others = [
        tagged("10.0.0.1", 10, "clbsync:a"),
        tagged("10.0.0.2", 10, "clbsync:b"),
        BoundTarget { health: Health::Unhealthy, ..tagged("10.0.0.3", 10, "clbsync:b") },
        cvm("172.16.0.5"),
    ];
    for other in &others[1..] {
        let a = [others[0].clone(), other.clone()];
        let (status, _) = planned(&desired(vec![]), &a, SYNC, &owned("a", false));
        assert!(
            matches!(&status, Status::Blocked { reason } if reason.contains("other owners' targets do not count")),
            "{other:?}: {status:?}"
        );
        let allowed = PlanOptions { allow_empty: true, ..owned("a", false) };
        let (status, rows) = planned(&desired(vec![]), &a, SYNC, &allowed);
        assert_eq!(status, Status::Ready, "allow_empty hands the rule over");
        assert_eq!(rows[0].action, Action::Deregister);
    }
}

proptest! {
    /// Issue 14: a target tagged for another owner, or by another tool, is never changed, whatever the policy,
    /// allow_empty or adoption.
    #[test]
    fn targets_of_other_owners_are_never_changed(
        (d, a, rule) in arb_world(),
        tags in prop::collection::vec(prop_oneof![Just(""), Just("clbsync:a"), Just("clbsync:b"), Just("x")], 10),
        adopt in any::<bool>(),
        allow_empty in any::<bool>(),
    ) {
        let a: Vec<BoundTarget> = a.into_iter().zip(tags).map(|(b, tag)| BoundTarget { tag: tag.into(), ..b }).collect();
        let opts = PlanOptions { allow_empty, ..owned("a", adopt) };
        let (_, rows) = planned(&desired(d), &a, rule, &opts);
        for b in a.iter().filter(|b| b.kind == TargetKind::Ip && b.tag != "clbsync:a" && !b.tag.is_empty()) {
            let row = rows.iter().find(|r| r.target == b.target).expect("every bound target has a row");
            prop_assert_eq!(row.action, Action::Unmanaged, "{:?} {:?}", b, row);
        }
        for b in a.iter().filter(|b| b.kind == TargetKind::Ip && b.tag.is_empty()) {
            let row = rows.iter().find(|r| r.target == b.target).expect("every bound target has a row");
            prop_assert!(matches!(row.action, Action::Unmanaged | Action::Adopt), "{:?} {:?}", b, row);
            prop_assert!(adopt || row.action == Action::Unmanaged);
        }
    }
}

proptest! {
    /// Issue 24 #8: under `--owner` the empty-rule guard blocks like without one, whatever other owners, untagged
    /// targets or CVMs hold and whatever their health.
    #[test]
    fn with_an_owner_the_empty_desired_guard_still_blocks_lost_traffic(
        (a, rule) in arb_world().prop_map(|w| (w.1, w.2)),
        tags in prop::collection::vec(prop_oneof![Just(""), Just("clbsync:a"), Just("clbsync:b")], 10),
    ) {
        let a: Vec<BoundTarget> = a.into_iter().zip(tags).map(|(b, tag)| BoundTarget { tag: tag.into(), ..b }).collect();
        let rule = RuleOptions { allow_empty: false, ..rule };
        let (status, rows) = planned(&desired(vec![]), &a, rule, &owned("a", false));
        let ours_weighted = a.iter().any(|b| b.kind == TargetKind::Ip && b.tag == "clbsync:a" && b.weight > 0);
        if ours_weighted && rule.policy == Policy::Sync {
            prop_assert!(matches!(status, Status::Blocked { .. }), "expected blocked, got {:?}", status);
        }
        if status == Status::Ready {
            let loses = rows.iter().any(|r| r.action.is_change() && r.current_weight.unwrap_or(0) > 0 && r.weight != r.current_weight);
            prop_assert!(!loses, "ready plan removes traffic: {:?}", rows);
        }
    }
}

mod budget;
mod capacity;
mod fingerprint;
mod gate;
mod service;
mod source;
mod split;
mod warmup;
