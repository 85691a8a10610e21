//! Calls of a function's inlined copies (`pb_inlined`): a copy has no entry or return of its
//! own, so its calls are only counted, at an instruction of its caller that runs exactly once
//! per call (chosen by the loader). The cookie is the traced function's slot.
use crate::cgroup::in_selected_cgroup;
use crate::{site_cookie, EPOCH};
use aya_ebpf::{
    macros::{map, uprobe},
    maps::PerCpuArray,
    programs::ProbeContext,
    EbpfContext,
};
use probe_ebpf::bank_index;

/// Calls counted at inlined copies, at `bank_index(bank, slot)`; sized by the loader.
#[map]
static INLINED_CALLS: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

#[uprobe]
pub fn pb_inlined(ctx: ProbeContext) -> u32 {
    if !in_selected_cgroup() {
        return 0; // a process outside --cgroup/--container: not traced, so not counted
    }
    let slot = site_cookie(ctx.as_ptr()) as u32;
    let bank = EPOCH.get(0).copied().unwrap_or(0);
    if let Some(calls) = INLINED_CALLS.get_ptr_mut(bank_index(bank, slot)) {
        // Per-CPU, and nothing here sleeps: a plain increment is exact.
        unsafe { *calls += 1 };
    }
    0
}
