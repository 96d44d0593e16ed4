//! How a run's output ends: the error line after a run that was stopped, found another plan than the one
//! reviewed, or failed; and quietly when the reader went away.

use std::path::PathBuf;

use super::reviewed::Reviewed;
use crate::outcome::{Outcome, exit};
use crate::stop::{Reason, Stop};

/// The error line (after `error: `) that ends a run of exit code `code`, if one does: it was stopped (it then
/// exits 1), found another plan than the one reviewed, or failed.
pub fn last_words(stop: &Stop, outcome: &Outcome, code: u8, reviewed: Option<&(PathBuf, Reviewed)>) -> Option<String> {
    match stop.run_reason() {
        Some(Reason::RunTimeout(after)) => {
            return Some(format!(
                "the run reached --run-timeout ({}s); changes not yet started were left for the next run",
                after.as_secs()
            ));
        }
        Some(reason) => {
            return Some(format!("stopped by {reason}; changes not yet started were left for the next run"));
        }
        None => {}
    }
    match (&outcome.plan_changed, reviewed) {
        (Some((expected, found)), None) => Some(format!(
            "the plan is not the one reviewed (--expect-plan {expected}, now {found}): nothing was changed; review the plan above, and to apply it run again with --expect-plan {found}"
        )),
        (Some((_, found)), Some((path, reviewed))) => {
            Some(reviewed.refusal(path, *found, &outcome.plan).trim_end().to_owned())
        }
        (None, _) if code == exit::ERROR => Some(format!("{}; the report on stdout has every rule", outcome.trouble())),
        (None, _) => None,
    }
}

/// A reader that went away (`clbsync validate -o json | head`) ends the output quietly, as other CLIs do.
pub(crate) fn quiet_on_broken_pipe(written: std::io::Result<()>) -> std::io::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
