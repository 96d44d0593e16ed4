//! End-to-end tests of the emulator over HTTP with a Rust TC3 client: protocol errors, limits,
//! task lifecycle, LB lock, quota, fault injection, admin API and scale.

mod common;

use clb_emulator::{
    AfterApplyKind, BusyFault, Config, DropFault, ErrorAfterApplyFault, ErrorFault, ErrorKind, Faults, GarbageFault,
    GarbageMode, State, TaskFailureFault,
};
use common::{Client, start_example, start_with};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const LB: &str = "lb-web00001";
const L4: &str = "lbl-tcp00080";
const L7: &str = "lbl-http8080";
const LOC: &str = "loc-api00001";

fn reg(ips: &[&str], port: u16) -> Value {
    json!({"LoadBalancerId": LB, "ListenerId": L4,
           "Targets": ips.iter().map(|ip| json!({"EniIp": ip, "Port": port})).collect::<Vec<_>>()})
}

fn l4_ips(state: &State) -> Vec<(String, u16, u32)> {
    let lb = state.load_balancer(LB).unwrap();
    let l = lb.listeners.iter().find(|l| l.id == L4).unwrap();
    l.targets.iter().map(|t| (t.ip.clone(), t.port, t.weight)).collect()
}

#[tokio::test]
async fn protocol_errors() {
    let emu = start_example().await;
    let c = Client::new(&emu);
    let body = br#"{"LoadBalancerId": "lb-web00001"}"#.to_vec();
    let code = |raw: common::Raw| -> String {
        let v: Value = serde_json::from_slice(&raw.body).unwrap();
        assert_eq!(raw.status, 200);
        assert!(v["Response"]["RequestId"].is_string());
        v["Response"]["Error"]["Code"].as_str().unwrap_or("").to_string()
    };
    assert_eq!(code(c.send("DescribeListeners", body.clone(), &[]).await.unwrap()), "");
    assert_eq!(code(c.send("DescribeNothing", body.clone(), &[]).await.unwrap()), "InvalidAction");
    assert_eq!(
        code(c.send("DescribeListeners", body.clone(), &[("X-TC-Version", "2017-03-12")]).await.unwrap()),
        "NoSuchVersion"
    );
    assert_eq!(
        code(c.send("DescribeListeners", body.clone(), &[("X-TC-Region", "")]).await.unwrap()),
        "MissingParameter"
    );
    assert_eq!(
        code(c.send("DescribeListeners", body.clone(), &[("Authorization", "Bearer x")]).await.unwrap()),
        "AuthFailure.InvalidAuthorization"
    );
    // Signed Host differs from the received one.
    let raw = c
        .send(
            "DescribeListeners",
            body.clone(),
            &[("Authorization", &{
                let ts = c.now();
                clb_emulator::sign::authorization(
                    clb_emulator::DEFAULT_SECRET_ID,
                    clb_emulator::DEFAULT_SECRET_KEY,
                    "clb",
                    "clb.tencentcloudapi.com",
                    "application/json",
                    ts,
                    &body,
                )
            })],
        )
        .await
        .unwrap();
    assert_eq!(code(raw), "AuthFailure.SignatureFailure");
    // Content-Type different from the signed one: rejected.
    let raw = c
        .send("DescribeListeners", body.clone(), &[("Content-Type", "application/json; charset=utf-8")])
        .await
        .unwrap();
    assert_eq!(code(raw), "AuthFailure.SignatureFailure");
    let mut late = Client::new(&emu);
    late.ts_offset = -301;
    assert_eq!(late.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "AuthFailure.SignatureExpire");
    late.ts_offset = -200;
    assert_eq!(late.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "");
    emu.set_clock_offset(3600);
    assert_eq!(c.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "AuthFailure.SignatureExpire");
    emu.set_clock_offset(0);
    let mut wrong = Client::new(&emu);
    wrong.secret_key = "nope".into();
    assert_eq!(wrong.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "AuthFailure.SignatureFailure");
    wrong.secret_id = "AKIDnope".into();
    assert_eq!(wrong.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "AuthFailure.SecretIdNotFound");
    let mut tmp = Client::new(&emu);
    tmp.secret_id = "AKIDclbsyncTEMPORARY00000000000000".into();
    tmp.secret_key = "clbsyncTemporarySecretKey000000000".into();
    assert_eq!(tmp.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "AuthFailure.TokenFailure");
    tmp.token = Some("clbsync-session-token".into());
    assert_eq!(tmp.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "");
    // Body not JSON.
    assert_eq!(code(c.send("DescribeListeners", b"nope".to_vec(), &[]).await.unwrap()), "InvalidParameter.FormatError");
    assert_eq!(c.code("DescribeListeners", json!({"LoadBalancerId": LB, "Foo": 1})).await, "UnknownParameter");
    assert_eq!(c.code("DescribeListeners", json!({})).await, "MissingParameter");
    assert_eq!(c.code("DescribeListeners", json!({"LoadBalancerId": 1})).await, "InvalidParameter.FormatError");
    let calls = emu.calls();
    assert_eq!(calls.errors("AuthFailure.SignatureExpire"), 2);
    assert_eq!(calls.count("DescribeListeners"), calls.total() - 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn limits_and_validation() {
    let emu = start_example().await;
    let c = Client::new(&emu);
    let ips: Vec<String> = (0..21).map(|i| format!("10.9.0.{i}")).collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    assert_eq!(c.code("RegisterTargets", reg(&refs, 80)).await, "InvalidParameterValue.Length");
    assert_eq!(c.code("RegisterTargets", reg(&refs[..20], 80)).await, "");
    assert_eq!(c.code("RegisterTargets", reg(&[], 80)).await, "InvalidParameterValue.Length");
    assert_eq!(c.code("RegisterTargets", reg(&["not-an-ip"], 80)).await, "InvalidParameterValue");
    assert_eq!(c.code("RegisterTargets", reg(&["10.9.1.1"], 0)).await, "InvalidParameterValue.Range");
    let big: Vec<Value> = (0..501)
        .map(|i| json!({"ListenerId": L4, "EniIp": format!("10.8.{}.{}", i / 200, i % 200), "Port": 80}))
        .collect();
    assert_eq!(
        c.code("BatchRegisterTargets", json!({"LoadBalancerId": LB, "Targets": big})).await,
        "InvalidParameterValue.Length"
    );
    let rules: Vec<Value> = (0..11)
        .map(|r| json!({"ListenerId": L4, "Targets": (0..50).map(|i| json!({"EniIp": format!("10.7.{r}.{i}"), "Port": 80})).collect::<Vec<_>>()}))
        .collect();
    assert_eq!(
        c.code("BatchModifyTargetWeight", json!({"LoadBalancerId": LB, "ModifyList": rules})).await,
        "InvalidParameterValue.Length"
    );
    let ids: Vec<String> = (0..31).map(|i| format!("lb-{i}")).collect();
    assert_eq!(c.code("DescribeTargetHealth", json!({"LoadBalancerIds": ids})).await, "InvalidParameterValue.Length");
    assert_eq!(c.code("DescribeLoadBalancers", json!({"Limit": 101})).await, "InvalidParameterValue.Range");
    // CVM registration by InstanceId (known from the seed) and unknown instance.
    let cvm =
        json!({"LoadBalancerId": LB, "ListenerId": L4, "Targets": [{"InstanceId": "ins-node0001", "Port": 9000}]});
    assert_eq!(c.code("RegisterTargets", cvm).await, "");
    let bad = json!({"LoadBalancerId": LB, "ListenerId": L4, "Targets": [{"InstanceId": "ins-unknown", "Port": 9000}]});
    assert_eq!(c.code("RegisterTargets", bad).await, "InvalidParameter");
    let both = json!({"LoadBalancerId": LB, "ListenerId": L4, "Targets": [{"InstanceId": "ins-node0001", "EniIp": "1.1.1.1", "Port": 9000}]});
    assert_eq!(c.code("RegisterTargets", both).await, "InvalidParameter");
    assert!(l4_ips(&emu.state()).contains(&("172.16.0.5".into(), 9000, 10)));
}

#[tokio::test]
async fn task_lifecycle_lock_and_apply_at_completion() {
    let emu = start_with(Config {
        state: common::example_state(),
        rate_limit_per_action: 0,
        task_delay: Duration::from_millis(1000),
        ..Config::default()
    })
    .await;
    let c = Client::new(&emu);
    let r = c.ok("RegisterTargets", reg(&["10.5.0.1"], 80)).await;
    let task = r["RequestId"].as_str().unwrap().to_string();
    let st = c.ok("DescribeTaskStatus", json!({"TaskId": task})).await;
    assert_eq!(st["Status"], 2);
    assert_eq!(st["LoadBalancerIds"], json!([LB]));
    assert!(!l4_ips(&emu.state()).iter().any(|t| t.0 == "10.5.0.1"), "applied at completion, not before");
    // LB locked: every mutation on it is refused; reads work.
    assert_eq!(c.code("RegisterTargets", reg(&["10.5.0.2"], 80)).await, "FailedOperation.ResourceInOperating");
    let b = json!({"LoadBalancerId": LB, "Targets": [{"ListenerId": L4, "EniIp": "10.5.0.3", "Port": 80}]});
    assert_eq!(c.code("BatchRegisterTargets", b).await, "FailedOperation.ResourceInOperating");
    assert_eq!(c.code("DescribeTargets", json!({"LoadBalancerId": LB})).await, "");
    assert_eq!(emu.task(&task).unwrap().status, 2);
    let st = c.wait_task(&task).await;
    assert_eq!(st["Status"], 0);
    assert!(st["Message"].is_null());
    assert!(l4_ips(&emu.state()).contains(&("10.5.0.1".into(), 80, 10)));
    let r = c.ok("RegisterTargets", reg(&["10.5.0.2"], 80)).await;
    assert_eq!(c.wait_task(r["RequestId"].as_str().unwrap()).await["Status"], 0);
    // A listener deleted while its task runs: the task fails, nothing applied.
    let r = c.ok("BatchRegisterTargets", json!({"LoadBalancerId": LB, "Targets": [{"ListenerId": L7, "LocationId": LOC, "EniIp": "10.5.1.1", "Port": 80}]})).await;
    assert!(emu.delete_listener(LB, L7));
    assert!(!emu.delete_listener(LB, L7));
    let st = c.wait_task(r["RequestId"].as_str().unwrap()).await;
    assert_eq!(st["Status"], 1);
    assert!(st["Message"].as_str().unwrap().contains(L7));
    assert_eq!(c.code("DescribeTaskStatus", json!({})).await, "MissingParameter");
    emu.shutdown().await;
}

#[tokio::test]
async fn duplicates_quota_and_partial_failure() {
    let emu = start_with(Config {
        state: common::example_state(),
        rate_limit_per_action: 0,
        backend_quota: 4,
        ..Config::default()
    })
    .await;
    let c = Client::new(&emu);
    // The L4 listener holds 2 seeded targets; quota 4.
    assert_eq!(c.code("RegisterTargets", reg(&["10.6.0.1", "10.6.0.2", "10.6.0.3"], 80)).await, "LimitExceeded");
    assert_eq!(c.code("RegisterTargets", reg(&["10.6.0.1", "10.6.0.1"], 80)).await, "InvalidParameterValue.Duplicate");
    assert_eq!(c.code("RegisterTargets", reg(&["10.6.0.1"], 80)).await, "");
    assert_eq!(c.code("RegisterTargets", reg(&["10.6.0.1"], 80)).await, "InvalidParameterValue.Duplicate");
    let dereg = json!({"LoadBalancerId": LB, "ListenerId": L4, "Targets": [{"EniIp": "10.6.0.9", "Port": 80}]});
    assert_eq!(c.code("DeregisterTargets", dereg).await, "InvalidParameter");
    // Batch: L4 exceeds quota (2 more when 1 slot left) -> fails; L7 applied.
    let b = json!({"LoadBalancerId": LB, "Targets": [
        {"ListenerId": L4, "EniIp": "10.6.1.1", "Port": 80},
        {"ListenerId": L4, "EniIp": "10.6.1.2", "Port": 80},
        {"ListenerId": L7, "LocationId": LOC, "EniIp": "10.6.1.1", "Port": 80, "Weight": 7},
        {"ListenerId": L7, "EniIp": "10.6.1.3", "Port": 80}]});
    let r = c.ok("BatchRegisterTargets", b).await;
    assert_eq!(r["FailListenerIdSet"], json!([L4, L7]), "L7 entry without LocationId fails the L7 listener");
    let b = json!({"LoadBalancerId": LB, "Targets": [
        {"ListenerId": L4, "EniIp": "10.6.1.1", "Port": 80},
        {"ListenerId": L4, "EniIp": "10.6.1.2", "Port": 80},
        {"ListenerId": L7, "LocationId": LOC, "EniIp": "10.6.1.1", "Port": 80, "Weight": 7}]});
    let r = c.ok("BatchRegisterTargets", b).await;
    assert_eq!(r["FailListenerIdSet"], json!([L4]));
    assert!(r["Message"].as_str().unwrap().contains("quota"));
    let st = emu.state();
    let rule = &st.load_balancer(LB).unwrap().listeners.iter().find(|l| l.id == L7).unwrap().rules[0];
    assert!(rule.targets.iter().any(|t| t.ip == "10.6.1.1" && t.weight == 7));
    assert!(!l4_ips(&st).iter().any(|t| t.0 == "10.6.1.1"));
    let dup = json!({"LoadBalancerId": LB, "Targets": [
        {"ListenerId": L4, "EniIp": "10.6.2.1", "Port": 80}, {"ListenerId": L4, "EniIp": "10.6.2.1", "Port": 80}]});
    assert_eq!(c.code("BatchRegisterTargets", dup).await, "InvalidParameterValue.Duplicate");
    // Weight changes.
    let w = json!({"LoadBalancerId": LB, "ModifyList": [{"ListenerId": L4, "Weight": 0, "Targets": [{"EniIp": "10.6.0.1", "Port": 80}]}]});
    assert_eq!(c.code("BatchModifyTargetWeight", w).await, "");
    assert!(l4_ips(&emu.state()).contains(&("10.6.0.1".into(), 80, 0)));
    let w = json!({"LoadBalancerId": LB, "ModifyList": [{"ListenerId": L4, "Targets": [{"EniIp": "10.6.0.77", "Port": 80}]}]});
    assert_eq!(c.code("BatchModifyTargetWeight", w).await, "InvalidParameter");
}

fn l4_tags(state: &State) -> Vec<(String, String)> {
    let lb = state.load_balancer(LB).unwrap();
    let l = lb.listeners.iter().find(|l| l.id == L4).unwrap();
    l.targets.iter().map(|t| (t.ip.clone(), t.tag.clone())).collect()
}

#[tokio::test]
async fn target_tags_are_stored_on_register_and_changed_synchronously_by_batch_modify_target_tag() {
    let emu = start_with(Config {
        state: common::example_state(),
        rate_limit_per_action: 0,
        task_delay: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let c = Client::new(&emu);
    let body = json!({"LoadBalancerId": LB, "ListenerId": L4, "Targets": [{"EniIp": "10.4.2.1", "Port": 80, "Tag": "clbsync:a"}]});
    let r = c.ok("RegisterTargets", body).await;
    c.wait_task(r["RequestId"].as_str().unwrap()).await;
    assert!(l4_tags(&emu.state()).contains(&("10.4.2.1".into(), "clbsync:a".into())));
    assert!(l4_tags(&emu.state()).contains(&("172.16.0.5".into(), "by-hand".into())), "seeded tag");
    let tag = |ip: &str, tag: &str| json!({"EniIp": ip, "Port": 80, "Tag": tag});
    // One unbound target: the whole call fails, nothing changes.
    let bad = json!({"LoadBalancerId": LB, "ModifyList": [{"ListenerId": L4, "Targets": [tag("10.4.2.1", "clbsync:b"), tag("10.4.2.9", "x")]}]});
    assert_eq!(c.code("BatchModifyTargetTag", bad).await, "InvalidParameter");
    assert!(l4_tags(&emu.state()).contains(&("10.4.2.1".into(), "clbsync:a".into())));
    // Applied before the answer, no task, no lock: the next mutation is accepted at once.
    let good =
        json!({"LoadBalancerId": LB, "ModifyList": [{"ListenerId": L4, "Targets": [tag("10.4.2.1", "clbsync:b")]}]});
    let r = c.ok("BatchModifyTargetTag", good).await;
    assert!(l4_tags(&emu.state()).contains(&("10.4.2.1".into(), "clbsync:b".into())));
    assert!(emu.task(r["RequestId"].as_str().unwrap()).is_none());
    c.ok("RegisterTargets", reg(&["10.4.2.2"], 80)).await;
    // ...but a running task locks the LB for it, like for every other mutation.
    let again =
        json!({"LoadBalancerId": LB, "ModifyList": [{"ListenerId": L4, "Targets": [tag("10.4.2.1", "clbsync:c")]}]});
    assert_eq!(c.code("BatchModifyTargetTag", again).await, "FailedOperation.ResourceInOperating");
    let r = c
        .ok("DescribeTargets", json!({"LoadBalancerId": LB, "Filters": [{"Name": "tag", "Values": ["clbsync:b"]}]}))
        .await;
    let tagged: Vec<&Value> =
        r["Listeners"].as_array().unwrap().iter().flat_map(|l| l["Targets"].as_array().into_iter().flatten()).collect();
    assert_eq!(tagged.len(), 1);
    assert_eq!(tagged[0]["Tag"], "clbsync:b");
    assert_eq!(emu.calls().mutating_succeeded(), 3);
    emu.shutdown().await;
}

/// (HealthStatus, HealthStatusDetail) of every target of the L4 listener and the L7 rule, by ip.
async fn health_of(c: &Client) -> std::collections::BTreeMap<String, (bool, String)> {
    let r = c.ok("DescribeTargetHealth", json!({"LoadBalancerIds": [LB], "ListenerIds": [L4, L7]})).await;
    let mut out = std::collections::BTreeMap::new();
    for l in r["LoadBalancers"][0]["Listeners"].as_array().unwrap() {
        for rule in l["Rules"].as_array().unwrap() {
            for t in rule["Targets"].as_array().unwrap() {
                assert_eq!(t["HealthStatusDetail"], t["HealthStatusDetial"]);
                let detail = t["HealthStatusDetail"].as_str().unwrap().to_string();
                out.insert(t["IP"].as_str().unwrap().to_string(), (t["HealthStatus"].as_bool().unwrap(), detail));
            }
        }
    }
    out
}

fn h(healthy: bool, detail: &str) -> (bool, String) {
    (healthy, detail.to_string())
}

#[tokio::test]
async fn health_checks_follow_clb_defaults_and_the_serving_flags() {
    let emu = start_example().await;
    assert_eq!(emu.health_config(), clb_emulator::HealthConfig::default());
    let c = Client::new(&emu);
    assert_eq!(health_of(&c).await["10.0.1.11"], h(true, "Alive"), "seeded targets are healthy");
    // Weight 0 is health-checked like any other weight.
    let body = json!({"LoadBalancerId": LB, "ListenerId": L4, "Targets": [{"EniIp": "10.4.3.1", "Port": 80, "Weight": 0}, {"EniIp": "10.4.3.2", "Port": 80}]});
    c.ok("RegisterTargets", body).await;
    let body = json!({"LoadBalancerId": LB, "ListenerId": L7, "LocationId": LOC, "Targets": [{"EniIp": "10.4.3.3", "Port": 80}]});
    c.ok("RegisterTargets", body).await;
    let hs = health_of(&c).await;
    for ip in ["10.4.3.1", "10.4.3.2", "10.4.3.3"] {
        assert_eq!(hs[ip], h(false, "Unknown"), "{ip}: a newly bound target is detecting");
    }
    // interval 5 s x healthy threshold 3 = 15 s (emulator time: no real waiting).
    emu.advance(Duration::from_secs(14));
    assert_eq!(health_of(&c).await["10.4.3.1"], h(false, "Unknown"));
    emu.advance(Duration::from_secs(1));
    let hs = health_of(&c).await;
    for ip in ["10.4.3.1", "10.4.3.2", "10.4.3.3", "10.0.1.11", "10.0.1.12"] {
        assert_eq!(hs[ip], h(true, "Alive"), "{ip}");
    }
    // The weight-0 pod stops serving at ~15 s: probes at 20, 25, 30 s fail, each known 2 s later.
    emu.set_serving("10.4.3.1", false);
    emu.advance(Duration::from_secs(16));
    assert_eq!(health_of(&c).await["10.4.3.1"], h(true, "Alive"), "still healthy before the third failed check");
    emu.advance(Duration::from_secs(2));
    let hs = health_of(&c).await;
    assert_eq!(hs["10.4.3.1"], h(false, "Dead"));
    assert_eq!(hs["10.4.3.2"], h(true, "Alive"));
    let info = emu.health();
    let t = info.iter().find(|t| t.ip == "10.4.3.1").unwrap();
    assert_eq!((t.weight, t.healthy, t.serving, t.location_id.as_deref()), (0, false, false, None));
    assert_eq!(info.iter().find(|t| t.ip == "10.4.3.3").unwrap().location_id.as_deref(), Some(LOC));
    let (status, body) = admin_raw(&emu, reqwest::Method::GET, "health", &[], "").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["config"]["interval_ms"], 5000);
    assert_eq!(v["serving"]["ips"]["10.4.3.1"], false);
    assert!(v["targets"].as_array().unwrap().iter().any(|t| t["ip"] == "10.4.3.1" && t["health"] == "Dead"));
    // Serving again (admin API): healthy after 3 successful checks.
    let (status, _) = admin_raw(
        &emu,
        reqwest::Method::POST,
        "serving",
        &[("content-type", "application/json")],
        r#"{"ips": {"10.4.3.1": true}}"#,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = admin_raw(
        &emu,
        reqwest::Method::POST,
        "serving",
        &[("content-type", "application/json")],
        r#"{"ips": {"not-an-ip": true}}"#,
    )
    .await;
    assert_eq!(status, 400);
    emu.advance(Duration::from_secs(16));
    assert_eq!(health_of(&c).await["10.4.3.1"], h(true, "Alive"));
    // Deregistered and registered again: detecting again.
    let body = json!({"LoadBalancerId": LB, "ListenerId": L4, "Targets": [{"EniIp": "10.4.3.2", "Port": 80}]});
    c.ok("DeregisterTargets", body.clone()).await;
    assert!(!health_of(&c).await.contains_key("10.4.3.2"));
    c.ok("RegisterTargets", body).await;
    assert_eq!(health_of(&c).await["10.4.3.2"], h(false, "Unknown"));
    // Instant mode (admin setting): health follows the serving flag at once.
    let (status, _) = admin_raw(
        &emu,
        reqwest::Method::POST,
        "settings",
        &[("content-type", "application/json")],
        r#"{"health_interval_ms": 0}"#,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(health_of(&c).await["10.4.3.2"], h(true, "Alive"));
    emu.set_serving_all(clb_emulator::Serving { default: false, ips: [("10.4.3.2".to_string(), true)].into() });
    let hs = health_of(&c).await;
    assert_eq!(hs["10.4.3.2"], h(true, "Alive"));
    assert_eq!(hs["10.0.1.11"], h(false, "Dead"), "only the listed IPs serve");
    emu.shutdown().await;
}

#[tokio::test]
async fn health_check_timing_scales_and_seeded_health_is_pinned() {
    let yaml = "load_balancers:\n  - id: lb-h\n    listeners:\n      - id: lbl-h\n        protocol: TCP\n        port: 80\n        targets:\n          - {ip: 10.0.0.1, port: 80, health: Close}\n          - {ip: 10.0.0.2, port: 80}\n";
    let emu = start_with(Config {
        state: State::from_yaml_str(yaml).unwrap(),
        rate_limit_per_action: 0,
        health: clb_emulator::HealthConfig::scaled_down(10),
        ..Config::default()
    })
    .await;
    assert_eq!(emu.health_config().time_to_healthy(), Duration::from_millis(1500));
    let c = Client::new(&emu);
    c.ok(
        "RegisterTargets",
        json!({"LoadBalancerId": "lb-h", "ListenerId": "lbl-h", "Targets": [{"EniIp": "10.0.0.3", "Port": 80}]}),
    )
    .await;
    emu.set_serving("10.0.0.1", false);
    let detail = |emu: &clb_emulator::Emulator, ip: &str| emu.health().into_iter().find(|t| t.ip == ip).unwrap().health;
    assert_eq!(detail(&emu, "10.0.0.3"), clb_emulator::HealthDetail::Unknown);
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert_eq!(detail(&emu, "10.0.0.3"), clb_emulator::HealthDetail::Alive, "healthy after 1.5 s at 1/10 scale");
    assert_eq!(detail(&emu, "10.0.0.1"), clb_emulator::HealthDetail::Close, "a seeded health pins the status");
    assert_eq!(detail(&emu, "10.0.0.2"), clb_emulator::HealthDetail::Alive);
    emu.shutdown().await;
}

async fn codes_for(seed: u64) -> Vec<String> {
    let faults = Faults {
        seed,
        errors: Some(ErrorFault { rate: 0.4, max: None, actions: vec![], kind: ErrorKind::InternalError }),
        ..Faults::default()
    };
    let emu =
        start_with(Config { state: common::example_state(), faults, rate_limit_per_action: 0, ..Config::default() })
            .await;
    let c = Client::new(&emu);
    let mut out = Vec::new();
    for _ in 0..40 {
        out.push(c.code("DescribeListeners", json!({"LoadBalancerId": LB})).await);
    }
    emu.shutdown().await;
    out
}

#[tokio::test]
async fn fault_injection_is_deterministic() {
    let a = codes_for(7).await;
    assert_eq!(a, codes_for(7).await);
    assert_ne!(a, codes_for(8).await);
    let n = a.iter().filter(|c| *c == "InternalError").count();
    assert!((5..35).contains(&n), "{n}");
}

#[tokio::test]
async fn faults_http502_busy_task_failure_latency_rate_limit() {
    let emu = start_example().await;
    let c = Client::new(&emu);
    emu.set_faults(Faults {
        errors: Some(ErrorFault {
            rate: 1.0,
            max: Some(2),
            actions: vec!["RegisterTargets".into()],
            kind: ErrorKind::Http502,
        }),
        ..Faults::default()
    });
    let raw = c.send("RegisterTargets", serde_json::to_vec(&reg(&["10.3.0.1"], 80)).unwrap(), &[]).await.unwrap();
    assert_eq!(raw.status, 502);
    assert_eq!(c.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "");
    assert_eq!(
        c.send("RegisterTargets", serde_json::to_vec(&reg(&["10.3.0.1"], 80)).unwrap(), &[]).await.unwrap().status,
        502
    );
    assert_eq!(c.code("RegisterTargets", reg(&["10.3.0.1"], 80)).await, "");
    assert_eq!(emu.calls().errors("HTTP502"), 2);

    emu.set_faults(Faults {
        busy: Some(BusyFault { calls: 2, load_balancer_ids: vec![LB.into()] }),
        ..Faults::default()
    });
    assert_eq!(c.code("RegisterTargets", reg(&["10.3.0.2"], 80)).await, "FailedOperation.ResourceInOperating");
    assert_eq!(c.code("RegisterTargets", reg(&["10.3.0.2"], 80)).await, "FailedOperation.ResourceInOperating");
    assert_eq!(c.code("RegisterTargets", reg(&["10.3.0.2"], 80)).await, "");

    emu.set_faults(Faults {
        task_failures: Some(TaskFailureFault { rate: 1.0, max: Some(1), actions: vec![], message: "boom".into() }),
        ..Faults::default()
    });
    let r = c.ok("RegisterTargets", reg(&["10.3.0.3"], 80)).await;
    let st = c.wait_task(r["RequestId"].as_str().unwrap()).await;
    assert_eq!((st["Status"].as_i64(), st["Message"].as_str()), (Some(1), Some("boom")));
    assert!(!l4_ips(&emu.state()).iter().any(|t| t.0 == "10.3.0.3"));

    emu.set_faults(Faults { latency_ms: 150, ..Faults::default() });
    let t = Instant::now();
    c.ok("DescribeListeners", json!({"LoadBalancerId": LB})).await;
    assert!(t.elapsed() >= Duration::from_millis(150));

    emu.set_faults(Faults::default());
    emu.set_rate_limit(3);
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(c.code("DescribeTargets", json!({"LoadBalancerId": LB})).await);
    }
    assert_eq!(codes.iter().filter(|c| *c == "RequestLimitExceeded").count(), 2, "{codes:?}");
    assert_eq!(c.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "", "limit is per action");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_rate_limit_is_20_per_second() {
    let emu = start_with(Config { state: common::example_state(), ..Config::default() }).await;
    let c = std::sync::Arc::new(Client::new(&emu));
    // 25 concurrent calls land in one one-second window: 20 pass, 5 are limited.
    let handles: Vec<_> = (0..25)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.code("DescribeLoadBalancers", json!({})).await })
        })
        .collect();
    let mut limited = 0;
    for h in handles {
        if h.await.unwrap() == "RequestLimitExceeded" {
            limited += 1;
        }
    }
    assert!((1..=5).contains(&limited), "{limited}");
    assert_eq!(emu.calls().errors("RequestLimitExceeded"), limited);
}

#[tokio::test]
async fn drop_after_apply_and_garbage() {
    let emu = start_example().await;
    let mut c = Client::new(&emu);
    emu.set_faults(Faults {
        drop_after_apply: Some(DropFault { rate: 1.0, max: Some(1), actions: vec![], hold_ms: 0 }),
        ..Faults::default()
    });
    let err = c.send("RegisterTargets", serde_json::to_vec(&reg(&["10.4.0.1"], 80)).unwrap(), &[]).await;
    assert!(err.is_err(), "connection closed without response");
    assert!(l4_ips(&emu.state()).iter().any(|t| t.0 == "10.4.0.1"), "mutation applied");
    assert_eq!(emu.calls().errors("Dropped"), 1);
    assert_eq!(emu.calls().mutating_succeeded(), 1);
    // Held response: the client times out.
    emu.set_faults(Faults {
        drop_after_apply: Some(DropFault { rate: 1.0, max: Some(1), actions: vec![], hold_ms: 2000 }),
        ..Faults::default()
    });
    c.http = common::http_client_with_timeout(Duration::from_millis(300));
    let err = c.send("RegisterTargets", serde_json::to_vec(&reg(&["10.4.0.2"], 80)).unwrap(), &[]).await;
    assert!(err.unwrap_err().is_timeout());
    assert!(l4_ips(&emu.state()).iter().any(|t| t.0 == "10.4.0.2"));
    c.http = common::http_client();
    for (mode, check) in [
        (GarbageMode::Truncated, "truncated"),
        (GarbageMode::Empty, "empty"),
        (GarbageMode::Html, "html"),
        (GarbageMode::WrongShape, "shape"),
        (GarbageMode::Huge, "huge"),
    ] {
        emu.set_faults(Faults {
            garbage: Some(GarbageFault { rate: 1.0, max: Some(1), actions: vec![], mode, huge_bytes: 1 << 20 }),
            ..Faults::default()
        });
        let raw = c.send("DescribeListeners", br#"{"LoadBalancerId": "lb-web00001"}"#.to_vec(), &[]).await.unwrap();
        let parsed = serde_json::from_slice::<Value>(&raw.body);
        match check {
            "truncated" | "empty" | "html" => assert!(parsed.is_err(), "{check}"),
            "shape" => assert_eq!(parsed.unwrap()["Response"], "garbage"),
            _ => assert!(raw.body.len() > 1 << 20),
        }
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn error_after_apply_changes_state_although_the_answer_is_an_error() {
    let emu = start_with(Config {
        state: common::example_state(),
        rate_limit_per_action: 0,
        task_delay: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let c = Client::new(&emu);
    emu.set_faults(Faults {
        error_after_apply: Some(ErrorAfterApplyFault {
            rate: 1.0,
            max: Some(1),
            actions: vec!["RegisterTargets".into()],
            kind: AfterApplyKind::InternalError,
        }),
        ..Faults::default()
    });
    // Not a listed action: answered normally.
    c.ok("DescribeTargets", json!({"LoadBalancerId": LB})).await;
    let r = c.call("RegisterTargets", reg(&["10.4.1.1"], 80)).await;
    assert_eq!(r["Error"]["Code"], "InternalError", "{r}");
    // The change was accepted as a task (its id is the RequestId of the error answer), locks the
    // LB while it runs and completes normally.
    let task = r["RequestId"].as_str().unwrap().to_string();
    assert_eq!(emu.task(&task).unwrap().status, 2);
    assert_eq!(c.code("RegisterTargets", reg(&["10.4.1.2"], 80)).await, "FailedOperation.ResourceInOperating");
    assert_eq!(c.wait_task(&task).await["Status"], 0);
    assert!(l4_ips(&emu.state()).contains(&("10.4.1.1".into(), 80, 10)), "applied although answered InternalError");
    // A retry meets the target already bound; `max` ended the fault.
    assert_eq!(c.code("RegisterTargets", reg(&["10.4.1.1"], 80)).await, "InvalidParameterValue.Duplicate");
    let calls = emu.calls();
    assert_eq!(calls.errors("InternalErrorAfterApply"), 1);
    assert_eq!(calls.errors("InternalError"), 0, "not counted as a not-executed InternalError");
    assert_eq!(calls.errors_after_apply(), 1);
    assert_eq!(calls.of("RegisterTargets")[0].code, "InternalErrorAfterApply");
    assert_eq!(calls.mutating_succeeded(), 1, "the executed call counts as a created task");

    // HTTP 502 mode, from the YAML fault config, on a batch action.
    let faults: Faults =
        serde_yaml::from_str("error_after_apply: {kind: http502, actions: [BatchDeregisterTargets]}").unwrap();
    emu.set_faults(faults);
    emu.set_task_delay(Duration::ZERO);
    let body = json!({"LoadBalancerId": LB, "Targets": [{"ListenerId": L4, "EniIp": "10.4.1.1", "Port": 80}]});
    let raw = c.send("BatchDeregisterTargets", serde_json::to_vec(&body).unwrap(), &[]).await.unwrap();
    assert_eq!(raw.status, 502);
    assert!(!l4_ips(&emu.state()).iter().any(|t| t.0 == "10.4.1.1"), "deregistered although answered 502");
    let calls = emu.calls();
    assert_eq!((calls.errors("HTTP502AfterApply"), calls.errors("HTTP502")), (1, 0));
    assert_eq!(calls.errors_after_apply(), 2);
    // A failed (not executed) mutation is answered as usual, not replaced by the fault.
    assert_eq!(
        c.code("BatchDeregisterTargets", json!({"LoadBalancerId": "lb-nope", "Targets": body["Targets"]})).await,
        "InvalidParameter.LBIdNotFound"
    );
    emu.shutdown().await;
}

async fn admin(
    method: reqwest::Method,
    emu: &clb_emulator::Emulator,
    path: &str,
    body: Option<String>,
) -> (u16, Value) {
    let mut req = common::http_client().request(method, format!("{}/_emulator/{path}", emu.endpoint()));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_slice(&r.bytes().await.unwrap()).unwrap())
}

#[tokio::test]
async fn admin_api() {
    use reqwest::Method;
    let emu = start_example().await;
    let c = Client::new(&emu);
    let (s, st) = admin(Method::GET, &emu, "state", None).await;
    assert_eq!(s, 200);
    let parsed: State = serde_json::from_value(st).unwrap();
    assert_eq!(parsed, emu.state());
    c.ok("RegisterTargets", reg(&["10.2.0.1"], 80)).await;
    c.code("DescribeListeners", json!({"LoadBalancerId": "lb-nope"})).await;
    let (_, calls) = admin(Method::GET, &emu, "calls", None).await;
    assert_eq!(calls["by_action"]["RegisterTargets"], 1);
    assert_eq!(calls["mutating_calls"], 1);
    assert_eq!(calls["errors_by_code"]["InvalidParameter.LBIdNotFound"], 1);
    assert_eq!(calls["records"][0]["params"]["ListenerId"], L4);
    assert_eq!(calls["records"][1]["code"], "InvalidParameter.LBIdNotFound");
    // Replace state with YAML.
    let yaml = "load_balancers:\n  - id: lb-only\n    listeners:\n      - {id: lbl-only, protocol: TCP, port: 1}\n";
    assert_eq!(admin(Method::PUT, &emu, "state", Some(yaml.into())).await.0, 200);
    assert_eq!(emu.state().load_balancers.len(), 1);
    assert_eq!(admin(Method::PUT, &emu, "state", Some("load_balancers: [{id: x, bogus: 1}]".into())).await.0, 400);
    assert_eq!(admin(Method::DELETE, &emu, "listeners/lb-only/lbl-only", None).await.0, 200);
    assert_eq!(admin(Method::DELETE, &emu, "listeners/lb-only/lbl-only", None).await.0, 404);
    assert_eq!(admin(Method::POST, &emu, "reset", Some(r#"{"state": true}"#.into())).await.0, 200);
    assert_eq!(emu.state().load_balancers.len(), 2);
    assert_eq!(emu.calls().total(), 0);
    assert_eq!(admin(Method::POST, &emu, "faults", Some("errors: {kind: internal_error}\n".into())).await.0, 200);
    assert_eq!(c.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "InternalError");
    let (_, f) = admin(Method::GET, &emu, "faults", None).await;
    assert_eq!(f["errors"]["kind"], "internal_error");
    assert_eq!(admin(Method::POST, &emu, "faults", Some("{}".into())).await.0, 200);
    assert_eq!(admin(Method::POST, &emu, "faults", Some("{\"nope\": 1}".into())).await.0, 400);
    assert_eq!(admin(Method::POST, &emu, "settings", Some(r#"{"task_delay_ms": 200}"#.into())).await.0, 200);
    let r = c.ok("RegisterTargets", reg(&["10.2.0.9"], 80)).await;
    let (_, tasks) = admin(Method::GET, &emu, "tasks", None).await;
    assert_eq!(tasks[0]["id"], r["RequestId"]);
    assert_eq!(tasks[0]["status"], 2);
    assert_eq!(admin(Method::POST, &emu, "clock", Some(r#"{"offset_secs": -1000}"#.into())).await.0, 200);
    assert_eq!(c.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "AuthFailure.SignatureExpire");
    assert_eq!(admin(Method::GET, &emu, "nope", None).await.0, 404);
    emu.shutdown().await;
}

/// Sends an admin request with exactly these headers; returns the status and the body text.
async fn admin_raw(
    emu: &clb_emulator::Emulator,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut req = common::http_client().request(method, format!("{}/_emulator/{path}", emu.endpoint()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.body(body.to_string()).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn admin_api_refuses_what_a_web_page_can_send() {
    use reqwest::Method;
    let emu = start_example().await;
    let c = Client::new(&emu);
    let faults = r#"{"errors": {"kind": "internal_error"}}"#;
    // A page on another site can POST text/plain without a preflight: refused, nothing changed.
    let (status, body) = admin_raw(
        &emu,
        Method::POST,
        "faults",
        &[("content-type", "text/plain"), ("origin", "http://evil.example")],
        faults,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let err: Value = serde_json::from_str(&body).unwrap();
    assert!(err["error"].as_str().unwrap().contains("admin API refused"), "{body}");
    assert_eq!(emu.faults(), Faults::default());
    assert_eq!(c.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "");
    // text/plain from no origin at all, and a form post: refused as well.
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let (status, _) = admin_raw(&emu, Method::POST, "reset", &[("content-type", ct)], r#"{"state": true}"#).await;
        assert_eq!(status, 403, "{ct}");
    }
    let (status, _) = admin_raw(&emu, Method::PUT, "state", &[], "load_balancers: []").await;
    assert_eq!(status, 403, "PUT without a content type");
    assert_eq!(emu.state().load_balancers.len(), 2);
    // JSON from a foreign origin (a CORS request the browser would send after a preflight): refused.
    let (status, _) = admin_raw(
        &emu,
        Method::POST,
        "faults",
        &[("content-type", "application/json"), ("origin", "https://evil.example")],
        faults,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(emu.faults(), Faults::default());
    // DNS rebinding: a foreign Host cannot read the state (which holds the secret keys).
    for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "10.0.0.1"] {
        let (status, body) = admin_raw(&emu, Method::GET, "state", &[("host", host)], "").await;
        assert_eq!(status, 403, "{host}: {body}");
        assert!(!body.contains(clb_emulator::DEFAULT_SECRET_KEY), "{host}: secret leaked");
        assert!(body.contains("loopback"), "{body}");
    }
    // Normal admin calls still work: loopback hosts, JSON with parameters, loopback origin.
    let port = emu.addr().port();
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), format!("[::1]:{port}")] {
        let (status, body) = admin_raw(&emu, Method::GET, "state", &[("host", &host)], "").await;
        assert_eq!(status, 200, "{host}");
        assert!(body.contains("lb-web00001"));
    }
    let (status, _) = admin_raw(
        &emu,
        Method::POST,
        "faults",
        &[("content-type", "Application/JSON; charset=utf-8"), ("origin", &format!("http://127.0.0.1:{port}"))],
        faults,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(c.code("DescribeListeners", json!({"LoadBalancerId": LB})).await, "InternalError");
    assert_eq!(emu.calls().errors("InternalError"), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn invalid_seed_states_are_rejected() {
    for (yaml, why) in [
        ("load_balancers: [{id: a}, {id: a}]", "duplicate lb"),
        (
            "load_balancers: [{id: a, listeners: [{id: l, protocol: TCP, port: 1, rules: [{location_id: x, domain: d, url: /}]}]}]",
            "rules on L4",
        ),
        (
            "load_balancers: [{id: a, listeners: [{id: l, protocol: HTTP, port: 1, targets: [{ip: 1.1.1.1, port: 1}]}]}]",
            "targets on L7",
        ),
        (
            "load_balancers: [{id: a, listeners: [{id: l, protocol: TCP, port: 1, targets: [{ip: nope, port: 1}]}]}]",
            "bad ip",
        ),
        (
            "load_balancers: [{id: a, listeners: [{id: l, protocol: TCP, port: 1, targets: [{ip: 1.1.1.1, port: 1}, {ip: 1.1.1.1, port: 1}]}]}]",
            "dup target",
        ),
        ("load_balancers: [{id: a, listeners: [{id: l, protocol: SCTP, port: 1}]}]", "protocol"),
        ("load_balancer: []", "unknown field"),
    ] {
        assert!(State::from_yaml_str(yaml).is_err(), "{why}");
    }
    let st = common::example_state();
    let back = State::from_yaml_str(&st.to_yaml()).unwrap();
    assert_eq!(back, st);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_thousands_of_lbs_hundreds_of_thousands_of_targets() {
    // 2000 LBs x 2 listeners x 50 targets = 200k targets.
    let mut yaml = String::from("load_balancers:\n");
    for lb in 0..2000 {
        yaml.push_str(&format!("- id: lb-s{lb:06}\n  listeners:\n"));
        for l in 0..2 {
            yaml.push_str(&format!("  - id: lbl-s{lb:06}{l}\n    protocol: TCP\n    port: {}\n    targets:\n", 80 + l));
            for t in 0..50 {
                yaml.push_str(&format!("    - {{ip: 10.{}.{}.{t}, port: 8080}}\n", lb / 250, lb % 250));
            }
        }
    }
    let t = Instant::now();
    let state = State::from_yaml_str(&yaml).unwrap();
    let parse = t.elapsed();
    let t = Instant::now();
    let emu = start_with(Config { state, rate_limit_per_action: 0, ..Config::default() }).await;
    let startup = t.elapsed();
    let c = Client::new(&emu);
    let t = Instant::now();
    for i in 0..50 {
        let lb = format!("lb-s{:06}", i * 37);
        let r = c.ok("DescribeTargets", json!({"LoadBalancerId": lb})).await;
        assert_eq!(r["Listeners"][0]["Targets"].as_array().unwrap().len(), 50);
        let body = json!({"LoadBalancerId": lb, "ListenerId": format!("lbl-s{:06}0", i * 37), "Targets": [{"EniIp": "192.168.0.1", "Port": 1}]});
        c.ok("RegisterTargets", body).await;
    }
    let calls = t.elapsed();
    let r = c.ok("DescribeLoadBalancers", json!({"Limit": 100, "Offset": 1900})).await;
    assert_eq!(r["TotalCount"], 2000);
    println!("scale: parse {parse:?}, start {startup:?}, 100 calls {calls:?}");
    assert!(startup < Duration::from_secs(5), "startup {startup:?}");
    assert!(calls < Duration::from_secs(20), "calls {calls:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn startup_is_fast() {
    let t = Instant::now();
    let emu = start_example().await;
    let c = Client::new(&emu);
    c.ok("DescribeLoadBalancers", json!({})).await;
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert!(emu.endpoint().starts_with("http://127.0.0.1:"));
    emu.shutdown().await;
}
