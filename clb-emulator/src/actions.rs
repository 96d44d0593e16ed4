//! The CLB actions. Each takes validated parameters (see `schema.rs`) and returns the response
//! fields (without `RequestId`) or an [`ApiError`].

mod describe;
mod tags;
mod targets;

use crate::Inner;
use crate::error::{ApiError, codes};
use crate::world::{Lb, World};
use serde_json::Value;
use tokio::time::Instant;

/// Per-call context.
pub(crate) struct Ctx<'a> {
    pub request_id: &'a str,
    pub action: &'a str,
    /// Wall clock (Unix seconds, with offset).
    pub wall: i64,
    /// Tokio time (task completion).
    pub now: Instant,
    pub quota: u32,
    pub task_delay_ms: u64,
}

/// Runs `ctx.action`.
pub(crate) fn run(inner: &mut Inner, ctx: &Ctx<'_>, p: &Value) -> Result<Value, ApiError> {
    match ctx.action {
        "DescribeLoadBalancers" => describe::load_balancers(&inner.world, p),
        "DescribeListeners" => describe::listeners(&inner.world, p),
        "DescribeTargets" => describe::targets(&inner.world, p),
        "DescribeTargetHealth" => {
            for id in strs(p, "LoadBalancerIds") {
                inner.world.settle_health(&inner.health, ctx.now, Some(id));
            }
            describe::target_health(&inner.world, p)
        }
        "DescribeTaskStatus" => describe::task_status(inner, p),
        "RegisterTargets" => targets::register(inner, ctx, p),
        "DeregisterTargets" => targets::deregister(inner, ctx, p),
        "ModifyTargetWeight" => targets::modify_weight(inner, ctx, p),
        "BatchRegisterTargets" => targets::batch_register(inner, ctx, p),
        "BatchDeregisterTargets" => targets::batch_deregister(inner, ctx, p),
        "BatchModifyTargetWeight" => targets::batch_modify_weight(inner, ctx, p),
        "BatchModifyTargetTag" => tags::batch_modify_tag(inner, ctx, p),
        other => Err(ApiError::new(codes::INVALID_ACTION, format!("The action `{other}` is not supported."))),
    }
}

/// String parameter (None when absent or empty).
pub(crate) fn s<'a>(p: &'a Value, name: &str) -> Option<&'a str> {
    p.get(name).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// Integer parameter.
pub(crate) fn i(p: &Value, name: &str) -> Option<i64> {
    p.get(name).and_then(Value::as_i64)
}

/// String-array parameter (empty when absent).
pub(crate) fn strs<'a>(p: &'a Value, name: &str) -> Vec<&'a str> {
    p.get(name).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

/// Object-array parameter (empty when absent).
pub(crate) fn objs<'a>(p: &'a Value, name: &str) -> &'a [Value] {
    p.get(name).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// Looks up a load balancer (`InvalidParameter.LBIdNotFound`).
pub(crate) fn find_lb<'a>(world: &'a World, id: &str) -> Result<&'a Lb, ApiError> {
    world.lb(id).ok_or_else(|| ApiError::new(codes::LB_NOT_FOUND, format!("LoadBalancerId `{id}` is not found.")))
}
