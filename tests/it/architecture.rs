//! The shape of the code that the design depends on, checked so that it cannot drift.

use std::collections::BTreeSet;
use std::path::Path;

/// `crate::<module>` paths used by the files of a module: `dir.rs` and the files under `dir`.
fn crate_modules_used(dir: &Path) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut files = vec![dir.with_extension("rs")];
    for entry in std::fs::read_dir(dir).expect("the module's directory exists") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            used.extend(crate_modules_used(&path));
        } else {
            files.push(path);
        }
    }
    for path in files.into_iter().filter(|p| p.is_file()) {
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

/// The top-level modules of `src/` from the lowest layer up: a module uses only modules before it. The stages of
/// one run (rules → desired → actual → plan → apply → report) are in their order, the CLB API below the stages
/// that read and write it, the observers beside the drivers that call them, and the drivers on top.
const LAYERS: [&str; 15] = [
    "model",
    "rules",
    "stop",
    "clb",
    "desired",
    "actual",
    "plan",
    "apply",
    "outcome",
    "report",
    "observe",
    "serve",
    "reconcile",
    "watch",
    "cli",
];

/// The top-level modules each module of `src/` uses in code (comments left out).
fn module_imports() -> Vec<(String, BTreeSet<String>)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&src).expect("src exists") {
        let path = entry.expect("dir entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("a file name").to_owned();
        if ["lib", "main"].contains(&name.as_str()) || (path.is_dir() && src.join(format!("{name}.rs")).exists()) {
            continue;
        }
        let mut used = BTreeSet::new();
        for file in rust_files(&path) {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let module: String = line[i + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if module != name {
                        used.insert(module);
                    }
                }
            }
        }
        out.push((name, used));
    }
    out.sort();
    out
}

/// The files of the module at `path` (`foo.rs` or `foo/`): `foo.rs` and everything under `foo/`.
fn rust_files(path: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for candidate in [path.with_extension("rs"), path.with_extension("")] {
        if candidate.is_file() {
            files.push(candidate);
        } else if candidate.is_dir() {
            for entry in std::fs::read_dir(&candidate).expect("a module directory") {
                files.extend(rust_files(&entry.expect("dir entry").path()));
            }
        }
    }
    files
}

#[test]
fn every_module_uses_only_the_layers_below_it_so_there_is_no_import_circle() {
    let imports = module_imports();
    let named: BTreeSet<&str> = imports.iter().map(|(m, _)| m.as_str()).collect();
    let layers: BTreeSet<&str> = LAYERS.into_iter().collect();
    assert_eq!(named, layers, "every top-level module of src/ has a place in LAYERS, and nothing else does");
    let rank = |m: &str| LAYERS.iter().position(|l| *l == m);
    let upward: Vec<String> = imports
        .iter()
        .flat_map(|(m, used)| used.iter().filter(|u| rank(u) >= rank(m)).map(move |u| format!("{m} → {u}")))
        .collect();
    assert!(upward.is_empty(), "imports from a layer above (or unknown): {upward:?}");
}
