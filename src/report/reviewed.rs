//! `reconcile --expect-plan FILE`: the plan a reviewer approved, as `diff -o json` wrote it, and what a plan made
//! later has that it had not (and the other way round), per rule, target and action.
//!
//! The decision stays the fingerprint's (equal or not); this only says, when it is not, what changed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};
use std::path::Path;

use serde::Deserialize;

use crate::plan::{Fingerprint, Plan, Status};

/// The parts of a `diff -o json` document that a comparison needs; other fields are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reviewed {
    pub fingerprint: Fingerprint,
    changes: BTreeSet<Change>,
    /// Rule path → (status, reason).
    rules: BTreeMap<String, (String, Option<String>)>,
}

/// One change of the JSON `changes` array, by what identifies it: where, which target, what, and the weights.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
struct Change {
    load_balancer_id: String,
    protocol: String,
    port: u16,
    domain: Option<String>,
    url: Option<String>,
    ip: String,
    target_port: u16,
    action: String,
    weight: Option<u8>,
    previous_weight: Option<u8>,
}

#[derive(Deserialize)]
struct Document {
    fingerprint: String,
    changes: Vec<Change>,
    rules: Vec<RuleState>,
}

#[derive(Deserialize)]
struct RuleState {
    rule: String,
    status: String,
    reason: Option<String>,
}

impl Reviewed {
    /// Reads the document `diff -o json` wrote. The error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Reviewed, String> {
        let doc: Document = serde_json::from_str(text)
            .map_err(|e| format!("not the JSON document `clbsync diff -o json` writes ({e})"))?;
        let fingerprint = Fingerprint::parse(&doc.fingerprint)?;
        // `--show-unchanged` documents list unchanged and unmanaged rows too: they are no change.
        let changes = doc.changes.into_iter().filter(|c| !matches!(c.action.as_str(), "unchanged" | "unmanaged"));
        let rules = doc.rules.into_iter().map(|r| (r.rule, (r.status, r.reason))).collect();
        Ok(Reviewed { fingerprint, changes: changes.collect(), rules })
    }

    /// Why `reconcile --expect-plan FILE` (this reviewed plan, read from `file`) applied nothing: `plan`, whose
    /// fingerprint is `found`, is another, and how; one line per change, ending in a newline.
    pub fn refusal(&self, file: &Path, found: Fingerprint, plan: &Plan) -> String {
        let mut differences = Vec::new();
        self.write_differences(plan, &mut differences).expect("writing to memory cannot fail");
        let mut differences = String::from_utf8(differences).expect("the differences are UTF-8");
        if differences.is_empty() {
            differences = "  the same changes and rule statuses, computed from other bound targets (one bound, \
                           removed or reweighted outside them)\n"
                .to_owned();
        }
        format!(
            "the plan is not the one reviewed (--expect-plan {file}: {expected}, now {found}): nothing was changed; \
             compared with {file} (+ appeared, - went, ~ rule status):\n{differences}review the plan above, and to \
             apply it run again with --expect-plan {found} or with the JSON that `diff -o json` writes now\n",
            file = file.display(),
            expected = self.fingerprint,
        )
    }

    /// Writes what `plan` has that the reviewed plan had not (`+`), what it had that `plan` has not (`-`), and the
    /// rules whose status changed. Nothing when only what the changes were computed from changed.
    fn write_differences(&self, plan: &Plan, out: &mut impl Write) -> io::Result<()> {
        let now = changes(plan);
        for (sign, set, other) in [("+", &now, &self.changes), ("-", &self.changes, &now)] {
            for c in set.difference(other) {
                writeln!(out, "  {sign} {}", describe(c))?;
            }
        }
        for rule in &plan.rules {
            let (status, reason) = match &rule.status {
                Status::Ready => ("ok", None),
                Status::Blocked { reason } => ("blocked", Some(reason)),
                Status::Skipped { reason } => ("skipped", Some(reason)),
            };
            let was = self.rules.get(&rule.path);
            let same = was.is_some_and(|(s, r)| s == status && (status != "blocked" || r.as_ref() == reason));
            if !same {
                let was = was.map_or("not in it", |(s, _)| s.as_str());
                let why = reason.map(|r| format!(": {r}")).unwrap_or_default();
                writeln!(out, "  ~ rule {} (line {}): {was} when reviewed, now {status}{why}", rule.path, rule.line)?;
            }
        }
        Ok(())
    }
}

/// The changes of `plan` as its JSON document lists them.
fn changes(plan: &Plan) -> BTreeSet<Change> {
    let ready = plan.rules.iter().filter(|r| r.status == Status::Ready);
    let rows = ready.flat_map(|rule| rule.rows.iter().filter(|r| r.is_pending()).map(move |row| (rule, row)));
    rows.map(|(rule, row)| {
        let value = serde_json::to_value(super::json::change(rule, row, None)).expect("a change serialises");
        serde_json::from_value(value).expect("a change has every field of Change")
    })
    .collect()
}

/// `register 10.0.0.5:8080 (weight 20) on lb-1 HTTP:80 shop.example.com/`.
fn describe(c: &Change) -> String {
    let target = if c.ip.contains(':') {
        format!("[{}]:{}", c.ip, c.target_port)
    } else {
        format!("{}:{}", c.ip, c.target_port)
    };
    let weight = match (c.previous_weight, c.weight) {
        (Some(p), Some(w)) if p != w => format!("weight {p} → {w}"),
        (_, Some(w)) | (Some(w), None) => format!("weight {w}"),
        (None, None) => "no weight".to_owned(),
    };
    let rule = match (&c.domain, &c.url) {
        (Some(d), Some(u)) => format!(" {d}{u}"),
        _ => String::new(),
    };
    format!("{} {target} ({weight}) on {} {}:{}{rule}", c.action, c.load_balancer_id, c.protocol, c.port)
}
