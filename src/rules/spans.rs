//! Where each field of a YAML document is: field path → line and column, from the event stream.
//!
//! `serde_yaml` gives values but no positions; this index lets validation errors name the line of the field.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// 1-based line and column of a node.
pub type Pos = (usize, usize);

/// Positions of the nodes of one YAML document, keyed by field path (`[0].listeners[1].port`).
#[derive(Debug, Default)]
pub struct Spans {
    values: HashMap<String, Pos>,
    keys: HashMap<String, Pos>,
}

enum Frame {
    Seq { path: String, next: usize },
    Map { path: String, key: Option<String> },
}

impl Spans {
    /// Indexes the first document of `text`. A document the parser rejects yields an empty index (the data
    /// parser reports the syntax error itself).
    pub fn index(text: &str) -> Spans {
        let mut spans = Spans::default();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let pos = (span.start.line(), span.start.col() + 1);
            match event {
                Event::DocumentEnd => break,
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map { path, key }) = stack.last_mut()
                        && key.is_none()
                    {
                        let child = join_key(path, &value);
                        spans.keys.insert(child.clone(), pos);
                        *key = Some(child);
                        continue;
                    }
                    let path = spans.child_path(&mut stack);
                    spans.values.insert(path, pos);
                }
                Event::Alias(_) => {
                    let path = spans.child_path(&mut stack);
                    spans.values.insert(path, pos);
                }
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    let is_key = matches!(stack.last(), Some(Frame::Map { key: None, .. }));
                    let path = if is_key { String::from("<complex key>") } else { spans.child_path(&mut stack) };
                    spans.values.insert(path.clone(), pos);
                    stack.push(match event {
                        Event::SequenceStart(..) => Frame::Seq { path, next: 0 },
                        _ => Frame::Map { path, key: None },
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        spans
    }

    /// The path of the node that starts now, advancing the parent's cursor.
    fn child_path(&self, stack: &mut [Frame]) -> String {
        match stack.last_mut() {
            None => String::new(),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                p
            }
            Some(Frame::Map { key, .. }) => key.take().unwrap_or_default(),
        }
    }

    /// Position of a value, or of its nearest ancestor that has one; `(1, 1)` when nothing matches.
    pub fn value(&self, path: &str) -> Pos {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return *pos;
            }
            match parent(p) {
                Some(up) => p = up,
                None => return (1, 1),
            }
        }
    }

    /// Position of a mapping key (for unknown keys), falling back to the value's position.
    pub fn key(&self, path: &str) -> Pos {
        self.keys.get(path).copied().unwrap_or_else(|| self.value(path))
    }
}

/// `parent("[0].listeners[1]")` is `[0].listeners`; the root has no parent.
fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

/// Field path of key `key` under `path`.
pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_lines_and_columns() {
        let text = "- load_balancer_id: lb-1\n  listeners:\n    - port: 80\n      protocol: tcp\n";
        let s = Spans::index(text);
        assert_eq!(s.value("[0].load_balancer_id"), (1, 21));
        assert_eq!(s.value("[0].listeners[0].port"), (3, 13));
        assert_eq!(s.key("[0].listeners[0].protocol"), (4, 7));
        assert_eq!(s.value("[0].listeners[0].missing"), s.value("[0].listeners[0]"));
        assert_eq!(s.value("[0].listeners[0]"), (3, 7));
    }

    #[test]
    fn parent_walks_up_fields_and_indexes() {
        assert_eq!(parent("[0].listeners[1]"), Some("[0].listeners"));
        assert_eq!(parent("[0].listeners"), Some("[0]"));
        assert_eq!(parent("[0]"), Some(""));
        assert_eq!(parent(""), None);
    }
}
