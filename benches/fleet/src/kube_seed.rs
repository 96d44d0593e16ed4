//! Seeding the test kube-apiserver with a fleet's Deployments and ready pods (once; later runs reuse them), and
//! reading the API server's request counters to check how many lists a run made.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{Container, Namespace, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;

use crate::fleet::Fleet;

const SEEDED: &str = "clbsync.bench/seeded";

/// The test kubeconfig: `CLBSYNC_TEST_KUBECONFIG`, else `$CLBSYNC_KUBE_TESTBED/kubeconfig`, else the repo's
/// `target/kube-testbed/kubeconfig` (what `testbed/kube-apiserver.sh env` prints).
pub fn kubeconfig_path() -> PathBuf {
    if let Some(p) = std::env::var_os("CLBSYNC_TEST_KUBECONFIG") {
        return p.into();
    }
    if let Some(dir) = std::env::var_os("CLBSYNC_KUBE_TESTBED") {
        return PathBuf::from(dir).join("kubeconfig");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/kube-testbed/kubeconfig")
}

pub async fn client() -> Result<Client> {
    let path = kubeconfig_path();
    let file = Kubeconfig::read_from(&path)
        .with_context(|| format!("reading {} (run testbed/kube-apiserver.sh start)", path.display()))?;
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

/// Creates the fleet's namespace, Deployments and pods unless a previous run did. Returns the seconds spent
/// seeding (0 when reused).
pub async fn seed(client: &Client, fleet: &Fleet) -> Result<f64> {
    let ns_name = fleet.namespace();
    let marker = format!("{}x{}", fleet.deployments(), fleet.pods_per_deployment);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if let Some(ns) = namespaces.get_opt(&ns_name).await? {
        let seeded = ns.metadata.annotations.as_ref().and_then(|a| a.get(SEEDED));
        if seeded == Some(&marker) {
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns_name);
            let n = pods.list_metadata(&ListParams::default()).await?.items.len();
            if n == fleet.pods() {
                return Ok(0.0);
            }
        }
        anyhow::bail!(
            "namespace {ns_name} exists but is not a complete seed (marker {seeded:?}); a bare kube-apiserver cannot delete namespaces: \
             restart the testbed (testbed/kube-apiserver.sh stop && start) or pick another testbed"
        );
    }
    let started = Instant::now();
    let ns =
        Namespace { metadata: ObjectMeta { name: Some(ns_name.clone()), ..Default::default() }, ..Default::default() };
    namespaces.create(&PostParams::default(), &ns).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns_name);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns_name);
    stream::iter(0..fleet.deployments())
        .map(|d| {
            let deployments = deployments.clone();
            async move { deployments.create(&PostParams::default(), &deployment(&Fleet::deployment_name(d))).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .context("creating deployments")?;
    let all = (0..fleet.deployments()).flat_map(|d| (0..fleet.pods_per_deployment).map(move |k| (d, k)));
    stream::iter(all)
        .map(|(d, k)| {
            let pods = pods.clone();
            let ip = fleet.pod_ip(d, k).to_string();
            async move {
                let app = Fleet::deployment_name(d);
                let name = format!("{app}-{k:03}");
                pods.create(&PostParams::default(), &pod(&name, &app)).await?;
                let status = json!({"status": {
                    "phase": "Running",
                    "conditions": [
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                        {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                    ],
                    "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.0.10", "qosClass": "Burstable",
                    "startTime": "2025-01-01T00:00:00Z",
                    "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "started": true,
                        "image": "registry.example/web:1.2.3", "imageID": "registry.example/web@sha256:0123456789abcdef",
                        "containerID": "containerd://0123456789abcdef0123456789abcdef",
                        "state": {"running": {"startedAt": "2025-01-01T00:00:00Z"}}}],
                }});
                pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await
            }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await
        .context("creating pods")?;
    let mark = json!({"metadata": {"annotations": {SEEDED: marker}}});
    namespaces.patch(&ns_name, &PatchParams::default(), &Patch::Merge(mark)).await?;
    Ok(started.elapsed().as_secs_f64())
}

fn deployment(name: &str) -> Deployment {
    let labels = BTreeMap::from([("app".to_string(), name.to_string())]);
    Deployment {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            selector: LabelSelector { match_labels: Some(labels.clone()), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(labels), ..Default::default() }),
                spec: Some(PodSpec { containers: vec![container()], ..Default::default() }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

fn container() -> Container {
    Container { name: "app".into(), image: Some("registry.example/web:1".into()), ..Default::default() }
}

/// A pod shaped like a typical workload's (probe, resources, env, a volume, annotations), so decoding costs
/// are realistic; the API server adds its defaults and managedFields on top.
fn pod(name: &str, app: &str) -> Pod {
    let spec = json!({
        "nodeName": "node-1",
        "containers": [{
            "name": "app",
            "image": "registry.example/web:1.2.3",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
            "env": (0..6).map(|i| json!({"name": format!("SETTING_{i}"), "value": format!("value-{i}-of-a-typical-length")})).collect::<Vec<_>>(),
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 5},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/web"}],
        }],
        "volumes": [{"name": "config", "emptyDir": {}}],
    });
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(BTreeMap::from([
                ("app".to_string(), app.to_string()),
                ("pod-template-hash".to_string(), "7d9f8c6b5".to_string()),
                ("team".to_string(), "shop".to_string()),
            ])),
            annotations: Some(BTreeMap::from([(
                "kubectl.kubernetes.io/restartedAt".to_string(),
                "2025-01-01T00:00:00Z".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(serde_json::from_value::<PodSpec>(spec).expect("valid pod spec")),
        status: None,
    }
}

/// `apiserver_request_total` summed per (verb, resource), from the API server's `/metrics`.
pub async fn request_counts(client: &Client) -> Result<BTreeMap<(String, String), u64>> {
    let req = http::Request::get("/metrics").body(Vec::new())?;
    let text = client.request_text(req).await.context("reading kube-apiserver /metrics")?;
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let label = |k: &str| {
            labels.split(&format!("{k}=\"")).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("").to_string()
        };
        if !label("subresource").is_empty() {
            continue;
        }
        let n: f64 = value.parse().unwrap_or(0.0);
        *out.entry((label("verb"), label("resource"))).or_insert(0) += n as u64;
    }
    Ok(out)
}
