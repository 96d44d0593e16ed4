//! Log lines on stderr: colour only on a terminal and never with `NO_COLOR`; plain text for files, pipes and
//! `kubectl logs`.

use super::{Spec, World, p, run};

const ESC: char = '\u{1b}';

/// Runs `clbsync <args>` for `world` on a pseudo-terminal (util-linux `script`), stdout discarded, and returns
/// what reached the terminal: stderr only.
pub(super) async fn on_a_terminal(world: &World, args: &[&str], no_color: bool) -> String {
    let cmd = world.process(args);
    // A terminal has a TERM: without one (or with `dumb`) indicatif shows no progress.
    let mut line = String::from("TERM='xterm-256color' ");
    for (k, v) in cmd.get_envs() {
        let (Some(k), Some(v)) = (k.to_str(), v.and_then(|v| v.to_str())) else { continue };
        if k == "NO_COLOR" && !no_color {
            continue;
        }
        line.push_str(&format!("{k}='{v}' "));
    }
    line.push_str(&format!("'{}'", cmd.get_program().to_string_lossy()));
    for a in cmd.get_args() {
        line.push_str(&format!(" '{}'", a.to_string_lossy()));
    }
    line.push_str(" >/dev/null");
    let script = move || {
        let args = ["-qec", &format!("env -i {line}"), "/dev/null"];
        std::process::Command::new("script").args(args).output().expect("util-linux `script` runs")
    };
    let out = tokio::task::spawn_blocking(script).await.expect("join");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn text_logs_are_coloured_only_on_a_terminal_without_no_color() {
    let world = World::new("logs", Spec::default().pods([p("api", "10.1.0.1")])).await;

    let piped = world.run(&["diff"]).await;
    assert!(piped.stderr.contains(" INFO "), "the run logs something: {}", piped.all());
    assert!(!piped.stderr.contains(ESC), "escape codes in piped logs: {:?}", piped.stderr);

    let mut cmd = world.command(&["diff"]);
    cmd.env_remove("NO_COLOR");
    let piped_without_no_color = run(cmd).await;
    assert!(
        !piped_without_no_color.stderr.contains(ESC),
        "a pipe is not a terminal: {:?}",
        piped_without_no_color.stderr
    );

    let tty = on_a_terminal(&world, &["diff"], false).await;
    assert!(tty.contains(" INFO ") && tty.contains(ESC), "a terminal gets colour: {tty:?}");
    let tty_no_color = on_a_terminal(&world, &["diff"], true).await;
    assert!(tty_no_color.contains(" INFO ") && !tty_no_color.contains(ESC), "NO_COLOR wins: {tty_no_color:?}");
}
