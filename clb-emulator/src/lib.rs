//! # clb-emulator
//!
//! A local emulator of the Tencent Cloud CLB API (version 2018-03-17) for tests: TC3-HMAC-SHA256
//! verification, request validation against the official parameter schema, the target actions
//! (with target tags) with async tasks and LB locking, per-target health checks driven by which
//! IPs serve, and deterministic fault injection; also STS `AssumeRoleWithWebIdentity` (verifying a
//! Kubernetes service-account token against its JWKS) and the CVM metadata role credentials, whose
//! temporary credentials expire. Run it in-process with
//! [`start`] or as the `clb-emulator` binary. See README.md for the state format and admin API.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod actions;
mod admin;
pub mod calls;
pub mod error;
pub mod faults;
pub mod health;
pub mod issued;
pub mod jwt;
pub mod metadata;
pub mod schema;
mod response;
mod server;
pub mod sign;
pub mod state;
pub mod sts;
mod tasks;
pub mod time;
pub mod traffic;
mod world;

pub use calls::{CallLog, CallRecord};
pub use error::ApiError;
pub use faults::{
    AfterApplyKind, BusyFault, CredentialFault, CredentialFaultKind, DropFault, ErrorAfterApplyFault, ErrorFault,
    ErrorKind, Faults, GarbageFault, GarbageMode, TaskFailureFault,
};
pub use health::{HealthConfig, HealthDetail, Serving, TargetHealthInfo};
pub use issued::{IssuedCredential, IssuedVia};
pub use jwt::Jwks;
pub use metadata::MetadataConfig;
pub use state::{
    Credential, DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Listener, LoadBalancer, Rule, State, StateError, Target,
    TargetKind,
};
pub use sts::{OidcProvider, OidcRole, StsConfig};
pub use tasks::TaskInfo;
pub use traffic::{TrafficConfig, TrafficReport};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;

/// API version served.
pub const API_VERSION: &str = "2018-03-17";

/// Emulator configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Initial state (also restored by `reset` with `state: true`).
    pub state: State,
    /// Initial fault configuration.
    pub faults: Faults,
    /// Time from accepting a mutation until its task completes and the change becomes visible
    /// (0 = applied immediately, task already done). Overridden by `Faults::task_delay_ms`.
    pub task_delay: Duration,
    /// Requests per second per action (0 = off); the real API allows 20. Overridden by
    /// `Faults::rate_limit_per_action`.
    pub rate_limit_per_action: u32,
    /// Maximum targets per L4 listener / per L7 rule (`LimitExceeded` beyond).
    pub backend_quota: u32,
    /// Offset in seconds added to the system clock for signature-expiry checks and timestamps.
    pub clock_offset_secs: i64,
    /// Maximum accepted request body (10 MiB like the real API).
    pub max_body_bytes: usize,
    /// Health-check timing (CLB's defaults: a new target is healthy after 15 s;
    /// [`HealthConfig::instant`] for tests that do not care).
    pub health: HealthConfig,
    /// Whom STS `AssumeRoleWithWebIdentity` trusts (default: nobody).
    pub sts: StsConfig,
    /// The CVM instance role of the metadata endpoint (default: none).
    pub metadata: MetadataConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state: State::default(),
            faults: Faults::default(),
            task_delay: Duration::ZERO,
            rate_limit_per_action: 20,
            backend_quota: 200,
            clock_offset_secs: 0,
            max_body_bytes: 10 << 20,
            health: HealthConfig::default(),
            sts: StsConfig::default(),
            metadata: MetadataConfig::default(),
        }
    }
}

/// Mutable emulator data behind one mutex (never held across an await).
pub(crate) struct Inner {
    pub world: world::World,
    pub initial: State,
    pub tasks: tasks::Tasks,
    pub calls: CallLog,
    pub engine: faults::FaultEngine,
    pub health: health::Health,
    /// The traffic model, when started, and the emulator time of its last step.
    pub traffic: Option<(traffic::Traffic, tokio::time::Instant)>,
    /// Temporary credentials issued by STS and the metadata endpoint.
    pub issued: issued::Issued,
    pub sts: StsConfig,
    pub metadata: MetadataConfig,
}

/// Shared between the server tasks and the [`Emulator`] handle.
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    pub task_delay_ms: AtomicU64,
    pub rate_limit: AtomicU32,
    pub backend_quota: AtomicU32,
    pub clock_offset: AtomicI64,
    pub max_body: usize,
    pub clock: time::Clock,
    /// Emulator time at start: [`CallRecord::at_us`] counts from it.
    pub origin: tokio::time::Instant,
}

impl Shared {
    /// Locks the inner data (recovering from a poisoned lock: state stays usable).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wall clock (Unix seconds) including the configured offset.
    pub fn now_unix(&self) -> i64 {
        time::unix_secs(std::time::SystemTime::now()) + self.clock_offset.load(Ordering::Relaxed)
    }

    /// Wall clock (Unix milliseconds) including the configured offset: expiry of temporary credentials.
    pub fn now_unix_ms(&self) -> i64 {
        let ms = match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4),
            Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX / 4),
        };
        ms + self.clock_offset.load(Ordering::Relaxed) * 1000
    }

    /// Locks and completes due tasks.
    pub fn settled(&self) -> MutexGuard<'_, Inner> {
        let wall = self.now_unix();
        let mut g = self.lock();
        let inner = &mut *g;
        inner.tasks.settle(&mut inner.world, self.clock.now(), wall);
        g
    }

    /// Locks, completes due tasks and runs every health check due.
    pub fn settled_health(&self) -> MutexGuard<'_, Inner> {
        let now = self.clock.now();
        let mut g = self.settled();
        let inner = &mut *g;
        inner.world.settle_health(&inner.health, now, None);
        g
    }

    /// Replaces the serving flags (health checks so far are run with the old ones first).
    pub fn set_serving(&self, serving: health::Serving) {
        let mut g = self.settled_health();
        g.health.set_serving(serving);
    }

    /// Replaces the health-check timing (checks so far are run with the old one first).
    pub fn set_health_config(&self, config: HealthConfig) {
        let now = self.clock.now();
        let mut g = self.settled_health();
        g.health.config = config;
        g.world.restart_health(now);
    }

    /// Health of every bound target, in state order.
    pub fn health(&self) -> Vec<TargetHealthInfo> {
        let g = self.settled_health();
        let mut out = Vec::new();
        for lb in &g.world.lbs {
            for l in &lb.listeners {
                let mut add = |location: Option<&str>, pool: &world::Pool, probes: &health::Probes| {
                    for (key, t) in pool {
                        let detail = health::Health::detail(t.health.as_deref(), probes.get(key));
                        out.push(TargetHealthInfo {
                            load_balancer_id: lb.id.clone(),
                            listener_id: l.id.clone(),
                            location_id: location.map(str::to_string),
                            ip: t.ip.clone(),
                            port: t.port,
                            weight: t.weight,
                            health: detail,
                            healthy: detail == HealthDetail::Alive,
                            serving: g.health.serves(&t.ip),
                        });
                    }
                };
                add(None, &l.targets, &l.health);
                for r in &l.rules {
                    add(Some(&r.location_id), &r.targets, &r.health);
                }
            }
        }
        out
    }

    /// Starts (or restarts, from zero) the traffic model now.
    pub fn start_traffic(&self, config: TrafficConfig) {
        let now = self.clock.now();
        self.settled_health().traffic = Some((traffic::Traffic::new(config), now));
    }

    /// What the traffic model counted so far (None: not started).
    pub fn traffic_report(&self) -> Option<TrafficReport> {
        self.traffic_step();
        self.lock().traffic.as_ref().map(|(t, _)| t.report().clone())
    }

    /// Advances the traffic model to now against the current state (tasks completed, health probed).
    /// Returns the model's step length, or None when it is not running.
    pub fn traffic_step(&self) -> Option<std::time::Duration> {
        let now = self.clock.now();
        let mut g = self.settled_health();
        let inner = &mut *g;
        let (model, last) = inner.traffic.as_mut()?;
        let step = std::time::Duration::from_millis(model.config().step_ms.max(1));
        let dt_ms = u64::try_from(now.saturating_duration_since(*last).as_millis()).unwrap_or(u64::MAX);
        if dt_ms == 0 {
            return Some(step);
        }
        *last = now;
        let health = &inner.health;
        let mut rules: Vec<(String, Vec<traffic::Candidate>)> = Vec::new();
        for lb in &inner.world.lbs {
            for l in &lb.listeners {
                let cands = |pool: &world::Pool, probes: &health::Probes| -> Vec<traffic::Candidate> {
                    pool.iter()
                        .map(|(key, t)| traffic::Candidate {
                            ip: t.ip.clone(),
                            port: t.port,
                            weight: t.weight,
                            health: health::Health::detail(t.health.as_deref(), probes.get(key)),
                            serving: health.serves(&t.ip),
                        })
                        .collect()
                };
                if l.is_l7() {
                    for r in &l.rules {
                        rules.push((format!("{}/{}/{}", lb.id, l.id, r.location_id), cands(&r.targets, &r.health)));
                    }
                } else {
                    rules.push((format!("{}/{}", lb.id, l.id), cands(&l.targets, &l.health)));
                }
            }
        }
        model.step(dt_ms, rules.iter().map(|(k, c)| (k.clone(), c.as_slice())));
        Some(step)
    }

    pub fn set_state(&self, state: &State) -> Result<(), StateError> {
        let w = world::World::from_state(state, self.clock.now())?;
        let mut g = self.lock();
        g.world = w;
        g.tasks = tasks::Tasks::default();
        Ok(())
    }

    pub fn reset(&self, with_state: bool) {
        let mut g = self.lock();
        g.calls = CallLog::default();
        let faults = g.engine.faults.clone();
        g.engine = faults::FaultEngine::new(faults);
        if with_state {
            if let Ok(w) = world::World::from_state(&g.initial, self.clock.now()) {
                g.world = w;
            }
            g.tasks = tasks::Tasks::default();
            g.health.set_serving(health::Serving::default());
        }
    }
}

/// Steps the traffic model every `step_ms` while it runs (idle checks every 50 ms otherwise).
async fn traffic_ticker(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let wait = shared.traffic_step().unwrap_or(Duration::from_millis(50));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// A running emulator. Dropping it stops the server (use [`Emulator::shutdown`] to wait for it).
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    join: Option<tokio::task::JoinHandle<()>>,
}

/// Starts the emulator on `listen` (`127.0.0.1:0` picks a free port). Needs a tokio runtime.
pub async fn start(listen: SocketAddr, config: Config) -> std::io::Result<Emulator> {
    let clock = time::Clock::default();
    let origin = clock.now();
    let world = world::World::from_state(&config.state, clock.now())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            world,
            initial: config.state.clone(),
            tasks: tasks::Tasks::default(),
            calls: CallLog::default(),
            engine: faults::FaultEngine::new(config.faults.clone()),
            health: health::Health::new(config.health),
            traffic: None,
            issued: issued::Issued::default(),
            sts: config.sts.clone(),
            metadata: config.metadata.clone(),
        }),
        task_delay_ms: AtomicU64::new(config.task_delay.as_millis() as u64),
        rate_limit: AtomicU32::new(config.rate_limit_per_action),
        backend_quota: AtomicU32::new(config.backend_quota),
        clock_offset: AtomicI64::new(config.clock_offset_secs),
        max_body: config.max_body_bytes,
        clock,
        origin,
    });
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(traffic_ticker(shared.clone(), stop_rx.clone()));
    let join = tokio::spawn(server::serve(listener, shared.clone(), stop_rx));
    Ok(Emulator { addr, shared, stop, join: Some(join) })
}

impl Emulator {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `127.0.0.1:PORT` (what goes into `Host` and the SDK's `HttpProfile.endpoint`).
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Current state (after completing due tasks).
    pub fn state(&self) -> State {
        self.shared.settled().world.to_state()
    }

    /// Replaces the state; running tasks are discarded. Panics if the state is invalid
    /// (use [`Emulator::try_set_state`] to handle that).
    pub fn set_state(&self, state: State) {
        if let Err(e) = self.try_set_state(state) {
            panic!("clb-emulator: invalid state: {e}");
        }
    }

    /// Replaces the state; running tasks are discarded.
    pub fn try_set_state(&self, state: State) -> Result<(), StateError> {
        self.shared.set_state(&state)
    }

    /// Counters and request log.
    pub fn calls(&self) -> CallLog {
        self.shared.lock().calls.clone()
    }

    /// Replaces the fault configuration (resets the PRNG to `faults.seed` and fault counters).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().engine = faults::FaultEngine::new(faults);
    }

    /// Current fault configuration.
    pub fn faults(&self) -> Faults {
        self.shared.lock().engine.faults.clone()
    }

    /// Clears counters and the request log.
    pub fn reset_calls(&self) {
        self.shared.lock().calls = CallLog::default();
    }

    /// Clears counters, the log, fault counters, and (when `state`) restores the initial state.
    pub fn reset(&self, state: bool) {
        self.shared.reset(state);
    }

    /// Deletes a listener (e.g. mid-test). Returns whether it existed.
    pub fn delete_listener(&self, lb: &str, listener: &str) -> bool {
        self.shared.settled().world.delete_listener(lb, listener)
    }

    /// Status of a task.
    pub fn task(&self, id: &str) -> Option<TaskInfo> {
        self.shared.settled().tasks.info(id)
    }

    /// Sets the task delay for tasks created from now on.
    pub fn set_task_delay(&self, d: Duration) {
        self.shared.task_delay_ms.store(d.as_millis() as u64, Ordering::Relaxed);
    }

    /// Sets the per-action rate limit (0 = off).
    pub fn set_rate_limit(&self, per_second: u32) {
        self.shared.rate_limit.store(per_second, Ordering::Relaxed);
    }

    /// Sets the per-listener/rule backend quota.
    pub fn set_backend_quota(&self, quota: u32) {
        self.shared.backend_quota.store(quota, Ordering::Relaxed);
    }

    /// Shifts the emulator's clock (signature expiry, timestamps) by `secs`.
    pub fn set_clock_offset(&self, secs: i64) {
        self.shared.clock_offset.store(secs, Ordering::Relaxed);
    }

    /// Moves the emulator's clock forward by `by`: tasks and health checks due by then complete
    /// (signature expiry is not affected; see [`Emulator::set_clock_offset`]).
    pub fn advance(&self, by: Duration) {
        self.shared.clock.advance(by);
    }

    /// Sets the health-check timing (e.g. [`HealthConfig::instant`] or
    /// [`HealthConfig::scaled_down`]); the probe schedules restart from now, statuses are kept.
    pub fn set_health_config(&self, config: HealthConfig) {
        self.shared.set_health_config(config);
    }

    /// Current health-check timing.
    pub fn health_config(&self) -> HealthConfig {
        self.shared.lock().health.config
    }

    /// Says whether `ip` serves (answers health checks) from now on; every IP serves by default.
    pub fn set_serving(&self, ip: &str, serving: bool) {
        let mut flags = self.serving();
        let ip = state::normalize_ip(ip).unwrap_or_else(|_| ip.to_string());
        flags.ips.insert(ip, serving);
        self.shared.set_serving(flags);
    }

    /// Replaces every serving flag at once (e.g. the set of pod IPs that serve, with
    /// `default: false`).
    pub fn set_serving_all(&self, serving: Serving) {
        self.shared.set_serving(serving);
    }

    /// Current serving flags.
    pub fn serving(&self) -> Serving {
        self.shared.lock().health.serving()
    }

    /// Health of every bound target (what DescribeTargetHealth would report, plus serving flags).
    pub fn health(&self) -> Vec<TargetHealthInfo> {
        self.shared.health()
    }

    /// Starts (or restarts from zero) the traffic model of the rollout simulator.
    pub fn start_traffic(&self, config: TrafficConfig) {
        self.shared.start_traffic(config);
    }

    /// What the traffic model counted so far (None: not started).
    pub fn traffic(&self) -> Option<TrafficReport> {
        self.shared.traffic_report()
    }

    /// Replaces whom STS trusts and how long its credentials live (credentials issued so far stay).
    pub fn set_sts(&self, config: StsConfig) {
        self.shared.lock().sts = config;
    }

    /// Current STS configuration.
    pub fn sts(&self) -> StsConfig {
        self.shared.lock().sts.clone()
    }

    /// Replaces the metadata endpoint's instance role (its current credential stays valid until it
    /// expires).
    pub fn set_metadata(&self, config: MetadataConfig) {
        self.shared.lock().metadata = config;
    }

    /// Current metadata configuration.
    pub fn metadata(&self) -> MetadataConfig {
        self.shared.lock().metadata.clone()
    }

    /// The metadata service's base URL, as the SDKs spell theirs:
    /// `http://127.0.0.1:PORT/latest/meta-data/`.
    pub fn metadata_url(&self) -> String {
        format!("{}{}", self.endpoint(), metadata::PREFIX)
    }

    /// Every temporary credential issued so far (STS and metadata), in issue order.
    pub fn issued_credentials(&self) -> Vec<IssuedCredential> {
        self.shared.lock().issued.all()
    }

    /// Makes every temporary credential issued so far expire now: CLB calls signed with one get
    /// `AuthFailure.TokenFailure` (as after a real expiry); the metadata endpoint hands out a new one.
    pub fn expire_issued_credentials(&self) {
        let now = self.shared.now_unix_ms();
        self.shared.lock().issued.expire_all(now);
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(j) = self.join.take() {
            let _ = j.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

#[cfg(test)]
mod tests {
    /// Module dependencies point one way (issue 11): the admin API does not reach into the API
    /// server, and the seed format (`state`) knows nothing of its indexed form (`world`).
    #[test]
    fn no_import_circles() {
        for (file, text, forbidden) in [
            ("admin.rs", include_str!("admin.rs"), "server::"),
            ("response.rs", include_str!("response.rs"), "server::"),
            ("response.rs", include_str!("response.rs"), "admin::"),
            ("state.rs", include_str!("state.rs"), "world::"),
        ] {
            assert!(!text.contains(forbidden), "{file} uses `{forbidden}`: a dependency circle");
        }
    }
}
