//! The rollout simulator's short version (issue 13): one rolling update of 10 replicas rolled by the real
//! kube-controller-manager, in two modes. The recommended setup must drop no request, and the plain CronJob
//! without preStop must drop some: proof that the simulator can fail. The full matrix is
//! `testbed/rollout-matrix.sh`.
//!
//! Needs the controller-manager binary (built by `testbed/kube-apiserver.sh build`); the test starts it with
//! `testbed/kube-controller-manager.sh start`. Without the binary the test fails in CI (`CI` set) and is skipped
//! with a message elsewhere.

use std::path::Path;
use std::time::Duration;

use clb_emulator::TrafficConfig;
use clbsync_rollout::{Mode, RunOptions, Scenario, Timing};

use crate::support::kube::kubeconfig_path;

/// The setup README.md recommends.
const RECOMMENDED: Mode = Mode::WatchPreStop;

fn controller_manager_started() -> bool {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = kubeconfig_path().with_file_name("bin").join("kube-controller-manager");
    if !bin.exists() {
        let why = format!("{} is missing: run testbed/kube-apiserver.sh build", bin.display());
        assert!(std::env::var_os("CI").is_none(), "the rollout simulator cannot run in CI: {why}");
        eprintln!("skipped: {why}");
        return false;
    }
    let status = std::process::Command::new(root.join("testbed/kube-controller-manager.sh"))
        .arg("start")
        .status()
        .expect("running testbed/kube-controller-manager.sh");
    assert!(status.success(), "testbed/kube-controller-manager.sh start failed");
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommended_setup_drops_no_request_in_a_rolling_update_and_the_plain_cronjob_does() {
    if !controller_manager_started() {
        return;
    }
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
    let bad = clbsync_rollout::run(Scenario::Rolling, Mode::Cron, &opts).await.expect("the CronJob mode runs");
    assert!(
        bad.failed > bad.sent / 20,
        "the CronJob without preStop should lose requests when pods exit before the next run: {} of {}",
        bad.failed,
        bad.sent
    );
}
