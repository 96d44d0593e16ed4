//! The shape of the code that the design depends on, checked so that it cannot drift.

use std::collections::BTreeSet;
use std::path::Path;

/// `crate::<module>` paths used by the files of `dir` and its subdirectories.
fn crate_modules_used(dir: &Path) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    for entry in std::fs::read_dir(dir).expect("src/plan exists") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            used.extend(crate_modules_used(&path));
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a source file");
        for (i, _) in text.match_indices("crate::") {
            let module: String =
                text[i + "crate::".len()..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            used.insert(module);
        }
        assert!(!text.contains("super::super"), "{}: reaches out of the planner with super::super", path.display());
    }
    used
}

#[test]
fn the_planner_imports_nothing_but_model_and_rules() {
    let used = crate_modules_used(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/plan"));
    let allowed: BTreeSet<String> = ["model", "rules"].into_iter().map(String::from).collect();
    let extra: Vec<&String> = used.difference(&allowed).collect();
    assert!(extra.is_empty(), "src/plan uses crate::{extra:?}: decisions belong in plan, I/O and types elsewhere");
}

#[test]
fn the_in_memory_test_doubles_are_not_in_a_normal_build() {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["tree", "--locked", "--offline", "-p", "clbsync", "-e", "normal,features", "-i", "clbsync"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && tree.contains("clbsync v"), "{tree}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!tree.contains("feature \"testing\""), "a normal build of clbsync enables the test doubles:\n{tree}");
}
