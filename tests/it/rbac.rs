//! Every shipped variant's RBAC, exactly as `kubectl kustomize` renders it, is enough for one full pass of the
//! real binary with Events, the Lease (watch mode) and the readiness gate (issue 24 item 14: `deploy/watch` could not
//! record Events, and every pass got a 403).
//!
//! Each test renders a variant, moves its RBAC onto fresh names (the ServiceAccount's namespace, the cluster-scoped
//! roles, the application namespace `shop` → the test's), applies it to the test API server, mints a token for the
//! ServiceAccount (TokenRequest) and runs the binary with it. The binary logs every Kubernetes request with its
//! status (kube-rs's HTTP spans: `RUST_LOG=kube_client=debug`, JSON lines), so a 403 it swallows (the uid lookup of
//! an Event's object, say) counts as much as one it reports. Only the RBAC objects are applied: the test server
//! (1.20) serves no batch/v1 CronJob and no policy/v1 PodDisruptionBudget, and the workloads are not needed (the
//! binary runs as a process here).

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use serde_json::Value;

use crate::e2e::gate::{GATED, condition, gated_world};
use crate::e2e::watch::{free_port, http_get};
use crate::e2e::{P, Slot, Spec, World, p};
use crate::packaging::{kustomize, parse, root};
use crate::support::kube::{admin_client, apply_yaml, kubeconfig_with_token, service_account_token, unique};

/// What a rendering holds besides RBAC: not applied (see the module doc), but named, so that a new kind that grants
/// something cannot slip past.
const NOT_RBAC: &[&str] = &["ConfigMap", "CronJob", "Deployment", "PodDisruptionBudget", "NetworkPolicy"];
const RBAC: &[&str] = &["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];

/// Verbose enough for kube-rs to log every request's status; clbsync's own lines as usual.
const LOG_REQUESTS: &str = "kube_client=debug,clbsync=info";

/// A variant's RBAC installed on the test server under fresh names, and a kubeconfig with its ServiceAccount's token.
struct Installed {
    sa_ns: String,
    kubeconfig: tempfile::NamedTempFile,
}

/// Renders `dir` (relative to the repository), moves its RBAC onto fresh names with `app_ns` for `shop`, applies it.
async fn install(dir: &str, app_ns: &str) -> Installed {
    let admin = admin_client().await;
    let sa_ns = unique("rbac-sa");
    let prefix = unique("clbsync-rbac");
    let mut docs = Vec::new();
    for mut doc in parse(&kustomize(dir)) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        if NOT_RBAC.contains(&kind.as_str()) {
            continue;
        }
        assert!(RBAC.contains(&kind.as_str()), "{dir}: a {kind} this test does not know how to apply");
        let ns = |v: &serde_yaml::Value| match v.as_str() {
            Some("clbsync") => sa_ns.clone(),
            Some("shop") => app_ns.to_owned(),
            other => panic!("{dir}: a {kind} in namespace {other:?}"),
        };
        let fresh = |v: &serde_yaml::Value| v.as_str().expect("a name").replacen("clbsync", &prefix, 1);
        match kind.as_str() {
            "Namespace" => doc["metadata"]["name"] = ns(&doc["metadata"]["name"]).into(),
            "ClusterRole" | "ClusterRoleBinding" => doc["metadata"]["name"] = fresh(&doc["metadata"]["name"]).into(),
            _ => doc["metadata"]["namespace"] = ns(&doc["metadata"]["namespace"]).into(),
        }
        if doc["roleRef"]["kind"] == "ClusterRole" {
            doc["roleRef"]["name"] = fresh(&doc["roleRef"]["name"]).into();
        }
        if let Some(subjects) = doc.get_mut("subjects").and_then(serde_yaml::Value::as_sequence_mut) {
            for s in subjects {
                s["namespace"] = ns(&s["namespace"]).into();
            }
        }
        docs.push(serde_yaml::to_string(&doc).expect("YAML"));
    }
    apply_yaml(&admin, &docs.join("---\n"), RBAC).await;
    let token = service_account_token(&admin, &sa_ns, "clbsync").await;
    Installed { sa_ns, kubeconfig: kubeconfig_with_token(&token) }
}

/// A kustomization in a fresh directory under target/ (Kustomize takes bases by relative path only) that adds the
/// readiness-gate component to `base`, with the gate's namespace list of deploy/examples/readiness-gate.
fn with_gate(base: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::Builder::new().prefix("rbac-variant-").tempdir_in(root().join("target")).expect("temp dir");
    let stubs = std::fs::read_to_string(root().join("deploy/examples/readiness-gate/gate-namespaces.yaml")).unwrap();
    std::fs::write(dir.path().join("gate-namespaces.yaml"), stubs).unwrap();
    let text = format!(
        "resources:\n  - ../../{base}\n  - gate-namespaces.yaml\ncomponents:\n  - ../../deploy/components/readiness-gate\n"
    );
    std::fs::write(dir.path().join("kustomization.yaml"), text).unwrap();
    let relative = dir.path().strip_prefix(root()).expect("under the repository").to_str().unwrap().to_owned();
    (dir, relative)
}

/// One Kubernetes request as the binary logged it.
#[derive(Debug)]
struct Request {
    method: String,
    url: String,
    status: u64,
}

/// Every request in the JSON log with a status (kube-rs records it on its `HTTP` span).
fn requests(log: &str) -> Vec<Request> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|l| {
            let span = &l["span"];
            Some(Request {
                method: span["http.method"].as_str()?.to_owned(),
                url: span["http.url"].as_str()?.to_owned(),
                status: span["http.status_code"].as_u64()?,
            })
        })
        .collect()
}

/// No request was refused, and each of `wanted` (method, URL fragment) was made and succeeded.
#[track_caller]
fn assert_allowed(variant: &str, log: &str, wanted: &[(&str, &str)]) {
    let requests = requests(log);
    let refused: Vec<&Request> = requests.iter().filter(|r| r.status == 401 || r.status == 403).collect();
    assert!(refused.is_empty(), "{variant}: refused requests {refused:#?}\n--- log\n{log}");
    for (method, fragment) in wanted {
        assert!(
            requests.iter().any(|r| r.method == *method && r.url.contains(fragment) && r.status < 300),
            "{variant}: no successful {method} …{fragment}… among {requests:#?}"
        );
    }
}

/// clbsync's Events on Deployment `name` of the world's namespace, read as admin.
async fn events_on(world: &World, name: &str) -> Vec<Event> {
    let all =
        Api::<Event>::namespaced(world.ns.client.clone(), &world.ns.name).list(&Default::default()).await.unwrap();
    all.items.into_iter().filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)).collect()
}

/// Each Event on Deployment `name` names its uid, which `kubectl describe deployment` finds it by.
async fn assert_events_name_the_deployment(world: &World, name: &str, events: &[Event]) {
    let deployment = Api::<Deployment>::namespaced(world.ns.client.clone(), &world.ns.name).get(name).await.unwrap();
    for e in events {
        let regarding = e.regarding.as_ref().expect("regarding");
        assert_eq!(
            regarding.uid, deployment.metadata.uid,
            "the Event {:?} names its Deployment's uid",
            e.metadata.name
        );
        assert_eq!(e.reporting_controller.as_deref(), Some(clbsync::observe::events::CONTROLLER));
    }
}

/// Redis behind a StatefulSet and TLS behind a Service (issue 29): the variants' reads of a `workload:` kind and of
/// a `service:` are exercised too.
fn spec() -> Spec {
    Spec::default()
        .pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
        .source(Slot::Redis, "workload: {kind: StatefulSet, name: redis}")
        .source(Slot::Tls, "service: api-tls")
}

/// The world of `spec()`, its StatefulSet and Service created.
async fn world(prefix: &str) -> World {
    let world = World::new(prefix, spec()).await;
    crate::e2e::workloads::create(&world, "StatefulSet", "redis").await;
    let service = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: api-tls, namespace: {}}}\nspec:\n  selector: {{app: api}}\n  \
         ports: [{{protocol: TCP, port: 8443, targetPort: 8443}}]\n",
        world.ns.name
    );
    apply_yaml(&world.ns.client, &service, &["Service"]).await;
    world
}

/// `reconcile` once with the variant's token: converged, Events recorded, the gate condition written.
async fn batch_pass(variant: &str, dir: &str, gate: bool) {
    let mut world = if gate { gated_world("rbac-batch").await } else { world("rbac-batch").await };
    let installed = install(dir, &world.ns.name).await;
    world.kubeconfig = installed.kubeconfig.path().to_path_buf();
    let mut cmd = world.command(&["reconcile", "--log-format", "json"]);
    cmd.env("RUST_LOG", LOG_REQUESTS);
    let mut run = crate::e2e::run(cmd).await;
    run.assert_code(0);
    if gate {
        // The first pass binds the gated pod (False, waiting for health checks), the second sees it healthy.
        let mut cmd = world.command(&["reconcile", "--log-format", "json"]);
        cmd.env("RUST_LOG", LOG_REQUESTS);
        let second = crate::e2e::run(cmd).await;
        second.assert_code(0);
        run.stderr.push_str(&second.stderr);
    }
    let mut wanted = vec![("GET", "/pods?"), ("GET", "/deployments/api"), ("POST", "/events")];
    if !gate {
        wanted.extend([("GET", "/statefulsets/redis"), ("GET", "/services/api-tls")]);
        assert!(!world.targets(Slot::Redis).is_empty(), "{variant}: the StatefulSet's rule converged\n{}", run.all());
        assert!(!world.targets(Slot::Tls).is_empty(), "{variant}: the Service's rule converged\n{}", run.all());
    }
    if gate {
        wanted.push(("PATCH", "/pods/api-gated/status"));
        let set = condition(&world, GATED).await.expect("the gate condition is written");
        assert_eq!(set.status, "True", "{variant}: {}", run.all());
    }
    assert_allowed(variant, &run.stderr, &wanted);
    let events = events_on(&world, "api").await;
    assert!(events.iter().any(|e| e.reason.as_deref() == Some("TargetsRegistered")), "{variant}: {}", run.all());
    assert_events_name_the_deployment(&world, "api", &events).await;
}

#[tokio::test]
async fn cronjob_rbac_as_rendered_runs_a_full_pass_with_events_and_no_403() {
    batch_pass("deploy/cronjob", "deploy/cronjob", false).await;
}

#[tokio::test]
async fn namespaced_rbac_example_as_rendered_runs_a_full_pass_with_events_and_no_403() {
    batch_pass("deploy/examples/namespaced-rbac", "deploy/examples/namespaced-rbac", false).await;
}

#[tokio::test]
async fn readiness_gate_example_as_rendered_runs_a_full_pass_with_events_the_gate_and_no_403() {
    batch_pass("deploy/examples/readiness-gate", "deploy/examples/readiness-gate", true).await;
}

/// Issue 26: the tke-oidc example as rendered. Its RBAC, its container's variables and a token of its ServiceAccount
/// for its projected volume's audience get credentials from STS (trusting the test API server for exactly that
/// account, with the provider id and role the variables name), and a full pass runs on them.
#[tokio::test]
async fn tke_oidc_example_as_rendered_gets_sts_credentials_for_its_service_account_and_runs_a_full_pass() {
    use crate::e2e::credentials::{AUDIENCE, keyless};
    use crate::support::kube::{oidc_discovery, projected_token};
    let dir = "deploy/examples/tke-oidc";
    let mut world = world("rbac-oidc").await;
    let installed = install(dir, &world.ns.name).await;
    world.kubeconfig = installed.kubeconfig.path().to_path_buf();
    let docs = parse(&kustomize(dir));
    let cron = docs.iter().find(|d| d["kind"] == "CronJob").expect("the CronJob");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let mut env: Vec<(String, String)> = Vec::new();
    for e in pod["containers"][0]["env"].as_sequence().expect("env") {
        let name = e["name"].as_str().expect("a name").to_owned();
        env.push((name, e["value"].as_str().expect("a plain value, no Secret").to_owned()));
    }
    let var = |name: &str| env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone()).expect(name);
    let audience = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find_map(|v| v["projected"]["sources"][0]["serviceAccountToken"]["audience"].as_str().map(str::to_owned));
    let audience = audience.expect("a projected service-account token");

    let admin = crate::support::kube::admin_client().await;
    let (issuer, jwks) = oidc_discovery(&admin).await;
    let provider = clb_emulator::OidcProvider {
        id: var("TKE_PROVIDER_ID"),
        issuer,
        audiences: vec![AUDIENCE.into()],
        jwks: clb_emulator::Jwks::from_json(&jwks).expect("JWKS"),
    };
    let subject = format!("system:serviceaccount:{}:clbsync", installed.sa_ns);
    let role = clb_emulator::OidcRole {
        arn: var("TKE_ROLE_ARN"),
        provider_id: var("TKE_PROVIDER_ID"),
        subjects: vec![subject],
    };
    world.emu.set_sts(clb_emulator::StsConfig { providers: vec![provider], roles: vec![role], lifetime_ms: None });
    let token = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(token.path(), projected_token(&admin, &installed.sa_ns, "clbsync", &audience).await).unwrap();
    for (name, value) in env.iter_mut() {
        if *name == "TKE_WEB_IDENTITY_TOKEN_FILE" {
            *value = token.path().display().to_string();
        }
    }
    let sts = world.emu.endpoint();
    let mut cmd = keyless(&world, &["reconcile", "--log-format", "json", "--sts-endpoint", &sts], &env);
    cmd.env("RUST_LOG", LOG_REQUESTS);
    let run = crate::e2e::run(cmd).await;
    run.assert_code(0);
    assert_allowed(dir, &run.stderr, &[("GET", "/pods?"), ("GET", "/deployments/api"), ("POST", "/events")]);
    let calls = world.emu.calls();
    assert_eq!(calls.of_service("sts").iter().map(|c| c.code.as_str()).collect::<Vec<_>>(), ["Success"]);
    assert!(calls.of_service("clb").iter().all(|c| c.temporary && c.code == "Success"), "{:?}", calls.errors_by_code);
}

#[tokio::test]
async fn secret_files_example_as_rendered_runs_with_leader_election_events_and_no_403() {
    watch_pass("deploy/examples/secret-files", "deploy/examples/secret-files", false).await;
}

/// `reconcile --watch` with the variant's token, killed when dropped; its JSON log goes to a file.
struct WatchChild {
    child: Child,
    log: tempfile::NamedTempFile,
    metrics: u16,
}

impl WatchChild {
    fn start(world: &World, lease_ns: &str) -> Self {
        let metrics = free_port();
        let log = tempfile::NamedTempFile::new().expect("temp file");
        let addr = format!("127.0.0.1:{metrics}");
        let args = ["reconcile", "--watch", "--metrics-addr", &addr, "--debounce", "200ms", "--log-format", "json"];
        let child = world
            .process(&args)
            .args(["--leader-election-namespace", lease_ns])
            .env("RUST_LOG", LOG_REQUESTS)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("reopen"))
            .spawn()
            .expect("spawn clbsync --watch");
        WatchChild { child, log, metrics }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn leads(&self) -> bool {
        http_get(self.metrics, "/metrics").is_some_and(|(_, m)| m.contains("clbsync_leader 1"))
    }

    /// SIGTERM, then its exit code within 20 s.
    async fn stop(&mut self) -> Option<i32> {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "clbsync did not exit\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for WatchChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls the async `check` every 100 ms until it holds, for at most 30 s.
async fn until<F, Fut>(what: &str, w: &WatchChild, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(30), "{what} did not happen within 30 s\n{}", w.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Watch mode with the variant's token: it leads (the Lease), registers, records an Event and then counts it again
/// (create, then patch), writes the gate condition, and releases the Lease on SIGTERM (an update, as every
/// renewal).
async fn watch_pass(variant: &str, dir: &str, gate: bool) {
    let mut world = if gate { gated_world("rbac-watch").await } else { world("rbac-watch").await };
    let installed = install(dir, &world.ns.name).await;
    world.kubeconfig = installed.kubeconfig.path().to_path_buf();
    let mut w = WatchChild::start(&world, &installed.sa_ns);
    let registered = |world: &World, pod: &P| world.targets(Slot::Web).iter().any(|(ip, _, _)| *ip == pod.ip);

    until("leading and converged", &w, || async {
        w.leads()
            && !world.targets(Slot::Api).is_empty()
            && (gate || !world.targets(Slot::Redis).is_empty() && !world.targets(Slot::Tls).is_empty())
    })
    .await;
    let lease = Api::<Lease>::namespaced(world.ns.client.clone(), &installed.sa_ns).get("clbsync").await.unwrap();
    assert!(lease.spec.and_then(|s| s.holder_identity).is_some(), "{variant}: the Lease is held");
    if gate {
        until("the gate condition True", &w, || async {
            condition(&world, GATED).await.is_some_and(|c| c.status == "True")
        })
        .await;
    }
    // Two new pods of `web`, one after the other: the second pass finds the same (Deployment, reason) and patches
    // the Event the first created.
    for (n, ip) in ["10.2.0.8", "10.2.0.9"].into_iter().enumerate() {
        let pod = p("web", ip);
        world.add_pod(pod.clone()).await;
        until("the new pod registered", &w, || async { registered(&world, &pod) }).await;
        until("its Event recorded", &w, || async {
            events_on(&world, "web").await.iter().any(|e| {
                let count = e.series.as_ref().map_or(1, |s| s.count);
                e.reason.as_deref() == Some("TargetsRegistered") && count > n as i32
            })
        })
        .await;
    }
    assert_eq!(w.stop().await, Some(0), "{variant}\n{}", w.log());
    let log = w.log();
    assert!(log.contains("released the lease"), "{variant}: the role may release the lease\n{log}");

    // The watches themselves are not among them (a stream's status is logged when it ends, and they end with the
    // process); the new pods registered above are what shows them working.
    let mut wanted =
        vec![("GET", "/leases/clbsync"), ("PUT", "/leases/clbsync"), ("POST", "/events"), ("PATCH", "/events/")];
    if gate {
        wanted.push(("PATCH", "/pods/api-gated/status"));
    }
    assert_allowed(variant, &log, &wanted);
    assert_events_name_the_deployment(&world, "web", &events_on(&world, "web").await).await;
}

#[tokio::test]
async fn watch_rbac_as_rendered_runs_with_leader_election_events_and_no_403() {
    watch_pass("deploy/watch", "deploy/watch", false).await;
}

#[tokio::test]
async fn watch_rbac_with_the_readiness_gate_component_runs_with_the_gate_events_and_no_403() {
    let (_dir, relative) = with_gate("deploy/watch");
    watch_pass("deploy/watch + deploy/components/readiness-gate", &relative, true).await;
}
