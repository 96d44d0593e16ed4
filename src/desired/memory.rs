//! An in-memory cluster: drives the engine without a Kubernetes API server (unit tests, benchmarks).

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::{Cluster, Error};
use crate::model::Pod;
use crate::rules::PodQuery;

/// Pods per query; a query mapped to `Err` fails with that message. Counts the lists made.
#[derive(Default)]
pub struct MemoryCluster {
    pub pods: BTreeMap<PodQuery, Result<Vec<Pod>, String>>,
    pub lists: Mutex<usize>,
}

impl Cluster for MemoryCluster {
    async fn pods(&self, query: &PodQuery) -> Result<Vec<Pod>, Error> {
        *self.lists.lock().expect("lock") += 1;
        match self.pods.get(query) {
            Some(Ok(p)) => Ok(p.clone()),
            Some(Err(e)) => Err(unreachable(query, e)),
            None => Err(unreachable(query, "no such test query")),
        }
    }
}

/// A pod builder: `pod("web-1", "10.0.0.5").ready()`.
pub fn pod(name: &str, ip: &str) -> Pod {
    Pod {
        name: name.to_string(),
        phase: "Pending".into(),
        ready: false,
        terminating: false,
        ips: vec![ip.parse().expect("test IP")],
        ports: vec![("http".into(), 8080)],
    }
}

impl Pod {
    /// Running with the Ready condition true.
    pub fn ready(mut self) -> Pod {
        self.phase = "Running".into();
        self.ready = true;
        self
    }

    /// Shutting down (deletionTimestamp set).
    pub fn terminating(mut self) -> Pod {
        self.phase = "Running".into();
        self.terminating = true;
        self
    }
}

/// The error of an injected list failure: the API server "could not be reached".
fn unreachable(query: &PodQuery, cause: &str) -> Error {
    Error::Unreachable { server: "the in-memory cluster".into(), what: format!("list {query}"), cause: cause.into() }
}
