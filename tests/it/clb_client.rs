//! `ClbClient` against a scripted CLB on 127.0.0.1 (wiremock): signing of the bytes actually sent, the envelope
//! and its nulls, per-call limits, the per-binding fallback, task polling, retries, partial failures, write
//! timeouts and pacing.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clbsync::clb::client::{ClbClient, ClientConfig};
use clbsync::clb::credentials::Credentials;
use clbsync::clb::http::Endpoint;
use clbsync::clb::retry::RetryPolicy;
use clbsync::clb::tc3::{self, Signable};
use clbsync::clb::{Clb, Error};
use clbsync::model::{Binding, Target};
use clbsync::model::{Change, TargetKind};
use clbsync::stop::{Fence, Reason, Stop};
use serde_json::{Value, json};
use wiremock::matchers::{header, method};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod mutations;
mod retries;

const LB: &str = "lb-12345678";

fn creds() -> Credentials {
    Credentials::new("AKIDtest", "testSecretKey", None)
}

fn config(server: &MockServer, credentials: Credentials) -> ClientConfig {
    ClientConfig {
        endpoint: Endpoint::Url(server.uri()),
        rate_limit_per_action: 0,
        request_timeout: Duration::from_secs(5),
        task_timeout: Duration::from_secs(5),
        task_poll_interval: Duration::from_millis(5),
        retry: RetryPolicy {
            max_attempts: 4,
            base: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_total: Duration::from_secs(10),
        },
        ..ClientConfig::new("ap-guangzhou", credentials)
    }
}

fn client(server: &MockServer) -> ClbClient {
    ClbClient::new(config(server, creds())).expect("loopback http endpoint is allowed")
}

fn respond(fields: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "Response": fields }))
}

fn api_error(code: &str) -> ResponseTemplate {
    respond(json!({"Error": {"Code": code, "Message": format!("scripted {code}")}, "RequestId": "req-err"}))
}

/// Answers with `fields` plus a fresh `RequestId` (`<prefix>-<n>`) each time, like an accepted async call.
fn accepted(prefix: &'static str, fields: Value) -> impl Respond {
    let n = AtomicUsize::new(0);
    move |_: &Request| {
        let mut body = fields.clone();
        body["RequestId"] = json!(format!("{prefix}-{}", n.fetch_add(1, Ordering::SeqCst)));
        respond(body)
    }
}

async fn on(server: &MockServer, action: &str, response: impl Respond + 'static) {
    Mock::given(method("POST")).and(header("X-TC-Action", action)).respond_with(response).mount(server).await;
}

async fn tasks_succeed(server: &MockServer) {
    on(server, "DescribeTaskStatus", respond(json!({"Status": 0, "LoadBalancerIds": null, "RequestId": "t"}))).await;
}

/// JSON bodies of the requests received for `action`, in order.
async fn sent(server: &MockServer, action: &str) -> Vec<Value> {
    let requests = server.received_requests().await.expect("request recording is on");
    requests
        .iter()
        .filter(|r| r.headers.get("x-tc-action").and_then(|v| v.to_str().ok()) == Some(action))
        .map(|r| serde_json::from_slice(&r.body).expect("the client sends JSON"))
        .collect()
}

fn change(listener: &str, location: Option<&str>, n: u32, weight: u8) -> Change {
    Change {
        binding: Binding { lb: LB.into(), listener: listener.into(), location: location.map(String::from) },
        target: Target::new(IpAddr::from([10, 0, (n >> 8) as u8, n as u8]), 8080),
        weight,
        tag: None,
    }
}

fn lens(bodies: &[Value], field: &str) -> Vec<usize> {
    bodies.iter().map(|b| b[field].as_array().map_or(0, Vec::len)).collect()
}

fn codes(outcomes: &[Result<(), clbsync::model::Failure>]) -> Vec<String> {
    outcomes.iter().map(|o| o.as_ref().err().map_or("ok".to_string(), |f| f.code.clone())).collect()
}

/// Re-verifies the signature from the received bytes and `Host` header, like the real API gateway.
fn verifying(credentials: Credentials) -> impl Respond {
    move |req: &Request| {
        let h = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let ts: i64 = h("x-tc-timestamp").parse().unwrap_or(-1);
        let host = h("host");
        let expected = tc3::authorization(&Signable::clb_post(&host, &req.body), &credentials, ts);
        let ok = h("authorization") == expected
            && h("content-type") == "application/json"
            && h("x-tc-version") == "2018-03-17"
            && h("x-tc-region") == "ap-guangzhou"
            && h("x-tc-language") == "en-US"
            && h("user-agent").starts_with("clbsync/")
            && h("x-tc-token") == credentials.token.as_ref().map_or("", |t| t.expose());
        if ok {
            respond(json!({"Listeners": [], "RequestId": "req-ok"}))
        } else {
            api_error("AuthFailure.SignatureFailure")
        }
    }
}

#[tokio::test]
async fn signs_byte_identically_what_it_sends_including_host_port() {
    for token in [None, Some("session-token".to_string())] {
        let server = MockServer::start().await;
        let credentials = Credentials::new("AKIDtest", "testSecretKey", token);
        on(&server, "DescribeTargets", verifying(credentials.clone())).await;
        let clb = ClbClient::new(config(&server, credentials)).unwrap();
        assert_eq!(clb.host(), format!("127.0.0.1:{}", server.address().port()));
        let got = clb.targets(LB, &["lbl-1".into()]).await;
        assert!(got.is_ok(), "{got:?}");
        let requests = server.received_requests().await.unwrap();
        assert_eq!(requests[0].headers.get("host").unwrap(), clb.host());
    }
}

#[tokio::test]
async fn auth_failures_name_the_credential_variables() {
    let server = MockServer::start().await;
    on(&server, "DescribeListeners", api_error("AuthFailure.SecretIdNotFound")).await;
    let env = |name: &str| match name {
        "TENCENTCLOUD_SECRET_ID" => Some("AKIDx".to_string()),
        "TENCENTCLOUD_SECRET_KEY" => Some("keyvalue".to_string()),
        _ => None,
    };
    let clb =
        ClbClient::new(config(&server, clbsync::clb::credentials::env::from_lookup(env).unwrap().unwrap())).unwrap();
    let err = clb.listeners(LB).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY"), "{msg}");
    assert!(!msg.contains("keyvalue"), "{msg}");
    assert_eq!(err.request_id(), Some("req-err"));
}

#[tokio::test]
async fn envelope_nulls_are_read_as_empty() {
    let server = MockServer::start().await;
    let backend = |ty: &str, ip: Value| {
        json!({"Type": ty, "InstanceId": "ins-1", "Port": 8080, "Weight": 7, "PublicIpAddresses": null,
               "PrivateIpAddresses": ip, "InstanceName": null, "EniId": null, "RegisteredTime": "2024-05-01 10:00:00"})
    };
    on(&server, "DescribeTargets", respond(json!({"Listeners": [
        {"ListenerId": "lbl-l4", "Protocol": "TCP", "Port": 80, "Rules": null,
         "Targets": [backend("ENI", json!(["10.0.0.11"])), backend("eni", json!(["10.0.0.12"])), backend("ENI", json!(null))]},
        {"ListenerId": "lbl-l7", "Protocol": "HTTP", "Port": 8080, "Targets": null,
         "Rules": [{"LocationId": "loc-1", "Domain": "a.example.com", "Url": "/", "FunctionTargets": null,
                    "Targets": [backend("cvm", json!(["172.16.0.5"])), backend("ENI", json!(["not-an-ip"]))]},
                   {"LocationId": "loc-2", "Domain": null, "Url": null, "Targets": null}]}],
        "RequestId": "r1"}))).await;
    on(
        &server,
        "DescribeListeners",
        respond(json!({"TotalCount": 2, "Listeners": [
        {"ListenerId": "lbl-l4", "ListenerName": null, "Protocol": "TCP", "Port": 80, "HealthCheck": null,
         "TargetType": "NODE", "Rules": null},
        {"ListenerId": "lbl-l7", "Protocol": "HTTP", "Port": 8080, "TargetType": "NODE",
         "Rules": [{"LocationId": "loc-1", "Domain": "a.example.com", "Url": "/", "TargetType": "NODE"}]}],
        "RequestId": "r2"})),
    )
    .await;
    on(
        &server,
        "DescribeLoadBalancers",
        respond(json!({"TotalCount": 2, "LoadBalancerSet": [
        {"LoadBalancerId": LB, "LoadBalancerName": "web", "Forward": 1},
        {"LoadBalancerId": "lb-old", "LoadBalancerName": "classic", "Forward": 0}], "RequestId": "r3"})),
    )
    .await;
    let clb = client(&server);

    let targets = clb.targets(LB, &["lbl-l4".into(), "lbl-l7".into()]).await.unwrap();
    let shown: Vec<(String, String, u8, TargetKind)> =
        targets.iter().map(|t| (t.binding.to_string(), t.target.to_string(), t.weight, t.kind.clone())).collect();
    let cvm = TargetKind::Instance { kind: "cvm".into(), instance_id: "ins-1".into() };
    assert_eq!(
        shown,
        [
            (format!("{LB}/lbl-l4"), "10.0.0.11:8080".into(), 7, TargetKind::Ip),
            (format!("{LB}/lbl-l4"), "10.0.0.12:8080".into(), 7, TargetKind::Ip),
            (format!("{LB}/lbl-l7/loc-1"), "172.16.0.5:8080".into(), 7, cvm),
        ]
    );
    let listeners = clb.listeners(LB).await.unwrap();
    assert!(listeners[0].rules.is_empty());
    assert_eq!(listeners[1].rules[0].location_id, "loc-1");
    let lbs = clb.load_balancers(&[LB.into(), "lb-old".into()]).await.unwrap();
    assert_eq!(lbs.iter().map(|l| l.classic).collect::<Vec<_>>(), [false, true]);
}

#[tokio::test]
async fn reads_split_ids_at_20_and_never_ask_for_all_listeners() {
    let server = MockServer::start().await;
    on(&server, "DescribeTargets", respond(json!({"Listeners": null, "RequestId": "r"}))).await;
    on(&server, "DescribeLoadBalancers", respond(json!({"LoadBalancerSet": null, "RequestId": "r"}))).await;
    let clb = client(&server);
    let ids: Vec<String> = (0..45).map(|i| format!("lbl-{i}")).collect();
    assert!(clb.targets(LB, &ids).await.unwrap().is_empty());
    assert!(clb.targets(LB, &[]).await.unwrap().is_empty());
    // The chunks go out concurrently: the order they arrive in is not the property.
    let mut targets = lens(&sent(&server, "DescribeTargets").await, "ListenerIds");
    targets.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(targets, [20, 20, 5]);
    clb.load_balancers(&ids).await.unwrap();
    let mut lbs = lens(&sent(&server, "DescribeLoadBalancers").await, "LoadBalancerIds");
    lbs.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(lbs, [20, 20, 5]);
}

#[tokio::test]
async fn calls_are_paced_per_action() {
    let server = MockServer::start().await;
    on(&server, "DescribeListeners", respond(json!({"Listeners": [], "RequestId": "r"}))).await;
    let clb = ClbClient::new(ClientConfig { rate_limit_per_action: 10, ..config(&server, creds()) }).unwrap();
    let start = std::time::Instant::now();
    for _ in 0..10 {
        clb.listeners(LB).await.unwrap();
    }
    // A burst within the limit goes at once (issue 8: no idle spacing)...
    assert!(start.elapsed() < Duration::from_millis(900), "{:?}", start.elapsed());
    // ...and the 11th call waits until the first one's answer is a second old.
    clb.listeners(LB).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1), "{:?}", start.elapsed());
    assert_eq!(clb.stats()["DescribeListeners"].requests, 11);
}

#[test]
fn plain_http_off_loopback_is_refused() {
    let cfg = ClientConfig {
        endpoint: Endpoint::Url("http://10.1.2.3:8080".into()),
        ..ClientConfig::new("ap-guangzhou", creds())
    };
    let err = ClbClient::new(cfg).err().expect("plain http to a non-loopback host is refused");
    assert!(err.to_string().contains("TLS is required"), "{err}");
}
