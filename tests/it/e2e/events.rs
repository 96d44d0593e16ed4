//! Kubernetes Events of `reconcile` (issue 15), read back from the real API server: one per (object, reason) per
//! run, none for `diff`, `--dry-run` or `--events=false`, and a run that may not record them still succeeds.

use std::collections::BTreeMap;

use clb_emulator::state::TargetKind;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::Api;

use super::watch::{REACT, Watcher, eventually, has, samples};
use super::{Slot, Spec, World, eni, p, targets_of};

/// A registration on every rule, a drain (api 10.1.0.3 terminates) and a removal (web 10.99.0.2 has no pod).
fn spec() -> Spec {
    Spec::default()
        .pods([p("api", "10.1.0.1"), p("api", "10.1.0.2"), p("api", "10.1.0.3").terminating()])
        .pods([p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Api, [eni("10.1.0.1", 8080, 10), eni("10.1.0.3", 8080, 10)])
        .bound(Slot::Web, [eni("10.2.0.1", 8080, 20), eni("10.99.0.2", 8080, 20)])
}

async fn events(world: &World) -> Vec<Event> {
    let api: Api<Event> = Api::namespaced(world.ns.client.clone(), &world.ns.name);
    api.list(&Default::default()).await.expect("list events").items
}

/// `(kind/name, reason)` → how many Events.
fn counts(events: &[Event]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for e in events {
        let r = e.regarding.as_ref().expect("regarding");
        let key = (
            format!("{}/{}", r.kind.as_deref().unwrap_or(""), r.name.as_deref().unwrap_or("")),
            e.reason.clone().unwrap_or_default(),
        );
        *counts.entry(key).or_default() += 1;
    }
    counts
}

fn key(object: &str, reason: &str) -> (String, String) {
    (object.to_string(), reason.to_string())
}

#[tokio::test]
async fn a_reconcile_records_one_event_per_object_and_reason_on_the_deployment() {
    let world = World::new("events", spec()).await;
    let run = world.reconcile().await;
    run.assert_code(0);
    let events = events(&world).await;
    let counts = counts(&events);
    assert_eq!(counts.get(&key("Deployment/api", "TargetsRegistered")), Some(&1), "{counts:?}\n{}", run.all());
    assert_eq!(counts.get(&key("Deployment/api", "TargetsDrained")), Some(&1), "{counts:?}\n{}", run.all());
    assert_eq!(counts.get(&key("Deployment/web", "TargetsDeregistered")), Some(&1), "{counts:?}\n{}", run.all());
    assert_eq!(
        counts.get(&key("Pod/redis-10-3-0-1", "TargetsRegistered")),
        Some(&1),
        "a selector rule's pod: {counts:?}"
    );
    assert!(counts.values().all(|n| *n == 1), "aggregated: {counts:?}");

    let registered = events
        .iter()
        .find(|e| {
            e.reason.as_deref() == Some("TargetsRegistered")
                && e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("Deployment")
        })
        .expect("registered");
    let note = registered.note.as_deref().unwrap_or_default();
    assert!(
        note.contains("registered: lb-e2e00001 HTTP:80 e2e.example.com/api: 1 target(s) [10.1.0.2:8080]")
            && note.contains("registered: lb-e2e00002 TCP:443: 2 target(s) [10.1.0.1:8443, 10.1.0.2:8443]"),
        "both rules of the Deployment in one note: {note}"
    );
    assert_eq!(registered.type_.as_deref(), Some("Normal"));
    assert_eq!(registered.reporting_controller.as_deref(), Some("clbsync.dev/clbsync"));
    assert_eq!(registered.action.as_deref(), Some("RegisterTargets"));
    assert!(registered.event_time.is_some());
    let deployment =
        Api::<Deployment>::namespaced(world.ns.client.clone(), &world.ns.name).get("api").await.expect("get");
    assert_eq!(
        registered.regarding.as_ref().and_then(|r| r.uid.clone()),
        deployment.metadata.uid,
        "kubectl describe finds Events by the object's uid"
    );

    let again = world.reconcile().await;
    again.assert_code(0);
    assert_eq!(
        self::events(&world).await.len(),
        events.len(),
        "a run that changes nothing records nothing\n{}",
        again.all()
    );
}

#[tokio::test]
async fn diff_dry_run_and_events_false_record_nothing() {
    let world = World::new("noevents", spec()).await;
    world.run(&["diff"]).await.assert_code(0);
    world.run(&["reconcile", "--dry-run"]).await.assert_code(0);
    let run = world.run(&["reconcile", "--events=false"]).await;
    run.assert_code(0);
    assert_ne!(
        world.targets(Slot::Api),
        targets_of(&world.seeded, Slot::Api, TargetKind::Eni),
        "the run changed targets\n{}",
        run.all()
    );
    assert!(events(&world).await.is_empty(), "{:?}", counts(&events(&world).await));
}

#[tokio::test]
async fn max_events_caps_the_events_of_a_run() {
    let world = World::new("maxevents", spec()).await;
    let run = world.run(&["reconcile", "--max-events", "2"]).await;
    run.assert_code(0);
    assert_eq!(events(&world).await.len(), 2, "{}", run.all());
    assert!(run.stderr.contains("--max-events 2 reached"), "{}", run.all());
}

#[tokio::test]
async fn a_role_without_events_still_succeeds_and_says_so_once() {
    let mut world = World::new("eventsforbid", spec()).await;
    let rules = [
        r#"{apiGroups: [""], resources: ["pods"], verbs: ["list"]}"#,
        r#"{apiGroups: ["apps"], resources: ["deployments"], verbs: ["get"]}"#,
    ];
    let (kubeconfig, _token) = world.ns.kubeconfig_with_role("noevents", &rules).await;
    world.kubeconfig = kubeconfig.path().to_path_buf();
    let dir = tempfile::tempdir().expect("temp dir");
    let metrics = dir.path().join("clbsync.prom");
    let run = world.run(&["reconcile", "--metrics-file", metrics.to_str().expect("utf-8")]).await;
    run.assert_code(0);
    assert_eq!(world.targets(Slot::Api), world.expected(Slot::Api, &world.seeded), "{}", run.all());
    let lines: Vec<&str> = run.stderr.lines().filter(|l| l.contains("Kubernetes Events")).collect();
    assert_eq!(lines.len(), 1, "one line about it\n{}", run.all());
    assert!(lines[0].contains("403") || lines[0].contains("forbidden"), "{}", lines[0]);
    assert!(events(&world).await.is_empty());
    let text = std::fs::read_to_string(&metrics).expect("the metrics file");
    let counted: BTreeMap<String, f64> =
        samples(&text, "clbsync_events_total").into_iter().map(|(l, v)| (l["result"].clone(), v)).collect();
    assert_eq!(counted, BTreeMap::from([("failed".into(), 4.0), ("recorded".into(), 0.0)]), "{text}");
}

/// Watch mode: a second pass with the same (object, reason) bumps the first Event's series instead of creating
/// another, and the note says what the latest pass did.
#[tokio::test]
async fn watch_mode_reuses_one_event_per_object_and_reason_with_a_series_count() {
    let mut world = World::new("wevents", Spec::default().pods([p("api", "10.1.0.1"), p("web", "10.2.0.1")])).await;
    let w = Watcher::start(&world, &[]);
    let registered = |events: &[Event]| -> Vec<Event> {
        events
            .iter()
            .filter(|e| {
                e.reason.as_deref() == Some("TargetsRegistered")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("api")
            })
            .cloned()
            .collect()
    };
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Api), "10.1.0.1", 10)).await;
    let mut first = Vec::new();
    for _ in 0..100 {
        first = registered(&events(&world).await);
        if !first.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(first.len(), 1, "{first:?}\n{}", w.logs());
    assert!(first[0].series.is_none(), "{first:?}");

    world.add_pod(p("api", "10.1.0.7")).await;
    eventually(REACT, "the new pod registered", &w, || has(&world.targets(Slot::Api), "10.1.0.7", 10)).await;
    let mut again = Vec::new();
    for _ in 0..100 {
        again = registered(&events(&world).await);
        if again.iter().any(|e| e.series.is_some()) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(again.len(), 1, "one Event, reused\n{again:?}\n{}", w.logs());
    let e = &again[0];
    assert_eq!(e.metadata.name, first[0].metadata.name);
    let series = e.series.as_ref().expect("a series");
    assert_eq!(series.count, 2, "{e:?}");
    assert!(e.note.as_deref().unwrap_or_default().contains("10.1.0.7:8080"), "the latest pass's note: {e:?}");
    let (_, text) = w.get("/metrics").expect("metrics");
    let recorded: f64 =
        samples(&text, "clbsync_events_total").iter().filter(|(l, _)| l["result"] == "recorded").map(|(_, v)| v).sum();
    assert!(recorded >= 2.0, "{text}");
}

/// Issue 24 #12: a drain held back indefinitely (its replacement never passes CLB's health checks) was silent: exit
/// 0, no Event, nothing an alert could see. Held longer than `--warn-waiting-after` (timed from the pod's
/// deletion, which the cluster records), it is a Warning Event on the workload and `clbsync_waiting_targets`.
#[tokio::test]
async fn a_drain_held_past_its_bound_is_a_warning_event_and_a_metric() {
    let mut world = World::new("ewait", Spec::default().pods([p("api", "10.1.0.1"), p("web", "10.2.0.1")])).await;
    world.reconcile().await.assert_code(0);
    // New targets are probed for 15 s of emulator time, which does not pass here: the replacement never serves.
    world.emu.set_health_config(clb_emulator::HealthConfig::default());
    world.add_pod(p("api", "10.1.0.2")).await;
    world.terminate("10.1.0.1").await;
    let metrics = tempfile::tempdir().expect("temp dir");
    let file = metrics.path().join("clbsync.prom");
    let file_arg = file.display().to_string();
    let args = ["reconcile", "--warn-waiting-after", "1s", "--metrics-file", &file_arg];
    world.run(&args).await.assert_code(0);
    assert!(has(&world.targets(Slot::Api), "10.1.0.1", 10), "the drain waits for its replacement");
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    let run = world.run(&args).await;
    run.assert_code(0);
    assert!(has(&world.targets(Slot::Api), "10.1.0.1", 10), "still held\n{}", run.all());
    let text = std::fs::read_to_string(&file).expect("the metrics file");
    assert!(text.contains("clbsync_waiting_targets 2"), "both rules of api hold it\n{text}");
    let waiting: Vec<Event> = events(&world)
        .await
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("TargetsWaiting") && e.type_.as_deref() == Some("Warning"))
        .collect();
    assert_eq!(waiting.len(), 1, "one per (object, reason)\n{}", run.all());
    let note = waiting[0].note.clone().unwrap_or_default();
    assert!(note.contains("10.1.0.1:8080") && note.contains("check their CLB health checks"), "{note}");
}
