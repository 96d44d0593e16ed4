//! Which rules run when: pending rules with the time each may run at, and a backoff per failing rule. Pure; the
//! clock is a parameter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Rules due within this much of the first due one run in the same pass.
const BATCH: Duration = Duration::from_millis(100);
/// The first retry of a failed rule; each failure doubles it, up to the resync interval.
const RETRY_MIN: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct Schedule {
    /// Rule index → earliest time it runs.
    pending: BTreeMap<usize, Instant>,
    /// Rule index → (failures in a row, no run before).
    backoff: BTreeMap<usize, (u32, Instant)>,
    retry_max: Duration,
}

impl Schedule {
    /// An empty schedule whose retries wait at most `retry_max`.
    pub fn new(retry_max: Duration) -> Self {
        Schedule { pending: BTreeMap::new(), backoff: BTreeMap::new(), retry_max }
    }

    /// Schedules `rules` at `at` (or when their backoff ends). A rule already pending keeps its earlier time, so
    /// a burst of changes runs once, one debounce after the first.
    pub fn trigger(&mut self, rules: impl IntoIterator<Item = usize>, at: Instant) {
        for rule in rules {
            let at = self.backoff.get(&rule).map_or(at, |&(_, until)| at.max(until));
            self.pending.entry(rule).and_modify(|t| *t = (*t).min(at)).or_insert(at);
        }
    }

    /// When the next pending rule is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.pending.values().min().copied()
    }

    /// Removes and returns the rules due at `now` (and those due within [`BATCH`] of it), in rule order.
    pub fn take_due(&mut self, now: Instant) -> Vec<usize> {
        let due: Vec<usize> = self.pending.iter().filter(|&(_, &t)| t <= now + BATCH).map(|(&r, _)| r).collect();
        for rule in &due {
            self.pending.remove(rule);
        }
        due
    }

    /// `rule` failed at `now`: it runs again after its backoff (1 s, doubling, at most `retry_max`).
    pub fn failed(&mut self, rule: usize, now: Instant) {
        let failures = self.backoff.get(&rule).map_or(0, |b| b.0).saturating_add(1);
        let delay = RETRY_MIN.saturating_mul(2u32.saturating_pow(failures.min(16) - 1)).min(self.retry_max);
        self.backoff.insert(rule, (failures, now + delay));
        self.pending.insert(rule, now + delay);
    }

    /// `rule` ran without trouble: its backoff is over.
    pub fn succeeded(&mut self, rule: usize) {
        self.backoff.remove(&rule);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_burst_of_changes_runs_once_one_debounce_after_the_first() {
        let t0 = Instant::now();
        let mut s = Schedule::new(60 * S);
        s.trigger([0], t0 + S);
        s.trigger([0, 1], t0 + S / 2 + S);
        assert_eq!(s.next_due(), Some(t0 + S));
        assert!(s.take_due(t0).is_empty());
        assert_eq!(s.take_due(t0 + S), vec![0]);
        assert_eq!(s.take_due(t0 + S + S / 2), vec![1]);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_failing_rule_is_retried_with_a_doubling_backoff_capped_at_the_resync_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(3 * S);
        s.failed(0, t0);
        assert_eq!(s.next_due(), Some(t0 + S));
        s.failed(0, t0);
        assert_eq!(s.next_due(), Some(t0 + 2 * S));
        s.failed(0, t0);
        s.failed(0, t0);
        assert_eq!(s.next_due(), Some(t0 + 3 * S));
        s.take_due(t0 + 3 * S);
        s.trigger([0], t0);
        assert_eq!(s.next_due(), Some(t0 + 3 * S), "a change does not cut a backoff short");
        s.take_due(t0 + 3 * S);
        s.succeeded(0);
        s.trigger([0], t0);
        assert_eq!(s.next_due(), Some(t0));
    }
}
