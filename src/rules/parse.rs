//! From YAML text to validated [`Rules`], collecting every problem with its position.

use std::collections::HashSet;

use serde_yaml::Value;

use super::spans::{Spans, join_key};
use super::{Backend, Split};
use super::{Error, IdLines, L7Spec, ListenerSpec, Problem, Rule, RuleId, Rules};
use crate::model::Protocol;
use depth::{MAX_FLOW_DEPTH, too_deep};
use fields::{Fields, kind};

mod backend;
mod depth;
mod fields;
mod service;
mod split;
mod workload;

/// Validates rules from text; `file` names the source in messages.
pub fn parse(file: &str, text: &str) -> Result<Rules, Error> {
    let invalid = |problems| Error::Invalid { file: file.to_string(), problems };
    if let Some(pos) = too_deep(text) {
        let message = format!("{{ and [ are nested more than {MAX_FLOW_DEPTH} levels deep; the rules file is refused");
        return Err(invalid(vec![problem(pos, "", message)]));
    }
    let mut value: Value = match serde_yaml::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            let pos = e.location().map(|l| (l.line(), l.column())).unwrap_or((1, 1));
            return Err(invalid(vec![problem(pos, "", format!("not valid YAML: {}", strip_location(&e)))]));
        }
    };
    if let Err(e) = value.apply_merge() {
        return Err(invalid(vec![problem((1, 1), "", format!("bad YAML merge key: {e}"))]));
    }
    let mut v = Validator { spans: Spans::index(text), problems: Vec::new(), rules: Vec::new() };
    v.document(&value);
    if v.problems.is_empty() {
        Ok(Rules { rules: v.rules })
    } else {
        v.problems.sort_by_key(|a| (a.line, a.column));
        Err(invalid(v.problems))
    }
}

/// serde_yaml appends " at line X column Y"; the position is already in front of the message.
fn strip_location(e: &serde_yaml::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

pub(super) fn problem(pos: (usize, usize), path: &str, message: impl Into<String>) -> Problem {
    Problem { line: pos.0, column: pos.1, path: path.to_string(), message: message.into() }
}

pub(super) struct Validator {
    spans: Spans,
    problems: Vec<Problem>,
    rules: Vec<Rule>,
}

impl Validator {
    fn err(&mut self, path: &str, message: impl Into<String>) {
        let pos = self.spans.value(path);
        self.problems.push(problem(pos, path, message));
    }

    fn document(&mut self, doc: &Value) {
        let items = match doc {
            Value::Sequence(items) if !items.is_empty() => items,
            Value::Sequence(_) | Value::Null => {
                self.err("", "the file lists no load balancers: expected a list of `- load_balancer_id: lb-…` entries");
                return;
            }
            other => {
                self.err("", format!("expected a list of load balancers, got {}", kind(other)));
                return;
            }
        };
        let mut listeners_seen: HashSet<(String, u16, Protocol)> = HashSet::new();
        let mut listener_ids_seen: HashSet<(String, String)> = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let path = format!("[{i}]");
            let Some(f) = self.fields(&path, item, &["load_balancer_id", "listeners"]) else {
                continue;
            };
            let lb = self.id(&f, "load_balancer_id", "lb-", true);
            let Some(listeners) = self.list(&f, "listeners", true) else {
                continue;
            };
            for (j, listener) in listeners.iter().enumerate() {
                let lpath = format!("{path}.listeners[{j}]");
                self.listener(&lpath, listener, lb.as_deref(), &mut listeners_seen, &mut listener_ids_seen);
            }
        }
    }

    fn listener(
        &mut self,
        path: &str,
        value: &Value,
        lb: Option<&str>,
        seen: &mut HashSet<(String, u16, Protocol)>,
        ids_seen: &mut HashSet<(String, String)>,
    ) {
        let known = ["port", "protocol", "listener_id", "rules", "backend", "backends", "on_empty_backend"];
        let Some(f) = self.fields(path, value, &known) else {
            return;
        };
        let port = self.int(&f, "port", 1, 65535, None).map(|p| p as u16);
        let protocol = match self.string(&f, "protocol", true) {
            Some(s) => match s.parse::<Protocol>() {
                Ok(p) => Some(p),
                Err(e) => {
                    self.err(&join_key(path, "protocol"), e);
                    None
                }
            },
            None => None,
        };
        let listener_id = self.id(&f, "listener_id", "lbl-", false);
        if let (Some(lb), Some(port), Some(protocol)) = (lb, port, protocol)
            && !seen.insert((lb.to_string(), port, protocol))
        {
            self.err(path, format!("duplicate listener: {protocol}:{port} of {lb} is already listed above"));
        }
        if let (Some(lb), Some(id)) = (lb, &listener_id)
            && !ids_seen.insert((lb.to_string(), id.clone()))
        {
            self.err(
                &join_key(path, "listener_id"),
                format!("duplicate listener: {id} of {lb} is already listed above"),
            );
        }
        let Some(protocol) = protocol else {
            // Still check what is below, so every problem shows up in one run.
            if has_backend(&f) {
                self.rule_backends(path, &f);
            }
            for (k, rule) in self.list(&f, "rules", false).into_iter().flatten().enumerate() {
                self.l7_rule(&format!("{path}.rules[{k}]"), rule, None, None, &mut HashSet::new());
            }
            return;
        };
        let spec = port.map(|port| ListenerSpec { port, protocol, listener_id });
        if protocol.is_l7() {
            self.l7_listener(path, &f, lb, protocol, spec.as_ref());
        } else {
            self.l4_listener(path, &f, lb, protocol, spec);
        }
    }

    /// An HTTP(S) listener: its backends are bound per rule, under `rules:`.
    fn l7_listener(
        &mut self,
        path: &str,
        f: &Fields<'_>,
        lb: Option<&str>,
        protocol: Protocol,
        spec: Option<&ListenerSpec>,
    ) {
        if has_backend(f) {
            self.err(
                &join_key(path, "backend"),
                format!(
                    "{protocol} listeners bind backends per rule: move `backend:` under `rules:` with a domain and url"
                ),
            );
        }
        if f.get("on_empty_backend").is_some() {
            self.err(
                &join_key(path, "on_empty_backend"),
                format!("{protocol} listeners split traffic per rule: put `on_empty_backend:` beside `backends:` in each rule that has them"),
            );
        }
        let Some(rules) = self.list(f, "rules", true) else {
            return;
        };
        let mut rules_seen = HashSet::new();
        for (k, rule) in rules.iter().enumerate() {
            let rpath = format!("{path}.rules[{k}]");
            self.l7_rule(&rpath, rule, lb, spec, &mut rules_seen);
        }
    }

    /// A layer-4 listener: its backends are bound on the listener itself.
    fn l4_listener(
        &mut self,
        path: &str,
        f: &Fields<'_>,
        lb: Option<&str>,
        protocol: Protocol,
        spec: Option<ListenerSpec>,
    ) {
        let has_rules = f.get("rules").is_some();
        if has_rules {
            self.err(
                &join_key(path, "rules"),
                format!("{protocol} is a layer-4 protocol: put `backend:` directly on the listener, without `rules:`"),
            );
        }
        if !has_backend(f) {
            if !has_rules {
                self.err(path, "missing field `backend`");
            }
            return;
        }
        let backends = self.rule_backends(path, f);
        if let (Some(lb), Some(spec), Some(backends)) = (lb, spec, backends) {
            self.push_rule(path, lb, spec, None, backends);
        }
    }

    fn l7_rule(
        &mut self,
        path: &str,
        value: &Value,
        lb: Option<&str>,
        spec: Option<&ListenerSpec>,
        seen: &mut HashSet<(String, String)>,
    ) {
        let known = ["domain", "url", "location_id", "backend", "backends", "on_empty_backend"];
        let Some(f) = self.fields(path, value, &known) else {
            return;
        };
        let domain = self.string(&f, "domain", true);
        let url = self.string(&f, "url", true);
        if let Some(u) = &url
            && !u.starts_with('/')
        {
            self.err(&join_key(path, "url"), format!("expected a path starting with `/`, got `{u}`"));
        }
        let location_id = self.id(&f, "location_id", "loc-", false);
        if let (Some(d), Some(u)) = (&domain, &url)
            && !seen.insert((d.clone(), u.clone()))
        {
            self.err(path, format!("duplicate rule: {d}{u} is already listed on this listener"));
        }
        if !has_backend(&f) {
            self.err(path, "missing field `backend`");
            return;
        }
        let backends = self.rule_backends(path, &f);
        if let (Some(lb), Some(spec), Some(domain), Some(url), Some(backends)) = (lb, spec, domain, url, backends) {
            self.push_rule(path, lb, spec.clone(), Some(L7Spec { domain, url, location_id }), backends);
        }
    }

    fn push_rule(
        &mut self,
        path: &str,
        lb: &str,
        listener: ListenerSpec,
        l7: Option<L7Spec>,
        (backend, split): (Backend, Option<Split>),
    ) {
        let line = self.spans.value(path).0;
        let listener_path = path.rsplit_once(".rules[").map_or(path, |(p, _)| p);
        let id_line =
            |set: bool, path: &str, key: &str| if set { self.spans.value(&join_key(path, key)).0 } else { line };
        let id_lines = IdLines {
            listener_id: id_line(listener.listener_id.is_some(), listener_path, "listener_id"),
            location_id: id_line(l7.as_ref().is_some_and(|l| l.location_id.is_some()), path, "location_id"),
            port: self.spans.value(&join_key(&split::first_backend_path(path, split.is_some()), "port")),
        };
        let load_balancer_id = lb.to_string();
        let id = RuleId(self.rules.len());
        let rule = Rule { id, path: path.to_string(), line, id_lines, load_balancer_id, listener, l7, backend, split };
        self.rules.push(rule);
    }
}

/// Whether a listener or rule names its backend (`backend:`) or backends (`backends:`).
fn has_backend(f: &Fields<'_>) -> bool {
    f.get("backend").is_some() || f.get("backends").is_some()
}
