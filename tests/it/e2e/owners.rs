//! Several clusters on one load balancer (issue 14): each clbsync manages only the targets tagged for its
//! `--owner`, so two of them converge to the union of their pods and then leave each other alone.

use clb_emulator::Faults;

use super::{P, Run, Slot, Spec, World, cli_process, create_pod, eni, p, run, write_temp};
use crate::support::kube::{SelectorExt, TestNs, selector};

/// A second cluster: its own namespace with pods, and its own rules file naming the same load balancer rules.
struct Cluster {
    /// Held for the life of the cluster (its pods live there).
    _ns: TestNs,
    rules: tempfile::NamedTempFile,
}

impl Cluster {
    async fn new(world: &World, prefix: &str, pods: &[P]) -> Cluster {
        let ns = TestNs::new(prefix).await;
        ns.deployment("api", selector().label("app", "api")).await;
        ns.deployment("web", selector().label("app", "web")).await;
        for pod in pods {
            create_pod(&ns, pod).await;
        }
        let rules = write_temp(&world.rules_text().replace(&world.ns.name, &ns.name));
        Cluster { _ns: ns, rules }
    }

    async fn run(&self, world: &World, args: &[&str]) -> Run {
        let mut cmd = cli_process(&world.emu, args);
        cmd.arg("--rules").arg(self.rules.path()).arg("--kubeconfig").arg(&world.kubeconfig);
        run(assert_cmd::Command::from_std(cmd)).await
    }
}

/// `(ip, port, weight, tag)` of the ENI targets of a slot.
fn tagged(world: &World, slot: Slot) -> Vec<(String, u16, u32, String)> {
    let state = world.emu.state();
    let lb = state.load_balancers.iter().find(|l| l.id == slot.lb()).expect("lb");
    let l = lb.listeners.iter().find(|l| l.id == slot.listener()).expect("listener");
    let targets = match slot.location() {
        Some(loc) => &l.rules.iter().find(|r| r.location_id == loc).expect("rule").targets,
        None => &l.targets,
    };
    let mut out: Vec<_> = targets
        .iter()
        .filter(|t| t.kind == clb_emulator::state::TargetKind::Eni)
        .map(|t| (t.ip.clone(), t.port, t.weight, t.tag.clone()))
        .collect();
    out.sort();
    out
}

fn spec_a() -> Spec {
    Spec::default().pods([p("api", "10.1.0.1"), p("api", "10.1.0.2"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
}

const PODS_B: [(&str, &str); 3] = [("api", "10.51.0.1"), ("web", "10.52.0.1"), ("redis", "10.53.0.1")];

#[tokio::test]
async fn two_owners_on_one_load_balancer_converge_to_the_union_and_then_leave_each_other_alone() {
    let world = World::new("own-a", spec_a()).await;
    let b = Cluster::new(&world, "e2e-own-b", &PODS_B.map(|(app, ip)| p(app, ip))).await;
    for round in 0..2 {
        world.run(&["reconcile", "--owner", "cluster-a"]).await.assert_code(0);
        b.run(&world, &["reconcile", "--owner", "cluster-b"]).await.assert_code(0);
        let api = tagged(&world, Slot::Api);
        assert_eq!(
            api,
            [
                ("10.1.0.1".into(), 8080, 10, "clbsync:cluster-a".into()),
                ("10.1.0.2".into(), 8080, 10, "clbsync:cluster-a".into()),
                ("10.51.0.1".into(), 8080, 10, "clbsync:cluster-b".into()),
            ],
            "round {round}"
        );
    }
    world.emu.reset_calls();
    for _ in 0..2 {
        world.run(&["reconcile", "--owner", "cluster-a"]).await.assert_code(0);
        b.run(&world, &["reconcile", "--owner", "cluster-b"]).await.assert_code(0);
    }
    assert_eq!(world.emu.calls().mutating(), 0, "alternating runs make no mutating call once converged");

    // Cluster B scales to zero (or its selector has a typo: the same to clbsync). Issue 24 #8: A's targets
    // serving the rule do not make that intended; the rule is blocked and B's targets stay.
    let empty = Cluster::new(&world, "e2e-own-b0", &[]).await;
    let before = tagged(&world, Slot::Api);
    let run = empty.run(&world, &["reconcile", "--owner", "cluster-b"]).await;
    run.assert_code(1);
    assert!(run.stdout.contains("other owners' targets do not count"), "{}", run.all());
    assert_eq!(tagged(&world, Slot::Api), before, "{}", run.all());
    // Handing the rule to cluster A is said with allow_empty.
    let run = empty.run(&world, &["reconcile", "--owner", "cluster-b", "--allow-empty"]).await;
    run.assert_code(0);
    for slot in Slot::ALL {
        let targets = tagged(&world, slot);
        assert!(!targets.is_empty() && targets.iter().all(|t| t.3 == "clbsync:cluster-a"), "{slot:?}\n{}", run.all());
    }
}

#[tokio::test]
async fn another_owners_targets_are_never_changed_under_faults_upsert_only_and_allow_empty() {
    let spec = spec_a().policy(Slot::Redis, "upsert-only");
    let world = World::new("own-foreign", spec).await;
    let b = Cluster::new(&world, "e2e-own-fb", &PODS_B.map(|(app, ip)| p(app, ip))).await;
    b.run(&world, &["reconcile", "--owner", "cluster-b"]).await.assert_code(0);
    let foreign = |world: &World| -> Vec<_> {
        Slot::ALL.iter().flat_map(|s| tagged(world, *s)).filter(|t| t.3 == "clbsync:cluster-b").collect()
    };
    let before = foreign(&world);
    assert_eq!(before.len(), 4, "b bound its pods on every slot");
    let faults: Faults =
        serde_yaml::from_str("{seed: 5, errors: {kind: internal_error, rate: 0.5, max: 6}}").expect("faults");
    world.emu.set_faults(faults);
    for args in [
        &["reconcile", "--owner", "cluster-a"][..],
        &["reconcile", "--owner", "cluster-a", "--allow-empty"],
        &["reconcile", "--owner", "cluster-a", "--adopt-untagged"],
    ] {
        let run = world.run(args).await;
        assert!(matches!(run.code, Some(0 | 1)), "{}", run.all());
        assert_eq!(foreign(&world), before, "{args:?} changed cluster-b's targets\n{}", run.all());
    }
    assert!(world.emu.calls().errors("InternalError") > 0, "the fault fired");
}

#[tokio::test]
async fn an_untagged_install_migrates_with_adopt_untagged_in_one_run_and_is_stable() {
    let spec = spec_a()
        .bound(Slot::Api, [eni("10.1.0.1", 8080, 10), eni("10.1.0.2", 8080, 30)])
        .bound(Slot::Web, [eni("10.2.0.1", 8080, 20)]);
    let world = World::new("own-adopt", spec).await;

    // Without the flag nothing untagged changes: a pod already bound untagged is reported as such, not registered
    // a second time.
    world.emu.reset_calls();
    let run = world.run(&["reconcile", "--owner", "cluster-a", "-o", "json", "--show-unchanged"]).await;
    assert!(matches!(run.code, Some(0 | 1)), "{}", run.all());
    assert!(run.stdout.contains("\"unmanaged\": \"untagged\""), "{}", run.all());
    assert_eq!(tagged(&world, Slot::Api)[1], ("10.1.0.2".into(), 8080, 30, String::new()), "untouched");
    world.assert_no_duplicate_registration();

    let run = world.run(&["reconcile", "--owner", "cluster-a", "--adopt-untagged"]).await;
    run.assert_code(0);
    let api = tagged(&world, Slot::Api);
    assert!(
        api.iter().all(|t| t.3 == "clbsync:cluster-a" && t.2 == 10),
        "adopted and weighted\n{api:?}\n{}",
        run.all()
    );
    world.emu.reset_calls();
    world.run(&["reconcile", "--owner", "cluster-a"]).await.assert_code(0);
    assert_eq!(world.emu.calls().mutating(), 0, "stable after adoption");
}

#[test]
fn a_bad_owner_name_is_a_usage_error_before_anything_is_called() {
    // `.` and `..` (issue 24 #20): `..` as a Pushgateway group overwrote another installation's.
    for name in ["", "Cluster_A", "a/b", &"x".repeat(64), ".", "..", "a..b", "-a", "a-", ".a", "a.", "a\u{202e}b"] {
        let out = crate::support::clbsync()
            .args(["diff", "--rules", "rules.yaml", "--endpoint", "http://127.0.0.1:9", &format!("--owner={name}")])
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(64), "--owner {name:?}: {}", crate::support::seen(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("is not an owner name"), "{name:?}");
    }
    let out = crate::support::clbsync().args(["diff", "--adopt-untagged"]).output().expect("run");
    assert_eq!(out.status.code(), Some(64), "--adopt-untagged needs --owner");
}
