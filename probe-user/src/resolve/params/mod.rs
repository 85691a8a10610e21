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
//!
//! layout.rs lays the parameters out under each convention; select.rs picks the one a command
//! names and says how to read it.
pub mod fields;
mod layout;
mod select;

use layout::{align_up, go_assign, sysv_assign, GO_FLOAT_REGS};

pub use select::{measure, select, Reading, Selection};

use super::dwarf::{self, Kind, LocationLists, RawFunction, RawParam, Type};
use super::elf::{Binary, Function, Runtime};
use crate::resolve::abi::{Abi, X86_GO_REGISTER_ARGS as GO_REGISTER_ARGS};
use anyhow::Result;
use probe_ebpf::Reg;
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
    binary.debug_file.as_deref().unwrap_or(&binary.source)
}

/// A copy of a C function that GCC specialised (`f.constprop.0` with a constant argument
/// dropped, `f.isra.0` with arguments removed or split, `f.part.0`, `f.cold`): its DWARF lists
/// the source's parameters, which its registers need not hold.
fn is_compiler_copy(binary: &Binary, function: &Function) -> bool {
    let copy = [".constprop.", ".isra.", ".part.", ".cold"].iter().any(|s| function.name.contains(s));
    copy && !Abi::of(binary, &function.name).is_go()
}

/// The layouts here are x86-64's: an arm64 probe knows no declared parameters, and `--arg N`
/// counts its register words (X0-X7, Go's R0-R15).
pub(super) const LAID_OUT_HERE: bool = cfg!(target_arch = "x86_64");

/// Signatures already read, by file and function entry.
type SignaturesRead = HashMap<(std::path::PathBuf, u64), Option<Signature>>;

/// The signature of `function` as its DWARF declares it; `None` when the file has no DWARF or
/// it does not describe the function.
pub fn signature(binary: &Binary, function: &Function) -> Result<Option<Signature>> {
    if is_compiler_copy(binary, function) || !LAID_OUT_HERE {
        return Ok(None);
    }
    // argdist asks for its --arg, then --filter for each parameter it names: read the DWARF
    // and `.gopclntab` once per function, not once per question.
    static READ: std::sync::Mutex<Option<SignaturesRead>> = std::sync::Mutex::new(None);
    let key = (binary.source.clone(), function.addr);
    if let Some(known) = READ.lock().ok().and_then(|m| m.as_ref()?.get(&key).cloned()) {
        return Ok(known);
    }
    let args = go_args_sizes(binary, Some(function.addr));
    let read = |lists| -> Result<Option<(Signature, bool)>> {
        let Some(mut all) = dwarf::functions(debug_source(binary), Some(function.addr), lists)? else {
            return Ok(None);
        };
        let abi = Abi::of(binary, &function.name);
        Ok(all.remove(&function.addr).map(|raw| (locate(&raw, abi, args.get(&function.addr)), raw.lists_unread)))
    };
    // The location lists are half of a Go program's DWARF and matter only where the DWARF
    // leaves parameters out (then its own entry locations are all there is): read them then.
    let signature = match read(LocationLists::Skip)? {
        Some((signature, true)) if signature.incomplete.is_some() => read(LocationLists::Read)?.map(|(s, _)| s),
        read => read.map(|(s, _)| s),
    };
    if let Ok(mut read) = READ.lock() {
        read.get_or_insert_with(HashMap::new).insert(key, signature.clone());
    }
    Ok(signature)
}

/// Go's `_func.args` by entry (from `.gopclntab`), of every function or (`only`) of one: the
/// size of its arguments and results, which tells whether the DWARF declares them all. Empty
/// when not Go or unreadable.
fn go_args_sizes(binary: &Binary, only: Option<u64>) -> HashMap<u64, u32> {
    if !matches!(binary.runtime, Runtime::Go(_)) {
        return HashMap::new();
    }
    let Some((_, table)) = binary.section(".gopclntab") else { return HashMap::new() };
    let text = binary.section_address(".text").unwrap_or(0);
    super::pclntab::args_sizes(&table, text, only).unwrap_or_default()
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
    if !LAID_OUT_HERE {
        return Ok(None);
    }
    let Some(all) = dwarf::functions(debug_source(binary), None, LocationLists::Read)? else { return Ok(None) };
    let abi_at: HashMap<u64, Abi> = binary
        .functions()
        .iter()
        .filter(|f| !is_compiler_copy(binary, f))
        .map(|f| (f.addr, Abi::of(binary, &f.name)))
        .collect();
    let args = go_args_sizes(binary, None);
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
