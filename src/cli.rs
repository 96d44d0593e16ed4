//! The command line: `reconcile`, `diff`, `validate`, and the options they share.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::clb::credentials::{self, Selection};
use crate::model::Owner;
use crate::observe::export::Pushgateway;
use crate::plan::GateOn;
use crate::report;

pub mod config;
pub mod run;
pub mod usage;
mod validate;

const AFTER_HELP: &str = "\
Exit codes:
  0   success: in sync, or every change applied (validate: the rules file is valid)
  1   error: bad rules, missing credentials, a rule skipped (Kubernetes or CLB error) or blocked
      (no ready pods), or a change that failed or was not attempted (partial apply)
  2   diff --detailed-exitcode: changes are pending
  3   reconcile --expect-plan: the plan is not the one reviewed any more; nothing was changed
  64  usage error: unknown command or option, bad option value

Credentials (never flags; --credentials auto takes the first configured; docs/src/install.md):
  env       CLOUD_TENCENT_SECRET_ID / CLOUD_TENCENT_SECRET_KEY, or
            TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY [/ TENCENTCLOUD_SESSION_TOKEN]
  file      the same names with _FILE (a mounted Secret; re-read when it changes), else the
            SDK profile file ~/.tencentcloud/credentials or /etc/tencentcloud/credentials
  tke-oidc  TKE_REGION, TKE_PROVIDER_ID, TKE_WEB_IDENTITY_TOKEN_FILE, TKE_ROLE_ARN (via STS)
  cvm-role  the CVM instance role, only with --credentials cvm-role

Examples:
  clbsync validate --rules rules.yaml            check the rules file offline (CI)
  clbsync validate --kubeconfig PATH             also check it against the cluster (named ports)
  clbsync diff --dry-run                         show the plan as a table, change nothing
  clbsync diff --detailed-exitcode -o json       plan step in CI: exit 2 when changes are pending
  clbsync reconcile                              plan and apply (what the CronJob runs)";

/// Keeps Tencent Cloud CLB backends equal to the ready Pod IPs of Kubernetes workloads.
///
/// Each run reads the rules file, lists the pods behind every rule, asks CLB which targets are bound,
/// plans the difference and (for `reconcile`) applies it: new targets first, then weight changes and
/// drains, then removals. Nothing is stored between runs.
#[derive(Debug, Parser)]
#[command(name = "clbsync", version, after_long_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: Global,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Rules file: which pods go behind which listener or rule.
    #[arg(long, global = true, env = "CLBSYNC_RULES", default_value = "rules.yaml", value_name = "PATH")]
    pub rules: PathBuf,

    /// Report format on stdout.
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CLBSYNC_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// More log detail: -v debug, -vv trace.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Report format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// One JSON document (fields in docs/src/commands.md).
    Json,
    /// Markdown for a pull-request comment or a CI job summary.
    Markdown,
}

impl From<OutputFormat> for report::Format {
    fn from(f: OutputFormat) -> Self {
        match f {
            OutputFormat::Table => report::Format::Table,
            OutputFormat::Json => report::Format::Json,
            OutputFormat::Markdown => report::Format::Markdown,
        }
    }
}

/// What a pod's readiness gate waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GateOnArg {
    /// Bound on every rule and passing CLB's health checks: the pod takes requests when it turns Ready.
    Healthy,
    /// Bound on every rule. Faster, weaker: CLB sends a new target nothing until its health checks pass.
    Bound,
}

impl From<GateOnArg> for GateOn {
    fn from(g: GateOnArg) -> Self {
        match g {
            GateOnArg::Healthy => GateOn::Healthy,
            GateOnArg::Bound => GateOn::Bound,
        }
    }
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `2024-01-15T10:30:45Z INFO message key=value` (UTC)
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant, reason = "parsed once per process: its size does not matter")]
pub enum Command {
    /// Plan and apply: make every rule's targets equal to its ready pods.
    Reconcile {
        /// Plan only, exactly like `diff`: nothing is changed.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: exit 2 when changes are pending, 0 when in sync.
        #[arg(long, requires = "dry_run")]
        detailed_exitcode: bool,
        /// Apply only the plan reviewed: plan again, and apply only if its fingerprint is this one (`plan sha256:…`
        /// as `diff` printed it, or the JSON file `diff -o json` wrote); otherwise change nothing, show the new
        /// plan (with a file: what appeared and what went since) and exit 3. An empty plan has one too: "apply
        /// only while still in sync".
        #[arg(long, value_name = "sha256:…|FILE", value_parser = ExpectPlan::parse,
              conflicts_with_all = ["dry_run", "watch"])]
        expect_plan: Option<ExpectPlan>,
        #[command(flatten)]
        run: RunArgs,
        #[command(flatten)]
        events: EventArgs,
        #[command(flatten)]
        export: ExportArgs,
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Show what `reconcile` would change, without changing anything.
    Diff {
        /// Accepted for the familiar `diff --dry-run` spelling; diff never changes anything.
        #[arg(long)]
        dry_run: bool,
        /// Exit 0 when in sync, 2 when changes are pending, 1 on error (Terraform's contract).
        #[arg(long)]
        detailed_exitcode: bool,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Check the rules file offline (no cluster, no cloud, no credentials) and list every problem.
    ///
    /// With --kubeconfig it is also checked against the cluster, before it is applied (read only).
    Validate {
        /// Also read each rule's Deployment (its pod template) or, for a `selector:`, its pods, and report a
        /// Deployment or namespace that does not exist and a named `port:` that no container has. Only reads.
        #[arg(long, value_name = "PATH")]
        kubeconfig: Option<PathBuf>,
    },
}

/// `--expect-plan`: the fingerprint `diff` printed, or the JSON document `diff -o json` wrote (read by
/// `cli::config::Batch::expected`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectPlan {
    Fingerprint(crate::plan::Fingerprint),
    File(PathBuf),
}

impl ExpectPlan {
    /// `sha256:…` is a fingerprint; anything else names a file.
    pub fn parse(s: &str) -> Result<ExpectPlan, String> {
        match s.trim() {
            "" => Err("give the `sha256:…` that `diff` printed, or the file `diff -o json` wrote".to_owned()),
            f if f.starts_with("sha256:") => crate::plan::Fingerprint::parse(f).map(ExpectPlan::Fingerprint),
            _ => Ok(ExpectPlan::File(s.into())),
        }
    }
}

/// Options of the commands that talk to Kubernetes and CLB.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// CLB region of the load balancers [default: TENCENTCLOUD_REGION, else ap-beijing].
    #[arg(long, env = "TENCENT_REGION", value_name = "REGION")]
    pub region: Option<String>,

    /// CLB API endpoint URL, for private endpoints and the emulator (default: https://clb.tencentcloudapi.com).
    /// Plain http is accepted only for loopback addresses.
    #[arg(long, env = "CLBSYNC_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,

    /// Use the region's own host, clb.<region>.tencentcloudapi.com, instead of the nearest-region one.
    #[arg(long, conflicts_with = "endpoint")]
    pub regional_endpoint: bool,

    /// Kubeconfig file (default: KUBECONFIG, then ~/.kube/config, then the in-cluster service account).
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,

    /// Also show unchanged and unmanaged targets in the report.
    #[arg(long)]
    pub show_unchanged: bool,

    /// Show at most N rows of the table, then `… N more; use -o json` (JSON is never cut).
    #[arg(long, value_name = "N", default_value_t = crate::report::MAX_ROWS)]
    pub max_rows: usize,

    /// Let rules with no ready pods remove all their targets (otherwise such rules are blocked).
    #[arg(long)]
    pub allow_empty: bool,

    /// Hold a rule (blocked, nothing of it applied, exit 1) whose plan takes more of its targets out of the load
    /// balancer (drains and deregistrations) than this: N targets, or P% of the rule's bound targets (a
    /// percentage applies to rules with 4 targets or more). A selector or label typo looks like a mass removal.
    #[arg(long, env = "CLBSYNC_MAX_DEREGISTER", value_name = "N|P%", value_parser = crate::plan::Budget::parse)]
    pub max_deregister: Option<crate::plan::Budget>,

    /// Apply plans over --max-deregister: the removal is intended.
    #[arg(long)]
    pub force: bool,

    /// Manage only the targets tagged `clbsync:NAME` and tag what is registered so, to share load balancers with
    /// other clusters or tools (1-63 characters of a-z, 0-9, `.` and `-`; the cluster's name, say).
    #[arg(long, env = "CLBSYNC_OWNER", value_name = "NAME", value_parser = parse_owner)]
    pub owner: Option<Owner>,

    /// With --owner: tag the untagged targets of this cluster's pods as ours, then manage them (migrating an
    /// installation that ran without --owner).
    #[arg(long, requires = "owner")]
    pub adopt_untagged: bool,

    /// Pods that opt into the readiness gate (`readinessGates: [{conditionType: clbsync.dev/registered}]`) turn
    /// Ready only once their target is bound on every rule that selects them and, with `healthy`, passes CLB's
    /// health checks (a new target gets no requests before that). `bound` turns them Ready sooner, while CLB
    /// may not send them traffic yet: a rolling update can then remove old pods before the new ones serve.
    #[arg(long, value_enum, default_value_t = GateOnArg::Healthy, value_name = "WHEN")]
    pub gate_on: GateOnArg,

    /// Load balancers processed at once, 1-4000 (one load balancer's calls are always sequential) [default: 2 ×
    /// --rate-limit: the limiter paces every call, and a load balancer makes about one call every two seconds of
    /// each action while it waits for its tasks, so this many keep each action's budget busy].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4000))]
    pub concurrency: Option<u16>,

    /// After SIGTERM, seconds (0-3600) to wait for changes in flight before reporting them as not confirmed and
    /// exiting (keep it below the pod's terminationGracePeriodSeconds).
    #[arg(long, default_value_t = crate::apply::DEFAULT_STOP_GRACE.as_secs() as u16, value_name = "SECS",
          value_parser = clap::value_parser!(u16).range(0..=3600))]
    pub stop_grace: u16,

    /// Deadline of the whole run: past it no new change starts, the changes in flight finish (up to
    /// --stop-grace) and the report is written, as on SIGTERM. Keep it plus --stop-grace plus 8 s (Events and the
    /// metrics push) below the CronJob's activeDeadlineSeconds (55).
    #[arg(long, default_value_t = 25, value_name = "SECS", value_parser = clap::value_parser!(u16).range(1..))]
    pub run_timeout: u16,

    /// Accept `insecure-skip-tls-verify: true` in the kubeconfig, with a warning in the log. Without it such a
    /// kubeconfig is refused: the API server's certificate would not be checked and clbsync's token could go to
    /// anyone on the path.
    #[arg(long)]
    pub allow_insecure_skip_tls_verify: bool,

    /// A drain or removal held back longer than this (make before break: its replacements do not take traffic)
    /// is reported: a Warning Event `TargetsWaiting` and `clbsync_waiting_targets` (e.g. 10m, 1h).
    #[arg(long, default_value = "10m", value_parser = parse_duration, value_name = "DURATION")]
    pub warn_waiting_after: std::time::Duration,

    /// Client-side limit of CLB API requests per second, per action, 1-1000 (the API allows 20).
    #[arg(long, env = "CLBSYNC_RATE_LIMIT", default_value_t = crate::clb::client::DEFAULT_RATE_LIMIT,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub rate_limit: u32,

    #[command(flatten)]
    pub credentials: CredentialArgs,
}

/// Where the Tencent Cloud credentials come from.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Credentials")]
pub struct CredentialArgs {
    /// Where the CLB credentials come from (the variables are listed below). `auto` takes the first configured of
    /// env, file and tke-oidc; a source chosen or configured but incomplete is an error naming what is missing.
    #[arg(long, value_enum, env = "CLBSYNC_CREDENTIALS", default_value_t = CredentialsArg::Auto, value_name = "SOURCE")]
    pub credentials: CredentialsArg,

    /// STS endpoint for tke-oidc, for private endpoints (e.g. sts.internal.tencentcloudapi.com) and the emulator
    /// [default: https://sts.tencentcloudapi.com]. Plain http is accepted only for loopback addresses.
    #[arg(long, env = "CLBSYNC_STS_ENDPOINT", value_name = "URL")]
    pub sts_endpoint: Option<String>,

    /// Base URL of the CVM metadata service for cvm-role [default: http://metadata.tencentyun.com/latest/meta-data/].
    /// Plain http is accepted only for that host, link-local and loopback addresses.
    #[arg(long, env = "CLBSYNC_METADATA_ENDPOINT", value_name = "URL")]
    pub metadata_endpoint: Option<String>,
}

/// `--credentials`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CredentialsArg {
    /// The first configured of env, file, tke-oidc (never cvm-role: a pod on a CVM node would silently use the
    /// node's role).
    Auto,
    /// A SecretId/SecretKey pair in the environment.
    Env,
    /// Files named by the *_FILE variables, else the SDK profile file.
    File,
    /// TKE's OIDC role: the pod's projected service-account token, exchanged at STS.
    TkeOidc,
    /// The CVM instance role, from the metadata service.
    CvmRole,
}

impl CredentialArgs {
    /// What [`credentials::Provider::select`] takes.
    pub fn settings(&self) -> credentials::Settings {
        let selection = match self.credentials {
            CredentialsArg::Auto => Selection::Auto,
            CredentialsArg::Env => Selection::Env,
            CredentialsArg::File => Selection::File,
            CredentialsArg::TkeOidc => Selection::TkeOidc,
            CredentialsArg::CvmRole => Selection::CvmRole,
        };
        credentials::Settings {
            selection,
            sts_endpoint: self.sts_endpoint.clone(),
            metadata_endpoint: self.metadata_endpoint.clone(),
        }
    }
}

/// Kubernetes Events of `reconcile`.
#[derive(Debug, Args, Clone)]
// Back to the default heading after the credential options, which RunArgs ends with.
#[command(next_help_heading = None::<&str>)]
pub struct EventArgs {
    /// Record Kubernetes Events (events.k8s.io) on the Deployments whose targets changed, and on rules blocked,
    /// skipped or failed; `--events=false` records none. Never with --dry-run. An Event that cannot be recorded
    /// is logged and does not change the exit code.
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set, default_value_t = true, num_args = 0..=1,
          default_missing_value = "true")]
    pub events: bool,

    /// At most this many Events per run (one per object and reason).
    #[arg(long, default_value_t = crate::observe::events::DEFAULT_MAX, value_name = "N")]
    pub max_events: usize,
}

/// Metrics of a `reconcile` run, handed on when it ends (watch mode serves them at --metrics-addr instead).
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Metrics of a run")]
pub struct ExportArgs {
    /// Push the run's metrics to this Prometheus Pushgateway when it ends (HTTP PUT to
    /// <URL>/metrics/job/clbsync[/owner/<OWNER>], replacing the previous push). A failed push is logged and does
    /// not change the exit code. Not with --dry-run or --watch.
    #[arg(long, env = "CLBSYNC_PUSHGATEWAY", value_name = "URL", value_parser = Pushgateway::parse,
          hide_env_values = true)]
    pub pushgateway: Option<Pushgateway>,

    /// Write the run's metrics to this file when it ends, for the node exporter's textfile collector (name it
    /// *.prom; replaced whole through a rename). A failed write is logged and does not change the exit code.
    #[arg(long, env = "CLBSYNC_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
}

impl ExportArgs {
    /// Whether the run's metrics go anywhere.
    pub fn any(&self) -> bool {
        self.pushgateway.is_some() || self.metrics_file.is_some()
    }

    /// Pushes and/or writes a batch run's metrics; a failure is logged once each and changes nothing else.
    pub async fn export(&self, metrics: &crate::observe::metrics::Metrics, owner: Option<&Owner>) {
        let text = metrics.encode_text();
        if let Some(path) = &self.metrics_file
            && let Err(e) = crate::observe::export::write_file(path, &text)
        {
            tracing::warn!("{e}; the exit code is not affected");
        }
        if let Some(gateway) = &self.pushgateway
            && let Err(e) = crate::observe::export::push(gateway, owner, text).await
        {
            tracing::warn!("{e}; the exit code is not affected");
        }
    }
}

fn parse_owner(name: &str) -> Result<Owner, String> {
    Owner::new(name)
}

/// Watch mode: keep running and reconcile the rules a change touches.
#[derive(Debug, Args, Clone)]
#[command(next_help_heading = "Watch mode")]
pub struct WatchArgs {
    /// Keep running: watch pods and Deployments and reconcile the rules a change touches, every rule every
    /// --resync-interval, and the rules file again when it changes. SIGTERM exits 0.
    #[arg(long, conflicts_with = "detailed_exitcode")]
    pub watch: bool,

    /// Wait this long after a change before reconciling its rules, so a rollout's changes go together
    /// (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration, requires = "watch", value_name = "DURATION")]
    pub debounce: std::time::Duration,

    /// Reconcile every rule this often, to undo changes made on the CLB side (e.g. 60s, 5m).
    #[arg(long, default_value = "60s", value_parser = parse_duration, requires = "watch", value_name = "DURATION")]
    pub resync_interval: std::time::Duration,

    /// Elect one leader through a coordination.k8s.io/v1 Lease in this namespace; only the leader changes CLB and
    /// pod conditions.
    #[arg(long, requires = "watch", value_name = "NAMESPACE")]
    pub leader_election_namespace: Option<String>,

    /// Name of the Lease.
    #[arg(long, default_value = "clbsync", requires = "leader_election_namespace", value_name = "NAME")]
    pub leader_election_id: String,

    /// How long a follower waits before taking over a Lease it has not seen change (timed by its own clock from
    /// when it saw the last change, never by the holder's); whole seconds. A dead leader is replaced within it
    /// plus one retry period. The three durations are kube-controller-manager's flags of the same names.
    #[arg(long, default_value = "15s", value_parser = parse_duration, requires = "leader_election_namespace",
          value_name = "DURATION")]
    pub leader_election_lease_duration: std::time::Duration,

    /// How long after its last successful renewal the leader may still write: past it, it stops every write at
    /// once and leads again only after renewing and listing its watches again. Shorter than the lease duration,
    /// so it has stopped before a follower can take over.
    #[arg(long, default_value = "10s", value_parser = parse_duration, requires = "leader_election_namespace",
          value_name = "DURATION")]
    pub leader_election_renew_deadline: std::time::Duration,

    /// How often the leader renews the Lease and followers read it; also the timeout of each Lease request.
    /// Shorter than the renew deadline.
    #[arg(long, default_value = "2s", value_parser = parse_duration, requires = "leader_election_namespace",
          value_name = "DURATION")]
    pub leader_election_retry_period: std::time::Duration,

    /// Serve /healthz, /readyz and /metrics (Prometheus) on this address, e.g. 0.0.0.0:8080 (off by default).
    #[arg(long, requires = "watch", value_name = "ADDR")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// `250ms`, `1s`, `2m`, `1h`: a whole number and a unit.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 =
        n.parse().map_err(|_| format!("`{s}` is not a duration: write a number and a unit, e.g. 1s or 500ms"))?;
    let d = match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        "h" => std::time::Duration::from_secs(n * 3600),
        _ => return Err(format!("`{s}` has no known unit: use ms, s, m or h")),
    };
    Ok(d)
}

impl RunArgs {
    /// The region: `--region`, `TENCENT_REGION`, then `TENCENTCLOUD_REGION`, then `ap-beijing`.
    pub fn region(&self, lookup: impl Fn(&str) -> Option<String>) -> String {
        self.region
            .clone()
            .or_else(|| lookup("TENCENTCLOUD_REGION"))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| crate::clb::DEFAULT_REGION.into())
    }
}
