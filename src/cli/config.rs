//! The run configuration: the parsed command line ([`Cli`]) checked and turned into what each command runs with,
//! every default set once (ripgrep's low-level and high-level arguments: clap parses, this module says what the
//! values mean), and the clients built from it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use super::{Cli, Command, ExpectPlan, ExportArgs, Global, LogFormat, OutputFormat, RunArgs, WatchArgs};
use crate::clb::client::{ClbClient, ClientConfig};
use crate::clb::credentials::Provider;
use crate::clb::http::Endpoint;
use crate::desired::kube::{ConnectOptions, KubeCluster};
use crate::plan::{Fingerprint, PlanOptions};
use crate::reconcile::{self, Mode, Settings};
use crate::report::Style;
use crate::report::reviewed::Reviewed;
use crate::stop::Stop;
use crate::watch::{self, lease};

/// One command, checked.
#[derive(Debug)]
pub enum Config {
    Validate(Validate),
    /// `diff`, or `reconcile` without `--watch`.
    Batch(Batch),
    /// `reconcile --watch`.
    Watch(Watch),
}

/// `validate`.
#[derive(Debug)]
pub struct Validate {
    pub rules: PathBuf,
    /// Also check the rules against this cluster.
    pub kubeconfig: Option<PathBuf>,
    /// `-o json`: one document with every problem.
    pub json: bool,
}

/// What `diff` and `reconcile` (batch or watch) share.
#[derive(Debug)]
pub struct Run {
    pub rules: PathBuf,
    pub mode: Mode,
    /// `Some(max)`: record Kubernetes Events, at most `max` per run (`reconcile` with `--events`, not a dry run).
    pub max_events: Option<usize>,
    /// Logs are text lines (a person may be watching stderr).
    pub text_logs: bool,
    format: OutputFormat,
    args: RunArgs,
}

/// One `diff` or `reconcile`.
#[derive(Debug)]
pub struct Batch {
    pub run: Run,
    pub detailed_exitcode: bool,
    pub expect_plan: Option<ExpectPlan>,
    /// Where the run's metrics go: a `reconcile` that may change something, with `--pushgateway` or
    /// `--metrics-file` (a dry run's would replace those of the last reconcile).
    pub export: Option<ExportArgs>,
    pub run_timeout: Duration,
}

/// `reconcile --watch`.
#[derive(Debug)]
pub struct Watch {
    pub run: Run,
    args: WatchArgs,
}

impl Config {
    /// Checks the command line. What clap cannot check is checked here, with messages that name the options.
    pub fn from_cli(cli: &Cli) -> anyhow::Result<Config> {
        let g = &cli.global;
        Ok(match &cli.command {
            Command::Validate { kubeconfig } => Config::Validate(Validate {
                rules: g.rules.clone(),
                kubeconfig: kubeconfig.clone(),
                json: g.output == OutputFormat::Json,
            }),
            Command::Diff { detailed_exitcode, run, .. } => Config::Batch(Batch {
                run: Run::new(g, run, Mode::Diff, None),
                detailed_exitcode: *detailed_exitcode,
                expect_plan: None,
                export: None,
                run_timeout: Duration::from_secs(u64::from(run.run_timeout)),
            }),
            Command::Reconcile { dry_run, detailed_exitcode, expect_plan, run, watch, events, export } => {
                let mode = if *dry_run { Mode::Diff } else { Mode::Reconcile };
                let max_events = (mode == Mode::Reconcile && events.events).then_some(events.max_events);
                let run = Run::new(g, run, mode, max_events);
                if watch.watch {
                    if export.any() {
                        tracing::info!(
                            "--pushgateway and --metrics-file are for one-shot runs: watch mode serves its metrics at --metrics-addr"
                        );
                    }
                    return Ok(Config::Watch(Watch::new(run, watch)?));
                }
                if mode == Mode::Diff && export.any() {
                    tracing::info!(
                        "--pushgateway and --metrics-file are ignored with --dry-run: its metrics would replace those of the last reconcile"
                    );
                }
                Config::Batch(Batch {
                    run_timeout: Duration::from_secs(u64::from(run.args.run_timeout)),
                    run,
                    detailed_exitcode: *detailed_exitcode,
                    expect_plan: expect_plan.clone(),
                    export: (mode == Mode::Reconcile && export.any()).then(|| export.clone()),
                })
            }
        })
    }
}

impl Run {
    fn new(g: &Global, args: &RunArgs, mode: Mode, max_events: Option<usize>) -> Run {
        Run {
            rules: g.rules.clone(),
            mode,
            max_events,
            text_logs: g.log_format == LogFormat::Text,
            format: g.output,
            args: args.clone(),
        }
    }

    /// `--owner`: whose targets these are (the metrics push is grouped by it).
    pub fn owner(&self) -> Option<&crate::model::Owner> {
        self.args.owner.as_ref()
    }

    /// The settings of the run's passes.
    pub fn settings(&self, stop: Stop) -> Settings {
        let run = &self.args;
        Settings {
            plan: PlanOptions {
                allow_empty: run.allow_empty,
                owner: run.owner.clone(),
                adopt_untagged: run.adopt_untagged,
                gate_on: run.gate_on.into(),
                max_deregister: run.max_deregister.filter(|_| !run.force),
            },
            style: Style {
                format: self.format.into(),
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
            ..Settings::new(self.mode)
        }
    }

    /// The CLB API client, with the credentials the environment selects.
    pub fn clb_client(&self) -> anyhow::Result<ClbClient> {
        let run = &self.args;
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

    /// Connects to Kubernetes (which runs the kubeconfig's credential plugin, if any), giving up when the run is
    /// stopped by a signal or --run-timeout.
    pub async fn connect(&self, stop: &Stop) -> anyhow::Result<KubeCluster> {
        let options = ConnectOptions { allow_insecure_skip_tls_verify: self.args.allow_insecure_skip_tls_verify };
        tokio::select! {
            connected = KubeCluster::connect_with(self.args.kubeconfig.as_deref(), &options) => {
                connected.context("connecting to Kubernetes")
            }
            reason = stop.stopped() => anyhow::bail!(
                "stopped by {reason} while connecting to Kubernetes: check the kubeconfig's credential plugin (`exec`), which runs then"
            ),
        }
    }
}

/// `--expect-plan`, read: the fingerprint to apply only, and the reviewed plan when it was given as a file.
#[derive(Debug, Default)]
pub struct Expected {
    pub fingerprint: Option<Fingerprint>,
    pub reviewed: Option<(PathBuf, Reviewed)>,
}

impl Batch {
    /// The plan `--expect-plan` names, read from its file when it names one.
    pub fn expected(&self) -> anyhow::Result<Expected> {
        Ok(match &self.expect_plan {
            None => Expected::default(),
            Some(ExpectPlan::Fingerprint(f)) => Expected { fingerprint: Some(*f), reviewed: None },
            Some(ExpectPlan::File(path)) => {
                let what = || format!("reading the reviewed plan {} (--expect-plan)", path.display());
                let text = std::fs::read_to_string(path).with_context(what)?;
                let reviewed = Reviewed::parse(&text).map_err(anyhow::Error::msg).with_context(what)?;
                Expected { fingerprint: Some(reviewed.fingerprint), reviewed: Some((path.clone(), reviewed)) }
            }
        })
    }
}

impl Watch {
    fn new(run: Run, args: &WatchArgs) -> anyhow::Result<Watch> {
        if args.resync_interval.is_zero() {
            anyhow::bail!("--resync-interval must be longer than 0s");
        }
        let watch = Watch { run, args: args.clone() };
        watch.timing().validate().map_err(anyhow::Error::msg)?;
        Ok(watch)
    }

    fn timing(&self) -> lease::decide::Timing {
        lease::decide::Timing {
            lease_duration: self.args.leader_election_lease_duration,
            renew_deadline: self.args.leader_election_renew_deadline,
            retry_period: self.args.leader_election_retry_period,
        }
    }

    /// Watch mode's options; `credentials`: those the CLB client signs with, for the metrics.
    pub fn options(&self, credentials: Provider) -> watch::Options {
        let election = self.args.leader_election_namespace.clone().map(|namespace| lease::Config {
            namespace,
            name: self.args.leader_election_id.clone(),
            identity: lease::identity(),
            timing: self.timing(),
        });
        watch::Options {
            rules_path: self.run.rules.clone(),
            debounce: self.args.debounce,
            resync_interval: self.args.resync_interval,
            election,
            metrics_addr: self.args.metrics_addr,
            events: self.run.max_events,
            credentials: Some(credentials),
        }
    }
}

/// The width to fit the table into: `COLUMNS` when set, else the terminal's when stdout is one; a file, a pipe
/// or `kubectl logs` gets full rows.
fn table_width() -> Option<u16> {
    let columns = std::env::var("COLUMNS").ok().and_then(|c| c.trim().parse::<u16>().ok()).filter(|&c| c > 0);
    columns.or_else(|| std::io::stdout().is_terminal().then(|| comfy_table::Table::new().width()).flatten())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn config(args: &[&str]) -> anyhow::Result<Config> {
        Config::from_cli(&Cli::try_parse_from([&["clbsync"], args].concat()).expect("valid arguments"))
    }

    fn batch(args: &[&str]) -> Batch {
        match config(args).expect("a valid configuration") {
            Config::Batch(b) => b,
            other => panic!("not a batch run: {other:?}"),
        }
    }

    #[test]
    fn a_dry_run_records_no_events_and_hands_on_no_metrics() {
        let b = batch(&["reconcile", "--dry-run", "--metrics-file", "run.prom", "--max-events", "7"]);
        assert_eq!((b.run.mode, b.run.max_events, b.export.is_none()), (Mode::Diff, None, true));
        let b = batch(&["diff"]);
        assert_eq!((b.run.mode, b.run.max_events, b.export.is_none()), (Mode::Diff, None, true));
    }

    #[test]
    fn reconcile_records_events_and_hands_on_its_metrics_where_asked() {
        let b = batch(&["reconcile", "--metrics-file", "run.prom", "--max-events", "7"]);
        assert_eq!((b.run.mode, b.run.max_events), (Mode::Reconcile, Some(7)));
        assert_eq!(b.export.and_then(|e| e.metrics_file), Some(PathBuf::from("run.prom")));
        assert_eq!(batch(&["reconcile", "--events=false"]).run.max_events, None);
    }

    #[test]
    fn watch_durations_clap_cannot_check_are_refused_naming_the_options() {
        let err = config(&["reconcile", "--watch", "--resync-interval", "0s"]).expect_err("a zero resync interval");
        assert_eq!(err.to_string(), "--resync-interval must be longer than 0s");
        let args = ["reconcile", "--watch", "--leader-election-namespace", "ns", "--leader-election-retry-period"];
        let err = config(&[&args[..], &["10s"]].concat()).expect_err("a retry period past the renew deadline");
        assert!(err.to_string().starts_with("--leader-election-retry-period (10000ms) must be shorter"), "{err}");
        assert!(matches!(config(&["reconcile", "--watch"]), Ok(Config::Watch(_))));
    }

    #[test]
    fn the_command_lines_defaults_are_the_settings_defaults() {
        let from_cli = batch(&["diff", "--region", crate::clb::DEFAULT_REGION]).run.settings(Stop::new());
        let defaults = Settings::new(Mode::Diff);
        assert_eq!(from_cli.stop_grace, defaults.stop_grace);
        assert_eq!(from_cli.concurrency, defaults.concurrency);
        assert_eq!(from_cli.warn_waiting_after, defaults.warn_waiting_after);
        assert_eq!(from_cli.plan, defaults.plan);
        assert_eq!(from_cli.region, defaults.region);
    }
}
