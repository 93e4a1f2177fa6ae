//! Structure rules that review cannot keep by eye (issue #12):
//!
//! - no import circle between the modules of one crate: a module that uses another may not be
//!   used back by it, directly or through others. A module folder counts as one unit to the
//!   modules beside it (a submodule may use its parent); circles are looked for between
//!   siblings at every level of the module tree. `cargo modules` would need a network install,
//!   so this test reads each crate's `src/` itself: `use` trees and `crate::`/`super::`/child
//!   module paths, with `pub use` re-exports followed to the module that defines the item.
//!   `#[cfg(test)]` modules are left out (tests may reach anywhere).
//! - no source file over 600 lines outside tests and generated code, unless it says why in a
//!   `// size:` comment or is on the allowlist below.

#[path = "structure/parse.rs"]
mod parse;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use parse::{module_of, ModuleFile};

const MAX_LINES: usize = 600;

/// Files over the limit that another change is splitting; each entry is removed with its split.
/// An entry for a file that is short enough again (or gone) fails the test, so the list only
/// shrinks.
const SIZE_ALLOWLIST: &[&str] = &[];

/// Crates whose circles another change is breaking: their circles are printed, not failed.
/// Empty since the sink targets and the SaaS feeds were untangled. An entry for a crate without circles fails the test.
const CYCLE_ALLOWLIST: &[&str] = &[];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every library or binary source folder of the workspace.
fn source_roots() -> Vec<PathBuf> {
    let root = workspace();
    let mut roots: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path().join("src")))
        .filter(|p| p.is_dir())
        .collect();
    roots.push(root.join("benches/src"));
    roots.sort();
    roots
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Unit-test files included with `#[cfg(test)] #[path = ...]` are tests, not modules.
fn is_test_file(path: &Path) -> bool {
    path.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s.ends_with("_tests") || s == "tests")
}

fn crate_modules(src: &Path) -> BTreeMap<Vec<String>, ModuleFile> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut modules = BTreeMap::new();
    for file in files.into_iter().filter(|f| !is_test_file(f)) {
        let text = std::fs::read_to_string(&file).expect("source file is readable");
        let module = module_of(src, &file);
        modules.insert(module.clone(), ModuleFile::parse(module, &text));
    }
    modules
}

/// A module folder is one unit to the modules beside it: `a::x` naming `b::y` is an edge
/// `a -> b` between the siblings `a` and `b`. A module naming its own parent or its own
/// submodules is inside one unit and no edge (a submodule is a part of its parent).
fn sibling_edge(from: &[String], to: &[String]) -> Option<(Vec<String>, Vec<String>)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None;
    }
    Some((from[..=common].to_vec(), to[..=common].to_vec()))
}

/// The module dependency graph between siblings, from the modules each module's code names.
fn graph(modules: &BTreeMap<Vec<String>, ModuleFile>) -> BTreeMap<String, BTreeSet<String>> {
    let known: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in modules {
        edges.entry(parse::display(module)).or_default();
        for path in &file.paths {
            if let Some(target) = parse::resolve(path, &known, modules) {
                // The crate root is a facade (mod declarations, re-exports, the entry point):
                // naming it says nothing about the layering of the modules under it.
                if let Some((a, b)) = sibling_edge(module, &target) {
                    edges
                        .entry(parse::display(&a))
                        .or_default()
                        .insert(parse::display(&b));
                }
            }
        }
    }
    edges
}

/// One cycle per strongly connected component with more than one module.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from.clone()];
        while let Some(m) = stack.pop() {
            for next in edges.get(&m).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> =
        edges.keys().map(|m| (m, reach(m))).collect();
    let mut done = BTreeSet::new();
    let mut found = Vec::new();
    for (m, from_m) in &reachable {
        if done.contains(*m) || !from_m.contains(*m) {
            continue;
        }
        let component: Vec<String> = from_m
            .iter()
            .filter(|n| reachable.get(n).is_some_and(|r| r.contains(*m)))
            .cloned()
            .collect();
        done.extend(component.iter().cloned());
        found.push(component);
    }
    found
}

#[test]
fn no_import_circle_between_modules_of_a_crate() {
    let mut report = Vec::new();
    let mut allowed_with_circles = Vec::new();
    for src in source_roots() {
        let edges = graph(&crate_modules(&src));
        let relative = src
            .strip_prefix(workspace())
            .unwrap_or(&src)
            .display()
            .to_string();
        let found = cycles(&edges);
        if CYCLE_ALLOWLIST.contains(&relative.as_str()) {
            eprintln!("allowlisted, still to break in {relative}: {found:?}");
            if !found.is_empty() {
                allowed_with_circles.push(relative);
            }
            continue;
        }
        for component in found {
            let detail: Vec<String> = component
                .iter()
                .map(|m| {
                    let inside: Vec<&String> =
                        edges[m].iter().filter(|t| component.contains(t)).collect();
                    format!("    {m} -> {inside:?}")
                })
                .collect();
            report.push(format!(
                "{relative}: modules that import each other:\n{}",
                detail.join("\n")
            ));
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
    let stale: Vec<&&str> = CYCLE_ALLOWLIST
        .iter()
        .filter(|c| !allowed_with_circles.iter().any(|a| a == *c))
        .collect();
    assert!(
        stale.is_empty(),
        "remove from CYCLE_ALLOWLIST (no circle left): {stale:?}"
    );
}

#[test]
fn no_source_file_over_600_lines_without_a_reason() {
    let root = workspace();
    let mut long = Vec::new();
    let mut sizes = BTreeMap::new();
    for src in source_roots() {
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        for file in files.into_iter().filter(|f| !is_test_file(f)) {
            let text = std::fs::read_to_string(&file).expect("source file is readable");
            let relative = file
                .strip_prefix(&root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let lines = text.lines().count();
            sizes.insert(relative.clone(), lines);
            let explained = text.lines().any(|l| l.trim_start().starts_with("// size:"));
            if lines > MAX_LINES && !explained && !SIZE_ALLOWLIST.contains(&relative.as_str()) {
                long.push(format!("{relative}: {lines} lines"));
            }
        }
    }
    let stale: Vec<&&str> = SIZE_ALLOWLIST
        .iter()
        .filter(|f| sizes.get(**f).is_none_or(|n| *n <= MAX_LINES))
        .collect();
    assert!(
        long.is_empty(),
        "split these files or say why in a `// size:` comment:\n{}",
        long.join("\n")
    );
    assert!(
        stale.is_empty(),
        "remove from SIZE_ALLOWLIST (short enough or gone): {stale:?}"
    );
}

/// The checker itself: a circle written on purpose is found, a layered crate passes.
#[test]
fn the_checker_finds_a_circle_and_passes_layers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("outer")).expect("mkdir");
    let write = |name: &str, text: &str| std::fs::write(src.join(name), text).expect("write");
    write("lib.rs", "mod a;\nmod b;\nmod outer;\npub use a::Thing;\n");
    write("a.rs", "use crate::b::helper;\npub struct Thing;\n");
    write(
        "b.rs",
        "pub fn helper() {}\n#[cfg(test)]\nmod tests { use crate::a::Thing; }\n",
    );
    write(
        "outer.rs",
        "mod inner;\nmod other;\npub fn f() { inner::g(); }\n",
    );
    write(
        "outer/inner.rs",
        "pub fn g() { super::f(); super::other::h(); }\n",
    );
    write("outer/other.rs", "pub fn h() {}\n");
    assert!(cycles(&graph(&crate_modules(&src))).is_empty());

    // b names the re-exported Thing through the crate root: the edge goes to a, the definer.
    write("b.rs", "pub fn helper() { let _ = crate::Thing; }\n");
    write(
        "outer/other.rs",
        "use super::inner::g;\npub fn h() { g() }\n",
    );
    let found = cycles(&graph(&crate_modules(&src)));
    assert_eq!(
        found,
        vec![
            vec!["a".to_string(), "b".to_string()],
            vec!["outer::inner".to_string(), "outer::other".to_string()]
        ]
    );
}

/// The production build (`cargo build -p tributary` with default features, as deploy/Dockerfile
/// does) carries no emulator and no test harness: neither crate is in its dependency graph.
///
/// Read from the feature-resolved graph (`cargo tree`, seconds) rather than from a second
/// build of the binary (minutes on two cores); a build without the crates cannot contain
/// their code.
#[test]
fn the_production_build_has_no_emulator_or_test_harness() {
    let tree = |features: &[&str]| -> String {
        let out = std::process::Command::new(env!("CARGO"))
            .current_dir(workspace())
            .args(["tree", "--locked", "-p", "tributary"])
            .args(["-e", "normal,build", "--prefix", "none", "--format", "{p}"])
            .args(features)
            .output()
            .expect("cargo tree runs");
        assert!(
            out.status.success(),
            "cargo tree: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let crates = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect()
    };
    let production = crates(&tree(&[]));
    assert!(production.contains("tributary-pipeline"), "{production:?}");
    for emulator in ["tributary-sandbox", "tributary-testkit"] {
        assert!(
            !production.contains(emulator),
            "{emulator} is in the production build's graph"
        );
    }
    // The demo build (scripts/demo.sh: `--features demo`) has them.
    let demo = crates(&tree(&["--features", "demo"]));
    assert!(demo.contains("tributary-sandbox") && demo.contains("tributary-testkit"));
}
