//! The leader-election decision, pure: the Lease as read, what this replica saw of it and when, and the time now
//! → what to write, or whom to follow until when. client-go's `tryAcquireOrRenew`, with the clock passed in.
//!
//! - A follower times the holder's lease from when **it** saw the record change (client-go's observedTime), on
//!   its own monotonic clock. The holder's `renewTime` (its wall clock) never decides, so a skewed clock neither
//!   deposes a leader nor keeps one.
//! - A lease lasts the record's `leaseDurationSeconds`, at most our own lease duration: a planted Lease with a
//!   huge duration cannot keep the replicas followers.
//! - A `renewTime` later than now + lease duration + [`CLOCK_SKEW_ALLOWANCE`] cannot come from a holder that
//!   renews it: the record is taken over at once (the caller warns, naming the holder).
//! - A released record (no holder) is taken at once. A missing Lease is created at once by a replica that never
//!   saw one (a new installation) or that leads (its own Lease was deleted); any other replica first waits a lease
//!   duration from when it found it missing, so a leader whose Lease was deleted under it has stopped writing
//!   (or recreated it) before anyone else can lead. (A Lease deleted over and over can still give two replicas
//!   the lease for up to a renew deadline: a replica cannot see a Lease that came and went between its reads.)
//!
//! Why one writer: a leader writes only until its last successful renewal was *sent* plus the renew deadline; a
//! follower takes over no sooner than the lease duration after it *saw* that renewal, which was after it was
//! sent. The renew deadline being shorter than the lease duration leaves the leader's writes in flight that margin
//! to land. The property test at the bottom plays random interleavings of two replicas against this.

use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

/// How far ahead of our clock another replica's renewTime may be, beyond the lease duration, before the record
/// counts as implausible.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(30);

/// The election's durations (kube-controller-manager's `--leader-election-*` flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a follower waits, from when it saw the record last change, before taking the lease over.
    pub lease_duration: Duration,
    /// How long after its last successful renewal was sent a leader may write; it must renew before.
    pub renew_deadline: Duration,
    /// How often a leader renews and a follower looks again.
    pub retry_period: Duration,
}

impl Timing {
    /// kube-controller-manager's defaults.
    pub const DEFAULT: Timing = Timing {
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };

    /// Retry period < renew deadline < lease duration, the lease duration in whole seconds (a Lease stores
    /// seconds).
    pub fn validate(&self) -> Result<(), String> {
        let secs = |d: Duration| format!("{}ms", d.as_millis());
        let Timing { lease_duration, renew_deadline, retry_period } = *self;
        if retry_period.is_zero() {
            return Err("--leader-election-retry-period must be longer than 0s".into());
        }
        if retry_period >= renew_deadline {
            return Err(format!(
                "--leader-election-retry-period ({}) must be shorter than --leader-election-renew-deadline ({}): a leader renews every retry period and must manage at least one renewal before its deadline",
                secs(retry_period),
                secs(renew_deadline)
            ));
        }
        if renew_deadline >= lease_duration {
            return Err(format!(
                "--leader-election-renew-deadline ({}) must be shorter than --leader-election-lease-duration ({}): a leader must stop writing before a follower may take over",
                secs(renew_deadline),
                secs(lease_duration)
            ));
        }
        if lease_duration.subsec_nanos() != 0 {
            return Err(format!(
                "--leader-election-lease-duration ({}) must be whole seconds: the Lease stores leaseDurationSeconds",
                secs(lease_duration)
            ));
        }
        Ok(())
    }

    /// Until when a leader whose renewal was sent at `sent` may write.
    pub fn write_deadline(&self, sent: Instant) -> Instant {
        sent + self.renew_deadline
    }

    /// How long a record's lease lasts for us: its own duration, at most ours.
    fn lasts(&self, record: &Record) -> Duration {
        record.lease_duration.map_or(self.lease_duration, |d| d.min(self.lease_duration))
    }
}

/// The fields of a Lease's spec the election reads and writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Empty when nobody holds it (released).
    pub holder: String,
    /// `leaseDurationSeconds`; `None` when missing or not positive.
    pub lease_duration: Option<Duration>,
    pub acquire_time: Option<SystemTime>,
    pub renew_time: Option<SystemTime>,
    pub transitions: i32,
}

impl Record {
    pub fn from_spec(spec: Option<&LeaseSpec>) -> Record {
        let Some(spec) = spec else {
            return Record {
                holder: String::new(),
                lease_duration: None,
                acquire_time: None,
                renew_time: None,
                transitions: 0,
            };
        };
        let time = |t: &Option<MicroTime>| t.as_ref().map(|t| SystemTime::from(t.0));
        Record {
            holder: spec.holder_identity.clone().unwrap_or_default(),
            lease_duration: spec
                .lease_duration_seconds
                .filter(|&s| s > 0)
                .map(|s| Duration::from_secs(u64::from(s.unsigned_abs()))),
            acquire_time: time(&spec.acquire_time),
            renew_time: time(&spec.renew_time),
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    pub fn to_spec(&self) -> LeaseSpec {
        let time =
            |t: Option<SystemTime>| t.and_then(|t| k8s_openapi::jiff::Timestamp::try_from(t).ok()).map(MicroTime);
        LeaseSpec {
            holder_identity: Some(self.holder.clone()),
            lease_duration_seconds: self.lease_duration.map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: time(self.acquire_time),
            renew_time: time(self.renew_time),
            lease_transitions: Some(self.transitions),
            ..LeaseSpec::default()
        }
    }

    /// What a leader writes to give the lease up (client-go's ReleaseOnCancel): no holder, a one-second lease.
    pub fn released(&self, wall: SystemTime) -> Record {
        Record {
            holder: String::new(),
            lease_duration: Some(Duration::from_secs(1)),
            acquire_time: Some(wall),
            renew_time: Some(wall),
            transitions: self.transitions,
        }
    }
}

/// The time now on both clocks. The monotonic one times leases and deadlines; the wall clock only goes into the
/// record (for people and other tools) and checks another replica's renewTime for plausibility.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub mono: Instant,
    pub wall: SystemTime,
}

/// A version of the Lease as this replica saw it, and when it first saw that version (client-go's
/// observedRecord and observedTime).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// `metadata.resourceVersion`: every write changes it, a renewal included.
    pub version: String,
    pub record: Record,
    pub at: Instant,
}

/// What this replica knows after reading `record` at `version`, at `now` (taken after the read returned): the
/// time it was first seen stays while the version is the one seen before.
pub fn observe(before: Option<&Observed>, version: &str, record: &Record, now: Instant) -> Observed {
    let at = match before {
        Some(b) if b.version == version => b.at,
        _ => now,
    };
    Observed { version: version.to_owned(), record: record.clone(), at }
}

/// What a read found.
#[derive(Clone, Copy, Debug)]
pub enum Seen<'a> {
    Lease(&'a Observed),
    /// No Lease: the last one this replica saw (if it ever saw one), since when it has been missing, and whether
    /// this replica may still write (its term is not over).
    Missing {
        last: Option<&'a Observed>,
        since: Instant,
        leading: bool,
    },
}

/// Why this replica may write the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// There was none.
    Created,
    /// It names us: a renewal (or, when our writes had already stopped, a new term on our own record).
    Ours,
    /// Nobody holds it.
    Released,
    /// The holder's lease expired: unchanged for its duration, by our clock.
    Expired { holder: String },
    /// The holder's renewTime is too far ahead of our clock to be real.
    Implausible { holder: String, renew_time: SystemTime },
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create the Lease with this record.
    Create(Record),
    /// Replace the record read with this one, at the version read (optimistic concurrency: a conflict means
    /// another replica wrote first).
    Update { record: Record, why: Why },
    /// `holder`'s lease is valid until `expires` (by our clock): write nothing.
    Follow { holder: String, expires: Instant },
}

/// The decision of replica `me` at `now` (the monotonic part taken when the read returned).
pub fn decide(timing: &Timing, me: &str, seen: Seen<'_>, now: Now) -> Decision {
    let mine = |acquired: Option<SystemTime>, transitions: i32| Record {
        holder: me.to_owned(),
        lease_duration: Some(timing.lease_duration),
        acquire_time: Some(acquired.unwrap_or(now.wall)),
        renew_time: Some(now.wall),
        transitions,
    };
    let seen = match seen {
        Seen::Missing { last: Some(last), since, leading: false } if now.mono < since + timing.lease_duration => {
            return Decision::Follow { holder: last.record.holder.clone(), expires: since + timing.lease_duration };
        }
        Seen::Missing { .. } => return Decision::Create(mine(None, 0)),
        Seen::Lease(seen) => seen,
    };
    let record = &seen.record;
    let take = |why: Why| Decision::Update { record: mine(None, record.transitions.saturating_add(1)), why };
    if record.holder == me {
        return Decision::Update { record: mine(record.acquire_time, record.transitions), why: Why::Ours };
    }
    if record.holder.is_empty() {
        return take(Why::Released);
    }
    let horizon = now.wall + timing.lease_duration + CLOCK_SKEW_ALLOWANCE;
    if let Some(renew_time) = record.renew_time.filter(|&t| t > horizon) {
        return take(Why::Implausible { holder: record.holder.clone(), renew_time });
    }
    let expires = seen.at + timing.lasts(record);
    if now.mono >= expires {
        return take(Why::Expired { holder: record.holder.clone() });
    }
    Decision::Follow { holder: record.holder.clone(), expires }
}

#[cfg(test)]
mod tests;
