//! The shared vocabulary of every stage: protocols, targets, bindings, pods, bound and desired targets, changes
//! and their failures. Plain data, no I/O.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Builders of these types for tests and benchmarks.
#[cfg(any(test, feature = "testing"))]
pub mod testing;

/// A CLB listener protocol. Layer-7 protocols bind backends on rules (domain + url), layer-4 on the listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    TcpSsl,
    Quic,
    Http,
    Https,
}

impl Protocol {
    /// Every protocol, in the order used by messages.
    pub const ALL: [Protocol; 6] =
        [Protocol::Tcp, Protocol::Udp, Protocol::TcpSsl, Protocol::Quic, Protocol::Http, Protocol::Https];

    /// Whether backends hang off rules (HTTP/HTTPS) rather than the listener itself.
    pub(crate) fn is_l7(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }

    /// The spelling the CLB API uses (`TCP_SSL`, `HTTPS`, ...).
    pub(crate) fn api_name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::TcpSsl => "TCP_SSL",
            Protocol::Quic => "QUIC",
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.api_name())
    }
}

impl FromStr for Protocol {
    type Err = String;

    /// Case-insensitive: `tcp`, `TCP` and `Tcp` are the same protocol.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .find(|p| p.api_name().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("expected one of tcp, udp, tcp_ssl, quic, http, https, got `{s}`"))
    }
}

/// The target port: a number, or the name of a container port resolved per pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl std::fmt::Display for PortRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => f.write_str(s),
        }
    }
}

/// A rule's identity: its position in the rules file. Every record made from the rule (its plan, what apply did,
/// its report, Events and metrics) carries it, and watch mode's passes over some of the rules keep it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RuleId(pub usize);

/// A backend as the load balancer addresses it: an IP and a port. Pod targets are bound by `EniIp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Target {
    pub ip: IpAddr,
    pub port: u16,
}

impl Target {
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Target { ip, port }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

/// Target weight, 0..=100. Weight 0 keeps a target bound but sends it no new traffic (drain).
pub type Weight = u8;

/// The default weight of a registered target, as in the CLB API.
pub const DEFAULT_WEIGHT: Weight = 10;

/// Where backends are bound, by resolved ids: a layer-4 listener, or one rule (location) of a layer-7 listener.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Binding {
    pub lb: String,
    pub listener: String,
    pub location: Option<String>,
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.lb, self.listener)?;
        if let Some(loc) = &self.location {
            write!(f, "/{loc}")?;
        }
        Ok(())
    }
}

/// Where a rule binds, in the words of the rules file: `lb-1a2b3c4d HTTP:80 example.com/api`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub load_balancer_id: String,
    pub protocol: Protocol,
    pub port: u16,
    /// `domain` + `url` of a layer-7 rule.
    pub l7: Option<(String, String)>,
}

impl Place {
    /// `TCP:80` or `HTTP:80 example.com/api`, without the load balancer.
    pub(crate) fn listener_and_rule(&self) -> String {
        match &self.l7 {
            Some((domain, url)) => format!("{}:{} {domain}{url}", self.protocol, self.port),
            None => format!("{}:{}", self.protocol, self.port),
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.load_balancer_id, self.listener_and_rule())
    }
}

/// What clbsync needs to know about a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    /// `status.phase`, e.g. `Running`, `Pending`.
    pub phase: String,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set: the pod is shutting down.
    pub terminating: bool,
    /// When the pod's deletion began, Unix seconds (`metadata.deletionTimestamp` less
    /// `deletionGracePeriodSeconds`): since when a drain of its target may have waited, the cluster's record,
    /// which a restart of clbsync does not lose.
    pub terminating_since: Option<i64>,
    /// `status.podIPs` (or `status.podIP`), in the order the cluster reports them.
    pub ips: Vec<IpAddr>,
    /// Named container ports (`name` → `containerPort`) of all containers.
    pub ports: Vec<(String, u16)>,
    /// Set when the pod opts into clbsync's readiness gate (`spec.readinessGates` names [`GATE_CONDITION`]).
    pub gate: Option<PodGate>,
}

/// What a backend's query selects: its pods; for a `service:` backend, the target port the Service's port names
/// (its `targetPort`: a number, or a container-port name resolved per pod; `None`: the rule's own `port:`); and
/// the replicas its workload asks for (`spec.replicas`, or its scale's), where the kind has one and it was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selected {
    pub pods: Vec<Pod>,
    pub target_port: Option<PortRef>,
    pub replicas: Option<u32>,
}

impl From<Vec<Pod>> for Selected {
    fn from(pods: Vec<Pod>) -> Self {
        Selected { pods, target_port: None, replicas: None }
    }
}

/// The readiness-gate condition clbsync sets on the pods that opt in.
pub const GATE_CONDITION: &str = "clbsync.dev/registered";

/// What the readiness gate needs to know about a pod that opts in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodGate {
    /// The `ContainersReady` condition is `True`. A gated pod is registered on it, not on `Ready`, which waits
    /// for the gate.
    pub containers_ready: bool,
    /// The pod's [`GATE_CONDITION`] condition as it is now; `None` when not set yet.
    pub condition: Option<GateCondition>,
}

/// The state of a pod's [`GATE_CONDITION`] condition: what clbsync read, or what it sets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GateCondition {
    /// `status: "True"`.
    pub status: bool,
    /// CamelCase: `Registered` when True, else why not (`WaitingForHealthCheck`, ...).
    pub reason: String,
    pub message: String,
}

/// Whether a pod should receive traffic now, or is going away and should be drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodState {
    Ready,
    Terminating,
}

/// A target that should be bound, with the pod it comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredTarget {
    pub target: Target,
    pub weight: Weight,
    pub pod: String,
    pub state: PodState,
    /// For a terminating pod, its deletion time (Unix seconds), when known.
    pub since: Option<i64>,
}

/// How a bound target was bound: by IP (`EniIp`, what clbsync manages) or as an instance (hand-bound, never
/// touched).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TargetKind {
    /// Bound by IP (`Type` `ENI`): pod targets, managed by clbsync.
    Ip,
    /// Anything else (`CVM`, `CCN`, ...), with its `Type` and `InstanceId`; shown as unmanaged.
    Instance { kind: String, instance_id: String },
}

/// What CLB's health checks say of a bound target (`DescribeTargetHealth`). Read only when a decision needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Health {
    /// Not read.
    #[default]
    Unknown,
    /// Passing its checks, or checks are off (`Close`): it takes new requests while its weight is above 0.
    Healthy,
    /// Not yet probed, probing, or failing: CLB sends it no new requests.
    Unhealthy,
}

/// A target bound to a listener or rule right now, as `DescribeTargets` (and `DescribeTargetHealth`) report it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundTarget {
    pub binding: Binding,
    pub target: Target,
    pub weight: Weight,
    pub kind: TargetKind,
    pub health: Health,
    /// `Backend.Tag`: empty when untagged; `clbsync:NAME` when registered by clbsync with `--owner NAME`.
    pub tag: String,
}

/// The health of one bound target, as `DescribeTargetHealth` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetHealth {
    pub binding: Binding,
    pub target: Target,
    pub health: Health,
}

/// One target change for a binding. `weight` is the weight to register with or set; deregistration ignores it.
/// `tag` is the tag to register with or to set (`--owner`); `None` registers untagged.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    pub binding: Binding,
    pub target: Target,
    pub weight: Weight,
    pub tag: Option<String>,
}

/// The name a clbsync installation owns its targets by (`--owner`): its targets carry the tag `clbsync:NAME`, and
/// it changes no target tagged for another owner.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner(String);

/// The prefix of every tag clbsync sets.
pub(crate) const TAG_PREFIX: &str = "clbsync:";

impl Owner {
    /// 1–63 characters, DNS labels joined by `.`: each of `a-z`, `0-9` and `-`, starting and ending with a letter
    /// or digit, like a Kubernetes name. (`.` and `..` are not names: as a Pushgateway group they would be
    /// another path.)
    pub fn new(name: &str) -> Result<Owner, String> {
        let label = |l: &str| {
            let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
            let (Some(&first), Some(&last)) = (l.as_bytes().first(), l.as_bytes().last()) else { return false };
            alnum(first) && alnum(last) && l.bytes().all(|b| alnum(b) || b == b'-')
        };
        if name.len() > 63 || !name.split('.').all(label) {
            return Err(format!(
                "`{}` is not an owner name: use 1 to 63 characters of a-z, 0-9, `-` and `.`, starting and ending with a letter or digit, with no `..` (the cluster's name, say)",
                printable(name)
            ));
        }
        Ok(Owner(name.to_string()))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// The tag of this owner's targets: `clbsync:NAME`.
    pub fn tag(&self) -> String {
        format!("{TAG_PREFIX}{}", self.0)
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `c` must not reach a terminal, a log or an Event as it is: a control character (C0 with newline and
/// ESC, DEL, C1) or a bidirectional formatting character (U+061C, U+200E, U+200F, U+202A–U+202E,
/// U+2066–U+2069), which reorders what follows it on screen ("Trojan Source").
pub(crate) fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Text that came from a server (CLB, Kubernetes), made safe to print: every [`is_unprintable`] character becomes
/// a visible escape such as `\n`, `\u{1b}` or `\u{202e}`, so a message can neither drive the terminal, reorder
/// what is shown, nor forge a line of the report or the log.
pub(crate) fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unprintable) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else if is_unprintable(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Why one change did not happen (or might not have): the API's code, message and request id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The API error code (`LimitExceeded`, ...), or a clbsync code for non-API failures: `TaskFailed`,
    /// `TaskTimeout`, `PartialFailure`, `Transport`, `OutcomeUnknown`, `Stopped` (sent, but not confirmed before the
    /// run stopped), `Failure::NOT_SENT`.
    pub code: String,
    pub message: String,
    /// The RequestId (or task id) Tencent support asks for, when there was one.
    pub request_id: Option<String>,
}

impl Failure {
    /// The code of a change the client did not send because the run had stopped: it was not attempted.
    pub(crate) const NOT_SENT: &'static str = "NotSent";

    pub(crate) fn is_not_sent(&self) -> bool {
        self.code == Self::NOT_SENT
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (RequestId {id})")?;
        }
        Ok(())
    }
}

/// What CLB holds for one rule: the binding its listener (and location) resolved to, and the targets bound there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleTargets {
    pub binding: Binding,
    pub targets: Vec<BoundTarget>,
}

/// What CLB holds for each rule, or why it could not be read.
pub type Actual = std::collections::BTreeMap<RuleId, Result<RuleTargets, String>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_every_control_character_and_nothing_else() {
        assert!(matches!(printable("plain: ünïcode / \"quotes\""), Cow::Borrowed(_)));
        assert_eq!(
            printable("a\u{1b}]0;title\u{7}\nforged\r\u{9b}x\u{7f}"),
            "a\\u{1b}]0;title\\u{7}\\nforged\\r\\u{9b}x\\u{7f}"
        );
        // Issue 24 #21: bidirectional formatting characters reorder what follows them on screen.
        assert_eq!(printable("clbsync:a\u{202e}b\u{2066}c\u{200f}"), "clbsync:a\\u{202e}b\\u{2066}c\\u{200f}");
        assert!(matches!(printable("عربي שלום"), Cow::Borrowed(_)), "right-to-left letters are text");
    }

    #[test]
    fn owner_names_are_dns_labels_joined_by_dots() {
        for ok in ["a", "prod-a", "prod.eu-1", "0", &"x".repeat(63)] {
            assert!(Owner::new(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a..b", "-a", "a-", ".a", "a.", "A", "a_b", "a/b", &"x".repeat(64)] {
            assert!(Owner::new(bad).is_err(), "{bad:?}");
        }
    }
}
