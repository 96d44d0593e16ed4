//! From YAML text to validated [`Rules`], collecting every problem with its position.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde_yaml::Value;

use super::labels::{label_key_problem, label_value_problem};
use super::spans::{Spans, join_key};
use super::{
    Backend, Error, IdLines, IpFamily, L7Spec, ListenerSpec, PodQuery, Policy, PortRef, Problem, Rule, Rules, Split,
};
use crate::model::{DEFAULT_WEIGHT, Protocol};

mod service;
mod split;
mod workload;

/// Rules files larger than this are refused before parsing (a rules file is hand-written; 4 MiB is thousands
/// of rules).
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Reads and validates a rules file. The file name in messages is `path` as given. At most [`MAX_BYTES`] + 1
/// bytes are read, whatever the file is (a FIFO, a device), so the limit holds without trusting its size.
pub fn load(path: &Path) -> Result<Rules, Error> {
    let file = std::fs::File::open(path).map_err(|error| Error::Read { file: path.display().to_string(), error })?;
    from_bytes(path, &read_bounded(path, file)?)
}

/// A rules file as read, and what it says: a file read again and again compares its bytes with `text`.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub rules: Rules,
    pub text: Vec<u8>,
}

/// [`load`] for a file read again and again (watch mode): it must be a regular file. It is opened without
/// blocking, so a FIFO put at the path is refused at once instead of waiting for a writer.
pub fn load_regular(path: &Path) -> Result<Loaded, Error> {
    let text = read_regular(path)?;
    Ok(Loaded { rules: from_bytes(path, &text)?, text })
}

/// The bytes of the regular file at `path` (at most [`MAX_BYTES`] + 1 of them), opened without blocking.
pub fn read_regular(path: &Path) -> Result<Vec<u8>, Error> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let read_error = |error| Error::Read { file: path.display().to_string(), error };
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(read_error)?;
    let kind = file.metadata().map_err(read_error)?.file_type();
    if !kind.is_file() {
        let what = match () {
            () if kind.is_fifo() => "it is a FIFO",
            () if kind.is_dir() => "it is a directory",
            () => "it is not a regular file",
        };
        return Err(read_error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{what}; watch mode reads the rules file again every few seconds and needs a regular file (a ConfigMap key mounted as a file is one)"
            ),
        )));
    }
    read_bounded(path, file)
}

fn read_bounded(path: &Path, source: std::fs::File) -> Result<Vec<u8>, Error> {
    use std::io::Read;
    let mut bytes = Vec::new();
    source
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| Error::Read { file: path.display().to_string(), error })?;
    Ok(bytes)
}

/// Validates the bytes of the rules file at `path`.
pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Rules, Error> {
    let file = path.display().to_string();
    if bytes.len() as u64 > MAX_BYTES {
        return Err(Error::Invalid {
            file,
            problems: vec![problem(
                (1, 1),
                "",
                format!("file is larger than {MAX_BYTES} bytes (4 MiB), the limit for a rules file"),
            )],
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| Error::Read {
        file: file.clone(),
        error: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    parse(&file, text)
}

/// Flow collections (`{`, `[`) nested deeper than this are refused before parsing: the YAML parser's cost grows
/// with the nesting depth of every token, and no rules file needs more than a few levels.
const MAX_FLOW_DEPTH: usize = 128;

/// The (line, column) of the first `{` or `[` nested deeper than [`MAX_FLOW_DEPTH`], outside quoted scalars
/// and comments. A quote opens a scalar only where a token can start (after indentation, `[`, `{`, `,`, `:`,
/// `-`, `?`), as in YAML, so an apostrophe inside a plain scalar cannot hide what follows it.
fn too_deep(text: &str) -> Option<(usize, usize)> {
    let (mut depth, mut line, mut column) = (0usize, 1usize, 0usize);
    let mut prev = b'\n';
    let mut quote: Option<u8> = None;
    let mut comment = false;
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        column += 1;
        if c == '\n' {
            (line, column, comment, prev) = (line + 1, 0, false, b'\n');
            continue;
        }
        if comment || !c.is_ascii() {
            prev = b'x';
            continue;
        }
        let b = c as u8;
        match quote {
            Some(b'"') if b == b'\\' => {
                if chars.next_if(|&(_, n)| n != '\n').is_some() {
                    column += 1;
                }
            }
            Some(q) if b == q => {
                if q == b'\'' && chars.next_if(|&(_, n)| n == '\'').is_some() {
                    column += 1;
                } else {
                    quote = None;
                }
            }
            Some(_) => {}
            None => match b {
                b'#' if prev == b' ' || prev == b'\t' || prev == b'\n' => comment = true,
                b'"' | b'\'' if matches!(prev, b' ' | b'\t' | b'\n' | b'[' | b'{' | b',' | b':' | b'-' | b'?') => {
                    quote = Some(b);
                }
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_FLOW_DEPTH {
                        return Some((line, column));
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            },
        }
        // Indentation keeps "start of line" for the quote and comment rules.
        if !(prev == b'\n' && (b == b' ' || b == b'\t')) {
            prev = b;
        }
    }
    None
}

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

fn problem(pos: (usize, usize), path: &str, message: impl Into<String>) -> Problem {
    Problem { line: pos.0, column: pos.1, path: path.to_string(), message: message.into() }
}

pub(super) struct Validator {
    spans: Spans,
    problems: Vec<Problem>,
    rules: Vec<Rule>,
}

/// A mapping being validated: reports unknown keys and missing ones against a known key list.
pub(super) struct Fields<'a> {
    path: String,
    map: &'a serde_yaml::Mapping,
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
        let has_rules = f.get("rules").is_some();
        let has_backend = f.get("backend").is_some() || f.get("backends").is_some();
        let Some(protocol) = protocol else {
            // Still check what is below, so every problem shows up in one run.
            if has_backend {
                self.rule_backends(path, &f);
            }
            for (k, rule) in self.list(&f, "rules", false).into_iter().flatten().enumerate() {
                self.l7_rule(&format!("{path}.rules[{k}]"), rule, None, None, &mut HashSet::new());
            }
            return;
        };
        let spec = port.map(|port| ListenerSpec { port, protocol, listener_id });
        if protocol.is_l7() {
            if has_backend {
                self.err(
                    &join_key(path, "backend"),
                    format!("{protocol} listeners bind backends per rule: move `backend:` under `rules:` with a domain and url"),
                );
            }
            if f.get("on_empty_backend").is_some() {
                self.err(
                    &join_key(path, "on_empty_backend"),
                    format!("{protocol} listeners split traffic per rule: put `on_empty_backend:` beside `backends:` in each rule that has them"),
                );
            }
            let Some(rules) = self.list(&f, "rules", true) else {
                return;
            };
            let mut rules_seen = HashSet::new();
            for (k, rule) in rules.iter().enumerate() {
                let rpath = format!("{path}.rules[{k}]");
                self.l7_rule(&rpath, rule, lb, spec.as_ref(), &mut rules_seen);
            }
        } else {
            if has_rules {
                self.err(
                    &join_key(path, "rules"),
                    format!(
                        "{protocol} is a layer-4 protocol: put `backend:` directly on the listener, without `rules:`"
                    ),
                );
            }
            if !has_backend {
                if !has_rules {
                    self.err(path, "missing field `backend`");
                }
                return;
            }
            let backends = self.rule_backends(path, &f);
            if let (Some(lb), Some(spec), Some(backends)) = (lb, spec, backends) {
                self.push_rule(path, lb, spec, None, backends);
            }
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
        if f.get("backend").is_none() && f.get("backends").is_none() {
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
        let rule = Rule { path: path.to_string(), line, id_lines, load_balancer_id, listener, l7, backend, split };
        self.rules.push(rule);
    }

    /// A backend; `in_split`: one of a `backends:` list (it then has a `share:`, checked by the caller).
    fn backend(&mut self, path: &str, value: Option<&Value>, in_split: bool) -> Option<Backend> {
        let value = value?;
        let known = [
            "namespace",
            "deployment",
            "workload",
            "service",
            "selector",
            "port",
            "weight",
            "policy",
            "allow_empty",
            "ip_family",
            "share",
        ];
        let f = self.fields(path, value, &known)?;
        self.share_fits(&f, in_split);
        let namespace = self.string(&f, "namespace", true);
        if let Some(ns) = &namespace
            && !is_dns_label(ns, 63)
        {
            self.err(
                &join_key(path, "namespace"),
                format!("`{ns}` is not a valid namespace name (lowercase letters, digits and `-`, at most 63)"),
            );
        }
        let service = self.service(&f);
        let port = self.port_ref(&f, f.get("service").is_some());
        let source = self.source(&f, service, port.as_ref());
        let weight = self.int(&f, "weight", 0, 100, Some(DEFAULT_WEIGHT as i64)).map(|w| w as u8);
        let policy = match self.string(&f, "policy", false).as_deref() {
            None | Some("sync") => Some(Policy::Sync),
            Some("upsert-only") => Some(Policy::UpsertOnly),
            Some(other) => {
                self.err(&join_key(path, "policy"), format!("expected `sync` or `upsert-only`, got `{other}`"));
                None
            }
        };
        let allow_empty = self.bool(&f, "allow_empty");
        let ip_family = match self.string(&f, "ip_family", false).map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("ipv4") => Some(IpFamily::Ipv4),
            Some("ipv6") => Some(IpFamily::Ipv6),
            Some(other) => {
                self.err(&join_key(path, "ip_family"), format!("expected `ipv4` or `ipv6`, got `{other}`"));
                None
            }
        };
        Some(Backend {
            pods: PodQuery { namespace: namespace?, source: source? },
            port: port?,
            weight: weight?,
            policy: policy?,
            allow_empty: allow_empty?,
            ip_family: ip_family?,
        })
    }

    fn selector(&mut self, f: &Fields<'_>) -> Option<BTreeMap<String, String>> {
        let value = f.get("selector")?;
        let path = join_key(&f.path, "selector");
        let Value::Mapping(map) = value else {
            self.err(&path, format!("expected a map of labels (`app: web`), got {}", kind(value)));
            return None;
        };
        if map.is_empty() {
            self.err(&path, "an empty selector would select every pod in the namespace: name at least one label");
            return None;
        }
        let mut labels = BTreeMap::new();
        let mut ok = true;
        for (k, v) in map {
            let key = scalar_text(k);
            let val = scalar_text(v);
            match (key, val) {
                (Some(k), Some(v)) => {
                    let problem =
                        label_key_problem(&k).map(|why| format!("`{k}` is not a valid label key: {why}")).or_else(
                            || label_value_problem(&v).map(|why| format!("`{v}` is not a valid label value: {why}")),
                        );
                    if let Some(message) = problem {
                        self.err(&join_key(&path, &k), message);
                        ok = false;
                    }
                    labels.insert(k, v);
                }
                (k, _) => {
                    let p = join_key(&path, k.as_deref().unwrap_or("?"));
                    self.err(&p, "label keys and values must be strings: quote numbers and booleans (`tier: \"1\"`)");
                    ok = false;
                }
            }
        }
        ok.then_some(labels)
    }

    /// The backend's `port:`: a container port, or with `service:` a port of the Service (whose names are DNS
    /// labels, longer than container port names may be).
    fn port_ref(&mut self, f: &Fields<'_>, of_service: bool) -> Option<PortRef> {
        let path = join_key(&f.path, "port");
        match f.get("port") {
            None if of_service => {
                self.err(&f.path, "missing field `port`: the name or number of the Service's port to send traffic to");
                None
            }
            None => {
                self.err(&f.path, "missing field `port`: the container port number or name to send traffic to");
                None
            }
            Some(Value::String(name)) if of_service && name.parse::<i64>().is_err() => {
                if is_dns_label(name, 63) {
                    Some(PortRef::Name(name.clone()))
                } else {
                    self.err(
                        &path,
                        format!(
                            "`{name}` is not a valid Service port name (lowercase letters, digits and `-`, at most 63)"
                        ),
                    );
                    None
                }
            }
            Some(Value::String(name)) => {
                if name.parse::<i64>().is_ok() {
                    self.err(&path, format!("port `{name}` is quoted: write the number without quotes"));
                    None
                } else if is_port_name(name) {
                    Some(PortRef::Name(name.clone()))
                } else {
                    self.err(
                        &path,
                        format!("`{name}` is not a valid port name (1-15 lowercase letters, digits and `-`)"),
                    );
                    None
                }
            }
            Some(_) => self.int(f, "port", 1, 65535, None).map(|p| PortRef::Number(p as u16)),
        }
    }

    /// Checks `value` is a mapping without unknown keys; `None` (with a problem recorded) otherwise.
    fn fields<'a>(&mut self, path: &str, value: &'a Value, known: &[&str]) -> Option<Fields<'a>> {
        let Value::Mapping(map) = value else {
            self.err(path, format!("expected a map with {}, got {}", known.join(", "), kind(value)));
            return None;
        };
        for key in map.keys() {
            match key.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => {
                    let p = join_key(path, k);
                    let pos = self.spans.key(&p);
                    let hint = suggest(k, known).map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
                    self.problems.push(problem(
                        pos,
                        &p,
                        format!("unknown field{hint}; expected one of {}", known.join(", ")),
                    ));
                }
                None => self.err(path, format!("keys must be strings, got {}", kind(key))),
            }
        }
        Some(Fields { path: path.to_string(), map })
    }

    fn string(&mut self, f: &Fields<'_>, key: &str, required: bool) -> Option<String> {
        let path = join_key(&f.path, key);
        match f.get(key) {
            None if required => {
                self.err(&f.path, format!("missing field `{key}`"));
                None
            }
            None => None,
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.err(&path, "must not be empty");
                None
            }
            Some(Value::String(s)) => match s.chars().find(|&c| crate::model::is_unprintable(c)) {
                Some(c) => {
                    let what = if c.is_control() {
                        "a control character"
                    } else {
                        "a bidirectional formatting character, which reorders what follows it on screen"
                    };
                    let message = format!("contains U+{:04X}, {what}: remove it", u32::from(c));
                    self.err(&path, message);
                    None
                }
                None => Some(s.clone()),
            },
            Some(other) => {
                self.err(&path, format!("expected a string, got {}", kind(other)));
                None
            }
        }
    }

    fn int(&mut self, f: &Fields<'_>, key: &str, min: i64, max: i64, default: Option<i64>) -> Option<i64> {
        let path = join_key(&f.path, key);
        match f.get(key) {
            None => {
                if default.is_none() {
                    self.err(&f.path, format!("missing field `{key}`"));
                }
                default
            }
            Some(Value::Number(n)) => match n.as_i64() {
                Some(i) if (min..=max).contains(&i) => Some(i),
                _ => {
                    self.err(&path, format!("expected {min}..{max}, got {n}"));
                    None
                }
            },
            Some(other) => {
                self.err(&path, format!("expected an integer {min}..{max}, got {}", kind(other)));
                None
            }
        }
    }

    fn bool(&mut self, f: &Fields<'_>, key: &str) -> Option<bool> {
        match f.get(key) {
            None => Some(false),
            Some(Value::Bool(b)) => Some(*b),
            Some(other) => {
                self.err(&join_key(&f.path, key), format!("expected true or false, got {}", kind(other)));
                None
            }
        }
    }

    /// An optional or required id with a prefix, e.g. `lb-` + 8 lowercase letters or digits.
    fn id(&mut self, f: &Fields<'_>, key: &str, prefix: &str, required: bool) -> Option<String> {
        let s = self.string(f, key, required)?;
        if is_tencent_id(&s, prefix) {
            Some(s)
        } else {
            self.err(&join_key(&f.path, key), format!("expected an id like `{prefix}1a2b3c4d`, got `{s}`"));
            None
        }
    }

    fn list<'a>(&mut self, f: &Fields<'a>, key: &str, required: bool) -> Option<&'a Vec<Value>> {
        let path = join_key(&f.path, key);
        match f.get(key) {
            None => {
                if required {
                    self.err(&f.path, format!("missing field `{key}`"));
                }
                None
            }
            Some(Value::Sequence(items)) if items.is_empty() => {
                self.err(&path, format!("`{key}` is empty"));
                None
            }
            Some(Value::Sequence(items)) => Some(items),
            Some(other) => {
                self.err(&path, format!("expected a list, got {}", kind(other)));
                None
            }
        }
    }
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => format!("string \"{s}\""),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a map".into(),
        Value::Tagged(t) => format!("tagged value {}", t.tag),
    }
}

/// Label keys and values must be YAML strings; `tier: 1` is a number and is refused with a hint to quote it.
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn is_tencent_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|rest| rest.len() == 8 && rest.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
}

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// IANA service name, as Kubernetes requires of container port names.
fn is_port_name(s: &str) -> bool {
    is_dns_label(s, 15) && s.bytes().any(|b| b.is_ascii_lowercase()) && !s.contains("--")
}

/// The known key closest to a typo, if any is within two edits.
fn suggest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    known.iter().copied().map(|k| (edit_distance(key, k), k)).filter(|(d, _)| *d <= 2).min().map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
