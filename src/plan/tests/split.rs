//! Traffic splitting (issue 28): the weights that give each backend of a `backends:` rule its share, kept while
//! they are close enough, and the guards of a split rule.

use super::*;
use crate::model::{Pod, RuleTargets, Selected};
use crate::rules::{Rules, parse};

/// One rule with backends `app: web` (share `web`) and `app: canary` (share `canary`) in namespace shop.
pub(super) fn rules(web: u32, canary: u32, on_empty: &str) -> Rules {
    let text = format!(
        "
- load_balancer_id: lb-00000001
  listeners:
    - port: 80
      protocol: tcp
      on_empty_backend: {on_empty}
      backends:
        - {{namespace: shop, selector: {{app: web}}, port: 8080, share: {web}}}
        - {{namespace: shop, selector: {{app: canary}}, port: 8080, share: {canary}}}
"
    );
    parse("rules.yaml", &text).expect("valid rules")
}

pub(super) fn pod(name: &str, ip: &str) -> Pod {
    Pod {
        name: name.into(),
        phase: "Running".into(),
        ready: true,
        terminating: false,
        terminating_since: None,
        ips: vec![ip.parse().expect("test IP")],
        ports: Vec::new(),
        gate: None,
    }
}

/// `n` ready pods `{prefix}-{i}` at 10.{net}.0.{i}.
pub(super) fn pods(prefix: &str, net: u8, n: usize) -> Vec<Pod> {
    (0..n).map(|i| pod(&format!("{prefix}-{i}"), &format!("10.{net}.{}.{}", i / 250, i % 250 + 1))).collect()
}

/// `pods`, each terminating as the next of `flags` says (not once they run out).
pub(super) fn terminating_as(pods: Vec<Pod>, flags: &mut impl Iterator<Item = bool>) -> Vec<Pod> {
    pods.into_iter().map(|p| Pod { terminating: flags.next().unwrap_or(false), ..p }).collect()
}

/// `pods` that run but are not ready: a backend with no ready pods.
fn not_ready(pods: Vec<Pod>) -> Vec<Pod> {
    pods.into_iter().map(|p| Pod { ready: false, ..p }).collect()
}

pub(super) fn planned(rules: &Rules, web: Vec<Pod>, canary: Vec<Pod>, bound: Vec<BoundTarget>) -> RulePlan {
    planned_with(rules, [(web, None), (canary, None)], bound, &PlanOptions::default())
}

/// Each backend's pods and the replicas its workload asks for.
fn planned_with(
    rules: &Rules,
    backends: [(Vec<Pod>, Option<u32>); 2],
    bound: Vec<BoundTarget>,
    opts: &PlanOptions,
) -> RulePlan {
    let rules: Vec<&Rule> = rules.rules.iter().collect();
    let queries: Vec<PodQuery> = rules[0].queries().cloned().collect();
    let lists: PodLists = queries
        .into_iter()
        .zip(backends)
        .map(|(q, (pods, replicas))| (q, Ok(Selected { pods, target_port: None, replicas })))
        .collect();
    let actual = by_rule([Ok(RuleTargets { binding: binding(), targets: bound })]);
    plan(&rules, &lists, &actual, &PodsByIp::new(), opts).rules.remove(0)
}

/// What CLB holds once `rule`'s rows are applied (registered targets healthy, as after their health checks).
fn applied(before: &[BoundTarget], rule: &RulePlan) -> Vec<BoundTarget> {
    let after = apply_rows(before, &rule.status, &rule.rows);
    after.into_iter().map(|b| BoundTarget { health: Health::Healthy, ..b }).collect()
}

/// The weight of every target bound in 10.{net}.
pub(super) fn weights_in(bound: &[BoundTarget], net: u8) -> BTreeSet<Weight> {
    bound.iter().filter(|b| matches!(b.target.ip, IpAddr::V4(ip) if ip.octets()[1] == net)).map(|b| b.weight).collect()
}

fn part(share: u32, targets: usize) -> Part {
    Part { share, targets, current: None }
}

#[test]
fn ninety_five_five_with_nineteen_and_one_pods_is_exact_at_the_default_weight() {
    let w = weights(&[part(95, 19), part(5, 1)]);
    assert_eq!(w.weights, [Some(10), Some(10)]);
    assert_eq!(w.error_bp, 0);
}

#[test]
fn ninety_five_five_with_twenty_and_one_pods_moves_the_canary_to_eleven() {
    let w = weights(&[part(95, 20), part(5, 1)]);
    assert_eq!(w.weights, [Some(10), Some(11)]);
    assert_eq!(achieved_bp(&[part(95, 20), part(5, 1)], &w.weights), [9479, 521]);
    assert!(!w.off());
}

#[test]
fn an_unreachable_split_takes_the_closest_weights_and_is_off() {
    let parts = [part(50, 200), part(50, 1)];
    let w = weights(&parts);
    assert_eq!(w.weights, [Some(1), Some(100)]);
    assert!(w.off(), "{w:?}");
    assert_eq!(w.error_bp, w.best_bp);
}

#[test]
fn bound_weights_within_the_tolerance_are_kept() {
    // 21 web pods at 10 and the canary at 11 give 4.98%: no change for one more web pod.
    let parts = [Part { share: 95, targets: 21, current: Some(10) }, Part { share: 5, targets: 1, current: Some(11) }];
    assert_eq!(weights(&parts).weights, [Some(10), Some(11)]);
}

#[test]
fn past_the_tolerance_the_smaller_backend_moves_and_the_larger_keeps_its_weight() {
    // web at 10 × 30 against a canary at 10: 3.2%, past the tolerance. Web keeps 10; the canary goes to 16.
    let parts = [Part { share: 95, targets: 30, current: Some(10) }, Part { share: 5, targets: 1, current: Some(10) }];
    assert_eq!(weights(&parts).weights, [Some(10), Some(16)]);
}

#[test]
fn a_new_backend_is_weighted_around_the_larger_backends_bound_weight() {
    // web bound at 5 × 19; a new canary with one pod at 5% gets 5, web keeps 5.
    let parts = [Part { share: 95, targets: 19, current: Some(5) }, Part { share: 5, targets: 1, current: None }];
    assert_eq!(weights(&parts).weights, [Some(5), Some(5)]);
}

#[test]
fn the_split_rule_registers_every_backend_with_its_weights_and_a_second_plan_changes_nothing() {
    let rules = rules(95, 5, "hold");
    let first = planned(&rules, pods("web", 1, 20), pods("canary", 2, 1), vec![]);
    assert_eq!(first.status, Status::Ready);
    let bound = applied(&[], &first);
    assert_eq!((weights_in(&bound, 1), weights_in(&bound, 2)), ([10].into(), [11].into()));
    let split: Vec<_> = first.split.iter().map(|s| (s.requested_bp, s.achieved_bp, s.targets, s.weight)).collect();
    assert_eq!(split, [(9500, 9479, 20, Some(10)), (500, 521, 1, Some(11))]);
    assert_eq!(first.split[1].backend, "pods in shop with app=canary");

    let second = planned(&rules, pods("web", 1, 20), pods("canary", 2, 1), bound);
    assert!(second.rows.iter().all(|r| r.action == Action::Unchanged), "{:?}", second.rows);
}

#[test]
fn editing_the_shares_reweights_the_bound_targets() {
    let bound = applied(&[], &planned(&rules(95, 5, "hold"), pods("web", 1, 20), pods("canary", 2, 1), vec![]));
    let even = planned(&rules(50, 50, "hold"), pods("web", 1, 20), pods("canary", 2, 1), bound.clone());
    let after = applied(&bound, &even);
    // 50/50 with 20 + 1 pods: web 5 × 20 = 100, canary 100 × 1.
    assert_eq!((weights_in(&after, 1), weights_in(&after, 2)), ([5].into(), [100].into()));
    assert_eq!(even.split.iter().map(|s| s.achieved_bp).collect::<Vec<_>>(), [5000, 5000]);
}

#[test]
fn a_pod_in_two_backends_blocks_the_rule_naming_both() {
    let rules = rules(95, 5, "hold");
    let rule = planned(&rules, pods("web", 1, 3), vec![pod("web-1", "10.1.0.2")], vec![]);
    let Status::Blocked { reason } = &rule.status else { panic!("{:?}", rule.status) };
    assert!(reason.contains("pod web-1 is selected by backends[0] (pods in shop with app=web)"), "{reason}");
    assert!(reason.contains("backends[1] (pods in shop with app=canary)"), "{reason}");
}

#[test]
fn with_hold_an_empty_backend_keeps_the_others_weights_and_degrades_the_rule() {
    let rules = rules(95, 5, "hold");
    let bound = applied(&[], &planned(&rules, pods("web", 1, 20), pods("canary", 2, 1), vec![]));
    let rule = planned(&rules, pods("web", 1, 20), not_ready(pods("canary", 2, 1)), bound);
    assert_eq!(rule.status, Status::Ready);
    let web = rule.rows.iter().filter(|r| r.pod.as_deref().is_some_and(|p| p.starts_with("web")));
    assert!(web.clone().all(|r| r.action == Action::Unchanged && r.weight == Some(10)), "{:?}", rule.rows);
    assert!(rule.warnings.iter().any(|w| w.starts_with("split degraded") && w.contains("held")), "{:?}", rule.warnings);
    assert_eq!(rule.split[1].achieved_bp, 0);
}

#[test]
fn with_redistribute_an_empty_backend_says_so_and_the_others_carry_on() {
    let rules = rules(95, 5, "redistribute");
    let rule = planned(&rules, pods("web", 1, 4), not_ready(pods("canary", 2, 1)), vec![]);
    assert_eq!(rule.status, Status::Ready);
    assert!(rule.warnings.iter().any(|w| w.contains("on_empty_backend: redistribute")), "{:?}", rule.warnings);
    assert_eq!(rule.split[0].achieved_bp, 10_000);
}

#[test]
fn with_every_backend_empty_the_rule_is_blocked_as_today() {
    let rules = rules(95, 5, "redistribute");
    let bound = vec![eni("10.1.0.1", 10), eni("10.2.0.1", 11)];
    let rule = planned(&rules, not_ready(pods("web", 1, 1)), not_ready(pods("canary", 2, 1)), bound);
    assert!(
        matches!(&rule.status, Status::Blocked { reason } if reason.contains("no ready pods")),
        "{:?}",
        rule.status
    );
}

/// A backend whose list is empty (a selector typo, a deleted workload) would leave at once, serving pods and
/// all: the rule is held, as a one-backend rule with an empty list is; a workload scaled to 0 is not held.
#[test]
fn a_backend_that_lists_no_pods_holds_the_rule_unless_its_workload_asks_for_none() {
    let rules = rules(95, 5, "hold");
    let bound: Vec<BoundTarget> =
        (1..=20).map(|i| eni(&format!("10.1.0.{i}"), 10)).chain([eni("10.2.0.1", 11)]).collect();
    let rule = planned(&rules, vec![], pods("canary", 2, 1), bound.clone());
    assert!(
        matches!(&rule.status, Status::Blocked { reason } if reason.contains("lists no pods")),
        "{:?}",
        rule.status
    );
    assert!(rule.rows.iter().all(|r| !matches!(r.action, Action::Drain | Action::Deregister)), "{:?}", rule.rows);
    let scaled_to_zero =
        planned_with(&rules, [(vec![], Some(0)), (pods("canary", 2, 1), None)], bound, &PlanOptions::default());
    assert_eq!(scaled_to_zero.status, Status::Ready, "{:?}", scaled_to_zero.warnings);
}

#[test]
fn a_draining_target_is_never_reweighted() {
    let rules = rules(50, 50, "hold");
    let mut web = pods("web", 1, 3);
    web[0].terminating = true;
    let bound = vec![eni("10.1.0.1", 0), eni("10.1.0.2", 10), eni("10.1.0.3", 10), eni("10.2.0.1", 10)];
    let rule = planned(&rules, web, pods("canary", 2, 1), bound);
    let draining = rule.rows.iter().find(|r| r.target == t("10.1.0.1", 8080)).expect("row");
    assert_eq!((draining.action, draining.weight), (Action::Unchanged, Some(0)));
}

/// Each backend is checked on its own (the one furthest short of its replicas): a sum would let one backend's
/// surge hide another's shortfall, and a backend without replicas switch the check off for the others.
#[test]
fn the_source_check_looks_at_each_backend_on_its_own() {
    let rules = rules(95, 5, "hold");
    let bound: Vec<BoundTarget> =
        (1..=10).map(|i| eni(&format!("10.1.0.{i}"), 10)).chain([eni("10.2.0.1", 10)]).collect();
    let budget = PlanOptions { max_deregister: Some(Budget::parse("50%").expect("a budget")), ..Default::default() };
    // 2 of 10 web pods listed (a half-answered list) and the canary: 8 of 11 targets would go.
    let rule = planned_with(&rules, [(pods("web", 1, 2), Some(10)), (pods("canary", 2, 1), Some(1))], bound, &budget);
    let Status::Blocked { reason } = &rule.status else { panic!("not held: {:?}", rule.status) };
    assert!(reason.starts_with("2 pods listed for pods in shop with app=web, which asks for 10 replicas"), "{reason}");
    // The canary without replicas (a `selector:` or a DaemonSet) leaves the web backend's check on.
    let bound: Vec<BoundTarget> =
        (1..=10).map(|i| eni(&format!("10.1.0.{i}"), 10)).chain([eni("10.2.0.1", 10)]).collect();
    let rule = planned_with(&rules, [(pods("web", 1, 2), Some(10)), (pods("canary", 2, 1), None)], bound, &budget);
    let Status::Blocked { reason } = &rule.status else { panic!("not held: {:?}", rule.status) };
    assert!(reason.starts_with("2 pods listed for pods in shop with app=web"), "{reason}");
}

/// The best any pair of integer weights 1–100 can do for two backends, by brute force.
fn best_pair(parts: &[Part; 2]) -> f64 {
    let total: f64 = parts.iter().map(|p| f64::from(p.share)).sum();
    let mut best = f64::MAX;
    for a in 1..=100u32 {
        for b in 1..=100u32 {
            let (la, lb) = (f64::from(a) * parts[0].targets as f64, f64::from(b) * parts[1].targets as f64);
            best = best.min((la / (la + lb) - f64::from(parts[0].share) / total).abs());
        }
    }
    best
}

fn max_off_bp(parts: &[Part], w: &[Option<Weight>]) -> u32 {
    let (a, r) = (achieved_bp(parts, w), requested_bp(parts));
    a.iter().zip(&r).map(|(a, r)| a.abs_diff(*r)).max().unwrap_or(0)
}

proptest! {
    #[test]
    fn achieved_shares_are_within_the_tolerance_or_the_best_integer_solution(
        shares in (1u32..=100, 1u32..=100),
        counts in (1usize..=200, 1usize..=200),
    ) {
        let parts = [part(shares.0, counts.0), part(shares.1, counts.1)];
        let w = weights(&parts);
        let bound = (best_pair(&parts) * 10_000.0).max(f64::from(TOLERANCE_BP));
        // Basis points are rounded: one of slack.
        prop_assert!(f64::from(max_off_bp(&parts, &w.weights)) <= bound + 1.0, "{w:?} vs {bound}");
    }

    #[test]
    fn weights_are_one_to_a_hundred_and_only_backends_without_targets_have_none(
        parts in prop::collection::vec((1u32..=1000, 0usize..=60, prop::option::of(0u8..=100)), 1..=4),
    ) {
        let parts: Vec<Part> = parts.into_iter().map(|(share, targets, current)| Part { share, targets, current }).collect();
        let w = weights(&parts);
        for (p, w) in parts.iter().zip(&w.weights) {
            prop_assert_eq!(w.is_some(), p.targets > 0);
            prop_assert!(w.is_none_or(|w| (1..=100).contains(&w)));
        }
    }

    #[test]
    fn weights_stay_when_counts_change_within_the_tolerance(
        shares in (1u32..=100, 1u32..=100),
        counts in (1usize..=100, 1usize..=100),
        moved in (-3i64..=3, -3i64..=3),
    ) {
        let parts = [part(shares.0, counts.0), part(shares.1, counts.1)];
        let first = weights(&parts).weights;
        let recount = |n: usize, d: i64| (n as i64 + d).max(1) as usize;
        let now = [
            Part { current: first[0], ..part(shares.0, recount(counts.0, moved.0)) },
            Part { current: first[1], ..part(shares.1, recount(counts.1, moved.1)) },
        ];
        // Strictly inside (rounding to basis points could put the edge on either side).
        prop_assume!(max_off_bp(&now, &first) < TOLERANCE_BP);
        prop_assert_eq!(weights(&now).weights, first.to_vec());
    }

    #[test]
    fn a_split_rule_never_loses_its_last_serving_target(
        web in 0usize..=4,
        canary in 0usize..=3,
        terminating in prop::collection::vec(any::<bool>(), 7),
        bound_web in prop::collection::vec(prop::option::of(0u8..=100), 4),
        bound_canary in prop::collection::vec(prop::option::of(0u8..=100), 3),
        shares in (1u32..=100, 1u32..=100),
        redistribute in any::<bool>(),
    ) {
        let rules = rules(shares.0, shares.1, if redistribute { "redistribute" } else { "hold" });
        let mut flags = terminating.into_iter();
        let web_pods = terminating_as(pods("web", 1, web), &mut flags);
        let canary_pods = terminating_as(pods("canary", 2, canary), &mut flags);
        let bound: Vec<BoundTarget> = [(1u8, bound_web), (2, bound_canary)]
            .into_iter()
            .flat_map(|(net, ws)| {
                ws.into_iter().enumerate().filter_map(move |(i, w)| Some(eni(&format!("10.{net}.0.{}", i + 1), w?)))
            })
            .collect();
        let serving_before = bound.iter().any(BoundTarget::takes_traffic);
        let rule = planned(&rules, web_pods, canary_pods, bound.clone());
        let after = apply_rows(&bound, &rule.status, &rule.rows);
        // Registered targets are not healthy yet: what serves after the run is what was healthy and weighted.
        prop_assert!(!serving_before || after.iter().any(BoundTarget::takes_traffic), "{:?}", rule.rows);
        // 0 only for a target held back until its health checks pass (make before break across backends).
        for row in rule.rows.iter().filter(|r| matches!(r.action, Action::Register | Action::Reweight)) {
            let held = row.note.as_deref().is_some_and(|n| n.starts_with("waiting for "));
            let least = if held { 0 } else { 1 };
            prop_assert!(row.weight.is_some_and(|w| (least..=100).contains(&w)), "{row:?}");
        }
    }
}

/// An IP reused across backends while the old pod terminates: the ready pod's target wins, whichever backend
/// comes first in the file.
#[test]
fn a_target_in_two_backends_is_the_ready_pods() {
    let rules = rules(50, 50, "hold");
    let mut old = pod("canary-old", "10.1.0.1");
    old.terminating = true;
    let bound = vec![eni("10.1.0.1", 10), eni("10.2.0.1", 10)];
    let rule = planned(&rules, pods("web", 1, 1), vec![old, pod("canary-0", "10.2.0.1")], bound);
    let row = rule.rows.iter().find(|r| r.target == t("10.1.0.1", 8080)).expect("a row for 10.1.0.1");
    assert_eq!(row.pod.as_deref(), Some("web-0"), "{:?}", rule.rows);
    assert!(!matches!(row.action, Action::Drain | Action::Deregister), "{:?}", row);
}

/// With `hold` and three backends, one empty: the two left keep the proportions asked for between them (2:1
/// here), instead of their raw bound weights, whose parts would move with pod counts.
#[test]
fn with_hold_and_three_backends_the_live_ones_keep_their_proportions_among_themselves() {
    // 50/25/25, the third empty. The second grew from 5 to 10 pods at the bound weight 10: 100 : 100 is 50/50,
    // not 2:1. The first (the larger share) keeps its weight; the second moves to 5.
    let parts = [
        Part { share: 50, targets: 10, current: Some(10) },
        Part { share: 25, targets: 10, current: Some(10) },
        Part { share: 25, targets: 0, current: None },
    ];
    let w = weights(&parts);
    assert_eq!(w.weights, [Some(10), Some(5), None]);
    assert_eq!(achieved_bp(&parts, &w.weights), [6667, 3333, 0]);
    // At 5 pods the bound weights give 2:1: nothing moves.
    let parts = [parts[0], Part { targets: 5, ..parts[1] }, parts[2]];
    assert_eq!(weights(&parts).weights, [Some(10), Some(10), None]);
}

/// The rule of `rules` with web's pods listed and the canary's list failing.
fn canary_unreadable(rules: &Rules, web: Vec<Pod>, bound: Vec<BoundTarget>) -> RulePlan {
    let rules: Vec<&Rule> = rules.rules.iter().collect();
    let queries: Vec<PodQuery> = rules[0].queries().cloned().collect();
    let lists = PodLists::from([
        (queries[0].clone(), Ok(Selected { pods: web, target_port: None, replicas: None })),
        (queries[1].clone(), Err("pods is forbidden".to_owned())),
    ]);
    let actual = by_rule([Ok(RuleTargets { binding: binding(), targets: bound })]);
    plan(&rules, &lists, &actual, &PodsByIp::new(), &PlanOptions::default()).rules.remove(0)
}

/// One backend that cannot be read keeps its targets (which are its is unknown) and every weight, while the
/// others' rollouts go on: new pods registered at their backend's bound weight, terminating ones drained.
#[test]
fn an_unreadable_backend_keeps_every_weight_and_its_targets_while_the_others_roll() {
    let rules = rules(95, 5, "hold");
    let mut web = pods("web", 1, 4);
    web[0].terminating = true;
    let bound = vec![eni("10.1.0.1", 10), eni("10.1.0.2", 10), eni("10.1.0.3", 10), eni("10.2.0.1", 11)];
    let rule = canary_unreadable(&rules, web.clone(), bound);
    assert_eq!(rule.status, Status::Ready, "{:?}", rule.status);
    let action = |ip: &str| rule.rows.iter().find(|r| r.target == t(ip, 8080)).map(|r| (r.action, r.weight));
    assert_eq!(action("10.2.0.1"), Some((Action::Unchanged, Some(11))), "the canary's target stays");
    assert_eq!(action("10.1.0.1"), Some((Action::Drain, Some(0))), "a terminating web pod drains");
    assert_eq!(action("10.1.0.4"), Some((Action::Register, Some(10))), "a new web pod at web's weight");
    assert_eq!(action("10.1.0.2"), Some((Action::Unchanged, Some(10))));
    assert!(rule.warnings.iter().any(|w| w.starts_with("split held: listing pods in shop with app=canary")));
    // Nothing of web bound: no weight to register its pods at, so the rule is skipped as before.
    let skipped = canary_unreadable(&rules, web, vec![eni("10.2.0.1", 11)]);
    assert!(matches!(skipped.status, Status::Skipped { .. }), "{:?}", skipped.status);
}
