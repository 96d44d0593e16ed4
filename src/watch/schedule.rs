//! Which rules run when: pending rules with the time each may run at, a backoff per failing rule, and one per
//! rule that keeps waiting on CLB. Pure; the clock is a parameter.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::rules::RuleId;

/// Rules due within this much of the first due one run in the same pass.
const BATCH: Duration = Duration::from_millis(100);
/// The first retry of a failed rule; each failure doubles it, up to the resync interval.
const RETRY_MIN: Duration = Duration::from_secs(1);
/// How soon a rule that waits on CLB runs again while its wait is young: a new target passes CLB's health checks
/// in about 15 s with CLB's defaults, and nothing else will say when it has.
pub const RECHECK: Duration = Duration::from_secs(2);
/// How long a wait is young: past it, the rechecks of that rule double from 2 × [`RECHECK`] up to
/// [`RECHECK_MAX`] (a target that is not healthy by then is stuck, not warming up).
const RECHECK_FAST_FOR: Duration = Duration::from_secs(20);
/// The longest wait between two rechecks of a rule.
const RECHECK_MAX: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Schedule {
    /// Rule index → earliest time it runs.
    pending: BTreeMap<RuleId, Instant>,
    /// Rule index → (failures in a row, no run before).
    backoff: BTreeMap<RuleId, (u32, Instant)>,
    /// Rule index → (since when it has waited, rechecks since its wait stopped being young).
    waiting: BTreeMap<RuleId, (Instant, u32)>,
    retry_max: Duration,
}

impl Schedule {
    /// An empty schedule whose retries wait at most `retry_max`.
    pub fn new(retry_max: Duration) -> Self {
        Schedule { pending: BTreeMap::new(), backoff: BTreeMap::new(), waiting: BTreeMap::new(), retry_max }
    }

    /// Schedules `rules` at `at` (or when their backoff ends). A rule already pending keeps its earlier time, so
    /// a burst of changes runs once, one debounce after the first.
    pub fn trigger(&mut self, rules: impl IntoIterator<Item = RuleId>, at: Instant) {
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
    pub fn take_due(&mut self, now: Instant) -> Vec<RuleId> {
        let due: Vec<RuleId> = self.pending.iter().filter(|&(_, &t)| t <= now + BATCH).map(|(&r, _)| r).collect();
        for rule in &due {
            self.pending.remove(rule);
        }
        due
    }

    /// `rule` failed at `now`: it runs again after its backoff (1 s, doubling, at most `retry_max`).
    pub fn failed(&mut self, rule: RuleId, now: Instant) {
        let failures = self.backoff.get(&rule).map_or(0, |b| b.0).saturating_add(1);
        let delay = RETRY_MIN.saturating_mul(2u32.saturating_pow(failures.min(16) - 1)).min(self.retry_max);
        self.backoff.insert(rule, (failures, now + delay));
        self.pending.insert(rule, now + delay);
    }

    /// `rule` ran without trouble: its backoff is over.
    pub fn succeeded(&mut self, rule: RuleId) {
        self.backoff.remove(&rule);
    }

    /// `rule` ran at `now` and still waits on CLB: it runs again after [`RECHECK`] while its wait is young, then
    /// after 4 s, 8 s, ... up to [`RECHECK_MAX`] (or the resync interval, if shorter). Returns the delay.
    pub fn recheck(&mut self, rule: RuleId, now: Instant) -> Duration {
        let (since, slow) = self.waiting.entry(rule).or_insert((now, 0));
        let delay = if now.saturating_duration_since(*since) < RECHECK_FAST_FOR {
            RECHECK
        } else {
            *slow = slow.saturating_add(1);
            RECHECK.saturating_mul(2u32.saturating_pow((*slow).min(16))).min(RECHECK_MAX)
        };
        let delay = delay.min(self.retry_max.max(RECHECK));
        self.trigger([rule], now + delay);
        delay
    }

    /// `rule` ran and no longer waits: its next wait starts young.
    pub fn settled(&mut self, rule: RuleId) {
        self.waiting.remove(&rule);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R0: RuleId = RuleId(0);
    const R1: RuleId = RuleId(1);

    const S: Duration = Duration::from_secs(1);

    /// Issue 24 #11: a rule whose gated pod never passes its health checks was run every 2 s forever.
    #[test]
    fn a_rule_that_keeps_waiting_is_rechecked_every_2s_while_young_then_less_and_less_often() {
        let t0 = Instant::now();
        let mut s = Schedule::new(3600 * S);
        let mut at = t0;
        let mut delays = Vec::new();
        while at < t0 + 300 * S {
            let d = s.recheck(R0, at);
            assert_eq!(s.take_due(at + d), vec![R0]);
            delays.push(d.as_secs());
            at += d;
        }
        assert_eq!(delays[..10], [2; 10], "young: every 2 s");
        assert_eq!(delays[10..15], [4, 8, 16, 32, 60]);
        assert!(delays[15..].iter().all(|&d| d == 60), "{delays:?}");
        assert!(delays.len() <= 21, "{} rechecks in 5 minutes", delays.len());

        s.settled(R0);
        assert_eq!(s.recheck(R0, at), 2 * S, "a new wait starts young");
        let mut short = Schedule::new(10 * S);
        short.recheck(R1, t0);
        assert_eq!(short.recheck(R1, t0 + 25 * S), 4 * S);
        assert_eq!(short.recheck(R1, t0 + 29 * S), 8 * S);
        assert_eq!(short.recheck(R1, t0 + 37 * S), 10 * S, "never longer than the resync interval");
    }

    #[test]
    fn a_burst_of_changes_runs_once_one_debounce_after_the_first() {
        let t0 = Instant::now();
        let mut s = Schedule::new(60 * S);
        s.trigger([R0], t0 + S);
        s.trigger([R0, R1], t0 + S / 2 + S);
        assert_eq!(s.next_due(), Some(t0 + S));
        assert!(s.take_due(t0).is_empty());
        assert_eq!(s.take_due(t0 + S), vec![R0]);
        assert_eq!(s.take_due(t0 + S + S / 2), vec![R1]);
        assert_eq!(s.next_due(), None);
    }

    #[test]
    fn a_failing_rule_is_retried_with_a_doubling_backoff_capped_at_the_resync_interval() {
        let t0 = Instant::now();
        let mut s = Schedule::new(3 * S);
        s.failed(R0, t0);
        assert_eq!(s.next_due(), Some(t0 + S));
        s.failed(R0, t0);
        assert_eq!(s.next_due(), Some(t0 + 2 * S));
        s.failed(R0, t0);
        s.failed(R0, t0);
        assert_eq!(s.next_due(), Some(t0 + 3 * S));
        s.take_due(t0 + 3 * S);
        s.trigger([R0], t0);
        assert_eq!(s.next_due(), Some(t0 + 3 * S), "a change does not cut a backoff short");
        s.take_due(t0 + 3 * S);
        s.succeeded(R0);
        s.trigger([R0], t0);
        assert_eq!(s.next_due(), Some(t0));
    }
}
