//! `validate`'s report: one line saying the rules file is valid, or (`-o json`) one document with every problem.

use std::collections::BTreeSet;
use std::io::{self, Write};

use crate::rules::{self, Rules};

/// `validate -o json`: whether `file` is valid, its number of rules and every problem (a file that cannot be read
/// is one problem at line 0).
pub fn json(out: &mut impl Write, file: &str, result: &Result<Rules, rules::Error>) -> io::Result<()> {
    let problems: Vec<_> = match result {
        Ok(_) => Vec::new(),
        Err(rules::Error::Read { error, .. }) => {
            vec![serde_json::json!({ "line": 0, "column": 0, "path": "", "message": error.to_string() })]
        }
        Err(rules::Error::Invalid { problems, .. }) => problems
            .iter()
            .map(|p| serde_json::json!({"line": p.line, "column": p.column, "path": p.path, "message": p.message}))
            .collect(),
    };
    let doc = serde_json::json!({
        "file": file,
        "valid": result.is_ok(),
        "rules": result.as_ref().map(|r| r.rules.len()).unwrap_or(0),
        "problems": problems,
    });
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(io::Error::from)?;
    writeln!(out)
}

/// `validate`: the line saying `file` is valid, how many rules it has on how many load balancers, and whether it
/// was `checked` against the cluster.
pub fn valid(out: &mut impl Write, file: &str, rules: &Rules, checked: bool) -> io::Result<()> {
    let lbs: BTreeSet<_> = rules.rules.iter().map(|r| &r.load_balancer_id).collect();
    let n = rules.rules.len();
    let checked = if checked { ", checked against the cluster" } else { "" };
    writeln!(out, "{file} is valid: {n} rule(s) on {} load balancer(s){checked}.", lbs.len())
}
