//! Traffic model (ref `clb-traffic-model.md`), for the rollout simulator: per L4 listener / L7 rule a
//! stream of `requests_per_second` requests, spread by weight at random over the targets CLB would use,
//! evaluated every `step_ms` against the emulator's state at that instant (so a deregistration or weight
//! change counts from when its task completes, and health from the probes of [`crate::health`]).
//!
//! Which targets CLB uses for a new request (the *candidates*):
//! - targets with weight > 0 whose health is `Alive` (or `Close`: health check off);
//! - if there is none, and at least one weight > 0 target is `Dead` (all dead, all alive): every weight > 0
//!   `Dead` target. Assumption where the docs are silent: weight 0 still means "no new connections", and a
//!   detecting (`Unknown`) target gets nothing even then, since CLB sends a new target nothing until it is
//!   healthy;
//! - otherwise none: the request fails ("no target can take it").
//!
//! A request sent to a candidate fails when the candidate's IP does not serve at that instant. A target
//! is *able to serve* when it is a candidate and its IP serves; the longest window with none is reported.
//!
//! The model is a pure, seeded state machine ([`Traffic::step`]); the emulator drives it from a ticker in
//! real (or paused tokio) time, and reports the largest gap between two ticks so a loaded machine shows.

use crate::faults::Rng;
use crate::health::HealthDetail;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Traffic-model parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrafficConfig {
    /// New requests per second per listener / rule.
    pub requests_per_second: f64,
    /// Time step of the model, in ms (10–50 ms is fine-grained enough for 1 s health intervals).
    pub step_ms: u64,
    /// Width of one time-series bucket, in ms.
    pub bucket_ms: u64,
    /// Seed of the weighted random choice.
    pub seed: u64,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig { requests_per_second: 200.0, step_ms: 20, bucket_ms: 500, seed: 1 }
    }
}

/// One bound target as the model sees it at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Target IP (normalised).
    pub ip: String,
    /// Target port: with the IP, the key of [`RuleTraffic::targets`].
    pub port: u16,
    /// Target weight.
    pub weight: u32,
    /// Health status at this instant.
    pub health: HealthDetail,
    /// Whether the IP serves at this instant.
    pub serving: bool,
}

/// The indexes of the targets CLB sends new requests to (see the module doc).
pub fn candidates(targets: &[Candidate]) -> Vec<usize> {
    let weighted = || targets.iter().enumerate().filter(|(_, t)| t.weight > 0);
    let healthy: Vec<usize> = weighted()
        .filter(|(_, t)| matches!(t.health, HealthDetail::Alive | HealthDetail::Close))
        .map(|(i, _)| i)
        .collect();
    if !healthy.is_empty() {
        return healthy;
    }
    weighted().filter(|(_, t)| t.health == HealthDetail::Dead).map(|(i, _)| i).collect()
}

/// One time-series bucket of one listener / rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Start of the bucket, ms since the traffic started.
    pub t_ms: u64,
    /// Requests sent in the bucket.
    pub sent: u64,
    /// Requests failed in the bucket.
    pub failed: u64,
    /// Fewest targets able to serve at any step of the bucket.
    pub able_min: u32,
    /// Most targets able to serve at any step of the bucket.
    pub able_max: u32,
    /// Targets bound at the end of the bucket (any weight, any health).
    pub bound: u32,
}

/// Counters and time series of one listener / rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleTraffic {
    /// Requests sent.
    pub sent: u64,
    /// Requests that failed (target not serving, or no target could take it).
    pub failed: u64,
    /// Of `failed`: requests that found no target to go to.
    pub failed_no_target: u64,
    /// Total time with no target able to serve, in ms.
    pub no_target_ms: u64,
    /// Longest window with no target able to serve, in ms.
    pub longest_no_target_ms: u64,
    /// Start of that window, ms since the traffic started.
    pub longest_no_target_at_ms: u64,
    /// Time buckets of `bucket_ms`.
    pub series: Vec<Sample>,
    /// Requests each target was sent, keyed `ip:port` (`[ip]:port` for IPv6): what a traffic split delivered.
    pub targets: BTreeMap<String, TargetTraffic>,
    #[serde(skip)]
    gap_ms: u64,
    #[serde(skip)]
    carry: f64,
}

/// The requests one target was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetTraffic {
    /// Requests sent to it.
    pub sent: u64,
    /// Of those, the ones that failed (it did not serve at that instant).
    pub failed: u64,
}

/// `ip:port`, or `[ip]:port` for IPv6: the key of a target in [`RuleTraffic::targets`].
pub fn target_key(ip: &str, port: u16) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

/// What the model counted so far (`GET /_emulator/traffic`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficReport {
    /// The parameters.
    pub config: TrafficConfig,
    /// Model time so far, in ms.
    pub elapsed_ms: u64,
    /// Largest time between two steps, in ms (above `step_ms` when the machine was too busy).
    pub max_step_ms: u64,
    /// Per listener / rule, keyed `lb/listener` or `lb/listener/location`.
    pub rules: BTreeMap<String, RuleTraffic>,
}

/// The seeded model.
#[derive(Debug, Clone)]
pub struct Traffic {
    report: TrafficReport,
    rng: Rng,
}

impl Traffic {
    /// A model with nothing counted yet.
    pub fn new(config: TrafficConfig) -> Traffic {
        Traffic {
            rng: Rng::new(config.seed),
            report: TrafficReport { config, elapsed_ms: 0, max_step_ms: 0, rules: BTreeMap::new() },
        }
    }

    /// The parameters.
    pub fn config(&self) -> TrafficConfig {
        self.report.config
    }

    /// Counters so far.
    pub fn report(&self) -> &TrafficReport {
        &self.report
    }

    /// Advances model time by `dt_ms`, all rules at once: `rules` are the targets of each listener / rule
    /// at the end of the step.
    pub fn step<'a>(&mut self, dt_ms: u64, rules: impl IntoIterator<Item = (String, &'a [Candidate])>) {
        let t_ms = self.report.elapsed_ms;
        self.report.max_step_ms = self.report.max_step_ms.max(dt_ms);
        for (key, targets) in rules {
            let cfg = self.report.config;
            let rule = self.report.rules.entry(key).or_default();
            step_rule(rule, &cfg, &mut self.rng, t_ms, dt_ms, targets);
        }
        self.report.elapsed_ms += dt_ms;
    }
}

fn step_rule(rule: &mut RuleTraffic, cfg: &TrafficConfig, rng: &mut Rng, t_ms: u64, dt_ms: u64, targets: &[Candidate]) {
    let cands = candidates(targets);
    let able = cands.iter().filter(|&&i| targets[i].serving).count() as u32;
    let bucket_ms = cfg.bucket_ms.max(1);
    let bucket_start = t_ms / bucket_ms * bucket_ms;
    if rule.series.last().is_none_or(|s| s.t_ms != bucket_start) {
        rule.series.push(Sample { t_ms: bucket_start, sent: 0, failed: 0, able_min: able, able_max: able, bound: 0 });
    }
    let sample = rule.series.last_mut().expect("pushed above");
    sample.able_min = sample.able_min.min(able);
    sample.able_max = sample.able_max.max(able);
    sample.bound = targets.len() as u32;

    if able == 0 {
        rule.gap_ms += dt_ms;
        rule.no_target_ms += dt_ms;
        if rule.gap_ms > rule.longest_no_target_ms {
            rule.longest_no_target_ms = rule.gap_ms;
            rule.longest_no_target_at_ms = t_ms + dt_ms - rule.gap_ms;
        }
    } else {
        rule.gap_ms = 0;
    }

    let due = rule.carry + cfg.requests_per_second * dt_ms as f64 / 1000.0;
    let n = due.floor() as u64;
    rule.carry = due - n as f64;
    let total_weight: u64 = cands.iter().map(|&i| u64::from(targets[i].weight)).sum();
    for _ in 0..n {
        rule.sent += 1;
        sample.sent += 1;
        let ok = match total_weight {
            0 => {
                rule.failed_no_target += 1;
                false
            }
            _ => {
                let mut pick = rng.next_u64() % total_weight;
                let chosen = cands
                    .iter()
                    .copied()
                    .find(|&i| {
                        let w = u64::from(targets[i].weight);
                        if pick < w {
                            return true;
                        }
                        pick -= w;
                        false
                    })
                    .expect("pick < total weight");
                let target = &targets[chosen];
                let counted = rule.targets.entry(target_key(&target.ip, target.port)).or_default();
                counted.sent += 1;
                counted.failed += u64::from(!target.serving);
                target.serving
            }
        };
        if !ok {
            rule.failed += 1;
            sample.failed += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthDetail::{Alive, Dead, Unknown};

    fn t(ip: &str, weight: u32, health: HealthDetail, serving: bool) -> Candidate {
        Candidate { ip: ip.into(), port: 80, weight, health, serving }
    }

    fn run(model: &mut Traffic, targets: &[Candidate], ms: u64) {
        for _ in 0..ms / 20 {
            model.step(20, [("lb/l".to_string(), targets)]);
        }
    }

    fn rule(model: &Traffic) -> &RuleTraffic {
        &model.report().rules["lb/l"]
    }

    #[test]
    fn healthy_weighted_targets_take_traffic_by_weight() {
        let targets = [t("10.0.0.1", 10, Alive, true), t("10.0.0.2", 30, Alive, false)];
        let mut m = Traffic::new(TrafficConfig { requests_per_second: 1000.0, ..TrafficConfig::default() });
        run(&mut m, &targets, 10_000);
        let r = rule(&m);
        assert_eq!(r.sent, 10_000);
        // 3/4 of the requests go to the second target, which does not serve.
        let share = r.failed as f64 / r.sent as f64;
        assert!((0.72..0.78).contains(&share), "{share}");
        assert_eq!(r.failed_no_target, 0);
        assert_eq!(r.longest_no_target_ms, 0);
    }

    #[test]
    fn every_target_counts_the_requests_it_was_sent_and_the_split_follows_the_weights() {
        let targets = [t("10.0.0.1", 95, Alive, true), t("10.0.0.2", 5, Alive, true), t("::1", 0, Alive, true)];
        let mut m = Traffic::new(TrafficConfig { requests_per_second: 1000.0, ..TrafficConfig::default() });
        run(&mut m, &targets, 20_000);
        let r = rule(&m);
        let sent = |k: &str| r.targets.get(k).map_or(0, |t| t.sent);
        assert_eq!(sent("10.0.0.1:80") + sent("10.0.0.2:80"), r.sent, "every request is counted on its target");
        assert_eq!(sent("[::1]:80"), 0, "weight 0 gets nothing");
        let canary = sent("10.0.0.2:80") as f64 / r.sent as f64;
        assert!((0.04..0.06).contains(&canary), "5% requested, {canary} delivered");
        assert!(r.targets.values().all(|t| t.failed == 0));
    }

    #[test]
    fn detecting_and_weight_zero_targets_get_no_traffic() {
        let targets =
            [t("10.0.0.1", 10, Alive, true), t("10.0.0.2", 10, Unknown, false), t("10.0.0.3", 0, Alive, false)];
        let mut m = Traffic::new(TrafficConfig::default());
        run(&mut m, &targets, 5_000);
        assert_eq!(rule(&m).sent, 1000);
        assert_eq!(rule(&m).failed, 0);
    }

    #[test]
    fn all_dead_all_alive_sends_to_every_dead_target() {
        let targets = [t("10.0.0.1", 10, Dead, true), t("10.0.0.2", 10, Dead, false), t("10.0.0.3", 10, Unknown, true)];
        assert_eq!(candidates(&targets), vec![0, 1]);
        let mut m = Traffic::new(TrafficConfig { requests_per_second: 1000.0, ..TrafficConfig::default() });
        run(&mut m, &targets, 10_000);
        let share = rule(&m).failed as f64 / rule(&m).sent as f64;
        assert!((0.47..0.53).contains(&share), "{share}");
        assert_eq!(rule(&m).longest_no_target_ms, 0, "the dead target that serves can still answer");
    }

    #[test]
    fn only_detecting_targets_means_no_target_can_take_a_request() {
        let targets = [t("10.0.0.1", 10, Unknown, true), t("10.0.0.2", 0, Alive, true)];
        assert!(candidates(&targets).is_empty());
        let mut m = Traffic::new(TrafficConfig::default());
        run(&mut m, &targets, 3_000);
        let r = rule(&m);
        assert_eq!((r.sent, r.failed, r.failed_no_target), (600, 600, 600));
        assert_eq!((r.longest_no_target_ms, r.no_target_ms), (3_000, 3_000));
    }

    #[test]
    fn longest_window_is_the_longest_of_several() {
        let up = [t("10.0.0.1", 10, Alive, true)];
        let down = [t("10.0.0.1", 10, Alive, false)];
        let mut m = Traffic::new(TrafficConfig::default());
        run(&mut m, &up, 1_000);
        run(&mut m, &down, 400);
        run(&mut m, &up, 1_000);
        run(&mut m, &down, 1_200);
        run(&mut m, &up, 1_000);
        let r = rule(&m);
        assert_eq!((r.longest_no_target_ms, r.longest_no_target_at_ms, r.no_target_ms), (1_200, 2_400, 1_600));
        assert_eq!(r.failed, 320, "200 req/s for 1.6 s without a serving target");
        assert_eq!(r.series.len(), 10);
        assert_eq!((r.series[2].able_min, r.series[2].able_max), (0, 1));
    }

    #[test]
    fn same_seed_same_counts() {
        let targets = [t("10.0.0.1", 10, Alive, true), t("10.0.0.2", 20, Alive, false)];
        let counts = |seed| {
            let mut m = Traffic::new(TrafficConfig { seed, ..TrafficConfig::default() });
            run(&mut m, &targets, 5_000);
            rule(&m).failed
        };
        assert_eq!(counts(7), counts(7));
        assert_ne!(counts(7), counts(8));
    }
}
