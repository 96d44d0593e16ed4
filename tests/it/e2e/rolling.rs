//! A rolling update over several runs: new pods are registered before old ones are drained and removed, and no
//! rule ever has zero serving targets while a ready pod exists — checked continuously while each run applies.

use std::time::Duration;

use clb_emulator::state::TargetKind;

use super::{Run, Slot, Spec, World, p, targets_of};

/// Runs `reconcile` while sampling the emulator every few milliseconds; returns the run and the samples that broke
/// the capacity rule.
async fn reconcile_watching_capacity(world: &World) -> (Run, Vec<String>) {
    let run = world.reconcile();
    tokio::pin!(run);
    let mut broken = Vec::new();
    loop {
        tokio::select! {
            r = &mut run => return (r, broken),
            () = tokio::time::sleep(Duration::from_millis(15)) => {
                let state = world.emu.state();
                for slot in Slot::ALL {
                    let ready = world.spec.pods.iter().any(|p| p.app == slot.app() && p.state == super::PodState::Ready);
                    let serving = targets_of(&state, slot, TargetKind::Eni).iter().any(|t| t.2 > 0);
                    if ready && !serving {
                        broken.push(format!("{slot:?}: no target with weight > 0: {:?}", targets_of(&state, slot, TargetKind::Eni)));
                    }
                }
            }
        }
    }
}

/// Within one run, on each load balancer, every registration comes before any weight change or removal.
#[track_caller]
fn assert_make_before_break(world: &World, run: &Run) {
    let calls = world.emu.calls();
    for lb in ["lb-e2e00001", "lb-e2e00002"] {
        let actions: Vec<&str> = calls
            .records
            .iter()
            .filter(|r| r.mutating && r.code == "Success" && r.params.to_string().contains(lb))
            .map(|r| r.action.as_str())
            .collect();
        let first_break = actions.iter().position(|a| !a.contains("Register") || a.contains("Deregister"));
        let last_make = actions.iter().rposition(|a| a.contains("Register") && !a.contains("Deregister"));
        if let (Some(b), Some(m)) = (first_break, last_make) {
            assert!(m < b, "{lb}: registration after a drain or removal: {actions:?}\n{}", run.all());
        }
    }
}

#[tokio::test]
async fn a_rolling_update_registers_new_pods_before_old_ones_are_drained_and_removed() {
    let v1 = ["10.1.0.1", "10.1.0.2", "10.1.0.3"];
    let mut world = World::new(
        "rolling",
        Spec::default().pods(v1.map(|ip| p("api", ip))).pods([p("web", "10.2.0.1"), p("redis", "10.3.0.1")]),
    )
    .await;
    world.emu.set_task_delay(Duration::from_millis(80));
    world.assert_converges_and_stays().await;

    // Each step: what the Deployment controller does between two CronJob runs.
    for step in 1..=4 {
        match step {
            1 => {
                world.add_pod(p("api", "10.1.1.1")).await;
                world.terminate("10.1.0.1").await;
            }
            2 => {
                world.release("10.1.0.1").await;
                world.add_pod(p("api", "10.1.1.2").not_ready()).await;
                world.terminate("10.1.0.2").await;
            }
            3 => {
                world.make_ready("10.1.1.2").await;
                world.add_pod(p("api", "10.1.1.3")).await;
                world.release("10.1.0.2").await;
                world.terminate("10.1.0.3").await;
            }
            _ => world.release("10.1.0.3").await,
        }
        let before = world.emu.state();
        world.emu.reset_calls();
        let (run, broken) = reconcile_watching_capacity(&world).await;
        run.assert_code(0);
        assert!(broken.is_empty(), "step {step}: capacity dipped to zero: {broken:?}\n{}", run.all());
        assert_make_before_break(&world, &run);
        world.assert_converged(&before, &run);
        world.assert_no_duplicate_registration();
    }
    let v2 = ["10.1.1.1", "10.1.1.2", "10.1.1.3"];
    assert_eq!(world.targets(Slot::Api), v2.map(|ip| (ip.to_string(), 8080, 10)));
    assert_eq!(world.targets(Slot::Tls), v2.map(|ip| (ip.to_string(), 8443, 10)));
}
