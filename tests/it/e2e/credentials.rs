//! Keyless credentials end to end (issue 26): the real binary signs with credentials from files (rotated mid-run),
//! from STS for a real projected token of the test API server, and from the CVM metadata role, all served and
//! checked by the emulator; temporary credentials are refreshed before they expire; a failing STS skips the rules,
//! naming it, and removes nothing.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clb_emulator::state::Credential;
use clb_emulator::{
    CredentialFault, CredentialFaultKind, Faults, Jwks, MetadataConfig, OidcProvider, OidcRole, StsConfig,
};

use super::watch::{REACT, Watcher, eventually, free_port, has, lacks};
use super::{Run, Slot, Spec, World, eni, p, run};
use crate::support::kube::{admin_client, oidc_discovery, projected_token};

/// The audience TKE's CAM OIDC provider expects (its default client ID) and deploy/components/tke-oidc projects.
pub const AUDIENCE: &str = "sts.cloud.tencent.com";
pub const PROVIDER: &str = "tke-oidc-e2e";
pub const ROLE: &str = "qcs::cam::uin/100000000001:roleName/clbsync-e2e";

/// Pods behind every slot, and a stale target that a run with credentials would remove.
pub fn spec() -> Spec {
    Spec::default()
        .pods([p("api", "10.1.0.1"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Api, [eni("10.99.0.1", 8080, 10)])
}

/// The world's STS trusts the test API server (its issuer and JWKS) for ServiceAccount `<ns>/clbsync`; the token
/// file holds a projected token of that account for [`AUDIENCE`].
pub async fn trust_the_test_api_server(world: &World, lifetime_ms: Option<u64>) -> tempfile::NamedTempFile {
    let admin = admin_client().await;
    let (issuer, jwks) = oidc_discovery(&admin).await;
    let provider = OidcProvider {
        id: PROVIDER.into(),
        issuer,
        audiences: vec![AUDIENCE.into()],
        jwks: Jwks::from_json(&jwks).expect("the API server's JWKS"),
    };
    let subject = format!("system:serviceaccount:{}:clbsync", world.ns.name);
    let role = OidcRole { arn: ROLE.into(), provider_id: PROVIDER.into(), subjects: vec![subject] };
    world.emu.set_sts(StsConfig { providers: vec![provider], roles: vec![role], lifetime_ms });
    let token = projected_token(&admin, &world.ns.name, "clbsync", AUDIENCE).await;
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), token).expect("write the token");
    file
}

/// The four variables TKE's pod-identity webhook (or deploy/components/tke-oidc) sets.
pub fn tke_env(token_file: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("TKE_REGION", "ap-guangzhou".into()),
        ("TKE_PROVIDER_ID", PROVIDER.into()),
        ("TKE_WEB_IDENTITY_TOKEN_FILE", token_file.display().to_string()),
        ("TKE_ROLE_ARN", ROLE.into()),
    ]
}

/// `clbsync <args>` against the world with only `env` as credentials (the emulator's key pair removed).
pub fn keyless<K: AsRef<OsStr>, V: AsRef<OsStr>>(world: &World, args: &[&str], env: &[(K, V)]) -> assert_cmd::Command {
    let mut cmd = world.process(args);
    cmd.env_remove("TENCENTCLOUD_SECRET_ID").env_remove("TENCENTCLOUD_SECRET_KEY");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(Duration::from_secs(90));
    cmd
}

/// The CLB calls of the emulator's log since record `from`.
fn clb_calls_since(world: &World, from: usize) -> Vec<clb_emulator::CallRecord> {
    world.emu.calls().records.into_iter().skip(from).filter(|c| c.service == "clb").collect()
}

/// Every CLB call was signed by `secret_id`, as a temporary credential, and none was refused.
#[track_caller]
fn all_signed_by(world: &World, secret_ids: &[String], run: &Run) {
    let calls = clb_calls_since(world, 0);
    assert!(!calls.is_empty(), "{}", run.all());
    for c in &calls {
        let id = c.secret_id.clone().unwrap_or_default();
        assert!(secret_ids.contains(&id) && c.temporary, "{} signed by {id:?}\n{}", c.action, run.all());
        assert!(!c.code.starts_with("AuthFailure"), "{} refused: {}\n{}", c.action, c.code, run.all());
    }
}

#[tokio::test]
async fn tke_oidc_with_a_projected_token_of_the_test_api_server_reconciles_with_temporary_credentials() {
    let world = World::new("coidc", spec()).await;
    let token = trust_the_test_api_server(&world, None).await;
    let before = world.emu.state();
    let mut args = vec!["reconcile", "--sts-endpoint"];
    let endpoint = world.emu.endpoint();
    args.push(&endpoint);
    let run = run(keyless(&world, &args, &tke_env(token.path()))).await;
    run.assert_code(0);
    world.assert_converged(&before, &run);
    assert!(run.stderr.contains(&format!("INFO Tencent Cloud credentials: TKE OIDC role {ROLE}")), "{}", run.all());

    let calls = world.emu.calls();
    let sts = calls.of_service("sts");
    assert_eq!(sts.len(), 1, "one STS call for the whole run: {:?}", calls.errors_by_code);
    assert_eq!(sts[0].code, "Success");
    let sent = std::fs::read_to_string(token.path()).unwrap();
    assert_eq!(sts[0].params["WebIdentityToken"], clb_emulator::sts::token_fingerprint(&sent));
    assert_eq!(sts[0].params["DurationSeconds"], 7200);
    assert!(sts[0].params["RoleSessionName"].as_str().unwrap().starts_with("clbsync-"), "{}", sts[0].params);
    let issued: Vec<String> = world.emu.issued_credentials().into_iter().map(|c| c.secret_id).collect();
    assert_eq!(issued.len(), 1);
    all_signed_by(&world, &issued, &run);
}

#[tokio::test]
async fn short_lived_credentials_are_refreshed_before_they_expire_with_one_sts_call_per_refresh() {
    let world = World::new("cexpiry", spec()).await;
    let lifetime = Duration::from_secs(3);
    let token = trust_the_test_api_server(&world, Some(lifetime.as_millis() as u64)).await;
    let endpoint = world.emu.endpoint();
    let extra = ["--credentials", "tke-oidc", "--sts-endpoint", &endpoint, "--resync-interval", "300ms"];
    let env = tke_env(token.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let w = Watcher::start_with(&world, &extra, &world.kubeconfig, &env);
    eventually(REACT, "the first sync", &w, || lacks(&world.targets(Slot::Api), "10.99.0.1")).await;
    // Four lifetimes of passes every 300 ms; halfway, STS fails twice while the credentials are still valid.
    let started = Instant::now();
    tokio::time::sleep(lifetime * 2).await;
    let fault =
        CredentialFault { rate: 1.0, max: Some(2), kind: CredentialFaultKind::Error, delay_ms: None, status: None };
    world.emu.set_faults(Faults { sts: Some(fault), ..Faults::default() });
    tokio::time::sleep(lifetime * 2).await;
    let ran = started.elapsed();
    let metrics = w.get("/metrics").map(|(_, m)| m).unwrap_or_default();
    drop(w);

    let calls = world.emu.calls();
    let refused: Vec<_> = calls.errors_by_code.keys().filter(|c| c.starts_with("AuthFailure")).collect();
    assert!(refused.is_empty(), "every call had valid credentials: {:?}", calls.errors_by_code);
    let clb = calls.of_service("clb").len();
    assert!(clb > 40, "passes kept calling CLB throughout ({clb} calls in {ran:?})");
    let sts = calls.of_service("sts");
    let failed = sts.iter().filter(|c| c.code == "InternalError.SystemError").count();
    assert_eq!(failed, 2, "the fault fired: {:?}", sts.iter().map(|c| &c.code).collect::<Vec<_>>());
    // The emulator's ExpiredTime is rounded down: a credential is known to live 2 to 3 s, refreshed at 80 %.
    let ok: Vec<u64> = sts.iter().filter(|c| c.code == "Success").map(|c| c.at_us).collect();
    // Between two successful calls in a row (the retries after a failure come sooner).
    let gaps: Vec<u64> = sts
        .windows(2)
        .filter(|w| w.iter().all(|c| c.code == "Success"))
        .map(|w| (w[1].at_us - w[0].at_us) / 1000)
        .collect();
    assert!(gaps.len() >= 3, "{gaps:?}");
    assert!(
        gaps.iter().all(|&ms| (1500..2950).contains(&ms)),
        "one STS call per refresh, none in between: {gaps:?} ms"
    );
    assert!(ok.len() as u128 >= ran.as_millis() / 3000, "{} refreshes in {ran:?}", ok.len());
    let counted = format!("clbsync_credentials_refresh_total{{source=\"tke-oidc\",result=\"ok\"}} {}", ok.len());
    let within_one = |n: usize| metrics.contains(&format!("result=\"ok\"}} {n}"));
    assert!(metrics.contains(&counted) || within_one(ok.len() - 1), "{counted} in\n{metrics}");
    assert!(metrics.contains("clbsync_credentials_expiry_timestamp_seconds 17"), "{metrics}");
}

#[tokio::test]
async fn credentials_clb_refuses_as_expired_are_fetched_again_and_the_read_sent_once_more() {
    let world = World::new("crefused", spec()).await;
    let token = trust_the_test_api_server(&world, None).await;
    let endpoint = world.emu.endpoint();
    let extra = ["--credentials", "tke-oidc", "--sts-endpoint", &endpoint];
    let env = tke_env(token.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut world = world;
    let w = Watcher::start_with(&world, &extra, &world.kubeconfig, &env);
    eventually(REACT, "the first sync", &w, || lacks(&world.targets(Slot::Api), "10.99.0.1")).await;
    // CLB refuses the credentials long before clbsync would refresh them (their two hours).
    world.emu.expire_issued_credentials();
    world.add_pod(p("api", "10.1.0.2")).await;
    eventually(REACT, "the new pod registered", &w, || has(&world.targets(Slot::Api), "10.1.0.2", 10)).await;
    let calls = world.emu.calls();
    assert_eq!(calls.of_service("sts").len(), 2, "one fetch after the refusal: {:?}", calls.errors_by_code);
    assert_eq!(
        calls.errors("AuthFailure.TokenFailure"),
        1,
        "one read refused, then sent again: {:?}",
        calls.errors_by_code
    );
    let logs = w.logs();
    let planned: Vec<&str> = logs.lines().filter(|l| l.contains(" planned ")).collect();
    assert!(planned.iter().all(|l| l.contains("skipped=0")), "no pass skipped a rule: {planned:#?}");
}

/// A Secret volume as the kubelet writes it: the files are symlinks through `..data`, which an update swaps in
/// one rename to a new directory.
struct SecretVolume {
    dir: tempfile::TempDir,
    version: u32,
}

impl SecretVolume {
    fn new(id: &str, key: &str) -> SecretVolume {
        let mut v = SecretVolume { dir: tempfile::tempdir().expect("temp dir"), version: 0 };
        v.update(id, key);
        for name in ["secret-id", "secret-key"] {
            std::os::unix::fs::symlink(format!("..data/{name}"), v.dir.path().join(name)).expect("symlink");
        }
        v
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn update(&mut self, id: &str, key: &str) {
        self.version += 1;
        let data = format!("..{}", self.version);
        let dir = self.dir.path().join(&data);
        std::fs::create_dir(&dir).expect("create the version directory");
        std::fs::write(dir.join("secret-id"), id).expect("write");
        std::fs::write(dir.join("secret-key"), key).expect("write");
        let tmp: PathBuf = self.dir.path().join("..data_tmp");
        std::os::unix::fs::symlink(&data, &tmp).expect("symlink");
        std::fs::rename(&tmp, self.dir.path().join("..data")).expect("swap ..data");
    }
}

const ROTATED_ID: &str = "AKIDclbsyncROTATED0000000000000000";
const ROTATED_KEY: &str = "clbsyncRotatedSecretKey00000000000";

#[tokio::test]
async fn credential_files_rotated_mid_run_are_used_without_a_restart_and_the_old_key_is_refused() {
    let mut world = World::new("cfiles", spec()).await;
    let mut secret = SecretVolume::new(clb_emulator::DEFAULT_SECRET_ID, clb_emulator::DEFAULT_SECRET_KEY);
    let (id_file, key_file) = (secret.path("secret-id"), secret.path("secret-key"));
    let env =
        [("CLOUD_TENCENT_SECRET_ID_FILE", id_file.as_str()), ("CLOUD_TENCENT_SECRET_KEY_FILE", key_file.as_str())];
    let w = Watcher::start_with(&world, &["--credentials", "file"], &world.kubeconfig, &env);
    eventually(REACT, "the first sync", &w, || lacks(&world.targets(Slot::Api), "10.99.0.1")).await;
    assert!(w.logs().contains(&format!("Tencent Cloud credentials: files {id_file}, {key_file}")), "{}", w.logs());

    // The rotation: a new key is created, the Secret updated, the old key deleted.
    let mut state = world.emu.state();
    state.credentials.push(Credential { secret_id: ROTATED_ID.into(), secret_key: ROTATED_KEY.into(), token: None });
    world.emu.set_state(state.clone());
    secret.update(ROTATED_ID, ROTATED_KEY);
    state.credentials.retain(|c| c.secret_id != clb_emulator::DEFAULT_SECRET_ID);
    world.emu.set_state(state);
    let mark = world.emu.calls().records.len();
    world.add_pod(p("api", "10.1.0.2")).await;
    eventually(REACT, "the new pod registered", &w, || has(&world.targets(Slot::Api), "10.1.0.2", 10)).await;
    let after = clb_calls_since(&world, mark);
    assert!(after.iter().any(|c| c.mutating && c.code == "Success" && c.secret_id.as_deref() == Some(ROTATED_ID)));
    let old_ok =
        after.iter().filter(|c| c.secret_id.as_deref() == Some(clb_emulator::DEFAULT_SECRET_ID) && c.code == "Success");
    assert_eq!(old_ok.count(), 0, "the old key, deleted, signed nothing that succeeded");
    assert!(w.logs().contains("the credential files changed: using the new key"), "{}", w.logs());

    // A half-written update (an empty key) keeps the rotated pair, logged once. (The files are looked at once a
    // second at most.)
    secret.update(ROTATED_ID, "");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mark = world.emu.calls().records.len();
    world.add_pod(p("api", "10.1.0.3")).await;
    eventually(REACT, "the next pod registered", &w, || has(&world.targets(Slot::Api), "10.1.0.3", 10)).await;
    assert!(
        clb_calls_since(&world, mark).iter().all(|c| c.code == "Success"),
        "{:?}",
        world.emu.calls().errors_by_code
    );
    assert_eq!(w.logs().matches("the credential files changed but cannot be used").count(), 1, "{}", w.logs());
    assert!(w.logs().contains("secret-key: is empty"), "{}", w.logs());
}

#[tokio::test]
async fn the_cvm_role_signs_when_chosen_and_auto_never_asks_the_metadata_service() {
    let world = World::new("ccvm", spec()).await;
    world.emu.set_metadata(MetadataConfig { role: Some("clbsync-node".into()), lifetime_ms: 7_200_000 });
    let nothing = run(keyless::<&str, &str>(&world, &["diff"], &[])).await;
    nothing.assert_code(1);
    assert!(
        nothing.stderr.contains("no Tencent Cloud credentials") && nothing.stderr.contains("cvm-role"),
        "{}",
        nothing.all()
    );
    assert_eq!(world.emu.calls().total(), 0, "auto asked nothing: {:?}", world.emu.calls().by_action);

    let before = world.emu.state();
    let url = world.emu.metadata_url();
    let run = run(keyless::<&str, &str>(
        &world,
        &["reconcile", "--credentials", "cvm-role", "--metadata-endpoint", &url],
        &[],
    ))
    .await;
    run.assert_code(0);
    world.assert_converged(&before, &run);
    assert!(run.stderr.contains(&format!("Tencent Cloud credentials: CVM instance role (metadata service {url})")));
    let metadata = world.emu.calls().of_service("metadata").len();
    assert_eq!(metadata, 2, "the role's name, then its credentials");
    let issued: Vec<String> = world.emu.issued_credentials().into_iter().map(|c| c.secret_id).collect();
    all_signed_by(&world, &issued, &run);
}

#[tokio::test]
async fn when_sts_is_down_slow_or_failing_every_rule_is_skipped_naming_sts_and_nothing_is_removed() {
    let world = World::new("cstsdown", spec()).await;
    let token = trust_the_test_api_server(&world, None).await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let fault = |kind, delay_ms, status| Some(CredentialFault { rate: 1.0, max: None, kind, delay_ms, status });
    let cases = [
        ("down", closed.clone(), None, "connection refused"),
        ("slow", world.emu.endpoint(), fault(CredentialFaultKind::Slow, Some(15_000), None), "no answer within 10s"),
        ("error", world.emu.endpoint(), fault(CredentialFaultKind::Error, None, None), "InternalError.SystemError"),
        (
            "throttled",
            world.emu.endpoint(),
            fault(CredentialFaultKind::RequestLimitExceeded, None, None),
            "RequestLimitExceeded",
        ),
        ("http", world.emu.endpoint(), fault(CredentialFaultKind::HttpError, None, Some(503)), "HTTP 503"),
    ];
    for (name, endpoint, sts_fault, says) in cases {
        world.emu.set_faults(Faults { sts: sts_fault, ..Faults::default() });
        let asked = world.emu.calls().of_service("sts").len();
        let started = Instant::now();
        let out = run(keyless(&world, &["reconcile", "--sts-endpoint", &endpoint], &tke_env(token.path()))).await;
        let took = started.elapsed();
        out.assert_code(1);
        assert!(out.stdout.contains("skipped: 4 rules"), "{name}: {}", out.all());
        assert!(
            out.stdout.contains("STS AssumeRoleWithWebIdentity") && out.stdout.contains(says),
            "{name}: {}",
            out.all()
        );
        assert!(took < Duration::from_secs(20), "{name}: took {took:?}");
        assert_eq!(world.emu.calls().of_service("clb").len(), 0, "{name}: nothing was asked of CLB unsigned");
        assert_eq!(world.emu.state(), world.seeded, "{name}: nothing changed");
        match name {
            "down" => {}
            // The emulator logs the slow call when it answers, after clbsync gave up.
            "slow" => assert!(took >= Duration::from_secs(10), "{name}: gave up after {took:?}"),
            _ => assert_eq!(world.emu.calls().of_service("sts").len(), asked + 1, "{name}: one STS call, faulted"),
        }
    }
}

#[tokio::test]
async fn in_watch_mode_an_sts_outage_skips_the_rules_and_they_converge_when_it_ends() {
    let world = World::new("cstswatch", spec()).await;
    let token = trust_the_test_api_server(&world, None).await;
    let fault = CredentialFault {
        rate: 1.0,
        max: Some(3),
        kind: CredentialFaultKind::HttpError,
        delay_ms: None,
        status: Some(502),
    };
    world.emu.set_faults(Faults { sts: Some(fault), ..Faults::default() });
    let endpoint = world.emu.endpoint();
    let extra = ["--credentials", "tke-oidc", "--sts-endpoint", &endpoint];
    let env = tke_env(token.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let w = Watcher::start_with(&world, &extra, &world.kubeconfig, &env);
    eventually(Duration::from_secs(60), "convergence after the outage", &w, || {
        lacks(&world.targets(Slot::Api), "10.99.0.1") && has(&world.targets(Slot::Api), "10.1.0.1", 10)
    })
    .await;
    let calls = world.emu.calls();
    let sts = calls.of_service("sts");
    assert_eq!(sts.iter().filter(|c| c.code == "HTTP502").count(), 3, "the outage: {:?}", calls.errors_by_code);
    let recovered = sts.iter().find(|c| c.code == "Success").expect("STS answered again").seq;
    let first_write = calls.records.iter().find(|c| c.mutating).expect("the sync wrote").seq;
    assert!(first_write > recovered, "nothing was written before STS answered");
    let reports = w.reports();
    assert!(reports.contains("skipped: 4 rules"), "{reports}");
    assert!(reports.contains("STS AssumeRoleWithWebIdentity") && reports.contains("HTTP 502"), "{reports}");
}

#[tokio::test]
async fn a_bad_token_file_or_a_hanging_metadata_service_is_a_clear_error_within_seconds() {
    let world = World::new("cbadinput", spec()).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo").success());
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    let huge = dir.path().join("huge");
    std::fs::File::create(&huge).and_then(|f| f.set_len(1 << 30)).expect("a sparse 1 GiB file");
    let cases = [
        (dir.path().join("missing"), "does not exist"),
        (empty, "is empty"),
        (huge.clone(), "is 1073741824 bytes, larger than the 64 KiB limit"),
        (fifo, "is a FIFO, not a regular file"),
        (dir.path().to_path_buf(), "is a directory, not a regular file"),
    ];
    for (file, says) in cases {
        let started = Instant::now();
        let out = run(keyless(&world, &["diff"], &tke_env(&file))).await;
        out.assert_code(1);
        let want = format!("error: TKE_WEB_IDENTITY_TOKEN_FILE {}: {says}", file.display());
        assert!(out.stderr.contains(&want), "{want}\n{}", out.all());
        assert!(started.elapsed() < Duration::from_secs(5), "{says}: {:?}", started.elapsed());
    }
    std::fs::remove_file(&huge).expect("delete the 1 GiB file");
    assert_eq!(world.emu.calls().total(), 0, "no network call");

    world.emu.set_metadata(MetadataConfig { role: Some("clbsync-node".into()), lifetime_ms: 7_200_000 });
    let hang = CredentialFault { rate: 1.0, max: None, kind: CredentialFaultKind::Hang, delay_ms: None, status: None };
    world.emu.set_faults(Faults { metadata: Some(hang), ..Faults::default() });
    let closed = format!("http://127.0.0.1:{}/latest/meta-data/", free_port());
    for (url, says) in [(world.emu.metadata_url(), "no answer within 5s"), (closed, "connection refused")] {
        let started = Instant::now();
        let out = run(keyless::<&str, &str>(
            &world,
            &["diff", "--credentials", "cvm-role", "--metadata-endpoint", &url],
            &[],
        ))
        .await;
        out.assert_code(1);
        assert!(
            out.stdout.contains("skipped: 4 rules") && out.stdout.contains("CVM role: the metadata service"),
            "{}",
            out.all()
        );
        assert!(out.stdout.contains(says), "{says}: {}", out.all());
        assert!(started.elapsed() < Duration::from_secs(15), "{says}: {:?}", started.elapsed());
    }
    assert_eq!(world.emu.calls().of_service("clb").len(), 0);
}
