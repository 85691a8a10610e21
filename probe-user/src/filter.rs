//! `--filter EXPR`: a small expression the programs evaluate in the kernel before anything is
//! aggregated, so the tables hold only the calls asked for.
//!
//! ```text
//! EXPR    := COND [&& COND]...            (at most 4, all must hold)
//! COND    := OPERAND OP NUMBER
//! OPERAND := argN | NAME | len(NAME) | ret | value | pid | tid | latency
//! OP      := == | != | < | <= | > | >=
//! NUMBER  := a signed decimal or 0x hex integer; for latency with a unit: ns, us, ms or s
//! ```
//! `argN` and `NAME` are parameters as declared, read at the function's entry as `--arg` reads
//! them (`len(NAME)` for a Go string or slice), `ret` at its return, `value` is what argdist
//! measures, `latency` the call's duration (latency only).
use crate::error::user;
use crate::resolve::abi::Abi;
use crate::resolve::elf::{Binary, Function};
use crate::resolve::params::{self, Selection};
use crate::shared::ArgSpec;
use anyhow::Result;
use probe_ebpf::{
    Condition, Filter, ValueCookie, ValueSource, Width, MAX_CONDITIONS, OPERAND_ARG, OPERAND_LATENCY, OPERAND_PID,
    OPERAND_RET, OPERAND_TID, OPERAND_VALUE, OP_EQ, OP_GE, OP_GT, OP_LE, OP_LT, OP_NE, OP_UNSIGNED,
};

/// Which command the filter is for: it decides which operands mean something.
#[derive(Clone, Copy, Debug)]
pub enum FilterFor {
    /// argdist, reading its value at the function's entry or at its return, with this width
    /// (`value`, and `ret` when it is the measured result).
    Argdist {
        at_return: bool,
        value: Width,
    },
    Latency,
}

/// Where the traced functions' parameters are, for `argN`, `NAME` and `len(NAME)`.
pub struct FilterParams<'a> {
    functions: Vec<(&'a Binary, &'a Function)>,
}

impl<'a> FilterParams<'a> {
    pub fn new(functions: Vec<(&'a Binary, &'a Function)>) -> FilterParams<'a> {
        FilterParams { functions }
    }

    /// The first result of every function, which must agree on where it is: as declared where
    /// the binary says, else the whole first result register (`None`).
    fn locate_result(&self) -> Result<Option<(ValueSource, Width)>, String> {
        let mut found = None;
        for (i, (binary, function)) in self.functions.iter().enumerate() {
            let here = match params::select(binary, function, None, Some(0)) {
                Ok(Selection::Declared { measure, .. }) if !measure.length => Some((measure.source, measure.width)),
                Ok(Selection::Declared { label, .. }) => {
                    return Err(format!("{} returns a string or slice ({label}): compare latency", function.name))
                }
                // No declared result: the first result register as it is.
                Ok(Selection::Words { .. }) | Err(_) => None,
            };
            if i > 0 && found != here {
                return Err("the functions return it in different places; filter one function at a time".into());
            }
            found = here;
        }
        Ok(found)
    }

    /// The parameter `spec` (its length: `len`) in every function, which must agree on where it
    /// is: as declared where the binary says, else the N-th integer register word.
    fn locate(&self, spec: &ArgSpec, len: bool) -> Result<(ValueSource, Width), String> {
        let mut found: Option<(ValueSource, Width)> = None;
        for (binary, function) in &self.functions {
            // params speaks of `--arg NAME: ...`; here the operand is named by the condition.
            let selected = params::select(binary, function, Some(spec), None).map_err(|e| {
                let e = e.to_string();
                e.strip_prefix("--arg ").and_then(|rest| rest.split_once(": ")).map_or(e.clone(), |(_, why)| why.into())
            })?;
            let here = match selected {
                Selection::Declared { measure, label, .. } if measure.length != len => {
                    return Err(match len {
                        true => format!("{label} is not a string or slice: compare it without len()"),
                        false => format!("{label} is a string or slice: compare {label}"),
                    });
                }
                Selection::Declared { measure, .. } => (measure.source, measure.width),
                Selection::Words { .. } => match spec {
                    ArgSpec::Position(n) if !len => {
                        (Abi::of(binary, &function.name).arg_source(*n).map_err(|e| e.to_string())?, Width::W64)
                    }
                    _ => return Err(format!("{} has no declared parameters to name", function.name)),
                },
            };
            if found.is_some_and(|f| f != here) {
                return Err("the functions hold it in different places; filter one function at a time".into());
            }
            found = Some(here);
        }
        found.ok_or_else(|| "no function to filter".to_string())
    }
}

const EXAMPLE: &str = "e.g. --filter 'arg1 > 100 && pid == 123'";

/// Parses `expr` into the programs' conditions; bad input is one line naming the condition.
/// Line breaks and tabs are spaces (an expression may be written over several lines), so every
/// message shows it on one line; any other control character is refused.
pub fn parse(expr: &str, what: FilterFor, params: &FilterParams) -> Result<Filter> {
    if expr.contains(|c: char| c.is_control() && !c.is_ascii_whitespace()) {
        return Err(user(format!(
            "--filter '{}': a control character in the expression; write it with printable characters, {EXAMPLE}",
            expr.escape_debug()
        )));
    }
    let expr: String = expr.chars().map(|c| if c.is_ascii_whitespace() { ' ' } else { c }).collect();
    let expr = expr.as_str();
    let bad = |cond: &str, why: String| user(format!("--filter '{expr}': {cond}: {why}; {EXAMPLE}"));
    let conds: Vec<&str> = expr.split("&&").map(str::trim).collect();
    if conds.len() > MAX_CONDITIONS {
        return Err(user(format!(
            "--filter '{expr}': {} conditions, at most {MAX_CONDITIONS} are evaluated in the kernel; drop some",
            conds.len()
        )));
    }
    let mut filter = Filter::NONE;
    for (slot, cond) in filter.conditions.iter_mut().zip(&conds) {
        if cond.is_empty() {
            return Err(bad("(empty)", "a condition is missing around &&".into()));
        }
        *slot = condition(cond, what, params).map_err(|why| bad(cond, why))?;
    }
    Ok(filter)
}

fn condition(cond: &str, what: FilterFor, params: &FilterParams) -> Result<Condition, String> {
    const OPS: [(&str, u32); 6] =
        [(">=", OP_GE), ("<=", OP_LE), ("==", OP_EQ), ("!=", OP_NE), (">", OP_GT), ("<", OP_LT)];
    let (at, text, op) = OPS
        .iter()
        .filter_map(|&(text, op)| cond.find(text).map(|at| (at, text, op)))
        .min_by_key(|&(at, text, _)| (at, std::cmp::Reverse(text.len())))
        .ok_or("no comparison (==, !=, <, <=, >, >=)")?;
    let (left, right) = (cond[..at].trim(), cond[at + text.len()..].trim());
    if right.starts_with(['=', '<', '>', '!']) {
        return Err(format!("`{text}{}` is not a comparison", &right[..1]));
    }
    let (operand, source, width) = operand(left, what, params)?;
    if operand == OPERAND_LATENCY {
        return Ok(Condition { operand, op, source, value: duration_ns(right)? });
    }
    // An unsigned 64-bit operand is compared as one, with a number from 0 to 2^64-1.
    if width == Width::U64 {
        return Ok(Condition { operand, op: op | OP_UNSIGNED, source, value: unsigned_integer(left, right)? as i64 });
    }
    Ok(Condition { operand, op, source, value: integer(right)? })
}

/// A condition's operand, where it is read (`Condition::source`) and its width.
fn operand(name: &str, what: FilterFor, params: &FilterParams) -> Result<(u32, u64, Width), String> {
    let encode =
        |source: ValueSource, width: Width| ValueCookie { slot: 0, source, stack_check: false, width }.encode();
    match (name, what) {
        ("pid", _) => Ok((OPERAND_PID, 0, Width::W64)),
        ("tid", _) => Ok((OPERAND_TID, 0, Width::W64)),
        ("latency", FilterFor::Latency) => Ok((OPERAND_LATENCY, 0, Width::W64)),
        ("latency", FilterFor::Argdist { .. }) => Err("latency is what `probe latency` measures".into()),
        ("value", FilterFor::Argdist { value, .. }) => Ok((OPERAND_VALUE, 0, value)),
        ("value", FilterFor::Latency) => Err("`value` is argdist's; name argN, ret or latency".into()),
        ("ret", FilterFor::Argdist { at_return: false, .. }) => {
            Err("argdist --arg reads at the entry, before there is a return value; use --ret".into())
        }
        // argdist --ret=N: `ret` is the result it measures, as declared.
        ("ret", FilterFor::Argdist { at_return: true, value }) => Ok((OPERAND_VALUE, 0, value)),
        ("ret", FilterFor::Latency) => match params.locate_result()? {
            Some((source, width)) => Ok((OPERAND_RET, encode(source, width), width)),
            None => Ok((OPERAND_RET, 0, Width::W64)),
        },
        (_, FilterFor::Argdist { at_return: true, .. }) if name != "value" => {
            Err(format!("argdist --ret reads at the return, where {name} is gone; filter on ret"))
        }
        _ => {
            let (inner, len) = match name.strip_prefix("len(").and_then(|n| n.strip_suffix(')')) {
                Some(inner) => (inner.trim(), true),
                None => (name, false),
            };
            let spec = match inner.strip_prefix("arg").map(str::parse::<u32>) {
                Some(Ok(n)) => ArgSpec::Position(n),
                _ if is_name(inner) => ArgSpec::Name(inner.to_string()),
                _ => {
                    return Err(format!(
                        "unknown operand `{name}` (argN, NAME, len(NAME), ret, value, pid, tid, latency)"
                    ))
                }
            };
            let (source, width) = params.locate(&spec, len)?;
            Ok((OPERAND_ARG, encode(source, width), width))
        }
    }
}

/// A parameter's name, or a path into one (`r.URL.Path`, `cfg->limits.max`).
fn is_name(s: &str) -> bool {
    s.replace("->", ".").split('.').all(|part| {
        part.starts_with(|c: char| c.is_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_alphanumeric() || c == '_')
    })
}

/// A decimal or `0x` hex integer with at most one `-` in front: the digits alone, so `--1` or
/// `0x-1` (which Rust's parsers would take as 1 and -1) are refused.
fn integer(text: &str) -> Result<i64, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (radix, digits) = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => (16, hex),
        None => (10, digits),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!("`{text}` is not an integer (decimal or 0x hex, one - in front for a negative)"));
    }
    let magnitude = i128::from_str_radix(digits, radix).map_err(|_| format!("{text} does not fit 64 bits"))?;
    let v = if negative { -magnitude } else { magnitude };
    i64::try_from(v).map_err(|_| format!("{text} does not fit 64 bits"))
}

fn unsigned_integer(operand: &str, text: &str) -> Result<u64, String> {
    let v = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse::<u64>(),
    };
    v.map_err(|_| match text.starts_with('-') {
        true => format!("{operand} is unsigned: compare it with 0 or more"),
        false => format!("`{text}` is not an unsigned 64-bit integer"),
    })
}

fn duration_ns(text: &str) -> Result<i64, String> {
    let split =
        text.find(|c: char| c.is_ascii_alphabetic()).ok_or(format!("`{text}` needs a unit: ns, us, ms or s"))?;
    let (number, unit) = text.split_at(split);
    let per = match unit {
        "ns" => 1,
        "us" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        _ => return Err(format!("unknown unit `{unit}` (ns, us, ms, s)")),
    };
    let n: f64 = number.trim().parse().map_err(|_| format!("`{text}` is not a duration"))?;
    if !(n >= 0.0 && n * per as f64 <= i64::MAX as f64) {
        return Err(format!("{text} is not a duration probe can compare"));
    }
    Ok((n * per as f64).round() as i64)
}

#[cfg(test)]
mod tests {
    //! On this test binary's own assembly function (calibrate.rs), which has no declared
    //! parameters: `argN` is the N-th System V register.
    use super::*;
    use crate::resolve::find_function;
    use probe_ebpf::{Reg, ValueSource};

    const ENTRY: FilterFor = FilterFor::Argdist { at_return: false, value: Width::W64 };

    fn with_params<R>(f: impl FnOnce(&FilterParams) -> R) -> R {
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let binary = Binary::open(&exe).unwrap();
        let function = find_function(&binary, "probe_cal_emulated_ret").unwrap();
        f(&FilterParams::new(vec![(&binary, function)]))
    }

    #[test]
    fn conditions_become_the_programs_comparisons() {
        let f = with_params(|p| parse("arg1 > 100 && pid == 0x10", ENTRY, p)).unwrap();
        let arg1 = ValueCookie::decode(f.conditions[0].source).unwrap().source;
        assert_eq!((f.conditions[0].operand, f.conditions[0].op, f.conditions[0].value), (OPERAND_ARG, OP_GT, 100));
        assert_eq!(arg1, ValueSource::Reg(Reg::Rsi));
        assert_eq!((f.conditions[1].operand, f.conditions[1].op, f.conditions[1].value), (OPERAND_PID, OP_EQ, 16));
        assert_eq!(f.conditions[2].operand, probe_ebpf::OPERAND_NONE);
        assert!(f.conditions[0].holds(101) && !f.conditions[0].holds(100));
    }

    #[test]
    fn latency_takes_a_unit_and_two_character_operators_win() {
        let f = with_params(|p| parse("latency >= 1.5ms", FilterFor::Latency, p)).unwrap();
        assert_eq!((f.conditions[0].op, f.conditions[0].value), (OP_GE, 1_500_000));
        let f = with_params(|p| parse("value<=-3", ENTRY, p)).unwrap();
        assert_eq!((f.conditions[0].operand, f.conditions[0].op, f.conditions[0].value), (OPERAND_VALUE, OP_LE, -3));
    }

    #[test]
    fn unsigned_values_compare_unsigned_with_numbers_up_to_2_pow_64() {
        let unsigned = FilterFor::Argdist { at_return: false, value: Width::U64 };
        let f = with_params(|p| parse("value > 5", unsigned, p)).unwrap();
        assert_eq!(f.conditions[0].op, OP_GT | OP_UNSIGNED);
        assert!(f.conditions[0].holds(-1), "2^64-1 > 5");
        let f = with_params(|p| parse("value == 18446744073709551615", unsigned, p)).unwrap();
        assert!(f.conditions[0].holds(-1));
        let e = with_params(|p| parse("value > -1", unsigned, p)).unwrap_err().to_string();
        assert!(e.contains("value is unsigned: compare it with 0 or more"), "{e}");
        // argdist --ret=N: `ret` is the measured result itself.
        let at_return = FilterFor::Argdist { at_return: true, value: Width::I32 };
        let f = with_params(|p| parse("ret < 0", at_return, p)).unwrap();
        assert_eq!((f.conditions[0].operand, f.conditions[0].op), (OPERAND_VALUE, OP_LT));
    }

    #[test]
    fn bad_expressions_name_the_condition() {
        let latency = FilterFor::Latency;
        for (expr, what, needle) in [
            ("arg1 >> 3", ENTRY, "`>>` is not a comparison"),
            ("arg1 = 3", ENTRY, "no comparison"),
            ("size-1 > 3", ENTRY, "unknown operand `size-1`"),
            ("size > 3", ENTRY, "has no debug information"),
            ("latency > 5", latency, "needs a unit"),
            ("ret > 0", ENTRY, "use --ret"),
            ("arg1 > 0", FilterFor::Argdist { at_return: true, value: Width::W64 }, "where arg1 is gone"),
            ("arg9 > 0", ENTRY, "out of range"),
            ("a > 1 && b > 1 && c > 1 && d > 1 && e > 1", ENTRY, "at most 4"),
            ("pid == 1 &&", ENTRY, "a condition is missing"),
            ("value > 99999999999999999999", ENTRY, "does not fit 64 bits"),
            ("value > --1", ENTRY, "`--1` is not an integer"),
            ("value > 0x-1", ENTRY, "`0x-1` is not an integer"),
            ("value > -+1", ENTRY, "`-+1` is not an integer"),
            ("value > 0x", ENTRY, "`0x` is not an integer"),
            ("value > 1 2", ENTRY, "`1 2` is not an integer"),
        ] {
            let e = with_params(|p| parse(expr, what, p)).unwrap_err().to_string();
            assert!(e.contains(needle), "{expr}: {e}");
            assert!(e.starts_with(&format!("--filter '{expr}'")), "{e}");
        }
        // Over two lines: a valid expression, and an error on one line.
        let f = with_params(|p| parse("value > 1\n&& pid == 2", ENTRY, p)).unwrap();
        assert_eq!((f.conditions[0].value, f.conditions[1].value), (1, 2));
        let e = with_params(|p| parse("value > --1\n&&\tpid == 2", ENTRY, p)).unwrap_err().to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        assert!(e.starts_with("--filter 'value > --1 && pid == 2': value > --1: `--1` is not an integer"), "{e}");
        let e = with_params(|p| parse("value > 1\u{7}", ENTRY, p)).unwrap_err().to_string();
        assert!(e.starts_with(r"--filter 'value > 1\u{7}': a control character"), "{e}");
        let f = with_params(|p| parse("value >= -0x10 && value < 0XfF", ENTRY, p)).unwrap();
        assert_eq!((f.conditions[0].value, f.conditions[1].value), (-16, 255));
    }
}
