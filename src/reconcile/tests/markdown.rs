//! `-o markdown` (issue 27 #1): what a pull-request comment or a job summary shows, snapshot-tested and parsed
//! as GitHub-flavoured Markdown (tables).

use super::*;
use crate::plan::Budget;

async fn markdown(cluster: &MemoryCluster, clb: &MemoryClb, settings: &Settings) -> String {
    let mut out = Vec::new();
    run(&rules(), cluster, clb, settings, &mut out).await.expect("run");
    String::from_utf8(out).expect("utf8")
}

/// The number of GFM tables, and their rows (header included), in `text`.
fn tables(text: &str) -> (usize, usize) {
    use pulldown_cmark::{Event, Options, Parser, Tag};
    let (mut tables, mut rows) = (0, 0);
    for event in Parser::new_ext(text, Options::ENABLE_TABLES) {
        match event {
            Event::Start(Tag::Table(_)) => tables += 1,
            Event::Start(Tag::TableRow | Tag::TableHead) => rows += 1,
            _ => {}
        }
    }
    (tables, rows)
}

#[tokio::test]
async fn a_plan_with_changes_has_a_headline_a_loud_line_for_removals_and_a_table_per_load_balancer() {
    let (cluster, clb) = world();
    let text = markdown(&cluster, &clb, &settings(Mode::Diff, Format::Markdown)).await;
    assert!(text.starts_with("### clbsync: "), "{text}");
    assert_eq!(tables(&text).0, 2, "one table per load balancer with changes\n{text}");
    assert!(text.contains("`plan sha256:"), "{text}");
    insta::assert_snapshot!(text);
}

#[tokio::test]
async fn an_in_sync_plan_says_so_with_its_fingerprint() {
    let (cluster, clb) = world();
    run_once(&cluster, &clb, Mode::Reconcile, Format::Table).await;
    let text = markdown(&cluster, &clb, &settings(Mode::Diff, Format::Markdown)).await;
    assert_eq!(tables(&text).0, 0);
    insta::assert_snapshot!(text);
}

#[tokio::test]
async fn a_rule_over_its_deletion_budget_is_held_loudly_with_why() {
    let (cluster, clb) = world();
    let mut settings = settings(Mode::Diff, Format::Markdown);
    settings.plan.max_deregister = Some(Budget::Targets(0));
    let text = markdown(&cluster, &clb, &settings).await;
    assert!(text.contains("> [!WARNING]") && text.contains("rule(s) held"), "{text}");
    assert!(text.contains("over --max-deregister 0"), "{text}");
    insta::assert_snapshot!(text);
}

#[tokio::test]
async fn a_huge_plan_is_counted_per_rule_and_stays_under_a_comments_size() {
    let (mut cluster, clb) = world();
    let pods: Vec<Pod> =
        (0..4000).map(|i| pod(&format!("web-{i}"), &format!("10.1.{}.{}", i / 250, i % 250)).ready()).collect();
    cluster.pods.insert(q("shop", "web"), Ok(pods));
    let text = markdown(&cluster, &clb, &settings(Mode::Diff, Format::Markdown)).await;
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    assert!(text.contains("`clbsync diff -o json` has every one"), "{text}");
    let (n, rows) = tables(&text);
    assert_eq!(n, 1, "one table of counts");
    assert!(rows < 10, "a row per rule, not per target: {rows}");
    assert!(text.contains("4000 register"), "{text}");
}
