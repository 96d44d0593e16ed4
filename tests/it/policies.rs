//! The least-privilege documents that ship beside the manifests (issue 24): the CAM policy a user pastes into
//! Tencent Cloud, checked against what the client can call and what CLB's API takes.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::packaging::{parse, read, root, venv_tool};

/// CLB's API (2018-03-17) as tccli's `api.json` describes it (installed by testbed/python-sdk.sh).
fn clb_api() -> Value {
    let out = std::process::Command::new(venv_tool("python"))
        .args(["-c", "import os, tccli; print(os.path.join(os.path.dirname(tccli.__file__), 'services', 'clb', 'v20180317', 'api.json'))"])
        .output()
        .expect("run the venv's python");
    assert!(out.status.success(), "tccli not importable: run testbed/python-sdk.sh");
    let path = String::from_utf8(out.stdout).expect("a UTF-8 path").trim().to_owned();
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))).expect("api.json")
}

/// Every string literal in `src/` outside test code (`#[cfg(test)]` to the end of a file, `tests.rs`, the
/// in-memory double) and outside comments. Whatever the client sends as `X-TC-Action` is one of them, however
/// the call is written.
fn source_literals() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if path.is_dir() {
                if name != "tests" {
                    walk(&path, out);
                }
                continue;
            }
            if !name.ends_with(".rs") || name == "tests.rs" || path.ends_with("clb/memory.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read a source file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                out.extend(line.split('"').skip(1).step_by(2).map(str::to_owned));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(&root().join("src"), &mut out);
    out
}

/// The shipped CAM policy, as `(actions without "clb:", resources)` per statement.
fn cam_statements() -> Vec<(BTreeSet<String>, Vec<String>)> {
    let policy: Value =
        serde_json::from_str(&read("deploy/examples/cam-policy.json")).expect("cam-policy.json is JSON");
    assert_eq!(policy["version"], "2.0", "CAM's policy syntax version");
    let strings = |v: &Value| -> Vec<String> {
        v.as_array().expect("a list").iter().map(|s| s.as_str().expect("a string").to_owned()).collect()
    };
    let statements = policy["statement"].as_array().expect("statement: a list");
    statements
        .iter()
        .map(|s| {
            assert_eq!(s["effect"], "allow", "{s}");
            let actions = strings(&s["action"])
                .into_iter()
                .map(|a| {
                    a.strip_prefix("clb:").unwrap_or_else(|| panic!("{a}: every action is clb:<Action>")).to_owned()
                })
                .collect();
            (actions, strings(&s["resource"]))
        })
        .collect()
}

/// The names of the request fields of `action` that CLB requires.
fn required_fields(api: &Value, action: &str) -> BTreeSet<String> {
    let input = api["actions"][action]["input"].as_str().unwrap_or_else(|| panic!("{action}: not a CLB action"));
    let members = api["objects"][input]["members"].as_array().expect("members");
    members.iter().filter(|m| m["required"] == true).map(|m| m["name"].as_str().expect("a name").to_owned()).collect()
}

#[test]
fn the_cam_policy_allows_exactly_the_clb_actions_the_client_can_call() {
    // Issue 24 item 22: the README's list lacked DescribeTargetHealth and BatchModifyTargetTag.
    let api = clb_api();
    let every_action: BTreeSet<&str> =
        api["actions"].as_object().expect("actions").keys().map(String::as_str).collect();
    let called: BTreeSet<String> =
        source_literals().into_iter().filter(|s| every_action.contains(s.as_str())).collect();
    assert!(
        called.len() >= 10 && called.contains("DescribeTaskStatus"),
        "the scan finds the client's calls: {called:?}"
    );
    let allowed: BTreeSet<String> = cam_statements().into_iter().flat_map(|(actions, _)| actions).collect();
    assert_eq!(allowed, called, "deploy/examples/cam-policy.json vs the CLB actions named in src/");
}

#[test]
fn the_cam_policy_scopes_every_action_that_names_a_load_balancer_to_the_load_balancers_in_the_rules() {
    let api = clb_api();
    let cron = parse(&read("cronjob.yaml"));
    let cronjob = cron.iter().find(|d| d["kind"] == "CronJob").expect("the CronJob");
    let region = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"][0];
    assert_eq!(region["name"], "TENCENT_REGION");
    let region = region["value"].as_str().expect("the region");
    let rules = clbsync::rules::parse("deploy/base/rules.yaml", &read("deploy/base/rules.yaml")).expect("valid rules");
    let lbs: BTreeSet<String> = rules.rules.iter().map(|r| r.load_balancer_id.clone()).collect();
    let want: Vec<String> = lbs.iter().map(|lb| format!("qcs::clb:{region}:uin/100000000001:clb/{lb}")).collect();

    let statements = cam_statements();
    assert_eq!(statements.len(), 2, "one statement for account-wide actions, one for the load balancers");
    for (actions, resources) in statements {
        let scoped = resources != ["*"];
        if scoped {
            assert_eq!(resources, want, "the load balancers of deploy/base/rules.yaml, in the region of the manifests");
        }
        for action in actions {
            let required = required_fields(&api, &action);
            let names_lb = required.contains("LoadBalancerId") || required.contains("LoadBalancerIds");
            // CAM refuses a resource-scoped grant of an action whose request names no load balancer.
            assert_eq!(scoped, names_lb, "{action} (required fields {required:?}) belongs in the other statement");
        }
    }
}
