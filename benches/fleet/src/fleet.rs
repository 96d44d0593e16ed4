//! The benchmark fleet: sizes, scenarios, and everything generated from them (rules file, pods, emulator
//! state), plus the run's lower bounds. Deterministic: the same size gives the same ids and IPs every time.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use clap::ValueEnum;
use serde_json::json;

/// CLB's documented limit, and the emulator's: requests per second per action.
pub const RATE: u64 = 20;
/// Added latency per API call, like the real service from nearby.
pub const LATENCY_MS: u64 = 20;
/// Time an async task takes, by default: not any interval the client starts polling with.
pub const TASK_MS: u64 = 450;
/// Per-call limits the bounds use.
const BATCH_MAX: u64 = 500;
const DESCRIBE_IDS_MAX: u64 = 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Size {
    Small,
    Medium,
    Large,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Nothing to change.
    Steady,
    /// 30% of each deployment's pods replaced: their old IPs are bound, their new IPs are not.
    Rollout,
    /// No target bound yet.
    Cold,
}

/// The shape of a fleet. Rule `i` (global) is listener `i % listeners` of LB `i / listeners` and uses
/// deployment `i / 2`, so every deployment backs two rules (one pod list must serve both).
#[derive(Clone, Copy, Debug)]
pub struct Fleet {
    pub size: Size,
    pub lbs: usize,
    pub listeners: usize,
    pub pods_per_deployment: usize,
}

impl Fleet {
    pub fn of(size: Size) -> Fleet {
        let (lbs, listeners, pods_per_deployment) = match size {
            Size::Small => (1, 3, 5),
            Size::Medium => (20, 5, 40),
            Size::Large => (200, 10, 50),
        };
        Fleet { size, lbs, listeners, pods_per_deployment }
    }
    pub fn rules(&self) -> usize {
        self.lbs * self.listeners
    }
    pub fn deployments(&self) -> usize {
        self.rules().div_ceil(2)
    }
    pub fn pods(&self) -> usize {
        self.deployments() * self.pods_per_deployment
    }
    pub fn targets(&self) -> usize {
        self.rules() * self.pods_per_deployment
    }
    pub fn namespace(&self) -> String {
        format!("clbsync-bench-{}", self.name())
    }
    pub fn name(&self) -> &'static str {
        match self.size {
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
        }
    }
    /// Pods of each deployment that a rollout replaced (30%, rounded).
    pub fn replaced_per_deployment(&self) -> usize {
        (self.pods_per_deployment * 3 + 5) / 10
    }
    pub fn lb_id(lb: usize) -> String {
        format!("lb-{lb:08x}")
    }
    pub fn listener_id(lb: usize, l: usize) -> String {
        format!("lbl-{:08x}", lb * 32 + l)
    }
    pub fn deployment_name(d: usize) -> String {
        format!("web-{d:04}")
    }
    pub fn port(l: usize) -> u16 {
        8000 + l as u16
    }
    /// The current IP of pod `k` of deployment `d`.
    pub fn pod_ip(&self, d: usize, k: usize) -> Ipv4Addr {
        let g = (d * self.pods_per_deployment + k) as u32;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + 0x10000 + g)
    }
    /// The IP pod `k` of deployment `d` had before the rollout replaced it.
    pub fn old_pod_ip(&self, d: usize, k: usize) -> Ipv4Addr {
        let g = (d * self.pods_per_deployment + k) as u32;
        Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + g)
    }

    /// The rules file: one TCP listener per rule, backed by a Deployment, container port 8080.
    pub fn rules_yaml(&self) -> String {
        let ns = self.namespace();
        let mut out = String::with_capacity(self.rules() * 120);
        for lb in 0..self.lbs {
            let _ = writeln!(out, "- load_balancer_id: {}\n  listeners:", Self::lb_id(lb));
            for l in 0..self.listeners {
                let d = (lb * self.listeners + l) / 2;
                let _ = writeln!(
                    out,
                    "    - port: {}\n      protocol: tcp\n      backend:\n        namespace: {ns}\n        deployment: {}\n        port: 8080",
                    Self::port(l),
                    Self::deployment_name(d)
                );
            }
        }
        out
    }

    /// The emulator's state before the run of `scenario`.
    pub fn clb_state(&self, scenario: Scenario) -> clb_emulator::State {
        let replaced = self.replaced_per_deployment();
        let lbs: Vec<_> = (0..self.lbs)
            .map(|lb| {
                let listeners: Vec<_> = (0..self.listeners)
                    .map(|l| {
                        let d = (lb * self.listeners + l) / 2;
                        let targets: Vec<_> = match scenario {
                            Scenario::Cold => Vec::new(),
                            Scenario::Steady | Scenario::Rollout => (0..self.pods_per_deployment)
                                .map(|k| {
                                    let ip = if scenario == Scenario::Rollout && k < replaced {
                                        self.old_pod_ip(d, k)
                                    } else {
                                        self.pod_ip(d, k)
                                    };
                                    json!({"ip": ip.to_string(), "port": 8080, "weight": 10})
                                })
                                .collect(),
                        };
                        json!({"id": Self::listener_id(lb, l), "protocol": "TCP", "port": Self::port(l), "targets": targets})
                    })
                    .collect();
                json!({"id": Self::lb_id(lb), "listeners": listeners})
            })
            .collect();
        serde_json::from_value(json!({ "load_balancers": lbs })).expect("generated state matches the emulator's schema")
    }

    /// (registrations, deregistrations) per LB in `scenario`.
    pub fn changes_per_lb(&self, scenario: Scenario) -> (u64, u64) {
        let per_rule = match scenario {
            Scenario::Steady => (0, 0),
            Scenario::Rollout => (self.replaced_per_deployment(), self.replaced_per_deployment()),
            Scenario::Cold => (self.pods_per_deployment, 0),
        };
        ((per_rule.0 * self.listeners) as u64, (per_rule.1 * self.listeners) as u64)
    }

    /// The fewest calls per action the API permits, and the least wall time its limits allow.
    pub fn bounds(&self, scenario: Scenario, task_ms: u64) -> Bounds {
        let lbs = self.lbs as u64;
        let (reg, dereg) = self.changes_per_lb(scenario);
        let reg_calls = reg.div_ceil(BATCH_MAX);
        let dereg_calls = dereg.div_ceil(BATCH_MAX);
        let tasks_per_lb = reg_calls + dereg_calls;
        let mut calls = vec![
            ("DescribeLoadBalancers", lbs.div_ceil(DESCRIBE_IDS_MAX)),
            ("DescribeListeners", lbs),
            ("DescribeTargets", lbs * (self.listeners as u64).div_ceil(DESCRIBE_IDS_MAX)),
        ];
        for (action, n) in [
            ("BatchRegisterTargets", reg_calls * lbs),
            ("BatchDeregisterTargets", dereg_calls * lbs),
            ("DescribeTaskStatus", tasks_per_lb * lbs),
        ] {
            if n > 0 {
                calls.push((action, n));
            }
        }
        // Rate: the emulator (and, as far as is documented, CLB) allows RATE calls of an action per
        // one-second window, so n calls span at least ceil(n/RATE) - 1 whole seconds, plus one call's latency.
        let rate_ms =
            calls.iter().map(|(_, n)| (n.div_ceil(RATE).saturating_sub(1)) * 1000 + LATENCY_MS).max().unwrap_or(0);
        // Chain: per LB, DescribeLoadBalancers → DescribeListeners → DescribeTargets, then each task one after
        // another: the call, the task, one poll that finds it done.
        let chain_ms = 3 * LATENCY_MS + tasks_per_lb * (LATENCY_MS + task_ms + LATENCY_MS);
        // Tasks: the last mutating call of an action comes after a load balancer's three reads and is followed by
        // its task and the poll that finds it done; and no poll can find a task done before the first one is (the
        // reads, the call, the task), after which the polls still span their whole rate.
        let span = |n: u64| n.div_ceil(RATE).saturating_sub(1) * 1000 + LATENCY_MS;
        let tasks_ms = [reg_calls * lbs, dereg_calls * lbs]
            .into_iter()
            .filter(|&n| n > 0)
            .map(|n| 3 * LATENCY_MS + span(n) + task_ms + LATENCY_MS)
            .chain((tasks_per_lb > 0).then(|| 4 * LATENCY_MS + task_ms + span(tasks_per_lb * lbs)))
            .max()
            .unwrap_or(0);
        Bounds { calls, rate_ms, chain_ms, tasks_ms }
    }
}

/// Lower bounds of one run.
#[derive(Clone, Debug)]
pub struct Bounds {
    pub calls: Vec<(&'static str, u64)>,
    /// What the per-action rate limits alone imply.
    pub rate_ms: u64,
    /// What the per-LB dependency chain (reads, then serialised tasks) alone implies.
    pub chain_ms: u64,
    /// What the rate limits imply once the time before the first task is done and after the last task starts is
    /// counted (round 2; the round-1 floor was the larger of `rate_ms` and `chain_ms`).
    pub tasks_ms: u64,
}

impl Bounds {
    pub fn total_calls(&self) -> u64 {
        self.calls.iter().map(|(_, n)| n).sum()
    }
    pub fn wall_ms(&self) -> u64 {
        self.rate_ms.max(self.chain_ms).max(self.tasks_ms)
    }
    /// The round-1 floor, which did not count task time on top of the rate limits.
    pub fn round1_wall_ms(&self) -> u64 {
        self.rate_ms.max(self.chain_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_large_floors_count_the_tasks_around_the_rate_limits() {
        let large = Fleet::of(Size::Large);
        let floor = |scenario| large.bounds(scenario, 450);
        // Steady: 200 DescribeListeners at 20/s.
        assert_eq!((floor(Scenario::Steady).wall_ms(), floor(Scenario::Steady).round1_wall_ms()), (9_020, 9_020));
        // Cold: the last of 200 registrations after the reads, then its task and poll.
        assert_eq!((floor(Scenario::Cold).wall_ms(), floor(Scenario::Cold).round1_wall_ms()), (9_550, 9_020));
        // Rollout: 400 polls at 20/s, the first after the first task is done.
        assert_eq!((floor(Scenario::Rollout).wall_ms(), floor(Scenario::Rollout).round1_wall_ms()), (19_550, 19_020));
    }
}
