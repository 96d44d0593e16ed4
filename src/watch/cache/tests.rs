use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::*;
use crate::desired::Error;
use crate::rules::{RuleId, Rules};

/// Deployment watch events, as the watch reduces them.
trait DeploymentEvents {
    fn apply_deployment(&self, ns: &str, event: Event<Deployment>) -> Option<Change>;
}

impl DeploymentEvents for Cache {
    fn apply_deployment(&self, ns: &str, event: Event<Deployment>) -> Option<Change> {
        let reported = |d: Deployment| Reported {
            name: d.metadata.name.unwrap_or_default(),
            replicas: d.spec.as_ref().and_then(|s| s.replicas).and_then(|r| u32::try_from(r).ok()),
            selector: d.spec.map(|s| s.selector).ok_or_else(|| "no spec".to_owned()),
        };
        let event = match event {
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
            Event::InitApply(d) => Event::InitApply(reported(d)),
            Event::Apply(d) => Event::Apply(reported(d)),
            Event::Delete(d) => Event::Delete(reported(d)),
        };
        self.apply_workload(ns, &WorkloadKind::Deployment, event)
    }
}

fn k8s_pod(name: &str, app: &str, ip: &str, ready: bool) -> K8sPod {
    K8sPod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("app".to_owned(), app.to_owned())].into()),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready { "True" } else { "False" }.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn deployment(name: &str, app: &str) -> Deployment {
    Deployment {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(DeploymentSpec {
            selector: LabelSelector {
                match_labels: Some([("app".to_owned(), app.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn rules() -> Rules {
    parse_rules(
        "
- load_balancer_id: lb-12345678
  listeners:
    - {port: 80, protocol: tcp, backend: {namespace: shop, deployment: web, port: 8080}}
    - {port: 81, protocol: tcp, backend: {namespace: shop, selector: {app: redis}, port: 6379}}
    - {port: 82, protocol: tcp, backend: {namespace: other, selector: {app: web}, port: 8080}}
",
    )
}

fn parse_rules(yaml: &str) -> Rules {
    let dir = std::env::temp_dir().join(format!("clbsync-cache-{}-{}", std::process::id(), fastrand::u64(..)));
    std::fs::write(&dir, yaml).expect("write rules");
    let rules = crate::rules::load(&dir).expect("valid rules");
    let _ = std::fs::remove_file(&dir);
    rules
}

/// Lists `deployments`, then `pods` (as the watches do: pods wait for the Deployments' selectors), with the
/// label keys of the rules' selectors (`app`).
fn listed(cache: &Cache, ns: &str, pods: Vec<K8sPod>, deployments: Vec<Deployment>) {
    cache.add_namespace(ns, &keys(&["app"]));
    cache.apply_deployment(ns, Event::Init);
    for d in deployments {
        cache.apply_deployment(ns, Event::InitApply(d));
    }
    cache.apply_deployment(ns, Event::InitDone);
    list_pods(cache, ns, pods);
}

fn list_pods(cache: &Cache, ns: &str, pods: Vec<K8sPod>) {
    cache.apply_pod(ns, Event::Init);
    for p in pods {
        cache.apply_pod(ns, Event::InitApply(p));
    }
    assert_eq!(cache.apply_pod(ns, Event::InitDone), Some(Change::Resynced { namespace: ns.into() }));
}

/// What the rules of [`rules()`] select by in namespace shop: label keys `keys`, Deployment `web`.
fn keys(keys: &[&str]) -> Scope {
    Scope {
        keys: keys.iter().map(|k| k.to_string()).collect(),
        workloads: [Workload { kind: WorkloadKind::Deployment, name: "web".into() }].into(),
        services: BTreeSet::new(),
    }
}

fn labelled(mut pod: K8sPod, labels: &[(&str, &str)]) -> K8sPod {
    let all = pod.metadata.labels.get_or_insert_default();
    all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    pod
}

fn query(rules: &Rules, i: usize) -> PodQuery {
    rules.rules[i].backend.pods.clone()
}

#[test]
fn a_namespace_that_has_not_listed_is_not_synced_never_empty() {
    let cache = Cache::default();
    let rules = rules();
    let err = cache.query(&query(&rules, 0)).unwrap_err();
    assert!(matches!(err, Error::NotSynced { .. }), "{err}");
    cache.add_namespace("shop", &keys(&["app"]));
    cache.apply_pod("shop", Event::Init);
    let err = cache.query(&query(&rules, 1)).unwrap_err();
    assert!(matches!(err, Error::NotSynced { .. }), "a list in progress is not synced: {err}");
}

#[test]
fn listed_pods_are_selected_by_deployment_selector_or_labels() {
    let cache = Cache::default();
    let rules = rules();
    listed(
        &cache,
        "shop",
        vec![k8s_pod("web-1", "web", "10.0.0.1", true), k8s_pod("redis-1", "redis", "10.0.0.2", false)],
        vec![deployment("web", "web")],
    );
    let web = cache.query(&query(&rules, 0)).expect("synced");
    assert_eq!(web.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["web-1"]);
    assert!(web[0].ready);
    let redis = cache.query(&query(&rules, 1)).expect("synced");
    assert_eq!(redis.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["redis-1"]);
}

#[test]
fn a_failing_watch_keeps_its_pods_but_its_rules_wait_until_it_lists_again() {
    let cache = Cache::default();
    let rules = rules();
    listed(&cache, "shop", vec![k8s_pod("web-1", "web", "10.0.0.1", true)], vec![deployment("web", "web")]);
    let t0 = Instant::now();
    cache.mark_failing("shop", &Kind::Pods, t0, None);
    assert!(matches!(cache.query(&query(&rules, 0)), Err(Error::NotSynced { .. })));
    assert!(!cache.is_synced(&rules.rules[0]));
    assert!(cache.readiness(t0 + Duration::from_secs(10), Duration::from_secs(60)).is_ok(), "ready for a while");
    assert!(cache.readiness(t0 + Duration::from_secs(61), Duration::from_secs(60)).is_err());
    cache.apply_pod("shop", Event::Init);
    cache.apply_pod("shop", Event::InitApply(k8s_pod("web-1", "web", "10.0.0.1", true)));
    cache.apply_pod("shop", Event::InitDone);
    assert_eq!(cache.query(&query(&rules, 0)).expect("synced again").len(), 1);
    assert!(cache.readiness(t0 + Duration::from_secs(61), Duration::from_secs(60)).is_ok());
}

#[test]
fn a_change_touches_only_the_rules_that_select_the_pod() {
    let cache = Cache::default();
    let rules = rules();
    listed(&cache, "shop", vec![k8s_pod("web-1", "web", "10.0.0.1", false)], vec![deployment("web", "web")]);
    listed(&cache, "other", vec![], vec![]);
    let change = cache.apply_pod("shop", Event::Apply(k8s_pod("web-1", "web", "10.0.0.1", true))).expect("ready");
    assert_eq!(cache.rules_touched(&rules.rules, &change), [RuleId(0)].into());
    assert_eq!(cache.apply_pod("shop", Event::Apply(k8s_pod("web-1", "web", "10.0.0.1", true))), None, "no change");
    let moved = cache.apply_pod("shop", Event::Apply(k8s_pod("web-1", "redis", "10.0.0.1", true))).expect("labels");
    assert_eq!(cache.rules_touched(&rules.rules, &moved), [RuleId(0), RuleId(1)].into(), "old and new selectors");
    let gone = cache.apply_pod("shop", Event::Delete(k8s_pod("web-1", "redis", "10.0.0.1", true))).expect("gone");
    assert_eq!(cache.rules_touched(&rules.rules, &gone), [RuleId(1)].into());
    let other = cache.apply_pod("other", Event::Apply(k8s_pod("web-9", "web", "10.0.0.9", true))).expect("new");
    assert_eq!(cache.rules_touched(&rules.rules, &other), [RuleId(2)].into());
    let selector = cache.apply_deployment("shop", Event::Apply(deployment("web", "web2"))).expect("selector");
    assert_eq!(cache.rules_touched(&rules.rules, &selector), [RuleId(0)].into());
    assert_eq!(cache.apply_deployment("shop", Event::Apply(deployment("web", "web2"))), None, "same selector");
}

/// Issue 28: a pod of any backend of a `backends:` rule touches the rule, and the rule waits for each backend's
/// watch.
#[test]
fn a_pod_or_workload_of_any_backend_of_a_split_rule_touches_it() {
    let cache = Cache::default();
    let rules = parse_rules(
        "
- load_balancer_id: lb-12345678
  listeners:
    - port: 80
      protocol: tcp
      backends:
        - {namespace: shop, deployment: web, port: 8080, share: 95}
        - {namespace: shop, selector: {app: canary}, port: 8080, share: 5}
",
    );
    listed(&cache, "shop", vec![k8s_pod("canary-1", "canary", "10.0.0.2", false)], vec![deployment("web", "web")]);
    assert!(cache.is_synced(&rules.rules[0]));
    let canary = cache.apply_pod("shop", Event::Apply(k8s_pod("canary-1", "canary", "10.0.0.2", true))).expect("ready");
    assert_eq!(cache.rules_touched(&rules.rules, &canary), [RuleId(0)].into());
    let web = cache.apply_pod("shop", Event::Apply(k8s_pod("web-1", "web", "10.0.0.1", true))).expect("new");
    assert_eq!(cache.rules_touched(&rules.rules, &web), [RuleId(0)].into());
    let other = cache.apply_pod("shop", Event::Apply(k8s_pod("redis-1", "redis", "10.0.0.3", true))).expect("new");
    assert_eq!(cache.rules_touched(&rules.rules, &other), BTreeSet::new());
}

/// Issue 24 #11: a pass over a rule that selects a gated pod takes the other rules that select that pod (its
/// condition depends on each), and no other rule of the namespace: one stuck gated pod made every load balancer
/// of its namespace be read on every recheck.
#[test]
fn a_pass_over_a_rule_with_gated_pods_takes_the_other_rules_of_those_pods_only() {
    let cache = Cache::default();
    let rules = parse_rules(
        "
- load_balancer_id: lb-12345678
  listeners:
    - {port: 80, protocol: tcp, backend: {namespace: shop, deployment: web, port: 8080}}
    - {port: 81, protocol: tcp, backend: {namespace: shop, selector: {app: redis}, port: 6379}}
    - {port: 82, protocol: tcp, backend: {namespace: other, selector: {app: web}, port: 8080}}
    - {port: 83, protocol: tcp, backend: {namespace: shop, selector: {app: web}, port: 8080}}
",
    );
    listed(&cache, "shop", vec![k8s_pod("web-1", "web", "10.0.0.1", true)], vec![deployment("web", "web")]);
    listed(&cache, "other", vec![], vec![]);
    assert_eq!(cache.with_gate_neighbours(&rules.rules, vec![RuleId(0)]), [RuleId(0)], "no gated pod: the rule alone");

    let mut gated = k8s_pod("web-2", "web", "10.0.0.2", false);
    gated.spec = Some(k8s_openapi::api::core::v1::PodSpec {
        readiness_gates: Some(vec![k8s_openapi::api::core::v1::PodReadinessGate {
            condition_type: crate::model::GATE_CONDITION.into(),
        }]),
        ..Default::default()
    });
    cache.apply_pod("shop", Event::Apply(gated));
    assert_eq!(
        cache.with_gate_neighbours(&rules.rules, vec![RuleId(0)]),
        [RuleId(0), RuleId(3)],
        "the rules of the gated pod"
    );
    assert_eq!(cache.with_gate_neighbours(&rules.rules, vec![RuleId(1)]), [RuleId(1)], "redis selects no gated pod");
    assert_eq!(cache.with_gate_neighbours(&rules.rules, vec![RuleId(2)]), [RuleId(2)], "another namespace");
}

/// Issue 24 #16: a cached pod keeps only the labels some selector matches on, whatever else is on it.
#[test]
fn a_cached_pod_keeps_only_the_labels_a_selector_uses() {
    let cache = Cache::default();
    let big = "x".repeat(63);
    let noise: Vec<(String, String)> = (0..500).map(|i| (format!("example.com/noise-{i}"), big.clone())).collect();
    let noise: Vec<(&str, &str)> = noise.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let pod = labelled(k8s_pod("web-1", "web", "10.0.0.1", true), &noise);
    listed(&cache, "shop", vec![pod], vec![deployment("web", "web")]);
    let namespaces = cache.lock();
    let cached = &namespaces["shop"].pods.objects["web-1"];
    assert_eq!(cached.labels, [("app".to_owned(), "web".to_owned())].into());
}

/// Issue 24 #16: a Deployment whose selector uses a key the pods were cached without makes its namespace's pods
/// not synced (never matched against labels that were dropped) until the pod watch lists again.
#[test]
fn a_selector_with_a_new_label_key_waits_for_a_new_list_of_pods() {
    let cache = Cache::default();
    let rules = rules();
    let pod = labelled(k8s_pod("web-1", "web", "10.0.0.1", true), &[("tier", "front")]);
    listed(&cache, "shop", vec![pod.clone()], vec![deployment("web", "web")]);
    assert!(!cache.take_relist("shop"), "the rules' and Deployments' keys were known before the pods listed");

    let mut tiered = deployment("web", "web");
    let selector = &mut tiered.spec.as_mut().expect("spec").selector;
    selector.match_labels.get_or_insert_default().insert("tier".into(), "front".into());
    cache.apply_deployment("shop", Event::Apply(tiered));
    assert!(matches!(cache.query(&query(&rules, 0)), Err(Error::NotSynced { .. })), "pods cached without `tier`");
    assert!(cache.take_relist("shop"), "the pod watch is asked to list again");
    assert!(!cache.take_relist("shop"), "once");

    list_pods(&cache, "shop", vec![pod]);
    let web = cache.query(&query(&rules, 0)).expect("synced again");
    assert_eq!(web.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["web-1"]);
}

/// A list that began before the keys grew holds pods without the new key: it completes without syncing.
#[test]
fn a_pod_list_begun_before_the_keys_grew_does_not_sync() {
    let cache = Cache::default();
    let rules = rules();
    listed(&cache, "shop", vec![k8s_pod("web-1", "web", "10.0.0.1", true)], vec![deployment("web", "web")]);
    cache.apply_pod("shop", Event::Init);
    cache.apply_pod("shop", Event::InitApply(k8s_pod("web-1", "web", "10.0.0.1", true)));
    cache.add_namespace("shop", &keys(&["app", "tier"]));
    assert_eq!(cache.apply_pod("shop", Event::InitDone), None);
    assert!(matches!(cache.query(&query(&rules, 1)), Err(Error::NotSynced { .. })));
    list_pods(&cache, "shop", vec![k8s_pod("web-1", "web", "10.0.0.1", true)]);
    assert!(cache.query(&query(&rules, 1)).is_ok());
}

/// A workload no rule names does not grow the keys: anyone who may create a Deployment (or another watched kind)
/// in a watched namespace could otherwise make its pods be listed again at will, keeping its rules from running.
/// Once the rules name it, its keys are kept. (Issue 24's fix, lost when workload kinds replaced Deployments.)
#[test]
fn only_the_workloads_the_rules_name_add_label_keys() {
    let cache = Cache::default();
    let rules = rules();
    listed(&cache, "shop", vec![k8s_pod("web-1", "web", "10.0.0.1", true)], vec![deployment("web", "web")]);
    let mut other = deployment("other", "x");
    let selector = &mut other.spec.as_mut().expect("spec").selector;
    selector.match_labels.get_or_insert_default().insert("attacker-key".into(), "1".into());
    cache.apply_deployment("shop", Event::Apply(other));
    assert!(!cache.take_relist("shop"), "no relist for a Deployment no rule names");
    assert!(cache.is_synced(&rules.rules[0]), "its rules go on");
    assert!(cache.query(&query(&rules, 0)).is_ok());

    let mut named = keys(&["app"]);
    named.workloads.insert(Workload { kind: WorkloadKind::Deployment, name: "other".into() });
    cache.add_namespace("shop", &named);
    assert!(cache.take_relist("shop"), "named now: its key is new");
}

/// A Service a rule names adds its selector's keys; its pods are answered by its selector, and a change of it is
/// a change of the rules that name it.
#[test]
fn a_named_services_selector_chooses_its_pods_and_a_change_touches_its_rules() {
    use k8s_openapi::api::core::v1::{Service, ServicePort as K8sServicePort, ServiceSpec};
    let cache = Cache::default();
    let rules = parse_rules(
        "
- load_balancer_id: lb-12345678
  listeners:
    - {port: 80, protocol: tcp, backend: {namespace: shop, service: web, port: http}}
",
    );
    let service = |name: &str, labels: &[(&str, &str)]| Service {
        metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
        spec: Some(ServiceSpec {
            selector: Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            ports: Some(vec![K8sServicePort { name: Some("http".into()), port: 80, ..Default::default() }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let scope = Scope { keys: BTreeSet::new(), workloads: BTreeSet::new(), services: ["web".to_owned()].into() };
    cache.add_namespace("shop", &scope);
    cache.apply_deployment("shop", Event::Init);
    cache.apply_deployment("shop", Event::InitDone);
    assert!(!cache.workloads_settled("shop"), "the pods wait for the Services' selectors");
    cache.apply_service("shop", Event::Init);
    cache.apply_service("shop", Event::InitApply(service("web", &[("app", "web")])));
    cache.apply_service("shop", Event::InitApply(service("noise", &[("attacker-key", "1")])));
    cache.apply_service("shop", Event::InitDone);
    assert!(cache.workloads_settled("shop"));
    list_pods(&cache, "shop", vec![k8s_pod("web-1", "web", "10.0.0.1", true), k8s_pod("db-1", "db", "10.0.0.2", true)]);
    assert!(cache.is_synced(&rules.rules[0]));
    let def = cache.service("shop", "web").expect("cached");
    assert_eq!(def.selector, [("app".to_owned(), "web".to_owned())].into());
    let by_labels = PodQuery { namespace: "shop".into(), source: PodSource::Selector(def.selector) };
    assert_eq!(cache.query(&by_labels).expect("synced").len(), 1, "the Service's pods only");
    assert!(matches!(cache.service("shop", "gone"), Err(Error::WorkloadNotFound { .. })));

    let change = cache.apply_service("shop", Event::Apply(service("web", &[("app", "db")]))).expect("new selector");
    assert_eq!(cache.rules_touched(&rules.rules, &change), [RuleId(0)].into());
    assert!(!cache.take_relist("shop"), "`app` was known");
    let pod_change = cache.apply_pod("shop", Event::Apply(k8s_pod("db-1", "db", "10.0.0.2", false))).expect("pod");
    assert_eq!(cache.rules_touched(&rules.rules, &pod_change), [RuleId(0)].into(), "its pods are the new selector's");
    cache.apply_service("shop", Event::Apply(service("noise", &[("other-key", "1")])));
    assert!(!cache.take_relist("shop"), "a Service no rule names adds no key");
    cache.apply_service("shop", Event::Apply(service("web", &[("tier", "front")])));
    assert!(cache.take_relist("shop"), "the named Service's new key lists the pods again");
}
