//! The Services of a namespace in the cache, while a rule names one (`service:` backends): what their watch says,
//! reduced to their selector and ports, and the answers read from them.

use k8s_openapi::api::core::v1::Service;
use kube::runtime::watcher::Event;

use super::{Cache, Change, Kind, Named, Namespace, Step, service_not_found, split};
use crate::desired::Error;
use crate::desired::service::ServiceDef;

impl Namespace {
    /// The cached Service `name` of this namespace (`namespace`), once the Services' watch has listed.
    pub(super) fn service(&self, namespace: &str, name: &str) -> Result<&ServiceDef, Error> {
        let what = || format!("{} in namespace {namespace}", Kind::Services.name());
        let store = self.services.as_ref().ok_or_else(|| Error::NotSynced { what: what() })?;
        if !store.synced {
            return Err(match &store.failure {
                Some(reason) => Error::WatchFailing { what: what(), reason: reason.clone() },
                None => Error::NotSynced { what: what() },
            });
        }
        store.objects.get(name).ok_or_else(|| service_not_found(namespace, name))
    }
}

impl Cache {
    /// Service `namespace/name` as its watch last said; like a query, only from a synced watch.
    pub fn service(&self, namespace: &str, name: &str) -> Result<ServiceDef, Error> {
        let namespaces = self.lock();
        let ns = namespaces
            .get(namespace)
            .ok_or_else(|| Error::NotSynced { what: format!("{} in namespace {namespace}", Kind::Services.name()) })?;
        ns.service(namespace, name).cloned()
    }

    /// Applies a Service watch event; returns what changed that can matter to a rule. Only the Services a rule
    /// names add their selectors' label keys.
    pub(crate) fn apply_service(&self, namespace: &str, event: Event<Service>) -> Option<Change> {
        let (step, service) = split(event);
        let name = service.as_ref().and_then(|s| s.metadata.name.clone());
        let def = service.map(ServiceDef::from);
        let mut namespaces = self.lock();
        let ns = namespaces.get_mut(namespace)?;
        if let (Some(name), Some(def)) = (&name, &def) {
            let keys = (!matches!(step, super::EventKind::Delete)).then(|| def.selector.keys().cloned().collect());
            ns.track_keys(Named::Service(name.clone()), keys);
        }
        let changed = match ns.services.as_mut()?.apply(name.clone(), def.clone(), step, 0) {
            Step::Nothing => false,
            Step::Listed => {
                ns.forget_gone(&Kind::Services);
                return Some(Change::Resynced { namespace: namespace.to_owned() });
            }
            Step::Changed(old) => old != def,
            Step::Removed(_) => true,
        };
        let name = name.filter(|_| changed)?;
        Some(Change::Service { namespace: namespace.to_owned(), name })
    }
}
