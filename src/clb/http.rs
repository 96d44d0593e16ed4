//! The HTTP transport of the CLB API: where requests go, and one signed request with its answer read.
//!
//! [`Transport::send`] signs the exact bytes it sends (TC3, [`super::tc3`]), sends them to the one endpoint
//! (https, or plain http to a loopback emulator), reads at most [`MAX_RESPONSE_BYTES`] and parses the
//! `{"Response": ...}` envelope. Retries, pacing and tasks are the client's ([`super::client`]).
//!
//! The signed request goes to the endpoint and nowhere else: redirects are never followed (a 3xx is an error
//! naming where it pointed), a loopback endpoint never goes through a proxy, and an https endpoint goes
//! through `HTTPS_PROXY` (honouring `NO_PROXY`) only; `HTTP_PROXY` and `ALL_PROXY` are ignored. Every string
//! in an answer has its control characters escaped ([`crate::model::printable`]) before clbsync reads it.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::de::DeserializeOwned;

use super::credentials::Credentials;
use super::tc3::{self, Signable};
use super::wire::{self, EnvelopeError};
use super::{ApiError, Error};
use crate::model::printable;

/// The CLB API version every request names.
pub const API_VERSION: &str = "2018-03-17";
/// The nearest-region endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://clb.tencentcloudapi.com";

/// Where requests go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Endpoint {
    /// `https://clb.tencentcloudapi.com`.
    #[default]
    Default,
    /// `https://clb.<region>.tencentcloudapi.com` (required for finance regions).
    Regional,
    /// An explicit `scheme://host[:port]`; plain `http` only for loopback hosts (an emulator).
    Url(String),
}

/// A resolved endpoint: the URL and the exact `Host` header value that is sent and signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    pub url: reqwest::Url,
    /// `host` or `host:port` when the port is not the scheme's default, which is what the HTTP client sends.
    pub host: String,
}

/// Resolves and checks an endpoint: TLS is required except for loopback hosts (127.0.0.0/8, ::1, `localhost`).
pub fn resolve_endpoint(endpoint: &Endpoint, region: &str) -> Result<ResolvedEndpoint, Error> {
    check_region(region)?;
    let text = match endpoint {
        Endpoint::Default => DEFAULT_ENDPOINT.to_string(),
        Endpoint::Regional => format!("https://clb.{region}.tencentcloudapi.com"),
        Endpoint::Url(url) => url.clone(),
    };
    parse_endpoint("endpoint", &text).map_err(Error::Config)
}

/// Checks an endpoint URL (`what` names it in messages): `scheme://host[:port]`, https, or plain http to a loopback
/// host. Also the check of `--sts-endpoint`.
pub fn parse_endpoint(what: &str, text: &str) -> Result<ResolvedEndpoint, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{what} `{text}` is not a URL: {e}"))?;
    let host = url.host_str().ok_or_else(|| format!("{what} `{text}` has no host"))?.to_string();
    if !url.username().is_empty() || url.password().is_some() || url.path() != "/" || url.query().is_some() {
        return Err(format!("{what} `{text}` must be scheme://host[:port] without user, path or query"));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(format!(
                "{what} `{text}`: TLS is required; plain http is only allowed for loopback hosts (127.0.0.1, ::1, localhost)"
            ));
        }
        other => return Err(format!("{what} `{text}`: scheme `{other}` is not http or https")),
    }
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    };
    Ok(ResolvedEndpoint { url, host })
}

/// A region goes into a header and possibly a host name: lowercase letters, digits and `-` only.
fn check_region(region: &str) -> Result<(), Error> {
    let valid = !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "region `{region}` is not a region name such as ap-guangzhou (X-TC-Region is required for CLB)"
        )))
    }
}

/// 127.0.0.0/8, ::1 or `localhost`.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// One endpoint, one region, one connection pool. The credentials come with each request.
pub struct Transport {
    http: reqwest::Client,
    endpoint: ResolvedEndpoint,
    region: String,
}

/// The HTTP client for a Tencent Cloud API endpoint: TLS certificate verification always on (the ring provider is
/// installed once per process), redirects never followed, a loopback endpoint never through a proxy and an https
/// one through `HTTPS_PROXY` only.
pub fn client(
    endpoint: &ResolvedEndpoint,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<reqwest::Client, String> {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("clbsync/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect_timeout)
        .timeout(request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .tls_backend_rustls();
    if let Some(proxy) = https_proxy(endpoint, |k| std::env::var(k).ok())? {
        builder = builder.proxy(proxy);
    }
    builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl Transport {
    /// Checks the endpoint and region and builds the HTTP client ([`client`]).
    pub fn new(
        endpoint: &Endpoint,
        region: String,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, Error> {
        let endpoint = resolve_endpoint(endpoint, &region)?;
        let http = client(&endpoint, connect_timeout, request_timeout).map_err(Error::Config)?;
        Ok(Transport { http, endpoint, region })
    }

    /// The `Host` value sent and signed.
    pub fn host(&self) -> &str {
        &self.endpoint.host
    }

    /// The endpoint URL, for messages.
    pub fn url(&self) -> String {
        self.endpoint.url.to_string()
    }

    /// Signs one request with `credentials`, sends it, and reads the envelope.
    pub async fn send<Resp: DeserializeOwned>(
        &self,
        action: &'static str,
        body: &[u8],
        credentials: &Credentials,
    ) -> Result<(Resp, String), Error> {
        let endpoint = || self.endpoint.url.to_string();
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let signable = Signable::clb_post(&self.endpoint.host, body);
        let mut auth = HeaderValue::from_str(&tc3::authorization(&signable, credentials, timestamp))
            .map_err(|_| Error::Config("the SecretId contains characters not allowed in an HTTP header".into()))?;
        auth.set_sensitive(true);
        let mut request = self
            .http
            .post(self.endpoint.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(AUTHORIZATION, auth)
            .header("X-TC-Action", action)
            .header("X-TC-Version", API_VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Region", &self.region)
            .header("X-TC-Language", "en-US");
        if let Some(token) = &credentials.token {
            let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
                Error::Config("the session token contains characters not allowed in an HTTP header".into())
            })?;
            value.set_sensitive(true);
            request = request.header("X-TC-Token", value);
        }
        let transport = |error| Error::Transport { action, endpoint: endpoint(), error };
        let response = request.body(body.to_vec()).send().await.map_err(transport)?;
        let status = response.status();
        let response_location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let bytes = match read_bounded(response).await {
            Ok(bytes) => bytes,
            Err(Body::Transport(source)) => return Err(transport(source)),
            Err(Body::TooLarge(read)) => {
                let reason = format!(
                    "the response is larger than {} MiB ({read} bytes or more); check --endpoint",
                    MAX_RESPONSE_BYTES >> 20
                );
                return Err(Error::Decode { action, reason, excerpt: String::new() });
            }
        };
        if status.is_redirection() {
            let location = response_location.as_deref().map_or_else(|| "nowhere (no Location)".into(), printable);
            return Err(Error::Redirect {
                action,
                endpoint: endpoint(),
                status: status.as_u16(),
                location: location.into(),
            });
        }
        if status != reqwest::StatusCode::OK {
            return Err(Error::Status {
                action,
                endpoint: endpoint(),
                status: status.as_u16(),
                excerpt: excerpt(&bytes),
            });
        }
        let bytes = escape_strings(bytes);
        match wire::parse_envelope::<Resp>(&bytes) {
            Ok(ok) => Ok(ok),
            Err(EnvelopeError::Api { code, mut message, request_id }) => {
                if code.starts_with("AuthFailure") || code.starts_with("UnauthorizedOperation") {
                    message = format!("{message} (credentials were read from {})", credentials.source_description());
                }
                Err(Error::Api(ApiError { action, code, message, request_id }))
            }
            Err(EnvelopeError::Decode(reason)) => Err(Error::Decode { action, reason, excerpt: excerpt(&bytes) }),
        }
    }
}

/// Why a request got no answer, in a few words a person can act on: refused, reset, DNS, TLS or a timeout, with
/// the innermost cause (reqwest's own message only says "error sending request for url").
pub fn describe_transport_error(error: &reqwest::Error) -> String {
    use std::io::ErrorKind;
    if error.is_timeout() {
        return "timed out waiting for an answer (check the network path to the endpoint)".into();
    }
    let mut innermost = error.to_string();
    let mut io_kind = None;
    let mut cur = std::error::Error::source(error);
    while let Some(cause) = cur {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        innermost = cause.to_string();
        cur = cause.source();
    }
    let lower = innermost.to_lowercase();
    match io_kind {
        Some(ErrorKind::ConnectionRefused) => "connection refused (nothing listens at that address and port)".into(),
        Some(ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted) => {
            format!("the connection was closed by the other side ({innermost})")
        }
        _ if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") => {
            format!("TLS handshake failed: {innermost} (check the endpoint's certificate and that it speaks https)")
        }
        _ if lower.contains("dns") || lower.contains("lookup") || lower.contains("resolve") => {
            format!("DNS lookup failed: {innermost} (check the host name and the resolver)")
        }
        _ => innermost,
    }
}

/// The proxy for `endpoint`: `HTTPS_PROXY` (or `https_proxy`) for an https endpoint off loopback, with
/// `NO_PROXY`; none otherwise. The proxy's URL is never printed: it may hold a password.
fn https_proxy(
    endpoint: &ResolvedEndpoint,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<reqwest::Proxy>, String> {
    let host = endpoint.url.host_str().unwrap_or_default();
    if endpoint.url.scheme() != "https" || is_loopback(host) {
        return Ok(None);
    }
    let Some(url) = lookup("HTTPS_PROXY").or_else(|| lookup("https_proxy")).filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    let proxy = reqwest::Proxy::https(url.as_str())
        .map_err(|_| "HTTPS_PROXY is not a proxy URL: check the environment".to_owned())?;
    Ok(Some(proxy.no_proxy(reqwest::NoProxy::from_env())))
}

/// The body with the [unprintable](crate::model::is_unprintable) characters of every JSON string escaped. Only a
/// body with a `\` escape or such a character as it is (C1, bidirectional formatting) can hold one, so other
/// bodies are returned as they are; a body that is not JSON is left for the envelope parser to refuse.
fn escape_strings(bytes: Vec<u8>) -> Vec<u8> {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::String(s) => {
                if let std::borrow::Cow::Owned(escaped) = printable(s) {
                    *s = escaped;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            serde_json::Value::Object(fields) => fields.values_mut().for_each(walk),
            _ => {}
        }
    }
    let raw = std::str::from_utf8(&bytes).is_ok_and(|text| text.chars().any(crate::model::is_unprintable));
    if !raw && !bytes.contains(&b'\\') {
        return bytes;
    }
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut value) => {
            walk(&mut value);
            serde_json::to_vec(&value).unwrap_or(bytes)
        }
        Err(_) => bytes,
    }
}

/// The largest response body read. CLB's answers for the few actions used stay far below it; a bigger one
/// (a misbehaving proxy, a wrong endpoint) is refused instead of being buffered without limit.
pub const MAX_RESPONSE_BYTES: usize = 32 << 20;

/// Why a response body could not be read.
enum Body {
    Transport(reqwest::Error),
    /// More than [`MAX_RESPONSE_BYTES`]: how many bytes were announced or read when it stopped.
    TooLarge(usize),
}

/// Reads the body, refusing it as soon as it is known to exceed [`MAX_RESPONSE_BYTES`].
async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, Body> {
    if let Some(len) = response.content_length().and_then(|l| usize::try_from(l).ok())
        && len > MAX_RESPONSE_BYTES
    {
        return Err(Body::TooLarge(len));
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(Body::Transport)? {
        if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(Body::TooLarge(bytes.len() + chunk.len()));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// At most 200 characters of a response body, for error messages.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = printable(&text.chars().take(200).collect::<String>()).into_owned();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(url: &str) -> Result<ResolvedEndpoint, Error> {
        resolve_endpoint(&Endpoint::Url(url.into()), "ap-guangzhou")
    }

    #[test]
    fn endpoints_resolve_to_the_host_that_is_sent() {
        let d = resolve_endpoint(&Endpoint::Default, "ap-guangzhou").unwrap();
        assert_eq!(d.host, "clb.tencentcloudapi.com");
        let r = resolve_endpoint(&Endpoint::Regional, "ap-shanghai-fsi").unwrap();
        assert_eq!(r.url.as_str(), "https://clb.ap-shanghai-fsi.tencentcloudapi.com/");
        assert_eq!(resolve("http://127.0.0.1:8080").unwrap().host, "127.0.0.1:8080");
        assert_eq!(resolve("http://localhost:80").unwrap().host, "localhost");
        assert_eq!(resolve("https://clb.example.com:443/").unwrap().host, "clb.example.com");
        assert_eq!(resolve("https://clb.example.com:8443").unwrap().host, "clb.example.com:8443");
        assert_eq!(resolve("http://[::1]:9000").unwrap().host, "[::1]:9000");
        assert_eq!(resolve("http://127.8.9.10:1").unwrap().host, "127.8.9.10:1");
    }

    #[test]
    fn plain_http_is_refused_off_loopback() {
        for url in ["http://10.0.0.1:8080", "http://clb.tencentcloudapi.com", "http://localhost.example.com"] {
            let err = resolve(url).unwrap_err();
            assert!(err.to_string().contains("TLS is required"), "{url}: {err}");
            assert_eq!(err.code(), "Config");
        }
        assert!(resolve("ftp://127.0.0.1").is_err());
        assert!(resolve("https://h/path").is_err());
        assert!(resolve_endpoint(&Endpoint::Regional, "ap-gz/evil").is_err());
        assert!(resolve_endpoint(&Endpoint::Default, "").is_err());
    }

    #[test]
    fn default_https_client_builds_with_the_ring_provider() {
        let build = || {
            let timeout = Duration::from_secs(5);
            Transport::new(&Endpoint::Default, "ap-guangzhou".into(), timeout, timeout)
        };
        assert_eq!(build().unwrap().host(), "clb.tencentcloudapi.com");
        // Building a second client finds the provider already installed, which is fine.
        assert!(build().is_ok());
    }

    #[test]
    fn only_https_proxy_is_honoured_and_never_for_loopback() {
        let proxy = |endpoint: &str| {
            let endpoint = match endpoint {
                "default" => resolve_endpoint(&Endpoint::Default, "ap-guangzhou").unwrap(),
                url => resolve(url).unwrap(),
            };
            https_proxy(&endpoint, |k| (k == "HTTPS_PROXY").then(|| "http://127.0.0.1:3128".to_owned())).unwrap()
        };
        assert!(proxy("default").is_some());
        assert!(proxy("https://clb.example.com").is_some());
        for loopback in ["https://127.0.0.1:9443", "https://localhost", "https://[::1]:9443", "http://127.0.0.1:8080"] {
            assert!(proxy(loopback).is_none(), "{loopback}");
        }
        let endpoint = resolve_endpoint(&Endpoint::Default, "ap-guangzhou").unwrap();
        let others = |k: &str| matches!(k, "HTTP_PROXY" | "ALL_PROXY").then(|| "http://127.0.0.1:3128".to_owned());
        assert!(https_proxy(&endpoint, others).unwrap().is_none(), "HTTP_PROXY and ALL_PROXY are ignored");
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt(&[b'x'; 500]).chars().count(), 201);
        assert_eq!(excerpt(b"short"), "short");
    }
}
