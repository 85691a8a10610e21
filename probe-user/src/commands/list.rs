//! `probe list`: the functions of a file that probe can trace, like `stap -l 'process("x").function("main.*")'`.
use crate::cli::ListArgs;
use crate::error::user;
use crate::resolve::abi::Abi;
use crate::resolve::elf::{Binary, Function, Runtime, SymbolSource};
use crate::resolve::{glob_match, inlined, libraries, list_not_found_message, params};
use anyhow::Result;
use serde::Serialize;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    address: u64,
    size: u64,
    /// RET instructions found by decoding; `null` when the code cannot be decoded.
    rets: Option<usize>,
    abi: String,
    /// How the kernel handles the entry probe probe would place: `emulated` (cheap),
    /// `single-stepped` (a second trap), or `refused` (cannot be traced).
    entry: &'static str,
    /// Bytes from the function's start to that entry probe: more than 0 where the first
    /// instructions are skipped to reach one the kernel emulates; `null` when refused.
    entry_offset: Option<u64>,
    /// The entry is emulated only because probe skipped instructions at the start that the
    /// kernel would single-step (not a Go stack check's branch, which is where Go's entry is).
    entry_moved: bool,
    /// Call sites where the compiler copied the function into its caller (`.gopclntab`'s inline
    /// trees, C's DWARF); `null` when the file does not say.
    inlined_sites: Option<usize>,
    /// With `--params`: parameters and results as declared (absent without debug information).
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<Vec<ParamRow>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    results: Option<Vec<ParamRow>>,
    /// Why the positions are not as declared (parameters left out of the DWARF).
    #[serde(skip_serializing_if = "Option::is_none")]
    params_incomplete: Option<String>,
}

/// One declared parameter or result, for `--params`.
#[derive(Serialize)]
struct ParamRow {
    position: u32,
    name: String,
    #[serde(rename = "type")]
    type_name: String,
    kind: String,
    /// Registers (`rbx+rcx`), `sp+N` (stack), `xmm`, or `?`.
    location: String,
}

fn param_rows(params: &[params::Param]) -> Vec<ParamRow> {
    params
        .iter()
        .map(|p| ParamRow {
            position: p.position,
            name: p.name.clone(),
            type_name: p.ty.name.clone(),
            kind: params::kind_name(&p.ty),
            location: p.location.to_string(),
        })
        .collect()
}

/// The declared signatures, when `--params` asks for them (`None`: the file has no DWARF).
fn signatures(args: &ListArgs, binary: &Binary) -> Result<Option<HashMap<u64, params::Signature>>> {
    if !args.params {
        return Ok(None);
    }
    let found = params::signatures(binary).map_err(|e| {
        user(format!("--params: cannot read the debug information of {} ({e:#})", binary.path.display()))
    })?;
    if found.is_none() && !args.json {
        eprintln!(
            "probe: {} has no debug information (DWARF): parameters are not known; build with -g (Go: without \
             -ldflags=-s -w) to see them",
            binary.path.display()
        );
    }
    Ok(found)
}

/// The `--params` lines under a function's row: `    arg 0  s  *main.Server  pointer  rax`.
fn write_params(out: &mut impl Write, params: &[ParamRow], label: &str) -> std::io::Result<()> {
    for p in params {
        writeln!(
            out,
            "    {label} {:<2} {:<16} {:<24} {:<10} {}",
            p.position, p.name, p.type_name, p.kind, p.location
        )?;
    }
    Ok(())
}

/// How the kernel would handle this function's entry probe, where probe would place it.
struct EntryHandling {
    how: &'static str,
    offset: Option<u64>,
    moved: bool,
}

fn entry_handling(binary: &Binary, f: &crate::resolve::elf::Function) -> EntryHandling {
    let go = Abi::of(binary, &f.name).is_go();
    let site = |code: &[u8]| {
        let none = crate::arch::AlsoReads { sources: &[], return_address: false, frame_pointer: false };
        crate::arch::entry_site(code, f.addr, go, f.size > 0, &none, None)
    };
    match binary.entry_code(f).ok().map(|code| site(&code)) {
        Some(Ok((site, _))) => {
            let emulated = site.handling.is_emulated();
            EntryHandling {
                how: if emulated { "emulated" } else { "single-stepped" },
                offset: Some(site.addr - f.addr),
                moved: emulated && site.addr > f.addr && !site.stack_check,
            }
        }
        Some(Err(_)) => EntryHandling { how: "refused", offset: None, moved: false },
        None => EntryHandling { how: "-", offset: None, moved: false },
    }
}

pub fn run(args: &ListArgs) -> Result<()> {
    let binary = Binary::open(&file_to_list(&args.binary)?)?;
    let pattern = args.glob.as_deref().unwrap_or("*");
    let functions: Vec<_> = binary.functions().iter().filter(|f| glob_match(pattern, &f.name)).collect();
    if functions.is_empty() && args.glob.is_some() {
        return Err(user(list_not_found_message(&binary, pattern)));
    }
    if let Some(path) = &args.fields {
        return list_fields(args, &binary, &functions, path);
    }
    let mut out = std::io::stdout().lock();
    if !args.json && write_header(&mut out, &binary).is_err() {
        return Ok(()); // stdout closed (e.g. piped into head -1)
    }
    let signatures = signatures(args, &binary)?;
    let inlined = inlined::sites_per_function(&binary);
    let mut entries = [0usize; 2];
    for f in functions {
        let rets =
            binary.code(f).ok().and_then(|code| crate::arch::code::ret_addresses(&code, f.addr).ok()).map(|r| r.len());
        let EntryHandling { how: entry, offset: entry_offset, moved: entry_moved } = entry_handling(&binary, f);
        entries[(entry != "emulated") as usize] += 1;
        let abi = Abi::of(&binary, &f.name).to_string();
        let signature = signatures.as_ref().and_then(|s| s.get(&f.addr));
        let params = signature.map(|s| param_rows(&s.params));
        let results = signature.map(|s| param_rows(&s.results));
        let params_incomplete = signature.and_then(|s| s.incomplete.clone());
        let inlined_sites = inlined.as_ref().map(|counts| counts.get(&f.addr).copied().unwrap_or(0));
        let row = Row {
            name: &f.name,
            address: f.addr,
            size: f.size,
            rets,
            abi,
            entry,
            entry_offset,
            entry_moved,
            inlined_sites,
            params,
            results,
            params_incomplete,
        };
        let written = if args.json {
            writeln!(out, "{}", serde_json::to_string(&row)?)
        } else {
            let rets = rets.map_or("-".to_string(), |n| n.to_string());
            let inlined = inlined_sites.map_or("-".to_string(), |n| n.to_string());
            writeln!(
                out,
                "{:<#18x} {:>8} {:>5}  {:<16} {:<14} {:>7} {}",
                row.address, row.size, rets, row.abi, entry, inlined, row.name
            )
            .and_then(|_| match &row.params_incomplete {
                Some(why) => writeln!(out, "    ({why})"),
                None => Ok(()),
            })
            .and_then(|_| write_params(&mut out, row.params.as_deref().unwrap_or_default(), "arg"))
            .and_then(|_| write_params(&mut out, row.results.as_deref().unwrap_or_default(), "ret"))
        };
        if written.is_err() {
            return Ok(()); // stdout closed (e.g. piped into head)
        }
    }
    if !args.json {
        // RET probes are always single-stepped; the entry is what probe can choose.
        let _ = writeln!(
            out,
            "# entry probes: {} emulated by the kernel (cheap), {} single-stepped or refused; every RET probe is single-stepped",
            entries[0], entries[1]
        );
    }
    Ok(())
}

/// The lines above the table: what the file is, where its code is, the column names.
fn write_header(out: &mut impl Write, binary: &Binary) -> std::io::Result<()> {
    writeln!(out, "# {}", describe(binary))?;
    if let Some(note) = code_in_libraries(binary) {
        writeln!(out, "# {note}")?;
    }
    writeln!(out, "{:<18} {:>8} {:>5}  {:<16} {:<14} {:>7} NAME", "ADDRESS", "SIZE", "RETS", "ABI", "ENTRY", "INLINED")
}

/// A path as given, or a library's name as `--func LIB:FUNC` takes it (`libc.so.6`, `libc`,
/// `c`), found in the linker cache.
fn file_to_list(given: &Path) -> Result<PathBuf> {
    let name = given.to_string_lossy();
    if given.exists() || name.contains('/') {
        return Ok(given.to_path_buf());
    }
    libraries::in_cache(&libraries::canonical_name(&name)).map_err(|_| {
        user(format!("{name}: no such file, nor a library in the linker cache (ldconfig -p); check the name"))
    })
}

/// For a program whose code is in its libraries (more imported functions than its own), where
/// to look instead.
fn code_in_libraries(binary: &Binary) -> Option<String> {
    if binary.dynamic.needed.is_empty() || binary.functions().len() >= binary.imports.len() {
        return None;
    }
    let libraries: Vec<String> = libraries::load_order(&binary.path, &binary.dynamic)
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| binary.dynamic.needed.iter().any(|needed| n == needed.as_str())))
        .map(|p| p.display().to_string())
        .collect();
    Some(format!(
        "its code is mostly in its libraries ({} imported functions): {}; `probe list LIB` lists one, \
         `--func LIB:FUNC` traces one",
        binary.imports.len(),
        libraries.join(", ")
    ))
}

/// One line about the file: language, Go version and module, where the symbols came from.
fn describe(binary: &Binary) -> String {
    let kind = match &binary.runtime {
        Runtime::Go(info) => format!(
            "Go {} (module {})",
            info.version_string.as_deref().unwrap_or("version unknown"),
            info.module.as_deref().unwrap_or("unknown")
        ),
        Runtime::Native => "native code (System V ABI)".to_string(),
    };
    let symbols = match binary.symbols {
        SymbolSource::Symtab => ".symtab".to_string(),
        SymbolSource::DebugFile => {
            format!("debug file {}", binary.debug_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default())
        }
        SymbolSource::GoPclntab => ".gopclntab (stripped binary)".to_string(),
        SymbolSource::DynsymOnly => ".dynsym only (stripped; exported functions)".to_string(),
    };
    format!("{}: {kind}; {} functions from {symbols}", binary.path.display(), binary.functions().len())
}

/// One field of `--fields`, as a JSON line.
#[derive(Serialize)]
struct FieldRow<'a> {
    function: &'a str,
    path: String,
    #[serde(rename = "type")]
    type_name: &'a str,
    kind: &'a str,
    offset: u64,
}

/// `probe list BINARY FUNC --fields PATH`: what the parameter (or the path into it) offers one
/// level down: each field with its type and kind, as `--arg PATH.FIELD` would read it.
fn list_fields(args: &ListArgs, binary: &Binary, functions: &[&Function], path: &str) -> Result<()> {
    let bad = |why: String| user(format!("--fields {path}: {why}"));
    let function = match functions {
        [one] if args.glob.is_some() => *one,
        _ => {
            return Err(bad(format!(
                "name one function (probe list BINARY FUNC --fields {path}); {} match",
                if args.glob.is_some() { functions.len().to_string() } else { "every function would".into() }
            )))
        }
    };
    let normal = path.replace("->", ".");
    let mut parts = normal.split('.').map(str::trim);
    let name = parts.next().unwrap_or_default();
    let rest: Vec<String> = parts.map(str::to_string).collect();
    if !params::has_types(binary) {
        return Err(bad(format!(
            "{} has no debug information (DWARF), so parameters and their fields are not known; build with -g (Go: \
             without -ldflags=-s -w)",
            binary.path.display()
        )));
    }
    let signature = params::signature(binary, function)
        .map_err(|e| bad(format!("cannot read the debug information ({e:#})")))?
        .ok_or_else(|| bad(format!("the debug information does not describe {}", function.name)))?;
    let param = signature.params.iter().find(|p| p.name == name).ok_or_else(|| {
        let names: Vec<&str> = signature.params.iter().map(|p| p.name.as_str()).collect();
        bad(format!("{} has no parameter {name} (its parameters: {})", function.name, names.join(", ")))
    })?;
    let walk = params::fields::walk(binary, function, param, &rest).map_err(bad)?;
    let mut out = std::io::stdout().lock();
    let shown = path.trim();
    if walk.fields.is_empty() {
        let _ = writeln!(
            out,
            "# {shown} in {}: {} ({}), no fields; --arg {shown} reads it",
            function.name,
            walk.type_name,
            crate::resolve::dwarf::kind_label(&walk.leaf)
        );
        return Ok(());
    }
    if !args.json {
        let _ = writeln!(out, "# {shown} ({}) in {}: its fields", walk.type_name, function.name);
        let _ = writeln!(out, "{:<32} {:<32} {:<16} {:>6}", "PATH", "TYPE", "KIND", "OFFSET");
    }
    // C's own spelling where the path uses it: `cfg->owner` points to its fields.
    let pointer = matches!(walk.leaf, crate::resolve::dwarf::FieldKind::Pointer(_));
    let separator = if pointer && shown.contains("->") { "->" } else { "." };
    for f in &walk.fields {
        let row = FieldRow {
            function: &function.name,
            path: format!("{shown}{separator}{}", f.name),
            type_name: &f.type_name,
            kind: f.kind,
            offset: f.offset,
        };
        let written = if args.json {
            writeln!(out, "{}", serde_json::to_string(&row)?)
        } else {
            writeln!(out, "{:<32} {:<32} {:<16} {:>6}", row.path, row.type_name, row.kind, row.offset)
        };
        if written.is_err() {
            return Ok(()); // stdout closed (e.g. piped into head)
        }
    }
    Ok(())
}
