//! The docs' links resolve: every relative link and `#anchor` in README.md and docs/*.md names a
//! file of the repository and, for a Markdown file, one of its headings (as GitHub makes its
//! anchors). Run first by `cargo xtask test`: text only, no network, a few milliseconds.
use anyhow::{bail, Context, Result};
use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

/// Checks the repository's README.md and docs/*.md; the number of links checked.
pub fn check(root: &Path) -> Result<usize> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .context("reading docs/")?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for link in links(&text) {
            checked += 1;
            if let Err(why) = resolve(root, file, &link.target) {
                let shown = file.strip_prefix(root).unwrap_or(file).display();
                problems.push(format!("{shown}:{}: ({}) {why}", link.line, link.target));
            }
        }
    }
    if !problems.is_empty() {
        bail!("{} broken link(s) in the docs:\n  {}", problems.len(), problems.join("\n  "));
    }
    Ok(checked)
}

/// A link's target as written, and the line it is on (1-based).
#[derive(Debug, PartialEq)]
struct Link {
    line: usize,
    target: String,
}

/// Whether `target`, written in `file`, names something that exists; why not otherwise.
fn resolve(root: &Path, file: &Path, target: &str) -> Result<(), String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return Ok(()); // not checked: no network
    }
    let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
    let dest = if path.is_empty() { file.to_path_buf() } else { normalize(&file.parent().unwrap().join(path)) };
    if !dest.starts_with(root) {
        return Err("points outside the repository".into());
    }
    if !dest.exists() {
        return Err(format!("no file {}", dest.strip_prefix(root).unwrap().display()));
    }
    if anchor.is_empty() {
        return Ok(());
    }
    if dest.extension().is_none_or(|e| e != "md") {
        return Err("an anchor into a file that is not Markdown".into());
    }
    let text = std::fs::read_to_string(&dest).map_err(|e| e.to_string())?;
    if anchors(&text).contains(anchor) {
        Ok(())
    } else {
        Err(format!("no heading #{anchor} in {}", dest.strip_prefix(root).unwrap().display()))
    }
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The text outside fenced code blocks, line by line (a fenced line is kept empty, so line
/// numbers stay those of the file).
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return "";
            }
            if fenced {
                ""
            } else {
                line
            }
        })
        .collect()
}

/// The anchors GitHub gives the headings: lower case, punctuation other than `-` and `_`
/// dropped, spaces as `-`; a repeated heading gets `-1`, `-2`, ...
fn anchors(text: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for line in prose_lines(text) {
        let hashes = line.chars().take_while(|&c| c == '#').count();
        let Some(title) = line.get(hashes..).and_then(|t| t.strip_prefix(' ')) else { continue };
        if !(1..=6).contains(&hashes) {
            continue;
        }
        let slug = slug(title.trim());
        let mut unique = slug.clone();
        let mut n = 0;
        while seen.contains(&unique) {
            n += 1;
            unique = format!("{slug}-{n}");
        }
        seen.insert(unique);
    }
    seen
}

fn slug(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter(|&c| c.is_alphanumeric() || c == '-' || c == '_' || c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every inline link or image target `](target)` outside code (fenced blocks and code spans).
fn links(text: &str) -> Vec<Link> {
    let lines = prose_lines(text);
    let mut found = Vec::new();
    // A code span may run over a line break, not over a paragraph: mask them per paragraph.
    let mut start = 0;
    while start < lines.len() {
        let len = lines[start..].iter().take_while(|l| !l.trim().is_empty()).count();
        let masked = mask_code_spans(&lines[start..start + len].join("\n"));
        let mut from = 0;
        while let Some(at) = masked[from..].find("](").map(|n| from + n) {
            let Some(end) = masked[at + 2..].find(')').map(|n| at + 2 + n) else { break };
            let line = start + 1 + masked[..at].matches('\n').count();
            found.push(Link { line, target: masked[at + 2..end].trim().to_string() });
            from = end;
        }
        start += len + 1;
    }
    found
}

/// `text` with every code span (a run of N backticks to the next run of exactly N) blanked.
fn mask_code_spans(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            let next = text[i..].find('`').map_or(text.len(), |n| i + n);
            out.push_str(&text[i..next]);
            i = next;
            continue;
        }
        let run = text[i..].bytes().take_while(|&b| b == b'`').count();
        let fence = &text[i..i + run];
        let mut search = i + run;
        let close = loop {
            match text[search..].find(fence) {
                None => break None,
                Some(n) => {
                    let at = search + n;
                    let len = text[at..].bytes().take_while(|&b| b == b'`').count();
                    if len == run {
                        break Some(at);
                    }
                    search = at + len;
                }
            }
        };
        match close {
            Some(at) => {
                out.extend(text[i..at + run].chars().map(|c| if c == '\n' { '\n' } else { ' ' }));
                i = at + run;
            }
            None => {
                out.push_str(fence);
                i += run;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_as_github_makes_them() {
        assert_eq!(slug("Breakdowns (`--by`)"), "breakdowns---by");
        assert_eq!(slug("`--serve ADDR`: Prometheus metrics"), "--serve-addr-prometheus-metrics");
        assert_eq!(slug("Static binaries (x86-64 and arm64)"), "static-binaries-x86-64-and-arm64");
        assert_eq!(
            slug("`probe doctor`, `probe completions`, `probe man`"),
            "probe-doctor-probe-completions-probe-man"
        );
        let repeated = anchors("# A\n## Notes\n```\n# not a heading\n```\n## Notes\n");
        let mut repeated: Vec<_> = repeated.into_iter().collect();
        repeated.sort();
        assert_eq!(repeated, ["a", "notes", "notes-1"]);
    }

    #[test]
    fn links_outside_code_only() {
        let text = "intro [a](x.md#one) and `[b](not-a-link)`\n\n```\n[c](fenced)\n```\n\
                    ``code ` [d](spanned)``\nlast ![img](pic.png)\n";
        assert_eq!(
            links(text),
            vec![Link { line: 1, target: "x.md#one".into() }, Link { line: 7, target: "pic.png".into() }]
        );
    }

    /// A small repository on disk: good links pass, each kind of broken one is named.
    #[test]
    fn finds_each_kind_of_broken_link() {
        let root = std::env::temp_dir().join(format!("probe-doc-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("docs")).unwrap();
        std::fs::write(root.join("docs/page.md"), "# Page\n## Some part (`--x`)\n[home](../README.md#probe)\n")
            .unwrap();
        std::fs::write(root.join("README.md"), "# probe\n[part](docs/page.md#some-part---x) [web](https://x.org/#y)\n")
            .unwrap();
        assert_eq!(check(&root).unwrap(), 3);
        std::fs::write(
            root.join("README.md"),
            "# probe\n[a](docs/page.md#nope)\n[b](docs/missing.md)\n[c](#probe)\n[d](../../etc/passwd)\n",
        )
        .unwrap();
        let err = check(&root).unwrap_err().to_string();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(err.starts_with("3 broken link(s)"), "{err}");
        assert!(err.contains("README.md:2: (docs/page.md#nope) no heading #nope in docs/page.md"), "{err}");
        assert!(err.contains("README.md:3: (docs/missing.md) no file docs/missing.md"), "{err}");
        assert!(err.contains("README.md:5: (../../etc/passwd) points outside the repository"), "{err}");
    }

    #[test]
    fn the_repository_docs_links_resolve() {
        let checked = check(&probe_helpers::root()).unwrap();
        assert!(checked > 20, "only {checked} links found in README.md and docs/");
    }
}
