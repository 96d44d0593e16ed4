//! End to end: the real `clbsync` binary against the test kube-apiserver and the CLB emulator (issue 7).
//!
//! Every scenario builds a [`World`]: one fresh namespace with Deployments and Pods, an emulator seeded with the
//! same topology (two load balancers in the rules, a third that is not, an HTTP rule that is not in the rules, CVM
//! backends), and a rules file that binds them. Scenarios differ only in which pods exist and what is bound at the
//! start; the oracle ([`World::expected`]) says what a converged load balancer looks like.

mod bounds;
mod convergence;
mod correctness;
pub mod credentials;
mod election;
mod events;
mod faults;
pub mod gate;
mod input;
mod kube_faults;
mod logs;
mod metrics;
mod owners;
mod ownership;
mod plans;
mod progress;
mod rolling;
mod services;
mod signals;
mod split;
pub mod watch;
pub mod workloads;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use clb_emulator::state::TargetKind;
use clb_emulator::{Config, Emulator, State};
use kube::api::{DeleteParams, Patch, PatchParams};

use crate::support::kube::{SelectorExt, TestNs, kubeconfig_path, pod, selector};

/// The temporary credential of every seed (`TENCENTCLOUD_SESSION_TOKEN`).
pub const TEMP_ID: &str = "AKIDclbsyncTEMPORARY00000000000000";
pub const TEMP_KEY: &str = "clbsyncTemporarySecretKey000000000";
pub const TOKEN: &str = "clbsync-session-token-e2e";

/// A managed binding: one rule of the rules file and where it lands on the emulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Slot {
    /// HTTP rule `/api` of lb-e2e00001, Deployment `api`, port 8080, weight 10.
    Api,
    /// HTTP rule `/` of lb-e2e00001, Deployment `web`, port 8080, weight 20.
    Web,
    /// TCP listener 6379 of lb-e2e00001, selector `app=redis`, port 6379, weight 10.
    Redis,
    /// TCP listener 443 of lb-e2e00002, Deployment `api`, port 8443, weight 10.
    Tls,
}

impl Slot {
    pub const ALL: [Slot; 4] = [Slot::Api, Slot::Web, Slot::Redis, Slot::Tls];

    pub fn lb(self) -> &'static str {
        match self {
            Slot::Tls => "lb-e2e00002",
            _ => "lb-e2e00001",
        }
    }
    pub fn listener(self) -> &'static str {
        match self {
            Slot::Api | Slot::Web => "lbl-http0080",
            Slot::Redis => "lbl-tcp06379",
            Slot::Tls => "lbl-tcp00443",
        }
    }
    pub fn location(self) -> Option<&'static str> {
        match self {
            Slot::Api => Some("loc-api00001"),
            Slot::Web => Some("loc-web00001"),
            _ => None,
        }
    }
    /// The app label of the pods behind it.
    pub fn app(self) -> &'static str {
        match self {
            Slot::Api | Slot::Tls => "api",
            Slot::Web => "web",
            Slot::Redis => "redis",
        }
    }
    pub fn port(self) -> u16 {
        match self {
            Slot::Api | Slot::Web => 8080,
            Slot::Redis => 6379,
            Slot::Tls => 8443,
        }
    }
    pub fn weight(self) -> u32 {
        match self {
            Slot::Web => 20,
            _ => 10,
        }
    }
}

/// What a pod looks like to clbsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    Ready,
    NotReady,
    /// deletionTimestamp set (kept by a finalizer).
    Terminating,
}

#[derive(Clone, Debug)]
pub struct P {
    pub app: &'static str,
    pub ip: String,
    pub state: PodState,
}

/// A ready pod of `app` with this IP.
pub fn p(app: &'static str, ip: &str) -> P {
    P { app, ip: ip.into(), state: PodState::Ready }
}

impl P {
    pub fn not_ready(mut self) -> P {
        self.state = PodState::NotReady;
        self
    }
    pub fn terminating(mut self) -> P {
        self.state = PodState::Terminating;
        self
    }
    pub fn name(&self) -> String {
        format!("{}-{}", self.app, self.ip.replace(['.', ':'], "-"))
    }
}

/// A target bound at the start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum B {
    /// Bound by IP (what clbsync manages).
    Eni(String, u16, u32),
    /// A CVM backend bound by hand (never touched).
    Cvm(String, u16, u32),
}

pub fn eni(ip: &str, port: u16, weight: u32) -> B {
    B::Eni(ip.into(), port, weight)
}
pub fn cvm(ip: &str, port: u16, weight: u32) -> B {
    B::Cvm(ip.into(), port, weight)
}

impl B {
    fn yaml(&self) -> String {
        match self {
            B::Eni(ip, port, w) => format!("{{ip: {ip}, port: {port}, weight: {w}}}"),
            B::Cvm(ip, port, w) => {
                let id = format!("ins-{:08x}", fnv(&format!("{ip}:{port}")));
                format!("{{type: CVM, instance_id: {id}, ip: {ip}, port: {port}, weight: {w}}}")
            }
        }
    }
}

fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x01000193))
}

/// `(ip, port, weight)`, sorted.
pub type Targets = Vec<(String, u16, u32)>;

/// How to build a world.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    pub pods: Vec<P>,
    pub bound: BTreeMap<Slot, Vec<B>>,
    /// `policy:` per slot (default sync).
    pub policy: BTreeMap<Slot, &'static str>,
    /// A slot's backend in another namespace than the world's.
    pub namespace: BTreeMap<Slot, String>,
    /// A slot's pods named otherwise than by default (`workload: {kind: StatefulSet, name: redis}`).
    pub source: BTreeMap<Slot, String>,
}

impl Spec {
    pub fn pods(mut self, pods: impl IntoIterator<Item = P>) -> Self {
        self.pods.extend(pods);
        self
    }
    pub fn bound(mut self, slot: Slot, targets: impl IntoIterator<Item = B>) -> Self {
        self.bound.entry(slot).or_default().extend(targets);
        self
    }
    pub fn policy(mut self, slot: Slot, policy: &'static str) -> Self {
        self.policy.insert(slot, policy);
        self
    }
    pub fn namespace(mut self, slot: Slot, ns: &str) -> Self {
        self.namespace.insert(slot, ns.into());
        self
    }
    pub fn source(mut self, slot: Slot, source: &str) -> Self {
        self.source.insert(slot, source.into());
        self
    }

    /// A random but reproducible starting point: pods in every state and a bound set that mixes current,
    /// stale, wrongly weighted, wrong-port and CVM targets.
    pub fn random(seed: u64) -> Spec {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut spec = Spec::default();
        for (a, app) in ["api", "web", "redis"].into_iter().enumerate() {
            let ready = rng.usize(1..=4);
            let not_ready = rng.usize(0..=2);
            let terminating = rng.usize(0..=2);
            for k in 0..ready + not_ready + terminating {
                let ip = format!("10.{}.0.{}", a + 1, k + 1);
                let pod = p(app, &ip);
                spec.pods.push(if k < ready {
                    pod
                } else if k < ready + not_ready {
                    pod.not_ready()
                } else {
                    pod.terminating()
                });
            }
        }
        for slot in Slot::ALL {
            let mut bound: BTreeMap<(String, u16), B> = BTreeMap::new();
            for pod in spec.pods.iter().filter(|p| p.app == slot.app()) {
                if rng.bool() {
                    let w = if rng.bool() { slot.weight() } else { rng.u32(0..=100) };
                    bound.insert((pod.ip.clone(), slot.port()), eni(&pod.ip, slot.port(), w));
                }
                if rng.u8(..) < 40 {
                    bound.insert((pod.ip.clone(), 9999), eni(&pod.ip, 9999, 10));
                }
            }
            for _ in 0..rng.usize(0..=3) {
                let ip = format!("10.200.{}.{}", rng.u8(0..4), rng.u8(1..250));
                bound.insert((ip.clone(), slot.port()), eni(&ip, slot.port(), rng.u32(0..=100)));
            }
            if rng.u8(..) < 80 {
                let ip = format!("172.16.{}.{}", rng.u8(0..4), rng.u8(1..250));
                bound.insert((ip.clone(), 30080), cvm(&ip, 30080, rng.u32(0..=100)));
            }
            spec.bound.insert(slot, bound.into_values().collect());
        }
        spec
    }

    fn state_yaml(&self) -> String {
        let t = |slot: Slot| {
            let items: Vec<String> = self.bound.get(&slot).into_iter().flatten().map(B::yaml).collect();
            format!("[{}]", items.join(", "))
        };
        format!(
            "region: ap-guangzhou
credentials:
  - {{secret_id: {id}, secret_key: {key}}}
  - {{secret_id: {TEMP_ID}, secret_key: {TEMP_KEY}, token: {TOKEN}}}
load_balancers:
  - id: lb-e2e00001
    listeners:
      - id: lbl-http0080
        protocol: HTTP
        port: 80
        rules:
          - {{location_id: loc-api00001, domain: e2e.example.com, url: /api, targets: {api}}}
          - {{location_id: loc-web00001, domain: e2e.example.com, url: /, targets: {web}}}
          - {{location_id: loc-admin001, domain: e2e.example.com, url: /admin, targets: [{{ip: 10.9.9.9, port: 80}}]}}
      - {{id: lbl-tcp06379, protocol: TCP, port: 6379, targets: {redis}}}
  - id: lb-e2e00002
    listeners:
      - {{id: lbl-tcp00443, protocol: TCP, port: 443, targets: {tls}}}
  - id: lb-other001
    listeners:
      - {{id: lbl-other080, protocol: TCP, port: 80, targets: [{{ip: 10.9.9.8, port: 80}}, {{ip: 10.1.0.1, port: 8080}}]}}
",
            id = clb_emulator::DEFAULT_SECRET_ID,
            key = clb_emulator::DEFAULT_SECRET_KEY,
            api = t(Slot::Api),
            web = t(Slot::Web),
            redis = t(Slot::Redis),
            tls = t(Slot::Tls),
        )
    }

    fn rules_yaml(&self, ns: &str) -> String {
        let backend = |slot: Slot, source: &str| {
            let ns = self.namespace.get(&slot).map_or(ns, String::as_str);
            let source = self.source.get(&slot).map_or(source, String::as_str);
            let policy = self.policy.get(&slot).copied().unwrap_or("sync");
            format!("{{namespace: {ns}, {source}, port: {}, weight: {}, policy: {policy}}}", slot.port(), slot.weight())
        };
        format!(
            "- load_balancer_id: lb-e2e00001
  listeners:
    - port: 80
      protocol: http
      rules:
        - {{domain: e2e.example.com, url: /api, backend: {api}}}
        - {{domain: e2e.example.com, url: /, backend: {web}}}
    - {{port: 6379, protocol: tcp, backend: {redis}}}
- load_balancer_id: lb-e2e00002
  listeners:
    - {{port: 443, protocol: tcp, backend: {tls}}}
",
            api = backend(Slot::Api, "deployment: api"),
            web = backend(Slot::Web, "deployment: web"),
            redis = backend(Slot::Redis, "selector: {app: redis}"),
            tls = backend(Slot::Tls, "deployment: api"),
        )
    }
}

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: &Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
    /// Everything the user saw, for assertion messages.
    pub fn all(&self) -> String {
        format!("exit {:?}\n--- stdout\n{}--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "{}", self.all());
        assert!(!self.stderr.contains("panicked"), "{}", self.all());
        self
    }
}

/// One namespace with pods, one emulator, one rules file.
pub struct World {
    pub emu: Emulator,
    pub ns: TestNs,
    pub spec: Spec,
    rules: tempfile::NamedTempFile,
    /// The kubeconfig the binary is given (the admin one unless a test swaps it).
    pub kubeconfig: PathBuf,
    /// The emulator state right after seeding.
    pub seeded: State,
}

impl World {
    pub async fn new(prefix: &str, spec: Spec) -> World {
        let ns = TestNs::new(&format!("e2e-{prefix}")).await;
        ns.deployment("api", selector().label("app", "api")).await;
        ns.deployment("web", selector().label("app", "web")).await;
        for pod in &spec.pods {
            create_pod(&ns, pod).await;
        }
        let state = State::from_yaml_str(&spec.state_yaml()).expect("valid seed");
        // Health checks follow the serving flags at once: a target is healthy as soon as it is bound (the rollout
        // tests use CLB's real timings, scaled).
        let config = Config { state, health: clb_emulator::HealthConfig::instant(), ..Config::default() };
        let emu = clb_emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.expect("emulator starts");
        let seeded = emu.state();
        let rules = write_temp(&spec.rules_yaml(&ns.name));
        World { emu, ns, spec, rules, kubeconfig: kubeconfig_path(), seeded }
    }

    pub fn rules_path(&self) -> PathBuf {
        self.rules.path().to_path_buf()
    }

    /// The rules file the world's runs use, as text.
    pub fn rules_text(&self) -> String {
        std::fs::read_to_string(self.rules.path()).expect("read the rules file")
    }

    /// Replaces the rules file the world's runs use.
    pub fn set_rules(&mut self, yaml: &str) {
        self.rules = write_temp(yaml);
    }

    /// `clbsync <args> --rules … --endpoint … --region … --kubeconfig …` with the emulator's credentials, as a
    /// plain process (for tests that signal it).
    pub fn process(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = cli_process(&self.emu, args);
        cmd.arg("--rules").arg(self.rules.path()).arg("--kubeconfig").arg(&self.kubeconfig);
        cmd
    }

    /// [`World::process`] as an assert_cmd command with a deadline.
    pub fn command(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::from_std(self.process(args));
        cmd.timeout(Duration::from_secs(90));
        cmd
    }

    /// Runs the binary off the runtime thread, so the in-process emulator keeps serving.
    pub async fn run(&self, args: &[&str]) -> Run {
        run(self.command(args)).await
    }

    pub async fn reconcile(&self) -> Run {
        self.run(&["reconcile"]).await
    }

    /// `diff` and `reconcile --dry-run` change nothing, whatever state the world is in.
    pub async fn assert_read_only_commands_change_nothing(&self) {
        let before = self.emu.state();
        let mutating = self.emu.calls().mutating();
        for args in [&["diff", "--detailed-exitcode"][..], &["reconcile", "--dry-run"]] {
            let run = self.run(args).await;
            assert!(matches!(run.code, Some(0..=2)), "{args:?}: {}", run.all());
            assert!(!run.stderr.contains("panicked"), "{}", run.all());
        }
        assert_eq!(self.emu.calls().mutating(), mutating, "diff and --dry-run make no mutating call");
        assert_eq!(self.emu.state(), before, "diff and --dry-run change nothing");
    }

    /// The ENI targets bound to a slot now.
    pub fn targets(&self, slot: Slot) -> Targets {
        targets_of(&self.emu.state(), slot, TargetKind::Eni)
    }

    /// What a slot looks like after one run, given the state before it (every target in it healthy): every ready
    /// pod at the rule's weight, terminating pods that were bound drained to weight 0 (on any port), targets of
    /// other pods gone; with upsert-only, stale targets stay too. Make before break: a ready pod's old port (a
    /// port change) stays while the rule would have fewer pods taking traffic than took it before (up to how many
    /// it will have), the heaviest first; and when no target that keeps a weight would take traffic, one removal
    /// of a target whose pod still serves (the heaviest) waits, its weight kept.
    pub fn expected(&self, slot: Slot, before: &State) -> Targets {
        use std::collections::BTreeSet;
        let was: BTreeMap<(String, u16), u32> =
            targets_of(before, slot, TargetKind::Eni).into_iter().map(|(ip, port, w)| ((ip, port), w)).collect();
        let upsert = self.spec.policy.get(&slot) == Some(&"upsert-only");
        let mut out: BTreeMap<(String, u16), u32> = BTreeMap::new();
        if upsert {
            out.extend(was.clone());
        }
        let pods: Vec<&P> = self.spec.pods.iter().filter(|p| p.app == slot.app()).collect();
        let ready_ip = |ip: &str| pods.iter().any(|p| p.ip == ip && p.state == PodState::Ready);
        let terminating_ip = |ip: &str| pods.iter().any(|p| p.ip == ip && p.state == PodState::Terminating);
        for pod in &pods {
            let key = (pod.ip.clone(), slot.port());
            match pod.state {
                PodState::Ready => {
                    out.insert(key, slot.weight());
                }
                PodState::Terminating if was.contains_key(&key) => {
                    out.insert(key, 0);
                }
                _ => {}
            }
        }
        if !upsert {
            // A terminating pod's target on another port is drained too.
            for ((ip, port), w) in &was {
                if *port != slot.port() && *w > 0 && terminating_ip(ip) {
                    out.insert((ip.clone(), *port), 0);
                }
            }
        }
        let cvm: Vec<String> =
            targets_of(before, slot, TargetKind::Cvm).into_iter().filter(|t| t.2 > 0).map(|t| t.0).collect();
        let ips = |keys: Vec<&(String, u16)>| keys.into_iter().map(|k| k.0.clone()).collect::<BTreeSet<String>>();
        // Bound before (so healthy) and weighted after: a weight change lands in the same call as the drains.
        let mut keepers = ips(out.iter().filter(|(k, w)| **w > 0 && was.contains_key(*k)).map(|(k, _)| k).collect());
        keepers.extend(cvm.iter().cloned());
        let moved: Vec<(&(String, u16), &u32)> =
            was.iter().filter(|((ip, port), w)| !upsert && **w > 0 && ready_ip(ip) && *port != slot.port()).collect();
        let mut serving =
            ips(out.iter().filter(|(k, w)| **w > 0 && was.get(*k).is_some_and(|b| *b > 0)).map(|(k, _)| k).collect());
        serving.extend(cvm.iter().cloned());
        serving.extend(moved.iter().map(|(k, _)| k.0.clone()));
        let mut eventual = ips(out.iter().filter(|(_, w)| **w > 0).map(|(k, _)| k).collect());
        eventual.extend(cvm.iter().cloned());
        let needed = serving.len().min(eventual.len());
        let mut by_rank = moved.clone();
        by_rank.sort_by_key(|((ip, port), w)| std::cmp::Reverse((**w, ip.parse::<std::net::IpAddr>().ok(), *port)));
        let mut held = keepers.clone();
        let mut any_held = false;
        for (key, w) in by_rank {
            if held.len() >= needed {
                break;
            }
            if held.insert(key.0.clone()) {
                out.insert(key.clone(), *w);
                any_held = true;
            }
        }
        let serving_removal = |(ip, port): &(String, u16), w: &u32| {
            let drained = terminating_ip(ip) && (*port == slot.port() || !upsert);
            let moved = !upsert && ready_ip(ip) && *port != slot.port();
            *w > 0 && (drained || moved)
        };
        let ready = pods.iter().any(|p| p.state == PodState::Ready);
        if ready && keepers.is_empty() && !any_held {
            let held = was
                .iter()
                .filter(|(k, w)| serving_removal(k, w))
                .max_by_key(|((ip, port), w)| (**w, ip.parse::<std::net::IpAddr>().ok(), *port));
            if let Some((key, w)) = held {
                out.insert(key.clone(), *w);
            }
        }
        out.into_iter().map(|((ip, port), w)| (ip, port, w)).collect()
    }

    /// Every managed slot equals the oracle, and nothing clbsync does not own has changed since `before`.
    #[track_caller]
    pub fn assert_converged(&self, before: &State, context: &Run) {
        for slot in Slot::ALL {
            assert_eq!(self.targets(slot), self.expected(slot, before), "{slot:?} is not converged\n{}", context.all());
        }
        self.assert_unowned_untouched(context);
    }

    /// CVM backends, the rule not in rules.yaml and the load balancer not in rules.yaml are exactly as seeded.
    #[track_caller]
    pub fn assert_unowned_untouched(&self, context: &Run) {
        let now = self.emu.state();
        for slot in Slot::ALL {
            assert_eq!(
                targets_of(&now, slot, TargetKind::Cvm),
                targets_of(&self.seeded, slot, TargetKind::Cvm),
                "CVM backends of {slot:?} changed\n{}",
                context.all()
            );
        }
        let admin = |s: &State| rule_targets(s, "lb-e2e00001", "lbl-http0080", Some("loc-admin001"));
        assert_eq!(admin(&now), admin(&self.seeded), "the rule not in rules.yaml changed\n{}", context.all());
        let other = |s: &State| rule_targets(s, "lb-other001", "lbl-other080", None);
        assert_eq!(other(&now), other(&self.seeded), "the load balancer not in rules.yaml changed\n{}", context.all());
    }

    /// Nothing was registered twice, and no request was refused as malformed.
    #[track_caller]
    pub fn assert_no_duplicate_registration(&self) {
        let calls = self.emu.calls();
        assert_eq!(calls.errors("InvalidParameterValue.Duplicate"), 0, "registered twice: {:?}", calls.errors_by_code);
    }

    /// A clean run converges (a second one ends a drain that waited for its replacement), a further one makes no
    /// mutating call, and `diff --detailed-exitcode` says in sync.
    pub async fn assert_converges_and_stays(&self) {
        for _ in 0..2 {
            let before = self.emu.state();
            let run = self.reconcile().await;
            run.assert_code(0);
            self.assert_converged(&before, &run);
            self.assert_no_duplicate_registration();
            if !run.stdout.contains(" wait ") {
                break;
            }
        }

        self.emu.reset_calls();
        let again = self.reconcile().await;
        again.assert_code(0);
        assert_eq!(self.emu.calls().mutating(), 0, "a second run changes nothing\n{}", again.all());
        assert!(again.stdout.starts_with("In sync"), "{}", again.all());
        self.run(&["diff", "--detailed-exitcode"]).await.assert_code(0);
        assert_eq!(self.emu.calls().mutating(), 0);
    }
}

/// The binary with an empty environment except the emulator's credentials, pointed at the emulator.
pub fn cli_process(emu: &Emulator, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_clbsync"));
    cmd.env_clear()
        .env("NO_COLOR", "1")
        .env("TENCENTCLOUD_SECRET_ID", clb_emulator::DEFAULT_SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", clb_emulator::DEFAULT_SECRET_KEY)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .args(["--endpoint", &emu.endpoint(), "--region", "ap-guangzhou"]);
    cmd
}

pub async fn run(mut cmd: assert_cmd::Command) -> Run {
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("clbsync runs")).await.expect("join");
    Run::from(&out)
}

pub fn write_temp(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().expect("temp file");
    std::io::Write::write_all(&mut f, text.as_bytes()).expect("write temp file");
    f
}

pub async fn create_pod(ns: &TestNs, p: &P) {
    let mut pod = pod(&p.name()).label("app", p.app).port("http", i32::from(8080u16)).ip(&p.ip);
    pod = match p.state {
        PodState::Ready => pod.ready(),
        PodState::NotReady => pod.not_ready(),
        PodState::Terminating => pod.ready().terminating(),
    };
    ns.create(pod).await;
}

fn rule_targets(state: &State, lb: &str, listener: &str, location: Option<&str>) -> Vec<clb_emulator::state::Target> {
    let Some(lb) = state.load_balancers.iter().find(|l| l.id == lb) else { return Vec::new() };
    let Some(l) = lb.listeners.iter().find(|l| l.id == listener) else { return Vec::new() };
    let mut out = match location {
        Some(loc) => l.rules.iter().find(|r| r.location_id == loc).map(|r| r.targets.clone()).unwrap_or_default(),
        None => l.targets.clone(),
    };
    out.sort_by(|a, b| (&a.ip, a.port).cmp(&(&b.ip, b.port)));
    out
}

pub fn targets_of(state: &State, slot: Slot, kind: TargetKind) -> Targets {
    let mut out: Targets = rule_targets(state, slot.lb(), slot.listener(), slot.location())
        .into_iter()
        .filter(|t| t.kind == kind)
        .map(|t| (t.ip.clone(), t.port, t.weight))
        .collect();
    out.sort();
    out
}

/// Pod lifecycle during a scenario: the cluster and the oracle change together.
impl World {
    fn pod_index(&self, ip: &str) -> usize {
        self.spec.pods.iter().position(|p| p.ip == ip).unwrap_or_else(|| panic!("no pod with IP {ip}"))
    }

    pub async fn add_pod(&mut self, pod: P) {
        create_pod(&self.ns, &pod).await;
        self.spec.pods.push(pod);
    }

    /// Ready=True, like a kubelet after the readiness probe passed.
    pub async fn make_ready(&mut self, ip: &str) {
        let i = self.pod_index(ip);
        let status = serde_json::json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2025-01-01T00:00:00Z"}]}});
        self.ns
            .pods()
            .patch_status(&self.spec.pods[i].name(), &PatchParams::default(), &Patch::Merge(status))
            .await
            .expect("patch pod status");
        self.spec.pods[i].state = PodState::Ready;
    }

    /// Deleted with a finalizer holding it: deletionTimestamp set, still listed, still has its IP.
    pub async fn terminate(&mut self, ip: &str) {
        let i = self.pod_index(ip);
        let name = self.spec.pods[i].name();
        let finalizer = serde_json::json!({"metadata": {"finalizers": ["clbsync.test/keep"]}});
        let pods = self.ns.pods();
        pods.patch(&name, &PatchParams::default(), &Patch::Merge(finalizer)).await.expect("add finalizer");
        pods.delete(&name, &DeleteParams::default()).await.expect("delete pod");
        self.spec.pods[i].state = PodState::Terminating;
    }

    /// The finalizer is released: a terminating pod disappears.
    pub async fn release(&mut self, ip: &str) {
        let i = self.pod_index(ip);
        let name = self.spec.pods[i].name();
        let none = serde_json::json!({"metadata": {"finalizers": null}});
        let pods = self.ns.pods();
        pods.patch(&name, &PatchParams::default(), &Patch::Merge(none)).await.expect("drop finalizer");
        // No kubelet confirms a graceful deletion here: finish it like one would.
        match pods.delete(&name, &DeleteParams::default().grace_period(0)).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => panic!("delete pod {name}: {e}"),
        }
        self.spec.pods.remove(i);
    }
}
