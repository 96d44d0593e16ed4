//! BatchModifyTargetTag (ref §4.12): sets the `Tag` of targets already bound to listeners/rules
//! of one load balancer. Synchronous: the change is made before the answer and no task is created
//! (its RequestId is not a TaskId). All-or-nothing: any unknown listener/rule or unbound target
//! fails the whole call and changes nothing.

use super::targets::{key_of, parse_spec, preamble, resolve_place, resolve_spec, where_};
use super::{Ctx, find_lb, objs, s};
use crate::Inner;
use crate::error::{ApiError, codes};
use crate::world::Place;
use serde_json::{Value, json};
use std::collections::HashSet;

/// Documented maximum of targets per call.
const MAX_TARGETS: usize = 500;

pub(super) fn batch_modify_tag(inner: &mut Inner, _ctx: &Ctx<'_>, p: &Value) -> Result<Value, ApiError> {
    let lb_id = s(p, "LoadBalancerId").unwrap_or_default();
    preamble(inner, lb_id)?;
    let rules = objs(p, "ModifyList");
    let total: usize = rules.iter().map(|r| objs(r, "Targets").len()).sum();
    if total > MAX_TARGETS {
        return Err(ApiError::new(
            codes::LENGTH,
            format!("ModifyList holds {total} targets in total; the limit is {MAX_TARGETS}."),
        ));
    }
    let world = &inner.world;
    let lb = find_lb(world, lb_id)?;
    let mut changes: Vec<(Place, (String, u16), String)> = Vec::new();
    let mut seen = HashSet::new();
    for (n, rule) in rules.iter().enumerate() {
        let listener_id = s(rule, "ListenerId").unwrap_or_default();
        let rule_tag = rule.get("Tag").and_then(Value::as_str);
        let (place, loc) = resolve_place(lb, listener_id, s(rule, "LocationId"), None, None)?;
        let pool = lb.pool(place).ok_or_else(|| ApiError::new(codes::INTERNAL_ERROR, "listener vanished"))?;
        let at = where_(listener_id, &loc);
        for (m, v) in objs(rule, "Targets").iter().enumerate() {
            let spec = parse_spec(v, &format!("ModifyList.{n}.Targets.{m}"))?;
            let key = key_of(&resolve_spec(world, &spec)?);
            if !seen.insert((place, key.clone())) {
                return Err(ApiError::new(
                    codes::DUPLICATE,
                    format!("Target {}:{} of {at} appears more than once.", key.0, key.1),
                ));
            }
            if !pool.contains_key(&key) {
                return Err(ApiError::new(
                    codes::INVALID_PARAMETER,
                    format!("Target {}:{} is not bound to {at}.", key.0, key.1),
                ));
            }
            // Target.Tag wins over RsTagRule.Tag; with neither, the tag is cleared.
            let own = v.get("Tag").and_then(Value::as_str).filter(|t| !t.is_empty());
            let tag = own.or(rule_tag).unwrap_or_default().to_string();
            changes.push((place, key, tag));
        }
    }
    let lb = inner.world.lb_mut(lb_id).ok_or_else(|| ApiError::new(codes::INTERNAL_ERROR, "load balancer vanished"))?;
    for (place, key, tag) in changes {
        if let Some(t) = lb.pool_mut(place).and_then(|pool| pool.get_mut(&key)) {
            t.tag = tag;
        }
    }
    Ok(json!({}))
}
