//! Response fields of each action (inside the envelope): unknown fields ignored, nullable ones read as empty.

use serde::Deserialize;

use super::null_default;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeLoadBalancersResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub load_balancer_set: Vec<LoadBalancerOut>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LoadBalancerOut {
    pub load_balancer_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub load_balancer_name: String,
    /// 1 = CLB, 0 = classic.
    #[serde(default)]
    pub forward: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeListenersResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub listeners: Vec<ListenerOut>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListenerOut {
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: String,
    #[serde(default, deserialize_with = "null_default")]
    pub port: u16,
    #[serde(default, deserialize_with = "null_default")]
    pub target_type: String,
    /// HTTP/HTTPS only; `null` on layer-4 listeners.
    #[serde(default, deserialize_with = "null_default")]
    pub rules: Vec<RuleOutput>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RuleOutput {
    pub location_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub domain: String,
    #[serde(default, deserialize_with = "null_default")]
    pub url: String,
    #[serde(default, deserialize_with = "null_default")]
    pub target_type: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeTargetHealthResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub load_balancers: Vec<LoadBalancerHealth>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct LoadBalancerHealth {
    pub load_balancer_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub listeners: Vec<ListenerHealth>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListenerHealth {
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub rules: Vec<RuleHealth>,
}

/// One L7 rule, or the single entry of an L4 listener (with a `LocationId` but `Domain` and `Url` null).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RuleHealth {
    #[serde(default, deserialize_with = "null_default")]
    pub location_id: String,
    #[serde(default)]
    pub domain: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub targets: Vec<TargetHealthEntry>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TargetHealthEntry {
    #[serde(rename = "IP", default, deserialize_with = "null_default")]
    pub ip: String,
    pub port: u16,
    #[serde(default)]
    pub health_status: bool,
    /// `Alive`, `Dead`, `Unknown` or `Close` (health check off: the target takes traffic).
    #[serde(default, deserialize_with = "null_default")]
    pub health_status_detail: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeTargetsResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub listeners: Vec<ListenerBackend>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListenerBackend {
    pub listener_id: String,
    /// Layer-4 backends; `null` on HTTP/HTTPS.
    #[serde(default, deserialize_with = "null_default")]
    pub targets: Vec<Backend>,
    /// Layer-7 rules with their backends; `null` on layer 4.
    #[serde(default, deserialize_with = "null_default")]
    pub rules: Vec<RuleTargets>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleTargets {
    pub location_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub domain: String,
    #[serde(default, deserialize_with = "null_default")]
    pub url: String,
    #[serde(default, deserialize_with = "null_default")]
    pub targets: Vec<Backend>,
}

/// A bound backend. Matched on `PrivateIpAddresses[0]` + `Port`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Backend {
    /// `CVM`, `ENI`, ... in varying case.
    #[serde(default, deserialize_with = "null_default")]
    pub r#type: String,
    #[serde(default, deserialize_with = "null_default")]
    pub instance_id: String,
    pub port: u16,
    pub weight: u8,
    /// Empty when untagged.
    #[serde(default, deserialize_with = "null_default")]
    pub tag: String,
    #[serde(default, deserialize_with = "null_default")]
    pub private_ip_addresses: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub public_ip_addresses: Vec<String>,
    #[serde(default)]
    pub instance_name: Option<String>,
    #[serde(default)]
    pub eni_id: Option<String>,
    #[serde(default)]
    pub registered_time: Option<String>,
}

/// `BatchRegisterTargets` / `BatchDeregisterTargets`: partial failure is reported here, not as an error.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BatchTargetsResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub fail_listener_id_set: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeTaskStatusResponse {
    /// 0 succeeded, 1 failed, 2 running.
    pub status: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
}
