//! Kubernetes faults: the affected rules are skipped with a clear error, their targets stay in place, other rules
//! still converge, and the run exits 1.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, DeleteParams};

use super::{Slot, Spec, World, eni, p, write_temp};
use crate::support::kube::{TestNs, kubeconfig_path};

fn spec() -> Spec {
    Spec::default()
        .pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("web", "10.2.0.2"), p("redis", "10.3.0.1")])
        .bound(Slot::Api, [eni("10.99.0.1", 8080, 10)])
        .bound(Slot::Web, [eni("10.99.0.2", 8080, 20)])
        .bound(Slot::Redis, [eni("10.99.0.3", 6379, 10)])
}

/// The test kubeconfig with its server replaced by `server`.
fn kubeconfig_with_server(server: &str) -> tempfile::NamedTempFile {
    let text = std::fs::read_to_string(kubeconfig_path()).expect("read kubeconfig");
    let text: String = text
        .lines()
        .map(|l| match l.find("server: ") {
            Some(i) => format!("{}server: {server}\n", &l[..i]),
            None => format!("{l}\n"),
        })
        .collect();
    write_temp(&text)
}

#[tokio::test]
async fn an_unreachable_api_server_changes_nothing_and_exits_1_with_a_clear_error() {
    let mut world = World::new("kdown", spec()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let kubeconfig = kubeconfig_with_server(&format!("https://127.0.0.1:{closed}"));
    world.kubeconfig = kubeconfig.path().to_path_buf();
    let started = std::time::Instant::now();
    let run = world.reconcile().await;
    run.assert_code(1);
    assert!(started.elapsed().as_secs() < 60, "bounded");
    assert_eq!(world.emu.calls().mutating(), 0, "{}", run.all());
    assert_eq!(world.emu.state(), world.seeded, "targets stay in place");
    assert!(run.stdout.contains("4 skipped (errors)"), "every rule is skipped\n{}", run.all());
    let why = format!("cannot reach the Kubernetes API server https://127.0.0.1:{closed}/");
    assert!(run.stdout.contains(&why), "names the server and the cause\n{}", run.all());
    assert!(run.stdout.to_lowercase().contains("connection refused"), "{}", run.all());
}

/// Issue 30 #5: an API server that takes connections but never answers held `diff` for the 30 s Kubernetes
/// request timeout, past `--run-timeout`. The run deadline now gives up the lists in flight.
#[tokio::test]
async fn an_api_server_that_never_answers_ends_the_run_at_its_run_timeout() {
    let mut world = World::new("ksilent", spec()).await;
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let kubeconfig = kubeconfig_with_server(&format!("https://127.0.0.1:{port}"));
    world.kubeconfig = kubeconfig.path().to_path_buf();
    let started = std::time::Instant::now();
    let run = world.run(&["diff", "--run-timeout", "3"]).await;
    let took = started.elapsed();
    drop(silent);
    run.assert_code(1);
    assert!(
        took < std::time::Duration::from_secs(10),
        "ended {took:?} after the start, --run-timeout 3\n{}",
        run.all()
    );
    assert!(
        run.stdout.contains("stopped by run timeout (--run-timeout 3s) before its pods were listed"),
        "says why its rules were skipped\n{}",
        run.all()
    );
    assert_eq!(world.emu.calls().mutating(), 0, "{}", run.all());
}

#[tokio::test]
async fn a_namespace_the_service_account_may_not_read_skips_only_its_rule() {
    let other = TestNs::new("e2e-forbidden").await;
    let mut world = World::new("k403", spec().namespace(Slot::Redis, &other.name)).await;
    let rules = [
        r#"{apiGroups: [""], resources: ["pods"], verbs: ["list"]}"#,
        r#"{apiGroups: ["apps"], resources: ["deployments"], verbs: ["get"]}"#,
    ];
    let (kubeconfig, token) = world.ns.kubeconfig_with_role("clbsync", &rules).await;
    world.kubeconfig = kubeconfig.path().to_path_buf();

    let before = world.emu.state();
    let run = world.reconcile().await;
    run.assert_code(1);
    // The README's "Operating it" table quotes this message: keep them equal.
    let quoted = format!(
        "forbidden (403): cannot list pods in namespace {}; the ClusterRole bound to clbsync needs the rule \
         {{apiGroups: [\"\"], resources: [\"pods\"], verbs: [\"list\"]}}",
        other.name
    );
    assert!(run.stdout.contains(&quoted), "the error names the verb, resource, namespace and rule\n{}", run.all());
    assert_eq!(world.targets(Slot::Redis), [("10.99.0.3".into(), 6379, 10)], "its targets stay\n{}", run.all());
    for slot in [Slot::Api, Slot::Web, Slot::Tls] {
        assert_eq!(world.targets(slot), world.expected(slot, &before), "{slot:?} still converges\n{}", run.all());
    }
    world.assert_unowned_untouched(&run);
    assert!(!run.all().contains(&token), "the token is never printed");
}

#[tokio::test]
async fn a_deployment_deleted_between_runs_skips_its_rule_and_keeps_its_targets() {
    let world = World::new("kdeldep", spec()).await;
    world.assert_converges_and_stays().await;
    let web_before = world.targets(Slot::Web);

    Api::<Deployment>::namespaced(world.ns.client.clone(), &world.ns.name)
        .delete("web", &DeleteParams::default())
        .await
        .expect("delete deployment");
    world.emu.reset_calls();
    let run = world.reconcile().await;
    run.assert_code(1);
    assert!(run.stdout.contains("skipped") && run.stdout.contains("web"), "{}", run.all());
    assert!(run.stdout.to_lowercase().contains("not found"), "says the deployment is gone\n{}", run.all());
    assert_eq!(world.targets(Slot::Web), web_before, "its targets stay in place");
    assert_eq!(world.emu.calls().mutating(), 0, "nothing else had to change\n{}", run.all());
}

/// A loopback TCP proxy to the test API server that cuts every connection once `budget` bytes in total have come
/// back from the server: the API server "stops" part-way through a run. Runs until the test process exits.
fn cutting_proxy(upstream: std::net::SocketAddr, budget: usize) -> u16 {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = listener.local_addr().expect("addr").port();
    let left = Arc::new(AtomicUsize::new(budget));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(upstream) else { continue };
            let (mut c_in, mut s_out) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
            std::thread::spawn(move || std::io::copy(&mut c_in, &mut s_out).ok());
            let left = left.clone();
            std::thread::spawn(move || {
                let (mut server, mut client) = (server, client);
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = server.read(&mut buf) {
                    let allowed = left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |l| Some(l.saturating_sub(n)));
                    let allowed = allowed.unwrap_or(0).min(n);
                    if client.write_all(&buf[..allowed]).is_err() || allowed < n {
                        break;
                    }
                }
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
            });
        }
    });
    port
}

#[tokio::test]
async fn an_api_server_that_stops_mid_run_only_skips_the_rules_it_did_not_answer_for() {
    let mut world = World::new("kstop", spec()).await;
    let text = std::fs::read_to_string(kubeconfig_path()).expect("read kubeconfig");
    let server = text.lines().find_map(|l| l.trim().strip_prefix("server: https://")).expect("server line");
    let upstream: std::net::SocketAddr = server.trim_end_matches('/').parse().expect("loopback address");
    // Budgets (seeded) from "TLS handshake only" to "a few responses": each cuts the server off at another point.
    let mut rng = fastrand::Rng::with_seed(0xC0FFEE);
    let mut budgets: Vec<usize> = vec![500, 2_000];
    budgets.extend((0..4).map(|_| rng.usize(2_500..16_000)));
    let mut runs_cut_short = 0;
    for budget in budgets {
        let port = cutting_proxy(upstream, budget);
        let proxied: String = text
            .lines()
            .map(|l| match l.find("server: ") {
                Some(i) => format!("{}server: https://127.0.0.1:{port}\n", &l[..i]),
                None => format!("{l}\n"),
            })
            .collect();
        let kubeconfig = write_temp(&proxied);
        world.kubeconfig = kubeconfig.path().to_path_buf();
        world.emu.set_state(world.seeded.clone());
        let before = world.emu.state();
        let run = world.run(&["reconcile", "-o", "json"]).await;
        assert!(matches!(run.code, Some(0 | 1)), "budget {budget}\n{}", run.all());
        assert!(!run.stderr.contains("panicked"), "{}", run.all());
        let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("a JSON report");
        for slot in Slot::ALL {
            let rule = doc["rules"]
                .as_array()
                .expect("rules")
                .iter()
                .find(|r| {
                    r["load_balancer_id"] == slot.lb()
                        && r["listener_id"] == slot.listener()
                        && slot.location().is_none_or(|loc| r["location_id"] == loc)
                })
                .unwrap_or_else(|| panic!("{slot:?} is in the report\n{}", run.all()));
            if rule["status"] == "ok" {
                // A target the rule no longer selects is kept when the API server could not say whether a pod
                // still serves its IP (issue 24 #7): a read error never removes a target.
                let mut expected = world.expected(slot, &before);
                for c in doc["changes"].as_array().expect("changes") {
                    let unread = c["note"].as_str().is_some_and(|n| n.contains("could not be read"));
                    let here =
                        c["listener_id"] == slot.listener() && slot.location().is_none_or(|l| c["location_id"] == l);
                    if c["action"] == "wait" && here && unread {
                        let ip = c["ip"].as_str().expect("ip").to_string();
                        let port = c["target_port"].as_u64().expect("port") as u16;
                        expected.push((ip, port, c["weight"].as_u64().expect("weight") as u32));
                    }
                }
                expected.sort();
                assert_eq!(world.targets(slot), expected, "budget {budget}: {slot:?}\n{}", run.all());
            } else {
                assert!(rule["reason"].as_str().is_some_and(|r| !r.is_empty()), "{}", run.all());
                let was = super::targets_of(&before, slot, clb_emulator::state::TargetKind::Eni);
                assert_eq!(
                    world.targets(slot),
                    was,
                    "budget {budget}: skipped {slot:?} kept its targets\n{}",
                    run.all()
                );
            }
        }
        world.assert_unowned_untouched(&run);
        let skipped = run.stdout.matches("\"status\": \"skipped\"").count();
        if budget == 500 {
            assert_eq!(skipped, Slot::ALL.len(), "a cut in the TLS handshake skips every rule\n{}", run.all());
        }
        runs_cut_short += usize::from(skipped > 0);
    }
    assert!(runs_cut_short > 0, "the proxy never cut a run short: the fault did not fire");
}
