//! What clbsync does not own it never touches: CVM backends, rules and load balancers not in the rules file;
//! `policy: upsert-only` never deregisters.

use super::{Slot, Spec, World, cvm, eni, p};

#[tokio::test]
async fn upsert_only_registers_and_reweights_but_never_deregisters() {
    let spec = Spec::default()
        .pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("redis", "10.3.0.1"), p("redis", "10.3.0.2")])
        .policy(Slot::Redis, "upsert-only")
        .bound(Slot::Redis, [eni("10.3.0.1", 6379, 50), eni("10.99.0.1", 6379, 10), eni("10.99.0.2", 6379, 0)])
        .bound(Slot::Redis, [cvm("172.16.0.9", 6379, 10)]);
    let world = World::new("upsert", spec).await;
    let run = world.reconcile().await;
    run.assert_code(0);
    assert_eq!(
        world.targets(Slot::Redis),
        [
            ("10.3.0.1".into(), 6379, 10),
            ("10.3.0.2".into(), 6379, 10),
            ("10.99.0.1".into(), 6379, 10),
            ("10.99.0.2".into(), 6379, 0)
        ],
        "stale targets are kept, new ones added, weights fixed\n{}",
        run.all()
    );
    assert_eq!(world.emu.calls().count("BatchDeregisterTargets") + world.emu.calls().count("DeregisterTargets"), 0);
    world.assert_unowned_untouched(&run);
    world.assert_converges_and_stays().await;
}

#[tokio::test]
async fn cvm_backends_and_rules_outside_the_rules_file_survive_a_rule_with_no_ready_pods_left() {
    // The api rule has only CVM backends and stale ENI targets; every api pod is gone except a not-ready one.
    let spec = Spec::default()
        .pods([p("api", "10.1.0.1").not_ready(), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Api, [cvm("172.16.0.5", 30080, 20), eni("10.99.0.1", 8080, 10)])
        .bound(Slot::Tls, [cvm("172.16.0.5", 443, 20)]);
    let world = World::new("cvm", spec).await;
    let run = world.reconcile().await;
    run.assert_code(1);
    assert!(run.stdout.contains("no ready pods"), "the empty-rule guard says why\n{}", run.all());
    assert_eq!(world.targets(Slot::Api), [("10.99.0.1".into(), 8080, 10)], "blocked, not emptied\n{}", run.all());
    assert_eq!(world.targets(Slot::Web), [("10.2.0.1".into(), 8080, 20)], "other rules still converge");
    world.assert_unowned_untouched(&run);
}
