//! `KubeCluster` against the real test kube-apiserver (`testbed/kube-apiserver.sh start`). Each test works in
//! namespaces of its own, so tests run in parallel.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use clbsync::desired::kube::KubeCluster;
use clbsync::desired::{Cluster, Error, list_all};
use clbsync::model::PodState;
use clbsync::model::{DEFAULT_WEIGHT, Target};
use clbsync::plan::targets_for;
use clbsync::rules::{Backend, IpFamily, PodQuery, PodSource, Policy, PortRef, WorkloadKind};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;

use crate::e2e::{Slot, Spec, World, cli_process, eni, p};
use crate::packaging::kustomize;
use crate::support::kube::{
    RBAC_KINDS, SelectorExt, ServiceAccountMount, TestNs, admin_client, api_port, apply_yaml, kubeconfig_with_token,
    pod, selector, unique,
};

/// Pods for every rule of the e2e world, and one stale target, so that `diff` has something to show.
fn rbac_spec() -> Spec {
    Spec::default()
        .pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("web", "10.2.0.2"), p("redis", "10.3.0.1")])
        .bound(Slot::Web, [eni("10.99.0.2", 8080, 20)])
}

fn deployment(ns: &str, name: &str) -> PodQuery {
    PodQuery { namespace: ns.into(), source: PodSource::deployment(name) }
}

fn labels(ns: &str, kv: &[(&str, &str)]) -> PodQuery {
    let map: BTreeMap<String, String> = kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    PodQuery { namespace: ns.into(), source: PodSource::Selector(map) }
}

fn backend(pods: PodQuery, port: PortRef) -> Backend {
    Backend { pods, port, weight: DEFAULT_WEIGHT, policy: Policy::Sync, allow_empty: false, ip_family: IpFamily::Ipv4 }
}

fn names(pods: &[clbsync::model::Pod]) -> Vec<&str> {
    let mut v: Vec<&str> = pods.iter().map(|p| p.name.as_str()).collect();
    v.sort_unstable();
    v
}

fn target(ip: &str, port: u16) -> Target {
    Target::new(ip.parse::<IpAddr>().unwrap(), port)
}

#[tokio::test]
async fn deployment_match_labels_select_its_pods_only() {
    let ns = TestNs::new("kube-labels").await;
    let other = TestNs::new("kube-labels-other").await;
    ns.deployment("web", selector().label("app", "web")).await;
    ns.create(pod("web-0").label("app", "web").label("tier", "fe").ready().ip("127.0.0.10")).await;
    ns.create(pod("web-1").label("app", "web").ready().ip("127.0.0.11")).await;
    ns.create(pod("webby").label("app", "webby").ready().ip("127.0.0.12")).await;
    ns.create(pod("db-0").label("app", "db").label("role", "web").ready().ip("127.0.0.13")).await;
    other.create(pod("web-x").label("app", "web").ready().ip("127.0.0.14")).await;

    let cluster = ns.cluster().await;
    let pods = cluster.pods(&deployment(&ns.name, "web")).await.unwrap();
    assert_eq!(names(&pods), ["web-0", "web-1"]);
    let p = pods.iter().find(|p| p.name == "web-0").unwrap();
    assert_eq!((p.phase.as_str(), p.ready, p.terminating), ("Running", true, false));
    assert_eq!(p.ips, ["127.0.0.10".parse::<IpAddr>().unwrap()]);

    let pods = cluster.pods(&labels(&ns.name, &[("app", "web"), ("tier", "fe")])).await.unwrap();
    assert_eq!(names(&pods), ["web-0"]);
}

#[tokio::test]
async fn deployment_match_expressions_use_all_four_operators() {
    let ns = TestNs::new("kube-exprs").await;
    ns.deployment(
        "api",
        selector()
            .label("app", "api")
            .expr("env", "In", &["prod", "canary"])
            .expr("track", "NotIn", &["debug"])
            .expr("version", "Exists", &[])
            .expr("legacy", "DoesNotExist", &[]),
    )
    .await;
    let base = |name: &str| pod(name).label("app", "api").label("version", "1").ready().ip("127.0.0.20");
    ns.create(base("prod").label("env", "prod")).await;
    ns.create(base("canary").label("env", "canary").label("track", "stable")).await;
    ns.create(base("staging").label("env", "staging")).await;
    ns.create(base("debug").label("env", "prod").label("track", "debug")).await;
    ns.create(base("legacy").label("env", "prod").label("legacy", "yes")).await;
    ns.create(pod("unversioned").label("app", "api").label("env", "prod")).await;

    let pods = ns.cluster().await.pods(&deployment(&ns.name, "api")).await.unwrap();
    assert_eq!(names(&pods), ["canary", "prod"]);
}

#[tokio::test]
async fn more_pods_than_one_page_are_all_listed() {
    let ns = TestNs::new("kube-paging").await;
    ns.deployment("many", selector().label("app", "many")).await;
    for i in 0..25 {
        ns.create(pod(&format!("many-{i:02}")).label("app", "many").ready().ip(&format!("127.0.1.{i}"))).await;
    }
    ns.create(pod("noise").label("app", "few").ready().ip("127.0.2.1")).await;

    let cluster = ns.cluster().await.with_page_size(4);
    let pods = cluster.pods(&deployment(&ns.name, "many")).await.unwrap();
    assert_eq!(pods.len(), 25);
    let want: Vec<String> = (0..25).map(|i| format!("many-{i:02}")).collect();
    assert_eq!(names(&pods), want.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn only_running_ready_pods_with_an_ip_become_targets_and_terminating_ones_drain() {
    let ns = TestNs::new("kube-states").await;
    ns.deployment("web", selector().label("app", "web")).await;
    let web = |name: &str| pod(name).label("app", "web").port("http", 8080);
    ns.create(web("ready").ready().ip("127.0.0.30")).await;
    ns.create(web("not-ready").not_ready().ip("127.0.0.31")).await;
    ns.create(web("pending")).await;
    ns.create(web("no-ip").ready()).await;
    ns.create(web("terminating").ready().ip("127.0.0.32").terminating()).await;

    let q = deployment(&ns.name, "web");
    let pods = ns.cluster().await.pods(&q).await.unwrap();
    assert_eq!(names(&pods), ["no-ip", "not-ready", "pending", "ready", "terminating"]);
    assert!(pods.iter().find(|p| p.name == "terminating").unwrap().terminating);

    let out = targets_for(&backend(q, PortRef::Name("http".into())), &pods.clone().into());
    let got: Vec<_> = out.targets.iter().map(|t| (t.pod.as_str(), t.target, t.state)).collect();
    assert_eq!(
        got,
        [
            ("ready", target("127.0.0.30", 8080), PodState::Ready),
            ("terminating", target("127.0.0.32", 8080), PodState::Terminating),
        ]
    );
    assert_eq!(out.problems, ["pod no-ip is ready but has no pod IP yet, skipped"]);
}

#[tokio::test]
async fn named_ports_resolve_per_pod_and_a_pod_without_the_port_is_a_problem() {
    let ns = TestNs::new("kube-ports").await;
    ns.create(pod("a").label("app", "svc").port("http", 8080).port("metrics", 9100).ready().ip("127.0.0.40")).await;
    ns.create(pod("b").label("app", "svc").port("http", 8081).ready().ip("127.0.0.41")).await;
    ns.create(pod("c").label("app", "svc").port("grpc", 9000).ready().ip("127.0.0.42")).await;

    let q = labels(&ns.name, &[("app", "svc")]);
    let pods = ns.cluster().await.pods(&q).await.unwrap();
    let out = targets_for(&backend(q, PortRef::Name("http".into())), &pods.clone().into());
    let got: Vec<_> = out.targets.iter().map(|t| t.target).collect();
    assert_eq!(got, [target("127.0.0.40", 8080), target("127.0.0.41", 8081)]);
    assert_eq!(out.problems, ["pod c has no container port named `http`, skipped: check `port:` in the rules file"]);
}

#[tokio::test]
async fn dual_stack_pods_give_the_address_of_the_wanted_family() {
    let ns = TestNs::new("kube-dual").await;
    ns.create(pod("dual").label("app", "ds").ready().ip("127.0.0.50").ip("fd00::50")).await;
    ns.create(pod("v4").label("app", "ds").ready().ip("127.0.0.51")).await;

    let q = labels(&ns.name, &[("app", "ds")]);
    let pods = ns.cluster().await.pods(&q).await.unwrap();
    let dual = pods.iter().find(|p| p.name == "dual").unwrap();
    assert_eq!(dual.ips, ["127.0.0.50".parse::<IpAddr>().unwrap(), "fd00::50".parse().unwrap()]);

    let mut b = backend(q, PortRef::Number(80));
    b.ip_family = IpFamily::Ipv6;
    let out = targets_for(&b, &pods.clone().into());
    assert_eq!(out.targets.iter().map(|t| t.target).collect::<Vec<_>>(), [target("fd00::50", 80)]);
    assert_eq!(out.problems, ["pod v4 has no IPv6 address (127.0.0.51), skipped"]);
}

#[tokio::test]
async fn missing_deployment_is_deployment_not_found() {
    let ns = TestNs::new("kube-nodeploy").await;
    let err = ns.cluster().await.pods(&deployment(&ns.name, "ghost")).await.unwrap_err();
    assert!(
        matches!(&err, Error::WorkloadNotFound { workload, .. } if *workload == format!("deployment {}/ghost", ns.name)),
        "{err:?}"
    );
}

#[tokio::test]
async fn missing_namespace_is_namespace_not_found_not_zero_pods() {
    let ns = TestNs::new("kube-nons").await;
    let cluster = ns.cluster().await;
    let missing = unique("kube-missing");
    for q in [deployment(&missing, "web"), labels(&missing, &[("app", "web")])] {
        let err = cluster.pods(&q).await.unwrap_err();
        assert!(matches!(&err, Error::NamespaceNotFound { namespace } if *namespace == missing), "{q}: {err:?}");
    }
    // An existing namespace without matching pods is a real "zero pods".
    assert_eq!(cluster.pods(&labels(&ns.name, &[("app", "none")])).await.unwrap(), []);
}

#[tokio::test]
async fn empty_deployment_selector_is_refused() {
    let ns = TestNs::new("kube-emptysel").await;
    let err = ns.cluster().await.pods(&labels(&ns.name, &[])).await.unwrap_err();
    assert!(matches!(err, Error::InvalidSelector { .. }), "{err:?}");
}

#[tokio::test]
async fn deployments_sharing_a_selector_and_list_all_give_the_same_pods() {
    let ns = TestNs::new("kube-shared").await;
    ns.deployment("blue", selector().label("app", "bg")).await;
    ns.deployment("green", selector().label("app", "bg")).await;
    ns.create(pod("bg-0").label("app", "bg").ready().ip("127.0.0.60")).await;
    let cluster = ns.cluster().await;
    let queries = [deployment(&ns.name, "blue"), deployment(&ns.name, "green"), deployment(&ns.name, "blue")];
    let results = list_all(&cluster, queries, 4).await;
    assert_eq!(results.len(), 2);
    for (q, pods) in results {
        assert_eq!(names(&pods.unwrap_or_else(|e| panic!("{q}: {e}")).pods), ["bg-0"]);
    }
}

/// `Err(403)`, or the call that should have been forbidden.
#[track_caller]
fn assert_forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what} must be forbidden to clbsync's service account, got {other:?}"),
    }
}

#[tokio::test]
async fn cronjob_rbac_as_rendered_allows_a_full_run_with_events_and_nothing_it_does_not_need() {
    // Issues 18 and 19 (item 11): the role the manifests ship, applied as `kubectl kustomize` renders it.
    let admin = admin_client().await;
    apply_yaml(&admin, &kustomize("deploy/cronjob"), RBAC_KINDS).await;
    let token = crate::support::kube::service_account_token(&admin, "clbsync", "clbsync").await;
    let kubeconfig = kubeconfig_with_token(&token);

    let mut world = World::new("rbac", rbac_spec()).await;
    world.kubeconfig = kubeconfig.path().to_path_buf();
    let run = world.run(&["diff"]).await;
    run.assert_code(0);
    assert!(run.stderr.contains("skipped=0"), "every rule was read\n{}", run.all());
    assert!(run.stdout.contains("register"), "the pods were listed\n{}", run.all());

    let cluster = KubeCluster::connect(Some(kubeconfig.path())).await.unwrap().with_page_size(1);
    let pods = cluster.pods(&deployment(&world.ns.name, "web")).await.unwrap();
    assert_eq!(pods.len(), 2, "paged list of the web pods");
    let err = cluster.pods(&labels(&unique("kube-rbac-missing"), &[("app", "web")])).await.unwrap_err();
    assert!(matches!(err, Error::NamespaceNotFound { .. }), "get namespaces is granted: {err:?}");

    let client = cluster.client().clone();
    let ns = world.ns.name.as_str();
    let pod_name = world.ns.pods().list(&Default::default()).await.unwrap().items[0].metadata.name.clone().unwrap();
    assert_forbidden(
        "list deployments",
        Api::<Deployment>::namespaced(client.clone(), ns).list(&Default::default()).await,
    );
    assert_forbidden(
        "list services (a `service:` backend gets its Service)",
        Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), ns).list(&Default::default()).await,
    );
    assert_forbidden("get pods", Api::<Pod>::namespaced(client.clone(), ns).get(&pod_name).await);
    assert_forbidden(
        "watch pods",
        Api::<Pod>::namespaced(client.clone(), ns).watch(&Default::default(), "0").await.map(|_| ()),
    );
    assert_forbidden(
        "delete pods",
        Api::<Pod>::namespaced(client.clone(), ns).delete(&pod_name, &Default::default()).await,
    );
    assert_forbidden(
        "get secrets",
        Api::<Secret>::namespaced(client.clone(), "clbsync").get("clbsync-credentials").await,
    );
    assert_forbidden("list secrets", Api::<Secret>::all(client.clone()).list(&Default::default()).await);
    assert_forbidden("list namespaces", Api::<Namespace>::all(client.clone()).list(&Default::default()).await);
    let events = Api::<Event>::namespaced(client.clone(), ns);
    assert_forbidden("list events", events.list(&Default::default()).await);
    assert_forbidden("delete events", events.delete_collection(&Default::default(), &Default::default()).await);

    // Issue 15: the role may record Events, and a reconcile does.
    let run = world.run(&["reconcile"]).await;
    run.assert_code(0);
    assert!(!run.stderr.contains("Kubernetes Events"), "no complaint about Events\n{}", run.all());
    let recorded = Api::<Event>::namespaced(world.ns.client.clone(), ns).list(&Default::default()).await.unwrap();
    assert!(
        recorded.items.iter().any(|e| e.reason.as_deref() == Some("TargetsRegistered")),
        "the rendered role records Events: {:?}\n{}",
        recorded.items.iter().map(|e| &e.reason).collect::<Vec<_>>(),
        run.all()
    );
}

#[tokio::test]
async fn namespaced_rbac_example_allows_a_full_diff_run_in_its_namespaces_only() {
    // deploy/examples/namespaced-rbac as rendered, moved onto this test's names: the ServiceAccount's namespace
    // `clbsync` becomes a fresh one (the cluster-wide test binds clbsync/clbsync everywhere), the ClusterRole
    // gets a fresh name, and the RoleBinding for `shop` goes into the world's namespace.
    let admin = admin_client().await;
    let world_spec = rbac_spec();
    let mut world = World::new("nsrbac", world_spec).await;
    let sa_ns = unique("nsrbac-sa");
    let role = unique("clbsync-nsrbac");
    let mut docs = Vec::new();
    for mut doc in crate::packaging::parse(&kustomize("deploy/examples/namespaced-rbac")) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        assert_ne!(kind, "ClusterRoleBinding", "the namespaced example binds nothing cluster-wide");
        let meta = &mut doc["metadata"];
        match kind.as_str() {
            "Namespace" => meta["name"] = sa_ns.clone().into(),
            "ServiceAccount" => meta["namespace"] = sa_ns.clone().into(),
            "ClusterRole" => meta["name"] = role.clone().into(),
            "RoleBinding" => {
                assert_eq!(meta["namespace"], "shop", "the example's namespace");
                meta["namespace"] = world.ns.name.clone().into();
                doc["roleRef"]["name"] = role.clone().into();
                doc["subjects"][0]["namespace"] = sa_ns.clone().into();
            }
            _ => continue,
        }
        docs.push(serde_yaml::to_string(&doc).unwrap());
    }
    apply_yaml(&admin, &docs.join("---\n"), &["Namespace", "ServiceAccount", "ClusterRole", "RoleBinding"]).await;
    let token = crate::support::kube::service_account_token(&admin, &sa_ns, "clbsync").await;
    let kubeconfig = kubeconfig_with_token(&token);

    world.kubeconfig = kubeconfig.path().to_path_buf();
    let run = world.run(&["diff"]).await;
    run.assert_code(0);
    assert!(run.stderr.contains("skipped=0"), "every rule was read\n{}", run.all());

    let other = TestNs::new("nsrbac-other").await;
    other.deployment("web", selector().label("app", "web")).await;
    let cluster = KubeCluster::connect(Some(kubeconfig.path())).await.unwrap();
    let err = cluster.pods(&deployment(&other.name, "web")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden { verb, resource, .. } if verb == "get" && resource == "deployments"),
        "{err:?}"
    );
    let err = cluster.pods(&labels(&other.name, &[("app", "web")])).await.unwrap_err();
    assert!(matches!(&err, Error::Forbidden { verb, resource, .. } if verb == "list" && resource == "pods"), "{err:?}");
}

#[tokio::test]
async fn in_cluster_configuration_runs_diff_with_the_mounted_service_account_and_no_kubeconfig() {
    // Issue 18: the path every CronJob takes. kube-rs reads KUBERNETES_SERVICE_HOST/PORT and the files a pod
    // gets at /var/run/secrets/kubernetes.io/serviceaccount; the test server's certificate covers 127.0.0.1.
    let Some(mount) = ServiceAccountMount::create() else { return };
    let admin = admin_client().await;
    apply_yaml(&admin, &kustomize("deploy/cronjob"), RBAC_KINDS).await;
    let token = crate::support::kube::service_account_token(&admin, "clbsync", "clbsync").await;
    mount.write(&token, "clbsync");

    let world = World::new("incluster", rbac_spec()).await;
    let home = tempfile::tempdir().unwrap(); // no ~/.kube/config to fall back on
    let in_cluster = |with_env: bool| {
        let mut cmd = cli_process(&world.emu, &["diff"]);
        cmd.arg("--rules").arg(world.rules_path()).env("HOME", home.path());
        if with_env {
            cmd.env("KUBERNETES_SERVICE_HOST", "127.0.0.1").env("KUBERNETES_SERVICE_PORT", api_port().to_string());
        }
        let mut cmd = assert_cmd::Command::from_std(cmd);
        cmd.timeout(Duration::from_secs(90));
        crate::e2e::run(cmd) // off the runtime thread: the emulator runs on it
    };
    let run = in_cluster(true).await;
    run.assert_code(0);
    assert!(run.stderr.contains("skipped=0") && run.stdout.contains("register"), "{}", run.all());
    assert!(!run.all().contains(&token), "the token is never printed");

    // Without the service environment there is no configuration at all: the run above did use the mount.
    let run = in_cluster(false).await;
    run.assert_code(1);
    assert!(run.stdout.contains("in-cluster") || run.stderr.contains("in-cluster"), "{}", run.all());
}

#[tokio::test]
async fn a_role_without_list_pods_is_forbidden_and_the_error_names_the_missing_rule() {
    let ns = TestNs::new("kube-forbid").await;
    ns.deployment("web", selector().label("app", "web")).await;
    let rules = [
        r#"{apiGroups: [""], resources: ["pods"], verbs: ["get"]}"#,
        r#"{apiGroups: ["apps"], resources: ["deployments"], verbs: ["get"]}"#,
    ];
    let (kubeconfig, _token) = ns.kubeconfig_with_role("limited", &rules).await;
    let cluster = KubeCluster::connect(Some(kubeconfig.path())).await.unwrap();

    let err = cluster.pods(&deployment(&ns.name, "web")).await.unwrap_err();
    let Error::Forbidden { verb, resource, group, namespace, message } = &err else { panic!("{err:?}") };
    assert_eq!((verb.as_str(), resource.as_str(), group.as_str()), ("list", "pods", ""));
    assert_eq!(namespace, &ns.name);
    assert!(message.contains(&format!("system:serviceaccount:{}:limited", ns.name)), "{message}");
    let text = err.to_string();
    assert!(text.contains(&format!("cannot list pods in namespace {}", ns.name)), "{text}");
    assert!(text.contains(r#"{apiGroups: [""], resources: ["pods"], verbs: ["list"]}"#), "{text}");

    // No RoleBinding for get deployments in another namespace: the GET is forbidden, and named as such.
    let other = TestNs::new("kube-forbid-other").await;
    let err = cluster.pods(&deployment(&other.name, "web")).await.unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden { verb, resource, group, .. } if verb == "get" && resource == "deployments" && group == "apps"),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_wrong_token_is_unauthorized() {
    let ns = TestNs::new("kube-401").await;
    let kubeconfig = kubeconfig_with_token("not-a-valid-token");
    let cluster = KubeCluster::connect(Some(kubeconfig.path())).await.unwrap();
    let err = cluster.pods(&labels(&ns.name, &[("app", "web")])).await.unwrap_err();
    assert!(matches!(err, Error::Unauthorized), "{err:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_timeout() {
    // Accepts connections and never answers (no TLS handshake): the request deadline must fire.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _accept = std::thread::spawn(move || {
        let _held: Vec<_> = listener.incoming().take(4).collect();
    });
    let config = kube::Config::new(format!("https://127.0.0.1:{port}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let cluster = KubeCluster::from_client(client).with_request_timeout(Duration::from_millis(300));
    let err = cluster.pods(&labels("default", &[("app", "web")])).await.unwrap_err();
    assert!(matches!(&err, Error::Timeout { what } if what.contains("list pods in namespace default")), "{err:?}");
}

#[tokio::test]
async fn connect_names_the_kubeconfig_it_could_not_load() {
    let err = KubeCluster::connect(Some(std::path::Path::new("/nonexistent/kubeconfig"))).await.err().unwrap();
    assert!(err.to_string().contains("kubeconfig /nonexistent/kubeconfig"), "{err}");
}

#[tokio::test]
async fn watch_rbac_as_rendered_suffices_for_watch_mode_with_leader_election_and_grants_no_get_on_pods() {
    // deploy/watch as rendered, moved onto fresh names (the CronJob tests bind clbsync/clbsync and check that it
    // may not watch): the ServiceAccount's namespace, the ClusterRole and its binding.
    use crate::e2e::watch::{REACT, Watcher, eventually, has};
    let admin = admin_client().await;
    let sa_ns = unique("wrbac-sa");
    let role = unique("clbsync-wrbac");
    let mut docs = Vec::new();
    for mut doc in crate::packaging::parse(&kustomize("deploy/watch")) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let meta = &mut doc["metadata"];
        match kind.as_str() {
            "Namespace" => meta["name"] = sa_ns.clone().into(),
            "ServiceAccount" | "Role" => meta["namespace"] = sa_ns.clone().into(),
            "ClusterRole" => meta["name"] = role.clone().into(),
            "ClusterRoleBinding" | "RoleBinding" => {
                if kind == "ClusterRoleBinding" {
                    meta["name"] = role.clone().into();
                    doc["roleRef"]["name"] = role.clone().into();
                } else {
                    meta["namespace"] = sa_ns.clone().into();
                }
                doc["subjects"][0]["namespace"] = sa_ns.clone().into();
            }
            _ => continue,
        }
        docs.push(serde_yaml::to_string(&doc).unwrap());
    }
    let kinds = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];
    apply_yaml(&admin, &docs.join("---\n"), &kinds).await;
    let token = crate::support::kube::service_account_token(&admin, &sa_ns, "clbsync").await;
    let kubeconfig = kubeconfig_with_token(&token);

    let mut world = World::new("wrbac", rbac_spec()).await;
    world.kubeconfig = kubeconfig.path().to_path_buf();
    let mut w = Watcher::start(&world, &["--leader-election-namespace", &sa_ns]);
    eventually(REACT, "the watch role lists, watches and leads", &w, || {
        has(&world.targets(Slot::Redis), "10.3.0.1", 10)
            && w.get("/metrics").is_some_and(|(_, m)| m.contains("clbsync_leader 1"))
    })
    .await;
    w.signal("-TERM");
    assert_eq!(w.exit_code(Duration::from_secs(15)).await, Some(0), "{}", w.logs());
    assert!(!w.logs().contains("releasing the lease"), "the role may release the lease\n{}", w.logs());

    let cluster = KubeCluster::connect(Some(kubeconfig.path())).await.unwrap();
    let client = cluster.client().clone();
    let ns = world.ns.name.as_str();
    let pod_name = world.ns.pods().list(&Default::default()).await.unwrap().items[0].metadata.name.clone().unwrap();
    assert_forbidden("get pods", Api::<Pod>::namespaced(client.clone(), ns).get(&pod_name).await);
    assert_forbidden("list secrets", Api::<Secret>::all(client.clone()).list(&Default::default()).await);
    let leases = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), ns);
    assert_forbidden("list leases elsewhere", leases.list(&Default::default()).await);
}

#[tokio::test]
async fn readiness_gate_rbac_as_rendered_is_needed_suffices_and_grants_nothing_outside_the_listed_namespaces() {
    // Issue 13: deploy/examples/readiness-gate (the CronJob plus deploy/components/readiness-gate) as rendered,
    // moved onto fresh names. Without the component the patch is refused, reported, and the run still succeeds.
    // Issue 24 item 13: the component bound `patch pods/status` cluster-wide; it now grants it only in the
    // namespaces listed (the example's `shop`, here the world's namespace).
    use crate::e2e::gate::{GATED, condition, gated_world};
    let admin = admin_client().await;
    let sa_ns = unique("grbac-sa");
    let role = unique("clbsync-grbac");
    let mut world = gated_world("grbac").await;
    let (mut base, mut gate) = (Vec::new(), Vec::new());
    for mut doc in crate::packaging::parse(&kustomize("deploy/examples/readiness-gate")) {
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let fresh = name.replace("clbsync", &role);
        let meta = &mut doc["metadata"];
        match kind.as_str() {
            "Namespace" => meta["name"] = sa_ns.clone().into(),
            "ServiceAccount" => meta["namespace"] = sa_ns.clone().into(),
            "ClusterRole" => meta["name"] = fresh.into(),
            "ClusterRoleBinding" | "RoleBinding" => {
                if kind == "RoleBinding" {
                    assert_eq!(meta["namespace"], "shop", "the example's namespace");
                    meta["namespace"] = world.ns.name.clone().into();
                } else {
                    meta["name"] = fresh.clone().into();
                }
                doc["roleRef"]["name"] = doc["roleRef"]["name"].as_str().unwrap().replace("clbsync", &role).into();
                doc["subjects"][0]["namespace"] = sa_ns.clone().into();
            }
            _ => continue,
        }
        let text = serde_yaml::to_string(&doc).unwrap();
        if name.contains("readiness-gate") { gate.push(text) } else { base.push(text) }
    }
    assert_eq!(gate.len(), 2, "the component adds a ClusterRole and one RoleBinding per listed namespace");
    let kinds = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "RoleBinding"];
    apply_yaml(&admin, &base.join("---\n"), &kinds).await;
    let token = crate::support::kube::service_account_token(&admin, &sa_ns, "clbsync").await;
    let kubeconfig = kubeconfig_with_token(&token);
    world.kubeconfig = kubeconfig.path().to_path_buf();

    let run = world.reconcile().await;
    run.assert_code(0);
    assert!(
        run.stderr.contains("setting clbsync.dev/registered failed") && run.stderr.contains("pods/status"),
        "{}",
        run.all()
    );
    assert_eq!(condition(&world, GATED).await, None, "{}", run.all());

    apply_yaml(&admin, &gate.join("---\n"), &kinds).await;
    let run = world.reconcile().await;
    run.assert_code(0);
    assert!(!run.stderr.contains("registered failed"), "{}", run.all());
    let set = condition(&world, GATED).await.expect("the component's role may patch pods/status");
    assert_eq!((set.status.as_str(), set.reason.as_deref()), ("True", Some("Registered")), "{}", run.all());

    // Another namespace: the same token may not touch a pod's status there.
    let other = TestNs::new("grbac-other").await;
    other.create(pod("elsewhere").label("app", "api").ip("127.0.0.80").gated()).await;
    let cluster = KubeCluster::connect(Some(kubeconfig.path())).await.unwrap();
    let condition = clbsync::model::GateCondition { status: false, reason: "Test".into(), message: "test".into() };
    let err = cluster.set_pod_condition(&other.name, "elsewhere", &condition, true).await.unwrap_err();
    assert!(
        matches!(&err, Error::Forbidden { verb, resource, .. } if verb == "patch" && resource == "pods/status"),
        "{err:?}"
    );
}

#[tokio::test]
async fn events_to_a_server_that_never_answers_give_up_within_the_total_timeout() {
    use clbsync::observe::events::{self, Draft, Object, ObjectKind, Reason, TOTAL_TIMEOUT};
    // Issue 15: recording Events never holds a run up for long, however many there are.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let _accept = std::thread::spawn(move || {
        let _held: Vec<_> = listener.incoming().take(64).collect();
    });
    let config = kube::Config::new(format!("https://127.0.0.1:{port}").parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let drafts: Vec<Draft> = (0..40)
        .map(|i| Draft {
            object: Object {
                kind: ObjectKind::Workload(WorkloadKind::Deployment),
                namespace: "shop".into(),
                name: format!("app-{i}"),
            },
            reason: Reason::TargetsRegistered,
            note: "registered: lb-1 TCP:80: 1 target(s) [10.0.0.1:80]".into(),
        })
        .collect();
    let started = std::time::Instant::now();
    events::Series::default().record(&client, drafts, "test").await;
    let took = started.elapsed();
    assert!(took >= TOTAL_TIMEOUT, "the server never answered, so the deadline is what ended it: {took:?}");
    assert!(took < TOTAL_TIMEOUT + Duration::from_secs(1), "{took:?}");
}
