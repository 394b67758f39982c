//! The shape of the source tree, read from the files: within each folder of `src/`, the
//! modules import one another without a circle (a reader can follow a request one way:
//! handler → extractor → the domain → the store), and the web layer leaves the rules of
//! who may do what to `access`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The modules of `src/FOLDER` (one per file; `mod.rs` is the folder itself) and which
/// sibling modules each one names, through `super::NAME` or `crate::FOLDER::NAME`, or
/// through an item `mod.rs` re-exports from one (`super::AppState` is mod.rs's own).
fn sibling_references(folder: &str) -> BTreeMap<String, BTreeSet<String>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(folder);
    let mut sources = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "rs") {
            sources.insert(name, std::fs::read_to_string(&path).unwrap());
        }
    }
    let parent = sources.remove("mod").unwrap_or_default();
    let siblings: BTreeSet<String> = sources.keys().cloned().collect();
    let reexported = reexports(&parent, &siblings);
    let crate_prefix = format!("crate::{folder}::");
    sources
        .iter()
        .map(|(name, text)| {
            let named = names_after(text, "super::")
                .into_iter()
                .chain(names_after(text, &crate_prefix))
                .filter_map(|n| {
                    if siblings.contains(&n) {
                        Some(n)
                    } else {
                        reexported.get(&n).cloned()
                    }
                })
                .filter(|n| n != name)
                .collect();
            (name.clone(), named)
        })
        .collect()
}

/// What a folder's `mod.rs` takes from its modules with `use`: item → module.
fn reexports(parent: &str, siblings: &BTreeSet<String>) -> BTreeMap<String, String> {
    let mut items = BTreeMap::new();
    for statement in parent.split(';') {
        let statement = statement.trim();
        let Some(path) = statement
            .strip_prefix("pub use ")
            .or_else(|| statement.strip_prefix("use "))
        else {
            continue;
        };
        let Some((module, rest)) = path.split_once("::") else {
            continue;
        };
        if !siblings.contains(module) {
            continue;
        }
        for item in rest.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !item.is_empty() && item != "self" {
                items.insert(item.to_owned(), module.to_owned());
            }
        }
    }
    items
}

/// The first path segment after each `prefix` in `text`; for a group (`prefix{a, b::c}`)
/// the first segment of each of its members.
fn names_after(text: &str, prefix: &str) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => return true,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .map_or(group.len(), |(i, _)| i);
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in group[..end].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        names.push(ident(&group[start..i]));
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            names.push(ident(&group[start..end]));
        } else {
            names.push(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// A circle in `graph`, as the modules along it, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_folder_of_src_has_an_import_circle() {
    for folder in ["web", "db", "accounts"] {
        let graph = sibling_references(folder);
        assert!(graph.len() > 1, "src/{folder} has its modules");
        if let Some(circle) = find_circle(&graph) {
            panic!("src/{folder}: {}", circle.join(" → "));
        }
    }
}

#[test]
fn the_circle_check_finds_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("auth", &["csrf"][..]),
        ("csrf", &["error"][..]),
        ("error", &["auth"][..]),
        ("pages", &["auth"][..]),
    ]
    .into_iter()
    .map(|(n, e)| (n.to_owned(), e.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(
        find_circle(&graph),
        Some(["auth", "csrf", "error", "auth"].map(String::from).to_vec())
    );
    let text = "use super::{csrf::{self, X}, error::AppError};\nuse super::templates::Frame;\ncrate::web::rows::f()";
    assert_eq!(names_after(text, "super::"), ["csrf", "error", "templates"]);
    assert_eq!(names_after(text, "crate::web::"), ["rows"]);
}

#[test]
fn the_web_layer_asks_access_who_may_change_an_item() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web");
    for entry in std::fs::read_dir(web).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        // (Unit tests may make an item with an owner.)
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        // The rule is `access`'s; the web layer takes its permit (`Editable`) or, for a
        // button only, asks `access::may_change`. Nobody compares owners by hand.
        assert!(
            !text.contains("owner_id"),
            "{}: compares an item's owner itself",
            path.display()
        );
    }
}
