//! Hostile environments (issue 19): servers, plugins, proxies and files on loopback that try to get the CLB
//! credentials or stall, flood or forge the run. Every hostile party runs inside the test, bounded in time.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clb_emulator::Emulator;
use clbsync::clb::client::{ClbClient, ClientConfig};
use clbsync::clb::credentials::{self, Credentials};
use clbsync::clb::http::Endpoint;
use clbsync::clb::{Clb, Error};
use clbsync::desired::kube::{KubeCluster, MAX_PAGES, MAX_RESPONSE_BYTES};
use clbsync::desired::{Cluster, Error as DesiredError};
use clbsync::rules::{PodQuery, PodSource};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::e2e::{Run, cli_process, run};
use crate::emulator::{STATE, emulator};

/// A client with a session token (sent as `X-TC-Token`, which HTTP redirects do not strip) to `endpoint`.
fn clb_client(endpoint: String) -> ClbClient {
    let creds = Credentials::new("AKIDtest", "testSecretKey", Some("session-token".into()));
    let config = ClientConfig {
        endpoint: Endpoint::Url(endpoint),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new("ap-guangzhou", creds)
    };
    ClbClient::new(config).expect("loopback http endpoint is allowed")
}

#[tokio::test]
async fn a_redirect_is_an_error_naming_where_it_pointed_and_is_never_followed() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&elsewhere).await;
    let endpoint = MockServer::start().await;
    let location = format!("{}/collect", elsewhere.uri());
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(308).insert_header("Location", location.as_str()))
        .mount(&endpoint)
        .await;

    let err = clb_client(endpoint.uri()).listeners("lb-12345678").await.expect_err("a redirect is an error");
    assert!(matches!(err, Error::Redirect { status: 308, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&location) && msg.contains("not followed"), "{msg}");
    assert_eq!(endpoint.received_requests().await.expect("recorded").len(), 1, "the redirect was answered once");
    assert!(elsewhere.received_requests().await.expect("recorded").is_empty(), "the redirect target got a request");
}

// ---- a fake Kubernetes API server, and the binary against it and the emulator ----

const RULES: &str = "
- load_balancer_id: lb-shop0001
  listeners:
    - {port: 6379, protocol: tcp, backend: {namespace: cache, selector: {app: redis}, port: 6379}}
";

fn redis_pod() -> serde_json::Value {
    json!({
        "metadata": {"name": "redis-0", "namespace": "cache", "labels": {"app": "redis"}},
        "spec": {"containers": [{"name": "redis", "ports": [{"containerPort": 6379}]}]},
        "status": {"phase": "Running", "podIP": "10.0.2.1", "conditions": [{"type": "Ready", "status": "True"}]}
    })
}

fn pod_list(items: Vec<serde_json::Value>, continue_token: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "apiVersion": "v1", "kind": "PodList",
        "metadata": {"resourceVersion": "1", "continue": continue_token},
        "items": items,
    }))
}

/// A loopback API server answering every pod list of namespace `cache` with `response`.
async fn fake_api(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET")).and(path("/api/v1/namespaces/cache/pods")).respond_with(response).mount(&server).await;
    server
}

/// A kubeconfig for `server` whose cluster `fake-cluster` has `cluster_extra` fields and whose user is `user`.
fn kubeconfig(dir: &Path, server: &MockServer, cluster_extra: &str, user: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
         clusters: [{{name: fake-cluster, cluster: {{server: \"{}\"{cluster_extra}}}}}]\n\
         contexts: [{{name: fake, context: {{cluster: fake-cluster, user: fake-user}}}}]\n\
         users: [{{name: fake-user, user: {user}}}]\n",
        server.uri()
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// An executable shell script in `dir`.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn redis_query() -> PodQuery {
    PodQuery { namespace: "cache".into(), source: PodSource::Selector([("app".into(), "redis".into())].into()) }
}

/// `clbsync diff` against the emulator and the kubeconfig in `dir`, with every CLB credential variable set.
async fn diff(emu: &Emulator, dir: &Path, kubeconfig: &Path, extra: &[&str]) -> Run {
    let rules = dir.join("rules.yaml");
    std::fs::write(&rules, RULES).expect("write rules");
    let mut cmd = cli_process(emu, &["diff"]);
    cmd.arg("--kubeconfig").arg(kubeconfig).arg("--rules").arg(&rules).args(extra);
    cmd.env(credentials::CLBSYNC_ID, clb_emulator::DEFAULT_SECRET_ID)
        .env(credentials::CLBSYNC_KEY, clb_emulator::DEFAULT_SECRET_KEY)
        .env(credentials::SDK_TOKEN, "session-token-for-plugins-test")
        .env("CLBSYNC_PUSHGATEWAY", "http://bot:pushgateway-password@127.0.0.1:9/");
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(Duration::from_secs(60));
    run(cmd).await
}

/// Item 1: neither an `exec` plugin nor an auth-provider's `cmd-path` command sees a CLB credential variable;
/// issue 24 #18: nor `CLBSYNC_PUSHGATEWAY`, whose URL may hold a password.
#[tokio::test]
async fn kubeconfig_credential_plugins_do_not_inherit_the_clb_credentials() {
    let (emu, api) = (emulator(STATE).await, fake_api(pod_list(vec![redis_pod()], "")).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let token = r#"{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"t"}}"#;
    let exec_env = dir.path().join("exec.env");
    let exec = script(dir.path(), "exec.sh", &format!("env > {}\necho '{token}'", exec_env.display()));
    let provider_env = dir.path().join("provider.env");
    let provider =
        script(dir.path(), "provider.sh", &format!("env > {}\necho '{{\"token\":\"t\"}}'", provider_env.display()));
    let users = [
        format!(
            "{{exec: {{apiVersion: client.authentication.k8s.io/v1, command: {}, interactiveMode: Never}}}}",
            exec.display()
        ),
        format!(
            "{{auth-provider: {{name: gcp, config: {{cmd-path: {}, token-key: '{{.token}}'}}}}}}",
            provider.display()
        ),
    ];
    for (user, env_file) in users.iter().zip([&exec_env, &provider_env]) {
        let kubeconfig = kubeconfig(dir.path(), &api, "", user);
        let run = diff(&emu, dir.path(), &kubeconfig, &[]).await;
        assert_eq!(run.code, Some(0), "{}", run.all());
        let env = std::fs::read_to_string(env_file).expect("the plugin ran and wrote its environment");
        assert!(env.contains("PATH=") || env.contains("PWD="), "the plugin's environment was recorded: {env}");
        for name in clbsync::desired::kube::hidden_from_plugins() {
            assert!(!env.contains(name), "{user}: {name} reached the plugin:\n{env}");
        }
        assert!(!env.contains("pushgateway-password"), "{user}: the Pushgateway's password reached the plugin");
    }
}

/// Item 3: `insecure-skip-tls-verify` is refused with the cluster's name, or accepted on request, loudly.
#[tokio::test]
async fn insecure_skip_tls_verify_is_refused_unless_allowed_and_then_loud() {
    let (emu, api) = (emulator(STATE).await, fake_api(pod_list(vec![redis_pod()], "")).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig(dir.path(), &api, ", insecure-skip-tls-verify: true", "{token: t}");

    let err = KubeCluster::connect(Some(&kubeconfig)).await.err().expect("refused");
    assert!(matches!(&err, DesiredError::InsecureTls { cluster, .. } if cluster == "fake-cluster"), "{err:?}");
    let refused = diff(&emu, dir.path(), &kubeconfig, &[]).await;
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    assert!(refused.stderr.contains("kubeconfig cluster `fake-cluster`"), "{}", refused.all());
    assert!(api.received_requests().await.expect("recorded").is_empty(), "a refused kubeconfig sends nothing");

    let allowed = diff(&emu, dir.path(), &kubeconfig, &["--allow-insecure-skip-tls-verify"]).await;
    assert_eq!(allowed.code, Some(0), "{}", allowed.all());
    assert!(allowed.stderr.contains("WARN INSECURE"), "a loud warning: {}", allowed.all());
}

/// Item 8: a proxy from the environment gets nothing when the endpoint is the loopback emulator. (HTTPS_PROXY
/// is left out: kube-rs reads it for the API server too; `https_proxy` in src/clb/http.rs covers it.)
#[tokio::test]
async fn proxy_variables_do_not_apply_to_a_loopback_endpoint() {
    let (emu, api) = (emulator(STATE).await, fake_api(pod_list(vec![redis_pod()], "")).await);
    let proxy = MockServer::start().await;
    Mock::given(wiremock::matchers::any()).respond_with(ResponseTemplate::new(502)).mount(&proxy).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig(dir.path(), &api, "", "{token: t}");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("write rules");
    let mut cmd = cli_process(&emu, &["diff"]);
    cmd.arg("--kubeconfig").arg(&kubeconfig).arg("--rules").arg(&rules);
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        cmd.env(var, proxy.uri());
    }
    let calls = emu.calls().total();
    let run = run(assert_cmd::Command::from_std(cmd)).await;
    assert_eq!(run.code, Some(0), "{}", run.all());
    assert!(emu.calls().total() > calls, "the emulator was called directly");
    assert!(proxy.received_requests().await.expect("recorded").is_empty(), "the proxy got a request");
}

/// Item 4: a server whose pod list never ends is followed for a bounded number of pages, then refused.
#[tokio::test]
async fn an_endless_continue_token_is_refused_after_a_bounded_number_of_pages() {
    let api = fake_api(pod_list(vec![], "again")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = KubeCluster::connect(Some(&kubeconfig(dir.path(), &api, "", "{token: t}"))).await.expect("connect");
    let err = tokio::time::timeout(Duration::from_secs(60), cluster.pods(&redis_query())).await.expect("bounded");
    let err = err.expect_err("refused, never an empty list");
    assert!(matches!(err, DesiredError::TooManyPages { max: MAX_PAGES, .. }), "{err:?}");
    assert_eq!(api.received_requests().await.expect("recorded").len(), MAX_PAGES);
}

/// Item 4: a page larger than the response cap is refused while it is read.
#[tokio::test]
async fn a_huge_page_is_refused_at_the_response_cap() {
    let huge = "x".repeat(MAX_RESPONSE_BYTES + 1024);
    let api = fake_api(pod_list(vec![redis_pod()], &huge)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cluster = KubeCluster::connect(Some(&kubeconfig(dir.path(), &api, "", "{token: t}"))).await.expect("connect");
    let err = cluster.pods(&redis_query()).await.expect_err("refused, never read as a list");
    assert!(matches!(err, DesiredError::ResponseTooLarge { .. }), "{err:?}");
    assert!(err.to_string().contains("larger than 64 MiB"), "{err}");
}

/// Item 5: a credential plugin that hangs does not hang the run: --run-timeout ends it with a clear error.
#[tokio::test]
async fn a_hanging_credential_plugin_ends_at_the_run_timeout() {
    let (emu, api) = (emulator(STATE).await, fake_api(pod_list(vec![redis_pod()], "")).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = dir.path().join("started");
    let plugin = script(dir.path(), "slow.sh", &format!("touch {}\nexec sleep 60", started.display()));
    let user = format!(
        "{{exec: {{apiVersion: client.authentication.k8s.io/v1, command: {}, interactiveMode: Never}}}}",
        plugin.display()
    );
    let kubeconfig = kubeconfig(dir.path(), &api, "", &user);
    let begun = std::time::Instant::now();
    let run = diff(&emu, dir.path(), &kubeconfig, &["--run-timeout", "2"]).await;
    let took = begun.elapsed();
    assert!(started.exists(), "the plugin ran");
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("while connecting to Kubernetes"), "{}", run.all());
    assert!(took < Duration::from_secs(15), "took {took:?}: {}", run.all());
}

/// Item 9, logs: a pod IP that does not parse is logged; with a newline and an escape in it, the text log line
/// stays one line, escaped.
#[tokio::test]
async fn server_text_in_a_log_line_is_escaped() {
    let mut pod = redis_pod();
    pod["status"]["podIP"] = json!("10.0.2.1\u{1b}]0;owned\u{7}\n2026-01-01T00:00:00Z ERROR forged");
    let (emu, api) = (emulator(STATE).await, fake_api(pod_list(vec![pod], "")).await);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig(dir.path(), &api, "", "{token: t}");
    let run = diff(&emu, dir.path(), &kubeconfig, &[]).await;
    assert!(run.stderr.contains("ignoring a pod IP that does not parse"), "the warning fired: {}", run.all());
    assert!(run.stderr.contains("\\u{1b}]0;owned\\u{7}\\n2026-01-01T00:00:00Z ERROR forged"), "{}", run.all());
    assert!(!run.stderr.contains('\u{1b}'), "{:?}", run.stderr);
    assert!(!run.stderr.lines().any(|l| l.starts_with("2026-01-01T00:00:00Z ERROR")), "{}", run.all());
}

/// Item 4, the run deadline: past --run-timeout no change starts, the report is written and the run exits 1.
#[tokio::test]
async fn the_run_timeout_stops_starting_changes_and_reports() {
    let (emu, api) = (emulator(STATE).await, fake_api(pod_list(vec![redis_pod()], "")).await);
    emu.set_faults(clb_emulator::Faults { latency_ms: 1500, ..clb_emulator::Faults::default() });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig(dir.path(), &api, "", "{token: t}");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("write rules");
    let mut cmd = cli_process(&emu, &["reconcile", "--run-timeout", "1"]);
    cmd.arg("--kubeconfig").arg(&kubeconfig).arg("--rules").arg(&rules);
    let mutating = emu.calls().mutating();
    let run = run(assert_cmd::Command::from_std(cmd)).await;
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stderr.contains("the run reached --run-timeout (1s)"), "{}", run.all());
    assert!(run.stdout.contains("not attempted"), "the report is written: {}", run.all());
    // Issue 25 item 3: the report names the real reason.
    assert!(run.stdout.contains("stopped before this change (run timeout (--run-timeout 1s))"), "{}", run.all());
    assert!(!run.all().contains("SIGTERM"), "{}", run.all());
    assert_eq!(emu.calls().mutating(), mutating, "no change started after the deadline");
}

/// A SIGTERM after --run-timeout is a first signal, not a second one: the run still writes its report.
#[tokio::test]
async fn a_sigterm_after_the_run_timeout_still_gets_the_report() {
    let (emu, api) = (emulator(STATE).await, fake_api(pod_list(vec![redis_pod()], "")).await);
    emu.set_faults(clb_emulator::Faults { latency_ms: 1500, ..clb_emulator::Faults::default() });
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig(dir.path(), &api, "", "{token: t}");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("write rules");
    let mut cmd = cli_process(&emu, &["reconcile", "--run-timeout", "1"]);
    cmd.arg("--kubeconfig").arg(&kubeconfig).arg("--rules").arg(&rules);
    cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let child = cmd.spawn().expect("spawn clbsync");
    // The deadline passes at 1 s, while the reads (1.5 s each) are still going; the signal comes at 2 s.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().expect("wait")).await.expect("join");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("signal received"), "the signal arrived during the run: {stderr}");
    assert!(!stderr.contains("second signal"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stdout.contains("not attempted"), "the report is written: {stdout}\n{stderr}");
}

/// Issue 26: no secret of any credential source appears in what a run prints, logs (text or JSON, at trace level
/// for every library), reports, records as an Event or writes as a metric: not a key read from a file, not the
/// web-identity token (also when STS refuses it), not the temporary SecretKey or Token that STS and the metadata
/// service hand out.
#[tokio::test]
async fn no_secret_of_any_credential_source_appears_in_any_output_at_trace_level() {
    use crate::e2e::credentials::{keyless, spec, tke_env, trust_the_test_api_server};
    use clb_emulator::state::Credential;
    let world = crate::e2e::World::new("leaks", spec()).await;
    let token = trust_the_test_api_server(&world, None).await;
    let web_token = std::fs::read_to_string(token.path()).expect("the token");
    let admin = crate::support::kube::admin_client().await;
    let foreign = crate::support::kube::projected_token(&admin, &world.ns.name, "clbsync", "another-audience").await;
    let refused = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(refused.path(), &foreign).expect("write");
    world.emu.set_metadata(clb_emulator::MetadataConfig { role: Some("clbsync-node".into()), lifetime_ms: 7_200_000 });
    let (file_id, file_key) = ("AKIDclbsyncFILE00000000000000000000", "clbsyncFileSecretKey0000000000000");
    let mut state = world.emu.state();
    state.credentials.push(Credential { secret_id: file_id.into(), secret_key: file_key.into(), token: None });
    world.emu.set_state(state);
    let dir = tempfile::tempdir().expect("temp dir");
    let (id_path, key_path) = (dir.path().join("id"), dir.path().join("key"));
    std::fs::write(&id_path, file_id).expect("write");
    std::fs::write(&key_path, format!("{file_key}\n")).expect("write");
    let files = vec![
        ("CLOUD_TENCENT_SECRET_ID_FILE", id_path.display().to_string()),
        ("CLOUD_TENCENT_SECRET_KEY_FILE", key_path.display().to_string()),
    ];
    let (sts, metadata) = (world.emu.endpoint(), world.emu.metadata_url());
    let metrics = dir.path().join("run.prom");
    let metrics_arg = metrics.display().to_string();
    type Env = Vec<(&'static str, String)>;
    let cases: Vec<(&str, Vec<&str>, Env)> = vec![
        ("file", vec!["--credentials", "file"], files),
        ("tke-oidc", vec!["--sts-endpoint", &sts], tke_env(token.path())),
        ("tke-oidc refused", vec!["--sts-endpoint", &sts], tke_env(refused.path())),
        ("cvm-role", vec!["--credentials", "cvm-role", "--metadata-endpoint", &metadata], vec![]),
    ];
    let mut seen = Vec::new();
    for (name, args, env) in &cases {
        for format in ["text", "json"] {
            let mut all = vec!["reconcile", "-vv", "--log-format", format, "--metrics-file", &metrics_arg];
            all.extend(args);
            let mut cmd = keyless(&world, &all, env);
            cmd.env("RUST_LOG", "trace");
            let out = crate::e2e::run(cmd).await;
            let expected = if name.ends_with("refused") { 1 } else { 0 };
            out.assert_code(expected);
            seen.push((format!("{name} ({format})"), out.all()));
            seen.push((format!("{name} metrics"), std::fs::read_to_string(&metrics).unwrap_or_default()));
        }
    }
    let events = kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin, &world.ns.name)
        .list(&Default::default())
        .await
        .expect("list Events");
    assert!(!events.items.is_empty(), "the runs recorded Events");
    seen.push(("Events".into(), serde_json::to_string(&events.items).expect("JSON")));
    assert!(seen.iter().any(|(_, text)| text.contains("InvalidParameter.WebIdentityTokenError")), "STS refused one");
    let issued = world.emu.issued_credentials();
    assert_eq!(issued.len(), 3, "STS twice, the metadata service once (the same while fresh)");
    let signature = |jwt: &str| jwt.rsplit('.').next().expect("a JWT").to_owned();
    let mut secrets =
        vec![file_key.to_owned(), web_token.clone(), signature(&web_token), foreign.clone(), signature(&foreign)];
    secrets.extend(issued.iter().flat_map(|c| [c.secret_key.clone(), c.token.clone()]));
    for (what, text) in &seen {
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{what}: a secret ({} chars) leaked:\n{text}", secret.len());
        }
    }
}
