//! How a `backends:` rule's split shows: under the table, each backend's requested and achieved share, and in
//! JSON the rule's `split` array.

use std::io::{self, Write};

use serde::Serialize;

use crate::plan::{Plan, RulePlan, SplitRow, percent};

/// `split: <place>: <backend>: requested 95%, achieved 94.79% (20 targets, weight 10)`, one line per backend of
/// every split rule that is planned (a blocked or skipped rule's split is not computed).
pub(super) fn lines(plan: &Plan, out: &mut impl Write) -> io::Result<()> {
    for rule in &plan.rules {
        for s in &rule.split {
            let weight = s.weight.map_or_else(|| "no targets".to_owned(), |w| format!("weight {w}"));
            let targets = if s.targets == 1 { "1 target".to_owned() } else { format!("{} targets", s.targets) };
            let (requested, achieved) = (percent(s.requested_bp), percent(s.achieved_bp));
            let with = if s.targets == 0 { weight } else { format!("{targets}, {weight}") };
            let waits = match s.waiting {
                0 => String::new(),
                n => {
                    format!("; waiting for {n} target(s) of this backend to pass health checks before its weight moves")
                }
            };
            writeln!(
                out,
                "split: {}: {}: requested {requested}, achieved {achieved} ({with}){waits}",
                rule.place, s.backend
            )?;
        }
    }
    Ok(())
}

/// One backend of a rule's `split` in JSON; shares in percent.
#[derive(Serialize)]
pub(super) struct JsonSplit<'a> {
    backend: &'a str,
    requested: f64,
    achieved: f64,
    targets: usize,
    weight: Option<u8>,
    /// Targets held below `weight` until they pass health checks; left out when none.
    #[serde(skip_serializing_if = "is_zero")]
    waiting: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The `split` array of `rule` (empty for a rule with one backend).
pub(super) fn json(rule: &RulePlan) -> Vec<JsonSplit<'_>> {
    let pct = |bp: u32| f64::from(bp) / 100.0;
    rule.split
        .iter()
        .map(|s: &SplitRow| JsonSplit {
            backend: &s.backend,
            requested: pct(s.requested_bp),
            achieved: pct(s.achieved_bp),
            targets: s.targets,
            weight: s.weight,
            waiting: s.waiting,
        })
        .collect()
}
