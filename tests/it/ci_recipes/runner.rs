//! Stand-ins for a CI runner: enough of GitHub Actions and GitLab CI to run the recipes' shell blocks as their
//! files declare them, with nothing but bash, sh and the built binary.
//!
//! What a runner provides is replaced, each explicitly:
//! - the `Install clbsync` step (it copies the binary out of the image with docker): the built binary on `PATH`
//!   through `$GITHUB_PATH`, as the step does; GitLab's `-debug` image: the binary on `PATH`;
//! - `actions/checkout`: the world's rules file as `rules.yaml` in a fresh workspace per job;
//! - artifacts (`actions/upload-artifact` / `download-artifact`, GitLab `artifacts:` and `needs:`): copies
//!   through a directory of the pipeline;
//! - `marocchino/sticky-pull-request-comment`: the comment's body recorded under its header, replaced on update;
//! - secrets and CI/CD variables: the emulator's credentials and the test kube-apiserver's kubeconfig;
//! - the CLB API endpoint: `CLBSYNC_ENDPOINT` points at the emulator (a real job talks to the real API);
//! - environment approval (`environment: production`) and GitLab's manual start: the test calls the job;
//! - GitLab's `changes:` in rules: taken as true (rules.yaml changed).
//!
//! Expressions are evaluated for the few forms the recipes use; any other form fails the test, so a recipe cannot
//! gain a condition this runner silently ignores.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

/// Secrets and masked variables, by name.
pub type Secrets = BTreeMap<String, String>;

/// What one job did.
#[derive(Debug, Default)]
pub struct JobRun {
    pub success: bool,
    /// Exit code of each shell block that ran, by step name (GitHub) or `script` (GitLab).
    pub codes: BTreeMap<String, i32>,
    /// stdout and stderr of every block, in order.
    pub log: String,
    /// `$GITHUB_STEP_SUMMARY` at the end.
    pub summary: String,
}

/// The sandbox every job runs against.
pub struct Sandbox {
    pub rules: PathBuf,
    pub endpoint: String,
    pub secrets: Secrets,
    /// A directory holding only `clbsync`, the built binary.
    pub bin: PathBuf,
}

/// A file's shell blocks that ran, as `job/step`, to check that every one did.
pub type Ran = BTreeSet<String>;

fn temp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Runs `script` with `shell` in `cwd` with exactly `env`; its exit code and output.
fn shell(shell: &[&str], script: &str, cwd: &Path, env: &BTreeMap<String, String>) -> (i32, String) {
    let dir = temp();
    let file = dir.path().join("script.sh");
    std::fs::write(&file, script).expect("write script");
    let mut cmd = Command::new(shell[0]);
    cmd.args(&shell[1..]).arg(&file).current_dir(cwd).env_clear().envs(env);
    let out = cmd.output().expect("the shell runs");
    let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), log)
}

fn string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// A `env:` / `variables:` mapping, each value through `eval`.
fn vars(v: &Value, eval: impl Fn(&str) -> String) -> BTreeMap<String, String> {
    let Some(map) = v.as_mapping() else { return BTreeMap::new() };
    map.iter().map(|(k, v)| (string(k), eval(&string(v)))).collect()
}

/// Copies `names` (files) from `from` into `to`, those that exist.
fn copy(names: &[String], from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for name in names {
        if from.join(name).is_file() {
            std::fs::copy(from.join(name), to.join(name)).expect("copy artifact");
        }
    }
}

/// A GitHub Actions event.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    pub name: &'static str,
    pub git_ref: &'static str,
}

pub const PULL_REQUEST: Event = Event { name: "pull_request", git_ref: "refs/pull/7/merge" };
pub const PUSH_MAIN: Event = Event { name: "push", git_ref: "refs/heads/main" };

/// One run of a GitHub Actions workflow: its artifacts, the pull-request comments and the jobs done.
pub struct Workflow<'a> {
    pub doc: &'a Value,
    pub event: Event,
    artifacts: tempfile::TempDir,
    pub comments: BTreeMap<String, String>,
    done: BTreeMap<String, bool>,
}

impl<'a> Workflow<'a> {
    pub fn new(doc: &'a Value, event: Event) -> Self {
        Workflow { doc, event, artifacts: temp(), comments: BTreeMap::new(), done: BTreeMap::new() }
    }

    /// `${{ secrets.NAME }}` and `${{ github.workspace }}` in an `env:` value; any other expression fails.
    fn expand(&self, value: &str, secrets: &Secrets) -> String {
        let Some(start) = value.find("${{") else { return value.to_owned() };
        let end = value[start..].find("}}").expect("closed expression") + start;
        let expr = value[start + 3..end].trim();
        let name = expr.strip_prefix("secrets.").unwrap_or_else(|| panic!("expression `{expr}` in an env value"));
        let secret = secrets.get(name).unwrap_or_else(|| panic!("no stand-in for secret {name}"));
        format!("{}{secret}{}", &value[..start], self.expand(&value[end + 2..], secrets))
    }

    /// An `if:`; `failed`: a step of the job failed before. Without `always()` a step after a failure is skipped.
    fn condition(&self, expr: Option<&Value>, failed: bool, workspace: &Path) -> bool {
        let Some(expr) = expr else { return !failed };
        let expr = string(expr);
        let mut always = false;
        let mut all = true;
        for term in expr.split("&&").map(str::trim) {
            let quoted = |prefix: &str| term.strip_prefix(prefix).and_then(|r| r.strip_suffix('\'')).map(str::to_owned);
            all &= if term == "always()" {
                always = true;
                true
            } else if let Some(name) = quoted("github.event_name == '") {
                name == self.event.name
            } else if let Some(r) = quoted("github.ref == '") {
                r == self.event.git_ref
            } else if let Some(file) = term.strip_prefix("hashFiles('").and_then(|r| r.strip_suffix("') != ''")) {
                workspace.join(file).is_file()
            } else {
                panic!("the stand-in runner does not know the expression `{term}` (in `if: {expr}`)")
            };
        }
        all && (always || !failed)
    }

    /// Runs job `name` (its `needs` must have succeeded in this run); `None` when its `if:` skips it.
    pub fn job(&mut self, name: &str, sandbox: &Sandbox, ran: &mut Ran) -> Option<JobRun> {
        let doc = self.doc;
        let job = &doc["jobs"][name];
        assert!(job.is_mapping(), "no job {name}");
        for need in job["needs"]
            .as_str()
            .into_iter()
            .map(str::to_owned)
            .chain(job["needs"].as_sequence().into_iter().flatten().map(string))
        {
            assert_eq!(self.done.get(&need), Some(&true), "job {name} needs {need}, which did not succeed");
        }
        let (workspace, home, runner_temp) = (temp(), temp(), temp());
        if !self.condition(job.get("if"), false, workspace.path()) {
            return None;
        }
        let summary = runner_temp.path().join("step_summary.md");
        let github_path = runner_temp.path().join("github_path");
        std::fs::write(&summary, "").expect("summary");
        std::fs::write(&github_path, "").expect("path file");
        let base = BTreeMap::from(
            [
                ("CI", "true".to_owned()),
                ("NO_COLOR", "1".to_owned()),
                ("HOME", home.path().display().to_string()),
                ("RUNNER_TEMP", runner_temp.path().display().to_string()),
                ("GITHUB_WORKSPACE", workspace.path().display().to_string()),
                ("GITHUB_EVENT_NAME", self.event.name.to_owned()),
                ("GITHUB_REF", self.event.git_ref.to_owned()),
                ("GITHUB_STEP_SUMMARY", summary.display().to_string()),
                ("GITHUB_PATH", github_path.display().to_string()),
                ("CLBSYNC_ENDPOINT", sandbox.endpoint.clone()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        let mut env = base;
        env.extend(vars(&doc["env"], |v| self.expand(v, &sandbox.secrets)));
        env.extend(vars(&job["env"], |v| self.expand(v, &sandbox.secrets)));
        let default_shell = doc["defaults"]["run"]["shell"].as_str();
        assert_eq!(default_shell, Some("bash"), "the recipes run their blocks with bash (-eo pipefail)");
        let mut out = JobRun::default();
        let mut failed = false;
        for (i, step) in job["steps"].as_sequence().expect("steps").iter().enumerate() {
            if !self.condition(step.get("if"), failed, workspace.path()) {
                continue;
            }
            let step_name = step["name"].as_str().map_or_else(|| format!("step {i}"), str::to_owned);
            if let Some(uses) = step["uses"].as_str() {
                self.uses(uses, &step["with"], workspace.path(), sandbox);
                continue;
            }
            let script = step["run"].as_str().unwrap_or_else(|| panic!("{name}/{step_name}: neither uses nor run"));
            assert!(!script.contains("${{"), "{name}/{step_name}: an expression in a script's text: {script}");
            ran.insert(format!("{name}/{step_name}"));
            if step_name == "Install clbsync" {
                // Stand-in: what the step ends with, the binary's directory on the job's PATH.
                assert!(script.contains("docker cp clbsync:/usr/local/bin/clbsync") && script.contains("$GITHUB_PATH"));
                std::fs::write(&github_path, format!("{}\n", sandbox.bin.display())).expect("GITHUB_PATH");
                continue;
            }
            let mut step_env = env.clone();
            step_env.extend(vars(&step["env"], |v| self.expand(v, &sandbox.secrets)));
            let added = std::fs::read_to_string(&github_path).expect("GITHUB_PATH");
            let mut path: Vec<&str> = added.lines().rev().collect();
            path.push("/usr/local/bin:/usr/bin:/bin");
            step_env.insert("PATH".into(), path.join(":"));
            let (code, log) =
                shell(&["bash", "--noprofile", "--norc", "-eo", "pipefail"], script, workspace.path(), &step_env);
            out.log.push_str(&format!("--- {name}/{step_name}: exit {code}\n{log}"));
            out.codes.insert(step_name, code);
            failed |= code != 0;
        }
        out.success = !failed;
        out.summary = std::fs::read_to_string(&summary).expect("summary");
        self.done.insert(name.to_owned(), out.success);
        Some(out)
    }

    /// The stand-in of a `uses:` step.
    fn uses(&mut self, uses: &str, with: &Value, workspace: &Path, sandbox: &Sandbox) {
        let action = uses.split('@').next().expect("an action");
        let with = vars(with, str::to_owned);
        let store = |name: &str| self.artifacts.path().join(name);
        match action {
            "actions/checkout" => {
                std::fs::copy(&sandbox.rules, workspace.join("rules.yaml")).expect("check out rules.yaml");
            }
            "actions/upload-artifact" => {
                let paths: Vec<String> =
                    with["path"].lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect();
                copy(&paths, workspace, &store(&with["name"]));
            }
            "actions/download-artifact" => {
                let dir = store(&with["name"]);
                let names: Vec<String> = std::fs::read_dir(&dir)
                    .unwrap_or_else(|e| panic!("artifact {} was not uploaded: {e}", with["name"]))
                    .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                    .collect();
                copy(&names, &dir, workspace);
            }
            "marocchino/sticky-pull-request-comment" => {
                let body = std::fs::read_to_string(workspace.join(&with["path"])).expect("the comment's file");
                self.comments.insert(with["header"].clone(), body);
            }
            other => panic!("the stand-in runner has no stand-in for action {other}"),
        }
    }
}

/// A GitLab pipeline: its source, artifacts per job and the jobs done.
pub struct Pipeline<'a> {
    pub doc: &'a Value,
    /// `CI_PIPELINE_SOURCE`, `CI_COMMIT_BRANCH` (when a branch pipeline), `CI_DEFAULT_BRANCH`…
    pub ci: BTreeMap<String, String>,
    artifacts: tempfile::TempDir,
    done: BTreeMap<String, bool>,
}

/// What a GitLab job's `rules:` make of it.
#[derive(Debug, PartialEq, Eq)]
pub enum When {
    OnSuccess,
    /// Waits for someone to start it; `blocks`: `allow_failure: false`, the pipeline waits for it.
    Manual {
        blocks: bool,
    },
    Never,
}

impl<'a> Pipeline<'a> {
    pub fn merge_request(doc: &'a Value) -> Self {
        Self::with(doc, &[("CI_PIPELINE_SOURCE", "merge_request_event"), ("CI_MERGE_REQUEST_IID", "7")])
    }

    pub fn default_branch(doc: &'a Value) -> Self {
        Self::with(doc, &[("CI_PIPELINE_SOURCE", "push"), ("CI_COMMIT_BRANCH", "main")])
    }

    fn with(doc: &'a Value, ci: &[(&str, &str)]) -> Self {
        let mut vars: BTreeMap<String, String> = ci.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        vars.insert("CI_DEFAULT_BRANCH".into(), "main".into());
        vars.insert("CI".into(), "true".into());
        Pipeline { doc, ci: vars, artifacts: temp(), done: BTreeMap::new() }
    }

    /// `$A == "x"` or `$A == $B`, as GitLab compares them (an unset variable is null, equal to nothing set).
    fn condition(&self, expr: &str) -> bool {
        let (a, b) = expr.split_once("==").unwrap_or_else(|| panic!("the stand-in runner does not know `{expr}`"));
        let side = |s: &str| {
            let s = s.trim();
            match s.strip_prefix('$') {
                Some(var) => self.ci.get(var).cloned(),
                None => {
                    Some(s.strip_prefix('"').and_then(|s| s.strip_suffix('"')).expect("a quoted string").to_owned())
                }
            }
        };
        let (a, b) = (side(a), side(b));
        a.is_some() && a == b
    }

    /// The first of `rules` whose `if:` holds (`changes:` taken as true): its `when`, or `Never` when none does.
    fn rules(&self, rules: &Value) -> When {
        let Some(rules) = rules.as_sequence() else { return When::OnSuccess };
        for rule in rules {
            let holds = rule["if"].as_str().is_none_or(|e| self.condition(e));
            if holds {
                return match rule["when"].as_str() {
                    None | Some("on_success") => When::OnSuccess,
                    Some("manual") => When::Manual { blocks: rule["allow_failure"].as_bool() == Some(false) },
                    Some(other) => panic!("the stand-in runner does not know `when: {other}`"),
                };
            }
        }
        When::Never
    }

    /// Whether the pipeline is created at all (`workflow: rules`).
    pub fn created(&self) -> bool {
        self.rules(&self.doc["workflow"]["rules"]) != When::Never
    }

    /// What the job's rules make of it in this pipeline.
    pub fn when(&self, name: &str) -> When {
        self.rules(&self.doc[name]["rules"])
    }

    /// Runs job `name`'s `script:` with sh (the `-debug` image's busybox shell is POSIX sh too), `-e` like the
    /// runner; its `needs` must have succeeded.
    pub fn job(&mut self, name: &str, sandbox: &Sandbox, ran: &mut Ran) -> JobRun {
        let doc = self.doc;
        let job = &doc[name];
        assert!(job["script"].is_sequence(), "no job {name} with a script");
        let (workspace, home, files) = (temp(), temp(), temp());
        std::fs::copy(&sandbox.rules, workspace.path().join("rules.yaml")).expect("check out rules.yaml");
        for need in job["needs"].as_sequence().into_iter().flatten().map(string) {
            assert_eq!(self.done.get(&need), Some(&true), "job {name} needs {need}, which did not succeed");
            let dir = self.artifacts.path().join(&need);
            let names: Vec<String> =
                doc[need.as_str()]["artifacts"]["paths"].as_sequence().into_iter().flatten().map(string).collect();
            copy(&names, &dir, workspace.path());
        }
        let mut env = self.ci.clone();
        env.extend(vars(&doc["variables"], str::to_owned));
        env.extend(vars(&job["variables"], str::to_owned));
        for (k, v) in &sandbox.secrets {
            if k == "KUBECONFIG" {
                // A variable of type File: the variable holds the path of a file with the value.
                let file = files.path().join("KUBECONFIG");
                std::fs::write(&file, v).expect("file variable");
                env.insert(k.clone(), file.display().to_string());
            } else {
                env.insert(k.clone(), v.clone());
            }
        }
        env.insert("HOME".into(), home.path().display().to_string());
        env.insert("NO_COLOR".into(), "1".into());
        env.insert("CLBSYNC_ENDPOINT".into(), sandbox.endpoint.clone());
        env.insert("PATH".into(), format!("{}:/usr/local/bin:/usr/bin:/bin", sandbox.bin.display()));
        let lines: Vec<String> = job["script"].as_sequence().expect("script").iter().map(string).collect();
        ran.insert(format!("{name}/script"));
        let (code, log) = shell(&["sh", "-e"], &lines.join("\n"), workspace.path(), &env);
        let success = code == 0;
        let artifacts = &job["artifacts"];
        if artifacts.is_mapping() && (success || artifacts["when"].as_str() == Some("always")) {
            let names: Vec<String> = artifacts["paths"].as_sequence().into_iter().flatten().map(string).collect();
            copy(&names, workspace.path(), &self.artifacts.path().join(name));
        }
        self.done.insert(name.to_owned(), success);
        JobRun { success, codes: BTreeMap::from([("script".to_owned(), code)]), log, summary: String::new() }
    }
}
