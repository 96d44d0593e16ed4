//! The rules corpus: every invalid file gives exact, located messages; every valid one parses.

use std::path::Path;

use clbsync::rules;

fn fixture(name: &str) -> String {
    format!("tests/fixtures/rules/{name}")
}

#[test]
fn bad_rules_files_report_every_problem_with_file_line_and_field() {
    insta::glob!("../fixtures/rules", "bad-*.yaml", |path| {
        let rel = relative(path);
        let err = rules::load(Path::new(&rel)).expect_err("a bad-* fixture must not validate");
        insta::assert_snapshot!(err.to_string());
    });
}

#[test]
fn good_rules_files_parse() {
    insta::glob!("../fixtures/rules", "ok-*.yaml", |path| {
        let rel = relative(path);
        let parsed = rules::load(Path::new(&rel)).unwrap_or_else(|e| panic!("{e}"));
        insta::assert_debug_snapshot!(parsed);
    });
}

#[test]
fn the_shipped_example_rules_file_is_valid() {
    let parsed = rules::load(Path::new("rules.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(parsed.rules.len(), 4);
}

#[test]
fn all_problems_are_reported_at_once_not_only_the_first() {
    let err = rules::load(Path::new(&fixture("bad-several-problems.yaml"))).expect_err("invalid");
    assert!(err.problems().len() >= 4, "{err}");
}

#[test]
fn the_port_range_error_matches_the_documented_format() {
    let err = rules::load(Path::new(&fixture("bad-port-range.yaml"))).expect_err("invalid");
    assert_eq!(
        err.problems()[0].render("rules.yaml"),
        "rules.yaml:11:19: [0].listeners[0].rules[0].backend.port: expected 1..65535, got 70000"
    );
}

#[test]
fn a_missing_rules_file_names_the_path_and_the_option() {
    let err = rules::load(Path::new("does/not/exist.yaml")).expect_err("missing");
    let msg = err.to_string();
    assert!(msg.contains("does/not/exist.yaml") && msg.contains("--rules"), "{msg}");
}

#[test]
fn an_oversized_rules_file_is_refused_before_parsing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("huge.yaml");
    std::fs::write(&path, "#".repeat(5 * 1024 * 1024)).expect("write");
    let err = rules::load(&path).expect_err("too big");
    assert!(err.to_string().contains("the limit is"), "{err}");
}

/// insta's glob gives absolute paths; messages should show the path as a user would type it.
fn relative(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}
