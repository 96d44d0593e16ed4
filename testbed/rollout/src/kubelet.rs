//! A simulated kubelet for one namespace: what the real one does to a pod, on a 50 ms tick, through the API server.
//!
//! - A pending pod is bound to the simulated node (`pods/binding`, the scheduler's call) and gets a fresh IP
//!   (10.1.x.y, never handed out twice in one run, so a deleted pod's IP cannot come back while CLB may still
//!   hold it).
//! - Its container starts: it serves and is ready `startup` later (`ContainersReady=True`).
//! - `Ready` is computed as the kubelet does: `ContainersReady` is True **and** every readiness gate's condition
//!   is present and True. Conditions owned by others (the gate's) are kept: status writes are strategic merge
//!   patches keyed by condition type.
//! - Deletion: the container keeps serving through its `preStop` sleep (`exec: [sleep, N]`), cut short by
//!   `terminationGracePeriodSeconds`, then exits (stops serving); the pod object is then removed with grace 0.
//! - A crash (asked for by the harness) stops serving at once and the container restarts `restart_delay` later.
//!
//! Which IPs serve is pushed to the CLB emulator (its health checks and traffic model read it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clb_emulator::{Emulator, Serving};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The simulated node's name.
pub const NODE: &str = "sim-node-1";

/// Kubelet timing.
#[derive(Debug, Clone, Copy)]
pub struct KubeletTiming {
    /// From container start to serving and ready.
    pub startup: Duration,
    /// From a crash to the container's restart.
    pub restart_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Container started; serves and is ready at the instant.
    Starting(Instant),
    Running,
    /// Crashed; restarts at the instant.
    Crashed(Instant),
    /// Deleted; serves until the instant (end of preStop or of the grace period), then the pod is removed.
    Terminating {
        serving_until: Instant,
        serving: bool,
    },
}

struct Sim {
    ip: String,
    phase: Phase,
    restarts: i32,
}

/// A handle on the running kubelet.
pub struct Kubelet {
    crash: mpsc::UnboundedSender<String>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Kubelet {
    /// Starts the kubelet on the pods of `api`'s namespace.
    pub fn start(api: Api<Pod>, emu: Arc<Emulator>, timing: KubeletTiming) -> Kubelet {
        let (crash, crash_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(api, emu, timing, crash_rx, stop_rx));
        Kubelet { crash, stop, task }
    }

    /// Crashes the container of pod `name` (no preStop: it stops serving at once).
    pub fn crash(&self, name: &str) {
        let _ = self.crash.send(name.to_string());
    }

    /// Stops the kubelet; an error it met is returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        self.task.await.context("kubelet task panicked")?
    }
}

async fn run(
    api: Api<Pod>,
    emu: Arc<Emulator>,
    timing: KubeletTiming,
    mut crash_rx: mpsc::UnboundedReceiver<String>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut sims: HashMap<String, Sim> = HashMap::new();
    let mut next_ip: u32 = 0;
    let mut pushed: Option<BTreeMap<String, bool>> = None;
    loop {
        let now = Instant::now();
        while let Ok(name) = crash_rx.try_recv() {
            if let Some(sim) = sims.get_mut(&name)
                && matches!(sim.phase, Phase::Running | Phase::Starting(_))
            {
                sim.phase = Phase::Crashed(now + timing.restart_delay);
                sim.restarts += 1;
            }
        }
        let pods = api.list(&ListParams::default()).await.context("kubelet: listing pods")?;
        sims.retain(|name, _| pods.items.iter().any(|p| p.metadata.name.as_deref() == Some(name)));
        for pod in &pods.items {
            let name = pod.metadata.name.clone().context("pod without a name")?;
            let spec = pod.spec.as_ref().context("pod without a spec")?;
            if spec.node_name.is_none() {
                bind(&api, &name).await?;
                next_ip += 1;
                let ip = format!("10.1.{}.{}", next_ip / 250, next_ip % 250 + 1);
                sims.insert(name.clone(), Sim { ip, phase: Phase::Starting(now + timing.startup), restarts: 0 });
            }
            let Some(sim) = sims.get_mut(&name) else { continue };
            advance(sim, pod, now, timing);
            if let Phase::Terminating { serving_until, .. } = sim.phase
                && now >= serving_until
            {
                // The container has exited: the pod object goes (the kubelet's final delete, grace 0).
                sim.phase = Phase::Terminating { serving_until, serving: false };
                let dp = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
                match api.delete(&name, &dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e).with_context(|| format!("kubelet: deleting pod {name}")),
                }
                continue;
            }
            write_status(&api, &name, pod, sim).await?;
        }
        let serving: BTreeMap<String, bool> =
            sims.values().filter(|s| serves(s)).map(|s| (s.ip.clone(), true)).collect();
        if pushed.as_ref() != Some(&serving) {
            emu.set_serving_all(Serving { default: false, ips: serving.clone() });
            pushed = Some(serving);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = stop.changed() => return Ok(()),
        }
    }
}

fn serves(sim: &Sim) -> bool {
    match sim.phase {
        Phase::Running => true,
        Phase::Terminating { serving, .. } => serving,
        Phase::Starting(_) | Phase::Crashed(_) => false,
    }
}

/// Moves one pod's container along: startup, restart after a crash, termination on deletion.
fn advance(sim: &mut Sim, pod: &Pod, now: Instant, timing: KubeletTiming) {
    match sim.phase {
        Phase::Starting(at) if now >= at => sim.phase = Phase::Running,
        Phase::Crashed(at) if now >= at => sim.phase = Phase::Starting(now + timing.startup),
        _ => {}
    }
    if pod.metadata.deletion_timestamp.is_some() && !matches!(sim.phase, Phase::Terminating { .. }) {
        let serving = sim.phase == Phase::Running;
        let spec = pod.spec.as_ref();
        let grace = spec.and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        let pre_stop = spec.map_or(0, pre_stop_secs);
        let keep = if serving { Duration::from_secs(pre_stop.min(grace.max(0)) as u64) } else { Duration::ZERO };
        sim.phase = Phase::Terminating { serving_until: now + keep, serving };
    }
}

/// Seconds of the first container's `preStop: exec: [sleep, N]` (0 without one).
fn pre_stop_secs(spec: &k8s_openapi::api::core::v1::PodSpec) -> i64 {
    let cmd = spec
        .containers
        .first()
        .and_then(|c| c.lifecycle.as_ref())
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.clone())
        .unwrap_or_default();
    match cmd.as_slice() {
        [sleep, n] if sleep == "sleep" => n.parse().unwrap_or(0),
        _ => 0,
    }
}

async fn bind(api: &Api<Pod>, name: &str) -> anyhow::Result<()> {
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name},
        "target": {"apiVersion": "v1", "kind": "Node", "name": NODE},
    });
    api.create_subresource::<_, serde_json::Value>("binding", name, &PostParams::default(), &binding)
        .await
        .with_context(|| format!("kubelet: binding pod {name}"))?;
    Ok(())
}

fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a str> {
    let conds = pod.status.as_ref()?.conditions.as_ref()?;
    conds.iter().find(|c| c.type_ == kind).map(|c| c.status.as_str())
}

/// `Ready` as the kubelet computes it: containers ready and every readiness gate's condition True.
pub fn pod_ready(pod: &Pod, containers_ready: bool) -> bool {
    let gates = pod.spec.as_ref().and_then(|s| s.readiness_gates.as_ref());
    containers_ready && gates.into_iter().flatten().all(|g| condition(pod, &g.condition_type) == Some("True"))
}

/// Writes the pod's status when it differs from what the kubelet computes.
async fn write_status(api: &Api<Pod>, name: &str, pod: &Pod, sim: &Sim) -> anyhow::Result<()> {
    let containers_ready = match sim.phase {
        Phase::Running => true,
        Phase::Terminating { serving, .. } => serving,
        Phase::Starting(_) | Phase::Crashed(_) => false,
    };
    let ready = pod_ready(pod, containers_ready);
    let s = |b: bool| if b { "True" } else { "False" };
    let status = pod.status.as_ref();
    let restarts =
        status.and_then(|st| st.container_statuses.as_ref()).and_then(|cs| cs.first()).map_or(-1, |c| c.restart_count);
    if status.and_then(|st| st.pod_ip.as_deref()) == Some(sim.ip.as_str())
        && condition(pod, "ContainersReady") == Some(s(containers_ready))
        && condition(pod, "Ready") == Some(s(ready))
        && restarts == sim.restarts
    {
        return Ok(());
    }
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let patch = json!({"status": {
        "phase": "Running",
        "hostIP": "10.255.0.1",
        "podIP": sim.ip,
        "podIPs": [{"ip": sim.ip}],
        "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Initialized", "status": "True"},
            {"type": "ContainersReady", "status": s(containers_ready), "lastTransitionTime": now},
            {"type": "Ready", "status": s(ready), "lastTransitionTime": now},
        ],
        "containerStatuses": [{
            "name": "app", "ready": containers_ready, "started": containers_ready, "restartCount": sim.restarts,
            "image": "sim/app:1", "imageID": "",
            "state": if containers_ready { json!({"running": {"startedAt": now}}) } else { json!({"waiting": {"reason": "ContainerCreating"}}) },
        }],
    }});
    match api.patch_status(name, &PatchParams::default(), &Patch::Strategic(patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e).with_context(|| format!("kubelet: writing the status of pod {name}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(gates: &[&str], conditions: &[(&str, &str)]) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {
                "containers": [{"name": "app", "lifecycle": {"preStop": {"exec": {"command": ["sleep", "15"]}}}}],
                "readinessGates": gates.iter().map(|g| json!({"conditionType": g})).collect::<Vec<_>>(),
            },
            "status": {"conditions": conditions.iter().map(|(t, s)| json!({"type": t, "status": s})).collect::<Vec<_>>()},
        }))
        .expect("a pod")
    }

    #[test]
    fn ready_needs_containers_ready_and_every_gate_true() {
        assert!(pod_ready(&pod(&[], &[]), true));
        assert!(!pod_ready(&pod(&[], &[]), false));
        let gated = ["clbsync.dev/registered", "other/gate"];
        assert!(!pod_ready(&pod(&gated, &[]), true), "a gate without its condition is not True");
        assert!(!pod_ready(&pod(&gated, &[("clbsync.dev/registered", "True"), ("other/gate", "False")]), true));
        let all = [("clbsync.dev/registered", "True"), ("other/gate", "True")];
        assert!(pod_ready(&pod(&gated, &all), true));
        assert!(!pod_ready(&pod(&gated, &all), false), "gates never make a pod with unready containers ready");
    }

    #[test]
    fn pre_stop_sleep_is_read_from_the_first_container() {
        let p = pod(&[], &[]);
        assert_eq!(pre_stop_secs(p.spec.as_ref().expect("spec")), 15);
        let mut bare = p.spec.clone().expect("spec");
        bare.containers[0].lifecycle = None;
        assert_eq!(pre_stop_secs(&bare), 0);
    }
}
