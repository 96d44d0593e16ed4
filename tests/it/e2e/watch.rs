//! `reconcile --watch` end to end: the real binary as a long-running child against the test kube-apiserver and
//! the emulator. Every check polls the emulator with a deadline: no test sleeps for a fixed "long enough".

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Slot, Spec, Targets, World, p, write_temp};
use crate::support::kube::kubeconfig_path;

/// A `clbsync reconcile --watch` child; killed when dropped. Its output goes to files, read on failure.
pub struct Watcher {
    child: Child,
    stderr: tempfile::NamedTempFile,
    stdout: tempfile::NamedTempFile,
    pub metrics: u16,
}

impl Watcher {
    pub fn start(world: &World, extra: &[&str]) -> Watcher {
        Watcher::start_with(world, extra, &world.kubeconfig, &[])
    }

    /// [`Watcher::start`] with another kubeconfig and these environment variables (another CLB credential, say).
    pub fn start_with(world: &World, extra: &[&str], kubeconfig: &std::path::Path, env: &[(&str, &str)]) -> Watcher {
        let metrics = free_port();
        let stderr = tempfile::NamedTempFile::new().expect("temp file");
        let stdout = tempfile::NamedTempFile::new().expect("temp file");
        let addr = format!("127.0.0.1:{metrics}");
        let mut args = vec!["reconcile", "--watch", "--metrics-addr", &addr];
        if !extra.contains(&"--debounce") {
            args.extend(["--debounce", "200ms"]);
        }
        args.extend_from_slice(extra);
        let mut cmd = super::cli_process(&world.emu, &args);
        cmd.arg("--rules").arg(world.rules_path()).arg("--kubeconfig").arg(kubeconfig).envs(env.iter().copied());
        let child = cmd
            .stdout(stdout.reopen().expect("reopen"))
            .stderr(stderr.reopen().expect("reopen"))
            .spawn()
            .expect("spawn clbsync --watch");
        Watcher { child, stderr, stdout, metrics }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.stderr.path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The reports of the passes that changed or failed something.
    pub fn reports(&self) -> String {
        std::fs::read_to_string(self.stdout.path()).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http_get(self.metrics, path)
    }

    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill");
        assert!(ok.success());
    }

    /// The child's peak resident set (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("/proc status");
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number of KiB")
    }

    /// Waits (bounded) for the child to exit; its exit code.
    pub async fn exit_code(&mut self, bound: Duration) -> Option<i32> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "clbsync did not exit within {bound:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `GET path` on 127.0.0.1:port: (status, body), `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // HTTP/1.0: the answer comes whole, never chunked. (Over HTTP/1.1 the Pushgateway chunks a large /metrics,
    // and a chunk header falling inside a sample line made that sample unreadable: a test failed in CI.)
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

/// Polls `check` until it holds or `within` passes; panics with `what` and the watcher's logs.
pub async fn eventually(within: Duration, what: &str, w: &Watcher, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what} did not happen within {within:?}\n--- logs\n{}", w.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

pub fn has(targets: &Targets, ip: &str, weight: u32) -> bool {
    targets.iter().any(|(i, _, w)| i == ip && *w == weight)
}

pub fn lacks(targets: &Targets, ip: &str) -> bool {
    !targets.iter().any(|(i, _, _)| i == ip)
}

fn spec() -> Spec {
    Spec::default().pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
}

pub const REACT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn watch_reacts_to_ready_unready_delete_and_scale_within_seconds() {
    let mut world = World::new("wreact", spec()).await;
    let w = Watcher::start(&world, &[]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Api), "10.1.0.1", 10)).await;
    eventually(REACT, "/readyz", &w, || w.get("/readyz").is_some_and(|(s, _)| s == 200)).await;

    // A new pod turns ready: registered on both rules that select it.
    world.add_pod(p("api", "10.1.0.2").not_ready()).await;
    world.make_ready("10.1.0.2").await;
    eventually(REACT, "ready pod registered", &w, || {
        has(&world.targets(Slot::Api), "10.1.0.2", 10) && has(&world.targets(Slot::Tls), "10.1.0.2", 10)
    })
    .await;

    // Terminating (deletionTimestamp): drained to weight 0, then gone when the pod is.
    world.terminate("10.1.0.2").await;
    eventually(REACT, "terminating pod drained", &w, || has(&world.targets(Slot::Api), "10.1.0.2", 0)).await;
    world.release("10.1.0.2").await;
    eventually(REACT, "deleted pod deregistered", &w, || lacks(&world.targets(Slot::Api), "10.1.0.2")).await;

    // Not ready: removed (another pod still serves).
    let status = serde_json::json!({"status": {"conditions": [
        {"type": "Ready", "status": "False", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}});
    world
        .ns
        .pods()
        .patch_status(&p("api", "10.1.0.1").name(), &Default::default(), &kube::api::Patch::Merge(status))
        .await
        .expect("unready");
    world.add_pod(p("api", "10.1.0.3")).await;
    eventually(REACT, "unready pod replaced", &w, || {
        let t = world.targets(Slot::Api);
        has(&t, "10.1.0.3", 10) && lacks(&t, "10.1.0.1")
    })
    .await;

    // Scale up: three pods at once land together.
    for k in 4..=6 {
        world.add_pod(p("redis", &format!("10.3.0.{k}"))).await;
    }
    eventually(REACT, "scale-up registered", &w, || {
        let t = world.targets(Slot::Redis);
        (4..=6).all(|k| has(&t, &format!("10.3.0.{k}"), 10))
    })
    .await;
    world.assert_unowned_untouched(&super::Run { code: None, stdout: String::new(), stderr: w.logs() });
}

#[tokio::test]
async fn a_drain_held_for_the_new_targets_health_checks_is_carried_out_without_another_pod_event() {
    let mut world = World::new("wdrainwait", spec()).await;
    // New targets get traffic only once CLB's health checks pass, 3 s after binding.
    let health = clb_emulator::HealthConfig::scaled_down(5);
    let healthy_after = health.time_to_healthy();
    world.emu.set_health_config(health);
    let w = Watcher::start(&world, &["--resync-interval", "1h"]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Api), "10.1.0.1", 10)).await;
    tokio::time::sleep(healthy_after + Duration::from_millis(500)).await;

    // A replacement turns ready as the old pod starts terminating: the old one keeps its weight until the new
    // one is healthy (make before break), then is drained, though no pod changes meanwhile.
    world.add_pod(p("api", "10.1.0.2")).await;
    world.terminate("10.1.0.1").await;
    eventually(REACT, "the replacement registered", &w, || has(&world.targets(Slot::Api), "10.1.0.2", 10)).await;
    assert!(has(&world.targets(Slot::Api), "10.1.0.1", 10), "the drain waited for the new target's health checks");
    let waited =
        eventually(REACT, "the held drain carried out", &w, || has(&world.targets(Slot::Api), "10.1.0.1", 0)).await;
    assert!(waited < REACT, "drained after {waited:?}");
}

#[tokio::test]
async fn a_changed_rules_file_is_reloaded_and_an_invalid_one_is_refused() {
    let mut world = World::new("wreload", spec()).await;
    let w = Watcher::start(&world, &[]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Web), "10.2.0.1", 20)).await;

    // Like a ConfigMap update: the new file is swapped in whole.
    let swap = |text: &str| {
        let tmp = write_temp(text);
        std::fs::rename(tmp.path(), world.rules_path()).expect("swap the rules file");
        let _ = tmp.keep();
    };
    let good = world.rules_text().replace("weight: 20", "weight: 30");
    swap(&good);
    eventually(REACT, "the new weight applied", &w, || has(&world.targets(Slot::Web), "10.2.0.1", 30)).await;

    swap("- load_balancer_id: not-an-id\n  listeners: 7\n");
    eventually(REACT, "the invalid file refused", &w, || w.logs().contains("the old rules stay in force")).await;
    let metrics = w.get("/metrics").expect("metrics").1;
    assert!(metrics.contains("clbsync_rules_file_valid 0"), "{metrics}");
    // The old rules are still in force: a new web pod gets the reloaded weight.
    world.add_pod(p("web", "10.2.0.2")).await;
    eventually(REACT, "the old rules still work", &w, || has(&world.targets(Slot::Web), "10.2.0.2", 30)).await;
}

/// Issue 24 #9: a watch of a namespace that does not exist lists nothing, like a LIST there. Watch mode skips the
/// rule as a batch run does (namespace not found) instead of planning it as zero pods, which with --allow-empty
/// emptied the listener.
#[tokio::test]
async fn a_rule_in_a_namespace_that_does_not_exist_is_skipped_not_emptied_even_with_allow_empty() {
    let missing = format!("e2e-missing-{}", std::process::id());
    let spec = spec().namespace(Slot::Redis, &missing).bound(Slot::Redis, [super::eni("10.3.0.9", 6379, 10)]);
    let world = World::new("wnons", spec).await;
    let w = Watcher::start(&world, &["--allow-empty"]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Api), "10.1.0.1", 10)).await;
    eventually(REACT, "the rule skipped", &w, || {
        w.get("/metrics").is_some_and(|(_, m)| m.contains("clbsync_rules{status=\"skipped\"} 1"))
    })
    .await;
    assert_eq!(world.targets(Slot::Redis), [("10.3.0.9".to_string(), 6379, 10)], "{}", w.logs());
    // The batch run says the same, and why.
    let run = world.run(&["diff", "--allow-empty"]).await;
    run.assert_code(1);
    assert!(run.stdout.contains(&format!("namespace {missing} not found")), "{}", run.all());
}

#[tokio::test]
async fn a_deployment_that_gets_another_selector_moves_its_rule_to_the_new_pods() {
    // A Deployment's selector is immutable: it changes by deleting and creating the Deployment again.
    let mut world = World::new("wselector", spec()).await;
    world.add_pod(p("web", "10.2.0.9")).await;
    let w = Watcher::start(&world, &[]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Web), "10.2.0.9", 20)).await;
    let deployments: kube::Api<k8s_openapi::api::apps::v1::Deployment> =
        kube::Api::namespaced(world.ns.client.clone(), &world.ns.name);
    deployments.delete("web", &Default::default()).await.expect("delete deployment web");
    // Other pods that only the new selector matches.
    let mut canary = crate::support::kube::pod("canary-1").label("app", "web").label("track", "canary");
    canary = canary.port("http", 8080).ip("10.2.0.50").ready();
    world.ns.create(canary).await;
    use crate::support::kube::SelectorExt;
    world.ns.deployment("web", crate::support::kube::selector().label("app", "web").label("track", "canary")).await;
    eventually(REACT, "the rule follows the new selector", &w, || {
        let t = world.targets(Slot::Web);
        has(&t, "10.2.0.50", 20) && lacks(&t, "10.2.0.9") && lacks(&t, "10.2.0.1")
    })
    .await;
}

#[tokio::test]
async fn sigterm_mid_apply_finishes_within_the_stop_grace_releases_the_lease_and_exits_0() {
    let mut world = World::new("wterm", spec()).await;
    let ns = world.ns.name.clone();
    let mut w = Watcher::start(&world, &["--leader-election-namespace", &ns, "--stop-grace", "3"]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Redis), "10.3.0.1", 10)).await;
    world.emu.set_task_delay(Duration::from_millis(800));
    for k in 2..=6 {
        world.add_pod(p("redis", &format!("10.3.0.{k}"))).await;
    }
    let mutations = world.emu.calls().mutating();
    eventually(REACT, "apply started", &w, || world.emu.calls().mutating() > mutations).await;
    let signalled = Instant::now();
    w.signal("-TERM");
    assert_eq!(w.exit_code(Duration::from_secs(15)).await, Some(0), "{}", w.logs());
    assert!(signalled.elapsed() < Duration::from_secs(3 + 1 + 5), "within --stop-grace and the lease release");
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(world.ns.client.clone(), &ns);
    let holder = leases.get("clbsync").await.expect("the lease").spec.and_then(|s| s.holder_identity);
    assert!(holder.as_deref().is_none_or(str::is_empty), "released, holder {holder:?}\n{}", w.logs());
    world.emu.set_task_delay(Duration::ZERO);
    // Nothing half done is lost: a one-shot run converges from whatever the stopped pass left.
    world.assert_converges_and_stays().await;
}

/// A TCP proxy to the test API server that can be cut (every connection closed, new ones refused) and restored.
struct Switch {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Switch {
    fn start(upstream: std::net::SocketAddr) -> Switch {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, k) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let mut list = k.lock().expect("lock");
                list.push(client.try_clone().expect("clone"));
                list.push(server.try_clone().expect("clone"));
                let (mut c_in, mut s_out) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                std::thread::spawn(move || std::io::copy(&mut c_in, &mut s_out).ok());
                let (mut s_in, mut c_out) = (server, client);
                std::thread::spawn(move || std::io::copy(&mut s_in, &mut c_out).ok());
            }
        });
        Switch { port, cut, conns }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for s in self.conns.lock().expect("lock").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// The test kubeconfig with its server replaced by the proxy.
    fn kubeconfig(&self) -> tempfile::NamedTempFile {
        kubeconfig_via(self.port)
    }
}

/// The test kubeconfig with its server replaced by a proxy on 127.0.0.1:`port`.
pub fn kubeconfig_via(port: u16) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(kubeconfig_path()).expect("read kubeconfig");
    let proxied: String = text
        .lines()
        .map(|l| match l.find("server: ") {
            Some(i) => format!("{}server: https://127.0.0.1:{port}\n", &l[..i]),
            None => format!("{l}\n"),
        })
        .collect();
    write_temp(&proxied)
}

pub fn api_server() -> std::net::SocketAddr {
    let text = std::fs::read_to_string(kubeconfig_path()).expect("read kubeconfig");
    let server = text.lines().find_map(|l| l.trim().strip_prefix("server: https://")).expect("server line");
    server.trim_end_matches('/').parse().expect("loopback address")
}

#[tokio::test]
async fn an_api_server_cut_mid_watch_never_deregisters_and_the_watch_resumes() {
    let mut world = World::new("wcut", spec().pods([p("api", "10.1.0.2")])).await;
    let switch = Switch::start(api_server());
    let kubeconfig = switch.kubeconfig();
    world.kubeconfig = kubeconfig.path().to_path_buf();
    let w = Watcher::start(&world, &["--resync-interval", "2s"]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Api), "10.1.0.2", 10)).await;

    switch.cut();
    // The pod goes away while clbsync cannot see it (the test talks to the API server directly).
    world.terminate("10.1.0.2").await;
    world.release("10.1.0.2").await;
    eventually(REACT, "the watch noticed the cut", &w, || w.logs().contains("watch failed")).await;
    let mutations = world.emu.calls().mutating();
    let cut_since = Instant::now();
    while cut_since.elapsed() < Duration::from_secs(6) {
        assert!(has(&world.targets(Slot::Api), "10.1.0.2", 10), "nothing is removed while the API server is cut");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(world.emu.calls().mutating(), mutations, "no change at all while cut\n{}", w.logs());
    assert!(w.logs().contains("rules wait for their watch"), "resyncs came and skipped the rules\n{}", w.logs());

    switch.restore();
    eventually(Duration::from_secs(30), "the watch resumed and removed the pod", &w, || {
        lacks(&world.targets(Slot::Api), "10.1.0.2")
    })
    .await;
    assert!(has(&world.targets(Slot::Api), "10.1.0.1", 10), "{}", w.logs());
}

pub fn leader_metric(w: &Watcher) -> Option<bool> {
    let (_, body) = w.get("/metrics")?;
    body.lines().find_map(|l| l.strip_prefix("clbsync_leader ")).map(|v| v.trim() == "1")
}

#[tokio::test]
async fn two_replicas_elect_one_leader_and_a_killed_leader_is_replaced() {
    let mut world = World::new("wlease", spec()).await;
    let ns = world.ns.name.clone();
    let lease = ["--leader-election-namespace", ns.as_str(), "--leader-election-id", "clbsync-test"];
    let mut a = Watcher::start(&world, &lease);
    let mut b = Watcher::start(&world, &lease);
    let (mut a_leads, mut b_leads) = (None, None);
    eventually(REACT, "one leader", &a, || {
        a_leads = leader_metric(&a);
        b_leads = leader_metric(&b);
        a_leads.is_some() && b_leads.is_some() && a_leads != b_leads
    })
    .await;
    eventually(REACT, "the leader syncs", &a, || has(&world.targets(Slot::Api), "10.1.0.1", 10)).await;
    let (leader, follower) = if a_leads == Some(true) { (&mut a, &mut b) } else { (&mut b, &mut a) };
    assert_eq!(leader_metric(follower), Some(false), "exactly one leader");

    leader.child.kill().expect("SIGKILL the leader");
    let _ = leader.child.wait();
    let took = eventually(Duration::from_secs(25), "the follower takes over", follower, || {
        leader_metric(follower) == Some(true)
    })
    .await;
    assert!(took <= Duration::from_secs(20), "takeover within the lease duration, took {took:?}");
    world.add_pod(p("api", "10.1.0.7")).await;
    eventually(REACT, "the new leader mutates", follower, || has(&world.targets(Slot::Api), "10.1.0.7", 10)).await;

    follower.signal("-TERM");
    assert_eq!(follower.exit_code(Duration::from_secs(15)).await, Some(0), "{}", follower.logs());
    let leases: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
        kube::Api::namespaced(world.ns.client.clone(), &ns);
    let holder = leases.get("clbsync-test").await.expect("the lease").spec.and_then(|s| s.holder_identity);
    assert!(holder.as_deref().is_none_or(str::is_empty), "SIGTERM released the lease, holder {holder:?}");
}

/// `name{labels} value` lines of one metric family, as (labels, value).
pub fn samples(text: &str, name: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match series.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
                .collect();
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_parse_and_their_api_call_counters_match_the_emulator_call_log() {
    let mut world = World::new("wmetrics", spec()).await;
    let mut w = Watcher::start(&world, &[]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Api), "10.1.0.1", 10)).await;
    world.add_pod(p("api", "10.1.0.2")).await;
    eventually(REACT, "a change", &w, || has(&world.targets(Slot::Api), "10.1.0.2", 10)).await;
    // Quiet: the pass that made the change has ended and counted its calls.
    let mut text = String::new();
    eventually(REACT, "counters match the emulator", &w, || {
        text = w.get("/metrics").map(|(_, b)| b).unwrap_or_default();
        let mut ours: BTreeMap<String, f64> = BTreeMap::new();
        for (labels, v) in samples(&text, "clbsync_api_calls_total") {
            *ours.entry(labels["action"].clone()).or_default() += v;
        }
        let theirs: BTreeMap<String, f64> =
            world.emu.calls().by_action.iter().map(|(a, n)| (a.clone(), *n as f64)).collect();
        ours == theirs
    })
    .await;
    assert!(text.ends_with("# EOF\n"), "{text}");
    for (name, labels) in [
        ("clbsync_reconcile_total", vec!["result"]),
        ("clbsync_changes_total", vec!["action", "status"]),
        ("clbsync_rules", vec!["status"]),
        ("clbsync_targets", vec!["state"]),
        ("clbsync_leader", vec![]),
        ("clbsync_last_success_timestamp_seconds", vec![]),
        ("clbsync_reconcile_duration_seconds_count", vec![]),
    ] {
        let s = samples(&text, name);
        assert!(!s.is_empty(), "{name} missing\n{text}");
        assert!(s.iter().all(|(l, _)| labels.iter().all(|k| l.contains_key(*k))), "{name} labels\n{text}");
    }
    let registered: f64 = samples(&text, "clbsync_changes_total")
        .iter()
        .filter(|(l, _)| l["action"] == "register" && l["status"] == "applied")
        .map(|(_, v)| v)
        .sum();
    assert!(registered >= 1.0, "{text}");
    w.signal("-TERM");
    assert_eq!(w.exit_code(Duration::from_secs(15)).await, Some(0), "{}", w.logs());
}

/// Reaction times with the default --debounce (1 s) and the emulator's default task time: pod Ready → its target
/// bound, and deletionTimestamp → drained, each measured from the API server accepting the change to the
/// emulator showing the result (polled every 10 ms). A measurement for the README, not a timed test:
/// `cargo test --test it -- --ignored --nocapture e2e::watch::measure_reaction_times`.
#[tokio::test]
#[ignore = "a measurement; run by hand"]
async fn measure_reaction_times() {
    const EVENTS: usize = 50;
    let mut world = World::new("wmeasure", spec()).await;
    // Like the real service: tasks take a while (450 ms, not the client's first poll interval of 300 ms).
    world.emu.set_task_delay(Duration::from_millis(450));
    let w = Watcher::start(&world, &["--debounce", "1s"]);
    eventually(REACT, "the first sync", &w, || has(&world.targets(Slot::Redis), "10.3.0.1", 10)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls_before = world.emu.calls().records.len();
    let lists_before = pod_lists().await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let idle_calls = world.emu.calls().records.len() - calls_before;
    let idle_lists = pod_lists().await - lists_before;
    let (mut ready, mut drained) = (Vec::new(), Vec::new());
    for k in 0..EVENTS {
        let ip = format!("10.3.1.{}", k + 1);
        world.add_pod(p("redis", &ip).not_ready()).await;
        let started = Instant::now();
        world.make_ready(&ip).await;
        while !has(&world.targets(Slot::Redis), &ip, 10) {
            assert!(started.elapsed() < REACT, "{}", w.logs());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ready.push(started.elapsed());
        let started = Instant::now();
        world.terminate(&ip).await;
        while !has(&world.targets(Slot::Redis), &ip, 0) {
            assert!(started.elapsed() < REACT, "{}", w.logs());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drained.push(started.elapsed());
        world.release(&ip).await;
    }
    for (what, mut times) in [("ready -> bound", ready), ("terminating -> drained", drained)] {
        times.sort();
        let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        println!("{what}: n={} p50={:?} p99={:?} max={:?}", times.len(), at(0.5), at(0.99), times[times.len() - 1]);
    }
    println!("CLB calls in 30 s with nothing changing (resync 60 s): {idle_calls}");
    println!("pod LISTs served by the API server in those 30 s: {idle_lists}");
    println!("peak RSS of the watcher: {} KiB", w.peak_rss_kib());
}

/// Peak RSS of a watcher that caches 10,000 pods: `cargo test --test it -- --ignored --nocapture
/// e2e::watch::measure_memory_with_10000_pods` (seeds the pods once, then starts three watchers one after another).
#[tokio::test]
#[ignore = "a measurement; run by hand"]
async fn measure_memory_with_10000_pods() {
    use futures::stream::{self, StreamExt};
    const PODS: usize = 10_000;
    let world = World::new("wmem", spec()).await;
    let started = Instant::now();
    stream::iter(0..PODS)
        .for_each_concurrent(32, |k| {
            let ns = &world.ns;
            async move {
                let ip = format!("10.{}.{}.{}", 100 + k / 65_536, (k / 256) % 256, k % 256);
                super::create_pod(ns, &p("redis", &ip).not_ready()).await;
            }
        })
        .await;
    println!("seeded {PODS} pods in {:?}", started.elapsed());
    for run in 1..=3 {
        let w = Watcher::start(&world, &[]);
        eventually(REACT * 6, "/readyz", &w, || w.get("/readyz").is_some_and(|(s, _)| s == 200)).await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        println!("run {run}: peak RSS with {PODS} watched pods: {} KiB", w.peak_rss_kib());
    }
}

/// `apiserver_request_total` for LISTs of pods, from the test API server's own metrics.
async fn pod_lists() -> u64 {
    let client = crate::support::kube::admin_client().await;
    let request = http::Request::get("/metrics").body(Vec::new()).expect("request");
    let text = client.request_text(request).await.expect("the API server's metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{") && l.contains("resource=\"pods\"") && l.contains("verb=\"LIST\"")
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

#[tokio::test]
async fn a_metrics_client_that_never_sends_its_headers_is_dropped() {
    let world = World::new("wslow", spec()).await;
    let w = Watcher::start(&world, &[]);
    eventually(REACT, "/healthz", &w, || w.get("/healthz").is_some_and(|(s, _)| s == 200)).await;
    let port = w.metrics;
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.write_all(b"GET /metrics HTTP/1.1\r\n").expect("half a request");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let started = Instant::now();
        let mut buf = [0u8; 512];
        (s.read(&mut buf).map_err(|e| e.kind()), started.elapsed())
    })
    .await
    .expect("join");
    assert!(closed.0.is_ok() && closed.1 < Duration::from_secs(9), "the server hung up: {closed:?}");
    assert!(w.get("/healthz").is_some_and(|(s, _)| s == 200), "and still serves others");
}
