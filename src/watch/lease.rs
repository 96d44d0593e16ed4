//! Leader election on a `coordination.k8s.io/v1` Lease, with `kube-lease-manager` (maintained, built on kube 5,
//! takes the lease with server-side apply so two replicas cannot both hold it). Only the holder mutates; the
//! others keep their caches warm.
//!
//! The Lease lasts [`LEASE_DURATION`] and is renewed [`LEASE_GRACE`] before it expires, so a holder that is
//! SIGKILLed is replaced within the lease duration; on SIGTERM the holder releases it and a follower takes it
//! over at once. The role needs `get`, `create` and `patch` on `leases` in the lease's namespace.

use std::time::Duration;

use anyhow::Context;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a lease is valid after its last renewal: the longest a follower waits for a SIGKILLed leader.
pub const LEASE_DURATION: u64 = 15;
/// How long before the lease expires the holder renews it.
pub const LEASE_GRACE: u64 = 5;

/// A running election: `leader` says whether this replica holds the lease now.
pub struct Election {
    pub leader: watch::Receiver<bool>,
    task: JoinHandle<Result<kube_lease_manager::LeaseManager, LeaseManagerError>>,
    namespace: String,
    name: String,
}

impl Election {
    /// Joins the election for the Lease `namespace/name` (created when missing) as `identity`.
    pub async fn join(client: kube::Client, namespace: &str, name: &str, identity: String) -> anyhow::Result<Self> {
        let manager = LeaseManagerBuilder::new(client, name)
            .with_namespace(namespace)
            .with_identity(identity.clone())
            .with_duration(LEASE_DURATION)
            .with_grace(LEASE_GRACE)
            .build()
            .await
            .with_context(|| {
                format!(
                    "joining the leader election on Lease {namespace}/{name}: check --leader-election-namespace and that the role may get, create and patch leases there"
                )
            })?;
        let (leader, task) = manager.watch().await;
        tracing::info!(lease = %format!("{namespace}/{name}"), %identity, "joined the leader election");
        Ok(Election { leader, task, namespace: namespace.to_owned(), name: name.to_owned() })
    }

    /// Gives the lease up (if held) so a follower takes over at once, waiting at most `wait`.
    pub async fn release(self, wait: Duration) {
        let Election { leader, task, namespace, name } = self;
        drop(leader);
        match tokio::time::timeout(wait, task).await {
            Ok(Ok(Ok(_))) => tracing::info!(lease = %format!("{namespace}/{name}"), "released the lease"),
            Ok(Ok(Err(e))) => {
                tracing::warn!(lease = %format!("{namespace}/{name}"), "releasing the lease: {e}; a follower takes over when it expires")
            }
            Ok(Err(e)) => tracing::warn!("the leader election task failed: {e}"),
            Err(_) => tracing::warn!(
                lease = %format!("{namespace}/{name}"),
                "releasing the lease timed out; a follower takes over when it expires"
            ),
        }
    }
}

/// This replica's identity in the election: the pod name (`HOSTNAME`) and a random suffix, so a restarted
/// pod with the same name is a new candidate.
pub fn identity() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "clbsync".to_owned());
    let suffix: String = std::iter::repeat_with(fastrand::alphanumeric).take(6).collect();
    format!("{host}-{}", suffix.to_lowercase())
}
