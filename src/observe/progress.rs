//! What a run is doing, for a person at a terminal: `reading 3 load balancer(s): 1 done; applying 12 change(s):
//! 5 applied, 0 failed` on stderr, as a spinner (indicatif) that appears only when the run takes longer than
//! [`DELAY`]. `reconcile` reports [`Progress`] steps to an [`Observer`]; only `main` decides whether there is a
//! terminal to show them on (stderr a TTY, text logs), so a pipe, a file or `kubectl logs` never gets one.

use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A run shorter than this shows nothing.
pub const DELAY: Duration = Duration::from_secs(1);

/// One step of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// The load balancers are found; their targets are being read.
    Reading { load_balancers: usize },
    /// One load balancer is planned, with this many changes to apply (0 for `diff`).
    Planned { changes: usize },
    /// One load balancer is done: `applied` of its changes made, `failed` failed or not attempted.
    Done { applied: usize, failed: usize },
    /// Everything is done and the report is about to be written.
    Reporting,
}

/// Receives a run's [`Progress`].
#[derive(Clone)]
pub struct Observer(Arc<dyn Fn(Progress) + Send + Sync>);

impl Observer {
    pub fn new(f: impl Fn(Progress) + Send + Sync + 'static) -> Observer {
        Observer(Arc::new(f))
    }

    pub fn report(&self, step: Progress) {
        (self.0)(step);
    }
}

impl fmt::Debug for Observer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}

/// The counts so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Counts {
    load_balancers: usize,
    done: usize,
    changes: usize,
    applied: usize,
    failed: usize,
}

impl Counts {
    fn add(&mut self, step: Progress) {
        match step {
            Progress::Reading { load_balancers } => self.load_balancers = load_balancers,
            Progress::Planned { changes } => self.changes += changes,
            Progress::Done { applied, failed } => {
                self.done += 1;
                self.applied += applied;
                self.failed += failed;
            }
            Progress::Reporting => {}
        }
    }

    fn message(&self) -> String {
        let mut line = format!("reading {} load balancer(s): {} done", self.load_balancers, self.done);
        if self.changes > 0 {
            line.push_str(&format!(
                "; applying {} change(s): {} applied, {} failed",
                self.changes, self.applied, self.failed
            ));
        }
        line
    }
}

/// The spinner being shown, for [`Stderr`] to draw log lines around.
static SHOWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// A spinner on stderr, hidden until [`DELAY`] has passed, cleared before the report is written.
pub struct Terminal {
    bar: ProgressBar,
}

impl Terminal {
    /// Starts the spinner (inside a Tokio runtime) and returns the observer that feeds it.
    pub fn start() -> (Terminal, Observer) {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        let counts = Mutex::new(Counts::default());
        let fed = bar.clone();
        let observer = Observer::new(move |step| {
            if step == Progress::Reporting {
                clear(&fed);
                return;
            }
            let mut counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
            counts.add(step);
            fed.set_message(counts.message());
        });
        let later = bar.clone();
        tokio::spawn(async move {
            tokio::time::sleep(DELAY).await;
            let mut shown = SHOWN.lock().unwrap_or_else(PoisonError::into_inner);
            if !later.is_finished() {
                later.set_draw_target(ProgressDrawTarget::stderr());
                later.enable_steady_tick(Duration::from_millis(100));
                *shown = Some(later);
            }
        });
        (Terminal { bar }, observer)
    }

    /// Clears the spinner (if the run did not get to its report).
    pub fn finish(self) {
        clear(&self.bar);
    }
}

fn clear(bar: &ProgressBar) {
    let mut shown = SHOWN.lock().unwrap_or_else(PoisonError::into_inner);
    bar.finish_and_clear();
    *shown = None;
}

/// stderr for log lines: while the spinner is shown, each line is written with the spinner lifted, so the two
/// never mix.
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let shown = SHOWN.lock().unwrap_or_else(PoisonError::into_inner);
        match shown.as_ref() {
            Some(bar) => bar.suspend(|| io::stderr().write(buf)),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_counts_load_balancers_and_changes() {
        let mut c = Counts::default();
        c.add(Progress::Reading { load_balancers: 3 });
        assert_eq!(c.message(), "reading 3 load balancer(s): 0 done");
        c.add(Progress::Planned { changes: 0 });
        c.add(Progress::Done { applied: 0, failed: 0 });
        c.add(Progress::Planned { changes: 12 });
        c.add(Progress::Done { applied: 10, failed: 2 });
        assert_eq!(c.message(), "reading 3 load balancer(s): 2 done; applying 12 change(s): 10 applied, 2 failed");
    }
}
