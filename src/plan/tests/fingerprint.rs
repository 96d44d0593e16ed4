//! The plan fingerprint (issue 27 #2): equal for the same changes from the same bound state, whatever the order
//! of the rules and whatever changes without changing the plan; different after any change that matters.

use super::*;

/// The shared test rule's plan (`super::rule_plan`), on load balancer `lb`.
fn on(lb: &str, rows: Vec<Row>) -> RulePlan {
    let mut plan = rule_plan(Status::Ready, rows);
    plan.place.load_balancer_id = lb.into();
    plan
}

fn rows() -> Vec<Row> {
    let (_, rows) =
        run(vec![ready("10.0.0.1", 10), ready("10.0.0.2", 20)], vec![eni("10.0.0.1", 10), eni("10.0.0.3", 10)], SYNC);
    rows
}

#[test]
fn a_fingerprint_prints_and_parses_back_and_bad_ones_are_refused() {
    let f = fingerprint([&on("lb-1", rows())]);
    let shown = f.to_string();
    assert!(shown.starts_with("sha256:") && shown.len() == 7 + 64, "{shown}");
    assert_eq!(Fingerprint::parse(&shown), Ok(f));
    for bad in ["", "sha256:", "sha1:00", &shown[..70], &format!("{shown}0"), &shown.replace("sha256", "SHA256")] {
        assert!(Fingerprint::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_order_of_rules_pod_names_notes_and_health_do_not_change_it() {
    let (a, b) = (on("lb-1", rows()), on("lb-2", rows()));
    assert_eq!(fingerprint([&a, &b]), fingerprint([&b, &a]));
    let mut renamed = a.clone();
    for row in &mut renamed.rows {
        row.pod = Some("another-pod".into());
        row.note = Some("a note".into());
        row.health = Health::Unhealthy;
        row.waiting_since = Some(1);
    }
    assert_eq!(fingerprint([&a]), fingerprint([&renamed]));
    let skipped = |reason: &str| RulePlan { status: Status::Skipped { reason: reason.into() }, ..a.clone() };
    assert_eq!(fingerprint([&skipped("RequestId 1")]), fingerprint([&skipped("RequestId 2")]));
}

#[test]
fn any_change_of_a_row_or_the_bound_state_changes_it() {
    let a = on("lb-1", rows());
    let base = fingerprint([&a]);
    let changed = |f: &dyn Fn(&mut RulePlan)| {
        let mut p = a.clone();
        f(&mut p);
        fingerprint([&p])
    };
    assert_ne!(base, changed(&|p| p.rows[0].weight = Some(30)), "a planned weight");
    assert_ne!(base, changed(&|p| p.rows[0].current_weight = Some(30)), "a bound weight");
    assert_ne!(base, changed(&|p| p.rows[0].action = Action::Wait), "an action");
    assert_ne!(
        base,
        changed(&|p| {
            p.rows.pop();
        }),
        "a row gone"
    );
    assert_ne!(base, changed(&|p| p.place.port = 81), "another listener");
    assert_ne!(base, changed(&|p| p.owner = Some(Owner::new("blue").expect("owner"))), "another owner");
    assert_ne!(base, changed(&|p| p.status = Status::Blocked { reason: "x".into() }), "blocked");
    assert_ne!(fingerprint([&a]), fingerprint([&a, &on("lb-2", Vec::new())]), "another rule");
    assert_ne!(fingerprint(std::iter::empty()), base);
}
