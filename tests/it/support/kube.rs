//! The test kube-apiserver started by `testbed/kube-apiserver.sh start`: an admin client, one fresh namespace
//! per test, and builders for Deployments and Pods whose status is set by hand (there is no kubelet).
//!
//! The kubeconfig is `$CLBSYNC_TEST_KUBECONFIG`, else `target/kube-testbed/kubeconfig`. A server that is not
//! reachable fails the test loudly: these tests are never skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clbsync::desired::kube::KubeCluster;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Namespace, Pod, PodReadinessGate, PodSpec, PodTemplateSpec, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use serde_json::json;

/// Where the script writes the kubeconfig (`$CARGO_TARGET_DIR/kube-testbed`, else `target/kube-testbed`, as
/// testbed/kube-apiserver.sh decides), unless `CLBSYNC_TEST_KUBECONFIG` says otherwise.
pub fn kubeconfig_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CLBSYNC_TEST_KUBECONFIG") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |t| root.join(t));
    target.join("kube-testbed/kubeconfig")
}

fn unreachable(why: impl std::fmt::Display) -> ! {
    panic!(
        "the test kube-apiserver is not reachable ({why}) with kubeconfig {}: run testbed/kube-apiserver.sh start \
         (or set CLBSYNC_TEST_KUBECONFIG)",
        kubeconfig_path().display()
    )
}

/// A cluster-admin client for the test server. Panics if the server does not answer.
pub async fn admin_client() -> Client {
    let path = kubeconfig_path();
    let file = Kubeconfig::read_from(&path).unwrap_or_else(|e| unreachable(e));
    let config =
        Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await.unwrap_or_else(|e| unreachable(e));
    let client = Client::try_from(config).unwrap_or_else(|e| unreachable(e));
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(_)) => client,
        Ok(Err(e)) => unreachable(e),
        Err(_) => unreachable("no answer within 10 s"),
    }
}

/// The port of the test API server (on 127.0.0.1), from its kubeconfig.
pub fn api_port() -> u16 {
    let file = Kubeconfig::read_from(kubeconfig_path()).unwrap_or_else(|e| unreachable(e));
    let server = file.clusters[0].cluster.as_ref().and_then(|c| c.server.clone()).expect("the cluster has a server");
    let port = server.trim_end_matches('/').rsplit(':').next().expect("https://127.0.0.1:PORT");
    port.parse().unwrap_or_else(|e| panic!("the port of {server}: {e}"))
}

/// The files a pod gets from its ServiceAccount, where kube-rs's in-cluster configuration reads them
/// (`/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt,namespace}`). Created for one test and removed
/// with every directory it had to create when dropped, also on panic.
pub struct ServiceAccountMount {
    dir: PathBuf,
    /// The outermost directory this mount created (removed on drop).
    created: PathBuf,
}

impl ServiceAccountMount {
    pub const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

    /// Creates the directory, or returns `None` with a message when it exists already (a real pod, or another
    /// run of this test): never overwrite someone else's credentials.
    pub fn create() -> Option<Self> {
        let dir = PathBuf::from(Self::DIR);
        if dir.exists() {
            eprintln!("SKIPPED: {} exists (a pod's, or another test run's); not overwriting it", dir.display());
            return None;
        }
        let mut created = dir.clone();
        while let Some(parent) = created.parent() {
            if parent.exists() {
                break;
            }
            created = parent.to_path_buf();
        }
        let parent = dir.parent().expect("an absolute path");
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("create {} (the in-cluster test needs root): {e}", parent.display()));
        match std::fs::create_dir(&dir) {
            Ok(()) => Some(Self { dir, created }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                eprintln!("SKIPPED: {} appeared meanwhile; not overwriting it", dir.display());
                None
            }
            Err(e) => panic!("create {}: {e}", dir.display()),
        }
    }

    /// Writes the token, the test server's CA and the pod's namespace.
    pub fn write(&self, token: &str, namespace: &str) {
        let file = Kubeconfig::read_from(kubeconfig_path()).unwrap_or_else(|e| unreachable(e));
        let ca = file.clusters[0].cluster.as_ref().and_then(|c| c.certificate_authority_data.clone()).expect("CA data");
        // ByteString is base64 in JSON: the decoder the API types use.
        let ca = serde_json::from_value::<k8s_openapi::ByteString>(json!(ca)).expect("base64 CA data").0;
        for (name, bytes) in [("token", token.as_bytes()), ("ca.crt", &ca), ("namespace", namespace.as_bytes())] {
            std::fs::write(self.dir.join(name), bytes).unwrap_or_else(|e| panic!("write {name}: {e}"));
        }
    }
}

impl Drop for ServiceAccountMount {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.created) {
            eprintln!("could not remove {}: {e}", self.created.display());
        }
    }
}

/// A name no other test (process) uses: namespaces cannot be deleted on this server (no namespace
/// controller), so every test gets its own.
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..).to_string().chars().take(6).collect::<String>()
    )
}

/// One fresh namespace on the test server, with an admin client.
pub struct TestNs {
    pub client: Client,
    pub name: String,
}

impl TestNs {
    pub async fn new(prefix: &str) -> Self {
        let client = admin_client().await;
        let name = unique(prefix);
        create_namespace(&client, &name).await;
        Self { client, name }
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// A KubeCluster as cluster-admin (the kubeconfig file the script wrote, its default context).
    pub async fn cluster(&self) -> KubeCluster {
        KubeCluster::connect(Some(&kubeconfig_path())).await.expect("connect with the test kubeconfig")
    }

    /// Creates a Deployment with this selector; its template gets labels the selector matches (the API
    /// server insists).
    pub async fn deployment(&self, name: &str, selector: LabelSelector) {
        let mut template_labels = selector.match_labels.clone().unwrap_or_default();
        for req in selector.match_expressions.iter().flatten() {
            match (req.operator.as_str(), req.values.as_ref().and_then(|v| v.first())) {
                ("In", Some(v)) => template_labels.insert(req.key.clone(), v.clone()),
                ("Exists", _) => template_labels.insert(req.key.clone(), "x".into()),
                _ => None,
            };
        }
        let d = Deployment {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector,
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta { labels: Some(template_labels), ..Default::default() }),
                    spec: Some(PodSpec {
                        containers: vec![Container {
                            name: "app".into(),
                            image: Some("x".into()),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        };
        Api::<Deployment>::namespaced(self.client.clone(), &self.name)
            .create(&PostParams::default(), &d)
            .await
            .unwrap_or_else(|e| panic!("create deployment {name}: {e}"));
    }

    /// Creates the pod, then sets its status like a kubelet would.
    pub async fn create(&self, p: TestPod) {
        let api = self.pods();
        let name = p.name.clone();
        api.create(&PostParams::default(), &p.pod()).await.unwrap_or_else(|e| panic!("create pod {name}: {e}"));
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(p.status()))
            .await
            .unwrap_or_else(|e| panic!("patch status of pod {name}: {e}"));
        if p.terminating {
            api.delete(&name, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("delete pod {name}: {e}"));
        }
    }

    /// Creates a ServiceAccount in this namespace and returns a token for it (TokenRequest API).
    pub async fn service_account_token(&self, name: &str) -> String {
        service_account_token(&self.client, &self.name, name).await
    }

    /// A kubeconfig (and its token) for ServiceAccount `sa` of this namespace, bound in this namespace only to a
    /// new ClusterRole with `rules` (YAML flow mappings such as `{apiGroups: [""], resources: ["pods"], verbs:
    /// ["list"]}`).
    pub async fn kubeconfig_with_role(&self, sa: &str, rules: &[&str]) -> (tempfile::NamedTempFile, String) {
        let role = unique(&format!("clbsync-{sa}"));
        let rules: String = rules.iter().map(|r| format!("  - {r}\n")).collect();
        let rbac = format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {role}}}\nrules:\n{rules}---\n\
             apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {role}, namespace: {ns}}}\n\
             roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
             subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]\n",
            ns = self.name
        );
        apply_yaml(&self.client, &rbac, &["ClusterRole", "RoleBinding"]).await;
        let token = self.service_account_token(sa).await;
        (kubeconfig_with_token(&token), token)
    }
}

pub async fn create_namespace(client: &Client, name: &str) {
    let ns = Namespace { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// Creates (if missing) the ServiceAccount `namespace/name` and mints a one-hour token for it.
pub async fn service_account_token(client: &Client, namespace: &str, name: &str) -> String {
    token_request(client, namespace, name, vec![], 3600).await
}

/// A token of ServiceAccount `namespace/name` (created if missing) for `audience`, as the kubelet projects one into
/// a pod's volume (the server's shortest lifetime: 10 minutes).
pub async fn projected_token(client: &Client, namespace: &str, name: &str, audience: &str) -> String {
    token_request(client, namespace, name, vec![audience.to_owned()], 600).await
}

/// The server's service-account issuer and its JWKS document (issuer discovery, read as admin).
pub async fn oidc_discovery(client: &Client) -> (String, String) {
    let get = |path: &'static str| async move {
        let req = http::Request::get(path).body(Vec::new()).expect("a GET request");
        client.request_text(req).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    };
    let config: serde_json::Value =
        serde_json::from_str(&get("/.well-known/openid-configuration").await).expect("the discovery document");
    let issuer = config["issuer"].as_str().expect("the discovery document names the issuer").to_owned();
    (issuer, get("/openid/v1/jwks").await)
}

async fn token_request(client: &Client, namespace: &str, name: &str, audiences: Vec<String>, secs: i64) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let sa =
        ServiceAccount { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() };
    match sas.create(&PostParams::default(), &sa).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => panic!("create service account {namespace}/{name}: {e}"),
    }
    let req = TokenRequest {
        spec: TokenRequestSpec { audiences, expiration_seconds: Some(secs), ..Default::default() },
        ..Default::default()
    };
    let resp: TokenRequest = sas
        .create_subresource("token", name, &PostParams::default(), &req)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {namespace}/{name}: {e}"));
    resp.status.expect("a TokenRequest response has a status").token
}

/// Writes a kubeconfig for the test server that authenticates with `token`, for `KubeCluster::connect`.
pub fn kubeconfig_with_token(token: &str) -> tempfile::NamedTempFile {
    let file = Kubeconfig::read_from(kubeconfig_path()).unwrap_or_else(|e| unreachable(e));
    let cluster = file.clusters[0].cluster.as_ref().expect("the script writes one cluster");
    let server = cluster.server.as_deref().expect("the cluster has a server");
    let ca = cluster.certificate_authority_data.as_deref().expect("the cluster has CA data");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    \
         certificate-authority-data: {ca}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: t\n  \
         context: {{cluster: test, user: u, namespace: default}}\ncurrent-context: t\n"
    );
    let mut f = tempfile::NamedTempFile::new().expect("temp file");
    std::io::Write::write_all(&mut f, text.as_bytes()).expect("write temp kubeconfig");
    f
}

/// The documents of the rendered manifests (`kubectl kustomize deploy/cronjob`) that the test API server (1.20,
/// older than batch/v1 CronJob) can hold: the identity and its permissions.
pub const RBAC_KINDS: &[&str] = &["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding"];

/// Server-side applies the documents of a multi-document YAML file whose kind is in `kinds` (idempotent,
/// safe in parallel).
pub async fn apply_yaml(client: &Client, yaml: &str, kinds: &[&str]) {
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value: serde_yaml::Value = serde::Deserialize::deserialize(doc).expect("valid YAML document");
        if value.is_null() || !value["kind"].as_str().is_some_and(|k| kinds.contains(&k)) {
            continue;
        }
        let obj: DynamicObject = serde_yaml::from_value(value).expect("a Kubernetes object");
        let types = obj.types.clone().expect("apiVersion and kind are set");
        let gvk = GroupVersionKind::try_from(&types).expect("a valid apiVersion");
        let ar = ApiResource::from_gvk(&gvk);
        let name = obj.metadata.name.clone().expect("the object has a name");
        let api: Api<DynamicObject> = match &obj.metadata.namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        api.patch(&name, &PatchParams::apply("clbsync-tests").force(), &Patch::Apply(&obj))
            .await
            .unwrap_or_else(|e| panic!("apply {} {name}: {e}", types.kind));
    }
}

pub use clbsync::model::testing::{SelectorExt, selector};

/// A pod to create: `pod("web-0").label("app", "web").port("http", 8080).ready().ip("127.0.0.5")`.
/// By default it is Pending with no IP.
pub struct TestPod {
    pub name: String,
    labels: BTreeMap<String, String>,
    ports: Vec<(String, i32)>,
    phase: &'static str,
    ready: bool,
    ips: Vec<String>,
    terminating: bool,
    gated: bool,
}

pub fn pod(name: &str) -> TestPod {
    TestPod {
        name: name.into(),
        labels: BTreeMap::new(),
        ports: Vec::new(),
        phase: "Pending",
        ready: false,
        ips: Vec::new(),
        terminating: false,
        gated: false,
    }
}

impl TestPod {
    pub fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    pub fn port(mut self, name: &str, number: i32) -> Self {
        self.ports.push((name.into(), number));
        self
    }
    /// Running with Ready=True.
    pub fn ready(mut self) -> Self {
        self.phase = "Running";
        self.ready = true;
        self
    }
    /// Running with Ready=False.
    pub fn not_ready(mut self) -> Self {
        self.phase = "Running";
        self.ready = false;
        self
    }
    /// Adds a pod IP (the first one is also `status.podIP`).
    pub fn ip(mut self, ip: &str) -> Self {
        self.ips.push(ip.into());
        self
    }
    /// Opts into clbsync's readiness gate and is Running with ContainersReady=True, but not Ready: the kubelet
    /// waits for the gate's condition.
    pub fn gated(mut self) -> Self {
        self.phase = "Running";
        self.ready = false;
        self.gated = true;
        self
    }
    /// Deleted after creation; a finalizer keeps it around with `deletionTimestamp` set.
    pub fn terminating(mut self) -> Self {
        self.terminating = true;
        self
    }

    fn pod(&self) -> Pod {
        let ports = self
            .ports
            .iter()
            .map(|(n, p)| ContainerPort { name: Some(n.clone()), container_port: *p, ..Default::default() })
            .collect();
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels.clone()),
                finalizers: self.terminating.then(|| vec!["clbsync.test/keep".into()]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("node-1".into()),
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("x".into()),
                    ports: Some(ports),
                    ..Default::default()
                }],
                readiness_gates: self
                    .gated
                    .then(|| vec![PodReadinessGate { condition_type: clbsync::model::GATE_CONDITION.into() }]),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn status(&self) -> serde_json::Value {
        let now = "2025-01-01T00:00:00Z";
        let ready = if self.ready { "True" } else { "False" };
        let mut status = json!({
            "phase": self.phase,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
        });
        if self.gated {
            let containers_ready = json!({"type": "ContainersReady", "status": "True", "lastTransitionTime": now});
            status["conditions"].as_array_mut().expect("a list").push(containers_ready);
        }
        if let Some(first) = self.ips.first() {
            status["podIP"] = json!(first);
            status["podIPs"] = json!(self.ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>());
        }
        json!({ "status": status })
    }
}
