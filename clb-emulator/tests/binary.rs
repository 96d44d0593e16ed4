//! The `clb-emulator` binary: prints its address, serves the API, logs one line per request
//! without secrets; STS and the metadata role from its flags.

mod common;

use serde_json::json;
use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test]
async fn binary_starts_prints_address_and_logs() {
    let state = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/state.yaml");
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clb-emulator"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--state",
            state,
            "--task-delay-ms",
            "50",
            "--rate-limit",
            "0",
            "--seed",
            "3",
            "--health-interval-ms",
            "0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clb-emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let startup = t.elapsed();
    let endpoint = line.trim().strip_prefix("clb-emulator listening on ").expect(&line).to_string();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    println!("binary startup: {startup:?}");
    assert!(startup < Duration::from_secs(1), "startup took {startup:?}");

    let host = endpoint.trim_start_matches("http://").to_string();
    let c = common::Client {
        http: common::http_client(),
        host,
        secret_id: clb_emulator::DEFAULT_SECRET_ID.into(),
        secret_key: clb_emulator::DEFAULT_SECRET_KEY.into(),
        token: None,
        ts_offset: 0,
    };
    let r = c.ok("DescribeLoadBalancers", json!({"LoadBalancerIds": ["lb-web00001"]})).await;
    assert_eq!(r["TotalCount"], 1);
    let r = c.ok("RegisterTargets", json!({"LoadBalancerId": "lb-web00001", "ListenerId": "lbl-tcp00080", "Targets": [{"EniIp": "10.1.1.1", "Port": 80}]})).await;
    assert_eq!(c.wait_task(r["RequestId"].as_str().unwrap()).await["Status"], 0);
    // --health-interval-ms 0 (instant mode): healthy at once, no 15 s of detecting.
    let h = c
        .ok("DescribeTargetHealth", json!({"LoadBalancerIds": ["lb-web00001"], "ListenerIds": ["lbl-tcp00080"]}))
        .await;
    let targets = h["LoadBalancers"][0]["Listeners"][0]["Rules"][0]["Targets"].as_array().unwrap().clone();
    let t = targets.iter().find(|t| t["IP"] == "10.1.1.1").expect("registered target in DescribeTargetHealth");
    assert_eq!((&t["HealthStatus"], &t["HealthStatusDetail"]), (&json!(true), &json!("Alive")));
    let st: serde_json::Value = reqwest::get(format!("{endpoint}/_emulator/state")).await.unwrap().json_or_text().await;
    assert!(st.to_string().contains("10.1.1.1"));

    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("DescribeLoadBalancers"), "{stderr}");
    assert!(stderr.contains("RegisterTargets"), "{stderr}");
    assert!(!stderr.contains(clb_emulator::DEFAULT_SECRET_KEY), "secret logged");
    assert!(!stderr.contains("TC3-HMAC-SHA256"), "Authorization logged");
    assert!(stderr.lines().filter(|l| l.contains("code=")).count() >= 3, "{stderr}");
}

trait JsonOrText {
    async fn json_or_text(self) -> serde_json::Value;
}

impl JsonOrText for reqwest::Response {
    async fn json_or_text(self) -> serde_json::Value {
        let b = self.bytes().await.unwrap();
        serde_json::from_slice(&b).unwrap()
    }
}

#[test]
fn binary_warns_when_listening_beyond_loopback() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_clb-emulator"))
        .args(["--listen", "0.0.0.0:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn clb-emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.starts_with("clb-emulator listening on http://0.0.0.0:"), "{line}");
    child.kill().unwrap();
    child.wait().unwrap();
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("warning: listening on 0.0.0.0:0, which is not a loopback address"), "{stderr}");
    assert!(stderr.contains("test tool"), "{stderr}");
}

#[tokio::test]
async fn binary_serves_sts_from_its_config_file_and_the_cvm_role() {
    let dir = std::env::temp_dir().join(common::kube::unique("clb-emulator-binary-sts"));
    std::fs::create_dir(&dir).unwrap();
    let config = json!({
        "providers": [{"id": "p", "issuer": common::idp::ISSUER, "audiences": ["aud"], "jwks": common::idp::jwks()}],
        "roles": [{"arn": "qcs::cam::uin/1:roleName/r", "provider_id": "p"}],
        "lifetime_ms": 60000,
    });
    let file = dir.join("sts.yaml");
    std::fs::write(&file, serde_yaml::to_string(&config).unwrap()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_clb-emulator"))
        .args(["--listen", "127.0.0.1:0", "--cvm-role", "node-role", "--sts-config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn clb-emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let endpoint = line.trim().strip_prefix("clb-emulator listening on ").expect(&line).to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let token = common::idp::token("system:serviceaccount:ns:sa", "aud", now - 5, now + 600);
    let r = common::assume_role_at(
        &endpoint,
        json!({"ProviderId": "p", "WebIdentityToken": token, "RoleArn": "qcs::cam::uin/1:roleName/r", "RoleSessionName": "s1"}),
    )
    .await;
    assert!(r["Credentials"]["TmpSecretId"].is_string(), "{r}");
    let expired_time = r["ExpiredTime"].as_i64().unwrap();
    assert!((expired_time - now - 60).abs() <= 2, "lifetime_ms from the file: {r}");
    let role = reqwest::get(format!("{endpoint}/latest/meta-data/cam/security-credentials/")).await.unwrap();
    assert_eq!(role.text().await.unwrap(), "node-role");
    child.kill().unwrap();
    child.wait().unwrap();

    std::fs::write(&file, "providers: [{id: p, issuer: i, audiences: [], jwks: {keys: []}}]").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_clb-emulator"))
        .args(["--listen", "127.0.0.1:0", "--sts-config"])
        .arg(&file)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("sts.yaml") && stderr.contains("no RSA signing key"), "{stderr}");
}
