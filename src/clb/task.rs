//! Waiting for CLB's async tasks: poll `DescribeTaskStatus` with the mutating call's `RequestId` until the task
//! succeeds (0) or fails (1), with a deadline.
//!
//! CLB does not say how long its tasks take, but a run makes many of them and they take about as long as each
//! other, so the client learns the time from the run's first tasks ([`Learner`], shared by every wait of one
//! client) and polls each later task once, just after it should be done:
//!
//! ```text
//! probe      one task sweeps up from the first interval, ×1.5 per poll; the others wait for it
//!            → running at `lo`, done at `hi`: the task time is in (lo, hi]
//! narrow     while hi − lo > hi/20, up to three tasks at a time poll inside (lo, hi] first, at the middle and
//!            then the quarters (one extra poll each if still running); the others poll at hi
//! steady     every task polls once, just after hi (minus the time a poll takes to answer)
//! slower     a task still running at hi polls again 20% later; when it is done, hi moves up to its time
//! ```
//!
//! Times are measured from the mutating call's answer to the poll's answer. The decisions are plain functions
//! of the learned times, tested without HTTP (and with paused time).

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Error;

/// `DescribeTaskStatus.Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskStatus {
    Succeeded,
    Failed { message: String },
    Running,
}

impl TaskStatus {
    /// Maps the API's `Status` (0 succeeded, 1 failed, 2 running). Unknown values are reported as failures rather
    /// than polled forever.
    pub(crate) fn from_api(status: i64, message: String) -> Self {
        match status {
            0 => TaskStatus::Succeeded,
            1 => TaskStatus::Failed { message },
            2 => TaskStatus::Running,
            other => TaskStatus::Failed { message: format!("unknown task status {other}: {message}") },
        }
    }
}

/// How long and how often to poll.
#[derive(Clone, Debug)]
pub struct TaskPolicy {
    /// Give up (→ `TaskTimeout`) after this long; the change may still complete, the next run re-reads.
    pub timeout: Duration,
    /// The first poll of the run's first task; the probe grows it by half each poll.
    pub first_interval: Duration,
    /// The longest gap between two polls of one task.
    pub max_interval: Duration,
}

/// [`TaskPolicy::timeout`] unless told otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// [`TaskPolicy::first_interval`] unless told otherwise.
pub(crate) const DEFAULT_FIRST_INTERVAL: Duration = Duration::from_millis(50);

/// [`TaskPolicy::max_interval`], unless the first interval is longer.
pub(crate) const MAX_INTERVAL: Duration = Duration::from_secs(2);

impl Default for TaskPolicy {
    fn default() -> Self {
        TaskPolicy { timeout: DEFAULT_TIMEOUT, first_interval: DEFAULT_FIRST_INTERVAL, max_interval: MAX_INTERVAL }
    }
}

/// Where in (lo, hi] the tasks narrowing at the same time poll, in the order they take the role: a poll that
/// finds its task done costs nothing extra and lowers hi for every task waiting, so several narrow at once.
const NARROW_AT: [f64; 3] = [0.5, 0.25, 0.75];

/// A task that waits for the probe polls anyway after this long (the probe's own task may be stuck).
const PROBE_PATIENCE: Duration = Duration::from_secs(8);

/// What a run has learned about how long its tasks take; one per client, shared by every wait.
#[derive(Debug, Default)]
pub struct Learner {
    learned: Mutex<Learned>,
    /// Woken after every poll, so tasks waiting for the probe (or for a better estimate) decide again.
    changed: Notify,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Learned {
    /// The longest time after its call at which a task was seen still running.
    lo: Duration,
    /// The shortest time after its call at which the probe or a narrowing poll saw a task done (raised when a
    /// slower task is done); `None` until a task was seen done.
    hi: Option<Duration>,
    /// A task is sweeping up to find `hi`; the others wait for it.
    probing: bool,
    /// Tasks polling between `lo` and `hi` to narrow them, at most [`NARROW_AT`]`.len()`.
    narrowing: usize,
    /// How long a poll takes to answer once sent (moving average; time spent waiting in the client's pacer is not
    /// counted, it varies from poll to poll): polls are sent that much before they should see the task done.
    rtt: Duration,
    /// How much that varies (moving average of the deviation): polls aim that much later, twice, so that one
    /// answered early still sees the task done.
    jitter: Duration,
}

/// One task's part in the learning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Role {
    #[default]
    Follow,
    Probe,
    Narrow,
}

/// One task's own state.
#[derive(Clone, Copy, Debug, Default)]
struct Mine {
    role: Role,
    /// The last time this task was seen running.
    running: Option<Duration>,
}

/// What a task does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Send the next poll at this time after the call.
    PollAt(Duration),
    /// Another task is probing: wait until it learns something.
    WaitForProbe,
}

impl Learned {
    /// When `mine` (at `now` after its call) polls next, taking a role in the learning when one is free.
    fn next(&mut self, mine: &mut Mine, now: Duration, policy: &TaskPolicy) -> Next {
        let answer_at = match (mine.role, self.hi) {
            (Role::Probe, _) => grow(mine.running, policy, 1.5),
            (_, None) if self.probing => return Next::WaitForProbe,
            (_, None) => {
                mine.role = Role::Probe;
                self.probing = true;
                grow(mine.running, policy, 1.5)
            }
            // Slower than what was learned: its own sweep, in smaller steps.
            (_, Some(hi)) if mine.running.is_some_and(|r| r >= hi) => grow(mine.running, policy, 1.2),
            (_, Some(hi)) => {
                let lo = self.lo.max(mine.running.unwrap_or_default()).min(hi);
                let at = NARROW_AT.get(self.narrowing).map(|&f| lo + (hi - lo).mul_f64(f));
                if let Some(at) = at.filter(|&at| hi - lo > hi / 20 && at > now) {
                    mine.role = Role::Narrow;
                    self.narrowing += 1;
                    at
                } else if now >= hi {
                    now
                } else {
                    // A little after hi, so that a poll answered a moment early still sees the task done.
                    hi + (hi / 40).max(self.jitter * 2)
                }
            }
        };
        Next::PollAt(answer_at.saturating_sub(self.rtt).max(now))
    }

    /// Records a poll answered at `at` after the call, which took `rtt`.
    fn observe(&mut self, mine: &mut Mine, at: Duration, rtt: Duration, running: bool) {
        if self.rtt.is_zero() {
            self.rtt = rtt;
        } else {
            self.jitter = (self.jitter * 3 + self.rtt.abs_diff(rtt)) / 4;
            self.rtt = (self.rtt * 3 + rtt) / 4;
        }
        if running {
            self.lo = self.lo.max(at);
        } else {
            let slower = matches!((mine.running, self.hi), (Some(r), Some(hi)) if r >= hi);
            self.hi = match self.hi {
                None => Some(at),
                Some(_) if slower => Some(at),
                Some(hi) if mine.role != Role::Follow => Some(hi.min(at)),
                // A follower's poll was aimed after hi: it says nothing new about the shortest time.
                Some(hi) => Some(hi),
            };
        }
        match mine.role {
            Role::Probe if !running => self.probing = false,
            Role::Narrow => self.narrowing -= 1,
            Role::Probe | Role::Follow => {}
        }
        if !(mine.role == Role::Probe && running) {
            mine.role = Role::Follow;
        }
        if running {
            mine.running = Some(at);
        }
    }

    /// Gives up `mine`'s role (its wait ended without a last observation).
    fn leave(&mut self, mine: &Mine) {
        match mine.role {
            Role::Probe => self.probing = false,
            Role::Narrow => self.narrowing -= 1,
            Role::Follow => {}
        }
    }
}

/// The next poll of a sweep: the first interval, then `factor` times the last running time, at most
/// `max_interval` later.
fn grow(last_running: Option<Duration>, policy: &TaskPolicy, factor: f64) -> Duration {
    match last_running {
        None => policy.first_interval,
        Some(r) => r.mul_f64(factor).min(r + policy.max_interval),
    }
}

impl Learner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Learned> {
        self.learned.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A task's seat in the learning; leaving it (done, failed, timed out or cancelled) frees its role.
struct Seat<'a> {
    learner: &'a Learner,
    mine: Mine,
}

impl Drop for Seat<'_> {
    fn drop(&mut self) {
        self.learner.lock().leave(&self.mine);
        self.learner.changed.notify_waiters();
    }
}

/// Polls until the task is done. `poll` performs one `DescribeTaskStatus` and says how long it waited before it
/// was sent (in the client's pacer: not part of the time a poll takes to answer); its errors end the wait and
/// are returned as they are. `learner` is shared by the run's waits (see the module doc). Returns the number of
/// polls made on success.
pub async fn wait<F, Fut>(task_id: &str, policy: &TaskPolicy, learner: &Learner, mut poll: F) -> Result<u32, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(TaskStatus, Duration), Error>>,
{
    let start = Instant::now();
    let deadline = start + policy.timeout;
    let mut seat = Seat { learner, mine: Mine::default() };
    let mut polls = 0u32;
    loop {
        // Registered before deciding, so an observation made right after the decision still wakes this task.
        let changed = learner.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let next = learner.lock().next(&mut seat.mine, start.elapsed(), policy);
        match next {
            // A follower decides again when something was learned (a narrowing poll may have lowered hi).
            Next::PollAt(at) if seat.mine.role == Role::Follow => {
                tokio::select! {
                    _ = changed => continue,
                    _ = tokio::time::sleep_until((start + at).min(deadline)) => {}
                }
            }
            Next::PollAt(at) => tokio::time::sleep_until((start + at).min(deadline)).await,
            Next::WaitForProbe => {
                tokio::select! {
                    _ = changed => continue,
                    _ = tokio::time::sleep_until((Instant::now() + PROBE_PATIENCE).min(deadline)) => {}
                }
            }
        }
        polls += 1;
        let sent = Instant::now();
        let (status, waited) = poll().await?;
        let running = status == TaskStatus::Running;
        learner.lock().observe(&mut seat.mine, start.elapsed(), sent.elapsed().saturating_sub(waited), running);
        learner.changed.notify_waiters();
        match status {
            TaskStatus::Succeeded => return Ok(polls),
            TaskStatus::Failed { message } => {
                return Err(Error::TaskFailed { task_id: task_id.to_string(), message });
            }
            TaskStatus::Running if Instant::now() >= deadline => {
                return Err(Error::TaskTimeout {
                    task_id: task_id.to_string(),
                    waited_secs: start.elapsed().as_secs(),
                });
            }
            TaskStatus::Running => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    type Polled = Result<(TaskStatus, Duration), Error>;

    fn script(statuses: Vec<TaskStatus>) -> impl FnMut() -> std::future::Ready<Polled> {
        let queue = RefCell::new(statuses.into_iter());
        move || std::future::ready(Ok((queue.borrow_mut().next().unwrap_or(TaskStatus::Running), Duration::ZERO)))
    }

    #[tokio::test(start_paused = true)]
    async fn running_then_done_succeeds() {
        let polls = wait(
            "t-1",
            &TaskPolicy::default(),
            &Learner::default(),
            script(vec![TaskStatus::Running, TaskStatus::Succeeded]),
        )
        .await;
        assert_eq!(polls.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_task_carries_its_message() {
        let failed = TaskStatus::Failed { message: "IP not found".into() };
        let err = wait("t-2", &TaskPolicy::default(), &Learner::default(), script(vec![failed])).await.unwrap_err();
        assert!(
            matches!(&err, Error::TaskFailed { task_id, message } if task_id == "t-2" && message == "IP not found")
        );
        assert_eq!(err.code(), "TaskFailed");
    }

    #[tokio::test(start_paused = true)]
    async fn never_finishing_task_times_out_at_the_deadline() {
        let policy = TaskPolicy { timeout: Duration::from_secs(10), ..TaskPolicy::default() };
        let start = Instant::now();
        let err = wait("t-3", &policy, &Learner::default(), script(vec![])).await.unwrap_err();
        assert!(matches!(err, Error::TaskTimeout { waited_secs: 10, .. }), "{err:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_probe_grows_by_half_up_to_two_second_steps() {
        let mut at = Vec::new();
        let start = Instant::now();
        let policy = TaskPolicy { timeout: Duration::from_secs(30), ..TaskPolicy::default() };
        let _ = wait("t-4", &policy, &Learner::default(), || {
            at.push(start.elapsed());
            std::future::ready(Ok((TaskStatus::Running, Duration::ZERO)))
        })
        .await;
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(at[0], Duration::from_millis(50));
        assert_eq!(at[1], Duration::from_millis(75));
        // The last gap is cut short by the deadline.
        assert!(gaps[..gaps.len() - 1].windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        assert_eq!(gaps[gaps.len() - 2], Duration::from_secs(2));
    }

    /// A fleet run in paused time: `lbs` load balancers, each waiting for `per_lb` tasks one after another, every
    /// task taking `task` (a poll is answered after `rtt`, and sees the task's state when it is answered, like
    /// the emulator). Returns (polls per task, median time from task done to the poll that saw it).
    async fn fleet(task: Duration, lbs: usize, per_lb: usize, rtt: Duration) -> (f64, Duration) {
        let learner = Learner::default();
        let policy = TaskPolicy::default();
        let one_lb = |lb: usize| {
            let (learner, policy) = (&learner, &policy);
            async move {
                let mut out = Vec::new();
                // The load balancers' calls are answered a little apart, as paced calls are.
                tokio::time::sleep(Duration::from_millis(lb as u64 * 3)).await;
                for _ in 0..per_lb {
                    let start = Instant::now();
                    let seen = std::cell::Cell::new(Duration::ZERO);
                    let polls = wait("t", policy, learner, || {
                        let seen = &seen;
                        async move {
                            tokio::time::sleep(rtt).await;
                            seen.set(start.elapsed());
                            let done = start.elapsed() >= task;
                            Ok((if done { TaskStatus::Succeeded } else { TaskStatus::Running }, Duration::ZERO))
                        }
                    })
                    .await
                    .expect("done");
                    out.push((polls, seen.get() - task));
                }
                out
            }
        };
        let all: Vec<(u32, Duration)> =
            futures::future::join_all((0..lbs).map(one_lb)).await.into_iter().flatten().collect();
        let polls = all.iter().map(|(p, _)| f64::from(*p)).sum::<f64>() / all.len() as f64;
        let mut late: Vec<Duration> = all.iter().map(|(_, l)| *l).collect();
        late.sort();
        (polls, late[late.len() / 2])
    }

    #[tokio::test(start_paused = true)]
    async fn a_fleet_polls_each_task_about_once_soon_after_it_is_done() {
        for ms in [100, 450, 2000] {
            let task = Duration::from_millis(ms);
            let (polls, late) = fleet(task, 20, 4, Duration::from_millis(20)).await;
            eprintln!("{ms} ms: {polls:.2} polls/task, median {late:?} late");
            assert!(polls <= 1.2, "{ms} ms tasks: {polls:.2} polls per task");
            assert!(late <= task / 5, "{ms} ms tasks: median {late:?} late");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn time_waiting_in_the_pacer_is_not_time_to_answer() {
        let learner = Learner::default();
        let polls = wait("t-5", &TaskPolicy::default(), &learner, || async {
            // 300 ms in the pacer, then 20 ms to answer.
            tokio::time::sleep(Duration::from_millis(320)).await;
            Ok((TaskStatus::Succeeded, Duration::from_millis(300)))
        })
        .await;
        assert_eq!(polls.unwrap(), 1);
        assert_eq!(learner.lock().rtt, Duration::from_millis(20));
    }

    #[test]
    fn unknown_status_is_a_failure() {
        assert!(matches!(TaskStatus::from_api(7, String::new()), TaskStatus::Failed { .. }));
        assert_eq!(TaskStatus::from_api(2, String::new()), TaskStatus::Running);
    }
}
