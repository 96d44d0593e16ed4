//! One `reconcile` from any starting point makes every managed rule exactly the ready pods; the next run and
//! `diff` find nothing to do; `diff` and `reconcile --dry-run` never change anything.

use super::{B, P, Slot, Spec, World, cvm, eni, p};

fn pods() -> Vec<P> {
    vec![
        p("api", "10.1.0.1"),
        p("api", "10.1.0.2"),
        p("api", "10.1.0.3").not_ready(),
        p("web", "10.2.0.1"),
        p("web", "10.2.0.2"),
        p("redis", "10.3.0.1"),
    ]
}

async fn converges_from(prefix: &str, spec: Spec) {
    let world = World::new(prefix, spec).await;
    world.assert_read_only_commands_change_nothing().await;
    world.assert_converges_and_stays().await;
}

#[tokio::test]
async fn an_empty_load_balancer_gets_every_ready_pod_in_one_run() {
    converges_from("empty", Spec::default().pods(pods())).await;
}

#[tokio::test]
async fn all_stale_targets_are_replaced_by_the_ready_pods_in_one_run() {
    let stale = |slot: Slot| (1..=3).map(move |k| eni(&format!("10.99.0.{k}"), slot.port(), 10)).collect::<Vec<B>>();
    let mut spec = Spec::default().pods(pods());
    for slot in Slot::ALL {
        spec = spec.bound(slot, stale(slot));
    }
    converges_from("stale", spec).await;
}

#[tokio::test]
async fn a_mixed_state_is_fixed_in_one_run_and_cvm_backends_stay() {
    let spec = Spec::default()
        .pods(pods())
        .bound(Slot::Api, [eni("10.1.0.1", 8080, 10), eni("10.1.0.2", 8080, 55), eni("10.1.0.3", 8080, 10)])
        .bound(Slot::Api, [cvm("172.16.0.5", 30080, 20), eni("10.1.0.1", 9999, 10)])
        .bound(Slot::Web, [eni("10.2.0.1", 8080, 20), eni("10.99.0.1", 8080, 0)])
        .bound(Slot::Redis, [eni("10.3.0.1", 6379, 10)])
        .bound(Slot::Tls, [eni("10.1.0.2", 8443, 10), cvm("172.16.0.6", 443, 10)]);
    converges_from("mixed", spec).await;
}

#[tokio::test]
async fn seeded_random_states_converge_in_one_run() {
    // Three seeds in sequence in one world each; a failure names the seed so it can be replayed.
    for seed in [7_u64, 1234, 987_654] {
        let spec = Spec::random(seed);
        let world = World::new(&format!("rand{seed}"), spec).await;
        world.assert_read_only_commands_change_nothing().await;
        world.assert_converges_and_stays().await;
    }
}
