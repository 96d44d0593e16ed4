//! Monitoring as code (issue 30): the alerting rules of deploy/components/monitoring checked and unit-tested
//! with a real promtool, the PrometheusRules that wrap them, the README's copies, the Grafana dashboard's
//! queries, and the components' Operator objects against the Prometheus Operator's own CRD schemas. The tools
//! come from testbed/monitoring-tools.sh; a missing one fails the test, never skips it.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_yaml::Value;

use crate::packaging::{WITH_COMPONENTS, is_custom, kustomize_with, parse};

const COMPONENT: &str = "deploy/components/monitoring";
/// Each rules file (the one source of the alerts) and the PrometheusRule `make manifests` renders from it.
const RULES: [(&str, &str); 2] =
    [("rules/watch.yaml", "prometheusrule.yaml"), ("rules/cronjob.yaml", "cronjob/prometheusrule.yaml")];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn component(path: &str) -> PathBuf {
    root().join(COMPONENT).join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs Debian's promtool with `stdin`: (exit code, stdout and stderr).
pub fn promtool(args: &[&str], stdin: &str) -> (i32, String) {
    let path = Path::new("/usr/bin/promtool");
    assert!(path.exists(), "promtool is missing: run testbed/monitoring-tools.sh");
    let mut child = Command::new(path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write promtool's stdin");
    let out = child.wait_with_output().expect("promtool's output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// The alert names of a rules file, in order.
fn alerts(text: &str) -> Vec<String> {
    let doc: Value = serde_yaml::from_str(text).expect("a rules file");
    let groups = doc["groups"].as_sequence().expect("groups");
    let rules = groups.iter().flat_map(|g| g["rules"].as_sequence().expect("rules"));
    rules.map(|r| r["alert"].as_str().expect("only alerting rules").to_owned()).collect()
}

#[test]
fn every_rules_file_passes_promtool_check_rules() {
    for (file, _) in RULES {
        let path = component(file);
        let (code, out) = promtool(&["check", "rules", path.to_str().expect("UTF-8")], "");
        assert_eq!(code, 0, "promtool check rules {file}:\n{out}");
        let n = alerts(&read(&path)).len();
        assert!(out.contains(&format!("SUCCESS: {n} rules found")), "{file}: {n} alerts\n{out}");
    }
}

/// For each rules file: its unit tests pass, and every alert has a case where it fires and one where it does
/// not (so an alert added without a test fails here).
#[test]
fn promtool_unit_tests_show_every_alert_firing_and_silent() {
    for (file, _) in RULES {
        let tests = component(&file.replace(".yaml", ".test.yaml"));
        let (code, out) = promtool(&["test", "rules", tests.to_str().expect("UTF-8")], "");
        assert_eq!(code, 0, "promtool test rules {}:\n{out}", tests.display());
        assert!(out.contains("SUCCESS"), "{out}");

        let doc: Value = serde_yaml::from_str(&read(&tests)).expect("a promtool test file");
        let (mut fires, mut silent) = (BTreeSet::new(), BTreeSet::new());
        for test in doc["tests"].as_sequence().expect("tests") {
            for case in test["alert_rule_test"].as_sequence().expect("alert_rule_test") {
                let name = case["alertname"].as_str().expect("alertname").to_owned();
                let expected = case["exp_alerts"].as_sequence().map_or(0, Vec::len);
                if expected > 0 { &mut fires } else { &mut silent }.insert(name);
            }
        }
        for alert in alerts(&read(&component(file))) {
            assert!(fires.contains(&alert), "{}: no case where {alert} fires", tests.display());
            assert!(silent.contains(&alert), "{}: no case where {alert} stays silent", tests.display());
        }
    }
}

/// The unit tests can fail: each rules file, broken in ways that would page wrongly, fails its tests.
#[test]
fn promtool_unit_tests_fail_on_broken_rules() {
    let mutations = [
        ("a threshold that fires on healthy series", "> 0", ">= 0"),
        ("no wait before firing", "for: 5m", "for: 0m"),
        ("a leader filter that lets stale followers in", "clbsync_leader{job=\"clbsync-watch\"} == 1", "vector(1)"),
        ("no last success kept through failed runs", "max_over_time(", "last_over_time("),
    ];
    for (file, _) in RULES {
        let text = read(&component(file));
        let tests = read(&component(&file.replace(".yaml", ".test.yaml")));
        let name = Path::new(file).file_name().expect("name").to_str().expect("UTF-8");
        let mut applied = 0;
        for (what, from, to) in mutations {
            if !text.contains(from) {
                continue;
            }
            applied += 1;
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::write(dir.path().join(name), text.replace(from, to)).expect("write the broken rules");
            let test_file = dir.path().join("rules.test.yaml");
            std::fs::write(&test_file, &tests).expect("write the tests");
            let (code, out) = promtool(&["test", "rules", test_file.to_str().expect("UTF-8")], "");
            assert_ne!(code, 0, "{file} with {what} still passes its unit tests:\n{out}");
        }
        assert!(applied >= 2, "{file}: at least two mutations apply ({applied})");
    }
}

#[test]
fn each_prometheus_rule_is_its_rules_file_under_spec() {
    for (file, rendered) in RULES {
        let rules = read(&component(file));
        let manifest = read(&component(rendered));
        let indented: String =
            rules.lines().map(|l| if l.is_empty() { "\n".to_owned() } else { format!("  {l}\n") }).collect();
        let (head, spec) = manifest.split_once("\nspec:\n").expect("a spec");
        assert!(head.contains("kind: PrometheusRule") && head.contains(file), "{rendered}:\n{head}");
        assert!(spec == indented, "{rendered} does not wrap {file}: run `make manifests` (deploy/render.sh)");
        let doc: Value = serde_yaml::from_str(&manifest).expect("YAML");
        let plain: Value = serde_yaml::from_str(&rules).expect("YAML");
        assert_eq!(doc["spec"], plain, "{rendered}");
    }
}

/// The docs' chapter "Metrics and alerts" shows each rules file whole, as a YAML block.
#[test]
fn the_docs_quote_each_rules_file_verbatim() {
    let section = read(&root().join("docs/src/monitoring.md"));
    for (file, _) in RULES {
        let quoted = format!("```yaml\n{}```", read(&component(file)));
        assert!(section.contains(&quoted), "docs/src/monitoring.md must quote {COMPONENT}/{file} whole");
        assert!(section.contains(&format!("{COMPONENT}/{file}")), "the docs name {file}");
    }
}

/// The dashboard's variables' values, substituted into its queries.
const SUBSTITUTIONS: [(&str, &str); 2] = [("$job", "clbsync-watch"), ("$__rate_interval", "2m")];

#[test]
fn the_dashboard_is_importable_and_every_query_parses() {
    let path = component("dashboard/clbsync.json");
    let dash: serde_json::Value = serde_json::from_str(&read(&path)).expect("JSON");
    assert!(dash["schemaVersion"].as_u64().is_some_and(|v| v >= 39), "a current Grafana's schemaVersion");
    assert_eq!(dash["uid"], "clbsync");
    assert!(dash["id"].is_null(), "no database id: importable into any Grafana");
    let vars = dash["templating"]["list"].as_array().expect("variables");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("variable {name}"));
    assert_eq!(var("datasource")["type"], "datasource");
    assert_eq!(var("datasource")["query"], "prometheus");
    let counters: Vec<&str> = var("counters")["options"]
        .as_array()
        .expect("options")
        .iter()
        .map(|o| o["value"].as_str().expect("a value"))
        .collect();
    assert_eq!(counters, ["increase", "last_over_time"], "watch mode's counters, and the Pushgateway's last run");

    let panels = dash["panels"].as_array().expect("panels");
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().expect("an id")).collect();
    assert_eq!(ids.len(), panels.len(), "unique panel ids");
    let mut cells = BTreeSet::new();
    let mut exprs = Vec::new();
    for p in panels {
        let title = p["title"].as_str().expect("a title");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}: the data source variable");
        let g = &p["gridPos"];
        let (x, y, w, h) = (g["x"].as_u64(), g["y"].as_u64(), g["w"].as_u64(), g["h"].as_u64());
        let (x, y, w, h) = (x.expect("x"), y.expect("y"), w.expect("w"), h.expect("h"));
        assert!(x + w <= 24, "{title}: within the 24 columns");
        for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
            assert!(cells.insert(cell), "{title} overlaps another panel at {cell:?}");
        }
        for t in p["targets"].as_array().expect("targets") {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            exprs.push((title.to_owned(), t["expr"].as_str().expect("an expr").to_owned()));
        }
    }
    let wanted = ["Reconcile results", "Changes by action and status", "CLB API calls", "CLB API errors", "Rules by"];
    for wanted in wanted.into_iter().chain(["Leader", "Last success", "Events"]) {
        assert!(exprs.iter().any(|(t, _)| t.contains(wanted)), "a panel about {wanted}");
    }

    // Every query, with each value of the variables, parses as PromQL: promtool checks it as a recording rule.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for counter in &counters {
        for (i, (title, expr)) in exprs.iter().enumerate() {
            let mut expr = expr.replace("$counters", counter);
            for (var, value) in SUBSTITUTIONS {
                expr = expr.replace(var, value);
            }
            assert!(!expr.contains('$'), "{title}: a variable left in {expr}");
            let expr = serde_json::to_string(&expr).expect("a JSON string is a YAML string");
            rules.push_str(&format!("      - record: dashboard:{counter}:{i}\n        expr: {expr}\n"));
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("dashboard.rules.yaml");
    std::fs::write(&file, &rules).expect("write the queries");
    let (code, out) = promtool(&["check", "rules", file.to_str().expect("UTF-8")], "");
    assert_eq!(code, 0, "the dashboard's queries:\n{out}\n{rules}");
}

/// The Grafana sidecar loads ConfigMaps labelled grafana_dashboard: "1"; both components ship the same one.
#[test]
fn the_components_ship_the_dashboard_as_a_sidecar_configmap() {
    let json = read(&component("dashboard/clbsync.json"));
    for (base, comp) in WITH_COMPONENTS {
        let docs = parse(&kustomize_with(base, comp));
        let cm = docs.iter().find(|d| d["metadata"]["name"] == "clbsync-dashboard").expect("the dashboard");
        assert_eq!(cm["kind"], "ConfigMap");
        assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1", "{comp}");
        assert_eq!(cm["metadata"]["namespace"], "clbsync", "{comp}");
        assert_eq!(cm["data"]["clbsync.json"].as_str(), Some(json.as_str()), "{comp}: the JSON file as it is");
    }
}

/// The PodMonitor selects deploy/watch's pods and names a port they have; the job label is the one the rules
/// select.
#[test]
fn the_pod_monitor_scrapes_the_watch_pods_metrics_port_under_the_rules_job() {
    let docs = parse(&kustomize_with("deploy/watch", COMPONENT));
    let monitor = docs.iter().find(|d| d["kind"] == "PodMonitor").expect("a PodMonitor");
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").expect("the Deployment");
    let pod = &deployment["spec"]["template"];
    let labels = pod["metadata"]["labels"].as_mapping().expect("pod labels");
    for (k, v) in monitor["spec"]["selector"]["matchLabels"].as_mapping().expect("matchLabels") {
        assert_eq!(labels.get(k), Some(v), "the pods carry {k:?}");
    }
    assert_eq!(monitor["metadata"]["namespace"], deployment["metadata"]["namespace"], "the pods' namespace");
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    let ports = pod["spec"]["containers"][0]["ports"].as_sequence().expect("ports");
    assert!(ports.iter().any(|p| p["name"] == endpoint["port"]), "a container port named {:?}", endpoint["port"]);
    assert_eq!(endpoint["path"], "/metrics");
    let job = &endpoint["relabelings"][0];
    assert_eq!((&job["targetLabel"], &job["replacement"]), (&"job".into(), &"clbsync-watch".into()));
    let rules = read(&component("rules/watch.yaml"));
    assert!(rules.matches("job=\"clbsync-watch\"").count() >= alerts(&rules).len(), "the rules select that job");
    let cron = parse(&kustomize_with("deploy/cronjob", &format!("{COMPONENT}/cronjob")));
    assert!(!cron.iter().any(|d| d["kind"] == "PodMonitor"), "a CronJob's pod is not scraped: it pushes");
}

/// Runs testbed/prometheus-operator-schemas/validate.mjs on `docs`: (exit code, output).
fn validate_custom(docs: &[Value]) -> (i32, String) {
    let modules = root().join(".venv/prometheus-operator-schemas/node_modules");
    assert!(modules.exists(), "{} is missing: run testbed/monitoring-tools.sh", modules.display());
    let mut child = Command::new("node")
        .arg(root().join("testbed/prometheus-operator-schemas/validate.mjs"))
        .env("CLBSYNC_SCHEMAS_NODE_MODULES", modules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let json = serde_json::to_string(docs).expect("JSON");
    child.stdin.take().expect("stdin").write_all(json.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("node's output");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_operator_objects_validate_against_the_prometheus_operator_schemas() {
    let mut docs: Vec<Value> = WITH_COMPONENTS.iter().flat_map(|(b, c)| parse(&kustomize_with(b, c))).collect();
    docs.retain(is_custom);
    docs.extend(parse(&read(&component("cronjob/pushgateway-servicemonitor.example.yaml"))));
    let (code, out) = validate_custom(&docs);
    assert_eq!(code, 0, "{out}");
    for name in ["PodMonitor/clbsync", "PrometheusRule/clbsync-watch", "PrometheusRule/clbsync-cronjob"] {
        assert!(out.lines().any(|l| l == format!("passed {name}")), "{name}:\n{out}");
    }
    assert_eq!(out.matches("passed ").count(), docs.len(), "{out}");

    // The validator can fail: a port number where the schema wants a name, and a duration with a space.
    let mut broken = docs.iter().find(|d| d["kind"] == "PodMonitor").expect("the PodMonitor").clone();
    broken["spec"]["podMetricsEndpoints"][0]["port"] = 8080.into();
    broken["spec"]["podMetricsEndpoints"][0]["interval"] = "30 s".into();
    let (code, out) = validate_custom(&[broken]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED PodMonitor/clbsync") && out.contains("interval") && out.contains("port"), "{out}");
}
