//! Issue 28: a `backends:` rule against the real API server and the emulator. A 95/5 split with 20 web pods and
//! one canary converges to the planned weights in one run, a second run changes nothing, and the requests the
//! emulator's traffic model delivers split as planned; editing the shares to 50/50 re-weights, and the delivered
//! split follows.

use std::time::Duration;

use clb_emulator::TrafficConfig;

use super::{Slot, Spec, World, p, run};
use crate::support::clbsync;
use crate::support::kube::kubeconfig_path;

const WEB_PODS: usize = 20;
const CANARY_IP: &str = "10.4.0.1";
/// 30,000 requests a second: two seconds (some 58,000 requests) put the measured share within 3 sigma of the
/// planned one at ±0.3 points for a 5% canary, ±0.7 at 50%.
const TRAFFIC: TrafficConfig = TrafficConfig { requests_per_second: 30_000.0, step_ms: 20, bucket_ms: 500, seed: 28 };

/// The TCP listener 6379 split `web`/`canary` between pods `app: web` and `app: canary` (port 8080).
fn rules(ns: &str, web: u32, canary: u32) -> String {
    format!(
        "- load_balancer_id: lb-e2e00001
  listeners:
    - port: 6379
      protocol: tcp
      backends:
        - {{namespace: {ns}, selector: {{app: web}}, port: 8080, share: {web}}}
        - {{namespace: {ns}, selector: {{app: canary}}, port: 8080, share: {canary}}}
"
    )
}

async fn world() -> World {
    let web = (1..=WEB_PODS).map(|i| p("web", &format!("10.2.0.{i}")));
    let mut world = World::new("split", Spec::default().pods(web.chain([p("canary", CANARY_IP)]))).await;
    let text = rules(&world.ns.name, 95, 5);
    world.set_rules(&text);
    world
}

/// The weights bound on the listener: (web weights, canary weights), each sorted and deduplicated.
fn weights(world: &World) -> (Vec<u32>, Vec<u32>) {
    let targets = world.targets(Slot::Redis);
    let of = |canary: bool| {
        let mut w: Vec<u32> = targets.iter().filter(|t| (t.0 == CANARY_IP) == canary).map(|t| t.2).collect();
        w.dedup();
        w
    };
    assert_eq!(targets.len(), WEB_PODS + 1, "every pod is a target: {targets:?}");
    (of(false), of(true))
}

/// The canary's part of the requests the traffic model delivers to the listener over `for_`, in percent, and
/// how many requests failed.
async fn delivered_canary_percent(world: &World, for_: Duration) -> (f64, u64, u64) {
    world.emu.start_traffic(TRAFFIC);
    tokio::time::sleep(for_).await;
    let report = world.emu.traffic().expect("the traffic model runs");
    let rule = &report.rules["lb-e2e00001/lbl-tcp06379"];
    let canary = rule.targets.get(&format!("{CANARY_IP}:8080")).map_or(0, |t| t.sent);
    let percent = canary as f64 * 100.0 / rule.sent.max(1) as f64;
    // The measured split, for the docs' table (`--no-capture`).
    eprintln!("delivered: canary {percent:.2}% of {} requests, {} failed", rule.sent, rule.failed);
    (percent, rule.sent, rule.failed)
}

#[tokio::test]
async fn a_ninety_five_five_split_converges_in_one_run_delivers_its_shares_and_follows_an_edit_to_fifty_fifty() {
    let mut world = world().await;
    let run = world.reconcile().await;
    run.assert_code(0);
    // 20 web pods at 10 against one canary at 11: 200 : 11, 94.79% / 5.21%.
    assert_eq!(weights(&world), (vec![10], vec![11]), "{}", run.all());
    assert!(run.stdout.contains("requested 5%, achieved 5.21% (1 target, weight 11)"), "{}", run.all());

    let mutating = world.emu.calls().mutating();
    let again = world.reconcile().await;
    again.assert_code(0);
    assert_eq!(world.emu.calls().mutating(), mutating, "a second run changes nothing\n{}", again.all());
    assert!(again.stdout.starts_with("In sync: 1 rule(s), 21 target(s)"), "{}", again.all());

    let (canary, sent, failed) = delivered_canary_percent(&world, Duration::from_secs(2)).await;
    assert!(sent > 20_000, "enough requests to measure: {sent}");
    assert_eq!(failed, 0, "no request fails");
    assert!((canary - 5.0).abs() < 1.0, "the canary gets 5 ± 1% of {sent} requests: {canary:.2}%");

    let text = rules(&world.ns.name, 50, 50);
    world.set_rules(&text);
    world.emu.start_traffic(TRAFFIC);
    let edit = world.reconcile().await;
    edit.assert_code(0);
    let during = world.emu.traffic().expect("the traffic model runs").rules["lb-e2e00001/lbl-tcp06379"].clone();
    assert!(during.sent > 0 && during.failed == 0, "no request fails while the weights change: {during:?}");
    // 50/50 with 20 + 1 pods: web 5 × 20 = 100 against the canary's 100 × 1.
    assert_eq!(weights(&world), (vec![5], vec![100]), "{}", edit.all());
    let (canary, sent, failed) = delivered_canary_percent(&world, Duration::from_secs(2)).await;
    assert_eq!(failed, 0, "no request fails");
    assert!((canary - 50.0).abs() < 1.0, "the canary gets 50 ± 1% of {sent} requests: {canary:.2}%");
    world.reconcile().await.assert_code(0);
}

#[tokio::test]
async fn validate_with_a_kubeconfig_checks_every_backend_of_a_split_at_its_own_line() {
    let mut world = world().await;
    let ns = world.ns.name.clone();
    world.set_rules(&format!(
        "- load_balancer_id: lb-e2e00001
  listeners:
    - port: 6379
      protocol: tcp
      backends:
        - {{namespace: {ns}, selector: {{app: web}}, port: http, share: 90}}
        - {{namespace: {ns}, selector: {{app: canary}}, port: htpp, share: 5}}
        - {{namespace: {ns}, deployment: nope, port: http, share: 5}}
"
    ));
    let file = world.rules_path().display().to_string();
    let mut validate = clbsync();
    validate.arg("validate").arg("--rules").arg(world.rules_path()).arg("--kubeconfig").arg(kubeconfig_path());
    validate.timeout(Duration::from_secs(60));
    let run = run(validate).await;
    run.assert_code(1);
    let port = format!(
        "{file}:7:{}: [0].listeners[0].backends[1].port: no container of the pods of pods in {ns} with app=canary has \
         a port named `htpp` (they have `http`)",
        "        - {namespace: , selector: {app: canary}, port: ".len() + ns.len() + 1
    );
    assert!(run.stderr.contains(&port), "{port}\n{}", run.all());
    let missing = format!("{file}:8:1: [0].listeners[0].backends[2]: deployment {ns}/nope not found");
    assert!(run.stderr.contains(&missing), "{missing}\n{}", run.all());
    assert!(!run.stderr.contains("backends[0]"), "the first backend has no problem\n{}", run.all());
}

/// The listener with one backend (a split of one), `app: app`.
fn one_backend(ns: &str, app: &str) -> String {
    format!(
        "- load_balancer_id: lb-e2e00001
  listeners:
    - port: 6379
      protocol: tcp
      backends:
        - {{namespace: {ns}, selector: {{app: {app}}}, port: 8080, share: 1}}
"
    )
}

#[tokio::test]
async fn a_blue_green_switch_keeps_blue_serving_until_green_takes_traffic_and_drops_no_request() {
    let mut world = world().await;
    let ns = world.ns.name.clone();
    world.set_rules(&one_backend(&ns, "web"));
    world.reconcile().await.assert_code(0);
    assert_eq!(world.targets(Slot::Redis).len(), WEB_PODS, "blue is bound");

    world.emu.start_traffic(TRAFFIC);
    world.set_rules(&one_backend(&ns, "canary"));
    let first = world.reconcile().await;
    let bound = world.targets(Slot::Redis);
    // Make before break across backends: green is registered at weight 0 (blue had all the weight) and waits for
    // its health checks; every blue target stays, weighted, until green's weight has moved.
    assert!(bound.contains(&(CANARY_IP.to_owned(), 8080, 0)), "green is registered first, at 0\n{}", first.all());
    assert_eq!(bound.iter().filter(|t| t.0 != CANARY_IP && t.2 == 10).count(), WEB_PODS, "{}", first.all());
    assert!(first.stdout.contains("waiting for 1 target(s) of this backend to pass health checks"), "{}", first.all());
    assert!(first.stdout.contains("removal waits until the rule's other targets take its traffic"), "{}", first.all());
    // With green healthy, the next run weights it, then lets blue go.
    world.reconcile().await.assert_code(0);
    assert_eq!(world.targets(Slot::Redis), [(CANARY_IP.to_owned(), 8080, 10)], "only green is left");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let traffic = world.emu.traffic().expect("the traffic model runs").rules["lb-e2e00001/lbl-tcp06379"].clone();
    assert!(traffic.sent > 10_000, "requests flowed through the switch: {}", traffic.sent);
    assert_eq!((traffic.failed, traffic.failed_no_target), (0, 0), "no request is dropped by the switch");
}
