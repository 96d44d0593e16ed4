//! Runs that are killed: SIGKILL at seeded random points during apply loses nothing (the next run converges);
//! SIGTERM stops starting new changes, finishes the ones in flight within a bound, reports and exits 1.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{P, Slot, Spec, World, cvm, eni, p};

/// Many changes in every stage on both load balancers.
fn spec() -> Spec {
    let mut pods: Vec<P> = (1..=6).map(|k| p("api", &format!("10.1.0.{k}"))).collect();
    pods.extend((1..=4).map(|k| p("web", &format!("10.2.0.{k}"))));
    pods.extend((1..=4).map(|k| p("redis", &format!("10.3.0.{k}"))));
    pods.push(p("api", "10.1.0.50").terminating());
    let stale = |slot: Slot| (1..=4).map(move |k| eni(&format!("10.99.{}.{k}", slot as u8), slot.port(), 10));
    let mut spec = Spec::default().pods(pods);
    for slot in Slot::ALL {
        let first = spec.pods.iter().find(|p| p.app == slot.app()).map(|p| p.ip.clone()).expect("a pod");
        spec = spec.bound(slot, stale(slot)).bound(slot, [eni(&first, slot.port(), 77)]);
    }
    spec.bound(Slot::Api, [eni("10.1.0.50", 8080, 10), cvm("172.16.0.5", 30080, 20)])
}

/// Waits for the child with a deadline; kills it and fails if it does not exit in time.
fn wait_bounded(child: &mut Child, bound: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            panic!("clbsync did not exit within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn spawn(world: &World, args: &[&str]) -> Child {
    world.process(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn clbsync")
}

#[tokio::test]
async fn a_run_killed_at_random_points_during_apply_loses_nothing_and_the_next_run_converges() {
    let world = World::new("sigkill", spec()).await;
    world.emu.set_task_delay(Duration::from_millis(120));
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    for round in 0..3 {
        let wait = Duration::from_millis(rng.u64(150..1200));
        let mut child = spawn(&world, &["reconcile"]);
        tokio::time::sleep(wait).await;
        child.kill().expect("SIGKILL"); // std's kill is SIGKILL
        let status =
            tokio::task::spawn_blocking(move || wait_bounded(&mut child, Duration::from_secs(10))).await.expect("join");
        assert!(status.code().is_none() || status.success(), "round {round}: killed or already done");
        // The next CronJob run comes later than a task takes.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    world.emu.set_task_delay(Duration::ZERO);
    world.assert_converges_and_stays().await;
}

/// Starts `clbsync <args>`, sends SIGTERM as soon as the emulator sees its first mutation, and waits (bounded).
/// Returns what it printed, how long it took to exit after the signal, and the mutations made until the signal.
async fn sigterm_after_first_mutation(world: &World, args: &[&str]) -> (super::Run, Duration, usize) {
    let mut child = spawn(world, args);
    let pid = child.id();
    let mut seen_mutation = false;
    for _ in 0..1000 {
        if world.emu.calls().mutating() > 0 {
            seen_mutation = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(seen_mutation, "apply started");
    let signalled = Instant::now();
    let killed = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill -TERM");
    assert!(killed.success());
    let mutations_at_signal = world.emu.calls().mutating();
    let out = tokio::task::spawn_blocking(move || {
        let status = wait_bounded(&mut child, Duration::from_secs(30));
        let mut stdout = String::new();
        let mut stderr = String::new();
        use std::io::Read;
        child.stdout.take().expect("stdout").read_to_string(&mut stdout).expect("read stdout");
        child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read stderr");
        super::Run { code: status.code(), stdout, stderr }
    })
    .await
    .expect("join");
    (out, signalled.elapsed(), mutations_at_signal)
}

#[tokio::test]
async fn sigterm_during_apply_finishes_in_flight_changes_reports_and_exits_1() {
    let world = World::new("sigterm", spec()).await;
    world.emu.set_task_delay(Duration::from_millis(700));
    let (out, took, mutations_at_signal) = sigterm_after_first_mutation(&world, &["reconcile"]).await;
    out.assert_code(1);
    assert!(took < Duration::from_secs(15), "the in-flight wait is bounded: {took:?}\n{}", out.all());
    assert!(out.stdout.contains("not attempted"), "the report lists what was left\n{}", out.all());
    assert!(out.stdout.contains("Applied "), "the report is printed\n{}", out.all());
    assert!(out.stderr.contains("signal"), "{}", out.all());
    assert!(
        world.emu.calls().mutating() <= mutations_at_signal + 1,
        "no new stage started after SIGTERM ({} → {})\n{}",
        mutations_at_signal,
        world.emu.calls().mutating(),
        out.all()
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    world.emu.set_task_delay(Duration::ZERO);
    world.assert_converges_and_stays().await;
}

#[tokio::test]
async fn sigterm_while_a_task_hangs_reports_it_unconfirmed_once_the_grace_period_is_over() {
    // A task that takes a minute: without a bound the run would wait for it (up to the 120 s task timeout) and
    // be SIGKILLed by Kubernetes before printing anything.
    let world = World::new("sigterm-hang", spec()).await;
    world.emu.set_task_delay(Duration::from_secs(60));
    let (out, took, _) = sigterm_after_first_mutation(&world, &["reconcile", "--stop-grace", "1"]).await;
    out.assert_code(1);
    assert!(took < Duration::from_secs(8), "exits about --stop-grace after SIGTERM: {took:?}\n{}", out.all());
    assert!(out.stdout.contains("failed: Stopped"), "the change in flight is reported unconfirmed\n{}", out.all());
    assert!(out.stdout.contains("not attempted"), "{}", out.all());
    world.assert_unowned_untouched(&out);
}

/// Issue 30 #5: `reconcile --watch 2>&1 | head -n 1` panicked (exit 101) on the first write after `head` had
/// gone. Now a closed stdout stops watch mode as SIGTERM does: the pass's changes are made, then exit 0.
#[tokio::test]
async fn watch_mode_piped_into_head_stops_cleanly_once_head_has_gone() {
    use std::io::BufRead;
    let mut world = World::new("headpipe", Spec::default().pods([p("api", "10.1.0.1")])).await;
    let cmd = world.process(&["reconcile", "--watch", "--debounce", "100ms"]);
    let mut bash = std::process::Command::new("bash");
    bash.arg("-c")
        .arg(r#"timeout 60 "$@" 2>&1 | head -n 1; echo "exit=${PIPESTATUS[0]}""#)
        .arg("bash")
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => bash.env(key, v),
            None => bash.env_remove(key),
        };
    }
    let mut child = bash.spawn().expect("spawn bash");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::task::spawn_blocking(move || {
        let first = lines.next().expect("head's line").expect("read");
        (first, lines)
    });
    let (first, mut lines) = tokio::time::timeout(Duration::from_secs(30), first).await.expect("a line").expect("join");
    // head has printed its line and exits; every new pod makes a pass whose report meets the closed pipe.
    let mut added = Vec::new();
    for k in 2..=40 {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        let ip = format!("10.1.0.{k}");
        world.add_pod(p("api", &ip)).await;
        added.push(ip);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let status = tokio::task::spawn_blocking(move || wait_bounded(&mut child, Duration::from_secs(20))).await;
    assert!(status.expect("join").success(), "bash");
    let exit = lines.next().expect("the exit line").expect("read");
    assert_eq!(exit, "exit=0", "a clean stop, not a panic (101) or the 60 s timeout (124); head printed {first:?}");
    assert!(added.len() < 39, "clbsync ran on after head had gone: {added:?}");
    let bound = world.targets(Slot::Api);
    assert!(bound.iter().any(|(ip, _, _)| ip == "10.1.0.1"), "the pass was applied before it reported: {bound:?}");
}
