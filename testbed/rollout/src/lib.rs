//! Rollout simulator (issue 13): how many requests clients would see fail while a Deployment rolls, per clbsync
//! mode. The real kube-apiserver and kube-controller-manager (Deployment and ReplicaSet controllers,
//! `testbed/kube-controller-manager.sh`) do the rollout; [`kubelet`] plays the node; the CLB emulator (over
//! HTTP, in this process) runs CLB's health checks and the traffic model; the real `clbsync` binary runs in the
//! mode under test ([`driver`]). [`run`] does one scenario in one mode and returns the [`Outcome`].
//!
//! Every delay is CLB's or Kubernetes' real one divided by one factor ([`Timing`]), so a run takes seconds, not
//! minutes; the factor is part of every outcome.

pub mod driver;
pub mod kubelet;
pub mod scenario;
pub mod split;

pub use scenario::{Mode, Outcome, RunOptions, Scenario, run};

use std::time::Duration;

use clb_emulator::HealthConfig;

/// Every delay of the simulation: the real-world value divided by `factor`.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    /// The scale-down factor (5: a 5 s health-check interval becomes 1 s).
    pub factor: u32,
}

impl Timing {
    fn scaled(&self, real: Duration) -> Duration {
        real / self.factor.max(1)
    }
    /// CLB's default health checks (interval 5 s, timeout 2 s, thresholds 3), scaled.
    pub fn health(&self) -> HealthConfig {
        HealthConfig::scaled_down(self.factor)
    }
    /// The CronJob's schedule (every minute), scaled.
    pub fn cron_period(&self) -> Duration {
        self.scaled(Duration::from_secs(60))
    }
    /// The README's preStop (`sleep 75`), scaled.
    pub fn pre_stop(&self) -> Duration {
        self.scaled(Duration::from_secs(75))
    }
    /// The README's terminationGracePeriodSeconds with preStop (90), scaled.
    pub fn grace_with_pre_stop(&self) -> Duration {
        self.scaled(Duration::from_secs(90))
    }
    /// Kubernetes' default terminationGracePeriodSeconds (30), scaled.
    pub fn grace(&self) -> Duration {
        self.scaled(Duration::from_secs(30))
    }
    /// Container start to ready (assumed 10 s), scaled.
    pub fn startup(&self) -> Duration {
        self.scaled(Duration::from_secs(10))
    }
    /// Crash to container restart (the kubelet's first back-off, 10 s), scaled.
    pub fn restart_delay(&self) -> Duration {
        self.scaled(Duration::from_secs(10))
    }
    /// CLB task duration, call to change in effect (assumed 2 s), scaled.
    pub fn task_delay(&self) -> Duration {
        self.scaled(Duration::from_secs(2))
    }
    /// Watch mode's `--debounce` (default 1 s), scaled.
    pub fn debounce(&self) -> Duration {
        self.scaled(Duration::from_secs(1))
    }
    /// Watch mode's `--resync-interval` (default 60 s), scaled.
    pub fn resync(&self) -> Duration {
        self.scaled(Duration::from_secs(60))
    }
}

/// The Markdown table of BENCHMARKS.md: one row per scenario, one column per mode; each cell
/// "failed / sent · longest without a target · rollout duration" (real seconds of the scaled run).
pub fn table(outcomes: &[Outcome], scenarios: &[Scenario], modes: &[Mode]) -> String {
    let mut out = String::from("| scenario |");
    for m in modes {
        out += &format!(" {} |", m.label());
    }
    out += "\n|---|";
    out += &"---|".repeat(modes.len());
    out += "\n";
    for &s in scenarios {
        out += &format!("| {} |", s.label());
        for &m in modes {
            match outcomes.iter().find(|o| o.scenario == s && o.mode == m) {
                Some(o) => {
                    out += &format!(
                        " {} / {} · {:.1} s · {:.1} s |",
                        o.failed,
                        o.sent,
                        o.longest_no_target_ms as f64 / 1000.0,
                        o.rollout_ms as f64 / 1000.0
                    )
                }
                None => out += " not run |",
            }
        }
        out += "\n";
    }
    out
}
