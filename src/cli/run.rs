//! Running a checked command: the clients built from its configuration, then one pass (`diff`, `reconcile`) or
//! the watch loop. The caller owns the [`Stop`] (and the signals that fire it) and says how the run ended.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::config::{Batch, Expected, Watch};
use crate::clb::client::ClbClient;
use crate::desired::kube::KubeCluster;
use crate::observe::progress::Terminal;
use crate::outcome::Outcome;
use crate::reconcile::{self, Settings};
use crate::report::ending::quiet_on_broken_pipe;
use crate::rules::{self, Rules};
use crate::stop::Stop;

/// One pass run, and the clients it ran with (their counts and the cluster are the observers' to read).
pub struct Pass {
    /// What the pass found and did, or why it failed (in the context of the rules file).
    pub outcome: anyhow::Result<Outcome>,
    /// Whether the report reached stdout: a failure ends the run once its observers have recorded it.
    pub flushed: anyhow::Result<()>,
    pub elapsed: Duration,
    pub clb: ClbClient,
    pub cluster: KubeCluster,
    pub expected: Expected,
}

impl Batch {
    /// Builds the clients and runs the pass over `rules`, its report on stdout, until it is done or `stop` fires
    /// (armed here with `--run-timeout`).
    pub async fn pass(&self, rules: &Rules, stop: &Stop) -> anyhow::Result<Pass> {
        let expected = self.expected()?;
        let clb = self.run.clb_client()?;
        stop.stop_after(self.run_timeout);
        let cluster = self.run.connect(stop).await?;
        // Progress only for a person: stderr a terminal and text logs; a pipe, a file or JSON logs get none.
        let terminal = (std::io::stderr().is_terminal() && self.run.text_logs).then(Terminal::start);
        let progress = terminal.as_ref().map(|(_, observer)| observer.clone());
        let settings = Settings { progress, expect_plan: expected.fingerprint, ..self.run.settings(stop.clone()) };
        let mut out = std::io::stdout().lock();
        let started = Instant::now();
        let outcome = reconcile::run(rules, &cluster, &clb, &settings, &mut out).await;
        let elapsed = started.elapsed();
        if let Some((terminal, _)) = terminal {
            terminal.finish();
        }
        let outcome = outcome.with_context(|| format!("running the rules of {}", self.run.rules.display()));
        let flushed = quiet_on_broken_pipe(out.flush()).context("writing the report to stdout");
        Ok(Pass { outcome, flushed, elapsed, clb, cluster, expected })
    }
}

impl Watch {
    /// Watch mode, until `stop` fires.
    pub async fn run(&self, stop: Stop) -> anyhow::Result<()> {
        let rules = rules::load_regular(&self.run.rules)?;
        let clb = self.run.clb_client()?;
        let cluster = self.run.connect(&stop).await?;
        let settings = self.run.settings(stop.clone());
        let opts = self.options(clb.credential_source().clone());
        crate::watch::run(cluster.client().clone(), &clb, || clb.answers(), rules, &settings, &opts, stop).await
    }
}
