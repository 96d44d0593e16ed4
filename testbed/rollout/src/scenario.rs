//! One scenario in one mode: set up a steady 10- (or 3-) replica Deployment behind one CLB listener, start the
//! traffic, change the Deployment, and measure until the rollout is complete, the old pods are gone and the
//! listener's targets are exactly the ready pods, healthy.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clb_emulator::traffic::{RuleTraffic, Sample};
use clb_emulator::{Config, Emulator, HealthDetail, State, TrafficConfig};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use crate::Timing;
use crate::driver::{Clbsync, Driver};
use crate::kubelet::{Kubelet, KubeletTiming};

pub(crate) const LB: &str = "lb-sim00001";
pub(crate) const LISTENER: &str = "lbl-sim00080";
const GATE: &str = "clbsync.dev/registered";
/// The Deployment [`Scenario::Switch`] switches the rule to.
const GREEN: &str = "green";

/// What happens to the Deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Rolling update of 10 replicas, maxSurge 25%, maxUnavailable 0.
    Rolling,
    /// Rolling update of 10 replicas, maxSurge 25%, maxUnavailable 25%.
    RollingUnavailable,
    /// Scale 10 → 3.
    ScaleDown,
    /// Scale 3 → 10.
    ScaleUp,
    /// One of 10 pods crashes (exits without preStop) and restarts.
    Crash,
    /// The rules file switches the rule's backend from Deployment `web` (blue, 10 replicas) to Deployment `green`
    /// (10 replicas, running since the start); blue keeps running.
    Switch,
    /// A listener split between Deployments `web` (10) and `canary` (1), edited 95/5 → 50/50 → canary only →
    /// web only ([`crate::split`]); not in [`Scenario::ALL`] (its result is the delivered split, not a rollout).
    Split,
}

impl Scenario {
    /// Every scenario, in table order.
    pub const ALL: [Scenario; 6] = [
        Scenario::Rolling,
        Scenario::RollingUnavailable,
        Scenario::ScaleDown,
        Scenario::ScaleUp,
        Scenario::Crash,
        Scenario::Switch,
    ];

    /// Row label.
    pub fn label(self) -> &'static str {
        match self {
            Scenario::Rolling => "rolling update 10, maxSurge 25%, maxUnavailable 0",
            Scenario::RollingUnavailable => "rolling update 10, maxSurge 25%, maxUnavailable 25%",
            Scenario::ScaleDown => "scale 10 → 3",
            Scenario::ScaleUp => "scale 3 → 10",
            Scenario::Crash => "one pod of 10 crashes",
            Scenario::Switch => "switch a rule's backend (blue → green, 10 each)",
            Scenario::Split => "split 95/5 → 50/50 → canary only → web only (10 + 1 pods)",
        }
    }

    fn initial_replicas(self) -> i32 {
        if self == Scenario::ScaleUp { 3 } else { 10 }
    }

    fn max_unavailable(self) -> &'static str {
        if self == Scenario::RollingUnavailable { "25%" } else { "0%" }
    }
}

/// How clbsync runs, and what the pods carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// CronJob, pods without preStop.
    Cron,
    /// CronJob; pods with the README's preStop.
    CronPreStop,
    /// CronJob; pods with the readiness gate and preStop.
    CronGatePreStop,
    /// Watch mode, pods without preStop.
    Watch,
    /// Watch mode; pods with preStop.
    WatchPreStop,
    /// Watch mode; pods with the readiness gate and preStop.
    WatchGatePreStop,
}

impl Mode {
    /// Every mode, in table order.
    pub const ALL: [Mode; 6] =
        [Mode::Cron, Mode::CronPreStop, Mode::CronGatePreStop, Mode::Watch, Mode::WatchPreStop, Mode::WatchGatePreStop];

    /// Column label.
    pub fn label(self) -> &'static str {
        match self {
            Mode::Cron => "CronJob",
            Mode::CronPreStop => "CronJob + preStop",
            Mode::CronGatePreStop => "CronJob + gate + preStop",
            Mode::Watch => "watch",
            Mode::WatchPreStop => "watch + preStop",
            Mode::WatchGatePreStop => "watch + gate + preStop",
        }
    }
    fn watch(self) -> bool {
        matches!(self, Mode::Watch | Mode::WatchPreStop | Mode::WatchGatePreStop)
    }
    fn pre_stop(self) -> bool {
        !matches!(self, Mode::Cron | Mode::Watch)
    }
    /// Whether the pods carry the `clbsync.dev/registered` readiness gate.
    pub fn gate(self) -> bool {
        matches!(self, Mode::CronGatePreStop | Mode::WatchGatePreStop)
    }
}

/// Inputs of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The clbsync binary.
    pub clbsync: PathBuf,
    /// Kubeconfig of the test API server (the controller-manager must run against it).
    pub kubeconfig: PathBuf,
    /// Where the logs of the run go (clbsync's stderr).
    pub work_dir: PathBuf,
    /// Delays.
    pub timing: Timing,
    /// Requests per second and seed of the traffic model.
    pub traffic: TrafficConfig,
    /// Give up (error) after this long.
    pub timeout: Duration,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// Scenario.
    pub scenario: Scenario,
    /// Mode.
    pub mode: Mode,
    /// Delays divided by this.
    pub factor: u32,
    /// Requests sent from the change until converged.
    pub sent: u64,
    /// Requests failed.
    pub failed: u64,
    /// Of them, failed because no target could take them.
    pub failed_no_target: u64,
    /// Longest window with no target able to serve, ms.
    pub longest_no_target_ms: u64,
    /// Change to Deployment complete with the old pods gone (crash: to the pod ready again), ms.
    pub rollout_ms: u64,
    /// Change to the listener's targets equal to the ready pods, all healthy (end of the measurement), ms.
    pub converged_ms: u64,
    /// Largest step of the traffic model, ms (more than its step when the machine was busy).
    pub max_step_ms: u64,
    /// Traffic time series (from the change).
    pub series: Vec<Sample>,
    /// [`Scenario::Split`]: what each step delivered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<crate::split::SplitStep>,
}

/// Runs `scenario` in `mode`; errors when something is broken (not when requests fail: that is the result).
pub async fn run(scenario: Scenario, mode: Mode, opts: &RunOptions) -> anyhow::Result<Outcome> {
    let client = client(&opts.kubeconfig).await?;
    let ns = format!("rollout-{}", std::process::id() as u64 * 1000 + u64::from(fastish_suffix()));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}}))?)
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    let result = run_in(&client, &ns, scenario, mode, opts).await;
    clean_up(&client, &ns).await;
    result
}

/// Removes what the run left (the test API server runs no garbage collector and no namespace controller, so a
/// deleted Deployment would leave its ReplicaSets and a deleted namespace its objects): the Deployment and its
/// ReplicaSets are orphaned, then every pod is removed at once.
async fn clean_up(client: &Client, ns: &str) {
    let orphan = DeleteParams { propagation_policy: Some(PropagationPolicy::Orphan), ..DeleteParams::default() };
    for name in ["web", GREEN, crate::split::CANARY] {
        let _ = Api::<Deployment>::namespaced(client.clone(), ns).delete(name, &orphan).await;
    }
    let _ = Api::<ReplicaSet>::namespaced(client.clone(), ns).delete_collection(&orphan, &ListParams::default()).await;
    let now = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
    let _ = Api::<Pod>::namespaced(client.clone(), ns).delete_collection(&now, &ListParams::default()).await;
}

fn fastish_suffix() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_micros())
}

async fn client(kubeconfig: &PathBuf) -> anyhow::Result<Client> {
    let file = Kubeconfig::read_from(kubeconfig).with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default()).await?;
    Ok(Client::try_from(config)?)
}

fn emulator_state() -> anyhow::Result<State> {
    let yaml = format!(
        "region: ap-guangzhou
load_balancers:
  - id: {LB}
    listeners:
      - {{id: {LISTENER}, protocol: TCP, port: 80, targets: []}}
"
    );
    State::from_yaml_str(&yaml).context("the simulator's emulator seed")
}

fn rules_yaml(ns: &str, deployment: &str) -> String {
    format!(
        "- load_balancer_id: {LB}
  listeners:
    - {{port: 80, protocol: tcp, backend: {{namespace: {ns}, deployment: {deployment}, port: 8080, weight: 10}}}}
"
    )
}

/// Deployment `name`, its pods labelled `app: <name>`.
fn deployment(name: &str, scenario: Scenario, mode: Mode, timing: &Timing) -> serde_json::Value {
    let secs = |d: Duration| d.as_secs() as i64;
    let mut pod_spec = json!({
        "containers": [{"name": "app", "image": "sim/app:1", "ports": [{"name": "http", "containerPort": 8080}]}],
        "terminationGracePeriodSeconds": secs(timing.grace()),
    });
    if mode.pre_stop() {
        pod_spec["containers"][0]["lifecycle"] =
            json!({"preStop": {"exec": {"command": ["sleep", secs(timing.pre_stop()).to_string()]}}});
        pod_spec["terminationGracePeriodSeconds"] = json!(secs(timing.grace_with_pre_stop()));
    }
    if mode.gate() {
        pod_spec["readinessGates"] = json!([{"conditionType": GATE}]);
    }
    json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": scenario.initial_replicas(),
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": scenario.max_unavailable()}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": {"version": "1"}}, "spec": pod_spec},
        },
    })
}

async fn run_in(
    client: &Client,
    ns: &str,
    scenario: Scenario,
    mode: Mode,
    opts: &RunOptions,
) -> anyhow::Result<Outcome> {
    let timing = opts.timing;
    let config = Config {
        state: emulator_state()?,
        health: timing.health(),
        task_delay: timing.task_delay(),
        ..Config::default()
    };
    let emu = Arc::new(clb_emulator::start("127.0.0.1:0".parse()?, config).await?);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let kubelet = Kubelet::start(
        pods.clone(),
        emu.clone(),
        KubeletTiming { startup: timing.startup(), restart_delay: timing.restart_delay() },
    );
    std::fs::create_dir_all(&opts.work_dir)?;
    let rules = opts.work_dir.join(format!("rules-{ns}.yaml"));
    let initial = match scenario {
        Scenario::Split => crate::split::initial_rules(ns),
        _ => rules_yaml(ns, "web"),
    };
    std::fs::write(&rules, initial)?;
    let clbsync = Clbsync {
        bin: opts.clbsync.clone(),
        rules,
        kubeconfig: opts.kubeconfig.clone(),
        endpoint: emu.endpoint(),
        log: opts.work_dir.join(format!("clbsync-{}-{}.log", slug(scenario), slug(mode))),
    };
    let _ = std::fs::remove_file(&clbsync.log);
    let names: &[&str] = match scenario {
        Scenario::Switch => &["web", GREEN],
        Scenario::Split => &["web", crate::split::CANARY],
        _ => &["web"],
    };
    for name in names {
        let mut d = deployment(name, scenario, mode, &timing);
        if *name == crate::split::CANARY {
            d["spec"]["replicas"] = json!(crate::split::CANARY_REPLICAS);
        }
        deployments
            .create(&PostParams::default(), &serde_json::from_value(d)?)
            .await
            .with_context(|| format!("creating Deployment {name}"))?;
    }
    let mut driver = match mode.watch() {
        true => Driver::watch(&clbsync, timing.debounce(), timing.resync())?,
        false => Driver::cron(clbsync.clone(), timing.cron_period()),
    };
    let deadline = Instant::now() + opts.timeout;
    let measured = async {
        if scenario == Scenario::Split {
            wait(deadline, "the split's Deployments to be ready", || async {
                Ok(complete(&deployments, &pods, "web").await?
                    && complete(&deployments, &pods, crate::split::CANARY).await?)
            })
            .await?;
            let t0 = Instant::now();
            let steps = crate::split::steps(&emu, &pods, &clbsync.rules, ns, opts.traffic, deadline).await?;
            let elapsed = t0.elapsed().as_millis() as u64;
            return outcome(&emu, scenario, mode, timing, (elapsed, elapsed), steps);
        }
        // Steady state first: every replica ready and bound, healthy (green's containers ready, unbound).
        wait(deadline, "the initial replicas to be ready and bound", || async {
            let green = scenario != Scenario::Switch || containers_ready(&pods, GREEN).await? == 10;
            Ok(complete(&deployments, &pods, "web").await? && converged(&emu, &pods, "web").await? && green)
        })
        .await?;
        driver.after_next_run().await?;
        emu.start_traffic(opts.traffic);
        let t0 = Instant::now();
        let crashed = trigger(scenario, &deployments, &pods, &kubelet, &clbsync.rules, ns).await?;
        let serving = if scenario == Scenario::Switch { GREEN } else { "web" };
        let mut rollout = None;
        loop {
            if Instant::now() > deadline {
                bail!("not converged within {:?} (clbsync log: {})", opts.timeout, clbsync.log.display());
            }
            let done = match &crashed {
                Some(name) => restarted(&pods, name).await?,
                None => complete(&deployments, &pods, serving).await?,
            };
            if done && rollout.is_none() {
                rollout = Some(t0.elapsed());
            }
            if rollout.is_some() && converged(&emu, &pods, serving).await? {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let converged_at = t0.elapsed().as_millis() as u64;
        let rollout = rollout.map_or(0, |d| d.as_millis() as u64);
        outcome(&emu, scenario, mode, timing, (rollout, converged_at), Vec::new())
    }
    .await;
    let stopped = driver.stop(&clbsync.log).await;
    let kubelet_result = kubelet.stop().await;
    let outcome = measured?;
    stopped?;
    kubelet_result?;
    Ok(outcome)
}

/// The outcome from the traffic model's report; `(rollout, converged)` in ms.
fn outcome(
    emu: &Emulator,
    scenario: Scenario,
    mode: Mode,
    timing: Timing,
    (rollout_ms, converged_ms): (u64, u64),
    split: Vec<crate::split::SplitStep>,
) -> anyhow::Result<Outcome> {
    let report = emu.traffic().context("the traffic model runs")?;
    let rule: RuleTraffic = report.rules.get(&format!("{LB}/{LISTENER}")).cloned().unwrap_or_default();
    Ok(Outcome {
        scenario,
        mode,
        factor: timing.factor,
        sent: rule.sent,
        failed: rule.failed,
        failed_no_target: rule.failed_no_target,
        longest_no_target_ms: rule.longest_no_target_ms,
        rollout_ms,
        converged_ms,
        max_step_ms: report.max_step_ms,
        series: rule.series,
        split,
    })
}

/// A file-name-safe name.
pub fn slug<T: Serialize>(v: T) -> String {
    serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

async fn trigger(
    scenario: Scenario,
    deployments: &Api<Deployment>,
    pods: &Api<Pod>,
    kubelet: &Kubelet,
    rules: &std::path::Path,
    ns: &str,
) -> anyhow::Result<Option<String>> {
    let patch = |v: serde_json::Value| async move {
        deployments.patch("web", &PatchParams::default(), &Patch::Merge(v)).await.context("patching Deployment web")
    };
    match scenario {
        Scenario::Rolling | Scenario::RollingUnavailable => {
            patch(json!({"spec": {"template": {"metadata": {"annotations": {"version": "2"}}}}})).await?;
        }
        Scenario::ScaleDown => {
            patch(json!({"spec": {"replicas": 3}})).await?;
        }
        Scenario::ScaleUp => {
            patch(json!({"spec": {"replicas": 10}})).await?;
        }
        Scenario::Switch => {
            // Swapped in whole, as a ConfigMap update does.
            let new = rules.with_extension("new");
            std::fs::write(&new, rules_yaml(ns, GREEN))?;
            std::fs::rename(&new, rules).context("switching the rules file")?;
        }
        Scenario::Split => bail!("the split scenario edits its rules in crate::split::steps"),
        Scenario::Crash => {
            let list = pods.list(&ListParams::default()).await?;
            let mut names: Vec<String> = list.items.iter().filter_map(|p| p.metadata.name.clone()).collect();
            names.sort();
            let name = names.into_iter().next().context("no pod to crash")?;
            kubelet.crash(&name);
            return Ok(Some(name));
        }
    }
    Ok(None)
}

async fn wait<F, Fut>(deadline: Instant, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    while !check().await? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The pods of Deployment `name`.
pub(crate) fn of(name: &str) -> ListParams {
    ListParams::default().labels(&format!("app={name}"))
}

/// How many of Deployment `name`'s pods have their containers ready.
async fn containers_ready(pods: &Api<Pod>, name: &str) -> anyhow::Result<usize> {
    let list = pods.list(&of(name)).await?;
    let ready = |p: &Pod| {
        let conditions = p.status.as_ref().and_then(|s| s.conditions.as_ref());
        conditions.is_some_and(|c| c.iter().any(|c| c.type_ == "ContainersReady" && c.status == "True"))
    };
    Ok(list.items.iter().filter(|p| ready(p)).count())
}

/// The Deployment controller is done with Deployment `name` (every replica updated and available) and only its
/// pods are left.
async fn complete(deployments: &Api<Deployment>, pods: &Api<Pod>, name: &str) -> anyhow::Result<bool> {
    let d = deployments.get(name).await?;
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let Some(st) = d.status.as_ref() else { return Ok(false) };
    let observed = st.observed_generation >= d.metadata.generation;
    let settled = [st.replicas, st.updated_replicas, st.available_replicas, st.ready_replicas]
        .iter()
        .all(|n| n.unwrap_or(0) == want);
    let list = pods.list(&of(name)).await?;
    Ok(observed && settled && list.items.len() == want as usize)
}

/// The crashed pod is ready again.
async fn restarted(pods: &Api<Pod>, name: &str) -> anyhow::Result<bool> {
    let p = pods.get(name).await?;
    let restarts = p.status.as_ref().and_then(|s| s.container_statuses.as_ref()).and_then(|c| c.first());
    Ok(restarts.is_some_and(|c| c.restart_count >= 1) && ready_ip(&p).is_some())
}

pub(crate) fn ready_ip(p: &Pod) -> Option<String> {
    let st = p.status.as_ref()?;
    let ready = st.conditions.as_ref()?.iter().any(|c| c.type_ == "Ready" && c.status == "True");
    (ready && p.metadata.deletion_timestamp.is_none()).then(|| st.pod_ip.clone()).flatten()
}

/// The listener's targets are exactly the ready IPs of Deployment `name`'s pods, each weighted and healthy.
async fn converged(emu: &Emulator, pods: &Api<Pod>, name: &str) -> anyhow::Result<bool> {
    let list = pods.list(&of(name)).await?;
    if list.items.iter().any(|p| p.metadata.deletion_timestamp.is_some()) {
        return Ok(false);
    }
    let ready: BTreeSet<String> = list.items.iter().filter_map(ready_ip).collect();
    if ready.len() != list.items.len() {
        return Ok(false);
    }
    let bound: Vec<_> = emu.health().into_iter().filter(|t| t.load_balancer_id == LB).collect();
    let ips: BTreeSet<String> = bound.iter().map(|t| t.ip.clone()).collect();
    Ok(ips == ready && bound.iter().all(|t| t.weight > 0 && t.health == HealthDetail::Alive))
}
