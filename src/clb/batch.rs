//! Splitting target changes into API calls within each action's per-call limits. Pure: every planned call lists
//! the indices of the changes it carries, so outcomes map back to the caller's order.

use std::collections::BTreeMap;

use super::wire::{
    BatchModifyTargetTagRequest, BatchModifyTargetWeightRequest, BatchTarget, BatchTargetsRequest, RsTagRule,
    RsWeightRule, Target, TargetsRequest,
};
use crate::model::{Binding, Change};

/// `BatchRegisterTargets` / `BatchDeregisterTargets`: targets per call.
pub const BATCH_TARGETS_MAX: usize = 500;
/// `RegisterTargets` / `DeregisterTargets` (and clbsync's `ModifyTargetWeight` fallback): targets per call.
pub const SINGLE_TARGETS_MAX: usize = 20;
/// `BatchModifyTargetWeight`: `ModifyList` entries per call.
pub const WEIGHT_RULES_MAX: usize = 100;
/// `BatchModifyTargetWeight`: targets per `RsWeightRule`.
pub const WEIGHT_RULE_TARGETS_MAX: usize = 50;
/// `BatchModifyTargetWeight`: targets per call, over all entries.
pub const WEIGHT_TOTAL_MAX: usize = 500;
/// `DescribeLoadBalancers.LoadBalancerIds` and `DescribeTargets.ListenerIds`: ids per call.
pub const DESCRIBE_IDS_MAX: usize = 20;

/// One API call to make and the changes (indices into the caller's slice) it carries.
#[derive(Clone, Debug)]
pub struct BatchCall<R> {
    pub request: R,
    pub changes: Vec<usize>,
}

/// Whether a target carries its weight: yes for register and reweight, no for deregister.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WithWeight {
    Yes,
    No,
}

fn target(change: &Change, weight: WithWeight) -> Target {
    Target {
        eni_ip: Some(change.target.ip.to_string()),
        instance_id: None,
        port: change.target.port,
        weight: (weight == WithWeight::Yes).then_some(change.weight),
        tag: change.tag.clone(),
    }
}

/// Groups indices by binding; bindings in order, indices in input order within a binding.
fn by_binding<'a>(changes: &'a [Change], idx: &[usize]) -> BTreeMap<&'a Binding, Vec<usize>> {
    let mut groups: BTreeMap<&Binding, Vec<usize>> = BTreeMap::new();
    for &i in idx {
        groups.entry(&changes[i].binding).or_default().push(i);
    }
    groups
}

/// `Batch(De)RegisterTargets` calls of at most 500 targets across the listeners and rules of `lb`.
pub fn batch_targets(
    lb: &str,
    changes: &[Change],
    idx: &[usize],
    weight: WithWeight,
) -> Vec<BatchCall<BatchTargetsRequest>> {
    idx.chunks(BATCH_TARGETS_MAX)
        .map(|chunk| BatchCall {
            request: BatchTargetsRequest {
                load_balancer_id: lb.to_string(),
                targets: chunk
                    .iter()
                    .map(|&i| {
                        let c = &changes[i];
                        let t = target(c, weight);
                        BatchTarget {
                            listener_id: c.binding.listener.clone(),
                            location_id: c.binding.location.clone(),
                            eni_ip: t.eni_ip,
                            instance_id: None,
                            port: t.port,
                            weight: t.weight,
                            tag: t.tag,
                        }
                    })
                    .collect(),
            },
            changes: chunk.to_vec(),
        })
        .collect()
}

/// `RegisterTargets` / `DeregisterTargets` / `ModifyTargetWeight` calls: one binding each, at most 20 targets.
pub fn per_binding(lb: &str, changes: &[Change], idx: &[usize], weight: WithWeight) -> Vec<BatchCall<TargetsRequest>> {
    let mut calls = Vec::new();
    for (binding, group) in by_binding(changes, idx) {
        for chunk in group.chunks(SINGLE_TARGETS_MAX) {
            calls.push(BatchCall {
                request: TargetsRequest {
                    load_balancer_id: lb.to_string(),
                    listener_id: binding.listener.clone(),
                    location_id: binding.location.clone(),
                    targets: chunk.iter().map(|&i| target(&changes[i], weight)).collect(),
                },
                changes: chunk.to_vec(),
            });
        }
    }
    calls
}

/// `BatchModifyTargetTag` calls: one `RsTagRule` per binding, at most 500 targets per call, each target with its tag.
pub fn batch_tags(lb: &str, changes: &[Change], idx: &[usize]) -> Vec<BatchCall<BatchModifyTargetTagRequest>> {
    let mut calls: Vec<BatchCall<BatchModifyTargetTagRequest>> = Vec::new();
    for (binding, group) in by_binding(changes, idx) {
        for chunk in group.chunks(BATCH_TARGETS_MAX) {
            if calls.last().is_none_or(|c| c.changes.len() + chunk.len() > BATCH_TARGETS_MAX) {
                let request = BatchModifyTargetTagRequest { load_balancer_id: lb.to_string(), modify_list: Vec::new() };
                calls.push(BatchCall { request, changes: Vec::new() });
            }
            let call = calls.last_mut().expect("a call was pushed above");
            call.request.modify_list.push(RsTagRule {
                listener_id: binding.listener.clone(),
                location_id: binding.location.clone(),
                targets: chunk.iter().map(|&i| target(&changes[i], WithWeight::No)).collect(),
            });
            call.changes.extend_from_slice(chunk);
        }
    }
    calls
}

/// `BatchModifyTargetWeight` calls: one `RsWeightRule` per binding (split past 50 targets), at most 100 entries and
/// 500 targets per call. Each target carries its own weight.
pub fn batch_weights(lb: &str, changes: &[Change], idx: &[usize]) -> Vec<BatchCall<BatchModifyTargetWeightRequest>> {
    let mut calls: Vec<BatchCall<BatchModifyTargetWeightRequest>> = Vec::new();
    let mut total = 0;
    for (binding, group) in by_binding(changes, idx) {
        for entry in group.chunks(WEIGHT_RULE_TARGETS_MAX) {
            let fits = calls.last().is_some_and(|call| {
                call.request.modify_list.len() < WEIGHT_RULES_MAX && total + entry.len() <= WEIGHT_TOTAL_MAX
            });
            if !fits {
                calls.push(BatchCall {
                    request: BatchModifyTargetWeightRequest {
                        load_balancer_id: lb.to_string(),
                        modify_list: Vec::new(),
                    },
                    changes: Vec::new(),
                });
                total = 0;
            }
            let call = calls.last_mut().expect("a call was pushed above");
            call.request.modify_list.push(RsWeightRule {
                listener_id: binding.listener.clone(),
                location_id: binding.location.clone(),
                targets: entry.iter().map(|&i| target(&changes[i], WithWeight::Yes)).collect(),
                weight: None,
            });
            call.changes.extend_from_slice(entry);
            total += entry.len();
        }
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Target as Addr;
    use std::net::{IpAddr, Ipv4Addr};

    fn change(listener: usize, location: Option<&str>, n: u32) -> Change {
        Change {
            binding: Binding {
                lb: "lb-1".into(),
                listener: format!("lbl-{listener:04}"),
                location: location.map(String::from),
            },
            target: Addr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n)), 8080),
            weight: 10,
            tag: None,
        }
    }

    fn all(n: usize) -> Vec<usize> {
        (0..n).collect()
    }

    #[test]
    fn batch_targets_split_at_exactly_500_and_keep_location() {
        let changes: Vec<Change> = (0..1001).map(|n| change(n as usize % 3, Some("loc-1"), n)).collect();
        let calls = batch_targets("lb-1", &changes, &all(1001), WithWeight::Yes);
        let sizes: Vec<usize> = calls.iter().map(|c| c.request.targets.len()).collect();
        assert_eq!(sizes, [500, 500, 1]);
        assert_eq!(calls[2].changes, [1000]);
        assert!(calls[0].request.targets.iter().all(|t| t.location_id.as_deref() == Some("loc-1")));
        assert_eq!(calls[0].request.targets[0].weight, Some(10));
        let dereg = batch_targets("lb-1", &changes, &all(3), WithWeight::No);
        assert!(dereg[0].request.targets.iter().all(|t| t.weight.is_none()));
    }

    #[test]
    fn per_binding_calls_hold_one_binding_and_at_most_20() {
        let changes: Vec<Change> =
            (0..45).map(|n| change(0, None, n)).chain((45..50).map(|n| change(1, Some("loc-9"), n))).collect();
        let calls = per_binding("lb-1", &changes, &all(50), WithWeight::No);
        let shape: Vec<(String, usize)> =
            calls.iter().map(|c| (c.request.listener_id.clone(), c.request.targets.len())).collect();
        assert_eq!(
            shape,
            [("lbl-0000".into(), 20), ("lbl-0000".into(), 20), ("lbl-0000".into(), 5), ("lbl-0001".into(), 5)]
        );
        assert_eq!(calls[3].request.location_id.as_deref(), Some("loc-9"));
    }

    #[test]
    fn tags_pack_500_targets_per_call_with_one_entry_per_binding() {
        let changes: Vec<Change> =
            (0..700).map(|n| Change { tag: Some("clbsync:a".into()), ..change(n as usize / 300, None, n) }).collect();
        let calls = batch_tags("lb-1", &changes, &all(700));
        let shape: Vec<Vec<usize>> =
            calls.iter().map(|c| c.request.modify_list.iter().map(|r| r.targets.len()).collect()).collect();
        assert_eq!(shape, [vec![300], vec![300, 100]]);
        assert!(calls.iter().all(|c| c.changes.len() <= 500));
        assert_eq!(calls[0].request.modify_list[0].targets[0].tag.as_deref(), Some("clbsync:a"));
        assert_eq!(calls[0].request.modify_list[0].targets[0].weight, None);
    }

    #[test]
    fn weights_pack_100_entries_per_call() {
        let changes: Vec<Change> = (0..120).map(|n| change(n as usize, None, n as u32)).collect();
        let calls = batch_weights("lb-1", &changes, &all(120));
        let entries: Vec<usize> = calls.iter().map(|c| c.request.modify_list.len()).collect();
        assert_eq!(entries, [100, 20]);
    }

    #[test]
    fn weights_split_a_large_binding_into_entries_of_50() {
        let changes: Vec<Change> = (0..120).map(|n| change(0, Some("loc-1"), n)).collect();
        let calls = batch_weights("lb-1", &changes, &all(120));
        assert_eq!(calls.len(), 1);
        let sizes: Vec<usize> = calls[0].request.modify_list.iter().map(|r| r.targets.len()).collect();
        assert_eq!(sizes, [50, 50, 20]);
        assert_eq!(calls[0].changes, all(120));
    }

    #[test]
    fn weights_stop_at_500_targets_per_call() {
        // 11 bindings × 50 targets: 10 entries fill 500, the 11th goes to a second call.
        let changes: Vec<Change> = (0..550).map(|n| change(n as usize / 50, None, n as u32)).collect();
        let calls = batch_weights("lb-1", &changes, &all(550));
        let totals: Vec<usize> = calls.iter().map(|c| c.changes.len()).collect();
        assert_eq!(totals, [500, 50]);
        assert!(calls.iter().flat_map(|c| &c.request.modify_list).all(|r| r.targets.len() <= 50));
    }
}
