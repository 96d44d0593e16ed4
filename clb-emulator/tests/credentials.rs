//! Keyless credentials (issue 26): STS `AssumeRoleWithWebIdentity` with real projected tokens of the
//! test kube-apiserver (`CLBSYNC_TEST_KUBECONFIG`), expiry of temporary credentials, the CVM
//! metadata endpoint, and their faults.

mod common;

use clb_emulator::{
    Config, CredentialFault, CredentialFaultKind, Emulator, ErrorFault, Faults, MetadataConfig, OidcProvider, OidcRole,
    StsConfig,
};
use common::kube::{Kube, unique};
use common::{Client, assume_role, client_from_sts, idp, start_with};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const PROVIDER: &str = "tke-oidc-emulator";
const AUDIENCE: &str = "sts.cloud.tencent.com";
const ROLE: &str = "qcs::cam::uin/100000000001:roleName/clbsync";

fn role(subjects: Vec<String>) -> OidcRole {
    OidcRole { arn: ROLE.into(), provider_id: PROVIDER.into(), subjects }
}

/// STS trusting the test API server (its issuer and JWKS, fetched through issuer discovery).
async fn kube_sts(kube: &Kube, subjects: Vec<String>) -> StsConfig {
    let provider = OidcProvider {
        id: PROVIDER.into(),
        issuer: kube.issuer().await,
        audiences: vec![AUDIENCE.into()],
        jwks: kube.jwks().await,
    };
    StsConfig { providers: vec![provider], roles: vec![role(subjects)], lifetime_ms: None }
}

/// STS trusting the test identity provider of `common::idp`.
fn idp_sts(lifetime_ms: Option<u64>) -> StsConfig {
    let provider = OidcProvider {
        id: PROVIDER.into(),
        issuer: idp::ISSUER.into(),
        audiences: vec![AUDIENCE.into()],
        jwks: idp::jwks(),
    };
    StsConfig { providers: vec![provider], roles: vec![role(vec![])], lifetime_ms }
}

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

fn request(token: &str) -> Value {
    json!({"ProviderId": PROVIDER, "WebIdentityToken": token, "RoleArn": ROLE, "RoleSessionName": "clbsync-test"})
}

async fn start(sts: StsConfig) -> Emulator {
    start_with(Config { state: common::example_state(), rate_limit_per_action: 0, sts, ..Config::default() }).await
}

fn code(r: &Value) -> &str {
    r["Error"]["Code"].as_str().unwrap_or("")
}

/// A token of `idp` for the default subject, valid for ten minutes.
fn idp_token() -> String {
    idp::token("system:serviceaccount:ns:clbsync", AUDIENCE, now() - 5, now() + 600)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projected_token_of_the_test_api_server_buys_credentials_that_sign_clb_calls() {
    let kube = Kube::connect();
    let ns = unique("emucreds-ok");
    let token = kube.service_account_token(&ns, "clbsync", AUDIENCE).await;
    let subject = format!("system:serviceaccount:{ns}:clbsync");
    let emu = start(kube_sts(&kube, vec![subject.clone()]).await).await;

    let mut req = request(&token);
    req["DurationSeconds"] = json!(3600);
    let r = assume_role(&emu, req).await;
    assert_eq!(code(&r), "", "{r}");
    let expired_time = r["ExpiredTime"].as_i64().expect("ExpiredTime");
    assert!((expired_time - now() - 3600).abs() <= 2, "ExpiredTime {expired_time} is one hour away");
    assert_eq!(r["Expiration"], clb_emulator::time::utc_rfc3339(expired_time));
    assert!(r["Credentials"]["TmpSecretId"].as_str().expect("id").starts_with("AKID"));

    let client = client_from_sts(&emu, &r);
    client.ok("DescribeLoadBalancers", json!({})).await;

    let calls = emu.calls();
    let sts = calls.of_service("sts");
    assert_eq!(sts.len(), 1);
    assert_eq!((sts[0].code.as_str(), sts[0].secret_id.as_deref()), ("Success", None));
    assert_eq!(sts[0].params["WebIdentityToken"], clb_emulator::sts::token_fingerprint(&token), "no token in the log");
    let clb = calls.of("DescribeLoadBalancers");
    assert_eq!(clb[0].secret_id.as_deref(), Some(client.secret_id.as_str()));
    assert!(clb[0].temporary);
    let issued = emu.issued_credentials();
    assert_eq!(issued.len(), 1);
    assert!(
        matches!(&issued[0].via, clb_emulator::IssuedVia::Sts { subject: s, role_arn, .. } if *s == subject && role_arn == ROLE)
    );
}

fn with(mut req: Value, key: &str, value: &str) -> Value {
    req[key] = json!(value);
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_sts_must_refuse_get_its_codes() {
    let kube = Kube::connect();
    let ns = unique("emucreds-bad");
    let good = kube.service_account_token(&ns, "clbsync", AUDIENCE).await;
    let other_audience =
        kube.service_account_token(&ns, "clbsync", "https://kubernetes.default.svc.cluster.local").await;
    let other_subject = kube.service_account_token(&ns, "intruder", AUDIENCE).await;
    let emu = start(kube_sts(&kube, vec![format!("system:serviceaccount:{ns}:clbsync")]).await).await;
    let unknown_kid = idp::sign(&json!({"alg": "RS256", "kid": "not-a-key-of-the-server"}), &idp::claims(&good));
    let token_error = "InvalidParameter.WebIdentityTokenError";
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        ("wrong audience", request(&other_audience), token_error, "audience"),
        ("signed by another key", request(&idp::resign(&good)), token_error, "signature"),
        ("unknown key id", request(&unknown_kid), token_error, "key id"),
        ("not a JWT", request("not-a-jwt"), token_error, "not a JWT"),
        ("a trailing newline", request(&format!("{good}\n")), token_error, "not a JWT"),
        ("untrusted subject", request(&other_subject), "UnauthorizedOperation", "intruder"),
        (
            "unknown role",
            with(request(&good), "RoleArn", "qcs::cam::uin/1:roleName/nope"),
            "ResourceNotFound.RoleNotFound",
            "nope",
        ),
        ("unknown provider", with(request(&good), "ProviderId", "nope"), "InvalidParameter.ParamError", "nope"),
    ];
    for (what, req, want, says) in cases {
        let r = assume_role(&emu, req).await;
        assert_eq!(code(&r), want, "{what}: {r}");
        let message = r["Error"]["Message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{what}: {message:?} does not say {says:?}");
        assert!(r["RequestId"].is_string(), "{what}: {r}");
    }
    assert_eq!(code(&assume_role(&emu, request(&good)).await), "", "the good token itself is accepted");

    // The token lives 10 minutes: 11 minutes on, STS sees it expired; 2 minutes back, not yet valid.
    emu.set_clock_offset(660);
    let r = assume_role(&emu, request(&good)).await;
    assert_eq!(code(&r), token_error, "{r}");
    assert!(r["Error"]["Message"].as_str().unwrap_or_default().contains("expired"), "{r}");
    emu.set_clock_offset(-120);
    let r = assume_role(&emu, request(&good)).await;
    assert_eq!(code(&r), token_error, "{r}");
    assert!(r["Error"]["Message"].as_str().unwrap_or_default().contains("not valid before"), "{r}");
    emu.set_clock_offset(0);

    let mut wrong_issuer = kube_sts(&kube, vec![]).await;
    wrong_issuer.providers[0].issuer = "https://another-cluster.example".into();
    emu.set_sts(wrong_issuer);
    let r = assume_role(&emu, request(&good)).await;
    assert_eq!(code(&r), token_error, "{r}");
    assert!(r["Error"]["Message"].as_str().unwrap_or_default().contains("issuer"), "{r}");

    let calls = emu.calls();
    assert_eq!(emu.issued_credentials().len(), 1, "only the good token was given credentials");
    assert_eq!(calls.errors(token_error), 8);
    assert!(calls.of_service("sts").iter().all(|c| !c.params.to_string().contains(&good)), "no token in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_checks_its_protocol_and_parameters() {
    let emu = start(idp_sts(None)).await;
    let v = |r: common::Raw| serde_json::from_slice::<Value>(&r.body).expect("json")["Response"].clone();
    let send = |action: &'static str, version: &'static str| {
        let emu = &emu;
        async move { v(common::sts_send(&emu.endpoint(), action, version, &request(&idp_token())).await.expect("http")) }
    };
    assert_eq!(code(&send("AssumeRoleWithWebIdentity", "2018-03-17").await), "NoSuchVersion");
    assert_eq!(code(&send("AssumeRole", "2018-08-13").await), "InvalidAction");
    assert_eq!(code(&send("AssumeRoleWithWebIdentity", "2018-08-13").await), "");
    for (what, req, want) in [
        (
            "missing token",
            json!({"ProviderId": PROVIDER, "RoleArn": ROLE, "RoleSessionName": "s1"}),
            "MissingParameter",
        ),
        ("extra parameter", with(request(&idp_token()), "Policy", "{}"), "UnknownParameter"),
        (
            "duration too long",
            json!({"DurationSeconds": 43_201, "ProviderId": PROVIDER, "WebIdentityToken": idp_token(), "RoleArn": ROLE, "RoleSessionName": "s1"}),
            "InvalidParameter.ParamError",
        ),
        (
            "bad session name",
            with(request(&idp_token()), "RoleSessionName", "has space"),
            "InvalidParameter.ParamError",
        ),
    ] {
        assert_eq!(code(&assume_role(&emu, req).await), want, "{what}");
    }
    let r = assume_role(&emu, json!({"DurationSeconds": "900", "ProviderId": PROVIDER, "WebIdentityToken": idp_token(), "RoleArn": ROLE, "RoleSessionName": "s1"})).await;
    assert!((r["ExpiredTime"].as_i64().expect("ok") - now() - 900).abs() <= 2, "DurationSeconds as a string: {r}");
    // The documented limit is 20 per second, per action like CLB's.
    emu.set_faults(Faults { rate_limit_per_action: Some(2), ..Faults::default() });
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(code(&assume_role(&emu, request(&idp_token())).await).to_string());
    }
    assert_eq!(codes, ["", "", "RequestLimitExceeded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_credentials_expire_into_token_failure() {
    let emu = start(idp_sts(Some(1500))).await;
    let r = assume_role(&emu, request(&idp_token())).await;
    let expires_ms = emu.issued_credentials()[0].expires_at_ms;
    assert!(r["ExpiredTime"].as_i64().expect("ExpiredTime") * 1000 <= expires_ms, "ExpiredTime is never late");
    let client = client_from_sts(&emu, &r);
    client.ok("DescribeLoadBalancers", json!({})).await;
    let no_token = Client { token: None, ..client_from_sts(&emu, &r) };
    assert_eq!(no_token.code("DescribeLoadBalancers", json!({})).await, "AuthFailure.TokenFailure");
    let wrong_token = Client { token: Some("another".into()), ..client_from_sts(&emu, &r) };
    assert_eq!(wrong_token.code("DescribeLoadBalancers", json!({})).await, "AuthFailure.TokenFailure");
    let wrong_key = Client { secret_key: "wrong".into(), ..client_from_sts(&emu, &r) };
    assert_eq!(wrong_key.code("DescribeLoadBalancers", json!({})).await, "AuthFailure.SignatureFailure");

    let wait =
        u64::try_from(expires_ms - clb_emulator::time::unix_secs(std::time::SystemTime::now()) * 1000).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(wait + 1100)).await;
    let after = client.call("DescribeLoadBalancers", json!({})).await;
    assert_eq!(code(&after), "AuthFailure.TokenFailure", "{after}");
    assert!(after["Error"]["Message"].as_str().unwrap_or_default().contains("expired"), "{after}");

    let fresh = client_from_sts(&emu, &assume_role(&emu, request(&idp_token())).await);
    assert_ne!(fresh.secret_id, client.secret_id, "every STS call issues a new credential");
    fresh.ok("DescribeLoadBalancers", json!({})).await;
    emu.expire_issued_credentials();
    assert_eq!(fresh.code("DescribeLoadBalancers", json!({})).await, "AuthFailure.TokenFailure", "expired on demand");

    let calls = emu.calls();
    let failed: Vec<_> = calls.records.iter().filter(|c| c.code == "AuthFailure.TokenFailure").collect();
    assert_eq!(failed.len(), 4);
    assert!(failed.iter().all(|c| c.temporary && c.service == "clb"));
    assert_eq!(calls.of_service("sts").len(), 2);
    // The configured (long-lived) key is untouched by any of this.
    Client::new(&emu).ok("DescribeLoadBalancers", json!({})).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sts_faults_fire_and_leave_clb_alone() {
    let emu = start(idp_sts(None)).await;
    let fault = |kind, delay_ms, status| Faults {
        sts: Some(CredentialFault { rate: 1.0, max: Some(1), kind, delay_ms, status }),
        // A CLB fault on every action: STS is not one of them.
        errors: Some(ErrorFault {
            rate: 1.0,
            max: None,
            actions: vec![],
            kind: clb_emulator::ErrorKind::InternalError,
        }),
        ..Faults::default()
    };
    emu.set_faults(fault(CredentialFaultKind::Error, None, None));
    assert_eq!(code(&assume_role(&emu, request(&idp_token())).await), "InternalError.SystemError");
    assert_eq!(code(&assume_role(&emu, request(&idp_token())).await), "", "max 1; the CLB fault does not apply");
    assert_eq!(Client::new(&emu).code("DescribeLoadBalancers", json!({})).await, "InternalError");

    emu.set_faults(fault(CredentialFaultKind::RequestLimitExceeded, None, None));
    assert_eq!(code(&assume_role(&emu, request(&idp_token())).await), "RequestLimitExceeded");

    emu.set_faults(fault(CredentialFaultKind::HttpError, None, Some(503)));
    let raw = common::sts_send(&emu.endpoint(), "AssumeRoleWithWebIdentity", "2018-08-13", &request(&idp_token()))
        .await
        .expect("http");
    assert_eq!((raw.status, raw.content_type.as_str()), (503, "text/html"));

    emu.set_faults(fault(CredentialFaultKind::Slow, Some(400), None));
    let t = Instant::now();
    assert_eq!(code(&assume_role(&emu, request(&idp_token())).await), "");
    assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());

    emu.set_faults(fault(CredentialFaultKind::Hang, None, None));
    let t = Instant::now();
    let hung = tokio::time::timeout(
        Duration::from_millis(500),
        common::sts_send(&emu.endpoint(), "AssumeRoleWithWebIdentity", "2018-08-13", &request(&idp_token())),
    )
    .await;
    assert!(hung.is_err(), "no answer: {hung:?}");
    assert!(t.elapsed() < Duration::from_secs(2));
    let codes: Vec<String> = emu.calls().of_service("sts").iter().map(|c| c.code.clone()).collect();
    assert_eq!(codes, ["InternalError.SystemError", "Success", "RequestLimitExceeded", "HTTP503", "Success", "Hang"]);
    assert_eq!(emu.issued_credentials().len(), 2, "no credentials for a faulted call");
    let t = Instant::now();
    emu.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(2), "a hung connection does not hold up the shutdown");
}

async fn get(url: &str, timeout: Duration) -> Result<(u16, String), reqwest::Error> {
    let resp = common::http_client_with_timeout(timeout).get(url).send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.text().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_endpoint_serves_the_instance_role_and_rotating_credentials() {
    let emu = start(StsConfig::default()).await;
    let base = format!("{}cam/security-credentials/", emu.metadata_url());
    let t = Duration::from_secs(5);
    assert_eq!(get(&base, t).await.expect("http").0, 404, "no role bound");
    emu.set_metadata(MetadataConfig { role: Some("clbsync-node".into()), lifetime_ms: 4000 });
    assert_eq!(get(&base, t).await.expect("http"), (200, "clbsync-node".to_string()));
    assert_eq!(get(&format!("{base}other-role"), t).await.expect("http").0, 404);
    let (status, body) = get(&format!("{base}clbsync-node"), t).await.expect("http");
    assert_eq!(status, 200);
    let first: Value = serde_json::from_str(&body).expect("JSON credentials");
    let mut fields: Vec<&str> = first.as_object().expect("object").keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(fields, ["Code", "Expiration", "ExpiredTime", "TmpSecretId", "TmpSecretKey", "Token"]);
    assert_eq!(first["Code"], "Success");
    assert_eq!(first["Expiration"], clb_emulator::time::utc_rfc3339(first["ExpiredTime"].as_i64().expect("int")));

    let client = Client {
        secret_id: first["TmpSecretId"].as_str().expect("id").into(),
        secret_key: first["TmpSecretKey"].as_str().expect("key").into(),
        token: Some(first["Token"].as_str().expect("token").into()),
        ..Client::new(&emu)
    };
    client.ok("DescribeLoadBalancers", json!({})).await;
    let again: Value =
        serde_json::from_str(&get(&format!("{base}clbsync-node"), t).await.expect("http").1).expect("json");
    assert_eq!(again["TmpSecretId"], first["TmpSecretId"], "the same credential within the first half of its life");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let rotated: Value =
        serde_json::from_str(&get(&format!("{base}clbsync-node"), t).await.expect("http").1).expect("json");
    assert_ne!(rotated["TmpSecretId"], first["TmpSecretId"], "a new credential after half its life");
    client.ok("DescribeLoadBalancers", json!({})).await;
    emu.expire_issued_credentials();
    assert_eq!(client.code("DescribeLoadBalancers", json!({})).await, "AuthFailure.TokenFailure");

    let calls = emu.calls();
    let metadata = calls.of_service("metadata");
    let codes: Vec<&str> = metadata.iter().map(|c| c.code.as_str()).collect();
    assert_eq!(codes, ["NotFound", "Success", "NotFound", "Success", "Success", "Success"]);
    assert_eq!(metadata[3].secret_id, first["TmpSecretId"].as_str().map(str::to_string));
    let posted = common::http_client().post(&base).send().await.expect("http");
    assert_eq!(posted.status().as_u16(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_failing_metadata_service_is_bounded_by_the_client() {
    let emu = start(StsConfig::default()).await;
    emu.set_metadata(MetadataConfig { role: Some("r".into()), ..MetadataConfig::default() });
    let url = format!("{}cam/security-credentials/r", emu.metadata_url());
    let fault = |kind, status| Faults {
        metadata: Some(CredentialFault { rate: 1.0, max: None, kind, delay_ms: None, status }),
        ..Faults::default()
    };
    emu.set_faults(fault(CredentialFaultKind::Hang, None));
    let t = Instant::now();
    let e = get(&url, Duration::from_millis(300)).await.expect_err("a hang is a timeout");
    assert!(e.is_timeout(), "{e}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    emu.set_faults(fault(CredentialFaultKind::Error, None));
    let (status, body) = get(&url, Duration::from_secs(5)).await.expect("http");
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json")["Code"], "InternalError");
    emu.set_faults(fault(CredentialFaultKind::HttpError, Some(500)));
    assert_eq!(get(&url, Duration::from_secs(5)).await.expect("http").0, 500);
    let codes: Vec<String> = emu.calls().of_service("metadata").iter().map(|c| c.code.clone()).collect();
    assert_eq!(codes, ["Hang", "InternalError", "HTTP500"]);
    assert!(emu.issued_credentials().is_empty(), "a faulted answer hands out nothing");
    let t = Instant::now();
    emu.shutdown().await;
    assert!(t.elapsed() < Duration::from_secs(2), "the hung connection ends with the emulator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_configures_sts_and_metadata_and_lists_issued_credentials() {
    let emu = start(StsConfig::default()).await;
    let admin = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = common::http_client().request(method, format!("{}/_emulator/{path}", emu.endpoint()));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        async move {
            let resp = req.send().await.expect("http");
            (resp.status().as_u16(), serde_json::from_slice::<Value>(&resp.bytes().await.expect("body")).expect("json"))
        }
    };
    assert_eq!(code(&assume_role(&emu, request(&idp_token())).await), "InvalidParameter.ParamError", "trusts nobody");
    let (status, _) =
        admin(reqwest::Method::PUT, "sts", Some(serde_json::to_value(idp_sts(Some(60_000))).expect("json"))).await;
    assert_eq!(status, 200);
    assert_eq!(emu.sts(), idp_sts(Some(60_000)));
    assert_eq!(admin(reqwest::Method::GET, "sts", None).await.1, serde_json::to_value(idp_sts(Some(60_000))).unwrap());
    let bad = admin(
        reqwest::Method::PUT,
        "sts",
        Some(json!({"providers": [{"id": "p", "issuer": "i", "audiences": [], "jwks": {"keys": []}}]})),
    )
    .await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    assert!(bad.1["error"].as_str().unwrap_or_default().contains("no RSA signing key"), "{}", bad.1);
    assert_eq!(admin(reqwest::Method::PUT, "metadata", Some(json!({"role": "r", "lifetime_ms": 1000}))).await.0, 200);
    assert_eq!(emu.metadata(), MetadataConfig { role: Some("r".into()), lifetime_ms: 1000 });

    let r = assume_role(&emu, request(&idp_token())).await;
    let (_, list) = admin(reqwest::Method::GET, "credentials", None).await;
    assert_eq!(list[0]["secret_id"], r["Credentials"]["TmpSecretId"]);
    assert_eq!((list[0]["via"].as_str(), list[0]["expired"].as_bool()), (Some("sts"), Some(false)));
    assert_eq!(admin(reqwest::Method::POST, "credentials/expire", Some(json!({}))).await.0, 200);
    assert_eq!(admin(reqwest::Method::GET, "credentials", None).await.1[0]["expired"], true);
    assert_eq!(client_from_sts(&emu, &r).code("DescribeLoadBalancers", json!({})).await, "AuthFailure.TokenFailure");
}
