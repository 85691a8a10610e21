//! The traced file (program or shared library): its functions, its load segments (virtual
//! address to file offset), its code bytes and whether it is a Go program.
//!
//! Functions come from, in order: `.symtab`; when the file is stripped, the separate debug file
//! named by `.gnu_debuglink` or the build-id; for Go, `.gopclntab`; and always `.dynsym`.
use super::go::{self, GoBuildInfo};
use super::pclntab;
use crate::error::user;
use anyhow::Result;
use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol, ReadRef, SegmentFlags, SymbolKind};
use std::borrow::Cow;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A function with code. `name` is demangled (C++, Rust) for matching and display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub addr: u64,
    /// 0 when the symbol table does not say.
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
    Go(GoBuildInfo),
    Native,
}

/// Where the function names came from, for `probe list`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SymbolSource {
    Symtab,
    DebugFile,
    GoPclntab,
    DynsymOnly,
}

pub struct Binary {
    /// The file's name, for people: as given, or as the process's map names it.
    pub path: PathBuf,
    /// Where the file is read and probes are attached: `path`, or for a file opened through a
    /// process (`/proc/PID/exe`, `map_files`) the descriptor probe holds (`/proc/self/fd/N`),
    /// which names that very file even when `path` no longer does (deleted, replaced).
    pub source: PathBuf,
    pub runtime: Runtime,
    pub symbols: SymbolSource,
    /// The separate debug file the symbols came from, if any.
    pub debug_file: Option<PathBuf>,
    /// What the dynamic loader reads: DT_NEEDED, DT_RUNPATH and DT_RPATH.
    pub dynamic: Dynamic,
    /// Functions the file imports (undefined in its `.dynsym`), sorted: they are in its libraries.
    pub imports: Vec<String>,
    functions: Vec<Function>,
    segments: Vec<LoadSegment>,
    contents: Contents,
}

/// Where a function's code is read from. A file is read piece by piece, never whole: a big
/// program (Prometheus: 50 MB) would otherwise sit in memory for the whole run.
enum Contents {
    Memory(Vec<u8>),
    /// The open file and its size when opened (reads past it are refused, not attempted).
    File(std::fs::File, u64),
}

impl Contents {
    fn read(&self, start: u64, len: u64) -> Option<Cow<'_, [u8]>> {
        let end = start.checked_add(len)?;
        match self {
            Contents::Memory(data) => {
                data.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?).map(Cow::Borrowed)
            }
            Contents::File(file, size) => {
                if end > *size {
                    return None;
                }
                let mut buf = vec![0; usize::try_from(len).ok()?];
                file.read_exact_at(&mut buf, start).ok()?;
                Some(Cow::Owned(buf))
            }
        }
    }
}

/// A file read on demand (`object::ReadCache`) whose string tables were read whole first.
/// Left to itself, the cache reads a name at a time (a seek and a read of 256 bytes each):
/// 15,000 system calls for the 7,000 symbols of a small Go program, half of its start-up.
#[derive(Clone, Copy)]
pub struct OnDemand<'d, R> {
    data: R,
    /// The `SHT_STRTAB` sections read: file offset and bytes.
    tables: &'d [(u64, &'d [u8])],
}

/// Tables larger than this (together) are read name by name, as before: a file that claims a
/// huge string table is not read whole into memory for it.
const STRING_TABLES_MAX: u64 = 256 << 20;

/// Which string tables to read whole.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Tables {
    /// The section names: enough to find sections by name.
    SectionNames,
    /// Those and the symbol and dynamic symbol names.
    All,
}

/// The string tables of a 64-bit ELF file, each read in one call; empty when the file is no
/// such thing (the parser then says what it is).
pub fn string_tables<'d, R: ReadRef<'d>>(data: R, which: Tables) -> Vec<(u64, &'d [u8])> {
    use object::read::elf::{FileHeader, SectionHeader};
    let Ok(object::File::Elf64(elf)) = object::File::parse(data) else { return Vec::new() };
    let endian = elf.endian();
    let names = elf.elf_header().shstrndx(endian, data).ok().map(|i| i as usize);
    let file_len = data.len().unwrap_or(0);
    // Only what the file holds: a table claimed past its end is never allocated for.
    let mut budget = STRING_TABLES_MAX.min(file_len);
    let mut tables = Vec::new();
    for (index, header) in elf.elf_section_table().iter().enumerate() {
        let Some((offset, size)) = header.file_range(endian) else { continue };
        let wanted = which == Tables::All || Some(index) == names;
        let inside = offset.checked_add(size).is_some_and(|end| end <= file_len);
        if !wanted || header.sh_type(endian) != object::elf::SHT_STRTAB || size > budget || !inside {
            continue;
        }
        if let Ok(bytes) = data.read_bytes_at(offset, size) {
            budget -= size;
            tables.push((offset, bytes));
        }
    }
    tables
}

impl<'d, R: ReadRef<'d>> OnDemand<'d, R> {
    pub fn new(data: R, tables: &'d [(u64, &'d [u8])]) -> Self {
        OnDemand { data, tables }
    }

    /// The table holding the byte at `offset`, from that byte on.
    fn table_from(&self, offset: u64) -> Option<&'d [u8]> {
        let (start, bytes) =
            self.tables.iter().find(|(start, bytes)| offset >= *start && offset - start < bytes.len() as u64)?;
        Some(&bytes[(offset - start) as usize..])
    }
}

impl<'d, R: ReadRef<'d>> ReadRef<'d> for OnDemand<'d, R> {
    fn len(self) -> Result<u64, ()> {
        self.data.len()
    }

    fn read_bytes_at(self, offset: u64, size: u64) -> Result<&'d [u8], ()> {
        match self.table_from(offset) {
            Some(rest) if size <= rest.len() as u64 => Ok(&rest[..size as usize]),
            _ => self.data.read_bytes_at(offset, size),
        }
    }

    fn read_bytes_at_until(self, range: std::ops::Range<u64>, delimiter: u8) -> Result<&'d [u8], ()> {
        let Some(rest) = self.table_from(range.start) else { return self.data.read_bytes_at_until(range, delimiter) };
        let limit = usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(usize::MAX).min(rest.len());
        let end = rest[..limit].iter().position(|&b| b == delimiter).ok_or(())?;
        Ok(&rest[..end])
    }
}

/// What parsing the ELF headers and symbols yields.
struct Parsed {
    runtime: Runtime,
    symbols: SymbolSource,
    debug_file: Option<PathBuf>,
    dynamic: Dynamic,
    imports: Vec<String>,
    functions: Vec<Function>,
    segments: Vec<LoadSegment>,
}

const PF_X: u32 = 1;

fn unreadable(path: &Path, e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        user(format!("{}: no such file; check the path", path.display()))
    } else {
        user(format!("{}: cannot read it ({e}); check permissions", path.display()))
    }
}

/// Larger files are refused rather than read into memory: no real program or library (debug
/// information included) comes near it, while /dev/zero or a huge data file would exhaust RAM.
pub const MAX_BINARY_SIZE: u64 = 4 << 30;

/// Why a file was not read as a binary.
pub enum ReadError {
    Io(std::io::Error),
    NotRegular(&'static str),
    TooLarge(u64),
}

/// Opens a binary: only a regular file, at most MAX_BINARY_SIZE, and never blocking on a FIFO
/// (opened O_NONBLOCK, checked with fstat on the open file before any read). Returns the file
/// and its size; nothing is read yet.
pub fn open_binary_file(path: &Path) -> Result<(std::fs::File, u64), ReadError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(ReadError::Io)?;
    let meta = file.metadata().map_err(ReadError::Io)?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(ReadError::NotRegular(what));
    }
    if meta.len() > MAX_BINARY_SIZE {
        return Err(ReadError::TooLarge(meta.len()));
    }
    Ok((file, meta.len()))
}

impl Binary {
    /// Opens a regular file and reads only what it needs: headers, the symbol table (or Go's
    /// function table), and later the code of the functions traced.
    pub fn open(path: &Path) -> Result<Binary> {
        Binary::open_through(path, path)
    }

    /// Opens the file `through` names (a link in /proc to the file a process runs or maps),
    /// calling it `path`. Probes attach through the open descriptor, so they land in the file
    /// read, even if it was deleted or replaced, or the process execs something else meanwhile.
    pub fn open_through(through: &Path, path: &Path) -> Result<Binary> {
        use std::os::fd::AsRawFd;
        let (file, len) = open_binary_file(through).map_err(|e| match e {
            ReadError::Io(e) => unreadable(path, e),
            ReadError::NotRegular(what) => user(format!(
                "{}: {what}, not a program; give the path of a compiled program or library",
                path.display()
            )),
            ReadError::TooLarge(size) => user(format!(
                "{}: {size} bytes, larger than any program probe reads ({} GiB); give the path of a \
                 compiled program or library",
                path.display(),
                MAX_BINARY_SIZE >> 30
            )),
        })?;
        // The parser reads sections into this cache as it asks for them; they go with it.
        let cache = object::ReadCache::new(&file);
        let tables = string_tables(&cache, Tables::All);
        let parsed = parse_elf(path, through, OnDemand::new(&cache, &tables), len)?;
        drop(tables);
        drop(cache);
        let source = match through == path {
            true => path.to_path_buf(),
            false => PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd())),
        };
        Ok(Binary::from_parsed(path, source, parsed, Contents::File(file, len)))
    }

    /// Parses file contents (split from `open` so fuzzing can feed bytes directly).
    pub fn parse(path: &Path, data: Vec<u8>) -> Result<Binary> {
        let parsed = parse_elf(path, path, &*data, data.len() as u64)?;
        Ok(Binary::from_parsed(path, path.to_path_buf(), parsed, Contents::Memory(data)))
    }

    fn from_parsed(path: &Path, source: PathBuf, p: Parsed, contents: Contents) -> Binary {
        Binary {
            path: path.to_path_buf(),
            source,
            runtime: p.runtime,
            symbols: p.symbols,
            debug_file: p.debug_file,
            dynamic: p.dynamic,
            imports: p.imports,
            functions: p.functions,
            segments: p.segments,
            contents,
        }
    }

    pub fn functions(&self) -> &[Function] {
        &self.functions
    }

    /// File offset of a virtual address in an executable load segment: what a uprobe takes.
    pub fn code_offset(&self, vaddr: u64) -> Result<u64> {
        let seg = self.segments.iter().find(|s| s.vaddr <= vaddr && vaddr < s.vaddr + s.file_size);
        let Some(seg) = seg else {
            return Err(user(format!(
                "address {vaddr:#x} is in no loaded part of {}; the symbol table is wrong",
                self.path.display()
            )));
        };
        if !seg.executable {
            return Err(user(format!(
                "address {vaddr:#x} of {} is not in executable code (a data symbol typed as a function?); \
                 pick a real function",
                self.path.display()
            )));
        }
        Ok(vaddr - seg.vaddr + seg.file_offset)
    }

    /// The virtual address of a file offset in executable code (a return address found in a
    /// mapping of this file), if it is in one.
    pub fn code_vaddr(&self, file_offset: u64) -> Option<u64> {
        let seg = self
            .segments
            .iter()
            .find(|s| s.executable && s.file_offset <= file_offset && file_offset < s.file_offset + s.file_size)?;
        Some(file_offset - seg.file_offset + seg.vaddr)
    }

    /// Whether the file runs at the addresses it was linked at (not position independent):
    /// its lowest load address is not 0, as `ET_EXEC` files' are (Go's default, `-no-pie`).
    pub fn loads_at_link_addresses(&self) -> bool {
        self.segments.iter().map(|s| s.vaddr).min().is_some_and(|lowest| lowest > 0)
    }

    /// The machine code of a function.
    pub fn code(&self, f: &Function) -> Result<Cow<'_, [u8]>> {
        if f.size == 0 {
            return Err(user(format!(
                "{} has size 0 in the symbol table, so probe cannot find its instructions; \
                 trace a function with a known size",
                f.name
            )));
        }
        let start = self.code_offset(f.addr)?;
        let end = self.code_offset(f.addr + f.size - 1)? + 1;
        self.contents.read(start, end - start).ok_or_else(|| {
            user(format!("{} extends past the end of {} (truncated file?)", f.name, self.path.display()))
        })
    }
}

/// Runs `$f` on the file's headers, parsed again (they are not kept): from memory, or through
/// a read cache that reads only what `$f` asks for. A macro, so `$f` is typed once per reader.
macro_rules! on_headers {
    ($binary:expr, $tables:expr, $parsed:ident => $body:expr) => {
        match &$binary.contents {
            Contents::Memory(data) => {
                let $parsed = &object::File::parse(&data[..]).ok()?;
                $body
            }
            Contents::File(file, _) => {
                let cache = object::ReadCache::new(file);
                let tables = string_tables(&cache, $tables);
                let $parsed = &object::File::parse(OnDemand::new(&cache, &tables)).ok()?;
                $body
            }
        }
    };
}

impl Binary {
    /// A section's address and where its bytes are in the file (none for bss).
    fn section_place(&self, name: &str) -> Option<(u64, Option<(u64, u64)>)> {
        on_headers!(self, Tables::SectionNames, parsed => {
            let section = parsed.section_by_name(name)?;
            Some((section.address(), section.file_range()))
        })
    }

    /// A section's address and bytes, read now (`.gopclntab`, `.noptrdata`); `None` when the
    /// file has no such section.
    pub fn section(&self, name: &str) -> Option<(u64, Cow<'_, [u8]>)> {
        let (address, (offset, size)) = match self.section_place(name)? {
            (address, Some(range)) => (address, range),
            (_, None) => return None,
        };
        Some((address, self.contents.read(offset, size)?))
    }

    /// A section's address, reading none of it.
    pub fn section_address(&self, name: &str) -> Option<u64> {
        self.section_place(name).map(|(address, _)| address)
    }

    /// The address range of the section holding `addr`.
    pub fn section_around(&self, addr: u64) -> Option<std::ops::Range<u64>> {
        on_headers!(self, Tables::SectionNames, parsed => {
            parsed.sections().map(|s| s.address()..s.address() + s.size()).find(|r| r.start != 0 && r.contains(&addr))
        })
    }

    /// The address of a symbol of `.symtab` (any kind: `go:func.*` is data).
    pub fn symbol_address(&self, name: &str) -> Option<u64> {
        on_headers!(self, Tables::All, parsed => parsed.symbols().find(|s| s.name() == Ok(name)).map(|s| s.address()))
    }

    /// `len` bytes at a virtual address of a load segment (code or data), if the file holds
    /// them (not bss).
    pub fn read_vaddr(&self, vaddr: u64, len: u64) -> Option<Cow<'_, [u8]>> {
        let seg = self.segments.iter().find(|s| s.vaddr <= vaddr && vaddr < s.vaddr + s.file_size)?;
        if vaddr.checked_add(len)? > seg.vaddr + seg.file_size {
            return None;
        }
        self.contents.read(vaddr - seg.vaddr + seg.file_offset, len)
    }

    /// The bytes a function's entry probe is chosen from: its code, or for a symbol of size 0
    /// (hand-written assembly without `.size`) the first bytes at its address, enough to
    /// decode a few instructions.
    pub fn entry_code(&self, f: &Function) -> Result<Cow<'_, [u8]>> {
        if f.size > 0 {
            return self.code(f);
        }
        const WINDOW: u64 = 32;
        let start = self.code_offset(f.addr)?;
        let seg = self.segments.iter().find(|s| s.vaddr <= f.addr && f.addr < s.vaddr + s.file_size);
        let seg_end = seg.map_or(start + 1, |s| s.file_offset + s.file_size);
        let end = (start + WINDOW).min(seg_end);
        self.contents.read(start, end.saturating_sub(start)).ok_or_else(|| {
            user(format!("{} extends past the end of {} (truncated file?)", f.name, self.path.display()))
        })
    }
}

/// Headers, load segments and functions of an ELF file of `file_len` bytes, from memory or read
/// on demand; `path` names it in messages, `through` is where it was opened (its directory
/// holds a separate debug file).
fn parse_elf<'d, R: ReadRef<'d>>(path: &Path, through: &Path, data: R, file_len: u64) -> Result<Parsed> {
    if data.read_bytes_at(0, 4).ok() != Some(b"\x7fELF".as_slice()) {
        return Err(user(format!(
            "{}: not an ELF file; give the path of a compiled program or library",
            path.display()
        )));
    }
    let corrupt = |e: &dyn std::fmt::Display| {
        user(format!("{}: ELF file is corrupt or truncated ({e}); rebuild it or pick another file", path.display()))
    };
    let file = object::File::parse(data).map_err(|e| corrupt(&e))?;
    if file.architecture() != crate::arch::ELF_ARCHITECTURE {
        return Err(user(format!(
            "{}: {:?} binary; this probe traces {} programs only; use a probe built for its architecture \
             (`cargo xtask build` makes static x86-64 and arm64 ones)",
            path.display(),
            file.architecture(),
            crate::arch::NAME
        )));
    }
    ensure_complete(&file, file_len).map_err(|e| corrupt(&e))?;
    let segments: Vec<LoadSegment> = file
        .segments()
        .map(|s| {
            let (file_offset, file_size) = s.file_range();
            let executable = matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & PF_X != 0);
            LoadSegment { vaddr: s.address(), file_offset, file_size, executable }
        })
        .collect();
    let read_vaddr = |addr: u64, len: usize| -> Option<&'d [u8]> {
        let seg = segments.iter().find(|s| s.vaddr <= addr && addr < s.vaddr + s.file_size)?;
        data.read_bytes_at(addr - seg.vaddr + seg.file_offset, len as u64).ok()
    };
    let runtime = if go::is_go(&file) { Runtime::Go(go::build_info(&file, read_vaddr)) } else { Runtime::Native };

    let mut functions = Vec::new();
    let mut debug_file = None;
    let symbols = if file.section_by_name(".symtab").is_some() {
        functions.extend(text_symbols(file.symbols()));
        SymbolSource::Symtab
    } else if let Some((debug_path, debug_functions)) = debug_file_functions(through, &file) {
        functions.extend(debug_functions);
        debug_file = Some(debug_path);
        SymbolSource::DebugFile
    } else if let Some(section) = file.section_by_name(".gopclntab") {
        let table = section.data().map_err(|e| corrupt(&e))?;
        let text = file.section_by_name(".text").map(|s| s.address()).unwrap_or(0);
        let go_functions = pclntab::functions(table, text).map_err(|e| corrupt(&e))?;
        // The size runs to the next function (INT3 padding included): padding and a
        // function's own trailing INT3s look alike, and both decode cleanly.
        functions.extend(go_functions.into_iter().map(|f| Function {
            size: f.end - f.entry,
            name: f.name,
            addr: f.entry,
        }));
        SymbolSource::GoPclntab
    } else {
        SymbolSource::DynsymOnly
    };
    functions.extend(text_symbols(file.dynamic_symbols()));
    let mut imports: Vec<String> = file
        .dynamic_symbols()
        .filter(|s| s.is_undefined() && s.kind() == SymbolKind::Text)
        .filter_map(|s| s.name().ok().map(str::to_string))
        .collect();
    imports.sort();
    imports.dedup();
    let dynamic = Dynamic::of_sections(&file);
    functions.sort_by(|a, b| (&a.name, a.addr).cmp(&(&b.name, b.addr)));
    functions.dedup_by(|a, b| a.name == b.name && a.addr == b.addr);
    Ok(Parsed { runtime, symbols, debug_file, dynamic, imports, functions, segments })
}

/// Fails when a section or load segment claims bytes past the end of the file: a truncated
/// file would otherwise lose its symbol table (at the end) quietly and find no function.
fn ensure_complete<'d, R: ReadRef<'d>>(file: &object::File<'d, R>, file_len: u64) -> Result<(), String> {
    let past_end = |range: Option<(u64, u64)>| range.is_some_and(|(off, size)| off.saturating_add(size) > file_len);
    if let Some(s) = file.sections().find(|s| past_end(s.file_range())) {
        let (off, size) = s.file_range().unwrap_or_default();
        return Err(format!(
            "section {} ends at byte {}, past the end of the file ({file_len} bytes)",
            s.name().unwrap_or("?"),
            off.saturating_add(size)
        ));
    }
    if let Some(s) = file.segments().find(|s| past_end(Some(s.file_range()))) {
        let (off, size) = s.file_range();
        return Err(format!(
            "a load segment ends at byte {}, past the end of the file ({file_len} bytes)",
            off.saturating_add(size)
        ));
    }
    Ok(())
}

/// The dynamic section's entries the loader uses to find a file's libraries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// DT_NEEDED, in order: the libraries the file asks for.
    pub needed: Vec<String>,
    /// DT_RUNPATH directories (`$ORIGIN` unexpanded).
    pub runpath: Vec<String>,
    /// DT_RPATH directories (searched before LD_LIBRARY_PATH, and only without DT_RUNPATH).
    pub rpath: Vec<String>,
}

impl Dynamic {
    /// The same from a parsed file's `.dynamic` and `.dynstr` sections (64-bit little-endian
    /// entries: a tag and a value, 8 bytes each), so a file read on demand needs only those.
    pub fn of_sections<'d, R: ReadRef<'d>>(file: &object::File<'d, R>) -> Dynamic {
        let mut out = Dynamic::default();
        let section = |name: &str| file.section_by_name(name).and_then(|s| s.data().ok());
        let (Some(entries), Some(strings)) = (section(".dynamic"), section(".dynstr")) else { return out };
        let string = |offset: u64| -> Option<String> {
            let rest = strings.get(usize::try_from(offset).ok()?..)?;
            let end = rest.iter().position(|&b| b == 0)?;
            Some(String::from_utf8_lossy(&rest[..end]).into_owned())
        };
        for entry in entries.chunks_exact(16) {
            let tag = u64::from_le_bytes(entry[..8].try_into().unwrap_or_default());
            let value = u64::from_le_bytes(entry[8..].try_into().unwrap_or_default());
            if tag == object::elf::DT_NULL as u64 {
                break;
            }
            let Some(text) = string(value) else { continue };
            match tag as u32 {
                object::elf::DT_NEEDED => out.needed.push(text),
                object::elf::DT_RUNPATH => out.runpath.extend(text.split(':').map(str::to_string)),
                object::elf::DT_RPATH => out.rpath.extend(text.split(':').map(str::to_string)),
                _ => {}
            }
        }
        out
    }

    /// Reads the entries of a 64-bit little-endian ELF file; empty when it has none or they
    /// cannot be read (a static program).
    pub fn read(data: &[u8]) -> Dynamic {
        use object::read::elf::{Dyn, FileHeader};
        let mut out = Dynamic::default();
        let Ok(header) = object::elf::FileHeader64::<object::Endianness>::parse(data) else { return out };
        let Ok(endian) = header.endian() else { return out };
        let Ok(sections) = header.sections(endian, data) else { return out };
        let Ok(Some((entries, link))) = sections.dynamic(endian, data) else { return out };
        let Ok(strings) = sections.strings(endian, data, link) else { return out };
        for entry in entries {
            let Some(tag) = entry.tag32(endian) else { continue };
            let Ok(text) = entry.string(endian, strings) else { continue };
            let text = String::from_utf8_lossy(text).into_owned();
            match tag {
                object::elf::DT_NEEDED => out.needed.push(text),
                object::elf::DT_RUNPATH => out.runpath.extend(text.split(':').map(str::to_string)),
                object::elf::DT_RPATH => out.rpath.extend(text.split(':').map(str::to_string)),
                _ => {}
            }
        }
        out
    }
}

/// Defined text symbols, demangled. Size-0 symbols are kept (their entry is still usable).
fn text_symbols<'d, S: ObjectSymbol<'d>>(symbols: impl Iterator<Item = S>) -> Vec<Function> {
    symbols
        .filter(|s| s.kind() == SymbolKind::Text && s.is_definition() && s.address() != 0)
        .filter_map(|s| Some(Function { name: demangle(s.name().ok()?), addr: s.address(), size: s.size() }))
        .collect()
}

/// Rust (legacy and v0) and C++ names in the form people write them; others unchanged.
pub fn demangle(raw: &str) -> String {
    if let Ok(d) = rustc_demangle::try_demangle(raw) {
        return format!("{d:#}"); // without the hash suffix
    }
    if raw.starts_with("_Z") {
        if let Ok(sym) = cpp_demangle::Symbol::new(raw) {
            if let Ok(d) = sym.demangle(&cpp_demangle::DemangleOptions::default()) {
                return d;
            }
        }
    }
    raw.to_string()
}

/// Symbols of the separate debug file of a stripped binary: `.gnu_debuglink` next to the file,
/// in its `.debug/` and under /usr/lib/debug, then /usr/lib/debug/.build-id/xx/rest.debug.
fn debug_file_functions<'d, R: ReadRef<'d>>(
    path: &Path,
    file: &object::File<'d, R>,
) -> Option<(PathBuf, Vec<Function>)> {
    // Through /proc/PID/exe the link's target ends with " (deleted)" when the file is gone:
    // its directory is still the one to look in.
    let dir = std::fs::read_link(path)
        .ok()
        .filter(|_| path.starts_with("/proc"))
        .or_else(|| path.canonicalize().ok())?
        .parent()?
        .to_path_buf();
    let mut candidates = Vec::new();
    if let Ok(Some((name, _crc))) = file.gnu_debuglink() {
        let name = String::from_utf8_lossy(name).into_owned();
        candidates.push(dir.join(&name));
        candidates.push(dir.join(".debug").join(&name));
        candidates.push(Path::new("/usr/lib/debug").join(dir.strip_prefix("/").ok()?).join(&name));
    }
    if let Ok(Some(id)) = file.build_id() {
        if id.len() >= 2 {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            candidates.push(PathBuf::from(format!("/usr/lib/debug/.build-id/{}/{}.debug", &hex[..2], &hex[2..])));
        }
    }
    candidates.into_iter().find_map(|candidate| {
        let (file, _) = open_binary_file(&candidate).ok()?;
        let cache = object::ReadCache::new(&file);
        let tables = string_tables(&cache, Tables::All);
        let debug = object::File::parse(OnDemand::new(&cache, &tables)).ok()?;
        let functions = text_symbols(debug.symbols());
        (!functions.is_empty()).then_some((candidate, functions))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The file read on demand, string tables whole, names the same functions at the same
    /// addresses as the file parsed from memory: the test binary itself, thousands of symbols.
    #[test]
    fn on_demand_reading_finds_what_reading_whole_finds() {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let on_demand = Binary::open(&exe).unwrap();
        let whole = Binary::parse(&exe, std::fs::read(&exe).unwrap()).unwrap();
        assert!(on_demand.functions().len() > 1000, "{}", on_demand.functions().len());
        assert_eq!(on_demand.functions(), whole.functions());
        assert_eq!(on_demand.section_address(".text"), whole.section_address(".text"));
        assert_eq!(on_demand.dynamic, whole.dynamic);
    }

    /// A string table that claims more than the file holds is not read (nor allocated for):
    /// the parser then reports the damage.
    #[test]
    fn a_string_table_past_the_end_is_not_read() {
        use object::read::elf::{FileHeader, SectionHeader};
        let exe = std::fs::read(std::fs::read_link("/proc/self/exe").unwrap()).unwrap();
        let header = object::elf::FileHeader64::<object::Endianness>::parse(&exe[..]).unwrap();
        let endian = header.endian().unwrap();
        let sections = header.sections(endian, &exe[..]).unwrap();
        let (index, _) = sections
            .iter()
            .enumerate()
            .find(|(_, s)| s.sh_type(endian) == object::elf::SHT_STRTAB && s.sh_size(endian) > 4096)
            .expect("a string table");
        let mut damaged = exe.clone();
        let size_at = header.e_shoff(endian) as usize + index * 64 + 32; // Elf64_Shdr.sh_size
        let whole = string_tables(&exe[..], Tables::All).len();
        for claimed in [1u64 << 40, exe.len() as u64 - 1] {
            damaged[size_at..size_at + 8].copy_from_slice(&claimed.to_le_bytes());
            assert_eq!(string_tables(&damaged[..], Tables::All).len(), whole - 1, "{claimed} bytes claimed");
        }
    }

    /// A name is read up to its terminator, inside its table only; what is outside every table
    /// is read from the file as before.
    #[test]
    fn names_come_from_the_tables_read_whole() {
        let file: &[u8] = b"HEADab\0cd\0tl\0";
        let tables = [(4u64, &file[4..10])]; // "ab\0cd\0"
        let data = OnDemand::new(file, &tables);
        assert_eq!(data.read_bytes_at_until(4..13, 0), Ok(&b"ab"[..]));
        assert_eq!(data.read_bytes_at_until(7..13, 0), Ok(&b"cd"[..]));
        // No terminator inside the range: refused, as from a slice.
        assert_eq!(data.read_bytes_at_until(7..8, 0), Err(()));
        assert_eq!(data.read_bytes_at(5, 3), Ok(&b"b\0c"[..]));
        // Running past the table, or outside it: from the file itself.
        assert_eq!(data.read_bytes_at(8, 4), Ok(&b"d\0tl"[..]));
        assert_eq!(data.read_bytes_at_until(10..13, 0), Ok(&b"tl"[..]));
    }
}
