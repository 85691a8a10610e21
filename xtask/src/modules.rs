//! Modules point one way: no import circle between the top-level modules of probe-user,
//! probe-ebpf or xtask. A circle is where a change in one module can no longer be made, read or
//! tested without the other, so `cargo xtask test` fails on one and prints it with the lines
//! that make it.
//!
//! Imports are read from the source itself (std only, no parser crate): every `crate::`,
//! `super::` and `self::` path, braces expanded, in code (comments and strings skipped), with
//! inline `mod x { ... }` blocks followed so a test module's `super::` means its own file. A
//! name the crate root re-exports with `pub use m::*` counts as an import of `m`.
use anyhow::{bail, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The crates whose modules must point one way, by source folder.
pub const CRATES: [&str; 3] = ["probe-user/src", "probe-ebpf/src", "xtask/src"];

/// One import of another top-level module, with where it is written.
#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub at: String,
}

/// probe-user's main line, in the order data flows through a run: each of these modules may
/// import the ones before it, never one after it.
pub const PROBE_USER_FLOW: [&str; 7] = ["cli", "options", "resolve", "plan", "session", "measure", "outputs"];

/// Fails with every circle found in `CRATES` under `root`, and every import against probe-user's
/// flow; prints a line otherwise.
pub fn check(root: &Path) -> Result<()> {
    let mut report = String::new();
    for dir in CRATES {
        let edges = imports(&root.join(dir))?;
        for circle in circles(&edges) {
            report.push_str(&format!("{dir}: {}\n", describe(&circle, &edges)));
        }
        if dir == CRATES[0] {
            for e in against_flow(&edges, &PROBE_USER_FLOW) {
                report.push_str(&format!(
                    "{dir}: {} -> {} against the flow {}: {}\n",
                    e.from,
                    e.to,
                    PROBE_USER_FLOW.join(" -> "),
                    e.at
                ));
            }
        }
    }
    if !report.is_empty() {
        bail!("modules that do not point one way:\n{report}");
    }
    println!(
        "xtask: no import circle between the modules of {}; probe-user imports follow {}",
        CRATES.join(", "),
        PROBE_USER_FLOW.join(" -> ")
    );
    Ok(())
}

/// Imports from a module of `flow` into one that comes after it.
pub fn against_flow<'a>(edges: &'a [Edge], flow: &[&str]) -> Vec<&'a Edge> {
    let place = |m: &str| flow.iter().position(|f| *f == m);
    edges.iter().filter(|e| matches!((place(&e.from), place(&e.to)), (Some(a), Some(b)) if b > a)).collect()
}

/// Prints each crate's modules with the modules they import, then checks for circles.
pub fn show(root: &Path) -> Result<()> {
    for dir in CRATES {
        println!("{dir}:");
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for e in imports(&root.join(dir))? {
            uses.entry(e.from).or_default().insert(e.to);
        }
        for (from, to) in uses {
            println!("    {from} -> {}", to.into_iter().collect::<Vec<_>>().join(", "));
        }
    }
    check(root)
}

/// Every import from one top-level module of the crate in `src` into another.
pub fn imports(src: &Path) -> Result<Vec<Edge>> {
    let files = rust_files(src)?;
    let modules: BTreeSet<String> = files.iter().filter_map(|(m, _)| m.first().cloned()).collect();
    let mut parsed = Vec::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path)?;
        let name = path.strip_prefix(src).unwrap_or(path).display().to_string();
        parsed.push((module.clone(), name, tokens(&text)));
    }
    let reexported = reexported_items(&parsed, &modules);
    let mut edges = Vec::new();
    for (module, name, toks) in &parsed {
        let Some(from) = module.first() else { continue };
        for (path, line) in paths(module, toks) {
            let to = match path.first() {
                Some(first) if modules.contains(first) => first.clone(),
                Some(item) if path.len() == 1 => match reexported.get(item) {
                    Some(owner) => owner.clone(),
                    None => continue,
                },
                _ => continue,
            };
            if &to != from {
                edges.push(Edge { from: from.clone(), to, at: format!("{name}:{line} {}", path.join("::")) });
            }
        }
    }
    Ok(edges)
}

/// Each file under `src` with its module path (`plan/inlined.rs`: [plan, inlined]); the crate
/// roots (lib.rs, main.rs) have an empty one.
fn rust_files(src: &Path) -> Result<Vec<(Vec<String>, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src)?.with_extension("");
                let mut module: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
                if matches!(module.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    module.pop();
                }
                out.push((module, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Names the crate root re-exports with `pub use m::*`, with the module that defines them.
fn reexported_items(
    parsed: &[(Vec<String>, String, Vec<Token>)],
    modules: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    let mut globbed = BTreeSet::new();
    for (module, _, toks) in parsed.iter().filter(|(m, _, _)| m.is_empty()) {
        for (path, _) in paths(module, toks) {
            if path.len() == 2 && path[1] == "*" && modules.contains(&path[0]) {
                globbed.insert(path[0].clone());
            }
        }
        for w in toks.windows(4) {
            // `pub use buckets::*;` names the module without `crate::`.
            if w[0].text == "use" && modules.contains(&w[1].text) && w[2].text == "::" && w[3].text == "*" {
                globbed.insert(w[1].text.clone());
            }
        }
    }
    let mut owners = BTreeMap::new();
    for (module, _, toks) in parsed {
        let Some(top) = module.first().filter(|m| globbed.contains(*m)) else { continue };
        for w in toks.windows(2) {
            let item = matches!(w[0].text.as_str(), "fn" | "struct" | "enum" | "const" | "static" | "trait" | "type");
            if item && is_ident(&w[1].text) {
                owners.insert(w[1].text.clone(), top.clone());
            }
        }
    }
    owners
}

#[derive(Clone, Debug)]
struct Token {
    text: String,
    line: usize,
}

fn is_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_')
}

/// Identifiers, `::` and single punctuation, without comments, strings and char literals.
fn tokens(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let (mut i, mut line, mut out) = (0, 1, Vec::new());
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && at(i + 1) == '/' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    line += usize::from(chars[i] == '\n');
                    i += 1;
                }
            }
        } else if c == 'r' && (at(i + 1) == '"' || (at(i + 1) == '#' && matches!(at(i + 2), '"' | '#'))) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| at(j + 1 + k) == '#') {
                    j += 1 + hashes;
                    break;
                }
                line += usize::from(chars[j] == '\n');
                j += 1;
            }
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                line += usize::from(chars[i] == '\n');
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F}') or a lifetime ('a): skip the literal only.
            if at(i + 1) == '\\' {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if at(i + 2) == '\'' {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(Token { text: chars[start..i].iter().collect(), line });
        } else if c == ':' && at(i + 1) == ':' {
            out.push(Token { text: "::".into(), line });
            i += 2;
        } else {
            out.push(Token { text: c.to_string(), line });
            i += 1;
        }
    }
    out
}

/// Every `crate::`, `super::` and `self::` path in `toks`, resolved from the crate root, with
/// its line; `module` is the file's module path, extended by inline `mod x { }` blocks.
fn paths(module: &[String], toks: &[Token]) -> Vec<(Vec<String>, usize)> {
    let mut out = Vec::new();
    let mut context: Vec<String> = module.to_vec();
    let mut inline: Vec<usize> = Vec::new(); // brace depth at which each inline module opened
    let mut depth = 0;
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i].text;
        let next = |k: usize| toks.get(i + k).map(|t| t.text.as_str()).unwrap_or("");
        if t == "mod" && is_ident(next(1)) && next(2) == "{" {
            context.push(next(1).to_string());
            inline.push(depth);
            depth += 1;
            i += 3;
            continue;
        }
        match t.as_str() {
            "{" => depth += 1,
            "}" => {
                depth -= 1;
                if inline.last() == Some(&depth) {
                    inline.pop();
                    context.pop();
                }
            }
            _ => {}
        }
        let previous = i.checked_sub(1).map(|p| toks[p].text.as_str()).unwrap_or("");
        if matches!(t.as_str(), "crate" | "super" | "self") && next(1) == "::" && previous != "::" && previous != "$" {
            let mut base = if t == "crate" { Vec::new() } else { context.clone() };
            if t == "super" {
                base.pop();
            }
            let mut j = i + 2;
            while toks.get(j).map(|t| t.text.as_str()) == Some("super")
                && toks.get(j + 1).map(|t| t.text.as_str()) == Some("::")
            {
                base.pop();
                j += 2;
            }
            let line = toks[i].line;
            let (trees, end) = use_tree(toks, j);
            for tail in trees {
                let mut full = base.clone();
                full.extend(tail);
                out.push((full, line));
            }
            i = end;
            continue;
        }
        i += 1;
    }
    out
}

/// The paths of a use tree starting at `toks[i]` (`a::b`, `a::{b, c::d}`, `*`), and where it ends.
fn use_tree(toks: &[Token], mut i: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix = Vec::new();
    loop {
        let Some(t) = toks.get(i) else { return (vec![prefix], i) };
        if t.text == "{" {
            let mut all = Vec::new();
            i += 1;
            while toks.get(i).is_some_and(|t| t.text != "}") {
                let (trees, end) = use_tree(toks, i);
                all.extend(trees.into_iter().map(|tail| [prefix.clone(), tail].concat()));
                i = end;
                if toks.get(i).is_some_and(|t| t.text == ",") {
                    i += 1;
                }
            }
            return (all, i + 1);
        }
        if is_ident(&t.text) || t.text == "*" {
            prefix.push(t.text.clone());
            i += 1;
            if toks.get(i).is_some_and(|t| t.text == "::") {
                i += 1;
                continue;
            }
        }
        return (vec![prefix], i);
    }
}

/// Modules that import each other, directly or not: the shortest cycle through the first, and
/// the whole group (more modules may take part than that cycle shows).
#[derive(Debug, PartialEq)]
pub struct Circle {
    pub cycle: Vec<String>,
    pub group: BTreeSet<String>,
}

/// The groups of modules that reach each other through imports.
pub fn circles(edges: &[Edge]) -> Vec<Circle> {
    let mut graph: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for e in edges {
        graph.entry(&e.from).or_default().insert(&e.to);
        graph.entry(&e.to).or_default();
    }
    let mut groups: Vec<BTreeSet<&str>> = Vec::new();
    // Reachability is enough at this size (a few dozen modules): a and b are in one group
    // when each reaches the other.
    let reach = |from: &str| -> BTreeSet<&str> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from];
        while let Some(n) = todo.pop() {
            for &m in &graph[n] {
                if seen.insert(m) {
                    todo.push(m);
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&str, BTreeSet<&str>> = graph.keys().map(|&n| (n, reach(n))).collect();
    for &n in graph.keys() {
        if !reaches[n].contains(n) || groups.iter().any(|g| g.contains(n)) {
            continue;
        }
        groups.push(graph.keys().copied().filter(|m| reaches[n].contains(m) && reaches[m].contains(n)).collect());
    }
    groups
        .iter()
        .map(|g| Circle { cycle: shortest_cycle(&graph, g), group: g.iter().map(|m| m.to_string()).collect() })
        .collect()
}

/// The shortest cycle through the group's first module, staying inside the group.
fn shortest_cycle(graph: &BTreeMap<&str, BTreeSet<&str>>, group: &BTreeSet<&str>) -> Vec<String> {
    let start = *group.iter().next().expect("a group has a module");
    let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for &m in &graph[n] {
            if !group.contains(m) {
                continue;
            }
            if m == start {
                let mut back = vec![n];
                while let Some(&p) = parent.get(back[back.len() - 1]) {
                    back.push(p);
                }
                let mut cycle: Vec<String> =
                    std::iter::once(start).chain(back.into_iter().rev().skip(1)).map(String::from).collect();
                cycle.push(start.to_string());
                return cycle;
            }
            if !parent.contains_key(m) {
                parent.insert(m, n);
                queue.push_back(m);
            }
        }
    }
    vec![start.to_string()]
}

/// `a -> b -> a`, then each import inside the circle's group with the first line that makes it.
fn describe(circle: &Circle, edges: &[Edge]) -> String {
    let group = &circle.group;
    let mut inside: BTreeMap<(&str, &str), (&str, usize)> = BTreeMap::new();
    for e in edges.iter().filter(|e| group.contains(&e.from) && group.contains(&e.to)) {
        inside.entry((&e.from, &e.to)).or_insert((&e.at, 0)).1 += 1;
    }
    let lines: Vec<String> =
        inside.iter().map(|((from, to), (at, n))| format!("    {from} -> {to}: {at} ({n} in all)")).collect();
    let members: Vec<&str> = group.iter().map(String::as_str).collect();
    format!("{} (group: {})\n{}", circle.cycle.join(" -> "), members.join(", "), lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edge(from: &str, to: &str) -> Edge {
        Edge { from: from.into(), to: to.into(), at: String::new() }
    }

    #[test]
    fn reads_paths_through_braces_supers_and_inline_modules() {
        let src = "use crate::{a::X, b::{c, d::E}};\n// crate::z::Y in a comment\nlet s = \"crate::z\";\n\
                   mod tests { use super::f::G; }\nfn h() { super::w::V; }";
        let found: Vec<String> =
            paths(&["m".into(), "n".into()], &tokens(src)).into_iter().map(|(p, _)| p.join("::")).collect();
        assert_eq!(found, ["a::X", "b::c", "b::d::E", "m::n::f::G", "m::w::V"]);
    }

    #[test]
    fn finds_each_circle_and_only_circles() {
        let edges = [edge("cli", "plan"), edge("plan", "target"), edge("target", "cli"), edge("plan", "outputs")];
        let found = circles(&edges);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].cycle, ["cli", "plan", "target", "cli"]);
        assert_eq!(found[0].group, ["cli", "plan", "target"].map(String::from).into());
        assert!(circles(&[edge("a", "b"), edge("b", "c")]).is_empty());
    }

    #[test]
    fn an_import_against_the_flow_is_named() {
        let edges = [edge("plan", "target"), edge("target", "plan"), edge("plan", "shared")];
        let against = against_flow(&edges, &["target", "plan"]);
        assert_eq!(against, [&edges[1]]);
    }

    /// The project's own rule, checked on every `cargo xtask test` (and here, for `cargo test`).
    #[test]
    fn no_import_circle_between_modules() {
        check(&probe_helpers::root()).unwrap();
    }
}
