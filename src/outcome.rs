//! What a run found and did, rule by rule, and the exit code that says it: read by the report's callers, the
//! observers (metrics, Events) and both drivers.

use crate::apply::{ApplyReport, RowStatus};
use crate::plan::{Fingerprint, Plan, Row, RulePlan, Status, Waits};

/// What a run found and did.
#[derive(Debug)]
pub struct Outcome {
    pub plan: Plan,
    /// `None` for `diff` (and for `reconcile` when there was nothing to apply).
    pub applied: Option<ApplyReport>,
    /// When the plan was made, and how long a held drain or removal may wait before it is reported.
    pub waits: Waits,
    /// `--expect-plan` and the plan found is another: (expected, found). Nothing was applied.
    pub plan_changed: Option<(Fingerprint, Fingerprint)>,
}

/// One rule from plan to report: what the planner decided and what apply did to each of its rows.
#[derive(Clone, Copy, Debug)]
pub struct RuleOutcome<'a> {
    pub plan: &'a RulePlan,
    applied: Option<&'a ApplyReport>,
}

impl<'a> RuleOutcome<'a> {
    /// A rule's plan and what apply did (`None`: nothing was applied).
    pub fn new(plan: &'a RulePlan, applied: Option<&'a ApplyReport>) -> Self {
        RuleOutcome { plan, applied }
    }

    /// What became of `row` (one of this rule's) in this run.
    pub fn status(&self, row: &Row) -> &'a RowStatus {
        self.applied.map_or(&RowStatus::NoOp, |a| a.status(self.plan.id, row))
    }

    /// Each row with what became of it.
    pub fn rows(self) -> impl Iterator<Item = (&'a Row, &'a RowStatus)> + 'a {
        self.plan.rows.iter().map(move |row| (row, self.status(row)))
    }

    /// Skipped, or a change failed or was not attempted: watch mode runs it again soon.
    pub fn troubled(&self) -> bool {
        let failed = self.rows().any(|(_, s)| matches!(s, RowStatus::Failed(_) | RowStatus::NotAttempted(_)));
        failed || matches!(self.plan.status, Status::Skipped { .. })
    }
}

/// The exit codes, documented in `--help` and docs/src/commands.md.
pub mod exit {
    /// Success: in sync, or every change applied.
    pub const OK: u8 = 0;
    /// Runtime error: a rule skipped or blocked, a change failed, bad rules, missing credentials.
    pub const ERROR: u8 = 1;
    /// `--detailed-exitcode`: changes are pending.
    pub const CHANGES: u8 = 2;
    /// `--expect-plan`: the plan is not the one reviewed any more; nothing was changed.
    pub const PLAN_CHANGED: u8 = 3;
    /// Command-line usage error (EX_USAGE).
    pub const USAGE: u8 = 64;
}

/// How much of the first problem the error line quotes; the report has it whole.
const TROUBLE_CHARS: usize = 600;

impl Outcome {
    /// Each rule's plan with what apply did to it, in the order of their ids.
    pub fn rules(&self) -> impl Iterator<Item = RuleOutcome<'_>> {
        self.plan.rules.iter().map(|plan| RuleOutcome::new(plan, self.applied.as_ref()))
    }

    /// One line saying what went wrong, for the end of a failed run: `2 rule(s) skipped, 1 change(s) failed; the
    /// first: <rule>: <why>`.
    pub fn trouble(&self) -> String {
        let s = self.plan.summary();
        let (_, failed, not_attempted) = self.applied.as_ref().map_or((0, 0, 0), ApplyReport::counts);
        let parts: Vec<String> = [
            (s.skipped, "rule(s) skipped"),
            (s.blocked, "rule(s) blocked"),
            (failed, "change(s) failed"),
            (not_attempted, "change(s) not attempted"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
        let mut line = parts.join(", ");
        // With stdout in a file (`diff -o json > plan.json` in CI), this line is all the job log shows.
        let held = self.plan.rules.iter().find_map(|r| match &r.status {
            Status::Blocked { reason } | Status::Skipped { reason } => Some(format!("{}: {reason}", r.place)),
            Status::Ready => None,
        });
        let failed = || {
            self.rules().find_map(|rule| {
                rule.rows().find_map(|(row, status)| match status {
                    RowStatus::Failed(f) => Some(format!("{}: {}: {f}", rule.plan.place, row.target)),
                    _ => None,
                })
            })
        };
        if let Some(first) = held.or_else(failed) {
            line.push_str("; the first: ");
            line.extend(first.chars().take(TROUBLE_CHARS));
            if first.chars().count() > TROUBLE_CHARS {
                line.push('…');
            }
        }
        line
    }

    /// The process exit code of this outcome.
    pub fn exit_code(&self, detailed: bool) -> u8 {
        if self.plan_changed.is_some() {
            return exit::PLAN_CHANGED;
        }
        let troubled = self.plan.rules.iter().any(|r| r.status != Status::Ready);
        let incomplete = self.applied.as_ref().is_some_and(ApplyReport::incomplete);
        if troubled || incomplete {
            exit::ERROR
        } else if detailed && self.applied.is_none() && self.plan.has_pending() {
            exit::CHANGES
        } else {
            exit::OK
        }
    }
}
