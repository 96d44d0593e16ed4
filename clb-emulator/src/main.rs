//! `clb-emulator` binary: serves the emulated CLB API on a local address.

#![forbid(unsafe_code)]

use clap::Parser;
use clb_emulator::{Config, Faults, HealthConfig, MetadataConfig, State, StsConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Local emulator of the Tencent Cloud CLB API 2018-03-17.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (use 127.0.0.1:0 for a free port). A test tool: keep it on loopback.
    #[arg(long, default_value = "127.0.0.1:9080")]
    listen: SocketAddr,
    /// Seed state file (YAML or JSON). Empty state with the default credentials when omitted.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Fault configuration file (YAML or JSON, see README).
    #[arg(long)]
    faults: Option<PathBuf>,
    /// Milliseconds until an async task completes (0 = immediately).
    #[arg(long, default_value_t = 0)]
    task_delay_ms: u64,
    /// Requests per second per action (0 = off).
    #[arg(long, default_value_t = 20)]
    rate_limit: u32,
    /// Added latency per API call, in ms.
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Seed for fault decisions.
    #[arg(long)]
    seed: Option<u64>,
    /// Backend quota per L4 listener / L7 rule.
    #[arg(long, default_value_t = 200)]
    backend_quota: u32,
    /// Health-check interval in ms (CLB default 5000; 0 = instant: health follows the serving flag).
    #[arg(long, default_value_t = 5000)]
    health_interval_ms: u64,
    /// Health-check timeout in ms (CLB default 2000).
    #[arg(long, default_value_t = 2000)]
    health_timeout_ms: u64,
    /// Successful checks in a row that make a target healthy (CLB default 3).
    #[arg(long, default_value_t = 3)]
    healthy_threshold: u32,
    /// Failed checks in a row that make a target unhealthy (CLB default 3).
    #[arg(long, default_value_t = 3)]
    unhealthy_threshold: u32,
    /// STS configuration (YAML or JSON): OIDC providers with their JWKS, roles, credential lifetime
    /// (see README "STS"). Without it STS refuses every call.
    #[arg(long)]
    sts_config: Option<PathBuf>,
    /// The CVM instance role the metadata endpoint serves (none: 404, like a CVM without a role).
    #[arg(long)]
    cvm_role: Option<String>,
    /// Lifetime of the CVM role's credentials, in ms.
    #[arg(long, default_value_t = 7_200_000)]
    cvm_role_lifetime_ms: u64,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "clb_emulator=info".into()),
        )
        .with_target(false)
        .init();
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "clb-emulator: warning: listening on {}, which is not a loopback address. This is a test tool: \
             anyone who can reach it can call the API with the emulator's well-known keys. The admin API \
             (/_emulator/, which reads the secret keys) still answers only requests with a loopback Host.",
            args.listen
        );
    }
    match run(args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("clb-emulator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let state = match &args.state {
        Some(p) => State::from_yaml_file(p)?,
        None => State::default(),
    };
    let mut faults: Faults = match &args.faults {
        Some(p) => serde_yaml::from_str(&std::fs::read_to_string(p)?)?,
        None => Faults::default(),
    };
    if let Some(l) = args.latency_ms {
        faults.latency_ms = l;
    }
    if let Some(s) = args.seed {
        faults.seed = s;
    }
    let sts: StsConfig = match &args.sts_config {
        Some(p) => {
            serde_yaml::from_str(&std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?)
                .map_err(|e| format!("{}: not an STS configuration: {e}", p.display()))?
        }
        None => StsConfig::default(),
    };
    let config = Config {
        state,
        faults,
        task_delay: Duration::from_millis(args.task_delay_ms),
        rate_limit_per_action: args.rate_limit,
        backend_quota: args.backend_quota,
        health: HealthConfig {
            interval_ms: args.health_interval_ms,
            timeout_ms: args.health_timeout_ms,
            healthy_threshold: args.healthy_threshold,
            unhealthy_threshold: args.unhealthy_threshold,
        },
        sts,
        metadata: MetadataConfig { role: args.cvm_role.clone(), lifetime_ms: args.cvm_role_lifetime_ms },
        ..Config::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let emu = clb_emulator::start(args.listen, config).await?;
        let mut out = std::io::stdout();
        writeln!(out, "clb-emulator listening on {}", emu.endpoint())?;
        out.flush()?;
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        ctrl_c.await?;
        emu.shutdown().await;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
