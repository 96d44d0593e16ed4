//! Helpers shared by the integration tests: a minimal TC3-signing client, an STS caller, a test
//! identity provider and the test kube-apiserver.
#![allow(dead_code)]

pub mod idp;
pub mod kube;

use clb_emulator::{Config, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Emulator, State};
use serde_json::Value;
use std::time::Duration;

pub const EXAMPLE_STATE: &str = include_str!("../../examples/state.yaml");

pub fn example_state() -> State {
    State::from_yaml_str(EXAMPLE_STATE).expect("example state parses")
}

pub async fn start_with(config: Config) -> Emulator {
    clb_emulator::start("127.0.0.1:0".parse().unwrap(), config).await.expect("emulator starts")
}

/// Example state, no rate limit, no task delay.
pub async fn start_example() -> Emulator {
    start_with(Config { state: example_state(), rate_limit_per_action: 0, ..Config::default() }).await
}

pub struct Client {
    pub http: reqwest::Client,
    pub host: String,
    pub secret_id: String,
    pub secret_key: String,
    pub token: Option<String>,
    pub ts_offset: i64,
}

#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

/// A plain HTTP client. In a workspace build reqwest's TLS needs an explicit crypto provider, even for http.
pub fn http_client() -> reqwest::Client {
    http_client_with_timeout(Duration::from_secs(10))
}

/// [`http_client`] with another request timeout.
pub fn http_client_with_timeout(timeout: Duration) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().timeout(timeout).build().expect("reqwest client")
}

impl Client {
    pub fn new(emu: &Emulator) -> Client {
        Client {
            http: http_client(),
            host: emu.host(),
            secret_id: DEFAULT_SECRET_ID.into(),
            secret_key: DEFAULT_SECRET_KEY.into(),
            token: None,
            ts_offset: 0,
        }
    }

    pub fn now(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64 + self.ts_offset
    }

    /// Sends a signed request with `body` bytes; `extra` headers override/add.
    pub async fn send(&self, action: &str, body: Vec<u8>, extra: &[(&str, &str)]) -> Result<Raw, reqwest::Error> {
        let ts = self.now();
        let auth = clb_emulator::sign::authorization(
            &self.secret_id,
            &self.secret_key,
            "clb",
            &self.host,
            "application/json",
            ts,
            &body,
        );
        use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
        let mut headers = HeaderMap::new();
        let mut set = |k: &str, v: &str| {
            headers.insert(
                HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        };
        set("content-type", "application/json");
        set("host", &self.host);
        set("x-tc-action", action);
        set("x-tc-version", "2018-03-17");
        set("x-tc-region", "ap-guangzhou");
        set("x-tc-timestamp", &ts.to_string());
        set("authorization", &auth);
        if let Some(t) = &self.token {
            set("x-tc-token", t);
        }
        for (k, v) in extra {
            set(k, v);
        }
        let req = self.http.post(format!("http://{}/", self.host)).headers(headers);
        let resp = req.body(body).send().await?;
        let status = resp.status().as_u16();
        let content_type =
            resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body = resp.bytes().await?.to_vec();
        Ok(Raw { status, content_type, body })
    }

    /// Calls `action` and returns `Response` (success or error object).
    pub async fn call(&self, action: &str, params: Value) -> Value {
        let raw = self.send(action, serde_json::to_vec(&params).unwrap(), &[]).await.expect("http ok");
        assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
        assert_eq!(raw.content_type, "application/json");
        let v: Value = serde_json::from_slice(&raw.body).expect("json body");
        let r = v["Response"].clone();
        assert!(r["RequestId"].is_string(), "RequestId missing: {v}");
        r
    }

    /// Calls and asserts success.
    pub async fn ok(&self, action: &str, params: Value) -> Value {
        let r = self.call(action, params.clone()).await;
        assert!(r.get("Error").is_none(), "{action} {params} failed: {r}");
        r
    }

    /// Calls and returns the error code ("" on success).
    pub async fn code(&self, action: &str, params: Value) -> String {
        let r = self.call(action, params).await;
        r["Error"]["Code"].as_str().unwrap_or("").to_string()
    }

    /// Polls DescribeTaskStatus until Status != 2.
    pub async fn wait_task(&self, id: &str) -> Value {
        for _ in 0..500 {
            let r = self.ok("DescribeTaskStatus", serde_json::json!({"TaskId": id})).await;
            if r["Status"] != 2 {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("task {id} did not finish");
    }
}

/// Calls STS `AssumeRoleWithWebIdentity` the way the official SDKs do (unsigned: `Authorization: SKIP`)
/// and returns `Response`.
pub async fn assume_role(emu: &Emulator, params: Value) -> Value {
    assume_role_at(&emu.endpoint(), params).await
}

/// [`assume_role`] at `endpoint` (`http://127.0.0.1:PORT`).
pub async fn assume_role_at(endpoint: &str, params: Value) -> Value {
    let raw = sts_send(endpoint, "AssumeRoleWithWebIdentity", "2018-08-13", &params).await.expect("http ok");
    assert_eq!(raw.status, 200, "{}", String::from_utf8_lossy(&raw.body));
    let v: Value = serde_json::from_slice(&raw.body).expect("json body");
    v["Response"].clone()
}

/// Sends an unsigned STS request.
pub async fn sts_send(endpoint: &str, action: &str, version: &str, params: &Value) -> Result<Raw, reqwest::Error> {
    let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
    let resp = http_client()
        .post(format!("{endpoint}/"))
        .header("content-type", "application/json")
        .header("authorization", "SKIP")
        .header("x-tc-action", action)
        .header("x-tc-version", version)
        .header("x-tc-region", "ap-guangzhou")
        .header("x-tc-timestamp", ts)
        .body(serde_json::to_vec(params).unwrap())
        .send()
        .await?;
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    Ok(Raw { status, content_type, body: resp.bytes().await?.to_vec() })
}

/// A client signing with the temporary credentials of an STS answer (`Response`).
pub fn client_from_sts(emu: &Emulator, response: &Value) -> Client {
    let c = &response["Credentials"];
    let s = |k: &str| c[k].as_str().unwrap_or_else(|| panic!("no Credentials.{k} in {response}")).to_string();
    Client { secret_id: s("TmpSecretId"), secret_key: s("TmpSecretKey"), token: Some(s("Token")), ..Client::new(emu) }
}
