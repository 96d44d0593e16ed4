//! The least-privilege documents that ship beside the manifests (issue 24): the CAM policy a user pastes into
//! Tencent Cloud (checked against what the client can call and what CLB's API takes), watch mode's NetworkPolicy
//! and the default-deny example (on the test API server), and the readiness gate's ValidatingAdmissionPolicy
//! (its CEL evaluated on real pods: the test server, 1.20, has no admission policies).

use std::collections::BTreeSet;
use std::path::Path;

use clbsync::desired::Cluster;
use clbsync::model::GateCondition;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Api;
use serde_json::Value;

use crate::packaging::{kustomize, parse, read, root, venv_tool};
use crate::support::kube::{TestNs, apply_yaml, pod};

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

/// The NetworkPolicy `name` of a rendering.
fn network_policy<'a>(docs: &'a [serde_yaml::Value], name: &str) -> &'a serde_yaml::Value {
    docs.iter()
        .find(|d| d["kind"] == "NetworkPolicy" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

/// `(protocol, port)` of a rule's ports.
fn ports(rule: &serde_yaml::Value) -> Vec<(String, u64)> {
    let list = rule["ports"].as_sequence().expect("ports");
    list.iter()
        .map(|p| (p["protocol"].as_str().expect("protocol").to_owned(), p["port"].as_u64().expect("a port")))
        .collect()
}

#[tokio::test]
async fn the_watch_network_policy_lets_in_only_metrics_from_monitoring_and_out_only_dns_and_https() {
    // Issue 24 item 15: the metrics port was open to anyone, and nothing limited what the pods could reach.
    let docs = parse(&kustomize("deploy/watch"));
    let policy = network_policy(&docs, "clbsync-watch");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("the Deployment");
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"], deployment["spec"]["selector"]["matchLabels"]);
    assert_eq!(policy["metadata"]["namespace"], deployment["metadata"]["namespace"]);
    assert_eq!(policy["spec"]["policyTypes"], serde_yaml::to_value(["Ingress", "Egress"]).unwrap());

    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let metrics =
        container["ports"].as_sequence().expect("ports").iter().find(|p| p["name"] == "metrics").expect("metrics");
    let ingress = policy["spec"]["ingress"].as_sequence().expect("ingress rules");
    assert_eq!(ingress.len(), 1, "one way in");
    assert_eq!(ports(&ingress[0]), [("TCP".to_owned(), metrics["containerPort"].as_u64().unwrap())]);
    let from = ingress[0]["from"].as_sequence().expect("from");
    assert_eq!(from.len(), 1);
    assert_eq!(from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "monitoring");
    assert!(from[0]["podSelector"].is_null() && from[0]["ipBlock"].is_null(), "only that namespace: {:?}", from[0]);

    let egress = policy["spec"]["egress"].as_sequence().expect("egress rules");
    assert_eq!(egress.len(), 2, "DNS, and HTTPS: {egress:?}");
    let dns = &egress[0];
    assert_eq!(ports(dns), [("UDP".to_owned(), 53), ("TCP".to_owned(), 53)]);
    assert_eq!(dns["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "kube-system");
    assert_eq!(dns["to"][0]["podSelector"]["matchLabels"]["k8s-app"], "kube-dns");
    assert_eq!(ports(&egress[1]), [("TCP".to_owned(), 443), ("TCP".to_owned(), 6443)], "the API server and CLB");

    let example = parse(&kustomize("deploy/examples/default-deny"));
    let deny = network_policy(&example, "default-deny");
    assert_eq!(deny["metadata"]["namespace"], "clbsync");
    assert_eq!(deny["spec"]["podSelector"], serde_yaml::Value::Mapping(Default::default()), "every pod");
    assert_eq!(deny["spec"]["policyTypes"], policy["spec"]["policyTypes"]);
    assert!(deny["spec"]["ingress"].is_null() && deny["spec"]["egress"].is_null(), "allows nothing");
    network_policy(&example, "clbsync-watch");

    // The test API server (1.20) serves networking.k8s.io/v1: both policies, moved into a fresh namespace, are
    // accepted as they are and read back unchanged. (It has no network plugin: what they enforce is not tested.)
    let ns = TestNs::new("netpol").await;
    let mut moved = Vec::new();
    for mut doc in [policy.clone(), deny.clone()] {
        doc["metadata"]["namespace"] = ns.name.clone().into();
        moved.push(serde_yaml::to_string(&doc).unwrap());
    }
    apply_yaml(&ns.client, &moved.join("---\n"), &["NetworkPolicy"]).await;
    let api: Api<NetworkPolicy> = Api::namespaced(ns.client.clone(), &ns.name);
    for doc in [policy, deny] {
        let name = doc["metadata"]["name"].as_str().unwrap();
        let stored = serde_json::to_value(api.get(name).await.unwrap().spec).unwrap();
        let shipped: Value = serde_json::to_value(&doc["spec"]).unwrap();
        assert_eq!(stored, shipped, "{name} as the API server stored it");
    }
}

/// Evaluates CEL `expressions` (cel-python, a CEL interpreter) with each case's variables: per case, the value of
/// each expression (an error is a failure of the test).
const EVALUATE_CEL: &str = r#"
import json, sys
import celpy
spec = json.load(sys.stdin)
env = celpy.Environment()
programs = [env.program(env.compile(e)) for e in spec["expressions"]]
out = []
for case in spec["cases"]:
    activation = {k: celpy.json_to_cel(v) for k, v in case.items()}
    out.append([bool(p.evaluate(activation)) for p in programs])
print(json.dumps(out))
"#;

fn evaluate_cel(expressions: &[String], cases: &[Value]) -> Vec<Vec<bool>> {
    use std::io::Write;
    let mut child = std::process::Command::new(venv_tool("python"))
        .args(["-c", EVALUATE_CEL])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the venv's python");
    let input = serde_json::json!({ "expressions": expressions, "cases": cases });
    child.stdin.take().expect("stdin").write_all(input.to_string().as_bytes()).expect("write the cases");
    let out = child.wait_with_output().expect("cel-python runs");
    assert!(
        out.status.success(),
        "cel-python (testbed/python-sdk.sh installs it):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a list of results")
}

#[tokio::test]
async fn the_gate_admission_policy_lets_clbsync_write_its_condition_and_nothing_else_of_a_pods_status() {
    // Issue 24 item 13: with `patch pods/status`, clbsync's token could rewrite a pod's IP, Ready and labels. The
    // policy needs Kubernetes >= 1.30, which the test server is not; its expressions are evaluated with cel-python
    // on pods as the test server stores them, before and after clbsync's own write (KubeCluster::set_pod_condition).
    let docs = parse(&kustomize("deploy/examples/readiness-gate-policy"));
    let vap = docs.iter().find(|d| d["kind"] == "ValidatingAdmissionPolicy").expect("the policy");
    let binding = docs.iter().find(|d| d["kind"] == "ValidatingAdmissionPolicyBinding").expect("its binding");
    assert_eq!(binding["spec"]["policyName"], vap["metadata"]["name"]);
    assert_eq!(binding["spec"]["validationActions"], serde_yaml::to_value(["Deny"]).unwrap());
    let spec = &vap["spec"];
    assert_eq!(spec["failurePolicy"], "Fail");
    assert_eq!(
        spec["matchConstraints"]["resourceRules"][0]["resources"],
        serde_yaml::to_value(["pods/status"]).unwrap()
    );
    let text = |v: &serde_yaml::Value| v.as_str().expect("an expression").to_owned();
    let validations: Vec<String> =
        spec["validations"].as_sequence().expect("validations").iter().map(|v| text(&v["expression"])).collect();

    let ns = TestNs::new("gate-vap").await;
    ns.create(pod("gated").label("app", "web").port("http", 8080).ip("127.0.0.70").gated()).await;
    let get = || async { serde_json::to_value(ns.pods().get("gated").await.expect("get the pod")).unwrap() };
    let cluster = ns.cluster().await;
    let set = |status: bool, reason: &str| GateCondition { status, reason: reason.into(), message: "test".into() };
    let before = get().await;
    cluster.set_pod_condition(&ns.name, "gated", &set(false, "RegistrationPending"), true).await.expect("set");
    let pending = get().await;
    cluster.set_pod_condition(&ns.name, "gated", &set(true, "Registered"), true).await.expect("set");
    let registered = get().await;
    assert_ne!(pending, registered, "the condition changed");

    let edit = |f: &dyn Fn(&mut Value)| {
        let mut pod = registered.clone();
        f(&mut pod);
        pod
    };
    let conditions = |pod: &mut Value| pod["status"]["conditions"].as_array_mut().expect("conditions").clone();
    let cases: Vec<(&str, Value, Value, bool)> = vec![
        ("clbsync adds its condition", before.clone(), pending.clone(), true),
        ("clbsync changes its condition", pending.clone(), registered.clone(), true),
        ("clbsync removes its condition", registered.clone(), before.clone(), true),
        ("pod IP", registered.clone(), edit(&|p| p["status"]["podIP"] = "10.9.9.9".into()), false),
        (
            "pod IPs",
            registered.clone(),
            edit(&|p| p["status"]["podIPs"] = serde_json::json!([{"ip": "10.9.9.9"}])),
            false,
        ),
        ("phase", registered.clone(), edit(&|p| p["status"]["phase"] = "Failed".into()), false),
        ("host IP added", registered.clone(), edit(&|p| p["status"]["hostIP"] = "10.0.0.1".into()), false),
        ("a label", registered.clone(), edit(&|p| p["metadata"]["labels"]["app"] = "other".into()), false),
        (
            "an annotation",
            registered.clone(),
            edit(&|p| p["metadata"]["annotations"] = serde_json::json!({"a": "b"})),
            false,
        ),
        (
            "Ready",
            registered.clone(),
            edit(&|p| {
                let mut c = conditions(p);
                let ready = c.iter_mut().find(|c| c["type"] == "Ready").expect("Ready");
                ready["status"] = if ready["status"] == "True" { "False" } else { "True" }.into();
                p["status"]["conditions"] = c.into();
            }),
            false,
        ),
        (
            "another condition removed",
            registered.clone(),
            edit(&|p| {
                let c: Vec<Value> = conditions(p).into_iter().filter(|c| c["type"] != "PodScheduled").collect();
                p["status"]["conditions"] = c.into();
            }),
            false,
        ),
    ];
    let activations: Vec<Value> =
        cases.iter().map(|(_, old, new, _)| serde_json::json!({"object": new, "oldObject": old})).collect();
    let results = evaluate_cel(&validations, &activations);
    for ((what, _, _, allowed), result) in cases.iter().zip(results) {
        assert_eq!(result.iter().all(|r| *r), *allowed, "{what}: each validation gave {result:?}");
    }

    // It applies to clbsync's ServiceAccount only: the kubelet and other controllers keep writing status.
    let condition = vec![text(&spec["matchConditions"][0]["expression"])];
    let users = ["system:serviceaccount:clbsync:clbsync", "system:node:node-1", "system:serviceaccount:clbsync:other"];
    let requests: Vec<Value> =
        users.iter().map(|u| serde_json::json!({"request": {"userInfo": {"username": u}}})).collect();
    let matched: Vec<bool> = evaluate_cel(&condition, &requests).into_iter().map(|r| r[0]).collect();
    assert_eq!(matched, [true, false, false]);
}

#[test]
fn the_gate_admission_policy_compares_every_pod_status_field_of_kubernetes_1_30_and_names_the_newer_ones() {
    // A field the API server does not know makes the expression fail to compile (and, with failurePolicy Fail,
    // refuses every gate write): the policy names exactly 1.30's fields, and its comment the ones added since.
    let schema = |version: &str| -> BTreeSet<String> {
        let path = venv_tool("python")
            .parent()
            .and_then(Path::parent)
            .expect("the venv")
            .join(format!("lib/python3.11/site-packages/kubernetes_validate/kubernetes-json-schema/v{version}-local-strict/podstatus-v1.json"));
        let schema: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
                .unwrap();
        schema["properties"].as_object().expect("properties").keys().filter(|k| *k != "conditions").cloned().collect()
    };
    let text = read("deploy/examples/readiness-gate-policy/admission-policy.yaml");
    let compared: BTreeSet<String> = text
        .split("has(object.status.")
        .skip(1)
        .filter_map(|s| s.split(')').next())
        .filter(|f| *f != "conditions")
        .map(str::to_owned)
        .collect();
    assert_eq!(compared, schema("1.30.0"), "the status fields the policy compares");
    for newer in schema("1.37.0").difference(&schema("1.30.0")) {
        let comment: String = text.lines().take_while(|l| l.starts_with('#')).collect();
        assert!(comment.contains(newer.as_str()), "admission-policy.yaml says that {newer} is not compared");
    }
}
