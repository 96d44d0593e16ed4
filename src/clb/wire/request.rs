//! Request bodies: PascalCase, optional fields omitted.

use serde::{Deserialize, Serialize};

/// `DescribeLoadBalancers` by id (≤ 20 ids per call).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeLoadBalancersRequest {
    pub load_balancer_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `DescribeListeners` of one load balancer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeListenersRequest {
    pub load_balancer_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listener_ids: Vec<String>,
}

/// `DescribeTargets` of some listeners of one load balancer (≤ 20 `ListenerIds`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeTargetsRequest {
    pub load_balancer_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listener_ids: Vec<String>,
}

/// `DescribeTargetHealth` of some listeners of some load balancers (≤ 30 load balancers per call).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeTargetHealthRequest {
    pub load_balancer_ids: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listener_ids: Vec<String>,
}

/// A target of `RegisterTargets`, `DeregisterTargets`, `ModifyTargetWeight` and `RsWeightRule.Targets`.
/// Exactly one of `EniIp` / `InstanceId`; clbsync always uses `EniIp`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Target {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eni_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `RegisterTargets` / `DeregisterTargets` / `ModifyTargetWeight`: one listener (and rule), ≤ 20 targets.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetsRequest {
    pub load_balancer_id: String,
    pub listener_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    pub targets: Vec<Target>,
}

/// A target of `BatchRegisterTargets` / `BatchDeregisterTargets`; L7 targets need `LocationId`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchTarget {
    pub listener_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eni_ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    pub port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// `BatchRegisterTargets` / `BatchDeregisterTargets` (≤ 500 targets).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchTargetsRequest {
    pub load_balancer_id: String,
    pub targets: Vec<BatchTarget>,
}

/// One entry of `BatchModifyTargetWeight.ModifyList` (≤ 50 targets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RsWeightRule {
    pub listener_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    pub targets: Vec<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u8>,
}

/// One entry of `BatchModifyTargetTag.ModifyList`: the targets of one listener or rule, each with its tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RsTagRule {
    pub listener_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location_id: Option<String>,
    pub targets: Vec<Target>,
}

/// `BatchModifyTargetTag` (≤ 500 targets; synchronous: no task).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchModifyTargetTagRequest {
    pub load_balancer_id: String,
    pub modify_list: Vec<RsTagRule>,
}

/// `BatchModifyTargetWeight` (≤ 100 entries, ≤ 500 targets in total).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BatchModifyTargetWeightRequest {
    pub load_balancer_id: String,
    pub modify_list: Vec<RsWeightRule>,
}

/// `DescribeTaskStatus` of the task created by a mutating call (its `RequestId`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DescribeTaskStatusRequest {
    pub task_id: String,
}
