//! `--filter` in the kernel: the verdict of the loader's conditions (`probe_ebpf::Filter`, the
//! contract in filter.rs) on a call, reached before anything is aggregated.
use crate::reads::read_value;
use crate::regs;
use aya_ebpf::{bindings::pt_regs, helpers::bpf_get_current_pid_tgid};
use probe_ebpf::{Filter, ValueCookie, OPERAND_ARG, OPERAND_NONE, OPERAND_PID, OPERAND_RET, OPERAND_TID};

/// `--filter`, set by the loader (all conditions unused by default).
#[no_mangle]
static FILTER: Filter = Filter::NONE;

/// Where a filter is evaluated: argdist's one site, or a latency entry or exit.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    All,
    Entry,
    Exit,
}

/// What the filter says of a call.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Pass,
    Fail,
    /// An argument a condition compares could not be read: the call cannot be judged, and is
    /// counted as `LOSS_FILTER_UNREADABLE`.
    Unreadable,
}

/// Whether every condition of `FILTER` decided in `phase` holds. `value` is argdist's
/// measured value, or at a latency exit the call's duration in nanoseconds.
#[inline(always)]
pub(crate) fn filter_verdict(regs: &pt_regs, phase: Phase, value: i64) -> Verdict {
    // Volatile, so the loader's conditions are read rather than the defaults.
    let filter = unsafe { core::ptr::read_volatile(&FILTER) };
    for c in filter.conditions.iter() {
        if c.operand == OPERAND_NONE
            || (phase == Phase::Entry && !c.at_entry())
            || (phase == Phase::Exit && c.at_entry())
        {
            continue;
        }
        let pid_tgid = bpf_get_current_pid_tgid();
        let v = match c.operand {
            OPERAND_PID => (pid_tgid >> 32) as i64,
            OPERAND_TID => (pid_tgid & 0xffff_ffff) as i64,
            OPERAND_RET if c.source == 0 => regs::return_value(regs) as i64,
            OPERAND_RET => match ValueCookie::decode(c.source).and_then(|s| read_value(regs, &s)) {
                Some(v) => v,
                None => return Verdict::Unreadable,
            },
            OPERAND_ARG => match ValueCookie::decode(c.source).and_then(|s| read_value(regs, &s)) {
                Some(v) => v,
                None => return Verdict::Unreadable,
            },
            _ => value, // OPERAND_VALUE, OPERAND_LATENCY
        };
        if !c.holds(v) {
            return Verdict::Fail;
        }
    }
    Verdict::Pass
}
