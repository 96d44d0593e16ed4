//! Watch mode's bounds (issue 24 #15-#17): the metrics port under a connection flood, the watch cache under pods
//! with large labels, and the rules file replaced by a FIFO. Each drives the real binary against the test API
//! server and the emulator; every flood and wait is bounded and ends by itself.

use std::net::TcpStream;
use std::time::Duration;

use super::watch::{REACT, Watcher, eventually, has};
use super::{Slot, Spec, World, p};
use crate::support::kube::pod;

fn spec() -> Spec {
    Spec::default().pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
}

/// The child's resident set now (`VmRSS`), in KiB.
fn rss_kib(w: &Watcher) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", w.pid())).expect("/proc status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of KiB")
}

/// `GET /healthz` on 127.0.0.1:`port` from the source address `from`: the status line.
async fn healthz_from(from: &str, port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4().ok()?;
    socket.bind(format!("{from}:0").parse().ok()?).ok()?;
    let mut stream = socket.connect(([127, 0, 0, 1], port).into()).await.ok()?;
    stream.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").await.ok()?;
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await.ok()?.ok()?;
    answer.lines().next().map(str::to_owned)
}

/// #15: 400 idle connections at a limit of 256 file descriptors. Before the cap, accept failed with EMFILE in a
/// busy loop (765,196 log lines in seconds), the pass could open no connection and `/metrics` did not answer.
/// One address gets at most 8 connections, so a probe from another one is answered during the flood.
#[tokio::test]
async fn a_connection_flood_on_the_metrics_port_is_capped_and_the_passes_go_on() {
    let mut world = World::new("bflood", spec()).await;
    let w = Watcher::start(&world, &[]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Web), "10.2.0.1", 20)).await;
    let limited = std::process::Command::new("prlimit")
        .args(["--pid", &w.pid().to_string(), "--nofile=256:256"])
        .status()
        .expect("prlimit");
    assert!(limited.success(), "the fault (a 256 descriptor limit) was set");

    let port = w.metrics;
    let flood: Vec<TcpStream> = (0..400).filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok()).collect();
    assert!(flood.len() >= 300, "the flood connected: {} connections", flood.len());
    // While the flood holds: another address (the kubelet's probe) is still answered, ...
    let probe = healthz_from("127.0.0.2", port).await;
    assert_eq!(probe.as_deref(), Some("HTTP/1.0 200 OK"), "a probe from another address during the flood");
    // ... and a pod change is still applied (the pass has descriptors for CLB and the API server).
    world.add_pod(p("web", "10.2.0.2")).await;
    eventually(REACT, "a new pod registered during the flood", &w, || has(&world.targets(Slot::Web), "10.2.0.2", 20))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(flood);

    let answered =
        eventually(REACT, "/metrics after the flood", &w, || w.get("/metrics").is_some_and(|(s, _)| s == 200));
    answered.await;
    let logs = w.logs();
    assert!(
        logs.lines().count() < 200,
        "no log flood: {} lines\n{}",
        logs.lines().count(),
        &logs[..logs.len().min(4000)]
    );
    let capped = logs.lines().filter(|l| l.contains("connections to the metrics port at once")).count();
    assert_eq!(capped, 1, "the cap is logged once\n{logs}");
    let metrics = w.get("/metrics").expect("metrics").1;
    assert!(metrics.contains("clbsync_rules_file_valid 1"), "no false 'rules file invalid'\n{metrics}");
}

/// #16: watched pods that get about 0.75 MB of labels each, none of which a selector uses. The cache kept every
/// label: 120 such pods took the resident set from 15 to 100 MB. Now a cached pod keeps only the labels
/// selectors use, and the resident set does not grow with them.
#[tokio::test]
async fn pods_with_large_labels_cost_the_watch_cache_only_the_labels_selectors_use() {
    use kube::api::{Patch, PatchParams};
    const PODS: usize = 60;
    const LABELS: usize = 8_000;
    let mut world = World::new("blabels", spec()).await;
    for k in 0..PODS {
        let plain = pod(&format!("big-{k}")).label("app", "redis").port("http", 8080).ip(&format!("10.3.1.{k}"));
        world.ns.create(plain.not_ready()).await;
    }
    let w = Watcher::start(&world, &[]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Redis), "10.3.0.1", 10)).await;
    let before = rss_kib(&w);

    let value = "v".repeat(63);
    let labels: serde_json::Map<String, serde_json::Value> =
        (0..LABELS).map(|i| (format!("noise.example.com/label-{i:05}"), value.clone().into())).collect();
    let patch = serde_json::json!({"metadata": {"labels": labels}});
    let label_bytes = PODS * serde_json::to_vec(&patch).expect("json").len();
    for k in 0..PODS {
        let name = format!("big-{k}");
        let patched = world.ns.pods().patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
        patched.unwrap_or_else(|e| panic!("label pod {name}: {e}"));
    }
    // The watch delivers events in order: once a pod made after the patches is registered, every patch was seen.
    world.add_pod(p("redis", "10.3.0.2")).await;
    eventually(REACT * 3, "the pod after the patches", &w, || has(&world.targets(Slot::Redis), "10.3.0.2", 10)).await;
    let after = rss_kib(&w);
    let grown = after.saturating_sub(before) as usize * 1024;
    println!(
        "{PODS} watched pods got {} MB of labels: resident set {} MB -> {} MB",
        label_bytes >> 20,
        before >> 10,
        after >> 10
    );
    assert!(
        grown < label_bytes / 4,
        "the cache holds the labels: the resident set grew {} MB for {} MB of labels",
        grown >> 20,
        label_bytes >> 20
    );
}

/// #17: the rules file replaced by a FIFO. Opening it blocked until a writer came, the whole process with it
/// (`/healthz` included). Now it is refused at once, the old rules stay and the probes answer.
#[tokio::test]
async fn a_fifo_at_the_rules_path_is_refused_and_nothing_blocks() {
    let mut world = World::new("bfifo", spec()).await;
    let w = Watcher::start(&world, &[]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Web), "10.2.0.1", 20)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("rules.fifo");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    std::fs::rename(&fifo, world.rules_path()).expect("put the FIFO at the rules path");

    eventually(REACT, "the FIFO refused", &w, || w.logs().contains("it is a FIFO")).await;
    let health = w.get("/healthz").expect("/healthz answers");
    assert_eq!(health.0, 200);
    let metrics = w.get("/metrics").expect("metrics").1;
    assert!(metrics.contains("clbsync_rules_file_valid 0"), "{metrics}");
    world.add_pod(p("web", "10.2.0.2")).await;
    eventually(REACT, "the old rules still work", &w, || has(&world.targets(Slot::Web), "10.2.0.2", 20)).await;
    let refused = w.logs().lines().filter(|l| l.contains("it is a FIFO")).count();
    assert_eq!(refused, 1, "said once, not every poll\n{}", w.logs());
}

/// #17, at start: `reconcile --watch` with a FIFO as its rules file fails at once with what to do.
#[tokio::test]
async fn watch_mode_refuses_a_fifo_as_its_rules_file_at_start() {
    let world = World::new("bfifo0", spec()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("rules.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let mut cmd = super::cli_process(&world.emu, &["reconcile", "--watch", "--metrics-addr", "127.0.0.1:0"]);
    cmd.arg("--rules").arg(&fifo).arg("--kubeconfig").arg(&world.kubeconfig);
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(Duration::from_secs(20));
    let run = super::run(cmd).await;
    run.assert_code(1);
    assert!(run.stderr.contains("it is a FIFO") && run.stderr.contains("needs a regular file"), "{}", run.all());
}
