//! Issue 29: backends named by a StatefulSet, a DaemonSet, a ReplicaSet (`workload:`) converge in batch and watch
//! mode by the workload's own `spec.selector`; a missing object, a kind the API server does not serve and a kind
//! RBAC does not let clbsync read each skip only their rule, nothing removed. The test server runs no
//! controller-manager: the pods are created by hand, labelled as the workloads select.

use std::time::Duration;

use super::watch::{Watcher, eventually, has};
use super::{Slot, Spec, World, eni, p};
use crate::support::kube::apply_yaml;

/// `kind` `name` of apps/v1 in `ns` selecting `app: name` (its template labelled to match, as the server insists).
fn workload_yaml(kind: &str, name: &str, ns: &str) -> String {
    let replicas = if kind == "DaemonSet" { "" } else { "  replicas: 1\n" };
    let service = if kind == "StatefulSet" { format!("  serviceName: {name}\n") } else { String::new() };
    format!(
        "apiVersion: apps/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{replicas}{service}  \
         selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      \
         containers: [{{name: app, image: x}}]\n"
    )
}

/// Creates workload `kind` `name` in the world's namespace, selecting `app: name`.
pub async fn create(world: &World, kind: &str, name: &str) {
    apply_yaml(&world.ns.client, &workload_yaml(kind, name, &world.ns.name), &[kind]).await;
}

/// Redis behind a StatefulSet, web behind a DaemonSet, api (both of its rules) behind a ReplicaSet; the world's
/// Deployments are deleted, so only the workloads' selectors can name the pods.
async fn world(prefix: &str) -> World {
    let spec = Spec::default()
        .pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("web", "10.2.0.2"), p("redis", "10.3.0.1")])
        .pods([p("redis", "10.3.0.2").not_ready()])
        .bound(Slot::Redis, [eni("10.3.0.9", 6379, 10)])
        .source(Slot::Redis, "workload: {kind: StatefulSet, name: redis}")
        .source(Slot::Web, "workload: {kind: DaemonSet, name: web}")
        .source(Slot::Api, "workload: {kind: ReplicaSet, name: api}")
        .source(Slot::Tls, "workload: {kind: ReplicaSet, name: api}");
    let world = World::new(prefix, spec).await;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(world.ns.client.clone(), &world.ns.name);
    for name in ["api", "web"] {
        deployments.delete(name, &Default::default()).await.expect("delete deployment");
    }
    create(&world, "StatefulSet", "redis").await;
    create(&world, "DaemonSet", "web").await;
    create(&world, "ReplicaSet", "api").await;
    world
}

#[tokio::test]
async fn statefulset_daemonset_and_replicaset_backends_converge_in_batch_mode() {
    let world = world("kinds-batch").await;
    world.assert_converges_and_stays().await;
    assert_eq!(world.targets(Slot::Redis), [("10.3.0.1".into(), 6379, 10)], "the ready pod only, the stale one gone");
}

#[tokio::test]
async fn statefulset_daemonset_and_replicaset_backends_converge_and_follow_their_pods_in_watch_mode() {
    let mut world = world("kinds-watch").await;
    let w = Watcher::start(&world, &[]);
    let within = Duration::from_secs(15);
    eventually(within, "every rule converged", &w, || {
        has(&world.targets(Slot::Redis), "10.3.0.1", 10)
            && world.targets(Slot::Redis).len() == 1
            && has(&world.targets(Slot::Web), "10.2.0.2", 20)
            && has(&world.targets(Slot::Api), "10.1.0.1", 10)
            && has(&world.targets(Slot::Tls), "10.1.0.1", 10)
    })
    .await;
    world.make_ready("10.3.0.2").await;
    world.add_pod(p("web", "10.2.0.3")).await;
    eventually(within, "the pods' changes followed", &w, || {
        has(&world.targets(Slot::Redis), "10.3.0.2", 10) && has(&world.targets(Slot::Web), "10.2.0.3", 20)
    })
    .await;
    // A workload's selector changes by deleting and creating it again (it is immutable): the rule follows.
    let sets: kube::Api<k8s_openapi::api::apps::v1::ReplicaSet> =
        kube::Api::namespaced(world.ns.client.clone(), &world.ns.name);
    sets.delete("api", &Default::default()).await.expect("delete the ReplicaSet");
    world.add_pod(p("web", "10.2.0.4")).await;
    let moved = workload_yaml("ReplicaSet", "api", &world.ns.name).replace("{app: api}", "{app: web}");
    apply_yaml(&world.ns.client, &moved, &["ReplicaSet"]).await;
    eventually(within, "the rule follows the new selector", &w, || {
        let t = world.targets(Slot::Api);
        has(&t, "10.2.0.4", 10) && !t.iter().any(|(ip, _, _)| ip == "10.1.0.1")
    })
    .await;
}

/// The three ways a workload rule cannot be answered, one per rule; the fourth rule converges.
fn failing_spec() -> Spec {
    Spec::default()
        .pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Redis, [eni("10.3.0.9", 6379, 10)])
        .bound(Slot::Web, [eni("10.2.0.9", 8080, 20)])
        .bound(Slot::Tls, [eni("10.1.0.9", 8443, 10)])
        .source(Slot::Redis, "workload: {kind: StatefulSet, name: ghost}")
        .source(Slot::Web, "workload: {kind: DaemonSet, name: web}")
        .source(Slot::Tls, "workload: {apiVersion: example.com/v1, kind: Nothing, name: api}")
}

/// A role that reads everything a run needs but DaemonSets.
const NO_DAEMONSETS: &[&str] = &[
    r#"{apiGroups: [""], resources: ["pods"], verbs: ["list", "watch"]}"#,
    r#"{apiGroups: ["apps"], resources: ["deployments", "statefulsets", "replicasets"], verbs: ["get", "list", "watch"]}"#,
    r#"{apiGroups: ["events.k8s.io"], resources: ["events"], verbs: ["create", "patch"]}"#,
];

#[tokio::test]
async fn a_missing_object_an_unknown_kind_and_a_forbidden_kind_skip_only_their_rule_in_batch_mode() {
    let mut world = World::new("kinds-skip", failing_spec()).await;
    create(&world, "DaemonSet", "web").await;
    let (kubeconfig, _token) = world.ns.kubeconfig_with_role("clbsync", NO_DAEMONSETS).await;
    world.kubeconfig = kubeconfig.path().to_path_buf();
    let run = world.reconcile().await;
    run.assert_code(1);
    let out = run.all();
    assert!(out.contains(&format!("statefulset {}/ghost not found", world.ns.name)), "{out}");
    assert!(out.contains("the API server serves no example.com/v1"), "{out}");
    assert!(out.contains(r#"resources: ["daemonsets"], verbs: ["get"]"#), "names the rule to add\n{out}");
    assert_eq!(world.targets(Slot::Redis), [("10.3.0.9".into(), 6379, 10)], "kept\n{out}");
    assert_eq!(world.targets(Slot::Web), [("10.2.0.9".into(), 8080, 20)], "kept\n{out}");
    assert_eq!(world.targets(Slot::Tls), [("10.1.0.9".into(), 8443, 10)], "kept\n{out}");
    assert_eq!(world.targets(Slot::Api), [("10.1.0.1".into(), 8080, 10)], "the other rule converges\n{out}");
}

#[tokio::test]
async fn a_missing_object_an_unknown_kind_and_a_forbidden_kind_skip_only_their_rule_in_watch_mode() {
    let mut world = World::new("kinds-wskip", failing_spec()).await;
    create(&world, "DaemonSet", "web").await;
    let (kubeconfig, _token) = world.ns.kubeconfig_with_role("clbsync", NO_DAEMONSETS).await;
    world.kubeconfig = kubeconfig.path().to_path_buf();
    let w = Watcher::start(&world, &[]);
    let within = Duration::from_secs(15);
    eventually(within, "the other rule converged", &w, || has(&world.targets(Slot::Api), "10.1.0.1", 10)).await;
    eventually(within, "the three rules skipped with why", &w, || {
        let out = format!("{}{}", w.reports(), w.logs());
        out.contains("ghost not found")
            && out.contains("serves no example.com/v1")
            && out.contains(r#"resources: ["daemonsets"], verbs: ["list"]"#)
    })
    .await;
    assert_eq!(world.targets(Slot::Redis), [("10.3.0.9".into(), 6379, 10)], "kept\n{}", w.logs());
    assert_eq!(world.targets(Slot::Web), [("10.2.0.9".into(), 8080, 20)], "kept\n{}", w.logs());
    assert_eq!(world.targets(Slot::Tls), [("10.1.0.9".into(), 8443, 10)], "kept\n{}", w.logs());
}

/// A stand-in for Argo Rollouts' `Rollout`: its published CRD's scale paths (`.spec.replicas`,
/// `.status.HPAReplicas`, `.status.selector`); `Plain` is the same kind without a scale subresource.
fn crd(group: &str, plural: &str, kind: &str, scale: bool) -> String {
    let scale = if scale {
        ", scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.HPAReplicas, \
         labelSelectorPath: .status.selector}"
    } else {
        ""
    };
    let singular = kind.to_lowercase();
    [
        "apiVersion: apiextensions.k8s.io/v1".to_owned(),
        "kind: CustomResourceDefinition".to_owned(),
        format!("metadata: {{name: {plural}.{group}}}"),
        "spec:".to_owned(),
        format!("  group: {group}"),
        "  scope: Namespaced".to_owned(),
        format!("  names: {{plural: {plural}, singular: {singular}, kind: {kind}}}"),
        "  versions:".to_owned(),
        "    - name: v1alpha1".to_owned(),
        "      served: true".to_owned(),
        "      storage: true".to_owned(),
        format!("      subresources: {{status: {{}}{scale}}}"),
        "      schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}".to_owned(),
        String::new(),
    ]
    .join("\n")
}

/// Registers the CRDs (once per test server) and waits until they are served.
async fn register_crds(client: &kube::Client) {
    let docs =
        [crd("kinds.clbsync.dev", "rollouts", "Rollout", true), crd("kinds.clbsync.dev", "plains", "Plain", false)];
    apply_yaml(client, &docs.join("---\n"), &["CustomResourceDefinition"]).await;
    for _ in 0..100 {
        if let Ok(list) = client.list_api_group_resources("kinds.clbsync.dev/v1alpha1").await
            && list.resources.iter().any(|r| r.name == "rollouts/scale")
            && list.resources.iter().any(|r| r.name == "plains")
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the CRDs are not served");
}

/// A `Rollout` `name` whose scale subresource reports `selector`.
async fn rollout(world: &World, name: &str, selector: &str) {
    use kube::api::{Patch, PatchParams};
    use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
    let gvk = GroupVersionKind::gvk("kinds.clbsync.dev", "v1alpha1", "Rollout");
    let api: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(world.ns.client.clone(), &world.ns.name, &ApiResource::from_gvk(&gvk));
    let object = serde_json::json!({
        "apiVersion": "kinds.clbsync.dev/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name}, "spec": {"replicas": 1},
    });
    let params = PatchParams::apply("clbsync-tests").force();
    api.patch(name, &params, &Patch::Apply(&object)).await.expect("apply the Rollout");
    let status = serde_json::json!({"status": {"HPAReplicas": 1, "selector": selector}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("its status");
}

/// A kind with a scale subresource (registered as a CRD) names its pods by the scale's `status.selector`; a kind
/// without one is skipped with why, its targets kept.
#[tokio::test]
async fn a_crd_with_a_scale_subresource_converges_by_its_status_selector_and_one_without_is_skipped() {
    let spec = Spec::default()
        .pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Tls, [eni("10.1.0.9", 8443, 10)])
        .source(Slot::Web, "workload: {apiVersion: kinds.clbsync.dev/v1alpha1, kind: Rollout, name: web}")
        .source(Slot::Tls, "workload: {apiVersion: kinds.clbsync.dev/v1alpha1, kind: Plain, name: api}");
    let world = World::new("kinds-scale", spec).await;
    register_crds(&world.ns.client).await;
    rollout(&world, "web", "app=web").await;
    let run = world.reconcile().await;
    run.assert_code(1);
    assert_eq!(world.targets(Slot::Web), [("10.2.0.1".into(), 8080, 20)], "{}", run.all());
    assert!(run.all().contains("Plain (plains) has no scale subresource"), "{}", run.all());
    assert_eq!(world.targets(Slot::Tls), [("10.1.0.9".into(), 8443, 10)], "kept\n{}", run.all());

    let mut world = world;
    world.add_pod(p("web", "10.2.0.2")).await;
    let w = Watcher::start(&world, &[]);
    let within = Duration::from_secs(15);
    eventually(within, "watch mode follows the Rollout's pods", &w, || has(&world.targets(Slot::Web), "10.2.0.2", 20))
        .await;
    rollout(&world, "web", "app=redis").await;
    eventually(within, "and a new status.selector", &w, || {
        let t = world.targets(Slot::Web);
        has(&t, "10.3.0.1", 20) && !t.iter().any(|(ip, _, _)| ip.starts_with("10.2."))
    })
    .await;
    assert_eq!(world.targets(Slot::Tls), [("10.1.0.9".into(), 8443, 10)], "kept\n{}", w.logs());
}
