//! Conformance against Tencent Cloud's official Python SDK (tests/sdk/conformance.py).
//! Needs the venv created by `testbed/python-sdk.sh`; fails (never skips) without it.

mod common;

use clb_emulator::{Config, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY};
use std::path::PathBuf;
use std::time::Duration;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn venv_python() -> PathBuf {
    let py = repo_root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run testbed/python-sdk.sh (creates the venv with tencentcloud-sdk-python-clb and tccli)",
        py.display()
    );
    py
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_conformance() {
    let python = venv_python();
    let emu = common::start_with(Config {
        state: common::example_state(),
        task_delay: Duration::from_millis(400),
        rate_limit_per_action: 0,
        ..Config::default()
    })
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/conformance.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args(["--endpoint", &emu.endpoint()])
        .args(["--secret-id", DEFAULT_SECRET_ID, "--secret-key", DEFAULT_SECRET_KEY])
        .args(["--token-secret-id", "AKIDclbsyncTEMPORARY00000000000000"])
        .args(["--token-secret-key", "clbsyncTemporarySecretKey000000000"])
        .args(["--token", "clbsync-session-token"])
        .output()
        .await
        .expect("run conformance.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "conformance.py failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("checks passed"), "{stdout}");
    let calls = emu.calls();
    for a in clb_emulator::schema::ACTIONS {
        assert!(calls.count(a.name) > 0, "conformance.py never called {}", a.name);
    }
    emu.shutdown().await;
}

/// The SDK's own credential providers against the emulator's STS (trusting the test kube-apiserver,
/// `CLBSYNC_TEST_KUBECONFIG`) and metadata endpoint: tests/sdk/credentials.py.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_obtains_keyless_credentials() {
    use clb_emulator::{MetadataConfig, OidcProvider, OidcRole, StsConfig};
    const PROVIDER: &str = "tke-oidc-emulator";
    const ROLE: &str = "qcs::cam::uin/100000000001:roleName/clbsync";
    const AUDIENCE: &str = "sts.cloud.tencent.com";
    let python = venv_python();
    let kube = common::kube::Kube::connect();
    let ns = common::kube::unique("emucreds-sdk");
    let token = kube.service_account_token(&ns, "clbsync", AUDIENCE).await;
    let wrong = kube.service_account_token(&ns, "clbsync", "https://kubernetes.default.svc.cluster.local").await;
    let sts = StsConfig {
        providers: vec![OidcProvider {
            id: PROVIDER.into(),
            issuer: kube.issuer().await,
            audiences: vec![AUDIENCE.into()],
            jwks: kube.jwks().await,
        }],
        roles: vec![OidcRole {
            arn: ROLE.into(),
            provider_id: PROVIDER.into(),
            subjects: vec![format!("system:serviceaccount:{ns}:clbsync")],
        }],
        lifetime_ms: None,
    };
    let emu = common::start_with(Config {
        state: common::example_state(),
        rate_limit_per_action: 0,
        sts,
        metadata: MetadataConfig { role: Some("clbsync-node".into()), ..MetadataConfig::default() },
        ..Config::default()
    })
    .await;
    let dir = std::env::temp_dir().join(common::kube::unique("clb-emulator-sdk-tokens"));
    std::fs::create_dir(&dir).expect("create the token directory");
    let (token_file, wrong_file) = (dir.join("token"), dir.join("wrong-audience"));
    std::fs::write(&token_file, &token).expect("write token");
    std::fs::write(&wrong_file, &wrong).expect("write token");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/credentials.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args([
            "--endpoint",
            &emu.endpoint(),
            "--provider-id",
            PROVIDER,
            "--role-arn",
            ROLE,
            "--cvm-role",
            "clbsync-node",
        ])
        .arg("--token-file")
        .arg(&token_file)
        .arg("--wrong-audience-token-file")
        .arg(&wrong_file)
        .output()
        .await
        .expect("run credentials.py");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "credentials.py failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("checks passed"), "{stdout}");
    let calls = emu.calls();
    assert!(calls.errors("InvalidParameter.WebIdentityTokenError") >= 1, "the wrong audience reached STS");
    assert!(
        calls.of_service("metadata").iter().any(|c| c.secret_id.is_some()),
        "the SDK read the metadata credentials"
    );
    assert!(
        calls.of("DescribeLoadBalancers").iter().filter(|c| c.code == "Success").all(|c| c.temporary),
        "every accepted DescribeLoadBalancers was signed with a temporary credential"
    );
    emu.shutdown().await;
}

/// The TC3 vectors both signers are tested against (tests/fixtures/tc3-vectors.json) are what the official SDK
/// computes: its generator runs again with the venv's pinned SDK and must print the committed file.
#[test]
fn the_committed_tc3_vectors_are_what_the_official_sdk_computes() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/tc3-vectors.py");
    let out = std::process::Command::new(venv_python()).arg(&script).output().expect("run tc3-vectors.py");
    assert!(out.status.success(), "tc3-vectors.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let computed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the generator prints JSON");
    let committed: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/fixtures/tc3-vectors.json")).expect("the committed vectors"),
    )
    .expect("the committed vectors are JSON");
    assert_eq!(computed, committed, "tests/fixtures/tc3-vectors.json differs from what the official SDK computes");
}
