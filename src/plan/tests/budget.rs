//! `--max-deregister` (issue 27 #3): a plan that would remove more of a rule's targets than the budget holds the
//! rule; within it, nothing changes.

use proptest::prelude::*;

use super::*;

fn budget(b: &str) -> PlanOptions {
    PlanOptions { max_deregister: Some(Budget::parse(b).expect("a budget")), ..PlanOptions::default() }
}

fn bound(n: u8) -> Vec<BoundTarget> {
    (0..n).map(|i| eni(&format!("10.0.0.{i}"), 10)).collect()
}

fn kept(n: u8, total: u8) -> Vec<DesiredTarget> {
    (0..n).chain(total..total + (total - n)).map(|i| ready(&format!("10.0.0.{i}"), 10)).collect()
}

#[test]
fn budgets_parse_as_targets_or_percent() {
    assert_eq!(Budget::parse("5"), Ok(Budget::Targets(5)));
    assert_eq!(Budget::parse("50%"), Ok(Budget::Percent(50)));
    assert_eq!(Budget::parse("0"), Ok(Budget::Targets(0)));
    for bad in ["", "-1", "101%", "x", "5 %%", "1.5"] {
        assert!(Budget::parse(bad).is_err(), "{bad:?}");
    }
    assert_eq!(Budget::Percent(50).limit(3), None, "percentages apply from {PERCENT_FROM} targets");
    assert_eq!(Budget::Percent(50).limit(10), Some(5));
    assert_eq!(Budget::Targets(2).limit(1), Some(2));
}

#[test]
fn a_selector_typo_removing_every_target_is_held_with_the_numbers() {
    // The typo selects other pods: 6 new ones, and every bound one would go.
    let typo: Vec<DesiredTarget> = (10..16).map(|i| ready(&format!("10.0.0.{i}"), 10)).collect();
    let (status, rows) = planned(&desired(typo.clone()), &bound(6), SYNC, &budget("50%"));
    let Status::Blocked { reason } = &status else { panic!("not held: {status:?}") };
    assert!(reason.contains("6 of its 6 bound target(s)") && reason.contains("--max-deregister 50% (3"), "{reason}");
    assert!(reason.contains("--force"), "{reason}");
    assert_eq!(removals(&rows), 6, "the rows still show what would have happened");
    let (status, _) = planned(&desired(typo), &bound(6), SYNC, &PlanOptions::default());
    assert_eq!(status, Status::Ready, "without a budget (--force) it goes through");
}

#[test]
fn a_rollout_replacing_30_percent_is_within_a_50_percent_budget() {
    let (status, rows) = planned(&desired(kept(7, 10)), &bound(10), SYNC, &budget("50%"));
    assert_eq!(status, Status::Ready);
    assert_eq!(removals(&rows), 3);
}

#[test]
fn an_absolute_budget_holds_the_rule_past_it_and_small_rules_are_not_held_by_a_percentage() {
    let (status, _) = planned(&desired(kept(7, 10)), &bound(10), SYNC, &budget("2"));
    assert!(matches!(status, Status::Blocked { .. }), "{status:?}");
    let (status, _) = planned(&desired(kept(1, 3)), &bound(3), SYNC, &budget("50%"));
    assert_eq!(status, Status::Ready, "a 3-target rule replacing 2 is not held by a percentage");
}

proptest! {
    /// No plan that would be applied removes more of a rule's bound targets than its budget allows.
    #[test]
    fn no_ready_plan_removes_more_than_the_budget(
        (d, a, rule) in arb_world(),
        b in prop_oneof![(0usize..6).prop_map(Budget::Targets), (0u8..=100).prop_map(Budget::Percent)],
    ) {
        let opts = PlanOptions { max_deregister: Some(b), ..PlanOptions::default() };
        let (status, rows) = planned(&desired(d), &a, rule, &opts);
        prop_assume!(status == Status::Ready);
        let bound = rows.iter().filter(|r| r.current_weight.is_some() && r.action != Action::Unmanaged).count();
        if let Some(limit) = b.limit(bound) {
            prop_assert!(removals(&rows) <= limit, "{} removals over {b} of {bound}: {rows:?}", removals(&rows));
        }
    }
}
