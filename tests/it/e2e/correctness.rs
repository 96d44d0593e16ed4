//! Regressions of issue 17: defects found by testing clbsync as a hostile user would. Each test failed before
//! its fix.

use super::{Slot, Spec, World, eni, p};

fn spec() -> Spec {
    Spec::default()
        .pods([p("api", "10.1.0.1"), p("api", "10.1.0.2"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Api, [eni("10.1.0.1", 8080, 10), eni("10.99.0.1", 8080, 10)])
        .bound(Slot::Web, [eni("10.2.0.1", 8080, 20), eni("10.99.0.2", 8080, 20)])
}

/// Issue 17 #1: `location_id: loc-admin001` (really e2e.example.com/admin, a rule clbsync does not manage) on the
/// rule for `/` must not hand the admin rule's backends to the web pods; the rule is refused like a wrong
/// `listener_id`, and every other rule still converges.
#[tokio::test]
async fn a_location_id_that_names_another_sites_rule_is_refused_and_that_rule_is_untouched() {
    let mut world = World::new("locid", spec()).await;
    let rules = world.rules_text().replace(
        "- {domain: e2e.example.com, url: /, backend:",
        "- {domain: e2e.example.com, url: /, location_id: loc-admin001, backend:",
    );
    assert_ne!(rules, world.rules_text(), "the rules file names the wrong location id");
    world.set_rules(&rules);
    let api_before = world.targets(Slot::Api);
    let web_before = world.targets(Slot::Web);

    let run = world.reconcile().await;
    run.assert_code(1);
    assert!(
        run.stdout.contains(
            "loc-admin001 is e2e.example.com/admin, the rules file says e2e.example.com/: fix domain/url or location_id (line"
        ),
        "the refusal names both sites\n{}",
        run.all()
    );
    let api_converged = world.expected(Slot::Api, &world.seeded);
    assert_eq!(world.targets(Slot::Api), api_converged, "the other rules converge\n{}", run.all());
    assert_ne!(api_before, api_converged, "the /api rule had work to do");
    assert_eq!(world.targets(Slot::Web), web_before, "the refused rule is left as it is\n{}", run.all());
    world.assert_unowned_untouched(&run);
}

/// Issue 17 #2: CLB fails a batch registration per listener (`FailListenerIdSet`). The `/api` rule (and the TLS
/// listener, same pods) is over its backend quota; the `/` rule on the same listener as `/api` fits and must
/// converge, and each failed change carries its own rule's message.
#[tokio::test]
async fn one_l7_rule_over_its_quota_fails_that_rule_only_not_its_listener() {
    let pods = (1..=4).map(|k| p("api", &format!("10.1.0.{k}"))).chain([p("web", "10.2.0.1"), p("web", "10.2.0.2")]);
    let spec = Spec::default().pods(pods).bound(Slot::Web, [eni("10.99.0.2", 8080, 20)]);
    let world = World::new("l7quota", spec).await;
    world.emu.set_backend_quota(3);
    let before = world.emu.state();
    let run = world.run(&["reconcile", "-o", "json"]).await;
    run.assert_code(1);
    assert_eq!(world.targets(Slot::Web), world.expected(Slot::Web, &before), "/ converges\n{}", run.all());
    assert_eq!(world.targets(Slot::Redis), world.expected(Slot::Redis, &before), "{}", run.all());
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("a JSON report");
    let failed: Vec<&serde_json::Value> =
        doc["changes"].as_array().expect("changes").iter().filter(|c| c["status"] == "failed").collect();
    assert!(!failed.is_empty(), "the /api registrations fail\n{}", run.all());
    for c in failed {
        assert_ne!(c["location_id"], "loc-web00001", "/ fits its quota and must not fail\n{}", run.all());
        let own = c["location_id"].as_str().or(c["listener_id"].as_str()).expect("a place");
        let message = c["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(own), "{own}'s own message, not another rule's: {message}");
    }
    world.emu.set_backend_quota(200);
    world.assert_converges_and_stays().await;
}

/// Issue 17 #4: a new CLB target takes no traffic until it passes its health checks (15 s with CLB's defaults).
/// A one-replica rollout registers the new pod and keeps the old target's weight while the new one warms up;
/// the drain happens on the first run after the new target is healthy.
#[tokio::test]
async fn a_drain_waits_until_the_replacement_passes_its_health_checks() {
    let spec = Spec::default()
        .pods([p("api", "10.1.0.2"), p("api", "10.1.0.1").terminating(), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Api, [eni("10.1.0.1", 8080, 10)])
        .bound(Slot::Web, [eni("10.2.0.1", 8080, 20)])
        .bound(Slot::Redis, [eni("10.3.0.1", 6379, 10)]);
    let world = World::new("warmup", spec).await;
    world.emu.set_health_config(clb_emulator::HealthConfig::default());

    let run = world.reconcile().await;
    run.assert_code(0);
    assert!(run.stdout.contains(" wait "), "the drain waits\n{}", run.all());
    let api = world.targets(Slot::Api);
    assert_eq!(api, [("10.1.0.1".into(), 8080, 10), ("10.1.0.2".into(), 8080, 10)], "old keeps serving\n{}", run.all());
    world.run(&["diff", "--detailed-exitcode"]).await.assert_code(2);

    // 10 s later the new target is still detecting: the drain still waits, and nothing is called.
    world.emu.advance(std::time::Duration::from_secs(10));
    world.emu.reset_calls();
    let run = world.reconcile().await;
    run.assert_code(0);
    assert!(run.stdout.contains("until another target of this rule is healthy"), "{}", run.all());
    assert_eq!(world.emu.calls().mutating(), 0, "{}", run.all());
    assert!(world.emu.calls().count("DescribeTargetHealth") > 0, "health was read to decide");

    // Past CLB's 15 s warm-up the new target is healthy and the old one is drained.
    world.emu.advance(std::time::Duration::from_secs(6));
    let run = world.reconcile().await;
    run.assert_code(0);
    assert_eq!(
        world.targets(Slot::Api),
        [("10.1.0.1".into(), 8080, 0), ("10.1.0.2".into(), 8080, 10)],
        "{}",
        run.all()
    );
}

/// Issue 17 #5: `port: htp` (a typo) matches no container port. The run used to print "In sync" and exit 0 with the
/// warnings only in `-o json`; now the rule is blocked with the reason in every format, and the exit code says so.
#[tokio::test]
async fn a_port_name_typo_is_not_in_sync_in_any_format() {
    let mut world = World::new("porttypo", Spec::default().pods([p("api", "10.1.0.1"), p("web", "10.2.0.1")])).await;
    let rules = world.rules_text().replace("deployment: web, port: 8080,", "deployment: web, port: htp,");
    assert_ne!(rules, world.rules_text());
    world.set_rules(&rules);
    let table = world.run(&["diff", "--detailed-exitcode"]).await;
    table.assert_code(1);
    assert!(!table.stdout.contains("In sync"), "{}", table.all());
    assert!(table.stdout.contains("has no container port named `htp`"), "{}", table.all());
    assert!(table.stdout.contains("none of the 1 ready pod(s) can be a target"), "{}", table.all());
    let json = world.run(&["diff", "-o", "json"]).await;
    json.assert_code(1);
    assert!(json.stdout.contains("none of the 1 ready pod(s) can be a target"), "{}", json.all());
}

/// Issue 24 #7: a rule's backend switched in the rules file (deployment api → web) registered web's pods and
/// removed api's, which still served, in the same run. Now the run that sees the switch registers web's pods and
/// keeps api's (asking the API server whether pods still hold their IPs); the run after it, once web's targets
/// pass their health checks, removes them.
#[tokio::test]
async fn a_backend_switched_in_the_rules_file_keeps_the_old_pods_until_the_new_ones_take_traffic() {
    let pods = [p("api", "10.1.0.1"), p("api", "10.1.0.2"), p("web", "10.2.0.1"), p("web", "10.2.0.2")];
    let mut world = World::new("switch", Spec::default().pods(pods)).await;
    world.reconcile().await.assert_code(0);
    let at = |ips: &[&str]| ips.iter().map(|ip| (ip.to_string(), 8080, 10)).collect::<Vec<_>>();
    assert_eq!(world.targets(Slot::Api), at(&["10.1.0.1", "10.1.0.2"]));

    let switched = world.rules_text().replacen("deployment: api, port: 8080", "deployment: web, port: 8080", 1);
    world.set_rules(&switched);
    let run = world.reconcile().await;
    run.assert_code(0);
    assert_eq!(world.targets(Slot::Api), at(&["10.1.0.1", "10.1.0.2", "10.2.0.1", "10.2.0.2"]), "{}", run.all());
    assert!(run.stdout.contains("still serves; this rule no longer selects it"), "{}", run.all());

    let run = world.reconcile().await;
    run.assert_code(0);
    assert_eq!(world.targets(Slot::Api), at(&["10.2.0.1", "10.2.0.2"]), "{}", run.all());
}
