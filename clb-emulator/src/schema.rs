//! Request parameter schema of the supported actions, derived from tccli's
//! `tccli/services/clb/v20180317/api.json` (3.1.189.1): names, JSON types, required flags and
//! array-ness, plus the documented array limits. `tests/schema.rs` checks this table against the
//! real api.json installed by `testbed/python-sdk.sh`.

use crate::error::{ApiError, codes};
use serde_json::{Map, Value};

/// Scalar or object type of a parameter (or of a list's members).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// JSON string.
    Str,
    /// JSON integer (api.json `int`, int64/uint64).
    Int,
    /// JSON boolean.
    Bool,
    /// Nested object with its own fields (api.json object name, fields).
    Obj(&'static str, &'static [Field]),
}

/// One parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// PascalCase name.
    pub name: &'static str,
    /// Type (of the members, when `list`).
    pub ty: Ty,
    /// Whether the value is a JSON array.
    pub list: bool,
    /// Required per api.json.
    pub required: bool,
    /// Documented maximum array length (emulator-enforced, not part of api.json).
    pub max_len: Option<usize>,
}

const fn f(name: &'static str, ty: Ty, required: bool) -> Field {
    Field { name, ty, list: false, required, max_len: None }
}
const fn l(name: &'static str, ty: Ty, required: bool, max_len: Option<usize>) -> Field {
    Field { name, ty, list: true, required, max_len }
}

use Ty::{Int, Str};

/// `Filter`.
pub const FILTER: &[Field] = &[f("Name", Str, true), l("Values", Str, true, None)];
/// `Target`.
pub const TARGET: &[Field] = &[
    f("Port", Int, true),
    f("Type", Str, false),
    f("InstanceId", Str, false),
    f("Weight", Int, false),
    f("EniIp", Str, false),
    f("Tag", Str, false),
];
/// `BatchTarget`.
pub const BATCH_TARGET: &[Field] = &[
    f("ListenerId", Str, true),
    f("Port", Int, true),
    f("InstanceId", Str, false),
    f("EniIp", Str, false),
    f("Weight", Int, false),
    f("LocationId", Str, false),
    f("Tag", Str, false),
];
/// `RsWeightRule`.
pub const RS_WEIGHT_RULE: &[Field] = &[
    f("ListenerId", Str, true),
    l("Targets", Ty::Obj("Target", TARGET), true, Some(50)),
    f("LocationId", Str, false),
    f("Domain", Str, false),
    f("Url", Str, false),
    f("Weight", Int, false),
];

/// `RsTagRule` (BatchModifyTargetTag.ModifyList).
pub const RS_TAG_RULE: &[Field] = &[
    f("ListenerId", Str, true),
    l("Targets", Ty::Obj("Target", TARGET), true, None),
    f("LocationId", Str, false),
    f("Tag", Str, false),
];

const TARGETS_20: Field = l("Targets", Ty::Obj("Target", TARGET), true, Some(20));

/// One supported action.
#[derive(Debug, Clone, Copy)]
pub struct ActionSchema {
    /// Action name.
    pub name: &'static str,
    /// Whether it changes state. Every mutating action creates an async task except the
    /// synchronous BatchModifyTargetTag.
    pub mutating: bool,
    /// Top-level parameters.
    pub params: &'static [Field],
}

/// All supported actions.
pub const ACTIONS: &[ActionSchema] = &[
    ActionSchema {
        name: "DescribeLoadBalancers",
        mutating: false,
        params: &[
            l("LoadBalancerIds", Str, false, Some(20)),
            f("LoadBalancerType", Str, false),
            f("Forward", Int, false),
            f("LoadBalancerName", Str, false),
            f("Domain", Str, false),
            l("LoadBalancerVips", Str, false, None),
            l("BackendPublicIps", Str, false, None),
            l("BackendPrivateIps", Str, false, None),
            f("Offset", Int, false),
            f("Limit", Int, false),
            f("OrderBy", Str, false),
            f("OrderType", Int, false),
            f("SearchKey", Str, false),
            f("ProjectId", Int, false),
            f("WithRs", Int, false),
            f("VpcId", Str, false),
            f("SecurityGroup", Str, false),
            f("MasterZone", Str, false),
            l("Filters", Ty::Obj("Filter", FILTER), false, Some(10)),
            l("AdditionalFields", Str, false, None),
        ],
    },
    ActionSchema {
        name: "DescribeListeners",
        mutating: false,
        params: &[
            f("LoadBalancerId", Str, true),
            l("ListenerIds", Str, false, Some(100)),
            f("Protocol", Str, false),
            f("Port", Int, false),
        ],
    },
    ActionSchema {
        name: "DescribeTargets",
        mutating: false,
        params: &[
            f("LoadBalancerId", Str, true),
            l("ListenerIds", Str, false, Some(20)),
            f("Protocol", Str, false),
            f("Port", Int, false),
            l("Filters", Ty::Obj("Filter", FILTER), false, None),
        ],
    },
    ActionSchema {
        name: "RegisterTargets",
        mutating: true,
        params: &[
            f("LoadBalancerId", Str, true),
            f("ListenerId", Str, true),
            TARGETS_20,
            f("LocationId", Str, false),
            f("Domain", Str, false),
            f("Url", Str, false),
        ],
    },
    ActionSchema {
        name: "DeregisterTargets",
        mutating: true,
        params: &[
            f("LoadBalancerId", Str, true),
            f("ListenerId", Str, true),
            TARGETS_20,
            f("LocationId", Str, false),
            f("Domain", Str, false),
            f("Url", Str, false),
        ],
    },
    ActionSchema {
        name: "BatchRegisterTargets",
        mutating: true,
        params: &[f("LoadBalancerId", Str, true), l("Targets", Ty::Obj("BatchTarget", BATCH_TARGET), true, Some(500))],
    },
    ActionSchema {
        name: "BatchDeregisterTargets",
        mutating: true,
        params: &[f("LoadBalancerId", Str, true), l("Targets", Ty::Obj("BatchTarget", BATCH_TARGET), true, Some(500))],
    },
    ActionSchema {
        name: "ModifyTargetWeight",
        mutating: true,
        params: &[
            f("LoadBalancerId", Str, true),
            f("ListenerId", Str, true),
            l("Targets", Ty::Obj("Target", TARGET), true, None),
            f("LocationId", Str, false),
            f("Domain", Str, false),
            f("Url", Str, false),
            f("Weight", Int, false),
        ],
    },
    ActionSchema {
        name: "BatchModifyTargetWeight",
        mutating: true,
        params: &[
            f("LoadBalancerId", Str, true),
            l("ModifyList", Ty::Obj("RsWeightRule", RS_WEIGHT_RULE), true, Some(100)),
        ],
    },
    ActionSchema {
        name: "BatchModifyTargetTag",
        mutating: true,
        params: &[f("LoadBalancerId", Str, true), l("ModifyList", Ty::Obj("RsTagRule", RS_TAG_RULE), true, None)],
    },
    ActionSchema {
        name: "DescribeTaskStatus",
        mutating: false,
        params: &[f("TaskId", Str, false), f("DealName", Str, false)],
    },
    ActionSchema {
        name: "DescribeTargetHealth",
        mutating: false,
        params: &[
            l("LoadBalancerIds", Str, true, Some(30)),
            l("ListenerIds", Str, false, None),
            l("LocationIds", Str, false, None),
        ],
    },
];

/// Looks up an action's schema.
pub fn action(name: &str) -> Option<&'static ActionSchema> {
    ACTIONS.iter().find(|a| a.name == name)
}

/// True when `name` is a supported mutating action.
pub fn is_mutating(name: &str) -> bool {
    action(name).is_some_and(|a| a.mutating)
}

fn type_name(ty: &Ty) -> &'static str {
    match ty {
        Ty::Str => "String",
        Ty::Int => "Integer",
        Ty::Bool => "Boolean",
        Ty::Obj(n, _) => n,
    }
}

fn check_scalar(path: &str, ty: &Ty, v: &Value) -> Result<(), ApiError> {
    let ok = match ty {
        Ty::Str => v.is_string(),
        Ty::Int => v.is_i64() || v.is_u64(),
        Ty::Bool => v.is_boolean(),
        Ty::Obj(_, fields) => {
            let obj = v.as_object().ok_or_else(|| format_error(path, ty))?;
            return check_object(path, fields, obj);
        }
    };
    if ok { Ok(()) } else { Err(format_error(path, ty)) }
}

fn format_error(path: &str, ty: &Ty) -> ApiError {
    ApiError::new(codes::FORMAT_ERROR, format!("The parameter `{path}` should be of type {}.", type_name(ty)))
}

fn check_object(prefix: &str, fields: &[Field], obj: &Map<String, Value>) -> Result<(), ApiError> {
    let join = |name: &str| {
        if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") }
    };
    for key in obj.keys() {
        if !fields.iter().any(|f| f.name == key) {
            return Err(ApiError::new(
                codes::UNKNOWN_PARAMETER,
                format!("The parameter `{}` is not recognized.", join(key)),
            ));
        }
    }
    for field in fields {
        let path = join(field.name);
        let value = match obj.get(field.name) {
            None | Some(Value::Null) => {
                if field.required {
                    return Err(ApiError::new(
                        codes::MISSING_PARAMETER,
                        format!("The request is missing a required parameter `{path}`."),
                    ));
                }
                continue;
            }
            Some(v) => v,
        };
        if field.list {
            let items = value.as_array().ok_or_else(|| {
                ApiError::new(
                    codes::FORMAT_ERROR,
                    format!("The parameter `{path}` should be an array of {}.", type_name(&field.ty)),
                )
            })?;
            if let Some(max) = field.max_len
                && items.len() > max
            {
                return Err(ApiError::new(
                    codes::LENGTH,
                    format!("The length of parameter `{path}` is {}, which exceeds the limit of {max}.", items.len()),
                ));
            }
            if field.required && items.is_empty() {
                return Err(ApiError::new(codes::LENGTH, format!("The parameter `{path}` must not be empty.")));
            }
            for (i, item) in items.iter().enumerate() {
                check_scalar(&format!("{path}.{i}"), &field.ty, item)?;
            }
        } else {
            check_scalar(&path, &field.ty, value)?;
        }
    }
    Ok(())
}

/// Validates a request body against the action's schema: unknown names → `UnknownParameter`,
/// missing required → `MissingParameter`, wrong JSON type → `InvalidParameter.FormatError`,
/// arrays over the documented limit → `InvalidParameterValue.Length`.
pub fn validate(schema: &ActionSchema, params: &Value) -> Result<(), ApiError> {
    let obj = params
        .as_object()
        .ok_or_else(|| ApiError::new(codes::FORMAT_ERROR, "The request body must be a JSON object."))?;
    check_object("", schema.params, obj)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(action: &str, v: Value) -> &'static str {
        match validate(super::action(action).unwrap(), &v) {
            Ok(()) => "ok",
            Err(e) => e.code,
        }
    }

    #[test]
    fn validation_codes() {
        let t = json!([{"EniIp": "10.0.0.1", "Port": 80}]);
        assert_eq!(
            code("RegisterTargets", json!({"LoadBalancerId": "lb-1", "ListenerId": "lbl-1", "Targets": t})),
            "ok"
        );
        assert_eq!(code("RegisterTargets", json!({"LoadBalancerId": "lb-1", "Targets": t})), codes::MISSING_PARAMETER);
        assert_eq!(
            code("RegisterTargets", json!({"LoadBalancerId": "lb-1", "ListenerId": "lbl-1", "Targets": t, "Foo": 1})),
            codes::UNKNOWN_PARAMETER
        );
        assert_eq!(
            code(
                "RegisterTargets",
                json!({"LoadBalancerId": "lb-1", "ListenerId": "lbl-1", "Targets": [{"EniIp": "1.1.1.1", "Port": "80"}]})
            ),
            codes::FORMAT_ERROR
        );
        assert_eq!(
            code(
                "RegisterTargets",
                json!({"LoadBalancerId": "lb-1", "ListenerId": "lbl-1", "Targets": [{"EniIp": "1.1.1.1"}]})
            ),
            codes::MISSING_PARAMETER
        );
        assert_eq!(
            code(
                "RegisterTargets",
                json!({"LoadBalancerId": "lb-1", "ListenerId": "lbl-1", "Targets": [{"EniIp": "1.1.1.1", "Port": 1, "X": 1}]})
            ),
            codes::UNKNOWN_PARAMETER
        );
        let many: Vec<Value> = (0..21).map(|i| json!({"EniIp": format!("10.0.0.{i}"), "Port": 80})).collect();
        assert_eq!(
            code("RegisterTargets", json!({"LoadBalancerId": "lb-1", "ListenerId": "lbl-1", "Targets": many})),
            codes::LENGTH
        );
        assert_eq!(code("DescribeTargets", json!({"LoadBalancerId": 5})), codes::FORMAT_ERROR);
        assert_eq!(code("DescribeTargets", json!([])), codes::FORMAT_ERROR);
        assert_eq!(code("DescribeTaskStatus", json!({})), "ok");
    }
}
