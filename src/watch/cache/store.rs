//! One kind's store of watched objects: what a watch's events leave in it, and whether it can be trusted.

use std::collections::BTreeMap;
use std::time::Instant;

use kube::runtime::watcher::Event;

/// One kind's objects in one namespace, and whether they can be trusted.
#[derive(Debug)]
pub(super) struct Store<T> {
    pub(super) objects: BTreeMap<String, T>,
    /// Objects of a list in progress; they replace `objects` when it completes.
    pub(super) listing: Option<BTreeMap<String, T>>,
    /// The label-key generation the list in progress began under: a list that began before the keys grew
    /// completes without syncing the store.
    pub(super) listing_keys: u64,
    pub(super) synced: bool,
    /// Why the watch fails, while it does.
    pub(super) failure: Option<String>,
    /// Whether a list ever completed (readiness).
    pub(super) listed_once: bool,
    /// Since when the watch has been failing (set on the first error, cleared by a complete list).
    pub(super) failing_since: Option<Instant>,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            listing: None,
            listing_keys: 0,
            synced: false,
            failure: None,
            listed_once: false,
            failing_since: None,
        }
    }
}

impl<T> Store<T> {
    /// Whether the watch has listed once or is failing.
    pub(super) fn settled(&self) -> bool {
        self.listed_once || self.failing_since.is_some()
    }

    /// The watch fails (`reason` says why, when known): not synced until it lists again.
    pub(super) fn fail(&mut self, now: Instant, reason: Option<String>) {
        self.synced = false;
        self.failing_since.get_or_insert(now);
        self.failure = reason.or(self.failure.take());
    }
}

impl<T: PartialEq> Store<T> {
    /// Applies one watch event and says what it did; `keys` is the namespace's label-key generation now.
    pub(super) fn apply(&mut self, name: Option<String>, value: Option<T>, kind: EventKind, keys: u64) -> Step<T> {
        match kind {
            EventKind::Init => {
                self.listing = Some(BTreeMap::new());
                self.listing_keys = keys;
                Step::Nothing
            }
            EventKind::InitApply => {
                if let (Some(name), Some(value), Some(listing)) = (name, value, self.listing.as_mut()) {
                    listing.insert(name, value);
                }
                Step::Nothing
            }
            EventKind::InitDone => {
                self.objects = self.listing.take().unwrap_or_default();
                if self.listing_keys != keys {
                    return Step::Nothing;
                }
                self.synced = true;
                self.listed_once = true;
                self.failing_since = None;
                self.failure = None;
                Step::Listed
            }
            EventKind::Apply => {
                let Some(name) = name else { return Step::Nothing };
                let Some(value) = value else { return Step::Nothing };
                let old = self.objects.insert(name, value);
                Step::Changed(old)
            }
            EventKind::Delete => {
                let Some(name) = name else { return Step::Nothing };
                match self.objects.remove(&name) {
                    Some(old) => Step::Removed(old),
                    None => Step::Nothing,
                }
            }
        }
    }
}

pub(super) enum Step<T> {
    Nothing,
    Listed,
    /// Applied; the previous object if there was one.
    Changed(Option<T>),
    Removed(T),
}

#[derive(Clone, Copy)]
pub(super) enum EventKind {
    Init,
    InitApply,
    InitDone,
    Apply,
    Delete,
}

pub(super) fn split<K>(event: Event<K>) -> (EventKind, Option<K>) {
    match event {
        Event::Init => (EventKind::Init, None),
        Event::InitApply(o) => (EventKind::InitApply, Some(o)),
        Event::InitDone => (EventKind::InitDone, None),
        Event::Apply(o) => (EventKind::Apply, Some(o)),
        Event::Delete(o) => (EventKind::Delete, Some(o)),
    }
}
