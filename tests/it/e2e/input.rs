//! Bad input: rules that do not validate never reach the network; credential problems are one actionable line
//! and never print the secret; garbage API responses are clear errors; plain http is refused off loopback.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clb_emulator::Config;

use super::{Run, Slot, Spec, TEMP_ID, TEMP_KEY, TOKEN, World, cli_process, eni, p, run};
use crate::support::{clbsync, mask_timestamp, seen};

#[tokio::test]
async fn no_rules_file_that_fails_validation_causes_a_single_api_call() {
    let emu = clb_emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), Config::default()).await.expect("emulator");
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/rules"))
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("bad-")))
        .collect();
    files.sort();
    assert!(files.len() >= 15, "the corpus is there");
    for file in files {
        for sub in ["reconcile", "diff"] {
            let mut cmd = cli_process(&emu, &[sub, "--kubeconfig", "/nonexistent/kubeconfig"]);
            cmd.arg("--rules").arg(&file);
            let out = run(assert_cmd::Command::from_std(cmd)).await;
            out.assert_code(1);
            assert!(out.stderr.contains(file.file_name().and_then(|n| n.to_str()).expect("name")), "{}", out.all());
        }
        assert_eq!(emu.calls().total(), 0, "{}: the emulator saw a call", file.display());
    }
}

#[test]
fn plain_http_to_a_non_loopback_endpoint_is_refused_before_any_network_call() {
    let started = Instant::now();
    let out = clbsync()
        .args(["diff", "--rules", "rules.yaml", "--endpoint", "http://example.com", "--kubeconfig", "/nonexistent"])
        .env("TENCENTCLOUD_SECRET_ID", clb_emulator::DEFAULT_SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", clb_emulator::DEFAULT_SECRET_KEY)
        .output()
        .expect("run");
    assert!(started.elapsed() < Duration::from_secs(5));
    insta::assert_snapshot!(seen(&out));
}

/// One credential problem: the environment it runs with and what the emulator does.
struct Case {
    name: &'static str,
    env: &'static [(&'static str, &'static str)],
    clock_offset: i64,
}

const CASES: &[Case] = &[
    Case { name: "missing", env: &[], clock_offset: 0 },
    Case {
        name: "wrong-key",
        env: &[
            ("TENCENTCLOUD_SECRET_ID", clb_emulator::DEFAULT_SECRET_ID),
            ("TENCENTCLOUD_SECRET_KEY", "clbsyncNotTheRightKey0000000000000"),
        ],
        clock_offset: 0,
    },
    Case {
        name: "unknown-id",
        env: &[
            ("TENCENTCLOUD_SECRET_ID", "AKIDclbsyncUNKNOWN0000000000000000"),
            ("TENCENTCLOUD_SECRET_KEY", clb_emulator::DEFAULT_SECRET_KEY),
        ],
        clock_offset: 0,
    },
    Case {
        name: "wrong-token",
        env: &[
            ("TENCENTCLOUD_SECRET_ID", TEMP_ID),
            ("TENCENTCLOUD_SECRET_KEY", TEMP_KEY),
            ("TENCENTCLOUD_SESSION_TOKEN", "clbsync-expired-session-token"),
        ],
        clock_offset: 0,
    },
    Case {
        name: "clock-skew",
        env: &[
            ("TENCENTCLOUD_SECRET_ID", clb_emulator::DEFAULT_SECRET_ID),
            ("TENCENTCLOUD_SECRET_KEY", clb_emulator::DEFAULT_SECRET_KEY),
        ],
        clock_offset: 900,
    },
];

async fn diff_with(world: &World, case: &Case, extra: &[&str]) -> Run {
    world.emu.set_clock_offset(case.clock_offset);
    let mut cmd = world.process(&[&["diff"], extra].concat());
    cmd.env_remove("TENCENTCLOUD_SECRET_ID").env_remove("TENCENTCLOUD_SECRET_KEY");
    for (k, v) in case.env {
        cmd.env(k, v);
    }
    let out = run(assert_cmd::Command::from_std(cmd)).await;
    world.emu.set_clock_offset(0);
    out
}

fn world_spec() -> Spec {
    Spec::default()
        .pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Api, [eni("10.99.0.1", 8080, 10)])
}

#[tokio::test]
async fn each_credential_problem_is_an_actionable_error_that_changes_nothing() {
    let world = World::new("creds", world_spec()).await;
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[request-id]");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[port]");
    settings.add_filter(&regex_escape(&world.ns.name), "[ns]");
    settings.add_filter(&regex_escape(&world.rules_path().display().to_string()), "[rules]");
    settings.add_filter(r"\d+(\.\d+)?(ms|s)\b", "[duration]");
    settings.add_filter(r"\b1\d{9}\b", "[unix-time]");
    for case in CASES {
        let out = diff_with(&world, case, &[]).await;
        out.assert_code(1);
        // The table's width follows the (random) namespace name; the reasons below it are what matters here.
        let stdout: String =
            out.stdout.lines().filter(|l| !l.starts_with(['┌', '│', '╞', '└'])).map(|l| format!("{l}\n")).collect();
        let text = format!("exit: {:?}\n--- stdout\n{stdout}--- stderr\n{}", out.code, mask_times(&out.stderr));
        settings.bind(|| insta::assert_snapshot!(format!("credentials-{}", case.name), text));
    }
    assert_eq!(world.emu.calls().mutating(), 0);
}

#[tokio::test]
async fn neither_the_secret_key_nor_the_token_appears_in_any_output_even_at_trace_level() {
    let world = World::new("leak", world_spec()).await;
    let secrets =
        [clb_emulator::DEFAULT_SECRET_KEY, TEMP_KEY, TOKEN, "clbsyncNotTheRightKey", "clbsync-expired-session"];
    let good_token = Case {
        name: "token",
        env: &[
            ("TENCENTCLOUD_SECRET_ID", TEMP_ID),
            ("TENCENTCLOUD_SECRET_KEY", TEMP_KEY),
            ("TENCENTCLOUD_SESSION_TOKEN", TOKEN),
        ],
        clock_offset: 0,
    };
    for case in CASES.iter().chain([&good_token]) {
        for log_format in ["text", "json"] {
            let out = diff_with(&world, case, &["-vv", "--log-format", log_format]).await;
            for secret in secrets {
                assert!(!out.all().contains(secret), "{}: `{secret}` leaked\n{}", case.name, out.all());
            }
        }
    }
    let good = diff_with(&world, &good_token, &[]).await;
    good.assert_code(0);
    let applied = world.run(&["reconcile", "-vv"]).await;
    applied.assert_code(0);
    for secret in secrets {
        assert!(!applied.all().contains(secret), "`{secret}` leaked\n{}", applied.all());
    }
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| if c.is_alphanumeric() || c == '-' || c == '/' || c == '_' { vec![c] } else { vec!['\\', c] })
        .collect()
}

fn mask_times(stderr: &str) -> String {
    stderr.lines().map(|l| format!("{}\n", mask_timestamp(l))).collect()
}

/// Issue 18: a network failure says what failed (refused, TLS) in clbsync's words, once in the report and once in
/// the error line (issue 30 #4), and no library prints its own raw log lines about it.
#[test]
fn network_failures_name_their_cause_once_without_library_log_lines() {
    // The test API server speaks TLS with a certificate no public root signed: a TLS failure.
    let tls = format!("https://127.0.0.1:{}", crate::support::kube::api_port());
    for (endpoint, cause) in [
        (tls.as_str(), "TLS handshake failed: invalid peer certificate: UnknownIssuer"),
        ("http://127.0.0.1:9", "connection refused (nothing listens at that address and port)"),
    ] {
        let out = clbsync()
            .args(["diff", "--rules", "rules.yaml", "--endpoint", endpoint, "--kubeconfig"])
            .arg(crate::support::kube::kubeconfig_path())
            .env("TENCENTCLOUD_SECRET_ID", clb_emulator::DEFAULT_SECRET_ID)
            .env("TENCENTCLOUD_SECRET_KEY", clb_emulator::DEFAULT_SECRET_KEY)
            .output()
            .expect("run");
        let all = seen(&out);
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains(cause), "{endpoint}: {all}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        // Once in the report, and once in the last line on stderr: all a CI log shows when stdout goes to a file.
        assert_eq!(stdout.matches(cause).count(), 1, "the report says the cause once: {all}");
        let last = stderr.lines().last().unwrap_or("");
        assert!(last.starts_with("error: 4 rule(s) skipped; the first: ") && last.contains(cause), "{stderr}");
        assert_eq!(stderr.matches(cause).count(), 1, "the logs do not repeat it: {stderr}");
        assert!(!all.contains("error sending request for url"), "reqwest's words are not the message: {all}");
        assert!(!stderr.contains("rustls") && !stderr.contains(" ERROR "), "raw library lines: {stderr}");
    }
}

/// Issue 24 #6: `validate --kubeconfig` reports, before the rules file is applied, a named port that no container
/// of the rule's pods has (at its `port:` line, like any validation problem) and a Deployment that does not exist.
/// Plain `validate` stays offline and finds nothing.
#[tokio::test]
async fn validate_with_a_kubeconfig_reports_a_port_name_no_container_has_at_its_line() {
    use crate::support::kube::{TestNs, kubeconfig_path};
    let ns = TestNs::new("e2e-vports").await;
    let web: k8s_openapi::api::apps::v1::Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "x", "ports": [{"name": "http", "containerPort": 8080}]}]},
            },
        },
    }))
    .expect("a Deployment");
    kube::Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(ns.client.clone(), &ns.name)
        .create(&Default::default(), &web)
        .await
        .expect("create deployment web");
    let rules = super::write_temp(&format!(
        "- load_balancer_id: lb-12345678
  listeners:
    - port: 80
      protocol: tcp
      backend: {{namespace: {ns}, deployment: web, port: http}}
    - port: 81
      protocol: tcp
      backend:
        namespace: {ns}
        deployment: web
        port: htpp
    - port: 82
      protocol: tcp
      backend: {{namespace: {ns}, deployment: nope, port: http}}
",
        ns = ns.name
    ));
    let file = rules.path().display().to_string();
    let validate = |extra: &[&str]| {
        let mut cmd = clbsync();
        cmd.arg("validate").arg("--rules").arg(rules.path()).args(extra);
        tokio::task::spawn_blocking(move || cmd.output().expect("clbsync runs"))
    };
    let offline = validate(&[]).await.expect("join");
    assert_eq!(offline.status.code(), Some(0), "{}", seen(&offline));

    let kubeconfig = kubeconfig_path().display().to_string();
    let online = validate(&["--kubeconfig", &kubeconfig]).await.expect("join");
    let stderr = String::from_utf8_lossy(&online.stderr);
    assert_eq!(online.status.code(), Some(1), "{}", seen(&online));
    assert!(
        stderr.contains(&format!(
            "{file}:11:15: [0].listeners[1].backend.port: no container of the pod template of deployment {}/web has a \
             port named `htpp` (they have `http`)",
            ns.name
        )),
        "{}",
        seen(&online)
    );
    assert!(
        stderr.contains(&format!("{file}:12:1: [0].listeners[2].backend: deployment {}/nope not found", ns.name)),
        "{}",
        seen(&online)
    );
    assert!(!stderr.contains("listeners[0]"), "the good rule has no problem\n{}", seen(&online));

    let json = validate(&["--kubeconfig", &kubeconfig, "-o", "json"]).await.expect("join");
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["problems"][0]["line"], 11, "{doc}");
}
