//! Client-side pacing: at most N requests per second per action, so a large fleet is paced instead of throttled.
//!
//! CLB documents a limit of 20 requests/second per action; the emulator enforces it as a fixed one-second window
//! (the real API's window is not documented). The pacer admits a call only when fewer than N calls of the action
//! are in flight or finished within the last second, counting a finished call from the moment its answer
//! arrived. That is at most N calls in any one-second span *as the server sees them*, whatever the network
//! delay, so it stays inside a fixed window and a token bucket of N alike — while letting a burst of N go at
//! once instead of spacing every call 1/N s apart (which made 20 reads take a second even when idle).
//!
//! A caller may also take a place without a call ([`Pacer::charge_until`]): the client does so for the budget of
//! calls that start a task, which is not an API action.
//!
//! Bookkeeping happens under a short lock that is never held across an `.await`, so concurrent tasks (different
//! load balancers on one runtime) share the budget safely.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The span the limit applies to.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Per-action admission.
#[derive(Debug)]
pub struct Pacer {
    /// `0`: pacing off.
    per_second: usize,
    state: Arc<Mutex<HashMap<&'static str, Action>>>,
}

#[derive(Debug, Default)]
struct Action {
    in_flight: usize,
    /// When the places of answered calls are free again (a second after their answer, or later when charged so),
    /// soonest first; entries in the past are dropped.
    free_at: VecDeque<Instant>,
    /// Woken when a call of this action finishes.
    done: Arc<Notify>,
}

impl Action {
    fn hold_until(&mut self, until: Instant) {
        let at = self.free_at.partition_point(|&t| t <= until);
        self.free_at.insert(at, until);
    }
}

/// A call's place in its action's budget; dropping it (when the answer arrived, or the call was abandoned)
/// starts the one second after which the place is free again.
#[derive(Debug)]
pub struct Permit {
    action: &'static str,
    state: Option<Arc<Mutex<HashMap<&'static str, Action>>>>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(state) = &self.state else { return };
        let mut map = state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = map.get_mut(self.action) {
            a.in_flight -= 1;
            a.hold_until(Instant::now() + WINDOW);
            a.done.notify_waiters();
        }
    }
}

impl Pacer {
    /// `per_second` requests per second per action; 0 turns pacing off.
    pub fn new(per_second: u32) -> Self {
        Pacer { per_second: per_second as usize, state: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Waits until a call of `action` may be sent, and reserves its place. Hold the permit until the answer
    /// arrives. Returns the permit and how long it waited.
    pub async fn acquire(&self, action: &'static str) -> (Permit, Duration) {
        let start = Instant::now();
        if self.per_second == 0 {
            return (Permit { action, state: None }, Duration::ZERO);
        }
        loop {
            let done = self.lock().entry(action).or_default().done.clone();
            // Registered before the check, so a call finishing right after it still wakes this one.
            let notified = done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let wake = {
                let mut map = self.lock();
                let a = map.entry(action).or_default();
                let now = Instant::now();
                while a.free_at.front().is_some_and(|&t| t <= now) {
                    a.free_at.pop_front();
                }
                if a.in_flight + a.free_at.len() < self.per_second {
                    a.in_flight += 1;
                    return (Permit { action, state: Some(self.state.clone()) }, start.elapsed());
                }
                // Full: a place frees up when the soonest held one is free, or (if every place is in flight) when
                // a call finishes.
                a.free_at.front().copied()
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = notified => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// Takes a place in `action`'s budget from now until `until`, without waiting: later calls of `action` wait
    /// for it like for a call answered a second before `until`.
    pub fn charge_until(&self, action: &'static str, until: Instant) {
        if self.per_second > 0 {
            self.lock().entry(action).or_default().hold_until(until);
        }
    }

    /// [`charge_until`](Self::charge_until) a second from now: as if a call had just been answered.
    pub fn charge(&self, action: &'static str) {
        self.charge_until(action, Instant::now() + WINDOW);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, Action>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
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
            drop(pacer.acquire("DescribeTargets").await);
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_within_the_limit_does_not_wait() {
        let pacer = Pacer::new(20);
        let start = Instant::now();
        for _ in 0..20 {
            drop(pacer.acquire("DescribeListeners").await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn actions_are_paced_independently() {
        let pacer = Pacer::new(10);
        let start = Instant::now();
        for _ in 0..11 {
            drop(pacer.acquire("A").await);
            drop(pacer.acquire("B").await);
        }
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn the_window_counts_from_the_answer_not_the_send() {
        let pacer = Pacer::new(2);
        let start = Instant::now();
        let (slow, _) = pacer.acquire("A").await;
        drop(pacer.acquire("A").await);
        tokio::time::sleep(Duration::from_millis(300)).await; // the first call's answer takes 300 ms
        drop(slow);
        drop(pacer.acquire("A").await); // the second call's place is free at 1 s
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        drop(pacer.acquire("A").await); // the first call's place only at 1.3 s
        assert_eq!(start.elapsed(), Duration::from_millis(1300));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_budget() {
        let pacer = Pacer::new(10);
        let start = Instant::now();
        let calls = (0..25).map(|_| async {
            let (permit, _) = pacer.acquire("RegisterTargets").await;
            let at = Instant::now();
            tokio::time::sleep(Duration::from_millis(20)).await; // the call itself
            drop(permit);
            at
        });
        let mut at: Vec<Instant> = futures::future::join_all(calls).await;
        at.sort();
        assert_eq!(*at.last().unwrap() - start, Duration::from_millis(2040));
        // Never more than 10 sends in any one-second span.
        for (i, t) in at.iter().enumerate() {
            let within = at[i..].iter().take_while(|u| **u - *t < Duration::from_secs(1)).count();
            assert!(within <= 10, "{within} calls within a second from {:?}", *t - start);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_charged_call_takes_a_place_without_waiting() {
        let pacer = Pacer::new(2);
        let start = Instant::now();
        pacer.charge("A");
        pacer.charge("A");
        pacer.charge("A");
        assert_eq!(start.elapsed(), Duration::ZERO);
        drop(pacer.acquire("A").await);
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_place_charged_until_later_frees_then() {
        let pacer = Pacer::new(2);
        let start = Instant::now();
        drop(pacer.acquire("A").await); // its place is free at 1 s
        pacer.charge_until("A", start + Duration::from_millis(1300));
        pacer.charge_until("A", start + Duration::from_millis(1100)); // out of order: it frees first all the same
        drop(pacer.acquire("A").await);
        assert_eq!(start.elapsed(), Duration::from_millis(1100));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_turns_pacing_off() {
        let pacer = Pacer::new(0);
        let start = Instant::now();
        for _ in 0..1000 {
            drop(pacer.acquire("DescribeTargets").await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
