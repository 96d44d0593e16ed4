//! Tencent Cloud API credentials: which source they come from, and keeping them valid while clbsync runs.
//!
//! `--credentials auto` (the default) uses the first source that is configured, in this order; a source that is
//! configured (or chosen) but incomplete is an error naming what is missing, before any network call:
//!
//! ```text
//! env        CLOUD_TENCENT_SECRET_ID/_KEY, else TENCENTCLOUD_SECRET_ID/_KEY[/_SESSION_TOKEN]       [env]
//! file       the same names with _FILE (a mounted Secret), re-read when they change; else the SDK's
//!            profile file (~/.tencentcloud/credentials, /etc/tencentcloud/credentials)             [files]
//! tke-oidc   TKE_REGION, TKE_PROVIDER_ID, TKE_WEB_IDENTITY_TOKEN_FILE, TKE_ROLE_ARN → STS          [sts]
//! cvm-role   the CVM metadata service's instance role, only when chosen                            [metadata]
//! ```
//!
//! The CVM role is never tried by `auto`, unlike the SDKs' default chain: on a TKE node every pod can reach the
//! metadata service, so a pod whose Secret was forgotten would silently act with the node's role, which every
//! workload on the node shares, instead of failing with an error that names the missing Secret; and on a
//! machine that is not a CVM instance the error would come only after a timeout.
//!
//! Temporary credentials (TKE OIDC, CVM role) are refreshed ahead of their expiry by [`refresh`], once for all
//! the calls in flight. A [`Provider`] is what the CLB client asks before each request.
//!
//! The secret key, the session token and the web-identity token print as `<redacted>` and have no `Display`; no
//! error of this module carries a secret or echoes a file's contents.

pub mod env;
pub mod files;
pub mod metadata;
mod provider;
pub mod refresh;
pub mod sts;

use std::fmt;

pub use provider::{Provider, Stats};

/// A secret key. Its `Debug` is redacted and it has no `Display`, so it cannot end up in a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(key: impl Into<String>) -> Self {
        SecretKey(key.into())
    }

    /// The key itself, for the signer only.
    pub(crate) fn expose(&self) -> &str {
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
/// The same, naming files that hold the values (a mounted Secret).
pub const CLBSYNC_ID_FILE: &str = "CLOUD_TENCENT_SECRET_ID_FILE";
pub const CLBSYNC_KEY_FILE: &str = "CLOUD_TENCENT_SECRET_KEY_FILE";
pub const SDK_ID_FILE: &str = "TENCENTCLOUD_SECRET_ID_FILE";
pub const SDK_KEY_FILE: &str = "TENCENTCLOUD_SECRET_KEY_FILE";
pub const SDK_TOKEN_FILE: &str = "TENCENTCLOUD_SESSION_TOKEN_FILE";
/// TKE's OIDC role (what TKE's pod-identity webhook injects, and what the SDKs read).
pub const TKE_REGION: &str = "TKE_REGION";
pub const TKE_PROVIDER_ID: &str = "TKE_PROVIDER_ID";
pub const TKE_TOKEN_FILE: &str = "TKE_WEB_IDENTITY_TOKEN_FILE";
pub const TKE_ROLE_ARN: &str = "TKE_ROLE_ARN";
/// Every variable that holds a secret or says where one is, for what must not inherit them (kubeconfig
/// credential plugins).
pub const VARIABLES: [&str; 14] = [
    CLBSYNC_ID,
    CLBSYNC_KEY,
    SDK_ID,
    SDK_KEY,
    SDK_TOKEN,
    CLBSYNC_ID_FILE,
    CLBSYNC_KEY_FILE,
    SDK_ID_FILE,
    SDK_KEY_FILE,
    SDK_TOKEN_FILE,
    TKE_REGION,
    TKE_PROVIDER_ID,
    TKE_TOKEN_FILE,
    TKE_ROLE_ARN,
];

/// An API key pair (plus a session token for temporary credentials) and where it came from.
#[derive(Clone)]
pub struct Credentials {
    pub secret_id: String,
    pub secret_key: SecretKey,
    pub token: Option<SessionToken>,
    /// Where the values were read from (variable names, file paths, the role; never the values), for messages
    /// such as "credentials were read from CLOUD_TENCENT_SECRET_ID/CLOUD_TENCENT_SECRET_KEY".
    pub source: String,
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

impl Credentials {
    /// Credentials given directly (tests, or a caller with its own source). `source` says `explicit`.
    pub fn new(secret_id: impl Into<String>, secret_key: impl Into<String>, token: Option<String>) -> Self {
        Credentials {
            secret_id: secret_id.into(),
            secret_key: SecretKey::new(secret_key),
            token: token.map(SessionToken::new),
            source: "explicit".into(),
        }
    }

    /// `CLOUD_TENCENT_SECRET_ID/CLOUD_TENCENT_SECRET_KEY`: where the credentials came from, for error messages.
    pub fn source_description(&self) -> &str {
        &self.source
    }
}

/// Which sources `--credentials` allows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Selection {
    /// The first configured of env, file, tke-oidc.
    #[default]
    Auto,
    Env,
    File,
    TkeOidc,
    CvmRole,
}

/// Where credentials come from, as a metric label (`clbsync_credentials_refresh_total{source}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Env,
    File,
    Profile,
    TkeOidc,
    CvmRole,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Env => "env",
            Kind::File => "file",
            Kind::Profile => "profile",
            Kind::TkeOidc => "tke-oidc",
            Kind::CvmRole => "cvm-role",
        }
    }
}

/// What selects and reaches the sources, from the command line.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub selection: Selection,
    /// `--sts-endpoint`: STS for TKE OIDC (default [`sts::DEFAULT_ENDPOINT`]).
    pub sts_endpoint: Option<String>,
    /// `--metadata-endpoint`: the CVM metadata service's base URL (default [`metadata::DEFAULT_ENDPOINT`]).
    pub metadata_endpoint: Option<String>,
}

/// Why no usable credentials could be had. Messages name variables, files, endpoints and roles, never values.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Nothing of what `selection` allows is configured.
    #[error("{}", missing(*.selection))]
    Missing { selection: Selection },
    #[error("{set} is set but {missing} is not: set both, or neither")]
    Incomplete { set: &'static str, missing: &'static str },
    #[error("{var} has leading or trailing whitespace (often a trailing newline from `echo` into a secret): remove it")]
    Whitespace { var: &'static str },
    #[error("TKE OIDC: {set} set but {} not: set all four (TKE's pod-identity webhook or deploy/components/tke-oidc does)", .missing.join(", "))]
    TkeIncomplete { set: String, missing: Vec<&'static str> },
    /// A file named by a variable (or the profile file) cannot be used.
    #[error("{what} {path}: {reason}")]
    File { what: String, path: String, reason: String },
    #[error("{0}")]
    Config(String),
    /// STS did not give credentials.
    #[error("TKE OIDC: STS AssumeRoleWithWebIdentity at {endpoint}: {reason}")]
    Sts { endpoint: String, reason: String },
    /// The CVM metadata service did not give credentials.
    #[error("CVM role: the metadata service at {url}: {reason}")]
    Metadata { url: String, reason: String },
}

/// What to set, for [`Error::Missing`].
fn missing(selection: Selection) -> String {
    const ENV: &str = "CLOUD_TENCENT_SECRET_ID/_KEY or TENCENTCLOUD_SECRET_ID/_KEY";
    const FILE: &str = "CLOUD_TENCENT_SECRET_ID_FILE/_KEY_FILE or TENCENTCLOUD_SECRET_ID_FILE/_KEY_FILE";
    const TKE: &str = "TKE_REGION, TKE_PROVIDER_ID, TKE_WEB_IDENTITY_TOKEN_FILE, TKE_ROLE_ARN";
    let profiles = files::PROFILE_PATHS.join(", ");
    match selection {
        // `cvm-role` needs nothing set: only `auto` and the three below can find nothing.
        Selection::Auto | Selection::CvmRole => format!(
            "no Tencent Cloud credentials: none of env ({ENV}), file ({FILE}, or a profile file {profiles}) and \
             tke-oidc ({TKE}) is set; set one up, or choose --credentials cvm-role (docs/src/install.md \"Credentials\")"
        ),
        Selection::Env => format!("--credentials env: {ENV} are unset or empty"),
        Selection::File => {
            format!("--credentials file: {FILE} are unset or empty, and there is no profile file ({profiles})")
        }
        Selection::TkeOidc => format!(
            "--credentials tke-oidc: {TKE} are unset or empty (TKE's pod-identity webhook or deploy/components/tke-oidc \
             sets them)"
        ),
    }
}

/// An answer's body, at most `limit` bytes.
async fn read_answer(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) if bytes.len() + chunk.len() > limit => {
                return Err(format!("the answer is larger than {} KiB", limit >> 10));
            }
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) => return Ok(bytes),
            Err(e) => return Err(format!("the answer broke off: {}", crate::clb::http::describe_transport_error(&e))),
        }
    }
}

/// Why an answer is not the JSON expected, without quoting it: serde's messages can quote a value, and these
/// answers hold secrets.
fn unreadable(e: &serde_json::Error) -> String {
    format!("the answer is not the JSON expected ({:?} error at line {} column {})", e.classify(), e.line(), e.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Credentials::new("AKIDid", "topsecretkey", Some("sessiontok".into()));
        let shown = format!("{c:?}");
        assert!(shown.contains("AKIDid"));
        assert!(!shown.contains("topsecretkey") && !shown.contains("sessiontok"), "{shown}");
        let chain = crate::clb::tc3::key_chain(&c.secret_key, "2019-02-25", "clb");
        assert_eq!(format!("{chain:?}"), "KeyChain(<redacted>)");
    }
}
