//! The [`Clb`] actions of [`ClbClient`]: each read's request, and its answer decoded into the model; the
//! mutations go through the strategy in `mutate`.

use std::collections::HashSet;
use std::net::IpAddr;

use tracing::warn;

use super::mutate::Mutation;
use super::{CallKind, ClbClient};
use crate::clb::{ChangeResults, Clb, Error, Listener, ListenerRule, LoadBalancer, batch, wire};
use crate::model::{Binding, BoundTarget, Change, Failure, Health, Target, TargetHealth, TargetKind};
use crate::stop::Stop;

/// Unique ids in first-seen order.
fn dedup(ids: &[String]) -> Vec<String> {
    let mut seen = HashSet::new();
    ids.iter().filter(|id| seen.insert(id.as_str())).cloned().collect()
}

/// A `DescribeTargets` backend as a [`BoundTarget`], or `None` (logged) when it has no usable private IP.
fn bound_target(binding: &Binding, b: &wire::Backend) -> Option<BoundTarget> {
    let Some(ip) = b.private_ip_addresses.first().and_then(|ip| ip.parse::<IpAddr>().ok()) else {
        warn!(%binding, instance = %b.instance_id, port = b.port, ips = ?b.private_ip_addresses, "skipping a backend without a usable private IP");
        return None;
    };
    let kind = if b.r#type.eq_ignore_ascii_case("ENI") {
        TargetKind::Ip
    } else {
        TargetKind::Instance { kind: b.r#type.clone(), instance_id: b.instance_id.clone() }
    };
    let target = Target::new(ip, b.port);
    let (weight, health, tag) = (b.weight, Health::Unknown, b.tag.clone());
    Some(BoundTarget { binding: binding.clone(), target, weight, kind, health, tag })
}

impl Clb for ClbClient {
    async fn load_balancers(&self, ids: &[String]) -> Result<Vec<LoadBalancer>, Error> {
        // All chunks at once (the pacer spaces them): every load balancer's reads wait for this answer.
        let ids = dedup(ids);
        let chunks = ids.chunks(batch::DESCRIBE_IDS_MAX).map(|chunk| async move {
            let req =
                wire::DescribeLoadBalancersRequest { load_balancer_ids: chunk.to_vec(), offset: None, limit: None };
            self.read::<_, wire::DescribeLoadBalancersResponse>("DescribeLoadBalancers", "-", &req).await
        });
        let answers = futures::future::try_join_all(chunks).await?;
        Ok(answers
            .into_iter()
            .flat_map(|(resp, _)| resp.load_balancer_set)
            .map(|lb| LoadBalancer {
                id: lb.load_balancer_id,
                name: lb.load_balancer_name,
                classic: lb.forward == Some(0),
            })
            .collect())
    }

    async fn listeners(&self, lb: &str) -> Result<Vec<Listener>, Error> {
        let req = wire::DescribeListenersRequest { load_balancer_id: lb.to_string(), listener_ids: Vec::new() };
        let (resp, _) = self.read::<_, wire::DescribeListenersResponse>("DescribeListeners", lb, &req).await?;
        Ok(resp
            .listeners
            .into_iter()
            .map(|l| Listener {
                id: l.listener_id,
                protocol: l.protocol,
                port: l.port,
                target_type: l.target_type,
                rules: l
                    .rules
                    .into_iter()
                    .map(|r| ListenerRule {
                        location_id: r.location_id,
                        domain: r.domain,
                        url: r.url,
                        target_type: r.target_type,
                    })
                    .collect(),
            })
            .collect())
    }

    async fn targets(&self, lb: &str, listener_ids: &[String]) -> Result<Vec<BoundTarget>, Error> {
        let mut out = Vec::new();
        // An empty ListenerIds would mean "every listener": never send one.
        for chunk in dedup(listener_ids).chunks(batch::DESCRIBE_IDS_MAX) {
            let req = wire::DescribeTargetsRequest { load_balancer_id: lb.to_string(), listener_ids: chunk.to_vec() };
            let (resp, _) = self.read::<_, wire::DescribeTargetsResponse>("DescribeTargets", lb, &req).await?;
            for l in resp.listeners {
                let binding = Binding { lb: lb.to_string(), listener: l.listener_id.clone(), location: None };
                out.extend(l.targets.iter().filter_map(|b| bound_target(&binding, b)));
                for rule in &l.rules {
                    let binding = Binding { location: Some(rule.location_id.clone()), ..binding.clone() };
                    out.extend(rule.targets.iter().filter_map(|b| bound_target(&binding, b)));
                }
            }
        }
        Ok(out)
    }

    async fn health(&self, lb: &str, listener_ids: &[String]) -> Result<Vec<TargetHealth>, Error> {
        let req = wire::DescribeTargetHealthRequest {
            load_balancer_ids: vec![lb.to_string()],
            listener_ids: dedup(listener_ids),
        };
        let (resp, _) = self.read::<_, wire::DescribeTargetHealthResponse>("DescribeTargetHealth", lb, &req).await?;
        let mut out = Vec::new();
        for balancer in resp.load_balancers.into_iter().filter(|b| b.load_balancer_id == lb) {
            for listener in balancer.listeners {
                for rule in listener.rules {
                    // An L4 listener is one entry with a LocationId but no domain and url: it binds on the listener.
                    let location = (rule.domain.is_some() || rule.url.is_some()).then_some(rule.location_id);
                    let binding = Binding { lb: lb.to_string(), listener: listener.listener_id.clone(), location };
                    for t in rule.targets {
                        let Ok(ip) = t.ip.parse::<IpAddr>() else { continue };
                        let health = match (t.health_status, t.health_status_detail.as_str()) {
                            (true, _) | (_, "Close") => Health::Healthy,
                            _ => Health::Unhealthy,
                        };
                        out.push(TargetHealth { binding: binding.clone(), target: Target::new(ip, t.port), health });
                    }
                }
            }
        }
        Ok(out)
    }

    async fn tag(&self, lb: &str, changes: &[Change], stop: &Stop) -> ChangeResults {
        let mut outcomes: Vec<Result<(), Failure>> = vec![Ok(()); changes.len()];
        let idx: Vec<usize> = (0..changes.len()).collect();
        for call in batch::batch_tags(lb, changes, &idx) {
            // Synchronous: an accepted call has set the tags; no task to wait for. Setting a tag twice is harmless.
            let answer = self
                .call::<_, wire::BatchTargetsResponse>(
                    "BatchModifyTargetTag",
                    lb,
                    CallKind::Write,
                    &call.request,
                    Some(stop),
                )
                .await;
            if let Err(e) = answer.result {
                let failure = e.to_failure();
                for &i in &call.changes {
                    outcomes[i] = Err(failure.clone());
                }
            }
        }
        outcomes
    }

    async fn register(&self, lb: &str, changes: &[Change], stop: &Stop) -> ChangeResults {
        self.mutate(lb, changes, Mutation::Register, stop).await
    }

    async fn set_weight(&self, lb: &str, changes: &[Change], stop: &Stop) -> ChangeResults {
        self.mutate(lb, changes, Mutation::Weight, stop).await
    }

    async fn deregister(&self, lb: &str, changes: &[Change], stop: &Stop) -> ChangeResults {
        self.mutate(lb, changes, Mutation::Deregister, stop).await
    }
}
