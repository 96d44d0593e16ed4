//! Leader election end to end (issue 24, "One writer, always"): replicas of the real binary against the test
//! kube-apiserver and one emulator. Each replica signs with its own SecretId, so the emulator's call log says who
//! wrote what. Short durations (lease 3 s, renew deadline 2 s, retry period 500 ms) keep each test to seconds.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clb_emulator::CallRecord;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::ObjectMeta;

use super::watch::{REACT, Watcher, api_server, eventually, has, kubeconfig_via, lacks, leader_metric};
use super::{Slot, Spec, TEMP_ID, TEMP_KEY, TOKEN, World, p};

const LEASE: Duration = Duration::from_secs(3);
const RENEW_DEADLINE: Duration = Duration::from_secs(2);
const LEASE_ID: &str = "clbsync-election";

/// The first replica signs with the emulator's default credential, the second with the temporary one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    A,
    B,
}

impl Who {
    fn secret_id(self) -> &'static str {
        match self {
            Who::A => clb_emulator::DEFAULT_SECRET_ID,
            Who::B => TEMP_ID,
        }
    }
}

/// Two api pods behind Api and Tls, one web, one redis.
fn spec() -> Spec {
    Spec::default().pods([p("api", "10.1.0.1"), p("api", "10.1.0.2"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
}

/// `reconcile --watch` with leader election on [`LEASE_ID`] in the world's namespace, resyncing every second
/// (so a replica that may write would soon undo what the other did), with the short durations unless `extra`
/// sets them.
fn replica(world: &World, kubeconfig: &std::path::Path, who: Who, extra: &[&str]) -> Watcher {
    let mut args = vec!["--leader-election-namespace", &world.ns.name, "--leader-election-id", LEASE_ID];
    args.extend(["--resync-interval", "1s"]);
    if !extra.contains(&"--leader-election-lease-duration") {
        args.extend(["--leader-election-lease-duration", "3s", "--leader-election-renew-deadline", "2s"]);
        args.extend(["--leader-election-retry-period", "500ms"]);
    }
    args.extend_from_slice(extra);
    let env: &[(&str, &str)] = match who {
        Who::A => &[],
        Who::B => &[
            ("TENCENTCLOUD_SECRET_ID", TEMP_ID),
            ("TENCENTCLOUD_SECRET_KEY", TEMP_KEY),
            ("TENCENTCLOUD_SESSION_TOKEN", TOKEN),
        ],
    };
    Watcher::start_with(world, &args, kubeconfig, env)
}

/// Starts A, waits until it leads and has synced, then starts B and waits until it follows A.
async fn a_leads_b_follows(world: &World, a_kubeconfig: &std::path::Path) -> (Watcher, Watcher) {
    let a = replica(world, a_kubeconfig, Who::A, &[]);
    eventually(REACT, "A leads and syncs", &a, || {
        leader_metric(&a) == Some(true) && has(&world.targets(Slot::Api), "10.1.0.2", 10)
    })
    .await;
    let b = replica(world, &world.kubeconfig, Who::B, &[]);
    eventually(REACT, "B follows A", &b, || b.logs().contains("following the leader")).await;
    assert_eq!(leader_metric(&b), Some(false), "{}", b.logs());
    (a, b)
}

/// The mutating calls `who` made from call number `from` on.
fn writes_by(world: &World, who: Who, from: usize) -> Vec<CallRecord> {
    let calls = world.emu.calls();
    calls
        .records
        .into_iter()
        .skip(from)
        .filter(|r| r.mutating && r.secret_id.as_deref() == Some(who.secret_id()))
        .collect()
}

fn leases(world: &World) -> Api<Lease> {
    Api::namespaced(world.ns.client.clone(), &world.ns.name)
}

/// A TCP proxy on loopback that can blackhole: every connection, old and new, stays open and nothing is forwarded
/// either way (what a network partition or a half-open connection looks like to the client). It stops by itself
/// after `bound`, or when dropped.
struct Blackhole {
    port: u16,
    cut: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

impl Blackhole {
    fn start(upstream: SocketAddr, bound: Duration) -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let (cut, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let until = Instant::now() + bound;
        let (c, d) = (cut.clone(), done.clone());
        std::thread::spawn(move || {
            while !d.load(Ordering::SeqCst) && Instant::now() < until {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let _ = client.set_nonblocking(false);
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (from, to) = (from.try_clone().expect("clone"), to.try_clone().expect("clone"));
                    let (c, d) = (c.clone(), d.clone());
                    std::thread::spawn(move || pump(from, to, &c, &d, until));
                }
            }
        });
        Blackhole { port, cut, done }
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either closes, the proxy stops or `until`; while `cut`, reads and drops.
fn pump(mut from: TcpStream, mut to: TcpStream, cut: &AtomicBool, done: &AtomicBool, until: Instant) {
    use std::io::{Read, Write};
    let _ = from.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 16 * 1024];
    while !done.load(Ordering::SeqCst) && Instant::now() < until {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if !cut.load(Ordering::SeqCst) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// Issue 24 item 1, the partition test: the leader's API-server connection is blackholed while pods change.
/// From its renew deadline on it makes no CLB write, reports `clbsync_leader 0` and fails `/readyz`; the other
/// replica takes over and converges; when the partition heals the cut-off replica follows.
#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_writing_at_its_renew_deadline_and_the_other_converges() {
    let mut world = World::new("lcut", spec()).await;
    let proxy = Blackhole::start(api_server(), Duration::from_secs(90));
    let via = kubeconfig_via(proxy.port);
    let (a, b) = a_leads_b_follows(&world, via.path()).await;

    proxy.cut();
    let cut = Instant::now();
    world.terminate("10.1.0.2").await;
    world.release("10.1.0.2").await;
    world.add_pod(p("api", "10.1.0.8")).await;
    // A's last renewal was sent before the cut: past this, it may not write.
    tokio::time::sleep_until((cut + RENEW_DEADLINE + Duration::from_millis(100)).into()).await;
    let from = world.emu.calls().records.len();
    eventually(Duration::from_secs(2), "A says it no longer leads", &a, || leader_metric(&a) == Some(false)).await;
    eventually(REACT, "B takes over and converges", &b, || {
        let api = world.targets(Slot::Api);
        leader_metric(&b) == Some(true) && has(&api, "10.1.0.8", 10) && lacks(&api, "10.1.0.2")
    })
    .await;
    eventually(REACT, "A's /readyz fails: it has seen no leader for a lease duration", &a, || {
        a.get("/readyz").is_some_and(|(status, body)| status == 503 && body.contains("no replica has held the Lease"))
    })
    .await;
    // Three more resyncs: A's cache still has 10.1.0.2 and not 10.1.0.8, so a replica that wrote would undo B.
    let watching = Instant::now();
    while watching.elapsed() < Duration::from_secs(3) {
        let api = world.targets(Slot::Api);
        assert!(has(&api, "10.1.0.8", 10) && lacks(&api, "10.1.0.2"), "B's work was undone: {api:?}\n{}", a.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(writes_by(&world, Who::A, from), [], "A wrote after its renew deadline\n{}", a.logs());
    assert!(!writes_by(&world, Who::B, 0).is_empty(), "B did the work");
    let logs = a.logs();
    assert!(logs.contains("the Lease: no answer within"), "the partition hit A's Lease requests\n{logs}");
    assert!(logs.contains("stopped writing: leader lease lost: not renewed within"), "{logs}");

    proxy.restore();
    eventually(Duration::from_secs(30), "A, reconnected, follows B", &a, || a.logs().contains("following the leader"))
        .await;
    assert_eq!((leader_metric(&a), leader_metric(&b)), (Some(false), Some(true)), "one leader");
    assert_eq!(writes_by(&world, Who::A, from), [], "{}", a.logs());
}

/// Issue 24 item 1: a leader stopped (SIGSTOP) for longer than the lease duration while pods change writes
/// nothing when it resumes, although its first pass is due at once and its cache is stale; when it leads again
/// it lists first, and writes only from what it listed.
#[tokio::test]
async fn a_leader_resumed_after_sigstop_writes_nothing_until_it_has_the_lease_again_and_has_listed() {
    let mut world = World::new("lstop", spec()).await;
    let kubeconfig = world.kubeconfig.clone();
    let (a, mut b) = a_leads_b_follows(&world, &kubeconfig).await;

    a.signal("-STOP");
    let stopped = Instant::now();
    let from = world.emu.calls().records.len();
    world.terminate("10.1.0.2").await;
    world.release("10.1.0.2").await;
    world.add_pod(p("api", "10.1.0.8")).await;
    eventually(REACT, "B takes over and converges", &b, || {
        let api = world.targets(Slot::Api);
        leader_metric(&b) == Some(true) && has(&api, "10.1.0.8", 10) && lacks(&api, "10.1.0.2")
    })
    .await;
    tokio::time::sleep_until((stopped + LEASE + Duration::from_secs(2)).into()).await;
    a.signal("-CONT");
    let resumed = Instant::now();
    while resumed.elapsed() < Duration::from_secs(3) {
        let api = world.targets(Slot::Api);
        assert!(has(&api, "10.1.0.8", 10) && lacks(&api, "10.1.0.2"), "A wrote from its stale cache: {api:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(writes_by(&world, Who::A, from), [], "A wrote after SIGCONT\n{}", a.logs());
    assert_eq!(leader_metric(&a), Some(false), "{}", a.logs());
    assert!(a.logs().contains("stopped writing: leader lease lost"), "{}", a.logs());

    // B hands over: A leads again, lists, and then writes from the fresh list.
    b.signal("-TERM");
    assert_eq!(b.exit_code(Duration::from_secs(10)).await, Some(0), "{}", b.logs());
    eventually(REACT, "A leads again", &a, || leader_metric(&a) == Some(true)).await;
    world.add_pod(p("api", "10.1.0.9")).await;
    eventually(REACT, "A registers a new pod", &a, || has(&world.targets(Slot::Api), "10.1.0.9", 10)).await;
    let api = world.targets(Slot::Api);
    assert!(has(&api, "10.1.0.8", 10) && lacks(&api, "10.1.0.2"), "{api:?}\n{}", a.logs());
    let stale: Vec<_> =
        writes_by(&world, Who::A, from).into_iter().filter(|r| r.params.to_string().contains("10.1.0.2")).collect();
    assert_eq!(stale, [], "A wrote about a pod deleted while it was stopped\n{}", a.logs());
    assert!(a.logs().contains("the watches list again before the first pass"), "{}", a.logs());
}

/// Issue 24 item 2: the leader dies and its Lease is deleted: the follower recreates it a lease duration after
/// it found it missing (its leader may have been alive), says so, and leads.
#[tokio::test]
async fn a_deleted_lease_is_recreated_and_the_follower_leads() {
    let mut world = World::new("ldel", spec()).await;
    let kubeconfig = world.kubeconfig.clone();
    let (a, b) = a_leads_b_follows(&world, &kubeconfig).await;
    a.signal("-KILL");
    leases(&world).delete(LEASE_ID, &Default::default()).await.expect("delete the Lease");
    let deleted = Instant::now();
    let took = eventually(LEASE + Duration::from_secs(5), "B recreates the Lease and leads", &b, || {
        leader_metric(&b) == Some(true)
    })
    .await;
    assert!(deleted.elapsed() >= LEASE, "B waited out a lease duration first: {took:?}\n{}", b.logs());
    let holder = leases(&world).get(LEASE_ID).await.expect("recreated").spec.and_then(|s| s.holder_identity);
    assert!(holder.is_some_and(|h| !h.is_empty()), "{}", b.logs());
    assert!(b.logs().contains("the Lease is missing (deleted?)"), "{}", b.logs());
    assert!(b.logs().contains("created the Lease"), "{}", b.logs());
    world.add_pod(p("api", "10.1.0.8")).await;
    eventually(REACT, "B writes", &b, || has(&world.targets(Slot::Api), "10.1.0.8", 10)).await;
    assert_eq!(b.get("/readyz").map(|(s, _)| s), Some(200), "{}", b.logs());
}

/// Issue 24 item 2: a replica that sees no leader for longer than the lease duration (here: it cannot create the
/// Lease, its namespace does not exist) fails `/readyz` and says why in its log.
#[tokio::test]
async fn readyz_fails_when_no_replica_has_held_the_lease_for_a_lease_duration() {
    let world = World::new("lnone", spec()).await;
    let args = [
        "--leader-election-namespace",
        "clbsync-no-such-namespace",
        "--leader-election-lease-duration",
        "3s",
        "--leader-election-renew-deadline",
        "2s",
        "--leader-election-retry-period",
        "500ms",
    ];
    let w = Watcher::start(&world, &args);
    eventually(REACT, "/readyz fails", &w, || {
        w.get("/readyz").is_some_and(|(status, body)| status == 503 && body.contains("no replica has held the Lease"))
    })
    .await;
    eventually(REACT, "the log says why", &w, || w.logs().contains("/readyz fails: no replica has held the Lease"))
        .await;
    assert_eq!(leader_metric(&w), Some(false));
}

/// Issue 24 item 3: a Lease planted with a renewTime a year ahead is taken over at once (well within the lease
/// duration), with one warning naming its holder.
#[tokio::test]
async fn a_lease_with_a_far_future_renew_time_is_taken_over_with_a_warning_naming_its_holder() {
    let world = World::new("lfuture", spec()).await;
    let year = k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(24 * 365);
    let time = MicroTime(year);
    let planted = Lease {
        metadata: ObjectMeta { name: Some(LEASE_ID.into()), ..ObjectMeta::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some("intruder-7f3a".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(time.clone()),
            renew_time: Some(time),
            lease_transitions: Some(0),
            ..LeaseSpec::default()
        }),
    };
    leases(&world).create(&Default::default(), &planted).await.expect("plant the Lease");
    // The default 15 s lease: taking over by expiry would take that long.
    let durations = ["--leader-election-lease-duration", "15s", "--leader-election-retry-period", "500ms"];
    let w = replica(&world, &world.kubeconfig, Who::A, &durations);
    let took = eventually(REACT, "the replica leads", &w, || leader_metric(&w) == Some(true)).await;
    assert!(took < Duration::from_secs(8), "at once, not after the lease duration: {took:?}\n{}", w.logs());
    let logs = w.logs();
    let warnings = logs.lines().filter(|l| l.contains("WARN") && l.contains("names intruder-7f3a")).count();
    assert_eq!(warnings, 1, "one warning naming the holder\n{logs}");
    assert!(logs.contains("took the Lease over from intruder-7f3a"), "{logs}");
    eventually(REACT, "it writes", &w, || has(&world.targets(Slot::Api), "10.1.0.2", 10)).await;
}

/// The time from SIGTERM to the leader until the follower reports `clbsync_leader 1`, with the default durations:
/// `cargo nextest run --test it --run-ignored only -E 'test(/measure_takeover/)' --no-capture`.
#[tokio::test]
#[ignore = "a measurement: prints takeover times"]
async fn measure_takeover_after_sigterm() {
    let world = World::new("ltake", spec()).await;
    let mut times = Vec::new();
    let defaults = ["--leader-election-lease-duration", "15s"];
    let mut leader = replica(&world, &world.kubeconfig, Who::A, &defaults);
    eventually(REACT, "A leads", &leader, || leader_metric(&leader) == Some(true)).await;
    for round in 0..5 {
        let who = if round % 2 == 0 { Who::B } else { Who::A };
        let follower = replica(&world, &world.kubeconfig, who, &defaults);
        eventually(REACT, "it follows", &follower, || follower.logs().contains("following the leader")).await;
        // Land the signal at a random point of the follower's retry period.
        tokio::time::sleep(Duration::from_millis(fastrand::u64(0..2_000))).await;
        let signalled = Instant::now();
        leader.signal("-TERM");
        eventually(REACT, "the follower takes over", &follower, || leader_metric(&follower) == Some(true)).await;
        times.push(signalled.elapsed());
        assert_eq!(leader.exit_code(Duration::from_secs(10)).await, Some(0), "{}", leader.logs());
        leader = follower;
    }
    times.sort();
    println!("takeover after SIGTERM: median {:?}, range {:?}–{:?}, all {times:?}", times[2], times[0], times[4]);
}
