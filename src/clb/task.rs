//! Waiting for CLB's async tasks: poll `DescribeTaskStatus` with the mutating call's `RequestId` until the task
//! succeeds (0) or fails (1), with a growing interval and a deadline.
//!
//! The poll itself is a closure, so the loop is tested without HTTP (and with paused time).

use std::future::Future;
use std::time::Duration;

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
    pub fn from_api(status: i64, message: String) -> Self {
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
    /// First interval; it grows by half each poll up to `max_interval`.
    pub first_interval: Duration,
    pub max_interval: Duration,
}

impl Default for TaskPolicy {
    fn default() -> Self {
        TaskPolicy {
            timeout: Duration::from_secs(120),
            first_interval: Duration::from_millis(300),
            max_interval: Duration::from_secs(2),
        }
    }
}

/// Polls until the task is done. `poll` performs one `DescribeTaskStatus`; its errors end the wait and are
/// returned as they are. Returns the number of polls made on success.
pub async fn wait<F, Fut>(task_id: &str, policy: &TaskPolicy, mut poll: F) -> Result<u32, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<TaskStatus, Error>>,
{
    let start = Instant::now();
    let deadline = start + policy.timeout;
    let mut interval = policy.first_interval.min(policy.max_interval);
    let mut polls = 0u32;
    loop {
        let wake = (Instant::now() + interval).min(deadline);
        tokio::time::sleep_until(wake).await;
        polls += 1;
        match poll().await? {
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
            TaskStatus::Running => interval = (interval + interval / 2).min(policy.max_interval),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn script(statuses: Vec<TaskStatus>) -> impl FnMut() -> std::future::Ready<Result<TaskStatus, Error>> {
        let queue = RefCell::new(statuses.into_iter());
        move || std::future::ready(Ok(queue.borrow_mut().next().unwrap_or(TaskStatus::Running)))
    }

    #[tokio::test(start_paused = true)]
    async fn running_then_done_succeeds() {
        let polls = wait("t-1", &TaskPolicy::default(), script(vec![TaskStatus::Running, TaskStatus::Succeeded])).await;
        assert_eq!(polls.unwrap(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_task_carries_its_message() {
        let failed = TaskStatus::Failed { message: "IP not found".into() };
        let err = wait("t-2", &TaskPolicy::default(), script(vec![failed])).await.unwrap_err();
        assert!(
            matches!(&err, Error::TaskFailed { task_id, message } if task_id == "t-2" && message == "IP not found")
        );
        assert_eq!(err.code(), "TaskFailed");
    }

    #[tokio::test(start_paused = true)]
    async fn never_finishing_task_times_out_at_the_deadline() {
        let policy = TaskPolicy { timeout: Duration::from_secs(10), ..TaskPolicy::default() };
        let start = Instant::now();
        let err = wait("t-3", &policy, script(vec![])).await.unwrap_err();
        assert!(matches!(err, Error::TaskTimeout { waited_secs: 10, .. }), "{err:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn interval_grows_to_two_seconds() {
        let mut at = Vec::new();
        let start = Instant::now();
        let policy = TaskPolicy { timeout: Duration::from_secs(30), ..TaskPolicy::default() };
        let _ = wait("t-4", &policy, || {
            at.push(start.elapsed());
            std::future::ready(Ok(TaskStatus::Running))
        })
        .await;
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        assert_eq!(at[0], Duration::from_millis(300));
        // The last gap is cut short by the deadline.
        assert!(gaps[..gaps.len() - 1].windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        assert_eq!(gaps[gaps.len() - 2], Duration::from_secs(2));
    }

    #[test]
    fn unknown_status_is_a_failure() {
        assert!(matches!(TaskStatus::from_api(7, String::new()), TaskStatus::Failed { .. }));
        assert_eq!(TaskStatus::from_api(2, String::new()), TaskStatus::Running);
    }
}
