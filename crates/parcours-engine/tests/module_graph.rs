//! The engine's modules form no cycle: each module uses (`crate::…`) only modules below it,
//! so a change to one never needs the ones that use it.

use std::collections::{BTreeMap, BTreeSet};

/// Module → the modules it names through `crate::`, comments left out.
fn uses() -> BTreeMap<String, BTreeSet<String>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().and_then(|e| e.to_str()) != Some("rs") || name == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut used = BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                let module: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !module.is_empty() && module != name {
                    used.insert(module);
                }
            }
        }
        graph.insert(name.to_string(), used);
    }
    graph
}

/// A cycle through `at`, if any (depth first).
fn cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    at: &str,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(start) = path.iter().position(|m| m == at) {
        let mut found = path[start..].to_vec();
        found.push(at.to_string());
        return Some(found);
    }
    if done.contains(at) {
        return None;
    }
    path.push(at.to_string());
    for next in graph.get(at).into_iter().flatten() {
        if let Some(found) = cycle(graph, next, path, done) {
            return Some(found);
        }
    }
    path.pop();
    done.insert(at.to_string());
    None
}

#[test]
fn the_engine_modules_form_no_cycle() {
    let graph = uses();
    assert!(graph.contains_key("audiences") && graph.contains_key("delivery"));
    assert!(
        graph["held"].contains("facts"),
        "the graph is read: {graph:?}"
    );
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(found) = cycle(&graph, module, &mut Vec::new(), &mut done) {
            panic!("modules in a cycle: {}", found.join(" → "));
        }
    }
}

/// The check finds a cycle when there is one.
#[test]
fn a_cycle_is_found() {
    let mut graph = uses();
    graph
        .get_mut("facts")
        .unwrap()
        .insert("audiences".to_string());
    let found = cycle(&graph, "audiences", &mut Vec::new(), &mut BTreeSet::new());
    assert!(found.is_some_and(|c| c.contains(&"facts".to_string())));
}
