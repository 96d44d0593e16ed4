//! TC3-HMAC-SHA256 against every official vector in tests/fixtures/tc3-vectors.json (computed by the official
//! Python SDK; tests/sdk.rs checks the file against it).

use clb_emulator::sign;
use clb_emulator::state::Credential;
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tc3-vectors.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read the TC3 vectors at {path}: {e}"));
    let v: Value = serde_json::from_str(&text).expect("vectors are JSON");
    let list = v.as_array().cloned().expect("vectors file is a JSON array");
    assert!(list.len() >= 7, "expected at least 7 vectors, got {}", list.len());
    list
}

fn st(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_else(|| panic!("{k} missing")).to_string()
}

#[test]
fn every_vector_signs_and_verifies() {
    for vec in vectors() {
        let name = st(&vec, "name");
        let i = &vec["inputs"];
        let e = &vec["expected"];
        let ts = i["timestamp"].as_i64().unwrap();
        let payload = st(i, "payload");
        let (service, host, ct) = (st(i, "service"), st(i, "host"), st(i, "content_type"));
        assert_eq!(clb_emulator::time::utc_date(ts), st(e, "date"), "{name}: date");
        assert_eq!(sign::sha256_hex(payload.as_bytes()), st(e, "hashed_payload"), "{name}: payload hash");
        let headers = vec![("content-type".to_string(), ct.clone()), ("host".to_string(), host.clone())];
        let creq = sign::canonical_request(
            &st(i, "method"),
            &st(i, "canonical_uri"),
            &st(i, "canonical_query_string"),
            &headers,
            &st(e, "hashed_payload"),
        );
        assert_eq!(creq, st(e, "canonical_request"), "{name}: canonical request");
        let sts = sign::string_to_sign(ts, &st(e, "credential_scope"), &creq);
        assert_eq!(sts, st(e, "string_to_sign"), "{name}: string to sign");
        let keys = sign::derive_keys(&st(i, "secret_key"), &st(e, "date"), &service);
        assert_eq!(sign::hex(&keys[0]), st(e, "secret_date_hex"), "{name}: k_date");
        assert_eq!(sign::hex(&keys[1]), st(e, "secret_service_hex"), "{name}: k_service");
        assert_eq!(sign::hex(&keys[2]), st(e, "secret_signing_hex"), "{name}: k_signing");
        let sig = sign::signature(&st(i, "secret_key"), &st(e, "date"), &service, &sts);
        assert_eq!(sig, st(e, "signature"), "{name}: signature");
        let auth = sign::authorization(
            &st(i, "secret_id"),
            &st(i, "secret_key"),
            &service,
            &host,
            &ct,
            ts,
            payload.as_bytes(),
        );
        assert_eq!(auth, st(e, "authorization"), "{name}: authorization");

        // Server-side verification with the exact headers the SDK sent.
        if service != "clb" {
            continue;
        }
        let sent: Vec<(String, String)> = e["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_string()))
            .collect();
        let header = |n: &str| sent.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let token = i["token"].as_str().map(String::from);
        let creds =
            vec![Credential { secret_id: st(i, "secret_id"), secret_key: st(i, "secret_key"), token: token.clone() }];
        let received =
            sign::Received { method: "POST", path: "/", query: "", header: &header, body: payload.as_bytes() };
        assert_eq!(
            sign::verify(&received, &creds, ts + 299).as_deref(),
            Ok(st(i, "secret_id").as_str()),
            "{name}: verify"
        );
        let expired = sign::verify(&received, &creds, ts + 301).unwrap_err();
        assert_eq!(expired.code, "AuthFailure.SignatureExpire", "{name}");
        let wrong = vec![Credential { secret_key: "wrong".into(), ..creds[0].clone() }];
        assert_eq!(sign::verify(&received, &wrong, ts).unwrap_err().code, "AuthFailure.SignatureFailure", "{name}");
        let other_id = vec![Credential { secret_id: "AKIDother".into(), ..creds[0].clone() }];
        assert_eq!(sign::verify(&received, &other_id, ts).unwrap_err().code, "AuthFailure.SecretIdNotFound", "{name}");
        let tampered = format!("{payload} ");
        let r2 = sign::Received { body: tampered.as_bytes(), ..received };
        assert_eq!(sign::verify(&r2, &creds, ts).unwrap_err().code, "AuthFailure.SignatureFailure", "{name}: body");
        if token.is_some() {
            let no_token = |n: &str| if n == "x-tc-token" { None } else { header(n) };
            let r3 =
                sign::Received { method: "POST", path: "/", query: "", header: &no_token, body: payload.as_bytes() };
            assert_eq!(sign::verify(&r3, &creds, ts).unwrap_err().code, "AuthFailure.TokenFailure", "{name}: token");
        }
        // Date in scope must be the UTC date of the timestamp (local-time dates fail).
        let bad_scope = |n: &str| {
            let v = header(n)?;
            Some(if n == "authorization" { v.replace(&st(e, "date"), "2000-01-01") } else { v })
        };
        let r4 = sign::Received { method: "POST", path: "/", query: "", header: &bad_scope, body: payload.as_bytes() };
        assert_eq!(
            sign::verify(&r4, &creds, ts).unwrap_err().code,
            "AuthFailure.SignatureFailure",
            "{name}: scope date"
        );
    }
}

#[test]
fn malformed_authorization() {
    assert_eq!(sign::parse_authorization("Basic abc").unwrap_err().code, "AuthFailure.InvalidAuthorization");
    assert!(
        sign::parse_authorization(
            "TC3-HMAC-SHA256 Credential=a/b/c/tc3_request, SignedHeaders=content-type;host, Signature=00"
        )
        .is_ok()
    );
    assert!(
        sign::parse_authorization("TC3-HMAC-SHA256 Credential=a/b/tc3_request, SignedHeaders=host, Signature=00")
            .is_err()
    );
}
