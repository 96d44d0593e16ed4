//! Reviewed plans and deletion budgets (issue 27) end to end: the real binary against the test API server and the
//! emulator.

use super::watch::has;
use super::{Slot, Spec, World, p};

/// The `--max-deregister` value the shipped CronJob runs with.
fn shipped_budget() -> String {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/cronjob/cronjob.yaml"))
        .expect("read deploy/cronjob/cronjob.yaml");
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("YAML");
    let args = &doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"];
    let args: Vec<&str> = args.as_sequence().expect("args").iter().filter_map(|a| a.as_str()).collect();
    let at = args.iter().position(|a| *a == "--max-deregister").expect("the CronJob sets --max-deregister");
    args[at + 1].to_owned()
}

/// Issue 27 #3: the web rule's backend typed as `api` (one pod): four of the rule's five targets would go at once
/// (one is kept serving until the api pod's target is healthy). The shipped CronJob's budget holds the rule, and
/// changes nothing of it; `--force` applies it.
#[tokio::test]
async fn a_typo_that_would_remove_most_of_a_rule_is_held_by_the_shipped_budget_and_force_applies_it() {
    let web: Vec<_> = (1..=5).map(|i| p("web", &format!("10.2.0.{i}"))).collect();
    let spec = Spec::default().pods([p("api", "10.1.0.1"), p("redis", "10.3.0.1")]).pods(web);
    let mut world = World::new("pbudget", spec).await;
    let budget = shipped_budget();
    world.run(&["reconcile", "--max-deregister", &budget]).await.assert_code(0);
    assert_eq!(world.targets(Slot::Web).len(), 5);

    let typo =
        world.rules_text().replace("url: /, backend: {namespace: ", "url: /, backend: {deployment: api, namespace: ");
    let typo = typo.replacen(", deployment: web,", ",", 1);
    assert_ne!(typo, world.rules_text(), "the typo was made");
    world.set_rules(&typo);
    let held = world.run(&["reconcile", "--max-deregister", &budget]).await;
    held.assert_code(1);
    assert!(held.stdout.contains("BLOCKED"), "{}", held.all());
    assert!(held.stdout.contains("would take 4 of its 5 bound target(s)"), "{}", held.all());
    assert!(held.stdout.contains(&format!("over --max-deregister {budget}")), "{}", held.all());
    assert_eq!(world.targets(Slot::Web).len(), 5, "nothing changed\n{}", held.all());

    // --force: the api pod's target is registered and four web targets go at once; the last one waits until
    // the new target passes its health checks (make before break), so a second run finishes it.
    let forced = world.run(&["reconcile", "--max-deregister", &budget, "--force"]).await;
    forced.assert_code(0);
    assert!(has(&world.targets(Slot::Web), "10.1.0.1", 20), "{}", forced.all());
    assert!(world.targets(Slot::Web).len() <= 2, "{:?}\n{}", world.targets(Slot::Web), forced.all());
}
