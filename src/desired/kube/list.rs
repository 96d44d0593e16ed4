//! Paged pod lists, and the namespace check that tells an empty list from a missing namespace.

use k8s_openapi::api::core::v1::{Namespace, Pod as K8sPod};
use kube::api::{Api, ListParams};
use kube::core::{ObjectList, Request};

use super::{Access, KubeCluster, MAX_PAGES, MAX_PODS};
use crate::desired::Error;
use crate::desired::convert::{MinimalPod, pod_from_minimal};
use crate::model::Pod;

impl KubeCluster {
    /// Lists every page of pods matching `selector` in `namespace`, restarting once on 410 Gone.
    pub(super) async fn list_pods(&self, namespace: &str, selector: &str) -> Result<Vec<Pod>, Error> {
        // Decoded into the fields clbsync reads only (`MinimalPod`): the same request as `Api::<Pod>::list`.
        let path = <K8sPod as kube::Resource>::url_path(&(), Some(namespace));
        let op = Access { verb: "list", resource: "pods", group: "", namespace };
        let what = match selector {
            "" => format!("list pods in namespace {namespace}"),
            _ => format!("list pods in namespace {namespace} with selector {selector}"),
        };
        let mut restarted = false;
        'list: loop {
            let mut pods = Vec::new();
            let mut token: Option<String> = None;
            for _ in 0..MAX_PAGES {
                let mut params = ListParams::default().labels(selector).limit(self.page_size);
                params = match &token {
                    Some(t) => params.continue_token(t),
                    // Served from the API server's watch cache, like an informer's first list, instead of a
                    // quorum read from etcd that scans (and label-filters) every pod of the namespace
                    // (BENCHMARKS.md). The cache may trail etcd by a moment; the next run sees any pod it missed.
                    None => params.match_any(),
                };
                let list = async {
                    let mut request = Request::new(&path).list(&params).map_err(kube::Error::BuildRequest)?;
                    request.extensions_mut().insert("list");
                    self.client.request::<ObjectList<MinimalPod>>(request).await
                };
                let page = match self.request(&what, op, list).await {
                    Ok(page) => page,
                    Err(Error::Api { error: kube::Error::Api(status), .. })
                        if status.code == 410 && token.is_some() && !restarted =>
                    {
                        tracing::warn!(%namespace, %selector, "pod list continue token expired (410 Gone), listing again");
                        restarted = true;
                        continue 'list;
                    }
                    Err(e) => return Err(e),
                };
                if pods.len() + page.items.len() > MAX_PODS {
                    return Err(Error::TooManyPods { what, max: MAX_PODS });
                }
                pods.extend(page.items.into_iter().map(pod_from_minimal));
                match page.metadata.continue_.filter(|t| !t.is_empty()) {
                    Some(t) => token = Some(t),
                    None => return Ok(pods),
                }
            }
            return Err(Error::TooManyPages { what, max: MAX_PAGES });
        }
    }

    /// Fails with [`Error::NamespaceNotFound`] if `namespace` does not exist. Skipped (Ok) when the role may
    /// not read namespaces.
    pub(crate) async fn check_namespace(&self, namespace: &str) -> Result<(), Error> {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let op = Access { verb: "get", resource: "namespaces", group: "", namespace };
        match self.request(&format!("get namespace {namespace}"), op, api.get(namespace)).await {
            Ok(_) => Ok(()),
            Err(Error::Api { error: kube::Error::Api(status), .. }) if status.code == 404 => {
                Err(Error::NamespaceNotFound { namespace: namespace.to_owned() })
            }
            Err(Error::Forbidden { .. }) => {
                tracing::debug!(%namespace, "no `get namespaces` permission, cannot tell a missing namespace from an empty one");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
