//! `backends:` (several backends, each with a `share:` of the rule's traffic) and `on_empty_backend:`, or the one
//! `backend:` of a rule.

use serde_yaml::Value;

use super::super::spans::join_key;
use super::super::{Backend, OnEmpty, Share, Split};
use super::Validator;
use super::fields::{Fields, kind};

/// The largest `share:`; shares are proportions, and a million parts is finer than integer weights can reach.
const MAX_SHARE: u64 = 1_000_000;

/// The field path of a rule's (first) backend.
pub(super) fn first_backend_path(rule: &str, split: bool) -> String {
    if split { format!("{}[0]", join_key(rule, "backends")) } else { join_key(rule, "backend") }
}

impl Validator {
    /// What the rule (or L4 listener) at `path` sends its traffic to: its `backend:`, or its `backends:` and
    /// `on_empty_backend:`. `None` with problems recorded when either is invalid.
    pub(super) fn rule_backends(&mut self, path: &str, f: &Fields<'_>) -> Option<(Backend, Option<Split>)> {
        let on_empty = self.on_empty(f);
        match (f.get("backend"), f.get("backends")) {
            (Some(_), Some(_)) => {
                self.err(
                    &join_key(path, "backends"),
                    "`backend` and `backends` together: use `backend:` for one backend, or list every backend, each \
                     with a `share`, under `backends:`",
                );
                None
            }
            (Some(one), None) => {
                if f.get("on_empty_backend").is_some() {
                    self.err(
                        &join_key(path, "on_empty_backend"),
                        "`on_empty_backend` applies to `backends:`; a single `backend:` has no other backend to \
                         send its traffic to",
                    );
                }
                self.backend(&join_key(path, "backend"), Some(one), false).map(|b| (b, None))
            }
            (None, Some(many)) => {
                let split = self.split(path, many, on_empty.unwrap_or_default());
                on_empty.and(split)
            }
            (None, None) => None,
        }
    }

    fn split(&mut self, path: &str, value: &Value, on_empty: OnEmpty) -> Option<(Backend, Option<Split>)> {
        let list_path = join_key(path, "backends");
        let items = match value {
            Value::Sequence(items) if items.is_empty() => {
                self.err(&list_path, "`backends` is empty: list at least one backend, each with a `share`");
                return None;
            }
            Value::Sequence(items) => items,
            other => {
                self.err(&list_path, format!("expected a list of backends, got {}", kind(other)));
                return None;
            }
        };
        let mut backends: Vec<Option<Share>> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let bpath = format!("{list_path}[{i}]");
            let backend = self.backend(&bpath, Some(item), true);
            let share = item.get("share").and_then(Value::as_u64).filter(|s| (1..=MAX_SHARE).contains(s));
            let port_at = self.spans.value(&join_key(&bpath, "port"));
            let share = backend.zip(share).map(|(backend, share)| Share { backend, share: share as u32, port_at });
            if let (Some(b), Some(Some(first))) = (&share, backends.first()) {
                self.alike(&bpath, first, b, &backends);
            }
            backends.push(share);
        }
        let backends: Vec<Share> = backends.into_iter().collect::<Option<_>>()?;
        let first = backends[0].backend.clone();
        Some((first, Some(Split { backends, on_empty })))
    }

    /// Checks that `b` (at `path`) can share a rule with the backends before it: the same namespace, `policy` and
    /// `allow_empty` as the first, and other pods than each.
    fn alike(&mut self, path: &str, first: &Share, b: &Share, before: &[Option<Share>]) {
        let (first, backend) = (&first.backend, &b.backend);
        if backend.pods.namespace != first.pods.namespace {
            self.err(
                &join_key(path, "namespace"),
                format!(
                    "the backends of one rule are in one namespace (the first is in `{}`); a rule cannot split \
                     traffic across namespaces yet",
                    first.pods.namespace
                ),
            );
        }
        if backend.policy != first.policy || backend.allow_empty != first.allow_empty {
            self.err(
                path,
                "`policy` and `allow_empty` apply to the whole rule: set them alike on every backend of `backends:`",
            );
        }
        if let Some(j) = before.iter().position(|o| o.as_ref().is_some_and(|o| o.backend.pods == backend.pods)) {
            self.err(path, format!("names the same pods as backends[{j}] ({}): list each once", backend.pods));
        }
    }

    /// `on_empty_backend:`, `hold` unless set.
    fn on_empty(&mut self, f: &Fields<'_>) -> Option<OnEmpty> {
        match self.string(f, "on_empty_backend", false).as_deref() {
            None | Some("hold") => Some(OnEmpty::Hold),
            Some("redistribute") => Some(OnEmpty::Redistribute),
            Some(other) => {
                let message = format!("expected `hold` or `redistribute`, got `{other}`");
                self.err(&join_key(&f.path, "on_empty_backend"), message);
                None
            }
        }
    }

    /// Checks backend `f`'s `share:`: required in a `backends:` list (`in_split`), a positive integer, and not
    /// with `weight:`; refused on a single `backend:`.
    pub(super) fn share_fits(&mut self, f: &Fields<'_>, in_split: bool) {
        let path = join_key(&f.path, "share");
        match (f.get("share"), in_split) {
            (None, true) => self.err(
                &f.path,
                "missing field `share`: this backend's part of the rule's traffic, a positive integer (shares are \
                 proportions: 95 and 5 send 95% and 5%)",
            ),
            (None, false) => {}
            (Some(_), false) => self.err(
                &path,
                "`share` is for the backends of a `backends:` list; a single `backend:` takes all of the rule's \
                 traffic",
            ),
            (Some(value), true) => {
                if f.get("weight").is_some() {
                    self.err(
                        &path,
                        "`weight` and `share` in one backend: `weight` is the CLB weight of each target (the \
                         backend's part of the traffic then grows with its pod count), `share` is the backend's part \
                         of the rule's traffic whatever its pod count, and clbsync computes the weights from it: \
                         remove `weight`",
                    );
                }
                match value.as_u64() {
                    Some(0) => self.err(
                        &path,
                        "a share of 0 would send this backend nothing: shares are positive integers; to take its \
                         traffic away, remove the backend from `backends:`",
                    ),
                    Some(s) if s <= MAX_SHARE => {}
                    _ => self.err(&path, format!("expected an integer 1..{MAX_SHARE}, got {}", kind(value))),
                }
            }
        }
    }
}
