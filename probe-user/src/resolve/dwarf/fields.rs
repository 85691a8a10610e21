//! Paths into a parameter (`r.URL.Path`, `cfg->limits.max`): each field's offset and type from
//! the DWARF, read lazily from the parameter's type DIE (a type is never laid out past the
//! fields a path names, so recursive types cost nothing).
use super::{Die, Reader, Slice, GO_KIND_INTERFACE, GO_KIND_SLICE, GO_KIND_STRING};
use anyhow::Result;
use gimli::{EndianSlice, LittleEndian, UnitOffset};

/// Go's `DW_AT_go_kind` of a map (reflect.Map).
const GO_KIND_MAP: u64 = 21;
/// Typedefs and qualifiers followed to reach a type, at most.
const MAX_QUALIFIERS: usize = 16;

/// What a type is, as far as a path cares.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldKind {
    Int {
        size: u64,
        signed: bool,
    },
    /// A pointer (or a func, chan value): followed by a path that goes on; `None`: to nothing known.
    Pointer(Option<(usize, UnitOffset)>),
    /// A C `char *`.
    CString,
    GoString,
    GoSlice,
    /// A Go map: a pointer to its header, whose element count is at `count_offset`.
    GoMap {
        count_offset: u64,
        count_size: u64,
    },
    Float,
    Interface,
    Struct(Vec<Member>),
    Array,
    Unknown,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub name: String,
    pub offset: u64,
    pub at: Option<(usize, UnitOffset)>,
}

/// One field a type offers (`probe list --fields`).
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub name: String,
    pub type_name: String,
    pub offset: u64,
    pub kind: &'static str,
}

/// Where a path's value is, from the parameter's value.
#[derive(Clone, Debug, PartialEq)]
pub struct Walk {
    /// The path leaves the parameter's own value through the pointer at `start` in it.
    pub in_memory: bool,
    pub start: u64,
    /// Offsets (in each struct reached) of the further pointers followed.
    pub derefs: Vec<u64>,
    /// The leaf's offset: in the last struct reached, or in the parameter's value.
    pub leaf_offset: u64,
    pub leaf: FieldKind,
    /// A nil last pointer means 0 (a Go map's length).
    pub nil_is_zero: bool,
    pub type_name: String,
    /// The fields of the struct the path ends at, or that its pointer points to.
    pub fields: Vec<Field>,
}

/// Walks `components` from parameter `param` of the function at `addr`. `Ok(Err(why))`: the
/// path is not one probe can read (one line, for the user); `Ok(None)`-like cases (no DWARF,
/// no such function or parameter) are reported as `Err` by the caller before this.
pub fn walk(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    addr: u64,
    param: &str,
    components: &[&str],
) -> Result<Option<std::result::Result<Walk, String>>> {
    let reader = Reader::new(dwarf, super::LocationLists::Skip)?;
    let Some(ty) = param_type(&reader, addr, param)? else { return Ok(None) };
    Ok(Some(walk_from(&reader, ty, param, components)?))
}

fn param_type(reader: &Reader<'_, '_>, addr: u64, param: &str) -> Result<Option<(usize, UnitOffset)>> {
    for unit in 0..reader.units.len() {
        let mut cursor = reader.units[unit].entries();
        while let Some((_, entry)) = cursor.next_dfs()? {
            if entry.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            let die = reader.die_of(unit, entry)?;
            if die.low_pc != Some(addr) {
                continue;
            }
            for child in reader.children(&die)? {
                if child.tag != Some(gimli::DW_TAG_formal_parameter) {
                    continue;
                }
                let origin = child.origin.map(|o| reader.die_at(o)).transpose()?;
                let name = child.name.clone().or_else(|| origin.as_ref().and_then(|o| o.name.clone()));
                if name.as_deref() == Some(param) {
                    return Ok(child.ty.or_else(|| origin.and_then(|o| o.ty)));
                }
            }
            return Ok(None);
        }
    }
    Ok(None)
}

/// What the type at `at` is, its typedefs and qualifiers followed (a Go map or interface is
/// known by its typedef's kind).
fn classify(reader: &Reader<'_, '_>, at: Option<(usize, UnitOffset)>) -> Result<FieldKind> {
    let mut at = at;
    for _ in 0..MAX_QUALIFIERS {
        let Some(here) = at else { return Ok(FieldKind::Unknown) };
        let die = reader.die_at(here)?;
        match die.tag {
            Some(gimli::DW_TAG_typedef | gimli::DW_TAG_const_type | gimli::DW_TAG_volatile_type) => match die.go_kind {
                Some(GO_KIND_INTERFACE) => return Ok(FieldKind::Interface),
                Some(GO_KIND_MAP) => return map_kind(reader, die.ty),
                _ => at = die.ty,
            },
            _ => return kind_of(reader, &die),
        }
    }
    Ok(FieldKind::Unknown)
}

fn kind_of(reader: &Reader<'_, '_>, die: &Die) -> Result<FieldKind> {
    Ok(match die.tag {
        Some(gimli::DW_TAG_base_type) => {
            let size = die.byte_size.unwrap_or(0);
            match gimli::DwAte(die.encoding.unwrap_or(0)) {
                gimli::DW_ATE_signed | gimli::DW_ATE_signed_char => FieldKind::Int { size, signed: true },
                gimli::DW_ATE_unsigned | gimli::DW_ATE_unsigned_char | gimli::DW_ATE_UTF | gimli::DW_ATE_boolean => {
                    FieldKind::Int { size, signed: false }
                }
                gimli::DW_ATE_float | gimli::DW_ATE_complex_float => FieldKind::Float,
                _ => FieldKind::Unknown,
            }
        }
        Some(gimli::DW_TAG_enumeration_type) => {
            let signed = matches!(classify(reader, die.ty)?, FieldKind::Int { signed: true, .. });
            FieldKind::Int { size: die.byte_size.unwrap_or(4), signed }
        }
        Some(gimli::DW_TAG_pointer_type | gimli::DW_TAG_reference_type | gimli::DW_TAG_rvalue_reference_type) => {
            let name = reader.type_name(die.ty, 0)?;
            let pointee =
                name.trim_start_matches("const ").trim_start_matches("unsigned ").trim_start_matches("signed ");
            if die.go_kind.is_none() && pointee == "char" {
                FieldKind::CString
            } else {
                FieldKind::Pointer(die.ty)
            }
        }
        Some(gimli::DW_TAG_subroutine_type) => FieldKind::Pointer(None),
        Some(gimli::DW_TAG_structure_type | gimli::DW_TAG_class_type | gimli::DW_TAG_union_type) => {
            match die.go_kind {
                Some(GO_KIND_STRING) => return Ok(FieldKind::GoString),
                Some(GO_KIND_SLICE) => return Ok(FieldKind::GoSlice),
                Some(GO_KIND_INTERFACE) => return Ok(FieldKind::Interface),
                _ => {}
            }
            if matches!(die.name.as_deref(), Some("runtime.eface" | "runtime.iface")) {
                return Ok(FieldKind::Interface);
            }
            let members = reader
                .children(die)?
                .into_iter()
                .filter(|m| m.tag == Some(gimli::DW_TAG_member))
                .map(|m| Member { name: m.name.unwrap_or_default(), offset: m.member_offset.unwrap_or(0), at: m.ty })
                .collect();
            FieldKind::Struct(members)
        }
        Some(gimli::DW_TAG_array_type) => FieldKind::Array,
        _ => FieldKind::Unknown,
    })
}

/// A Go map's typedef points to a pointer to its header: `count` (Go 1.23 and before) or `used`
/// (the Swiss tables of Go 1.24) is its length.
fn map_kind(reader: &Reader<'_, '_>, pointer: Option<(usize, UnitOffset)>) -> Result<FieldKind> {
    let Some(pointer) = pointer else { return Ok(FieldKind::Unknown) };
    let header = reader.die_at(pointer)?.ty;
    if let FieldKind::Struct(members) = classify(reader, header)? {
        for m in members.iter().filter(|m| m.name == "count" || m.name == "used") {
            if let FieldKind::Int { size, .. } = classify(reader, m.at)? {
                return Ok(FieldKind::GoMap { count_offset: m.offset, count_size: size });
            }
        }
    }
    Ok(FieldKind::Unknown)
}

/// A kind as `probe list --fields` shows it.
pub fn kind_label(kind: &FieldKind) -> &'static str {
    match kind {
        FieldKind::Int { .. } => "integer",
        FieldKind::Pointer(_) => "pointer",
        FieldKind::CString => "C string",
        FieldKind::GoString => "string",
        FieldKind::GoSlice => "slice",
        FieldKind::GoMap { .. } => "map",
        FieldKind::Float => "float",
        FieldKind::Interface => "interface",
        FieldKind::Struct(_) => "struct",
        FieldKind::Array => "array",
        FieldKind::Unknown => "?",
    }
}

/// A type's name as the source writes it (Go's: `string`, `net/http.Header`; C's: `struct limits`).
fn name_of(reader: &Reader<'_, '_>, at: Option<(usize, UnitOffset)>) -> Result<String> {
    if let Some(here) = at {
        let die = reader.die_at(here)?;
        if let (Some(_), Some(name)) = (die.go_kind, die.name.clone()) {
            return Ok(name);
        }
        if die.tag == Some(gimli::DW_TAG_array_type) && die.name.is_none() {
            let len = reader
                .children(&die)?
                .iter()
                .find(|c| c.tag == Some(gimli::DW_TAG_subrange_type))
                .and_then(|r| r.count.or(r.upper_bound.map(|u| u.wrapping_add(1))));
            let elem = reader.type_name(die.ty, 0)?;
            return Ok(len.map_or_else(|| format!("{elem}[]"), |n| format!("{elem}[{n}]")));
        }
    }
    reader.type_name(at, 0)
}

fn fields_of(reader: &Reader<'_, '_>, members: &[Member]) -> Result<Vec<Field>> {
    members
        .iter()
        .map(|m| {
            Ok(Field {
                name: m.name.clone(),
                type_name: name_of(reader, m.at)?,
                offset: m.offset,
                kind: kind_label(&classify(reader, m.at)?),
            })
        })
        .collect()
}

fn walk_from(
    reader: &Reader<'_, '_>,
    param: (usize, UnitOffset),
    name: &str,
    components: &[&str],
) -> Result<std::result::Result<Walk, String>> {
    let mut walk = Walk {
        in_memory: false,
        start: 0,
        derefs: Vec::new(),
        leaf_offset: 0,
        leaf: FieldKind::Unknown,
        nil_is_zero: false,
        type_name: String::new(),
        fields: Vec::new(),
    };
    let mut at = Some(param);
    let mut so_far = name.to_string();
    // Follows the pointer at the current offset: the parameter's own word first, then fields.
    let follow = |walk: &mut Walk| -> bool {
        if walk.in_memory {
            walk.derefs.push(walk.leaf_offset);
        } else {
            walk.in_memory = true;
            walk.start = walk.leaf_offset;
        }
        walk.leaf_offset = 0;
        walk.derefs.len() <= probe_ebpf::MAX_DEREFS
    };
    for component in components {
        let type_name = name_of(reader, at)?;
        let mut kind = classify(reader, at)?;
        if let FieldKind::Pointer(pointee) = kind {
            if !follow(&mut walk) {
                return Ok(Err(format!(
                    "{so_far}: the path follows more than {} pointers, the most probe reads per call",
                    probe_ebpf::MAX_DEREFS + 1
                )));
            }
            at = pointee;
            kind = classify(reader, at)?;
        }
        let members = match kind {
            FieldKind::Struct(members) => members,
            FieldKind::Interface => {
                return Ok(Err(format!(
                    "{so_far} is an interface ({type_name}): what it holds is unknown until the call, so it has no \
                     fields to name"
                )))
            }
            FieldKind::Pointer(_) => {
                return Ok(Err(format!(
                    "{so_far} is a pointer to a pointer ({type_name}): probe follows one pointer per field"
                )))
            }
            other => {
                return Ok(Err(format!(
                    "{so_far} is {} ({type_name}), which has no fields",
                    with_article(kind_label(&other))
                )))
            }
        };
        let Some(member) = members.iter().find(|m| m.name == *component) else {
            let mut names: Vec<(f64, &str)> =
                members.iter().map(|m| (strsim::jaro_winkler(component, &m.name), m.name.as_str())).collect();
            names.sort_by(|a, b| b.0.total_cmp(&a.0));
            let closest: Vec<&str> = names.iter().take(3).map(|(_, n)| *n).collect();
            return Ok(Err(format!(
                "{so_far} ({type_name}) has no field {component}; closest: {} (probe list BINARY FUNCTION --fields \
                 {so_far} shows them all)",
                closest.join(", ")
            )));
        };
        walk.leaf_offset += member.offset;
        at = member.at;
        so_far = format!("{so_far}.{component}");
    }
    walk.type_name = name_of(reader, at)?;
    walk.leaf = classify(reader, at)?;
    // What the value offers one level down: a struct's fields, or those of what it points to.
    let listed = match &walk.leaf {
        FieldKind::Struct(members) => Some(members.clone()),
        FieldKind::Pointer(pointee) => match classify(reader, *pointee)? {
            FieldKind::Struct(members) => Some(members),
            _ => None,
        },
        _ => None,
    };
    if let Some(members) = listed {
        walk.fields = fields_of(reader, &members)?;
    }
    if let FieldKind::GoMap { count_offset, count_size } = walk.leaf {
        if !follow(&mut walk) {
            return Ok(Err(format!(
                "{so_far}: the path follows more than {} pointers, the most probe reads per call",
                probe_ebpf::MAX_DEREFS + 1
            )));
        }
        walk.leaf_offset = count_offset;
        walk.nil_is_zero = true;
        walk.leaf = FieldKind::GoMap { count_offset, count_size };
    }
    Ok(Ok(walk))
}

fn with_article(kind: &str) -> String {
    match kind.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

/// `walk` on the file at `path` (its DWARF loaded as `functions` does).
pub fn walk_file(
    path: &std::path::Path,
    addr: u64,
    param: &str,
    components: &[&str],
) -> Result<Option<std::result::Result<Walk, String>>> {
    let Some(sections) = super::load_sections(path, super::LocationLists::Skip)? else { return Ok(None) };
    let dwarf = gimli::Dwarf::load(|id| -> Result<Slice<'_>, gimli::Error> {
        Ok(EndianSlice::new(sections.get(id.name()).map_or(&[][..], |v| &v[..]), LittleEndian))
    })?;
    walk(&dwarf, addr, param, components)
}
