//! The CVM instance metadata service's role credentials, served on the emulator's port under
//! `/latest/meta-data/` (the official SDKs' base URL is `http://metadata.tencentyun.com/latest/meta-data/`):
//!
//! - `GET /latest/meta-data/cam/security-credentials/` → the instance role's name (text), or 404
//!   when no role is bound;
//! - `GET /latest/meta-data/cam/security-credentials/<role>` → the role's temporary credentials as
//!   JSON (`TmpSecretId`, `TmpSecretKey`, `ExpiredTime`, `Expiration`, `Token`, `Code: "Success"`:
//!   the fields the Python and Go SDKs read), 404 for another role.
//!
//! The same credential is answered until half of its lifetime is gone, then a new one (see
//! `issued.rs`): a client that refreshes ahead of expiry gets a fresh credential.

use crate::faults::CredentialOutcome;
use crate::issued::IssuedCredential;
use crate::response::{Resp, json_response};
use crate::server::DropConnection;
use crate::{CallRecord, Shared};
use hyper::http::request::Parts;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

/// Path prefix of the metadata service.
pub const PREFIX: &str = "/latest/meta-data/";
const CREDENTIALS: &str = "/latest/meta-data/cam/security-credentials";

/// The instance role the metadata endpoint serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetadataConfig {
    /// The role bound to the "instance"; `None`: no role (404, like a CVM without one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Lifetime of the role's credentials in ms (default two hours).
    pub lifetime_ms: u64,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        MetadataConfig { role: None, lifetime_ms: 7_200_000 }
    }
}

fn text(status: u16, body: impl Into<String>) -> Resp {
    json_response(status, body.into().into_bytes(), "text/plain; charset=utf-8")
}

fn credentials_body(c: &IssuedCredential) -> Vec<u8> {
    let v = json!({
        "TmpSecretId": c.secret_id,
        "TmpSecretKey": c.secret_key,
        "ExpiredTime": c.expired_time(),
        "Expiration": c.expiration(),
        "Token": c.token,
        "Code": "Success",
    });
    serde_json::to_vec_pretty(&v).unwrap_or_default()
}

/// The answer without faults, its call-log code, and the SecretId it handed out.
fn answer(shared: &Shared, parts: &Parts) -> (Resp, &'static str, Option<String>) {
    if parts.method != hyper::Method::GET {
        return (text(405, "405 Method Not Allowed"), "MethodNotAllowed", None);
    }
    let path = parts.uri.path();
    let config = shared.lock().metadata.clone();
    let not_found = || (text(404, "404 Not Found"), "NotFound", None);
    if path == CREDENTIALS || path == format!("{CREDENTIALS}/") {
        return match config.role {
            Some(role) => (text(200, role), "Success", None),
            None => not_found(),
        };
    }
    match (path.strip_prefix(&format!("{CREDENTIALS}/")), config.role) {
        (Some(asked), Some(role)) if asked == role => {
            let now = shared.now_unix_ms();
            let c = shared.lock().issued.cvm_credential(&role, now, config.lifetime_ms);
            (json_response(200, credentials_body(&c), "text/plain; charset=utf-8"), "Success", Some(c.secret_id))
        }
        _ => not_found(),
    }
}

/// Serves one metadata request (faults first), and records it in the call log.
pub(crate) async fn handle(shared: &Shared, parts: &Parts) -> Result<Resp, DropConnection> {
    let started = std::time::Instant::now();
    let fault = shared.lock().engine.metadata();
    if let Some(CredentialOutcome::Slow(ms)) = fault {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let at = shared.clock.now();
    let code_body = |code: &str| {
        let body =
            serde_json::to_vec(&json!({"Code": code, "Message": "injected by clb-emulator"})).unwrap_or_default();
        json_response(200, body, "text/plain; charset=utf-8")
    };
    let (result, code, secret_id, hang) = match fault {
        Some(CredentialOutcome::Hang(ms)) => (Err(DropConnection), "Hang".to_string(), None, ms),
        Some(CredentialOutcome::Error) => (Ok(code_body("InternalError")), "InternalError".into(), None, 0),
        Some(CredentialOutcome::RequestLimitExceeded) => {
            (Ok(code_body("RequestLimitExceeded")), "RequestLimitExceeded".into(), None, 0)
        }
        Some(CredentialOutcome::HttpError(status)) => {
            (Ok(crate::server::error_page(status)), format!("HTTP{status}"), None, 0)
        }
        Some(CredentialOutcome::Slow(_)) | None => {
            let (resp, code, id) = answer(shared, parts);
            (Ok(resp), code.to_string(), id, 0)
        }
    };
    tracing::info!(target: "clb_emulator", "metadata {} {} code={code} {}ms",
        parts.method, parts.uri.path(), started.elapsed().as_millis());
    shared.lock().calls.push(CallRecord {
        seq: 0,
        service: "metadata".into(),
        action: parts.uri.path().to_string(),
        params: serde_json::Value::Null,
        code,
        request_id: String::new(),
        mutating: false,
        temporary: secret_id.is_some(),
        secret_id,
        elapsed_ms: started.elapsed().as_millis() as u64,
        at_us: u64::try_from(at.duration_since(shared.origin).as_micros()).unwrap_or(u64::MAX),
    });
    if hang > 0 {
        tokio::time::sleep(Duration::from_millis(hang)).await;
    }
    result
}
