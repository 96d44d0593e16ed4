//! The real CLB client and engine against the CLB emulator on loopback (pods from an in-memory cluster; the
//! kube-apiserver tests cover the other side).

use std::net::SocketAddr;
use std::time::Duration;

use clb_emulator::{Config, Emulator, Faults, State};
use clbsync::apply::RowStatus;
use clbsync::clb::client::{ClbClient, ClientConfig};
use clbsync::clb::credentials::Credentials;
use clbsync::clb::http::Endpoint;
use clbsync::desired::memory::MemoryCluster;
use clbsync::model::testing::pod;
use clbsync::outcome::{Outcome, exit};
use clbsync::reconcile::{self, Mode, Settings};
use clbsync::report::{Format, Style};
use clbsync::rules::{self, PodQuery, PodSource, Rules};

pub const STATE: &str = "
region: ap-guangzhou
load_balancers:
  - id: lb-shop0001
    listeners:
      - id: lbl-http0080
        protocol: HTTP
        port: 80
        rules:
          - {location_id: loc-api00001, domain: shop.example.com, url: /api,
             targets: [{ip: 10.0.0.7, port: 8080}, {type: CVM, instance_id: ins-node0001, ip: 172.16.0.5, port: 30080}]}
          - {location_id: loc-web00001, domain: shop.example.com, url: /}
      - id: lbl-tcp06379
        protocol: TCP
        port: 6379
        targets: [{ip: 10.0.2.9, port: 6379}]
  - id: lb-tls00001
    listeners:
      - {id: lbl-tcp00443, protocol: TCP, port: 443}
  - id: lb-classic1
    forward: 0
    listeners:
      - {id: lbl-classic1, protocol: TCP, port: 80}
";

pub const RULES: &str = "
- load_balancer_id: lb-shop0001
  listeners:
    - port: 80
      protocol: http
      rules:
        - {domain: shop.example.com, url: /api, backend: {namespace: shop, deployment: api, port: 8080}}
        - {domain: shop.example.com, url: /, backend: {namespace: shop, deployment: web, port: http, weight: 20}}
    - port: 6379
      protocol: tcp
      backend: {namespace: cache, selector: {app: redis}, port: 6379}
- load_balancer_id: lb-tls00001
  listeners:
    - {port: 443, protocol: tcp, backend: {namespace: shop, deployment: api, port: 8443}}
";

fn deployment(ns: &str, name: &str) -> PodQuery {
    PodQuery { namespace: ns.into(), source: PodSource::deployment(name) }
}

pub fn cluster() -> MemoryCluster {
    let mut c = MemoryCluster::default();
    c.pods.insert(
        deployment("shop", "api"),
        Ok(vec![pod("api-1", "10.0.0.1").ready(), pod("api-2", "10.0.0.2").ready(), pod("api-3", "10.0.0.3")]),
    );
    c.pods.insert(
        deployment("shop", "web"),
        Ok(vec![pod("web-1", "10.0.1.1").ready(), pod("web-2", "10.0.1.2").ready()]),
    );
    let redis =
        PodQuery { namespace: "cache".into(), source: PodSource::Selector([("app".into(), "redis".into())].into()) };
    c.pods.insert(redis, Ok(vec![pod("redis-0", "10.0.2.1").ready()]));
    c
}

pub async fn emulator(state: &str) -> Emulator {
    let config = Config { state: State::from_yaml_str(state).expect("test state"), ..Config::default() };
    clb_emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.expect("emulator starts")
}

pub fn client(emu: &Emulator) -> ClbClient {
    client_with(emu, clb_emulator::DEFAULT_SECRET_KEY, |c| c)
}

pub fn client_with(emu: &Emulator, key: &str, tweak: impl FnOnce(ClientConfig) -> ClientConfig) -> ClbClient {
    let creds = Credentials::new(clb_emulator::DEFAULT_SECRET_ID, key, None);
    let config = ClientConfig {
        endpoint: Endpoint::Url(emu.endpoint()),
        task_timeout: Duration::from_secs(10),
        ..ClientConfig::new("ap-guangzhou", creds)
    };
    ClbClient::new(tweak(config)).expect("client")
}

fn parsed(text: &str) -> Rules {
    rules::parse("rules.yaml", text).expect("valid rules")
}

async fn pass(clb: &ClbClient, cluster: &MemoryCluster, rules: &Rules, mode: Mode) -> (Outcome, String) {
    let settings = Settings {
        style: Style { format: Format::Table, show_unchanged: false, color: false, width: None, max_rows: None },
        concurrency: 8,
        region: "ap-guangzhou".into(),
        ..Settings::new(mode)
    };
    let mut out = Vec::new();
    let outcome = reconcile::run(rules, cluster, clb, &settings, &mut out).await.expect("run");
    (outcome, String::from_utf8(out).expect("utf8"))
}

/// `(ip, port, weight)` of the ENI targets of a listener (and rule) in the emulator, sorted.
fn eni_targets(emu: &Emulator, lb: &str, listener: &str, location: Option<&str>) -> Vec<(String, u16, u32)> {
    let state = emu.state();
    let lb = state.load_balancers.iter().find(|l| l.id == lb).expect("lb");
    let l = lb.listeners.iter().find(|l| l.id == listener).expect("listener");
    let targets = match location {
        Some(loc) => &l.rules.iter().find(|r| r.location_id == loc).expect("rule").targets,
        None => &l.targets,
    };
    let mut out: Vec<_> = targets
        .iter()
        .filter(|t| t.kind == clb_emulator::state::TargetKind::Eni)
        .map(|t| (t.ip.clone(), t.port, t.weight))
        .collect();
    out.sort();
    out
}

fn t(ip: &str, port: u16, weight: u32) -> (String, u16, u32) {
    (ip.to_string(), port, weight)
}

#[tokio::test]
async fn reconcile_converges_and_a_second_run_makes_no_mutating_call() {
    let emu = emulator(STATE).await;
    let (clb, cluster, rules) = (client(&emu), cluster(), parsed(RULES));

    let (outcome, table) = pass(&clb, &cluster, &rules, Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::OK, "{table}");
    assert_eq!(
        eni_targets(&emu, "lb-shop0001", "lbl-http0080", Some("loc-api00001")),
        [t("10.0.0.1", 8080, 10), t("10.0.0.2", 8080, 10)]
    );
    assert_eq!(
        eni_targets(&emu, "lb-shop0001", "lbl-http0080", Some("loc-web00001")),
        [t("10.0.1.1", 8080, 20), t("10.0.1.2", 8080, 20)]
    );
    assert_eq!(eni_targets(&emu, "lb-shop0001", "lbl-tcp06379", None), [t("10.0.2.1", 6379, 10)]);
    assert_eq!(
        eni_targets(&emu, "lb-tls00001", "lbl-tcp00443", None),
        [t("10.0.0.1", 8443, 10), t("10.0.0.2", 8443, 10)]
    );
    let cvm = emu.state().load_balancers[0].listeners[0].rules[0]
        .targets
        .iter()
        .filter(|t| t.kind == clb_emulator::state::TargetKind::Cvm)
        .count();
    assert_eq!(cvm, 1, "the hand-bound CVM backend stays");
    assert_eq!(emu.calls().errors_by_code.len(), 0, "no API errors: {:?}", emu.calls().errors_by_code);

    emu.reset_calls();
    let (again, table) = pass(&clb, &cluster, &rules, Mode::Reconcile).await;
    assert_eq!(emu.calls().mutating(), 0, "{table}");
    assert_eq!(again.exit_code(true), exit::OK);
    assert!(table.starts_with("In sync"), "{table}");
}

#[tokio::test]
async fn diff_makes_no_mutating_call() {
    let emu = emulator(STATE).await;
    let (outcome, _) = pass(&client(&emu), &cluster(), &parsed(RULES), Mode::Diff).await;
    assert_eq!(outcome.exit_code(true), exit::CHANGES);
    assert_eq!(emu.calls().mutating(), 0);
    assert_eq!(emu.calls().count("DescribeListeners"), 2);
    assert_eq!(emu.calls().count("DescribeTargets"), 2);
}

#[tokio::test]
async fn a_classic_load_balancer_is_refused_with_a_clear_reason() {
    let emu = emulator(STATE).await;
    let text = format!(
        "{RULES}- load_balancer_id: lb-classic1\n  listeners:\n    - {{port: 80, protocol: tcp, backend: {{namespace: shop, deployment: api, port: 80}}}}\n"
    );
    let (outcome, table) = pass(&client(&emu), &cluster(), &parsed(&text), Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert!(table.contains("lb-classic1 is a classic CLB"), "{table}");
    assert_eq!(eni_targets(&emu, "lb-tls00001", "lbl-tcp00443", None).len(), 2, "other load balancers still converge");
}

#[tokio::test]
async fn slow_tasks_and_the_load_balancer_lock_are_waited_for() {
    let emu = emulator(STATE).await;
    emu.set_task_delay(Duration::from_millis(300));
    let clb = client(&emu);
    let (outcome, table) = pass(&clb, &cluster(), &parsed(RULES), Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::OK, "{table}");
    assert_eq!(emu.calls().errors("FailedOperation.ResourceInOperating"), 0, "one task at a time per LB");
    assert!(emu.calls().count("DescribeTaskStatus") >= 3);
}

#[tokio::test]
async fn throttling_is_retried_and_converges() {
    let emu = emulator(STATE).await;
    emu.set_rate_limit(2);
    let clb = client(&emu);
    let (outcome, table) = pass(&clb, &cluster(), &parsed(RULES), Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::OK, "{table}");
    assert!(emu.calls().errors("RequestLimitExceeded") > 0, "the emulator did throttle");
}

#[tokio::test]
async fn the_client_paces_itself_under_the_api_rate_limit() {
    let emu = emulator(STATE).await;
    let clb = client(&emu);
    let (outcome, _) = pass(&clb, &cluster(), &parsed(RULES), Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::OK);
    assert_eq!(emu.calls().errors("RequestLimitExceeded"), 0);
}

#[tokio::test]
async fn a_failed_task_is_a_failed_change_and_the_next_run_converges() {
    let emu = emulator(STATE).await;
    let faults: Faults = serde_yaml::from_str(
        "task_failures: {rate: 1.0, max: 1, actions: [BatchRegisterTargets], message: backend ENI not found}",
    )
    .expect("faults");
    emu.set_faults(faults);
    let (clb, cluster, rules) = (client(&emu), cluster(), parsed(RULES));
    let (outcome, table) = pass(&clb, &cluster, &rules, Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert!(table.contains("failed: TaskFailed"), "{table}");
    emu.set_faults(Faults::default());
    let (outcome, table) = pass(&clb, &cluster, &rules, Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::OK, "{table}");
    assert_eq!(eni_targets(&emu, "lb-shop0001", "lbl-tcp06379", None), [t("10.0.2.1", 6379, 10)]);
}

#[tokio::test]
async fn a_lost_answer_is_not_resent_and_the_next_run_registers_nothing_twice() {
    let emu = emulator(STATE).await;
    let faults: Faults =
        serde_yaml::from_str("drop_after_apply: {rate: 1.0, max: 1, actions: [BatchRegisterTargets], hold_ms: 3000}")
            .expect("faults");
    emu.set_faults(faults);
    let clb = client_with(&emu, clb_emulator::DEFAULT_SECRET_KEY, |c| ClientConfig {
        request_timeout: Duration::from_millis(800),
        ..c
    });
    let (cluster, rules) = (cluster(), parsed(RULES));
    let (outcome, table) = pass(&clb, &cluster, &rules, Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert!(table.contains("OutcomeUnknown"), "{table}");
    emu.set_faults(Faults::default());
    let (outcome, table) = pass(&clb, &cluster, &rules, Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::OK, "{table}");
    assert_eq!(emu.calls().errors("InvalidParameterValue.Duplicate"), 0, "nothing registered twice");
}

#[tokio::test]
async fn backend_quota_on_one_rule_fails_only_that_rule_and_the_next_run_fits() {
    let emu = emulator(STATE).await;
    // The api rule holds a stale ENI target and a CVM backend: with a quota of 3 its two new pods do not fit
    // until the stale target is gone. CLB reports batch failures per listener (FailListenerIdSet); clbsync sends
    // that listener's rules again one at a time, so only the api rule fails this run and the web rule, on the same
    // listener, gets its pods (issue 17 #2).
    emu.set_backend_quota(3);
    let (clb, cluster, rules) = (client(&emu), cluster(), parsed(RULES));
    let (outcome, table) = pass(&clb, &cluster, &rules, Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert_eq!(table.matches("failed: PartialFailure").count(), 2, "{table}");
    assert_eq!(eni_targets(&emu, "lb-shop0001", "lbl-http0080", Some("loc-web00001")).len(), 2, "{table}");
    assert_eq!(eni_targets(&emu, "lb-shop0001", "lbl-tcp06379", None), [t("10.0.2.1", 6379, 10)], "{table}");
    assert_eq!(eni_targets(&emu, "lb-tls00001", "lbl-tcp00443", None).len(), 2, "{table}");
    assert_eq!(eni_targets(&emu, "lb-shop0001", "lbl-http0080", Some("loc-api00001")), [], "stale target removed");
    let (outcome, table) = pass(&clb, &cluster, &rules, Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::OK, "the freed room takes the new pods: {table}");
}

#[tokio::test]
async fn a_wrong_secret_key_is_an_auth_error_that_names_the_variables_and_changes_nothing() {
    let emu = emulator(STATE).await;
    let clb = client_with(&emu, "not-the-right-key-000000000000000", |c| c);
    let (outcome, table) = pass(&clb, &cluster(), &parsed(RULES), Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    assert!(table.contains("AuthFailure.SignatureFailure"), "{table}");
    assert!(!table.contains("not-the-right-key"), "the key never appears: {table}");
    assert_eq!(emu.calls().mutating(), 0);
}

#[tokio::test]
async fn clock_skew_is_reported_as_such() {
    let emu = emulator(STATE).await;
    emu.set_clock_offset(600);
    let (_, table) = pass(&client(&emu), &cluster(), &parsed(RULES), Mode::Diff).await;
    assert!(table.contains("AuthFailure.SignatureExpire") && table.contains("clock"), "{table}");
}

/// A CLB `Message` and a Kubernetes error carrying a terminal escape and a newline reach the table escaped:
/// no ESC, no forged report line.
#[tokio::test]
async fn server_text_with_control_characters_is_escaped_in_the_table() {
    let emu = emulator(STATE).await;
    // Issue 24 #21: with a right-to-left override, which would show what follows it reversed.
    let hostile = "\u{1b}]0;owned\u{7}\nApplied 9 change(s), 0 failed, 0 not attempted.\u{202e}txt.exe";
    emu.set_faults(Faults {
        task_failures: Some(clb_emulator::faults::TaskFailureFault {
            rate: 1.0,
            max: None,
            actions: vec!["BatchRegisterTargets".into()],
            message: hostile.into(),
        }),
        ..Faults::default()
    });
    let mut cluster = cluster();
    let redis =
        PodQuery { namespace: "cache".into(), source: PodSource::Selector([("app".into(), "redis".into())].into()) };
    cluster.pods.insert(redis, Err(hostile.into()));
    let (clb, rules) = (client(&emu), parsed(RULES));
    let (outcome, table) = pass(&clb, &cluster, &rules, Mode::Reconcile).await;
    assert_eq!(outcome.exit_code(false), exit::ERROR);
    let escaped = "\\u{1b}]0;owned\\u{7}\\nApplied 9 change(s), 0 failed, 0 not attempted.\\u{202e}txt.exe";
    let task_failures: Vec<_> = outcome
        .rules()
        .flat_map(|r| r.rows().map(|(_, s)| s))
        .filter_map(|s| match s {
            RowStatus::Failed(f) if f.code == "TaskFailed" => Some(&f.message),
            _ => None,
        })
        .collect();
    assert!(!task_failures.is_empty(), "the task failure fault fired: {table}");
    for message in task_failures {
        assert!(message.ends_with(escaped), "the CLB message is kept, escaped: {message:?}");
    }
    assert!(table.contains(escaped), "the Kubernetes message is shown, escaped: {table}");
    assert!(!table.contains('\u{1b}') && !table.contains('\u{7}') && !table.contains('\u{202e}'), "{table:?}");
    assert!(!table.lines().any(|l| l.starts_with("Applied 9")), "a forged line: {table}");
}
