//! Temporary credentials the emulator handed out (through STS or the CVM metadata endpoint): CLB
//! calls signed with one must carry its token and are refused with `AuthFailure.TokenFailure` once
//! it expired. Kept for the emulator's lifetime (one entry per STS call or metadata rotation), so
//! an expired SecretId is still told apart from one that never existed.

use crate::state::Credential;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Who issued a temporary credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "via")]
pub enum IssuedVia {
    /// STS `AssumeRoleWithWebIdentity`.
    Sts {
        /// `RoleArn` assumed.
        role_arn: String,
        /// `RoleSessionName` of the request.
        session_name: String,
        /// `sub` of the web-identity token.
        subject: String,
        /// RequestId of the STS answer.
        request_id: String,
    },
    /// The CVM metadata endpoint.
    CvmRole {
        /// The instance role.
        role: String,
    },
}

/// A temporary credential. `Debug` leaves out the key and the token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCredential {
    /// `TmpSecretId`.
    pub secret_id: String,
    /// `TmpSecretKey`.
    pub secret_key: String,
    /// `Token` (sent as `X-TC-Token`).
    pub token: String,
    /// When it was issued, Unix milliseconds (emulator wall clock).
    pub issued_at_ms: i64,
    /// When it stops working, Unix milliseconds; `ExpiredTime` is this rounded down to seconds.
    pub expires_at_ms: i64,
    /// Who issued it.
    #[serde(flatten)]
    pub via: IssuedVia,
}

impl std::fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCredential")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"<redacted>")
            .field("token", &"<redacted>")
            .field("issued_at_ms", &self.issued_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("via", &self.via)
            .finish()
    }
}

impl IssuedCredential {
    /// `ExpiredTime` as STS and the metadata service report it (Unix seconds, never later than the
    /// real expiry).
    pub fn expired_time(&self) -> i64 {
        self.expires_at_ms.div_euclid(1000)
    }

    /// `Expiration`: `ExpiredTime` in RFC 3339 UTC (`2026-01-02T03:04:05Z`), as the Go SDK parses it.
    pub fn expiration(&self) -> String {
        crate::time::utc_rfc3339(self.expired_time())
    }

    /// True when it no longer works at `now_ms`.
    pub fn expired_at(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_at_ms
    }

    /// The credential as signature verification sees it.
    pub(crate) fn as_credential(&self) -> Credential {
        Credential {
            secret_id: self.secret_id.clone(),
            secret_key: self.secret_key.clone(),
            token: Some(self.token.clone()),
        }
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// `len` random letters and digits.
fn random_alnum(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        panic!("the system random number generator failed");
    }
    bytes.iter().map(|b| ALNUM[usize::from(*b) % ALNUM.len()] as char).collect()
}

/// Every temporary credential issued, by SecretId.
#[derive(Debug, Default)]
pub(crate) struct Issued {
    by_id: HashMap<String, IssuedCredential>,
    order: Vec<String>,
    /// SecretId of the credential the metadata endpoint hands out now.
    cvm_current: Option<String>,
}

impl Issued {
    /// Issues a fresh credential living `lifetime_ms` from `now_ms`.
    pub fn issue(&mut self, via: IssuedVia, now_ms: i64, lifetime_ms: u64) -> IssuedCredential {
        let lifetime = i64::try_from(lifetime_ms).unwrap_or(i64::MAX / 4);
        let cred = IssuedCredential {
            secret_id: format!("AKID{}", random_alnum(32)),
            secret_key: random_alnum(32),
            token: random_alnum(128),
            issued_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(lifetime),
            via,
        };
        self.order.push(cred.secret_id.clone());
        self.by_id.insert(cred.secret_id.clone(), cred.clone());
        cred
    }

    /// The credential the metadata endpoint answers for `role` at `now_ms`: the current one while
    /// more than half of its lifetime is left, else a new one (the old one works until it expires).
    pub fn cvm_credential(&mut self, role: &str, now_ms: i64, lifetime_ms: u64) -> IssuedCredential {
        if let Some(c) = self.cvm_current.as_ref().and_then(|id| self.by_id.get(id))
            && c.via == (IssuedVia::CvmRole { role: role.to_string() })
            && (c.expires_at_ms - now_ms) * 2 > c.expires_at_ms - c.issued_at_ms
        {
            return c.clone();
        }
        let c = self.issue(IssuedVia::CvmRole { role: role.to_string() }, now_ms, lifetime_ms);
        self.cvm_current = Some(c.secret_id.clone());
        c
    }

    /// The credential with this SecretId.
    pub fn get(&self, secret_id: &str) -> Option<&IssuedCredential> {
        self.by_id.get(secret_id)
    }

    /// Every credential, in issue order.
    pub fn all(&self) -> Vec<IssuedCredential> {
        self.order.iter().filter_map(|id| self.by_id.get(id)).cloned().collect()
    }

    /// Makes every credential expire at `now_ms` (those already expired keep their time).
    pub fn expire_all(&mut self, now_ms: i64) {
        for c in self.by_id.values_mut() {
            c.expires_at_ms = c.expires_at_ms.min(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvm_credentials_rotate_after_half_their_lifetime() {
        let mut issued = Issued::default();
        let a = issued.cvm_credential("r", 0, 1000);
        assert_eq!(issued.cvm_credential("r", 499, 1000).secret_id, a.secret_id);
        let b = issued.cvm_credential("r", 500, 1000);
        assert_ne!(b.secret_id, a.secret_id);
        assert_eq!((b.issued_at_ms, b.expires_at_ms), (500, 1500));
        assert!(!issued.get(&a.secret_id).expect("kept").expired_at(999));
        assert_ne!(issued.cvm_credential("other", 600, 1000).secret_id, b.secret_id, "another role");
    }

    #[test]
    fn expire_all_and_expiry_times() {
        let mut issued = Issued::default();
        let sts = IssuedVia::Sts {
            role_arn: "r".into(),
            session_name: "s".into(),
            subject: "u".into(),
            request_id: "q".into(),
        };
        let c = issued.issue(sts, 1_700_000_000_400, 2_000);
        assert_eq!(c.expired_time(), 1_700_000_002);
        assert_eq!(c.expiration(), "2023-11-14T22:13:22Z");
        assert!(c.secret_id.starts_with("AKID") && c.secret_id.len() == 36);
        issued.expire_all(1_700_000_001_000);
        assert!(issued.get(&c.secret_id).expect("kept").expired_at(1_700_000_001_000));
        assert!(!format!("{c:?}").contains(&c.secret_key) && !format!("{c:?}").contains(&c.token));
    }
}
