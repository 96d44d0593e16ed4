//! Source 4: the CVM instance role, from the metadata service (`…/cam/security-credentials/` names the role,
//! `…/cam/security-credentials/<role>` gives its temporary credentials). Used only when chosen (`--credentials
//! cvm-role`; the module doc of [`super`] says why). Connections give up after [`CONNECT_TIMEOUT`], so a machine
//! that is not a CVM instance gets a clear error at once, and a service that hangs one after [`REQUEST_TIMEOUT`].

use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::refresh::Issued;
use super::{Credentials, Error, SecretKey, SessionToken};
use crate::clb::http as api;
use crate::model::printable;

/// The metadata service's base URL unless `--metadata-endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "http://metadata.tencentyun.com/latest/meta-data/";
const ROLES: &str = "cam/security-credentials/";
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The metadata service and the role it named.
pub struct CvmRole {
    base: reqwest::Url,
    http: reqwest::Client,
    role: Mutex<Option<String>>,
}

impl CvmRole {
    /// Checks the base URL: https anywhere, plain http only to the metadata service's own host, a link-local
    /// address or loopback (the metadata service itself speaks only http).
    pub fn new(endpoint: Option<&str>) -> Result<CvmRole, Error> {
        let text = endpoint.unwrap_or(DEFAULT_ENDPOINT);
        let bad = |why: &str| Error::Config(format!("--metadata-endpoint `{text}` {why}"));
        let mut base = reqwest::Url::parse(text).map_err(|e| bad(&format!("is not a URL: {e}")))?;
        let host = base.host_str().ok_or_else(|| bad("has no host"))?.to_owned();
        if !base.username().is_empty() || base.password().is_some() || base.query().is_some() {
            return Err(bad("must be scheme://host[:port]/path/ without user or query"));
        }
        match base.scheme() {
            "https" => {}
            "http" if plain_http_allowed(&host) => {}
            "http" => {
                return Err(bad(
                    "uses plain http off the metadata service: only metadata.tencentyun.com, link-local and loopback \
                     addresses may (use https)",
                ));
            }
            other => return Err(bad(&format!("has scheme `{other}`, not http or https"))),
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        // Err only means a provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("clbsync/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .tls_backend_rustls()
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(CvmRole { base, http, role: Mutex::new(None) })
    }

    /// "CVM role (metadata service http://…)".
    pub fn describe(&self) -> String {
        format!("CVM instance role (metadata service {})", self.base)
    }

    fn fail(&self, reason: String) -> Error {
        Error::Metadata { url: self.base.to_string(), reason }
    }

    /// `GET path` below the base URL: the status and at most [`MAX_ANSWER_BYTES`] of the body.
    async fn get(&self, path: &str) -> Result<(u16, Vec<u8>), Error> {
        let url = self.base.join(path).map_err(|e| self.fail(format!("cannot form the URL of {path}: {e}")))?;
        let response = self.http.get(url).send().await.map_err(|e| self.fail(transport(&e)))?;
        let status = response.status().as_u16();
        let body = super::read_answer(response, MAX_ANSWER_BYTES).await.map_err(|r| self.fail(r))?;
        Ok((status, body))
    }

    /// The role bound to the instance, asked once.
    async fn role(&self) -> Result<String, Error> {
        if let Some(role) = self.role.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(role);
        }
        let (status, body) = self.get(ROLES).await?;
        match status {
            200 => {}
            404 => {
                return Err(self.fail(
                    "no CAM role is bound to this instance (404): bind one in the CVM console, or choose another --credentials"
                        .into(),
                ));
            }
            s => return Err(self.fail(format!("HTTP {s} for {ROLES}"))),
        }
        let name = String::from_utf8_lossy(&body).trim().to_owned();
        let valid = !name.is_empty()
            && name.len() <= 128
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
        if !valid {
            return Err(
                self.fail(format!("`{}` is not a role name", printable(&name.chars().take(64).collect::<String>())))
            );
        }
        *self.role.lock().unwrap_or_else(|p| p.into_inner()) = Some(name.clone());
        Ok(name)
    }

    /// The role's current credentials.
    pub async fn fetch(&self) -> Result<Issued, Error> {
        let role = self.role().await?;
        let (status, body) = self.get(&format!("{ROLES}{role}")).await?;
        if status != 200 {
            // The role may have been replaced: ask for its name again next time.
            *self.role.lock().unwrap_or_else(|p| p.into_inner()) = None;
            return Err(self.fail(format!("HTTP {status} for the credentials of role {role}")));
        }
        let answer: Answer = serde_json::from_slice(&body).map_err(|e| self.fail(super::unreadable(&e)))?;
        if answer.code != "Success" {
            return Err(self.fail(format!("Code {} for role {role}", printable(&answer.code))));
        }
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let valid_ms = answer.expired_time.saturating_mul(1000).saturating_sub(now_ms);
        let (Some(id), Some(key), Some(token)) = (answer.tmp_secret_id, answer.tmp_secret_key, answer.token) else {
            return Err(self.fail(format!("the answer for role {role} lacks TmpSecretId, TmpSecretKey or Token")));
        };
        if valid_ms <= 0 {
            return Err(self.fail(format!(
                "the credentials of role {role} expired already (ExpiredTime {}): check the machine clock",
                answer.expired_time
            )));
        }
        Ok(Issued {
            credentials: Credentials {
                secret_id: id,
                secret_key: SecretKey::new(key),
                token: Some(SessionToken::new(token)),
                source: format!("CVM role {role}"),
            },
            valid_for: Duration::from_millis(valid_ms as u64),
            expires_unix: answer.expired_time,
        })
    }
}

fn plain_http_allowed(host: &str) -> bool {
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
    let link_local = match ip {
        Some(IpAddr::V4(v4)) => v4.is_link_local(),
        Some(IpAddr::V6(v6)) => v6.segments()[0] & 0xffc0 == 0xfe80,
        None => false,
    };
    host.eq_ignore_ascii_case("metadata.tencentyun.com") || link_local || api::is_loopback(host)
}

fn transport(e: &reqwest::Error) -> String {
    if e.is_connect() && e.is_timeout() {
        return format!(
            "no connection within {}s: this is not a CVM instance, or the metadata service is blocked (a NetworkPolicy \
             must allow 169.254.0.23:80)",
            CONNECT_TIMEOUT.as_secs()
        );
    }
    if e.is_timeout() {
        return format!("no answer within {}s", REQUEST_TIMEOUT.as_secs());
    }
    format!("{}; is this a CVM instance?", api::describe_transport_error(e))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Answer {
    #[serde(default)]
    code: String,
    tmp_secret_id: Option<String>,
    tmp_secret_key: Option<String>,
    token: Option<String>,
    #[serde(default)]
    expired_time: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_the_metadata_service_link_local_or_loopback() {
        for ok in [DEFAULT_ENDPOINT, "http://169.254.0.23/latest/meta-data", "http://127.0.0.1:9/latest/meta-data/"] {
            assert!(CvmRole::new(Some(ok)).is_ok(), "{ok}");
        }
        let cvm = CvmRole::new(Some("http://127.0.0.1:9/latest/meta-data")).unwrap();
        assert_eq!(cvm.base.as_str(), "http://127.0.0.1:9/latest/meta-data/");
        for bad in ["http://10.0.0.1/latest/", "ftp://127.0.0.1/", "http://u:p@127.0.0.1/", "not a url"] {
            let err = CvmRole::new(Some(bad)).err().expect(bad).to_string();
            assert!(err.starts_with("--metadata-endpoint"), "{err}");
        }
    }
}
