//! The rollout simulator's short version (issue 13): one rolling update of 10 replicas rolled by the real
//! kube-controller-manager, in two modes, and a switch of the rule's backend in the rules file (issue 24). The
//! recommended setup must drop no request, and the plain CronJob without preStop must drop some: proof that the
//! simulator can fail; and a traffic split edited four times (issue 28) delivers each split and drops no request.
//! The full matrix is
//! `testbed/rollout-matrix.sh`.
//!
//! Ignored in the shared run: while the controller-manager runs, every other test's Deployment would get a
//! ReplicaSet and pods. testbed/test.sh runs it alone (`--run-ignored only`); by hand:
//! `cargo test --test it -- --ignored rollout::`. It needs the controller-manager binary (built by
//! `testbed/kube-apiserver.sh build`) and starts it with `testbed/kube-controller-manager.sh start` (and stops it
//! again if it was not running). Without the binary the test fails in CI (`CI` set) and is skipped with a message
//! elsewhere.

use std::path::Path;
use std::time::Duration;

use clb_emulator::TrafficConfig;
use clbsync_rollout::{Mode, RunOptions, Scenario, Timing};

use crate::support::kube::kubeconfig_path;

/// The setup README.md recommends.
const RECOMMENDED: Mode = Mode::WatchGatePreStop;

/// Starts the controller-manager; `None` when its binary is missing outside CI, else whether it was running.
fn start_controller_manager() -> Option<bool> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testbed/kube-controller-manager.sh");
    let bin = kubeconfig_path().with_file_name("bin").join("kube-controller-manager");
    if !bin.exists() {
        let why = format!("{} is missing: run testbed/kube-apiserver.sh build", bin.display());
        assert!(std::env::var_os("CI").is_none(), "the rollout simulator cannot run in CI: {why}");
        eprintln!("skipped: {why}");
        return None;
    }
    let run = |verb: &str| {
        let out = std::process::Command::new(&script).arg(verb).output().expect("running kube-controller-manager.sh");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
        out.status.success()
    };
    let was_running = run("status");
    assert!(run("start"), "testbed/kube-controller-manager.sh start failed");
    Some(was_running)
}

/// Stops the controller-manager when dropped if this test started it (also on a failed assertion).
struct StopUnless(bool);

impl Drop for StopUnless {
    fn drop(&mut self) {
        if !self.0 {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testbed/kube-controller-manager.sh");
            let _ = std::process::Command::new(script).arg("stop").status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the controller-manager, which would give other tests' Deployments pods: run alone (testbed/test.sh)"]
async fn recommended_setup_drops_no_request_in_a_rolling_update_a_backend_switch_or_split_edits_and_the_plain_cronjob_does()
 {
    let Some(was_running) = start_controller_manager() else { return };
    let _stop = StopUnless(was_running);
    let opts = RunOptions {
        clbsync: env!("CARGO_BIN_EXE_clbsync").into(),
        kubeconfig: kubeconfig_path(),
        work_dir: tempfile::tempdir().expect("temp dir").keep(),
        timing: Timing { factor: 5 },
        traffic: TrafficConfig { requests_per_second: 200.0, seed: 13, ..TrafficConfig::default() },
        timeout: Duration::from_secs(120),
    };
    let good = clbsync_rollout::run(Scenario::Rolling, RECOMMENDED, &opts).await.expect("the recommended mode runs");
    assert!(good.sent > 1000, "traffic flowed through the rollout: {} requests", good.sent);
    assert_eq!(
        (good.failed, good.longest_no_target_ms),
        (0, 0),
        "{}: {} of {} requests failed (logs in {})",
        RECOMMENDED.label(),
        good.failed,
        good.sent,
        opts.work_dir.display()
    );
    // Issue 24 #7: switching the rule's backend in the rules file (blue → green) cut traffic (505 of 1,137
    // requests failed): blue's targets went in the run that registered green.
    let switch = clbsync_rollout::run(Scenario::Switch, RECOMMENDED, &opts).await.expect("the switch runs");
    assert!(switch.sent > 500, "traffic flowed through the switch: {} requests", switch.sent);
    assert_eq!(
        (switch.failed, switch.longest_no_target_ms),
        (0, 0),
        "switch: {} of {} requests failed (logs in {})",
        switch.failed,
        switch.sent,
        opts.work_dir.display()
    );
    split_delivers_each_step_and_drops_no_request(&opts).await;
    let bad = clbsync_rollout::run(Scenario::Rolling, Mode::Cron, &opts).await.expect("the CronJob mode runs");
    assert!(
        bad.failed > bad.sent / 20,
        "the CronJob without preStop should lose requests when pods exit before the next run: {} of {}",
        bad.failed,
        bad.sent
    );
}

/// Issue 28: a 95/5 split of 10 web pods and 1 canary, edited to 50/50, to the canary only and switched back to
/// web only (blue/green, 1 → 10 pods), delivers each step's split within a point of the planned one (the
/// emulator counts the requests per target) and fails no request on the way.
async fn split_delivers_each_step_and_drops_no_request(opts: &RunOptions) {
    let started = std::time::Instant::now();
    let split = clbsync_rollout::run(Scenario::Split, RECOMMENDED, opts).await.expect("the split scenario runs");
    eprintln!("split scenario: {:.1} s", started.elapsed().as_secs_f64());
    let logs = opts.work_dir.display();
    assert_eq!(split.split.len(), 4, "every step was measured: {:?}", split.split);
    for step in &split.split {
        eprintln!("split step {step:?}");
        assert!(step.requests > 10_000, "{}: enough requests to measure: {}", step.label, step.requests);
        for (backend, requested) in &step.requested {
            let (planned, delivered) = (step.planned[backend], step.delivered[backend]);
            // The planner's tolerance on the weights, then the count of a random stream around them.
            assert!((planned - requested).abs() <= 0.5, "{}: {backend} planned {planned}%", step.label);
            assert!(
                (delivered - requested).abs() <= 1.0 && (delivered - planned).abs() <= 1.0,
                "{}: {backend} got {delivered}% of {} requests, planned {planned}%, requested {requested}% (logs in \
                 {logs})",
                step.label,
                step.requests
            );
        }
    }
    assert_eq!(
        (split.failed, split.longest_no_target_ms),
        (0, 0),
        "split: {} of {} requests failed (logs in {logs})",
        split.failed,
        split.sent
    );
}
