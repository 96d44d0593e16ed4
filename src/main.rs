//! `clbsync`: parse the command line, set up logging, run, print an error once, exit with a documented code.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use clap::Parser;

use clbsync::clb::client::{ClbClient, ClientConfig};
use clbsync::clb::credentials::Credentials;
use clbsync::clb::http::Endpoint;
use clbsync::cli::{Cli, Command, EventArgs, Global, LogFormat, OutputFormat, RunArgs};
use clbsync::desired::kube::KubeCluster;
use clbsync::observe::events;
use clbsync::observe::progress::{self, Terminal};
use clbsync::plan::PlanOptions;
use clbsync::reconcile::{self, Mode, Settings, exit};
use clbsync::report::Style;
use clbsync::rules;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    init_logging(&cli.global);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(exit::ERROR);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<u8> {
    let g = &cli.global;
    let rules_file = g.rules.display().to_string();
    match &cli.command {
        Command::Validate => validate(g),
        Command::Diff { detailed_exitcode, run, .. } => {
            let rules = rules::load(&g.rules)?;
            execute(g, &rules, run, Mode::Diff, *detailed_exitcode, &rules_file, None).await
        }
        Command::Reconcile { dry_run, detailed_exitcode, run, events } => {
            let rules = rules::load(&g.rules)?;
            let mode = if *dry_run { Mode::Diff } else { Mode::Reconcile };
            let events = (mode == Mode::Reconcile).then_some(events);
            execute(g, &rules, run, mode, *detailed_exitcode, &rules_file, events).await
        }
    }
}

fn validate(g: &Global) -> anyhow::Result<u8> {
    let result = rules::load(&g.rules);
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
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(if result.is_ok() { exit::OK } else { exit::ERROR });
    }
    let rules = result?;
    let lbs: std::collections::BTreeSet<_> = rules.rules.iter().map(|r| &r.load_balancer_id).collect();
    println!("{} is valid: {} rule(s) on {} load balancer(s).", g.rules.display(), rules.rules.len(), lbs.len());
    Ok(exit::OK)
}

async fn execute(
    g: &Global,
    rules: &rules::Rules,
    run: &RunArgs,
    mode: Mode,
    detailed: bool,
    rules_file: &str,
    events: Option<&EventArgs>,
) -> anyhow::Result<u8> {
    let env = |k: &str| std::env::var(k).ok();
    let credentials = Credentials::from_lookup(env)?;
    let region = run.region(env);
    let endpoint = match &run.endpoint {
        Some(url) => Endpoint::Url(url.clone()),
        None if run.regional_endpoint => Endpoint::Regional,
        None => Endpoint::Default,
    };
    let config = ClientConfig {
        endpoint,
        rate_limit_per_action: run.rate_limit,
        ..ClientConfig::new(region.clone(), credentials)
    };
    let clb = ClbClient::new(config).context("setting up the CLB API client")?;
    let cluster = KubeCluster::connect(run.kubeconfig.as_deref()).await.context("connecting to Kubernetes")?;

    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone());
    // Progress only for a person: stderr a terminal and text logs; a pipe, a file or JSON logs get none.
    let terminal = (std::io::stderr().is_terminal() && g.log_format == LogFormat::Text).then(Terminal::start);
    let settings = Settings {
        mode,
        plan: PlanOptions {
            allow_empty: run.allow_empty,
            owner: run.owner.clone(),
            adopt_untagged: run.adopt_untagged,
        },
        style: Style {
            format: g.output.into(),
            show_unchanged: run.show_unchanged,
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        },
        concurrency: usize::from(run.concurrency),
        region,
        stop: stop.clone(),
        stop_grace: std::time::Duration::from_secs(u64::from(run.stop_grace)),
        progress: terminal.as_ref().map(|(_, observer)| observer.clone()),
    };
    let mut out = std::io::stdout().lock();
    let outcome = reconcile::run(rules, &cluster, &clb, &settings, &mut out).await;
    if let Some((terminal, _)) = terminal {
        terminal.finish();
    }
    let outcome = outcome.with_context(|| format!("running the rules of {rules_file}"))?;
    out.flush()?;
    if let Some(EventArgs { events: true, max_events }) = events {
        let (drafts, left_out) = events::drafts(rules, &outcome, *max_events);
        if left_out > 0 {
            tracing::info!(left_out, "--max-events {max_events} reached: {left_out} Kubernetes Event(s) not recorded");
        }
        events::post(cluster.client(), drafts, &events::instance()).await;
    }
    let code = outcome.exit_code(detailed);
    if stop.load(Ordering::SeqCst) {
        eprintln!("error: stopped by a signal; changes not yet started were left for the next run");
        return Ok(exit::ERROR);
    }
    if code == exit::ERROR {
        eprintln!("error: {}; see the report on stdout", outcome.trouble());
    }
    Ok(code)
}

/// SIGTERM (a CronJob deadline) or Ctrl-C: stop starting new changes, finish and report the ones in flight.
/// A second signal exits at once.
fn watch_signals(stop: Arc<AtomicBool>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot watch SIGTERM: {e}");
                return;
            }
        };
        for _ in 0..2 {
            #[cfg(unix)]
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            if stop.swap(true, Ordering::SeqCst) {
                eprintln!("error: second signal, exiting now; the next run re-reads the state and converges");
                std::process::exit(i32::from(exit::ERROR));
            }
            tracing::warn!("signal received: finishing the changes in flight, starting no new ones");
        }
    });
}

fn init_logging(g: &Global) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::time::UtcTime;

    let level = match g.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    // Dependencies stay at warn unless asked for with RUST_LOG; kube-client's own error lines are off because
    // every Kubernetes error reaches the report with its context.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,kube_client=off,clbsync={level},clb_emulator={level}")));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(|| progress::Stderr);
    match g.log_format {
        LogFormat::Json => builder.json().with_ansi(false).with_timer(UtcTime::rfc_3339()).with_target(false).init(),
        LogFormat::Text => builder.with_ansi(log_colour()).event_format(TextLine).init(),
    }
}

/// Colour in text logs only on a terminal, and never with `NO_COLOR` set (<https://no-color.org>): a file, a pipe
/// or `kubectl logs` gets plain text.
fn log_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// `2024-01-15T10:30:45Z INFO message key=value`: UTC (the `Z`), no padding, one line per event.
struct TextLine;

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for TextLine
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        let now = time::OffsetDateTime::now_utc().format(&format).map_err(|_| std::fmt::Error)?;
        write!(writer, "{now} {} ", event.metadata().level())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}
