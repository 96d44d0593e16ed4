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
    assert!(err.to_string().contains("larger than 4194304 bytes"), "{err}");
}

/// The limit holds for files whose size says nothing: a FIFO (size 0) and /dev/zero (endless).
#[test]
fn an_endless_or_unsized_rules_file_is_read_only_up_to_the_limit() {
    let err = rules::load(Path::new("/dev/zero")).expect_err("endless");
    assert!(err.to_string().contains("larger than 4194304 bytes"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("rules.yaml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success(), "mkfifo failed");
    let writer = {
        let fifo = fifo.clone();
        // 10 MiB of valid YAML comments; the writer stops when the reader closes the FIFO (EPIPE).
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).expect("open the FIFO for writing");
            let line = format!("#{}\n", "x".repeat(1023));
            let mut written = 0usize;
            for _ in 0..10 * 1024 {
                if f.write_all(line.as_bytes()).is_err() {
                    break;
                }
                written += line.len();
            }
            written
        })
    };
    let err = rules::load(&fifo).expect_err("10 MiB through a FIFO");
    assert!(err.to_string().contains("larger than 4194304 bytes"), "{err}");
    let written = writer.join().expect("writer thread");
    assert!(written < 10 << 20, "the reader stopped early, so the writer could not write everything: {written}");
}

/// The YAML parser's cost grows with flow nesting depth per token: a 500 KB `{a: {a: …` file is refused by a
/// byte scan before it reaches the parser.
#[test]
fn deeply_nested_flow_mappings_are_refused_quickly() {
    let text = "{a: ".repeat(125_000);
    let started = std::time::Instant::now();
    let err = rules::parse("rules.yaml", &text).expect_err("too deep");
    let elapsed = started.elapsed();
    assert!(err.to_string().contains("nested more than 128 levels"), "{err}");
    assert_eq!((err.problems()[0].line, err.problems()[0].column), (1, 129 * 4 - 3));
    assert!(elapsed < std::time::Duration::from_millis(500), "took {elapsed:?}");
}

/// Brackets inside quoted scalars and comments, and apostrophes inside plain scalars, do not fool the scan.
#[test]
fn the_nesting_scan_skips_quotes_and_comments_only_where_yaml_does() {
    let deep = "[".repeat(200);
    for hidden in [format!("a: \"{deep}\"\n"), format!("a: '{deep}'\n"), format!("# {deep}\n")] {
        let err = rules::parse("rules.yaml", &hidden).expect_err("not a rules list");
        assert!(!err.to_string().contains("nested more than"), "{hidden:?}: {err}");
    }
    let evasion = format!("a: don't\nb: {deep}\n");
    let err = rules::parse("rules.yaml", &evasion).expect_err("too deep");
    assert!(err.to_string().contains("nested more than 128 levels"), "{err}");
}

/// insta's glob gives absolute paths; messages should show the path as a user would type it.
fn relative(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}
