//! `clbsync`: parse the command line, set up logging, run, print an error once, exit with a documented code.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use clbsync::clb::client::{ClbClient, ClientConfig};
use clbsync::clb::http::Endpoint;
use clbsync::cli::{
    Cli, Command, EventArgs, ExpectPlan, ExportArgs, Global, LogFormat, OutputFormat, RunArgs, WatchArgs,
};
use clbsync::credentials::Provider;
use clbsync::desired::kube::{ConnectOptions, KubeCluster};
use clbsync::model::Owner;
use clbsync::observe::metrics::Metrics;
use clbsync::observe::progress::Terminal;
use clbsync::observe::{self, events, metrics};
use clbsync::plan::PlanOptions;
use clbsync::reconcile::{self, Mode, Settings, exit};
use clbsync::report::Style;
use clbsync::report::reviewed::Reviewed;
use clbsync::rules;
use clbsync::stop::{Reason, Stop};
use clbsync::watch::lease;

/// A line on stderr that cannot panic: with stderr closed (`2>&1 | head`), `eprintln!` would (exit 101).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            if let Some(message) = without_secret_value(&e) {
                say!("error: {message}");
                return ExitCode::from(exit::USAGE);
            }
            match usage_note(&e) {
                Some(Note::Instead(message)) => say!("error: {message}"),
                Some(Note::After(note)) => {
                    let _ = e.print();
                    say!("note: {note}");
                }
                None => {
                    let _ = e.print();
                }
            }
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    observe::logs::init(cli.global.verbose, cli.global.log_format == LogFormat::Json);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            say!("error: starting the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    let result = runtime.block_on(run(cli));
    // A credential plugin that never ends may still hold a blocking thread: do not wait for it.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            say!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

/// Options whose value may hold a password: clap's message would echo it.
const SECRET_VALUED: &[&str] = &["--pushgateway"];

/// For a bad value of a [`SECRET_VALUED`] option, clap's message without the value (its own redacts it).
fn without_secret_value(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return None };
    let long = arg.split_whitespace().next()?;
    if e.kind() != ErrorKind::ValueValidation || !SECRET_VALUED.contains(&long) {
        return None;
    }
    let why = std::error::Error::source(e).map_or_else(|| "invalid value".to_owned(), ToString::to_string);
    Some(format!("invalid value for '{arg}': {why}"))
}

/// A usage error's extra words: after clap's message, or instead of it.
enum Note {
    After(String),
    Instead(String),
}

/// What clap's message leaves out: which environment variable a bad value came from, and where run options go
/// when they were given before the command (clap would suggest `--version`).
fn usage_note(e: &clap::Error) -> Option<Note> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => return None,
    };
    let long = arg.split_whitespace().next()?.trim_start_matches("--").to_string();
    let cmd = Cli::command();
    let diff = cmd.find_subcommand("diff")?;
    let run_arg = diff.get_arguments().find(|a| a.get_long() == Some(long.as_str()))?;
    match e.kind() {
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let var = run_arg.get_env()?.to_string_lossy().into_owned();
            let on_command_line =
                std::env::args().any(|a| a == format!("--{long}") || a.starts_with(&format!("--{long}=")));
            (!on_command_line && std::env::var_os(&var).is_some())
                .then(|| Note::After(format!("the value of --{long} came from the environment variable {var}")))
        }
        ErrorKind::UnknownArgument if cmd.get_arguments().all(|a| a.get_long() != Some(long.as_str())) => {
            Some(Note::Instead(format!(
                "--{long} is an option of `diff` and `reconcile`: put it after the command, e.g. `clbsync diff --{long} ...`"
            )))
        }
        _ => None,
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let g = &cli.global;
    let rules_file = g.rules.display().to_string();
    match &cli.command {
        Command::Validate { kubeconfig } => validate(g, kubeconfig.as_deref()).await,
        Command::Diff { detailed_exitcode, run, .. } => {
            let rules = rules::load(&g.rules)?;
            execute(g, &rules, run, Mode::Diff, *detailed_exitcode, &rules_file, None, None, None).await
        }
        Command::Reconcile { dry_run, detailed_exitcode, expect_plan, run, watch, events, export } => {
            let mode = if *dry_run { Mode::Diff } else { Mode::Reconcile };
            if watch.watch {
                if export.any() {
                    tracing::info!(
                        "--pushgateway and --metrics-file are for one-shot runs: watch mode serves its metrics at --metrics-addr"
                    );
                }
                let rules = rules::load_regular(&g.rules)?;
                return watch_mode(g, rules, run, watch, events, mode).await;
            }
            if mode == Mode::Diff && export.any() {
                tracing::info!(
                    "--pushgateway and --metrics-file are ignored with --dry-run: its metrics would replace those of the last reconcile"
                );
            }
            // Metrics only of runs that may change something: a dry run's would hide the last real run's.
            let metrics = (mode == Mode::Reconcile && export.any()).then(|| {
                let m = Metrics::new();
                m.set_leader(true);
                m
            });
            let started = std::time::Instant::now();
            let result = async {
                let rules = rules::load(&g.rules).inspect_err(|_| {
                    if let Some(m) = &metrics {
                        m.set_rules_file_valid(false);
                    }
                })?;
                let events = (mode == Mode::Reconcile).then_some(events);
                execute(
                    g,
                    &rules,
                    run,
                    mode,
                    *detailed_exitcode,
                    &rules_file,
                    events,
                    metrics.as_ref(),
                    expect_plan.as_ref(),
                )
                .await
            }
            .await;
            if let Some(m) = &metrics {
                if result.is_err() {
                    m.record_failed_run(started.elapsed());
                }
                export_metrics(m, export, run.owner.as_ref()).await;
            }
            result
        }
    }
}

/// `validate`: the rules file offline, then, with a kubeconfig, against the cluster (read only).
async fn validate(g: &Global, kubeconfig: Option<&std::path::Path>) -> anyhow::Result<u8> {
    let mut result = rules::load(&g.rules);
    if let (Ok(loaded), Some(path)) = (&result, kubeconfig) {
        let cluster = KubeCluster::connect(Some(path)).await.context("connecting to Kubernetes")?;
        let problems = clbsync::desired::ports::check(&cluster, loaded)
            .await
            .with_context(|| format!("checking {} against the cluster", g.rules.display()))?;
        if !problems.is_empty() {
            result = Err(rules::Error::Invalid { file: g.rules.display().to_string(), problems });
        }
    }
    if g.output == OutputFormat::Json {
        let problems: Vec<_> = match &result {
            Ok(_) => Vec::new(),
            Err(rules::Error::Read { error, .. }) => {
                vec![serde_json::json!({ "line": 0, "column": 0, "path": "", "message": error.to_string() })]
            }
            Err(rules::Error::Invalid { problems, .. }) => problems
                .iter()
                .map(|p| serde_json::json!({"line": p.line, "column": p.column, "path": p.path, "message": p.message}))
                .collect(),
        };
        let doc = serde_json::json!({
            "file": g.rules.display().to_string(),
            "valid": result.is_ok(),
            "rules": result.as_ref().map(|r| r.rules.len()).unwrap_or(0),
            "problems": problems,
        });
        let mut out = std::io::stdout().lock();
        let written = serde_json::to_writer_pretty(&mut out, &doc).map_err(std::io::Error::from);
        quiet_on_broken_pipe(written.and_then(|()| writeln!(out)))?;
        return Ok(if result.is_ok() { exit::OK } else { exit::ERROR });
    }
    let rules = result?;
    let lbs: std::collections::BTreeSet<_> = rules.rules.iter().map(|r| &r.load_balancer_id).collect();
    let mut out = std::io::stdout().lock();
    let n = rules.rules.len();
    let checked = if kubeconfig.is_some() { ", checked against the cluster" } else { "" };
    quiet_on_broken_pipe(writeln!(
        out,
        "{} is valid: {n} rule(s) on {} load balancer(s){checked}.",
        g.rules.display(),
        lbs.len()
    ))?;
    Ok(exit::OK)
}

/// A reader that went away (`clbsync validate -o json | head`) ends the output quietly, as other CLIs do.
fn quiet_on_broken_pipe(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Pushes and/or writes a batch run's metrics; a failure is logged once each and changes nothing else.
async fn export_metrics(metrics: &Metrics, export: &ExportArgs, owner: Option<&Owner>) {
    let text = metrics.encode_text();
    if let Some(path) = &export.metrics_file
        && let Err(e) = observe::export::write_file(path, &text)
    {
        tracing::warn!("{e}; the exit code is not affected");
    }
    if let Some(gateway) = &export.pushgateway
        && let Err(e) = observe::export::push(gateway, owner, text).await
    {
        tracing::warn!("{e}; the exit code is not affected");
    }
}

/// `reconcile --watch`: runs until SIGTERM, then exits 0.
async fn watch_mode(
    g: &Global,
    rules: rules::Loaded,
    run: &RunArgs,
    watch: &WatchArgs,
    events: &EventArgs,
    mode: Mode,
) -> anyhow::Result<u8> {
    if watch.resync_interval.is_zero() {
        anyhow::bail!("--resync-interval must be longer than 0s");
    }
    let timing = lease::decide::Timing {
        lease_duration: watch.leader_election_lease_duration,
        renew_deadline: watch.leader_election_renew_deadline,
        retry_period: watch.leader_election_retry_period,
    };
    timing.validate().map_err(anyhow::Error::msg)?;
    let clb = clb_client(run)?;
    let stop = Stop::new();
    on_signals(stop.clone());
    let cluster = connect(run, &stop).await?;
    let settings = settings(g, run, mode, stop.clone());
    let election = watch.leader_election_namespace.clone().map(|namespace| lease::Config {
        namespace,
        name: watch.leader_election_id.clone(),
        identity: lease::identity(),
        timing,
    });
    let opts = clbsync::watch::Options {
        rules_path: g.rules.clone(),
        debounce: watch.debounce,
        resync_interval: watch.resync_interval,
        election,
        metrics_addr: watch.metrics_addr,
        events: (mode == Mode::Reconcile && events.events).then_some(events.max_events),
        credentials: Some(clb.credential_source().clone()),
    };
    clbsync::watch::run(cluster.client().clone(), &clb, || clb.answers(), rules, &settings, &opts, stop).await?;
    Ok(exit::OK)
}

fn clb_client(run: &RunArgs) -> anyhow::Result<ClbClient> {
    let env = |k: &str| std::env::var(k).ok();
    let credentials = Provider::select(&run.credentials.settings(), env)?;
    tracing::info!("Tencent Cloud credentials: {}", credentials.describe());
    let region = run.region(env);
    let endpoint = match &run.endpoint {
        Some(url) => Endpoint::Url(url.clone()),
        None if run.regional_endpoint => Endpoint::Regional,
        None => Endpoint::Default,
    };
    let config =
        ClientConfig { endpoint, rate_limit_per_action: run.rate_limit, ..ClientConfig::new(region, credentials) };
    ClbClient::new(config).context("setting up the CLB API client")
}

fn settings(g: &Global, run: &RunArgs, mode: Mode, stop: Stop) -> Settings {
    Settings {
        mode,
        plan: PlanOptions {
            allow_empty: run.allow_empty,
            owner: run.owner.clone(),
            adopt_untagged: run.adopt_untagged,
            gate_on: run.gate_on.into(),
            max_deregister: run.max_deregister.filter(|_| !run.force),
        },
        style: Style {
            format: g.output.into(),
            show_unchanged: run.show_unchanged,
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            width: table_width(),
            max_rows: Some(run.max_rows),
        },
        concurrency: run.concurrency.map_or_else(|| reconcile::concurrency(run.rate_limit), usize::from),
        region: run.region(|k| std::env::var(k).ok()),
        stop,
        stop_grace: Duration::from_secs(u64::from(run.stop_grace)),
        warn_waiting_after: run.warn_waiting_after,
        progress: None,
        expect_plan: None,
    }
}

/// One `diff` or `reconcile`; `metrics`, when given, count what it did.
#[allow(clippy::too_many_arguments)]
async fn execute(
    g: &Global,
    rules: &rules::Rules,
    run: &RunArgs,
    mode: Mode,
    detailed: bool,
    rules_file: &str,
    events: Option<&EventArgs>,
    metrics: Option<&Metrics>,
    expect_plan: Option<&ExpectPlan>,
) -> anyhow::Result<u8> {
    let reviewed = match expect_plan {
        Some(ExpectPlan::File(path)) => Some((path, reviewed_plan(path)?)),
        _ => None,
    };
    let expect_plan = match expect_plan {
        Some(ExpectPlan::Fingerprint(f)) => Some(*f),
        _ => reviewed.as_ref().map(|(_, r)| r.fingerprint),
    };
    let clb = clb_client(run)?;
    let stop = Stop::new();
    on_signals(stop.clone());
    run_deadline(stop.clone(), Duration::from_secs(u64::from(run.run_timeout)));
    let cluster = connect(run, &stop).await?;
    // Progress only for a person: stderr a terminal and text logs; a pipe, a file or JSON logs get none.
    let terminal = (std::io::stderr().is_terminal() && g.log_format == LogFormat::Text).then(Terminal::start);
    let settings = Settings {
        progress: terminal.as_ref().map(|(_, observer)| observer.clone()),
        expect_plan,
        ..settings(g, run, mode, stop.clone())
    };
    let mut out = std::io::stdout().lock();
    let started = std::time::Instant::now();
    let outcome = reconcile::run(rules, &cluster, &clb, &settings, &mut out).await;
    let elapsed = started.elapsed();
    if let Some((terminal, _)) = terminal {
        terminal.finish();
    }
    if let Some(m) = metrics {
        m.record_api_calls(clb.answers().iter().map(|((action, code), n)| (*action, code.as_str(), *n)));
        m.record_credentials(&clb.credential_source().stats());
    }
    let outcome = outcome.with_context(|| format!("running the rules of {rules_file}"))?;
    if let Some(m) = metrics {
        m.record_pass(&outcome, elapsed, metrics::unix_now());
        m.set_rules(&outcome.plan.rules, outcome.waits);
    }
    quiet_on_broken_pipe(out.flush())?;
    if let Some(EventArgs { events: true, max_events }) = events {
        let (drafts, left_out) = events::drafts(rules, &outcome, *max_events);
        if left_out > 0 {
            tracing::info!(left_out, "--max-events {max_events} reached: {left_out} Kubernetes Event(s) not recorded");
        }
        let posted = events::post(cluster.client(), drafts, &events::instance()).await;
        if let Some(m) = metrics {
            m.record_events(posted.recorded, posted.failed);
        }
    }
    let code = outcome.exit_code(detailed);
    match stop.run_reason() {
        Some(Reason::RunTimeout(after)) => {
            say!(
                "error: the run reached --run-timeout ({}s); changes not yet started were left for the next run",
                after.as_secs()
            );
            return Ok(exit::ERROR);
        }
        Some(reason) => {
            say!("error: stopped by {reason}; changes not yet started were left for the next run");
            return Ok(exit::ERROR);
        }
        None => {}
    }
    if let Some((expected, found)) = &outcome.plan_changed {
        match &reviewed {
            None => say!(
                "error: the plan is not the one reviewed (--expect-plan {expected}, now {found}): nothing was changed; review the plan above, and to apply it run again with --expect-plan {found}"
            ),
            Some((path, reviewed)) => say!("error: {}", reviewed.refusal(path, *found, &outcome.plan).trim_end()),
        }
    } else if code == exit::ERROR {
        say!("error: {}; the report on stdout has every rule", outcome.trouble());
    }
    Ok(code)
}

/// The reviewed plan of `--expect-plan FILE`: the JSON document `diff -o json` wrote.
fn reviewed_plan(path: &std::path::Path) -> anyhow::Result<Reviewed> {
    let what = || format!("reading the reviewed plan {} (--expect-plan)", path.display());
    let text = std::fs::read_to_string(path).with_context(what)?;
    Reviewed::parse(&text).map_err(anyhow::Error::msg).with_context(what)
}

/// The width to fit the table into: `COLUMNS` when set, else the terminal's when stdout is one; a file, a pipe
/// or `kubectl logs` gets full rows.
fn table_width() -> Option<u16> {
    let columns = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<u16>().ok()).filter(|&c| c > 0);
    columns.or_else(|| std::io::stdout().is_terminal().then(|| comfy_table::Table::new().width()).flatten())
}

/// Connects to Kubernetes (which runs the kubeconfig's credential plugin, if any), giving up when the run is
/// stopped by a signal or --run-timeout.
async fn connect(run: &RunArgs, stop: &Stop) -> anyhow::Result<KubeCluster> {
    let options = ConnectOptions { allow_insecure_skip_tls_verify: run.allow_insecure_skip_tls_verify };
    tokio::select! {
        connected = KubeCluster::connect_with(run.kubeconfig.as_deref(), &options) => {
            connected.context("connecting to Kubernetes")
        }
        reason = stop.stopped() => anyhow::bail!(
            "stopped by {reason} while connecting to Kubernetes: check the kubeconfig's credential plugin (`exec`), which runs then"
        ),
    }
}

/// --run-timeout: after `after`, stop starting new changes, like SIGTERM.
fn run_deadline(stop: Stop, after: Duration) {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        if stop.stop(Reason::RunTimeout(after)) {
            tracing::warn!(
                "run deadline (--run-timeout {}s) reached: finishing the changes in flight, starting no new ones",
                after.as_secs()
            );
        }
    });
}

/// SIGTERM or Ctrl-C stops the run (no new change starts; the first reason stays, so a signal after
/// --run-timeout does not change it); a second signal exits at once.
fn on_signals(stop: Stop) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                return;
            }
        };
        for second in [false, true] {
            #[cfg(unix)]
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            };
            #[cfg(not(unix))]
            let name = {
                let _ = tokio::signal::ctrl_c().await;
                "Ctrl-C"
            };
            if second {
                say!("error: second signal ({name}), exiting now; the next run re-reads the state and converges");
                std::process::exit(i32::from(exit::ERROR));
            }
            stop.stop(Reason::Signal(name));
            tracing::warn!("signal received ({name}): finishing the changes in flight, starting no new ones");
        }
    });
}
