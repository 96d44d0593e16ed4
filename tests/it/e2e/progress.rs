//! Progress on stderr (issue 15): shown on a terminal when a run takes more than a second, never in a pipe and
//! never with JSON logs.

use std::time::Duration;

use super::logs::on_a_terminal;
use super::{Slot, Spec, World, eni, p};

const ESC: char = '\u{1b}';
/// indicatif's default spinner frames are Braille patterns.
fn spinner(s: &str) -> bool {
    s.chars().any(|c| ('\u{2800}'..='\u{28ff}').contains(&c))
}

/// Changes on both load balancers, applied slowly enough (CLB tasks of 1.5 s) that a run takes seconds.
async fn slow_world(prefix: &str) -> World {
    let spec = Spec::default()
        .pods([p("api", "10.1.0.1"), p("api", "10.1.0.2"), p("web", "10.2.0.1"), p("redis", "10.3.0.1")])
        .bound(Slot::Web, [eni("10.99.0.2", 8080, 20)]);
    let world = World::new(prefix, spec).await;
    world.emu.set_task_delay(Duration::from_millis(1500));
    world
}

#[tokio::test]
async fn a_slow_run_shows_progress_on_a_terminal_only() {
    let world = slow_world("progress-pipe").await;
    let piped = world.run(&["reconcile"]).await;
    piped.assert_code(0);
    assert!(
        !piped.stderr.contains(ESC) && !spinner(&piped.stderr) && !piped.stderr.contains("load balancer(s):"),
        "no progress in a pipe: {:?}",
        piped.stderr
    );
    assert!(!spinner(&piped.stdout) && !piped.stdout.contains(ESC), "nor on stdout: {:?}", piped.stdout);

    let world = slow_world("progress-tty").await;
    let tty = on_a_terminal(&world, &["reconcile"], true).await;
    assert!(tty.contains("reading 2 load balancer(s)"), "a terminal shows what the run does: {tty:?}");
    assert!(tty.contains("applying") && spinner(&tty), "with the changes and a spinner: {tty:?}");
    assert!(tty.contains(" INFO applied"), "log lines still reach the terminal: {tty:?}");

    let world = slow_world("progress-json").await;
    let json = on_a_terminal(&world, &["reconcile", "--log-format", "json"], true).await;
    assert!(json.contains("\"applied\""), "the run logged: {json:?}");
    assert!(!json.contains("load balancer(s):") && !spinner(&json), "JSON logs get no progress: {json:?}");
}

#[tokio::test]
async fn a_quick_run_on_a_terminal_shows_no_progress() {
    let world = World::new("progress-quick", Spec::default().pods([p("api", "10.1.0.1")])).await;
    let tty = on_a_terminal(&world, &["diff"], true).await;
    assert!(tty.contains(" INFO "), "the run logged: {tty:?}");
    assert!(!tty.contains("load balancer(s):") && !spinner(&tty), "under a second, no progress: {tty:?}");
}
