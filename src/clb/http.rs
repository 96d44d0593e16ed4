//! [`ClbClient`]: the real [`Clb`](super::Clb), TC3-signed JSON over HTTPS (or plain HTTP to a loopback emulator).
//!
//! Every call is paced per action ([`Pacer`]), signed over the exact bytes sent, and retried only when the
//! answer says it was not executed (throttled, busy, server error, HTTP 5xx) — or, for reads, on transport
//! errors. A mutation that may have been sent but got no answer is never resent: it becomes `OutcomeUnknown` and
//! the next run re-reads the targets. Every accepted mutation is followed by `DescribeTaskStatus` polling.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tracing::debug;

use super::pace::Pacer;
use super::retry::{self, RetryPolicy};
use super::task::{self, TaskPolicy, TaskStatus};
use super::tc3::{self, Credentials, Signable};
use super::wire::{self, EnvelopeError};
use super::{ApiError, Error};

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

/// Everything the client needs; [`ClientConfig::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    /// Sent as `X-TC-Region`; the region of the load balancers.
    pub region: String,
    pub credentials: Credentials,
    /// Requests per second per action (CLB's documented limit is 20); 0 turns pacing off.
    pub rate_limit_per_action: u32,
    pub connect_timeout: Duration,
    /// Whole-request timeout of one HTTP call.
    pub request_timeout: Duration,
    /// How long to wait for one async task before reporting `TaskTimeout`.
    pub task_timeout: Duration,
    /// First `DescribeTaskStatus` interval (300 ms: a typical target task; polling sooner mostly finds it running);
    /// it grows by half each poll to 2 s.
    pub task_poll_interval: Duration,
    pub retry: RetryPolicy,
}

impl ClientConfig {
    pub fn new(region: impl Into<String>, credentials: Credentials) -> Self {
        ClientConfig {
            endpoint: Endpoint::Default,
            region: region.into(),
            credentials,
            rate_limit_per_action: 20,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            task_timeout: Duration::from_secs(120),
            task_poll_interval: Duration::from_millis(300),
            retry: RetryPolicy::default(),
        }
    }
}

/// Calls and retries of one action, for benchmarks and the run summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActionStats {
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Requests that were retries of an earlier attempt.
    pub retries: u64,
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
    let url = reqwest::Url::parse(&text).map_err(|e| Error::Config(format!("endpoint `{text}` is not a URL: {e}")))?;
    let host = url.host_str().ok_or_else(|| Error::Config(format!("endpoint `{text}` has no host")))?.to_string();
    if !url.username().is_empty() || url.password().is_some() || url.path() != "/" || url.query().is_some() {
        return Err(Error::Config(format!(
            "endpoint `{text}` must be scheme://host[:port] without user, path or query"
        )));
    }
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&host) => {}
        "http" => {
            return Err(Error::Config(format!(
                "endpoint `{text}`: TLS is required; plain http is only allowed for loopback hosts (127.0.0.1, ::1, localhost)"
            )));
        }
        other => {
            return Err(Error::Config(format!("endpoint `{text}`: scheme `{other}` is not http or https")));
        }
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

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Read,
    Write,
}

/// The CLB API client. One instance is shared by every load balancer of a run (`&self` everywhere).
pub struct ClbClient {
    http: reqwest::Client,
    endpoint: ResolvedEndpoint,
    region: String,
    credentials: Credentials,
    pacer: Pacer,
    task: TaskPolicy,
    retry: RetryPolicy,
    stats: Mutex<BTreeMap<&'static str, ActionStats>>,
}

impl ClbClient {
    /// Builds the client: checks the endpoint, installs the ring TLS provider (once per process) and creates the
    /// one shared HTTP client. TLS certificate verification is always on.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        let endpoint = resolve_endpoint(&config.endpoint, &config.region)?;
        // Err only means a provider is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("clbsync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .tls_backend_rustls()
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        let first = config.task_poll_interval;
        Ok(ClbClient {
            http,
            endpoint,
            region: config.region,
            credentials: config.credentials,
            pacer: Pacer::new(config.rate_limit_per_action),
            task: TaskPolicy {
                timeout: config.task_timeout,
                first_interval: first,
                max_interval: first.max(Duration::from_secs(2)),
            },
            retry: config.retry,
            stats: Mutex::new(BTreeMap::new()),
        })
    }

    /// Requests and retries per action so far.
    pub fn stats(&self) -> BTreeMap<&'static str, ActionStats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The `Host` value sent and signed.
    pub fn host(&self) -> &str {
        &self.endpoint.host
    }

    fn count(&self, action: &'static str, retry: bool) {
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        let s = stats.entry(action).or_default();
        s.requests += 1;
        s.retries += u64::from(retry);
    }

    /// One action with pacing and retries. Returns the response fields and the `RequestId`.
    pub(super) async fn call<Req, Resp>(
        &self,
        action: &'static str,
        lb: &str,
        kind: Kind,
        req: &Req,
    ) -> Result<(Resp, String), Error>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let body = serde_json::to_vec(req).expect("request bodies are plain structs and always serialise");
        let first = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let (permit, _) = self.pacer.acquire(action).await;
            self.count(action, attempt > 1);
            let started = Instant::now();
            let result = self.send_once::<Resp>(action, &body).await;
            // The answer is in: from now on this call counts against the action's budget for one second.
            drop(permit);
            let ms = started.elapsed().as_millis() as u64;
            let err = match result {
                Ok((resp, request_id)) => {
                    debug!(action, lb, attempt, request_id = %request_id, ms, "clb call");
                    return Ok((resp, request_id));
                }
                Err(err) => err,
            };
            debug!(
                action,
                lb,
                attempt,
                request_id = err.request_id().unwrap_or("-"),
                ms,
                code = err.code(),
                "clb call failed"
            );
            let retryable = match &err {
                Error::Api(api) => retry::is_retryable(api.kind()),
                Error::Status { status, .. } => *status >= 500,
                Error::Transport { source, .. } => kind == Kind::Read || source.is_connect(),
                _ => false,
            };
            let delay = retry::backoff(&self.retry, attempt - 1, fastrand::f64());
            if !retryable || attempt >= self.retry.max_attempts || first.elapsed() + delay > self.retry.max_total {
                return Err(match err {
                    Error::Transport { action, endpoint, source } if kind == Kind::Write && !source.is_connect() => {
                        Error::OutcomeUnknown { action, endpoint, reason: source.to_string() }
                    }
                    // A 200 whose body cannot be read: the mutation may have been applied.
                    Error::Decode { action, reason, excerpt } if kind == Kind::Write => Error::OutcomeUnknown {
                        action,
                        endpoint: self.endpoint.url.to_string(),
                        reason: format!("unreadable answer ({reason}): {excerpt}"),
                    },
                    other => other,
                });
            }
            tokio::time::sleep(delay).await;
        }
    }

    /// Signs and sends one request, and reads the envelope.
    async fn send_once<Resp: DeserializeOwned>(
        &self,
        action: &'static str,
        body: &[u8],
    ) -> Result<(Resp, String), Error> {
        let endpoint = || self.endpoint.url.to_string();
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let signable = Signable::clb_post(&self.endpoint.host, body);
        let mut auth = HeaderValue::from_str(&tc3::authorization(&signable, &self.credentials, timestamp))
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
        if let Some(token) = &self.credentials.token {
            let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
                Error::Config("the session token contains characters not allowed in an HTTP header".into())
            })?;
            value.set_sensitive(true);
            request = request.header("X-TC-Token", value);
        }
        let transport = |source| Error::Transport { action, endpoint: endpoint(), source };
        let response = request.body(body.to_vec()).send().await.map_err(transport)?;
        let status = response.status();
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
        if status != reqwest::StatusCode::OK {
            return Err(Error::Status {
                action,
                endpoint: endpoint(),
                status: status.as_u16(),
                excerpt: excerpt(&bytes),
            });
        }
        match wire::parse_envelope::<Resp>(&bytes) {
            Ok(ok) => Ok(ok),
            Err(EnvelopeError::Api { code, mut message, request_id }) => {
                if code.starts_with("AuthFailure") || code.starts_with("UnauthorizedOperation") {
                    message =
                        format!("{message} (credentials were read from {})", self.credentials.source_description());
                }
                Err(Error::Api(ApiError { action, code, message, request_id }))
            }
            Err(EnvelopeError::Decode(reason)) => Err(Error::Decode { action, reason, excerpt: excerpt(&bytes) }),
        }
    }

    /// Polls the task created by an accepted mutation.
    pub(super) async fn wait_task(&self, lb: &str, task_id: &str) -> Result<u32, Error> {
        let request = wire::DescribeTaskStatusRequest { task_id: task_id.to_string() };
        task::wait(task_id, &self.task, || async {
            let (resp, _) = self
                .call::<_, wire::DescribeTaskStatusResponse>("DescribeTaskStatus", lb, Kind::Read, &request)
                .await?;
            Ok(TaskStatus::from_api(resp.status, resp.message))
        })
        .await
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
    let mut out: String = text.chars().take(200).collect();
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
        let creds = Credentials::new("AKIDtest", "key", None);
        let client = ClbClient::new(ClientConfig::new("ap-guangzhou", creds.clone())).unwrap();
        assert_eq!(client.host(), "clb.tencentcloudapi.com");
        // Building a second client finds the provider already installed, which is fine.
        assert!(ClbClient::new(ClientConfig::new("ap-guangzhou", creds)).is_ok());
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt(&[b'x'; 500]).chars().count(), 201);
        assert_eq!(excerpt(b"short"), "short");
    }
}
