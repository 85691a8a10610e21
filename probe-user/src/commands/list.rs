//! `probe list`: the functions of a file that probe can trace, like `stap -l 'process("x").function("main.*")'`.
use crate::abi::Abi;
use crate::cli::ListArgs;
use crate::disasm;
use crate::error::user;
use crate::target::elf::{Binary, Runtime, SymbolSource};
use crate::target::glob_match;
use anyhow::Result;
use serde::Serialize;
use std::io::Write;

#[derive(Serialize)]
struct Row<'a> {
    name: &'a str,
    address: u64,
    size: u64,
    /// RET instructions found by decoding; `null` when the code cannot be decoded.
    rets: Option<usize>,
    abi: String,
}

pub fn run(args: &ListArgs) -> Result<()> {
    let binary = Binary::open(&args.binary)?;
    let pattern = args.glob.as_deref().unwrap_or("*");
    let functions: Vec<_> = binary.functions().iter().filter(|f| glob_match(pattern, &f.name)).collect();
    if functions.is_empty() && args.glob.is_some() {
        return Err(user(format!("no function of {} matches {pattern}", binary.path.display())));
    }
    let mut out = std::io::stdout().lock();
    if !args.json {
        writeln!(out, "# {}", describe(&binary))?;
        writeln!(out, "{:<18} {:>8} {:>5}  {:<16} NAME", "ADDRESS", "SIZE", "RETS", "ABI")?;
    }
    for f in functions {
        let rets = binary.code(f).ok().and_then(|code| disasm::ret_addresses(&code, f.addr).ok()).map(|r| r.len());
        let row = Row { name: &f.name, address: f.addr, size: f.size, rets, abi: Abi::of(&binary, &f.name).to_string() };
        let written = if args.json {
            writeln!(out, "{}", serde_json::to_string(&row)?)
        } else {
            let rets = rets.map_or("-".to_string(), |n| n.to_string());
            writeln!(out, "{:<#18x} {:>8} {:>5}  {:<16} {}", row.address, row.size, rets, row.abi, row.name)
        };
        if written.is_err() {
            break; // stdout closed (e.g. piped into head)
        }
    }
    Ok(())
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
        SymbolSource::DebugFile => format!(
            "debug file {}",
            binary.debug_file.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
        ),
        SymbolSource::GoPclntab => ".gopclntab (stripped binary)".to_string(),
        SymbolSource::DynsymOnly => ".dynsym only (stripped; exported functions)".to_string(),
    };
    format!("{}: {kind}; {} functions from {symbols}", binary.path.display(), binary.functions().len())
}
