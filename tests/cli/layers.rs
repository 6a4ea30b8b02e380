//! The house keeps its floors: the layers ARCHITECTURE.md lists are the code's. Every
//! top-level module is in one layer; a module imports (`crate::NAME`) only modules of its own
//! layer or of the layers below it; and below the entry layer no modules import each other in
//! a cycle. A failure names the files that break the rule.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::harness::repo_root;

/// The layers in ARCHITECTURE.md, bottom first: `N. words: `a`, `b``.
fn layers() -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(repo_root().join("ARCHITECTURE.md")).unwrap();
    let section = text
        .split("## Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Layers` section")
        .split("\n## ")
        .next()
        .unwrap();
    let mut out = BTreeMap::new();
    for line in section.lines() {
        let Some((number, rest)) = line.split_once(". ") else {
            continue;
        };
        let Ok(n) = number.trim().parse::<usize>() else {
            continue;
        };
        for name in rest.split('`').skip(1).step_by(2) {
            assert!(
                out.insert(name.to_string(), n).is_none(),
                "`{name}` is in two layers"
            );
        }
    }
    out
}

/// A file's text without its unit tests (`#[cfg(test)] mod tests { … }` to the end).
fn without_tests(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Every top-level module of src/ and, for each, the modules its files name as `crate::X`,
/// with the files that do.
fn imports() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = repo_root().join("src");
    let mut modules: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let module = match name.strip_suffix(".rs") {
            Some("main" | "lib") => continue,
            Some(m) => m.to_string(),
            None if e.path().is_dir() => name,
            None => continue,
        };
        modules.entry(module).or_default();
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy();
            let top = top.strip_suffix(".rs").unwrap_or(&top).to_string();
            let Some(edges) = modules.get_mut(&top) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).unwrap();
            for part in without_tests(&text).split("crate::").skip(1) {
                let used: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    !part.starts_with('{'),
                    "src/{}: `crate::{{…}}` hides which modules it imports; name each as `crate::X`",
                    rel.display()
                );
                if used != top && names.contains(&used) {
                    edges
                        .entry(used)
                        .or_default()
                        .insert(format!("src/{}", rel.display()));
                }
            }
        }
    }
    modules
}

#[test]
fn every_module_imports_only_its_layer_and_the_ones_below() {
    let layers = layers();
    let entry = *layers.get("cli").expect("the entry layer names `cli`");
    let modules = imports();
    let mut wrong = Vec::new();
    for (module, edges) in &modules {
        let Some(&mine) = layers.get(module) else {
            wrong.push(format!("src/{module}: in no layer of ARCHITECTURE.md"));
            continue;
        };
        if mine == entry {
            continue;
        }
        for (used, files) in edges {
            let theirs = layers.get(used).copied().unwrap_or(usize::MAX);
            if theirs > mine {
                wrong.push(format!(
                    "{module} (layer {mine}) imports {used} (layer {theirs}) in {}",
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    for name in layers.keys() {
        let exists = Path::new(&repo_root().join("src").join(format!("{name}.rs"))).exists()
            || repo_root().join("src").join(name).is_dir();
        if !exists {
            wrong.push(format!(
                "ARCHITECTURE.md names `{name}`, which is no module of src/"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_cycle_between_modules_below_the_entry_layer() {
    let layers = layers();
    let entry = layers["cli"];
    let modules = imports();
    let below = |m: &str| layers.get(m).is_some_and(|&l| l != entry);
    // Depth-first search for a cycle, naming its edges and the files that make them.
    fn visit(
        m: &str,
        modules: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        below: &dyn Fn(&str) -> bool,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if !done.insert(m.to_string()) {
            return None;
        }
        path.push(m.to_string());
        for used in modules.get(m).into_iter().flat_map(|e| e.keys()) {
            if below(used)
                && let Some(c) = visit(used, modules, below, path, done)
            {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in modules.keys().filter(|m| below(m)) {
        if let Some(cycle) = visit(m, &modules, &below, &mut Vec::new(), &mut done) {
            let edges: Vec<String> = cycle
                .windows(2)
                .map(|w| {
                    format!(
                        "{} -> {} ({})",
                        w[0],
                        w[1],
                        modules[&w[0]][&w[1]]
                            .iter()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
                .collect();
            panic!(
                "an import cycle below the entry layer:\n{}",
                edges.join("\n")
            );
        }
    }
}

/// The shared machinery of the step kinds, as ARCHITECTURE.md's layer list names it
/// (`steps/restic.rs, restore_test.rs, …`): every other file of src/steps/ is a kind.
fn shared_step_files() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo_root().join("ARCHITECTURE.md")).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("shared machinery in "))
        .expect("ARCHITECTURE.md names the steps' shared machinery");
    let list = line.split("shared machinery in ").nth(1).unwrap();
    let list = list.split(')').next().unwrap();
    list.split(", ")
        .map(|f| {
            f.trim()
                .trim_start_matches("steps/")
                .trim_end_matches(".rs")
                .to_string()
        })
        .collect()
}

#[test]
fn no_step_kind_imports_another() {
    let shared = shared_step_files();
    let dir = repo_root().join("src/steps");
    let kinds: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".rs").map(str::to_string)
        })
        .filter(|k| k != "mod" && !shared.contains(k))
        .collect();
    for s in &shared {
        assert!(
            dir.join(format!("{s}.rs")).exists(),
            "ARCHITECTURE.md names steps/{s}.rs, which does not exist"
        );
    }
    assert!(
        kinds.contains("dump") && kinds.contains("snapshot"),
        "kinds: {kinds:?}"
    );
    let mut wrong = Vec::new();
    for kind in &kinds {
        let text = std::fs::read_to_string(dir.join(format!("{kind}.rs"))).unwrap();
        let text = without_tests(&text);
        for other in kinds.iter().filter(|o| *o != kind) {
            for form in [format!("super::{other}"), format!("crate::steps::{other}")] {
                let named = text.match_indices(&form).any(|(i, _)| {
                    !text[i + form.len()..]
                        .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                });
                if named {
                    wrong.push(format!(
                        "src/steps/{kind}.rs imports the kind `{other}` ({form})"
                    ));
                }
            }
        }
        if text.contains("super::{") || text.contains("crate::steps::{") {
            for other in kinds.iter().filter(|o| *o != kind) {
                for group in text
                    .split("super::{")
                    .skip(1)
                    .chain(text.split("crate::steps::{").skip(1))
                {
                    let group = group.split('}').next().unwrap_or("");
                    if group
                        .split(',')
                        .any(|n| n.trim() == other || n.trim().starts_with(&format!("{other}::")))
                    {
                        wrong.push(format!("src/steps/{kind}.rs imports the kind `{other}`"));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
