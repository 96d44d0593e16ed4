//! clbsync keeps Tencent Cloud CLB backends equal to the ready Pod IPs of Kubernetes workloads.
//!
//! One run is a pipeline, and the modules below are its stages in order, each using only those above it (checked
//! by `tests/it/architecture.rs`):
//!
//! ```text
//!            ┌──────────── drivers: cli (main) · reconcile (one pass) · watch (passes, leases) ────────────┐
//!            │                                                                                             │
//! rules ──► desired (Kubernetes) ──► actual (CLB) ──► plan (pure) ──► apply ──► outcome ──► report      observe
//!   1          2                       3               4               5       per rule      6        (metrics,
//!                                      └─ clb: the CLB API and its credentials ─┘                      Events)
//! ```
//!
//! Each rule keeps its [`model::RuleId`] from the rules file to the report: its plan, what apply did to each of
//! its rows ([`outcome::RuleOutcome`]), its Events and metrics. Nothing is kept between runs: the cluster and the
//! cloud are the state. Watch mode ([`watch`]) only decides when a run happens and over which rules.

#![forbid(unsafe_code)]

/// The shared vocabulary: rule ids, targets, bindings, pods, bound and desired targets, changes and failures.
pub mod model;

/// 1. `rules.yaml`: parse and validate what should be bound where.
pub mod rules;
/// One stop for a run or a pass (a signal, the run timeout, a lost leader lease), checked before every write.
pub mod stop;
/// The Tencent Cloud CLB API and its credentials: calls, signing, rate limits, retries and async tasks; read by
/// [`actual`], written by [`apply`].
pub mod clb;
/// 2. Desired state: the pods behind each rule, from Kubernetes.
pub mod desired;
/// 3. Actual state: the bindings the rules name and the targets bound there, from CLB.
pub mod actual;
/// 4. The pure planner, the one place where decisions are made: rules + pods + bound targets → changes.
pub mod plan;
/// 5. Execute one load balancer's plan, make before break.
pub mod apply;
/// What a run found and did, rule by rule, and its exit code.
pub mod outcome;
/// 6. Render plans and apply results as a table, JSON or markdown.
pub mod report;
/// Observers of a run: metrics, Kubernetes Events from its outcome, its progress on a terminal.
pub mod observe;
/// `/healthz`, `/readyz` and `/metrics` over HTTP, for watch mode.
pub mod serve;
/// Driver of one pass: wires the stages together and does their I/O; it decides nothing.
pub mod reconcile;
/// Driver of watch mode: decides when and over which rules to run a pass (pod and workload watches, resync,
/// rules reload, leader election, SIGTERM).
pub mod watch;

/// Command-line definition (clap) and the checked run configuration, shared by the binary and the `--help`
/// snapshot tests.
pub mod cli;
