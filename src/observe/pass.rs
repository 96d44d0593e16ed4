//! What both drivers (one run, and each pass of watch mode) record after a pass, in one place: the pass in the
//! metrics, the CLB API answers and credential refreshes since the last pass, and the Kubernetes Events of its
//! outcome.

use std::collections::BTreeMap;
use std::time::Duration;

use super::events::{self, Series};
use super::metrics::{self, Metrics};
use crate::clb::credentials::Provider;
use crate::outcome::Outcome;
use crate::rules::Rules;
use crate::stop::{Reason, Stop};

/// CLB API answers so far per (action, `ok` or error code), as the client counts them.
pub type Answers = BTreeMap<(&'static str, String), u64>;

/// Where a pass's Events go: the API server, at most `max` per pass (`--max-events`).
pub struct EventSink<'a> {
    pub client: &'a kube::Client,
    pub max: usize,
    /// Still recorded once the run is stopped by a signal or its timeout: a batch run's Events say what it did.
    /// Watch mode's are not, so its shutdown stays within the pod's grace period. After a lost lease, never.
    pub after_a_stop: bool,
}

/// The observers of the passes of one process, with what they need to remember between passes.
pub struct Observers<'a, A: Fn() -> Answers> {
    metrics: Option<&'a Metrics>,
    events: Option<EventSink<'a>>,
    /// The client's answers so far; the metrics get what changed since the last pass.
    answers: A,
    seen: Answers,
    series: Series,
    instance: String,
    credentials: Option<Provider>,
}

impl<'a, A: Fn() -> Answers> Observers<'a, A> {
    /// `metrics` and `events`, when given, are told of each pass; `answers` reads the CLB client's counts, and
    /// `credentials` are the ones it signs with.
    pub fn new(
        metrics: Option<&'a Metrics>,
        events: Option<EventSink<'a>>,
        answers: A,
        credentials: Option<Provider>,
    ) -> Self {
        Observers {
            metrics,
            events,
            answers,
            seen: Answers::new(),
            series: Series::default(),
            instance: events::instance(),
            credentials,
        }
    }

    /// Counts the API calls made and the credential refreshes since the last call: after every pass, including
    /// one that ended in an error.
    pub fn record_calls(&mut self) {
        let Some(m) = self.metrics else { return };
        let total = (self.answers)();
        m.record_api_calls(total.iter().map(|((action, code), n)| {
            (*action, code.as_str(), n - self.seen.get(&(*action, code.clone())).copied().unwrap_or(0))
        }));
        self.seen = total;
        if let Some(credentials) = &self.credentials {
            m.record_credentials(&credentials.stats());
        }
    }

    /// Records a pass over some of `rules` that took `elapsed`: its result in the metrics, its Events (unless
    /// `stop` has fired and the sink does not record after a stop, or the lease is lost), then its API calls.
    pub async fn record(&mut self, rules: &Rules, outcome: &Outcome, elapsed: Duration, stop: &Stop) {
        if let Some(m) = self.metrics {
            m.record_pass(outcome, elapsed, metrics::unix_now());
        }
        let stopped = stop.check().err();
        if let Some(sink) = self.events.as_ref().filter(|s| records_events(s.after_a_stop, stopped.as_ref())) {
            let (drafts, left_out) = events::drafts(rules, outcome, sink.max);
            if left_out > 0 {
                let max = sink.max;
                tracing::info!(left_out, "--max-events {max} reached: {left_out} Kubernetes Event(s) not recorded");
            }
            let posted = self.series.record(sink.client, drafts, &self.instance).await;
            if let Some(m) = self.metrics {
                m.record_events(posted.recorded, posted.failed);
            }
        }
        self.record_calls();
    }
}

/// Whether a pass's Events are recorded once its stop reads `stopped` (`None`: not stopped).
fn records_events(after_a_stop: bool, stopped: Option<&Reason>) -> bool {
    match stopped {
        None => true,
        Some(reason) => after_a_stop && reason.lets_in_flight_finish(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_recorded_after_a_signal_only_by_a_batch_run_and_never_after_a_lost_lease() {
        let signal = Reason::Signal("SIGTERM");
        let lost = Reason::LeaseLost("taken by b".into());
        assert!(records_events(false, None) && records_events(true, None));
        assert!(records_events(true, Some(&signal)), "a batch run's Events say what it did");
        assert!(!records_events(false, Some(&signal)), "watch mode shuts down within the pod's grace period");
        assert!(!records_events(true, Some(&lost)) && !records_events(false, Some(&lost)), "another replica writes");
    }
}
