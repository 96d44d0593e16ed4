//! Make before break when the rules move on (issue 24 #7): a target that leaves because the rules changed (a
//! backend switched from blue to green, a port changed) while its pod still serves stays until the rule's new
//! targets take its traffic.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::model::testing::pod;

/// Blue's pods: serving, not selected by the rule any more.
fn blue(n: u8) -> Vec<Pod> {
    (1..=n).map(|k| pod(&format!("blue-{k}"), &format!("10.0.1.{k}")).ready()).collect()
}

/// The rule now selects green: `n` ready pods.
fn green(n: u8) -> Vec<DesiredTarget> {
    (1..=n).map(|k| ready(&format!("10.0.2.{k}"), 10)).collect()
}

fn bound_blue(n: u8) -> Vec<BoundTarget> {
    (1..=n).map(|k| eni(&format!("10.0.1.{k}"), 10)).collect()
}

fn green_bound(k: u8, health: Health) -> BoundTarget {
    BoundTarget { health, ..eni(&format!("10.0.2.{k}"), 10) }
}

fn plan_with(d: Vec<DesiredTarget>, a: &[BoundTarget], elsewhere: Elsewhere<'_>) -> RuleRows {
    plan_rule(&desired(d), a, elsewhere, SYNC, &PlanOptions::default())
}

fn count(rows: &[Row], action: Action) -> usize {
    rows.iter().filter(|r| r.action == action).count()
}

/// Issue 24 #7: a blue → green switch in the rules file registered green and removed the still-serving blue pods in
/// the same run (540 of 1,556 requests failed in the rollout simulator). Blue now stays, weight kept, and leaves as
/// green takes its traffic.
#[test]
fn a_backend_switch_keeps_the_old_pods_until_the_new_ones_take_their_traffic() {
    let pods = blue(3);
    let at = Elsewhere { own: &[], asked: Asked::Pods(&pods) };
    let r = plan_with(green(3), &bound_blue(3), at);
    assert_eq!((count(&r.rows, Action::Register), count(&r.rows, Action::Wait)), (3, 3), "{:#?}", r.rows);
    let held = r.rows.iter().find(|r| r.action == Action::Wait).expect("a held row");
    assert_eq!((held.weight, held.pod.as_deref()), (Some(10), Some("blue-1")));
    assert!(held.note.as_deref().unwrap_or_default().contains("pod blue-1 still serves"), "{held:?}");

    // Green bound, still in its health-check warm-up: blue still serves it all.
    let mut a = bound_blue(3);
    a.extend((1..=3).map(|k| green_bound(k, Health::Unhealthy)));
    assert_eq!(count(&plan_with(green(3), &a, at).rows, Action::Wait), 3);

    // Two green targets healthy: one blue target stays for the third.
    a[3].health = Health::Healthy;
    a[4].health = Health::Healthy;
    let r = plan_with(green(3), &a, at);
    assert_eq!((count(&r.rows, Action::Wait), count(&r.rows, Action::Deregister)), (1, 2), "{:#?}", r.rows);

    // All green healthy: blue goes.
    a[5].health = Health::Healthy;
    let r = plan_with(green(3), &a, at);
    assert_eq!((count(&r.rows, Action::Wait), count(&r.rows, Action::Deregister)), (0, 3));
}

/// Whether blue's pods still serve is what the cluster says: not asked yet, the removals wait and the plan asks;
/// gone from the cluster (or not serving), they are removed at once; unreadable, they wait.
#[test]
fn the_cluster_says_whether_a_target_the_rules_no_longer_select_still_serves() {
    let r = plan_with(green(2), &bound_blue(2), Elsewhere { own: &[], asked: Asked::NotRead });
    assert_eq!(count(&r.rows, Action::Wait), 2);
    assert_eq!(r.lookup, ["10.0.1.1".parse::<IpAddr>().expect("ip"), "10.0.1.2".parse().expect("ip")]);

    let r = plan_with(green(2), &bound_blue(2), Elsewhere { own: &[], asked: Asked::Pods(&[]) });
    assert_eq!((count(&r.rows, Action::Deregister), r.lookup.len()), (2, 0), "no pod has these IPs");
    let not_ready = [pod("blue-1", "10.0.1.1"), pod("blue-2", "10.0.1.2")];
    let r = plan_with(green(2), &bound_blue(2), Elsewhere { own: &[], asked: Asked::Pods(&not_ready) });
    assert_eq!(count(&r.rows, Action::Deregister), 2, "pods that do not serve serve nothing");

    let r = plan_with(green(2), &bound_blue(2), Elsewhere { own: &[], asked: Asked::Unreadable("timed out") });
    assert_eq!((count(&r.rows, Action::Wait), r.lookup.len()), (2, 0));
    assert!(r.rows[0].note.as_deref().unwrap_or_default().contains("could not be read (timed out)"));

    // Blue terminating: drained (weight 0) first, like the rule's own terminating pods.
    let going = [pod("blue-1", "10.0.1.1").terminating()];
    let mut a = bound_blue(1);
    a.push(green_bound(1, Health::Healthy));
    let r = plan_with(green(1), &a, Elsewhere { own: &[], asked: Asked::Pods(&going) });
    assert_eq!((r.rows[0].action, r.rows[0].weight), (Action::Drain, Some(0)), "{:#?}", r.rows);
}

/// A port change keeps a pod's old port until its new one takes traffic; once the pod takes traffic on another
/// target, its old port adds nothing and goes.
#[test]
fn a_changed_port_keeps_the_old_one_until_the_new_one_takes_traffic() {
    let old = BoundTarget { target: t("10.0.0.1", 9090), ..eni("10.0.0.1", 10) };
    let (_, rows) =
        planned(&desired(vec![ready("10.0.0.1", 10)]), std::slice::from_ref(&old), SYNC, &PlanOptions::default());
    assert_eq!(actions(&rows), [("10.0.0.1".into(), Action::Register), ("10.0.0.1".into(), Action::Wait)]);
    let new = BoundTarget { health: Health::Unhealthy, ..eni("10.0.0.1", 10) };
    let (_, rows) = planned(&desired(vec![ready("10.0.0.1", 10)]), &[old.clone(), new], SYNC, &PlanOptions::default());
    assert_eq!(rows[1].action, Action::Wait);
    let (_, rows) =
        planned(&desired(vec![ready("10.0.0.1", 10)]), &[old, eni("10.0.0.1", 10)], SYNC, &PlanOptions::default());
    assert_eq!(rows[1].action, Action::Deregister);
}

/// A world where the rules moved on: desired pods (10.0.0.x), bound targets drawn from them and from the pods the
/// rule no longer selects (10.0.9.x, serving, terminating or not ready in the cluster), on the rule's port or an
/// old one.
fn arb_moved() -> impl Strategy<Value = (Vec<DesiredTarget>, Vec<BoundTarget>, Vec<Pod>)> {
    let desired = prop::collection::btree_map(0u8..6, (any::<bool>(), 0u8..=20), 0..6).prop_map(|m| {
        m.into_iter()
            .map(|(i, (is_ready, w))| {
                let ip = format!("10.0.0.{i}");
                if is_ready { ready(&ip, w) } else { terminating(&ip) }
            })
            .collect::<Vec<_>>()
    });
    let others = prop::collection::btree_map(0u8..6, 0u8..3, 0..6).prop_map(|m| {
        m.into_iter()
            .map(|(i, state)| {
                let p = pod(&format!("old-{i}"), &format!("10.0.9.{i}"));
                match state {
                    0 => p.ready(),
                    1 => p.terminating(),
                    _ => p,
                }
            })
            .collect::<Vec<_>>()
    });
    let health = prop_oneof![Just(Health::Healthy), Just(Health::Unhealthy), Just(Health::Unknown)];
    let bound = prop::collection::btree_map((0u8..2, 0u8..6, any::<bool>()), (0u8..=20, health), 0..12).prop_map(|m| {
        m.into_iter()
            .map(|((old, i, other_port), (w, health))| {
                let ip = if old == 0 { format!("10.0.0.{i}") } else { format!("10.0.9.{i}") };
                let b = eni(&ip, w);
                BoundTarget { target: t(&ip, if other_port { 9090 } else { 8080 }), health, ..b }
            })
            .collect::<Vec<_>>()
    });
    (desired, bound, others)
}

proptest! {
    /// Issue 24 #7: whatever the rules changed, after a plan is applied the rule has as many pods taking traffic
    /// as still served it before (pods the rules keep or no longer select), up to what its new set will take.
    /// New targets take nothing until CLB's health checks pass.
    #[test]
    fn a_rules_change_keeps_the_serving_capacity_its_new_targets_will_take((d, a, others) in arb_moved()) {
        let r = plan_rule(&desired(d.clone()), &a, Elsewhere { own: &[], asked: Asked::Pods(&others) }, SYNC, &PlanOptions::default());
        prop_assume!(r.status == Status::Ready);
        let serves_elsewhere = |ip: IpAddr| others.iter().any(|p| p.ips.contains(&ip) && !p.terminating && serves(p));
        let ready_ip = |ip: IpAddr| d.iter().any(|x| x.target.ip == ip && x.state == PodState::Ready && x.weight > 0);
        let before: BTreeSet<IpAddr> = a
            .iter()
            .filter(|b| b.takes_traffic())
            .filter(|b| {
                let stays = d.iter().any(|x| x.target == b.target && x.state == PodState::Ready && x.weight > 0);
                stays || (b.target.port != 8080 && ready_ip(b.target.ip)) || serves_elsewhere(b.target.ip)
            })
            .map(|b| b.target.ip)
            .collect();
        let eventual: BTreeSet<IpAddr> = d.iter().filter(|x| x.state == PodState::Ready && x.weight > 0).map(|x| x.target.ip).collect();
        let after = apply_rows(&a, &r.status, &r.rows);
        let taking: BTreeSet<IpAddr> = after.iter().filter(|b| b.takes_traffic()).map(|b| b.target.ip).collect();
        prop_assert!(
            taking.len() >= before.len().min(eventual.len()),
            "{} pod(s) take traffic after, {} before, {} eventually: {:#?}", taking.len(), before.len(), eventual.len(), r.rows
        );
        // Nothing is held that takes no traffic, and nothing asked about once the cluster has answered.
        prop_assert!(r.lookup.is_empty());
        for w in r.rows.iter().filter(|r| r.action == Action::Wait) {
            let b = a.iter().find(|b| b.target == w.target).expect("a waiting row is bound");
            prop_assert!(b.weight > 0 && b.health != Health::Unhealthy, "{w:?} {b:?}");
        }
    }

    /// Once the new targets pass their health checks, nothing the rules no longer select waits: a switch ends.
    #[test]
    fn a_rules_change_ends_once_the_new_targets_take_traffic((d, a, others) in arb_moved()) {
        let dt = desired(d);
        let r = plan_rule(&dt, &a, Elsewhere { own: &[], asked: Asked::Pods(&others) }, SYNC, &PlanOptions::default());
        prop_assume!(r.status == Status::Ready);
        // Apply, let every new target pass its health checks, and plan again until nothing changes.
        let mut now: Vec<BoundTarget> = apply_rows(&a, &r.status, &r.rows);
        for _ in 0..3 {
            now.iter_mut().for_each(|b| b.health = Health::Healthy);
            let r = plan_rule(&dt, &now, Elsewhere { own: &[], asked: Asked::Pods(&others) }, SYNC, &PlanOptions::default());
            now = apply_rows(&now, &r.status, &r.rows);
        }
        now.iter_mut().for_each(|b| b.health = Health::Healthy);
        let r = plan_rule(&dt, &now, Elsewhere { own: &[], asked: Asked::Pods(&others) }, SYNC, &PlanOptions::default());
        let moving_waits: Vec<&Row> = r.rows.iter().filter(|r| r.action == Action::Wait && !dt.targets.iter().any(|x| x.target == r.target)).collect();
        let eventual = dt.targets.iter().any(|x| x.state == PodState::Ready && x.weight > 0);
        prop_assert!(moving_waits.is_empty() || !eventual, "{moving_waits:#?}");
    }
}

/// The plan of one rule with `rows`, for the wait clocks.
fn rule_with(rows: Vec<Row>) -> RulePlan {
    RulePlan { rows, ..rule_plan(Status::Ready, vec![]) }
}

/// Issue 24 #12: a drain that waits indefinitely was silent. A held drain of a terminating pod has waited since
/// the pod's deletion (the cluster's record); past `--warn-waiting-after` it is overdue.
#[test]
fn a_held_drain_has_waited_since_its_pod_began_to_terminate() {
    let warming = BoundTarget { health: Health::Unhealthy, ..eni("10.0.0.2", 10) };
    let (_, rows) = run(vec![ready("10.0.0.2", 10), terminating("10.0.0.1")], vec![eni("10.0.0.1", 10), warming], SYNC);
    assert_eq!((rows[0].action, rows[0].waiting_since), (Action::Wait, Some(1_700_000_000)));
    let plan = rule_with(rows);
    let at = |now| Waits { now, after: WARN_WAITING_AFTER };
    assert_eq!(plan.overdue(at(1_700_000_000 + 600)).count(), 0);
    assert_eq!(plan.overdue(at(1_700_000_000 + 601)).count(), 1);
    let blocked = RulePlan { status: Status::Blocked { reason: "x".into() }, ..plan };
    assert_eq!(blocked.overdue(at(1_800_000_000)).count(), 0, "a blocked rule's rows are not waits");
}

/// A removal the rules moved on from has no record in the cluster: watch mode times it from the first pass that
/// held it (the previous plan is the memory), and a batch run leaves it unknown, never overdue.
#[test]
fn a_wait_nothing_records_is_timed_from_the_first_pass_that_held_it() {
    let pods = blue(1);
    let r = plan_with(green(1), &bound_blue(1), Elsewhere { own: &[], asked: Asked::Pods(&pods) });
    let mut first = rule_with(r.rows.clone());
    assert_eq!(first.rows.iter().find(|r| r.action == Action::Wait).and_then(|r| r.waiting_since), None);
    carry_waits(None, &mut first, 1_000);
    let mut second = rule_with(r.rows);
    carry_waits(Some(&first), &mut second, 2_000);
    let held = second.rows.iter().find(|r| r.action == Action::Wait).expect("held");
    assert_eq!(held.waiting_since, Some(1_000), "carried from the pass that first held it");
    assert_eq!(second.overdue(Waits { now: 1_601, after: WARN_WAITING_AFTER }).count(), 1);
}
