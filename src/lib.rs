//! clbsync keeps Tencent Cloud CLB backends equal to the ready Pod IPs of Kubernetes workloads.
//!
//! One run is a pipeline, and the modules below are its stages in order:
//!
//! ```text
//! rules → desired (Kubernetes) → actual (CLB) → plan → apply → report
//! ```
//!
//! Nothing is kept between runs: the cluster and the cloud are the state. Watch mode ([`watch`]) only decides
//! when a run happens and over which rules.

#![forbid(unsafe_code)]

/// The shared vocabulary: targets, bindings, pods, bound and desired targets, changes and failures.
pub mod model;

/// 1. `rules.yaml`: parse and validate what should be bound where.
pub mod rules;
/// 2. Desired state: the pods behind each rule, from Kubernetes.
pub mod desired;
/// Tencent Cloud API credentials and where they come from (environment, files, TKE OIDC, CVM role), refreshed
/// before they expire; they feed [`clb`].
pub mod credentials;
/// 3. Actual state and mutations: the Tencent Cloud CLB API.
pub mod clb;
/// 4. The pure planner, the one place where decisions are made: rules + pods + bound targets → changes.
pub mod plan;
/// 5. Execute one load balancer's plan, make before break.
pub mod apply;
/// 6. Render plans and apply results as a table or JSON.
pub mod report;
/// Wires the stages together and does their I/O; it decides nothing.
pub mod reconcile;
/// One stop for a run or a pass (a signal, the run timeout, a lost leader lease), checked before every write.
pub mod stop;
/// Watch mode: decides when and over which rules to run a pass (pod and Deployment watches, resync, rules
/// reload, leader election, SIGTERM).
pub mod watch;
/// Observers of a run: metrics, Kubernetes Events from its outcome, its progress on a terminal.
pub mod observe;
/// `/healthz`, `/readyz` and `/metrics` over HTTP, for watch mode.
pub mod serve;

/// Command-line definition (clap), shared by the binary and the `--help` snapshot tests.
pub mod cli;
