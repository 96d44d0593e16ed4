//! TC3-HMAC-SHA256: signing (for clients and tests) and verification (for the server).
//!
//! The canonical request is rebuilt from what was actually received: method, path, query string,
//! the headers named in `SignedHeaders` (values as received, trimmed), and the SHA-256 of the exact
//! body bytes. See reference §2.

use crate::error::{ApiError, codes};
use crate::state::Credential;
use ring::{digest, hmac};

/// Maximum allowed distance between `X-TC-Timestamp` and the server clock, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

/// The three derived keys (`k_date`, `k_service`, `k_signing`) of the TC3 key chain.
pub fn derive_keys(secret_key: &str, date: &str, service: &str) -> [Vec<u8>; 3] {
    let k_date = hmac_sha256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    [k_date, k_service, k_signing]
}

/// Builds the canonical request. `headers` are `(lowercase name, value)` in `SignedHeaders` order.
pub fn canonical_request(
    method: &str,
    uri: &str,
    query: &str,
    headers: &[(String, String)],
    payload_hash: &str,
) -> String {
    let mut canonical_headers = String::new();
    for (name, value) in headers {
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(value);
        canonical_headers.push('\n');
    }
    let signed: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    format!("{method}\n{uri}\n{query}\n{canonical_headers}\n{}\n{payload_hash}", signed.join(";"))
}

/// Builds the string to sign from the timestamp, credential scope and canonical request.
pub fn string_to_sign(timestamp: i64, scope: &str, canonical_request: &str) -> String {
    format!("TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Lowercase hex signature of `string_to_sign`.
pub fn signature(secret_key: &str, date: &str, service: &str, string_to_sign: &str) -> String {
    let [_, _, k_signing] = derive_keys(secret_key, date, service);
    hex(&hmac_sha256(&k_signing, string_to_sign.as_bytes()))
}

/// Computes the `Authorization` header the official SDKs send for a JSON POST to `/`
/// (signed headers `content-type;host`). Useful for tests and hand-built requests.
pub fn authorization(
    secret_id: &str,
    secret_key: &str,
    service: &str,
    host: &str,
    content_type: &str,
    timestamp: i64,
    payload: &[u8],
) -> String {
    let date = crate::time::utc_date(timestamp);
    let headers = vec![("content-type".to_string(), content_type.to_string()), ("host".to_string(), host.to_string())];
    let creq = canonical_request("POST", "/", "", &headers, &sha256_hex(payload));
    let scope = format!("{date}/{service}/tc3_request");
    let sts = string_to_sign(timestamp, &scope, &creq);
    let sig = signature(secret_key, &date, service, &sts);
    format!("TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, Signature={sig}")
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedAuthorization {
    /// SecretId from the credential.
    pub secret_id: String,
    /// Date of the credential scope (`YYYY-MM-DD`).
    pub date: String,
    /// Service of the credential scope (`clb`).
    pub service: String,
    /// Signed header names, lowercase, in the order given.
    pub signed_headers: Vec<String>,
    /// Hex signature.
    pub signature: String,
}

/// Parses `TC3-HMAC-SHA256 Credential=ID/DATE/SERVICE/tc3_request, SignedHeaders=a;b, Signature=hex`.
pub fn parse_authorization(value: &str) -> Result<ParsedAuthorization, ApiError> {
    let bad =
        |why: &str| ApiError::new(codes::INVALID_AUTHORIZATION, format!("Authorization header is invalid: {why}."));
    let rest = value.strip_prefix("TC3-HMAC-SHA256 ").ok_or_else(|| bad("algorithm must be TC3-HMAC-SHA256"))?;
    let (mut credential, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            sig = Some(v);
        } else {
            return Err(bad("unexpected component"));
        }
    }
    let credential = credential.ok_or_else(|| bad("missing Credential"))?;
    let signed = signed.ok_or_else(|| bad("missing SignedHeaders"))?;
    let sig = sig.ok_or_else(|| bad("missing Signature"))?;
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 4 || parts[3] != "tc3_request" || parts[0].is_empty() {
        return Err(bad("Credential must be SecretId/Date/Service/tc3_request"));
    }
    let signed_headers: Vec<String> = signed.split(';').map(|s| s.trim().to_ascii_lowercase()).collect();
    if signed_headers.iter().any(|h| h.is_empty()) {
        return Err(bad("empty header name in SignedHeaders"));
    }
    Ok(ParsedAuthorization {
        secret_id: parts[0].to_string(),
        date: parts[1].to_string(),
        service: parts[2].to_string(),
        signed_headers,
        signature: sig.to_string(),
    })
}

/// What the server received, as needed for verification.
pub struct Received<'a> {
    /// HTTP method (`POST`).
    pub method: &'a str,
    /// Request path (`/`).
    pub path: &'a str,
    /// Raw query string ("" when none).
    pub query: &'a str,
    /// Header lookup by lowercase name (first value).
    pub header: &'a dyn Fn(&str) -> Option<String>,
    /// Exact body bytes.
    pub body: &'a [u8],
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Verifies a request's TC3 signature against `credentials` at server time `now` (Unix seconds).
/// Returns the SecretId on success.
pub fn verify(req: &Received<'_>, credentials: &[Credential], now: i64) -> Result<String, ApiError> {
    let auth_value = (req.header)("authorization").ok_or_else(|| {
        ApiError::new(codes::MISSING_PARAMETER, "The request is missing a required parameter `Authorization`.")
    })?;
    let auth = parse_authorization(&auth_value)?;
    let ts_value = (req.header)("x-tc-timestamp").ok_or_else(|| {
        ApiError::new(codes::MISSING_PARAMETER, "The request is missing a required parameter `Timestamp`.")
    })?;
    let ts: i64 = ts_value.trim().parse().map_err(|_| {
        ApiError::new(codes::FORMAT_ERROR, format!("The parameter `Timestamp` is not a valid integer: `{ts_value}`."))
    })?;
    if (now - ts).abs() > MAX_SKEW_SECS {
        return Err(ApiError::new(
            codes::SIGNATURE_EXPIRE,
            format!(
                "Signature expired. Timestamp {ts} is more than {MAX_SKEW_SECS} seconds away from the server time {now}."
            ),
        ));
    }
    let cred = credentials.iter().find(|c| c.secret_id == auth.secret_id).ok_or_else(|| {
        ApiError::new(
            codes::SECRET_ID_NOT_FOUND,
            "The SecretId is not found, please ensure that your SecretId is correct.",
        )
    })?;
    let sig_fail = |why: String| {
        ApiError::new(codes::SIGNATURE_FAILURE, format!("The provided credentials could not be validated: {why}"))
    };
    let expected_date = crate::time::utc_date(ts);
    if auth.date != expected_date {
        return Err(sig_fail(format!(
            "credential scope date {} does not match the UTC date {expected_date} of X-TC-Timestamp.",
            auth.date
        )));
    }
    if auth.service != "clb" {
        return Err(sig_fail(format!("credential scope service `{}` is not `clb`.", auth.service)));
    }
    for required in ["content-type", "host"] {
        if !auth.signed_headers.iter().any(|h| h == required) {
            return Err(sig_fail(format!("SignedHeaders must include {required}.")));
        }
    }
    let mut headers = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let value = (req.header)(name).ok_or_else(|| sig_fail(format!("signed header `{name}` was not sent.")))?;
        headers.push((name.clone(), value.trim().to_string()));
    }
    let payload_hash = match (req.header)("x-tc-content-sha256") {
        Some(v) if v == "UNSIGNED-PAYLOAD" => sha256_hex(b"UNSIGNED-PAYLOAD"),
        _ => sha256_hex(req.body),
    };
    let creq = canonical_request(req.method, req.path, req.query, &headers, &payload_hash);
    let scope = format!("{}/{}/tc3_request", auth.date, auth.service);
    let sts = string_to_sign(ts, &scope, &creq);
    let expected = signature(&cred.secret_key, &auth.date, &auth.service, &sts);
    if !constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()) {
        return Err(sig_fail("signature mismatch. Please check your SecretKey and the signing method.".into()));
    }
    if let Some(token) = &cred.token {
        let sent = (req.header)("x-tc-token").unwrap_or_default();
        if !constant_time_eq(sent.as_bytes(), token.as_bytes()) {
            return Err(ApiError::new(codes::TOKEN_FAILURE, "The session token is invalid or missing (X-TC-Token)."));
        }
    }
    Ok(cred.secret_id.clone())
}
