//! C and C++ inlined copies, from the DWARF: each `DW_TAG_inlined_subroutine` names the
//! function copied (`DW_AT_abstract_origin`: its abstract instance, which the out-of-line copy
//! names too), its instructions (`DW_AT_low_pc`/`DW_AT_high_pc` or `DW_AT_ranges`) and where it
//! is entered (`DW_AT_entry_pc`).
use super::super::dwarf::section_bytes;
use super::super::elf::{demangle, open_binary_file, Binary, Function};
use super::InlinedCopy;
use anyhow::{Context, Result};
use gimli::{AttributeValue, EndianSlice, LittleEndian, UnitOffset};
use object::Object;
use std::collections::HashMap;
use std::ops::Range;

type Slice<'d> = EndianSlice<'d, LittleEndian>;

/// The sections read: the DIEs, and the address ranges of the inlined copies.
const SECTIONS: [&str; 9] = [
    ".debug_info",
    ".debug_abbrev",
    ".debug_str",
    ".debug_line_str",
    ".debug_str_offsets",
    ".debug_addr",
    ".debug_ranges",
    ".debug_rnglists",
    ".debug_line",
];

/// A DIE by its unit and offset, across units (LTO refers across them).
type DieRef = (usize, UnitOffset);

/// The inlined copies of each of `functions`: those whose abstract origin is the one its
/// out-of-line copy (the DIE at its address) names. One list per function, in order.
pub(super) fn copies(binary: &Binary, functions: &[&Function]) -> Result<Vec<Vec<InlinedCopy>>> {
    let mut out = vec![Vec::new(); functions.len()];
    let Some(sections) = load(binary)? else { return Ok(out) };
    let dwarf = dwarf(&sections)?;
    let units = units(&dwarf)?;
    let origins = origins_of(&dwarf, &units, functions)?;
    if origins.is_empty() {
        return Ok(out);
    }
    walk_inlined(&dwarf, &units, |unit, entry, origin| {
        if let Some(&i) = origins.get(&origin) {
            out[i].extend(copy(binary, &dwarf, &units[unit], entry, functions[i].name.clone())?);
        }
        Ok(())
    })?;
    Ok(out)
}

/// Every inlined copy in the file, named by its function's linkage (else plain) name, for
/// `probe list`; `None` without DWARF. Their bodies are left empty.
pub(super) fn all_copies(binary: &Binary) -> Result<Option<Vec<InlinedCopy>>> {
    let Some(sections) = load(binary)? else { return Ok(None) };
    let dwarf = dwarf(&sections)?;
    let units = units(&dwarf)?;
    let mut names: HashMap<DieRef, Option<String>> = HashMap::new();
    let mut out = Vec::new();
    walk_inlined(&dwarf, &units, |_, _, origin| {
        let name = match names.get(&origin) {
            Some(n) => n.clone(),
            None => {
                let n = name_of(&dwarf, &units, origin)?;
                names.insert(origin, n.clone());
                n
            }
        };
        if let Some(callee) = name {
            out.push(InlinedCopy { callee, caller: 0..0, mark: None, entry_pc: None, body: Vec::new() });
        }
        Ok(())
    })?;
    Ok(Some(out))
}

fn load(binary: &Binary) -> Result<Option<HashMap<&'static str, Vec<u8>>>> {
    let (file, _) = open_binary_file(&binary.path).map_err(|_| anyhow::anyhow!("cannot reopen the file"))?;
    let cache = object::ReadCache::new(&file);
    let tables = crate::resolve::elf::string_tables(&cache, crate::resolve::elf::Tables::SectionNames);
    let parsed = object::File::parse(crate::resolve::elf::OnDemand::new(&cache, &tables))?;
    let mut out = HashMap::new();
    for name in SECTIONS {
        let section =
            parsed.section_by_name(name).or_else(|| parsed.section_by_name(&name.replacen(".debug_", ".zdebug_", 1)));
        if let Some(section) = section {
            out.insert(name, section_bytes(&section).with_context(|| name.to_string())?);
        }
    }
    Ok(out.contains_key(".debug_info").then_some(out))
}

fn dwarf<'d>(sections: &'d HashMap<&'static str, Vec<u8>>) -> Result<gimli::Dwarf<Slice<'d>>> {
    Ok(gimli::Dwarf::load(|id| -> Result<Slice<'_>, gimli::Error> {
        Ok(EndianSlice::new(sections.get(id.name()).map_or(&[][..], |v| &v[..]), LittleEndian))
    })?)
}

/// Every unit, with its offset in `.debug_info` (to resolve references across units).
fn units<'d>(dwarf: &gimli::Dwarf<Slice<'d>>) -> Result<Vec<(usize, gimli::Unit<Slice<'d>>)>> {
    let mut out = Vec::new();
    let mut headers = dwarf.units();
    while let Some(header) = headers.next()? {
        let Some(start) = header.offset().as_debug_info_offset() else { continue };
        out.push((start.0, dwarf.unit(header)?));
    }
    Ok(out)
}

/// Where a reference attribute points.
fn target(units: &[(usize, gimli::Unit<Slice<'_>>)], unit: usize, value: AttributeValue<Slice<'_>>) -> Option<DieRef> {
    match value {
        AttributeValue::UnitRef(offset) => Some((unit, offset)),
        AttributeValue::DebugInfoRef(offset) => {
            let i = units.partition_point(|(s, _)| *s <= offset.0).checked_sub(1)?;
            Some((i, offset.to_unit_offset(&units[i].1.header)?))
        }
        _ => None,
    }
}

/// The abstract instances of the functions, from their out-of-line copies (the subprograms
/// at their addresses): origin -> index in `functions`.
fn origins_of(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    units: &[(usize, gimli::Unit<Slice<'_>>)],
    functions: &[&Function],
) -> Result<HashMap<DieRef, usize>> {
    let at: HashMap<u64, usize> = functions.iter().enumerate().map(|(i, f)| (f.addr, i)).collect();
    let mut out = HashMap::new();
    for (i, (_, unit)) in units.iter().enumerate() {
        let mut cursor = unit.entries();
        while let Some((_, entry)) = cursor.next_dfs()? {
            if entry.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            let Some(low) = entry.attr_value(gimli::DW_AT_low_pc)? else { continue };
            let Some(&function) = dwarf.attr_address(unit, low)?.and_then(|a| at.get(&a)) else { continue };
            if let Some(origin) = entry.attr_value(gimli::DW_AT_abstract_origin)?.and_then(|v| target(units, i, v)) {
                out.insert(origin, function);
            }
        }
    }
    Ok(out)
}

/// Calls `f(unit, entry, origin)` for each `DW_TAG_inlined_subroutine`.
fn walk_inlined<'d>(
    _dwarf: &gimli::Dwarf<Slice<'d>>,
    units: &[(usize, gimli::Unit<Slice<'d>>)],
    mut f: impl FnMut(usize, &gimli::DebuggingInformationEntry<Slice<'d>>, DieRef) -> Result<()>,
) -> Result<()> {
    for (i, (_, unit)) in units.iter().enumerate() {
        let mut cursor = unit.entries();
        while let Some((_, entry)) = cursor.next_dfs()? {
            if entry.tag() != gimli::DW_TAG_inlined_subroutine {
                continue;
            }
            if let Some(origin) = entry.attr_value(gimli::DW_AT_abstract_origin)?.and_then(|v| target(units, i, v)) {
                f(i, entry, origin)?;
            }
        }
    }
    Ok(())
}

/// One inlined copy: its ranges and entry, in the function of `binary` that holds its entry.
fn copy(
    binary: &Binary,
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &(usize, gimli::Unit<Slice<'_>>),
    entry: &gimli::DebuggingInformationEntry<Slice<'_>>,
    callee: String,
) -> Result<Option<InlinedCopy>> {
    let unit = &unit.1;
    let mut body: Vec<Range<u64>> = Vec::new();
    let mut ranges = dwarf.die_ranges(unit, entry)?;
    while let Some(r) = ranges.next()? {
        if r.begin < r.end {
            body.push(r.begin..r.end);
        }
    }
    body.sort_by_key(|r| r.start);
    // A copy whose instructions the compiler merged into its caller's has an empty range (and
    // still an entry address): kept, so that its calls are reported as not counted.
    let low_pc = match entry.attr_value(gimli::DW_AT_low_pc)? {
        Some(value) => dwarf.attr_address(unit, value)?,
        None => None,
    };
    let Some(lowest) = body.first().map(|r| r.start).or(low_pc) else { return Ok(None) };
    let entry_pc = match entry.attr_value(gimli::DW_AT_entry_pc)? {
        Some(AttributeValue::Udata(offset)) => lowest.checked_add(offset),
        Some(value) => dwarf.attr_address(unit, value)?,
        None => None,
    }
    .unwrap_or(lowest);
    let caller = binary
        .functions()
        .iter()
        .find(|f| f.size > 0 && f.addr <= entry_pc && entry_pc < f.addr + f.size)
        .map_or(0..0, |f| f.addr..f.addr + f.size);
    Ok(Some(InlinedCopy { callee, caller, mark: None, entry_pc: Some(entry_pc), body }))
}

/// A function's name for `probe list`: its linkage name demangled (as the symbol table's
/// names are), else its plain name, from the DIE or its specification.
fn name_of(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    units: &[(usize, gimli::Unit<Slice<'_>>)],
    at: DieRef,
) -> Result<Option<String>> {
    let (unit_index, offset) = at;
    let unit = &units[unit_index].1;
    let entry = unit.entry(offset)?;
    for attr in [gimli::DW_AT_linkage_name, gimli::DW_AT_MIPS_linkage_name, gimli::DW_AT_name] {
        if let Some(value) = entry.attr_value(attr)? {
            let name = dwarf.attr_string(unit, value)?.to_string_lossy().into_owned();
            return Ok(Some(if attr == gimli::DW_AT_name { name } else { demangle(&name) }));
        }
    }
    match entry.attr_value(gimli::DW_AT_specification)?.and_then(|v| target(units, unit_index, v)) {
        Some(spec) if spec != at => name_of(dwarf, units, spec),
        _ => Ok(None),
    }
}
