//! The traffic-split scenario (issue 28): one listener split between Deployment `web` (10 replicas) and
//! Deployment `canary` (1), edited through 95/5 → 50/50 → canary only, then switched back to web only (blue/green,
//! 1 → 10 pods), under one request stream. After each step converges, the requests each backend gets over a
//! window are counted by the emulator's traffic model: the delivered split, next to the planned one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use clb_emulator::traffic::target_key;
use clb_emulator::{Emulator, HealthDetail, TrafficConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::scenario::{LB, of, ready_ip};

/// The other Deployment of the split.
pub const CANARY: &str = "canary";
/// Its replicas (web has 10): unequal pod counts, so per-pod weights would not give the split.
pub const CANARY_REPLICAS: i32 = 1;
/// Requests per second while the split is measured: a window of [`WINDOW`] puts the count of a 5% backend within
/// ±0.4 points of its share (3 sigma), of a 50% one within ±0.9.
const RPS: f64 = 20_000.0;
/// How long each step's split is counted once it has converged.
const WINDOW: Duration = Duration::from_millis(1500);

/// What one step of the scenario delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SplitStep {
    /// The rules file's backends, e.g. `web 95, canary 5`.
    pub label: String,
    /// Each backend's requested part, in percent.
    pub requested: BTreeMap<String, f64>,
    /// Each backend's part of the bound weight once converged, in percent.
    pub planned: BTreeMap<String, f64>,
    /// Each backend's part of the requests of the window, in percent.
    pub delivered: BTreeMap<String, f64>,
    /// Requests in the window.
    pub requests: u64,
    /// `BatchModifyTargetWeight` calls from the edit to converged.
    pub weight_calls: usize,
    /// Register and deregister calls in the same time.
    pub register_calls: usize,
    pub deregister_calls: usize,
    /// Edit to converged, ms.
    pub converged_ms: u64,
}

/// The rules file for `backends` (name, share); one backend is written as a split of one.
pub fn rules_yaml(ns: &str, backends: &[(&str, u32)]) -> String {
    let mut out =
        format!("- load_balancer_id: {LB}\n  listeners:\n    - port: 80\n      protocol: tcp\n      backends:\n");
    for (name, share) in backends {
        out += &format!("        - {{namespace: {ns}, deployment: {name}, port: 8080, share: {share}}}\n");
    }
    out
}

/// One step: the backends and their shares.
struct Edit {
    backends: &'static [(&'static str, u32)],
}

const START: Edit = Edit { backends: &[("web", 95), (CANARY, 5)] };
const EDITS: [Edit; 3] = [
    Edit { backends: &[("web", 50), (CANARY, 50)] },
    Edit { backends: &[(CANARY, 1)] },
    Edit { backends: &[("web", 1)] },
];

impl Edit {
    /// Each backend's requested part, in percent.
    fn requested(&self) -> BTreeMap<String, f64> {
        let total: u32 = self.backends.iter().map(|(_, s)| s).sum();
        self.backends.iter().map(|(n, s)| ((*n).to_owned(), round2(f64::from(*s) * 100.0 / f64::from(total)))).collect()
    }
}

/// Percent to two decimals.
fn round2(p: f64) -> f64 {
    (p * 100.0).round() / 100.0
}

/// How far (percentage points) the bound weights may give a backend from its requested part: the planner's
/// tolerance (these splits are all within reach of it).
const TOLERANCE: f64 = 0.5;

/// The rules file the scenario starts with.
pub fn initial_rules(ns: &str) -> String {
    rules_yaml(ns, START.backends)
}

/// Runs the steps (the Deployments ready and clbsync running); returns them, with the stream's requests and
/// failures over all of them in the emulator's report.
pub async fn steps(
    emu: &Emulator,
    pods: &Api<Pod>,
    rules: &Path,
    ns: &str,
    traffic: TrafficConfig,
    deadline: Instant,
) -> anyhow::Result<Vec<SplitStep>> {
    let ips = backend_ips(pods).await?;
    let t0 = Instant::now();
    let planned = converge(emu, &ips, &START, deadline).await?;
    emu.start_traffic(TrafficConfig { requests_per_second: traffic.requests_per_second.max(RPS), ..traffic });
    let mut out = vec![measure(emu, &ips, (&START, planned), Counts::default(), t0.elapsed()).await?];
    for edit in &EDITS {
        let before = Counts::of(emu);
        let new = rules.with_extension("new");
        std::fs::write(&new, rules_yaml(ns, edit.backends))?;
        std::fs::rename(&new, rules).context("editing the rules file")?;
        let t0 = Instant::now();
        let planned = converge(emu, &ips, edit, deadline).await?;
        out.push(measure(emu, &ips, (edit, planned), before, t0.elapsed()).await?);
    }
    Ok(out)
}

/// Mutating calls so far, by kind.
#[derive(Default, Clone, Copy)]
struct Counts {
    weight: usize,
    register: usize,
    deregister: usize,
}

impl Counts {
    fn of(emu: &Emulator) -> Counts {
        let calls = emu.calls();
        Counts {
            weight: calls.count("BatchModifyTargetWeight"),
            register: calls.count("RegisterTargets") + calls.count("BatchRegisterTargets"),
            deregister: calls.count("DeregisterTargets") + calls.count("BatchDeregisterTargets"),
        }
    }
}

/// Each backend's ready pod IPs.
async fn backend_ips(pods: &Api<Pod>) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for name in ["web", CANARY] {
        let list = pods.list(&of(name)).await?;
        out.insert(name.to_owned(), list.items.iter().filter_map(ready_ip).collect());
    }
    Ok(out)
}

/// Each backend's part of the bound weight, in percent, when the listener's targets are exactly the edit's
/// backends' pods, each healthy and weighted, one weight per backend, within [`TOLERANCE`] of the shares.
fn settled(emu: &Emulator, ips: &BTreeMap<String, BTreeSet<String>>, edit: &Edit) -> Option<BTreeMap<String, f64>> {
    let bound: Vec<_> = emu.health().into_iter().filter(|t| t.load_balancer_id == LB).collect();
    let want: BTreeSet<&String> = edit.backends.iter().flat_map(|(n, _)| &ips[*n]).collect();
    let got: BTreeSet<&String> = bound.iter().map(|t| &t.ip).collect();
    if got != want || bound.iter().any(|t| t.health != HealthDetail::Alive || t.weight == 0) {
        return None;
    }
    let mut load: BTreeMap<String, u64> = BTreeMap::new();
    for (name, _) in edit.backends {
        let weights: BTreeSet<u32> = bound.iter().filter(|t| ips[*name].contains(&t.ip)).map(|t| t.weight).collect();
        let [w] = weights.into_iter().collect::<Vec<_>>()[..] else { return None };
        load.insert((*name).to_owned(), u64::from(w) * ips[*name].len() as u64);
    }
    let total: u64 = load.values().sum();
    let planned: BTreeMap<String, f64> =
        load.into_iter().map(|(n, l)| (n, round2(l as f64 * 100.0 / total as f64))).collect();
    let requested = edit.requested();
    planned.iter().all(|(n, p)| (p - requested[n]).abs() <= TOLERANCE).then_some(planned)
}

/// Waits until the edit has [`settled`]; returns the planned split.
async fn converge(
    emu: &Emulator,
    ips: &BTreeMap<String, BTreeSet<String>>,
    edit: &Edit,
    deadline: Instant,
) -> anyhow::Result<BTreeMap<String, f64>> {
    loop {
        if let Some(planned) = settled(emu, ips, edit) {
            return Ok(planned);
        }
        if Instant::now() > deadline {
            let bound: BTreeMap<String, u32> =
                emu.health().into_iter().filter(|t| t.load_balancer_id == LB).map(|t| (t.ip, t.weight)).collect();
            bail!("the split {:?} did not converge: bound {bound:?}", edit.backends);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts one [`WINDOW`] of requests per backend.
async fn measure(
    emu: &Emulator,
    ips: &BTreeMap<String, BTreeSet<String>>,
    (edit, planned): (&Edit, BTreeMap<String, f64>),
    before: Counts,
    converged: Duration,
) -> anyhow::Result<SplitStep> {
    let calls = Counts::of(emu);
    let sent = |emu: &Emulator| -> anyhow::Result<BTreeMap<String, u64>> {
        let report = emu.traffic().context("the traffic model runs")?;
        let rule = report.rules.get(&format!("{LB}/{}", crate::scenario::LISTENER)).cloned().unwrap_or_default();
        let per = |ips: &BTreeSet<String>| {
            ips.iter().filter_map(|ip| rule.targets.get(&target_key(ip, 8080))).map(|t| t.sent).sum()
        };
        Ok(edit.backends.iter().map(|(name, _)| ((*name).to_owned(), per(&ips[*name]))).collect())
    };
    let start = sent(emu)?;
    tokio::time::sleep(WINDOW).await;
    let end = sent(emu)?;
    let got: BTreeMap<String, u64> = end.iter().map(|(name, n)| (name.clone(), n - start[name])).collect();
    let requests: u64 = got.values().sum();
    let percent = |n: u64| round2(n as f64 * 100.0 / requests.max(1) as f64);
    Ok(SplitStep {
        label: edit.backends.iter().map(|(n, s)| format!("{n} {s}")).collect::<Vec<_>>().join(", "),
        requested: edit.requested(),
        planned,
        delivered: got.iter().map(|(n, c)| (n.clone(), percent(*c))).collect(),
        requests,
        weight_calls: calls.weight - before.weight,
        register_calls: calls.register - before.register,
        deregister_calls: calls.deregister - before.deregister,
        converged_ms: converged.as_millis() as u64,
    })
}

/// The Markdown table of BENCHMARKS.md's "Traffic splitting": per step, each backend's delivered part and the
/// calls the edit cost, the median of the runs (min–max), from `outcomes` of [`crate::Scenario::Split`] runs.
pub fn table(outcomes: &[crate::Outcome]) -> String {
    let runs: Vec<&[SplitStep]> = outcomes.iter().map(|o| o.split.as_slice()).filter(|s| !s.is_empty()).collect();
    let mut out = format!(
        "| step ({} runs) | requested | planned (weights) | delivered | weight-change calls | register / deregister calls | converged |\n|---|---|---|---|---|---|---|\n",
        runs.len()
    );
    let Some(first) = runs.first() else { return out };
    for (i, step) in first.iter().enumerate() {
        let of = |f: &dyn Fn(&SplitStep) -> f64| -> Vec<f64> { runs.iter().filter_map(|r| r.get(i)).map(f).collect() };
        let share = |pick: fn(&SplitStep) -> &BTreeMap<String, f64>| {
            step.requested
                .keys()
                .map(|b| format!("{b} {}", spread(&of(&|s: &SplitStep| pick(s).get(b).copied().unwrap_or(0.0)), "%")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let requested: Vec<String> = step.requested.iter().map(|(b, p)| format!("{b} {p}%")).collect();
        out += &format!(
            "| {} | {} | {} | {} | {} | {} / {} | {} |\n",
            step.label,
            requested.join(", "),
            share(|s| &s.planned),
            share(|s| &s.delivered),
            spread(&of(&|s: &SplitStep| s.weight_calls as f64), ""),
            spread(&of(&|s: &SplitStep| s.register_calls as f64), ""),
            spread(&of(&|s: &SplitStep| s.deregister_calls as f64), ""),
            spread(&of(&|s: &SplitStep| s.converged_ms as f64 / 1000.0), " s"),
        );
    }
    let failed: Vec<String> = outcomes.iter().map(|o| format!("{} / {}", o.failed, o.sent)).collect();
    out + &format!("\nFailed / sent per run (the whole stream, every step): {}\n", failed.join(", "))
}

/// `median (min–max)`, or the value alone when they are all equal.
fn spread(values: &[f64], unit: &str) -> String {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let (Some(lo), Some(hi)) = (v.first(), v.last()) else { return "-".into() };
    let median = v[v.len() / 2];
    let fmt = |x: f64| if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.2}") };
    if lo == hi {
        format!("{}{unit}", fmt(median))
    } else {
        format!("{}{unit} ({}–{})", fmt(median), fmt(*lo), fmt(*hi))
    }
}
