//! TC3-HMAC-SHA256 request signing, as the official Tencent Cloud SDKs do it: pure functions, one per step, with
//! the timestamp passed in (only `http.rs` reads the clock).
//!
//! ```text
//! body ─► hashed_payload ─► canonical_request ─► string_to_sign ─┐
//!                    secret key ─► signing_key (date, service) ───┴─► signature ─► authorization
//! ```
//!
//! Credentials come from the environment through a lookup closure ([`Credentials::from_lookup`]) so tests never
//! touch the process environment. The secret key and the session token print as `<redacted>` and have no
//! `Display`.

use std::fmt;

use ring::{digest, hmac};

/// The signature algorithm name, first word of the `Authorization` header and of the string to sign.
pub const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The headers clbsync signs, as the official SDKs do.
pub const SIGNED_HEADERS: &str = "content-type;host";

/// A secret key. Its `Debug` is redacted and it has no `Display`, so it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(key: impl Into<String>) -> Self {
        SecretKey(key.into())
    }

    /// The key itself, for the signer only.
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

/// A temporary-credential session token (`X-TC-Token`). Redacted like [`SecretKey`].
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    pub fn new(token: impl Into<String>) -> Self {
        SessionToken(token.into())
    }

    /// The token itself, to be put in the `X-TC-Token` header and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// The variables clbsync reads, in order of preference: the clbsync pair, then the names the Tencent SDKs and
/// `tccli` use.
pub const CLBSYNC_ID: &str = "CLOUD_TENCENT_SECRET_ID";
pub const CLBSYNC_KEY: &str = "CLOUD_TENCENT_SECRET_KEY";
pub const SDK_ID: &str = "TENCENTCLOUD_SECRET_ID";
pub const SDK_KEY: &str = "TENCENTCLOUD_SECRET_KEY";
pub const SDK_TOKEN: &str = "TENCENTCLOUD_SESSION_TOKEN";

/// An API key pair (plus a session token for temporary credentials) and where it came from.
#[derive(Clone)]
pub struct Credentials {
    pub secret_id: String,
    pub secret_key: SecretKey,
    pub token: Option<SessionToken>,
    /// The variable names the values were read from (never the values), for messages such as
    /// "credentials were read from CLOUD_TENCENT_SECRET_ID/CLOUD_TENCENT_SECRET_KEY".
    pub source: Vec<&'static str>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &self.secret_key)
            .field("token", &self.token)
            .field("source", &self.source)
            .finish()
    }
}

/// Why no usable credentials were found. Messages name variables, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("no Tencent Cloud credentials: read {}, all unset or empty; set a SecretId/SecretKey pair", .read.join(", "))]
    Missing { read: Vec<&'static str> },
    #[error("{set} is set but {missing} is not: set both, or neither")]
    Incomplete { set: &'static str, missing: &'static str },
    #[error("{var} has leading or trailing whitespace (often a trailing newline from `echo` into a secret): remove it")]
    Whitespace { var: &'static str },
}

impl Credentials {
    /// Credentials given directly (tests, or a caller with its own source). `source` says `explicit`.
    pub fn new(secret_id: impl Into<String>, secret_key: impl Into<String>, token: Option<String>) -> Self {
        Credentials {
            secret_id: secret_id.into(),
            secret_key: SecretKey::new(secret_key),
            token: token.map(SessionToken::new),
            source: vec!["explicit"],
        }
    }

    /// Reads credentials through `lookup` (`|name| std::env::var(name).ok()` in production):
    /// `CLOUD_TENCENT_SECRET_ID`/`CLOUD_TENCENT_SECRET_KEY` if either is set, else `TENCENTCLOUD_SECRET_ID`/
    /// `TENCENTCLOUD_SECRET_KEY` with the optional `TENCENTCLOUD_SESSION_TOKEN`. The token belongs to the SDK pair
    /// only, so a temporary token is never paired with a long-term key. Empty values count as unset; a pair is
    /// never mixed across the two naming schemes; values with surrounding whitespace are refused, not trimmed.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Credentials, CredentialsError> {
        let get = |name: &'static str| lookup(name).filter(|v| !v.is_empty());
        let pair = |id_var: &'static str, key_var: &'static str| match (get(id_var), get(key_var)) {
            (Some(id), Some(key)) => Ok(Some((id, key))),
            (Some(_), None) => Err(CredentialsError::Incomplete { set: id_var, missing: key_var }),
            (None, Some(_)) => Err(CredentialsError::Incomplete { set: key_var, missing: id_var }),
            (None, None) => Ok(None),
        };
        let (id, key, token, source) = if let Some((id, key)) = pair(CLBSYNC_ID, CLBSYNC_KEY)? {
            check_whitespace(CLBSYNC_ID, &id)?;
            check_whitespace(CLBSYNC_KEY, &key)?;
            (id, key, None, vec![CLBSYNC_ID, CLBSYNC_KEY])
        } else if let Some((id, key)) = pair(SDK_ID, SDK_KEY)? {
            check_whitespace(SDK_ID, &id)?;
            check_whitespace(SDK_KEY, &key)?;
            let token = get(SDK_TOKEN);
            let mut source = vec![SDK_ID, SDK_KEY];
            if let Some(t) = &token {
                check_whitespace(SDK_TOKEN, t)?;
                source.push(SDK_TOKEN);
            }
            (id, key, token, source)
        } else {
            return Err(CredentialsError::Missing { read: vec![CLBSYNC_ID, CLBSYNC_KEY, SDK_ID, SDK_KEY] });
        };
        Ok(Credentials { secret_id: id, secret_key: SecretKey::new(key), token: token.map(SessionToken::new), source })
    }

    /// [`Credentials::from_lookup`] over the process environment (a non-UTF-8 value counts as unset).
    pub fn from_env() -> Result<Credentials, CredentialsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// `CLOUD_TENCENT_SECRET_ID/CLOUD_TENCENT_SECRET_KEY`: where the credentials came from, for error messages.
    pub fn source_description(&self) -> String {
        self.source.join("/")
    }
}

fn check_whitespace(var: &'static str, value: &str) -> Result<(), CredentialsError> {
    if value.trim() != value {
        return Err(CredentialsError::Whitespace { var });
    }
    Ok(())
}

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

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/reference/tc3-vectors.json");

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

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Credentials::new("AKIDid", "topsecretkey", Some("sessiontok".into()));
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDid"));
        assert!(!shown.contains("topsecretkey") && !shown.contains("sessiontok"), "{shown}");
        assert_eq!(format!("{:?}", key_chain(&c.secret_key, "2019-02-25", "clb")), "KeyChain(<redacted>)");
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn clbsync_pair_wins_over_sdk_names() {
        let c = Credentials::from_lookup(env(&[
            (CLBSYNC_ID, "id1"),
            (CLBSYNC_KEY, "key1"),
            (SDK_ID, "id2"),
            (SDK_KEY, "key2"),
            (SDK_TOKEN, "tok"),
        ]))
        .unwrap();
        assert_eq!(c.secret_id, "id1");
        assert_eq!(c.secret_key, SecretKey::new("key1"));
        assert!(c.token.is_none());
        assert_eq!(c.source_description(), "CLOUD_TENCENT_SECRET_ID/CLOUD_TENCENT_SECRET_KEY");
    }

    #[test]
    fn sdk_names_are_the_fallback_with_token() {
        let c = Credentials::from_lookup(env(&[(SDK_ID, "id2"), (SDK_KEY, "key2"), (SDK_TOKEN, "tok")])).unwrap();
        assert_eq!(c.secret_id, "id2");
        assert_eq!(c.token.as_ref().map(SessionToken::expose), Some("tok"));
        assert_eq!(c.source_description(), "TENCENTCLOUD_SECRET_ID/TENCENTCLOUD_SECRET_KEY/TENCENTCLOUD_SESSION_TOKEN");
        let c = Credentials::from_lookup(env(&[(CLBSYNC_ID, ""), (SDK_ID, "id2"), (SDK_KEY, "key2")])).unwrap();
        assert_eq!(c.source, vec![SDK_ID, SDK_KEY]);
    }

    #[test]
    fn missing_credentials_name_the_variables_read() {
        let err = Credentials::from_lookup(env(&[])).unwrap_err();
        let msg = err.to_string();
        for var in [CLBSYNC_ID, CLBSYNC_KEY, SDK_ID, SDK_KEY] {
            assert!(msg.contains(var), "{msg}");
        }
    }

    #[test]
    fn half_a_pair_is_an_error_not_a_fallback() {
        let err = Credentials::from_lookup(env(&[(CLBSYNC_ID, "id1"), (SDK_ID, "id2"), (SDK_KEY, "key2")]));
        assert_eq!(err.unwrap_err(), CredentialsError::Incomplete { set: CLBSYNC_ID, missing: CLBSYNC_KEY });
    }

    #[test]
    fn whitespace_in_a_key_is_refused_without_echoing_it() {
        let err = Credentials::from_lookup(env(&[(SDK_ID, "id2"), (SDK_KEY, "secretvalue\n")])).unwrap_err();
        assert_eq!(err, CredentialsError::Whitespace { var: SDK_KEY });
        assert!(!err.to_string().contains("secretvalue"));
        let err = Credentials::from_lookup(env(&[(CLBSYNC_ID, " id"), (CLBSYNC_KEY, "k")])).unwrap_err();
        assert_eq!(err, CredentialsError::Whitespace { var: CLBSYNC_ID });
    }
}
