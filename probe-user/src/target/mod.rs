//! Resolving what to trace: which binary file, which processes, which function in it.
pub mod elf;
pub mod go;

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
    /// Every process that runs the binary, now or later.
    AllProcesses,
}

pub struct Target {
    pub binary: Binary,
    pub scope: Scope,
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
        Ok(Target { binary: Binary::open(&path)?, scope })
    }
}

/// Like the shell: a name with a `/` is a path, any other is looked up in PATH.
fn find_program(name: &str) -> Result<PathBuf> {
    let cannot_start = |why: &str| {
        user(format!("-c: cannot start `{name}`: {why}; check the command"))
    };
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
            .unwrap_or_default()
    };
    let found = candidates.into_iter().find(|p| is_executable_file(p));
    found.ok_or_else(|| cannot_start("no such executable file"))
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

/// Finds FUNC: the exact symbol name, or a unique suffix that starts after a `.`. Go assembly
/// functions match with or without their `.abi0` suffix (`Scale` finds `main.Scale.abi0`).
pub fn find_function<'b>(binary: &'b Binary, query: &str) -> Result<&'b Function> {
    let functions = binary.functions();
    if let Some(f) = functions.iter().find(|f| f.name == query) {
        return Ok(f);
    }
    let dotted = format!(".{query}");
    let matches_query = |f: &&Function| {
        let name = f.name.strip_suffix(".abi0").unwrap_or(&f.name);
        name == query || name.ends_with(&dotted)
    };
    let mut matches: Vec<&Function> = functions.iter().filter(matches_query).collect();
    matches.dedup_by(|a, b| a.name == b.name);
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(user(not_found_message(binary, query))),
        many => {
            let names: Vec<&str> = many.iter().take(10).map(|f| f.name.as_str()).collect();
            let more = if many.len() > 10 { format!(" and {} more", many.len() - 10) } else { String::new() };
            Err(user(format!(
                "--func {query}: ambiguous, {} functions match: {}{more}; give the full name",
                many.len(),
                names.join(", ")
            )))
        }
    }
}

fn not_found_message(binary: &Binary, query: &str) -> String {
    let mut scored: Vec<(f64, &str)> = binary
        .functions()
        .iter()
        .map(|f| {
            let short = f.name.rsplit('.').next().unwrap_or(&f.name);
            let score = strsim::jaro_winkler(query, &f.name).max(strsim::jaro_winkler(query, short));
            (score, f.name.as_str())
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.dedup_by(|a, b| a.1 == b.1);
    let closest: Vec<&str> = scored.iter().take(3).map(|s| s.1).collect();
    if closest.is_empty() {
        format!("--func {query}: {} has no function symbols (stripped?)", binary.path.display())
    } else {
        format!(
            "--func {query}: no such function in {}; closest: {}",
            binary.path.display(),
            closest.join(", ")
        )
    }
}
