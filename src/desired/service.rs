//! `service:` backends: a Service as clbsync reads it ([`ServiceDef`]), and the pure decision of what one of its
//! ports selects and targets ([`service_target`]): the Service's `spec.selector` chooses the pods, the port's
//! `targetPort` is the target port (a number, or a container-port name the planner resolves per pod, as for a
//! named `port:`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Cluster, Error};
use crate::rules::{PortRef, ServicePort};

/// What clbsync reads of a Service: its selector (empty when it has none) and its ports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceDef {
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<ServicePortDef>,
}

/// One port of a Service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicePortDef {
    pub name: Option<String>,
    pub port: i32,
    /// `None`: the API server defaults it to `port`.
    pub target_port: Option<IntOrString>,
}

impl From<Service> for ServiceDef {
    fn from(service: Service) -> Self {
        let spec = service.spec.unwrap_or_default();
        let ports = spec.ports.into_iter().flatten();
        ServiceDef {
            selector: spec.selector.unwrap_or_default(),
            ports: ports
                .map(|p| ServicePortDef {
                    name: p.name.filter(|n| !n.is_empty()),
                    port: p.port,
                    target_port: p.target_port,
                })
                .collect(),
        }
    }
}

/// What port `port` of Service `def` stands for: the labels that choose its pods and the target port. Refused,
/// with what to fix: a Service without a selector (its Endpoints are managed by hand, so no labels say which pods
/// are behind it), a port the Service does not have, a `targetPort` that is no port.
pub fn service_target(def: &ServiceDef, port: &PortRef) -> Result<(BTreeMap<String, String>, PortRef), String> {
    if def.selector.is_empty() {
        return Err("it has no selector (its Endpoints are managed by hand, not chosen by labels), so it names no \
                    pods: give the Service a selector, or the rule `selector:` or `workload:` instead of `service:`"
            .to_owned());
    }
    let matching: Vec<&ServicePortDef> = def
        .ports
        .iter()
        .filter(|p| match port {
            PortRef::Number(n) => p.port == i32::from(*n),
            PortRef::Name(name) => p.name.as_deref() == Some(name),
        })
        .collect();
    // One number can be two ports (53/UDP and 53/TCP), each with its own targetPort: the number alone is no choice.
    if let [_, _, ..] = matching.as_slice() {
        let names: Vec<&str> = matching.iter().filter_map(|p| p.name.as_deref()).collect();
        return Err(format!(
            "it has {} ports numbered {port} (one per protocol), each with its own targetPort: name the one this              listener serves in `port:` ({})",
            matching.len(),
            if names.is_empty() {
                "they have no names: name them in the Service".to_owned()
            } else {
                names.join(" or ")
            }
        ));
    }
    let Some(found) = matching.first().copied() else {
        let have: Vec<String> = def
            .ports
            .iter()
            .map(|p| match &p.name {
                Some(name) => format!("{} ({name})", p.port),
                None => p.port.to_string(),
            })
            .collect();
        let have = if have.is_empty() { "none".to_owned() } else { have.join(", ") };
        return Err(format!(
            "it has no port `{port}` (its ports: {have}): with `service:`, `port:` in the rules file names a port of \
             the Service, by its name or number"
        ));
    };
    let target = match &found.target_port {
        None => IntOrString::Int(found.port),
        Some(IntOrString::String(s)) if s.is_empty() => IntOrString::Int(found.port),
        Some(t) => t.clone(),
    };
    let target = match target {
        IntOrString::Int(n) => match u16::try_from(n) {
            Ok(n) if n > 0 => PortRef::Number(n),
            _ => return Err(format!("the targetPort {n} of its port `{port}` is not a port number (1-65535)")),
        },
        IntOrString::String(name) => PortRef::Name(name),
    };
    Ok((def.selector.clone(), target))
}

/// The labels and target port of `service` in `namespace`, read through `cluster`.
pub async fn resolve<C: Cluster>(
    cluster: &C,
    namespace: &str,
    service: &ServicePort,
) -> Result<(BTreeMap<String, String>, PortRef), Error> {
    let def = cluster.service(namespace, &service.name).await?;
    service_target(&def, &service.port)
        .map_err(|reason| Error::UnusableService { service: format!("service {namespace}/{}", service.name), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: Option<&str>, port: i32, target: Option<IntOrString>) -> ServicePortDef {
        ServicePortDef { name: name.map(str::to_owned), port, target_port: target }
    }

    fn web() -> ServiceDef {
        ServiceDef {
            selector: [("app".to_owned(), "web".to_owned())].into(),
            ports: vec![
                port(Some("http"), 80, Some(IntOrString::String("web".into()))),
                port(Some("admin"), 9000, Some(IntOrString::Int(9090))),
                port(Some("plain"), 7000, None),
            ],
        }
    }

    #[test]
    fn a_port_by_name_or_number_targets_its_target_port_and_selects_by_the_services_selector() {
        let (labels, target) = service_target(&web(), &PortRef::Name("http".into())).expect("http");
        assert_eq!(labels, web().selector);
        assert_eq!(target, PortRef::Name("web".into()), "a named targetPort is resolved per pod later");
        assert_eq!(service_target(&web(), &PortRef::Number(80)).expect("80").1, PortRef::Name("web".into()));
        assert_eq!(service_target(&web(), &PortRef::Name("admin".into())).expect("admin").1, PortRef::Number(9090));
        assert_eq!(service_target(&web(), &PortRef::Number(7000)).expect("unset").1, PortRef::Number(7000));
    }

    #[test]
    fn a_service_without_a_selector_is_refused_with_what_to_do() {
        let manual = ServiceDef { selector: BTreeMap::new(), ..web() };
        let err = service_target(&manual, &PortRef::Number(80)).unwrap_err();
        assert!(err.contains("no selector") && err.contains("managed by hand"), "{err}");
        assert!(err.contains("`selector:` or `workload:`"), "says what to write instead: {err}");
    }

    #[test]
    fn a_port_the_service_lacks_is_refused_naming_the_ports_it_has() {
        let err = service_target(&web(), &PortRef::Name("grpc".into())).unwrap_err();
        assert!(err.contains("no port `grpc`") && err.contains("80 (http), 9000 (admin), 7000 (plain)"), "{err}");
        let err = service_target(&web(), &PortRef::Number(8080)).unwrap_err();
        assert!(err.contains("no port `8080`"), "a number is matched against `port`, not `targetPort`: {err}");
        let unnamed = ServiceDef { ports: vec![port(None, 80, None)], ..web() };
        assert!(service_target(&unnamed, &PortRef::Name("http".into())).unwrap_err().contains("its ports: 80)"));
    }

    /// One number, two ports (53/UDP → 5353, 53/TCP → dns-tcp): the number alone would pick the first, maybe the
    /// other protocol's targetPort; refused, naming the ports; by name each is found.
    #[test]
    fn a_number_two_ports_share_is_refused_and_each_is_found_by_name() {
        let dns = ServiceDef {
            ports: vec![
                port(Some("dns"), 53, Some(IntOrString::Int(5353))),
                port(Some("dns-tcp"), 53, Some(IntOrString::String("dns-tcp".into()))),
            ],
            ..web()
        };
        let err = service_target(&dns, &PortRef::Number(53)).unwrap_err();
        assert!(err.contains("2 ports numbered 53") && err.contains("dns or dns-tcp"), "{err}");
        assert_eq!(service_target(&dns, &PortRef::Name("dns".into())).expect("dns").1, PortRef::Number(5353));
        assert_eq!(
            service_target(&dns, &PortRef::Name("dns-tcp".into())).expect("dns-tcp").1,
            PortRef::Name("dns-tcp".into())
        );
    }

    #[test]
    fn a_target_port_out_of_range_is_refused() {
        let bad = ServiceDef { ports: vec![port(Some("http"), 80, Some(IntOrString::Int(70000)))], ..web() };
        assert!(service_target(&bad, &PortRef::Number(80)).unwrap_err().contains("targetPort 70000"));
    }
}
