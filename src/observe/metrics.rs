//! clbsync's metrics: one registry and every metric name in one place, so watch mode serves them at `/metrics`
//! and a batch run can push or write the same names.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `clbsync_reconcile_total` | counter | `result`: `ok`, `error` |
//! | `clbsync_reconcile_duration_seconds` | histogram | |
//! | `clbsync_changes_total` | counter | `action` (register, reweight, drain, deregister), `status` (applied, failed, not_attempted) |
//! | `clbsync_api_calls_total` | counter | `action` (CLB API action), `code` (`ok` or the error code) |
//! | `clbsync_rules` | gauge | `status`: ready, blocked, skipped (each rule's last pass) |
//! | `clbsync_targets` | gauge | `state`: what the rule's last plan does to the target (unchanged, register, ...) |
//! | `clbsync_last_success_timestamp_seconds` | gauge | |
//! | `clbsync_leader` | gauge | 1 when this replica may mutate |
//! | `clbsync_rules_file_valid` | gauge | 0 after a reload refused an invalid rules file |
//! | `clbsync_events_total` | counter | `result`: `recorded`, `failed` (Kubernetes Events) |
//! | `clbsync_waiting_targets` | gauge | drains and removals held longer than `--warn-waiting-after` |
//! | `clbsync_rechecks_total` | counter | `reason`: `gate` (a gated pod waits), `wait` (a held drain or removal); watch mode |
//! | `clbsync_credentials_refresh_total` | counter | `source` (tke-oidc, cvm-role, file), `result` (ok, error) |
//! | `clbsync_credentials_expiry_timestamp_seconds` | gauge | Unix time the credentials in use expire; 0: they do not |
//! | `clbsync_backend_share` | gauge | `rule`, `backend`, `kind` (requested, achieved): a split's shares, 0–1 |
//!
//! Watch mode serves them as OpenMetrics ([`Metrics::encode`]); a batch run pushes or writes one run's values in
//! the Prometheus text format 0.0.4 ([`Metrics::encode_text`]), which the Pushgateway and the node exporter's
//! textfile collector parse (they read OpenMetrics as 0.0.4 and would turn every counter into an untyped series).
//! A batch run knows only itself: `clbsync_last_success_timestamp_seconds` is 0 after a failed run, so alerts
//! take its `max_over_time` (docs/src/monitoring.md).

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::apply::RowStatus;
use crate::outcome::{Outcome, exit};
use crate::plan::{Action, RulePlan, Status, Waits};

type Labels<const N: usize> = [(&'static str, String); N];

/// The rule statuses and target states the gauges always show (0 when none), so a series never disappears.
const RULE_STATUSES: [&str; 3] = ["ready", "blocked", "skipped"];
const ACTIONS: [Action; 8] = [
    Action::Register,
    Action::Reweight,
    Action::Drain,
    Action::Deregister,
    Action::Adopt,
    Action::Wait,
    Action::Unchanged,
    Action::Unmanaged,
];

/// The position of `action` in [`ACTIONS`]: the match makes an action added to the planner a compile error here
/// until it has a `clbsync_targets` series (`adopt` had none).
const fn state_index(action: Action) -> usize {
    match action {
        Action::Register => 0,
        Action::Reweight => 1,
        Action::Drain => 2,
        Action::Deregister => 3,
        Action::Adopt => 4,
        Action::Wait => 5,
        Action::Unchanged => 6,
        Action::Unmanaged => 7,
    }
}

/// Every metric clbsync exports, registered in one [`Registry`].
pub struct Metrics {
    registry: Registry,
    reconcile: Family<Labels<1>, Counter>,
    duration: Histogram,
    changes: Family<Labels<2>, Counter>,
    api_calls: Family<Labels<2>, Counter>,
    rules: Family<Labels<1>, Gauge>,
    targets: Family<Labels<1>, Gauge>,
    last_success: Gauge<f64, AtomicU64>,
    leader: Gauge,
    rules_file_valid: Gauge,
    events: Family<Labels<1>, Counter>,
    waiting: Gauge,
    rechecks: Family<Labels<1>, Counter>,
    credentials_refresh: Family<Labels<2>, Counter>,
    credentials_expiry: Gauge,
    backend_share: Family<Labels<3>, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("clbsync");
        let m = Metrics {
            reconcile: Family::default(),
            duration: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            changes: Family::default(),
            api_calls: Family::default(),
            rules: Family::default(),
            targets: Family::default(),
            last_success: Gauge::default(),
            leader: Gauge::default(),
            rules_file_valid: Gauge::default(),
            events: Family::default(),
            waiting: Gauge::default(),
            rechecks: Family::default(),
            credentials_refresh: Family::default(),
            credentials_expiry: Gauge::default(),
            backend_share: Family::default(),
            registry: Registry::default(),
        };
        // Counters get their `_total` suffix from the encoder.
        registry.register("reconcile", "Reconcile passes, by result", m.reconcile.clone());
        registry.register("reconcile_duration_seconds", "Duration of one reconcile pass", m.duration.clone());
        registry.register("changes", "Target changes, by action and status", m.changes.clone());
        registry.register("api_calls", "CLB API requests, by action and result code", m.api_calls.clone());
        registry.register("rules", "Rules by status in their last pass", m.rules.clone());
        registry.register("targets", "Targets by what the last plan of their rule does to them", m.targets.clone());
        registry.register(
            "last_success_timestamp_seconds",
            "Unix time of the end of the last pass without trouble",
            m.last_success.clone(),
        );
        registry.register("leader", "1 when this replica holds the lease (or runs without election)", m.leader.clone());
        registry.register(
            "rules_file_valid",
            "0 after a reload refused an invalid rules file",
            m.rules_file_valid.clone(),
        );
        registry.register("events", "Kubernetes Events, by whether they were recorded", m.events.clone());
        registry.register(
            "waiting_targets",
            "Drains and removals held back (make before break) for longer than --warn-waiting-after",
            m.waiting.clone(),
        );
        registry.register(
            "rechecks",
            "Rules run again because they wait on CLB (watch mode), by what waits",
            m.rechecks.clone(),
        );
        registry.register(
            "credentials_refresh",
            "Fetches of temporary credentials and re-reads of credential files, by source and result",
            m.credentials_refresh.clone(),
        );
        registry.register(
            "credentials_expiry_timestamp_seconds",
            "Unix time the credentials in use expire (0: they do not)",
            m.credentials_expiry.clone(),
        );
        registry.register(
            "backend_share",
            "Each backend's share of its rule's traffic (0-1), as requested and as its last plan's weights achieve it",
            m.backend_share.clone(),
        );
        for status in RULE_STATUSES {
            let _ = m.rules.get_or_create(&[("status", status.to_owned())]);
        }
        for action in ACTIONS {
            let _ = m.targets.get_or_create(&[("state", action.as_str().to_owned())]);
        }
        for result in ["recorded", "failed"] {
            let _ = m.events.get_or_create(&[("result", result.to_owned())]);
        }
        for reason in ["gate", "wait"] {
            let _ = m.rechecks.get_or_create(&[("reason", reason.to_owned())]);
        }
        m.rules_file_valid.set(1);
        Metrics { registry, ..m }
    }

    /// Counts one pass: its result, its duration and the changes it applied; `now` is the Unix time at its end.
    pub fn record_pass(&self, outcome: &Outcome, elapsed: Duration, now: f64) {
        let ok = outcome.exit_code(false) == exit::OK;
        self.reconcile.get_or_create(&[("result", if ok { "ok" } else { "error" }.to_owned())]).inc();
        self.duration.observe(elapsed.as_secs_f64());
        if ok {
            self.last_success.set(now);
        }
        for rule in outcome.rules() {
            for (row, status) in rule.rows() {
                let status = match status {
                    RowStatus::NoOp => continue,
                    RowStatus::Applied => "applied",
                    RowStatus::Failed(_) => "failed",
                    RowStatus::NotAttempted(_) => "not_attempted",
                };
                self.changes
                    .get_or_create(&[("action", row.action.as_str().to_owned()), ("status", status.to_owned())])
                    .inc();
            }
        }
    }

    /// Counts CLB API requests: `(action, code, count)` with `code` = `ok` or the error code.
    pub fn record_api_calls<'a>(&self, calls: impl IntoIterator<Item = (&'a str, &'a str, u64)>) {
        for (action, code, n) in calls {
            self.api_calls.get_or_create(&[("action", action.to_owned()), ("code", code.to_owned())]).inc_by(n);
        }
    }

    /// Sets the rule and target gauges from the last plan of every rule; `waits` says which held rows count as
    /// waiting too long.
    pub fn set_rules<'a>(&self, plans: impl IntoIterator<Item = &'a RulePlan>, waits: Waits) {
        let mut rules = [0i64; 3];
        let mut targets = [0i64; ACTIONS.len()];
        let mut waiting = 0i64;
        // Rules and backends come and go with the rules file: only the current ones keep a series.
        self.backend_share.clear();
        for plan in plans {
            waiting += plan.overdue(waits).count() as i64;
            for s in &plan.split {
                let labels = |kind: &str| {
                    [("rule", plan.place.to_string()), ("backend", s.backend.clone()), ("kind", kind.to_owned())]
                };
                self.backend_share.get_or_create(&labels("requested")).set(f64::from(s.requested_bp) / 10_000.0);
                self.backend_share.get_or_create(&labels("achieved")).set(f64::from(s.achieved_bp) / 10_000.0);
            }
            rules[match plan.status {
                Status::Ready => 0,
                Status::Blocked { .. } => 1,
                Status::Skipped { .. } => 2,
            }] += 1;
            for row in &plan.rows {
                targets[state_index(row.action)] += 1;
            }
        }
        for (status, n) in RULE_STATUSES.iter().zip(rules) {
            self.rules.get_or_create(&[("status", (*status).to_owned())]).set(n);
        }
        for (action, n) in ACTIONS.iter().zip(targets) {
            self.targets.get_or_create(&[("state", action.as_str().to_owned())]).set(n);
        }
        self.waiting.set(waiting);
    }

    /// Counts a rule scheduled to run again because it waits on CLB: `gate` or `wait`.
    pub fn record_recheck(&self, reason: &'static str) {
        self.rechecks.get_or_create(&[("reason", reason.to_owned())]).inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn set_rules_file_valid(&self, valid: bool) {
        self.rules_file_valid.set(i64::from(valid));
    }

    /// Counts a batch of Kubernetes Events: how many were recorded and how many could not be.
    pub fn record_events(&self, recorded: u64, failed: u64) {
        self.events.get_or_create(&[("result", "recorded".to_owned())]).inc_by(recorded);
        self.events.get_or_create(&[("result", "failed".to_owned())]).inc_by(failed);
    }

    /// Sets the credential metrics from the provider's totals so far.
    pub fn record_credentials(&self, stats: &crate::clb::credentials::Stats) {
        for ((source, result), total) in &stats.refreshes {
            let counter = self
                .credentials_refresh
                .get_or_create(&[("source", (*source).to_owned()), ("result", (*result).to_owned())]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.credentials_expiry.set(stats.expires_unix.unwrap_or(0));
    }

    /// Counts a run that ended before it could plan (rules file, credentials, Kubernetes connection): an error.
    pub fn record_failed_run(&self, elapsed: Duration) {
        self.reconcile.get_or_create(&[("result", "error".to_owned())]).inc();
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// The registry in the text exposition format (OpenMetrics 1.0, which Prometheus scrapes natively).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// The registry in the Prometheus text format 0.0.4, for the Pushgateway and the textfile collector.
    pub fn encode_text(&self) -> String {
        to_text_format(&self.encode())
    }
}

/// The Unix time now, for [`Metrics::record_pass`].
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The `Content-Type` of [`Metrics::encode_text`]'s output.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// OpenMetrics text as written by prometheus-client → Prometheus text 0.0.4. The two differ, for what this
/// registry holds, in two places: a counter family is named without `_total` in `# HELP`/`# TYPE` (its samples
/// carry it) and the text ends with `# EOF`. Histograms, gauges and sample lines are the same.
fn to_text_format(openmetrics: &str) -> String {
    let counters: Vec<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(&name) { "_total" } else { "" };
                out.push_str(format!("{prefix}{name}{total} {tail}").trim_end_matches(' '));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_metric_is_exported_under_its_documented_name() {
        let m = Metrics::new();
        m.reconcile.get_or_create(&[("result", "ok".to_owned())]).inc();
        m.changes.get_or_create(&[("action", "register".to_owned()), ("status", "applied".to_owned())]).inc();
        m.record_api_calls([("RegisterTargets", "ok", 2)]);
        let mut stats = crate::clb::credentials::Stats { expires_unix: Some(1_700_000_000), ..Default::default() };
        stats.refreshes.insert(("tke-oidc", "ok"), 2);
        m.record_credentials(&stats);
        stats.refreshes.insert(("tke-oidc", "ok"), 3);
        m.record_credentials(&stats);
        let text = m.encode();
        for name in [
            "clbsync_reconcile_total{result=\"ok\"} 1",
            "clbsync_reconcile_duration_seconds_count 0",
            "clbsync_changes_total{action=\"register\",status=\"applied\"} 1",
            "clbsync_api_calls_total{action=\"RegisterTargets\",code=\"ok\"} 2",
            "clbsync_rules{status=\"skipped\"} 0",
            "clbsync_targets{state=\"register\"} 0",
            "clbsync_last_success_timestamp_seconds ",
            "clbsync_leader 0",
            "clbsync_rules_file_valid 1",
            "clbsync_events_total{result=\"failed\"} 0",
            "clbsync_waiting_targets 0",
            "clbsync_rechecks_total{reason=\"gate\"} 0",
            "clbsync_credentials_refresh_total{source=\"tke-oidc\",result=\"ok\"} 3",
            "clbsync_credentials_expiry_timestamp_seconds 1700000000",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    /// Issue 25: `clbsync_targets` had no `adopt` series, so targets being adopted were counted nowhere.
    #[test]
    fn every_action_has_a_targets_series_in_its_place() {
        let text = Metrics::new().encode();
        for (i, action) in ACTIONS.into_iter().enumerate() {
            assert_eq!(state_index(action), i, "{action:?}");
            let series = format!("clbsync_targets{{state=\"{}\"}} 0", action.as_str());
            assert!(text.contains(&series), "{series} missing from:\n{text}");
        }
        assert!(text.contains("clbsync_targets{state=\"adopt\"} 0"), "{text}");
    }

    /// The metrics chapter of the docs, the alerting rules and the Grafana dashboard name only metrics this
    /// registry exports.
    #[test]
    fn the_readme_rules_and_dashboard_name_only_exported_metrics() {
        let section = include_str!("../../docs/src/monitoring.md");
        let m = Metrics::new();
        m.reconcile.get_or_create(&[("result", "ok".to_owned())]).inc();
        m.changes.get_or_create(&[("action", "register".to_owned()), ("status", "failed".to_owned())]).inc();
        m.record_api_calls([("RegisterTargets", "ok", 1)]);
        let mut stats = crate::clb::credentials::Stats::default();
        stats.refreshes.insert(("tke-oidc", "error"), 1);
        m.record_credentials(&stats);
        let share = [("rule", "r".to_owned()), ("backend", "b".to_owned()), ("kind", "requested".to_owned())];
        m.backend_share.get_or_create(&share).set(0.5);
        let text = m.encode_text();
        let families: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
        for (source, text, at_least) in [
            ("docs/src/monitoring.md", section, 10),
            ("rules/watch.yaml", include_str!("../../deploy/components/monitoring/rules/watch.yaml"), 6),
            ("rules/cronjob.yaml", include_str!("../../deploy/components/monitoring/rules/cronjob.yaml"), 4),
            ("dashboard", include_str!("../../deploy/components/monitoring/dashboard/clbsync.json"), 10),
        ] {
            let mut named = BTreeSet::new();
            for (i, _) in text.match_indices("clbsync_") {
                // Part of a longer word (a test's name), not a metric.
                if text[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let name: String = text[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect();
                let name = name.trim_end_matches('_').to_owned();
                let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
                assert!(
                    families.contains(&name.as_str()) || families.contains(&family),
                    "{source} names {name}, not exported: {families:?}"
                );
                named.insert(name);
            }
            assert!(named.len() >= at_least, "{source} names the metrics: {named:?}");
        }
    }

    #[test]
    fn the_text_format_names_counters_with_total_and_has_no_eof() {
        let m = Metrics::new();
        m.record_api_calls([("RegisterTargets", "ok", 2)]);
        m.record_events(1, 2);
        let text = m.encode_text();
        for line in [
            "# HELP clbsync_api_calls_total CLB API requests, by action and result code.\n",
            "# TYPE clbsync_api_calls_total counter\n",
            "clbsync_api_calls_total{action=\"RegisterTargets\",code=\"ok\"} 2\n",
            "# TYPE clbsync_reconcile_duration_seconds histogram\n",
            "# TYPE clbsync_rules gauge\n",
            "clbsync_events_total{result=\"failed\"} 2\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(!text.contains("# EOF") && !text.contains("# TYPE clbsync_api_calls counter"), "{text}");
        assert!(text.ends_with('\n'));
    }
}
