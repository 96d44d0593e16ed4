//! The readiness gate against the real API server (issue 13): `clbsync.dev/registered` is set only once the pod's
//! target is bound on every rule that selects it and CLB reports it healthy; pods without the gate are left alone.

use std::time::Duration;

use clb_emulator::HealthConfig;
use clbsync::model::GATE_CONDITION;
use k8s_openapi::api::core::v1::PodCondition;

use super::{Slot, Spec, World, p};
use crate::support::kube::pod;

/// The gated pod of deployment `api` (both the `/api` rule and TCP 443 select it).
pub const GATED: &str = "api-gated";
const GATED_IP: &str = "10.1.0.7";

/// A world with one ready pod without the gate and one gated pod, both behind deployment `api`.
pub async fn gated_world(prefix: &str) -> World {
    let world = World::new(prefix, Spec::default().pods([p("api", "10.1.0.1")])).await;
    world.ns.create(pod(GATED).label("app", "api").port("http", 8080).ip(GATED_IP).gated()).await;
    world
}

/// The pod's `clbsync.dev/registered` condition, if set.
pub async fn condition(world: &World, name: &str) -> Option<PodCondition> {
    let pod = world.ns.pods().get_status(name).await.expect("get pod status");
    pod.status?.conditions?.into_iter().find(|c| c.type_ == GATE_CONDITION)
}

/// (status, reason) of the gated pod's condition.
async fn gate(world: &World) -> Option<(String, String)> {
    condition(world, GATED).await.map(|c| (c.status, c.reason.unwrap_or_default()))
}

fn pair(status: &str, reason: &str) -> Option<(String, String)> {
    Some((status.into(), reason.into()))
}

fn has_target(world: &World, slot: Slot, ip: &str) -> bool {
    world.targets(slot).iter().any(|(i, _, _)| i == ip)
}

#[tokio::test]
async fn the_gate_turns_true_only_once_the_target_is_bound_on_every_rule_and_healthy() {
    let world = gated_world("gate-health").await;
    // CLB's real timing: a new target is probed for 15 s before it is healthy.
    world.emu.set_health_config(HealthConfig::default());

    let run = world.reconcile().await;
    run.assert_code(0);
    assert!(has_target(&world, Slot::Api, GATED_IP) && has_target(&world, Slot::Tls, GATED_IP), "{}", run.all());
    assert_eq!(gate(&world).await, pair("False", "WaitingForHealthCheck"), "{}", run.all());
    assert!(
        run.stdout
            .contains(&format!("gate: pod {}/{GATED}: {GATE_CONDITION}=False WaitingForHealthCheck", world.ns.name)),
        "{}",
        run.all()
    );
    let first = condition(&world, GATED).await.expect("set").last_transition_time;
    assert!(first.is_some(), "a new condition has a transition time");

    // Still detecting: the condition stays, and is not written again.
    let run = world.reconcile().await;
    run.assert_code(0);
    assert_eq!(gate(&world).await, pair("False", "WaitingForHealthCheck"), "{}", run.all());
    assert!(!run.stdout.contains("gate:"), "an unchanged condition is not written\n{}", run.all());
    assert!(world.emu.calls().count("DescribeTargetHealth") > 0, "health is read while the pod waits");

    world.emu.advance(Duration::from_secs(20));
    let run = world.reconcile().await;
    run.assert_code(0);
    let registered = condition(&world, GATED).await.expect("set");
    assert_eq!(
        (registered.status.as_str(), registered.reason.as_deref()),
        ("True", Some("Registered")),
        "{}",
        run.all()
    );
    assert_eq!(registered.message.as_deref(), Some("bound and healthy on 2 rule(s)"));
    assert!(registered.last_transition_time.is_some());

    // Once True, health is no longer read and nothing is written.
    world.emu.reset_calls();
    let run = world.reconcile().await;
    run.assert_code(0);
    assert!(run.stdout.starts_with("In sync"), "{}", run.all());
    assert_eq!(world.emu.calls().count("DescribeTargetHealth"), 0, "{}", run.all());

    let plain = super::p("api", "10.1.0.1").name();
    assert_eq!(condition(&world, &plain).await, None, "a pod without the gate gets no condition");
}

#[tokio::test]
async fn gate_on_bound_turns_true_right_after_registration() {
    let world = gated_world("gate-bound").await;
    world.emu.set_health_config(HealthConfig::default());
    let run = world.run(&["reconcile", "--gate-on", "bound"]).await;
    run.assert_code(0);
    assert_eq!(gate(&world).await, pair("True", "Registered"), "{}", run.all());
}

#[tokio::test]
async fn diff_and_dry_run_show_the_condition_and_write_none() {
    let world = gated_world("gate-dry").await;
    for args in [&["diff"][..], &["reconcile", "--dry-run"], &["diff", "-o", "json"]] {
        let run = world.run(args).await;
        run.assert_code(0);
        assert!(run.stdout.contains("RegistrationPending"), "{args:?}\n{}", run.all());
        assert_eq!(gate(&world).await, None, "{args:?} writes no condition\n{}", run.all());
    }
}

#[tokio::test]
async fn a_blocked_rule_names_itself_in_the_condition_and_the_gate_stays_false() {
    let mut world = gated_world("gate-blocked").await;
    // TCP 443 asks for a container port named `https`, which no pod has: that rule is blocked.
    let rules = world.rules_text().replace("deployment: api, port: 8443", "deployment: api, port: https");
    world.set_rules(&rules);
    let run = world.reconcile().await;
    run.assert_code(1);
    assert!(has_target(&world, Slot::Api, GATED_IP), "the other rule registers it\n{}", run.all());
    let c = condition(&world, GATED).await.expect("set");
    assert_eq!((c.status.as_str(), c.reason.as_deref()), ("False", Some("RuleBlocked")), "{}", run.all());
    let message = c.message.unwrap_or_default();
    assert!(message.contains("lb-e2e00002 TCP:443"), "names the rule: {message}");
}

#[tokio::test]
async fn watch_mode_runs_the_rule_again_while_a_gated_pod_waits_for_its_health_checks() {
    use super::watch::Watcher;
    let world = gated_world("gate-watch").await;
    // A new target is healthy 1.5 s after it is bound; nothing about the pod changes meanwhile.
    world.emu.set_health_config(HealthConfig::scaled_down(10));
    let w = Watcher::start(&world, &["--resync-interval", "1h"]);
    let started = std::time::Instant::now();
    let mut seen = Vec::new();
    loop {
        let now = gate(&world).await;
        if seen.last() != Some(&now) {
            seen.push(now.clone());
        }
        if now == pair("True", "Registered") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the gate never turned True: {seen:?}\n{}", w.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen.contains(&pair("False", "WaitingForHealthCheck")), "it waited for the health checks: {seen:?}");
}
