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

/// The `plan sha256:…` line of a table report.
fn fingerprint_of(run: &super::Run) -> String {
    let line = run.stdout.lines().find_map(|l| l.strip_prefix("plan ")).expect("a `plan sha256:` line");
    line.to_owned()
}

/// Issue 27 #2: the plan `diff` showed is applied by `--expect-plan` with its fingerprint; after any change in
/// between (a pod, a weight changed in the console) nothing is applied and the run exits 3, saying why.
#[tokio::test]
async fn expect_plan_applies_the_reviewed_plan_and_nothing_once_the_world_changed() {
    let spec = Spec::default().pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")]);
    let mut world = World::new("pexpect", spec).await;
    let reviewed = world.run(&["diff"]).await;
    let fingerprint = fingerprint_of(&reviewed);
    let json = world.run(&["diff", "-o", "json"]).await;
    let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON report");
    assert_eq!(doc["fingerprint"], fingerprint.as_str(), "the same fingerprint in every format");
    assert_eq!(fingerprint_of(&world.run(&["diff"]).await), fingerprint, "stable across runs");

    // Changed in between: a new pod. Nothing is applied, exit 3.
    world.add_pod(p("web", "10.2.0.2")).await;
    let before = world.emu.state();
    let refused = world.run(&["reconcile", "--expect-plan", &fingerprint]).await;
    refused.assert_code(3);
    assert_eq!(world.emu.state(), before, "nothing applied\n{}", refused.all());
    assert!(refused.stderr.contains("the plan is not the one reviewed"), "{}", refused.all());
    let now = fingerprint_of(&refused);
    assert_ne!(now, fingerprint);
    assert!(refused.stderr.contains(&format!("run again with --expect-plan {now}")), "{}", refused.all());

    // The new plan, reviewed, is applied.
    world.run(&["reconcile", "--expect-plan", &now]).await.assert_code(0);
    assert!(has(&world.targets(Slot::Web), "10.2.0.2", 20));

    // In sync, "apply only while in sync": a weight changed in the console makes it another plan.
    let in_sync = fingerprint_of(&world.run(&["diff"]).await);
    world.run(&["reconcile", "--expect-plan", &in_sync]).await.assert_code(0);
    let mut state = world.emu.state();
    let lb = state.load_balancers.iter_mut().find(|l| l.id == Slot::Web.lb()).expect("lb");
    let listener = lb.listeners.iter_mut().find(|l| l.id == Slot::Web.listener()).expect("listener");
    let rule = listener.rules.iter_mut().find(|r| Some(r.location_id.as_str()) == Slot::Web.location()).expect("rule");
    rule.targets[0].weight = 77;
    world.emu.set_state(state.clone());
    world.emu.reset_calls();
    world.run(&["reconcile", "--expect-plan", &in_sync]).await.assert_code(3);
    assert_eq!(world.emu.calls().mutating(), 0, "nothing applied");
    assert_eq!(world.emu.state(), state);
}

/// Issue 27 #4: four of the web Deployment's five pods lose their label (a typo in a relabelling, or a list that
/// answered only in part): one pod listed for five replicas. The shipped budget holds the rule with both numbers,
/// nothing is removed, and a Warning Event names it; `--force` lets it through.
#[tokio::test]
async fn fewer_pods_listed_than_replicas_holds_the_rule_naming_both_numbers_and_removes_nothing() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::events::v1::Event;
    use kube::api::{Api, Patch, PatchParams};

    let web: Vec<_> = (1..=5).map(|i| p("web", &format!("10.2.0.{i}"))).collect();
    let spec = Spec::default().pods([p("api", "10.1.0.1"), p("redis", "10.3.0.1")]).pods(web.clone());
    let world = World::new("psource", spec).await;
    let deployments: Api<Deployment> = Api::namespaced(world.ns.client.clone(), &world.ns.name);
    let replicas = serde_json::json!({"spec": {"replicas": 5}});
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(replicas)).await.expect("scale web to 5");
    let budget = shipped_budget();
    world.run(&["reconcile", "--max-deregister", &budget]).await.assert_code(0);
    assert_eq!(world.targets(Slot::Web).len(), 5);

    let relabel = serde_json::json!({"metadata": {"labels": {"app": "wbe"}}});
    for pod in &web[1..] {
        world.ns.pods().patch(&pod.name(), &PatchParams::default(), &Patch::Merge(&relabel)).await.expect("relabel");
    }
    let before = world.emu.state();
    let held = world.run(&["reconcile", "--max-deregister", &budget]).await;
    held.assert_code(1);
    let message = format!("1 pod listed for deployment {}/web, which asks for 5 replicas", world.ns.name);
    assert!(held.stdout.contains(&message), "{}", held.all());
    assert!(held.stdout.contains("held; --force to apply"), "{}", held.all());
    assert_eq!(world.emu.state(), before, "nothing removed\n{}", held.all());
    let events: Api<Event> = Api::namespaced(world.ns.client.clone(), &world.ns.name);
    let events = events.list(&Default::default()).await.expect("list events").items;
    let blocked: Vec<_> = events.iter().filter(|e| e.reason.as_deref() == Some("RuleBlocked")).collect();
    assert!(
        blocked.iter().any(|e| e.type_.as_deref() == Some("Warning")
            && e.note.as_deref().is_some_and(|n| n.contains("which asks for 5 replicas"))),
        "a Warning Event names the numbers: {blocked:?}"
    );

    let forced = world.run(&["reconcile", "--max-deregister", &budget, "--force"]).await;
    forced.assert_code(0);
    assert!(world.targets(Slot::Web).len() < 5, "{:?}\n{}", world.targets(Slot::Web), forced.all());
}

/// The same check in watch mode, from the cached Deployment's `spec.replicas`: 4 of the 5 pods relabelled away
/// hold the rule, naming both numbers, and nothing is removed while the watcher runs on.
#[tokio::test]
async fn watch_mode_holds_a_rule_whose_pods_fall_short_of_its_replicas() {
    use super::watch::{REACT, Watcher, eventually};
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Api, Patch, PatchParams};

    let web: Vec<_> = (1..=5).map(|i| p("web", &format!("10.2.0.{i}"))).collect();
    let spec = Spec::default().pods([p("api", "10.1.0.1"), p("redis", "10.3.0.1")]).pods(web.clone());
    let world = World::new("wsource", spec).await;
    let deployments: Api<Deployment> = Api::namespaced(world.ns.client.clone(), &world.ns.name);
    let replicas = serde_json::json!({"spec": {"replicas": 5}});
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(replicas)).await.expect("scale web to 5");
    let budget = shipped_budget();
    let w = Watcher::start(&world, &["--max-deregister", &budget]);
    eventually(REACT, "the first sync", &w, || world.targets(Slot::Web).len() == 5).await;

    let relabel = serde_json::json!({"metadata": {"labels": {"app": "wbe"}}});
    for pod in &web[1..] {
        world.ns.pods().patch(&pod.name(), &PatchParams::default(), &Patch::Merge(&relabel)).await.expect("relabel");
    }
    let message = format!("1 pod listed for deployment {}/web, which asks for 5 replicas", world.ns.name);
    eventually(REACT, "the rule held with both numbers", &w, || w.reports().contains(&message)).await;
    assert_eq!(world.targets(Slot::Web).len(), 5, "nothing removed\n{}", w.reports());
    assert!(world.targets(Slot::Web).iter().any(|(ip, _, _)| ip == "10.2.0.5"), "{:?}", world.targets(Slot::Web));
}
