//! `clbsync`: parse the command line, set up logging, run, print an error once, exit with a documented code.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use clbsync::cli::config::{Batch, Config, Expected};
use clbsync::cli::usage::{self, Usage};
use clbsync::cli::{Cli, LogFormat};
use clbsync::observe;
use clbsync::observe::metrics::Metrics;
use clbsync::observe::pass::{EventSink, Observers};
use clbsync::outcome::{Outcome, exit};
use clbsync::report::ending;
use clbsync::rules;
use clbsync::stop::Stop;

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
            match usage::explain(&e) {
                Usage::Instead(message) => say!("error: {message}"),
                Usage::After(note) => {
                    let _ = e.print();
                    say!("note: {note}");
                }
                Usage::AsIs => {
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
    let result = runtime.block_on(async {
        match Config::from_cli(&cli)? {
            Config::Validate(v) => v.run(&mut std::io::stdout().lock()).await,
            Config::Batch(b) => batch(&b).await,
            Config::Watch(w) => {
                let stop = Stop::new();
                on_signals(stop.clone());
                w.run(stop).await.map(|()| exit::OK)
            }
        }
    });
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

/// One `diff` or `reconcile`, and its observers: a run that may change something counts what it did (the API
/// calls it made too) and hands its metrics on; it records Kubernetes Events (at most `--max-events`).
async fn batch(b: &Batch) -> anyhow::Result<u8> {
    let metrics = b.export.as_ref().map(|_| {
        let m = Metrics::new();
        m.set_leader(true);
        m
    });
    let started = std::time::Instant::now();
    let result = async {
        let rules = rules::load(&b.run.rules).inspect_err(|_| {
            if let Some(m) = &metrics {
                m.set_rules_file_valid(false);
            }
        })?;
        let stop = Stop::new();
        on_signals(stop.clone());
        let pass = b.pass(&rules, &stop).await?;
        let sink = b.run.max_events.map(|max| EventSink { client: pass.cluster.client(), max, after_a_stop: true });
        let credentials = Some(pass.clb.credential_source().clone());
        let mut observers = Observers::new(metrics.as_ref(), sink, || pass.clb.answers(), credentials);
        let outcome = match pass.outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                observers.record_calls();
                return Err(e);
            }
        };
        if let Some(m) = &metrics {
            m.set_rules(&outcome.plan.rules, outcome.waits);
        }
        observers.record(&rules, &outcome, pass.elapsed, &stop).await;
        pass.flushed?;
        Ok(ended(b, &stop, &outcome, &pass.expected))
    }
    .await;
    if let (Some(m), Some(export)) = (&metrics, &b.export) {
        if result.is_err() {
            m.record_failed_run(started.elapsed());
        }
        export.export(m, b.run.owner()).await;
    }
    result
}

/// How a pass ended: its exit code, after the error line that says why when there is one.
fn ended(b: &Batch, stop: &Stop, outcome: &Outcome, expected: &Expected) -> u8 {
    let code = outcome.exit_code(b.detailed_exitcode);
    let Some(words) = ending::last_words(stop, outcome, code, expected.reviewed.as_ref()) else { return code };
    say!("error: {words}");
    if stop.run_reason().is_some() { exit::ERROR } else { code }
}

/// A second signal exits at once; the first stops the run ([`Stop::on_signals`]).
fn on_signals(stop: Stop) {
    tokio::spawn(async move {
        let name = stop.on_signals().await;
        say!("error: second signal ({name}), exiting now; the next run re-reads the state and converges");
        std::process::exit(i32::from(exit::ERROR));
    });
}
