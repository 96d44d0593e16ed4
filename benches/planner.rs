//! Planner micro-benchmark at fleet scale: 200 load balancers × 10 listeners = 2,000 rules × 50 targets =
//! 100,000 targets, with a rollout (30% of each rule's targets replaced) and a steady state.
//!
//! `cargo bench --bench planner` (criterion; not part of the test suite).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};

use clbsync::model::{Actual, Binding, BoundTarget, Health, Pod, RuleTargets, Target, TargetKind};
use clbsync::plan::{self, PlanOptions, PodLists};
use clbsync::report::{self, Format, Style};
use clbsync::rules::{self, Rules};

const LBS: usize = 200;
const LISTENERS: usize = 10;
const PER_RULE: usize = 50;

fn ip(base: Ipv4Addr, g: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(u32::from(base) + g as u32))
}

fn rules() -> Rules {
    let mut y = String::new();
    for lb in 0..LBS {
        let _ = writeln!(y, "- load_balancer_id: lb-{lb:08x}\n  listeners:");
        for l in 0..LISTENERS {
            let d = lb * LISTENERS + l;
            let _ = writeln!(
                y,
                "    - port: {}\n      protocol: tcp\n      backend:\n        namespace: shop\n        deployment: web-{d:04}\n        port: 8080",
                8000 + l
            );
        }
    }
    rules::parse("bench.yaml", &y).expect("generated rules are valid")
}

/// (pods per query, actual state per rule) where `replaced` targets of each rule are old IPs.
fn inputs(rules: &Rules, replaced: usize) -> (PodLists, Actual) {
    let mut pods = BTreeMap::new();
    let mut actual = Actual::new();
    for (i, rule) in rules.rules.iter().enumerate() {
        let list: Vec<Pod> = (0..PER_RULE)
            .map(|k| Pod {
                name: format!("web-{i:04}-{k:03}"),
                phase: "Running".into(),
                ready: true,
                terminating: false,
                terminating_since: None,
                ips: vec![ip(Ipv4Addr::new(10, 1, 0, 0), i * PER_RULE + k)],
                ports: vec![("http".into(), 8080)],
                gate: None,
            })
            .collect();
        pods.insert(rule.backend.pods.clone(), Ok(list.into()));
        let binding = Binding { lb: rule.load_balancer_id.clone(), listener: format!("lbl-{i:08x}"), location: None };
        let targets = (0..PER_RULE)
            .map(|k| {
                let base = if k < replaced { Ipv4Addr::new(172, 16, 0, 0) } else { Ipv4Addr::new(10, 1, 0, 0) };
                BoundTarget {
                    binding: binding.clone(),
                    target: Target::new(ip(base, i * PER_RULE + k), 8080),
                    weight: 10,
                    kind: TargetKind::Ip,
                    health: Health::Unknown,
                    tag: String::new(),
                }
            })
            .collect();
        actual.insert(rule.id, Ok(RuleTargets { binding, targets }));
    }
    (pods, actual)
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    let opts = PlanOptions::default();
    let mut g = c.benchmark_group("plan_100k_targets");
    g.sample_size(20);
    for (name, replaced) in [("steady", 0), ("rollout_30pct", PER_RULE * 3 / 10), ("cold", PER_RULE)] {
        let (pods, actual) = inputs(&rules, replaced);
        let actual = if name == "cold" {
            actual.into_iter().map(|(id, s)| (id, s.map(|t| RuleTargets { targets: Vec::new(), ..t }))).collect()
        } else {
            actual
        };
        let all: Vec<_> = rules.rules.iter().collect();
        g.bench_function(format!("plan/{name}"), |b| {
            b.iter(|| black_box(plan::plan(&all, &pods, &actual, &plan::PodsByIp::new(), &opts)))
        });
        let plan = plan::plan(&all, &pods, &actual, &plan::PodsByIp::new(), &opts);
        for format in [Format::Table, Format::Json] {
            let style = Style { format, ..Style::default() };
            g.bench_function(format!("render_{format:?}/{name}").to_lowercase(), |b| {
                b.iter(|| report::write(&plan, None, style, &mut std::io::sink()).expect("sink"))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
