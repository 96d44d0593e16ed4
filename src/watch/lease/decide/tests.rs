//! The election decision: a table of cases, then properties, then two replicas played against each other.

use std::time::{Duration, Instant, SystemTime};

use proptest::prelude::*;

use super::*;

const ME: &str = "me";
const OTHER: &str = "other";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A fixed wall clock and a monotonic base, so cases read as offsets.
struct Clock {
    base: Instant,
    wall: SystemTime,
}

impl Clock {
    fn new() -> Clock {
        Clock { base: Instant::now(), wall: SystemTime::UNIX_EPOCH + secs(1_700_000_000) }
    }
    /// `t` after the base, on both clocks.
    fn at(&self, t: Duration) -> Now {
        Now { mono: self.base + t, wall: self.wall + t }
    }
}

fn held_by(holder: &str, renew: SystemTime) -> Record {
    Record {
        holder: holder.into(),
        lease_duration: Some(secs(15)),
        acquire_time: Some(renew - secs(60)),
        renew_time: Some(renew),
        transitions: 3,
    }
}

fn seen(record: Record, at: Instant) -> Observed {
    Observed { version: "7".into(), record, at }
}

fn decide_at(seen: Seen<'_>, now: Now) -> Decision {
    decide(&Timing::DEFAULT, ME, seen, now)
}

/// Follow `holder` until `until` after the base.
fn follow(c: &Clock, holder: &str, until: Duration) -> Decision {
    Decision::Follow { holder: holder.into(), expires: c.base + until }
}

/// Our record as written at `now`: ours, our lease duration, renewed now.
fn mine(now: Now, acquired: SystemTime, transitions: i32) -> Record {
    Record {
        holder: ME.into(),
        lease_duration: Some(secs(15)),
        acquire_time: Some(acquired),
        renew_time: Some(now.wall),
        transitions,
    }
}

#[test]
fn a_missing_lease_is_created_by_a_new_replica_or_the_leader_and_waited_for_by_the_others() {
    let c = Clock::new();
    let now = c.at(secs(100));
    let created = Decision::Create(mine(now, now.wall, 0));
    let missing = |last, since: Duration, leading| Seen::Missing { last, since: c.base + since, leading };
    assert_eq!(decide_at(missing(None, secs(100), false), now), created, "never saw one: a new installation");

    let theirs = seen(held_by(OTHER, c.wall + secs(90)), c.base + secs(90));
    assert_eq!(
        decide_at(missing(Some(&theirs), secs(95), false), now),
        follow(&c, OTHER, secs(110)),
        "deleted under its holder: wait a lease duration from when it was found missing"
    );
    assert_eq!(decide_at(missing(Some(&theirs), secs(85), false), now), created, "waited long enough");
    assert_eq!(decide_at(missing(Some(&theirs), secs(95), true), now), created, "our own Lease, deleted under us");

    let ours = seen(held_by(ME, c.wall + secs(90)), c.base + secs(90));
    assert_eq!(
        decide_at(missing(Some(&ours), secs(99), false), now),
        follow(&c, ME, secs(114)),
        "it named us, but our term is over: someone may have taken it over since"
    );
    let released = seen(held_by("", c.wall), c.base);
    assert_eq!(decide_at(missing(Some(&released), secs(99), false), now), follow(&c, "", secs(114)));
}

#[test]
fn our_own_record_is_renewed_keeping_its_acquire_time_and_transitions() {
    let c = Clock::new();
    let now = c.at(secs(100));
    let ours = seen(held_by(ME, c.wall + secs(98)), c.base + secs(98));
    let acquired = ours.record.acquire_time.expect("set");
    assert_eq!(decide_at(Seen::Lease(&ours), now), Decision::Update { record: mine(now, acquired, 3), why: Why::Ours });
    // Even long after our last renewal (a SIGSTOP): the record is still ours, and writing it proves it.
    let later = c.at(secs(400));
    assert!(matches!(decide_at(Seen::Lease(&ours), later), Decision::Update { why: Why::Ours, .. }));
}

#[test]
fn a_released_record_is_taken_at_once() {
    let c = Clock::new();
    let now = c.at(secs(100));
    let released = seen(held_by(OTHER, c.wall + secs(99)).released(c.wall + secs(99)), c.base + secs(99));
    assert_eq!(released.record.holder, "");
    assert_eq!(released.record.lease_duration, Some(secs(1)));
    assert_eq!(
        decide_at(Seen::Lease(&released), now),
        Decision::Update { record: mine(now, now.wall, 4), why: Why::Released }
    );
}

#[test]
fn another_holder_is_followed_for_a_lease_duration_from_when_we_saw_its_record_change() {
    let c = Clock::new();
    let theirs = seen(held_by(OTHER, c.wall + secs(100)), c.base + secs(100));
    assert_eq!(decide_at(Seen::Lease(&theirs), c.at(secs(100))), follow(&c, OTHER, secs(115)));
    assert_eq!(decide_at(Seen::Lease(&theirs), c.at(secs(100) + ms(14_999))), follow(&c, OTHER, secs(115)));
    assert_eq!(
        decide_at(Seen::Lease(&theirs), c.at(secs(115))),
        Decision::Update {
            record: mine(c.at(secs(115)), c.wall + secs(115), 4),
            why: Why::Expired { holder: OTHER.into() }
        }
    );
}

#[test]
fn the_holders_clock_decides_nothing_within_the_skew_allowance() {
    let c = Clock::new();
    let now = c.at(secs(100));
    // Item 4: a leader with a slow clock (renewTime an hour behind ours), renewed just now, is not deposed.
    let slow = seen(held_by(OTHER, c.wall + secs(100) - secs(3600)), c.base + secs(100));
    assert_eq!(decide_at(Seen::Lease(&slow), now), follow(&c, OTHER, secs(115)));
    // A fast clock up to lease duration + allowance ahead is plausible too.
    let fast = seen(held_by(OTHER, now.wall + secs(15) + CLOCK_SKEW_ALLOWANCE), c.base + secs(100));
    assert_eq!(decide_at(Seen::Lease(&fast), now), follow(&c, OTHER, secs(115)));
    // A record unchanged for a lease duration expires whatever its renewTime says.
    let stale = seen(held_by(OTHER, now.wall + secs(40)), c.base + secs(80));
    assert!(matches!(decide_at(Seen::Lease(&stale), now), Decision::Update { why: Why::Expired { .. }, .. }));
}

#[test]
fn an_implausible_renew_time_is_taken_over_at_once_naming_the_holder() {
    let c = Clock::new();
    let now = c.at(secs(100));
    // Item 3: planted with a renewTime a year ahead, seen for the first time just now.
    let year = now.wall + secs(365 * 86_400);
    let planted = seen(held_by("intruder", year), now.mono);
    assert_eq!(
        decide_at(Seen::Lease(&planted), now),
        Decision::Update {
            record: mine(now, now.wall, 4),
            why: Why::Implausible { holder: "intruder".into(), renew_time: year }
        }
    );
    let just_past = now.wall + secs(15) + CLOCK_SKEW_ALLOWANCE + ms(1);
    let ahead = seen(held_by(OTHER, just_past), now.mono);
    assert!(matches!(decide_at(Seen::Lease(&ahead), now), Decision::Update { why: Why::Implausible { .. }, .. }));
}

#[test]
fn a_record_lasts_its_own_duration_at_most_ours() {
    let c = Clock::new();
    let with = |d: Option<Duration>| {
        let mut r = held_by(OTHER, c.wall + secs(100));
        r.lease_duration = d;
        seen(r, c.base + secs(100))
    };
    let huge = with(Some(secs(1_000_000_000)));
    assert_eq!(decide_at(Seen::Lease(&huge), c.at(secs(101))), follow(&c, OTHER, secs(115)), "capped at ours");
    assert!(matches!(decide_at(Seen::Lease(&huge), c.at(secs(115))), Decision::Update { .. }));
    let short = with(Some(secs(5)));
    assert_eq!(decide_at(Seen::Lease(&short), c.at(secs(101))), follow(&c, OTHER, secs(105)), "shorter: its own");
    let none = with(None);
    assert_eq!(decide_at(Seen::Lease(&none), c.at(secs(101))), follow(&c, OTHER, secs(115)), "missing: ours");
}

#[test]
fn the_time_a_record_was_seen_stays_while_its_version_does() {
    let c = Clock::new();
    let r = held_by(OTHER, c.wall);
    let first = observe(None, "7", &r, c.base + secs(1));
    assert_eq!(first.at, c.base + secs(1));
    let again = observe(Some(&first), "7", &r, c.base + secs(9));
    assert_eq!(again.at, c.base + secs(1), "unchanged: still timed from when it was first seen");
    let renewed = observe(Some(&again), "8", &r, c.base + secs(10));
    assert_eq!(renewed.at, c.base + secs(10), "a new version (a renewal) restarts the clock, whatever the record says");
}

#[test]
fn timing_is_validated_like_kube_controller_managers() {
    let t = |lease, renew, retry| Timing { lease_duration: lease, renew_deadline: renew, retry_period: retry };
    assert_eq!(Timing::DEFAULT.validate(), Ok(()));
    assert_eq!(t(secs(3), ms(2000), ms(500)).validate(), Ok(()));
    for (bad, says) in [
        (
            t(secs(15), secs(10), secs(10)),
            "retry-period (10000ms) must be shorter than --leader-election-renew-deadline",
        ),
        (
            t(secs(15), secs(15), secs(2)),
            "renew-deadline (15000ms) must be shorter than --leader-election-lease-duration",
        ),
        (t(secs(15), secs(20), secs(2)), "must be shorter than --leader-election-lease-duration (15000ms)"),
        (t(ms(2500), secs(2), ms(500)), "must be whole seconds"),
        (t(secs(15), secs(10), Duration::ZERO), "retry-period must be longer than 0s"),
    ] {
        let err = bad.validate().expect_err("invalid");
        assert!(err.contains(says), "{bad:?}: {err}");
    }
    let c = Clock::new();
    assert_eq!(Timing::DEFAULT.write_deadline(c.base), c.base + secs(10));
}

#[test]
fn a_record_goes_into_a_lease_spec_and_back() {
    let c = Clock::new();
    let r = held_by(OTHER, c.wall + ms(1_234));
    let spec = r.to_spec();
    assert_eq!(spec.holder_identity.as_deref(), Some(OTHER));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(3));
    assert_eq!(Record::from_spec(Some(&spec)), r);
    let empty = Record::from_spec(None);
    assert_eq!((empty.holder.as_str(), empty.lease_duration, empty.transitions), ("", None, 0));
    let negative = LeaseSpec { lease_duration_seconds: Some(-5), ..LeaseSpec::default() };
    assert_eq!(Record::from_spec(Some(&negative)).lease_duration, None);
}

fn holder() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(ME), Just(OTHER), Just("")]
}

proptest! {
    /// Whatever was read: we follow exactly another holder whose plausible record changed less than a lease
    /// duration ago, and anything we write names us, with our duration, renewed now.
    #[test]
    fn follow_only_a_live_other_holder_and_write_only_our_own_record(
        holder in holder(),
        age_ms in 0u64..40_000,
        // renewTime from an hour behind to a minute past the plausible horizon.
        skew_ms in -3_600_000i64..75_000,
        duration in prop::option::of(1u64..100),
        transitions in 0i32..1000,
    ) {
        let c = Clock::new();
        let now = c.at(secs(3_700));
        let renew = if skew_ms >= 0 { now.wall + ms(skew_ms.unsigned_abs()) } else { now.wall - ms(skew_ms.unsigned_abs()) };
        let record = Record {
            holder: holder.into(),
            lease_duration: duration.map(secs),
            acquire_time: Some(renew),
            renew_time: Some(renew),
            transitions,
        };
        let o = seen(record, now.mono - ms(age_ms));
        let plausible = renew <= now.wall + secs(15) + CLOCK_SKEW_ALLOWANCE;
        let lasts = duration.map_or(secs(15), |d| secs(d).min(secs(15)));
        let live = holder == OTHER && plausible && ms(age_ms) < lasts;
        match decide_at(Seen::Lease(&o), now) {
            Decision::Follow { holder: h, expires } => {
                prop_assert!(live);
                prop_assert_eq!(h, OTHER);
                prop_assert_eq!(expires, o.at + lasts);
            }
            Decision::Update { record, why } => {
                prop_assert!(!live, "took over a live holder: {why:?}");
                prop_assert_eq!(record.holder.as_str(), ME);
                prop_assert_eq!(record.lease_duration, Some(secs(15)));
                prop_assert_eq!(record.renew_time, Some(now.wall));
                let expected = if holder == ME { transitions } else { transitions + 1 };
                prop_assert_eq!(record.transitions, expected);
            }
            Decision::Create(_) => prop_assert!(false, "a Lease was read"),
        }
    }

    /// A plausible renewTime does not change the decision: only what we saw, and when, does.
    #[test]
    fn a_plausible_renew_time_changes_nothing(age_ms in 0u64..40_000, skew_ms in -3_600_000i64..45_000) {
        let c = Clock::new();
        let now = c.at(secs(3_700));
        let renew = if skew_ms >= 0 { now.wall + ms(skew_ms.unsigned_abs()) } else { now.wall - ms(skew_ms.unsigned_abs()) };
        let with = |renew_time| {
            let record = Record { renew_time, ..held_by(OTHER, now.wall) };
            decide_at(Seen::Lease(&seen(record, now.mono - ms(age_ms))), now)
        };
        let strip = |d: Decision| match d {
            Decision::Update { why, .. } => format!("{why:?}"),
            other => format!("{other:?}"),
        };
        prop_assert_eq!(strip(with(Some(renew))), strip(with(None)));
    }
}

/// One replica in the simulation below.
#[derive(Default)]
struct Replica {
    last: Option<Observed>,
    missing_since: Option<Instant>,
    /// The decision of its last read and the version it read (`None`: there was no Lease).
    pending: Option<(Option<String>, Decision)>,
    /// Until when it may write, and whether its term was closed before that.
    fence: Option<(Instant, bool)>,
    /// Its wall clock's offset from true time, in ms (either way).
    skew_ms: i64,
}

impl Replica {
    fn leading(&self, t: Instant) -> bool {
        self.fence.is_some_and(|(deadline, closed)| !closed && t < deadline)
    }
    fn close(&mut self) {
        if let Some(f) = &mut self.fence {
            f.1 = true;
        }
    }
}

/// What happens next in the simulation, after `wait` ms.
#[derive(Clone, Debug)]
enum Step {
    /// A replica reads the Lease (and decides).
    Read(usize),
    /// A replica writes what it decided; the request was sent `latency` ms before it landed.
    Write(usize, u64),
    /// A leader stops: closes its term, then releases the Lease if it names it.
    Release(usize),
    /// Someone deletes the Lease.
    Delete,
}

fn step() -> impl Strategy<Value = (u64, Step)> {
    let s = prop_oneof![
        8 => (0usize..2).prop_map(Step::Read),
        8 => ((0usize..2), prop_oneof![3 => 0u64..100, 1 => 0u64..3_000]).prop_map(|(r, l)| Step::Write(r, l)),
        1 => (0usize..2).prop_map(Step::Release),
        1 => Just(Step::Delete),
    ];
    // Short waits (requests, retries) and long ones (a partition, a SIGSTOP), around the durations too.
    (prop_oneof![0u64..200, 0u64..2_000, 8_000u64..16_000], s)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    /// Two replicas with skewed wall clocks, arbitrary delays, lost races, releases and a deletion: whenever one
    /// starts a term, the other's write deadline has passed or its term was closed — never two writers.
    #[test]
    fn two_replicas_never_both_may_write(steps in prop::collection::vec(step(), 1..120), skew in -20_000i64..20_000) {
        let timing = Timing::DEFAULT;
        let names = ["a", "b"];
        let base = Instant::now();
        let wall0 = SystemTime::UNIX_EPOCH + secs(1_700_000_000);
        let mut t = base;
        let mut lease: Option<(u64, Record)> = None;
        let mut version = 0u64;
        let mut deleted = false;
        let mut replicas = [Replica::default(), Replica { skew_ms: skew, ..Replica::default() }];
        for (wait, step) in steps {
            t += ms(wait);
            let wall = |r: &Replica| {
                let w = wall0 + (t - base);
                if r.skew_ms >= 0 { w + ms(r.skew_ms.unsigned_abs()) } else { w - ms(r.skew_ms.unsigned_abs()) }
            };
            match step {
                Step::Read(i) => {
                    let r = &mut replicas[i];
                    let now = Now { mono: t, wall: wall(r) };
                    let decision = match &lease {
                        Some((v, record)) => {
                            r.missing_since = None;
                            r.last = Some(observe(r.last.as_ref(), &v.to_string(), record, t));
                            decide(&timing, names[i], Seen::Lease(r.last.as_ref().expect("set")), now)
                        }
                        None => {
                            let since = *r.missing_since.get_or_insert(t);
                            let seen = Seen::Missing { last: r.last.as_ref(), since, leading: r.leading(t) };
                            decide(&timing, names[i], seen, now)
                        }
                    };
                    if let Decision::Follow { holder, .. } = &decision
                        && holder != names[i]
                    {
                        r.close();
                    }
                    let read = lease.as_ref().map(|(v, _)| v.to_string());
                    r.pending = (!matches!(decision, Decision::Follow { .. })).then_some((read, decision));
                }
                Step::Write(i, latency) => {
                    let Some((read, decision)) = replicas[i].pending.take() else { continue };
                    let current = lease.as_ref().map(|(v, _)| v.to_string());
                    let record = match decision {
                        Decision::Create(record) | Decision::Update { record, .. } => record,
                        Decision::Follow { .. } => unreachable!("never pending"),
                    };
                    if current != read {
                        replicas[i].close(); // 409: another replica wrote first
                        continue;
                    }
                    version += 1;
                    lease = Some((version, record.clone()));
                    let sent = t.checked_sub(ms(latency)).unwrap_or(base).max(base);
                    let deadline = timing.write_deadline(sent);
                    let r = &mut replicas[i];
                    r.last = Some(Observed { version: version.to_string(), record, at: t });
                    r.missing_since = None;
                    if r.leading(t) {
                        let (at, _) = r.fence.as_mut().expect("leading");
                        *at = (*at).max(deadline);
                    } else if deadline > t {
                        r.fence = Some((deadline, false));
                        let other = &replicas[1 - i];
                        prop_assert!(!other.leading(t), "{} started a term while {} may still write", names[i], names[1 - i]);
                    }
                }
                Step::Release(i) => {
                    replicas[i].close();
                    replicas[i].pending = None;
                    if let Some((_, record)) = &lease
                        && record.holder == names[i]
                    {
                        version += 1;
                        let released = record.released(wall(&replicas[i]));
                        lease = Some((version, released));
                    }
                }
                Step::Delete => {
                    // Out of the model: a Lease deleted before every replica saw one (a replica that never saw a
                    // Lease creates one at once, as a new installation must), and deleted again and again (a
                    // replica cannot see a Lease that came and went between two of its reads).
                    if !deleted && replicas.iter().all(|r| r.last.is_some()) {
                        lease = None;
                        deleted = true;
                    }
                }
            }
        }
    }
}
