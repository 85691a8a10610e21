//! Resolving what to trace: which processes, which files (the program and any shared
//! library named as `LIB:FUNC`), and which functions in them.
pub mod callers;
pub mod dwarf;
pub mod elf;
pub mod go;
pub mod libraries;
pub mod params;
pub mod pclntab;

use crate::cli::TargetArgs;
use crate::error::user;
use anyhow::Result;
use elf::{Binary, Function};
use std::path::{Path, PathBuf};

/// Which processes the probes fire for.
#[derive(Debug)]
pub enum Scope {
    /// A command probe starts itself, held before exec until the probes are attached.
    Launch { argv: Vec<String> },
    /// One running process.
    Pid(i32),
    /// Every process that runs the file, now or later.
    AllProcesses,
}

/// A glob may match at most this many functions: each costs probes and kernel memory.
pub const MAX_FUNCTIONS: usize = 10_000;

pub struct Target {
    pub scope: Scope,
    /// `files[0]` is the program (or the library given as BINARY); libraries follow.
    files: Vec<Binary>,
}

/// A function chosen for tracing, and the file (index into the target's files) it is in.
#[derive(Clone, Debug)]
pub struct Chosen {
    pub file: usize,
    pub function: Function,
}

impl Target {
    pub fn resolve(args: &TargetArgs) -> Result<Target> {
        let (path, scope) = if let Some(cmd) = &args.command {
            let argv = shlex::split(cmd)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| user(format!("-c `{cmd}`: cannot split into words; check the quoting")))?;
            (find_program(&argv[0])?, Scope::Launch { argv })
        } else if let Some(pid) = args.pid {
            (process_exe(pid)?, Scope::Pid(pid))
        } else {
            let path = args.binary.clone().expect("clap requires one target");
            (path, Scope::AllProcesses)
        };
        Ok(Target { files: vec![Binary::open(&path)?], scope })
    }

    pub fn program(&self) -> &Binary {
        &self.files[0]
    }

    pub fn file(&self, index: usize) -> &Binary {
        &self.files[index]
    }

    /// Functions matching `query`: `FUNC`, `GLOB`, `LIB:FUNC` or `LIB:GLOB`. A plain name must
    /// match exactly one function; a glob at least one. A plain name the program does not
    /// define but imports (`malloc`) is looked up in its libraries, in the loader's order.
    pub fn choose(&mut self, query: &str) -> Result<Vec<Chosen>> {
        let library = split_library(query).filter(|_| !self.program().functions().iter().any(|f| f.name == query));
        let (file, pattern) = match library {
            Some((lib, pattern)) => (self.open_library(lib)?, pattern),
            None => (0, query),
        };
        let binary = &self.files[file];
        if pattern.trim().is_empty() {
            return Err(user(format!(
                "--func '{query}': no function name given; name one, or a glob (`probe list {}` shows them)",
                binary.path.display()
            )));
        }
        let found = if is_glob(pattern) {
            let all: Vec<&Function> = binary.functions().iter().filter(|f| glob_match(pattern, &f.name)).collect();
            if all.is_empty() {
                return Err(user(not_found_message(binary, query, &literal(pattern), true)));
            }
            if all.len() > MAX_FUNCTIONS {
                return Err(user(format!(
                    "--func {query}: matches {} functions, more than the {MAX_FUNCTIONS} probe traces at once; \
                     narrow the pattern",
                    all.len()
                )));
            }
            all
        } else {
            match find_function(binary, pattern) {
                Ok(f) => vec![f],
                Err(e) if file != 0 => return Err(e),
                Err(e) => return self.imported(pattern).unwrap_or_else(|| Err(self.explain_missing(query, e))),
            }
        };
        Ok(found.into_iter().map(|f| Chosen { file, function: f.clone() }).collect())
    }

    /// A function the program imports, from the first of its libraries that defines it.
    fn imported(&mut self, name: &str) -> Option<Result<Vec<Chosen>>> {
        self.program().imports.binary_search_by(|i| i.as_str().cmp(name)).ok()?;
        let libraries = match self.library_order() {
            Ok(l) => l,
            Err(e) => return Some(Err(e)),
        };
        for path in libraries {
            let Ok(library) = Binary::open(&path) else { continue };
            let Some(function) = library.functions().iter().find(|f| f.name == name).cloned() else { continue };
            let file = match self.files.iter().position(|b| b.path == path) {
                Some(i) => i,
                None => {
                    self.files.push(library);
                    self.files.len() - 1
                }
            };
            return Some(Ok(vec![Chosen { file, function }]));
        }
        None
    }

    /// The program's libraries: mapped in the process (-p), else found as the loader would.
    fn library_order(&self) -> Result<Vec<PathBuf>> {
        let program = self.program();
        match self.scope {
            Scope::Pid(pid) => libraries::of_process(pid, &program.path, &program.dynamic),
            _ => Ok(libraries::load_order(&program.path, &program.dynamic)),
        }
    }

    /// A name not found in a program whose code is in its libraries says where to look.
    fn explain_missing(&self, query: &str, not_found: anyhow::Error) -> anyhow::Error {
        let program = self.program();
        if !program.functions().is_empty() || program.dynamic.needed.is_empty() {
            return not_found;
        }
        user(format!(
            "--func {query}: {} defines no functions of its own, its code is in its libraries ({}); \
             name one as LIB:FUNC, `probe list LIB` lists its functions",
            program.path.display(),
            program.dynamic.needed.join(", ")
        ))
    }

    /// Opens a library named in `LIB:FUNC` (once), returning its index in `files`.
    fn open_library(&mut self, lib: &str) -> Result<usize> {
        let lib = libraries::canonical_name(lib);
        let program = self.program();
        let path = match &self.scope {
            _ if lib.contains('/') => PathBuf::from(&lib),
            Scope::Pid(pid) => libraries::in_process(*pid, &lib)?,
            Scope::Launch { .. } | Scope::AllProcesses => {
                match libraries::in_program(&program.path, &program.dynamic, &lib) {
                    Some(path) => path,
                    None => libraries::in_cache(&lib).map_err(|_| {
                        user(format!(
                            "{lib}: {} does not load it and the linker cache (ldconfig -p) has no such library; \
                             check the name (`ldd {}` lists what it loads) or give the library's path",
                            program.path.display(),
                            program.path.display()
                        ))
                    })?,
                }
            }
        };
        if let Some(i) = self.files.iter().position(|b| b.path == path) {
            return Ok(i);
        }
        self.files.push(Binary::open(&path)?);
        Ok(self.files.len() - 1)
    }

    /// Libraries (not the program) that probes are planned in.
    pub fn libraries(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().skip(1).map(|b| b.path.as_path())
    }
}

/// `LIB:FUNC`: the part before the first lone `:` (C++ and Rust names have `::`), e.g.
/// `c:malloc`, `libc:malloc`, `libc.so.6:malloc`, `/opt/lib/libfoo.so:foo`.
fn split_library(query: &str) -> Option<(&str, &str)> {
    let bytes = query.as_bytes();
    let colon = (0..bytes.len())
        .find(|&i| bytes[i] == b':' && bytes.get(i + 1) != Some(&b':') && (i == 0 || bytes[i - 1] != b':'))?;
    let (lib, func) = (&query[..colon], &query[colon + 1..]);
    (!lib.is_empty() && !func.is_empty() && !lib.contains("::")).then_some((lib, func))
}

/// Like the shell: a name with a `/` is a path, any other is looked up in PATH.
fn find_program(name: &str) -> Result<PathBuf> {
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect()).unwrap_or_default()
    };
    candidates
        .into_iter()
        .find(|p| is_executable_file(p))
        .ok_or_else(|| user(format!("-c: cannot start `{name}`: no such executable file; check the command")))
}

fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

fn process_exe(pid: i32) -> Result<PathBuf> {
    if pid <= 0 || !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(user(format!("-p {pid}: no such process; check the PID (pgrep NAME finds it)")));
    }
    std::fs::read_link(format!("/proc/{pid}/exe")).map_err(|e| {
        user(format!("-p {pid}: cannot read its executable ({e}); the process may have exited or be a kernel thread"))
    })
}

/// One element of a `--func` pattern.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Token {
    Char(char),
    /// `*`: any run of characters.
    Star,
    /// `?`: any one character.
    One,
}

/// Reads a pattern: `*` and `?` are wildcards, except that Go's pointer receiver `(*` is
/// literal (`scrape.(*targetScraper).scrape` is a name, not a glob) and a backslash makes the
/// next character literal (`\*`, `\?`, `\(`, `\\`).
fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(Token::Char(chars.next().unwrap_or('\\'))),
            '(' if chars.peek() == Some(&'*') => {
                out.push(Token::Char('('));
                out.push(Token::Char(chars.next().unwrap_or('*')));
            }
            '*' => out.push(Token::Star),
            '?' => out.push(Token::One),
            c => out.push(Token::Char(c)),
        }
    }
    out
}

/// Whether a pattern has a wildcard (after `(*` and escapes are read as literal).
pub fn is_glob(pattern: &str) -> bool {
    tokens(pattern).iter().any(|t| !matches!(t, Token::Char(_)))
}

/// The name a pattern without wildcards stands for (escapes removed); with wildcards, its
/// literal characters (what "closest" suggestions compare names with).
fn literal(pattern: &str) -> String {
    tokens(pattern).iter().filter_map(|t| if let Token::Char(c) = t { Some(*c) } else { None }).collect()
}

/// Shell-style match of a whole name: `*` any run of characters, `?` one character; `(*` and
/// backslash-escaped characters are literal.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<Token>, Vec<char>) = (tokens(pattern), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == Token::One || p[pi] == Token::Char(n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == Token::Star {
            backtrack = Some((pi, ni));
            pi += 1;
        } else if let Some((star, matched)) = backtrack {
            pi = star + 1;
            ni = matched + 1;
            backtrack = Some((star, matched + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|t| *t == Token::Star)
}

/// The forms under which a function can be named: its full name, without Go's `.abi0`,
/// without a C++ parameter list, and a Go method without its pointer receiver's `(*` `)`
/// (`scrape.targetScraper.scrape` for `scrape.(*targetScraper).scrape`).
fn names_of(f: &Function) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    let full = f.name.as_str();
    let no_abi0 = full.strip_suffix(".abi0");
    let no_params = full.find('(').filter(|&i| i > 0 && !full[i..].starts_with("(*")).map(|i| &full[..i]);
    let no_pointer = full.contains(".(*").then(|| full.replacen(".(*", ".", 1).replacen(").", ".", 1));
    std::iter::once(full)
        .chain(no_abi0)
        .chain(no_params)
        .map(std::borrow::Cow::Borrowed)
        .chain(no_pointer.map(std::borrow::Cow::Owned))
}

/// Whether `name` ends with `query` starting at a package or identifier boundary: after a `.`
/// (Go, `(*T).M` included), `::` (C++, Rust) or `/` (a Go package path,
/// `scrape.(*targetScraper).scrape` in `github.com/prometheus/prometheus/scrape.(*targetScraper).scrape`).
fn ends_at_boundary(name: &str, query: &str) -> bool {
    let Some(before) = name.strip_suffix(query).filter(|b| !b.is_empty()) else { return false };
    before.ends_with(['.', '/']) || before.ends_with("::")
}

/// Finds FUNC: an exact name, or a unique suffix at a package or identifier boundary.
pub fn find_function<'b>(binary: &'b Binary, query: &str) -> Result<&'b Function> {
    let name = literal(query);
    let functions = binary.functions();
    let exact: Vec<&Function> = functions.iter().filter(|f| names_of(f).any(|n| n == name)).collect();
    let matches = if exact.is_empty() {
        functions.iter().filter(|f| names_of(f).any(|n| ends_at_boundary(&n, &name))).collect()
    } else {
        exact
    };
    let mut names: Vec<&str> = matches.iter().map(|f| f.name.as_str()).collect();
    names.dedup();
    match (matches.first(), names.len()) {
        (Some(f), 1) => Ok(f),
        (None, _) => Err(user(not_found_message(binary, query, &name, false))),
        (_, n) => {
            let more = if n > 10 { format!(" and {} more", n - 10) } else { String::new() };
            Err(user(format!(
                "--func {query}: ambiguous, {n} functions match: {}{more}; give the full name",
                names[..n.min(10)].join(", ")
            )))
        }
    }
}

/// `--func QUERY: no such function in FILE; closest: ...`, the closest names to `like` (the
/// name, or a glob's literal characters).
fn not_found_message(binary: &Binary, query: &str, like: &str, glob: bool) -> String {
    let mut scored: Vec<(f64, &str)> = binary
        .functions()
        .iter()
        .map(|f| {
            let short = f.name.rsplit(['.', ':', '/']).next().unwrap_or(&f.name);
            let tail = f.name.rsplit('/').next().unwrap_or(&f.name);
            let score = strsim::jaro_winkler(like, &f.name)
                .max(strsim::jaro_winkler(like, short))
                .max(strsim::jaro_winkler(like, tail));
            (score, f.name.as_str())
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    let closest: Vec<&str> = scored.iter().take(3).map(|s| s.1).collect();
    let what = if glob { "no function matches in" } else { "no such function in" };
    if closest.is_empty() {
        format!("--func {query}: {} has no function symbols", binary.path.display())
    } else {
        format!("--func {query}: {what} {}; closest: {}", binary.path.display(), closest.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("main.Using*", "main.UsingRegex"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("fmt.?print*", "fmt.Fprintf"));
        assert!(!glob_match("main.Using*", "main.main"));
        assert!(glob_match("*Sub*ing", "main.UsingSubstring"));
        assert!(!glob_match("a*b", "ac"));
    }

    #[test]
    fn go_pointer_receivers_are_literal_and_backslash_escapes() {
        assert!(!is_glob("scrape.(*targetScraper).scrape"));
        assert!(!is_glob("(*targetScraper).scrape"));
        assert!(is_glob("scrape.(*targetScraper).*"));
        assert!(glob_match("scrape.(*targetScraper).*", "scrape.(*targetScraper).scrape"));
        assert!(!glob_match("scrape.(*targetScraper).*", "scrape.(targetScraper).scrape"));
        assert!(!is_glob(r"a\*b"));
        assert!(glob_match(r"a\*b", "a*b") && !glob_match(r"a\*b", "axb"));
        assert!(glob_match(r"f\(*", "f(x)") && !glob_match(r"f\(*", "g"));
        assert_eq!(literal(r"a\?b"), "a?b");
    }

    #[test]
    fn suffixes_start_at_a_package_or_identifier_boundary() {
        let name = "github.com/prometheus/prometheus/scrape.(*targetScraper).scrape";
        for query in [
            "scrape.(*targetScraper).scrape",
            "(*targetScraper).scrape",
            "scrape",
            "prometheus/scrape.(*targetScraper).scrape",
        ] {
            assert!(ends_at_boundary(name, query), "{query}");
        }
        for query in ["Scraper).scrape", "crape", "rometheus/scrape.(*targetScraper).scrape", name] {
            assert!(!ends_at_boundary(name, query), "{query}");
        }
        assert!(ends_at_boundary("geo::Scaler::scale", "Scaler::scale"));
        let f = Function { name: name.into(), addr: 1, size: 1 };
        assert!(names_of(&f).any(|n| n == "github.com/prometheus/prometheus/scrape.targetScraper.scrape"));
    }

    #[test]
    fn library_prefixes() {
        assert_eq!(split_library("libc.so.6:strlen"), Some(("libc.so.6", "strlen")));
        assert_eq!(split_library("/usr/lib/libfoo.so:foo"), Some(("/usr/lib/libfoo.so", "foo")));
        assert_eq!(split_library("ns::Foo::bar"), None);
        assert_eq!(split_library("main.ToString"), None);
        assert_eq!(split_library("c:malloc"), Some(("c", "malloc")));
        assert_eq!(split_library("libsqlite3:sqlite3_step"), Some(("libsqlite3", "sqlite3_step")));
    }
}
