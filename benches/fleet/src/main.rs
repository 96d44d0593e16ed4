//! `clbsync-bench`: runs clbsync against the CLB emulator (configured like the real service) for each fleet size
//! and scenario, measures the child process (wall, CPU, peak RSS via `wait4`) and the API calls it made (the
//! emulator's call log), and prints them next to the run's lower bounds.
//!
//! small and medium: the real `clbsync` binary with pods from the test kube-apiserver (seeded once, reused).
//! large: `clbsync-bench engine`, a child process that runs `clbsync::reconcile::run` with the real CLB client
//! and pods from an in-process `MemoryCluster` (100,000 targets would take far too long to seed).

mod fleet;
mod kube_seed;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;

use fleet::{Bounds, Fleet, LATENCY_MS, RATE, Scenario, Size, TASK_MS};

#[derive(Parser)]
#[command(about = "Fleet benchmark of clbsync against clb-emulator (20 req/s per action, 20 ms latency, 450 ms tasks)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Sizes to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    size: Vec<Size>,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "target/bench/results.json")]
    json: PathBuf,
    /// `--concurrency` passed to clbsync (default: clbsync's own default).
    #[arg(long)]
    concurrency: Option<u16>,
    /// Milliseconds an emulated async task takes.
    #[arg(long, default_value_t = TASK_MS)]
    task_ms: u64,
    /// Runs of each size × scenario (the table shows each run with the load average when it started).
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

#[derive(Subcommand)]
enum Cmd {
    /// Internal: one reconcile run in this process with pods from a MemoryCluster (the large size).
    #[command(hide = true)]
    Engine {
        #[arg(long, value_enum)]
        size: Size,
        #[arg(long)]
        rules: PathBuf,
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        concurrency: Option<u16>,
    },
    /// Internal: runs a command and writes its wall time, CPU time and peak RSS (wait4) to `--out` as JSON.
    /// Started as a fresh small process so the command's peak RSS is its own: a child spawned straight from the
    /// benchmark (which holds the emulator's state) inherits the parent's RSS high-water mark through vfork+exec.
    #[command(hide = true)]
    Measure {
        #[arg(long)]
        out: PathBuf,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::Engine { size, rules, endpoint, concurrency }) = &cli.command {
        let code = engine(*size, rules, endpoint, *concurrency)?;
        std::process::exit(i32::from(code));
    }
    if let Some(Cmd::Measure { out, cmd }) = &cli.command {
        let mut c = Command::new(&cmd[0]);
        c.args(&cmd[1..]);
        let m = wait_measured(c)?;
        let doc = json!({"wall_us": m.wall.as_micros() as u64, "cpu_us": m.cpu.as_micros() as u64,
            "user_us": m.user.as_micros() as u64, "max_rss_kib": m.max_rss_kib, "status": m.status});
        std::fs::write(out, doc.to_string())?;
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(bench(cli))
}

/// Child side of the large size: exactly what `clbsync reconcile` does, with a MemoryCluster for pods.
fn engine(size: Size, rules_path: &Path, endpoint: &str, concurrency: Option<u16>) -> Result<u8> {
    use clbsync::clb::client::{ClbClient, ClientConfig};
    use clbsync::clb::credentials::Credentials;
    use clbsync::clb::http::Endpoint;
    use clbsync::desired::memory::MemoryCluster;
    use clbsync::model::Pod;
    use clbsync::reconcile::{self, Mode, Settings};
    use clbsync::rules::PodSource;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let fleet = Fleet::of(size);
    let rules = clbsync::rules::load(rules_path)?;
    let mut cluster = MemoryCluster::default();
    for rule in &rules.rules {
        let q = &rule.backend.pods;
        let PodSource::Workload(w) = &q.source else { bail!("bench rules use deployments") };
        let name = &w.name;
        let d: usize = name.trim_start_matches("web-").parse()?;
        let pods = (0..fleet.pods_per_deployment)
            .map(|k| Pod {
                name: format!("{name}-{k:03}"),
                phase: "Running".into(),
                ready: true,
                terminating: false,
                terminating_since: None,
                ips: vec![fleet.pod_ip(d, k).into()],
                ports: vec![("http".into(), 8080)],
                gate: None,
            })
            .collect();
        cluster.pods.insert(q.clone(), Ok(pods));
    }
    let credentials = Credentials::new(clb_emulator::DEFAULT_SECRET_ID, clb_emulator::DEFAULT_SECRET_KEY, None);
    let config =
        ClientConfig { endpoint: Endpoint::Url(endpoint.into()), ..ClientConfig::new("ap-guangzhou", credentials) };
    let config_rate = config.rate_limit_per_action;
    let clb = ClbClient::new(config)?;
    let settings = Settings {
        concurrency: concurrency.map_or_else(|| reconcile::concurrency(config_rate), usize::from),
        region: "ap-guangzhou".into(),
        ..Settings::new(Mode::Reconcile)
    };
    let mut out = std::io::stdout().lock();
    let outcome = rt.block_on(reconcile::run(&rules, &cluster, &clb, &settings, &mut out))?;
    let stats: BTreeMap<_, _> =
        clb.stats().into_iter().map(|(k, v)| (k, json!({"requests": v.requests, "retries": v.retries}))).collect();
    eprintln!("{}", json!({ "lists": *cluster.lists.lock().expect("lock"), "client_stats": stats }));
    Ok(outcome.exit_code(false))
}

/// One measured run.
struct Measured {
    wall: Duration,
    cpu: Duration,
    user: Duration,
    max_rss_kib: i64,
    status: i32,
}

/// Spawns `cmd` and reaps it with `wait4`, which gives the child's own CPU time and peak RSS.
fn wait_measured(mut cmd: Command) -> Result<Measured> {
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain syscall on our own child; the rusage struct is fully written by the kernel on success.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = start.elapsed();
    drop(child);
    if r != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Ok(Measured {
        wall,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        user: tv(ru.ru_utime),
        max_rss_kib: ru.ru_maxrss,
        status: if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 },
    })
}

/// Runs `cmd` under `clbsync-bench measure` (see there why) and reads what it measured.
async fn measure(exe: &Path, cmd: Command, log: &Path, out: &Path) -> Result<Measured> {
    let mut outer = Command::new(exe);
    outer.arg("measure").arg("--out").arg(out).arg("--").arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => outer.env(k, v),
            None => outer.env_remove(k),
        };
    }
    outer.stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(log)?);
    let status = tokio::process::Command::from(outer).status().await?;
    if !status.success() {
        bail!("clbsync-bench measure failed: {status}");
    }
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out)?)?;
    let us = |k: &str| Duration::from_micros(v[k].as_u64().unwrap_or(0));
    Ok(Measured {
        wall: us("wall_us"),
        cpu: us("cpu_us"),
        user: us("user_us"),
        max_rss_kib: v["max_rss_kib"].as_i64().unwrap_or(0),
        status: v["status"].as_i64().unwrap_or(-1) as i32,
    })
}

const RETRYABLE: &[&str] = &["RequestLimitExceeded", "FailedOperation.ResourceInOperating", "InternalError", "HTTP502"];

async fn bench(cli: Cli) -> Result<()> {
    let sizes = if cli.size.is_empty() { vec![Size::Small, Size::Medium, Size::Large] } else { cli.size.clone() };
    let scenarios = if cli.scenario.is_empty() {
        vec![Scenario::Steady, Scenario::Rollout, Scenario::Cold]
    } else {
        cli.scenario.clone()
    };
    let exe = std::env::current_exe()?;
    let clbsync_bin = exe.with_file_name("clbsync");
    if !clbsync_bin.exists() {
        bail!("{} not found: build it with `cargo build --release --workspace`", clbsync_bin.display());
    }
    let work = PathBuf::from("target/bench");
    std::fs::create_dir_all(&work)?;

    let emu = Arc::new(
        clb_emulator::start(
            "127.0.0.1:0".parse()?,
            clb_emulator::Config {
                task_delay: Duration::from_millis(cli.task_ms),
                rate_limit_per_action: RATE as u32,
                ..Default::default()
            },
        )
        .await?,
    );
    let faults = clb_emulator::Faults { latency_ms: LATENCY_MS, ..Default::default() };
    let endpoint = emu.endpoint();
    println!(
        "clb-emulator at {endpoint}: {RATE} req/s per action (fixed 1 s windows), {LATENCY_MS} ms latency per call, {} ms tasks",
        cli.task_ms
    );

    let mut results = Vec::new();
    let mut kube = None;
    for &size in &sizes {
        let fleet = Fleet::of(size);
        let rules = work.join(format!("rules-{}.yaml", fleet.name()));
        std::fs::write(&rules, fleet.rules_yaml())?;
        let mut seed_secs = None;
        if size != Size::Large {
            if kube.is_none() {
                kube = Some(kube_seed::client().await?);
            }
            let t = kube_seed::seed(kube.as_ref().expect("set above"), &fleet).await?;
            seed_secs = Some(t);
            println!(
                "{}: {} pods in {} deployments {}",
                fleet.name(),
                fleet.pods(),
                fleet.deployments(),
                if t > 0.0 { format!("seeded in {t:.1} s") } else { "reused from an earlier run".into() }
            );
        }
        for (&scenario, run) in scenarios.iter().flat_map(|s| (0..cli.runs).map(move |r| (s, r))) {
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let load1: f64 = load.split_whitespace().next().and_then(|l| l.parse().ok()).unwrap_or(-1.0);
            let t0 = Instant::now();
            emu.set_state(fleet.clb_state(scenario));
            let state_secs = t0.elapsed().as_secs_f64();
            emu.set_faults(faults.clone()); // also starts fresh rate-limit windows
            emu.reset_calls();
            let before = match &kube {
                Some(k) if size != Size::Large => Some(kube_seed::request_counts(k).await?),
                _ => None,
            };
            let log = work.join(format!("{}-{scenario:?}.log", fleet.name()).to_lowercase());
            let mut cmd = if size == Size::Large {
                let mut c = Command::new(&exe);
                c.args(["engine", "--size", "large", "--endpoint", &endpoint]).arg("--rules").arg(&rules);
                if let Some(n) = cli.concurrency {
                    c.args(["--concurrency", &n.to_string()]);
                }
                c
            } else {
                let mut c = Command::new(&clbsync_bin);
                c.args(["reconcile", "--endpoint", &endpoint, "--region", "ap-guangzhou"])
                    .arg("--rules")
                    .arg(&rules)
                    .arg("--kubeconfig")
                    .arg(kube_seed::kubeconfig_path());
                if let Some(n) = cli.concurrency {
                    c.args(["--concurrency", &n.to_string()]);
                }
                c
            };
            cmd.env("TENCENTCLOUD_SECRET_ID", clb_emulator::DEFAULT_SECRET_ID)
                .env("TENCENTCLOUD_SECRET_KEY", clb_emulator::DEFAULT_SECRET_KEY)
                .env_remove("RUST_LOG");
            // Calls per action, sampled every second while the run goes: shows which budget is the bottleneck.
            let sampling = Arc::new(AtomicBool::new(true));
            let sampler = {
                let (emu, sampling) = (emu.clone(), sampling.clone());
                tokio::spawn(async move {
                    let mut timeline = Vec::new();
                    while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        timeline.push(emu.calls().by_action);
                    }
                    timeline
                })
            };
            let m = measure(&exe, cmd, &log, &work.join("measure.json")).await?;
            sampling.store(false, std::sync::atomic::Ordering::Relaxed);
            let timeline = sampler.await?;
            let kube_lists = match (&kube, before) {
                (Some(k), Some(before)) => {
                    let after = kube_seed::request_counts(k).await?;
                    let delta = |verb: &str, res: &str| {
                        let key = (verb.to_string(), res.to_string());
                        after.get(&key).unwrap_or(&0) - before.get(&key).unwrap_or(&0)
                    };
                    Some((delta("LIST", "pods"), delta("GET", "deployments")))
                }
                _ => None,
            };
            let calls = emu.calls();
            // The emulator's call log of the run (the last run of each cell is kept), for timelines.
            let mut lines = String::new();
            for c in &calls.records {
                lines.push_str(&serde_json::to_string(c)?);
                lines.push('\n');
            }
            std::fs::write(log.with_extension("calls.jsonl"), lines)?;
            let converged = check_converged(&emu.state(), &fleet);
            let bounds = fleet.bounds(scenario, cli.task_ms);
            let mut r =
                report(&fleet, scenario, &m, &calls, &bounds, kube_lists, converged, seed_secs, state_secs, &log);
            r["calls_by_second"] = json!(timeline);
            r["run"] = json!(run + 1);
            r["load1_at_start"] = json!(load1);
            if let Some((polls, late)) = polling(&calls, cli.task_ms) {
                r["polls_per_task"] = json!((polls * 100.0).round() / 100.0);
                r["median_late_ms"] = json!((late * 10.0).round() / 10.0);
            }
            results.push(r);
        }
    }
    drop(emu); // stops the server
    print_table(&results);
    let doc = json!({
        "machine": machine(),
        "emulator": {"rate_limit_per_action": RATE, "latency_ms": LATENCY_MS, "task_ms": cli.task_ms},
        "runs": results,
    });
    std::fs::write(&cli.json, serde_json::to_string_pretty(&doc)?)?;
    println!("results: {}", cli.json.display());
    Ok(())
}

/// Polls per task, and the median time in ms from a task being done to its last poll (the one that saw it), from
/// the emulator's call log; `None` without tasks.
fn polling(calls: &clb_emulator::CallLog, task_ms: u64) -> Option<(f64, f64)> {
    let mut polls: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for p in calls.of("DescribeTaskStatus") {
        if let Some(id) = p.params["TaskId"].as_str() {
            let e = polls.entry(id).or_default();
            e.0 += 1;
            e.1 = e.1.max(p.at_us);
        }
    }
    let tasks: Vec<_> = calls.records.iter().filter(|r| r.mutating && r.code == "Success").collect();
    if tasks.is_empty() {
        return None;
    }
    let mut late = Vec::new();
    let mut n = 0;
    for t in &tasks {
        let (count, last) = polls.get(t.request_id.as_str()).copied().unwrap_or_default();
        n += count;
        late.push(last.saturating_sub(t.at_us + task_ms * 1000) as f64 / 1000.0);
    }
    late.sort_by(f64::total_cmp);
    Some((n as f64 / tasks.len() as f64, late[late.len() / 2]))
}

/// True when every listener's targets are exactly the pods' current IPs.
fn check_converged(state: &clb_emulator::State, fleet: &Fleet) -> bool {
    let mut ok = state.load_balancers.len() == fleet.lbs;
    for (lb, l) in state.load_balancers.iter().enumerate() {
        for (li, listener) in l.listeners.iter().enumerate() {
            let d = (lb * fleet.listeners + li) / 2;
            let want: BTreeSet<String> =
                (0..fleet.pods_per_deployment).map(|k| fleet.pod_ip(d, k).to_string()).collect();
            let have: BTreeSet<String> = listener.targets.iter().map(|t| t.ip.clone()).collect();
            ok &= want == have;
        }
    }
    ok
}

#[allow(clippy::too_many_arguments)]
fn report(
    fleet: &Fleet,
    scenario: Scenario,
    m: &Measured,
    calls: &clb_emulator::CallLog,
    bounds: &Bounds,
    kube_lists: Option<(u64, u64)>,
    converged: bool,
    seed_secs: Option<f64>,
    state_secs: f64,
    log: &Path,
) -> serde_json::Value {
    let retried: usize = RETRYABLE.iter().map(|c| calls.errors(c)).sum();
    let throttled = calls.errors("RequestLimitExceeded");
    let total = calls.total();
    let wall_ms = m.wall.as_secs_f64() * 1000.0;
    let mut per_action = serde_json::Map::new();
    for (action, n) in &calls.by_action {
        let bound = bounds.calls.iter().find(|(a, _)| a == action).map_or(0, |(_, b)| *b);
        per_action.insert(action.clone(), json!({"calls": n, "bound": bound}));
    }
    for (action, b) in &bounds.calls {
        per_action.entry(action.to_string()).or_insert(json!({"calls": 0, "bound": b}));
    }
    json!({
        "size": fleet.name(),
        "scenario": format!("{scenario:?}").to_lowercase(),
        "engine": if fleet.size == Size::Large { "clbsync-bench engine (reconcile::run in a child process, MemoryCluster pods)" } else { "clbsync binary (pods from the test kube-apiserver)" },
        "lbs": fleet.lbs, "rules": fleet.rules(), "pods": fleet.pods(), "targets": fleet.targets(),
        "exit_code": m.status,
        "converged": converged,
        "wall_ms": wall_ms.round(),
        "cpu_ms": (m.cpu.as_secs_f64() * 1000.0).round(),
        "user_ms": (m.user.as_secs_f64() * 1000.0).round(),
        "peak_rss_mib": (m.max_rss_kib as f64 / 1024.0 * 10.0).round() / 10.0,
        "calls": total,
        "calls_bound": bounds.total_calls(),
        "calls_ratio": (total as f64 / bounds.total_calls() as f64 * 100.0).round() / 100.0,
        "mutating_calls": calls.mutating(),
        "per_action": per_action,
        "retried": retried,
        "throttled": throttled,
        "errors_by_code": calls.errors_by_code,
        "wall_bound_ms": bounds.wall_ms(),
        "wall_bound_rate_ms": bounds.rate_ms,
        "wall_bound_chain_ms": bounds.chain_ms,
        "wall_bound_tasks_ms": bounds.tasks_ms,
        "wall_ratio": (wall_ms / bounds.wall_ms() as f64 * 100.0).round() / 100.0,
        "wall_bound_round1_ms": bounds.round1_wall_ms(),
        "wall_ratio_round1": (wall_ms / bounds.round1_wall_ms() as f64 * 100.0).round() / 100.0,
        "kube_pod_lists": kube_lists.map(|k| k.0),
        "kube_deployment_gets": kube_lists.map(|k| k.1),
        "distinct_pod_queries": fleet.deployments(),
        "seed_secs": seed_secs,
        "emulator_state_load_secs": (state_secs * 100.0).round() / 100.0,
        "log": log.display().to_string(),
    })
}

fn print_table(results: &[serde_json::Value]) {
    println!(
        "\n{:<7} {:<8} {:>5} {:>9} {:>9} {:>6} {:>7} {:>6} {:>5} {:>4} {:>8} {:>8} {:>5} {:>5} {:>6} {:>7}  per action (actual/bound)",
        "size",
        "scenario",
        "load",
        "wall ms",
        "bound ms",
        "ratio",
        "calls",
        "bound",
        "ratio",
        "thr",
        "RSS MiB",
        "CPU ms",
        "lists",
        "ok",
        "poll/t",
        "late ms"
    );
    for r in results {
        let per: Vec<String> = r["per_action"]
            .as_object()
            .map(|m| m.iter().map(|(a, v)| format!("{}={}/{}", short(a), v["calls"], v["bound"])).collect())
            .unwrap_or_default();
        let f = |k: &str| r[k].to_string();
        println!(
            "{:<7} {:<8} {:>5} {:>9} {:>9} {:>6} {:>7} {:>6} {:>5} {:>4} {:>8} {:>8} {:>5} {:>5} {:>6} {:>7}  {}",
            r["size"].as_str().unwrap_or(""),
            r["scenario"].as_str().unwrap_or(""),
            f("load1_at_start"),
            f("wall_ms"),
            f("wall_bound_ms"),
            f("wall_ratio"),
            f("calls"),
            f("calls_bound"),
            f("calls_ratio"),
            f("throttled"),
            f("peak_rss_mib"),
            f("cpu_ms"),
            r["kube_pod_lists"].as_u64().map_or("-".into(), |n| n.to_string()),
            if r["converged"].as_bool() == Some(true) && r["exit_code"] == 0 { "yes" } else { "NO" },
            f("polls_per_task"),
            f("median_late_ms"),
            per.join(" ")
        );
    }
}

fn short(action: &str) -> String {
    action.chars().filter(|c| c.is_ascii_uppercase()).collect()
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(str::trim);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "loadavg_at_end": loadavg.trim(),
    })
}
