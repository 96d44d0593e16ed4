//! The book (docs/, mdBook) and the README: every chapter is in the book's table of contents, and every link
//! between them, or to a file of the repository, and every `#anchor` resolves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

use crate::packaging::root;

/// The heading anchors of a Markdown text, as mdBook and GitHub make them: lower case, letters, digits, `-` and
/// `_` kept, spaces turned into `-`, everything else dropped; a repeated anchor gets `-1`, `-2`, ….
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    let mut heading: Option<String> = None;
    for event in Parser::new_ext(text, Options::all()) {
        match event {
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let title = heading.take().unwrap_or_default();
                let id: String = title
                    .to_lowercase()
                    .chars()
                    .filter_map(|c| match c {
                        ' ' => Some('-'),
                        c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                        _ => None,
                    })
                    .collect();
                let n = seen.entry(id.clone()).or_insert(0);
                out.insert(if *n == 0 { id } else { format!("{id}-{n}") });
                *n += 1;
            }
            _ => {}
        }
    }
    out
}

/// The links of a Markdown text that point into the repository (not `http(s):` or `mailto:`).
fn local_links(text: &str) -> Vec<String> {
    Parser::new_ext(text, Options::all())
        .filter_map(|e| match e {
            Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. }) => {
                Some(dest_url.into_string())
            }
            _ => None,
        })
        .filter(|d| !d.starts_with("http://") && !d.starts_with("https://") && !d.starts_with("mailto:"))
        .collect()
}

/// `base/rel` with `..` resolved, without touching the file system.
fn join(base: &Path, rel: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in base.join(rel).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

fn chapters() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("docs/src"))
        .expect("docs/src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    files.sort();
    files
}

/// Every broken link of `file`, as `file: link (why)`.
fn broken_links(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).expect("read");
    let dir = file.parent().expect("a directory");
    let mut broken = Vec::new();
    for link in local_links(&text) {
        let (path, anchor) = link.split_once('#').map_or((link.as_str(), None), |(p, a)| (p, Some(a)));
        let target = if path.is_empty() { file.to_path_buf() } else { join(dir, path) };
        let why = if !target.starts_with(root()) {
            Some("outside the repository".to_owned())
        } else if !target.exists() {
            Some("no such file".to_owned())
        } else if let Some(anchor) = anchor.filter(|_| target.extension().is_some_and(|e| e == "md")) {
            let known = anchors(&std::fs::read_to_string(&target).expect("read"));
            (!known.contains(anchor)).then(|| format!("no heading #{anchor} in {}", target.display()))
        } else {
            None
        };
        if let Some(why) = why {
            broken.push(format!("{}: {link} ({why})", file.strip_prefix(root()).unwrap_or(file).display()));
        }
    }
    broken
}

#[test]
fn every_link_and_anchor_of_the_readme_and_the_book_resolves() {
    let mut files = chapters();
    files.extend(["README.md", "BENCHMARKS.md", "testbed/README.md", "clb-emulator/README.md"].map(|f| root().join(f)));
    let broken: Vec<String> = files.iter().flat_map(|f| broken_links(f)).collect();
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_chapter_is_in_the_table_of_contents_and_has_one_title() {
    let summary = std::fs::read_to_string(root().join("docs/src/SUMMARY.md")).expect("SUMMARY.md");
    let listed: BTreeSet<String> = local_links(&summary).into_iter().collect();
    for chapter in chapters() {
        let name = chapter.file_name().expect("a name").to_string_lossy().into_owned();
        if name == "SUMMARY.md" {
            continue;
        }
        assert!(listed.contains(&name), "docs/src/SUMMARY.md does not list {name}");
        let text = std::fs::read_to_string(&chapter).expect("read");
        let titles = Parser::new_ext(&text, Options::all())
            .filter(|e| matches!(e, Event::Start(Tag::Heading { level: pulldown_cmark::HeadingLevel::H1, .. })))
            .count();
        assert_eq!(titles, 1, "{name}: one `# Title`, the rest `##` and below");
    }
}

#[test]
fn the_anchor_rule_matches_mdbooks_and_a_broken_link_is_found() {
    let text = "# What clbsync guarantees\n## TKE OIDC, step by step\n## Sizing\n## Sizing\n[a](#sizing-1)";
    let found = anchors(text);
    for a in ["what-clbsync-guarantees", "tke-oidc-step-by-step", "sizing", "sizing-1"] {
        assert!(found.contains(a), "{a} in {found:?}");
    }
    let dir = tempfile::tempdir_in(root().join("target")).expect("temp dir under target/");
    let file = dir.path().join("x.md");
    std::fs::write(&file, "# X\n[ok](#x) [gone](#y) [missing](nothing.md) [out](../../../../../../etc/passwd)\n")
        .expect("write");
    let broken = broken_links(&file);
    assert_eq!(broken.len(), 3, "{broken:?}");
}
