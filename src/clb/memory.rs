//! An in-memory load balancer for the engine's unit tests (like external-dns's `inmemory` provider).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{ApiError, ChangeResults, Clb, Error, Listener, LoadBalancer};
use crate::model::{Binding, BoundTarget, Change, Failure, Health, Target, TargetHealth, TargetKind, Weight};
use crate::stop::Stop;

/// The targets bound on each binding, with their weight and kind.
type Bound = BTreeMap<Binding, BTreeMap<Target, (Weight, TargetKind, String)>>;

/// Load balancers, listeners and bound targets, plus injected failures and a log of mutating calls.
#[derive(Default)]
pub struct MemoryClb {
    pub lbs: Vec<LoadBalancer>,
    pub listeners: BTreeMap<String, Vec<Listener>>,
    pub bound: Mutex<Bound>,
    /// Mutations of these bindings fail with this failure: `(operation, binding) → failure`.
    pub fail: BTreeMap<(&'static str, Binding), Failure>,
    /// Reads of these load balancers' targets fail.
    pub unreadable: Vec<String>,
    /// `(operation, lb, number of changes)` per mutating call, in order.
    pub calls: Mutex<Vec<(&'static str, String, usize)>>,
    /// Targets that fail their health checks; every other bound target is healthy.
    pub unhealthy: Mutex<Vec<Target>>,
}

impl MemoryClb {
    /// Binds a target directly (test setup).
    pub fn bind(&self, binding: &Binding, target: Target, weight: Weight, kind: TargetKind) {
        self.bind_tagged(binding, target, weight, kind, "");
    }

    /// Binds a target with a tag (test setup).
    pub fn bind_tagged(&self, binding: &Binding, target: Target, weight: Weight, kind: TargetKind, tag: &str) {
        let mut bound = self.bound.lock().expect("lock");
        bound.entry(binding.clone()).or_default().insert(target, (weight, kind, tag.to_string()));
    }

    /// The targets bound on a binding now, with weights.
    pub fn targets_of(&self, binding: &Binding) -> BTreeMap<Target, Weight> {
        let bound = self.bound.lock().expect("lock");
        bound.get(binding).map(|m| m.iter().map(|(t, (w, _, _))| (*t, *w)).collect()).unwrap_or_default()
    }

    /// Operations of the mutating calls so far, in order.
    pub fn operations(&self) -> Vec<&'static str> {
        self.calls.lock().expect("lock").iter().map(|c| c.0).collect()
    }

    /// One mutating call: refused like the real client's when `stop` fired, else recorded and applied.
    fn mutate(
        &self,
        op: &'static str,
        lb: &str,
        changes: &[Change],
        stop: &Stop,
        f: impl Fn(&mut BTreeMap<Target, (Weight, TargetKind, String)>, &Change),
    ) -> ChangeResults {
        if let Err(reason) = stop.check() {
            let failure = Error::NotSent { action: op, reason }.to_failure();
            return vec![Err(failure); changes.len()];
        }
        self.calls.lock().expect("lock").push((op, lb.to_string(), changes.len()));
        let mut bound = self.bound.lock().expect("lock");
        changes
            .iter()
            .map(|c| match self.fail.get(&(op, c.binding.clone())) {
                Some(failure) => Err(failure.clone()),
                None => {
                    f(bound.entry(c.binding.clone()).or_default(), c);
                    Ok(())
                }
            })
            .collect()
    }
}

impl Clb for MemoryClb {
    async fn load_balancers(&self, ids: &[String]) -> Result<Vec<LoadBalancer>, Error> {
        Ok(self.lbs.iter().filter(|l| ids.contains(&l.id)).cloned().collect())
    }

    async fn listeners(&self, lb: &str) -> Result<Vec<Listener>, Error> {
        Ok(self.listeners.get(lb).cloned().unwrap_or_default())
    }

    async fn targets(&self, lb: &str, listener_ids: &[String]) -> Result<Vec<BoundTarget>, Error> {
        if self.unreadable.iter().any(|u| u == lb) {
            return Err(Error::Api(ApiError {
                action: "DescribeTargets",
                code: "InternalError".into(),
                message: format!("injected read failure for {lb}"),
                request_id: "memory".into(),
            }));
        }
        let bound = self.bound.lock().expect("lock");
        Ok(bound
            .iter()
            .filter(|(b, _)| b.lb == lb && listener_ids.contains(&b.listener))
            .flat_map(|(b, ts)| {
                ts.iter().map(|(t, (w, k, tag))| BoundTarget {
                    binding: b.clone(),
                    target: *t,
                    weight: *w,
                    kind: k.clone(),
                    health: Health::Unknown,
                    tag: tag.clone(),
                })
            })
            .collect())
    }

    async fn health(&self, lb: &str, listener_ids: &[String]) -> Result<Vec<TargetHealth>, Error> {
        let bound = self.bound.lock().expect("lock");
        let unhealthy = self.unhealthy.lock().expect("lock");
        Ok(bound
            .iter()
            .filter(|(b, _)| b.lb == lb && listener_ids.contains(&b.listener))
            .flat_map(|(b, ts)| {
                ts.keys().map(|t| TargetHealth {
                    binding: b.clone(),
                    target: *t,
                    health: if unhealthy.contains(t) { Health::Unhealthy } else { Health::Healthy },
                })
            })
            .collect())
    }

    async fn tag(&self, lb: &str, changes: &[Change], stop: &Stop) -> ChangeResults {
        self.mutate("tag", lb, changes, stop, |m, c| {
            if let Some(entry) = m.get_mut(&c.target) {
                entry.2 = c.tag.clone().unwrap_or_default();
            }
        })
    }

    async fn register(&self, lb: &str, changes: &[Change], stop: &Stop) -> ChangeResults {
        self.mutate("register", lb, changes, stop, |m, c| {
            m.insert(c.target, (c.weight, TargetKind::Ip, c.tag.clone().unwrap_or_default()));
        })
    }

    async fn set_weight(&self, lb: &str, changes: &[Change], stop: &Stop) -> ChangeResults {
        self.mutate("set_weight", lb, changes, stop, |m, c| {
            if let Some(entry) = m.get_mut(&c.target) {
                entry.0 = c.weight;
            }
        })
    }

    async fn deregister(&self, lb: &str, changes: &[Change], stop: &Stop) -> ChangeResults {
        self.mutate("deregister", lb, changes, stop, |m, c| {
            m.remove(&c.target);
        })
    }
}
