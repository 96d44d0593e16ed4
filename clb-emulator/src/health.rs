//! Health checks (ref `clb-traffic-model.md`): every bound target of an L4 listener / L7 rule is
//! probed every `interval`, whatever its weight (0 included). A probe succeeds when the target's IP
//! serves (every IP serves unless told otherwise, see [`Health::set_serving`]); a failed probe is
//! known `timeout` after it started. A newly bound target is detecting (`Unknown`, not healthy)
//! until `healthy_threshold` probes in a row succeed (15 s with the defaults), a healthy one turns
//! `Dead` after `unhealthy_threshold` failures in a row, a dead one `Alive` again after
//! `healthy_threshold` successes. An interval of 0 is the instant mode: the status follows the
//! serving flag at once (`Alive` / `Dead`), without detecting.
//!
//! Probes are evaluated lazily, like tasks: whenever health is observed, and before a serving flag
//! or the configuration changes (so that a flag is constant between two evaluations). Time is the
//! emulator clock ([`crate::time::Clock`]), so tests can skip the waits with
//! [`crate::Emulator::advance`] or `tokio::time::pause`.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// Health-check timing, with CLB's documented defaults (interval 5 s, timeout 2 s, healthy and
/// unhealthy thresholds 3). `interval_ms: 0` is the instant mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthConfig {
    /// Time between two probes of a target, in ms (0 = instant mode).
    pub interval_ms: u64,
    /// Time until a probe of a target that does not serve counts as failed, in ms (at most the
    /// interval).
    pub timeout_ms: u64,
    /// Successful probes in a row that make a detecting or dead target healthy (at least 1).
    pub healthy_threshold: u32,
    /// Failed probes in a row that make a target dead (at least 1).
    pub unhealthy_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig { interval_ms: 5000, timeout_ms: 2000, healthy_threshold: 3, unhealthy_threshold: 3 }
    }
}

impl HealthConfig {
    /// Instant mode: `Alive` while the IP serves, `Dead` at once when it stops; no detecting.
    pub fn instant() -> Self {
        HealthConfig { interval_ms: 0, timeout_ms: 0, ..HealthConfig::default() }
    }

    /// The defaults with every duration divided by `factor` (e.g. 10: interval 500 ms, timeout
    /// 200 ms, so a new target is healthy after 1.5 s).
    pub fn scaled_down(factor: u32) -> Self {
        let d = HealthConfig::default();
        let f = u64::from(factor.max(1));
        HealthConfig { interval_ms: d.interval_ms / f, timeout_ms: d.timeout_ms / f, ..d }
    }

    /// True in instant mode.
    pub fn is_instant(&self) -> bool {
        self.interval_ms == 0
    }

    /// Time from binding until a serving target is healthy (0 in instant mode).
    pub fn time_to_healthy(&self) -> Duration {
        Duration::from_millis(self.interval_ms * u64::from(self.healthy_threshold.max(1)))
    }

    fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.min(self.interval_ms))
    }
}

/// Health status of a target, as `HealthStatusDetail` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HealthDetail {
    /// Healthy: gets traffic if its weight is > 0.
    Alive,
    /// Failed `unhealthy_threshold` probes in a row.
    Dead,
    /// Newly bound, still detecting (not healthy).
    Unknown,
    /// Health check off (only from a seeded `health: Close`).
    Close,
}

impl HealthDetail {
    /// `Alive`, `Dead`, `Unknown` or `Close`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthDetail::Alive => "Alive",
            HealthDetail::Dead => "Dead",
            HealthDetail::Unknown => "Unknown",
            HealthDetail::Close => "Close",
        }
    }

    /// Parses a seeded `health:` value (case-insensitive).
    pub fn parse(s: &str) -> Option<HealthDetail> {
        [HealthDetail::Alive, HealthDetail::Dead, HealthDetail::Unknown, HealthDetail::Close]
            .into_iter()
            .find(|d| d.as_str().eq_ignore_ascii_case(s))
    }
}

/// Health state of one bound target.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    pub status: HealthDetail,
    ok_run: u32,
    fail_run: u32,
    /// Start of the probe schedule: when the target was bound, the emulator started, or the
    /// timing changed. The first probe is one interval later.
    anchor: Instant,
    /// Start of the next probe (None: not scheduled yet).
    next: Option<Instant>,
    /// When the result of a failed probe still in flight becomes known.
    pending_fail: Option<Instant>,
}

impl Probe {
    /// A target bound at `at`: detecting.
    pub fn bound(at: Instant) -> Probe {
        Probe { status: HealthDetail::Unknown, ok_run: 0, fail_run: 0, anchor: at, next: None, pending_fail: None }
    }

    /// A target that was bound before the emulator started (at `at`): healthy.
    pub fn seeded(at: Instant) -> Probe {
        Probe { status: HealthDetail::Alive, ..Probe::bound(at) }
    }

    /// Restarts the probe schedule at `at` (after a timing change); the status is kept.
    pub fn restart(&mut self, at: Instant) {
        self.anchor = at;
        self.next = None;
        self.pending_fail = None;
    }

    fn record(&mut self, ok: bool, cfg: &HealthConfig) {
        if ok {
            self.ok_run = self.ok_run.saturating_add(1);
            self.fail_run = 0;
            if self.status != HealthDetail::Alive && self.ok_run >= cfg.healthy_threshold.max(1) {
                self.status = HealthDetail::Alive;
            }
        } else {
            self.fail_run = self.fail_run.saturating_add(1);
            self.ok_run = 0;
            if self.status != HealthDetail::Dead && self.fail_run >= cfg.unhealthy_threshold.max(1) {
                self.status = HealthDetail::Dead;
            }
        }
    }

    /// True when further probes with this result change nothing.
    fn saturated(&self, serving: bool) -> bool {
        match serving {
            true => self.status == HealthDetail::Alive && self.fail_run == 0,
            false => self.status == HealthDetail::Dead && self.ok_run == 0,
        }
    }

    /// Runs every probe due by `to`, the target's IP serving (or not) throughout.
    pub fn advance(&mut self, serving: bool, to: Instant, cfg: &HealthConfig) {
        if cfg.is_instant() {
            self.status = if serving { HealthDetail::Alive } else { HealthDetail::Dead };
            (self.ok_run, self.fail_run) = (0, 0);
            self.restart(to);
            return;
        }
        let (interval, timeout) = (cfg.interval(), cfg.timeout());
        if let Some(at) = self.pending_fail {
            if at > to {
                return;
            }
            self.pending_fail = None;
            self.record(false, cfg);
        }
        let mut p = *self.next.get_or_insert(self.anchor + interval);
        while p <= to {
            if self.saturated(serving) {
                let skipped = (to - p).as_nanos() / interval.as_nanos() + 1;
                p += Duration::from_nanos(u64::try_from(skipped * interval.as_nanos()).unwrap_or(u64::MAX / 2));
                break;
            }
            let known_at = if serving { p } else { p + timeout };
            p += interval;
            if known_at <= to {
                self.record(serving, cfg);
            } else {
                self.pending_fail = Some(known_at);
                break;
            }
        }
        self.next = Some(p);
    }
}

/// Health checks of the whole emulator: configuration and which IPs serve.
#[derive(Debug, Clone, Default)]
pub(crate) struct Health {
    pub config: HealthConfig,
    /// Per-IP serving flags (normalised IPs).
    pub serving: BTreeMap<String, bool>,
    /// True when IPs without a flag of their own do not serve (false, the default: they serve).
    pub not_serving_by_default: bool,
}

/// The serving flags as the admin API shows and takes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Serving {
    /// Whether IPs without a flag of their own serve (default true).
    #[serde(default = "yes")]
    pub default: bool,
    /// Per-IP flags.
    #[serde(default)]
    pub ips: BTreeMap<String, bool>,
}

fn yes() -> bool {
    true
}

impl Default for Serving {
    /// Every IP serves.
    fn default() -> Self {
        Serving { default: true, ips: BTreeMap::new() }
    }
}

/// Health of one bound target, as `GET /_emulator/health` and [`crate::Emulator::health`] show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealthInfo {
    /// Load balancer.
    pub load_balancer_id: String,
    /// Listener.
    pub listener_id: String,
    /// Rule (L7 only).
    pub location_id: Option<String>,
    /// Target IP.
    pub ip: String,
    /// Target port.
    pub port: u16,
    /// Target weight (health is checked whatever the weight).
    pub weight: u32,
    /// `HealthStatusDetail`.
    pub health: HealthDetail,
    /// `HealthStatus`: true only when `Alive`.
    pub healthy: bool,
    /// Whether the target's IP serves now.
    pub serving: bool,
}

impl Health {
    pub fn new(config: HealthConfig) -> Health {
        Health { config, ..Health::default() }
    }

    /// Whether `ip` (normalised) serves.
    pub fn serves(&self, ip: &str) -> bool {
        self.serving.get(ip).copied().unwrap_or(!self.not_serving_by_default)
    }

    /// Current flags.
    pub fn serving(&self) -> Serving {
        Serving { default: !self.not_serving_by_default, ips: self.serving.clone() }
    }

    /// Advances one probe to `now` with this IP's serving flag.
    pub fn advance(&self, probe: &mut Probe, ip: &str, now: Instant) {
        probe.advance(self.serves(ip), now, &self.config);
    }

    /// Reported status of a target: a seeded `health` pins it, otherwise its probe.
    pub fn detail(pinned: Option<&str>, probe: Option<&Probe>) -> HealthDetail {
        match pinned.and_then(HealthDetail::parse) {
            Some(d) => d,
            None => probe.map_or(HealthDetail::Alive, |p| p.status),
        }
    }

    /// Replaces the flags.
    pub fn set_serving(&mut self, serving: Serving) {
        self.not_serving_by_default = !serving.default;
        self.serving = serving.ips;
    }
}

/// Probes of one L4 listener or L7 rule, keyed like its targets.
pub(crate) type Probes = HashMap<(String, u16), Probe>;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn new_target_detects_for_interval_times_healthy_threshold() {
        let cfg = HealthConfig::default();
        let t0 = Instant::now();
        let mut p = Probe::bound(t0);
        p.advance(true, at(t0, 14_999), &cfg);
        assert_eq!(p.status, HealthDetail::Unknown);
        p.advance(true, at(t0, 15_000), &cfg);
        assert_eq!(p.status, HealthDetail::Alive);
        // Stops serving at 16 s: probes at 20, 25, 30 s fail, each known 2 s later.
        p.advance(true, at(t0, 16_000), &cfg);
        p.advance(false, at(t0, 31_999), &cfg);
        assert_eq!(p.status, HealthDetail::Alive);
        p.advance(false, at(t0, 32_000), &cfg);
        assert_eq!(p.status, HealthDetail::Dead);
        // Serves again at 33 s: the probes at 35, 40 and 45 s succeed.
        p.advance(false, at(t0, 33_000), &cfg);
        p.advance(true, at(t0, 44_999), &cfg);
        assert_eq!(p.status, HealthDetail::Dead);
        p.advance(true, at(t0, 45_000), &cfg);
        assert_eq!(p.status, HealthDetail::Alive);
    }

    #[test]
    fn a_probe_in_flight_when_the_pod_recovers_still_fails() {
        let cfg = HealthConfig { unhealthy_threshold: 1, ..HealthConfig::default() };
        let t0 = Instant::now();
        let mut p = Probe::seeded(t0); // first probe at 5 s
        p.advance(false, at(t0, 6_000), &cfg); // probe at 5 s failing, known at 7 s
        assert_eq!(p.status, HealthDetail::Alive);
        p.advance(true, at(t0, 7_000), &cfg);
        assert_eq!(p.status, HealthDetail::Dead);
    }

    #[test]
    fn never_serving_new_target_turns_dead_and_long_gaps_are_cheap() {
        let cfg = HealthConfig { interval_ms: 1, timeout_ms: 1, ..HealthConfig::default() };
        let t0 = Instant::now();
        let mut p = Probe::bound(t0);
        p.advance(false, at(t0, 10_000_000), &cfg);
        assert_eq!(p.status, HealthDetail::Dead);
        p.advance(true, at(t0, 20_000_000), &cfg);
        assert_eq!(p.status, HealthDetail::Alive);
    }

    #[test]
    fn probes_run_from_the_schedule_start_even_when_nobody_looked_meanwhile() {
        let cfg = HealthConfig::default();
        let t0 = Instant::now();
        let mut p = Probe::bound(t0);
        p.restart(at(t0, 1_000)); // timing changed at 1 s: probes at 6, 11, 16 s
        p.advance(true, at(t0, 60_000), &cfg);
        assert_eq!(p.status, HealthDetail::Alive);
        let mut seeded = Probe::seeded(t0);
        seeded.advance(false, at(t0, 17_000), &cfg); // probes at 5, 10, 15 s fail, known at 17 s
        assert_eq!(seeded.status, HealthDetail::Dead);
    }

    #[test]
    fn instant_mode_follows_the_serving_flag() {
        let cfg = HealthConfig::instant();
        let t0 = Instant::now();
        let mut p = Probe::bound(t0);
        p.advance(true, t0, &cfg);
        assert_eq!(p.status, HealthDetail::Alive);
        p.advance(false, t0, &cfg);
        assert_eq!(p.status, HealthDetail::Dead);
    }
}
