//! Issue 29: `service: NAME` backends against the real API server. The Service's `spec.selector` chooses the pods
//! and the `targetPort` of the port `port:` names is the target port, resolved per pod when it is a name; a new
//! selector or targetPort is followed in watch mode. A Service without a selector, a missing Service, a port the
//! Service lacks and a role without `services` each skip only their rule, targets kept.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, Patch, PatchParams};

use super::watch::{Watcher, eventually, has};
use super::{Slot, Spec, World, eni, p};
use crate::support::kube::{apply_yaml, pod};

/// Service `name` in `ns`: port 8080 named `http` → `target`, selecting `selector` (none when empty).
fn service_yaml(name: &str, ns: &str, selector: &str, target: &str) -> String {
    let selector = if selector.is_empty() { String::new() } else { format!("  selector: {{{selector}}}\n") };
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{selector}  ports:\n    \
         - {{name: http, protocol: TCP, port: 8080, targetPort: {target}}}\n    - {{name: other, protocol: TCP, port: 9999, targetPort: 9999}}\n"
    )
}

async fn service(world: &World, name: &str, selector: &str, target: &str) {
    apply_yaml(&world.ns.client, &service_yaml(name, &world.ns.name, selector, target), &["Service"]).await;
}

/// A ready pod labelled `app: app` whose container port `serve` is `port`.
async fn serving_pod(world: &World, name: &str, app: &str, ip: &str, port: i32) {
    world.ns.create(pod(name).label("app", app).port("serve", port).ip(ip).ready()).await;
}

/// The web rule names Service `web` by its port's name (`port: http`); its two pods serve on different ports.
async fn world(prefix: &str) -> World {
    let spec = Spec::default()
        .pods([p("api", "10.1.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Web, [eni("10.2.0.9", 8080, 20)])
        .source(Slot::Web, "service: web");
    let mut world = World::new(prefix, spec).await;
    let rules = world.rules_text().replace("service: web, port: 8080", "service: web, port: http");
    world.set_rules(&rules);
    service(&world, "web", "app: svc", "serve").await;
    serving_pod(&world, "svc-a", "svc", "10.2.0.11", 8081).await;
    serving_pod(&world, "svc-b", "svc", "10.2.0.12", 8082).await;
    world
}

#[tokio::test]
async fn a_service_with_a_named_target_port_converges_on_each_pods_own_port_in_batch_mode() {
    let world = world("svc-batch").await;
    let run = world.reconcile().await;
    run.assert_code(0);
    let want = [("10.2.0.11".into(), 8081, 20), ("10.2.0.12".into(), 8082, 20)];
    assert_eq!(world.targets(Slot::Web), want, "each pod on its own `serve` port\n{}", run.all());
    assert_eq!(world.targets(Slot::Api), [("10.1.0.1".into(), 8080, 10)], "the other rules too\n{}", run.all());
    world.reconcile().await.assert_code(0);
    assert_eq!(world.targets(Slot::Web), want, "and stays");

    let events: Api<Event> = Api::namespaced(world.ns.client.clone(), &world.ns.name);
    let events = events.list(&Default::default()).await.expect("list events").items;
    let on_service = events.iter().find(|e| {
        let r = e.regarding.as_ref();
        r.and_then(|r| r.kind.as_deref()) == Some("Service")
            && r.and_then(|r| r.name.as_deref()) == Some("web")
            && e.reason.as_deref() == Some("TargetsRegistered")
    });
    let on_service = on_service.unwrap_or_else(|| panic!("a TargetsRegistered Event on Service web: {events:?}"));
    let note = on_service.note.as_deref().unwrap_or_default();
    assert!(note.contains("[10.2.0.11:8081, 10.2.0.12:8082]"), "{note}");
    let uid = Api::<k8s_openapi::api::core::v1::Service>::namespaced(world.ns.client.clone(), &world.ns.name)
        .get("web")
        .await
        .expect("get the Service")
        .metadata
        .uid;
    assert_eq!(on_service.regarding.as_ref().and_then(|r| r.uid.clone()), uid, "kubectl describe finds it");
}

#[tokio::test]
async fn a_service_backend_follows_its_pods_a_new_selector_and_a_new_target_port_in_watch_mode() {
    let world = world("svc-watch").await;
    let w = Watcher::start(&world, &[]);
    let within = Duration::from_secs(15);
    eventually(within, "the Service's pods bound on their own ports", &w, || {
        world.targets(Slot::Web) == [("10.2.0.11".into(), 8081, 20), ("10.2.0.12".into(), 8082, 20)]
    })
    .await;
    serving_pod(&world, "svc-c", "svc", "10.2.0.13", 8083).await;
    eventually(within, "a new pod of the Service", &w, || has(&world.targets(Slot::Web), "10.2.0.13", 20)).await;

    // Another selector, with a label key no rule used before: the pods are listed again with it.
    serving_pod(&world, "blue-a", "blue", "10.2.0.21", 8091).await;
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(world.ns.client.clone(), &world.ns.name);
    let track = serde_json::json!({"metadata": {"labels": {"track": "canary"}}});
    api.patch("blue-a", &PatchParams::default(), &Patch::Merge(&track)).await.expect("label the pod");
    service(&world, "web", "app: blue, track: canary", "serve").await;
    eventually(within, "the rule follows the Service's new selector", &w, || {
        world.targets(Slot::Web) == [("10.2.0.21".into(), 8091, 20)]
    })
    .await;
    service(&world, "web", "app: blue, track: canary", "7000").await;
    eventually(within, "and its new targetPort", &w, || world.targets(Slot::Web) == [("10.2.0.21".into(), 7000, 20)])
        .await;
}

/// A Service without a selector (Redis), a missing Service (TLS) and a port Service `web` lacks (API: `port:
/// grpc`); the web rule converges.
async fn failing_world(prefix: &str) -> World {
    let spec = Spec::default()
        .pods([p("api", "10.1.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Redis, [eni("10.3.0.9", 6379, 10)])
        .bound(Slot::Tls, [eni("10.1.0.9", 8443, 10)])
        .bound(Slot::Api, [eni("10.1.0.8", 8080, 10)])
        .source(Slot::Redis, "service: manual")
        .source(Slot::Tls, "service: ghost")
        .source(Slot::Api, "service: web")
        .source(Slot::Web, "service: web");
    let mut world = World::new(prefix, spec).await;
    let api_rule = format!("url: /api, backend: {{namespace: {}, service: web, port: 8080", world.ns.name);
    let rules = world.rules_text();
    assert!(rules.contains(&api_rule), "{rules}");
    world.set_rules(&rules.replace(&api_rule, &api_rule.replace("port: 8080", "port: grpc")));
    service(&world, "manual", "", "6379").await;
    service(&world, "web", "app: svc", "serve").await;
    serving_pod(&world, "svc-a", "svc", "10.2.0.11", 8081).await;
    world
}

fn assert_kept(world: &World, out: &str) {
    assert_eq!(world.targets(Slot::Redis), [("10.3.0.9".into(), 6379, 10)], "kept\n{out}");
    assert_eq!(world.targets(Slot::Tls), [("10.1.0.9".into(), 8443, 10)], "kept\n{out}");
    assert_eq!(world.targets(Slot::Api), [("10.1.0.8".into(), 8080, 10)], "kept\n{out}");
}

/// Whether `out` says why each of the three rules is skipped, and what to fix.
fn skipped_with_why(world: &World, out: &str) -> bool {
    let ns = &world.ns.name;
    out.contains(&format!("service {ns}/manual cannot be used: it has no selector (its Endpoints are managed by hand"))
        && out.contains(&format!("service {ns}/ghost not found: check `service:` in the rules file"))
        && out.contains(&format!(
            "service {ns}/web cannot be used: it has no port `grpc` (its ports: 8080 (http), 9999 (other))"
        ))
}

#[tokio::test]
async fn a_selectorless_service_a_missing_one_and_an_unknown_port_skip_only_their_rule_in_batch_mode() {
    let world = failing_world("svc-skip").await;
    let run = world.reconcile().await;
    run.assert_code(1);
    let out = run.all();
    assert!(skipped_with_why(&world, &out), "{out}");
    assert_kept(&world, &out);
    assert_eq!(world.targets(Slot::Web), [("10.2.0.11".into(), 8081, 20)], "the other rule converges\n{out}");
}

#[tokio::test]
async fn a_selectorless_service_a_missing_one_and_an_unknown_port_skip_only_their_rule_in_watch_mode() {
    let world = failing_world("svc-wskip").await;
    let w = Watcher::start(&world, &[]);
    let within = Duration::from_secs(15);
    eventually(within, "the other rule converged", &w, || has(&world.targets(Slot::Web), "10.2.0.11", 20)).await;
    eventually(within, "the three rules skipped with why", &w, || {
        skipped_with_why(&world, &format!("{}{}", w.reports(), w.logs()))
    })
    .await;
    assert_kept(&world, &w.logs());
}

/// A role that reads everything a run needs but Services.
const NO_SERVICES: &[&str] = &[
    r#"{apiGroups: [""], resources: ["pods"], verbs: ["list", "watch"]}"#,
    r#"{apiGroups: ["apps"], resources: ["deployments"], verbs: ["get", "list", "watch"]}"#,
    r#"{apiGroups: ["events.k8s.io"], resources: ["events"], verbs: ["create", "patch"]}"#,
];

#[tokio::test]
async fn a_role_without_services_skips_only_the_service_rule_naming_the_rule_to_add() {
    let mut world = world("svc-rbac").await;
    let (kubeconfig, _token) = world.ns.kubeconfig_with_role("clbsync", NO_SERVICES).await;
    world.kubeconfig = kubeconfig.path().to_path_buf();
    let run = world.reconcile().await;
    run.assert_code(1);
    let out = run.all();
    assert!(out.contains(r#"resources: ["services"], verbs: ["get"]"#), "names the rule to add\n{out}");
    assert_eq!(world.targets(Slot::Web), [("10.2.0.9".into(), 8080, 20)], "kept\n{out}");
    assert_eq!(world.targets(Slot::Api), [("10.1.0.1".into(), 8080, 10)], "the other rules converge\n{out}");
}

/// `validate --kubeconfig`: a named targetPort no pod of the Service has is a problem at the rule's `port:` line;
/// a missing Service and one without a selector at the backend.
#[tokio::test]
async fn validate_with_a_kubeconfig_reports_a_target_port_no_pod_has_and_unusable_services() {
    use crate::support::kube::kubeconfig_path;
    use crate::support::{clbsync, seen};
    let world = failing_world("svc-validate").await;
    service(&world, "typo", "app: svc", "srve").await;
    let ns = &world.ns.name;
    let rules = super::write_temp(&format!(
        "- load_balancer_id: lb-12345678
  listeners:
    - {{port: 80, protocol: tcp, backend: {{namespace: {ns}, service: web, port: http}}}}
    - port: 81
      protocol: tcp
      backend:
        namespace: {ns}
        service: typo
        port: http
    - {{port: 82, protocol: tcp, backend: {{namespace: {ns}, service: ghost, port: http}}}}
    - {{port: 83, protocol: tcp, backend: {{namespace: {ns}, service: manual, port: http}}}}
"
    ));
    let file = rules.path().display().to_string();
    let mut cmd = clbsync();
    cmd.arg("validate").arg("--rules").arg(rules.path()).arg("--kubeconfig").arg(kubeconfig_path());
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("clbsync runs")).await.expect("join");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}", seen(&out));
    let port = format!(
        "{file}:9:15: [0].listeners[1].backend.port: no container of the pods (by the Service's selector and \
         targetPort) of service {ns}/typo port http has a port named `srve` (they have `serve`)"
    );
    assert!(stderr.contains(&port), "{}", seen(&out));
    assert!(stderr.contains(&format!("[0].listeners[2].backend: service {ns}/ghost not found")), "{}", seen(&out));
    assert!(
        stderr.contains(&format!("[0].listeners[3].backend: service {ns}/manual cannot be used")),
        "{}",
        seen(&out)
    );
    assert!(!stderr.contains("listeners[0]"), "the good rule has no problem\n{}", seen(&out));
}
