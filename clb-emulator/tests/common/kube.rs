//! The shared test kube-apiserver (`testbed/kube-apiserver.sh start`), reached with reqwest and the
//! admin kubeconfig: service-account tokens through the TokenRequest API, and the service-account
//! issuer discovery documents (`/.well-known/openid-configuration`, `/openid/v1/jwks`).
//!
//! The kubeconfig is `$CLBSYNC_TEST_KUBECONFIG`, else `<repo>/target/kube-testbed/kubeconfig`. A server
//! that does not answer fails the test: these tests are never skipped.

use base64::Engine;
use clb_emulator::Jwks;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os("CLBSYNC_TEST_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/kube-testbed/kubeconfig"))
}

fn unreachable(why: impl std::fmt::Display) -> ! {
    panic!(
        "the test kube-apiserver is not reachable ({why}) with kubeconfig {}: run testbed/kube-apiserver.sh start \
         (or set CLBSYNC_TEST_KUBECONFIG)",
        kubeconfig_path().display()
    )
}

/// A namespace, ServiceAccount or token name no other test process uses (namespaces cannot be
/// deleted on the test server).
pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{}-{nanos}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// An admin connection to the test API server.
pub struct Kube {
    http: reqwest::Client,
    server: String,
    token: String,
}

impl Kube {
    /// Reads the kubeconfig's current context (server, CA, bearer token). Panics when unusable.
    pub fn connect() -> Kube {
        let path = kubeconfig_path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| unreachable(e));
        let cfg: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| unreachable(e));
        let current = cfg["current-context"].as_str().unwrap_or_else(|| unreachable("no current-context"));
        let named = |list: &str, name: &str| -> Value {
            cfg[list].as_array().and_then(|l| l.iter().find(|x| x["name"] == name)).cloned().unwrap_or(Value::Null)
        };
        let context = &named("contexts", current)["context"];
        let cluster = named("clusters", context["cluster"].as_str().unwrap_or_default())["cluster"].clone();
        let user = named("users", context["user"].as_str().unwrap_or_default())["user"].clone();
        let server = cluster["server"].as_str().unwrap_or_else(|| unreachable("no server")).to_string();
        let token =
            user["token"].as_str().unwrap_or_else(|| unreachable("the context's user has no token")).to_string();
        let ca = base64::engine::general_purpose::STANDARD
            .decode(cluster["certificate-authority-data"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| unreachable(e));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap_or_else(|e| unreachable(e))])
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|e| unreachable(e));
        Kube { http, server, token }
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.server)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        let resp = req.send().await.unwrap_or_else(|e| unreachable(e));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_else(|e| unreachable(e));
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// `GET path` as JSON; panics on a status other than 200.
    pub async fn get(&self, path: &str) -> Value {
        let (status, v) = self.send(reqwest::Method::GET, path, None).await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    /// The server's service-account issuer, from its discovery document.
    pub async fn issuer(&self) -> String {
        let v = self.get("/.well-known/openid-configuration").await;
        v["issuer"].as_str().expect("the discovery document names the issuer").to_string()
    }

    /// The server's service-account signing keys.
    pub async fn jwks(&self) -> Jwks {
        Jwks::from_json(&self.get("/openid/v1/jwks").await.to_string()).expect("the server's JWKS parses")
    }

    /// Creates (if missing) `namespace` and its ServiceAccount `name`, and mints a token for it with
    /// this audience through the TokenRequest API (the server's minimum lifetime is 10 minutes).
    pub async fn service_account_token(&self, namespace: &str, name: &str, audience: &str) -> String {
        let created = |what: &str, (status, v): (u16, Value)| {
            assert!(status == 201 || status == 409, "create {what}: {status} {v}");
        };
        let ns = json!({"metadata": {"name": namespace}});
        created(namespace, self.send(reqwest::Method::POST, "/api/v1/namespaces", Some(ns)).await);
        let sa = json!({"metadata": {"name": name}});
        let path = format!("/api/v1/namespaces/{namespace}/serviceaccounts");
        created(name, self.send(reqwest::Method::POST, &path, Some(sa)).await);
        let req = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": 600}});
        let (status, v) = self.send(reqwest::Method::POST, &format!("{path}/{name}/token"), Some(req)).await;
        assert_eq!(status, 201, "TokenRequest for {namespace}/{name}: {v}");
        v["status"]["token"].as_str().expect("a TokenRequest answer has a token").to_string()
    }
}
