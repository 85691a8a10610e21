//! Resolving what to trace: which processes, which files (the program and any shared
//! library named as `LIB:FUNC`), and which functions in them.
pub mod abi;
pub mod callers;
pub mod container;
pub mod dwarf;
pub mod elf;
pub mod go;
pub mod inlined;
pub mod libraries;
pub mod maps;
pub mod params;
pub mod pclntab;
pub mod processes;

use crate::error::user;
use crate::shared::{Process, TargetSpec};
use anyhow::Result;
use container::Selection;
use elf::{Binary, Function};
use libraries::Mapped;
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
    /// `--container`/`--cgroup`: the processes measured, whose files are read through the
    /// root of one of them.
    pub selection: Option<Selection>,
}

/// A function chosen for tracing, and the file (index into the target's files) it is in.
#[derive(Clone, Debug)]
pub struct Chosen {
    pub file: usize,
    pub function: Function,
}

impl Target {
    /// The processes and program the command line names; a binary's `within` (`--container`,
    /// `--cgroup`) narrows its processes to those of one cgroup, and its path is then read
    /// through the root of one of them.
    pub fn resolve(spec: &TargetSpec) -> Result<Target> {
        let mut selection = None;
        let (program, scope) = match spec {
            TargetSpec::Command(cmd) => {
                let argv = shlex::split(cmd)
                    .filter(|a| !a.is_empty())
                    .ok_or_else(|| user(format!("-c `{cmd}`: cannot split into words; check the quoting")))?;
                (Binary::open(&find_program(&argv[0])?)?, Scope::Launch { argv })
            }
            TargetSpec::Process(process) => {
                let pid = match process {
                    Process::Pid(pid) => *pid,
                    Process::Name(name) => processes::named(name)?,
                };
                (process_binary(pid)?, Scope::Pid(pid))
            }
            TargetSpec::Binary { path, within: None } => {
                (Binary::open(&binary_path(path.clone())?)?, Scope::AllProcesses)
            }
            TargetSpec::Binary { path, within: Some(within) } => {
                let chosen = Selection::of(within)?;
                let program = Binary::open(&chosen.program(path)?)?;
                selection = Some(chosen);
                (program, Scope::AllProcesses)
            }
        };
        Ok(Target { files: vec![program], scope, selection })
    }

    pub fn program(&self) -> &Binary {
        &self.files[0]
    }

    /// How many files: the program and the libraries opened so far.
    pub fn files(&self) -> usize {
        self.files.len()
    }

    pub fn file(&self, index: usize) -> &Binary {
        &self.files[index]
    }

    /// Each function `queries` choose, once, and whether a glob chose it (then a function that
    /// cannot be probed is skipped with a warning instead of ending the run). At most
    /// `MAX_FUNCTIONS` in all, checked here and only here.
    pub fn choose_all(&mut self, queries: &[String]) -> Result<Vec<(Chosen, bool)>> {
        let mut chosen: Vec<(Chosen, bool)> = Vec::new();
        for query in queries {
            for (query, found) in self.choose_listed(query)? {
                let glob = is_glob(query);
                if glob && found.len() <= MAX_FUNCTIONS {
                    let verb = if found.len() == 1 { "function matches" } else { "functions match" };
                    eprintln!("probe: {} {verb} {query}", found.len());
                }
                for c in found {
                    let duplicate = chosen.iter().any(|(d, _)| d.file == c.file && d.function.addr == c.function.addr);
                    if !duplicate {
                        chosen.push((c, glob));
                    }
                }
                if chosen.len() > MAX_FUNCTIONS {
                    return Err(user(format!(
                        "--func {query}: {} functions, more than the {MAX_FUNCTIONS} probe traces at once; \
                         narrow the pattern",
                        chosen.len()
                    )));
                }
            }
        }
        Ok(chosen)
    }

    /// The functions `query` names, with the query (or part of it) that named them: `a,b`, when
    /// it is not itself a name, is the list of `a` and `b`, as bpftrace reads `uprobe:a,b`.
    fn choose_listed<'q>(&mut self, query: &'q str) -> Result<Vec<(&'q str, Vec<Chosen>)>> {
        match self.choose(query) {
            Ok(found) => Ok(vec![(query, found)]),
            Err(e) => match split_list(query) {
                Some(parts) => parts.into_iter().map(|part| Ok((part, self.choose(part)?))).collect(),
                None => Err(e),
            },
        }
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
        for mapped in libraries {
            let Ok(library) = mapped.open() else { continue };
            let Some(function) = library.functions().iter().find(|f| f.name == name).cloned() else { continue };
            let file = match self.files.iter().position(|b| b.path == mapped.path) {
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
    fn library_order(&self) -> Result<Vec<Mapped>> {
        let program = self.program();
        if let Some(selection) = self.selection.as_ref().filter(|s| s.anchor.is_some()) {
            return container::libraries(selection, &program.path, &program.dynamic.needed);
        }
        match self.scope {
            Scope::Pid(pid) => libraries::of_process(pid, &program.path, &program.dynamic),
            _ => Ok(libraries::load_order(&program.path, &program.dynamic)
                .into_iter()
                .map(|path| Mapped { through: path.clone(), path })
                .collect()),
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
        let selection = self.selection.as_ref().filter(|s| s.anchor.is_some());
        let library = match &self.scope {
            _ if lib.contains('/') => match selection {
                Some(s) => s.program(Path::new(&lib))?,
                None => PathBuf::from(&lib),
            },
            _ if selection.is_some() => {
                let mapped = self.library_order()?.into_iter().find(|m| {
                    m.path.file_name().and_then(|n| n.to_str()).is_some_and(|n| libraries::name_matches(n, &lib))
                });
                let mapped = mapped.ok_or_else(|| {
                    user(format!(
                        "{lib}: not loaded by the processes of {}; check the library's name",
                        selection.map(Selection::describe).unwrap_or_default()
                    ))
                })?;
                mapped.path
            }
            Scope::Pid(pid) => {
                let mapped = libraries::in_process(*pid, &lib)?;
                if let Some(i) = self.files.iter().position(|b| b.path == mapped.path) {
                    return Ok(i);
                }
                self.files.push(mapped.open()?);
                return Ok(self.files.len() - 1);
            }
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
        if let Some(i) = self.files.iter().position(|b| b.path == library) {
            return Ok(i);
        }
        self.files.push(Binary::open(&library)?);
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

/// `--func a,b` as a list, as bpftrace's `uprobe:a,b` reads: the names between commas that are
/// not inside a C++ parameter list, Go type parameters or a template (`f(int, long)`,
/// `F[go.shape.int,go.shape.string]`). None when there is no such comma.
pub fn split_list(query: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in query.char_indices() {
        match c {
            '(' | '[' | '<' => depth += 1,
            ')' | ']' | '>' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(query[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(query[start..].trim());
    (parts.len() > 1 && parts.iter().all(|p| !p.is_empty())).then_some(parts)
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

/// BINARY as given, or a bare name that is no file here looked up in PATH, as a shell finds a
/// command (`probe latency --func getCommand redis-server`).
fn binary_path(given: PathBuf) -> Result<PathBuf> {
    let name = given.to_string_lossy().to_string();
    if name.contains('/') || given.symlink_metadata().is_ok() {
        return Ok(given);
    }
    find_program(&name).map_err(|_| {
        user(format!("{name}: no such file here, nor a program of that name in PATH; give its path (`which {name}`)"))
    })
}

/// The program process `pid` runs, read through /proc/PID/exe: the very file it runs, even
/// when its path was since deleted or replaced (the name then ends with ` (deleted)`).
fn process_binary(pid: i32) -> Result<Binary> {
    if pid <= 0 || !Path::new(&format!("/proc/{pid}")).exists() {
        return Err(user(format!("-p {pid}: no such process; check the PID (pgrep NAME finds it)")));
    }
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    let name = std::fs::read_link(&exe).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => user(format!(
            "-p {pid}: probe needs root, or CAP_BPF, CAP_PERFMON and CAP_SYS_PTRACE, to read and trace another \
             user's process; run it with sudo"
        )),
        _ => user(format!(
            "-p {pid}: cannot read its executable ({e}); the process may have exited or be a kernel thread"
        )),
    })?;
    Binary::open_through(&exe, &name)
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

/// Finds FUNC: an exact name, or a unique suffix at a package or identifier boundary. The
/// closest kind of match wins: the full name as the binary spells it, then another form of it
/// (without `.abi0`, parameters or `(*` `)`), then a suffix of the full name, then a suffix of
/// another form. So `net/http.serverHandler.ServeHTTP` is the value method itself, not also
/// the pointer wrapper `net/http.(*serverHandler).ServeHTTP` Go generates for it.
pub fn find_function<'b>(binary: &'b Binary, query: &str) -> Result<&'b Function> {
    let name = literal(query);
    let functions = binary.functions();
    let kinds: [&dyn Fn(&Function) -> bool; 4] =
        [&|f| f.name == name, &|f| names_of(f).any(|n| n == name), &|f| ends_at_boundary(&f.name, &name), &|f| {
            names_of(f).any(|n| ends_at_boundary(&n, &name))
        }];
    let matches: Vec<&Function> = kinds
        .iter()
        .map(|matches| functions.iter().filter(|f| matches(f)).collect::<Vec<_>>())
        .find(|found| !found.is_empty())
        .unwrap_or_default();
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
    let closest = closest_names(binary, like);
    let what = if glob { "no function matches in" } else { "no such function in" };
    if closest.is_empty() {
        format!("--func {query}: {} has no function symbols", binary.path.display())
    } else {
        format!("--func {query}: {what} {}; closest: {}", binary.path.display(), closest.join(", "))
    }
}

/// What `probe list FILE PATTERN` says when nothing matches: a pattern matches the whole name,
/// so a bare word usually wants a `*` in front (said with how many that would match), and the
/// closest names.
pub fn list_not_found_message(binary: &Binary, pattern: &str) -> String {
    let mut message = format!("no function of {} matches {pattern}", binary.path.display());
    let starred = format!("*{pattern}");
    let with_star = binary.functions().iter().filter(|f| glob_match(&starred, &f.name)).count();
    if !pattern.starts_with('*') && with_star > 0 {
        let plural = if with_star == 1 { "" } else { "s" };
        message.push_str(&format!(
            " (a pattern matches the whole name: '{starred}' matches {with_star} function{plural})"
        ));
    }
    let closest = closest_names(binary, &literal(pattern));
    if !closest.is_empty() {
        message.push_str(&format!("; closest: {}", closest.join(", ")));
    }
    message
}

/// The three names closest to `like`, by the whole name, its last identifier or its last
/// path element.
fn closest_names<'b>(binary: &'b Binary, like: &str) -> Vec<&'b str> {
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
    scored.iter().take(3).map(|s| s.1).collect()
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
    fn comma_lists_split_outside_parameter_lists() {
        assert_eq!(split_list("getCommand,setCommand"), Some(vec!["getCommand", "setCommand"]));
        assert_eq!(split_list("a, b ,c"), Some(vec!["a", "b", "c"]));
        assert_eq!(split_list("geo::Scaler::scale(long, int)"), None);
        assert_eq!(split_list("f(int, long),g"), Some(vec!["f(int, long)", "g"]));
        assert_eq!(split_list("main.F[go.shape.int,go.shape.string]"), None);
        assert_eq!(split_list("a,"), None);
        assert_eq!(split_list("main.ToString"), None);
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
