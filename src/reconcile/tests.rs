//! The whole engine against in-memory doubles: what a run plans, applies and reports.

use std::collections::BTreeMap;

use super::*;
use crate::clb::memory::MemoryClb;
use crate::clb::{Listener, ListenerRule, LoadBalancer};
use crate::desired::memory::MemoryCluster;
use crate::model::testing::pod;
use crate::model::{Binding, Failure, Pod, Target, TargetKind};
use crate::outcome::exit;
use crate::plan::Status;
use crate::report::Format;
use crate::rules::{PodQuery, PodSource};

const RULES: &str = "
- load_balancer_id: lb-00000001
  listeners:
    - port: 80
      protocol: http
      rules:
        - domain: shop.example.com
          url: /api
          backend: {namespace: shop, deployment: api, port: 8080}
        - domain: shop.example.com
          url: /
          backend: {namespace: shop, deployment: web, port: http, weight: 20}
    - port: 6379
      protocol: tcp
      backend: {namespace: cache, selector: {app: redis}, port: 6379}
- load_balancer_id: lb-00000002
  listeners:
    - port: 443
      protocol: tcp
      backend: {namespace: shop, deployment: api, port: 8443}
";

fn q(ns: &str, deployment: &str) -> PodQuery {
    PodQuery { namespace: ns.into(), source: PodSource::deployment(deployment) }
}

fn redis() -> PodQuery {
    PodQuery {
        namespace: "cache".into(),
        source: PodSource::Selector(BTreeMap::from([("app".into(), "redis".into())])),
    }
}

fn t(ip: &str, port: u16) -> Target {
    Target::new(ip.parse().expect("ip"), port)
}

fn b(lb: &str, listener: &str, loc: Option<&str>) -> Binding {
    Binding { lb: lb.into(), listener: listener.into(), location: loc.map(Into::into) }
}

fn api() -> Binding {
    b("lb-00000001", "lbl-00000080", Some("loc-000000a1"))
}
fn web() -> Binding {
    b("lb-00000001", "lbl-00000080", Some("loc-000000a2"))
}
fn cache() -> Binding {
    b("lb-00000001", "lbl-00006379", None)
}
fn tls() -> Binding {
    b("lb-00000002", "lbl-00000443", None)
}

fn world() -> (MemoryCluster, MemoryClb) {
    let mut cluster = MemoryCluster::default();
    cluster.pods.insert(
        q("shop", "api"),
        Ok(vec![
            pod("api-1", "10.0.0.1").ready(),
            pod("api-2", "10.0.0.2").ready(),
            pod("api-3", "10.0.0.3"),
            pod("api-old", "10.0.0.9").terminating(),
        ]),
    );
    cluster.pods.insert(q("shop", "web"), Ok(vec![pod("web-1", "10.0.1.1").ready()]));
    cluster.pods.insert(redis(), Ok(vec![pod("redis-0", "10.0.2.1").ready()]));
    let rule = |loc: &str, url: &str| ListenerRule {
        location_id: loc.into(),
        domain: "shop.example.com".into(),
        url: url.into(),
        target_type: "NODE".into(),
    };
    let listener = |id: &str, protocol: &str, port, rules| Listener {
        id: id.into(),
        protocol: protocol.into(),
        port,
        target_type: "NODE".into(),
        rules,
    };
    let clb = MemoryClb {
        lbs: vec![
            LoadBalancer { id: "lb-00000001".into(), name: "shop".into(), classic: false },
            LoadBalancer { id: "lb-00000002".into(), name: "tls".into(), classic: false },
        ],
        listeners: BTreeMap::from([
            (
                "lb-00000001".to_string(),
                vec![
                    listener("lbl-00000080", "HTTP", 80, vec![rule("loc-000000a1", "/api"), rule("loc-000000a2", "/")]),
                    listener("lbl-00006379", "TCP", 6379, vec![]),
                ],
            ),
            ("lb-00000002".to_string(), vec![listener("lbl-00000443", "TCP", 443, vec![])]),
        ]),
        ..Default::default()
    };
    clb.bind(&api(), t("10.0.0.1", 8080), 10, TargetKind::Ip);
    clb.bind(&api(), t("10.0.0.9", 8080), 10, TargetKind::Ip);
    clb.bind(&api(), t("10.0.0.7", 8080), 10, TargetKind::Ip);
    clb.bind(
        &api(),
        t("172.16.0.5", 80),
        10,
        TargetKind::Instance { kind: "CVM".into(), instance_id: "ins-0000cvm1".into() },
    );
    clb.bind(&web(), t("10.0.1.1", 8080), 10, TargetKind::Ip);
    (cluster, clb)
}

fn settings(mode: Mode, format: Format) -> Settings {
    let style = Style { format, show_unchanged: false, color: false, width: None, max_rows: None };
    Settings { style, concurrency: 4, region: "ap-guangzhou".into(), ..Settings::new(mode) }
}

fn rules() -> Rules {
    crate::rules::parse("rules.yaml", RULES).expect("test rules are valid")
}

async fn run_once(cluster: &MemoryCluster, clb: &MemoryClb, mode: Mode, format: Format) -> (Outcome, String) {
    let mut out = Vec::new();
    let outcome = run(&rules(), cluster, clb, &settings(mode, format), &mut out).await.expect("run");
    (outcome, String::from_utf8(out).expect("utf8"))
}

#[tokio::test]
async fn diff_reports_the_plan_and_changes_nothing() {
    let (cluster, clb) = world();
    let (outcome, table) = run_once(&cluster, &clb, Mode::Diff, Format::Table).await;
    assert!(clb.operations().is_empty());
    assert_eq!(outcome.exit_code(true), exit::CHANGES);
    assert_eq!(outcome.exit_code(false), exit::OK);
    insta::assert_snapshot!(table);
}

#[tokio::test]
async fn diff_json_is_stable() {
    let (cluster, clb) = world();
    let (_, json) = run_once(&cluster, &clb, Mode::Diff, Format::Json).await;
    insta::assert_snapshot!(json);
}

#[tokio::test]
async fn a_table_longer_than_max_rows_ends_with_how_many_more() {
    let (cluster, clb) = world();
    let mut settings = settings(Mode::Diff, Format::Table);
    settings.style.max_rows = Some(2);
    let mut out = Vec::new();
    run(&rules(), &cluster, &clb, &settings, &mut out).await.expect("run");
    insta::assert_snapshot!(String::from_utf8(out).expect("utf8"));
}

#[tokio::test]
async fn json_is_never_cut_by_max_rows() {
    let (cluster, clb) = world();
    let mut settings = settings(Mode::Diff, Format::Json);
    settings.style.max_rows = Some(2);
    let mut out = Vec::new();
    run(&rules(), &cluster, &clb, &settings, &mut out).await.expect("run");
    let (_, all) = run_once(&cluster, &clb, Mode::Diff, Format::Json).await;
    assert_eq!(String::from_utf8(out).expect("utf8"), all);
}

#[tokio::test]
async fn reconcile_converges_and_a_second_run_is_in_sync() {
    let (cluster, clb) = world();
    let (outcome, table) = run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    assert_eq!(outcome.exit_code(false), exit::OK);
    insta::assert_snapshot!(table);
    assert_eq!(
        clb.targets_of(&api()),
        BTreeMap::from([
            (t("10.0.0.1", 8080), 10),
            (t("10.0.0.2", 8080), 10),
            (t("10.0.0.9", 8080), 0),
            (t("172.16.0.5", 80), 10)
        ])
    );
    assert_eq!(clb.targets_of(&web()), BTreeMap::from([(t("10.0.1.1", 8080), 20)]));
    assert_eq!(clb.targets_of(&cache()), BTreeMap::from([(t("10.0.2.1", 6379), 10)]));
    assert_eq!(clb.targets_of(&tls()), BTreeMap::from([(t("10.0.0.1", 8443), 10), (t("10.0.0.2", 8443), 10)]));

    let before = clb.operations().len();
    let (again, table) = run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    assert_eq!(clb.operations().len(), before, "a second run makes no mutating call");
    assert_eq!(again.exit_code(true), exit::OK);
    assert!(table.starts_with("In sync: 4 rule(s)"), "{table}");
}

#[tokio::test]
async fn registrations_come_before_weight_changes_and_removals_on_each_load_balancer() {
    let (cluster, clb) = world();
    run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    let lb1: Vec<_> = clb.calls.lock().expect("lock").iter().filter(|c| c.1 == "lb-00000001").map(|c| c.0).collect();
    assert_eq!(lb1, ["register", "set_weight", "deregister"]);
}

#[tokio::test]
async fn a_kubernetes_error_skips_only_its_rules_and_keeps_their_targets() {
    let (mut cluster, clb) = world();
    cluster.pods.insert(q("shop", "api"), Err("the server is currently unable to handle the request".into()));
    let (outcome, table) = run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert_eq!(clb.targets_of(&api()).len(), 4, "the api rule's targets are untouched");
    assert_eq!(clb.targets_of(&cache()).len(), 1, "other rules still converge");
    assert!(
        table.contains(
            "skipped: 2 rules (lb-00000001 HTTP:80 shop.example.com/api, lb-00000002 TCP:443): listing deployment shop/api"
        ),
        "{table}"
    );
}

#[tokio::test]
async fn one_list_per_distinct_pod_query() {
    let (cluster, clb) = world();
    run_once(&cluster, &clb, Mode::Diff, Format::Table).await;
    assert_eq!(*cluster.lists.lock().expect("lock"), 3, "shop/api is shared by two rules");
}

#[tokio::test]
async fn an_unknown_load_balancer_skips_its_rules_and_names_the_region() {
    let (cluster, mut clb) = world();
    clb.lbs.retain(|l| l.id != "lb-00000002");
    let (outcome, table) = run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert!(table.contains("load balancer lb-00000002 not found in region ap-guangzhou"), "{table}");
    assert_eq!(clb.targets_of(&cache()).len(), 1);
}

#[tokio::test]
async fn unreadable_targets_skip_the_load_balancer_rather_than_planning_against_nothing() {
    let (cluster, mut clb) = world();
    clb.unreadable.push("lb-00000001".into());
    let (outcome, _) = run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    let skipped = outcome.plan.rules.iter().filter(|r| matches!(r.status, Status::Skipped { .. })).count();
    assert_eq!(skipped, 3);
    assert_eq!(clb.calls.lock().expect("lock").iter().filter(|c| c.1 == "lb-00000001").count(), 0);
}

#[tokio::test]
async fn a_failed_registration_is_reported_with_its_code_and_request_id() {
    let (cluster, mut clb) = world();
    let failed =
        Failure { code: "TaskFailed".into(), message: "ENI not found".into(), request_id: Some("req-1".into()) };
    clb.fail.insert(("register", api()), failed);
    let (outcome, json) = run_once(&cluster, &clb, Mode::Reconcile, Format::Json).await;
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(doc["summary"]["failed"], 1);
    let failed =
        doc["changes"].as_array().expect("changes").iter().find(|c| c["status"] == "failed").expect("a failed change");
    assert_eq!(failed["error"]["code"], "TaskFailed");
    assert_eq!(failed["error"]["request_id"], "req-1");
    assert!(!clb.targets_of(&api()).contains_key(&t("10.0.0.7", 8080)), "a gone pod's target is still removed");
    // Issue 30 #4: the error line names the failure too (all a CI log shows when stdout goes to a file).
    let trouble = outcome.trouble();
    assert!(
        trouble.contains("1 change(s) failed")
            && trouble.contains("; the first: lb-00000001 HTTP:80 shop.example.com/api: 10.0.0.2:8080: ")
            && trouble.contains("TaskFailed: ENI not found"),
        "{trouble}"
    );

    // Issue 17 #6: the table (what the CronJob prints) carries the message and RequestId too, right under it.
    let (cluster, mut clb) = world();
    let failed =
        Failure { code: "TaskFailed".into(), message: "ENI not found".into(), request_id: Some("req-1".into()) };
    clb.fail.insert(("register", api()), failed);
    let (_, table) = run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    assert!(
        table.contains("failed: lb-00000001 HTTP:80 shop.example.com/api: TaskFailed: ENI not found (RequestId req-1) [10.0.0.2:8080]"),
        "{table}"
    );
}

#[tokio::test]
async fn a_port_change_keeps_the_old_port_until_the_new_one_is_bound() {
    let (cluster, mut clb) = world();
    let text = RULES.replace(
        "backend: {namespace: shop, deployment: api, port: 8080}",
        "backend: {namespace: shop, deployment: api, port: 9090}",
    );
    let rules = crate::rules::parse("rules.yaml", &text).expect("valid");
    let quota = Failure { code: "LimitExceeded".into(), message: "backend quota".into(), request_id: None };
    clb.fail.insert(("register", api()), quota);
    let mut out = Vec::new();
    let outcome = run(&rules, &cluster, &clb, &settings(Mode::Reconcile, Format::Table), &mut out).await.expect("run");
    let table = String::from_utf8_lossy(&out);
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert!(clb.targets_of(&api()).contains_key(&t("10.0.0.1", 8080)), "api-1 keeps its old port: {table}");
    assert!(!clb.targets_of(&api()).contains_key(&t("10.0.0.7", 8080)), "the gone pod's target goes: {table}");
    assert!(table.contains("not attempted"), "{table}");
}

#[tokio::test]
async fn a_stop_signal_before_apply_attempts_nothing_and_says_so() {
    let (cluster, clb) = world();
    let s = settings(Mode::Reconcile, Format::Table);
    s.stop.stop(crate::stop::Reason::Signal("SIGTERM"));
    let mut out = Vec::new();
    let outcome = run(&rules(), &cluster, &clb, &s, &mut out).await.expect("run");
    assert!(clb.operations().is_empty());
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert!(String::from_utf8_lossy(&out).contains("not attempted"));
}

#[tokio::test]
async fn no_ready_pods_blocks_the_rule() {
    let (mut cluster, clb) = world();
    cluster.pods.insert(q("shop", "web"), Ok(vec![pod("web-1", "10.0.1.1")]));
    let (outcome, table) = run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    assert_eq!(clb.targets_of(&web()).len(), 1);
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert!(table.contains("BLOCKED"), "{table}");
}

#[tokio::test]
async fn two_rules_on_the_same_binding_are_both_skipped() {
    let (cluster, clb) = world();
    let text = RULES.replace(
        "    - port: 6379\n      protocol: tcp\n",
        "    - port: 6379\n      protocol: tcp\n      listener_id: lbl-00006379\n",
    ) + "    - port: 6379\n      protocol: udp\n      listener_id: lbl-00006379\n      backend: {namespace: cache, selector: {app: redis}, port: 6379}\n";
    let rules = crate::rules::parse("rules.yaml", &text).expect("valid");
    let mut out = Vec::new();
    let outcome = run(&rules, &cluster, &clb, &settings(Mode::Diff, Format::Table), &mut out).await.expect("run");
    let skipped: Vec<_> = outcome.plan.rules.iter().filter(|r| matches!(r.status, Status::Skipped { .. })).collect();
    assert!(!skipped.is_empty(), "{}", String::from_utf8_lossy(&out));
}

#[tokio::test]
async fn pods_without_the_named_port_are_reported() {
    let (mut cluster, clb) = world();
    let mut p: Pod = pod("web-2", "10.0.1.2").ready();
    p.ports.clear();
    cluster.pods.insert(q("shop", "web"), Ok(vec![pod("web-1", "10.0.1.1").ready(), p]));
    let (_, table) = run_once(&cluster, &clb, Mode::Diff, Format::Table).await;
    assert!(table.contains("pod web-2 has no container port named `http`"), "{table}");
}

/// Issue 17 #3: a drain made room for a replacement that failed to register; the old target keeps serving.
#[tokio::test]
async fn a_failed_registration_holds_the_drains_of_its_rule() {
    let (mut cluster, mut clb) = world();
    // web-4 keeps serving, so health alone would let web-1 drain; the failed registration of web-2 must not.
    let pods = vec![
        pod("web-1", "10.0.1.1").terminating(),
        pod("web-2", "10.0.1.2").ready(),
        pod("web-4", "10.0.1.4").ready(),
    ];
    cluster.pods.insert(q("shop", "web"), Ok(pods));
    clb.bind(&web(), t("10.0.1.4", 8080), 20, TargetKind::Ip);
    let quota = Failure { code: "LimitExceeded".into(), message: "backend quota".into(), request_id: None };
    clb.fail.insert(("register", web()), quota);
    let (outcome, table) = run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert_eq!(clb.targets_of(&web()).get(&t("10.0.1.1", 8080)), Some(&10), "web-1 keeps its weight: {table}");
    assert!(table.contains("not attempted"), "{table}");
}

/// Issue 17 #5: warnings are shown even when the table has nothing else to say.
#[tokio::test]
async fn warnings_are_shown_when_everything_is_in_sync() {
    let (mut cluster, clb) = world();
    let mut p: Pod = pod("web-2", "10.0.1.2").ready();
    p.ports.clear();
    cluster.pods.insert(q("shop", "web"), Ok(vec![pod("web-1", "10.0.1.1").ready(), p]));
    run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    let (outcome, table) = run_once(&cluster, &clb, Mode::Diff, Format::Table).await;
    assert!(table.starts_with("In sync: 4 rule(s)"), "{table}");
    assert!(
        table.contains("warning: lb-00000001 HTTP:80 shop.example.com/: pod web-2 has no container port"),
        "{table}"
    );
    assert_eq!(outcome.exit_code(true), exit::OK, "a pod that cannot be a target next to ones that can is a warning");
}

/// Issue 17 #5: a rule whose ready pods all fail to become targets (`port: htp`) is not "in sync".
#[tokio::test]
async fn a_rule_whose_ready_pods_cannot_be_targets_is_blocked_not_in_sync() {
    let (cluster, clb) = world();
    let text = RULES.replace("deployment: web, port: http,", "deployment: web, port: htp,");
    let rules = crate::rules::parse("rules.yaml", &text).expect("valid");
    let mut out = Vec::new();
    let outcome = run(&rules, &cluster, &clb, &settings(Mode::Diff, Format::Table), &mut out).await.expect("run");
    let table = String::from_utf8_lossy(&out);
    assert_eq!(outcome.exit_code(true), exit::ERROR, "{table}");
    assert!(
        table.contains("blocked: lb-00000001 HTTP:80 shop.example.com/: none of the 1 ready pod(s) can be a target"),
        "{table}"
    );
    assert!(table.contains("has no container port named `htp`"), "{table}");
}

/// Issue 18: the table fits the terminal (or `COLUMNS`): a compact layout below 120 columns, every line within
/// the width; without a width (a file, `kubectl logs`) rows are never wrapped.
#[tokio::test]
async fn the_table_fits_the_width_it_is_given() {
    let (cluster, clb) = world();
    for width in [80u16, 100, 140] {
        let mut s = settings(Mode::Diff, Format::Table);
        s.style.width = Some(width);
        let mut out = Vec::new();
        run(&rules(), &cluster, &clb, &s, &mut out).await.expect("run");
        let table = String::from_utf8(out).expect("utf8");
        let table_lines: Vec<&str> = table.lines().filter(|l| l.starts_with(['│', '┌', '└', '╞'])).collect();
        assert!(!table_lines.is_empty(), "{table}");
        for line in table_lines {
            assert!(line.chars().count() <= usize::from(width), "{width}: {} > {width}\n{table}", line.chars().count());
        }
        assert_eq!(table.contains("WHERE"), width < 120, "{width}: compact layout below 120 columns\n{table}");
        // Issue 30 #5: at 80 columns `shop.example.com/api` was split into `shop.example.com/ap` + `i`, and the
        // summary line was 94 columns.
        for word in ["shop.example.com/api", "10.0.0.2:8080"] {
            assert!(table.contains(word), "{width}: {word} split\n{table}");
        }
        let summary: Vec<&str> = table.lines().skip_while(|l| !l.contains(" to register,")).take(2).collect();
        assert!(summary.iter().all(|l| l.chars().count() <= usize::from(width)), "{width}: {summary:?}");
    }
}

/// Words too long to keep whole together (a 63-character pod name) are split rather than the table made wider
/// than the width it is given.
#[tokio::test]
async fn a_table_with_words_too_long_to_keep_whole_still_fits_its_width() {
    let (mut cluster, clb) = world();
    let long = format!("api-{}", "x".repeat(59));
    if let Some(Ok(pods)) = cluster.pods.get_mut(&q("shop", "api")) {
        pods.push(pod(&long, "10.0.0.5").ready());
    }
    let mut s = settings(Mode::Diff, Format::Table);
    s.style.width = Some(80);
    let mut out = Vec::new();
    run(&rules(), &cluster, &clb, &s, &mut out).await.expect("run");
    let table = String::from_utf8(out).expect("utf8");
    assert!(table.contains("10.0.0.5"), "{table}");
    for line in table.lines().filter(|l| l.starts_with(['│', '┌', '└', '╞'])) {
        assert!(line.chars().count() <= 80, "{} > 80\n{table}", line.chars().count());
    }
}

/// The world with a gated pod `api-gated` (containers ready, not Ready: it waits for the gate) behind shop/api.
fn gated_world() -> (MemoryCluster, MemoryClb) {
    let (mut cluster, clb) = world();
    if let Some(Ok(pods)) = cluster.pods.get_mut(&q("shop", "api")) {
        pods.push(pod("api-gated", "10.0.0.4").gated().containers_ready());
    }
    (cluster, clb)
}

#[tokio::test]
async fn diff_shows_the_gate_conditions_it_would_set_and_writes_none() {
    let (cluster, clb) = gated_world();
    let (outcome, table) = run_once(&cluster, &clb, Mode::Diff, Format::Table).await;
    insta::assert_snapshot!(table);
    let (_, json) = run_once(&cluster, &clb, Mode::Diff, Format::Json).await;
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    insta::assert_snapshot!(serde_json::to_string_pretty(&doc["gate"]).expect("JSON"));
    assert!(cluster.conditions.lock().expect("lock").is_empty(), "diff writes no condition");
    assert_eq!(outcome.exit_code(false), exit::OK);
}

#[tokio::test]
async fn a_gate_condition_to_set_is_a_pending_change_for_detailed_exitcode() {
    let (cluster, clb) = gated_world();
    run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    // The targets are in sync; the in-memory cluster keeps no condition, so the gated pod's is still to be set.
    let (outcome, table) = run_once(&cluster, &clb, Mode::Diff, Format::Table).await;
    assert!(!outcome.plan.has_changes(), "{table}");
    assert_eq!(outcome.exit_code(true), exit::CHANGES, "{table}");
}

#[tokio::test]
async fn reconcile_writes_the_gate_condition_after_the_registrations() {
    let (cluster, clb) = gated_world();
    let (_, table) = run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    assert!(clb.targets_of(&api()).contains_key(&t("10.0.0.4", 8080)), "{table}");
    assert!(clb.targets_of(&tls()).contains_key(&t("10.0.0.4", 8443)), "{table}");
    let written = cluster.conditions.lock().expect("lock").clone();
    assert_eq!(written.len(), 1, "{written:?}");
    let (namespace, pod, condition, transition) = &written[0];
    assert_eq!((namespace.as_str(), pod.as_str(), transition), ("shop", "api-gated", &true));
    assert_eq!((condition.status, condition.reason.as_str()), (false, "WaitingForHealthCheck"));
}

#[tokio::test]
async fn a_failed_condition_write_is_a_warning_and_the_clb_work_stands() {
    let (mut cluster, clb) = gated_world();
    cluster.condition_error = Some("connection refused".into());
    let (outcome, table) = run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    assert_eq!(outcome.exit_code(false), exit::OK, "{table}");
    assert!(clb.targets_of(&api()).contains_key(&t("10.0.0.4", 8080)), "{table}");
}

/// Issue 24 item 1: a pass whose lease is past its write deadline (nobody closed it: the clock alone) writes
/// neither CLB nor a gate condition, and the report names the reason.
#[tokio::test]
async fn a_lease_past_its_write_deadline_stops_every_write_and_the_report_says_why() {
    use crate::stop::{Fence, Reason, Stop};
    let (cluster, clb) = gated_world();
    let expired = Reason::LeaseLost("not renewed within --leader-election-renew-deadline (10s)".into());
    let fence = Fence::new(std::time::Instant::now(), expired);
    let s = Settings { stop: Stop::new().with_fence(&fence), ..settings(Mode::Reconcile, Format::Table) };
    let mut out = Vec::new();
    let outcome = run(&rules(), &cluster, &clb, &s, &mut out).await.expect("run");
    let table = String::from_utf8_lossy(&out);
    assert!(clb.operations().is_empty(), "{table}");
    assert!(cluster.conditions.lock().expect("lock").is_empty(), "no gate condition written");
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert!(table.contains("leader lease lost: not renewed"), "{table}");
}

/// Issue 25 item 3: a run stopped by --run-timeout says so, not SIGTERM.
#[tokio::test]
async fn a_run_stopped_by_the_run_timeout_is_reported_as_such() {
    let (cluster, clb) = world();
    let s = settings(Mode::Reconcile, Format::Table);
    s.stop.stop(crate::stop::Reason::RunTimeout(std::time::Duration::from_secs(25)));
    let mut out = Vec::new();
    run(&rules(), &cluster, &clb, &s, &mut out).await.expect("run");
    let table = String::from_utf8_lossy(&out);
    assert!(table.contains("run timeout (--run-timeout 25s)"), "{table}");
    assert!(!table.contains("SIGTERM"), "{table}");
}

mod elsewhere;
mod markdown;
mod reviewed;
mod split;
