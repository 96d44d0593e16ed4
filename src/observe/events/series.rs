//! Recording drafts as Kubernetes Events (`events.k8s.io/v1`), with a series per (object, reason).

use std::collections::HashMap;
use std::sync::Mutex;

use futures::stream::{self, StreamExt};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Api, Client};

use super::*;

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

/// The Events of a process's passes: the first pass that finds an (object, reason) creates its Event; each later one patches
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
