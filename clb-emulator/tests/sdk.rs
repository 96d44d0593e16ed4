//! Conformance against Tencent Cloud's official Python SDK (tests/sdk/conformance.py).
//! Needs the venv created by `testbed/python-sdk.sh`; fails (never skips) without it.

mod common;

use clb_emulator::{Config, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY};
use std::path::PathBuf;
use std::time::Duration;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn venv_python() -> PathBuf {
    let py = repo_root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run testbed/python-sdk.sh (creates the venv with tencentcloud-sdk-python-clb and tccli)",
        py.display()
    );
    py
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_conformance() {
    let python = venv_python();
    let emu = common::start_with(Config {
        state: common::example_state(),
        task_delay: Duration::from_millis(400),
        rate_limit_per_action: 0,
        ..Config::default()
    })
    .await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/conformance.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .args(["--endpoint", &emu.endpoint()])
        .args(["--secret-id", DEFAULT_SECRET_ID, "--secret-key", DEFAULT_SECRET_KEY])
        .args(["--token-secret-id", "AKIDclbsyncTEMPORARY00000000000000"])
        .args(["--token-secret-key", "clbsyncTemporarySecretKey000000000"])
        .args(["--token", "clbsync-session-token"])
        .output()
        .await
        .expect("run conformance.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "conformance.py failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("checks passed"), "{stdout}");
    let calls = emu.calls();
    for a in clb_emulator::schema::ACTIONS {
        assert!(calls.count(a.name) > 0, "conformance.py never called {}", a.name);
    }
    emu.shutdown().await;
}
