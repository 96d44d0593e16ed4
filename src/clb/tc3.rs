//! TC3-HMAC-SHA256 request signing, as the official Tencent Cloud SDKs do it: pure functions, one per step, with
//! the timestamp passed in (only `http.rs` reads the clock).
//!
//! ```text
//! body ─► hashed_payload ─► canonical_request ─► string_to_sign ─┐
//!                    secret key ─► signing_key (date, service) ───┴─► signature ─► authorization
//! ```
//!
//! The credentials it signs with come from [`super::credentials`].

use std::fmt;

use ring::{digest, hmac};

use super::credentials::{Credentials, SecretKey};

/// The signature algorithm name, first word of the `Authorization` header and of the string to sign.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The headers clbsync signs, as the official SDKs do.
pub const SIGNED_HEADERS: &str = "content-type;host";

/// What is signed about one request. Only `content-type` and `host` are signed; the other `X-TC-*` headers are not.
#[derive(Clone, Debug)]
pub struct Signable<'a> {
    /// Credential-scope service: `clb` (the documentation vector uses `cvm`).
    pub service: &'a str,
    pub method: &'a str,
    pub canonical_uri: &'a str,
    pub canonical_query: &'a str,
    /// Exactly the `Content-Type` header value sent.
    pub content_type: &'a str,
    /// Exactly the `Host` header value sent, `host[:port]`.
    pub host: &'a str,
    /// Exactly the body bytes sent.
    pub payload: &'a [u8],
}

impl<'a> Signable<'a> {
    /// A CLB `POST /` with a JSON body, what clbsync sends.
    pub fn clb_post(host: &'a str, payload: &'a [u8]) -> Self {
        Signable {
            service: "clb",
            method: "POST",
            canonical_uri: "/",
            canonical_query: "",
            content_type: "application/json",
            host,
            payload,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    tag.as_ref().try_into().expect("HMAC-SHA256 tags are 32 bytes")
}

/// The UTC calendar date of `timestamp`, `YYYY-MM-DD` (never local time).
pub fn utc_date(timestamp: i64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(timestamp).expect("a clock reading lies within years ±9999");
    let format = time::macros::format_description!("[year]-[month]-[day]");
    at.format(&format).expect("formatting a date into a String cannot fail")
}

/// Step 2: lowercase hex SHA-256 of the exact body bytes.
pub fn hashed_payload(payload: &[u8]) -> String {
    sha256_hex(payload)
}

/// Step 3: the canonical request (six lines; empty query string and a blank line after the headers).
pub fn canonical_request(req: &Signable<'_>) -> String {
    format!(
        "{}\n{}\n{}\ncontent-type:{}\nhost:{}\n\n{}\n{}",
        req.method,
        req.canonical_uri,
        req.canonical_query,
        req.content_type,
        req.host,
        SIGNED_HEADERS,
        hashed_payload(req.payload)
    )
}

/// Step 4: `<date>/<service>/tc3_request`.
pub fn credential_scope(date: &str, service: &str) -> String {
    format!("{date}/{service}/tc3_request")
}

/// Step 5: the string to sign.
pub fn string_to_sign(timestamp: i64, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{timestamp}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The derived keys `k_date`, `k_service` and `k_signing` of step 6.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyChain {
    pub k_date: [u8; 32],
    pub k_service: [u8; 32],
    pub k_signing: [u8; 32],
}

impl fmt::Debug for KeyChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyChain(<redacted>)")
    }
}

/// Step 6: `HMAC("TC3" + key, date)` → `HMAC(·, service)` → `HMAC(·, "tc3_request")`.
pub fn key_chain(secret_key: &SecretKey, date: &str, service: &str) -> KeyChain {
    let k_date = hmac_sha256(format!("TC3{}", secret_key.expose()).as_bytes(), date.as_bytes());
    let k_service = hmac_sha256(&k_date, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"tc3_request");
    KeyChain { k_date, k_service, k_signing }
}

/// Step 7: lowercase hex `HMAC(k_signing, string_to_sign)`.
pub fn signature(k_signing: &[u8; 32], string_to_sign: &str) -> String {
    hex(&hmac_sha256(k_signing, string_to_sign.as_bytes()))
}

/// Step 8: the `Authorization` header value.
pub fn authorization_header(secret_id: &str, scope: &str, signature: &str) -> String {
    format!("{ALGORITHM} Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}")
}

/// All steps: the `Authorization` header for `req` signed at `timestamp` (Unix seconds, sent as `X-TC-Timestamp`).
pub fn authorization(req: &Signable<'_>, creds: &Credentials, timestamp: i64) -> String {
    let date = utc_date(timestamp);
    let scope = credential_scope(&date, req.service);
    let sts = string_to_sign(timestamp, &scope, &canonical_request(req));
    let keys = key_chain(&creds.secret_key, &date, req.service);
    authorization_header(&creds.secret_id, &scope, &signature(&keys.k_signing, &sts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tc3-vectors.json");

    fn vectors() -> Vec<Value> {
        let text = std::fs::read_to_string(VECTORS)
            .unwrap_or_else(|e| panic!("cannot read the TC3 signing vectors at {VECTORS}: {e}"));
        let parsed: Value = serde_json::from_str(&text).expect("tc3-vectors.json is a JSON array");
        let list = parsed.as_array().expect("tc3-vectors.json is a JSON array").clone();
        assert!(list.len() >= 7, "expected at least 7 vectors in {VECTORS}, got {}", list.len());
        list
    }

    fn s<'a>(v: &'a Value, key: &str) -> &'a str {
        v[key].as_str().unwrap_or_else(|| panic!("vector field {key} is not a string"))
    }

    #[test]
    fn every_vector_signs_step_by_step() {
        for v in vectors() {
            let name = s(&v, "name");
            let (i, e) = (&v["inputs"], &v["expected"]);
            let ts = i["timestamp"].as_i64().expect("timestamp is an integer");
            let req = Signable {
                service: s(i, "service"),
                method: s(i, "method"),
                canonical_uri: s(i, "canonical_uri"),
                canonical_query: s(i, "canonical_query_string"),
                content_type: s(i, "content_type"),
                host: s(i, "host"),
                payload: s(i, "payload").as_bytes(),
            };
            let creds = Credentials::new(s(i, "secret_id"), s(i, "secret_key"), i["token"].as_str().map(String::from));

            assert_eq!(hashed_payload(req.payload), s(e, "hashed_payload"), "{name}: hashed payload");
            let canonical = canonical_request(&req);
            assert_eq!(canonical, s(e, "canonical_request"), "{name}: canonical request");
            let date = utc_date(ts);
            assert_eq!(date, s(e, "date"), "{name}: date");
            let scope = credential_scope(&date, req.service);
            assert_eq!(scope, s(e, "credential_scope"), "{name}: credential scope");
            let sts = string_to_sign(ts, &scope, &canonical);
            assert_eq!(sts, s(e, "string_to_sign"), "{name}: string to sign");
            let keys = key_chain(&creds.secret_key, &date, req.service);
            assert_eq!(hex(&keys.k_date), s(e, "secret_date_hex"), "{name}: k_date");
            assert_eq!(hex(&keys.k_service), s(e, "secret_service_hex"), "{name}: k_service");
            assert_eq!(hex(&keys.k_signing), s(e, "secret_signing_hex"), "{name}: k_signing");
            let sig = signature(&keys.k_signing, &sts);
            assert_eq!(sig, s(e, "signature"), "{name}: signature");
            assert_eq!(authorization_header(&creds.secret_id, &scope, &sig), s(e, "authorization"), "{name}: header");
            assert_eq!(authorization(&req, &creds, ts), s(e, "authorization"), "{name}: one-call authorization");
            assert_eq!(s(&e["headers"], "Authorization"), s(e, "authorization"), "{name}: header set");
        }
    }

    #[test]
    fn date_is_utc_not_local() {
        // 1551113065 is 2019-02-25 16:44:25 UTC, already 2019-02-26 in UTC+8.
        assert_eq!(utc_date(1551113065), "2019-02-25");
        assert_eq!(utc_date(0), "1970-01-01");
    }
}
