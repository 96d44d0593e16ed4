//! Hostile environments (issue 19): servers, plugins, proxies and files on loopback that try to get the CLB
//! credentials or stall, flood or forge the run. Every hostile party runs inside the test, bounded in time.

use std::time::Duration;

use clbsync::clb::client::{ClbClient, ClientConfig};
use clbsync::clb::credentials::Credentials;
use clbsync::clb::http::Endpoint;
use clbsync::clb::{Clb, Error};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A client with a session token (sent as `X-TC-Token`, which HTTP redirects do not strip) to `endpoint`.
fn clb_client(endpoint: String) -> ClbClient {
    let creds = Credentials::new("AKIDtest", "testSecretKey", Some("session-token".into()));
    let config = ClientConfig {
        endpoint: Endpoint::Url(endpoint),
        request_timeout: Duration::from_secs(5),
        ..ClientConfig::new("ap-guangzhou", creds)
    };
    ClbClient::new(config).expect("loopback http endpoint is allowed")
}

#[tokio::test]
async fn a_redirect_is_an_error_naming_where_it_pointed_and_is_never_followed() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&elsewhere).await;
    let endpoint = MockServer::start().await;
    let location = format!("{}/collect", elsewhere.uri());
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(308).insert_header("Location", location.as_str()))
        .mount(&endpoint)
        .await;

    let err = clb_client(endpoint.uri()).listeners("lb-12345678").await.expect_err("a redirect is an error");
    assert!(matches!(err, Error::Redirect { status: 308, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&location) && msg.contains("not followed"), "{msg}");
    assert_eq!(endpoint.received_requests().await.expect("recorded").len(), 1, "the redirect was answered once");
    assert!(elsewhere.received_requests().await.expect("recorded").is_empty(), "the redirect target got a request");
}
