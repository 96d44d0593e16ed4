//! What the cluster is asked about IPs the rules no longer select: each IP once, and every IP the planner looks up.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP")
}

fn lookups(namespace: &str, ips: &[&str]) -> Vec<(String, Vec<IpAddr>)> {
    vec![(namespace.to_owned(), ips.iter().map(|s| ip(s)).collect())]
}

fn names(elsewhere: &PodsByIp, namespace: &str) -> Vec<String> {
    let pods = elsewhere[namespace].as_ref().expect("an answer");
    pods.iter().map(|p| p.name.clone()).collect()
}

/// From a hostile read: a namespace asked about once for one rule's IPs was not asked again for another rule's
/// IPs planned later on the same load balancer, so the planner found them in no answer and read "nothing holds
/// them": a removal that should have waited for their pods went ahead.
#[tokio::test]
async fn a_namespace_asked_before_is_asked_again_about_ips_it_was_not_asked_about() {
    let (cluster, _) = world();
    let (mut asked, mut elsewhere) = (Asked::new(), PodsByIp::new());

    assert!(ask_elsewhere(&cluster, lookups("shop", &["10.0.0.1"]), &mut asked, &mut elsewhere).await);
    assert_eq!(names(&elsewhere, "shop"), ["api-1"]);

    let later = lookups("shop", &["10.0.0.1", "10.0.1.1"]);
    assert!(ask_elsewhere(&cluster, later.clone(), &mut asked, &mut elsewhere).await, "10.0.1.1 is new");
    assert_eq!(names(&elsewhere, "shop"), ["api-1", "web-1"], "the answers add up");

    assert!(!ask_elsewhere(&cluster, later, &mut asked, &mut elsewhere).await, "nothing new: not asked again");
}

#[tokio::test]
async fn a_failed_ask_stands_for_the_whole_namespace() {
    let (mut cluster, _) = world();
    let (mut asked, mut elsewhere) = (Asked::new(), PodsByIp::new());
    assert!(ask_elsewhere(&cluster, lookups("shop", &["10.0.0.1"]), &mut asked, &mut elsewhere).await);

    cluster.pods.insert(q("shop", "api"), Err("connection refused".into()));
    assert!(ask_elsewhere(&cluster, lookups("shop", &["10.0.1.1"]), &mut asked, &mut elsewhere).await);
    let why = elsewhere["shop"].as_ref().expect_err("the namespace is unreadable now");
    assert!(why.contains("connection refused"), "{why}");

    // A later answer does not hide the error: the removals in shop still wait.
    cluster.pods.insert(q("shop", "api"), Ok(vec![]));
    assert!(ask_elsewhere(&cluster, lookups("shop", &["10.0.0.2"]), &mut asked, &mut elsewhere).await);
    assert!(elsewhere["shop"].is_err());
}
