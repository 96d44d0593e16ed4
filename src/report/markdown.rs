//! `-o markdown`: the plan as a pull-request comment or a CI job summary shows it. A headline with the counts, a
//! loud first line when targets go or rules are held, one table per load balancer inside `<details>`, the held
//! and skipped rules with why, and the fingerprint to apply it with. Past [`MAX_TABLE_BYTES`] of tables it
//! counts per rule instead, and says `-o json` has the rest: a GitHub comment holds 64 KB.

use std::collections::BTreeMap;
use std::io::{self, Write};

use crate::apply::ApplyReport;
use crate::plan::{Action, Plan, RulePlan, Status, percent};

/// The most table text written before the tables give way to per-rule counts.
pub const MAX_TABLE_BYTES: usize = 48 * 1024;

/// Writes the plan (and, after `reconcile`, what was applied) as Markdown.
pub fn write(plan: &Plan, applied: Option<&ApplyReport>, show_unchanged: bool, out: &mut impl Write) -> io::Result<()> {
    let s = plan.summary();
    if plan.in_sync() && applied.is_none() {
        let targets = s.unchanged + s.unmanaged;
        writeln!(
            out,
            "### clbsync: in sync\n\n{} rule(s), {targets} target(s), nothing to change.\n",
            plan.rules.len()
        )?;
        split(plan, out)?;
        return fingerprint(plan, out);
    }
    writeln!(out, "### clbsync: {}\n", headline(plan))?;
    let removing = s.deregister + s.drain;
    if removing > 0 || s.blocked > 0 || s.skipped > 0 {
        let mut loud = Vec::new();
        if removing > 0 {
            loud.push(format!(
                "**{removing} target(s) leave the load balancer** ({} deregistered, {} drained)",
                s.deregister, s.drain
            ));
        }
        if s.blocked > 0 {
            loud.push(format!("**{} rule(s) held**: nothing of them is applied", s.blocked));
        }
        if s.skipped > 0 {
            loud.push(format!("**{} rule(s) skipped** (errors): their targets are left as they are", s.skipped));
        }
        writeln!(out, "> [!WARNING]\n> {}\n", loud.join("; "))?;
    }
    let mut tables = String::new();
    let mut by_lb: BTreeMap<&str, Vec<&RulePlan>> = BTreeMap::new();
    for rule in &plan.rules {
        by_lb.entry(rule.place.load_balancer_id.as_str()).or_default().push(rule);
    }
    for (lb, rules) in &by_lb {
        tables.push_str(&lb_table(lb, rules, show_unchanged));
    }
    if tables.len() <= MAX_TABLE_BYTES {
        out.write_all(tables.as_bytes())?;
    } else {
        writeln!(out, "The plan is too long to show here: changes per rule (`clbsync diff -o json` has every one).\n")?;
        writeln!(out, "| load balancer | rule | changes |\n|---|---|---|")?;
        for rule in plan.rules.iter().filter(|r| r.changes().next().is_some()) {
            writeln!(
                out,
                "| {} | {} | {} |",
                cell(&rule.place.load_balancer_id),
                cell(&rule.place.listener_and_rule()),
                counts(rule)
            )?;
        }
        writeln!(out)?;
    }
    held(plan, out)?;
    split(plan, out)?;
    if let Some(report) = applied {
        let (ok, failed, not_attempted) = report.counts();
        writeln!(out, "Applied {ok} change(s), {failed} failed, {not_attempted} not attempted.\n")?;
    }
    fingerprint(plan, out)
}

/// `4 to register, 2 to deregister, 1 to drain`: the counts that are not zero.
fn headline(plan: &Plan) -> String {
    let s = plan.summary();
    let parts: Vec<String> = [
        (s.register, "to register"),
        (s.deregister, "to deregister"),
        (s.drain, "to drain"),
        (s.reweight, "to reweight"),
        (s.adopt, "to adopt"),
        (s.waiting, "waiting"),
        (s.blocked, "rule(s) held"),
        (s.skipped, "rule(s) skipped"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if parts.is_empty() { "no target changes".to_owned() } else { parts.join(", ") }
}

fn counts(rule: &RulePlan) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for row in rule.changes() {
        *by.entry(row.action.as_str()).or_default() += 1;
    }
    by.iter().map(|(a, n)| format!("{n} {a}")).collect::<Vec<_>>().join(", ")
}

fn lb_table(lb: &str, rules: &[&RulePlan], show_unchanged: bool) -> String {
    let rows: Vec<String> = rules
        .iter()
        .filter(|r| r.status == Status::Ready || show_unchanged)
        .flat_map(|rule| {
            let shown = rule.rows.iter().filter(move |row| row.is_pending() || show_unchanged);
            shown.map(move |row| {
                let weight = match (row.current_weight, row.weight) {
                    (Some(before), Some(after)) if before != after => format!("{before} → {after}"),
                    (_, Some(w)) | (Some(w), None) => w.to_string(),
                    (None, None) => String::new(),
                };
                let action = match row.action {
                    Action::Deregister | Action::Drain => format!("**{}**", row.action.as_str()),
                    other => other.as_str().to_owned(),
                };
                format!(
                    "| {} | {action} | {} | {} | {weight} |\n",
                    cell(&rule.place.listener_and_rule()),
                    row.target,
                    cell(row.pod.as_deref().unwrap_or(""))
                )
            })
        })
        .collect();
    if rows.is_empty() {
        return String::new();
    }
    format!(
        "<details><summary><code>{}</code>: {} row(s)</summary>\n\n| rule | action | target | pod | weight |\n|---|---|---|---|---|\n{}\n</details>\n\n",
        html(lb),
        rows.len(),
        rows.concat()
    )
}

/// Held (blocked) and skipped rules, each with why.
fn held(plan: &Plan, out: &mut impl Write) -> io::Result<()> {
    for rule in &plan.rules {
        let (word, reason) = match &rule.status {
            Status::Blocked { reason } => ("held", reason),
            Status::Skipped { reason } => ("skipped", reason),
            Status::Ready => continue,
        };
        writeln!(out, "- **{word}** `{}`: {}", cell(&rule.place.to_string()).replace('`', "'"), cell(reason))?;
    }
    if plan.rules.iter().any(|r| r.status != Status::Ready) {
        writeln!(out)?;
    }
    Ok(())
}

/// The rules with `backends:`: each backend's requested and achieved share, its targets and their weight.
fn split(plan: &Plan, out: &mut impl Write) -> io::Result<()> {
    let rules: Vec<&RulePlan> = plan.rules.iter().filter(|r| !r.split.is_empty()).collect();
    if rules.is_empty() {
        return Ok(());
    }
    writeln!(out, "| split | backend | requested | achieved | targets | weight |\n|---|---|---|---|---|---|")?;
    for rule in rules {
        for s in &rule.split {
            let weight = s.weight.map_or_else(|| "-".to_owned(), |w| w.to_string());
            writeln!(
                out,
                "| {} | {} | {} | {} | {} | {weight} |",
                cell(&rule.place.to_string()),
                cell(&s.backend),
                percent(s.requested_bp),
                percent(s.achieved_bp),
                s.targets
            )?;
        }
    }
    writeln!(out)
}

fn fingerprint(plan: &Plan, out: &mut impl Write) -> io::Result<()> {
    let f = plan.fingerprint();
    writeln!(out, "`plan {f}`: apply exactly this plan with `clbsync reconcile --expect-plan {f}`")
}

/// Text safe in a table cell: no `|`, no line break, no HTML.
fn cell(text: &str) -> String {
    html(text).replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
