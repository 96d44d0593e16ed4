//! Indexed in-memory model behind [`State`]: load balancers by id, and per listener / rule a
//! `BTreeMap<(ip, port), Target>` so lookups, duplicate checks and quota checks are O(log n).

use crate::health::{Health, Probe, Probes};
use crate::state::{
    Credential, Listener, LoadBalancer, Rule, State, StateError, Target, TargetKind, is_l7_protocol, normalize_ip,
};
use std::collections::{BTreeMap, HashMap};
use tokio::time::Instant;

/// Targets of one L4 listener or one L7 rule, keyed by (normalised ip, port).
pub(crate) type Pool = BTreeMap<(String, u16), Target>;

/// A load balancer.
#[derive(Debug, Clone)]
pub(crate) struct Lb {
    pub id: String,
    pub name: String,
    pub forward: u8,
    pub lb_type: String,
    pub vpc_id: String,
    pub vips: Vec<String>,
    pub listeners: Vec<Lsn>,
}

/// A listener.
#[derive(Debug, Clone)]
pub(crate) struct Lsn {
    pub id: String,
    pub name: String,
    pub protocol: String,
    pub port: u16,
    pub end_port: u16,
    pub target_type: String,
    /// L4 only.
    pub targets: Pool,
    /// Health-check state of `targets` (same keys).
    pub health: Probes,
    /// L7 only.
    pub rules: Vec<RuleEntry>,
}

impl Lsn {
    pub fn is_l7(&self) -> bool {
        is_l7_protocol(&self.protocol)
    }
    /// Pseudo location id reported by DescribeTargetHealth for an L4 listener.
    pub fn l4_location_id(&self) -> String {
        format!("loc-{}", self.id.strip_prefix("lbl-").unwrap_or(&self.id))
    }
}

/// A layer-7 rule.
#[derive(Debug, Clone)]
pub(crate) struct RuleEntry {
    pub location_id: String,
    pub domain: String,
    pub url: String,
    pub target_type: String,
    pub targets: Pool,
    /// Health-check state of `targets` (same keys).
    pub health: Probes,
}

/// Where a target set lives: listener index and, for L7, rule index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Place {
    pub listener: usize,
    pub rule: Option<usize>,
}

/// The indexed world.
#[derive(Debug, Clone, Default)]
pub(crate) struct World {
    pub credentials: Vec<Credential>,
    pub region: Option<String>,
    pub lbs: Vec<Lb>,
    pub lb_index: HashMap<String, usize>,
    /// CVM instance id -> (ip, instance name), learnt from seeded CVM targets.
    pub cvms: HashMap<String, (String, Option<String>)>,
}

/// Deterministic `eni-xxxxxxxx` id for an IP.
pub(crate) fn eni_id_for(ip: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in ip.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = String::from("eni-");
    for _ in 0..8 {
        s.push(ALPHABET[(h % 36) as usize] as char);
        h /= 36;
    }
    s
}

/// Fills in derived fields of a validated seed target (normalised IP, instance id, time).
fn fill_target(t: &Target, now: &str) -> Target {
    let mut t = t.clone();
    if let Ok(ip) = normalize_ip(&t.ip) {
        t.ip = ip;
    }
    if t.instance_id.is_none() {
        t.instance_id = Some(match t.kind {
            TargetKind::Eni => eni_id_for(&t.ip),
            TargetKind::Cvm => format!("ins-{}", &eni_id_for(&t.ip)[4..]),
        });
    }
    if t.registered_time.is_none() {
        t.registered_time = Some(now.to_string());
    }
    t
}

/// Seeded targets are healthy (bound long before the emulator started); probed from `at` on.
fn seeded_probes(pool: &Pool, at: Instant) -> Probes {
    pool.keys().map(|k| (k.clone(), Probe::seeded(at))).collect()
}

fn fill_pool(targets: &[Target], now: &str, cvms: &mut HashMap<String, (String, Option<String>)>) -> Pool {
    let mut pool = Pool::new();
    for t in targets {
        let t = fill_target(t, now);
        if t.kind == TargetKind::Cvm
            && let Some(id) = &t.instance_id
        {
            cvms.insert(id.clone(), (t.ip.clone(), t.instance_name.clone()));
        }
        pool.insert((t.ip.clone(), t.port), t);
    }
    pool
}

impl World {
    /// Builds the indexed world from a [`State`], validating it first ([`State::validate`]).
    /// Health checks of the seeded targets start at `at` (emulator time).
    pub fn from_state(state: &State, at: Instant) -> Result<World, StateError> {
        state.validate()?;
        let now = crate::time::utc_datetime(crate::time::unix_secs(std::time::SystemTime::now()));
        let mut w = World { credentials: state.credentials.clone(), region: state.region.clone(), ..World::default() };
        for lb in &state.load_balancers {
            let mut listeners = Vec::new();
            for l in &lb.listeners {
                let protocol = l.protocol.to_ascii_uppercase();
                let rules = l
                    .rules
                    .iter()
                    .map(|r| {
                        let targets = fill_pool(&r.targets, &now, &mut w.cvms);
                        RuleEntry {
                            location_id: r.location_id.clone(),
                            domain: r.domain.clone(),
                            url: r.url.clone(),
                            target_type: r.target_type.clone(),
                            health: seeded_probes(&targets, at),
                            targets,
                        }
                    })
                    .collect();
                let targets = fill_pool(&l.targets, &now, &mut w.cvms);
                listeners.push(Lsn {
                    id: l.id.clone(),
                    name: if l.name.is_empty() {
                        format!("{}-{}", protocol.to_ascii_lowercase(), l.port)
                    } else {
                        l.name.clone()
                    },
                    protocol,
                    port: l.port,
                    end_port: l.end_port,
                    target_type: l.target_type.clone(),
                    health: seeded_probes(&targets, at),
                    targets,
                    rules,
                });
            }
            w.lb_index.insert(lb.id.clone(), w.lbs.len());
            w.lbs.push(Lb {
                id: lb.id.clone(),
                name: if lb.name.is_empty() { lb.id.clone() } else { lb.name.clone() },
                forward: lb.forward,
                lb_type: lb.lb_type.clone(),
                vpc_id: lb.vpc_id.clone(),
                vips: lb.vips.clone(),
                listeners,
            });
        }
        Ok(w)
    }

    /// Converts back to the public [`State`] shape.
    pub fn to_state(&self) -> State {
        State {
            credentials: self.credentials.clone(),
            region: self.region.clone(),
            load_balancers: self
                .lbs
                .iter()
                .map(|lb| LoadBalancer {
                    id: lb.id.clone(),
                    name: lb.name.clone(),
                    forward: lb.forward,
                    lb_type: lb.lb_type.clone(),
                    vpc_id: lb.vpc_id.clone(),
                    vips: lb.vips.clone(),
                    listeners: lb
                        .listeners
                        .iter()
                        .map(|l| Listener {
                            id: l.id.clone(),
                            name: l.name.clone(),
                            protocol: l.protocol.clone(),
                            port: l.port,
                            end_port: l.end_port,
                            target_type: l.target_type.clone(),
                            rules: l
                                .rules
                                .iter()
                                .map(|r| Rule {
                                    location_id: r.location_id.clone(),
                                    domain: r.domain.clone(),
                                    url: r.url.clone(),
                                    target_type: r.target_type.clone(),
                                    targets: r.targets.values().cloned().collect(),
                                })
                                .collect(),
                            targets: l.targets.values().cloned().collect(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// Credentials in force (the default pair when none are configured).
    pub fn effective_credentials(&self) -> Vec<Credential> {
        if self.credentials.is_empty() { vec![Credential::default_pair()] } else { self.credentials.clone() }
    }

    pub fn lb(&self, id: &str) -> Option<&Lb> {
        self.lb_index.get(id).map(|&i| &self.lbs[i])
    }

    pub fn lb_mut(&mut self, id: &str) -> Option<&mut Lb> {
        match self.lb_index.get(id) {
            Some(&i) => Some(&mut self.lbs[i]),
            None => None,
        }
    }

    /// Runs the health checks of every target (or of one load balancer's) up to `now`.
    pub fn settle_health(&mut self, health: &Health, now: Instant, only_lb: Option<&str>) {
        for lb in self.lbs.iter_mut().filter(|lb| only_lb.is_none_or(|id| id == lb.id)) {
            for l in &mut lb.listeners {
                for ((ip, _), probe) in &mut l.health {
                    health.advance(probe, ip, now);
                }
                for r in &mut l.rules {
                    for ((ip, _), probe) in &mut r.health {
                        health.advance(probe, ip, now);
                    }
                }
            }
        }
    }

    /// Restarts every probe schedule at `at` (after a timing change, once settled with the old one).
    pub fn restart_health(&mut self, at: Instant) {
        for l in self.lbs.iter_mut().flat_map(|lb| lb.listeners.iter_mut()) {
            l.health.values_mut().for_each(|p| p.restart(at));
            for r in &mut l.rules {
                r.health.values_mut().for_each(|p| p.restart(at));
            }
        }
    }

    /// Removes a listener; true when it existed.
    pub fn delete_listener(&mut self, lb: &str, listener: &str) -> bool {
        match self.lb_mut(lb) {
            Some(lb) => {
                let before = lb.listeners.len();
                lb.listeners.retain(|l| l.id != listener);
                lb.listeners.len() != before
            }
            None => false,
        }
    }
}

impl Lb {
    pub fn listener_pos(&self, id: &str) -> Option<usize> {
        self.listeners.iter().position(|l| l.id == id)
    }

    pub fn pool(&self, p: Place) -> Option<&Pool> {
        let l = self.listeners.get(p.listener)?;
        match p.rule {
            Some(r) => l.rules.get(r).map(|r| &r.targets),
            None => Some(&l.targets),
        }
    }

    pub fn pool_mut(&mut self, p: Place) -> Option<&mut Pool> {
        self.pool_and_health_mut(p).map(|(pool, _)| pool)
    }

    /// Targets and their health-check state (kept with the same keys).
    pub fn pool_and_health_mut(&mut self, p: Place) -> Option<(&mut Pool, &mut Probes)> {
        let l = self.listeners.get_mut(p.listener)?;
        match p.rule {
            Some(r) => l.rules.get_mut(r).map(|r| (&mut r.targets, &mut r.health)),
            None => Some((&mut l.targets, &mut l.health)),
        }
    }
}
