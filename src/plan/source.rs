//! The source sanity check (issue 27 #4): a rule whose targets would shrink past the deletion budget while its
//! workload still asks for more replicas than were listed is a selector or label typo, or a half-answered list,
//! not a scale-down: the rule is held like one over budget, with both numbers, and `--force` lets it through.

use super::budget::Budget;
use super::{Action, Row};
use crate::model::Pod;

/// What the cluster said of a rule's workload: how many of its pods were listed (Pending or Running, not
/// terminating: an Evicted or Succeeded pod the list still holds is not one the workload counts) and how many its
/// `spec.replicas` asks for. Kinds without `spec.replicas` (DaemonSet) and `selector:` rules
/// have none, and only the budget applies to them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source<'a> {
    /// The rule's pods in words: `deployment shop/web`.
    pub pods: &'a str,
    pub listed: usize,
    pub replicas: u32,
}

/// What the check compares for one backend: its pods in words, the pods of it that count as listed, and the
/// replicas its workload asks for.
pub type Facts = (String, usize, u32);

/// The pods that count as listed: Pending or Running, not terminating.
pub fn counted(pods: &[Pod]) -> usize {
    pods.iter().filter(|p| !p.terminating && matches!(p.phase.as_str(), "Pending" | "Running")).count()
}

impl<'a> Source<'a> {
    /// The check's input from a backend's [`Facts`].
    pub fn of(facts: &'a Facts) -> Source<'a> {
        let (pods, listed, replicas) = facts;
        Source { pods, listed: *listed, replicas: *replicas }
    }
}

impl Source<'_> {
    /// Why `rows` are held: more of the rule's bound targets would leave (drain or deregister) than `budget` allows,
    /// while fewer pods were listed than the workload asks for. `None` otherwise. Removals that wait for their
    /// replacements (make before break) remove nothing and do not count: a backend switched to a workload whose pods
    /// are still being created is not held.
    pub fn holds(self, rows: &[Row], budget: Budget) -> Option<String> {
        let Source { pods, listed, replicas } = self;
        if u32::try_from(listed).is_ok_and(|n| n >= replicas) {
            return None;
        }
        let bound = rows.iter().filter(|r| r.current_weight.is_some() && r.action != Action::Unmanaged).count();
        let leaving = rows.iter().filter(|r| matches!(r.action, Action::Drain | Action::Deregister)).count();
        let limit = budget.limit(bound)?;
        let plural = |n: usize, one: &str, many: &str| if n == 1 { format!("1 {one}") } else { format!("{n} {many}") };
        (leaving > limit).then(|| {
            format!(
                "{} listed for {pods}, which asks for {}: a selector typo or a half-answered list? {leaving} of its \
             {bound} bound target(s) would leave the load balancer, over --max-deregister {budget} ({limit} for this \
             rule); held; --force to apply",
                plural(listed, "pod", "pods"),
                plural(replicas as usize, "replica", "replicas"),
            )
        })
    }
}
