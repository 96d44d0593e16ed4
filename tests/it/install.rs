//! The install path the docs walk: each mode's example overlay, copied where the docs say, renders what it
//! promises; and the Kubernetes version the shipped manifests need is the one the docs state.

use std::path::Path;

use crate::packaging::{is_custom, kustomize, parse, renderings, root};
use serde_yaml::Value;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy file");
        }
    }
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in the rendering"))
}

#[test]
fn each_modes_example_overlay_works_copied_to_deploy_overlays_production() {
    for (example, workload, spec) in [
        ("overlay", "CronJob", &["spec", "jobTemplate", "spec", "template", "spec"][..]),
        ("overlay-watch", "Deployment", &["spec", "template", "spec"][..]),
    ] {
        // A checkout of this repository with the example copied where the install steps put it.
        let checkout = tempfile::tempdir_in(root().join("target")).expect("temp dir under target/");
        copy_dir(&root().join("deploy"), &checkout.path().join("deploy"));
        let production = checkout.path().join("deploy/overlays/production");
        copy_dir(&root().join("deploy/examples").join(example), &production);
        let rel = production.strip_prefix(root()).expect("under the root");
        let docs = parse(&kustomize(rel.to_str().expect("UTF-8 path")));

        let mut pod = find(&docs, workload, "clbsync");
        for key in spec {
            pod = &pod[*key];
        }
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.internal.example/platform/clbsync:0.1.0", "{example}: the image");
        assert_eq!(c["env"][0]["name"], "TENCENT_REGION", "{example}");
        assert_eq!(c["env"][0]["value"], "ap-guangzhou", "{example}: the region, not the shipped ap-beijing");
        let rules = find(&docs, "ConfigMap", "clbsync-rules")["data"]["rules.yaml"].as_str().expect("rules");
        assert_eq!(rules, std::fs::read_to_string(production.join("rules.yaml")).expect("rules.yaml"), "{example}");
        if example == "overlay-watch" {
            let gate = find(&docs, "RoleBinding", "clbsync-readiness-gate");
            assert_eq!(gate["metadata"]["namespace"], "payments", "the gate in the rules' namespace");
            assert_eq!(gate["subjects"][0]["name"], "clbsync", "completed by the component");
            assert_eq!(c["args"][1], "--watch", "watch mode");
        }
    }
}

/// The minor version of Kubernetes from which the API server serves each kind at each version the manifests use.
const SERVED_SINCE: &[(&str, &str, u32)] = &[
    ("v1", "Namespace", 0),
    ("v1", "ServiceAccount", 0),
    ("v1", "ConfigMap", 0),
    ("v1", "Secret", 0),
    ("networking.k8s.io/v1", "NetworkPolicy", 7),
    ("rbac.authorization.k8s.io/v1", "ClusterRole", 8),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", 8),
    ("rbac.authorization.k8s.io/v1", "Role", 8),
    ("rbac.authorization.k8s.io/v1", "RoleBinding", 8),
    ("apps/v1", "Deployment", 9),
    ("batch/v1", "CronJob", 21),
    ("policy/v1", "PodDisruptionBudget", 21),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy", 30),
    ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding", 30),
];

#[test]
fn every_shipped_manifest_needs_kubernetes_1_21_and_only_the_policy_example_1_30() {
    for (name, text) in renderings() {
        let needs = parse(&text)
            .iter()
            .filter(|d| !is_custom(d))
            .map(|d| {
                let (api, kind) = (d["apiVersion"].as_str().unwrap_or(""), d["kind"].as_str().unwrap_or(""));
                SERVED_SINCE
                    .iter()
                    .find(|(a, k, _)| *a == api && *k == kind)
                    .map(|(_, _, minor)| *minor)
                    .unwrap_or_else(|| panic!("{name}: {api} {kind} is not in SERVED_SINCE: add when it is served"))
            })
            .max()
            .unwrap_or(0);
        let expected = if name.ends_with("readiness-gate-policy") { 30 } else { 21 };
        assert_eq!(needs, expected, "{name} needs Kubernetes 1.{needs}; the docs say 1.{expected}");
    }
    let docs = crate::packaging::read("docs/src/install.md");
    assert!(docs.contains("Kubernetes 1.21 or newer"), "docs/src/install.md states the minimum version");
}
