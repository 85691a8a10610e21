//! Where each declared parameter is, under Go's ABIInternal (or ABI0) and System V (and Rust's
//! own convention for aggregates): see the module above for the rules followed.
use super::{Location, Param, Piece, Place};
use crate::resolve::abi::{X86_GO_REGISTER_ARGS as GO_REGISTER_ARGS, X86_SYSV_ARGS as SYSV_ARGS};
use crate::resolve::dwarf::{Kind, Type};
use probe_ebpf::Reg;

pub(super) const GO_FLOAT_REGS: usize = 15;

/// The stack-pointer offset of the first stack-assigned byte: the return address is at SP.
pub(super) const STACK_BASE: u64 = 8;

pub(super) fn align_up(v: u64, align: u64) -> u64 {
    v.div_ceil(align.max(1)) * align.max(1)
}

/// Why a later parameter cannot be located once one is not.
pub(super) const AFTER_UNKNOWN: &str = "it follows a parameter whose type probe cannot lay out";

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
pub(super) fn go_assign(
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

pub(super) fn sysv_assign(inputs: &[(String, &Type)], returns: Option<&Type>, rust: bool) -> (Vec<Param>, Vec<Param>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::params::{measure, Reading};
    use probe_ebpf::{ValueSource, Width};

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
        assert_eq!(
            m,
            Reading {
                source: ValueSource::Reg(Reg::Rsi),
                width: Width::W64,
                length: true,
                text,
                pointer_to_strings: false
            }
        );
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
