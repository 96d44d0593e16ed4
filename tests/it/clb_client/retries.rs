//! Which answers are retried (table-driven over the code lists) and which are not.

use super::*;

const RETRIED: &[&str] = &[
    "RequestLimitExceeded",
    "RequestLimitExceeded.UinLimitExceeded",
    "RequestLimitExceeded.IPLimitExceeded",
    "RequestLimitExceeded.GlobalRegionUinLimitExceeded",
    "FailedOperation.ResourceInOperating",
    "InternalError",
    "ServiceUnavailable",
];
const NOT_RETRIED: &[&str] = &[
    "AuthFailure.SignatureFailure",
    "AuthFailure.SignatureExpire",
    "AuthFailure.SecretIdNotFound",
    "AuthFailure.TokenFailure",
    "UnauthorizedOperation",
    "InvalidParameter",
    "InvalidParameter.FormatError",
    "InvalidParameter.LBIdNotFound",
    "InvalidParameterValue",
    "MissingParameter",
    "LimitExceeded",
    "ResourceNotFound",
    "FailedOperation",
];

/// Scripts `action` to fail once with `first`, then succeed.
async fn fail_once(server: &MockServer, action: &str, first: ResponseTemplate, then: impl Respond + 'static) {
    server.reset().await;
    Mock::given(header("X-TC-Action", action))
        .respond_with(first)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(server)
        .await;
    on(server, action, then).await;
    tasks_succeed(server).await;
}

#[tokio::test]
async fn retryable_codes_are_retried_for_reads_and_writes() {
    let server = MockServer::start().await;
    let clb = client(&server);
    let http_503 = || ResponseTemplate::new(503).set_body_string("busy");
    for code in RETRIED.iter().map(|c| Some(*c)).chain([None]) {
        let first = || code.map_or_else(http_503, api_error);
        fail_once(&server, "DescribeListeners", first(), respond(json!({"Listeners": [], "RequestId": "r"}))).await;
        assert!(clb.listeners(LB).await.is_ok(), "{code:?}");
        assert_eq!(sent(&server, "DescribeListeners").await.len(), 2, "{code:?}");
        let ok = accepted("reg", json!({"FailListenerIdSet": []}));
        fail_once(&server, "BatchRegisterTargets", first(), ok).await;
        assert_eq!(codes(&clb.register(LB, &[change("lbl-a", None, 1, 10)], &Stop::new()).await), ["ok"], "{code:?}");
        assert_eq!(sent(&server, "BatchRegisterTargets").await.len(), 2, "{code:?}");
    }
    let stats = clb.stats();
    let n = RETRIED.len() as u64 + 1;
    assert_eq!((stats["DescribeListeners"].requests, stats["DescribeListeners"].retries), (2 * n, n));
    assert_eq!(stats["BatchRegisterTargets"].retries, n);
}

#[tokio::test]
async fn non_retryable_codes_are_tried_once() {
    let server = MockServer::start().await;
    let clb = client(&server);
    for code in NOT_RETRIED {
        fail_once(&server, "DescribeListeners", api_error(code), respond(json!({"Listeners": []}))).await;
        let err = clb.listeners(LB).await.unwrap_err();
        assert_eq!(err.code(), *code);
        assert_eq!(sent(&server, "DescribeListeners").await.len(), 1, "{code}");
        fail_once(&server, "BatchDeregisterTargets", api_error(code), respond(json!({}))).await;
        assert_eq!(codes(&clb.deregister(LB, &[change("lbl-a", None, 1, 0)], &Stop::new()).await), [*code]);
        assert_eq!(sent(&server, "BatchDeregisterTargets").await.len(), 1, "{code}");
    }
    assert_eq!(clb.stats()["DescribeListeners"].retries, 0);
}

#[tokio::test]
async fn retries_are_bounded_and_keep_the_last_error() {
    let server = MockServer::start().await;
    on(&server, "DescribeListeners", api_error("RequestLimitExceeded")).await;
    let err = client(&server).listeners(LB).await.unwrap_err();
    assert_eq!(err.code(), "RequestLimitExceeded");
    assert_eq!(sent(&server, "DescribeListeners").await.len(), 4);
}

#[tokio::test]
async fn bad_statuses_and_bodies_are_typed_errors_with_short_excerpts() {
    let server = MockServer::start().await;
    on(&server, "DescribeListeners", ResponseTemplate::new(403).set_body_string("x".repeat(1000))).await;
    on(&server, "DescribeTargets", ResponseTemplate::new(200).set_body_string("<html>gateway</html>")).await;
    let clb = client(&server);
    match clb.listeners(LB).await {
        Err(Error::Status { status: 403, excerpt, .. }) => assert!(excerpt.chars().count() <= 201),
        other => panic!("expected HTTP 403, got {other:?}"),
    }
    assert_eq!(sent(&server, "DescribeListeners").await.len(), 1);
    match clb.targets(LB, &["lbl-1".into()]).await {
        Err(Error::Decode { excerpt, .. }) => assert_eq!(excerpt, "<html>gateway</html>"),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

/// Issue 17 #6: a write answered with something unreadable says that an answer arrived and could not be read,
/// and is not resent (the write may have been applied).
#[tokio::test]
async fn an_unreadable_answer_to_a_write_says_so_and_is_not_resent() {
    let server = MockServer::start().await;
    let clb = client(&server);
    on(&server, "BatchRegisterTargets", ResponseTemplate::new(200).set_body_string("<html>proxy error</html>")).await;
    let outcomes = clb.register(LB, &[change("lbl-a", None, 1, 10)], &Stop::new()).await;
    let failure = outcomes[0].as_ref().expect_err("the outcome is unknown");
    assert_eq!(failure.code, "OutcomeUnknown");
    assert!(failure.message.contains("an unreadable answer arrived from"), "{}", failure.message);
    assert!(failure.message.contains("proxy error"), "the excerpt is shown: {}", failure.message);
    assert_eq!(sent(&server, "BatchRegisterTargets").await.len(), 1, "not resent");
}
