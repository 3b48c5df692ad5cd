//! The module layering ARCHITECTURE.md states, enforced: no module imports from a layer above it, and no import cycles between top-level modules.
//!
//! The layers are read from ARCHITECTURE.md itself (the fenced block under "## Layers"), so
//! the document and the rule cannot drift apart. Imports are read from the source text:
//! every `crate::name` path, every name in a `use crate::{...}` group, and `super::` chains
//! that climb to the crate root. Comments are skipped, so an intra-doc link in prose is not
//! an import.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Layer number of every top-level module, from ARCHITECTURE.md's "## Layers" block
/// (lines like `L2 health probe failover`; words after `#` are a comment).
fn layers() -> BTreeMap<String, usize> {
    let text = fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let section = text
        .split("\n## Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the Layers section holds a fenced block");
    let mut out = BTreeMap::new();
    for line in block.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix('L') else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let level: usize = words
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("layer line without a number: {line:?}"));
        for module in words {
            let previous = out.insert(module.to_string(), level);
            assert!(previous.is_none(), "{module} is listed in two layers");
        }
    }
    assert!(!out.is_empty(), "the Layers block lists no module");
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file below `src/`: `src/app/core.rs` -> `["app", "core"]`,
/// `src/app/mod.rs` -> `["app"]`.
fn module_path(file: &Path, src: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules a piece of code (comments removed) names through `crate::`.
fn crate_names(code: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| is_ident(c) || c == '$') {
            continue; // `$crate::` or `mycrate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the names at depth one that start a path.
            let mut depth = 1;
            let mut expecting = true;
            let mut word = String::new();
            for c in group.chars() {
                if !word.is_empty() && !is_ident(c) {
                    names.insert(std::mem::take(&mut word));
                    expecting = false;
                }
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => expecting = true,
                    c if depth == 1 && expecting && is_ident(c) => word.push(c),
                    _ => {}
                }
            }
        } else {
            let word: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !word.is_empty() {
                names.insert(word);
            }
        }
    }
    names
}

/// `super::` chains that reach the crate root from a file whose module path is `path`
/// (`super::super::x` in `app/core.rs` names `x`).
fn super_names(code: &str, path: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // Inside a file, `super` is relative to the file's module (inline test modules add a
    // level, which only makes the climb shorter than counted here, never wrong upward).
    for (at, _) in code.match_indices("super::") {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let mut rest = &code[at..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            ups += 1;
            rest = r;
        }
        if ups == path.len() {
            let word: String = rest.chars().take_while(|c| is_ident(*c)).collect();
            if !word.is_empty() {
                names.insert(word);
            }
        }
    }
    names
}

fn without_comments(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(|l| match l.find(" // ") {
            Some(at) => &l[..at],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every edge `module -> module it imports` between distinct top-level modules, with the
/// file that makes it.
fn edges() -> BTreeMap<(String, String), PathBuf> {
    let src = root().join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut out = BTreeMap::new();
    for file in files {
        let path = module_path(&file, &src);
        let Some(top) = path.first().cloned() else {
            continue;
        };
        if top == "lib" || top == "main" {
            continue; // the crate root and the binary may name every module
        }
        let code = without_comments(&fs::read_to_string(&file).expect("read source"));
        let mut names = crate_names(&code);
        names.extend(super_names(&code, &path));
        for name in names {
            if name != top && name != "self" && name != "super" {
                out.entry((top.clone(), name))
                    .or_insert_with(|| file.clone());
            }
        }
    }
    out
}

/// The top-level modules `lib.rs` declares.
fn declared_modules() -> BTreeSet<String> {
    let lib = fs::read_to_string(root().join("src/lib.rs")).expect("lib.rs");
    lib.lines()
        .filter_map(|l| {
            l.trim()
                .strip_prefix("pub mod ")
                .or(l.trim().strip_prefix("mod "))
        })
        .map(|l| {
            l.trim_end_matches(|c: char| !is_ident(c))
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn every_module_is_placed_in_a_layer() {
    let layers = layers();
    let unplaced: Vec<_> = declared_modules()
        .into_iter()
        .filter(|m| !layers.contains_key(m))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules missing from ARCHITECTURE.md's Layers block: {unplaced:?}"
    );
}

#[test]
fn no_module_imports_from_a_layer_above_it() {
    let layers = layers();
    let mut wrong = Vec::new();
    for ((from, to), file) in edges() {
        let (Some(a), Some(b)) = (layers.get(&from), layers.get(&to)) else {
            continue; // not a module (a macro or a crate-root item); placement is checked above
        };
        if b > a {
            wrong.push(format!(
                "{} (L{a}) imports {to} (L{b}) in {}",
                from,
                file.strip_prefix(root()).unwrap_or(&file).display()
            ));
        }
    }
    assert!(wrong.is_empty(), "imports upward:\n{}", wrong.join("\n"));
}

#[test]
fn no_import_cycles_between_top_level_modules() {
    let layers = layers();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in edges().into_keys() {
        if layers.contains_key(&to) {
            graph.entry(from).or_default().insert(to);
        }
    }
    // A cycle exists iff some module reaches itself.
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, trail)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                if next == start {
                    cycles.push(format!("{} -> {start}", trail.join(" -> ")));
                } else if seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_import_reader_sees_groups_paths_and_super_chains() {
    let code = "use crate::{config::{A, B}, probe, clock::Timestamp};\nlet x = crate::store::Store::open();\n";
    let names = crate_names(code);
    let expected: BTreeSet<String> = ["config", "probe", "clock", "store"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, expected);
    let path = vec!["app".to_string(), "core".to_string()];
    let names = super_names("use super::super::failover::Side; use super::Msg;", &path);
    assert_eq!(names, BTreeSet::from(["failover".to_string()]));
    assert!(crate_names("$crate::metrics::x").is_empty());
}
