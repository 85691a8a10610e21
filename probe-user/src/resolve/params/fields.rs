//! `--arg 'r.URL.Path'`, `cfg->limits.max`: a path into a parameter, located from the DWARF
//! (resolve/dwarf/fields.rs) and read in the kernel (`probe_ebpf::FieldPath`). Every path a run
//! reads is registered here; the loader puts the table in the programs (`table`).
use super::{debug_source, has_types, Location, Param, Place, Reading};
use crate::resolve::dwarf::{self, FieldKind, Walk};
use crate::resolve::elf::{Binary, Function};
use probe_ebpf::{FieldPath, FieldPaths, ValueSource, Width, LEAF_C_STRING, LEAF_GO_STRING, LEAF_INTEGER, MAX_PATHS};
use std::sync::Mutex;

static PATHS: Mutex<Vec<FieldPath>> = Mutex::new(Vec::new());

/// The paths registered so far, for the loader.
pub fn table() -> FieldPaths {
    let mut out = FieldPaths::NONE;
    if let Ok(paths) = PATHS.lock() {
        for (slot, path) in out.paths.iter_mut().zip(paths.iter()) {
            *slot = *path;
        }
    }
    out
}

fn register(path: FieldPath) -> Result<u8, String> {
    let mut paths = PATHS.lock().map_err(|_| "the table of paths is unusable".to_string())?;
    if let Some(i) = paths.iter().position(|p| *p == path) {
        return Ok(i as u8);
    }
    if paths.len() == MAX_PATHS {
        return Err(format!("more than {MAX_PATHS} paths into arguments in one run; name fewer"));
    }
    paths.push(path);
    Ok((paths.len() - 1) as u8)
}

/// Splits `r.URL.Path` or `cfg->limits.max` into the parameter and the fields; `None` for a
/// plain name.
pub fn split(name: &str) -> Option<(String, Vec<String>)> {
    let normal = name.replace("->", ".");
    let mut parts = normal.split('.').map(|p| p.trim().to_string());
    let first = parts.next()?;
    let rest: Vec<String> = parts.collect();
    (!rest.is_empty()).then_some((first, rest))
}

/// The walk of `fields` from `param` of `function`, or why there is none (one line).
pub fn walk(binary: &Binary, function: &Function, param: &Param, fields: &[String]) -> Result<Walk, String> {
    if !has_types(binary) {
        return Err(format!(
            "{} has no debug information (DWARF), so the fields of {} are not known; build it with -g (Go: without \
             -ldflags=-s -w)",
            binary.path.display(),
            param.name
        ));
    }
    let components: Vec<&str> = fields.iter().map(String::as_str).collect();
    match dwarf::walk_file(debug_source(binary), function.addr, &param.name, &components) {
        Ok(Some(walk)) => walk,
        Ok(None) => Err(format!("the debug information does not give the type of {}", param.name)),
        Err(e) => Err(format!("cannot read the debug information of {} ({e:#})", binary.path.display())),
    }
}

/// How argdist reads the path `label` (`fields` of `param`).
pub fn measure(
    binary: &Binary,
    function: &Function,
    param: &Param,
    fields: &[String],
    label: &str,
) -> Result<Reading, String> {
    let walk = walk(binary, function, param, fields)?;
    let (leaf, width, length) = match &walk.leaf {
        FieldKind::Int { size, signed } => (LEAF_INTEGER, Width::of(*size, *signed), false),
        FieldKind::Pointer(_) => (LEAF_INTEGER, Width::U64, false),
        FieldKind::CString => (LEAF_C_STRING, Width::U64, false),
        FieldKind::GoString => (LEAF_GO_STRING, Width::W64, true),
        FieldKind::GoSlice => (LEAF_INTEGER, Width::W64, true),
        FieldKind::GoMap { count_size, .. } => (LEAF_INTEGER, Width::of(*count_size, true), true),
        FieldKind::Float => {
            return Err(format!(
                "{label} is a floating-point field ({}): probe measures integers, strings, slices and maps",
                walk.type_name
            ))
        }
        FieldKind::Interface => {
            return Err(format!(
                "{label} is an interface ({}): what it holds is unknown until the call, so it is not a number",
                walk.type_name
            ))
        }
        FieldKind::Struct(_) => {
            let names: Vec<&str> = walk.fields.iter().take(8).map(|f| f.name.as_str()).collect();
            return Err(format!(
                "{label} is a struct ({}): name one of its fields ({}{})",
                walk.type_name,
                names.join(", "),
                if walk.fields.len() > 8 { ", ..." } else { "" }
            ));
        }
        FieldKind::Array => {
            return Err(format!(
                "{label} is an array ({}): probe reads integers, pointers, strings, slices and maps, not arrays",
                walk.type_name
            ))
        }
        FieldKind::Unknown => {
            return Err(format!("{label}: probe does not read a value of its type ({})", walk.type_name))
        }
    };
    // A slice's length is its second word.
    let leaf_offset = walk.leaf_offset + if matches!(walk.leaf, FieldKind::GoSlice) { 8 } else { 0 };
    let reg_at = |offset: u64| match &param.location {
        Location::Registers(pieces) => pieces.iter().find(|p| p.offset == offset).and_then(|p| match p.place {
            Place::Reg(r) => Some(r),
            _ => None,
        }),
        _ => None,
    };
    let not_in_register = || {
        format!(
            "{label}: {} is passed at {}, where probe does not read paths from (a pointer or a struct in registers)",
            param.name, param.location
        )
    };
    if !walk.in_memory {
        // A field of a struct passed in registers: it is in its own register(s).
        let source = match leaf {
            LEAF_GO_STRING => {
                let (ptr, len) = (reg_at(leaf_offset).ok_or_else(not_in_register)?, reg_at(leaf_offset + 8));
                let len = len.ok_or_else(not_in_register)?;
                return Ok(Reading {
                    source: ValueSource::Reg(len),
                    width,
                    length,
                    text: Some(ValueSource::GoString { ptr, len }),
                    pointer_to_strings: false,
                });
            }
            LEAF_C_STRING => {
                let ptr = reg_at(leaf_offset).ok_or_else(not_in_register)?;
                return Ok(Reading {
                    source: ValueSource::Reg(ptr),
                    width,
                    length,
                    text: Some(ValueSource::CString { ptr }),
                    pointer_to_strings: false,
                });
            }
            _ => ValueSource::Reg(reg_at(leaf_offset).ok_or_else(not_in_register)?),
        };
        if matches!(walk.leaf, FieldKind::GoMap { .. }) {
            return Err(not_in_register());
        }
        return Ok(Reading { source, width, length, text: None, pointer_to_strings: false });
    }
    let base = reg_at(walk.start).ok_or_else(not_in_register)?;
    let mut path = FieldPath {
        derefs: walk.derefs.len() as u32,
        leaf,
        nil_is_zero: walk.nil_is_zero as u32,
        leaf_offset,
        ..FieldPath::NONE
    };
    path.offsets[..walk.derefs.len()].copy_from_slice(&walk.derefs);
    let index = register(path)?;
    let source = ValueSource::Path { base, index };
    let text = match leaf {
        LEAF_GO_STRING => Some(source),
        LEAF_C_STRING => {
            // As a number, the pointer itself; its string is counted from the path above.
            let number = register(FieldPath { leaf: LEAF_INTEGER, ..path })?;
            return Ok(Reading {
                source: ValueSource::Path { base, index: number },
                width,
                length,
                text: Some(source),
                pointer_to_strings: false,
            });
        }
        _ => None,
    };
    Ok(Reading { source, width, length, text, pointer_to_strings: false })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_on_dots_and_arrows() {
        assert_eq!(split("r.URL.Path"), Some(("r".into(), vec!["URL".into(), "Path".into()])));
        assert_eq!(split("cfg->limits.max"), Some(("cfg".into(), vec!["limits".into(), "max".into()])));
        assert_eq!(split("cfg->owner->uid"), Some(("cfg".into(), vec!["owner".into(), "uid".into()])));
        assert_eq!(split("n"), None);
    }

    #[test]
    fn equal_paths_share_an_entry_and_the_table_is_bounded() {
        let path = |leaf_offset| FieldPath { derefs: 1, leaf_offset, ..FieldPath::NONE };
        let first = register(path(1 << 40)).unwrap();
        assert_eq!(register(path(1 << 40)), Ok(first));
        assert_eq!(table().paths[first as usize], path(1 << 40));
        let mut last = Ok(0);
        for i in 0..MAX_PATHS as u64 + 1 {
            last = register(path((1 << 41) + i));
        }
        assert!(last.unwrap_err().contains("more than 8 paths"));
    }
}
