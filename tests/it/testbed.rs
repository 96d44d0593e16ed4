//! The README's two commands depend on the testbed scripts: what they build and what they need from outside the
//! repository (issue 30).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::kube::kubeconfig_path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The binaries the test API server was started from (`<testbed>/bin`, beside its kubeconfig).
fn built_bin_dir() -> PathBuf {
    kubeconfig_path().parent().expect("the kubeconfig is in the testbed directory").join("bin")
}

/// Regression (issue 30): the sandbox's own testbed, given the tests' kube-apiserver and no controller-manager,
/// downloaded the Debian source and built kube-controller-manager again (469 s) before starting. `start` needs
/// and builds only kube-apiserver; a bin dir holding it starts at once.
#[test]
fn starting_a_second_testbed_on_the_built_apiserver_builds_nothing() {
    let bin = tempfile::tempdir().expect("temp dir");
    let apiserver = built_bin_dir().join("kube-apiserver");
    assert!(apiserver.exists(), "{} is missing: the test API server runs from it", apiserver.display());
    std::fs::hard_link(&apiserver, bin.path().join("kube-apiserver"))
        .or_else(|_| std::fs::copy(&apiserver, bin.path().join("kube-apiserver")).map(drop))
        .expect("link the built kube-apiserver");
    let testbed = tempfile::tempdir().expect("temp dir");
    let script = |verb: &str| {
        Command::new(root().join("testbed/kube-apiserver.sh"))
            .arg(verb)
            .env("CLBSYNC_KUBE_TESTBED", testbed.path())
            .env("CLBSYNC_KUBE_BIN_DIR", bin.path())
            .output()
            .expect("run testbed/kube-apiserver.sh")
    };
    let started = script("start");
    let status = script("status");
    let stopped = script("stop");
    assert!(started.status.success(), "start failed:\n{}", text(&started));
    assert!(status.status.success(), "not running after start:\n{}", text(&status));
    assert!(stopped.status.success(), "stop failed:\n{}", text(&stopped));
    let log = text(&started);
    assert!(!log.contains("building") && !log.contains("apt-get source"), "start built something:\n{log}");
    assert!(!bin.path().join("kube-controller-manager").exists(), "start built the controller-manager:\n{log}");
    assert!(!testbed.path().join("src").exists(), "start fetched the source package:\n{log}");
}

/// Issue 30: in a plain clone (no shared reference folder beside it, no network) the supply-chain step skipped
/// nothing silently and failed the whole test command. Now it skips loudly, and only outside CI.
#[test]
fn the_advisory_check_without_a_database_skips_loudly_outside_ci_and_fails_in_ci() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |ci: Option<&str>| {
        let mut cmd = Command::new(root().join("testbed/supply-chain.sh"));
        cmd.env("CLBSYNC_ADVISORY_DB", dir.path().join("db"))
            .env("CLBSYNC_ADVISORY_BUNDLE", dir.path().join("no-such.bundle"))
            .env("CLBSYNC_ADVISORY_UPSTREAM", dir.path().join("no-such-upstream"))
            .env_remove("CI");
        if let Some(ci) = ci {
            cmd.env("CI", ci);
        }
        cmd.output().expect("run testbed/supply-chain.sh")
    };
    let local = run(None);
    assert!(local.status.success(), "outside CI the step is skipped, not failed:\n{}", text(&local));
    assert!(text(&local).contains("WARNING: SKIPPED the advisory check"), "the skip is loud:\n{}", text(&local));
    let ci = run(Some("true"));
    assert_eq!(ci.status.code(), Some(1), "CI=true makes the check mandatory:\n{}", text(&ci));
    assert!(text(&ci).contains("CI=true makes this check mandatory"), "{}", text(&ci));
    assert!(!dir.path().join("db").exists(), "no half-fetched database is left behind");
}
