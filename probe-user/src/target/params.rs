//! Parameters as declared: for a function, each parameter's name, type, position (a Go
//! method's receiver first) and where its bytes are at the function's entry (results: at its
//! returns) under the function's calling convention, from the file's DWARF.
//!
//! Go's ABIInternal (amd64) is followed as the Go project specifies it: each argument in turn
//! is assigned registers as a whole (integers, pointers and each word of a string, slice or
//! interface take the next of 9 integer registers, floats the next of 15 XMM registers; a
//! struct field by field; an array of 0 or 1 element as its element); if it does not fit,
//! the registers taken for it are given back and it goes to the stack, aligned to its type.
//! Results are assigned the same way from the first registers again, after the arguments on
//! the stack. ABI0 (assembly, Go < 1.17) puts everything on the stack.
//!
//! System V (x86-64): each parameter is classified by eightbytes (INTEGER, SSE, MEMORY); a
//! struct above 16 bytes, or one that does not fit in the registers left, goes to the stack.
//! A struct returned in memory takes the first integer register for its hidden pointer.
use super::dwarf::{self, Kind, RawFunction, RawParam, Type};
use super::elf::{Binary, Function, Runtime};
use crate::abi::{Abi, GO_REGISTER_ARGS, SYSV_ARGS};
use crate::cli::ArgSpec;
use crate::error::user;
use anyhow::Result;
use probe_ebpf::{Reg, ValueSource, Width};
use std::collections::HashMap;
use std::fmt;

/// Where a part of a value is when the probe fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Reg(Reg),
    /// An XMM register: uprobes do not save them.
    Xmm,
    /// At this offset from the stack pointer at the function's entry (results: at its RET).
    Stack(u32),
}

/// A register-assigned part of a value: `size` bytes at `offset` in the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub size: u64,
    pub place: Place,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// In registers, one piece per register.
    Registers(Vec<Piece>),
    /// The whole value on the stack at this offset from the stack pointer.
    Stack(u32),
    /// Passed as a hidden pointer to a copy (C++ classes that are not trivially copyable).
    ByReference(Place),
    /// Not located: why.
    Unknown(&'static str),
}

#[derive(Clone, Debug)]
pub struct Param {
    /// As declared; `argN` (`retN`) when the declaration has none.
    pub name: String,
    pub ty: Type,
    /// 0-based among the inputs (receiver or `this` first), or among the results.
    pub position: u32,
    pub result: bool,
    pub location: Location,
}

/// A function's declared parameters and results, located.
#[derive(Clone, Debug)]
pub struct Signature {
    pub params: Vec<Param>,
    pub results: Vec<Param>,
    /// Why positions are not as declared, when the DWARF leaves parameters out (Go before
    /// 1.23 omits blank `_` and unnamed ones): the named ones are then located by where the
    /// DWARF says they are at the entry, and positions are refused.
    pub incomplete: Option<String>,
}

/// Where the declared signatures come from: the file's DWARF, or its separate debug file's.
fn debug_source(binary: &Binary) -> &std::path::Path {
    binary.debug_file.as_deref().unwrap_or(&binary.path)
}

/// A copy of a C function that GCC specialised (`f.constprop.0` with a constant argument
/// dropped, `f.isra.0` with arguments removed or split, `f.part.0`, `f.cold`): its DWARF lists
/// the source's parameters, which its registers need not hold.
fn is_compiler_copy(binary: &Binary, function: &Function) -> bool {
    let copy = [".constprop.", ".isra.", ".part.", ".cold"].iter().any(|s| function.name.contains(s));
    copy && !Abi::of(binary, &function.name).is_go()
}

/// The signature of `function` as its DWARF declares it; `None` when the file has no DWARF or
/// it does not describe the function.
pub fn signature(binary: &Binary, function: &Function) -> Result<Option<Signature>> {
    if is_compiler_copy(binary, function) {
        return Ok(None);
    }
    let Some(mut all) = dwarf::functions(debug_source(binary), Some(function.addr))? else { return Ok(None) };
    let args = go_args_sizes(binary);
    Ok(all.remove(&function.addr).map(|raw| locate(&raw, Abi::of(binary, &function.name), args.get(&function.addr))))
}

/// Go's `_func.args` of every function by entry (from `.gopclntab`): the size of its arguments
/// and results, which tells whether the DWARF declares them all. Empty when not Go or unreadable.
fn go_args_sizes(binary: &Binary) -> HashMap<u64, u32> {
    use object::{Object, ObjectSection};
    if !matches!(binary.runtime, Runtime::Go(_)) {
        return HashMap::new();
    }
    let Ok((file, _)) = super::elf::open_binary_file(&binary.path) else { return HashMap::new() };
    let cache = object::ReadCache::new(&file);
    let Ok(parsed) = object::File::parse(&cache) else { return HashMap::new() };
    let text = parsed.section_by_name(".text").map_or(0, |s| s.address());
    let Some(table) = parsed.section_by_name(".gopclntab").and_then(|s| s.data().ok()) else { return HashMap::new() };
    super::pclntab::functions(table, text)
        .map(|f| f.into_iter().map(|f| (f.entry, f.args)).collect())
        .unwrap_or_default()
}

/// The bytes Go's arguments (and `outputs`) take laid out on the stack (ABI0), as `_func.args`
/// counts them: with the results for ABI0 functions, without for ABIInternal ones.
fn abi0_width(inputs: &[(String, &Type)], outputs: &[(String, &Type)]) -> Option<u64> {
    let mut width = 0;
    for (i, values) in [inputs, outputs].into_iter().enumerate() {
        if i == 1 {
            width = align_up(width, 8);
        }
        for (_, ty) in values {
            width = align_up(width, ty.align) + ty.size?;
        }
    }
    Some(align_up(width, 8))
}

/// Every function's signature, by entry address; `None` when the file has no DWARF.
pub fn signatures(binary: &Binary) -> Result<Option<HashMap<u64, Signature>>> {
    let Some(all) = dwarf::functions(debug_source(binary), None)? else { return Ok(None) };
    let abi_at: HashMap<u64, Abi> = binary
        .functions()
        .iter()
        .filter(|f| !is_compiler_copy(binary, f))
        .map(|f| (f.addr, Abi::of(binary, &f.name)))
        .collect();
    let args = go_args_sizes(binary);
    Ok(Some(
        all.into_iter()
            .filter_map(|(addr, raw)| abi_at.get(&addr).map(|&abi| (addr, locate(&raw, abi, args.get(&addr)))))
            .collect(),
    ))
}

/// Whether the file (or its debug file) carries DWARF at all.
pub fn has_types(binary: &Binary) -> bool {
    dwarf::has_debug_info(debug_source(binary))
}

fn locate(raw: &RawFunction, abi: Abi, go_args: Option<&u32>) -> Signature {
    let inputs: Vec<(String, &Type)> = raw
        .params
        .iter()
        .filter(|p| !p.result)
        .enumerate()
        .map(|(i, p)| (p.name.clone().unwrap_or_else(|| format!("arg{i}")), &p.ty))
        .collect();
    let outputs: Vec<(String, &Type)> = match &raw.returns {
        Some(t) if t.kind == Kind::Void => Vec::new(),
        Some(t) => vec![("ret".to_string(), t)],
        None => raw
            .params
            .iter()
            .filter(|p| p.result)
            .enumerate()
            .map(|(i, p)| {
                // Go names unnamed results `~r0`, `~r1`.
                let name = p.name.clone().filter(|n| !n.starts_with('~')).unwrap_or_else(|| ret_name(i));
                (name, &p.ty)
            })
            .collect(),
    };
    let (mut params, mut results) = match abi {
        Abi::GoRegister => go_assign(&inputs, &outputs, GO_REGISTER_ARGS.len(), GO_FLOAT_REGS),
        Abi::GoStack => go_assign(&inputs, &outputs, 0, 0),
        Abi::SystemV => sysv_assign(&inputs, raw.returns.as_ref(), raw.rust),
    };
    let declared: Vec<&RawParam> = raw.params.iter().filter(|p| !p.result).collect();
    // Whether the DWARF declares every parameter: the declared sizes must add up to the
    // function table's argument frame. (Where they are, the DWARF's own entry locations are
    // not compared: Go's sometimes name a register another parameter is in.)
    let counted: Vec<(String, &Type)> = outputs
        .iter()
        .zip(&results)
        .filter(|(_, r)| abi == Abi::GoStack || matches!(r.location, Location::Stack(_)))
        .map(|(o, _)| o.clone())
        .collect();
    let disagree = abi.is_go() && go_args.is_some_and(|&size| abi0_width(&inputs, &counted) != Some(u64::from(size)));
    let incomplete = disagree.then(|| {
        // Trust the DWARF's own locations for the named parameters; nothing else is known.
        for (p, d) in params.iter_mut().zip(&declared) {
            p.location =
                d.entry_registers.as_ref().and_then(|r| from_dwarf(r, &p.ty)).unwrap_or(Location::Unknown(OMITTED));
        }
        for r in results.iter_mut().filter(|r| matches!(r.location, Location::Stack(_))) {
            r.location = Location::Unknown(OMITTED);
        }
        "its debug information leaves out some parameters (Go before 1.23 leaves out blank (_) and unnamed \
         ones, and a generic function's dictionary), so positions as declared are not known"
            .to_string()
    });
    Signature { params, results, incomplete }
}

const OMITTED: &str = "the debug information leaves out some parameters and does not say where this one is";

/// DWARF's x86-64 register numbers.
fn dwarf_number(r: Reg) -> u16 {
    match r {
        Reg::Rax => 0,
        Reg::Rdx => 1,
        Reg::Rcx => 2,
        Reg::Rbx => 3,
        Reg::Rsi => 4,
        Reg::Rdi => 5,
        Reg::R8 => 8,
        Reg::R9 => 9,
        Reg::R10 => 10,
        Reg::R11 => 11,
    }
}

const DWARF_XMM: std::ops::RangeInclusive<u16> = 17..=32;

/// A location from the registers the DWARF names, one 8-byte word each.
fn from_dwarf(dwarf: &[u16], ty: &Type) -> Option<Location> {
    let size = ty.size?;
    let pieces = dwarf
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let place = if DWARF_XMM.contains(&n) {
                Place::Xmm
            } else {
                Place::Reg(*Reg::ALL.iter().find(|&&r| dwarf_number(r) == n)?)
            };
            Some(Piece { offset: 8 * i as u64, size: size.saturating_sub(8 * i as u64).min(8), place })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Location::Registers(pieces))
}

fn ret_name(i: usize) -> String {
    if i == 0 {
        "ret".into()
    } else {
        format!("ret{i}")
    }
}

const GO_FLOAT_REGS: usize = 15;

/// The stack-pointer offset of the first stack-assigned byte: the return address is at SP.
const STACK_BASE: u64 = 8;

fn align_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align.max(1)) * align.max(1)
}

/// Why a later parameter cannot be located once one is not.
const AFTER_UNKNOWN: &str = "it follows a parameter whose type probe cannot lay out";

enum Fit {
    Fits,
    NoRoom,
    Unknown,
}

/// Go's register assignment of one value (recursively), into `pieces`.
fn go_registers(
    ty: &Type,
    base: u64,
    ints: &mut usize,
    floats: &mut usize,
    limits: (usize, usize),
    pieces: &mut Vec<Piece>,
) -> Fit {
    let int_word = |offset: u64, size: u64, ints: &mut usize, pieces: &mut Vec<Piece>| {
        if *ints >= limits.0 {
            return false;
        }
        pieces.push(Piece { offset, size, place: Place::Reg(GO_REGISTER_ARGS[*ints]) });
        *ints += 1;
        true
    };
    let words =
        |n: u64, ints: &mut usize, pieces: &mut Vec<Piece>| (0..n).all(|i| int_word(base + 8 * i, 8, ints, pieces));
    let fits = |ok: bool| if ok { Fit::Fits } else { Fit::NoRoom };
    match &ty.kind {
        Kind::Int { .. } | Kind::Bool | Kind::Pointer => match ty.size {
            Some(size @ 1..=8) => fits(int_word(base, size, ints, pieces)),
            _ => Fit::Unknown,
        },
        Kind::Float | Kind::Complex => {
            let n = if ty.kind == Kind::Complex { 2 } else { 1 };
            let size = ty.size.unwrap_or(0) / n;
            for i in 0..n {
                if *floats >= limits.1 {
                    return Fit::NoRoom;
                }
                pieces.push(Piece { offset: base + i * size, size, place: Place::Xmm });
                *floats += 1;
            }
            Fit::Fits
        }
        Kind::GoString | Kind::GoInterface => fits(words(2, ints, pieces)),
        Kind::GoSlice => fits(words(3, ints, pieces)),
        Kind::Aggregate { fields, .. } => {
            for (offset, field) in fields {
                match go_registers(field, base + offset, ints, floats, limits, pieces) {
                    Fit::Fits => {}
                    other => return other,
                }
            }
            Fit::Fits
        }
        Kind::Array { len: 0, .. } | Kind::Void => Fit::Fits,
        Kind::Array { len: 1, elem } => go_registers(elem, base, ints, floats, limits, pieces),
        Kind::Array { .. } if ty.size.is_some() => Fit::NoRoom,
        Kind::Array { .. } | Kind::Unknown => Fit::Unknown,
    }
}

/// Go ABIInternal (or ABI0 with no registers): inputs, then results from the first registers
/// again and on the stack after the inputs.
fn go_assign(
    inputs: &[(String, &Type)],
    outputs: &[(String, &Type)],
    int_regs: usize,
    float_regs: usize,
) -> (Vec<Param>, Vec<Param>) {
    let mut stack = 0u64;
    let mut lost = false;
    let mut assign = |values: &[(String, &Type)], result: bool, stack: &mut u64| -> Vec<Param> {
        let (mut ints, mut floats) = (0, 0);
        let mut out = Vec::new();
        for (i, (name, ty)) in values.iter().enumerate() {
            let location = if lost {
                Location::Unknown(AFTER_UNKNOWN)
            } else {
                let (i0, f0) = (ints, floats);
                let mut pieces = Vec::new();
                match go_registers(ty, 0, &mut ints, &mut floats, (int_regs, float_regs), &mut pieces) {
                    Fit::Fits => Location::Registers(pieces),
                    Fit::NoRoom if ty.size.is_some() => {
                        (ints, floats) = (i0, f0);
                        *stack = align_up(*stack, ty.align);
                        let at = *stack;
                        *stack += ty.size.unwrap_or(0);
                        Location::Stack((STACK_BASE + at) as u32)
                    }
                    Fit::NoRoom | Fit::Unknown => {
                        lost = true;
                        Location::Unknown("probe cannot lay out its type")
                    }
                }
            };
            out.push(Param { name: name.clone(), ty: (*ty).clone(), position: i as u32, result, location });
        }
        out
    };
    let params = assign(inputs, false, &mut stack);
    stack = align_up(stack, 8);
    let results = assign(outputs, true, &mut stack);
    (params, results)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Class {
    Integer,
    Sse,
}

/// System V classification: the eightbytes' classes, `Ok(None)` for MEMORY, `Err` when the
/// type cannot be classified.
fn sysv_classes(ty: &Type) -> Result<Option<Vec<Class>>, ()> {
    let size = ty.size.ok_or(())?;
    match &ty.kind {
        Kind::Int { .. } | Kind::Bool | Kind::Pointer if size <= 8 => Ok(Some(vec![Class::Integer])),
        Kind::Int { .. } if size == 16 => Ok(Some(vec![Class::Integer, Class::Integer])),
        Kind::Float if size <= 8 => Ok(Some(vec![Class::Sse])),
        Kind::Float => Ok(None), // long double: x87, passed in memory
        Kind::Complex if size <= 16 => Ok(Some(vec![Class::Sse; size.div_ceil(8) as usize])),
        Kind::Complex => Ok(None),
        Kind::Aggregate { by_reference: true, .. } => Ok(Some(vec![Class::Integer])),
        Kind::Aggregate { .. } | Kind::Array { .. } if size > 16 => Ok(None),
        Kind::Aggregate { .. } | Kind::Array { .. } => {
            let mut classes: Vec<Option<Class>> = vec![None; size.div_ceil(8) as usize];
            let mut leaves = Vec::new();
            flatten(ty, 0, &mut leaves)?;
            for (offset, leaf) in leaves {
                let leaf_class = match sysv_classes(leaf)? {
                    Some(c) if c.len() == 1 => c[0],
                    _ => return Err(()),
                };
                let slot = classes.get_mut((offset / 8) as usize).ok_or(())?;
                *slot = Some(match (*slot, leaf_class) {
                    (Some(Class::Integer), _) | (_, Class::Integer) => Class::Integer,
                    _ => Class::Sse,
                });
            }
            Ok(Some(classes.into_iter().map(|c| c.unwrap_or(Class::Sse)).collect()))
        }
        Kind::Void => Ok(Some(Vec::new())),
        _ => Err(()),
    }
}

/// The scalar leaves of an aggregate with their offsets.
fn flatten<'t>(ty: &'t Type, base: u64, out: &mut Vec<(u64, &'t Type)>) -> Result<(), ()> {
    match &ty.kind {
        Kind::Aggregate { fields, by_reference: false } => {
            fields.iter().try_for_each(|(offset, field)| flatten(field, base + offset, out))
        }
        Kind::Array { len, elem } => {
            let step = elem.size.ok_or(())?;
            (0..*len).try_for_each(|i| flatten(elem, base + i * step, out))
        }
        _ => {
            out.push((base, ty));
            Ok(())
        }
    }
}

const SYSV_SSE_REGS: usize = 8;

/// Rust's own calling convention (functions not `extern "C"`) differs from System V for
/// aggregates: above 16 bytes they are passed by reference, and small ones holding floats are
/// packed in ways probe does not model. Scalars and integer-only pairs are as in System V.
fn rust_classes(ty: &Type) -> Result<Option<Vec<Class>>, ()> {
    if !matches!(ty.kind, Kind::Aggregate { .. } | Kind::Array { .. }) {
        return sysv_classes(ty);
    }
    if ty.size.ok_or(())? > 16 {
        return Ok(Some(vec![Class::Integer])); // a pointer to it
    }
    match sysv_classes(ty)? {
        Some(classes) if classes.iter().all(|&c| c == Class::Integer) => Ok(Some(classes)),
        _ => Err(()),
    }
}

fn sysv_assign(inputs: &[(String, &Type)], returns: Option<&Type>, rust: bool) -> (Vec<Param>, Vec<Param>) {
    let returns_in_memory = returns.is_some_and(|t| t.kind != Kind::Void && matches!(sysv_classes(t), Ok(None)));
    let (mut ints, mut sses) = (returns_in_memory as usize, 0usize);
    let mut stack = 0u64;
    let mut lost = false;
    let mut params = Vec::new();
    for (i, (name, ty)) in inputs.iter().enumerate() {
        let classified = if rust { rust_classes(ty) } else { sysv_classes(ty) };
        let by_reference = rust && matches!(ty.kind, Kind::Aggregate { .. } | Kind::Array { .. }) && ty.size > Some(16);
        let location = match (lost, classified) {
            (true, _) => Location::Unknown(AFTER_UNKNOWN),
            (false, Err(())) => {
                lost = true;
                Location::Unknown("probe cannot classify its type")
            }
            (false, Ok(classes)) => {
                let need_int = classes.as_ref().map_or(0, |c| c.iter().filter(|&&c| c == Class::Integer).count());
                let need_sse = classes.as_ref().map_or(0, |c| c.len() - need_int);
                match classes {
                    Some(classes) if ints + need_int <= SYSV_ARGS.len() && sses + need_sse <= SYSV_SSE_REGS => {
                        let mut pieces = Vec::new();
                        for (k, class) in classes.iter().enumerate() {
                            let place = match class {
                                Class::Integer => {
                                    ints += 1;
                                    Place::Reg(SYSV_ARGS[ints - 1])
                                }
                                Class::Sse => {
                                    sses += 1;
                                    Place::Xmm
                                }
                            };
                            let size = (ty.size.unwrap_or(8) - 8 * k as u64).min(8);
                            pieces.push(Piece { offset: 8 * k as u64, size, place });
                        }
                        match &ty.kind {
                            Kind::Aggregate { by_reference: true, .. } => Location::ByReference(pieces[0].place),
                            _ if by_reference => Location::ByReference(pieces[0].place),
                            _ => Location::Registers(pieces),
                        }
                    }
                    _ => {
                        stack = align_up(stack, ty.align.max(8));
                        let at = stack;
                        stack += align_up(ty.size.unwrap_or(0), 8);
                        Location::Stack((STACK_BASE + at) as u32)
                    }
                }
            }
        };
        params.push(Param { name: name.clone(), ty: (*ty).clone(), position: i as u32, result: false, location });
    }
    let results = match returns {
        Some(t) if t.kind != Kind::Void => {
            let location = match sysv_classes(t) {
                Ok(Some(c)) if c == [Class::Integer] => Location::Registers(vec![Piece {
                    offset: 0,
                    size: t.size.unwrap_or(8),
                    place: Place::Reg(Reg::Rax),
                }]),
                Ok(Some(c)) if c == [Class::Sse] => {
                    Location::Registers(vec![Piece { offset: 0, size: t.size.unwrap_or(8), place: Place::Xmm }])
                }
                _ => Location::Unknown("a value returned in two registers or in memory"),
            };
            vec![Param { name: "ret".into(), ty: t.clone(), position: 0, result: true, location }]
        }
        _ => Vec::new(),
    };
    (params, results)
}

/// What argdist reads for a parameter: a number's value, or a string's or slice's length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measure {
    pub source: ValueSource,
    pub width: Width,
    /// A Go string or slice: its length is measured.
    pub length: bool,
    /// A string whose bytes can be read (`--count`): a Go string in two registers, or a C
    /// `char *` in one.
    pub text: Option<ValueSource>,
}

/// How argdist measures `param`, or why it cannot (one line for the user, without the option).
pub fn measure(param: &Param) -> Result<Measure, String> {
    let size = param.ty.size.unwrap_or(8);
    let (offset, width, length) = match &param.ty.kind {
        Kind::Int { signed } => (0, Width::of(size, *signed), false),
        Kind::Bool => (0, Width::of(size, false), false),
        Kind::Pointer => (0, Width::W64, false),
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
    match place {
        Some(Place::Reg(r)) => Ok(Measure { source: ValueSource::Reg(r), width, length, text }),
        Some(Place::Stack(offset)) => Ok(Measure { source: ValueSource::Stack { offset }, width, length, text }),
        Some(Place::Xmm) | None => Err(format!("{}: probe cannot locate its value ({})", param.name, param.ty.name)),
    }
}

/// Where a string parameter's bytes are, if probe can read them: a Go string's pointer and
/// length registers, or the register of a C `char *` (`const char *`, `unsigned char *`, ...).
fn text_source(param: &Param) -> Option<ValueSource> {
    let Location::Registers(pieces) = &param.location else { return None };
    let reg_at = |offset: u64| {
        pieces.iter().find(|p| p.offset == offset).and_then(|p| match p.place {
            Place::Reg(r) => Some(r),
            _ => None,
        })
    };
    match param.ty.kind {
        Kind::GoString => Some(ValueSource::GoString { ptr: reg_at(0)?, len: reg_at(8)? }),
        Kind::Pointer if param.ty.name.trim_end_matches([' ', '*']).ends_with("char") => {
            Some(ValueSource::CString { ptr: reg_at(0)? })
        }
        _ => None,
    }
}

fn what(param: &Param) -> &'static str {
    if param.result {
        "result"
    } else {
        "parameter"
    }
}

/// `int32`, `string (length)`, ... with where it is: `rax`, `rbx+rcx`, `stack+16`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = |p: &Place| match p {
            Place::Reg(r) => format!("{r:?}").to_lowercase(),
            Place::Xmm => "xmm".into(),
            Place::Stack(at) => format!("sp+{at}"),
        };
        match self {
            Location::Registers(pieces) if pieces.is_empty() => f.write_str("none"),
            Location::Registers(pieces) => {
                f.write_str(&pieces.iter().map(|p| place(&p.place)).collect::<Vec<_>>().join("+"))
            }
            Location::Stack(at) => write!(f, "sp+{at}"),
            Location::ByReference(p) => write!(f, "*{}", place(p)),
            Location::Unknown(_) => f.write_str("?"),
        }
    }
}

/// What kind of value a parameter is, for `probe list --params`.
pub fn kind_name(ty: &Type) -> String {
    let size = ty.size.unwrap_or(0);
    match &ty.kind {
        Kind::Int { signed: true } => format!("i{}", 8 * size),
        Kind::Int { signed: false } => format!("u{}", 8 * size),
        Kind::Bool => "bool".into(),
        Kind::Pointer => "pointer".into(),
        Kind::Float => format!("f{}", 8 * size),
        Kind::Complex => format!("complex{}", 8 * size),
        Kind::GoString => "string".into(),
        Kind::GoSlice => "slice".into(),
        Kind::GoInterface => "interface".into(),
        Kind::Aggregate { .. } => format!("struct({size})"),
        Kind::Array { len, .. } => format!("array[{len}]"),
        Kind::Void => "void".into(),
        Kind::Unknown => "?".into(),
    }
}

/// What `argdist --arg`/`--ret` measures, decided from the declared signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// A declared parameter or result (`result`), labelled `label` (`number`, `len(path)`).
    Declared { measure: Measure, label: String, result: bool },
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
    let missing = if is_compiler_copy(binary, function) {
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

    fn t(name: &str, size: u64, kind: Kind) -> Type {
        Type { name: name.into(), size: Some(size), align: size.clamp(1, 8), kind }
    }

    fn int() -> Type {
        t("int", 8, Kind::Int { signed: true })
    }

    #[test]
    fn go_assigns_words_in_order_and_spills_what_does_not_fit() {
        let string = t("string", 16, Kind::GoString);
        let slice = t("[]int", 24, Kind::GoSlice);
        let float = t("float64", 8, Kind::Float);
        let point = Type {
            name: "Point".into(),
            size: Some(16),
            align: 8,
            kind: Kind::Aggregate { fields: vec![(0, int()), (8, int())], by_reference: false },
        };
        let arr3 = Type {
            name: "[3]int".into(),
            size: Some(24),
            align: 8,
            kind: Kind::Array { len: 3, elem: Box::new(int()) },
        };
        let i16 = t("int16", 2, Kind::Int { signed: true });
        let inputs = vec![
            ("p".to_string(), &point),
            ("arr".to_string(), &arr3),
            ("n".to_string(), &i16),
            ("f".to_string(), &float),
            ("s".to_string(), &string),
            ("sl".to_string(), &slice),
            ("big".to_string(), &slice),
        ];
        let outputs = vec![("ret".to_string(), &string), ("ret1".to_string(), &i16)];
        let (params, results) = go_assign(&inputs, &outputs, 9, 15);
        let regs = |p: &Param| match &p.location {
            Location::Registers(pieces) => pieces.iter().map(|p| p.place).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        use Place::Reg as R;
        assert_eq!(regs(&params[0]), [R(Reg::Rax), R(Reg::Rbx)]);
        assert_eq!(params[1].location, Location::Stack(8));
        assert_eq!(regs(&params[2]), [R(Reg::Rcx)]);
        assert_eq!(regs(&params[3]), [Place::Xmm]);
        assert_eq!(regs(&params[4]), [R(Reg::Rdi), R(Reg::Rsi)]);
        assert_eq!(regs(&params[5]), [R(Reg::R8), R(Reg::R9), R(Reg::R10)]);
        // One register left (R11): the slice goes to the stack after the array, whole.
        assert_eq!(params[6].location, Location::Stack(8 + 24));
        assert_eq!(regs(&results[0]), [R(Reg::Rax), R(Reg::Rbx)]);
        assert_eq!(regs(&results[1]), [R(Reg::Rcx)]);
        let m = measure(&params[4]).unwrap();
        let text = Some(ValueSource::GoString { ptr: Reg::Rdi, len: Reg::Rsi });
        assert_eq!(m, Measure { source: ValueSource::Reg(Reg::Rsi), width: Width::W64, length: true, text });
        assert_eq!(measure(&params[5]).unwrap().text, None, "a slice's bytes are not a string");
        assert_eq!(measure(&params[6]).unwrap().source, ValueSource::Stack { offset: 8 + 24 + 8 });
        assert_eq!(measure(&params[2]).unwrap().width, Width::I16);
        assert!(measure(&params[3]).unwrap_err().contains("XMM registers"));
        // ABI0: everything on the stack, results after the arguments (aligned to 8).
        let (params, results) = go_assign(&inputs[2..3], &outputs[1..], 0, 0);
        assert_eq!(params[0].location, Location::Stack(8));
        assert_eq!(results[0].location, Location::Stack(16));
    }

    #[test]
    fn system_v_classifies_by_eightbytes() {
        let double = t("double", 8, Kind::Float);
        let small = Type {
            name: "struct s".into(),
            size: Some(16),
            align: 8,
            kind: Kind::Aggregate { fields: vec![(0, int()), (8, double.clone())], by_reference: false },
        };
        let big = Type {
            name: "struct big".into(),
            size: Some(24),
            align: 8,
            kind: Kind::Aggregate { fields: vec![(0, int()), (8, int()), (16, int())], by_reference: false },
        };
        let i32t = t("int", 4, Kind::Int { signed: true });
        let long = int();
        let inputs = vec![
            ("a".to_string(), &i32t),
            ("d".to_string(), &double),
            ("s".to_string(), &small),
            ("b".to_string(), &big),
            ("c".to_string(), &long),
        ];
        let ints: Vec<(String, Type)> = (0..3).map(|i| (format!("x{i}"), int())).collect();
        let mut all: Vec<(String, &Type)> = inputs.clone();
        all.extend(ints.iter().map(|(n, t)| (n.clone(), t)));
        let (params, _) = sysv_assign(&all, Some(&big), false);
        // The struct returned in memory takes RDI for its pointer.
        assert_eq!(measure(&params[0]).unwrap().source, ValueSource::Reg(Reg::Rsi));
        assert_eq!(measure(&params[0]).unwrap().width, Width::I32);
        assert!(
            matches!(&params[2].location, Location::Registers(p) if p[0].place == Place::Reg(Reg::Rdx) && p[1].place == Place::Xmm)
        );
        assert_eq!(params[3].location, Location::Stack(8));
        assert_eq!(measure(&params[4]).unwrap().source, ValueSource::Reg(Reg::Rcx));
        assert_eq!(measure(&params[5]).unwrap().source, ValueSource::Reg(Reg::R8));
        assert_eq!(measure(&params[6]).unwrap().source, ValueSource::Reg(Reg::R9));
        assert_eq!(measure(&params[7]).unwrap().source, ValueSource::Stack { offset: 8 + 24 });
        // Rust passes the big struct by reference: one register, and the rest moves up.
        let rust = vec![("a".to_string(), &i32t), ("b".to_string(), &big), ("c".to_string(), &long)];
        let (params, _) = sysv_assign(&rust, Some(&big), true);
        assert_eq!(params[1].location, Location::ByReference(Place::Reg(Reg::Rdx)));
        assert_eq!(measure(&params[2]).unwrap().source, ValueSource::Reg(Reg::Rcx));
        // A small struct holding a float is not modelled: it and what follows are unknown.
        let (params, _) = sysv_assign(&all[1..4], None, true);
        assert!(matches!(params[1].location, Location::Unknown(_)));
        assert!(matches!(params[2].location, Location::Unknown(_)));
    }
}
