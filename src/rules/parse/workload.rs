//! `backend.workload: {kind, name, apiVersion?}`: a built-in kind by its name alone, any other kind with its
//! `apiVersion` (found through discovery when the rule runs).

use serde_yaml::Value;

use super::super::spans::join_key;
use super::super::{Workload, WorkloadKind};
use super::Validator;
use super::fields::{Fields, is_dns_label};

impl Validator {
    /// The `workload:` of backend `f`, if it has one and it is valid (problems recorded otherwise).
    pub(super) fn workload(&mut self, f: &Fields<'_>) -> Option<Workload> {
        let value: &Value = f.get("workload")?;
        let path = join_key(&f.path, "workload");
        let w = self.fields(&path, value, &["kind", "name", "apiVersion"])?;
        let kind = self.string(&w, "kind", true);
        let name = self.string(&w, "name", true);
        let api_version = self.string(&w, "apiVersion", false);
        if let Some(n) = &name
            && !is_dns_subdomain(n)
        {
            let why = "lowercase letters, digits, `-` and `.`, at most 253";
            self.err(&join_key(&path, "name"), format!("`{n}` is not a valid object name ({why})"));
        }
        let kind = match (kind?, api_version) {
            (kind, None) => match WorkloadKind::BUILT_IN.into_iter().find(|k| k.kind() == kind) {
                Some(k) => k,
                None => {
                    let hint = WorkloadKind::BUILT_IN
                        .iter()
                        .find(|k| k.kind().eq_ignore_ascii_case(&kind))
                        .map(|k| format!(" (did you mean `{}`?)", k.kind()))
                        .unwrap_or_default();
                    self.err(
                        &join_key(&path, "kind"),
                        format!(
                            "`{kind}` is not a built-in kind{hint}: write Deployment, StatefulSet, DaemonSet or \
                             ReplicaSet, or give `apiVersion:` (e.g. argoproj.io/v1alpha1) for a kind with a scale \
                             subresource"
                        ),
                    );
                    return None;
                }
            },
            (kind, Some(api_version)) => {
                let ok = self.api_version(&join_key(&path, "apiVersion"), &api_version);
                let kind_ok = is_kind(&kind);
                if !kind_ok {
                    self.err(
                        &join_key(&path, "kind"),
                        format!("`{kind}` is not a kind name (a capital letter, then letters and digits)"),
                    );
                }
                match WorkloadKind::BUILT_IN.into_iter().find(|k| k.kind() == kind && k.api_version() == api_version) {
                    Some(k) => k,
                    None if ok && kind_ok => WorkloadKind::Scalable { api_version, kind },
                    None => return None,
                }
            }
        };
        Some(Workload { kind, name: name.filter(|n| is_dns_subdomain(n))? })
    }

    /// Checks `group/version` with a group: the core group (`v1`) has no workload kind.
    fn api_version(&mut self, path: &str, api_version: &str) -> bool {
        let valid = api_version.split_once('/').is_some_and(|(group, version)| {
            (group == "apps" || group.contains('.') && is_dns_subdomain(group)) && is_dns_label(version, 63)
        });
        if !valid {
            self.err(
                path,
                format!("expected `group/version` of an API group, e.g. argoproj.io/v1alpha1, got `{api_version}`"),
            );
        }
        valid
    }
}

/// A Kubernetes object name (RFC 1123 subdomain).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(|part| is_dns_label(part, 63))
}

/// A kind: `Rollout`, `CloneSet`.
fn is_kind(s: &str) -> bool {
    s.len() <= 63 && s.starts_with(|c: char| c.is_ascii_uppercase()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}
