//! STS `AssumeRoleWithWebIdentity` (version 2018-08-13), served on the emulator's port: it trades a
//! web-identity token (a Kubernetes projected service-account token) for temporary credentials.
//!
//! Like the real service the request is not signed (`Authorization: SKIP`, as the official SDKs send
//! it; the header is not checked). The token is verified for real against the configured identity
//! provider's JWKS (see `jwt.rs`), then its issuer and audience, then the role's trust (provider and
//! allowed subjects). Error codes: see README "STS".

use crate::error::{ApiError, codes};
use crate::issued::IssuedCredential;
use crate::jwt::{self, Jwks};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// API version of STS.
pub const STS_VERSION: &str = "2018-08-13";
/// The one STS action emulated.
pub const ACTION: &str = "AssumeRoleWithWebIdentity";
/// `DurationSeconds` when the request has none (STS API docs).
pub const DEFAULT_DURATION_SECS: u64 = 7200;
/// Largest `DurationSeconds` STS accepts (STS API docs).
pub const MAX_DURATION_SECS: u64 = 43_200;

/// What STS trusts and what it issues. The default trusts nobody: every call is refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StsConfig {
    /// OIDC identity providers (CAM's "identity providers"), by `ProviderId`.
    pub providers: Vec<OidcProvider>,
    /// Roles that can be assumed with a web identity.
    pub roles: Vec<OidcRole>,
    /// Lifetime of the issued credentials in ms, whatever `DurationSeconds` asks (tests use a few
    /// seconds). `None`: `DurationSeconds` (default 7200 s), as the real STS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifetime_ms: Option<u64>,
}

/// An OIDC identity provider: whose tokens, for which audience, signed with which keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProvider {
    /// `ProviderId` of the request.
    pub id: String,
    /// Required `iss` (a Kubernetes API server's `--service-account-issuer`).
    pub issuer: String,
    /// Accepted audiences (CAM's "client IDs"): the token's `aud` must hold one of them.
    pub audiences: Vec<String>,
    /// The provider's signing keys (a Kubernetes API server serves them at `/openid/v1/jwks`).
    pub jwks: Jwks,
}

/// A role and its trust policy: tokens of `provider_id` whose `sub` is listed may assume it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcRole {
    /// `RoleArn`, e.g. `qcs::cam::uin/100000000001:roleName/clbsync`.
    pub arn: String,
    /// The identity provider the role trusts.
    pub provider_id: String,
    /// Allowed subjects (`system:serviceaccount:<namespace>:<name>`); empty: any subject.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<String>,
}

/// A request STS accepted: what to issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub role_arn: String,
    pub session_name: String,
    pub subject: String,
    pub lifetime_ms: u64,
}

/// True for a request meant for STS rather than CLB: its version is STS's, or its action is the
/// STS action (one port serves both; the SDKs' `Host` is whatever endpoint they were given).
pub(crate) fn is_sts_request(action: &str, version: Option<&str>) -> bool {
    version == Some(STS_VERSION) || action == ACTION
}

const PARAMS: &[&str] = &["ProviderId", "WebIdentityToken", "RoleArn", "RoleSessionName", "DurationSeconds"];

fn param_error(msg: impl Into<String>) -> ApiError {
    ApiError::new(codes::PARAM_ERROR, msg)
}

fn required<'a>(p: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    match p.get(name) {
        None | Some(Value::Null) => Err(ApiError::new(
            codes::MISSING_PARAMETER,
            format!("The request is missing a required parameter `{name}`."),
        )),
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(param_error(format!("The parameter `{name}` must be a non-empty string."))),
    }
}

/// `DurationSeconds`: an integer (or, as in the API docs' example, a string of digits), 1..=43200.
fn duration_secs(p: &Value) -> Result<u64, ApiError> {
    let bad = || param_error(format!("DurationSeconds must be an integer from 1 to {MAX_DURATION_SECS}."));
    let n = match p.get("DurationSeconds") {
        None | Some(Value::Null) => return Ok(DEFAULT_DURATION_SECS),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(bad)?,
        Some(Value::String(s)) => s.parse::<u64>().map_err(|_| bad())?,
        Some(_) => return Err(bad()),
    };
    if (1..=MAX_DURATION_SECS).contains(&n) { Ok(n) } else { Err(bad()) }
}

/// `RoleSessionName`: 2 to 128 of `[A-Za-z0-9_+=,.@-]` (the AssumeRole docs' rule).
fn check_session_name(s: &str) -> Result<(), ApiError> {
    let ok = (2..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(param_error("RoleSessionName must be 2 to 128 characters of letters, digits and _+=,.@-."))
    }
}

fn token_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(codes::WEB_IDENTITY_TOKEN_ERROR, format!("WebIdentityToken is invalid: {e}."))
}

/// Checks an `AssumeRoleWithWebIdentity` request at `now` (Unix seconds).
pub(crate) fn check(cfg: &StsConfig, p: &Value, now: i64) -> Result<Grant, ApiError> {
    let Some(obj) = p.as_object() else {
        return Err(ApiError::new(codes::FORMAT_ERROR, "The request body is not a valid JSON object."));
    };
    if let Some(unknown) = obj.keys().find(|k| !PARAMS.contains(&k.as_str())) {
        return Err(ApiError::new(codes::UNKNOWN_PARAMETER, format!("The parameter `{unknown}` is not recognized.")));
    }
    let provider_id = required(p, "ProviderId")?;
    let token = required(p, "WebIdentityToken")?;
    let role_arn = required(p, "RoleArn")?;
    let session_name = required(p, "RoleSessionName")?;
    check_session_name(session_name)?;
    let duration = duration_secs(p)?;
    let provider = cfg
        .providers
        .iter()
        .find(|x| x.id == provider_id)
        .ok_or_else(|| param_error(format!("The identity provider `{provider_id}` does not exist.")))?;
    let claims = jwt::verify(token, &provider.jwks, now).map_err(token_error)?;
    if claims.iss != provider.issuer {
        return Err(token_error(format!(
            "its issuer `{}` is not `{}`, the issuer of identity provider `{provider_id}`",
            claims.iss, provider.issuer
        )));
    }
    if !claims.aud.iter().any(|a| provider.audiences.contains(a)) {
        return Err(token_error(format!(
            "its audience {:?} holds none of {:?}, the client IDs of identity provider `{provider_id}`",
            claims.aud, provider.audiences
        )));
    }
    let role = cfg
        .roles
        .iter()
        .find(|r| r.arn == role_arn)
        .ok_or_else(|| ApiError::new(codes::ROLE_NOT_FOUND, format!("The role `{role_arn}` does not exist.")))?;
    if role.provider_id != provider_id || !(role.subjects.is_empty() || role.subjects.contains(&claims.sub)) {
        return Err(ApiError::new(
            codes::UNAUTHORIZED_OPERATION,
            format!(
                "The role `{role_arn}` does not trust subject `{}` of identity provider `{provider_id}`.",
                claims.sub
            ),
        ));
    }
    Ok(Grant {
        role_arn: role_arn.to_string(),
        session_name: session_name.to_string(),
        subject: claims.sub,
        lifetime_ms: cfg.lifetime_ms.unwrap_or(duration * 1000),
    })
}

/// The answer's fields (without `RequestId`).
pub(crate) fn response(c: &IssuedCredential) -> Value {
    json!({
        "Credentials": {"Token": c.token, "TmpSecretId": c.secret_id, "TmpSecretKey": c.secret_key},
        "ExpiredTime": c.expired_time(),
        "Expiration": c.expiration(),
    })
}

/// What the call log keeps of a web-identity token: enough to tell two tokens apart (a client must
/// send the re-read token after the kubelet rotated it), not the token.
pub fn token_fingerprint(token: &str) -> String {
    format!("sha256:{}", &crate::sign::sha256_hex(token.as_bytes())[..16])
}

/// The request parameters as logged: the token replaced by its [`token_fingerprint`].
pub(crate) fn loggable_params(p: &Value) -> Value {
    let mut p = p.clone();
    if let Some(t) = p.get("WebIdentityToken").and_then(Value::as_str).map(token_fingerprint) {
        p["WebIdentityToken"] = Value::String(t);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_before_the_token() {
        let cfg = StsConfig::default();
        let base = json!({"ProviderId": "p", "WebIdentityToken": "t", "RoleArn": "r", "RoleSessionName": "s1"});
        let code = |p: Value| check(&cfg, &p, 0).unwrap_err().code;
        assert_eq!(code(json!([])), codes::FORMAT_ERROR);
        let mut p = base.clone();
        p["Policy"] = "{}".into();
        assert_eq!(code(p), codes::UNKNOWN_PARAMETER);
        for name in ["ProviderId", "WebIdentityToken", "RoleArn", "RoleSessionName"] {
            let mut p = base.clone();
            p.as_object_mut().expect("object").remove(name);
            assert_eq!(code(p.clone()), codes::MISSING_PARAMETER, "{name}");
            p[name] = 5.into();
            assert_eq!(code(p), codes::PARAM_ERROR, "{name}");
        }
        for (d, ok) in [(json!(0), false), (json!(43_201), false), (json!(-1), false), (json!("x"), false)] {
            let mut p = base.clone();
            p["DurationSeconds"] = d.clone();
            assert_eq!(duration_secs(&p).is_ok(), ok, "{d}");
        }
        assert_eq!(duration_secs(&json!({"DurationSeconds": "5000"})).ok(), Some(5000));
        assert_eq!(duration_secs(&json!({})).ok(), Some(DEFAULT_DURATION_SECS));
        let mut p = base.clone();
        p["RoleSessionName"] = "a b".into();
        assert_eq!(code(p), codes::PARAM_ERROR);
        assert_eq!(code(base), codes::PARAM_ERROR, "unknown provider");
    }

    #[test]
    fn the_log_keeps_a_fingerprint_of_the_token() {
        let p = loggable_params(&json!({"WebIdentityToken": "secret.jwt.value", "RoleArn": "r"}));
        assert_eq!(p["RoleArn"], "r");
        assert_eq!(p["WebIdentityToken"], token_fingerprint("secret.jwt.value"));
        assert!(p["WebIdentityToken"].as_str().expect("string").starts_with("sha256:"));
    }

    #[test]
    fn sts_requests_are_told_from_clb_ones() {
        assert!(is_sts_request("AssumeRoleWithWebIdentity", Some("2018-08-13")));
        assert!(is_sts_request("AssumeRoleWithWebIdentity", None));
        assert!(is_sts_request("GetCallerIdentity", Some("2018-08-13")));
        assert!(!is_sts_request("DescribeTargets", Some("2018-03-17")));
    }
}
