//! `validate`: the rules file checked offline, then, with a kubeconfig, against the cluster (read only).

use std::io::Write;

use anyhow::Context;

use super::config::Validate;
use crate::desired::kube::KubeCluster;
use crate::outcome::exit;
use crate::report::ending::quiet_on_broken_pipe;
use crate::report::validation;
use crate::rules;

impl Validate {
    /// Checks the rules file and writes the report to `out`; the exit code, or (as text) the problems as an error.
    pub async fn run(&self, out: &mut impl Write) -> anyhow::Result<u8> {
        let file = self.rules.display().to_string();
        let mut result = rules::load(&self.rules);
        if let (Ok(loaded), Some(path)) = (&result, &self.kubeconfig) {
            let cluster = KubeCluster::connect(Some(path)).await.context("connecting to Kubernetes")?;
            let problems = crate::desired::ports::check(&cluster, loaded)
                .await
                .with_context(|| format!("checking {file} against the cluster"))?;
            if !problems.is_empty() {
                result = Err(rules::Error::Invalid { file: file.clone(), problems });
            }
        }
        if self.json {
            quiet_on_broken_pipe(validation::json(out, &file, &result))?;
            return Ok(if result.is_ok() { exit::OK } else { exit::ERROR });
        }
        let rules = result?;
        quiet_on_broken_pipe(validation::valid(out, &file, &rules, self.kubeconfig.is_some()))?;
        Ok(exit::OK)
    }
}
