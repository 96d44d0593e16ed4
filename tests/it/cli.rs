//! What a user sees from the command line: help, validation, exit codes, credential errors.

use crate::support::{clbsync, seen};

#[test]
fn help_of_every_command_is_stable() {
    for args in [&["--help"][..], &["reconcile", "--help"], &["diff", "--help"], &["validate", "--help"]] {
        let out = clbsync().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(0));
        insta::assert_snapshot!(format!("help-{}", args.join("-")), String::from_utf8_lossy(&out.stdout));
    }
}

#[test]
fn help_documents_every_exit_code() {
    let out = clbsync().arg("--help").output().expect("run");
    let help = String::from_utf8_lossy(&out.stdout);
    for code in ["  0 ", "  1 ", "  2 ", "  64 "] {
        assert!(help.contains(code), "exit code `{code}` missing from --help");
    }
}

#[test]
fn validate_accepts_the_shipped_rules_file() {
    let out = clbsync().args(["validate", "--rules", "rules.yaml"]).output().expect("run");
    insta::assert_snapshot!(seen(&out));
}

#[test]
fn validate_lists_every_problem_and_exits_1() {
    let out = clbsync()
        .args(["validate", "--rules", "tests/fixtures/rules/bad-several-problems.yaml"])
        .output()
        .expect("run");
    insta::assert_snapshot!(seen(&out));
}

#[test]
fn validate_json_is_machine_readable() {
    let out = clbsync()
        .args(["validate", "-o", "json", "--rules", "tests/fixtures/rules/bad-port-range.yaml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["problems"][0]["line"], 11);
    assert_eq!(doc["problems"][0]["path"], "[0].listeners[0].rules[0].backend.port");
}

#[test]
fn validate_reads_the_rules_path_from_the_environment() {
    let out =
        clbsync().arg("validate").env("CLBSYNC_RULES", "tests/fixtures/rules/bad-empty.yaml").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad-empty.yaml"));
}

#[test]
fn usage_errors_exit_64_not_2() {
    for args in [&["frobnicate"][..], &["diff", "--no-such-flag"], &["diff", "-o", "yaml"], &[]] {
        let out = clbsync().args(args).output().expect("run");
        assert_eq!(out.status.code(), Some(64), "args {args:?}: {}", seen(&out));
    }
}

#[test]
fn detailed_exitcode_on_reconcile_requires_dry_run() {
    let out = clbsync().args(["reconcile", "--detailed-exitcode"]).output().expect("run");
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn missing_credentials_fail_before_any_network_call() {
    // The endpoint is a closed port: reaching the network would show up as a connection error instead.
    let out =
        clbsync().args(["diff", "--rules", "rules.yaml", "--endpoint", "http://127.0.0.1:9"]).output().expect("run");
    insta::assert_snapshot!(seen(&out));
}

#[test]
fn invalid_rules_fail_before_credentials_or_network() {
    let out = clbsync().args(["reconcile", "--rules", "tests/fixtures/rules/bad-ids.yaml"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad-ids.yaml:1:21"), "{stderr}");
    assert!(!stderr.contains("credential"), "{stderr}");
}

#[test]
fn secrets_never_appear_in_output_even_when_the_key_is_malformed() {
    let secret = "clbsyncTopSecretValue0000000000 ";
    let out = clbsync()
        .args(["diff", "--rules", "rules.yaml", "--endpoint", "http://127.0.0.1:9", "-vv"])
        .env("TENCENTCLOUD_SECRET_ID", "AKIDtest0000000000000000000000000000")
        .env("TENCENTCLOUD_SECRET_KEY", secret)
        .output()
        .expect("run");
    let all = seen(&out);
    assert!(!all.contains(secret.trim()), "secret leaked: {all}");
}

#[test]
fn a_missing_rules_file_says_so_once() {
    let out = clbsync().args(["diff", "--rules", "tests/fixtures/rules/no-such-file.yaml"]).output().expect("run");
    insta::assert_snapshot!(seen(&out), @r"
    exit: 1
    --- stdout
    --- stderr
    error: cannot read rules file tests/fixtures/rules/no-such-file.yaml: No such file or directory (os error 2); check --rules / CLBSYNC_RULES
    ");
}

#[test]
fn a_bad_value_from_the_environment_names_the_variable() {
    let out = clbsync().args(["diff", "--rules", "rules.yaml"]).env("CLBSYNC_RATE_LIMIT", "abc").output().expect("run");
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("the value of --rate-limit came from the environment variable CLBSYNC_RATE_LIMIT"),
        "{stderr}"
    );
    let out = clbsync().args(["diff", "--rules", "rules.yaml", "--rate-limit", "abc"]).output().expect("run");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("environment"), "a flag's value is the flag's");
}

#[test]
fn a_run_option_before_the_command_says_where_it_goes() {
    let out = clbsync().args(["--region", "ap-guangzhou", "diff"]).output().expect("run");
    insta::assert_snapshot!(seen(&out), @r"
    exit: 64
    --- stdout
    --- stderr
    error: --region is an option of `diff` and `reconcile`: put it after the command, e.g. `clbsync diff --region ...`
    ");
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    // Enough problems that the JSON outgrows the pipe's buffer, so clbsync is still writing when `head` exits.
    let mut rules = String::from("- load_balancer_id: lb-1a2b3c4d\n  listeners:\n");
    for _ in 0..3000 {
        rules.push_str("    - {port: 70000, protocol: tcp, backend: {namespace: a, deployment: b, port: 80}}\n");
    }
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), rules).expect("write");
    let line = format!(
        "set -o pipefail; '{}' validate -o json --rules '{}' | head -c 10 >/dev/null",
        env!("CARGO_BIN_EXE_clbsync"),
        file.path().display()
    );
    let out = std::process::Command::new("bash").args(["-c", &line]).output().expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "nothing about the closed pipe: {stderr}");
    assert_eq!(out.status.code(), Some(1), "the exit code still says the file is invalid");
}
