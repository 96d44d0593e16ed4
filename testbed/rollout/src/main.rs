//! `clbsync-rollout`: run the rollout simulator (issue 13) for some scenarios × modes, write every outcome as
//! JSON and print the BENCHMARKS.md table. Needs the test API server and the controller-manager
//! (`testbed/kube-controller-manager.sh start`) and a built clbsync; `testbed/rollout-matrix.sh` does it all.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use clb_emulator::TrafficConfig;
use clbsync_rollout::{Mode, Outcome, RunOptions, Scenario, Timing};

/// Run rollout scenarios against clbsync in several modes and count failed requests.
#[derive(Parser)]
struct Args {
    /// Scenarios (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    scenario: Vec<Scenario>,
    /// Modes (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    mode: Vec<Mode>,
    /// Every delay is divided by this.
    #[arg(long, default_value_t = 5)]
    factor: u32,
    /// Requests per second on the listener.
    #[arg(long, default_value_t = 200.0)]
    rps: f64,
    /// Seed of the traffic model.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The clbsync binary.
    #[arg(long, default_value = "target/debug/clbsync")]
    clbsync: PathBuf,
    /// Kubeconfig of the test API server.
    #[arg(long, default_value = "target/kube-testbed/kubeconfig")]
    kubeconfig: PathBuf,
    /// ChangeResults (outcomes.json) and clbsync logs go here.
    #[arg(long, default_value = "target/rollout")]
    out: PathBuf,
    /// Give up on one run after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    /// Run nothing: print the traffic-splitting table (medians and ranges) of these outcomes.json files.
    #[arg(long, num_args = 1..)]
    split_table: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    if !args.split_table.is_empty() {
        let mut outcomes: Vec<Outcome> = Vec::new();
        for path in &args.split_table {
            let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            outcomes.extend(serde_json::from_slice::<Vec<Outcome>>(&text)?.into_iter().filter(|o| !o.split.is_empty()));
        }
        print!("{}", clbsync_rollout::split::table(&outcomes));
        return Ok(());
    }
    let scenarios = if args.scenario.is_empty() { Scenario::ALL.to_vec() } else { args.scenario.clone() };
    let modes = if args.mode.is_empty() { Mode::ALL.to_vec() } else { args.mode.clone() };
    let opts = RunOptions {
        clbsync: std::path::absolute(&args.clbsync)?,
        kubeconfig: args.kubeconfig.clone(),
        work_dir: args.out.clone(),
        timing: Timing { factor: args.factor },
        traffic: TrafficConfig { requests_per_second: args.rps, seed: args.seed, ..TrafficConfig::default() },
        timeout: Duration::from_secs(args.timeout),
    };
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("outcomes.json");
    let mut outcomes: Vec<Outcome> = Vec::new();
    for &scenario in &scenarios {
        for &mode in &modes {
            eprintln!("clbsync-rollout: {} / {} ...", scenario.label(), mode.label());
            let o = clbsync_rollout::run(scenario, mode, &opts)
                .await
                .with_context(|| format!("{} in mode {}", scenario.label(), mode.label()))?;
            eprintln!(
                "clbsync-rollout:   failed {}/{}, longest without a target {} ms, rollout {} ms, converged {} ms",
                o.failed, o.sent, o.longest_no_target_ms, o.rollout_ms, o.converged_ms
            );
            outcomes.push(o);
            std::fs::write(&path, serde_json::to_vec_pretty(&outcomes)?)?;
        }
    }
    print!("{}", clbsync_rollout::table(&outcomes, &scenarios, &modes));
    if outcomes.iter().any(|o| !o.split.is_empty()) {
        print!("\n{}", clbsync_rollout::split::table(&outcomes));
    }
    eprintln!("clbsync-rollout: outcomes in {}", path.display());
    Ok(())
}
