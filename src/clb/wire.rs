//! Request and response bodies of the CLB actions clbsync uses, as serde structs.
//!
//! Requests: PascalCase, optional fields omitted. Responses: unknown fields ignored, and every field the reference
//! calls nullable accepts `null` (arrays and strings become empty). Every response is wrapped in the envelope
//! `{"Response": {..., "Error": {"Code", "Message"}, "RequestId"}}`; [`parse_envelope`] reads it.

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};

/// `null` → `T::default()`; use with `#[serde(default, deserialize_with = "null_default")]`.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

// ---------------------------------------------------------------------------------------------------------------
// Requests

/// `DescribeLoadBalancers` by id (≤ 20 ids per call).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeLoadBalancersRequest {
    pub load_balancer_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// `DescribeListeners` of one load balancer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeListenersRequest {
    pub load_balancer_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listener_ids: Vec<String>,
}

/// `DescribeTargets` of some listeners of one load balancer (≤ 20 `ListenerIds`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTargetsRequest {
    pub load_balancer_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub listener_ids: Vec<String>,
}

/// `DescribeTargetHealth` of some listeners of some load balancers (≤ 30 load balancers per call).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTargetHealthRequest {
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
pub struct DescribeTaskStatusRequest {
    pub task_id: String,
}

// ---------------------------------------------------------------------------------------------------------------
// Responses

/// `Response.Error`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ErrorBody {
    #[serde(default, deserialize_with = "null_default")]
    pub code: String,
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
}

/// The part of `Response` every action has.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Common {
    #[serde(default)]
    error: Option<ErrorBody>,
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Envelope<T> {
    #[serde(rename = "Response")]
    response: T,
}

/// How a response body could not be used.
#[derive(Debug)]
pub enum EnvelopeError {
    /// `Response.Error` was present: the API refused the call.
    Api { code: String, message: String, request_id: String },
    /// Not JSON, no `Response`, or fields of the wrong type.
    Decode(String),
}

/// Parses `{"Response": {...}}`: the action's fields and the `RequestId`, or the API's error.
pub fn parse_envelope<T: DeserializeOwned>(body: &[u8]) -> Result<(T, String), EnvelopeError> {
    let common: Envelope<Common> = serde_json::from_slice(body).map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    let request_id = common.response.request_id.unwrap_or_default();
    if let Some(err) = common.response.error {
        return Err(EnvelopeError::Api { code: err.code, message: err.message, request_id });
    }
    let typed: Envelope<T> = serde_json::from_slice(body).map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    Ok((typed.response, request_id))
}

/// Responses with nothing but the `RequestId` (the task id of async actions).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Empty {}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeLoadBalancersResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub total_count: u64,
    #[serde(default, deserialize_with = "null_default")]
    pub load_balancer_set: Vec<LoadBalancerOut>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoadBalancerOut {
    pub load_balancer_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub load_balancer_name: String,
    /// 1 = CLB, 0 = classic.
    #[serde(default)]
    pub forward: Option<i64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeListenersResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub listeners: Vec<ListenerOut>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListenerOut {
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub listener_name: String,
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
pub struct RuleOutput {
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
pub struct DescribeTargetHealthResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub load_balancers: Vec<LoadBalancerHealth>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LoadBalancerHealth {
    pub load_balancer_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub listeners: Vec<ListenerHealth>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListenerHealth {
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub rules: Vec<RuleHealth>,
}

/// One L7 rule, or the single entry of an L4 listener (with a `LocationId` but `Domain` and `Url` null).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuleHealth {
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
pub struct TargetHealthEntry {
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
pub struct DescribeTargetsResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub listeners: Vec<ListenerBackend>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListenerBackend {
    pub listener_id: String,
    #[serde(default, deserialize_with = "null_default")]
    pub protocol: String,
    #[serde(default, deserialize_with = "null_default")]
    pub port: u16,
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
pub struct BatchTargetsResponse {
    #[serde(default, deserialize_with = "null_default")]
    pub fail_listener_id_set: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeTaskStatusResponse {
    /// 0 succeeded, 1 failed, 2 running.
    pub status: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub message: String,
    #[serde(default, deserialize_with = "null_default")]
    pub load_balancer_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_pascal_case_and_omit_absent_fields() {
        let req = BatchTargetsRequest {
            load_balancer_id: "lb-1".into(),
            targets: vec![
                BatchTarget {
                    listener_id: "lbl-a".into(),
                    location_id: None,
                    eni_ip: Some("10.0.0.11".into()),
                    instance_id: None,
                    port: 8080,
                    weight: Some(10),
                    tag: None,
                },
                BatchTarget {
                    listener_id: "lbl-b".into(),
                    location_id: Some("loc-c".into()),
                    eni_ip: Some("10.0.0.11".into()),
                    instance_id: None,
                    port: 8080,
                    weight: None,
                    tag: None,
                },
            ],
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"LoadBalancerId":"lb-1","Targets":[{"ListenerId":"lbl-a","EniIp":"10.0.0.11","Port":8080,"Weight":10},{"ListenerId":"lbl-b","LocationId":"loc-c","EniIp":"10.0.0.11","Port":8080}]}"#
        );
        let req = DescribeTargetsRequest { load_balancer_id: "lb-1".into(), listener_ids: vec![] };
        assert_eq!(serde_json::to_string(&req).unwrap(), r#"{"LoadBalancerId":"lb-1"}"#);
        let req = BatchModifyTargetWeightRequest {
            load_balancer_id: "lb-1".into(),
            modify_list: vec![RsWeightRule {
                listener_id: "lbl-a".into(),
                location_id: None,
                targets: vec![Target {
                    eni_ip: Some("10.0.0.1".into()),
                    instance_id: None,
                    port: 80,
                    weight: Some(0),
                    tag: None,
                }],
                weight: None,
            }],
        };
        assert_eq!(
            serde_json::to_string(&req).unwrap(),
            r#"{"LoadBalancerId":"lb-1","ModifyList":[{"ListenerId":"lbl-a","Targets":[{"EniIp":"10.0.0.1","Port":80,"Weight":0}]}]}"#
        );
    }

    #[test]
    fn describe_targets_accepts_the_reference_nulls() {
        let body = br#"{"Response":{"Listeners":[
 {"ListenerId":"lbl-aaaa1111","Protocol":"TCP","Port":80,"EndPort":0,"Rules":null,
  "Targets":[{"Type":"ENI","InstanceId":"eni-0000aaaa","Port":8080,"Weight":10,"PublicIpAddresses":null,
   "PrivateIpAddresses":["10.0.0.11"],"InstanceName":null,"RegisteredTime":"2024-05-01 10:00:00","EniId":null}]},
 {"ListenerId":"lbl-bbbb2222","Protocol":"HTTP","Port":8080,"EndPort":0,"Targets":null,
  "Rules":[{"LocationId":"loc-cccc3333","Domain":"www.example.com","Url":"/api","FunctionTargets":null,
   "Targets":[{"Type":"cvm","InstanceId":"ins-12345678","Port":80,"Weight":10,"PublicIpAddresses":null,
    "PrivateIpAddresses":["172.16.0.5"],"InstanceName":"node-1","RegisteredTime":"2024-05-01 10:00:00","EniId":""}]}]}],
 "RequestId":"req-1"}}"#;
        let (resp, id) = parse_envelope::<DescribeTargetsResponse>(body).unwrap();
        assert_eq!(id, "req-1");
        assert_eq!(resp.listeners.len(), 2);
        assert!(resp.listeners[0].rules.is_empty());
        assert_eq!(resp.listeners[0].targets[0].private_ip_addresses, ["10.0.0.11"]);
        assert!(resp.listeners[1].targets.is_empty());
        assert_eq!(resp.listeners[1].rules[0].targets[0].r#type, "cvm");
    }

    #[test]
    fn error_envelope_wins_over_fields() {
        let body = br#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"bad"},"RequestId":"r"}}"#;
        match parse_envelope::<DescribeTaskStatusResponse>(body) {
            Err(EnvelopeError::Api { code, message, request_id }) => {
                assert_eq!(
                    (code.as_str(), message.as_str(), request_id.as_str()),
                    ("AuthFailure.SignatureFailure", "bad", "r")
                );
            }
            other => panic!("expected an API error, got {other:?}"),
        }
        assert!(matches!(parse_envelope::<Empty>(b"<html>"), Err(EnvelopeError::Decode(_))));
        assert!(matches!(parse_envelope::<Empty>(b"{}"), Err(EnvelopeError::Decode(_))));
    }

    #[test]
    fn task_status_and_batch_responses_accept_nulls() {
        let (t, _) = parse_envelope::<DescribeTaskStatusResponse>(
            br#"{"Response":{"Status":1,"LoadBalancerIds":null,"Message":null,"RequestId":"x"}}"#,
        )
        .unwrap();
        assert_eq!((t.status, t.message.as_str(), t.load_balancer_ids.len()), (1, "", 0));
        let (b, _) = parse_envelope::<BatchTargetsResponse>(
            br#"{"Response":{"FailListenerIdSet":null,"Message":null,"RequestId":"x","Extra":{"a":1}}}"#,
        )
        .unwrap();
        assert!(b.fail_listener_id_set.is_empty());
        let (l, _) = parse_envelope::<DescribeListenersResponse>(
            br#"{"Response":{"TotalCount":1,"Listeners":[{"ListenerId":"lbl-1","Protocol":"TCP","Port":80,"HealthCheck":null,"TargetType":"NODE","Rules":null}],"RequestId":"x"}}"#,
        )
        .unwrap();
        assert!(l.listeners[0].rules.is_empty());
    }
}
