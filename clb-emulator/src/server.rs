//! HTTP server: the CLB API and STS on `POST /`, the CVM metadata endpoint under `/latest/meta-data/`,
//! and the admin API under `/_emulator/`.

use crate::error::{ApiError, codes};
use crate::faults::{AfterApplyKind, CredentialOutcome, ErrorKind, GarbageMode};
use crate::response::{Resp, json_response};
use crate::{API_VERSION, Shared, actions, admin, metadata, schema, sign, sts};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Returned by the service to make hyper close the connection without a response.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("response dropped by fault injection")
    }
}
impl std::error::Error for DropConnection {}

/// Accept loop; ends when `stop` changes or its sender is dropped.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            acc = listener.accept() => {
                let (stream, _) = match acc {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let shared = shared.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(shared.clone(), req));
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.changed() => {}
                    }
                });
            }
        }
    }
}

/// A fresh RequestId (UUID v4 format).
pub(crate) fn new_request_id() -> String {
    let mut b = [0u8; 16];
    if SystemRandom::new().fill(&mut b).is_err() {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        b = n.to_le_bytes();
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = sign::hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, DropConnection> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, shared.max_body).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(e),
    };
    if parts.uri.path().starts_with("/_emulator/") || parts.uri.path() == "/_emulator" {
        let body = body.unwrap_or_default();
        return Ok(admin::handle(&shared, &parts, &body));
    }
    if parts.uri.path().starts_with(metadata::PREFIX) {
        return metadata::handle(&shared, &parts).await;
    }
    api(&shared, &parts, body.map_err(|_| ())).await
}

/// `Message` of an injected `InternalError` (before or after execution: the client cannot tell).
const INTERNAL_ERROR_MESSAGE: &str = "An internal error has occurred. Retry your request (injected).";

/// What a gateway in front of the API answers when the service fails: HTTP 502 with an HTML page.
fn bad_gateway() -> Resp {
    error_page(502)
}

/// An HTML error page with HTTP `status`, as a gateway sends it.
pub(crate) fn error_page(status: u16) -> Resp {
    let reason = hyper::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let title = format!("{status} {reason}");
    let page =
        format!("<html><head><title>{title}</title></head><body><center><h1>{title}</h1></center></body></html>");
    json_response(status, page.into_bytes(), "text/html")
}

enum Outcome {
    Ok(Value),
    Err(ApiError),
    Http502,
    /// An HTML error page with this status (STS faults).
    HttpError(u16),
    Drop(u64),
    /// No answer: the connection is held this long, then closed (STS faults).
    Hang(u64),
    /// Executed, then answered with an error.
    AfterApply(AfterApplyKind),
    Garbage(GarbageMode, usize, Value),
}

async fn api(shared: &Arc<Shared>, parts: &Parts, body: Result<Bytes, ()>) -> Result<Resp, DropConnection> {
    let started = std::time::Instant::now();
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).map(|s| s.to_string());
    let action = header("x-tc-action").unwrap_or_default();
    let is_sts = sts::is_sts_request(&action, header("x-tc-version").as_deref());
    let request_id = new_request_id();
    let body_bytes = body.as_ref().map(|b| b.as_ref()).unwrap_or_default();
    let params: Value = serde_json::from_slice(body_bytes).unwrap_or(Value::Null);
    let (sts_fault, latency) = fault_and_latency(shared, is_sts);
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let at = shared.clock.now();
    let signer = if is_sts { None } else { signer(shared, &header) };
    let outcome = match body {
        Err(()) => Outcome::Err(ApiError::new(
            codes::REQUEST_SIZE_LIMIT_EXCEEDED,
            format!("The request body exceeds {} bytes.", shared.max_body),
        )),
        Ok(_) if is_sts => sts_outcome(shared, parts, sts_fault, &action, &params, &request_id),
        Ok(ref b) => process(shared, parts, b, &action, &params, &request_id),
    };
    let ok_body = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.insert("RequestId".into(), Value::String(request_id.clone()));
        }
        serde_json::to_vec(&json!({ "Response": v })).unwrap_or_default()
    };
    let (code, result) = match &outcome {
        Outcome::Ok(v) => ("Success".to_string(), Ok(json_response(200, ok_body(v), "application/json"))),
        Outcome::Err(e) => {
            let body = json!({"Response": {"Error": {"Code": e.code, "Message": e.message}, "RequestId": request_id}});
            (
                e.code.to_string(),
                Ok(json_response(200, serde_json::to_vec(&body).unwrap_or_default(), "application/json")),
            )
        }
        Outcome::Http502 => ("HTTP502".to_string(), Ok(bad_gateway())),
        Outcome::HttpError(status) => (format!("HTTP{status}"), Ok(error_page(*status))),
        Outcome::Hang(_) => ("Hang".to_string(), Err(DropConnection)),
        Outcome::AfterApply(kind) => {
            let resp = match kind {
                AfterApplyKind::Http502 => bad_gateway(),
                AfterApplyKind::InternalError => {
                    let body = json!({"Response": {"Error": {"Code": codes::INTERNAL_ERROR, "Message": INTERNAL_ERROR_MESSAGE}, "RequestId": request_id}});
                    json_response(200, serde_json::to_vec(&body).unwrap_or_default(), "application/json")
                }
            };
            (kind.log_code().to_string(), Ok(resp))
        }
        Outcome::Drop(_) => ("Dropped".to_string(), Err(DropConnection)),
        Outcome::Garbage(mode, size, v) => {
            let real = ok_body(v);
            let resp = match mode {
                GarbageMode::Huge => {
                    let mut v = v.clone();
                    if let Some(o) = v.as_object_mut() {
                        o.insert("RequestId".into(), Value::String(request_id.clone()));
                        o.insert("Padding".into(), Value::String("x".repeat(*size)));
                    }
                    json_response(
                        200,
                        serde_json::to_vec(&json!({"Response": v})).unwrap_or_default(),
                        "application/json",
                    )
                }
                GarbageMode::Truncated => json_response(200, real[..real.len() / 2].to_vec(), "application/json"),
                GarbageMode::WrongShape => {
                    json_response(200, br#"{"Response": "garbage"}"#.to_vec(), "application/json")
                }
                GarbageMode::Empty => json_response(200, Vec::new(), "application/json"),
                GarbageMode::Html => {
                    json_response(200, b"<html><body>Service Unavailable</body></html>".to_vec(), "text/html")
                }
            };
            ("Garbage".to_string(), Ok(resp))
        }
    };
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let lb = params.get("LoadBalancerId").and_then(|v| v.as_str()).unwrap_or("-").to_string();
    tracing::info!(target: "clb_emulator", "{} {} lb={} code={} request_id={} {}ms",
        parts.method, if action.is_empty() { "-" } else { &action }, lb, code, request_id, elapsed_ms);
    let (secret_id, temporary) = signer.map_or((None, false), |(id, temporary)| (Some(id), temporary));
    shared.lock().calls.push(crate::CallRecord {
        seq: 0,
        service: if is_sts { "sts" } else { "clb" }.into(),
        mutating: !is_sts && schema::is_mutating(&action),
        action: action.clone(),
        params: if is_sts { sts::loggable_params(&params) } else { params },
        secret_id,
        temporary,
        code,
        request_id: request_id.clone(),
        elapsed_ms,
        at_us: u64::try_from(at.duration_since(shared.origin).as_micros()).unwrap_or(u64::MAX),
    });
    if let Outcome::Drop(hold) | Outcome::Hang(hold) = outcome
        && hold > 0
    {
        tokio::time::sleep(Duration::from_millis(hold)).await;
    }
    result
}

/// The STS fault of a call, and the latency to add before handling it: the CLB latency fault, or a
/// slow STS fault.
fn fault_and_latency(shared: &Shared, is_sts: bool) -> (Option<CredentialOutcome>, u64) {
    let mut g = shared.lock();
    if !is_sts {
        return (None, g.engine.latency_ms());
    }
    let fault = g.engine.sts();
    (fault, if let Some(CredentialOutcome::Slow(ms)) = fault { ms } else { 0 })
}

/// The SecretId a CLB request's `Authorization` names, and whether it is a temporary credential.
fn signer(shared: &Shared, header: &dyn Fn(&str) -> Option<String>) -> Option<(String, bool)> {
    let id = sign::parse_authorization(&header("authorization")?).ok()?.secret_id;
    let g = shared.lock();
    let temporary = g.issued.get(&id).is_some()
        || g.world.effective_credentials().iter().any(|c| c.secret_id == id && c.token.is_some());
    Some((id, temporary))
}

/// Method, path and content type, as every `POST /` API call must have them.
fn check_transport(parts: &Parts) -> Result<(), ApiError> {
    if parts.method != hyper::Method::POST || parts.uri.path() != "/" {
        return Err(ApiError::new(
            codes::UNSUPPORTED_PROTOCOL,
            "The emulator supports only POST / with a JSON body (TC3-HMAC-SHA256).",
        ));
    }
    let ct = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !ct.to_ascii_lowercase().starts_with("application/json") {
        return Err(ApiError::new(
            codes::UNSUPPORTED_PROTOCOL,
            format!("Content-Type `{ct}` is not supported; use application/json."),
        ));
    }
    Ok(())
}

/// An STS call: faults, protocol, rate limit, then the request itself; a grant issues credentials.
fn sts_outcome(
    shared: &Shared,
    parts: &Parts,
    fault: Option<CredentialOutcome>,
    action: &str,
    params: &Value,
    request_id: &str,
) -> Outcome {
    match fault {
        Some(CredentialOutcome::Hang(ms)) => return Outcome::Hang(ms),
        Some(CredentialOutcome::HttpError(status)) => return Outcome::HttpError(status),
        Some(CredentialOutcome::Error) => {
            return Outcome::Err(ApiError::new(codes::STS_SYSTEM_ERROR, "An internal error has occurred (injected)."));
        }
        Some(CredentialOutcome::RequestLimitExceeded) => {
            return Outcome::Err(ApiError::new(codes::REQUEST_LIMIT_EXCEEDED, "Request limit exceeded (injected)."));
        }
        Some(CredentialOutcome::Slow(_)) | None => {}
    }
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    if let Err(e) = check_transport(parts) {
        return Outcome::Err(e);
    }
    match header("x-tc-version") {
        Some(v) if v == sts::STS_VERSION => {}
        Some(v) => {
            return Outcome::Err(ApiError::new(
                codes::NO_SUCH_VERSION,
                format!("The STS API version `{v}` does not exist."),
            ));
        }
        None => {
            return Outcome::Err(ApiError::new(
                codes::MISSING_PARAMETER,
                "The request is missing a required parameter `Version`.",
            ));
        }
    }
    if action != sts::ACTION {
        return Outcome::Err(ApiError::new(
            codes::INVALID_ACTION,
            format!("The STS action `{action}` is invalid or not supported by the emulator (only {}).", sts::ACTION),
        ));
    }
    if header("x-tc-region").is_none_or(|r| r.trim().is_empty()) {
        return Outcome::Err(ApiError::new(
            codes::MISSING_PARAMETER,
            "The request is missing a required parameter `Region`.",
        ));
    }
    let now_ms = shared.now_unix_ms();
    let tokio_now = shared.clock.now();
    let limit = shared.rate_limit.load(std::sync::atomic::Ordering::Relaxed);
    let mut g = shared.lock();
    if g.engine.rate_limited(action, limit, tokio_now) {
        return Outcome::Err(ApiError::new(
            codes::REQUEST_LIMIT_EXCEEDED,
            format!("More than {limit} requests in a second."),
        ));
    }
    match sts::check(&g.sts, params, now_ms.div_euclid(1000)) {
        Err(e) => Outcome::Err(e),
        Ok(grant) => {
            let via = crate::IssuedVia::Sts {
                role_arn: grant.role_arn,
                session_name: grant.session_name,
                subject: grant.subject,
                request_id: request_id.to_string(),
            };
            Outcome::Ok(sts::response(&g.issued.issue(via, now_ms, grant.lifetime_ms)))
        }
    }
}

/// Verifies a CLB call's signature against the configured keys and the temporary credentials issued;
/// a temporary one must also carry its token and not have expired.
fn authenticate(
    shared: &Shared,
    parts: &Parts,
    header: &dyn Fn(&str) -> Option<String>,
    body: &Bytes,
) -> Result<(), ApiError> {
    let claimed = header("authorization").and_then(|a| sign::parse_authorization(&a).ok()).map(|a| a.secret_id);
    let (mut creds, issued) = {
        let g = shared.lock();
        (g.world.effective_credentials(), claimed.and_then(|id| g.issued.get(&id).cloned()))
    };
    creds.extend(issued.iter().map(|c| c.as_credential()));
    let query = parts.uri.query().unwrap_or("");
    let received = sign::Received { method: "POST", path: "/", query, header, body };
    sign::verify(&received, &creds, shared.now_unix())?;
    match issued {
        Some(c) if c.expired_at(shared.now_unix_ms()) => Err(ApiError::new(
            codes::TOKEN_FAILURE,
            format!(
                "The temporary credential {} expired at {} ({}); get new credentials from STS or the metadata service.",
                c.secret_id,
                c.expiration(),
                c.expired_time()
            ),
        )),
        _ => Ok(()),
    }
}

fn process(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: &Bytes,
    action: &str,
    params: &Value,
    request_id: &str,
) -> Outcome {
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).map(|s| s.to_string());
    if let Err(e) = check_transport(parts) {
        return Outcome::Err(e);
    }
    if let Err(e) = authenticate(shared, parts, &header, body) {
        return Outcome::Err(e);
    }
    let now = shared.now_unix();
    if action.is_empty() {
        return Outcome::Err(ApiError::new(
            codes::MISSING_PARAMETER,
            "The request is missing a required parameter `Action`.",
        ));
    }
    match header("x-tc-version") {
        None => {
            return Outcome::Err(ApiError::new(
                codes::MISSING_PARAMETER,
                "The request is missing a required parameter `Version`.",
            ));
        }
        Some(v) if v != API_VERSION => {
            return Outcome::Err(ApiError::new(
                codes::NO_SUCH_VERSION,
                format!("The API version `{v}` does not exist."),
            ));
        }
        _ => {}
    }
    let Some(schema) = schema::action(action) else {
        return Outcome::Err(ApiError::new(
            codes::INVALID_ACTION,
            format!("The action `{action}` is invalid or not supported by the emulator."),
        ));
    };
    if header("x-tc-region").is_none_or(|r| r.trim().is_empty()) {
        return Outcome::Err(ApiError::new(
            codes::MISSING_PARAMETER,
            "The request is missing a required parameter `Region`.",
        ));
    }
    let tokio_now = shared.clock.now();
    let mut g = shared.lock();
    let inner = &mut *g;
    let limit = shared.rate_limit.load(std::sync::atomic::Ordering::Relaxed);
    if inner.engine.rate_limited(action, limit, tokio_now) {
        return Outcome::Err(ApiError::new(
            codes::REQUEST_LIMIT_EXCEEDED,
            format!(
                "Your current request times equals to `{}` in a second, which exceeds the frequency limit `{}` for a second. Please reduce the frequency of calls.",
                limit + 1,
                limit
            ),
        ));
    }
    match inner.engine.error(action) {
        Some(ErrorKind::InternalError) => {
            return Outcome::Err(ApiError::new(codes::INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE));
        }
        Some(ErrorKind::RequestLimitExceeded) => {
            return Outcome::Err(ApiError::new(codes::REQUEST_LIMIT_EXCEEDED, "Request limit exceeded (injected)."));
        }
        Some(ErrorKind::Http502) => return Outcome::Http502,
        None => {}
    }
    if params.is_null() {
        return Outcome::Err(ApiError::new(codes::FORMAT_ERROR, "The request body is not a valid JSON object."));
    }
    if let Err(e) = schema::validate(schema, params) {
        return Outcome::Err(e);
    }
    let ctx = actions::Ctx {
        request_id,
        action,
        wall: now,
        now: tokio_now,
        quota: shared.backend_quota.load(std::sync::atomic::Ordering::Relaxed),
        task_delay_ms: shared.task_delay_ms.load(std::sync::atomic::Ordering::Relaxed),
    };
    inner.tasks.settle(&mut inner.world, tokio_now, now);
    match actions::run(inner, &ctx, params) {
        Err(e) => Outcome::Err(e),
        Ok(v) => {
            if schema.mutating
                && let Some(hold) = inner.engine.drop_after_apply(action)
            {
                return Outcome::Drop(hold);
            }
            if schema.mutating
                && let Some(kind) = inner.engine.error_after_apply(action)
            {
                return Outcome::AfterApply(kind);
            }
            match inner.engine.garbage(action) {
                Some((mode, size)) => Outcome::Garbage(mode, size, v),
                None => Outcome::Ok(v),
            }
        }
    }
}
