//! `--filter EXPR`: a small expression the programs evaluate in the kernel before anything is
//! aggregated, so the tables hold only the calls asked for.
//!
//! ```text
//! EXPR    := COND [&& COND]...            (at most 4, all must hold)
//! COND    := OPERAND OP NUMBER
//! OPERAND := argN | ret | value | pid | tid | latency
//! OP      := == | != | < | <= | > | >=
//! NUMBER  := a signed decimal or 0x hex integer; for latency with a unit: ns, us, ms or s
//! ```
//! `argN` is read at the function's entry (as `--arg N` would), `ret` at its return, `value` is
//! what argdist measures, `latency` the call's duration (latency only).
use crate::abi::Abi;
use crate::error::user;
use crate::plan::Value;
use anyhow::Result;
use probe_ebpf::{
    Condition, Filter, ValueCookie, MAX_CONDITIONS, OPERAND_ARG, OPERAND_LATENCY, OPERAND_PID, OPERAND_RET,
    OPERAND_TID, OPERAND_VALUE, OP_EQ, OP_GE, OP_GT, OP_LE, OP_LT, OP_NE,
};

/// Which command the filter is for: it decides which operands mean something.
#[derive(Clone, Copy, Debug)]
pub enum FilterFor {
    /// argdist measuring this value, in this calling convention.
    Argdist(Value, Abi),
    /// latency, on functions of this calling convention (None: several, so no `argN`).
    Latency(Option<Abi>),
}

const EXAMPLE: &str = "e.g. --filter 'arg1 > 100 && pid == 123'";

/// Parses `expr` into the programs' conditions; bad input is one line naming the condition.
pub fn parse(expr: &str, what: FilterFor) -> Result<Filter> {
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
        *slot = condition(cond, what).map_err(|why| bad(cond, why))?;
    }
    Ok(filter)
}

fn condition(cond: &str, what: FilterFor) -> Result<Condition, String> {
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
    let (operand, source) = operand(left, what)?;
    let value = if operand == OPERAND_LATENCY { duration_ns(right)? } else { integer(right)? };
    Ok(Condition { operand, op, source, value })
}

fn operand(name: &str, what: FilterFor) -> Result<(u32, u64), String> {
    let abi = match what {
        FilterFor::Argdist(_, abi) => Some(abi),
        FilterFor::Latency(abi) => abi,
    };
    match (name, what) {
        ("pid", _) => Ok((OPERAND_PID, 0)),
        ("tid", _) => Ok((OPERAND_TID, 0)),
        ("latency", FilterFor::Latency(_)) => Ok((OPERAND_LATENCY, 0)),
        ("latency", FilterFor::Argdist(..)) => Err("latency is what `probe latency` measures".into()),
        ("value", FilterFor::Argdist(..)) => Ok((OPERAND_VALUE, 0)),
        ("value", FilterFor::Latency(_)) => Err("`value` is argdist's; name argN, ret or latency".into()),
        ("ret", FilterFor::Argdist(Value::Arg(_) | Value::Text { .. }, _)) => {
            Err("argdist --arg reads at the entry, before there is a return value; use --ret".into())
        }
        ("ret", FilterFor::Argdist(Value::Ret, Abi::GoStack)) | ("ret", FilterFor::Latency(Some(Abi::GoStack))) => {
            Err("the Go stack ABI returns results on the stack, which probe does not read".into())
        }
        ("ret", _) => Ok((OPERAND_RET, 0)),
        (arg, _) if arg.starts_with("arg") => {
            let n: u32 = arg[3..].parse().map_err(|_| format!("`{arg}` is not argN (arg0, arg1, ...)"))?;
            if let FilterFor::Argdist(Value::Ret, _) = what {
                return Err(format!("argdist --ret reads at the return, where {arg} is gone; filter on ret"));
            }
            let abi = abi.ok_or("the functions have different calling conventions, so argN differs between them")?;
            let source = abi.arg_source(n).map_err(|e| e.to_string())?;
            Ok((OPERAND_ARG, ValueCookie { slot: 0, source, stack_check: false }.encode()))
        }
        _ => Err(format!("unknown operand `{name}` (argN, ret, value, pid, tid, latency)")),
    }
}

fn integer(text: &str) -> Result<i64, String> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits.strip_prefix("0x") {
        Some(hex) => i128::from_str_radix(hex, 16),
        None => digits.parse::<i128>(),
    }
    .map_err(|_| format!("`{text}` is not an integer"))?;
    let v = if negative { -magnitude } else { magnitude };
    i64::try_from(v).map_err(|_| format!("{text} does not fit 64 bits"))
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
    use super::*;
    use probe_ebpf::{Reg, ValueSource};

    const GO: FilterFor = FilterFor::Argdist(Value::Arg(0), Abi::GoRegister);

    #[test]
    fn conditions_become_the_programs_comparisons() {
        let f = parse("arg1 > 100 && pid == 0x10", GO).unwrap();
        let arg1 = ValueCookie::decode(f.conditions[0].source).unwrap().source;
        assert_eq!((f.conditions[0].operand, f.conditions[0].op, f.conditions[0].value), (OPERAND_ARG, OP_GT, 100));
        assert_eq!(arg1, ValueSource::Reg(Reg::Rbx));
        assert_eq!((f.conditions[1].operand, f.conditions[1].op, f.conditions[1].value), (OPERAND_PID, OP_EQ, 16));
        assert_eq!(f.conditions[2].operand, probe_ebpf::OPERAND_NONE);
        assert!(f.conditions[0].holds(101) && !f.conditions[0].holds(100));
    }

    #[test]
    fn latency_takes_a_unit_and_two_character_operators_win() {
        let f = parse("latency >= 1.5ms", FilterFor::Latency(Some(Abi::SystemV))).unwrap();
        assert_eq!((f.conditions[0].op, f.conditions[0].value), (OP_GE, 1_500_000));
        let f = parse("value<=-3", GO).unwrap();
        assert_eq!((f.conditions[0].operand, f.conditions[0].op, f.conditions[0].value), (OPERAND_VALUE, OP_LE, -3));
    }

    #[test]
    fn bad_expressions_name_the_condition() {
        let latency = FilterFor::Latency(None);
        for (expr, what, needle) in [
            ("arg1 >> 3", GO, "`>>` is not a comparison"),
            ("arg1 = 3", GO, "no comparison"),
            ("size > 3", GO, "unknown operand `size`"),
            ("latency > 5", latency, "needs a unit"),
            ("arg0 > 1", latency, "different calling conventions"),
            ("ret > 0", GO, "use --ret"),
            ("arg9 > 0", GO, "out of range"),
            ("a > 1 && b > 1 && c > 1 && d > 1 && e > 1", GO, "at most 4"),
            ("pid == 1 &&", GO, "a condition is missing"),
            ("value > 99999999999999999999", GO, "does not fit 64 bits"),
        ] {
            let e = parse(expr, what).unwrap_err().to_string();
            assert!(e.contains(needle), "{expr}: {e}");
            assert!(e.starts_with(&format!("--filter '{expr}'")), "{e}");
        }
    }
}
