//! Client-side pacing: at most N requests per second per action, so a large fleet is paced instead of throttled.
//!
//! CLB documents a limit of 20 requests/second per action. The pacer hands out evenly spaced send slots per
//! action (`1/N` s apart, no burst), so any one-second window holds at most N calls of an action. Slots are
//! reserved under a short lock that is never held across an `.await`, so concurrent tasks (different load
//! balancers on one runtime) share the budget safely.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Per-action send slots.
#[derive(Debug)]
pub struct Pacer {
    /// `None`: pacing off.
    interval: Option<Duration>,
    next: Mutex<HashMap<&'static str, Instant>>,
}

impl Pacer {
    /// `per_second` requests per second per action; 0 turns pacing off.
    pub fn new(per_second: u32) -> Self {
        let interval = (per_second > 0).then(|| Duration::from_secs(1) / per_second);
        Pacer { interval, next: Mutex::new(HashMap::new()) }
    }

    /// Reserves the next send slot of `action` and returns when it starts. Returns how long it waited.
    pub async fn acquire(&self, action: &'static str) -> Duration {
        let Some(interval) = self.interval else {
            return Duration::ZERO;
        };
        let now = Instant::now();
        let slot = {
            let mut next = self.next.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let entry = next.entry(action).or_insert(now);
            let slot = (*entry).max(now);
            *entry = slot + interval;
            slot
        };
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn forty_one_calls_at_20_per_second_take_two_seconds() {
        let pacer = Pacer::new(20);
        let start = Instant::now();
        for _ in 0..41 {
            pacer.acquire("DescribeTargets").await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn actions_are_paced_independently() {
        let pacer = Pacer::new(20);
        let start = Instant::now();
        for _ in 0..10 {
            pacer.acquire("A").await;
            pacer.acquire("B").await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(450));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_budget() {
        let pacer = Pacer::new(10);
        let start = Instant::now();
        let calls = (0..21).map(|_| async {
            pacer.acquire("RegisterTargets").await;
            Instant::now()
        });
        let mut at: Vec<Instant> = futures::future::join_all(calls).await;
        at.sort();
        assert_eq!(*at.last().unwrap() - start, Duration::from_secs(2));
        for pair in at.windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(100), "{:?}", pair[1] - pair[0]);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_pacing_off() {
        let pacer = Pacer::new(0);
        let start = Instant::now();
        for _ in 0..1000 {
            pacer.acquire("DescribeTargets").await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
