//! The request shape of `KubeCluster` against a scripted HTTP server (wiremock): paging with `limit` and
//! `continue`, the single restart on 410 Gone (a real server only expires continue tokens after minutes), one
//! pod list per shared selector, and server errors that never turn into zero pods. Each mock fails the test
//! when it is not called exactly as often as expected.

use clbsync::desired::kube::KubeCluster;
use clbsync::desired::{Cluster, Error, list_all};
use clbsync::rules::{PodQuery, PodSource};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PODS: &str = "/api/v1/namespaces/shop/pods";

fn cluster(server: &MockServer) -> KubeCluster {
    let config = kube::Config::new(server.uri().parse().expect("wiremock gives a valid URI"));
    KubeCluster::from_client(kube::Client::try_from(config).expect("client for http://127.0.0.1"))
}

fn deployment(name: &str) -> PodQuery {
    PodQuery { namespace: "shop".into(), source: PodSource::deployment(name) }
}

fn web_pods() -> PodQuery {
    PodQuery { namespace: "shop".into(), source: PodSource::Selector([("app".into(), "web".into())].into()) }
}

fn page(names: &[&str], continue_: Option<&str>) -> ResponseTemplate {
    let items: Vec<Value> = names.iter().map(|n| json!({"metadata": {"name": n}})).collect();
    let mut metadata = json!({"resourceVersion": "7"});
    if let Some(c) = continue_ {
        metadata["continue"] = json!(c);
    }
    ResponseTemplate::new(200)
        .set_body_json(json!({"apiVersion": "v1", "kind": "PodList", "metadata": metadata, "items": items}))
}

fn status(code: u16, reason: &str) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({
        "apiVersion": "v1", "kind": "Status", "status": "Failure", "code": code, "reason": reason,
        "message": format!("{reason} (scripted)"),
    }))
}

fn deployment_body(name: &str, app: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "shop"},
        "spec": {"selector": {"matchLabels": {"app": app}}, "template": {}},
    }))
}

fn names(pods: &[clbsync::model::Pod]) -> Vec<&str> {
    pods.iter().map(|p| p.name.as_str()).collect()
}

#[tokio::test]
async fn pod_list_sends_selector_and_limit_and_follows_continue_tokens() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(PODS))
        .and(query_param("labelSelector", "app=web"))
        .and(query_param("limit", "2"))
        .and(query_param_is_missing("continue"))
        .respond_with(page(&["a", "b"], Some("t1")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(PODS))
        .and(query_param("continue", "t1"))
        .and(query_param("limit", "2"))
        .respond_with(page(&["c"], None))
        .expect(1)
        .mount(&server)
        .await;

    let pods = cluster(&server).with_page_size(2).pods(&web_pods()).await.unwrap();
    assert_eq!(names(&pods), ["a", "b", "c"]);
}

#[tokio::test]
async fn expired_continue_token_restarts_the_list_once() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(PODS))
        .and(query_param_is_missing("continue"))
        .respond_with(page(&["a"], Some("t1")))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(PODS))
        .and(query_param("continue", "t1"))
        .respond_with(status(410, "Expired"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(PODS))
        .and(query_param_is_missing("continue"))
        .respond_with(page(&["a", "b"], None))
        .expect(1)
        .mount(&server)
        .await;

    let pods = cluster(&server).pods(&web_pods()).await.unwrap();
    assert_eq!(names(&pods), ["a", "b"]);
}

#[tokio::test]
async fn a_second_expired_continue_token_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(PODS))
        .and(query_param_is_missing("continue"))
        .respond_with(page(&["a"], Some("t1")))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(PODS))
        .and(query_param("continue", "t1"))
        .respond_with(status(410, "Expired"))
        .expect(2)
        .mount(&server)
        .await;

    let err = cluster(&server).pods(&web_pods()).await.unwrap_err();
    assert!(matches!(&err, Error::Api { error: kube::Error::Api(s), .. } if s.code == 410), "{err:?}");
}

#[tokio::test]
async fn deployments_sharing_a_selector_list_their_pods_once() {
    let server = MockServer::start().await;
    for name in ["blue", "green"] {
        Mock::given(method("GET"))
            .and(path(format!("/apis/apps/v1/namespaces/shop/deployments/{name}")))
            .respond_with(deployment_body(name, "bg"))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(PODS))
        .and(query_param("labelSelector", "app=bg"))
        .respond_with(page(&["bg-0"], None))
        .expect(1)
        .mount(&server)
        .await;

    let results = list_all(&cluster(&server), [deployment("blue"), deployment("green")], 2).await;
    for (q, pods) in results {
        assert_eq!(names(&pods.unwrap_or_else(|e| panic!("{q}: {e}")).pods), ["bg-0"]);
    }
}

#[tokio::test]
async fn a_server_error_is_an_error_never_zero_pods() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path(PODS)).respond_with(status(500, "InternalError")).mount(&server).await;

    let err = cluster(&server).pods(&web_pods()).await.unwrap_err();
    assert!(matches!(&err, Error::Api { what, .. } if what.contains("list pods in namespace shop")), "{err:?}");
}

#[tokio::test]
async fn zero_pods_in_a_namespace_that_exists_is_zero_pods() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path(PODS)).respond_with(page(&[], None)).expect(1).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/namespaces/shop"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}})),
        )
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(cluster(&server).pods(&web_pods()).await.unwrap(), []);
}

#[tokio::test]
async fn zero_pods_without_permission_to_read_namespaces_is_zero_pods() {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path(PODS)).respond_with(page(&[], None)).expect(1).mount(&server).await;
    Mock::given(method("GET"))
        .and(path("/api/v1/namespaces/shop"))
        .respond_with(status(403, "Forbidden"))
        .expect(1)
        .mount(&server)
        .await;

    assert_eq!(cluster(&server).pods(&web_pods()).await.unwrap(), []);
}

/// Issue 29: a `service:` query GETs the Service once, lists the pods by its `spec.selector` (one list shared with a
/// `selector:` rule of the same labels) and carries the port's `targetPort`; a 500 on the Service is an error, never
/// zero pods.
#[tokio::test]
async fn a_service_query_gets_the_service_once_and_lists_pods_by_its_selector() {
    use clbsync::desired::select;
    use clbsync::rules::{PortRef, ServicePort};
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/namespaces/shop/services/web"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "serve"}]},
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/api/v1/namespaces/shop/services/down"))
        .respond_with(status(500, "InternalError"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(PODS))
        .and(query_param("labelSelector", "app=web"))
        .respond_with(page(&["web-0"], None))
        .expect(1)
        .mount(&server)
        .await;

    let cluster = cluster(&server);
    let service = |name: &str| PodQuery {
        namespace: "shop".into(),
        source: PodSource::Service(ServicePort { name: name.into(), port: PortRef::Name("http".into()) }),
    };
    let selected = select(&cluster, &service("web")).await.unwrap();
    assert_eq!(names(&selected.pods), ["web-0"]);
    assert_eq!(selected.target_port, Some(PortRef::Name("serve".into())));
    assert_eq!(names(&select(&cluster, &web_pods()).await.unwrap().pods), ["web-0"], "the same list");
    let err = select(&cluster, &service("down")).await.unwrap_err();
    assert!(matches!(err, Error::Api { .. }), "{err:?}");
}

/// Issue 27 #4: the GET that gives a workload's selector also gives its `spec.replicas`; a DaemonSet has none, nor
/// does a `selector:` backend, and none of them costs another request.
#[tokio::test]
async fn the_selectors_get_carries_the_workloads_replicas_and_a_daemonset_has_none() {
    use clbsync::rules::{Workload, WorkloadKind};
    let server = MockServer::start().await;
    let body = |kind: &str, replicas: Option<u32>| {
        let mut spec = json!({"selector": {"matchLabels": {"app": "web"}}, "template": {}});
        if let Some(n) = replicas {
            spec["replicas"] = json!(n);
        }
        ResponseTemplate::new(200).set_body_json(json!({
            "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "web", "namespace": "shop"}, "spec": spec,
        }))
    };
    for (resource, kind, replicas) in [("deployments", "Deployment", Some(10)), ("daemonsets", "DaemonSet", None)] {
        Mock::given(method("GET"))
            .and(path(format!("/apis/apps/v1/namespaces/shop/{resource}/web")))
            .respond_with(body(kind, replicas))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(PODS))
        .and(query_param("labelSelector", "app=web"))
        .respond_with(page(&["web-0", "web-1", "web-2"], None))
        .expect(1)
        .mount(&server)
        .await;

    let cluster = cluster(&server);
    let listed = cluster.listed(&deployment("web")).await.expect("listed");
    assert_eq!((listed.pods.len(), listed.replicas), (3, Some(10)));
    let daemonset = PodSource::Workload(Workload { kind: WorkloadKind::DaemonSet, name: "web".into() });
    let listed = cluster.listed(&PodQuery { namespace: "shop".into(), source: daemonset }).await.expect("listed");
    assert_eq!((listed.pods.len(), listed.replicas), (3, None));
    let listed = cluster.listed(&web_pods()).await.expect("listed");
    assert_eq!((listed.pods.len(), listed.replicas), (3, None));
}
