//! The traced binary: its functions (ELF symbol tables), its load segments (virtual address to
//! file offset), its code bytes and whether it is a Go program.
use super::go::{self, GoVersion};
use crate::error::user;
use anyhow::{Context, Result};
use object::{Object, ObjectSegment, ObjectSymbol, SegmentFlags, SymbolKind};
use std::path::{Path, PathBuf};

/// A function with code: a defined, sized text symbol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub addr: u64,
    pub size: u64,
}

#[derive(Clone, Copy, Debug)]
struct LoadSegment {
    vaddr: u64,
    file_offset: u64,
    file_size: u64,
    executable: bool,
}

/// What produced the binary, which decides calling conventions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runtime {
    /// A Go program; the version is `None` when the build info cannot be read.
    Go(Option<GoVersion>),
    Native,
}

pub struct Binary {
    pub path: PathBuf,
    pub runtime: Runtime,
    functions: Vec<Function>,
    segments: Vec<LoadSegment>,
    data: Vec<u8>,
}

const PF_X: u32 = 1;

impl Binary {
    pub fn open(path: &Path) -> Result<Binary> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(user(format!("{}: no such file; check the path", path.display())))
            }
            Err(e) => {
                return Err(user(format!("{}: cannot read it ({e}); check permissions", path.display())))
            }
        };
        if !data.starts_with(b"\x7fELF") {
            return Err(user(format!(
                "{}: not an ELF file; give the path of a compiled program or library",
                path.display()
            )));
        }
        let file = object::File::parse(&*data).map_err(|e| {
            user(format!("{}: ELF file is corrupt ({e}); rebuild or pick another file", path.display()))
        })?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(user(format!(
                "{}: {:?} binary; probe traces x86-64 programs only",
                path.display(),
                file.architecture()
            )));
        }
        let functions = collect_functions(&file);
        let segments = file
            .segments()
            .map(|s| {
                let (file_offset, file_size) = s.file_range();
                let executable = matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0);
                LoadSegment { vaddr: s.address(), file_offset, file_size, executable }
            })
            .collect();
        let mut binary = Binary {
            path: path.to_path_buf(),
            runtime: Runtime::Native,
            functions,
            segments,
            data: Vec::new(),
        };
        if go::is_go(&file) {
            binary.runtime = Runtime::Go(go::version(&file, |addr, len| binary.read_vaddr(&data, addr, len)));
        }
        binary.data = data;
        Ok(binary)
    }

    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// File offset of a virtual address in an executable load segment: what a uprobe takes.
    pub fn code_offset(&self, vaddr: u64) -> Result<u64> {
        let seg = self
            .segments
            .iter()
            .find(|s| s.vaddr <= vaddr && vaddr < s.vaddr + s.file_size)
            .with_context(|| format!("address {vaddr:#x} is in no load segment of {}", self.path.display()))?;
        anyhow::ensure!(
            seg.executable,
            "address {vaddr:#x} of {} is not in an executable segment",
            self.path.display()
        );
        Ok(vaddr - seg.vaddr + seg.file_offset)
    }

    /// The machine code of a function.
    pub fn code(&self, f: &Function) -> Result<&[u8]> {
        let start = self.code_offset(f.addr)? as usize;
        let end = start.checked_add(f.size as usize).filter(|&e| e <= self.data.len());
        let end = end.with_context(|| format!("{} extends past the end of the file", f.name))?;
        Ok(&self.data[start..end])
    }

    fn read_vaddr<'d>(&self, data: &'d [u8], vaddr: u64, len: usize) -> Option<&'d [u8]> {
        let seg = self.segments.iter().find(|s| s.vaddr <= vaddr && vaddr < s.vaddr + s.file_size)?;
        let start = (vaddr - seg.vaddr + seg.file_offset) as usize;
        data.get(start..start.checked_add(len)?)
    }
}

fn collect_functions(file: &object::File) -> Vec<Function> {
    let mut functions: Vec<Function> = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.size() > 0)
        .filter_map(|s| {
            Some(Function { name: s.name().ok()?.to_string(), addr: s.address(), size: s.size() })
        })
        .collect();
    functions.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
    functions.dedup();
    functions
}
