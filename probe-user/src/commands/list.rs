//! `probe list`: the functions of a file that probe can trace, like `stap -l 'process("x").function("main.*")'`.
use crate::abi::Abi;
use crate::cli::ListArgs;
use crate::error::user;
use crate::target::elf::{Binary, Runtime, SymbolSource};
use crate::target::{glob_match, libraries};
use anyhow::Result;
use serde::Serialize;
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
}

/// How the kernel would handle this function's entry probe.
fn entry_handling(binary: &Binary, f: &crate::target::elf::Function) -> &'static str {
    let go = Abi::of(binary, &f.name).is_go();
    #[cfg(target_arch = "x86_64")]
    let site = |code: &[u8]| crate::disasm::entry_site(code, f.addr, go, None);
    #[cfg(target_arch = "aarch64")]
    let site = |code: &[u8]| crate::disasm_arm64::entry_site(code, f.addr, go);
    match binary.entry_code(f).ok().map(|code| site(&code)) {
        Some(Ok(site)) if site.handling.is_emulated() => "emulated",
        Some(Ok(_)) => "single-stepped",
        Some(Err(_)) => "refused",
        None => "-",
    }
}

pub fn run(args: &ListArgs) -> Result<()> {
    let binary = Binary::open(&file_to_list(&args.binary)?)?;
    let pattern = args.glob.as_deref().unwrap_or("*");
    let functions: Vec<_> = binary.functions().iter().filter(|f| glob_match(pattern, &f.name)).collect();
    if functions.is_empty() && args.glob.is_some() {
        return Err(user(format!("no function of {} matches {pattern}", binary.path.display())));
    }
    let mut out = std::io::stdout().lock();
    if !args.json && write_header(&mut out, &binary).is_err() {
        return Ok(()); // stdout closed (e.g. piped into head -1)
    }
    let mut entries = [0usize; 2];
    for f in functions {
        let rets =
            binary.code(f).ok().and_then(|code| crate::arch::code::ret_addresses(&code, f.addr).ok()).map(|r| r.len());
        let entry = entry_handling(&binary, f);
        entries[(entry != "emulated") as usize] += 1;
        let abi = Abi::of(&binary, &f.name).to_string();
        let row = Row { name: &f.name, address: f.addr, size: f.size, rets, abi, entry };
        let written = if args.json {
            writeln!(out, "{}", serde_json::to_string(&row)?)
        } else {
            let rets = rets.map_or("-".to_string(), |n| n.to_string());
            writeln!(
                out,
                "{:<#18x} {:>8} {:>5}  {:<16} {:<14} {}",
                row.address, row.size, rets, row.abi, entry, row.name
            )
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
    writeln!(out, "{:<18} {:>8} {:>5}  {:<16} {:<14} NAME", "ADDRESS", "SIZE", "RETS", "ABI", "ENTRY")
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
