//! Functions' declared parameters and their types, from a file's DWARF (`.debug_info`, also
//! compressed: Go compresses its DWARF). Only what the calling conventions need is kept: each
//! parameter's name, type name and layout (kind, size, alignment, fields). Pointers are not
//! followed past their name, so recursive types end there.
mod fields;

pub use fields::{kind_label, walk_file, Field, FieldKind, Walk};

use super::elf::{open_binary_file, ReadError};
use anyhow::{bail, Context, Result};
use gimli::{AttributeValue, DwTag, EndianSlice, LittleEndian, UnitOffset};
use object::{Object, ObjectSection};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

/// A type as far as calling conventions care.
#[derive(Clone, Debug, PartialEq)]
pub struct Type {
    /// As written in the source where the DWARF says it (`string`, `[]int`, `char *`).
    pub name: String,
    /// Bytes; `None` for an incomplete type (a declaration).
    pub size: Option<u64>,
    pub align: u64,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Int {
        signed: bool,
    },
    Bool,
    /// Pointers, references, and Go's maps, channels and func values (one pointer word).
    Pointer,
    Float,
    Complex,
    /// Go string: pointer, length.
    GoString,
    /// Go slice: pointer, length, capacity.
    GoSlice,
    /// Go interface: type word, data word.
    GoInterface,
    /// Struct, class or union: fields at their offsets. `by_reference`: C++ passes it as a
    /// hidden pointer (not trivially copyable).
    Aggregate {
        fields: Vec<(u64, Type)>,
        by_reference: bool,
    },
    Array {
        len: u64,
        elem: Box<Type>,
    },
    Void,
    /// Anything else (a type probe does not lay out): never guessed at.
    Unknown,
}

/// A formal parameter as the DWARF declares it, in order.
#[derive(Clone, Debug)]
pub struct RawParam {
    pub name: Option<String>,
    pub ty: Type,
    /// Go marks results as "variable parameters"; they follow the inputs.
    pub result: bool,
    /// The DWARF register numbers its location names at the function's entry, in order
    /// (`None` when the location is not a list of registers there, e.g. the stack).
    pub entry_registers: Option<Vec<u16>>,
}

/// One function's DWARF: its parameters and (C) return type.
#[derive(Clone, Debug)]
pub struct RawFunction {
    pub params: Vec<RawParam>,
    /// C, C++, Rust: the return type (`Void` when none). Go: `None` (results are params).
    pub returns: Option<Type>,
    /// Compiled from Rust, whose own calling convention passes aggregates differently.
    pub rust: bool,
    /// A parameter's entry location is in a location list that was not read
    /// (`LocationLists::Skip`): its `entry_registers` is `None` for that reason.
    pub lists_unread: bool,
}

/// Whether to read parameters' location lists (`.debug_loc`, `.debug_loclists`). They are the
/// largest debug section of a Go program (3.0 of the bench's 6.3 MiB decompressed) and are
/// needed only where the DWARF leaves parameters out and its own entry locations are all
/// there is to go by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocationLists {
    Read,
    Skip,
}

/// Decompressed debug sections are refused past this: no real program's comes near it.
const MAX_SECTION: u64 = 1 << 30;
/// Struct nesting and field counts probe lays out; deeper or wider types are `Unknown`.
const MAX_DEPTH: u32 = 8;
const MAX_FIELDS: usize = 64;

/// Go's `DW_AT_go_kind` (reflect.Kind values).
const DW_AT_GO_KIND: gimli::DwAt = gimli::DwAt(0x2900);
const GO_KIND_INTERFACE: u64 = 20;
const GO_KIND_SLICE: u64 = 23;
const GO_KIND_STRING: u64 = 24;
/// `DW_CC_pass_by_reference` on a C++ class: passed as a hidden pointer.
const DW_CC_PASS_BY_REFERENCE: u64 = 4;

type Slice<'d> = EndianSlice<'d, LittleEndian>;

/// Whether the file has DWARF debugging information at all.
pub fn has_debug_info(path: &Path) -> bool {
    let Ok((file, _)) = open_binary_file(path) else { return false };
    let cache = object::ReadCache::new(&file);
    let tables = crate::resolve::elf::string_tables(&cache, crate::resolve::elf::Tables::SectionNames);
    let Ok(parsed) = object::File::parse(crate::resolve::elf::OnDemand::new(&cache, &tables)) else { return false };
    parsed.section_by_name(".debug_info").or_else(|| parsed.section_by_name(".zdebug_info")).is_some()
}

/// The declared parameters of the functions whose entry address is `wanted` (or of every
/// function), by entry address. `Ok(None)`: the file has no DWARF.
pub fn functions(path: &Path, wanted: Option<u64>, lists: LocationLists) -> Result<Option<HashMap<u64, RawFunction>>> {
    let Some(sections) = load_sections(path, lists)? else { return Ok(None) };
    let dwarf = gimli::Dwarf::load(|id| -> Result<Slice<'_>, gimli::Error> {
        Ok(EndianSlice::new(sections.get(id.name()).map_or(&[][..], |v| &v[..]), LittleEndian))
    })?;
    let reader = Reader::new(&dwarf, lists)?;
    let mut out = HashMap::new();
    let mut types = HashMap::new();
    for unit in 0..reader.units.len() {
        let mut cursor = reader.units[unit].entries();
        let mut found = Vec::new();
        while let Some((_, entry)) = cursor.next_dfs()? {
            if entry.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            let Some(AttributeValue::Addr(..) | AttributeValue::DebugAddrIndex(..)) =
                entry.attr_value(gimli::DW_AT_low_pc)?
            else {
                continue;
            };
            let die = reader.die_of(unit, entry)?;
            let Some(addr) = die.low_pc.filter(|&a| a != 0 && wanted.is_none_or(|w| w == a)) else { continue };
            found.push((addr, die));
        }
        let language = reader.language(unit);
        for (addr, die) in found {
            let mut function = reader.function(&die, language == Some(gimli::DW_LANG_Go), &mut types)?;
            function.rust = language == Some(gimli::DW_LANG_Rust);
            out.entry(addr).or_insert(function);
        }
        if wanted.is_some_and(|w| out.contains_key(&w)) {
            break;
        }
    }
    Ok(Some(out))
}

/// The debug sections probe reads, decompressed, by their standard names. Not the address
/// ranges (`.debug_ranges`, `.debug_rnglists`: functions are found by their entry), nor the
/// location lists unless asked. (`.debug_line` stays: gimli reads each unit's line program
/// header.)
fn load_sections(path: &Path, lists: LocationLists) -> Result<Option<Arc<Sections>>> {
    let (file, _) = open_binary_file(path).map_err(|e| match e {
        ReadError::Io(e) => anyhow::anyhow!("{}: {e}", path.display()),
        ReadError::NotRegular(what) => anyhow::anyhow!("{}: {what}", path.display()),
        ReadError::TooLarge(size) => anyhow::anyhow!("{}: {size} bytes, too large", path.display()),
    })?;
    let read = FileRead::of(&file, lists);
    let mut last = LAST_READ.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, sections)) = last.as_ref().filter(|(done, _)| done.covers(read.as_ref())) {
        return Ok(sections.clone());
    }
    let sections = read_sections(path, &file, lists)?.map(Arc::new);
    *last = read.map(|read| (read, sections.clone()));
    Ok(sections)
}

/// A file's debug sections, decompressed, by their standard names.
type Sections = HashMap<&'static str, Vec<u8>>;

/// The sections read last, and from which file: a command reads the same program's DWARF for
/// each `--arg`, again for `--slower-than`'s and for where a goroutine keeps its id, and
/// inflating a Go program's takes 5-9 ms each time. Let go by `forget_sections` once the plan
/// is made, so a long trace does not hold them.
static LAST_READ: std::sync::Mutex<Option<(FileRead, Option<Arc<Sections>>)>> = std::sync::Mutex::new(None);

/// Which file, as it was when read (a file replaced or rewritten since reads anew), and with
/// or without the location lists.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileRead {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    lists: LocationLists,
}

impl FileRead {
    fn of(file: &std::fs::File, lists: LocationLists) -> Option<FileRead> {
        use std::os::unix::fs::MetadataExt;
        let meta = file.metadata().ok()?;
        let modified_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
        Some(FileRead { device: meta.dev(), inode: meta.ino(), size: meta.size(), modified_ns, lists })
    }

    /// Whether sections read so answer `read` (those with the location lists hold the others).
    fn covers(&self, read: Option<&FileRead>) -> bool {
        let Some(read) = read else { return false };
        let same_file = FileRead { lists: self.lists, ..*read } == *self;
        same_file && (self.lists == LocationLists::Read || read.lists == LocationLists::Skip)
    }
}

/// Lets go of the sections kept since the last read (see `LAST_READ`).
pub fn forget_sections() {
    *LAST_READ.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

fn read_sections(path: &Path, file: &std::fs::File, lists: LocationLists) -> Result<Option<Sections>> {
    let cache = object::ReadCache::new(file);
    let tables = crate::resolve::elf::string_tables(&cache, crate::resolve::elf::Tables::SectionNames);
    let parsed = object::File::parse(crate::resolve::elf::OnDemand::new(&cache, &tables))
        .with_context(|| format!("{}: not an ELF file", path.display()))?;
    let mut compressed = Vec::new();
    for name in [
        ".debug_info",
        ".debug_abbrev",
        ".debug_str",
        ".debug_line",
        ".debug_line_str",
        ".debug_str_offsets",
        ".debug_addr",
        ".debug_loc",
        ".debug_loclists",
    ] {
        if lists == LocationLists::Skip && name.starts_with(".debug_loc") {
            continue;
        }
        let section =
            parsed.section_by_name(name).or_else(|| parsed.section_by_name(&name.replacen(".debug_", ".zdebug_", 1)));
        let Some(section) = section else { continue };
        compressed.push((name, section.compressed_data().with_context(|| format!("{}: {name}", path.display()))?));
    }
    // Inflated side by side: a Go program's DWARF is compressed, its units' line programs
    // (read for their headers) a third of it.
    let inflated: Vec<(&'static str, Result<Vec<u8>>)> = std::thread::scope(|scope| {
        let threads: Vec<_> =
            compressed.into_iter().map(|(name, data)| (name, scope.spawn(move || inflate(data)))).collect();
        threads
            .into_iter()
            .map(|(name, t)| (name, t.join().unwrap_or_else(|_| Err(anyhow::anyhow!("inflating panicked")))))
            .collect()
    });
    let mut out = HashMap::new();
    for (name, bytes) in inflated {
        out.insert(name, bytes.with_context(|| format!("{}: {name}", path.display()))?);
    }
    Ok(out.contains_key(".debug_info").then_some(out))
}

/// A section's bytes, inflated when zlib-compressed (SHF_COMPRESSED or `.zdebug_`), bounded.
pub(super) fn section_bytes<'d, R: object::ReadRef<'d>>(section: &object::Section<'d, '_, R>) -> Result<Vec<u8>> {
    inflate(section.compressed_data()?)
}

/// A section's bytes as stored, inflated when zlib-compressed, bounded.
fn inflate(compressed: object::CompressedData<'_>) -> Result<Vec<u8>> {
    match compressed.format {
        object::CompressionFormat::None => Ok(compressed.data.to_vec()),
        object::CompressionFormat::Zlib => {
            let size = compressed.uncompressed_size;
            if size > MAX_SECTION {
                bail!("claims {size} bytes uncompressed, more than probe reads");
            }
            let mut out = Vec::with_capacity(size as usize);
            flate2::read::ZlibDecoder::new(compressed.data).take(size).read_to_end(&mut out)?;
            Ok(out)
        }
        other => bail!("compressed as {other:?}, which probe cannot read"),
    }
}

/// The registers of a location expression made only of register operations, each optionally
/// followed by a piece (`DW_OP_reg3 DW_OP_piece 8 DW_OP_reg2 DW_OP_piece 8`); `None` otherwise.
fn registers_of(mut bytes: &[u8]) -> Option<Vec<u16>> {
    let mut out = Vec::new();
    let mut pending = None;
    while let Some((&op, rest)) = bytes.split_first() {
        bytes = rest;
        match op {
            0x50..=0x6f => pending = Some(u16::from(op - 0x50)), // DW_OP_reg0..31
            0x90 | 0x93 => {
                // DW_OP_regx (a register number) or DW_OP_piece (a size), as ULEB128.
                let mut reader = EndianSlice::new(bytes, LittleEndian);
                let n = gimli::leb128::read::unsigned(&mut reader).ok()?;
                bytes = reader.slice();
                if op == 0x90 {
                    pending = Some(u16::try_from(n).ok()?);
                } else {
                    // A piece with no location before it: that part is not known here.
                    out.push(pending.take().unwrap_or(UNKNOWN_REGISTER));
                }
            }
            _ => return None,
        }
    }
    out.extend(pending);
    (!out.is_empty()).then_some(out)
}

/// In `RawParam::entry_registers`: a piece whose location the expression does not give.
pub const UNKNOWN_REGISTER: u16 = u16::MAX;

/// What probe uses of one DIE, read once so no borrow of the unit outlives it.
#[derive(Clone, Debug, Default)]
struct Die {
    tag: Option<DwTag>,
    unit: usize,
    offset: Option<UnitOffset>,
    name: Option<String>,
    byte_size: Option<u64>,
    encoding: Option<u8>,
    ty: Option<(usize, UnitOffset)>,
    origin: Option<(usize, UnitOffset)>,
    go_kind: Option<u64>,
    count: Option<u64>,
    upper_bound: Option<u64>,
    member_offset: Option<u64>,
    by_reference: bool,
    result: bool,
    low_pc: Option<u64>,
    location_list: Option<gimli::LocationListsOffset>,
    location_expression: Option<Vec<u8>>,
}

struct Reader<'a, 'd> {
    dwarf: &'a gimli::Dwarf<Slice<'d>>,
    units: Vec<gimli::Unit<Slice<'d>>>,
    /// Each unit's offset in `.debug_info`, ascending (to resolve cross-unit references).
    starts: Vec<usize>,
    lists: LocationLists,
}

type Types = HashMap<(usize, UnitOffset), Type>;

impl<'a, 'd> Reader<'a, 'd> {
    fn new(dwarf: &'a gimli::Dwarf<Slice<'d>>, lists: LocationLists) -> Result<Self> {
        let mut units = Vec::new();
        let mut starts = Vec::new();
        let mut headers = dwarf.units();
        while let Some(header) = headers.next()? {
            let Some(start) = header.offset().as_debug_info_offset() else { continue };
            starts.push(start.0);
            units.push(dwarf.unit(header)?);
        }
        Ok(Reader { dwarf, units, starts, lists })
    }

    /// The unit and offset a reference attribute points to.
    fn target(&self, unit: usize, value: AttributeValue<Slice<'d>>) -> Option<(usize, UnitOffset)> {
        match value {
            AttributeValue::UnitRef(offset) => Some((unit, offset)),
            AttributeValue::DebugInfoRef(offset) => {
                let i = self.starts.partition_point(|&s| s <= offset.0).checked_sub(1)?;
                Some((i, offset.to_unit_offset(&self.units[i].header)?))
            }
            _ => None,
        }
    }

    fn die_of(&self, unit: usize, entry: &gimli::DebuggingInformationEntry<Slice<'d>>) -> Result<Die> {
        let u = &self.units[unit];
        let mut die = Die { tag: Some(entry.tag()), unit, offset: Some(entry.offset()), ..Die::default() };
        let mut attrs = entry.attrs();
        while let Some(attr) = attrs.next()? {
            let value = attr.value();
            match attr.name() {
                gimli::DW_AT_name => die.name = Some(self.dwarf.attr_string(u, value)?.to_string_lossy().into_owned()),
                gimli::DW_AT_byte_size => die.byte_size = attr.udata_value(),
                gimli::DW_AT_encoding => {
                    if let AttributeValue::Encoding(e) = value {
                        die.encoding = Some(e.0)
                    }
                }
                gimli::DW_AT_type => die.ty = self.target(unit, value),
                gimli::DW_AT_abstract_origin => die.origin = self.target(unit, value),
                gimli::DW_AT_specification if die.origin.is_none() => die.origin = self.target(unit, value),
                DW_AT_GO_KIND => die.go_kind = attr.udata_value(),
                gimli::DW_AT_count => die.count = attr.udata_value(),
                gimli::DW_AT_upper_bound => die.upper_bound = attr.udata_value(),
                gimli::DW_AT_data_member_location => die.member_offset = attr.udata_value(),
                gimli::DW_AT_calling_convention => {
                    die.by_reference = attr.udata_value() == Some(DW_CC_PASS_BY_REFERENCE)
                }
                gimli::DW_AT_variable_parameter => die.result = matches!(value, AttributeValue::Flag(true)),
                gimli::DW_AT_low_pc => die.low_pc = self.dwarf.attr_address(u, value)?,
                gimli::DW_AT_location => match value {
                    AttributeValue::LocationListsRef(offset) => die.location_list = Some(offset),
                    AttributeValue::Exprloc(e) => die.location_expression = Some(e.0.to_vec()),
                    _ => {}
                },
                _ => {}
            }
        }
        Ok(die)
    }

    fn die_at(&self, (unit, offset): (usize, UnitOffset)) -> Result<Die> {
        let entry = self.units[unit].entry(offset)?;
        self.die_of(unit, &entry)
    }

    fn children(&self, die: &Die) -> Result<Vec<Die>> {
        let Some(offset) = die.offset else { return Ok(Vec::new()) };
        let mut tree = self.units[die.unit].entries_tree(Some(offset))?;
        let mut children = tree.root()?.children();
        let mut out = Vec::new();
        while let Some(child) = children.next()? {
            out.push(self.die_of(die.unit, child.entry())?);
        }
        Ok(out)
    }

    /// A subprogram's parameters (names and types from its abstract origin or declaration
    /// when the DIE itself omits them).
    fn function(&self, die: &Die, go: bool, types: &mut Types) -> Result<RawFunction> {
        let (mut params, mut lists_unread) = (Vec::new(), false);
        for child in self.children(die)? {
            if child.tag != Some(gimli::DW_TAG_formal_parameter) {
                continue;
            }
            let origin = child.origin.map(|o| self.die_at(o)).transpose()?;
            let name = child.name.clone().or_else(|| origin.as_ref().and_then(|o| o.name.clone()));
            let ty_ref = child.ty.or_else(|| origin.as_ref().and_then(|o| o.ty));
            let ty = self.type_of(ty_ref, types, 0)?;
            let unread = child.location_list.is_some() && self.lists == LocationLists::Skip;
            lists_unread |= unread;
            let entry_registers = if unread { None } else { self.registers_at(&child, die.low_pc)? };
            params.push(RawParam {
                name,
                ty,
                result: child.result || origin.is_some_and(|o| o.result),
                entry_registers,
            });
        }
        let returns = if go {
            None
        } else {
            let declared = match die.ty {
                Some(t) => Some(t),
                None => die.origin.map(|o| self.die_at(o)).transpose()?.and_then(|o| o.ty),
            };
            Some(self.type_of(declared, types, 0)?)
        };
        Ok(RawFunction { params, returns, rust: false, lists_unread })
    }

    /// The registers a parameter's location names at `pc` (its function's entry).
    fn registers_at(&self, param: &Die, pc: Option<u64>) -> Result<Option<Vec<u16>>> {
        let Some(pc) = pc else { return Ok(None) };
        if let Some(bytes) = &param.location_expression {
            return Ok(registers_of(bytes));
        }
        let Some(offset) = param.location_list else { return Ok(None) };
        let mut entries = self.dwarf.locations(&self.units[param.unit], offset)?;
        while let Some(entry) = entries.next()? {
            if entry.range.begin <= pc && pc < entry.range.end {
                return Ok(registers_of(entry.data.0.slice()));
            }
        }
        Ok(None)
    }

    /// A unit's source language (Go's results are parameters; Rust passes aggregates its own way).
    fn language(&self, unit: usize) -> Option<gimli::DwLang> {
        let mut cursor = self.units[unit].entries();
        let Ok(Some((_, root))) = cursor.next_dfs() else { return None };
        match root.attr_value(gimli::DW_AT_language) {
            Ok(Some(AttributeValue::Language(language))) => Some(language),
            _ => None,
        }
    }

    fn type_of(&self, at: Option<(usize, UnitOffset)>, types: &mut Types, depth: u32) -> Result<Type> {
        let Some(at) = at else {
            return Ok(Type { name: "void".into(), size: Some(0), align: 1, kind: Kind::Void });
        };
        if let Some(t) = types.get(&at) {
            return Ok(t.clone());
        }
        let t = self.resolve(at, types, depth)?;
        types.insert(at, t.clone());
        Ok(t)
    }

    fn unknown(name: String) -> Type {
        Type { name, size: None, align: 1, kind: Kind::Unknown }
    }

    fn resolve(&self, at: (usize, UnitOffset), types: &mut Types, depth: u32) -> Result<Type> {
        let die = self.die_at(at)?;
        if depth > MAX_DEPTH {
            return Ok(Self::unknown(die.name.unwrap_or_else(|| "?".into())));
        }
        let name = die.name.clone();
        let display = name.clone().unwrap_or_else(|| "?".into());
        let scalar =
            |kind: Kind, size: u64| Type { name: display.clone(), size: Some(size), align: size.clamp(1, 8), kind };
        let t = match die.tag {
            Some(gimli::DW_TAG_base_type) => {
                let size = die.byte_size.unwrap_or(0);
                let kind = match gimli::DwAte(die.encoding.unwrap_or(0)) {
                    gimli::DW_ATE_signed | gimli::DW_ATE_signed_char => Kind::Int { signed: true },
                    gimli::DW_ATE_unsigned | gimli::DW_ATE_unsigned_char | gimli::DW_ATE_UTF => {
                        Kind::Int { signed: false }
                    }
                    gimli::DW_ATE_boolean => Kind::Bool,
                    gimli::DW_ATE_float => Kind::Float,
                    gimli::DW_ATE_complex_float => {
                        return Ok(Type { align: (size / 2).clamp(1, 8), ..scalar(Kind::Complex, size) })
                    }
                    _ => Kind::Unknown,
                };
                scalar(kind, size)
            }
            Some(
                gimli::DW_TAG_pointer_type
                | gimli::DW_TAG_reference_type
                | gimli::DW_TAG_rvalue_reference_type
                | gimli::DW_TAG_subroutine_type,
            ) => {
                let name = match name {
                    Some(n) => n,
                    None if die.tag == Some(gimli::DW_TAG_subroutine_type) => "function".into(),
                    None => {
                        let pointee = self.type_name(die.ty, 0)?;
                        let sigil = if die.tag == Some(gimli::DW_TAG_pointer_type) { "*" } else { "&" };
                        format!("{pointee} {sigil}").replace("* *", "**")
                    }
                };
                Type { name, size: Some(8), align: 8, kind: Kind::Pointer }
            }
            Some(gimli::DW_TAG_typedef | gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type) => {
                let inner = self.type_of(die.ty, types, depth + 1)?;
                let kind = match die.go_kind {
                    Some(GO_KIND_INTERFACE) => Kind::GoInterface,
                    _ => inner.kind,
                };
                let name = match (die.tag, name) {
                    (Some(gimli::DW_TAG_typedef), Some(n)) => n,
                    (Some(gimli::DW_TAG_const_type), _) => format!("const {}", inner.name),
                    (Some(gimli::DW_TAG_volatile_type), _) => format!("volatile {}", inner.name),
                    (_, _) => inner.name,
                };
                Type { name, kind, ..inner }
            }
            Some(gimli::DW_TAG_enumeration_type) => {
                let signed = self.type_of(die.ty, types, depth + 1)?.kind == Kind::Int { signed: true };
                let size = die.byte_size.unwrap_or(4);
                Type {
                    name: format!("enum {}", name.unwrap_or_default()).trim().into(),
                    ..scalar(Kind::Int { signed }, size)
                }
            }
            Some(gimli::DW_TAG_structure_type | gimli::DW_TAG_class_type | gimli::DW_TAG_union_type) => {
                self.aggregate(&die, types, depth)?
            }
            Some(gimli::DW_TAG_array_type) => {
                let elem = self.type_of(die.ty, types, depth + 1)?;
                let len = self
                    .children(&die)?
                    .iter()
                    .find(|c| c.tag == Some(gimli::DW_TAG_subrange_type))
                    .and_then(|r| r.count.or(r.upper_bound.map(|u| u.wrapping_add(1))));
                let Some(len) = len else { return Ok(Self::unknown(name.unwrap_or_else(|| "array".into()))) };
                let size = die.byte_size.or(elem.size.and_then(|s| s.checked_mul(len)));
                let name = name.unwrap_or_else(|| format!("{}[{len}]", elem.name));
                Type { name, size, align: elem.align, kind: Kind::Array { len, elem: Box::new(elem) } }
            }
            Some(gimli::DW_TAG_unspecified_type) => Self::unknown(name.unwrap_or_else(|| "?".into())),
            _ => Self::unknown(name.unwrap_or_else(|| "?".into())),
        };
        Ok(t)
    }

    fn aggregate(&self, die: &Die, types: &mut Types, depth: u32) -> Result<Type> {
        let c_name = |keyword: &str| match &die.name {
            Some(n) if die.go_kind.is_some() => n.clone(),
            Some(n) => format!("{keyword} {n}"),
            None => format!("{keyword} (anonymous)"),
        };
        let name = c_name(match die.tag {
            Some(gimli::DW_TAG_union_type) => "union",
            Some(gimli::DW_TAG_class_type) => "class",
            _ => "struct",
        });
        let size = die.byte_size;
        let go_kind = die.go_kind;
        let named = |kind: Kind| Type { name: name.clone(), size, align: 8, kind };
        match go_kind {
            Some(GO_KIND_STRING) => return Ok(named(Kind::GoString)),
            Some(GO_KIND_SLICE) => return Ok(named(Kind::GoSlice)),
            Some(GO_KIND_INTERFACE) => return Ok(named(Kind::GoInterface)),
            _ => {}
        }
        if matches!(die.name.as_deref(), Some("runtime.eface" | "runtime.iface")) {
            return Ok(named(Kind::GoInterface));
        }
        let Some(size) = size else { return Ok(Self::unknown(name)) };
        let mut fields = Vec::new();
        let mut align = 1;
        for member in self.children(die)? {
            if member.tag != Some(gimli::DW_TAG_member) {
                continue;
            }
            if fields.len() == MAX_FIELDS {
                return Ok(Self::unknown(name));
            }
            let ty = self.type_of(member.ty, types, depth + 1)?;
            align = align.max(ty.align);
            // A union's members all start at 0 (no DW_AT_data_member_location).
            fields.push((member.member_offset.unwrap_or(0), ty));
        }
        Ok(Type { name, size: Some(size), align, kind: Kind::Aggregate { fields, by_reference: die.by_reference } })
    }

    /// A type's name alone (for pointers: what they point to), without laying it out.
    fn type_name(&self, at: Option<(usize, UnitOffset)>, depth: u32) -> Result<String> {
        let Some(at) = at else { return Ok("void".into()) };
        let die = self.die_at(at)?;
        if let Some(name) = die.name {
            return Ok(match die.tag {
                Some(gimli::DW_TAG_structure_type) => format!("struct {name}"),
                Some(gimli::DW_TAG_union_type) => format!("union {name}"),
                Some(gimli::DW_TAG_enumeration_type) => format!("enum {name}"),
                _ => name,
            });
        }
        if depth > 4 {
            return Ok("?".into());
        }
        let inner = self.type_name(die.ty, depth + 1)?;
        Ok(match die.tag {
            Some(gimli::DW_TAG_pointer_type) => format!("{inner} *").replace("* *", "**"),
            Some(gimli::DW_TAG_const_type) => format!("const {inner}"),
            Some(gimli::DW_TAG_volatile_type) => format!("volatile {inner}"),
            Some(gimli::DW_TAG_subroutine_type) => "function".into(),
            _ => inner,
        })
    }
}

/// The offset of field `field` in the struct type named `name` (Go's `runtime.g` and `goid`),
/// from the file's DWARF: `Ok(None)` when the file has no DWARF or no such field. Go declares
/// a package's types in the package's own unit, so the unit named before the last `.`
/// (`runtime`) is looked through first, then every other unit.
pub fn struct_field_offset(path: &Path, name: &str, field: &str) -> Result<Option<u64>> {
    let Some(sections) = load_sections(path, LocationLists::Skip)? else { return Ok(None) };
    let dwarf = gimli::Dwarf::load(|id| -> Result<Slice<'_>, gimli::Error> {
        Ok(EndianSlice::new(sections.get(id.name()).map_or(&[][..], |v| &v[..]), LittleEndian))
    })?;
    let package = name.rsplit_once('.').map(|(package, _)| package.as_bytes());
    for only_the_package in [true, false] {
        if only_the_package && package.is_none() {
            continue;
        }
        let mut units = dwarf.units();
        while let Some(header) = units.next()? {
            let unit = dwarf.unit(header)?;
            // The package's unit in the first pass, every other one in the second.
            let in_package = package.is_some() && unit.name.map(|n| n.slice()) == package;
            if in_package != only_the_package {
                continue;
            }
            if let Some(offset) = field_offset_in_unit(&dwarf, &unit, name, field)? {
                return Ok(Some(offset));
            }
        }
    }
    Ok(None)
}

/// `struct_field_offset` in one unit's top-level types.
fn field_offset_in_unit(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    name: &str,
    field: &str,
) -> Result<Option<u64>> {
    let mut tree = unit.entries_tree(None)?;
    let root = tree.root()?;
    let mut children = root.children();
    while let Some(node) = children.next()? {
        let entry = node.entry();
        if entry.tag() != gimli::DW_TAG_structure_type {
            continue;
        }
        let named = match entry.attr_value(gimli::DW_AT_name)? {
            Some(v) => dwarf.attr_string(unit, v)?.slice() == name.as_bytes(),
            None => false,
        };
        if !named {
            continue;
        }
        let mut members = node.children();
        while let Some(member) = members.next()? {
            let m = member.entry();
            if m.tag() != gimli::DW_TAG_member {
                continue;
            }
            let Some(v) = m.attr_value(gimli::DW_AT_name)? else { continue };
            if dwarf.attr_string(unit, v)?.slice() != field.as_bytes() {
                continue;
            }
            return Ok(m.attr(gimli::DW_AT_data_member_location)?.and_then(|a| a.udata_value()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(inode: u64, modified_ns: i128, lists: LocationLists) -> FileRead {
        FileRead { device: 1, inode, size: 4096, modified_ns, lists }
    }

    #[test]
    fn sections_read_serve_the_same_file_unchanged_and_no_more_lists_than_read() {
        let with_lists = read(7, 1, LocationLists::Read);
        let without = read(7, 1, LocationLists::Skip);
        assert!(with_lists.covers(Some(&without)));
        assert!(with_lists.covers(Some(&with_lists)));
        assert!(without.covers(Some(&without)));
        assert!(!without.covers(Some(&with_lists)), "the location lists were not read");
        assert!(!with_lists.covers(Some(&read(8, 1, LocationLists::Skip))), "another file");
        assert!(!with_lists.covers(Some(&read(7, 2, LocationLists::Skip))), "rewritten since");
        assert!(!with_lists.covers(None), "a file whose metadata could not be read");
    }
}
