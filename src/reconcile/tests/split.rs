//! A `backends:` rule end to end against the in-memory doubles (issue 28): the weights a run sets, and what the
//! table and JSON show of the split.

use std::collections::BTreeSet;

use super::*;

/// A TCP listener split 95/5 between deployments shop/web and shop/web-canary.
fn split_rules() -> Rules {
    let text = "
- load_balancer_id: lb-00000001
  listeners:
    - port: 6379
      protocol: tcp
      backends:
        - {namespace: shop, deployment: web, port: 8080, share: 95}
        - {namespace: shop, deployment: web-canary, port: 8080, share: 5}
";
    crate::rules::parse("rules.yaml", text).expect("test rules are valid")
}

/// `web` web pods and `canary` canary pods, nothing bound yet.
fn split_world(web: usize, canary: usize) -> (MemoryCluster, MemoryClb) {
    let (mut cluster, clb) = world();
    let pods = |name: &str, net: u8, n: usize| -> Vec<Pod> {
        (0..n).map(|i| pod(&format!("{name}-{i}"), &format!("10.1.{net}.{}", i + 1)).ready()).collect()
    };
    cluster.pods.insert(q("shop", "web"), Ok(pods("web", 0, web)));
    cluster.pods.insert(q("shop", "web-canary"), Ok(pods("canary", 1, canary)));
    (cluster, clb)
}

async fn run_split(cluster: &MemoryCluster, clb: &MemoryClb, mode: Mode, format: Format) -> String {
    let mut out = Vec::new();
    run(&split_rules(), cluster, clb, &settings(mode, format), &mut out).await.expect("run");
    String::from_utf8(out).expect("utf8")
}

#[tokio::test]
async fn the_table_shows_requested_and_achieved_shares_under_the_rule() {
    let (cluster, clb) = split_world(3, 1);
    let table = run_split(&cluster, &clb, Mode::Diff, Format::Table).await;
    insta::assert_snapshot!(table);
}

#[tokio::test]
async fn json_has_each_backends_requested_and_achieved_share() {
    let (cluster, clb) = split_world(20, 1);
    let json = run_split(&cluster, &clb, Mode::Diff, Format::Json).await;
    let doc: serde_json::Value = serde_json::from_str(&json).expect("json");
    insta::assert_json_snapshot!(doc["rules"][0]["split"]);
}

#[tokio::test]
async fn a_split_past_the_tolerance_warns_in_the_table() {
    // 95/5 with 1 web pod and 200 canary pods: at best web 100 × 1 against canary 1 × 200, 33% for web.
    let (cluster, clb) = split_world(1, 200);
    let table = run_split(&cluster, &clb, Mode::Diff, Format::Table).await;
    let warning = table.lines().find(|l| l.starts_with("warning:") && l.contains("split off")).unwrap_or_default();
    insta::assert_snapshot!(warning);
}

#[tokio::test]
async fn reconcile_sets_the_split_weights_and_a_second_run_is_in_sync_showing_the_split() {
    let (cluster, clb) = split_world(20, 1);
    run_split(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    let bound = clb.targets_of(&cache());
    let canary: Vec<u8> =
        bound.iter().filter(|(t, _)| t.ip.to_string().starts_with("10.1.1.")).map(|(_, w)| *w).collect();
    let web: BTreeSet<u8> =
        bound.iter().filter(|(t, _)| t.ip.to_string().starts_with("10.1.0.")).map(|(_, w)| *w).collect();
    assert_eq!((web, canary), (BTreeSet::from([10]), vec![11]));

    let before = clb.operations().len();
    let table = run_split(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    assert_eq!(clb.operations().len(), before, "a second run makes no mutating call");
    insta::assert_snapshot!(table);
}

#[tokio::test]
async fn markdown_has_a_table_of_each_backends_requested_and_achieved_share() {
    let (cluster, clb) = split_world(20, 1);
    let text = run_split(&cluster, &clb, Mode::Diff, Format::Markdown).await;
    let table: Vec<&str> =
        text.lines().skip_while(|l| !l.starts_with("| split |")).take_while(|l| !l.is_empty()).collect();
    insta::assert_snapshot!(table.join("\n"));
}

#[tokio::test]
async fn the_backend_share_gauge_has_each_backends_requested_and_achieved_share_and_drops_gone_rules() {
    let (cluster, clb) = split_world(20, 1);
    let mut out = Vec::new();
    let outcome =
        run(&split_rules(), &cluster, &clb, &settings(Mode::Diff, Format::Table), &mut out).await.expect("run");
    let metrics = crate::observe::metrics::Metrics::new();
    metrics.set_rules(&outcome.plan.rules, outcome.waits);
    let text = metrics.encode_text();
    let series = |backend: &str, kind: &str, value: &str| {
        format!(
            "clbsync_backend_share{{rule=\"lb-00000001 TCP:6379\",backend=\"deployment shop/{backend}\",kind=\"{kind}\"}} \
             {value}"
        )
    };
    for want in [
        series("web", "requested", "0.95"),
        series("web", "achieved", "0.9479"),
        series("web-canary", "requested", "0.05"),
        series("web-canary", "achieved", "0.0521"),
    ] {
        assert!(text.contains(&want), "{want}\n{text}");
    }
    metrics.set_rules(&[], outcome.waits);
    assert!(!metrics.encode_text().contains("clbsync_backend_share{"), "a rule gone from the rules file has no series");
}

/// The listener with one backend, deployment shop/green: the rules file after a blue/green switch.
fn green_rules() -> Rules {
    let text = "
- load_balancer_id: lb-00000001
  listeners:
    - port: 6379
      protocol: tcp
      backends:
        - {namespace: shop, deployment: green, port: 8080, share: 1}
";
    crate::rules::parse("rules.yaml", text).expect("test rules are valid")
}

/// Make before break across backends: green is registered at weight 0 while every blue target stays; once green
/// is healthy its weight moves, and blue goes only if that weight change went through.
#[tokio::test]
async fn a_blue_green_switch_weights_green_before_blue_goes_and_a_failed_weight_change_keeps_blue() {
    let (mut cluster, mut clb) = world();
    let blue: Vec<Pod> = (1..=3).map(|i| pod(&format!("blue-{i}"), &format!("10.1.0.{i}")).ready()).collect();
    for p in &blue {
        clb.bind(&cache(), Target::new(p.ips[0], 8080), 10, TargetKind::Ip);
    }
    cluster.pods.insert(q("shop", "web"), Ok(blue));
    cluster.pods.insert(q("shop", "green"), Ok(vec![pod("green-1", "10.1.1.1").ready()]));
    let green = t("10.1.1.1", 8080);
    let mut out = Vec::new();
    let settings = settings(Mode::Reconcile, Format::Table);
    run(&green_rules(), &cluster, &clb, &settings, &mut out).await.expect("run");
    let bound = clb.targets_of(&cache());
    assert_eq!((bound.len(), bound.get(&green)), (4, Some(&0)), "green at 0, blue kept: {bound:?}");

    let throttled = Failure { code: "RequestLimitExceeded".into(), message: "throttled".into(), request_id: None };
    clb.fail.insert(("set_weight", cache()), throttled);
    let mut out = Vec::new();
    run(&green_rules(), &cluster, &clb, &settings, &mut out).await.expect("run");
    let table = String::from_utf8(out).expect("utf8");
    let bound = clb.targets_of(&cache());
    assert_eq!(bound.len(), 4, "the weight change failed, so blue keeps serving: {table}");
    assert!(table.contains("weight change on this rule failed"), "{table}");

    clb.fail.clear();
    run(&green_rules(), &cluster, &clb, &settings, &mut Vec::new()).await.expect("run");
    assert_eq!(clb.targets_of(&cache()), [(green, 10)].into(), "green weighted, then blue gone");
}
