//! `reconcile --expect-plan FILE` (issue 27 #2): the reviewed plan as `diff -o json` wrote it is applied while it
//! holds; once the world changed nothing is applied and the refusal says what appeared and what went.

use std::path::Path;

use super::*;
use crate::plan::Budget;
use crate::report::reviewed::Reviewed;

async fn reviewed(cluster: &MemoryCluster, clb: &MemoryClb) -> Reviewed {
    let (_, json) = run_once(cluster, clb, Mode::Diff, Format::Json).await;
    Reviewed::parse(&json).expect("diff -o json is a reviewed plan")
}

fn expecting(reviewed: &Reviewed) -> Settings {
    Settings { expect_plan: Some(reviewed.fingerprint), ..settings(Mode::Reconcile, Format::Table) }
}

#[tokio::test]
async fn the_reviewed_file_applies_while_it_holds() {
    let (cluster, clb) = world();
    let plan = reviewed(&cluster, &clb).await;
    let outcome = run(&rules(), &cluster, &clb, &expecting(&plan), &mut Vec::new()).await.expect("run");
    assert_eq!(outcome.plan_changed, None);
    assert!(outcome.applied.is_some_and(|a| a.counts().0 > 0), "applied");
}

#[tokio::test]
async fn a_changed_world_applies_nothing_and_says_what_appeared_and_what_went() {
    let (mut cluster, clb) = world();
    let plan = reviewed(&cluster, &clb).await;
    // In between: web gets a second pod, api-2 goes away, and a weight is changed in the console.
    cluster.pods.insert(q("shop", "web"), Ok(vec![pod("web-1", "10.0.1.1").ready(), pod("web-2", "10.0.1.2").ready()]));
    let api = vec![pod("api-1", "10.0.0.1").ready(), pod("api-old", "10.0.0.9").terminating()];
    cluster.pods.insert(q("shop", "api"), Ok(api));
    clb.bind(&tls(), t("10.0.0.1", 8443), 50, TargetKind::Ip);
    let outcome = run(&rules(), &cluster, &clb, &expecting(&plan), &mut Vec::new()).await.expect("run");
    let (expected, found) = outcome.plan_changed.expect("another plan");
    assert_eq!(expected, plan.fingerprint);
    assert!(clb.operations().is_empty(), "nothing applied: {:?}", clb.operations());
    assert_eq!(outcome.exit_code(false), exit::PLAN_CHANGED);
    let message = plan.refusal(Path::new("plan.json"), found, &outcome.plan);
    insta::assert_snapshot!(
        message.replace(&found.to_string(), "sha256:NOW").replace(&expected.to_string(), "sha256:REVIEWED")
    );
}

#[tokio::test]
async fn a_rule_held_since_the_review_is_a_status_change() {
    let (cluster, clb) = world();
    let plan = reviewed(&cluster, &clb).await;
    let mut settings = expecting(&plan);
    settings.plan.max_deregister = Some(Budget::Targets(0));
    let outcome = run(&rules(), &cluster, &clb, &settings, &mut Vec::new()).await.expect("run");
    let (_, found) = outcome.plan_changed.expect("another plan");
    let message = plan.refusal(Path::new("plan.json"), found, &outcome.plan);
    assert!(
        message.contains("~ rule [0].listeners[0].rules[0] (line 7): ok when reviewed, now blocked: would take"),
        "{message}"
    );
    assert!(message.contains("- deregister 10.0.0.7:8080"), "its changes went with it: {message}");
}

#[test]
fn a_file_that_is_not_a_json_plan_is_refused_saying_what_to_give() {
    let err = Reviewed::parse("plan sha256:00").expect_err("not JSON");
    assert!(err.starts_with("not the JSON document `clbsync diff -o json` writes"), "{err}");
    let err =
        Reviewed::parse(r#"{"fingerprint": "sha1:00", "changes": [], "rules": []}"#).expect_err("bad fingerprint");
    assert!(err.contains("is not a plan fingerprint"), "{err}");
}
