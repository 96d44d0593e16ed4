//! Temporary credentials kept valid: fetched on first use, refreshed ahead of expiry, one fetch at a time.
//!
//! - **When**: at [`REFRESH_AT`] (80 %) of their lifetime. The SDKs refresh at 90 %; 80 % leaves a fifth of the
//!   lifetime (24 minutes of STS's default two hours) for retries when STS or the metadata service fails, and is
//!   when the kubelet rotates the projected token itself.
//! - **Once**: a single-flight lock. The call that finds the credentials due refreshes them; the calls in flight
//!   meanwhile keep signing with the current ones while they are valid, or wait for the one fetch when they are not,
//!   so 80 load balancers in flight cause one STS call.
//! - **On failure**: the current credentials stay in use while they are valid, and the fetch is retried with a
//!   backoff ([`retry_delay`]); only when they are no longer valid do calls fail, with the fetch's error (and,
//!   until the next attempt is due, without another fetch).
//! - **After a refusal**: when CLB refuses credentials as expired or unknown ([`Cache::rejected`]), they are
//!   dropped and fetched again at once (at most once per [`FORCED_MIN_INTERVAL`]).
//!
//! The clock is tokio's ([`tokio::time::Instant`]), so tests run the schedule with paused time.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Credentials, Error};

/// The fraction of a credential's lifetime after which it is refreshed.
pub const REFRESH_AT: f64 = 0.8;

/// How close to its expiry a credential is no longer used for a new request: a twentieth of its lifetime, at most
/// 30 s (a request signed just before the expiry could arrive after it).
fn margin(lifetime: Duration) -> Duration {
    (lifetime / 20).min(Duration::from_secs(30))
}

/// How long after the `failures`-th failed fetch in a row the next one is tried: doubling from a fortieth of the
/// lifetime (at most 1 s) up to a tenth of it (at most 30 s), so a short-lived credential gets several attempts
/// before it expires. Without a lifetime (nothing fetched yet) from 1 s up to 30 s.
pub fn retry_delay(lifetime: Option<Duration>, failures: u32) -> Duration {
    let (base, max) = match lifetime {
        Some(l) => ((l / 40).min(Duration::from_secs(1)), (l / 10).min(Duration::from_secs(30))),
        None => (Duration::from_secs(1), Duration::from_secs(30)),
    };
    base.saturating_mul(1u32 << failures.saturating_sub(1).min(16)).min(max)
}

/// At most one refresh forced by a refusal per this interval: a burst of refused calls (all signed with the same
/// credentials) is one fetch.
pub const FORCED_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Credentials as a source hands them out.
pub struct Issued {
    pub credentials: Credentials,
    /// How long they are valid from now.
    pub valid_for: Duration,
    /// When they expire, Unix seconds (for `clbsync_credentials_expiry_timestamp_seconds`).
    pub expires_unix: i64,
}

/// A source of temporary credentials: STS or the CVM metadata service.
pub trait Fetch: Send + Sync {
    fn fetch(&self) -> impl Future<Output = Result<Issued, Error>> + Send;
}

/// The credentials in use and when they were had.
struct Current {
    credentials: Arc<Credentials>,
    obtained: Instant,
    lifetime: Duration,
    expires_unix: i64,
}

impl Current {
    fn refresh_at(&self) -> Instant {
        self.obtained + self.lifetime.mul_f64(REFRESH_AT)
    }

    fn usable_until(&self) -> Instant {
        self.obtained + self.lifetime - margin(self.lifetime)
    }
}

#[derive(Default)]
struct State {
    current: Option<Current>,
    /// Refused by CLB: not used again.
    refused: bool,
    failures: u32,
    /// No fetch before this, after a failure.
    retry_at: Option<Instant>,
    last_error: Option<Error>,
    last_forced: Option<Instant>,
}

/// What a call should do, decided from the state and the time alone.
#[derive(Debug)]
enum Decision {
    Use(Arc<Credentials>),
    /// Fetch; `fallback` is what to sign with when the fetch fails or another call is fetching.
    Refresh {
        fallback: Option<Arc<Credentials>>,
    },
    Fail(Error),
}

fn decide(s: &State, now: Instant) -> Decision {
    let usable = s.current.as_ref().filter(|c| !s.refused && now < c.usable_until());
    let backing_off = s.retry_at.is_some_and(|t| now < t);
    match usable {
        Some(c) if now < c.refresh_at() || backing_off => Decision::Use(c.credentials.clone()),
        Some(c) => Decision::Refresh { fallback: Some(c.credentials.clone()) },
        None => match &s.last_error {
            Some(e) if backing_off => Decision::Fail(e.clone()),
            _ => Decision::Refresh { fallback: None },
        },
    }
}

/// What a fetch did, for the caller's log line and metrics.
pub enum RefreshResult {
    /// No fetch was made.
    None,
    Refreshed {
        valid_for: Duration,
    },
    /// The fetch failed and the current credentials, still valid this long, stay in use.
    FailedKept {
        error: Error,
        valid_for: Duration,
        retry_in: Duration,
    },
    Failed,
}

/// Temporary credentials from `F`, kept valid (see the module doc).
pub struct Cache<F> {
    fetch: F,
    state: Mutex<State>,
    flight: tokio::sync::Mutex<()>,
}

impl<F: Fetch> Cache<F> {
    pub fn new(fetch: F) -> Self {
        Cache { fetch, state: Mutex::new(State::default()), flight: tokio::sync::Mutex::new(()) }
    }

    pub fn source(&self) -> &F {
        &self.fetch
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The credentials to sign with now, and what fetching them did.
    pub async fn get(&self) -> (Result<Arc<Credentials>, Error>, RefreshResult) {
        let fallback = match decide(&self.state(), Instant::now()) {
            Decision::Use(c) => return (Ok(c), RefreshResult::None),
            Decision::Fail(e) => return (Err(e), RefreshResult::None),
            Decision::Refresh { fallback } => fallback,
        };
        let _flight = match &fallback {
            Some(current) => match self.flight.try_lock() {
                Ok(guard) => guard,
                Err(_) => return (Ok(current.clone()), RefreshResult::None),
            },
            None => self.flight.lock().await,
        };
        // Another call may have fetched while this one waited.
        let fallback = match decide(&self.state(), Instant::now()) {
            Decision::Use(c) => return (Ok(c), RefreshResult::None),
            Decision::Fail(e) => return (Err(e), RefreshResult::None),
            Decision::Refresh { fallback } => fallback,
        };
        let fetched = self.fetch.fetch().await;
        let now = Instant::now();
        let mut s = self.state();
        match fetched {
            Ok(issued) => {
                let credentials = Arc::new(issued.credentials);
                let lifetime = issued.valid_for;
                s.current = Some(Current {
                    credentials: credentials.clone(),
                    obtained: now,
                    lifetime,
                    expires_unix: issued.expires_unix,
                });
                (s.refused, s.failures, s.retry_at, s.last_error) = (false, 0, None, None);
                (Ok(credentials), RefreshResult::Refreshed { valid_for: lifetime })
            }
            Err(error) => {
                s.failures += 1;
                let retry_in = retry_delay(s.current.as_ref().map(|c| c.lifetime), s.failures);
                s.retry_at = Some(now + retry_in);
                s.last_error = Some(error.clone());
                match (fallback, s.current.as_ref()) {
                    (Some(current), Some(c)) => {
                        let valid_for = c.usable_until().saturating_duration_since(now);
                        (Ok(current), RefreshResult::FailedKept { error, valid_for, retry_in })
                    }
                    _ => (Err(error), RefreshResult::Failed),
                }
            }
        }
    }

    /// CLB refused `used` as expired or unknown: unless other credentials are in use already, drop them and fetch
    /// again. The credentials to retry with, when they differ from `used`.
    pub async fn rejected(&self, used: &Arc<Credentials>) -> (Option<Arc<Credentials>>, RefreshResult) {
        {
            let now = Instant::now();
            let mut s = self.state();
            let is_current = s.current.as_ref().is_some_and(|c| Arc::ptr_eq(&c.credentials, used));
            let allowed = s.last_forced.is_none_or(|t| now.duration_since(t) >= FORCED_MIN_INTERVAL);
            if is_current && !s.refused && allowed {
                (s.refused, s.retry_at, s.last_forced) = (true, None, Some(now));
            }
        }
        let (fresh, outcome) = self.get().await;
        (fresh.ok().filter(|c| !Arc::ptr_eq(c, used)), outcome)
    }

    /// When the credentials in use expire, Unix seconds.
    pub fn expires_unix(&self) -> Option<i64> {
        self.state().current.as_ref().map(|c| c.expires_unix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Issues `AKID<n>` valid for `lifetime`, after `latency`; fails while `down` is set.
    struct Counting {
        calls: AtomicU32,
        lifetime: Duration,
        latency: Duration,
        down: std::sync::atomic::AtomicBool,
    }

    impl Counting {
        fn new(lifetime: Duration, latency: Duration) -> Self {
            Counting { calls: AtomicU32::new(0), lifetime, latency, down: false.into() }
        }
        fn calls(&self) -> u32 {
            self.calls.load(Ordering::SeqCst)
        }
        fn set_down(&self, down: bool) {
            self.down.store(down, Ordering::SeqCst);
        }
    }

    impl Fetch for Counting {
        async fn fetch(&self) -> Result<Issued, Error> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.latency).await;
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::Sts { endpoint: "test".into(), reason: "down".into() });
            }
            Ok(Issued {
                credentials: Credentials::new(format!("AKID{n}"), "k", Some("t".into())),
                valid_for: self.lifetime,
                expires_unix: 0,
            })
        }
    }

    async fn id(cache: &Cache<Counting>) -> Result<String, Error> {
        cache.get().await.0.map(|c| c.secret_id.clone())
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[tokio::test(start_paused = true)]
    async fn credentials_are_refreshed_at_80_percent_of_their_lifetime_and_not_before() {
        let cache = Cache::new(Counting::new(HOUR, Duration::ZERO));
        assert_eq!(id(&cache).await.unwrap(), "AKID1");
        tokio::time::advance(HOUR.mul_f64(0.79)).await;
        assert_eq!(id(&cache).await.unwrap(), "AKID1");
        assert_eq!(cache.source().calls(), 1, "none in between");
        tokio::time::advance(HOUR.mul_f64(0.02)).await;
        assert_eq!(id(&cache).await.unwrap(), "AKID2");
        assert_eq!(cache.source().calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn eighty_calls_at_once_make_one_fetch() {
        let cache = Cache::new(Counting::new(HOUR, Duration::from_millis(300)));
        let calls = (0..80).map(|_| id(&cache));
        let ids = futures::future::join_all(calls).await;
        assert!(ids.iter().all(|i| i.as_deref() == Ok("AKID1")), "{ids:?}");
        assert_eq!(cache.source().calls(), 1);
        // Due again: one call fetches, the others sign with the current ones meanwhile.
        tokio::time::advance(HOUR.mul_f64(0.85)).await;
        let ids = futures::future::join_all((0..80).map(|_| id(&cache))).await;
        assert_eq!(cache.source().calls(), 2);
        assert_eq!(ids.iter().filter(|i| i.as_deref() == Ok("AKID2")).count(), 1, "{ids:?}");
        assert_eq!(id(&cache).await.unwrap(), "AKID2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_current_credentials_while_valid_and_retries_with_backoff() {
        let cache = Cache::new(Counting::new(HOUR, Duration::ZERO));
        id(&cache).await.unwrap();
        cache.source().set_down(true);
        tokio::time::advance(HOUR.mul_f64(0.8)).await;
        let (got, outcome) = cache.get().await;
        assert_eq!(got.unwrap().secret_id, "AKID1");
        assert!(matches!(outcome, RefreshResult::FailedKept { retry_in, .. } if retry_in == Duration::from_secs(1)));
        // Within the backoff: no fetch.
        id(&cache).await.unwrap();
        assert_eq!(cache.source().calls(), 2);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(id(&cache).await.unwrap(), "AKID1");
        assert_eq!(cache.source().calls(), 3);
        assert_eq!(retry_delay(Some(HOUR), 3), Duration::from_secs(4));
        assert_eq!(retry_delay(Some(HOUR), 30), Duration::from_secs(30));
        // Past validity (expiry less the 30 s margin): calls fail, with STS's error, and one fetch per backoff.
        tokio::time::advance(HOUR.mul_f64(0.2) - Duration::from_secs(31)).await;
        let before = cache.source().calls();
        let err = id(&cache).await.unwrap_err();
        assert!(err.to_string().contains("STS"), "{err}");
        for _ in 0..10 {
            assert!(id(&cache).await.is_err());
        }
        assert_eq!(cache.source().calls(), before + 1, "one fetch, the other calls fail with its error");
        cache.source().set_down(false);
        tokio::time::advance(Duration::from_secs(31)).await;
        assert!(id(&cache).await.unwrap().starts_with("AKID"), "recovers");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_refreshes_once_and_hands_out_the_new_credentials() {
        let cache = Cache::new(Counting::new(HOUR, Duration::from_millis(100)));
        let used = cache.get().await.0.unwrap();
        let retries = futures::future::join_all((0..20).map(|_| cache.rejected(&used))).await;
        assert!(retries.iter().all(|(c, _)| c.as_ref().is_some_and(|c| c.secret_id == "AKID2")));
        assert_eq!(cache.source().calls(), 2, "one fetch for the burst");
        // Refused again within a second: no new fetch, nothing new to retry with.
        let current = cache.get().await.0.unwrap();
        assert!(cache.rejected(&current).await.0.is_none());
        assert_eq!(cache.source().calls(), 2);
    }

    #[test]
    fn short_lifetimes_get_short_retries() {
        let three = Duration::from_secs(3);
        assert_eq!(retry_delay(Some(three), 1), Duration::from_millis(75));
        assert_eq!(retry_delay(Some(three), 9), Duration::from_millis(300));
        assert_eq!(margin(three), Duration::from_millis(150));
        assert_eq!(retry_delay(None, 1), Duration::from_secs(1));
    }
}
