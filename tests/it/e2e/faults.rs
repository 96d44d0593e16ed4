//! CLB faults from the emulator (bounded, seeded): the run converges or exits 1 with a report that names every
//! change it did not make; a clean run afterwards converges; nothing is registered twice; what clbsync does not
//! own is untouched; `diff` and `--dry-run` change nothing even under faults.

use std::time::Duration;

use clb_emulator::{Faults, State};
use serde_json::Value;

use super::{P, Slot, Spec, World, cvm, eni, p};

fn pods() -> Vec<P> {
    vec![
        p("api", "10.1.0.1"),
        p("api", "10.1.0.2"),
        p("api", "10.1.0.3"),
        p("api", "10.1.0.9").terminating(),
        p("web", "10.2.0.1"),
        p("web", "10.2.0.2"),
        p("redis", "10.3.0.1"),
        p("redis", "10.3.0.2"),
        p("redis", "10.3.0.3"),
    ]
}

/// Every stage has work on both load balancers: registrations, a reweight, a drain and removals.
fn spec() -> Spec {
    Spec::default()
        .pods(pods())
        .bound(Slot::Api, [eni("10.1.0.1", 8080, 50), eni("10.99.0.1", 8080, 10), eni("10.1.0.9", 8080, 10)])
        .bound(Slot::Api, [cvm("172.16.0.5", 30080, 20)])
        .bound(Slot::Web, [eni("10.2.0.1", 8080, 20), eni("10.99.0.2", 8080, 10)])
        .bound(Slot::Redis, [eni("10.99.0.3", 6379, 10)])
        .bound(Slot::Tls, [eni("10.1.0.1", 8443, 10), eni("10.99.0.4", 8443, 10)])
}

fn faults(yaml: &str) -> Faults {
    serde_yaml::from_str(yaml).expect("fault config")
}

/// `reconcile -o json` and the parsed report.
async fn reconcile_json(world: &World) -> (super::Run, Value) {
    let run = world.run(&["reconcile", "-o", "json"]).await;
    let doc = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("a JSON report ({e})\n{}", run.all()));
    (run, doc)
}

/// Every target that is not where it should be is named in the report: as a change that failed or was not
/// attempted (with a code), or under a rule that was skipped with a reason.
#[track_caller]
fn assert_every_miss_is_reported(world: &World, before: &State, run: &super::Run, doc: &Value) {
    let same = |v: &Value, s: Option<&str>| v.as_str() == s;
    for slot in Slot::ALL {
        let rule_skipped = doc["rules"].as_array().expect("rules").iter().any(|r| {
            same(&r["load_balancer_id"], Some(slot.lb()))
                && same(&r["listener_id"], Some(slot.listener()))
                && (slot.location().is_none() || same(&r["location_id"], slot.location()))
                && r["status"] != "ready"
                && r["reason"].as_str().is_some_and(|s| !s.is_empty())
        });
        let now = world.targets(slot);
        let want = world.expected(slot, before);
        let missed = now.iter().filter(|t| !want.contains(t)).chain(want.iter().filter(|t| !now.contains(t)));
        for (ip, port, _) in missed {
            let named = doc["changes"].as_array().expect("changes").iter().any(|c| {
                c["ip"] == ip.as_str()
                    && c["target_port"] == *port
                    && same(&c["load_balancer_id"], Some(slot.lb()))
                    && matches!(c["status"].as_str(), Some("failed" | "not_attempted"))
                    && c["error"]["code"].as_str().is_some_and(|s| !s.is_empty())
            });
            assert!(
                named || rule_skipped,
                "{slot:?} {ip}:{port} is not converged and the report does not say so\n{}",
                run.all()
            );
        }
    }
}

/// What an injected fault leaves in the emulator's call log, and what clbsync must have done after it.
#[derive(Clone, Copy, Debug)]
enum Fired {
    /// Calls answered with this code; each one was sent again (retried), or the report names the code.
    Retried(&'static str),
    /// Tasks that ended in failure (status 1); the report shows failed changes with code `TaskFailed`.
    TaskFailed,
    /// Answers lost after the change was applied (`Dropped`); the same request is never sent again.
    NotResent,
    /// Tasks still running at their first poll: some task was polled more than once.
    PolledAgain,
}

impl Fired {
    /// Asserts from the call log that the fault fired at least once and that what should follow did.
    #[track_caller]
    fn check(self, world: &World, run: &super::Run, doc: &Value) {
        let calls = world.emu.calls();
        let resent = |r: &clb_emulator::CallRecord| {
            calls.records.iter().any(|later| later.seq > r.seq && later.action == r.action && later.params == r.params)
        };
        match self {
            Fired::Retried(code) => {
                let faulted: Vec<_> = calls.records.iter().filter(|r| r.code == code).collect();
                assert!(!faulted.is_empty(), "the fault never fired: no call answered {code}\n{}", run.all());
                let reported = doc["changes"]
                    .as_array()
                    .expect("changes")
                    .iter()
                    .any(|c| c["error"]["code"].as_str().is_some_and(|c| c.contains(code) || code.contains(c)))
                    || run.stdout.contains(code);
                for r in faulted {
                    assert!(
                        resent(r) || reported,
                        "{} #{} answered {code} was neither retried nor reported\n{}",
                        r.action,
                        r.seq,
                        run.all()
                    );
                }
            }
            Fired::TaskFailed => {
                let failed_tasks = calls
                    .records
                    .iter()
                    .filter(|r| r.mutating && r.code == "Success")
                    .filter(|r| world.emu.task(&r.request_id).is_some_and(|t| t.status == 1))
                    .count();
                assert!(failed_tasks > 0, "the fault never fired: no task failed\n{}", run.all());
                let reported =
                    doc["changes"].as_array().expect("changes").iter().any(|c| c["error"]["code"] == "TaskFailed");
                assert!(reported, "{failed_tasks} task(s) failed and no change says TaskFailed\n{}", run.all());
            }
            Fired::NotResent => {
                let dropped: Vec<_> = calls.records.iter().filter(|r| r.code == "Dropped").collect();
                assert!(!dropped.is_empty(), "the fault never fired: no answer was dropped\n{}", run.all());
                for r in dropped {
                    assert!(!resent(r), "{} #{} was applied, its answer lost, and it was sent again", r.action, r.seq);
                }
            }
            Fired::PolledAgain => {
                let polls = calls.count("DescribeTaskStatus");
                let tasks = calls.mutating_succeeded();
                assert!(tasks > 0 && polls > tasks, "no task needed a second poll ({polls} polls, {tasks} tasks)");
            }
        }
    }
}

/// The shared shape of every CLB fault scenario.
async fn survives(prefix: &str, fault: Faults, fired: Fired) -> World {
    let world = World::new(prefix, spec()).await;
    world.emu.set_faults(fault.clone());
    world.assert_read_only_commands_change_nothing().await;

    world.emu.set_faults(fault); // same faults, same seed, fresh counters
    world.emu.reset_calls();
    let before = world.emu.state();
    let (run, doc) = reconcile_json(&world).await;
    assert!(!run.stderr.contains("panicked"), "{}", run.all());
    fired.check(&world, &run, &doc);
    match run.code {
        Some(0) => world.assert_converged(&before, &run),
        Some(1) => {
            assert!(doc["summary"]["errors"].as_u64() > Some(0) || doc["summary"]["not_attempted"].as_u64() > Some(0));
            assert_every_miss_is_reported(&world, &before, &run, &doc);
        }
        other => panic!("exit {other:?}: a run under faults converges or exits 1\n{}", run.all()),
    }
    world.assert_unowned_untouched(&run);
    world.assert_no_duplicate_registration();

    world.emu.set_faults(Faults::default());
    world.assert_converges_and_stays().await;
    world
}

#[tokio::test]
async fn throttling_on_every_action_is_survived() {
    let fault = faults("{seed: 11, errors: {kind: request_limit_exceeded, rate: 0.6, max: 12}}");
    survives("throttle", fault, Fired::Retried("RequestLimitExceeded")).await;
}

#[tokio::test]
async fn internal_error_bursts_are_survived() {
    let fault = faults("{seed: 12, errors: {kind: internal_error, rate: 0.5, max: 6}}");
    survives("internal", fault, Fired::Retried("InternalError")).await;
}

#[tokio::test]
async fn http_502_bursts_are_survived() {
    survives("502", faults("{seed: 13, errors: {kind: http502, rate: 0.5, max: 6}}"), Fired::Retried("HTTP502")).await;
}

#[tokio::test]
async fn a_busy_load_balancer_is_survived() {
    survives("busy", faults("{busy: {calls: 3}}"), Fired::Retried("FailedOperation.ResourceInOperating")).await;
}

#[tokio::test]
async fn slow_async_tasks_are_waited_for() {
    let world = survives("slow", faults("{task_delay_ms: 400}"), Fired::PolledAgain).await;
    assert!(world.emu.calls().errors("FailedOperation.ResourceInOperating") == 0);
}

#[tokio::test]
async fn failed_async_tasks_are_reported_and_the_next_run_converges() {
    let fault = faults("{seed: 15, task_failures: {rate: 0.5, max: 2, message: emulated task failure}}");
    survives("taskfail", fault, Fired::TaskFailed).await;
}

#[tokio::test]
async fn answers_lost_after_the_change_was_applied_are_not_resent() {
    survives("dropped", faults("{seed: 16, drop_after_apply: {rate: 1.0, max: 2, hold_ms: 0}}"), Fired::NotResent)
        .await;
}

/// Redis wants 6 targets while a stale one is still bound: 7 > a quota of 6. Every other rule fits.
async fn quota_world(prefix: &str) -> World {
    let world = World::new(prefix, spec().pods((4..=6).map(|k| p("redis", &format!("10.3.0.{k}"))))).await;
    world.emu.set_backend_quota(6);
    world
}

#[tokio::test]
async fn a_full_backend_quota_on_one_rule_fails_that_rule_only() {
    let world = quota_world("quota").await;
    let before = world.emu.state();
    let (run, doc) = reconcile_json(&world).await;
    run.assert_code(1);
    assert!(run.stdout.contains("backend quota"), "the report says why\n{}", run.all());
    assert_every_miss_is_reported(&world, &before, &run, &doc);
    for slot in [Slot::Api, Slot::Web, Slot::Tls] {
        assert_eq!(world.targets(slot), world.expected(slot, &before), "{slot:?} converges\n{}", run.all());
    }
    world.assert_unowned_untouched(&run);
    world.emu.set_backend_quota(200);
    world.assert_converges_and_stays().await;
}

#[tokio::test]
async fn a_rule_at_its_backend_quota_makes_room_by_removing_stale_targets_and_converges_on_the_next_run() {
    let world = quota_world("quota-room").await;
    let before = world.emu.state();
    world.reconcile().await.assert_code(1);
    assert_eq!(world.targets(Slot::Redis), [], "the stale target was removed to make room");
    let run = world.reconcile().await;
    run.assert_code(0);
    world.assert_converged(&before, &run);
}

#[tokio::test]
async fn a_listener_deleted_between_read_and_write_fails_its_changes_only() {
    // Slow tasks make the run's first registration on lb-e2e00001 take a while; the listener is deleted as soon
    // as that registration is seen, i.e. after clbsync read it and before its later stages write to it.
    let world = World::new("lbldel", spec()).await;
    world.emu.set_task_delay(Duration::from_millis(600));
    let before = world.emu.state();
    let run = world.run(&["reconcile", "-o", "json"]);
    let watcher = async {
        for _ in 0..500 {
            let registered = world
                .emu
                .calls()
                .records
                .iter()
                .any(|r| r.mutating && r.code == "Success" && r.params.to_string().contains("lb-e2e00001"));
            if registered {
                assert!(world.emu.delete_listener("lb-e2e00001", "lbl-tcp06379"));
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no mutation on lb-e2e00001 seen");
    };
    let (run, ()) = tokio::join!(run, watcher);
    run.assert_code(1);
    let doc: Value = serde_json::from_str(&run.stdout).expect("json report");
    assert_every_miss_is_reported(&world, &before, &run, &doc);
    world.assert_unowned_untouched(&run);
    world.assert_no_duplicate_registration();
    assert_eq!(world.targets(Slot::Tls), world.expected(Slot::Tls, &before), "the other load balancer converges");

    // The next clean run converges everything but the rule whose listener is gone, and says which.
    world.emu.set_task_delay(Duration::ZERO);
    let next = world.reconcile().await;
    next.assert_code(1);
    assert!(next.stdout.contains("skipped") && next.stdout.contains("6379"), "{}", next.all());
    for slot in [Slot::Api, Slot::Web, Slot::Tls] {
        assert_eq!(world.targets(slot), world.expected(slot, &before), "{slot:?}\n{}", next.all());
    }
}

#[tokio::test]
async fn garbage_responses_are_clear_errors_and_nothing_is_changed_on_a_half_read_load_balancer() {
    // Every DescribeTargets answer is garbage (retries included): the listeners were read, the targets never
    // were, so no rule may be planned, let alone applied. `huge` is valid JSON larger than the client reads.
    let world = World::new("garbage", spec()).await;
    for mode in ["truncated", "wrong_shape", "empty", "html", "huge"] {
        world.emu.set_faults(faults(&format!(
            "{{garbage: {{mode: {mode}, rate: 1.0, max: 1000, huge_bytes: 40000000, actions: [DescribeTargets]}}}}"
        )));
        world.emu.reset_calls();
        let run = world.reconcile().await;
        run.assert_code(1);
        assert!(world.emu.calls().errors("Garbage") > 0, "{mode}: the fault never fired\n{}", run.all());
        assert_eq!(world.emu.calls().mutating(), 0, "{mode}: a half-read state was acted on\n{}", run.all());
        assert_eq!(world.emu.state(), world.seeded, "{mode}\n{}", run.all());
        for lb in ["lb-e2e00001", "lb-e2e00002"] {
            let skipped = run.stdout.lines().any(|l| l.starts_with("skipped: ") && l.contains(lb));
            assert!(skipped, "{mode}: rules of {lb} skipped\n{}", run.all());
        }
    }
    world.emu.set_faults(Faults::default());
    world.assert_converges_and_stays().await;
}

/// Issue 11, the write-retry rule: a write executed by CLB and then answered with a server error (`InternalError`,
/// or an HTML 502) is resent; the resend meets "already bound" / "not bound", which clbsync checks with
/// `DescribeTargets` before reporting. The run converges and reports every change as applied, truthfully.
#[tokio::test]
async fn writes_executed_before_a_server_error_are_reported_truthfully() {
    for (prefix, kind, code) in
        [("eaa-internal", "internal_error", "InternalErrorAfterApply"), ("eaa-502", "http502", "HTTP502AfterApply")]
    {
        let world = World::new(prefix, spec()).await;
        world.emu.set_faults(faults(&format!("{{seed: 21, error_after_apply: {{kind: {kind}, rate: 1.0, max: 4}}}}")));
        let before = world.emu.state();
        let (run, doc) = reconcile_json(&world).await;
        let calls = world.emu.calls();
        let executed: Vec<_> = calls.records.iter().filter(|r| r.code == code).collect();
        assert!(!executed.is_empty(), "{kind}: the fault never fired\n{}", run.all());
        for r in &executed {
            let resent = calls.records.iter().any(|l| l.seq > r.seq && l.action == r.action && l.params == r.params);
            assert!(resent, "{kind}: {} #{} was answered with a server error and not resent", r.action, r.seq);
        }
        run.assert_code(0);
        world.assert_converged(&before, &run);
        let changes = doc["changes"].as_array().expect("changes");
        assert!(changes.iter().all(|c| c["status"] == "applied"), "{kind}: every change applied\n{}", run.all());
        assert!(calls.count("DescribeTargets") > 2, "{kind}: the resent changes were checked against DescribeTargets");
        world.emu.set_faults(Faults::default());
        world.assert_converges_and_stays().await;
    }
}
