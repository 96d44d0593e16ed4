//! The shared vocabulary of every stage: protocols, targets and bindings.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

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
    pub fn is_l7(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Https)
    }

    /// The spelling the CLB API uses (`TCP_SSL`, `HTTPS`, ...).
    pub fn api_name(self) -> &'static str {
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
