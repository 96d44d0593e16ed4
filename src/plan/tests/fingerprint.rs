//! The plan fingerprint (issue 27 #2): equal for the same changes from the same bound state, whatever the order
//! of the rules and whatever changes without changing the plan; different after any change that matters.

use super::*;

fn rule_plan(lb: &str, rows: Vec<Row>) -> RulePlan {
    RulePlan {
        path: "[0]".into(),
        line: 1,
        place: Place { load_balancer_id: lb.into(), protocol: Protocol::Tcp, port: 80, l7: None },
        listener_id: None,
        location_id: None,
        namespace: "shop".into(),
        pods: "deployment shop/web".into(),
        binding: Some(binding()),
        status: Status::Ready,
        rows,
        warnings: Vec::new(),
        untargetable: Default::default(),
        gate_kept: Vec::new(),
        needs_health: false,
        lookup: Vec::new(),
        owner: None,
        gate_waits: false,
    }
}

fn rows() -> Vec<Row> {
    let (_, rows) =
        run(vec![ready("10.0.0.1", 10), ready("10.0.0.2", 20)], vec![eni("10.0.0.1", 10), eni("10.0.0.3", 10)], SYNC);
    rows
}

#[test]
fn a_fingerprint_prints_and_parses_back_and_bad_ones_are_refused() {
    let f = fingerprint([&rule_plan("lb-1", rows())]);
    let shown = f.to_string();
    assert!(shown.starts_with("sha256:") && shown.len() == 7 + 64, "{shown}");
    assert_eq!(Fingerprint::parse(&shown), Ok(f));
    for bad in ["", "sha256:", "sha1:00", &shown[..70], &format!("{shown}0"), &shown.replace("sha256", "SHA256")] {
        assert!(Fingerprint::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn the_order_of_rules_pod_names_notes_and_health_do_not_change_it() {
    let (a, b) = (rule_plan("lb-1", rows()), rule_plan("lb-2", rows()));
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
    let a = rule_plan("lb-1", rows());
    let base = fingerprint([&a]);
    let changed = |f: &dyn Fn(&mut RulePlan)| {
        let mut p = a.clone();
        f(&mut p);
        fingerprint([&p])
    };
    assert_ne!(base, changed(&|p| p.rows[0].weight = Some(30)), "a planned weight");
    assert_ne!(base, changed(&|p| p.rows[0].current_weight = Some(30)), "a bound weight");
    assert_ne!(base, changed(&|p| p.rows[0].action = Action::Wait), "an action");
    assert_ne!(base, changed(&|p| p.rows.pop().map(drop).unwrap_or(())), "a row gone");
    assert_ne!(base, changed(&|p| p.place.port = 81), "another listener");
    assert_ne!(base, changed(&|p| p.owner = Some(Owner::new("blue").expect("owner"))), "another owner");
    assert_ne!(base, changed(&|p| p.status = Status::Blocked { reason: "x".into() }), "blocked");
    assert_ne!(fingerprint([&a]), fingerprint([&a, &rule_plan("lb-2", Vec::new())]), "another rule");
    assert_ne!(fingerprint(std::iter::empty()), base);
}
