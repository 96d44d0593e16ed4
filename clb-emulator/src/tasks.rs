//! Async tasks: every successful mutation becomes a task (TaskId = RequestId) whose changes are
//! applied when it completes (after the task delay). While a task runs its load balancer is locked.
//! Completion is evaluated lazily ("settled") whenever state is observed or changed, using tokio
//! time, so no background timers are needed and `tokio::time::pause` works.

use crate::health::Probe;
use crate::state::Target;
use crate::world::World;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use tokio::time::Instant;

/// One change to apply at completion.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub listener: String,
    pub location: Option<String>,
    pub kind: OpKind,
}

#[derive(Debug, Clone)]
pub(crate) enum OpKind {
    Add(Target),
    Remove((String, u16)),
    Weight((String, u16), u32),
}

/// Public view of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// Task id (the RequestId of the call that created it).
    pub id: String,
    /// Action that created it.
    pub action: String,
    /// Load balancer it locks.
    pub load_balancer_id: String,
    /// 0 succeeded, 1 failed, 2 running (DescribeTaskStatus semantics).
    pub status: i64,
    /// Failure reason when `status == 1`.
    pub message: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Task {
    pub action: String,
    pub lb: String,
    pub status: i64,
    pub message: Option<String>,
    pub ops: Vec<Op>,
    pub fail: Option<String>,
}

/// All tasks, pending queue and LB locks.
#[derive(Debug, Default)]
pub(crate) struct Tasks {
    pub tasks: HashMap<String, Task>,
    pending: BTreeMap<(Instant, u64), String>,
    pub locks: HashMap<String, String>,
    seq: u64,
}

impl Tasks {
    /// Completes every task due at `now`, in order.
    pub fn settle(&mut self, world: &mut World, now: Instant, wall: i64) {
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let due = entry.key().0;
            let id = entry.remove();
            if let Some(task) = self.tasks.get_mut(&id) {
                finish(task, world, due, wall);
                if self.locks.get(&task.lb) == Some(&id) {
                    self.locks.remove(&task.lb);
                }
            }
        }
    }

    /// The running task locking `lb`, if any (call after `settle`).
    pub fn lock_of(&self, lb: &str) -> Option<&String> {
        self.locks.get(lb)
    }

    /// Creates a task; completes it at once when `delay` is `None`.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &mut self,
        world: &mut World,
        id: String,
        action: &str,
        lb: &str,
        ops: Vec<Op>,
        fail: Option<String>,
        done_at: Option<Instant>,
        now: Instant,
        wall: i64,
    ) {
        let mut task = Task { action: action.into(), lb: lb.into(), status: 2, message: None, ops, fail };
        match done_at {
            Some(at) if !task.ops.is_empty() || task.fail.is_some() => {
                self.seq += 1;
                self.pending.insert((at, self.seq), id.clone());
                self.locks.insert(lb.to_string(), id.clone());
            }
            _ => finish(&mut task, world, now, wall),
        }
        self.tasks.insert(id, task);
    }

    pub fn info(&self, id: &str) -> Option<TaskInfo> {
        self.tasks.get(id).map(|t| TaskInfo {
            id: id.to_string(),
            action: t.action.clone(),
            load_balancer_id: t.lb.clone(),
            status: t.status,
            message: t.message.clone(),
        })
    }

    pub fn all(&self) -> Vec<TaskInfo> {
        let mut v: Vec<TaskInfo> = self.tasks.keys().filter_map(|k| self.info(k)).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

/// Completes a task at `at` (targets it binds start their health checks then).
fn finish(task: &mut Task, world: &mut World, at: Instant, wall: i64) {
    if let Some(msg) = task.fail.take() {
        task.status = 1;
        task.message = Some(msg);
        task.ops.clear();
        return;
    }
    match apply(world, &task.lb, &task.ops, at, wall) {
        Ok(()) => task.status = 0,
        Err(msg) => {
            task.status = 1;
            task.message = Some(msg);
        }
    }
    task.ops.clear();
}

/// Applies all ops or none (fails when a listener/rule vanished meanwhile).
fn apply(world: &mut World, lb_id: &str, ops: &[Op], at: Instant, wall: i64) -> Result<(), String> {
    let Some(lb) = world.lb_mut(lb_id) else {
        return Err(format!("load balancer {lb_id} no longer exists"));
    };
    let mut places = Vec::with_capacity(ops.len());
    for op in ops {
        let li = lb.listener_pos(&op.listener).ok_or_else(|| format!("listener {} no longer exists", op.listener))?;
        let rule = match &op.location {
            Some(loc) => Some(
                lb.listeners[li]
                    .rules
                    .iter()
                    .position(|r| &r.location_id == loc)
                    .ok_or_else(|| format!("rule {loc} no longer exists"))?,
            ),
            None => None,
        };
        places.push(crate::world::Place { listener: li, rule });
    }
    let now = crate::time::utc_datetime(wall);
    for (op, place) in ops.iter().zip(places) {
        let Some((pool, health)) = lb.pool_and_health_mut(place) else {
            continue;
        };
        match &op.kind {
            OpKind::Add(t) => {
                let mut t = t.clone();
                t.registered_time = Some(now.clone());
                health.insert((t.ip.clone(), t.port), Probe::bound(at));
                pool.insert((t.ip.clone(), t.port), t);
            }
            OpKind::Remove(key) => {
                pool.remove(key);
                health.remove(key);
            }
            OpKind::Weight(key, w) => {
                if let Some(t) = pool.get_mut(key) {
                    t.weight = *w;
                }
            }
        }
    }
    Ok(())
}
