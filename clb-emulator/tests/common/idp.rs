//! A test identity provider: an RSA key (openssl generates it once per test process; no private key
//! is kept in the repository) that signs JWTs with any claims, and its JWKS.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use clb_emulator::Jwks;
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents};
use serde_json::Value;
use std::sync::OnceLock;

/// `kid` of the test key in [`jwks`].
pub const KID: &str = "test-idp-key";
/// Issuer the test provider's tokens carry by default.
pub const ISSUER: &str = "https://test-idp.example";

fn key() -> &'static RsaKeyPair {
    static KEY: OnceLock<RsaKeyPair> = OnceLock::new();
    KEY.get_or_init(|| {
        // genpkey's PEM is PKCS#8 (`BEGIN PRIVATE KEY`), which ring reads; its DER would be PKCS#1.
        let out = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .output()
            .expect("run openssl genpkey (the testbed installs openssl)");
        assert!(out.status.success(), "openssl genpkey: {}", String::from_utf8_lossy(&out.stderr));
        let pem = String::from_utf8(out.stdout).expect("PEM is text");
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        RsaKeyPair::from_pkcs8(&STANDARD.decode(b64).expect("PEM base64")).expect("PKCS#8 RSA key")
    })
}

/// The test key's JWKS (one key, `kid` [`KID`]).
pub fn jwks() -> Jwks {
    let c = RsaPublicKeyComponents::<Vec<u8>>::from(key().public());
    Jwks::from_rsa_components(KID, &c.n, &c.e)
}

/// A JWT with this header and these claims, signed RS256 with the test key (whatever the header says).
pub fn sign(header: &Value, claims: &Value) -> String {
    let msg = format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut sig = vec![0; key().public().modulus_len()];
    key().sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg.as_bytes(), &mut sig).expect("sign");
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// `token`'s header and claims, re-signed with the test key (a token the issuer never signed).
pub fn resign(token: &str) -> String {
    let part = |i: usize| -> Value {
        let s = token.split('.').nth(i).expect("a JWT has three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url")).expect("JSON")
    };
    sign(&part(0), &part(1))
}

/// The claims of `token` (unverified), for assertions.
pub fn claims(token: &str) -> Value {
    let s = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).expect("base64url")).expect("JSON")
}

/// A token of the test provider for `sub` and `aud`, valid from `nbf` to `exp` (Unix seconds).
pub fn token(sub: &str, aud: &str, nbf: i64, exp: i64) -> String {
    let header = serde_json::json!({"alg": "RS256", "kid": KID});
    let claims = serde_json::json!({"iss": ISSUER, "sub": sub, "aud": [aud], "iat": nbf, "nbf": nbf, "exp": exp});
    sign(&header, &claims)
}
