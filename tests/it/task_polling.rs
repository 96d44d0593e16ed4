//! Task polling over a fleet run, measured from the emulator's call log: the client learns how long tasks take
//! from the run's first ones (issue 16), at task times that differ from every poll interval it starts with.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use clb_emulator::{CallLog, CallRecord, Config, Faults, State};
use clbsync::desired::memory::MemoryCluster;
use clbsync::model::testing::pod;
use clbsync::outcome::exit;
use clbsync::reconcile::{self, Mode, Settings};
use clbsync::rules::{self, PodQuery, PodSource};

use clbsync::clb::client::ClientConfig;

use crate::emulator::client_with;

/// Load balancers in the fleet, each with one listener and one deployment of two pods: one registration task
/// each.
const LBS: usize = 80;

/// Load balancers in flight: the tasks come in waves, each load balancer's as soon as a load balancer is done.
const IN_FLIGHT: usize = 20;

/// Requests per second per action, client and emulator: high enough that the limiter does not delay polls, so
/// the figures are the polling's own (at 20/s a fleet's polls are paced, see BENCHMARKS.md).
const RATE: u32 = 200;

/// One fleet run: `LBS` load balancers, `in_flight` at a time, client and emulator at `rate` calls per second per
/// action. Cold: nothing bound, one registration each. Rollout: each listener has one old target bound, so a
/// registration and then a deregistration each. Returns the emulator's call log.
async fn fleet_run(task: Duration, rate: u32, in_flight: usize, rollout: bool) -> CallLog {
    let mut state = String::from("region: ap-guangzhou\nload_balancers:\n");
    let mut rules_yaml = String::new();
    let mut cluster = MemoryCluster::default();
    for lb in 0..LBS {
        let old = if rollout {
            format!(", targets: [{{ip: 10.250.{}.{}, port: 8080}}]", lb / 200, lb % 200)
        } else {
            String::new()
        };
        let _ = write!(
            state,
            "  - id: lb-{lb:08}\n    listeners:\n      - {{id: lbl-{lb:08}, protocol: TCP, port: 80{old}}}\n"
        );
        let _ = write!(
            rules_yaml,
            "- load_balancer_id: lb-{lb:08}\n  listeners:\n    - {{port: 80, protocol: tcp, backend: {{namespace: shop, deployment: web-{lb}, port: 8080}}}}\n"
        );
        let query = PodQuery { namespace: "shop".into(), source: PodSource::deployment(format!("web-{lb}")) };
        let pods = (0..2).map(|k| pod(&format!("web-{lb}-{k}"), &format!("10.{}.{}.{k}", lb / 200, lb % 200)).ready());
        cluster.pods.insert(query, Ok(pods.collect()));
    }
    let config = Config {
        state: State::from_yaml_str(&state).expect("fleet state"),
        faults: Faults { latency_ms: 20, ..Faults::default() },
        task_delay: task,
        rate_limit_per_action: rate,
        ..Config::default()
    };
    let emu = clb_emulator::start(SocketAddr::from(([127, 0, 0, 1], 0)), config).await.expect("emulator starts");
    let rules = rules::parse("rules.yaml", &rules_yaml).expect("fleet rules");
    let settings = Settings { concurrency: in_flight, region: "ap-guangzhou".into(), ..Settings::new(Mode::Reconcile) };
    let clb =
        client_with(&emu, clb_emulator::DEFAULT_SECRET_KEY, |c| ClientConfig { rate_limit_per_action: rate, ..c });
    let outcome = reconcile::run(&rules, &cluster, &clb, &settings, &mut Vec::new()).await.expect("run");
    assert_eq!(outcome.exit_code(false), exit::OK, "{} ms tasks: {}", task.as_millis(), outcome.trouble());
    emu.calls()
}

/// The accepted mutating calls of the log: each started a task.
fn accepted_tasks(calls: &CallLog) -> Vec<&CallRecord> {
    calls.records.iter().filter(|r| r.mutating && r.code == "Success").collect()
}

/// Polls per task, and the median of (the task's last poll − when the task was done), from the call log.
fn polling(calls: &CallLog, task: Duration) -> (f64, Duration) {
    let tasks = accepted_tasks(calls);
    let mut polls = 0;
    let mut late = Vec::new();
    for t in &tasks {
        let seen: Vec<_> = calls
            .of("DescribeTaskStatus")
            .into_iter()
            .filter(|p| p.params["TaskId"].as_str() == Some(t.request_id.as_str()))
            .collect();
        polls += seen.len();
        let done = t.at_us + task.as_micros() as u64;
        let last = seen.last().expect("every task is polled").at_us;
        assert!(last >= done, "the last poll of task {} came before it was done", t.request_id);
        late.push(Duration::from_micros(last - done));
    }
    late.sort();
    (polls as f64 / tasks.len() as f64, late[late.len() / 2])
}

// Two threads, as the emulator and clbsync are separate processes in a real run: on one thread the emulator's
// work delays the client's polls. Ignored by default: at 100 ms tasks 20% is 20 ms, less than the scheduling
// delays of a loaded machine (load average above about 5 on 2 cores); run it on its own, as BENCHMARKS.md does.
// `clb::task::tests::a_fleet_polls_each_task_about_once_soon_after_it_is_done` checks the same in paused time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "timing: run alone on a machine that is not overloaded"]
async fn a_fleet_run_polls_each_task_about_once_and_soon_after_it_is_done() {
    for ms in [100, 450, 2000] {
        let task = Duration::from_millis(ms);
        let calls = fleet_run(task, RATE, IN_FLIGHT, false).await;
        assert_eq!(accepted_tasks(&calls).len(), LBS, "one registration per load balancer");
        let (polls, late) = polling(&calls, task);
        eprintln!("{ms} ms tasks: {polls:.2} polls per task, median {late:?} from done to seen");
        assert!(polls <= 1.2, "{ms} ms tasks: {polls:.2} polls per task");
        assert!(late <= task / 5, "{ms} ms tasks: median {late:?} from done to seen, more than 20%");
    }
}

/// Every task needs a `DescribeTaskStatus` poll, paced like each action: a rollout's registrations and
/// deregistrations together start tasks no faster than that, so their polls do not queue in the limiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_starts_tasks_no_faster_than_they_can_be_polled() {
    const SLOW_RATE: u32 = 20;
    let calls = fleet_run(Duration::from_millis(150), SLOW_RATE, LBS, true).await;
    let mut started: Vec<u64> = accepted_tasks(&calls).iter().map(|r| r.at_us).collect();
    started.sort();
    let actions = |name: &str| calls.of(name).len();
    assert_eq!(
        (actions("BatchRegisterTargets"), actions("BatchDeregisterTargets"), started.len()),
        (LBS, LBS, 2 * LBS),
        "a registration and a deregistration per load balancer, all accepted"
    );
    for (i, t) in started.iter().enumerate() {
        let within = started[i..].iter().take_while(|u| **u < t + 1_000_000).count();
        assert!(within <= SLOW_RATE as usize, "{within} tasks started within one second from {t} µs");
    }
}
