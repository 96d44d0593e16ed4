//! Shared test environment: the real binary with a scrubbed environment, output filters, and the test
//! kube-apiserver ([`kube`]).

pub mod kube;

use std::path::Path;

use assert_cmd::Command;

/// Credential and configuration variables a developer's shell might have set; every test starts without them.
const SCRUBBED: &[&str] = &[
    "CLOUD_TENCENT_SECRET_ID",
    "CLOUD_TENCENT_SECRET_KEY",
    "TENCENTCLOUD_SECRET_ID",
    "TENCENTCLOUD_SECRET_KEY",
    "TENCENTCLOUD_SESSION_TOKEN",
    "TENCENT_REGION",
    "TENCENTCLOUD_REGION",
    "CLBSYNC_RULES",
    "CLBSYNC_ENDPOINT",
    "CLBSYNC_LOG_FORMAT",
    "CLBSYNC_RATE_LIMIT",
    "KUBECONFIG",
    "RUST_LOG",
    "COLUMNS",
    "CLBSYNC_OWNER",
];

/// `clbsync` with a clean environment, run from the repository root.
pub fn clbsync() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clbsync"));
    for var in SCRUBBED {
        cmd.env_remove(var);
    }
    cmd.env("NO_COLOR", "1").current_dir(Path::new(env!("CARGO_MANIFEST_DIR")));
    cmd
}

/// What a user sees: exit code, stdout and stderr together, with log timestamps masked.
pub fn seen(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stderr: Vec<String> = stderr.lines().map(mask_timestamp).collect();
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        output.status.code().map_or("signal".to_string(), |c| c.to_string()),
        String::from_utf8_lossy(&output.stdout),
        stderr.iter().map(|l| format!("{l}\n")).collect::<String>()
    )
}

/// `2024-01-15T10:30:45Z INFO ...` → `[time] INFO ...`.
pub fn mask_timestamp(line: &str) -> String {
    let b = line.as_bytes();
    let looks_like_time = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
        && b[..4].iter().all(u8::is_ascii_digit);
    if looks_like_time { format!("[time]{}", &line[20..]) } else { line.to_string() }
}
