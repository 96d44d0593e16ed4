//! Stage 6: render a plan, and what applying it did, as a table for people or JSON for machines.
//!
//! The JSON document is stable; its fields are documented in docs/src/commands.md ("JSON output").

use std::io::{self, Write};

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{Attribute, Cell, Color, ColumnConstraint, ContentArrangement, Table, Width};

mod json;
pub mod ending;
mod markdown;
pub mod reviewed;
mod split;
pub mod validation;

use crate::apply::{ApplyReport, RowStatus};
use crate::model::GATE_CONDITION;
use crate::outcome::RuleOutcome;
use crate::plan::{Action, Plan, Row, RulePlan, Status, Summary};

/// Output format of the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Table,
    Json,
    /// For a pull-request comment or a CI job summary ([`markdown`]).
    Markdown,
}

/// How to render.
#[derive(Clone, Copy, Debug)]
pub struct Style {
    pub format: Format,
    /// Show unchanged and unmanaged rows too.
    pub show_unchanged: bool,
    /// Colour blocked and failed rows (only when stdout is a terminal and `NO_COLOR` is unset).
    pub color: bool,
    /// Fit the table into this many columns (the terminal's width, or `COLUMNS`); `None` never wraps (logs).
    pub width: Option<u16>,
    /// Show at most this many table rows, then `… N more; use -o json` (`None`: all). JSON is never cut.
    pub max_rows: Option<usize>,
}

/// The default of `--max-rows`: a table longer than this is not read by anyone, and the table is built in memory
/// to size its columns.
pub const MAX_ROWS: usize = 1_000;

impl Default for Style {
    fn default() -> Self {
        Style { format: Format::Table, show_unchanged: false, color: false, width: None, max_rows: Some(MAX_ROWS) }
    }
}

/// Below this width the table puts load balancer, listener and rule in one column.
const COMPACT_BELOW: u16 = 120;

/// Writes the plan (and, after `reconcile`, the per-change status) to `out`.
///
/// JSON is written change by change as it is serialised; the table holds at most [`Style::max_rows`] rows.
pub fn write(plan: &Plan, applied: Option<&ApplyReport>, style: Style, out: &mut impl Write) -> io::Result<()> {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    match style.format {
        Format::Table => table(plan, applied, style, &mut out)?,
        Format::Json => {
            serde_json::to_writer_pretty(
                &mut out,
                &json::Document { plan, applied, show_unchanged: style.show_unchanged },
            )?;
            writeln!(out)?;
        }
        Format::Markdown => markdown::write(plan, applied, style.show_unchanged, &mut out)?,
    }
    out.flush()
}

fn table(plan: &Plan, applied: Option<&ApplyReport>, style: Style, out: &mut impl Write) -> io::Result<()> {
    let summary = plan.summary();
    if plan.in_sync() && applied.is_none() {
        let targets = summary.unchanged + summary.unmanaged;
        writeln!(out, "In sync: {} rule(s), {targets} target(s), nothing to change.", plan.rules.len())?;
        if !style.show_unchanged {
            split::lines(plan, out)?;
            warnings(plan, out)?;
            return writeln!(out, "plan {}", plan.fingerprint());
        }
    }
    let compact = style.width.is_some_and(|w| w < COMPACT_BELOW);
    let mut t = new_table(style, compact, applied.is_some());
    let max_rows = style.max_rows.unwrap_or(usize::MAX);
    let mut rows = 0;
    for rule in &plan.rules {
        let cells = rule_cells(rule, compact, applied, style);
        for cells in cells.take(max_rows.saturating_sub(rows)) {
            t.add_row(cells);
        }
        rows += match rule.status {
            Status::Ready => rule.rows.iter().filter(|r| r.is_pending() || style.show_unchanged).count(),
            _ => 1,
        };
    }
    if rows > 0 {
        if let Some(width) = style.width {
            keep_words_whole(&mut t, width);
        }
        writeln!(out, "{t}")?;
    }
    if rows > max_rows {
        writeln!(out, "… {} more; use -o json", rows - max_rows)?;
    }
    // One line per reason: a bad key or an unreachable API skips every rule for the same reason.
    let mut reasons: Vec<(&str, &str, Vec<String>)> = Vec::new();
    for rule in &plan.rules {
        let (word, reason) = match &rule.status {
            Status::Blocked { reason } => ("blocked", reason),
            Status::Skipped { reason } => ("skipped", reason),
            Status::Ready => continue,
        };
        match reasons.iter_mut().find(|(w, r, _)| *w == word && *r == reason) {
            Some((_, _, rules)) => rules.push(rule.place.to_string()),
            None => reasons.push((word, reason, vec![rule.place.to_string()])),
        }
    }
    for (word, reason, rules) in reasons {
        match rules.as_slice() {
            [one] => writeln!(out, "{word}: {one}: {reason}")?,
            many => writeln!(out, "{word}: {} rules ({}): {reason}", many.len(), many.join(", "))?,
        }
    }
    for rule in plan.rules.iter().filter(|r| r.status == Status::Ready) {
        for row in rule.rows.iter().filter(|r| r.action == Action::Wait) {
            let why = row.note.as_deref().unwrap_or("held");
            writeln!(out, "waiting: {}: {} ({}): {why}", rule.place, row.target, row.pod.as_deref().unwrap_or("-"))?;
        }
    }
    for g in &plan.gate {
        let c = &g.condition;
        let status = if c.status { "True" } else { "False" };
        writeln!(out, "gate: pod {}/{}: {GATE_CONDITION}={status} {}: {}", g.namespace, g.pod, c.reason, c.message)?;
    }
    if let Some(report) = applied {
        failures(plan, report, out)?;
    }
    split::lines(plan, out)?;
    warnings(plan, out)?;
    writeln!(out, "{}", wrap(&summary_line(&summary), style.width))?;
    if let Some(report) = applied {
        let (ok, failed, not_attempted) = report.counts();
        writeln!(out, "Applied {ok} change(s), {failed} failed, {not_attempted} not attempted.")?;
    }
    writeln!(out, "plan {}", plan.fingerprint())
}

/// `warning: <place>: <text>` for every pod that matched a rule but could not become a target.
fn warnings(plan: &Plan, out: &mut impl Write) -> io::Result<()> {
    for rule in &plan.rules {
        for w in &rule.warnings {
            writeln!(out, "warning: {}: {w}", rule.place)?;
        }
    }
    Ok(())
}

/// An empty table with the columns of the report: the place in one column when `compact`, STATUS after
/// `reconcile`.
fn new_table(style: Style, compact: bool, applied: bool) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY);
    match style.width {
        Some(width) => t.set_content_arrangement(ContentArrangement::Dynamic).set_width(width),
        None => t.set_content_arrangement(ContentArrangement::Disabled),
    };
    if !style.color {
        t.force_no_tty();
    }
    let mut header = if compact {
        vec!["WHERE", "ACTION", "TARGET", "POD", "WEIGHT"]
    } else {
        vec!["LOAD BALANCER", "LISTENER", "RULE", "ACTION", "TARGET", "POD", "WEIGHT"]
    };
    if applied {
        header.push("STATUS");
    }
    t.set_header(header);
    t
}

/// The table rows of one rule, made as they are taken: one for a blocked or skipped rule, else one per row shown.
fn rule_cells<'a>(
    rule: &'a RulePlan,
    compact: bool,
    applied: Option<&'a ApplyReport>,
    style: Style,
) -> impl Iterator<Item = Vec<Cell>> + 'a {
    let base = move || -> Vec<Cell> {
        if compact {
            vec![Cell::new(rule.place.to_string())]
        } else {
            [rule.place.load_balancer_id.clone(), listener_cell(rule), rule_cell(rule)]
                .into_iter()
                .map(Cell::new)
                .collect()
        }
    };
    let held = match &rule.status {
        Status::Ready => None,
        Status::Blocked { .. } => Some(("BLOCKED", format!("{} change(s) held", rule.changes().count()))),
        Status::Skipped { .. } => Some(("SKIPPED", "error, see below".to_string())),
    };
    let held_row = held.map(|(word, n)| {
        let mut cells = base();
        cells.push(paint(Cell::new(word).add_attribute(Attribute::Bold), Color::Red, style.color));
        cells.extend([Cell::new(n), Cell::new(&rule.pods), Cell::new("")]);
        if applied.is_some() {
            cells.push(Cell::new("not applied"));
        }
        cells
    });
    let ready = rule.status == Status::Ready;
    let shown = rule.rows.iter().filter(move |row| ready && (row.is_pending() || style.show_unchanged));
    held_row.into_iter().chain(shown.map(move |row| {
        let mut cells = base();
        let action = Cell::new(row.action.as_str());
        cells.push(match row.action {
            Action::Register => paint(action, Color::Green, style.color),
            Action::Deregister => paint(action, Color::Red, style.color),
            Action::Drain | Action::Reweight | Action::Wait | Action::Adopt => {
                paint(action, Color::Yellow, style.color)
            }
            _ => action,
        });
        cells.extend([Cell::new(row.target.to_string()), Cell::new(pod_cell(row)), Cell::new(weight_cell(row))]);
        if let Some(report) = applied {
            let status = report.status(rule.id, row);
            let failed = matches!(status, RowStatus::Failed(_) | RowStatus::NotAttempted(_));
            let cell = Cell::new(status_text(status));
            cells.push(if failed { paint(cell, Color::Red, style.color) } else { cell });
        }
        cells
    }))
}

/// Under the table, every distinct failure once with its code, message and RequestId, and the targets it hit
/// (the table's STATUS column has only room for the code).
fn failures(plan: &Plan, report: &ApplyReport, out: &mut impl Write) -> io::Result<()> {
    let mut seen: Vec<(String, Vec<String>)> = Vec::new();
    for rule in &plan.rules {
        for (row, status) in RuleOutcome::new(rule, Some(report)).rows() {
            let (word, text) = match status {
                RowStatus::Failed(f) => ("failed", f.to_string()),
                RowStatus::NotAttempted(why) => ("not attempted", why.clone()),
                RowStatus::NoOp | RowStatus::Applied => continue,
            };
            let what = format!("{word}: {}: {text}", rule.place);
            match seen.iter_mut().find(|(w, _)| *w == what) {
                Some((_, targets)) => targets.push(row.target.to_string()),
                None => seen.push((what, vec![row.target.to_string()])),
            }
        }
    }
    for (what, targets) in seen {
        let shown: Vec<&str> = targets.iter().take(5).map(String::as_str).collect();
        let more = if targets.len() > shown.len() {
            format!(" and {} more", targets.len() - shown.len())
        } else {
            String::new()
        };
        writeln!(out, "{what} [{}{more}]", shown.join(", "))?;
    }
    Ok(())
}

/// Fitting a table into a width wraps cells at spaces, and splits a word only when its column is narrower than
/// it: each column is kept at least as wide as its longest word (`shop.example.com/api`, `10.244.1.12:8080`),
/// as long as those words fit the width together; when they do not (an IPv6 target beside a 63-character pod
/// name at 80 columns), words are split rather than the table made wider than `width`.
fn keep_words_whole(t: &mut Table, width: u16) {
    let mut widest: Vec<usize> = Vec::new();
    for row in t.header().into_iter().chain(t.row_iter()) {
        for (i, cell) in row.cell_iter().enumerate() {
            let word = cell.content().split_whitespace().map(|w| w.chars().count()).max().unwrap_or(0);
            if widest.len() <= i {
                widest.resize(i + 1, 0);
            }
            widest[i] = widest[i].max(word);
        }
    }
    // Each cell's padding (one space each side) and the borders: one more than the columns.
    let needed: usize = widest.iter().map(|w| w + 2).sum::<usize>() + widest.len() + 1;
    if needed > usize::from(width) {
        return;
    }
    for (i, word) in widest.into_iter().enumerate() {
        if let Some(column) = t.column_mut(i) {
            // The constraint's width includes the cell's padding.
            let at_least = u16::try_from(word + 2).unwrap_or(u16::MAX);
            column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(at_least)));
        }
    }
}

/// `line` broken after a `, ` where it would pass `width` (the summary line at `COLUMNS=80`).
fn wrap(line: &str, width: Option<u16>) -> String {
    let Some(width) = width.map(usize::from) else { return line.to_owned() };
    let mut out = String::new();
    let mut current = 0;
    for (i, part) in line.split(", ").enumerate() {
        let len = part.chars().count();
        if i > 0 {
            if current + 2 + len > width {
                out.push_str(",\n");
                current = 0;
            } else {
                out.push_str(", ");
                current += 2;
            }
        }
        out.push_str(part);
        current += len;
    }
    out
}

fn paint(cell: Cell, color: Color, enabled: bool) -> Cell {
    if enabled { cell.fg(color) } else { cell }
}

/// `2 to register, 1 to deregister, 1 to drain, 0 to reweight, 14 unchanged, 0 blocked`.
pub fn summary_line(s: &Summary) -> String {
    let mut line = format!(
        "{} to register, {} to deregister, {} to drain, {} to reweight, {} unchanged, {} blocked",
        s.register, s.deregister, s.drain, s.reweight, s.unchanged, s.blocked
    );
    if s.adopt > 0 {
        line.push_str(&format!(", {} to adopt", s.adopt));
    }
    if s.waiting > 0 {
        line.push_str(&format!(", {} waiting", s.waiting));
    }
    if s.unmanaged > 0 {
        line.push_str(&format!(", {} unmanaged", s.unmanaged));
    }
    if s.skipped > 0 {
        line.push_str(&format!(", {} skipped (errors)", s.skipped));
    }
    line
}

/// `HTTP:80 lbl-1a2b3c4d`: the listener, with its id when it was resolved (or given).
fn listener_cell(rule: &RulePlan) -> String {
    let id = rule.binding.as_ref().map(|b| &b.listener).or(rule.listener_id.as_ref());
    match id {
        Some(id) => format!("{}:{} {id}", rule.place.protocol, rule.place.port),
        None => format!("{}:{}", rule.place.protocol, rule.place.port),
    }
}

fn rule_cell(rule: &RulePlan) -> String {
    match &rule.place.l7 {
        Some((domain, url)) => format!("{domain}{url}"),
        None => "-".into(),
    }
}

fn pod_cell(row: &Row) -> String {
    match (&row.pod, &row.note) {
        (Some(p), _) if row.action == Action::Unmanaged => match &row.unmanaged {
            Some(why) => format!("{p} (bound, {})", why.reason()),
            None => p.clone(),
        },
        (Some(p), _) => p.clone(),
        (None, Some(n)) if row.action == Action::Unmanaged => n.clone(),
        _ => "-".into(),
    }
}

fn weight_cell(row: &Row) -> String {
    match (row.action, row.current_weight, row.weight) {
        (Action::Reweight | Action::Drain, Some(from), Some(to)) => format!("{from} → {to}"),
        (Action::Adopt, Some(from), Some(to)) if from != to => format!("{from} → {to}"),
        (Action::Deregister, Some(from), _) => format!("{from} → -"),
        (_, _, Some(w)) => w.to_string(),
        _ => "-".into(),
    }
}

fn status_text(s: &RowStatus) -> String {
    match s {
        RowStatus::NoOp => "-".into(),
        RowStatus::Applied => "applied".into(),
        RowStatus::Failed(f) => match &f.request_id {
            Some(id) => format!("failed: {} ({id})", f.code),
            None => format!("failed: {}", f.code),
        },
        RowStatus::NotAttempted(_) => "not attempted (see below)".into(),
    }
}
