//! What a command measures of a declared parameter: picking it by name or position, and how
//! argdist reads it (a number's value, a string's or slice's length, a string's bytes).
use super::{has_types, is_compiler_copy, signature, Location, Param, Place, LAID_OUT_HERE};
use crate::error::user;
use crate::resolve::abi::Abi;
use crate::resolve::dwarf::Kind;
use crate::resolve::elf::{Binary, Function, Runtime};
use crate::shared::ArgSpec;
use anyhow::Result;
use probe_ebpf::{ValueSource, Width};

/// What argdist reads for a parameter: a number's value, or a string's or slice's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    pub source: ValueSource,
    pub width: Width,
    /// A Go string or slice: its length is measured.
    pub length: bool,
    /// A string whose bytes can be read (`--count`): a Go string in two registers, or a C
    /// `char *` in one or on the stack.
    pub text: Option<ValueSource>,
    /// A C `char **` (pointers to strings): never read as a string.
    pub pointer_to_strings: bool,
}

/// How argdist measures `param`, or why it cannot (one line for the user, without the option).
pub fn measure(param: &Param) -> Result<Reading, String> {
    let size = param.ty.size.unwrap_or(8);
    let (offset, width, length) = match &param.ty.kind {
        Kind::Int { signed } => (0, Width::of(size, *signed), false),
        Kind::Bool => (0, Width::of(size, false), false),
        Kind::Pointer => (0, Width::U64, false),
        Kind::GoString | Kind::GoSlice => (8, Width::W64, true),
        Kind::Float | Kind::Complex => {
            return Err(format!(
                "{} is a floating-point {} ({}): floating-point values are in XMM registers, which uprobes do not \
                 save; measure an integer parameter",
                param.name,
                what(param),
                param.ty.name
            ))
        }
        Kind::GoInterface => {
            return Err(format!(
                "{} is an interface ({}): its two words (type, data) are not a number; measure an integer, \
                 string or slice parameter",
                param.name, param.ty.name
            ))
        }
        Kind::Aggregate { .. } | Kind::Array { .. } => {
            return Err(format!(
                "{} is {} passed by value ({}): probe measures integers, pointers, strings and slices; \
                 measure one of those",
                param.name,
                if matches!(param.ty.kind, Kind::Array { .. }) { "an array" } else { "a struct" },
                param.ty.name
            ))
        }
        Kind::Void | Kind::Unknown => {
            return Err(format!("{}: probe does not know the layout of its type {}", param.name, param.ty.name))
        }
    };
    let place = match &param.location {
        Location::Registers(pieces) => pieces.iter().find(|p| p.offset == offset).map(|p| p.place),
        Location::Stack(at) => Some(Place::Stack(at + offset as u32)),
        Location::ByReference(_) => None,
        Location::Unknown(why) => {
            return Err(format!("{}: probe cannot locate it: {why}", param.name));
        }
    };
    let text = text_source(param);
    let pointer_to_strings = matches!(param.ty.kind, Kind::Pointer) && is_char_pointer_pointer(&param.ty.name);
    match place {
        Some(Place::Reg(r)) => Ok(Reading { source: ValueSource::Reg(r), width, length, text, pointer_to_strings }),
        Some(Place::Stack(offset)) => {
            Ok(Reading { source: ValueSource::Stack { offset }, width, length, text, pointer_to_strings })
        }
        Some(Place::Xmm) | None => Err(format!("{}: probe cannot locate its value ({})", param.name, param.ty.name)),
    }
}

/// Where a string parameter's bytes are, if probe can read them: a Go string's pointer and
/// length registers, or where a C `char *` (`const char *`, `unsigned char *`, ...) is: its
/// register, or its stack slot (a 7th argument and after).
fn text_source(param: &Param) -> Option<ValueSource> {
    match (&param.ty.kind, &param.location) {
        (Kind::GoString, Location::Registers(pieces)) => {
            let reg_at = |offset: u64| {
                pieces.iter().find(|p| p.offset == offset).and_then(|p| match p.place {
                    Place::Reg(r) => Some(r),
                    _ => None,
                })
            };
            Some(ValueSource::GoString { ptr: reg_at(0)?, len: reg_at(8)? })
        }
        (Kind::Pointer, location) if is_char_pointer(&param.ty.name) => match location {
            Location::Registers(pieces) => match pieces.first()?.place {
                Place::Reg(ptr) => Some(ValueSource::CString { ptr }),
                _ => None,
            },
            Location::Stack(offset) => Some(ValueSource::CStringOnStack { offset: *offset }),
            _ => None,
        },
        _ => None,
    }
}

/// Whether a C type named `name` points at chars (`char *`, `const unsigned char *`, `char
/// *const`): one `*`, not a pointer to pointers (`char **`), whose bytes are addresses.
pub fn is_char_pointer(name: &str) -> bool {
    let name = name.trim_end().trim_end_matches("const").trim_end();
    match name.strip_suffix('*') {
        Some(pointee) => {
            let pointee = pointee.trim_end();
            !pointee.ends_with('*') && pointee.ends_with("char")
        }
        None => false,
    }
}

/// Whether a C type named `name` points at pointers to chars (`char **`, `const char *const *`).
pub fn is_char_pointer_pointer(name: &str) -> bool {
    let name = name.trim_end().trim_end_matches("const").trim_end();
    name.strip_suffix('*').is_some_and(is_char_pointer)
}

fn what(param: &Param) -> &'static str {
    if param.result {
        "result"
    } else {
        "parameter"
    }
}

/// What `argdist --arg`/`--ret` measures, decided from the declared signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// A declared parameter or result (`result`), labelled `label` (`number`, `len(path)`).
    Declared { measure: Reading, label: String, result: bool },
    /// No declared signature: the old meaning (N-th integer register word, the first result
    /// register); `note` says so, once, on stderr.
    Words { note: String },
}

/// Picks the parameter `arg` (or result `ret`) of `function` as declared.
pub fn select(binary: &Binary, function: &Function, arg: Option<&ArgSpec>, ret: Option<u32>) -> Result<Selection> {
    let option = match (arg, ret) {
        (Some(ArgSpec::Position(n)), _) => format!("--arg {n}"),
        (Some(ArgSpec::Name(name)), _) => format!("--arg {name}"),
        (None, Some(0)) => "--ret".to_string(),
        (None, n) => format!("--ret={}", n.unwrap_or(0)),
    };
    let signature = signature(binary, function).map_err(|e| {
        user(format!("{option}: cannot read the debug information of {} ({e:#})", binary.path.display()))
    })?;
    // Assembly functions carry no parameters in Go's DWARF: their words are all there is.
    let signature = signature.filter(|s| {
        let undeclared = s.params.is_empty() && (s.results.is_empty() || s.incomplete.is_some());
        !(undeclared && (function.name.ends_with(".abi0") || s.incomplete.is_some()))
    });
    let Some(signature) = signature else { return words(binary, function, &option, arg, ret) };
    let (list, wanted, kind) = match (arg, ret) {
        (Some(spec), _) => (&signature.params, spec.clone(), "parameter"),
        (None, n) => (&signature.results, ArgSpec::Position(n.unwrap_or(0)), "result"),
    };
    let names = || {
        let all: Vec<String> = list.iter().map(|p| format!("{} {}", p.name, p.ty.name)).collect();
        if all.is_empty() {
            format!("{} has no {kind}s", function.name)
        } else {
            format!("{}'s {kind}s: {}", function.name, all.join(", "))
        }
    };
    if let (Some(why), ArgSpec::Position(_), Some(_)) = (&signature.incomplete, &wanted, arg) {
        return Err(user(format!("{option}: {}: {why}; name the parameter instead ({})", function.name, names())));
    }
    // `r.URL.Path`, `cfg->limits.max`: a path into the parameter.
    let (wanted, path) = match &wanted {
        ArgSpec::Name(name) => match super::fields::split(name) {
            Some((param, fields)) => (ArgSpec::Name(param), Some((fields, name.clone()))),
            None => (wanted.clone(), None),
        },
        _ => (wanted.clone(), None),
    };
    let param = match &wanted {
        ArgSpec::Position(n) => list.get(*n as usize).ok_or_else(|| {
            user(format!("{option}: no {kind} {n} as declared ({}); positions count from 0", names()))
        })?,
        ArgSpec::Name(name) => list.iter().find(|p| &p.name == name).ok_or_else(|| {
            let closest = list
                .iter()
                .map(|p| (strsim::jaro_winkler(name, &p.name), p.name.as_str()))
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .map(|(_, n)| format!("did you mean {n}? "))
                .unwrap_or_default();
            user(format!("{option}: {} has no {kind} named {name}; {closest}({})", function.name, names()))
        })?,
    };
    if let Some((fields, mut label)) = path {
        let measure = super::fields::measure(binary, function, param, &fields, &label)
            .map_err(|why| user(format!("{option}: {}: {why}", function.name)))?;
        if measure.length {
            label = format!("len({label})");
        }
        return Ok(Selection::Declared { measure, label, result: param.result });
    }
    let measure = measure(param).map_err(|why| user(format!("{option}: {why}")))?;
    let mut label = match (&wanted, param.result) {
        (ArgSpec::Name(name), _) => name.clone(),
        (ArgSpec::Position(n), false) => format!("arg{n}"),
        (ArgSpec::Position(0), true) => "ret".to_string(),
        (ArgSpec::Position(n), true) => format!("ret{n}"),
    };
    if measure.length {
        label = format!("len({label})");
    }
    Ok(Selection::Declared { measure, label, result: param.result })
}

/// Without a declared signature: a name is an error, a position keeps its register-word meaning.
fn words(
    binary: &Binary,
    function: &Function,
    option: &str,
    arg: Option<&ArgSpec>,
    ret: Option<u32>,
) -> Result<Selection> {
    let has_types = has_types(binary);
    let missing = if !LAID_OUT_HERE {
        format!("probe lays declared parameters out for x86-64 only, not for {}", crate::arch::NAME)
    } else if is_compiler_copy(binary, function) {
        format!(
            "{} is a copy the compiler specialised (.constprop, .isra, .part or .cold), whose registers need not \
             hold the source's parameters",
            function.name
        )
    } else if has_types {
        format!("the debug information of {} does not describe {}'s parameters", binary.path.display(), function.name)
    } else if matches!(binary.runtime, Runtime::Go(_)) {
        format!(
            "{} has no debug information (DWARF; built with -ldflags=-s -w?), so parameter names and types are unknown",
            binary.path.display()
        )
    } else {
        format!("{} has no debug information (DWARF; stripped or built without -g)", binary.path.display())
    };
    let abi = Abi::of(binary, &function.name);
    let how = if abi == Abi::GoStack {
        "--arg N counts 8-byte argument words on the stack (a method's receiver is 0, a string takes 2, a slice 3)"
    } else if abi.is_go() {
        "--arg N counts integer register words (a method's receiver is 0, a string takes 2, a slice 3)"
    } else {
        "--arg N counts integer argument registers (rdi, rsi, rdx, rcx, r8, r9)"
    };
    match (arg, ret) {
        (Some(ArgSpec::Name(name)), _) if super::fields::split(name).is_some() => {
            Err(user(format!("{option}: {missing}; a path into a parameter needs its types")))
        }
        (Some(ArgSpec::Name(_)), _) => Err(user(format!("{option}: {missing}; use a position instead: {how}"))),
        (None, Some(n)) if n > 0 => {
            Err(user(format!("{option}: {missing}; without it only the first result (--ret) can be located")))
        }
        (None, _) => Ok(Selection::Words { note: format!("{missing}: --ret reads the first result register (rax)") }),
        (Some(ArgSpec::Position(_)), _) => Ok(Selection::Words { note: format!("{missing}: {how}") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_star_on_a_char_makes_a_string() {
        for name in ["char *", "const char *", "unsigned char *", "char *const", "const char * const"] {
            assert!(is_char_pointer(name), "{name}");
            assert!(!is_char_pointer_pointer(name), "{name}");
        }
        for name in ["char **", "const char **", "char *const *", "char", "int *", "wchar_t *"] {
            assert!(!is_char_pointer(name), "{name}");
        }
        for name in ["char **", "const char **", "char *const *", "const char *const *"] {
            assert!(is_char_pointer_pointer(name), "{name}");
        }
        assert!(!is_char_pointer_pointer("char ***"));
    }
}
