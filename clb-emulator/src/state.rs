//! The emulator's state as seen by tests: credentials and load balancers with listeners, rules and
//! targets. This is the seed-file format (YAML or JSON) and the shape of `GET /_emulator/state`.
//! Internally the state is held in indexed maps (see `world.rs`).

use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

/// Default SecretId accepted when the state names no credentials.
pub const DEFAULT_SECRET_ID: &str = "AKIDclbsyncEMULATOR000000000000000";
/// Default SecretKey accepted when the state names no credentials.
pub const DEFAULT_SECRET_KEY: &str = "clbsyncEmulatorSecretKey0000000000";
/// Default region reported in `TargetRegionInfo`.
pub const DEFAULT_REGION: &str = "ap-guangzhou";

/// Errors loading or validating a state.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// File path.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The YAML/JSON could not be parsed.
    #[error("parsing state: {0}")]
    Parse(#[from] serde_yaml::Error),
    /// The state is inconsistent (duplicate ids, targets on the wrong listener kind, ...).
    #[error("invalid state: {0}")]
    Invalid(String),
}

/// Whole emulator state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Accepted API keys. Empty = the default key pair ([`DEFAULT_SECRET_ID`] / [`DEFAULT_SECRET_KEY`]).
    #[serde(default)]
    pub credentials: Vec<Credential>,
    /// Region reported for the load balancers (default `ap-guangzhou`). Requests may use any `X-TC-Region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Load balancers.
    #[serde(default)]
    pub load_balancers: Vec<LoadBalancer>,
}

/// An API key pair, optionally temporary (with a session token that must be sent as `X-TC-Token`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// SecretId (`AKID...`).
    pub secret_id: String,
    /// SecretKey.
    pub secret_key: String,
    /// Session token; when set, requests must carry exactly this `X-TC-Token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl Credential {
    /// The default credential used when a state names none.
    pub fn default_pair() -> Self {
        Credential { secret_id: DEFAULT_SECRET_ID.into(), secret_key: DEFAULT_SECRET_KEY.into(), token: None }
    }
}

fn default_forward() -> u8 {
    1
}
fn default_lb_type() -> String {
    "INTERNAL".into()
}
fn default_vpc() -> String {
    "vpc-emulator".into()
}
fn default_target_type() -> String {
    "NODE".into()
}
fn default_weight() -> u32 {
    10
}
fn is_node(s: &str) -> bool {
    s == "NODE"
}
fn is_zero(v: &u16) -> bool {
    *v == 0
}

/// A load balancer instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadBalancer {
    /// `lb-...`
    pub id: String,
    /// Name (default: the id).
    #[serde(default)]
    pub name: String,
    /// 1 = CLB (default), 0 = classic (target actions answer `UnsupportedOperation`).
    #[serde(default = "default_forward")]
    pub forward: u8,
    /// `OPEN` or `INTERNAL` (default).
    #[serde(default = "default_lb_type", rename = "type")]
    pub lb_type: String,
    /// VPC id (default `vpc-emulator`).
    #[serde(default = "default_vpc")]
    pub vpc_id: String,
    /// VIPs.
    #[serde(default)]
    pub vips: Vec<String>,
    /// Listeners.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// A listener. Layer 4 (`TCP`, `UDP`, `TCP_SSL`, `QUIC`) listeners hold `targets`; layer 7
/// (`HTTP`, `HTTPS`) listeners hold `rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// `lbl-...`
    pub id: String,
    /// Name (default: `<protocol lowercase>-<port>`).
    #[serde(default)]
    pub name: String,
    /// `TCP`, `UDP`, `TCP_SSL`, `QUIC`, `HTTP` or `HTTPS`.
    pub protocol: String,
    /// Listener port.
    pub port: u16,
    /// Port-range end (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub end_port: u16,
    /// `NODE` (default: direct target binding allowed) or e.g. `TARGETGROUP`.
    #[serde(default = "default_target_type", skip_serializing_if = "is_node")]
    pub target_type: String,
    /// Forwarding rules (layer 7 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Bound targets (layer 4 only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
}

impl Listener {
    /// True for HTTP/HTTPS listeners (targets live under rules).
    pub fn is_l7(&self) -> bool {
        is_l7_protocol(&self.protocol)
    }
}

/// True for the layer-7 protocols `HTTP` and `HTTPS`.
pub fn is_l7_protocol(p: &str) -> bool {
    p.eq_ignore_ascii_case("HTTP") || p.eq_ignore_ascii_case("HTTPS")
}

/// A layer-7 forwarding rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `loc-...`
    pub location_id: String,
    /// Domain.
    pub domain: String,
    /// URL path.
    pub url: String,
    /// `NODE` (default) or `TARGETGROUP`.
    #[serde(default = "default_target_type", skip_serializing_if = "is_node")]
    pub target_type: String,
    /// Bound targets.
    #[serde(default)]
    pub targets: Vec<Target>,
}

/// Kind of a bound backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum TargetKind {
    /// An IP bound by `EniIp` (pod IPs); DescribeTargets shows `Type: ENI`.
    #[default]
    #[serde(rename = "ENI", alias = "eni")]
    Eni,
    /// A CVM instance bound by `InstanceId` (seed only); `Type: CVM`.
    #[serde(rename = "CVM", alias = "cvm")]
    Cvm,
}

/// A bound backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `ENI` (default) or `CVM`.
    #[serde(default, rename = "type")]
    pub kind: TargetKind,
    /// Private IP.
    pub ip: String,
    /// Backend port.
    pub port: u16,
    /// Weight 0..=100 (default 10).
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// `ins-...` for CVM, `eni-...` for ENI (derived from the IP when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Instance name (CVM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_name: Option<String>,
    /// Free-form tag.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tag: String,
    /// Health reported by DescribeTargetHealth: `Alive` (default), `Dead`, `Unknown`, `Close`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// `YYYY-MM-DD HH:MM:SS` (set when registered; seed default is the load time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_time: Option<String>,
}

impl Target {
    /// An ENI (IP-bound) target with default weight.
    pub fn eni(ip: impl Into<String>, port: u16) -> Self {
        Target {
            kind: TargetKind::Eni,
            ip: ip.into(),
            port,
            weight: 10,
            instance_id: None,
            instance_name: None,
            tag: String::new(),
            health: None,
            registered_time: None,
        }
    }

    /// A CVM target.
    pub fn cvm(instance_id: impl Into<String>, ip: impl Into<String>, port: u16) -> Self {
        Target { kind: TargetKind::Cvm, instance_id: Some(instance_id.into()), ..Target::eni(ip, port) }
    }
}

impl State {
    /// Parses a state from YAML (JSON is accepted too, being YAML).
    pub fn from_yaml_str(s: &str) -> Result<State, StateError> {
        let st: State = serde_yaml::from_str(s)?;
        st.validate()?;
        Ok(st)
    }

    /// Reads and parses a YAML/JSON state file.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<State, StateError> {
        let path = path.as_ref();
        let s = std::fs::read_to_string(path)
            .map_err(|source| StateError::Io { path: path.display().to_string(), source })?;
        State::from_yaml_str(&s)
    }

    /// Serialises to YAML.
    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// The credentials in force (the default pair when none are configured).
    pub fn effective_credentials(&self) -> Vec<Credential> {
        if self.credentials.is_empty() { vec![Credential::default_pair()] } else { self.credentials.clone() }
    }

    /// Finds a load balancer by id.
    pub fn load_balancer(&self, id: &str) -> Option<&LoadBalancer> {
        self.load_balancers.iter().find(|lb| lb.id == id)
    }

    /// Checks consistency: unique ids, known protocols, L4 listeners without rules, L7 without
    /// direct targets, unique rule ids per listener, valid IPs and weights; no duplicate
    /// (ip, port) per listener/rule.
    pub fn validate(&self) -> Result<(), StateError> {
        let invalid = |msg: String| Err(StateError::Invalid(msg));
        let mut lb_ids = HashSet::new();
        let mut listener_ids = HashSet::new();
        for lb in &self.load_balancers {
            if lb.id.is_empty() || !lb_ids.insert(lb.id.as_str()) {
                return invalid(format!("duplicate or empty load balancer id `{}`", lb.id));
            }
            for l in &lb.listeners {
                let where_ = format!("{}/{}", lb.id, l.id);
                if !listener_ids.insert(l.id.as_str()) {
                    return invalid(format!("duplicate listener id `{}`", l.id));
                }
                let protocol = l.protocol.to_ascii_uppercase();
                if !PROTOCOLS.contains(&protocol.as_str()) {
                    return invalid(format!("{where_}: unknown protocol `{}`", l.protocol));
                }
                let l7 = is_l7_protocol(&protocol);
                if l7 && !l.targets.is_empty() {
                    return invalid(format!("{where_}: {protocol} listener takes targets under rules"));
                }
                if !l7 && !l.rules.is_empty() {
                    return invalid(format!("{where_}: {protocol} listener cannot have rules"));
                }
                let mut rule_ids = HashSet::new();
                for r in &l.rules {
                    if !rule_ids.insert(r.location_id.as_str()) {
                        return invalid(format!("{where_}: duplicate rule `{}`", r.location_id));
                    }
                    validate_targets(&r.targets, &format!("{where_}/{}", r.location_id))?;
                }
                validate_targets(&l.targets, &where_)?;
            }
        }
        Ok(())
    }
}

/// Listener protocols the emulator knows (upper case).
pub const PROTOCOLS: &[&str] = &["TCP", "UDP", "TCP_SSL", "QUIC", "HTTP", "HTTPS"];

fn validate_targets(targets: &[Target], where_: &str) -> Result<(), StateError> {
    let mut seen = HashSet::new();
    for t in targets {
        let ip = normalize_ip(&t.ip).map_err(|e| StateError::Invalid(format!("{where_}: {e}")))?;
        if t.weight > 100 {
            return Err(StateError::Invalid(format!("{where_}: weight {} is over 100", t.weight)));
        }
        if !seen.insert((ip, t.port)) {
            return Err(StateError::Invalid(format!("{where_}: duplicate target {}:{}", t.ip, t.port)));
        }
    }
    Ok(())
}

/// Normalises an IP literal (`Err` when it is not an IP address), so that one address has one
/// spelling in the state and in requests.
pub fn normalize_ip(ip: &str) -> Result<String, String> {
    ip.trim().parse::<IpAddr>().map(|a| a.to_string()).map_err(|_| format!("`{ip}` is not a valid IP address"))
}
