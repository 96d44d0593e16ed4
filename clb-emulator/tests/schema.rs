//! The embedded parameter table (src/schema.rs) must agree with the real api.json shipped in
//! tccli (installed by testbed/python-sdk.sh): for every supported action and nested object the
//! same parameter names, types, list-ness and required flags. api.json is read at test time and
//! never copied into the repository. Fails (never skips) when the venv is missing.

use clb_emulator::schema::{ACTIONS, Field, Ty};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn api_json() -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(python.exists(), "{} is missing: run testbed/python-sdk.sh", python.display());
    let out = std::process::Command::new(&python)
        .args([
            "-c",
            "import os, tccli; print(os.path.join(os.path.dirname(tccli.__file__), 'services', 'clb', 'v20180317', 'api.json'))",
        ])
        .output()
        .expect("run venv python");
    assert!(
        out.status.success(),
        "tccli not importable: run testbed/python-sdk.sh\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).expect("api.json parses")
}

/// (type, list, required) as api.json describes a member; type is the member object name for objects.
fn describe_api(m: &Value) -> (String, bool, bool) {
    let ty = m["type"].as_str().unwrap();
    let member = m["member"].as_str().unwrap_or_default();
    let required = m["required"].as_bool().unwrap_or(false);
    let scalar = |t: &str| match t {
        "string" => "Str".to_string(),
        "int" | "int64" | "uint64" | "integer" => "Int".to_string(),
        "bool" => "Bool".to_string(),
        other => format!("Obj:{other}"),
    };
    match ty {
        "list" => (scalar(member), true, required),
        "object" => (format!("Obj:{member}"), false, required),
        t => (scalar(t), false, required),
    }
}

fn describe_ours(f: &Field) -> (String, bool, bool) {
    let ty = match f.ty {
        Ty::Str => "Str".to_string(),
        Ty::Int => "Int".to_string(),
        Ty::Bool => "Bool".to_string(),
        Ty::Obj(name, _) => format!("Obj:{name}"),
    };
    (ty, f.list, f.required)
}

fn compare(api: &Value, object: &str, ours: &[Field], checked: &mut Vec<String>) {
    let members =
        api["objects"][object]["members"].as_array().unwrap_or_else(|| panic!("api.json has no object {object}"));
    let theirs: BTreeMap<String, (String, bool, bool)> =
        members.iter().map(|m| (m["name"].as_str().unwrap().to_string(), describe_api(m))).collect();
    let mine: BTreeMap<String, (String, bool, bool)> =
        ours.iter().map(|f| (f.name.to_string(), describe_ours(f))).collect();
    assert_eq!(
        mine.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>(),
        "{object}: parameter names differ from api.json"
    );
    for (name, desc) in &mine {
        assert_eq!(desc, &theirs[name], "{object}.{name}: (type, list, required) differs from api.json");
    }
    checked.push(object.to_string());
    for f in ours {
        if let Ty::Obj(name, fields) = f.ty
            && !checked.iter().any(|c| c == name)
        {
            compare(api, name, fields, checked);
        }
    }
}

#[test]
fn embedded_schema_matches_tccli_api_json() {
    let api = api_json();
    let mut checked = Vec::new();
    for a in ACTIONS {
        let action = &api["actions"][a.name];
        assert!(action.is_object(), "api.json lacks action {}", a.name);
        let input = action["input"].as_str().unwrap();
        compare(&api, input, a.params, &mut checked);
    }
    for needed in ["Target", "BatchTarget", "RsWeightRule", "RsTagRule", "Filter"] {
        assert!(checked.iter().any(|c| c == needed), "{needed} not checked");
    }
    assert_eq!(ACTIONS.len(), 12);
}
