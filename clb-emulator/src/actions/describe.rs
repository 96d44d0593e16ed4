//! Read actions: DescribeLoadBalancers, DescribeListeners, DescribeTargets, DescribeTargetHealth,
//! DescribeTaskStatus.

use super::{find_lb, i, objs, s, strs};
use crate::Inner;
use crate::error::{ApiError, codes};
use crate::health::{Health, HealthDetail, Probes};
use crate::state::{Target, TargetKind};
use crate::world::{Lb, Lsn, Pool, World};
use serde_json::{Value, json};

/// Fixed creation time reported for seeded resources.
const CREATE_TIME: &str = "2024-01-01 00:00:00";

fn lb_json(world: &World, lb: &Lb) -> Value {
    let region = world.region.as_deref().unwrap_or(crate::state::DEFAULT_REGION);
    json!({
        "LoadBalancerId": lb.id,
        "LoadBalancerName": lb.name,
        "LoadBalancerType": lb.lb_type,
        "Forward": lb.forward,
        "Domain": "",
        "LoadBalancerVips": lb.vips,
        "Status": 1,
        "CreateTime": CREATE_TIME,
        "StatusTime": CREATE_TIME,
        "ProjectId": 0,
        "VpcId": lb.vpc_id,
        "AddressIPVersion": "ipv4",
        "Isolation": 0,
        "TargetRegionInfo": {"Region": region, "VpcId": lb.vpc_id},
        "LoadBalancerPassToTarget": false,
        "MixIpTarget": false,
    })
}

pub(super) fn load_balancers(world: &World, p: &Value) -> Result<Value, ApiError> {
    let ids = strs(p, "LoadBalancerIds");
    let offset = i(p, "Offset").unwrap_or(0);
    let limit = i(p, "Limit").unwrap_or(20);
    if !(0..=100).contains(&limit) || offset < 0 {
        return Err(ApiError::new(codes::RANGE, "`Limit` must be within 0..=100 and `Offset` must not be negative."));
    }
    let matches = |lb: &&Lb| {
        (ids.is_empty() || ids.contains(&lb.id.as_str()))
            && i(p, "Forward").is_none_or(|f| f == lb.forward as i64)
            && s(p, "LoadBalancerType").is_none_or(|t| t.eq_ignore_ascii_case(&lb.lb_type))
            && s(p, "LoadBalancerName").is_none_or(|n| lb.name.contains(n))
            && s(p, "VpcId").is_none_or(|v| v == lb.vpc_id)
    };
    let all: Vec<&Lb> = world.lbs.iter().filter(matches).collect();
    let page: Vec<Value> = all.iter().skip(offset as usize).take(limit as usize).map(|lb| lb_json(world, lb)).collect();
    Ok(json!({"TotalCount": all.len(), "LoadBalancerSet": page}))
}

fn listener_matches(l: &Lsn, p: &Value) -> bool {
    let ids = strs(p, "ListenerIds");
    (ids.is_empty() || ids.contains(&l.id.as_str()))
        && s(p, "Protocol").is_none_or(|x| x.eq_ignore_ascii_case(&l.protocol))
        && i(p, "Port").is_none_or(|x| x == l.port as i64)
}

pub(super) fn listeners(world: &World, p: &Value) -> Result<Value, ApiError> {
    let lb = find_lb(world, s(p, "LoadBalancerId").unwrap_or_default())?;
    let out: Vec<Value> = lb
        .listeners
        .iter()
        .filter(|l| listener_matches(l, p))
        .map(|l| {
            let rules = if l.is_l7() {
                Value::Array(
                    l.rules
                        .iter()
                        .map(|r| {
                            json!({
                                "LocationId": r.location_id,
                                "Domain": r.domain,
                                "Url": r.url,
                                "Domains": [r.domain],
                                "ListenerId": l.id,
                                "TargetType": r.target_type,
                                "Scheduler": "WRR",
                                "SessionExpireTime": 0,
                                "ForwardType": "HTTP",
                                "DefaultServer": false,
                                "Http2": false,
                                "HttpGzip": true,
                                "BeAutoCreated": false,
                                "CreateTime": CREATE_TIME,
                                "Certificate": null,
                                "TargetGroup": null,
                                "TargetGroupList": null,
                                "WafDomainId": "",
                                "TrpcCallee": "",
                                "TrpcFunc": "",
                                "QuicStatus": "QUIC_INACTIVE",
                            })
                        })
                        .collect(),
                )
            } else {
                Value::Null
            };
            json!({
                "ListenerId": l.id,
                "ListenerName": l.name,
                "Protocol": l.protocol,
                "Port": l.port,
                "EndPort": l.end_port,
                "Scheduler": if l.is_l7() { Value::Null } else { json!("WRR") },
                "HealthCheck": null,
                "Certificate": null,
                "SessionExpireTime": if l.is_l7() { Value::Null } else { json!(0) },
                "SniSwitch": 0,
                "Rules": rules,
                "CreateTime": CREATE_TIME,
                "TargetType": l.target_type,
                "TargetGroup": null,
                "TargetGroupList": null,
                "SessionType": "NORMAL",
                "KeepaliveEnable": 0,
                "Toa": false,
                "DeregisterTargetRst": false,
                "AttrFlags": [],
                "MaxConn": -1,
                "MaxCps": -1,
                "IdleConnectTimeout": 900,
            })
        })
        .collect();
    Ok(json!({"Listeners": out, "TotalCount": out.len()}))
}

/// DescribeTargets `Backend` object.
fn backend_json(t: &Target) -> Value {
    let id = t.instance_id.clone().unwrap_or_default();
    match t.kind {
        TargetKind::Eni => json!({
            "Type": "ENI",
            "InstanceId": id,
            "Port": t.port,
            "Weight": t.weight,
            "PublicIpAddresses": null,
            "PrivateIpAddresses": [t.ip],
            "InstanceName": null,
            "RegisteredTime": t.registered_time,
            "EniId": id,
            "Tag": t.tag,
            "Zone": null,
        }),
        TargetKind::Cvm => json!({
            "Type": "CVM",
            "InstanceId": id,
            "Port": t.port,
            "Weight": t.weight,
            "PublicIpAddresses": null,
            "PrivateIpAddresses": [t.ip],
            "InstanceName": t.instance_name.clone().unwrap_or_default(),
            "RegisteredTime": t.registered_time,
            "EniId": "",
            "Tag": t.tag,
            "Zone": null,
        }),
    }
}

struct TargetFilters<'a> {
    locations: Option<Vec<&'a str>>,
    ips: Option<Vec<&'a str>>,
    tags: Option<Vec<&'a str>>,
}

fn parse_filters(p: &Value) -> Result<TargetFilters<'_>, ApiError> {
    let mut f = TargetFilters { locations: None, ips: None, tags: None };
    for flt in objs(p, "Filters") {
        let name = s(flt, "Name").unwrap_or_default();
        let values = strs(flt, "Values");
        let slot = match name {
            "location-id" => &mut f.locations,
            "private-ip-address" => &mut f.ips,
            "tag" => &mut f.tags,
            other => {
                return Err(ApiError::new(
                    codes::INVALID_FILTER,
                    format!("Filter name `{other}` is invalid; supported: location-id, private-ip-address, tag."),
                ));
            }
        };
        slot.get_or_insert_with(Vec::new).extend(values);
    }
    Ok(f)
}

fn pool_json(pool: &Pool, f: &TargetFilters<'_>) -> Vec<Value> {
    pool.values()
        .filter(|t| f.ips.as_ref().is_none_or(|ips| ips.contains(&t.ip.as_str())))
        .filter(|t| f.tags.as_ref().is_none_or(|tags| tags.contains(&t.tag.as_str())))
        .map(backend_json)
        .collect()
}

pub(super) fn targets(world: &World, p: &Value) -> Result<Value, ApiError> {
    let lb = find_lb(world, s(p, "LoadBalancerId").unwrap_or_default())?;
    let f = parse_filters(p)?;
    let mut out = Vec::new();
    for l in lb.listeners.iter().filter(|l| listener_matches(l, p)) {
        let mut v = json!({"ListenerId": l.id, "Protocol": l.protocol, "Port": l.port, "EndPort": l.end_port});
        if l.is_l7() {
            let rules: Vec<Value> = l
                .rules
                .iter()
                .filter(|r| f.locations.as_ref().is_none_or(|ls| ls.contains(&r.location_id.as_str())))
                .map(|r| {
                    json!({
                        "LocationId": r.location_id,
                        "Domain": r.domain,
                        "Url": r.url,
                        "Targets": pool_json(&r.targets, &f),
                        "FunctionTargets": null,
                    })
                })
                .collect();
            if f.locations.is_some() && rules.is_empty() {
                continue;
            }
            v["Rules"] = Value::Array(rules);
            v["Targets"] = Value::Null;
        } else {
            if f.locations.is_some() {
                continue;
            }
            v["Rules"] = Value::Null;
            v["Targets"] = Value::Array(pool_json(&l.targets, &f));
        }
        out.push(v);
    }
    Ok(json!({"Listeners": out}))
}

/// `TargetHealth` objects of one pool, from its health-check state (a seeded `health` pins it).
fn health_json(pool: &Pool, probes: &Probes) -> Vec<Value> {
    pool.iter()
        .map(|(key, t)| {
            let detail = Health::detail(t.health.as_deref(), probes.get(key));
            json!({
                "IP": t.ip,
                "Port": t.port,
                "HealthStatus": detail == HealthDetail::Alive,
                "TargetId": t.instance_id,
                "HealthStatusDetail": detail.as_str(),
                "HealthStatusDetial": detail.as_str(),
                "Weight": t.weight,
            })
        })
        .collect()
}

pub(super) fn target_health(world: &World, p: &Value) -> Result<Value, ApiError> {
    let listener_ids = strs(p, "ListenerIds");
    let location_ids = strs(p, "LocationIds");
    let mut out = Vec::new();
    for id in strs(p, "LoadBalancerIds") {
        let lb = find_lb(world, id)?;
        if lb.forward == 0 {
            return Err(ApiError::new(
                codes::UNSUPPORTED_OPERATION,
                format!("DescribeTargetHealth does not support classic load balancer `{id}`."),
            ));
        }
        let mut listeners = Vec::new();
        for l in lb.listeners.iter().filter(|l| listener_ids.is_empty() || listener_ids.contains(&l.id.as_str())) {
            let mut rules = Vec::new();
            if l.is_l7() {
                for r in &l.rules {
                    if location_ids.is_empty() || location_ids.contains(&r.location_id.as_str()) {
                        rules.push(json!({
                            "LocationId": r.location_id,
                            "Domain": r.domain,
                            "Url": r.url,
                            "Targets": health_json(&r.targets, &r.health),
                        }));
                    }
                }
            } else {
                let loc = l.l4_location_id();
                if location_ids.is_empty() || location_ids.contains(&loc.as_str()) {
                    rules.push(json!({
                        "LocationId": loc,
                        "Domain": null,
                        "Url": null,
                        "Targets": health_json(&l.targets, &l.health),
                    }));
                }
            }
            listeners.push(json!({
                "ListenerId": l.id,
                "ListenerName": l.name,
                "Protocol": l.protocol,
                "Port": l.port,
                "Rules": rules,
            }));
        }
        out.push(json!({"LoadBalancerId": lb.id, "LoadBalancerName": lb.name, "Listeners": listeners}));
    }
    Ok(json!({"LoadBalancers": out}))
}

pub(super) fn task_status(inner: &Inner, p: &Value) -> Result<Value, ApiError> {
    let Some(id) = s(p, "TaskId") else {
        if s(p, "DealName").is_some() {
            return Err(ApiError::new(codes::INVALID_PARAMETER, "DealName (orders) is not supported by the emulator."));
        }
        return Err(ApiError::new(codes::MISSING_PARAMETER, "The request is missing a required parameter `TaskId`."));
    };
    let t = inner
        .tasks
        .info(id)
        .ok_or_else(|| ApiError::new(codes::INVALID_PARAMETER, format!("TaskId `{id}` is not found.")))?;
    Ok(json!({
        "Status": t.status,
        "LoadBalancerIds": [t.load_balancer_id],
        "Message": t.message,
    }))
}
