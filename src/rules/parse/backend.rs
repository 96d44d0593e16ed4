//! A backend: which pods (namespace and source), the port, weight, policy and IP family of their targets.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::super::labels::{label_key_problem, label_value_problem};
use super::super::spans::join_key;
use super::super::{Backend, IpFamily, PodQuery, Policy, PortRef};
use super::Validator;
use super::fields::{Fields, is_dns_label, is_port_name, kind, scalar_text};
use crate::model::DEFAULT_WEIGHT;

impl Validator {
    /// A backend; `in_split`: one of a `backends:` list (it then has a `share:`, checked by the caller).
    pub(super) fn backend(&mut self, path: &str, value: Option<&Value>, in_split: bool) -> Option<Backend> {
        let value = value?;
        let known = [
            "namespace",
            "deployment",
            "workload",
            "service",
            "selector",
            "port",
            "weight",
            "policy",
            "allow_empty",
            "ip_family",
            "share",
        ];
        let f = self.fields(path, value, &known)?;
        self.share_fits(&f, in_split);
        let namespace = self.string(&f, "namespace", true);
        if let Some(ns) = &namespace
            && !is_dns_label(ns, 63)
        {
            self.err(
                &join_key(path, "namespace"),
                format!("`{ns}` is not a valid namespace name (lowercase letters, digits and `-`, at most 63)"),
            );
        }
        let service = self.service(&f);
        let port = self.port_ref(&f, f.get("service").is_some());
        let source = self.source(&f, service, port.as_ref());
        let weight = self.int(&f, "weight", 0, 100, Some(DEFAULT_WEIGHT as i64)).map(|w| w as u8);
        let policy = match self.string(&f, "policy", false).as_deref() {
            None | Some("sync") => Some(Policy::Sync),
            Some("upsert-only") => Some(Policy::UpsertOnly),
            Some(other) => {
                self.err(&join_key(path, "policy"), format!("expected `sync` or `upsert-only`, got `{other}`"));
                None
            }
        };
        let allow_empty = self.bool(&f, "allow_empty");
        let ip_family = match self.string(&f, "ip_family", false).map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("ipv4") => Some(IpFamily::Ipv4),
            Some("ipv6") => Some(IpFamily::Ipv6),
            Some(other) => {
                self.err(&join_key(path, "ip_family"), format!("expected `ipv4` or `ipv6`, got `{other}`"));
                None
            }
        };
        Some(Backend {
            pods: PodQuery { namespace: namespace?, source: source? },
            port: port?,
            weight: weight?,
            policy: policy?,
            allow_empty: allow_empty?,
            ip_family: ip_family?,
        })
    }

    pub(super) fn selector(&mut self, f: &Fields<'_>) -> Option<BTreeMap<String, String>> {
        let value = f.get("selector")?;
        let path = join_key(&f.path, "selector");
        let Value::Mapping(map) = value else {
            self.err(&path, format!("expected a map of labels (`app: web`), got {}", kind(value)));
            return None;
        };
        if map.is_empty() {
            self.err(&path, "an empty selector would select every pod in the namespace: name at least one label");
            return None;
        }
        let mut labels = BTreeMap::new();
        let mut ok = true;
        for (k, v) in map {
            let key = scalar_text(k);
            let val = scalar_text(v);
            match (key, val) {
                (Some(k), Some(v)) => {
                    let problem =
                        label_key_problem(&k).map(|why| format!("`{k}` is not a valid label key: {why}")).or_else(
                            || label_value_problem(&v).map(|why| format!("`{v}` is not a valid label value: {why}")),
                        );
                    if let Some(message) = problem {
                        self.err(&join_key(&path, &k), message);
                        ok = false;
                    }
                    labels.insert(k, v);
                }
                (k, _) => {
                    let p = join_key(&path, k.as_deref().unwrap_or("?"));
                    self.err(&p, "label keys and values must be strings: quote numbers and booleans (`tier: \"1\"`)");
                    ok = false;
                }
            }
        }
        ok.then_some(labels)
    }

    /// The backend's `port:`: a container port, or with `service:` a port of the Service (whose names are DNS
    /// labels, longer than container port names may be).
    pub(super) fn port_ref(&mut self, f: &Fields<'_>, of_service: bool) -> Option<PortRef> {
        let path = join_key(&f.path, "port");
        match f.get("port") {
            None if of_service => {
                self.err(&f.path, "missing field `port`: the name or number of the Service's port to send traffic to");
                None
            }
            None => {
                self.err(&f.path, "missing field `port`: the container port number or name to send traffic to");
                None
            }
            Some(Value::String(name)) if of_service && name.parse::<i64>().is_err() => {
                if is_dns_label(name, 63) {
                    Some(PortRef::Name(name.clone()))
                } else {
                    self.err(
                        &path,
                        format!(
                            "`{name}` is not a valid Service port name (lowercase letters, digits and `-`, at most 63)"
                        ),
                    );
                    None
                }
            }
            Some(Value::String(name)) => {
                if name.parse::<i64>().is_ok() {
                    self.err(&path, format!("port `{name}` is quoted: write the number without quotes"));
                    None
                } else if is_port_name(name) {
                    Some(PortRef::Name(name.clone()))
                } else {
                    self.err(
                        &path,
                        format!("`{name}` is not a valid port name (1-15 lowercase letters, digits and `-`)"),
                    );
                    None
                }
            }
            Some(_) => self.int(f, "port", 1, 65535, None).map(|p| PortRef::Number(p as u16)),
        }
    }
}
