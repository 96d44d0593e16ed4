//! Kubernetes Events for one `reconcile`: what it did to a workload's targets, on the workload, so that
//! `kubectl describe deployment` shows it next to the rollout that caused it.
//!
//! [`drafts`] is a pure function of the run's [`Outcome`]: one draft per (object, reason), in rule order, at most
//! `max` of them. [`post`] creates them through `events.k8s.io/v1` after the report is written; watch mode's
//! [`Series`] reuses one Event per (object, reason) across passes. A post that fails or takes longer than
//! [`POST_TIMEOUT`] (all of them: [`TOTAL_TIMEOUT`]) is dropped, logged once, counted (`clbsync_events_total`),
//! and never changes the exit code.
//!
//! The object: a `workload:` (or `deployment:`) backend's workload, a `service:` backend's Service. A `selector:` backend has no workload, so its Event goes on a
//! pod whose target changed: the first by name among the rule's rows of that reason. A selector rule with no such
//! pod (a blocked or skipped rule, or removals of pods that are gone) has no object and gets no Event.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};

use crate::apply::RowStatus;
use crate::model::GATE_CONDITION;
use crate::plan::{Action, RulePlan, Status, Waits};
use crate::reconcile::Outcome;
use crate::rules::{PodSource, Rules, WorkloadKind};

/// `reportingController` of every Event.
pub const CONTROLLER: &str = "clbsync.dev/clbsync";
/// `--max-events` unless told otherwise.
pub const DEFAULT_MAX: usize = 100;
/// How long one post (with the read of its object's uid) may take.
pub const POST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long all posts of a run may take together.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Posts in flight at once.
const CONCURRENCY: usize = 8;
/// The API server refuses a longer note (bytes).
const NOTE_LIMIT: usize = 1024;
/// Targets named in a note per place; the rest are counted.
const SHOWN: usize = 5;

/// Why an Event is recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    TargetsRegistered,
    TargetsDrained,
    TargetsDeregistered,
    WeightsChanged,
    RuleBlocked,
    RuleSkipped,
    ChangeFailed,
    /// Gated pods keep `clbsync.dev/registered` True though no rule that selects them can bind them.
    GateKept,
    /// Drains or removals held back (make before break) longer than `--warn-waiting-after`.
    TargetsWaiting,
    /// A split rule's backend has no ready pods, or its achieved split is past the tolerance.
    SplitDegraded,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TargetsRegistered => "TargetsRegistered",
            Reason::TargetsDrained => "TargetsDrained",
            Reason::TargetsDeregistered => "TargetsDeregistered",
            Reason::WeightsChanged => "WeightsChanged",
            Reason::RuleBlocked => "RuleBlocked",
            Reason::RuleSkipped => "RuleSkipped",
            Reason::ChangeFailed => "ChangeFailed",
            Reason::GateKept => "ReadinessGateKept",
            Reason::TargetsWaiting => "TargetsWaiting",
            Reason::SplitDegraded => "SplitDegraded",
        }
    }

    /// `Normal` or `Warning`.
    pub fn kind(self) -> &'static str {
        match self {
            Reason::RuleBlocked
            | Reason::RuleSkipped
            | Reason::ChangeFailed
            | Reason::GateKept
            | Reason::TargetsWaiting
            | Reason::SplitDegraded => "Warning",
            _ => "Normal",
        }
    }

    /// The Event's `action`: what clbsync did (or tried to do).
    pub fn action(self) -> &'static str {
        match self {
            Reason::TargetsRegistered => "RegisterTargets",
            Reason::TargetsDrained => "DrainTargets",
            Reason::TargetsDeregistered => "DeregisterTargets",
            Reason::WeightsChanged => "ChangeWeights",
            Reason::RuleBlocked
            | Reason::RuleSkipped
            | Reason::ChangeFailed
            | Reason::GateKept
            | Reason::TargetsWaiting
            | Reason::SplitDegraded => "Reconcile",
        }
    }

    /// The word the note starts each place with, as in the report (`blocked: <place>: <reason>`).
    fn word(self) -> &'static str {
        match self {
            Reason::TargetsRegistered => "registered",
            Reason::TargetsDrained => "drained",
            Reason::TargetsDeregistered => "deregistered",
            Reason::WeightsChanged => "reweighted",
            Reason::RuleBlocked => "blocked",
            Reason::RuleSkipped => "skipped",
            Reason::ChangeFailed => "failed",
            Reason::GateKept => "readiness gate kept",
            Reason::TargetsWaiting => "waiting",
            Reason::SplitDegraded => "split",
        }
    }
}

/// What an Event is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Object {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
}

/// The kind of an Event's [`Object`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjectKind {
    Workload(WorkloadKind),
    Service,
    Pod,
}

impl Object {
    fn api_version(&self) -> &str {
        match &self.kind {
            ObjectKind::Workload(k) => k.api_version(),
            ObjectKind::Service | ObjectKind::Pod => "v1",
        }
    }

    /// `Deployment`, `Rollout`, `Service` or `Pod`.
    pub fn kind(&self) -> &str {
        match &self.kind {
            ObjectKind::Workload(k) => k.kind(),
            ObjectKind::Service => "Service",
            ObjectKind::Pod => "Pod",
        }
    }
}

/// One Event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    pub object: Object,
    pub reason: Reason,
    /// At most 1 KiB.
    pub note: String,
}

/// One line of a note: the place and what happened there, and the targets it happened to.
struct Entry {
    head: String,
    targets: Vec<String>,
}

/// The Events of a `reconcile`: one per (object, reason) in the order they first occur, at most `max`. `rules`
/// are the rules the outcome's plan was made from (`outcome.plan.rules[i]` is `rules.rules[i]`). Also returns how
/// many were left out by `max`.
pub fn drafts(rules: &Rules, outcome: &Outcome, max: usize) -> (Vec<Draft>, usize) {
    let mut groups: Vec<((Object, Reason), Vec<Entry>)> = Vec::new();
    let no_statuses = Vec::new();
    for (i, (rule, plan)) in rules.rules.iter().zip(&outcome.plan.rules).enumerate() {
        let statuses = outcome.applied.as_ref().and_then(|a| a.rows.get(i)).unwrap_or(&no_statuses);
        for (reason, entry, pods) in rule_entries(plan, statuses, outcome.waits) {
            let (kind, object) = match &rule.backend.pods.source {
                PodSource::Workload(w) => (ObjectKind::Workload(w.kind.clone()), Some(w.name.clone())),
                PodSource::Service(s) => (ObjectKind::Service, Some(s.name.clone())),
                PodSource::Selector(_) => (ObjectKind::Pod, pods.into_iter().next()),
            };
            let Some(name) = object else { continue };
            let key = (Object { kind, namespace: plan.namespace.clone(), name }, reason);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, entries)) => entries.push(entry),
                None => groups.push((key, vec![entry])),
            }
        }
    }
    let left_out = groups.len().saturating_sub(max);
    let drafts = groups
        .into_iter()
        .take(max)
        .map(|((object, reason), entries)| Draft { object, reason, note: note(&entries) })
        .collect();
    (drafts, left_out)
}

/// A rule's entries, each with the pods (sorted) whose targets it names.
fn rule_entries(plan: &RulePlan, statuses: &[RowStatus], waits: Waits) -> Vec<(Reason, Entry, BTreeSet<String>)> {
    let place = &plan.place;
    let mut out = Vec::new();
    let overdue: Vec<&crate::plan::Row> = plan.overdue(waits).collect();
    if !overdue.is_empty() {
        let longest = overdue.iter().filter_map(|r| r.waiting_since).min().map_or(0, |s| waits.now - s);
        let head = format!(
            "{}: {place}: drain or removal held for {} min (more than --warn-waiting-after {} min) because the \
             rule's other targets do not take its traffic: check their CLB health checks",
            Reason::TargetsWaiting.word(),
            longest / 60,
            waits.after.as_secs() / 60
        );
        let targets = overdue.iter().map(|r| r.target.to_string()).collect();
        let pods = overdue.iter().filter_map(|r| r.pod.clone()).collect();
        out.push((Reason::TargetsWaiting, Entry { head, targets }, pods));
    }
    if !plan.gate_kept.is_empty() {
        let shown = plan.gate_kept.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
        let head = format!(
            "{}: {place}: {} pod(s) [{shown}] stay Ready ({GATE_CONDITION} kept True) though no rule that selects \
             them can make them targets; fix the rules file",
            Reason::GateKept.word(),
            plan.gate_kept.len()
        );
        let pods: BTreeSet<String> = plan.gate_kept.iter().cloned().collect();
        out.push((Reason::GateKept, Entry { head, targets: Vec::new() }, pods));
    }
    match &plan.status {
        Status::Blocked { reason } => {
            let entry = Entry { head: format!("blocked: {place}: {reason}"), targets: Vec::new() };
            out.push((Reason::RuleBlocked, entry, BTreeSet::new()));
            return out;
        }
        Status::Skipped { reason } => {
            let entry = Entry { head: format!("skipped: {place}: {reason}"), targets: Vec::new() };
            out.push((Reason::RuleSkipped, entry, BTreeSet::new()));
            return out;
        }
        Status::Ready => {}
    }
    // The plan's `split degraded: …` and `split off: …` warnings, each with its place, as the report has them.
    for w in plan.warnings.iter().filter(|w| w.starts_with("split ")) {
        let (what, rest) = w.split_once(": ").unwrap_or((w.as_str(), ""));
        let pods = plan.rows.iter().filter_map(|r| r.pod.clone()).collect();
        out.push((
            Reason::SplitDegraded,
            Entry { head: format!("{what}: {place}: {rest}"), targets: Vec::new() },
            pods,
        ));
    }
    // (reason, head) → targets and pods, in the order they first occur.
    let mut found: Vec<(Reason, String, Vec<String>, BTreeSet<String>)> = Vec::new();
    for (row, status) in plan.rows.iter().zip(statuses) {
        let (reason, head) = match (status, row.action) {
            (RowStatus::Applied, Action::Register) => (Reason::TargetsRegistered, None),
            (RowStatus::Applied, Action::Drain) => (Reason::TargetsDrained, None),
            (RowStatus::Applied, Action::Deregister) => (Reason::TargetsDeregistered, None),
            (RowStatus::Applied, Action::Reweight) => (Reason::WeightsChanged, None),
            (RowStatus::Failed(f), _) => (Reason::ChangeFailed, Some(format!("failed: {place}: {f}"))),
            (RowStatus::NotAttempted(why), _) => (Reason::ChangeFailed, Some(format!("not attempted: {place}: {why}"))),
            _ => continue,
        };
        let head = head.unwrap_or_else(|| format!("{}: {place}", reason.word()));
        let target = match (row.action, row.current_weight, row.weight) {
            (Action::Reweight, Some(from), Some(to)) => format!("{} {from} → {to}", row.target),
            _ => row.target.to_string(),
        };
        let i = match found.iter().position(|(r, h, ..)| *r == reason && *h == head) {
            Some(i) => i,
            None => {
                found.push((reason, head, Vec::new(), BTreeSet::new()));
                found.len() - 1
            }
        };
        found[i].2.push(target);
        found[i].3.extend(row.pod.clone());
    }
    out.extend(found.into_iter().map(|(reason, head, targets, pods)| (reason, Entry { head, targets }, pods)));
    out
}

/// `registered: lb-1 TCP:80: 2 target(s) [10.0.0.1:80, 10.0.0.2:80]; …`, cut to 1 KiB.
fn note(entries: &[Entry]) -> String {
    let parts: Vec<String> = entries
        .iter()
        .map(|e| {
            if e.targets.is_empty() {
                return e.head.clone();
            }
            let shown = e.targets.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
            let more = e.targets.len().saturating_sub(SHOWN);
            let more = if more > 0 { format!(" and {more} more") } else { String::new() };
            format!("{}: {} target(s) [{shown}{more}]", e.head, e.targets.len())
        })
        .collect();
    truncate(parts.join("; "), NOTE_LIMIT)
}

/// At most `limit` bytes, cut on a character boundary and ending in `…` when cut.
fn truncate(mut s: String, limit: usize) -> String {
    if s.len() <= limit {
        return s;
    }
    let mut end = limit - '…'.len_utf8();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push('…');
    s
}

/// `reportingInstance`: the pod's name (`HOSTNAME` in a pod), else the host's name.
pub fn instance() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "clbsync".into())
}

/// How many Events were recorded and how many could not be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Posted {
    pub recorded: u64,
    pub failed: u64,
}

/// Creates the drafts' Events, [`CONCURRENCY`] at a time, each within [`POST_TIMEOUT`]. Failures are logged once
/// (the first, with how many failed), counted in the result and otherwise ignored.
pub async fn post(client: &Client, drafts: Vec<Draft>, instance: &str) -> Posted {
    let names: Vec<String> = drafts.iter().map(|d| event_name(&d.object, d.reason)).collect();
    let (results, first) = send_all(&drafts, |i, draft| create(client, draft, instance, names[i].clone())).await;
    let posted = count(&results);
    if let Some(first) = first {
        warn(&first, posted);
    }
    posted
}

/// Watch mode's Events: the first pass that finds an (object, reason) creates its Event; each later one patches
/// that Event's `series` (count and last time seen) and note, as client-go's event recorder does, so a rule
/// that changes on every rollout keeps one Event, not one per pass. An Event the API server no longer has (it
/// expires after an hour by default) is created again. The first failure is logged; later ones only counted.
#[derive(Debug, Default)]
pub struct Series {
    /// (object, reason) → the Event's name and its series count so far.
    known: HashMap<(Object, Reason), (String, i32)>,
    warned: bool,
}

impl Series {
    pub async fn record(&mut self, client: &Client, drafts: Vec<Draft>, instance: &str) -> Posted {
        let plans: Vec<(String, Option<i32>)> = drafts
            .iter()
            .map(|d| match self.known.get(&(d.object.clone(), d.reason)) {
                Some((name, count)) => (name.clone(), Some(count + 1)),
                None => (event_name(&d.object, d.reason), None),
            })
            .collect();
        let (results, first) = send_all(&drafts, |i, draft| {
            let (name, count) = plans[i].clone();
            async move {
                match count {
                    Some(count) => match bump(client, draft, &name, count).await {
                        Ok(()) => Ok((name, count)),
                        Err(kube::Error::Api(s)) if s.code == 404 => {
                            let name = event_name(&draft.object, draft.reason);
                            create(client, draft, instance, name).await.map(|name| (name, 1))
                        }
                        Err(e) => Err(e),
                    },
                    None => create(client, draft, instance, name).await.map(|name| (name, 1)),
                }
            }
        })
        .await;
        let posted = count(&results);
        for (draft, result) in drafts.into_iter().zip(results) {
            if let Some(known) = result {
                self.known.insert((draft.object, draft.reason), known);
            }
        }
        match first {
            Some(first) if !self.warned => {
                self.warned = true;
                warn(&first, posted);
            }
            Some(first) => tracing::debug!(failed = posted.failed, "cannot record Kubernetes Events (first: {first})"),
            None => {}
        }
        posted
    }
}

fn count<T>(results: &[Option<T>]) -> Posted {
    let recorded = results.iter().filter(|r| r.is_some()).count() as u64;
    Posted { recorded, failed: results.len() as u64 - recorded }
}

fn warn(first: &str, posted: Posted) {
    tracing::warn!(
        failed = posted.failed,
        events = posted.recorded + posted.failed,
        "cannot record Kubernetes Events (first: {first}); the run is not affected: check that the role grants \
         create and patch on events.k8s.io events"
    );
}

/// Runs `send` for every draft, [`CONCURRENCY`] at a time, each within [`POST_TIMEOUT`] and all within
/// [`TOTAL_TIMEOUT`]. Returns each draft's result (`None`: not recorded) and the first failure, described.
async fn send_all<'a, T, F, Fut>(drafts: &'a [Draft], send: F) -> (Vec<Option<T>>, Option<String>)
where
    F: Fn(usize, &'a Draft) -> Fut,
    Fut: Future<Output = Result<T, kube::Error>> + 'a,
{
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..drafts.len()).map(|_| None).collect());
    let results_ref = &results;
    let send = &send;
    let failures = stream::iter(drafts.iter().enumerate())
        .map(|(i, draft)| async move {
            match tokio::time::timeout(POST_TIMEOUT, send(i, draft)).await {
                Ok(Ok(value)) => {
                    results_ref.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(value);
                    None
                }
                Ok(Err(e)) => Some(failure(&draft.object, &e)),
                Err(_) => Some(format!("{}: no answer within {}s", describe(&draft.object), POST_TIMEOUT.as_secs())),
            }
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(std::future::ready)
        .collect::<Vec<String>>();
    let first = match tokio::time::timeout(TOTAL_TIMEOUT, failures).await {
        Ok(failures) => failures.into_iter().next(),
        Err(_) => Some(format!("not all recorded within {}s", TOTAL_TIMEOUT.as_secs())),
    };
    (results.into_inner().unwrap_or_else(|p| p.into_inner()), first)
}

/// `Deployment ns/name`.
fn describe(o: &Object) -> String {
    format!("{} {}/{}", o.kind(), o.namespace, o.name)
}

/// One failed post, for the log: the object and the API server's message and code.
fn failure(o: &Object, e: &kube::Error) -> String {
    let e = match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    };
    format!("{}: {e}", describe(o))
}

/// Creates the draft's Event under `name`; returns the name.
async fn create(client: &Client, draft: &Draft, instance: &str, name: String) -> Result<String, kube::Error> {
    let o = &draft.object;
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(o.namespace.clone()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        reporting_controller: Some(CONTROLLER.into()),
        reporting_instance: Some(instance.into()),
        action: Some(draft.reason.action().into()),
        reason: Some(draft.reason.as_str().into()),
        type_: Some(draft.reason.kind().into()),
        note: Some(draft.note.clone()),
        regarding: Some(ObjectReference {
            api_version: Some(o.api_version().into()),
            kind: Some(o.kind().into()),
            namespace: Some(o.namespace.clone()),
            name: Some(o.name.clone()),
            uid: uid(client, o).await,
            ..ObjectReference::default()
        }),
        ..Event::default()
    };
    Api::<Event>::namespaced(client.clone(), &o.namespace).create(&PostParams::default(), &event).await?;
    Ok(name)
}

/// Marks the Event `name` as seen again: its series count becomes `count`, its note the draft's.
async fn bump(client: &Client, draft: &Draft, name: &str, count: i32) -> Result<(), kube::Error> {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let patch = serde_json::json!({
        "series": { "count": count, "lastObservedTime": now },
        "note": draft.note,
    });
    let api = Api::<Event>::namespaced(client.clone(), &draft.object.namespace);
    api.patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}

/// `api.targetsregistered.1876a2b3c4d5e6f7`: unique per object, reason and run (the time in nanoseconds, as
/// client-go names its Events); the object's name is cut so that the whole stays within 253 characters.
fn event_name(o: &Object, reason: Reason) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let base = o.name.get(..200).unwrap_or(&o.name).trim_end_matches(['.', '-']);
    format!("{base}.{}.{nanos:x}", reason.as_str().to_lowercase())
}

/// The object's uid, which `kubectl describe` matches Events by; read with the verbs a run already has (get of a
/// built-in workload, of a scalable kind's `scale` (its metadata is the object's), of a Service, list pods). `None`
/// when it cannot be read: the Event is still recorded.
async fn uid(client: &Client, o: &Object) -> Option<String> {
    let meta = match &o.kind {
        ObjectKind::Service => {
            Api::<Service>::namespaced(client.clone(), &o.namespace).get_metadata(&o.name).await.ok()?.metadata
        }
        ObjectKind::Workload(kind) => {
            let resource = match kind.built_in_resource() {
                Some(plural) => {
                    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", kind.kind()), plural)
                }
                None => {
                    let (group, version) = kind.api_version().split_once('/')?;
                    let gvk = GroupVersionKind::gvk(group, version, kind.kind());
                    kube::discovery::pinned_kind(client, &gvk).await.ok()?.0
                }
            };
            let api = Api::<DynamicObject>::namespaced_with(client.clone(), &o.namespace, &resource);
            match kind.built_in_resource() {
                Some(_) => api.get_metadata(&o.name).await.ok()?.metadata,
                None => api.get_scale(&o.name).await.ok()?.metadata,
            }
        }
        ObjectKind::Pod => {
            let params = ListParams::default().fields(&format!("metadata.name={}", o.name));
            let list = Api::<Pod>::namespaced(client.clone(), &o.namespace).list_metadata(&params).await.ok()?;
            list.items.into_iter().next()?.metadata
        }
    };
    meta.uid
}

#[cfg(test)]
mod tests;
