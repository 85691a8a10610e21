//! `--filter`: up to `MAX_CONDITIONS` comparisons, all of which must hold, evaluated by the
//! programs before anything is aggregated. The loader sets them as a read-only global, so the
//! verifier sees constants and unused conditions cost nothing.

/// Conditions a filter holds (joined by `&&`).
pub const MAX_CONDITIONS: usize = 4;

/// What a condition compares.
pub const OPERAND_NONE: u32 = 0;
/// argdist: the measured value (an argument, or the return value).
pub const OPERAND_VALUE: u32 = 1;
/// An argument, read at the entry (`source` is its `ValueCookie`-encoded `ValueSource`).
pub const OPERAND_ARG: u32 = 2;
/// The return value, at an exit: as declared when `source` says where (a result's
/// `ValueCookie`, with its width), else the whole first result register (0: RAX, X0).
pub const OPERAND_RET: u32 = 3;
pub const OPERAND_PID: u32 = 4;
pub const OPERAND_TID: u32 = 5;
/// latency: the call's duration in nanoseconds (after the probes' cost is subtracted).
pub const OPERAND_LATENCY: u32 = 6;

pub const OP_EQ: u32 = 1;
pub const OP_NE: u32 = 2;
pub const OP_LT: u32 = 3;
pub const OP_LE: u32 = 4;
pub const OP_GT: u32 = 5;
pub const OP_GE: u32 = 6;
/// Or'ed into `op`: the operand is an unsigned 64-bit integer, compared as one (`value` holds
/// the bits of the number it is compared with).
pub const OP_UNSIGNED: u32 = 1 << 8;

/// One comparison `operand op value` (signed 64-bit unless `OP_UNSIGNED`; latency and pid/tid
/// are never negative).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Condition {
    pub operand: u32,
    pub op: u32,
    /// `OPERAND_ARG`: where the argument is (`ValueSource` as `ValueCookie` encodes it).
    pub source: u64,
    pub value: i64,
}

impl Condition {
    pub const NONE: Condition = Condition { operand: OPERAND_NONE, op: 0, source: 0, value: 0 };

    /// Whether `v` satisfies the comparison.
    #[inline(always)]
    pub fn holds(&self, v: i64) -> bool {
        if self.op & OP_UNSIGNED != 0 {
            return compare(self.op & !OP_UNSIGNED, v as u64, self.value as u64);
        }
        compare(self.op, v, self.value)
    }

    /// Whether it is decided at an entry (arguments, pid, tid), not at the exit.
    #[inline(always)]
    pub fn at_entry(&self) -> bool {
        matches!(self.operand, OPERAND_ARG | OPERAND_PID | OPERAND_TID)
    }
}

#[inline(always)]
fn compare<T: PartialOrd>(op: u32, v: T, value: T) -> bool {
    match op {
        OP_EQ => v == value,
        OP_NE => v != value,
        OP_LT => v < value,
        OP_LE => v <= value,
        OP_GT => v > value,
        OP_GE => v >= value,
        _ => true,
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Filter {
    pub conditions: [Condition; MAX_CONDITIONS],
}

impl Filter {
    pub const NONE: Filter = Filter { conditions: [Condition::NONE; MAX_CONDITIONS] };

    pub fn is_empty(&self) -> bool {
        self.conditions.iter().all(|c| c.operand == OPERAND_NONE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_operands_compare_as_unsigned() {
        let above_five = Condition { operand: OPERAND_ARG, op: OP_GT, source: 0, value: 5 };
        assert!(!above_five.holds(-1), "signed: -1 is not above 5");
        let unsigned = Condition { op: OP_GT | OP_UNSIGNED, ..above_five };
        assert!(unsigned.holds(-1), "u64::MAX is above 5");
        let below_half = Condition { op: OP_LT | OP_UNSIGNED, value: 1 << 62, ..above_five };
        assert!(!below_half.holds(u64::MAX as i64) && below_half.holds(7));
    }
}
