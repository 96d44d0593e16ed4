//! Request and response bodies of the CLB actions clbsync uses, as serde structs.
//!
//! Requests: PascalCase, optional fields omitted. Responses: unknown fields ignored, and every field the reference
//! calls nullable accepts `null` (arrays and strings become empty). Every response is wrapped in the envelope
//! `{"Response": {..., "Error": {"Code", "Message"}, "RequestId"}}`; [`parse_envelope`] reads it.

use serde::Deserialize;
use serde::de::{DeserializeOwned, Deserializer};

/// `null` → `T::default()`; use with `#[serde(default, deserialize_with = "null_default")]`.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

mod request;
mod response;

pub use request::*;
pub use response::*;

/// `Response.Error`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ErrorBody {
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
pub(crate) enum EnvelopeError {
    /// `Response.Error` was present: the API refused the call.
    Api { code: String, message: String, request_id: String },
    /// Not JSON, no `Response`, or fields of the wrong type.
    Decode(String),
}

/// Parses `{"Response": {...}}`: the action's fields and the `RequestId`, or the API's error.
pub(crate) fn parse_envelope<T: DeserializeOwned>(body: &[u8]) -> Result<(T, String), EnvelopeError> {
    let common: Envelope<Common> = serde_json::from_slice(body).map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    let request_id = common.response.request_id.unwrap_or_default();
    if let Some(err) = common.response.error {
        return Err(EnvelopeError::Api { code: err.code, message: err.message, request_id });
    }
    let typed: Envelope<T> = serde_json::from_slice(body).map_err(|e| EnvelopeError::Decode(e.to_string()))?;
    Ok((typed.response, request_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response with nothing but the `RequestId`.
    #[derive(Debug, Deserialize)]
    struct Empty {}

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
        assert_eq!((t.status, t.message.as_str()), (1, ""));
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
