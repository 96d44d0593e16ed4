//! Tencent Cloud API credentials: read from the environment through a lookup closure
//! ([`Credentials::from_lookup`]) so tests never touch the process environment. The secret key and the session
//! token print as `<redacted>` and have no `Display`.

use std::fmt;

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
/// Every variable that may hold a secret, for what must not inherit them (kubeconfig credential plugins).
pub const VARIABLES: [&str; 5] = [CLBSYNC_ID, CLBSYNC_KEY, SDK_ID, SDK_KEY, SDK_TOKEN];

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
