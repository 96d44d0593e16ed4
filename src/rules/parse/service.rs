//! `backend.service: NAME` (with `port:` naming one of the Service's ports), and the choice between the ways a
//! backend names its pods.

use super::super::spans::join_key;
use super::super::{PodSource, PortRef, ServicePort};
use super::Validator;
use super::fields::{Fields, is_dns_label};

/// The keys that name a backend's pods otherwise than `service:`.
const OTHERS: [&str; 3] = ["deployment", "workload", "selector"];

impl Validator {
    /// The `service:` of backend `f`, if it has one and it is a valid Service name (problems recorded otherwise).
    pub(super) fn service(&mut self, f: &Fields<'_>) -> Option<String> {
        let name = self.string(f, "service", false)?;
        // Service names are RFC 1035 labels: a letter first.
        if is_dns_label(&name, 63) && name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Some(name);
        }
        let why = "a lowercase letter, then lowercase letters, digits and `-`, at most 63";
        self.err(&join_key(&f.path, "service"), format!("`{name}` is not a valid Service name ({why})"));
        None
    }

    /// What names the pods of backend `f`: exactly one of `deployment:`, `workload:`, `service:` (with its
    /// `port`) and `selector:`.
    pub(super) fn source(
        &mut self,
        f: &Fields<'_>,
        service: Option<String>,
        port: Option<&PortRef>,
    ) -> Option<PodSource> {
        let deployment = self.string(f, "deployment", false).map(PodSource::deployment);
        let workload = self.workload(f).map(PodSource::Workload);
        let selector = self.selector(f).map(PodSource::Selector);
        let given: Vec<&str> = OTHERS.into_iter().filter(|k| f.get(k).is_some()).collect();
        match (f.get("service").is_some(), given.len()) {
            (false, 0) => {
                let message =
                    "missing `deployment:`, `workload:`, `service:` or `selector:`: name the pods behind this backend";
                self.err(&f.path, message);
                None
            }
            (false, 1) => deployment.or(workload).or(selector),
            (false, _) => {
                self.err(&f.path, "give only one of `deployment:`, `workload:`, `service:` and `selector:`");
                None
            }
            (true, 0) => Some(PodSource::Service(ServicePort { name: service?, port: port?.clone() })),
            (true, _) => {
                let others = given.iter().map(|k| format!("`{k}:`")).collect::<Vec<_>>().join(" and ");
                let message = format!(
                    "`service:` chooses the pods by the Service's own selector: remove {others}, or remove `service:`"
                );
                self.err(&join_key(&f.path, "service"), message);
                None
            }
        }
    }
}
