//! [`CachedCluster`]: the cache as a [`Cluster`].

use std::net::IpAddr;

use super::Cache;
use crate::desired::kube::KubeCluster;
use crate::desired::service::ServiceDef;
use crate::desired::{Cluster, Error};
use crate::model::{GateCondition, Pod, Selected};
use crate::rules::PodQuery;

/// Watch mode's [`Cluster`]: pods from the cache, readiness-gate conditions written through the API.
pub(crate) struct CachedCluster<'a> {
    pub cache: &'a Cache,
    pub api: &'a KubeCluster,
}

impl Cluster for CachedCluster<'_> {
    /// As [`KubeCluster`] answers it: a watch of a namespace that does not exist lists nothing, like a LIST there,
    /// so an empty answer (or a missing workload) is checked against the namespace and a missing one is
    /// [`Error::NamespaceNotFound`], never zero pods.
    async fn pods(&self, query: &PodQuery) -> Result<Vec<Pod>, Error> {
        match self.cache.query(query) {
            Ok(pods) if pods.is_empty() => {
                self.api.check_namespace(&query.namespace).await?;
                Ok(pods)
            }
            Err(e @ Error::WorkloadNotFound { .. }) => {
                self.api.check_namespace(&query.namespace).await?;
                Err(e)
            }
            answer => answer,
        }
    }

    /// The pods, and the replicas the cached workload asks for: the source sanity check holds in watch mode too.
    async fn listed(&self, query: &PodQuery) -> Result<Selected, Error> {
        let pods = self.pods(query).await?;
        Ok(Selected { replicas: self.cache.replicas(query), ..Selected::from(pods) })
    }

    /// As [`KubeCluster`] answers it: a missing Service is checked against the namespace.
    async fn service(&self, namespace: &str, name: &str) -> Result<ServiceDef, Error> {
        match self.cache.service(namespace, name) {
            Err(e @ Error::WorkloadNotFound { .. }) => {
                self.api.check_namespace(namespace).await?;
                Err(e)
            }
            answer => answer,
        }
    }

    async fn pods_at(&self, namespace: &str, ips: &[IpAddr]) -> Result<Vec<Pod>, Error> {
        self.cache.pods_at(namespace, ips)
    }

    async fn set_pod_condition(
        &self,
        namespace: &str,
        pod: &str,
        condition: &GateCondition,
        transition: bool,
    ) -> Result<(), Error> {
        self.api.set_pod_condition(namespace, pod, condition, transition).await
    }
}
