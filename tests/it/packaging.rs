//! What ships besides the binary: cronjob.yaml and the Dockerfile, checked with the tools platform teams use.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool installed into `.venv` by `testbed/python-sdk.sh`; missing is a loud failure, never a skip.
fn venv_tool(name: &str) -> PathBuf {
    let path = root().join(".venv/bin").join(name);
    assert!(path.exists(), "{} is missing: run testbed/python-sdk.sh", path.display());
    path
}

fn documents() -> Vec<Value> {
    let text = std::fs::read_to_string(root().join("cronjob.yaml")).expect("cronjob.yaml");
    serde_yaml::Deserializer::from_str(&text).map(|d| Value::deserialize(d).expect("valid YAML")).collect()
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter().find(|d| d["kind"] == kind).unwrap_or_else(|| panic!("cronjob.yaml has no {kind}"))
}

#[test]
fn cronjob_yaml_validates_strictly_against_kubernetes_1_30_and_newer() {
    for version in ["1.30.0", "1.33.0", "1.37.0"] {
        let out = Command::new(venv_tool("kubernetes-validate"))
            .args(["--strict", "--kubernetes-version", version, "cronjob.yaml"])
            .current_dir(root())
            .output()
            .expect("run kubernetes-validate");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "kubernetes-validate {version}:\n{text}");
        assert_eq!(text.matches("passed").count(), 7, "every document validated against {version}:\n{text}");
    }
}

#[test]
fn cronjob_runs_every_minute_without_overlap_and_ends_before_the_next_run() {
    let docs = documents();
    let cron = &kind(&docs, "CronJob")["spec"];
    assert_eq!(cron["schedule"], "* * * * *");
    assert_eq!(cron["concurrencyPolicy"], "Forbid");
    assert!(cron["startingDeadlineSeconds"].as_u64().is_some());
    assert!(cron["successfulJobsHistoryLimit"].as_u64().is_some() && cron["failedJobsHistoryLimit"].as_u64().is_some());
    let job = &cron["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"], 0);
    let deadline = job["activeDeadlineSeconds"].as_u64().expect("activeDeadlineSeconds");
    assert!(deadline < 60, "activeDeadlineSeconds {deadline} must be shorter than the 60 s schedule");
}

#[test]
fn cronjob_pod_is_locked_down() {
    let docs = documents();
    let pod = &kind(&docs, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 1001);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["serviceAccountName"], "clbsync");
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());
    assert!(c["resources"]["requests"]["cpu"].is_string() && c["resources"]["limits"]["cpu"].is_string());
    assert_eq!(c["volumeMounts"][0]["readOnly"], true);
    for var in c["env"].as_sequence().expect("env") {
        if var["name"].as_str().is_some_and(|n| n.contains("SECRET")) {
            assert!(var["valueFrom"]["secretKeyRef"].is_mapping(), "{var:?} must come from the Secret");
            assert!(var["value"].is_null(), "no literal credentials in cronjob.yaml");
        }
    }
}

#[test]
fn cluster_role_grants_only_reads_of_pods_deployments_and_namespaces() {
    let docs = documents();
    for rule in kind(&docs, "ClusterRole")["rules"].as_sequence().expect("rules") {
        for verb in rule["verbs"].as_sequence().expect("verbs") {
            assert!(matches!(verb.as_str(), Some("get" | "list")), "write verb {verb:?} in {rule:?}");
        }
        for resource in rule["resources"].as_sequence().expect("resources") {
            assert!(matches!(resource.as_str(), Some("pods" | "deployments" | "namespaces")), "{resource:?}");
        }
    }
}

#[test]
fn the_rules_in_the_configmap_pass_validate() {
    let docs = documents();
    let text = kind(&docs, "ConfigMap")["data"]["rules.yaml"].as_str().expect("rules.yaml in the ConfigMap");
    clbsync::rules::parse("cronjob.yaml#rules.yaml", text).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_secret_is_a_template_without_real_values() {
    let docs = documents();
    let data = &kind(&docs, "Secret")["stringData"];
    assert_eq!(data["secret-id"], "REPLACE_ME");
    assert_eq!(data["secret-key"], "REPLACE_ME");
}

#[test]
fn dockerfile_passes_hadolint_with_no_warnings() {
    let out = Command::new(venv_tool("hadolint"))
        .args(["--failure-threshold", "style", "Dockerfile"])
        .current_dir(root())
        .output()
        .expect("run hadolint");
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "hadolint printed findings:\n{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn dockerfile_builds_with_locked_dependencies_and_runs_clbsync_as_uid_1001() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let from: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "multi-stage: {from:?}");
    assert!(from[0].contains("rust:1.") && !from[0].contains(":latest"), "pinned Rust image: {}", from[0]);
    assert!(text.contains("RUN cargo build --release --locked --bin clbsync"));
    assert!(text.contains("USER 1001:1001"));
    assert!(text.contains(r#"ENTRYPOINT ["clbsync"]"#) && text.contains(r#"CMD ["reconcile"]"#));
    assert!(text.contains("org.opencontainers.image.title"));
}
