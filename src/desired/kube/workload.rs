//! Workloads: a built-in kind's object or another kind's `scale` subresource (found through discovery), for the
//! selector its pods are listed with and the replicas it asks for.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::api::Api;
use kube::core::{ApiResource, DynamicObject};

use super::{Access, KubeCluster};
use crate::desired::Error;
use crate::desired::selector::{label_selector_string, parse_selector_string};
use crate::rules::{PodQuery, PodSource, Workload, WorkloadKind};

impl KubeCluster {
    /// The selector of workload `namespace/w`, as a selector string: a built-in kind's `spec.selector`, any other
    /// kind's `scale` subresource's `status.selector`; and the replicas it asks for (`spec.replicas` of the object
    /// or of its scale), `None` for a kind without (DaemonSet).
    pub(super) async fn selector_of(&self, namespace: &str, w: &Workload) -> Result<(String, Option<u32>), Error> {
        let query = PodQuery { namespace: namespace.to_owned(), source: PodSource::Workload(w.clone()) };
        let invalid = |reason: String| Error::InvalidSelector { query: query.to_string(), reason };
        let (selector, replicas) = if w.kind.built_in_resource().is_some() {
            let object = self.workload(namespace, w).await?;
            let spec = object.data.get("spec");
            let replicas = spec.and_then(|s| s.get("replicas")).and_then(serde_json::Value::as_u64);
            let selector = spec.and_then(|s| s.get("selector")).cloned();
            let selector = selector.ok_or_else(|| invalid(format!("the {} has no spec.selector", w.kind.kind())))?;
            let selector = serde_json::from_value(selector).map_err(|e| invalid(format!("spec.selector: {e}")))?;
            (selector, replicas.and_then(|r| u32::try_from(r).ok()))
        } else {
            let resource = self.discover(&query, w).await?;
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
            let scale = format!("{}/scale", resource.plural);
            let op = Access { verb: "get", resource: &scale, group: &resource.group, namespace };
            let scale = self.found(&query, op, api.get_scale(&w.name)).await?;
            let replicas = scale.spec.and_then(|s| s.replicas).and_then(|r| u32::try_from(r).ok());
            let text = scale.status.and_then(|s| s.selector).unwrap_or_default();
            if text.is_empty() {
                return Err(invalid("its scale subresource reports no status.selector (yet)".to_owned()));
            }
            (parse_selector_string(&text).map_err(invalid)?, replicas)
        };
        Ok((label_selector_string(&selector).map_err(invalid)?, replicas))
    }

    /// GETs workload `namespace/w` of a built-in kind.
    async fn workload(&self, namespace: &str, w: &Workload) -> Result<DynamicObject, Error> {
        let query = PodQuery { namespace: namespace.to_owned(), source: PodSource::Workload(w.clone()) };
        let resource = match w.kind.built_in_resource() {
            Some(_) => built_in(&w.kind),
            None => self.discover(&query, w).await?,
        };
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
        let op = Access { verb: "get", resource: &resource.plural, group: &resource.group, namespace };
        self.found(&query, op, api.get(&w.name)).await
    }

    /// Runs a GET of a workload (or its scale); a 404 is [`Error::WorkloadNotFound`], or
    /// [`Error::NamespaceNotFound`] when the namespace is missing.
    async fn found<T>(
        &self,
        query: &PodQuery,
        op: Access<'_>,
        fut: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, Error> {
        let what = format!("get {query}");
        match self.request(&what, op, fut).await {
            Err(Error::Api { error: kube::Error::Api(status), .. }) if status.code == 404 => {
                self.check_namespace(&query.namespace).await?;
                Err(not_found(query))
            }
            answer => answer,
        }
    }

    /// The resource of a scalable kind, from the API server's discovery: it must be namespaced and have a `scale`
    /// subresource.
    async fn discover(&self, query: &PodQuery, w: &Workload) -> Result<ApiResource, Error> {
        let api_version = w.kind.api_version();
        let unusable = |reason: String| Error::UnusableKind { workload: query.to_string(), reason };
        let op = Access { verb: "get", resource: "(discovery)", group: w.kind.group(), namespace: &query.namespace };
        let what = format!("discover the resources of {api_version}");
        let list = match self.request(&what, op, self.client.list_api_group_resources(api_version)).await {
            Err(Error::Api { error: kube::Error::Api(status), .. }) if status.code == 404 => {
                return Err(unusable(format!("the API server serves no {api_version} (is its CRD installed?)")));
            }
            answer => answer?,
        };
        scalable_resource(&list, &w.kind).map_err(unusable)
    }

    /// The names of the container ports of workload `namespace/w`'s pod template (`spec.template`): the ports its
    /// pods have and will have (`validate --kubeconfig`). `None` when the kind has no `spec.template`.
    pub(crate) async fn template_ports(
        &self,
        namespace: &str,
        w: &Workload,
    ) -> Result<Option<BTreeSet<String>>, Error> {
        let object = self.workload(namespace, w).await?;
        let Some(template) = object.data.get("spec").and_then(|s| s.get("template")) else { return Ok(None) };
        let containers = template.pointer("/spec/containers").and_then(|c| c.as_array()).cloned().unwrap_or_default();
        let ports = containers.iter().flat_map(|c| c.get("ports").and_then(|p| p.as_array()).into_iter().flatten());
        Ok(Some(ports.filter_map(|p| p.get("name")?.as_str().map(str::to_owned)).collect()))
    }
}

/// The resource of scalable kind `kind` in its group version's discovery `list`: it must be namespaced and have a
/// `scale` subresource; otherwise why not.
pub(crate) fn scalable_resource(list: &APIResourceList, kind: &WorkloadKind) -> Result<ApiResource, String> {
    let (api_version, name) = (kind.api_version(), kind.kind());
    let Some(resource) = list.resources.iter().find(|r| r.kind == name && !r.name.contains('/')) else {
        return Err(format!("{api_version} has no kind {name}"));
    };
    if !resource.namespaced {
        return Err(format!("{name} is cluster-scoped; a workload is namespaced"));
    }
    let scale = format!("{}/scale", resource.name);
    if !list.resources.iter().any(|r| r.name == scale) {
        return Err(format!(
            "{name} ({}) has no scale subresource, so no status.selector to read (its CRD declares none)",
            resource.name
        ));
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    Ok(ApiResource {
        group: group.to_owned(),
        version: version.to_owned(),
        api_version: api_version.to_owned(),
        kind: name.to_owned(),
        plural: resource.name.clone(),
    })
}

/// The resource of a built-in kind (apps/v1).
pub fn built_in(kind: &WorkloadKind) -> ApiResource {
    ApiResource {
        group: "apps".into(),
        version: "v1".into(),
        api_version: "apps/v1".into(),
        kind: kind.kind().into(),
        plural: kind.built_in_resource().unwrap_or_default().into(),
    }
}

/// [`Error::WorkloadNotFound`] for a workload query.
pub(crate) fn not_found(query: &PodQuery) -> Error {
    let field = match &query.source {
        PodSource::Workload(w) if w.kind == WorkloadKind::Deployment => "deployment:` or `workload:",
        _ => "workload:",
    };
    Error::WorkloadNotFound { workload: query.to_string(), field }
}

/// [`Error::WorkloadNotFound`] for the Service of a `service:` backend.
pub(crate) fn service_not_found(namespace: &str, name: &str) -> Error {
    Error::WorkloadNotFound { workload: format!("service {namespace}/{name}"), field: "service:" }
}
