//! Deletion budgets (`--max-deregister`): how many of a rule's targets one run may take out of the load balancer.
//! A plan over budget is a selector or label typo, a half-answered list, or a mass deletion someone meant: the
//! rule is held (blocked) with the numbers, and `--force` lets it through.

use super::{Action, Row};

/// Percentage budgets apply from this many bound targets: below it, replacing one target is already a third or
/// more of the rule.
pub const PERCENT_FROM: usize = 4;

/// The most removals (drains and deregistrations) one run may plan for one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// At most this many targets.
    Targets(usize),
    /// At most this percentage (0–100) of the rule's bound targets, from [`PERCENT_FROM`] targets on.
    Percent(u8),
}

impl Budget {
    /// `N` or `P%`.
    pub fn parse(s: &str) -> Result<Budget, String> {
        let bad = || format!("`{s}` is not a budget: give a number of targets (`5`) or a percentage (`50%`)");
        match s.trim().strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= 100 => Ok(Budget::Percent(p)),
                _ => Err(bad()),
            },
            None => s.trim().parse::<usize>().map(Budget::Targets).map_err(|_| bad()),
        }
    }

    /// The most removals allowed on a rule with `bound` managed targets bound now; `None`: no limit.
    pub fn limit(self, bound: usize) -> Option<usize> {
        match self {
            Budget::Targets(n) => Some(n),
            Budget::Percent(_) if bound < PERCENT_FROM => None,
            Budget::Percent(p) => Some(bound * usize::from(p) / 100),
        }
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Budget::Targets(n) => write!(f, "{n}"),
            Budget::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// The removals a rule's rows plan.
pub fn removals(rows: &[Row]) -> usize {
    rows.iter().filter(|r| matches!(r.action, Action::Drain | Action::Deregister)).count()
}

/// Why `rows` are over `budget`, or `None` when they are within it.
pub fn over(rows: &[Row], budget: Budget) -> Option<String> {
    let bound = rows.iter().filter(|r| r.current_weight.is_some() && r.action != Action::Unmanaged).count();
    let removing = removals(rows);
    let limit = budget.limit(bound)?;
    (removing > limit).then(|| {
        format!(
            "would take {removing} of its {bound} bound target(s) out of the load balancer (drains and \
             deregistrations), over --max-deregister {budget} ({limit} for this rule): check the rule's selector and \
             the pods' labels; if it is intended, run with --force"
        )
    })
}
