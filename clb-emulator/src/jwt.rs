//! JSON Web Tokens signed with RS256 and checked against a JWKS (RFC 7515/7517/7519): what STS does
//! with the web-identity token of `AssumeRoleWithWebIdentity`. A Kubernetes API server signs its
//! projected service-account tokens this way and publishes the keys at `/openid/v1/jwks`.
//!
//! Pure: the time is a parameter. Only `alg: RS256` is accepted (no `none`, no HMAC with the public
//! key), the signature is checked before any claim is read, and there is no clock leeway.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A JSON Web Key Set: the RSA signing keys of an identity provider. Serialised as the JWKS document
/// it was read from (`{"keys": [...]}`), so a configuration shows what was configured.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub struct Jwks {
    document: Value,
    keys: Vec<Jwk>,
}

#[derive(Clone, PartialEq)]
struct Jwk {
    kid: Option<String>,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_deref().unwrap_or("<no kid>")).collect();
        f.debug_struct("Jwks").field("kids", &kids).finish()
    }
}

impl Jwks {
    /// Parses a JWKS document. RSA keys meant for signatures (`use` absent or `sig`, `alg` absent or
    /// `RS256`) are kept; other keys are skipped. Fails when none is left.
    pub fn from_json(text: &str) -> Result<Jwks, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
        Jwks::try_from(v)
    }

    /// The key ids (`kid`), in document order.
    pub fn kids(&self) -> Vec<String> {
        self.keys.iter().filter_map(|k| k.kid.clone()).collect()
    }

    /// A JWKS holding one RSA key given by its big-endian modulus and exponent (for tests that sign
    /// their own tokens).
    pub fn from_rsa_components(kid: &str, n: &[u8], e: &[u8]) -> Jwks {
        let doc = serde_json::json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e),
        }]});
        Jwks::try_from(doc).expect("a key built from components parses")
    }
}

impl TryFrom<Value> for Jwks {
    type Error = String;

    fn try_from(document: Value) -> Result<Jwks, String> {
        let list = document.get("keys").and_then(Value::as_array).ok_or("the JWKS has no `keys` array")?;
        let mut keys = Vec::new();
        for k in list {
            let field = |name: &str| k.get(name).and_then(Value::as_str);
            let usable = field("kty") == Some("RSA")
                && field("use").is_none_or(|u| u == "sig")
                && field("alg").is_none_or(|a| a == "RS256");
            if !usable {
                continue;
            }
            let kid = field("kid").map(str::to_string);
            let part = |name: &str| -> Result<Vec<u8>, String> {
                let s = field(name).ok_or_else(|| format!("RSA key {kid:?} has no `{name}`"))?;
                let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|e| format!("RSA key {kid:?}: `{name}`: {e}"))?;
                let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
                Ok(bytes[first..].to_vec())
            };
            keys.push(Jwk { n: part("n")?, e: part("e")?, kid });
        }
        if keys.is_empty() {
            return Err("the JWKS has no RSA signing key (kty RSA, use sig, alg RS256)".into());
        }
        Ok(Jwks { document, keys })
    }
}

impl From<Jwks> for Value {
    fn from(j: Jwks) -> Value {
        j.document
    }
}

/// The claims STS reads from a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `iss`.
    pub iss: String,
    /// `sub` (`system:serviceaccount:<namespace>:<name>` for a Kubernetes token).
    pub sub: String,
    /// `aud` (a string or an array in the token; always a list here).
    pub aud: Vec<String>,
    /// `exp`, Unix seconds.
    pub exp: i64,
    /// `nbf`, Unix seconds.
    pub nbf: Option<i64>,
}

/// Why a token was refused. Messages name the problem for the client to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not three base64url parts, or a part that is not the JSON it should be.
    #[error("the token is not a JWT: {0}")]
    Malformed(String),
    /// `alg` other than RS256.
    #[error("the token is signed with `{0}`; only RS256 is accepted")]
    Algorithm(String),
    /// `kid` names no key of the provider.
    #[error("the token's key id `{0}` is not in the identity provider's JWKS")]
    UnknownKey(String),
    /// The signature does not verify with the provider's keys.
    #[error("the token's signature does not verify with the identity provider's keys")]
    Signature,
    /// A required claim is missing or has the wrong type.
    #[error("the token has no valid `{0}` claim")]
    Claim(&'static str),
    /// `exp` is not after now.
    #[error("the token expired at {exp} (now {now})")]
    Expired {
        /// `exp`.
        exp: i64,
        /// The server time.
        now: i64,
    },
    /// `nbf` is after now.
    #[error("the token is not valid before {nbf} (now {now})")]
    NotYetValid {
        /// `nbf`.
        nbf: i64,
        /// The server time.
        now: i64,
    },
}

fn decode_json(part: &str, what: &str) -> Result<Value, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| TokenError::Malformed(format!("{what}: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed(format!("{what} is not JSON: {e}")))
}

fn numeric_date(claims: &Value, name: &'static str) -> Result<Option<i64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v.as_i64().or_else(|| v.as_f64().map(|f| f.floor() as i64)).map(Some).ok_or(TokenError::Claim(name)),
    }
}

/// Verifies `token`'s RS256 signature against `jwks` and its `exp`/`nbf` at `now` (Unix seconds), and
/// returns its claims. Issuer and audience are the caller's to check.
pub fn verify(token: &str, jwks: &Jwks, now: i64) -> Result<Claims, TokenError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, sig_b64] = parts[..] else {
        return Err(TokenError::Malformed(format!("{} part(s) separated by `.`, not 3", parts.len())));
    };
    let header = decode_json(header_b64, "the header")?;
    match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => {}
        Some(other) => return Err(TokenError::Algorithm(other.to_string())),
        None => return Err(TokenError::Malformed("the header has no `alg`".into())),
    }
    let signature =
        URL_SAFE_NO_PAD.decode(sig_b64).map_err(|e| TokenError::Malformed(format!("the signature: {e}")))?;
    let candidates: Vec<&Jwk> = match header.get("kid").and_then(Value::as_str) {
        Some(kid) => {
            let found: Vec<&Jwk> = jwks.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).collect();
            if found.is_empty() {
                return Err(TokenError::UnknownKey(kid.to_string()));
            }
            found
        }
        None => jwks.keys.iter().collect(),
    };
    let signed = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];
    let verified = candidates.iter().any(|k| {
        RsaPublicKeyComponents { n: &k.n, e: &k.e }.verify(&RSA_PKCS1_2048_8192_SHA256, signed, &signature).is_ok()
    });
    if !verified {
        return Err(TokenError::Signature);
    }
    let claims = decode_json(payload_b64, "the payload")?;
    let string = |name: &'static str| {
        claims.get(name).and_then(Value::as_str).map(str::to_string).ok_or(TokenError::Claim(name))
    };
    let aud = match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(TokenError::Claim("aud"))?,
        _ => return Err(TokenError::Claim("aud")),
    };
    let exp = numeric_date(&claims, "exp")?.ok_or(TokenError::Claim("exp"))?;
    let nbf = numeric_date(&claims, "nbf")?;
    if now >= exp {
        return Err(TokenError::Expired { exp, now });
    }
    if let Some(nbf) = nbf
        && now < nbf
    {
        return Err(TokenError::NotYetValid { nbf, now });
    }
    Ok(Claims { iss: string("iss")?, sub: string("sub")?, aud, exp, nbf })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

    /// A 2048-bit test key, generated once per test process by openssl (the testbed needs it anyway).
    /// Its PEM output is PKCS#8 (`BEGIN PRIVATE KEY`); its DER output would be PKCS#1.
    fn key() -> &'static RsaKeyPair {
        static KEY: std::sync::OnceLock<RsaKeyPair> = std::sync::OnceLock::new();
        KEY.get_or_init(|| {
            let out = std::process::Command::new("openssl")
                .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
                .output()
                .expect("run openssl genpkey");
            assert!(out.status.success(), "openssl genpkey: {}", String::from_utf8_lossy(&out.stderr));
            let pem = String::from_utf8(out.stdout).expect("PEM is text");
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            let der = base64::engine::general_purpose::STANDARD.decode(b64).expect("PEM base64");
            RsaKeyPair::from_pkcs8(&der).expect("PKCS#8 RSA key")
        })
    }

    fn jwks(kid: &str) -> Jwks {
        let c = RsaPublicKeyComponents::<Vec<u8>>::from(key().public());
        Jwks::from_rsa_components(kid, &c.n, &c.e)
    }

    fn sign(header: &Value, claims: &Value) -> String {
        let msg =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut sig = vec![0; key().public().modulus_len()];
        key().sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg.as_bytes(), &mut sig).expect("sign");
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn claims() -> Value {
        serde_json::json!({"iss": "https://issuer", "sub": "system:serviceaccount:ns:sa", "aud": ["sts"], "exp": 2000, "nbf": 1000})
    }

    fn rs256(kid: &str) -> Value {
        serde_json::json!({"alg": "RS256", "kid": kid})
    }

    #[test]
    fn a_signed_token_verifies_and_yields_its_claims() {
        let c = verify(&sign(&rs256("k1"), &claims()), &jwks("k1"), 1500).expect("valid");
        assert_eq!(c.sub, "system:serviceaccount:ns:sa");
        assert_eq!(c.aud, vec!["sts".to_string()]);
        assert_eq!((c.exp, c.nbf), (2000, Some(1000)));
    }

    #[test]
    fn time_bounds_are_exclusive_at_exp_and_inclusive_at_nbf() {
        let t = sign(&rs256("k1"), &claims());
        assert!(verify(&t, &jwks("k1"), 1000).is_ok());
        assert_eq!(verify(&t, &jwks("k1"), 999), Err(TokenError::NotYetValid { nbf: 1000, now: 999 }));
        assert_eq!(verify(&t, &jwks("k1"), 2000), Err(TokenError::Expired { exp: 2000, now: 2000 }));
    }

    #[test]
    fn a_tampered_payload_or_another_key_fails_the_signature() {
        let t = sign(&rs256("k1"), &claims());
        let parts: Vec<&str> = t.split('.').collect();
        let mut other = claims();
        other["sub"] = "system:serviceaccount:ns:admin".into();
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(other.to_string()), parts[2]);
        assert_eq!(verify(&forged, &jwks("k1"), 1500), Err(TokenError::Signature));
        let foreign = Jwks::from_rsa_components("k1", &[0xc5; 256], &[1, 0, 1]);
        assert_eq!(verify(&t, &foreign, 1500), Err(TokenError::Signature));
        assert_eq!(verify(&t, &jwks("k2"), 1500), Err(TokenError::UnknownKey("k1".into())));
    }

    #[test]
    fn only_rs256_is_accepted() {
        for alg in ["none", "HS256", "RS512", "ES256"] {
            let t = sign(&serde_json::json!({"alg": alg, "kid": "k1"}), &claims());
            assert_eq!(verify(&t, &jwks("k1"), 1500), Err(TokenError::Algorithm(alg.into())), "{alg}");
        }
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims().to_string())
        );
        assert_eq!(verify(&unsigned, &jwks("k1"), 1500), Err(TokenError::Algorithm("none".into())));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        for bad in ["", "abc", "a.b", "a.b.c.d", "!!.e30.AA", "e30.e30.AA", " e30.e30.AA"] {
            let e = verify(bad, &jwks("k1"), 1500).expect_err(bad);
            assert!(matches!(e, TokenError::Malformed(_)), "{bad}: {e}");
        }
        let newline = format!("{}\n", sign(&rs256("k1"), &claims()));
        assert!(matches!(verify(&newline, &jwks("k1"), 1500), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn required_claims_are_checked_after_the_signature() {
        for (name, claim) in [("aud", "aud"), ("exp", "exp"), ("sub", "sub"), ("iss", "iss")] {
            let mut c = claims();
            c.as_object_mut().expect("object").remove(name);
            assert_eq!(verify(&sign(&rs256("k1"), &c), &jwks("k1"), 1500), Err(TokenError::Claim(claim)), "{name}");
        }
        let mut c = claims();
        c["aud"] = "sts".into();
        assert_eq!(verify(&sign(&rs256("k1"), &c), &jwks("k1"), 1500).expect("aud string").aud, vec!["sts"]);
        c["aud"] = serde_json::json!([1]);
        assert_eq!(verify(&sign(&rs256("k1"), &c), &jwks("k1"), 1500), Err(TokenError::Claim("aud")));
    }

    #[test]
    fn jwks_keeps_only_rsa_signing_keys() {
        let doc = r#"{"keys": [
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "kid": "sig", "n": "AAEC", "e": "AQAB"}
        ]}"#;
        let j = Jwks::from_json(doc).expect("parses");
        assert_eq!(j.kids(), vec!["sig"]);
        assert_eq!(j.keys[0].n, vec![1, 2], "leading zero bytes are dropped");
        assert!(Jwks::from_json(r#"{"keys": [{"kty": "EC"}]}"#).unwrap_err().contains("no RSA signing key"));
        assert!(Jwks::from_json("[]").unwrap_err().contains("no `keys`"));
        let back: Value = serde_json::to_value(&j).expect("serialises");
        assert_eq!(back, serde_json::from_str::<Value>(doc).expect("json"));
    }
}
