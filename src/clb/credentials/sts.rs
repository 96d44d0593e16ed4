//! Source 3: TKE's OIDC role, Tencent Cloud's counterpart of IAM roles for service accounts. The pod's projected
//! service-account token (audience `sts.cloud.tencent.com`, which TKE documents for its CAM OIDC provider) buys
//! temporary credentials from STS `AssumeRoleWithWebIdentity` (version 2018-08-13), sent unsigned as the SDKs send
//! it (`Authorization: SKIP`). The token file is read again for every fetch: the kubelet rotates it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde::Deserialize;

use super::refresh::Issued;
use super::{Credentials, Error, SecretKey, SessionToken, TKE_TOKEN_FILE, files};
use crate::clb::http::{self as api, ResolvedEndpoint};
use crate::model::printable;

/// STS's endpoint unless `--sts-endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "https://sts.tencentcloudapi.com";
/// The STS API version of `AssumeRoleWithWebIdentity`.
pub const VERSION: &str = "2018-08-13";
/// What clbsync asks for: STS's default and the SDKs' (refreshed at 80 %, so about every 96 minutes).
pub const DURATION_SECONDS: u64 = 7200;
/// The largest answer read: STS's is about 2 KiB.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything an `AssumeRoleWithWebIdentity` call needs but the token, which is read at each call.
pub struct Oidc {
    endpoint: ResolvedEndpoint,
    http: reqwest::Client,
    region: String,
    provider_id: String,
    token_file: PathBuf,
    role_arn: String,
    session_name: String,
}

impl Oidc {
    /// Checks the endpoint and the region and reads the token file once, so that a bad setting is an error before
    /// any network call. `hostname` (the pod's name) names the role session, for CloudAudit.
    pub fn new(
        endpoint: Option<&str>,
        region: String,
        provider_id: String,
        token_file: PathBuf,
        role_arn: String,
        hostname: Option<&str>,
    ) -> Result<Oidc, Error> {
        let text = endpoint.map_or(DEFAULT_ENDPOINT.to_owned(), |e| {
            if e.contains("://") { e.to_owned() } else { format!("https://{e}") }
        });
        let endpoint = api::parse_endpoint("--sts-endpoint", &text).map_err(Error::Config)?;
        let region_ok = region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(Error::Config(format!(
                "TKE_REGION `{}` is not a region name such as ap-guangzhou",
                printable(&region)
            )));
        }
        if !role_arn.starts_with("qcs::cam::") {
            return Err(Error::Config(format!(
                "TKE_ROLE_ARN `{}` is not a CAM role ARN such as qcs::cam::uin/100000000001:roleName/clbsync",
                printable(&role_arn)
            )));
        }
        files::read_bounded(TKE_TOKEN_FILE, &token_file)?;
        let http = api::client(&endpoint, CONNECT_TIMEOUT, REQUEST_TIMEOUT).map_err(Error::Config)?;
        Ok(Oidc { endpoint, http, region, provider_id, token_file, role_arn, session_name: session_name(hostname) })
    }

    /// "TKE OIDC role qcs::cam::uin/…:roleName/… (provider …, token file …, STS https://…)".
    pub fn describe(&self) -> String {
        format!(
            "TKE OIDC role {} (provider {}, region {}, token file {}, STS {})",
            self.role_arn,
            self.provider_id,
            self.region,
            self.token_file.display(),
            self.endpoint.url
        )
    }

    /// One `AssumeRoleWithWebIdentity` with the token file as it is now.
    pub async fn fetch(&self) -> Result<Issued, Error> {
        let fail = |reason: String| Error::Sts { endpoint: self.endpoint.url.to_string(), reason };
        let token = files::read_bounded(TKE_TOKEN_FILE, &self.token_file)?;
        let body = serde_json::json!({
            "ProviderId": self.provider_id,
            "WebIdentityToken": token,
            "RoleArn": self.role_arn,
            "RoleSessionName": self.session_name,
            "DurationSeconds": DURATION_SECONDS,
        });
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let request = self
            .http
            .post(self.endpoint.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(AUTHORIZATION, HeaderValue::from_static("SKIP"))
            .header("X-TC-Action", "AssumeRoleWithWebIdentity")
            .header("X-TC-Version", VERSION)
            .header("X-TC-Region", &self.region)
            .header("X-TC-Timestamp", now.as_secs().to_string())
            .header("X-TC-Language", "en-US")
            .body(body.to_string());
        let response = request.send().await.map_err(|e| fail(transport(&e)))?;
        let status = response.status();
        let bytes = super::read_answer(response, MAX_ANSWER_BYTES).await.map_err(fail)?;
        if status != reqwest::StatusCode::OK {
            return Err(fail(format!("HTTP {} ({} bytes); check --sts-endpoint", status.as_u16(), bytes.len())));
        }
        // The token never appears in a message, even if STS were to echo it.
        let scrub = |text: &str| printable(&text.replace(&token, "<web identity token>")).into_owned();
        let answer: Envelope = serde_json::from_slice(&bytes).map_err(|e| fail(super::unreadable(&e)))?;
        let r = answer.response;
        if let Some(e) = r.error {
            let request_id = r.request_id.unwrap_or_default();
            let hint = hint(&e.code);
            return Err(fail(format!(
                "{}: {} (RequestId {}){hint}",
                scrub(&e.code),
                scrub(&e.message),
                scrub(&request_id)
            )));
        }
        let (Some(c), Some(expired_time)) = (r.credentials, r.expired_time) else {
            return Err(fail("the answer has no Credentials or ExpiredTime".into()));
        };
        let valid_ms = expired_time.saturating_mul(1000).saturating_sub(now.as_millis() as i64);
        if valid_ms <= 0 {
            return Err(fail(format!(
                "the credentials it gave expired already (ExpiredTime {expired_time}): check the machine clock"
            )));
        }
        Ok(Issued {
            credentials: Credentials {
                secret_id: c.tmp_secret_id,
                secret_key: SecretKey::new(c.tmp_secret_key),
                token: Some(SessionToken::new(c.token)),
                source: format!("TKE OIDC role {}", self.role_arn),
            },
            valid_for: Duration::from_millis(valid_ms as u64),
            expires_unix: expired_time,
        })
    }
}

/// What to check for STS's refusals.
fn hint(code: &str) -> &'static str {
    match code {
        "InvalidParameter.WebIdentityTokenError" => {
            "; check the token's audience (the projected volume's, sts.cloud.tencent.com) and that the CAM OIDC \
             provider TKE_PROVIDER_ID trusts this cluster's service-account issuer"
        }
        "ResourceNotFound.RoleNotFound" => "; check TKE_ROLE_ARN",
        "UnauthorizedOperation" => {
            "; check the role's trust policy: its oidc:sub must be system:serviceaccount:<namespace>:<service account>"
        }
        "InvalidParameter.ParamError" => "; check TKE_PROVIDER_ID and TKE_REGION",
        _ => "",
    }
}

/// `clbsync-<pod name>` when the host name fits STS's rule (2–128 of `[A-Za-z0-9_+=,.@-]`), else `clbsync-<time>`.
fn session_name(hostname: Option<&str>) -> String {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
    match hostname.filter(|h| !h.is_empty() && h.len() <= 120 && h.chars().all(allowed)) {
        Some(h) => format!("clbsync-{h}"),
        None => {
            let ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
            format!("clbsync-{ms}")
        }
    }
}

fn transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("no answer within {}s (check the network path to STS)", REQUEST_TIMEOUT.as_secs());
    }
    api::describe_transport_error(e)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope {
    response: Answer,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    credentials: Option<TmpCredentials>,
    expired_time: Option<i64>,
    error: Option<ApiError>,
    request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TmpCredentials {
    token: String,
    tmp_secret_id: String,
    tmp_secret_key: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApiError {
    code: String,
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_name_is_the_pod_name_when_sts_allows_it() {
        assert_eq!(session_name(Some("clbsync-7d9f-x2")), "clbsync-clbsync-7d9f-x2");
        assert!(session_name(Some("has space")).starts_with("clbsync-1"));
        assert!(session_name(None).len() > 10);
    }

    #[test]
    fn a_bad_endpoint_region_or_token_file_is_refused_before_any_call() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "a.b.c").unwrap();
        let new = |endpoint: Option<&str>, region: &str, file: &std::path::Path| {
            let role = "qcs::cam::uin/1:roleName/r".to_owned();
            Oidc::new(endpoint, region.into(), "p".into(), file.to_path_buf(), role, None).map(|_| ())
        };
        assert!(new(None, "ap-guangzhou", &token).is_ok());
        assert!(new(Some("sts.internal.tencentcloudapi.com"), "ap-guangzhou", &token).is_ok());
        let err = new(Some("http://sts.example.com"), "ap-guangzhou", &token).unwrap_err().to_string();
        assert!(err.contains("--sts-endpoint") && err.contains("TLS is required"), "{err}");
        assert!(new(None, "ap/evil", &token).unwrap_err().to_string().contains("TKE_REGION"));
        let arn = Oidc::new(None, "ap-guangzhou".into(), "p".into(), token.clone(), "clbsync".into(), None);
        assert!(arn.err().unwrap().to_string().starts_with("TKE_ROLE_ARN `clbsync` is not a CAM role ARN"));
        let err = new(None, "ap-guangzhou", &dir.path().join("gone")).unwrap_err().to_string();
        assert!(err.starts_with("TKE_WEB_IDENTITY_TOKEN_FILE ") && err.ends_with("does not exist"), "{err}");
    }
}
