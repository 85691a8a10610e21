//! A site's value as the programs read it: from a register or the user stack, extended from
//! the integer's width. Shared by the value programs and the filter's conditions.
use crate::{regs, user_memory};
use aya_ebpf::bindings::pt_regs;
use probe_ebpf::{ValueCookie, ValueSource};

/// The site's value: its source read, and extended from the integer's width.
#[inline(always)]
pub(crate) fn read_value(regs: &pt_regs, site: &ValueCookie) -> Option<i64> {
    read_value_faulting::<false>(regs, site)
}

/// `read_value`, in a sleepable program (`FAULT`) faulting in a stack page not yet mapped.
#[inline(always)]
pub(crate) fn read_value_faulting<const FAULT: bool>(regs: &pt_regs, site: &ValueCookie) -> Option<i64> {
    read_source::<FAULT>(regs, site.source).map(|v| site.width.extend(v as u64))
}

#[inline(always)]
fn read_source<const FAULT: bool>(regs: &pt_regs, source: ValueSource) -> Option<i64> {
    let v = match source {
        ValueSource::Reg(r) => regs::register(regs, r)?,
        ValueSource::Arm64Reg(n) => regs::arm64_register(regs, n)?,
        ValueSource::Stack { offset } => {
            user_memory::read::<u64, FAULT>(regs::stack_pointer(regs).wrapping_add(offset as u64))?
        }
        // As a number, a Go string is its length; a C string has none without reading it.
        ValueSource::GoString { len, .. } => regs::register(regs, len)?,
        ValueSource::CString { .. } | ValueSource::CStringOnStack { .. } => return None,
    };
    Some(v as i64)
}
