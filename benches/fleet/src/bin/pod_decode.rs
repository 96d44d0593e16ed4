//! `pod-decode`: CPU time and heap used to decode a pod list from the test kube-apiserver into clbsync's
//! `desired::Pod`, two ways: the typed k8s-openapi `Pod` (what kube-rs's `Api<Pod>::list` does) and a minimal
//! struct holding only the fields clbsync reads. Uses the medium fleet's 2,000 seeded pods (run clbsync-bench
//! first), as one body of 2,000 and as 50 bodies of 40 (the per-deployment lists a run makes).

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Pod as K8sPod;
use kube::core::ObjectList;
use serde::Deserialize;

use clbsync::desired::convert::pod_from_k8s;
use clbsync::model::Pod;

/// Counts live and peak heap bytes.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(l.size(), Relaxed) + l.size();
        PEAK.fetch_max(live, Relaxed);
        ALLOCS.fetch_add(1, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---- the minimal shape: only what clbsync reads ----

#[derive(Deserialize)]
struct MinList {
    items: Vec<MinPod>,
}

#[derive(Deserialize)]
struct MinPod {
    metadata: MinMeta,
    #[serde(default)]
    spec: Option<MinSpec>,
    #[serde(default)]
    status: Option<MinStatus>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MinMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    deletion_timestamp: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct MinSpec {
    #[serde(default)]
    containers: Vec<MinContainer>,
}

#[derive(Deserialize)]
struct MinContainer {
    #[serde(default)]
    ports: Option<Vec<MinPort>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MinPort {
    #[serde(default)]
    name: Option<String>,
    container_port: i32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MinStatus {
    #[serde(default)]
    phase: Option<String>,
    #[serde(default)]
    conditions: Option<Vec<MinCondition>>,
    #[serde(default, rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(default, rename = "podIPs")]
    pod_ips: Option<Vec<MinIp>>,
}

#[derive(Deserialize)]
struct MinCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

#[derive(Deserialize)]
struct MinIp {
    ip: String,
}

fn from_min(p: MinPod) -> Pod {
    let status = p.status.unwrap_or(MinStatus { phase: None, conditions: None, pod_ip: None, pod_ips: None });
    let raw: Vec<String> = match status.pod_ips.filter(|v| !v.is_empty()) {
        Some(v) => v.into_iter().map(|i| i.ip).collect(),
        None => status.pod_ip.into_iter().filter(|i| !i.is_empty()).collect(),
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    for r in raw {
        if let Ok(ip) = r.parse()
            && !ips.contains(&ip)
        {
            ips.push(ip);
        }
    }
    let mut ports: Vec<(String, u16)> = Vec::new();
    for c in p.spec.into_iter().flat_map(|s| s.containers) {
        for port in c.ports.into_iter().flatten() {
            if let (Some(n), Ok(num)) = (port.name, u16::try_from(port.container_port))
                && !ports.iter().any(|(x, _)| *x == n)
            {
                ports.push((n, num));
            }
        }
    }
    Pod {
        name: p.metadata.name.unwrap_or_default(),
        phase: status.phase.unwrap_or_default(),
        ready: status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True"),
        terminating: p.metadata.deletion_timestamp.is_some(),
        ips,
        ports,
        gate: None,
    }
}

fn typed(body: &str) -> Vec<Pod> {
    let list: ObjectList<K8sPod> = serde_json::from_str(body).expect("typed decode");
    list.items.into_iter().map(pod_from_k8s).collect()
}

fn minimal(body: &str) -> Vec<Pod> {
    let list: MinList = serde_json::from_str(body).expect("minimal decode");
    list.items.into_iter().map(from_min).collect()
}

fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime writes the timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// (median CPU per decode of all bodies, peak extra heap bytes, allocations per decode)
fn measure(bodies: &[String], f: fn(&str) -> Vec<Pod>) -> (Duration, usize, usize) {
    let mut times = Vec::new();
    let mut peak = 0;
    let mut allocs = 0;
    for _ in 0..30 {
        let base = LIVE.load(Relaxed);
        PEAK.store(base, Relaxed);
        let a0 = ALLOCS.load(Relaxed);
        let t = thread_cpu();
        let out: Vec<Vec<Pod>> = bodies.iter().map(|b| f(b)).collect();
        times.push(thread_cpu() - t);
        peak = PEAK.load(Relaxed) - base;
        allocs = ALLOCS.load(Relaxed) - a0;
        assert_eq!(out.iter().map(Vec::len).sum::<usize>(), 2000);
        drop(out);
    }
    times.sort();
    (times[times.len() / 2], peak, allocs)
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (whole, per_deployment) = rt.block_on(async {
        let path = std::env::var_os("CLBSYNC_TEST_KUBECONFIG")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("CLBSYNC_KUBE_TESTBED").map(|d| std::path::PathBuf::from(d).join("kubeconfig"))
            })
            .context("set CLBSYNC_TEST_KUBECONFIG or CLBSYNC_KUBE_TESTBED")?;
        let file = kube::config::Kubeconfig::read_from(path)?;
        let config = kube::Config::from_custom_kubeconfig(file, &Default::default()).await?;
        let client = kube::Client::try_from(config)?;
        let get = |q: String| {
            let client = client.clone();
            async move { client.request_text(http::Request::get(q).body(Vec::new())?).await.context("list pods") }
        };
        let ns = "clbsync-bench-medium";
        let whole = get(format!("/api/v1/namespaces/{ns}/pods")).await?;
        let mut parts = Vec::new();
        for d in 0..50 {
            parts.push(get(format!("/api/v1/namespaces/{ns}/pods?labelSelector=app%3Dweb-{d:04}&limit=500")).await?);
        }
        anyhow::Ok((vec![whole], parts))
    })?;
    let bytes: usize = whole.iter().map(String::len).sum();
    println!("2,000 pods of the medium fleet: {bytes} bytes of JSON ({} bytes per pod)", bytes / 2000);
    println!("{:<34} {:>12} {:>14} {:>12}", "decode", "CPU ms", "peak heap KiB", "allocations");
    for (label, bodies) in [("one list of 2,000", &whole), ("50 lists of 40 (one per deployment)", &per_deployment)] {
        for (how, f) in [("typed k8s-openapi Pod", typed as fn(&str) -> Vec<Pod>), ("minimal struct", minimal)] {
            let (cpu, peak, allocs) = measure(bodies, f);
            println!(
                "{:<34} {:>12.2} {:>14} {:>12}",
                format!("{how}, {label}"),
                cpu.as_secs_f64() * 1000.0,
                peak / 1024,
                allocs
            );
        }
    }
    Ok(())
}
