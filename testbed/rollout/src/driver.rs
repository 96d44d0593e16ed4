//! clbsync in the mode under test: `reconcile` every period (the CronJob), or one `reconcile --watch` child.
//! Output goes to a log file per run, kept for a failed run.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::time::Instant;

/// Where and how clbsync runs.
#[derive(Debug, Clone)]
pub struct Clbsync {
    /// The binary.
    pub bin: PathBuf,
    /// Rules file.
    pub rules: PathBuf,
    /// Kubeconfig of the test API server.
    pub kubeconfig: PathBuf,
    /// The emulator's endpoint.
    pub endpoint: String,
    /// stderr of every run is appended here.
    pub log: PathBuf,
}

impl Clbsync {
    fn command(&self, extra: &[&str]) -> anyhow::Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear()
            .env("NO_COLOR", "1")
            .env("TENCENTCLOUD_SECRET_ID", clb_emulator::DEFAULT_SECRET_ID)
            .env("TENCENTCLOUD_SECRET_KEY", clb_emulator::DEFAULT_SECRET_KEY)
            .arg("reconcile")
            .args(extra)
            .arg("--rules")
            .arg(&self.rules)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--endpoint", &self.endpoint, "--region", "ap-guangzhou", "--events=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        Ok(cmd)
    }
}

/// A running driver.
pub enum Driver {
    /// The CronJob: `runs` counts finished runs.
    Cron { stop: watch::Sender<bool>, runs: watch::Receiver<u32>, task: tokio::task::JoinHandle<anyhow::Result<()>> },
    /// Watch mode.
    Watch(Child),
}

impl Driver {
    /// Starts `reconcile` every `period` (the first run now; a run that overruns delays the next, like a CronJob
    /// with `concurrencyPolicy: Forbid`).
    pub fn cron(clbsync: Clbsync, period: Duration) -> Driver {
        let (stop, mut stop_rx) = watch::channel(false);
        let (runs_tx, runs) = watch::channel(0u32);
        let task = tokio::spawn(async move {
            let mut next = Instant::now();
            loop {
                let status = clbsync.command(&[])?.status().await.context("running clbsync reconcile")?;
                anyhow::ensure!(
                    matches!(status.code(), Some(0 | 1)),
                    "clbsync reconcile exited with {status}: see {}",
                    clbsync.log.display()
                );
                runs_tx.send_modify(|n| *n += 1);
                next += period;
                tokio::select! {
                    _ = tokio::time::sleep_until(next.max(Instant::now())) => {}
                    _ = stop_rx.changed() => return Ok(()),
                }
            }
        });
        Driver::Cron { stop, runs, task }
    }

    /// Starts `reconcile --watch`.
    pub fn watch(clbsync: &Clbsync, debounce: Duration, resync: Duration) -> anyhow::Result<Driver> {
        let debounce = format!("{}ms", debounce.as_millis());
        let resync = format!("{}ms", resync.as_millis());
        let child = clbsync
            .command(&["--watch", "--debounce", &debounce, "--resync-interval", &resync])?
            .spawn()
            .context("starting clbsync reconcile --watch")?;
        Ok(Driver::Watch(child))
    }

    /// For the CronJob: waits until the run in progress (or the next one) has finished, so that a scenario
    /// starts at the same point of the schedule every time. Watch mode returns at once.
    pub async fn after_next_run(&mut self) -> anyhow::Result<()> {
        if let Driver::Cron { runs, .. } = self {
            runs.changed().await.context("the CronJob loop ended")?;
        }
        Ok(())
    }

    /// Stops the driver; an error it met (a failed run, a watcher that died) is returned.
    pub async fn stop(self, log: &Path) -> anyhow::Result<()> {
        match self {
            Driver::Cron { stop, task, .. } => {
                let _ = stop.send(true);
                task.await.context("CronJob loop panicked")?
            }
            Driver::Watch(mut child) => {
                if let Some(status) = child.try_wait()? {
                    anyhow::bail!("clbsync --watch exited early with {status}: see {}", log.display());
                }
                if let Some(pid) = child.id() {
                    let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status().await;
                }
                match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
                    Ok(status) => {
                        let status = status?;
                        anyhow::ensure!(
                            status.success(),
                            "clbsync --watch exited with {status}: see {}",
                            log.display()
                        );
                    }
                    Err(_) => child.kill().await?,
                }
                Ok(())
            }
        }
    }
}
