//! What Events a run's outcome gives: which object, which reason, what note, how many.

use super::*;
use crate::apply::ApplyReport;
use crate::model::{Binding, Failure, Target};
use crate::plan::{Plan, Row, RulePlan, UnlessFailed};
use crate::rules::Rule;

const RULES: &str = "
- load_balancer_id: lb-00000001
  listeners:
    - port: 80
      protocol: http
      rules:
        - domain: shop.example.com
          url: /api
          backend: {namespace: shop, deployment: api, port: 8080}
    - port: 6379
      protocol: tcp
      backend: {namespace: cache, selector: {app: redis}, port: 6379}
- load_balancer_id: lb-00000002
  listeners:
    - port: 443
      protocol: tcp
      backend: {namespace: shop, deployment: api, port: 8443}
";

fn rules() -> Rules {
    crate::rules::parse("rules.yaml", RULES).expect("valid rules")
}

fn row(action: Action, ip: &str, port: u16, pod: Option<&str>) -> Row {
    Row {
        action,
        target: Target::new(ip.parse().expect("ip"), port),
        weight: Some(if action == Action::Drain { 0 } else { 20 }),
        current_weight: (action != Action::Register).then_some(10),
        pod: pod.map(Into::into),
        note: None,
        unless_failed: UnlessFailed::Unconditional,
        unmanaged: None,
        health: crate::model::Health::Unknown,
        waiting_since: None,
    }
}

fn rule_plan(rule: &Rule, status: Status, rows: Vec<Row>) -> RulePlan {
    RulePlan {
        listener_id: None,
        location_id: None,
        binding: Some(Binding { lb: rule.load_balancer_id.clone(), listener: "lbl-1".into(), location: None }),
        status,
        rows,
        ..RulePlan::named(rule)
    }
}

fn outcome(rules: &Rules, plans: Vec<(Status, Vec<(Row, RowStatus)>)>) -> Outcome {
    let mut plan = Plan::default();
    let mut applied = ApplyReport::default();
    for (rule, (status, rows)) in rules.rules.iter().zip(plans) {
        for (row, s) in &rows {
            applied.record(rule.id, row.target, s.clone());
        }
        plan.rules.push(rule_plan(rule, status, rows.into_iter().map(|(row, _)| row).collect()));
    }
    let waits = crate::plan::Waits { now: 1_700_000_000, after: crate::plan::WARN_WAITING_AFTER };
    Outcome { plan, applied: Some(applied), waits, plan_changed: None }
}

fn deployment(name: &str) -> Object {
    Object { kind: ObjectKind::Workload(WorkloadKind::Deployment), namespace: "shop".into(), name: name.into() }
}

fn summary(drafts: &[Draft]) -> Vec<(String, &'static str)> {
    drafts
        .iter()
        .map(|d| (format!("{} {}/{}", d.object.kind(), d.object.namespace, d.object.name), d.reason.as_str()))
        .collect()
}

#[test]
fn one_event_per_object_and_reason_naming_every_place_it_covers() {
    let rules = rules();
    let applied = RowStatus::Applied;
    let out = outcome(
        &rules,
        vec![
            (
                Status::Ready,
                vec![
                    (row(Action::Register, "10.0.0.1", 8080, Some("api-1")), applied.clone()),
                    (row(Action::Register, "10.0.0.2", 8080, Some("api-2")), applied.clone()),
                    (row(Action::Drain, "10.0.0.9", 8080, Some("api-old")), applied.clone()),
                    (row(Action::Unchanged, "10.0.0.3", 8080, Some("api-3")), RowStatus::NoOp),
                ],
            ),
            (
                Status::Ready,
                vec![
                    (row(Action::Register, "10.3.0.2", 6379, Some("redis-b")), applied.clone()),
                    (row(Action::Register, "10.3.0.1", 6379, Some("redis-a")), applied.clone()),
                    (row(Action::Deregister, "10.3.0.9", 6379, None), applied.clone()),
                ],
            ),
            (Status::Ready, vec![(row(Action::Register, "10.0.0.1", 8443, Some("api-1")), applied.clone())]),
        ],
    );
    let (drafts, left_out) = drafts(&rules, &out, DEFAULT_MAX);
    assert_eq!(left_out, 0);
    assert_eq!(
        summary(&drafts),
        [
            ("Deployment shop/api".to_string(), "TargetsRegistered"),
            ("Deployment shop/api".to_string(), "TargetsDrained"),
            ("Pod cache/redis-a".to_string(), "TargetsRegistered"),
        ],
        "one per (object, reason); a selector rule's Event is on its first pod by name, and the removal of a gone \
         pod's target has no object"
    );
    assert_eq!(
        drafts[0].note,
        "registered: lb-00000001 HTTP:80 shop.example.com/api: 2 target(s) [10.0.0.1:8080, 10.0.0.2:8080]; \
         registered: lb-00000002 TCP:443: 1 target(s) [10.0.0.1:8443]"
    );
    assert_eq!(drafts[1].note, "drained: lb-00000001 HTTP:80 shop.example.com/api: 1 target(s) [10.0.0.9:8080]");
    assert_eq!(drafts[0].reason.kind(), "Normal");
}

#[test]
fn warnings_carry_the_reports_words() {
    let rules = rules();
    let failure = Failure {
        code: "LimitExceeded".into(),
        message: "backend quota full".into(),
        request_id: Some("req-1".into()),
    };
    let out = outcome(
        &rules,
        vec![
            (Status::Blocked { reason: "no ready pods: pass --allow-empty to empty it".into() }, vec![]),
            (Status::Skipped { reason: "listing pods: forbidden".into() }, vec![]),
            (
                Status::Ready,
                vec![
                    (row(Action::Register, "10.0.0.1", 8443, Some("api-1")), RowStatus::Failed(failure)),
                    (
                        row(Action::Deregister, "10.0.0.7", 8443, None),
                        RowStatus::NotAttempted("its replacement failed".into()),
                    ),
                ],
            ),
        ],
    );
    let (drafts, _) = drafts(&rules, &out, DEFAULT_MAX);
    assert_eq!(
        summary(&drafts),
        [("Deployment shop/api".to_string(), "RuleBlocked"), ("Deployment shop/api".to_string(), "ChangeFailed")],
        "a skipped selector rule has no object"
    );
    assert_eq!(
        drafts[0].note,
        "blocked: lb-00000001 HTTP:80 shop.example.com/api: no ready pods: pass --allow-empty to empty it"
    );
    assert_eq!(
        drafts[1].note,
        "failed: lb-00000002 TCP:443: LimitExceeded: backend quota full (RequestId req-1): 1 target(s) \
         [10.0.0.1:8443]; not attempted: lb-00000002 TCP:443: its replacement failed: 1 target(s) [10.0.0.7:8443]"
    );
    assert!(drafts.iter().all(|d| d.reason.kind() == "Warning"));
}

#[test]
fn many_targets_are_counted_and_the_note_fits_in_one_kib() {
    let rules = rules();
    let rows: Vec<_> = (1..=200)
        .map(|k| (row(Action::Reweight, &format!("10.0.{}.{}", k / 250, k % 250), 8080, Some("p")), RowStatus::Applied))
        .collect();
    let out = outcome(&rules, vec![(Status::Ready, rows)]);
    let (drafts, _) = drafts(&rules, &out, DEFAULT_MAX);
    assert_eq!(drafts[0].object, deployment("api"));
    assert!(drafts[0].note.contains("200 target(s) [10.0.0.1:8080 10 → 20, "), "{}", drafts[0].note);
    assert!(drafts[0].note.ends_with(" and 195 more]"), "{}", drafts[0].note);

    let long = truncate("é".repeat(600), NOTE_LIMIT);
    assert!(long.len() <= NOTE_LIMIT && long.ends_with('…'), "{} bytes", long.len());
}

#[test]
fn max_caps_the_events_and_counts_the_rest() {
    let rules = rules();
    let applied = RowStatus::Applied;
    let out = outcome(
        &rules,
        vec![(
            Status::Ready,
            vec![
                (row(Action::Register, "10.0.0.1", 8080, None), applied.clone()),
                (row(Action::Drain, "10.0.0.2", 8080, None), applied.clone()),
                (row(Action::Deregister, "10.0.0.3", 8080, None), applied.clone()),
            ],
        )],
    );
    let (drafts, left_out) = drafts(&rules, &out, 2);
    assert_eq!(summary(&drafts).len(), 2);
    assert_eq!(left_out, 1);
}

#[test]
fn a_dry_run_outcome_has_no_events() {
    let rules = rules();
    let mut out =
        outcome(&rules, vec![(Status::Ready, vec![(row(Action::Register, "10.0.0.1", 8080, None), RowStatus::NoOp)])]);
    out.applied = None;
    assert_eq!(drafts(&rules, &out, DEFAULT_MAX), (Vec::new(), 0));
}

/// Issue 24 #6: a rule whose typo leaves gated pods True (kept) says so in a Warning on its workload, next to
/// the rule's own RuleBlocked.
#[test]
fn a_readiness_gate_kept_true_is_a_warning_naming_the_pods() {
    let rules = rules();
    let blocked = Status::Blocked { reason: "none of the 2 ready pod(s) can be a target".into() };
    let mut out = outcome(&rules, vec![(blocked, vec![])]);
    out.plan.rules[0].gate_kept = vec!["api-1".into(), "api-2".into()];
    let (drafts, _) = drafts(&rules, &out, DEFAULT_MAX);
    assert_eq!(
        summary(&drafts),
        [("Deployment shop/api".to_string(), "ReadinessGateKept"), ("Deployment shop/api".to_string(), "RuleBlocked")]
    );
    assert_eq!(drafts[0].reason.kind(), "Warning");
    assert!(
        drafts[0].note.starts_with(
            "readiness gate kept: lb-00000001 HTTP:80 shop.example.com/api: 2 pod(s) [api-1, api-2] stay Ready"
        ),
        "{}",
        drafts[0].note
    );
}

/// Issue 24 #12: a drain held longer than `--warn-waiting-after` is a Warning on the workload, naming how long
/// and the targets.
#[test]
fn a_wait_past_its_bound_is_a_warning() {
    let rules = rules();
    let mut held = row(Action::Wait, "10.0.0.9", 8080, Some("api-9"));
    held.waiting_since = Some(1_700_000_000 - 1_200);
    let mut out = outcome(&rules, vec![(Status::Ready, vec![(held, RowStatus::NoOp)])]);
    let (drafts, _) = drafts(&rules, &out, DEFAULT_MAX);
    assert_eq!(summary(&drafts), [("Deployment shop/api".to_string(), "TargetsWaiting")]);
    assert_eq!(drafts[0].reason.kind(), "Warning");
    assert!(drafts[0].note.contains("held for 20 min (more than --warn-waiting-after 10 min)"), "{}", drafts[0].note);
    assert!(drafts[0].note.ends_with("1 target(s) [10.0.0.9:8080]"), "{}", drafts[0].note);
    out.waits.now -= 700;
    assert!(super::drafts(&rules, &out, DEFAULT_MAX).0.is_empty(), "not before its bound");
}

/// Issue 28: a split rule with an empty backend (or off its shares) is a Warning on its workload, with the plan's
/// words.
#[test]
fn a_degraded_split_is_a_warning_with_the_plans_words() {
    let rules = rules();
    let mut out = outcome(&rules, vec![(Status::Ready, vec![]), (Status::Ready, vec![]), (Status::Ready, vec![])]);
    out.plan.rules[0].warnings = vec![
        "pod api-9 has no container port named `http`, skipped: check `port:` in the rules file".into(),
        "split degraded: backend deployment shop/api-canary has no ready pods, so its 5% of the traffic goes to the \
         other backends, whose weights are held (on_empty_backend: hold)"
            .into(),
    ];
    let (drafts, _) = drafts(&rules, &out, DEFAULT_MAX);
    assert_eq!(summary(&drafts), [("Deployment shop/api".to_string(), "SplitDegraded")]);
    assert_eq!(drafts[0].reason.kind(), "Warning");
    assert!(
        drafts[0].note.starts_with(
            "split degraded: lb-00000001 HTTP:80 shop.example.com/api: backend deployment shop/api-canary has no ready"
        ),
        "{}",
        drafts[0].note
    );
}
