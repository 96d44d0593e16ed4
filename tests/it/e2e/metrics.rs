//! Metrics of a batch `reconcile` (issue 15): pushed to a real Prometheus Pushgateway (Debian's
//! `prometheus-pushgateway`, started by testbed/pushgateway.sh) and scraped back, or written for the textfile
//! collector; checked against the emulator's call log. A push or write that fails never changes the exit code.
//! Both expositions, the batch text format and watch mode's OpenMetrics, pass Prometheus's own checks (promtool).

use std::collections::BTreeMap;

use super::watch::{REACT, Watcher, eventually, free_port, has, http_get, samples};
use super::{Run, Slot, Spec, World, p};
use crate::monitoring::promtool;

/// The test Pushgateway's port: `CLBSYNC_TEST_PUSHGATEWAY` (testbed/test.sh sets it), else the one
/// testbed/pushgateway.sh recorded. A Pushgateway that does not answer fails the test when `CI=true` or the variable
/// is set; otherwise (a developer's filtered run) the test is skipped, saying so.
fn pushgateway() -> Option<u16> {
    let given = std::env::var("CLBSYNC_TEST_PUSHGATEWAY").ok();
    let must = given.is_some() || std::env::var("CI").as_deref() == Ok("true");
    let url = given.or_else(|| {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), |t| root.join(t));
        let port = std::fs::read_to_string(target.join("pushgateway/port")).ok()?;
        Some(format!("http://127.0.0.1:{}", port.trim()))
    });
    let port = url.as_deref().and_then(|u| u.rsplit_once(':')?.1.trim_end_matches('/').parse().ok());
    let ready = port.is_some_and(|port| http_get(port, "/-/ready").is_some_and(|(status, _)| status == 200));
    if ready {
        return port;
    }
    let why = format!("no Pushgateway answers at {url:?}: run testbed/pushgateway.sh start (testbed/test.sh does)");
    assert!(!must, "{why}");
    eprintln!("skipped: {why}");
    None
}

/// Nothing bound: every ready pod is registered (6 targets over the 4 rules).
fn spec() -> Spec {
    Spec::default().pods([p("api", "10.1.0.1"), p("api", "10.1.0.2"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
}

/// The Pushgateway's samples of `name` in the group of owner `owner`, keyed by their other labels.
fn group_samples(text: &str, name: &str, owner: &str) -> BTreeMap<String, f64> {
    samples(text, name)
        .into_iter()
        .filter(|(labels, _)| labels.get("owner").map(String::as_str) == Some(owner))
        .map(|(mut labels, v)| {
            for k in ["owner", "job", "instance"] {
                labels.remove(k);
            }
            let key: Vec<String> = labels.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            (key.join(","), v)
        })
        .collect()
}

/// The emulator's requests per action, as the metric's keys (`action=…,code=ok`).
fn emulator_calls(world: &World) -> BTreeMap<String, f64> {
    world.emu.calls().by_action.iter().map(|(a, n)| (format!("action={a},code=ok"), *n as f64)).collect()
}

fn scrape(port: u16) -> String {
    let (status, body) = http_get(port, "/metrics").expect("the Pushgateway answers");
    assert_eq!(status, 200, "{body}");
    body
}

/// The owner is the test's namespace: parallel tests push to groups of their own.
async fn reconcile_pushing(world: &World, url: &str) -> Run {
    world.run(&["reconcile", "--pushgateway", url, "--owner", &world.ns.name]).await
}

#[tokio::test]
async fn a_reconcile_pushes_its_metrics_and_the_next_run_replaces_them() {
    let Some(port) = pushgateway() else { return };
    let world = World::new("pushgw", spec()).await;
    let url = format!("http://127.0.0.1:{port}");
    let owner = world.ns.name.clone();

    let first = reconcile_pushing(&world, &url).await;
    first.assert_code(0);
    let text = scrape(port);
    let changes = group_samples(&text, "clbsync_changes_total", &owner);
    let bound = Slot::ALL.iter().map(|s| world.targets(*s).len()).sum::<usize>();
    assert_eq!(bound, 6, "{}", first.all());
    assert_eq!(changes, BTreeMap::from([("action=register,status=applied".to_owned(), 6.0)]), "{text}");
    assert_eq!(group_samples(&text, "clbsync_api_calls_total", &owner), emulator_calls(&world), "{text}");
    assert_eq!(group_samples(&text, "clbsync_reconcile_total", &owner), BTreeMap::from([("result=ok".into(), 1.0)]));
    assert_eq!(group_samples(&text, "clbsync_rules", &owner)["status=ready"], 4.0, "{text}");
    let success = group_samples(&text, "clbsync_last_success_timestamp_seconds", &owner)[""];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!((now - 120.0..=now + 1.0).contains(&success), "{success} is not about now ({now})");
    assert!(!group_samples(&text, "push_time_seconds", &owner).is_empty(), "{text}");
    // Typed as pushed: the Pushgateway read text 0.0.4, not OpenMetrics taken for untyped series.
    for line in [
        "# TYPE clbsync_api_calls_total counter",
        "# TYPE clbsync_reconcile_duration_seconds histogram",
        "# TYPE clbsync_last_success_timestamp_seconds gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
    }

    world.emu.reset_calls();
    let second = reconcile_pushing(&world, &url).await;
    second.assert_code(0);
    assert!(second.stdout.starts_with("In sync"), "{}", second.all());
    let text = scrape(port);
    assert!(
        group_samples(&text, "clbsync_changes_total", &owner).is_empty(),
        "the second push replaced the first: no change series left\n{text}"
    );
    assert_eq!(
        group_samples(&text, "clbsync_api_calls_total", &owner),
        emulator_calls(&world),
        "the second run's calls only, not added to the first's\n{text}"
    );
    assert_eq!(group_samples(&text, "clbsync_reconcile_total", &owner), BTreeMap::from([("result=ok".into(), 1.0)]));
}

#[tokio::test]
async fn an_unreachable_pushgateway_is_logged_once_without_its_password_and_the_run_succeeds() {
    let world = World::new("pushgwdown", spec()).await;
    let url = format!("http://clbsync:s3cret-push@127.0.0.1:{}/", free_port());
    let run = reconcile_pushing(&world, &url).await;
    run.assert_code(0);
    assert_eq!(world.targets(Slot::Api).len(), 2, "the run did its work\n{}", run.all());
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("Pushgateway")).collect();
    assert_eq!(lines.len(), 1, "one line about it\n{}", run.all());
    assert!(lines[0].contains("WARN") && lines[0].contains("http://***@127.0.0.1:"), "{}", lines[0]);
    assert!(!run.all().contains("s3cret-push"), "the password is never printed\n{}", run.all());
}

#[tokio::test]
async fn metrics_file_is_written_in_the_text_format_and_replaced_whole() {
    let world = World::new("metricsfile", spec()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("clbsync.prom");
    std::fs::write(&path, "stale 1\n").expect("an earlier run's file");
    let run = world.run(&["reconcile", "--metrics-file", path.to_str().expect("utf-8")]).await;
    run.assert_code(0);
    let text = std::fs::read_to_string(&path).expect("the metrics file");
    assert!(!text.contains("stale") && !text.contains("# EOF"), "{text}");
    for line in text.lines() {
        let ok = match line.strip_prefix("# ") {
            Some(meta) => meta.starts_with("HELP clbsync_") || meta.starts_with("TYPE clbsync_"),
            None => line
                .rsplit_once(' ')
                .is_some_and(|(series, v)| series.starts_with("clbsync_") && (v.parse::<f64>().is_ok() || v == "+Inf")),
        };
        assert!(ok, "not Prometheus text 0.0.4: {line:?}\n{text}");
    }
    let changes: f64 = samples(&text, "clbsync_changes_total").iter().map(|(_, v)| v).sum();
    assert_eq!(changes, 6.0, "{text}");
    let names: Vec<_> = std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["clbsync.prom"], "no temporary file is left");

    let missing = dir.path().join("missing/clbsync.prom");
    let run = world.run(&["reconcile", "--metrics-file", missing.to_str().expect("utf-8")]).await;
    run.assert_code(0);
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("metrics file")).collect();
    assert_eq!(lines.len(), 1, "one line about it\n{}", run.all());
}

#[tokio::test]
async fn a_dry_run_pushes_nothing_and_says_so() {
    let world = World::new("pushgwdry", spec()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("clbsync.prom");
    let run = world.run(&["reconcile", "--dry-run", "--metrics-file", path.to_str().expect("utf-8")]).await;
    run.assert_code(0);
    assert!(!path.exists(), "{}", run.all());
    assert!(run.stderr.contains("ignored with --dry-run"), "{}", run.all());
}

/// `promtool check metrics` parses the Prometheus text format and lints it (HELP on every family, counters
/// named `_total`, base units, snake_case, histogram suffixes): a batch run's file passes without a finding.
#[tokio::test]
async fn a_metrics_file_passes_promtool_check_metrics_without_a_finding() {
    let world = World::new("promlint", spec()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("clbsync.prom");
    let run = world.run(&["reconcile", "--metrics-file", path.to_str().expect("utf-8")]).await;
    run.assert_code(0);
    let text = std::fs::read_to_string(&path).expect("the metrics file");
    assert!(text.contains("clbsync_changes_total{"), "a run that changed something: {text}");
    let (code, out) = promtool(&["check", "metrics"], &text);
    assert_eq!((code, out.as_str()), (0, ""), "promtool check metrics on the metrics file:\n{text}");
}

/// Watch mode serves OpenMetrics. Prometheus's OpenMetrics parser (`promtool tsdb create-blocks-from
/// openmetrics`, which wants a timestamp on every sample: one is appended) reads it whole, `# EOF` included; and
/// `promtool check metrics`, which reads the text format 0.0.4, lints it with one expected difference: an
/// OpenMetrics counter family is named without `_total` (its samples carry it), so the linter sees samples
/// `X_total` without HELP. Any other finding, or a parse error, fails.
#[tokio::test]
async fn watch_modes_openmetrics_passes_prometheus_parser_and_promtools_lint() {
    let world = World::new("promlintw", spec()).await;
    let w = Watcher::start(&world, &[]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Api), "10.1.0.1", 10)).await;
    let mut text = String::new();
    eventually(REACT, "a pass counted", &w, || {
        text = w.get("/metrics").map(|(_, b)| b).unwrap_or_default();
        text.contains("clbsync_changes_total{")
    })
    .await;

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    let stamped: String =
        text.lines().map(|l| if l.starts_with('#') { format!("{l}\n") } else { format!("{l} {now}\n") }).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("metrics.om");
    std::fs::write(&input, stamped).expect("write");
    let blocks = dir.path().join("blocks");
    let args =
        ["tsdb", "create-blocks-from", "openmetrics", input.to_str().expect("utf-8"), blocks.to_str().expect("utf-8")];
    let (code, out) = promtool(&args, "");
    assert_eq!(code, 0, "Prometheus's OpenMetrics parser:\n{out}\n{text}");
    let series = text.lines().filter(|l| !l.starts_with('#')).count();
    assert!(out.split_whitespace().any(|w| w == series.to_string()), "all {series} samples read:\n{out}");

    let counters: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    assert!(counters.contains(&"clbsync_changes"), "{text}");
    let (code, out) = promtool(&["check", "metrics"], &text);
    assert!(code == 0 || code == 3, "promtool check metrics: a parse error (exit {code}):\n{out}\n{text}");
    let unexpected: Vec<&str> = out
        .lines()
        .filter(|l| !l.strip_suffix("_total no help text").is_some_and(|family| counters.contains(&family)))
        .collect();
    assert!(unexpected.is_empty(), "promtool check metrics found {unexpected:?} in:\n{text}");
}
