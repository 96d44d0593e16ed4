//! Mutating actions: RegisterTargets, DeregisterTargets, ModifyTargetWeight and their Batch forms.
//! Requests are validated against the current state; accepted changes become a task applied at
//! completion (see `tasks.rs`).

use super::{Ctx, find_lb, i, objs, s};
use crate::Inner;
use crate::error::{ApiError, codes};
use crate::state::{Target, normalize_ip};
use crate::tasks::{Op, OpKind};
use crate::world::{Lb, Place, World, eni_id_for};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// A target as given in a request (formats checked, instance not yet resolved).
pub(super) struct Spec {
    eni_ip: Option<String>,
    instance_id: Option<String>,
    port: u16,
    weight: Option<u32>,
    pub(super) tag: String,
}

fn check_weight(w: Option<i64>, path: &str) -> Result<Option<u32>, ApiError> {
    match w {
        None => Ok(None),
        Some(w) if (0..=100).contains(&w) => Ok(Some(w as u32)),
        Some(w) => Err(ApiError::new(codes::RANGE, format!("`{path}` must be within 0..=100, got {w}."))),
    }
}

pub(super) fn parse_spec(v: &Value, path: &str) -> Result<Spec, ApiError> {
    let port = i(v, "Port").unwrap_or(0);
    if !(1..=65535).contains(&port) {
        return Err(ApiError::new(codes::RANGE, format!("`{path}.Port` must be within 1..=65535, got {port}.")));
    }
    let weight = check_weight(i(v, "Weight"), &format!("{path}.Weight"))?;
    let (eni_ip, instance_id) = match (s(v, "EniIp"), s(v, "InstanceId")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::new(
                codes::INVALID_PARAMETER,
                format!("`{path}`: only one of InstanceId and EniIp may be given."),
            ));
        }
        (None, None) => {
            return Err(ApiError::new(
                codes::INVALID_PARAMETER,
                format!("`{path}`: one of InstanceId or EniIp is required."),
            ));
        }
        (Some(ip), None) => (
            Some(
                normalize_ip(ip)
                    .map_err(|e| ApiError::new(codes::INVALID_PARAMETER_VALUE, format!("`{path}.EniIp`: {e}.")))?,
            ),
            None,
        ),
        (None, Some(id)) => (None, Some(id.to_string())),
    };
    Ok(Spec { eni_ip, instance_id, port: port as u16, weight, tag: s(v, "Tag").unwrap_or_default().to_string() })
}

/// Resolves a spec to a concrete target (CVM instances must be known from the seed).
pub(super) fn resolve_spec(world: &World, spec: &Spec) -> Result<Target, ApiError> {
    let mut t = match (&spec.eni_ip, &spec.instance_id) {
        (Some(ip), _) => {
            let mut t = Target::eni(ip.clone(), spec.port);
            t.instance_id = Some(eni_id_for(ip));
            t
        }
        (None, Some(id)) => {
            let (ip, name) = world
                .cvms
                .get(id)
                .ok_or_else(|| ApiError::new(codes::INVALID_PARAMETER, format!("Instance `{id}` is not found.")))?;
            let mut t = Target::cvm(id.clone(), ip.clone(), spec.port);
            t.instance_name = name.clone();
            t
        }
        (None, None) => {
            return Err(ApiError::new(codes::INVALID_PARAMETER, "one of InstanceId or EniIp is required."));
        }
    };
    t.weight = spec.weight.unwrap_or(10);
    t.tag = spec.tag.clone();
    Ok(t)
}

pub(super) fn key_of(t: &Target) -> (String, u16) {
    (t.ip.clone(), t.port)
}

/// Common checks before any mutation: LB exists, not classic, not locked by a running task, not busy.
pub(super) fn preamble(inner: &mut Inner, lb_id: &str) -> Result<(), ApiError> {
    let lb = find_lb(&inner.world, lb_id)?;
    if lb.forward == 0 {
        return Err(ApiError::new(
            codes::UNSUPPORTED_OPERATION,
            format!("Load balancer `{lb_id}` is a classic load balancer; use the *WithClassicalLB actions."),
        ));
    }
    if let Some(task) = inner.tasks.lock_of(lb_id) {
        return Err(ApiError::new(
            codes::RESOURCE_IN_OPERATING,
            format!("Load balancer `{lb_id}` is in operation (task {task}); retry later."),
        ));
    }
    if inner.engine.busy(lb_id) {
        return Err(ApiError::new(
            codes::RESOURCE_IN_OPERATING,
            format!("Load balancer `{lb_id}` is in operation (injected); retry later."),
        ));
    }
    Ok(())
}

/// Finds the listener / rule targets are bound to, checking that direct binding is allowed.
pub(super) fn resolve_place(
    lb: &Lb,
    listener_id: &str,
    location: Option<&str>,
    domain: Option<&str>,
    url: Option<&str>,
) -> Result<(Place, Option<String>), ApiError> {
    let li = lb.listener_pos(listener_id).ok_or_else(|| {
        ApiError::new(codes::LISTENER_NOT_FOUND, format!("Listener `{listener_id}` is not found in `{}`.", lb.id))
    })?;
    let l = &lb.listeners[li];
    if l.target_type != "NODE" {
        return Err(ApiError::new(
            codes::INVALID_PARAMETER,
            format!(
                "Listener `{listener_id}` has TargetType {}; bind targets through its target group.",
                l.target_type
            ),
        ));
    }
    if !l.is_l7() {
        if location.is_some() || domain.is_some() || url.is_some() {
            return Err(ApiError::new(
                codes::INVALID_PARAMETER,
                format!(
                    "Listener `{listener_id}` is a {} (layer-4) listener; LocationId/Domain/Url must not be given.",
                    l.protocol
                ),
            ));
        }
        return Ok((Place { listener: li, rule: None }, None));
    }
    let ri = match (location, domain, url) {
        (Some(loc), _, _) => l.rules.iter().position(|r| r.location_id == loc).ok_or_else(|| {
            ApiError::new(codes::LOCATION_NOT_FOUND, format!("Rule `{loc}` is not found in listener `{listener_id}`."))
        })?,
        (None, Some(d), Some(u)) => l.rules.iter().position(|r| r.domain == d && r.url == u).ok_or_else(|| {
            ApiError::new(
                codes::LOCATION_NOT_FOUND,
                format!("No rule with Domain `{d}` and Url `{u}` in listener `{listener_id}`."),
            )
        })?,
        _ => {
            return Err(ApiError::new(
                codes::INVALID_PARAMETER,
                format!(
                    "Listener `{listener_id}` is a {} (layer-7) listener; LocationId or Domain+Url is required.",
                    l.protocol
                ),
            ));
        }
    };
    let rule = &l.rules[ri];
    if rule.target_type != "NODE" {
        return Err(ApiError::new(
            codes::INVALID_PARAMETER,
            format!(
                "Rule `{}` has TargetType {}; bind targets through its target group.",
                rule.location_id, rule.target_type
            ),
        ));
    }
    Ok((Place { listener: li, rule: Some(ri) }, Some(rule.location_id.clone())))
}

pub(super) fn where_(listener: &str, loc: &Option<String>) -> String {
    match loc {
        Some(l) => format!("{listener}/{l}"),
        None => listener.to_string(),
    }
}

fn submit(inner: &mut Inner, ctx: &Ctx<'_>, lb_id: &str, ops: Vec<Op>) {
    let fail = inner.engine.task_failure(ctx.action);
    let delay = inner.engine.faults.task_delay_ms.unwrap_or(ctx.task_delay_ms);
    let done_at = (delay > 0).then(|| ctx.now + Duration::from_millis(delay));
    let Inner { tasks, world, .. } = inner;
    tasks.submit(world, ctx.request_id.to_string(), ctx.action, lb_id, ops, fail, done_at, ctx.now, ctx.wall);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Register,
    Deregister,
    Weight,
}

/// RegisterTargets / DeregisterTargets / ModifyTargetWeight on one listener or rule.
fn single(inner: &mut Inner, ctx: &Ctx<'_>, p: &Value, mode: Mode) -> Result<Value, ApiError> {
    let lb_id = s(p, "LoadBalancerId").unwrap_or_default();
    let listener_id = s(p, "ListenerId").unwrap_or_default();
    preamble(inner, lb_id)?;
    let top_weight = if mode == Mode::Weight { check_weight(i(p, "Weight"), "Weight")? } else { None };
    let mut specs = Vec::new();
    for (n, v) in objs(p, "Targets").iter().enumerate() {
        specs.push(parse_spec(v, &format!("Targets.{n}"))?);
    }
    let world = &inner.world;
    let lb = find_lb(world, lb_id)?;
    let (place, loc) = resolve_place(lb, listener_id, s(p, "LocationId"), s(p, "Domain"), s(p, "Url"))?;
    let pool = lb.pool(place).ok_or_else(|| ApiError::new(codes::INTERNAL_ERROR, "listener vanished"))?;
    let mut seen = HashSet::new();
    let mut ops = Vec::new();
    let at = where_(listener_id, &loc);
    for spec in &specs {
        let mut t = resolve_spec(world, spec)?;
        let key = key_of(&t);
        if !seen.insert(key.clone()) {
            return Err(ApiError::new(
                codes::DUPLICATE,
                format!("Target {}:{} appears more than once in the request.", key.0, key.1),
            ));
        }
        let bound = pool.contains_key(&key);
        let kind = match mode {
            Mode::Register if bound => {
                return Err(ApiError::new(
                    codes::DUPLICATE,
                    format!("Target {}:{} is already bound to {at}.", key.0, key.1),
                ));
            }
            Mode::Register => OpKind::Add(t),
            _ if !bound => {
                return Err(ApiError::new(
                    codes::INVALID_PARAMETER,
                    format!("Target {}:{} is not bound to {at}.", key.0, key.1),
                ));
            }
            Mode::Deregister => OpKind::Remove(key),
            Mode::Weight => {
                t.weight = spec.weight.or(top_weight).unwrap_or(10);
                OpKind::Weight(key, t.weight)
            }
        };
        ops.push(Op { listener: listener_id.to_string(), location: loc.clone(), kind });
    }
    if mode == Mode::Register && pool.len() + ops.len() > ctx.quota as usize {
        return Err(ApiError::new(
            codes::LIMIT_EXCEEDED,
            format!("{at} would have {} targets; the quota is {}.", pool.len() + ops.len(), ctx.quota),
        ));
    }
    submit(inner, ctx, lb_id, ops);
    Ok(json!({}))
}

pub(super) fn register(inner: &mut Inner, ctx: &Ctx<'_>, p: &Value) -> Result<Value, ApiError> {
    single(inner, ctx, p, Mode::Register)
}

pub(super) fn deregister(inner: &mut Inner, ctx: &Ctx<'_>, p: &Value) -> Result<Value, ApiError> {
    single(inner, ctx, p, Mode::Deregister)
}

pub(super) fn modify_weight(inner: &mut Inner, ctx: &Ctx<'_>, p: &Value) -> Result<Value, ApiError> {
    single(inner, ctx, p, Mode::Weight)
}

/// Checks one listener's entries of a Batch(De)RegisterTargets call; Err = the failure message.
fn batch_group(
    world: &World,
    lb: &Lb,
    entries: &[(&Value, Spec)],
    register: bool,
    quota: u32,
) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    let mut adds: HashMap<Place, usize> = HashMap::new();
    for (v, spec) in entries {
        let listener_id = s(v, "ListenerId").unwrap_or_default();
        let (place, loc) = resolve_place(lb, listener_id, s(v, "LocationId"), None, None).map_err(|e| {
            if e.code == codes::LISTENER_NOT_FOUND { format!("Listener {listener_id} not exists.") } else { e.message }
        })?;
        let pool = lb.pool(place).ok_or_else(|| format!("Listener {listener_id} not exists."))?;
        let t = resolve_spec(world, spec).map_err(|e| e.message)?;
        let key = key_of(&t);
        let at = where_(listener_id, &loc);
        let bound = pool.contains_key(&key);
        let kind = if register {
            if bound {
                return Err(format!("Target {}:{} is already bound to {at}.", key.0, key.1));
            }
            let n = adds.entry(place).or_insert(pool.len());
            *n += 1;
            if *n > quota as usize {
                return Err(format!("{at} would exceed the backend quota of {quota}."));
            }
            OpKind::Add(t)
        } else {
            if !bound {
                return Err(format!("Target {}:{} is not bound to {at}.", key.0, key.1));
            }
            OpKind::Remove(key)
        };
        ops.push(Op { listener: listener_id.to_string(), location: loc, kind });
    }
    Ok(ops)
}

fn batch(inner: &mut Inner, ctx: &Ctx<'_>, p: &Value, register: bool) -> Result<Value, ApiError> {
    let lb_id = s(p, "LoadBalancerId").unwrap_or_default();
    preamble(inner, lb_id)?;
    let mut groups: Vec<(String, Vec<(&Value, Spec)>)> = Vec::new();
    let mut seen = HashSet::new();
    for (n, v) in objs(p, "Targets").iter().enumerate() {
        let spec = parse_spec(v, &format!("Targets.{n}"))?;
        let listener = s(v, "ListenerId").unwrap_or_default().to_string();
        let ident = (
            listener.clone(),
            s(v, "LocationId").unwrap_or_default().to_string(),
            spec.eni_ip.clone().or_else(|| spec.instance_id.clone()).unwrap_or_default(),
            spec.port,
        );
        if !seen.insert(ident.clone()) {
            return Err(ApiError::new(
                codes::DUPLICATE,
                format!("Target {}:{} for {} appears more than once in the request.", ident.2, ident.3, ident.0),
            ));
        }
        match groups.iter_mut().find(|(l, _)| *l == listener) {
            Some((_, entries)) => entries.push((v, spec)),
            None => groups.push((listener, vec![(v, spec)])),
        }
    }
    let world = &inner.world;
    let lb = find_lb(world, lb_id)?;
    let (mut fails, mut msgs, mut ops) = (Vec::new(), Vec::new(), Vec::new());
    for (listener, entries) in &groups {
        match batch_group(world, lb, entries, register, ctx.quota) {
            Ok(mut o) => ops.append(&mut o),
            Err(msg) => {
                fails.push(listener.clone());
                msgs.push(msg);
            }
        }
    }
    submit(inner, ctx, lb_id, ops);
    Ok(json!({"FailListenerIdSet": fails, "Message": msgs.join(" ")}))
}

pub(super) fn batch_register(inner: &mut Inner, ctx: &Ctx<'_>, p: &Value) -> Result<Value, ApiError> {
    batch(inner, ctx, p, true)
}

pub(super) fn batch_deregister(inner: &mut Inner, ctx: &Ctx<'_>, p: &Value) -> Result<Value, ApiError> {
    batch(inner, ctx, p, false)
}

pub(super) fn batch_modify_weight(inner: &mut Inner, ctx: &Ctx<'_>, p: &Value) -> Result<Value, ApiError> {
    let lb_id = s(p, "LoadBalancerId").unwrap_or_default();
    preamble(inner, lb_id)?;
    let rules = objs(p, "ModifyList");
    let total: usize = rules.iter().map(|r| objs(r, "Targets").len()).sum();
    if total > 500 {
        return Err(ApiError::new(
            codes::LENGTH,
            format!("ModifyList holds {total} targets in total; the limit is 500."),
        ));
    }
    let world = &inner.world;
    let lb = find_lb(world, lb_id)?;
    let mut ops = Vec::new();
    let mut seen = HashSet::new();
    for (n, rule) in rules.iter().enumerate() {
        let listener_id = s(rule, "ListenerId").unwrap_or_default();
        let rule_weight = check_weight(i(rule, "Weight"), &format!("ModifyList.{n}.Weight"))?;
        let (place, loc) = resolve_place(lb, listener_id, s(rule, "LocationId"), s(rule, "Domain"), s(rule, "Url"))?;
        let pool = lb.pool(place).ok_or_else(|| ApiError::new(codes::INTERNAL_ERROR, "listener vanished"))?;
        let at = where_(listener_id, &loc);
        for (m, v) in objs(rule, "Targets").iter().enumerate() {
            let spec = parse_spec(v, &format!("ModifyList.{n}.Targets.{m}"))?;
            let t = resolve_spec(world, &spec)?;
            let key = key_of(&t);
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
            let w = spec.weight.or(rule_weight).unwrap_or(10);
            ops.push(Op { listener: listener_id.to_string(), location: loc.clone(), kind: OpKind::Weight(key, w) });
        }
    }
    submit(inner, ctx, lb_id, ops);
    Ok(json!({}))
}
