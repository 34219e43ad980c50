//! kiln-train's modules form layers, not a circle (docs/ARCHITECTURE.md): `files` at the
//! bottom, then `recipe`, `renderer`, `step`, `engine`, `fit`, the run kinds, and `runs` on
//! top. A module depends on another when its code (not its docs or tests) names
//! `crate::other` or an item `lib.rs` re-exports from it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `text` without `//` comments and without `#[cfg(test)] mod tests { ... }` blocks.
fn code_of(text: &str) -> String {
    let mut text = text.to_string();
    while let Some(start) = text.find("#[cfg(test)]\nmod tests {") {
        let open = start + text[start..].find('{').unwrap();
        let mut depth = 0;
        let mut end = open;
        for (i, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = open + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        text.replace_range(start..end, "");
    }
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
}

#[test]
fn the_crate_modules_have_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeMap<String, String> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "rs") && name != "lib" {
            modules.insert(name, code_of(&std::fs::read_to_string(&path).unwrap()));
        }
    }
    // Items re-exported by lib.rs, by the module that defines them.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut owner: BTreeMap<String, String> = BTreeMap::new();
    for stmt in lib.split("pub use ").skip(1) {
        let stmt = &stmt[..stmt.find(';').unwrap()];
        let (module, items) = stmt.split_once("::").unwrap();
        for item in words(items) {
            owner.insert(item.to_string(), module.to_string());
        }
    }
    let mut deps: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, code) in &modules {
        let mut uses = BTreeSet::new();
        let mut targets: Vec<&str> = Vec::new();
        for part in code.split("crate::").skip(1) {
            if let Some(rest) = part.strip_prefix('{') {
                targets.extend(words(&rest[..rest.find('}').unwrap_or(rest.len())]));
            } else if let Some(first) = words(part).next() {
                targets.push(first);
            }
        }
        for target in targets {
            let module = if modules.contains_key(target) {
                Some(target.to_string())
            } else {
                owner.get(target).cloned()
            };
            if let Some(m) = module.filter(|m| m != name && modules.contains_key(m)) {
                uses.insert(m);
            }
        }
        deps.insert(name, uses);
    }
    assert!(
        deps["files"].iter().all(|d| d == "error"),
        "{:?}",
        deps["files"]
    );
    assert!(deps["step"].is_empty(), "{:?}", deps["step"]);

    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        deps: &'a BTreeMap<&str, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(node) {
            return;
        }
        if let Some(i) = path.iter().position(|n| *n == node) {
            panic!("module cycle: {} -> {node}", path[i..].join(" -> "));
        }
        path.push(node);
        for next in &deps[node] {
            visit(next, deps, path, done);
        }
        path.pop();
        done.insert(node);
    }
    let mut done = BTreeSet::new();
    for node in deps.keys() {
        visit(node, &deps, &mut Vec::new(), &mut done);
    }
    assert!(done.len() > 15, "{done:?}");
}
